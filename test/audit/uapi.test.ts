/**
 * Rule-coverage audit (docs/rules-coverage.md): the enumerations of iommu-stack.md 2.1 and the
 * selftest header of iommufd-uapi.md B, checked against the values in Linux 6.12's
 * include/uapi/linux/iommufd.h and drivers/iommu/iommufd/iommufd_test.h; and the selftest op
 * MOCK_DOMAIN_FLAGS, whose device flags differ between 6.12 and newer kernels.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as S from "../../src/index.js";
import { IOMMUFD_PAGE_RESP_INVALID, IOMMUFD_PAGE_RESP_SUCCESS, IOMMU_PGFAULT_FLAGS_LAST_PAGE, IOMMU_PGFAULT_FLAGS_PASID_VALID } from "../../src/iommufd/fault.js";
import { env, failsCleanly, mockDomain, nextId } from "../hwpt/helpers.js";

test("2.1 enumerations (6.12): map flags, options, VFIO_IOAS ops, HWPT alloc flags and data types, HW info types and capabilities, dirty flags, page-fault flags and response codes have the uAPI values", () => {
  const want: Array<[string, number | bigint, number | bigint]> = [
    ["IOMMU_IOAS_MAP_FIXED_IOVA", S.IOMMU_IOAS_MAP_FIXED_IOVA, 1],
    ["IOMMU_IOAS_MAP_WRITEABLE", S.IOMMU_IOAS_MAP_WRITEABLE, 2],
    ["IOMMU_IOAS_MAP_READABLE", S.IOMMU_IOAS_MAP_READABLE, 4],
    ["IOMMU_OPTION_RLIMIT_MODE", S.IOMMU_OPTION_RLIMIT_MODE, 0],
    ["IOMMU_OPTION_HUGE_PAGES", S.IOMMU_OPTION_HUGE_PAGES, 1],
    ["IOMMU_OPTION_OP_SET", S.IOMMU_OPTION_OP_SET, 0],
    ["IOMMU_OPTION_OP_GET", S.IOMMU_OPTION_OP_GET, 1],
    ["IOMMU_VFIO_IOAS_GET", S.IOMMU_VFIO_IOAS_GET, 0],
    ["IOMMU_VFIO_IOAS_SET", S.IOMMU_VFIO_IOAS_SET, 1],
    ["IOMMU_VFIO_IOAS_CLEAR", S.IOMMU_VFIO_IOAS_CLEAR, 2],
    ["IOMMU_HWPT_ALLOC_NEST_PARENT", S.IOMMU_HWPT_ALLOC_NEST_PARENT, 1],
    ["IOMMU_HWPT_ALLOC_DIRTY_TRACKING", S.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 2],
    ["IOMMU_HWPT_FAULT_ID_VALID", S.IOMMU_HWPT_FAULT_ID_VALID, 4],
    ["IOMMU_HWPT_DATA_NONE", S.IOMMU_HWPT_DATA_NONE, 0],
    ["IOMMU_HWPT_DATA_VTD_S1", S.IOMMU_HWPT_DATA_VTD_S1, 1],
    ["IOMMU_HW_INFO_TYPE_NONE", S.IOMMU_HW_INFO_TYPE_NONE, 0],
    ["IOMMU_HW_INFO_TYPE_INTEL_VTD", S.IOMMU_HW_INFO_TYPE_INTEL_VTD, 1],
    ["IOMMU_HW_CAP_DIRTY_TRACKING", S.IOMMU_HW_CAP_DIRTY_TRACKING, 1n],
    ["IOMMU_HW_CAP_PCI_PASID_EXEC", S.IOMMU_HW_CAP_PCI_PASID_EXEC, 2n],
    ["IOMMU_HW_CAP_PCI_PASID_PRIV", S.IOMMU_HW_CAP_PCI_PASID_PRIV, 4n],
    ["IOMMU_HWPT_DIRTY_TRACKING_ENABLE", S.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 1],
    ["IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR", S.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 1],
    ["IOMMU_PGFAULT_FLAGS_PASID_VALID", IOMMU_PGFAULT_FLAGS_PASID_VALID, 1],
    ["IOMMU_PGFAULT_FLAGS_LAST_PAGE", IOMMU_PGFAULT_FLAGS_LAST_PAGE, 2],
    ["IOMMUFD_PAGE_RESP_SUCCESS", IOMMUFD_PAGE_RESP_SUCCESS, 0],
    ["IOMMUFD_PAGE_RESP_INVALID", IOMMUFD_PAGE_RESP_INVALID, 1],
    // newer than 6.12, kept apart from the 6.12 bits
    ["IOMMU_HWPT_ALLOC_PASID", S.IOMMU_HWPT_ALLOC_PASID, 8],
    ["IOMMU_HWPT_DATA_ARM_SMMUV3", S.IOMMU_HWPT_DATA_ARM_SMMUV3, 2],
    ["IOMMU_HW_INFO_TYPE_ARM_SMMUV3", S.IOMMU_HW_INFO_TYPE_ARM_SMMUV3, 2],
  ];
  for (const [name, got, value] of want) assert.equal(got, value, name);
});

test("B: the IOMMU_TEST_OP_* numbers are 1..15 in the 6.12 order, and the selftest constants have the header's values", () => {
  const ops = [
    S.IOMMU_TEST_OP_ADD_RESERVED,
    S.IOMMU_TEST_OP_MOCK_DOMAIN,
    S.IOMMU_TEST_OP_MD_CHECK_MAP,
    S.IOMMU_TEST_OP_MD_CHECK_REFS,
    S.IOMMU_TEST_OP_CREATE_ACCESS,
    S.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
    S.IOMMU_TEST_OP_ACCESS_PAGES,
    S.IOMMU_TEST_OP_ACCESS_RW,
    S.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
    S.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
    S.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS,
    S.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
    S.IOMMU_TEST_OP_DIRTY,
    S.IOMMU_TEST_OP_MD_CHECK_IOTLB,
    S.IOMMU_TEST_OP_TRIGGER_IOPF,
  ];
  assert.deepEqual(ops, Array.from({ length: 15 }, (_, i) => i + 1));
  assert.equal(S.MOCK_APERTURE_START, 1n << 24n);
  assert.equal(S.MOCK_APERTURE_LAST, (1n << 31n) - 1n);
  assert.deepEqual([S.MOCK_FLAGS_ACCESS_WRITE, S.MOCK_FLAGS_ACCESS_SYZ], [1, 1 << 16]);
  assert.deepEqual([S.MOCK_ACCESS_RW_WRITE, S.MOCK_ACCESS_RW_SLOW_PATH], [1, 4]);
  assert.equal(S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, 1);
  assert.deepEqual([S.MOCK_FLAGS_DEVICE_NO_DIRTY, S.MOCK_FLAGS_DEVICE_HUGE_IOVA], [1, 2]);
  assert.deepEqual([S.MOCK_NESTED_DOMAIN_IOTLB_ID_MAX, S.MOCK_NESTED_DOMAIN_IOTLB_NUM], [3, 4]);
  assert.deepEqual([S.IOMMU_HW_INFO_TYPE_SELFTEST, S.IOMMU_HW_INFO_SELFTEST_REGVAL], [0xfeedbeef, 0xdeadbeef]);
  assert.deepEqual([S.IOMMU_HWPT_DATA_SELFTEST, S.IOMMU_TEST_IOTLB_DEFAULT], [0xdead, 0xbadbeef]);
  assert.deepEqual([S.IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, S.IOMMU_TEST_INVALIDATE_FLAG_ALL], [0xdeadbeef, 1]);
});

test("B MOCK_DOMAIN_FLAGS: a device flag the kernel does not know is EINVAL and leaves no object or ID; in 6.12 that includes PASID (1<<2) (oracle probe-audit A1)", () => {
  const e = env();
  const next = nextId(e.ctx);
  for (const flags of [1 << 3, 1 << 31, 0xffffffff]) failsCleanly(e, "EINVAL", () => mockDomain(e.ctx, e.ioas, flags), `dev_flags ${flags}`);
  // the 6.12 profile: MOCK_FLAGS_DEVICE_PASID is [newer than 6.12]
  const ctx612 = S.openIommufd(e.host, e.p, { profile: "6.12" });
  const e612 = { ...e, ctx: ctx612, ioas: ctx612.ioasAlloc({ flags: 0 }).out_ioas_id as number };
  failsCleanly(e612, "EINVAL", () => mockDomain(e612.ctx, e612.ioas, S.MOCK_FLAGS_DEVICE_PASID), "PASID on 6.12");
  assert.equal(nextId(e612.ctx), 2);
  assert.equal(nextId(e.ctx), next);
  // the newest uAPI (the default profile) knows the PASID-capable mock device (MOCK_PASID_WIDTH 20)
  const md = mockDomain(e.ctx, e.ioas, S.MOCK_FLAGS_DEVICE_PASID);
  assert.equal(md.stdev, next);
  assert.equal(e.ctx.getHwInfo({ flags: 0, dev_id: md.idev, data_len: 0, data_uptr: 0n }).out_max_pasid_log2, S.MOCK_PASID_WIDTH);
});
