/** The VM foundation: guest RAM behind a NEST_PARENT HWPT, assigned devices, guest processes, teardown. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { HostMachine } from "../../src/guest/machine.js";
import { Vm } from "../../src/guest/vm.js";
import { GuestProcess } from "../../src/guest/process.js";
import { IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_VTD_S1 } from "../../src/iommufd/types.js";

const PAGE = 4096;

test("a device assigned to a VM reaches guest RAM at IOVA = GPA through the stage-2 parent", () => {
  const m = new HostMachine({ iommu: "vtd" });
  const vm = new Vm(m, { ramBytes: 8 << 20 });
  const { dev } = vm.assign(m.addDevice({ name: "0000:03:00.0", sid: 0x300 }));
  const g = vm.allocPages(1);
  vm.ram.write(g * PAGE, new Uint8Array([1, 2, 3, 4]));
  const data = new Uint8Array(4);
  assert.equal(dev.dma({ iova: BigInt(g * PAGE), length: 4, write: false, data, pasid: -1 }).status, "done");
  assert.deepEqual([...data], [1, 2, 3, 4]);
});

test("a guest process's page table, handed to a nested VTD_S1 HWPT at a PASID, translates its virtual addresses for the device", () => {
  const m = new HostMachine({ iommu: "vtd" });
  const vm = new Vm(m, { ramBytes: 8 << 20 });
  const { dev, idev } = vm.assign(m.addDevice({ name: "0000:03:00.0", sid: 0x300 }));
  const proc = new GuestProcess(vm, "x86-4level");
  proc.map(0x12345, 2);
  proc.write(0x12345 * PAGE + 0xff0, new Uint8Array(32).fill(0x77));
  const data = new Uint8Array(8);
  const ptr = vm.vmm.mmap(PAGE);
  const s1 = new Uint8Array(24);
  const dv = new DataView(s1.buffer);
  dv.setBigUint64(8, BigInt(proc.rootGpa), true);
  dv.setUint32(16, proc.addrWidth, true);
  vm.vmm.write(ptr, s1);
  const hwpt = vm.ctx.hwptAlloc({ flags: IOMMU_HWPT_ALLOC_PASID, dev_id: idev.id, pt_id: vm.parent, data_type: IOMMU_HWPT_DATA_VTD_S1, data_len: 24, data_uptr: BigInt(ptr) })
    .out_hwpt_id as number;
  const hpasid = vm.pasids.alloc(5);
  idev.pasidAttach(hwpt, hpasid);
  const r = dev.dma({ iova: BigInt(0x12345 * PAGE + 0xffc), length: 8, write: false, data, pasid: hpasid });
  assert.equal(r.status, "done", "GVA → GPA → host page, across a guest page boundary");
  assert.deepEqual([...data], [0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77]);
});

test("VM teardown leaves no context, pinned page or PASID behind", () => {
  const m = new HostMachine({ iommu: "smmuv3" });
  const pinnedBefore = m.host.phys.framesPinned;
  const vm = new Vm(m, { ramBytes: 4 << 20 });
  vm.assign(m.addDevice({ name: "0000:01:00.0", sid: 0x100 }));
  vm.pasids.alloc(1);
  vm.pasids.alloc(2);
  assert.ok(m.host.phys.framesPinned > pinnedBefore, "guest RAM is pinned while mapped");
  vm.destroy();
  assert.equal(m.host.phys.framesPinned, pinnedBefore);
  assert.equal(m.pasids.inUse, 0);
  assert.equal(vm.ctx.objects.size, 0);
});

test("a VM made for migration has a dirty-tracking parent: writes through the stage-2 parent are reported", () => {
  const m = new HostMachine({ iommu: "vtd" });
  const vm = new Vm(m, { ramBytes: 4 << 20, dirtyTracking: true });
  const { dev } = vm.assign(m.addDevice({ name: "0000:03:00.0", sid: 0x300 }));
  vm.ctx.hwptSetDirtyTracking({ flags: 1, hwpt_id: vm.parent });
  const g = vm.allocPages(1);
  assert.equal(dev.dma({ iova: BigInt(g * PAGE), length: 4, write: true, data: new Uint8Array(4), pasid: -1 }).status, "done");
  const bm = vm.vmm.mmap(PAGE);
  vm.ctx.hwptGetDirtyBitmap({ hwpt_id: vm.parent, flags: 0, iova: BigInt(g * PAGE), length: BigInt(64 * PAGE), page_size: BigInt(PAGE), data: BigInt(bm) });
  assert.equal(vm.vmm.read(bm, 1)[0] & 1, 1, "the written guest page is dirty");
});
