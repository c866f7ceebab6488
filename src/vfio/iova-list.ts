/**
 * The type1 container's list of valid IOVA ranges (vfio_iommu->iova_list): the intersection of the
 * attached domains' apertures minus every non-relaxable reserved region of the attached groups.
 * An empty list means "no IOMMU-backed group" (an mdev-only container) and allows every IOVA.
 * The helpers mirror vfio_iommu_aper_conflict/_resize/_expand and vfio_iommu_resv_exclude/_refresh,
 * including their corner cases; they work on a copy that replaces the live list only on success.
 */
import { fail } from "../errno.js";
import { ResvType, type ResvRegion } from "../iommu/device.js";
import { ULONG_MAX } from "../util/u64.js";
import type { VfioIovaRange } from "./uapi.js";

export class IovaList {
  /** Sorted, disjoint, inclusive ranges. */
  ranges: VfioIovaRange[] = [];

  get empty(): boolean {
    return this.ranges.length === 0;
  }

  copy(): IovaList {
    const c = new IovaList();
    c.ranges = this.ranges.map((r) => ({ ...r }));
    return c;
  }

  /** vfio_iommu_iova_dma_valid: [start, end] inside one range, or the list is empty. */
  contains(start: bigint, end: bigint): boolean {
    if (this.empty) return true;
    return this.ranges.some((r) => start >= r.start && end <= r.end);
  }

  /**
   * vfio_iommu_aper_conflict: a new aperture [start, end] conflicts when it is disjoint from the
   * current span or would cut off an existing mapping (`mapped(first, size)` finds one in [first, first+size)).
   */
  aperConflict(start: bigint, end: bigint, mapped: (first: bigint, size: bigint) => boolean): boolean {
    if (this.empty) return false;
    const first = this.ranges[0];
    const last = this.ranges[this.ranges.length - 1];
    if (start > last.end || end < first.start) return true;
    if (start > first.start && mapped(first.start, start - first.start)) return true;
    if (end < last.end && mapped(end + 1n, last.end - end)) return true;
    return false;
  }

  /** vfio_iommu_aper_resize: clip the list to [start, end] (or create it). */
  aperResize(start: bigint, end: bigint): void {
    if (this.empty) {
      this.ranges.push({ start, end });
      return;
    }
    const r = this.ranges;
    // adjust the start: drop ranges before it, clip the one containing it
    while (r.length) {
      const n = r[0];
      if (start < n.start) break;
      if (start >= n.start && start < n.end) {
        n.start = start;
        break;
      }
      r.shift();
    }
    // adjust the end: clip the range containing it, drop the ones after it
    this.ranges = r.filter((n) => {
      if (end > n.end) return true;
      if (end > n.start && end <= n.end) {
        n.end = end;
        return true;
      }
      return false;
    });
  }

  /** vfio_iommu_resv_exclude: punch every non-relaxable region out of the list; EINVAL if nothing is left. */
  resvExclude(regions: readonly ResvRegion[]): void {
    for (const resv of regions) {
      if (resv.type === ResvType.DIRECT_RELAXABLE) continue;
      const start = resv.start;
      const end = resv.start + resv.length - 1n;
      const out: VfioIovaRange[] = [];
      for (const n of this.ranges) {
        if (start > n.end || end < n.start) {
          out.push(n);
          continue;
        }
        if (start > n.start) out.push({ start: n.start, end: start - 1n });
        if (end < n.end) out.push({ start: end + 1n, end: n.end });
      }
      this.ranges = out;
    }
    if (this.empty) fail("EINVAL", "no valid IOVA range is left after excluding the reserved regions");
  }

  /** vfio_iommu_aper_expand: after a domain went away, widen the ends to the remaining apertures' intersection. */
  aperExpand(apertures: readonly { start: bigint; end: bigint }[]): void {
    if (this.empty) return;
    let start = 0n;
    let end = ULONG_MAX;
    for (const a of apertures) {
      if (a.start > start) start = a.start;
      if (a.end < end) end = a.end;
    }
    this.ranges[0].start = start;
    this.ranges[this.ranges.length - 1].end = end;
  }

  /**
   * vfio_iommu_resv_refresh: rebuild the list from its outer bounds minus the remaining groups'
   * regions (a detached group's regions may become valid again). Throws EINVAL when the list is or
   * becomes empty; the caller then keeps its previous list.
   */
  resvRefresh(regions: readonly ResvRegion[]): void {
    if (this.empty) fail("EINVAL", "empty IOVA list");
    const start = this.ranges[0].start;
    const end = this.ranges[this.ranges.length - 1].end;
    this.ranges = [];
    this.aperResize(start, end);
    this.resvExclude(regions);
  }
}
