/**
 * SMMUv3 identification registers, as IOMMU_GET_HW_INFO returns them in
 * iommu_hw_info_arm_smmuv3 (idr[0..5], iidr, aidr) and as a vSMMU presents them to a guest.
 * Each register is 32 bits.
 */
import { bit, bits, defineLayout, type Value } from "../bitlayout.js";

export const Idr0 = defineLayout("smmu-idr0", 4, {
  /** Stage-2 translation. */
  s2p: bit(0),
  /** Stage-1 translation. */
  s1p: bit(1),
  /** Translation table formats: 2 = AArch64, 3 = AArch32 and AArch64. */
  ttf: bits(3, 2),
  /** Coherent table walks and queue accesses. */
  cohacc: bit(4),
  /** Broadcast TLB maintenance. */
  btm: bit(5),
  /** Hardware table update: 1 = access flag, 2 = access flag and dirty state. */
  httu: bits(7, 6),
  dormhint: bit(8),
  /** EL2 (hypervisor) stage-1 support. */
  hyp: bit(9),
  ats: bit(10),
  ns1ats: bit(11),
  /** 16-bit ASIDs. */
  asid16: bit(12),
  msi: bit(13),
  sev: bit(14),
  atos: bit(15),
  pri: bit(16),
  vmw: bit(17),
  /** 16-bit VMIDs. */
  vmid16: bit(18),
  /** Two-level CD tables. */
  cd2l: bit(19),
  vatos: bit(20),
  /** Table endianness: 0 mixed, 2 little, 3 big. */
  ttendian: bits(22, 21),
  atsrecerr: bit(23),
  /** Stall model: 0 stall and terminate, 1 terminate only, 2 stall forced. */
  stallModel: bits(25, 24),
  /** Terminate model: 1 = terminated transactions always abort. */
  termModel: bit(26),
  /** Stream table levels: 0 linear, 1 two-level. */
  stLevel: bits(28, 27),
  rmeImpl: bit(30),
});
export type Idr0 = Value<typeof Idr0.fields>;

export const Idr1 = defineLayout("smmu-idr1", 4, {
  /** StreamID bits. */
  sidsize: bits(5, 0),
  /** SubstreamID bits. */
  ssidsize: bits(10, 6),
  /** log2 of the PRI queue size. */
  priqs: bits(15, 11),
  /** log2 of the event queue size. */
  eventqs: bits(20, 16),
  /** log2 of the command queue size. */
  cmdqs: bits(25, 21),
  attrPermsOvr: bit(26),
  attrTypesOvr: bit(27),
  rel: bit(28),
  queuesPreset: bit(29),
  tablesPreset: bit(30),
  ecmdq: bit(31),
});
export type Idr1 = Value<typeof Idr1.fields>;

export const Idr3 = defineLayout("smmu-idr3", 4, {
  /** Hierarchical attribute disable. */
  had: bit(2),
  pbha: bit(3),
  xnx: bit(4),
  pps: bit(5),
  mpam: bit(7),
  /** Stage-2 forced write-back. */
  fwb: bit(8),
  stt: bit(9),
  /** Range invalidation (TLBI NUM/SCALE). */
  ril: bit(10),
  /** Break-before-make level. */
  bbml: bits(12, 11),
  e0pd: bit(13),
  ptwnnc: bit(14),
  dpt: bit(15),
});
export type Idr3 = Value<typeof Idr3.fields>;

export const Idr5 = defineLayout("smmu-idr5", 4, {
  /** Output address size: 0 32, 1 36, 2 40, 3 42, 4 44, 5 48, 6 52 bits. */
  oas: bits(2, 0),
  gran4k: bit(4),
  gran16k: bit(5),
  gran64k: bit(6),
  /** Virtual address extend: 0 = 48-bit, 1 = 52-bit VAs. */
  vax: bits(11, 10),
  /** Maximum outstanding stalled transactions. */
  stallMax: bits(31, 16),
});
export type Idr5 = Value<typeof Idr5.fields>;

export const Iidr = defineLayout("smmu-iidr", 4, {
  implementer: bits(11, 0),
  revision: bits(15, 12),
  variant: bits(19, 16),
  productId: bits(31, 20),
});
export type Iidr = Value<typeof Iidr.fields>;

export const Aidr = defineLayout("smmu-aidr", 4, {
  archMinorRev: bits(3, 0),
  archMajorRev: bits(7, 4),
});
export type Aidr = Value<typeof Aidr.fields>;

/**
 * The IDR bits userspace may rely on in iommu_hw_info_arm_smmuv3 (the uAPI comment's list): a
 * VMM builds its vSMMU's IDRs from these and its own choices. Masks per register.
 */
export const HW_INFO_RELIABLE_MASK = {
  idr0: Idr0.encodeWords({ stLevel: 3, termModel: 1, stallModel: 3, ttendian: 3, cd2l: 1, asid16: 1, ttf: 3 })[0],
  idr1: Idr1.encodeWords({ sidsize: 0x3f, ssidsize: 0x1f })[0],
  idr3: Idr3.encodeWords({ bbml: 3, ril: 1 })[0],
  idr5: Idr5.encodeWords({ vax: 3, gran64k: 1, gran16k: 1, gran4k: 1 })[0],
} as const;

/** Output address size in bits for an IDR5.OAS / STE.S2PS / CD.IPS code (-1 if reserved). */
export function oasBits(code: number): number {
  return [32, 36, 40, 42, 44, 48, 52][code] ?? -1;
}

/** The OAS code for a width in bits, or -1. */
export function oasCode(width: number): number {
  return [32, 36, 40, 42, 44, 48, 52].indexOf(width);
}
