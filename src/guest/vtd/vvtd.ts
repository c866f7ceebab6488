/**
 * The emulated VT-d a guest programs (what QEMU's intel-iommu device is, in scalable mode with
 * first-stage translation handed to the host, `x-flts=on`): a register page the guest reads and
 * writes, and the queues it keeps in guest RAM.
 *
 * It translates nothing itself. The device's DMA goes through the host's IOMMU; what the guest
 * writes here is what the VMM (vmm.ts) shadows into iommufd objects. So the vIOMMU is a register
 * file plus two queue engines:
 *
 * - **Invalidation queue** (IQA / IQH / IQT in guest RAM): writing IQT processes the descriptors
 *   from IQH synchronously. Context-cache, IOTLB, PASID-cache and PASID-based-IOTLB descriptors go
 *   to the VMM (`VvtdBackend`); device-TLB and interrupt-entry-cache descriptors complete at once
 *   (the host invalidates the device TLB when the VMM forwards the IOTLB invalidation); a wait
 *   descriptor writes its status into guest RAM (SW) and raises the invalidation completion event
 *   (IF: ICS.IWC, IECTL); a page group response goes to the VMM, which answers the host's fault.
 *   An unknown type, a reserved bit, a bad granularity or a misaligned tail stop the queue with
 *   FSTS.IQE and IQERCD.IQEI (as the host unit model does, hw/vtd/unit.ts); clearing IQE resumes.
 * - **Page request queue** (PQA / PQH / PQT in guest RAM): the VMM injects page request
 *   descriptors (`injectPageRequest`); the first one with PRS.PPR clear raises the page request
 *   event (PECTL). A full queue sets PRS.PRO and refuses the request.
 * - **Fault recording**: the VMM records faults the guest should see (`recordFault`) in the
 *   fault recording registers at CAP.FRO (FSTS.PPF / FRI / PFO, fault event through FECTL).
 * - **Virtual command interface** (ECAP.VCS, VCCAP.PAS): the guest asks the VMM for PASIDs
 *   (VCMD ALLOC / FREE at 0xE00, answer in VCRSP at 0xE10), the "enlightened PASID allocation"
 *   of the 2020 vSVA series (Linux 5.8-5.16 drove it; VT-d 3.x lists the registers).
 *
 * Register semantics follow the host unit model: GCMD one-shot commands (SRTP) act when written
 * as 1, enables (TE, QIE) when they differ from GSTS; FSTS / ICS / PRS and the fault records' F
 * bit are write-1-to-clear; FECTL / IECTL / PECTL hold IM (reset 1) and IP (a masked event stays
 * pending until IM is cleared). Guest interrupts are callbacks (`onFaultEvent`, ...).
 *
 * Taken with less than full certainty: the VCMD / VCRSP field positions are those of Linux's last
 * version of the interface (command 7:0, operand from bit 16, VCRSP IP bit 0, status code 7:1 with
 * 16 = "no PASID available" / "invalid PASID", result PASID 35:16); IQEI codes as the host model's.
 */
import { PAGE_SIZE } from "../../mm/phys.js";
import {
  CcGran,
  CcInvDesc,
  IotlbGran,
  IotlbInvDesc,
  PageGroupResponseDesc,
  PageRequestDesc,
  PcGran,
  PcInvDesc,
  PiotlbGran,
  PiotlbInvDesc,
  QI_LAYOUTS,
  QiType,
  qiKindOfType,
  qiTypeOf,
  type QiKind,
} from "../../hw/vtd/qi.js";
import { type FaultRecord } from "../../hw/vtd/regs.js";
import { VtdRegisterFile } from "../../hw/vtd/regfile.js";
import { Iqei, Prs, VtdReg } from "../../hw/vtd/unit-regs.js";
import type { GuestRam } from "../ram.js";

const TWO32 = 4294967296;

/** Virtual command registers (VT-d 3.x; Linux's DMAR_VCMD_REG / DMAR_VCRSP_REG / DMAR_VCCAP_REG). */
export const VcmdReg = { VCMD: 0xe00, VCRSP: 0xe10, VCCAP: 0xe30 } as const;
/** VCMD commands (bits 7:0). */
export const Vcmd = { ALLOC: 1, FREE: 2 } as const;
/** VCMD operand position (a PASID for FREE). */
export const VCMD_OPERAND_SHIFT = 16;
/** VCRSP: in progress (bit 0), status code (7:1), result (PASID at 35:16). */
export const VCRSP_IP = 1;
export const VCRSP_SC_SHIFT = 1;
export const VCRSP_RESULT_SHIFT = 16;
export const VcmdStatus = { SUCCESS: 0, NO_PASID_AVAIL: 16, INVALID_PASID: 16 } as const;
/** VCCAP.PAS: PASID allocation through VCMD. */
export const VCCAP_PAS = 1;

/** A page group response the guest queued (the VMM answers the host's fault with it). */
export interface VvtdPageGroupResponse {
  rid: number;
  pasid: number;
  /** PASID present. */
  pp: boolean;
  /** Response code (PrgResponse). */
  rc: number;
  lpig: boolean;
  prgi: number;
}

/** What the VMM does with what the guest writes (QEMU's intel_iommu.c + intel_iommu_accel.c). */
export interface VvtdBackend {
  /** Context-cache invalidation: g (CcGran), the SID and function mask for device-selective. */
  contextCacheInvalidate(g: number, did: number, sid: number, fm: number): void;
  /** PASID-cache invalidation: g (PcGran), DID, PASID. */
  pasidCacheInvalidate(g: number, did: number, pasid: number): void;
  /** IOTLB invalidation (type 2): g (IotlbGran), DID, page-selective address (bytes) and AM. */
  iotlbInvalidate(g: number, did: number, addr: number, am: number, ih: boolean): void;
  /** PASID-based IOTLB invalidation (type 6): g (PiotlbGran), DID, PASID, address and AM. */
  pasidIotlbInvalidate(g: number, did: number, pasid: number, addr: number, am: number, ih: boolean): void;
  /** A page group response descriptor. */
  pageGroupResponse(r: VvtdPageGroupResponse): void;
  /** A virtual command (VCMD ALLOC / FREE): the status code and result for VCRSP. */
  virtualCommand(cmd: number, operand: number): { sc: number; result: number };
  /** GCMD.SRTP latched a new root table (RTADDR). */
  rootTableSet(rootGpa: number, ttm: number): void;
  /** GCMD.TE changed. */
  translationChanged(enabled: boolean): void;
}

export interface VvtdOptions {
  cap: bigint;
  ecap: bigint;
  /** VCCAP (default VCCAP_PAS when ECAP.VCS is set). */
  vccap?: bigint;
  backend: VvtdBackend;
}

/** Counters per descriptor kind and event (tests, reports). */
export interface VvtdStats {
  descriptors: Record<QiKind, number>;
  pageRequests: number;
  faultsRecorded: number;
  queueErrors: number;
}

export class VirtualVtd extends VtdRegisterFile {
  readonly stats: VvtdStats = {
    descriptors: { contextCache: 0, iotlb: 0, deviceTlb: 0, iec: 0, wait: 0, pasidIotlb: 0, pasidCache: 0, pasidDeviceTlb: 0, pageGroupResponse: 0 },
    pageRequests: 0,
    faultsRecorded: 0,
    queueErrors: 0,
  };
  /** Observer of every descriptor fetched (its 256 or 128 bits), for traces and tests. */
  onDescriptor: ((kind: QiKind | "unknown", bytes: Uint8Array) => void) | null = null;

  private readonly backend: VvtdBackend;

  constructor(
    readonly ram: GuestRam,
    opts: VvtdOptions,
  ) {
    // the fault recording registers must end before the virtual command registers
    super(opts.cap, opts.ecap, VcmdReg.VCMD, "vIOMMU");
    this.backend = opts.backend;
    this.setReg64(VcmdReg.VCCAP, opts.vccap ?? (this.ecap.vcs === 1 ? BigInt(VCCAP_PAS) : 0n));
  }

  // ==== registers (the guest's MMIO; the common semantics: hw/vtd/regfile.ts) ======================

  /** The virtual command registers: VCCAP and VCRSP read-only, VCMD answered at once. */
  protected override writeOwnRegister(off: number, v: number): boolean {
    switch (off) {
      case VcmdReg.VCCAP:
      case VcmdReg.VCCAP + 4:
      case VcmdReg.VCRSP:
      case VcmdReg.VCRSP + 4:
        return true; // read-only
      case VcmdReg.VCMD:
        this.regs[off >> 2] = v;
        this.virtualCommand();
        return true;
      default:
        return false;
    }
  }

  protected override rootTableLatched(): void {
    this.backend.rootTableSet(this.rootPa, this.ttm);
  }

  protected override translationChanged(): void {
    this.backend.translationChanged(this.te);
  }

  /** VCMD written: the VMM answers at once (VCRSP.IP is never seen set). */
  private virtualCommand(): void {
    const r = this.regs;
    const lo = r[VcmdReg.VCMD >> 2];
    const hi = r[(VcmdReg.VCMD >> 2) + 1];
    const cmd = lo & 0xff;
    const operand = ((lo >>> VCMD_OPERAND_SHIFT) + hi * 65536) & 0xfffff;
    let sc: number = VcmdStatus.INVALID_PASID;
    let result = 0;
    if (this.ecap.vcs === 1 && (cmd === Vcmd.ALLOC || cmd === Vcmd.FREE)) ({ sc, result } = this.backend.virtualCommand(cmd, operand));
    // result << 16 | sc << 1: the PASID spans both words
    r[VcmdReg.VCRSP >> 2] = (((result & 0xffff) << VCRSP_RESULT_SHIFT) | ((sc & 0x7f) << VCRSP_SC_SHIFT)) >>> 0;
    r[(VcmdReg.VCRSP >> 2) + 1] = result >>> 16;
  }

  // ==== state the VMM reads ==========================================================================

  /** The root table latched by the last SRTP (a GPA) and its translation table mode. */
  get rootGpa(): number {
    return this.rootPa;
  }

  get rootTtm(): number {
    return this.ttm;
  }

  // ==== invalidation queue (in guest RAM) ================================================================

  protected fetchDescriptor(gpa: number, qd: Uint32Array, words: number): boolean {
    if (!this.ram.contains(gpa, words * 4)) return false;
    // a page the guest never wrote reads as zeros
    const f = this.ram.peekFrameU32(Math.floor(gpa / PAGE_SIZE));
    const base = (gpa % PAGE_SIZE) >>> 2;
    if (f !== undefined) for (let i = 0; i < words; i++) qd[i] = f[base + i];
    return true;
  }

  protected override queueStopped(): void {
    this.stats.queueErrors++;
  }

  /** A status write outside guest RAM goes nowhere (a DMA write to no memory); bits 1:0 are 0. */
  protected writeStatus(gpa: number, data: number): number {
    if (this.ram.contains(gpa, 4)) this.ram.frameU32(Math.floor(gpa / PAGE_SIZE))[(gpa % PAGE_SIZE) >>> 2] = data;
    return 0;
  }

  protected execute(qd: Uint32Array, words: number): number {
    const type = qiTypeOf(qd, 0);
    const kind = qiKindOfType(type);
    if (this.onDescriptor) this.onDescriptor(kind ?? "unknown", new Uint8Array(qd.buffer.slice(0, words * 4)));
    if (kind === undefined) return Iqei.INVALID_TYPE;
    if (QI_LAYOUTS[kind].hasReservedBits(qd, 0)) return Iqei.RESERVED_FIELD;
    const b = this.backend;
    switch (type) {
      case QiType.CONTEXT_CACHE: {
        const a = CcInvDesc.acc;
        const g = a.g.get(qd, 0);
        if (g !== CcGran.GLOBAL && g !== CcGran.DOMAIN && g !== CcGran.DEVICE) return Iqei.INVALID_FIELD;
        b.contextCacheInvalidate(g, a.did.get(qd, 0), a.sid.get(qd, 0), a.fm.get(qd, 0));
        break;
      }
      case QiType.IOTLB: {
        const a = IotlbInvDesc.acc;
        const g = a.g.get(qd, 0);
        const am = a.am.get(qd, 0);
        if (g !== IotlbGran.GLOBAL && g !== IotlbGran.DOMAIN && g !== IotlbGran.PAGE) return Iqei.INVALID_FIELD;
        if (g === IotlbGran.PAGE && (this.cap.psi === 0 || am > this.cap.mamv)) return Iqei.INVALID_FIELD;
        b.iotlbInvalidate(g, a.did.get(qd, 0), a.addr.get(qd, 0), am, a.ih.get(qd, 0) === 1);
        break;
      }
      case QiType.PASID_IOTLB: {
        const a = PiotlbInvDesc.acc;
        const g = a.g.get(qd, 0);
        const am = a.am.get(qd, 0);
        if (g !== PiotlbGran.PASID && g !== PiotlbGran.PAGE) return Iqei.INVALID_FIELD;
        if (g === PiotlbGran.PAGE && am > this.cap.mamv) return Iqei.INVALID_FIELD;
        b.pasidIotlbInvalidate(g, a.did.get(qd, 0), a.pasid.get(qd, 0), a.addr.get(qd, 0), am, a.ih.get(qd, 0) === 1);
        break;
      }
      case QiType.PASID_CACHE: {
        const a = PcInvDesc.acc;
        const g = a.g.get(qd, 0);
        if (g !== PcGran.DOMAIN && g !== PcGran.PASID && g !== PcGran.GLOBAL) return Iqei.INVALID_FIELD;
        b.pasidCacheInvalidate(g, a.did.get(qd, 0), a.pasid.get(qd, 0));
        break;
      }
      case QiType.WAIT: {
        const err = this.waitDescriptor(qd);
        if (err !== 0) return err;
        break;
      }
      case QiType.PAGE_GROUP_RESPONSE: {
        const a = PageGroupResponseDesc.acc;
        b.pageGroupResponse({
          rid: a.rid.get(qd, 0),
          pasid: a.pasid.get(qd, 0),
          pp: a.pp.get(qd, 0) === 1,
          rc: a.rc.get(qd, 0),
          lpig: a.lpig.get(qd, 0) === 1,
          prgi: a.prgi.get(qd, 0),
        });
        break;
      }
      case QiType.DEVICE_TLB:
      case QiType.PASID_DEVICE_TLB:
      case QiType.IEC:
        break; // the host invalidates the device TLB with the forwarded IOTLB invalidation
      default:
        return Iqei.INVALID_TYPE;
    }
    this.stats.descriptors[kind]++;
    return 0;
  }

  // ==== page request queue (the VMM injects) ===============================================================

  /**
   * Queue a page request descriptor at PQT (a DMA write into guest RAM) and raise the page request
   * event if PRS.PPR was clear. False when the queue is not set up or full (PRS.PRO set then).
   */
  injectPageRequest(v: Partial<PageRequestDesc>): boolean {
    const r = this.regs;
    const pqaLo = r[VtdReg.PQA >> 2];
    const base = (pqaLo & 0xfffff000) + r[(VtdReg.PQA >> 2) + 1] * TWO32;
    const size = PAGE_SIZE << (pqaLo & 7);
    const head = (r[VtdReg.PQH >> 2] & 0x7ffe0) % size;
    const tail = (r[VtdReg.PQT >> 2] & 0x7ffe0) % size;
    const next = (tail + 32) % size;
    if (base === 0 || !this.ram.contains(base, size)) return false;
    if (next === head) {
      r[VtdReg.PRS >> 2] |= Prs.PRO;
      return false;
    }
    // the descriptor is written in place (a DMA write of its 32 bytes), field by field
    const f = this.ram.frameU32(Math.floor((base + tail) / PAGE_SIZE));
    const w = ((base + tail) % PAGE_SIZE) >>> 2;
    f.fill(0, w, w + 8);
    f[w] = 1; // type
    const acc = PageRequestDesc.acc as unknown as Record<string, { set(u: Uint32Array, b: number, x: number | bigint): void }>;
    const fields = v as Record<string, number | bigint | undefined>;
    for (const k in fields) {
      const x = fields[k];
      if (x !== undefined && x !== 0 && x !== 0n) acc[k].set(f, w, x);
    }
    r[VtdReg.PQT >> 2] = next;
    this.stats.pageRequests++;
    const prs = VtdReg.PRS >> 2;
    if ((r[prs] & Prs.PPR) === 0) {
      r[prs] |= Prs.PPR;
      this.raiseEvent(VtdReg.PECTL, () => this.onPageRequestEvent?.());
    }
    return true;
  }

  // ==== fault recording (the VMM records) =====================================================================

  /** Record a fault in the next fault recording register (FSTS.PPF/FRI, PFO when it is still pending). */
  recordFault(f: Partial<FaultRecord>): void {
    if (this.recordFaultFields(f)) this.stats.faultsRecorded++;
  }
}
