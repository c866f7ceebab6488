/**
 * The Linux arm-smmu-v3 driver over one SmmuUnit (hw/smmuv3/unit.ts): what it writes into the
 * stream table, CD tables and queues, the commands it issues and when, and what iommufd sees
 * (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c of 6.12; its iommufd side, newer than 6.12, from
 * arm-smmu-v3-iommufd.c of the first kernels with vIOMMU objects).
 *
 *  - Probe and reset as arm_smmu_device_hw_probe / arm_smmu_device_reset: features from the ID
 *    registers, a linear or two-level stream table of abort STEs, the command / event / PRI
 *    queues, CFGI_ALL and TLBI_NSNH_ALL, interrupts, SMMUEN.
 *  - Commands go through arm_smmu_cmdq_issue_cmdlist's shape: batches of up to 64 commands, the
 *    last followed by a CMD_SYNC whose completion is an MSI write into its own queue slot (MSI
 *    polling) when the SMMU is coherent and has MSIs, else SEV. An illegal command is skipped by
 *    the GERROR handler as Linux does (replaced by a CMD_SYNC, then acknowledged).
 *  - STEs and CDs are written by arm_smmu_write_entry's hitless / breaking sequence, each step
 *    followed by its CFGI (CFGI_STE or CFGI_CD per stream) and CMD_SYNC.
 *  - Paging domains: stage 1 (ASID, CD) by default, stage 2 (VMID) for NEST_PARENT; tables built
 *    by a PageTableEngine in host memory; unmap invalidates the TLB at once (strict) or gathers
 *    until flush() (lazy); map never needs a TLBI.
 *  - vIOMMU (IOMMU_VIOMMU_TYPE_ARM_SMMUV3) on a NEST_PARENT domain: nested domains from a vSTE,
 *    guest invalidation commands with the VMID forced and vSIDs translated, vDEVICEs, and
 *    forwarding of a nested device's stage-1 events as vEVENTs with the virtual SID.
 *
 * Units at the PagingDomain interface: IO page indices of 4 KiB (pgShift 12), physical bytes.
 */
import { assert, fail } from "../../errno.js";
import type { HwMemory } from "../../hw/memory.js";
import { PageTableEngine } from "../../hw/pagetable/engine.js";
import { PT_ACCESSED, PT_CACHE, PT_DIRTY, PT_EXEC, PT_READ, PT_USER, PT_WRITE, armStage1, armStage2 } from "../../hw/pagetable/format.js";
import { CmdOp, PriResp, ResumeAction, SyncCs, encodeCmdWords, type CmdInput } from "../../hw/smmuv3/cmdq.js";
import { EventId, PriEntry } from "../../hw/smmuv3/events.js";
import { convertViommuCmd, validateVste } from "../../hw/smmuv3/nesting.js";
import { Idr1, Idr3, oasCode } from "../../hw/smmuv3/regs.js";
import { Cd, L1Cd, L1Std, S1Dss, S1Fmt, Ste, SteConfig, CacheAttr, Shareability } from "../../hw/smmuv3/tables.js";
import { decodeFeatures, type SmmuFeatures } from "../../hw/smmuv3/unit-config.js";
import {
  CMDQ_CONS_ERR_MASK,
  CMDQ_CONS_ERR_SHIFT,
  CR0_CMDQEN,
  CR0_EVTQEN,
  CR0_PRIQEN,
  CR0_SMMUEN,
  CmdqErr,
  GERROR_CMDQ_ERR,
  IRQ_CTRL_EVTQ_IRQEN,
  IRQ_CTRL_GERROR_IRQEN,
  IRQ_CTRL_PRIQ_IRQEN,
  Q_OVF,
  SmmuReg,
  STRTAB_FMT_2LVL,
  STRTAB_FMT_LINEAR,
  queueBase,
  strtabBaseCfg,
} from "../../hw/smmuv3/unit-regs.js";
import type { SmmuUnit } from "../../hw/smmuv3/unit.js";
import { Device, ResvType, type IommuGroup, type ResvRegion } from "../device.js";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE, NestedDomain, PagingDomain, type IommuDomain, type IopfFault } from "../domain.js";
import { IommuCap, type HwInfo, type IommuDriver, type UserData, type UserDataArray, type ViommuEventSink, type ViommuOps } from "../driver.js";

// ---- uAPI values (include/uapi/linux/iommufd.h) -----------------------------------------------------
export const IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2;
export const IOMMU_HWPT_DATA_ARM_SMMUV3 = 2;
export const IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1;
export const IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1;
export const IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1;
const HWPT_ALLOC_NEST_PARENT = 1 << 0;
const HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
const HWPT_ALLOC_PASID = 1 << 3;
/** sizeof(struct iommu_hw_info_arm_smmuv3): flags, __reserved, idr[6], iidr, aidr. */
export const HW_INFO_ARM_SMMUV3_SIZE = 40;

// ---- the driver's constants (arm-smmu-v3.h) -----------------------------------------------------------
/** The software MSI window (MSI_IOVA_BASE / MSI_IOVA_LENGTH). */
export const MSI_IOVA_BASE = 0x8000000n;
export const MSI_IOVA_LENGTH = 0x100000n;
const STRTAB_SPLIT = 8;
const STRTAB_MAX_L1_ENTRIES = 1 << 17;
const CTXDESC_L2_ENTRIES = 1024;
const CTXDESC_LINEAR_CDMAX = 10;
const CMDQ_BATCH_ENTRIES = 64;
/** Q_MAX_SZ_SHIFT (PAGE_SHIFT + MAX_PAGE_ORDER) less the entry size shifts. */
const CMDQ_MAX_SZ_SHIFT = 22 - 4;
const EVTQ_MAX_SZ_SHIFT = 22 - 5;
const PRIQ_MAX_SZ_SHIFT = 22 - 4;
/** io-pgtable-arm's MAIR: NC, write-back, device nGnRE, inner-NC/outer-WB at indices 0..3. */
const LPAE_MAIR = 0xf404ff44;
/** iommu_fault_page_request perm bits. */
const IOMMU_FAULT_PERM_READ = 1 << 0;
const IOMMU_FAULT_PERM_WRITE = 1 << 1;
const IOMMU_FAULT_PERM_EXEC = 1 << 2;
const IOMMU_FAULT_PERM_PRIV = 1 << 3;
/** Page response codes (IOMMUFD_PAGE_RESP_SUCCESS / _INVALID, and the kernel's FAILURE). */
const PAGE_RESP_SUCCESS = 0;

export type SmmuInvalidation = "strict" | "lazy";

export interface SmmuDriverOptions {
  /** Table walks and queue accesses are coherent (firmware's dma-coherent; default IDR0.COHACC). */
  coherent?: boolean;
  /** How unmap invalidates the TLB: at once (strict, the default) or gathered until flush(). */
  invalidation?: SmmuInvalidation;
  /** ARM_SMMU_OPT_SKIP_PREFETCH: no CMD_PREFETCH_CONFIG after installing an STE. */
  skipPrefetch?: boolean;
  /** Keep every command issued, decoded words, in commandLog (tests, reports). */
  traceCommands?: boolean;
}

/** What the firmware and the PCI device tell the driver about a master. */
export interface SmmuMasterOptions {
  /** StreamIDs of the device (default: [dev.sid]). */
  sids?: number[];
  /** "dma-can-stall": stage-1 faults may stall (with the SMMU's stall model). */
  canStall?: boolean;
  /** The root complex is CANWBS (IORT): no cache maintenance ever needed; default true. */
  canwbs?: boolean;
}

/** A command as the trace records it. */
export interface TracedCmd {
  op: number;
  words: Uint32Array;
}

/** An event the driver had nothing to do with (Linux prints it). */
export interface SmmuLoggedEvent {
  id: number;
  sid: number;
  words: Uint32Array;
}

// ---- qword helpers (configuration structures are written as 64-bit words) --------------------------
const M64 = (1n << 64n) - 1n;

function genmask(hi: number, lo: number): bigint {
  return ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
}

function toQwords(w: Uint32Array): bigint[] {
  const q: bigint[] = [];
  for (let i = 0; i < w.length; i += 2) q.push(BigInt(w[i]) | (BigInt(w[i + 1]) << 32n));
  return q;
}

const STE0_V = 1n;
const STE0_CFG = genmask(3, 1);
const STE0_S1 = genmask(5, 4) | genmask(51, 6) | genmask(63, 59);
const STE1_S1DSS = genmask(1, 0);
const STE1_S1 = genmask(7, 0) | (1n << 27n) | genmask(31, 30) | genmask(29, 28);
const STE1_EATS = genmask(29, 28);
const STE1_SHCFG = genmask(45, 44);
const STE1_MEV = 1n << 19n;
const STE1_S2FWB = 1n << 25n;
const STE2_S2VMID = genmask(15, 0);
const STE2_S2 = genmask(15, 0) | genmask(50, 32) | (1n << 51n) | (1n << 52n) | (1n << 54n) | (1n << 57n) | (1n << 58n);
const STE3_S2TTB = genmask(51, 4);
const CD0_V = 1n << 31n;
const CD0_EPD0 = 1n << 14n;
/** T0SZ, TG0, IR0, OR0, SH0. */
const CD0_TCR0 = genmask(13, 0);
const CD1_TTB0 = genmask(51, 4);

/** arm_smmu_get_ste_used: the STE bits the hardware uses for this entry's configuration. */
function steUsed(e: readonly bigint[]): bigint[] {
  const u = [STE0_V, 0n, 0n, 0n, 0n, 0n, 0n, 0n];
  if ((e[0] & STE0_V) === 0n) return u;
  u[0] |= STE0_CFG;
  const cfg = Number((e[0] & STE0_CFG) >> 1n);
  if ((cfg & 1) !== 0) {
    u[0] |= STE0_S1;
    u[1] |= STE1_S1 | STE1_MEV;
    u[2] |= STE2_S2VMID;
    if ((e[1] & STE1_S1DSS) === BigInt(S1Dss.BYPASS)) u[1] |= STE1_SHCFG;
  }
  if ((cfg & 2) !== 0) {
    u[1] |= STE1_S2FWB | STE1_EATS | STE1_SHCFG | STE1_MEV;
    u[2] |= STE2_S2;
    u[3] |= STE3_S2TTB;
  }
  if (cfg === SteConfig.BYPASS) u[1] |= STE1_SHCFG;
  return u;
}

/** arm_smmu_get_cd_used. */
function cdUsed(e: readonly bigint[]): bigint[] {
  if ((e[0] & CD0_V) === 0n) return [CD0_V, 0n, 0n, 0n, 0n, 0n, 0n, 0n];
  const u = [M64, M64, M64, M64, M64, M64, M64, M64];
  if ((e[0] & CD0_EPD0) !== 0n) {
    u[0] &= ~CD0_TCR0 & M64;
    u[1] &= ~CD1_TTB0 & M64;
  }
  return u;
}

// =========================================================================================================
// Domains

/** A paging domain: stage 1 (ASID) or stage 2 (VMID), tables built by a PageTableEngine. */
export class SmmuDomain extends PagingDomain {
  readonly pgShift = 12;
  /** 4 KiB | 2 MiB | 1 GiB (smmu->pgsize_bitmap with the 4 KiB granule). */
  readonly pgsizeBitmap: bigint;
  readonly apertureStart = 0n;
  readonly apertureEnd: bigint;
  readonly dirtyOps: boolean;
  readonly stage: 1 | 2;
  readonly nestParent: boolean;
  /** ASID (stage 1) or 0; VMID (stage 2) or 0. */
  readonly asid: number;
  readonly vmid: number;
  readonly engine: PageTableEngine;
  /** "strict": unmap invalidates at once; "lazy": ranges gathered until flush(). */
  invalidation: SmmuInvalidation;
  /** The masters (and SSIDs) the domain is installed for (smmu_domain->devices). */
  readonly attached = new Map<SmmuMaster, Set<number>>();
  dirtyTracking = false;
  private mapped = 0;
  private gatherStart = -1;
  private gatherEnd = -1;
  private freed = false;

  constructor(
    readonly smmu: SmmuDriver,
    opts: { stage: 1 | 2; nestParent: boolean; dirty: boolean; asid: number; vmid: number; canwbs: boolean },
  ) {
    super(smmu);
    this.stage = opts.stage;
    this.nestParent = opts.nestParent;
    this.dirtyOps = opts.dirty;
    this.asid = opts.asid;
    this.vmid = opts.vmid;
    this.invalidation = smmu.invalidation;
    this.enforceCacheCoherency = opts.canwbs;
    const f = smmu.features;
    this.pgsizeBitmap = smmu.pgsizeBitmap;
    const ias = opts.stage === 1 ? 48 : smmu.ias;
    this.apertureEnd = (1n << BigInt(ias)) - 1n;
    const fmt = opts.stage === 1 ? armStage1({ inputBits: ias, outputBits: smmu.ias }) : armStage2({ inputBits: ias, outputBits: f.oas });
    this.engine = new PageTableEngine(smmu.mem, fmt, { dbm: opts.dirty });
  }

  /** The leaf prot io-pgtable-arm writes for IOMMU_READ / WRITE / CACHE (never NOEXEC or PRIV from iommufd). */
  private ptProt(prot: number): number {
    let p = PT_ACCESSED | PT_EXEC;
    if (prot & IOMMU_READ) p |= PT_READ;
    if (prot & IOMMU_WRITE) p |= PT_WRITE | (this.dirtyOps ? PT_DIRTY : 0);
    if (prot & IOMMU_CACHE) p |= PT_CACHE;
    if (this.stage === 1) p |= PT_USER;
    return p;
  }

  map(iova: number, pa: number, n: number, prot: number, smallOnly: boolean): void {
    assert(!this.freed, "map on a freed domain");
    assert(pa % 4096 === 0, "physical address is 4 KiB aligned");
    const p = this.ptProt(prot);
    const ppn = pa / 4096;
    if (!smallOnly) {
      this.engine.map(iova, ppn, n, p);
    } else {
      // PAGE_SIZE leaves only: never hand the engine a whole aligned 2 MiB block.
      let done = 0;
      try {
        while (done < n) {
          const v = iova + done;
          let k = Math.min(n - done, 512 - (v % 512));
          if (k === 512) k = 511;
          this.engine.map(v, ppn + done, k, p);
          done += k;
        }
      } catch (e) {
        if (done > 0) this.engine.unmap(iova, done);
        throw e;
      }
    }
    this.mapped += n;
  }

  unmap(iova: number, n: number): void {
    const gone = this.engine.unmap(iova, n);
    this.mapped -= gone;
    if (this.invalidation === "strict") this.smmu.tlbInvRange(this, iova, n, true);
    else {
      this.gatherStart = this.gatherStart < 0 ? iova : Math.min(this.gatherStart, iova);
      this.gatherEnd = Math.max(this.gatherEnd, iova + n);
    }
  }

  /** Lazy invalidation: flush what unmap gathered (arm_smmu_flush_iotlb_all: the whole ASID / VMID). */
  flush(): void {
    if (this.gatherStart < 0) return;
    this.gatherStart = -1;
    this.gatherEnd = -1;
    this.smmu.tlbInvContext(this);
  }

  /** Unmapped ranges not yet invalidated (lazy mode): [start, end) in IO pages, or null. */
  get pendingFlush(): [number, number] | null {
    return this.gatherStart < 0 ? null : [this.gatherStart, this.gatherEnd];
  }

  iovaToPhys(iova: number): number {
    const w = this.engine.walk(iova);
    return w.ppn < 0 ? -1 : w.ppn * 4096;
  }

  protAt(iova: number): number {
    const w = this.engine.walk(iova);
    if (w.ppn < 0) return 0;
    return (w.perms & 1 ? IOMMU_READ : 0) | (w.perms & 2 ? IOMMU_WRITE : 0);
  }

  mappedPages(): number {
    return this.mapped;
  }

  /** arm_smmu_set_dirty_tracking: always on with HD; nothing to switch. */
  override setDirtyTracking(enable: boolean): void {
    if (!this.dirtyOps) fail("EINVAL", "domain has no dirty tracking");
    this.dirtyTracking = enable;
  }

  /** io-pgtable-arm's read_and_clear_dirty, then the TLB invalidation of what was cleaned (iommu_iotlb_sync). */
  override readAndClearDirty(iova: number, n: number, noClear: boolean, record: ((first: number, n: number) => void) | null): void {
    if (!this.dirtyOps) fail("EINVAL", "domain has no dirty tracking");
    let lo = -1;
    let hi = -1;
    this.engine.readAndClearDirty(
      iova,
      n,
      (v, k) => {
        record?.(v, k);
        lo = lo < 0 ? v : Math.min(lo, v);
        hi = Math.max(hi, v + k);
      },
      noClear,
    );
    if (!noClear && lo >= 0) this.smmu.tlbInvRange(this, lo, hi - lo, true);
  }

  /** iommu_domain_free: give back the ASID / VMID and the tables. */
  override free(): void {
    if (this.freed) return;
    this.freed = true;
    this.smmu.releaseIds(this);
    this.engine.destroy();
  }
}

/** A nested domain: a guest's vSTE over a stage-2 parent, through a vIOMMU. */
export class SmmuNestedDomain extends NestedDomain {
  constructor(
    driver: SmmuDriver,
    readonly viommu: SmmuViommu,
    /** The vSTE's two qwords as kept (EATS cleared; all zero when V was 0). */
    readonly ste: readonly [bigint, bigint],
    readonly enableAts: boolean,
  ) {
    super(driver, viommu.parent);
  }

  /** The vSTE's Config (abort when V = 0). */
  get config(): number {
    return (this.ste[0] & STE0_V) === 0n ? SteConfig.ABORT : Number((this.ste[0] & STE0_CFG) >> 1n);
  }
}

// =========================================================================================================
// Masters (arm_smmu_master) and their CD tables

interface CdTable {
  s1fmt: number;
  s1cdmax: number;
  /** Byte address of the linear table or of the L1 table. */
  base: number;
  /** Two-level: leaf tables by L1 index (byte address). */
  readonly l2: Map<number, number>;
  numL1: number;
  usedSsids: number;
}

export class SmmuMaster {
  cd: CdTable | null = null;
  /** The RID's domain (null: blocked, as after probe). */
  domain: IommuDomain | null = null;
  /** PASID attachments (set_dev_pasid). */
  readonly pasids = new Map<number, SmmuDomain>();
  /** master->cd_table.in_ste: the installed STE is a CD-table STE. */
  cdInSte = false;
  /** The RID is attached to the identity domain (bypass). */
  identity = false;
  /** The vIOMMU and virtual SID events of a nested attachment go to. */
  vmaster: { viommu: SmmuViommu; vsid: number } | null = null;
  constructor(
    readonly dev: Device,
    readonly sids: readonly number[],
    readonly ssidBits: number,
    readonly stallEnabled: boolean,
    readonly canwbs: boolean,
  ) {}
}

// =========================================================================================================
// vIOMMU

export class SmmuViommu implements ViommuOps {
  readonly type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3;
  /** vSID -> device, and back. */
  private readonly byVsid = new Map<number, Device>();
  private readonly vsidOf = new Map<Device, number>();

  constructor(
    readonly smmu: SmmuDriver,
    readonly parent: SmmuDomain,
    readonly vmid: number,
    readonly sink: ViommuEventSink,
  ) {}

  /** arm_vsmmu_alloc_domain_nested: flags must be 0; the vSTE is validated as arm_smmu_validate_vste. */
  allocDomainNested(dev: Device, flags: number, data: UserData): NestedDomain {
    void dev;
    if (flags) fail("EOPNOTSUPP", "nested SMMUv3 domains take no flags");
    // iommu_copy_struct_from_user(&arg, data, IOMMU_HWPT_DATA_ARM_SMMUV3, ste): exactly 16 bytes
    if (data.type !== IOMMU_HWPT_DATA_ARM_SMMUV3) fail("EINVAL", "data type is not IOMMU_HWPT_DATA_ARM_SMMUV3");
    if (data.len < 16 || data.len > 16) fail("EINVAL", "struct iommu_hwpt_arm_smmuv3 is 16 bytes");
    const v = validateVste(data.read(16));
    const q = toQwords(v.ste);
    return new SmmuNestedDomain(this.smmu, this, [q[0], q[1]], v.enableAts);
  }

  /**
   * arm_vsmmu_cache_invalidate: copy the whole array (EINVAL for another type or no entries;
   * entries shorter than 16 bytes are zero-extended, longer ones must be zero beyond: E2BIG),
   * convert each command (EIO), issuing them in batches of 63 with a CMD_SYNC. On an error the
   * entries before it count as handled, even those converted but not yet issued (the kernel's
   * entry_num = cur - cmds).
   */
  cacheInvalidate(array: UserDataArray): { done: number; error: Error | null } {
    let cur = 0;
    try {
      if (array.type !== IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3) fail("EINVAL", "invalidation data type is not ARM_SMMUV3");
      if (array.entryNum === 0) fail("EINVAL", "no invalidation entries");
      const raw: Uint8Array[] = [];
      for (let i = 0; i < array.entryNum; i++) {
        const e = array.entry(i);
        const k = new Uint8Array(16);
        k.set(e.subarray(0, Math.min(16, e.length)));
        for (let j = 16; j < e.length; j++) if (e[j] !== 0) fail("E2BIG", "non-zero bytes beyond the 16-byte command");
        raw.push(k);
      }
      const cmds: Uint32Array[] = [];
      let last = 0;
      const ctx = { vmid: this.vmid, vsidToSid: (vsid: number) => this.vsidToSid(vsid) };
      while (cur !== raw.length) {
        cmds.push(convertViommuCmd(raw[cur], ctx));
        cur++;
        if (cur !== raw.length && cur - last !== CMDQ_BATCH_ENTRIES - 1) continue;
        this.smmu.issueCmdlist(cmds.slice(last, cur), true);
        last = cur;
      }
    } catch (e) {
      return { done: cur, error: e as Error };
    }
    return { done: cur, error: null };
  }

  private vsidToSid(vsid: number): number | undefined {
    const dev = this.byVsid.get(vsid);
    if (dev === undefined) return undefined;
    return this.smmu.masterOf(dev).sids[0];
  }

  vdeviceInit(dev: Device, virtId: bigint): void {
    if (this.vsidOf.has(dev)) fail("EEXIST", "the device already has a vDEVICE on this vIOMMU");
    const vsid = Number(virtId);
    this.byVsid.set(vsid, dev);
    this.vsidOf.set(dev, vsid);
  }

  vdeviceDestroy(dev: Device): void {
    const vsid = this.vsidOf.get(dev);
    if (vsid === undefined) return;
    this.vsidOf.delete(dev);
    this.byVsid.delete(vsid);
    const m = this.smmu.findMaster(dev);
    if (m?.vmaster?.viommu === this) m.vmaster = null;
  }

  /** The virtual SID of dev on this vIOMMU (iommufd_viommu_get_vdev_id), or undefined. */
  vsid(dev: Device): number | undefined {
    return this.vsidOf.get(dev);
  }

  destroy(): void {
    this.byVsid.clear();
    this.vsidOf.clear();
  }
}

// =========================================================================================================
// The driver

export class SmmuDriver implements IommuDriver {
  readonly name = "arm-smmu-v3";
  readonly mem: HwMemory;
  readonly features: SmmuFeatures;
  readonly coherent: boolean;
  readonly invalidation: SmmuInvalidation;
  readonly pgsizeBitmap: bigint;
  /** smmu->ias: max(IAS, OAS). */
  readonly ias: number;
  readonly nesting: boolean;
  readonly st2l: boolean;
  readonly msiPoll: boolean;
  readonly stallForce: boolean;
  readonly stalls: boolean;
  readonly s2fwb: boolean;
  readonly attrTypesOvr: boolean;
  readonly commandLog: TracedCmd[] | null;
  /** Events no handler took (Linux logs them), the last 256. */
  readonly eventLog: SmmuLoggedEvent[] = [];
  /** Page requests answered as unexpected (DENY), count. */
  unexpectedPageRequests = 0;

  private readonly skipPrefetch: boolean;
  private readonly streams = new Map<number, SmmuMaster>();
  private readonly masters = new Map<Device, SmmuMaster>();
  private readonly asids = new Set<number>();
  private readonly vmids = new Set<number>();
  // stream table
  private strtab = 0;
  private numL1 = 0;
  private readonly l2strtab = new Map<number, number>();
  // queues
  private readonly cmdqBase: number;
  private readonly cmdqShift: number;
  private cmdqProd = 0;
  private readonly evtqBase: number;
  private readonly evtqShift: number;
  private readonly priqBase: number;
  private readonly priqShift: number;

  constructor(
    readonly unit: SmmuUnit,
    opts: SmmuDriverOptions = {},
  ) {
    this.mem = unit.mem;
    const r = (off: number): number => unit.readReg(off);
    const idr = { idr0: r(SmmuReg.IDR0), idr1: r(SmmuReg.IDR1), idr2: 0, idr3: r(SmmuReg.IDR3), idr4: 0, idr5: r(SmmuReg.IDR5), iidr: 0, aidr: 0 };
    const f = decodeFeatures(idr);
    this.features = f;
    if (!f.s1 && !f.s2) fail("ENXIO", "no translation support");
    const i1 = Idr1.decodeWords(new Uint32Array([idr.idr1]));
    if (i1.tablesPreset || i1.queuesPreset || i1.rel) fail("ENXIO", "embedded implementation not supported");
    this.attrTypesOvr = i1.attrTypesOvr === 1;
    this.s2fwb = Idr3.decodeWords(new Uint32Array([idr.idr3])).fwb === 1;
    this.coherent = opts.coherent ?? (idr.idr0 & (1 << 4)) !== 0;
    this.invalidation = opts.invalidation ?? "strict";
    this.skipPrefetch = opts.skipPrefetch ?? false;
    this.commandLog = opts.traceCommands ? [] : null;
    this.stalls = f.stallModel === 0 || f.stallModel === 2;
    this.stallForce = f.stallModel === 2;
    this.msiPoll = f.msi && this.coherent;
    let pg = 0n;
    if (f.gran64k) pg |= (1n << 16n) | (1n << 29n);
    if (f.gran16k) pg |= (1n << 14n) | (1n << 25n);
    if (f.gran4k) pg |= (1n << 12n) | (1n << 21n) | (1n << 30n);
    this.pgsizeBitmap = pg;
    this.ias = f.oas;
    this.nesting = f.s1 && f.s2;
    this.st2l = f.st2l && f.sidBits > STRTAB_SPLIT;

    // queues (arm_smmu_init_queues): naturally aligned, sizes capped
    this.cmdqShift = Math.min(CMDQ_MAX_SZ_SHIFT, f.cmdqLog2);
    if (this.cmdqShift <= Math.log2(CMDQ_BATCH_ENTRIES)) fail("ENXIO", `command queue size <= ${CMDQ_BATCH_ENTRIES} entries not supported`);
    this.evtqShift = Math.min(EVTQ_MAX_SZ_SHIFT, f.evtqLog2);
    this.priqShift = Math.min(PRIQ_MAX_SZ_SHIFT, f.priqLog2);
    this.cmdqBase = this.allocDma(2 ** this.cmdqShift * 16);
    this.evtqBase = this.allocDma(2 ** this.evtqShift * 32);
    this.priqBase = f.pri ? this.allocDma(2 ** this.priqShift * 16) : 0;
    this.initStrtab();
    this.reset();
  }

  // ---- memory -----------------------------------------------------------------------------------------

  /** dma_alloc_coherent: zeroed, naturally aligned (to its power-of-two page count). */
  private allocDma(bytes: number): number {
    const frames = 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(bytes / 4096))));
    return this.mem.allocTable(frames) * 4096;
  }

  private writeWords(pa: number, w: Uint32Array): void {
    for (let i = 0; i < w.length; i++) this.mem.write32(pa + 4 * i, w[i]);
  }

  private readQwords(pa: number, n: number): bigint[] {
    const out: bigint[] = [];
    for (let i = 0; i < n; i++) out.push(BigInt(this.mem.read32(pa + 8 * i)) | (BigInt(this.mem.read32(pa + 8 * i + 4)) << 32n));
    return out;
  }

  private writeQword(pa: number, v: bigint): void {
    this.mem.write32(pa, Number(v & 0xffffffffn));
    this.mem.write32(pa + 4, Number((v >> 32n) & 0xffffffffn));
  }

  // ---- probe and reset ------------------------------------------------------------------------------

  private initStrtab(): void {
    const f = this.features;
    if (this.st2l) {
      const lastL1 = Math.floor((2 ** f.sidBits - 1) / 2 ** STRTAB_SPLIT);
      this.numL1 = Math.min(lastL1 + 1, STRTAB_MAX_L1_ENTRIES);
      this.strtab = this.allocDma(this.numL1 * 8);
    } else {
      const n = 2 ** f.sidBits;
      this.strtab = this.allocDma(n * 64);
      const abort = Ste.encodeWords({ v: 1, config: SteConfig.ABORT });
      for (let i = 0; i < n; i++) this.writeWords(this.strtab + i * 64, abort);
    }
  }

  /** arm_smmu_device_reset. */
  private reset(): void {
    const u = this.unit;
    const f = this.features;
    u.writeReg(SmmuReg.CR0, 0);
    // CR1: table and queue walks inner-shareable write-back; CR2: PTM | RECINVSID
    u.writeReg(SmmuReg.CR1, (3 << 10) | (1 << 8) | (1 << 6) | (3 << 4) | (1 << 2) | 1);
    u.writeReg(SmmuReg.CR2, (1 << 2) | (1 << 1));
    if (this.st2l) {
      u.writeReg(SmmuReg.STRTAB_BASE_CFG, strtabBaseCfg(STRTAB_FMT_2LVL, Math.log2(this.numL1) + STRTAB_SPLIT, STRTAB_SPLIT));
    } else {
      u.writeReg(SmmuReg.STRTAB_BASE_CFG, strtabBaseCfg(STRTAB_FMT_LINEAR, f.sidBits, 0));
    }
    u.writeReg64(SmmuReg.STRTAB_BASE, BigInt(this.strtab) | (1n << 62n));
    u.writeReg64(SmmuReg.CMDQ_BASE, queueBase(this.cmdqBase, this.cmdqShift));
    u.writeReg(SmmuReg.CMDQ_PROD, 0);
    u.writeReg(SmmuReg.CMDQ_CONS, 0);
    let enables = CR0_CMDQEN;
    u.writeReg(SmmuReg.CR0, enables);
    this.issueCmd({ kind: "cfgiSteRange", sid: 0, range: 31 }, true);
    this.issueCmd({ kind: "tlbiNsnhAll" }, true);
    u.writeReg64(SmmuReg.EVTQ_BASE, queueBase(this.evtqBase, this.evtqShift));
    u.writeReg(SmmuReg.EVTQ_PROD, 0);
    u.writeReg(SmmuReg.EVTQ_CONS, 0);
    enables |= CR0_EVTQEN;
    u.writeReg(SmmuReg.CR0, enables);
    if (f.pri) {
      u.writeReg64(SmmuReg.PRIQ_BASE, queueBase(this.priqBase, this.priqShift));
      u.writeReg(SmmuReg.PRIQ_PROD, 0);
      u.writeReg(SmmuReg.PRIQ_CONS, 0);
      enables |= CR0_PRIQEN;
      u.writeReg(SmmuReg.CR0, enables);
    }
    // arm_smmu_setup_irqs
    u.irq = { eventq: () => this.evtqThread(), priq: () => this.priqThread(), gerror: () => this.gerrorHandler() };
    u.writeReg(SmmuReg.IRQ_CTRL, 0);
    u.writeReg(SmmuReg.IRQ_CTRL, IRQ_CTRL_EVTQ_IRQEN | IRQ_CTRL_GERROR_IRQEN | (f.pri ? IRQ_CTRL_PRIQ_IRQEN : 0));
    enables |= CR0_SMMUEN;
    u.writeReg(SmmuReg.CR0, enables);
  }

  /** The byte address of sid's STE. */
  private stePa(sid: number): number {
    if (!this.st2l) return this.strtab + sid * 64;
    const l2 = this.l2strtab.get(Math.floor(sid / 256));
    assert(l2 !== undefined, "STE of a StreamID without an L2 table");
    return l2 + (sid % 256) * 64;
  }

  /** arm_smmu_init_sid_strtab: range check (ERANGE) and the L2 stream table (abort STEs). */
  private initSidStrtab(sid: number): void {
    const inRange = this.st2l ? Math.floor(sid / 256) < this.numL1 : sid < 2 ** this.features.sidBits;
    // Linux: -ERANGE (not in this model's errno table: EINVAL stands in; probe is not a uAPI call)
    if (!Number.isInteger(sid) || sid < 0 || !inRange) fail("EINVAL", `StreamID ${sid} beyond the stream table`);
    if (!this.st2l) return;
    const l1 = Math.floor(sid / 256);
    if (this.l2strtab.has(l1)) return;
    const l2 = this.allocDma(256 * 64);
    const abort = Ste.encodeWords({ v: 1, config: SteConfig.ABORT });
    for (let i = 0; i < 256; i++) this.writeWords(l2 + i * 64, abort);
    this.writeWords(this.strtab + l1 * 8, L1Std.encodeWords({ span: STRTAB_SPLIT + 1, l2ptr: l2 }));
    this.l2strtab.set(l1, l2);
  }

  /**
   * arm_smmu_probe_device: the master with its StreamIDs in the stream table (abort STEs), its
   * SSID width (the device's PASID width capped by the SMMU, and by 10 bits without two-level CD
   * tables), stalls when the firmware says "dma-can-stall" (or the SMMU forces them). Devices not
   * probed explicitly are probed with defaults on first use.
   */
  probeDevice(dev: Device, opts: SmmuMasterOptions = {}): SmmuMaster {
    if (this.masters.has(dev)) fail("EBUSY", "device already probed");
    if (dev.driver !== this) fail("ENODEV", "the device is behind another IOMMU");
    const sids = opts.sids ?? [dev.sid];
    const added: number[] = [];
    for (const sid of sids) {
      this.initSidStrtab(sid);
      const other = this.streams.get(sid);
      if (other !== undefined) {
        if (added.includes(sid)) continue;
        for (const s of added) this.streams.delete(s);
        fail("EINVAL", `stream ${sid} already in use by ${other.dev.name}`);
      }
      added.push(sid);
    }
    let ssidBits = Math.min(this.features.ssidBits, dev.maxPasidLog2);
    if (!this.features.cd2l) ssidBits = Math.min(ssidBits, CTXDESC_LINEAR_CDMAX);
    const stall = (this.stalls && (opts.canStall ?? false)) || this.stallForce;
    const m = new SmmuMaster(dev, sids, ssidBits, stall, opts.canwbs ?? true);
    for (const sid of sids) this.streams.set(sid, m);
    this.masters.set(dev, m);
    return m;
  }

  /** arm_smmu_release_device: back to an abort STE; the streams and CD tables go away. */
  releaseDevice(dev: Device): void {
    const m = this.masters.get(dev);
    if (m === undefined) return;
    this.attachBlocked(m);
    for (const sid of m.sids) this.streams.delete(sid);
    this.masters.delete(dev);
    if (m.cd !== null) {
      for (const l2 of m.cd.l2.values()) this.mem.freeTable(l2 / 4096, 16);
      m.cd = null;
    }
  }

  findMaster(dev: Device): SmmuMaster | undefined {
    return this.masters.get(dev);
  }

  masterOf(dev: Device): SmmuMaster {
    return this.masters.get(dev) ?? this.probeDevice(dev);
  }

  /** The reserved regions of a device behind this SMMU (arm_smmu_get_resv_regions). */
  resvRegions(): ResvRegion[] {
    return [{ start: MSI_IOVA_BASE, length: MSI_IOVA_LENGTH, type: ResvType.SW_MSI }];
  }

  // ---- commands -------------------------------------------------------------------------------------

  issueCmd(c: CmdInput, sync: boolean): void {
    this.issueCmdlist([encodeCmdWords(c)], sync);
  }

  /**
   * arm_smmu_cmdq_issue_cmdlist: write the commands (and a CMD_SYNC) at PROD and publish them.
   * The unit consumes them before PROD's write returns; with MSI polling the CMD_SYNC's slot is
   * cleared by its completion MSI.
   */
  issueCmdlist(cmds: Uint32Array[], sync: boolean): void {
    const n = 2 ** this.cmdqShift;
    assert(cmds.length + 1 <= n, "command batch larger than the queue");
    let prod = this.cmdqProd;
    for (const w of cmds) {
      this.writeWords(this.cmdqBase + (prod % n) * 16, w);
      this.commandLog?.push({ op: w[0] & 0xff, words: w.slice() });
      prod = (prod + 1) % (2 * n);
    }
    let syncSlot = -1;
    if (sync) {
      syncSlot = this.cmdqBase + (prod % n) * 16;
      const w = this.buildSync(syncSlot);
      this.writeWords(syncSlot, w);
      this.commandLog?.push({ op: CmdOp.CMD_SYNC, words: w.slice() });
      prod = (prod + 1) % (2 * n);
    }
    this.cmdqProd = prod;
    this.unit.writeReg(SmmuReg.CMDQ_PROD, prod);
    // The unit consumes synchronously and the GERROR handler skips illegal commands: the queue
    // is drained when PROD's write returns (Linux would time out otherwise).
    const cons = this.unit.readReg(SmmuReg.CMDQ_CONS) & (2 * n - 1);
    assert(cons === prod, "CMD_SYNC timeout: the command queue did not drain");
    assert(syncSlot < 0 || !this.msiPoll || this.mem.read32(syncSlot) === 0, "CMD_SYNC completion MSI not seen");
  }

  private buildSync(slot: number): Uint32Array {
    return this.msiPoll
      ? encodeCmdWords({ kind: "sync", cs: SyncCs.IRQ, msiaddr: slot, msh: Shareability.ISH, msiattr: 0xf })
      : encodeCmdWords({ kind: "sync", cs: SyncCs.SEV, msh: Shareability.ISH, msiattr: 0xf });
  }

  /** arm_smmu_cmdq_batch_add / _submit. */
  private submitBatch(cmds: Uint32Array[]): void {
    let start = 0;
    while (cmds.length - start > CMDQ_BATCH_ENTRIES) {
      this.issueCmdlist(cmds.slice(start, start + CMDQ_BATCH_ENTRIES), false);
      start += CMDQ_BATCH_ENTRIES;
    }
    this.issueCmdlist(cmds.slice(start), true);
  }

  // ---- interrupts --------------------------------------------------------------------------------------

  /** arm_smmu_gerror_handler: skip an illegal command (turn it into a CMD_SYNC), acknowledge. */
  private gerrorHandler(): void {
    const u = this.unit;
    const gerror = u.readReg(SmmuReg.GERROR);
    const active = gerror ^ u.readReg(SmmuReg.GERRORN);
    if ((active & 0x1fd) === 0) return;
    if (active & GERROR_CMDQ_ERR) {
      const cons = u.readReg(SmmuReg.CMDQ_CONS);
      const idx = (cons & CMDQ_CONS_ERR_MASK) >>> CMDQ_CONS_ERR_SHIFT;
      if (idx === CmdqErr.ILL || idx > CmdqErr.ATC_INV_SYNC) {
        const n = 2 ** this.cmdqShift;
        // CS = SEV: the skipped command's CMD_SYNC has no MSI address
        this.writeWords(this.cmdqBase + (cons & (n - 1)) * 16, encodeCmdWords({ kind: "sync", cs: SyncCs.SEV, msh: Shareability.ISH, msiattr: 0xf }));
      }
    }
    u.writeReg(SmmuReg.GERRORN, gerror);
  }

  /** arm_smmu_evtq_thread: drain the event queue. */
  private evtqThread(): void {
    const u = this.unit;
    const n = 2 ** this.evtqShift;
    const mask = 2 * n - 1;
    let cons = u.readReg(SmmuReg.EVTQ_CONS);
    for (;;) {
      const prod = u.readReg(SmmuReg.EVTQ_PROD);
      if ((cons & mask) === (prod & mask)) {
        // queue_sync_cons_ovf: acknowledge an overflow along with the consumption
        u.writeReg(SmmuReg.EVTQ_CONS, ((cons & mask) | (prod & Q_OVF)) >>> 0);
        return;
      }
      const pa = this.evtqBase + (cons & (n - 1)) * 32;
      const w = new Uint32Array(8);
      for (let i = 0; i < 8; i++) w[i] = this.mem.read32(pa + 4 * i);
      cons = ((cons & Q_OVF) | (((cons & mask) + 1) & mask)) >>> 0;
      u.writeReg(SmmuReg.EVTQ_CONS, cons);
      if (!this.handleEvent(w)) this.logEvent(w);
    }
  }

  private logEvent(w: Uint32Array): void {
    this.eventLog.push({ id: w[0] & 0xff, sid: w[1], words: w });
    if (this.eventLog.length > 256) this.eventLog.shift();
  }

  /**
   * arm_smmu_handle_event (newest): a stalled fault goes to the domain's I/O page fault handler
   * (no handler: RESUME with abort); other events of a device attached to a nested domain through
   * a vIOMMU, stage-1 ones only, are forwarded as a vEVENT with the virtual SID. Returns false for
   * an event nobody handled.
   */
  private handleEvent(w: Uint32Array): boolean {
    const id = w[0] & 0xff;
    switch (id) {
      case EventId.C_BAD_STE:
      case EventId.F_STREAM_DISABLED:
      case EventId.C_BAD_SUBSTREAMID:
      case EventId.C_BAD_CD:
      case EventId.F_TRANSLATION:
      case EventId.F_ADDR_SIZE:
      case EventId.F_ACCESS:
      case EventId.F_PERMISSION:
        break;
      default:
        return false;
    }
    const translationFault = id >= EventId.F_TRANSLATION && id <= EventId.F_PERMISSION;
    const stall = translationFault && (w[2] & (1 << 31)) !== 0;
    const s2 = translationFault && (w[3] & (1 << 7)) !== 0;
    const m = this.streams.get(w[1]);
    if (m === undefined) return false;
    if (stall) {
      const ssv = (w[0] & (1 << 11)) !== 0;
      const ssid = w[0] >>> 12;
      let perm = (w[3] & (1 << 3)) !== 0 ? IOMMU_FAULT_PERM_READ : IOMMU_FAULT_PERM_WRITE;
      if (w[3] & (1 << 2)) perm |= IOMMU_FAULT_PERM_EXEC;
      if (w[3] & (1 << 1)) perm |= IOMMU_FAULT_PERM_PRIV;
      const fault: IopfFault = {
        deviceKey: m.dev,
        pasid: ssv ? ssid : 0,
        pasidValid: ssv,
        lastPage: true,
        grpid: w[2] & 0xffff,
        perm,
        addr: BigInt(w[4]) | (BigInt(w[5]) << 32n),
      };
      let domain = ssv ? (m.pasids.get(ssid) ?? null) : m.domain;
      // .user_pasid_table: a nested domain on the RID owns the guest's SubstreamIDs (its CD table
      // is the guest's), so a stall at an SSID no PASID attachment claims is the RID domain's
      // (io-pgfault.c find_fault_handler)
      if (domain === null && ssv && m.domain instanceof SmmuNestedDomain) domain = m.domain;
      if (domain !== null && domain.iopfHandler !== null) domain.iopfHandler(fault);
      else this.pageResponse(m.dev, fault, 1);
      return true;
    }
    if (m.vmaster !== null && !s2) {
      const ev = new Uint8Array(32);
      const dv = new DataView(ev.buffer);
      for (let i = 0; i < 8; i++) dv.setUint32(4 * i, w[i], true);
      dv.setUint32(4, m.vmaster.vsid >>> 0, true);
      m.vmaster.viommu.sink.report(IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, ev);
      return true;
    }
    return false;
  }

  /** arm_smmu_priq_thread / arm_smmu_handle_ppr: an unexpected page request, denied when last. */
  private priqThread(): void {
    const u = this.unit;
    const n = 2 ** this.priqShift;
    const mask = 2 * n - 1;
    let cons = u.readReg(SmmuReg.PRIQ_CONS);
    for (;;) {
      const prod = u.readReg(SmmuReg.PRIQ_PROD);
      if ((cons & mask) === (prod & mask)) {
        u.writeReg(SmmuReg.PRIQ_CONS, ((cons & mask) | (prod & Q_OVF)) >>> 0);
        return;
      }
      const e = PriEntry.decode(this.mem.read(this.priqBase + (cons & (n - 1)) * 16, 16));
      cons = ((cons & Q_OVF) | (((cons & mask) + 1) & mask)) >>> 0;
      u.writeReg(SmmuReg.PRIQ_CONS, cons);
      this.unexpectedPageRequests++;
      if (e.last) this.issueCmd({ kind: "priResp", sid: e.sid, ssv: e.ssv, ssid: e.ssv ? e.ssid : 0, prgIndex: e.prgIndex, resp: PriResp.DENY }, false);
    }
  }

  /** arm_smmu_page_response: RESUME the stalled transaction (retry on success, else abort); no sync. */
  pageResponse(dev: Device, last: IopfFault, code: number): void {
    const m = this.masters.get(dev);
    if (m === undefined || !m.stallEnabled) return;
    const action = code === PAGE_RESP_SUCCESS ? ResumeAction.RETRY : ResumeAction.ABORT;
    this.issueCmd({ kind: "resume", sid: m.sids[0], stag: last.grpid, action }, false);
  }

  // ---- TLB maintenance --------------------------------------------------------------------------------

  /** arm_smmu_tlb_inv_context: the whole ASID (stage 1) or VMID (stage 2), with a sync. */
  tlbInvContext(d: SmmuDomain): void {
    if (d.stage === 1) this.issueCmd({ kind: "tlbiNhAsid", asid: d.asid }, true);
    else this.issueCmd({ kind: "tlbiS12Vmall", vmid: d.vmid }, true);
  }

  /**
   * arm_smmu_tlb_inv_range_domain over IO pages [iova, iova + n): TLBI_NH_VA (ASID) or TLBI_S2_IPA
   * (VMID), as range commands when the SMMU has RIL (NUM/SCALE chunks, TG = 4 KiB, TTL = 3 for a
   * leaf), else one per page; a nesting parent also flushes every stage-1 entry of its VMID.
   */
  tlbInvRange(d: SmmuDomain, iova: number, n: number, leaf: boolean): void {
    if (n <= 0) return;
    const cmds: Uint32Array[] = [];
    const base: CmdInput = d.stage === 1 ? { kind: "tlbiNhVa", asid: d.asid, leaf: leaf ? 1 : 0 } : { kind: "tlbiS2Ipa", vmid: d.vmid, leaf: leaf ? 1 : 0 };
    if (this.features.ril) {
      let num = n;
      let at = iova;
      const ttl = leaf ? 3 : 0;
      if (!leaf && (num & 31) === 1) num++;
      while (at < iova + n) {
        const scale = ctz(num);
        const chunk = Math.floor(num / 2 ** scale) % 32;
        cmds.push(encodeCmdWords({ ...base, tg: 1, ttl, scale, num: chunk - 1, addr: at * 4096 } as CmdInput));
        at += chunk * 2 ** scale;
        num -= chunk * 2 ** scale;
      }
    } else {
      for (let p = iova; p < iova + n; p++) cmds.push(encodeCmdWords({ ...base, addr: p * 4096 } as CmdInput));
    }
    this.submitBatch(cmds);
    if (d.stage === 2 && d.nestParent) this.issueCmd({ kind: "tlbiNhAll", vmid: d.vmid }, true);
  }

  // ---- IDs ----------------------------------------------------------------------------------------------

  private allocId(set: Set<number>, bits: number, what: string): number {
    for (let i = 1; i < 2 ** bits; i++) {
      if (!set.has(i)) {
        set.add(i);
        return i;
      }
    }
    fail(what === "ASID" ? "EBUSY" : "ENOSPC", `no free ${what}`);
  }

  releaseIds(d: SmmuDomain): void {
    if (d.stage === 1) this.asids.delete(d.asid);
    else this.vmids.delete(d.vmid);
  }

  // ---- IommuDriver: info and capabilities -------------------------------------------------------------

  /** arm_smmu_hw_info: struct iommu_hw_info_arm_smmuv3 from the ID registers. */
  hwInfo(dev: Device): HwInfo {
    void this.masterOf(dev);
    const data = new Uint8Array(HW_INFO_ARM_SMMUV3_SIZE);
    const dv = new DataView(data.buffer);
    for (let i = 0; i <= 5; i++) dv.setUint32(8 + 4 * i, this.unit.readReg(SmmuReg.IDR0 + 4 * i), true);
    dv.setUint32(32, this.unit.readReg(SmmuReg.IIDR), true);
    dv.setUint32(36, this.unit.readReg(SmmuReg.AIDR), true);
    return { type: IOMMU_HW_INFO_TYPE_ARM_SMMUV3, data };
  }

  capable(dev: Device, cap: IommuCap): boolean {
    const m = this.masterOf(dev);
    switch (cap) {
      case IommuCap.CACHE_COHERENCY:
        return this.coherent;
      case IommuCap.DIRTY_TRACKING:
        return this.features.httuD && this.coherent;
      case IommuCap.ENFORCE_CACHE_COHERENCY:
        return m.canwbs;
      default:
        return false;
    }
  }

  // ---- IommuDriver: domains -----------------------------------------------------------------------------

  /**
   * arm_smmu_domain_alloc_paging_flags: flags 0 = stage 1 (stage 2 without S1); NEST_PARENT =
   * stage 2 (EOPNOTSUPP without nesting); DIRTY_TRACKING and/or PASID = stage 1 (EOPNOTSUPP
   * without S1); any other combination, a parent or user data: EOPNOTSUPP.
   */
  domainAllocUser(dev: Device, flags: number, parent: PagingDomain | null, data: UserData | null): IommuDomain {
    const m = this.masterOf(dev);
    if (parent !== null) fail("EOPNOTSUPP", "nested domains come from a vIOMMU");
    if (flags & ~(HWPT_ALLOC_DIRTY_TRACKING | HWPT_ALLOC_PASID | HWPT_ALLOC_NEST_PARENT)) fail("EOPNOTSUPP", "unsupported paging flags");
    if (data !== null) fail("EOPNOTSUPP", "paging domains take no driver data");
    let stage: 1 | 2;
    let nestParent = false;
    switch (flags) {
      case 0:
        stage = this.features.s1 ? 1 : 2;
        break;
      case HWPT_ALLOC_NEST_PARENT:
        if (!this.nesting) fail("EOPNOTSUPP", "the SMMU cannot nest");
        stage = 2;
        nestParent = true;
        break;
      case HWPT_ALLOC_DIRTY_TRACKING:
      case HWPT_ALLOC_DIRTY_TRACKING | HWPT_ALLOC_PASID:
      case HWPT_ALLOC_PASID:
        if (!this.features.s1) fail("EOPNOTSUPP", "no stage 1");
        stage = 1;
        break;
      default:
        fail("EOPNOTSUPP", "unsupported combination of paging flags");
    }
    return this.finalise(stage, nestParent, (flags & HWPT_ALLOC_DIRTY_TRACKING) !== 0, m.canwbs);
  }

  domainAllocPaging(dev: Device): SmmuDomain {
    const m = this.masterOf(dev);
    return this.finalise(this.features.s1 ? 1 : 2, false, false, m.canwbs);
  }

  /** arm_smmu_domain_finalise: the page table and the ASID (1..) or VMID (1.., 0 is bypass's). */
  private finalise(stage: 1 | 2, nestParent: boolean, dirty: boolean, canwbs: boolean): SmmuDomain {
    if (stage === 2 && dirty) fail("EOPNOTSUPP", "no dirty tracking at stage 2");
    const asid = stage === 1 ? this.allocId(this.asids, this.features.asidBits, "ASID") : 0;
    let vmid = 0;
    try {
      vmid = stage === 2 ? this.allocId(this.vmids, this.features.vmidBits, "VMID") : 0;
      return new SmmuDomain(this, { stage, nestParent, dirty, asid, vmid, canwbs });
    } catch (e) {
      if (stage === 1) this.asids.delete(asid);
      else if (vmid) this.vmids.delete(vmid);
      throw e;
    }
  }

  // ---- attach ---------------------------------------------------------------------------------------------

  attachDev(domain: IommuDomain, dev: Device): void {
    const m = this.masterOf(dev);
    if (domain instanceof SmmuDomain) this.attachPaging(domain, m);
    else if (domain instanceof SmmuNestedDomain) this.attachNested(domain, m);
    else if (domain.type === "blocked" && domain.driver === this) this.attachBlocked(m);
    else fail("EINVAL", "domain of another IOMMU");
  }

  /** arm_smmu_attach_dev. */
  private attachPaging(d: SmmuDomain, m: SmmuMaster): void {
    if (d.smmu !== this) fail("EINVAL", "domain of another SMMU");
    if (d.enforceCacheCoherency && !m.canwbs) fail("EINVAL", "the domain enforces cache coherency the device cannot give");
    if (d.stage === 1) this.allocCdPtr(m, 0);
    else if (m.cd !== null && m.cd.usedSsids > 0) fail("EBUSY", "PASIDs in use: the CD table must stay");
    const old = m.domain;
    this.addAttached(d, m, 0);
    if (d.stage === 1) {
      this.writeCdEntry(m, 0, this.makeS1Cd(m, d));
      this.installSte(m, this.makeCdtableSte(m, S1Dss.SSID0));
    } else {
      this.installSte(m, this.makeS2Ste(m, d));
      this.clearCd(m, 0);
    }
    this.commit(m, old, d, null);
  }

  /** arm_smmu_attach_dev_blocked: an abort STE (a CD-table STE terminating non-PASID traffic while PASIDs are in use). */
  private attachBlocked(m: SmmuMaster): void {
    const old = m.domain;
    const ste = m.cd !== null && m.cd.usedSsids > 0 ? this.makeCdtableSte(m, S1Dss.TERMINATE) : Ste.encodeWords({ v: 1, config: SteConfig.ABORT });
    this.installSte(m, ste);
    this.commit(m, old, null, null);
    this.clearCd(m, 0);
  }

  /** arm_smmu_attach_dev_identity: a bypass STE (S1DSS = bypass while PASIDs are in use). */
  attachIdentity(dev: Device): void {
    const m = this.masterOf(dev);
    const old = m.domain;
    const ste =
      m.cd !== null && m.cd.usedSsids > 0
        ? this.makeCdtableSte(m, S1Dss.BYPASS)
        : Ste.encodeWords({ v: 1, config: SteConfig.BYPASS, shcfg: this.attrTypesOvr ? 1 : 0 });
    this.installSte(m, ste);
    this.commit(m, old, null, null);
    m.identity = true;
    this.clearCd(m, 0);
  }

  /** arm_smmu_attach_dev_nested (newest: with the vmaster for events). */
  private attachNested(nd: SmmuNestedDomain, m: SmmuMaster): void {
    if (nd.viommu.smmu !== this) fail("EINVAL", "nested domain of another SMMU");
    if (m.cd !== null && m.cd.usedSsids > 0) fail("EBUSY", "PASIDs in use");
    const vsid = nd.viommu.vsid(m.dev);
    let vmaster: { viommu: SmmuViommu; vsid: number } | null = null;
    if (vsid !== undefined) vmaster = { viommu: nd.viommu, vsid };
    else if (nd.config !== SteConfig.ABORT && nd.config !== SteConfig.BYPASS) fail("ENOENT", "a translating nested domain needs a vDEVICE first");
    const old = m.domain;
    const parent = nd.viommu.parent;
    this.addAttached(parent, m, 0);
    let ste: Uint32Array;
    switch (nd.config) {
      case SteConfig.S1_TRANS: {
        const q = toQwords(this.makeS2Ste(m, parent));
        q[0] = STE0_V | (BigInt(SteConfig.NESTED) << 1n) | (nd.ste[0] & ~STE0_CFG & M64);
        q[1] |= nd.ste[1] | STE1_MEV;
        ste = qwordsToWords(q);
        break;
      }
      case SteConfig.BYPASS:
        ste = this.makeS2Ste(m, parent);
        break;
      default:
        ste = Ste.encodeWords({ v: 1, config: SteConfig.ABORT });
    }
    this.installSte(m, ste);
    this.commit(m, old, nd, vmaster);
  }

  private addAttached(d: SmmuDomain, m: SmmuMaster, ssid: number): void {
    let s = d.attached.get(m);
    if (s === undefined) d.attached.set(m, (s = new Set()));
    s.add(ssid);
  }

  /** The devices-list side of arm_smmu_attach_commit, and the vmaster. */
  private commit(m: SmmuMaster, old: IommuDomain | null, now: IommuDomain | null, vmaster: { viommu: SmmuViommu; vsid: number } | null): void {
    const oldPaging = old instanceof SmmuDomain ? old : old instanceof SmmuNestedDomain ? old.viommu.parent : null;
    const nowPaging = now instanceof SmmuDomain ? now : now instanceof SmmuNestedDomain ? now.viommu.parent : null;
    if (oldPaging !== null && oldPaging !== nowPaging) {
      const s = oldPaging.attached.get(m);
      s?.delete(0);
      if (s !== undefined && s.size === 0) oldPaging.attached.delete(m);
    }
    m.domain = now;
    m.vmaster = vmaster;
    m.identity = false;
  }

  // ---- PASIDs -----------------------------------------------------------------------------------------------

  /** arm_smmu_s1_set_dev_pasid / arm_smmu_set_pasid. */
  setDevPasid(domain: IommuDomain, dev: Device, pasid: number): void {
    const m = this.masterOf(dev);
    if (!(domain instanceof SmmuDomain) || domain.smmu !== this) fail("EINVAL", "domain of another SMMU");
    if (domain.stage !== 1) fail("EINVAL", "only stage-1 domains attach to PASIDs");
    const rid = m.domain;
    if (!m.cdInSte && rid !== null && rid.type !== "blocked") fail("EINVAL", "the RID's domain does not use a CD table");
    if (pasid <= 0 || pasid >= 2 ** m.ssidBits) fail("EINVAL", "PASID beyond the device's SSID width");
    this.allocCdPtr(m, pasid);
    this.addAttached(domain, m, pasid);
    const prev = m.pasids.get(pasid);
    this.writeCdEntry(m, pasid, this.makeS1Cd(m, domain));
    if (!m.cdInSte) this.installSte(m, this.makeCdtableSte(m, m.identity ? S1Dss.BYPASS : S1Dss.TERMINATE));
    if (prev !== undefined && prev !== domain) {
      const s = prev.attached.get(m);
      s?.delete(pasid);
      if (s !== undefined && s.size === 0) prev.attached.delete(m);
    }
    m.pasids.set(pasid, domain);
  }

  /** arm_smmu_remove_dev_pasid: clear the CD; the last PASID gone, a blocked RID gets its abort STE back. */
  removeDevPasid(dev: Device, pasid: number): void {
    const m = this.masterOf(dev);
    const d = m.pasids.get(pasid);
    this.clearCd(m, pasid);
    if (d !== undefined) {
      const s = d.attached.get(m);
      s?.delete(pasid);
      if (s !== undefined && s.size === 0) d.attached.delete(m);
      m.pasids.delete(pasid);
    }
    if (m.cd !== null && m.cd.usedSsids === 0 && (m.domain === null || m.domain.type === "blocked")) {
      if (m.identity) this.attachIdentity(dev);
      else this.attachBlocked(m);
    }
  }

  // ---- STE and CD construction ------------------------------------------------------------------------------

  /** arm_smmu_make_cdtable_ste. */
  private makeCdtableSte(m: SmmuMaster, s1dss: number): Uint32Array {
    const cd = m.cd as CdTable;
    return Ste.encodeWords({
      v: 1,
      config: SteConfig.S1_TRANS,
      s1fmt: cd.s1fmt,
      s1ContextPtr: cd.base,
      s1cdmax: cd.s1cdmax,
      s1dss,
      s1cir: CacheAttr.WBRA,
      s1cor: CacheAttr.WBRA,
      s1csh: Shareability.ISH,
      s1stalld: this.stalls && !m.stallEnabled ? 1 : 0,
      eats: 0,
      shcfg: this.attrTypesOvr && s1dss === S1Dss.BYPASS ? 1 : 0,
      strw: 0,
      s2vmid: 0,
    });
  }

  /** arm_smmu_make_s2_domain_ste. */
  private makeS2Ste(m: SmmuMaster, d: SmmuDomain): Uint32Array {
    const fmt = d.engine.format;
    const start = fmt.levels[0].number;
    const sl0 = fmt.granuleShift === 12 ? 2 - start : 3 - start;
    return Ste.encodeWords({
      v: 1,
      config: SteConfig.S2_TRANS,
      eats: 0,
      shcfg: this.attrTypesOvr ? 1 : 0,
      s2vmid: d.vmid,
      s2t0sz: 64 - fmt.inputBits,
      s2sl0: sl0,
      s2ir0: CacheAttr.WBRA,
      s2or0: CacheAttr.WBRA,
      s2sh0: Shareability.ISH,
      s2tg: 0,
      s2ps: oasCode(this.features.oas),
      s2aa64: 1,
      s2ptw: 1,
      s2s: m.stallEnabled ? 1 : 0,
      s2r: 1,
      s2ttb: d.engine.root * 4096,
    });
  }

  /** arm_smmu_make_s1_cd. */
  private makeS1Cd(m: SmmuMaster, d: SmmuDomain): Uint32Array {
    return Cd.encodeWords({
      t0sz: 64 - d.engine.format.inputBits,
      tg0: 0,
      ir0: CacheAttr.WBRA,
      or0: CacheAttr.WBRA,
      sh0: Shareability.ISH,
      epd1: 1,
      v: 1,
      ips: oasCode(this.ias),
      aa64: 1,
      s: m.stallEnabled ? 1 : 0,
      r: 1,
      a: 1,
      aset: 1,
      asid: d.asid,
      ha: d.dirtyOps ? 1 : 0,
      hd: d.dirtyOps ? 1 : 0,
      ttb0: d.engine.root * 4096,
      mair0: LPAE_MAIR,
      mair1: 0,
    });
  }

  /** arm_smmu_alloc_cd_tables + arm_smmu_alloc_cd_ptr: the CD's address, allocating what is missing. */
  private allocCdPtr(m: SmmuMaster, ssid: number): number {
    if (m.cd === null) {
      const s1cdmax = m.ssidBits;
      const max = 2 ** s1cdmax;
      if (!this.features.cd2l || max <= CTXDESC_L2_ENTRIES) {
        m.cd = { s1fmt: S1Fmt.LINEAR, s1cdmax, base: this.allocDma(max * 64), l2: new Map(), numL1: 0, usedSsids: 0 };
      } else {
        const numL1 = Math.ceil(max / CTXDESC_L2_ENTRIES);
        m.cd = { s1fmt: S1Fmt.L2_64K, s1cdmax, base: this.allocDma(numL1 * 8), l2: new Map(), numL1, usedSsids: 0 };
      }
    }
    const cd = m.cd;
    if (cd.s1fmt === S1Fmt.LINEAR) return cd.base + ssid * 64;
    const l1 = Math.floor(ssid / CTXDESC_L2_ENTRIES);
    let l2 = cd.l2.get(l1);
    if (l2 === undefined) {
      l2 = this.allocDma(CTXDESC_L2_ENTRIES * 64);
      cd.l2.set(l1, l2);
      this.writeWords(cd.base + l1 * 8, L1Cd.encodeWords({ v: 1, l2ptr: l2 }));
      // An invalid L1CD can be cached
      this.syncCd(m, ssid, false);
    }
    return l2 + (ssid % CTXDESC_L2_ENTRIES) * 64;
  }

  private cdPtr(m: SmmuMaster, ssid: number): number {
    const cd = m.cd as CdTable;
    if (cd.s1fmt === S1Fmt.LINEAR) return cd.base + ssid * 64;
    const l2 = cd.l2.get(Math.floor(ssid / CTXDESC_L2_ENTRIES));
    return l2 === undefined ? -1 : l2 + (ssid % CTXDESC_L2_ENTRIES) * 64;
  }

  /** arm_smmu_clear_cd. */
  private clearCd(m: SmmuMaster, ssid: number): void {
    if (m.cd === null) return;
    const pa = this.cdPtr(m, ssid);
    if (pa < 0) return;
    this.writeCdEntry(m, ssid, new Uint32Array(16));
  }

  /** arm_smmu_write_cd_entry (counting the SSIDs in use). */
  private writeCdEntry(m: SmmuMaster, ssid: number, target: Uint32Array): void {
    const pa = this.cdPtr(m, ssid);
    assert(pa >= 0, "CD of an unallocated leaf table");
    const cd = m.cd as CdTable;
    const cur = this.readQwords(pa, 8);
    const tv = (target[0] & (1 << 31)) !== 0;
    const cv = (cur[0] & CD0_V) !== 0n;
    if (ssid !== 0 && tv !== cv) cd.usedSsids += tv ? 1 : -1;
    this.writeEntry(pa, toQwords(target), cdUsed, () => this.syncCd(m, ssid, true));
  }

  /** arm_smmu_sync_cd: CFGI_CD for each stream, one batch with a sync. */
  private syncCd(m: SmmuMaster, ssid: number, leaf: boolean): void {
    this.submitBatch(m.sids.map((sid) => encodeCmdWords({ kind: "cfgiCd", sid, ssid, leaf: leaf ? 1 : 0 })));
  }

  /** arm_smmu_install_ste_for_dev: write the STE of every stream (CFGI_STE + sync per step), then prefetch. */
  private installSte(m: SmmuMaster, target: Uint32Array): void {
    m.cdInSte = Ste.acc.config.get(target, 0) === SteConfig.S1_TRANS && Ste.acc.v.get(target, 0) === 1;
    const t = toQwords(target);
    const seen = new Set<number>();
    for (const sid of m.sids) {
      if (seen.has(sid)) continue;
      seen.add(sid);
      this.writeEntry(this.stePa(sid), t, steUsed, () => this.issueCmd({ kind: "cfgiSte", sid, leaf: 1 }, true));
      if (!this.skipPrefetch) this.issueCmd({ kind: "prefetchConfig", sid }, false);
    }
  }

  /**
   * arm_smmu_write_entry: make the 8-qword entry at pa equal target without the hardware ever
   * seeing a torn entry: a hitless update when only one qword's used bits change (unused bits
   * first, then the critical qword, then the rest), else V = 0, the other qwords, then qword 0.
   * Every step that changes memory is followed by `sync`.
   */
  private writeEntry(pa: number, target: bigint[], used: (e: readonly bigint[]) => bigint[], sync: () => void): void {
    const entry = this.readQwords(pa, 8);
    const curUsed = used(entry);
    const tgtUsed = used(target);
    const unusedUpdate: bigint[] = [];
    let diff = 0;
    for (let i = 0; i < 8; i++) {
      assert((target[i] & ~tgtUsed[i] & M64) === 0n, "STE/CD target sets a bit its used mask does not cover");
      unusedUpdate.push(((entry[i] & curUsed[i]) | (target[i] & ~curUsed[i])) & M64);
      if ((unusedUpdate[i] & tgtUsed[i]) !== target[i]) diff |= 1 << i;
    }
    const set = (vals: bigint[], start: number, len: number): void => {
      let changed = false;
      for (let i = start; i < start + len; i++) {
        if (entry[i] !== vals[i]) {
          entry[i] = vals[i];
          this.writeQword(pa + 8 * i, vals[i]);
          changed = true;
        }
      }
      if (changed) sync();
    };
    const bitsSet = popcount(diff);
    if (bitsSet === 1) {
      const crit = ctz(diff);
      unusedUpdate[crit] = entry[crit];
      set(unusedUpdate, 0, 8);
      set(target, crit, 1);
      set(target, 0, 8);
    } else if (bitsSet > 1) {
      unusedUpdate[0] = 0n;
      set(unusedUpdate, 0, 1);
      set(target, 1, 7);
      set(target, 0, 1);
    } else {
      set(target, 0, 8);
    }
  }

  // ---- vIOMMU ------------------------------------------------------------------------------------------------

  viommuTypeSupported(dev: Device, type: number): boolean {
    const m = this.masterOf(dev);
    return type === IOMMU_VIOMMU_TYPE_ARM_SMMUV3 && this.nesting && (m.canwbs || this.s2fwb);
  }

  /**
   * arm_vsmmu_alloc: only IOMMU_VIOMMU_TYPE_ARM_SMMUV3 (EOPNOTSUPP otherwise, and without
   * nesting, and when neither the device is CANWBS nor the SMMU has S2FWB); the parent must be
   * a stage-2 domain of this SMMU (EINVAL). The vIOMMU uses the parent's VMID.
   */
  viommuAlloc(dev: Device, parent: PagingDomain, type: number, data: UserData | null, sink: ViommuEventSink): ViommuOps {
    void data;
    const m = this.masterOf(dev);
    if (type !== IOMMU_VIOMMU_TYPE_ARM_SMMUV3) fail("EOPNOTSUPP", "unknown vIOMMU type");
    if (!this.nesting) fail("EOPNOTSUPP", "the SMMU cannot nest");
    if (!(parent instanceof SmmuDomain) || parent.smmu !== this || parent.stage !== 2) fail("EINVAL", "the parent is not a stage-2 domain of this SMMU");
    if (!m.canwbs && !this.s2fwb) fail("EOPNOTSUPP", "neither CANWBS nor S2FWB: the guest could bypass the cache");
    return new SmmuViommu(this, parent, parent.vmid, sink);
  }
}

function qwordsToWords(q: bigint[]): Uint32Array {
  const w = new Uint32Array(q.length * 2);
  for (let i = 0; i < q.length; i++) {
    w[2 * i] = Number(q[i] & 0xffffffffn);
    w[2 * i + 1] = Number((q[i] >> 32n) & 0xffffffffn);
  }
  return w;
}

function popcount(x: number): number {
  let n = 0;
  for (let v = x; v !== 0; v &= v - 1) n++;
  return n;
}

/** Count trailing zeros of a positive integer (a double up to 2^53). */
function ctz(x: number): number {
  let n = 0;
  let v = x;
  while (v % 2 === 0 && v !== 0) {
    v /= 2;
    n++;
  }
  return n;
}

/**
 * A device behind the SMMU: its DMA goes through the unit with StreamID `sid`; its reserved
 * regions are the SMMU's software MSI window; probed with `opts`.
 */
export function createSmmuDevice(
  driver: SmmuDriver,
  o: { name: string; sid: number; group?: IommuGroup; maxPasidLog2?: number; isPci?: boolean; master?: SmmuMasterOptions },
): Device {
  const dev = new Device({
    name: o.name,
    driver,
    group: o.group,
    resv: driver.resvRegions(),
    maxPasidLog2: o.maxPasidLog2 ?? 0,
    isPci: o.isPci ?? true,
    port: driver.unit,
    sid: o.sid,
  });
  try {
    driver.probeDevice(dev, o.master);
  } catch (e) {
    dev.unplug();
    throw e;
  }
  return dev;
}
