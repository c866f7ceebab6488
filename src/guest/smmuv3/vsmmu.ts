/**
 * The SMMUv3 a guest sees (QEMU's hw/arm/smmuv3.c with accel=on): a register file the guest
 * programs, and the guest's stream table, command queue and event queue in guest RAM. It
 * translates nothing itself: what the guest configures reaches the host SMMU through the VMM
 * (`VSmmuBackend`, vmm.ts) as iommufd vIOMMU objects, nested HWPTs and forwarded commands.
 *
 *  - Registers at the architecture's offsets (SmmuReg, hw/smmuv3/unit-regs.ts), 32 bits each;
 *    64-bit registers are two halves (readReg64/writeReg64 at the edge). IDR0..5, IIDR, AIDR are
 *    what the VMM advertises (stage 1 only). CR0 is acknowledged at once (CR0ACK), GBPA updates
 *    complete at once; STRTAB_BASE(_CFG) are ignored while SMMUEN = 1, a queue's base and its
 *    SMMU-owned index while the queue is enabled.
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
 *    drops the record and flags overflow (PROD.OVFLG toggled while it equals CONS.OVACKFLG).
 *  - Interrupts (`irq`: the guest's handlers, enabled by IRQ_CTRL) are delivered when the
 *    outermost call into the vSMMU returns, never in the middle of an operation; a handler may
 *    call back in (the global-error line is taken at once even then, as on the host unit).
 *  - `readSte(vsid)` reads the guest's STE (linear or 2-level stream table) for the VMM.
 */
import { assert } from "../../errno.js";
import { CMD_LAYOUTS, CmdOp, SyncCs, cmdKindOfOpcode, type CmdKind } from "../../hw/smmuv3/cmdq.js";
import { EVENT_BYTES } from "../../hw/smmuv3/events.js";
import { Idr0, Idr1, Idr3, Idr5 } from "../../hw/smmuv3/regs.js";
import { STE_BYTES } from "../../hw/smmuv3/tables.js";
import {
  CMDQ_CONS_ERR_MASK,
  CMDQ_CONS_ERR_SHIFT,
  CR0_CMDQEN,
  CR0_EVTQEN,
  CR0_SMMUEN,
  CmdqErr,
  GBPA_ABORT,
  GBPA_UPDATE,
  GERROR_CMDQ_ERR,
  GERROR_EVTQ_ABT_ERR,
  IRQ_CTRL_EVTQ_IRQEN,
  IRQ_CTRL_GERROR_IRQEN,
  PAGE1_OFFSET,
  Q_OVF,
  STRTAB_FMT_2LVL,
  SmmuReg,
  type SmmuIdRegs,
} from "../../hw/smmuv3/unit-regs.js";
import type { GuestRam } from "../ram.js";

/** CR0 bits this vSMMU implements (no PRI queue, no ATS checking). */
const VCR0_MASK = CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN;
/** IRQ_CTRL bits this vSMMU implements (no PRI queue). */
const VIRQ_MASK = IRQ_CTRL_GERROR_IRQEN | IRQ_CTRL_EVTQ_IRQEN;
/** GBPA: everything but Update is stored (ABORT 20, INSTCFG/PRIVCFG/SHCFG/ALLOCCFG/MTCFG/MEMATTR). */
const GBPA_FIELDS = 0x1fff3f;
/** GBPA's reset value in QEMU (SHCFG = use incoming, no abort). */
export const GBPA_RESET = 0x1000;
/** The largest queue this vSMMU takes (IDR1.CMDQS / EVENTQS are capped here too). */
const MAX_QUEUE_LOG2 = 19;

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

/** The guest's interrupt handlers (wired lines in QEMU's virt machine). */
export interface VSmmuIrqHandlers {
  eventq?: () => void;
  gerror?: () => void;
}

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

/** Index register helpers: index bits [0, log2), wrap bit at log2. */
function qIdx(v: number, log2: number): number {
  return v & ((1 << log2) - 1);
}
function qWrap(v: number, log2: number): number {
  return (v >>> log2) & 1;
}
function qInc(v: number, log2: number): number {
  const mask = (2 << log2) - 1;
  return ((v & ~mask) | ((v + 1) & mask)) >>> 0;
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

export class VSmmu {
  readonly idr: Readonly<SmmuIdRegs>;
  irq: VSmmuIrqHandlers = {};
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
  private readonly cmdqsMax: number;
  private readonly evtqsMax: number;

  // registers
  private cr0 = 0;
  private cr1 = 0;
  private cr2 = 0;
  private gbpa = GBPA_RESET;
  private irqCtrl = 0;
  private gerror = 0;
  private gerrorn = 0;
  private strtabBaseLo = 0;
  private strtabBaseHi = 0;
  private strtabCfg = 0;
  private cmdqBaseLo = 0;
  private cmdqBaseHi = 0;
  private cmdqProd = 0;
  private cmdqCons = 0;
  private evtqBaseLo = 0;
  private evtqBaseHi = 0;
  private evtqProd = 0;
  private evtqCons = 0;
  /** IRQ_CFG registers and anything else stored but not acted on. */
  private readonly plain = new Map<number, number>();

  // interrupt delivery
  private depth = 0;
  private delivering = false;
  private pendEvtq = false;
  private pendGerror = false;

  constructor(
    readonly ram: GuestRam,
    idr: SmmuIdRegs,
    private readonly backend: VSmmuBackend,
  ) {
    this.idr = { ...idr };
    const i0 = Idr0.decodeWords(new Uint32Array([idr.idr0]));
    const i1 = Idr1.decodeWords(new Uint32Array([idr.idr1]));
    const i3 = Idr3.decodeWords(new Uint32Array([idr.idr3]));
    this.sidBits = i1.sidsize;
    this.ssidBits = i1.ssidsize;
    this.s2 = i0.s2p === 1;
    this.hyp = i0.hyp === 1;
    this.ats = i0.ats === 1;
    this.pri = i0.pri === 1;
    this.ril = i3.ril === 1;
    this.st2l = i0.stLevel === 1;
    this.cmdqsMax = Math.min(MAX_QUEUE_LOG2, i1.cmdqs);
    this.evtqsMax = Math.min(MAX_QUEUE_LOG2, i1.eventqs);
  }

  // ==============================================================================================
  // State the VMM reads

  get smmuEnabled(): boolean {
    return (this.cr0 & CR0_SMMUEN) !== 0;
  }

  get evtqEnabled(): boolean {
    return (this.cr0 & CR0_EVTQEN) !== 0;
  }

  get gbpaAbort(): boolean {
    return (this.gbpa & GBPA_ABORT) !== 0;
  }

  /** Entries of the event queue as the guest configured it (log2). */
  get evtqLog2(): number {
    return Math.min(this.evtqBaseLo & 0x1f, this.evtqsMax);
  }

  private get cmdqLog2(): number {
    return Math.min(this.cmdqBaseLo & 0x1f, this.cmdqsMax);
  }

  private baseAddr(lo: number, hi: number, lowMask: number): number {
    return (hi & 0xfffff) * 2 ** 32 + ((lo & lowMask) >>> 0);
  }

  private get cmdqAddr(): number {
    return this.baseAddr(this.cmdqBaseLo, this.cmdqBaseHi, 0xffffffe0);
  }

  private get evtqAddr(): number {
    return this.baseAddr(this.evtqBaseLo, this.evtqBaseHi, 0xffffffe0);
  }

  // ==============================================================================================
  // Registers

  readReg(off: number): number {
    if (off >= PAGE1_OFFSET) off -= PAGE1_OFFSET;
    switch (off) {
      case SmmuReg.IDR0:
        return this.idr.idr0;
      case SmmuReg.IDR1:
        return this.idr.idr1;
      case SmmuReg.IDR2:
        return this.idr.idr2;
      case SmmuReg.IDR3:
        return this.idr.idr3;
      case SmmuReg.IDR4:
        return this.idr.idr4;
      case SmmuReg.IDR5:
        return this.idr.idr5;
      case SmmuReg.IIDR:
        return this.idr.iidr;
      case SmmuReg.AIDR:
        return this.idr.aidr;
      case SmmuReg.CR0:
      case SmmuReg.CR0ACK:
        return this.cr0;
      case SmmuReg.CR1:
        return this.cr1;
      case SmmuReg.CR2:
        return this.cr2;
      case SmmuReg.GBPA:
        return this.gbpa;
      case SmmuReg.IRQ_CTRL:
      case SmmuReg.IRQ_CTRLACK:
        return this.irqCtrl;
      case SmmuReg.GERROR:
        return this.gerror;
      case SmmuReg.GERRORN:
        return this.gerrorn;
      case SmmuReg.STRTAB_BASE:
        return this.strtabBaseLo;
      case SmmuReg.STRTAB_BASE + 4:
        return this.strtabBaseHi;
      case SmmuReg.STRTAB_BASE_CFG:
        return this.strtabCfg;
      case SmmuReg.CMDQ_BASE:
        return this.cmdqBaseLo;
      case SmmuReg.CMDQ_BASE + 4:
        return this.cmdqBaseHi;
      case SmmuReg.CMDQ_PROD:
        return this.cmdqProd;
      case SmmuReg.CMDQ_CONS:
        return this.cmdqCons;
      case SmmuReg.EVTQ_BASE:
        return this.evtqBaseLo;
      case SmmuReg.EVTQ_BASE + 4:
        return this.evtqBaseHi;
      case SmmuReg.EVTQ_PROD - PAGE1_OFFSET:
        return this.evtqProd;
      case SmmuReg.EVTQ_CONS - PAGE1_OFFSET:
        return this.evtqCons;
      default:
        return this.plain.get(off) ?? 0;
    }
  }

  readReg64(off: number): bigint {
    return BigInt(this.readReg(off)) | (BigInt(this.readReg(off + 4)) << 32n);
  }

  writeReg64(off: number, v: bigint): void {
    this.enter();
    try {
      this.write32(off + 4, Number((v >> 32n) & 0xffffffffn));
      this.write32(off, Number(v & 0xffffffffn));
    } finally {
      this.leave();
    }
  }

  writeReg(off: number, v: number): void {
    this.enter();
    try {
      this.write32(off, v >>> 0);
    } finally {
      this.leave();
    }
  }

  private write32(off: number, v: number): void {
    if (off >= PAGE1_OFFSET) off -= PAGE1_OFFSET;
    switch (off) {
      case SmmuReg.CR0: {
        const old = this.cr0;
        this.cr0 = v & VCR0_MASK;
        if ((old ^ this.cr0) & (CR0_SMMUEN | CR0_EVTQEN)) this.backend.configChanged();
        if ((this.cr0 & CR0_CMDQEN) !== 0 && (old & CR0_CMDQEN) === 0) this.consumeCmdq();
        return;
      }
      case SmmuReg.CR1:
        if (!this.smmuEnabled) this.cr1 = v;
        return;
      case SmmuReg.CR2:
        if (!this.smmuEnabled) this.cr2 = v;
        return;
      case SmmuReg.GBPA:
        if ((v & GBPA_UPDATE) === 0) return;
        this.gbpa = v & GBPA_FIELDS;
        this.backend.configChanged();
        return;
      case SmmuReg.IRQ_CTRL:
        this.irqCtrl = v & VIRQ_MASK;
        return;
      case SmmuReg.GERRORN: {
        this.gerrorn = v & (GERROR_CMDQ_ERR | GERROR_EVTQ_ABT_ERR);
        if (!this.cmdqErrActive()) {
          this.cmdqCons = (this.cmdqCons & ~CMDQ_CONS_ERR_MASK) >>> 0;
          this.consumeCmdq();
        }
        return;
      }
      case SmmuReg.STRTAB_BASE:
        if (!this.smmuEnabled) this.strtabBaseLo = v;
        return;
      case SmmuReg.STRTAB_BASE + 4:
        if (!this.smmuEnabled) this.strtabBaseHi = v;
        return;
      case SmmuReg.STRTAB_BASE_CFG:
        if (!this.smmuEnabled) this.strtabCfg = v & 0x307ff;
        return;
      case SmmuReg.CMDQ_BASE:
        if ((this.cr0 & CR0_CMDQEN) === 0) this.cmdqBaseLo = v;
        return;
      case SmmuReg.CMDQ_BASE + 4:
        if ((this.cr0 & CR0_CMDQEN) === 0) this.cmdqBaseHi = v;
        return;
      case SmmuReg.CMDQ_PROD:
        this.cmdqProd = v & ((2 << this.cmdqLog2) - 1);
        this.consumeCmdq();
        return;
      case SmmuReg.CMDQ_CONS:
        if ((this.cr0 & CR0_CMDQEN) === 0) this.cmdqCons = v & ((2 << this.cmdqLog2) - 1);
        return;
      case SmmuReg.EVTQ_BASE:
        if (!this.evtqEnabled) this.evtqBaseLo = v;
        return;
      case SmmuReg.EVTQ_BASE + 4:
        if (!this.evtqEnabled) this.evtqBaseHi = v;
        return;
      case SmmuReg.EVTQ_PROD - PAGE1_OFFSET:
        if (!this.evtqEnabled) this.evtqProd = v & (((2 << this.evtqLog2) - 1) | Q_OVF);
        return;
      case SmmuReg.EVTQ_CONS - PAGE1_OFFSET:
        this.evtqCons = (v & (((2 << this.evtqLog2) - 1) | Q_OVF)) >>> 0;
        return;
      case SmmuReg.GERROR_IRQ_CFG0:
      case SmmuReg.GERROR_IRQ_CFG0 + 4:
      case SmmuReg.GERROR_IRQ_CFG1:
      case SmmuReg.GERROR_IRQ_CFG2:
      case SmmuReg.EVTQ_IRQ_CFG0:
      case SmmuReg.EVTQ_IRQ_CFG0 + 4:
      case SmmuReg.EVTQ_IRQ_CFG1:
      case SmmuReg.EVTQ_IRQ_CFG2:
        this.plain.set(off, v);
        return;
      default:
        return; // read-only or unimplemented: write ignored
    }
  }

  // ==============================================================================================
  // Interrupts

  private enter(): void {
    this.depth++;
  }

  private leave(): void {
    if (--this.depth > 0) return;
    if (this.delivering) {
      while (this.pendGerror) {
        this.pendGerror = false;
        if ((this.irqCtrl & IRQ_CTRL_GERROR_IRQEN) !== 0) this.irq.gerror?.();
      }
      return;
    }
    this.delivering = true;
    try {
      for (;;) {
        if (this.pendGerror) {
          this.pendGerror = false;
          if ((this.irqCtrl & IRQ_CTRL_GERROR_IRQEN) !== 0) this.irq.gerror?.();
          continue;
        }
        if (this.pendEvtq) {
          this.pendEvtq = false;
          if ((this.irqCtrl & IRQ_CTRL_EVTQ_IRQEN) !== 0) this.irq.eventq?.();
          continue;
        }
        break;
      }
    } finally {
      this.delivering = false;
    }
  }

  /** Run fn as one call into the vSMMU (interrupts it raises are delivered when it returns). */
  batch<T>(fn: () => T): T {
    this.enter();
    try {
      return fn();
    } finally {
      this.leave();
    }
  }

  private raiseGerror(bit: number): void {
    // a global error becomes active by toggling its GERROR bit to differ from GERRORN
    if (((this.gerror ^ this.gerrorn) & bit) !== 0) return;
    this.gerror = (this.gerror ^ bit) >>> 0;
    this.pendGerror = true;
  }

  private cmdqErrActive(): boolean {
    return ((this.gerror ^ this.gerrorn) & GERROR_CMDQ_ERR) !== 0;
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

  private writeWords(gpa: number, w: Uint32Array): boolean {
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
    const base = this.baseAddr(this.strtabBaseLo, this.strtabBaseHi, 0xffffffc0);
    if (!Number.isInteger(vsid) || vsid < 0 || vsid >= 2 ** Math.min(log2size, this.sidBits)) return null;
    if (fmt !== STRTAB_FMT_2LVL) return this.readWords(base + vsid * STE_BYTES, 16);
    const split = (cfg >>> 6) & 0x1f;
    const l1 = this.readWords(base + Math.floor(vsid / 2 ** split) * 8, 2);
    if (l1 === null) return null;
    const span = l1[0] & 0x1f;
    if (span === 0) return null;
    const l2 = this.baseAddr(l1[0], l1[1], 0xffffffc0);
    const i = vsid % 2 ** split;
    if (i >= 2 ** (span - 1)) return null;
    return this.readWords(l2 + i * STE_BYTES, 16);
  }

  // ==============================================================================================
  // Command queue

  private consumeCmdq(): void {
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
      for (let i = 0; i < r.done; i++) cons = qInc(cons, log2);
      this.cmdqCons = cons;
      this.cmdError(cons, cmds[r.done] ?? new Uint32Array(4), CmdqErr.ILL, r.errno ?? "EIO", "the host refused the forwarded command");
      return false;
    };
    while (qIdx(this.cmdqCons, log2) !== qIdx(this.cmdqProd, log2) || qWrap(this.cmdqCons, log2) !== qWrap(this.cmdqProd, log2)) {
      const cons = this.cmdqCons;
      const w = this.readWords(base + qIdx(cons, log2) * 16, 4);
      if (w === null) {
        if (!flush()) return;
        this.cmdError(cons, new Uint32Array(4), CmdqErr.ABT, null, "command queue outside guest RAM");
        return;
      }
      this.stats.commands++;
      const op = w[0] & 0xff;
      const why = this.illegal(w, op);
      if (why !== null) {
        if (!flush()) return;
        this.cmdError(cons, w, CmdqErr.ILL, null, why);
        return;
      }
      if (FORWARDED.has(op)) {
        if (run.length === 0) runStart = cons;
        run.push(w);
        this.cmdqCons = qInc(cons, log2);
        continue;
      }
      if (!flush()) return;
      const errno = this.execute(w, op);
      if (errno !== null) {
        this.cmdError(cons, w, CmdqErr.ILL, errno, "the VMM could not carry out the command");
        return;
      }
      this.cmdqCons = qInc(this.cmdqCons, log2);
    }
    flush();
  }

  private cmdError(cons: number, w: Uint32Array, err: number, errno: string | null, why: string): void {
    this.cmdqCons = ((cons & ~CMDQ_CONS_ERR_MASK) | (err << CMDQ_CONS_ERR_SHIFT)) >>> 0;
    this.cmdErrors.push({ index: qIdx(cons, this.cmdqLog2), words: w.slice(), err, errno, why });
    if (this.cmdErrors.length > 64) this.cmdErrors.shift();
    this.raiseGerror(GERROR_CMDQ_ERR);
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
    this.enter();
    try {
      if (!this.evtqEnabled) {
        this.stats.eventsLost++;
        return false;
      }
      const log2 = this.evtqLog2;
      const prod = this.evtqProd;
      const cons = this.evtqCons;
      if (qIdx(prod, log2) === qIdx(cons, log2) && qWrap(prod, log2) !== qWrap(cons, log2)) {
        this.overflow();
        return false;
      }
      if (!this.writeWords(this.evtqAddr + qIdx(prod, log2) * EVENT_BYTES, rec)) {
        this.stats.eventsLost++;
        this.raiseGerror(GERROR_EVTQ_ABT_ERR);
        return false;
      }
      this.evtqProd = ((prod & Q_OVF) | qInc(prod & ~Q_OVF, log2)) >>> 0;
      this.stats.eventsWritten++;
      this.pendEvtq = true;
      return true;
    } finally {
      this.leave();
    }
  }

  /** Events were lost (the queue was full, or the host's vEVENTQ overflowed): flag overflow. */
  overflow(): void {
    this.enter();
    try {
      this.stats.eventsLost++;
      if (((this.evtqProd ^ this.evtqCons) & Q_OVF) === 0) this.evtqProd = (this.evtqProd ^ Q_OVF) >>> 0;
      this.pendEvtq = true;
    } finally {
      this.leave();
    }
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
