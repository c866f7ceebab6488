/**
 * Device attach / replace / detach through the selftest ops MOCK_DOMAIN, MOCK_DOMAIN_FLAGS and
 * MOCK_DOMAIN_REPLACE (device.c): auto-domain reuse and freeing, manual HWPTs, the order in which
 * objects can be destroyed, dirty-tracking compatibility. Expectations measured on Linux 6.12.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  S,
  env,
  expectErr,
  failsCleanly,
  hwptAlloc,
  ioasMap,
  mockDomain,
  nestedAlloc,
  nextId,
  replace,
  checkMap,
  checkRefs,
  BASE,
  PAGE,
} from "./helpers.js";
import { HwptPaging } from "../../src/iommufd/hwpt.js";
import { IommufdDevice } from "../../src/iommufd/device.js";

const NEST = S.IOMMU_HWPT_ALLOC_NEST_PARENT;
const DIRTY = S.IOMMU_HWPT_ALLOC_DIRTY_TRACKING;

function attachedTo(ctx: S.IommufdCtx, idev: number): number {
  const d = ctx.objects.get(idev) as IommufdDevice;
  return d.attached ? (d.igroup.hwpt?.id ?? -1) : 0;
}

test("mock_domain: attaching to an IOAS creates an auto HWPT; a second device reuses it", () => {
  const e = env();
  const a = mockDomain(e.ctx, e.ioas);
  assert.deepEqual(a, { stdev: 2, hwpt: 4, idev: 3 });
  assert.equal((e.ctx.objects.get(a.hwpt) as HwptPaging).autoDomain, true);
  const b = mockDomain(e.ctx, e.ioas);
  assert.deepEqual(b, { stdev: 5, hwpt: 4, idev: 6 }, "the existing auto HWPT is reused, no new ID");
  // a device created without dirty tracking also fits (auto domains are never dirty-tracking)
  const c = mockDomain(e.ctx, e.ioas, S.MOCK_FLAGS_DEVICE_NO_DIRTY);
  assert.equal(c.hwpt, 4);
  // the auto HWPT lives until its last device goes
  e.ctx.destroy({ id: a.stdev });
  e.ctx.destroy({ id: b.stdev });
  assert.ok(e.ctx.objects.has(4));
  e.ctx.destroy({ id: c.stdev });
  assert.equal(e.ctx.objects.has(4), false);
  e.ctx.destroy({ id: e.ioas });
  assert.equal(e.ctx.objects.size, 0);
});

test("mock_domain: destroy order: IOAS and attached HWPT are EBUSY, the device ID is always EBUSY, the selftest ID tears down", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: e.ioas }), "IOAS with a HWPT");
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: md.hwpt }), "attached HWPT");
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: md.idev }), "device object");
  e.ctx.destroy({ id: md.stdev });
  for (const id of [md.stdev, md.idev, md.hwpt]) expectErr("ENOENT", () => e.ctx.destroy({ id }), `id ${id} after stdev destroy`);
  e.ctx.destroy({ id: e.ioas });
  expectErr("ENOENT", () => e.ctx.destroy({ id: 0 }));
});

test("mock_domain: IDs of destroyed objects are reused lowest-first", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  e.ctx.destroy({ id: md.stdev });
  assert.deepEqual(mockDomain(e.ctx, e.ioas), { stdev: 2, hwpt: 4, idev: 3 });
});

test("mock_domain: a failed MOCK_DOMAIN leaves no object, ID or attachment behind", () => {
  const e = env();
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  failsCleanly(e, "ENOENT", () => mockDomain(e.ctx, 999), "unknown pt");
  failsCleanly(e, "EINVAL", () => mockDomain(e.ctx, f.out_fault_id as number), "pt is a fault object");
  failsCleanly(e, "EINVAL", () => mockDomain(e.ctx, e.ioas, 8), "unknown device flag (6.12)");
  failsCleanly(e, "EINVAL", () => mockDomain(e.ctx, e.ioas, 1 << 20), "unknown device flag");
  // a mapping outside the mock aperture keeps the auto domain from reserving it
  ioasMap(e.ctx, e.ioas, e.buf, PAGE, 0x100000n);
  failsCleanly(e, "EADDRINUSE", () => mockDomain(e.ctx, e.ioas), "mapping outside the aperture");
  e.ctx.ioasUnmap({ ioas_id: e.ioas, iova: 0x100000n, length: BigInt(PAGE) });
  const md = mockDomain(e.ctx, e.ioas);
  assert.deepEqual(md, { stdev: 3, hwpt: 5, idev: 4 }, "IDs 3.. were never consumed by the failures");
});

test("hwpt_attach: a device can attach to an existing HWPT directly (auto or manual)", () => {
  const e = env();
  const a = mockDomain(e.ctx, e.ioas);
  const b = mockDomain(e.ctx, a.hwpt);
  assert.equal(b.hwpt, a.hwpt);
  const manual = hwptAlloc(e.ctx, a.idev, e.ioas);
  const c = mockDomain(e.ctx, manual);
  assert.equal(c.hwpt, manual);
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: manual }));
  // the manual HWPT survives its last device
  e.ctx.destroy({ id: c.stdev });
  assert.ok(e.ctx.objects.has(manual));
  e.ctx.destroy({ id: manual });
  // an auto HWPT attached by ID is still freed with its last device
  e.ctx.destroy({ id: a.stdev });
  assert.ok(e.ctx.objects.has(a.hwpt));
  e.ctx.destroy({ id: b.stdev });
  assert.equal(e.ctx.objects.has(a.hwpt), false);
});

test("mock_domain: a new IOAS attach never picks a manually allocated HWPT", () => {
  const e = env();
  const a = mockDomain(e.ctx, e.ioas);
  const manual = hwptAlloc(e.ctx, a.idev, e.ioas);
  e.ctx.destroy({ id: a.stdev });
  const b = mockDomain(e.ctx, e.ioas);
  assert.notEqual(b.hwpt, manual);
  assert.equal((e.ctx.objects.get(b.hwpt) as HwptPaging).autoDomain, true);
});

test("replace: replacing away from the auto HWPT frees it (its ID is then ENOENT)", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const ioas2 = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const h2 = replace(e.ctx, md.stdev, ioas2);
  assert.equal(h2, 6, "the new auto HWPT is allocated while the old one still exists");
  assert.equal(attachedTo(e.ctx, md.idev), h2);
  const ioas3 = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  assert.equal(ioas3, md.hwpt, "the freed auto HWPT's ID is the lowest free one");
  const h3 = replace(e.ctx, md.stdev, ioas3);
  assert.equal(h3, 7);
  failsCleanly(e, "ENOENT", () => replace(e.ctx, md.stdev, h2), "the replaced auto HWPT is gone");
  failsCleanly(e, "ENOENT", () => e.ctx.destroy({ id: h2 }));
  // the old IOAS is free again
  e.ctx.destroy({ id: ioas2 });
  assert.equal(replace(e.ctx, md.stdev, e.ioas), ioas2);
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: e.ioas }));
});

test("replace: to the same HWPT or the same IOAS is a no-op returning the current HWPT", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const users = e.ctx.objects.get(md.hwpt)?.users;
  assert.equal(replace(e.ctx, md.stdev, e.ioas), md.hwpt);
  assert.equal(replace(e.ctx, md.stdev, md.hwpt), md.hwpt);
  assert.equal(e.ctx.objects.get(md.hwpt)?.users, users);
  e.ctx.destroy({ id: md.stdev });
  assert.equal(e.ctx.objects.has(md.hwpt), false);
});

test("replace: the rotation of alloc_hwpt (auto -> manual -> parent -> IOAS) and EBUSY on the attached one", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  failsCleanly(e, "EOPNOTSUPP", () => hwptAlloc(e.ctx, md.idev, e.ioas, ~NEST));
  const h0 = hwptAlloc(e.ctx, md.idev, e.ioas, 0);
  const h1 = hwptAlloc(e.ctx, md.idev, e.ioas, NEST);
  assert.equal(replace(e.ctx, md.stdev, h0), h0);
  assert.equal(e.ctx.objects.has(md.hwpt), false, "auto HWPT freed");
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: h0 }));
  assert.equal(replace(e.ctx, md.stdev, h1), h1);
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: h1 }));
  const auto = replace(e.ctx, md.stdev, e.ioas);
  assert.equal((e.ctx.objects.get(auto) as HwptPaging).autoDomain, true, "a fresh auto HWPT, not h0 or h1");
  e.ctx.destroy({ id: h1 });
  const d = mockDomain(e.ctx, h0);
  e.ctx.destroy({ id: d.stdev });
  e.ctx.destroy({ id: h0 });
});

test("replace: nested HWPTs can be attached, and the busy one cannot be destroyed", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, NEST);
  const n0 = nestedAlloc(e.ctx, e.p, md.idev, parent);
  const n1 = nestedAlloc(e.ctx, e.p, md.idev, parent);
  assert.equal(replace(e.ctx, md.stdev, n0), n0);
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: n0 }));
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: parent }));
  replace(e.ctx, md.stdev, n1);
  e.ctx.destroy({ id: n0 });
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: n1 }));
  replace(e.ctx, md.stdev, parent);
  e.ctx.destroy({ id: n1 });
  replace(e.ctx, md.stdev, e.ioas);
  e.ctx.destroy({ id: parent });
  // a new device directly on a nested HWPT
  const p2 = hwptAlloc(e.ctx, md.idev, e.ioas, NEST);
  const n2 = nestedAlloc(e.ctx, e.p, md.idev, p2);
  const d2 = mockDomain(e.ctx, n2);
  assert.equal(d2.hwpt, n2);
});

test("replace: error cases change nothing", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  failsCleanly(e, "ENOENT", () => replace(e.ctx, md.stdev, 999), "unknown pt");
  failsCleanly(e, "EINVAL", () => replace(e.ctx, md.stdev, md.idev), "pt is a device");
  failsCleanly(e, "EINVAL", () => replace(e.ctx, md.stdev, md.stdev), "pt is a selftest object");
  failsCleanly(e, "EINVAL", () => replace(e.ctx, md.stdev, f.out_fault_id as number), "pt is a fault");
  failsCleanly(e, "ENOENT", () => replace(e.ctx, md.idev, e.ioas), "id is a device, not a selftest object");
  failsCleanly(e, "ENOENT", () => replace(e.ctx, e.ioas, e.ioas), "id is an IOAS");
  failsCleanly(e, "ENOENT", () => replace(e.ctx, 999, e.ioas), "unknown selftest id");
});

test("enforce_dirty: a NO_DIRTY device cannot attach to (or be replaced onto) a dirty-tracking HWPT (EINVAL)", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const dirty = hwptAlloc(e.ctx, md.idev, e.ioas, DIRTY);
  const ok = mockDomain(e.ctx, dirty);
  assert.equal(ok.hwpt, dirty);
  failsCleanly(e, "EINVAL", () => mockDomain(e.ctx, dirty, S.MOCK_FLAGS_DEVICE_NO_DIRTY), "attach");
  e.ctx.destroy({ id: ok.stdev });
  const nd = mockDomain(e.ctx, e.ioas, S.MOCK_FLAGS_DEVICE_NO_DIRTY);
  assert.equal(nd.hwpt, md.hwpt, "reuses the non-dirty auto HWPT");
  failsCleanly(e, "EINVAL", () => replace(e.ctx, nd.stdev, dirty), "replace");
  assert.equal(attachedTo(e.ctx, nd.idev), md.hwpt);
  failsCleanly(e, "EOPNOTSUPP", () => hwptAlloc(e.ctx, nd.idev, e.ioas, DIRTY));
  e.ctx.destroy({ id: nd.stdev });
  e.ctx.destroy({ id: md.stdev });
  e.ctx.destroy({ id: dirty });
});

test("replace: moving a device to another IOAS moves the domain's mappings and pins", () => {
  const e = env();
  ioasMap(e.ctx, e.ioas, e.buf, 2 * PAGE, BASE);
  checkRefs(e.ctx, e.buf, 2 * PAGE, 0);
  const md = mockDomain(e.ctx, e.ioas);
  checkRefs(e.ctx, e.buf, 2 * PAGE, 1);
  checkMap(e.ctx, md.hwpt, BASE, 2 * PAGE, e.buf);
  const ioas2 = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const h2 = replace(e.ctx, md.stdev, ioas2);
  checkRefs(e.ctx, e.buf, 2 * PAGE, 0);
  expectErr("EINVAL", () => checkMap(e.ctx, h2, BASE, 2048, e.buf), "nothing mapped in the new domain");
  // the new IOAS has the aperture reserved, the old one not any more
  const ranges = (id: number) => e.ctx.ioasIovaRanges({ ioas_id: id, num_iovas: 0, allowed_iovas: 0n });
  expectErr("EMSGSIZE", () => ranges(e.ioas));
  const r1 = (expectErr("EMSGSIZE", () => ranges(e.ioas)).out as S.IommuIoasIovaRanges).num_iovas;
  assert.equal(r1, 1);
  ioasMap(e.ctx, ioas2, e.buf, PAGE, BASE);
  checkMap(e.ctx, h2, BASE, PAGE, e.buf);
  checkRefs(e.ctx, e.buf, PAGE, 1);
  e.ctx.destroy({ id: md.stdev });
  checkRefs(e.ctx, e.buf, PAGE, 0);
});

test("replace: with two devices on one auto HWPT, replacing one keeps the HWPT for the other", () => {
  const e = env();
  const a = mockDomain(e.ctx, e.ioas);
  const b = mockDomain(e.ctx, e.ioas);
  const ioas2 = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const h = replace(e.ctx, a.stdev, ioas2);
  assert.notEqual(h, a.hwpt);
  assert.ok(e.ctx.objects.has(a.hwpt));
  assert.equal(attachedTo(e.ctx, b.idev), a.hwpt);
  e.ctx.destroy({ id: b.stdev });
  assert.equal(e.ctx.objects.has(a.hwpt), false);
  assert.equal(nextId(e.ctx), a.hwpt);
});

test("mock_domain: the selftest object destroy detaches the device and unbinds it; group DMA ownership is released", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const dev = (e.ctx.objects.get(md.idev) as IommufdDevice).dev;
  assert.notEqual(dev.group.domain, null);
  assert.equal(dev.group.ownerCnt, 1);
  e.ctx.destroy({ id: md.stdev });
  assert.equal(dev.group.domain, null);
  assert.equal(dev.group.ownerCnt, 0);
  assert.equal(e.ctx.groups.size, 0);
});

test("replace: onto an IOAS whose new auto domain cannot reserve outside the aperture fails (EADDRINUSE) and keeps the old HWPT", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const ioas2 = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  ioasMap(e.ctx, ioas2, e.buf, PAGE, 0x100000n);
  failsCleanly(e, "EADDRINUSE", () => replace(e.ctx, md.stdev, ioas2));
  assert.equal(attachedTo(e.ctx, md.idev), md.hwpt);
  const manual = hwptAlloc(e.ctx, md.idev, e.ioas);
  failsCleanly(e, "EADDRINUSE", () => replace(e.ctx, md.stdev, ioas2), "with another HWPT around too");
  assert.equal(replace(e.ctx, md.stdev, manual), manual);
});

test("attach/replace: a PCI VF cannot be put on a HWPT with a fault object (EINVAL), but can use one without", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, NEST);
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  const iopf = nestedAlloc(e.ctx, e.p, md.idev, parent, { flags: S.IOMMU_HWPT_FAULT_ID_VALID, faultId: f.out_fault_id as number });
  const plain = nestedAlloc(e.ctx, e.p, md.idev, parent);
  const vf = e.ctx.bindDevice(new S.Device({ name: "pci-0000:00:03.1", driver: S.mockIommu, isPci: true }));
  vf.isVf = true;
  failsCleanly(e, "EINVAL", () => vf.attach(iopf), "attach");
  assert.equal(vf.attach(plain), plain);
  failsCleanly(e, "EINVAL", () => vf.replace(iopf), "replace");
  assert.equal(vf.replace(e.ioas), md.hwpt, "the auto domain of the IOAS is shared");
  vf.detach();
  e.ctx.unbindDevice(vf);
});
