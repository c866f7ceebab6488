/**
 * The type1 backend's per-domain bookkeeping (struct vfio_domain, struct vfio_iommu_group) and the
 * group-attach tracking proposed for mdevs that wrap a PF/VF ("vfio/type1: track iommu backed group
 * attach", seeds/004): a VFIO group whose devices are really some IOMMU group's devices (an mdev
 * wrapping a PF/VF of a possibly non-singleton group) attaches that *backing* IOMMU group; a second
 * VFIO group backed by the same IOMMU group in the same container shares the attachment through a
 * refcounted group object instead of attaching again, and detach, which cannot fail, only detaches
 * the IOMMU group when the last user goes.
 */
import { ResvType, type Device, type IommuGroup, type ResvRegion } from "../iommu/device.js";
import type { PagingDomain } from "../iommu/domain.js";

/** enum vfio_group_type */
export const VFIO_IOMMU = 0;
export const VFIO_EMULATED_IOMMU = 1;
export const VFIO_NO_IOMMU = 2;
export type VfioGroupType = typeof VFIO_IOMMU | typeof VFIO_EMULATED_IOMMU | typeof VFIO_NO_IOMMU;

/** What the type1 backend needs to know about a VFIO group (the kernel passes iommu_group + type). */
export interface Type1GroupRef {
  /** The group's own IOMMU group (an mdev's is a singleton with no IOMMU behind it). */
  readonly iommuGroup: IommuGroup;
  readonly type: VfioGroupType;
  /** For an IOMMU-backed mdev: the PF/VF it wraps. Its IOMMU group is what gets attached. */
  readonly iommuDevice: Device | null;
}

/** The IOMMU group that really gets attached for a VFIO group. */
export function backingGroup(g: Type1GroupRef): IommuGroup {
  return g.iommuDevice ? g.iommuDevice.group : g.iommuGroup;
}

/** struct vfio_iommu_group: one VFIO group in a domain's (or the emulated) group list. */
export class VfioIommuGroup {
  /** Set when the group's devices only touch memory through pinned pages (dirty scope). */
  pinnedPageDirtyScope = false;
  constructor(
    readonly ref: Type1GroupRef,
    /** Null for emulated groups. */
    readonly backing: IommuGroup | null,
  ) {}
  get iommuGroup(): IommuGroup {
    return this.ref.iommuGroup;
  }
}

/** struct vfio_group_object (seeds/004): the attachment of one backing IOMMU group, shared by refcount. */
export class VfioGroupObject {
  count = 1;
  constructor(
    readonly iommuGroup: IommuGroup,
    readonly domain: VfioDomain,
  ) {}
}

/** struct vfio_domain */
export class VfioDomain {
  /** VFIO groups using this domain, most recent first (list_add). */
  readonly groupList: VfioIommuGroup[] = [];
  /** Backing IOMMU groups attached to this domain, with their user counts. */
  readonly groupObjects: VfioGroupObject[] = [];
  /** Fine-grained super pages (only changes how the kernel batches unmaps; not observable). */
  fgsp = false;
  readonly enforceCacheCoherency: boolean;
  constructor(readonly domain: PagingDomain) {
    this.enforceCacheCoherency = domain.enforceCacheCoherency;
  }

  findGroup(iommuGroup: IommuGroup): VfioIommuGroup | undefined {
    return this.groupList.find((g) => g.iommuGroup === iommuGroup);
  }

  findGroupObject(backing: IommuGroup): VfioGroupObject | undefined {
    return this.groupObjects.find((o) => o.iommuGroup === backing);
  }
}

/**
 * iommu_get_group_resv_regions: every device's regions, sorted by start (then type), overlapping
 * or adjacent regions of the same type merged.
 */
export function groupResvRegions(g: IommuGroup): ResvRegion[] {
  const all: ResvRegion[] = [];
  for (const d of g.devices) for (const r of d.resv) all.push({ ...r });
  all.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.type - b.type));
  const out: ResvRegion[] = [];
  for (const r of all) {
    let merged = false;
    for (let i = out.length - 1; i >= 0; i--) {
      const top = out[i];
      if (top.type !== r.type) continue;
      const topEnd = top.start + top.length - 1n;
      if (r.start <= topEnd + 1n) {
        const end = r.start + r.length - 1n > topEnd ? r.start + r.length - 1n : topEnd;
        top.length = end - top.start + 1n;
        merged = true;
      }
      break;
    }
    if (!merged) out.push(r);
  }
  return out;
}

/**
 * vfio_iommu_has_sw_msi: the base of the software-managed MSI window, unless the driver also
 * reports a hardware MSI region (which takes precedence: then null).
 */
export function swMsiBase(regions: readonly ResvRegion[]): bigint | null {
  let base: bigint | null = null;
  for (const r of regions) {
    if (r.type === ResvType.MSI) return null;
    if (r.type === ResvType.SW_MSI) base = r.start;
  }
  return base;
}
