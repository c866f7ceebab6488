/**
 * vDEVICE objects (viommu.c) [newer than 6.12]: a device's virtual ID (vSID, vDeviceID, vRID) on a
 * vIOMMU, the ID the guest knows it by. One per device; one per virtual ID on a vIOMMU. It holds
 * the vIOMMU. When its device goes away first (unbind, or the selftest device is destroyed), the
 * vDEVICE is destroyed with it and its ID is tombstoned: DESTROY then answers ENOENT.
 */
import { fail } from "../errno.js";
import type { IommufdCtx } from "./context.js";
import type { IommufdDevice } from "./device.js";
import { IommufdObject } from "./object.js";
import { ObjType, type IommuVdeviceAlloc } from "./types.js";
import type { Viommu } from "./viommu.js";

export class Vdevice extends IommufdObject {
  readonly type = ObjType.VDEVICE;
  /** The driver's vdeviceInit ran (its vdeviceDestroy is then owed). */
  inited = false;
  constructor(
    readonly viommu: Viommu,
    readonly idev: IommufdDevice,
    readonly virtId: bigint,
  ) {
    super();
  }

  /** iommufd_vdevice_abort / _destroy */
  destroy(): void {
    if (this.inited) this.viommu.ops?.vdeviceDestroy?.(this.idev.dev);
    this.inited = false;
    if (this.viommu.vdevs.get(this.virtId) === this) this.viommu.vdevs.delete(this.virtId);
    this.viommu.users--;
    if (this.idev.vdev === this) this.idev.vdev = null;
  }
}

/**
 * iommufd_vdevice_alloc_ioctl, in the kernel's order: viommu_id not a vIOMMU -> ENOENT; dev_id not
 * a device -> ENOENT; the device behind another IOMMU -> EINVAL; the device already has a vDEVICE
 * -> EEXIST; the virtual ID taken on this vIOMMU -> EEXIST; then the driver's vdevice init.
 */
export function vdeviceAlloc(ctx: IommufdCtx, cmd: IommuVdeviceAlloc): IommuVdeviceAlloc {
  // virt_id indexes an xarray: any u64 fits an unsigned long on 64-bit
  const viommu = ctx.getViommu(cmd.viommu_id);
  const idev = ctx.getDevice(cmd.dev_id);
  if (!viommu.sameIommu(idev.dev)) fail("EINVAL", "the device is behind another IOMMU than the vIOMMU");
  if (idev.vdev) fail("EEXIST", "the device already has a vDEVICE");
  ctx.allocPoint("vdevice");
  const id = ctx.reserveId(false);
  const vdev = new Vdevice(viommu, idev, cmd.virt_id);
  vdev.id = id;
  viommu.users++;
  idev.vdev = vdev;
  try {
    if (viommu.vdevs.has(cmd.virt_id)) fail("EEXIST", "the virtual ID is taken on this vIOMMU");
    viommu.vdevs.set(cmd.virt_id, vdev);
    if (viommu.ops?.vdeviceInit) {
      viommu.ops.vdeviceInit(idev.dev, cmd.virt_id);
      vdev.inited = true;
    }
  } catch (e) {
    ctx.abortAndDestroy(vdev);
    throw e;
  }
  ctx.publish(vdev);
  return { ...cmd, out_vdevice_id: id };
}
