/**
 * In-kernel accesses (iommufd_access): the emulated-mdev path. An access attaches to one IOAS,
 * pins IOVA ranges to get the pages, or copies through IOVA; user space unmapping a pinned range
 * calls its unmap callback first (device.c, pages.c).
 */
import { fail } from "../errno.js";
import { IOMMU_READ, IOMMU_WRITE } from "../iommu/domain.js";
import type { Area, IoptAccess } from "../iopt/io-pagetable.js";
import { PAGE_SIZE } from "../mm/index.js";
import type { IommufdCtx } from "./context.js";
import type { Ioas } from "./ioas.js";
import { IommufdObject } from "./object.js";
import { ObjType } from "./types.js";

export const IOMMUFD_ACCESS_RW_WRITE = 1 << 0;
export const IOMMUFD_ACCESS_RW_KTHREAD = 1 << 1;
export const IOMMUFD_ACCESS_RW_SLOW_PATH = 1 << 2;

export interface AccessOps {
  needsPinPages: boolean;
  unmap(iova: bigint, length: bigint): void;
}

export class Access extends IommufdObject implements IoptAccess {
  readonly type = ObjType.ACCESS;
  ioas: Ioas | null = null;
  ioasUnpin: Ioas | null = null;
  readonly iovaAlignment: bigint;
  constructor(readonly ctx: IommufdCtx, readonly ops: AccessOps) {
    super();
    this.iovaAlignment = ops.needsPinPages ? BigInt(PAGE_SIZE) : 1n;
  }

  unmapNotify(iova: bigint, length: bigint): void {
    this.ops.unmap(iova, length);
  }

  destroy(): void {
    if (this.ioas) this.changeIoas(null);
    this.ctx.fileClosed();
  }

  /** iommufd_access_change_ioas */
  changeIoas(next: Ioas | null): void {
    const cur = this.ioas;
    if (cur !== this.ioasUnpin) fail("EBUSY", "racing detach");
    if (cur === next) return;
    this.ioas = null;
    if (next) {
      try {
        next.iopt.addAccess(this);
      } catch (e) {
        this.ioas = cur;
        throw e;
      }
      next.users++;
    }
    if (cur) {
      this.ops.unmap(0n, (1n << 64n) - 1n);
      cur.iopt.removeAccess(this);
      cur.users--;
    }
    this.ioas = next;
    this.ioasUnpin = next;
  }

  attach(ioasId: number): void {
    if (this.ioas) fail("EINVAL", "access already attached");
    this.changeIoas(this.ctx.getIoas(ioasId));
  }

  replace(ioasId: number): void {
    if (!this.ioas) fail("ENOENT", "access is not attached");
    this.changeIoas(this.ctx.getIoas(ioasId));
  }

  /**
   * iommufd_access_pin_pages: pin [iova, iova+length) and return the pfn of each CPU page.
   * EINVAL for unaligned or unmapping areas, EPERM for a permission mismatch, ENOENT for holes.
   */
  pinPages(iova: bigint, length: bigint, write: boolean): number[] {
    if (!length) fail("EINVAL", "length 0");
    const lastIova = iova + length - 1n;
    if (lastIova > (1n << 64n) - 1n) fail("EOVERFLOW", "iova + length overflows");
    if (!this.ioas) fail("ENOENT", "access is not attached");
    const iopt = this.ioas.iopt;
    const done: Array<[Area, number, number]> = [];
    const out: number[] = [];
    try {
      iopt.forEachContig(iova, lastIova, (area, cur, l) => {
        const index = Number(area.startByte(cur) / 4096n);
        const lastIndex = Number(area.startByte(l) / 4096n);
        const contigDone = l === lastIova;
        if (area.preventAccess || area.startByte(cur) % 4096n !== 0n || (!contigDone && area.startByte(area.last) % 4096n !== 4095n))
          fail("EINVAL", "access range not page aligned within the area");
        if (!(area.prot & (write ? IOMMU_WRITE : IOMMU_READ))) fail("EPERM", "area does not allow this access");
        addAccess(area, index, lastIndex, write);
        done.push([area, index, lastIndex]);
        for (let i = index; i <= lastIndex; i++) out.push((area.pages as NonNullable<Area["pages"]>).pfnAt(i));
      }, "ENOENT");
    } catch (e) {
      for (const [a, i, l] of done) removeAccess(a, i, l);
      throw e;
    }
    return out;
  }

  /** iommufd_access_unpin_pages: must match a previous pin exactly. */
  unpinPages(iova: bigint, length: bigint): void {
    const ioas = this.ioasUnpin;
    if (!ioas || !length) return;
    const lastIova = iova + length - 1n;
    try {
      ioas.iopt.forEachContig(iova, lastIova, (area, cur, l) => {
        removeAccess(area, Number(area.startByte(cur) / 4096n), Number(area.startByte(l) / 4096n));
      }, "ENOENT");
    } catch {
      // WARN in the kernel: a driver bug, nothing more to undo
    }
  }

  /** iommufd_access_rw */
  rw(iova: bigint, data: Uint8Array, flags: number): void {
    if (!data.length) fail("EINVAL", "length 0");
    const lastIova = iova + BigInt(data.length) - 1n;
    if (lastIova > (1n << 64n) - 1n) fail("EOVERFLOW", "iova + length overflows");
    if (!this.ioas) fail("ENOENT", "access is not attached");
    const write = (flags & IOMMUFD_ACCESS_RW_WRITE) !== 0;
    let off = 0;
    this.ioas.iopt.forEachContig(iova, lastIova, (area, cur, l) => {
      const bytes = Number(l - cur + 1n);
      if (area.preventAccess) fail("EINVAL", "area is being unmapped");
      if (!(area.prot & (write ? IOMMU_WRITE : IOMMU_READ))) fail("EPERM", "area does not allow this access");
      const pages = area.pages as NonNullable<Area["pages"]>;
      if (write && !pages.writable) fail("EPERM", "read-only memory");
      const startByte = Number(area.startByte(cur));
      const chunk = data.subarray(off, off + bytes);
      // iopt_pages_rw_access: which copy path runs decides which page is seen when the user
      // mapping no longer holds the pinned page (e.g. after munmap + mmap at the same address)
      const changeMm = this.ctx.caller.mm !== pages.source.mm || (flags & IOMMUFD_ACCESS_RW_SLOW_PATH) !== 0;
      const sourceAlive = pages.source.mm.alive;
      const singlePage = Math.floor(startByte / PAGE_SIZE) === Math.floor((startByte + bytes - 1) / PAGE_SIZE);
      if (pages.isFile) pages.rwPinnedOrRemote(startByte, chunk, write);
      else if (changeMm && !(flags & IOMMUFD_ACCESS_RW_KTHREAD)) {
        // iopt_pages_rw_page pins the page the source mm maps now; iopt_pages_rw_slow reads
        // the pinned pages (or pins them from the source) through the pfn reader
        if (singlePage && sourceAlive) pages.rwUser(startByte, chunk, write);
        else pages.rwPinnedOrRemote(startByte, chunk, write);
      } else if (changeMm && !sourceAlive) pages.rwPinnedOrRemote(startByte, chunk, write);
      else pages.rwUser(startByte, chunk, write);
      off += bytes;
    }, "ENOENT");
  }
}

/** iopt_area_add_access: exact-range pin records shared by identical ranges. */
function addAccess(area: Area, index: number, lastIndex: number, write: boolean): void {
  const pages = area.pages as NonNullable<Area["pages"]>;
  if (write && !pages.writable) fail("EPERM", "read-only memory");
  const key = `${index}:${lastIndex}`;
  const users = pages.accessRanges.get(key);
  if (users) {
    area.numAccesses++;
    pages.accessRanges.set(key, users + 1);
    return;
  }
  pages.hold(index, lastIndex - index + 1);
  area.numAccesses++;
  pages.accessRanges.set(key, 1);
}

function removeAccess(area: Area, index: number, lastIndex: number): void {
  const pages = area.pages as NonNullable<Area["pages"]>;
  const key = `${index}:${lastIndex}`;
  const users = pages.accessRanges.get(key);
  if (!users) return;
  area.numAccesses--;
  if (users > 1) {
    pages.accessRanges.set(key, users - 1);
    return;
  }
  pages.accessRanges.delete(key);
  pages.release(index, lastIndex - index + 1);
}

/** iommufd_access_create: the object is owned by its driver (users+1) until destroyed. */
export function accessCreate(ctx: IommufdCtx, ops: AccessOps): Access {
  ctx.allocPoint("access");
  const a = new Access(ctx, ops);
  ctx.addObject(a);
  // the driver holds the object, and the access holds the context (iommufd_ctx_get)
  a.users++;
  ctx.fileOpened();
  return a;
}

/** iommufd_access_destroy */
export function accessDestroy(ctx: IommufdCtx, a: Access): void {
  a.users--;
  ctx.removeObject(a);
}
