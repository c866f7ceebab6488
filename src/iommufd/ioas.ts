/** IOAS objects and their ioctls (drivers/iommu/iommufd/ioas.c). */
import { failPoint } from "../fail-nth.js";
import { fail, IommuError } from "../errno.js";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from "../iommu/domain.js";
import { IoPagetable, putPages, type PagesSlice } from "../iopt/io-pagetable.js";
import { AccountMode, IoptPages } from "../iopt/pages.js";
import type { Range } from "../iopt/ranges.js";
import { U64_MAX, ULONG_MAX } from "../util/u64.js";
import type { IommufdCtx } from "./context.js";
import type { HwptPaging } from "./hwpt.js";
import { IommufdObject } from "./object.js";
import {
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
  IOMMU_OPTION_OP_GET,
  IOMMU_OPTION_OP_SET,
  ObjType,
  type IommuIoasAllowIovas,
  type IommuIoasCopy,
  type IommuIoasIovaRanges,
  type IommuIoasMap,
  type IommuIoasMapFile,
  type IommuIoasUnmap,
  type IommuOption,
} from "./types.js";

export class Ioas extends IommufdObject {
  readonly type = ObjType.IOAS;
  readonly iopt = new IoPagetable();
  /** Paging HWPTs created on this IOAS (auto and manual), in creation order. */
  readonly hwpts: HwptPaging[] = [];
  constructor(readonly ctx: IommufdCtx) {
    super();
  }
  destroy(): void {
    this.iopt.unmapAll();
    this.iopt.removeReserved(null);
  }
}

const MAP_FLAGS = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

function convProt(flags: number): number {
  let p = IOMMU_CACHE;
  if (flags & IOMMU_IOAS_MAP_WRITEABLE) p |= IOMMU_WRITE;
  if (flags & IOMMU_IOAS_MAP_READABLE) p |= IOMMU_READ;
  return p;
}

export function ioasAlloc(ctx: IommufdCtx, flags: number): number {
  if (flags) fail("EOPNOTSUPP", "IOAS_ALLOC flags must be 0");
  ctx.allocPoint("ioas");
  const ioas = new Ioas(ctx);
  ctx.addObject(ioas);
  return ioas.id;
}

export function ioasIovaRanges(ctx: IommufdCtx, cmd: IommuIoasIovaRanges): IommuIoasIovaRanges {
  if (cmd.__reserved) fail("EOPNOTSUPP", "__reserved must be 0");
  const ioas = ctx.getIoas(cmd.ioas_id);
  const max = cmd.num_iovas >>> 0;
  const ranges = ioas.iopt.iovaRanges();
  const out = { ...cmd, num_iovas: 0, out_iova_alignment: ioas.iopt.iovaAlignment };
  for (const r of ranges) {
    if (out.num_iovas < max) {
      const b = new Uint8Array(16);
      const dv = new DataView(b.buffer);
      dv.setBigUint64(0, r.start, true);
      dv.setBigUint64(8, r.last, true);
      ctx.writeUser(cmd.allowed_iovas + BigInt(out.num_iovas) * 16n, b);
    }
    out.num_iovas++;
  }
  if (out.num_iovas > max) {
    const e = new IommuError("EMSGSIZE", "num_iovas too small; the needed count is returned");
    e.out = out;
    throw e;
  }
  return out;
}

/**
 * iommufd_ioas_load_iovas: read num iommu_iova_range entries in order; the first bad entry decides
 * the error (EFAULT unreadable; EINVAL for start >= last or for overlapping an earlier entry).
 * Entries are read in chunks and overlaps found with one sort, so a huge num_iovas costs
 * O(n log n) and a few large reads rather than O(n^2) and one read per entry.
 */
function loadIovas(ctx: IommufdCtx, ptr: bigint, num: number): Range[] {
  const CHUNK = 4096;
  const out: Range[] = [];
  let stop: IommuError | null = null;
  const take = (b: Uint8Array, off: number): boolean => {
    const dv = new DataView(b.buffer, b.byteOffset + off, 16);
    const start = dv.getBigUint64(0, true);
    const last = dv.getBigUint64(8, true);
    if (start >= last) {
      stop = new IommuError("EINVAL", "range start >= last");
      return false;
    }
    out.push({ start, last });
    return true;
  };
  chunks: for (let i = 0; i < num; i += CHUNK) {
    const n = Math.min(CHUNK, num - i);
    const whole = ctx.tryReadUser(ptr + BigInt(i) * 16n, n * 16);
    for (let j = 0; j < n; j++) {
      // an unreadable chunk is read entry by entry up to the first entry that faults
      const b = whole ?? ctx.tryReadUser(ptr + BigInt(i + j) * 16n, 16);
      if (!b) {
        stop = new IommuError("EFAULT", "cannot read the range array");
        break chunks;
      }
      if (!take(b, whole ? j * 16 : 0)) break chunks;
    }
  }
  // every entry read lies before the first bad one, so any overlap among them is reported first
  const sorted = [...out].sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
  for (let k = 1; k < sorted.length; k++) if (sorted[k].start <= sorted[k - 1].last) fail("EINVAL", "ranges overlap");
  if (stop) throw stop;
  return out;
}

export function ioasAllowIovas(ctx: IommufdCtx, cmd: IommuIoasAllowIovas): void {
  if (cmd.__reserved) fail("EOPNOTSUPP", "__reserved must be 0");
  const ioas = ctx.getIoas(cmd.ioas_id);
  const ranges = loadIovas(ctx, cmd.allowed_iovas, cmd.num_iovas >>> 0);
  ioas.iopt.setAllowIova(ranges);
}

export function ioasMap(ctx: IommufdCtx, cmd: IommuIoasMap): IommuIoasMap {
  if (cmd.flags & ~MAP_FLAGS || cmd.__reserved) fail("EOPNOTSUPP", "unknown map flags or non-zero __reserved");
  if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) fail("EOVERFLOW", "iova or length too large");
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) fail("EINVAL", "neither READABLE nor WRITEABLE");
  const ioas = ctx.getIoas(cmd.ioas_id);
  failPoint("ENOMEM", "iopt_alloc_user_pages");
  const pages = IoptPages.forUser(ctx.host.phys, ctx.caller, cmd.user_va, cmd.length, (cmd.flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0);
  if (ctx.accountMode === AccountMode.MM && pages.accountMode === AccountMode.USER) pages.accountMode = AccountMode.MM;
  const slice: PagesSlice = { pages, startByte: cmd.user_va - pages.uptr, length: cmd.length };
  const iova = ioas.iopt.mapPages([slice], cmd.length, cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA ? cmd.iova : null, convProt(cmd.flags));
  return { ...cmd, iova };
}

export function ioasMapFile(ctx: IommufdCtx, cmd: IommuIoasMapFile): IommuIoasMapFile {
  if (cmd.flags & ~MAP_FLAGS) fail("EOPNOTSUPP", "unknown map flags");
  if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) fail("EOVERFLOW", "iova or length too large");
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) fail("EINVAL", "neither READABLE nor WRITEABLE");
  const ioas = ctx.getIoas(cmd.ioas_id);
  // iopt_map_file_pages: length and overflow are checked before the fd is looked up. There is no
  // size check here: like user memory, file pages are pinned lazily, and pinning pages beyond
  // the end of the file (memfd_pin_folios) is what fails with EINVAL.
  if (cmd.length === 0n) fail("EINVAL", "length 0");
  if (cmd.start + cmd.length - 1n > U64_MAX) fail("EOVERFLOW", "start + length overflows");
  const file = ctx.memfdOf(cmd.fd);
  failPoint("ENOMEM", "iopt_alloc_file_pages");
  const pages = IoptPages.forFile(ctx.host.phys, ctx.caller, file, cmd.start, cmd.length, (cmd.flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0);
  if (ctx.accountMode === AccountMode.MM && pages.accountMode === AccountMode.USER) pages.accountMode = AccountMode.MM;
  const slice: PagesSlice = { pages, startByte: cmd.start - pages.uptr, length: cmd.length };
  const iova = ioas.iopt.mapPages([slice], cmd.length, cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA ? cmd.iova : null, convProt(cmd.flags));
  return { ...cmd, iova };
}

export function ioasCopy(ctx: IommufdCtx, cmd: IommuIoasCopy): IommuIoasCopy {
  if (cmd.flags & ~MAP_FLAGS) fail("EOPNOTSUPP", "unknown copy flags");
  if (cmd.length >= ULONG_MAX || cmd.src_iova >= ULONG_MAX || cmd.dst_iova >= ULONG_MAX) fail("EOVERFLOW", "value too large");
  if (!(cmd.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) fail("EINVAL", "neither READABLE nor WRITEABLE");
  const src = ctx.getIoas(cmd.src_ioas_id);
  const list = src.iopt.getPages(cmd.src_iova, cmd.length);
  try {
    const dst = ctx.getIoas(cmd.dst_ioas_id);
    const iova = dst.iopt.mapPages(list, cmd.length, cmd.flags & IOMMU_IOAS_MAP_FIXED_IOVA ? cmd.dst_iova : null, convProt(cmd.flags));
    return { ...cmd, dst_iova: iova };
  } catch (e) {
    for (const s of list) putPages(s.pages);
    throw e;
  }
}

export function ioasUnmap(ctx: IommufdCtx, cmd: IommuIoasUnmap): IommuIoasUnmap {
  const ioas = ctx.getIoas(cmd.ioas_id);
  let unmapped: bigint;
  if (cmd.iova === 0n && cmd.length === U64_MAX) {
    unmapped = ioas.iopt.unmapAll();
  } else {
    if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) fail("EOVERFLOW", "iova or length too large");
    if (cmd.length === 0n) fail("EINVAL", "length 0");
    const last = cmd.iova + cmd.length - 1n;
    if (last > ULONG_MAX) fail("EOVERFLOW", "iova + length overflows");
    unmapped = ioas.iopt.unmapRange(cmd.iova, last);
    if (unmapped === 0n) fail("ENOENT", "nothing mapped in range");
  }
  return { ...cmd, length: unmapped };
}

export function ioasOptionHugePages(ctx: IommufdCtx, cmd: IommuOption): IommuOption {
  const ioas = ctx.getIoas(cmd.object_id);
  if (cmd.op === IOMMU_OPTION_OP_GET) return { ...cmd, val64: ioas.iopt.disableLargePages ? 0n : 1n };
  if (cmd.op === IOMMU_OPTION_OP_SET) {
    if (cmd.val64 === 0n) ioas.iopt.disableLarge();
    else if (cmd.val64 === 1n) ioas.iopt.enableLarge();
    else fail("EINVAL", "val64 must be 0 or 1");
    return cmd;
  }
  fail("EOPNOTSUPP", "unknown option op");
}
