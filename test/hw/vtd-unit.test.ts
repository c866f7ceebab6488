/**
 * The VT-d unit against tables built by hand from the specification's bit positions (no codec, no
 * engine): root entry → scalable-mode context entry → PASID directory → PASID entry → first-stage,
 * second-stage, nested or pass-through translation; registers; DMA with translation off.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PhysMem } from "../../src/mm/phys.js";
import { WindowFrameStore } from "../../src/hw/memory.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import * as f from "../../src/hw/pagetable/format.js";
import { Gcmd, Gsts, SmFault, VtdReg, VtdRig, VtdUnit } from "../../src/hw/vtd/unit.js";
import { capToU64 } from "../../src/hw/vtd/regs.js";
import { DEFAULT_CAP } from "../../src/hw/vtd/unit-regs.js";
import { PAGE, faultRecord, frame, fsts, get64, put64, read, write } from "./vtd-unit-helpers.js";

const SID = 0x0108; // bus 1, device 1, function 0
const SS_RW = 0b11; // second-stage R | W
const FS_TABLE = 0b111; // P | R/W | U/S
const FS_A = 1 << 5;
const FS_D = 1 << 6;

/** Walk-free builder of a 4-level table: creates tables as needed, writes the leaf entry word. */
function buildLeaf(unit: VtdUnit, rootPfn: number, vpn: number, leafLo: number, tableBits: number, alloc: () => number, hostOf = (p: number) => p): void {
  let t = rootPfn;
  for (let lvl = 4; lvl > 1; lvl--) {
    const idx = Math.floor(vpn / 2 ** (9 * (lvl - 1))) % 512;
    const pa = hostOf(t) * PAGE + idx * 8;
    const lo = unit.mem.read32(pa);
    if ((lo & tableBits) === 0) {
      const n = alloc();
      put64(unit, pa, 0, n * PAGE + tableBits);
      t = n;
    } else t = lo >>> 12;
  }
  put64(unit, hostOf(t) * PAGE + (vpn % 512) * 8, 0, leafLo);
}

interface Golden {
  unit: VtdUnit;
  /** The PASID entry's byte address (PASID 0 = RID_PASID). */
  pePa: number;
}

/** Root table, bus 1's lower context table, SID's context entry, a PASID directory and table. */
function golden(opts: { paside?: boolean; pdts?: number; fpd?: boolean } = {}): Golden {
  const unit = new VtdUnit(new PhysMem());
  const R = frame(unit);
  const C = frame(unit);
  const D = frame(unit);
  const T = frame(unit);
  // Root entry for bus 1 (16 bytes at R + 16): LP (bit 0) and LCTP (63:12).
  put64(unit, R * PAGE + 1 * 16, 0, C * PAGE + 1);
  // Context entry for devfn 0x08 (32 bytes at C + 8*32): P 0, FPD 1, PASIDE 3, PDTS 11:9, PASIDDIRPTR 63:12.
  const pdts = opts.pdts ?? 2;
  put64(unit, C * PAGE + 8 * 32, 0, D * PAGE + (pdts << 9) + (opts.paside === false ? 0 : 1 << 3) + (opts.fpd ? 2 : 0) + 1);
  // PASID directory entry 0: P and the PASID table pointer.
  put64(unit, D * PAGE, 0, T * PAGE + 1);
  // RTADDR: the root table with TTM = 01 (scalable mode), then SRTP and TE.
  unit.write64(VtdReg.RTADDR, BigInt(R * PAGE) | (1n << 10n));
  unit.write32(VtdReg.GCMD, Gcmd.SRTP);
  unit.write32(VtdReg.GCMD, Gcmd.TE);
  return { unit, pePa: T * PAGE };
}

/** PASID entry qwords 0-2: P, AW 4:2, PGTT 8:6, SSADE 9, SSPTPTR 63:12 | DID 15:0 | SRE 0, FSPM 3:2, FSPTPTR 63:12. */
function pasidEntry(g: Golden, o: { pgtt: number; aw?: number; ssade?: boolean; ss?: number; did: number; fs?: number; fspm?: number; sre?: boolean; pasid?: number }): void {
  const pe = g.pePa + (o.pasid ?? 0) * 64;
  put64(g.unit, pe, 0, (o.ss ?? 0) * PAGE + (o.ssade ? 1 << 9 : 0) + (o.pgtt << 6) + ((o.aw ?? 0) << 2) + 1);
  put64(g.unit, pe + 8, 0, o.did);
  put64(g.unit, pe + 16, 0, (o.fs ?? 0) * PAGE + ((o.fspm ?? 0) << 2) + (o.sre ? 1 : 0));
}

test("registers: CAP/ECAP read back, SRTP sets RTPS, TE sets TES, GCMD reads as 0", () => {
  const unit = new VtdUnit(new PhysMem());
  assert.equal(unit.read64(VtdReg.CAP), capToU64(DEFAULT_CAP));
  assert.equal(unit.read64(VtdReg.ECAP), unit.ecapU64);
  assert.equal(unit.read32(VtdReg.GSTS), 0);
  unit.write32(VtdReg.GCMD, Gcmd.SRTP);
  assert.equal(unit.read32(VtdReg.GSTS), Gsts.RTPS >>> 0);
  unit.write32(VtdReg.GCMD, Gcmd.TE);
  assert.equal(unit.read32(VtdReg.GSTS), (Gsts.RTPS | Gsts.TES) >>> 0);
  assert.equal(unit.read32(VtdReg.GCMD), 0);
  unit.write64(VtdReg.CAP, 0n); // read-only
  assert.equal(unit.read64(VtdReg.CAP), unit.capU64);
  unit.write32(VtdReg.GCMD, 0);
  assert.equal(unit.read32(VtdReg.GSTS) & Gsts.TES, 0);
});

test("default CAP/ECAP: scalable mode, SAGAW 4+5-level, MGAW 57, FS 1 GiB + 5-level, SS 2M/1G, nested, 20-bit PASID, PRS, SSADS, PT, QI, DT", () => {
  const { cap, ecap } = new VtdUnit(new PhysMem());
  assert.equal(cap.sagaw, 0b01100);
  assert.equal(cap.mgaw + 1, 57);
  assert.deepEqual([cap.fs1gp, cap.fs5lp, cap.sslps], [1, 1, 0b11]);
  assert.deepEqual([ecap.smts, ecap.fsts, ecap.ssts, ecap.nest, ecap.pasid, ecap.pss + 1, ecap.prs, ecap.ssads, ecap.pt, ecap.qi, ecap.dt], [1, 1, 1, 1, 1, 20, 1, 1, 1, 1, 1]);
  assert.equal(cap.cm, 0, "no caching mode: not-present entries are never cached");
});

test("second-stage only (PGTT=2): a request without PASID uses RID_PASID 0 and the hand-built 4-level SS table", () => {
  const g = golden();
  const { unit } = g;
  const ss = frame(unit);
  const data = frame(unit);
  buildLeaf(unit, ss, 0x12345, data * PAGE + SS_RW, SS_RW, () => frame(unit));
  pasidEntry(g, { pgtt: 2, aw: 2, ss, did: 9 });
  unit.mem.write(data * PAGE + 0x10, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
  const { r, data: got } = read(unit, SID, -1, 0x12345010n, 4);
  assert.deepEqual(r, { status: "done", bytes: 4, fault: null });
  assert.deepEqual([...got], [0xde, 0xad, 0xbe, 0xef]);
  assert.equal(unit.translatePage(SID, -1, 0x12345, true), data);
  // The IOTLB entry: key (sid, -1), tags DID 9 and PASID 0.
  assert.deepEqual(
    unit.iotlb.entries().map((e) => [e.k1, e.k2, e.vpn, e.ppn, e.tagA, e.tagB]),
    [[SID, -1, 0x12345, data, 9, 0]],
  );
});

test("second stage: a write lands in host memory; a read-only leaf refuses writes with fault 0x85", () => {
  const g = golden();
  const { unit } = g;
  const ss = frame(unit);
  const data = frame(unit);
  buildLeaf(unit, ss, 0x40, data * PAGE + SS_RW, SS_RW, () => frame(unit));
  buildLeaf(unit, ss, 0x41, (data + 0) * PAGE + 0b01, SS_RW, () => frame(unit)); // R only
  pasidEntry(g, { pgtt: 2, aw: 2, ss, did: 1 });
  assert.equal(write(unit, SID, -1, 0x40ffen, [7, 8, 9, 10]).status, "faulted", "the write crosses into the read-only page");
  assert.deepEqual([...unit.mem.read(data * PAGE + 0xffe, 2)], [7, 8]);
  const [lo, hi] = faultRecord(unit, 0);
  assert.equal(lo, 0x41000n, "FI: the page address");
  assert.equal(Number((hi >> 32n) & 0xffn), SmFault.NO_WRITE);
  assert.equal((hi >> 62n) & 1n, 0n, "T1 = 0: a write");
});

test("first stage only (PGTT=1): x86 4-level paging with U/S; the walk sets A on every entry and D on the written leaf", () => {
  const g = golden();
  const { unit } = g;
  const fs = frame(unit);
  const data = frame(unit);
  buildLeaf(unit, fs, 0x777, data * PAGE + FS_TABLE, FS_TABLE, () => frame(unit));
  pasidEntry(g, { pgtt: 1, fs, did: 4 });
  // Read first: A everywhere, no D.
  assert.equal(read(unit, SID, 5 - 5, 0x777008n, 2).r.status, "done");
  const path: number[] = [];
  let t = fs;
  for (let lvl = 4; lvl >= 1; lvl--) {
    const pa = t * PAGE + (Math.floor(0x777 / 2 ** (9 * (lvl - 1))) % 512) * 8;
    path.push(pa);
    t = unit.mem.read32(pa) >>> 12;
  }
  for (const pa of path) assert.equal(unit.mem.read32(pa) & FS_A, FS_A, `A set in the entry at ${pa.toString(16)}`);
  assert.equal(unit.mem.read32(path[3]) & FS_D, 0, "a read leaves D clear");
  // The write hits the IOTLB entry filled by the read, which holds no write permission: it walks and sets D.
  assert.equal(write(unit, SID, 0, 0x777008n, [1, 2]).status, "done");
  assert.equal(unit.mem.read32(path[3]) & FS_D, FS_D);
  assert.deepEqual([...unit.mem.read(data * PAGE + 8, 2)], [1, 2]);
  assert.equal(unit.stats.walks, 2);
});

test("first stage: a supervisor-only page (U/S clear) faults 0x81 for user requests; SRE clear refuses supervisor requests (0x5D)", () => {
  const g = golden();
  const { unit } = g;
  const fs = frame(unit);
  const data = frame(unit);
  buildLeaf(unit, fs, 0x10, data * PAGE + 0b011, FS_TABLE, () => frame(unit)); // P | R/W, U/S clear
  pasidEntry(g, { pgtt: 1, fs, did: 4 });
  const u = read(unit, SID, 0, 0x10000n, 4);
  assert.equal(u.r.fault?.code, SmFault.FS_USER);
  assert.equal(u.r.fault?.kind, "permission");
  const s = read(unit, SID, 0, 0x10000n, 4, true);
  assert.equal(s.r.fault?.code, SmFault.PASID_SRE_CLEAR);
});

test("first stage: input addresses must be canonical (0x80); an upper-half canonical address walks PML4 index 511", () => {
  const g = golden();
  const { unit } = g;
  const fs = frame(unit);
  const data = frame(unit);
  // 0xffff_ff80_0000_0000 = PML4 index 511, everything else 0: vpn 2^52 - 2^27 -> walker vpn 511 * 2^27.
  buildLeaf(unit, fs, 511 * 2 ** 27, data * PAGE + FS_TABLE, FS_TABLE, () => frame(unit));
  pasidEntry(g, { pgtt: 1, fs, did: 4 });
  assert.equal(read(unit, SID, 0, 0xffffff8000000000n, 8).r.status, "done");
  assert.equal(read(unit, SID, 0, 0x0000800000000000n, 8).r.fault?.code, SmFault.FS_NON_CANONICAL);
  assert.equal(read(unit, SID, 0, 0xfff0000000000000n, 8).r.fault?.code, SmFault.FS_NON_CANONICAL);
});

test("nested (PGTT=3): FSPTPTR and every first-stage table are guest-physical, translated by the hand-built second stage", () => {
  const g = golden();
  const { unit } = g;
  // Guest RAM: GPA pages 0x100.. backed by host frames hb..; the second stage maps them.
  const gBase = 0x100;
  const n = 16;
  const hb = unit.mem.phys.allocRun(n);
  const ss = frame(unit);
  for (let i = 0; i < n; i++) buildLeaf(unit, ss, gBase + i, (hb + i) * PAGE + SS_RW, SS_RW, () => frame(unit));
  let next = gBase;
  const galloc = (): number => next++;
  const hostOf = (gp: number): number => hb + (gp - gBase);
  const fsRoot = galloc();
  const gData = gBase + 12;
  buildLeaf(unit, fsRoot, 0x5555, gData * PAGE + FS_TABLE, FS_TABLE, galloc, hostOf);
  pasidEntry(g, { pgtt: 3, aw: 2, ss, fs: fsRoot, did: 11 });
  unit.mem.write(hostOf(gData) * PAGE + 0x20, new Uint8Array([42]));
  const { r, data } = read(unit, SID, -1, 0x5555020n, 1);
  assert.equal(r.status, "done");
  assert.equal(data[0], 42);
  assert.equal(unit.translatePage(SID, -1, 0x5555, false), hostOf(gData));
  // The first-stage entries (in guest memory) got their A bits through stage-2 writes.
  assert.equal(unit.mem.read32(hostOf(fsRoot) * PAGE) & FS_A, FS_A);
});

test("pass-through (PGTT=4): output = input; DID tags the IOTLB entry", () => {
  const g = golden();
  const { unit } = g;
  const data = frame(unit);
  pasidEntry(g, { pgtt: 4, did: 1 });
  unit.mem.write(data * PAGE + 5, new Uint8Array([9]));
  const { r, data: got } = read(unit, SID, -1, BigInt(data * PAGE + 5), 1);
  assert.equal(r.status, "done");
  assert.equal(got[0], 9);
  assert.equal(unit.iotlb.entries()[0].tagA, 1);
});

test("translation disabled (TE=0): DMA addresses are physical", () => {
  const unit = new VtdUnit(new PhysMem());
  const data = frame(unit);
  assert.equal(write(unit, 0x42, -1, BigInt(data * PAGE + 3), [5, 6]).status, "done");
  assert.deepEqual([...unit.mem.read(data * PAGE + 3, 2)], [5, 6]);
  assert.equal(unit.translatePage(0x42, -1, data, true), data);
});

test("structure faults carry the scalable-mode reasons: root 0x39, context 0x41/0x42, PASIDE 0x45, PDTS 0x46, directory 0x51, PASID entry 0x59/0x5A/0x5B", () => {
  // Root entry not present: a sid on bus 2 (no root entry written).
  const g = golden();
  assert.equal(read(g.unit, 0x0208, -1, 0n, 1).r.fault?.code, SmFault.ROOT_ENTRY_NOT_PRESENT);
  // Upper context table (devfn >= 128) not present in the root entry.
  assert.equal(read(g.unit, 0x0180, -1, 0n, 1).r.fault?.code, SmFault.ROOT_ENTRY_NOT_PRESENT);
  // Context entry not present: devfn 0x09.
  assert.equal(read(g.unit, 0x0109, -1, 0n, 1).r.fault?.code, SmFault.CONTEXT_ENTRY_NOT_PRESENT);
  // PASID entry not present.
  assert.equal(read(g.unit, SID, -1, 0n, 1).r.fault?.code, SmFault.PASID_ENTRY_NOT_PRESENT);
  // PASID 64: directory entry 1 not present.
  assert.equal(read(g.unit, SID, 64, 0n, 1).r.fault?.code, SmFault.PASID_DIR_NOT_PRESENT);
  // PDTS 2: 512 directory entries, PASIDs below 32768.
  assert.equal(read(g.unit, SID, 32768, 0n, 1).r.fault?.code, SmFault.PASID_BEYOND_PDTS);
  // A reserved PGTT (0).
  pasidEntry(g, { pgtt: 0, did: 1 });
  assert.equal(read(g.unit, SID, -1, 0n, 1).r.fault?.code, SmFault.PASID_ENTRY_INVALID);
  // An AW the unit lacks: 39-bit (SAGAW bit 1 clear).
  const g2 = golden();
  pasidEntry(g2, { pgtt: 2, aw: 1, ss: frame(g2.unit), did: 1 });
  assert.equal(read(g2.unit, SID, -1, 0n, 1).r.fault?.code, SmFault.PASID_ENTRY_INVALID);
  // A reserved bit in the PASID entry: bit 192 (qword 3).
  const g3 = golden();
  pasidEntry(g3, { pgtt: 4, did: 1 });
  put64(g3.unit, g3.pePa + 24, 0, 1);
  assert.equal(read(g3.unit, SID, -1, 0n, 1).r.fault?.code, SmFault.PASID_ENTRY_RESERVED);
  // PASIDE clear: requests with PASID fault, requests without do not reach that check.
  const g4 = golden({ paside: false });
  pasidEntry(g4, { pgtt: 4, did: 1 });
  assert.equal(read(g4.unit, SID, 3, 0n, 1).r.fault?.code, SmFault.CONTEXT_PASIDE_CLEAR);
  assert.equal(read(g4.unit, SID, -1, 0x1000_0000n, 1).r.status, "done");
  // A reserved bit in the context entry (bit 128).
  const g5 = golden();
  const ctxPa = Number((g5.unit.read64(VtdReg.RTADDR) & ~0xfffn)) + 16;
  const ctp = Number(get64(g5.unit, ctxPa) & ~0xfffn);
  put64(g5.unit, ctp + 8 * 32 + 16, 0, 1);
  assert.equal(read(g5.unit, SID, -1, 0n, 1).r.fault?.code, SmFault.CONTEXT_ENTRY_RESERVED);
  // A reserved bit in the root entry (bit 1).
  const g6 = golden();
  const rootPa = Number(g6.unit.read64(VtdReg.RTADDR) & ~0xfffn) + 16;
  put64(g6.unit, rootPa, 0, Number(get64(g6.unit, rootPa)) | 2);
  assert.equal(read(g6.unit, SID, -1, 0n, 1).r.fault?.code, SmFault.ROOT_ENTRY_RESERVED);
});

test("second stage: not present 0x79, beyond the address width 0x83, a 1 GiB leaf the unit does not support is reserved (0x7A)", () => {
  const g = golden();
  const { unit } = g;
  const ss = frame(unit);
  pasidEntry(g, { pgtt: 2, aw: 2, ss, did: 1 });
  assert.equal(read(unit, SID, -1, 0x1000n, 1).r.fault?.code, SmFault.SS_ENTRY_NOT_PRESENT);
  assert.equal(read(unit, SID, -1, 1n << 48n, 1).r.fault?.code, SmFault.ADDR_BEYOND);
  // A PS=1 entry at level 3 (1 GiB) on a unit whose CAP.SSLPS has only 2 MiB.
  const u2 = new VtdUnit(new PhysMem(), { cap: { ...DEFAULT_CAP, sslps: 0b01 } });
  const R = frame(u2);
  const C = frame(u2);
  const D = frame(u2);
  const T = frame(u2);
  const l4 = frame(u2);
  const l3 = frame(u2);
  put64(u2, R * PAGE + 16, 0, C * PAGE + 1);
  put64(u2, C * PAGE + 8 * 32, 0, D * PAGE + (2 << 9) + 1);
  put64(u2, D * PAGE, 0, T * PAGE + 1);
  put64(u2, T * PAGE, 0, l4 * PAGE + (2 << 6) + (2 << 2) + 1);
  put64(u2, l4 * PAGE, 0, l3 * PAGE + SS_RW);
  put64(u2, l3 * PAGE, 0, 0x40000000 + (1 << 7) + SS_RW); // PS at level 3
  u2.write64(VtdReg.RTADDR, BigInt(R * PAGE) | (1n << 10n));
  u2.write32(VtdReg.GCMD, Gcmd.SRTP);
  u2.write32(VtdReg.GCMD, Gcmd.TE);
  assert.equal(read(u2, SID, -1, 0x1000n, 1).r.fault?.code, SmFault.SS_ENTRY_RESERVED);
});

test("a fault is recorded in the next fault recording register with FR, SID, PASID, FI, T1 and F; FSTS gets PPF and FRI", () => {
  const g = golden();
  const { unit } = g;
  pasidEntry(g, { pgtt: 1, fs: frame(unit), did: 2, pasid: 7 });
  const r = read(unit, SID, 7, 0xabc123n, 1).r;
  assert.equal(r.fault?.code, SmFault.FS_ENTRY_NOT_PRESENT);
  const [lo, hi] = faultRecord(unit, 0);
  assert.equal(lo, 0xabc000n, "FI 63:12");
  assert.equal(hi & 0xffffn, BigInt(SID), "SID 79:64");
  assert.equal((hi >> 31n) & 1n, 1n, "PP 95");
  assert.equal((hi >> 32n) & 0xffn, BigInt(SmFault.FS_ENTRY_NOT_PRESENT), "FR 103:96");
  assert.equal((hi >> 40n) & 0xfffffn, 7n, "PV 123:104");
  assert.equal((hi >> 62n) & 1n, 1n, "T1 126: a read");
  assert.equal(hi >> 63n, 1n, "F 127");
  assert.equal(fsts(unit) & 0b11, 0b10, "PPF, no overflow");
  assert.equal((fsts(unit) >> 8) & 0xff, 0, "FRI: record 0");
});

test("every stage combination translates and writes through: SS 4/5-level, FS 4/5-level, nested FS 4/5 over SS 4/5, pass-through", () => {
  const prot = f.PT_READ | f.PT_WRITE | f.PT_USER | f.PT_ACCESSED;
  const cases: { name: string; pgtt: number; ss?: 48 | 57; fs?: 4 | 5; iova: bigint }[] = [
    { name: "SS 4-level", pgtt: 2, ss: 48, iova: 0x7fff_ffff_f000n },
    { name: "SS 5-level", pgtt: 2, ss: 57, iova: 0x1ff_ffff_ffff_f000n },
    { name: "FS 4-level", pgtt: 1, fs: 4, iova: 0x7fff_ffff_f000n },
    { name: "FS 5-level", pgtt: 1, fs: 5, iova: 0xffff_ffff_ffff_f000n },
    { name: "nested FS4/SS4", pgtt: 3, fs: 4, ss: 48, iova: 0x1234_5678_9000n },
    { name: "nested FS5/SS5", pgtt: 3, fs: 5, ss: 57, iova: 0xff00_0000_0000_0000n },
    { name: "nested FS4/SS5", pgtt: 3, fs: 4, ss: 57, iova: 0xffff_8000_0000_0000n },
    { name: "pass-through", pgtt: 4, iova: 0n },
  ];
  for (const c of cases) {
    const unit = new VtdUnit(new PhysMem());
    const rig = new VtdRig(unit);
    const data = frame(unit);
    const iova = c.pgtt === 4 ? BigInt(data * PAGE) : c.iova;
    const vpn = Number(iova >> 12n);
    const fsVpn = (levels: number): number => vpn % 2 ** (9 * levels); // canonical: drop the sign extension
    rig.setContext(SID);
    if (c.pgtt === 2) {
      const ss = new PageTableEngine(unit.mem, f.vtdSecondStage({ addressWidth: c.ss }));
      ss.map(vpn, data, 1, prot);
      rig.setPasid(SID, 0, { pgtt: 2, aw: c.ss === 57 ? 3 : 2, did: 1, ssptptr: ss.root * PAGE });
    } else if (c.pgtt === 1) {
      const fs = new PageTableEngine(unit.mem, f.vtdFirstStage({ levels: c.fs }));
      fs.map(fsVpn(c.fs as number), data, 1, prot);
      rig.setPasid(SID, 0, { pgtt: 1, fspm: c.fs === 5 ? 1 : 0, did: 1, fsptptr: fs.root * PAGE });
    } else if (c.pgtt === 3) {
      const gBase = 0x40000;
      const host = unit.mem.phys.allocRun(64);
      const ss = new PageTableEngine(unit.mem, f.vtdSecondStage({ addressWidth: c.ss }));
      ss.map(gBase, host, 64, prot);
      ss.map(gBase + 64, data, 1, prot);
      const fs = new PageTableEngine(new WindowFrameStore(unit.mem, gBase, host, 64), f.vtdFirstStage({ levels: c.fs }));
      fs.map(fsVpn(c.fs as number), gBase + 64, 1, prot);
      rig.setPasid(SID, 0, { pgtt: 3, aw: c.ss === 57 ? 3 : 2, fspm: c.fs === 5 ? 1 : 0, did: 1, ssptptr: ss.root * PAGE, fsptptr: fs.root * PAGE });
    } else {
      rig.setPasid(SID, 0, { pgtt: 4, did: 1 });
    }
    assert.equal(write(unit, SID, -1, iova + 0x10n, [c.pgtt, 0xee]).status, "done", c.name);
    assert.deepEqual([...unit.mem.read(data * PAGE + 0x10, 2)], [c.pgtt, 0xee], c.name);
    assert.equal(unit.translatePage(SID, -1, vpn, true), data, c.name);
  }
});
