/**
 * A minimal "software" for the SMMUv3 unit tests: it programs the unit's registers, lays out the
 * stream table and queues in simulated memory, writes STEs/CDs with the codecs, issues commands
 * and drains the event and PRI queues. No driver logic: tests decide every structure themselves.
 */
import { PhysMem } from "../../src/mm/phys.js";
import { HwMemory } from "../../src/hw/memory.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { armStage1, armStage2, PT_ACCESSED, PT_READ, PT_USER, PT_WRITE } from "../../src/hw/pagetable/format.js";
import { encodeCmdWords, type CmdInput } from "../../src/hw/smmuv3/cmdq.js";
import { decodeEvent, PriEntry, type Event } from "../../src/hw/smmuv3/events.js";
import { Cd, L1Cd, L1Std, Ste, type Cd as CdValue, type Ste as SteValue } from "../../src/hw/smmuv3/tables.js";
import { SmmuUnit, type SmmuUnitOptions } from "../../src/hw/smmuv3/unit.js";
import {
  CR0_CMDQEN,
  CR0_EVTQEN,
  CR0_PRIQEN,
  CR0_SMMUEN,
  IRQ_CTRL_EVTQ_IRQEN,
  IRQ_CTRL_GERROR_IRQEN,
  IRQ_CTRL_PRIQ_IRQEN,
  SmmuReg,
  STRTAB_FMT_2LVL,
  STRTAB_FMT_LINEAR,
  queueBase,
  strtabBaseCfg,
} from "../../src/hw/smmuv3/unit-regs.js";

export const RW = PT_READ | PT_WRITE | PT_USER | PT_ACCESSED;
export const RO = PT_READ | PT_USER | PT_ACCESSED;

export interface RigOptions extends SmmuUnitOptions {
  /** Two-level stream table with SPLIT = 8 (else linear, 2^sidBits entries). */
  twoLevel?: boolean;
  /** log2 of the stream table size (linear: entries; two-level: StreamID bits covered). */
  sidBits?: number;
  /** log2 of the event queue entries. */
  evtqLog2?: number;
  priqLog2?: number;
}

export class Rig {
  readonly mem: HwMemory;
  readonly unit: SmmuUnit;
  readonly strtab: number;
  readonly cmdq: number;
  readonly evtq: number;
  readonly priq: number;
  readonly twoLevel: boolean;
  private readonly l2 = new Map<number, number>();
  private prod = 0;
  readonly cmdqLog2 = 6;

  constructor(opts: RigOptions = {}) {
    this.mem = new HwMemory(new PhysMem());
    this.unit = new SmmuUnit(this.mem, opts);
    this.twoLevel = opts.twoLevel ?? false;
    const sidBits = opts.sidBits ?? (this.twoLevel ? 16 : 8);
    const u = this.unit;
    if (this.twoLevel) {
      const l1 = 2 ** (sidBits - 8);
      this.strtab = this.alloc(Math.max(1, Math.ceil((l1 * 8) / 4096)));
      u.writeReg(SmmuReg.STRTAB_BASE_CFG, strtabBaseCfg(STRTAB_FMT_2LVL, sidBits, 8));
    } else {
      this.strtab = this.alloc(Math.max(1, (2 ** sidBits * 64) / 4096));
      u.writeReg(SmmuReg.STRTAB_BASE_CFG, strtabBaseCfg(STRTAB_FMT_LINEAR, sidBits, 0));
    }
    u.writeReg64(SmmuReg.STRTAB_BASE, BigInt(this.strtab));
    this.cmdq = this.alloc(1);
    u.writeReg64(SmmuReg.CMDQ_BASE, queueBase(this.cmdq, this.cmdqLog2));
    const ev = opts.evtqLog2 ?? 7;
    this.evtq = this.alloc(Math.max(1, (2 ** ev * 32) / 4096));
    u.writeReg64(SmmuReg.EVTQ_BASE, queueBase(this.evtq, ev));
    const pq = opts.priqLog2 ?? 6;
    this.priq = this.alloc(Math.max(1, (2 ** pq * 16) / 4096));
    u.writeReg64(SmmuReg.PRIQ_BASE, queueBase(this.priq, pq));
    u.writeReg(SmmuReg.IRQ_CTRL, IRQ_CTRL_EVTQ_IRQEN | IRQ_CTRL_PRIQ_IRQEN | IRQ_CTRL_GERROR_IRQEN);
    u.writeReg(SmmuReg.CR0, CR0_CMDQEN | CR0_EVTQEN | CR0_PRIQEN | CR0_SMMUEN);
  }

  /** `frames` zeroed, aligned frames; returns the byte address. */
  alloc(frames: number): number {
    return this.mem.allocTable(frames) * 4096;
  }

  /** Byte address of sid's STE (a two-level table gets its L2 table on first use). */
  stePa(sid: number): number {
    if (!this.twoLevel) return this.strtab + sid * 64;
    const l1 = Math.floor(sid / 256);
    let l2 = this.l2.get(l1);
    if (l2 === undefined) {
      l2 = this.alloc(4);
      this.l2.set(l1, l2);
      this.writeWords(this.strtab + l1 * 8, L1Std.encodeWords({ span: 9, l2ptr: l2 }));
    }
    return l2 + (sid % 256) * 64;
  }

  writeWords(pa: number, w: Uint32Array): void {
    for (let i = 0; i < w.length; i++) this.mem.write32(pa + 4 * i, w[i]);
  }

  writeSte(sid: number, ste: Partial<SteValue>): void {
    this.writeWords(this.stePa(sid), Ste.encodeWords(ste));
  }

  writeCd(pa: number, cd: Partial<CdValue>): void {
    this.writeWords(pa, Cd.encodeWords(cd));
  }

  writeL1Cd(pa: number, l2ptr: number | null): void {
    this.writeWords(pa, L1Cd.encodeWords(l2ptr === null ? {} : { v: 1, l2ptr }));
  }

  /** Put commands in the queue and publish them (the unit consumes them at once). */
  cmd(...cmds: CmdInput[]): void {
    const n = 2 ** this.cmdqLog2;
    for (const c of cmds) {
      this.writeWords(this.cmdq + (this.prod % n) * 16, encodeCmdWords(c));
      this.prod = (this.prod + 1) % (2 * n);
    }
    this.unit.writeReg(SmmuReg.CMDQ_PROD, this.prod);
  }

  /** Raw 4 words as one command (illegal ones included). */
  rawCmd(w: Uint32Array): void {
    const n = 2 ** this.cmdqLog2;
    this.writeWords(this.cmdq + (this.prod % n) * 16, w);
    this.prod = (this.prod + 1) % (2 * n);
    this.unit.writeReg(SmmuReg.CMDQ_PROD, this.prod);
  }

  /** The command slot `back` entries before PROD (0 = the last one written). */
  cmdSlot(back: number): number {
    const n = 2 ** this.cmdqLog2;
    return this.cmdq + ((this.prod - 1 - back + 2 * n) % n) * 16;
  }

  /** Read and consume every event record. */
  events(): Event[] {
    const u = this.unit;
    const log2 = (Number(u.readReg64(SmmuReg.EVTQ_BASE) & 0x1fn));
    const n = 2 ** log2;
    const mask = 2 * n - 1;
    const out: Event[] = [];
    let cons = u.readReg(SmmuReg.EVTQ_CONS);
    const prod = u.readReg(SmmuReg.EVTQ_PROD);
    while ((cons & mask) !== (prod & mask)) {
      const rec = this.mem.read(this.evtq + (cons & (n - 1)) * 32, 32);
      const e = decodeEvent(rec);
      if (e.kind !== "unknown") out.push(e);
      cons = (cons & 0x80000000) | (((cons & mask) + 1) & mask);
    }
    // acknowledge any overflow along with the consumption
    cons = ((cons & ~0x80000000) | (prod & 0x80000000)) >>> 0;
    u.writeReg(SmmuReg.EVTQ_CONS, cons);
    return out;
  }

  /** Read and consume every PRI queue entry. */
  pageRequests(): PriEntry[] {
    const u = this.unit;
    const n = 2 ** Number(u.readReg64(SmmuReg.PRIQ_BASE) & 0x1fn);
    const mask = 2 * n - 1;
    const out: PriEntry[] = [];
    let cons = u.readReg(SmmuReg.PRIQ_CONS);
    const prod = u.readReg(SmmuReg.PRIQ_PROD);
    while ((cons & mask) !== (prod & mask)) {
      out.push(PriEntry.decode(this.mem.read(this.priq + (cons & (n - 1)) * 16, 16)));
      cons = (cons & 0x80000000) | (((cons & mask) + 1) & mask);
    }
    u.writeReg(SmmuReg.PRIQ_CONS, ((cons & ~0x80000000) | (prod & 0x80000000)) >>> 0);
    return out;
  }

  /** A stage-1 page table (4 KiB granule, 48-bit VA, 48-bit output) in host memory. */
  s1Table(opts: { inputBits?: number } = {}): PageTableEngine {
    return new PageTableEngine(this.mem, armStage1({ inputBits: opts.inputBits ?? 48 }));
  }

  /** A stage-2 page table (4 KiB granule, 40-bit IPA: start level 1, two concatenated tables). */
  s2Table(): PageTableEngine {
    return new PageTableEngine(this.mem, armStage2({ inputBits: 40, startLevel: 1 }));
  }

  /** Host frames for data (not tables): `frames` fresh frames' first page number. */
  dataPages(frames: number): number {
    return this.mem.phys.allocRun(frames);
  }
}

/** The CD fields Linux writes for a stage-1 domain (4 KiB, 48-bit VA, EPD1, R, A, AA64). */
export function linuxCd(ttb0: number, asid: number, extra: Partial<CdValue> = {}): Partial<CdValue> {
  return { v: 1, t0sz: 16, tg0: 0, epd1: 1, ips: 5, aa64: 1, r: 1, a: 1, aset: 1, asid, ttb0, ir0: 1, or0: 1, sh0: 3, ...extra };
}

/** Stage-2 STE fields for a 40-bit IPA space at start level 1 (S2SL0 = 1). */
export function s2Fields(ttb: number, vmid: number, extra: Partial<SteValue> = {}): Partial<SteValue> {
  return { s2vmid: vmid, s2t0sz: 24, s2sl0: 1, s2tg: 0, s2ps: 5, s2aa64: 1, s2r: 1, s2ptw: 1, s2ttb: ttb, ...extra };
}
