/**
 * VtdRig: the least software that makes a VtdUnit usable — a root table in scalable mode, queued
 * invalidation (256 descriptors of 256 bits, status written by wait descriptors), a page request
 * queue, and helpers that write context entries, PASID directories and PASID entries into memory.
 * For tests, benchmarks and demos of the hardware on its own; the Linux driver model is
 * iommu/drivers/vtd.ts.
 */
import { assert } from "../../errno.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import { encodeQi, type QiDescriptorInput } from "./qi.js";
import { PasidDirEntry, PasidEntry, SmContextEntry, SmRootEntry } from "./tables.js";
import type { VtdUnit } from "./unit.js";
import { EventCtl, Fsts, Gcmd, IQA_DW, VtdReg } from "./unit-regs.js";

export interface RigOptions {
  /** Leave translation disabled (GCMD.TE). */
  noTranslation?: boolean;
  /** Page request queue size: 2^pqs pages (default 0: 128 requests). */
  pqs?: number;
  /** Unmask the fault, invalidation and page request events (default true). */
  unmaskEvents?: boolean;
}

export interface RigContext {
  paside?: boolean;
  pre?: boolean;
  fpd?: boolean;
  dte?: boolean;
  /** PASID directory of 2^(pdts+7) entries (default 2: 512 entries, PASIDs below 32768). */
  pdts?: number;
  ridPasid?: number;
  ridPriv?: boolean;
}

const IQ_ENTRIES = 256;
const QI_DONE = 1;

export class VtdRig {
  readonly rootPfn: number;
  readonly iqPfn: number;
  readonly prqPfn: number;
  private readonly statusPfn: number;
  private gcmd = 0;
  private iqTail = 0;
  private readonly ctxTables = new Map<number, number>();
  private readonly dirs = new Map<number, { pa: number; entries: number }>();

  constructor(
    readonly unit: VtdUnit,
    opts: RigOptions = {},
  ) {
    const mem = unit.mem;
    this.rootPfn = mem.allocTable(1);
    this.iqPfn = mem.allocTable(2);
    const pqs = opts.pqs ?? 0;
    this.prqPfn = mem.allocTable(2 ** pqs);
    this.statusPfn = mem.allocTable(1);
    unit.write64(VtdReg.RTADDR, BigInt(this.rootPfn * PAGE_SIZE) | (1n << 10n));
    unit.write32(VtdReg.GCMD, this.gcmd | Gcmd.SRTP);
    unit.write32(VtdReg.IQT, 0);
    unit.write64(VtdReg.IQA, BigInt(this.iqPfn * PAGE_SIZE) | BigInt(IQA_DW) | 1n);
    this.setCommand(Gcmd.QIE, true);
    unit.write64(VtdReg.PQH, 0n);
    unit.write64(VtdReg.PQT, 0n);
    unit.write64(VtdReg.PQA, BigInt(this.prqPfn * PAGE_SIZE) | BigInt(pqs));
    if (opts.unmaskEvents ?? true) {
      unit.write32(VtdReg.FECTL, 0);
      unit.write32(VtdReg.IECTL, 0);
      unit.write32(VtdReg.PECTL, 0);
    }
    if (!opts.noTranslation) this.setCommand(Gcmd.TE, true);
  }

  /** Set or clear a persistent GCMD bit (TE, QIE), keeping the others, as Linux's iommu->gcmd does. */
  setCommand(bit: number, on: boolean): void {
    this.gcmd = on ? this.gcmd | bit : this.gcmd & ~bit;
    this.unit.write32(VtdReg.GCMD, this.gcmd >>> 0);
  }

  /** Write sid's scalable-mode context entry with a new (zeroed) PASID directory; returns the directory's address. */
  setContext(sid: number, o: RigContext = {}): number {
    const mem = this.unit.mem;
    const bus = sid >>> 8;
    const df = sid & 0xff;
    const upper = df >= 128;
    const key = bus * 2 + (upper ? 1 : 0);
    let ct = this.ctxTables.get(key);
    if (ct === undefined) {
      ct = mem.allocTable(1);
      this.ctxTables.set(key, ct);
      const root = mem.frameU32(this.rootPfn);
      const rb = bus * 4;
      if (upper) {
        SmRootEntry.acc.up.set(root, rb, 1);
        SmRootEntry.acc.uctp.set(root, rb, ct * PAGE_SIZE);
      } else {
        SmRootEntry.acc.lp.set(root, rb, 1);
        SmRootEntry.acc.lctp.set(root, rb, ct * PAGE_SIZE);
      }
    }
    const pdts = o.pdts ?? 2;
    const entries = 2 ** (pdts + 7);
    const frames = Math.max(1, (entries * 8) / PAGE_SIZE);
    const dir = mem.allocTable(frames);
    this.dirs.set(sid, { pa: dir * PAGE_SIZE, entries });
    SmContextEntry.encodeInto(mem.frameU32(ct), (df & 0x7f) * 8, {
      p: 1,
      fpd: o.fpd ? 1 : 0,
      dte: o.dte ? 1 : 0,
      paside: (o.paside ?? true) ? 1 : 0,
      pre: o.pre ? 1 : 0,
      pdts,
      pasiddirptr: dir * PAGE_SIZE,
      ridPasid: o.ridPasid ?? 0,
      ridPriv: o.ridPriv ? 1 : 0,
    });
    return dir * PAGE_SIZE;
  }

  /** Clear sid's context entry (the P bit and everything). */
  clearContext(sid: number): void {
    const ct = this.ctxTables.get((sid >>> 8) * 2 + ((sid & 0xff) >= 128 ? 1 : 0));
    assert(ct !== undefined, "no context table for that bus half");
    this.unit.mem.frameU32(ct).fill(0, (sid & 0x7f) * 8, (sid & 0x7f) * 8 + 8);
  }

  /** Where sid's PASID entry for pasid lives (allocating its PASID table); a physical byte address. */
  pasidEntryPa(sid: number, pasid: number): number {
    const mem = this.unit.mem;
    const d = this.dirs.get(sid);
    if (!(d !== undefined)) assert(false, `no context entry set up for sid ${sid}`);
    assert(pasid >>> 6 < d.entries, "PASID beyond the directory");
    const dePa = d.pa + (pasid >>> 6) * 8;
    const df = mem.frameU32(Math.floor(dePa / PAGE_SIZE));
    const db = (dePa % PAGE_SIZE) / 4;
    if (PasidDirEntry.acc.p.get(df, db) === 0) {
      const t = mem.allocTable(1);
      PasidDirEntry.encodeInto(df, db, { p: 1, ptp: t * PAGE_SIZE });
    }
    return PasidDirEntry.acc.ptp.get(df, db) + (pasid & 63) * 64;
  }

  /** Write a whole PASID entry (P set unless given). */
  setPasid(sid: number, pasid: number, v: Partial<PasidEntry>): void {
    const pa = this.pasidEntryPa(sid, pasid);
    PasidEntry.encodeInto(this.unit.mem.frameU32(Math.floor(pa / PAGE_SIZE)), (pa % PAGE_SIZE) / 4, { p: 1, ...v });
  }

  /** Clear a PASID entry. */
  clearPasid(sid: number, pasid: number): void {
    const pa = this.pasidEntryPa(sid, pasid);
    const w = (pa % PAGE_SIZE) / 4;
    this.unit.mem.frameU32(Math.floor(pa / PAGE_SIZE)).fill(0, w, w + 16);
  }

  /**
   * Queue descriptors and a wait descriptor with status write, move the tail, and check that the
   * hardware got through them (no queue error, status written). Returns false on a queue error.
   */
  submit(...descs: QiDescriptorInput[]): boolean {
    return this.submitRaw(...descs.map((d) => encodeQi(d, 256)));
  }

  /** submit() of raw 256-bit descriptors (32 bytes each), e.g. malformed ones. */
  submitRaw(...descs: Uint8Array[]): boolean {
    const unit = this.unit;
    const mem = unit.mem;
    const statusPa = this.statusPfn * PAGE_SIZE;
    mem.write32(statusPa, 0);
    const all = [...descs, encodeQi({ kind: "wait", sw: 1, statusData: QI_DONE, statusAddr: BigInt(statusPa) }, 256)];
    for (const d of all) {
      assert(d.length === 32, "a 256-bit descriptor");
      mem.write(this.iqPfn * PAGE_SIZE + this.iqTail * 32, d);
      this.iqTail = (this.iqTail + 1) % IQ_ENTRIES;
    }
    unit.write64(VtdReg.IQT, BigInt(this.iqTail << 5));
    if ((unit.read32(VtdReg.FSTS) & Fsts.IQE) !== 0) return false;
    assert(mem.read32(statusPa) === QI_DONE, "the wait descriptor's status was not written");
    return true;
  }

  /** After a queue error: skip the bad descriptor's run (head = tail) and clear IQE. */
  recoverQueue(): void {
    // Software overwrites the descriptors from the head with harmless waits, as Linux does.
    const unit = this.unit;
    let head = Number(unit.read64(VtdReg.IQH) >> 5n);
    while (head !== this.iqTail) {
      unit.mem.write(this.iqPfn * PAGE_SIZE + head * 32, encodeQi({ kind: "wait" }, 256));
      head = (head + 1) % IQ_ENTRIES;
    }
    unit.write32(VtdReg.FSTS, Fsts.IQE);
  }

  /** Page request descriptors queued and not yet consumed: their physical addresses, head first. */
  pageRequests(): number[] {
    const unit = this.unit;
    const size = PAGE_SIZE << Number(unit.read64(VtdReg.PQA) & 7n);
    let head = Number(unit.read64(VtdReg.PQH)) % size;
    const tail = Number(unit.read64(VtdReg.PQT)) % size;
    const out: number[] = [];
    while (head !== tail) {
      out.push(this.prqPfn * PAGE_SIZE + head);
      head = (head + 32) % size;
    }
    return out;
  }

  /** Consume every queued page request (PQH = PQT) and clear PPR. */
  consumePageRequests(): void {
    this.unit.write64(VtdReg.PQH, this.unit.read64(VtdReg.PQT));
    this.unit.write32(VtdReg.PRS, 1);
  }

  /** Mask or unmask an event control register (FECTL, IECTL, PECTL). */
  mask(reg: number, masked: boolean): void {
    this.unit.write32(reg, masked ? EventCtl.IM : 0);
  }
}
