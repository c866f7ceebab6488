/**
 * Intel VT-d translation-structure entries as drivers and guests write them into memory:
 * root and context entries (legacy and scalable mode), PASID directory and PASID table entries,
 * and the index arithmetic that selects them. Data formats only.
 *
 * Bit positions are absolute within each entry (64 = bit 0 of the second 64-bit word).
 * Pointer fields decode to byte addresses (4 KiB aligned).
 */
import { addr, bit, bits, defineLayout, type Value } from "../bitlayout.js";

// ---------------------------------------------------------------------------------------------
// Root table: 256 root entries (one per bus), 16 bytes each, 4 KiB.

/** Legacy-mode root entry (128 bits). */
export const LegacyRootEntry = defineLayout("vtd-root-entry", 16, {
  /** Present. */
  p: bit(0),
  /** Context-table pointer (4 KiB aligned). */
  ctp: addr(63, 12),
});
export type LegacyRootEntry = Value<typeof LegacyRootEntry.fields>;

/** Scalable-mode root entry (128 bits): one context table for devfn 0-127, one for 128-255. */
export const SmRootEntry = defineLayout("vtd-sm-root-entry", 16, {
  /** Lower present (devfn 0-127). */
  lp: bit(0),
  /** Lower context-table pointer. */
  lctp: addr(63, 12),
  /** Upper present (devfn 128-255). */
  up: bit(64),
  /** Upper context-table pointer. */
  uctp: addr(127, 76),
});
export type SmRootEntry = Value<typeof SmRootEntry.fields>;

// ---------------------------------------------------------------------------------------------
// Context entries.

/** Legacy context entry translation types (TT). */
export const ContextTT = {
  /** Untranslated requests use second-stage tables; translation requests blocked. */
  MULTI_LEVEL: 0,
  /** As 0, and device-TLB (ATS) translation requests allowed. */
  DEV_IOTLB: 1,
  /** Pass-through. */
  PASS_THROUGH: 2,
} as const;

/** Legacy-mode context entry (128 bits), 256 per 4 KiB table, indexed by devfn. */
export const LegacyContextEntry = defineLayout("vtd-context-entry", 16, {
  p: bit(0),
  /** Fault processing disable. */
  fpd: bit(1),
  /** Translation type (ContextTT). */
  tt: bits(3, 2),
  /** Second-stage page-table pointer. */
  slptptr: addr(63, 12),
  /** Address width: 1 = 39-bit (3-level), 2 = 48-bit (4-level), 3 = 57-bit (5-level). */
  aw: bits(66, 64),
  /** Bits 70:67 are ignored by hardware: software may use them. */
  avail: bits(70, 67),
  /** Domain identifier. */
  did: bits(87, 72),
});
export type LegacyContextEntry = Value<typeof LegacyContextEntry.fields>;

/** Scalable-mode context entry (256 bits), 128 per 4 KiB table, indexed by devfn & 0x7f. */
export const SmContextEntry = defineLayout("vtd-sm-context-entry", 32, {
  p: bit(0),
  fpd: bit(1),
  /** Device-TLB enable (ATS translation requests allowed). */
  dte: bit(2),
  /** PASID enable (requests with PASID allowed). */
  paside: bit(3),
  /** Page request enable. */
  pre: bit(4),
  /** PASID directory size: the directory has 2^(pdts+7) entries. */
  pdts: bits(11, 9),
  /** PASID directory pointer. */
  pasiddirptr: addr(63, 12),
  /** The PASID used for requests without PASID (RID_PASID). */
  ridPasid: bits(83, 64),
  /** Privilege of requests without PASID (RID_PRIV). */
  ridPriv: bit(84),
});
export type SmContextEntry = Value<typeof SmContextEntry.fields>;

// ---------------------------------------------------------------------------------------------
// PASID structures.

/** PASID directory entry (64 bits); the directory is indexed by pasid >> 6. */
export const PasidDirEntry = defineLayout("vtd-pasid-dir-entry", 8, {
  p: bit(0),
  fpd: bit(1),
  /** PASID-table pointer (a 4 KiB table of 64 PASID entries). */
  ptp: addr(63, 12),
});
export type PasidDirEntry = Value<typeof PasidDirEntry.fields>;

/** PASID-granular translation types (PGTT). */
export const Pgtt = {
  FIRST_STAGE: 1,
  SECOND_STAGE: 2,
  NESTED: 3,
  PASS_THROUGH: 4,
} as const;

/** Second-stage address width (AW) codes, in PASID and legacy context entries. */
export const AddressWidth = {
  AW_39: 1,
  AW_48: 2,
  AW_57: 3,
} as const;

/** First-stage paging mode (FSPM, called FLPM in older specifications). */
export const Fspm = {
  LEVEL4: 0,
  LEVEL5: 1,
} as const;

/** Scalable-mode PASID table entry (512 bits), 64 per 4 KiB table, indexed by pasid & 0x3f. */
export const PasidEntry = defineLayout("vtd-pasid-entry", 64, {
  // qword 0
  p: bit(0),
  fpd: bit(1),
  /** Second-stage address width (AddressWidth). */
  aw: bits(4, 2),
  /** PASID-granular translation type (Pgtt). */
  pgtt: bits(8, 6),
  /** Second-stage accessed/dirty enable (dirty tracking). */
  ssade: bit(9),
  /** Second-stage page-table pointer (SSPTPTR, formerly SLPTPTR). */
  ssptptr: addr(63, 12),
  // qword 1
  /** Domain identifier: the cache tag. */
  did: bits(79, 64),
  /** Page-walk snoop. */
  pwsnp: bit(87),
  /** Page snoop. */
  pgsnp: bit(88),
  /** Cache disable. */
  cd: bit(89),
  /** Extended memory type enable. */
  emte: bit(90),
  /** Extended memory type. */
  emt: bits(93, 91),
  /** Page-level write-through (for the first-stage root). */
  pwt: bit(94),
  /** Page-level cache disable (for the first-stage root). */
  pcd: bit(95),
  /** Page attribute table (the 32-bit PAT value). */
  pat: bits(127, 96),
  // qword 2
  /** Supervisor request enable. */
  sre: bit(128),
  /** First-stage paging mode (Fspm). */
  fspm: bits(131, 130),
  /** Write protect enable (supervisor writes honour read-only). */
  wpe: bit(132),
  /** Extended access flag enable. */
  eafe: bit(135),
  /** First-stage page-table pointer (FSPTPTR, formerly FLPTPTR): a GPA when nested. */
  fsptptr: addr(191, 140),
});
export type PasidEntry = Value<typeof PasidEntry.fields>;

// ---------------------------------------------------------------------------------------------
// Index helpers (plain numbers; hot-path friendly).

export const ROOT_ENTRY_BYTES = 16;
export const LEGACY_CONTEXT_ENTRY_BYTES = 16;
export const SM_CONTEXT_ENTRY_BYTES = 32;
export const PASID_DIR_ENTRY_BYTES = 8;
export const PASID_ENTRY_BYTES = 64;
/** PASID entries per PASID table (one 4 KiB page). */
export const PASID_TABLE_ENTRIES = 64;
/** PASIDs are 20 bits. */
export const PASID_BITS = 20;
export const PASID_MAX = 1 << PASID_BITS;

/** Source identifier (requester ID): bus << 8 | devfn. */
export function sourceId(bus: number, devfn: number): number {
  return ((bus & 0xff) << 8) | (devfn & 0xff);
}
export function sidBus(sid: number): number {
  return (sid >>> 8) & 0xff;
}
export function sidDevfn(sid: number): number {
  return sid & 0xff;
}
export function devfn(device: number, fn: number): number {
  return ((device & 0x1f) << 3) | (fn & 7);
}

/** Byte offset of the root entry for `bus` in the root table. */
export function rootEntryOffset(bus: number): number {
  return (bus & 0xff) * ROOT_ENTRY_BYTES;
}

/** Byte offset of a legacy context entry (256 per table, indexed by devfn). */
export function legacyContextOffset(devfnValue: number): number {
  return (devfnValue & 0xff) * LEGACY_CONTEXT_ENTRY_BYTES;
}

/** Scalable mode: does this devfn use the root entry's upper context table (devfn >= 128)? */
export function smContextIsUpper(devfnValue: number): boolean {
  return (devfnValue & 0x80) !== 0;
}

/** Scalable mode: byte offset of the context entry within its (lower or upper) table. */
export function smContextOffset(devfnValue: number): number {
  return (devfnValue & 0x7f) * SM_CONTEXT_ENTRY_BYTES;
}

/** PASID directory index: pasid >> 6 (14 bits). */
export function pasidDirIndex(pasid: number): number {
  return (pasid >>> 6) & 0x3fff;
}

/** PASID table index: pasid & 0x3f. */
export function pasidTableIndex(pasid: number): number {
  return pasid & 0x3f;
}

export function pasidDirEntryOffset(pasid: number): number {
  return pasidDirIndex(pasid) * PASID_DIR_ENTRY_BYTES;
}

export function pasidEntryOffset(pasid: number): number {
  return pasidTableIndex(pasid) * PASID_ENTRY_BYTES;
}

/** Entries in a PASID directory whose context entry has PDTS = `pdts`: 2^(pdts + 7). */
export function pasidDirEntries(pdts: number): number {
  return 2 ** ((pdts & 7) + 7);
}

/** Does `pasid` fall inside a directory of PDTS `pdts`? (Beyond it the request faults.) */
export function pasidWithinDir(pasid: number, pdts: number): boolean {
  return pasidDirIndex(pasid) < pasidDirEntries(pdts) && pasid >= 0 && pasid < PASID_MAX;
}

/** The PDTS value that covers `maxPasid` PASIDs (rounds up; at least 0, at most 7). */
export function pdtsFor(maxPasid: number): number {
  const dirEntries = Math.max(1, Math.ceil(maxPasid / PASID_TABLE_ENTRIES));
  let pdts = 0;
  while (pasidDirEntries(pdts) < dirEntries && pdts < 7) pdts++;
  return pdts;
}

/** Page-table levels for a second-stage AW code (1 -> 3, 2 -> 4, 3 -> 5). */
export function awLevels(aw: number): number {
  return aw + 2;
}

/** Address width in bits for a second-stage AW code (1 -> 39, 2 -> 48, 3 -> 57). */
export function awBits(aw: number): number {
  return 30 + 9 * aw;
}

/** The AW code for a width in bits (39/48/57), or -1. */
export function awFromBits(width: number): number {
  return width === 39 ? 1 : width === 48 ? 2 : width === 57 ? 3 : -1;
}

/** First-stage paging levels for an FSPM code (0 -> 4, 1 -> 5; others reserved: -1). */
export function fspmLevels(fspm: number): number {
  return fspm === 0 ? 4 : fspm === 1 ? 5 : -1;
}
