/**
 * The arm-smmu-v3 driver over the SMMUv3 unit: probe and reset, hw_info, paging domains that
 * devices really DMA through, the invalidations unmap makes, dirty tracking, blocked and replaced
 * attachments, PASIDs, stalls through the I/O page fault path, and the command queue's error skip.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PhysMem } from "../../src/mm/phys.js";
import { HwMemory } from "../../src/hw/memory.js";
import { SmmuUnit } from "../../src/hw/smmuv3/unit.js";
import { CmdOp, decodeCmd } from "../../src/hw/smmuv3/cmdq.js";
import { EventId } from "../../src/hw/smmuv3/events.js";
import { Ste, SteConfig } from "../../src/hw/smmuv3/tables.js";
import { CR0_CMDQEN, CR0_EVTQEN, CR0_PRIQEN, CR0_SMMUEN, SmmuReg, defaultIdRegs } from "../../src/hw/smmuv3/unit-regs.js";
import { BlockedDomain, IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE, type IopfFault } from "../../src/iommu/domain.js";
import { ResvType } from "../../src/iommu/device.js";
import { IommuCap } from "../../src/iommu/driver.js";
import {
  HW_INFO_ARM_SMMUV3_SIZE,
  IOMMU_HW_INFO_TYPE_ARM_SMMUV3,
  SmmuDomain,
  SmmuDriver,
  createSmmuDevice,
  type SmmuDriverOptions,
} from "../../src/iommu/drivers/smmuv3.js";
import { IommuError } from "../../src/errno.js";

const RW = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE;
const NEST_PARENT = 1;
const DIRTY = 2;

function setup(opts: SmmuDriverOptions = {}, unitOpts = {}) {
  const mem = new HwMemory(new PhysMem());
  const unit = new SmmuUnit(mem, unitOpts);
  const drv = new SmmuDriver(unit, { traceCommands: true, ...opts });
  const dev = createSmmuDevice(drv, { name: "nic0", sid: 0x104 });
  return { mem, unit, drv, dev };
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

function ops(drv: SmmuDriver, from = 0): string[] {
  const names: Record<number, string> = {};
  for (const [k, v] of Object.entries(CmdOp)) names[v] = k;
  return (drv.commandLog ?? []).slice(from).map((c) => names[c.op] ?? c.op.toString(16));
}

test("probe and reset: a two-level stream table, the three queues, SMMUEN; CFGI_ALL then TLBI_NSNH_ALL, each with a CMD_SYNC", () => {
  const { unit, drv } = setup();
  assert.equal(unit.readReg(SmmuReg.CR0), CR0_SMMUEN | CR0_CMDQEN | CR0_EVTQEN | CR0_PRIQEN);
  assert.equal((unit.readReg(SmmuReg.STRTAB_BASE_CFG) >>> 16) & 3, 1, "2-level format");
  assert.equal((unit.readReg(SmmuReg.STRTAB_BASE_CFG) >>> 6) & 0x1f, 8, "SPLIT 8");
  assert.equal(unit.readReg(SmmuReg.STRTAB_BASE_CFG) & 0x3f, 16, "covers 16 SID bits");
  assert.deepEqual(ops(drv).slice(0, 4), ["CFGI_STE_RANGE", "CMD_SYNC", "TLBI_NSNH_ALL", "CMD_SYNC"]);
  const sync = drv.commandLog?.[1];
  assert.ok(sync !== undefined);
  const d = decodeCmd(new Uint8Array(sync.words.buffer));
  assert.ok(d.kind === "sync" && d.cs === 1 && d.msiaddr !== 0, "MSI polling: CS = IRQ to the command's own slot");
});

test("a probed device gets an abort STE: its DMA is terminated without an event", () => {
  const { dev, drv } = setup();
  const r = dev.dma({ iova: 0x1000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r.status, "faulted");
  assert.equal(r.fault?.kind, "blocked");
  assert.deepEqual(drv.eventLog, []);
});

test("hw_info: IOMMU_HW_INFO_TYPE_ARM_SMMUV3 with idr[0..5], iidr and aidr read from the registers", () => {
  const { dev, drv, unit } = setup();
  const info = drv.hwInfo(dev);
  assert.equal(info.type, IOMMU_HW_INFO_TYPE_ARM_SMMUV3);
  assert.equal(info.data.length, HW_INFO_ARM_SMMUV3_SIZE);
  const dv = new DataView(info.data.buffer);
  assert.equal(dv.getUint32(0, true), 0, "flags");
  assert.equal(dv.getUint32(4, true), 0, "__reserved");
  for (let i = 0; i < 6; i++) assert.equal(dv.getUint32(8 + 4 * i, true), unit.readReg(4 * i), `idr[${i}]`);
  assert.equal(dv.getUint32(32, true), unit.readReg(SmmuReg.IIDR));
  assert.equal(dv.getUint32(36, true), unit.readReg(SmmuReg.AIDR));
});

test("a device's reserved regions: the software MSI window at 0x8000000, 1 MiB", () => {
  const { dev } = setup();
  assert.deepEqual(dev.resv, [{ start: 0x8000000n, length: 0x100000n, type: ResvType.SW_MSI }]);
});

test("paging domain: stage 1 with pgsize 4K|2M|1G and a 48-bit aperture; flags NEST_PARENT give stage 2; others EOPNOTSUPP", () => {
  const { dev, drv } = setup();
  const d = drv.domainAllocUser(dev, 0, null, null) as SmmuDomain;
  assert.equal(d.stage, 1);
  assert.equal(d.pgsizeBitmap, (1n << 12n) | (1n << 21n) | (1n << 30n));
  assert.equal(d.apertureStart, 0n);
  assert.equal(d.apertureEnd, (1n << 48n) - 1n);
  assert.equal(d.asid, 1);
  const p = drv.domainAllocUser(dev, NEST_PARENT, null, null) as SmmuDomain;
  assert.equal(p.stage, 2);
  assert.equal(p.vmid, 1);
  assert.equal((drv.domainAllocUser(dev, DIRTY, null, null) as SmmuDomain).dirtyOps, true);
  assert.equal(errno(() => drv.domainAllocUser(dev, NEST_PARENT | DIRTY, null, null)), "EOPNOTSUPP");
  assert.equal(errno(() => drv.domainAllocUser(dev, 1 << 4, null, null)), "EOPNOTSUPP");
  assert.equal(errno(() => drv.domainAllocUser(dev, 0, p, null)), "EOPNOTSUPP");
  assert.equal(errno(() => drv.domainAllocUser(dev, 0, null, { type: 2, len: 16, read: () => new Uint8Array(16) })), "EOPNOTSUPP");
  d.free();
  assert.equal((drv.domainAllocUser(dev, 0, null, null) as SmmuDomain).asid, 1, "a freed ASID is the lowest free again");
});

test("attach + map: the device's DMA reaches the host memory the IOVA maps; the driver wrote a CD and a CD-table STE", () => {
  const { mem, dev, drv, unit } = setup();
  const d = drv.domainAllocPaging(dev);
  const mark = drv.commandLog?.length ?? 0;
  drv.attachDev(d, dev);
  // arm_smmu_write_entry from an empty CD and from the abort STE: the bits the old entry ignores
  // first, then the qword with V / Config, each step synced
  assert.deepEqual(ops(drv, mark), ["CFGI_CD", "CMD_SYNC", "CFGI_CD", "CMD_SYNC", "CFGI_STE", "CMD_SYNC", "CFGI_STE", "CMD_SYNC", "PREFETCH_CONFIG"]);
  const host = mem.phys.allocRun(4);
  d.map(0x40000, host * 4096, 4, RW, false);
  const src = new Uint8Array(5000).map((_, i) => (i * 3) & 0xff);
  const r = dev.dma({ iova: 0x40000800n, length: 5000, write: true, data: src });
  assert.deepEqual(r, { status: "done", bytes: 5000, fault: null });
  assert.deepEqual(mem.read(host * 4096 + 0x800, 5000), src);
  assert.equal(unit.translatePage(0x104, -1, 0x40003, false), host + 3);
  assert.equal(d.iovaToPhys(0x40001), (host + 1) * 4096);
  assert.equal(d.protAt(0x40001), IOMMU_READ | IOMMU_WRITE);
  assert.equal(d.mappedPages(), 4);
});

test("unmap invalidates at once (strict): the next DMA to it faults with F_TRANSLATION, which the driver logs", () => {
  const { mem, dev, drv } = setup();
  const d = drv.domainAllocPaging(dev);
  drv.attachDev(d, dev);
  const host = mem.phys.allocRun(2);
  d.map(0x100, host * 4096, 2, RW, false);
  assert.equal(dev.dma({ iova: 0x100000n, length: 8, write: false, data: new Uint8Array(8) }).status, "done");
  const mark = drv.commandLog?.length ?? 0;
  d.unmap(0x100, 2);
  assert.deepEqual(ops(drv, mark), ["TLBI_NH_VA", "CMD_SYNC"]);
  const tlbi = decodeCmd(new Uint8Array((drv.commandLog ?? [])[mark].words.buffer));
  assert.ok(tlbi.kind === "tlbiNhVa" && tlbi.asid === d.asid && tlbi.addr === 0x100000 && tlbi.tg === 1 && tlbi.num === 0 && tlbi.scale === 1 && tlbi.ttl === 3);
  const r = dev.dma({ iova: 0x100000n, length: 8, write: false, data: new Uint8Array(8) });
  assert.equal(r.fault?.kind, "translation");
  assert.deepEqual(drv.eventLog.map((e) => [e.id, e.sid]), [[EventId.F_TRANSLATION, 0x104]]);
});

test("lazy invalidation: an unmapped page keeps translating from the TLB until flush() invalidates the ASID", () => {
  const { mem, dev, drv } = setup({ invalidation: "lazy" });
  const d = drv.domainAllocPaging(dev);
  drv.attachDev(d, dev);
  const host = mem.phys.allocRun(1);
  d.map(0x200, host * 4096, 1, RW, false);
  assert.equal(dev.dma({ iova: 0x200000n, length: 4, write: false, data: new Uint8Array(4) }).status, "done");
  d.unmap(0x200, 1);
  assert.deepEqual(d.pendingFlush, [0x200, 0x201]);
  assert.equal(dev.dma({ iova: 0x200000n, length: 4, write: false, data: new Uint8Array(4) }).status, "done", "stale TLB entry");
  const mark = drv.commandLog?.length ?? 0;
  d.flush();
  assert.deepEqual(ops(drv, mark), ["TLBI_NH_ASID", "CMD_SYNC"]);
  assert.equal(dev.dma({ iova: 0x200000n, length: 4, write: false, data: new Uint8Array(4) }).status, "faulted");
});

test("range invalidations follow __arm_smmu_tlb_inv_range: NUM/SCALE chunks of the page count", () => {
  const { mem, dev, drv } = setup();
  const d = drv.domainAllocPaging(dev);
  drv.attachDev(d, dev);
  d.map(0x1000, mem.phys.allocRun(70) * 4096, 70, RW, true);
  const mark = drv.commandLog?.length ?? 0;
  d.unmap(0x1000, 70); // 70 = 0b1000110: scale 1 num 3 (6 pages), then scale 6 num 1 (64 pages)
  const cmds = (drv.commandLog ?? []).slice(mark).map((c) => decodeCmd(new Uint8Array(c.words.buffer)));
  const r = cmds.filter((c) => c.kind === "tlbiNhVa").map((c) => (c.kind === "tlbiNhVa" ? [c.addr / 4096, c.scale, c.num] : []));
  assert.deepEqual(r, [
    [0x1000, 1, 2],
    [0x1006, 6, 0],
  ]);
});

test("map with smallOnly writes 4 KiB leaves only; without it a 2 MiB-aligned run becomes a block", () => {
  const { mem, dev, drv } = setup();
  const d = drv.domainAllocPaging(dev);
  const host = mem.phys.allocRun(1024, 512);
  d.map(0x200, host * 4096, 512, RW, true);
  assert.equal(d.engine.walk(0x300).leafPages, 1);
  d.map(0x400, (host + 512) * 4096, 512, RW, false);
  assert.equal(d.engine.walk(0x500).leafPages, 512);
  assert.equal(d.mappedPages(), 1024);
});

test("a stage-2 (NEST_PARENT) domain translates device DMA with IOVA as the IPA; unmap sends TLBI_S2_IPA then TLBI_NH_ALL of its VMID", () => {
  const { mem, dev, drv } = setup();
  const p = drv.domainAllocUser(dev, NEST_PARENT, null, null) as SmmuDomain;
  drv.attachDev(p, dev);
  const host = mem.phys.allocRun(1);
  p.map(0x3000, host * 4096, 1, RW, false);
  const src = new Uint8Array([7, 7, 7]);
  assert.equal(dev.dma({ iova: 0x3000010n, length: 3, write: true, data: src }).status, "done");
  assert.deepEqual(mem.read(host * 4096 + 0x10, 3), src);
  const mark = drv.commandLog?.length ?? 0;
  p.unmap(0x3000, 1);
  assert.deepEqual(ops(drv, mark), ["TLBI_S2_IPA", "CMD_SYNC", "TLBI_NH_ALL", "CMD_SYNC"]);
  assert.equal(dev.dma({ iova: 0x3000010n, length: 3, write: true, data: src }).fault?.stage, 2);
});

test("dirty tracking: DBM leaves are made dirty by the device's writes; read-and-clear reports them and invalidates, so the next write is seen again", () => {
  const { mem, dev, drv } = setup();
  assert.equal(drv.capable(dev, IommuCap.DIRTY_TRACKING), true);
  const d = drv.domainAllocUser(dev, DIRTY, null, null) as SmmuDomain;
  drv.attachDev(d, dev);
  const host = mem.phys.allocRun(4);
  d.map(0x10, host * 4096, 4, RW, false);
  d.setDirtyTracking(true);
  const pages = (noClear: boolean): number[] => {
    const out: number[] = [];
    d.readAndClearDirty(0x10, 4, noClear, (v, n) => {
      for (let i = 0; i < n; i++) out.push(v + i);
    });
    return out;
  };
  assert.deepEqual(pages(false), [0x10, 0x11, 0x12, 0x13], "Linux maps writable leaves dirty");
  assert.deepEqual(pages(false), [], "clean now");
  dev.dma({ iova: 0x12000n, length: 4, write: true, data: new Uint8Array(4) });
  dev.dma({ iova: 0x11000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.deepEqual(pages(false), [0x12], "only the written page");
  dev.dma({ iova: 0x12000n, length: 4, write: true, data: new Uint8Array(4) });
  assert.deepEqual(pages(true), [0x12], "the write after the clear went through a fresh walk");
  assert.deepEqual(pages(true), [0x12], "NO_CLEAR left it dirty");
});

test("attaching the blocked domain installs an abort STE: the device's DMA is terminated silently", () => {
  const { mem, dev, drv } = setup();
  const d = drv.domainAllocPaging(dev);
  drv.attachDev(d, dev);
  d.map(0x5, mem.phys.allocRun(1) * 4096, 1, RW, false);
  assert.equal(dev.dma({ iova: 0x5000n, length: 1, write: false, data: new Uint8Array(1) }).status, "done");
  drv.attachDev(new BlockedDomain(drv), dev);
  const r = dev.dma({ iova: 0x5000n, length: 1, write: false, data: new Uint8Array(1) });
  assert.equal(r.fault?.kind, "blocked");
  assert.deepEqual(drv.eventLog, []);
  assert.equal(d.attached.size, 0, "the domain no longer lists the device");
});

test("replacing a stage-1 domain by another changes only the CD (hitless) and DMA follows the new mapping", () => {
  const { mem, dev, drv } = setup();
  const a = drv.domainAllocPaging(dev);
  const b = drv.domainAllocPaging(dev);
  const ha = mem.phys.allocRun(1);
  const hb = mem.phys.allocRun(1);
  a.map(0x9, ha * 4096, 1, RW, false);
  b.map(0x9, hb * 4096, 1, RW, false);
  drv.attachDev(a, dev);
  dev.dma({ iova: 0x9000n, length: 1, write: true, data: new Uint8Array([1]) });
  const mark = drv.commandLog?.length ?? 0;
  drv.attachDev(b, dev);
  // the STE is unchanged (the same CD table): only the CD is rewritten, in one step (ASID and TTB0 in qwords 0 and 1: breaking)
  assert.ok(!ops(drv, mark).includes("CFGI_STE"), ops(drv, mark).join(","));
  dev.dma({ iova: 0x9000n, length: 1, write: true, data: new Uint8Array([2]) });
  assert.deepEqual([...mem.read(ha * 4096, 1), ...mem.read(hb * 4096, 1)], [1, 2]);
});

test("a stage-1 domain to stage-2 and back: breaking STE updates (V = 0 first, then the other qwords, then qword 0), each step synced", () => {
  const { mem, unit, dev, drv } = setup();
  const s1 = drv.domainAllocPaging(dev);
  const s2 = drv.domainAllocUser(dev, NEST_PARENT, null, null);
  drv.attachDev(s1, dev);
  // the STE of SID 0x104: L1 descriptor 1, entry 4 of its L2 table
  const strtab = Number(unit.readReg64(SmmuReg.STRTAB_BASE) & 0xffffffffffc0n);
  const l2 = (mem.read32(strtab + 8) & ~0x3f) >>> 0;
  const stePa = l2 + 4 * 64;
  const seen: string[] = [];
  const issue = drv.issueCmdlist.bind(drv);
  drv.issueCmdlist = (cmds, sync) => {
    for (const c of cmds) {
      if ((c[0] & 0xff) === CmdOp.CFGI_STE) {
        const w = new Uint32Array(16);
        for (let i = 0; i < 16; i++) w[i] = mem.read32(stePa + 4 * i);
        seen.push(`V=${Ste.acc.v.get(w, 0)} cfg=${Ste.acc.config.get(w, 0)} vmid=${Ste.acc.s2vmid.get(w, 0)}`);
      }
    }
    issue(cmds, sync);
  };
  drv.attachDev(s2, dev);
  const vmid = (s2 as SmmuDomain).vmid;
  assert.deepEqual(seen, ["V=0 cfg=0 vmid=0", `V=0 cfg=0 vmid=${vmid}`, `V=1 cfg=${SteConfig.S2_TRANS} vmid=${vmid}`]);
  seen.length = 0;
  drv.attachDev(s1, dev);
  assert.deepEqual(seen, [`V=0 cfg=0 vmid=${vmid}`, "V=0 cfg=0 vmid=0", `V=1 cfg=${SteConfig.S1_TRANS} vmid=0`]);
});

test("an illegal command is skipped by the GERROR handler (turned into a CMD_SYNC) and the queue goes on", () => {
  const { unit, drv } = setup();
  drv.issueCmdlist([new Uint32Array([0x7f, 0, 0, 0]), new Uint32Array([CmdOp.TLBI_NSNH_ALL, 0, 0, 0])], true);
  assert.equal(unit.readReg(SmmuReg.GERROR), unit.readReg(SmmuReg.GERRORN), "acknowledged");
  assert.equal((unit.readReg(SmmuReg.CMDQ_CONS) >>> 24) & 0x7f, 1, "CONS.ERR still says what happened: CERROR_ILL");
});

test("PASID: a stage-1 domain attached to PASID 5 translates that PASID's DMA; removing it ends it with C_BAD_CD", () => {
  const mem = new HwMemory(new PhysMem());
  const unit = new SmmuUnit(mem);
  const drv = new SmmuDriver(unit);
  const dev = createSmmuDevice(drv, { name: "accel", sid: 0x200, maxPasidLog2: 8 });
  const rid = drv.domainAllocPaging(dev);
  const pd = drv.domainAllocPaging(dev);
  drv.attachDev(rid, dev);
  const host = mem.phys.allocRun(1);
  pd.map(0x77, host * 4096, 1, RW, false);
  drv.setDevPasid(pd, dev, 5);
  assert.equal(dev.dma({ iova: 0x77000n, length: 1, write: true, data: new Uint8Array([5]), pasid: 5 }).status, "done");
  assert.deepEqual(mem.read(host * 4096, 1), new Uint8Array([5]));
  assert.equal(dev.dma({ iova: 0x77000n, length: 1, write: true, data: new Uint8Array([5]) }).fault?.kind, "translation", "the RID's domain has nothing there");
  assert.equal(errno(() => drv.setDevPasid(drv.domainAllocUser(dev, NEST_PARENT, null, null), dev, 6)), "EINVAL");
  drv.removeDevPasid(dev, 5);
  const r = dev.dma({ iova: 0x77000n, length: 1, write: false, data: new Uint8Array(1), pasid: 5 });
  assert.equal(r.fault?.code, EventId.C_BAD_CD);
});

test("a blocked RID with PASIDs in use gets a CD-table STE whose S1DSS terminates non-PASID traffic", () => {
  const mem = new HwMemory(new PhysMem());
  const unit = new SmmuUnit(mem);
  const drv = new SmmuDriver(unit);
  const dev = createSmmuDevice(drv, { name: "accel", sid: 0x201, maxPasidLog2: 4 });
  const pd = drv.domainAllocPaging(dev);
  drv.setDevPasid(pd, dev, 3);
  const r = dev.dma({ iova: 0n, length: 1, write: false, data: new Uint8Array(1) });
  assert.equal(r.fault?.code, EventId.F_STREAM_DISABLED);
  drv.removeDevPasid(dev, 3);
  assert.equal(dev.dma({ iova: 0n, length: 1, write: false, data: new Uint8Array(1) }).fault?.code, 0, "back to a plain abort STE");
});

test("stall: a stage-1 fault of a dma-can-stall device goes to the domain's I/O page fault handler; page_response(success) retries it", () => {
  const mem = new HwMemory(new PhysMem());
  const unit = new SmmuUnit(mem);
  const drv = new SmmuDriver(unit);
  const dev = createSmmuDevice(drv, { name: "stally", sid: 0x300, master: { canStall: true } });
  const d = drv.domainAllocPaging(dev);
  drv.attachDev(d, dev);
  const faults: IopfFault[] = [];
  d.iopfHandler = (f) => faults.push(f);
  const results: string[] = [];
  const r = dev.dma({ iova: 0x4242000n, length: 4, write: true, data: new Uint8Array([1, 2, 3, 4]), onComplete: (x) => results.push(x.status) });
  assert.equal(r.status, "pending");
  assert.equal(faults.length, 1);
  assert.equal(faults[0].addr, 0x4242000n);
  assert.equal(faults[0].perm, 2, "write");
  assert.equal(faults[0].lastPage, true);
  const host = mem.phys.allocRun(1);
  d.map(0x4242, host * 4096, 1, RW, false);
  drv.pageResponse(dev, faults[0], 0);
  assert.deepEqual(results, ["done"]);
  assert.deepEqual(mem.read(host * 4096, 4), new Uint8Array([1, 2, 3, 4]));
  // no handler: the driver answers with an abort at once
  d.iopfHandler = null;
  const r2 = dev.dma({ iova: 0x5000000n, length: 4, write: false, data: new Uint8Array(4) });
  assert.equal(r2.status, "faulted");
});

test("cache coherency and ENFORCE_CACHE_COHERENCY follow the firmware's coherency and the device's CANWBS", () => {
  const { dev, drv } = setup();
  assert.equal(drv.capable(dev, IommuCap.CACHE_COHERENCY), true);
  assert.equal(drv.capable(dev, IommuCap.ENFORCE_CACHE_COHERENCY), true);
  const other = createSmmuDevice(drv, { name: "nc", sid: 0x500, master: { canwbs: false } });
  assert.equal(drv.capable(other, IommuCap.ENFORCE_CACHE_COHERENCY), false);
  const d = drv.domainAllocPaging(dev);
  assert.equal(d.enforceCacheCoherency, true);
  assert.equal(errno(() => drv.attachDev(d, other)), "EINVAL");
  const nd = drv.domainAllocPaging(other);
  assert.equal(nd.enforceCacheCoherency, false);
  drv.attachDev(nd, other);
  const nohd = setup({}, { idRegs: { idr0: defaultIdRegs().idr0 & ~(3 << 6) } });
  assert.equal(nohd.drv.capable(nohd.dev, IommuCap.DIRTY_TRACKING), false, "no HTTU dirty: no dirty tracking");
});

test("an identity RID with a PASID attached: non-PASID traffic bypasses (S1DSS = bypass), the PASID translates; removing it restores the plain bypass STE", () => {
  const mem = new HwMemory(new PhysMem());
  const unit = new SmmuUnit(mem);
  const drv = new SmmuDriver(unit);
  const dev = createSmmuDevice(drv, { name: "accel", sid: 0x202, maxPasidLog2: 4 });
  drv.attachIdentity(dev);
  assert.equal(unit.translatePage(0x202, -1, 0x1234, false), 0x1234);
  const pd = drv.domainAllocPaging(dev);
  const host = mem.phys.allocRun(1);
  pd.map(0x10, host * 4096, 1, RW, false);
  drv.setDevPasid(pd, dev, 2);
  assert.equal(unit.translatePage(0x202, -1, 0x1234, false), 0x1234);
  assert.equal(unit.translatePage(0x202, 2, 0x10, false), host);
  drv.removeDevPasid(dev, 2);
  assert.equal(unit.translatePage(0x202, -1, 0x1234, false), 0x1234);
  assert.equal(dev.dma({ iova: 0x10000n, length: 1, write: false, data: new Uint8Array(1), pasid: 2 }).fault?.code, EventId.C_BAD_SUBSTREAMID);
});
