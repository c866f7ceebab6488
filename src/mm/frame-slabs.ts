/**
 * Where written frames keep their contents: 4 KiB slots packed into 2 MiB slabs, handed out in the
 * order frames are first written, so that frames written together sit side by side.
 *
 * The alternative (what PhysMem did first) is an ArrayBuffer per frame: wherever the allocator put
 * it, reached through the frame's own view object. A DMA to a random page of a guest's buffer then
 * paid for two dependent loads that miss the caches (the view, its backing store) before its copy
 * could start, and copied into pages scattered over the heap: a 4 KiB copy to one of 512 pages took
 * 100–115 ns that way against 83–89 ns into slab slots found through a slot table (measured here).
 *
 * A slab is allocated when the last one is full (its pages cost the host nothing until written);
 * a slot given back is zeroed when it is handed out again. When the last slot comes back (every
 * written frame freed: a VM torn down, a test's memory gone) the slabs go too. Slot 0 is never
 * handed out: 0 means "no slot" in PhysMem's per-frame slot table.
 */
import { assert } from "../errno.js";
import { DATA_SLABS, type DataMemory } from "./data-memory.js";

const PAGE_SIZE = 4096;
/** log2 of the slots in a slab (512 slots: 2 MiB). */
export const SLAB_SHIFT = 9;
export const SLAB_SLOTS = 1 << SLAB_SHIFT;
/** Slot numbers are int32 (PhysMem keeps them in an Int32Array): at most 2^31 slots, 8 TiB of contents. */
const MAX_SLOTS = 2 ** 31;

export class FrameSlabs {
  /** Slab k holds slots [k * SLAB_SLOTS, (k + 1) * SLAB_SLOTS); slot s at byte (s % SLAB_SLOTS) * 4096. */
  readonly slabs: Uint8Array[] = [];
  private readonly free: number[] = [];
  private next = 1;
  private held = 0;
  /** Where the first DATA_SLABS slabs are (slab k at DATA_AT + k * 2 MiB), if anywhere; how many of them were handed out. */
  private data: DataMemory | null = null;
  private dataUsed = 0;

  /**
   * From now on, slabs 0 .. DATA_SLABS - 1 are those of `m` (so slot s < DATA_SLOTS is at
   * DATA_AT + s * 4096 in it). Only before the first slab is made.
   */
  useDataMemory(m: DataMemory): void {
    assert(this.slabs.length === 0 && this.dataUsed === 0, "frame slabs: a data memory is chosen before the first slab");
    this.data = m;
  }

  /** Slots holding a frame's contents. */
  get slots(): number {
    return this.held;
  }

  /** Bytes of slabs allocated (what the host may have to back once they are all written). */
  get bytes(): number {
    return this.slabs.length * SLAB_SLOTS * PAGE_SIZE;
  }

  /** A zeroed slot. */
  take(): number {
    this.held++;
    const s = this.free.pop();
    if (s !== undefined) {
      const o = (s & (SLAB_SLOTS - 1)) * PAGE_SIZE;
      this.slabs[s >>> SLAB_SHIFT].fill(0, o, o + PAGE_SIZE);
      return s;
    }
    const t = this.next++;
    assert(t < MAX_SLOTS, "frame slabs: out of slot numbers");
    if (t >>> SLAB_SHIFT === this.slabs.length) this.slabs.push(this.newSlab(this.slabs.length));
    return t;
  }

  private newSlab(k: number): Uint8Array {
    if (this.data === null || k >= DATA_SLABS) return new Uint8Array(SLAB_SLOTS * PAGE_SIZE);
    const used = k < this.dataUsed;
    if (!used) this.dataUsed = k + 1;
    return this.data.slab(k, used);
  }

  /** Give slot s back (its bytes are left as they are until it is handed out again). */
  give(s: number): void {
    if (--this.held === 0) {
      // (in place: PhysMem keeps this array)
      this.slabs.length = 0;
      this.free.length = 0;
      this.next = 1;
      return;
    }
    this.free.push(s);
  }

  /** Slot s's 4096 bytes, as a view of its slab. */
  bytesOf(s: number): Uint8Array {
    const slab = this.slabs[s >>> SLAB_SHIFT];
    return new Uint8Array(slab.buffer, slab.byteOffset + (s & (SLAB_SLOTS - 1)) * PAGE_SIZE, PAGE_SIZE);
  }
}
