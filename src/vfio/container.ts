/**
 * A legacy VFIO container: one open of /dev/vfio/vfio served by drivers/vfio/container.c (not by
 * iommufd). Groups join it with VFIO_GROUP_SET_CONTAINER; VFIO_SET_IOMMU then picks an IOMMU backend
 * (classic type1, or the no-IOMMU driver for no-IOMMU groups) and attaches every group to it;
 * everything else is passed to that backend. Removing the last group releases the backend and the
 * container is back to its initial state.
 *
 * Calls run on behalf of `caller` (the process issuing the ioctl), like IommufdCtx.
 */
import { fail } from "../errno.js";
import { CONFIG_VFIO_NOIOMMU, VFIO_API_VERSION, VFIO_NOIOMMU_IOMMU } from "../iommufd/vfio-compat.js";
import type { Host, Process } from "../mm/index.js";
import { VFIO_NO_IOMMU } from "./domain.js";
import type { VfioGroup } from "./group.js";
import { defaultType1Params, type1CheckExtensionNoIommu, VfioIommuType1, type Type1Params } from "./type1-container.js";
import type {
  VfioIommuType1DirtyBitmap,
  VfioIommuType1DmaMap,
  VfioIommuType1DmaUnmap,
  VfioIommuType1Info,
} from "./uapi.js";

export interface VfioContainerOptions {
  /** vfio_iommu_type1 module parameters (dma_entry_limit, allow_unsafe_interrupts) and MSI isolation. */
  type1?: Partial<Type1Params>;
  /** vfio.enable_unsafe_noiommu_mode (needs CONFIG_VFIO_NOIOMMU). */
  enableUnsafeNoiommuMode?: boolean;
}

/** The registered IOMMU drivers, in the order the kernel polls them (type1 registers last, so first). */
type DriverName = "vfio-iommu-type1" | "vfio-noiommu";
const DRIVERS: DriverName[] = CONFIG_VFIO_NOIOMMU ? ["vfio-iommu-type1", "vfio-noiommu"] : ["vfio-iommu-type1"];

export class VfioContainer {
  readonly host: Host;
  caller: Process;
  /** Groups in the container, most recently added first (list_add). */
  readonly groups: VfioGroup[] = [];
  /** The backend chosen by SET_IOMMU, or null. */
  driver: DriverName | null = null;
  /** The type1 backend's state (struct vfio_iommu) when driver is type1. */
  iommu: VfioIommuType1 | null = null;
  /** The container holds no-IOMMU groups (real and fake groups cannot mix). */
  noiommu = false;
  readonly type1Params: Type1Params;
  readonly enableUnsafeNoiommuMode: boolean;
  closed = false;

  constructor(host: Host, opener: Process, opts: VfioContainerOptions = {}) {
    this.host = host;
    this.caller = opener;
    this.type1Params = { ...defaultType1Params(), ...opts.type1 };
    this.enableUnsafeNoiommuMode = CONFIG_VFIO_NOIOMMU && (opts.enableUnsafeNoiommuMode ?? false);
  }

  /** Run fn with `p` as the caller (another process using an inherited container fd). */
  as<T>(p: Process, fn: (c: this) => T): T {
    const prev = this.caller;
    this.caller = p;
    try {
      return fn(this);
    } finally {
      this.caller = prev;
    }
  }

  private check(): void {
    if (this.closed) fail("EBADF", "the container fd is closed");
  }

  private allowed(d: DriverName): boolean {
    return this.noiommu === (d === "vfio-noiommu");
  }

  private driverCheckExtension(d: DriverName, ext: number): number {
    if (d === "vfio-iommu-type1") return type1CheckExtensionNoIommu(ext);
    return this.enableUnsafeNoiommuMode && ext === VFIO_NOIOMMU_IOMMU ? 1 : 0;
  }

  // ---------------------------------------------------------------- container ioctls

  /** VFIO_GET_API_VERSION */
  getApiVersion(): number {
    this.check();
    return VFIO_API_VERSION;
  }

  /**
   * VFIO_CHECK_EXTENSION: with a backend set, its answer; otherwise the first positive answer of the
   * registered drivers (only those the container's groups allow, once it has groups).
   */
  checkExtension(ext: number): number {
    this.check();
    if (this.driver === "vfio-iommu-type1") return (this.iommu as VfioIommuType1).checkExtension(ext);
    if (this.driver === "vfio-noiommu") return this.driverCheckExtension("vfio-noiommu", ext);
    let ret = 0;
    for (const d of DRIVERS) {
      if (this.groups.length && !this.allowed(d)) continue;
      ret = this.driverCheckExtension(d, ext);
      if (ret > 0) break;
    }
    return ret;
  }

  /**
   * VFIO_SET_IOMMU: EINVAL without a group or with a backend already set; ENODEV if no driver
   * claims the type; otherwise the backend's open/attach error (type1: EINVAL for an extension
   * that is not an IOMMU type, e.g. UNMAP_ALL).
   */
  setIommu(type: number): number {
    this.check();
    if (this.groups.length === 0 || this.driver) fail("EINVAL", "no group in the container, or the IOMMU is already set");
    let err: unknown = null;
    for (const d of DRIVERS) {
      if (!this.allowed(d)) continue;
      if (this.driverCheckExtension(d, type) <= 0) continue;
      try {
        if (d === "vfio-noiommu") {
          if (type !== VFIO_NOIOMMU_IOMMU) fail("EINVAL", "not the no-IOMMU type");
          if (!this.caller.caps.sysRawio) fail("EPERM", "no-IOMMU needs CAP_SYS_RAWIO");
          this.driver = d;
          return 0;
        }
        const iommu = new VfioIommuType1(this.host.phys, type, this.type1Params, () => this.caller);
        const done: VfioGroup[] = [];
        try {
          for (const g of this.groups) {
            iommu.attachGroup(g);
            done.push(g);
          }
        } catch (e) {
          for (const g of done.reverse()) iommu.detachGroup(g);
          iommu.release();
          throw e;
        }
        this.driver = d;
        this.iommu = iommu;
        return 0;
      } catch (e) {
        err = e;
      }
    }
    if (err) throw err;
    fail("ENODEV", `no IOMMU driver supports type ${type}`);
  }

  private type1(): VfioIommuType1 {
    this.check();
    if (!this.driver) fail("EINVAL", "VFIO_SET_IOMMU has not been done");
    if (this.driver !== "vfio-iommu-type1") fail("ENOTTY", "the no-IOMMU driver has no such ioctl");
    return this.iommu as VfioIommuType1;
  }

  /** VFIO_IOMMU_GET_INFO */
  iommuGetInfo(info: { argsz: number }): VfioIommuType1Info {
    return this.type1().getInfo(info);
  }

  /** VFIO_IOMMU_MAP_DMA */
  iommuMapDma(map: VfioIommuType1DmaMap): number {
    this.type1().mapDma(map);
    return 0;
  }

  /** VFIO_IOMMU_UNMAP_DMA: the struct as written back (size = bytes unmapped). */
  iommuUnmapDma(unmap: VfioIommuType1DmaUnmap): VfioIommuType1DmaUnmap {
    return this.type1().unmapDma(unmap);
  }

  /** VFIO_IOMMU_DIRTY_PAGES */
  iommuDirtyPages(cmd: VfioIommuType1DirtyBitmap): number {
    this.type1().dirtyPages(cmd);
    return 0;
  }

  /** close(): the groups keep the container's state alive until they leave (kref). */
  close(): void {
    this.closed = true;
  }

  // ---------------------------------------------------------------- used by VfioGroup

  /** vfio_container_attach_group (after DMA ownership was claimed by the caller). */
  attachGroup(g: VfioGroup): void {
    if (g.type === VFIO_NO_IOMMU && !this.caller.caps.sysRawio) fail("EPERM", "no-IOMMU groups need CAP_SYS_RAWIO");
    if (this.groups.length && this.noiommu !== (g.type === VFIO_NO_IOMMU)) fail("EPERM", "real and no-IOMMU groups cannot mix");
    g.claimOwnership(this);
    try {
      if (this.driver === "vfio-iommu-type1") (this.iommu as VfioIommuType1).attachGroup(g);
    } catch (e) {
      g.releaseOwnership();
      throw e;
    }
    this.noiommu = g.type === VFIO_NO_IOMMU;
    this.groups.unshift(g);
  }

  /** vfio_group_detach_container: cannot fail; the last group takes the backend with it. */
  detachGroup(g: VfioGroup): void {
    if (this.driver === "vfio-iommu-type1") (this.iommu as VfioIommuType1).detachGroup(g);
    g.releaseOwnership();
    this.groups.splice(this.groups.indexOf(g), 1);
    if (this.driver && this.groups.length === 0) {
      this.iommu?.release();
      this.iommu = null;
      this.driver = null;
    }
  }
}

/** open("/dev/vfio/vfio") by process p when the legacy container (not iommufd) serves it. */
export function openVfioContainer(host: Host, p: Process, opts?: VfioContainerOptions): VfioContainer {
  return new VfioContainer(host, p, opts);
}
