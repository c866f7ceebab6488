/**
 * Physical memory: page frames numbered by pfn, their contents, reference and long-term pin counts.
 *
 * Frames are handed out by a counter (pfns are never reused). Counts are kept as extent maps so that
 * referencing or pinning a run of a million frames is one operation. Contents are materialized
 * only for frames that were written (a 4 KiB slot in FrameSlabs each, reached through a view per
 * frame and, on the DMA path, through a slot table); every other frame reads as zeros.
 * Frames that hardware walks (page tables: useArena) keep their contents in one shared block, the
 * FrameArena, instead, so that a walker reaches any of them with two array reads.
 *
 * Two kinds of holds keep a frame alive: references (a page-table entry mapping it, the page cache
 * holding it) and long-term pins (FOLL_PIN). A frame is "in use" while it has either; when the last
 * hold goes its contents are dropped. Frames of a hugetlb page (compound) are freed as a whole:
 * only when none of the huge page's frames is held any more does the huge page go back to its pool.
 */
import { assert } from "../errno.js";
import { ExtentMap, type PfnRuns } from "../util/extent-map.js";
import { DATA_SLOTS, DataMemory, type DeviceBuffer } from "./data-memory.js";
import { FrameSlabs, SLAB_SHIFT, SLAB_SLOTS } from "./frame-slabs.js";

/** See PhysMem.contents: bytes [off, off+len) of one frame, or null / false to use the model's copy. */
export interface FrameContents {
  read(pfn: number, off: number, len: number): Uint8Array | null;
  write(pfn: number, off: number, data: Uint8Array): boolean;
}

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;

/** The first pfn handed out (16 MiB), so that pfn 0 never appears. */
const FIRST_PFN = 0x1000;

assert(FIRST_PFN === 4096 && SLAB_SHIFT === 9 && SLAB_SLOTS === 512, "PhysMem.writeInFrame spells these as literals");

/**
 * Uint8Array.prototype.set, called as U8_SET.call(target, src, offset) on the DMA path: V8
 * compiles `target.set(...)` there to a generic property lookup per call (~5–8 ns a call here),
 * the known function to a direct call of the builtin.
 */
const U8_SET = Uint8Array.prototype.set;

/** The pfn of entry 0 of PhysMem.frameViews(). */
export const FRAME_VIEW_BASE = FIRST_PFN;

/** The part of the WebAssembly JS API FrameArena uses (this project's TypeScript libs do not declare it). */
export interface SharedWasmMemory {
  readonly buffer: SharedArrayBuffer;
  grow(pages: number): number;
}
type SharedWasmMemoryCtor = new (d: { initial: number; maximum: number; shared: true }) => SharedWasmMemory;
const WasmMemory = (globalThis as unknown as { WebAssembly?: { Memory: SharedWasmMemoryCtor } }).WebAssembly?.Memory;

/** Frames per 64 KiB WebAssembly page, and the most pages an arena grows to (4 GiB: 2^20 frames). */
const FRAMES_PER_WASM_PAGE = 16;
const ARENA_MAX_PAGES = 65536;
/**
 * Frames at pfn FIRST_PFN + 2^25 (128 GiB of frames handed out) and up stay outside the arena:
 * FrameArena.slot has an entry for every pfn below that.
 */
const ARENA_MAX_INDEX = 2 ** 25;
/** FrameArena.slot's entries (indexed by the pfn itself), at the start of the arena's memory. */
export const ARENA_SLOT_ENTRIES = FIRST_PFN + ARENA_MAX_INDEX;
/** The first frame slot: the one after the slot table (rounded up to a WebAssembly page). */
const FIRST_SLOT = Math.ceil((ARENA_SLOT_ENTRIES * 4) / 65536) * FRAMES_PER_WASM_PAGE;
/** What FrameArena.words and .slot are before the first frame: one frame of zeros, no slots. */
const ZERO_FRAME = new Uint32Array(PAGE_SIZE / 4);
const NO_SLOTS = new Int32Array(0);

/**
 * One block of memory holding the contents of many frames (PhysMem.useArena: page-table frames;
 * PhysMem.toArena: frames a walker found holding tables), so that a hardware walker reads any of
 * them as `words[slot[pfn] + word]`: two typed-array reads, against three dependent loads (view
 * table, view object, its backing store) through per-frame views. Each frame has a slot of 1024
 * words. The slot table itself is the start of the same memory (so that a walker compiled to
 * WebAssembly reads it too: FrameArena.wasm), one 32-bit entry per pfn below
 * ARENA_SLOT_ENTRIES, 0 for a frame without a slot; its first 1024 entries (pfns below FIRST_PFN
 * never have a slot) double as "slot 0", a frame of zeros: a pfn without a slot reads as a zero
 * (not present) entry and the walker takes its slow path. Frames' views (PhysMem.frameU32, the
 * Uint8Array read() and write() use) alias their slot.
 *
 * Why a shared WebAssembly.Memory: the block must grow without moving (views already handed out
 * must keep aliasing their frame) and be read through a plain typed array in the hot loop.
 * Measured on Node 20 (V8 11.3), a 4-level walk over 1028 tables: per-frame views 32 ns, one plain
 * Uint32Array 26 ns, a Uint32Array over a resizable ArrayBuffer 34-35 ns (length-tracking or not:
 * V8 checks the buffer's length on every access), a small array of big chunks 34 ns (the chunk
 * lookup costs what the view table did). Growing by reallocation would move frames under views
 * other code holds. A shared memory's buffer is a plain SharedArrayBuffer that grows in place:
 * after grow() the new buffer and every old one alias the same bytes, so old views stay valid and
 * `words` is just replaced by a longer view. The memory reserves address space (V8: 10 GiB each)
 * but commits only what grow() asks (the slot table's 128 MiB from the start: pages never written
 * cost no memory), in 64 KiB steps, doubling; it is not counted in
 * process.memoryUsage().arrayBuffers (see `bytes`). Where no such memory can be had (no
 * WebAssembly, address space exhausted) or the arena is full, frames simply stay outside it.
 * Copies into a shared buffer's views run at half the speed of ordinary ones here (V8 copies them
 * with relaxed atomic word moves), so data frames stay outside.
 */
export class FrameArena {
  /**
   * The whole memory as words: the frame in slot s is words[s*1024 .. s*1024+1023]. Replaced (a
   * longer view of the same bytes) when the arena grows.
   */
  words: Uint32Array = ZERO_FRAME;
  /**
   * By pfn: the frame's first word in `words` (its slot * 1024), or 0 when the frame has no slot
   * (pfns below FIRST_PFN never have one). Indexed by the pfn itself, not pfn - FIRST_PFN: a walker
   * saves the subtraction. Empty until the first frame; then `entries` long (the start of the
   * memory).
   */
  slot: Int32Array = NO_SLOTS;
  /**
   * Entries of the slot table: frames at pfns from here up stay outside the arena. At most (and by
   * default) ARENA_SLOT_ENTRIES; tests lower it before the first frame is placed.
   */
  entries = ARENA_SLOT_ENTRIES;
  /** Most slots (slot 0 included) handed out; frames beyond stay outside the arena (tests lower it). */
  limit = ARENA_MAX_PAGES * FRAMES_PER_WASM_PAGE - FIRST_SLOT + 1;
  private memory: SharedWasmMemory | null = null;
  private failed = false;
  /** Slots the memory holds (slot table included), the first never used, and freed ones. */
  private capacity = 0;
  private fresh = FIRST_SLOT;
  private readonly freed: number[] = [];
  /** The highest pfn given a slot, plus one (the part of the slot table in use). */
  private slotTop = 0;
  /** The arena's WebAssembly walker (see wasm), once made; null before, or when none can be made. */
  private walker: ArenaWasm | null = null;
  private walkerTried = false;

  /** Bytes of memory the arena uses: its frames' slots and the slot table up to the highest pfn given one. */
  get bytes(): number {
    if (this.capacity === 0) return 0;
    return (this.capacity - FIRST_SLOT) * PAGE_SIZE + Math.ceil((this.slotTop * 4) / PAGE_SIZE) * PAGE_SIZE;
  }

  /** Frames with a slot now (the walker's record, see wasm, is none). */
  get frames(): number {
    return this.fresh - FIRST_SLOT - this.freed.length - (this.walker !== null ? 1 : 0);
  }

  /** A zeroed slot, or 0 when the arena cannot give one. */
  take(): number {
    const f = this.freed.pop();
    if (f !== undefined) {
      this.zero(f);
      return f;
    }
    if (this.fresh - FIRST_SLOT + 1 >= this.limit || (this.fresh >= this.capacity && !this.grow())) return 0;
    return this.fresh++;
  }

  /** Zero slot s (with the WebAssembly code kept here once there is some: see ArenaWasm). */
  zero(s: number): void {
    const z = this.walker;
    if (z !== null) z.zero(s * PAGE_SIZE, PAGE_SIZE);
    else this.words.fill(0, s * 1024, s * 1024 + 1024);
  }

  /** Give slot s back (its frame's contents dropped); it is zeroed when taken again. */
  give(s: number): void {
    this.freed.push(s);
  }

  /** Record that frame pfn (below slot.length) has slot s (0: none). */
  assign(pfn: number, s: number): void {
    this.slot[pfn] = s * 1024;
    if (pfn >= this.slotTop) this.slotTop = pfn + 1;
  }

  /** The bytes of slot s (a view that stays valid as the arena grows). */
  bytesOf(s: number): Uint8Array {
    return new Uint8Array(this.words.buffer, s * PAGE_SIZE, PAGE_SIZE);
  }

  /**
   * The arena's walkers compiled to WebAssembly over its memory (hw/pagetable/wasm-walk.ts), made
   * on first use, or null (no memory yet, or WebAssembly cannot be had). `make` builds them (so
   * mm/ does not depend on hw/); the arena keeps them and zeroes its slots with them from then on.
   */
  wasm<T extends ArenaWasm>(make: (memory: SharedWasmMemory, scratch: number) => T | null): T | null {
    if (this.walker !== null || this.walkerTried) return this.walker as T | null;
    if (this.memory === null) return null;
    const s = this.take();
    if (s === 0) return null;
    this.walkerTried = true;
    let w: T | null = null;
    try {
      w = make(this.memory, s * PAGE_SIZE);
    } catch {
      w = null;
    }
    if (w === null) this.give(s);
    this.walker = w;
    return w;
  }

  private grow(): boolean {
    if (this.failed) return false;
    try {
      if (this.memory === null) {
        if (WasmMemory === undefined) throw new Error("no WebAssembly.Memory");
        this.memory = new WasmMemory({ initial: FIRST_SLOT / FRAMES_PER_WASM_PAGE + 1, maximum: ARENA_MAX_PAGES, shared: true });
      } else {
        const pages = (this.capacity - FIRST_SLOT) / FRAMES_PER_WASM_PAGE;
        const have = this.capacity / FRAMES_PER_WASM_PAGE;
        if (have >= ARENA_MAX_PAGES) return false;
        this.memory.grow(Math.min(pages, ARENA_MAX_PAGES - have));
      }
    } catch {
      // No memory to be had (address space, limits): frames stay outside the arena from now on.
      this.failed = true;
      return false;
    }
    const buf = this.memory.buffer;
    this.words = new Uint32Array(buf);
    if (this.slot.length === 0) this.slot = new Int32Array(buf, 0, Math.min(Math.max(this.entries, 0), ARENA_SLOT_ENTRIES));
    this.capacity = buf.byteLength / PAGE_SIZE;
    return true;
  }
}

/**
 * What FrameArena.wasm keeps (hw/ makes it): code over the arena's memory that at least zeroes
 * bytes [at, at + len) as memset does. A typed array's fill over a shared buffer goes an element
 * at a time: ~330–640 ns for 4 KiB here, against ~60–100 for WebAssembly's memory.fill.
 */
export interface ArenaWasm {
  zero(at: number, len: number): void;
}

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
  /** Materialized contents of written frames (use frameData / setData / deleteData). */
  private readonly data = new Map<number, Uint8Array>();
  /**
   * The same frames by pfn - FIRST_PFN for allocated pfns (a DMA looks its frame up per page, and a
   * Map lookup cost more than copying the page's 4 KiB), in chunks of 1024 so that one frame
   * written far up a large allocation does not make a table as long as the allocation. Frames
   * outside allocated pfns are only in `data`.
   */
  private readonly dataTab: ((Uint8Array | undefined)[] | undefined)[] = [];
  /**
   * Cached hardware views of materialized frames (Uint32Array over the same bytes as `data`),
   * indexed by pfn - FIRST_PFN; grown in place (never replaced) and cleared when contents drop.
   */
  private readonly views: (Uint32Array | undefined)[] = [];
  /** Where written frames keep their contents (but for arena frames). */
  readonly slabs = new FrameSlabs();
  /** The same FrameSlabs.slabs array (one load less on the DMA path). */
  private readonly slabArr: Uint8Array[];
  /**
   * Each frame's slot in `slabs`, indexed by pfn - FIRST_PFN; 0: none (not written, in the arena,
   * or beyond the table). The data memory's slot table, or without one an array that grows as
   * frames get slots.
   */
  private slotTab: Int32Array = new Int32Array(0);
  /** See DataMemory: undefined until first wanted, null when none could be made. */
  private dataMem: DataMemory | null | undefined = undefined;
  /** Whether the slabs and the slot table are the data memory's (it came before the first slab). */
  private slabsInData = false;
  /** Where useArena's frames keep their contents (see FrameArena); the hardware walkers read it. */
  readonly arena = new FrameArena();
  /** Called when a whole huge page of `frames` frames is freed (hugetlb pool bookkeeping). */
  onHugeFree: ((frames: number) => void) | null = null;
  /**
   * Null, or where frame contents really live: server/ routes device reads and writes of frames
   * that a real process maps to that process's memory. Frames it declines use the model's copy.
   */
  contents: FrameContents | null = null;
  private pinned = 0;

  constructor() {
    this.slabArr = this.slabs.slabs;
  }

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

  private setData(pfn: number, frame: Uint8Array): void {
    this.data.set(pfn, frame);
    const i = pfn - FIRST_PFN;
    if (i >= 0 && pfn < this.next) {
      const c = i >>> 10;
      while (this.dataTab.length <= c) this.dataTab.push(undefined);
      let chunk = this.dataTab[c];
      if (chunk === undefined) this.dataTab[c] = chunk = new Array<Uint8Array | undefined>(1024).fill(undefined);
      chunk[i & 1023] = frame;
    }
  }

  private deleteData(pfn: number): void {
    this.data.delete(pfn);
    const i = pfn - FIRST_PFN;
    if (i >= 0) {
      const chunk = this.dataTab[i >>> 10];
      if (chunk !== undefined) chunk[i & 1023] = undefined;
    }
  }

  /** First pfn of `count` new contiguous zeroed frames, aligned to alignPages. Takes no reference. */
  allocRun(count: number, alignPages = 1): number {
    if (!(Number.isInteger(count) && count > 0)) assert(false, `allocRun: bad count ${count}`);
    if (!(Number.isInteger(alignPages) && alignPages > 0)) assert(false, `allocRun: bad alignment ${alignPages}`);
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
    if (!(i >= 0 && pfn + count <= this.next)) assert(false, `frames never allocated (pfn ${pfn} +${count})`);
    return i;
  }

  /** Read physical bytes [pa, pa+length); may cross frames; unwritten frames read as zeros. */
  read(pa: number, length: number): Uint8Array {
    checkRange(pa, length);
    if (this.contents && length > 0) return this.readVia(this.contents, pa, length);
    return this.readOwn(pa, length);
  }

  /**
   * read() into dst (dst.length bytes at pa) without allocating: the DMA path, where a 4 KiB read
   * would otherwise make a 4 KiB array per page. Unwritten memory reads as zeros.
   */
  readInto(pa: number, dst: Uint8Array): void {
    const length = dst.length;
    checkRange(pa, length);
    if (length === 0) return;
    if (this.contents) {
      dst.set(this.readVia(this.contents, pa, length));
      return;
    }
    for (let off = 0; off < length; ) {
      const a = pa + off;
      const pfn = Math.floor(a / PAGE_SIZE);
      const inFrame = a - pfn * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inFrame, length - off);
      const frame = this.frameData(pfn);
      if (!frame) dst.fill(0, off, off + n);
      else if (n === PAGE_SIZE) dst.set(frame, off);
      else dst.set(frame.subarray(inFrame, inFrame + n), off);
      off += n;
    }
  }

  /**
   * What readInto(pfn * PAGE_SIZE + off, dst) does when [off, off + dst.length) lies within the
   * frame (a DMA's piece of one page): the frame found by index, no division, no subarray for a
   * whole page. (Small: V8 inlines it into a DMA loop.)
   */
  readInFrame(pfn: number, off: number, dst: Uint8Array): void {
    const n = dst.length;
    if (!(off >= 0 && off + n <= PAGE_SIZE)) badPiece(off, n);
    checkFrames(pfn, 1);
    const c = this.contents;
    if (c !== null && n > 0) {
      const got = c.read(pfn, off, n);
      if (got !== null) return dst.set(got);
    }
    const frame = this.frameData(pfn);
    if (frame === undefined) dst.fill(0);
    else dst.set(n === PAGE_SIZE ? frame : frame.subarray(off, off + n));
  }

  /**
   * What write(pfn * PAGE_SIZE + off, data) does when [off, off + data.length) lies within the
   * frame (a DMA's piece of one page): the frame found by index, no division. (Small: V8 inlines it
   * into a DMA loop.)
   */
  writeInFrame(pfn: number, off: number, data: Uint8Array): void {
    const n = data.length;
    if (!(off >= 0 && off + n <= PAGE_SIZE)) badPiece(off, n);
    if (this.contents !== null) return this.writeInFrameVia(this.contents, pfn, off, data);
    // A written frame: straight into its slab (SLAB_SHIFT 9: 512 slots of 4 KiB a slab).
    const i = pfn - 4096; // FIRST_PFN
    const tab = this.slotTab;
    const s = i >>> 0 === i && i < tab.length ? tab[i] : 0;
    if (s !== 0) return U8_SET.call(this.slabArr[s >>> 9], data, ((s & 511) << 12) + off);
    if (n === 0) return;
    // (a pfn that is not a frame number finds no contents: newFrame refuses it)
    (this.frameData(pfn) ?? this.newFrame(pfn)).set(data, off);
  }

  private writeInFrameVia(c: FrameContents, pfn: number, off: number, data: Uint8Array): void {
    checkFrames(pfn, 1);
    if (!c.write(pfn, off, data)) (this.frameData(pfn) ?? this.newFrame(pfn)).set(data, off);
  }

  /**
   * A zeroed frame for pfn's contents, from now on (pfn has none): a slab slot for a frame handed
   * out, else (written before its pfn was allocated) a page of its own.
   */
  private newFrame(pfn: number): Uint8Array {
    checkFrames(pfn, 1);
    const i = pfn - FIRST_PFN;
    if (i >= 0 && pfn < this.next) {
      const dm = this.dataMemory(); // (chosen before the first slab: FrameSlabs takes its slabs from it)
      if (i >= this.slotTab.length && dm === null) {
        let n = Math.max(1024, this.slotTab.length);
        while (n <= i) n *= 2;
        const t = new Int32Array(n);
        t.set(this.slotTab);
        this.slotTab = t;
      }
      if (i < this.slotTab.length) {
        const s = this.slabs.take();
        this.slotTab[i] = s;
        if (this.slabsInData && s < DATA_SLOTS) (dm as DataMemory).slotOwner[s] = pfn;
        const f = this.slabs.bytesOf(s);
        this.setData(pfn, f);
        return f;
      }
    }
    // written before its pfn was allocated, or beyond the data memory's slot table: a page of its own
    const f = new Uint8Array(PAGE_SIZE);
    this.setData(pfn, f);
    return f;
  }

  /**
   * The memory DMAs move bytes in (see DataMemory), made on first use; null where WebAssembly or
   * the address space for it is missing (everything then lives in ordinary arrays).
   */
  dataMemory(): DataMemory | null {
    if (this.dataMem !== undefined) return this.dataMem;
    const m = DataMemory.create();
    this.dataMem = m;
    if (m !== null) {
      // (nothing written in a slab yet: the slabs and the slot table start in the memory)
      if (this.slabs.slots === 0 && this.slabs.bytes === 0) {
        this.slabs.useDataMemory(m);
        this.slotTab = m.slotTable;
        this.slabsInData = true;
      }
    }
    return m;
  }

  /**
   * A buffer of `length` bytes for a device model's own data (zeroed): in the data memory when
   * there is room, so that a hardware unit's DMA to or from it can be one copy inside that memory
   * (DmaPort.dmaBuffered); else an ordinary array (`memory` null).
   */
  dmaBuffer(length: number): DeviceBuffer {
    if (!(Number.isSafeInteger(length) && length > 0)) assert(false, `dmaBuffer: bad length ${length}`);
    return this.dataMemory()?.allocBuffer(length) ?? { bytes: new Uint8Array(length), length, memory: null, addr: -1 };
  }

  /** Give frame pfn's slab slot back, if it has one (its contents are being dropped or moved). */
  private freeSlot(pfn: number): void {
    const i = pfn - FIRST_PFN;
    if (i >= 0 && i < this.slotTab.length && this.slotTab[i] !== 0) {
      const s = this.slotTab[i];
      if (this.slabsInData && s < DATA_SLOTS) (this.dataMem as DataMemory).slotOwner[s] = 0;
      this.slabs.give(s);
      this.slotTab[i] = 0;
    }
  }

  /**
   * A frame's contents by index, or undefined (also for a pfn that is no frame number). A frame
   * written before its pfn was allocated is only in the Map.
   */
  private frameData(pfn: number): Uint8Array | undefined {
    const i = pfn - FIRST_PFN;
    if ((i | 0) === i && i >= 0 && i < this.next - FIRST_PFN) {
      const chunk = this.dataTab[i >>> 10];
      const f = chunk === undefined ? undefined : chunk[i & 1023];
      if (f !== undefined) return f;
    }
    return this.data.get(pfn);
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
        const frame = this.frameData(pfn);
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
    const pfn0 = Math.floor(pa / PAGE_SIZE);
    const in0 = pa - pfn0 * PAGE_SIZE;
    if (in0 + data.length <= PAGE_SIZE) {
      // within one frame (every DMA page): no subarray
      (this.frameData(pfn0) ?? this.newFrame(pfn0)).set(data, in0);
      return;
    }
    let off = 0;
    while (off < data.length) {
      const a = pa + off;
      const pfn = Math.floor(a / PAGE_SIZE);
      const inFrame = a - pfn * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inFrame, data.length - off);
      (this.frameData(pfn) ?? this.newFrame(pfn)).set(data.subarray(off, off + n), inFrame);
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
    let frame = this.frameData(pfn);
    if (!frame) {
      if (!create) return undefined;
      this.idx(pfn, 1);
      frame = this.newFrame(pfn);
    }
    const v = new Uint32Array(frame.buffer, frame.byteOffset, PAGE_SIZE / 4);
    if (i >= 0 && pfn < this.next) {
      while (this.views.length <= i) this.views.push(undefined);
      this.views[i] = v;
    }
    return v;
  }

  /**
   * Keep the contents of frames [pfn, pfn+count) in the arena (FrameArena) from now on, for
   * hardware that walks them (page tables): they read the same through every accessor, but a
   * walker finds them faster. Each frame must be unmaterialized (never written, or dropped), so no
   * view of it exists yet; it comes out materialized and zeroed. A frame stays in the arena until
   * its contents drop (its last hold goes); its slot then goes to the next frame placed, so a view
   * of it kept past that point would see (and change) that frame: views of freed frames must not
   * be used. Frames the arena has no room for are materialized as usual. Returns how many frames
   * went to the arena.
   */
  useArena(pfn: number, count: number): number {
    const i0 = this.idx(pfn, count);
    let placed = 0;
    for (let i = i0; i < i0 + count; i++) {
      const p = i + FIRST_PFN;
      if (this.data.has(p)) assert(false, `useArena: frame ${p} already has contents`);
      const a = this.arena;
      const s = p < a.entries ? a.take() : 0;
      if (s === 0 || p >= a.slot.length) {
        if (s !== 0) a.give(s);
        this.frameU32(p);
        continue;
      }
      a.assign(p, s);
      this.setData(p, a.bytesOf(s));
      this.makeView(p, false);
      placed++;
    }
    return placed;
  }

  /**
   * Move frame pfn's contents into the arena, for a walker that found page-table entries in it (a
   * guest's tables in guest RAM): it reads the same through every accessor from then on. Its
   * earlier views are replaced in PhysMem's own tables; a view of it kept elsewhere from before
   * would no longer alias it, so none may be kept across a walk (hardware models take views for
   * the duration of a call). False when the frame stays where it is: no contents (it reads as
   * zeros), contents that live elsewhere (the `contents` hook), a pfn not handed out or beyond
   * the arena's reach, or no room.
   */
  toArena(pfn: number): boolean {
    const i = pfn - FIRST_PFN;
    const a = this.arena;
    if (this.contents !== null || !((i | 0) === i && i >= 0 && pfn < a.entries && pfn < this.next)) return false;
    if (pfn < a.slot.length && a.slot[pfn] !== 0) return true;
    const old = this.frameData(pfn);
    if (old === undefined) return false;
    const s = a.take();
    if (s === 0) return false;
    if (pfn >= a.slot.length) {
      a.give(s);
      return false;
    }
    const bytes = a.bytesOf(s);
    bytes.set(old);
    a.assign(pfn, s);
    this.freeSlot(pfn);
    this.setData(pfn, bytes);
    if (i < this.views.length && this.views[i] !== undefined) this.views[i] = new Uint32Array(bytes.buffer, bytes.byteOffset, PAGE_SIZE / 4);
    return true;
  }

  /** True while frame pfn keeps its contents in the arena. */
  inArena(pfn: number): boolean {
    const sl = this.arena.slot;
    return pfn >= 0 && pfn < sl.length && sl[pfn] !== 0;
  }

  /** Frame pfn's contents set to zeros (materialized, as frameU32 would). */
  zeroFrame(pfn: number): void {
    const sl = this.arena.slot;
    const w = pfn >= 0 && pfn < sl.length ? sl[pfn] : 0;
    if (w !== 0) this.arena.zero(w / 1024);
    else this.frameU32(pfn).fill(0);
  }

  /** Copy the contents of frame srcPfn into frame dstPfn. */
  copyFrame(dstPfn: number, srcPfn: number): void {
    this.copyRun(dstPfn, srcPfn, 1);
  }

  /** Copy the contents of count frames from srcPfn.. into dstPfn.. (ranges must not overlap). */
  copyRun(dstPfn: number, srcPfn: number, count: number): void {
    assert(dstPfn + count <= srcPfn || srcPfn + count <= dstPfn || dstPfn === srcPfn, "copyRun: overlap");
    if (dstPfn === srcPfn || count <= 0) return;
    const copies: [number, Uint8Array][] = [];
    this.forMaterialized(srcPfn, count, (pfn, frame) => copies.push([dstPfn + (pfn - srcPfn), frame.slice()]));
    this.dropContents(dstPfn, count, true);
    for (const [pfn, frame] of copies) (this.frameData(pfn) ?? this.newFrame(pfn)).set(frame);
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

  /**
   * +1 on `arr` (pin or reference counts) for count frames. One pass, each count read once: this
   * runs for every page of every IOAS_MAP (pin) and of every mmap'ed range (ref).
   */
  private inc(arr: Int32Array, other: Int32Array, isPin: boolean, pfn: number, count: number): void {
    const i0 = this.idx(pfn, count);
    const end = i0 + count;
    let firstHold = 0; // frames held by nothing before
    let firstOfKind = 0; // frames with no count of this kind before
    for (let i = i0; i < end; i++) {
      const a = arr[i];
      if (a === 0) {
        firstOfKind++;
        if (other[i] === 0) firstHold++;
      }
      arr[i] = a + 1;
    }
    this.inUse += firstHold;
    if (isPin) this.pinned += firstOfKind;
  }

  /** -1 on `arr` for count frames; frames neither pinned nor referenced any more are released. */
  private dec(arr: Int32Array, other: Int32Array, isPin: boolean, pfn: number, count: number, what: string): void {
    const i0 = this.idx(pfn, count);
    const end = i0 + count;
    // One pass with no call in it (the common unpin leaves every frame referenced: nothing to
    // free), then, only when some frame is held by nothing any more, its runs are released.
    let zeroed = 0;
    let unheld = 0;
    for (let i = i0; i < end; i++) {
      const a = arr[i] - 1;
      if (a <= 0) {
        if (a < 0) notHeld(what, pfn, count);
        zeroed++;
        if (other[i] === 0) unheld++;
      }
      arr[i] = a;
    }
    if (isPin) this.pinned -= zeroed;
    if (unheld === 0) return;
    this.inUse -= unheld;
    let runStart = -1;
    for (let i = i0; i < end; i++) {
      if (arr[i] === 0 && other[i] === 0) {
        if (runStart < 0) runStart = i;
      } else if (runStart >= 0) {
        this.release(runStart + FIRST_PFN, i - runStart);
        runStart = -1;
      }
    }
    if (runStart >= 0) this.release(runStart + FIRST_PFN, end - runStart);
  }

  /** +1 long-term pin on each of count frames starting at pfn. */
  pin(pfn: number, count: number): void {
    this.inc(this.pinCnt, this.refCnt, true, pfn, count);
  }

  /** -1 long-term pin on each of count frames starting at pfn; frees frames no longer held. */
  unpin(pfn: number, count: number): void {
    this.dec(this.pinCnt, this.refCnt, true, pfn, count, "unpin");
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
    this.inc(this.refCnt, this.pinCnt, false, pfn, count);
  }

  /** -1 reference on count frames; frees frames no longer held. */
  unref(pfn: number, count: number): void {
    this.dec(this.refCnt, this.pinCnt, false, pfn, count, "unref");
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
        const frame = this.frameData(p);
        if (frame) cb(p, frame);
      }
    } else {
      for (const [p, frame] of this.data) if (p >= pfn && p < pfn + count) cb(p, frame);
    }
  }

  /**
   * Drop the contents of frames [pfn, pfn+count): they read as zeros again. Arena frames give
   * their slot back, or with `keepArena` stay in the arena, zeroed (their views stay theirs).
   */
  private dropContents(pfn: number, count: number, keepArena = false): void {
    const gone: number[] = [];
    this.forMaterialized(pfn, count, (p) => gone.push(p));
    const sl = this.arena.slot;
    for (const p of gone) {
      const i = p - FIRST_PFN;
      const w = p < sl.length ? sl[p] : 0;
      if (w !== 0) {
        if (keepArena) {
          this.arena.words.fill(0, w, w + PAGE_SIZE / 4);
          continue;
        }
        sl[p] = 0;
        this.arena.give(w / 1024);
      }
      this.freeSlot(p);
      this.deleteData(p);
      if (i >= 0 && i < this.views.length) this.views[i] = undefined;
    }
  }
}

function notHeld(what: string, pfn: number, count: number): void {
  assert(false, `${what} of frames that are not held (pfn ${pfn} +${count})`);
}

function badPiece(off: number, n: number): void {
  assert(false, `bytes ${off} +${n} do not lie within a frame`);
}

function checkRange(pa: number, length: number): void {
  if (!(Number.isSafeInteger(pa) && pa >= 0)) assert(false, `bad physical address ${pa}`);
  if (!(Number.isSafeInteger(length) && length >= 0)) assert(false, `bad length ${length}`);
}

function checkFrames(pfn: number, count: number): void {
  if (!(Number.isSafeInteger(pfn) && pfn >= 0 && Number.isSafeInteger(count) && count >= 0)) assert(false, `bad frame range pfn ${pfn} count ${count}`);
}
