/** The operations an IOMMU driver provides to the core and to iommufd (struct iommu_ops). */
import type { IommuDomain, IopfFault, NestedDomain, PagingDomain } from "./domain.js";
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
  /**
   * Copy bytes back to the start of the user buffer (iommu_copy_struct_to_user: at most len bytes
   * are written); throws EFAULT. Undefined when the caller's data is input only.
   */
  write?(bytes: Uint8Array): void;
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

/**
 * Where a vIOMMU's driver reports events for user space (iommufd_viommu_report_event): iommufd
 * queues the payload on the vIOMMU's vEVENTQ of that type, if there is one (else it is dropped).
 */
export interface ViommuEventSink {
  report(veventqType: number, payload: Uint8Array): void;
}

/**
 * A vIOMMU as its driver sees it (struct iommufd_viommu_ops): the per-VM slice of a physical
 * IOMMU that nested domains, vDEVICEs and invalidations go through. Allocated by
 * IommuDriver.viommuAlloc on a NEST_PARENT paging domain.
 */
export interface ViommuOps {
  /** The IOMMU_VIOMMU_TYPE_* it was allocated as. */
  readonly type: number;
  /** HWPT_ALLOC with pt_id = this vIOMMU: a nested domain (flags already checked by iommufd). */
  allocDomainNested(dev: Device, flags: number, data: UserData): NestedDomain;
  /** HWPT_INVALIDATE on the vIOMMU: entries handled and the first error, as cacheInvalidateUser. */
  cacheInvalidate?(array: UserDataArray): { done: number; error: Error | null };
  /** VDEVICE_ALLOC: dev gets virtual ID virtId (vSID, vRID...) on this vIOMMU. Throws IommuError. */
  vdeviceInit?(dev: Device, virtId: bigint): void;
  /** The vDEVICE of dev goes away (destroy, or its device is unbound). */
  vdeviceDestroy?(dev: Device): void;
  /** The vIOMMU is destroyed (after every nested domain and vDEVICE on it). */
  destroy(): void;
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
  /**
   * VIOMMU_ALLOC of `type` for dev on the NEST_PARENT domain parent (undefined: the driver has no
   * vIOMMU; a type it does not know: throw EOPNOTSUPP). Events go to sink.
   */
  viommuAlloc?(dev: Device, parent: PagingDomain, type: number, data: UserData | null, sink: ViommuEventSink): ViommuOps;
  /**
   * get_viommu_size(dev, type) != 0: whether viommuAlloc knows `type`. iommufd asks before it looks
   * the parent HWPT up (an unknown type is EOPNOTSUPP even with a bad hwpt_id). Undefined: every
   * type is tried through viommuAlloc.
   */
  viommuTypeSupported?(dev: Device, type: number): boolean;
  /**
   * set_dev_pasid: make domain translate dev's requests with `pasid` (replacing what was there;
   * throw and leave it when the device or domain cannot). Undefined: no PASID support.
   */
  setDevPasid?(domain: IommuDomain, dev: Device, pasid: number): void;
  /** remove_dev_pasid: requests with pasid are blocked again. */
  removeDevPasid?(dev: Device, pasid: number): void;
  /**
   * page_response: software answered the page request group that `last` (the group's last fault,
   * as the driver reported it through the domain's iopfHandler) belongs to; code is
   * IOMMUFD_PAGE_RESP_SUCCESS 0, _INVALID 1 or the kernel's FAILURE 2. The driver tells the
   * hardware (VT-d page group response, SMMUv3 PRI_RESP / RESUME), which retries or aborts the DMA.
   */
  pageResponse?(dev: Device, last: IopfFault, code: number): void;
  /**
   * iommu_dev_enable_feature(IOMMU_DEV_FEAT_IOPF): let dev's faults become page requests / stalls
   * that reach the domain's iopfHandler (VT-d: ATS + PRI and PRE in the context entry; SMMUv3: stall
   * or PRI). Throws when the device cannot. Undefined: nothing to turn on (the selftest mock).
   */
  enableIopf?(dev: Device): void;
  disableIopf?(dev: Device): void;
  /** release_device: dev goes away (Device.unplug); the driver forgets it and frees what it held. */
  releaseDevice?(dev: Device): void;
}
