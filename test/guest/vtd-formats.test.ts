/**
 * Guest-visible VT-d formats, bit by bit against hand-computed values: the root, context and PASID
 * entries the guest driver writes, the invalidation descriptors it queues, the page request
 * descriptors the VMM injects, the page group responses, the vIOMMU's CAP/ECAP, the virtual
 * command registers and the fault records.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { HostMachine } from "../../src/guest/machine.js";
import { GuestProcess } from "../../src/guest/process.js";
import type { ScenarioLog } from "../../src/guest/scenario.js";
import { bootVtdGuest, type BootOptions, type VtdGuest } from "../../src/guest/vtd/scenarios.js";
import { psiAligned, putQi } from "../../src/guest/vtd/guest-driver.js";
import { encodeQi, QI_LAYOUTS, type QiDescriptorInput, type QiKind } from "../../src/hw/vtd/qi.js";
import { PasidEntry } from "../../src/hw/vtd/tables.js";
import { DEFAULT_CAP, Fsts, VtdReg } from "../../src/hw/vtd/unit-regs.js";
import { VcmdReg } from "../../src/guest/vtd/vvtd.js";

const PAGE = 4096;
const quiet: ScenarioLog = { step: () => undefined };

function boot(o: BootOptions = {}): VtdGuest {
  return bootVtdGuest(quiet, o);
}

/** The 64-bit words of guest memory at gpa. */
function qwords(g: VtdGuest, gpa: number, n: number): bigint[] {
  const b = g.vm.ram.read(gpa, n * 8);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  return Array.from({ length: n }, (_, i) => dv.getBigUint64(i * 8, true));
}

function bytesToQwords(b: Uint8Array): bigint[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  return Array.from({ length: b.length / 8 }, (_, i) => dv.getBigUint64(i * 8, true));
}

/** Capture the descriptors the vIOMMU fetches while fn runs (wait descriptors included). */
function descriptors(g: VtdGuest, fn: () => void): { kind: string; q: bigint[] }[] {
  const out: { kind: string; q: bigint[] }[] = [];
  g.vmm.vvtd.onDescriptor = (kind, bytes) => out.push({ kind, q: bytesToQwords(bytes) });
  try {
    fn();
  } finally {
    g.vmm.vvtd.onDescriptor = null;
  }
  return out;
}

const bit = (n: number): bigint => 1n << BigInt(n);

test("the root and scalable-mode context entries the guest writes: LP + context table; P, DTE, PASIDE, PRE, PDTS 7, directory pointer, RID_PASID 0", () => {
  const g = boot();
  const sid = g.gd.sid; // 00:02.0 → bus 0, devfn 0x10
  const root = qwords(g, g.drv.rootTableGpa + (sid >>> 8) * 16, 2);
  assert.equal(root[0] & 0xfffn, 1n, "LP, nothing else in the low bits");
  assert.equal(root[1], 0n, "no upper context table (UP clear)");
  const ctxTable = Number(root[0] & ~0xfffn);
  assert.equal(g.drv.contextEntryGpa(sid), ctxTable + (sid & 0x7f) * 32);
  const ce = qwords(g, ctxTable + (sid & 0x7f) * 32, 4);
  // P (0) | DTE (2) | PASIDE (3) | PRE (4) | PDTS 7 at 11:9
  assert.equal(ce[0] & 0xfffn, 0x1n | 0x4n | 0x8n | 0x10n | (7n << 9n));
  assert.equal(ce[1], 0n, "RID_PASID 0, RID_PRIV 0");
  assert.equal(ce[2] | ce[3], 0n);
  // the directory entry of PASID 0 (RID_PASID) points at the table holding its entry
  const dir = Number(ce[0] & ~0xfffn);
  const de = qwords(g, dir, 1)[0];
  assert.equal(de & 0xfffn, 1n, "directory entry: P");
  assert.equal(Number(de & ~0xfffn), g.drv.pasidEntryGpa(sid, 0));
  // RID_PASID: pass-through, DID 1 (FLPT_DEFAULT_DID), AW 3 (the vIOMMU has 5-level first stage)
  const pe = qwords(g, g.drv.pasidEntryGpa(sid, 0), 8);
  assert.equal(pe[0], 1n | (3n << 2n) | (4n << 6n));
  assert.equal(pe[1], 1n);
  assert.deepEqual(pe.slice(2), [0n, 0n, 0n, 0n, 0n, 0n]);
});

test("the SVA PASID entry: P, AW, PGTT 1 (first stage), DID 1, FSPTPTR = the process's CR3, FSPM 0 for 4-level and 1 for 5-level", () => {
  const g = boot();
  const p4 = new GuestProcess(g.vm, "x86-4level");
  const p5 = new GuestProcess(g.vm, "x86-5level");
  const pasid4 = g.drv.svaBind(p4, g.gd.sid);
  const pasid5 = g.drv.svaBind(p5, g.gd.sid);
  const e4 = qwords(g, g.drv.pasidEntryGpa(g.gd.sid, pasid4), 8);
  assert.equal(e4[0], 0x1n | (3n << 2n) | (1n << 6n), "P | AW 3 | PGTT 1 = 0x4d");
  assert.equal(e4[0], 0x4dn);
  assert.equal(e4[1], 1n, "DID 1, PWSNP 0 (no SMPWCS in the vIOMMU)");
  assert.equal(e4[2], BigInt(p4.rootGpa), "FSPTPTR at 191:140, FSPM (131:130) 0, SRE/WPE/EAFE 0");
  assert.deepEqual(e4.slice(3), [0n, 0n, 0n, 0n, 0n]);
  const e5 = qwords(g, g.drv.pasidEntryGpa(g.gd.sid, pasid5), 8);
  assert.equal(e5[2], BigInt(p5.rootGpa) | (1n << 2n), "FSPM 1 (bit 130 = qword 2 bit 2)");
  // and the codec reads the same
  const d = PasidEntry.decode(g.vm.ram.read(g.drv.pasidEntryGpa(g.gd.sid, pasid5), 64));
  assert.equal(d.fspm, 1);
  assert.equal(d.fsptptr, p5.rootGpa);
});

test("a vIOMMU without first-stage 5-level paging gets AW 2 in the guest's entries", () => {
  const m = new HostMachine({ iommu: "vtd", vtd: { cap: { ...DEFAULT_CAP, fs5lp: 0 } } });
  const g = boot({ machine: m });
  const pe = qwords(g, g.drv.pasidEntryGpa(g.gd.sid, 0), 1);
  assert.equal(pe[0], 1n | (2n << 2n) | (4n << 6n));
});

test("the bind's descriptors: PASID-cache PASID-selective and PASID-based IOTLB of the whole PASID, then a wait with status write and fence", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  let pasid = -1;
  const ds = descriptors(g, () => (pasid = g.drv.svaBind(p, g.gd.sid)));
  assert.deepEqual(
    ds.map((d) => d.kind),
    ["pasidCache", "pasidIotlb", "wait"],
  );
  const P = BigInt(pasid);
  // type 7 | G 1 (PASID-selective) at 5:4 | DID 1 at 31:16 | PASID at 51:32
  assert.deepEqual(ds[0].q, [0x7n | (1n << 4n) | (1n << 16n) | (P << 32n), 0n, 0n, 0n]);
  // type 6 | G 2 (all of the PASID) | DID 1 | PASID; no address
  assert.deepEqual(ds[1].q, [0x6n | (2n << 4n) | (1n << 16n) | (P << 32n), 0n, 0n, 0n]);
  // type 5 | SW (5) | FN (6) | status data at 63:32; status address in qword 1
  const w = ds[2].q;
  assert.equal(w[0] & 0xffffffffn, 0x5n | bit(5) | bit(6));
  const seq = Number(w[0] >> 32n);
  const statusGpa = Number(w[1]);
  assert.equal(statusGpa % 4, 0);
  assert.equal(new DataView(g.vm.ram.read(statusGpa, 4).buffer).getUint32(0, true), seq, "the status was written back");
  assert.deepEqual(w.slice(2), [0n, 0n]);
});

test("the flush after munmap: page-selective PASID-based IOTLB (ADDR, AM, IH 0) and the PASID device-TLB with the ATS size encoding", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  p.map(0x40000, 8);
  const pasid = BigInt(g.drv.svaBind(p, g.gd.sid));
  const sid = BigInt(g.gd.sid);
  const one = descriptors(g, () => g.drv.flushRange(p, 0x40003, 1));
  assert.deepEqual(
    one.map((d) => d.kind),
    ["pasidIotlb", "pasidDeviceTlb", "wait"],
  );
  assert.deepEqual(one[0].q, [0x6n | (3n << 4n) | (1n << 16n) | (pasid << 32n), 0x40003000n, 0n, 0n], "G 3, ADDR 127:76, AM 0");
  // type 8 | SID 31:16 | PASID 51:32 | PFSID 15:4 at 63:52 (PFSID = SID 0x10: bits 3:0 zero, 15:4 = 1)
  assert.deepEqual(one[1].q, [0x8n | (sid << 16n) | (pasid << 32n) | (1n << 52n), 0x40003000n, 0n, 0n], "S 0: one page");
  const four = descriptors(g, () => g.drv.flushRange(p, 0x40004, 4));
  assert.deepEqual(four[0].q, [0x6n | (3n << 4n) | (1n << 16n) | (pasid << 32n), 0x40004000n | 2n, 0n, 0n], "AM 2");
  assert.equal(four[1].q[1], 0x40005000n | bit(11), "S (bit 75) and address bit 12 set: 4 pages from 0x40004000");
  // a range that straddles an alignment boundary takes the smallest aligned block covering it
  const two = descriptors(g, () => g.drv.flushRange(p, 0x40003, 2));
  assert.equal(two[0].q[1], 0x40000000n | 3n, "pages 0x40003-0x40004 → 8 pages from 0x40000000 (AM 3)");
});

test("calculate_psi_aligned_address: the smallest naturally aligned power-of-two block covering the range", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 36 }), fc.integer({ min: 1, max: 5000 }), (vpn, n) => {
      const { addr, am } = psiAligned(vpn, n);
      const first = addr / PAGE;
      // naive model: grow k until one aligned 2^k block holds both ends
      let k = 0;
      while (Math.floor(vpn / 2 ** k) !== Math.floor((vpn + n - 1) / 2 ** k)) k++;
      while (2 ** k < n) k++;
      return am === k && first === Math.floor(vpn / 2 ** k) * 2 ** k && first <= vpn && first + 2 ** am >= vpn + n;
    }),
  );
});

test("the page request descriptor the VMM injects: type 1, PP 8, RID 31:16, PASID 51:32, RDR 64, WRR 65, LPIG 66, PRGI 75:67, ADDR 127:76", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  g.drv.addLazyRegion(p, 0x7f100, 16);
  const pasid = g.drv.svaBind(p, g.gd.sid);
  const P = BigInt(pasid);
  const rid = BigInt(g.gd.sid);
  // the guest holds its page requests (PECTL masked): two outstanding groups, PRGI 0 and 1
  g.drv.maskPageRequests(true);
  const w = g.vmm.dma(g.gd, { pasid, iova: BigInt(0x7f105 * PAGE + 0x40), length: 8, write: true, data: new Uint8Array(8) });
  const r = g.vmm.dma(g.gd, { pasid, iova: BigInt(0x7f107 * PAGE + 0x10), length: 8, write: false, data: new Uint8Array(8) });
  assert.equal(w.status, "pending");
  assert.equal(r.status, "pending");
  const d0 = qwords(g, g.drv.prqGpa, 4);
  const d1 = qwords(g, g.drv.prqGpa + 32, 4);
  assert.deepEqual(d0, [0x1n | bit(8) | (rid << 16n) | (P << 32n), 0x7f105000n | bit(1) | bit(2), 0n, 0n], "a write, last page of group 0");
  assert.deepEqual(d1, [0x1n | bit(8) | (rid << 16n) | (P << 32n), 0x7f107000n | bit(0) | bit(2) | (1n << 3n), 0n, 0n], "a read, group 1");
  assert.equal(Number(g.vmm.vvtd.read64(VtdReg.PQT)), 64, "PQT moved by two descriptors");
  assert.equal(g.vmm.vvtd.read32(VtdReg.PRS) & 1, 1, "PRS.PPR");
  // the guest's answers, bit by bit: type 9 | PP 4 | RC 15:12 | RID 31:16 | PASID 51:32; LPIG 66, PRGI 75:67
  const ds = descriptors(g, () => g.drv.maskPageRequests(false));
  const resp = ds.filter((d) => d.kind === "pageGroupResponse");
  assert.equal(resp.length, 2);
  assert.deepEqual(resp[0].q, [0x9n | bit(4) | (0n << 12n) | (rid << 16n) | (P << 32n), bit(2), 0n, 0n], "success for group 0");
  assert.deepEqual(resp[1].q, [0x9n | bit(4) | (rid << 16n) | (P << 32n), bit(2) | (1n << 3n), 0n, 0n], "success for group 1");
  assert.equal(g.vmm.pendingPageRequests, 0);
});

test("a page group response for an address the process has no region at carries response code Invalid (1) in 15:12", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  const pasid = g.drv.svaBind(p, g.gd.sid);
  const ds = descriptors(g, () => g.vmm.dma(g.gd, { pasid, iova: 0x9999000n, length: 4, write: false, data: new Uint8Array(4) }));
  const resp = ds.find((d) => d.kind === "pageGroupResponse");
  assert.ok(resp);
  assert.equal((resp.q[0] >> 12n) & 0xfn, 1n);
});

test("the vIOMMU's CAP/ECAP: caching mode, FRO/NFR, FS1GP and FS5LP from the host; scalable mode with first stage only, 20-bit PASIDs, PRS, VCS", () => {
  const g = boot();
  const cap = g.vmm.vvtd.read64(VtdReg.CAP);
  const ecap = g.vmm.vvtd.read64(VtdReg.ECAP);
  assert.equal((cap >> 7n) & 1n, 1n, "CM");
  assert.equal((cap >> 24n) & 0x3ffn, 0x22n, "FRO: fault records at 0x220");
  assert.equal((cap >> 40n) & 0xffn, 7n, "NFR: 8 fault records");
  assert.equal((cap >> 39n) & 1n, 1n, "PSI");
  assert.equal((cap >> 56n) & 1n, 1n, "FS1GP (host has it)");
  assert.equal((cap >> 60n) & 1n, 1n, "FS5LP (host has it)");
  for (const [b, v, what] of [
    [1, 1n, "QI"],
    [2, 1n, "DT"],
    [6, 1n, "PT"],
    [26, 0n, "NEST (no second stage in the guest)"],
    [29, 1n, "PRS"],
    [40, 1n, "PASID"],
    [43, 1n, "SMTS"],
    [44, 1n, "VCS"],
    [46, 0n, "SSTS"],
    [47, 1n, "FSTS"],
  ] as const)
    assert.equal((ecap >> BigInt(b)) & 1n, v, what);
  assert.equal((ecap >> 35n) & 0x1fn, 19n, "PSS: 20-bit PASIDs");
  assert.equal(g.vmm.vvtd.read64(VcmdReg.VCCAP), 1n, "VCCAP.PAS");
  const m = new HostMachine({ iommu: "vtd", vtd: { cap: { ...DEFAULT_CAP, fs5lp: 0, fs1gp: 0 } } });
  const g2 = boot({ machine: m });
  const cap2 = g2.vmm.vvtd.read64(VtdReg.CAP);
  assert.equal((cap2 >> 60n) & 1n, 0n, "no FS5LP when the host has none");
  assert.equal((cap2 >> 56n) & 1n, 0n, "no FS1GP when the host has none");
});

test("virtual commands: ALLOC answers the PASID at 35:16 of VCRSP; no PASID left and a bad FREE answer status 16 at 7:1", () => {
  const m = new HostMachine({ iommu: "vtd" });
  const g = bootVtdGuest(quiet, { machine: m });
  const v = g.vmm.vvtd;
  v.write64(VcmdReg.VCMD, 1n);
  assert.equal(v.read64(VcmdReg.VCRSP), 1n << 16n, "PASID 1, SC 0, IP 0");
  v.write64(VcmdReg.VCMD, 1n);
  assert.equal(v.read64(VcmdReg.VCRSP), 2n << 16n);
  assert.deepEqual(g.vm.pasids.entries(), [
    [1, 1],
    [2, 2],
  ]);
  v.write64(VcmdReg.VCMD, (9n << 16n) | 2n);
  assert.equal(v.read64(VcmdReg.VCRSP), 16n << 1n, "FREE of a PASID the VM does not hold: invalid PASID");
  v.write64(VcmdReg.VCMD, (2n << 16n) | 2n);
  assert.equal(v.read64(VcmdReg.VCRSP), 0n);
  assert.deepEqual(g.vm.pasids.entries(), [[1, 1]]);
  // a VM whose PASID quota is used up
  const small = bootVtdGuest(quiet, { machine: m, name: "small", device: { name: "0000:09:00.0", sid: 0x900 } });
  for (let i = 0; i < 1024; i++) small.vm.pasids.alloc(100 + i);
  small.vmm.vvtd.write64(VcmdReg.VCMD, 1n);
  assert.equal(small.vmm.vvtd.read64(VcmdReg.VCRSP), 16n << 1n, "no PASID available");
});

test("a fault the VMM records for an entry it cannot shadow: F 127, T1 126, PV 123:104, FR 0x5B at 103:96, PP 95, SID 79:64; FSTS.PPF with FRI 0", () => {
  const g = boot();
  const gpasid = 7;
  // the guest writes a second-stage PASID entry (PGTT 2), which this vIOMMU does not offer
  const ram = g.vm.ram;
  const p = new GuestProcess(g.vm, "x86-4level");
  g.drv.svaBind(p, g.gd.sid); // makes the PASID table of PASIDs 0-63
  const gpa = g.drv.pasidEntryGpa(g.gd.sid, gpasid);
  ram.write(gpa, PasidEntry.encode({ p: 1, pgtt: 2, did: 1, aw: 2, ssptptr: 0x100000 }));
  let events = 0;
  g.vmm.vvtd.onFaultEvent = () => events++;
  g.drv.submit({ kind: "pasidCache", g: 1, did: 1, pasid: gpasid });
  assert.equal(events, 1, "fault event");
  const fsts = g.vmm.vvtd.read32(VtdReg.FSTS);
  assert.equal(fsts & Fsts.PPF, Fsts.PPF);
  assert.equal((fsts >>> 8) & 0xff, 0, "FRI");
  const w = [0, 4, 8, 12].map((o) => g.vmm.vvtd.read32(0x220 + o));
  assert.deepEqual(w.slice(0, 2), [0, 0], "FI 0");
  assert.equal(w[2], (g.gd.sid | 0x80000000) >>> 0, "SID, PP");
  assert.equal(w[3], (0x80000000 | 0x40000000 | (gpasid << 8) | 0x5b) >>> 0);
  assert.equal(g.vmm.errors.length, 1);
  assert.equal(g.vmm.errors[0].gpasid, gpasid);
  // the guest clears it (F is write-1-to-clear) and PPF goes
  g.vmm.vvtd.write32(0x22c, 0x80000000);
  assert.equal(g.vmm.vvtd.read32(VtdReg.FSTS) & Fsts.PPF, 0);
});

test("the guest driver's in-place descriptor writer produces exactly what encodeQi encodes", () => {
  const kinds = Object.keys(QI_LAYOUTS) as QiKind[];
  const arb = fc.constantFrom(...kinds).chain((kind) => {
    const fields = QI_LAYOUTS[kind].fields as Record<string, { kind: "num" | "big"; width: number; shift: number }>;
    const rec: Record<string, fc.Arbitrary<number | bigint>> = {};
    for (const [name, f] of Object.entries(fields)) {
      if (f.kind === "big") rec[name] = fc.bigInt({ min: 0n, max: (1n << BigInt(f.width)) - 1n }).map((x) => x << BigInt(f.shift));
      else {
        const lo = fc.nat({ max: 2 ** Math.min(f.width, 31) - 1 });
        rec[name] = fc.oneof(lo, lo.map((x) => 2 ** f.width - 1 - x)).map((x) => x * 2 ** f.shift);
      }
    }
    return fc.record(rec).map((v) => ({ kind, ...v }) as QiDescriptorInput);
  });
  fc.assert(
    fc.property(arb, (d) => {
      const u32 = new Uint32Array(16).fill(0xdeadbeef);
      putQi(u32, 4, d);
      const want = new Uint32Array(encodeQi(d, 256).buffer);
      return u32[3] === 0xdeadbeef && u32[12] === 0xdeadbeef && want.every((x, i) => u32[4 + i] === x);
    }),
    { numRuns: 300 },
  );
});
