/**
 * IOMMU_TEST_CMD: the selftest's test operations (selftest.c), as library calls and through one
 * dispatcher taking the iommu_test_cmd union as a typed object.
 */
import { failPoint } from "../fail-nth.js";
import { fail, IommuError } from "../errno.js";
import type { Device } from "../iommu/device.js";
import { groupPasidDomain } from "../iommu/core.js";
import {
  createMockDevice,
  isMockDevice,
  mockDevCache,
  mockTriggerVevent,
  MOCK_DEV_CACHE_ID_MAX,
  MOCK_IO_PAGE_SIZE,
  MockNestedDomain,
  MockPagingDomain,
  MOCK_NESTED_DOMAIN_IOTLB_ID_MAX,
} from "../iommu/drivers/mock.js";
import type { IopfFault } from "../iommu/domain.js";
import { PAGE_SIZE } from "../mm/index.js";
import type { Access } from "./access.js";
import { accessCreate, accessDestroy } from "./access.js";
import type { IommufdCtx } from "./context.js";
import { deviceBind, deviceUnbind, type IommufdDevice } from "./device.js";
import type { HwptNested, HwptPaging } from "./hwpt.js";
import { reportDeviceFault } from "./fault.js";
import type { IommufdFile } from "./files.js";
import { IommufdObject } from "./object.js";
import { ObjType } from "./types.js";

export const IOMMU_TEST_OP_ADD_RESERVED = 1;
export const IOMMU_TEST_OP_MOCK_DOMAIN = 2;
export const IOMMU_TEST_OP_MD_CHECK_MAP = 3;
export const IOMMU_TEST_OP_MD_CHECK_REFS = 4;
export const IOMMU_TEST_OP_CREATE_ACCESS = 5;
export const IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6;
export const IOMMU_TEST_OP_ACCESS_PAGES = 7;
export const IOMMU_TEST_OP_ACCESS_RW = 8;
export const IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9;
export const IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10;
export const IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11;
export const IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12;
export const IOMMU_TEST_OP_DIRTY = 13;
export const IOMMU_TEST_OP_MD_CHECK_IOTLB = 14;
export const IOMMU_TEST_OP_TRIGGER_IOPF = 15;
/** Ops 16.. are [newer than 6.12]: under the "6.12" profile they are unknown ops (EOPNOTSUPP). */
export const IOMMU_TEST_OP_DEV_CHECK_CACHE = 16;
export const IOMMU_TEST_OP_TRIGGER_VEVENT = 17;
export const IOMMU_TEST_OP_PASID_ATTACH = 18;
export const IOMMU_TEST_OP_PASID_REPLACE = 19;
export const IOMMU_TEST_OP_PASID_DETACH = 20;
export const IOMMU_TEST_OP_PASID_CHECK_HWPT = 21;
/** The last test op Linux 6.12 knows. */
export const IOMMU_TEST_OP_LAST_612 = IOMMU_TEST_OP_TRIGGER_IOPF;

export const MOCK_FLAGS_ACCESS_WRITE = 1 << 0;
export const MOCK_FLAGS_ACCESS_SYZ = 1 << 16;
export const MOCK_ACCESS_RW_WRITE = 1 << 0;
export const MOCK_ACCESS_RW_SLOW_PATH = 1 << 2;
export const MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0;

/**
 * struct iommu_test_cmd with its union flattened: only the fields of the op's union member are
 * read; outputs are returned in the same object.
 */
export interface IommuTestCmd {
  op: number;
  id: number;
  __reserved?: number;
  // add_reserved
  start?: bigint;
  length?: bigint;
  // mock_domain / mock_domain_flags
  out_stdev_id?: number;
  out_hwpt_id?: number;
  out_idev_id?: number;
  dev_flags?: number;
  // mock_domain_replace
  pt_id?: number;
  // check_map / access_rw / access_pages / dirty
  iova?: bigint;
  uptr?: bigint;
  // check_refs
  refs?: number;
  // create_access
  out_access_fd?: number;
  flags?: number;
  // destroy_access_pages / access_pages
  access_pages_id?: number;
  out_access_pages_id?: number;
  // memory_limit
  limit?: number;
  // access_replace_ioas
  ioas_id?: number;
  // dirty
  page_size?: bigint;
  out_nr_dirty?: bigint;
  // check_iotlb
  iotlb_id?: number;
  iotlb?: number;
  // check_dev_cache [newer than 6.12]
  cache_id?: number;
  cache?: number;
  // trigger_iopf, trigger_vevent [newer than 6.12]; pasid_* [newer than 6.12]: pasid, pt_id
  dev_id?: number;
  pasid?: number;
  // pasid_check [newer than 6.12]: the expected HWPT, 0 for none
  hwpt_id?: number;
  grpid?: number;
  perm?: number;
  addr?: bigint;
}

/** The selftest object (IOMMUFD_OBJ_SELFTEST): a mock device bound and attached. */
export class SelftestObj extends IommufdObject {
  readonly type = ObjType.SELFTEST;
  constructor(readonly ctx: IommufdCtx, readonly mockDev: Device, public idev: IommufdDevice | null) {
    super();
  }
  destroy(): void {
    const idev = this.idev;
    if (idev) {
      // iommufd_selftest_destroy detaches the RID only; the PASIDs a test left attached would keep
      // the device (and their HWPTs) referenced forever, so they are detached here first
      for (const pasid of idev.attachedPasids()) idev.pasidDetach(pasid);
      if (idev.attached) idev.detach();
      deviceUnbind(this.ctx, idev);
      this.idev = null;
    }
    this.mockDev.unplug();
  }
}

interface AccessItem {
  iova: bigint;
  length: bigint;
  id: number;
}

/** The selftest access fd ("[iommufd_test_staccess]"). */
export class StaccessFile implements IommufdFile {
  readonly kind = "access" as const;
  access: Access | null = null;
  items: AccessItem[] = [];
  nextId = 0;
  constructor(readonly ctx: IommufdCtx) {}

  unmap(iova: bigint, length: bigint): void {
    const last = iova + length - 1n;
    for (const item of [...this.items]) {
      if (iova > item.iova + item.length - 1n || last < item.iova) continue;
      this.items.splice(this.items.indexOf(item), 1);
      this.access?.unpinPages(item.iova, item.length);
    }
  }

  release(): void {
    if (this.access) {
      this.unmap(0n, (1n << 64n) - 1n);
      accessDestroy(this.ctx, this.access);
      this.access = null;
    }
  }
}

function staccessGet(ctx: IommufdCtx, fd: number): StaccessFile {
  const f = ctx.fds.get(fd);
  if (!(f instanceof StaccessFile) || !f.access) fail("EBADFD", "not a selftest access fd");
  return f;
}

function mockDomain(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const id = ctx.reserveId();
  let mdev: Device;
  try {
    failPoint("ENOMEM", "mock device alloc");
    mdev = createMockDevice(cmd.op === IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS ? (cmd.dev_flags ?? 0) : 0, { profile: ctx.profile });
  } catch (e) {
    ctx.abortId(id);
    throw e;
  }
  let idev: IommufdDevice;
  try {
    idev = deviceBind(ctx, mdev);
  } catch (e) {
    mdev.unplug();
    ctx.abortId(id);
    throw e;
  }
  let hwptId: number;
  try {
    hwptId = idev.attach(cmd.id);
  } catch (e) {
    deviceUnbind(ctx, idev);
    mdev.unplug();
    ctx.abortId(id);
    throw e;
  }
  const sobj = new SelftestObj(ctx, mdev, idev);
  sobj.id = id;
  ctx.publish(sobj);
  return { ...cmd, out_stdev_id: id, out_hwpt_id: hwptId, out_idev_id: idev.id };
}

function mockDomainReplace(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const o = ctx.getObject(cmd.id);
  if (!o || o.type !== ObjType.SELFTEST) fail("ENOENT", "not a selftest object");
  const s = o as SelftestObj;
  const pt = (s.idev as IommufdDevice).replace(cmd.pt_id ?? 0);
  return { ...cmd, pt_id: pt };
}

function addReserved(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const start = cmd.start ?? 0n;
  const length = cmd.length ?? 0n;
  if (!length) fail("EINVAL", "length 0");
  const last = start + length - 1n;
  if (last > (1n << 64n) - 1n) fail("EOVERFLOW", "start + length overflows");
  ctx.getIoas(cmd.id).iopt.reserveIova(start, last, null);
  return cmd;
}

function mockHwpt(ctx: IommufdCtx, id: number): MockPagingDomain {
  const h = ctx.getHwptPaging(id);
  if (!(h.domain instanceof MockPagingDomain)) fail("EINVAL", "not a mock domain");
  return h.domain;
}

function checkMap(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  let iova = cmd.iova ?? 0n;
  let length = cmd.length ?? 0n;
  let uptr = cmd.uptr ?? 0n;
  const P = BigInt(MOCK_IO_PAGE_SIZE);
  if (iova % P || length % P || uptr % P || uptr + length > (1n << 64n) - 1n) fail("EINVAL", "not aligned to the mock page size");
  const d = mockHwpt(ctx, cmd.id);
  for (; length; length -= P) {
    const pfn = pageAt(ctx, uptr & ~4095n);
    const pa = d.iovaToPhys(Number(iova / P));
    if (pa < 0 || pa !== pfn * PAGE_SIZE + Number(uptr % 4096n)) fail("EINVAL", "IOVA does not map the user page");
    iova += P;
    uptr += P;
  }
  return cmd;
}

function pageAt(ctx: IommufdCtx, va: bigint): number {
  if (va <= 0n || va >= BigInt(Number.MAX_SAFE_INTEGER)) fail("EFAULT", "bad address");
  try {
    return ctx.caller.mm.pageAt(Number(va));
  } catch (e) {
    if (e instanceof IommuError) fail("EFAULT", "bad address");
    throw e;
  }
}

function checkRefs(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  let length = cmd.length ?? 0n;
  let uptr = cmd.uptr ?? 0n;
  if (length % 4096n || uptr % 4096n || uptr + length > (1n << 64n) - 1n) fail("EINVAL", "not page aligned");
  for (; length; length -= 4096n) {
    const pfn = pageAt(ctx, uptr);
    if (!ctx.host.phys.isCompound(pfn) && ctx.host.phys.pinCount(pfn) !== (cmd.refs ?? 0)) fail("EIO", "pin count mismatch");
    uptr += 4096n;
  }
  return cmd;
}

function checkIotlb(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const h = ctx.getHwptNested(cmd.id);
  if (!(h.domain instanceof MockNestedDomain)) fail("EINVAL", "not a mock nested domain");
  const i = cmd.iotlb_id ?? 0;
  if (i > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX || h.domain.iotlb[i] !== (cmd.iotlb ?? 0) >>> 0) fail("EINVAL", "IOTLB entry mismatch");
  return cmd;
}

/** IOMMU_TEST_OP_DEV_CHECK_CACHE [newer than 6.12]: a mock device's cache slot holds `cache`. */
function checkDevCache(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const idev = ctx.getDevice(cmd.id);
  // the kernel takes any device for a mock_dev (container_of); only mock devices have the slots
  const cache = mockDevCache(idev.dev);
  const i = cmd.cache_id ?? 0;
  if (!cache || i > MOCK_DEV_CACHE_ID_MAX || cache[i] !== (cmd.cache ?? 0) >>> 0) fail("EINVAL", "device cache entry mismatch");
  return cmd;
}

function createAccess(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const flags = cmd.flags ?? 0;
  if (flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) fail("EOPNOTSUPP", "unknown access flags");
  // iommufd_test_alloc_access: kzalloc + anon_inode_getfile
  failPoint("ENOMEM", "iommufd_test_alloc_access");
  const file = new StaccessFile(ctx);
  const access = accessCreate(ctx, {
    needsPinPages: (flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) !== 0,
    unmap: (iova, length) => file.unmap(iova, length),
  });
  try {
    access.attach(cmd.id);
  } catch (e) {
    accessDestroy(ctx, access);
    throw e;
  }
  file.access = access;
  const fd = ctx.fds.install(file);
  return { ...cmd, out_access_fd: fd };
}

function accessPages(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const length = cmd.length ?? 0n;
  const flags = cmd.flags ?? 0;
  const iova = cmd.iova ?? 0n;
  if (length > 16n * 1024n * 1024n) fail("ENOMEM", "length above 16 MiB");
  if (flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ)) fail("EOPNOTSUPP", "unknown flags");
  const st = staccessGet(ctx, cmd.id);
  const access = st.access as Access;
  if (!access.ops.needsPinPages) fail("EOPNOTSUPP", "access cannot pin pages");
  // the pages array (kvcalloc) and the selftest_access_item (kzalloc)
  failPoint("ENOMEM", "iommufd_test_access_pages");
  const pfns = access.pinPages(iova, length, (flags & MOCK_FLAGS_ACCESS_WRITE) !== 0);
  const uptr = cmd.uptr ?? 0n;
  if (uptr) {
    try {
      let va = uptr - (iova - (iova & ~4095n));
      for (const pfn of pfns) {
        if (pageAt(ctx, va) !== pfn) fail("EBADE", "pinned page differs from the user page");
        va += 4096n;
      }
    } catch (e) {
      access.unpinPages(iova, length);
      throw e;
    }
  }
  const item = { iova, length, id: st.nextId++ };
  st.items.push(item);
  return { ...cmd, out_access_pages_id: item.id };
}

function destroyAccessPages(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const st = staccessGet(ctx, cmd.id);
  const i = st.items.findIndex((it) => it.id === cmd.access_pages_id);
  if (i < 0) fail("ENOENT", "no such access pages item");
  const [item] = st.items.splice(i, 1);
  st.access?.unpinPages(item.iova, item.length);
  return cmd;
}

function accessRw(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const length = cmd.length ?? 0n;
  const flags = cmd.flags ?? 0;
  if (length > 16n * 1024n * 1024n) fail("ENOMEM", "length above 16 MiB");
  if (flags & ~(MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH | MOCK_FLAGS_ACCESS_SYZ)) fail("EOPNOTSUPP", "unknown flags");
  const st = staccessGet(ctx, cmd.id);
  const n = Number(length);
  let data = new Uint8Array(n);
  if (flags & MOCK_ACCESS_RW_WRITE) data = new Uint8Array(ctx.readUser(cmd.uptr ?? 0n, n));
  (st.access as Access).rw(cmd.iova ?? 0n, data, flags & ~MOCK_FLAGS_ACCESS_SYZ);
  if (!(flags & MOCK_ACCESS_RW_WRITE)) ctx.writeUser(cmd.uptr ?? 0n, data);
  return cmd;
}

function dirty(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const pageSize = cmd.page_size ?? 0n;
  const length = cmd.length ?? 0n;
  const iova = cmd.iova ?? 0n;
  const uptr = cmd.uptr ?? 0n;
  if (!pageSize || !length || iova % pageSize || length % pageSize || !uptr) fail("EINVAL", "bad dirty arguments");
  const max = length / pageSize;
  if (max > 16n * 1024n * 1024n * 8n) fail("EOVERFLOW", "bitmap too large");
  const d = mockHwpt(ctx, cmd.id);
  if (!d.dirtyTracking) fail("EINVAL", "dirty tracking not enabled");
  const bm = ctx.readUser(uptr, Number((max + 7n) / 8n));
  let count = 0n;
  for (let i = 0n; i < max; i++) {
    if (!(bm[Number(i / 8n)] & (1 << Number(i % 8n)))) continue;
    const cur = iova + i * pageSize;
    // the kernel indexes its IOPTE array with cur / page_size here
    const idx = Number(cur / pageSize);
    if (d.iovaToPhys(idx) >= 0) {
      d.setDirtyBit(idx, true);
      count++;
    }
  }
  return { ...cmd, out_nr_dirty: count };
}

function triggerIopf(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const idev = ctx.getDevice(cmd.dev_id ?? 0);
  if (!isMockDevice(idev.dev)) fail("EINVAL", "not a selftest mock device");
  const pasid = cmd.pasid ?? 0;
  const f: IopfFault = {
    deviceKey: idev.dev,
    pasid,
    pasidValid: pasid !== 0,
    lastPage: true,
    grpid: cmd.grpid ?? 0,
    perm: cmd.perm ?? 0,
    addr: cmd.addr ?? 0n,
  };
  reportDeviceFault(idev, f);
  return cmd;
}

/** IOMMU_TEST_OP_TRIGGER_VEVENT [newer than 6.12]: a selftest vEVENT from the device (mockTriggerVevent). */
function triggerVevent(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const idev = ctx.getDevice(cmd.dev_id ?? 0);
  mockTriggerVevent(idev.dev);
  return cmd;
}

/** iommufd_test_get_selftest_obj: ENOENT unless id is a selftest device object. */
function selftestObj(ctx: IommufdCtx, id: number): SelftestObj {
  failPoint("ENOENT", "iommufd_get_object");
  const o = ctx.getObject(id);
  if (!o || o.type !== ObjType.SELFTEST) fail("ENOENT", "not a selftest object");
  return o as SelftestObj;
}

/**
 * IOMMU_TEST_OP_PASID_ATTACH / _REPLACE / _DETACH [newer than 6.12]: iommufd_device_attach /
 * _replace / _detach of the selftest device at cmd.pasid (0 is IOMMU_NO_PASID: the RID itself).
 * Attach and replace write pt_id back; detaching a PASID that is not attached succeeds.
 */
function pasidOp(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const idev = selftestObj(ctx, cmd.id).idev as IommufdDevice;
  const pasid = cmd.pasid ?? 0;
  switch (cmd.op) {
    case IOMMU_TEST_OP_PASID_ATTACH:
      return { ...cmd, pt_id: idev.pasidAttach(cmd.pt_id ?? 0, pasid) };
    case IOMMU_TEST_OP_PASID_REPLACE:
      return { ...cmd, pt_id: idev.pasidReplace(cmd.pt_id ?? 0, pasid) };
    default:
      idev.pasidDetach(pasid);
      return cmd;
  }
}

/**
 * IOMMU_TEST_OP_PASID_CHECK_HWPT [newer than 6.12]: succeeds iff what translates the device's
 * group at `pasid` is hwpt_id's domain (hwpt_id 0: nothing). hwpt_id unknown -> ENOENT, not a HWPT
 * -> EINVAL, another domain -> EINVAL.
 */
function pasidCheckHwpt(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  const sobj = selftestObj(ctx, cmd.id);
  const attached = groupPasidDomain(sobj.mockDev.group, cmd.pasid ?? 0);
  const hwptId = cmd.hwpt_id ?? 0;
  if (!hwptId) {
    if (attached) fail("EINVAL", "the PASID is attached");
    return cmd;
  }
  failPoint("ENOENT", "iommufd_get_object");
  const o = ctx.getObject(hwptId);
  if (!o) fail("ENOENT", "no such object");
  if (o.type !== ObjType.HWPT_PAGING && o.type !== ObjType.HWPT_NESTED) fail("EINVAL", "not a HWPT");
  if ((o as HwptPaging | HwptNested).domain !== attached) fail("EINVAL", "the PASID is attached elsewhere");
  return cmd;
}

/**
 * One IOMMU_TEST_CMD. Under the "6.12" profile ops above TRIGGER_IOPF (15) are unknown
 * (EOPNOTSUPP, as selftest.c's default case). Under "newest" DEV_CHECK_CACHE (16), TRIGGER_VEVENT
 * (17) and the PASID ops (18..21) work; the DMABUF ops (22+) are not modelled (EOPNOTSUPP).
 */
export function testCmd(ctx: IommufdCtx, cmd: IommuTestCmd): IommuTestCmd {
  if (ctx.profile === "6.12" && cmd.op > IOMMU_TEST_OP_LAST_612) fail("EOPNOTSUPP", `test op ${cmd.op} is newer than Linux 6.12`);
  switch (cmd.op) {
    case IOMMU_TEST_OP_ADD_RESERVED:
      return addReserved(ctx, cmd);
    case IOMMU_TEST_OP_MOCK_DOMAIN:
    case IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS:
      return mockDomain(ctx, cmd);
    case IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE:
      return mockDomainReplace(ctx, cmd);
    case IOMMU_TEST_OP_MD_CHECK_MAP:
      return checkMap(ctx, cmd);
    case IOMMU_TEST_OP_MD_CHECK_REFS:
      return checkRefs(ctx, cmd);
    case IOMMU_TEST_OP_MD_CHECK_IOTLB:
      return checkIotlb(ctx, cmd);
    case IOMMU_TEST_OP_CREATE_ACCESS:
      return createAccess(ctx, cmd);
    case IOMMU_TEST_OP_ACCESS_REPLACE_IOAS:
      staccessGet(ctx, cmd.id).access?.replace(cmd.ioas_id ?? 0);
      return cmd;
    case IOMMU_TEST_OP_ACCESS_PAGES:
      return accessPages(ctx, cmd);
    case IOMMU_TEST_OP_ACCESS_RW:
      return accessRw(ctx, cmd);
    case IOMMU_TEST_OP_DESTROY_ACCESS_PAGES:
      return destroyAccessPages(ctx, cmd);
    case IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
      if ((cmd.limit ?? 0) < 12) fail("EINVAL", "limit below the batch element size");
      ctx.tempMemoryLimit = cmd.limit ?? 0;
      return cmd;
    case IOMMU_TEST_OP_DIRTY:
      return dirty(ctx, cmd);
    case IOMMU_TEST_OP_TRIGGER_IOPF:
      return triggerIopf(ctx, cmd);
    case IOMMU_TEST_OP_DEV_CHECK_CACHE:
      return checkDevCache(ctx, cmd);
    case IOMMU_TEST_OP_TRIGGER_VEVENT:
      return triggerVevent(ctx, cmd);
    case IOMMU_TEST_OP_PASID_ATTACH:
    case IOMMU_TEST_OP_PASID_REPLACE:
    case IOMMU_TEST_OP_PASID_DETACH:
      return pasidOp(ctx, cmd);
    case IOMMU_TEST_OP_PASID_CHECK_HWPT:
      return pasidCheckHwpt(ctx, cmd);
    default:
      fail("EOPNOTSUPP", "unknown test op");
  }
}
