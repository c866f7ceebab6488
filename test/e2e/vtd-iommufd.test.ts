/**
 * iommufd over the VT-d model, end to end: a device bound to a context does DMA through the
 * hardware unit into the process memory the IOAS maps; GET_HW_INFO reports the unit's registers;
 * a nested VTD_S1 HWPT translates a guest page table; an I/O page fault travels through the page
 * request queue to the fault fd, user space answers it, and the DMA completes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as S from "../../src/index.js";
import { VtdUnit } from "../../src/hw/vtd/unit.js";
import { VtdDriver } from "../../src/iommu/drivers/vtd.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { PT_READ, PT_USER, PT_WRITE, vtdFirstStage } from "../../src/hw/pagetable/format.js";
import { GuestRam } from "../../src/guest/ram.js";
import type { IommufdFile } from "../../src/iommufd/files.js";
import type { DmaResult } from "../../src/hw/dma.js";

const PAGE = 4096;
const MAP_RW = S.IOMMU_IOAS_MAP_FIXED_IOVA | S.IOMMU_IOAS_MAP_READABLE | S.IOMMU_IOAS_MAP_WRITEABLE;

function machine(opts: { ats?: boolean; pri?: boolean } = {}) {
  const host = new S.Host();
  const p = host.spawn({ uid: 1000, capIpcLock: true });
  const ctx = S.openIommufd(host, p);
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const unit = new VtdUnit(host.phys);
  const drv = new VtdDriver(unit);
  const dev = drv.probeDevice({ name: "0000:03:00.0", sid: 0x0300, pasidBits: 20, ats: opts.ats ?? false, pri: opts.pri ?? false });
  const idev = ctx.bindDevice(dev);
  return { host, p, ctx, ioas, unit, drv, dev, idev };
}

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

function dmaRead(dev: S.Device, iova: bigint, length: number, pasid = -1) {
  const data = new Uint8Array(length);
  const r = dev.dma({ iova, length, write: false, data, pasid });
  return { r, data };
}

test("a VT-d device bound to iommufd reads and writes the memory the IOAS maps, and faults once it is unmapped", () => {
  const m = machine();
  m.idev.attach(m.ioas);
  const buf = m.p.mmap(16 * PAGE);
  m.p.write(buf, pattern(16 * PAGE, 5));
  m.ctx.ioasMap({ flags: MAP_RW, ioas_id: m.ioas, user_va: BigInt(buf), length: BigInt(16 * PAGE), iova: 0x100000n });
  const { r, data } = dmaRead(m.dev, 0x100ff0n, 64);
  assert.equal(r.status, "done");
  assert.deepEqual(data, pattern(16 * PAGE, 5).subarray(0xff0, 0xff0 + 64), "a read across a page boundary");
  const w = m.dev.dma({ iova: 0x102000n, length: 5, write: true, data: new Uint8Array([1, 2, 3, 4, 5]), pasid: -1 });
  assert.equal(w.status, "done");
  assert.deepEqual([...m.p.read(buf + 0x2000, 5)], [1, 2, 3, 4, 5], "the process sees the device's write");
  m.ctx.ioasUnmap({ ioas_id: m.ioas, iova: 0x100000n, length: BigInt(16 * PAGE) });
  const after = dmaRead(m.dev, 0x100000n, 4);
  assert.equal(after.r.status, "faulted", "strict invalidation: no stale IOTLB entry survives the unmap");
  assert.equal(after.r.fault?.kind, "translation");
  assert.equal(m.drv.faultLog.length, 1, "the driver logged the unrecoverable fault");
});

test("GET_HW_INFO on a VT-d device reports type INTEL_VTD with the unit's CAP and ECAP registers", () => {
  const m = machine();
  const ptr = m.p.mmap(PAGE);
  const r = m.ctx.getHwInfo({ flags: 0, dev_id: m.idev.id, data_len: 24, data_uptr: BigInt(ptr) });
  assert.equal(r.out_data_type, S.IOMMU_HW_INFO_TYPE_INTEL_VTD);
  assert.equal(r.data_len, 24);
  const b = m.p.read(ptr, 24);
  const dv = new DataView(b.buffer, b.byteOffset, 24);
  assert.equal(dv.getBigUint64(8, true), m.unit.read64(0x08), "cap_reg");
  assert.equal(dv.getBigUint64(16, true), m.unit.read64(0x10), "ecap_reg");
  assert.equal(r.out_max_pasid_log2, 20);
  assert.ok((r.out_capabilities as bigint) & BigInt(S.IOMMU_HW_CAP_DIRTY_TRACKING), "SSADS: dirty tracking");
});

/** Guest RAM at GPA 0 in the process, mapped into the IOAS at IOVA = GPA; a guest page table in it. */
function guest(m: ReturnType<typeof machine>, pages = 256) {
  const va = m.p.mmap(pages * PAGE);
  const ram = new GuestRam(m.p, va, pages * PAGE, { tableArea: { first: pages - 32, count: 32 } });
  m.ctx.ioasMap({ flags: MAP_RW, ioas_id: m.ioas, user_va: BigInt(va), length: BigInt(pages * PAGE), iova: 0n });
  const pt = new PageTableEngine(ram, vtdFirstStage());
  return { va, ram, pt };
}

function s1Data(m: ReturnType<typeof machine>, pgtbl: number): bigint {
  const ptr = m.p.mmap(PAGE);
  const b = new Uint8Array(24);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, 0n, true); // flags
  dv.setBigUint64(8, BigInt(pgtbl), true); // pgtbl_addr (GPA)
  dv.setUint32(16, 48, true); // addr_width
  m.p.write(ptr, b);
  return BigInt(ptr);
}

test("a nested VTD_S1 HWPT on a NEST_PARENT translates a guest page table: GVA -> GPA -> host page", () => {
  const m = machine();
  const parent = m.ctx.hwptAlloc({ flags: S.IOMMU_HWPT_ALLOC_NEST_PARENT, dev_id: m.idev.id, pt_id: m.ioas, data_type: 0, data_len: 0, data_uptr: 0n })
    .out_hwpt_id as number;
  const g = guest(m);
  // the guest maps its virtual page 0x7f000 to guest page 0x10 and writes there
  g.pt.map(0x7f000, 0x10, 1, PT_READ | PT_WRITE | PT_USER);
  g.ram.write(0x10 * PAGE, pattern(PAGE, 9));
  const nested = m.ctx.hwptAlloc({
    flags: 0,
    dev_id: m.idev.id,
    pt_id: parent,
    data_type: S.IOMMU_HWPT_DATA_VTD_S1,
    data_len: 24,
    data_uptr: s1Data(m, g.pt.root * PAGE),
  }).out_hwpt_id as number;
  m.idev.attach(nested);
  const { r, data } = dmaRead(m.dev, 0x7f000n * 4096n + 0x20n, 16);
  assert.equal(r.status, "done");
  assert.deepEqual(data, pattern(PAGE, 9).subarray(0x20, 0x30));
  // a guest virtual page the guest never mapped: a stage-1 translation fault
  const miss = dmaRead(m.dev, 0x80000n * 4096n, 4);
  assert.equal(miss.r.status, "faulted");
  assert.equal(miss.r.fault?.stage, 1);
  // a guest page table pointing outside the IOAS: the stage-1 walk faults in stage 2
  g.pt.map(0x90000, 0x4000, 1, PT_READ | PT_USER); // GPA 16 MiB: not mapped by the VMM
  const s2 = dmaRead(m.dev, 0x90000n * 4096n, 4);
  assert.equal(s2.r.status, "faulted");
  assert.equal(s2.r.fault?.stage, 2, "the output GPA has no stage-2 translation");
});

test("fault round trip: a PASID DMA faults, the record is read from the fault fd, a response is written, the DMA completes", () => {
  const m = machine({ ats: true, pri: true });
  // PASID-compatible: the RID's HWPT must be, once PASIDs of the device are attached (newest uAPI)
  const parent = m.ctx.hwptAlloc({ flags: S.IOMMU_HWPT_ALLOC_NEST_PARENT | S.IOMMU_HWPT_ALLOC_PASID, dev_id: m.idev.id, pt_id: m.ioas, data_type: 0, data_len: 0, data_uptr: 0n })
    .out_hwpt_id as number;
  const g = guest(m);
  const fq = m.ctx.faultQueueAlloc({ flags: 0 });
  const nested = m.ctx.hwptAlloc({
    flags: S.IOMMU_HWPT_FAULT_ID_VALID | S.IOMMU_HWPT_ALLOC_PASID,
    dev_id: m.idev.id,
    pt_id: parent,
    data_type: S.IOMMU_HWPT_DATA_VTD_S1,
    data_len: 24,
    data_uptr: s1Data(m, g.pt.root * PAGE),
    fault_id: fq.out_fault_id,
  }).out_hwpt_id as number;
  // as a VMM does: the RID on the stage-2 parent (which turns the device's ATS on), the guest
  // process's page table at a PASID
  m.idev.attach(parent);
  const PASID = 7;
  m.idev.pasidAttach(nested, PASID);
  // the guest has not mapped GVA page 0x400 yet
  const data = new Uint8Array(8);
  let completed: DmaResult | null = null;
  const r = m.dev.dma({ iova: 0x400n * 4096n + 8n, length: 8, write: false, data, pasid: PASID, onComplete: (x) => (completed = x) });
  assert.equal(r.status, "pending", "a recoverable fault: the device sent a page request");
  // user space reads the fault record (struct iommu_hwpt_pgfault, 40 bytes) from the fault fd
  const file = S.fdTableOf(m.p).get(fq.out_fault_fd as number) as IommufdFile;
  const got = (file.read as NonNullable<IommufdFile["read"]>)(40, 0);
  assert.equal(got.length, 40);
  const rec = new DataView(got.buffer, got.byteOffset, 40);
  const flags = rec.getUint32(0, true);
  assert.equal(flags & 1, 1, "PASID_VALID");
  assert.equal(flags & 2, 2, "LAST_PAGE");
  assert.equal(rec.getUint32(4, true), m.idev.id, "dev_id");
  assert.equal(rec.getUint32(8, true), PASID);
  assert.equal(rec.getBigUint64(24, true), 0x400n * 4096n, "addr: the faulting page");
  const cookie = rec.getUint32(36, true);
  assert.equal(completed, null, "nothing completes before the answer");
  // the guest maps the page, then user space answers SUCCESS for the cookie
  g.pt.map(0x400, 0x20, 1, PT_READ | PT_WRITE | PT_USER);
  g.ram.write(0x20 * PAGE + 8, new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2]));
  const resp = new Uint8Array(8);
  new DataView(resp.buffer).setUint32(0, cookie, true); // cookie, code 0 = SUCCESS
  assert.equal((file.write as NonNullable<IommufdFile["write"]>)(resp, 0), 8);
  assert.ok(completed, "the response retried the DMA");
  assert.equal((completed as DmaResult | null)?.status, "done");
  assert.deepEqual([...data], [9, 8, 7, 6, 5, 4, 3, 2], "the retried DMA read what the guest mapped");
});

test("dirty tracking over VT-d: the hardware sets D bits on DMA writes (SSADE), GET_DIRTY_BITMAP reports and clears them", () => {
  const m = machine();
  const hwpt = m.ctx.hwptAlloc({ flags: S.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, dev_id: m.idev.id, pt_id: m.ioas, data_type: 0, data_len: 0, data_uptr: 0n })
    .out_hwpt_id as number;
  m.idev.attach(hwpt);
  const buf = m.p.mmap(32 * PAGE);
  m.p.write(buf, pattern(32 * PAGE, 1));
  const iova = 0x200000n;
  m.ctx.ioasMap({ flags: MAP_RW, ioas_id: m.ioas, user_va: BigInt(buf), length: BigInt(32 * PAGE), iova });
  const bitmap = m.p.mmap(PAGE);
  const dirtyPages = (flags = 0): number[] => {
    m.p.write(bitmap, new Uint8Array(8));
    m.ctx.hwptGetDirtyBitmap({ hwpt_id: hwpt, flags, iova, length: BigInt(32 * PAGE), page_size: BigInt(PAGE), data: BigInt(bitmap) });
    const bits = new DataView(m.p.read(bitmap, 8).buffer).getBigUint64(0, true);
    const out: number[] = [];
    for (let i = 0; i < 32; i++) if ((bits >> BigInt(i)) & 1n) out.push(i);
    return out;
  };
  const write = (page: number): void => {
    const r = m.dev.dma({ iova: iova + BigInt(page * PAGE + 100), length: 4, write: true, data: new Uint8Array([1, 2, 3, 4]), pasid: -1 });
    assert.equal(r.status, "done");
  };
  write(3); // tracking is off: the hardware sets no D bit
  m.ctx.hwptSetDirtyTracking({ flags: S.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, hwpt_id: hwpt });
  assert.deepEqual(dirtyPages(), [], "nothing dirty yet");
  write(5);
  write(17);
  assert.equal(dmaRead(m.dev, iova + BigInt(9 * PAGE), 4).r.status, "done");
  assert.deepEqual(dirtyPages(S.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR), [5, 17], "writes dirty their pages, reads do not");
  assert.deepEqual(dirtyPages(), [5, 17], "NO_CLEAR left them");
  assert.deepEqual(dirtyPages(), [], "the previous read cleared them");
  write(17);
  assert.deepEqual(dirtyPages(), [17], "cleared D bits are set again: the IOTLB was flushed when they were cleared");
});
