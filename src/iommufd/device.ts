/** Device objects: bind, attach, replace, detach, with per-group sharing (device.c). */
import { failPoint } from "../fail-nth.js";
import { fail, IommuError } from "../errno.js";
import {
  attachDevicePasid,
  attachGroup,
  claimDmaOwner,
  detachDevicePasid,
  detachGroup,
  releaseDmaOwner,
  replaceDevicePasid,
  replaceGroup,
} from "../iommu/core.js";
import type { Device, IommuGroup } from "../iommu/device.js";
import { IommuCap } from "../iommu/driver.js";
import { isMockDevice } from "../iommu/drivers/mock.js";
import { iommuGetMsiCookie } from "../iommu/msi.js";
import type { IommufdCtx } from "./context.js";
import { hwptPagingAlloc, HwptPaging, type Hwpt } from "./hwpt.js";
import type { Ioas } from "./ioas.js";
import { IommufdObject } from "./object.js";
import { IOMMU_NO_PASID, ObjType } from "./types.js";
import type { Vdevice } from "./vdevice.js";

/**
 * iommufd_attach_handle: made by the device that attaches (or replaces) the group's domain; I/O
 * page faults of every device of the group are queued against it and report its device.
 */
export interface AttachHandle {
  readonly idev: IommufdDevice;
}

/**
 * iommufd_attach for a PASID other than IOMMU_NO_PASID [newer than 6.12]: the HWPT the group's
 * PASID is attached to, the handle faults of that PASID report, and the devices that attached it
 * (each holds a reference on the HWPT and on itself, as a RID attachment does).
 */
export interface PasidAttach {
  hwpt: Hwpt;
  handle: AttachHandle;
  readonly devices: IommufdDevice[];
}

/** iommufd_group: the context's record of an iommu_group with devices bound. */
export class IGroup {
  refs = 0;
  hwpt: Hwpt | null = null;
  /** The attach handle of the current group attachment (null while detached). */
  handle: AttachHandle | null = null;
  readonly devices: IommufdDevice[] = [];
  swMsiStart: bigint | null = null;
  /** igroup->pasid_attach without IOMMU_NO_PASID (the RID's attachment is hwpt/handle/devices). */
  readonly pasids = new Map<number, PasidAttach>();
  constructor(readonly group: IommuGroup) {}
}

/** hwpt->pasid_compat */
function pasidCompat(h: Hwpt): boolean {
  return h.pasidCompat;
}

/**
 * iommufd_hwpt_pasid_compat: a RID attachment of a HWPT without IOMMU_HWPT_ALLOC_PASID is refused
 * while any PASID of the group is attached; a PASID attachment needs a PASID-compatible HWPT and a
 * PASID-compatible RID attachment (when there is one). EINVAL.
 */
function checkPasidCompat(g: IGroup, hwpt: Hwpt, pasid: number): void {
  if (pasid === IOMMU_NO_PASID) {
    if (!pasidCompat(hwpt) && g.pasids.size) fail("EINVAL", "PASIDs are attached: the RID needs a PASID-compatible HWPT");
    return;
  }
  if (!pasidCompat(hwpt)) fail("EINVAL", "the HWPT was not allocated with IOMMU_HWPT_ALLOC_PASID");
  if (g.hwpt && !pasidCompat(g.hwpt)) fail("EINVAL", "the RID is attached to a HWPT that is not PASID-compatible");
}

function pagingOf(h: Hwpt | null): HwptPaging | null {
  if (!h) return null;
  return h instanceof HwptPaging ? h : h.parent;
}

export class IommufdDevice extends IommufdObject {
  readonly type = ObjType.DEVICE;
  readonly enforceCacheCoherency: boolean;
  /** idev->vdev: its vDEVICE [newer than 6.12] (at most one). */
  vdev: Vdevice | null = null;
  constructor(readonly ctx: IommufdCtx, readonly dev: Device, readonly igroup: IGroup) {
    super();
    this.enforceCacheCoherency = dev.driver.capable(dev, IommuCap.ENFORCE_CACHE_COHERENCY);
  }

  destroy(): void {
    // iommufd_device_pre_destroy: a vDEVICE left behind is destroyed with its ID tombstoned
    if (this.vdev) this.ctx.tombstone(this.vdev);
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

  /** iommufd_hw_pagetable_attach (IOMMU_NO_PASID) */
  hwptAttach(hwpt: Hwpt): void {
    const g = this.igroup;
    // the device is already in the attachment's device_array (newest; 6.12 has no such check)
    if (this.attached) fail("EBUSY", "the device is already attached");
    if (g.hwpt !== null && g.hwpt !== hwpt) fail("EINVAL", "the device's group is attached to another HWPT");
    const hp = pagingOf(hwpt);
    if (hp) this.attachReservedIova(hp);
    try {
      if (g.devices.length === 0) {
        checkPasidCompat(g, hwpt, IOMMU_NO_PASID);
        if (hwpt.fault) this.iopfEnable();
        try {
          attachGroup(hwpt.domain, g.group);
        } catch (e) {
          if (hwpt.fault) this.iopfDisable();
          throw e;
        }
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
  /** idev->iopf_enabled: attachments to fault-capable HWPTs that turned the device's IOPF on. */
  iopfEnabled = 0;

  /** iommufd_fault_iopf_enable: PCI VFs refused (EINVAL); the first user turns the feature on. */
  iopfEnable(): void {
    if (this.dev.isPci && this.isVf) fail("EINVAL", "PCI VFs cannot take I/O page faults");
    if (++this.iopfEnabled > 1) return;
    try {
      this.dev.driver.enableIopf?.(this.dev);
    } catch (e) {
      this.iopfEnabled--;
      throw e;
    }
  }

  /** iommufd_fault_iopf_disable: the last user turns it off. */
  iopfDisable(): void {
    if (this.iopfEnabled === 0) return;
    if (--this.iopfEnabled === 0) this.dev.driver.disableIopf?.(this.dev);
  }

  /** iommufd_hw_pagetable_detach: returns the HWPT whose reference the caller drops. */
  hwptDetach(): Hwpt {
    const g = this.igroup;
    const hwpt = g.hwpt as Hwpt;
    const i = g.devices.indexOf(this);
    if (i >= 0) g.devices.splice(i, 1);
    if (g.devices.length === 0) {
      detachGroup(g.group);
      if (hwpt.fault && g.handle) {
        hwpt.fault.autoRespond(hwpt, g.handle);
        g.handle.idev.iopfDisable();
      }
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
    // iommufd_hwpt_replace_device: IOPF is turned on for the new fault-capable HWPT first (PCI VFs
    // refused) and off for the old one after the switch
    const iopfOn = hwpt.fault !== null && old.fault === null;
    try {
      if (iopfOn && this.dev.isPci && this.isVf) fail("EINVAL", "PCI VFs cannot take I/O page faults");
      checkPasidCompat(g, hwpt, IOMMU_NO_PASID);
      if (iopfOn) this.iopfEnable();
      try {
        replaceGroup(hwpt.domain, g.group);
      } catch (e) {
        if (iopfOn) this.iopfDisable();
        throw e;
      }
    } catch (e) {
      if (hp && (!oldHp || hp.ioas !== oldHp.ioas)) for (const d of g.devices) hp.ioas.iopt.removeReserved(d.dev);
      throw e;
    }
    const oldHandle = g.handle;
    g.handle = { idev: this };
    if (old.fault && oldHandle) old.fault.autoRespond(old, oldHandle);
    if (old.fault !== null && hwpt.fault === null) (oldHandle?.idev ?? this).iopfDisable();
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

  // ---------------------------------------------------------------- PASID [newer than 6.12]

  /** The HWPT for a PASID attach/replace: a HWPT object, or EINVAL for anything else (ENOENT: none). */
  private pasidTarget(ptId: number): Hwpt | "ioas" {
    // iommufd_get_object(IOMMUFD_OBJ_ANY): iommufd_should_fail() -> ENOENT
    failPoint("ENOENT", "iommufd_get_object");
    const obj = this.ctx.objects.get(ptId);
    if (!obj) fail("ENOENT", "no such object");
    if (obj.type === ObjType.HWPT_PAGING || obj.type === ObjType.HWPT_NESTED) return obj as Hwpt;
    if (obj.type === ObjType.IOAS) return "ioas";
    fail("EINVAL", "pt_id is not an IOAS or HWPT");
  }

  /**
   * iommufd_hw_pagetable_attach at a PASID: EBUSY when this device already has the PASID attached
   * (whatever HWPT), EINVAL when the group's PASID is attached to another HWPT, then (first device
   * of the group) the PCI-VF fault rule, the PASID compatibility rules and the core's
   * iommu_attach_device_pasid.
   */
  private pasidHwptAttach(hwpt: Hwpt, pasid: number): void {
    const g = this.igroup;
    const pa = g.pasids.get(pasid);
    if (pa?.devices.includes(this)) fail("EBUSY", "the PASID is already attached");
    if (pa && pa.hwpt !== hwpt) fail("EINVAL", "the group's PASID is attached to another HWPT");
    if (!pa) {
      if (hwpt.fault && this.dev.isPci && this.isVf) fail("EINVAL", "PCI VFs cannot take I/O page faults");
      checkPasidCompat(g, hwpt, pasid);
      if (hwpt.fault) this.iopfEnable();
      try {
        attachDevicePasid(hwpt.domain, this.dev, pasid);
      } catch (e) {
        if (hwpt.fault) this.iopfDisable();
        throw e;
      }
      g.pasids.set(pasid, { hwpt, handle: { idev: this }, devices: [this] });
    } else pa.devices.push(this);
    hwpt.users++;
  }

  /**
   * IOAS at a PASID (iommufd_device_auto_get_domain): each automatic HWPT of the IOAS is tried and,
   * being never PASID-compatible, refuses with EINVAL; the fresh automatic HWPT the kernel would
   * then allocate (flags 0) refuses the same way before any mapping, after the EBUSY check. So:
   * EBUSY when this device has the PASID attached, else EINVAL; nothing is allocated.
   */
  private pasidIoas(pasid: number, replace: boolean): never {
    const pa = this.igroup.pasids.get(pasid);
    if (!replace && pa?.devices.includes(this)) fail("EBUSY", "the PASID is already attached");
    fail("EINVAL", "an automatic HWPT cannot be attached at a PASID");
  }

  /**
   * iommufd_device_attach(idev, pasid, pt_id): IOMMU_NO_PASID is the RID's attach; any other PASID
   * attaches a PASID-compatible HWPT there. Returns the HWPT id.
   */
  pasidAttach(ptId: number, pasid: number): number {
    if (pasid === IOMMU_NO_PASID) return this.attach(ptId);
    const t = this.pasidTarget(ptId);
    if (t === "ioas") this.pasidIoas(pasid, false);
    this.pasidHwptAttach(t, pasid);
    this.users++;
    return ptId;
  }

  /**
   * iommufd_device_replace(idev, pasid, pt_id): EINVAL when the PASID (or this device) is not
   * attached; the same HWPT is a no-op; on failure the old HWPT stays (the mock fails the second
   * set_dev_pasid of PASID 1024 with ENOMEM on purpose).
   */
  pasidReplace(ptId: number, pasid: number): number {
    if (pasid === IOMMU_NO_PASID) return this.replace(ptId);
    const t = this.pasidTarget(ptId);
    if (t === "ioas") this.pasidIoas(pasid, true);
    const g = this.igroup;
    const pa = g.pasids.get(pasid);
    if (!pa || !pa.devices.includes(this)) fail("EINVAL", "the PASID is not attached");
    const old = pa.hwpt;
    if (t === old) return ptId;
    if (t.fault && this.dev.isPci && this.isVf) fail("EINVAL", "PCI VFs cannot take I/O page faults");
    checkPasidCompat(g, t, pasid);
    const iopfOn = t.fault !== null && old.fault === null;
    if (iopfOn) this.iopfEnable();
    try {
      replaceDevicePasid(t.domain, this.dev, pasid);
    } catch (e) {
      if (iopfOn) this.iopfDisable();
      throw e;
    }
    const oldHandle = pa.handle;
    pa.handle = { idev: this };
    pa.hwpt = t;
    if (old.fault) old.fault.autoRespond(old, oldHandle);
    if (old.fault !== null && t.fault === null) oldHandle.idev.iopfDisable();
    // the device_array's references move to the new HWPT; the caller's put drops the last old one
    const n = pa.devices.length;
    t.users += n;
    old.users -= n - 1;
    this.ctx.hwptPut(old);
    return ptId;
  }

  /** iommufd_device_detach(idev, pasid): a PASID that is not attached is a silent no-op. */
  pasidDetach(pasid: number): void {
    if (pasid === IOMMU_NO_PASID) {
      if (this.attached) this.detach();
      return;
    }
    const g = this.igroup;
    const pa = g.pasids.get(pasid);
    if (!pa) return;
    const i = pa.devices.indexOf(this);
    if (i < 0) return;
    pa.devices.splice(i, 1);
    const hwpt = pa.hwpt;
    if (pa.devices.length === 0) {
      detachDevicePasid(this.dev, pasid);
      g.pasids.delete(pasid);
      if (hwpt.fault) {
        hwpt.fault.autoRespond(hwpt, pa.handle);
        pa.handle.idev.iopfDisable();
      }
    }
    this.ctx.hwptPut(hwpt);
    this.users--;
  }

  /** The PASIDs this device has attached (IOMMU_NO_PASID excluded), ascending. */
  attachedPasids(): number[] {
    const out: number[] = [];
    for (const [p, pa] of this.igroup.pasids) if (pa.devices.includes(this)) out.push(p);
    return out.sort((a, b) => a - b);
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
