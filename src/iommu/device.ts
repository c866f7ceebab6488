/** Physical devices and IOMMU groups as the IOMMU core sees them. */
import type { DmaPort, DmaRequest, DmaResult } from "../hw/dma.js";
import type { IommuDomain } from "./domain.js";
import type { IommuDriver } from "./driver.js";

export const enum ResvType {
  DIRECT = 0,
  DIRECT_RELAXABLE = 1,
  RESERVED = 2,
  MSI = 3,
  SW_MSI = 4,
}

export const PCI_PASID_CTRL_ENABLE = 0x01;
export const PCI_PASID_CTRL_EXEC = 0x02;
export const PCI_PASID_CTRL_PRIV = 0x04;

export interface ResvRegion {
  start: bigint;
  length: bigint;
  type: ResvType;
}

let nextGroupId = 0;

/** An IOMMU group: the unit of isolation. All its devices share one attachment. */
export class IommuGroup {
  readonly id: number;
  readonly devices: Device[] = [];
  /** Current translation; null = the default/blocking domain (no user attachment). */
  domain: IommuDomain | null = null;
  /** DMA ownership (iommu_device_claim_dma_owner): the owner token and its count. */
  owner: unknown = null;
  ownerCnt = 0;
  constructor(id?: number) {
    this.id = id ?? nextGroupId++;
  }
}

export interface DeviceOptions {
  name: string;
  driver: IommuDriver;
  group?: IommuGroup;
  resv?: ResvRegion[];
  /** log2 of the PASID count when PASID is enabled (0 = none). */
  maxPasidLog2?: number;
  isPci?: boolean;
  /** A PCI device's PASID Control register (PCI_PASID_CTRL_ENABLE 1, _EXEC 2, _PRIV 4). */
  pciPasidCtrl?: number;
  /** Driver-specific flags (e.g. the mock's MOCK_FLAGS_DEVICE_*). */
  flags?: number;
  /** The IOMMU hardware the device's DMA goes through, and its requester ID there (none: no DMA model). */
  port?: DmaPort;
  sid?: number;
}

/** A device behind an IOMMU. */
export class Device {
  readonly name: string;
  readonly driver: IommuDriver;
  readonly group: IommuGroup;
  readonly resv: ResvRegion[];
  readonly maxPasidLog2: number;
  readonly isPci: boolean;
  readonly pciPasidCtrl: number;
  readonly flags: number;
  readonly port: DmaPort | null;
  readonly sid: number;
  constructor(o: DeviceOptions) {
    this.name = o.name;
    this.driver = o.driver;
    this.group = o.group ?? new IommuGroup();
    this.group.devices.push(this);
    this.resv = o.resv ?? [];
    this.maxPasidLog2 = o.maxPasidLog2 ?? 0;
    this.isPci = o.isPci ?? false;
    this.pciPasidCtrl = o.pciPasidCtrl ?? 0;
    this.flags = o.flags ?? 0;
    this.port = o.port ?? null;
    this.sid = o.sid ?? 0;
  }

  /**
   * The device does DMA: through its IOMMU hardware (translation, IOTLB, faults), to memory.
   * pasid -1 (default): a request without PASID.
   */
  dma(req: Omit<DmaRequest, "sid" | "pasid"> & { pasid?: number }): DmaResult {
    if (this.port === null) throw new Error(`device ${this.name} has no IOMMU hardware model to do DMA through`);
    // one object shape for every request (a spread makes a new hidden class per call site)
    return this.port.dma({
      sid: this.sid,
      pasid: req.pasid ?? -1,
      iova: req.iova,
      length: req.length,
      write: req.write,
      data: req.data,
      priv: req.priv ?? false,
      exec: req.exec ?? false,
      onComplete: req.onComplete,
    });
  }

  /** Remove the device from its group (device_unregister). */
  unplug(): void {
    const i = this.group.devices.indexOf(this);
    if (i >= 0) this.group.devices.splice(i, 1);
    this.driver.releaseDevice?.(this);
  }
}
