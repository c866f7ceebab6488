/**
 * The nested walk in WebAssembly (wasm-walk.wat, assembled into wasm-walk-bytes.ts), instantiated
 * once per FrameArena over the arena's memory (FrameArena.wasm). PageTableEngine.nested4k calls it
 * when stage 2's tables and the stage-1 table pages are in the arena: a nested walk is 24 dependent
 * entry reads, and there the module's plain loads and 32-bit registers take about two thirds of
 * the time the same walk takes in JavaScript (bounds checks, tagging, a call per stage-2 walk).
 * Measured on this project's bench VM (benchWalkNested): JS ~170 ns, WebAssembly ~110 ns, the
 * same walk in C ~60 ns.
 *
 * The engine passes its parameters in a record in the arena's memory (one per arena, rewritten
 * when another engine, access or configuration uses it): the R_* word offsets below, which
 * wasm-walk.wat reads at 4 * R_*.
 */
import type { ArenaWasm, SharedWasmMemory } from "../../mm/phys.js";
import { WASM_WALK_BASE64 } from "./wasm-walk-bytes.js";

// Stage 1 (the engine nested4k runs on): its root (guest page), top-level shift, format bits,
// then 64-bit masks (two words, lo first): table address bits, the lean masks of the access as
// entries see them (NT: lo bits every table entry must have; BT: hi bits none may have; NL / LB:
// the leaf's bits LB, of which it must have those of NL), and the leaf's output address bits.
export const R_ROOT1 = 0;
export const R_SH1 = 1;
export const R_VALID1 = 2;
export const R_TM1 = 3;
export const R_BT1 = 4;
export const R_PTM1 = 5;
export const R_PT1 = 6;
export const R_LEAFSH1 = 7;
export const R_ADDR1 = 8;
/** NT, BT, NL, LB: four 64-bit masks. */
export const R_MASKS1 = 10;
export const R_OUT1 = 18;
// Stage 2: its root (byte address in the arena), top-level shift and entries, format bits, the
// leaf's output address bits, the masks for the stage-1 table reads, then for the access.
export const R_ROOT2 = 20;
export const R_SH2 = 21;
export const R_TOP2 = 22;
export const R_TM2 = 23;
export const R_BT2 = 24;
export const R_PTM2 = 25;
export const R_PT2 = 26;
export const R_LEAFSH2 = 27;
export const R_OUT2 = 28;
export const R_READ2 = 30;
export const R_ACC2 = 38;
// Results of a walk that returned an output: stage 1's leaf shift, the AND of its table entries'
// lo words, the OR of their hi words, the leaf's words; the same of the output's stage-2 walk.
// And the stage-1 table page of a -2.
export const R_RES1 = 48;
export const R_RES2 = 53;
export const R_HP = 58;
/** The slot table's length (FrameArena.slot). */
export const R_NSLOTS = 60;

/** The arena's WebAssembly walker: nested(v, record byte address) and the record it shares. */
export interface ArenaWalker extends ArenaWasm {
  readonly nested: (v: number, rec: number) => number;
  /** Bytes [at, at + len) of the arena's memory set to zero (a memset: see wasm-walk.wat). */
  readonly zero: (at: number, len: number) => void;
  /** The record's byte address in the memory, and the record as words. */
  readonly recByte: number;
  readonly rec: Int32Array;
  /** Who wrote the record last (an engine), and for what (see PageTableEngine.nestedWasm). */
  owner: object | null;
  /** Whether the record serves the owner's walks (false: they stay in JavaScript). */
  ok: boolean;
  ownerAcc: number;
  ownerGen: number;
  ownerGen2: number;
  /** Walks it completed (for tests: that a path was served here). */
  served: number;
}

let compiled: WebAssembly.Module | null | undefined;

function module(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(Buffer.from(WASM_WALK_BASE64, "base64"));
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/**
 * The walker over an arena's memory, its record in the 4 KiB at byte scratch (a slot of the
 * arena), or null when WebAssembly cannot run it. For FrameArena.wasm.
 */
export function makeArenaWalker(memory: SharedWasmMemory, scratch: number): ArenaWalker | null {
  const m = module();
  if (m === null) return null;
  const inst = new WebAssembly.Instance(m, { arena: { memory: memory as unknown as WebAssembly.Memory } });
  const nested = inst.exports.nested as (v: number, rec: number) => number;
  const zero = inst.exports.zero as (at: number, len: number) => void;
  return {
    nested,
    zero,
    recByte: scratch,
    rec: new Int32Array(memory.buffer, scratch, 1024),
    owner: null,
    ok: false,
    ownerAcc: -1,
    ownerGen: -1,
    ownerGen2: -1,
    served: 0,
  };
}
