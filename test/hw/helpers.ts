/** Shared setup for the hardware tests. */
import { PhysMem } from "../../src/mm/phys.js";
import { HwMemory } from "../../src/hw/memory.js";
import { PageTableEngine, type EngineOptions, type WalkResult, type WalkStep } from "../../src/hw/pagetable/engine.js";
import type { PageTableFormat } from "../../src/hw/pagetable/format.js";
import assert from "node:assert/strict";

export function newMem(): HwMemory {
  return new HwMemory(new PhysMem());
}

export function newEngine(format: PageTableFormat, opts: EngineOptions = {}): { mem: HwMemory; eng: PageTableEngine } {
  const mem = newMem();
  return { mem, eng: new PageTableEngine(mem, format, opts) };
}

/** The step of a walk at the format's level number `level`. */
export function at(w: WalkResult, level: number): WalkStep {
  const s = w.steps.find((x) => x.level === level);
  if (!s) throw new Error(`walk has no level ${level}: ${JSON.stringify(w.steps.map((x) => x.level))}`);
  return s;
}

/** An entry's words as one hex string, for exact comparisons that read well in failures. */
export function bits(s: WalkStep): string {
  return "0x" + s.hi.toString(16).padStart(8, "0") + "_" + s.lo.toString(16).padStart(8, "0");
}

/** A 64-bit value written as hi_lo hex (test literals). */
export function hx(hi: number, lo: number): string {
  return "0x" + (hi >>> 0).toString(16).padStart(8, "0") + "_" + (lo >>> 0).toString(16).padStart(8, "0");
}

/** Overwrite the entry a walk step names (hand-crafted descriptors). */
export function poke(mem: HwMemory, s: WalkStep, hi: number, lo: number): void {
  mem.write32(s.hostEntryPa, lo >>> 0);
  mem.write32(s.hostEntryPa + 4, hi >>> 0);
}

export const PAGE = 4096;

/**
 * translate() gives walk()'s answer for (vpn, access): the same output, and the same fault, level
 * and stage, or the same permissions, leaf size and leaf level. `update`: the walk makes the
 * hardware's accessed/dirty updates first, as translate does. A nested engine needs it: there an
 * update is a write through stage 2, which can fault where a walk without updates goes on (a
 * stage-1 table entry whose A bit the hardware must set, in a page stage 2 maps read-only).
 */
export function same(eng: PageTableEngine, vpn: number, access: number, update = false): void {
  const w = eng.walk(vpn, access, update);
  const ppn = eng.translate(vpn, access);
  assert.equal(ppn, w.ppn, `${eng.format.name} vpn ${vpn} access ${access}`);
  if (ppn < 0) {
    assert.deepEqual([eng.fault, eng.faultLevel, eng.faultStage], [w.fault, w.faultLevel, w.faultStage]);
  } else {
    assert.deepEqual([eng.perms, eng.leafPages, eng.leafLevel], [w.perms, w.leafPages, w.leafLevel]);
  }
}
