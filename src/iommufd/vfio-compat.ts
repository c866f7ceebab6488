/**
 * VFIO type1 container compatibility on an iommufd context (vfio_compat.c): one compat IOAS per
 * context, selected with IOMMU_VFIO_IOAS; VFIO's container ioctls act on it. The struct-carrying
 * ioctls take the user pointer and read/write the caller's memory exactly as the kernel does
 * (the GET_INFO capability chain never writes past argsz).
 */
import { fail } from "../errno.js";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from "../iommu/domain.js";
import { AccountMode, IoptPages } from "../iopt/pages.js";
import { ULONG_MAX } from "../util/u64.js";
import type { IommufdCtx } from "./context.js";
import type { Ioas } from "./ioas.js";
import { IOMMU_VFIO_IOAS_CLEAR, IOMMU_VFIO_IOAS_GET, IOMMU_VFIO_IOAS_SET, type IommuVfioIoas } from "./types.js";

export const VFIO_API_VERSION = 0;
export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_SPAPR_TCE_IOMMU = 2;
export const VFIO_TYPE1v2_IOMMU = 3;
export const VFIO_DMA_CC_IOMMU = 4;
export const VFIO_EEH = 5;
export const VFIO_TYPE1_NESTING_IOMMU = 6;
export const VFIO_SPAPR_TCE_v2_IOMMU = 7;
export const VFIO_NOIOMMU_IOMMU = 8;
export const VFIO_UNMAP_ALL = 9;
export const VFIO_UPDATE_VADDR = 10;
export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
export const VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
export const VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;
export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

/**
 * Whether the kernel was built with VFIO no-IOMMU support (CONFIG_VFIO_NOIOMMU). Debian's 6.12
 * configs (linux-config-6.12) and the oracle kernel leave it unset.
 */
export const CONFIG_VFIO_NOIOMMU = false;

function getCompatIoas(ctx: IommufdCtx): Ioas {
  if (!ctx.compatIoas) fail("ENODEV", "no compat IOAS");
  return ctx.compatIoas;
}

export function vfioIoas(ctx: IommufdCtx, cmd: IommuVfioIoas): IommuVfioIoas {
  if (cmd.__reserved) fail("EOPNOTSUPP", "__reserved must be 0");
  switch (cmd.op) {
    case IOMMU_VFIO_IOAS_GET:
      return { ...cmd, ioas_id: getCompatIoas(ctx).id };
    case IOMMU_VFIO_IOAS_SET:
      ctx.compatIoas = ctx.getIoas(cmd.ioas_id);
      return cmd;
    case IOMMU_VFIO_IOAS_CLEAR:
      ctx.compatIoas = null;
      return cmd;
    default:
      fail("EOPNOTSUPP", "unknown op");
  }
}

/** iommufd_vfio_compat_ioas_create: used when a VFIO group/device joins this context. */
export function compatIoasCreate(ctx: IommufdCtx): Ioas {
  if (ctx.noIommuMode) fail("EINVAL", "context is in no-IOMMU mode");
  if (ctx.compatIoas) return ctx.compatIoas;
  const id = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  ctx.compatIoas = ctx.getIoas(id);
  return ctx.compatIoas;
}

export function vfioCheckExtension(ctx: IommufdCtx, type: number): number {
  switch (type) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL:
      return ctx.noIommuMode ? 0 : 1;
    case VFIO_NOIOMMU_IOMMU:
      return CONFIG_VFIO_NOIOMMU ? 1 : 0;
    case VFIO_DMA_CC_IOMMU: {
      const ioas = getCompatIoas(ctx);
      return ioas.hwpts.every((h) => h.enforceCacheCoherency) ? 1 : 0;
    }
    default:
      return 0;
  }
}

export function vfioSetIommu(ctx: IommufdCtx, type: number): number {
  if (CONFIG_VFIO_NOIOMMU && type === VFIO_NOIOMMU_IOMMU && ctx.noIommuMode) {
    if (!ctx.caller.caps.sysRawio) fail("EPERM", "needs CAP_SYS_RAWIO");
    return 0;
  }
  if ((type !== VFIO_TYPE1_IOMMU && type !== VFIO_TYPE1v2_IOMMU) || ctx.noIommuMode) fail("EINVAL", "unsupported IOMMU type");
  const ioas = getCompatIoas(ctx);
  if (type === VFIO_TYPE1_IOMMU) ioas.iopt.disableLarge();
  return 0;
}

function rd(ctx: IommufdCtx, arg: bigint, len: number): DataView {
  const b = ctx.readUser(arg, len);
  return new DataView(b.buffer, b.byteOffset, len);
}

export function vfioIommuMapDma(ctx: IommufdCtx, arg: bigint): number {
  const dv = rd(ctx, arg, 32);
  const argsz = dv.getUint32(0, true);
  const flags = dv.getUint32(4, true);
  const vaddr = dv.getBigUint64(8, true);
  const iova = dv.getBigUint64(16, true);
  const size = dv.getBigUint64(24, true);
  if (argsz < 32 || flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) fail("EINVAL", "bad argsz or flags");
  let prot = IOMMU_CACHE;
  if (flags & VFIO_DMA_MAP_FLAG_READ) prot |= IOMMU_READ;
  if (flags & VFIO_DMA_MAP_FLAG_WRITE) prot |= IOMMU_WRITE;
  const ioas = getCompatIoas(ctx);
  const pages = IoptPages.forUser(ctx.host.phys, ctx.caller, vaddr, size, (prot & IOMMU_WRITE) !== 0);
  if (ctx.accountMode === AccountMode.MM && pages.accountMode === AccountMode.USER) pages.accountMode = AccountMode.MM;
  ioas.iopt.mapPages([{ pages, startByte: vaddr - pages.uptr, length: size }], size, iova, prot);
  return 0;
}

export function vfioIommuUnmapDma(ctx: IommufdCtx, arg: bigint): number {
  const dv = rd(ctx, arg, 24);
  const argsz = dv.getUint32(0, true);
  const flags = dv.getUint32(4, true);
  const iova = dv.getBigUint64(8, true);
  const size = dv.getBigUint64(16, true);
  if (argsz < 24 || flags & ~VFIO_DMA_UNMAP_FLAG_ALL) fail("EINVAL", "bad argsz or flags");
  const ioas = getCompatIoas(ctx);
  if (flags & VFIO_DMA_UNMAP_FLAG_ALL && (iova !== 0n || size !== 0n)) fail("EINVAL", "UNMAP_ALL needs iova 0 and size 0");
  if (!(flags & VFIO_DMA_UNMAP_FLAG_ALL) && ioas.iopt.disableLargePages) {
    // type1 (v1) emulation: cut at both ends so holes can be punched (failures skip the write-back)
    const cuts = [(iova + size - 1n) & ULONG_MAX];
    if (iova) cuts.push(iova - 1n);
    ioas.iopt.cutIova(cuts);
  }
  // from here on `size` is written back whatever happens (unlike type1)
  let unmapped = 0n;
  let err: unknown = null;
  try {
    if (flags & VFIO_DMA_UNMAP_FLAG_ALL) unmapped = ioas.iopt.unmapAll();
    else {
      if (!size) fail("EINVAL", "size 0");
      const last = iova + size - 1n;
      if (last > ULONG_MAX) fail("EOVERFLOW", "iova + size overflows");
      unmapped = ioas.iopt.unmapRange(iova, last);
    }
  } catch (e) {
    const u = (e as { unmapped?: bigint }).unmapped;
    if (u !== undefined) unmapped = u;
    err = e;
  }
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, unmapped, true);
  ctx.writeUser(arg + 16n, out);
  if (err) throw err;
  return 0;
}

function pageSizes(ioas: Ioas): bigint {
  let bm = ULONG_MAX;
  for (const d of ioas.iopt.domains) bm &= d.pgsizeBitmap;
  const PAGE_MASK = ULONG_MAX & ~4095n;
  if (bm & ~PAGE_MASK) {
    bm &= PAGE_MASK;
    bm |= 4096n;
  }
  return bm > ioas.iopt.iovaAlignment ? bm : ioas.iopt.iovaAlignment;
}

export function vfioIommuGetInfo(ctx: IommufdCtx, arg: bigint): number {
  const dv = rd(ctx, arg, 16);
  let argsz = dv.getUint32(0, true);
  if (argsz < 16) fail("EINVAL", "argsz too small");
  const minsz = Math.min(argsz, 24);
  const ioas = getCompatIoas(ctx);
  const w = (off: number, bytes: Uint8Array): void => ctx.writeUser(arg + BigInt(off), bytes);
  const fillDmaAvail = (off: number, avail: number): number => {
    if (avail >= 12) {
      const b = new Uint8Array(12);
      const v = new DataView(b.buffer);
      v.setUint16(0, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, true);
      v.setUint16(2, 1, true);
      v.setUint32(8, 0xffffffff, true);
      w(off, b);
    }
    return 12;
  };
  const fillIova = (off: number, avail: number): number => {
    const ranges = ioas.iopt.iovaRanges();
    let nr = 0;
    for (const r of ranges) {
      if (avail >= 16 + 16 * (nr + 1)) {
        const b = new Uint8Array(16);
        const v = new DataView(b.buffer);
        v.setBigUint64(0, r.start, true);
        v.setBigUint64(8, r.last, true);
        w(off + 16 + 16 * nr, b);
      }
      nr++;
    }
    if (avail >= 16 + 16 * nr) {
      const b = new Uint8Array(16);
      const v = new DataView(b.buffer);
      v.setUint16(0, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, true);
      v.setUint16(2, 1, true);
      v.setUint32(8, nr, true);
      w(off, b);
    }
    return 16 + 16 * nr;
  };
  const fills = [fillDmaAvail, fillIova];
  let total = 24;
  let lastCap = -1;
  for (const f of fills) {
    let size = argsz > total ? f(total, argsz - total) : f(-1, 0);
    size = (size + 7) & ~7;
    if (lastCap >= 0 && argsz >= total) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, total, true);
      w(lastCap + 4, b);
    }
    lastCap = total;
    total += size;
  }
  const info = new Uint8Array(24);
  const iv = new DataView(info.buffer);
  const capOffset = argsz >= total ? 24 : 0;
  argsz = total;
  iv.setUint32(0, argsz, true);
  iv.setUint32(4, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, true);
  iv.setBigUint64(8, pageSizes(ioas), true);
  iv.setUint32(16, capOffset, true);
  w(0, info.subarray(0, minsz));
  return 0;
}
