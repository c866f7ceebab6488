/**
 * The emulated SMMUv3 (src/guest/smmuv3/vsmmu.ts) on its own, with a recording backend: the
 * register file, the command queue in guest RAM (what is forwarded, what is illegal, how errors
 * stop and restart the queue), the event queue, the stream table reads — and the guest driver's
 * command stream against a simple reference (fast-check).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { HostMachine } from "../../src/guest/machine.js";
import { Vm } from "../../src/guest/vm.js";
import { VSmmu, type VSmmuBackend } from "../../src/guest/smmuv3/vsmmu.js";
import { vsmmuIdRegs, hwIncompatibility } from "../../src/guest/smmuv3/vmm.js";
import { GuestSmmuDriver } from "../../src/guest/smmuv3/guest-driver.js";
import { CmdOp, encodeCmdWords, type CmdInput } from "../../src/hw/smmuv3/cmdq.js";
import { defaultIdRegs, SmmuReg, CR0_CMDQEN, CR0_EVTQEN, CR0_SMMUEN, GBPA_ABORT, GBPA_UPDATE, GERROR_CMDQ_ERR, IRQ_CTRL_EVTQ_IRQEN, IRQ_CTRL_GERROR_IRQEN, Q_OVF, queueBase, strtabBaseCfg, STRTAB_FMT_2LVL, STRTAB_FMT_LINEAR } from "../../src/hw/smmuv3/unit-regs.js";
import { Idr1 } from "../../src/hw/smmuv3/regs.js";
import { L1Std, Ste, SteConfig } from "../../src/hw/smmuv3/tables.js";

const PAGE = 4096;

class Recorder implements VSmmuBackend {
  ste: [number, number][] = [];
  runs: Uint32Array[][] = [];
  resumes: [number, number, number][] = [];
  terms: number[] = [];
  configs = 0;
  /** Fail the invalidation run's command at this opcode (EIO), or -1. */
  failOp = -1;
  steErr: string | null = null;
  steChanged(first: number, last: number): string | null {
    this.ste.push([first, last]);
    return this.steErr;
  }
  invalidate(cmds: readonly Uint32Array[]) {
    this.runs.push(cmds.map((c) => c.slice()));
    const i = cmds.findIndex((c) => (c[0] & 0xff) === this.failOp);
    return i < 0 ? { done: cmds.length, errno: null } : { done: i, errno: "EIO" };
  }
  resume(vsid: number, stag: number, action: number): void {
    this.resumes.push([vsid, stag, action]);
  }
  stallTerm(vsid: number): void {
    this.terms.push(vsid);
  }
  configChanged(): void {
    this.configs++;
  }
}

function setup(idrOpts: Parameters<typeof vsmmuIdRegs>[1] = {}) {
  const vm = new Vm(new HostMachine({ iommu: "smmuv3" }), { ramBytes: 4 << 20 });
  const be = new Recorder();
  const s = new VSmmu(vm.ram, vsmmuIdRegs(defaultIdRegs(), idrOpts), be);
  const cmdq = vm.ram.allocTable(1) * PAGE;
  const evtq = vm.ram.allocTable(1) * PAGE;
  return { vm, be, s, cmdq, evtq };
}

/** Put commands in the queue at PROD and publish them (what a driver does), returning the new PROD. */
function push(x: ReturnType<typeof setup>, prod: number, cmds: CmdInput[] | Uint32Array[], log2 = 8): number {
  const n = 2 ** log2;
  for (const c of cmds) {
    const w = c instanceof Uint32Array ? c : encodeCmdWords(c);
    const f = x.vm.ram.frameU32(Math.floor((x.cmdq + (prod % n) * 16) / PAGE));
    const i = ((x.cmdq + (prod % n) * 16) % PAGE) / 4;
    for (let k = 0; k < 4; k++) f[i + k] = w[k];
    prod = (prod + 1) % (2 * n);
  }
  x.s.writeReg(SmmuReg.CMDQ_PROD, prod);
  return prod;
}

function enableCmdq(x: ReturnType<typeof setup>): void {
  x.s.writeReg64(SmmuReg.CMDQ_BASE, queueBase(x.cmdq, 8));
  x.s.writeReg(SmmuReg.CR0, CR0_CMDQEN);
}

test("the vSMMU's ID registers: stage 1 only, AArch64 little-endian tables, 2-level tables, the host's SSID width, stall model, RIL and granules (hand-computed words)", () => {
  const idr = vsmmuIdRegs(defaultIdRegs());
  // IDR0: S1P(1) TTF=2(3:2) COHACC(4) ASID16(12) CD2L(19) TTENDIAN=2(22:21) STALL_MODEL=0 TERM_MODEL(26) ST_LEVEL=1(28:27)
  assert.equal(idr.idr0, (1 << 1) | (2 << 2) | (1 << 4) | (1 << 12) | (1 << 19) | (2 << 21) | (1 << 26) | (1 << 27));
  assert.equal(idr.idr0, 0x0c48101a);
  // IDR1: SIDSIZE 16, SSIDSIZE 20 (6..10), EVENTQS 7 (16..20), CMDQS 8 (21..25)
  assert.equal(idr.idr1, 16 | (20 << 6) | (7 << 16) | (8 << 21));
  assert.equal(idr.idr3, 1 << 10, "RIL from the host");
  // IDR5: OAS 48 (5), GRAN4K (4), STALL_MAX 128 (31:16)
  assert.equal(idr.idr5, 5 | (1 << 4) | (128 << 16));
  assert.equal(idr.aidr, 1, "SMMUv3.1");
  // a host without substreams: auto SSIDSIZE follows it
  const h = defaultIdRegs();
  h.idr1 = Idr1.encodeWords({ sidsize: 16, ssidsize: 0, eventqs: 8, cmdqs: 8 })[0];
  assert.equal(Idr1.decodeWords(new Uint32Array([vsmmuIdRegs(h).idr1])).ssidsize, 0);
});

test("QEMU's host compatibility checks: ST_LEVEL must match, SSIDSIZE/SIDSIZE/OAS/RIL not above the host's", () => {
  const host = defaultIdRegs();
  assert.equal(hwIncompatibility(host, vsmmuIdRegs(host)), null);
  assert.match(hwIncompatibility(host, vsmmuIdRegs(host, { stLevel2: false })) ?? "", /stream table format/);
  assert.match(hwIncompatibility(host, vsmmuIdRegs(host, { ssidBits: 21 })) ?? "", /SSIDSIZE/);
  assert.match(hwIncompatibility(host, vsmmuIdRegs(host, { sidBits: 17 })) ?? "", /SIDSIZE/);
  const small = { ...host, idr5: host.idr5 & ~7 };
  assert.match(hwIncompatibility(small, vsmmuIdRegs(host)) ?? "", /IPA size/);
});

test("CR0 is acknowledged at once; STRTAB_BASE(_CFG) and a queue's base ignore writes while enabled; GBPA changes only with Update", () => {
  const x = setup();
  x.s.writeReg64(SmmuReg.STRTAB_BASE, 0x123440n);
  x.s.writeReg(SmmuReg.STRTAB_BASE_CFG, strtabBaseCfg(STRTAB_FMT_LINEAR, 5, 0));
  x.s.writeReg(SmmuReg.CR0, CR0_SMMUEN | CR0_EVTQEN);
  assert.equal(x.s.readReg(SmmuReg.CR0ACK), CR0_SMMUEN | CR0_EVTQEN);
  x.s.writeReg64(SmmuReg.STRTAB_BASE, 0x999000n);
  x.s.writeReg(SmmuReg.STRTAB_BASE_CFG, 7);
  assert.equal(x.s.readReg64(SmmuReg.STRTAB_BASE), 0x123440n, "ignored while SMMUEN = 1");
  assert.equal(x.s.readReg(SmmuReg.STRTAB_BASE_CFG), 5);
  x.s.writeReg64(SmmuReg.EVTQ_BASE, queueBase(0x5000, 3));
  assert.equal(x.s.readReg64(SmmuReg.EVTQ_BASE), 0n, "the event queue is enabled: its base stays");
  const c0 = x.be.configs;
  x.s.writeReg(SmmuReg.GBPA, GBPA_ABORT);
  assert.equal(x.s.gbpaAbort, false, "no Update, no change");
  x.s.writeReg(SmmuReg.GBPA, GBPA_ABORT | GBPA_UPDATE);
  assert.equal(x.s.gbpaAbort, true);
  assert.equal(x.s.readReg(SmmuReg.GBPA) & GBPA_UPDATE, 0, "Update reads back as done");
  assert.equal(x.be.configs, c0 + 1);
});

test("CMDQ_PROD consumes the queue in guest RAM: CFGI_STE and CFGI_STE_RANGE name vSID ranges (Range 31 = all), a run of TLBIs and CFGI_CDs is one backend call, CMD_SYNC completes", () => {
  const x = setup();
  enableCmdq(x);
  push(x, 0, [
    { kind: "cfgiSte", sid: 0x13, leaf: 1 },
    { kind: "cfgiSteRange", sid: 0x13, range: 3 },
    { kind: "tlbiNhAsid", asid: 5 },
    { kind: "tlbiNhVa", asid: 5, addr: 0x7000 },
    { kind: "cfgiCd", sid: 0x13, ssid: 2, leaf: 1 },
    { kind: "sync", cs: 2 },
    { kind: "cfgiSteRange", sid: 0, range: 31 },
    { kind: "prefetchConfig", sid: 0x13 },
    { kind: "resume", sid: 0x13, stag: 7, action: 1 },
    { kind: "stallTerm", sid: 0x14 },
  ]);
  assert.deepEqual(x.be.ste, [
    [0x13, 0x13],
    [0x10, 0x1f],
    [0, 0xffff],
  ]);
  assert.equal(x.be.runs.length, 1);
  assert.deepEqual(
    x.be.runs[0].map((w) => w[0] & 0xff),
    [CmdOp.TLBI_NH_ASID, CmdOp.TLBI_NH_VA, CmdOp.CFGI_CD],
  );
  assert.deepEqual([...x.be.runs[0][1]], [...encodeCmdWords({ kind: "tlbiNhVa", asid: 5, addr: 0x7000 })], "forwarded as the guest wrote it");
  assert.deepEqual(x.be.resumes, [[0x13, 7, 1]]);
  assert.deepEqual(x.be.terms, [0x14]);
  assert.equal(x.s.stats.syncs, 1);
  assert.equal(x.s.sevCount, 1);
  assert.equal(x.s.readReg(SmmuReg.CMDQ_CONS), 10);
});

test("an illegal command stops the queue at it with CMDQ_CONS.ERR = CERROR_ILL and GERROR.CMDQ_ERR until GERRORN acknowledges; the queue restarts at the same entry", () => {
  const x = setup();
  let irq = 0;
  x.s.irq = { gerror: () => irq++ };
  x.s.writeReg(SmmuReg.IRQ_CTRL, IRQ_CTRL_GERROR_IRQEN);
  enableCmdq(x);
  // TLBI_S12_VMALL: the vSMMU has no stage 2
  push(x, 0, [{ kind: "tlbiNhAll" }, { kind: "tlbiS12Vmall", vmid: 1 }, { kind: "tlbiNhAsid", asid: 2 }]);
  assert.equal(irq, 1, "the global-error interrupt");
  const cons = x.s.readReg(SmmuReg.CMDQ_CONS);
  assert.equal(cons & 0xff, 1, "CONS stops at the illegal command");
  assert.equal((cons >>> 24) & 0x7f, 1, "ERR = CERROR_ILL");
  assert.equal((x.s.readReg(SmmuReg.GERROR) ^ x.s.readReg(SmmuReg.GERRORN)) & GERROR_CMDQ_ERR, GERROR_CMDQ_ERR);
  assert.equal(x.be.runs.flat().length, 1, "only the command before it was carried out");
  // more commands are not consumed while the error is active
  push(x, 3, [{ kind: "tlbiNhAsid", asid: 3 }]);
  assert.equal(x.be.runs.flat().length, 1);
  // the driver replaces the bad command by a CMD_SYNC and acknowledges
  const f = x.vm.ram.frameU32(x.cmdq / PAGE);
  f.set(encodeCmdWords({ kind: "sync" }), 4);
  x.s.writeReg(SmmuReg.GERRORN, x.s.readReg(SmmuReg.GERROR));
  assert.equal(x.s.readReg(SmmuReg.CMDQ_CONS) & 0xfffff, 4, "restarted at the replaced entry and drained (ERR is UNKNOWN once the error is acknowledged)");
  assert.deepEqual(
    x.be.runs.flat().map((w) => w[0] & 0xff),
    [CmdOp.TLBI_NH_ALL, CmdOp.TLBI_NH_ASID, CmdOp.TLBI_NH_ASID],
  );
  assert.equal(x.s.cmdErrors[0].why, "stage-2 invalidation on an SMMU without stage 2");
});

test("what a stage-1-only vSMMU without ATS, PRI or EL2 refuses: S2 and EL2 TLBIs, ATC_INV, PRI_RESP, TLBI range fields without RIL, SSec, reserved bits, CMD_SYNC CS = 3, unknown opcodes", () => {
  const cases: { what: string; w: Uint32Array; ril?: boolean }[] = [
    { what: "TLBI_S2_IPA", w: encodeCmdWords({ kind: "tlbiS2Ipa", vmid: 1, addr: 0x1000 }) },
    { what: "TLBI_EL2_ALL", w: new Uint32Array([CmdOp.TLBI_EL2_ALL, 0, 0, 0]) },
    { what: "ATC_INV", w: encodeCmdWords({ kind: "atcInv", sid: 1, size: 52 }) },
    { what: "PRI_RESP", w: encodeCmdWords({ kind: "priResp", sid: 1, resp: 2 }) },
    { what: "range TLBI without RIL", w: encodeCmdWords({ kind: "tlbiNhVa", asid: 1, num: 3, tg: 1, addr: 0x1000 }), ril: false },
    { what: "SSec", w: encodeCmdWords({ kind: "cfgiSte", sid: 1, ssec: 1 }) },
    { what: "a reserved bit", w: new Uint32Array([CmdOp.TLBI_NH_ALL | (1 << 8), 0, 0, 0]) },
    { what: "CS = 3", w: encodeCmdWords({ kind: "sync", cs: 3 }) },
    { what: "opcode 0x7f", w: new Uint32Array([0x7f, 0, 0, 0]) },
  ];
  for (const c of cases) {
    const host = defaultIdRegs();
    if (c.ril === false) host.idr3 = 0;
    const vm = new Vm(new HostMachine({ iommu: "smmuv3" }), { ramBytes: 4 << 20 });
    const be = new Recorder();
    const s = new VSmmu(vm.ram, vsmmuIdRegs(host), be);
    const x = { vm, be, s, cmdq: vm.ram.allocTable(1) * PAGE, evtq: 0 };
    enableCmdq(x);
    push(x, 0, [c.w]);
    assert.equal((s.readReg(SmmuReg.CMDQ_CONS) >>> 24) & 0x7f, 1, `${c.what} is CERROR_ILL`);
    assert.equal(be.runs.length + be.ste.length, 0, `${c.what} reached nothing`);
  }
  // and a range TLBI with RIL is fine
  const x = setup();
  enableCmdq(x);
  push(x, 0, [encodeCmdWords({ kind: "tlbiNhVa", asid: 1, num: 3, tg: 1, addr: 0x1000 })]);
  assert.equal(x.s.readReg(SmmuReg.CMDQ_CONS), 1);
});

test("a forwarded command the backend refuses is CERROR_ILL at that very command; the ones before it in the run are done", () => {
  const x = setup();
  enableCmdq(x);
  x.be.failOp = CmdOp.CFGI_CD_ALL;
  push(x, 0, [{ kind: "tlbiNhAsid", asid: 1 }, { kind: "tlbiNhAsid", asid: 2 }, { kind: "cfgiCdAll", sid: 9 }, { kind: "tlbiNhAsid", asid: 3 }]);
  const cons = x.s.readReg(SmmuReg.CMDQ_CONS);
  assert.equal(cons & 0xff, 2);
  assert.equal((cons >>> 24) & 0x7f, 1);
  assert.equal(x.s.cmdErrors[0].errno, "EIO");
  // a failing CFGI_STE too
  const y = setup();
  enableCmdq(y);
  y.be.steErr = "EIO";
  push(y, 0, [{ kind: "cfgiSte", sid: 1 }]);
  assert.equal((y.s.readReg(SmmuReg.CMDQ_CONS) >>> 24) & 0x7f, 1);
});

test("event records go to EVTQ_PROD in guest RAM with an interrupt; a full queue drops the record and toggles PROD.OVFLG once until acknowledged", () => {
  const x = setup();
  let irq = 0;
  x.s.irq = { eventq: () => irq++ };
  x.s.writeReg(SmmuReg.IRQ_CTRL, IRQ_CTRL_EVTQ_IRQEN);
  x.s.writeReg64(SmmuReg.EVTQ_BASE, queueBase(x.evtq, 2)); // 4 entries
  const rec = (i: number) => new Uint32Array([0x10, 0x8, i, 0, 0x1000 * i, 0, 0, 0]);
  assert.equal(x.s.pushEvent(rec(1)), false, "queue disabled");
  x.s.writeReg(SmmuReg.CR0, CR0_EVTQEN);
  for (let i = 0; i < 4; i++) assert.equal(x.s.pushEvent(rec(i)), true);
  assert.equal(irq, 4);
  assert.equal(x.s.readReg(SmmuReg.EVTQ_PROD), 4, "index 0 with the wrap bit: full");
  const f = x.vm.ram.frameU32(x.evtq / PAGE);
  assert.deepEqual([...f.subarray(24, 32)], [...rec(3)], "record 3 at slot 3, 32 bytes");
  assert.equal(x.s.pushEvent(rec(9)), false);
  assert.notEqual(x.s.readReg(SmmuReg.EVTQ_PROD) & Q_OVF, 0, "overflow flagged");
  assert.equal(x.s.readReg(SmmuReg.EVTQ_PROD) & 7, 4, "PROD itself did not move");
  assert.equal(x.s.pushEvent(rec(10)), false);
  assert.notEqual(x.s.readReg(SmmuReg.EVTQ_PROD) & Q_OVF, 0, "still flagged (not toggled back)");
  assert.equal(x.s.stats.eventsLost, 3);
  // the guest consumes and acknowledges the overflow
  x.s.writeReg(SmmuReg.EVTQ_CONS, (4 | Q_OVF) >>> 0);
  assert.equal(x.s.pushEvent(rec(11)), true);
});

test("readSte: a linear table indexed by vSID; a 2-level table through its L1 descriptor (Span), none for an invalid L1 or a vSID beyond the table", () => {
  const x = setup();
  const lin = x.vm.ram.allocTable(4) * PAGE;
  const ste = Ste.encodeWords({ v: 1, config: SteConfig.BYPASS });
  const off = 69 * 64;
  x.vm.ram.frameU32(lin / PAGE + Math.floor(off / PAGE)).set(ste, (off % PAGE) / 4);
  x.s.writeReg64(SmmuReg.STRTAB_BASE, BigInt(lin));
  x.s.writeReg(SmmuReg.STRTAB_BASE_CFG, strtabBaseCfg(STRTAB_FMT_LINEAR, 8, 0));
  assert.deepEqual(x.s.readSte(69), ste, "vSID 69 at 69 * 64 bytes");
  assert.equal(x.s.readSte(256), null, "beyond LOG2SIZE");
  // 2-level: SPLIT 8, L1 entry 1 valid with Span 9
  const y = setup();
  const l1 = y.vm.ram.allocTable(1) * PAGE;
  const l2 = y.vm.ram.allocTable(4) * PAGE;
  y.vm.ram.frameU32(l1 / PAGE).set(L1Std.encodeWords({ span: 9, l2ptr: l2 }), 2);
  y.vm.ram.frameU32(l2 / PAGE).set(ste, 3 * 16);
  y.s.writeReg64(SmmuReg.STRTAB_BASE, BigInt(l1));
  y.s.writeReg(SmmuReg.STRTAB_BASE_CFG, strtabBaseCfg(STRTAB_FMT_2LVL, 16, 8));
  assert.deepEqual(y.s.readSte(0x103), ste);
  assert.equal(y.s.readSte(0x3), null, "L1 descriptor 0 invalid");
  assert.equal(y.s.readSte(0x10003), null, "beyond the table");
});

test("the guest driver's command stream, random invalidations and illegal commands mixed: the backend gets exactly the legal ones in order, each illegal one is skipped by the guest's GERROR handler (model)", () => {
  const gen = fc.array(
    fc.oneof(
      fc.record({ kind: fc.constant("tlbiNhAsid" as const), asid: fc.integer({ min: 0, max: 0xffff }) }),
      fc.record({ kind: fc.constant("tlbiNhVa" as const), asid: fc.integer({ min: 0, max: 0xffff }), addr: fc.integer({ min: 0, max: 0xfffff }).map((p) => p * PAGE) }),
      fc.record({ kind: fc.constant("cfgiCd" as const), sid: fc.integer({ min: 0, max: 0xffff }), ssid: fc.integer({ min: 0, max: 0xfffff }) }),
      fc.record({ kind: fc.constant("cfgiSte" as const), sid: fc.integer({ min: 0, max: 0xffff }) }),
      fc.record({ kind: fc.constant("tlbiS12Vmall" as const), vmid: fc.integer({ min: 0, max: 0xffff }) }),
      fc.record({ kind: fc.constant("atcInv" as const), sid: fc.integer({ min: 0, max: 0xffff }) }),
    ),
    { maxLength: 150 },
  );
  fc.assert(
    fc.property(gen, fc.boolean(), (cmds, sync) => {
      const vm = new Vm(new HostMachine({ iommu: "smmuv3" }), { ramBytes: 2 << 20, tablePages: 64 });
      const be = new Recorder();
      const s = new VSmmu(vm.ram, vsmmuIdRegs(defaultIdRegs()), be);
      const g = new GuestSmmuDriver(vm, s);
      be.ste.length = 0;
      be.runs.length = 0;
      const e0 = g.cmdErrors.length;
      g.issue(cmds as CmdInput[], sync);
      const legalFwd = cmds.filter((c) => c.kind === "tlbiNhAsid" || c.kind === "tlbiNhVa" || c.kind === "cfgiCd");
      const illegal = cmds.filter((c) => c.kind === "tlbiS12Vmall" || c.kind === "atcInv");
      assert.deepEqual(
        be.runs.flat().map((w) => [...w]),
        legalFwd.map((c) => [...encodeCmdWords(c as CmdInput)]),
      );
      assert.deepEqual(
        be.ste.map(([a]) => a),
        cmds.filter((c) => c.kind === "cfgiSte").map((c) => (c as { sid: number }).sid),
      );
      assert.deepEqual(
        g.cmdErrors.slice(e0).map((e) => e.op),
        illegal.map((c) => (c.kind === "atcInv" ? CmdOp.ATC_INV : CmdOp.TLBI_S12_VMALL)),
      );
      assert.equal(s.stats.syncs, 2 + (sync ? 1 : 0) + illegal.length, "boot's two syncs, ours, and one per skipped command");
      const prod = s.readReg(SmmuReg.CMDQ_PROD);
      assert.equal(s.readReg(SmmuReg.CMDQ_CONS) & 0xfffff, prod, "drained");
    }),
    { numRuns: 40 },
  );
});

test("the guest driver enables the vSMMU as Linux does: tables and queues programmed, CFGI_ALL and TLBI_NSNH_ALL synced, interrupts on, SMMUEN last", () => {
  const vm = new Vm(new HostMachine({ iommu: "smmuv3" }), { ramBytes: 4 << 20 });
  const be = new Recorder();
  const s = new VSmmu(vm.ram, vsmmuIdRegs(defaultIdRegs()), be);
  const g = new GuestSmmuDriver(vm, s, { traceCommands: true });
  assert.equal(s.readReg(SmmuReg.CR0), CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN);
  assert.equal(s.readReg(SmmuReg.IRQ_CTRL), IRQ_CTRL_EVTQ_IRQEN | IRQ_CTRL_GERROR_IRQEN);
  assert.equal(s.readReg(SmmuReg.STRTAB_BASE_CFG), (1 << 16) | (8 << 6) | 16, "2-level, SPLIT 8, 16 bits");
  assert.equal(s.readReg64(SmmuReg.STRTAB_BASE), BigInt(g.strtab) | (1n << 62n), "with RA");
  assert.equal(s.readReg64(SmmuReg.CMDQ_BASE), (1n << 62n) | BigInt(g.cmdq) | 8n);
  assert.equal(s.readReg64(SmmuReg.EVTQ_BASE), (1n << 62n) | BigInt(g.evtq) | 7n);
  assert.deepEqual(
    (g.commandLog ?? []).map((w) => [...w]),
    [
      [CmdOp.CFGI_STE_RANGE, 0, 31, 0],
      [CmdOp.CMD_SYNC | (2 << 12) | (3 << 22) | (0xf << 24), 0, 0, 0],
      [CmdOp.TLBI_NSNH_ALL, 0, 0, 0],
      [CmdOp.CMD_SYNC | (2 << 12) | (3 << 22) | (0xf << 24), 0, 0, 0],
    ],
  );
  assert.deepEqual(be.ste, [[0, 0xffff]]);
  // with 8 StreamID bits the table is linear, all abort STEs
  const vm2 = new Vm(new HostMachine({ iommu: "smmuv3" }), { ramBytes: 4 << 20 });
  const s2 = new VSmmu(vm2.ram, vsmmuIdRegs(defaultIdRegs(), { sidBits: 8 }), new Recorder());
  const g2 = new GuestSmmuDriver(vm2, s2);
  assert.equal(g2.st2l, false);
  assert.equal(s2.readReg(SmmuReg.STRTAB_BASE_CFG), 8);
  assert.deepEqual(s2.readSte(200), Ste.encodeWords({ v: 1, config: SteConfig.ABORT }));
});
