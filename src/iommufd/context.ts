/**
 * One open of /dev/iommu (struct iommufd_ctx): the ID space of its objects and one method per
 * ioctl. Calls run on behalf of `caller`, the process issuing them (a fork child using an
 * inherited fd is a different caller than the opener).
 */
import { failPoint } from "../fail-nth.js";
import { fail, IommuError } from "../errno.js";
import type { Device, IommuGroup } from "../iommu/device.js";
import { AccountMode, type IoptPages } from "../iopt/pages.js";
import type { Host, MemFile, Process } from "../mm/index.js";
import { accessCreate, accessDestroy, type Access, type AccessOps } from "./access.js";
import { deviceBind, deviceUnbind, IGroup, IommufdDevice } from "./device.js";
import { fdTableOf, type FdTable, type IommufdFile } from "./files.js";
import { Fault, faultQueueAlloc } from "./fault.js";
import { HwptNested, HwptPaging, hwptAlloc, hwptGetDirtyBitmap, hwptInvalidate, hwptSetDirtyTracking, type Hwpt } from "./hwpt.js";
import { Ioas, ioasAllowIovas, ioasAlloc, ioasCopy, ioasIovaRanges, ioasMap, ioasMapFile, ioasOptionHugePages, ioasUnmap } from "./ioas.js";
import type { IommufdObject } from "./object.js";
import { getHwInfo } from "./hw-info.js";
import { testCmd, type IommuTestCmd } from "./test-ops.js";
import { vdeviceAlloc } from "./vdevice.js";
import { veventqAlloc } from "./veventq.js";
import { Viommu, viommuAlloc } from "./viommu.js";
import {
  IOMMU_OPTION_HUGE_PAGES,
  IOMMU_OPTION_OP_GET,
  IOMMU_OPTION_OP_SET,
  IOMMU_OPTION_RLIMIT_MODE,
  ObjType,
  type IommuDestroy,
  type IommuFaultAlloc,
  type IommuHwInfo,
  type IommuHwptAlloc,
  type IommuHwptGetDirtyBitmap,
  type IommuHwptInvalidate,
  type IommuHwptSetDirtyTracking,
  type IommuIoasAlloc,
  type IommuIoasAllowIovas,
  type IommuIoasChangeProcess,
  type IommuIoasCopy,
  type IommuIoasIovaRanges,
  type IommuIoasMap,
  type IommuIoasMapFile,
  type IommuIoasUnmap,
  type IommuOption,
  type IommuVdeviceAlloc,
  type IommuVeventqAlloc,
  type IommuVfioIoas,
  type IommuViommuAlloc,
} from "./types.js";
import {
  vfioCheckExtension,
  vfioIoas,
  vfioIommuGetInfo,
  vfioIommuMapDma,
  vfioIommuUnmapDma,
  vfioSetIommu,
  VFIO_API_VERSION,
} from "./vfio-compat.js";

/**
 * Which kernel the context answers as: "newest" (the newest uAPI, the default) or "6.12"
 * (exactly Debian's 6.12.117: no ioctl, flag, data type or test op newer than that kernel; those
 * give the errno 6.12 gives). The same names as the uapi dispatcher's Profile.
 */
export type KernelProfile = "newest" | "6.12";
export const KERNEL_PROFILES: readonly KernelProfile[] = ["newest", "6.12"];

export interface OpenOptions {
  /** The kernel to answer as (default "newest"). */
  profile?: KernelProfile;
  /** Opened through /dev/vfio/vfio: starts in mm accounting mode. */
  vfioContainer?: boolean;
  /** The iommufd.allow_unsafe_interrupts module parameter: bind devices whose MSIs are not isolated. */
  allowUnsafeInterrupts?: boolean;
  /**
   * iommu_group_has_isolated_msi: interrupt remapping (x86) or an isolating MSI controller (ARM
   * ITS). A platform fact, as in the type1 container's params (default: isolated).
   */
  isolatedMsi?: (g: IommuGroup) => boolean;
}

/** IDs are u32 allocated from 1 up to 2^31-1 (xa_limit_31b). */
const ID_MAX = 0x7fffffff;

export class IommufdCtx {
  readonly host: Host;
  /** The process on whose behalf calls run. */
  caller: Process;
  /** id -> object; null marks an ID reserved by a call still in progress. */
  readonly objects = new Map<number, IommufdObject>();
  private readonly reserved = new Set<number>();
  /**
   * IDs of objects force-destroyed with their ID kept dead (iommufd_object_tombstone_user, a vDEVICE
   * whose device went away): never handed out again, DESTROY gives ENOENT, until the context closes.
   */
  private readonly tombstones = new Set<number>();
  /** iommufd_alloc_mmap regions of the fd [newer than 6.12]: offset -> length (mmap itself is not served). */
  private readonly mmaps = new Map<bigint, bigint>();
  accountMode = AccountMode.USER;
  compatIoas: Ioas | null = null;
  noIommuMode = false;
  readonly groups = new Map<IommuGroup, IGroup>();
  /** Open file references: the /dev/iommu file itself plus every fault/access file. */
  private openFiles = 1;
  /** The fd number open() returned in the opener's fd table. */
  fd = -1;
  released = false;
  /** IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT (a batching knob; no observable effect here). */
  tempMemoryLimit = 65536;
  /** iommufd.allow_unsafe_interrupts and the platform's MSI isolation (see OpenOptions). */
  readonly allowUnsafeInterrupts: boolean;
  readonly isolatedMsi: (g: IommuGroup) => boolean;
  /** Which kernel this context answers as (fixed at open). */
  readonly profile: KernelProfile;

  constructor(host: Host, opener: Process, opts: OpenOptions = {}) {
    this.host = host;
    this.caller = opener;
    const profile = opts.profile ?? "newest";
    if (!KERNEL_PROFILES.includes(profile)) throw new TypeError(`unknown kernel profile ${JSON.stringify(profile)} (want "newest" or "6.12")`);
    this.profile = profile;
    if (opts.vfioContainer) this.accountMode = AccountMode.MM;
    this.allowUnsafeInterrupts = opts.allowUnsafeInterrupts ?? false;
    this.isolatedMsi = opts.isolatedMsi ?? (() => true);
  }

  /** The fd table of the calling process. */
  get fds(): FdTable {
    return fdTableOf(this.caller);
  }

  /** Run fn with `p` as the caller (e.g. a fork child using the inherited fd). */
  as<T>(p: Process, fn: (ctx: this) => T): T {
    const prev = this.caller;
    this.caller = p;
    try {
      return fn(this);
    } finally {
      this.caller = prev;
    }
  }

  // ------------------------------------------------------------------ user memory

  readUser(ptr: bigint, len: number): Uint8Array {
    if (len === 0) return new Uint8Array(0);
    if (ptr <= 0n || ptr + BigInt(len) > BigInt(Number.MAX_SAFE_INTEGER)) fail("EFAULT", "bad user pointer");
    try {
      return this.caller.read(Number(ptr), len);
    } catch (e) {
      if (e instanceof IommuError) fail("EFAULT", "bad user pointer");
      throw e;
    }
  }

  tryReadUser(ptr: bigint, len: number): Uint8Array | null {
    try {
      return this.readUser(ptr, len);
    } catch (e) {
      if (e instanceof IommuError) return null;
      throw e;
    }
  }

  writeUser(ptr: bigint, data: Uint8Array, last = false): void {
    if (data.length === 0) return;
    if (ptr <= 0n || ptr + BigInt(data.length) > BigInt(Number.MAX_SAFE_INTEGER)) fail("EFAULT", "bad user pointer");
    try {
      this.caller.write(Number(ptr), data, last);
    } catch (e) {
      if (e instanceof IommuError) fail("EFAULT", "bad user pointer");
      throw e;
    }
  }

  /** The memfd behind an fd of the caller (for IOAS_MAP_FILE). */
  memfdResolver: ((p: Process, fd: number) => MemFile | undefined) | null = null;
  memfdOf(fd: number): MemFile {
    const f = this.memfdResolver?.(this.caller, fd);
    if (!f) fail("EBADF", "not a memfd");
    return f;
  }

  // ------------------------------------------------------------------ ID space

  /** Reserve the lowest free ID (xa_alloc with XA_FLAGS_ALLOC1). */
  reserveId(inject = true): number {
    // xa_alloc can fail (ENOMEM): a fault-injection point
    if (inject) failPoint("ENOMEM", "xa_alloc (object ID)");
    let id = 1;
    while (this.objects.has(id) || this.reserved.has(id) || this.tombstones.has(id)) id++;
    if (id > ID_MAX) fail("ENOSPC", "out of object IDs");
    this.reserved.add(id);
    return id;
  }

  abortId(id: number): void {
    this.reserved.delete(id);
  }

  /** iommufd_object_finalize */
  publish(obj: IommufdObject): void {
    this.reserved.delete(obj.id);
    this.objects.set(obj.id, obj);
  }

  /**
   * Reserve + finalize in one step for objects whose creation cannot fail afterwards. Not a
   * fault-injection point: callers inject at their allocation (iommufd_object_alloc) before
   * taking anything, see {@link allocPoint}.
   */
  addObject(obj: IommufdObject): void {
    obj.id = this.reserveId(false);
    this.publish(obj);
  }

  /** iommufd_object_abort_and_destroy for an object that was never published. */
  abortAndDestroy(obj: IommufdObject): void {
    obj.destroy();
    this.reserved.delete(obj.id);
    this.objects.delete(obj.id);
  }

  /** Remove an object whose only remaining user is the table (iommufd_object_remove). */
  removeObject(obj: IommufdObject): void {
    if (obj.users !== 1) fail("EBUSY", "object is in use");
    this.objects.delete(obj.id);
    if (this.compatIoas === obj) this.compatIoas = null;
    obj.destroy();
  }

  /**
   * iommufd_object_tombstone_user: destroy obj now (whatever else the caller holds of it) and keep
   * its ID reserved, so that the ID is dead for user space rather than reused.
   */
  tombstone(obj: IommufdObject): void {
    if (this.objects.get(obj.id) !== obj) return;
    this.objects.delete(obj.id);
    this.tombstones.add(obj.id);
    obj.users = 0;
    obj.destroy();
  }

  /** IDs held dead by tombstone() (for tests and reports). */
  get tombstoned(): readonly number[] {
    return [...this.tombstones].sort((a, b) => a - b);
  }

  /**
   * _iommufd_alloc_mmap: the lowest offset of the fd, from PAGE_SIZE up (the first page is skipped
   * so that 0 is never a valid offset), where `length` bytes are free.
   */
  allocMmap(length: bigint): bigint {
    const P = 4096n;
    if (!length || length % P) fail("EINVAL", "mmap length must be a non-zero multiple of PAGE_SIZE");
    let start = P;
    for (const [o, l] of [...this.mmaps].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
      if (start + length <= o) break;
      if (o + l > start) start = o + l;
    }
    this.mmaps.set(start, length);
    return start;
  }

  /** _iommufd_destroy_mmap */
  destroyMmap(offset: bigint): void {
    this.mmaps.delete(offset);
  }

  /** The mmap regions handed out: [offset, length] ascending. */
  get mmapRegions(): [bigint, bigint][] {
    return [...this.mmaps].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  /** iommufd_hw_pagetable_put: auto domains die with their last device. */
  hwptPut(hwpt: Hwpt): void {
    if (hwpt instanceof HwptPaging && hwpt.autoDomain) {
      hwpt.users--;
      if (hwpt.users === 1) this.removeObject(hwpt);
      return;
    }
    hwpt.users--;
  }

  /** iommufd_object_alloc's kzalloc + xa_alloc: a fault-injection point (ENOMEM) before anything is taken. */
  allocPoint(what: string): void {
    failPoint("ENOMEM", `iommufd_object_alloc (${what})`);
  }

  private getTyped<T extends IommufdObject>(id: number, type: ObjType): T {
    // iommufd_get_object: iommufd_should_fail() -> ENOENT
    failPoint("ENOENT", "iommufd_get_object");
    const o = this.objects.get(id);
    if (!o || o.type !== type) fail("ENOENT", `no ${type} with id ${id}`);
    return o as T;
  }

  getIoas(id: number): Ioas {
    return this.getTyped<Ioas>(id, ObjType.IOAS);
  }
  getDevice(id: number): IommufdDevice {
    return this.getTyped<IommufdDevice>(id, ObjType.DEVICE);
  }
  getHwptPaging(id: number): HwptPaging {
    return this.getTyped<HwptPaging>(id, ObjType.HWPT_PAGING);
  }
  getHwptNested(id: number): HwptNested {
    return this.getTyped<HwptNested>(id, ObjType.HWPT_NESTED);
  }
  getFault(id: number): Fault {
    return this.getTyped<Fault>(id, ObjType.FAULT);
  }
  getViommu(id: number): Viommu {
    return this.getTyped<Viommu>(id, ObjType.VIOMMU);
  }
  getObject(id: number): IommufdObject | undefined {
    return this.objects.get(id);
  }

  /** The device object bound for a physical device (for fault reports). */
  deviceByKey(key: unknown): IommufdDevice | null {
    for (const o of this.objects.values()) if (o instanceof IommufdDevice && o.dev === key) return o;
    return null;
  }

  getGroup(g: IommuGroup): IGroup {
    let ig = this.groups.get(g);
    if (!ig) {
      ig = new IGroup(g);
      this.groups.set(g, ig);
    }
    ig.refs++;
    return ig;
  }

  putGroup(ig: IGroup): void {
    ig.refs--;
    if (ig.refs === 0) this.groups.delete(ig.group);
  }

  // ------------------------------------------------------------------ lifetime

  /** iommufd_ctx_get: an open file, a bound (non-mock) device or an access keeps the context. */
  fileOpened(): void {
    this.openFiles++;
  }

  /** iommufd_ctx_put: the last reference gone, the context is released. */
  fileClosed(): void {
    this.openFiles--;
    if (this.openFiles === 0) this.release();
  }

  /**
   * close() of the /dev/iommu fd in the calling process. The context lives on while a forked
   * child still holds its copy, or while fault/access fds are open.
   */
  close(): void {
    this.fds.close(this.fd);
  }

  /** iommufd_fops_release: destroy leaf objects (users == 1) repeatedly, in ID order. */
  private release(): void {
    while (this.objects.size) {
      let destroyed = 0;
      for (const [id, obj] of [...this.objects].sort((a, b) => a[0] - b[0])) {
        // destroying one object can take others with it (a selftest device takes its idev and auto HWPT)
        if (this.objects.get(id) !== obj || obj.users !== 1) continue;
        this.objects.delete(id);
        obj.users = 0;
        obj.destroy();
        destroyed++;
      }
      if (!destroyed) throw new Error("softiommu bug: object graph cannot be torn down");
    }
    this.tombstones.clear();
    this.mmaps.clear();
    this.compatIoas = null;
    this.released = true;
  }

  /** Every ioctl: after the last close the fd is gone (EBADF at the syscall layer). */
  private live(): void {
    if (this.released) fail("EBADF", "the iommufd is closed");
  }

  // ------------------------------------------------------------------ ioctls

  /** An ioctl the 6.12 kernel does not have: its number is a hole in 6.12's table (ENOTTY). */
  private requireNewest(name: string): void {
    if (this.profile === "6.12") fail("ENOTTY", `${name} is newer than Linux 6.12`);
  }

  destroy(cmd: IommuDestroy): void {
    this.live();
    const obj = this.objects.get(cmd.id);
    if (!obj) fail("ENOENT", `no object with id ${cmd.id}`);
    this.removeObject(obj);
  }

  ioasAlloc(cmd: IommuIoasAlloc): IommuIoasAlloc {
    this.live();
    return { ...cmd, out_ioas_id: ioasAlloc(this, cmd.flags) };
  }
  ioasAllowIovas(cmd: IommuIoasAllowIovas): void {
    this.live();
    ioasAllowIovas(this, cmd);
  }
  ioasCopy(cmd: IommuIoasCopy): IommuIoasCopy {
    this.live();
    return ioasCopy(this, cmd);
  }
  ioasIovaRanges(cmd: IommuIoasIovaRanges): IommuIoasIovaRanges {
    this.live();
    return ioasIovaRanges(this, cmd);
  }
  ioasMap(cmd: IommuIoasMap): IommuIoasMap {
    this.live();
    return ioasMap(this, cmd);
  }
  /** IOMMU_IOAS_MAP_FILE [newer than 6.12: under "6.12" there is no such ioctl, ENOTTY]. */
  ioasMapFile(cmd: IommuIoasMapFile): IommuIoasMapFile {
    this.live();
    this.requireNewest("IOMMU_IOAS_MAP_FILE");
    return ioasMapFile(this, cmd);
  }
  ioasUnmap(cmd: IommuIoasUnmap): IommuIoasUnmap {
    this.live();
    return ioasUnmap(this, cmd);
  }

  /**
   * IOMMU_IOAS_CHANGE_PROCESS: move the pinned-page accounting of every map of every IOAS to
   * the calling process. Only MAP_FILE maps can move (a VA-based map -> EINVAL, nothing changes).
   * [newer than 6.12: under "6.12" there is no such ioctl, ENOTTY.]
   */
  ioasChangeProcess(cmd: IommuIoasChangeProcess): void {
    this.live();
    this.requireNewest("IOMMU_IOAS_CHANGE_PROCESS");
    if (cmd.__reserved) fail("EOPNOTSUPP", "__reserved must be 0");
    const pages = new Set<IoptPages>();
    for (const o of this.objects.values()) {
      if (!(o instanceof Ioas)) continue;
      for (const a of o.iopt.areas.all()) {
        if (!a.pages) continue;
        if (!a.pages.isFile) fail("EINVAL", "a VA-based mapping cannot change process");
        pages.add(a.pages);
      }
    }
    const to = this.caller;
    const charged: IoptPages[] = [];
    try {
      for (const p of pages) {
        p.chargeTo(to);
        charged.push(p);
      }
    } catch (e) {
      for (const p of charged) p.unchargeFrom(to);
      throw e;
    }
    for (const p of pages) p.unchargeAndMove(to);
  }

  option(cmd: IommuOption): IommuOption {
    this.live();
    if (cmd.__reserved) fail("EOPNOTSUPP", "__reserved must be 0");
    switch (cmd.option_id) {
      case IOMMU_OPTION_RLIMIT_MODE: {
        if (cmd.object_id) fail("EOPNOTSUPP", "object_id must be 0");
        if (cmd.op === IOMMU_OPTION_OP_GET) return { ...cmd, val64: this.accountMode === AccountMode.MM ? 1n : 0n };
        if (cmd.op === IOMMU_OPTION_OP_SET) {
          if (!this.caller.caps.sysResource) fail("EPERM", "needs CAP_SYS_RESOURCE");
          if (this.objects.size || this.reserved.size || this.tombstones.size) fail("EBUSY", "the context already has objects");
          if (cmd.val64 === 0n) this.accountMode = AccountMode.USER;
          else if (cmd.val64 === 1n) this.accountMode = AccountMode.MM;
          else fail("EINVAL", "val64 must be 0 or 1");
          return cmd;
        }
        fail("EOPNOTSUPP", "unknown op");
      }
      // falls through (unreachable)
      case IOMMU_OPTION_HUGE_PAGES:
        return ioasOptionHugePages(this, cmd);
      default:
        fail("EOPNOTSUPP", "unknown option");
    }
  }

  vfioIoas(cmd: IommuVfioIoas): IommuVfioIoas {
    this.live();
    return vfioIoas(this, cmd);
  }
  hwptAlloc(cmd: IommuHwptAlloc): IommuHwptAlloc {
    this.live();
    return hwptAlloc(this, cmd);
  }
  getHwInfo(cmd: IommuHwInfo): IommuHwInfo {
    this.live();
    return getHwInfo(this, cmd);
  }
  hwptSetDirtyTracking(cmd: IommuHwptSetDirtyTracking): void {
    this.live();
    hwptSetDirtyTracking(this, cmd);
  }
  hwptGetDirtyBitmap(cmd: IommuHwptGetDirtyBitmap): void {
    this.live();
    hwptGetDirtyBitmap(this, cmd);
  }
  hwptInvalidate(cmd: IommuHwptInvalidate): IommuHwptInvalidate {
    this.live();
    return hwptInvalidate(this, cmd);
  }
  faultQueueAlloc(cmd: IommuFaultAlloc): IommuFaultAlloc {
    this.live();
    return { ...cmd, ...faultQueueAlloc(this, cmd.flags) };
  }
  /** IOMMU_VIOMMU_ALLOC [newer than 6.12: under "6.12" there is no such ioctl, ENOTTY]. */
  viommuAlloc(cmd: IommuViommuAlloc): IommuViommuAlloc {
    this.live();
    this.requireNewest("IOMMU_VIOMMU_ALLOC");
    return viommuAlloc(this, cmd);
  }
  /** IOMMU_VDEVICE_ALLOC [newer than 6.12: ENOTTY under "6.12"]. */
  vdeviceAlloc(cmd: IommuVdeviceAlloc): IommuVdeviceAlloc {
    this.live();
    this.requireNewest("IOMMU_VDEVICE_ALLOC");
    return vdeviceAlloc(this, cmd);
  }
  /** IOMMU_VEVENTQ_ALLOC [newer than 6.12: ENOTTY under "6.12"]. */
  veventqAlloc(cmd: IommuVeventqAlloc): IommuVeventqAlloc {
    this.live();
    this.requireNewest("IOMMU_VEVENTQ_ALLOC");
    return veventqAlloc(this, cmd);
  }
  testCmd(cmd: IommuTestCmd): IommuTestCmd {
    this.live();
    return testCmd(this, cmd);
  }

  // VFIO type1 container ioctls on this fd
  vfioGetApiVersion(): number {
    this.live();
    return VFIO_API_VERSION;
  }
  vfioCheckExtension(ext: number): number {
    this.live();
    return vfioCheckExtension(this, ext);
  }
  vfioSetIommu(type: number): number {
    this.live();
    return vfioSetIommu(this, type);
  }
  vfioIommuGetInfo(arg: bigint): number {
    this.live();
    return vfioIommuGetInfo(this, arg);
  }
  vfioIommuMapDma(arg: bigint): number {
    this.live();
    return vfioIommuMapDma(this, arg);
  }
  vfioIommuUnmapDma(arg: bigint): number {
    this.live();
    return vfioIommuUnmapDma(this, arg);
  }

  // in-kernel driver API (VFIO device binding, emulated mdevs)
  bindDevice(dev: Device): IommufdDevice {
    this.live();
    return deviceBind(this, dev);
  }
  unbindDevice(idev: IommufdDevice): void {
    this.live();
    deviceUnbind(this, idev);
  }
  createAccess(ops: AccessOps): Access {
    this.live();
    return accessCreate(this, ops);
  }
  destroyAccess(a: Access): void {
    this.live();
    accessDestroy(this, a);
  }
}

/** The open file of /dev/iommu: its last close (across dup and fork) drops the context's reference. */
export class IommufdDevFile implements IommufdFile {
  readonly kind = "iommufd" as const;
  constructor(readonly ctx: IommufdCtx) {}
  release(): void {
    this.ctx.fileClosed();
  }
}

/** open("/dev/iommu") (or /dev/vfio/vfio served by iommufd) by process p: the fd is in p's fd table. */
export function openIommufd(host: Host, p: Process, opts?: OpenOptions): IommufdCtx {
  const ctx = new IommufdCtx(host, p, opts);
  ctx.fd = fdTableOf(p).install(new IommufdDevFile(ctx));
  return ctx;
}
