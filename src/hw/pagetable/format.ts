/**
 * Page-table formats as data: what the one engine (engine.ts) needs to build, walk and edit the
 * tables of VT-d second-stage, VT-d first-stage (x86-64 paging), and Arm VMSAv8-64 stage 1 and
 * stage 2. A format says how many levels there are and what each resolves, which levels may hold
 * leaves, and where in a 64-bit descriptor the valid bit, the table/leaf type, the output address,
 * the permissions, the accessed flag and the dirty state live.
 *
 * Every 64-bit descriptor is handled as two 32-bit words: `lo` (bits 31:0) and `hi` (bits 63:32).
 * A Bits64 is a mask or value in that form; `hi` bit k is descriptor bit 32+k. Masks are kept as
 * int32 (what JavaScript's bit operators yield), so bit 63 is hi = 1 << 31 = -0x80000000.
 *
 * Written from the public specifications (Intel VT-d 3.x/4.x chapter 9 and the SDM's 4-/5-level
 * paging; Arm ARM D8 "The AArch64 Virtual Memory System Architecture").
 */
import { assert } from "../../errno.js";

// ---- what a caller asks a mapping to allow (map's prot) -------------------------------------------

/** Reads allowed. */
export const PT_READ = 1;
/** Writes allowed. */
export const PT_WRITE = 2;
/** Instruction fetches (execute requests) allowed. */
export const PT_EXEC = 4;
/** Unprivileged requests allowed (x86 U/S=1; Arm stage-1 AP[1]=1, EL0). */
export const PT_USER = 8;
/** Coherent, cacheable memory (VT-d SNP; Arm write-back cacheable, inner shareable). */
export const PT_CACHE = 16;
/** Device memory (x86 PCD|PWT; Arm Device-nGnRE). */
export const PT_MMIO = 32;
/** Write the leaf with its accessed flag already set (VT-d A, x86 A, Arm AF). */
export const PT_ACCESSED = 64;
/** Write the leaf already dirty (D set; with Arm DBM, writable-dirty instead of writable-clean). */
export const PT_DIRTY = 128;

// ---- what a request needs; also a translation's permissions ---------------------------------------

export const ACC_READ = 1;
export const ACC_WRITE = 2;
export const ACC_EXEC = 4;
/** The request is unprivileged (user / EL0 / supervisor-request-disabled). */
export const ACC_USER = 8;
export const PERM_ALL = 15;

// ---- fault kinds ------------------------------------------------------------------------------------

export const FAULT_NONE = 0;
/** An entry on the path is not present / invalid. */
export const FAULT_TRANSLATION = 1;
/** The input address is beyond the format's input size (or an output beyond the address field). */
export const FAULT_ADDRESS_SIZE = 2;
/** A reserved encoding: a leaf at a level that may not hold one (VT-d, x86). */
export const FAULT_RESERVED = 3;
/** Arm: a leaf with AF=0 while hardware access-flag update is off. */
export const FAULT_ACCESS_FLAG = 4;
/** The leaf (or a table above it) does not grant the access. */
export const FAULT_PERMISSION = 5;

export const FAULT_NAMES = ["none", "translation", "address-size", "reserved", "access-flag", "permission"] as const;

// ---- descriptions --------------------------------------------------------------------------------------

/** A 64-bit value or mask as two 32-bit words. */
export interface Bits64 {
  readonly lo: number;
  readonly hi: number;
}

export const NONE: Bits64 = { lo: 0, hi: 0 };

/** Bit n of a descriptor (0..63). */
export function bit(n: number): Bits64 {
  if (!(Number.isInteger(n) && n >= 0 && n < 64)) assert(false, `bit ${n}`);
  return n < 32 ? { lo: 1 << n, hi: 0 } : { lo: 0, hi: 1 << (n - 32) };
}

/** value placed at bits [shift, shift+width) (value < 2^width, field within one word). */
export function field(value: number, shift: number): Bits64 {
  return shift < 32 ? { lo: value << shift, hi: 0 } : { lo: 0, hi: value << (shift - 32) };
}

/** Bits hi..lo inclusive (a contiguous mask). */
export function bitRange(hiBit: number, loBit: number): Bits64 {
  let r: Bits64 = NONE;
  for (let n = loBit; n <= hiBit; n++) r = or(r, bit(n));
  return r;
}

export function or(...xs: Bits64[]): Bits64 {
  let lo = 0;
  let hi = 0;
  for (const x of xs) {
    lo |= x.lo;
    hi |= x.hi;
  }
  return { lo, hi };
}

/** One level of the tree, top level first in a format's `levels`. */
export interface LevelDesc {
  /** The specification's number for the level (VT-d: 5..1, 1 = 4 KiB PTEs; Arm: 0..3). */
  readonly number: number;
  /** The specification's name for entries at this level (e.g. "SS-PDE", "L2"). */
  readonly name: string;
  /** Lowest input-address bit this level's index resolves (= log2 of what one entry maps). */
  readonly shift: number;
  /** Index bits: a table at this level holds 2^bits entries. */
  readonly bits: number;
  /** 4 KiB frames per table at this level (granule; stage-2 concatenated start tables). */
  readonly frames: number;
  /** Whether an entry here may be a leaf (large page / block / page). */
  readonly leaf: boolean;
}

/** For each permission (index: 0 read, 1 write, 2 exec, 3 user) the bits that grant or deny it. */
export interface PermRules {
  /** The permission needs these bits set (if any is given: any of them set). */
  readonly grant: readonly [Bits64, Bits64, Bits64, Bits64];
  /** Any of these bits set removes the permission. */
  readonly deny: readonly [Bits64, Bits64, Bits64, Bits64];
}

/** Bits a leaf gets when the map's prot has `prot` (set) or lacks it (clear). */
export interface ProtRule {
  readonly prot: number;
  readonly set: Bits64;
  readonly clear: Bits64;
}

export type FormatKind = "vtd-ss" | "vtd-fs" | "arm-s1" | "arm-s2";

export interface PageTableFormat {
  readonly name: string;
  readonly kind: FormatKind;
  /** log2 of the translation granule (smallest page): 12, 14 or 16. */
  readonly granuleShift: number;
  /** Input address size in bits (IOVA / VA / IPA). */
  readonly inputBits: number;
  /** Output addresses must be below 2^outputBits. */
  readonly outputBits: number;
  /** Output-address field: bits granuleShift .. addrBits-1 of a descriptor. */
  readonly addrBits: number;
  /** Top level first. */
  readonly levels: readonly LevelDesc[];

  /** An entry is present iff (lo & valid) != 0. */
  readonly valid: number;
  /** Above the last level: (lo & typeMask) === blockType makes the entry a leaf, else a table. */
  readonly typeMask: number;
  readonly blockType: number;
  /** At the last level: (lo & pageTypeMask) must equal pageType, else the entry is invalid. */
  readonly pageTypeMask: number;
  readonly pageType: number;
  /** Type bits written in a leaf above the last level (PS=1; Arm block: valid with bit 1 clear). */
  readonly blockBits: Bits64;
  /** Type bits written in a leaf at the last level (Arm page: bits 1:0 = 0b11). */
  readonly pageBits: Bits64;
  /** Bits software writes in a table entry besides the next table's address. */
  readonly tableBits: Bits64;
  /** Leaf bits kept when a large leaf is split (all but the address and type bits). */
  readonly leafAttrs: Bits64;

  /** Bits every leaf gets, then the prot rules. */
  readonly leafAlways: Bits64;
  readonly protRules: readonly ProtRule[];
  /** Permission bits in table entries (apply to everything below) and in leaves. */
  readonly tablePerms: PermRules;
  readonly leafPerms: PermRules;

  /** Accessed flag: the bit in table entries (0: none), in leaves, and whether a clear one faults. */
  readonly accessedTable: number;
  readonly accessedLeaf: number;
  readonly accessFlagFault: boolean;
  /**
   * Dirty state of a leaf. Dirty means (bits in `set` all set) and (bits in `clear` all clear); the
   * hardware makes a leaf dirty by setting `set` and clearing `clear`. `dbm` (Arm DBM): only leaves
   * with it are dirty-tracked, and the hardware may write a writable-clean one (making it dirty).
   */
  readonly dirtySet: Bits64;
  readonly dirtyClear: Bits64;
  readonly dbm: Bits64;
  /** The fault a leaf at a level without leaves raises. */
  readonly badLeafFault: number;
  /** Whether the hardware updates accessed / dirty flags unless told otherwise (x86 paging: always). */
  readonly hwAccessedDefault: boolean;
  readonly hwDirtyDefault: boolean;
}

function perms(r: Bits64, w: Bits64, x: Bits64, u: Bits64): readonly [Bits64, Bits64, Bits64, Bits64] {
  return [r, w, x, u];
}

const NO_PERMS: PermRules = { grant: perms(NONE, NONE, NONE, NONE), deny: perms(NONE, NONE, NONE, NONE) };

function checkFormat(f: PageTableFormat): PageTableFormat {
  if (!(f.levels.length >= 1 && f.levels.length <= 5)) assert(false, `${f.name}: levels`);
  let seenLeaf = false;
  for (let i = f.levels.length - 1; i >= 0; i--) {
    const l = f.levels[i];
    if (i === f.levels.length - 1) {
      if (!(l.leaf && l.shift === f.granuleShift)) assert(false, `${f.name}: last level maps one granule`);
    } else if (!(l.shift === f.levels[i + 1].shift + f.levels[i + 1].bits)) assert(false, `${f.name}: level ${l.name} shift`);
    // Leaf levels run contiguously up from the bottom, so a split always has a leaf level below.
    if (!l.leaf) seenLeaf = true;
    else if (seenLeaf) assert(false, `${f.name}: leaf level ${l.name} above a level without leaves`);
    if (!(l.shift <= 30 || !l.leaf)) assert(false, `${f.name}: leaves larger than 1 GiB are not modelled`);
    if (!(l.frames * 4096 >= 8 << l.bits)) assert(false, `${f.name}: ${l.name} table does not fit its frames`);
  }
  const top = f.levels[0];
  if (!(top.shift + top.bits === f.inputBits)) assert(false, `${f.name}: input bits`);
  if (!(f.outputBits <= f.addrBits && f.addrBits <= 52)) assert(false, `${f.name}: output bits`);
  return Object.freeze(f);
}

// ---- Intel VT-d -----------------------------------------------------------------------------------------

export interface VtdSecondStageOptions {
  /** Adjusted guest address width: 39 (3-level), 48 (4-level) or 57 (5-level). Default 48. */
  addressWidth?: 39 | 48 | 57;
  /** CAP.SLLPS: 2 MiB and 1 GiB leaves (default both). */
  largePages2M?: boolean;
  largePages1G?: boolean;
  /** Host address width (MGAW / HAW), default 52. */
  outputBits?: number;
}

const VTD_SS_NAMES = ["", "SS-PTE", "SS-PDE", "SS-PDPE", "SS-PML4E", "SS-PML5E"];
const VTD_FS_NAMES = ["", "FS-PTE", "FS-PDE", "FS-PDPE", "FS-PML4E", "FS-PML5E"];

function vtdLevels(n: number, names: string[], leaf2M: boolean, leaf1G: boolean): LevelDesc[] {
  const out: LevelDesc[] = [];
  for (let k = n; k >= 1; k--) {
    out.push({ number: k, name: names[k], shift: 12 + 9 * (k - 1), bits: 9, frames: 1, leaf: k === 1 || (k === 2 && leaf2M) || (k === 3 && leaf1G) });
  }
  return out;
}

/**
 * VT-d second-stage paging entry (spec 9.8): R 0, W 1, X 2, EMT 5:3, IPAT 6, PS 7 (large page above
 * level 1), A 8, D 9 (leaf; A/D updated only with SSADE), SNP 11, ADDR 12..HAW-1. Present iff R or W.
 * R/W/X in table entries limit everything below them.
 */
export function vtdSecondStage(opts: VtdSecondStageOptions = {}): PageTableFormat {
  const aw = opts.addressWidth ?? 48;
  if (!(aw === 39 || aw === 48 || aw === 57)) assert(false, `VT-d AW ${aw}`);
  const n = (aw - 12) / 9;
  const rwx = perms(bit(0), bit(1), bit(2), NONE);
  const rules: PermRules = { grant: rwx, deny: perms(NONE, NONE, NONE, NONE) };
  return checkFormat({
    name: `vtd-ss-${n}level`,
    kind: "vtd-ss",
    granuleShift: 12,
    inputBits: aw,
    outputBits: opts.outputBits ?? 52,
    addrBits: 52,
    levels: vtdLevels(n, VTD_SS_NAMES, opts.largePages2M ?? true, opts.largePages1G ?? true),
    valid: 0b11,
    typeMask: 0x80,
    blockType: 0x80,
    pageTypeMask: 0,
    pageType: 0,
    blockBits: bit(7),
    pageBits: NONE,
    tableBits: or(bit(0), bit(1)),
    // Bits 11:0 but PS, and the ignored bits 63:52.
    leafAttrs: { lo: 0xf7f, hi: 0xfff00000 | 0 },
    leafAlways: NONE,
    protRules: [
      { prot: PT_READ, set: bit(0), clear: NONE },
      { prot: PT_WRITE, set: bit(1), clear: NONE },
      { prot: PT_EXEC, set: bit(2), clear: NONE },
      { prot: PT_CACHE, set: bit(11), clear: NONE },
      { prot: PT_ACCESSED, set: bit(8), clear: NONE },
      { prot: PT_DIRTY, set: bit(9), clear: NONE },
    ],
    tablePerms: rules,
    leafPerms: rules,
    accessedTable: 1 << 8,
    accessedLeaf: 1 << 8,
    accessFlagFault: false,
    dirtySet: bit(9),
    dirtyClear: NONE,
    dbm: NONE,
    badLeafFault: FAULT_RESERVED,
    hwAccessedDefault: false,
    hwDirtyDefault: false,
  });
}

export interface VtdFirstStageOptions {
  /** 4-level (48-bit, FSPM 0) or 5-level (57-bit, FSPM 1) paging. Default 4. */
  levels?: 4 | 5;
  /** CAP.FS1GP: 1 GiB pages (default true); 2 MiB pages are always supported. */
  largePages1G?: boolean;
  /** Host address width, default 52. */
  outputBits?: number;
}

/**
 * VT-d first-stage = x86-64 4-/5-level paging: P 0, R/W 1, U/S 2, PWT 3, PCD 4, A 5, D 6 (leaf),
 * PS 7 (PDPE/PDE; PAT in a PTE), G 8, EA 10, ADDR 12..51, XD 63. R/W and U/S in every entry on the
 * path must allow the access; XD anywhere forbids execution. The hardware always sets A (every
 * entry used) and D (the leaf, on a write).
 */
export function vtdFirstStage(opts: VtdFirstStageOptions = {}): PageTableFormat {
  const n = opts.levels ?? 4;
  if (!(n === 4 || n === 5)) assert(false, `first-stage levels ${n}`);
  const rules: PermRules = { grant: perms(bit(0), bit(1), NONE, bit(2)), deny: perms(NONE, NONE, bit(63), NONE) };
  return checkFormat({
    name: `vtd-fs-${n}level`,
    kind: "vtd-fs",
    granuleShift: 12,
    inputBits: 12 + 9 * n,
    outputBits: opts.outputBits ?? 52,
    addrBits: 52,
    levels: vtdLevels(n, VTD_FS_NAMES, true, opts.largePages1G ?? true),
    valid: 1,
    typeMask: 0x80,
    blockType: 0x80,
    pageTypeMask: 0,
    pageType: 0,
    blockBits: bit(7),
    pageBits: NONE,
    // What Linux writes in a first-stage table entry: P, R/W, U/S and A.
    tableBits: or(bit(0), bit(1), bit(2), bit(5)),
    leafAttrs: { lo: 0xf7f, hi: 0xfff00000 | 0 },
    leafAlways: bit(0),
    protRules: [
      { prot: PT_WRITE, set: bit(1), clear: NONE },
      { prot: PT_USER, set: bit(2), clear: NONE },
      { prot: PT_MMIO, set: or(bit(3), bit(4)), clear: NONE },
      { prot: PT_EXEC, set: NONE, clear: bit(63) },
      { prot: PT_ACCESSED, set: bit(5), clear: NONE },
      { prot: PT_DIRTY, set: bit(6), clear: NONE },
    ],
    tablePerms: rules,
    leafPerms: rules,
    accessedTable: 1 << 5,
    accessedLeaf: 1 << 5,
    accessFlagFault: false,
    dirtySet: bit(6),
    dirtyClear: NONE,
    dbm: NONE,
    badLeafFault: FAULT_RESERVED,
    hwAccessedDefault: true,
    hwDirtyDefault: true,
  });
}

// ---- Arm VMSAv8-64 ------------------------------------------------------------------------------------

export interface ArmOptions {
  /** Translation granule in bytes: 4096 (default), 16384 or 65536. */
  granule?: 4096 | 16384 | 65536;
  /** Input size in bits (VA for stage 1 = 64 - T0SZ; IPA for stage 2). Default 48. */
  inputBits?: number;
  /** Output address size (IPS / PS), at most 48 (52-bit LPA/LPA2 is not modelled). Default 48. */
  outputBits?: number;
  /** Stage 2: start level (SL0). Default: Linux's choice (concatenate up to 16 tables at level 1). */
  startLevel?: number;
  /**
   * Stage 1: the MAIR indices (AttrIndx) written for PT_CACHE (normal write-back), PT_MMIO (device
   * nGnRE) and neither (normal non-cacheable). Default io-pgtable-arm's {1, 2, 0}; a CPU's tables
   * use the kernel's MAIR_EL1 layout instead (guest/process.ts).
   */
  attrIndex?: { normal: number; device: number; nonCacheable: number };
}

function armLevels(kind: "arm-s1" | "arm-s2", opts: ArmOptions): LevelDesc[] {
  const granule = opts.granule ?? 4096;
  const g = Math.log2(granule);
  if (!(g === 12 || g === 14 || g === 16)) assert(false, `granule ${granule}`);
  const ia = opts.inputBits ?? 48;
  const bpl = g - 3;
  if (!(Number.isInteger(ia) && ia >= 25 && ia <= 48)) assert(false, `input size ${ia}`);
  let levels = Math.ceil((ia - g) / bpl);
  let start = 4 - levels;
  if (kind === "arm-s2") {
    const topBits = ia - (g + (levels - 1) * bpl);
    if (opts.startLevel !== undefined) {
      if (!(opts.startLevel >= start && opts.startLevel <= 3)) assert(false, `start level ${opts.startLevel}`);
      levels = 4 - opts.startLevel;
      start = opts.startLevel;
    } else if (start === 0 && 1 << topBits <= 16) {
      // Linux io-pgtable-arm: concatenate the level-0 entries' tables at level 1 when at most 16.
      levels--;
      start = 1;
    }
    assert(ia - (g + (levels - 1) * bpl) <= bpl + 4, "stage 2 concatenates at most 16 tables");
  }
  const out: LevelDesc[] = [];
  for (let lv = start; lv <= 3; lv++) {
    const shift = g + (3 - lv) * bpl;
    const bits = lv === start ? ia - shift : bpl;
    // Blocks: 4 KiB granule at levels 1 and 2; 16 KiB and 64 KiB granules at level 2 only
    // (level-0/1 blocks need the 52-bit LPA/LPA2 extensions, not modelled).
    const leaf = lv === 3 || lv === 2 || (lv === 1 && g === 12);
    out.push({ number: lv, name: `L${lv}`, shift, bits, frames: Math.max(1, Math.ceil((8 << bits) / 4096)), leaf });
  }
  return out;
}

/**
 * Arm VMSAv8-64 stage-1 descriptors. Table: bits 1:0 = 0b11, next-level address 47:g, PXNTable 59,
 * UXNTable 60, APTable 62:61, NSTable 63. Block (bits 1:0 = 0b01) / page (0b11 at level 3):
 * AttrIndx 4:2, NS 5, AP[2:1] 7:6 (AP[1] EL0 access, AP[2] read-only), SH 9:8, AF 10, nG 11,
 * OA 47:blocksize, DBM 51, Contiguous 52, PXN 53, UXN 54. Written as Linux's io-pgtable-arm does:
 * nG always; MAIR index 1 (write-back) with inner-shareable for PT_CACHE, 2 (device) for PT_MMIO,
 * else 0 (non-cacheable) outer-shareable (other indices: ArmOptions.attrIndex).
 */
export function armStage1(opts: ArmOptions = {}): PageTableFormat {
  return armFormat("arm-s1", opts);
}

/**
 * Arm VMSAv8-64 stage-2 descriptors: table as stage 1 without hierarchical attributes; block/page:
 * MemAttr 5:2, S2AP 7:6 (bit 6 read, bit 7 write), SH 9:8, AF 10, OA, DBM 51, Contiguous 52,
 * XN 54:53. The start level's table may be several concatenated tables.
 */
export function armStage2(opts: ArmOptions = {}): PageTableFormat {
  return armFormat("arm-s2", opts);
}

function armFormat(kind: "arm-s1" | "arm-s2", opts: ArmOptions): PageTableFormat {
  const levels = armLevels(kind, opts);
  const g = Math.log2(opts.granule ?? 4096);
  const s1 = kind === "arm-s1";
  const ai = opts.attrIndex ?? { normal: 1, device: 2, nonCacheable: 0 };
  if (!(ai.normal >= 0 && ai.normal < 8 && ai.device >= 0 && ai.device < 8 && ai.nonCacheable >= 0 && ai.nonCacheable < 8)) assert(false, "AttrIndx is 3 bits");
  const cacheSh: ProtRule = { prot: PT_CACHE, set: field(3, 8), clear: field(2, 8) }; // SH inner / outer shareable
  const protRules: ProtRule[] = s1
    ? [
        cacheSh,
        { prot: PT_CACHE, set: field(ai.normal, 2), clear: NONE }, // AttrIndx: normal write-back
        { prot: PT_MMIO, set: field(ai.device, 2), clear: NONE }, // AttrIndx: device nGnRE
        { prot: PT_CACHE | PT_MMIO, set: NONE, clear: field(ai.nonCacheable, 2) }, // AttrIndx: normal non-cacheable
        { prot: PT_USER, set: bit(6), clear: NONE }, // AP[1]
        { prot: PT_WRITE, set: NONE, clear: bit(7) }, // AP[2] read-only
        { prot: PT_EXEC, set: NONE, clear: or(bit(53), bit(54)) }, // PXN | UXN
        { prot: PT_ACCESSED, set: bit(10), clear: NONE },
      ]
    : [
        cacheSh,
        { prot: PT_CACHE, set: field(0xf, 2), clear: NONE }, // MemAttr: normal, outer+inner write-back
        { prot: PT_MMIO, set: field(0x1, 2), clear: NONE }, // MemAttr: device nGnRE
        { prot: PT_CACHE | PT_MMIO, set: NONE, clear: field(0x5, 2) }, // MemAttr: normal non-cacheable
        { prot: PT_READ, set: bit(6), clear: NONE }, // S2AP[0]
        { prot: PT_WRITE, set: bit(7), clear: NONE }, // S2AP[1]
        { prot: PT_EXEC, set: NONE, clear: bit(54) }, // XN[1]
        { prot: PT_ACCESSED, set: bit(10), clear: NONE },
      ];
  const tablePerms: PermRules = s1
    ? // APTable[1] (62) forbids writes, APTable[0] (61) EL0 access, UXN/PXNTable (60/59) execution.
      { grant: perms(NONE, NONE, NONE, NONE), deny: perms(NONE, bit(62), or(bit(59), bit(60)), bit(61)) }
    : NO_PERMS;
  const leafPerms: PermRules = s1
    ? { grant: perms(NONE, NONE, NONE, bit(6)), deny: perms(NONE, bit(7), or(bit(53), bit(54)), NONE) }
    : { grant: perms(bit(6), bit(7), NONE, NONE), deny: perms(NONE, NONE, bit(54), NONE) };
  const name = `arm-${s1 ? "s1" : "s2"}-${(opts.granule ?? 4096) / 1024}k-${opts.inputBits ?? 48}bit-${levels.length}level`;
  return checkFormat({
    name,
    kind,
    granuleShift: g,
    inputBits: opts.inputBits ?? 48,
    outputBits: opts.outputBits ?? 48,
    addrBits: 48,
    levels,
    valid: 1,
    typeMask: 2,
    blockType: 0,
    pageTypeMask: 2,
    pageType: 2,
    blockBits: bit(0),
    pageBits: or(bit(0), bit(1)),
    tableBits: or(bit(0), bit(1)),
    // Lower attributes 11:2 and upper attributes 63:50 without Contiguous (52), a hint a split breaks.
    leafAttrs: { lo: 0xffc, hi: (0xfffc0000 & ~(1 << 20)) | 0 },
    leafAlways: s1 ? bit(11) : NONE,
    protRules,
    tablePerms,
    leafPerms,
    accessedTable: 0,
    accessedLeaf: 1 << 10,
    accessFlagFault: true,
    // Stage 1 dirty = AP[2] clear; stage 2 dirty = S2AP[1] set; tracked only with DBM (bit 51).
    dirtySet: s1 ? NONE : bit(7),
    dirtyClear: s1 ? bit(7) : NONE,
    dbm: bit(51),
    badLeafFault: FAULT_TRANSLATION,
    hwAccessedDefault: false,
    hwDirtyDefault: false,
  });
}

/** A readable label for the bits of an entry (tests, visualizer). */
export function hex64(lo: number, hi: number): string {
  return "0x" + (hi >>> 0).toString(16).padStart(8, "0") + (lo >>> 0).toString(16).padStart(8, "0");
}
