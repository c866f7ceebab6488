/**
 * SMMUv3 unit: configuration structures built by hand with the codecs (STE, CD, L1 descriptors),
 * translations through them, the events the architecture names for each failure, and the
 * command-queue and event-queue mechanics.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { CmdOp, encodeCmdWords } from "../../src/hw/smmuv3/cmdq.js";
import { EventClass, EventId } from "../../src/hw/smmuv3/events.js";
import { S1Dss, S1Fmt, SteConfig } from "../../src/hw/smmuv3/tables.js";
import { CmdqErr, GBPA_ABORT, GBPA_UPDATE, GERROR_CMDQ_ERR, SmmuReg, CR0_CMDQEN, CR0_EVTQEN } from "../../src/hw/smmuv3/unit-regs.js";
import { Idr0 } from "../../src/hw/smmuv3/regs.js";
import { defaultIdRegs } from "../../src/hw/smmuv3/unit-regs.js";
import { Rig, RO, RW, linuxCd } from "./smmuv3-unit-harness.js";

function bytes(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

/** A stage-1 stream: sid 3, one CD (no substreams), IOVA pages 0x100..0x103 mapped RW. */
function s1Stream(extraCd = {}) {
  const rig = new Rig();
  const pt = rig.s1Table();
  const data = rig.dataPages(4);
  pt.map(0x100, data, 4, RW);
  const cdt = rig.alloc(1);
  rig.writeCd(cdt, linuxCd(pt.root * 4096, 5, extraCd));
  rig.writeSte(3, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt });
  return { rig, pt, data, cdt };
}

test("a stage-1 STE with a single CD translates through the CD's TTB0 and DMA reaches the mapped frames", () => {
  const { rig, data } = s1Stream();
  const u = rig.unit;
  assert.equal(u.translatePage(3, -1, 0x101, false), data + 1);
  const src = bytes(6000);
  const w = u.dma({ sid: 3, pasid: -1, iova: 0x100ff0n, length: 6000, write: true, data: src });
  assert.deepEqual(w, { status: "done", bytes: 6000, fault: null });
  assert.deepEqual(rig.mem.read(data * 4096 + 0xff0, 6000), src, "bytes land across the page boundary");
  const dst = new Uint8Array(6000);
  assert.equal(u.dma({ sid: 3, pasid: -1, iova: 0x100ff0n, length: 6000, write: false, data: dst }).status, "done");
  assert.deepEqual(dst, src);
  assert.deepEqual(rig.events(), []);
});

test("a bypass STE passes addresses through; an abort STE terminates silently (no event)", () => {
  const rig = new Rig();
  rig.writeSte(1, { v: 1, config: SteConfig.BYPASS });
  rig.writeSte(2, { v: 1, config: SteConfig.ABORT });
  assert.equal(rig.unit.translatePage(1, -1, 0x12345, true), 0x12345);
  const r = rig.unit.dma({ sid: 2, pasid: -1, iova: 0x1000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.status, "faulted");
  assert.equal(r.fault?.kind, "blocked");
  assert.equal(r.fault?.code, 0);
  assert.deepEqual(rig.events(), []);
});

test("a translation fault writes F_TRANSLATION with StreamID, SubstreamID, RnW and the input address", () => {
  const { rig, data } = s1Stream();
  const src = bytes(8192);
  const r = rig.unit.dma({ sid: 3, pasid: -1, iova: 0x103800n, length: 8192, write: true, data: src });
  assert.equal(r.status, "faulted");
  assert.equal(r.bytes, 0x800, "the bytes before the unmapped page were moved");
  assert.deepEqual(rig.mem.read(data * 4096 + 3 * 4096 + 0x800, 0x800), src.subarray(0, 0x800));
  assert.deepEqual(r.fault, {
    kind: "translation",
    stage: 1,
    code: EventId.F_TRANSLATION,
    sid: 3,
    pasid: -1,
    iova: 0x104000n,
    ipa: -1n,
    write: true,
    recoverable: false,
  });
  const ev = rig.events();
  assert.equal(ev.length, 1);
  const e = ev[0];
  assert.equal(e.kind, "fTranslation");
  if (e.kind !== "fTranslation") return;
  assert.equal(e.sid, 3);
  assert.equal(e.ssv, 0);
  assert.equal(e.rnw, 0, "a write");
  assert.equal(e.s2, 0);
  assert.equal(e.stall, 0);
  assert.equal(e.class, EventClass.IN);
  assert.equal(e.inputAddr, 0x104000n);
});

test("CD.R = 0: a stage-1 fault terminates the request without recording an event", () => {
  const { rig } = s1Stream({ r: 0 });
  const r = rig.unit.dma({ sid: 3, pasid: -1, iova: 0x900000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.status, "faulted");
  assert.equal(r.fault?.kind, "translation");
  assert.deepEqual(rig.events(), []);
});

test("a write to a read-only page is F_PERMISSION; reads of it succeed", () => {
  const { rig, pt } = s1Stream();
  const ro = rig.dataPages(1);
  pt.map(0x200, ro, 1, RO);
  assert.equal(rig.unit.translatePage(3, -1, 0x200, false), ro);
  assert.equal(rig.unit.translatePage(3, -1, 0x200, true), -1);
  const r = rig.unit.dma({ sid: 3, pasid: -1, iova: 0x200000n, length: 4, write: true, data: new Uint8Array(4) });
  assert.equal(r.fault?.kind, "permission");
  const [e] = rig.events();
  assert.equal(e.kind, "fPermission");
});

test("an entry with AF = 0 faults F_ACCESS unless the CD enables hardware access-flag update (HA), which sets it", () => {
  for (const ha of [0, 1]) {
    const { rig, pt } = s1Stream({ ha });
    const p = rig.dataPages(1);
    pt.map(0x300, p, 1, RW & ~64); // without PT_ACCESSED: AF clear
    const r = rig.unit.dma({ sid: 3, pasid: -1, iova: 0x300000n, length: 4, write: false, data: new Uint8Array(4) });
    if (ha) {
      assert.equal(r.status, "done");
      const leaf = pt.walk(0x300).steps.at(-1);
      assert.ok(leaf && (leaf.lo & (1 << 10)) !== 0, "the hardware set AF in the descriptor");
    } else {
      assert.equal(r.fault?.kind, "access-flag");
      assert.equal(rig.events()[0].kind, "fAccess");
    }
  }
});

test("VA bit 55 selects TTB1; EPD1 and addresses outside the T0SZ range are translation faults", () => {
  const rig = new Rig();
  const lo = rig.s1Table();
  const hi = rig.s1Table({ inputBits: 39 });
  const a = rig.dataPages(1);
  const b = rig.dataPages(1);
  lo.map(0x10, a, 1, RW);
  hi.map(2 ** 27 - 1, b, 1, RW); // the last page of a 39-bit region: VA 0xffff_ff80_0000_0000 + ...
  const cdt = rig.alloc(1);
  rig.writeCd(cdt, linuxCd(lo.root * 4096, 1, { epd1: 0, t1sz: 25, tg1: 2, ttb1: hi.root * 4096 }));
  rig.writeCd(cdt + 64, linuxCd(lo.root * 4096, 2));
  rig.writeSte(4, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt, s1cdmax: 1, s1fmt: S1Fmt.LINEAR, s1dss: S1Dss.SSID0 });
  const top = 2 ** 52 - 1; // VA 0xffff_ffff_ffff_f000
  assert.equal(rig.unit.translatePage(4, -1, 0x10, false), a);
  assert.equal(rig.unit.translatePage(4, -1, top, false), b);
  // SSID 1's CD has EPD1: the upper region faults
  assert.equal(rig.unit.dma({ sid: 4, pasid: 1, iova: 0xfffffffffffff000n, length: 4, write: false, data: new Uint8Array(4) }).fault?.kind, "translation");
  // VA 2^48 is above T0SZ = 16's region and below TTB1's: no table to walk
  assert.equal(rig.unit.dma({ sid: 4, pasid: -1, iova: 1n << 48n, length: 4, write: false, data: new Uint8Array(4) }).fault?.kind, "translation");
  const ev = rig.events();
  assert.deepEqual(ev.map((e) => e.kind), ["fTranslation", "fTranslation"]);
  assert.equal(ev[0].kind === "fTranslation" && ev[0].ssv === 1 && ev[0].ssid === 1, true);
});

test("an output address beyond the CD's IPS is F_ADDR_SIZE", () => {
  const { rig, pt } = s1Stream({ ips: 0 }); // 32-bit output
  pt.map(0x400, 2 ** 20 + 5, 1, RW); // PA 4 GiB + 20 KiB
  const r = rig.unit.dma({ sid: 3, pasid: -1, iova: 0x400000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.fault?.kind, "address-size");
  assert.equal(rig.events()[0].kind, "fAddrSize");
});

test("a two-level stream table finds STEs through L1 descriptors; a StreamID whose L1 descriptor is invalid is C_BAD_STREAMID", () => {
  const rig = new Rig({ twoLevel: true });
  rig.writeSte(0x1203, { v: 1, config: SteConfig.BYPASS });
  assert.equal(rig.unit.translatePage(0x1203, -1, 77, false), 77);
  const r = rig.unit.dma({ sid: 0x2203, pasid: -1, iova: 0n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.fault?.kind, "config");
  assert.equal(r.fault?.code, EventId.C_BAD_STREAMID);
  const r2 = rig.unit.dma({ sid: 0x10000, pasid: 2, iova: 0n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r2.fault?.code, EventId.C_BAD_STREAMID, "beyond STRTAB_BASE_CFG.LOG2SIZE");
  const ev = rig.events();
  assert.deepEqual(
    ev.map((e) => [e.kind, e.sid]),
    [
      ["cBadStreamid", 0x2203],
      ["cBadStreamid", 0x10000],
    ],
  );
  assert.equal(ev[1].kind === "cBadStreamid" && ev[1].ssv === 1 && ev[1].ssid === 2, true);
});

test("an STE with V = 0, a reserved Config, or a CD table larger than SSIDSIZE is C_BAD_STE", () => {
  const rig = new Rig();
  const cdt = rig.alloc(1);
  rig.writeSte(1, { v: 0, config: SteConfig.BYPASS });
  rig.writeSte(2, { v: 1, config: 2 });
  rig.writeSte(3, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt, s1cdmax: 21, s1fmt: S1Fmt.L2_64K });
  rig.writeSte(4, { v: 1, config: SteConfig.S2_TRANS, s2t0sz: 24, s2sl0: 0, s2aa64: 1, s2ps: 5 }); // SL0 0 = level 2: 2^10 tables
  for (const sid of [1, 2, 3, 4]) {
    const r = rig.unit.dma({ sid, pasid: -1, iova: 0n, length: 1, write: false, data: new Uint8Array(1) });
    assert.equal(r.fault?.code, EventId.C_BAD_STE, `sid ${sid}`);
  }
  assert.deepEqual(
    rig.events().map((e) => [e.kind, e.sid]),
    [1, 2, 3, 4].map((s) => ["cBadSte", s]),
  );
});

test("a CD with V = 0, AA64 = 0 or a T0SZ outside 16..39 is C_BAD_CD", () => {
  const rig = new Rig();
  const pt = rig.s1Table();
  const cdt = rig.alloc(1);
  rig.writeCd(cdt, { ...linuxCd(pt.root * 4096, 1), v: 0 });
  rig.writeCd(cdt + 64, { ...linuxCd(pt.root * 4096, 1), aa64: 0 });
  rig.writeCd(cdt + 128, { ...linuxCd(pt.root * 4096, 1), t0sz: 12 });
  rig.writeSte(9, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt, s1cdmax: 2, s1dss: S1Dss.BYPASS });
  for (const ssid of [0, 1, 2]) {
    const r = rig.unit.dma({ sid: 9, pasid: ssid, iova: 0n, length: 1, write: false, data: new Uint8Array(1) });
    assert.equal(r.fault?.code, EventId.C_BAD_CD, `ssid ${ssid}`);
  }
  const ev = rig.events();
  assert.deepEqual(ev.map((e) => e.kind), ["cBadCd", "cBadCd", "cBadCd"]);
  assert.deepEqual(ev.map((e) => (e.kind === "cBadCd" ? [e.ssv, e.ssid] : null)), [[1, 0], [1, 1], [1, 2]]);
});

test("SubstreamIDs: beyond S1CDMax, on an STE without substreams, or SSID 0 under S1DSS=SSID0 are C_BAD_SUBSTREAMID", () => {
  const rig = new Rig();
  const pt = rig.s1Table();
  const cdt = rig.alloc(1);
  for (let i = 0; i < 4; i++) rig.writeCd(cdt + 64 * i, linuxCd(pt.root * 4096, 1 + i));
  rig.writeSte(5, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt, s1cdmax: 2, s1dss: S1Dss.SSID0 });
  rig.writeSte(6, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt });
  rig.writeSte(7, { v: 1, config: SteConfig.BYPASS });
  const cases: [number, number][] = [
    [5, 4],
    [5, 0],
    [6, 1],
    [7, 3],
  ];
  for (const [sid, ssid] of cases) {
    const r = rig.unit.dma({ sid, pasid: ssid, iova: 0n, length: 1, write: false, data: new Uint8Array(1) });
    assert.equal(r.fault?.code, EventId.C_BAD_SUBSTREAMID, `sid ${sid} ssid ${ssid}`);
  }
  const ev = rig.events();
  assert.deepEqual(
    ev.map((e) => (e.kind === "cBadSubstreamid" ? [e.sid, e.ssid] : e.kind)),
    cases,
  );
});

test("S1DSS decides non-substream traffic: TERMINATE is F_STREAM_DISABLED, BYPASS passes through, SSID0 uses CD 0", () => {
  const rig = new Rig();
  const pt = rig.s1Table();
  const p = rig.dataPages(1);
  pt.map(0x50, p, 1, RW);
  const cdt = rig.alloc(1);
  rig.writeCd(cdt, linuxCd(pt.root * 4096, 1));
  for (const [sid, s1dss] of [
    [10, S1Dss.TERMINATE],
    [11, S1Dss.BYPASS],
    [12, S1Dss.SSID0],
  ]) {
    rig.writeSte(sid, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt, s1cdmax: 4, s1dss });
  }
  const r = rig.unit.dma({ sid: 10, pasid: -1, iova: 0x50000n, length: 1, write: false, data: new Uint8Array(1) });
  assert.equal(r.fault?.kind, "blocked");
  assert.equal(r.fault?.code, EventId.F_STREAM_DISABLED);
  assert.equal(rig.unit.translatePage(11, -1, 0x50, false), 0x50);
  assert.equal(rig.unit.translatePage(12, -1, 0x50, false), p);
  assert.deepEqual(rig.events().map((e) => [e.kind, e.sid]), [["fStreamDisabled", 10]]);
});

test("two-level CD tables: the L1CD selects the leaf table; an invalid L1CD is C_BAD_SUBSTREAMID", () => {
  const rig = new Rig();
  const pt = rig.s1Table();
  const p = rig.dataPages(1);
  pt.map(0x60, p, 1, RW);
  const l1 = rig.alloc(1);
  const leaf = rig.alloc(1);
  rig.writeL1Cd(l1 + 8, leaf); // SSIDs 64..127 (4 KiB leaves: 64 CDs each)
  rig.writeCd(leaf + (70 - 64) * 64, linuxCd(pt.root * 4096, 70));
  rig.writeSte(20, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: l1, s1cdmax: 10, s1fmt: S1Fmt.L2_4K, s1dss: S1Dss.BYPASS });
  assert.equal(rig.unit.translatePage(20, 70, 0x60, false), p);
  const r = rig.unit.dma({ sid: 20, pasid: 5, iova: 0x60000n, length: 1, write: false, data: new Uint8Array(1) });
  assert.equal(r.fault?.code, EventId.C_BAD_SUBSTREAMID);
  const r2 = rig.unit.dma({ sid: 20, pasid: 71, iova: 0x60000n, length: 1, write: false, data: new Uint8Array(1) });
  assert.equal(r2.fault?.code, EventId.C_BAD_CD, "a valid leaf table with an invalid CD");
});

test("a stage-2-only STE translates IPA -> PA and reports stage-2 faults with S2 = 1 and the IPA", () => {
  const rig = new Rig();
  const s2 = rig.s2Table();
  const p = rig.dataPages(2);
  s2.map(0x800, p, 2, RW);
  rig.writeSte(8, { v: 1, config: SteConfig.S2_TRANS, s2vmid: 3, s2t0sz: 24, s2sl0: 1, s2aa64: 1, s2ps: 5, s2r: 1, s2ttb: s2.root * 4096 });
  assert.equal(rig.unit.translatePage(8, -1, 0x801, true), p + 1);
  const r = rig.unit.dma({ sid: 8, pasid: -1, iova: 0x802000n, length: 1, write: false, data: new Uint8Array(1) });
  assert.equal(r.fault?.stage, 2);
  assert.equal(r.fault?.ipa, 0x802000n);
  const [e] = rig.events();
  assert.ok(e.kind === "fTranslation" && e.s2 === 1 && e.ipa === 0x802000 && e.class === EventClass.IN);
});

test("with SMMUEN clear, GBPA decides: bypass, or abort once GBPA.ABORT is set", () => {
  const rig = new Rig();
  rig.unit.writeReg(SmmuReg.CR0, CR0_CMDQEN | CR0_EVTQEN);
  assert.equal(rig.unit.translatePage(99, -1, 0x4242, false), 0x4242);
  rig.unit.writeReg(SmmuReg.GBPA, GBPA_ABORT); // without UPDATE: ignored
  assert.equal(rig.unit.translatePage(99, -1, 0x4242, false), 0x4242);
  rig.unit.writeReg(SmmuReg.GBPA, GBPA_ABORT | GBPA_UPDATE);
  assert.equal(rig.unit.translatePage(99, -1, 0x4242, false), -1);
  assert.equal(rig.unit.readReg(SmmuReg.GBPA), GBPA_ABORT, "UPDATE reads back clear: the update completed");
});

test("an illegal command stops the queue with CERROR_ILL until GERRORN acknowledges it", () => {
  const rig = new Rig();
  const u = rig.unit;
  let gerrors = 0;
  u.irq.gerror = () => gerrors++;
  rig.writeSte(1, { v: 1, config: SteConfig.BYPASS });
  assert.equal(u.translatePage(1, -1, 5, false), 5);
  rig.writeSte(1, { v: 1, config: SteConfig.ABORT });
  // an unknown opcode, then a CFGI_STE that must wait behind it
  rig.rawCmd(new Uint32Array([0x7f, 0, 0, 0]));
  rig.cmd({ kind: "cfgiSte", sid: 1, leaf: 1 });
  assert.equal(gerrors, 1);
  assert.equal((u.readReg(SmmuReg.GERROR) ^ u.readReg(SmmuReg.GERRORN)) & GERROR_CMDQ_ERR, GERROR_CMDQ_ERR);
  const cons = u.readReg(SmmuReg.CMDQ_CONS);
  assert.equal((cons >>> 24) & 0x7f, CmdqErr.ILL);
  assert.equal(cons & 0x7f, 0, "CONS points at the bad command");
  assert.equal(u.translatePage(1, -1, 5, false), 5, "the CFGI behind it has not run");
  // software replaces the command with a CMD_SYNC and acknowledges: the queue resumes
  rig.writeWords(rig.cmdSlot(1), encodeCmdWords({ kind: "sync" }));
  u.writeReg(SmmuReg.GERRORN, u.readReg(SmmuReg.GERROR));
  assert.equal(u.readReg(SmmuReg.CMDQ_CONS) & 0x7f, 2);
  assert.equal(u.translatePage(1, -1, 5, false), -1, "the CFGI ran: the abort STE is now in use");
});

test("commands with reserved bits set, Secure commands, ATC_INV without ATS, and TLBI ranges without RIL are illegal", () => {
  const noRil = { ...defaultIdRegs(), idr3: 0 };
  const cases: [string, Uint32Array, object][] = [
    ["reserved bit in CFGI_STE", new Uint32Array([CmdOp.CFGI_STE | (1 << 20), 0, 0, 0]), {}],
    ["SSec set", new Uint32Array([CmdOp.CFGI_STE | (1 << 10), 0, 0, 0]), {}],
    ["ATC_INV without ATS", encodeCmdWords({ kind: "atcInv", sid: 1, size: 52 }), {}],
    ["TLBI_NH_VA with TG but no RIL", encodeCmdWords({ kind: "tlbiNhVa", tg: 1, num: 3 }), { idRegs: noRil }],
  ];
  for (const [what, w, opts] of cases) {
    const rig = new Rig(opts);
    rig.rawCmd(w);
    assert.equal((rig.unit.readReg(SmmuReg.CMDQ_CONS) >>> 24) & 0x7f, CmdqErr.ILL, what);
  }
});

test("CMD_SYNC completes with an MSI write of MSIDATA to MSIADDR (CS = IRQ) or an event (CS = SEV)", () => {
  const rig = new Rig();
  const slot = rig.alloc(1);
  rig.mem.write32(slot, 0x46);
  rig.cmd({ kind: "sync", cs: 1, msiaddr: slot, msidata: 0 });
  assert.equal(rig.mem.read32(slot), 0, "Linux's MSI poll: the word at MSIADDR becomes MSIDATA");
  rig.cmd({ kind: "sync", cs: 1, msiaddr: slot + 8, msidata: 0xabcd });
  assert.equal(rig.mem.read32(slot + 8), 0xabcd);
  const before = rig.unit.sevCount;
  rig.cmd({ kind: "sync", cs: 2 });
  assert.equal(rig.unit.sevCount, before + 1);
});

test("a full event queue drops new records and flags overflow (PROD.OVFLG toggles)", () => {
  const rig = new Rig({ evtqLog2: 2 });
  let irqs = 0;
  rig.unit.irq.eventq = () => irqs++;
  for (let i = 0; i < 6; i++) rig.unit.dma({ sid: 200 + i, pasid: -1, iova: 0n, length: 1, write: false, data: new Uint8Array(1) });
  const prod = rig.unit.readReg(SmmuReg.EVTQ_PROD);
  assert.equal(prod >>> 31, 1, "overflow flagged");
  assert.equal(irqs, 6, "one interrupt per dma() that produced or lost an event");
  const ev = rig.events();
  assert.deepEqual(ev.map((e) => e.sid), [200, 201, 202, 203], "the first four fit, the rest were lost");
  assert.equal(rig.unit.stats.eventsLost, 2);
});

test("event interrupts are delivered after the DMA call's work, and only when IRQ_CTRL enables them", () => {
  const rig = new Rig();
  const seen: number[] = [];
  rig.unit.irq.eventq = () => seen.push(rig.events().length);
  rig.unit.dma({ sid: 50, pasid: -1, iova: 0n, length: 1, write: false, data: new Uint8Array(1) });
  assert.deepEqual(seen, [1], "the handler sees the record already in the queue");
  rig.unit.writeReg(SmmuReg.IRQ_CTRL, 0);
  rig.unit.dma({ sid: 51, pasid: -1, iova: 0n, length: 1, write: false, data: new Uint8Array(1) });
  assert.deepEqual(seen, [1]);
  assert.equal(rig.events().length, 1, "the record is queued anyway");
});

test("the ID registers read back as configured: the default unit has S1, S2, HTTU A+D, PRI, 16-bit SIDs and 20-bit SSIDs", () => {
  const rig = new Rig();
  const i0 = Idr0.decode(new Uint8Array(new Uint32Array([rig.unit.readReg(SmmuReg.IDR0)]).buffer));
  assert.equal(i0.s1p + i0.s2p, 2);
  assert.equal(i0.httu, 2);
  assert.equal(i0.pri, 1);
  assert.equal(i0.stLevel, 1);
  const f = rig.unit.features;
  assert.equal(f.sidBits, 16);
  assert.equal(f.ssidBits, 20);
  assert.equal(f.oas, 48);
  assert.equal(rig.unit.tlb.capacity, 256);
  rig.unit.writeReg(SmmuReg.IDR0, 0);
  assert.equal(rig.unit.readReg(SmmuReg.IDR0), defaultIdRegs().idr0, "read-only");
});

test("a global error raised by a command issued from an interrupt handler is taken at once, before that handler returns", () => {
  const rig = new Rig();
  const u = rig.unit;
  u.irq.gerror = () => {
    rig.writeWords(rig.cmdSlot(0), encodeCmdWords({ kind: "sync" }));
    u.writeReg(SmmuReg.GERRORN, u.readReg(SmmuReg.GERROR));
  };
  const drained: boolean[] = [];
  u.irq.eventq = () => {
    rig.events();
    rig.rawCmd(new Uint32Array([0x7f, 0, 0, 0]));
    drained.push((u.readReg(SmmuReg.CMDQ_CONS) & 0x7f) === (u.readReg(SmmuReg.CMDQ_PROD) & 0x7f));
  };
  u.dma({ sid: 9, pasid: -1, iova: 0n, length: 1, write: false, data: new Uint8Array(1) });
  assert.deepEqual(drained, [true]);
});
