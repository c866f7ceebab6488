/**
 * The classic VFIO type1 IOMMU backend (drivers/vfio/vfio_iommu_type1.c): the "iommu data" behind a
 * /dev/vfio/vfio container once VFIO_SET_IOMMU(TYPE1 | TYPE1v2 | TYPE1_NESTING) succeeded.
 *
 * Where it differs from iommufd's compat layer:
 *  - every MAP_DMA creates one vfio_dma record; dma_entry_limit (default 65535, per container) caps
 *    them (ENOSPC) and GET_INFO's DMA_AVAIL capability reports what is left;
 *  - the valid IOVAs are the intersection of the domains' apertures minus the groups' reserved
 *    regions (IOVA_RANGE capability, omitted when the list is empty: an mdev-only container);
 *  - MAP_DMA checks in type1's order: unknown flags/argsz EINVAL, READ|WRITE xor VADDR, size and
 *    iova/vaddr aligned to the smallest page size, no wrap, VADDR update, EEXIST, ENOSPC, valid IOVA,
 *    then pin (EFAULT) and charge mm->locked_vm (ENOMEM past RLIMIT_MEMLOCK unless CAP_IPC_LOCK);
 *  - UNMAP_DMA v2 refuses to bisect a mapping (EINVAL), v1 stops at a mapping starting before iova
 *    and removes whole mappings that start inside the range; the size is only reported on success;
 *  - groups are attached to IOMMU domains shared between compatible groups, with SW_MSI windows
 *    turned into MSI cookies, and the container's state goes away with its last group.
 */
import { assert, fail, IommuError } from "../errno.js";
import { attachGroup as coreAttachGroup, detachGroup as coreDetachGroup } from "../iommu/core.js";
import { ResvType, type IommuGroup, type ResvRegion } from "../iommu/device.js";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE, type PagingDomain } from "../iommu/domain.js";
import { RangeList } from "../iopt/ranges.js";
import {
  VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_VADDR,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_DMA_UNMAP_FLAG_VADDR,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1_NESTING_IOMMU,
  VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
  VFIO_UPDATE_VADDR,
} from "../iommufd/vfio-compat.js";
import { PAGE_SIZE, TASK_SIZE, type PhysMem, type Process } from "../mm/index.js";
import { lowestBit, U64_MAX, ULONG_MAX } from "../util/u64.js";
import { lockAcct, pinRemote, unpinRemote, VfioDma } from "./dma.js";
import {
  backingGroup,
  groupResvRegions,
  swMsiBase,
  VFIO_EMULATED_IOMMU,
  VfioDomain,
  VfioGroupObject,
  VfioIommuGroup,
  type Type1GroupRef,
} from "./domain.js";
import { IovaList } from "./iova-list.js";
import { iommuGetMsiCookie, iommuPutDmaCookie } from "../iommu/msi.js";
import {
  capSize,
  DIRTY_BITMAP_SIZE_MAX,
  VFIO_DMA_ENTRY_LIMIT_DEFAULT,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
  type VfioBitmap,
  type VfioInfoCap,
  type VfioIommuType1DirtyBitmap,
  type VfioIommuType1DmaMap,
  type VfioIommuType1DmaUnmap,
  type VfioIommuType1Info,
} from "./uapi.js";

const PAGE = BigInt(PAGE_SIZE);
const PAGE_MASK = ULONG_MAX & ~(PAGE - 1n);

/** The vfio_iommu_type1 module parameters (plus the platform's MSI isolation, which the kernel probes). */
export interface Type1Params {
  /** dma_entry_limit: mappings per container; read when the container's IOMMU is set. */
  dmaEntryLimit: number;
  /** allow_unsafe_interrupts: attach groups whose MSIs the platform cannot isolate. */
  allowUnsafeInterrupts: boolean;
  /** iommu_group_has_isolated_msi: interrupt remapping (x86) or an isolating MSI controller (ARM ITS). */
  isolatedMsi: (g: IommuGroup) => boolean;
}

export function defaultType1Params(): Type1Params {
  return { dmaEntryLimit: VFIO_DMA_ENTRY_LIMIT_DEFAULT, allowUnsafeInterrupts: false, isolatedMsi: () => true };
}

/** A device registered with the container (an emulated/mdev device with a dma_unmap callback). */
export interface Type1Device {
  /** The device's own VFIO group's IOMMU group. */
  readonly iommuGroup: IommuGroup;
  /** vfio_device_ops.dma_unmap: the driver must vfio_unpin_pages() everything in [iova, iova+length). */
  dmaUnmap(iova: bigint, length: bigint): void;
}

/** VFIO_CHECK_EXTENSION answered by type1 before any container is set up (iommu_data == NULL). */
export function type1CheckExtensionNoIommu(ext: number): number {
  switch (ext) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_TYPE1_NESTING_IOMMU:
    case VFIO_UNMAP_ALL:
      return 1;
    default:
      return 0; // UPDATE_VADDR and DMA_CC need a container
  }
}

/** struct vfio_iommu */
export class VfioIommuType1 {
  readonly v2: boolean;
  readonly nesting: boolean;
  /** Most recently added first (list_add), as the kernel's domain_list. */
  readonly domains: VfioDomain[] = [];
  readonly emulatedGroups: VfioIommuGroup[] = [];
  readonly dmaList = new RangeList<VfioDma>();
  iovaList = new IovaList();
  dmaAvail: number;
  vaddrInvalidCount = 0;
  pgsizeBitmap = PAGE_MASK;
  numNonPinnedGroups = 0;
  dirtyPageTracking = false;
  /** Registered devices (iommu->device_list), for the dma_unmap notifier. */
  readonly devices: Type1Device[] = [];

  /**
   * vfio_iommu_type1_open(type): TYPE1 (v1), TYPE1v2, or TYPE1_NESTING (v2 + nesting); anything else
   * EINVAL. `current` returns the process making the call (the kernel's `current`).
   */
  constructor(
    readonly phys: PhysMem,
    type: number,
    readonly params: Type1Params,
    private readonly current: () => Process,
  ) {
    switch (type) {
      case VFIO_TYPE1_IOMMU:
        this.v2 = false;
        this.nesting = false;
        break;
      case VFIO_TYPE1_NESTING_IOMMU:
        this.v2 = true;
        this.nesting = true;
        break;
      case VFIO_TYPE1v2_IOMMU:
        this.v2 = true;
        this.nesting = false;
        break;
      default:
        fail("EINVAL", `type1 does not implement IOMMU type ${type}`);
    }
    this.dmaAvail = params.dmaEntryLimit;
  }

  /** The smallest supported page size (1 << __ffs(pgsize_bitmap)). */
  get pgsize(): bigint {
    return lowestBit(this.pgsizeBitmap);
  }

  // ---------------------------------------------------------------- lookups

  /** vfio_find_dma: some mapping intersecting [start, start+size) (size >= 1). */
  findDma(start: bigint, size: bigint): VfioDma | undefined {
    return this.dmaList.first(start, start + size - 1n);
  }

  /** vfio_iommu_find_iommu_group */
  findIommuGroup(iommuGroup: IommuGroup): VfioIommuGroup | undefined {
    for (const d of this.domains) {
      const g = d.findGroup(iommuGroup);
      if (g) return g;
    }
    return this.emulatedGroups.find((g) => g.iommuGroup === iommuGroup);
  }

  /** vfio_iommu_type1_group_iommu_domain: the IOMMU domain a group's devices translate through. */
  groupIommuDomain(iommuGroup: IommuGroup): PagingDomain {
    for (const d of this.domains) if (d.findGroup(iommuGroup)) return d.domain;
    fail("ENOTTY", "the group has no IOMMU domain in this container");
  }

  /** The backing IOMMU groups attached, with their user counts (seeds/004 group objects). */
  groupObjects(): VfioGroupObject[] {
    return this.domains.flatMap((d) => d.groupObjects);
  }

  private updatePgsizeBitmap(): void {
    let bm = ULONG_MAX;
    for (const d of this.domains) bm &= d.domain.pgsizeBitmap;
    if (bm & ~PAGE_MASK) {
      bm &= PAGE_MASK;
      bm |= PAGE;
    }
    this.pgsizeBitmap = bm;
  }

  // ---------------------------------------------------------------- VFIO_CHECK_EXTENSION

  checkExtension(ext: number): number {
    switch (ext) {
      case VFIO_TYPE1_IOMMU:
      case VFIO_TYPE1v2_IOMMU:
      case VFIO_TYPE1_NESTING_IOMMU:
      case VFIO_UNMAP_ALL:
        return 1;
      case VFIO_UPDATE_VADDR:
        // not with emulated (mdev) groups: they cannot safely pin while vaddrs are being updated
        return this.emulatedGroups.length === 0 ? 1 : 0;
      case VFIO_DMA_CC_IOMMU:
        return this.domains.every((d) => d.enforceCacheCoherency) ? 1 : 0;
      default:
        return 0;
    }
  }

  // ---------------------------------------------------------------- mapping into domains

  private mapInto(domain: PagingDomain, iova: bigint, runs: readonly number[], prot: number): void {
    const shift = domain.pgShift;
    assert(shift <= 12, "type1 maps in PAGE_SIZE units");
    const ioPerPage = PAGE_SIZE >> shift;
    let io = iova;
    for (let i = 0; i < runs.length; i += 2) {
      const n = runs[i + 1];
      domain.map(Number(io >> BigInt(shift)), runs[i] * PAGE_SIZE, n * ioPerPage, prot | IOMMU_CACHE, false);
      io += BigInt(n) * PAGE;
    }
  }

  private unmapFrom(domain: PagingDomain, dma: VfioDma): void {
    const shift = BigInt(domain.pgShift);
    domain.unmap(Number(dma.iova >> shift), Number(dma.size >> shift));
  }

  /** vfio_pin_map_dma: pin the whole mapping through the caller and map it into every domain. */
  private pinMapDma(dma: VfioDma): void {
    const runs = pinRemote(this.phys, dma, this.current(), 0, dma.npages);
    dma.runs = runs;
    for (const d of this.domains) this.mapInto(d.domain, dma.iova, runs, dma.prot);
    dma.iommuMapped = true;
  }

  /** vfio_unmap_unpin: unmap from every domain and unpin. Returns pages unpinned when not accounting. */
  private unmapUnpin(dma: VfioDma, doAccounting: boolean): number {
    if (!dma.size || this.domains.length === 0 || !dma.iommuMapped) return 0;
    for (const d of this.domains) this.unmapFrom(d.domain, dma);
    const unlocked = unpinRemote(this.phys, dma, 0, dma.npages, dma.runs, doAccounting);
    dma.runs = [];
    dma.iommuMapped = false;
    return doAccounting ? 0 : unlocked;
  }

  /** vfio_remove_dma */
  private removeDma(dma: VfioDma): void {
    // The kernel WARNs here and leaks the pins; drop them so the model stays consistent.
    if (dma.pfnList.size) {
      for (const v of dma.pfnList.values()) this.phys.unpin(v.pfn, 1);
      if (this.domains.length === 0) lockAcct(dma, -dma.pfnList.size);
      dma.pfnList.clear();
    }
    this.unmapUnpin(dma, true);
    this.dmaList.remove(dma);
    dma.bitmap = null;
    if (dma.vaddrInvalid) this.vaddrInvalidCount--;
    this.dmaAvail++;
  }

  private unmapUnpinAll(): void {
    for (const dma of [...this.dmaList.all()]) this.removeDma(dma);
  }

  /** vfio_iommu_unmap_unpin_reaccount: the last domain goes but emulated groups stay. */
  private unmapUnpinReaccount(): void {
    for (const dma of this.dmaList.all()) {
      const unlocked = this.unmapUnpin(dma, false);
      lockAcct(dma, dma.pfnList.size - unlocked);
    }
  }

  // ---------------------------------------------------------------- VFIO_IOMMU_MAP_DMA

  /** VFIO_IOMMU_MAP_DMA */
  mapDma(map: VfioIommuType1DmaMap): void {
    const mask = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR;
    if (map.argsz < 32 || map.flags & ~mask) fail("EINVAL", "bad argsz or unknown flags");
    const { iova, vaddr, size } = map;
    const setVaddr = (map.flags & VFIO_DMA_MAP_FLAG_VADDR) !== 0;
    let prot = 0;
    if (map.flags & VFIO_DMA_MAP_FLAG_WRITE) prot |= IOMMU_WRITE;
    if (map.flags & VFIO_DMA_MAP_FLAG_READ) prot |= IOMMU_READ;
    if ((prot && setVaddr) || (!prot && !setVaddr)) fail("EINVAL", "need READ and/or WRITE, or VADDR alone");
    const m = this.pgsize - 1n;
    if (!size || (size | iova | vaddr) & m) fail("EINVAL", "size, iova or vaddr not aligned to the smallest page size");
    if (iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX) fail("EINVAL", "iova or vaddr range wraps");

    const dma = this.findDma(iova, size);
    if (setVaddr) {
      if (!dma) fail("ENOENT", "no mapping to update");
      if (!dma.vaddrInvalid || dma.iova !== iova || dma.size !== size) fail("EINVAL", "not an exact, invalidated mapping");
      this.changeDmaOwner(dma);
      dma.vaddr = vaddr;
      dma.vaddrInvalid = false;
      this.vaddrInvalidCount--;
      return;
    }
    if (dma) fail("EEXIST", "range overlaps an existing mapping");
    if (!this.dmaAvail) fail("ENOSPC", "dma_entry_limit reached");
    if (!this.iovaList.contains(iova, iova + size - 1n)) fail("EINVAL", "range is not inside one valid IOVA range");

    const nd = new VfioDma(iova, vaddr, size, prot, this.current());
    // no IOMMU-backed domain (mdev only): record the mapping, pages are pinned on demand
    if (this.domains.length) this.pinMapDma(nd);
    if (this.dirtyPageTracking) nd.bitmap = new Uint8Array(bitmapBytes(Number(size / this.pgsize)));
    this.dmaList.insert(nd);
    this.dmaAvail--;
  }

  /** vfio_change_dma_owner: MAP_DMA with VADDR from another process moves the accounting there. */
  private changeDmaOwner(dma: VfioDma): void {
    const cur = this.current();
    if (cur.mm === dma.task.mm) return;
    const npage = dma.lockedVm;
    const lockCap = cur.caps.ipcLock;
    if (npage && !lockCap && cur.mm.lockedVm + npage > Math.floor(cur.rlimitMemlock / PAGE_SIZE))
      fail("ENOMEM", "RLIMIT_MEMLOCK of the new owner exceeded");
    cur.mm.lockedVm += npage;
    if (dma.task.mm.alive) dma.task.mm.lockedVm -= npage;
    dma.task = cur;
    dma.lockCap = lockCap;
  }

  // ---------------------------------------------------------------- VFIO_IOMMU_UNMAP_DMA

  /** VFIO_IOMMU_UNMAP_DMA: returns the struct with `size` = bytes unmapped (written back only on success). */
  unmapDma(unmap: VfioIommuType1DmaUnmap): VfioIommuType1DmaUnmap {
    const mask = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL;
    if (unmap.argsz < 24 || unmap.flags & ~mask) fail("EINVAL", "bad argsz or unknown flags");
    const getBitmap = (unmap.flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
    if (getBitmap && unmap.flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR))
      fail("EINVAL", "GET_DIRTY_BITMAP cannot combine with ALL or VADDR");
    let bitmap: VfioBitmap | undefined;
    if (getBitmap) {
      if (unmap.argsz < 24 + 24 || !unmap.bitmap) fail("EINVAL", "argsz does not cover struct vfio_bitmap");
      bitmap = unmap.bitmap;
      checkUserRange(bitmap);
      verifyBitmapSize(unmap.size / lowestBitOr1(bitmap.pgsize), bitmap.size);
    }
    return { ...unmap, size: this.doUnmap(unmap, bitmap) };
  }

  /** vfio_dma_do_unmap */
  private doUnmap(unmap: VfioIommuType1DmaUnmap, bitmap: VfioBitmap | undefined): bigint {
    const unmapAll = (unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL) !== 0;
    const invalidateVaddr = (unmap.flags & VFIO_DMA_UNMAP_FLAG_VADDR) !== 0;
    const iova = unmap.iova;
    let size = unmap.size;
    if (invalidateVaddr && this.emulatedGroups.length) fail("EBUSY", "cannot invalidate vaddrs with an mdev present");
    const pgsize = this.pgsize;
    if (iova & (pgsize - 1n)) fail("EINVAL", "iova not aligned to the smallest page size");
    if (unmapAll) {
      if (iova || size) fail("EINVAL", "UNMAP_ALL needs iova 0 and size 0");
      size = U64_MAX;
    } else if (!size || size & (pgsize - 1n) || iova + size - 1n > U64_MAX) fail("EINVAL", "bad size");
    if (bitmap && (!this.dirtyPageTracking || bitmap.pgsize !== pgsize)) fail("EINVAL", "dirty tracking off or bitmap pgsize mismatch");

    let unmapped = 0n;
    let dmaLast: VfioDma | null = null;
    let retries = 0;
    const end = iova + size; // exclusive; <= 2^64
    for (;;) {
      // "again:"
      if (this.v2 && !unmapAll) {
        const first = this.findDma(iova, 1n);
        if (first && first.iova !== iova) fail("EINVAL", "the range would split a mapping (v2)");
        const lastDma = this.dmaList.first(end - 1n, end - 1n);
        if (lastDma && lastDma.iova + lastDma.size !== end) fail("EINVAL", "the range would split a mapping (v2)");
      }
      const list = this.dmaList.intersecting(iova, end - 1n);
      let restart = false;
      for (let i = 0; i < list.length; i++) {
        const dma = list[i];
        if (!this.v2 && iova > dma.iova) break;
        if (invalidateVaddr) {
          if (dma.vaddrInvalid) {
            for (let j = 0; j < i; j++) {
              list[j].vaddrInvalid = false;
              this.vaddrInvalidCount--;
            }
            fail("EINVAL", "a mapping in the range already has an invalid vaddr");
          }
          dma.vaddrInvalid = true;
          this.vaddrInvalidCount++;
          unmapped += dma.size;
          continue;
        }
        if (dma.pfnList.size) {
          if (dmaLast === dma) {
            if (++retries > 10) throw new Error("softiommu: an emulated device does not unpin on dma_unmap (kernel BUG_ON)");
          } else {
            dmaLast = dma;
            retries = 0;
          }
          for (const dev of [...this.devices]) dev.dmaUnmap(dma.iova, dma.size);
          restart = true;
          break;
        }
        if (bitmap) this.updateUserBitmap(bitmap.data, dma, iova, pgsize);
        unmapped += dma.size;
        this.removeDma(dma);
      }
      if (!restart) break;
    }
    return unmapped;
  }

  // ---------------------------------------------------------------- VFIO_IOMMU_GET_INFO

  /** VFIO_IOMMU_GET_INFO: reads argsz (>= 16); caps in order MIGRATION, DMA_AVAIL, IOVA_RANGE. */
  getInfo(info: { argsz: number }): VfioIommuType1Info {
    if (info.argsz < 16) fail("EINVAL", "argsz below 16");
    const caps: VfioInfoCap[] = [
      {
        header: { id: VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, version: 1, next: 0 },
        flags: 0,
        pgsize_bitmap: this.pgsize,
        max_dirty_bitmap_size: DIRTY_BITMAP_SIZE_MAX,
      },
      { header: { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1, next: 0 }, avail: this.dmaAvail },
    ];
    if (!this.iovaList.empty)
      caps.push({
        header: { id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, version: 1, next: 0 },
        nr_iovas: this.iovaList.ranges.length,
        iova_ranges: this.iovaList.ranges.map((r) => ({ ...r })),
      });
    let capsSize = 0;
    for (const c of caps) capsSize += capSize(c);
    const out: VfioIommuType1Info = {
      argsz: info.argsz,
      flags: VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS,
      iova_pgsizes: this.pgsizeBitmap,
      cap_offset: 0,
    };
    if (info.argsz < 24 + capsSize) {
      out.argsz = 24 + capsSize;
      return out;
    }
    // vfio_info_cap_shift: chain offsets relative to the start of the info struct
    let off = 24;
    for (let i = 0; i < caps.length; i++) {
      off += capSize(caps[i]);
      caps[i].header.next = i + 1 < caps.length ? off : 0;
    }
    out.cap_offset = 24;
    out.caps = caps;
    return out;
  }

  // ---------------------------------------------------------------- VFIO_IOMMU_DIRTY_PAGES

  /**
   * VFIO_IOMMU_DIRTY_PAGES (v2 only, else EACCES): exactly one of START, STOP, GET_BITMAP.
   * GET_BITMAP writes one bit per smallest page of [iova, iova+size) into the caller's memory at
   * bitmap.data. Pages pinned by emulated devices are dirty; while any IOMMU-backed group has not
   * limited itself to pinned pages (num_non_pinned_groups), every page of a mapped range is.
   */
  dirtyPages(cmd: VfioIommuType1DirtyBitmap): void {
    if (!this.v2) fail("EACCES", "dirty tracking needs TYPE1v2");
    const mask = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP | VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
    if (cmd.argsz < 8 || cmd.flags & ~mask) fail("EINVAL", "bad argsz or unknown flags");
    if (!cmd.flags || cmd.flags & (cmd.flags - 1)) fail("EINVAL", "exactly one of START, STOP, GET_BITMAP");
    if (cmd.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_START) {
      if (!this.dirtyPageTracking) {
        const pgsize = this.pgsize;
        for (const dma of this.dmaList.all()) {
          dma.bitmap = new Uint8Array(bitmapBytes(Number(dma.size / pgsize)));
          this.populateBitmap(dma, pgsize);
        }
        this.dirtyPageTracking = true;
      }
      return;
    }
    if (cmd.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
      if (this.dirtyPageTracking) {
        this.dirtyPageTracking = false;
        for (const dma of this.dmaList.all()) dma.bitmap = null;
      }
      return;
    }
    // GET_BITMAP: struct vfio_iommu_type1_dirty_bitmap_get follows the header
    if (cmd.argsz < 8 + 40 || cmd.iova === undefined || cmd.size === undefined || !cmd.bitmap)
      fail("EINVAL", "argsz does not cover struct vfio_iommu_type1_dirty_bitmap_get");
    const { iova, size, bitmap } = cmd;
    if (iova + size > U64_MAX) fail("EINVAL", "range wraps");
    checkUserRange(bitmap);
    verifyBitmapSize(size / lowestBitOr1(bitmap.pgsize), bitmap.size);
    const pgsize = this.pgsize;
    if (bitmap.pgsize !== pgsize) fail("EINVAL", "bitmap pgsize is not the smallest page size");
    if (iova & (pgsize - 1n)) fail("EINVAL", "iova not aligned");
    if (!size || size & (pgsize - 1n)) fail("EINVAL", "bad size");
    if (!this.dirtyPageTracking) fail("EINVAL", "dirty tracking is off");
    // vfio_iova_dirty_bitmap: the range must not bisect a mapping
    const first = this.findDma(iova, 1n);
    if (first && first.iova !== iova) fail("EINVAL", "range starts inside a mapping");
    const last = this.dmaList.first(iova + size - 1n, iova + size - 1n);
    if (last && last.iova + last.size !== iova + size) fail("EINVAL", "range ends inside a mapping");
    for (const dma of this.dmaList.intersecting(iova, iova + size - 1n)) {
      this.updateUserBitmap(bitmap.data, dma, iova, pgsize);
      // re-arm: pinned pages stay dirty, everything else starts clean
      (dma.bitmap as Uint8Array).fill(0);
      this.populateBitmap(dma, pgsize);
    }
  }

  /** vfio_dma_populate_bitmap: the pages pinned by emulated devices are dirty. */
  private populateBitmap(dma: VfioDma, pgsize: bigint): void {
    const bm = dma.bitmap as Uint8Array;
    for (const idx of dma.pfnList.keys()) {
      const bit = Number((BigInt(idx) * PAGE) / pgsize);
      bm[bit >> 3] |= 1 << (bit & 7);
    }
  }

  /** vfio_iommu_populate_bitmap_full: every page of every mapping is dirty. */
  private populateBitmapFull(): void {
    const pgsize = this.pgsize;
    for (const dma of this.dmaList.all()) if (dma.bitmap) setBits(dma.bitmap, 0, Number(dma.size / pgsize));
  }

  /**
   * update_user_bitmap: place the mapping's bits at bit (iova - base) / pgsize of the user's bitmap.
   * Like the kernel it writes whole u64 words: the bits below the mapping's first bit in the first
   * word are read back from the user and kept, the bits after its last bit in the last word are zeroed.
   */
  private updateUserBitmap(data: bigint, dma: VfioDma, baseIova: bigint, pgsize: bigint): void {
    const bm = dma.bitmap as Uint8Array;
    const nbits = Number(dma.size / pgsize);
    if (this.numNonPinnedGroups && dma.iommuMapped) setBits(bm, 0, nbits);
    const bitOffset = Number((dma.iova - baseIova) / pgsize);
    const copyOffset = Math.floor(bitOffset / 64);
    const shift = bitOffset % 64;
    const out = new Uint8Array(bitmapBytes(nbits + shift));
    for (let i = 0; i < nbits; i++) if (bm[i >> 3] & (1 << (i & 7))) setBits(out, i + shift, 1);
    const at = data + BigInt(copyOffset * 8);
    if (shift) {
      const leftover = this.readUser(at, 8);
      for (let i = 0; i < shift; i++) if (leftover[i >> 3] & (1 << (i & 7))) setBits(out, i, 1);
    }
    this.writeUser(at, out);
  }

  private readUser(ptr: bigint, len: number): Uint8Array {
    try {
      return this.current().read(Number(ptr), len);
    } catch (e) {
      if (e instanceof IommuError) fail("EFAULT", "bad user pointer");
      throw e;
    }
  }

  private writeUser(ptr: bigint, data: Uint8Array): void {
    try {
      this.current().write(Number(ptr), data);
    } catch (e) {
      if (e instanceof IommuError) fail("EFAULT", "bad user pointer");
      throw e;
    }
  }

  // ---------------------------------------------------------------- attach / detach

  /** Attach could pin; reserved regions must not cover mappings; the aperture must keep them. */
  attachGroup(ref: Type1GroupRef): void {
    if (this.vaddrInvalidCount) fail("EBUSY", "vaddrs are invalidated (VFIO_DMA_UNMAP_FLAG_VADDR)");
    if (this.findIommuGroup(ref.iommuGroup)) fail("EINVAL", "the group is already in this container");
    if (ref.type === VFIO_EMULATED_IOMMU) {
      const g = new VfioIommuGroup(ref, null);
      g.pinnedPageDirtyScope = true;
      this.emulatedGroups.unshift(g);
      return;
    }
    const backing = backingGroup(ref);
    const g = new VfioIommuGroup(ref, backing);
    // seeds/004: the backing IOMMU group is already attached in this container -> share it
    for (const d of this.domains) {
      const obj = d.findGroupObject(backing);
      if (!obj) continue;
      obj.count++;
      d.groupList.unshift(g);
      this.numNonPinnedGroups++;
      return;
    }
    const dev = ref.iommuDevice ?? backing.devices[0];
    if (!dev) fail("ENODEV", "the IOMMU group has no device");
    if (this.nesting) fail("EINVAL", `${dev.driver.name} cannot enable nesting on a domain`);
    const domain = dev.driver.domainAllocPaging(dev);
    try {
      coreAttachGroup(domain, backing);
    } catch (e) {
      domain.free();
      throw e;
    }
    try {
      if (this.iovaList.aperConflict(domain.apertureStart, domain.apertureEnd, (s, n) => this.findDma(s, n) !== undefined))
        fail("EINVAL", "the domain's aperture conflicts with the container's mappings");
      const regions = groupResvRegions(backing);
      if (this.resvConflict(regions)) fail("EINVAL", "a reserved region of the group covers an existing mapping");
      const copy = this.iovaList.copy();
      copy.aperResize(domain.apertureStart, domain.apertureEnd);
      copy.resvExclude(regions);
      const msiBase = swMsiBase(regions);
      if (!this.params.allowUnsafeInterrupts && !this.params.isolatedMsi(backing))
        fail("EPERM", "no interrupt remapping; the allow_unsafe_interrupts module parameter would allow it");
      const vd = new VfioDomain(domain);
      // try to move the group into an existing compatible domain
      for (const d of this.domains) {
        if (d.domain.driver !== domain.driver || d.enforceCacheCoherency !== vd.enforceCacheCoherency) continue;
        coreDetachGroup(backing);
        try {
          coreAttachGroup(d.domain, backing);
        } catch (e) {
          if (!(e instanceof IommuError)) throw e;
          coreAttachGroup(domain, backing);
          continue;
        }
        d.groupList.unshift(g);
        d.groupObjects.push(new VfioGroupObject(backing, d));
        this.iovaList = copy;
        this.numNonPinnedGroups++;
        domain.free();
        return;
      }
      this.replay(vd);
      if (msiBase !== null) iommuGetMsiCookie(domain, msiBase);
      vd.groupList.unshift(g);
      vd.groupObjects.push(new VfioGroupObject(backing, vd));
      this.domains.unshift(vd);
      this.updatePgsizeBitmap();
      this.iovaList = copy;
      this.numNonPinnedGroups++;
    } catch (e) {
      if (backing.domain === domain) coreDetachGroup(backing);
      domain.free();
      throw e;
    }
  }

  /** vfio_iommu_resv_conflict */
  private resvConflict(regions: readonly ResvRegion[]): boolean {
    return regions.some((r) => r.type !== ResvType.DIRECT_RELAXABLE && this.findDma(r.start, r.length) !== undefined);
  }

  /** vfio_iommu_replay: map every mapping into a new domain, pinning those never pinned (all or nothing). */
  private replay(vd: VfioDomain): void {
    const mapped: VfioDma[] = [];
    const pinnedHere: VfioDma[] = [];
    try {
      for (const dma of this.dmaList.all()) {
        if (!dma.iommuMapped) {
          dma.runs = pinRemote(this.phys, dma, this.current(), 0, dma.npages);
          pinnedHere.push(dma);
        }
        this.mapInto(vd.domain, dma.iova, dma.runs, dma.prot);
        mapped.push(dma);
      }
    } catch (e) {
      for (const dma of mapped) this.unmapFrom(vd.domain, dma);
      for (const dma of pinnedHere) {
        unpinRemote(this.phys, dma, 0, dma.npages, dma.runs, true);
        dma.runs = [];
      }
      throw e;
    }
    for (const dma of this.dmaList.all()) dma.iommuMapped = true;
  }

  /** Detach cannot fail. The backing IOMMU group is detached only when its last VFIO group goes. */
  detachGroup(ref: Type1GroupRef): void {
    let updateDirtyScope = false;
    const ei = this.emulatedGroups.findIndex((g) => g.iommuGroup === ref.iommuGroup);
    if (ei >= 0) {
      const [g] = this.emulatedGroups.splice(ei, 1);
      updateDirtyScope = !g.pinnedPageDirtyScope;
      if (this.emulatedGroups.length === 0 && this.domains.length === 0) this.unmapUnpinAll();
    } else {
      const copy = this.iovaList.copy();
      for (const d of this.domains) {
        const g = d.findGroup(ref.iommuGroup);
        if (!g) continue;
        d.groupList.splice(d.groupList.indexOf(g), 1);
        const obj = d.findGroupObject(g.backing as IommuGroup);
        assert(obj, "group object of an attached group");
        if (--obj.count === 0) {
          d.groupObjects.splice(d.groupObjects.indexOf(obj), 1);
          coreDetachGroup(obj.iommuGroup);
        }
        updateDirtyScope = !g.pinnedPageDirtyScope;
        if (d.groupList.length === 0) {
          if (this.domains.length === 1) {
            if (this.emulatedGroups.length === 0) this.unmapUnpinAll();
            else this.unmapUnpinReaccount();
          }
          iommuPutDmaCookie(d.domain);
          d.domain.free();
          this.domains.splice(this.domains.indexOf(d), 1);
          copy.aperExpand(this.domains.map((x) => ({ start: x.domain.apertureStart, end: x.domain.apertureEnd })));
          this.updatePgsizeBitmap();
        }
        break;
      }
      const regions: ResvRegion[] = [];
      for (const d of this.domains) for (const x of d.groupList) regions.push(...groupResvRegions(x.backing as IommuGroup));
      try {
        copy.resvRefresh(regions);
        this.iovaList = copy;
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    }
    if (updateDirtyScope) {
      this.numNonPinnedGroups--;
      if (this.dirtyPageTracking) this.populateBitmapFull();
    }
  }

  /** vfio_iommu_type1_release: the container lost its last group (or was torn down). */
  release(): void {
    this.emulatedGroups.length = 0;
    this.unmapUnpinAll();
    for (const d of this.domains) {
      for (const o of d.groupObjects) coreDetachGroup(o.iommuGroup);
      d.groupObjects.length = 0;
      d.groupList.length = 0;
      iommuPutDmaCookie(d.domain);
    }
    this.domains.length = 0;
    this.iovaList = new IovaList();
  }

  // ---------------------------------------------------------------- emulated devices (mdev vendor drivers)

  registerDevice(dev: Type1Device): void {
    this.devices.push(dev);
  }

  unregisterDevice(dev: Type1Device): void {
    const i = this.devices.indexOf(dev);
    if (i >= 0) this.devices.splice(i, 1);
  }

  /**
   * vfio_iommu_type1_pin_pages: pin npage pages from user_iova for an emulated device; returns their
   * pfns. The pages come from the mapping owner's address space; they are charged only when no
   * IOMMU-backed domain exists (otherwise the mapping already pinned and charged them).
   */
  pinPages(iommuGroup: IommuGroup, userIova: bigint, npage: number, prot: number): number[] {
    if (!this.v2) fail("EACCES", "vfio_pin_pages needs TYPE1v2");
    if (this.vaddrInvalidCount) fail("EBUSY", "vaddrs are invalidated");
    if (this.devices.length === 0) fail("EINVAL", "no device registered a dma_unmap callback");
    const doAccounting = this.domains.length === 0;
    const pfns: number[] = [];
    const undo = (k: number): void => {
      for (let j = 0; j < k; j++) this.unpinPageExternal(userIova + BigInt(j) * PAGE, doAccounting);
    };
    for (let i = 0; i < npage; i++) {
      const iova = userIova + BigInt(i) * PAGE;
      const dma = this.findDma(iova, PAGE);
      try {
        if (!dma) fail("EINVAL", "no mapping at this IOVA");
        if ((dma.prot & prot) !== prot) fail("EPERM", "the mapping does not allow this access");
        const idx = dma.pageIndex(iova);
        const v = dma.pfnList.get(idx);
        if (v) {
          v.refCount++;
          pfns.push(v.pfn);
          continue;
        }
        const owner = dma.task;
        if (!owner.mm.alive) fail("ENODEV", "the mapping's process has exited");
        const runs = owner.mm.pinPages(Number(dma.vaddr + BigInt(idx) * PAGE), 1, (dma.prot & IOMMU_WRITE) !== 0);
        if (doAccounting) {
          try {
            lockAcct(dma, 1);
          } catch (e) {
            this.phys.unpinRuns(runs);
            throw e;
          }
        }
        dma.pfnList.set(idx, { pfn: runs[0], refCount: 1 });
        pfns.push(runs[0]);
        if (this.dirtyPageTracking && dma.bitmap) {
          const bit = Number((BigInt(idx) * PAGE) / this.pgsize);
          dma.bitmap[bit >> 3] |= 1 << (bit & 7);
        }
      } catch (e) {
        undo(i);
        throw e;
      }
    }
    const group = this.findIommuGroup(iommuGroup);
    if (group && !group.pinnedPageDirtyScope) {
      group.pinnedPageDirtyScope = true;
      this.numNonPinnedGroups--;
    }
    return pfns;
  }

  /**
   * vfio_iommu_type1_dma_rw: copy through the mappings' user memory chunk by chunk (mapping by
   * mapping). A kernel thread (from = null) adopts the owner's mm; a process can only reach
   * mappings of its own mm (EFAULT otherwise). Writes set the dirty bits of the pages they touch
   * while dirty tracking is on. Chunks already copied stay copied when a later one fails.
   */
  dmaRw(userIova: bigint, data: Uint8Array, write: boolean, from: Process | null): void {
    if (this.vaddrInvalidCount) fail("EBUSY", "vfio_dma_rw is not allowed while vaddrs are invalidated");
    let off = 0;
    let iova = userIova;
    while (off < data.length) {
      const dma = this.findDma(iova, 1n);
      if (!dma) fail("EINVAL", "no mapping at this IOVA");
      if ((write && !(dma.prot & IOMMU_WRITE)) || !(dma.prot & IOMMU_READ)) fail("EPERM", "the mapping does not allow this access");
      const owner = dma.task;
      if (!owner.mm.alive) fail("EPERM", "the mapping's process has exited");
      if (from && from.mm !== owner.mm) fail("EFAULT", "the mapping belongs to another address space");
      const offset = iova - dma.start;
      const left = BigInt(data.length - off);
      const count = Number(left < dma.size - offset ? left : dma.size - offset);
      const va = Number(dma.vaddr + offset);
      const chunk = data.subarray(off, off + count);
      try {
        if (write) owner.write(va, chunk);
        else chunk.set(owner.read(va, count));
      } catch (e) {
        if (e instanceof IommuError) fail("EFAULT", "the mapping's user memory is not accessible");
        throw e;
      }
      if (write && this.dirtyPageTracking && dma.bitmap) {
        const first = Number(offset / this.pgsize);
        const last = Number((offset + BigInt(count) - 1n) / this.pgsize);
        for (let bit = first; bit <= last; bit++) dma.bitmap[bit >> 3] |= 1 << (bit & 7);
      }
      off += count;
      iova += BigInt(count);
    }
  }

  /** vfio_iommu_type1_unpin_pages */
  unpinPages(userIova: bigint, npage: number): void {
    if (!this.v2) return;
    const doAccounting = this.domains.length === 0;
    for (let i = 0; i < npage; i++) {
      const iova = userIova + BigInt(i) * PAGE;
      if (!this.findDma(iova, PAGE)) break;
      this.unpinPageExternal(iova, doAccounting);
    }
  }

  private unpinPageExternal(iova: bigint, doAccounting: boolean): void {
    const dma = this.findDma(iova, PAGE);
    if (!dma) return;
    const idx = dma.pageIndex(iova);
    const v = dma.pfnList.get(idx);
    if (!v) return;
    if (--v.refCount > 0) return;
    this.phys.unpin(v.pfn, 1);
    dma.pfnList.delete(idx);
    if (doAccounting) lockAcct(dma, -1);
  }
}

function lowestBitOr1(x: bigint): bigint {
  return x > 0n ? lowestBit(x) : 1n;
}

/** verify_bitmap_size: a non-empty bitmap of whole u64 words for npages bits, at most DIRTY_BITMAP_SIZE_MAX. */
function verifyBitmapSize(npages: bigint, bitmapSize: bigint): void {
  if (!npages || !bitmapSize || bitmapSize > DIRTY_BITMAP_SIZE_MAX || bitmapSize < ((npages + 63n) / 64n) * 8n)
    fail("EINVAL", "bad bitmap size");
}

/** access_ok(bitmap.data, bitmap.size) */
function checkUserRange(b: VfioBitmap): void {
  if (b.data + b.size > BigInt(TASK_SIZE)) fail("EINVAL", "bitmap is not in user space");
}

/** DIRTY_BITMAP_BYTES: whole u64 words. */
function bitmapBytes(nbits: number): number {
  return Math.ceil(nbits / 64) * 8;
}

function setBits(bm: Uint8Array, first: number, n: number): void {
  for (let i = first; i < first + n; i++) bm[i >> 3] |= 1 << (i & 7);
}
