/**
 * One page-table engine for every format: build (map), tear down (unmap, splitting large leaves a
 * range cuts), walk (every level's entry), translate (the hardware's walk: permissions, accessed /
 * dirty updates, optional nesting under a stage-2 engine) and read-and-clear dirty state.
 *
 * Addresses are page numbers: `vpn` is an input address / 4096 and `ppn` an output address / 4096
 * (a 57-bit IOVA does not fit a double, its page number does). Sizes are counts of 4 KiB pages; for
 * a 16 or 64 KiB granule they must be multiples of the granule.
 *
 * Tables live in a FrameStore (memory.ts) as Uint32Array words: entry i of a table at pfn T is
 * words (2i, 2i+1) of frame T + (i >> 9). In host memory (HwMemory) the frames are in PhysMem's
 * FrameArena, one block that translate's lean walks read directly; everything else reaches a frame
 * through its view. Hot paths (translate, map and unmap inner loops) allocate nothing and never
 * use bigint. Everything a format varies is read from typed arrays and numbers precomputed in the
 * constructor, so one compiled loop serves every format (translate's lean walk has one for 4 KiB
 * granules, lean4k, and one for the others).
 */
import { assert, fail } from "../../errno.js";
import { FRAME_VIEW_BASE, FrameArena } from "../../mm/phys.js";
import { HwMemory, type FrameStore } from "../memory.js";
import {
  ACC_READ,
  ACC_WRITE,
  FAULT_ACCESS_FLAG,
  FAULT_ADDRESS_SIZE,
  FAULT_NONE,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  PT_CACHE,
  PT_MMIO,
  PT_READ,
  PT_WRITE,
  PT_DIRTY,
  type PageTableFormat,
  type PermRules,
} from "./format.js";
import { modPow2 } from "../../util/num.js";
import { makeArenaWalker, R_ACC2, R_ADDR1, R_BT1, R_BT2, R_HP, R_LEAFSH1, R_LEAFSH2, R_MASKS1, R_NSLOTS, R_OUT1, R_OUT2, R_PT1, R_PT2, R_PTM1, R_PTM2, R_READ2, R_RES1, R_RES2, R_ROOT1, R_ROOT2, R_SH1, R_SH2, R_TM1, R_TM2, R_TOP2, R_VALID1, type ArenaWalker } from "./wasm-walk.js";

const TWO20 = 1048576;
assert(R_RES1 === 48 && R_RES2 === 53, "wasmDone reads the walker's results at words 48 and 53");
/**
 * The lean masks lm (PageTableEngine.leanMasks: needT, badTH, needL, leafBits, accLDH) as the arena
 * walker takes them, four 64-bit masks (lo word first) at r[at..at+7]: NT (lo bits every table
 * entry must have), BT (hi bits none may have), NL and LB (the leaf's bits LB, of which it must
 * have those of NL).
 */
function entryMasks(r: Int32Array, at: number, lm: Int32Array): void {
  r[at] = lm[0];
  r[at + 1] = 0;
  r[at + 2] = 0;
  r[at + 3] = lm[1];
  r[at + 4] = lm[2];
  r[at + 5] = 0;
  r[at + 6] = lm[3];
  r[at + 7] = lm[4];
}

/** Engines' configuration generations (PageTableEngine.gen): a new number for every change. */
let generation = 0;
/** FRAME_VIEW_BASE as a constant of this module (an imported binding is a load in compiled code). */
const VIEW_BASE = 0x1000;
assert(VIEW_BASE === FRAME_VIEW_BASE, "PhysMem's view table starts at pfn 0x1000");

/** The arena of a FrameStore that has none (never given a frame: every pfn reads as zeros). */
const NO_ARENA = new FrameArena();

/** The view table of a FrameStore that has none (an array of objects, as PhysMem's, but empty). */
const NO_VIEWS: readonly (Uint32Array | undefined)[] = (() => {
  const a: (Uint32Array | undefined)[] = [undefined];
  a.pop();
  return a;
})();

export interface EngineOptions {
  /** The hardware sets accessed flags (VT-d SSADE, Arm HA). Default: the format's (x86 paging: on). */
  hwAccessed?: boolean;
  /** The hardware sets dirty state on writes (VT-d SSADE, Arm HD). Default: the format's. */
  hwDirty?: boolean;
  /** Arm: writable leaves are written with DBM, so their dirty state is tracked (Linux with HD). */
  dbm?: boolean;
  /**
   * Walk an existing table instead of making one: its top-level table's page number (a guest page
   * number when the engine is nested). Such an engine is the hardware's walker over tables someone
   * else builds (a driver, a guest): translate and walk work; map, unmap, readAndClearDirty and
   * destroy are refused.
   */
  root?: number;
}

/** One level of a walk. Addresses are physical byte addresses (as numbers: < 2^52). */
export interface WalkStep {
  /** The format's number for the level (VT-d 5..1, Arm 0..3) and its entry name. */
  level: number;
  name: string;
  /** The table's first byte and the entry's index in it. */
  tablePa: number;
  index: number;
  /** Where the entry is, in the tables' address space (a guest-physical address when nested). */
  entryPa: number;
  /** Where the hardware read it (host physical; equals entryPa unless nested). */
  hostEntryPa: number;
  /** The entry's words (unsigned). */
  lo: number;
  hi: number;
  kind: "table" | "leaf" | "invalid";
}

export interface WalkResult {
  steps: WalkStep[];
  /** FAULT_* (FAULT_NONE when the walk reached a leaf that allows the access). */
  fault: number;
  /** The format's number of the level that faulted (-1 for none or for the input-size check). */
  faultLevel: number;
  /** 1, or 2 when a stage-2 translation of a stage-1 table or output address faulted. */
  faultStage: number;
  /** Output page number for the input page (-1 on fault). */
  ppn: number;
  /** Size of the leaf in 4 KiB pages, and the format's number of its level. */
  leafPages: number;
  leafLevel: number;
  /** ACC_* bits the leaf (and the tables above it) allow. */
  perms: number;
}

export class PageTableEngine {
  /** The top-level table (a pfn in the FrameStore's numbering). */
  declare readonly root: number;
  /** The tables belong to someone else (EngineOptions.root): walk only. */
  declare readonly borrowed: boolean;
  declare readonly format: PageTableFormat;
  /** Input pages (2^(inputBits-12)) and output pages the format can address. */
  declare readonly inputPages: number;
  declare readonly outputPages: number;
  /** 4 KiB pages per granule. */
  declare readonly granulePages: number;

  // ---- results of the last translate() (scratch, so that translate allocates nothing) ----------
  /** FAULT_* of the last translate (FAULT_NONE: it succeeded). */
  fault = FAULT_NONE;
  /** After a fault: the format's level number where it happened (-1: the input-size check). */
  faultLevel = -1;
  /** After a fault: 2 when a stage-2 translation made by this (stage-1) walk faulted, else 1. */
  faultStage = 1;
  /** After a stage-2 fault: the guest page number stage 2 was asked for. */
  faultGpn = -1;
  /**
   * What the last successful translation found, from which perms / leafPages / leafLevel are
   * computed on demand: the leaf level's shift in pages, the tables' bad bits and the leaf's
   * words; when nested (s2Found = 1), the same of stage 2's translation of the output.
   */
  private leafShift = 0;
  private pT0 = 0;
  private pT1 = 0;
  private pL0 = 0;
  private pL1 = 0;
  private s2Found = 0;
  private s2Shift = 0;
  private s2T0 = 0;
  private s2T1 = 0;
  private s2L0 = 0;
  private s2L1 = 0;

  private s2: PageTableEngine | null = null;
  declare private hwA: boolean;
  declare private hwD: boolean;
  declare private readonly useDbm: boolean;
  declare private readonly last: number;
  declare private readonly scale: Float64Array;
  declare private readonly idxMask: Int32Array;
  declare private readonly pagesPer: Float64Array;
  declare private readonly entries: Int32Array;
  declare private readonly leafOk: Uint8Array;
  declare private readonly frames: Int32Array;
  declare private readonly leafTypeLo: Int32Array;
  declare private readonly leafTypeHi: Int32Array;
  declare private readonly leafAddrLo: Int32Array;
  /** At a leaf level: its pages - 1 (the input page's offset bits in a leaf there), else 0. */
  declare private readonly leafOffMask: Int32Array;
  declare private readonly levelNumber: Int32Array;
  declare private readonly validLo: number;
  declare private readonly typeMask: number;
  declare private readonly blockType: number;
  declare private readonly pageTypeMask: number;
  declare private readonly pageType: number;
  declare private readonly addrLo: number;
  declare private readonly addrHi: number;
  declare private readonly tableLo: number;
  declare private readonly tableHi: number;
  declare private readonly attrLo: number;
  declare private readonly attrHi: number;
  /**
   * Permission masks: [0..3] all grant bits lo/hi and all deny bits lo/hi of table entries, [4..7]
   * the same for leaves, then per permission k (read, write, exec, user) at 8+4k: the table bits
   * lo/hi and leaf bits lo/hi that decide it.
   */
  private readonly pm = new Int32Array(24);
  /** Index shift of the top level in 4 KiB pages, and index bits per level below it. */
  declare private readonly shift0: number;
  declare private readonly bpl: number;
  /**
   * translate's lean path: what one top-level entry spans (2^shift0 pages, and its inverse) and
   * the index mask of the levels below the top. `lean` (1 for a 4 KiB granule, translate's own
   * walk; 2 for others, translateLean; 0 for none): that span is below 2^31 pages, so
   * the input page's offset in it is an int32 every lower level indexes with a shift; table
   * entries have grant bits only in lo and deny bits only in hi, and leaves grant bits only in lo
   * (true of every format here); at most 4 levels (so with 2^30 pages at most, as 4 KiB granule
   * formats have); the root is below 2^30; the tables are in host memory (HwMemory: its arena).
   */
  declare private readonly lean: number;
  /** lean, and not nested: translate takes the lean path. */
  private leanNow = 0;
  /**
   * A 4 KiB-granule format whose lean masks hold (leanFormat: grant bits of tables only in lo, deny
   * bits only in hi, ...) with 9 index bits a level: nested4k serves its nested translations.
   */
  declare private readonly nest4k: boolean;
  /**
   * The root frame's first word in the arena when the engine owns a one-frame root that has a
   * slot (it keeps it until destroy), else 0 (and lean4k, which starts there, is not used).
   */
  private rootWord = 0;
  /** Entries of the top-level table (its index is below this for every input page in range). */
  declare private readonly topEntries: number;
  declare private readonly pages0: number;
  declare private readonly scale0: number;
  declare private readonly lowMask: number;
  /** Address bits of an entry's hi word that make a table page number beyond int32 (2^43 and up). */
  declare private readonly addrHiWide: number;
  /**
   * For each access (ACC_* bits) at 8*access, the bits deciding it: table grant bits (lo), table
   * deny bits (hi), leaf grant bits in lo, leaf deny bits in lo, leaf deny bits in hi (lean
   * formats have no others).
   */
  private readonly leanAcc = new Int32Array(128);
  /**
   * For the access the lean path saw last (-1: none; fields load faster than elements): bits every
   * table entry must have (leanAcc's table grant bits, and A when the hardware sets it), bits no
   * table entry may have (table deny bits; address bits from 2^43 up, and bits 51:32 that are not
   * the format's address bits: the lean walk takes all of 51:32 as address), bits the leaf must have
   * (grant bits; AF when the hardware sets it or its absence faults) and may not have in lo / hi.
   */
  private accNow = -1;
  /** accNow while leanNow is 1, else -1: the one test translate makes before lean4k. */
  private acc4k = -1;
  private needT = 0;
  private badTH = 0;
  private needL = 0;
  /** needL and the leaf's deny bits in lo (grant and deny bits never overlap). */
  private leafBits = 0;
  private accLDH = 0;
  /** leanMasks' output: needT, badTH, needL, leafBits, accLDH. */
  private readonly lm = new Int32Array(5);
  /**
   * As a second stage: 1 when the arena walker may walk this engine's tables for the reads of
   * stage-1 tables (a lean4k engine whose lean masks hold for reads).
   */
  private rd = 0;
  /** A new number (generation) whenever the lean masks may have changed: the arena walker's record follows it. */
  private gen = 0;
  /** As a second stage: its arena's WebAssembly walker (null: none, or not looked up yet: awTried). */
  private aw: ArenaWalker | null = null;
  private awTried = false;
  /** Bit sh set: the level of shift sh (in pages) may hold leaves; and the last level's shift. */
  private leafShifts = 0;
  declare private readonly lastShift: number;
  /** Level index by shift in pages (the lean path tracks the shift, not the level), and back. */
  declare private readonly levelOfShift: Int8Array;
  declare private readonly shiftOf: Int8Array;
  /** The leaf bits that send the lean path to translateWide: AF that faults or is set by the hardware. */
  private aLeafSlow = 0;
  /** ACC_WRITE when the hardware makes leaves dirty (a write then takes translateWide), else 0. */
  private writeSlow = 0;
  /** For each access (ACC_* bits) at 4*access: the table bits lo/hi and leaf bits lo/hi deciding it. */
  private readonly accMask = new Int32Array(64);
  declare private readonly gtLo: number;
  declare private readonly gtHi: number;
  declare private readonly dtLo: number;
  declare private readonly dtHi: number;
  declare private readonly glLo: number;
  declare private readonly glHi: number;
  declare private readonly dlLo: number;
  declare private readonly dlHi: number;
  /** Arm DBM with hardware dirty management: writable-clean leaves may be written. */
  private dbmWrite = false;
  /** aTable / aLeaf when the hardware sets them, else 0; aLeaf when a clear AF faults, else 0. */
  private aTableHw = 0;
  private aLeafHw = 0;
  private aLeafFault = 0;
  declare private readonly aTable: number;
  declare private readonly aLeaf: number;
  declare private readonly afFault: boolean;
  declare private readonly badLeafFault: number;
  declare private readonly dSetLo: number;
  declare private readonly dSetHi: number;
  declare private readonly dClrLo: number;
  declare private readonly dClrHi: number;
  declare private readonly dbmLo: number;
  declare private readonly dbmHi: number;
  /** Valid entries per table, by table pfn (tables whose count drops to 0 are freed). */
  private readonly live = new Map<number, number>();
  private tableFrames = 0;
  declare private readonly pathTbl: Float64Array;
  declare private readonly pathIdx: Int32Array;
  /** descend()'s result for a hole: the first input page after it. */
  private holeEnd = 0;
  private encLo = 0;
  private encHi = 0;
  private destroyed = false;

  /** Where this engine's tables live (and, unless nested, where translate reads them). */
  declare readonly mem: FrameStore;
  /**
   * The other walks' frame lookup: when mem is host memory (HwMemory), PhysMem's view table,
   * indexed by pfn - FRAME_VIEW_BASE (a miss, undefined, falls back to mem.peekFrameU32);
   * otherwise an empty table, so that every lookup asks mem.
   */
  declare private readonly views: readonly (Uint32Array | undefined)[];
  /**
   * The lean path's frame lookup: when mem is host memory, PhysMem's FrameArena, where the table
   * frames HwMemory hands out live (a pfn without a slot reads as zeros there, which sends the
   * walk to translateWide and its views); otherwise an empty arena.
   */
  declare private readonly arena: FrameArena;

  constructor(mem: FrameStore, format: PageTableFormat, opts: EngineOptions = {}) {
    // Fields are `declare`d and assigned here (not defined as undefined first), so that V8 keeps
    // each in its one representation (small integer, double, typed array) on the hot paths.
    this.mem = mem;
    this.views = mem instanceof HwMemory ? mem.phys.frameViews() : NO_VIEWS;
    this.arena = mem instanceof HwMemory ? mem.phys.arena : NO_ARENA;
    this.format = format;
    const L = format.levels;
    const n = L.length;
    this.last = n - 1;
    this.hwA = opts.hwAccessed ?? format.hwAccessedDefault;
    this.hwD = opts.hwDirty ?? format.hwDirtyDefault;
    this.useDbm = (opts.dbm ?? false) && (format.dbm.lo | format.dbm.hi) !== 0;
    this.granulePages = (2 ** (format.granuleShift - 12)) | 0;
    this.inputPages = 2 ** (format.inputBits - 12);
    this.outputPages = 2 ** (format.outputBits - 12);
    this.scale = new Float64Array(n);
    this.idxMask = new Int32Array(n);
    this.pagesPer = new Float64Array(n);
    this.entries = new Int32Array(n);
    this.leafOk = new Uint8Array(n);
    this.frames = new Int32Array(n);
    this.leafTypeLo = new Int32Array(n);
    this.leafTypeHi = new Int32Array(n);
    this.leafAddrLo = new Int32Array(n);
    this.leafOffMask = new Int32Array(n);
    this.levelNumber = new Int32Array(n);
    for (let l = 0; l < n; l++) {
      const d = L[l];
      this.scale[l] = 2 ** -(d.shift - 12);
      this.pagesPer[l] = 2 ** (d.shift - 12);
      this.entries[l] = 2 ** d.bits;
      this.idxMask[l] = 2 ** d.bits - 1;
      this.leafOk[l] = d.leaf ? 1 : 0;
      this.frames[l] = d.frames;
      const t = l === n - 1 ? format.pageBits : format.blockBits;
      this.leafTypeLo[l] = t.lo;
      this.leafTypeHi[l] = t.hi;
      this.levelNumber[l] = d.number;
      this.leafAddrLo[l] = d.leaf ? ((0xffffffff << d.shift) & 0xfffff000) | 0 : 0;
      this.leafOffMask[l] = d.leaf ? 2 ** (d.shift - 12) - 1 : 0;
      if (d.leaf && d.shift - 12 < 31) this.leafShifts |= 1 << (d.shift - 12);
    }
    this.shift0 = L[0].shift - 12;
    this.bpl = n > 1 ? L[0].shift - L[1].shift : 0;
    for (let l = 1; l < n; l++) assert(L[l - 1].shift - L[l].shift === this.bpl && L[l].bits === this.bpl, "levels below the top resolve the same bits");
    this.pages0 = 2 ** this.shift0;
    this.topEntries = (2 ** L[0].bits) | 0; // | 0: an integer field, compared as one
    this.scale0 = 2 ** -this.shift0;
    this.lowMask = (2 ** this.bpl - 1) | 0; // | 0: a small-integer field, not a double
    this.lastShift = L[n - 1].shift - 12;
    this.levelOfShift = new Int8Array(this.shift0 + 1);
    this.shiftOf = new Int8Array(n);
    for (let l = 0; l < n; l++) {
      this.levelOfShift[L[l].shift - 12] = l;
      this.shiftOf[l] = L[l].shift - 12;
    }
    this.validLo = format.valid;
    this.typeMask = format.typeMask;
    this.blockType = format.blockType;
    this.pageTypeMask = format.pageTypeMask;
    this.pageType = format.pageType;
    this.addrLo = ((0xffffffff << format.granuleShift) & 0xfffff000) | 0;
    this.addrHi = (2 ** (format.addrBits - 32) - 1) | 0;
    this.addrHiWide = this.addrHi & ~0x7ff;
    this.tableLo = format.tableBits.lo;
    this.tableHi = format.tableBits.hi;
    this.attrLo = format.leafAttrs.lo;
    this.attrHi = format.leafAttrs.hi;
    fillPerms(this.pm, format.tablePerms, format.leafPerms);
    const pm = this.pm;
    this.gtLo = pm[0];
    this.gtHi = pm[1];
    this.dtLo = pm[2];
    this.dtHi = pm[3];
    this.glLo = pm[4];
    this.glHi = pm[5];
    this.dlLo = pm[6];
    this.dlHi = pm[7];
    for (let a = 0; a < 16; a++) {
      for (let k = 0; k < 4; k++) {
        if ((a & (1 << k)) === 0) continue;
        for (let j = 0; j < 4; j++) this.accMask[4 * a + j] |= pm[8 + 4 * k + j];
      }
      const m = this.accMask;
      const o = 8 * a;
      this.leanAcc[o] = this.gtLo & m[4 * a];
      this.leanAcc[o + 1] = this.dtHi & m[4 * a + 1];
      this.leanAcc[o + 2] = this.glLo & m[4 * a + 2];
      this.leanAcc[o + 3] = this.dlLo & m[4 * a + 2];
      this.leanAcc[o + 4] = this.dlHi & m[4 * a + 3];
    }
    const leanFormat = n <= 4 && this.shift0 <= 30 && this.gtHi === 0 && this.dtLo === 0 && this.glHi === 0;
    this.aTable = format.accessedTable;
    this.aLeaf = format.accessedLeaf;
    this.afFault = format.accessFlagFault;
    this.badLeafFault = format.badLeafFault;
    this.dSetLo = format.dirtySet.lo;
    this.dSetHi = format.dirtySet.hi;
    this.dClrLo = format.dirtyClear.lo;
    this.dClrHi = format.dirtyClear.hi;
    this.dbmLo = format.dbm.lo;
    this.dbmHi = format.dbm.hi;
    this.setHardwareUpdates(this.hwA, this.hwD);
    this.pathTbl = new Float64Array(n);
    this.pathIdx = new Int32Array(n);
    this.borrowed = opts.root !== undefined;
    if (opts.root !== undefined) assert(Number.isSafeInteger(opts.root) && opts.root >= 0 && opts.root % this.frames[0] === 0, "a root is a table-aligned page number");
    this.root = opts.root ?? this.allocTable(0);
    if (!this.borrowed && this.frames[0] === 1 && this.arena !== NO_ARENA) {
      const slot = this.arena.slot;
      this.rootWord = this.root < slot.length ? slot[this.root] : 0;
    }
    this.nest4k = leanFormat && format.granuleShift === 12 && this.lastShift === 0 && this.bpl === 9 && this.shift0 === 9 * (n - 1);
    // lean4k needs the root's slot; other 4 KiB-granule walks take translateLean.
    this.lean = leanFormat && this.root < 2 ** 30 && this.views !== NO_VIEWS ? (format.granuleShift === 12 && this.rootWord !== 0 ? 1 : 2) : 0;
    assert(this.lean !== 1 || (this.lastShift === 0 && this.bpl === 9 && this.shift0 === 9 * (n - 1)), "4 KiB lean: 9 index bits a level");
    this.leanNow = this.lean;
    this.loadReadMasks();
  }

  /** As a second stage: the WebAssembly walker nested walks over it use (null: none, or none yet). */
  get arenaWalker(): ArenaWalker | null {
    return this.aw;
  }

  /** After a success: the permissions (ACC_*) of the translation (intersected with stage 2's). */
  get perms(): number {
    const p = this.permsOf(this.pT0, this.pT1, this.pL0, this.pL1);
    const s2 = this.s2;
    return this.s2Found === 0 || s2 === null ? p : p & s2.permsOf(this.s2T0, this.s2T1, this.s2L0, this.s2L1);
  }

  /** After a success: the leaf's size in pages (the smaller of both stages' when nested). */
  get leafPages(): number {
    const p = this.pagesPer[this.levelOfShift[this.leafShift]];
    const s2 = this.s2;
    if (this.s2Found === 0 || s2 === null) return p;
    const q = s2.pagesPer[s2.levelOfShift[this.s2Shift]];
    return q < p ? q : p;
  }

  /** After a success: the format's number of the leaf's level. */
  get leafLevel(): number {
    return this.levelNumber[this.levelOfShift[this.leafShift]];
  }

  /** Frames held by this engine's tables. */
  get tablePages(): number {
    return this.tableFrames;
  }

  /** Hardware accessed/dirty updates (VT-d: SSADE in the PASID entry; Arm: CD/STE HA and HD). */
  setHardwareUpdates(accessed: boolean, dirty: boolean): void {
    this.hwA = accessed;
    this.hwD = dirty;
    this.dbmWrite = dirty && (this.dbmLo | this.dbmHi) !== 0;
    this.aTableHw = accessed ? this.aTable : 0;
    this.aLeafHw = accessed ? this.aLeaf : 0;
    this.aLeafFault = this.afFault && !accessed ? this.aLeaf : 0;
    this.aLeafSlow = this.aLeafHw | this.aLeafFault;
    this.writeSlow = dirty ? ACC_WRITE : 0;
    this.accNow = -1; // the lean path's masks include the above
    this.acc4k = -1;
    this.loadReadMasks();
  }

  /**
   * Nest this (stage-1) engine under a stage-2 engine: its table addresses and outputs are then
   * guest-physical page numbers, each translated by `s2` and read from s2's memory (null: unnest).
   */
  setStage2(s2: PageTableEngine | null): void {
    assert(s2 !== this, "an engine cannot nest under itself");
    this.s2 = s2;
    this.s2Found = 0;
    this.leanNow = s2 === null ? this.lean : 0;
    this.acc4k = this.leanNow === 1 ? this.accNow : -1;
    this.loadReadMasks();
  }

  // ---- translation: the hardware walk ---------------------------------------------------------

  /**
   * Translate input page vpn (an integer) for an access (ACC_* bits), as the hardware does on an IOTLB miss:
   * returns the output page number, or -1 with `fault` / `faultLevel` / `faultStage` telling why.
   * Sets accessed and dirty state when the hardware would. Allocates nothing.
   *
   * Four paths give the same answers (the differential tests hold them to walk()'s): lean4k (one
   * stage, 4 KiB granule, the common case), translateLean (the same for other granules and large
   * input pages), translateWide (one stage, every case) and translateNested (the common nested
   * case); walk() and every unusual case take translateGeneric.
   *
   * translate itself is only the test for lean4k, and lean4k and leanEnd are each written to stay
   * within V8's inlining budget (460 bytes of bytecode; 920 for all a function inlines): a
   * caller's loop then has the whole walk inline, so the CPU overlaps the memory reads of
   * consecutive walks (with a call in between, a 4-level walk took a third longer here).
   */
  translate(vpn: number, access: number): number {
    const v = vpn | 0;
    if (v === vpn && v >= 0 && access === this.acc4k) return this.lean4k(v, access);
    return this.translateSlow(vpn, access);
  }

  /**
   * The lean walk of 4 KiB-granule formats with a one-frame root in the arena, for input pages
   * below 2^31 (IOVAs below 8 TiB) and the access whose masks are loaded (accNow): the common case
   * in as few instructions as possible. leanEnd checks the leaf it reaches, and anything else (a
   * table outside the arena, an entry not present or of a bad type, a table whose accessed flag
   * the hardware must set, a permission fault, a leaf update) goes to translateWide, which makes
   * every check and update in order.
   *
   * The top level's index (below topEntries: the input-size check) and each lower level's (a
   * constant shift and 9 bits) index one-frame tables in the arena: an entry's words are at its
   * frame's slot (0, a frame of zeros, when the frame has none or its pfn is beyond the slot table,
   * read as undefined) plus the entry's offset. The walk does not test entries for presence: it
   * follows whatever does not look like a block to the level below (the address of an entry that
   * is not present leads to some frame, or to the zeros) and leaves it to leanEnd's masks, which
   * require every table entry and the leaf to be present (leanAccess). Table page numbers are
   * int32 here (bits 43 and up of a table address are dropped; badTH sends such a walk to
   * translateWide). The levels are written out, not looped over (a loop's back edge makes V8
   * check the stack and reload what it had loaded: 5 ns of a walk): the walk enters at the top
   * level's shift, and a block leaves at its own.
   */
  private lean4k(v: number, access: number): number {
    let sh = this.shift0;
    const idx = v >>> sh;
    if (idx >= this.topEntries) return this.setFault(FAULT_ADDRESS_SIZE, -1);
    const arena = this.arena;
    const slot = arena.slot;
    const words = arena.words;
    const tm = this.typeMask;
    const bt = this.blockType;
    let w = this.rootWord + (idx << 1);
    let lo = words[w];
    let hi = words[w | 1];
    // The AND of the table entries' lo words and the OR of their hi words (grant bits must be set
    // in all, deny bits clear in all).
    let andLo = -1;
    let orHi = 0;
    walk: {
      if (sh === 27) {
        if ((lo & tm) === bt) break walk;
        andLo = lo & andLo;
        orHi = hi | orHi;
        w = (slot[(lo >>> 12) | (hi << 20)] + ((v >>> 17) & 1022)) | 0;
        lo = words[w];
        hi = words[w | 1];
        sh = 18;
      }
      if (sh === 18) {
        if ((lo & tm) === bt) break walk;
        andLo = lo & andLo;
        orHi = hi | orHi;
        w = (slot[(lo >>> 12) | (hi << 20)] + ((v >>> 8) & 1022)) | 0;
        lo = words[w];
        hi = words[w | 1];
        sh = 9;
      }
      if (sh === 9) {
        if ((lo & tm) === bt) break walk;
        andLo = lo & andLo;
        orHi = hi | orHi;
        w = (slot[(lo >>> 12) | (hi << 20)] + ((v << 1) & 1022)) | 0;
        lo = words[w];
        hi = words[w | 1];
        sh = 0;
      }
    }
    return this.leanEnd(v, access, sh, v, andLo, orHi, lo, hi);
  }

  /** translate when lean4k is not for this call: another access, a page beyond it, or another path. */
  private translateSlow(vpn: number, access: number): number {
    if (this.leanNow !== 1) return this.translateOther(vpn, access);
    const v = vpn | 0;
    if (v !== vpn || v < 0) return this.translateLean(vpn, access);
    if (this.leanAccess(access)) return this.lean4k(v, access);
    if (!(vpn < this.inputPages)) return this.setFault(FAULT_ADDRESS_SIZE, -1);
    return this.translateWide(vpn, access);
  }

  /**
   * The lean path of other granules (16 and 64 KiB), and of input pages from 2^31 up: translate's
   * walk as a loop over levels of bpl index bits each, with the same end (leanEnd).
   */
  private translateLean(vpn: number, access: number): number {
    const top = Math.floor(vpn * this.scale0);
    if (!(vpn >= 0 && top < this.topEntries)) return this.setFault(FAULT_ADDRESS_SIZE, -1);
    const rest = (vpn - top * this.pages0) | 0;
    let idx = top | 0;
    let sh = this.shift0;
    let tbl = this.root;
    let andLo = -1;
    let orHi = 0;
    let lo: number;
    let hi: number;
    for (;;) {
      const fi = (tbl + (idx >>> 9)) | 0;
      const slot = this.arena.slot;
      const w = ((slot[fi] | 0) + ((idx & 511) << 1)) | 0;
      const words = this.arena.words;
      lo = words[w] | 0;
      if ((lo & this.validLo) === 0) return this.translateWide(vpn, access);
      hi = words[w | 1] | 0;
      if (sh === this.lastShift || (lo & this.typeMask) === this.blockType) break;
      andLo &= lo;
      orHi |= hi;
      tbl = ((lo & this.addrLo) >>> 12) | ((hi & 0xfffff) << 20);
      sh = (sh - this.bpl) | 0;
      idx = (rest >>> sh) & this.lowMask;
    }
    return this.leanEnd(vpn, access, sh, rest, andLo, orHi, lo, hi);
  }

  /**
   * The end of a lean walk that stopped at the entry (lo, hi; as int32 or uint32) of the level of
   * shift sh (in pages; a block, or the last level's entry), through tables whose lo words AND to
   * andLo and hi words OR to orHi: the checks (a leaf of the level's type, permissions and
   * presence, hardware updates due, table addresses the walk could not follow), then the results;
   * translateWide redoes anything else. `rest`: the input page's offset in what a top-level entry
   * spans (at least the bits inside the leaf).
   */
  private leanEnd(vpn: number, access: number, sh: number, rest: number, andLo: number, orHi: number, lo: number, hi: number): number {
    if (access !== this.accNow && !this.leanAccess(access)) return this.translateWide(vpn, access);
    // A leaf of the wrong type, or a block where the format has none.
    if (sh === this.lastShift ? (lo & this.pageTypeMask) !== this.pageType : ((this.leafShifts >>> sh) & 1) === 0) return this.translateWide(vpn, access);
    // (The leaf's bits in leafBits: those of needL must be set, the others clear.)
    if ((((lo ^ this.needL) & this.leafBits) | (~andLo & this.needT) | (orHi & this.badTH) | (hi & this.accLDH)) !== 0) {
      return this.translateWide(vpn, access);
    }
    this.fault = 0; // FAULT_NONE
    this.leafShift = sh;
    // The tables' bad bits as permsOf takes them (its masks pick the grant bits of ~andLo and the
    // deny bits of orHi).
    this.pT0 = ~andLo;
    this.pT1 = orHi;
    this.pL0 = lo | 0;
    this.pL1 = hi | 0;
    // The leaf maps 2^sh pages: its address bits above them, the input page's below.
    const off = (1 << sh) - 1;
    return (((lo >>> 12) & ~off) | (rest & off)) + (hi & this.addrHi) * TWO20;
  }

  /**
   * Load the lean path's masks for access (see accNow); false when the access always takes
   * translateWide (a write when the hardware makes leaves dirty).
   */
  private leanAccess(access: number): boolean {
    const lm = this.lm;
    if (!this.leanMasks(access, lm)) return false;
    this.needT = lm[0];
    this.badTH = lm[1];
    this.needL = lm[2];
    this.leafBits = lm[3];
    this.accLDH = lm[4];
    this.accNow = access;
    this.acc4k = this.leanNow === 1 ? access : -1;
    return true;
  }

  /**
   * The lean path's masks for access (see accNow) into out (needT, badTH, needL, leafBits, accLDH);
   * false when the access always takes translateWide (a write when the hardware makes leaves dirty).
   */
  private leanMasks(access: number, out: Int32Array): boolean {
    if ((access & this.writeSlow) !== 0) return false;
    const m = this.leanAcc;
    const k = (access & 15) << 3;
    // Every entry on the path must be present: the valid bit when it is one, else (VT-d second
    // stage: R or W) a grant bit the access requires anyway, without which the walk is not lean.
    const valid = this.validLo;
    const one = (valid & (valid - 1)) === 0 ? valid : 0;
    const needT = m[k] | this.aTableHw | one;
    const needL = m[k + 2] | this.aLeafSlow | one;
    if ((needT & valid) === 0 || (needL & valid) === 0) return false;
    assert((needL & m[k + 3]) === 0, "a leaf bit both required and refused");
    out[0] = needT;
    out[1] = m[k + 1] | this.addrHiWide | (0xfffff & ~this.addrHi);
    out[2] = needL;
    out[3] = needL | m[k + 3];
    out[4] = m[k + 4];
    return true;
  }

  /** A new generation and rd, after anything the lean masks depend on changed. */
  private loadReadMasks(): void {
    this.gen = ++generation;
    this.rd = this.leanNow === 1 && this.leanMasks(ACC_READ, this.lm) ? 1 : 0;
  }

  /** translate when the 4 KiB lean path is not for this engine: another granule, nested, or not lean (see lean). */
  private translateOther(vpn: number, access: number): number {
    if (this.leanNow === 2) return this.translateLean(vpn, access);
    const s2 = this.s2;
    if (s2 !== null) {
      const v = vpn | 0;
      if (this.nest4k && v === vpn && v >= 0 && (access === this.accNow || this.leanAccess(access))) return this.nested4k(v, access, s2);
      return this.translateNested(vpn, access);
    }
    if (!(vpn >= 0 && vpn < this.inputPages)) return this.setFault(FAULT_ADDRESS_SIZE, -1);
    return this.translateWide(vpn, access);
  }

  /**
   * translate, every check and update in order, each level's index from the input page itself
   * (so also for formats whose top-level entries span 2^31 pages or more: 5-level VT-d, Arm 16 KiB
   * granule).
   */
  private translateWide(vpn: number, access: number): number {
    const last = this.last;
    const small = vpn <= 0x7fffffff;
    const shift0 = this.shift0;
    const bpl = this.bpl;
    const idxMask = this.idxMask;
    let tbl = this.root;
    let tLo = 0;
    let tHi = 0;
    let l = 0;
    let f: Uint32Array;
    let w: number;
    let lo: number;
    let hi: number;
    for (; ; l++) {
      const sh = shift0 - bpl * l;
      const idx = (small ? (sh < 31 ? vpn >>> sh : 0) : Math.floor(vpn * this.scale[l])) & idxMask[l];
      const g = this.frameOf(tbl + (idx >>> 9));
      if (g === undefined) return this.setFault(FAULT_TRANSLATION, l);
      f = g;
      w = (idx & 511) << 1;
      lo = f[w];
      if ((lo & this.validLo) === 0) return this.setFault(FAULT_TRANSLATION, l);
      hi = f[w + 1];
      if (l === last || (lo & this.typeMask) === this.blockType) break;
      tLo |= (this.gtLo & ~lo) | (this.dtLo & lo);
      tHi |= (this.gtHi & ~hi) | (this.dtHi & hi);
      if ((lo & this.aTableHw) !== this.aTableHw) f[w] = lo | this.aTableHw;
      tbl = ((lo & this.addrLo) >>> 12) + (hi & this.addrHi) * TWO20;
    }
    // The offset in the leaf only needs the input page's low 31 bits (leaves are at most 2^18 pages).
    return this.finishLeaf(vpn, access, l, f, w, lo, hi, tLo, tHi, small ? vpn : modPow2(vpn, 2147483648));
  }

  /**
   * The end of a one-stage walk that reached the entry (lo, hi) at f[w] on level l: the leaf
   * checks, the permission check, the hardware's updates, the results. `low` is the input page's
   * low bits (at least those inside the leaf).
   */
  private finishLeaf(vpn: number, access: number, l: number, f: Uint32Array, w: number, lo: number, hi: number, tLo: number, tHi: number, low: number): number {
    if (l === this.last ? (lo & this.pageTypeMask) !== this.pageType : this.leafOk[l] === 0) return this.leafFault(l);
    // The leaf's own bad bits, then the access: a bad bit in the masks of what it asks is a no.
    const lLo = (this.glLo & ~lo) | (this.dlLo & lo);
    const lHi = (this.glHi & ~hi) | (this.dlHi & hi);
    const m = this.accMask;
    const a = (access & 15) << 2;
    if (((tLo & m[a]) | (tHi & m[a + 1]) | (lLo & m[a + 2]) | (lHi & m[a + 3])) !== 0 || (lo & this.aLeafFault) !== this.aLeafFault) {
      return this.translateGeneric(vpn, access, null, true);
    }
    if ((lo & this.aLeafHw) !== this.aLeafHw || ((access & ACC_WRITE) !== 0 && this.hwD)) this.updateLeaf(f, w, access);
    this.fault = FAULT_NONE;
    this.leafShift = this.shiftOf[l];
    this.pT0 = tLo;
    this.pT1 = tHi;
    this.pL0 = lo;
    this.pL1 = hi;
    return ((lo & this.leafAddrLo[l]) >>> 12) + (hi & this.addrHi) * TWO20 + (low & this.leafOffMask[l]);
  }

  /** The frame at pfn of the memory this engine walks (see views), or undefined when it reads as zeros. */
  private frameOf(pfn: number): Uint32Array | undefined {
    const views = this.views;
    const vi = pfn - VIEW_BASE;
    const g = vi >= 0 && vi < views.length ? views[vi] : undefined;
    return g !== undefined ? g : this.mem.peekFrameU32(pfn);
  }

  /**
   * translateNested's common case for 4 KiB-granule formats (nest4k), input pages below 2^31 and
   * the access whose lean masks are loaded (accNow): the levels by integer shifts, each stage-1
   * entry read through its table's stage-2 walk, and leanEnd's checks of both stages' paths
   * (permissions, hardware updates due) before stage 2 translates the output.
   *
   * The walk runs in WebAssembly (wasm-walk.wat: the same steps and masks) when stage 2 is a lean4k
   * walk (rd), its arena has a walker and the stage-1 table pages are in the arena: a guest's table
   * page is moved there
   * (PhysMem.toArena) the first time the walker finds one outside, and that walk runs here in
   * JavaScript, each table read and the output through stage 2's own translate. A stage-1 table
   * entry that is not present faults here, as in translateNested (nothing follows it); anything
   * else unusual is redone by translateGeneric.
   */
  private nested4k(v: number, access: number, s2: PageTableEngine): number {
    let sh = this.shift0;
    const top = v >>> sh;
    if (top >= this.topEntries) return this.setFault(FAULT_ADDRESS_SIZE, -1);
    const aw = s2.rd === 0 ? null : s2.aw !== null || s2.awTried ? s2.aw : s2.findWalker();
    if (aw !== null) {
      if (aw.owner !== this || aw.ownerAcc !== access || aw.ownerGen !== this.gen || aw.ownerGen2 !== s2.gen) this.fillRecord(aw, access, s2);
      if (aw.ok) {
        const out = aw.nested(v, aw.recByte);
        if (out >= 0) {
          aw.served++;
          return this.wasmDone(aw.rec, out);
        }
        if (out === -1) return this.translateGeneric(v, access, null, true);
        // -2: a stage-1 table page outside the arena; move it in for next time, walk here now.
        (s2.mem as HwMemory).phys.toArena(aw.rec[R_HP]);
      }
    }
    const valid = this.validLo;
    const tm = this.typeMask;
    const bt = this.blockType;
    let gpn = this.root + (top >>> 9);
    let w = (top & 511) << 1;
    let l = 0;
    let andLo = -1;
    let orHi = 0;
    let lo: number;
    let hi: number;
    for (;;) {
      const hp = s2.translate(gpn, 1); // ACC_READ
      const f = hp < 0 ? undefined : s2.frameOf(hp);
      if (f === undefined) return this.translateGeneric(v, access, null, true);
      lo = f[w] | 0;
      hi = f[w | 1] | 0;
      if ((lo & valid) === 0) return this.setFault(FAULT_TRANSLATION, l);
      if (sh === 0 || (lo & tm) === bt) break;
      andLo &= lo;
      orHi |= hi;
      gpn = ((lo & this.addrLo) >>> 12) + (hi & this.addrHi) * TWO20;
      sh = (sh - 9) | 0;
      l++;
      w = ((v >>> sh) & 511) << 1;
    }
    if (sh !== 0 ? ((this.leafShifts >>> sh) & 1) === 0 : (lo & this.pageTypeMask) !== this.pageType) return this.leafFault(l);
    if ((((lo ^ this.needL) & this.leafBits) | (~andLo & this.needT) | (orHi & this.badTH) | (hi & this.accLDH)) !== 0) {
      return this.translateGeneric(v, access, null, true);
    }
    const off = (1 << sh) - 1;
    const out = s2.translate((((lo >>> 12) & ~off) | (v & off)) + (hi & this.addrHi) * TWO20, access);
    if (out < 0) return this.translateGeneric(v, access, null, true);
    this.fault = 0; // FAULT_NONE
    this.leafShift = sh;
    this.pT0 = ~andLo;
    this.pT1 = orHi;
    this.pL0 = lo;
    this.pL1 = hi;
    this.keepStage2(s2);
    return out;
  }

  /** As a second stage: look up its arena's WebAssembly walker, once. */
  private findWalker(): ArenaWalker | null {
    this.awTried = true;
    this.aw = this.rootWord !== 0 ? this.arena.wasm(makeArenaWalker) : null;
    return this.aw;
  }

  /**
   * Write the arena walker's record for nested4k's walks of this (stage-1) engine over s2 for
   * access; ok false when the walker cannot serve them (nested4k walks in JS).
   */
  private fillRecord(aw: ArenaWalker, access: number, s2: PageTableEngine): void {
    aw.owner = this;
    aw.ownerAcc = access;
    aw.ownerGen = this.gen;
    aw.ownerGen2 = s2.gen;
    aw.ok = false;
    const r = aw.rec;
    const lm = this.lm;
    if (!this.nest4k || !(this.root < 2 ** 31) || s2.rd === 0 || !this.leanMasks(access, lm)) return;
    r[R_ROOT1] = this.root;
    r[R_SH1] = this.shift0;
    r[R_VALID1] = this.validLo;
    r[R_TM1] = this.typeMask;
    r[R_BT1] = this.blockType;
    r[R_PTM1] = this.pageTypeMask;
    r[R_PT1] = this.pageType;
    r[R_LEAFSH1] = this.leafShifts;
    r[R_ADDR1] = this.addrLo;
    r[R_ADDR1 + 1] = this.addrHi;
    entryMasks(r, R_MASKS1, lm);
    r[R_OUT1] = 0xfffff000 | 0;
    r[R_OUT1 + 1] = this.addrHi;
    if (!s2.leanMasks(access, lm)) return;
    entryMasks(r, R_ACC2, lm);
    if (!s2.leanMasks(ACC_READ, lm)) return;
    entryMasks(r, R_READ2, lm);
    r[R_ROOT2] = s2.rootWord * 4;
    r[R_NSLOTS] = s2.arena.slot.length;
    r[R_SH2] = s2.shift0;
    r[R_TOP2] = s2.topEntries;
    r[R_TM2] = s2.typeMask;
    r[R_BT2] = s2.blockType;
    r[R_PTM2] = s2.pageTypeMask;
    r[R_PT2] = s2.pageType;
    r[R_LEAFSH2] = s2.leafShifts;
    r[R_OUT2] = 0xfffff000 | 0;
    r[R_OUT2 + 1] = s2.addrHi;
    aw.ok = true;
  }

  /** The fields a successful nested4k sets, from the arena walker's results (r: its record). */
  private wasmDone(r: Int32Array, out: number): number {
    this.fault = 0; // FAULT_NONE
    this.leafShift = r[48];
    this.pT0 = ~r[49];
    this.pT1 = r[50];
    this.pL0 = r[51];
    this.pL1 = r[52];
    this.s2Found = 1;
    this.s2Shift = r[53];
    this.s2T0 = ~r[54];
    this.s2T1 = r[55];
    this.s2L0 = r[56];
    this.s2L1 = r[57];
    return out;
  }

  /**
   * translate() for a nested (stage-1) engine: every table page and the output go through stage
   * 2. The common case only; anything unusual (a fault, a hardware update) is redone by
   * translateGeneric, which reports it precisely.
   */
  private translateNested(vpn: number, access: number): number {
    const s2 = this.s2 as PageTableEngine;
    if (!(vpn >= 0 && vpn < this.inputPages)) return this.setFault(FAULT_ADDRESS_SIZE, -1);
    const last = this.last;
    const small = vpn <= 0x7fffffff;
    let tbl = this.root;
    let tLo = 0;
    let tHi = 0;
    let l = 0;
    let lo: number;
    let hi: number;
    for (; ; l++) {
      const sh = this.shift0 - this.bpl * l;
      const idx = (small ? (sh < 31 ? vpn >>> sh : 0) : Math.floor(vpn * this.scale[l])) & this.idxMask[l];
      const hp = s2.translate(tbl + (idx >>> 9), ACC_READ);
      const f = hp < 0 ? undefined : s2.frameOf(hp);
      if (f === undefined) return this.translateGeneric(vpn, access, null, true);
      const w = (idx & 511) << 1;
      lo = f[w];
      hi = f[w + 1];
      if ((lo & this.validLo) === 0) return this.setFault(FAULT_TRANSLATION, l);
      if (l === last || (lo & this.typeMask) === this.blockType) break;
      if ((lo & this.aTableHw) !== this.aTableHw) return this.translateGeneric(vpn, access, null, true);
      tLo |= (this.gtLo & ~lo) | (this.dtLo & lo);
      tHi |= (this.gtHi & ~hi) | (this.dtHi & hi);
      tbl = ((lo & this.addrLo) >>> 12) + (hi & this.addrHi) * TWO20;
    }
    if (l === last ? (lo & this.pageTypeMask) !== this.pageType : this.leafOk[l] === 0) return this.leafFault(l);
    const lLo = (this.glLo & ~lo) | (this.dlLo & lo);
    const lHi = (this.glHi & ~hi) | (this.dlHi & hi);
    const m = this.accMask;
    const a = (access & 15) << 2;
    if (
      ((tLo & m[a]) | (tHi & m[a + 1]) | (lLo & m[a + 2]) | (lHi & m[a + 3])) !== 0 ||
      (lo & this.aLeafFault) !== this.aLeafFault ||
      (lo & this.aLeafHw) !== this.aLeafHw ||
      ((access & ACC_WRITE) !== 0 && this.hwD && !this.isDirty(lo, hi))
    ) {
      return this.translateGeneric(vpn, access, null, true);
    }
    const pages = this.pagesPer[l];
    const out = s2.translate(((lo & this.leafAddrLo[l]) >>> 12) + (hi & this.addrHi) * TWO20 + (vpn & (pages - 1)), access);
    if (out < 0) return this.translateGeneric(vpn, access, null, true);
    this.fault = FAULT_NONE;
    this.leafShift = this.shiftOf[l];
    this.pT0 = tLo;
    this.pT1 = tHi;
    this.pL0 = lo;
    this.pL1 = hi;
    this.keepStage2(s2);
    return out;
  }

  /** A bad leaf encoding at level l: a page descriptor of the wrong type, or a leaf where none may be. */
  private leafFault(l: number): number {
    return this.setFault(l === this.last ? FAULT_TRANSLATION : this.badLeafFault, l);
  }

  /** The hardware's accessed / dirty update of a leaf (entry words f[w], f[w+1]) that allowed access. */
  private updateLeaf(f: Uint32Array, w: number, access: number): void {
    let lo = f[w] | 0;
    let hi = f[w + 1] | 0;
    const tracked = (lo & this.dbmLo) === this.dbmLo && (hi & this.dbmHi) === this.dbmHi;
    if (this.hwA) lo |= this.aLeaf;
    if ((access & ACC_WRITE) !== 0 && this.hwD && tracked) {
      lo = (lo | this.dSetLo) & ~this.dClrLo;
      hi = (hi | this.dSetHi) & ~this.dClrHi;
    }
    if (lo !== (f[w] | 0)) f[w] = lo;
    if (hi !== (f[w + 1] | 0)) f[w + 1] = hi;
  }

  /** Permissions (ACC_*) from the tables' bad bits and the leaf's words (see translate). */
  private permsOf(tLo: number, tHi: number, lo: number, hi: number): number {
    const m = this.pm;
    const lLo = (this.glLo & ~lo) | (this.dlLo & lo);
    const lHi = (this.glHi & ~hi) | (this.dlHi & hi);
    let perms = 0;
    for (let k = 0; k < 4; k++) {
      const o = 8 + 4 * k;
      if (((tLo & m[o]) | (tHi & m[o + 1]) | (lLo & m[o + 2]) | (lHi & m[o + 3])) === 0) perms |= 1 << k;
    }
    const tracked = (lo & this.dbmLo) === this.dbmLo && (hi & this.dbmHi) === this.dbmHi;
    if (this.dbmWrite && tracked && ((tLo & m[12]) | (tHi & m[13])) === 0) perms |= ACC_WRITE;
    return perms;
  }

  /**
   * The walk with everything: stage-2 translation of every table and of the output (nested), the
   * steps recorded when `steps` is given, hardware updates only when `update`.
   */
  private translateGeneric(vpn: number, access: number, steps: WalkStep[] | null, update: boolean): number {
    if (!(Number.isSafeInteger(vpn) && vpn >= 0 && vpn < this.inputPages)) return this.setFault(FAULT_ADDRESS_SIZE, -1);
    const s2 = this.s2;
    const mem = s2 === null ? this.mem : s2.mem;
    let tbl = this.root;
    let tLo = 0;
    let tHi = 0;
    for (let l = 0; ; l++) {
      const idx = Math.floor(vpn * this.scale[l]) & this.idxMask[l];
      const gp = tbl + (idx >>> 9);
      const hp = s2 === null ? gp : s2.stage2(gp, ACC_READ, update);
      if (hp < 0) return this.stage2Fault(gp);
      const f = mem.peekFrameU32(hp);
      const w = (idx & 511) << 1;
      const lo = f === undefined ? 0 : f[w];
      const hi = f === undefined ? 0 : f[w + 1];
      let step: WalkStep | null = null;
      if (steps !== null) {
        const d = this.format.levels[l];
        step = {
          level: d.number,
          name: d.name,
          tablePa: tbl * 4096,
          index: idx,
          entryPa: gp * 4096 + (idx & 511) * 8,
          hostEntryPa: hp * 4096 + (idx & 511) * 8,
          lo: lo >>> 0,
          hi: hi >>> 0,
          kind: "invalid",
        };
        steps.push(step);
      }
      if (f === undefined || (lo & this.validLo) === 0) return this.setFault(FAULT_TRANSLATION, l);
      if (l === this.last) {
        if ((lo & this.pageTypeMask) !== this.pageType) return this.setFault(FAULT_TRANSLATION, l);
      } else if ((lo & this.typeMask) !== this.blockType) {
        if (step !== null) step.kind = "table";
        tLo |= (this.gtLo & ~lo) | (this.dtLo & lo);
        tHi |= (this.gtHi & ~hi) | (this.dtHi & hi);
        if (update && this.hwA && (lo & this.aTable) !== this.aTable) {
          if (!this.markWritable(gp)) return this.stage2Fault(gp);
          f[w] = lo | this.aTable;
        }
        tbl = ((lo & this.addrLo) >>> 12) + (hi & this.addrHi) * TWO20;
        continue;
      } else if (this.leafOk[l] === 0) {
        return this.setFault(this.badLeafFault, l);
      }
      if (step !== null) step.kind = "leaf";
      const perms = this.permsOf(tLo, tHi, lo, hi);
      const tracked = (lo & this.dbmLo) === this.dbmLo && (hi & this.dbmHi) === this.dbmHi;
      const accessed = (lo & this.aLeaf) === this.aLeaf;
      if (!accessed && this.afFault && !this.hwA) return this.setFault(FAULT_ACCESS_FLAG, l);
      if ((access & ~perms) !== 0) return this.setFault(FAULT_PERMISSION, l);
      if (update && ((!accessed && this.hwA) || ((access & ACC_WRITE) !== 0 && this.hwD && tracked && !this.isDirty(lo, hi)))) {
        if (!this.markWritable(gp)) return this.stage2Fault(gp);
        this.updateLeaf(f, w, access);
      }
      const pages = this.pagesPer[l];
      let ppn = ((lo & this.leafAddrLo[l]) >>> 12) + (hi & this.addrHi) * TWO20 + (vpn & (pages - 1));
      if (s2 !== null) {
        const out = s2.stage2(ppn, access, update);
        if (out < 0) return this.stage2Fault(ppn);
        this.keepStage2(s2);
        ppn = out;
      } else {
        this.s2Found = 0;
      }
      this.fault = FAULT_NONE;
      this.leafShift = this.shiftOf[l];
      this.pT0 = tLo;
      this.pT1 = tHi;
      this.pL0 = lo;
      this.pL1 = hi;
      return ppn;
    }
  }

  /** Keep what stage 2's last translation (of this walk's output) found, for perms and leafPages. */
  private keepStage2(s2: PageTableEngine): void {
    this.s2Found = 1;
    this.s2Shift = s2.leafShift;
    this.s2T0 = s2.pT0;
    this.s2T1 = s2.pT1;
    this.s2L0 = s2.pL0;
    this.s2L1 = s2.pL1;
  }

  /** This engine as the second stage of another: translate, with or without hardware updates. */
  private stage2(gpn: number, access: number, update: boolean): number {
    return update ? this.translate(gpn, access) : this.translateGeneric(gpn, access, null, false);
  }

  /** Nested: the hardware's accessed/dirty updates to a stage-1 entry are writes, which stage 2 must allow. */
  private markWritable(entryGpn: number): boolean {
    const s2 = this.s2;
    return s2 === null || s2.translate(entryGpn, ACC_WRITE) >= 0;
  }

  private setFault(kind: number, l: number): number {
    this.fault = kind;
    this.faultLevel = l < 0 ? -1 : this.levelNumber[l];
    this.faultStage = 1;
    this.faultGpn = -1;
    return -1;
  }

  private stage2Fault(gpn: number): number {
    const s2 = this.s2 as PageTableEngine;
    this.fault = s2.fault;
    this.faultLevel = s2.faultLevel;
    this.faultStage = 2;
    this.faultGpn = gpn;
    return -1;
  }

  /**
   * Walk input page vpn and report every level's entry (tests, visualizer). With `access` the
   * permission check is made as translate makes it; `update` also applies the hardware's
   * accessed/dirty updates (off by default: a walk for display changes nothing).
   */
  walk(vpn: number, access = 0, update = false): WalkResult {
    const steps: WalkStep[] = [];
    const ppn = this.translateGeneric(vpn, access, steps, update);
    return ppn < 0
      ? { steps, fault: this.fault, faultLevel: this.faultLevel, faultStage: this.faultStage, ppn, leafPages: 0, leafLevel: -1, perms: 0 }
      : { steps, fault: FAULT_NONE, faultLevel: -1, faultStage: 1, ppn, leafPages: this.leafPages, leafLevel: this.leafLevel, perms: this.perms };
  }

  // ---- building: map ------------------------------------------------------------------------------

  /**
   * Map [vpn, vpn+npages) to [ppn, ppn+npages) with prot (PT_*), using at each step the largest
   * leaf the format allows and both addresses' alignment permits. Anything already mapped in the
   * range: EEXIST, and nothing of this call stays mapped. Bad ranges and prot: EINVAL.
   */
  map(vpn: number, ppn: number, npages: number, prot: number): void {
    this.checkRange(vpn, npages);
    const gp = this.granulePages;
    if (!(Number.isSafeInteger(ppn) && ppn >= 0 && ppn % gp === 0 && ppn + npages <= this.outputPages)) {
      fail("EINVAL", `output page ${ppn} +${npages} is unaligned or beyond ${this.format.outputBits} bits`);
    }
    if ((prot & (PT_READ | PT_WRITE)) === 0) fail("EINVAL", "a mapping must allow reads or writes");
    this.encode(prot);
    const aLo = this.encLo;
    const aHi = this.encHi;
    if (((aLo | this.leafTypeLo[this.last]) & this.validLo) === 0) fail("EINVAL", `prot ${prot} makes no valid entry`);
    const mem = this.mem;
    let done = 0;
    while (done < npages) {
      const v = vpn + done;
      const p = ppn + done;
      const rem = npages - done;
      let tbl = this.root;
      for (let l = 0; ; l++) {
        const size = this.pagesPer[l];
        const idx = Math.floor(v * this.scale[l]) & this.idxMask[l];
        if (this.leafOk[l] === 1 && rem >= size && ((v | p) & (size - 1)) === 0) {
          const want = Math.min(this.entries[l] - idx, Math.floor(rem / size));
          const placed = this.placeLeaves(tbl, l, idx, want, p, aLo | this.leafTypeLo[l], aHi | this.leafTypeHi[l]);
          done += placed * size;
          if (placed < want) this.unwindMap(vpn, done, v + placed * size);
          break;
        }
        const f = mem.frameU32(tbl + (idx >>> 9));
        const w = (idx & 511) << 1;
        const lo = f[w];
        if ((lo & this.validLo) === 0) {
          const nt = this.allocTable(l + 1);
          f[w] = this.tableLo | ((nt & 0xfffff) << 12);
          f[w + 1] = this.tableHi | Math.floor(nt / TWO20);
          this.live.set(tbl, (this.live.get(tbl) as number) + 1);
          tbl = nt;
        } else if ((lo & this.typeMask) === this.blockType) {
          this.unwindMap(vpn, done, v);
        } else {
          tbl = ((lo & this.addrLo) >>> 12) + (f[w + 1] & this.addrHi) * TWO20;
        }
      }
    }
  }

  private unwindMap(vpn: number, done: number, at: number): never {
    if (done > 0) this.unmap(vpn, done);
    fail("EEXIST", `input page ${at} is already mapped`);
  }

  /** Write up to n leaves from entry idx of table tbl; stops at an occupied entry. Returns how many. */
  private placeLeaves(tbl: number, l: number, idx: number, n: number, p: number, lo0: number, hi0: number): number {
    const mem = this.mem;
    const size = this.pagesPer[l];
    const validLo = this.validLo;
    const live = this.live.get(tbl) as number;
    // The output page number as 20 low bits (address bits 31:12) and the rest (bits 51:32).
    let pLo = modPow2(p, TWO20);
    let pHi = (p - pLo) / TWO20;
    let f = mem.frameU32(tbl + (idx >>> 9));
    let k = 0;
    for (; k < n; k++) {
      const i = idx + k;
      if ((i & 511) === 0 && k > 0) f = mem.frameU32(tbl + (i >>> 9));
      const w = (i & 511) << 1;
      if (live !== 0 && (f[w] & validLo) !== 0) break;
      f[w] = lo0 | (pLo << 12);
      f[w + 1] = hi0 | pHi;
      pLo += size;
      if (pLo >= TWO20) {
        pLo -= TWO20;
        pHi++;
      }
    }
    if (k > 0) this.live.set(tbl, live + k);
    return k;
  }

  /** Leaf attribute bits for prot (without type and address) into encLo/encHi. */
  private encode(prot: number): void {
    const f = this.format;
    if ((prot & PT_MMIO) !== 0) prot &= ~PT_CACHE;
    let lo = f.leafAlways.lo;
    let hi = f.leafAlways.hi;
    for (const r of f.protRules) {
      const b = (prot & r.prot) !== 0 ? r.set : r.clear;
      lo |= b.lo;
      hi |= b.hi;
    }
    if (this.useDbm && (prot & PT_WRITE) !== 0) {
      lo |= this.dbmLo;
      hi |= this.dbmHi;
      if ((prot & PT_DIRTY) === 0) {
        // Writable-clean: the hardware makes it dirty (writable) on the first write.
        lo = (lo & ~this.dSetLo) | this.dClrLo;
        hi = (hi & ~this.dSetHi) | this.dClrHi;
      }
    }
    this.encLo = lo;
    this.encHi = hi;
  }

  // ---- tearing down: unmap ------------------------------------------------------------------------

  /**
   * Remove every mapping in [vpn, vpn+npages). A large leaf the range only partly covers is split
   * into a table of smaller leaves first, so the rest of it stays mapped. Holes are skipped.
   * Tables left empty are freed. Returns the number of pages that were mapped.
   */
  unmap(vpn: number, npages: number): number {
    this.checkRange(vpn, npages);
    const mem = this.mem;
    const end = vpn + npages;
    let v = vpn;
    let total = 0;
    while (v < end) {
      const l = this.descend(v, end, true);
      if (l < 0) {
        v = this.holeEnd;
        continue;
      }
      const tbl = this.pathTbl[l];
      const idx = this.pathIdx[l];
      const size = this.pagesPer[l];
      const n = this.entries[l];
      if (idx === 0 && l === this.last && l > 0 && end - v >= n * size) {
        // The range covers this whole last-level table: free it without clearing its entries.
        const c = this.live.get(tbl) as number;
        total += c * size;
        v += n * size;
        this.release(l, c);
        continue;
      }
      // Clear the run of whole leaves (skipping holes) this table holds in the range.
      const validLo = this.validLo;
      let g = mem.frameU32(tbl + (idx >>> 9));
      let i = idx;
      let cleared = 0;
      while (i < n && end - v >= size) {
        if ((i & 511) === 0 && i !== idx) g = mem.frameU32(tbl + (i >>> 9));
        const x = (i & 511) << 1;
        const e = g[x];
        if ((e & validLo) !== 0) {
          if (l !== this.last && (e & this.typeMask) !== this.blockType) break;
          g[x] = 0;
          g[x + 1] = 0;
          cleared++;
        }
        i++;
        v += size;
      }
      total += cleared * size;
      if (cleared > 0) this.release(l, cleared);
    }
    return total;
  }

  /**
   * The descent unmap and readAndClearDirty share: from the root towards input page v through
   * table entries to the first entry that is not a table, recording the tables passed and the
   * entries' indexes in pathTbl / pathIdx. With `cut` (unmap), a large leaf that [v, end) covers
   * only in part is split first and the descent goes on in the new table. Returns the level of
   * the leaf reached, or -1 for a hole: `holeEnd` is then the first input page after the hole
   * (at most end).
   */
  private descend(v: number, end: number, cut: boolean): number {
    const mem = this.mem;
    let tbl = this.root;
    for (let l = 0; ; l++) {
      const idx = Math.floor(v * this.scale[l]) & this.idxMask[l];
      this.pathTbl[l] = tbl;
      this.pathIdx[l] = idx;
      const f = mem.frameU32(tbl + (idx >>> 9));
      const w = (idx & 511) << 1;
      const lo = f[w];
      if ((lo & this.validLo) === 0) {
        const size = this.pagesPer[l];
        this.holeEnd = Math.min(end, Math.floor(v / size) * size + size);
        return -1;
      }
      if (l !== this.last && (lo & this.typeMask) !== this.blockType) {
        tbl = ((lo & this.addrLo) >>> 12) + (f[w + 1] & this.addrHi) * TWO20;
        continue;
      }
      if (cut) {
        const size = this.pagesPer[l];
        if (v !== Math.floor(v / size) * size || end - v < size) {
          assert(l !== this.last, "unmap: a granule cut in half");
          tbl = this.split(f, w, l);
          continue;
        }
      }
      return l;
    }
  }

  /** Replace the large leaf at (f, w), level l, by a table of leaves one level down; returns it. */
  private split(f: Uint32Array, w: number, l: number): number {
    const lo = f[w];
    const hi = f[w + 1];
    const c = l + 1;
    assert(this.leafOk[c] === 1, "split: no leaves one level down");
    const nt = this.allocTable(c);
    const mem = this.mem;
    const cLo = (lo & this.attrLo) | this.leafTypeLo[c];
    const cHi = (hi & this.attrHi) | this.leafTypeHi[c];
    const size = this.pagesPer[c];
    let pLo = (lo & this.leafAddrLo[l]) >>> 12;
    let pHi = hi & this.addrHi;
    const n = this.entries[c];
    let g = mem.frameU32(nt);
    for (let i = 0; i < n; i++) {
      if ((i & 511) === 0 && i > 0) g = mem.frameU32(nt + (i >>> 9));
      const x = (i & 511) << 1;
      g[x] = cLo | (pLo << 12);
      g[x + 1] = cHi | pHi;
      pLo += size;
      if (pLo >= TWO20) {
        pLo -= TWO20;
        pHi++;
      }
    }
    this.live.set(nt, n);
    f[w] = this.tableLo | ((nt & 0xfffff) << 12);
    f[w + 1] = this.tableHi | Math.floor(nt / TWO20);
    return nt;
  }

  /** `cleared` entries went from the table at pathTbl[l]: free it and its parents as they empty. */
  private release(l: number, cleared: number): void {
    let t = this.pathTbl[l];
    let c = (this.live.get(t) as number) - cleared;
    while (l > 0 && c === 0) {
      this.live.delete(t);
      this.freeTable(t, l);
      l--;
      t = this.pathTbl[l];
      const idx = this.pathIdx[l];
      const f = this.mem.frameU32(t + (idx >>> 9));
      const w = (idx & 511) << 1;
      f[w] = 0;
      f[w + 1] = 0;
      c = (this.live.get(t) as number) - 1;
    }
    this.live.set(t, c);
  }

  // ---- dirty tracking -------------------------------------------------------------------------------

  /**
   * Report the dirty pages of [vpn, vpn+npages) and make their leaves clean (unless noClear): VT-d
   * and x86 clear D; Arm DBM leaves become writable-clean (read-only until the hardware's next
   * write). A dirty large leaf is reported clipped to the range but cleaned whole, as Linux does.
   * `record(vpn, npages)` is called per dirty leaf piece; returns the dirty page count.
   */
  readAndClearDirty(vpn: number, npages: number, record: ((vpn: number, npages: number) => void) | null = null, noClear = false): number {
    this.checkRange(vpn, npages);
    const mem = this.mem;
    const end = vpn + npages;
    let v = vpn;
    let total = 0;
    while (v < end) {
      const l = this.descend(v, end, false);
      if (l < 0) {
        v = this.holeEnd;
        continue;
      }
      const tbl = this.pathTbl[l];
      const idx = this.pathIdx[l];
      const size = this.pagesPer[l];
      const n = this.entries[l];
      let g = mem.frameU32(tbl + (idx >>> 9));
      let i = idx;
      let at = Math.floor(v / size) * size;
      while (i < n && at < end) {
        if ((i & 511) === 0 && i !== idx) g = mem.frameU32(tbl + (i >>> 9));
        const x = (i & 511) << 1;
        const elo = g[x];
        if ((elo & this.validLo) !== 0) {
          if (l !== this.last && (elo & this.typeMask) !== this.blockType) break;
          const ehi = g[x + 1];
          if (this.isDirty(elo, ehi)) {
            const s = Math.max(at, vpn);
            const e = Math.min(at + size, end);
            total += e - s;
            if (record !== null) record(s, e - s);
            if (!noClear) {
              g[x] = (elo & ~this.dSetLo) | this.dClrLo;
              g[x + 1] = (ehi & ~this.dSetHi) | this.dClrHi;
            }
          }
        }
        i++;
        at += size;
      }
      v = Math.max(v, at);
    }
    return total;
  }

  private isDirty(lo: number, hi: number): boolean {
    return (
      (lo & this.dSetLo) === this.dSetLo &&
      (hi & this.dSetHi) === this.dSetHi &&
      (lo & this.dClrLo) === 0 &&
      (hi & this.dClrHi) === 0 &&
      (lo & this.dbmLo) === this.dbmLo &&
      (hi & this.dbmHi) === this.dbmHi
    );
  }

  // ---- lifetime ---------------------------------------------------------------------------------------

  /** Free every table, the root included. The engine cannot be used afterwards. */
  destroy(): void {
    assert(!this.borrowed, "a walker does not own the tables it walks");
    if (this.destroyed) return;
    this.rootWord = 0; // the root's slot goes with it
    this.leanNow = 0;
    this.acc4k = -1;
    this.loadReadMasks(); // no longer a second stage nested4k walks (rd 0; records made for it are stale)
    const mem = this.mem;
    let l = 0;
    this.pathTbl[0] = this.root;
    this.pathIdx[0] = 0;
    while (l >= 0) {
      const t = this.pathTbl[l];
      const idx = this.pathIdx[l];
      if (l === this.last || idx >= this.entries[l]) {
        this.freeTable(t, l);
        this.live.delete(t);
        l--;
        if (l >= 0) this.pathIdx[l]++;
        continue;
      }
      const f = mem.frameU32(t + (idx >>> 9));
      const w = (idx & 511) << 1;
      const lo = f[w];
      if ((lo & this.validLo) !== 0 && (lo & this.typeMask) !== this.blockType) {
        l++;
        this.pathTbl[l] = ((lo & this.addrLo) >>> 12) + (f[w + 1] & this.addrHi) * TWO20;
        this.pathIdx[l] = 0;
      } else {
        this.pathIdx[l]++;
      }
    }
    this.destroyed = true;
  }

  private allocTable(l: number): number {
    const frames = this.frames[l];
    const t = this.mem.allocTable(frames);
    this.tableFrames += frames;
    this.live.set(t, 0);
    return t;
  }

  private freeTable(t: number, l: number): void {
    const frames = this.frames[l];
    this.mem.freeTable(t, frames);
    this.tableFrames -= frames;
  }

  private checkRange(vpn: number, npages: number): void {
    assert(!this.destroyed, "page table used after destroy");
    assert(!this.borrowed, "a walker does not change the tables it walks");
    const gp = this.granulePages;
    if (!(Number.isSafeInteger(vpn) && Number.isSafeInteger(npages) && vpn >= 0 && npages >= 0 && vpn % gp === 0 && npages % gp === 0)) {
      fail("EINVAL", `input range ${vpn} +${npages} is not whole ${gp * 4} KiB granules`);
    }
    if (vpn + npages > this.inputPages) fail("EINVAL", `input range ${vpn} +${npages} beyond ${this.format.inputBits} bits`);
  }
}

function fillPerms(m: Int32Array, t: PermRules, l: PermRules): void {
  for (const [base, r] of [[0, t], [4, l]] as const) {
    for (let k = 0; k < 4; k++) {
      const g = r.grant[k];
      const d = r.deny[k];
      assert((g.lo & (g.lo - 1)) === 0 && (g.hi & (g.hi - 1)) === 0 && (g.lo === 0 || g.hi === 0), "grant: one bit");
      m[base] |= g.lo;
      m[base + 1] |= g.hi;
      m[base + 2] |= d.lo;
      m[base + 3] |= d.hi;
      const o = 8 + 4 * k + (base === 0 ? 0 : 2);
      m[o] |= g.lo | d.lo;
      m[o + 1] |= g.hi | d.hi;
    }
    assert((m[base] & m[base + 2]) === 0 && (m[base + 1] & m[base + 3]) === 0, "grant and deny bits overlap");
  }
}
