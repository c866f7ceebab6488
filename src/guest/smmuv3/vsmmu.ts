/**
 * The SMMUv3 a guest sees (QEMU's hw/arm/smmuv3.c with accel=on): a register file the guest
 * programs, and the guest's stream table, command queue and event queue in guest RAM. It
 * translates nothing itself: what the guest configures reaches the host SMMU through the VMM
 * (`VSmmuBackend`, vmm.ts) as iommufd vIOMMU objects, nested HWPTs and forwarded commands.
 *
 *  - Registers: the SMMUv3 register file both models share (hw/smmuv3/regfile.ts: offsets,
 *    read-only and write-ignored registers, CR0/CR0ACK, GBPA Update, queue bases and indexes,
 *    GERROR/GERRORN, the event queue's producer side, interrupt delivery). IDR0..5, IIDR, AIDR are
 *    what the VMM advertises (stage 1 only, no PRI queue).
 *  - Command queue in guest RAM, consumed synchronously when CMDQ_PROD is written (CMDQEN = 1).
 *    CFGI_STE / CFGI_STE_RANGE / CFGI_ALL go to the backend as "these vSIDs' STEs changed";
 *    TLBI_NH_ALL / NH_ASID / NH_VA / NH_VAA, TLBI_NSNH_ALL, CFGI_CD / CFGI_CD_ALL and ATC_INV are
 *    handed over in runs (one HWPT_INVALIDATE per run); RESUME / STALL_TERM go to the backend;
 *    CMD_SYNC completes (counted; CS = SEV bumps `sevCount`); PREFETCH_* do nothing.
 *  - An illegal command (unknown opcode, a reserved bit set, SSec = 1, a command of a feature the
 *    vSMMU does not advertise: stage-2 or EL2/EL3 TLBIs, ATC_INV without ATS, PRI_RESP, TLBI range
 *    fields without RIL, CMD_SYNC CS = 3) and a command the backend could not carry out (QEMU:
 *    a failed STE install or invalidation is CERROR_ILL) stop the queue at that command with
 *    CMDQ_CONS.ERR = CERROR_ILL and GERROR.CMDQ_ERR active; acknowledging through GERRORN
 *    restarts it at the same entry (which the guest's driver has replaced, as Linux does). A
 *    queue base outside guest RAM is CERROR_ABT.
 *  - Event queue in guest RAM: the VMM writes records at EVTQ_PROD (`pushEvent`); a full queue
 *    drops the record and flags overflow, a queue outside guest RAM raises EVTQ_ABT_ERR.
 *  - Interrupts: `irq`, the guest's handlers (no PRI queue), delivered as regfile.ts says.
 *  - `readSte(vsid)` reads the guest's STE (linear or 2-level stream table) for the VMM.
 */
import { assert } from "../../errno.js";
import { CMD_LAYOUTS, CmdOp, SyncCs, cmdKindOfOpcode, type CmdKind } from "../../hw/smmuv3/cmdq.js";
import { EVENT_BYTES } from "../../hw/smmuv3/events.js";
import { Push, SmmuRegisterFile, type SmmuIrqHandlers } from "../../hw/smmuv3/regfile.js";
import { Idr0, Idr1, Idr3, Idr5 } from "../../hw/smmuv3/regs.js";
import { STE_BYTES } from "../../hw/smmuv3/tables.js";
import { CR0_CMDQEN, CR0_EVTQEN, CR0_SMMUEN, CmdqErr, GBPA_ABORT, STRTAB_FMT_2LVL, type SmmuIdRegs } from "../../hw/smmuv3/unit-regs.js";
import type { GuestRam } from "../ram.js";

/** What the VMM does for the commands that reach the host (vmm.ts implements it). */
export interface VSmmuBackend {
  /**
   * CFGI_STE, CFGI_STE_RANGE or CFGI_ALL covering vSIDs [first, last]: re-read those STEs.
   * Returns null, or the errno of the failure (the command is then CERROR_ILL).
   */
  steChanged(first: number, last: number): string | null;
  /**
   * A run of invalidation commands (TLBI_NH_*, TLBI_NSNH_ALL, CFGI_CD*, ATC_INV; 4 words each, as
   * the guest wrote them): forward them. Returns how many were carried out and, when fewer than
   * all, the errno of the next one (that command is then CERROR_ILL).
   */
  invalidate(cmds: readonly Uint32Array[]): { done: number; errno: string | null };
  /** CMD_RESUME for (vSID, STAG); action is the ResumeAction bits. */
  resume(vsid: number, stag: number, action: number): void;
  /** CMD_STALL_TERM: every stalled transaction of vSID ends. */
  stallTerm(vsid: number): void;
  /** SMMUEN, EVTQEN or GBPA changed. */
  configChanged(): void;
}

/** The guest's interrupt handlers (wired lines in QEMU's virt machine; no PRI queue here). */
export type VSmmuIrqHandlers = Omit<SmmuIrqHandlers, "priq">;

/** A record of an illegal or failed command, for reports and tests. */
export interface VSmmuCmdError {
  /** The queue index (without wrap) the command sat at. */
  index: number;
  words: Uint32Array;
  /** CmdqErr code given to the guest. */
  err: number;
  /** The backend's errno when it was the backend's failure, else null. */
  errno: string | null;
  why: string;
}

export interface VSmmuStats {
  commands: number;
  syncs: number;
  forwardedRuns: number;
  eventsWritten: number;
  eventsLost: number;
}

/** The forwarded opcodes (QEMU's accel path hands these to the host). */
const FORWARDED = new Set<number>([
  CmdOp.TLBI_NH_ALL,
  CmdOp.TLBI_NH_ASID,
  CmdOp.TLBI_NH_VA,
  CmdOp.TLBI_NH_VAA,
  CmdOp.TLBI_NSNH_ALL,
  CmdOp.CFGI_CD,
  CmdOp.CFGI_CD_ALL,
  CmdOp.ATC_INV,
]);

export class VSmmu extends SmmuRegisterFile {
  readonly stats: VSmmuStats = { commands: 0, syncs: 0, forwardedRuns: 0, eventsWritten: 0, eventsLost: 0 };
  /** CMD_SYNCs with CS = SEV completed. */
  sevCount = 0;
  /** Every illegal or failed command, oldest first (the last 64). */
  readonly cmdErrors: VSmmuCmdError[] = [];

  // features from the IDRs
  readonly sidBits: number;
  readonly ssidBits: number;
  readonly s2: boolean;
  readonly hyp: boolean;
  readonly ats: boolean;
  readonly pri: boolean;
  readonly ril: boolean;
  readonly st2l: boolean;

  constructor(
    readonly ram: GuestRam,
    idr: SmmuIdRegs,
    private readonly backend: VSmmuBackend,
  ) {
    super(idr);
    const f = this.features;
    this.sidBits = f.sidBits;
    this.ssidBits = f.ssidBits;
    this.s2 = f.s2;
    this.hyp = f.hyp;
    this.ats = f.ats;
    this.pri = f.pri;
    this.ril = f.ril;
    this.st2l = f.st2l;
  }

  /** The ID registers the VMM advertises. */
  get idr(): Readonly<SmmuIdRegs> {
    return this.idRegs;
  }

  // ==============================================================================================
  // State the VMM reads

  get evtqEnabled(): boolean {
    return (this.cr0 & CR0_EVTQEN) !== 0;
  }

  get gbpaAbort(): boolean {
    return (this.gbpa & GBPA_ABORT) !== 0;
  }

  protected override cr0Written(old: number): void {
    if ((old ^ this.cr0) & (CR0_SMMUEN | CR0_EVTQEN)) this.backend.configChanged();
  }

  protected override gbpaUpdated(): void {
    this.backend.configChanged();
  }

  // ==============================================================================================
  // Guest RAM access (structures never cross a page: they are naturally aligned)

  /** n 32-bit words at gpa (zeros for never-written RAM); null outside guest RAM. */
  readWords(gpa: number, n: number): Uint32Array | null {
    if (!this.ram.contains(gpa, n * 4)) return null;
    const f = this.ram.peekFrameU32(Math.floor(gpa / 4096));
    const out = new Uint32Array(n);
    if (f !== undefined) {
      const i = (gpa % 4096) >>> 2;
      for (let k = 0; k < n; k++) out[k] = f[i + k];
    }
    return out;
  }

  protected writeQueueWords(gpa: number, w: Uint32Array): boolean {
    if (!this.ram.contains(gpa, w.length * 4)) return false;
    const f = this.ram.frameU32(Math.floor(gpa / 4096));
    const i = (gpa % 4096) >>> 2;
    for (let k = 0; k < w.length; k++) f[i + k] = w[k];
    return true;
  }

  // ==============================================================================================
  // Stream table

  /**
   * The guest's STE for vsid (16 words), or null when the stream table has none: vSID beyond
   * the table, an invalid L1 descriptor or a Span too small, or a table outside guest RAM (what
   * the hardware reports as C_BAD_STREAMID / F_STE_FETCH).
   */
  readSte(vsid: number): Uint32Array | null {
    const cfg = this.strtabCfg;
    const log2size = cfg & 0x3f;
    const fmt = (cfg >>> 16) & 3;
    const base = this.strtabAddr;
    if (!Number.isInteger(vsid) || vsid < 0 || vsid >= 2 ** Math.min(log2size, this.sidBits)) return null;
    if (fmt !== STRTAB_FMT_2LVL) return this.readWords(base + vsid * STE_BYTES, 16);
    const split = (cfg >>> 6) & 0x1f;
    const l1 = this.readWords(base + Math.floor(vsid / 2 ** split) * 8, 2);
    if (l1 === null) return null;
    const span = l1[0] & 0x1f;
    if (span === 0) return null;
    const l2 = SmmuRegisterFile.baseAddr(l1[0], l1[1], 0xffffffc0);
    const i = vsid % 2 ** split;
    if (i >= 2 ** (span - 1)) return null;
    return this.readWords(l2 + i * STE_BYTES, 16);
  }

  // ==============================================================================================
  // Command queue

  protected consumeCmdq(): void {
    if ((this.cr0 & CR0_CMDQEN) === 0 || this.cmdqErrActive()) return;
    const log2 = this.cmdqLog2;
    const base = this.cmdqAddr;
    let run: Uint32Array[] = [];
    let runStart = 0;
    const flush = (): boolean => {
      if (run.length === 0) return true;
      const cmds = run;
      run = [];
      this.stats.forwardedRuns++;
      const r = this.backend.invalidate(cmds);
      if (r.errno === null && r.done === cmds.length) return true;
      // the commands before the failing one are done; CONS stops at it
      let cons = runStart;
      for (let i = 0; i < r.done; i++) cons = SmmuRegisterFile.qInc(cons, log2);
      this.cmdqCons = cons;
      this.cmdError(cmds[r.done] ?? new Uint32Array(4), CmdqErr.ILL, r.errno ?? "EIO", "the host refused the forwarded command");
      return false;
    };
    while (!SmmuRegisterFile.qEmpty(this.cmdqProd, this.cmdqCons, log2)) {
      const cons = this.cmdqCons;
      const w = this.readWords(base + SmmuRegisterFile.qIdx(cons, log2) * 16, 4);
      if (w === null) {
        if (!flush()) return;
        this.cmdError(new Uint32Array(4), CmdqErr.ABT, null, "command queue outside guest RAM");
        return;
      }
      this.stats.commands++;
      const op = w[0] & 0xff;
      const why = this.illegal(w, op);
      if (why !== null) {
        if (!flush()) return;
        this.cmdError(w, CmdqErr.ILL, null, why);
        return;
      }
      if (FORWARDED.has(op)) {
        if (run.length === 0) runStart = cons;
        run.push(w);
        this.cmdqCons = SmmuRegisterFile.qInc(cons, log2);
        continue;
      }
      if (!flush()) return;
      const errno = this.execute(w, op);
      if (errno !== null) {
        this.cmdError(w, CmdqErr.ILL, errno, "the VMM could not carry out the command");
        return;
      }
      this.cmdqCons = SmmuRegisterFile.qInc(this.cmdqCons, log2);
    }
    flush();
  }

  /** The command at CONS is illegal or failed: stop the queue there and keep a record. */
  private cmdError(w: Uint32Array, err: number, errno: string | null, why: string): void {
    this.stopCmdq(err);
    this.cmdErrors.push({ index: SmmuRegisterFile.qIdx(this.cmdqCons, this.cmdqLog2), words: w.slice(), err, errno, why });
    if (this.cmdErrors.length > 64) this.cmdErrors.shift();
  }

  /** Why command w is CERROR_ILL on this vSMMU, or null. */
  private illegal(w: Uint32Array, op: number): string | null {
    if (op === CmdOp.PREFETCH_ADDR) return null;
    const kind: CmdKind | undefined = cmdKindOfOpcode(op);
    if (kind === undefined) return `unknown opcode 0x${op.toString(16)}`;
    const layout = CMD_LAYOUTS[kind];
    if (layout.hasReservedBits(w, 0)) return `reserved bits set in ${kind}`;
    if ((op === CmdOp.PREFETCH_CONFIG || op === CmdOp.CFGI_STE || op === CmdOp.CFGI_STE_RANGE || op === CmdOp.CFGI_CD || op === CmdOp.CFGI_CD_ALL || op === CmdOp.RESUME || op === CmdOp.STALL_TERM) && (w[0] & (1 << 10)) !== 0)
      return "SSec = 1 on a Non-secure SMMU";
    switch (op) {
      case CmdOp.TLBI_S12_VMALL:
      case CmdOp.TLBI_S2_IPA:
        return this.s2 ? null : "stage-2 invalidation on an SMMU without stage 2";
      case CmdOp.TLBI_EL2_ALL:
      case CmdOp.TLBI_EL2_ASID:
      case CmdOp.TLBI_EL2_VA:
      case CmdOp.TLBI_EL2_VAA:
      case CmdOp.TLBI_EL3_ALL:
      case CmdOp.TLBI_EL3_VA:
        return "EL2/EL3 invalidation on an SMMU without them";
      case CmdOp.ATC_INV:
        return this.ats ? null : "ATC_INV on an SMMU without ATS";
      case CmdOp.PRI_RESP:
        return this.pri ? null : "PRI_RESP on an SMMU without PRI";
      case CmdOp.TLBI_NH_VA:
      case CmdOp.TLBI_NH_VAA: {
        const range = (w[0] & ((0x1f << 12) | (0x3f << 20))) !== 0 || (w[2] & (0xf << 8)) !== 0;
        return range && !this.ril ? "TLBI range fields on an SMMU without RIL" : null;
      }
      case CmdOp.CMD_SYNC:
        return ((w[0] >>> 12) & 3) === 3 ? "CMD_SYNC CS = 3 is reserved" : null;
      default:
        return null;
    }
  }

  /** Execute a non-forwarded command; returns the errno of a backend failure, or null. */
  private execute(w: Uint32Array, op: number): string | null {
    switch (op) {
      case CmdOp.CFGI_STE: {
        const sid = w[1];
        return this.backend.steChanged(sid, sid);
      }
      case CmdOp.CFGI_STE_RANGE: {
        const range = w[2] & 0x1f;
        if (range === 31) return this.backend.steChanged(0, 2 ** this.sidBits - 1);
        const n = 2 ** (range + 1);
        const first = Math.floor(w[1] / n) * n;
        return this.backend.steChanged(first, first + n - 1);
      }
      case CmdOp.RESUME:
        this.backend.resume(w[1], w[2] & 0xffff, (w[0] >>> 12) & 3);
        return null;
      case CmdOp.STALL_TERM:
        this.backend.stallTerm(w[1]);
        return null;
      case CmdOp.CMD_SYNC:
        this.stats.syncs++;
        if (((w[0] >>> 12) & 3) === SyncCs.SEV) this.sevCount++;
        return null;
      default:
        return null; // PREFETCH_CONFIG, PREFETCH_ADDR
    }
  }

  // ==============================================================================================
  // Event queue (the VMM's side)

  /**
   * Write one 32-byte event record at EVTQ_PROD and raise the event interrupt. Returns false when
   * the record could not be queued: the event queue is disabled, full (overflow is flagged), or
   * outside guest RAM (GERROR.EVTQ_ABT_ERR).
   */
  pushEvent(rec: Uint32Array): boolean {
    assert(rec.length === EVENT_BYTES / 4, "an event record is 8 words");
    return this.batch(() => {
      const r = this.pushRecord(false, rec);
      if (r === Push.WRITTEN) this.stats.eventsWritten++;
      else this.stats.eventsLost++;
      return r === Push.WRITTEN;
    });
  }

  /** Events were lost (the queue was full, or the host's vEVENTQ overflowed): flag overflow. */
  overflow(): void {
    this.batch(() => {
      this.stats.eventsLost++;
      this.flagOverflow(false);
    });
  }
}

/** The vSMMU's ID registers, as fields (for reports). */
export function describeIdRegs(idr: SmmuIdRegs): string[] {
  return [
    `IDR0 0x${idr.idr0.toString(16).padStart(8, "0")} ${Idr0.describe(Idr0.decodeWords(new Uint32Array([idr.idr0])))}`,
    `IDR1 0x${idr.idr1.toString(16).padStart(8, "0")} ${Idr1.describe(Idr1.decodeWords(new Uint32Array([idr.idr1])))}`,
    `IDR3 0x${idr.idr3.toString(16).padStart(8, "0")} ${Idr3.describe(Idr3.decodeWords(new Uint32Array([idr.idr3])))}`,
    `IDR5 0x${idr.idr5.toString(16).padStart(8, "0")} ${Idr5.describe(Idr5.decodeWords(new Uint32Array([idr.idr5])))}`,
    `IIDR 0x${idr.iidr.toString(16)} AIDR 0x${idr.aidr.toString(16)} (SMMUv${((idr.aidr >>> 4) & 0xf) + 3}.${idr.aidr & 0xf})`,
  ];
}
