/**
 * A file with a page cache: a memfd (shmem or hugetlbfs), a regular file (e.g. an executable), or
 * the hidden shmem object behind a MAP_SHARED|MAP_ANONYMOUS mapping.
 *
 * The page cache is an extent map pgoff (4 KiB units) -> pfn; it holds one reference on each cached
 * frame. Pages are allocated on first use, a missing range in one contiguous run (hugetlb files: in
 * aligned huge pages). A regular file's data lives in `backing` until its pages are cached.
 * Hugetlb files also keep the inode's reservation map (pages reserved by MAP_SHARED mmaps but not
 * yet allocated).
 */
import { assert, fail, type ErrnoName } from "../errno.js";
import { ExtentMap, pushRun, type PfnRuns } from "../util/extent-map.js";
import { PAGE_SIZE } from "./phys.js";
import type { Host } from "./host.js";
import type { Vma } from "./mm.js";

export class MemFile {
  readonly name: string;
  /** 12 for normal pages, 21 or 30 for hugetlbfs. */
  readonly hugetlbShift: number;
  /** Opened read-only (no shared writable maps, no writes). */
  readonly readonly: boolean;
  /** @internal The hidden object of a shared anonymous mapping: freed with its last mapping. */
  readonly anonymous: boolean;
  /** @internal Page cache: pgoff -> pfn. */
  readonly cache = new ExtentMap(true);
  /** @internal Hugetlb reservations of pages not yet allocated (pgoff ranges, huge-page aligned). */
  readonly resv = new ExtentMap(false);
  /** @internal The VMAs mapping this file. */
  readonly mappings = new Set<Vma>();
  private sz: number;
  private backing: Uint8Array | null;

  /** @internal Use Process.memfdCreate or Host.createFile. */
  constructor(
    private readonly host: Host,
    name: string,
    opts: { data?: Uint8Array; readonly?: boolean; hugetlbShift?: number; anonymous?: boolean; size?: number },
  ) {
    this.name = name;
    this.hugetlbShift = opts.hugetlbShift ?? 12;
    if (this.hugetlbShift !== 12) host.hugePool(this.hugetlbShift);
    this.readonly = opts.readonly ?? false;
    this.anonymous = opts.anonymous ?? false;
    this.backing = opts.data ? opts.data.slice() : null;
    this.sz = opts.size ?? this.backing?.length ?? 0;
  }

  /** Size in bytes. */
  get size(): number {
    return this.sz;
  }

  /** @internal Pages (4 KiB) covered by the size. */
  get pages(): number {
    return Math.ceil(this.sz / PAGE_SIZE);
  }

  /** @internal Frames per page of this file: 1, 512 or 262144. */
  get hugeFrames(): number {
    return 2 ** (this.hugetlbShift - 12);
  }

  /** ftruncate: grow or shrink. Shrinking drops the cache and mappings beyond (pins keep their frames). */
  truncate(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0) fail("EINVAL", `bad size ${size}`);
    if (this.readonly) fail("EINVAL", "file not open for writing");
    if (this.hugetlbShift !== 12 && size % (this.hugeFrames * PAGE_SIZE) !== 0)
      fail("EINVAL", "hugetlbfs size must be a multiple of the huge page size");
    if (size < this.sz) this.shrink(size);
    this.sz = size;
  }

  private shrink(size: number): void {
    const keep = Math.ceil(size / PAGE_SIZE);
    // Zap every mapping of the truncated pages (shared and private COW copies alike).
    for (const vma of [...this.mappings]) {
      const from = vma.start + Math.max(0, keep - vma.pgoff);
      if (from < vma.end) vma.mm.zapPtes(from, vma.end - from);
    }
    // Zero the tail of a partial last page.
    if (size % PAGE_SIZE !== 0) {
      const pfn = this.cache.get(keep - 1);
      const tail = PAGE_SIZE - (size % PAGE_SIZE);
      if (pfn !== undefined) this.host.phys.write(pfn * PAGE_SIZE + (size % PAGE_SIZE), new Uint8Array(tail));
    }
    this.dropFrom(keep);
    if (this.backing && this.backing.length > size) this.backing = this.backing.slice(0, size);
  }

  /** Drop cache pages and reservations from pgoff on. */
  private dropFrom(pgoff: number): void {
    const b = this.cache.bounds();
    if (b && b[1] >= pgoff) {
      const len = b[1] + 1 - pgoff;
      const runs = this.cache.collect(pgoff, len);
      this.cache.delete(pgoff, len);
      for (let i = 0; i < runs.length; i += 4) this.host.phys.unref(runs[i + 2], runs[i + 1]);
    }
    const rb = this.resv.bounds();
    if (rb && rb[1] >= pgoff) {
      const len = rb[1] + 1 - pgoff;
      const n = this.resv.countIn(pgoff, len);
      this.resv.delete(pgoff, len);
      this.host.hugePool(this.hugetlbShift).give(n / this.hugeFrames);
    }
  }

  /** @internal The last mapping of an anonymous shared object went away: free it. */
  release(): void {
    assert(this.anonymous && this.mappings.size === 0, "release of a file still in use");
    this.dropFrom(0);
    this.sz = 0;
  }

  /**
   * @internal Reserve hugetlb pages for a MAP_SHARED mapping of [pgoff, pgoff+n) (huge-page aligned):
   * the pages neither cached nor already reserved. ENOMEM when the pool lacks them.
   */
  reserve(pgoff: number, n: number): void {
    if (this.hugetlbShift === 12) return;
    const hf = this.hugeFrames;
    const need: number[] = [];
    let count = 0;
    this.cache.walk(pgoff, n, (s, len, present) => {
      if (present) return;
      this.resv.walk(s, len, (rs, rn, rpresent) => {
        if (rpresent) return;
        need.push(rs, rn);
        count += rn;
      });
    });
    if (count === 0) return;
    if (!this.host.hugePool(this.hugetlbShift).take(count / hf))
      fail("ENOMEM", `hugetlb pool has too few free ${2 ** (this.hugetlbShift - 20)} MiB pages`);
    for (let i = 0; i < need.length; i += 2) this.resv.set(need[i], need[i + 1], 1);
  }

  /** @internal Hugetlb pages that caching [pgoff, pgoff+n) would take from the free pool (0 for normal files). */
  hugeNeed(pgoff: number, n: number): number {
    if (this.hugetlbShift === 12) return 0;
    const [s, len] = this.hugeAlign(pgoff, n);
    const missing = len - this.cache.countIn(s, len);
    const reserved = this.resv.countIn(s, len);
    return (missing - reserved) / this.hugeFrames;
  }

  private hugeAlign(pgoff: number, n: number): [number, number] {
    const hf = this.hugeFrames;
    const s = Math.floor(pgoff / hf) * hf;
    return [s, Math.ceil((pgoff + n) / hf) * hf - s];
  }

  /**
   * @internal Make sure [pgoff, pgoff+n) is in the page cache (allocating missing pages: one run for
   * normal files, aligned huge pages for hugetlbfs), without checking the size. Fails with errno
   * when the hugetlb pool lacks pages.
   */
  ensureCache(pgoff: number, n: number, errno: ErrnoName = "ENOMEM"): void {
    if (n <= 0) return;
    const phys = this.host.phys;
    if (this.hugetlbShift === 12) {
      const gaps: number[] = [];
      let total = 0;
      this.cache.walk(pgoff, n, (s, len, present) => {
        if (!present) {
          gaps.push(s, len);
          total += len;
        }
      });
      if (total === 0) return;
      let pfn = phys.allocRun(total);
      for (let i = 0; i < gaps.length; i += 2) {
        const s = gaps[i];
        const len = gaps[i + 1];
        this.cache.set(s, len, pfn);
        phys.ref(pfn, len);
        this.fillFromBacking(s, len, pfn);
        pfn += len;
      }
      return;
    }
    const [as, alen] = this.hugeAlign(pgoff, n);
    const pool = this.host.hugePool(this.hugetlbShift);
    const need = this.hugeNeed(as, alen);
    if (need > pool.free) fail(errno, "hugetlb pool exhausted");
    const gaps = this.cache.collectGaps(as, alen);
    for (let i = 0; i < gaps.length; i += 2) {
      const s = gaps[i];
      const len = gaps[i + 1];
      const reserved = this.resv.countIn(s, len);
      this.resv.delete(s, len);
      assert(pool.take((len - reserved) / this.hugeFrames), "hugetlb pool accounting");
      const pfn = this.host.allocHuge(this.hugetlbShift, len / this.hugeFrames);
      this.cache.set(s, len, pfn);
      phys.ref(pfn, len);
    }
  }

  private fillFromBacking(pgoff: number, n: number, pfn: number): void {
    const b = this.backing;
    if (!b) return;
    const start = pgoff * PAGE_SIZE;
    const end = Math.min((pgoff + n) * PAGE_SIZE, b.length);
    if (start < end) this.host.phys.write(pfn * PAGE_SIZE, b.subarray(start, end));
  }

  /** @internal The cache runs of [pgoff, pgoff+n) as flat [pgoff, n, pfn, 0]*. */
  cacheRuns(pgoff: number, n: number): number[] {
    return this.cache.collect(pgoff, n);
  }

  private checkPages(pgoff: number, npages: number): void {
    if (!Number.isSafeInteger(pgoff) || pgoff < 0 || !Number.isSafeInteger(npages) || npages < 0)
      fail("EINVAL", "bad page range");
    if (pgoff + npages > this.pages) fail("EINVAL", `pages ${pgoff}+${npages} beyond end of file (${this.pages} pages)`);
  }

  /** Long-term pin file pages directly (memfd_pin_folios, for IOMMU_IOAS_MAP_FILE). */
  pinPages(pgoff: number, npages: number, write: boolean): PfnRuns {
    this.checkPages(pgoff, npages);
    if (write && this.readonly) fail("EPERM", "write pin of a read-only file");
    if (npages === 0) return [];
    this.ensureCache(pgoff, npages);
    const runs: PfnRuns = [];
    this.cache.forEach(pgoff, npages, (_s, n, pfn) => pushRun(runs, pfn, n));
    this.host.phys.pinRuns(runs);
    return runs;
  }

  /** The frame caching page pgoff (allocating it if needed). */
  pageAt(pgoff: number): number {
    this.checkPages(pgoff, 1);
    this.ensureCache(pgoff, 1);
    const pfn = this.cache.get(pgoff);
    assert(pfn !== undefined, "page cache fill");
    return pfn;
  }

  /** pread: bytes [offset, offset+length) clipped at the end of file. */
  read(offset: number, length: number): Uint8Array {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0)
      fail("EINVAL", "bad file range");
    const end = Math.min(offset + length, this.sz);
    if (end <= offset) return new Uint8Array(0);
    const out = new Uint8Array(end - offset);
    const first = Math.floor(offset / PAGE_SIZE);
    const last = Math.ceil(end / PAGE_SIZE);
    this.cache.walk(first, last - first, (s, n, present, pfn) => {
      const a = Math.max(s * PAGE_SIZE, offset);
      const e = Math.min((s + n) * PAGE_SIZE, end);
      if (present) {
        out.set(this.host.phys.read(pfn * PAGE_SIZE + (a - s * PAGE_SIZE), e - a), a - offset);
      } else if (this.backing && a < this.backing.length) {
        out.set(this.backing.subarray(a, Math.min(e, this.backing.length)), a - offset);
      }
    });
    return out;
  }

  /** pwrite: normal files grow to cover the write; hugetlbfs files only accept writes inside their size. */
  write(offset: number, data: Uint8Array): void {
    if (!Number.isSafeInteger(offset) || offset < 0) fail("EINVAL", "bad file offset");
    if (this.readonly) fail("EBADF", "file not open for writing");
    if (data.length === 0) return;
    const end = offset + data.length;
    if (this.hugetlbShift !== 12 && end > this.sz) fail("EINVAL", "write beyond the size of a hugetlbfs file");
    const first = Math.floor(offset / PAGE_SIZE);
    const last = Math.ceil(end / PAGE_SIZE);
    this.ensureCache(first, last - first);
    if (end > this.sz) this.sz = end;
    this.cache.forEach(first, last - first, (s, n, pfn) => {
      const a = Math.max(s * PAGE_SIZE, offset);
      const e = Math.min((s + n) * PAGE_SIZE, end);
      this.host.phys.write(pfn * PAGE_SIZE + (a - s * PAGE_SIZE), data.subarray(a - offset, e - offset));
    });
  }
}
