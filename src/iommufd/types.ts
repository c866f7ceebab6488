/**
 * The iommufd uAPI structs as plain typed objects (field names as in <linux/iommufd.h>).
 * u64 fields are bigint (the uAPI boundary), u32/u16/u8 fields are numbers; user pointers are
 * bigint addresses in the calling process. Each ioctl method takes its struct and returns it
 * with the output fields filled in.
 */
export interface IommuDestroy { id: number }
export interface IommuIoasAlloc { flags: number; out_ioas_id?: number }
export interface IommuIovaRange { start: bigint; last: bigint }
export interface IommuIoasIovaRanges {
  ioas_id: number;
  num_iovas: number;
  __reserved?: number;
  allowed_iovas: bigint;
  out_iova_alignment?: bigint;
}
export interface IommuIoasAllowIovas { ioas_id: number; num_iovas: number; __reserved?: number; allowed_iovas: bigint }
export interface IommuIoasMap { flags: number; ioas_id: number; __reserved?: number; user_va: bigint; length: bigint; iova: bigint }
export interface IommuIoasMapFile { flags: number; ioas_id: number; fd: number; start: bigint; length: bigint; iova: bigint }
export interface IommuIoasCopy { flags: number; dst_ioas_id: number; src_ioas_id: number; length: bigint; dst_iova: bigint; src_iova: bigint }
export interface IommuIoasUnmap { ioas_id: number; iova: bigint; length: bigint }
export interface IommuIoasChangeProcess { __reserved?: number }
export interface IommuOption { option_id: number; op: number; __reserved?: number; object_id: number; val64: bigint }
export interface IommuVfioIoas { ioas_id: number; op: number; __reserved?: number }
export interface IommuHwptAlloc {
  flags: number;
  dev_id: number;
  pt_id: number;
  out_hwpt_id?: number;
  __reserved?: number;
  data_type: number;
  data_len: number;
  data_uptr: bigint;
  fault_id?: number;
  __reserved2?: number;
}
export interface IommuHwInfo {
  flags: number;
  dev_id: number;
  data_len: number;
  data_uptr: bigint;
  /** in: in_data_type when IOMMU_HW_INFO_FLAG_INPUT_TYPE; out: out_data_type */
  out_data_type?: number;
  in_data_type?: number;
  out_max_pasid_log2?: number;
  __reserved?: [number, number, number];
  out_capabilities?: bigint;
}
export interface IommuHwptSetDirtyTracking { flags: number; hwpt_id: number; __reserved?: number }
export interface IommuHwptGetDirtyBitmap {
  hwpt_id: number;
  flags: number;
  __reserved?: number;
  iova: bigint;
  length: bigint;
  page_size: bigint;
  data: bigint;
}
export interface IommuHwptInvalidate {
  hwpt_id: number;
  data_uptr: bigint;
  data_type: number;
  entry_len: number;
  entry_num: number;
  __reserved?: number;
}
export interface IommuFaultAlloc { flags: number; out_fault_id?: number; out_fault_fd?: number }
/** IOMMU_VIOMMU_ALLOC [newer than 6.12] */
export interface IommuViommuAlloc {
  flags: number;
  type: number;
  dev_id: number;
  hwpt_id: number;
  out_viommu_id?: number;
  data_len: number;
  __reserved?: number;
  /** Driver data (in/out), e.g. struct iommu_viommu_selftest. */
  data_uptr: bigint;
}
/** IOMMU_VDEVICE_ALLOC [newer than 6.12] */
export interface IommuVdeviceAlloc { viommu_id: number; dev_id: number; out_vdevice_id?: number; virt_id: bigint }
/** IOMMU_VEVENTQ_ALLOC [newer than 6.12] */
export interface IommuVeventqAlloc {
  flags: number;
  viommu_id: number;
  type: number;
  veventq_depth: number;
  out_veventq_id?: number;
  out_veventq_fd?: number;
  __reserved?: number;
}

// enums
export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;
export const IOMMU_OPTION_RLIMIT_MODE = 0;
export const IOMMU_OPTION_HUGE_PAGES = 1;
export const IOMMU_OPTION_OP_SET = 0;
export const IOMMU_OPTION_OP_GET = 1;
export const IOMMU_VFIO_IOAS_GET = 0;
export const IOMMU_VFIO_IOAS_SET = 1;
export const IOMMU_VFIO_IOAS_CLEAR = 2;
export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
export const IOMMU_HWPT_ALLOC_PASID = 1 << 3;
export const IOMMU_HWPT_DATA_NONE = 0;
export const IOMMU_HWPT_DATA_VTD_S1 = 1;
export const IOMMU_HWPT_DATA_ARM_SMMUV3 = 2;
export const IOMMU_HW_INFO_TYPE_NONE = 0;
export const IOMMU_HW_INFO_TYPE_DEFAULT = 0;
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
export const IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2;
export const IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0;
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1n << 0n;
export const IOMMU_HW_CAP_PCI_PASID_EXEC = 1n << 1n;
export const IOMMU_HW_CAP_PCI_PASID_PRIV = 1n << 2n;
export const IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;
export const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;
/** IOMMU_NO_PASID: requests without a PASID (the RID's attachment). */
export const IOMMU_NO_PASID = 0;
export const IOMMU_VIOMMU_TYPE_DEFAULT = 0;
export const IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV = 2;
export const IOMMU_VEVENTQ_TYPE_DEFAULT = 0;
export const IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = 2;
/** struct iommufd_vevent_header flags */
export const IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0;
/** eventq.c VEVENTQ_MAX_DEPTH: the largest veventq_depth accepted. */
export const VEVENTQ_MAX_DEPTH = 1 << 19;
/** sizeof(struct iommufd_vevent_header) */
export const VEVENT_HEADER_SIZE = 8;

/** Object kinds of the per-context ID space. */
export const enum ObjType {
  IOAS = "ioas",
  HWPT_PAGING = "hwpt_paging",
  HWPT_NESTED = "hwpt_nested",
  DEVICE = "device",
  ACCESS = "access",
  FAULT = "fault",
  SELFTEST = "selftest",
  /** [newer than 6.12] */
  VIOMMU = "viommu",
  VDEVICE = "vdevice",
  VEVENTQ = "veventq",
}
