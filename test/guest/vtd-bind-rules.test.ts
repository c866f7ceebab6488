/**
 * The 2020 "bind guest PASID" rules at the VMM layer (intel_svm_bind_gpasid / unbind_gpasid as the
 * seed thread drew them, in iommufd form), with the PASID-set ownership check; every failing bind
 * changes nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { HostMachine } from "../../src/guest/machine.js";
import { GuestProcess } from "../../src/guest/process.js";
import type { ScenarioLog } from "../../src/guest/scenario.js";
import { bootVtdGuest, type BootOptions, type VtdGuest } from "../../src/guest/vtd/scenarios.js";
import type { GpasidBindData, VtdGuestDevice } from "../../src/guest/vtd/vmm.js";
import { DEFAULT_CAP } from "../../src/hw/vtd/unit-regs.js";
import { IOMMU_HWPT_DATA_VTD_S1, IOMMU_HWPT_ALLOC_PASID } from "../../src/iommufd/types.js";

const quiet: ScenarioLog = { step: () => undefined };
const boot = (o: BootOptions = {}): VtdGuest => bootVtdGuest(quiet, o);

/** Everything a failing bind must leave as it was. */
function snapshot(g: VtdGuest): string {
  return JSON.stringify({
    objects: [...g.vm.ctx.objects.keys()],
    pasids: g.a.idev.attachedPasids(),
    set: g.vm.pasids.entries(),
    inUse: g.m.pasids.inUse,
    binds: g.vmm.allBinds().map((b) => [b.hpasid, b.gpasid, b.hwpt, b.users.size]),
  });
}

function fsData(g: VtdGuest, gpasid: number, proc: GuestProcess, over: Partial<GpasidBindData> = {}): GpasidBindData {
  return { hpasid: g.vm.pasids.hostOf(gpasid), gpasid, kind: "first-stage", pgtbl: proc.rootGpa, addrWidth: proc.addrWidth, ...over };
}

test("a device without 20-bit PASIDs cannot take guest SVA: EINVAL, nothing changes", () => {
  const g = boot({ device: { name: "0000:03:00.0", sid: 0x300, pasidBits: 16 } });
  const p = new GuestProcess(g.vm, "x86-4level");
  g.vm.pasids.alloc(1);
  const before = snapshot(g);
  assert.throws(() => g.vmm.bindGpasid(g.gd, fsData(g, 1, p)), { code: "EINVAL" });
  assert.equal(snapshot(g), before);
});

test("a guest bind on a device without 20-bit PASIDs is refused and a host PASID allocated for it on first use is given back", () => {
  const g = boot({ device: { name: "0000:03:00.0", sid: 0x300, pasidBits: 16 }, vmm: { vcmd: false } });
  const p = new GuestProcess(g.vm, "x86-4level");
  const inUse = g.m.pasids.inUse;
  const pasid = g.drv.svaBind(p, g.gd.sid); // the guest chose the PASID itself (no VCMD)
  assert.equal(g.vmm.errors.length, 1);
  assert.equal(g.vmm.errors[0].code, "EINVAL");
  assert.equal(g.vmm.errors[0].gpasid, pasid);
  assert.deepEqual(g.vm.pasids.entries(), [], "the host PASID allocated on first use went back");
  assert.equal(g.m.pasids.inUse, inUse);
  assert.deepEqual(g.a.idev.attachedPasids(), []);
  assert.equal(g.drv.readFaults()[0]?.reason, 0x5b, "the guest sees a fault for the PASID entry");
});

test("a host PASID outside 1..2^20-1 is EINVAL", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  const before = snapshot(g);
  for (const hpasid of [0, 1 << 20, -1])
    assert.throws(() => g.vmm.bindGpasid(g.gd, { hpasid, gpasid: 1, kind: "first-stage", pgtbl: p.rootGpa, addrWidth: 48 }), { code: "EINVAL" });
  assert.equal(snapshot(g), before);
});

test("a host PASID of another VM's set is EPERM, and a host PASID that does not back the guest PASID is EINVAL", () => {
  const m = new HostMachine({ iommu: "vtd" });
  const a = boot({ machine: m, name: "a" });
  const b = boot({ machine: m, name: "b", device: { name: "0000:04:00.0", sid: 0x400 } });
  const hA = a.vm.pasids.alloc(1);
  b.vm.pasids.alloc(1);
  b.vm.pasids.alloc(2);
  const p = new GuestProcess(b.vm, "x86-4level");
  const before = snapshot(b);
  assert.throws(() => b.vmm.bindGpasid(b.gd, { hpasid: hA, gpasid: 1, kind: "first-stage", pgtbl: p.rootGpa, addrWidth: 48 }), { code: "EPERM" });
  assert.throws(() => b.vmm.bindGpasid(b.gd, { hpasid: b.vm.pasids.hostOf(2), gpasid: 1, kind: "first-stage", pgtbl: p.rootGpa, addrWidth: 48 }), { code: "EINVAL" });
  assert.equal(snapshot(b), before);
});

test("5-level guest paging on a host without first-stage 5-level paging is EINVAL; 4-level binds", () => {
  const m = new HostMachine({ iommu: "vtd", vtd: { cap: { ...DEFAULT_CAP, fs5lp: 0 } } });
  const g = boot({ machine: m });
  const p5 = new GuestProcess(g.vm, "x86-5level");
  const p4 = new GuestProcess(g.vm, "x86-4level");
  g.vm.pasids.alloc(1);
  const before = snapshot(g);
  assert.throws(() => g.vmm.bindGpasid(g.gd, fsData(g, 1, p5)), { code: "EINVAL" });
  assert.equal(snapshot(g), before);
  g.vmm.bindGpasid(g.gd, fsData(g, 1, p4));
  assert.deepEqual(g.a.idev.attachedPasids(), [g.vm.pasids.hostOf(1)]);
});

test("a guest writing 5-level entries through a vIOMMU that (wrongly) offers them on a host without them gets EINVAL from the VMM, and no bind", () => {
  const m = new HostMachine({ iommu: "vtd", vtd: { cap: { ...DEFAULT_CAP, fs5lp: 0 } } });
  const g = boot({ machine: m, vmm: { fs5lp: true } });
  const p5 = new GuestProcess(g.vm, "x86-5level");
  const pasid = g.drv.svaBind(p5, g.gd.sid);
  assert.deepEqual(
    g.vmm.errors.map((e) => [e.gpasid, e.code]),
    [[pasid, "EINVAL"]],
  );
  assert.deepEqual(g.a.idev.attachedPasids(), []);
  assert.equal(g.vm.pasids.hostOf(pasid) > 0, true, "the PASID the guest got from the VMM stays the guest's");
});

test("a vIOMMU without 5-level first stage makes the guest's own driver refuse a 5-level process (EINVAL) before any entry is written", () => {
  const m = new HostMachine({ iommu: "vtd", vtd: { cap: { ...DEFAULT_CAP, fs5lp: 0 } } });
  const g = boot({ machine: m });
  const p5 = new GuestProcess(g.vm, "x86-5level");
  assert.throws(() => g.drv.svaBind(p5, g.gd.sid), { code: "EINVAL" });
  assert.deepEqual(g.vm.pasids.entries(), [], "no PASID was taken");
});

test("the same (host PASID, guest PASID) bound twice for the same device by the same VMM is EINVAL and changes nothing", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  g.vm.pasids.alloc(1);
  g.vmm.bindGpasid(g.gd, fsData(g, 1, p));
  const before = snapshot(g);
  assert.throws(() => g.vmm.bindGpasid(g.gd, fsData(g, 1, p)), { code: "EINVAL" });
  assert.equal(snapshot(g), before);
});

test("sub-devices of one device share a bind with a user count; the last unbind detaches, and the PASID stays allocated until freed", () => {
  const g = boot();
  const sub1 = g.vmm.attachGuestDevice(g.a, 0x0020);
  const sub2 = g.vmm.attachGuestDevice(g.a, 0x0028);
  assert.equal(sub1.primary, false);
  const p = new GuestProcess(g.vm, "x86-4level");
  const h = g.vm.pasids.alloc(1);
  const objects = g.vm.ctx.objects.size;
  g.vmm.bindGpasid(g.gd, fsData(g, 1, p));
  g.vmm.bindGpasid(sub1, fsData(g, 1, p));
  g.vmm.bindGpasid(sub2, fsData(g, 1, p));
  const b = g.vmm.bindOf(g.gd, h);
  assert.ok(b);
  assert.equal(b.users.size, 3);
  assert.equal(g.vm.ctx.objects.size, objects + 1, "one nested HWPT for all of them");
  assert.throws(() => g.vmm.bindGpasid(sub1, fsData(g, 1, p)), { code: "EINVAL" }, "each sub-device binds once");
  assert.throws(() => g.vmm.bindGpasid(sub2, fsData(g, 1, p, { pgtbl: p.rootGpa + 4096 })), { code: "EINVAL" }, "a sub-device cannot bring other data");
  g.vmm.unbindGpasid(sub1, h);
  g.vmm.unbindGpasid(g.gd, h);
  assert.deepEqual(g.a.idev.attachedPasids(), [h], "a user is left: still attached");
  assert.throws(() => g.vmm.unbindGpasid(sub1, h), { code: "EINVAL" }, "sub1 has no bind any more");
  assert.throws(() => g.vm.pasids.free(h), { code: "EBUSY" }, "a bound PASID cannot be freed");
  g.vmm.unbindGpasid(sub2, h);
  assert.deepEqual(g.a.idev.attachedPasids(), []);
  assert.equal(g.vmm.bindOf(g.gd, h), undefined);
  assert.equal(g.vm.ctx.objects.size, objects, "the nested HWPT went with the last user");
  assert.equal(g.vm.pasids.hostOf(1), h, "the PASID stays allocated");
  assert.ok(g.m.pasids.isUsed(h));
  g.vm.pasids.free(h);
  assert.equal(g.m.pasids.isUsed(h), false, "freed explicitly");
});

test("guest sub-devices binding the same process share the host PASID's entry; the guest's unbinds drop users one by one", () => {
  const g = boot();
  const sub: VtdGuestDevice = g.vmm.attachGuestDevice(g.a, 0x0020);
  g.drv.addDevice(sub.sid);
  const p = new GuestProcess(g.vm, "x86-4level");
  p.map(0x50, 1);
  p.write(0x50 * 4096, new Uint8Array([7, 7, 7, 7]));
  const pasid = g.drv.svaBind(p, g.gd.sid);
  assert.equal(g.drv.svaBind(p, sub.sid), pasid);
  const h = g.vm.pasids.hostOf(pasid);
  assert.equal(g.vmm.bindOf(g.gd, h)?.users.size, 2);
  g.drv.svaUnbind(p, g.gd.sid);
  assert.equal(g.vmm.bindOf(g.gd, h)?.users.size, 1);
  const data = new Uint8Array(4);
  assert.equal(g.vmm.dma(sub, { pasid, iova: 0x50000n, length: 4, write: false, data }).status, "done", "the sub-device's DMA still translates");
  assert.deepEqual([...data], [7, 7, 7, 7]);
  g.drv.svaUnbind(p, sub.sid);
  assert.equal(g.vmm.bindOf(g.gd, h), undefined);
  assert.deepEqual(g.a.idev.attachedPasids(), []);
});

test("unbinding a PASID that is not bound is EINVAL", () => {
  const g = boot();
  const h = g.vm.pasids.alloc(3);
  assert.throws(() => g.vmm.unbindGpasid(g.gd, h), { code: "EINVAL" });
});

test("a bind whose attach fails destroys the nested HWPT it made and holds nothing", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  const h = g.vm.pasids.alloc(1);
  // something else of the VMM already sits at that host PASID
  const ptr = g.vm.vmm.mmap(4096);
  const s1 = new Uint8Array(24);
  new DataView(s1.buffer).setBigUint64(8, BigInt(p.rootGpa), true);
  new DataView(s1.buffer).setUint32(16, 48, true);
  g.vm.vmm.write(ptr, s1);
  const other = g.vm.ctx.hwptAlloc({ flags: IOMMU_HWPT_ALLOC_PASID, dev_id: g.a.idev.id, pt_id: g.vm.parent, data_type: IOMMU_HWPT_DATA_VTD_S1, data_len: 24, data_uptr: BigInt(ptr) })
    .out_hwpt_id as number;
  g.a.idev.pasidAttach(other, h);
  const before = snapshot(g);
  assert.throws(() => g.vmm.bindGpasid(g.gd, fsData(g, 1, p)), { code: "EBUSY" });
  assert.equal(snapshot(g), before);
  g.a.idev.pasidDetach(h);
  g.vm.pasids.free(h); // no bind holds it (a held PASID would be EBUSY)
  assert.equal(g.m.pasids.isUsed(h), false);
});
