/**
 * SMMUv3 command queue entries (16 bytes each): opcode in bits 7:0, per-command fields after.
 * One layout per command; `decodeCmd`/`encodeCmd` dispatch on the opcode.
 */
import { addr, bit, bits, defineLayout, type FieldMap, type Layout, type Value } from "../bitlayout.js";

export const CmdOp = {
  PREFETCH_CONFIG: 0x01,
  PREFETCH_ADDR: 0x02,
  CFGI_STE: 0x03,
  /** CFGI_STE_RANGE; CFGI_ALL is this opcode with Range = 31. */
  CFGI_STE_RANGE: 0x04,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  TLBI_NH_ALL: 0x10,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  TLBI_NH_VAA: 0x13,
  TLBI_EL3_ALL: 0x18,
  TLBI_EL3_VA: 0x1a,
  TLBI_EL2_ALL: 0x20,
  TLBI_EL2_ASID: 0x21,
  TLBI_EL2_VA: 0x22,
  TLBI_EL2_VAA: 0x23,
  TLBI_S12_VMALL: 0x28,
  TLBI_S2_IPA: 0x2a,
  TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40,
  PRI_RESP: 0x41,
  RESUME: 0x44,
  STALL_TERM: 0x45,
  CMD_SYNC: 0x46,
} as const;

/** CFGI_STE_RANGE.Range value that makes it CFGI_ALL. */
export const CFGI_ALL_RANGE = 31;
/** ATC_INV.Size value meaning "all addresses". */
export const ATC_INV_SIZE_ALL = 52;

/** PRI_RESP.Resp values. */
export const PriResp = { DENY: 0, FAIL: 1, SUCCESS: 2 } as const;
/** RESUME.Action values (bit 12 Ac = retry, bit 13 Ab = abort). */
export const ResumeAction = { TERMINATE: 0, RETRY: 1, ABORT: 2 } as const;
/** CMD_SYNC.CS completion signal. */
export const SyncCs = { NONE: 0, IRQ: 1, SEV: 2 } as const;

export const CMD_BYTES = 16;

function cmd<F extends FieldMap>(name: string, op: number, fields: F): Layout<F> {
  return defineLayout(name, 16, fields, [{ field: bits(7, 0), value: op }]);
}

/** TLBI range fields (NUM/SCALE in dword 0; TTL/TG in dword 1), with FEAT_RANGE_INV. */
const rangeFields = {
  num: bits(16, 12),
  /** 6 bits; bit 25 only with IDR5.DS (the 6.12 kernel's mask stops at bit 24). */
  scale: bits(25, 20),
  leaf: bit(64),
  ttl: bits(73, 72),
  tg: bits(75, 74),
};

export const CmdPrefetchConfig = cmd("smmu-cmd-prefetch-config", CmdOp.PREFETCH_CONFIG, {
  ssec: bit(10),
  ssv: bit(11),
  ssid: bits(31, 12),
  sid: bits(63, 32),
});

export const CmdCfgiSte = cmd("smmu-cmd-cfgi-ste", CmdOp.CFGI_STE, {
  ssec: bit(10),
  sid: bits(63, 32),
  /** Leaf: only the STE itself changed (not an L1 descriptor). */
  leaf: bit(64),
});

export const CmdCfgiSteRange = cmd("smmu-cmd-cfgi-ste-range", CmdOp.CFGI_STE_RANGE, {
  ssec: bit(10),
  sid: bits(63, 32),
  /** Invalidate 2^(range+1) StreamIDs from sid aligned down; 31 = all (CFGI_ALL). */
  range: bits(68, 64),
});

export const CmdCfgiCd = cmd("smmu-cmd-cfgi-cd", CmdOp.CFGI_CD, {
  ssec: bit(10),
  ssid: bits(31, 12),
  sid: bits(63, 32),
  leaf: bit(64),
});

export const CmdCfgiCdAll = cmd("smmu-cmd-cfgi-cd-all", CmdOp.CFGI_CD_ALL, {
  ssec: bit(10),
  sid: bits(63, 32),
});

export const CmdTlbiNhAll = cmd("smmu-cmd-tlbi-nh-all", CmdOp.TLBI_NH_ALL, {
  vmid: bits(47, 32),
});

export const CmdTlbiNhAsid = cmd("smmu-cmd-tlbi-nh-asid", CmdOp.TLBI_NH_ASID, {
  vmid: bits(47, 32),
  asid: bits(63, 48),
});

export const CmdTlbiNhVa = cmd("smmu-cmd-tlbi-nh-va", CmdOp.TLBI_NH_VA, {
  ...rangeFields,
  vmid: bits(47, 32),
  asid: bits(63, 48),
  /** Virtual address, 4 KiB aligned. */
  addr: addr(127, 76),
});

export const CmdTlbiNhVaa = cmd("smmu-cmd-tlbi-nh-vaa", CmdOp.TLBI_NH_VAA, {
  ...rangeFields,
  vmid: bits(47, 32),
  addr: addr(127, 76),
});

export const CmdTlbiS12Vmall = cmd("smmu-cmd-tlbi-s12-vmall", CmdOp.TLBI_S12_VMALL, {
  vmid: bits(47, 32),
});

export const CmdTlbiS2Ipa = cmd("smmu-cmd-tlbi-s2-ipa", CmdOp.TLBI_S2_IPA, {
  ...rangeFields,
  vmid: bits(47, 32),
  /** Intermediate physical address, 4 KiB aligned (bits 51:12). */
  addr: addr(115, 76),
});

export const CmdTlbiNsnhAll = cmd("smmu-cmd-tlbi-nsnh-all", CmdOp.TLBI_NSNH_ALL, {});

export const CmdAtcInv = cmd("smmu-cmd-atc-inv", CmdOp.ATC_INV, {
  /** Global: also invalidate entries of every substream. */
  global: bit(9),
  ssv: bit(11),
  ssid: bits(31, 12),
  sid: bits(63, 32),
  /** log2 of the range in 4 KiB pages; ATC_INV_SIZE_ALL = everything. */
  size: bits(69, 64),
  addr: addr(127, 76),
});

export const CmdPriResp = cmd("smmu-cmd-pri-resp", CmdOp.PRI_RESP, {
  ssv: bit(11),
  ssid: bits(31, 12),
  sid: bits(63, 32),
  /** Page request group index. */
  prgIndex: bits(72, 64),
  /** Response (PriResp). */
  resp: bits(77, 76),
});

export const CmdResume = cmd("smmu-cmd-resume", CmdOp.RESUME, {
  ssec: bit(10),
  /** Action (ResumeAction): bit 12 Ac (retry), bit 13 Ab (abort). */
  action: bits(13, 12),
  sid: bits(63, 32),
  /** Stall tag from the event record. */
  stag: bits(79, 64),
});

export const CmdStallTerm = cmd("smmu-cmd-stall-term", CmdOp.STALL_TERM, {
  ssec: bit(10),
  sid: bits(63, 32),
});

export const CmdSync = cmd("smmu-cmd-sync", CmdOp.CMD_SYNC, {
  /** Completion signal (SyncCs). */
  cs: bits(13, 12),
  /** MSI shareability. */
  msh: bits(23, 22),
  /** MSI memory attributes. */
  msiattr: bits(27, 24),
  msidata: bits(63, 32),
  /** MSI address (4-byte aligned). */
  msiaddr: addr(115, 66),
});

/** Every command layout, by kind. */
export const CMD_LAYOUTS = {
  prefetchConfig: CmdPrefetchConfig,
  cfgiSte: CmdCfgiSte,
  cfgiSteRange: CmdCfgiSteRange,
  cfgiCd: CmdCfgiCd,
  cfgiCdAll: CmdCfgiCdAll,
  tlbiNhAll: CmdTlbiNhAll,
  tlbiNhAsid: CmdTlbiNhAsid,
  tlbiNhVa: CmdTlbiNhVa,
  tlbiNhVaa: CmdTlbiNhVaa,
  tlbiS12Vmall: CmdTlbiS12Vmall,
  tlbiS2Ipa: CmdTlbiS2Ipa,
  tlbiNsnhAll: CmdTlbiNsnhAll,
  atcInv: CmdAtcInv,
  priResp: CmdPriResp,
  resume: CmdResume,
  stallTerm: CmdStallTerm,
  sync: CmdSync,
} as const;

export type CmdKind = keyof typeof CMD_LAYOUTS;
type FieldsOf<L> = L extends Layout<infer F> ? F : never;
export type Cmd = { [K in CmdKind]: { kind: K } & Value<FieldsOf<(typeof CMD_LAYOUTS)[K]>> }[CmdKind];
export type CmdInput = { [K in CmdKind]: { kind: K } & Partial<Value<FieldsOf<(typeof CMD_LAYOUTS)[K]>>> }[CmdKind];

const KIND_BY_OP = new Map<number, CmdKind>();
for (const [k, l] of Object.entries(CMD_LAYOUTS)) KIND_BY_OP.set(l.fixedValue[0] & 0xff, k as CmdKind);

/** Hot path: the opcode of the command at word `base`. */
export function cmdOpcode(u32: Uint32Array, base = 0): number {
  return u32[base] & 0xff;
}

export function cmdKindOfOpcode(op: number): CmdKind | undefined {
  return KIND_BY_OP.get(op);
}

/** Decode a 16-byte command; an opcode this model does not know decodes as "unknown". */
export function decodeCmd(src: Uint8Array, offset = 0): Cmd | { kind: "unknown"; opcode: number } {
  const op = src[offset];
  const kind = KIND_BY_OP.get(op);
  if (kind === undefined) return { kind: "unknown", opcode: op };
  return { kind, ...(CMD_LAYOUTS[kind].decode(src, offset) as Record<string, unknown>) } as Cmd;
}

export function encodeCmd(c: CmdInput): Uint8Array {
  const { kind, ...fields } = c;
  return (CMD_LAYOUTS[kind] as Layout<FieldMap>).encode(fields as Partial<Value<FieldMap>>);
}

export function encodeCmdWords(c: CmdInput): Uint32Array {
  const { kind, ...fields } = c;
  return (CMD_LAYOUTS[kind] as Layout<FieldMap>).encodeWords(fields as Partial<Value<FieldMap>>);
}

/** CFGI_ALL: CFGI_STE_RANGE with Range = 31. */
export function cfgiAll(): CmdInput {
  return { kind: "cfgiSteRange", sid: 0, range: CFGI_ALL_RANGE };
}
