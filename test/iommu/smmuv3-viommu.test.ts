/**
 * The arm-smmu-v3 driver's vIOMMU side: a vIOMMU on a stage-2 NEST_PARENT domain, nested domains
 * from a guest's vSTE (the guest's CD table and stage-1 tables live in guest memory behind the
 * parent), guest invalidation commands, vDEVICEs and vEVENTs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PhysMem } from "../../src/mm/phys.js";
import { HwMemory, WindowFrameStore } from "../../src/hw/memory.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { PT_ACCESSED, PT_READ, PT_USER, PT_WRITE, armStage1 } from "../../src/hw/pagetable/format.js";
import { SmmuUnit } from "../../src/hw/smmuv3/unit.js";
import { encodeCmd, CmdOp, type CmdInput } from "../../src/hw/smmuv3/cmdq.js";
import { EventId, decodeEvent } from "../../src/hw/smmuv3/events.js";
import { Cd, Ste, SteConfig } from "../../src/hw/smmuv3/tables.js";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from "../../src/iommu/domain.js";
import type { UserData, UserDataArray } from "../../src/iommu/driver.js";
import {
  IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
  IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
  SmmuDomain,
  SmmuDriver,
  SmmuViommu,
  createSmmuDevice,
} from "../../src/iommu/drivers/smmuv3.js";
import { IommuError } from "../../src/errno.js";

const NEST_PARENT = 1;
const GBASE = 0x80000; // guest RAM at IPA 2 GiB
const RAM = 512;
const GRW = PT_READ | PT_WRITE | PT_USER | PT_ACCESSED;
const VSID = 0x77;

function vsteBytes(q0: bigint, q1 = 0n): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, q0, true);
  dv.setBigUint64(8, q1, true);
  return b;
}

function userData(bytes: Uint8Array, type = 2): UserData {
  return { type, len: bytes.length, read: (n) => bytes.slice(0, n) };
}

function cmdArray(cmds: (CmdInput | Uint8Array)[], entryLen = 16, type = IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3): UserDataArray {
  const raw = cmds.map((c) => (c instanceof Uint8Array ? c : encodeCmd(c)));
  return {
    type,
    entryLen,
    entryNum: raw.length,
    entry: (i) => {
      const e = new Uint8Array(entryLen);
      e.set(raw[i].subarray(0, Math.min(entryLen, raw[i].length)));
      return e;
    },
  };
}

function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
  return "none";
}

/** A VM: guest RAM behind a NEST_PARENT domain, a guest stage-1 table and CD table in it, a vIOMMU, a vDEVICE. */
function vm(opts: { vdevice?: boolean } = {}) {
  const mem = new HwMemory(new PhysMem());
  const unit = new SmmuUnit(mem);
  const drv = new SmmuDriver(unit, { traceCommands: true });
  const dev = createSmmuDevice(drv, { name: "vf0", sid: 0x110 });
  const parent = drv.domainAllocUser(dev, NEST_PARENT, null, null) as SmmuDomain;
  const host = mem.phys.allocRun(RAM);
  parent.map(GBASE, host * 4096, RAM, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE, false);
  const gmem = new WindowFrameStore(mem, GBASE, host, RAM);
  const gs1 = new PageTableEngine(gmem, armStage1());
  const cdGpn = gmem.allocTable(1);
  const hostOf = (gpn: number): number => host + (gpn - GBASE);
  const writeGuestCd = (ttbGpn: number, asid: number): void => {
    const w = Cd.encodeWords({ v: 1, t0sz: 16, epd1: 1, ips: 5, aa64: 1, r: 1, a: 1, asid, ttb0: ttbGpn * 4096 });
    for (let i = 0; i < 16; i++) mem.write32(hostOf(cdGpn) * 4096 + 4 * i, w[i]);
  };
  writeGuestCd(gs1.root, 0x33);
  const reports: { type: number; payload: Uint8Array }[] = [];
  const vi = drv.viommuAlloc(dev, parent, 1, null, { report: (type, payload) => reports.push({ type, payload }) }) as SmmuViommu;
  if (opts.vdevice ?? true) vi.vdeviceInit(dev, BigInt(VSID));
  const s1Vste = vsteBytes(Ste.toQwords({ v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdGpn * 4096 })[0]);
  return { mem, unit, drv, dev, parent, host, gmem, gs1, cdGpn, hostOf, writeGuestCd, reports, vi, s1Vste };
}

test("vIOMMU: ARM_SMMUV3 on a stage-2 NEST_PARENT domain; another type is EOPNOTSUPP, a stage-1 parent EINVAL", () => {
  const { drv, dev, parent } = vm();
  assert.equal(drv.viommuTypeSupported(dev, 1), true);
  assert.equal(drv.viommuTypeSupported(dev, 2), false);
  const sink = { report: () => undefined };
  assert.equal(errno(() => drv.viommuAlloc(dev, parent, 2, null, sink)), "EOPNOTSUPP");
  assert.equal(errno(() => drv.viommuAlloc(dev, drv.domainAllocPaging(dev), 1, null, sink)), "EINVAL");
  const vi = drv.viommuAlloc(dev, parent, 1, null, sink) as SmmuViommu;
  assert.equal(vi.vmid, parent.vmid, "the vIOMMU's VMID is its parent's");
  const nc = createSmmuDevice(drv, { name: "nc", sid: 0x400, master: { canwbs: false } });
  assert.equal(errno(() => drv.viommuAlloc(nc, parent, 1, null, sink)), "EOPNOTSUPP", "neither CANWBS nor S2FWB");
});

test("a nested HWPT from a vSTE translates guest VA -> IPA -> host PA through the guest's CD and stage-1 tables", () => {
  const g = vm();
  const dataGpn = g.gmem.allocTable(2);
  g.gs1.map(0x8000, dataGpn, 2, GRW);
  const nd = g.vi.allocDomainNested(g.dev, 0, userData(g.s1Vste));
  g.drv.attachDev(nd, g.dev);
  const src = new Uint8Array(6000).map((_, i) => i & 0xff);
  const r = g.dev.dma({ iova: 0x8000100n, length: 6000, write: true, data: src });
  assert.deepEqual(r, { status: "done", bytes: 6000, fault: null });
  assert.deepEqual(g.mem.read(g.hostOf(dataGpn) * 4096 + 0x100, 6000), src);
  const e = g.unit.tlb.entries().find((x) => x.vpn === 0x8000);
  assert.ok(e !== undefined && e.k1 === 0x33 && e.k2 === g.parent.vmid, "cached under the guest ASID and the parent VMID");
});

test("vSTE validation: bits the guest may not set, Config stage 2 or nested, EATS 2 are EIO; a wrong type or length is EINVAL; flags EOPNOTSUPP", () => {
  const g = vm();
  const good = Ste.toQwords({ v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: g.cdGpn * 4096 });
  const cases: [string, Uint8Array, string][] = [
    ["S2VMID is the host's", vsteBytes(good[0], 1n << 20n), "EIO"],
    ["MEV", vsteBytes(good[0], 1n << 19n), "EIO"],
    ["Config S2", vsteBytes(Ste.toQwords({ v: 1, config: SteConfig.S2_TRANS })[0]), "EIO"],
    ["Config nested", vsteBytes(Ste.toQwords({ v: 1, config: SteConfig.NESTED })[0]), "EIO"],
    ["EATS 2", vsteBytes(good[0], 2n << 28n), "EIO"],
  ];
  for (const [what, b, code] of cases) assert.equal(errno(() => g.vi.allocDomainNested(g.dev, 0, userData(b))), code, what);
  assert.equal(errno(() => g.vi.allocDomainNested(g.dev, 0, userData(g.s1Vste, 1))), "EINVAL", "data type");
  assert.equal(errno(() => g.vi.allocDomainNested(g.dev, 0, userData(new Uint8Array(8)))), "EINVAL", "8 bytes");
  assert.equal(errno(() => g.vi.allocDomainNested(g.dev, 0, userData(new Uint8Array(24)))), "EINVAL", "24 bytes");
  assert.equal(errno(() => g.vi.allocDomainNested(g.dev, 1 << 2, userData(g.s1Vste))), "EOPNOTSUPP", "flags");
  // V = 0: anything else is ignored, the domain aborts
  const off = g.vi.allocDomainNested(g.dev, 0, userData(vsteBytes(0xffffffn << 8n, M)));
  g.drv.attachDev(off, g.dev);
  assert.equal(g.dev.dma({ iova: 0n, length: 1, write: false, data: new Uint8Array(1) }).fault?.kind, "blocked");
});
const M = (1n << 64n) - 1n;

test("attaching a translating nested domain needs a vDEVICE (ENOENT); abort and bypass vSTEs attach without one, bypass giving stage 2 only", () => {
  const g = vm({ vdevice: false });
  const nd = g.vi.allocDomainNested(g.dev, 0, userData(g.s1Vste));
  assert.equal(errno(() => g.drv.attachDev(nd, g.dev)), "ENOENT");
  const bypass = g.vi.allocDomainNested(g.dev, 0, userData(vsteBytes(Ste.toQwords({ v: 1, config: SteConfig.BYPASS })[0])));
  g.drv.attachDev(bypass, g.dev);
  assert.equal(g.unit.translatePage(0x110, -1, GBASE + 5, false), g.hostOf(GBASE + 5), "IPA = IOVA through the parent");
  const abort = g.vi.allocDomainNested(g.dev, 0, userData(vsteBytes(Ste.toQwords({ v: 1, config: SteConfig.ABORT })[0])));
  g.drv.attachDev(abort, g.dev);
  assert.equal(g.unit.translatePage(0x110, -1, GBASE + 5, false), -1);
});

test("a guest TLBI through cacheInvalidate drops exactly its entries (VMID forced to the vIOMMU's)", () => {
  const g = vm();
  const dataGpn = g.gmem.allocTable(2);
  g.gs1.map(0x8000, dataGpn, 1, GRW);
  g.gs1.map(0x9000, dataGpn + 1, 1, GRW);
  g.drv.attachDev(g.vi.allocDomainNested(g.dev, 0, userData(g.s1Vste)), g.dev);
  const rd = (vpn: number): string => g.dev.dma({ iova: BigInt(vpn) * 4096n, length: 4, write: false, data: new Uint8Array(4) }).status;
  assert.equal(rd(0x8000), "done");
  assert.equal(rd(0x9000), "done");
  g.gs1.unmap(0x8000, 1);
  g.gs1.unmap(0x9000, 1);
  assert.equal(rd(0x8000), "done", "stale until the guest invalidates");
  const res = g.vi.cacheInvalidate(cmdArray([{ kind: "tlbiNhVa", asid: 0x33, vmid: 0xabc, addr: 0x8000 * 4096 }]));
  assert.deepEqual(res, { done: 1, error: null });
  assert.equal(rd(0x8000), "faulted");
  assert.equal(rd(0x9000), "done", "another page of the same ASID stays");
  const issued = (g.drv.commandLog ?? []).filter((c) => c.op === CmdOp.TLBI_NH_VA).at(-1);
  assert.ok(issued !== undefined && (issued.words[1] & 0xffff) === g.parent.vmid, "VMID replaced");
  assert.deepEqual(g.vi.cacheInvalidate(cmdArray([{ kind: "tlbiNsnhAll" }])), { done: 1, error: null });
  assert.equal(rd(0x9000), "faulted", "TLBI_NSNH_ALL became TLBI_NH_ALL of the VM");
});

test("a guest CFGI_CD reaches the physical StreamID: the guest's new CD is used after it, not before", () => {
  const g = vm();
  const a = g.gmem.allocTable(1);
  const b = g.gmem.allocTable(1);
  g.gs1.map(0x8000, a, 1, GRW);
  const other = new PageTableEngine(g.gmem, armStage1());
  other.map(0x8000, b, 1, GRW);
  g.drv.attachDev(g.vi.allocDomainNested(g.dev, 0, userData(g.s1Vste)), g.dev);
  assert.equal(g.unit.translatePage(0x110, -1, 0x8000, false), g.hostOf(a));
  g.writeGuestCd(other.root, 0x34);
  assert.equal(g.unit.translatePage(0x110, -1, 0x8000, false), g.hostOf(a), "the cached CD");
  assert.deepEqual(g.vi.cacheInvalidate(cmdArray([{ kind: "cfgiCd", sid: VSID, ssid: 0, leaf: 1 }])), { done: 1, error: null });
  assert.equal(g.unit.translatePage(0x110, -1, 0x8000, false), g.hostOf(b));
  const cfgi = (g.drv.commandLog ?? []).filter((c) => c.op === CmdOp.CFGI_CD).at(-1);
  assert.equal(cfgi?.words[1], 0x110, "vSID 0x77 became SID 0x110");
});

test("cacheInvalidate errors: another data type or no entries EINVAL, a non-zero tail E2BIG, a forbidden opcode or unknown vSID EIO, with the handled count", () => {
  const g = vm();
  const nh: CmdInput = { kind: "tlbiNhAsid", asid: 1 };
  assert.deepEqual(errOf(g.vi.cacheInvalidate(cmdArray([nh], 16, 0))), [0, "EINVAL"]);
  assert.deepEqual(errOf(g.vi.cacheInvalidate(cmdArray([]))), [0, "EINVAL"]);
  const tail = new Uint8Array(24);
  tail.set(encodeCmd(nh));
  tail[20] = 1;
  assert.deepEqual(errOf(g.vi.cacheInvalidate(cmdArray([encodeCmd(nh), tail], 24))), [0, "E2BIG"]);
  assert.deepEqual(errOf(g.vi.cacheInvalidate(cmdArray([encodeCmd(nh)], 24))), [1, null], "a longer entry with a zero tail");
  assert.deepEqual(errOf(g.vi.cacheInvalidate(cmdArray([encodeCmd(nh)], 8))), [1, null], "a shorter entry is zero-extended");
  const mark = g.drv.commandLog?.length ?? 0;
  assert.deepEqual(errOf(g.vi.cacheInvalidate(cmdArray([nh, nh, { kind: "cfgiSte", sid: VSID, leaf: 1 }, nh]))), [2, "EIO"]);
  assert.equal(g.drv.commandLog?.length, mark, "the two converted before the bad one count as handled but were never issued");
  assert.deepEqual(errOf(g.vi.cacheInvalidate(cmdArray([{ kind: "cfgiCdAll", sid: 0x999 }]))), [0, "EIO"], "no vDEVICE with that vSID");
  assert.deepEqual(errOf(g.vi.cacheInvalidate(cmdArray([{ kind: "sync" }]))), [0, "EIO"]);
  // 63 commands make a batch: an error after them leaves those 63 issued
  const many: CmdInput[] = Array.from({ length: 63 }, () => nh);
  const before = (g.drv.commandLog ?? []).length;
  assert.deepEqual(errOf(g.vi.cacheInvalidate(cmdArray([...many, nh, { kind: "prefetchConfig", sid: VSID }]))), [64, "EIO"]);
  assert.equal((g.drv.commandLog ?? []).length - before, 64, "63 TLBIs and their CMD_SYNC");
});

function errOf(r: { done: number; error: Error | null }): [number, string | null] {
  return [r.done, r.error === null ? null : r.error instanceof IommuError ? r.error.code : r.error.message];
}

test("a nested device's stage-1 translation fault reaches the vEVENTQ sink as an ARM_SMMUV3 record with the virtual SID", () => {
  const g = vm();
  g.drv.attachDev(g.vi.allocDomainNested(g.dev, 0, userData(g.s1Vste)), g.dev);
  const r = g.dev.dma({ iova: 0x123456789000n, length: 4, write: true, data: new Uint8Array(4) });
  assert.equal(r.fault?.kind, "translation");
  assert.equal(g.reports.length, 1);
  const { type, payload } = g.reports[0];
  assert.equal(type, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3);
  assert.equal(payload.length, 32);
  const e = decodeEvent(payload);
  assert.ok(e.kind === "fTranslation");
  if (e.kind !== "fTranslation") return;
  assert.equal(e.sid, VSID, "StreamID replaced by the vSID");
  assert.equal(e.inputAddr, 0x123456789000n);
  assert.equal(e.rnw, 0);
  assert.equal(e.s2, 0);
  assert.deepEqual(g.drv.eventLog, []);
});

test("stage-2 faults of a nested device are not forwarded (the host's business); after vDEVICE destroy nothing is", () => {
  const g = vm();
  const dataGpn = g.gmem.allocTable(1);
  g.gs1.map(0x8000, dataGpn, 1, GRW);
  g.drv.attachDev(g.vi.allocDomainNested(g.dev, 0, userData(g.s1Vste)), g.dev);
  g.parent.unmap(dataGpn, 1);
  const r = g.dev.dma({ iova: 0x8000000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.fault?.stage, 2);
  assert.equal(g.reports.length, 0);
  assert.deepEqual(g.drv.eventLog.map((e) => [e.id, e.sid]), [[EventId.F_TRANSLATION, 0x110]]);
  g.vi.vdeviceDestroy(g.dev);
  g.dev.dma({ iova: 0x9000000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(g.reports.length, 0);
  assert.equal(g.drv.eventLog.length, 2);
});
