/**
 * The IOMMU core's group operations that iommufd and VFIO use: DMA ownership claims and
 * attaching, replacing and detaching a group's domain (drivers/iommu/iommu.c semantics).
 */
import { fail } from "../errno.js";
import type { Device, IommuGroup } from "./device.js";
import { BlockedDomain, type IommuDomain } from "./domain.js";
import type { IommuDriver } from "./driver.js";

/** iommu_device_claim_dma_owner: EPERM when another owner holds the group. */
export function claimDmaOwner(dev: Device, owner: unknown): void {
  const g = dev.group;
  if (g.ownerCnt) {
    if (g.owner !== owner) fail("EPERM", "the device's group is owned by another user");
    g.ownerCnt++;
    return;
  }
  if (g.domain !== null) fail("EBUSY", "the group is attached to a non-default domain");
  g.owner = owner;
  g.ownerCnt = 1;
}

/** iommu_group_claim_dma_owner (VFIO group path): EPERM if owned at all. */
export function claimGroupDmaOwner(g: IommuGroup, owner: unknown): void {
  if (g.ownerCnt) fail("EPERM", "the group is already owned");
  if (g.domain !== null) fail("EBUSY", "the group is attached to a non-default domain");
  g.owner = owner;
  g.ownerCnt = 1;
}

export function releaseDmaOwner(dev: Device): void {
  const g = dev.group;
  if (g.ownerCnt <= 0) return;
  g.ownerCnt--;
  if (g.ownerCnt === 0) {
    g.owner = null;
    detachGroup(g);
  }
}

/**
 * iommu_device_use_default_domain: a kernel driver that does DMA through the DMA API binds to dev.
 * It counts as a user of the group without an owner, so iommufd and VFIO then cannot claim the
 * group (EPERM); and it cannot bind while user space owns the group or it sits on another domain
 * (EBUSY).
 */
export function useDefaultDomain(dev: Device): void {
  const g = dev.group;
  if (g.ownerCnt && (g.domain !== null || g.owner !== null)) fail("EBUSY", "the group's DMA is owned by user space");
  g.ownerCnt++;
}

/** iommu_device_unuse_default_domain: the kernel driver unbinds. */
export function unuseDefaultDomain(dev: Device): void {
  const g = dev.group;
  if (g.ownerCnt > 0 && g.owner === null) g.ownerCnt--;
}

export function releaseGroupDmaOwner(g: IommuGroup): void {
  g.ownerCnt = 0;
  g.owner = null;
  detachGroup(g);
}

/** The driver's blocking domain (one per driver, as the kernel keeps a static one). */
const blockedDomains = new WeakMap<IommuDriver, BlockedDomain>();
export function blockedDomainOf(drv: IommuDriver): BlockedDomain {
  let b = blockedDomains.get(drv);
  if (!b) {
    b = new BlockedDomain(drv);
    blockedDomains.set(drv, b);
  }
  return b;
}

/**
 * Switch every device of the group to domain (attach_dev). When a device refuses, the devices
 * already switched go back to the group's previous domain (its blocking domain when it had none),
 * as __iommu_group_set_domain_internal does, and the error stands.
 */
function setGroupDomain(g: IommuGroup, domain: IommuDomain): void {
  const done: Device[] = [];
  try {
    for (const d of g.devices) {
      if (d.driver !== domain.driver) fail("EINVAL", "domain belongs to another IOMMU driver");
      domain.driver.attachDev(domain, d);
      done.push(d);
    }
  } catch (e) {
    for (const d of done) d.driver.attachDev(g.domain ?? blockedDomainOf(d.driver), d);
    throw e;
  }
  g.domain = domain;
}

/** iommu_attach_group: EBUSY if the group already has a user domain. */
export function attachGroup(domain: IommuDomain, g: IommuGroup): void {
  if (g.domain !== null && g.domain !== domain) fail("EBUSY", "group already attached");
  setGroupDomain(g, domain);
}

/** iommu_replace_group_handle: switch atomically; on failure the old domain stays. */
export function replaceGroup(domain: IommuDomain, g: IommuGroup): void {
  if (g.domain === domain) return;
  setGroupDomain(g, domain);
}

/** iommu_detach_group: back to the blocking domain (attaching it cannot fail). */
export function detachGroup(g: IommuGroup): void {
  if (g.domain === null) return;
  for (const d of g.devices) d.driver.attachDev(blockedDomainOf(d.driver), d);
  g.domain = null;
}

// ---------------------------------------------------------------------------------- PASID attach

/**
 * The group's PASID attachments (group->pasid_array without IOMMU_NO_PASID): pasid -> domain.
 * Kept beside the group (the group class is the lead's contract) in a WeakMap, so a group that
 * goes away takes its table with it.
 */
const groupPasids = new WeakMap<IommuGroup, Map<number, IommuDomain>>();

function pasidTable(g: IommuGroup): Map<number, IommuDomain> {
  let t = groupPasids.get(g);
  if (!t) {
    t = new Map();
    groupPasids.set(g, t);
  }
  return t;
}

/** IOMMU_NO_PASID: requests without a PASID use the RID's domain (group.domain). */
const NO_PASID = 0;

/** dev->iommu->max_pasids: 0 for a device without PASID support. */
function maxPasids(d: Device): number {
  return d.maxPasidLog2 > 0 ? 2 ** d.maxPasidLog2 : 0;
}

/** Checks iommu_attach_device_pasid and iommu_replace_device_pasid share, in the kernel's order. */
function checkPasidAttach(domain: IommuDomain, dev: Device, pasid: number): void {
  const drv = dev.driver;
  if (!drv.setDevPasid || !drv.removeDevPasid) fail("EOPNOTSUPP", "the IOMMU driver cannot attach PASIDs");
  if (domain.driver !== drv || pasid === NO_PASID) fail("EINVAL", "domain of another driver, or IOMMU_NO_PASID");
}

/**
 * __iommu_set_group_pasid: set_dev_pasid on every PASID-capable device of the group (devices
 * without PASID support cannot issue PASID requests and are skipped). When one fails, the devices
 * already switched go back to `old` (or are blocked when there was none) and the error stands.
 */
function setGroupPasid(domain: IommuDomain, g: IommuGroup, pasid: number, old: IommuDomain | null): void {
  const drv = domain.driver;
  const setDev = drv.setDevPasid as NonNullable<typeof drv.setDevPasid>;
  const done: Device[] = [];
  try {
    for (const d of g.devices) {
      if (maxPasids(d) === 0) continue;
      setDev.call(drv, domain, d, pasid);
      done.push(d);
    }
  } catch (e) {
    for (const d of done) {
      if (old) old.driver.setDevPasid?.(old, d, pasid);
      else d.driver.removeDevPasid?.(d, pasid);
    }
    throw e;
  }
}

/**
 * iommu_attach_device_pasid: make `domain` translate the group's requests tagged `pasid`.
 * EOPNOTSUPP without driver support; EINVAL for another driver's domain, IOMMU_NO_PASID, or a
 * PASID at or above a PASID-capable device's limit (devices without PASID support are not
 * checked: upstream "Skip PASID validation for devices without PASID capability"); EBUSY when
 * the PASID is already attached. A driver failure leaves nothing attached.
 */
export function attachDevicePasid(domain: IommuDomain, dev: Device, pasid: number): void {
  checkPasidAttach(domain, dev, pasid);
  const g = dev.group;
  for (const d of g.devices) {
    const max = maxPasids(d);
    if (max > 0 && pasid >= max) fail("EINVAL", "PASID beyond the device's PASID width");
  }
  const t = pasidTable(g);
  if (t.has(pasid)) fail("EBUSY", "the PASID is already attached");
  setGroupPasid(domain, g, pasid, null);
  t.set(pasid, domain);
}

/**
 * iommu_replace_device_pasid: switch an attached PASID to `domain` (EINVAL when nothing is
 * attached there); on a driver failure the old domain stays.
 */
export function replaceDevicePasid(domain: IommuDomain, dev: Device, pasid: number): void {
  checkPasidAttach(domain, dev, pasid);
  const t = pasidTable(dev.group);
  const cur = t.get(pasid);
  if (!cur) fail("EINVAL", "the PASID is not attached");
  if (cur !== domain) setGroupPasid(domain, dev.group, pasid, cur);
  t.set(pasid, domain);
}

/** iommu_detach_device_pasid: the PASID's requests are blocked again (remove_dev_pasid). */
export function detachDevicePasid(dev: Device, pasid: number): void {
  const g = dev.group;
  const t = groupPasids.get(g);
  if (!t?.has(pasid)) return;
  for (const d of g.devices) if (maxPasids(d) > 0) d.driver.removeDevPasid?.(d, pasid);
  t.delete(pasid);
}

/** iommu_attach_handle_get's domain: what translates the group's `pasid` (NO_PASID: the RID's). */
export function groupPasidDomain(g: IommuGroup, pasid: number): IommuDomain | null {
  if (pasid === NO_PASID) return g.domain;
  return groupPasids.get(g)?.get(pasid) ?? null;
}

/** The PASIDs (other than NO_PASID) attached in the group, ascending. */
export function groupPasidsAttached(g: IommuGroup): number[] {
  const t = groupPasids.get(g);
  return t ? [...t.keys()].sort((a, b) => a - b) : [];
}
