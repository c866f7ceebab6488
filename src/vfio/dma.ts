/**
 * Type1's DMA mapping records (struct vfio_dma) and its own page pinning and locked-memory
 * accounting (vfio_pin_pages_remote, vfio_unpin_pages_remote, vfio_lock_acct): unlike iommufd,
 * type1 pins every page of a mapping once per mapping (two mappings of the same memory pin and
 * charge it twice), charges the pinning process's mm->locked_vm against RLIMIT_MEMLOCK unless it had
 * CAP_IPC_LOCK when it mapped, and remembers the frames itself.
 */
import { fail } from "../errno.js";
import { IOMMU_WRITE } from "../iommu/domain.js";
import type { Range } from "../iopt/ranges.js";
import { PAGE_SIZE, TASK_SIZE, type PfnRuns, type PhysMem, type Process } from "../mm/index.js";

const PAGE = BigInt(PAGE_SIZE);

/** struct vfio_pfn: a page pinned for an emulated (mdev) device through vfio_pin_pages. */
export interface VfioPfn {
  pfn: number;
  refCount: number;
}

/** struct vfio_dma */
export class VfioDma implements Range {
  /** IOVA of the first byte. */
  readonly start: bigint;
  readonly last: bigint;
  readonly size: bigint;
  /** IOMMU_READ | IOMMU_WRITE */
  readonly prot: number;
  vaddr: bigint;
  /** The pages are pinned and mapped into every domain of the container. */
  iommuMapped = false;
  /** capable(CAP_IPC_LOCK) of the task that created (or last re-owned) the mapping. */
  lockCap: boolean;
  /** VFIO_DMA_UNMAP_FLAG_VADDR was used and no MAP_DMA with VADDR has renewed it yet. */
  vaddrInvalid = false;
  /** dma->task / dma->mm: whose locked_vm the pins are charged to. */
  task: Process;
  /** Frames pinned for the IOMMU, in page order, while iommuMapped. */
  runs: PfnRuns = [];
  /** Pages currently charged to task's mm (dma->locked_vm). */
  lockedVm = 0;
  /** Pages pinned by emulated devices: page index -> frame and pin count (dma->pfn_list). */
  readonly pfnList = new Map<number, VfioPfn>();
  /** Dirty bitmap, one bit per smallest page, while dirty tracking is on. */
  bitmap: Uint8Array | null = null;

  constructor(iova: bigint, vaddr: bigint, size: bigint, prot: number, task: Process) {
    this.start = iova;
    this.last = iova + size - 1n;
    this.size = size;
    this.vaddr = vaddr;
    this.prot = prot;
    this.task = task;
    this.lockCap = task.caps.ipcLock;
  }

  get iova(): bigint {
    return this.start;
  }

  get npages(): number {
    return Number(this.size / PAGE);
  }

  /** Page index of an IOVA inside the mapping. */
  pageIndex(iova: bigint): number {
    return Number((iova - this.start) / PAGE);
  }

  /** Number of externally pinned pages among page indices [first, first+n). */
  externallyPinned(first: number, n: number): number {
    let k = 0;
    for (const i of this.pfnList.keys()) if (i >= first && i < first + n) k++;
    return k;
  }
}

/**
 * vfio_lock_acct: charge (npage > 0) or uncharge the mapping owner's locked_vm. Charging fails with
 * ENOMEM past RLIMIT_MEMLOCK unless lockCap. An owner whose address space is gone is not charged or
 * uncharged (mmget_not_zero fails).
 */
export function lockAcct(dma: VfioDma, npage: number): void {
  if (!npage) return;
  const p = dma.task;
  if (!p.mm.alive) {
    if (npage > 0) fail("ESRCH", "the mapping's process has exited");
    return;
  }
  if (npage > 0 && !dma.lockCap) {
    const limit = Math.floor(p.rlimitMemlock / PAGE_SIZE);
    if (p.mm.lockedVm + npage > limit) fail("ENOMEM", "RLIMIT_MEMLOCK exceeded");
  }
  p.mm.lockedVm += npage;
  dma.lockedVm += npage;
}

/**
 * vfio_pin_pages_remote for pages [first, first+n) of the mapping, through the calling process's
 * address space: pin (write-pinned if the mapping is device-writable), then charge the pages not
 * already pinned for an emulated device. All or nothing: EFAULT if the range is not mapped with the
 * needed permission, ENOMEM past the caller's RLIMIT_MEMLOCK (unless the mapping has lockCap).
 */
export function pinRemote(phys: PhysMem, dma: VfioDma, current: Process, first: number, n: number): PfnRuns {
  const vaddr = dma.vaddr + BigInt(first) * PAGE;
  if (vaddr + BigInt(n) * PAGE > BigInt(TASK_SIZE)) fail("EFAULT", "address outside user space");
  if (!current.mm.alive) fail("EFAULT", "no address space");
  const runs = current.mm.pinPages(Number(vaddr), n, (dma.prot & IOMMU_WRITE) !== 0);
  const acct = n - dma.externallyPinned(first, n);
  try {
    if (acct && !dma.lockCap) {
      const limit = Math.floor(current.rlimitMemlock / PAGE_SIZE);
      if (current.mm.lockedVm + acct > limit) fail("ENOMEM", "RLIMIT_MEMLOCK exceeded");
    }
    lockAcct(dma, acct);
  } catch (e) {
    phys.unpinRuns(runs);
    throw e;
  }
  return runs;
}

/**
 * vfio_unpin_pages_remote for pages [first, first+n) pinned as `runs`: unpin; with accounting,
 * uncharge the pages that no emulated device still holds. Returns the pages unpinned.
 */
export function unpinRemote(phys: PhysMem, dma: VfioDma, first: number, n: number, runs: PfnRuns, doAccounting: boolean): number {
  phys.unpinRuns(runs);
  if (doAccounting) lockAcct(dma, dma.externallyPinned(first, n) - n);
  return n;
}
