/**
 * vIOMMU objects (viommu.c) [newer than 6.12]: the per-VM slice of a physical IOMMU, made by the
 * device's IOMMU driver on a NEST_PARENT paging HWPT. Nested HWPTs, vDEVICEs and vEVENTQs hang off
 * it; HWPT_INVALIDATE on it reaches the driver's vIOMMU invalidation; the driver reports events to
 * it (ViommuEventSink) and iommufd queues them on the vEVENTQ of their type.
 *
 * References: the vIOMMU holds its parent HWPT (destroying the parent is EBUSY); every nested HWPT
 * allocated on it, every vDEVICE and every vEVENTQ holds the vIOMMU (destroying it is EBUSY).
 */
import { fail } from "../errno.js";
import type { Device } from "../iommu/device.js";
import type { UserData, ViommuEventSink, ViommuOps } from "../iommu/driver.js";
import type { IommufdCtx } from "./context.js";
import type { HwptPaging } from "./hwpt.js";
import { IommufdObject } from "./object.js";
import { IOMMU_VIOMMU_TYPE_DEFAULT, ObjType, type IommuViommuAlloc } from "./types.js";
import type { Vdevice } from "./vdevice.js";
import type { Veventq } from "./veventq.js";

export class Viommu extends IommufdObject implements ViommuEventSink {
  readonly type = ObjType.VIOMMU;
  /** The driver's side (viommu->ops); null until the driver's init succeeded. */
  ops: ViommuOps | null = null;
  /** virt_id -> vDEVICE (viommu->vdevs). */
  readonly vdevs = new Map<bigint, Vdevice>();
  /** viommu->veventqs: at most one per type. */
  readonly veventqs: Veventq[] = [];
  /** Events reported while no vEVENTQ of their type existed (iommufd_viommu_report_event: EOPNOTSUPP). */
  dropped = 0;
  /** The mmap regions of the fd this vIOMMU's driver took (released with the vIOMMU). */
  private readonly mmapOffsets = new Set<bigint>();

  constructor(
    readonly ctx: IommufdCtx,
    /** The IOMMU_VIOMMU_TYPE_* it was allocated as. */
    readonly viommuType: number,
    /** The NEST_PARENT paging HWPT under it. */
    readonly hwpt: HwptPaging,
    /** viommu->iommu_dev: the device it was allocated for stands for its physical IOMMU. */
    private readonly iommuOf: Device,
  ) {
    super();
  }

  /** viommu->iommu_dev == __iommu_get_iommu_dev(dev): dev is behind the same physical IOMMU. */
  sameIommu(dev: Device): boolean {
    return dev.driver === this.iommuOf.driver && dev.port === this.iommuOf.port;
  }

  /** iommufd_viommu_find_veventq */
  veventqOf(type: number): Veventq | null {
    for (const q of this.veventqs) if (q.veventqType === type) return q;
    return null;
  }

  /** ViommuEventSink: iommufd_viommu_report_event, dropping the event when no vEVENTQ takes it. */
  report(veventqType: number, payload: Uint8Array): void {
    const q = this.veventqOf(veventqType);
    if (!q) {
      this.dropped++;
      return;
    }
    q.deliver(payload);
  }

  /** iommufd_viommu_report_event with its result: EOPNOTSUPP when there is no vEVENTQ of that type. */
  reportOrFail(veventqType: number, payload: Uint8Array): void {
    const q = this.veventqOf(veventqType);
    if (!q) {
      this.dropped++;
      fail("EOPNOTSUPP", "the vIOMMU has no vEVENTQ of that type");
    }
    q.deliver(payload);
  }

  /** iommufd_viommu_alloc_mmap for the driver: an offset of the iommufd fd. */
  allocMmap(length: number): bigint {
    const off = this.ctx.allocMmap(BigInt(length));
    this.mmapOffsets.add(off);
    return off;
  }

  /** iommufd_viommu_destroy_mmap */
  destroyMmap(offset: bigint): void {
    if (this.mmapOffsets.delete(offset)) this.ctx.destroyMmap(offset);
  }

  destroy(): void {
    // iommufd_viommu_destroy: the driver's destroy, then the parent reference
    this.ops?.destroy();
    this.ops = null;
    for (const off of this.mmapOffsets) this.ctx.destroyMmap(off);
    this.mmapOffsets.clear();
    this.hwpt.users--;
  }
}

/**
 * iommufd_viommu_alloc_ioctl, in the kernel's order: flags or type DEFAULT -> EOPNOTSUPP; dev_id
 * not a device -> ENOENT; a driver without vIOMMU support or not knowing the type -> EOPNOTSUPP;
 * hwpt_id not a paging HWPT -> ENOENT; not a NEST_PARENT -> EINVAL; then the driver's init with the
 * driver data (in/out; data_len 0: none). A failure leaves nothing behind.
 */
export function viommuAlloc(ctx: IommufdCtx, cmd: IommuViommuAlloc): IommuViommuAlloc {
  if (cmd.flags || cmd.type === IOMMU_VIOMMU_TYPE_DEFAULT) fail("EOPNOTSUPP", "flags must be 0 and type not DEFAULT");
  const idev = ctx.getDevice(cmd.dev_id);
  const drv = idev.dev.driver;
  if (!drv.viommuAlloc) fail("EOPNOTSUPP", "the device's IOMMU driver has no vIOMMU");
  if (drv.viommuTypeSupported && !drv.viommuTypeSupported(idev.dev, cmd.type)) fail("EOPNOTSUPP", "vIOMMU type not supported by the driver");
  const hwpt = ctx.getHwptPaging(cmd.hwpt_id);
  if (!hwpt.nestParent) fail("EINVAL", "the HWPT is not a nesting parent");
  ctx.allocPoint("viommu");
  const id = ctx.reserveId(false);
  const v = new Viommu(ctx, cmd.type, hwpt, idev.dev);
  v.id = id;
  hwpt.users++;
  const data: UserData = {
    type: cmd.type,
    len: cmd.data_len,
    read: (n) => ctx.readUser(cmd.data_uptr, n),
    write: (b) => ctx.writeUser(cmd.data_uptr, b.subarray(0, Math.min(b.length, cmd.data_len))),
  };
  try {
    v.ops = drv.viommuAlloc(idev.dev, hwpt.domain, cmd.type, cmd.data_len ? data : null, v);
  } catch (e) {
    ctx.abortAndDestroy(v);
    throw e;
  }
  ctx.publish(v);
  return { ...cmd, out_viommu_id: id };
}
