/**
 * io_pagetable: the IOVA space of one IOAS. Areas (what is mapped, each a slice of an IoptPages),
 * reserved ranges (owner-tagged: domain apertures, device regions, test reservations), the
 * user's allowed ranges, the attached paging domains (each holds every area), the in-kernel
 * accesses, and the IOVA alignment they all impose. Mirrors drivers/iommu/iommufd/io_pagetable.c.
 */
import { failPoint } from "../fail-nth.js";
import { fail, IommuError } from "../errno.js";
import { PAGE_SIZE } from "../mm/index.js";
import type { Device } from "../iommu/device.js";
import { ResvType } from "../iommu/device.js";
import type { PagingDomain } from "../iommu/domain.js";
import { IOMMU_WRITE } from "../iommu/domain.js";
import { ULONG_MAX } from "../util/u64.js";
import type { IoptPages } from "./pages.js";
import { RangeList, ReservedSet, spans, type Range } from "./ranges.js";

const PAGE = 4096n;
/** HPAGE_SIZE with transparent huge pages: the cap on automatic IOVA alignment. */
export const HPAGE_SIZE = 2n * 1024n * 1024n;

export class Area implements Range {
  start: bigint;
  last: bigint;
  /** null while the MAP that creates it is still filling domains (unmap sees EBUSY). */
  pages: IoptPages | null = null;
  /** Bytes into the first page where the area starts. */
  pageOffset: number;
  /** Page indices of the pages object that this area covers. */
  firstIndex: number;
  lastIndex: number;
  prot: number;
  numAccesses = 0;
  preventAccess = false;
  /** storage_domain != NULL: the area's pages are held for the domains. */
  inDomains = false;

  constructor(start: bigint, last: bigint, startByte: bigint, length: bigint, prot: number) {
    this.start = start;
    this.last = last;
    this.pageOffset = Number(startByte % PAGE);
    this.firstIndex = Number(startByte / PAGE);
    this.lastIndex = Number((startByte + length - 1n) / PAGE);
    this.prot = prot;
  }

  get length(): bigint {
    return this.last - this.start + 1n;
  }

  /** iopt_area_start_byte(area, iova) */
  startByte(iova: bigint): bigint {
    return iova - this.start + BigInt(this.pageOffset) + BigInt(this.firstIndex) * PAGE;
  }
}

/** An in-kernel user of the IOAS (iommufd_access). */
export interface IoptAccess {
  readonly iovaAlignment: bigint;
  /** The driver's unmap callback: must unpin everything in [iova, iova+length). */
  unmapNotify(iova: bigint, length: bigint): void;
}

export interface PagesSlice {
  pages: IoptPages;
  startByte: bigint;
  length: bigint;
}

function minBig(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

export class IoPagetable {
  readonly areas = new RangeList<Area>();
  readonly allowed = new RangeList<Range>();
  readonly reserved = new ReservedSet();
  readonly domains: PagingDomain[] = [];
  readonly accesses: IoptAccess[] = [];
  iovaAlignment = 1n;
  disableLargePages = false;

  // ---------------------------------------------------------------- IOVA allocation

  /**
   * iopt_alloc_iova: the lowest suitable hole inside the allowed ranges (or [PAGE_SIZE,
   * ULONG_MAX-PAGE_SIZE]) that avoids reserved ranges and areas, aligned like the user VA.
   */
  allocIova(uptr: bigint, length: bigint): bigint {
    const pageOffset = uptr % PAGE;
    if (length === 0n || length >= ULONG_MAX / 2n) fail("EOVERFLOW", "length too large for automatic IOVA");
    let align = 1n;
    while (align < length) align <<= 1n;
    if (uptr !== 0n) {
      const low = uptr & -uptr;
      if (low < align) align = low;
    }
    if (align >= HPAGE_SIZE) align = HPAGE_SIZE;
    if (align < this.iovaAlignment) fail("EINVAL", "user VA alignment below the IOAS alignment");

    const check = (start: bigint, last: bigint): bigint | null => {
      const aligned = ((start + align - 1n) & ~(align - 1n)) | pageOffset;
      if (start + align - 1n > ULONG_MAX) return null;
      if (aligned >= last || last - aligned < length - 1n) return null;
      return aligned;
    };
    const lo = PAGE;
    const hi = ULONG_MAX - PAGE;
    const allowedSpans = this.allowed.size === 0 ? [{ start: lo, last: hi, used: true }] : spans([this.allowed.all()], lo, hi);
    for (const as of allowedSpans) {
      if (!as.used) continue;
      // The kernel moves the allowed span's start to its aligned value (with the VA's page offset
      // OR'ed in) and searches for holes only from there on.
      const from = check(as.start, as.last);
      if (from === null) continue;
      for (const hole of spans([this.reserved.coverage(), this.areas.all()], from, as.last)) {
        if (hole.used) continue;
        const got = check(hole.start, hole.last);
        if (got !== null) return got;
      }
    }
    fail("ENOSPC", "no free IOVA space");
  }

  /** iopt_check_iova for a fixed IOVA. */
  checkIova(iova: bigint, length: bigint): void {
    if (iova & (this.iovaAlignment - 1n)) fail("EINVAL", "IOVA not aligned to the IOAS alignment");
    const last = iova + length - 1n;
    if (last > ULONG_MAX) fail("EOVERFLOW", "iova + length overflows");
    if (this.reserved.intersects(iova, last)) fail("EINVAL", "range intersects a reserved region");
    if (this.areas.first(iova, last)) fail("EEXIST", "range overlaps an existing mapping");
  }

  // ---------------------------------------------------------------- map / unmap

  /**
   * iopt_map_pages: place the slices at one IOVA (fixed or chosen), fill every domain, publish.
   * On failure nothing is left behind. Takes ownership of one reference per slice.
   */
  mapPages(list: PagesSlice[], length: bigint, fixedIova: bigint | null, prot: number): bigint {
    if (length & (this.iovaAlignment - 1n) || length === 0n) fail("EINVAL", "length not aligned to the IOAS alignment");
    let iova: bigint;
    if (fixedIova === null) {
      iova = this.allocIova(list[0].pages.uptr + list[0].startByte, length);
    } else {
      this.checkIova(fixedIova, length);
      iova = fixedIova;
    }
    // iopt_insert_area for each slice (validate all before inserting any)
    const areas: Area[] = [];
    let cur = iova;
    for (const s of list) {
      if (prot & IOMMU_WRITE && !s.pages.writable) fail("EPERM", "writable mapping of read-only memory");
      failPoint("ENOMEM", "iopt_alloc_area");
      const a = new Area(cur, cur + s.length - 1n, s.startByte, s.length, prot);
      if (BigInt(a.pageOffset) & (this.iovaAlignment - 1n)) fail("EINVAL", "page offset not aligned to the IOAS alignment");
      if (a.last > ULONG_MAX) fail("EOVERFLOW", "area overflows");
      areas.push(a);
      cur += s.length;
    }
    for (const a of areas) this.areas.insert(a);
    // fill domains, undoing on failure
    const filled: Area[] = [];
    try {
      for (let i = 0; i < areas.length; i++) {
        this.fillAreaDomains(areas[i], list[i].pages);
        filled.push(areas[i]);
      }
    } catch (e) {
      for (let i = 0; i < filled.length; i++) this.unfillAreaDomains(filled[i], list[i].pages);
      for (const a of areas) this.areas.remove(a);
      throw e;
    }
    for (let i = 0; i < areas.length; i++) areas[i].pages = list[i].pages;
    return iova;
  }

  /** iopt_get_pages: the slices covering [iova, iova+length), contiguous, for COPY. */
  getPages(iova: bigint, length: bigint): PagesSlice[] {
    if (length === 0n) fail("EINVAL", "length 0");
    const last = iova + length - 1n;
    if (last > ULONG_MAX) fail("EOVERFLOW", "iova + length overflows");
    const out: PagesSlice[] = [];
    this.forEachContig(iova, last, (area, cur, l) => {
      failPoint("ENOMEM", "iopt_get_pages (pages list element)");
      out.push({ pages: area.pages as IoptPages, startByte: area.startByte(cur), length: l - cur + 1n });
    }, "ENOENT");
    for (const s of out) s.pages.refs++;
    return out;
  }

  /**
   * iopt_for_each_contig_area: walk areas covering [iova, last] with no hole; calls fn(area,
   * curIova, lastInArea). If the walk finds a hole or an unfinished area, fails with holeErrno
   * after the callbacks for the covered prefix have run.
   */
  forEachContig(iova: bigint, last: bigint, fn: (area: Area, cur: bigint, lastInArea: bigint) => void, holeErrno: "ENOENT" | "EINVAL"): void {
    let cur = iova;
    let area = this.areas.first(iova, iova);
    while (area && area.pages && area.start <= cur) {
      const l = minBig(last, area.last);
      fn(area, cur, l);
      if (last <= area.last) return;
      cur = area.last + 1n;
      const nx = this.areas.next(area);
      if (!nx || nx.start !== cur) break;
      area = nx;
    }
    fail(holeErrno, "IOVA range is not fully mapped");
  }

  /**
   * iopt_unmap_iova_range: remove every area inside [start, last]. Like the kernel, areas already
   * removed stay removed if a later one makes the call fail. Returns bytes unmapped; on failure
   * throws an IommuError whose `unmapped` says how much was removed first.
   */
  unmapRange(start: bigint, last: bigint): bigint {
    let unmapped = 0n;
    let tries = 0;
    for (;;) {
      const area = this.areas.first(start, last);
      if (!area) break;
      if (!area.pages) throw withUnmapped(new IommuError("EBUSY", "area is still being mapped"), unmapped);
      if (area.start < start || area.last > last) throw withUnmapped(new IommuError("ENOENT", "unmap would split an area"), unmapped);
      if (area.start !== start) tries = 0;
      if (area.numAccesses) {
        start = area.start;
        area.preventAccess = true;
        for (const acc of [...this.accesses]) acc.unmapNotify(area.start, area.length);
        tries++;
        if (tries > 100) throw withUnmapped(new IommuError("EDEADLK", "access does not unpin on unmap"), unmapped);
        continue;
      }
      const pages = area.pages;
      area.pages = null;
      this.unfillAreaDomains(area, pages);
      this.areas.remove(area);
      putPages(pages);
      unmapped += area.length;
      if (area.last >= last) break;
      start = area.last + 1n;
    }
    return unmapped;
  }

  unmapAll(): bigint {
    return this.unmapRange(0n, ULONG_MAX);
  }

  // ---------------------------------------------------------------- reserved / allowed

  /** iopt_reserve_iova: EADDRINUSE if an area or an allowed range is there. */
  reserveIova(start: bigint, last: bigint, owner: unknown): void {
    if (this.areas.first(start, last) || this.allowed.first(start, last)) fail("EADDRINUSE", "range in use by a mapping or an allowed range");
    this.reserved.add(start, last, owner);
  }

  removeReserved(owner: unknown): void {
    this.reserved.removeOwner(owner);
  }

  /** iopt_set_allow_iova: replace the allowed list atomically; EADDRINUSE if it meets a reserved range. */
  setAllowIova(ranges: Range[]): void {
    for (const r of ranges) if (this.reserved.intersects(r.start, r.last)) fail("EADDRINUSE", "allowed range intersects a reserved range");
    this.allowed.clear();
    for (const r of [...ranges].sort((a, b) => (a.start < b.start ? -1 : 1))) this.allowed.insert({ start: r.start, last: r.last });
  }

  /** The IOVA_RANGES answer: holes of the reserved tree over [0, ULONG_MAX]. */
  iovaRanges(): Range[] {
    return spans([this.reserved.coverage()], 0n, ULONG_MAX)
      .filter((s) => !s.used)
      .map((s) => ({ start: s.start, last: s.last }));
  }

  /**
   * iopt_table_enforce_dev_resv_regions: reserve the device's regions (owner = the device).
   * Returns the SW_MSI start if the device reports one.
   */
  enforceDevResvRegions(dev: Device, wantMsi: boolean): bigint | null {
    let numHw = 0;
    let numSw = 0;
    let swMsi: bigint | null = null;
    try {
      // iopt_table_enforce_dev_resv_regions: iommufd_should_fail() -> EINVAL
      failPoint("EINVAL", "iopt_table_enforce_dev_resv_regions");
      for (const r of dev.resv) {
        if (r.type === ResvType.DIRECT_RELAXABLE) continue;
        if (wantMsi && r.type === ResvType.MSI) numHw++;
        if (wantMsi && r.type === ResvType.SW_MSI) {
          swMsi = r.start;
          numSw++;
        }
        this.reserveIova(r.start, r.start + r.length - 1n, dev);
      }
      if ((numSw && numHw) || numSw > 1) fail("EINVAL", "driver reports an impossible MSI region combination");
    } catch (e) {
      this.removeReserved(dev);
      throw e;
    }
    return swMsi;
  }

  // ---------------------------------------------------------------- alignment

  private checkIovaAlignment(align: bigint): void {
    const m = align - 1n;
    for (const a of this.areas.all())
      if (a.start & m || a.length & m || BigInt(a.pageOffset) & m) fail("EADDRINUSE", "an existing mapping is not aligned to the new alignment");
  }

  private calculateIovaAlignment(): void {
    let align = this.disableLargePages ? PAGE : 1n;
    for (const d of this.domains) {
      const a = 1n << BigInt(d.pgShift);
      if (a > align) align = a;
    }
    for (const acc of this.accesses) if (acc.iovaAlignment > align) align = acc.iovaAlignment;
    if (align > this.iovaAlignment) this.checkIovaAlignment(align);
    this.iovaAlignment = align;
  }

  disableLarge(): void {
    if (this.disableLargePages) return;
    if (this.domains.length && this.areas.size) fail("EINVAL", "domains already hold mappings");
    this.disableLargePages = true;
    try {
      this.calculateIovaAlignment();
    } catch (e) {
      this.disableLargePages = false;
      throw e;
    }
  }

  enableLarge(): void {
    this.disableLargePages = false;
    this.calculateIovaAlignment();
  }

  addAccess(acc: IoptAccess): void {
    this.accesses.push(acc);
    try {
      this.calculateIovaAlignment();
    } catch (e) {
      this.accesses.pop();
      throw e;
    }
  }

  removeAccess(acc: IoptAccess): void {
    const i = this.accesses.indexOf(acc);
    if (i >= 0) this.accesses.splice(i, 1);
    this.calculateIovaAlignment();
  }

  // ---------------------------------------------------------------- domains

  /** iopt_table_add_domain: raise alignment, reserve outside the aperture, fill every area. */
  addDomain(domain: PagingDomain): void {
    const dAlign = 1n << BigInt(domain.pgShift);
    const newAlign = dAlign > this.iovaAlignment ? dAlign : this.iovaAlignment;
    if (newAlign > PAGE) fail("EINVAL", "domain page size larger than PAGE_SIZE");
    if (newAlign !== this.iovaAlignment) this.checkIovaAlignment(newAlign);
    try {
      if (domain.apertureStart !== 0n) this.reserveIova(0n, domain.apertureStart - 1n, domain);
      if (domain.apertureEnd !== ULONG_MAX) this.reserveIova(domain.apertureEnd + 1n, ULONG_MAX, domain);
      this.fillDomain(domain);
    } catch (e) {
      this.removeReserved(domain);
      throw e;
    }
    this.iovaAlignment = newAlign;
    this.domains.push(domain);
  }

  /** iopt_table_remove_domain */
  removeDomain(domain: PagingDomain): void {
    const i = this.domains.indexOf(domain);
    if (i < 0) return;
    // swap with the tail, as the kernel keeps its xarray dense
    const lastD = this.domains.pop() as PagingDomain;
    if (lastD !== domain) this.domains[i] = lastD;
    for (const a of this.areas.all()) {
      if (!a.pages) continue;
      this.unmapAreaFromDomain(a, domain);
      if (this.domains.length === 0 && a.inDomains) {
        a.inDomains = false;
        a.pages.release(a.firstIndex, a.lastIndex - a.firstIndex + 1);
      }
    }
    this.removeReserved(domain);
    this.calculateIovaAlignment();
  }

  private fillDomain(domain: PagingDomain): void {
    const done: Area[] = [];
    try {
      for (const a of this.areas.all()) {
        if (!a.pages) continue;
        const first = !a.inDomains;
        if (first) a.pages.hold(a.firstIndex, a.lastIndex - a.firstIndex + 1);
        a.inDomains = true;
        try {
          this.mapAreaIntoDomain(a, domain);
        } catch (e) {
          // this area's own pin (taken just above) goes too: the domain map failed part way
          if (first) {
            a.inDomains = false;
            a.pages.release(a.firstIndex, a.lastIndex - a.firstIndex + 1);
          }
          throw e;
        }
        done.push(a);
      }
    } catch (e) {
      for (const a of done) {
        this.unmapAreaFromDomain(a, domain);
        if (this.domains.length === 0) {
          a.inDomains = false;
          (a.pages as IoptPages).release(a.firstIndex, a.lastIndex - a.firstIndex + 1);
        }
      }
      throw e;
    }
  }

  /** iopt_area_fill_domains: a new area goes into every attached domain. */
  private fillAreaDomains(area: Area, pages: IoptPages): void {
    if (this.domains.length === 0) return;
    pages.hold(area.firstIndex, area.lastIndex - area.firstIndex + 1);
    area.inDomains = true;
    const saved = area.pages;
    area.pages = pages;
    const mapped: PagingDomain[] = [];
    try {
      for (const d of this.domains) {
        this.mapAreaIntoDomain(area, d);
        mapped.push(d);
      }
    } catch (e) {
      // iopt_area_fill_domains' unwind: out of the domains filled so far, then drop the pin
      for (const d of mapped) this.unmapAreaFromDomain(area, d);
      area.inDomains = false;
      pages.release(area.firstIndex, area.lastIndex - area.firstIndex + 1);
      throw e;
    } finally {
      area.pages = saved;
    }
  }

  private unfillAreaDomains(area: Area, pages: IoptPages): void {
    if (!area.inDomains) return;
    const saved = area.pages;
    area.pages = pages;
    for (const d of this.domains) this.unmapAreaFromDomain(area, d);
    area.pages = saved;
    area.inDomains = false;
    pages.release(area.firstIndex, area.lastIndex - area.firstIndex + 1);
  }

  /** Map the area's pinned frames into domain, one call per physically contiguous run. */
  private mapAreaIntoDomain(area: Area, domain: PagingDomain): void {
    const pages = area.pages as IoptPages;
    const shift = domain.pgShift;
    const ioPg = 2 ** shift;
    const iova0 = Number(area.start >> BigInt(shift));
    const startByte = area.firstIndex * PAGE_SIZE + area.pageOffset;
    const endByte = startByte + Number(area.length);
    const small = this.disableLargePages;
    try {
      pages.pfns.forEach(area.firstIndex, area.lastIndex - area.firstIndex + 1, (idx, n, pfn) => {
        const runStart = idx * PAGE_SIZE;
        const a = Math.max(runStart, startByte);
        const z = Math.min(runStart + n * PAGE_SIZE, endByte);
        if (z <= a) return;
        domain.map(iova0 + (a - startByte) / ioPg, pfn * PAGE_SIZE + (a - runStart), (z - a) / ioPg, area.prot, small);
      });
    } catch (e) {
      // a map that failed part way (iommu_map's own unwind): nothing of this area stays in the domain
      this.unmapAreaFromDomain(area, domain);
      throw e;
    }
  }

  private unmapAreaFromDomain(area: Area, domain: PagingDomain): void {
    const shift = BigInt(domain.pgShift);
    domain.unmap(Number(area.start >> shift), Number(area.length >> shift));
  }

  // ---------------------------------------------------------------- compat split (VFIO type1 v1)

  /** iopt_cut_iova: split areas so that each iova becomes the last byte of an area. */
  cutIova(iovas: bigint[]): void {
    for (const iova of iovas) {
      const area = this.areas.first(iova, iova);
      if (!area) continue;
      this.splitArea(area, iova);
    }
  }

  private splitArea(area: Area, iova: bigint): void {
    if (iova === area.start || iova === area.last) return;
    if (!area.pages || area.preventAccess) fail("EBUSY", "area busy");
    const newStart = iova + 1n;
    if (newStart & (this.iovaAlignment - 1n) || area.startByte(newStart) & (this.iovaAlignment - 1n)) fail("EINVAL", "split point not aligned");
    if (area.numAccesses) fail("EINVAL", "area has in-kernel accesses");
    if (area.inDomains && !this.disableLargePages) fail("EINVAL", "area may use large IO pages");
    const pages = area.pages;
    const lhs = new Area(area.start, newStart - 1n, area.startByte(area.start), newStart - area.start, area.prot);
    const rhs = new Area(newStart, area.last, area.startByte(newStart), area.last - newStart + 1n, area.prot);
    // holds: the pages were held once over [first,last]; re-hold per half so release stays balanced
    if (area.inDomains) {
      pages.hold(lhs.firstIndex, lhs.lastIndex - lhs.firstIndex + 1);
      pages.hold(rhs.firstIndex, rhs.lastIndex - rhs.firstIndex + 1);
      pages.release(area.firstIndex, area.lastIndex - area.firstIndex + 1);
    }
    lhs.pages = pages;
    rhs.pages = pages;
    lhs.inDomains = rhs.inDomains = area.inDomains;
    pages.refs++;
    this.areas.remove(area);
    this.areas.insert(lhs);
    this.areas.insert(rhs);
  }
}

function withUnmapped(e: IommuError, unmapped: bigint): IommuError {
  (e as IommuError & { unmapped?: bigint }).unmapped = unmapped;
  return e;
}

/** iopt_put_pages: drop a reference. */
export function putPages(pages: IoptPages): void {
  pages.refs--;
}
