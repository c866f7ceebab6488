/**
 * VT-d queued-invalidation descriptors, the page request descriptor and the page group response:
 * field positions, golden descriptors as the kernel's qi_desc_* helpers build them, the 7-bit
 * type split over bits 3:0 and 11:9, and the 128-bit versus 256-bit forms.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CcGran,
  CcInvDesc,
  DevTlbInvDesc,
  IecInvDesc,
  IotlbGran,
  IotlbInvDesc,
  PageGroupResponseDesc,
  PageRequestDesc,
  PasidDevTlbInvDesc,
  PcGran,
  PcInvDesc,
  PiotlbGran,
  PiotlbInvDesc,
  PrgResponse,
  QiType,
  WaitDesc,
  amPages,
  decodeQi,
  encodeQi,
  qiKindOfType,
  qiReservedBitsSet,
  qiTypeOf,
} from "../../src/hw/vtd/index.js";
import { assertBytes, checkPlacement, qw } from "./helpers.js";

test("context-cache invalidate (type 1): G 5:4, DID 31:16, SID 47:32, FM 49:48", () => {
  checkPlacement(CcInvDesc, { g: "qw0 5:4", did: "qw0 31:16", sid: "qw0 47:32", fm: "qw0 49:48" });
  // Device-selective for SID 03:01.0, domain 0x20.
  assertBytes(encodeQi({ kind: "contextCache", g: CcGran.DEVICE, did: 0x20, sid: 0x0308 }), qw(32, "0x0000030800200031", "0x0", "0x0", "0x0"));
});

test("IOTLB invalidate (type 2): G, DW 6, DR 7, DID; AM 5:0, IH 6, ADDR 63:12", () => {
  checkPlacement(IotlbInvDesc, {
    g: "qw0 5:4",
    dw: "qw0 6",
    dr: "qw0 7",
    did: "qw0 31:16",
    am: "qw1 5:0",
    ih: "qw1 6",
    addr: "qw1 63:12",
  });
  // qi_desc_iotlb(did 5, addr 0x7ffff000, size_order 3, PSI) on an IOMMU with read and write drain.
  assertBytes(
    encodeQi({ kind: "iotlb", g: IotlbGran.PAGE, dr: 1, dw: 1, did: 5, addr: 0x7fff_f000, am: 3 }, 128),
    qw(16, "0x00000000000500f2", "0x000000007ffff003"),
  );
  assert.equal(amPages(3), 8);
});

test("device-TLB invalidate (type 3): PFSID split over 15:12 and 63:52, MIP 20:16, SID; S, ADDR", () => {
  checkPlacement(DevTlbInvDesc, {
    pfsid: ["qw0 15:12", "qw0 63:52"],
    mip: "qw0 20:16",
    sid: "qw0 47:32",
    s: "qw1 0",
    addr: "qw1 63:12",
  });
  assertBytes(
    encodeQi({ kind: "deviceTlb", sid: 0x0100, pfsid: 0x0123, mip: 0x1f, s: 1, addr: 0x1234_5000 }, 128),
    qw(16, "0x01200100001f3003", "0x0000000012345001"),
  );
  const d = decodeQi(qw(16, "0x01200100001f3003", "0x0000000012345001"), 128);
  assert.equal(d.kind, "deviceTlb");
  if (d.kind === "deviceTlb") assert.equal(d.pfsid, 0x123);
});

test("interrupt-entry-cache invalidate (type 4): G 4, IM 31:27, IIDX 47:32", () => {
  checkPlacement(IecInvDesc, { g: "qw0 4", im: "qw0 31:27", iidx: "qw0 47:32" });
  assertBytes(encodeQi({ kind: "iec", g: 1, iidx: 0x20 }, 128), qw(16, "0x0000002000000014", "0x0"));
});

test("invalidation wait (type 5): IF 4, SW 5, FN 6, PD 7, status data 63:32; status address 63:2", () => {
  checkPlacement(WaitDesc, {
    if: "qw0 4",
    sw: "qw0 5",
    fn: "qw0 6",
    pd: "qw0 7",
    statusData: "qw0 63:32",
    statusAddr: "qw1 63:2",
  });
  assertBytes(
    encodeQi({ kind: "wait", sw: 1, fn: 1, statusData: 2, statusAddr: 0x1_0000_0ffcn }, 128),
    qw(16, "0x0000000200000065", "0x0000000100000ffc"),
  );
  // The status address is a full 62-bit field (bigint): the top bits survive.
  const d = decodeQi(qw(16, "0x5", "0xfffffffffffffffc"), 128);
  assert.ok(d.kind === "wait" && d.statusAddr === 0xffff_ffff_ffff_fffcn);
});

test("PASID-based IOTLB invalidate (type 6): G, DID, PASID 51:32; AM, IH, ADDR", () => {
  checkPlacement(PiotlbInvDesc, {
    g: "qw0 5:4",
    did: "qw0 31:16",
    pasid: "qw0 51:32",
    am: "qw1 5:0",
    ih: "qw1 6",
    addr: "qw1 63:12",
  });
  // qi_desc_piotlb page-selective: PASID 0x12345, domain 0x10, 512 pages at 256 MiB, leaf only.
  assertBytes(
    encodeQi({ kind: "pasidIotlb", g: PiotlbGran.PAGE, did: 0x10, pasid: 0x12345, addr: 0x1000_0000, ih: 1, am: 9 }),
    qw(32, "0x0001234500100036", "0x0000000010000049", "0x0", "0x0"),
  );
  // All mappings of the PASID: G = 2, no address.
  assertBytes(encodeQi({ kind: "pasidIotlb", g: PiotlbGran.PASID, did: 0x10, pasid: 1 }, 128), qw(16, "0x0000000100100026", "0x0"));
});

test("PASID-cache invalidate (type 7): G (0 domain, 1 PASID, 3 global), DID, PASID", () => {
  checkPlacement(PcInvDesc, { g: "qw0 5:4", did: "qw0 31:16", pasid: "qw0 51:32" });
  assertBytes(encodeQi({ kind: "pasidCache", g: PcGran.PASID, did: 3, pasid: 1 }), qw(32, "0x0000000100030017", "0x0", "0x0", "0x0"));
  assertBytes(encodeQi({ kind: "pasidCache", g: PcGran.GLOBAL }, 128), qw(16, "0x37", "0x0"));
});

test("PASID-based device-TLB invalidate (type 8): MIP 8:4, PFSID split, SID 31:16, PASID; G 0, S 11, ADDR", () => {
  checkPlacement(PasidDevTlbInvDesc, {
    mip: "qw0 8:4",
    pfsid: ["qw0 15:12", "qw0 63:52"],
    sid: "qw0 31:16",
    pasid: "qw0 51:32",
    g: "qw1 0",
    s: "qw1 11",
    addr: "qw1 63:12",
  });
  assertBytes(
    encodeQi({ kind: "pasidDeviceTlb", sid: 0x0100, pasid: 0x20, mip: 0x10, pfsid: 0x0100, g: 1, s: 1, addr: 0x7fff_ffff_f000 }),
    qw(32, "0x0100002001000108", "0x00007ffffffff801", "0x0", "0x0"),
  );
});

test("page group response (type 9): PP 4, RC 15:12, RID 31:16, PASID; LPIG 2, PRGI 11:3; private data", () => {
  checkPlacement(PageGroupResponseDesc, {
    pp: "qw0 4",
    rc: "qw0 15:12",
    rid: "qw0 31:16",
    pasid: "qw0 51:32",
    lpig: "qw1 2",
    prgi: "qw1 11:3",
    privateData0: "qw2 63:0",
    privateData1: "qw3 63:0",
  });
  // As intel_iommu_page_response answers a last-page group 0x1ff of PASID 5 from 03:00.0.
  assertBytes(
    encodeQi({ kind: "pageGroupResponse", pp: 1, rc: PrgResponse.SUCCESS, rid: 0x0300, pasid: 5, prgi: 0x1ff, lpig: 1 }, 128),
    qw(16, "0x0000000503000019", "0x0000000000000ffc"),
  );
  assertBytes(
    encodeQi({ kind: "pageGroupResponse", rc: PrgResponse.INVALID, rid: 1 }, 128),
    qw(16, "0x0000000000011009", "0x0"),
  );
});

test("the descriptor type is 7 bits: type[3:0] in bits 3:0 and type[6:4] in bits 11:9", () => {
  const b = qw(16, (1n << 9n) | 2n, 0n); // type 0x12: not a known descriptor
  assert.deepEqual(decodeQi(b, 128), { kind: "unknown", type: 0x12 });
  assert.equal(qiTypeOf(new Uint32Array([0x602, 0, 0, 0])), 0x32);
  assert.equal(qiTypeOf(new Uint32Array([0x9, 0, 0, 0])), QiType.PAGE_GROUP_RESPONSE);
  assert.equal(qiKindOfType(0xa), undefined);
  assert.equal(qiKindOfType(QiType.PASID_CACHE), "pasidCache");
  assert.deepEqual(decodeQi(qw(16, "0x0", "0x0"), 128), { kind: "unknown", type: 0 });
});

test("a 128-bit descriptor is the first half of the 256-bit one; fields in 255:128 do not fit 128 bits", () => {
  const d = { kind: "pasidIotlb", g: 3, did: 1, pasid: 2, addr: 0x5000, am: 0 } as const;
  const wide = encodeQi(d, 256);
  const narrow = encodeQi(d, 128);
  assert.equal(narrow.length, 16);
  assert.deepEqual(narrow, wide.subarray(0, 16));
  assert.deepEqual(decodeQi(narrow, 128), decodeQi(wide, 256));
  assert.throws(() => encodeQi({ kind: "pageGroupResponse", privateData0: 1n }, 128), /128-bit/);
  assert.equal(encodeQi({ kind: "pageGroupResponse", privateData0: 1n }, 256).length, 32);
});

test("decoding a descriptor of each kind gives back what was encoded", () => {
  const all = [
    { kind: "contextCache", g: 2, did: 9, sid: 0, fm: 0 },
    { kind: "iotlb", g: 1, dw: 0, dr: 0, did: 0, am: 0, ih: 0, addr: 0 },
    { kind: "iec", g: 0, im: 3, iidx: 0 },
    { kind: "pasidCache", g: 0, did: 7, pasid: 0 },
  ] as const;
  for (const d of all) assert.deepEqual(decodeQi(encodeQi(d, 128), 128), d);
});

test("descriptor reserved bits are found by the descriptor's own type", () => {
  // IOTLB: bit 8 and bits 63:32 of qword 0, bits 11:7 of qword 1, everything above 128.
  const b = qw(32, (1n << 8n) | (1n << 40n) | 2n, 1n << 7n, 0n, 1n);
  assert.deepEqual(qiReservedBitsSet(b), [8, 40, 64 + 7, 192]);
  assert.deepEqual(qiReservedBitsSet(qw(32, "0xa", "0x0", "0x0", "0x0")), undefined);
  assert.deepEqual(qiReservedBitsSet(encodeQi({ kind: "wait", sw: 1, statusAddr: 0xffcn })), []);
});

test("page request descriptor: type 1 in 7:0, PP 8, PDP 9, RID, PASID, ER 52, PMR 53; RDR WRR LPIG PRGI ADDR", () => {
  checkPlacement(PageRequestDesc, {
    pp: "qw0 8",
    pdp: "qw0 9",
    rid: "qw0 31:16",
    pasid: "qw0 51:32",
    er: "qw0 52",
    pmr: "qw0 53",
    rdr: "qw1 0",
    wrr: "qw1 1",
    lpig: "qw1 2",
    prgi: "qw1 11:3",
    addr: "qw1 63:12",
    privateData0: "qw2 63:0",
    privateData1: "qw3 63:0",
  });
  // A privileged read/write request, last of group 5, PASID 7, from 03:02.0 (RID 0x0310).
  const b = qw(32, "0x0020000703100101", "0x00007f000000102f", "0x0", "0x0");
  const r = PageRequestDesc.decode(b);
  assert.deepEqual(
    { pp: r.pp, rid: r.rid, pasid: r.pasid, pmr: r.pmr, er: r.er, rdr: r.rdr, wrr: r.wrr, lpig: r.lpig, prgi: r.prgi, addr: r.addr },
    { pp: 1, rid: 0x310, pasid: 7, pmr: 1, er: 0, rdr: 1, wrr: 1, lpig: 1, prgi: 5, addr: 0x7f00_0000_1000 },
  );
  assert.equal(PageRequestDesc.matchesFixed(new Uint32Array([0x101, 0, 0, 0, 0, 0, 0, 0])), true);
  assert.equal(PageRequestDesc.matchesFixed(new Uint32Array([0x102, 0, 0, 0, 0, 0, 0, 0])), false);
  assertBytes(PageRequestDesc.encode({ pp: 1, rid: 0x310, pasid: 7, pmr: 1, rdr: 1, wrr: 1, lpig: 1, prgi: 5, addr: 0x7f00_0000_1000 }), b);
});
