/**
 * IOMMU_VDEVICE_ALLOC (viommu.c iommufd_vdevice_alloc_ioctl) and the vDEVICE lifetime: one per
 * device, one per virtual ID on a vIOMMU, it holds the vIOMMU, and when its device goes first it is
 * destroyed with its ID tombstoned (the newest selftest's vdevice_alloc and vdevice_tombstone).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { env, expectErr, hwptAlloc, mockDomain, nextId, replace } from "../hwpt/helpers.js";
import { S, NEST, failsCleanlyFull, vdeviceAlloc, viommuAlloc, viommuEnv } from "./helpers.js";
import { Vdevice } from "../../src/iommufd/vdevice.js";
import { Viommu } from "../../src/iommufd/viommu.js";
import { MockViommu } from "../../src/iommu/drivers/mock.js";

test("VDEVICE_ALLOC errnos in the kernel's order: no vIOMMU ENOENT, no device ENOENT, a second vDEVICE of the device EEXIST (any virt_id), a virt_id taken on the vIOMMU EEXIST", () => {
  const e = viommuEnv();
  const dev = e.md.idev;
  failsCleanlyFull(e, "ENOENT", () => vdeviceAlloc(e.ctx, 999, 999, 0x99n), "no vIOMMU, before the device");
  failsCleanlyFull(e, "ENOENT", () => vdeviceAlloc(e.ctx, e.parent, dev, 0x99n), "a HWPT is not a vIOMMU");
  failsCleanlyFull(e, "ENOENT", () => vdeviceAlloc(e.ctx, e.viommu, 999, 0x99n), "no device");
  failsCleanlyFull(e, "ENOENT", () => vdeviceAlloc(e.ctx, e.viommu, e.md.stdev, 0x99n), "the selftest object is not a device");
  const vd = vdeviceAlloc(e.ctx, e.viommu, dev, 0x99n);
  failsCleanlyFull(e, "EEXIST", () => vdeviceAlloc(e.ctx, e.viommu, dev, 0x99n), "same device, same virt_id");
  failsCleanlyFull(e, "EEXIST", () => vdeviceAlloc(e.ctx, e.viommu, dev, 0x88n), "same device, another virt_id");
  const v2 = viommuAlloc(e.ctx, dev, e.parent);
  failsCleanlyFull(e, "EEXIST", () => vdeviceAlloc(e.ctx, v2, dev, 0x88n), "same device on another vIOMMU");
  const md2 = mockDomain(e.ctx, e.ioas);
  failsCleanlyFull(e, "EEXIST", () => vdeviceAlloc(e.ctx, e.viommu, md2.idev, 0x99n), "the virt_id is taken on this vIOMMU");
  // the same virt_id on another vIOMMU is a different namespace
  vdeviceAlloc(e.ctx, v2, md2.idev, 0x99n);
  const obj = e.ctx.objects.get(vd) as Vdevice;
  assert.equal(obj.virtId, 0x99n);
  assert.equal((e.ctx.objects.get(dev) as S.IommufdDevice).vdev, obj);
});

test("a vDEVICE holds its vIOMMU; destroying it frees the device and the virtual ID for a new vDEVICE, and the driver forgets it", () => {
  const e = viommuEnv();
  const vd = vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  const v = e.ctx.objects.get(e.viommu) as Viommu;
  const mock = v.ops as MockViommu;
  assert.equal(v.users, 3, "table + nested HWPT + vDEVICE");
  assert.equal(mock.vdevs.get(0x99n), (e.ctx.objects.get(e.md.idev) as S.IommufdDevice).dev);
  e.ctx.destroy({ id: vd });
  assert.equal(v.users, 2);
  assert.equal(mock.vdevs.size, 0);
  assert.equal(v.vdevs.size, 0);
  expectErr("ENOENT", () => e.ctx.destroy({ id: vd }));
  const vd2 = vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x88n);
  assert.equal(vd2, vd, "the lowest free ID again");
  const md2 = mockDomain(e.ctx, e.ioas);
  e.ctx.destroy({ id: vd2 });
  vdeviceAlloc(e.ctx, e.viommu, md2.idev, 0x88n);
});

test("a vDEVICE can be destroyed while its device is attached to a nested HWPT of the vIOMMU; a new attach then needs a vDEVICE again", () => {
  const e = viommuEnv();
  const vd = vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  replace(e.ctx, e.md.stdev, e.nested);
  e.ctx.destroy({ id: vd });
  replace(e.ctx, e.md.stdev, e.ioas);
  failsCleanlyFull(e, "ENOENT", () => replace(e.ctx, e.md.stdev, e.nested));
});

test("vdevice_tombstone: destroying the selftest device force-destroys its vDEVICE; the ID is dead (DESTROY ENOENT) and not handed out again until the context closes", () => {
  const e = viommuEnv();
  const vd = vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  const v = e.ctx.objects.get(e.viommu) as Viommu;
  const mock = v.ops as MockViommu;
  e.ctx.destroy({ id: e.md.stdev });
  assert.equal(e.ctx.objects.has(vd), false);
  assert.deepEqual(e.ctx.tombstoned, [vd]);
  assert.equal(v.users, 2, "the vIOMMU reference went with the vDEVICE");
  assert.equal(mock.vdevs.size, 0, "the driver's vdevice destroy ran");
  expectErr("ENOENT", () => e.ctx.destroy({ id: vd }));
  // lower IDs freed by the device's teardown are reused; the tombstoned one is skipped
  const ids = [e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id, e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id, e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id, e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id];
  assert.ok(!ids.includes(vd), `${ids} skips ${vd}`);
  assert.ok(ids.some((i) => (i as number) > vd));
  e.ctx.close();
  assert.equal(e.ctx.released, true);
  assert.deepEqual(e.ctx.tombstoned, []);
});

test("vdevice tombstone through the in-kernel API: unbinding a bound device takes its vDEVICE down and keeps the ID dead", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, NEST);
  const v = viommuAlloc(e.ctx, md.idev, parent);
  const dev = new S.Device({ name: "vfio-dev", driver: S.mockIommu });
  const idev = e.ctx.bindDevice(dev);
  const vd = vdeviceAlloc(e.ctx, v, idev.id, 0x7n);
  e.ctx.unbindDevice(idev);
  assert.deepEqual(e.ctx.tombstoned, [vd]);
  expectErr("ENOENT", () => e.ctx.destroy({ id: vd }));
  assert.equal(e.ctx.objects.get(v)?.users, 1);
  e.ctx.destroy({ id: v });
});

test("a tombstoned ID counts as an object for OPTION RLIMIT_MODE SET (EBUSY), as the kernel's non-empty xarray does", () => {
  const e = viommuEnv();
  vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  e.ctx.destroy({ id: e.md.stdev });
  for (const id of [e.nested, e.viommu, e.parent, e.ioas]) e.ctx.destroy({ id });
  assert.equal(e.ctx.objects.size, 0);
  expectErr("EBUSY", () => e.ctx.option({ option_id: S.IOMMU_OPTION_RLIMIT_MODE, op: S.IOMMU_OPTION_OP_SET, object_id: 0, val64: 1n }));
});

test("VDEVICE_ALLOC: a failed allocation leaves no ID behind and no driver record", () => {
  const e = viommuEnv();
  const before = nextId(e.ctx);
  const md2 = mockDomain(e.ctx, e.ioas);
  vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x5n);
  const next = nextId(e.ctx);
  expectErr("EEXIST", () => vdeviceAlloc(e.ctx, e.viommu, md2.idev, 0x5n));
  assert.equal(nextId(e.ctx), next);
  assert.equal(((e.ctx.objects.get(e.viommu) as Viommu).ops as MockViommu).vdevs.size, 1);
  assert.ok(before < next);
});
