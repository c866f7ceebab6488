/**
 * VT-d queued invalidation: the invalidation-queue descriptors software writes (128-bit in legacy
 * mode, 256-bit when IQA_REG.DW = 1, as scalable mode requires), the page request descriptor the
 * hardware writes into the page request queue, and the page group response software returns.
 *
 * The descriptor type is 7 bits: type[3:0] in bits 3:0 and type[6:4] in bits 11:9 of the first
 * qword. Every layout here is 256 bits; the 128-bit form is its first 16 bytes, with the upper
 * half required to be zero (a descriptor that needs its upper half cannot be written as 128-bit).
 */
import { assert } from "../../errno.js";
import { bigAddr, bigBits, addr, bit, bits, defineLayout, split, type FieldMap, type Layout, type Value } from "../bitlayout.js";

/** Descriptor type codes. */
export const QiType = {
  CONTEXT_CACHE: 0x1,
  IOTLB: 0x2,
  DEVICE_TLB: 0x3,
  IEC: 0x4,
  WAIT: 0x5,
  PASID_IOTLB: 0x6,
  PASID_CACHE: 0x7,
  PASID_DEVICE_TLB: 0x8,
  PAGE_GROUP_RESPONSE: 0x9,
} as const;

const TYPE_FIELD = split([3, 0], [11, 9]);

function qi<F extends FieldMap>(name: string, type: number, fields: F): Layout<F> {
  return defineLayout(name, 32, fields, [{ field: TYPE_FIELD, value: type }]);
}

/** Context-cache invalidation granularity (G). */
export const CcGran = { GLOBAL: 1, DOMAIN: 2, DEVICE: 3 } as const;
/** IOTLB invalidation granularity (G). */
export const IotlbGran = { GLOBAL: 1, DOMAIN: 2, PAGE: 3 } as const;
/** PASID-based IOTLB granularity (G): all mappings of a PASID, or page-selective within it. */
export const PiotlbGran = { PASID: 2, PAGE: 3 } as const;
/** PASID-cache granularity (G). */
export const PcGran = { DOMAIN: 0, PASID: 1, GLOBAL: 3 } as const;
/** Page group response codes. */
export const PrgResponse = { SUCCESS: 0x0, INVALID: 0x1, FAILURE: 0xf } as const;

/** Context-cache invalidate descriptor (type 1). */
export const CcInvDesc = qi("vtd-qi-context-cache", QiType.CONTEXT_CACHE, {
  g: bits(5, 4),
  did: bits(31, 16),
  sid: bits(47, 32),
  /** Function mask: the low 0-3 bits of the SID's function number to ignore. */
  fm: bits(49, 48),
});

/** IOTLB invalidate descriptor (type 2). */
export const IotlbInvDesc = qi("vtd-qi-iotlb", QiType.IOTLB, {
  g: bits(5, 4),
  /** Drain writes. */
  dw: bit(6),
  /** Drain reads. */
  dr: bit(7),
  did: bits(31, 16),
  /** Address mask: 2^am pages from addr. */
  am: bits(69, 64),
  /** Invalidation hint: only leaf entries changed. */
  ih: bit(70),
  addr: addr(127, 76),
});

/** Device-TLB (ATS) invalidate descriptor (type 3). */
export const DevTlbInvDesc = qi("vtd-qi-device-tlb", QiType.DEVICE_TLB, {
  /** Physical-function source ID (for VFs; bits 3:0 at 15:12, 15:4 at 63:52). */
  pfsid: split([15, 12], [63, 52]),
  /** Maximum invalidations pending (the device's ATS queue depth). */
  mip: bits(20, 16),
  sid: bits(47, 32),
  /** Size: when set, the range is encoded in the low address bits (ATS encoding). */
  s: bit(64),
  addr: addr(127, 76),
});

/** Interrupt-entry cache invalidate descriptor (type 4). */
export const IecInvDesc = qi("vtd-qi-iec", QiType.IEC, {
  /** Granularity: 0 global, 1 index-selective. */
  g: bit(4),
  /** Index mask. */
  im: bits(31, 27),
  iidx: bits(47, 32),
});

/** Invalidation wait descriptor (type 5). */
export const WaitDesc = qi("vtd-qi-wait", QiType.WAIT, {
  /** Interrupt on completion. */
  if: bit(4),
  /** Status write: write `statusData` to `statusAddr` on completion. */
  sw: bit(5),
  /** Fence. */
  fn: bit(6),
  /** Page-request drain. */
  pd: bit(7),
  statusData: bits(63, 32),
  /** Status address (4-byte aligned). */
  statusAddr: bigAddr(127, 66),
});

/** PASID-based IOTLB invalidate descriptor (type 6). */
export const PiotlbInvDesc = qi("vtd-qi-pasid-iotlb", QiType.PASID_IOTLB, {
  g: bits(5, 4),
  did: bits(31, 16),
  pasid: bits(51, 32),
  am: bits(69, 64),
  ih: bit(70),
  addr: addr(127, 76),
});

/** PASID-cache invalidate descriptor (type 7). */
export const PcInvDesc = qi("vtd-qi-pasid-cache", QiType.PASID_CACHE, {
  g: bits(5, 4),
  did: bits(31, 16),
  pasid: bits(51, 32),
});

/** PASID-based device-TLB invalidate descriptor (type 8). */
export const PasidDevTlbInvDesc = qi("vtd-qi-pasid-device-tlb", QiType.PASID_DEVICE_TLB, {
  mip: bits(8, 4),
  pfsid: split([15, 12], [63, 52]),
  sid: bits(31, 16),
  pasid: bits(51, 32),
  /** Global: invalidate for all PASIDs (then pasid is ignored). */
  g: bit(64),
  s: bit(75),
  addr: addr(127, 76),
});

/** Page group response descriptor (type 9). */
export const PageGroupResponseDesc = qi("vtd-qi-page-group-response", QiType.PAGE_GROUP_RESPONSE, {
  /** PASID present. */
  pp: bit(4),
  /** Response code (PrgResponse). */
  rc: bits(15, 12),
  /** Requester ID of the page request. */
  rid: bits(31, 16),
  pasid: bits(51, 32),
  /** Last page in group (echoed from the request). */
  lpig: bit(66),
  /** Page request group index. */
  prgi: bits(75, 67),
  /** Private data (echoed from the request; 256-bit form only). */
  privateData0: bigBits(191, 128),
  privateData1: bigBits(255, 192),
});

/** Every invalidation-queue descriptor layout, by kind. */
export const QI_LAYOUTS = {
  contextCache: CcInvDesc,
  iotlb: IotlbInvDesc,
  deviceTlb: DevTlbInvDesc,
  iec: IecInvDesc,
  wait: WaitDesc,
  pasidIotlb: PiotlbInvDesc,
  pasidCache: PcInvDesc,
  pasidDeviceTlb: PasidDevTlbInvDesc,
  pageGroupResponse: PageGroupResponseDesc,
} as const;

export type QiKind = keyof typeof QI_LAYOUTS;
type FieldsOf<L> = L extends Layout<infer F> ? F : never;
/** A decoded descriptor: its kind plus the fields of that kind. */
export type QiDescriptor = { [K in QiKind]: { kind: K } & Value<FieldsOf<(typeof QI_LAYOUTS)[K]>> }[QiKind];
/** Encoder input: the kind plus any subset of its fields (absent ones are 0). */
export type QiDescriptorInput = { [K in QiKind]: { kind: K } & Partial<Value<FieldsOf<(typeof QI_LAYOUTS)[K]>>> }[QiKind];

const KIND_BY_TYPE = new Map<number, QiKind>([
  [QiType.CONTEXT_CACHE, "contextCache"],
  [QiType.IOTLB, "iotlb"],
  [QiType.DEVICE_TLB, "deviceTlb"],
  [QiType.IEC, "iec"],
  [QiType.WAIT, "wait"],
  [QiType.PASID_IOTLB, "pasidIotlb"],
  [QiType.PASID_CACHE, "pasidCache"],
  [QiType.PASID_DEVICE_TLB, "pasidDeviceTlb"],
  [QiType.PAGE_GROUP_RESPONSE, "pageGroupResponse"],
]);

/** Hot path: the 7-bit descriptor type of the descriptor at word `base`. */
export function qiTypeOf(u32: Uint32Array, base = 0): number {
  const w = u32[base];
  return (w & 0xf) | (((w >>> 9) & 7) << 4);
}

export function qiKindOfType(type: number): QiKind | undefined {
  return KIND_BY_TYPE.get(type);
}

export type QiWidth = 128 | 256;

/**
 * Decode a descriptor of `width` bits at byte `offset`. An unknown type decodes as
 * `{ kind: "unknown", type }` (hardware reports an invalidation queue error for it).
 */
export function decodeQi(src: Uint8Array, width: QiWidth = 256, offset = 0): QiDescriptor | { kind: "unknown"; type: number } {
  const n = width / 8;
  const buf = new Uint8Array(32);
  buf.set(src.subarray(offset, offset + n));
  const type = (buf[0] & 0xf) | (((buf[1] >>> 1) & 7) << 4);
  const kind = KIND_BY_TYPE.get(type);
  if (kind === undefined) return { kind: "unknown", type };
  const v = QI_LAYOUTS[kind].decode(buf) as Record<string, unknown>;
  return { kind, ...v } as QiDescriptor;
}

/** Encode a descriptor as `width` bits. The 128-bit form requires the upper 128 bits to be zero. */
export function encodeQi(d: QiDescriptorInput, width: QiWidth = 256): Uint8Array {
  const { kind, ...fields } = d;
  const layout = QI_LAYOUTS[kind] as Layout<FieldMap>;
  const bytes = layout.encode(fields as Partial<Value<FieldMap>>);
  if (width === 256) return bytes;
  for (let i = 16; i < 32; i++) if (bytes[i] !== 0) assert(false, `${layout.name}: fields in bits 255:128 do not fit a 128-bit descriptor`);
  return bytes.slice(0, 16);
}

/** Reserved bits set in a descriptor (by its own type's layout), or undefined for an unknown type. */
export function qiReservedBitsSet(src: Uint8Array, width: QiWidth = 256, offset = 0): number[] | undefined {
  const buf = new Uint8Array(32);
  buf.set(src.subarray(offset, offset + width / 8));
  const kind = KIND_BY_TYPE.get((buf[0] & 0xf) | (((buf[1] >>> 1) & 7) << 4));
  return kind === undefined ? undefined : QI_LAYOUTS[kind].reservedBitsSet(buf);
}

/** Pages covered by an address mask AM: 2^am 4 KiB pages, aligned to that size. */
export function amPages(am: number): number {
  return 2 ** am;
}

// ---------------------------------------------------------------------------------------------
// Page request queue.

/** Page request descriptor (256 bits) written by hardware into the page request queue. */
export const PageRequestDesc = defineLayout(
  "vtd-page-request",
  32,
  {
    /** PASID present. */
    pp: bit(8),
    /** Private data present. */
    pdp: bit(9),
    rid: bits(31, 16),
    pasid: bits(51, 32),
    /** Execute requested. */
    er: bit(52),
    /** Privileged-mode requested. */
    pmr: bit(53),
    /** Read requested. */
    rdr: bit(64),
    /** Write requested. */
    wrr: bit(65),
    /** Last page in group. */
    lpig: bit(66),
    /** Page request group index. */
    prgi: bits(75, 67),
    /** Page address. */
    addr: addr(127, 76),
    privateData0: bigBits(191, 128),
    privateData1: bigBits(255, 192),
  },
  [{ field: bits(7, 0), value: 0x1 }],
);
export type PageRequestDesc = Value<typeof PageRequestDesc.fields>;

export const PAGE_REQUEST_DESC_BYTES = 32;
