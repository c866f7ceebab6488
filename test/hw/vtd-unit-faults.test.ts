/**
 * VT-d unit faults: primary fault logging (round robin, overflow, clearing), fault events and
 * their mask, FPD, and the reasons of nested translation (a stage-2 fault while walking stage 1 is
 * reported as stage 2), supervisor / execute / interrupt-range requests.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WindowFrameStore } from "../../src/hw/memory.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { PT_ACCESSED, PT_READ, PT_USER, PT_WRITE, vtdFirstStage, vtdSecondStage } from "../../src/hw/pagetable/format.js";
import { Pgtt } from "../../src/hw/vtd/tables.js";
import { DEFAULT_ECAP, EventCtl, Fsts, SmFault, VtdReg, type VtdRig, type VtdUnit } from "../../src/hw/vtd/unit.js";
import { PAGE, clearFaultRecord, faultRecord, fsts, newUnit, read, write } from "./vtd-unit-helpers.js";

const SID = 0x0300;
const RW = PT_READ | PT_WRITE;

/** A second-stage RID_PASID domain for sid with nothing mapped. */
function ssDomain(unit: VtdUnit, rig: VtdRig, sid: number, did: number, ctx = {}): PageTableEngine {
  const ss = new PageTableEngine(unit.mem, vtdSecondStage({ addressWidth: 48 }));
  rig.setContext(sid, ctx);
  rig.setPasid(sid, 0, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did, ssptptr: ss.root * PAGE });
  return ss;
}

test("faults fill the recording registers round robin; a busy register sets PFO and nothing more is recorded until PFO is cleared", () => {
  const { unit, rig } = newUnit();
  ssDomain(unit, rig, SID, 1);
  const nfr = unit.cap.nfr + 1;
  for (let i = 0; i < nfr; i++) assert.equal(read(unit, SID, -1, BigInt(i * PAGE), 1).r.status, "faulted");
  for (let i = 0; i < nfr; i++) assert.equal(faultRecord(unit, i)[0], BigInt(i * PAGE), `record ${i} holds page ${i}`);
  assert.equal(fsts(unit) & Fsts.PFO, 0);
  // The next fault finds register 0 still pending: overflow.
  read(unit, SID, -1, 0x99000n, 1);
  assert.equal(fsts(unit) & Fsts.PFO, Fsts.PFO);
  assert.equal(unit.stats.faultsRecorded, nfr);
  // Software clears record 0 but not PFO: still nothing recorded.
  clearFaultRecord(unit, 0);
  read(unit, SID, -1, 0x98000n, 1);
  assert.equal(faultRecord(unit, 0)[1] >> 63n, 0n);
  // Clear PFO: the next fault goes to register 0 (the next index after the last one used).
  unit.write32(VtdReg.FSTS, Fsts.PFO);
  read(unit, SID, -1, 0x97000n, 1);
  assert.equal(faultRecord(unit, 0)[0], 0x97000n);
  assert.equal(fsts(unit) & Fsts.PPF, Fsts.PPF);
});

test("PPF is the OR of the F bits; FRI names the register that set it", () => {
  const { unit, rig } = newUnit();
  ssDomain(unit, rig, SID, 1);
  read(unit, SID, -1, 0x1000n, 1);
  read(unit, SID, -1, 0x2000n, 1);
  clearFaultRecord(unit, 0);
  assert.equal(fsts(unit) & Fsts.PPF, Fsts.PPF, "record 1 still pending");
  clearFaultRecord(unit, 1);
  assert.equal(fsts(unit) & Fsts.PPF, 0);
  read(unit, SID, -1, 0x3000n, 1);
  assert.equal((fsts(unit) >> 8) & 0xff, 2, "PPF set again by record 2");
});

test("a fault event is delivered when PPF sets; masked (FECTL.IM) it stays pending (IP) until unmasked", () => {
  const { unit, rig } = newUnit({}, { unmaskEvents: false });
  ssDomain(unit, rig, SID, 1);
  let events = 0;
  unit.onFaultEvent = () => events++;
  read(unit, SID, -1, 0x1000n, 1);
  assert.equal(events, 0);
  assert.equal(unit.read32(VtdReg.FECTL), (EventCtl.IM | EventCtl.IP) >>> 0);
  unit.write32(VtdReg.FECTL, 0);
  assert.equal(events, 1);
  assert.equal(unit.read32(VtdReg.FECTL), 0);
  read(unit, SID, -1, 0x2000n, 1);
  assert.equal(events, 1, "PPF was already set: no new event");
  clearFaultRecord(unit, 0);
  clearFaultRecord(unit, 1);
  read(unit, SID, -1, 0x3000n, 1);
  assert.equal(events, 2);
});

test("FPD in the context entry suppresses the recording of qualified faults; the DMA still faults", () => {
  const { unit, rig } = newUnit();
  ssDomain(unit, rig, SID, 1, { fpd: true });
  const r = read(unit, SID, -1, 0x1000n, 1).r;
  assert.equal(r.status, "faulted");
  assert.equal(r.fault?.code, SmFault.SS_ENTRY_NOT_PRESENT);
  assert.equal(unit.stats.faultsRecorded, 0);
  // FPD in a PASID entry only covers that PASID.
  rig.setContext(0x0400);
  const ss = new PageTableEngine(unit.mem, vtdSecondStage({ addressWidth: 48 }));
  rig.setPasid(0x0400, 0, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did: 2, ssptptr: ss.root * PAGE, fpd: 1 });
  rig.setPasid(0x0400, 1, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did: 2, ssptptr: ss.root * PAGE });
  read(unit, 0x0400, 0, 0x1000n, 1);
  assert.equal(unit.stats.faultsRecorded, 0);
  read(unit, 0x0400, 1, 0x1000n, 1);
  assert.equal(unit.stats.faultsRecorded, 1);
});

/** A nested setup: guest RAM at GPA page gBase (n pages) mapped by s2; s1 built in guest memory. */
function nested(unit: VtdUnit, rig: VtdRig, sid: number) {
  const gBase = 0x1000;
  const n = 128;
  const host = unit.mem.phys.allocRun(n);
  const s2 = new PageTableEngine(unit.mem, vtdSecondStage({ addressWidth: 48, largePages2M: false, largePages1G: false }));
  s2.map(gBase, host, n, RW);
  const guest = new WindowFrameStore(unit.mem, gBase, host, n);
  const s1 = new PageTableEngine(guest, vtdFirstStage({ levels: 4 }));
  rig.setContext(sid);
  rig.setPasid(sid, 0, { pgtt: Pgtt.NESTED, aw: 2, did: 20, ssptptr: s2.root * PAGE, fsptptr: s1.root * PAGE });
  return { s1, s2, gBase, host, n, hostOf: (gp: number) => host + (gp - gBase) };
}

test("nested: a stage-2 fault on the first-stage root table is reported as stage 2 with 0x75 and the table's GPA", () => {
  const { unit, rig } = newUnit();
  const nt = nested(unit, rig, SID);
  nt.s1.map(0x10, nt.gBase + 100, 1, RW | PT_USER | PT_ACCESSED);
  nt.s2.unmap(nt.s1.root, 1); // the guest's FS root page is no longer mapped at stage 2
  const r = read(unit, SID, -1, 0x10000n, 4).r;
  assert.equal(r.status, "faulted");
  assert.equal(r.fault?.stage, 2);
  assert.equal(r.fault?.code, SmFault.NESTED_FS_ROOT_READ);
  assert.equal(r.fault?.ipa, BigInt(nt.s1.root * PAGE));
  assert.equal(r.fault?.iova, 0x10000n, "the record names the request's input address");
});

test("nested: a stage-2 fault on a lower first-stage table is 0x76; on the output 0x79; an output write stage 2 forbids 0x85", () => {
  const { unit, rig } = newUnit();
  const nt = nested(unit, rig, SID);
  nt.s1.map(0x10, nt.gBase + 100, 1, RW | PT_USER | PT_ACCESSED | 128);
  const leafTable = nt.s1.walk(0x10).steps[3].tablePa / PAGE; // the PT page (GPA)
  nt.s2.unmap(leafTable, 1);
  let r = read(unit, SID, -1, 0x10000n, 1).r;
  assert.deepEqual([r.fault?.stage, r.fault?.code, r.fault?.ipa], [2, SmFault.NESTED_FS_ENTRY_READ, BigInt(leafTable * PAGE)]);
  nt.s2.map(leafTable, nt.hostOf(leafTable), 1, RW);
  nt.s2.unmap(nt.gBase + 100, 1);
  r = read(unit, SID, -1, 0x10000n, 1).r;
  assert.deepEqual([r.fault?.stage, r.fault?.code, r.fault?.ipa], [2, SmFault.SS_ENTRY_NOT_PRESENT, BigInt((nt.gBase + 100) * PAGE)]);
  nt.s2.map(nt.gBase + 100, nt.hostOf(nt.gBase + 100), 1, PT_READ);
  const w = write(unit, SID, -1, 0x10000n, [1]);
  assert.deepEqual([w.fault?.stage, w.fault?.code, w.fault?.kind], [2, SmFault.NO_WRITE, "permission"]);
  assert.equal(read(unit, SID, -1, 0x10000n, 1).r.status, "done");
});

test("nested: stage 2 refusing the write of a first-stage entry's A bit is 0x77 (the walk itself may read it)", () => {
  const { unit, rig } = newUnit();
  const nt = nested(unit, rig, SID);
  nt.s1.map(0x10, nt.gBase + 100, 1, RW | PT_USER); // leaf A clear: the hardware must set it
  const leafTable = nt.s1.walk(0x10).steps[3].tablePa / PAGE;
  nt.s2.unmap(leafTable, 1);
  nt.s2.map(leafTable, nt.hostOf(leafTable), 1, PT_READ);
  const r = read(unit, SID, -1, 0x10000n, 1).r;
  assert.deepEqual([r.fault?.stage, r.fault?.code], [2, SmFault.NESTED_FS_ENTRY_WRITE]);
});

test("nested: a stage-1 fault is stage 1 (0x71) and stage-1 permissions intersect stage 2's", () => {
  const { unit, rig } = newUnit();
  const nt = nested(unit, rig, SID);
  nt.s1.map(0x10, nt.gBase + 100, 1, PT_READ | PT_USER | PT_ACCESSED);
  const r = read(unit, SID, -1, 0x20000n, 1).r;
  assert.deepEqual([r.fault?.stage, r.fault?.code, r.fault?.ipa], [1, SmFault.FS_ENTRY_NOT_PRESENT, -1n]);
  assert.equal(write(unit, SID, -1, 0x10000n, [1]).fault?.code, SmFault.NO_WRITE, "stage 1 read-only");
  assert.equal(unit.translatePage(SID, -1, 0x10, false), nt.hostOf(nt.gBase + 100));
  assert.equal(unit.translatePage(SID, -1, 0x10, true), -1);
});

test("RID_PASID != 0 needs ECAP.RPS (0x48); RID_PRIV makes requests without PASID supervisor ones", () => {
  const { unit, rig } = newUnit();
  ssDomain(unit, rig, SID, 1, { ridPasid: 5 });
  assert.equal(read(unit, SID, -1, 0n, 1).r.fault?.code, SmFault.CONTEXT_RID_PASID);
  // RID_PRIV with a first-stage supervisor-only page and SRE set.
  const { unit: u2, rig: r2 } = newUnit({ ecap: { ...DEFAULT_ECAP, srs: 1 } });
  const fs = new PageTableEngine(u2.mem, vtdFirstStage());
  const data = u2.mem.phys.allocRun(1);
  fs.map(0x10, data, 1, RW | PT_ACCESSED);
  r2.setContext(SID, { ridPriv: true });
  r2.setPasid(SID, 0, { pgtt: Pgtt.FIRST_STAGE, did: 3, fsptptr: fs.root * PAGE, sre: 1 });
  assert.equal(read(u2, SID, -1, 0x10000n, 1).r.status, "done", "supervisor request to a supervisor page");
  assert.equal(u2.translatePage(SID, -1, 0x10, false), data, "IOTLB entries of a RID_PRIV context serve the fast path");
  // The same page through PASID 0 as a user request: U/S clear.
  r2.setContext(0x0301);
  r2.setPasid(0x0301, 0, { pgtt: Pgtt.FIRST_STAGE, did: 3, fsptptr: fs.root * PAGE, sre: 1 });
  assert.equal(read(u2, 0x0301, 0, 0x10000n, 1).r.fault?.code, SmFault.FS_USER);
  assert.equal(read(u2, 0x0301, 0, 0x10000n, 1, true).r.status, "done");
});

test("execute requests with PASID fault 0x5C (no ERE); outputs in the interrupt range fault 0x87", () => {
  const { unit, rig } = newUnit();
  const ss = ssDomain(unit, rig, SID, 1);
  ss.map(0x10, 0xfee00, 1, RW);
  assert.equal(read(unit, SID, -1, 0x10000n, 4).r.fault?.code, SmFault.INTERRUPT_ADDR);
  const data = unit.mem.phys.allocRun(1);
  ss.map(0x20, data, 1, RW);
  const r = unit.dma({ sid: SID, pasid: 0, iova: 0x20000n, length: 1, write: false, data: new Uint8Array(1), exec: true });
  assert.equal(r.fault?.code, SmFault.PASID_ERE_CLEAR);
  const x = new Uint8Array(1);
  assert.equal(unit.dma({ sid: SID, pasid: 0, iova: 0x20000n, length: 1, write: false, data: x }).status, "done");
  const [, hi] = faultRecord(unit, 1);
  assert.equal((hi >> 32n) & 0xffn, BigInt(SmFault.PASID_ERE_CLEAR));
  assert.equal((hi >> 30n) & 1n, 1n, "EXE 94");
});
