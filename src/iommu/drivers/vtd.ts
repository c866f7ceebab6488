/**
 * The Linux 6.12 intel-iommu driver (drivers/iommu/intel/{iommu,pasid,nested,cache,prq}.c) in
 * scalable mode, over one VtdUnit (hw/vtd/unit.ts): everything it does to the hardware it does
 * through the unit's registers and through structures in simulated memory — the root table,
 * scalable-mode context entries, per-device PASID directories and tables, page tables (one
 * PageTableEngine per domain), the invalidation queue (256 descriptors of 256 bits, a wait
 * descriptor with status write after every submission) and the page request queue.
 *
 * What it models, with the kernel's function in brackets:
 * - init (init_dmars): queued invalidation, root table (SRTP then global context / PASID-cache /
 *   IOTLB flushes), page request queue, fault and page-request interrupts, translation enable.
 * - devices (intel_iommu_probe_device): probeDevice() makes a Device with its source-id, the x86
 *   MSI window as an IOMMU_RESV_MSI region, a PASID table sized as the kernel sizes it, and the
 *   scalable-mode context entry (PASIDE, DTE, RID_PASID 0).
 * - domains: user paging domains are second stage (intel_iommu_domain_alloc_user: "Do not use
 *   first stage for user domain translation"), 5-level when the unit has it; domainAllocPaging is
 *   the UNMANAGED domain of iommu_paging_domain_alloc (second stage too); domainAllocDma the
 *   DMA-API default domain, first stage. Nested domains take IOMMU_HWPT_DATA_VTD_S1.
 * - attach: the RID's PASID entry (RID_PASID 0) is torn down and written again (first-stage,
 *   second-stage or nested) with the invalidations the kernel issues; DIDs are the lowest free
 *   from 2; cache tags decide every later flush (cache.c).
 * - unmap flushes the IOTLB by cache tag: strict (the default) at once, page-selective when the
 *   range's mask fits CAP.MAMV, else domain-selective; first-stage and nested domains with
 *   PASID-based IOTLB invalidation. `lazy` (the DMA-API flush queue) defers to flushLazy().
 * - dirty tracking (SSADE per PASID entry) and read-and-clear through the engine, followed by
 *   the IOTLB sync iommufd does after clearing.
 * - page requests (prq.c): the PRQ thread reports each request to the domain's iopfHandler;
 *   pageResponse() answers with a page group response.
 * - faults (dmar_fault): the fault recording registers are read and cleared into faultLog.
 *
 * Not modelled: legacy mode, PCI DMA aliases, kdump table copying, the identity and SVA domains,
 * RMRRs, device-TLB contents (ATS devices only get the kernel's device-TLB descriptors).
 */
import { assert, fail } from "../../errno.js";
import type { HwMemory } from "../../hw/memory.js";
import { PageTableEngine } from "../../hw/pagetable/engine.js";
import {
  ACC_READ,
  ACC_WRITE,
  PT_ACCESSED,
  PT_CACHE,
  PT_DIRTY,
  PT_EXEC,
  PT_READ,
  PT_USER,
  PT_WRITE,
  vtdFirstStage,
  vtdSecondStage,
} from "../../hw/pagetable/format.js";
import { PasidDirEntry, PasidEntry, Pgtt, SmContextEntry } from "../../hw/vtd/tables.js";
import { Fsts, Gcmd, Prs, VtdReg, type VtdUnit } from "../../hw/vtd/unit.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import { Device, IommuGroup, PCI_PASID_CTRL_ENABLE, ResvType, type ResvRegion } from "../device.js";
import { IOMMU_READ, IOMMU_WRITE, NestedDomain, PagingDomain, type IommuDomain, type IopfFault } from "../domain.js";
import { IommuCap, type HwInfo, type IommuDriver, type UserData, type UserDataArray } from "../driver.js";

// ---- uAPI values this driver speaks (include/uapi/linux/iommufd.h) ---------------------------------
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
export const IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0;
export const IOMMU_HWPT_DATA_VTD_S1 = 1;
export const IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0;
export const IOMMU_VTD_S1_SRE = 1 << 0;
export const IOMMU_VTD_S1_EAFE = 1 << 1;
export const IOMMU_VTD_S1_WPE = 1 << 2;
export const IOMMU_VTD_INV_FLAGS_LEAF = 1 << 0;
const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
const IOMMU_HWPT_ALLOC_PASID = 1 << 3;
/** sizeof(struct iommu_hw_info_vtd), struct iommu_hwpt_vtd_s1, struct iommu_hwpt_vtd_s1_invalidate. */
export const IOMMU_HW_INFO_VTD_SIZE = 24;
export const IOMMU_HWPT_VTD_S1_SIZE = 24;
export const IOMMU_HWPT_VTD_S1_INVALIDATE_SIZE = 24;
/** IOMMU_PAGE_RESP_* (enum iommu_page_response_code). */
export const IOMMU_PAGE_RESP_SUCCESS = 0;
export const IOMMU_PAGE_RESP_INVALID = 1;
export const IOMMU_PAGE_RESP_FAILURE = 2;
/** IOMMU_FAULT_PERM_* of a page request. */
const IOMMU_FAULT_PERM_READ = 1 << 0;
const IOMMU_FAULT_PERM_WRITE = 1 << 1;
const IOMMU_FAULT_PERM_EXEC = 1 << 2;
const IOMMU_FAULT_PERM_PRIV = 1 << 3;

/** The x86 MSI window every device behind a VT-d unit reports (IOAPIC_RANGE_START..END). */
export const VTD_MSI_START = 0xfee00000n;
export const VTD_MSI_LENGTH = 0x100000n;

// ---- kernel constants (iommu.h, pasid.h) ---------------------------------------------------------------
const IOMMU_NO_PASID = 0;
const FLPT_DEFAULT_DID = 1;
const NUM_RESERVED_DID = 2;
const QI_LENGTH = 256;
const QI_FREE = 0;
const QI_IN_USE = 1;
const QI_DONE = 2;
const QI_MAX_BATCHED_DESC_COUNT = 16;
const PRQ_ORDER = 4;
const MAX_AGAW_PFN_WIDTH = 52;
const DEFAULT_DOMAIN_ADDRESS_WIDTH = 57;
const PASID_MAX = 0x100000;
const PASID_ENTRY_BYTES = 64;
// Descriptor types and fields as qw0/qw1 bits (struct qi_desc).
const QI_CC_TYPE = 1n;
const QI_IOTLB_TYPE = 2n;
const QI_DIOTLB_TYPE = 3n;
const QI_IWD_TYPE = 5n;
const QI_EIOTLB_TYPE = 6n;
const QI_PC_TYPE = 7n;
const QI_DEIOTLB_TYPE = 8n;
const QI_PGRP_RESP_TYPE = 9n;
const QI_IWD_STATUS_WRITE = 1n << 5n;
const QI_IWD_FENCE = 1n << 6n;
const QI_IWD_PRQ_DRAIN = 1n << 7n;
const QI_PC_PASID_SEL = 1n;
const QI_PC_GLOBAL = 3n;
const QI_GRAN_NONG_PASID = 2n;
const QI_GRAN_PSI_PASID = 3n;
const DMA_TLB_GLOBAL = 1n;
const DMA_TLB_DSI = 2n;
const DMA_TLB_PSI = 3n;
const DMA_CCMD_GLOBAL = 1n;
const DMA_CCMD_DEVICE = 3n;
const U64 = (1n << 64n) - 1n;
const PAGE_MASK = ~0xfffn & U64;

/** struct qi_desc: four qwords. */
type QiDesc = [bigint, bigint, bigint, bigint];

// ---- descriptors, as the kernel builds them ------------------------------------------------------------

function qiDescContext(did: number, sid: number, fm: number, gran: bigint): QiDesc {
  return [(BigInt(fm) << 48n) | (BigInt(sid) << 32n) | (BigInt(did) << 16n) | (gran << 4n) | QI_CC_TYPE, 0n, 0n, 0n];
}

/** qi_desc_iotlb: addr carries IH in bit 0 (as Linux passes it). */
function qiDescIotlb(dw: boolean, dr: boolean, did: number, addr: bigint, sizeOrder: number, gran: bigint): QiDesc {
  const ih = addr & 1n;
  return [
    (BigInt(did) << 16n) | (dr ? 1n << 7n : 0n) | (dw ? 1n << 6n : 0n) | (gran << 4n) | QI_IOTLB_TYPE,
    (addr & PAGE_MASK) | (ih << 6n) | BigInt(sizeOrder & 0x3f),
    0n,
    0n,
  ];
}

/** qi_desc_piotlb: npages -1 = every mapping of the PASID; else page-selective over 2^ceil(log2 npages). */
function qiDescPiotlb(did: number, pasid: number, addr: bigint, npages: bigint, ih: boolean): QiDesc {
  const qw0 = (BigInt(pasid) << 32n) | (BigInt(did) << 16n) | QI_EIOTLB_TYPE;
  if (npages < 0n) return [qw0 | (QI_GRAN_NONG_PASID << 4n), 0n, 0n, 0n];
  const mask = ilog2(roundupPow2(npages));
  const align = 1n << BigInt(12 + mask);
  const a = addr - (addr % align); // WARN_ON_ONCE(!IS_ALIGNED) then ALIGN_DOWN
  return [qw0 | (QI_GRAN_PSI_PASID << 4n), (a & PAGE_MASK) | (ih ? 1n << 6n : 0n) | BigInt(mask & 0x3f), 0n, 0n];
}

function qiDescDevIotlb(sid: number, pfsid: number, qdep: number, addr: bigint, mask: number): QiDesc {
  let qw1: bigint;
  if (mask) {
    addr |= (1n << BigInt(12 + mask - 1)) - 1n;
    qw1 = (addr & PAGE_MASK) | 1n;
  } else qw1 = addr & PAGE_MASK;
  if (qdep >= 32) qdep = 0;
  const pf = BigInt(pfsid);
  return [(BigInt(sid) << 32n) | (BigInt(qdep & 0x1f) << 16n) | QI_DIOTLB_TYPE | ((pf & 0xfn) << 12n) | ((pf >> 4n) << 52n), qw1, 0n, 0n];
}

function qiDescDevIotlbPasid(sid: number, pfsid: number, pasid: number, qdep: number, addr: bigint, sizeOrder: number): QiDesc {
  const pf = BigInt(pfsid);
  const qw0 = (BigInt(pasid & 0xfffff) << 32n) | (BigInt(sid) << 16n) | (BigInt(qdep & 0x1f) << 4n) | QI_DEIOTLB_TYPE | ((pf & 0xfn) << 12n) | ((pf >> 4n) << 52n);
  if (sizeOrder > 52) sizeOrder = 52;
  let qw1 = addr & PAGE_MASK;
  if (sizeOrder) {
    const so = BigInt(sizeOrder);
    qw1 |= ((1n << (so + 12n)) - 1n) & ~0xfffn; // GENMASK(size_order + 11, 12)
    qw1 &= ~(1n << (12n + so - 1n)) & U64;
    qw1 |= 1n << 11n; // QI_DEV_EIOTLB_SIZE
  }
  return [qw0, qw1, 0n, 0n];
}

function qiDescPasidCache(did: number, gran: bigint, pasid: number): QiDesc {
  return [(BigInt(pasid) << 32n) | (BigInt(did) << 16n) | (gran << 4n) | QI_PC_TYPE, 0n, 0n, 0n];
}

function roundupPow2(n: bigint): bigint {
  let p = 1n;
  while (p < n) p <<= 1n;
  return p;
}

function ilog2(n: bigint): number {
  let k = 0;
  while (n > 1n) {
    n >>= 1n;
    k++;
  }
  return k;
}

/** __ffs: index of the lowest set bit (n != 0). */
function ffs(n: bigint): number {
  let k = 0;
  while ((n & 1n) === 0n) {
    n >>= 1n;
    k++;
  }
  return k;
}

/** calculate_psi_aligned_address(start, end) (cache.c): the aligned address, pages and mask of a PSI. */
function psiAligned(start: bigint, end: bigint): { addr: bigint; pages: bigint; mask: number } {
  const pages = ((start & 0xfffn) + (end - start + 1n) + 0xfffn) >> 12n; // aligned_nrpages
  let alignedPages = roundupPow2(pages);
  const bitmask = alignedPages - 1n;
  let mask = ilog2(alignedPages);
  const pfn = start >> 12n;
  if ((bitmask & pfn) !== 0n) {
    const endPfn = pfn + pages - 1n;
    const shared = ~(pfn ^ endPfn) & ~bitmask & U64;
    mask = shared !== 0n ? ffs(shared) : MAX_AGAW_PFN_WIDTH;
    alignedPages = 1n << BigInt(mask);
  }
  const align = 4096n << BigInt(mask);
  return { addr: start - (start % align), pages: alignedPages, mask };
}

function u32le(b: Uint8Array, off: number): number {
  return (b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | (b[off + 3] << 24)) >>> 0;
}

function u64le(b: Uint8Array, off: number): bigint {
  return BigInt(u32le(b, off)) | (BigInt(u32le(b, off + 4)) << 32n);
}

// ---- per-device and per-domain state -------------------------------------------------------------------

type TagType = "iotlb" | "devtlb" | "nesting_iotlb" | "nesting_devtlb";

/** struct cache_tag. */
interface CacheTag {
  type: TagType;
  did: number;
  pasid: number;
  /** DEVTLB tags: the device. */
  info: DevInfo | null;
  users: number;
}

/** struct device_domain_info. */
interface DevInfo {
  dev: Device;
  bus: number;
  devfn: number;
  sid: number;
  pasidSupported: boolean;
  atsSupported: boolean;
  atsEnabled: boolean;
  priSupported: boolean;
  priEnabled: boolean;
  /** The PASID directory (pasid_table->table), its frames and max_pasid. */
  dirPfn: number;
  dirFrames: number;
  maxPasid: number;
  /** The RID's domain, and whether the device is attached (domain_attached). */
  domain: VtdPagingDomain | VtdNestedDomain | null;
  attached: boolean;
  /** dev_pasid_info: domains attached to PASIDs. */
  pasids: Map<number, VtdPagingDomain | VtdNestedDomain>;
}

export interface VtdDeviceOptions {
  name: string;
  /** Source-id: bus << 8 | devfn. */
  sid: number;
  group?: IommuGroup;
  /** Width of the device's PCI PASID capability (0: none). */
  pasidBits?: number;
  /** PCI ATS capability (device TLB) and PRI (page requests; needs ATS). */
  ats?: boolean;
  pri?: boolean;
  /** More reserved regions (RMRRs) besides the MSI window. */
  resv?: ResvRegion[];
}

export interface VtdDriverOptions {
  /**
   * Deferred IOTLB flushing after unmap (the DMA-API flush queue): unmaps leave the IOTLB alone
   * until flushLazy(). Default false: strict, every unmap flushes before it returns.
   */
  lazy?: boolean;
}

/** One fault recording register as dmar_fault read it. */
export interface VtdFaultLogEntry {
  write: boolean;
  reason: number;
  sid: number;
  /** -1: no PASID. */
  pasid: number;
  addr: bigint;
}

/** A page request as prq_event_thread read it (for reports and tests). */
export interface VtdPageRequestLogEntry {
  rid: number;
  pasid: number;
  pasidPresent: boolean;
  addr: bigint;
  perm: number;
  prgi: number;
  lastPage: boolean;
  /** What the thread did: reported to a domain, answered Invalid, or dropped (stop marker). */
  outcome: "reported" | "invalid" | "dropped";
}

/** The domain-side of a DID (struct iommu_domain_info for our one unit). */
interface DidRef {
  did: number;
  refcnt: number;
}

/** A user or kernel paging domain (struct dmar_domain with a page table). */
export class VtdPagingDomain extends PagingDomain {
  readonly pgShift = 12;
  readonly pgsizeBitmap: bigint;
  readonly apertureStart = 0n;
  readonly apertureEnd: bigint;
  readonly dirtyOps: boolean;
  readonly engine: PageTableEngine;
  /** First-stage page table (DMA-API domains) or second-stage (user domains). */
  readonly useFirstLevel: boolean;
  readonly nestedParent: boolean;
  /** Address width in bits and the AGAW code (2: 48-bit 4-level, 3: 57-bit 5-level). */
  readonly gaw: number;
  readonly agaw: number;
  dirtyTracking = false;
  /** force_snooping / set_pte_snp: SNP in every second-stage leaf. */
  readonly forceSnooping: boolean;
  hasMappings = false;
  /** max_addr in pages. */
  maxAddrPages = 0;
  didRef: DidRef | null = null;
  readonly devices = new Set<DevInfo>();
  readonly devPasids: { info: DevInfo; pasid: number }[] = [];
  readonly tags: CacheTag[] = [];
  readonly s1Domains = new Set<VtdNestedDomain>();
  /** Lazy mode: unmaps whose IOTLB flush is still owed. */
  pendingFlush = false;
  private mapped = 0;
  declare readonly driver: VtdDriver;

  constructor(driver: VtdDriver, o: { firstStage: boolean; nestParent: boolean; dirtyOps: boolean; agaw: number }) {
    super(driver);
    const u = driver.unit;
    this.useFirstLevel = o.firstStage;
    this.nestedParent = o.nestParent;
    this.dirtyOps = o.dirtyOps;
    this.agaw = o.agaw;
    const width = 30 + 9 * o.agaw;
    this.gaw = Math.min(width, u.cap.mgaw + 1);
    const levels = o.agaw + 2;
    let bitmap = 1n << 12n;
    if (o.firstStage) {
      bitmap |= 1n << 21n;
      if (u.cap.fs1gp === 1) bitmap |= 1n << 30n;
      this.engine = new PageTableEngine(u.mem, vtdFirstStage({ levels: levels as 4 | 5, largePages1G: u.cap.fs1gp === 1 }));
    } else {
      const sp = u.cap.sslps;
      const superpage = sp === 0 ? 0 : 32 - Math.clz32(sp); // fls()
      if (superpage >= 1) bitmap |= 1n << 21n;
      if (superpage >= 2) bitmap |= 1n << 30n;
      this.engine = new PageTableEngine(
        u.mem,
        vtdSecondStage({ addressWidth: width as 39 | 48 | 57, largePages2M: superpage >= 1, largePages1G: superpage >= 2 }),
      );
    }
    this.pgsizeBitmap = bitmap;
    // First-stage input addresses are canonical: bit gaw-1 is the sign, so the aperture skips it.
    this.apertureEnd = (1n << BigInt(o.firstStage ? this.gaw - 1 : this.gaw)) - 1n;
    this.forceSnooping = u.ecap.sc === 1;
    this.enforceCacheCoherency = this.forceSnooping;
  }

  /** The DID while attached to the unit (-1: not attached anywhere). */
  get did(): number {
    return this.didRef === null ? -1 : this.didRef.did;
  }

  /** intel_iommu_map_pages / __domain_mapping. */
  map(iova: number, pa: number, n: number, prot: number, smallOnly: boolean): void {
    assert(pa % PAGE_SIZE === 0 && Number.isSafeInteger(iova) && n > 0, "map: page-aligned arguments");
    const end = iova + n;
    if (this.maxAddrPages < end) {
      if (end > 2 ** (this.gaw - 12)) fail("EFAULT", `iommu width (${this.gaw}) is not sufficient for the mapped address`);
      this.maxAddrPages = end;
    }
    if (end - 1 >= 2 ** (30 + 9 * this.agaw - 12)) fail("EINVAL", "pfn beyond the domain's AGAW");
    if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0) fail("EINVAL", "a mapping must be readable or writable");
    if ((prot & IOMMU_WRITE) === 0 && this.nestedParent) {
      fail("EINVAL", "Read-only mapping is disallowed on the domain which serves as the parent in a nested configuration (ERRATA_772415_SPR17)");
    }
    let pt: number;
    if (this.useFirstLevel) {
      pt = PT_READ | PT_USER | PT_ACCESSED | PT_EXEC;
      if (prot & IOMMU_WRITE) pt |= PT_WRITE | PT_DIRTY;
    } else {
      pt = (prot & IOMMU_READ ? PT_READ : 0) | (prot & IOMMU_WRITE ? PT_WRITE : 0) | (this.forceSnooping ? PT_CACHE : 0);
    }
    this.hasMappings = true;
    const ppn = pa / PAGE_SIZE;
    if (!smallOnly) this.engine.map(iova, ppn, n, pt);
    else {
      // Chunks of 511 pages never hold an aligned 512-page run: only 4 KiB leaves.
      for (let done = 0; done < n; ) {
        const k = Math.min(511, n - done);
        this.engine.map(iova + done, ppn + done, k, pt);
        done += k;
      }
    }
    this.mapped += n;
    // intel_iommu_iotlb_sync_map: caching mode makes non-present -> present changes flushed.
    if (this.driver.unit.cap.cm === 1 && !this.useFirstLevel) this.driver.cacheTagFlushRangeNp(this, BigInt(iova) << 12n, (BigInt(end) << 12n) - 1n);
  }

  /** intel_iommu_unmap_pages + iotlb_sync (strict) or the flush queue (lazy). */
  unmap(iova: number, n: number): void {
    const before = this.engine.tablePages;
    this.mapped -= this.engine.unmap(iova, n);
    if (this.maxAddrPages === iova + n) this.maxAddrPages = iova;
    const ih = this.engine.tablePages === before; // no page-table page freed: only leaves changed
    if (this.driver.lazy) this.pendingFlush = true;
    else this.driver.cacheTagFlushRange(this, BigInt(iova) << 12n, (BigInt(iova + n) << 12n) - 1n, ih);
  }

  /** flush_iotlb_all: what the flush queue does when it drains. */
  flushIotlbAll(): void {
    this.pendingFlush = false;
    this.driver.cacheTagFlushAll(this);
  }

  iovaToPhys(iova: number): number {
    const w = this.engine.walk(iova);
    return w.ppn < 0 ? -1 : w.ppn * PAGE_SIZE;
  }

  protAt(iova: number): number {
    const w = this.engine.walk(iova);
    if (w.ppn < 0) return 0;
    return (w.perms & ACC_READ ? IOMMU_READ : 0) | (w.perms & ACC_WRITE ? IOMMU_WRITE : 0);
  }

  mappedPages(): number {
    return this.mapped;
  }

  /** intel_iommu_set_dirty_tracking. */
  override setDirtyTracking(enable: boolean): void {
    if (!this.dirtyOps) fail("EOPNOTSUPP", "the domain has no dirty tracking");
    this.driver.setDomainDirtyTracking(this, enable);
  }

  /** intel_iommu_read_and_clear_dirty, then the IOTLB sync of the gathered range (iommufd's). */
  override readAndClearDirty(iova: number, n: number, noClear: boolean, record: ((first: number, n: number) => void) | null): void {
    if (!this.dirtyTracking && record !== null) fail("EINVAL", "dirty tracking is not enabled");
    let lo = Infinity;
    let hi = -1;
    this.engine.readAndClearDirty(
      iova,
      n,
      (v, k) => {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v + k);
        record?.(v, k);
      },
      noClear,
    );
    if (!noClear && hi > 0) this.driver.cacheTagFlushRange(this, BigInt(lo) << 12n, (BigInt(hi) << 12n) - 1n, true);
  }

  /** domain_exit: the page tables go back to memory (kept while a device still uses them: the kernel WARNs). */
  override free(): void {
    if (this.devices.size !== 0 || this.devPasids.length !== 0) return;
    this.engine.destroy();
  }
}

/** A nested domain: a user stage-1 table (IOMMU_HWPT_DATA_VTD_S1) over a NEST_PARENT domain. */
export class VtdNestedDomain extends NestedDomain {
  readonly useFirstLevel = true;
  readonly s1Flags: bigint;
  /** The stage-1 table's guest-physical address and the input width (48 or 57). */
  readonly s1Pgtbl: bigint;
  readonly addrWidth: number;
  didRef: DidRef | null = null;
  readonly devices = new Set<DevInfo>();
  /** (device, PASID) attachments [newer than 6.12: nested domains at a PASID]. */
  readonly devPasids: { info: DevInfo; pasid: number }[] = [];
  readonly tags: CacheTag[] = [];
  declare readonly parent: VtdPagingDomain;
  declare readonly driver: VtdDriver;

  constructor(driver: VtdDriver, parent: VtdPagingDomain, flags: bigint, pgtbl: bigint, addrWidth: number) {
    super(driver, parent);
    this.s1Flags = flags;
    this.s1Pgtbl = pgtbl;
    this.addrWidth = addrWidth;
  }

  get did(): number {
    return this.didRef === null ? -1 : this.didRef.did;
  }

  /** intel_nested_domain_free. */
  override free(): void {
    this.parent.s1Domains.delete(this);
  }
}

export class VtdDriver implements IommuDriver {
  readonly name = "intel-iommu";
  readonly unit: VtdUnit;
  readonly mem: HwMemory;
  readonly lazy: boolean;
  /** iommu->agaw and iommu->msagaw. */
  readonly agaw: number;
  readonly msagaw: number;
  readonly faultLog: VtdFaultLogEntry[] = [];
  readonly prqLog: VtdPageRequestLogEntry[] = [];
  /** Called for every fault dmar_fault reads (after it is logged). */
  onFault: ((f: VtdFaultLogEntry) => void) | null = null;
  /** Descriptors submitted through the invalidation queue (wait descriptors included). */
  descriptorsSubmitted = 0;

  private gcmd = 0;
  private readonly rootPfn: number;
  private readonly qiPfn: number;
  private readonly statusPfn: number;
  private freeHead = 0;
  private readonly prqPfn: number;
  private readonly domainIds: Uint8Array;
  private readonly infos = new Map<Device, DevInfo>();
  private readonly bySid = new Map<number, DevInfo>();

  constructor(unit: VtdUnit, opts: VtdDriverOptions = {}) {
    this.unit = unit;
    this.mem = unit.mem;
    this.lazy = opts.lazy ?? false;
    const cap = unit.cap;
    const ecap = unit.ecap;
    assert(ecap.smts === 1 && ecap.qi === 1, "the model drives a scalable-mode unit with queued invalidation");
    // __iommu_calculate_sagaw: first-stage widths (4-level, 5-level with FL5LP) & second stage's.
    let sagaw = cap.sagaw;
    if (ecap.fsts === 1) sagaw = ecap.ssts === 1 ? sagaw & (0b0100 | (cap.fs5lp ? 0b1000 : 0)) : 0b0100 | (cap.fs5lp ? 0b1000 : 0);
    const agawFor = (maxGaw: number): number => {
      let a = Math.floor((maxGaw - 30) / 9); // width_to_agaw (widths 30 + 9k)
      for (; a >= 0; a--) if ((sagaw >>> a) & 1) break;
      return a;
    };
    this.agaw = agawFor(DEFAULT_DOMAIN_ADDRESS_WIDTH);
    this.msagaw = agawFor(64);
    assert(this.agaw >= 2, "the unit supports neither 4- nor 5-level tables");
    // iommu_init_domains: DIDs 0 and FLPT_DEFAULT_DID are reserved.
    this.domainIds = new Uint8Array(2 ** (4 + 2 * cap.nd));
    this.domainIds[0] = 1;
    this.domainIds[FLPT_DEFAULT_DID] = 1;
    // dmar_enable_qi: 256 descriptors of 256 bits (two pages), DW = 1, QS = 1.
    this.qiPfn = this.mem.allocTable(2);
    this.statusPfn = this.mem.allocTable(1);
    unit.write32(VtdReg.IQT, 0);
    unit.write64(VtdReg.IQA, BigInt(this.qiPfn * PAGE_SIZE) | (1n << 11n) | 1n);
    this.setGcmd(Gcmd.QIE, true);
    // iommu_alloc_root_entry + iommu_set_root_entry (no ESRTPS: flush everything after SRTP).
    this.rootPfn = this.mem.allocTable(1);
    unit.write64(VtdReg.RTADDR, BigInt(this.rootPfn * PAGE_SIZE) | (1n << 10n));
    unit.write32(VtdReg.GCMD, (this.gcmd | Gcmd.SRTP) >>> 0);
    if (cap.esrtps === 0) {
      this.qiSubmitSync([qiDescContext(0, 0, 0, DMA_CCMD_GLOBAL)]);
      this.qiSubmitSync([qiDescPasidCache(0, QI_PC_GLOBAL, 0)]);
      this.qiSubmitSync([qiDescIotlb(cap.dwd === 1, cap.drd === 1, 0, 0n, 0, DMA_TLB_GLOBAL)]);
    }
    // intel_iommu_enable_prq (PASID and PRS): 2^PRQ_ORDER pages.
    this.prqPfn = -1;
    if (ecap.pasid === 1 && ecap.prs === 1) {
      this.prqPfn = this.mem.allocTable(2 ** PRQ_ORDER);
      unit.write64(VtdReg.PQH, 0n);
      unit.write64(VtdReg.PQT, 0n);
      unit.write64(VtdReg.PQA, BigInt(this.prqPfn * PAGE_SIZE) | BigInt(PRQ_ORDER));
      unit.onPageRequestEvent = () => this.prqEventThread();
      unit.write32(VtdReg.PECTL, 0);
    }
    // dmar_set_interrupt: the fault event handler, unmasked.
    unit.onFaultEvent = () => this.dmarFault();
    unit.write32(VtdReg.FECTL, 0);
    // iommu_enable_translation.
    this.setGcmd(Gcmd.TE, true);
  }

  private setGcmd(bit: number, on: boolean): void {
    this.gcmd = on ? this.gcmd | bit : this.gcmd & ~bit;
    this.unit.write32(VtdReg.GCMD, this.gcmd >>> 0);
  }

  private get pasidSupported(): boolean {
    return this.unit.ecap.pasid === 1;
  }

  private get ssadsSupported(): boolean {
    return this.unit.ecap.ssads === 1 && this.unit.ecap.smpwcs === 1;
  }

  private get nestedSupported(): boolean {
    return this.unit.ecap.nest === 1;
  }

  // ==== devices ====================================================================================

  /** intel_iommu_probe_device: a PCI device at source-id sid behind this unit. */
  probeDevice(o: VtdDeviceOptions): Device {
    assert(Number.isInteger(o.sid) && o.sid >= 0 && o.sid <= 0xffff, "a 16-bit source-id");
    if (this.bySid.has(o.sid)) assert(false, `source-id ${o.sid} is already probed`);
    const ecap = this.unit.ecap;
    const pasidBits = o.pasidBits ?? 0;
    const atsSupported = (o.ats ?? false) && ecap.dt === 1;
    const pasidSupported = this.pasidSupported && pasidBits > 0;
    const priSupported = atsSupported && ecap.prs === 1 && ecap.pds === 1 && (o.pri ?? false);
    const ioMaxPasidLog2 = pasidSupported ? Math.min(pasidBits, ecap.pss + 1) : 0;
    const dev = new Device({
      name: o.name,
      driver: this,
      group: o.group,
      resv: [{ start: VTD_MSI_START, length: VTD_MSI_LENGTH, type: ResvType.MSI }, ...(o.resv ?? [])],
      maxPasidLog2: ioMaxPasidLog2,
      isPci: true,
      pciPasidCtrl: pasidSupported ? PCI_PASID_CTRL_ENABLE : 0,
      port: this.unit,
      sid: o.sid,
    });
    // intel_pasid_alloc_table.
    const maxPasidDev = pasidSupported ? Math.min(2 ** pasidBits, PASID_MAX) : 0;
    const size = maxPasidDev >> 3;
    const order = size === 0 ? 0 : Math.ceil(Math.log2(Math.ceil(size / PAGE_SIZE)));
    const info: DevInfo = {
      dev,
      bus: o.sid >>> 8,
      devfn: o.sid & 0xff,
      sid: o.sid,
      pasidSupported,
      atsSupported,
      atsEnabled: false,
      priSupported,
      priEnabled: false,
      dirPfn: this.mem.allocTable(2 ** order),
      dirFrames: 2 ** order,
      maxPasid: 2 ** (order + 12 + 3),
      domain: null,
      attached: false,
      pasids: new Map(),
    };
    this.infos.set(dev, info);
    this.bySid.set(o.sid, info);
    this.pasidTableSetup(info);
    return dev;
  }

  /** intel_iommu_release_device (Device.unplug calls it): blocked, context entry torn down. */
  releaseDevice(dev: Device): void {
    const info = this.infos.get(dev);
    if (info === undefined) return;
    for (const p of [...info.pasids.keys()]) this.removeDevPasid(dev, p);
    this.deviceBlockTranslation(info);
    this.pasidTableTeardown(info);
    this.infos.delete(dev);
    this.bySid.delete(info.sid);
  }

  private info(dev: Device): DevInfo {
    const i = this.infos.get(dev);
    if (i === undefined) fail("ENODEV", `device ${dev.name} is not behind this VT-d unit`);
    return i;
  }

  /** iommu_context_addr: the context entry (frame, word index), allocating its table if asked. */
  private contextAddr(bus: number, devfn: number, alloc: boolean): { f: Uint32Array; w: number } | null {
    const root = this.mem.frameU32(this.rootPfn);
    const w = bus * 4 + (devfn >= 0x80 ? 2 : 0);
    let ctp: number;
    if ((root[w] & 1) !== 0) ctp = (root[w] & 0xfffff000) + root[w + 1] * 2 ** 32;
    else {
      if (!alloc) return null;
      const t = this.mem.allocTable(1);
      const pa = t * PAGE_SIZE;
      root[w] = (pa % 2 ** 32) | 1;
      root[w + 1] = Math.floor(pa / 2 ** 32);
      ctp = pa;
    }
    return { f: this.mem.frameU32(ctp / PAGE_SIZE), w: (devfn & 0x7f) * 8 };
  }

  /** device_pasid_table_setup + context_entry_set_pasid_table. */
  private pasidTableSetup(info: DevInfo): void {
    const c = this.contextAddr(info.bus, info.devfn, true) as { f: Uint32Array; w: number };
    if (SmContextEntry.acc.p.get(c.f, c.w) === 1) return;
    const maxPde = info.maxPasid >> 6;
    const pds = Math.log2(maxPde);
    SmContextEntry.encodeInto(c.f, c.w, {
      pasiddirptr: info.dirPfn * PAGE_SIZE,
      pdts: pds < 7 ? 0 : pds - 7,
      ridPasid: IOMMU_NO_PASID,
      dte: info.atsSupported ? 1 : 0,
      paside: info.pasidSupported ? 1 : 0,
      fpd: 0,
      p: 1,
    });
    // Non-present to present: nothing to flush without caching mode.
    if (this.unit.cap.cm === 1) {
      this.qiSubmitSync([qiDescContext(0, info.sid, 0, DMA_CCMD_DEVICE)]);
      this.qiSubmitSync([qiDescIotlb(this.unit.cap.dwd === 1, this.unit.cap.drd === 1, 0, 0n, 0, DMA_TLB_DSI)]);
    }
  }

  /** device_pasid_table_teardown. */
  private pasidTableTeardown(info: DevInfo): void {
    const c = this.contextAddr(info.bus, info.devfn, false);
    if (c === null) return;
    SmContextEntry.acc.p.set(c.f, c.w, 0);
    this.contextFlushNoPasid(info);
    c.f.fill(0, c.w, c.w + 8);
  }

  /** intel_context_flush_no_pasid (scalable mode): device-selective context-cache flush (+ device TLB). */
  private contextFlushNoPasid(info: DevInfo): void {
    this.qiSubmitSync([qiDescContext(0, info.sid, 0, DMA_CCMD_DEVICE)]);
    if (info.atsEnabled) this.qiSubmitSync([qiDescDevIotlb(info.sid, 0, 0, 0n, MAX_AGAW_PFN_WIDTH)]);
  }

  /** intel_pasid_get_entry: the PASID entry (frame, word index), allocating its table; null beyond max_pasid. */
  private pasidEntry(info: DevInfo, pasid: number): { f: Uint32Array; w: number } | null {
    if (pasid >= info.maxPasid) return null;
    const dePa = info.dirPfn * PAGE_SIZE + (pasid >>> 6) * 8;
    const df = this.mem.frameU32(Math.floor(dePa / PAGE_SIZE));
    const dw = (dePa % PAGE_SIZE) / 4;
    if (PasidDirEntry.acc.p.get(df, dw) === 0) {
      const t = this.mem.allocTable(1);
      PasidDirEntry.encodeInto(df, dw, { p: 1, ptp: t * PAGE_SIZE });
    }
    const tpa = PasidDirEntry.acc.ptp.get(df, dw);
    return { f: this.mem.frameU32(tpa / PAGE_SIZE), w: ((pasid & 63) * PASID_ENTRY_BYTES) / 4 };
  }

  // ==== the invalidation queue =======================================================================

  /** qi_submit_sync: descriptors, then a wait descriptor with status write; the hardware runs them at once. */
  qiSubmitSync(descs: QiDesc[], drain = false): void {
    const unit = this.unit;
    const index = this.freeHead;
    const count = descs.length;
    const waitIndex = (index + count) % QI_LENGTH;
    const statusPa = this.statusPfn * PAGE_SIZE + waitIndex * 4;
    const put = (slot: number, d: QiDesc): void => {
      const pa = this.qiPfn * PAGE_SIZE + slot * 32;
      for (let q = 0; q < 4; q++) {
        this.mem.write32(pa + 8 * q, Number(d[q] & 0xffffffffn));
        this.mem.write32(pa + 8 * q + 4, Number(d[q] >> 32n));
      }
    };
    for (let i = 0; i < count; i++) {
      put((index + i) % QI_LENGTH, descs[i]);
      this.mem.write32(this.statusPfn * PAGE_SIZE + ((index + i) % QI_LENGTH) * 4, QI_IN_USE);
    }
    this.mem.write32(statusPa, QI_IN_USE);
    put(waitIndex, [(BigInt(QI_DONE) << 32n) | QI_IWD_STATUS_WRITE | QI_IWD_TYPE | (drain ? QI_IWD_PRQ_DRAIN : 0n), BigInt(statusPa), 0n, 0n]);
    this.freeHead = (index + count + 1) % QI_LENGTH;
    this.descriptorsSubmitted += count + 1;
    unit.write32(VtdReg.IQT, this.freeHead << 5);
    if (this.mem.read32(statusPa) !== QI_DONE) {
      const fsts = unit.read32(VtdReg.FSTS);
      assert(false, `invalidation queue stopped (FSTS 0x${fsts.toString(16)}, IQERCD 0x${unit.read64(VtdReg.IQERCD).toString(16)})`);
    }
    for (let i = 0; i <= count; i++) this.mem.write32(this.statusPfn * PAGE_SIZE + ((index + i) % QI_LENGTH) * 4, QI_FREE);
  }

  /** qi_batch: descriptors collected and submitted 16 at a time. */
  private batch(descs: QiDesc[]): void {
    for (let i = 0; i < descs.length; i += QI_MAX_BATCHED_DESC_COUNT) this.qiSubmitSync(descs.slice(i, i + QI_MAX_BATCHED_DESC_COUNT));
  }

  // ==== cache tags (cache.c) ==========================================================================

  private tagAssign(tags: CacheTag[], type: TagType, did: number, pasid: number, info: DevInfo): void {
    const dev = type === "devtlb" || type === "nesting_devtlb";
    const t = tags.find((x) => x.type === type && x.did === did && x.pasid === pasid && (!dev || x.info === info));
    if (t !== undefined) t.users++;
    else tags.push({ type, did, pasid, info: dev ? info : null, users: 1 });
  }

  private tagUnassign(tags: CacheTag[], type: TagType, did: number, pasid: number, info: DevInfo): void {
    const dev = type === "devtlb" || type === "nesting_devtlb";
    const i = tags.findIndex((x) => x.type === type && x.did === did && x.pasid === pasid && (!dev || x.info === info));
    if (i >= 0 && --tags[i].users === 0) tags.splice(i, 1);
  }

  /** cache_tag_assign_domain. */
  private cacheTagAssignDomain(domain: VtdPagingDomain | VtdNestedDomain, info: DevInfo, pasid: number): void {
    const did = domain.did;
    this.tagAssign(domain.tags, "iotlb", did, pasid, info);
    if (info.atsEnabled) this.tagAssign(domain.tags, "devtlb", did, pasid, info);
    if (domain instanceof VtdNestedDomain) {
      this.tagAssign(domain.parent.tags, "nesting_iotlb", did, pasid, info);
      if (info.atsEnabled) this.tagAssign(domain.parent.tags, "nesting_devtlb", did, pasid, info);
    }
  }

  /** cache_tag_unassign_domain. */
  private cacheTagUnassignDomain(domain: VtdPagingDomain | VtdNestedDomain, info: DevInfo, pasid: number): void {
    const did = domain.did;
    this.tagUnassign(domain.tags, "iotlb", did, pasid, info);
    if (info.atsEnabled) this.tagUnassign(domain.tags, "devtlb", did, pasid, info);
    if (domain instanceof VtdNestedDomain) {
      this.tagUnassign(domain.parent.tags, "nesting_iotlb", did, pasid, info);
      if (info.atsEnabled) this.tagUnassign(domain.parent.tags, "nesting_devtlb", did, pasid, info);
    }
  }

  /** cache_tag_flush_iotlb: one tag's IOTLB descriptor. pages -1n: everything. */
  private flushIotlbDesc(useFirstLevel: boolean, tag: CacheTag, addr: bigint, pages: bigint, mask: number, ih: boolean): QiDesc | null {
    const cap = this.unit.cap;
    if (useFirstLevel) return pages === 0n ? null : qiDescPiotlb(tag.did, tag.pasid, addr, pages, ih);
    let type = DMA_TLB_PSI;
    if (cap.psi === 0 || mask > cap.mamv || pages < 0n) {
      addr = 0n;
      mask = 0;
      ih = false;
      type = DMA_TLB_DSI;
    }
    return qiDescIotlb(cap.dwd === 1, cap.drd === 1, tag.did, addr | (ih ? 1n : 0n), mask, type);
  }

  private devtlbPsi(tag: CacheTag, addr: bigint, mask: number): QiDesc[] {
    const info = tag.info as DevInfo;
    if ((this.gcmd & Gcmd.TE) === 0) return [];
    if (tag.pasid === IOMMU_NO_PASID) return [qiDescDevIotlb(info.sid, 0, 0, addr, mask)];
    return [qiDescDevIotlbPasid(info.sid, 0, tag.pasid, 0, addr, mask)];
  }

  /** cache_tag_flush_range: the IOTLB (and device TLBs) of [start, end] for every tag of the domain. */
  cacheTagFlushRange(domain: VtdPagingDomain | VtdNestedDomain, start: bigint, end: bigint, ih: boolean): void {
    const { addr, pages, mask } = psiAligned(start, end);
    const out: QiDesc[] = [];
    for (const tag of domain.tags) {
      if (tag.type === "iotlb" || tag.type === "nesting_iotlb") {
        const d = this.flushIotlbDesc(domain.useFirstLevel, tag, addr, pages, mask, ih);
        if (d !== null) out.push(d);
      } else if (tag.type === "nesting_devtlb") out.push(...this.devtlbPsi(tag, 0n, MAX_AGAW_PFN_WIDTH));
      else out.push(...this.devtlbPsi(tag, addr, mask));
    }
    this.batch(out);
  }

  /** cache_tag_flush_all. */
  cacheTagFlushAll(domain: VtdPagingDomain | VtdNestedDomain): void {
    const out: QiDesc[] = [];
    for (const tag of domain.tags) {
      if (tag.type === "iotlb" || tag.type === "nesting_iotlb") {
        const d = this.flushIotlbDesc(domain.useFirstLevel, tag, 0n, -1n, 0, false);
        if (d !== null) out.push(d);
      } else if ((this.gcmd & Gcmd.TE) !== 0) {
        out.push(qiDescDevIotlb((tag.info as DevInfo).sid, 0, 0, 0n, MAX_AGAW_PFN_WIDTH));
      }
    }
    this.batch(out);
  }

  /** cache_tag_flush_range_np: after new mappings, only with caching mode. */
  cacheTagFlushRangeNp(domain: VtdPagingDomain, start: bigint, end: bigint): void {
    const { addr, pages, mask } = psiAligned(start, end);
    const out: QiDesc[] = [];
    for (const tag of domain.tags) {
      if (tag.type !== "iotlb" && tag.type !== "nesting_iotlb") continue;
      const d = this.flushIotlbDesc(domain.useFirstLevel, tag, addr, pages, mask, false);
      if (d !== null) out.push(d);
    }
    this.batch(out);
  }

  /** Lazy mode: drain the flush queue of every domain that owes a flush. */
  flushLazy(...domains: VtdPagingDomain[]): void {
    for (const d of domains) if (d.pendingFlush) d.flushIotlbAll();
  }

  // ==== DIDs ===========================================================================================

  /** domain_attach_iommu. */
  private domainAttachIommu(domain: VtdPagingDomain | VtdNestedDomain): void {
    if (domain.didRef !== null) {
      domain.didRef.refcnt++;
      return;
    }
    const ids = this.domainIds;
    let num = NUM_RESERVED_DID;
    while (num < ids.length && ids[num] === 1) num++;
    if (num >= ids.length) fail("ENOSPC", "No free domain ids");
    ids[num] = 1;
    domain.didRef = { did: num, refcnt: 1 };
  }

  /** domain_detach_iommu. */
  private domainDetachIommu(domain: VtdPagingDomain | VtdNestedDomain): void {
    const r = domain.didRef as DidRef;
    if (--r.refcnt === 0) {
      this.domainIds[r.did] = 0;
      domain.didRef = null;
    }
  }

  // ==== PASID entries (pasid.c) =======================================================================

  /** intel_pasid_tear_down_entry. */
  private pasidTearDown(info: DevInfo, pasid: number, faultIgnore: boolean): void {
    const e = this.pasidEntry(info, pasid);
    if (e === null) return;
    const a = PasidEntry.acc;
    if (a.p.get(e.f, e.w) === 0) {
      if (a.fpd.get(e.f, e.w) === 0) return;
      e.f.fill(0, e.w, e.w + 16);
      this.drainPasidPrq(info, pasid);
      return;
    }
    const did = a.did.get(e.f, e.w);
    const pgtt = a.pgtt.get(e.f, e.w);
    a.p.set(e.f, e.w, 0);
    this.qiSubmitSync([qiDescPasidCache(did, QI_PC_PASID_SEL, pasid)]);
    if (pgtt === Pgtt.PASS_THROUGH || pgtt === Pgtt.FIRST_STAGE) this.qiSubmitSync([qiDescPiotlb(did, pasid, 0n, -1n, false)]);
    else this.qiSubmitSync([qiDescIotlb(this.unit.cap.dwd === 1, this.unit.cap.drd === 1, did, 0n, 0, DMA_TLB_DSI)]);
    this.devtlbInvalidationWithPasid(info, pasid);
    e.f.fill(0, e.w, e.w + 16);
    if (!faultIgnore) this.drainPasidPrq(info, pasid);
  }

  private devtlbInvalidationWithPasid(info: DevInfo, pasid: number): void {
    if (!info.atsEnabled || (this.gcmd & Gcmd.TE) === 0) return;
    if (pasid === IOMMU_NO_PASID) this.qiSubmitSync([qiDescDevIotlb(info.sid, 0, 0, 0n, 64 - 12)]);
    else this.qiSubmitSync([qiDescDevIotlbPasid(info.sid, 0, pasid, 0, 0n, 64 - 12)]);
  }

  /** intel_iommu_drain_pasid_prq (the queue is processed synchronously: nothing to wait for). */
  private drainPasidPrq(info: DevInfo, pasid: number): void {
    if (!info.priEnabled) return;
    const did = info.domain !== null && info.domain.did >= 0 ? info.domain.did : FLPT_DEFAULT_DID;
    const fence: QiDesc = [(BigInt(QI_DONE) << 32n) | QI_IWD_FENCE | QI_IWD_TYPE, 0n, 0n, 0n];
    const cap = this.unit.cap;
    const descs: QiDesc[] =
      pasid === IOMMU_NO_PASID
        ? [fence, qiDescIotlb(cap.dwd === 1, cap.drd === 1, did, 0n, 0, DMA_TLB_DSI), qiDescDevIotlb(info.sid, 0, 0, 0n, MAX_AGAW_PFN_WIDTH)]
        : [fence, qiDescPiotlb(did, pasid, 0n, -1n, false), qiDescDevIotlbPasid(info.sid, 0, pasid, 0, 0n, MAX_AGAW_PFN_WIDTH)];
    this.qiSubmitSync(descs, true);
  }

  /** Write a PASID entry from scratch (pasid_clear_entry, the fields, then P). EBUSY when present. */
  private writePasidEntry(info: DevInfo, pasid: number, v: Partial<PasidEntry>): void {
    const e = this.pasidEntry(info, pasid);
    if (e === null) fail("ENODEV", `PASID ${pasid} beyond the device's PASID table`);
    if (PasidEntry.acc.p.get(e.f, e.w) === 1) fail("EBUSY", "the PASID entry is present");
    PasidEntry.encodeInto(e.f, e.w, { ...v, p: 0 });
    PasidEntry.acc.p.set(e.f, e.w, 1);
    // pasid_flush_caches: only caching mode caches not-present entries.
    if (this.unit.cap.cm === 1) {
      const did = v.did ?? 0;
      this.qiSubmitSync([qiDescPasidCache(did, QI_PC_PASID_SEL, pasid)]);
      this.qiSubmitSync([qiDescPiotlb(did, pasid, 0n, -1n, false)]);
    }
  }

  /** domain_setup_first_level + intel_pasid_setup_first_level. */
  private setupFirstLevel(domain: VtdPagingDomain, info: DevInfo, pasid: number): void {
    if (this.unit.ecap.fsts === 0) fail("EINVAL", "No first level translation support");
    const level = domain.agaw + 2;
    if (level !== 4 && level !== 5) fail("EINVAL", "first-stage tables must be 4- or 5-level");
    if (level === 5 && this.unit.cap.fs5lp === 0) fail("EINVAL", "No 5-level paging support for first-level");
    this.writePasidEntry(info, pasid, {
      fsptptr: domain.engine.root * PAGE_SIZE,
      fspm: level === 5 ? 1 : 0,
      pgsnp: domain.forceSnooping ? 1 : 0,
      did: domain.did,
      aw: this.agaw,
      pwsnp: this.unit.ecap.smpwcs,
      pgtt: Pgtt.FIRST_STAGE,
    });
  }

  /** intel_pasid_setup_second_level. */
  private setupSecondLevel(domain: VtdPagingDomain, info: DevInfo, pasid: number): void {
    if (this.unit.ecap.ssts === 0) fail("EINVAL", "No second level translation support");
    this.writePasidEntry(info, pasid, {
      did: domain.did,
      ssptptr: domain.engine.root * PAGE_SIZE,
      aw: domain.agaw,
      pgtt: Pgtt.SECOND_STAGE,
      fpd: 0,
      pwsnp: this.unit.ecap.smpwcs,
      ssade: domain.dirtyTracking ? 1 : 0,
    });
  }

  /** intel_pasid_setup_nested. */
  private setupNested(domain: VtdNestedDomain, info: DevInfo, pasid: number): void {
    const cap = this.unit.cap;
    const ecap = this.unit.ecap;
    if (domain.addrWidth === 57) {
      if (cap.fs5lp === 0) fail("EINVAL", "5-level paging not supported");
    } else if (domain.addrWidth !== 48) fail("EINVAL", `Invalid stage-1 address width ${domain.addrWidth}`);
    const flags = domain.s1Flags;
    if (flags & BigInt(IOMMU_VTD_S1_SRE) && ecap.srs === 0) fail("EINVAL", "No supervisor request support");
    if (flags & BigInt(IOMMU_VTD_S1_EAFE) && ecap.eafs === 0) fail("EINVAL", "No extended access flag support");
    const s2 = domain.parent;
    const sre = (flags & BigInt(IOMMU_VTD_S1_SRE)) !== 0n;
    this.writePasidEntry(info, pasid, {
      fspm: domain.addrWidth === 57 ? 1 : 0,
      fsptptr: Number(domain.s1Pgtbl & PAGE_MASK & ((1n << 64n) - 1n)),
      sre: sre ? 1 : 0,
      wpe: sre && flags & BigInt(IOMMU_VTD_S1_WPE) ? 1 : 0,
      eafe: flags & BigInt(IOMMU_VTD_S1_EAFE) ? 1 : 0,
      pgsnp: s2.forceSnooping ? 1 : 0,
      ssptptr: s2.engine.root * PAGE_SIZE,
      fpd: 0,
      did: domain.did,
      aw: s2.agaw,
      pwsnp: ecap.smpwcs,
      ssade: s2.dirtyTracking ? 1 : 0,
      pgtt: Pgtt.NESTED,
    });
  }

  /** intel_pasid_setup_dirty_tracking. */
  private pasidSetupDirtyTracking(info: DevInfo, pasid: number, enabled: boolean): void {
    const e = this.pasidEntry(info, pasid);
    if (e === null) fail("ENODEV", `Failed to get pasid entry of PASID ${pasid}`);
    const a = PasidEntry.acc;
    const did = a.did.get(e.f, e.w);
    const pgtt = a.pgtt.get(e.f, e.w);
    if (pgtt !== Pgtt.SECOND_STAGE && pgtt !== Pgtt.NESTED) fail("EOPNOTSUPP", `Dirty tracking not supported on translation type ${pgtt}`);
    if ((a.ssade.get(e.f, e.w) === 1) === enabled) return;
    a.ssade.set(e.f, e.w, enabled ? 1 : 0);
    this.qiSubmitSync([qiDescPasidCache(did, QI_PC_PASID_SEL, pasid)]);
    this.qiSubmitSync([qiDescIotlb(this.unit.cap.dwd === 1, this.unit.cap.drd === 1, did, 0n, 0, DMA_TLB_DSI)]);
    this.devtlbInvalidationWithPasid(info, pasid);
  }

  // ==== attach ===========================================================================================

  /** device_block_translation: the RID's requests are blocked (PASID entry torn down). */
  private deviceBlockTranslation(info: DevInfo): void {
    if (!info.attached) return;
    if (info.domain !== null) this.cacheTagUnassignDomain(info.domain, info, IOMMU_NO_PASID);
    info.atsEnabled = false; // iommu_disable_pci_caps
    this.pasidTearDown(info, IOMMU_NO_PASID, false);
    info.attached = false;
    const d = info.domain;
    if (d === null) return;
    d.devices.delete(info);
    this.domainDetachIommu(d);
    info.domain = null;
  }

  /** prepare_domain_attach_device. */
  private prepareDomainAttach(domain: VtdPagingDomain): void {
    if (domain.forceSnooping && this.unit.ecap.sc === 0) fail("EINVAL", "the unit has no snoop control");
    if (domain.dirtyOps && !this.ssadsSupported) fail("EINVAL", "the unit has no second-stage A/D");
    const width = Math.min(30 + 9 * this.agaw, this.unit.cap.mgaw + 1);
    if (domain.maxAddrPages > 2 ** (width - 12)) fail("EINVAL", "the domain maps beyond the unit's address width");
    assert(domain.agaw <= this.agaw, "domains are made at the unit's AGAW");
  }

  attachDev(domain: IommuDomain, dev: Device): void {
    const info = this.info(dev);
    if (domain.type === "blocked") {
      this.deviceBlockTranslation(info);
      return;
    }
    if (domain instanceof VtdNestedDomain) return this.nestedAttachDev(domain, info);
    if (!(domain instanceof VtdPagingDomain) || domain.driver !== this) fail("EINVAL", "domain of another IOMMU");
    // intel_iommu_attach_device
    this.deviceBlockTranslation(info);
    this.prepareDomainAttach(domain);
    // dmar_domain_attach_device
    this.domainAttachIommu(domain);
    info.domain = domain;
    info.attached = true;
    domain.devices.add(info);
    try {
      if (domain.useFirstLevel) this.setupFirstLevel(domain, info, IOMMU_NO_PASID);
      else this.setupSecondLevel(domain, info, IOMMU_NO_PASID);
      info.atsEnabled = info.atsSupported; // iommu_enable_pci_caps
      this.cacheTagAssignDomain(domain, info, IOMMU_NO_PASID);
    } catch (e) {
      this.deviceBlockTranslation(info);
      throw e;
    }
  }

  /** intel_nested_attach_dev. */
  private nestedAttachDev(domain: VtdNestedDomain, info: DevInfo): void {
    this.deviceBlockTranslation(info);
    if (this.agaw < domain.parent.agaw) fail("ENODEV", "Adjusted guest address width not compatible");
    this.prepareDomainAttach(domain.parent);
    this.installDomain(domain, info, IOMMU_NO_PASID, () => this.setupNested(domain, info, IOMMU_NO_PASID));
    info.domain = domain;
    info.attached = true;
    domain.devices.add(info);
  }

  /** intel_iommu_set_dev_pasid (replacing an attached PASID first, as newer kernels' replace does). */
  setDevPasid(domain: IommuDomain, dev: Device, pasid: number): void {
    const info = this.info(dev);
    if (!this.pasidSupported) fail("EOPNOTSUPP", "the unit has no PASID support");
    if (domain instanceof VtdNestedDomain && domain.driver === this) return this.nestedSetDevPasid(domain, info, pasid);
    if (!(domain instanceof VtdPagingDomain) || domain.driver !== this) fail("EOPNOTSUPP", "the domain has no set_dev_pasid");
    if (domain.dirtyOps) fail("EINVAL", "a dirty-tracking domain cannot be attached to a PASID");
    if (pasid === IOMMU_NO_PASID) fail("EINVAL", "IOMMU_NO_PASID is the RID's");
    this.prepareDomainAttach(domain);
    if (info.pasids.has(pasid)) this.removeDevPasid(dev, pasid);
    this.installDomain(domain, info, pasid, () => {
      if (domain.useFirstLevel) this.setupFirstLevel(domain, info, pasid);
      else this.setupSecondLevel(domain, info, pasid);
    });
    info.pasids.set(pasid, domain);
    domain.devPasids.push({ info, pasid });
  }

  /**
   * intel_nested_set_dev_pasid [newer than 6.12]: a guest's stage-1 table (nested over its parent)
   * at a PASID — guest SVA. The same checks as a nested RID attach.
   */
  private nestedSetDevPasid(domain: VtdNestedDomain, info: DevInfo, pasid: number): void {
    if (pasid === IOMMU_NO_PASID) fail("EINVAL", "IOMMU_NO_PASID is the RID's");
    if (this.agaw < domain.parent.agaw) fail("ENODEV", "Adjusted guest address width not compatible");
    this.prepareDomainAttach(domain.parent);
    if (info.pasids.has(pasid)) this.removeDevPasid(info.dev, pasid);
    this.installDomain(domain, info, pasid, () => this.setupNested(domain, info, pasid));
    info.pasids.set(pasid, domain);
    domain.devPasids.push({ info, pasid });
  }

  /**
   * domain_attach_iommu + cache_tag_assign_domain + the PASID-entry setup, each undone when a
   * later one fails (the unwind every attach path of the driver shares).
   */
  private installDomain(domain: VtdPagingDomain | VtdNestedDomain, info: DevInfo, pasid: number, setup: () => void): void {
    this.domainAttachIommu(domain);
    try {
      this.cacheTagAssignDomain(domain, info, pasid);
      try {
        setup();
      } catch (e) {
        this.cacheTagUnassignDomain(domain, info, pasid);
        throw e;
      }
    } catch (e) {
      this.domainDetachIommu(domain);
      throw e;
    }
  }

  removeDevPasid(dev: Device, pasid: number): void {
    const info = this.info(dev);
    const domain = info.pasids.get(pasid);
    if (domain !== undefined) {
      info.pasids.delete(pasid);
      const i = domain.devPasids.findIndex((x) => x.info === info && x.pasid === pasid);
      if (i >= 0) domain.devPasids.splice(i, 1);
      this.cacheTagUnassignDomain(domain, info, pasid);
      this.domainDetachIommu(domain);
    }
    this.pasidTearDown(info, pasid, false);
  }

  // ==== domains ==========================================================================================

  hwInfo(_dev: Device): HwInfo {
    const data = new Uint8Array(IOMMU_HW_INFO_VTD_SIZE);
    const v = new DataView(data.buffer);
    v.setUint32(0, IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, true);
    v.setUint32(4, 0, true);
    v.setBigUint64(8, this.unit.capU64, true);
    v.setBigUint64(16, this.unit.ecapU64, true);
    return { type: IOMMU_HW_INFO_TYPE_INTEL_VTD, data };
  }

  capable(_dev: Device, cap: IommuCap): boolean {
    switch (cap) {
      case IommuCap.CACHE_COHERENCY:
        return true;
      case IommuCap.ENFORCE_CACHE_COHERENCY:
        return this.unit.ecap.sc === 1;
      case IommuCap.DIRTY_TRACKING:
        return this.ssadsSupported;
      default:
        return false;
    }
  }

  /** intel_iommu_domain_alloc_user. */
  domainAllocUser(dev: Device, flags: number, parent: PagingDomain | null, data: UserData | null): IommuDomain {
    this.info(dev);
    const dirty = (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
    const nestParent = (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
    // IOMMU_HWPT_ALLOC_PASID [newer than 6.12] is iommufd's: the driver accepts it (6.12's
    // iommufd never passes it)
    if (parent !== null) {
      if (!this.nestedSupported || flags & ~IOMMU_HWPT_ALLOC_PASID) fail("EOPNOTSUPP", "no nesting, or flags on a nested domain");
      return this.nestedDomainAlloc(parent, data);
    }
    if (flags & ~(IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID)) fail("EOPNOTSUPP", "unsupported flags");
    if (nestParent && !this.nestedSupported) fail("EOPNOTSUPP", "the unit has no nested translation");
    if (data !== null || (dirty && !this.ssadsSupported)) fail("EOPNOTSUPP", "paging domains take no data / no second-stage A/D");
    // Do not use first stage for user domain translation.
    return new VtdPagingDomain(this, { firstStage: false, nestParent, dirtyOps: dirty, agaw: this.agaw });
  }

  /** iommu_paging_domain_alloc (IOMMU_DOMAIN_UNMANAGED through domain_alloc): second stage, made at 57 bits. */
  domainAllocPaging(dev: Device): VtdPagingDomain {
    this.info(dev);
    // md_domain_init(DEFAULT_DOMAIN_ADDRESS_WIDTH); attach knocks extra levels off to the unit's AGAW.
    return new VtdPagingDomain(this, { firstStage: false, nestParent: false, dirtyOps: false, agaw: this.agaw });
  }

  /** The DMA-API default domain (IOMMU_DOMAIN_DMA): first stage when the unit has both stages. */
  domainAllocDma(dev: Device): VtdPagingDomain {
    this.info(dev);
    // first_level_by_default: with both stages, DMA domains use the first stage.
    const firstStage = this.unit.ecap.fsts === 1;
    return new VtdPagingDomain(this, { firstStage, nestParent: false, dirtyOps: false, agaw: this.agaw });
  }

  /** intel_nested_domain_alloc. */
  private nestedDomainAlloc(parent: PagingDomain, data: UserData | null): VtdNestedDomain {
    if (data === null || data.type !== IOMMU_HWPT_DATA_VTD_S1) fail("EOPNOTSUPP", "nested domains take IOMMU_HWPT_DATA_VTD_S1");
    if (!(parent instanceof VtdPagingDomain) || parent.driver !== this || !parent.nestedParent) fail("EINVAL", "the parent is not an intel NEST_PARENT domain");
    // iommu_copy_struct_from_user(&vtd, data, IOMMU_HWPT_DATA_VTD_S1, __reserved)
    if (data.len < IOMMU_HWPT_VTD_S1_SIZE || IOMMU_HWPT_VTD_S1_SIZE < data.len) fail("EINVAL", "bad iommu_hwpt_vtd_s1 length");
    const b = data.read(data.len);
    const d = new VtdNestedDomain(this, parent, u64le(b, 0), u64le(b, 8), u32le(b, 16));
    parent.s1Domains.add(d);
    return d;
  }

  /** intel_nested_cache_invalidate_user. */
  cacheInvalidateUser(domain: IommuDomain, array: UserDataArray): { done: number; error: Error | null } {
    assert(domain instanceof VtdNestedDomain, "cache_invalidate_user on a nested domain");
    let done = 0;
    try {
      if (array.type !== IOMMU_HWPT_INVALIDATE_DATA_VTD_S1) fail("EINVAL", "wrong invalidation data type");
      for (let i = 0; i < array.entryNum; i++) {
        // iommu_copy_struct_from_user_array(.., __reserved): entry_len must be the struct's size.
        if (array.entryLen < IOMMU_HWPT_VTD_S1_INVALIDATE_SIZE || IOMMU_HWPT_VTD_S1_INVALIDATE_SIZE < array.entryLen) fail("EINVAL", "bad entry_len");
        const e = array.entry(i);
        const addr = u64le(e, 0);
        const npages = u64le(e, 8);
        const flags = u32le(e, 16);
        const reserved = u32le(e, 20);
        if (flags & ~IOMMU_VTD_INV_FLAGS_LEAF || reserved) fail("EOPNOTSUPP", "unknown flags or reserved bits");
        if (addr % 4096n !== 0n || (npages === U64 && addr !== 0n)) fail("EINVAL", "unaligned address, or U64_MAX pages from a non-zero address");
        const size = (npages << 12n) & U64; // nrpages_to_size
        const end = (addr + size - 1n) & U64;
        this.cacheTagFlushRange(domain, addr, end, (flags & IOMMU_VTD_INV_FLAGS_LEAF) !== 0);
        done++;
      }
    } catch (e) {
      return { done, error: e as Error };
    }
    return { done, error: null };
  }

  /** intel_iommu_set_dirty_tracking (the domain's RID devices, and a parent's nested devices). */
  setDomainDirtyTracking(domain: VtdPagingDomain, enable: boolean): void {
    if (domain.dirtyTracking === enable) return;
    // every PASID entry whose second stage is this domain: its RID attachments, and (a nesting
    // parent) those of its nested domains, at the RID and at PASIDs
    const apply = (on: boolean): void => {
      for (const i of domain.devices) this.pasidSetupDirtyTracking(i, IOMMU_NO_PASID, on);
      if (!domain.nestedParent) return;
      for (const s1 of domain.s1Domains) {
        for (const i of s1.devices) this.pasidSetupDirtyTracking(i, IOMMU_NO_PASID, on);
        for (const { info, pasid } of s1.devPasids) this.pasidSetupDirtyTracking(info, pasid, on);
      }
    };
    try {
      apply(enable);
    } catch (e) {
      try {
        apply(domain.dirtyTracking);
      } catch {
        // the unwind is best effort, as the kernel's
      }
      throw e;
    }
    domain.dirtyTracking = enable;
  }

  // ==== page requests (prq.c, intel_iommu_enable_iopf) ====================================================

  /** intel_iommu_enable_iopf: PRE in the context entry, and the device's PRI on. */
  enableIopf(dev: Device): void {
    const info = this.info(dev);
    if (!info.atsEnabled || !info.priSupported) fail("ENODEV", "the device has no ATS enabled or no PRI");
    if (info.priEnabled) fail("EBUSY", "PRI already enabled");
    this.contextFlipPri(info, true);
    this.unit.enablePri(info.sid); // pci_enable_pri
    info.priEnabled = true;
  }

  /** intel_iommu_disable_iopf. */
  disableIopf(dev: Device): void {
    const info = this.info(dev);
    if (!info.priEnabled) fail("EINVAL", "PRI is not enabled");
    this.contextFlipPri(info, false);
    this.unit.disablePri(info.sid);
    info.priEnabled = false;
  }

  private contextFlipPri(info: DevInfo, enable: boolean): void {
    const c = this.contextAddr(info.bus, info.devfn, false);
    if (c === null || SmContextEntry.acc.p.get(c.f, c.w) === 0) fail("ENODEV", "no context entry");
    SmContextEntry.acc.pre.set(c.f, c.w, enable ? 1 : 0);
    this.contextFlushNoPasid(info);
  }

  /** prq_event_thread: read the page request queue, report each request, move the head. */
  private prqEventThread(): void {
    const unit = this.unit;
    unit.write32(VtdReg.PRS, Prs.PPR);
    const size = PAGE_SIZE << PRQ_ORDER;
    const ringMask = size - 0x20;
    const tail = Number(unit.read64(VtdReg.PQT)) & ringMask;
    let head = Number(unit.read64(VtdReg.PQH)) & ringMask;
    const responses: (() => void)[] = [];
    while (head !== tail) {
      const pa = this.prqPfn * PAGE_SIZE + head;
      const qw0 = BigInt(this.mem.read32(pa)) | (BigInt(this.mem.read32(pa + 4)) << 32n);
      const qw1 = BigInt(this.mem.read32(pa + 8)) | (BigInt(this.mem.read32(pa + 12)) << 32n);
      const req = {
        pp: Number((qw0 >> 8n) & 1n) === 1,
        rid: Number((qw0 >> 16n) & 0xffffn),
        pasid: Number((qw0 >> 32n) & 0xfffffn),
        exe: Number((qw0 >> 52n) & 1n) === 1,
        pm: Number((qw0 >> 53n) & 1n) === 1,
        rd: Number(qw1 & 1n) === 1,
        wr: Number((qw1 >> 1n) & 1n) === 1,
        lpig: Number((qw1 >> 2n) & 1n) === 1,
        prgi: Number((qw1 >> 3n) & 0x1ffn),
        addr: (qw1 >> 12n) << 12n,
      };
      const perm =
        (req.rd ? IOMMU_FAULT_PERM_READ : 0) | (req.wr ? IOMMU_FAULT_PERM_WRITE : 0) | (req.exe ? IOMMU_FAULT_PERM_EXEC : 0) | (req.pm ? IOMMU_FAULT_PERM_PRIV : 0);
      const log: VtdPageRequestLogEntry = { rid: req.rid, pasid: req.pasid, pasidPresent: req.pp, addr: req.addr, perm, prgi: req.prgi, lastPage: req.lpig, outcome: "invalid" };
      this.prqLog.push(log);
      // is_canonical_address with 57-bit virtual addresses (__VIRTUAL_MASK_SHIFT 56).
      const sext = BigInt.asUintN(64, BigInt.asIntN(57, req.addr));
      const bad = !req.pp || sext !== req.addr || (req.pm && (req.rd || req.wr)) || (req.exe && req.rd);
      const info = this.bySid.get(req.rid);
      if (bad || (!(req.lpig && !req.rd && !req.wr) && (info === undefined || !info.atsSupported))) {
        // handle_bad_prq_event: answer Invalid when it is the group's last page.
        if (req.lpig) responses.push(() => this.qiSubmitSync([this.pgrpResponse(req.rid, req.pasid, req.pp, IOMMU_PAGE_RESP_INVALID, req.prgi, true)]));
      } else if (req.lpig && !req.rd && !req.wr) {
        log.outcome = "dropped"; // stop marker
      } else {
        log.outcome = "reported";
        const dev = (info as DevInfo).dev;
        const fault: IopfFault = { deviceKey: dev, pasid: req.pasid, pasidValid: req.pp, lastPage: req.lpig, grpid: req.prgi, perm, addr: req.addr };
        // iommu_report_device_fault: the domain attached to that PASID (or the RID) handles it.
        const d = this.faultDomain(info as DevInfo, req.pp ? req.pasid : IOMMU_NO_PASID);
        if (d !== null && d.iopfHandler !== null) {
          const h = d.iopfHandler;
          responses.push(() => h(fault));
        } else if (req.lpig) {
          log.outcome = "invalid";
          responses.push(() => this.pageResponse(dev, fault, IOMMU_PAGE_RESP_INVALID));
        }
      }
      head = (head + 32) & ringMask;
    }
    unit.write64(VtdReg.PQH, BigInt(tail));
    if ((unit.read32(VtdReg.PRS) & Prs.PRO) !== 0) {
      const h = Number(unit.read64(VtdReg.PQH)) & ringMask;
      const t = Number(unit.read64(VtdReg.PQT)) & ringMask;
      if (h === t) unit.write32(VtdReg.PRS, Prs.PRO);
    }
    // The handlers run after the queue is consumed (the kernel's iopf workqueue): an answer given
    // at once retries the DMA, which may queue a new request and re-enter this thread.
    for (const r of responses) r();
  }

  /** The domain translating (info, pasid): the RID's for IOMMU_NO_PASID. */
  private faultDomain(info: DevInfo, pasid: number): IommuDomain | null {
    if (pasid === IOMMU_NO_PASID) return info.domain;
    return info.pasids.get(pasid) ?? (info.domain instanceof VtdNestedDomain ? info.domain : null);
  }

  private pgrpResponse(rid: number, pasid: number, pp: boolean, code: number, prgi: number, lpig: boolean): QiDesc {
    return [
      (BigInt(pasid) << 32n) | (BigInt(rid) << 16n) | (pp ? 1n << 4n : 0n) | (BigInt(code) << 12n) | QI_PGRP_RESP_TYPE,
      (BigInt(prgi) << 3n) | (lpig ? 1n << 2n : 0n),
      0n,
      0n,
    ];
  }

  /** intel_iommu_page_response. */
  pageResponse(dev: Device, last: IopfFault, code: number): void {
    const info = this.info(dev);
    this.qiSubmitSync([this.pgrpResponse(info.sid, last.pasid, last.pasidValid, code, last.grpid, last.lastPage)]);
  }

  // ==== faults (dmar_fault) ================================================================================

  private dmarFault(): void {
    const unit = this.unit;
    const fsts = unit.read32(VtdReg.FSTS);
    if ((fsts & Fsts.PPF) !== 0) {
      let idx = (fsts >>> 8) & 0xff;
      const base = unit.cap.fro * 16;
      const nfr = unit.cap.nfr + 1;
      for (;;) {
        const off = base + idx * 16;
        const w3 = unit.read32(off + 12);
        if ((w3 & 0x80000000) === 0) break;
        const w2 = unit.read32(off + 8);
        const entry: VtdFaultLogEntry = {
          write: ((w3 >>> 30) & 1) === 0,
          reason: w3 & 0xff,
          sid: w2 & 0xffff,
          pasid: (w2 >>> 31) & 1 ? (w3 >>> 8) & 0xfffff : -1,
          addr: unit.read64(off) & PAGE_MASK,
        };
        unit.write32(off + 12, 0x80000000);
        this.faultLog.push(entry);
        this.onFault?.(entry);
        idx = (idx + 1) % nfr;
      }
    }
    unit.write32(VtdReg.FSTS, Fsts.PFO | Fsts.PPF | (1 << 7));
  }
}
