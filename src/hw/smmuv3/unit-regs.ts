/**
 * The SMMUv3 register file as SmmuUnit (unit.ts) exposes it: offsets of the 32-bit registers
 * (64-bit ones are two 32-bit halves, low word first), their bits, the queue base/index encodings,
 * and the ID register values a unit has unless told otherwise.
 *
 * Offsets are the architecture's (page 0 at 0, page 1 at 0x10000). The event and PRI queue index
 * registers live in page 1; their page-0 offsets are accepted as aliases (Linux uses page 0 when
 * the implementation has only page 0, ARM_SMMU_OPT_PAGE0_REGS_ONLY).
 */
import { Aidr, Idr0, Idr1, Idr3, Idr5, Iidr } from "./regs.js";

export const SmmuReg = {
  IDR0: 0x0,
  IDR1: 0x4,
  IDR2: 0x8,
  IDR3: 0xc,
  IDR4: 0x10,
  IDR5: 0x14,
  IIDR: 0x18,
  AIDR: 0x1c,
  CR0: 0x20,
  CR0ACK: 0x24,
  CR1: 0x28,
  CR2: 0x2c,
  STATUSR: 0x40,
  GBPA: 0x44,
  AGBPA: 0x48,
  IRQ_CTRL: 0x50,
  IRQ_CTRLACK: 0x54,
  GERROR: 0x60,
  GERRORN: 0x64,
  GERROR_IRQ_CFG0: 0x68,
  GERROR_IRQ_CFG1: 0x70,
  GERROR_IRQ_CFG2: 0x74,
  STRTAB_BASE: 0x80,
  STRTAB_BASE_CFG: 0x88,
  CMDQ_BASE: 0x90,
  CMDQ_PROD: 0x98,
  CMDQ_CONS: 0x9c,
  EVTQ_BASE: 0xa0,
  EVTQ_PROD: 0x100a8,
  EVTQ_CONS: 0x100ac,
  EVTQ_IRQ_CFG0: 0xb0,
  EVTQ_IRQ_CFG1: 0xb8,
  EVTQ_IRQ_CFG2: 0xbc,
  PRIQ_BASE: 0xc0,
  PRIQ_PROD: 0x100c8,
  PRIQ_CONS: 0x100cc,
  PRIQ_IRQ_CFG0: 0xd0,
  PRIQ_IRQ_CFG1: 0xd8,
  PRIQ_IRQ_CFG2: 0xdc,
} as const;

/** Page-1 registers and their page-0 aliases. */
export const PAGE1_OFFSET = 0x10000;

// CR0 / CR0ACK
export const CR0_SMMUEN = 1 << 0;
export const CR0_PRIQEN = 1 << 1;
export const CR0_EVTQEN = 1 << 2;
export const CR0_CMDQEN = 1 << 3;
export const CR0_ATSCHK = 1 << 4;
/** Bits CR0 holds (others read as zero). */
export const CR0_MASK = CR0_SMMUEN | CR0_PRIQEN | CR0_EVTQEN | CR0_CMDQEN | CR0_ATSCHK;

// GBPA
export const GBPA_ABORT = 1 << 20;
export const GBPA_UPDATE = 1 << 31;

// IRQ_CTRL / IRQ_CTRLACK
export const IRQ_CTRL_GERROR_IRQEN = 1 << 0;
export const IRQ_CTRL_PRIQ_IRQEN = 1 << 1;
export const IRQ_CTRL_EVTQ_IRQEN = 1 << 2;

// GERROR / GERRORN: a bit is active while GERROR and GERRORN differ there.
export const GERROR_CMDQ_ERR = 1 << 0;
export const GERROR_EVTQ_ABT_ERR = 1 << 2;
export const GERROR_PRIQ_ABT_ERR = 1 << 3;
export const GERROR_MSI_CMDQ_ABT_ERR = 1 << 4;
export const GERROR_SFM_ERR = 1 << 8;

// STRTAB_BASE (64-bit): ADDR 51:6, RA 62. STRTAB_BASE_CFG: LOG2SIZE 5:0, SPLIT 10:6, FMT 17:16.
export const STRTAB_BASE_ADDR_LO_MASK = 0xffffffc0 | 0;
export const STRTAB_BASE_RA_HI = 1 << 30;
export const STRTAB_FMT_LINEAR = 0;
export const STRTAB_FMT_2LVL = 1;

export function strtabBaseCfg(fmt: number, log2size: number, split: number): number {
  return ((fmt & 3) << 16) | ((split & 0x1f) << 6) | (log2size & 0x3f);
}

// Queue bases (64-bit): LOG2SIZE 4:0, ADDR 51:5, RWA 62. Index registers: index in the low
// LOG2SIZE bits, wrap at bit LOG2SIZE; CMDQ_CONS.ERR 30:24; EVTQ/PRIQ PROD.OVFLG and
// CONS.OVACKFLG at bit 31.
export const Q_BASE_RWA_HI = 1 << 30;
export const Q_OVF = 1 << 31;
export const CMDQ_CONS_ERR_SHIFT = 24;
export const CMDQ_CONS_ERR_MASK = 0x7f << 24;
/** CMDQ_CONS.ERR codes. */
export const CmdqErr = { NONE: 0, ILL: 1, ABT: 2, ATC_INV_SYNC: 3 } as const;

/** A queue base register's value (bigint at the register edge): base byte address, log2 of the entries. */
export function queueBase(addr: number, log2size: number): bigint {
  return (1n << 62n) | (BigInt(addr) & 0xffffffffffe0n) | BigInt(log2size & 0x1f);
}

/** The ID registers of a unit (32 bits each). */
export interface SmmuIdRegs {
  idr0: number;
  idr1: number;
  idr2: number;
  idr3: number;
  idr4: number;
  idr5: number;
  iidr: number;
  aidr: number;
}

/**
 * What a unit reports unless told otherwise: stage 1 and 2 (so nesting), AArch64 tables, coherent
 * walks, HTTU access + dirty, 16-bit ASIDs and VMIDs, MSIs and SEV, PRI, two-level CD tables,
 * little-endian tables, the stall model "stall and terminate", terminated transactions always
 * abort (TERM_MODEL), two-level stream tables; 16-bit StreamIDs and 20-bit SubstreamIDs, queues
 * of 256 entries; range invalidation; 48-bit OAS, 4 KiB granule only; SMMUv3.3. No ATS, no HYP.
 */
export function defaultIdRegs(): SmmuIdRegs {
  return {
    idr0: Idr0.encodeWords({
      s2p: 1,
      s1p: 1,
      ttf: 2,
      cohacc: 1,
      httu: 2,
      asid16: 1,
      msi: 1,
      sev: 1,
      pri: 1,
      vmid16: 1,
      cd2l: 1,
      ttendian: 2,
      stallModel: 0,
      termModel: 1,
      stLevel: 1,
    })[0],
    idr1: Idr1.encodeWords({ sidsize: 16, ssidsize: 20, priqs: 8, eventqs: 8, cmdqs: 8 })[0],
    idr2: 0,
    idr3: Idr3.encodeWords({ ril: 1 })[0],
    idr4: 0,
    idr5: Idr5.encodeWords({ oas: 5, gran4k: 1, stallMax: 128 })[0],
    iidr: Iidr.encodeWords({})[0],
    aidr: Aidr.encodeWords({ archMajorRev: 0, archMinorRev: 3 })[0],
  };
}
