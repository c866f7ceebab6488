/**
 * An Arm SMMUv3 as devices see it: a DmaPort that translates each request through the stream
 * table, context descriptors and VMSAv8-64 page tables in simulated physical memory, with the
 * caches and queues the architecture gives software to manage.
 *
 *  - Registers: the register file it shares with the guest's vSMMU (regfile.ts): readReg /
 *    writeReg over the architecture's offsets, 32 bits at a time (readReg64 / writeReg64 at the
 *    edge); CR0 acknowledged at once, GBPA updates complete at once; the event and PRI queues'
 *    producer side (a full queue drops the record and flags overflow); interrupts (`irq`, enabled
 *    by IRQ_CTRL) delivered when the outermost call into the unit returns (after a register write
 *    or a DMA), never in the middle of an operation.
 *  - Command queue: writing CMDQ_PROD makes the unit consume commands until CONS reaches PROD,
 *    synchronously. An illegal command (unknown opcode, a reserved bit set, a command of a feature
 *    the unit lacks, a Secure command) stops the queue at it with CMDQ_CONS.ERR = CERROR_ILL and
 *    GERROR.CMDQ_ERR active; writing GERRORN to acknowledge restarts it (at the same entry, which
 *    software has replaced, as Linux's skip does).
 *  - Caches: valid STEs (per StreamID), valid CDs (per StreamID and SubstreamID) and L1 CD
 *    descriptors (valid or not) are cached on use and kept until a CFGI command covers them
 *    (CFGI_STE also drops the CDs fetched through the STE); translations are cached in an Iotlb
 *    keyed (ASID, VMID) until a matching TLBI. Nothing is re-read from memory meanwhile.
 *  - DMA: dma() translates page by page and moves bytes; translatePage() is the allocation-free
 *    probe (TLB hit: a few loads).
 *
 * Fault reporting follows the STE/CD: stage-1 faults are recorded when CD.R, stall when CD.S and
 * not STE.S1STALLD (or always with the forced stall model); stage-2 faults record with STE.S2R and
 * stall with STE.S2S. A stalled transaction's event has Stall = 1 and a STAG; CMD_RESUME with Retry
 * retries it from the faulting page, Abort/Terminate (or CMD_STALL_TERM) ends it. A StreamID whose
 * device has PRI enabled (setPriEnabled) sends a page request to the PRI queue instead, answered by
 * CMD_PRI_RESP.
 */
import { assert } from "../../errno.js";
import { DONE, bufferedRequest, doneResult, iovaOffset, iovaPage, type DmaFault, type DmaFaultKind, type DmaPort, type DmaRequest, type DmaResult } from "../dma.js";
import { makeDmaIotlb, type DmaWasmFn } from "../dma-wasm.js";
import type { Iotlb, IotlbOptions } from "../iotlb.js";
import type { DataMemory, DeviceBuffer } from "../../mm/data-memory.js";
import type { HwMemory } from "../memory.js";
import { Push, SmmuRegisterFile } from "./regfile.js";
import { PageTableEngine } from "../pagetable/engine.js";
import {
  ACC_EXEC,
  ACC_READ,
  ACC_USER,
  ACC_WRITE,
  FAULT_ACCESS_FLAG,
  FAULT_ADDRESS_SIZE,
  FAULT_PERMISSION,
  armStage1,
  armStage2,
  type PageTableFormat,
} from "../pagetable/format.js";
import {
  CMD_LAYOUTS,
  CmdOp,
  CmdCfgiCd,
  CmdCfgiCdAll,
  CmdCfgiSte,
  CmdCfgiSteRange,
  CmdPriResp,
  CmdResume,
  CmdStallTerm,
  CmdSync,
  CmdTlbiNhAll,
  CmdTlbiNhAsid,
  CmdTlbiNhVa,
  CmdTlbiNhVaa,
  CmdTlbiS12Vmall,
  CmdTlbiS2Ipa,
  PriResp,
  ResumeAction,
  SyncCs,
  CFGI_ALL_RANGE,
  type CmdKind,
} from "./cmdq.js";
import { EVENT_LAYOUTS, EventClass, EventId, PriEntry, type EventKind } from "./events.js";
import { oasBits } from "./regs.js";
import { Cd, L1Cd, L1Std, S1Dss, S1Fmt, Ste, SteConfig, cdLeafEntries } from "./tables.js";
import { cdWellFormed, s1Geometry, s2Geometry, steWellFormed } from "./unit-config.js";
import { CR0_CMDQEN, CR0_EVTQEN, CR0_PRIQEN, CR0_SMMUEN, CmdqErr, GBPA_ABORT, STRTAB_FMT_2LVL, STRTAB_FMT_LINEAR, defaultIdRegs, type SmmuIdRegs } from "./unit-regs.js";
import { modPow2 } from "../../util/num.js";

export { SmmuReg } from "./unit-regs.js";
export type { SmmuFeatures } from "./unit-config.js";

export interface SmmuUnitOptions {
  /** ID register values (raw 32-bit), replacing the defaults of defaultIdRegs() one by one. */
  idRegs?: Partial<SmmuIdRegs>;
  /** The TLB: default 256 entries (QEMU's SMMU_IOTLB_MAX_SIZE), "reset" replacement. */
  tlb?: IotlbOptions;
}

/** Interrupt handlers (wired or MSI, as the driver sets them up); enabled by IRQ_CTRL. */
export type { SmmuIrqHandlers } from "./regfile.js";

export interface SmmuUnitStats {
  steFetches: number;
  cdFetches: number;
  walks: number;
  commands: number;
  events: number;
  eventsLost: number;
  stalls: number;
  pageRequests: number;
}

/** TLB entry kinds (the Iotlb's tagA): stage-1 (or combined nested) entries and stage-2-only ones. */
const KIND_S1 = 1;
const KIND_S2 = 2;
/** k1 of stage-2-only entries (no ASID). */
const NO_ASID = -1;

/** Routes the configuration gives a (StreamID, SubstreamID). */
const MODE_BYPASS = 1;
const MODE_S1 = 2;
const MODE_S2 = 3;
const MODE_ABORT = 4;

const TWO52 = 2 ** 52;
assert((ACC_WRITE | ACC_USER) === 10 && (ACC_READ | ACC_USER) === 9, "dma() spells these as literals");
const TWO43 = 2 ** 43;
const TWO44 = 2 ** 44;

/** A valid STE as the unit caches it. */
interface SteCfg {
  readonly config: number;
  readonly s1fmt: number;
  /** Byte address of the CD table (an IPA when nested). */
  readonly ctxPtr: number;
  readonly s1cdmax: number;
  readonly s1dss: number;
  readonly s1stalld: boolean;
  readonly vmid: number;
  /** The stage-2 walker (stage 2 translating or nested), else null. */
  readonly s2: PageTableEngine | null;
  readonly s2OutPages: number;
  readonly s2stall: boolean;
  readonly s2record: boolean;
  readonly s2hd: boolean;
}

/** A valid CD as the unit caches it. */
interface CdCfg {
  readonly asid: number;
  readonly eng0: PageTableEngine | null;
  readonly eng1: PageTableEngine | null;
  /** Pages of each region (2^(inputBits - 12)). */
  readonly pages0: number;
  readonly pages1: number;
  readonly tbi0: boolean;
  readonly tbi1: boolean;
  readonly outPages: number;
  readonly stall: boolean;
  readonly record: boolean;
  readonly hd: boolean;
}

/** A transaction waiting for software: a stall (STAG) or a page request group (PRI). */
interface PendingRec {
  readonly req: DmaRequest;
  /** Byte offset in the request where it stopped. */
  pos: number;
  fault: DmaFault;
  stag: number;
  prgKey: number;
  /** dma() has returned "pending" for it (so completion goes to req.onComplete). */
  returned: boolean;
  final: DmaResult | null;
}

function bit(v: boolean): number {
  return v ? 1 : 0;
}

export class SmmuUnit extends SmmuRegisterFile implements DmaPort {
  readonly mem: HwMemory;
  readonly tlb: Iotlb;
  /** dmaBuffered's WebAssembly path: the data memory, the record's byte address, the function (or null, none). */
  private readonly dataMem: DataMemory | null;
  private readonly dmaRec: number;
  private readonly dmaFn: DmaWasmFn | null;
  readonly stats: SmmuUnitStats = { steFetches: 0, cdFetches: 0, walks: 0, commands: 0, events: 0, eventsLost: 0, stalls: 0, pageRequests: 0 };
  /** CMD_SYNC with CS = SEV: the events signalled (a WFE waiter would wake). */
  sevCount = 0;

  // ---- caches -------------------------------------------------------------------------------------
  private readonly steCache = new Map<number, SteCfg>();
  /** Per StreamID: SubstreamID (CD index) -> CD. */
  private readonly cdCache = new Map<number, Map<number, CdCfg>>();
  /** Per StreamID: L1 CD index -> L2 table byte address, or -1 for an invalid L1CD. */
  private readonly l1cdCache = new Map<number, Map<number, number>>();
  private readonly formats = new Map<string, PageTableFormat>();

  // ---- the hot path's memo of the last route -------------------------------------------------
  private mSid = -2;
  private mSsid = -2;
  private mMode = 0;
  private mK1 = 0;
  private mK2 = 0;
  private mSte: SteCfg | null = null;
  private mCd: CdCfg | null = null;

  // ---- route / fault scratch of the last xlate -----------------------------------------------
  private rMode = 0;
  private rK1 = 0;
  private rK2 = 0;
  private rSte: SteCfg | null = null;
  private rCd: CdCfg | null = null;
  /** EventId of the last failure, 0 for a silent abort. */
  private fEvent = 0;
  private fKind: DmaFaultKind = "translation";
  private fStage = 1;
  private fClass: number = EventClass.IN;
  /** Stage-2 faults: the IPA page asked for. */
  private fIpa = -1;
  private fStallable = false;
  private fRecord = true;
  /** A translation-type fault a page request could resolve. */
  private fPri = false;

  // ---- outstanding stalls and page requests ------------------------------------------------------
  private readonly stalls = new Map<number, PendingRec>();
  private nextStag = 0;
  private readonly prgs = new Map<number, PendingRec>();
  private readonly nextPrg = new Map<number, number>();
  private readonly priEnabled = new Set<number>();
  private lastPending: PendingRec | null = null;

  constructor(mem: HwMemory, opts: SmmuUnitOptions = {}) {
    super({ ...defaultIdRegs(), ...opts.idRegs });
    this.mem = mem;
    // The TLB's lookup arrays in the data memory where there is room: dmaBuffered then does its
    // common case in WebAssembly (dma-wasm.wat, with the route memo's ASID / VMID as the key).
    const d = makeDmaIotlb(mem.phys, { capacity: opts.tlb?.capacity ?? 256, policy: opts.tlb?.policy ?? "reset" });
    this.tlb = d.iotlb;
    this.dataMem = d.dataMem;
    this.dmaRec = d.rec;
    this.dmaFn = d.fn;
  }

  // =================================================================================================
  // Registers

  protected override cr0Written(): void {
    this.forgetRoute();
  }

  protected override gbpaUpdated(): void {
    this.forgetRoute();
  }

  protected writeQueueWords(addr: number, words: Uint32Array): boolean {
    for (let i = 0; i < words.length; i++) this.mem.write32(addr + 4 * i, words[i]);
    return true;
  }

  /** The PCIe device behind `sid` has its Page Request Interface enabled (or not). */
  setPriEnabled(sid: number, on: boolean): void {
    if (on) this.priEnabled.add(sid);
    else this.priEnabled.delete(sid);
  }

  /** Whether a valid STE for sid is cached (tests, reports). */
  steCached(sid: number): boolean {
    return this.steCache.has(sid);
  }

  /** Whether a valid CD for (sid, ssid) is cached (tests, reports). */
  cdCached(sid: number, ssid: number): boolean {
    return this.cdCache.get(sid)?.has(ssid) ?? false;
  }

  /** Stalled transactions and page request groups waiting for software. */
  get pendingCount(): number {
    return this.stalls.size + this.prgs.size;
  }

  // =================================================================================================
  // DMA

  /**
   * A device's request: translate each page and move the bytes. A fault stops it: "faulted", or
   * "pending" when it stalled or went to PRI (then req.onComplete reports the end). When software
   * answers a stall from the interrupt this very call raises, dma() returns the final result and
   * onComplete is not called.
   */
  dma(req: DmaRequest): DmaResult {
    // The usual request first: user level, within one page, a number IOVA, on the stream last
    // resolved (the route memo: mSid / mSsid, a translating mode) and a translation the TLB holds
    // with the permission. Nothing can fault or raise an interrupt there; anything else, invalid
    // arguments included, takes dmaAny (which gives the same answer for this case). Literals, not
    // the module's constants: this must stay within V8's inlining budget.
    const iova = req.iova;
    const data = req.data;
    const len = data.length;
    const mode = this.mMode;
    if (typeof iova === "number" && req.length === len && len > 0 && req.sid === this.mSid && req.pasid === this.mSsid && (mode === MODE_S1 || mode === MODE_S2) && req.priv !== true && req.exec !== true) {
      const vpn = Math.floor(iova / 4096);
      const off = iova - vpn * 4096;
      // (an off that is an int32 makes iova an integer; 2^53 - 1 = MAX_SAFE_INTEGER)
      if ((off | 0) === off && off + len <= 4096 && vpn >= 0 && iova <= 9007199254740991) {
        const tlb = this.tlb;
        const ppn = tlb.lookup(this.mK1, this.mK2, vpn);
        const need = req.write ? 10 : 9; // ACC_WRITE | ACC_USER, ACC_READ | ACC_USER
        if (ppn >= 0 && (tlb.perms() & need) === need) {
          if (req.write) this.mem.phys.writeInFrame(ppn, off, data);
          else this.mem.phys.readInFrame(ppn, off, data);
          return DONE[len] ?? doneResult(len);
        }
        return this.dmaAny(req, true);
      }
    }
    return this.dmaAny(req, false);
  }

  /** dma for any request; `looked`: dma's short path looked the first page up in the TLB already. */
  private dmaAny(req: DmaRequest, looked: boolean): DmaResult {
    assert(req.length >= 0 && req.data.length >= req.length, "DMA data buffer shorter than the request");
    assert(typeof req.iova !== "number" || (Number.isSafeInteger(req.iova) && req.iova >= 0), "a number IOVA is a safe non-negative integer");
    this.lastPending = null;
    this.enter();
    let r: DmaResult;
    let rec: PendingRec | null;
    try {
      r = this.runDma(req, 0, null, looked);
      rec = r.status === "pending" ? this.takePending() : null;
    } finally {
      this.leave();
    }
    if (rec !== null) {
      if (rec.final !== null) return rec.final;
      rec.returned = true;
    }
    return r;
  }

  /**
   * The translation of one page, numbers only: output page or -1. Nothing is recorded or
   * reported on a failure (a probe); a successful walk fills the TLB.
   */
  /**
   * DmaPort.dmaBuffered. With a buffer in the data memory and dma()'s usual request (user level,
   * one page, on the stream last resolved, translating), dma-wasm.wat does the TLB lookup under
   * the route's (ASID, VMID) and the copy; anything it declines, and any other request, goes to
   * dma() as the equivalent request.
   */
  dmaBuffered(sid: number, pasid: number, iova: number, len: number, write: boolean, buf: DeviceBuffer): DmaResult {
    const fn = this.dmaFn;
    const mode = this.mMode;
    if (fn !== null && buf.memory === this.dataMem && sid === this.mSid && pasid === this.mSsid && (mode === MODE_S1 || mode === MODE_S2) && this.mem.phys.contents === null) {
      const vpn = Math.floor(iova / 4096);
      const off = iova - vpn * 4096;
      if ((off | 0) === off && len > 0 && (len | 0) === len && off + len <= 4096 && len <= buf.length && vpn >= 0 && iova <= 9007199254740991) {
        if (fn(this.dmaRec, this.mK1, this.mK2, vpn, off, len, buf.addr, write ? 1 : 0) >= 0) return DONE[len] ?? doneResult(len);
      }
    }
    return this.dma(bufferedRequest(sid, pasid, iova, len, write, buf));
  }

  translatePage(sid: number, pasid: number, vpn: number, write: boolean): number {
    const acc = write ? ACC_WRITE | ACC_USER : ACC_READ | ACC_USER;
    if (sid === this.mSid && pasid === this.mSsid) {
      const mode = this.mMode;
      if (mode === MODE_S1 || mode === MODE_S2) {
        const tlb = this.tlb;
        const p = tlb.lookup(this.mK1, this.mK2, vpn);
        if (p >= 0 && (tlb.perms() & acc) === acc) return p;
      } else if (mode === MODE_BYPASS) return vpn;
    }
    return this.xlate(sid, pasid, vpn, acc);
  }

  private takePending(): PendingRec | null {
    const r = this.lastPending;
    this.lastPending = null;
    return r;
  }

  private accessOf(req: DmaRequest): number {
    return (req.write ? ACC_WRITE : ACC_READ) | (req.priv === true ? 0 : ACC_USER) | (req.exec === true ? ACC_EXEC : 0);
  }

  /** Move req's bytes from byte `start`; `looked`: the first page's TLB lookup is done (a miss for xlate). */
  private runDma(req: DmaRequest, start: number, rec: PendingRec | null, looked = false): DmaResult {
    const len = req.length;
    const vpn0 = iovaPage(req.iova);
    const off0 = iovaOffset(req.iova);
    const acc = this.accessOf(req);
    let pos = start;
    while (pos < len) {
      const abs = off0 + pos;
      const page = Math.floor(abs / 4096);
      const inPage = abs - page * 4096;
      let vpn = vpn0 + page;
      if (vpn >= TWO52) vpn -= TWO52;
      const n = Math.min(4096 - inPage, len - pos);
      const ppn = this.xlate(req.sid, req.pasid, vpn, acc, looked && pos === start);
      if (ppn < 0) return this.onFault(req, pos, vpn, inPage, rec);
      const chunk = pos === 0 && n === req.data.length ? req.data : req.data.subarray(pos, pos + n);
      if (req.write) this.mem.phys.writeInFrame(ppn, inPage, chunk);
      else this.mem.phys.readInFrame(ppn, inPage, chunk);
      pos += n;
    }
    return { status: "done", bytes: len, fault: null };
  }

  /** The last xlate failed at byte `pos` of req: report it and decide the request's fate. */
  private onFault(req: DmaRequest, pos: number, vpn: number, inPage: number, rec: PendingRec | null): DmaResult {
    const ev = this.fEvent;
    const iova = BigInt(vpn) * 4096n + BigInt(inPage);
    const fault: DmaFault = {
      kind: this.fKind,
      stage: this.fStage === 2 ? 2 : 1,
      code: ev,
      sid: req.sid,
      pasid: req.pasid,
      iova,
      ipa: this.fStage === 2 && this.fIpa >= 0 ? BigInt(this.fIpa) * 4096n : -1n,
      write: req.write,
      recoverable: false,
    };
    if (ev === 0) return { status: "faulted", bytes: pos, fault };
    const f = this.features;
    if (this.fPri && this.priEnabled.has(req.sid) && f.pri) {
      const r = rec ?? this.newPending(req, pos, fault);
      r.pos = pos;
      r.fault = fault;
      if (this.pageRequest(req, vpn, r)) {
        fault.recoverable = true;
        this.lastPending = r;
        return { status: "pending", bytes: pos, fault };
      }
      return { status: "faulted", bytes: pos, fault };
    }
    if (this.fStallable && (this.cr0 & CR0_EVTQEN) !== 0 && this.stalls.size < Math.max(1, f.stallMax) && !SmmuRegisterFile.qFull(this.evtqProd, this.evtqCons, this.evtqLog2)) {
      const stag = this.allocStag();
      const r = rec ?? this.newPending(req, pos, fault);
      r.pos = pos;
      r.fault = fault;
      r.stag = stag;
      fault.recoverable = true;
      this.recordEvent(this.faultEvent(req, iova, stag, true));
      this.stalls.set(stag, r);
      this.stats.stalls++;
      this.lastPending = r;
      return { status: "pending", bytes: pos, fault };
    }
    if (this.fRecord) this.recordEvent(this.faultEvent(req, iova, 0, false));
    return { status: "faulted", bytes: pos, fault };
  }

  private newPending(req: DmaRequest, pos: number, fault: DmaFault): PendingRec {
    return { req, pos, fault, stag: -1, prgKey: -1, returned: false, final: null };
  }

  private complete(rec: PendingRec, r: DmaResult): void {
    if (rec.returned) rec.req.onComplete?.(r);
    else rec.final = r;
  }

  private retry(rec: PendingRec): void {
    const r = this.runDma(rec.req, rec.pos, rec);
    if (r.status !== "pending") this.complete(rec, r);
  }

  private terminate(rec: PendingRec): void {
    rec.fault.recoverable = false;
    this.complete(rec, { status: "faulted", bytes: rec.pos, fault: rec.fault });
  }

  private allocStag(): number {
    for (;;) {
      const s = this.nextStag;
      this.nextStag = (s + 1) & 0xffff;
      if (!this.stalls.has(s)) return s;
    }
  }

  /** The event record of the last translation fault (F_TRANSLATION & co, or a config error). */
  private faultEvent(req: DmaRequest, iova: bigint, stag: number, stall: boolean): Uint32Array {
    const ev = this.fEvent;
    const sid = req.sid;
    const ssv = req.pasid >= 0 ? 1 : 0;
    const ssid = req.pasid >= 0 ? req.pasid : 0;
    switch (ev) {
      case EventId.C_BAD_STREAMID:
        return EVENT_LAYOUTS.cBadStreamid.encodeWords({ sid, ssv, ssid });
      case EventId.C_BAD_STE:
        return EVENT_LAYOUTS.cBadSte.encodeWords({ sid, ssv, ssid });
      case EventId.C_BAD_CD:
        return EVENT_LAYOUTS.cBadCd.encodeWords({ sid, ssv, ssid });
      case EventId.C_BAD_SUBSTREAMID:
        return EVENT_LAYOUTS.cBadSubstreamid.encodeWords({ sid, ssid });
      case EventId.F_STREAM_DISABLED:
        return EVENT_LAYOUTS.fStreamDisabled.encodeWords({ sid });
      default: {
        const kind: EventKind =
          ev === EventId.F_TRANSLATION ? "fTranslation" : ev === EventId.F_ADDR_SIZE ? "fAddrSize" : ev === EventId.F_ACCESS ? "fAccess" : "fPermission";
        const s2 = this.fStage === 2;
        return EVENT_LAYOUTS[kind as "fTranslation"].encodeWords({
          sid,
          ssv,
          ssid,
          stag: stall ? stag : 0,
          stall: bit(stall),
          pnu: bit(req.priv === true),
          ind: bit(req.exec === true),
          rnw: bit(!req.write),
          s2: bit(s2),
          class: this.fClass,
          inputAddr: BigInt.asUintN(64, iova),
          ipa: s2 && this.fIpa >= 0 ? this.fIpa * 4096 : 0,
        });
      }
    }
  }

  // =================================================================================================
  // Translation

  /** Translate input page vpn for (sid, ssid): output page, or -1 with the f* scratch set. */
  private xlate(sid: number, ssid: number, vpn: number, acc: number, looked = false): number {
    if (!this.route(sid, ssid)) return -1;
    const mode = this.rMode;
    if (mode === MODE_BYPASS) return vpn;
    if (mode === MODE_ABORT) return this.silentAbort();
    const tlb = this.tlb;
    const k1 = this.rK1;
    const k2 = this.rK2;
    // (looked: dma's short path made this lookup and found no entry that serves acc)
    const hit = looked ? -1 : tlb.lookup(k1, k2, vpn);
    if (hit >= 0 && (tlb.perms() & acc) === acc) return hit;
    this.stats.walks++;
    const ste = this.rSte as SteCfg;
    if (mode === MODE_S2) {
      const s2 = ste.s2 as PageTableEngine;
      const p = s2.translate(vpn, acc);
      if (p < 0) return this.engineFault(s2, 2, EventClass.IN, vpn, ste, null);
      if (p >= ste.s2OutPages) return this.transFault(EventId.F_ADDR_SIZE, 2, EventClass.IN, vpn, ste, null);
      const pages = s2.leafPages;
      const off = modPow2(vpn, pages);
      let perms = s2.perms;
      if ((acc & ACC_WRITE) === 0 && ste.s2hd) perms &= ~ACC_WRITE;
      tlb.insert(k1, k2, vpn - off, Math.log2(pages), p - off, perms, KIND_S2, 0);
      return p;
    }
    // Stage 1 (nested or not): choose the region by VA bit 55 and check the unused top bits.
    const cd = this.rCd as CdCfg;
    const b55 = modPow2(Math.floor(vpn / TWO43), 2);
    let eng: PageTableEngine | null;
    let local: number;
    if (b55 === 0) {
      eng = cd.eng0;
      const top = cd.tbi0 ? modPow2(vpn, TWO44) : vpn;
      if (eng === null || top >= cd.pages0) return this.transFault(EventId.F_TRANSLATION, 1, EventClass.IN, -1, ste, cd);
      local = modPow2(vpn, cd.pages0);
    } else {
      eng = cd.eng1;
      const top = cd.tbi1 ? modPow2(vpn, TWO44) : vpn;
      const lim = cd.tbi1 ? TWO44 - cd.pages1 : TWO52 - cd.pages1;
      if (eng === null || top < lim) return this.transFault(EventId.F_TRANSLATION, 1, EventClass.IN, -1, ste, cd);
      local = modPow2(vpn, cd.pages1);
    }
    const p = eng.translate(local, acc);
    if (p < 0) {
      if (eng.faultStage === 2) return this.nestedS2Fault(eng, local, acc, ste, cd);
      return this.engineFault(eng, 1, EventClass.IN, -1, ste, cd);
    }
    if (ste.s2 !== null ? p >= ste.s2OutPages : p >= cd.outPages) {
      return this.transFault(EventId.F_ADDR_SIZE, ste.s2 !== null ? 2 : 1, EventClass.IN, -1, ste, cd);
    }
    const pages = eng.leafPages;
    const off = modPow2(local, pages);
    let perms = eng.perms;
    if ((acc & ACC_WRITE) === 0 && (cd.hd || ste.s2hd)) perms &= ~ACC_WRITE;
    tlb.insert(k1, k2, vpn - off, Math.log2(pages), p - off, perms, KIND_S1, 0);
    return p;
  }

  private silentAbort(): number {
    this.fEvent = 0;
    this.fKind = "blocked";
    this.fStage = 1;
    this.fIpa = -1;
    this.fStallable = false;
    this.fRecord = false;
    this.fPri = false;
    return -1;
  }

  private configFault(ev: number, kind: DmaFaultKind): false {
    this.fEvent = ev;
    this.fKind = kind;
    this.fStage = 1;
    this.fIpa = -1;
    this.fStallable = false;
    this.fRecord = true;
    this.fPri = false;
    return false;
  }

  /** A translation-class fault (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION). */
  private transFault(ev: number, stage: number, cls: number, ipa: number, ste: SteCfg, cd: CdCfg | null): number {
    this.fEvent = ev;
    this.fKind = ev === EventId.F_TRANSLATION ? "translation" : ev === EventId.F_ADDR_SIZE ? "address-size" : ev === EventId.F_ACCESS ? "access-flag" : "permission";
    this.fStage = stage;
    this.fClass = cls;
    this.fIpa = stage === 2 ? ipa : -1;
    const f = this.features;
    if (stage === 1) {
      const c = cd as CdCfg;
      this.fStallable = f.stallModel === 2 || (f.stallModel === 0 && c.stall && !ste.s1stalld);
      this.fRecord = c.record;
    } else {
      this.fStallable = cls !== EventClass.CD && (f.stallModel === 2 || (f.stallModel === 0 && ste.s2stall));
      this.fRecord = ste.s2record;
    }
    this.fPri = cls !== EventClass.CD && ev !== EventId.F_ADDR_SIZE;
    return -1;
  }

  /** The engine's fault as an SMMU event. */
  private engineFault(eng: PageTableEngine, stage: number, cls: number, ipa: number, ste: SteCfg, cd: CdCfg | null): number {
    const k = eng.fault;
    const ev =
      k === FAULT_PERMISSION ? EventId.F_PERMISSION : k === FAULT_ACCESS_FLAG ? EventId.F_ACCESS : k === FAULT_ADDRESS_SIZE && eng.faultLevel >= 0 ? EventId.F_ADDR_SIZE : EventId.F_TRANSLATION;
    return this.transFault(ev, stage, cls, ipa, ste, cd);
  }

  /**
   * A nested walk failed at stage 2: find out whether it was translating a stage-1 table (or
   * updating a descriptor: CLASS = TT) or the stage-1 output address (CLASS = IN).
   */
  private nestedS2Fault(eng: PageTableEngine, local: number, acc: number, ste: SteCfg, cd: CdCfg): number {
    const k = eng.fault;
    const ipa = eng.faultGpn;
    const lvl = eng.faultLevel;
    const w = eng.walk(local, acc, false);
    const last = w.steps.length > 0 ? w.steps[w.steps.length - 1] : null;
    const cls = w.fault !== 0 && w.faultStage === 2 && last !== null && last.kind === "leaf" ? EventClass.IN : EventClass.TT;
    const ev = k === FAULT_PERMISSION ? EventId.F_PERMISSION : k === FAULT_ACCESS_FLAG ? EventId.F_ACCESS : k === FAULT_ADDRESS_SIZE && lvl >= 0 ? EventId.F_ADDR_SIZE : EventId.F_TRANSLATION;
    return this.transFault(ev, 2, cls, ipa, ste, cd);
  }

  /** The route for (sid, ssid) into r*; false with the fault scratch set when there is none. */
  private route(sid: number, ssid: number): boolean {
    if (sid === this.mSid && ssid === this.mSsid) {
      this.rMode = this.mMode;
      this.rK1 = this.mK1;
      this.rK2 = this.mK2;
      this.rSte = this.mSte;
      this.rCd = this.mCd;
      return true;
    }
    if (!this.resolve(sid, ssid)) return false;
    this.mSid = sid;
    this.mSsid = ssid;
    this.mMode = this.rMode;
    this.mK1 = this.rK1;
    this.mK2 = this.rK2;
    this.mSte = this.rSte;
    this.mCd = this.rCd;
    return true;
  }

  private forgetRoute(): void {
    this.mSid = -2;
    this.mSsid = -2;
    this.mMode = 0;
    this.mSte = null;
    this.mCd = null;
  }

  private resolve(sid: number, ssid: number): boolean {
    this.rSte = null;
    this.rCd = null;
    this.rK1 = 0;
    this.rK2 = 0;
    if ((this.cr0 & CR0_SMMUEN) === 0) {
      this.rMode = (this.gbpa & GBPA_ABORT) !== 0 ? MODE_ABORT : MODE_BYPASS;
      return true;
    }
    const ste = this.steFor(sid);
    if (ste === null) return false;
    this.rSte = ste;
    const cfg = ste.config;
    if (cfg === SteConfig.ABORT) {
      this.rMode = MODE_ABORT;
      return true;
    }
    const s1 = (cfg & 1) !== 0;
    if (!s1) {
      // Stage 1 bypassed: SubstreamIDs are not allowed.
      if (ssid >= 0) return this.configFault(EventId.C_BAD_SUBSTREAMID, "config");
      if (cfg === SteConfig.BYPASS) this.rMode = MODE_BYPASS;
      else this.s2Route(ste);
      return true;
    }
    let index: number;
    if (ssid >= 0) {
      if (ste.s1cdmax === 0 || ssid >= 2 ** ste.s1cdmax || (ssid === 0 && ste.s1dss === S1Dss.SSID0)) {
        return this.configFault(EventId.C_BAD_SUBSTREAMID, "config");
      }
      index = ssid;
    } else if (ste.s1cdmax > 0) {
      if (ste.s1dss === S1Dss.TERMINATE) return this.configFault(EventId.F_STREAM_DISABLED, "blocked");
      if (ste.s1dss === S1Dss.BYPASS) {
        if (ste.s2 !== null) this.s2Route(ste);
        else this.rMode = MODE_BYPASS;
        return true;
      }
      index = 0;
    } else index = 0;
    const cd = this.cdFor(ste, sid, index);
    if (cd === null) return false;
    this.rCd = cd;
    this.rMode = MODE_S1;
    this.rK1 = cd.asid;
    this.rK2 = ste.vmid;
    return true;
  }

  private s2Route(ste: SteCfg): void {
    this.rMode = MODE_S2;
    this.rK1 = NO_ASID;
    this.rK2 = ste.vmid;
  }

  // ---- configuration fetch ------------------------------------------------------------------------

  /** The 16 words of the STE (or CD) at byte address pa, without materializing memory. */
  private wordsAt(pa: number): { w: Uint32Array | undefined; b: number } {
    const pfn = Math.floor(pa / 4096);
    return { w: this.mem.peekFrameU32(pfn), b: (pa - pfn * 4096) >>> 2 };
  }

  private format(kind: "s1" | "s2", granule: 4096 | 16384 | 65536, inputBits: number, outputBits: number, startLevel: number): PageTableFormat {
    const key = `${kind}:${granule}:${inputBits}:${outputBits}:${startLevel}`;
    let f = this.formats.get(key);
    if (f === undefined) {
      f =
        kind === "s1"
          ? armStage1({ granule, inputBits, outputBits })
          : armStage2({ granule, inputBits, outputBits, startLevel });
      this.formats.set(key, f);
    }
    return f;
  }

  /** The STE for sid (cached, or fetched and checked); null with the fault scratch set. */
  private steFor(sid: number): SteCfg | null {
    const hit = this.steCache.get(sid);
    if (hit !== undefined) return hit;
    this.stats.steFetches++;
    const f = this.features;
    const base = (this.strtabLo & 0xffffffc0) + (this.strtabHi & 0xfffff) * 4294967296;
    const fmt = (this.strtabCfg >>> 16) & 3;
    const log2size = this.strtabCfg & 0x3f;
    const split = (this.strtabCfg >>> 6) & 0x1f;
    if (sid < 0 || sid >= 2 ** Math.min(f.sidBits, log2size)) return this.badStream();
    let pa: number;
    if (fmt === STRTAB_FMT_LINEAR) pa = base + sid * 64;
    else if (fmt === STRTAB_FMT_2LVL && f.st2l) {
      const l1 = this.wordsAt(base + Math.floor(sid / 2 ** split) * 8);
      if (l1.w === undefined) return this.badStream();
      const span = L1Std.acc.span.get(l1.w, l1.b);
      const l2 = L1Std.acc.l2ptr.get(l1.w, l1.b);
      const idx = sid % 2 ** split;
      if (span === 0 || span > split + 1 || idx >= 2 ** (span - 1)) return this.badStream();
      pa = l2 + idx * 64;
    } else return this.badStream();
    const { w, b } = this.wordsAt(pa);
    if (w === undefined || Ste.acc.v.get(w, b) === 0 || !steWellFormed(f, w, b)) return this.badSte();
    const config = Ste.acc.config.get(w, b);
    let s2: PageTableEngine | null = null;
    let s2OutPages = 0;
    if ((config & 2) !== 0) {
      const g = s2Geometry(f, Ste.acc.s2t0sz.get(w, b), Ste.acc.s2sl0.get(w, b), Ste.acc.s2tg.get(w, b));
      if (g === null) return this.badSte();
      const out = Math.min(oasBits(Ste.acc.s2ps.get(w, b)), f.oas);
      const fmt2 = this.format("s2", g.granule, g.inputBits, out, g.startLevel);
      const ttb = Ste.acc.s2ttb.get(w, b);
      const root = ttb / 4096;
      if (!Number.isInteger(root) || root % fmt2.levels[0].frames !== 0) return this.badSte();
      s2 = new PageTableEngine(this.mem, fmt2, { root });
      s2.setHardwareUpdates(f.httuA && (Ste.acc.s2ha.get(w, b) === 1 || Ste.acc.s2affd.get(w, b) === 1), f.httuD && Ste.acc.s2hd.get(w, b) === 1);
      s2OutPages = 2 ** (out - 12);
    }
    const cdmax = Ste.acc.s1cdmax.get(w, b);
    const ste: SteCfg = {
      config,
      s1fmt: cdmax === 0 ? S1Fmt.LINEAR : Ste.acc.s1fmt.get(w, b),
      ctxPtr: Ste.acc.s1ContextPtr.get(w, b),
      s1cdmax: cdmax,
      s1dss: Ste.acc.s1dss.get(w, b),
      s1stalld: Ste.acc.s1stalld.get(w, b) === 1,
      vmid: f.s2 ? Ste.acc.s2vmid.get(w, b) & (2 ** f.vmidBits - 1) : 0,
      s2,
      s2OutPages,
      s2stall: Ste.acc.s2s.get(w, b) === 1,
      s2record: Ste.acc.s2r.get(w, b) === 1,
      s2hd: s2 !== null && f.httuD && Ste.acc.s2hd.get(w, b) === 1,
    };
    this.steCache.set(sid, ste);
    return ste;
  }

  private badStream(): null {
    this.configFault(EventId.C_BAD_STREAMID, "config");
    return null;
  }

  private badSte(): null {
    this.configFault(EventId.C_BAD_STE, "config");
    return null;
  }

  private badCd(): null {
    this.configFault(EventId.C_BAD_CD, "config");
    return null;
  }

  /**
   * Read `words` 32-bit words of configuration at `addr` (an IPA when ste is nested: translated
   * by stage 2, whose fault is reported with CLASS = CD). Returns the frame view and word base, or
   * null with the fault scratch set.
   */
  private cfgRead(ste: SteCfg, addr: number): { w: Uint32Array | undefined; b: number } | null {
    if (ste.s2 === null || ste.config !== SteConfig.NESTED) return this.wordsAt(addr);
    const gpn = Math.floor(addr / 4096);
    const hp = ste.s2.translate(gpn, ACC_READ);
    if (hp < 0) {
      this.engineFault(ste.s2, 2, EventClass.CD, gpn, ste, null);
      return null;
    }
    return { w: this.mem.peekFrameU32(hp), b: (addr - gpn * 4096) >>> 2 };
  }

  private cdFor(ste: SteCfg, sid: number, ssid: number): CdCfg | null {
    let perSid = this.cdCache.get(sid);
    const hit = perSid?.get(ssid);
    if (hit !== undefined) return hit;
    this.stats.cdFetches++;
    const f = this.features;
    let addr: number;
    const leafN = cdLeafEntries(ste.s1fmt);
    if (leafN === 0) addr = ste.ctxPtr + ssid * 64;
    else {
      const l1idx = Math.floor(ssid / leafN);
      let l1s = this.l1cdCache.get(sid);
      let l2 = l1s?.get(l1idx);
      if (l2 === undefined) {
        const at = this.cfgRead(ste, ste.ctxPtr + l1idx * 8);
        if (at === null) return null;
        l2 = at.w !== undefined && L1Cd.acc.v.get(at.w, at.b) === 1 ? L1Cd.acc.l2ptr.get(at.w, at.b) : -1;
        if (l1s === undefined) this.l1cdCache.set(sid, (l1s = new Map()));
        l1s.set(l1idx, l2);
      }
      if (l2 < 0) {
        this.configFault(EventId.C_BAD_SUBSTREAMID, "config");
        return null;
      }
      addr = l2 + (ssid % leafN) * 64;
    }
    const at = this.cfgRead(ste, addr);
    if (at === null) return null;
    const { w, b } = at;
    if (w === undefined || Cd.acc.v.get(w, b) === 0 || !cdWellFormed(f, w, b)) return this.badCd();
    const ips = Math.min(oasBits(Cd.acc.ips.get(w, b)), f.oas);
    const nested = ste.config === SteConfig.NESTED;
    const ha = f.httuA && (Cd.acc.ha.get(w, b) === 1 || Cd.acc.affd.get(w, b) === 1);
    const hd = f.httuD && Cd.acc.hd.get(w, b) === 1;
    const region = (which: 0 | 1): { eng: PageTableEngine | null; pages: number } | null => {
      const epd = which === 0 ? Cd.acc.epd0.get(w, b) : Cd.acc.epd1.get(w, b);
      if (epd === 1) return { eng: null, pages: 0 };
      const g =
        which === 0 ? s1Geometry(f, Cd.acc.t0sz.get(w, b), Cd.acc.tg0.get(w, b), false) : s1Geometry(f, Cd.acc.t1sz.get(w, b), Cd.acc.tg1.get(w, b), true);
      if (g === null) return null;
      const fmt = this.format("s1", g.granule, g.inputBits, ips, -1);
      const ttb = which === 0 ? Cd.acc.ttb0.get(w, b) : Cd.acc.ttb1.get(w, b);
      const root = ttb / 4096;
      // Top-level tables smaller than a page at a sub-page address are not modelled.
      if (!Number.isInteger(root) || root % fmt.levels[0].frames !== 0) return null;
      if (!nested && ttb >= 2 ** ips) return null;
      const eng = new PageTableEngine(this.mem, fmt, { root });
      eng.setHardwareUpdates(ha, hd);
      if (nested) eng.setStage2(ste.s2);
      return { eng, pages: 2 ** (g.inputBits - 12) };
    };
    const r0 = region(0);
    const r1 = region(1);
    if (r0 === null || r1 === null) return this.badCd();
    const cd: CdCfg = {
      asid: Cd.acc.asid.get(w, b) & (2 ** f.asidBits - 1),
      eng0: r0.eng,
      eng1: r1.eng,
      pages0: r0.pages,
      pages1: r1.pages,
      tbi0: Cd.acc.tbi0.get(w, b) === 1,
      tbi1: Cd.acc.tbi1.get(w, b) === 1,
      outPages: 2 ** (ips - 12),
      stall: Cd.acc.s.get(w, b) === 1,
      record: Cd.acc.r.get(w, b) === 1,
      hd,
    };
    if (perSid === undefined) this.cdCache.set(sid, (perSid = new Map()));
    perSid.set(ssid, cd);
    return cd;
  }

  // =================================================================================================
  // Queues

  /** Write an event record (8 words) at EVTQ PROD: false when it was discarded or lost. */
  private recordEvent(words: Uint32Array): boolean {
    const r = this.pushRecord(false, words);
    if (r === Push.WRITTEN) this.stats.events++;
    else if (r === Push.FULL) this.stats.eventsLost++;
    return r === Push.WRITTEN;
  }

  /** Send a page request for vpn to the PRI queue; false when it could not be queued. */
  private pageRequest(req: DmaRequest, vpn: number, rec: PendingRec): boolean {
    if ((this.cr0 & CR0_PRIQEN) === 0) return false;
    if (SmmuRegisterFile.qFull(this.priqProd, this.priqCons, this.priqLog2)) {
      this.flagOverflow(true);
      return false;
    }
    let prg = this.nextPrg.get(req.sid) ?? 0;
    for (let i = 0; i < 512 && this.prgs.has(req.sid * 512 + prg); i++) prg = (prg + 1) & 511;
    if (this.prgs.has(req.sid * 512 + prg)) return false;
    this.nextPrg.set(req.sid, (prg + 1) & 511);
    const ssv = req.pasid >= 0;
    const words = PriEntry.encodeWords({
      sid: req.sid,
      ssid: ssv ? req.pasid : 0,
      ssv: bit(ssv),
      // X and Priv are only meaningful with a PASID.
      priv: bit(ssv && req.priv === true),
      exec: bit(ssv && req.exec === true),
      read: bit(!req.write),
      write: bit(req.write),
      last: 1,
      prgIndex: prg,
      addr: vpn * 4096,
    });
    // (host memory takes any write: the push cannot fail once the queue had room)
    if (this.pushRecord(true, words) !== Push.WRITTEN) return false;
    rec.prgKey = req.sid * 512 + prg;
    this.prgs.set(rec.prgKey, rec);
    this.stats.pageRequests++;
    return true;
  }

  // ---- the command queue --------------------------------------------------------------------------

  protected consumeCmdq(): void {
    if ((this.cr0 & CR0_CMDQEN) === 0) return;
    const log2 = this.cmdqLog2;
    const base = this.cmdqAddr;
    const w = new Uint32Array(4);
    while (!SmmuRegisterFile.qEmpty(this.cmdqProd, this.cmdqCons, log2)) {
      if (this.cmdqErrActive()) return;
      const pa = base + SmmuRegisterFile.qIdx(this.cmdqCons, log2) * 16;
      for (let i = 0; i < 4; i++) w[i] = this.mem.read32(pa + 4 * i);
      this.stats.commands++;
      const err = this.execCmd(w);
      if (err !== CmdqErr.NONE) {
        this.stopCmdq(err);
        return;
      }
      this.cmdqCons = SmmuRegisterFile.qInc(this.cmdqCons, log2);
    }
  }

  /** Execute one command; returns a CMDQ_CONS.ERR code (0 = done). */
  private execCmd(w: Uint32Array): number {
    const op = w[0] & 0xff;
    const f = this.features;
    const kind = CMD_KIND_OF_OP[op];
    if (kind === undefined) {
      // EL2 TLB invalidations exist with HYP (and have nothing to invalidate here: no EL2 StreamWorld).
      if (f.hyp && (op === CmdOp.TLBI_EL2_ALL || op === CmdOp.TLBI_EL2_ASID || op === CmdOp.TLBI_EL2_VA || op === CmdOp.TLBI_EL2_VAA)) return CmdqErr.NONE;
      return CmdqErr.ILL;
    }
    if (CMD_LAYOUTS[kind].hasReservedBits(w, 0)) return CmdqErr.ILL;
    // Secure commands (SSec) from the Non-secure queue are illegal.
    if ((w[0] & (1 << 10)) !== 0) return CmdqErr.ILL;
    switch (op) {
      case CmdOp.PREFETCH_CONFIG:
        return CmdqErr.NONE;
      case CmdOp.CFGI_STE:
        this.dropStes(CmdCfgiSte.acc.sid.get(w, 0), 1);
        return CmdqErr.NONE;
      case CmdOp.CFGI_STE_RANGE: {
        const range = CmdCfgiSteRange.acc.range.get(w, 0);
        if (range === CFGI_ALL_RANGE) this.dropAllConfig();
        else {
          const n = 2 ** (range + 1);
          const sid = CmdCfgiSteRange.acc.sid.get(w, 0);
          this.dropStes(sid - (sid % n), n);
        }
        return CmdqErr.NONE;
      }
      case CmdOp.CFGI_CD: {
        const sid = CmdCfgiCd.acc.sid.get(w, 0);
        const ssid = CmdCfgiCd.acc.ssid.get(w, 0);
        this.cdCache.get(sid)?.delete(ssid);
        if (CmdCfgiCd.acc.leaf.get(w, 0) === 0) {
          const ste = this.steCache.get(sid);
          const leafN = ste === undefined ? 0 : cdLeafEntries(ste.s1fmt);
          if (leafN !== 0) this.l1cdCache.get(sid)?.delete(Math.floor(ssid / leafN));
        }
        this.forgetRoute();
        return CmdqErr.NONE;
      }
      case CmdOp.CFGI_CD_ALL: {
        const sid = CmdCfgiCdAll.acc.sid.get(w, 0);
        this.cdCache.delete(sid);
        this.l1cdCache.delete(sid);
        this.forgetRoute();
        return CmdqErr.NONE;
      }
      case CmdOp.TLBI_NH_ALL:
        this.tlb.invalidate({ k2: CmdTlbiNhAll.acc.vmid.get(w, 0), tagA: KIND_S1 });
        return CmdqErr.NONE;
      case CmdOp.TLBI_NH_ASID:
        this.tlb.invalidate({ k1: CmdTlbiNhAsid.acc.asid.get(w, 0), k2: CmdTlbiNhAsid.acc.vmid.get(w, 0), tagA: KIND_S1 });
        return CmdqErr.NONE;
      case CmdOp.TLBI_NH_VA:
      case CmdOp.TLBI_NH_VAA:
      case CmdOp.TLBI_S2_IPA: {
        const L = op === CmdOp.TLBI_NH_VA ? CmdTlbiNhVa : op === CmdOp.TLBI_NH_VAA ? CmdTlbiNhVaa : CmdTlbiS2Ipa;
        const tg = L.acc.tg.get(w, 0);
        const num = L.acc.num.get(w, 0);
        const scale = L.acc.scale.get(w, 0);
        if (!f.ril && (tg !== 0 || num !== 0 || scale !== 0 || L.acc.ttl.get(w, 0) !== 0)) return CmdqErr.ILL;
        const vpn = Math.floor(L.acc.addr.get(w, 0) / 4096);
        // TG = 0: whatever entry holds the address; else (NUM + 1) * 2^SCALE granules of TG.
        const npages = tg === 0 ? 1 : (num + 1) * 2 ** scale * (tg === 1 ? 1 : tg === 2 ? 4 : 16);
        const vmid = L.acc.vmid.get(w, 0);
        if (op === CmdOp.TLBI_NH_VA) this.tlb.invalidate({ k1: CmdTlbiNhVa.acc.asid.get(w, 0), k2: vmid, tagA: KIND_S1, vpn, npages });
        else this.tlb.invalidate({ k2: vmid, tagA: op === CmdOp.TLBI_S2_IPA ? KIND_S2 : KIND_S1, vpn, npages });
        return CmdqErr.NONE;
      }
      case CmdOp.TLBI_S12_VMALL:
        this.tlb.invalidate({ k2: CmdTlbiS12Vmall.acc.vmid.get(w, 0) });
        return CmdqErr.NONE;
      case CmdOp.TLBI_NSNH_ALL:
        this.tlb.clearAll();
        return CmdqErr.NONE;
      case CmdOp.ATC_INV:
        // No ATC in the SMMU (it is the device's); legal only with ATS.
        return f.ats ? CmdqErr.NONE : CmdqErr.ILL;
      case CmdOp.PRI_RESP: {
        if (!f.pri) return CmdqErr.ILL;
        const resp = CmdPriResp.acc.resp.get(w, 0);
        if (resp === 3) return CmdqErr.ILL;
        const key = CmdPriResp.acc.sid.get(w, 0) * 512 + CmdPriResp.acc.prgIndex.get(w, 0);
        const rec = this.prgs.get(key);
        if (rec !== undefined) {
          this.prgs.delete(key);
          if (resp === PriResp.SUCCESS) this.retry(rec);
          else this.terminate(rec);
        }
        return CmdqErr.NONE;
      }
      case CmdOp.RESUME: {
        const stag = CmdResume.acc.stag.get(w, 0);
        const rec = this.stalls.get(stag);
        if (rec !== undefined && rec.req.sid === CmdResume.acc.sid.get(w, 0)) {
          this.stalls.delete(stag);
          if (CmdResume.acc.action.get(w, 0) === ResumeAction.RETRY) this.retry(rec);
          else this.terminate(rec);
        }
        return CmdqErr.NONE;
      }
      case CmdOp.STALL_TERM: {
        const sid = CmdStallTerm.acc.sid.get(w, 0);
        for (const [stag, rec] of [...this.stalls]) {
          if (rec.req.sid !== sid) continue;
          this.stalls.delete(stag);
          this.terminate(rec);
        }
        return CmdqErr.NONE;
      }
      case CmdOp.CMD_SYNC: {
        const cs = CmdSync.acc.cs.get(w, 0);
        if (cs === 3) return CmdqErr.ILL;
        if (cs === SyncCs.IRQ) {
          const addr = CmdSync.acc.msiaddr.get(w, 0);
          // The completion MSI: MSIDATA written at MSIADDR (Linux polls for it in the queue slot).
          if (f.msi && addr !== 0) this.mem.write32(addr, CmdSync.acc.msidata.get(w, 0));
        } else if (cs === SyncCs.SEV) this.sevCount++;
        return CmdqErr.NONE;
      }
      default:
        return CmdqErr.ILL;
    }
  }

  private dropStes(first: number, n: number): void {
    if (n >= this.steCache.size) {
      for (const sid of [...this.steCache.keys()]) if (sid >= first && sid < first + n) this.steCache.delete(sid);
      for (const sid of [...this.cdCache.keys()]) if (sid >= first && sid < first + n) this.cdCache.delete(sid);
      for (const sid of [...this.l1cdCache.keys()]) if (sid >= first && sid < first + n) this.l1cdCache.delete(sid);
    } else {
      for (let sid = first; sid < first + n; sid++) {
        this.steCache.delete(sid);
        this.cdCache.delete(sid);
        this.l1cdCache.delete(sid);
      }
    }
    this.forgetRoute();
  }

  private dropAllConfig(): void {
    this.steCache.clear();
    this.cdCache.clear();
    this.l1cdCache.clear();
    this.forgetRoute();
  }
}

/** Command kinds by opcode (EL2/EL3 TLBIs and PREFETCH_ADDR have no layout: they are not here). */
const CMD_KIND_OF_OP: (CmdKind | undefined)[] = [];
for (const [k, l] of Object.entries(CMD_LAYOUTS)) CMD_KIND_OF_OP[l.fixedValue[0] & 0xff] = k as CmdKind;
