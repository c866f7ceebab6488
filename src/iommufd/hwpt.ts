/** HW page table objects: paging (kernel-managed) and nested (user-managed) (hw_pagetable.c). */
import { fail, IommuError } from "../errno.js";
import type { NestedDomain, PagingDomain } from "../iommu/domain.js";
import { IommuCap, type UserData } from "../iommu/driver.js";
import { ULONG_MAX } from "../util/u64.js";
import type { IommufdCtx } from "./context.js";
import type { IommufdDevice } from "./device.js";
import type { Fault } from "./fault.js";
import type { Ioas } from "./ioas.js";
import { IommufdObject } from "./object.js";
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_DATA_NONE,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_FAULT_ID_VALID,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  ObjType,
  type IommuHwptAlloc,
  type IommuHwptGetDirtyBitmap,
  type IommuHwptInvalidate,
  type IommuHwptSetDirtyTracking,
} from "./types.js";

export type Hwpt = HwptPaging | HwptNested;

export class HwptPaging extends IommufdObject {
  readonly type = ObjType.HWPT_PAGING;
  autoDomain = false;
  nestParent = false;
  /** Added to the IOAS's domains (iopt_table_add_domain done). */
  inIoas = false;
  msiCookie = false;
  fault: Fault | null = null;
  constructor(readonly ioas: Ioas, readonly domain: PagingDomain) {
    super();
  }
  destroy(): void {
    if (this.inIoas) {
      const i = this.ioas.hwpts.indexOf(this);
      if (i >= 0) this.ioas.hwpts.splice(i, 1);
      this.ioas.iopt.removeDomain(this.domain);
      this.inIoas = false;
    }
    if (this.fault) this.fault.users--;
    this.ioas.users--;
  }
}

export class HwptNested extends IommufdObject {
  readonly type = ObjType.HWPT_NESTED;
  fault: Fault | null = null;
  constructor(readonly parent: HwptPaging, readonly domain: NestedDomain) {
    super();
  }
  destroy(): void {
    if (this.fault) this.fault.users--;
    this.parent.users--;
  }
}

/**
 * iommufd_hwpt_paging_alloc: a kernel-managed HWPT on ioas for idev. With immediateAttach the
 * device is attached before the domain joins the IOAS (the auto-domain path). The object is
 * registered in the ID table (ID reserved) but callers publish it.
 */
export function hwptPagingAlloc(
  ctx: IommufdCtx,
  ioas: Ioas,
  idev: IommufdDevice,
  flags: number,
  immediateAttach: boolean,
  data: UserData | null,
): HwptPaging {
  const valid = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
  const drv = idev.dev.driver;
  if (flags & ~valid) fail("EOPNOTSUPP", "unsupported paging HWPT flags");
  if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !drv.capable(idev.dev, IommuCap.DIRTY_TRACKING))
    fail("EOPNOTSUPP", "device cannot track dirty pages");
  const id = ctx.reserveId();
  let domain: PagingDomain;
  try {
    domain = drv.domainAllocUser(idev.dev, flags, null, data) as PagingDomain;
  } catch (e) {
    ctx.abortId(id);
    throw e;
  }
  const hwpt = new HwptPaging(ioas, domain);
  hwpt.id = id;
  hwpt.nestParent = (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
  ioas.users++;
  try {
    if (immediateAttach) idev.hwptAttach(hwpt);
    try {
      ioas.iopt.addDomain(domain);
    } catch (e) {
      if (immediateAttach) idev.hwptDetach();
      throw e;
    }
  } catch (e) {
    ioas.users--;
    ctx.abortId(id);
    throw e;
  }
  hwpt.inIoas = true;
  ioas.hwpts.push(hwpt);
  return hwpt;
}

function hwptNestedAlloc(ctx: IommufdCtx, parent: HwptPaging, idev: IommufdDevice, flags: number, data: UserData): HwptNested {
  if (flags & ~IOMMU_HWPT_FAULT_ID_VALID || !data.len) fail("EOPNOTSUPP", "nested HWPT needs driver data and no flags");
  if (parent.autoDomain || !parent.nestParent || parent.domain.driver !== idev.dev.driver) fail("EINVAL", "parent is not a nesting parent of this IOMMU");
  const id = ctx.reserveId();
  let domain: NestedDomain;
  try {
    domain = idev.dev.driver.domainAllocUser(idev.dev, flags & ~IOMMU_HWPT_FAULT_ID_VALID, parent.domain, data) as NestedDomain;
  } catch (e) {
    ctx.abortId(id);
    throw e;
  }
  const h = new HwptNested(parent, domain);
  h.id = id;
  parent.users++;
  return h;
}

export function hwptAlloc(ctx: IommufdCtx, cmd: IommuHwptAlloc): IommuHwptAlloc {
  if (cmd.__reserved) fail("EOPNOTSUPP", "__reserved must be 0");
  if ((cmd.data_type === IOMMU_HWPT_DATA_NONE && cmd.data_len) || (cmd.data_type !== IOMMU_HWPT_DATA_NONE && !cmd.data_len))
    fail("EINVAL", "data_type and data_len disagree");
  const idev = ctx.getDevice(cmd.dev_id);
  const pt = ctx.objects.get(cmd.pt_id);
  if (!pt) fail("EINVAL", "pt_id is not an IOAS or paging HWPT");
  const data: UserData = {
    type: cmd.data_type,
    len: cmd.data_len,
    bytes: cmd.data_len ? ctx.tryReadUser(cmd.data_uptr, cmd.data_len) : new Uint8Array(0),
  };
  let hwpt: Hwpt;
  if (pt.type === ObjType.IOAS) {
    hwpt = hwptPagingAlloc(ctx, pt as Ioas, idev, cmd.flags, false, data.len ? data : null);
  } else if (pt.type === ObjType.HWPT_PAGING) {
    hwpt = hwptNestedAlloc(ctx, pt as HwptPaging, idev, cmd.flags, data);
  } else fail("EINVAL", "pt_id is not an IOAS or paging HWPT");
  if (cmd.flags & IOMMU_HWPT_FAULT_ID_VALID) {
    let fault: Fault;
    try {
      fault = ctx.getFault(cmd.fault_id ?? 0);
    } catch (e) {
      ctx.abortAndDestroy(hwpt);
      throw e;
    }
    hwpt.fault = fault;
    fault.users++;
    hwpt.domain.iopfHandler = (f) => fault.deliver_(hwpt, f);
  }
  ctx.publish(hwpt);
  return { ...cmd, out_hwpt_id: hwpt.id };
}

export function hwptSetDirtyTracking(ctx: IommufdCtx, cmd: IommuHwptSetDirtyTracking): void {
  if (cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE) fail("EOPNOTSUPP", "unknown flags");
  const hwpt = ctx.getHwptPaging(cmd.hwpt_id);
  const d = hwpt.domain;
  if (!d.dirtyOps) fail("EOPNOTSUPP", "domain has no dirty tracking");
  const enable = (cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE) !== 0;
  if (enable) {
    // clear existing dirty bits for a clean snapshot
    const shift = BigInt(d.pgShift);
    for (const a of hwpt.ioas.iopt.areas.all()) if (a.pages) d.readAndClearDirty(Number(a.start >> shift), Number(a.length >> shift), false, null);
  }
  d.setDirtyTracking(enable);
}

export function hwptGetDirtyBitmap(ctx: IommufdCtx, cmd: IommuHwptGetDirtyBitmap): void {
  if (cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR || cmd.__reserved) fail("EOPNOTSUPP", "unknown flags or non-zero __reserved");
  const hwpt = ctx.getHwptPaging(cmd.hwpt_id);
  const iopt = hwpt.ioas.iopt;
  // iommufd_check_iova_range
  if (!cmd.length) fail("EINVAL", "length 0");
  const last = cmd.iova + cmd.length - 1n;
  if (last > (1n << 64n) - 1n) fail("EOVERFLOW", "iova + length overflows");
  if (cmd.iova > ULONG_MAX || last > ULONG_MAX) fail("EOVERFLOW", "beyond ULONG_MAX");
  const align = iopt.iovaAlignment;
  if (cmd.iova & (align - 1n) || (last + 1n) & (align - 1n)) fail("EINVAL", "range not aligned to the IOAS");
  if (!cmd.page_size) fail("EINVAL", "page_size 0");
  if (cmd.iova % cmd.page_size || (last + 1n) % cmd.page_size) fail("EINVAL", "range not aligned to page_size");
  const d = hwpt.domain;
  if (!d.dirtyOps) fail("EOPNOTSUPP", "domain has no dirty tracking");
  const noClear = (cmd.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) !== 0;
  // iova_bitmap: bits relative to cmd.iova in page_size units, written to user memory as u64 words
  const nbits = (cmd.length + cmd.page_size - 1n) / cmd.page_size;
  const nbytes = Number(((nbits + 63n) / 64n) * 8n);
  const bitmap = ctx.readUser(cmd.data, nbytes);
  const shift = BigInt(d.pgShift);
  const ioPg = 1n << shift;
  const record = (first: number, n: number): void => {
    const a = BigInt(first) * ioPg;
    const z = a + BigInt(n) * ioPg - 1n;
    const lo = a < cmd.iova ? cmd.iova : a;
    const hi = z > last ? last : z;
    if (hi < lo) return;
    for (let bit = (lo - cmd.iova) / cmd.page_size; bit <= (hi - cmd.iova) / cmd.page_size; bit++) {
      const byte = Number(bit / 8n);
      bitmap[byte] |= 1 << Number(bit % 8n);
    }
  };
  iopt.forEachContig(cmd.iova, last, (_area, cur, l) => {
    d.readAndClearDirty(Number(cur >> shift), Number((l - cur + 1n) >> shift), noClear, record);
  }, "EINVAL");
  ctx.writeUser(cmd.data, bitmap);
}

/** HWPT_INVALIDATE: entry_num is written back even on failure. */
export function hwptInvalidate(ctx: IommufdCtx, cmd: IommuHwptInvalidate): IommuHwptInvalidate {
  let done = 0;
  let err: Error | null = null;
  try {
    if (cmd.__reserved) fail("EOPNOTSUPP", "__reserved must be 0");
    if (cmd.entry_num && (!cmd.data_uptr || !cmd.entry_len || cmd.entry_len > 4096 || cmd.entry_num > 1 << 19))
      fail("EINVAL", "bad invalidation array");
    const obj = ctx.objects.get(cmd.hwpt_id);
    if (!obj || obj.type !== ObjType.HWPT_NESTED) fail("ENOENT", "hwpt_id is not a nested HWPT");
    const hwpt = obj as HwptNested;
    const drv = hwpt.domain.driver;
    if (!drv.cacheInvalidateUser) fail("EOPNOTSUPP", "driver cannot invalidate");
    const r = drv.cacheInvalidateUser(hwpt.domain, {
      type: cmd.data_type,
      entryLen: cmd.entry_len,
      entryNum: cmd.entry_num,
      entry: (i) => ctx.readUser(cmd.data_uptr + BigInt(i) * BigInt(cmd.entry_len), cmd.entry_len),
    });
    done = r.done;
    err = r.error;
  } catch (e) {
    err = e as Error;
  }
  const out = { ...cmd, entry_num: done };
  if (err) {
    if (err instanceof IommuError) err.out = out;
    throw err;
  }
  return out;
}
