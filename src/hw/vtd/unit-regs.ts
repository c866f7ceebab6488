/**
 * The VT-d remapping unit's register file and fault reason codes, as VtdUnit (unit.ts) models them:
 * register offsets (Linux's DMAR_*_REG), command / status / fault bits, the scalable-mode fault
 * reasons the unit raises, and the default CAP / ECAP of the modelled IOMMU.
 *
 * Offsets and bits are those of the VT-d specification (chapter 11) as Linux 6.12's
 * drivers/iommu/intel/iommu.h names them; the scalable-mode fault reasons are the codes of Linux's
 * dmar.c table `dma_remap_sm_fault_reasons` (0x30-0x90).
 */
import { capToU64, ecapToU64, type CapReg, type EcapReg } from "./regs.js";

/** Register offsets (bytes) in the unit's 4 KiB register page. */
export const VtdReg = {
  VER: 0x00,
  CAP: 0x08,
  ECAP: 0x10,
  GCMD: 0x18,
  GSTS: 0x1c,
  RTADDR: 0x20,
  /** Register-based context command: not modelled (queued invalidation only). */
  CCMD: 0x28,
  FSTS: 0x34,
  FECTL: 0x38,
  FEDATA: 0x3c,
  FEADDR: 0x40,
  FEUADDR: 0x44,
  IQH: 0x80,
  IQT: 0x88,
  IQA: 0x90,
  ICS: 0x9c,
  IECTL: 0xa0,
  IEDATA: 0xa4,
  IEADDR: 0xa8,
  IEUADDR: 0xac,
  IQERCD: 0xb0,
  IRTA: 0xb8,
  PQH: 0xc0,
  PQT: 0xc8,
  PQA: 0xd0,
  PRS: 0xdc,
  PECTL: 0xe0,
  PEDATA: 0xe4,
  PEADDR: 0xe8,
  PEUADDR: 0xec,
} as const;

/** Size of the register page. */
export const VTD_REG_BYTES = 0x1000;

/** GCMD_REG commands (GSTS_REG has the matching status bit at the same position). */
export const Gcmd = {
  TE: 1 << 31,
  SRTP: 1 << 30,
  SFL: 1 << 29,
  EAFL: 1 << 28,
  WBF: 1 << 27,
  QIE: 1 << 26,
  IRE: 1 << 25,
  SIRTP: 1 << 24,
  CFI: 1 << 23,
} as const;

/** GSTS_REG status bits. */
export const Gsts = {
  TES: 1 << 31,
  RTPS: 1 << 30,
  FLS: 1 << 29,
  AFLS: 1 << 28,
  WBFS: 1 << 27,
  QIES: 1 << 26,
  IRES: 1 << 25,
  IRTPS: 1 << 24,
  CFIS: 1 << 23,
} as const;

/** RTADDR_REG translation table mode (TTM, bits 11:10). */
export const Ttm = { LEGACY: 0, SCALABLE: 1, ABORT_DMA: 3 } as const;

/** FSTS_REG bits (PFO, IQE, ICE, ITE are write-1-to-clear; PPF and FRI are computed). */
export const Fsts = {
  PFO: 1 << 0,
  PPF: 1 << 1,
  AFO: 1 << 2,
  APF: 1 << 3,
  IQE: 1 << 4,
  ICE: 1 << 5,
  ITE: 1 << 6,
} as const;
/** FSTS_REG.FRI: bits 15:8. */
export const FSTS_FRI_SHIFT = 8;

/** FECTL / IECTL / PECTL: interrupt mask and interrupt pending. */
export const EventCtl = { IM: 1 << 31, IP: 1 << 30 } as const;

/** ICS_REG: invalidation wait descriptor complete. */
export const ICS_IWC = 1;

/** PRS_REG: pending page request, page request overflow (both write-1-to-clear). */
export const Prs = { PPR: 1 << 0, PRO: 1 << 1 } as const;

/** IQA_REG: DW (256-bit descriptors) at bit 11, QS (queue of 2^QS pages) at 2:0, base 63:12. */
export const IQA_DW = 1 << 11;
export const IQA_QS_MASK = 7;

/**
 * IQERCD_REG.IQEI (bits 3:0), why the invalidation queue stopped. Codes taken with less than full
 * certainty from the VT-d specification as remembered (Linux only prints the value).
 */
export const Iqei = {
  /** The tail written is not aligned to the descriptor width (DW=1 with IQT bit 4 set). */
  TAIL_MISALIGNED: 1,
  /** The descriptor could not be fetched (queue beyond the host address width). */
  FETCH_ERROR: 2,
  /** Unknown descriptor type, or a type not usable in the current mode. */
  INVALID_TYPE: 3,
  /** A reserved field of the descriptor is set. */
  RESERVED_FIELD: 4,
  /** A field holds a value the hardware does not support (granularity, ...). */
  INVALID_FIELD: 5,
} as const;

/** Primary fault recording registers are 16 bytes each. */
export const FAULT_RECORD_BYTES = 16;

/**
 * Scalable-mode fault reasons (Linux dmar.c `dma_remap_sm_fault_reasons`, index + 0x30). The
 * hardware's conditions for each are as their names say; the unit raises these.
 */
export const SmFault = {
  /** RTADDR_REG points beyond the host address width. */
  ROOT_TABLE_ADDR: 0x30,
  /** Legacy TTM (0) and a request with PASID. */
  TTM0_PASID: 0x31,
  /** Legacy TTM (0) and a page request. */
  TTM0_PAGE_REQUEST: 0x32,
  ROOT_ENTRY_ACCESS: 0x38,
  ROOT_ENTRY_NOT_PRESENT: 0x39,
  ROOT_ENTRY_RESERVED: 0x3a,
  CONTEXT_ENTRY_ACCESS: 0x40,
  CONTEXT_ENTRY_NOT_PRESENT: 0x41,
  CONTEXT_ENTRY_RESERVED: 0x42,
  CONTEXT_ENTRY_INVALID: 0x43,
  /** DTE clear and a translation request (ATS) or translated request. */
  CONTEXT_DTE_CLEAR: 0x44,
  /** PASIDE clear and a request with PASID. */
  CONTEXT_PASIDE_CLEAR: 0x45,
  /** The PASID is beyond the context entry's PASID directory (PDTS). */
  PASID_BEYOND_PDTS: 0x46,
  /** PRE clear and a page request. */
  CONTEXT_PRE_CLEAR: 0x47,
  /** RID_PASID non-zero without ECAP.RPS. */
  CONTEXT_RID_PASID: 0x48,
  PASID_DIR_ACCESS: 0x50,
  PASID_DIR_NOT_PRESENT: 0x51,
  PASID_DIR_RESERVED: 0x52,
  PASID_ENTRY_ACCESS: 0x58,
  PASID_ENTRY_NOT_PRESENT: 0x59,
  PASID_ENTRY_RESERVED: 0x5a,
  /** Invalid programming: a PGTT, address width or feature the hardware lacks. */
  PASID_ENTRY_INVALID: 0x5b,
  /** Execute request and ERE clear (the model has no ERE: every execute request with PASID). */
  PASID_ERE_CLEAR: 0x5c,
  /** Supervisor request and SRE clear. */
  PASID_SRE_CLEAR: 0x5d,
  FS_ENTRY_ACCESS: 0x70,
  FS_ENTRY_NOT_PRESENT: 0x71,
  FS_ENTRY_RESERVED: 0x72,
  FS_ROOT_ACCESS: 0x73,
  /** Nested: a first-stage table or output address (a GPA) beyond the second stage's width. */
  NESTED_FS_ADDR_BEYOND: 0x74,
  /** Nested: the second stage does not let the first-stage root table be read. */
  NESTED_FS_ROOT_READ: 0x75,
  /** Nested: the second stage does not let a first-stage table below the root be read. */
  NESTED_FS_ENTRY_READ: 0x76,
  /** Nested: the second stage does not let the hardware write a first-stage entry's A/D bits. */
  NESTED_FS_ENTRY_WRITE: 0x77,
  SS_ENTRY_ACCESS: 0x78,
  /** Second-stage entry with R = W = 0 (not present). */
  SS_ENTRY_NOT_PRESENT: 0x79,
  SS_ENTRY_RESERVED: 0x7a,
  SS_ROOT_INVALID: 0x7b,
  /** First-stage input address not canonical. */
  FS_NON_CANONICAL: 0x80,
  /** User request to a supervisor page (U/S clear on the path). */
  FS_USER: 0x81,
  /** Execute request to a page without execute permission. */
  NO_EXECUTE: 0x82,
  /** Input address beyond the translation's address width. */
  ADDR_BEYOND: 0x83,
  /** Second-stage output address beyond the host address width. */
  SS_OUTPUT_BEYOND: 0x84,
  NO_WRITE: 0x85,
  NO_READ: 0x86,
  /** The output address is in the interrupt address range 0xFEEx_xxxx. */
  INTERRUPT_ADDR: 0x87,
} as const;

/** Fault reasons that FPD (fault processing disable) may suppress: all but root-table ones. */
export function faultIsQualified(code: number): boolean {
  return code >= 0x40 || code === SmFault.TTM0_PASID || code === SmFault.TTM0_PAGE_REQUEST;
}

/**
 * CAP of the default modelled IOMMU: a modern scalable-mode unit. 2^16 domains, SAGAW 4- and
 * 5-level, MGAW 57 bits, 8 fault recording registers at 0x220 (QEMU's offset), second-stage 2 MiB
 * and 1 GiB pages, page-selective invalidation up to 2^18 pages, read/write draining, first-stage
 * 1 GiB pages and 5-level paging; no caching mode, no write-buffer flushing.
 */
export const DEFAULT_CAP: Partial<CapReg> = {
  nd: 6,
  sagaw: 0b01100,
  mgaw: 56,
  zlr: 1,
  fro: 0x22,
  sslps: 0b11,
  psi: 1,
  nfr: 7,
  mamv: 18,
  dwd: 1,
  drd: 1,
  fs1gp: 1,
  fs5lp: 1,
};

/**
 * ECAP of the default modelled IOMMU: page-walk coherent, queued invalidation, device TLBs (ATS),
 * pass-through, snoop control, IOTLB registers at 0xF0, nested translation, page requests, 20-bit
 * PASIDs, page-request drain, scalable mode with first- and second-stage translation, second-stage
 * A/D (dirty tracking) and scalable-mode page-walk coherency. No supervisor or execute requests.
 */
export const DEFAULT_ECAP: Partial<EcapReg> = {
  c: 1,
  qi: 1,
  dt: 1,
  pt: 1,
  sc: 1,
  iro: 0x0f,
  nest: 1,
  prs: 1,
  pss: 19,
  pasid: 1,
  pds: 1,
  smts: 1,
  ssads: 1,
  ssts: 1,
  fsts: 1,
  smpwcs: 1,
};

export const DEFAULT_CAP_U64: bigint = capToU64(DEFAULT_CAP);
export const DEFAULT_ECAP_U64: bigint = ecapToU64(DEFAULT_ECAP);

/** The interrupt address range (requests whose output lands here are interrupt requests). */
export const INTERRUPT_PAGE_FIRST = 0xfee00;
export const INTERRUPT_PAGE_LAST = 0xfeeff;
