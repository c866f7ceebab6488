/**
 * Software-managed MSI doorbell mapping (drivers/iommu/dma-iommu.c's MSI cookie). On platforms whose
 * IOMMU translates MSI writes (ARM SMMU: an IOMMU_RESV_SW_MSI region), the owner of an unmanaged
 * domain reserves an IOVA window and calls iommu_get_msi_cookie(domain, base); when a device behind
 * the domain sets up an MSI, iommu_dma_prepare_msi() maps the doorbell's page at the next free page of
 * the window, once per doorbell page. x86 reports a hardware MSI window (IOMMU_RESV_MSI) instead: it
 * is simply excluded from the usable IOVAs and no cookie is taken.
 *
 * The doorbell mappings are not DMA mappings of the user: VFIO_IOMMU_UNMAP_DMA, even with
 * VFIO_DMA_UNMAP_FLAG_ALL, never touches them (seeds/001: "unmap from 0-(-1) of legacy entries
 * [must] not stumble over reserved entries").
 */
import { fail } from "../errno.js";
import type { Device } from "./device.js";
import { IOMMU_WRITE, type PagingDomain } from "./domain.js";
import { PAGE_SIZE } from "../mm/index.js";

export class MsiCookie {
  /** Next free IOVA of the window (cookie->msi_iova). */
  next: bigint;
  /** Doorbell page (physical byte address) -> the IOVA it is mapped at. */
  readonly pages = new Map<number, bigint>();
  constructor(readonly base: bigint) {
    this.next = base;
  }
}

const cookies = new WeakMap<PagingDomain, MsiCookie>();

/** iommu_get_msi_cookie: EEXIST if the domain already has one. */
export function iommuGetMsiCookie(domain: PagingDomain, base: bigint): void {
  if (cookies.has(domain)) fail("EEXIST", "the domain already has a DMA cookie");
  cookies.set(domain, new MsiCookie(base));
}

/** iommu_put_dma_cookie: drop the cookie and unmap the doorbell pages (domain free). */
export function iommuPutDmaCookie(domain: PagingDomain): void {
  const c = cookies.get(domain);
  if (!c) return;
  const shift = BigInt(domain.pgShift);
  for (const iova of c.pages.values()) domain.unmap(Number(iova >> shift), PAGE_SIZE >> domain.pgShift);
  cookies.delete(domain);
}

export function msiCookieOf(domain: PagingDomain): MsiCookie | undefined {
  return cookies.get(domain);
}

/**
 * iommu_dma_prepare_msi + iommu_dma_compose_msi_msg: the address a device behind `domain` must
 * write to reach the doorbell at physical address `doorbell`. Without a cookie MSIs are not
 * translated (the address is the doorbell itself); with one the doorbell page is mapped write-only
 * into the window (once) and the message address is its IOVA.
 */
export function iommuDmaPrepareMsi(domain: PagingDomain, doorbell: number): bigint {
  const c = cookies.get(domain);
  if (!c) return BigInt(doorbell);
  const page = doorbell - (doorbell % PAGE_SIZE);
  let iova = c.pages.get(page);
  if (iova === undefined) {
    iova = c.next;
    c.next += BigInt(PAGE_SIZE);
    domain.map(Number(iova >> BigInt(domain.pgShift)), page, PAGE_SIZE >> domain.pgShift, IOMMU_WRITE, true);
    c.pages.set(page, iova);
  }
  return iova + BigInt(doorbell % PAGE_SIZE);
}

/**
 * A device sets up an MSI (request_irq -> iommu_dma_prepare_msi on its group's current domain):
 * returns the address the device must write to ring `doorbell`.
 */
export function devicePrepareMsi(dev: Device, doorbell: number): bigint {
  const d = dev.group.domain;
  if (d && d.type === "paging") return iommuDmaPrepareMsi(d as PagingDomain, doorbell);
  return BigInt(doorbell);
}
