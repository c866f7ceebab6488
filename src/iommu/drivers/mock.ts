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
import {
  IommuCap,
  type HwInfo,
  type IommuDriver,
  type UserData,
  type UserDataArray,
  type ViommuEventSink,
  type ViommuOps,
} from "../driver.js";

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

/** [newer than 6.12] the selftest vIOMMU, its invalidation data and its vEVENTQ type. */
export const IOMMU_VIOMMU_TYPE_SELFTEST = 0xdeadbeef;
export const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID = 0xdadbeef;
export const IOMMU_VEVENTQ_TYPE_SELFTEST = 0xbeefbeef;
/** The PASID whose second set_dev_pasid fails (ENOMEM): the core's rollback test. */
export const IOMMU_TEST_PASID_RESERVED = 1024;
/** sizeof(struct iommu_viommu_selftest) { in_data, out_data, out_mmap_offset, out_mmap_length }. */
export const VIOMMU_SELFTEST_SIZE = 24;
/** sizeof(struct iommu_viommu_invalidate_selftest) { flags, vdev_id, cache_id }. */
export const VIOMMU_INVALIDATE_SELFTEST_SIZE = 12;
/** The mock vIOMMU's mmap region (two pages holding in_data). */
export const MOCK_VIOMMU_MMAP_LENGTH = 2 * 4096;

const HWPT_ALLOC_NEST_PARENT = 1 << 0;
const HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
/** IOMMU_HWPT_ALLOC_PASID [newer than 6.12]: the mock accepts it on paging and nested domains. */
const HWPT_ALLOC_PASID = 1 << 3;

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
  /** The vIOMMU it was allocated on (mock_iommu_domain_nested.mock_viommu), null for a parent-HWPT nest. */
  viommu: MockViommu | null = null;
  constructor(driver: IommuDriver, parent: MockPagingDomain, iotlb: number) {
    super(driver, parent);
    this.iotlb.fill(iotlb >>> 0);
  }
}

/**
 * Services of iommufd's vIOMMU object the mock uses beyond the sink contract (the Viommu object
 * of src/iommufd/viommu.ts provides them; another sink simply lacks them).
 */
export interface MockViommuHost extends ViommuEventSink {
  /** iommufd_viommu_report_event with its result: throws EOPNOTSUPP when no vEVENTQ of `type` exists. */
  reportOrFail?(type: number, payload: Uint8Array): void;
  /** iommufd_viommu_alloc_mmap: an offset of the iommufd fd for `length` bytes of this vIOMMU. */
  allocMmap?(length: number): bigint;
  /** iommufd_viommu_destroy_mmap */
  destroyMmap?(offset: bigint): void;
}

/**
 * iommu_copy_struct_from_user(dst of `size` bytes, data, min): data_len below min is EINVAL;
 * bytes past `size` must be zero (E2BIG); unreadable memory is EFAULT. Returns `size` bytes.
 */
function copyStructFromUser(data: UserData, min: number, size: number): Uint8Array {
  if (data.len < min) fail("EINVAL", "driver data shorter than the driver's minimum");
  const b = data.read(data.len);
  for (let i = size; i < b.length; i++) if (b[i] !== 0) fail("E2BIG", "non-zero bytes past the driver's struct");
  const out = new Uint8Array(size);
  out.set(b.subarray(0, Math.min(size, b.length)));
  return out;
}

/**
 * The mock vIOMMU (struct mock_viommu): nested domains that remember it, the vDEVICEs of its VM
 * (virt_id -> device, as iommufd_viommu_find_dev sees them), a device-cache invalidation and, when
 * allocated with iommu_viommu_selftest data, an mmap region whose first u32 is in_data.
 */
export class MockViommu implements ViommuOps {
  readonly type = IOMMU_VIOMMU_TYPE_SELFTEST;
  /** virt_id -> device (viommu->vdevs). */
  readonly vdevs = new Map<bigint, Device>();
  /** device -> virt_id (iommufd_viommu_get_vdev_id). */
  readonly virtIdOf = new Map<Device, bigint>();
  /** The first u32 of the mmap page (in_data), null without data. */
  page: number | null = null;
  /** The mmap offset handed out (0: none). */
  mmapOffset = 0n;
  destroyed = false;
  constructor(
    readonly driver: MockIommuDriver,
    readonly parent: MockPagingDomain,
    readonly sink: MockViommuHost,
    private readonly profile: KernelProfile,
  ) {}

  /** mock_viommu_alloc_domain_nested: only IOMMU_HWPT_ALLOC_PASID is known; selftest data as for a parent nest. */
  allocDomainNested(_dev: Device, flags: number, data: UserData): MockNestedDomain {
    if (flags & ~HWPT_ALLOC_PASID) fail("EOPNOTSUPP", "unsupported nested flags");
    const d = new MockNestedDomain(this.driver, this.parent, nestedIotlb(data, HWPT_SELFTEST_SIZE[this.profile]));
    d.viommu = this;
    return d;
  }

  /**
   * mock_viommu_cache_invalidate: a zero-length array of the selftest type validates the type;
   * otherwise the whole array is copied first (a wrong type is EINVAL, entry_len other than 12 is
   * read entry by entry with copy_struct_from_user rules), then each entry zeroes a device-cache
   * slot (or all with IOMMU_TEST_INVALIDATE_FLAG_ALL) of the device whose vDEVICE has vdev_id.
   * Unknown flags EOPNOTSUPP, cache_id > 3 or an unknown vdev_id EINVAL; done counts the entries
   * handled before the first error.
   */
  cacheInvalidate(array: UserDataArray): { done: number; error: Error | null } {
    if (array.entryNum === 0 && array.type === IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) return { done: 0, error: null };
    let done = 0;
    try {
      if (array.type !== IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) fail("EINVAL", "wrong invalidation data type");
      const cmds: Uint8Array[] = [];
      for (let i = 0; i < array.entryNum; i++) {
        const e = array.entry(i);
        for (let j = VIOMMU_INVALIDATE_SELFTEST_SIZE; j < e.length; j++) if (e[j] !== 0) fail("E2BIG", "non-zero bytes past the entry struct");
        const c = new Uint8Array(VIOMMU_INVALIDATE_SELFTEST_SIZE);
        c.set(e.subarray(0, Math.min(e.length, VIOMMU_INVALIDATE_SELFTEST_SIZE)));
        cmds.push(c);
      }
      for (const c of cmds) {
        const flags = u32(c, 0);
        const vdevId = u32(c, 4);
        const cacheId = u32(c, 8);
        if (flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL) fail("EOPNOTSUPP", "unknown invalidation flags");
        if (cacheId > MOCK_DEV_CACHE_ID_MAX) fail("EINVAL", "cache_id out of range");
        const dev = this.vdevs.get(BigInt(vdevId));
        const cache = dev ? mockDevCache(dev) : null;
        if (!cache) fail("EINVAL", "no vDEVICE with that virtual ID");
        if (flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) cache.fill(0);
        else cache[cacheId] = 0;
        done++;
      }
    } catch (e) {
      return { done, error: e as Error };
    }
    return { done, error: null };
  }

  vdeviceInit(dev: Device, virtId: bigint): void {
    this.vdevs.set(virtId, dev);
    this.virtIdOf.set(dev, virtId);
  }

  vdeviceDestroy(dev: Device): void {
    const v = this.virtIdOf.get(dev);
    if (v === undefined) return;
    this.virtIdOf.delete(dev);
    if (this.vdevs.get(v) === dev) this.vdevs.delete(v);
  }

  /** mock_viommu_destroy: the mmap region goes. */
  destroy(): void {
    if (this.mmapOffset) this.sink.destroyMmap?.(this.mmapOffset);
    this.mmapOffset = 0n;
    this.page = null;
    this.destroyed = true;
  }
}

/** struct iommu_hwpt_selftest of a nested allocation: its iotlb (min 4 bytes, at most `size`, else EINVAL). */
function nestedIotlb(data: UserData, size: number): number {
  if (data.type !== IOMMU_HWPT_DATA_SELFTEST) fail("EOPNOTSUPP", "nested mock needs selftest data");
  // iommu_copy_struct_from_user(&cfg, data, SELFTEST, iotlb): min 4, max sizeof
  if (data.len < 4 || data.len > size) fail("EINVAL", "bad iommu_hwpt_selftest length");
  const cfg = new Uint8Array(size);
  cfg.set(data.read(data.len));
  return u32(cfg, 0);
}

/**
 * Per mock device state of the newest mock_dev: the vIOMMU and virtual ID it reports events with
 * (set when it attaches to a nested domain of a vIOMMU, cleared by any other attachment; `domain`
 * is that attachment, so a detach, which does not go through attach_dev here, also clears it) and
 * the PASID 1024 fake-error flag.
 */
interface MockDevState {
  viommu: MockViommu | null;
  vdevId: bigint;
  domain: IommuDomain | null;
  pasid1024FakeError: boolean;
}
const mockDevStates = new WeakMap<Device, MockDevState>();

function devState(dev: Device): MockDevState {
  let st = mockDevStates.get(dev);
  if (!st) {
    st = { viommu: null, vdevId: 0n, domain: null, pasid1024FakeError: false };
    mockDevStates.set(dev, st);
  }
  return st;
}

/** The vIOMMU and virtual ID a mock device reports vEVENTs with (mdev->viommu, mdev->vdev_id). */
export function mockDevViommu(dev: Device): { viommu: MockViommu; vdevId: bigint } | null {
  const st = mockDevStates.get(dev);
  if (!st || !st.viommu || st.domain === null || dev.group.domain !== st.domain) return null;
  return { viommu: st.viommu, vdevId: st.vdevId };
}

/**
 * IOMMU_TEST_OP_TRIGGER_VEVENT on a mock device: an iommu_viommu_event_selftest { virt_id } to the
 * vIOMMU's IOMMU_VEVENTQ_TYPE_SELFTEST queue. ENOENT when the device is not attached to a nested
 * domain of a vIOMMU (or its virtual ID is 0); EOPNOTSUPP when the vIOMMU has no such vEVENTQ.
 */
export function mockTriggerVevent(dev: Device): void {
  const v = isMockDevice(dev) ? mockDevViommu(dev) : null;
  if (!v || v.vdevId === 0n) fail("ENOENT", "the device is not attached through a vIOMMU with a virtual ID");
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, Number(BigInt.asUintN(32, v.vdevId)), true);
  const sink = v.viommu.sink;
  if (sink.reportOrFail) sink.reportOrFail(IOMMU_VEVENTQ_TYPE_SELFTEST, payload);
  else sink.report(IOMMU_VEVENTQ_TYPE_SELFTEST, payload);
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

  /** IOMMU_HWPT_ALLOC_PASID is [newer than 6.12]: 6.12's mock refuses it (EOPNOTSUPP). */
  private pasidFlag(dev: Device): number {
    return (mockDevProfile.get(dev) ?? "newest") === "6.12" ? 0 : HWPT_ALLOC_PASID;
  }

  domainAllocUser(dev: Device, flags: number, parent: PagingDomain | null, data: UserData | null): IommuDomain {
    if (!parent) {
      const hasDirty = (flags & HWPT_ALLOC_DIRTY_TRACKING) !== 0;
      const noDirtyOps = (dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY) !== 0;
      if (flags & ~(HWPT_ALLOC_NEST_PARENT | HWPT_ALLOC_DIRTY_TRACKING | this.pasidFlag(dev))) fail("EOPNOTSUPP", "unsupported paging flags");
      if (data || (hasDirty && noDirtyOps)) fail("EOPNOTSUPP", "mock paging domains take no data / device lacks dirty tracking");
      return new MockPagingDomain(this, (dev.flags & MOCK_FLAGS_DEVICE_HUGE_IOVA) !== 0, hasDirty);
    }
    if (!data || data.type !== IOMMU_HWPT_DATA_SELFTEST || flags & ~this.pasidFlag(dev)) fail("EOPNOTSUPP", "nested mock needs selftest data and no flags but ALLOC_PASID");
    if (!(parent instanceof MockPagingDomain)) fail("EINVAL", "parent is not a mock domain");
    return new MockNestedDomain(this, parent, nestedIotlb(data, this.hwptSelftestSize(dev)));
  }

  /** mock_get_viommu_size: only IOMMU_VIOMMU_TYPE_SELFTEST, and only on the newest kernel. */
  viommuTypeSupported(dev: Device, type: number): boolean {
    return type === IOMMU_VIOMMU_TYPE_SELFTEST && (mockDevProfile.get(dev) ?? "newest") !== "6.12";
  }

  /**
   * mock_viommu_init: with iommu_viommu_selftest data (at least in_data/out_data, 8 bytes; bytes
   * past the 24-byte struct must be zero) it takes a two-page mmap region of the iommufd fd, puts
   * in_data in its first u32 and writes back out_data = in_data and the region's offset and length
   * (min(data_len, 24) bytes; EFAULT undoes it all).
   */
  viommuAlloc(dev: Device, parent: PagingDomain, type: number, data: UserData | null, sink: ViommuEventSink): MockViommu {
    if (!this.viommuTypeSupported(dev, type)) fail("EOPNOTSUPP", "unsupported vIOMMU type");
    if (!(parent instanceof MockPagingDomain)) fail("EINVAL", "parent is not a mock domain");
    const v = new MockViommu(this, parent, sink as MockViommuHost, mockDevProfile.get(dev) ?? "newest");
    if (data) {
      if (data.type !== IOMMU_VIOMMU_TYPE_SELFTEST) fail("EINVAL", "wrong vIOMMU data type");
      const cfg = copyStructFromUser(data, 8, VIOMMU_SELFTEST_SIZE);
      const host = sink as MockViommuHost;
      const offset = host.allocMmap ? host.allocMmap(MOCK_VIOMMU_MMAP_LENGTH) : 0n;
      const inData = u32(cfg, 0);
      const out = new Uint8Array(VIOMMU_SELFTEST_SIZE);
      const dv = new DataView(out.buffer);
      dv.setUint32(0, inData, true);
      dv.setUint32(4, inData, true);
      dv.setBigUint64(8, offset, true);
      dv.setBigUint64(16, BigInt(MOCK_VIOMMU_MMAP_LENGTH), true);
      try {
        data.write?.(out.subarray(0, Math.min(data.len, VIOMMU_SELFTEST_SIZE)));
      } catch (e) {
        if (offset) host.destroyMmap?.(offset);
        throw e;
      }
      v.page = inData;
      v.mmapOffset = offset;
    }
    return v;
  }

  /**
   * set_dev_pasid (mock_domain_set_dev_pasid_nop): always works, except for the designed failure
   * on IOMMU_TEST_PASID_RESERVED (1024): the first call sets a flag, the second fails with ENOMEM
   * and clears it (a blocking call, remove_dev_pasid, clears it too).
   */
  setDevPasid(_domain: IommuDomain, dev: Device, pasid: number): void {
    if (pasid !== IOMMU_TEST_PASID_RESERVED) return;
    const st = devState(dev);
    if (st.pasid1024FakeError) {
      st.pasid1024FakeError = false;
      fail("ENOMEM", "mock: designed failure of the second set_dev_pasid on PASID 1024");
    }
    st.pasid1024FakeError = true;
  }

  removeDevPasid(dev: Device, pasid: number): void {
    if (pasid === IOMMU_TEST_PASID_RESERVED) devState(dev).pasid1024FakeError = false;
  }

  capable(dev: Device, cap: IommuCap): boolean {
    if (cap === IommuCap.CACHE_COHERENCY) return true;
    if (cap === IommuCap.DIRTY_TRACKING) return (dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY) === 0;
    return false;
  }

  /**
   * mock_domain_nop_attach: a dirty-tracking domain refuses a NO_DIRTY device (EINVAL); a nested
   * domain of a vIOMMU needs the device's vDEVICE on that vIOMMU (ENOENT otherwise), whose virtual
   * ID the device then reports vEVENTs with.
   */
  attachDev(domain: IommuDomain, dev: Device): void {
    if (domain instanceof MockPagingDomain && domain.dirtyOps && dev.flags & MOCK_FLAGS_DEVICE_NO_DIRTY)
      fail("EINVAL", "device cannot do dirty tracking");
    let viommu: MockViommu | null = null;
    let vdevId = 0n;
    if (domain instanceof MockNestedDomain && domain.viommu) {
      viommu = domain.viommu;
      const v = viommu.virtIdOf.get(dev);
      if (v === undefined) fail("ENOENT", "the device has no vDEVICE on the nested domain's vIOMMU");
      vdevId = v;
    }
    const st = devState(dev);
    st.viommu = viommu;
    st.vdevId = vdevId;
    st.domain = domain;
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
