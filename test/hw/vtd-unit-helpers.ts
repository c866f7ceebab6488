/** Shared setup for the VT-d unit tests: raw memory writes, hand-built tables, small DMA helpers. */
import assert from "node:assert/strict";
import { PhysMem } from "../../src/mm/phys.js";
import type { DmaResult } from "../../src/hw/dma.js";
import { VtdRig, VtdUnit, VtdReg, type VtdUnitOptions, type RigOptions } from "../../src/hw/vtd/unit.js";

export const PAGE = 4096;

export function newUnit(opts: VtdUnitOptions = {}, rig: RigOptions = {}): { unit: VtdUnit; rig: VtdRig } {
  const unit = new VtdUnit(new PhysMem(), opts);
  return { unit, rig: new VtdRig(unit, rig) };
}

/** A fresh zeroed frame (its pfn). */
export function frame(unit: VtdUnit): number {
  const pfn = unit.mem.phys.allocRun(1);
  unit.mem.phys.frameU32(pfn);
  return pfn;
}

/** Store a 64-bit entry as the spec draws it: (hi, lo) 32-bit halves at byte address pa. */
export function put64(unit: VtdUnit, pa: number, hi: number, lo: number): void {
  unit.mem.write32(pa, lo >>> 0);
  unit.mem.write32(pa + 4, hi >>> 0);
}

export function get64(unit: VtdUnit, pa: number): bigint {
  return BigInt(unit.mem.read32(pa)) | (BigInt(unit.mem.read32(pa + 4)) << 32n);
}

export function read(unit: VtdUnit, sid: number, pasid: number, iova: bigint, length: number, priv = false): { r: DmaResult; data: Uint8Array } {
  const data = new Uint8Array(length);
  return { r: unit.dma({ sid, pasid, iova, length, write: false, data, priv }), data };
}

export function write(unit: VtdUnit, sid: number, pasid: number, iova: bigint, bytes: number[], priv = false): DmaResult {
  return unit.dma({ sid, pasid, iova, length: bytes.length, write: true, data: new Uint8Array(bytes), priv });
}

/** The fault recording register i as two qwords [lo, hi]. */
export function faultRecord(unit: VtdUnit, i: number): [bigint, bigint] {
  const off = unit.cap.fro * 16 + i * 16;
  return [unit.read64(off), unit.read64(off + 8)];
}

/** Clear fault recording register i (write 1 to F). */
export function clearFaultRecord(unit: VtdUnit, i: number): void {
  unit.write32(unit.cap.fro * 16 + i * 16 + 12, 0x80000000);
}

export function fsts(unit: VtdUnit): number {
  return unit.read32(VtdReg.FSTS);
}

/**
 * Two units that got the same operations agree on what software and devices can see: the bytes
 * of `frames` frames from data / dataB, FSTS, every fault record, and the IOTLB's counts.
 */
export function assertSameUnitState(a: VtdUnit, dataA: number, b: VtdUnit, dataB: number, frames: number): void {
  const bytes = frames * PAGE;
  assert.deepEqual(a.mem.read(dataA * PAGE, bytes), b.mem.read(dataB * PAGE, bytes), "memory");
  assert.equal(fsts(a), fsts(b), "FSTS");
  for (let i = 0; i < a.cap.nfr; i++) assert.deepEqual(faultRecord(a, i), faultRecord(b, i), `fault record ${i}`);
  assert.deepEqual(a.iotlb.stats, b.iotlb.stats, "IOTLB counts");
}
