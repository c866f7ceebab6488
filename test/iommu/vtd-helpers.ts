/** Setup for the intel-iommu driver tests: a unit, the driver over it, devices, host memory. */
import { PhysMem } from "../../src/mm/phys.js";
import type { DmaResult } from "../../src/hw/dma.js";
import { PasidDirEntry, PasidEntry, SmContextEntry, SmRootEntry } from "../../src/hw/vtd/tables.js";
import { VtdReg, VtdUnit, type VtdUnitOptions } from "../../src/hw/vtd/unit.js";
import type { Device } from "../../src/iommu/device.js";
import type { UserData, UserDataArray } from "../../src/iommu/driver.js";
import { VtdDriver, type VtdDeviceOptions, type VtdDriverOptions } from "../../src/iommu/drivers/vtd.js";
import { fail } from "../../src/errno.js";

export const PAGE = 4096;

export interface Rig {
  phys: PhysMem;
  unit: VtdUnit;
  drv: VtdDriver;
  dev: Device;
}

export function setup(o: { unit?: VtdUnitOptions; drv?: VtdDriverOptions; dev?: Partial<VtdDeviceOptions> } = {}): Rig {
  const phys = new PhysMem();
  const unit = new VtdUnit(phys, o.unit);
  const drv = new VtdDriver(unit, o.drv);
  const dev = drv.probeDevice({ name: "dev0", sid: 0x0300, pasidBits: 20, ...o.dev });
  return { phys, unit, drv, dev };
}

/** n host frames filled with `fill` (a byte pattern per frame: fill + frame index). */
export function hostPages(phys: PhysMem, n: number, fill = 0x10): number {
  const pfn = phys.allocRun(n);
  for (let i = 0; i < n; i++) phys.write((pfn + i) * PAGE, new Uint8Array(PAGE).fill((fill + i) & 0xff));
  return pfn;
}

export function dmaRead(dev: Device, iova: bigint, length: number, pasid = -1): { r: DmaResult; data: Uint8Array } {
  const data = new Uint8Array(length);
  return { r: dev.dma({ iova, length, write: false, data, pasid }), data };
}

export function dmaWrite(dev: Device, iova: bigint, bytes: number[], pasid = -1): DmaResult {
  return dev.dma({ iova, length: bytes.length, write: true, data: new Uint8Array(bytes), pasid });
}

/** User data from bytes (iommu_user_data); `fault` makes the copy fail with EFAULT. */
export function userData(type: number, bytes: Uint8Array, fault = false): UserData {
  return {
    type,
    len: bytes.length,
    read(n: number): Uint8Array {
      if (fault) fail("EFAULT", "bad user pointer");
      return bytes.slice(0, n);
    },
  };
}

/** An invalidation request array of fixed-size entries. */
export function userArray(type: number, entries: Uint8Array[], entryLen = entries[0]?.length ?? 24): UserDataArray {
  return {
    type,
    entryLen,
    entryNum: entries.length,
    entry(i: number): Uint8Array {
      return entries[i].slice(0, entryLen);
    },
  };
}

/** The scalable-mode context entry of sid as the hardware would find it (decoded), or null. */
export function contextOf(unit: VtdUnit, sid: number): SmContextEntry | null {
  const root = Number(unit.read64(VtdReg.RTADDR) & ~0xfffn);
  const re = SmRootEntry.decode(unit.mem.read(root + (sid >>> 8) * 16, 16));
  const upper = (sid & 0xff) >= 128;
  if ((upper ? re.up : re.lp) === 0) return null;
  const ctp = upper ? re.uctp : re.lctp;
  return SmContextEntry.decode(unit.mem.read(ctp + (sid & 0x7f) * 32, 32));
}

/** The PASID entry of (sid, pasid) (decoded), or null when its directory entry is not present. */
export function pasidEntryOf(unit: VtdUnit, sid: number, pasid: number): PasidEntry | null {
  const ctx = contextOf(unit, sid);
  if (ctx === null) return null;
  const de = PasidDirEntry.decode(unit.mem.read(ctx.pasiddirptr + (pasid >>> 6) * 8, 8));
  if (de.p === 0) return null;
  return PasidEntry.decode(unit.mem.read(de.ptp + (pasid & 63) * 64, 64));
}
