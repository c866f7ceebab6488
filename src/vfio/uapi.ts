/**
 * The VFIO container/group uAPI (include/uapi/linux/vfio.h) as the classic type1 backend sees it:
 * the structs as plain objects with the kernel's field names, and the byte layout the kernel copies
 * back for VFIO_IOMMU_GET_INFO. The constants shared with iommufd's compat layer (extension ids,
 * MAP/UNMAP flags, cap ids 1 and 3) live in iommufd/vfio-compat.ts and are re-exported from the
 * package root; only the ones the compat layer lacks are defined here.
 */
import { VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL } from "../iommufd/vfio-compat.js";

export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2;
/** DIRTY_BITMAP_BYTES(INT_MAX): the largest dirty bitmap type1 hands out (256 MiB). */
export const DIRTY_BITMAP_SIZE_MAX = 0x10000000n;
/** The dma_entry_limit module parameter's default (U16_MAX), per container. */
export const VFIO_DMA_ENTRY_LIMIT_DEFAULT = 65535;
/** VFIO_PIN_PAGES_MAX_ENTRIES: PAGE_SIZE / sizeof(unsigned long). */
export const VFIO_PIN_PAGES_MAX_ENTRIES = 512;

/** x86's hardware MSI window (IOMMU_RESV_MSI on Intel VT-d and AMD-Vi). */
export const X86_MSI_START = 0xfee00000n;
export const X86_MSI_LAST = 0xfeefffffn;
/** ARM SMMU's software-managed MSI window (IOMMU_RESV_SW_MSI, MSI_IOVA_BASE / MSI_IOVA_LENGTH). */
export const ARM_SW_MSI_BASE = 0x8000000n;
export const ARM_SW_MSI_LENGTH = 0x100000n;

/** struct vfio_iommu_type1_dma_map */
export interface VfioIommuType1DmaMap {
  argsz: number;
  flags: number;
  vaddr: bigint;
  iova: bigint;
  size: bigint;
}

/** struct vfio_bitmap (follows vfio_iommu_type1_dma_unmap with GET_DIRTY_BITMAP). */
export interface VfioBitmap {
  pgsize: bigint;
  size: bigint;
  /** User pointer to the bitmap (one bit per page). */
  data: bigint;
}

/** struct vfio_iommu_type1_dma_unmap; `size` comes back as the number of bytes unmapped. */
export interface VfioIommuType1DmaUnmap {
  argsz: number;
  flags: number;
  iova: bigint;
  size: bigint;
  bitmap?: VfioBitmap;
}

/** struct vfio_info_cap_header; `next` is a byte offset from the start of the info struct (0 ends the chain). */
export interface VfioInfoCapHeader {
  id: number;
  version: number;
  next: number;
}

export interface VfioIovaRange {
  start: bigint;
  /** Inclusive. */
  end: bigint;
}

/** VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: struct vfio_iommu_type1_info_cap_iova_range (16 + 16n bytes). */
export interface VfioIommuType1InfoCapIovaRange {
  header: VfioInfoCapHeader;
  nr_iovas: number;
  iova_ranges: VfioIovaRange[];
}

/** VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION: struct vfio_iommu_type1_info_cap_migration (32 bytes). */
export interface VfioIommuType1InfoCapMigration {
  header: VfioInfoCapHeader;
  flags: number;
  pgsize_bitmap: bigint;
  max_dirty_bitmap_size: bigint;
}

/** VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: struct vfio_iommu_type1_info_dma_avail (12 bytes, padded to 16). */
export interface VfioIommuType1InfoDmaAvail {
  header: VfioInfoCapHeader;
  avail: number;
}

export type VfioInfoCap = VfioIommuType1InfoCapIovaRange | VfioIommuType1InfoCapMigration | VfioIommuType1InfoDmaAvail;

/**
 * struct vfio_iommu_type1_info as returned. `caps` (in chain order, offsets from the start of the
 * struct) is present only when the kernel copied them, i.e. when the caller's argsz covered them all
 * (then cap_offset = 24); otherwise only argsz is raised to the size needed.
 */
export interface VfioIommuType1Info {
  argsz: number;
  flags: number;
  iova_pgsizes: bigint;
  cap_offset: number;
  caps?: VfioInfoCap[];
}

/** struct vfio_group_status */
export interface VfioGroupStatus {
  argsz: number;
  flags: number;
}

/** struct vfio_iommu_type1_dirty_bitmap (+ vfio_iommu_type1_dirty_bitmap_get for GET_BITMAP). */
export interface VfioIommuType1DirtyBitmap {
  argsz: number;
  flags: number;
  iova?: bigint;
  size?: bigint;
  bitmap?: VfioBitmap;
}

/** Size in bytes of one capability as the kernel lays it out (padded to 8). */
export function capSize(cap: VfioInfoCap): number {
  switch (cap.header.id) {
    case VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
      return 16 + 16 * (cap as VfioIommuType1InfoCapIovaRange).iova_ranges.length;
    case VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION:
      return 32;
    case VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
      return 16;
    default:
      throw new Error(`unknown cap id ${cap.header.id}`);
  }
}

/**
 * The bytes VFIO_IOMMU_GET_INFO (type1) copies to the user buffer, from offset 0: the first
 * min(argsz, 24) bytes of the info struct, followed by the capability chain when it was copied.
 * `argsz` is the caller's original argsz.
 */
export function encodeIommuType1Info(info: VfioIommuType1Info, argsz: number): Uint8Array {
  const caps = info.caps ?? [];
  let total = 24;
  for (const c of caps) total += capSize(c);
  const out = new Uint8Array(info.caps ? total : Math.min(argsz, 24));
  const dv = new DataView(out.buffer);
  const hdr = new Uint8Array(24);
  const hv = new DataView(hdr.buffer);
  hv.setUint32(0, info.argsz, true);
  hv.setUint32(4, info.flags, true);
  hv.setBigUint64(8, info.iova_pgsizes, true);
  hv.setUint32(16, info.cap_offset, true);
  out.set(hdr.subarray(0, Math.min(argsz, 24)));
  let off = 24;
  for (const c of caps) {
    dv.setUint16(off, c.header.id, true);
    dv.setUint16(off + 2, c.header.version, true);
    dv.setUint32(off + 4, c.header.next, true);
    if (c.header.id === VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
      const r = c as VfioIommuType1InfoCapIovaRange;
      dv.setUint32(off + 8, r.nr_iovas, true);
      r.iova_ranges.forEach((x, i) => {
        dv.setBigUint64(off + 16 + 16 * i, x.start, true);
        dv.setBigUint64(off + 24 + 16 * i, x.end, true);
      });
    } else if (c.header.id === VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION) {
      const m = c as VfioIommuType1InfoCapMigration;
      dv.setUint32(off + 8, m.flags, true);
      dv.setBigUint64(off + 16, m.pgsize_bitmap, true);
      dv.setBigUint64(off + 24, m.max_dirty_bitmap_size, true);
    } else {
      dv.setUint32(off + 8, (c as VfioIommuType1InfoDmaAvail).avail, true);
    }
    off += capSize(c);
  }
  return out;
}
