/**
 * The VT-d register page as both VT-d models present it: the host unit (unit.ts, the hardware
 * under iommufd) and the guest's vIOMMU (guest/vtd/vvtd.ts, which translates nothing and hands
 * what the guest writes to the VMM). What they share lives here, once:
 *
 * - read32 / read64 / write32 / write64 with each register's semantics: CAP, ECAP, GSTS, IQH and
 *   IQERCD read-only, GCMD write-only; FSTS, ICS, PRS and the fault records' F bit
 *   write-1-to-clear (clearing FSTS.IQE restarts the queue); FECTL / IECTL / PECTL hold IM
 *   (reset 1) and IP (an event raised while masked stays pending until IM is cleared);
 * - GCMD: one-shot commands (SRTP latches RTADDR) act when written as 1, enables (QIE, TE) when
 *   they differ from GSTS;
 * - the invalidation queue engine (IQA / IQH / IQT): fetch from IQH to IQT, stop with FSTS.IQE and
 *   IQERCD.IQEI on a misaligned tail, a fetch error or a descriptor the model refuses; and the wait
 *   descriptor (status write, ICS.IWC and the completion event);
 * - the fault recording registers at CAP.FRO (FSTS.PPF / FRI, PFO when the next one is still
 *   pending, the fault event).
 *
 * A subclass says where descriptors and status writes go (memory, or guest RAM), what each other
 * descriptor does, and may add registers (the vIOMMU's virtual command interface).
 */
import { assert } from "../../errno.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import { WaitDesc } from "./qi.js";
import { capFromU64, ecapFromU64, FaultRecord, type CapReg, type EcapReg } from "./regs.js";
import {
  EventCtl,
  FAULT_RECORD_BYTES,
  Fsts,
  FSTS_FRI_SHIFT,
  Gcmd,
  Gsts,
  ICS_IWC,
  IQA_DW,
  IQA_QS_MASK,
  Iqei,
  Prs,
  VTD_REG_BYTES,
  VtdReg,
} from "./unit-regs.js";

const TWO32 = 4294967296;

export abstract class VtdRegisterFile {
  readonly cap: CapReg;
  readonly ecap: EcapReg;
  readonly capU64: bigint;
  readonly ecapU64: bigint;

  /** Fault event interrupt (FECTL unmasked): a fault was recorded, overflowed, or the queue stopped. */
  onFaultEvent: (() => void) | null = null;
  /** Invalidation completion event (IECTL unmasked): a wait descriptor with IF completed. */
  onInvalidationEvent: (() => void) | null = null;
  /** Page request event (PECTL unmasked): a page request descriptor was queued with PPR clear. */
  onPageRequestEvent: (() => void) | null = null;

  protected readonly regs = new Uint32Array(VTD_REG_BYTES / 4);
  /** GSTS.TES, and the root table SRTP latched (address and TTM). */
  protected te = false;
  protected rootPa = 0;
  protected ttm = 0;
  /** Fault recording: the first register's word index, how many, the next one to use. */
  protected readonly frWord: number;
  protected readonly nfr: number;
  private frNext = 0;
  private iqBase = 0;
  private iqDw = false;
  private iqEntries = 0;
  private qiBusy = false;
  /** Descriptor scratch. */
  private readonly qd = new Uint32Array(8);

  /**
   * `frLimit`: the byte offset the fault recording registers must end below (the register page,
   * or registers of the subclass after them); `what` names the model in assertion messages.
   */
  protected constructor(
    capU64: bigint,
    ecapU64: bigint,
    frLimit: number,
    private readonly what: string,
  ) {
    this.capU64 = capU64;
    this.ecapU64 = ecapU64;
    this.cap = capFromU64(capU64);
    this.ecap = ecapFromU64(ecapU64);
    this.frWord = (this.cap.fro * 16) / 4;
    this.nfr = this.cap.nfr + 1;
    if (!(this.cap.fro * 16 + this.nfr * FAULT_RECORD_BYTES <= frLimit)) assert(false, `${what}: fault recording registers beyond offset 0x${frLimit.toString(16)}`);
    const r = this.regs;
    r[VtdReg.VER >> 2] = 0x10;
    this.setReg64(VtdReg.CAP, capU64);
    this.setReg64(VtdReg.ECAP, ecapU64);
    r[VtdReg.FECTL >> 2] = EventCtl.IM;
    r[VtdReg.IECTL >> 2] = EventCtl.IM;
    r[VtdReg.PECTL >> 2] = EventCtl.IM;
  }

  // ==== what a subclass provides ====================================================================

  /**
   * Fetch the descriptor at pa (16 or 32 bytes: `words` words) into qd; false when it cannot be
   * fetched (IQEI fetch error).
   */
  protected abstract fetchDescriptor(pa: number, qd: Uint32Array, words: number): boolean;

  /** Carry out one descriptor other than a wait; returns 0 or an IQEI code. */
  protected abstract execute(qd: Uint32Array, words: number): number;

  /** The wait descriptor's status write of 4 bytes at addr; returns 0 or an IQEI code. */
  protected abstract writeStatus(addr: number, data: number): number;

  /** A register write the subclass handles itself (true), or leaves to the common semantics. */
  protected writeOwnRegister(_off: number, _v: number): boolean {
    return false;
  }

  /** GCMD bits beyond SRTP / QIE / TE (after SRTP, before QIE). */
  protected commandMore(_v: number): void {}

  /** SRTP latched a root table (rootPa, ttm). */
  protected rootTableLatched(): void {}

  /** GCMD.TE changed (te holds the new value). */
  protected translationChanged(): void {}

  /** A descriptor was carried out, or the queue stopped. */
  protected descriptorDone(): void {}
  protected queueStopped(): void {}

  // ==== registers ===================================================================================

  /** Read the 32-bit register at byte offset off. */
  read32(off: number): number {
    this.checkOff(off);
    if (off === VtdReg.GCMD) return 0; // write-only
    return this.regs[off >> 2] >>> 0;
  }

  /** Read the 64-bit register at byte offset off. */
  read64(off: number): bigint {
    return BigInt(this.read32(off)) | (BigInt(this.read32(off + 4)) << 32n);
  }

  /** Write the 64-bit register at off (low half first, as two 32-bit writes: a split writeq). */
  write64(off: number, v: bigint): void {
    assert(v >= 0n && v < 1n << 64n, "a 64-bit register value");
    this.write32(off, Number(v & 0xffffffffn));
    this.write32(off + 4, Number(v >> 32n));
  }

  /** Write the 32-bit register at byte offset off, with the register's side effects. */
  write32(off: number, value: number): void {
    this.checkOff(off);
    const v = value >>> 0;
    const r = this.regs;
    const w = off >> 2;
    const fr = this.frWord;
    if (w >= fr && w < fr + this.nfr * 4) {
      // Fault recording registers: only F (bit 127: word 3 bit 31) is writable, write-1-to-clear.
      if ((w - fr) % 4 === 3 && (v & 0x80000000) !== 0) {
        r[w] &= 0x7fffffff;
        this.updatePpf();
      }
      return;
    }
    if (this.writeOwnRegister(off, v)) return;
    switch (off) {
      case VtdReg.VER:
      case VtdReg.CAP:
      case VtdReg.CAP + 4:
      case VtdReg.ECAP:
      case VtdReg.ECAP + 4:
      case VtdReg.GSTS:
      case VtdReg.IQH:
      case VtdReg.IQH + 4:
      case VtdReg.IQERCD:
      case VtdReg.IQERCD + 4:
        return; // read-only
      case VtdReg.GCMD:
        this.command(v);
        return;
      case VtdReg.FSTS: {
        const w1c = Fsts.PFO | Fsts.AFO | Fsts.APF | Fsts.IQE | Fsts.ICE | Fsts.ITE;
        const had = r[w];
        r[w] = had & ~(v & w1c);
        // Clearing IQE lets the hardware fetch again from IQH.
        if ((had & Fsts.IQE) !== 0 && (v & Fsts.IQE) !== 0) this.processQueue();
        return;
      }
      case VtdReg.FECTL:
        this.writeEventCtl(w, v, () => this.onFaultEvent?.());
        return;
      case VtdReg.IECTL:
        this.writeEventCtl(w, v, () => this.onInvalidationEvent?.());
        return;
      case VtdReg.PECTL:
        this.writeEventCtl(w, v, () => this.onPageRequestEvent?.());
        return;
      case VtdReg.ICS:
        r[w] &= ~(v & ICS_IWC);
        return;
      case VtdReg.PRS:
        r[w] &= ~(v & (Prs.PPR | Prs.PRO));
        return;
      case VtdReg.IQT:
        r[w] = v & 0x7fff0;
        this.processQueue();
        return;
      case VtdReg.IQT + 4:
        return; // reserved
      default:
        r[w] = v;
    }
  }

  /** Translation enabled (GSTS.TES). */
  get translationEnabled(): boolean {
    return this.te;
  }

  /** Set a 64-bit register's value as the model (not the software) does. */
  protected setReg64(off: number, v: bigint): void {
    this.regs[off >> 2] = Number(v & 0xffffffffn);
    this.regs[(off >> 2) + 1] = Number(v >> 32n);
  }

  private checkOff(off: number): void {
    if (!(Number.isInteger(off) && off >= 0 && off < VTD_REG_BYTES && off % 4 === 0)) assert(false, `${this.what} register offset ${off}`);
  }

  /** GCMD_REG: one-shot commands act when written as 1; enables act when they differ from GSTS. */
  private command(v: number): void {
    const r = this.regs;
    const s = VtdReg.GSTS >> 2;
    if ((v & Gcmd.SRTP) !== 0) {
      const lo = r[VtdReg.RTADDR >> 2];
      const hi = r[(VtdReg.RTADDR >> 2) + 1];
      this.rootPa = (lo & 0xfffff000) + hi * TWO32;
      this.ttm = (lo >>> 10) & 3;
      r[s] |= Gsts.RTPS;
      this.rootTableLatched();
    }
    this.commandMore(v);
    const qie = (v & Gcmd.QIE) !== 0 && this.ecap.qi === 1;
    const qies = (r[s] & Gsts.QIES) !== 0;
    if (qie && !qies) {
      const lo = r[VtdReg.IQA >> 2];
      const hi = r[(VtdReg.IQA >> 2) + 1];
      this.iqBase = (lo & 0xfffff000) + hi * TWO32;
      this.iqDw = (lo & IQA_DW) !== 0;
      this.iqEntries = (PAGE_SIZE << (lo & IQA_QS_MASK)) / (this.iqDw ? 32 : 16);
      r[VtdReg.IQH >> 2] = 0;
      r[s] |= Gsts.QIES;
      this.processQueue();
    } else if (!qie && qies) {
      r[s] &= ~Gsts.QIES;
    }
    const te = (v & Gcmd.TE) !== 0;
    if (te !== this.te) {
      this.te = te;
      r[s] = te ? r[s] | Gsts.TES : r[s] & ~Gsts.TES;
      this.translationChanged();
    }
  }

  /** An event control register write: IM may be cleared, delivering a pending event. */
  private writeEventCtl(w: number, v: number, deliver: () => void): void {
    const r = this.regs;
    const had = r[w];
    r[w] = (had & EventCtl.IP) | (v & EventCtl.IM);
    if ((v & EventCtl.IM) === 0 && (had & EventCtl.IP) !== 0) {
      r[w] &= ~EventCtl.IP;
      deliver();
    }
  }

  /** Raise an event: deliver it, or mark it pending while masked. */
  protected raiseEvent(ctlOff: number, deliver: () => void): void {
    const w = ctlOff >> 2;
    if ((this.regs[w] & EventCtl.IM) !== 0) this.regs[w] |= EventCtl.IP;
    else deliver();
  }

  protected faultEvent(): void {
    this.raiseEvent(VtdReg.FECTL, () => this.onFaultEvent?.());
  }

  // ==== invalidation queue ==========================================================================

  /** Fetch and carry out descriptors from IQH up to IQT (re-entry from a callback does nothing). */
  protected processQueue(): void {
    const r = this.regs;
    if (this.qiBusy || (r[VtdReg.GSTS >> 2] & Gsts.QIES) === 0 || (r[VtdReg.FSTS >> 2] & Fsts.IQE) !== 0) return;
    this.qiBusy = true;
    try {
      const shift = this.iqDw ? 5 : 4;
      const words = this.iqDw ? 8 : 4;
      for (;;) {
        const tailReg = r[VtdReg.IQT >> 2];
        if (this.iqDw && (tailReg & 0x10) !== 0) return this.queueError(Iqei.TAIL_MISALIGNED);
        const tail = (tailReg >>> shift) % this.iqEntries;
        const head = (r[VtdReg.IQH >> 2] >>> shift) % this.iqEntries;
        if (head === tail) return;
        const qd = this.qd;
        qd.fill(0);
        if (!this.fetchDescriptor(this.iqBase + head * (1 << shift), qd, words)) return this.queueError(Iqei.FETCH_ERROR);
        const err = this.execute(qd, words);
        if (err !== 0) return this.queueError(err);
        this.descriptorDone();
        r[VtdReg.IQH >> 2] = ((head + 1) % this.iqEntries) << shift;
      }
    } finally {
      this.qiBusy = false;
    }
  }

  private queueError(iqei: number): void {
    const r = this.regs;
    r[VtdReg.IQERCD >> 2] = (r[VtdReg.IQERCD >> 2] & ~0xf) | iqei;
    r[VtdReg.FSTS >> 2] |= Fsts.IQE;
    this.queueStopped();
    this.faultEvent();
  }

  /** The wait descriptor: its status write (SW), then ICS.IWC and the completion event (IF). */
  protected waitDescriptor(qd: Uint32Array): number {
    const a = WaitDesc.acc;
    if (a.sw.get(qd, 0) === 1) {
      const err = this.writeStatus(Number(a.statusAddr.get(qd, 0)), a.statusData.get(qd, 0));
      if (err !== 0) return err;
    }
    if (a.if.get(qd, 0) === 1) {
      const ics = VtdReg.ICS >> 2;
      if ((this.regs[ics] & ICS_IWC) === 0) {
        this.regs[ics] |= ICS_IWC;
        this.raiseEvent(VtdReg.IECTL, () => this.onInvalidationEvent?.());
      }
    }
    return 0;
  }

  // ==== fault recording =============================================================================

  /**
   * Record a fault in the next fault recording register (its F bit set): FSTS.PPF with FRI when
   * none was pending, the fault event. Nothing while FSTS.PFO is set; PFO (and the event) when
   * the next register still holds an unread fault. True when recorded.
   */
  protected recordFaultFields(fields: Partial<FaultRecord>): boolean {
    const r = this.regs;
    const fs = VtdReg.FSTS >> 2;
    if ((r[fs] & Fsts.PFO) !== 0) return false; // no new faults are recorded while PFO is set
    const idx = this.frNext;
    const base = this.frWord + idx * 4;
    if ((r[base + 3] & 0x80000000) !== 0) {
      r[fs] |= Fsts.PFO;
      this.faultEvent();
      return false;
    }
    FaultRecord.encodeInto(r, base, { ...fields, f: 1 });
    this.frNext = (idx + 1) % this.nfr;
    if ((r[fs] & Fsts.PPF) === 0) {
      r[fs] = (r[fs] & ~(0xff << FSTS_FRI_SHIFT)) | Fsts.PPF | (idx << FSTS_FRI_SHIFT);
      this.faultEvent();
    }
    return true;
  }

  /** FSTS.PPF = OR of the F bits of the fault recording registers. */
  private updatePpf(): void {
    let any = false;
    for (let i = 0; i < this.nfr; i++) if ((this.regs[this.frWord + i * 4 + 3] & 0x80000000) !== 0) any = true;
    const fs = VtdReg.FSTS >> 2;
    this.regs[fs] = any ? this.regs[fs] | Fsts.PPF : this.regs[fs] & ~Fsts.PPF;
  }
}
