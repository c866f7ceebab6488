/**
 * The one table of uAPI struct definitions: the newest iommufd uAPI (<linux/iommufd.h>), the
 * selftest's IOMMU_TEST_CMD and driver-data structs (iommufd_test.h) and the VFIO type1 structs the
 * compat layer reads and writes (<linux/vfio.h>). Offsets, sizes and minimum sizes are computed
 * from the declarations by C layout rules (layout.ts), never typed in; the codecs, the ioctl
 * dispatcher (ioctl.ts) and the generated C header (c-header.ts) all read this table.
 *
 * Written from the facts in ../shared/reference/iommufd-uapi.md (sections A, B, A.6); docs are
 * this project's own words. `newer` marks what Linux 6.12 does not have.
 */
import { decodeStruct, encodeStruct, encodeStructInto, layoutStruct, meaningfulMask, type StructDecl, type StructLayout, type UObject } from "./layout.js";

export type { Field, Item, ScalarType, StructLayout, UObject, UValue, VariantLayout } from "./layout.js";
export { meaningfulMask } from "./layout.js";

const DECLS: readonly StructDecl[] = [
  // ------------------------------------------------------------------ object lifetime and IOAS
  {
    name: "iommu_destroy",
    header: "iommufd",
    doc: "IOMMU_DESTROY: destroy any destroyable object by its ID.",
    minField: "id",
    fields: [
      ["size", "u32", "sizeof(struct iommu_destroy)"],
      ["id", "u32", "ID of the object to destroy"],
    ],
  },
  {
    name: "iommu_ioas_alloc",
    header: "iommufd",
    doc: "IOMMU_IOAS_ALLOC: create an IO address space.",
    minField: "out_ioas_id",
    fields: [
      ["size", "u32", "sizeof(struct iommu_ioas_alloc)"],
      ["flags", "u32", "must be 0"],
      ["out_ioas_id", "u32", "out: ID of the new IOAS"],
    ],
  },
  {
    name: "iommu_iova_range",
    header: "iommufd",
    doc: "One IOVA interval; `last` is inclusive.",
    fields: [
      ["start", "u64", "first IOVA"],
      ["last", "u64", "last IOVA (inclusive)"],
    ],
  },
  {
    name: "iommu_ioas_iova_ranges",
    header: "iommufd",
    doc: "IOMMU_IOAS_IOVA_RANGES: list the IOVA ranges usable for mapping; EMSGSIZE (with the needed\ncount in num_iovas) when the array is too short.",
    minField: "out_iova_alignment",
    fields: [
      ["size", "u32", "sizeof(struct iommu_ioas_iova_ranges)"],
      ["ioas_id", "u32", "IOAS to query"],
      ["num_iovas", "u32", "in: capacity of allowed_iovas; out: number of ranges"],
      ["__reserved", "u32", "must be 0"],
      ["allowed_iovas", "u64", "user pointer to struct iommu_iova_range[num_iovas]"],
      ["out_iova_alignment", "u64", "out: alignment IOVA and length must honour"],
    ],
  },
  {
    name: "iommu_ioas_allow_iovas",
    header: "iommufd",
    doc: "IOMMU_IOAS_ALLOW_IOVAS: replace the list of IOVA ranges that must stay available.",
    minField: "allowed_iovas",
    fields: [
      ["size", "u32", "sizeof(struct iommu_ioas_allow_iovas)"],
      ["ioas_id", "u32", "IOAS to change"],
      ["num_iovas", "u32", "number of entries in allowed_iovas"],
      ["__reserved", "u32", "must be 0"],
      ["allowed_iovas", "u64", "user pointer to struct iommu_iova_range[num_iovas]"],
    ],
  },
  {
    name: "iommu_ioas_map",
    header: "iommufd",
    doc: "IOMMU_IOAS_MAP: map user memory into an IOAS, at a given IOVA (FIXED_IOVA) or one the\nkernel picks.",
    minField: "iova",
    fields: [
      ["size", "u32", "sizeof(struct iommu_ioas_map)"],
      ["flags", "u32", "enum iommufd_ioas_map_flags"],
      ["ioas_id", "u32", "IOAS to map into"],
      ["__reserved", "u32", "must be 0"],
      ["user_va", "u64", "start of the user memory"],
      ["length", "u64", "bytes to map"],
      ["iova", "u64", "in with FIXED_IOVA, else out: where the mapping was placed"],
    ],
  },
  {
    name: "iommu_ioas_map_file",
    header: "iommufd",
    newer: true,
    doc: "IOMMU_IOAS_MAP_FILE: like IOMMU_IOAS_MAP, for a range of a memfd.",
    minField: "iova",
    fields: [
      ["size", "u32", "sizeof(struct iommu_ioas_map_file)"],
      ["flags", "u32", "enum iommufd_ioas_map_flags"],
      ["ioas_id", "u32", "IOAS to map into"],
      ["fd", "s32", "the memfd"],
      ["start", "u64", "byte offset in the file"],
      ["length", "u64", "bytes to map"],
      ["iova", "u64", "in with FIXED_IOVA, else out"],
    ],
  },
  {
    name: "iommu_ioas_copy",
    header: "iommufd",
    doc: "IOMMU_IOAS_COPY: map pages already mapped in one IOAS into another (or the same) IOAS\nwithout pinning them again.",
    minField: "src_iova",
    fields: [
      ["size", "u32", "sizeof(struct iommu_ioas_copy)"],
      ["flags", "u32", "enum iommufd_ioas_map_flags"],
      ["dst_ioas_id", "u32", "destination IOAS"],
      ["src_ioas_id", "u32", "source IOAS"],
      ["length", "u64", "bytes to copy"],
      ["dst_iova", "u64", "in with FIXED_IOVA, else out"],
      ["src_iova", "u64", "source IOVA"],
    ],
  },
  {
    name: "iommu_ioas_unmap",
    header: "iommufd",
    doc: "IOMMU_IOAS_UNMAP: unmap every mapping inside [iova, iova + length); iova 0 with length\nUINT64_MAX unmaps everything.",
    minField: "length",
    fields: [
      ["size", "u32", "sizeof(struct iommu_ioas_unmap)"],
      ["ioas_id", "u32", "IOAS to change"],
      ["iova", "u64", "start of the range"],
      ["length", "u64", "in: bytes; out: bytes unmapped"],
    ],
  },
  {
    name: "iommu_ioas_change_process",
    header: "iommufd",
    newer: true,
    doc: "IOMMU_IOAS_CHANGE_PROCESS: charge the pinned pages of every (file-backed) mapping to the\ncalling process.",
    minField: "__reserved",
    fields: [
      ["size", "u32", "sizeof(struct iommu_ioas_change_process)"],
      ["__reserved", "u32", "must be 0"],
    ],
  },
  {
    name: "iommu_option",
    header: "iommufd",
    doc: "IOMMU_OPTION: get or set a global or per-object option.",
    minField: "val64",
    fields: [
      ["size", "u32", "sizeof(struct iommu_option)"],
      ["option_id", "u32", "enum iommufd_option"],
      ["op", "u16", "enum iommufd_option_ops"],
      ["__reserved", "u16", "must be 0"],
      ["object_id", "u32", "object the option applies to, 0 for global options"],
      ["val64", "u64", "value to set, or the value read"],
    ],
  },
  {
    name: "iommu_vfio_ioas",
    header: "iommufd",
    doc: "IOMMU_VFIO_IOAS: get, set or clear the IOAS used by the VFIO type1 compatibility ioctls.",
    minField: "__reserved",
    fields: [
      ["size", "u32", "sizeof(struct iommu_vfio_ioas)"],
      ["ioas_id", "u32", "in for SET, out for GET"],
      ["op", "u16", "enum iommufd_vfio_ioas_op"],
      ["__reserved", "u16", "must be 0"],
    ],
  },

  // ------------------------------------------------------------------ HW page tables
  {
    name: "iommu_hwpt_vtd_s1",
    header: "iommufd",
    doc: "Intel VT-d stage-1 page table of a nested HWPT (IOMMU_HWPT_DATA_VTD_S1).",
    minField: "__reserved",
    fields: [
      ["flags", "u64", "enum iommu_hwpt_vtd_s1_flags"],
      ["pgtbl_addr", "u64", "guest address of the stage-1 table"],
      ["addr_width", "u32", "input address width of the stage-1 table"],
      ["__reserved", "u32", "must be 0"],
    ],
  },
  {
    name: "iommu_hwpt_arm_smmuv3",
    header: "iommufd",
    newer: true,
    doc: "ARM SMMUv3 nested stream table entry (IOMMU_HWPT_DATA_ARM_SMMUV3): the first two\nlittle-endian double words of the guest's STE.",
    fields: [["ste", "le64[2]", "guest STE words 0 and 1"]],
  },
  {
    name: "iommu_hwpt_alloc",
    header: "iommufd",
    doc: "IOMMU_HWPT_ALLOC: allocate a HW page table: kernel-managed from an IOAS, or user-managed\n(nested) on a parent HWPT or a vIOMMU with driver data.",
    minField: "__reserved",
    fields: [
      ["size", "u32", "sizeof(struct iommu_hwpt_alloc)"],
      ["flags", "u32", "enum iommufd_hwpt_alloc_flags"],
      ["dev_id", "u32", "device the HWPT is for"],
      ["pt_id", "u32", "IOAS, parent HWPT or vIOMMU"],
      ["out_hwpt_id", "u32", "out: ID of the new HWPT"],
      ["__reserved", "u32", "must be 0"],
      ["data_type", "u32", "enum iommu_hwpt_data_type"],
      ["data_len", "u32", "bytes at data_uptr"],
      ["data_uptr", "u64", "user pointer to the driver data"],
      ["fault_id", "u32", "fault queue, with IOMMU_HWPT_FAULT_ID_VALID"],
      ["__reserved2", "u32", "must be 0"],
    ],
  },
  {
    name: "iommu_hw_info_vtd",
    header: "iommufd",
    doc: "Intel VT-d hardware information (IOMMU_HW_INFO_TYPE_INTEL_VTD).",
    fields: [
      ["flags", "u32", "enum iommu_hw_info_vtd_flags"],
      ["__reserved", "u32", "0"],
      ["cap_reg", "u64", "the capability register"],
      ["ecap_reg", "u64", "the extended capability register"],
    ],
  },
  {
    name: "iommu_hw_info_arm_smmuv3",
    header: "iommufd",
    newer: true,
    doc: "ARM SMMUv3 hardware information (IOMMU_HW_INFO_TYPE_ARM_SMMUV3).",
    fields: [
      ["flags", "u32", "0"],
      ["__reserved", "u32", "0"],
      ["idr", "u32[6]", "ID registers IDR0..IDR5"],
      ["iidr", "u32", "implementation identification register"],
      ["aidr", "u32", "architecture version register"],
    ],
  },
  {
    name: "iommu_hw_info_tegra241_cmdqv",
    header: "iommufd",
    newer: true,
    doc: "NVIDIA Tegra241 CMDQV hardware information (IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV).",
    fields: [
      ["flags", "u32", "0"],
      ["version", "u8", "CMDQV version"],
      ["log2vcmdqs", "u8", "log2 of the number of virtual command queues"],
      ["log2vsids", "u8", "log2 of the number of stream ID replacements"],
      ["__reserved", "u8", "0"],
    ],
  },
  {
    name: "iommu_hw_info",
    header: "iommufd",
    doc: "IOMMU_GET_HW_INFO: read the IOMMU-specific information and capabilities behind a device.",
    minField: "__reserved",
    fields: [
      ["size", "u32", "sizeof(struct iommu_hw_info)"],
      ["flags", "u32", "enum iommufd_hw_info_flags"],
      ["dev_id", "u32", "a bound device"],
      ["data_len", "u32", "in: buffer length; out: length of the kernel's data"],
      ["data_uptr", "u64", "user pointer to the buffer for the type-specific data"],
      {
        doc: "one u32, read as a request with IOMMU_HW_INFO_FLAG_INPUT_TYPE, written as the result",
        union: [
          ["in_data_type", "u32", "in: the enum iommu_hw_info_type wanted (with IOMMU_HW_INFO_FLAG_INPUT_TYPE)"],
          ["out_data_type", "u32", "out: the enum iommu_hw_info_type of the data"],
        ],
      },
      ["out_max_pasid_log2", "u8", "out: PASID width, 0 without PASID support"],
      ["__reserved", "u8[3]", "must be 0"],
      ["out_capabilities", "u64", "out: enum iommufd_hw_capabilities"],
    ],
  },
  {
    name: "iommu_hwpt_set_dirty_tracking",
    header: "iommufd",
    doc: "IOMMU_HWPT_SET_DIRTY_TRACKING: turn dirty tracking of a paging HWPT on or off.",
    minField: "__reserved",
    fields: [
      ["size", "u32", "sizeof(struct iommu_hwpt_set_dirty_tracking)"],
      ["flags", "u32", "enum iommufd_hwpt_set_dirty_tracking_flags"],
      ["hwpt_id", "u32", "the HWPT"],
      ["__reserved", "u32", "must be 0"],
    ],
  },
  {
    name: "iommu_hwpt_get_dirty_bitmap",
    header: "iommufd",
    doc: "IOMMU_HWPT_GET_DIRTY_BITMAP: read (and by default clear) the dirty state of an IOVA range\ninto a bitmap, one bit per page_size from iova.",
    minField: "data",
    fields: [
      ["size", "u32", "sizeof(struct iommu_hwpt_get_dirty_bitmap)"],
      ["hwpt_id", "u32", "the HWPT"],
      ["flags", "u32", "enum iommufd_hwpt_get_dirty_bitmap_flags"],
      ["__reserved", "u32", "must be 0"],
      ["iova", "u64", "IOVA of bit 0"],
      ["length", "u64", "bytes of IOVA covered"],
      ["page_size", "u64", "IOVA bytes per bit"],
      ["data", "u64", "user pointer to the bitmap (u64 words)"],
    ],
  },
  {
    name: "iommu_hwpt_vtd_s1_invalidate",
    header: "iommufd",
    doc: "One VT-d stage-1 cache invalidation request (IOMMU_HWPT_INVALIDATE_DATA_VTD_S1).",
    minField: "__reserved",
    fields: [
      ["addr", "u64", "4 KiB aligned start address"],
      ["npages", "u64", "4 KiB pages to invalidate (addr 0, npages UINT64_MAX: all)"],
      ["flags", "u32", "enum iommu_hwpt_vtd_s1_invalidate_flags"],
      ["__reserved", "u32", "must be 0"],
    ],
  },
  {
    name: "iommu_viommu_arm_smmuv3_invalidate",
    header: "iommufd",
    newer: true,
    doc: "One ARM SMMUv3 invalidation command (IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3).",
    fields: [["cmd", "le64[2]", "a 128-bit CMDQ command, little-endian"]],
  },
  {
    name: "iommu_hwpt_invalidate",
    header: "iommufd",
    doc: "IOMMU_HWPT_INVALIDATE: run an array of driver-specific cache invalidation requests on a\nnested HWPT (or a vIOMMU); entry_num reports how many were handled, also on failure.",
    minField: "__reserved",
    fields: [
      ["size", "u32", "sizeof(struct iommu_hwpt_invalidate)"],
      ["hwpt_id", "u32", "nested HWPT or vIOMMU"],
      ["data_uptr", "u64", "user pointer to the request array"],
      ["data_type", "u32", "enum iommu_hwpt_invalidate_data_type"],
      ["entry_len", "u32", "bytes per request"],
      ["entry_num", "u32", "in: number of requests; out: number handled"],
      ["__reserved", "u32", "must be 0"],
    ],
  },

  // ------------------------------------------------------------------ fault queue
  {
    name: "iommu_hwpt_pgfault",
    header: "iommufd",
    doc: "One I/O page fault as read() from a fault queue fd.",
    fields: [
      ["flags", "u32", "enum iommu_hwpt_pgfault_flags"],
      ["dev_id", "u32", "device that faulted"],
      ["pasid", "u32", "PASID, with IOMMU_PGFAULT_FLAGS_PASID_VALID"],
      ["grpid", "u32", "page request group index"],
      ["perm", "u32", "enum iommu_hwpt_pgfault_perm"],
      ["__reserved", "u32", "0"],
      ["addr", "u64", "faulting address"],
      ["length", "u32", "hint of the bytes wanted, 0 if none"],
      ["cookie", "u32", "to echo back in the response to the group's last fault"],
    ],
  },
  {
    name: "iommu_hwpt_page_response",
    header: "iommufd",
    doc: "A page fault response as write() to a fault queue fd.",
    fields: [
      ["cookie", "u32", "cookie of the fault group"],
      ["code", "u32", "enum iommufd_page_response_code"],
    ],
  },
  {
    name: "iommu_fault_alloc",
    header: "iommufd",
    doc: "IOMMU_FAULT_QUEUE_ALLOC: create a fault queue object and the fd to read its faults from.",
    minField: "out_fault_fd",
    fields: [
      ["size", "u32", "sizeof(struct iommu_fault_alloc)"],
      ["flags", "u32", "must be 0"],
      ["out_fault_id", "u32", "out: ID of the fault object"],
      ["out_fault_fd", "u32", "out: the new fd"],
    ],
  },

  // ------------------------------------------------------------------ vIOMMU, vDEVICE, vEVENTQ, HW queue
  {
    name: "iommu_viommu_tegra241_cmdqv",
    header: "iommufd",
    newer: true,
    doc: "Driver data of a Tegra241 CMDQV vIOMMU: where to mmap() its virtual interface page.",
    fields: [
      ["out_vintf_mmap_offset", "u64", "out: mmap offset on the iommufd fd"],
      ["out_vintf_mmap_length", "u64", "out: mmap length"],
    ],
  },
  {
    name: "iommu_viommu_alloc",
    header: "iommufd",
    newer: true,
    doc: "IOMMU_VIOMMU_ALLOC: create a virtual IOMMU on a nesting parent HWPT.",
    minField: "out_viommu_id",
    fields: [
      ["size", "u32", "sizeof(struct iommu_viommu_alloc)"],
      ["flags", "u32", "must be 0"],
      ["type", "u32", "enum iommu_viommu_type"],
      ["dev_id", "u32", "device whose IOMMU backs the vIOMMU"],
      ["hwpt_id", "u32", "nesting parent HWPT"],
      ["out_viommu_id", "u32", "out: ID of the vIOMMU"],
      ["data_len", "u32", "bytes at data_uptr"],
      ["__reserved", "u32", "must be 0"],
      ["data_uptr", "u64", "user pointer to the driver data (in/out)"],
    ],
  },
  {
    name: "iommu_vdevice_alloc",
    header: "iommufd",
    newer: true,
    doc: "IOMMU_VDEVICE_ALLOC: give a device its virtual ID on a vIOMMU.",
    minField: "virt_id",
    fields: [
      ["size", "u32", "sizeof(struct iommu_vdevice_alloc)"],
      ["viommu_id", "u32", "the vIOMMU"],
      ["dev_id", "u32", "the physical device"],
      ["out_vdevice_id", "u32", "out: ID of the vDEVICE"],
      ["virt_id", "u64", "virtual device ID (vSID, vDeviceID, vRID)"],
    ],
  },
  {
    name: "iommufd_vevent_header",
    header: "iommufd",
    newer: true,
    doc: "Header of each record read() from a vEVENTQ fd; the type-specific payload follows.",
    fields: [
      ["flags", "u32", "enum iommu_veventq_flag"],
      ["sequence", "u32", "0..INT_MAX, wrapping to 0; a gap means lost events"],
    ],
  },
  {
    name: "iommu_vevent_arm_smmuv3",
    header: "iommufd",
    newer: true,
    doc: "ARM SMMUv3 virtual event payload: a raw event record.",
    fields: [["evt", "le64[4]", "256-bit event record, little-endian"]],
  },
  {
    name: "iommu_vevent_tegra241_cmdqv",
    header: "iommufd",
    newer: true,
    doc: "Tegra241 CMDQV virtual event payload.",
    fields: [["lvcmdq_err_map", "le64[2]", "128-bit logical VCMDQ error map, little-endian"]],
  },
  {
    name: "iommu_veventq_alloc",
    header: "iommufd",
    newer: true,
    doc: "IOMMU_VEVENTQ_ALLOC: create a virtual event queue of a vIOMMU and its fd.",
    minField: "out_veventq_fd",
    fields: [
      ["size", "u32", "sizeof(struct iommu_veventq_alloc)"],
      ["flags", "u32", "must be 0"],
      ["viommu_id", "u32", "the vIOMMU"],
      ["type", "u32", "enum iommu_veventq_type"],
      ["veventq_depth", "u32", "maximum number of queued events"],
      ["out_veventq_id", "u32", "out: ID of the vEVENTQ"],
      ["out_veventq_fd", "u32", "out: the new fd"],
      ["__reserved", "u32", "must be 0"],
    ],
  },
  {
    name: "iommu_hw_queue_alloc",
    header: "iommufd",
    newer: true,
    doc: "IOMMU_HW_QUEUE_ALLOC: hand a guest queue in nesting-parent IOVA space to a vIOMMU's\nhardware-accelerated queue.",
    minField: "length",
    fields: [
      ["size", "u32", "sizeof(struct iommu_hw_queue_alloc)"],
      ["flags", "u32", "must be 0"],
      ["viommu_id", "u32", "the vIOMMU"],
      ["type", "u32", "enum iommu_hw_queue_type"],
      ["index", "u32", "queue index per type"],
      ["out_hw_queue_id", "u32", "out: ID of the HW queue"],
      ["nesting_parent_iova", "u64", "guest physical base of the queue"],
      ["length", "u64", "bytes of queue memory"],
    ],
  },

  // ------------------------------------------------------------------ selftest (iommufd_test.h)
  {
    name: "iommu_test_cmd",
    header: "selftest",
    doc: "IOMMU_TEST_CMD: the selftest mock driver's operations; `op` picks the union member.",
    minField: "last",
    selector: "op",
    fields: [
      ["size", "u32", "sizeof(struct iommu_test_cmd)"],
      ["op", "u32", "IOMMU_TEST_OP_*"],
      ["id", "u32", "object the op works on (IOAS, HWPT, device, access fd...)"],
      ["__reserved", "u32", "0"],
      {
        doc: "per-op arguments",
        variants: [
          { name: "add_reserved", select: [1], fields: [["start", "u64", "first IOVA"], ["length", "u64", "bytes"]] },
          {
            name: "mock_domain",
            select: [2],
            fields: [
              ["out_stdev_id", "u32", "out: selftest device object"],
              ["out_hwpt_id", "u32", "out: HWPT the device attached to"],
              ["out_idev_id", "u32", "out: the bound device (iommufd device object)"],
            ],
          },
          {
            name: "mock_domain_flags",
            select: [12],
            fields: [
              ["out_stdev_id", "u32", "out: selftest device object"],
              ["out_hwpt_id", "u32", "out: HWPT the device attached to"],
              ["out_idev_id", "u32", "out: the bound device"],
              ["dev_flags", "u32", "MOCK_FLAGS_DEVICE_*"],
            ],
          },
          { name: "mock_domain_replace", select: [10], fields: [["pt_id", "u32", "in: new IOAS/HWPT; out: resulting HWPT"]] },
          {
            name: "check_map",
            select: [3],
            fields: [["iova", "u64", "IOVA"], ["length", "u64", "bytes"], ["uptr", "u64", "user memory expected behind iova"]],
          },
          {
            name: "check_refs",
            select: [4],
            fields: [["length", "u64", "bytes"], ["uptr", "u64", "user memory"], ["refs", "u32", "expected pin count per page"]],
          },
          {
            name: "create_access",
            select: [5],
            fields: [["out_access_fd", "u32", "out: fd of the access"], ["flags", "u32", "MOCK_FLAGS_ACCESS_CREATE_*"]],
          },
          { name: "destroy_access_pages", select: [6], fields: [["access_pages_id", "u32", "pinned item to release"]] },
          {
            name: "access_pages",
            select: [7],
            fields: [
              ["flags", "u32", "MOCK_FLAGS_ACCESS_*"],
              ["out_access_pages_id", "u32", "out: pinned item"],
              ["iova", "u64", "IOVA"],
              ["length", "u64", "bytes"],
              ["uptr", "u64", "user memory expected behind iova, or 0"],
            ],
          },
          {
            name: "access_rw",
            select: [8],
            fields: [
              ["iova", "u64", "IOVA"],
              ["length", "u64", "bytes"],
              ["uptr", "u64", "user buffer"],
              ["flags", "u32", "MOCK_ACCESS_RW_*"],
            ],
          },
          { name: "memory_limit", select: [9], fields: [["limit", "u32", "bytes for temporary batches"]] },
          { name: "access_replace_ioas", select: [11], fields: [["ioas_id", "u32", "new IOAS of the access"]] },
          {
            name: "dirty",
            select: [13],
            fields: [
              ["flags", "u32", "0"],
              ["iova", "u64", "IOVA of bit 0"],
              ["length", "u64", "bytes"],
              ["page_size", "u64", "IOVA bytes per bit"],
              ["uptr", "u64", "user pointer to the bitmap of pages to dirty"],
              ["out_nr_dirty", "u64", "out: IOPTEs dirtied"],
            ],
          },
          {
            name: "check_iotlb",
            select: [14],
            fields: [
              ["id", "u32", "IOTLB slot (0..3)", { key: "iotlb_id" }],
              ["iotlb", "u32", "expected value"],
            ],
          },
          {
            name: "trigger_iopf",
            select: [15],
            fields: [
              ["dev_id", "u32", "device"],
              ["pasid", "u32", "PASID"],
              ["grpid", "u32", "page request group"],
              ["perm", "u32", "enum iommu_hwpt_pgfault_perm"],
              ["addr", "u64", "faulting address"],
            ],
          },
          {
            name: "check_dev_cache",
            select: [16],
            newer: true,
            fields: [
              ["id", "u32", "device cache slot (0..3)", { key: "cache_id" }],
              ["cache", "u32", "expected value"],
            ],
          },
          { name: "trigger_vevent", select: [17], newer: true, fields: [["dev_id", "u32", "device"]] },
          {
            name: "pasid_attach",
            select: [18],
            newer: true,
            fields: [["pasid", "u32", "PASID"], ["pt_id", "u32", "HWPT (in); resulting HWPT (out)"]],
          },
          {
            name: "pasid_replace",
            select: [19],
            newer: true,
            fields: [["pasid", "u32", "PASID"], ["pt_id", "u32", "HWPT (in); resulting HWPT (out)"]],
          },
          { name: "pasid_detach", select: [20], newer: true, fields: [["pasid", "u32", "PASID"]] },
          {
            name: "pasid_check",
            select: [21],
            newer: true,
            fields: [["pasid", "u32", "PASID"], ["hwpt_id", "u32", "expected HWPT, 0 for none"]],
          },
        ],
      },
      ["last", "u32", "marks the minimum size only"],
    ],
  },
  {
    name: "iommu_test_hw_info",
    header: "selftest",
    doc: "Hardware information of the selftest mock IOMMU (IOMMU_HW_INFO_TYPE_SELFTEST).",
    fields: [
      ["flags", "u32", "0"],
      ["test_reg", "u32", "IOMMU_HW_INFO_SELFTEST_REGVAL"],
    ],
  },
  {
    name: "iommu_hwpt_selftest",
    header: "selftest",
    doc: "Driver data of a mock nested HWPT (IOMMU_HWPT_DATA_SELFTEST).",
    minField: "iotlb",
    fields: [["iotlb", "u32", "initial value of the mock IOTLB slots"]],
  },
  {
    name: "iommu_hwpt_invalidate_selftest",
    header: "selftest",
    doc: "One mock IOTLB invalidation request (IOMMU_HWPT_INVALIDATE_DATA_SELFTEST).",
    minField: "iotlb_id",
    fields: [
      ["flags", "u32", "IOMMU_TEST_INVALIDATE_FLAG_ALL"],
      ["iotlb_id", "u32", "IOTLB slot, ignored with FLAG_ALL"],
    ],
  },
  {
    name: "iommu_viommu_selftest",
    header: "selftest",
    newer: true,
    doc: "Driver data of a mock vIOMMU (IOMMU_VIOMMU_TYPE_SELFTEST).",
    fields: [
      ["in_data", "u32", "value to loop back"],
      ["out_data", "u32", "out: in_data"],
      ["out_mmap_offset", "u64", "out: mmap offset of the vIOMMU page"],
      ["out_mmap_length", "u64", "out: mmap length"],
    ],
  },
  {
    name: "iommu_viommu_invalidate_selftest",
    header: "selftest",
    newer: true,
    doc: "One mock vIOMMU device-cache invalidation request (IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST).",
    minField: "cache_id",
    fields: [
      ["flags", "u32", "IOMMU_TEST_INVALIDATE_FLAG_ALL"],
      ["vdev_id", "u32", "virtual device ID"],
      ["cache_id", "u32", "cache slot, ignored with FLAG_ALL"],
    ],
  },
  {
    name: "iommu_viommu_event_selftest",
    header: "selftest",
    newer: true,
    doc: "Payload of a mock virtual event (IOMMU_VEVENTQ_TYPE_SELFTEST).",
    fields: [["virt_id", "u32", "virtual ID of the device"]],
  },

  // ------------------------------------------------------------------ VFIO type1 (compat layer)
  {
    name: "vfio_info_cap_header",
    header: "vfio",
    doc: "Header of each capability in an info struct's chain.",
    fields: [
      ["id", "u16", "capability ID"],
      ["version", "u16", "capability version"],
      ["next", "u32", "offset of the next capability from the start of the info struct, 0 ends"],
    ],
  },
  {
    name: "vfio_iova_range",
    header: "vfio",
    doc: "One usable IOVA range of VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE; `end` is inclusive.",
    fields: [
      ["start", "u64", "first IOVA"],
      ["end", "u64", "last IOVA (inclusive)"],
    ],
  },
  {
    name: "vfio_iommu_type1_info",
    header: "vfio",
    doc: "VFIO_IOMMU_GET_INFO: page sizes and capability chain of the container.",
    minField: "iova_pgsizes",
    fields: [
      ["argsz", "u32", "bytes the caller provides (raised to the bytes needed)"],
      ["flags", "u32", "VFIO_IOMMU_INFO_*"],
      ["iova_pgsizes", "u64", "bitmap of supported page sizes"],
      ["cap_offset", "u32", "offset of the first capability, 0 if none fits"],
      ["pad", "u32", "0"],
    ],
  },
  {
    name: "vfio_iommu_type1_info_cap_iova_range",
    header: "vfio",
    doc: "Capability VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: the usable IOVA ranges.",
    fields: [
      ["header", "struct vfio_info_cap_header", "id 1, version 1"],
      ["nr_iovas", "u32", "number of ranges"],
      ["reserved", "u32", "0"],
      ["iova_ranges", "struct vfio_iova_range[]", "the ranges"],
    ],
  },
  {
    name: "vfio_iommu_type1_info_dma_avail",
    header: "vfio",
    doc: "Capability VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: how many more DMA mappings are allowed.",
    fields: [
      ["header", "struct vfio_info_cap_header", "id 3, version 1"],
      ["avail", "u32", "mappings still allowed"],
    ],
  },
  {
    name: "vfio_iommu_type1_dma_map",
    header: "vfio",
    doc: "VFIO_IOMMU_MAP_DMA: map user memory at a fixed IOVA.",
    minField: "size",
    fields: [
      ["argsz", "u32", "sizeof(struct vfio_iommu_type1_dma_map)"],
      ["flags", "u32", "VFIO_DMA_MAP_FLAG_*"],
      ["vaddr", "u64", "user address"],
      ["iova", "u64", "IO virtual address"],
      ["size", "u64", "bytes"],
    ],
  },
  {
    name: "vfio_iommu_type1_dma_unmap",
    header: "vfio",
    doc: "VFIO_IOMMU_UNMAP_DMA: unmap an IOVA range; size returns the bytes unmapped.",
    minField: "size",
    fields: [
      ["argsz", "u32", "sizeof(struct vfio_iommu_type1_dma_unmap)"],
      ["flags", "u32", "VFIO_DMA_UNMAP_FLAG_*"],
      ["iova", "u64", "IO virtual address"],
      ["size", "u64", "in: bytes; out: bytes unmapped"],
      ["data", "u8[]", "a struct vfio_bitmap with VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP"],
    ],
  },
];

function build(): ReadonlyMap<string, StructLayout> {
  const m = new Map<string, StructLayout>();
  for (const d of DECLS) {
    if (m.has(d.name)) throw new Error(`uapi table: struct ${d.name} declared twice`);
    m.set(d.name, layoutStruct(d, m));
  }
  return m;
}

/** Every struct of the table by C name, in declaration order. */
export const STRUCTS: ReadonlyMap<string, StructLayout> = build();

/** The layout of `struct name` (throws for a name not in the table). */
export function structOf(name: string): StructLayout {
  const s = STRUCTS.get(name);
  if (!s) throw new Error(`no uapi struct ${name}`);
  return s;
}

const resolve = (s: StructLayout | string): StructLayout => (typeof s === "string" ? structOf(s) : s);

/** Decode sizeof(struct) little-endian bytes at `offset` into a plain object (u64 as bigint). */
export function decode(s: StructLayout | string, bytes: Uint8Array, offset = 0): UObject {
  return decodeStruct(resolve(s), bytes, offset);
}

/** Encode an object into a fresh sizeof(struct) buffer; absent fields and padding are zero. */
export function encode(s: StructLayout | string, obj: UObject): Uint8Array {
  return encodeStruct(resolve(s), obj);
}

/** Encode the object's present fields over `bytes` at `offset`, leaving all other bytes as they are. */
export function encodeInto(s: StructLayout | string, obj: UObject, bytes: Uint8Array, offset = 0): void {
  encodeStructInto(resolve(s), obj, bytes, offset);
}

/** Bytes of the struct a decoded object determines (see layout.ts). */
export function maskOf(s: StructLayout | string, selectorValue?: number): Uint8Array {
  return meaningfulMask(resolve(s), selectorValue);
}
