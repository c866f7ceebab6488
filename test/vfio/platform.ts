/**
 * Test platforms for the type1 container: IOMMU drivers built on the selftest mock paging domain
 * (2 KiB IO pages, RunMap IOPTEs) but with a real platform's aperture, reserved regions and cache
 * coherency: "x86" (48-bit aperture, the hardware MSI window 0xfee00000-0xfeefffff reported as
 * IOMMU_RESV_MSI, snoop control) and "arm" (48-bit aperture, a software-managed MSI window at
 * 0x8000000 reported as IOMMU_RESV_SW_MSI). The plain mock keeps the selftest aperture [16M, 2G).
 */
import * as S from "../../src/index.js";
import { Device, IommuGroup, ResvType, type ResvRegion } from "../../src/iommu/device.js";
import type { IommuDriver } from "../../src/iommu/driver.js";
import { ARM_SW_MSI_BASE, ARM_SW_MSI_LENGTH, X86_MSI_START } from "../../src/vfio/index.js";

class PlatformDomain extends S.MockPagingDomain {
  override readonly apertureStart: bigint;
  override readonly apertureEnd: bigint;
  constructor(driver: IommuDriver, huge: boolean, start: bigint, end: bigint, enforceCC: boolean) {
    super(driver, huge, false);
    this.apertureStart = start;
    this.apertureEnd = end;
    this.enforceCacheCoherency = enforceCC;
  }
}

export interface PlatformOptions {
  apertureStart?: bigint;
  apertureEnd?: bigint;
  /** Regions every device of this IOMMU reports. */
  resv?: ResvRegion[];
  enforceCacheCoherency?: boolean;
}

export class PlatformIommu extends S.MockIommuDriver {
  readonly apertureStart: bigint;
  readonly apertureEnd: bigint;
  readonly resv: ResvRegion[];
  readonly enforceCC: boolean;
  private n = 0;
  constructor(readonly label: string, o: PlatformOptions = {}) {
    super();
    this.apertureStart = o.apertureStart ?? 0n;
    this.apertureEnd = o.apertureEnd ?? (1n << 48n) - 1n;
    this.resv = o.resv ?? [];
    this.enforceCC = o.enforceCacheCoherency ?? true;
  }
  override domainAllocPaging(dev: Device): S.MockPagingDomain {
    return new PlatformDomain(this, (dev.flags & S.MOCK_FLAGS_DEVICE_HUGE_IOVA) !== 0, this.apertureStart, this.apertureEnd, this.enforceCC);
  }
  /** A device behind this IOMMU, alone in a new group or added to `group`. */
  device(o: { name?: string; group?: IommuGroup; resv?: ResvRegion[] } = {}): Device {
    return new Device({ name: o.name ?? `${this.label}-dev${this.n++}`, driver: this, group: o.group, resv: [...this.resv, ...(o.resv ?? [])] });
  }
}

export const MSI = ResvType.MSI;
export const SW_MSI = ResvType.SW_MSI;

export function x86Iommu(o: PlatformOptions = {}): PlatformIommu {
  return new PlatformIommu("x86", { resv: [{ start: X86_MSI_START, length: 0x100000n, type: MSI }], ...o });
}

export function armIommu(o: PlatformOptions = {}): PlatformIommu {
  return new PlatformIommu("arm", { resv: [{ start: ARM_SW_MSI_BASE, length: ARM_SW_MSI_LENGTH, type: SW_MSI }], ...o });
}

let mockN = 0;

/** A device of the selftest mock IOMMU (aperture [16M, 2G), no reserved regions, not coherent). */
export function mockDevice(group?: IommuGroup, name?: string): Device {
  return new Device({ name: name ?? `mock-${mockN++}`, driver: S.mockIommu, group });
}
