/**
 * A hardware unit's common DMA in WebAssembly (dma-wasm.wat, assembled into dma-wasm-bytes.ts),
 * instantiated once per data memory (mm/data-memory.ts, DataMemory.wasm). A unit whose IOTLB is
 * placed in the data memory (IotlbOptions.place) writes a record describing it (`writeDmaRecord`)
 * and hands DMAs between device buffers and written frames to `dma`; -1 sends it back to the
 * unit's JavaScript path, which gives the same result.
 */
import type { DataMemory } from "../mm/data-memory.js";
import { DMA_WASM_BASE64 } from "./dma-wasm-bytes.js";
import type { IotlbPlacement } from "./iotlb.js";

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
