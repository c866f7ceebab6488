/**
 * VT-d unit: recoverable faults as page requests (queue, response, retry) and the invalidation
 * queue itself (wait descriptors, completion events, queue errors, 128-bit descriptors).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PhysMem } from "../../src/mm/phys.js";
import type { DmaResult } from "../../src/hw/dma.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { PT_ACCESSED, PT_READ, PT_USER, PT_WRITE, vtdFirstStage, vtdSecondStage } from "../../src/hw/pagetable/format.js";
import { PageRequestDesc, encodeQi } from "../../src/hw/vtd/qi.js";
import { Pgtt } from "../../src/hw/vtd/tables.js";
import { Fsts, Gcmd, ICS_IWC, Prs, SmFault, VtdReg, VtdUnit, type VtdRig } from "../../src/hw/vtd/unit.js";
import { PAGE, get64, newUnit } from "./vtd-unit-helpers.js";

const SID = 0x0a10;
const FS_PROT = PT_READ | PT_WRITE | PT_USER | PT_ACCESSED;

function fsDomain(unit: VtdUnit, rig: VtdRig, pasid: number, pre = true): PageTableEngine {
  const fs = new PageTableEngine(unit.mem, vtdFirstStage());
  rig.setContext(SID, { pre });
  rig.setPasid(SID, pasid, { pgtt: Pgtt.FIRST_STAGE, did: 6, fsptptr: fs.root * PAGE });
  unit.enablePri(SID);
  return fs;
}

function respond(rig: VtdRig, prgi: number, rc: number, pasid = 3): void {
  assert.ok(rig.submit({ kind: "pageGroupResponse", rid: SID, pasid, pp: 1, rc, prgi, lpig: 1 }));
}

test("a first-stage fault of a PRI device is a page request; a success response retries from the faulting page and completes", () => {
  const { unit, rig } = newUnit();
  const fs = fsDomain(unit, rig, 3);
  const data = unit.mem.phys.allocRun(2);
  unit.mem.write(data * PAGE, new Uint8Array(2 * PAGE).fill(0x5a));
  fs.map(0x100, data, 1, FS_PROT);
  let events = 0;
  unit.onPageRequestEvent = () => events++;
  let done: DmaResult | null = null;
  const buf = new Uint8Array(2 * PAGE);
  const r = unit.dma({ sid: SID, pasid: 3, iova: 0x100000n, length: 2 * PAGE, write: false, data: buf, onComplete: (x) => (done = x) });
  assert.equal(r.status, "pending");
  assert.equal(r.bytes, PAGE, "the first page moved before the fault");
  assert.equal(r.fault?.recoverable, true);
  assert.equal(r.fault?.code, SmFault.FS_ENTRY_NOT_PRESENT);
  assert.equal(unit.stats.faultsRecorded, 0, "a page request is not a fault record");
  assert.equal(events, 1);
  assert.equal(unit.read32(VtdReg.PRS) & Prs.PPR, Prs.PPR);
  // The descriptor, bit by bit: type 1 (7:0), PP 8, RID 31:16, PASID 51:32 | RDR 64, WRR 65, LPIG 66, PRGI 75:67, ADDR 127:76.
  const [at] = rig.pageRequests();
  const qw0 = get64(unit, at);
  const qw1 = get64(unit, at + 8);
  assert.equal(qw0, 0x1n | (1n << 8n) | (BigInt(SID) << 16n) | (3n << 32n));
  assert.equal(qw1, 0x101000n | 1n | (1n << 2n) | (0n << 3n));
  assert.equal(PageRequestDesc.decode(unit.mem.read(at, 32)).prgi, 0);
  assert.equal(unit.pendingPageRequests, 1);
  // Software makes the page present, consumes the request and answers the group.
  fs.map(0x101, data + 1, 1, FS_PROT);
  rig.consumePageRequests();
  respond(rig, 0, 0);
  assert.deepEqual(done, { status: "done", bytes: 2 * PAGE, fault: null });
  assert.ok(buf.every((b) => b === 0x5a));
  assert.equal(unit.pendingPageRequests, 0);
});

test("a retry that faults again sends a new page request and stays pending", () => {
  const { unit, rig } = newUnit();
  fsDomain(unit, rig, 3);
  let completions = 0;
  const r = unit.dma({ sid: SID, pasid: 3, iova: 0x5000n, length: 4, write: true, data: new Uint8Array(4), onComplete: () => completions++ });
  assert.equal(r.status, "pending");
  respond(rig, 0, 0);
  assert.equal(completions, 0);
  assert.equal(unit.pendingPageRequests, 1);
  assert.equal(unit.stats.pageRequests, 2);
  const reqs = rig.pageRequests();
  assert.equal(reqs.length, 2);
  assert.equal((get64(unit, reqs[1] + 8) >> 1n) & 1n, 1n, "WRR: a write");
});

test("an Invalid response completes the DMA as faulted; Response Failure also stops the device's PRI", () => {
  const { unit, rig } = newUnit();
  fsDomain(unit, rig, 3);
  const results: DmaResult[] = [];
  unit.dma({ sid: SID, pasid: 3, iova: 0x5000n, length: 4, write: false, data: new Uint8Array(4), onComplete: (x) => results.push(x) });
  unit.dma({ sid: SID, pasid: 3, iova: 0x6000n, length: 4, write: false, data: new Uint8Array(4), onComplete: (x) => results.push(x) });
  respond(rig, 1, 0x1);
  assert.equal(results.length, 1);
  assert.equal(results[0].status, "faulted");
  assert.equal(results[0].fault?.iova, 0x6000n);
  assert.ok(unit.priEnabled(SID));
  respond(rig, 0, 0xf);
  assert.equal(results[1].status, "faulted");
  assert.equal(unit.priEnabled(SID), false);
  // Without PRI the next fault is an ordinary, recorded one.
  const r = unit.dma({ sid: SID, pasid: 3, iova: 0x7000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.status, "faulted");
  assert.equal(unit.stats.faultsRecorded, 1);
});

test("a response for a group nobody waits for is ignored", () => {
  const { unit, rig } = newUnit();
  fsDomain(unit, rig, 3);
  respond(rig, 9, 0);
  assert.equal(unit.pendingPageRequests, 0);
});

test("PRE clear in the context entry: the page request is refused and recorded as fault 0x47", () => {
  const { unit, rig } = newUnit();
  fsDomain(unit, rig, 3, false);
  const r = unit.dma({ sid: SID, pasid: 3, iova: 0x5000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.status, "faulted");
  assert.equal(r.fault?.code, SmFault.CONTEXT_PRE_CLEAR);
  assert.equal(unit.stats.faultsRecorded, 1);
  assert.equal(rig.pageRequests().length, 0);
});

test("second-stage faults are never page requests", () => {
  const { unit, rig } = newUnit();
  const ss = new PageTableEngine(unit.mem, vtdSecondStage());
  rig.setContext(SID, { pre: true });
  rig.setPasid(SID, 0, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did: 1, ssptptr: ss.root * PAGE });
  unit.enablePri(SID);
  const r = unit.dma({ sid: SID, pasid: -1, iova: 0x5000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.status, "faulted");
  assert.equal(r.fault?.recoverable, false);
  assert.equal(rig.pageRequests().length, 0);
});

test("a full page request queue sets PRS.PRO and the request ends faulted", () => {
  const { unit, rig } = newUnit();
  fsDomain(unit, rig, 3);
  // One 4 KiB queue: 128 slots, 127 usable (head == tail means empty).
  for (let i = 0; i < 127; i++) {
    assert.equal(unit.dma({ sid: SID, pasid: 3, iova: BigInt((0x100 + i) * PAGE), length: 1, write: false, data: new Uint8Array(1) }).status, "pending");
  }
  const r = unit.dma({ sid: SID, pasid: 3, iova: 0x900000n, length: 1, write: false, data: new Uint8Array(1) });
  assert.equal(r.status, "faulted");
  assert.equal(r.fault?.recoverable, true);
  assert.equal(unit.read32(VtdReg.PRS) & Prs.PRO, Prs.PRO);
  rig.consumePageRequests();
  unit.write32(VtdReg.PRS, Prs.PRO);
  assert.equal(unit.dma({ sid: SID, pasid: 3, iova: 0x900000n, length: 1, write: false, data: new Uint8Array(1) }).status, "pending");
});

test("a wait descriptor writes its status word; with IF it sets ICS.IWC and raises the invalidation event", () => {
  const { unit, rig } = newUnit();
  let events = 0;
  unit.onInvalidationEvent = () => events++;
  const st = unit.mem.phys.allocRun(1);
  unit.mem.phys.frameU32(st);
  assert.ok(rig.submit({ kind: "wait", sw: 1, if: 1, statusData: 0xc0ffee, statusAddr: BigInt(st * PAGE + 8) }));
  assert.equal(unit.mem.read32(st * PAGE + 8), 0xc0ffee);
  assert.equal(unit.read32(VtdReg.ICS), ICS_IWC);
  assert.equal(events, 1);
  unit.write32(VtdReg.ICS, ICS_IWC);
  assert.equal(unit.read32(VtdReg.ICS), 0);
});

test("an unknown descriptor type stops the queue at it (FSTS.IQE, IQH there); earlier ones took effect; clearing IQE resumes", () => {
  const { unit, rig } = newUnit();
  let faults = 0;
  unit.onFaultEvent = () => faults++;
  const ss = new PageTableEngine(unit.mem, vtdSecondStage());
  rig.setContext(SID);
  rig.setPasid(SID, 0, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did: 1, ssptptr: ss.root * PAGE });
  ss.map(0, unit.mem.phys.allocRun(1), 1, PT_READ);
  unit.translatePage(SID, -1, 0, false);
  const head0 = Number(unit.read64(VtdReg.IQH));
  // Descriptor type 0x7f is unknown.
  const bad = new Uint8Array(32);
  bad[0] = 0x0f;
  bad[1] = 0x0e;
  const iq = rig.iqPfn * PAGE;
  unit.mem.write(iq + head0 + 32, bad);
  unit.mem.write(iq + head0, encodeQi({ kind: "iotlb", g: 1 }));
  unit.mem.write(iq + head0 + 64, encodeQi({ kind: "pasidCache", g: 3 }));
  unit.write64(VtdReg.IQT, BigInt(head0 + 96));
  assert.equal(unit.read32(VtdReg.FSTS) & Fsts.IQE, Fsts.IQE);
  assert.equal(Number(unit.read64(VtdReg.IQH)), head0 + 32, "IQH at the bad descriptor");
  assert.equal(unit.read32(VtdReg.IQERCD) & 0xf, 3);
  assert.equal(unit.iotlb.size, 0, "the IOTLB flush before it ran");
  assert.equal(unit.pasidCacheSize, 1, "the PASID-cache flush after it did not");
  assert.equal(faults, 1);
  // Software replaces the bad descriptor and clears IQE: the hardware goes on from IQH.
  unit.mem.write(iq + head0 + 32, encodeQi({ kind: "wait" }));
  unit.write32(VtdReg.FSTS, Fsts.IQE);
  assert.equal(unit.pasidCacheSize, 0);
  assert.equal(Number(unit.read64(VtdReg.IQH)), head0 + 96);
});

test("a descriptor with a reserved bit set is a queue error (IQEI 4)", () => {
  const { unit, rig } = newUnit();
  const d = encodeQi({ kind: "iotlb", g: 1 });
  d[1] |= 0x01; // bit 8: reserved in the IOTLB descriptor
  assert.equal(rig.submitRaw(d), false);
  assert.equal(unit.read32(VtdReg.FSTS) & Fsts.IQE, Fsts.IQE);
  assert.equal(unit.read32(VtdReg.IQERCD) & 0xf, 4);
  rig.recoverQueue();
  assert.ok(rig.submit({ kind: "iotlb", g: 1 }), "the queue works again");
});

test("a tail not aligned to 256-bit descriptors is a queue error (IQEI 1)", () => {
  const { unit } = newUnit();
  unit.write64(VtdReg.IQT, 0x10n);
  assert.equal(unit.read32(VtdReg.FSTS) & Fsts.IQE, Fsts.IQE);
  assert.equal(unit.read32(VtdReg.IQERCD) & 0xf, 1);
});

test("128-bit descriptors (IQA.DW = 0) are fetched 16 bytes apart", () => {
  const unit = new VtdUnit(new PhysMem());
  const iq = unit.mem.phys.allocRun(1);
  unit.mem.phys.frameU32(iq);
  const st = unit.mem.phys.allocRun(1);
  unit.mem.phys.frameU32(st);
  unit.write64(VtdReg.IQA, BigInt(iq * PAGE)); // DW 0, QS 0: 256 descriptors of 16 bytes
  unit.write32(VtdReg.GCMD, Gcmd.QIE);
  unit.mem.write(iq * PAGE, encodeQi({ kind: "wait", sw: 1, statusData: 1, statusAddr: BigInt(st * PAGE) }, 128));
  unit.mem.write(iq * PAGE + 16, encodeQi({ kind: "wait", sw: 1, statusData: 2, statusAddr: BigInt(st * PAGE + 4) }, 128));
  unit.write64(VtdReg.IQT, 32n);
  assert.equal(unit.read32(VtdReg.FSTS) & Fsts.IQE, 0);
  assert.deepEqual([unit.mem.read32(st * PAGE), unit.mem.read32(st * PAGE + 4)], [1, 2]);
  assert.equal(Number(unit.read64(VtdReg.IQH)), 32);
});
