/**
 * A hardware unit's common DMA in WebAssembly (dma-wasm.wat, assembled into dma-wasm-bytes.ts),
 * instantiated once per data memory (mm/data-memory.ts, DataMemory.wasm). A unit whose IOTLB is
 * placed in the data memory (IotlbOptions.place) writes a record describing it (`writeDmaRecord`)
 * and hands DMAs between device buffers and written frames to `dma`; -1 sends it back to the
 * unit's JavaScript path, which gives the same result.
 */
import type { DataMemory } from "../mm/data-memory.js";
import type { PhysMem } from "../mm/phys.js";
import { DMA_WASM_BASE64 } from "./dma-wasm-bytes.js";
import { Iotlb, iotlbPlacementBytes, type IotlbOptions, type IotlbPlacement } from "./iotlb.js";

/** dma(rec, k1, k2, vpn, off, len, buf, write): len, or -1 (see dma-wasm.wat). */
export type DmaWasmFn = (rec: number, k1: number, k2: number, vpn: number, off: number, len: number, buf: number, write: number) => number;

/** Bytes of a unit's record (dma-wasm.wat reads 10 words). */
export const DMA_RECORD_BYTES = 40;

let compiled: WebAssembly.Module | null | undefined;

/** The module's dma function over data memory m, or null (no WebAssembly, or it failed). */
export function makeDmaWasm(m: DataMemory): DmaWasmFn | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(Buffer.from(DMA_WASM_BASE64, "base64"));
    } catch {
      compiled = null;
    }
  }
  if (compiled === null) return null;
  try {
    const inst = new WebAssembly.Instance(compiled, { e: { m: m.memory as unknown as WebAssembly.Memory } });
    return inst.exports.dma as DmaWasmFn;
  } catch {
    return null;
  }
}

/** Write the record dma-wasm.wat reads for an IOTLB placed at p, at byte `at` of m. */
export function writeDmaRecord(m: DataMemory, at: number, p: IotlbPlacement): void {
  const w = new Int32Array(m.buffer, at, DMA_RECORD_BYTES / 4);
  w.set([p.slotMask, p.used, p.k1, p.k2, p.vpn, p.size, p.ppn, p.perms, p.hits, p.hint]);
}

/** A unit's IOTLB and, when it could be placed in the data memory, what its WebAssembly DMA needs. */
export interface DmaIotlb {
  readonly iotlb: Iotlb;
  /** The data memory, the record's byte address, the function; null / -1 / null without them. */
  readonly dataMem: DataMemory | null;
  readonly rec: number;
  readonly fn: DmaWasmFn | null;
}

/**
 * A hardware unit's IOTLB with its lookup arrays in phys's data memory and the record
 * dma-wasm.wat reads before them, where there is room (else an IOTLB of its own arrays, and no
 * WebAssembly path).
 */
export function makeDmaIotlb(phys: PhysMem, opts: IotlbOptions): DmaIotlb {
  const dm = phys.dataMemory();
  const rec = dm === null ? -1 : dm.allocRecords(DMA_RECORD_BYTES + iotlbPlacementBytes(opts.capacity ?? 1024));
  const iotlb = new Iotlb(dm === null || rec < 0 ? opts : { ...opts, place: { buffer: dm.buffer, at: rec + DMA_RECORD_BYTES } });
  const placed = iotlb.placed;
  const fn = dm === null || placed === null ? null : dm.wasm(makeDmaWasm);
  if (dm === null || placed === null || fn === null) return { iotlb, dataMem: null, rec: -1, fn: null };
  writeDmaRecord(dm, rec, placed);
  return { iotlb, dataMem: dm, rec, fn };
}
