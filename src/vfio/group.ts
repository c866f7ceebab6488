/**
 * VFIO groups (/dev/vfio/<N>, drivers/vfio/group.c) as used with a legacy container, and the device
 * files opened from them.
 *
 * Three kinds, as enum vfio_group_type plus the iommu-backed mdev of seeds/004:
 *  - VFIO_IOMMU: the devices of one physical IOMMU group (vfio-pci and friends);
 *  - VFIO_EMULATED_IOMMU: an mdev with no IOMMU behind it; type1 gives it no domain and its vendor
 *    driver pins pages through vfio_pin_pages();
 *  - an mdev that wraps a PF/VF (VFIO_IOMMU with `iommuDevice` set): its own group is a fresh
 *    singleton, but DMA goes through the PF/VF's IOMMU group, possibly shared with other devices.
 *  - VFIO_NO_IOMMU: a fake group for a device without an IOMMU (needs CAP_SYS_RAWIO).
 *
 * DMA ownership: joining a container claims the (backing) IOMMU group for that container, as
 * iommu_group_claim_dma_owner does in 6.12: EPERM if another owner (another container, iommufd, a
 * kernel driver) has it, EBUSY if it is attached to a domain. Two VFIO groups over the same IOMMU
 * group share the claim when they are in the same container (the owner is the container), so a
 * wrapped PF/VF mdev and its siblings can be assigned to one VM but not to two.
 */
import { fail } from "../errno.js";
import { IommuGroup, type Device } from "../iommu/device.js";
import { backingGroup, VFIO_EMULATED_IOMMU, VFIO_IOMMU, VFIO_NO_IOMMU, type VfioGroupType } from "./domain.js";
import type { VfioContainer } from "./container.js";
import { VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE, VFIO_PIN_PAGES_MAX_ENTRIES, type VfioGroupStatus } from "./uapi.js";
import type { Process } from "../mm/index.js";
import type { Type1Device, VfioIommuType1 } from "./type1-container.js";

/** What a VFIO driver (vfio-pci, an mdev vendor driver) provides for one device. */
export interface VfioDeviceOps {
  /** vfio_device_ops.dma_unmap (emulated devices): unpin everything pinned in [iova, iova+length). */
  dmaUnmap?(iova: bigint, length: bigint): void;
}

/** A device registered with VFIO (struct vfio_device). */
export class VfioDevice {
  /** Open device files. */
  openCount = 0;
  /** What the type1 backend calls on unmap while the device is open (vfio_iommu_type1_register_device). */
  readonly registration: Type1Device;
  constructor(
    readonly group: VfioGroup,
    readonly name: string,
    readonly ops: VfioDeviceOps = {},
  ) {
    this.registration = {
      iommuGroup: group.iommuGroup,
      dmaUnmap: (iova, length) => ops.dmaUnmap?.(iova, length),
    };
  }

  private type1(): VfioIommuType1 {
    const c = this.group.container;
    if (!c || !c.iommu) fail("ENOTTY", "the device's container has no type1 IOMMU");
    return c.iommu;
  }

  /**
   * vfio_pin_pages (called by the device's driver while it is open): pin npage pages of IOVA from
   * iova for the device, returning their page frame numbers.
   */
  pinPages(iova: bigint, npage: number, prot: number): number[] {
    if (!npage || this.openCount === 0 || !this.ops.dmaUnmap) fail("EINVAL", "device not open, no dma_unmap, or npage 0");
    if (npage > VFIO_PIN_PAGES_MAX_ENTRIES) fail("E2BIG", "more than VFIO_PIN_PAGES_MAX_ENTRIES pages");
    return this.type1().pinPages(this.group.iommuGroup, iova, npage, prot);
  }

  /** vfio_unpin_pages */
  unpinPages(iova: bigint, npage: number): void {
    if (this.openCount === 0 || !this.ops.dmaUnmap) return;
    this.type1().unpinPages(iova, npage);
  }

  /**
   * vfio_dma_rw (called by the device's driver while it is open): copy between IOVA space and
   * `data` through the mapping owner's memory, without pinning. `from` is the calling context: a
   * process (which may only reach its own mappings) or null for a kernel thread.
   */
  dmaRw(iova: bigint, data: Uint8Array, write: boolean, from: Process | null): void {
    if (data.length <= 0 || this.openCount === 0) fail("EINVAL", "device not open or empty buffer");
    this.type1().dmaRw(iova, data, write, from);
  }
}

let nextMinor = 0;

/** struct vfio_group */
export class VfioGroup {
  readonly minor = nextMinor++;
  readonly devices: VfioDevice[] = [];
  container: VfioContainer | null = null;
  /** 1 for the group's membership in the container, +1 per open device file. */
  containerUsers = 0;
  openedFile: VfioGroupFile | null = null;
  private owned: IommuGroup | null = null;

  private constructor(
    readonly iommuGroup: IommuGroup,
    readonly type: VfioGroupType,
    readonly iommuDevice: Device | null,
  ) {}

  /** The VFIO group of a physical IOMMU group, with one VFIO device per member device. */
  static forIommuGroup(g: IommuGroup, ops: (dev: Device) => VfioDeviceOps = () => ({})): VfioGroup {
    const vg = new VfioGroup(g, VFIO_IOMMU, null);
    for (const d of g.devices) vg.devices.push(new VfioDevice(vg, d.name, ops(d)));
    return vg;
  }

  /**
   * An mdev's group: a new singleton IOMMU group holding only the mdev. Without `iommuDevice` it is
   * emulated (VFIO_EMULATED_IOMMU); with one it is backed by that PF/VF's IOMMU group (seeds/004).
   */
  static mdev(name: string, opts: { iommuDevice?: Device; ops?: VfioDeviceOps } = {}): VfioGroup {
    const vg = new VfioGroup(new IommuGroup(), opts.iommuDevice ? VFIO_IOMMU : VFIO_EMULATED_IOMMU, opts.iommuDevice ?? null);
    vg.devices.push(new VfioDevice(vg, name, opts.ops ?? {}));
    return vg;
  }

  /** A no-IOMMU group (/dev/vfio/noiommu-<N>) for a device without an IOMMU. */
  static noIommu(name: string): VfioGroup {
    const vg = new VfioGroup(new IommuGroup(), VFIO_NO_IOMMU, null);
    vg.devices.push(new VfioDevice(vg, name));
    return vg;
  }

  /** The IOMMU group whose DMA ownership and attachment this VFIO group uses. */
  get backing(): IommuGroup {
    return backingGroup(this);
  }

  /** open("/dev/vfio/<N>"): one open at a time (EBUSY); no-IOMMU groups need CAP_SYS_RAWIO. */
  open(p: Process): VfioGroupFile {
    if (this.type === VFIO_NO_IOMMU && !p.caps.sysRawio) fail("EPERM", "no-IOMMU groups need CAP_SYS_RAWIO");
    if (this.openedFile) fail("EBUSY", "the group is already open");
    this.openedFile = new VfioGroupFile(this, p);
    return this.openedFile;
  }

  /** iommu_group_claim_dma_owner with the container as owner (shared within one container). */
  claimOwnership(owner: VfioContainer): void {
    if (this.type === VFIO_EMULATED_IOMMU || this.type === VFIO_NO_IOMMU) return;
    const g = this.backing;
    if (g.ownerCnt) {
      if (g.owner !== owner) fail("EPERM", "the IOMMU group is owned by someone else");
      g.ownerCnt++;
    } else {
      if (g.domain !== null) fail("EBUSY", "the IOMMU group is attached to a non-default domain");
      g.owner = owner;
      g.ownerCnt = 1;
    }
    this.owned = g;
  }

  /** iommu_group_release_dma_owner: the last owner's release returns the group to its default domain. */
  releaseOwnership(): void {
    const g = this.owned;
    if (!g) return;
    this.owned = null;
    if (--g.ownerCnt === 0) {
      g.owner = null;
      g.domain = null;
    }
  }

  /** vfio_group_detach_container */
  detachContainer(): void {
    const c = this.container;
    if (!c) return;
    c.detachGroup(this);
    this.container = null;
    this.containerUsers = 0;
  }
}

/** An open group fd. */
export class VfioGroupFile {
  closed = false;
  /** Device files opened from this group keep the group file alive. */
  private deviceFiles = 0;
  constructor(
    readonly group: VfioGroup,
    public caller: Process,
  ) {}

  private check(): void {
    if (this.closed) fail("EBADF", "the group fd is closed");
  }

  /** VFIO_GROUP_GET_STATUS: CONTAINER_SET|VIABLE in a container; VIABLE if nobody owns the DMA. */
  getStatus(status: VfioGroupStatus): VfioGroupStatus {
    this.check();
    if (status.argsz < 8) fail("EINVAL", "argsz below 8");
    const g = this.group;
    let flags = 0;
    if (g.container) flags |= VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
    else if (!g.iommuGroup.ownerCnt) flags |= VFIO_GROUP_FLAGS_VIABLE;
    return { ...status, flags };
  }

  /** VFIO_GROUP_SET_CONTAINER: EINVAL if already in one, EBADF for a closed container fd. */
  setContainer(container: VfioContainer): void {
    this.check();
    if (container.closed) fail("EBADF", "not an open container fd");
    const g = this.group;
    if (g.container) fail("EINVAL", "the group is already in a container");
    container.as(this.caller, (c) => c.attachGroup(g));
    g.container = container;
    g.containerUsers = 1;
  }

  /** VFIO_GROUP_UNSET_CONTAINER: EINVAL without a container, EBUSY while device files are open. */
  unsetContainer(): void {
    this.check();
    const g = this.group;
    if (!g.container) fail("EINVAL", "the group is not in a container");
    if (g.containerUsers !== 1) fail("EBUSY", "device files are open");
    g.container.as(this.caller, () => g.detachContainer());
  }

  /** VFIO_GROUP_GET_DEVICE_FD: ENODEV for an unknown name; EINVAL before the container's IOMMU is set. */
  getDeviceFd(name: string): VfioDeviceFile {
    this.check();
    const g = this.group;
    const dev = g.devices.find((d) => d.name === name);
    if (!dev) fail("ENODEV", `no device ${name} in the group`);
    if (!g.container) fail("EINVAL", "the group is not in a container");
    if (!g.container.driver) fail("EINVAL", "VFIO_SET_IOMMU has not been done");
    if (g.type === VFIO_NO_IOMMU && !this.caller.caps.sysRawio) fail("EPERM", "no-IOMMU devices need CAP_SYS_RAWIO");
    g.containerUsers++;
    this.deviceFiles++;
    dev.openCount++;
    if (dev.openCount === 1 && dev.ops.dmaUnmap && g.container.iommu) g.container.iommu.registerDevice(dev.registration);
    return new VfioDeviceFile(this, dev);
  }

  /** close(): leaves the container (once the device files are closed too). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.maybeRelease();
  }

  /** @internal */
  deviceClosed(): void {
    this.deviceFiles--;
    this.group.containerUsers--;
    this.maybeRelease();
  }

  private maybeRelease(): void {
    if (!this.closed || this.deviceFiles) return;
    const g = this.group;
    if (g.container) g.container.as(this.caller, () => g.detachContainer());
    g.openedFile = null;
  }
}

/** An open device fd (from VFIO_GROUP_GET_DEVICE_FD). */
export class VfioDeviceFile {
  closed = false;
  constructor(
    readonly groupFile: VfioGroupFile,
    readonly device: VfioDevice,
  ) {}

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const dev = this.device;
    dev.openCount--;
    const c = dev.group.container;
    if (dev.openCount === 0 && c?.iommu) c.iommu.unregisterDevice(dev.registration);
    this.groupFile.deviceClosed();
  }
}
