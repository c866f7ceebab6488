/**
 * IOMMU_HWPT_ALLOC: paging (kernel-managed) and nested (user-managed) HWPTs with the selftest mock
 * driver. Expected errnos are the ones measured on Linux 6.12 (hw_pagetable.c + selftest.c).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  S,
  env,
  expectErr,
  failsCleanly,
  hwptAlloc,
  mockDomain,
  nestedAlloc,
  nextId,
  scratch,
  selftestData,
  checkIotlbAll,
  u32s,
  SELFTEST_DATA,
  IOTLB_DEFAULT,
  type Env,
} from "./helpers.js";
import { HwptNested, HwptPaging } from "../../src/iommufd/hwpt.js";
import { MockPagingDomain } from "../../src/iommu/drivers/mock.js";

const NEST = S.IOMMU_HWPT_ALLOC_NEST_PARENT;
const DIRTY = S.IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
const FAULT_VALID = S.IOMMU_HWPT_FAULT_ID_VALID;

function withDev(): Env & { md: ReturnType<typeof mockDomain> } {
  const e = env();
  return { ...e, md: mockDomain(e.ctx, e.ioas) };
}

test("hwpt_alloc: a paging HWPT on an IOAS takes the next ID, holds the IOAS and is not an auto domain", () => {
  const e = withDev();
  assert.deepEqual(e.md, { stdev: 2, hwpt: 4, idev: 3 }, "MOCK_DOMAIN allocates stdev, then idev, then the auto HWPT");
  const id = hwptAlloc(e.ctx, e.md.idev, e.ioas);
  assert.equal(id, 5);
  const h = e.ctx.objects.get(id) as HwptPaging;
  assert.ok(h instanceof HwptPaging);
  assert.equal(h.autoDomain, false);
  assert.equal(h.nestParent, false);
  assert.ok(h.domain instanceof MockPagingDomain && !h.domain.dirtyOps);
  expectErr("EBUSY", () => e.ctx.destroy({ id: e.ioas }), "the IOAS is held by its HWPTs");
  e.ctx.destroy({ id });
  expectErr("ENOENT", () => e.ctx.destroy({ id }));
});

test("hwpt_alloc: NEST_PARENT, DIRTY_TRACKING, ALLOC_PASID and FAULT_ID_VALID (not with NEST_PARENT) are the only paging flags", () => {
  const e = withDev();
  const a = hwptAlloc(e.ctx, e.md.idev, e.ioas, NEST);
  assert.equal((e.ctx.objects.get(a) as HwptPaging).nestParent, true);
  const b = hwptAlloc(e.ctx, e.md.idev, e.ioas, DIRTY);
  const db = (e.ctx.objects.get(b) as HwptPaging).domain as MockPagingDomain;
  assert.equal(db.dirtyOps, true);
  assert.equal(db.dirtyTracking, false, "dirty tracking starts disabled");
  const c = hwptAlloc(e.ctx, e.md.idev, e.ioas, NEST | DIRTY);
  assert.deepEqual([a, b, c], [5, 6, 7]);
  for (const flags of [1 << 4, 1 << 31, ~NEST, NEST | FAULT_VALID, 0xffffffff])
    failsCleanly(e, "EOPNOTSUPP", () => hwptAlloc(e.ctx, e.md.idev, e.ioas, flags), `flags ${flags}`);
  // FAULT_ID_VALID alone is a paging flag (newest): fault_id 0 names no fault object
  failsCleanly(e, "ENOENT", () => hwptAlloc(e.ctx, e.md.idev, e.ioas, FAULT_VALID), "FAULT_ID_VALID with fault_id 0");
});

test("hwpt_alloc: the common checks run in order __reserved, data_type/data_len, dev_id, pt_id", () => {
  const e = withDev();
  const data = selftestData(e.p);
  const { idev, stdev } = e.md;
  const call = (o: Partial<S.IommuHwptAlloc>) => () =>
    e.ctx.hwptAlloc({ flags: 0, dev_id: idev, pt_id: e.ioas, data_type: 0, data_len: 0, data_uptr: 0n, ...o });
  failsCleanly(e, "EOPNOTSUPP", call({ __reserved: 1, dev_id: 999, pt_id: 999, data_len: 4 }), "__reserved first");
  failsCleanly(e, "EINVAL", call({ data_len: 4, data_uptr: data, dev_id: 999 }), "DATA_NONE with data_len, before dev_id");
  failsCleanly(e, "EINVAL", call({ data_type: SELFTEST_DATA, data_len: 0, dev_id: 999 }), "a data type without data_len");
  failsCleanly(e, "ENOENT", call({ dev_id: 999, pt_id: 999 }), "unknown dev_id");
  failsCleanly(e, "ENOENT", call({ dev_id: e.ioas }), "dev_id is an IOAS");
  failsCleanly(e, "ENOENT", call({ dev_id: stdev }), "dev_id is the selftest object");
  failsCleanly(e, "EINVAL", call({ pt_id: 999 }), "unknown pt_id is EINVAL, not ENOENT");
  failsCleanly(e, "EINVAL", call({ pt_id: idev }), "pt_id is a device");
  failsCleanly(e, "EINVAL", call({ pt_id: stdev }), "pt_id is the selftest object");
  failsCleanly(e, "EINVAL", call({ pt_id: 0 }), "pt_id 0");
  // __reserved2 is not checked in 6.12
  const id = e.ctx.hwptAlloc({ flags: 0, dev_id: idev, pt_id: e.ioas, data_type: 0, data_len: 0, data_uptr: 0n, __reserved2: 7 }).out_hwpt_id;
  assert.equal(id, 5);
});

test("hwpt_alloc: the mock driver refuses driver data on a paging HWPT (EOPNOTSUPP)", () => {
  const e = withDev();
  failsCleanly(e, "EOPNOTSUPP", () =>
    e.ctx.hwptAlloc({ flags: 0, dev_id: e.md.idev, pt_id: e.ioas, data_type: SELFTEST_DATA, data_len: 4, data_uptr: selftestData(e.p) }),
  );
  // still EOPNOTSUPP with a bad pointer: the driver rejects before copying anything
  failsCleanly(e, "EOPNOTSUPP", () =>
    e.ctx.hwptAlloc({ flags: 0, dev_id: e.md.idev, pt_id: e.ioas, data_type: SELFTEST_DATA, data_len: 4, data_uptr: 0n }),
  );
});

test("hwpt_alloc: DIRTY_TRACKING needs a dirty-capable device (NO_DIRTY mock device -> EOPNOTSUPP)", () => {
  const e = env();
  const nd = mockDomain(e.ctx, e.ioas, S.MOCK_FLAGS_DEVICE_NO_DIRTY);
  failsCleanly(e, "EOPNOTSUPP", () => hwptAlloc(e.ctx, nd.idev, e.ioas, DIRTY));
  failsCleanly(e, "EOPNOTSUPP", () => hwptAlloc(e.ctx, nd.idev, e.ioas, DIRTY | NEST));
  // without the flag the same device gets a HWPT
  assert.equal(hwptAlloc(e.ctx, nd.idev, e.ioas, NEST), 5);
});

test("hwpt_alloc: a paging HWPT is filled with the IOAS's existing mappings", () => {
  const e = withDev();
  const iova = e.ctx.ioasMap({ flags: 7, ioas_id: e.ioas, user_va: BigInt(e.buf), length: 8192n, iova: 1n << 24n }).iova;
  const id = hwptAlloc(e.ctx, e.md.idev, e.ioas);
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_MAP, id, iova, length: 8192n, uptr: BigInt(e.buf) });
  // pages are pinned once for all domains of the IOAS
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_REFS, id: 0, uptr: BigInt(e.buf), length: 8192n, refs: 1 });
});

test("alloc_hwpt_nested: the selftest's negative cases and errnos", () => {
  const e = withDev();
  const { idev } = e.md;
  const parent = hwptAlloc(e.ctx, idev, e.ioas, NEST);
  const notParent = hwptAlloc(e.ctx, idev, e.ioas, 0);
  const data = selftestData(e.p);
  const nested = (o: Partial<S.IommuHwptAlloc>) => () =>
    e.ctx.hwptAlloc({ flags: 0, dev_id: idev, pt_id: parent, data_type: SELFTEST_DATA, data_len: 4, data_uptr: data, ...o });
  failsCleanly(e, "EINVAL", nested({ data_type: S.IOMMU_HWPT_DATA_NONE }), "DATA_NONE with data");
  failsCleanly(e, "EOPNOTSUPP", nested({ data_type: S.IOMMU_HWPT_DATA_NONE, data_len: 0, data_uptr: 0n }), "no data at all");
  failsCleanly(e, "EOPNOTSUPP", nested({ data_type: SELFTEST_DATA + 1 }), "unknown data type");
  failsCleanly(e, "EOPNOTSUPP", nested({ data_type: S.IOMMU_HWPT_DATA_VTD_S1 }), "another driver's data type");
  failsCleanly(e, "EINVAL", nested({ data_len: 3 }), "data_len below the minimum");
  failsCleanly(e, "EINVAL", nested({ data_len: 9 }), "data_len above the kernel's struct size (4 in 6.12, 8 newest: test/conformance/profiles.test.ts)");
  failsCleanly(e, "EFAULT", nested({ data_uptr: 0n }), "NULL data_uptr");
  failsCleanly(e, "EFAULT", nested({ data_uptr: 8n }), "unmapped data_uptr");
  failsCleanly(e, "EOPNOTSUPP", nested({ flags: NEST }), "NEST_PARENT on a nested HWPT");
  failsCleanly(e, "EOPNOTSUPP", nested({ flags: DIRTY }), "DIRTY_TRACKING on a nested HWPT");
  failsCleanly(e, "EINVAL", nested({ pt_id: notParent }), "parent without NEST_PARENT");
  failsCleanly(e, "EINVAL", nested({ pt_id: e.md.hwpt }), "auto-domain parent");
  failsCleanly(e, "EINVAL", nested({ pt_id: notParent, data_type: SELFTEST_DATA + 1 }), "parent checks come before the driver's type check");
  failsCleanly(e, "EOPNOTSUPP", nested({ pt_id: notParent, flags: NEST }), "flags are checked before the parent");
  const n1 = nestedAlloc(e.ctx, e.p, idev, parent);
  failsCleanly(e, "EINVAL", nested({ pt_id: n1 }), "nested on nested");
  failsCleanly(e, "ENOENT", nested({ flags: FAULT_VALID, fault_id: 0xffffffff }), "unknown fault_id");
  failsCleanly(e, "ENOENT", nested({ flags: FAULT_VALID, fault_id: e.ioas }), "fault_id that is not a fault");
  failsCleanly(e, "EINVAL", nested({ flags: FAULT_VALID, fault_id: 0xffffffff, data_len: 3 }), "driver errors come before the fault lookup");
});

test("alloc_hwpt_nested: two nested HWPTs share a parent, start with the given IOTLB value and pin the parent", () => {
  const e = withDev();
  const parent = hwptAlloc(e.ctx, e.md.idev, e.ioas, NEST);
  const n0 = nestedAlloc(e.ctx, e.p, e.md.idev, parent);
  const n1 = nestedAlloc(e.ctx, e.p, e.md.idev, parent, { iotlb: 0x1234 });
  assert.deepEqual([parent, n0, n1], [5, 6, 7]);
  assert.ok(e.ctx.objects.get(n0) instanceof HwptNested);
  checkIotlbAll(e.ctx, n0, IOTLB_DEFAULT);
  checkIotlbAll(e.ctx, n1, 0x1234);
  expectErr("EBUSY", () => e.ctx.destroy({ id: parent }));
  e.ctx.destroy({ id: n0 });
  expectErr("EBUSY", () => e.ctx.destroy({ id: parent }));
  e.ctx.destroy({ id: n1 });
  e.ctx.destroy({ id: parent });
  assert.equal(nextId(e.ctx), 5);
});

test("alloc_hwpt_nested: data is read from user memory at the call (a later change does not matter)", () => {
  const e = withDev();
  const parent = hwptAlloc(e.ctx, e.md.idev, e.ioas, NEST);
  const ptr = scratch(e.p, u32s(0x55));
  const n = e.ctx.hwptAlloc({ flags: 0, dev_id: e.md.idev, pt_id: parent, data_type: SELFTEST_DATA, data_len: 4, data_uptr: ptr }).out_hwpt_id as number;
  e.p.write(Number(ptr), u32s(0x66));
  checkIotlbAll(e.ctx, n, 0x55);
});

test("alloc_hwpt_nested: fault_id is ignored without FAULT_ID_VALID", () => {
  const e = withDev();
  const parent = hwptAlloc(e.ctx, e.md.idev, e.ioas, NEST);
  const n = nestedAlloc(e.ctx, e.p, e.md.idev, parent, { faultId: 0xffffffff });
  assert.equal((e.ctx.objects.get(n) as HwptNested).fault, null);
});

test("alloc_hwpt_nested: FAULT_ID_VALID ties the HWPT to the fault object, which can then not be destroyed", () => {
  const e = withDev();
  const parent = hwptAlloc(e.ctx, e.md.idev, e.ioas, NEST);
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  const fid = f.out_fault_id as number;
  S.fdTableOf(e.p).close(f.out_fault_fd as number);
  const n = nestedAlloc(e.ctx, e.p, e.md.idev, parent, { flags: FAULT_VALID, faultId: fid });
  assert.equal((e.ctx.objects.get(n) as HwptNested).fault?.id, fid);
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: fid }));
  e.ctx.destroy({ id: n });
  e.ctx.destroy({ id: fid });
});

test("hwpt_alloc: a failed allocation leaves no ID behind (the next object gets the same ID)", () => {
  const e = withDev();
  const before = nextId(e.ctx);
  expectErr("EINVAL", () => nestedAlloc(e.ctx, e.p, e.md.idev, e.md.hwpt));
  expectErr("EOPNOTSUPP", () => hwptAlloc(e.ctx, e.md.idev, e.ioas, 1 << 4));
  const parent = hwptAlloc(e.ctx, e.md.idev, e.ioas, NEST);
  expectErr("ENOENT", () => nestedAlloc(e.ctx, e.p, e.md.idev, parent, { flags: FAULT_VALID, faultId: 77 }));
  assert.equal(parent, before);
  assert.equal(nestedAlloc(e.ctx, e.p, e.md.idev, parent), before + 1);
});

test("hwpt_alloc: a HWPT can be allocated for a device that is not attached and on an IOAS it is not attached to", () => {
  const e = withDev();
  const other = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const h = hwptAlloc(e.ctx, e.md.idev, other, NEST);
  expectErr("EBUSY", () => e.ctx.destroy({ id: other }));
  e.ctx.destroy({ id: e.md.stdev });
  expectErr("ENOENT", () => hwptAlloc(e.ctx, e.md.idev, other), "the device is gone with its selftest object");
  e.ctx.destroy({ id: h });
  e.ctx.destroy({ id: other });
});

test("hwpt_alloc: a mapping outside the mock aperture keeps the new domain out of the IOAS (EADDRINUSE, nothing left)", () => {
  const e = withDev();
  const ioas2 = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  e.ctx.ioasMap({ flags: 7, ioas_id: ioas2, user_va: BigInt(e.buf), length: 4096n, iova: 0x100000n });
  const next = nextId(e.ctx);
  failsCleanly(e, "EADDRINUSE", () => hwptAlloc(e.ctx, e.md.idev, ioas2));
  failsCleanly(e, "EADDRINUSE", () => hwptAlloc(e.ctx, e.md.idev, ioas2, NEST | DIRTY));
  assert.equal(nextId(e.ctx), next);
  e.ctx.ioasUnmap({ ioas_id: ioas2, iova: 0x100000n, length: 4096n });
  assert.equal(hwptAlloc(e.ctx, e.md.idev, ioas2), next);
});

test("alloc_hwpt_nested: the driver checks data_len before reading user memory (a 1 GiB data_len touches nothing)", () => {
  const e = withDev();
  const parent = hwptAlloc(e.ctx, e.md.idev, e.ioas, NEST);
  const big = e.p.mmap(1 << 30);
  const rss = e.p.mm.residentPages;
  failsCleanly(e, "EINVAL", () =>
    e.ctx.hwptAlloc({ flags: 0, dev_id: e.md.idev, pt_id: parent, data_type: SELFTEST_DATA, data_len: 1 << 30, data_uptr: BigInt(big) }),
  );
  failsCleanly(e, "EINVAL", () =>
    e.ctx.hwptAlloc({ flags: 0, dev_id: e.md.idev, pt_id: parent, data_type: SELFTEST_DATA, data_len: 0xffffffff, data_uptr: BigInt(big) }),
  );
  assert.equal(e.p.mm.residentPages, rss);
});
