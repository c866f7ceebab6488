/**
 * Physical memory as IOMMU hardware sees it.
 *
 * The host's page frames (mm/'s PhysMem) are the simulated physical memory: a physical address is
 * pfn * 4096 + offset, frames are allocated by PhysMem's counter, and their contents materialize on
 * first write. Hardware models reach a frame through PhysMem.frameU32 / peekFrameU32: 1024 32-bit
 * words aliasing the frame's bytes, so a 64-bit descriptor is two words (lo at 2i, hi at 2i+1) and
 * no bigint or per-entry object is ever made.
 *
 * Page-table pages are frames like any other: HwMemory allocates them from PhysMem, holds one
 * reference on each (so they count in framesInUse and their contents drop when freed) and zeroes
 * them. Their contents live in PhysMem's FrameArena (one block for all of them, which the
 * page-table engine's walk reads directly); their views alias it. A FrameStore is the small
 * interface the page-table engine needs; HwMemory is the host one, WindowFrameStore a window of
 * guest-physical frames (for page tables a guest builds in its memory). A unit's DMA moves a
 * page's piece with its PhysMem's readInFrame / writeInFrame.
 */
import { assert } from "../errno.js";
import { PAGE_SIZE, type PhysMem } from "../mm/phys.js";
import { modPow2 } from "../util/num.js";
import { makeArenaWalker } from "./pagetable/wasm-walk.js";

assert(new Uint8Array(new Uint32Array([1]).buffer)[0] === 1, "hw/ assumes a little-endian host");

/** Frames that page-table pages live in, numbered by the pfns the tables' entries hold. */
export interface FrameStore {
  /** The frame's words, materializing it (for writers). */
  frameU32(pfn: number): Uint32Array;
  /** The frame's words, or undefined when the frame reads as zeros (for readers; never allocates). */
  peekFrameU32(pfn: number): Uint32Array | undefined;
  /** A zeroed table of `frames` contiguous frames aligned to `frames`; returns its first pfn. */
  allocTable(frames: number): number;
  /** Give back a table from allocTable. */
  freeTable(pfn: number, frames: number): void;
}

/**
 * Host physical memory for hardware: page-table frames and byte-level DMA.
 *
 * Freed tables go to a pool (per table size, at most `poolLimit` frames) and are reused zeroed:
 * making a frame costs an arena slot and two views, reusing one a fill. Pooled frames stay referenced; the pool
 * is given back to PhysMem as soon as no table is live any more (every engine destroyed).
 */
export class HwMemory implements FrameStore {
  private tables = 0;
  private pooled = 0;
  private readonly pools = new Map<number, number[]>();
  /** Most frames kept in the pool. */
  poolLimit = 8192;
  declare readonly phys: PhysMem;

  constructor(phys: PhysMem) {
    this.phys = phys; // declared, not defined as undefined first: one field representation for V8
  }

  /** Frames currently held as page-table pages (all engines over this memory). */
  get tableFrames(): number {
    return this.tables;
  }

  /** Frames of freed tables kept for reuse. */
  get pooledFrames(): number {
    return this.pooled;
  }

  /** Give the pooled frames back to PhysMem. */
  drainPool(): void {
    for (const [frames, list] of this.pools) for (const pfn of list) this.phys.unref(pfn, frames);
    this.pools.clear();
    this.pooled = 0;
  }

  frameU32(pfn: number): Uint32Array {
    return this.phys.frameU32(pfn);
  }

  peekFrameU32(pfn: number): Uint32Array | undefined {
    return this.phys.peekFrameU32(pfn);
  }

  allocTable(frames: number): number {
    this.tables += frames;
    const list = this.pools.get(frames);
    if (list !== undefined && list.length > 0) {
      const t = list.pop() as number;
      this.pooled -= frames;
      this.phys.arena.wasm(makeArenaWalker); // its memset zeroes arena frames (FrameArena.zero)
      for (let i = 0; i < frames; i++) this.phys.zeroFrame(t + i);
      return t;
    }
    const pfn = this.phys.allocRun(frames, frames);
    this.phys.ref(pfn, frames);
    this.phys.useArena(pfn, frames);
    return pfn;
  }

  /** A freed table's entries may be left as they were: it is zeroed when reused. */
  freeTable(pfn: number, frames: number): void {
    this.tables -= frames;
    if (this.tables === 0) {
      this.phys.unref(pfn, frames);
      this.drainPool();
    } else if (this.pooled + frames <= this.poolLimit) {
      let list = this.pools.get(frames);
      if (list === undefined) this.pools.set(frames, (list = []));
      list.push(pfn);
      this.pooled += frames;
    } else {
      this.phys.unref(pfn, frames);
    }
  }

  /**
   * DMA read of [pa, pa+dst.length) into dst; unwritten memory reads as zeros. Data goes through
   * PhysMem.read / write (not the frame views) so that whatever PhysMem routes elsewhere (frames a
   * real process maps) is honoured; page-table walks use the views.
   */
  readInto(pa: number, dst: Uint8Array): void {
    checkPa(pa, dst.length);
    this.phys.readInto(pa, dst);
  }

  /** DMA read of length bytes at pa into a new array. */
  read(pa: number, length: number): Uint8Array {
    checkPa(pa, length);
    return this.phys.read(pa, length);
  }

  /** DMA write of src at pa. */
  write(pa: number, src: Uint8Array): void {
    checkPa(pa, src.length);
    this.phys.write(pa, src);
  }

  /** The aligned 32-bit word at pa (descriptor fields in kernel memory: read through the frame view). */
  read32(pa: number): number {
    if (modPow2(pa, 4) !== 0) assert(false, `read32: unaligned ${pa}`);
    const pfn = Math.floor(pa / PAGE_SIZE);
    const v = this.phys.peekFrameU32(pfn);
    return v === undefined ? 0 : v[(pa - pfn * PAGE_SIZE) >>> 2];
  }

  /** Store the aligned 32-bit word at pa. */
  write32(pa: number, value: number): void {
    if (modPow2(pa, 4) !== 0) assert(false, `write32: unaligned ${pa}`);
    const pfn = Math.floor(pa / PAGE_SIZE);
    this.phys.frameU32(pfn)[(pa - pfn * PAGE_SIZE) >>> 2] = value;
  }
}

/**
 * A window of `frames` guest-physical frames starting at gpfn `base`, backed by the host frames
 * starting at `hostBase` (a guest's RAM in one host run). Tables allocated here are numbered by
 * guest pfn, as a guest's page tables are; a bump allocator hands them out (never reused).
 */
export class WindowFrameStore implements FrameStore {
  private next: number;

  constructor(
    readonly host: FrameStore,
    readonly base: number,
    readonly hostBase: number,
    readonly frames: number,
    firstFree = base,
  ) {
    this.next = firstFree;
  }

  /** Host pfn behind guest pfn gpfn (-1 outside the window). */
  hostPfn(gpfn: number): number {
    return gpfn >= this.base && gpfn < this.base + this.frames ? this.hostBase + (gpfn - this.base) : -1;
  }

  frameU32(gpfn: number): Uint32Array {
    const h = this.hostPfn(gpfn);
    if (!(h >= 0)) assert(false, `guest pfn ${gpfn} outside the window`);
    return this.host.frameU32(h);
  }

  peekFrameU32(gpfn: number): Uint32Array | undefined {
    const h = this.hostPfn(gpfn);
    return h < 0 ? undefined : this.host.peekFrameU32(h);
  }

  allocTable(frames: number): number {
    const pfn = Math.ceil(this.next / frames) * frames;
    assert(pfn + frames <= this.base + this.frames, "guest window out of frames");
    this.next = pfn + frames;
    for (let i = 0; i < frames; i++) this.frameU32(pfn + i).fill(0);
    return pfn;
  }

  freeTable(pfn: number, frames: number): void {
    for (let i = 0; i < frames; i++) this.frameU32(pfn + i).fill(0);
  }
}

function checkPa(pa: number, length: number): void {
  if (!(Number.isSafeInteger(pa) && pa >= 0 && Number.isSafeInteger(length) && length >= 0)) assert(false, `bad DMA range ${pa} +${length}`);
}
