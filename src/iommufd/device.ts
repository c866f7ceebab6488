/** Device objects: bind, attach, replace, detach, with per-group sharing (device.c). */
import { failPoint } from "../fail-nth.js";
import { fail, IommuError } from "../errno.js";
import { attachGroup, claimDmaOwner, detachGroup, releaseDmaOwner, replaceGroup } from "../iommu/core.js";
import type { Device, IommuGroup } from "../iommu/device.js";
import { IommuCap } from "../iommu/driver.js";
import { isMockDevice } from "../iommu/drivers/mock.js";
import { iommuGetMsiCookie } from "../iommu/msi.js";
import type { IommufdCtx } from "./context.js";
import { hwptPagingAlloc, HwptPaging, type Hwpt } from "./hwpt.js";
import type { Ioas } from "./ioas.js";
import { IommufdObject } from "./object.js";
import { ObjType } from "./types.js";

/**
 * iommufd_attach_handle: made by the device that attaches (or replaces) the group's domain; I/O
 * page faults of every device of the group are queued against it and report its device.
 */
export interface AttachHandle {
  readonly idev: IommufdDevice;
}

/** iommufd_group: the context's record of an iommu_group with devices bound. */
export class IGroup {
  refs = 0;
  hwpt: Hwpt | null = null;
  /** The attach handle of the current group attachment (null while detached). */
  handle: AttachHandle | null = null;
  readonly devices: IommufdDevice[] = [];
  swMsiStart: bigint | null = null;
  constructor(readonly group: IommuGroup) {}
}

function pagingOf(h: Hwpt | null): HwptPaging | null {
  if (!h) return null;
  return h instanceof HwptPaging ? h : h.parent;
}

export class IommufdDevice extends IommufdObject {
  readonly type = ObjType.DEVICE;
  readonly enforceCacheCoherency: boolean;
  constructor(readonly ctx: IommufdCtx, readonly dev: Device, readonly igroup: IGroup) {
    super();
    this.enforceCacheCoherency = dev.driver.capable(dev, IommuCap.ENFORCE_CACHE_COHERENCY);
  }

  destroy(): void {
    releaseDmaOwner(this.dev);
    this.ctx.putGroup(this.igroup);
    if (!isMockDevice(this.dev)) this.ctx.fileClosed();
  }

  get attached(): boolean {
    return this.igroup.devices.includes(this);
  }

  /** iommufd_device_attach_reserved_iova */
  private attachReservedIova(hp: HwptPaging): void {
    const sw = hp.ioas.iopt.enforceDevResvRegions(this.dev, true);
    if (sw !== null) this.igroup.swMsiStart = sw;
    if (this.igroup.devices.length === 0) this.setupMsi(hp);
  }

  /**
   * iommufd_group_setup_msi: a group whose device reports a software-managed MSI window gets an
   * MSI cookie on each paging domain it uses, once per domain, so that the DMA-API MSI code can
   * map doorbells into the window when the device sets up interrupts (iommuDmaPrepareMsi).
   */
  private setupMsi(hp: HwptPaging): void {
    if (this.igroup.swMsiStart !== null && !hp.msiCookie) {
      iommuGetMsiCookie(hp.domain, this.igroup.swMsiStart);
      hp.msiCookie = true;
    }
  }

  /** iommufd_hw_pagetable_attach */
  hwptAttach(hwpt: Hwpt): void {
    const g = this.igroup;
    if (g.hwpt !== null && g.hwpt !== hwpt) fail("EINVAL", "the device's group is attached to another HWPT");
    const hp = pagingOf(hwpt);
    if (hp) this.attachReservedIova(hp);
    try {
      if (g.devices.length === 0) {
        if (hwpt.fault && this.dev.isPci && this.isVf) fail("EINVAL", "PCI VFs cannot take I/O page faults");
        attachGroup(hwpt.domain, g.group);
        g.hwpt = hwpt;
        g.handle = { idev: this };
      }
    } catch (e) {
      if (hp) hp.ioas.iopt.removeReserved(this.dev);
      throw e;
    }
    hwpt.users++;
    g.devices.push(this);
  }

  /** Whether this is a PCI virtual function (fault-capable HWPTs refuse VFs). */
  isVf = false;

  /** iommufd_hw_pagetable_detach: returns the HWPT whose reference the caller drops. */
  hwptDetach(): Hwpt {
    const g = this.igroup;
    const hwpt = g.hwpt as Hwpt;
    const i = g.devices.indexOf(this);
    if (i >= 0) g.devices.splice(i, 1);
    if (g.devices.length === 0) {
      detachGroup(g.group);
      if (hwpt.fault && g.handle) hwpt.fault.autoRespond(hwpt, g.handle);
      g.hwpt = null;
      g.handle = null;
    }
    const hp = pagingOf(hwpt);
    if (hp) hp.ioas.iopt.removeReserved(this.dev);
    return hwpt;
  }

  /** iommufd_device_do_replace */
  private doReplace(hwpt: Hwpt): Hwpt | null {
    const g = this.igroup;
    if (g.hwpt === null || !this.attached) fail("EINVAL", "device is not attached");
    if (hwpt === g.hwpt) return null;
    const old = g.hwpt;
    const hp = pagingOf(hwpt);
    const oldHp = pagingOf(old);
    if (hp) {
      if (!oldHp || hp.ioas !== oldHp.ioas) {
        try {
          for (const d of g.devices) hp.ioas.iopt.enforceDevResvRegions(d.dev, false);
        } catch (e) {
          for (const d of g.devices) hp.ioas.iopt.removeReserved(d.dev);
          throw e;
        }
      }
      this.setupMsi(hp);
    }
    try {
      // iommufd_hwpt_replace_device: turning IOPF on for the device refuses PCI VFs
      if (hwpt.fault && !old.fault && this.dev.isPci && this.isVf) fail("EINVAL", "PCI VFs cannot take I/O page faults");
      replaceGroup(hwpt.domain, g.group);
    } catch (e) {
      if (hp && (!oldHp || hp.ioas !== oldHp.ioas)) for (const d of g.devices) hp.ioas.iopt.removeReserved(d.dev);
      throw e;
    }
    const oldHandle = g.handle;
    g.handle = { idev: this };
    if (old.fault && oldHandle) old.fault.autoRespond(old, oldHandle);
    if (oldHp && (!hp || hp.ioas !== oldHp.ioas)) for (const d of g.devices) oldHp.ioas.iopt.removeReserved(d.dev);
    g.hwpt = hwpt;
    const n = g.devices.length;
    hwpt.users += n;
    old.users -= n - 1;
    return old;
  }

  /** iommufd_device_auto_get_domain: reuse a compatible auto HWPT of ioas or make one. */
  private autoGetDomain(ioas: Ioas, replace: boolean): { ptId: number; destroy: Hwpt | null } {
    for (const hp of ioas.hwpts) {
      if (!hp.autoDomain) continue;
      try {
        const destroy = replace ? this.doReplace(hp) : (this.hwptAttach(hp), null);
        return { ptId: hp.id, destroy };
      } catch (e) {
        if (e instanceof IommuError && e.code === "EINVAL") continue;
        throw e;
      }
    }
    const immediate = !replace;
    const hp = hwptPagingAlloc(this.ctx, ioas, this, 0, immediate, null);
    let destroy: Hwpt | null = null;
    if (!immediate) {
      try {
        destroy = this.doReplace(hp);
      } catch (e) {
        this.ctx.abortAndDestroy(hp);
        throw e;
      }
    }
    hp.autoDomain = true;
    this.ctx.publish(hp);
    return { ptId: hp.id, destroy };
  }

  /** iommufd_device_change_pt */
  private changePt(ptId: number, replace: boolean): number {
    // iommufd_get_object(IOMMUFD_OBJ_ANY): iommufd_should_fail() -> ENOENT
    failPoint("ENOENT", "iommufd_get_object");
    const obj = this.ctx.objects.get(ptId);
    if (!obj) fail("ENOENT", "no such object");
    let destroy: Hwpt | null;
    let out = ptId;
    if (obj.type === ObjType.HWPT_PAGING || obj.type === ObjType.HWPT_NESTED) {
      const h = obj as Hwpt;
      if (replace) destroy = this.doReplace(h);
      else {
        this.hwptAttach(h);
        destroy = null;
      }
    } else if (obj.type === ObjType.IOAS) {
      const r = this.autoGetDomain(obj as Ioas, replace);
      destroy = r.destroy;
      out = r.ptId;
    } else fail("EINVAL", "pt_id is not an IOAS or HWPT");
    if (destroy) this.ctx.hwptPut(destroy);
    return out;
  }

  /** iommufd_device_attach: returns the HWPT id in use. */
  attach(ptId: number): number {
    const out = this.changePt(ptId, false);
    this.users++;
    return out;
  }

  /** iommufd_device_replace */
  replace(ptId: number): number {
    return this.changePt(ptId, true);
  }

  /** iommufd_device_detach */
  detach(): void {
    const hwpt = this.hwptDetach();
    this.ctx.hwptPut(hwpt);
    this.users--;
  }
}

/** iommufd_device_bind */
export function deviceBind(ctx: IommufdCtx, dev: Device): IommufdDevice {
  if (!dev.driver.capable(dev, IommuCap.CACHE_COHERENCY)) fail("EINVAL", "device is not cache coherent");
  ctx.allocPoint("device");
  const igroup = ctx.getGroup(dev.group);
  try {
    // the insecure interrupt path only with allow_unsafe_interrupts (selftest mock devices are exempt)
    if (!isMockDevice(dev) && !ctx.isolatedMsi(dev.group) && !ctx.allowUnsafeInterrupts)
      fail("EPERM", "MSIs cannot be isolated on this platform; the allow_unsafe_interrupts module parameter would allow it");
    claimDmaOwner(dev, ctx);
  } catch (e) {
    ctx.putGroup(igroup);
    throw e;
  }
  const idev = new IommufdDevice(ctx, dev, igroup);
  ctx.addObject(idev);
  // the binding driver holds a user reference until unbind, and (unless it is a selftest mock
  // device) a reference on the context: closing /dev/iommu does not tear a bound device down
  idev.users++;
  if (!isMockDevice(dev)) ctx.fileOpened();
  return idev;
}

/** iommufd_device_unbind: the driver drops its reference and the object is destroyed. */
export function deviceUnbind(ctx: IommufdCtx, idev: IommufdDevice): void {
  idev.users--;
  ctx.removeObject(idev);
}
