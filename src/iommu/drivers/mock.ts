/**
 * The selftest mock IOMMU driver (CONFIG_IOMMUFD_TEST's selftest.c semantics): 2 KiB IO pages on
 * 4 KiB CPU pages, aperture [1<<24, (1<<31)-1], optional 1 MiB IOPTEs, per-IOPTE dirty bits, and a
 * nested domain whose "IOTLB" is four u32 slots.
 */
import { failPoint } from "../../fail-nth.js";
import { fail } from "../../errno.js";
import type { KernelProfile } from "../../iommufd/context.js";
import { ExtentMap } from "../../util/extent-map.js";
import { Device, type DeviceOptions } from "../device.js";
import { IOMMU_READ, IOMMU_WRITE, NestedDomain, PagingDomain, type IommuDomain } from "../domain.js";
import { IommuCap, type HwInfo, type IommuDriver, type UserData, type UserDataArray } from "../driver.js";

export const MOCK_IO_PAGE_SHIFT = 11;
export const MOCK_IO_PAGE_SIZE = 2048;
export const MOCK_HUGE_PAGE_SIZE = 512 * MOCK_IO_PAGE_SIZE;
export const MOCK_APERTURE_START = 1n << 24n;
export const MOCK_APERTURE_LAST = (1n << 31n) - 1n;

export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0;
export const MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1;
export const MOCK_FLAGS_DEVICE_PASID = 1 << 2;
export const MOCK_PASID_WIDTH = 20;

export const IOMMU_HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
export const IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef;
export const IOMMU_HWPT_DATA_SELFTEST = 0xdead;
export const IOMMU_TEST_IOTLB_DEFAULT = 0xbadbeef;
export const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_TEST_INVALIDATE_FLAG_ALL = 1 << 0;
export const MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3;
export const MOCK_NESTED_DOMAIN_IOTLB_NUM = 4;
/** [newer than 6.12] the mock device's per-device cache (IOMMU_TEST_OP_DEV_CHECK_CACHE). */
export const MOCK_DEV_CACHE_ID_MAX = 3;
export const MOCK_DEV_CACHE_NUM = 4;
export const IOMMU_TEST_DEV_CACHE_DEFAULT = 0xbaddad;
/**
 * sizeof(struct iommu_hwpt_selftest) by kernel: 6.12 has { iotlb } (4 bytes); the newest kernel
 * (iommupt era) adds pagetable_type (8 bytes), which a nested allocation ignores.
 */
export const HWPT_SELFTEST_SIZE: Readonly<Record<KernelProfile, number>> = { "6.12": 4, newest: 8 };

const HWPT_ALLOC_NEST_PARENT = 1 << 0;
const HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;

/** Tag bits stored with each run of IOPTEs. */
const TAG_PROT_MASK = IOMMU_READ | IOMMU_WRITE;
const TAG_HUGE = 1 << 8;
const HUGE_IO_PAGES = MOCK_HUGE_PAGE_SIZE / MOCK_IO_PAGE_SIZE; // 512

export class MockPagingDomain extends PagingDomain {
  readonly pgShift = MOCK_IO_PAGE_SHIFT;
  readonly pgsizeBitmap: bigint;
  readonly apertureStart = MOCK_APERTURE_START;
  readonly apertureEnd = MOCK_APERTURE_LAST;
  readonly dirtyOps: boolean;
  /** MOCK_DIRTY_TRACK */
  dirtyTracking = false;
  /** IO page index -> physical byte address, tagged with prot | TAG_HUGE. */
  readonly ptes = new ExtentMap(true, MOCK_IO_PAGE_SIZE);
  /** Dirty bits per IO page index: word index (idx / 32) -> 32 bits. */
  readonly dirty = new Map<number, number>();

  constructor(driver: IommuDriver, readonly huge: boolean, dirtyOps: boolean) {
    super(driver);
    this.dirtyOps = dirtyOps;
    this.pgsizeBitmap = BigInt(MOCK_IO_PAGE_SIZE) | (huge ? BigInt(MOCK_HUGE_PAGE_SIZE) : 0n);
    this.enforceCacheCoherency = false;
  }

  map(iova: number, pa: number, n: number, prot: number, smallOnly: boolean): void {
    // mock_domain_map_pages: iommufd_should_fail() -> ENOENT (nothing of this call is left mapped)
    failPoint("ENOENT", "mock_domain_map_pages");
    const tag = prot & TAG_PROT_MASK;
    if (!this.huge || smallOnly) {
      this.ptes.set(iova, n, pa, tag);
      return;
    }
    // iommu_pgsize(): the largest page size that iova, pa and the remaining length allow.
    let cur = iova;
    let p = pa;
    let left = n;
    while (left > 0) {
      const ivaAligned = cur % HUGE_IO_PAGES === 0;
      const paAligned = p % MOCK_HUGE_PAGE_SIZE === 0;
      if (ivaAligned && paAligned && left >= HUGE_IO_PAGES) {
        const k = Math.floor(left / HUGE_IO_PAGES) * HUGE_IO_PAGES;
        this.ptes.set(cur, k, p, tag | TAG_HUGE);
        cur += k;
        p += k * MOCK_IO_PAGE_SIZE;
        left -= k;
        continue;
      }
      // small pages up to the next point where a huge page could start
      let k = left;
      const congruent = (cur * MOCK_IO_PAGE_SIZE - p) % MOCK_HUGE_PAGE_SIZE === 0;
      if (congruent) {
        const toBoundary = HUGE_IO_PAGES - (cur % HUGE_IO_PAGES);
        if (toBoundary < k && toBoundary > 0) k = toBoundary;
      }
      this.ptes.set(cur, k, p, tag);
      cur += k;
      p += k * MOCK_IO_PAGE_SIZE;
      left -= k;
    }
  }

  unmap(iova: number, n: number): void {
    this.ptes.delete(iova, n);
    if (this.dirty.size) for (let i = iova; i < iova + n; ) {
      const w = Math.floor(i / 32);
      const bits = this.dirty.get(w);
      if (bits === undefined) {
        i = (w + 1) * 32;
        continue;
      }
      const lo = i - w * 32;
      const hi = Math.min(32, iova + n - w * 32);
      let mask = 0;
      for (let b = lo; b < hi; b++) mask |= 1 << b;
      const nb = bits & ~mask;
      if (nb) this.dirty.set(w, nb);
      else this.dirty.delete(w);
      i = w * 32 + hi;
    }
  }

  iovaToPhys(iova: number): number {
    return this.ptes.get(iova) ?? -1;
  }

  protAt(iova: number): number {
    const t = this.ptes.tagAt(iova);
    return t === undefined ? 0 : t & TAG_PROT_MASK;
  }

  isHugeAt(iova: number): boolean {
    const t = this.ptes.tagAt(iova);
    return t !== undefined && (t & TAG_HUGE) !== 0;
  }

  mappedPages(): number {
    return this.ptes.covered;
  }

  isDirty(idx: number): boolean {
    const w = this.dirty.get(Math.floor(idx / 32));
    return w !== undefined && (w & (1 << (idx % 32))) !== 0;
  }

  setDirtyBit(idx: number, on: boolean): void {
    const k = Math.floor(idx / 32);
    const w = this.dirty.get(k) ?? 0;
    const nw = on ? w | (1 << (idx % 32)) : w & ~(1 << (idx % 32));
    if (nw) this.dirty.set(k, nw);
    else this.dirty.delete(k);
  }

  override setDirtyTracking(enable: boolean): void {
    if (enable && !this.dirtyOps) fail("EINVAL", "domain has no dirty tracking");
    this.dirtyTracking = enable;
  }

  override readAndClearDirty(iova: number, n: number, noClear: boolean, record: ((first: number, n: number) => void) | null): void {
    if (!this.dirtyTracking && record) fail("EINVAL", "dirty tracking is not enabled");
    const end = iova + n;
    let cur = iova;
    do {
      if (!this.ptes.has(cur)) {
        cur += 1;
        continue;
      }
      const pg = this.isHugeAt(cur) ? HUGE_IO_PAGES : 1;
      const head = cur - (cur % pg);
      let dirty = false;
      // mock_test_and_clear_dirty() visits every IOPTE of the (possibly huge) page
      for (let i = head; i < head + pg; i++) {
        if (!this.isDirty(i) || !this.ptes.has(i)) continue;
        dirty = true;
        if (!noClear) this.setDirtyBit(i, false);
      }
      if (dirty && record) record(cur, pg);
      cur += pg;
    } while (cur < end);
  }
}

export class MockNestedDomain extends NestedDomain {
  readonly iotlb = new Uint32Array(MOCK_NESTED_DOMAIN_IOTLB_NUM);
  constructor(driver: IommuDriver, parent: MockPagingDomain, iotlb: number) {
    super(driver, parent);
    this.iotlb.fill(iotlb >>> 0);
  }
}

function u32(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

export class MockIommuDriver implements IommuDriver {
  readonly name = "mock";

  /** Size of struct iommu_hwpt_selftest the kernel of this device's creator knows. */
  hwptSelftestSize(dev: Device): number {
    return HWPT_SELFTEST_SIZE[mockDevProfile.get(dev) ?? "newest"];
  }

  hwInfo(_dev: Device): HwInfo {
    const data = new Uint8Array(8);
    new DataView(data.buffer).setUint32(4, IOMMU_HW_INFO_SELFTEST_REGVAL, true);
    return { type: IOMMU_HW_INFO_TYPE_SELFTEST, data };
  }

  domainAllocPaging(dev: Device): MockPagingDomain {
    return new MockPagingDomain(this, (dev.flags & MOCK_FLAGS_DEVICE_HUGE_IOVA) !== 0, false);
  }

  domainAllocUser(dev: Device, flags: number, parent: PagingDomain | null, data: UserData | null): IommuDomain {
    if (!parent) {
      const hasDirty = (flags & HWPT_ALLOC_DIRTY_TRACKING) !== 0;
      const noDirtyOps = (dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY) !== 0;
      if (flags & ~(HWPT_ALLOC_NEST_PARENT | HWPT_ALLOC_DIRTY_TRACKING)) fail("EOPNOTSUPP", "unsupported paging flags");
      if (data || (hasDirty && noDirtyOps)) fail("EOPNOTSUPP", "mock paging domains take no data / device lacks dirty tracking");
      return new MockPagingDomain(this, (dev.flags & MOCK_FLAGS_DEVICE_HUGE_IOVA) !== 0, hasDirty);
    }
    if (!data || data.type !== IOMMU_HWPT_DATA_SELFTEST || flags) fail("EOPNOTSUPP", "nested mock needs selftest data and no flags");
    if (!(parent instanceof MockPagingDomain)) fail("EINVAL", "parent is not a mock domain");
    // iommu_copy_struct_from_user(&cfg, data, SELFTEST, iotlb): min 4, max sizeof
    const size = this.hwptSelftestSize(dev);
    if (data.len < 4 || data.len > size) fail("EINVAL", "bad iommu_hwpt_selftest length");
    const cfg = new Uint8Array(size);
    cfg.set(data.read(data.len));
    return new MockNestedDomain(this, parent, u32(cfg, 0));
  }

  capable(dev: Device, cap: IommuCap): boolean {
    if (cap === IommuCap.CACHE_COHERENCY) return true;
    if (cap === IommuCap.DIRTY_TRACKING) return (dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY) === 0;
    return false;
  }

  attachDev(domain: IommuDomain, dev: Device): void {
    if (domain instanceof MockPagingDomain && domain.dirtyOps && dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY)
      fail("EINVAL", "device cannot do dirty tracking");
  }

  cacheInvalidateUser(domain: NestedDomain, array: UserDataArray): { done: number; error: Error | null } {
    const nested = domain as MockNestedDomain;
    let done = 0;
    try {
      if (array.type !== IOMMU_HWPT_INVALIDATE_DATA_SELFTEST) fail("EINVAL", "wrong invalidation data type");
      for (let i = 0; i < array.entryNum; i++) {
        // iommu_copy_struct_from_user_array(.., iotlb_id): min 8, sizeof 8
        if (array.entryLen < 8 || array.entryLen > 8) fail("EINVAL", "bad entry_len");
        const e = array.entry(i);
        const flags = u32(e, 0);
        const id = u32(e, 4);
        if (flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL) fail("EOPNOTSUPP", "unknown invalidation flags");
        if (id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX) fail("EINVAL", "iotlb_id out of range");
        if (flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) nested.iotlb.fill(0);
        else nested.iotlb[id] = 0;
        done++;
      }
    } catch (e) {
      return { done, error: e as Error };
    }
    return { done, error: null };
  }
}

/** The one mock IOMMU instance (the kernel registers a single mock_iommu_device). */
export const mockIommu = new MockIommuDriver();

let mockDevIds = 0;

/** Devices made by createMockDevice (iommufd_selftest_is_mock_dev: the release function is the mock's). */
const mockDevs = new WeakSet<Device>();

export function isMockDevice(dev: Device): boolean {
  return mockDevs.has(dev);
}

/**
 * The kernel profile a mock device was created under (the driver is one instance shared by all
 * contexts; its answers that differ by kernel look the profile up per device; default newest).
 */
const mockDevProfile = new WeakMap<Device, KernelProfile>();
/** struct mock_dev cache[MOCK_DEV_CACHE_NUM] [newer than 6.12]. */
const mockDevCaches = new WeakMap<Device, Uint32Array>();

/** The per-device cache slots of a mock device (null for any other device). */
export function mockDevCache(dev: Device): Uint32Array | null {
  return mockDevCaches.get(dev) ?? null;
}

/** Device flags mock_dev_create accepts, by kernel: MOCK_FLAGS_DEVICE_PASID is [newer than 6.12]. */
export function mockDeviceFlags(profile: KernelProfile): number {
  return MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_HUGE_IOVA | (profile === "6.12" ? 0 : MOCK_FLAGS_DEVICE_PASID);
}

/**
 * mock_dev_create: a device on the mock bus, alone in its group. An unknown flag is EINVAL (under
 * "6.12" that includes MOCK_FLAGS_DEVICE_PASID); a PASID device has max_pasids 1 << MOCK_PASID_WIDTH.
 */
export function createMockDevice(flags: number, opts?: { profile?: KernelProfile }): Device {
  const profile = opts?.profile ?? "newest";
  if (flags & ~mockDeviceFlags(profile)) fail("EINVAL", "unknown mock device flags");
  const o: DeviceOptions = {
    name: `iommufd_mock${mockDevIds++}`,
    driver: mockIommu,
    flags,
    maxPasidLog2: flags & MOCK_FLAGS_DEVICE_PASID ? MOCK_PASID_WIDTH : 0,
  };
  const dev = new Device(o);
  mockDevs.add(dev);
  mockDevProfile.set(dev, profile);
  mockDevCaches.set(dev, new Uint32Array(MOCK_DEV_CACHE_NUM).fill(IOMMU_TEST_DEV_CACHE_DEFAULT));
  return dev;
}
