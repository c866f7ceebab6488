/**
 * IOMMU domains: the translation contexts a driver provides. Paging domains map IO pages to
 * physical addresses; nested domains sit on a paging parent (stage 1 over stage 2); the blocked
 * domain translates nothing. iommufd's io_pagetable fills paging domains through map()/unmap().
 *
 * Units: IOVAs cross this interface as IO page indices (iova >> pgShift, a plain number: 2^64/2^11
 * still fits a double exactly) and physical addresses as byte numbers.
 */
import type { IommuDriver } from "./driver.js";

export const IOMMU_READ = 1;
export const IOMMU_WRITE = 2;
export const IOMMU_CACHE = 4;

export type DomainType = "paging" | "nested" | "blocked";

export abstract class IommuDomain {
  abstract readonly type: DomainType;
  constructor(readonly driver: IommuDriver) {}
  /** Set by iommufd when the HWPT has a fault object: where I/O page faults go. */
  iopfHandler: ((fault: IopfFault) => void) | null = null;
  /**
   * iommu_domain_free: the last user let go (no device is attached any more). Drivers with
   * hardware give back what the domain held (page tables, ASID/VMID/DID). Called once.
   */
  free(): void {}
}

/** A page request as the IOMMU reports it (prm in the kernel). */
export interface IopfFault {
  deviceKey: unknown;
  pasid: number;
  pasidValid: boolean;
  lastPage: boolean;
  grpid: number;
  perm: number;
  addr: bigint;
}

export abstract class PagingDomain extends IommuDomain {
  readonly type = "paging" as const;
  /** log2 of the smallest IO page size. */
  abstract readonly pgShift: number;
  /** Supported IO page sizes, as a bitmap (bigint: bit 30 for 1 GiB, ...). */
  abstract readonly pgsizeBitmap: bigint;
  abstract readonly apertureStart: bigint;
  abstract readonly apertureEnd: bigint;
  /** Non-null when the domain was allocated with dirty tracking support (dirty_ops). */
  abstract readonly dirtyOps: boolean;
  /** Whether the domain enforces cache coherency (IOMMU_CAP_ENFORCE_CACHE_COHERENCY). */
  enforceCacheCoherency = true;

  /**
   * Map n IO pages at IO page index iova to physically contiguous memory starting at byte pa.
   * smallOnly: the caller wants PAGE_SIZE-or-smaller IOPTEs (huge pages disabled).
   */
  abstract map(iova: number, pa: number, n: number, prot: number, smallOnly: boolean): void;
  abstract unmap(iova: number, n: number): void;
  /** Physical byte address behind IO page index iova, or -1. */
  abstract iovaToPhys(iova: number): number;
  /** Permission bits of the IOPTE at iova, or 0. */
  abstract protAt(iova: number): number;
  /** Number of IO pages currently mapped (for leak checks and reports). */
  abstract mappedPages(): number;

  setDirtyTracking(_enable: boolean): void {
    throw new Error("no dirty ops");
  }
  /**
   * Walk [iova, iova+n) IO pages; for every dirty IOPTE call record(firstIoPage, nIoPages) with the
   * IOPTE's whole extent and clear it unless noClear. Throws EINVAL-like errors as the driver does.
   */
  readAndClearDirty(_iova: number, _n: number, _noClear: boolean, _record: ((first: number, n: number) => void) | null): void {
    throw new Error("no dirty ops");
  }
}

export abstract class NestedDomain extends IommuDomain {
  readonly type = "nested" as const;
  constructor(driver: IommuDriver, readonly parent: PagingDomain) {
    super(driver);
  }
}

export class BlockedDomain extends IommuDomain {
  readonly type = "blocked" as const;
}
