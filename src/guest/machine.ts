/**
 * The host side a VM runs on: a simulated host (mm/), one physical IOMMU (a VT-d or SMMUv3 unit
 * with its Linux driver) and the PCI devices behind it, plus the host's global PASID space.
 */
import { Host } from "../mm/host.js";
import { HwMemory } from "../hw/memory.js";
import { VtdUnit, type VtdUnitOptions } from "../hw/vtd/unit.js";
import { SmmuUnit, type SmmuUnitOptions } from "../hw/smmuv3/unit.js";
import { VtdDriver } from "../iommu/drivers/vtd.js";
import { SmmuDriver, createSmmuDevice } from "../iommu/drivers/smmuv3.js";
import type { Device } from "../iommu/device.js";
import { PasidAllocator } from "../iommu/pasid.js";

export type IommuKind = "vtd" | "smmuv3";

export interface HostDeviceOptions {
  name: string;
  /** VT-d source-id (bus << 8 | devfn) / SMMUv3 StreamID. */
  sid: number;
  /** PCI PASID capability width (0: none; guest SVA needs 20). Default 20. */
  pasidBits?: number;
  /** Page requests (VT-d: ATS + PRI) / stalls (SMMUv3). Default true. */
  iopf?: boolean;
}

export interface HostMachineOptions {
  iommu: IommuKind;
  vtd?: VtdUnitOptions;
  smmu?: SmmuUnitOptions;
}

export class HostMachine {
  readonly host = new Host();
  readonly kind: IommuKind;
  readonly vtd: { unit: VtdUnit; driver: VtdDriver } | null = null;
  readonly smmu: { unit: SmmuUnit; driver: SmmuDriver } | null = null;
  /** iommu_global_pasid_ida */
  readonly pasids = new PasidAllocator();
  readonly devices: Device[] = [];

  constructor(opts: HostMachineOptions) {
    this.kind = opts.iommu;
    if (opts.iommu === "vtd") {
      const unit = new VtdUnit(this.host.phys, opts.vtd);
      this.vtd = { unit, driver: new VtdDriver(unit) };
    } else {
      const unit = new SmmuUnit(new HwMemory(this.host.phys), opts.smmu);
      this.smmu = { unit, driver: new SmmuDriver(unit) };
    }
  }

  /** A PCI device behind the IOMMU (probed by the driver). */
  addDevice(o: HostDeviceOptions): Device {
    const pasidBits = o.pasidBits ?? 20;
    const iopf = o.iopf ?? true;
    let dev: Device;
    if (this.vtd) dev = this.vtd.driver.probeDevice({ name: o.name, sid: o.sid, pasidBits, ats: iopf, pri: iopf });
    else dev = createSmmuDevice((this.smmu as { driver: SmmuDriver }).driver, { name: o.name, sid: o.sid, maxPasidLog2: pasidBits, master: { canStall: iopf } });
    this.devices.push(dev);
    return dev;
  }
}
