/**
 * PASID attachment [newer than 6.12]: the iommu core's iommu_attach/replace/detach_device_pasid
 * bookkeeping (src/iommu/core.ts), iommufd's PASID attach rules (device.c: iommufd_hwpt_pasid_compat,
 * iommufd_hw_pagetable_attach / _detach, iommufd_device_do_replace) and the selftest ops 18..21
 * (selftest.c iommufd_test_pasid_*), as the newest selftest's iommufd_device_pasid fixture uses
 * them; page requests at a PASID (io-pgfault.c find_fault_handler).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { S, env, expectErr, hwptAlloc, mockDomain, replace, decodeFaults, responses, type Env, type MockDev } from "./helpers.js";
import { failsCleanlyFull, nested, viommuAlloc, PASID_FLAG, FAULT_VALID, NEST } from "../viommu/helpers.js";
import { attachDevicePasid, detachDevicePasid, groupPasidDomain, groupPasidsAttached, replaceDevicePasid } from "../../src/iommu/core.js";
import { IOMMU_TEST_PASID_RESERVED, MockPagingDomain } from "../../src/iommu/drivers/mock.js";
import type { IommuDomain } from "../../src/iommu/domain.js";
import type { IommuDriver } from "../../src/iommu/driver.js";
import { IOMMUFD_PAGE_RESP_INVALID } from "../../src/iommufd/fault.js";
import type { Fault } from "../../src/iommufd/fault.js";

const ATTACH = S.IOMMU_TEST_OP_PASID_ATTACH;
const REPLACE = S.IOMMU_TEST_OP_PASID_REPLACE;
const DETACH = S.IOMMU_TEST_OP_PASID_DETACH;
const CHECK = S.IOMMU_TEST_OP_PASID_CHECK_HWPT;

interface PEnv extends Env {
  md: MockDev;
  parent: number;
  /** nested HWPTs with ALLOC_PASID on the parent */
  n0: number;
  n1: number;
  /** a paging HWPT with ALLOC_PASID */
  s2: number;
}

/** FIXTURE_SETUP(iommufd_device_pasid), variant has_pasid, plus the test's HWPTs. */
function penv(devFlags = S.MOCK_FLAGS_DEVICE_PASID): PEnv {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas, devFlags);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, NEST);
  return {
    ...e,
    md,
    parent,
    n0: nested(e, md.idev, parent, PASID_FLAG),
    n1: nested(e, md.idev, parent, PASID_FLAG),
    s2: hwptAlloc(e.ctx, md.idev, e.ioas, PASID_FLAG),
  };
}

function op(e: Env, opc: number, stdev: number, pasid: number, pt = 0): S.IommuTestCmd {
  return e.ctx.testCmd({ op: opc, id: stdev, pasid, pt_id: pt, hwpt_id: pt });
}
const attach = (e: PEnv, pasid: number, pt: number, stdev = e.md.stdev) => op(e, ATTACH, stdev, pasid, pt);
const replacePasid = (e: PEnv, pasid: number, pt: number) => op(e, REPLACE, e.md.stdev, pasid, pt);
const detach = (e: PEnv, pasid: number, stdev = e.md.stdev) => op(e, DETACH, stdev, pasid);
function check(e: PEnv, pasid: number, hwpt: number): void {
  op(e, CHECK, e.md.stdev, pasid, hwpt);
}

// ------------------------------------------------------------------------------ iommufd rules

test("PASID attach needs an IOMMU_HWPT_ALLOC_PASID HWPT and a PASID-compatible RID attachment: EINVAL and nothing attached otherwise", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.parent);
  failsCleanlyFull(e, "EINVAL", () => attach(e, 100, e.s2), "the RID is on the (non-compatible) parent");
  replace(e.ctx, e.md.stdev, e.s2);
  failsCleanlyFull(e, "EINVAL", () => attach(e, 100, e.parent), "the HWPT is not PASID-compatible");
  const plainNested = nested(e, e.md.idev, e.parent);
  failsCleanlyFull(e, "EINVAL", () => attach(e, 100, plainNested), "a nested HWPT without ALLOC_PASID");
  check(e, 100, 0);
  attach(e, 100, e.n0);
  check(e, 100, e.n0);
});

test("a RID cannot move to a HWPT that is not PASID-compatible while a PASID is attached (EINVAL, the RID stays); once detached it can", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  attach(e, 100, e.n0);
  failsCleanlyFull(e, "EINVAL", () => replace(e.ctx, e.md.stdev, e.parent), "to the parent");
  failsCleanlyFull(e, "EINVAL", () => replace(e.ctx, e.md.stdev, e.ioas), "to an automatic HWPT of the IOAS");
  replace(e.ctx, e.md.stdev, hwptAlloc(e.ctx, e.md.idev, e.ioas, PASID_FLAG));
  detach(e, 100);
  check(e, 100, 0);
  replace(e.ctx, e.md.stdev, e.parent);
});

test("PASID attach of an IOAS is EINVAL (automatic HWPTs are never PASID-compatible), EBUSY when the PASID is already attached; nothing is allocated", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  failsCleanlyFull(e, "EINVAL", () => attach(e, 100, e.ioas));
  attach(e, 100, e.s2);
  failsCleanlyFull(e, "EBUSY", () => attach(e, 100, e.ioas));
  failsCleanlyFull(e, "EINVAL", () => replacePasid(e, 100, e.ioas), "replace with an IOAS");
  check(e, 100, e.s2);
});

test("PASID attach: EBUSY when the PASID is attached, whatever the HWPT; pt_id unknown ENOENT, not an IOAS or HWPT EINVAL", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  attach(e, 100, e.s2);
  failsCleanlyFull(e, "EBUSY", () => attach(e, 100, e.n0), "another HWPT");
  failsCleanlyFull(e, "EBUSY", () => attach(e, 100, e.s2), "the same HWPT");
  failsCleanlyFull(e, "ENOENT", () => attach(e, 200, 999), "unknown pt_id");
  failsCleanlyFull(e, "EINVAL", () => attach(e, 200, e.md.idev), "a device");
  const f = e.ctx.faultQueueAlloc({ flags: 0 }).out_fault_id as number;
  failsCleanlyFull(e, "EINVAL", () => attach(e, 200, f), "a fault queue");
});

test("PASID attach beyond the device's PASID width (1 << 20) is EINVAL", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  failsCleanlyFull(e, "EINVAL", () => attach(e, 1 << 20, e.n0));
  attach(e, (1 << 20) - 1, e.n0);
  check(e, (1 << 20) - 1, e.n0);
});

test("PASID replace: an unattached PASID is EINVAL; it switches HWPTs; the same HWPT is a no-op; the references move", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  failsCleanlyFull(e, "EINVAL", () => replacePasid(e, 200, e.s2), "not attached");
  attach(e, 200, e.s2);
  const users = (id: number) => e.ctx.objects.get(id)?.users;
  assert.equal(users(e.s2), 3, "table + RID + PASID");
  assert.equal(replacePasid(e, 200, e.n0).pt_id, e.n0);
  check(e, 200, e.n0);
  assert.equal(users(e.s2), 2);
  assert.equal(users(e.n0), 2);
  replacePasid(e, 200, e.n1);
  check(e, 200, e.n1);
  assert.equal(users(e.n0), 1);
  replacePasid(e, 200, e.n1);
  assert.equal(users(e.n1), 2, "the same HWPT changes nothing");
  failsCleanlyFull(e, "EINVAL", () => replacePasid(e, 200, e.parent), "to a HWPT that is not PASID-compatible");
  detach(e, 200);
  assert.equal(users(e.n1), 1);
});

test("PASID replace on PASID 1024: the mock's designed second set_dev_pasid failure (ENOMEM) keeps the old HWPT; detach clears it", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  attach(e, IOMMU_TEST_PASID_RESERVED, e.s2);
  check(e, IOMMU_TEST_PASID_RESERVED, e.s2);
  failsCleanlyFull(e, "ENOMEM", () => replacePasid(e, IOMMU_TEST_PASID_RESERVED, e.n0));
  check(e, IOMMU_TEST_PASID_RESERVED, e.s2);
  detach(e, IOMMU_TEST_PASID_RESERVED);
  // a fresh attach and a replace: the first set_dev_pasid arms the failure again
  attach(e, IOMMU_TEST_PASID_RESERVED, e.s2);
  expectErr("ENOMEM", () => replacePasid(e, IOMMU_TEST_PASID_RESERVED, e.n0));
  // the failure disarmed itself: a third call succeeds
  replacePasid(e, IOMMU_TEST_PASID_RESERVED, e.n0);
  check(e, IOMMU_TEST_PASID_RESERVED, e.n0);
});

test("PASID detach: an unattached PASID is a silent success that changes nothing; detach drops the HWPT's and the device's references", () => {
  const e = penv();
  const before = e.ctx.objects.get(e.md.idev)?.users;
  const snap = JSON.stringify([...e.ctx.objects].map(([i, o]) => [i, o.users]));
  detach(e, 100);
  assert.equal(JSON.stringify([...e.ctx.objects].map(([i, o]) => [i, o.users])), snap);
  replace(e.ctx, e.md.stdev, e.s2);
  attach(e, 100, e.n0);
  assert.equal(e.ctx.objects.get(e.md.idev)?.users, (before as number) + 1);
  expectErr("EBUSY", () => e.ctx.destroy({ id: e.n0 }), "the PASID attachment holds its HWPT");
  detach(e, 100);
  assert.equal(e.ctx.objects.get(e.md.idev)?.users, before);
  e.ctx.destroy({ id: e.n0 });
});

test("PASID_CHECK_HWPT: hwpt_id 0 means nothing attached; an unknown hwpt ENOENT, not a HWPT EINVAL, another domain EINVAL; id must be a selftest object (ENOENT)", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  attach(e, 7, e.n0);
  check(e, 7, e.n0);
  failsCleanlyFull(e, "EINVAL", () => check(e, 7, 0), "attached, expected none");
  failsCleanlyFull(e, "EINVAL", () => check(e, 7, e.n1), "another HWPT");
  failsCleanlyFull(e, "ENOENT", () => check(e, 7, 999), "unknown hwpt");
  failsCleanlyFull(e, "EINVAL", () => check(e, 7, e.ioas), "not a HWPT");
  failsCleanlyFull(e, "ENOENT", () => op(e, CHECK, e.md.idev, 7, e.n0), "the idev is not a selftest object");
  check(e, 8, 0);
  check(e, 0, e.s2);
});

test("PASID 0 in the test ops is IOMMU_NO_PASID, the RID: attach is EBUSY while attached, check sees the RID's HWPT, detach detaches the RID", () => {
  const e = penv();
  failsCleanlyFull(e, "EBUSY", () => attach(e, 0, e.s2), "the RID is attached");
  check(e, 0, e.md.hwpt);
  detach(e, 0);
  check(e, 0, 0);
  expectErr("ENOENT", () => e.ctx.destroy({ id: e.md.hwpt }), "the automatic HWPT went with the detach");
  detach(e, 0);
  assert.equal(attach(e, 0, e.s2).pt_id, e.s2);
  check(e, 0, e.s2);
});

test("a nested HWPT of a vIOMMU can be attached at a PASID without a vDEVICE (set_dev_pasid does not ask)", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  const v = viommuAlloc(e.ctx, e.md.idev, e.parent);
  const n2 = nested(e, e.md.idev, v, PASID_FLAG);
  attach(e, 300, n2);
  check(e, 300, n2);
  expectErr("EBUSY", () => e.ctx.destroy({ id: v }));
  detach(e, 300);
});

test("a device without PASID support: attaching fails on the compatibility rules (its RID is on an automatic HWPT); a PASID-compatible HWPT still works at its RID", () => {
  const e = penv();
  const np = mockDomain(e.ctx, e.ioas, 0);
  replace(e.ctx, np.stdev, e.n0);
  replace(e.ctx, np.stdev, e.ioas);
  failsCleanlyFull(e, "EINVAL", () => attach(e, 100, e.parent, np.stdev), "a HWPT that is not PASID-compatible");
  failsCleanlyFull(e, "EINVAL", () => attach(e, 100, e.s2, np.stdev), "its RID is not PASID-compatible");
});

test("the full iommufd_device_pasid.pasid_attach sequence passes for both variants and tears down cleanly", () => {
  for (const variant of ["no_pasid", "has_pasid"] as const) {
    const e = penv();
    const np = variant === "no_pasid" ? mockDomain(e.ctx, e.ioas, 0) : null;
    const f = e.ctx.faultQueueAlloc({ flags: 0 });
    const fid = f.out_fault_id as number;
    const iopf = nested(e, e.md.idev, e.parent, FAULT_VALID | PASID_FLAG, fid);
    const v = viommuAlloc(e.ctx, e.md.idev, e.parent);
    nested(e, e.md.idev, v, PASID_FLAG);
    detach(e, 100);
    replace(e.ctx, e.md.stdev, e.parent);
    expectErr("EINVAL", () => attach(e, 100, e.s2));
    replace(e.ctx, e.md.stdev, e.s2);
    attach(e, 100, e.n0);
    expectErr("EINVAL", () => replace(e.ctx, e.md.stdev, e.parent));
    detach(e, 100);
    check(e, 100, 0);
    if (np) {
      replace(e.ctx, np.stdev, e.n0);
      replace(e.ctx, np.stdev, e.ioas);
      expectErr("EINVAL", () => attach(e, 100, e.parent, np.stdev));
      expectErr("EINVAL", () => attach(e, 100, e.s2, np.stdev));
    }
    expectErr("EINVAL", () => attach(e, 100, e.parent));
    expectErr("EINVAL", () => attach(e, 100, e.ioas));
    attach(e, 100, e.s2);
    check(e, 100, e.s2);
    expectErr("EBUSY", () => attach(e, 100, e.n0));
    detach(e, 100);
    attach(e, 100, e.n0);
    expectErr("EBUSY", () => attach(e, 100, e.n0));
    detach(e, 100);
    expectErr("EINVAL", () => replacePasid(e, 200, e.s2));
    attach(e, 200, e.s2);
    expectErr("EINVAL", () => replacePasid(e, 200, e.ioas));
    replacePasid(e, 200, e.n0);
    replacePasid(e, 200, e.n1);
    check(e, 200, e.n1);
    detach(e, 200);
    attach(e, 1024, e.s2);
    expectErr("ENOMEM", () => replacePasid(e, 1024, e.n0));
    check(e, 1024, e.s2);
    detach(e, 1024);
    attach(e, 2048, iopf);
    e.ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_IOPF, id: 0, dev_id: e.md.idev, pasid: 2048, grpid: 2, perm: 3, addr: 0xdeadbeefn });
    const rec = decodeFaults(S.fdTableOf(e.p).get(f.out_fault_fd as number)?.read?.(40, 0) as Uint8Array);
    assert.deepEqual([rec[0].flags, rec[0].dev_id, rec[0].pasid], [3, e.md.idev, 2048], variant);
    S.fdTableOf(e.p).get(f.out_fault_fd as number)?.write?.(responses([rec[0].cookie, 0]), 0);
    replacePasid(e, 2048, e.s2);
    detach(e, 2048);
    e.ctx.destroy({ id: iopf });
    S.fdTableOf(e.p).close(f.out_fault_fd as number);
    e.ctx.destroy({ id: fid });
    replace(e.ctx, e.md.stdev, e.ioas);
    e.ctx.close();
    assert.equal(e.ctx.released, true, variant);
    assert.equal(e.ctx.objects.size, 0, variant);
  }
});

// ------------------------------------------------------------------------------ faults at a PASID

test("a page request with a valid PASID goes to that PASID's fault-capable HWPT and reports the device; replacing or detaching the PASID answers its pending faults INVALID", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  const fid = f.out_fault_id as number;
  const iopf = nested(e, e.md.idev, e.parent, FAULT_VALID | PASID_FLAG, fid);
  attach(e, 5, iopf);
  const trig = (pasid: number, grpid: number) =>
    e.ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_IOPF, id: 0, dev_id: e.md.idev, pasid, grpid, perm: 1, addr: 0n });
  trig(5, 1);
  trig(6, 2); // PASID 6 has no attachment and the RID is a paging HWPT: not taken
  trig(0, 3); // no PASID: the RID's HWPT has no fault queue
  const fault = e.ctx.objects.get(fid) as Fault;
  assert.equal(fault.deliver.length, 1);
  assert.deepEqual(fault.deliver.map((g) => [g.faults[0].pasid, g.handle.idev.id]), [[5, e.md.idev]]);
  trig(5, 4);
  S.fdTableOf(e.p).get(f.out_fault_fd as number)?.read?.(40, 0);
  assert.equal(fault.response.size, 1);
  replacePasid(e, 5, e.n0);
  assert.equal(fault.deliver.length, 0);
  assert.equal(fault.response.size, 0);
  assert.deepEqual(fault.completed.map((g) => g.response), [IOMMUFD_PAGE_RESP_INVALID, IOMMUFD_PAGE_RESP_INVALID]);
  replacePasid(e, 5, iopf);
  trig(5, 5);
  detach(e, 5);
  assert.equal(fault.deliver.length, 0);
  assert.equal(fault.completed.length, 3);
});

test("a fault-capable paging HWPT (newest) takes the RID's page requests; with the RID on it, a request at an unattached PASID is not taken (only a nested RID takes those)", () => {
  const e = penv();
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  const fid = f.out_fault_id as number;
  const pf = e.ctx.hwptAlloc({ flags: FAULT_VALID, dev_id: e.md.idev, pt_id: e.ioas, data_type: 0, data_len: 0, data_uptr: 0n, fault_id: fid }).out_hwpt_id as number;
  replace(e.ctx, e.md.stdev, pf);
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_IOPF, id: 0, dev_id: e.md.idev, pasid: 0, grpid: 1, perm: 1, addr: 0n });
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_IOPF, id: 0, dev_id: e.md.idev, pasid: 9, grpid: 2, perm: 1, addr: 0n });
  const fault = e.ctx.objects.get(fid) as Fault;
  assert.deepEqual(fault.deliver.map((g) => g.faults[0].grpid), [1]);
  replace(e.ctx, e.md.stdev, e.ioas);
  assert.equal(fault.deliver.length, 0, "moving the RID away answered it");
});

// ------------------------------------------------------------------------------ lifetime

test("destroying the selftest device with PASIDs attached detaches them first; the HWPTs are free again", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  attach(e, 1, e.n0);
  attach(e, 2, e.n1);
  const dev = (e.ctx.objects.get(e.md.idev) as S.IommufdDevice).dev;
  e.ctx.destroy({ id: e.md.stdev });
  assert.deepEqual(groupPasidsAttached(dev.group), []);
  for (const id of [e.n0, e.n1, e.s2]) assert.equal(e.ctx.objects.get(id)?.users, 1, `HWPT ${id}`);
});

test("closing the context with PASIDs attached tears everything down", () => {
  const e = penv();
  replace(e.ctx, e.md.stdev, e.s2);
  attach(e, 1, e.n0);
  attach(e, 1024, e.s2);
  const dev = (e.ctx.objects.get(e.md.idev) as S.IommufdDevice).dev;
  e.ctx.close();
  assert.equal(e.ctx.released, true);
  assert.equal(e.ctx.objects.size, 0);
  assert.deepEqual(groupPasidsAttached(dev.group), []);
  assert.equal(dev.group.domain, null);
});

// ------------------------------------------------------------------------------ the core's bookkeeping

/** Labels for the domains of the core tests, so that recorded calls say which domain was set. */
const labels = new Map<IommuDomain, string>();
function domain(drv: IommuDriver, label: string): MockPagingDomain {
  const d = new MockPagingDomain(drv, false, false);
  labels.set(d, label);
  return d;
}

/** A driver like the mock whose set_dev_pasid fails for one device, recording the calls. */
function recordingDriver(failFor: S.Device | null): { drv: IommuDriver; calls: string[] } {
  const calls: string[] = [];
  const drv = Object.assign(Object.create(S.mockIommu) as IommuDriver, {
    setDevPasid(d: IommuDomain, dev: S.Device, pasid: number) {
      calls.push(`set ${dev.name} ${pasid} ${labels.get(d) ?? "?"}`);
      if (dev === failFor) throw new S.IommuError("EIO", "refused");
    },
    removeDevPasid(dev: S.Device, pasid: number) {
      calls.push(`remove ${dev.name} ${pasid}`);
    },
  });
  return { drv, calls };
}

test("core: attach/replace/detach_device_pasid set every PASID-capable device of the group, skip the others, and keep one domain per PASID", () => {
  const { drv, calls } = recordingDriver(null);
  const g = new S.IommuGroup();
  const a = new S.Device({ name: "a", driver: drv, group: g, maxPasidLog2: 8 });
  new S.Device({ name: "b", driver: drv, group: g });
  const c = new S.Device({ name: "c", driver: drv, group: g, maxPasidLog2: 4 });
  const d1 = domain(drv, "d1");
  const d2 = domain(drv, "d2");
  expectErr("EINVAL", () => attachDevicePasid(d1, a, 16), "beyond c's 16 PASIDs");
  expectErr("EINVAL", () => attachDevicePasid(d1, a, 0), "IOMMU_NO_PASID");
  expectErr("EINVAL", () => attachDevicePasid(new MockPagingDomain(S.mockIommu, false, false), a, 3), "another driver's domain");
  expectErr("EINVAL", () => replaceDevicePasid(d2, a, 3), "replace of nothing");
  assert.deepEqual(calls, []);
  attachDevicePasid(d1, a, 3);
  assert.deepEqual(calls, ["set a 3 d1", "set c 3 d1"]);
  expectErr("EBUSY", () => attachDevicePasid(d2, c, 3));
  replaceDevicePasid(d2, c, 3);
  assert.deepEqual(calls.slice(-2), ["set a 3 d2", "set c 3 d2"]);
  assert.equal(groupPasidDomain(g, 3), d2);
  assert.equal(groupPasidDomain(g, 0), null, "the RID's domain is the group's");
  detachDevicePasid(a, 3);
  detachDevicePasid(a, 3);
  assert.deepEqual(calls.slice(-2), ["remove a 3", "remove c 3"]);
  assert.equal(groupPasidDomain(g, 3), null);
  assert.deepEqual(groupPasidsAttached(g), []);
});

test("core: a set_dev_pasid failure on a later device of the group puts the earlier ones back (blocked on attach, the old domain on replace) and leaves the table as it was", () => {
  const g = new S.IommuGroup();
  const { drv, calls } = recordingDriver(null);
  const a = new S.Device({ name: "a", driver: drv, group: g, maxPasidLog2: 8 });
  const b = new S.Device({ name: "b", driver: drv, group: g, maxPasidLog2: 8 });
  const failing = recordingDriver(b);
  Object.assign(drv, { setDevPasid: failing.drv.setDevPasid, removeDevPasid: failing.drv.removeDevPasid });
  const d1 = domain(drv, "d1");
  expectErr("EIO", () => attachDevicePasid(d1, a, 5));
  assert.deepEqual(failing.calls, ["set a 5 d1", "set b 5 d1", "remove a 5"]);
  assert.equal(groupPasidDomain(g, 5), null);
  assert.deepEqual(calls, []);
  // attach with a driver that works, then replace with the failing one
  const ok = recordingDriver(null);
  Object.assign(drv, { setDevPasid: ok.drv.setDevPasid, removeDevPasid: ok.drv.removeDevPasid });
  attachDevicePasid(d1, a, 5);
  Object.assign(drv, { setDevPasid: failing.drv.setDevPasid, removeDevPasid: failing.drv.removeDevPasid });
  failing.calls.length = 0;
  const d2 = domain(drv, "d2");
  expectErr("EIO", () => replaceDevicePasid(d2, a, 5));
  assert.deepEqual(failing.calls, ["set a 5 d2", "set b 5 d2", "set a 5 d1"], "a goes back to d1");
  assert.equal(groupPasidDomain(g, 5), d1);
});

test("core: a driver without set_dev_pasid cannot attach PASIDs (EOPNOTSUPP)", () => {
  const drv = Object.assign(Object.create(S.mockIommu) as IommuDriver, { setDevPasid: undefined });
  const dev = new S.Device({ name: "x", driver: drv, maxPasidLog2: 8 });
  expectErr("EOPNOTSUPP", () => attachDevicePasid(new MockPagingDomain(drv, false, false), dev, 1));
});
