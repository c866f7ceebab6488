/**
 * The SMMUv3 register file as both SMMUv3 models present it: the host unit (unit.ts, the hardware
 * under iommufd) and the guest's vSMMU (guest/smmuv3/vsmmu.ts, which translates nothing and hands
 * what the guest programs to the VMM). What they share lives here, once:
 *
 * - readReg / readReg64 / writeReg / writeReg64 over the architecture's offsets (unit-regs.ts),
 *   32 bits at a time (a 64-bit register is two halves, low first). Page 1 is an exact alias of
 *   page 0 (the CONSTRAINED UNPREDICTABLE choice QEMU makes; Linux reaches the queue index
 *   registers through either page). IDRn, IIDR, AIDR, CR0ACK, IRQ_CTRLACK, GERROR and STATUSR
 *   are read-only; registers the model does not implement read as zero and ignore writes.
 * - CR0 holds the enables the ID registers allow (PRIQEN with PRI, ATSCHK with ATS) and is
 *   acknowledged at once in CR0ACK; CR1 and CR2 store; GBPA changes only when written with Update
 *   (the only behaviour SMMUv3.2 allows) and completes at once; IRQ_CTRL holds the enables of
 *   the interrupts the model has, acknowledged at once.
 * - STRTAB_BASE(_CFG) are ignored while SMMUEN = 1, a queue's base and its SMMU-owned index while
 *   the queue is enabled (the gem5 and QEMU choice among the CONSTRAINED UNPREDICTABLE ones);
 *   queue index registers keep the index and wrap bits of the queue's size (and OVFLG /
 *   OVACKFLG).
 * - GERROR / GERRORN: a global error is active while the two differ in its bit; acknowledging
 *   CMDQ_ERR restarts the command queue where it stopped (CMDQ_CONS.ERR keeps the code: the field
 *   is UNKNOWN once the error is no longer active).
 * - The event and PRI queues' producer side: a record goes to PROD unless the queue is disabled or
 *   full (then PROD.OVFLG toggles while it equals CONS.OVACKFLG, once per overflow) or the write
 *   fails (GERROR.EVTQ_ABT_ERR / PRIQ_ABT_ERR).
 * - Interrupts (`irq`, enabled by IRQ_CTRL) are delivered when the outermost call into the model
 *   returns, never in the middle of an operation; a handler may call back in, and the global-error
 *   line is taken at once even then (a command issued from a handler must not wait for it).
 *
 * A subclass consumes the command queue (what each command does differs: the host unit acts on its
 * caches, the vSMMU forwards to the VMM), says how queue records reach memory (host physical
 * memory, or guest RAM), and hears of CR0 and GBPA changes.
 */
import { decodeFeatures, type SmmuFeatures } from "./unit-config.js";
import {
  CMDQ_CONS_ERR_MASK,
  CMDQ_CONS_ERR_SHIFT,
  CR0_ATSCHK,
  CR0_CMDQEN,
  CR0_EVTQEN,
  CR0_PRIQEN,
  CR0_SMMUEN,
  GBPA_UPDATE,
  GERROR_CMDQ_ERR,
  GERROR_EVTQ_ABT_ERR,
  GERROR_PRIQ_ABT_ERR,
  IRQ_CTRL_EVTQ_IRQEN,
  IRQ_CTRL_GERROR_IRQEN,
  IRQ_CTRL_PRIQ_IRQEN,
  PAGE1_OFFSET,
  Q_OVF,
  SmmuReg,
  type SmmuIdRegs,
} from "./unit-regs.js";

/** The interrupt handlers of a model (wired lines, or MSIs, in a real system). */
export interface SmmuIrqHandlers {
  /** New records in the event queue (or an overflow). */
  eventq?: () => void;
  /** New entries in the PRI queue (or an overflow). */
  priq?: () => void;
  /** A global error became active (GERROR differs from GERRORN). */
  gerror?: () => void;
}

/** GBPA: every field but Update (MemAttr, MTCFG, ALLOCCFG, SHCFG, PRIVCFG, INSTCFG, ABORT). */
const GBPA_FIELDS = 0x1fff3f;
/** GBPA's reset value: SHCFG = use incoming, no abort. */
export const GBPA_RESET = 0x1000;
/** GERROR bits GERRORN holds (CMDQ, EVTQ/PRIQ abort, the MSI aborts, SFM). */
const GERRORN_BITS = 0x1fd;
/** STRTAB_BASE_CFG: LOG2SIZE 5:0, SPLIT 10:6, FMT 17:16. */
const STRTAB_CFG_BITS = 0x307ff;

/** What pushRecord did with a record. */
export const Push = {
  /** Written at PROD. */
  WRITTEN: 0,
  /** The queue is disabled: nothing written, nothing flagged. */
  DISABLED: 1,
  /** The queue is full: dropped, overflow flagged. */
  FULL: 2,
  /** The write to memory failed: dropped, the queue's abort error raised. */
  ABORT: 3,
} as const;
export type Push = (typeof Push)[keyof typeof Push];

export abstract class SmmuRegisterFile {
  readonly idRegs: Readonly<SmmuIdRegs>;
  /** What the ID registers say the model has. */
  readonly features: SmmuFeatures;
  irq: SmmuIrqHandlers = {};

  protected cr0 = 0;
  protected cr1 = 0;
  protected cr2 = 0;
  protected gbpa = GBPA_RESET;
  protected irqCtrl = 0;
  protected gerror = 0;
  protected gerrorn = 0;
  protected strtabLo = 0;
  protected strtabHi = 0;
  protected strtabCfg = 0;
  protected cmdqLo = 0;
  protected cmdqHi = 0;
  protected cmdqProd = 0;
  protected cmdqCons = 0;
  protected evtqLo = 0;
  protected evtqHi = 0;
  protected evtqProd = 0;
  protected evtqCons = 0;
  protected priqLo = 0;
  protected priqHi = 0;
  protected priqProd = 0;
  protected priqCons = 0;
  /** The IRQ_CFG registers: stored, not acted on. */
  private readonly plain = new Map<number, number>();
  private readonly cr0Bits: number;
  private readonly irqBits: number;

  // interrupt delivery
  private depth = 0;
  private delivering = false;
  protected irqEvtq = false;
  protected irqPriq = false;
  protected irqGerror = false;

  protected constructor(idRegs: SmmuIdRegs) {
    this.idRegs = Object.freeze({ ...idRegs });
    const f = (this.features = decodeFeatures(this.idRegs));
    this.cr0Bits = CR0_SMMUEN | CR0_EVTQEN | CR0_CMDQEN | (f.pri ? CR0_PRIQEN : 0) | (f.ats ? CR0_ATSCHK : 0);
    this.irqBits = IRQ_CTRL_GERROR_IRQEN | IRQ_CTRL_EVTQ_IRQEN | (f.pri ? IRQ_CTRL_PRIQ_IRQEN : 0);
  }

  // ==== what a subclass provides ====================================================================

  /** Consume the command queue from CONS towards PROD (called when it may have work). */
  protected abstract consumeCmdq(): void;
  /** Store a queue record's words at byte address addr; false when that memory cannot be written. */
  protected abstract writeQueueWords(addr: number, words: Uint32Array): boolean;
  /** CR0 was written (old: its value before). */
  protected cr0Written(old: number): void {
    void old;
  }
  /** GBPA was updated. */
  protected gbpaUpdated(): void {}

  // ==== registers ===================================================================================

  readReg(off: number): number {
    if (off >= PAGE1_OFFSET && off < 2 * PAGE1_OFFSET) off -= PAGE1_OFFSET;
    const r = this.idRegs;
    switch (off) {
      case SmmuReg.IDR0:
        return r.idr0;
      case SmmuReg.IDR1:
        return r.idr1;
      case SmmuReg.IDR2:
        return r.idr2;
      case SmmuReg.IDR3:
        return r.idr3;
      case SmmuReg.IDR4:
        return r.idr4;
      case SmmuReg.IDR5:
        return r.idr5;
      case SmmuReg.IIDR:
        return r.iidr;
      case SmmuReg.AIDR:
        return r.aidr;
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
        return this.strtabLo;
      case SmmuReg.STRTAB_BASE + 4:
        return this.strtabHi;
      case SmmuReg.STRTAB_BASE_CFG:
        return this.strtabCfg;
      case SmmuReg.CMDQ_BASE:
        return this.cmdqLo;
      case SmmuReg.CMDQ_BASE + 4:
        return this.cmdqHi;
      case SmmuReg.CMDQ_PROD:
        return this.cmdqProd;
      case SmmuReg.CMDQ_CONS:
        return this.cmdqCons;
      case SmmuReg.EVTQ_BASE:
        return this.evtqLo;
      case SmmuReg.EVTQ_BASE + 4:
        return this.evtqHi;
      case SmmuReg.EVTQ_PROD - PAGE1_OFFSET:
        return this.evtqProd;
      case SmmuReg.EVTQ_CONS - PAGE1_OFFSET:
        return this.evtqCons;
      case SmmuReg.PRIQ_BASE:
        return this.priqLo;
      case SmmuReg.PRIQ_BASE + 4:
        return this.priqHi;
      case SmmuReg.PRIQ_PROD - PAGE1_OFFSET:
        return this.priqProd;
      case SmmuReg.PRIQ_CONS - PAGE1_OFFSET:
        return this.priqCons;
      default:
        return this.plain.get(off) ?? 0;
    }
  }

  readReg64(off: number): bigint {
    return BigInt(this.readReg(off)) | (BigInt(this.readReg(off + 4)) << 32n);
  }

  writeReg(off: number, value: number): void {
    this.enter();
    try {
      this.write32(off, value >>> 0);
    } finally {
      this.leave();
    }
  }

  writeReg64(off: number, value: bigint): void {
    const x = BigInt.asUintN(64, value);
    this.enter();
    try {
      this.write32(off, Number(x & 0xffffffffn));
      this.write32(off + 4, Number(x >> 32n));
    } finally {
      this.leave();
    }
  }

  /** Run fn as one call into the model (interrupts it raises are delivered when it returns). */
  batch<T>(fn: () => T): T {
    this.enter();
    try {
      return fn();
    } finally {
      this.leave();
    }
  }

  private write32(off: number, v: number): void {
    if (off >= PAGE1_OFFSET && off < 2 * PAGE1_OFFSET) off -= PAGE1_OFFSET;
    const en = this.cr0;
    const pri = this.features.pri;
    switch (off) {
      case SmmuReg.CR0:
        this.cr0 = v & this.cr0Bits;
        this.cr0Written(en);
        this.consumeCmdq();
        return;
      case SmmuReg.CR1:
        this.cr1 = v;
        return;
      case SmmuReg.CR2:
        this.cr2 = v;
        return;
      case SmmuReg.GBPA:
        if ((v & GBPA_UPDATE) === 0) return;
        this.gbpa = v & GBPA_FIELDS;
        this.gbpaUpdated();
        return;
      case SmmuReg.IRQ_CTRL:
        this.irqCtrl = v & this.irqBits;
        return;
      case SmmuReg.GERRORN:
        this.gerrorn = v & GERRORN_BITS;
        if (!this.cmdqErrActive()) this.consumeCmdq();
        return;
      case SmmuReg.STRTAB_BASE:
        if ((en & CR0_SMMUEN) === 0) this.strtabLo = v;
        return;
      case SmmuReg.STRTAB_BASE + 4:
        if ((en & CR0_SMMUEN) === 0) this.strtabHi = v;
        return;
      case SmmuReg.STRTAB_BASE_CFG:
        if ((en & CR0_SMMUEN) === 0) this.strtabCfg = v & STRTAB_CFG_BITS;
        return;
      case SmmuReg.CMDQ_BASE:
        if ((en & CR0_CMDQEN) === 0) this.cmdqLo = v;
        return;
      case SmmuReg.CMDQ_BASE + 4:
        if ((en & CR0_CMDQEN) === 0) this.cmdqHi = v;
        return;
      case SmmuReg.CMDQ_PROD:
        this.cmdqProd = v & ((2 << this.cmdqLog2) - 1);
        this.consumeCmdq();
        return;
      case SmmuReg.CMDQ_CONS:
        if ((en & CR0_CMDQEN) === 0) this.cmdqCons = v & ((2 << this.cmdqLog2) - 1);
        return;
      case SmmuReg.EVTQ_BASE:
        if ((en & CR0_EVTQEN) === 0) this.evtqLo = v;
        return;
      case SmmuReg.EVTQ_BASE + 4:
        if ((en & CR0_EVTQEN) === 0) this.evtqHi = v;
        return;
      case SmmuReg.EVTQ_PROD - PAGE1_OFFSET:
        if ((en & CR0_EVTQEN) === 0) this.evtqProd = (v & (((2 << this.evtqLog2) - 1) | Q_OVF)) >>> 0;
        return;
      case SmmuReg.EVTQ_CONS - PAGE1_OFFSET:
        this.evtqCons = (v & (((2 << this.evtqLog2) - 1) | Q_OVF)) >>> 0;
        return;
      case SmmuReg.PRIQ_BASE:
        if (pri && (en & CR0_PRIQEN) === 0) this.priqLo = v;
        return;
      case SmmuReg.PRIQ_BASE + 4:
        if (pri && (en & CR0_PRIQEN) === 0) this.priqHi = v;
        return;
      case SmmuReg.PRIQ_PROD - PAGE1_OFFSET:
        if (pri && (en & CR0_PRIQEN) === 0) this.priqProd = (v & (((2 << this.priqLog2) - 1) | Q_OVF)) >>> 0;
        return;
      case SmmuReg.PRIQ_CONS - PAGE1_OFFSET:
        if (pri) this.priqCons = (v & (((2 << this.priqLog2) - 1) | Q_OVF)) >>> 0;
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
      case SmmuReg.PRIQ_IRQ_CFG0:
      case SmmuReg.PRIQ_IRQ_CFG0 + 4:
      case SmmuReg.PRIQ_IRQ_CFG1:
      case SmmuReg.PRIQ_IRQ_CFG2:
        if (pri) this.plain.set(off, v);
        return;
      default:
        return; // read-only, or not implemented: the write is ignored
    }
  }

  // ==== state as the models use it ==================================================================

  get smmuEnabled(): boolean {
    return (this.cr0 & CR0_SMMUEN) !== 0;
  }

  /** The queues' sizes as programmed (log2 of the entries, at most what IDR1 allows). */
  get cmdqLog2(): number {
    return Math.min(this.cmdqLo & 0x1f, this.features.cmdqLog2);
  }

  get evtqLog2(): number {
    return Math.min(this.evtqLo & 0x1f, this.features.evtqLog2);
  }

  get priqLog2(): number {
    return Math.min(this.priqLo & 0x1f, this.features.priqLog2);
  }

  /** A base register's address: bits [51:32] from hi, [31:0] of lo under lowMask. */
  protected static baseAddr(lo: number, hi: number, lowMask: number): number {
    return (hi & 0xfffff) * 4294967296 + ((lo & lowMask) >>> 0);
  }

  protected get strtabAddr(): number {
    return SmmuRegisterFile.baseAddr(this.strtabLo, this.strtabHi, 0xffffffc0);
  }

  protected get cmdqAddr(): number {
    return SmmuRegisterFile.baseAddr(this.cmdqLo, this.cmdqHi, 0xffffffe0);
  }

  /** Index of a queue pointer (without the wrap bit). */
  protected static qIdx(ptr: number, log2: number): number {
    return ptr & (2 ** log2 - 1);
  }

  /** Whether a queue holds no entries (producer and consumer index and wrap equal). */
  protected static qEmpty(prod: number, cons: number, log2: number): boolean {
    const m = 2 ** (log2 + 1) - 1;
    return (prod & m) === (cons & m);
  }

  /** Whether a queue is full (indexes equal, wraps differ). */
  protected static qFull(prod: number, cons: number, log2: number): boolean {
    const n = 2 ** log2;
    return ((prod ^ cons) & n) !== 0 && (prod & (n - 1)) === (cons & (n - 1));
  }

  /** A queue pointer one entry on (index and wrap advance; bits above them stay). */
  protected static qInc(ptr: number, log2: number): number {
    const m = 2 ** (log2 + 1) - 1;
    return ((ptr & ~m) | ((ptr + 1) & m)) >>> 0;
  }

  /** Whether a global error is active (GERROR and GERRORN differ in bit). */
  protected errActive(bit: number): boolean {
    return ((this.gerror ^ this.gerrorn) & bit) !== 0;
  }

  protected cmdqErrActive(): boolean {
    return this.errActive(GERROR_CMDQ_ERR);
  }

  /** Make a global error active (nothing if it already is) and raise the global-error interrupt. */
  protected raiseGerror(bit: number): void {
    if (this.errActive(bit)) return;
    this.gerror = (this.gerror ^ bit) >>> 0;
    this.irqGerror = true;
  }

  /** Stop the command queue at the command CONS points to, with CMDQ_CONS.ERR = err. */
  protected stopCmdq(err: number): void {
    this.cmdqCons = ((this.cmdqCons & ~CMDQ_CONS_ERR_MASK) | (err << CMDQ_CONS_ERR_SHIFT)) >>> 0;
    this.raiseGerror(GERROR_CMDQ_ERR);
  }

  /** Write a record at the event (or PRI) queue's PROD; what happened is the result. */
  protected pushRecord(priq: boolean, words: Uint32Array): Push {
    if ((this.cr0 & (priq ? CR0_PRIQEN : CR0_EVTQEN)) === 0) return Push.DISABLED;
    const log2 = priq ? this.priqLog2 : this.evtqLog2;
    const prod = priq ? this.priqProd : this.evtqProd;
    if (SmmuRegisterFile.qFull(prod, priq ? this.priqCons : this.evtqCons, log2)) {
      this.flagOverflow(priq);
      return Push.FULL;
    }
    const base = priq ? SmmuRegisterFile.baseAddr(this.priqLo, this.priqHi, 0xffffffe0) : SmmuRegisterFile.baseAddr(this.evtqLo, this.evtqHi, 0xffffffe0);
    if (!this.writeQueueWords(base + SmmuRegisterFile.qIdx(prod, log2) * words.length * 4, words)) {
      this.raiseGerror(priq ? GERROR_PRIQ_ABT_ERR : GERROR_EVTQ_ABT_ERR);
      return Push.ABORT;
    }
    if (priq) {
      this.priqProd = SmmuRegisterFile.qInc(prod, log2);
      this.irqPriq = true;
    } else {
      this.evtqProd = SmmuRegisterFile.qInc(prod, log2);
      this.irqEvtq = true;
    }
    return Push.WRITTEN;
  }

  /** Records were lost: PROD.OVFLG toggles unless an overflow is already flagged, and the queue's interrupt. */
  protected flagOverflow(priq: boolean): void {
    if (priq) {
      if (((this.priqProd ^ this.priqCons) & Q_OVF) === 0) this.priqProd = (this.priqProd ^ Q_OVF) >>> 0;
      this.irqPriq = true;
    } else {
      if (((this.evtqProd ^ this.evtqCons) & Q_OVF) === 0) this.evtqProd = (this.evtqProd ^ Q_OVF) >>> 0;
      this.irqEvtq = true;
    }
  }

  // ==== interrupt delivery ==========================================================================

  protected enter(): void {
    this.depth++;
  }

  protected leave(): void {
    if (--this.depth > 0) return;
    if (this.delivering) {
      // a handler's own call: only the global-error line, at once
      while (this.irqGerror) {
        this.irqGerror = false;
        if ((this.irqCtrl & IRQ_CTRL_GERROR_IRQEN) !== 0) this.irq.gerror?.();
      }
      return;
    }
    this.delivering = true;
    try {
      for (;;) {
        if (this.irqGerror) {
          this.irqGerror = false;
          if ((this.irqCtrl & IRQ_CTRL_GERROR_IRQEN) !== 0) this.irq.gerror?.();
        } else if (this.irqEvtq) {
          this.irqEvtq = false;
          if ((this.irqCtrl & IRQ_CTRL_EVTQ_IRQEN) !== 0) this.irq.eventq?.();
        } else if (this.irqPriq) {
          this.irqPriq = false;
          if ((this.irqCtrl & IRQ_CTRL_PRIQ_IRQEN) !== 0) this.irq.priq?.();
        } else break;
      }
    } finally {
      this.delivering = false;
    }
  }
}
