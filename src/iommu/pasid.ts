/**
 * The host's global PASID space (iommu_alloc_global_pasid / iommu_free_global_pasid): one ID
 * allocator for the PASIDs the kernel hands out (host SVA, a driver's default PASID), lowest free
 * first as an IDA allocates. PASID 0 is IOMMU_NO_PASID (requests without a PASID use the RID's
 * translation) and is never handed out; a device takes PASIDs below its own limit, which is
 * min(the device's PASID capability, the IOMMU's PASID width) — a device without PASID support
 * gets none.
 *
 * Storage: a bitmap over the 20-bit space (32768 words) with a summary word per 32 words of
 * "some ID free here", so allocation looks at a few words, never at each ID.
 */
import { assert, fail } from "../errno.js";

/** IOMMU_NO_PASID */
export const NO_PASID = 0;
/** IOMMU_PASID_INVALID (ioasid_t)-1, as a number. */
export const PASID_INVALID = -1;
/** PCIe PASIDs are 20 bits. */
export const PASID_BITS = 20;
export const PASID_MAX = 1 << PASID_BITS;
/** IOMMU_FIRST_GLOBAL_PASID */
export const FIRST_GLOBAL_PASID = 1;

export class PasidAllocator {
  /** Bit set = ID in use. */
  private readonly used = new Uint32Array(PASID_MAX / 32);
  /** Bit w%32 of full[w>>5] set = used[w] is all ones. */
  private readonly full = new Uint32Array(PASID_MAX / 32 / 32);
  private count = 0;

  /** IDs in use. */
  get inUse(): number {
    return this.count;
  }

  isUsed(id: number): boolean {
    return id >= 0 && id < PASID_MAX && (this.used[id >>> 5] & (1 << (id & 31))) !== 0;
  }

  /** The lowest free ID in [min, max] (inclusive), marked used; PASID_INVALID when none is free. */
  allocRange(min: number, max: number): number {
    assert(Number.isInteger(min) && Number.isInteger(max), "PASID bounds are integers");
    if (min < 0) min = 0;
    if (max > PASID_MAX - 1) max = PASID_MAX - 1;
    for (let id = min; id <= max; ) {
      const w = id >>> 5;
      if ((w & 31) === 0 && (id & 31) === 0 && this.full[w >>> 5] === 0xffffffff) {
        id += 32 * 32;
        continue;
      }
      const free = ~this.used[w] & (0xffffffff << (id & 31));
      if (free === 0) {
        id = (w + 1) << 5;
        continue;
      }
      const bit = 31 - Math.clz32(free & -free);
      const found = (w << 5) | bit;
      if (found > max) return PASID_INVALID;
      this.mark(found);
      return found;
    }
    return PASID_INVALID;
  }

  private mark(id: number): void {
    const w = id >>> 5;
    this.used[w] |= 1 << (id & 31);
    if (this.used[w] === 0xffffffff) this.full[w >>> 5] |= 1 << (w & 31);
    this.count++;
  }

  /** Take a specific ID (for callers that choose it). EBUSY when it is in use. */
  take(id: number): void {
    if (!(Number.isInteger(id) && id >= 0 && id < PASID_MAX)) fail("EINVAL", `PASID ${id} is outside the 20-bit space`);
    if (this.isUsed(id)) fail("EBUSY", `PASID ${id} is in use`);
    this.mark(id);
  }

  /** ida_free: the ID must be in use. */
  free(id: number): void {
    if (!(this.isUsed(id))) assert(false, `PASID ${id} freed while not allocated`);
    const w = id >>> 5;
    this.used[w] &= ~(1 << (id & 31));
    this.full[w >>> 5] &= ~(1 << (w & 31));
    this.count--;
  }

  /**
   * iommu_alloc_global_pasid(dev): an ID in [1, maxPasids - 1] where maxPasids is the device's
   * PASID count (0: no PASID support → PASID_INVALID).
   */
  allocGlobal(maxPasids: number): number {
    if (maxPasids <= 0) return PASID_INVALID;
    return this.allocRange(FIRST_GLOBAL_PASID, maxPasids - 1);
  }

  /** iommu_free_global_pasid: PASID_INVALID is ignored (the kernel warns). */
  freeGlobal(id: number): void {
    if (id === PASID_INVALID) return;
    this.free(id);
  }
}

/** dev_iommu_get_max_pasids: PASIDs a device can use behind an IOMMU of iommuPasidBits. */
export function deviceMaxPasids(devPasidBits: number, iommuPasidBits: number): number {
  if (devPasidBits <= 0 || iommuPasidBits <= 0) return 0;
  return 2 ** Math.min(devPasidBits, iommuPasidBits, PASID_BITS);
}
