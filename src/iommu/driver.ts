/** The operations an IOMMU driver provides to the core and to iommufd (struct iommu_ops). */
import type { IommuDomain, NestedDomain, PagingDomain } from "./domain.js";
import type { Device } from "./device.js";

export const enum IommuCap {
  CACHE_COHERENCY = 1,
  DIRTY_TRACKING = 2,
  ENFORCE_CACHE_COHERENCY = 3,
}

/**
 * Driver data from user space for a HWPT allocation (struct iommu_user_data). Nothing is read
 * until the driver copies it, after its own type and length checks, as the kernel does.
 */
export interface UserData {
  type: number;
  len: number;
  /** Copy the first n bytes (n <= len) from user memory; throws EFAULT if they cannot be read. */
  read(n: number): Uint8Array;
}

/** The request array of HWPT_INVALIDATE: reads one entry at a time, as the kernel's copy helpers do. */
export interface UserDataArray {
  type: number;
  entryLen: number;
  entryNum: number;
  /** Returns the entry bytes or throws EFAULT. */
  entry(index: number): Uint8Array;
}

export interface HwInfo {
  type: number;
  data: Uint8Array;
}

export interface IommuDriver {
  readonly name: string;
  hwInfo(dev: Device): HwInfo | null;
  /** domain_alloc_user: parent null = paging; else nested. Throws IommuError. */
  domainAllocUser(dev: Device, flags: number, parent: PagingDomain | null, data: UserData | null): IommuDomain;
  domainAllocPaging(dev: Device): PagingDomain;
  capable(dev: Device, cap: IommuCap): boolean;
  /** attach_dev: check that dev can use domain (EINVAL when incompatible). */
  attachDev(domain: IommuDomain, dev: Device): void;
  /** cache_invalidate_user for nested domains; returns entries handled, throws after partial progress via onDone. */
  cacheInvalidateUser?(domain: NestedDomain, array: UserDataArray): { done: number; error: Error | null };
}
