/**
 * iommufd over the SMMUv3 model, end to end with the newest uAPI: a stage-2 NEST_PARENT HWPT, a
 * vIOMMU on it, a vDEVICE (virtual StreamID), a nested HWPT from the guest's vSTE whose CD table
 * and stage-1 tables live in guest RAM, DMA through all of it, a guest TLBI forwarded with
 * HWPT_INVALIDATE on the vIOMMU, and a translation fault delivered to the vEVENTQ fd with the
 * virtual StreamID.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as S from "../../src/index.js";
import { HwMemory } from "../../src/hw/memory.js";
import { SmmuUnit } from "../../src/hw/smmuv3/unit.js";
import { Cd, Ste, SteConfig } from "../../src/hw/smmuv3/tables.js";
import { encodeCmd } from "../../src/hw/smmuv3/cmdq.js";
import { EventId, decodeEvent } from "../../src/hw/smmuv3/events.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { PT_ACCESSED, PT_READ, PT_USER, PT_WRITE, armStage1 } from "../../src/hw/pagetable/format.js";
import { SmmuDriver, createSmmuDevice } from "../../src/iommu/drivers/smmuv3.js";
import { GuestRam } from "../../src/guest/ram.js";
import type { IommufdFile } from "../../src/iommufd/files.js";
import type { DmaResult } from "../../src/hw/dma.js";

const PAGE = 4096;
const MAP_RW = S.IOMMU_IOAS_MAP_FIXED_IOVA | S.IOMMU_IOAS_MAP_READABLE | S.IOMMU_IOAS_MAP_WRITEABLE;
const GRW = PT_READ | PT_WRITE | PT_USER | PT_ACCESSED;
const SID = 0x110;
const VSID = 0x77;
const ASID = 0x33;

function user(p: S.Process, bytes: Uint8Array): bigint {
  const ptr = p.mmap(PAGE);
  p.write(ptr, bytes);
  return BigInt(ptr);
}

function vm() {
  const host = new S.Host();
  const p = host.spawn({ uid: 1000, capIpcLock: true });
  const ctx = S.openIommufd(host, p);
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const unit = new SmmuUnit(new HwMemory(host.phys));
  const drv = new SmmuDriver(unit);
  const dev = createSmmuDevice(drv, { name: "0000:01:00.0", sid: SID });
  const idev = ctx.bindDevice(dev);
  // guest RAM: 1 MiB of the VMM at GPA 0, mapped at IOVA = GPA
  const pages = 256;
  const va = p.mmap(pages * PAGE);
  const ram = new GuestRam(p, va, pages * PAGE, { tableArea: { first: pages - 32, count: 32 } });
  const parent = ctx.hwptAlloc({ flags: S.IOMMU_HWPT_ALLOC_NEST_PARENT, dev_id: idev.id, pt_id: ioas, data_type: 0, data_len: 0, data_uptr: 0n })
    .out_hwpt_id as number;
  ctx.ioasMap({ flags: MAP_RW, ioas_id: ioas, user_va: BigInt(va), length: BigInt(pages * PAGE), iova: 0n });
  // the guest's stage-1 table and its CD table (one CD) in guest RAM
  const s1 = new PageTableEngine(ram, armStage1());
  const cdGpn = ram.allocTable(1);
  const cd = Cd.encodeWords({ v: 1, t0sz: 16, epd1: 1, ips: 5, aa64: 1, r: 1, a: 1, asid: ASID, ttb0: s1.root * PAGE });
  const f = ram.frameU32(cdGpn);
  for (let i = 0; i < 16; i++) f[i] = cd[i];
  const viommu = ctx.viommuAlloc({ flags: 0, type: S.IOMMU_VIOMMU_TYPE_ARM_SMMUV3, dev_id: idev.id, hwpt_id: parent, data_len: 0, data_uptr: 0n })
    .out_viommu_id as number;
  return { host, p, ctx, ioas, unit, drv, dev, idev, ram, parent, s1, cdGpn, viommu };
}

function vsteData(v: ReturnType<typeof vm>): bigint {
  const q = Ste.toQwords({ v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: v.cdGpn * PAGE });
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, q[0], true);
  dv.setBigUint64(8, q[1], true);
  return user(v.p, b);
}

function nestedHwpt(v: ReturnType<typeof vm>): number {
  return v.ctx.hwptAlloc({ flags: 0, dev_id: v.idev.id, pt_id: v.viommu, data_type: S.IOMMU_HWPT_DATA_ARM_SMMUV3, data_len: 16, data_uptr: vsteData(v) })
    .out_hwpt_id as number;
}

function read(dev: S.Device, gva: number, n: number) {
  const data = new Uint8Array(n);
  return { r: dev.dma({ iova: BigInt(gva), length: n, write: false, data, pasid: -1 }), data };
}

test("a nested HWPT on an ARM_SMMUV3 vIOMMU translates through the guest's CD and stage-1 tables in guest RAM", () => {
  const v = vm();
  v.ctx.vdeviceAlloc({ viommu_id: v.viommu, dev_id: v.idev.id, virt_id: BigInt(VSID) });
  const nested = nestedHwpt(v);
  v.idev.attach(nested);
  v.s1.map(0x40000, 0x30, 2, GRW);
  const bytes = new Uint8Array(2 * PAGE).map((_, i) => (i * 5) & 0xff);
  v.ram.write(0x30 * PAGE, bytes);
  const { r, data } = read(v.dev, 0x40000 * PAGE + 0xf00, 0x200);
  assert.equal(r.status, "done");
  assert.deepEqual(data, bytes.subarray(0xf00, 0x1100));
});

test("a guest TLBI forwarded with HWPT_INVALIDATE on the vIOMMU ends a stale translation, not before", () => {
  const v = vm();
  v.ctx.vdeviceAlloc({ viommu_id: v.viommu, dev_id: v.idev.id, virt_id: BigInt(VSID) });
  v.idev.attach(nestedHwpt(v));
  v.s1.map(0x40000, 0x30, 1, GRW);
  assert.equal(read(v.dev, 0x40000 * PAGE, 4).r.status, "done");
  v.s1.unmap(0x40000, 1); // the guest unmaps but has not invalidated yet
  assert.equal(read(v.dev, 0x40000 * PAGE, 4).r.status, "done", "the TLB still holds it, as on hardware");
  const cmd = encodeCmd({ kind: "tlbiNhVa", asid: ASID, vmid: 0, addr: 0x40000 * PAGE });
  const out = v.ctx.hwptInvalidate({ hwpt_id: v.viommu, data_uptr: user(v.p, cmd), data_type: 1, entry_len: 16, entry_num: 1 });
  assert.equal(out.entry_num, 1, "one command handled");
  const after = read(v.dev, 0x40000 * PAGE, 4);
  assert.equal(after.r.status, "faulted");
  assert.equal(after.r.fault?.kind, "translation");
});

test("a stage-1 translation fault of a nested device reaches the vEVENTQ fd as an SMMUv3 event carrying the virtual StreamID", () => {
  const v = vm();
  v.ctx.vdeviceAlloc({ viommu_id: v.viommu, dev_id: v.idev.id, virt_id: BigInt(VSID) });
  const q = v.ctx.veventqAlloc({ flags: 0, viommu_id: v.viommu, type: S.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, veventq_depth: 8 });
  v.idev.attach(nestedHwpt(v));
  const miss = read(v.dev, 0x50000 * PAGE + 0x10, 4);
  assert.equal(miss.r.status, "faulted");
  const file = S.fdTableOf(v.p).get(q.out_veventq_fd as number) as IommufdFile;
  const got = (file.read as NonNullable<IommufdFile["read"]>)(4096, 0);
  assert.equal(got.length, 8 + 32, "one header and one 32-byte iommu_vevent_arm_smmuv3");
  const hdr = new DataView(got.buffer, got.byteOffset, 8);
  assert.equal(hdr.getUint32(0, true), 0, "no LOST_EVENTS");
  assert.equal(hdr.getUint32(4, true), 0, "sequence 0");
  assert.equal(got[8], EventId.F_TRANSLATION);
  const ev = decodeEvent(got.slice(8, 40)) as unknown as { kind: string; sid: number; inputAddr: bigint };
  assert.equal(ev.kind, "fTranslation");
  assert.equal(ev.sid, VSID, "the physical StreamID is replaced by the vDEVICE's virtual one");
  assert.equal(ev.inputAddr, BigInt(0x50000 * PAGE + 0x10));
});

test("stall round trip over SMMUv3: a stalled DMA is read from the fault fd, the VMM maps the page, a SUCCESS response resumes it", () => {
  const host = new S.Host();
  const p = host.spawn({ uid: 1000, capIpcLock: true });
  const ctx = S.openIommufd(host, p);
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const drv = new SmmuDriver(new SmmuUnit(new HwMemory(host.phys)));
  const dev = createSmmuDevice(drv, { name: "0000:02:00.0", sid: 0x200, master: { canStall: true } });
  const idev = ctx.bindDevice(dev);
  const fq = ctx.faultQueueAlloc({ flags: 0 });
  const hwpt = ctx.hwptAlloc({ flags: S.IOMMU_HWPT_FAULT_ID_VALID, dev_id: idev.id, pt_id: ioas, data_type: 0, data_len: 0, data_uptr: 0n, fault_id: fq.out_fault_id })
    .out_hwpt_id as number;
  idev.attach(hwpt);
  const data = new Uint8Array(4);
  let done: DmaResult | null = null;
  const r = dev.dma({ iova: 0x300000n + 16n, length: 4, write: false, data, pasid: -1, onComplete: (x) => (done = x) });
  assert.equal(r.status, "pending", "the transaction stalls");
  const file = S.fdTableOf(p).get(fq.out_fault_fd as number) as IommufdFile;
  const rec = (file.read as NonNullable<IommufdFile["read"]>)(40, 0);
  assert.equal(rec.length, 40);
  const dv = new DataView(rec.buffer, rec.byteOffset, 40);
  assert.equal(dv.getUint32(4, true), idev.id);
  assert.equal(dv.getBigUint64(24, true), 0x300010n, "the stalled address (SMMUv3 events carry the whole input address)");
  // the VMM makes the page present, then answers
  const buf = p.mmap(PAGE);
  p.write(buf, new Uint8Array(PAGE).fill(0x5a));
  ctx.ioasMap({ flags: MAP_RW, ioas_id: ioas, user_va: BigInt(buf), length: BigInt(PAGE), iova: 0x300000n });
  const resp = new Uint8Array(8);
  new DataView(resp.buffer).setUint32(0, dv.getUint32(36, true), true);
  (file.write as NonNullable<IommufdFile["write"]>)(resp, 0);
  assert.equal((done as DmaResult | null)?.status, "done", "RESUME retried the transaction");
  assert.deepEqual([...data], [0x5a, 0x5a, 0x5a, 0x5a]);
});
