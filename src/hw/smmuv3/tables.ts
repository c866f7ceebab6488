/**
 * Arm SMMUv3 configuration structures as drivers and guests write them into memory: the stream
 * table entry (STE), the 2-level stream table descriptor, the context descriptor (CD) and the CD
 * table L1 descriptor, with the index arithmetic that selects them. Data formats only.
 *
 * Bit positions are absolute within each structure (64 = bit 0 of the second 64-bit word).
 * Pointer fields decode to byte addresses.
 */
import { addr, bit, bits, defineLayout, type Value } from "../bitlayout.js";

/** STE.Config values. 0b000-0b011 all abort; the kernel only writes 0. */
export const SteConfig = {
  ABORT: 0,
  BYPASS: 4,
  S1_TRANS: 5,
  S2_TRANS: 6,
  NESTED: 7,
} as const;

/** STE.S1Fmt: the CD table format. */
export const S1Fmt = {
  /** A linear table of 2^S1CDMax CDs. */
  LINEAR: 0,
  /** Two levels, 4 KiB leaf tables (64 CDs each). */
  L2_4K: 1,
  /** Two levels, 64 KiB leaf tables (1024 CDs each). */
  L2_64K: 2,
} as const;

/** STE.S1DSS: what a transaction without a SubstreamID gets when S1 uses CD tables. */
export const S1Dss = { TERMINATE: 0, BYPASS: 1, SSID0: 2 } as const;

/** STE.EATS: ATS handling. */
export const Eats = { ABORT: 0, TRANS: 1, S1CHK: 2 } as const;

/** STE.STRW: the StreamWorld. */
export const Strw = { NSEL1: 0, EL2: 2 } as const;

/** Cacheability encodings (S1CIR/S1COR, CD IR0/OR0, STE S2IR0/S2OR0). */
export const CacheAttr = { NC: 0, WBRA: 1, WT: 2, WB: 3 } as const;
/** Shareability encodings. */
export const Shareability = { NSH: 0, OSH: 2, ISH: 3 } as const;

/** Stream table entry (64 bytes). */
export const Ste = defineLayout("smmu-ste", 64, {
  // dword 0
  /** Valid. */
  v: bit(0),
  /** Config (SteConfig). */
  config: bits(3, 1),
  /** CD table format (S1Fmt). */
  s1fmt: bits(5, 4),
  /** Address of the CD table (or the single CD); 64-byte aligned. */
  s1ContextPtr: addr(51, 6),
  /** log2 of the number of CDs (0 = one CD, substreams disabled). */
  s1cdmax: bits(63, 59),
  // dword 1
  /** Default substream behaviour (S1Dss). */
  s1dss: bits(65, 64),
  /** CD table fetch inner cacheability. */
  s1cir: bits(67, 66),
  /** CD table fetch outer cacheability. */
  s1cor: bits(69, 68),
  /** CD table fetch shareability. */
  s1csh: bits(71, 70),
  /** Stage-2 hardware use of descriptor bits 59-62 (one bit each). */
  s2hwu: bits(75, 72),
  /** Destructive read enable. */
  dre: bit(76),
  /** Contiguous hint. */
  cont: bits(80, 77),
  /** Directed cache prefetch. */
  dcp: bit(81),
  /** PRG response PASID required. */
  ppar: bit(82),
  /** Merge events arising from terminated transactions. */
  mev: bit(83),
  /** Stage-2 forced write-back. */
  s2fwb: bit(89),
  /** Stall disable for stage-1 faults. */
  s1stalld: bit(91),
  /** ATS enable (Eats). */
  eats: bits(93, 92),
  /** StreamWorld (Strw). */
  strw: bits(95, 94),
  /** Memory attribute override value. */
  memattr: bits(99, 96),
  /** Memory type override enable. */
  mtcfg: bit(100),
  /** Allocation hints override. */
  alloccfg: bits(104, 101),
  /** Shareability override (1 = use incoming). */
  shcfg: bits(109, 108),
  nscfg: bits(111, 110),
  privcfg: bits(113, 112),
  instcfg: bits(115, 114),
  // dword 2
  /** Virtual machine identifier. */
  s2vmid: bits(143, 128),
  /** Stage-2 input size: IPA space is 2^(64 - s2t0sz). */
  s2t0sz: bits(165, 160),
  /** Stage-2 starting level. */
  s2sl0: bits(167, 166),
  s2ir0: bits(169, 168),
  s2or0: bits(171, 170),
  s2sh0: bits(173, 172),
  /** Stage-2 granule: 0 = 4 KiB, 1 = 64 KiB, 2 = 16 KiB. */
  s2tg: bits(175, 174),
  /** Stage-2 output (physical) address size, IDR5.OAS encoding. */
  s2ps: bits(178, 176),
  /** Stage-2 translation tables are AArch64. */
  s2aa64: bit(179),
  /** Stage-2 table endianness (1 = big endian). */
  s2endi: bit(180),
  /** Stage-2 access flag fault disable. */
  s2affd: bit(181),
  /** Stage-2 protected table walk. */
  s2ptw: bit(182),
  /** Stage-2 hardware dirty-state update. */
  s2hd: bit(183),
  /** Stage-2 hardware access-flag update. */
  s2ha: bit(184),
  /** Stage-2 fault behaviour: stall. */
  s2s: bit(185),
  /** Stage-2 fault behaviour: record. */
  s2r: bit(186),
  // dword 3
  /** Stage-2 translation table base (16-byte aligned). */
  s2ttb: addr(243, 196),
});
export type Ste = Value<typeof Ste.fields>;

/** Level-1 stream table descriptor (8 bytes). */
export const L1Std = defineLayout("smmu-l1-std", 8, {
  /** Span: the L2 table holds 2^(span-1) STEs; 0 = invalid. */
  span: bits(4, 0),
  /** Address of the L2 stream table. */
  l2ptr: addr(51, 6),
});
export type L1Std = Value<typeof L1Std.fields>;

/** CD translation granule (TG0) encoding. */
export const Tg0 = { G4K: 0, G64K: 1, G16K: 2 } as const;

/** Context descriptor (64 bytes). */
export const Cd = defineLayout("smmu-cd", 64, {
  // dword 0
  /** Input size of TTB0's region: 2^(64 - t0sz). */
  t0sz: bits(5, 0),
  /** TTB0 granule (Tg0). */
  tg0: bits(7, 6),
  ir0: bits(9, 8),
  or0: bits(11, 10),
  sh0: bits(13, 12),
  /** Disable walks through TTB0. */
  epd0: bit(14),
  /** Table endianness (1 = big endian). */
  endi: bit(15),
  t1sz: bits(21, 16),
  /** TTB1 granule: 1 = 16 KiB, 2 = 4 KiB, 3 = 64 KiB. */
  tg1: bits(23, 22),
  ir1: bits(25, 24),
  or1: bits(27, 26),
  sh1: bits(29, 28),
  /** Disable walks through TTB1. */
  epd1: bit(30),
  /** Valid. */
  v: bit(31),
  /** Intermediate (output) physical address size. */
  ips: bits(34, 32),
  /** Access flag fault disable. */
  affd: bit(35),
  /** Write-implies-execute-never. */
  wxn: bit(36),
  /** Unprivileged write-implies-execute-never. */
  uwxn: bit(37),
  /** Top byte ignore for TTB0's region. */
  tbi0: bit(38),
  /** Top byte ignore for TTB1's region. */
  tbi1: bit(39),
  /** Privileged access never. */
  pan: bit(40),
  /** Translation tables are AArch64. */
  aa64: bit(41),
  /** Hardware dirty-state update. */
  hd: bit(42),
  /** Hardware access-flag update. */
  ha: bit(43),
  /** Stall fault behaviour. */
  s: bit(44),
  /** Record faults. */
  r: bit(45),
  /** Abort (rather than RAZ/WI) on terminated transactions. */
  a: bit(46),
  /** ASID set: 1 = this ASID is not shared with PE TLB invalidation (broadcast ignored). */
  aset: bit(47),
  /** Address space identifier. */
  asid: bits(63, 48),
  // dword 1
  nscfg0: bit(64),
  /** Hierarchical attribute disable for TTB0's tables. */
  had0: bit(65),
  /** Translation table base 0 (16-byte aligned). */
  ttb0: addr(115, 68),
  /** Hardware use of descriptor bits 59-62 for TTB0's tables. */
  hwu0: bits(126, 123),
  // dword 2
  nscfg1: bit(128),
  had1: bit(129),
  /** Translation table base 1. */
  ttb1: addr(179, 132),
  hwu1: bits(190, 187),
  // dword 3
  /** MAIR bits 31:0 (MAIR0). */
  mair0: bits(223, 192),
  /** MAIR bits 63:32 (MAIR1). */
  mair1: bits(255, 224),
  // dword 4
  amair0: bits(287, 256),
  amair1: bits(319, 288),
  // dword 5: IMPLEMENTATION DEFINED
  impdef0: bits(351, 320),
  impdef1: bits(383, 352),
});
export type Cd = Value<typeof Cd.fields>;

/** CD table level-1 descriptor (8 bytes). */
export const L1Cd = defineLayout("smmu-l1-cd", 8, {
  v: bit(0),
  /** Address of the L2 CD table (4 KiB aligned). */
  l2ptr: addr(51, 12),
});
export type L1Cd = Value<typeof L1Cd.fields>;

// ---------------------------------------------------------------------------------------------
// Index helpers.

export const STE_BYTES = 64;
export const CD_BYTES = 64;
export const L1_DESC_BYTES = 8;

/** Byte offset of `sid`'s STE in a linear stream table. */
export function steOffset(sid: number): number {
  return sid * STE_BYTES;
}

/** Two-level stream table, STRTAB_BASE_CFG.SPLIT = `split`: the L1 descriptor index. */
export function steL1Index(sid: number, splitBits: number): number {
  return Math.floor(sid / 2 ** splitBits);
}

/** Two-level stream table: the STE index within its L2 table. */
export function steL2Index(sid: number, splitBits: number): number {
  return sid % 2 ** splitBits;
}

/** STEs in an L2 stream table whose L1 descriptor has Span `span` (0 = invalid). */
export function spanEntries(span: number): number {
  return span === 0 ? 0 : 2 ** (span - 1);
}

/** The Span value covering 2^splitBits STEs. */
export function spanFor(splitBits: number): number {
  return splitBits + 1;
}

/** CDs in a CD table of S1CDMax `s1cdmax`. */
export function cdTableEntries(s1cdmax: number): number {
  return 2 ** s1cdmax;
}

/** CDs per leaf table for a two-level S1Fmt (0 for linear). */
export function cdLeafEntries(s1fmt: number): number {
  return s1fmt === S1Fmt.L2_4K ? 64 : s1fmt === S1Fmt.L2_64K ? 1024 : 0;
}

/** Two-level CD table: the L1 descriptor index of `ssid`. */
export function cdL1Index(ssid: number, s1fmt: number): number {
  const n = cdLeafEntries(s1fmt);
  return n === 0 ? 0 : Math.floor(ssid / n);
}

/** The CD index within its table: the leaf index for two-level formats, `ssid` for linear. */
export function cdL2Index(ssid: number, s1fmt: number): number {
  const n = cdLeafEntries(s1fmt);
  return n === 0 ? ssid : ssid % n;
}

/** Does `ssid` fall inside a CD table of S1CDMax `s1cdmax`? */
export function ssidWithinCdTable(ssid: number, s1cdmax: number): boolean {
  return ssid >= 0 && ssid < cdTableEntries(s1cdmax);
}
