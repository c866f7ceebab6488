/**
 * One WebAssembly memory per PhysMem for the bytes a DMA moves: the first FrameSlabs slabs (where
 * written frames keep their contents), the per-frame slot table that finds them, device models'
 * own buffers (PhysMem.dmaBuffer) and the lookup arrays of hardware units' IOTLBs. With all of them
 * in one memory, a hardware unit's common DMA (an IOTLB hit to a written frame, to or from a
 * device buffer) is one WebAssembly call: the lookup and a memory.copy (hw/dma-wasm.wat). From
 * JavaScript the same DMA costs a typed-array copy's fixed overhead and the lookup's checks on top
 * (a prototype measured ~75 ns a 4 KiB DMA that way against ~105–120 in JavaScript here).
 *
 * The memory is not shared (a typed-array copy into a shared one goes an element at a time) and
 * never grows (growing detaches a non-shared memory's buffer, and views of it are everywhere):
 * MEMORY_BYTES are reserved at once, costing the host nothing until written. What does not fit
 * (frames beyond the slabs here, pfns beyond the slot table, more IOTLBs or buffers) lives in
 * ordinary arrays and takes the JavaScript paths.
 *
 * Layout (byte offsets):
 *   [0, SLOT_TABLE_BYTES)                slot table: Int32 per pfn index (pfn - FIRST_PFN)
 *   [SLOT_OWNER_AT, + DATA_SLOTS * 4)    slot owners: Int32 per frame slot, the pfn whose contents it
 *                                        holds (0: none); a unit's DMA checks a slot it remembered
 *                                        against it instead of reading the slot table
 *   [.., RECORDS_AT + 1 MiB)             IOTLB lookup arrays and unit records (bump allocated)
 *   [BUFFERS_AT, BUFFERS_AT + 2 MiB)     device buffers (bump allocated)
 *   [DATA_AT, MEMORY_BYTES)              frame slots: slot s at DATA_AT + s * 4096
 */

/** The part of the WebAssembly JS API DataMemory uses. */
interface PlainWasmMemory {
  readonly buffer: ArrayBuffer;
}
type PlainWasmMemoryCtor = new (d: { initial: number; maximum: number }) => PlainWasmMemory;
const WasmMemory = (globalThis as unknown as { WebAssembly?: { Memory: PlainWasmMemoryCtor } }).WebAssembly?.Memory;

const MiB = 1 << 20;
/** Bytes of the memory (64 MiB: 1024 WebAssembly pages). */
export const MEMORY_BYTES = 64 * MiB;
/** Slot table entries: pfn indexes below this have one. */
export const SLOT_TABLE_ENTRIES = 1 << 18;
export const SLOT_TABLE_BYTES = SLOT_TABLE_ENTRIES * 4;
export const RECORDS_AT = 1 * MiB;
export const SLOT_OWNER_AT = RECORDS_AT;
export const BUFFERS_AT = 2 * MiB;
export const DATA_AT = 4 * MiB;
/** Slabs (2 MiB each) in the memory; slots below DATA_SLOTS are here. */
export const DATA_SLABS = (MEMORY_BYTES - DATA_AT) / (2 * MiB);
export const DATA_SLOTS = DATA_SLABS * 512;

/** A device model's buffer (PhysMem.dmaBuffer): its bytes, and where they are. */
export interface DeviceBuffer {
  readonly bytes: Uint8Array;
  /** bytes.length. */
  readonly length: number;
  /** The data memory holding them, or null (an ordinary array). */
  readonly memory: DataMemory | null;
  /** Byte offset of bytes[0] in that memory (-1 without one). */
  readonly addr: number;
}

export class DataMemory {
  readonly buffer: ArrayBuffer;
  readonly memory: PlainWasmMemory;
  /** The slot table (SLOT_TABLE_ENTRIES entries). */
  readonly slotTable: Int32Array;
  /** The slot owners (DATA_SLOTS entries). */
  readonly slotOwner: Int32Array;
  private records = SLOT_OWNER_AT + DATA_SLOTS * 4;
  private buffers = BUFFERS_AT;
  private kept: unknown = null;

  private constructor(memory: PlainWasmMemory) {
    this.memory = memory;
    this.buffer = memory.buffer;
    this.slotTable = new Int32Array(this.buffer, 0, SLOT_TABLE_ENTRIES);
    this.slotOwner = new Int32Array(this.buffer, SLOT_OWNER_AT, DATA_SLOTS);
  }

  /** A new memory, or null where none can be had (no WebAssembly, no address space). */
  static create(): DataMemory | null {
    if (WasmMemory === undefined) return null;
    try {
      const pages = MEMORY_BYTES / 65536;
      return new DataMemory(new WasmMemory({ initial: pages, maximum: pages }));
    } catch {
      return null;
    }
  }

  /** Slab k's 2 MiB (k < DATA_SLABS); zeroed first when `used` (handed out before). */
  slab(k: number, used: boolean): Uint8Array {
    const v = new Uint8Array(this.buffer, DATA_AT + k * 2 * MiB, 2 * MiB);
    if (used) v.fill(0);
    return v;
  }

  /** `bytes` of the records region, 8-byte aligned, zeroed; -1 when it is full. */
  allocRecords(bytes: number): number {
    const at = Math.ceil(this.records / 8) * 8;
    if (at + bytes > BUFFERS_AT) return -1;
    this.records = at + bytes;
    return at;
  }

  /** A device buffer of `length` bytes (zeroed), or null when the buffer region is full. */
  allocBuffer(length: number): DeviceBuffer | null {
    const at = Math.ceil(this.buffers / 64) * 64;
    if (at + length > DATA_AT) return null;
    this.buffers = at + length;
    return { bytes: new Uint8Array(this.buffer, at, length), length, memory: this, addr: at };
  }

  /** What hardware code keeps for this memory (its WebAssembly instance): made once by `make`. */
  wasm<T>(make: (m: DataMemory) => T): T {
    if (this.kept === null) this.kept = make(this);
    return this.kept as T;
  }
}
