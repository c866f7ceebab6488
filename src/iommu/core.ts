/**
 * The IOMMU core's group operations that iommufd and VFIO use: DMA ownership claims and
 * attaching, replacing and detaching a group's domain (drivers/iommu/iommu.c semantics).
 */
import { fail } from "../errno.js";
import type { Device, IommuGroup } from "./device.js";
import type { IommuDomain } from "./domain.js";

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
    g.domain = null;
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
  g.domain = null;
}

/** Ask every device of the group whether it accepts domain (attach_dev). */
function setGroupDomain(g: IommuGroup, domain: IommuDomain): void {
  for (const d of g.devices) {
    if (d.driver !== domain.driver) fail("EINVAL", "domain belongs to another IOMMU driver");
    domain.driver.attachDev(domain, d);
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
  const old = g.domain;
  try {
    setGroupDomain(g, domain);
  } catch (e) {
    g.domain = old;
    throw e;
  }
}

/** iommu_detach_group: back to the blocking domain. */
export function detachGroup(g: IommuGroup): void {
  g.domain = null;
}
