/**
 * Enums and constants of the uAPI, as one table the C header generator renders and the tests check
 * against C. Values follow the newest iommufd uAPI, the selftest header and <linux/vfio.h>; `newer`
 * marks names Linux 6.12 does not have. Rendering: "enum" groups become C enums (named when `tag`
 * is set), "define" groups become #defines (used for values above INT_MAX, as the kernel does).
 */

export type HeaderName = "iommufd" | "selftest" | "vfio";

/** [name, value, doc, options]; `expr` is the C spelling when the plain number would read worse. */
export type ConstDecl = readonly [name: string, value: number, doc: string, opts?: { expr?: string; newer?: boolean }];

export interface ConstGroup {
  readonly header: HeaderName;
  readonly kind: "enum" | "define";
  /** C enum tag (null: anonymous enum). */
  readonly tag: string | null;
  readonly doc: string;
  /** Render single-bit values as `1 << n`. */
  readonly bits?: boolean;
  /** Render values in hex. */
  readonly hex?: boolean;
  readonly values: readonly ConstDecl[];
  readonly newer?: boolean;
  /**
   * Also emitted when the kernel's own (6.12) iommufd_test.h includes the generated header as
   * <linux/iommufd.h>: the selftest names that header lacks but the 6.12.117 selftest uses.
   */
  readonly testCompat?: boolean;
}

export const CONST_GROUPS: readonly ConstGroup[] = [
  // ------------------------------------------------------------------ iommufd
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommufd_ioas_map_flags",
    doc: "Flags of IOMMU_IOAS_MAP, IOMMU_IOAS_MAP_FILE and IOMMU_IOAS_COPY.",
    bits: true,
    values: [
      ["IOMMU_IOAS_MAP_FIXED_IOVA", 1 << 0, "map at the given iova instead of one the kernel picks"],
      ["IOMMU_IOAS_MAP_WRITEABLE", 1 << 1, "devices may write"],
      ["IOMMU_IOAS_MAP_READABLE", 1 << 2, "devices may read"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommufd_option",
    doc: "IOMMU_OPTION option_id values.",
    values: [
      ["IOMMU_OPTION_RLIMIT_MODE", 0, "global: 0 = per-user RLIMIT_MEMLOCK accounting, 1 = per-process"],
      ["IOMMU_OPTION_HUGE_PAGES", 1, "per IOAS: 1 = contiguous pages may use large IOPTEs, 0 = PAGE_SIZE only"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommufd_option_ops",
    doc: "IOMMU_OPTION op values.",
    values: [
      ["IOMMU_OPTION_OP_SET", 0, "set val64"],
      ["IOMMU_OPTION_OP_GET", 1, "read into val64"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommufd_vfio_ioas_op",
    doc: "IOMMU_VFIO_IOAS op values.",
    values: [
      ["IOMMU_VFIO_IOAS_GET", 0, "read the compat IOAS ID"],
      ["IOMMU_VFIO_IOAS_SET", 1, "select ioas_id as the compat IOAS"],
      ["IOMMU_VFIO_IOAS_CLEAR", 2, "disable VFIO compatibility"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommufd_hwpt_alloc_flags",
    doc: "IOMMU_HWPT_ALLOC flags.",
    bits: true,
    values: [
      ["IOMMU_HWPT_ALLOC_NEST_PARENT", 1 << 0, "usable as the parent of nested HWPTs"],
      ["IOMMU_HWPT_ALLOC_DIRTY_TRACKING", 1 << 1, "dirty tracking capable; only dirty-capable devices may attach"],
      ["IOMMU_HWPT_FAULT_ID_VALID", 1 << 2, "fault_id is valid"],
      ["IOMMU_HWPT_ALLOC_PASID", 1 << 3, "attachable to PASIDs", { newer: true }],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_hwpt_vtd_s1_flags",
    doc: "struct iommu_hwpt_vtd_s1 flags.",
    bits: true,
    values: [
      ["IOMMU_VTD_S1_SRE", 1 << 0, "supervisor requests"],
      ["IOMMU_VTD_S1_EAFE", 1 << 1, "extended access flag"],
      ["IOMMU_VTD_S1_WPE", 1 << 2, "write protect"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_hwpt_data_type",
    doc: "IOMMU_HWPT_ALLOC data_type values.",
    values: [
      ["IOMMU_HWPT_DATA_NONE", 0, "no driver data"],
      ["IOMMU_HWPT_DATA_VTD_S1", 1, "struct iommu_hwpt_vtd_s1"],
      ["IOMMU_HWPT_DATA_ARM_SMMUV3", 2, "struct iommu_hwpt_arm_smmuv3", { newer: true }],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_hw_info_vtd_flags",
    doc: "struct iommu_hw_info_vtd flags.",
    bits: true,
    values: [["IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17", 1 << 0, "read-only mappings are not allowed on nesting parents"]],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_hw_info_type",
    doc: "IOMMU_GET_HW_INFO data types.",
    values: [
      ["IOMMU_HW_INFO_TYPE_NONE", 0, "the driver reports no data"],
      ["IOMMU_HW_INFO_TYPE_DEFAULT", 0, "input: whatever the driver reports by default", { newer: true }],
      ["IOMMU_HW_INFO_TYPE_INTEL_VTD", 1, "struct iommu_hw_info_vtd"],
      ["IOMMU_HW_INFO_TYPE_ARM_SMMUV3", 2, "struct iommu_hw_info_arm_smmuv3", { newer: true }],
      ["IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV", 3, "struct iommu_hw_info_tegra241_cmdqv", { newer: true }],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommufd_hw_capabilities",
    doc: "IOMMU_GET_HW_INFO out_capabilities bits.",
    bits: true,
    values: [
      ["IOMMU_HW_CAP_DIRTY_TRACKING", 1 << 0, "IOMMU_HWPT_SET_DIRTY_TRACKING / GET_DIRTY_BITMAP work"],
      ["IOMMU_HW_CAP_PCI_PASID_EXEC", 1 << 1, "PASID execute permission (with out_max_pasid_log2 > 0)"],
      ["IOMMU_HW_CAP_PCI_PASID_PRIV", 1 << 2, "PASID privileged mode (with out_max_pasid_log2 > 0)"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommufd_hw_info_flags",
    doc: "IOMMU_GET_HW_INFO flags.",
    bits: true,
    newer: true,
    values: [["IOMMU_HW_INFO_FLAG_INPUT_TYPE", 1 << 0, "in_data_type names the data type wanted", { newer: true }]],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommufd_hwpt_set_dirty_tracking_flags",
    doc: "IOMMU_HWPT_SET_DIRTY_TRACKING flags.",
    values: [["IOMMU_HWPT_DIRTY_TRACKING_ENABLE", 1, "enable (clear: disable)"]],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommufd_hwpt_get_dirty_bitmap_flags",
    doc: "IOMMU_HWPT_GET_DIRTY_BITMAP flags.",
    values: [["IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR", 1, "read without clearing the dirty state"]],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_hwpt_invalidate_data_type",
    doc: "IOMMU_HWPT_INVALIDATE data_type values.",
    values: [
      ["IOMMU_HWPT_INVALIDATE_DATA_VTD_S1", 0, "struct iommu_hwpt_vtd_s1_invalidate"],
      ["IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3", 1, "struct iommu_viommu_arm_smmuv3_invalidate", { newer: true }],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_hwpt_vtd_s1_invalidate_flags",
    doc: "struct iommu_hwpt_vtd_s1_invalidate flags.",
    bits: true,
    values: [["IOMMU_VTD_INV_FLAGS_LEAF", 1 << 0, "leaf entries only"]],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_hwpt_pgfault_flags",
    doc: "struct iommu_hwpt_pgfault flags.",
    bits: true,
    values: [
      ["IOMMU_PGFAULT_FLAGS_PASID_VALID", 1 << 0, "pasid is valid"],
      ["IOMMU_PGFAULT_FLAGS_LAST_PAGE", 1 << 1, "last fault of its group"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_hwpt_pgfault_perm",
    doc: "struct iommu_hwpt_pgfault perm bits.",
    bits: true,
    values: [
      ["IOMMU_PGFAULT_PERM_READ", 1 << 0, "read"],
      ["IOMMU_PGFAULT_PERM_WRITE", 1 << 1, "write"],
      ["IOMMU_PGFAULT_PERM_EXEC", 1 << 2, "execute requested"],
      ["IOMMU_PGFAULT_PERM_PRIV", 1 << 3, "privileged mode requested"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommufd_page_response_code",
    doc: "struct iommu_hwpt_page_response code values.",
    values: [
      ["IOMMUFD_PAGE_RESP_SUCCESS", 0, "handled: retry the access"],
      ["IOMMUFD_PAGE_RESP_INVALID", 1, "not handled: do not retry"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_viommu_type",
    doc: "IOMMU_VIOMMU_ALLOC type values.",
    newer: true,
    values: [
      ["IOMMU_VIOMMU_TYPE_DEFAULT", 0, "reserved"],
      ["IOMMU_VIOMMU_TYPE_ARM_SMMUV3", 1, "ARM SMMUv3"],
      ["IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV", 2, "ARM SMMUv3 with Tegra241 CMDQV"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_veventq_flag",
    doc: "struct iommufd_vevent_header flags.",
    bits: true,
    newer: true,
    values: [["IOMMU_VEVENTQ_FLAG_LOST_EVENTS", 1 << 0, "events were lost", { expr: "1U << 0" }]],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_veventq_type",
    doc: "IOMMU_VEVENTQ_ALLOC type values.",
    newer: true,
    values: [
      ["IOMMU_VEVENTQ_TYPE_DEFAULT", 0, "reserved"],
      ["IOMMU_VEVENTQ_TYPE_ARM_SMMUV3", 1, "struct iommu_vevent_arm_smmuv3"],
      ["IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV", 2, "struct iommu_vevent_tegra241_cmdqv"],
    ],
  },
  {
    header: "iommufd",
    kind: "enum",
    tag: "iommu_hw_queue_type",
    doc: "IOMMU_HW_QUEUE_ALLOC type values.",
    newer: true,
    values: [
      ["IOMMU_HW_QUEUE_TYPE_DEFAULT", 0, "reserved"],
      ["IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV", 1, "Tegra241 virtual command queue"],
    ],
  },

  // ------------------------------------------------------------------ selftest
  {
    header: "selftest",
    kind: "enum",
    tag: null,
    doc: "IOMMU_TEST_CMD op values.",
    values: [
      ["IOMMU_TEST_OP_ADD_RESERVED", 1, "add_reserved"],
      ["IOMMU_TEST_OP_MOCK_DOMAIN", 2, "mock_domain"],
      ["IOMMU_TEST_OP_MD_CHECK_MAP", 3, "check_map"],
      ["IOMMU_TEST_OP_MD_CHECK_REFS", 4, "check_refs"],
      ["IOMMU_TEST_OP_CREATE_ACCESS", 5, "create_access"],
      ["IOMMU_TEST_OP_DESTROY_ACCESS_PAGES", 6, "destroy_access_pages"],
      ["IOMMU_TEST_OP_ACCESS_PAGES", 7, "access_pages"],
      ["IOMMU_TEST_OP_ACCESS_RW", 8, "access_rw"],
      ["IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT", 9, "memory_limit"],
      ["IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE", 10, "mock_domain_replace"],
      ["IOMMU_TEST_OP_ACCESS_REPLACE_IOAS", 11, "access_replace_ioas"],
      ["IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS", 12, "mock_domain_flags"],
      ["IOMMU_TEST_OP_DIRTY", 13, "dirty"],
      ["IOMMU_TEST_OP_MD_CHECK_IOTLB", 14, "check_iotlb"],
      ["IOMMU_TEST_OP_TRIGGER_IOPF", 15, "trigger_iopf"],
      ["IOMMU_TEST_OP_DEV_CHECK_CACHE", 16, "check_dev_cache", { newer: true }],
      ["IOMMU_TEST_OP_TRIGGER_VEVENT", 17, "trigger_vevent", { newer: true }],
      ["IOMMU_TEST_OP_PASID_ATTACH", 18, "pasid_attach", { newer: true }],
      ["IOMMU_TEST_OP_PASID_REPLACE", 19, "pasid_replace", { newer: true }],
      ["IOMMU_TEST_OP_PASID_DETACH", 20, "pasid_detach", { newer: true }],
      ["IOMMU_TEST_OP_PASID_CHECK_HWPT", 21, "pasid_check", { newer: true }],
    ],
  },
  {
    header: "selftest",
    kind: "enum",
    tag: null,
    doc: "Aperture of the mock IOMMU domains.",
    values: [
      ["MOCK_APERTURE_START", 1 << 24, "first usable IOVA", { expr: "1UL << 24" }],
      ["MOCK_APERTURE_LAST", 2 ** 31 - 1, "last usable IOVA", { expr: "(1UL << 31) - 1" }],
    ],
  },
  {
    header: "selftest",
    kind: "enum",
    tag: null,
    doc: "access_pages flags.",
    bits: true,
    values: [
      ["MOCK_FLAGS_ACCESS_WRITE", 1 << 0, "pin for writing"],
      ["MOCK_FLAGS_ACCESS_SYZ", 1 << 16, "fuzzer mode"],
    ],
  },
  {
    header: "selftest",
    kind: "enum",
    tag: null,
    doc: "access_rw flags.",
    bits: true,
    values: [
      ["MOCK_ACCESS_RW_WRITE", 1 << 0, "copy from uptr into IOVA space"],
      ["MOCK_ACCESS_RW_SLOW_PATH", 1 << 2, "use the slow path"],
    ],
  },
  {
    header: "selftest",
    kind: "enum",
    tag: null,
    doc: "create_access flags.",
    bits: true,
    values: [["MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES", 1 << 0, "the access pins pages"]],
  },
  {
    header: "selftest",
    kind: "enum",
    tag: null,
    doc: "mock_domain_flags dev_flags.",
    bits: true,
    values: [
      ["MOCK_FLAGS_DEVICE_NO_DIRTY", 1 << 0, "no dirty tracking"],
      ["MOCK_FLAGS_DEVICE_HUGE_IOVA", 1 << 1, "its domains use 1 MiB IOPTEs"],
    ],
  },
  {
    header: "selftest",
    kind: "enum",
    tag: null,
    doc: "mock_domain_flags dev_flags the 6.12.117 selftest already uses.",
    bits: true,
    newer: true,
    testCompat: true,
    values: [["MOCK_FLAGS_DEVICE_PASID", 1 << 2, "PASID capable (MOCK_PASID_WIDTH bits)", { newer: true }]],
  },
  {
    header: "selftest",
    kind: "define",
    tag: null,
    doc: "PASID width of PASID-capable mock devices, which the 6.12.117 selftest already uses.",
    newer: true,
    testCompat: true,
    values: [["MOCK_PASID_WIDTH", 20, "bits", { newer: true }]],
  },
  {
    header: "selftest",
    kind: "enum",
    tag: null,
    doc: "Mock nested domain IOTLB slots.",
    values: [
      ["MOCK_NESTED_DOMAIN_IOTLB_ID_MAX", 3, "highest slot"],
      ["MOCK_NESTED_DOMAIN_IOTLB_NUM", 4, "slots"],
    ],
  },
  {
    header: "selftest",
    kind: "enum",
    tag: null,
    doc: "Mock device cache slots.",
    newer: true,
    values: [
      ["MOCK_DEV_CACHE_ID_MAX", 3, "highest slot", { newer: true }],
      ["MOCK_DEV_CACHE_NUM", 4, "slots", { newer: true }],
    ],
  },
  {
    header: "selftest",
    kind: "define",
    tag: null,
    doc: "Selftest values.",
    hex: true,
    values: [
      ["IOMMU_TEST_PASID_RESERVED", 1024, "PASID whose nested replace is made to fail", { newer: true, expr: "1024" }],
      ["IOMMU_HW_INFO_TYPE_SELFTEST", 0xfeedbeef, "out_data_type of the mock IOMMU"],
      ["IOMMU_HW_INFO_SELFTEST_REGVAL", 0xdeadbeef, "struct iommu_test_hw_info test_reg"],
      ["IOMMU_HWPT_DATA_SELFTEST", 0xdead, "struct iommu_hwpt_selftest"],
      ["IOMMU_TEST_IOTLB_DEFAULT", 0xbadbeef, "initial mock IOTLB value"],
      ["IOMMU_TEST_DEV_CACHE_DEFAULT", 0xbaddad, "initial mock device cache value", { newer: true }],
      ["IOMMU_HWPT_INVALIDATE_DATA_SELFTEST", 0xdeadbeef, "struct iommu_hwpt_invalidate_selftest"],
      ["IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID", 0xdadbeef, "a data type the mock refuses"],
      ["IOMMU_TEST_INVALIDATE_FLAG_ALL", 1, "invalidate every slot", { expr: "(1 << 0)" }],
      ["IOMMU_VIOMMU_TYPE_SELFTEST", 0xdeadbeef, "mock vIOMMU type", { newer: true }],
      ["IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST", 0xdeadbeef, "struct iommu_viommu_invalidate_selftest", { newer: true }],
      ["IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID", 0xdadbeef, "a data type the mock vIOMMU refuses", { newer: true }],
      ["IOMMU_VEVENTQ_TYPE_SELFTEST", 0xbeefbeef, "struct iommu_viommu_event_selftest", { newer: true }],
      ["IOMMU_HW_QUEUE_TYPE_SELFTEST", 0xdeadbeef, "mock HW queue type", { newer: true }],
      ["IOMMU_TEST_HW_QUEUE_MAX", 2, "mock HW queues per vIOMMU", { newer: true, expr: "2" }],
    ],
  },

  // ------------------------------------------------------------------ VFIO type1
  {
    header: "vfio",
    kind: "define",
    tag: null,
    doc: "VFIO API version and IOMMU extension / type numbers (VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU).",
    values: [
      ["VFIO_API_VERSION", 0, "VFIO_GET_API_VERSION result"],
      ["VFIO_TYPE1_IOMMU", 1, "type1"],
      ["VFIO_SPAPR_TCE_IOMMU", 2, "sPAPR TCE"],
      ["VFIO_TYPE1v2_IOMMU", 3, "type1 v2"],
      ["VFIO_DMA_CC_IOMMU", 4, "cache coherent DMA"],
      ["VFIO_EEH", 5, "EEH"],
      ["VFIO_TYPE1_NESTING_IOMMU", 6, "type1 nesting (unsupported)"],
      ["VFIO_SPAPR_TCE_v2_IOMMU", 7, "sPAPR TCE v2"],
      ["VFIO_NOIOMMU_IOMMU", 8, "no-IOMMU mode"],
      ["VFIO_UNMAP_ALL", 9, "VFIO_DMA_UNMAP_FLAG_ALL supported"],
      ["VFIO_UPDATE_VADDR", 10, "VADDR flags supported"],
    ],
  },
  {
    header: "vfio",
    kind: "define",
    tag: null,
    doc: "struct vfio_iommu_type1_info flags and capability IDs.",
    values: [
      ["VFIO_IOMMU_INFO_PGSIZES", 1, "iova_pgsizes is valid", { expr: "(1 << 0)" }],
      ["VFIO_IOMMU_INFO_CAPS", 2, "cap_offset is valid", { expr: "(1 << 1)" }],
      ["VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE", 1, "struct vfio_iommu_type1_info_cap_iova_range"],
      ["VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL", 3, "struct vfio_iommu_type1_info_dma_avail"],
    ],
  },
  {
    header: "vfio",
    kind: "define",
    tag: null,
    doc: "struct vfio_iommu_type1_dma_map / dma_unmap flags.",
    values: [
      ["VFIO_DMA_MAP_FLAG_READ", 1, "readable by devices", { expr: "(1 << 0)" }],
      ["VFIO_DMA_MAP_FLAG_WRITE", 2, "writable by devices", { expr: "(1 << 1)" }],
      ["VFIO_DMA_MAP_FLAG_VADDR", 4, "update the vaddr of an existing mapping", { expr: "(1 << 2)" }],
      ["VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP", 1, "return the dirty bitmap", { expr: "(1 << 0)" }],
      ["VFIO_DMA_UNMAP_FLAG_ALL", 2, "unmap everything", { expr: "(1 << 1)" }],
      ["VFIO_DMA_UNMAP_FLAG_VADDR", 4, "invalidate the vaddr", { expr: "(1 << 2)" }],
    ],
  },
];

/** Every constant by name (the value of IOMMU_HW_INFO_TYPE_DEFAULT is that of NONE, 0). */
export const CONSTANTS: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>();
  for (const g of CONST_GROUPS)
    for (const [name, v] of g.values) {
      if (m.has(name)) throw new Error(`uapi constants: ${name} declared twice`);
      m.set(name, v);
    }
  return m;
})();
