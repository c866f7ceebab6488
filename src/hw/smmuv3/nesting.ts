/**
 * The kernel's rules for what a VMM may hand the SMMUv3 driver through iommufd (newer than 6.12):
 *
 *  - IOMMU_HWPT_DATA_ARM_SMMUV3 (struct iommu_hwpt_arm_smmuv3): the vSTE, the first two 64-bit
 *    words of the guest's STE, validated as arm_smmu_validate_vste() does;
 *  - IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3: 16-byte raw command-queue entries, filtered and
 *    rewritten per command as arm_vsmmu_convert_user_cmd() does (VMID forced to the vIOMMU's,
 *    vSID translated to the physical SID).
 *
 * Invalid data is EIO ("EIO is reserved for invalid STE data" / an illegal command). Both
 * functions are pure: they return the sanitized words and never modify their input.
 */
import { fail } from "../../errno.js";
import { bytesToWords, qwordsToWords } from "../bitlayout.js";
import { CmdOp, ATC_INV_SIZE_ALL } from "./cmdq.js";
import { Eats, Ste, SteConfig } from "./tables.js";

/** A vSTE or command as 16 little-endian bytes, four 32-bit words, or two u64s. */
export type Raw128 = Uint8Array | Uint32Array | readonly bigint[];

function words4(x: Raw128, what: string): Uint32Array {
  if (x instanceof Uint8Array) {
    if (x.length !== 16) fail("EINVAL", `${what}: 16 bytes expected`);
    return bytesToWords(x);
  }
  if (x instanceof Uint32Array) {
    if (x.length !== 4) fail("EINVAL", `${what}: 4 words expected`);
    return x.slice();
  }
  if (x.length !== 2) fail("EINVAL", `${what}: 2 qwords expected`);
  return qwordsToWords(x, 4);
}

/** Per 32-bit word of STE dwords 0-1: the bits a vSTE may set (STRTAB_STE_{0,1}_NESTING_ALLOWED). */
export const VSTE_ALLOWED_MASK: Readonly<Uint32Array> = Ste.encodeWords({
  v: 1,
  config: 7,
  s1fmt: 3,
  s1ContextPtr: 2 ** 52 - 64,
  s1cdmax: 31,
  s1dss: 3,
  s1cir: 3,
  s1cor: 3,
  s1csh: 3,
  s1stalld: 1,
  eats: 3,
}).slice(0, 4);

export interface VsteResult {
  /** The vSTE as the nested domain keeps it: all zero when V = 0; EATS cleared otherwise. */
  readonly ste: Uint32Array;
  /** The nested domain enables ATS: Config = S1 translate and EATS = full ATS. */
  readonly enableAts: boolean;
}

/**
 * Validate a vSTE (IOMMU_HWPT_DATA_ARM_SMMUV3) as the kernel does:
 *  1. V = 0: accepted, the vSTE becomes all zeros (an abort STE is installed);
 *  2. any bit outside V, Config, S1Fmt, S1ContextPtr, S1CDMax (word 0) and S1DSS, S1CIR,
 *     S1COR, S1CSH, S1STALLD, EATS (word 1) -> EIO;
 *  3. Config other than abort (0), bypass (4) or S1 translate (5) -> EIO;
 *  4. EATS other than abort (0) or full ATS (1) -> EIO; EATS is then cleared (the kernel sets it
 *     in the physical STE itself).
 */
export function validateVste(input: Raw128): VsteResult {
  const w = words4(input, "vSTE");
  if ((w[0] & 1) === 0) return { ste: new Uint32Array(4), enableAts: false };
  for (let i = 0; i < 4; i++) {
    if ((w[i] & ~VSTE_ALLOWED_MASK[i]) !== 0) fail("EIO", `vSTE word ${i >> 1} sets bits the guest may not control`);
  }
  const cfg = Ste.acc.config.get(w, 0);
  if (cfg !== SteConfig.ABORT && cfg !== SteConfig.BYPASS && cfg !== SteConfig.S1_TRANS) {
    fail("EIO", `vSTE Config ${cfg} is not abort, bypass or S1 translate`);
  }
  const eats = Ste.acc.eats.get(w, 0);
  if (eats !== Eats.ABORT && eats !== Eats.TRANS) fail("EIO", `vSTE EATS ${eats} is not abort or full ATS`);
  Ste.acc.eats.set(w, 0, 0);
  return { ste: w, enableAts: cfg === SteConfig.S1_TRANS && eats === Eats.TRANS };
}

/** The SMMU features the strict (newest-kernel) command checks consult. */
export interface VsmmuFeatures {
  /** 8 or 16 (IDR0.ASID16). */
  readonly asidBits: number;
  /** IDR1.SSIDSIZE; 0 = no substreams. */
  readonly ssidBits: number;
  /** IDR3.RIL: range invalidation. */
  readonly rangeInv: boolean;
  /** IDR5.DS. */
  readonly ds: boolean;
  /** IDR0.ATS. */
  readonly ats: boolean;
}

export interface VsmmuContext {
  /** The VMID the vIOMMU owns; every TLBI is forced to it. */
  readonly vmid: number;
  /** The physical StreamID of a vDEVICE's virtual SID, or undefined when no vDEVICE has it. */
  vsidToSid(vsid: number): number | undefined;
  /**
   * When given, also reject any field a command may not carry on this SMMU, as the newest
   * kernels do (arm_vsmmu_validate_user_cmd). Without it, only the opcode filter of the first
   * vIOMMU kernels (6.13+) applies.
   */
  readonly strict?: VsmmuFeatures;
}

/** Opcodes a vIOMMU accepts in IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3. */
export const VIOMMU_ACCEPTED_OPCODES: readonly number[] = [
  CmdOp.TLBI_NSNH_ALL,
  CmdOp.TLBI_NH_ALL,
  CmdOp.TLBI_NH_ASID,
  CmdOp.TLBI_NH_VA,
  CmdOp.TLBI_NH_VAA,
  CmdOp.ATC_INV,
  CmdOp.CFGI_CD,
  CmdOp.CFGI_CD_ALL,
];

// Field masks per 32-bit word (w0 = bits 31:0, w1 = 63:32, w2 = 95:64, w3 = 127:96).
const OP = 0xff;
const SSV = 1 << 11;
const SSID = 0xfffff000; // bits 31:12
const TLBI_NUM = 0x1f << 12;
const TLBI_SCALE = 0x3f << 20; // bits 25:20
const W2_LEAF = 1;
const W2_TTL = 3 << 8;
const W2_TG = 3 << 10;
const W2_ADDR = 0xfffff000; // bits 63:12 of dword 1, low word part
const ATC_GLOBAL = 1 << 9;
const ATC_SIZE = 0x3f;

/** TLBI range fields are legal only in the combinations the architecture defines. */
function validateRange(w: Uint32Array, f: VsmmuFeatures): boolean {
  const range = (w[0] & (TLBI_NUM | TLBI_SCALE)) !== 0;
  const ttl = (w[2] >>> 8) & 3;
  const tg = (w[2] >>> 10) & 3;
  if (tg === 0) return !range && ttl === 0;
  if (tg === 2 && ttl === 1 && !f.ds) return false;
  if (!range && ttl === 0) return false;
  return true;
}

function strictCheck(w: Uint32Array, op: number, f: VsmmuFeatures): void {
  const allowed = [OP, 0, 0, 0];
  const asidMask = f.asidBits >= 16 ? 0xffff0000 : 0x00ff0000; // ASID is bits 63:48 = w1 31:16
  switch (op) {
    case CmdOp.TLBI_NSNH_ALL:
      break;
    case CmdOp.TLBI_NH_VA:
    case CmdOp.TLBI_NH_VAA:
      if (op === CmdOp.TLBI_NH_VA) allowed[1] |= asidMask;
      if (f.rangeInv) {
        if (!validateRange(w, f)) fail("EIO", "TLBI range fields in a reserved combination");
        allowed[0] |= TLBI_NUM | (f.ds ? TLBI_SCALE : TLBI_SCALE & ~(1 << 25));
        allowed[2] |= W2_TG | W2_TTL;
      }
      allowed[1] |= 0xffff; // VMID
      allowed[2] |= W2_LEAF | W2_ADDR;
      allowed[3] |= 0xffffffff;
      break;
    case CmdOp.TLBI_NH_ASID:
    case CmdOp.TLBI_NH_ALL:
      if (op === CmdOp.TLBI_NH_ASID) allowed[1] |= asidMask;
      allowed[1] |= 0xffff;
      break;
    case CmdOp.ATC_INV:
      if (!f.ats) fail("EIO", "ATC_INV without ATS support");
      if ((w[2] & ATC_SIZE) > ATC_INV_SIZE_ALL) fail("EIO", "ATC_INV Size above 52");
      if (f.ssidBits) allowed[0] |= SSV | SSID | ATC_GLOBAL;
      allowed[1] |= 0xffffffff;
      allowed[2] |= ATC_SIZE | W2_ADDR;
      allowed[3] |= 0xffffffff;
      break;
    case CmdOp.CFGI_CD:
    case CmdOp.CFGI_CD_ALL:
      if (op === CmdOp.CFGI_CD) {
        if (f.ssidBits) allowed[0] |= SSID;
        allowed[2] |= W2_LEAF;
      }
      allowed[1] |= 0xffffffff;
      break;
    default:
      fail("EIO", `opcode 0x${op.toString(16)} is not accepted through a vIOMMU`);
  }
  for (let i = 0; i < 4; i++) if ((w[i] & ~allowed[i]) !== 0) fail("EIO", `command sets a field it may not carry (word ${i})`);
}

/**
 * Filter and rewrite one guest command for the physical command queue (the result is what the
 * host SMMU executes). Accepted: TLBI_NSNH_ALL (becomes TLBI_NH_ALL of the vIOMMU's VMID),
 * TLBI_NH_ALL / NH_ASID / NH_VA / NH_VAA (VMID forced to the vIOMMU's), ATC_INV, CFGI_CD and
 * CFGI_CD_ALL (vSID replaced by the physical SID; unknown vSID -> EIO). Any other opcode -> EIO.
 */
export function convertViommuCmd(input: Raw128, ctx: VsmmuContext): Uint32Array {
  const w = words4(input, "command");
  const op = w[0] & OP;
  if (ctx.strict) strictCheck(w, op, ctx.strict);
  switch (op) {
    case CmdOp.TLBI_NSNH_ALL:
      return new Uint32Array([CmdOp.TLBI_NH_ALL, ctx.vmid & 0xffff, 0, 0]);
    case CmdOp.TLBI_NH_VA:
    case CmdOp.TLBI_NH_VAA:
    case CmdOp.TLBI_NH_ALL:
    case CmdOp.TLBI_NH_ASID:
      w[1] = (w[1] & 0xffff0000) | (ctx.vmid & 0xffff);
      return w;
    case CmdOp.ATC_INV:
    case CmdOp.CFGI_CD:
    case CmdOp.CFGI_CD_ALL: {
      const vsid = w[1];
      const sid = ctx.vsidToSid(vsid);
      if (sid === undefined) fail("EIO", `no vDEVICE with virtual SID ${vsid}`);
      w[1] = sid;
      return w;
    }
    default:
      fail("EIO", `opcode 0x${op.toString(16)} is not accepted through a vIOMMU`);
  }
}
