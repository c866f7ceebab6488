/**
 * Group rules through iommufd: the IOMMU group is the unit of isolation. Devices of one group share
 * one attachment, each device's reserved regions apply when that device attaches, and a group
 * whose device is bound in one context cannot be bound in another (the DMA owner differs).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as S from "../../src/index.js";
import { Device, IommuGroup, ResvType } from "../../src/iommu/device.js";
import { mockIommu } from "../../src/iommu/drivers/mock.js";

function ctxFor(host: S.Host) {
  const p = host.spawn({ uid: 1000 });
  const ctx = S.openIommufd(host, p);
  return { p, ctx, ioas: ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number };
}

function twoDeviceGroup() {
  const group = new IommuGroup();
  const a = new Device({ name: "0000:01:00.0", driver: mockIommu, group });
  const b = new Device({ name: "0000:01:00.1", driver: mockIommu, group, resv: [{ start: 0x2000000n, length: 0x1000n, type: ResvType.RESERVED }] });
  return { group, a, b };
}

const isErr = (code: S.ErrnoName) => (e: unknown) => e instanceof S.IommuError && e.code === code;

test("the second device of a group attaching to the same IOAS joins the group's HWPT", () => {
  const host = new S.Host();
  const { ctx, ioas } = ctxFor(host);
  const { a, b } = twoDeviceGroup();
  const ia = ctx.bindDevice(a);
  const ib = ctx.bindDevice(b);
  const ha = ia.attach(ioas);
  const hb = ib.attach(ioas);
  assert.equal(hb, ha);
  assert.equal(ctx.getIoas(ioas).hwpts.length, 1, "no second auto domain");
});

test("a device cannot attach to another HWPT than the one its group uses (EINVAL)", () => {
  const host = new S.Host();
  const { ctx, ioas } = ctxFor(host);
  const { a, b } = twoDeviceGroup();
  const ia = ctx.bindDevice(a);
  const ib = ctx.bindDevice(b);
  ia.attach(ioas);
  const manual = ctx.hwptAlloc({ flags: 0, dev_id: ib.id, pt_id: ioas, data_type: 0, data_len: 0, data_uptr: 0n }).out_hwpt_id as number;
  assert.throws(() => ib.attach(manual), isErr("EINVAL"));
  assert.equal(ib.attached, false);
});

test("each device's reserved regions apply when that device attaches and go away when it detaches", () => {
  const host = new S.Host();
  const { ctx, ioas } = ctxFor(host);
  const { a, b } = twoDeviceGroup();
  const ia = ctx.bindDevice(a);
  const ib = ctx.bindDevice(b);
  const iopt = ctx.getIoas(ioas).iopt;
  ia.attach(ioas);
  assert.equal(iopt.reserved.intersects(0x2000000n, 0x2000fffn), false);
  ib.attach(ioas);
  assert.equal(iopt.reserved.intersects(0x2000000n, 0x2000fffn), true);
  ib.detach();
  assert.equal(iopt.reserved.intersects(0x2000000n, 0x2000fffn), false);
});

test("the group stays attached until its last device detaches; then the auto HWPT is freed", () => {
  const host = new S.Host();
  const { ctx, ioas } = ctxFor(host);
  const { group, a, b } = twoDeviceGroup();
  const ia = ctx.bindDevice(a);
  const ib = ctx.bindDevice(b);
  const h = ia.attach(ioas);
  ib.attach(ioas);
  ia.detach();
  assert.notEqual(group.domain, null, "b still uses the domain");
  assert.ok(ctx.getObject(h));
  ib.detach();
  assert.equal(group.domain, null);
  assert.equal(ctx.getObject(h), undefined);
});

test("replace on one device moves the whole group to the new HWPT", () => {
  const host = new S.Host();
  const { ctx, ioas } = ctxFor(host);
  const { group, a, b } = twoDeviceGroup();
  const ia = ctx.bindDevice(a);
  const ib = ctx.bindDevice(b);
  const auto = ia.attach(ioas);
  ib.attach(ioas);
  const manual = ctx.hwptAlloc({ flags: 0, dev_id: ia.id, pt_id: ioas, data_type: 0, data_len: 0, data_uptr: 0n }).out_hwpt_id as number;
  ia.replace(manual);
  assert.equal(group.domain, ctx.getHwptPaging(manual).domain);
  assert.equal(ctx.getObject(auto), undefined, "the auto HWPT lost its devices and was freed");
  // the manual HWPT now carries both devices' references
  assert.throws(() => ctx.destroy({ id: manual }), isErr("EBUSY"));
  ia.detach();
  assert.throws(() => ctx.destroy({ id: manual }), isErr("EBUSY"));
  ib.detach();
  ctx.destroy({ id: manual });
});

test("binding a device whose group is owned by another context fails with EPERM (iommu_device_claim_dma_owner)", () => {
  const host = new S.Host();
  const one = ctxFor(host);
  const two = ctxFor(host);
  const { a, b } = twoDeviceGroup();
  one.ctx.bindDevice(a);
  assert.throws(() => two.ctx.bindDevice(b), isErr("EPERM"));
  assert.throws(() => two.ctx.bindDevice(a), isErr("EPERM"));
  assert.equal(two.ctx.objects.size, 1, "only the IOAS: the failed bind left no device object");
});

test("after the owning context unbinds every device of the group, another context can bind it", () => {
  const host = new S.Host();
  const one = ctxFor(host);
  const two = ctxFor(host);
  const { group, a, b } = twoDeviceGroup();
  const ia = one.ctx.bindDevice(a);
  const ib = one.ctx.bindDevice(b);
  one.ctx.unbindDevice(ia);
  assert.throws(() => two.ctx.bindDevice(a), isErr("EPERM"), "b still holds the group");
  one.ctx.unbindDevice(ib);
  assert.equal(group.ownerCnt, 0);
  two.ctx.bindDevice(a);
});

test("closing a context releases its DMA ownership of every group", () => {
  const host = new S.Host();
  const one = ctxFor(host);
  const two = ctxFor(host);
  const { group, a } = twoDeviceGroup();
  const ia = one.ctx.bindDevice(a);
  ia.attach(one.ioas);
  // a driver unbinds its devices when the iommufd goes away
  ia.detach();
  one.ctx.unbindDevice(ia);
  one.ctx.close();
  assert.equal(group.ownerCnt, 0);
  assert.equal(group.domain, null);
  two.ctx.bindDevice(a);
});

test("a device object is held by its binding driver: IOMMU_DESTROY of it is EBUSY", () => {
  const host = new S.Host();
  const { ctx } = ctxFor(host);
  const { a } = twoDeviceGroup();
  const ia = ctx.bindDevice(a);
  assert.throws(() => ctx.destroy({ id: ia.id }), isErr("EBUSY"));
});

test("a bound (non-mock) device keeps the context alive after close() until its driver unbinds it", () => {
  const host = new S.Host();
  const { ctx, ioas } = ctxFor(host);
  const { group, a } = twoDeviceGroup();
  const ia = ctx.bindDevice(a);
  ia.attach(ioas);
  ctx.close();
  assert.equal(ctx.released, false, "the device's reference holds the context");
  assert.notEqual(group.domain, null);
  ia.detach();
  ctx.unbindDevice(ia);
  assert.equal(ctx.released, true);
  assert.equal(ctx.objects.size, 0);
  assert.equal(group.ownerCnt, 0);
});

test("an in-kernel access keeps the context alive after close() until it is destroyed", () => {
  const host = new S.Host();
  const { ctx, ioas } = ctxFor(host);
  const acc = ctx.createAccess({ needsPinPages: false, unmap: () => undefined });
  acc.attach(ioas);
  ctx.close();
  assert.equal(ctx.released, false);
  ctx.destroyAccess(acc);
  assert.equal(ctx.released, true);
});
