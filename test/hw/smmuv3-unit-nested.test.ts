/**
 * SMMUv3 unit: nested translation (a guest's CD table and stage-1 tables in guest memory, walked
 * through stage 2), stage-2 faults by what they were translating, and recoverable faults: stall
 * with CMD_RESUME and page requests with CMD_PRI_RESP.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { WindowFrameStore } from "../../src/hw/memory.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { armStage1 } from "../../src/hw/pagetable/format.js";
import type { DmaResult } from "../../src/hw/dma.js";
import { EventClass, EventId } from "../../src/hw/smmuv3/events.js";
import { Cd, S1Dss, SteConfig } from "../../src/hw/smmuv3/tables.js";
import { PriResp, ResumeAction } from "../../src/hw/smmuv3/cmdq.js";
import { Rig, RO, RW, linuxCd, s2Fields } from "./smmuv3-unit-harness.js";

const GBASE = 0x40000; // guest RAM at IPA 1 GiB
const RAM = 256; // 1 MiB of guest RAM

/** A guest: RAM mapped by stage 2, a stage-1 table and a CD table in its memory, a nested STE. */
function guest(opts: { cd?: object; ste?: object } = {}) {
  const rig = new Rig();
  const host = rig.dataPages(RAM);
  const s2 = rig.s2Table();
  s2.map(GBASE, host, RAM, RW);
  const gmem = new WindowFrameStore(rig.mem, GBASE, host, RAM);
  const s1 = new PageTableEngine(gmem, armStage1());
  const cdGpn = gmem.allocTable(1);
  const dataGpn = gmem.allocTable(4);
  const writeGuestCd = (index: number, v: object): void => {
    const w = Cd.encodeWords({ ...linuxCd(s1.root * 4096, 9), ...v });
    rig.writeWords((host + (cdGpn - GBASE)) * 4096 + index * 64, w);
  };
  writeGuestCd(0, opts.cd ?? {});
  const sid = 0x21;
  rig.writeSte(sid, { v: 1, config: SteConfig.NESTED, s1ContextPtr: cdGpn * 4096, ...s2Fields(s2.root * 4096, 6), ...opts.ste });
  const hostOf = (gpn: number): number => host + (gpn - GBASE);
  return { rig, host, s2, gmem, s1, cdGpn, dataGpn, sid, hostOf, writeGuestCd };
}

test("nested: guest VA -> IPA -> PA through the guest's CD and stage-1 tables in guest memory", () => {
  const g = guest();
  g.s1.map(0x7000, g.dataGpn, 4, RW);
  assert.equal(g.rig.unit.translatePage(g.sid, -1, 0x7002, true), g.hostOf(g.dataGpn + 2));
  const src = new Uint8Array([1, 2, 3, 4, 5]);
  const r = g.rig.unit.dma({ sid: g.sid, pasid: -1, iova: 0x7001ffen, length: 5, write: true, data: src });
  assert.equal(r.status, "done");
  assert.deepEqual(g.rig.mem.read(g.hostOf(g.dataGpn + 1) * 4096 + 0xffe, 5), src);
  // the TLB caches the combined translation under (ASID 9, VMID 6)
  const e = g.rig.unit.tlb.entries().find((x) => x.vpn === 0x7001);
  assert.ok(e !== undefined && e.k1 === 9 && e.k2 === 6 && e.ppn === g.hostOf(g.dataGpn + 1));
});

test("a stage-2 fault while walking the guest's stage-1 tables is reported as S2 with CLASS = TT and the table's IPA", () => {
  const g = guest();
  g.s1.map(0x7000, g.dataGpn, 1, RW);
  const leafTable = g.s1.walk(0x7000).steps.at(-1);
  assert.ok(leafTable);
  const tableGpn = Math.floor(leafTable.entryPa / 4096);
  g.s2.unmap(tableGpn, 1);
  const r = g.rig.unit.dma({ sid: g.sid, pasid: -1, iova: 0x7000123n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.status, "faulted");
  assert.equal(r.fault?.stage, 2);
  assert.equal(r.fault?.kind, "translation");
  assert.equal(r.fault?.ipa, BigInt(tableGpn * 4096));
  const [e] = g.rig.events();
  assert.ok(e.kind === "fTranslation");
  if (e.kind !== "fTranslation") return;
  assert.equal(e.s2, 1);
  assert.equal(e.class, EventClass.TT);
  assert.equal(e.ipa, tableGpn * 4096);
  assert.equal(e.inputAddr, 0x7000123n);
});

test("a stage-2 fault on the stage-1 output is CLASS = IN with the output IPA; a stage-2 permission fault is F_PERMISSION at stage 2", () => {
  const g = guest();
  g.s1.map(0x7000, GBASE + RAM + 5, 1, RW); // an IPA outside the guest's RAM
  g.s1.map(0x7001, g.dataGpn, 1, RW);
  g.s2.unmap(g.dataGpn, 1);
  g.s2.map(g.dataGpn, g.hostOf(g.dataGpn), 1, RO);
  const r = g.rig.unit.dma({ sid: g.sid, pasid: -1, iova: 0x7000000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.fault?.ipa, BigInt((GBASE + RAM + 5) * 4096));
  assert.equal(g.rig.unit.dma({ sid: g.sid, pasid: -1, iova: 0x7001000n, length: 4, write: false, data: new Uint8Array(4) }).status, "done");
  const w = g.rig.unit.dma({ sid: g.sid, pasid: -1, iova: 0x7001000n, length: 4, write: true, data: new Uint8Array(4) });
  assert.equal(w.fault?.kind, "permission");
  assert.equal(w.fault?.stage, 2);
  const ev = g.rig.events();
  assert.deepEqual(
    ev.map((e) => (e.kind === "fTranslation" || e.kind === "fPermission" ? [e.kind, e.s2, e.class, e.ipa] : [e.kind])),
    [
      ["fTranslation", 1, EventClass.IN, (GBASE + RAM + 5) * 4096],
      ["fPermission", 1, EventClass.IN, g.dataGpn * 4096],
    ],
  );
});

test("a stage-2 fault fetching the guest's CD is reported with CLASS = CD", () => {
  const g = guest();
  g.s2.unmap(g.cdGpn, 1);
  const r = g.rig.unit.dma({ sid: g.sid, pasid: -1, iova: 0x7000000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.fault?.stage, 2);
  const [e] = g.rig.events();
  assert.ok(e.kind === "fTranslation" && e.class === EventClass.CD && e.ipa === g.cdGpn * 4096);
});

test("nested with S1DSS = bypass: non-substream traffic is translated by stage 2 only", () => {
  const g = guest({ ste: { s1cdmax: 2, s1dss: S1Dss.BYPASS } });
  assert.equal(g.rig.unit.translatePage(g.sid, -1, GBASE + 7, false), g.hostOf(GBASE + 7));
  assert.equal(g.rig.unit.translatePage(g.sid, -1, GBASE + RAM, false), -1);
});

test("a guest CD that is not valid is C_BAD_CD; the event carries the physical StreamID", () => {
  const g = guest({ cd: { v: 0 } });
  const r = g.rig.unit.dma({ sid: g.sid, pasid: -1, iova: 0n, length: 1, write: false, data: new Uint8Array(1) });
  assert.equal(r.fault?.code, EventId.C_BAD_CD);
  assert.deepEqual(g.rig.events().map((e) => [e.kind, e.sid]), [["cBadCd", g.sid]]);
});

// ---- stall --------------------------------------------------------------------------------------

function stallStream(cdExtra = {}, steExtra = {}) {
  const rig = new Rig();
  const pt = rig.s1Table();
  const cdt = rig.alloc(1);
  rig.writeCd(cdt, linuxCd(pt.root * 4096, 3, { s: 1, ...cdExtra }));
  rig.writeSte(6, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt, ...steExtra });
  return { rig, pt };
}

test("stall round trip: the fault event has Stall = 1 and a STAG, DMA is pending, RESUME(retry) finishes it from the faulting page", () => {
  const { rig, pt } = stallStream();
  const first = rig.dataPages(1);
  pt.map(0x10, first, 1, RW);
  const done: DmaResult[] = [];
  const src = new Uint8Array(8192).map((_, i) => i & 0xff);
  const r = rig.unit.dma({ sid: 6, pasid: -1, iova: 0x10000n, length: 8192, write: true, data: src, onComplete: (x) => done.push(x) });
  assert.equal(r.status, "pending");
  assert.equal(r.bytes, 4096);
  assert.equal(r.fault?.recoverable, true);
  const [e] = rig.events();
  assert.ok(e.kind === "fTranslation" && e.stall === 1);
  if (e.kind !== "fTranslation") return;
  assert.equal(rig.unit.pendingCount, 1);
  const second = rig.dataPages(1);
  pt.map(0x11, second, 1, RW);
  rig.cmd({ kind: "resume", sid: 6, stag: e.stag + 1, action: ResumeAction.RETRY });
  assert.equal(done.length, 0, "a RESUME with another STAG is ignored");
  rig.cmd({ kind: "resume", sid: 6, stag: e.stag, action: ResumeAction.RETRY });
  assert.deepEqual(done, [{ status: "done", bytes: 8192, fault: null }]);
  assert.deepEqual(rig.mem.read(second * 4096, 4096), src.subarray(4096));
  assert.equal(rig.unit.pendingCount, 0);
});

test("RESUME with Abort, and CMD_STALL_TERM, end stalled transactions as faulted", () => {
  const { rig } = stallStream();
  const done: DmaResult[] = [];
  const go = (iova: bigint): DmaResult => rig.unit.dma({ sid: 6, pasid: -1, iova, length: 4, write: false, data: new Uint8Array(4), onComplete: (x) => done.push(x) });
  assert.equal(go(0x1000n).status, "pending");
  assert.equal(go(0x2000n).status, "pending");
  assert.equal(go(0x3000n).status, "pending");
  const stags = rig.events().map((e) => (e.kind === "fTranslation" ? e.stag : -1));
  assert.equal(new Set(stags).size, 3, "distinct STAGs");
  rig.cmd({ kind: "resume", sid: 6, stag: stags[1], action: ResumeAction.ABORT });
  assert.deepEqual(done.map((d) => [d.status, d.fault?.iova]), [["faulted", 0x2000n]]);
  rig.cmd({ kind: "stallTerm", sid: 6 });
  assert.deepEqual(done.map((d) => d.fault?.iova), [0x2000n, 0x1000n, 0x3000n]);
  assert.equal(rig.unit.pendingCount, 0);
});

test("S1STALLD = 1 (or CD.S = 0) makes stage-1 faults terminate instead of stalling", () => {
  for (const [cd, ste] of [
    [{}, { s1stalld: 1 }],
    [{ s: 0 }, {}],
  ]) {
    const { rig } = stallStream(cd, ste);
    const r = rig.unit.dma({ sid: 6, pasid: -1, iova: 0x5000n, length: 4, write: false, data: new Uint8Array(4) });
    assert.equal(r.status, "faulted");
    const [e] = rig.events();
    assert.ok(e.kind === "fTranslation" && e.stall === 0);
  }
});

test("software answering the stall from the event interrupt: dma() returns the final result and onComplete is not called", () => {
  const { rig, pt } = stallStream();
  let completions = 0;
  rig.unit.irq.eventq = () => {
    for (const e of rig.events()) {
      if (e.kind !== "fTranslation" || e.stall !== 1) continue;
      pt.map(Number(e.inputAddr >> 12n), rig.dataPages(1), 1, RW);
      rig.cmd({ kind: "resume", sid: e.sid, stag: e.stag, action: ResumeAction.RETRY });
    }
  };
  const r = rig.unit.dma({ sid: 6, pasid: -1, iova: 0x9000n, length: 12288, write: false, data: new Uint8Array(12288), onComplete: () => completions++ });
  assert.deepEqual(r, { status: "done", bytes: 12288, fault: null });
  assert.equal(completions, 0);
  assert.equal(rig.unit.stats.stalls, 3, "one stall per unmapped page");
});

test("stage-2 faults stall with STE.S2S; the resumed request completes through stage 2", () => {
  const rig = new Rig();
  const s2 = rig.s2Table();
  rig.writeSte(8, { v: 1, config: SteConfig.S2_TRANS, ...s2Fields(s2.root * 4096, 4, { s2s: 1 }) });
  const done: DmaResult[] = [];
  const r = rig.unit.dma({ sid: 8, pasid: -1, iova: 0x44000n, length: 4, write: false, data: new Uint8Array(4), onComplete: (x) => done.push(x) });
  assert.equal(r.status, "pending");
  const [e] = rig.events();
  assert.ok(e.kind === "fTranslation" && e.stall === 1 && e.s2 === 1);
  if (e.kind !== "fTranslation") return;
  s2.map(0x44, rig.dataPages(1), 1, RW);
  rig.cmd({ kind: "resume", sid: 8, stag: e.stag, action: ResumeAction.RETRY });
  assert.equal(done[0]?.status, "done");
});

// ---- PRI ------------------------------------------------------------------------------------------

test("PRI: a translation fault of a PRI-enabled stream becomes a page request; PRI_RESP Success retries it, Failure ends it", () => {
  const { rig, pt } = stallStream({ s: 0 });
  rig.unit.setPriEnabled(6, true);
  const done: DmaResult[] = [];
  const r = rig.unit.dma({ sid: 6, pasid: -1, iova: 0x20abcn, length: 4, write: true, data: new Uint8Array([9, 8, 7, 6]), onComplete: (x) => done.push(x) });
  assert.equal(r.status, "pending");
  assert.deepEqual(rig.events(), [], "no event: the page request replaces it");
  const [pr] = rig.pageRequests();
  assert.equal(pr.sid, 6);
  assert.equal(pr.ssv, 0);
  assert.equal(pr.addr, 0x20000);
  assert.equal(pr.write, 1);
  assert.equal(pr.read, 0);
  assert.equal(pr.last, 1);
  const page = rig.dataPages(1);
  pt.map(0x20, page, 1, RW);
  rig.cmd({ kind: "priResp", sid: 6, prgIndex: pr.prgIndex, resp: PriResp.SUCCESS });
  assert.deepEqual(done, [{ status: "done", bytes: 4, fault: null }]);
  assert.deepEqual(rig.mem.read(page * 4096 + 0xabc, 4), new Uint8Array([9, 8, 7, 6]));
  const r2 = rig.unit.dma({ sid: 6, pasid: -1, iova: 0x30000n, length: 4, write: false, data: new Uint8Array(4), onComplete: (x) => done.push(x) });
  assert.equal(r2.status, "pending");
  const [pr2] = rig.pageRequests();
  assert.equal(pr2.read, 1);
  rig.cmd({ kind: "priResp", sid: 6, prgIndex: pr2.prgIndex, resp: PriResp.FAIL });
  assert.equal(done[1].status, "faulted");
  assert.equal(rig.unit.pendingCount, 0);
});

test("PRI without an enabled PRI queue: the request ends as faulted, nothing is queued", () => {
  const { rig } = stallStream({ s: 0 });
  rig.unit.setPriEnabled(6, true);
  rig.unit.writeReg(0x20, 0b1101); // CR0 without PRIQEN
  const r = rig.unit.dma({ sid: 6, pasid: -1, iova: 0x30000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.status, "faulted");
  assert.equal(rig.unit.pendingCount, 0);
});
