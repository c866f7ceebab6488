/** Shared setup for the VT-d unit tests: raw memory writes, hand-built tables, small DMA helpers. */
import assert from "node:assert/strict";
import { PhysMem } from "../../src/mm/phys.js";
import type { DmaResult } from "../../src/hw/dma.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { PT_READ, PT_USER, PT_WRITE, vtdFirstStage, vtdSecondStage } from "../../src/hw/pagetable/format.js";
import { Pgtt } from "../../src/hw/vtd/tables.js";
import { DEFAULT_ECAP, VtdRig, VtdUnit, VtdReg, type VtdUnitOptions, type RigOptions } from "../../src/hw/vtd/unit.js";

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

/** The DMA-path tests' stream, and its PASID with a first-stage domain. */
export const DMA_SID = 0x0310;
export const DMA_FS_PASID = 5;
/** The domains map input pages DMA_BASE .. DMA_BASE+7; DMA_BASE+8 is a hole. */
export const DMA_BASE = 0x40;

/** A unit for the DMA-path tests, its second-stage domain and its 8 data frames. */
export interface DmaSide {
  unit: VtdUnit;
  ss: PageTableEngine;
  data: number;
}

/**
 * A unit (supervisor requests supported) with a second-stage domain at PASID 0 (requests without
 * PASID: pages 6 and 7 read-only) and a first-stage one at DMA_FS_PASID (pages 4 and 5 read-only,
 * 6 and 7 supervisor-only), each over the same 8 frames. `written`: every frame but frame 3 gets
 * contents first (so that a DMA finds them where a written frame's contents live).
 */
export function dmaSide(written = false): DmaSide {
  const unit = new VtdUnit(new PhysMem(), { ecap: { ...DEFAULT_ECAP, srs: 1 } });
  const rig = new VtdRig(unit);
  const ss = new PageTableEngine(unit.mem, vtdSecondStage({ addressWidth: 48 }));
  rig.setContext(DMA_SID);
  rig.setPasid(DMA_SID, 0, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did: 3, ssptptr: ss.root * PAGE, ssade: 0 });
  const data = unit.mem.phys.allocRun(8);
  ss.map(DMA_BASE, data, 6, PT_READ | PT_WRITE);
  ss.map(DMA_BASE + 6, data + 6, 2, PT_READ);
  const fs = new PageTableEngine(unit.mem, vtdFirstStage());
  rig.setPasid(DMA_SID, DMA_FS_PASID, { pgtt: Pgtt.FIRST_STAGE, did: 4, fsptptr: fs.root * PAGE, sre: 1 });
  fs.map(DMA_BASE, data, 4, PT_READ | PT_WRITE | PT_USER);
  fs.map(DMA_BASE + 4, data + 4, 2, PT_READ | PT_USER);
  fs.map(DMA_BASE + 6, data + 6, 2, PT_READ | PT_WRITE);
  if (written) for (let k = 0; k < 8; k++) if (k !== 3) unit.mem.phys.write((data + k) * PAGE, new Uint8Array(PAGE).fill(0x10 + k));
  return { unit, ss, data };
}
