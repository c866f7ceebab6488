/**
 * The guest kernel's arm-smmu-v3 driver (Linux 6.12's, as far as a guest with SVA needs it),
 * programming the vSMMU (vsmmu.ts) through its registers and structures in guest RAM:
 *
 *  - probe and reset (arm_smmu_device_hw_probe / _reset): features from the IDRs; a linear stream
 *    table (StreamID bits <= 8 or no 2-level support) or a 2-level one (SPLIT 8, L2 tables made as
 *    masters appear); abort STEs; command and event queues; CFGI_ALL, TLBI_NSNH_ALL; interrupts;
 *    SMMUEN;
 *  - masters (arm_smmu_probe_device): SSID width min(IDR1.SSIDSIZE, the device's PASID width; 10
 *    without 2-level CD tables), stall when the platform says "dma-can-stall" and the SMMU stalls;
 *  - the RID blocked (abort STE) or identity (bypass STE); with PASIDs in use the CD-table STE with
 *    S1DSS terminate / bypass;
 *  - SVA (iommu_sva_bind_device → arm_smmu_sva_set_dev_pasid): the process's PASID from the
 *    guest's global allocator (mm->pasid, lowest free from 1) unless given, an ASID per process,
 *    a CD table (linear up to 1024 CDs, else 2-level with 1024-CD leaves: S1Fmt 64K_L2) made on
 *    the first PASID, the CD of arm_smmu_make_sva_cd (TTB0 = the process's page table, T0SZ 16,
 *    4 KiB granule, WBWA inner/outer, inner shareable, EPD1, AA64, R, A, ASET, S when the master
 *    stalls, MAIR = the CPU's MAIR_EL1), CFGI_CD + CMD_SYNC, then the CD-table STE if it was not
 *    installed; unbind clears the CD (V first), TLBI_NH_ASID, and falls back to the abort STE;
 *  - invalidation after the process's pages are unmapped (the mmu notifier: TLBI_NH_VA with
 *    Leaf = 0 over the range — range commands with RIL, else one per page or TLBI_NH_ASID past 512
 *    pages — then CMD_SYNC);
 *  - the event interrupt: records read from the event queue; a stall (Stall = 1) goes to the I/O
 *    page fault handler, which faults the page into the process (handle_mm_fault over the
 *    process's lazily populated regions, `reserve`) and answers CMD_RESUME (Retry, or Abort when
 *    the address is not in a region or the access is not allowed); other events are logged;
 *  - the global-error interrupt: an illegal command is replaced by a CMD_SYNC and GERRORN is
 *    acknowledged (arm_smmu_cmdq_skip_err), as Linux does.
 *
 * STEs and CDs are written in an order that never shows the vSMMU a torn entry: a new entry's
 * words after its first 64-bit word, the first word last; a change of the first word of a live
 * entry breaks it first (V = 0, invalidate, rest, first word, invalidate). This is the shape of
 * arm_smmu_write_entry without its used-bits analysis (so a few updates Linux does hitlessly
 * break here).
 */
import { fail } from "../../errno.js";
import { CmdOp, CmdResume, ResumeAction, SyncCs, encodeCmdWords, type CmdInput } from "../../hw/smmuv3/cmdq.js";
import { EVENT_BYTES, EventId, EvtFTranslation, eventKindOfId } from "../../hw/smmuv3/events.js";
import { Idr0, Idr1, Idr3, Idr5 } from "../../hw/smmuv3/regs.js";
import { CacheAttr, Cd, L1Cd, L1Std, S1Dss, S1Fmt, Shareability, Ste, SteConfig, Tg0 } from "../../hw/smmuv3/tables.js";
import {
  CMDQ_CONS_ERR_MASK,
  CMDQ_CONS_ERR_SHIFT,
  CR0_CMDQEN,
  CR0_EVTQEN,
  CR0_SMMUEN,
  CmdqErr,
  GERROR_CMDQ_ERR,
  IRQ_CTRL_EVTQ_IRQEN,
  IRQ_CTRL_GERROR_IRQEN,
  Q_OVF,
  STRTAB_FMT_2LVL,
  STRTAB_FMT_LINEAR,
  SmmuReg,
  queueBase,
  strtabBaseCfg,
} from "../../hw/smmuv3/unit-regs.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import { ARM64_MAIR_EL1, type GuestProcess } from "../process.js";
import type { Vm } from "../vm.js";
import type { VSmmu } from "./vsmmu.js";

const STRTAB_SPLIT = 8;
const STRTAB_MAX_L1_ENTRIES = 1 << 17;
const CTXDESC_L2_ENTRIES = 1024;
const CTXDESC_LINEAR_CDMAX = 10;
const CMDQ_BATCH_ENTRIES = 64;
/** CMDQ_MAX_TLBI_OPS: past this many pages without RIL, invalidate the whole ASID. */
const CMDQ_MAX_TLBI_OPS = 512;
/** The guest CPU's MAIR_EL1 (Linux 6.12's MAIR_EL1_SET, guest/process.ts), which SVA CDs carry. */
export const GUEST_MAIR_EL1 = ARM64_MAIR_EL1;

export interface GuestSmmuOptions {
  /** Most command-queue entries (log2) the driver uses (default 8; Linux takes what IDR1 says up to 2^18). */
  cmdqLog2?: number;
  /** Most event-queue entries (log2) (default 7). */
  evtqLog2?: number;
  /** Keep every command issued in commandLog (reports, tests). */
  traceCommands?: boolean;
}

export interface GuestMasterOptions {
  /** The device's PCI PASID width (default 20). */
  pasidBits?: number;
  /** Firmware's "dma-can-stall" (default false). */
  canStall?: boolean;
}

interface CdTable {
  s1fmt: number;
  s1cdmax: number;
  /** Guest-physical address of the linear table or the L1 table. */
  base: number;
  /** 2-level: leaf tables by L1 index. */
  readonly l2: Map<number, number>;
}

export interface GuestMaster {
  readonly vsid: number;
  readonly ssidBits: number;
  readonly stallEnabled: boolean;
  cd: CdTable | null;
  /** What requests without a SubstreamID get. */
  rid: "blocked" | "bypass";
  /** SVA bonds by SSID. */
  readonly bonds: Map<number, GuestSvaBond>;
}

export interface GuestSvaBond {
  readonly master: GuestMaster;
  readonly proc: GuestProcess;
  readonly ssid: number;
  readonly asid: number;
}

/** An event as the guest's driver logged it. */
export interface GuestEvent {
  id: number;
  kind: string;
  sid: number;
  ssid: number;
  addr: bigint;
  stall: boolean;
  stag: number;
  words: Uint32Array;
}

interface Region {
  vpn: number;
  n: number;
  writable: boolean;
}

export class GuestSmmuDriver {
  // features
  readonly sidBits: number;
  readonly ssidBits: number;
  readonly st2l: boolean;
  readonly cd2l: boolean;
  readonly ril: boolean;
  readonly stalls: boolean;
  readonly stallForce: boolean;
  readonly asidBits: number;
  readonly oasCode: number;
  // structures in guest RAM (guest-physical addresses)
  readonly strtab: number;
  readonly strtabLog2: number;
  private readonly l2strtab = new Map<number, number>();
  readonly cmdq: number;
  readonly cmdqLog2: number;
  readonly evtq: number;
  readonly evtqLog2: number;
  private cmdqProd = 0;
  private evtqProdSeen = 0;
  /** Every command written to the queue (with traceCommands), in order. */
  readonly commandLog: Uint32Array[] | null;

  readonly masters = new Map<number, GuestMaster>();
  /** Events the driver read, the last 256. */
  readonly events: GuestEvent[] = [];
  /** Commands the vSMMU refused (skipped by the GERROR handler): opcode and CERROR code. */
  readonly cmdErrors: { op: number; err: number }[] = [];
  readonly stats = { commands: 0, syncs: 0, eventsRead: 0, stallsHandled: 0, resumesRetry: 0, resumesAbort: 0, overflows: 0 };
  /** mm->pasid of each process that was ever bound. */
  private readonly mmPasid = new Map<GuestProcess, number>();
  private readonly mmAsid = new Map<GuestProcess, number>();
  private readonly usedPasids = new Set<number>();
  private readonly usedAsids = new Set<number>();
  /** The guest kernel's VMAs that populate on fault. */
  private readonly regions = new Map<GuestProcess, Region[]>();

  constructor(
    readonly vm: Vm,
    readonly smmu: VSmmu,
    opts: GuestSmmuOptions = {},
  ) {
    this.commandLog = opts.traceCommands ? [] : null;
    const i0 = Idr0.decodeWords(new Uint32Array([smmu.readReg(SmmuReg.IDR0)]));
    const i1 = Idr1.decodeWords(new Uint32Array([smmu.readReg(SmmuReg.IDR1)]));
    const i3 = Idr3.decodeWords(new Uint32Array([smmu.readReg(SmmuReg.IDR3)]));
    const i5 = Idr5.decodeWords(new Uint32Array([smmu.readReg(SmmuReg.IDR5)]));
    if (!i0.s1p) fail("ENXIO", "no stage-1 translation");
    if (i0.ttf !== 2 && i0.ttf !== 3) fail("ENXIO", "no AArch64 table format");
    if (i0.ttendian === 3) fail("ENXIO", "big-endian tables only");
    if (!i5.gran4k) fail("ENXIO", "no 4 KiB granule");
    this.sidBits = i1.sidsize;
    this.ssidBits = i1.ssidsize;
    this.cd2l = i0.cd2l === 1;
    this.ril = i3.ril === 1;
    this.stalls = i0.stallModel === 0 || i0.stallModel === 2;
    this.stallForce = i0.stallModel === 2;
    this.asidBits = i0.asid16 ? 16 : 8;
    this.oasCode = i5.oas;
    this.st2l = i0.stLevel === 1 && this.sidBits > STRTAB_SPLIT;
    this.cmdqLog2 = Math.min(i1.cmdqs, opts.cmdqLog2 ?? 8);
    if (this.cmdqLog2 <= Math.log2(CMDQ_BATCH_ENTRIES)) fail("ENXIO", `command queue of ${2 ** this.cmdqLog2} entries: too small`);
    this.evtqLog2 = Math.min(i1.eventqs, opts.evtqLog2 ?? 7);
    // dma_alloc_coherent: guest pages from the table area, naturally aligned
    this.cmdq = this.alloc(2 ** this.cmdqLog2 * 16);
    this.evtq = this.alloc(2 ** this.evtqLog2 * EVENT_BYTES);
    if (this.st2l) {
      const numL1 = Math.min(2 ** (this.sidBits - STRTAB_SPLIT), STRTAB_MAX_L1_ENTRIES);
      this.strtabLog2 = Math.log2(numL1) + STRTAB_SPLIT;
      this.strtab = this.alloc(numL1 * 8);
    } else {
      this.strtabLog2 = this.sidBits;
      this.strtab = this.alloc(2 ** this.sidBits * 64);
      const abort = Ste.encodeWords({ v: 1, config: SteConfig.ABORT });
      for (let i = 0; i < 2 ** this.sidBits; i++) this.writeWords(this.strtab + i * 64, abort);
    }
    this.reset();
  }

  // ---- guest memory ---------------------------------------------------------------------------------

  private alloc(bytes: number): number {
    const frames = 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(bytes / PAGE_SIZE))));
    return this.vm.ram.allocTable(frames) * PAGE_SIZE;
  }

  private free(gpa: number, bytes: number): void {
    const frames = 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(bytes / PAGE_SIZE))));
    this.vm.ram.freeTable(gpa / PAGE_SIZE, frames);
  }

  private writeWords(gpa: number, w: Uint32Array, from = 0, to = w.length): void {
    const f = this.vm.ram.frameU32(Math.floor(gpa / PAGE_SIZE));
    const i = (gpa % PAGE_SIZE) >>> 2;
    for (let k = from; k < to; k++) f[i + k] = w[k];
  }

  /** The words at gpa as the guest reads them. */
  readWords(gpa: number, n: number): Uint32Array {
    const f = this.vm.ram.frameU32(Math.floor(gpa / PAGE_SIZE));
    const i = (gpa % PAGE_SIZE) >>> 2;
    return f.slice(i, i + n);
  }

  // ---- reset ----------------------------------------------------------------------------------------

  private reset(): void {
    const s = this.smmu;
    s.writeReg(SmmuReg.CR0, 0);
    s.writeReg(SmmuReg.CR1, (3 << 10) | (1 << 8) | (1 << 6) | (3 << 4) | (1 << 2) | 1);
    s.writeReg(SmmuReg.CR2, (1 << 2) | (1 << 1));
    if (this.st2l) s.writeReg(SmmuReg.STRTAB_BASE_CFG, strtabBaseCfg(STRTAB_FMT_2LVL, this.strtabLog2, STRTAB_SPLIT));
    else s.writeReg(SmmuReg.STRTAB_BASE_CFG, strtabBaseCfg(STRTAB_FMT_LINEAR, this.strtabLog2, 0));
    s.writeReg64(SmmuReg.STRTAB_BASE, BigInt(this.strtab) | (1n << 62n));
    s.writeReg64(SmmuReg.CMDQ_BASE, queueBase(this.cmdq, this.cmdqLog2));
    s.writeReg(SmmuReg.CMDQ_PROD, 0);
    s.writeReg(SmmuReg.CMDQ_CONS, 0);
    let enables = CR0_CMDQEN;
    s.writeReg(SmmuReg.CR0, enables);
    this.issue([{ kind: "cfgiSteRange", sid: 0, range: 31 }], true);
    this.issue([{ kind: "tlbiNsnhAll" }], true);
    s.writeReg64(SmmuReg.EVTQ_BASE, queueBase(this.evtq, this.evtqLog2));
    s.writeReg(SmmuReg.EVTQ_PROD, 0);
    s.writeReg(SmmuReg.EVTQ_CONS, 0);
    enables |= CR0_EVTQEN;
    s.writeReg(SmmuReg.CR0, enables);
    s.irq = { eventq: () => this.evtqThread(), gerror: () => this.gerrorHandler() };
    s.writeReg(SmmuReg.IRQ_CTRL, 0);
    s.writeReg(SmmuReg.IRQ_CTRL, IRQ_CTRL_EVTQ_IRQEN | IRQ_CTRL_GERROR_IRQEN);
    enables |= CR0_SMMUEN;
    s.writeReg(SmmuReg.CR0, enables);
  }

  // ---- commands --------------------------------------------------------------------------------------

  /** arm_smmu_cmdq_issue_cmdlist: the commands (and a CMD_SYNC) at PROD, then PROD; the vSMMU consumes them. */
  issue(cmds: readonly CmdInput[], sync: boolean): void {
    this.issueWords(
      cmds.map((c) => encodeCmdWords(c)),
      sync,
    );
  }

  issueWords(cmds: readonly Uint32Array[], sync: boolean): void {
    const n = 2 ** this.cmdqLog2;
    for (let start = 0; start < cmds.length || (sync && start === 0); start += CMDQ_BATCH_ENTRIES) {
      const batch = cmds.slice(start, start + CMDQ_BATCH_ENTRIES);
      const last = start + CMDQ_BATCH_ENTRIES >= cmds.length;
      let prod = this.cmdqProd;
      for (const w of batch) {
        this.writeWords(this.cmdq + (prod % n) * 16, w);
        this.commandLog?.push(w.slice());
        prod = (prod + 1) % (2 * n);
        this.stats.commands++;
      }
      if (sync && last) {
        const w = encodeCmdWords({ kind: "sync", cs: SyncCs.SEV, msh: Shareability.ISH, msiattr: 0xf });
        this.writeWords(this.cmdq + (prod % n) * 16, w);
        this.commandLog?.push(w);
        prod = (prod + 1) % (2 * n);
        this.stats.syncs++;
      }
      this.cmdqProd = prod;
      this.smmu.writeReg(SmmuReg.CMDQ_PROD, prod);
      const cons = this.smmu.readReg(SmmuReg.CMDQ_CONS) & (2 * n - 1);
      if (cons !== prod) fail("ETIMEDOUT", "CMD_SYNC timeout: the command queue did not drain");
      if (last) break;
    }
  }

  // ---- interrupts -------------------------------------------------------------------------------------

  /** arm_smmu_gerror_handler + arm_smmu_cmdq_skip_err. */
  private gerrorHandler(): void {
    const s = this.smmu;
    const gerror = s.readReg(SmmuReg.GERROR);
    const active = gerror ^ s.readReg(SmmuReg.GERRORN);
    if (active === 0) return;
    if (active & GERROR_CMDQ_ERR) {
      const cons = s.readReg(SmmuReg.CMDQ_CONS);
      const err = (cons & CMDQ_CONS_ERR_MASK) >>> CMDQ_CONS_ERR_SHIFT;
      const n = 2 ** this.cmdqLog2;
      const slot = this.cmdq + (cons & (n - 1)) * 16;
      const op = this.readWords(slot, 1)[0] & 0xff;
      this.cmdErrors.push({ op, err });
      if (this.cmdErrors.length > 256) this.cmdErrors.shift();
      // CERROR_ABT: retry as is; ILL and ATC_INV_SYNC: replace the command by a CMD_SYNC
      if (err !== CmdqErr.ABT) this.writeWords(slot, encodeCmdWords({ kind: "sync", cs: SyncCs.SEV, msh: Shareability.ISH, msiattr: 0xf }));
    }
    s.writeReg(SmmuReg.GERRORN, gerror);
  }

  /** arm_smmu_evtq_thread. */
  private evtqThread(): void {
    const s = this.smmu;
    const n = 2 ** this.evtqLog2;
    const mask = 2 * n - 1;
    let cons = s.readReg(SmmuReg.EVTQ_CONS);
    for (;;) {
      const prod = s.readReg(SmmuReg.EVTQ_PROD);
      // queue_sync_prod_in: OVFLG toggled since the PROD last seen = events were lost
      if (((prod ^ this.evtqProdSeen) & Q_OVF) !== 0) this.stats.overflows++;
      this.evtqProdSeen = prod;
      if ((cons & mask) === (prod & mask)) {
        s.writeReg(SmmuReg.EVTQ_CONS, ((cons & mask) | (prod & Q_OVF)) >>> 0);
        return;
      }
      const w = this.readWords(this.evtq + (cons & (n - 1)) * EVENT_BYTES, 8);
      cons = ((cons & Q_OVF) | (((cons & mask) + 1) & mask)) >>> 0;
      s.writeReg(SmmuReg.EVTQ_CONS, cons);
      this.handleEvent(w);
    }
  }

  private handleEvent(w: Uint32Array): void {
    this.stats.eventsRead++;
    // every record carries the StreamID in bits 63:32; the translation faults (0x10-0x13) carry
    // SSV/SSID, STAG, Stall, RnW and the input address where F_TRANSLATION has them
    const id = w[0] & 0xff;
    const fault = id >= EventId.F_TRANSLATION && id <= EventId.F_PERMISSION;
    const f = EvtFTranslation.acc;
    const ssv = fault || id === EventId.C_BAD_CD || id === EventId.C_BAD_STE ? f.ssv.get(w, 0) === 1 : id === EventId.C_BAD_SUBSTREAMID;
    const rec: GuestEvent = {
      id,
      kind: eventKindOfId(id) ?? "unknown",
      sid: w[1],
      ssid: ssv ? f.ssid.get(w, 0) : -1,
      addr: fault ? f.inputAddr.get(w, 0) : 0n,
      stall: fault && f.stall.get(w, 0) === 1,
      stag: fault ? f.stag.get(w, 0) : 0,
      words: w,
    };
    this.events.push(rec);
    if (this.events.length > 256) this.events.shift();
    if (!rec.stall) return; // arm_smmu_handle_evt: logged
    this.stats.stallsHandled++;
    const m = this.masters.get(rec.sid);
    const bond = m && rec.ssid >= 0 ? m.bonds.get(rec.ssid) : undefined;
    const ok = bond !== undefined && this.faultIn(bond.proc, rec.addr, f.rnw.get(w, 0) === 0);
    if (ok) this.stats.resumesRetry++;
    else this.stats.resumesAbort++;
    // arm_smmu_page_response: RESUME without a sync
    const cmd = new Uint32Array(4);
    cmd.set(CmdResume.fixedValue);
    CmdResume.acc.sid.set(cmd, 0, rec.sid);
    CmdResume.acc.stag.set(cmd, 0, rec.stag);
    CmdResume.acc.action.set(cmd, 0, ok ? ResumeAction.RETRY : ResumeAction.ABORT);
    this.issueWords([cmd], false);
  }

  // ---- the guest kernel's mm ----------------------------------------------------------------------------

  /** mmap without populate: n pages at vpn of proc that appear when touched (CPU or device fault). */
  reserve(proc: GuestProcess, vpn: number, n: number, writable = true): void {
    let list = this.regions.get(proc);
    if (list === undefined) this.regions.set(proc, (list = []));
    for (const r of list) if (vpn < r.vpn + r.n && r.vpn < vpn + n) fail("EEXIST", "overlapping region");
    list.push({ vpn, n, writable });
  }

  /** handle_mm_fault for a device's access at addr: true when the page is (now) there for it. */
  private faultIn(proc: GuestProcess, addr: bigint, write: boolean): boolean {
    const vpn = Number(addr >> 12n);
    const r = this.regions.get(proc)?.find((x) => vpn >= x.vpn && vpn < x.vpn + x.n);
    if (r === undefined) return false;
    if (write && !r.writable) return false;
    if (proc.guestPage(vpn) < 0) proc.map(vpn, 1, r.writable);
    return true;
  }

  // ---- masters ----------------------------------------------------------------------------------------

  /** arm_smmu_probe_device: the stream's L2 table (2-level), the SSID width, stalls. The RID starts blocked. */
  addMaster(vsid: number, o: GuestMasterOptions = {}): GuestMaster {
    if (this.masters.has(vsid)) fail("EBUSY", "stream already in use");
    if (!Number.isInteger(vsid) || vsid < 0 || vsid >= 2 ** this.sidBits) fail("ERANGE", `StreamID ${vsid} beyond the stream table`);
    if (this.st2l) this.initL2(vsid);
    let ssidBits = Math.min(this.ssidBits, o.pasidBits ?? 20);
    if (!this.cd2l) ssidBits = Math.min(ssidBits, CTXDESC_LINEAR_CDMAX);
    const stallEnabled = (this.stalls && (o.canStall ?? false)) || this.stallForce;
    const m: GuestMaster = { vsid, ssidBits, stallEnabled, cd: null, rid: "blocked", bonds: new Map() };
    this.masters.set(vsid, m);
    return m;
  }

  private initL2(sid: number): void {
    const l1 = Math.floor(sid / 2 ** STRTAB_SPLIT);
    if (this.l2strtab.has(l1)) return;
    const l2 = this.alloc(2 ** STRTAB_SPLIT * 64);
    const abort = Ste.encodeWords({ v: 1, config: SteConfig.ABORT });
    for (let i = 0; i < 2 ** STRTAB_SPLIT; i++) this.writeWords(l2 + i * 64, abort);
    this.writeWords(this.strtab + l1 * 8, L1Std.encodeWords({ span: STRTAB_SPLIT + 1, l2ptr: l2 }));
    this.l2strtab.set(l1, l2);
  }

  /** The guest-physical address of vsid's STE. */
  stePa(vsid: number): number {
    if (!this.st2l) return this.strtab + vsid * 64;
    const l2 = this.l2strtab.get(Math.floor(vsid / 2 ** STRTAB_SPLIT));
    if (l2 === undefined) fail("ENOENT", `no L2 stream table for StreamID ${vsid}`);
    return l2 + (vsid % 2 ** STRTAB_SPLIT) * 64;
  }

  private masterOf(vsid: number): GuestMaster {
    const m = this.masters.get(vsid);
    if (m === undefined) fail("ENODEV", `no master with StreamID 0x${vsid.toString(16)}`);
    return m;
  }

  private pasidsInUse(m: GuestMaster): boolean {
    return m.bonds.size > 0;
  }

  /** arm_smmu_attach_dev_blocked / _identity: the RID's mode. */
  attachRid(vsid: number, mode: "blocked" | "bypass"): void {
    const m = this.masterOf(vsid);
    m.rid = mode;
    this.installSte(m, this.steFor(m));
  }

  private steFor(m: GuestMaster): Uint32Array {
    if (this.pasidsInUse(m)) return this.cdtableSte(m, m.rid === "bypass" ? S1Dss.BYPASS : S1Dss.TERMINATE);
    return m.rid === "bypass" ? Ste.encodeWords({ v: 1, config: SteConfig.BYPASS }) : Ste.encodeWords({ v: 1, config: SteConfig.ABORT });
  }

  /** arm_smmu_make_cdtable_ste. */
  private cdtableSte(m: GuestMaster, s1dss: number): Uint32Array {
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
    });
  }

  /** Write the STE (see the header for the order), each step followed by CFGI_STE + CMD_SYNC. */
  private installSte(m: GuestMaster, target: Uint32Array): void {
    const pa = this.stePa(m.vsid);
    const cur = this.readWords(pa, 16);
    let same = true;
    for (let i = 0; i < 16; i++) if (cur[i] !== target[i]) same = false;
    if (same) return;
    const cfgi = (): void => this.issue([{ kind: "cfgiSte", sid: m.vsid, leaf: 1 }], true);
    const liveFirstChanges = (cur[0] & 1) === 1 && (cur[0] !== target[0] || cur[1] !== target[1]);
    if (liveFirstChanges) {
      this.writeWords(pa, new Uint32Array([cur[0] & ~1, cur[1]]));
      cfgi();
    }
    // the rest of the entry, then its first 64-bit word
    this.writeWords(pa, target, 2, 16);
    this.writeWords(pa, target, 0, 2);
    cfgi();
  }

  // ---- CD tables --------------------------------------------------------------------------------------

  /** arm_smmu_alloc_cd_tables + arm_smmu_alloc_cd_ptr. */
  private cdPtr(m: GuestMaster, ssid: number): number {
    if (m.cd === null) {
      const s1cdmax = m.ssidBits;
      const max = 2 ** s1cdmax;
      if (!this.cd2l || max <= CTXDESC_L2_ENTRIES) m.cd = { s1fmt: S1Fmt.LINEAR, s1cdmax, base: this.alloc(max * 64), l2: new Map() };
      else m.cd = { s1fmt: S1Fmt.L2_64K, s1cdmax, base: this.alloc(Math.ceil(max / CTXDESC_L2_ENTRIES) * 8), l2: new Map() };
    }
    const cd = m.cd;
    if (cd.s1fmt === S1Fmt.LINEAR) return cd.base + ssid * 64;
    const l1 = Math.floor(ssid / CTXDESC_L2_ENTRIES);
    let l2 = cd.l2.get(l1);
    if (l2 === undefined) {
      l2 = this.alloc(CTXDESC_L2_ENTRIES * 64);
      cd.l2.set(l1, l2);
      this.writeWords(cd.base + l1 * 8, L1Cd.encodeWords({ v: 1, l2ptr: l2 }));
      // an invalid L1CD can be cached
      this.issue([{ kind: "cfgiCd", sid: m.vsid, ssid, leaf: 0 }], true);
    }
    return l2 + (ssid % CTXDESC_L2_ENTRIES) * 64;
  }

  /** arm_smmu_make_sva_cd. */
  svaCd(m: GuestMaster, proc: GuestProcess, asid: number): Uint32Array {
    return Cd.encodeWords({
      t0sz: 64 - proc.addrWidth,
      tg0: Tg0.G4K,
      ir0: CacheAttr.WBRA,
      or0: CacheAttr.WBRA,
      sh0: Shareability.ISH,
      epd1: 1,
      v: 1,
      ips: this.oasCode,
      aa64: 1,
      s: m.stallEnabled ? 1 : 0,
      r: 1,
      a: 1,
      aset: 1,
      asid,
      ttb0: proc.rootGpa,
      mair0: GUEST_MAIR_EL1.lo,
      mair1: GUEST_MAIR_EL1.hi,
    });
  }

  private writeCd(m: GuestMaster, ssid: number, target: Uint32Array): void {
    const pa = this.cdPtr(m, ssid);
    const cfgi = (): void => this.issue([{ kind: "cfgiCd", sid: m.vsid, ssid, leaf: 1 }], true);
    const cur = this.readWords(pa, 16);
    if ((cur[0] & (1 << 31)) !== 0) {
      // break a live CD: V = 0 first
      this.writeWords(pa, new Uint32Array([cur[0] & ~(1 << 31)]));
      cfgi();
    }
    this.writeWords(pa, target, 1, 16);
    this.writeWords(pa, target, 0, 1);
    cfgi();
  }

  // ---- SVA ----------------------------------------------------------------------------------------------

  /** The SSID a process is bound at (its mm->pasid), or -1. */
  pasidOf(proc: GuestProcess): number {
    return this.mmPasid.get(proc) ?? -1;
  }

  /**
   * iommu_sva_bind_device: bind proc at its PASID (allocated on the first bind, or `ssid` when
   * given; a process has one PASID for every device). Writes the CD and, the first time, the
   * CD-table STE.
   */
  svaBind(vsid: number, proc: GuestProcess, ssid?: number): GuestSvaBond {
    const m = this.masterOf(vsid);
    if (proc.paging !== "arm64") fail("EINVAL", "the process's page table is not in the Arm format");
    let pasid = this.mmPasid.get(proc);
    if (pasid !== undefined && ssid !== undefined && ssid !== pasid) fail("EINVAL", `the process's PASID is ${pasid}`);
    if (pasid === undefined) {
      if (ssid !== undefined) {
        if (this.usedPasids.has(ssid)) fail("EBUSY", `PASID ${ssid} belongs to another process`);
        pasid = ssid;
      } else {
        pasid = 1;
        while (this.usedPasids.has(pasid)) pasid++;
      }
    }
    if (!(pasid > 0 && pasid < 2 ** m.ssidBits)) fail("EINVAL", `PASID ${pasid} beyond the device's ${m.ssidBits} SSID bits`);
    if (m.bonds.has(pasid)) fail("EBUSY", `PASID ${pasid} of StreamID 0x${vsid.toString(16)} is bound`);
    let asid = this.mmAsid.get(proc);
    const newAsid = asid === undefined;
    if (asid === undefined) {
      asid = 1;
      while (this.usedAsids.has(asid)) asid++;
      if (asid >= 2 ** this.asidBits) fail("ENOSPC", "no free ASID");
    }
    this.writeCd(m, pasid, this.svaCd(m, proc, asid));
    if (newAsid) {
      this.usedAsids.add(asid);
      this.mmAsid.set(proc, asid);
    }
    this.usedPasids.add(pasid);
    this.mmPasid.set(proc, pasid);
    const bond: GuestSvaBond = { master: m, proc, ssid: pasid, asid };
    m.bonds.set(pasid, bond);
    this.installSte(m, this.steFor(m));
    return bond;
  }

  /** iommu_sva_unbind_device: clear the CD, flush the ASID, and the STE without PASIDs if none is left. */
  svaUnbind(bond: GuestSvaBond): void {
    const m = bond.master;
    if (m.bonds.get(bond.ssid) !== bond) fail("ENOENT", "not bound");
    this.writeCd(m, bond.ssid, new Uint32Array(16));
    m.bonds.delete(bond.ssid);
    this.issue([{ kind: "tlbiNhAsid", asid: bond.asid }], true);
    this.installSte(m, this.steFor(m));
    // the mm keeps its PASID and ASID while any device still has it bound
    let used = false;
    for (const mm of this.masters.values()) for (const b of mm.bonds.values()) if (b.proc === bond.proc) used = true;
    if (!used) {
      this.usedPasids.delete(bond.ssid);
      this.usedAsids.delete(bond.asid);
      this.mmPasid.delete(bond.proc);
      this.mmAsid.delete(bond.proc);
    }
  }

  /**
   * The mmu notifier's arch_invalidate_secondary_tlbs for [vpn, vpn + n) of proc: TLBI_NH_VA
   * (Leaf = 0) of the process's ASID, then CMD_SYNC.
   */
  invalidate(proc: GuestProcess, vpn: number, n: number): void {
    const asid = this.mmAsid.get(proc);
    if (asid === undefined || n <= 0) return;
    this.issueWords(this.tlbiRange(asid, vpn, n), true);
  }

  /** munmap as the guest kernel does it: the pages go, then the notifier invalidates. */
  unmapAndInvalidate(proc: GuestProcess, vpn: number, n: number): void {
    proc.unmap(vpn, n);
    this.invalidate(proc, vpn, n);
  }

  /** __arm_smmu_tlb_inv_range for an ASID, Leaf = 0, 4 KiB granule. */
  tlbiRange(asid: number, vpn: number, n: number): Uint32Array[] {
    const cmds: Uint32Array[] = [];
    if (!this.ril) {
      if (n >= CMDQ_MAX_TLBI_OPS) return [encodeCmdWords({ kind: "tlbiNhAsid", asid })];
      for (let p = vpn; p < vpn + n; p++) cmds.push(encodeCmdWords({ kind: "tlbiNhVa", asid, addr: p * PAGE_SIZE }));
      return cmds;
    }
    let num = n;
    if ((num & 31) === 1) num++; // never scale = num = 0 for a non-leaf range
    let at = vpn;
    const end = vpn + n;
    while (at < end) {
      let scale = 0;
      while (Math.floor(num / 2 ** scale) % 2 === 0) scale++;
      const chunk = Math.floor(num / 2 ** scale) % 32;
      cmds.push(encodeCmdWords({ kind: "tlbiNhVa", asid, tg: 1, ttl: 0, leaf: 0, scale, num: chunk - 1, addr: at * PAGE_SIZE }));
      at += chunk * 2 ** scale;
      num -= chunk * 2 ** scale;
    }
    return cmds;
  }

  /** Free the structures a master's CD table took (the master goes). */
  removeMaster(vsid: number): void {
    const m = this.masterOf(vsid);
    for (const b of [...m.bonds.values()]) this.svaUnbind(b);
    m.rid = "blocked";
    this.installSte(m, this.steFor(m));
    if (m.cd !== null) {
      for (const l2 of m.cd.l2.values()) this.free(l2, CTXDESC_L2_ENTRIES * 64);
      this.free(m.cd.base, m.cd.s1fmt === S1Fmt.LINEAR ? 2 ** m.cd.s1cdmax * 64 : Math.ceil(2 ** m.cd.s1cdmax / CTXDESC_L2_ENTRIES) * 8);
      m.cd = null;
    }
    this.masters.delete(vsid);
  }

  /** The opcode names of the commands this driver issues (for reports). */
  static opName(op: number): string {
    for (const [k, v] of Object.entries(CmdOp)) if (v === op) return k;
    return `0x${op.toString(16)}`;
  }
}
