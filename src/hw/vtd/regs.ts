/**
 * VT-d registers whose formats cross the model's boundaries: the capability and extended
 * capability registers (what IOMMU_GET_HW_INFO returns as iommu_hw_info_vtd.cap_reg/ecap_reg and
 * what a VMM mirrors into its vIOMMU) and the fault recording register.
 *
 * Register values at the uAPI boundary are u64 bigints; `capFromU64`/`capToU64` convert.
 */
import { addr, bit, bits, defineLayout, type Value } from "../bitlayout.js";

/** Capability register (CAP_REG, offset 0x08). */
export const CapReg = defineLayout("vtd-cap", 8, {
  /** Number of domains supported: 2^(4 + 2 * nd). */
  nd: bits(2, 0),
  /** Advanced fault logging. */
  afl: bit(3),
  /** Required write-buffer flushing. */
  rwbf: bit(4),
  /** Protected low-memory region. */
  plmr: bit(5),
  /** Protected high-memory region. */
  phmr: bit(6),
  /** Caching mode: not-present entries may be cached (emulated IOMMUs set it). */
  cm: bit(7),
  /** Supported adjusted guest address widths: bit 1 = 39-bit, 2 = 48-bit, 3 = 57-bit. */
  sagaw: bits(12, 8),
  /** Maximum guest address width minus one. */
  mgaw: bits(21, 16),
  /** Zero-length read. */
  zlr: bit(22),
  /** Fault-recording register offset, in 16-byte units. */
  fro: bits(33, 24),
  /** Second-stage large page support: bit 0 = 2 MiB, bit 1 = 1 GiB. */
  sslps: bits(37, 34),
  /** Page-selective invalidation. */
  psi: bit(39),
  /** Number of fault-recording registers minus one. */
  nfr: bits(47, 40),
  /** Maximum address mask value for page-selective invalidation. */
  mamv: bits(53, 48),
  /** Write draining. */
  dwd: bit(54),
  /** Read draining. */
  drd: bit(55),
  /** First-stage 1 GiB pages. */
  fs1gp: bit(56),
  /** Posted interrupts. */
  pi: bit(59),
  /** First-stage 5-level paging. */
  fs5lp: bit(60),
  /** Enhanced command support. */
  ecmds: bit(61),
  /** Enhanced set interrupt remap table pointer support. */
  esirtps: bit(62),
  /** Enhanced set root table pointer support. */
  esrtps: bit(63),
});
export type CapReg = Value<typeof CapReg.fields>;

/** Extended capability register (ECAP_REG, offset 0x10). */
export const EcapReg = defineLayout("vtd-ecap", 8, {
  /** Page-walk coherency. */
  c: bit(0),
  /** Queued invalidation. */
  qi: bit(1),
  /** Device-TLB (ATS). */
  dt: bit(2),
  /** Interrupt remapping. */
  ir: bit(3),
  /** Extended interrupt mode (x2APIC). */
  eim: bit(4),
  /** Pass-through. */
  pt: bit(6),
  /** Snoop control. */
  sc: bit(7),
  /** IOTLB register offset, in 16-byte units. */
  iro: bits(17, 8),
  /** Maximum handle mask value. */
  mhmv: bits(23, 20),
  /** Memory type support. */
  mts: bit(25),
  /** Nested translation. */
  nest: bit(26),
  /** Page requests. */
  prs: bit(29),
  /** Execute requests. */
  ers: bit(30),
  /** Supervisor requests. */
  srs: bit(31),
  /** No write flag. */
  nwfs: bit(33),
  /** Extended accessed flag. */
  eafs: bit(34),
  /** PASID size supported minus one (PASIDs are pss + 1 bits). */
  pss: bits(39, 35),
  /** PASID support. */
  pasid: bit(40),
  /** Device-TLB invalidation throttling. */
  dit: bit(41),
  /** Page-request drain. */
  pds: bit(42),
  /** Scalable-mode translation. */
  smts: bit(43),
  /** Virtual command support. */
  vcs: bit(44),
  /** Second-stage accessed/dirty (SLADS). */
  ssads: bit(45),
  /** Second-stage translation (SLTS). */
  ssts: bit(46),
  /** First-stage translation (FLTS). */
  fsts: bit(47),
  /** Scalable-mode page-walk coherency. */
  smpwcs: bit(48),
  /** RID-PASID support. */
  rps: bit(49),
  /** Performance monitoring. */
  pms: bit(51),
});
export type EcapReg = Value<typeof EcapReg.fields>;

export function capFromU64(v: bigint): CapReg {
  return CapReg.fromQwords([v]);
}
export function capToU64(c: Partial<CapReg>): bigint {
  return CapReg.toQwords(c)[0];
}
export function ecapFromU64(v: bigint): EcapReg {
  return EcapReg.fromQwords([v]);
}
export function ecapToU64(e: Partial<EcapReg>): bigint {
  return EcapReg.toQwords(e)[0];
}

/** Domains supported for a CAP.ND value. */
export function capDomains(nd: number): number {
  return 2 ** (4 + 2 * nd);
}
/** Maximum guest address width in bits (CAP.MGAW + 1). */
export function capMgawBits(c: Pick<CapReg, "mgaw">): number {
  return c.mgaw + 1;
}
/** Number of fault-recording registers (CAP.NFR + 1). */
export function capFaultRegs(c: Pick<CapReg, "nfr">): number {
  return c.nfr + 1;
}
/** Byte offset of the first fault-recording register (CAP.FRO * 16). */
export function capFaultRegOffset(c: Pick<CapReg, "fro">): number {
  return c.fro * 16;
}
/** Does SAGAW include the AW code (1 = 39-bit, 2 = 48-bit, 3 = 57-bit)? */
export function capSupportsAw(c: Pick<CapReg, "sagaw">, aw: number): boolean {
  return ((c.sagaw >>> aw) & 1) === 1;
}
/** PASID width in bits (ECAP.PSS + 1). */
export function ecapPasidBits(e: Pick<EcapReg, "pss">): number {
  return e.pss + 1;
}

// ---------------------------------------------------------------------------------------------
// Fault recording.

/** Fault recording register (128 bits; CAP.NFR + 1 of them at CAP.FRO * 16). */
export const FaultRecord = defineLayout("vtd-fault-record", 16, {
  /** Fault information: the page address of the faulting request. */
  fi: addr(63, 12),
  /** Source identifier of the faulting request. */
  sid: bits(79, 64),
  /** Type bit 2 (with T1: 0/0 write, 0/1 read; 1/0 page request, 1/1 atomic). */
  t2: bit(92),
  /** Privilege-mode requested. */
  priv: bit(93),
  /** Execute permission requested. */
  exe: bit(94),
  /** PASID present. */
  pp: bit(95),
  /** Fault reason (FaultReason). */
  fr: bits(103, 96),
  /** PASID value. */
  pv: bits(123, 104),
  /** Address type of the request. */
  at: bits(125, 124),
  /** Type bit 1: 0 write, 1 read (when T2 is 0). */
  t1: bit(126),
  /** Fault: the record is valid (write 1 to clear). */
  f: bit(127),
});
export type FaultRecord = Value<typeof FaultRecord.fields>;

/** Hot path: the F bit of the fault record at word `base` (bit 31 of its fourth word). */
export function faultRecordPending(u32: Uint32Array, base = 0): boolean {
  return (u32[base + 3] >>> 31) === 1;
}

/** Fault reason codes (a subset: those the model raises or a guest is likely to see). */
export const FaultReason = {
  /** Root entry not present (legacy mode). */
  ROOT_NOT_PRESENT: 0x01,
  /** Context entry not present (legacy mode). */
  CONTEXT_NOT_PRESENT: 0x02,
  /** Invalid programming of a context entry. */
  CONTEXT_INVALID: 0x03,
  /** Input address beyond the address width. */
  ADDR_BEYOND_AW: 0x04,
  /** Write to a page without write permission. */
  WRITE: 0x05,
  /** Read from a page without read permission. */
  READ: 0x06,
  /** Error reading a second-stage paging entry. */
  PAGING_ENTRY_ACCESS: 0x07,
  /** Error reading the root table. */
  ROOT_TABLE_ACCESS: 0x08,
  /** Error reading a context table. */
  CONTEXT_TABLE_ACCESS: 0x09,
  /** Reserved field set in a present root entry. */
  ROOT_RESERVED: 0x0a,
  /** Reserved field set in a present context entry. */
  CONTEXT_RESERVED: 0x0b,
  /** Reserved field set in a second-stage paging entry. */
  PAGING_ENTRY_RESERVED: 0x0c,
  /** Request blocked by the context entry's translation type. */
  CONTEXT_TT_BLOCKED: 0x0d,
  // Scalable mode (only the codes this model has checked are listed).
  /** Error reading a PASID directory entry. */
  SM_PASID_DIR_ACCESS: 0x50,
  /** PASID directory entry not present. */
  SM_PASID_DIR_NOT_PRESENT: 0x51,
  /** Error reading a PASID table entry. */
  SM_PASID_TABLE_ACCESS: 0x58,
  /** PASID table entry not present. */
  SM_PASID_NOT_PRESENT: 0x59,
  /** Invalid programming of a PASID table entry (e.g. a reserved PGTT). */
  SM_PASID_ENTRY_INVALID: 0x5b,
} as const;
