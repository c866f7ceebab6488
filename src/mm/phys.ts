/**
 * Physical memory: page frames numbered by pfn, their contents, reference and long-term pin counts.
 *
 * Frames are handed out by a counter (pfns are never reused). Counts are kept as extent maps so that
 * referencing or pinning a run of a million frames is one operation. Contents are materialized
 * only for frames that were written (a Uint8Array(4096) each); every other frame reads as zeros.
 *
 * Two kinds of holds keep a frame alive: references (a page-table entry mapping it, the page cache
 * holding it) and long-term pins (FOLL_PIN). A frame is "in use" while it has either; when the last
 * hold goes its contents are dropped. Frames of a hugetlb page (compound) are freed as a whole:
 * only when none of the huge page's frames is held any more does the huge page go back to its pool.
 */
import { assert } from "../errno.js";
import { ExtentMap, type PfnRuns } from "../util/extent-map.js";

/** See PhysMem.contents: bytes [off, off+len) of one frame, or null / false to use the model's copy. */
export interface FrameContents {
  read(pfn: number, off: number, len: number): Uint8Array | null;
  write(pfn: number, off: number, data: Uint8Array): boolean;
}

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;

/** The first pfn handed out (16 MiB), so that pfn 0 never appears. */
const FIRST_PFN = 0x1000;

/** The pfn of entry 0 of PhysMem.frameViews(). */
export const FRAME_VIEW_BASE = FIRST_PFN;

export class PhysMem {
  private next = FIRST_PFN;
  /**
   * Per-frame reference and pin counts, indexed by pfn - FIRST_PFN. pfns come from a counter, so
   * the index space is dense: a typed array costs 8 bytes per frame ever allocated and makes
   * counting scattered frames (memory faulted in page by page) linear instead of a run-splice each.
   */
  private refCnt = new Int32Array(1024);
  private pinCnt = new Int32Array(1024);
  private inUse = 0;
  /** Frames of hugetlb pages; value = frames per huge page. */
  private readonly compound = new ExtentMap(false);
  /** Materialized contents of written frames. */
  private readonly data = new Map<number, Uint8Array>();
  /**
   * Cached hardware views of materialized frames (Uint32Array over the same bytes as `data`),
   * indexed by pfn - FIRST_PFN; grown in place (never replaced) and cleared when contents drop.
   */
  private readonly views: (Uint32Array | undefined)[] = [];
  /** Called when a whole huge page of `frames` frames is freed (hugetlb pool bookkeeping). */
  onHugeFree: ((frames: number) => void) | null = null;
  /**
   * Null, or where frame contents really live: server/ routes device reads and writes of frames
   * that a real process maps to that process's memory. Frames it declines use the model's copy.
   */
  contents: FrameContents | null = null;
  private pinned = 0;

  /** Frames referenced by something (mapping, page cache, pin). */
  get framesInUse(): number {
    return this.inUse;
  }

  /** Frames with at least one long-term pin. */
  get framesPinned(): number {
    return this.pinned;
  }

  /** Frames whose contents are materialized (for tests: checks that freed contents are dropped). */
  get framesMaterialized(): number {
    return this.data.size;
  }

  /** First pfn of `count` new contiguous zeroed frames, aligned to alignPages. Takes no reference. */
  allocRun(count: number, alignPages = 1): number {
    assert(Number.isInteger(count) && count > 0, `allocRun: bad count ${count}`);
    assert(Number.isInteger(alignPages) && alignPages > 0, `allocRun: bad alignment ${alignPages}`);
    const first = Math.ceil(this.next / alignPages) * alignPages;
    this.next = first + count;
    const need = this.next - FIRST_PFN;
    if (need > this.refCnt.length) {
      let n = this.refCnt.length;
      while (n < need) n *= 2;
      const r = new Int32Array(n);
      r.set(this.refCnt);
      const q = new Int32Array(n);
      q.set(this.pinCnt);
      this.refCnt = r;
      this.pinCnt = q;
    }
    return first;
  }

  private idx(pfn: number, count: number): number {
    checkFrames(pfn, count);
    const i = pfn - FIRST_PFN;
    assert(i >= 0 && pfn + count <= this.next, `frames never allocated (pfn ${pfn} +${count})`);
    return i;
  }

  /** Read physical bytes [pa, pa+length); may cross frames; unwritten frames read as zeros. */
  read(pa: number, length: number): Uint8Array {
    checkRange(pa, length);
    if (this.contents && length > 0) return this.readVia(this.contents, pa, length);
    return this.readOwn(pa, length);
  }

  /** read() / write() frame by frame through the contents hook, falling back to the model's copy. */
  private readVia(c: FrameContents, pa: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let off = 0; off < length; ) {
      const pfn = Math.floor((pa + off) / PAGE_SIZE);
      const inFrame = pa + off - pfn * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inFrame, length - off);
      out.set(c.read(pfn, inFrame, n) ?? this.readOwn(pa + off, n), off);
      off += n;
    }
    return out;
  }

  private writeVia(c: FrameContents, pa: number, data: Uint8Array): void {
    for (let off = 0; off < data.length; ) {
      const pfn = Math.floor((pa + off) / PAGE_SIZE);
      const inFrame = pa + off - pfn * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inFrame, data.length - off);
      const part = data.subarray(off, off + n);
      if (!c.write(pfn, inFrame, part)) this.writeOwn(pa + off, part);
      off += n;
    }
  }

  /** The model's own copy of physical bytes, whatever the contents hook says. */
  readOwn(pa: number, length: number): Uint8Array {
    checkRange(pa, length);
    const out = new Uint8Array(length);
    if (length === 0 || this.data.size === 0) return out;
    const first = Math.floor(pa / PAGE_SIZE);
    const last = Math.floor((pa + length - 1) / PAGE_SIZE);
    const visit = (pfn: number, frame: Uint8Array): void => {
      const fs = pfn * PAGE_SIZE;
      const s = Math.max(fs, pa);
      const e = Math.min(fs + PAGE_SIZE, pa + length);
      out.set(frame.subarray(s - fs, e - fs), s - pa);
    };
    if (last - first + 1 <= this.data.size) {
      for (let pfn = first; pfn <= last; pfn++) {
        const frame = this.data.get(pfn);
        if (frame) visit(pfn, frame);
      }
    } else {
      for (const [pfn, frame] of this.data) if (pfn >= first && pfn <= last) visit(pfn, frame);
    }
    return out;
  }

  /** Write physical bytes at pa; materializes the touched frames. */
  write(pa: number, data: Uint8Array): void {
    checkRange(pa, data.length);
    if (this.contents && data.length > 0) return this.writeVia(this.contents, pa, data);
    this.writeOwn(pa, data);
  }

  /** Store into the model's own copy, whatever the contents hook says. */
  writeOwn(pa: number, data: Uint8Array): void {
    checkRange(pa, data.length);
    let off = 0;
    while (off < data.length) {
      const a = pa + off;
      const pfn = Math.floor(a / PAGE_SIZE);
      const inFrame = a - pfn * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inFrame, data.length - off);
      let frame = this.data.get(pfn);
      if (!frame) {
        frame = new Uint8Array(PAGE_SIZE);
        this.data.set(pfn, frame);
      }
      frame.set(data.subarray(off, off + n), inFrame);
      off += n;
    }
  }

  /**
   * A frame's contents as 1024 32-bit words in host (little-endian) order, for hardware models that
   * read and write page-table entries in place. Materializes the frame on first use; the view is
   * cached and aliases the bytes that read() and write() see.
   */
  frameU32(pfn: number): Uint32Array {
    const i = pfn - FIRST_PFN;
    if (i >= 0 && i < this.views.length) {
      const v = this.views[i];
      if (v !== undefined) return v;
    }
    return this.makeView(pfn, true) as Uint32Array;
  }

  /**
   * The table behind frameU32 / peekFrameU32, for hardware walkers' hot paths: entry
   * pfn - FRAME_VIEW_BASE is frame pfn's view when one was made, else undefined (or beyond the
   * array's end): then ask peekFrameU32, as the frame may still have contents. The array is grown
   * in place and never replaced, so a caller may keep it; it must only read it.
   */
  frameViews(): readonly (Uint32Array | undefined)[] {
    return this.views;
  }

  /** Like frameU32 but never materializes: undefined for a frame that reads as zeros. */
  peekFrameU32(pfn: number): Uint32Array | undefined {
    const i = pfn - FIRST_PFN;
    if (i >= 0 && i < this.views.length) {
      const v = this.views[i];
      if (v !== undefined) return v;
    }
    return this.makeView(pfn, false);
  }

  private makeView(pfn: number, create: boolean): Uint32Array | undefined {
    const i = pfn - FIRST_PFN;
    let frame = this.data.get(pfn);
    if (!frame) {
      if (!create) return undefined;
      this.idx(pfn, 1);
      frame = new Uint8Array(PAGE_SIZE);
      this.data.set(pfn, frame);
    }
    const v = new Uint32Array(frame.buffer, frame.byteOffset, PAGE_SIZE / 4);
    if (i >= 0 && pfn < this.next) {
      while (this.views.length <= i) this.views.push(undefined);
      this.views[i] = v;
    }
    return v;
  }

  /** Copy the contents of frame srcPfn into frame dstPfn. */
  copyFrame(dstPfn: number, srcPfn: number): void {
    this.copyRun(dstPfn, srcPfn, 1);
  }

  /** Copy the contents of count frames from srcPfn.. into dstPfn.. (ranges must not overlap). */
  copyRun(dstPfn: number, srcPfn: number, count: number): void {
    assert(dstPfn + count <= srcPfn || srcPfn + count <= dstPfn || dstPfn === srcPfn, "copyRun: overlap");
    if (dstPfn === srcPfn || count <= 0) return;
    this.dropContents(dstPfn, count);
    const copies: [number, Uint8Array][] = [];
    this.forMaterialized(srcPfn, count, (pfn, frame) => copies.push([dstPfn + (pfn - srcPfn), frame.slice()]));
    for (const [pfn, frame] of copies) this.data.set(pfn, frame);
  }

  /** Long-term pin count of a frame. */
  pinCount(pfn: number): number {
    const i = pfn - FIRST_PFN;
    return i >= 0 && i < this.pinCnt.length ? this.pinCnt[i] : 0;
  }

  /** Reference (mapping / page cache) count of a frame. */
  refCount(pfn: number): number {
    const i = pfn - FIRST_PFN;
    return i >= 0 && i < this.refCnt.length ? this.refCnt[i] : 0;
  }

  private walk(arr: Int32Array, pfn: number, count: number, cb: (pfn: number, n: number, c: number) => void): void {
    let runStart = pfn;
    let runVal = -1;
    for (let p = pfn; p < pfn + count; p++) {
      const i = p - FIRST_PFN;
      const v = i >= 0 && i < arr.length ? arr[i] : 0;
      if (v !== runVal) {
        if (runVal >= 0) cb(runStart, p - runStart, runVal);
        runStart = p;
        runVal = v;
      }
    }
    if (count > 0) cb(runStart, pfn + count - runStart, runVal);
  }

  /** The reference-count runs of [pfn, pfn+count): calls cb for each piece with its count (0 for none). */
  forRefs(pfn: number, count: number, cb: (pfn: number, n: number, refs: number) => void): void {
    this.walk(this.refCnt, pfn, count, cb);
  }

  /** The pin-count runs of [pfn, pfn+count): calls cb for each piece with its count (0 for none). */
  forPins(pfn: number, count: number, cb: (pfn: number, n: number, pins: number) => void): void {
    this.walk(this.pinCnt, pfn, count, cb);
  }

  /** True if any frame of [pfn, pfn+count) is pinned. */
  anyPinned(pfn: number, count: number): boolean {
    for (let p = pfn; p < pfn + count; p++) if (this.pinCount(p) > 0) return true;
    return false;
  }

  private isHeld(pfn: number): boolean {
    return this.refCount(pfn) + this.pinCount(pfn) > 0;
  }

  private inc(arr: Int32Array, pfn: number, count: number): void {
    const i0 = this.idx(pfn, count);
    const other = arr === this.pinCnt ? this.refCnt : this.pinCnt;
    for (let i = i0; i < i0 + count; i++) {
      if (arr[i] === 0 && other[i] === 0) this.inUse++;
      arr[i]++;
    }
    if (arr === this.pinCnt) for (let i = i0; i < i0 + count; i++) if (arr[i] === 1) this.pinned++;
  }

  private dec(arr: Int32Array, pfn: number, count: number, what: string): void {
    const i0 = this.idx(pfn, count);
    const other = arr === this.pinCnt ? this.refCnt : this.pinCnt;
    let runStart = -1;
    for (let i = i0; i < i0 + count; i++) {
      if (arr[i] <= 0) assert(false, `${what} of frames that are not held (pfn ${pfn} +${count})`);
      arr[i]--;
      if (arr[i] === 0 && arr === this.pinCnt) this.pinned--;
      const freed = arr[i] === 0 && other[i] === 0;
      if (freed) {
        this.inUse--;
        if (runStart < 0) runStart = i;
      } else if (runStart >= 0) {
        this.release(runStart + FIRST_PFN, i - runStart);
        runStart = -1;
      }
    }
    if (runStart >= 0) this.release(runStart + FIRST_PFN, i0 + count - runStart);
  }

  /** +1 long-term pin on each of count frames starting at pfn. */
  pin(pfn: number, count: number): void {
    this.inc(this.pinCnt, pfn, count);
  }

  /** -1 long-term pin on each of count frames starting at pfn; frees frames no longer held. */
  unpin(pfn: number, count: number): void {
    this.dec(this.pinCnt, pfn, count, "unpin");
  }

  /** Pin every run of runs. */
  pinRuns(runs: PfnRuns): void {
    for (let i = 0; i < runs.length; i += 2) this.pin(runs[i], runs[i + 1]);
  }

  /** Unpin every run of runs. */
  unpinRuns(runs: PfnRuns): void {
    for (let i = 0; i < runs.length; i += 2) this.unpin(runs[i], runs[i + 1]);
  }

  /** +1 reference (a mapping or the page cache) on count frames. */
  ref(pfn: number, count: number): void {
    this.inc(this.refCnt, pfn, count);
  }

  /** -1 reference on count frames; frees frames no longer held. */
  unref(pfn: number, count: number): void {
    this.dec(this.refCnt, pfn, count, "unref");
  }

  /** True for frames inside a hugetlb page. */
  isCompound(pfn: number): boolean {
    return this.compound.has(pfn);
  }

  /** Frames per page for the page holding pfn: the huge page size for compound frames, else 1. */
  framesPerPage(pfn: number): number {
    return this.compound.get(pfn) ?? 1;
  }

  /** Mark [pfn, pfn+count) as hugetlb pages of hugeFrames frames each (pfn aligned). */
  markCompound(pfn: number, count: number, hugeFrames: number): void {
    assert(pfn % hugeFrames === 0 && count % hugeFrames === 0, "markCompound: misaligned");
    this.compound.set(pfn, count, hugeFrames);
  }

  /** Frames [s, s+n) lost their last hold: drop contents; return whole free huge pages to their pool. */
  private release(s: number, n: number): void {
    const pieces = this.compound.collect(s, n);
    let cur = s;
    for (let k = 0; k < pieces.length; k += 4) {
      const ps = pieces[k];
      const pn = pieces[k + 1];
      const hp = pieces[k + 2];
      if (ps > cur) this.dropContents(cur, ps - cur);
      for (let head = Math.floor(ps / hp) * hp; head < ps + pn; head += hp) {
        if (!this.compound.has(head) || this.anyHeld(head, hp)) continue;
        this.dropContents(head, hp);
        this.compound.delete(head, hp);
        this.onHugeFree?.(hp);
      }
      cur = ps + pn;
    }
    if (cur < s + n) this.dropContents(cur, s + n - cur);
  }

  private anyHeld(pfn: number, count: number): boolean {
    for (let p = pfn; p < pfn + count; p++) if (this.isHeld(p)) return true;
    return false;
  }

  private forMaterialized(pfn: number, count: number, cb: (pfn: number, frame: Uint8Array) => void): void {
    if (this.data.size === 0) return;
    if (count <= this.data.size) {
      for (let p = pfn; p < pfn + count; p++) {
        const frame = this.data.get(p);
        if (frame) cb(p, frame);
      }
    } else {
      for (const [p, frame] of this.data) if (p >= pfn && p < pfn + count) cb(p, frame);
    }
  }

  private dropContents(pfn: number, count: number): void {
    const gone: number[] = [];
    this.forMaterialized(pfn, count, (p) => gone.push(p));
    for (const p of gone) {
      this.data.delete(p);
      const i = p - FIRST_PFN;
      if (i >= 0 && i < this.views.length) this.views[i] = undefined;
    }
  }
}

function checkRange(pa: number, length: number): void {
  assert(Number.isSafeInteger(pa) && pa >= 0, `bad physical address ${pa}`);
  assert(Number.isSafeInteger(length) && length >= 0, `bad length ${length}`);
}

function checkFrames(pfn: number, count: number): void {
  assert(
    Number.isSafeInteger(pfn) && pfn >= 0 && Number.isSafeInteger(count) && count >= 0,
    `bad frame range pfn ${pfn} count ${count}`,
  );
}
