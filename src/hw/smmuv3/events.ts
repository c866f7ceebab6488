/**
 * SMMUv3 event queue records (32 bytes, EventID in bits 7:0) and PRI queue entries (16 bytes).
 * A vEVENTQ forwards the same 32-byte record with the StreamID field rewritten to the vSID.
 */
import { addr, bigBits, bit, bits, defineLayout, type FieldMap, type Layout, type Value } from "../bitlayout.js";

export const EventId = {
  F_UUT: 0x01,
  C_BAD_STREAMID: 0x02,
  F_STE_FETCH: 0x03,
  C_BAD_STE: 0x04,
  F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06,
  F_TRANSL_FORBIDDEN: 0x07,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
  F_TLB_CONFLICT: 0x20,
  F_CFG_CONFLICT: 0x21,
  E_PAGE_REQUEST: 0x24,
} as const;

/** The event IDs the kernel forwards to a vEVENTQ (IOMMU_VEVENTQ_TYPE_ARM_SMMUV3). */
export const VEVENTQ_FORWARDED_EVENTS: readonly number[] = [
  EventId.C_BAD_STE,
  EventId.F_STREAM_DISABLED,
  EventId.C_BAD_SUBSTREAMID,
  EventId.C_BAD_CD,
  EventId.F_TRANSLATION,
  EventId.F_ADDR_SIZE,
  EventId.F_ACCESS,
  EventId.F_PERMISSION,
];

/** Fault CLASS: what the faulting access was for. */
export const EventClass = { CD: 0, TT: 1, IN: 2 } as const;

export const EVENT_BYTES = 32;
export const PRI_ENTRY_BYTES = 16;

function evt<F extends FieldMap>(name: string, id: number, fields: F): Layout<F> {
  return defineLayout(name, 32, fields, [{ field: bits(7, 0), value: id }]);
}

const ssidFields = { ssv: bit(11), ssid: bits(31, 12), sid: bits(63, 32) };

/** Fields of the translation-related faults (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION, F_WALK_EABT). */
const faultFields = {
  ...ssidFields,
  /** Stall tag (valid when stall = 1): the RESUME command echoes it. */
  stag: bits(79, 64),
  /** The transaction is stalled, awaiting RESUME. */
  stall: bit(95),
  /** Privileged (1) or unprivileged (0). */
  pnu: bit(97),
  /** Instruction (1) or data (0). */
  ind: bit(98),
  /** Read (1) or write (0). */
  rnw: bit(99),
  /** Non-secure IPA. */
  nsipa: bit(102),
  /** The fault arose at stage 2. */
  s2: bit(103),
  /** What was being accessed (EventClass). */
  class: bits(105, 104),
  /** The input address of the transaction. */
  inputAddr: bigBits(191, 128),
};

export const EvtFUut = evt("smmu-evt-f-uut", EventId.F_UUT, {
  ...ssidFields,
  pnu: bit(97),
  ind: bit(98),
  rnw: bit(99),
  inputAddr: bigBits(191, 128),
});
export const EvtCBadStreamid = evt("smmu-evt-c-bad-streamid", EventId.C_BAD_STREAMID, { ...ssidFields });
export const EvtFSteFetch = evt("smmu-evt-f-ste-fetch", EventId.F_STE_FETCH, {
  ...ssidFields,
  /** Address of the failed fetch (8-byte aligned). */
  fetchAddr: addr(243, 195),
});
export const EvtCBadSte = evt("smmu-evt-c-bad-ste", EventId.C_BAD_STE, { ...ssidFields });
export const EvtFStreamDisabled = evt("smmu-evt-f-stream-disabled", EventId.F_STREAM_DISABLED, {
  sid: bits(63, 32),
});
export const EvtFTranslForbidden = evt("smmu-evt-f-transl-forbidden", EventId.F_TRANSL_FORBIDDEN, {
  sid: bits(63, 32),
  rnw: bit(99),
  inputAddr: bigBits(191, 128),
});
export const EvtCBadSubstreamid = evt("smmu-evt-c-bad-substreamid", EventId.C_BAD_SUBSTREAMID, {
  ssid: bits(31, 12),
  sid: bits(63, 32),
});
export const EvtFCdFetch = evt("smmu-evt-f-cd-fetch", EventId.F_CD_FETCH, {
  ...ssidFields,
  fetchAddr: addr(243, 195),
});
export const EvtCBadCd = evt("smmu-evt-c-bad-cd", EventId.C_BAD_CD, { ...ssidFields });
export const EvtFWalkEabt = evt("smmu-evt-f-walk-eabt", EventId.F_WALK_EABT, {
  ...faultFields,
  fetchAddr: addr(243, 195),
});
const withIpa = { ...faultFields, /** IPA (when s2 = 1), 4 KiB granular. */ ipa: addr(243, 204) };
export const EvtFTranslation = evt("smmu-evt-f-translation", EventId.F_TRANSLATION, withIpa);
export const EvtFAddrSize = evt("smmu-evt-f-addr-size", EventId.F_ADDR_SIZE, withIpa);
export const EvtFAccess = evt("smmu-evt-f-access", EventId.F_ACCESS, withIpa);
export const EvtFPermission = evt("smmu-evt-f-permission", EventId.F_PERMISSION, withIpa);
export const EvtFCfgConflict = evt("smmu-evt-f-cfg-conflict", EventId.F_CFG_CONFLICT, { ...ssidFields });

export const EVENT_LAYOUTS = {
  fUut: EvtFUut,
  cBadStreamid: EvtCBadStreamid,
  fSteFetch: EvtFSteFetch,
  cBadSte: EvtCBadSte,
  fStreamDisabled: EvtFStreamDisabled,
  fTranslForbidden: EvtFTranslForbidden,
  cBadSubstreamid: EvtCBadSubstreamid,
  fCdFetch: EvtFCdFetch,
  cBadCd: EvtCBadCd,
  fWalkEabt: EvtFWalkEabt,
  fTranslation: EvtFTranslation,
  fAddrSize: EvtFAddrSize,
  fAccess: EvtFAccess,
  fPermission: EvtFPermission,
  fCfgConflict: EvtFCfgConflict,
} as const;

export type EventKind = keyof typeof EVENT_LAYOUTS;
type FieldsOf<L> = L extends Layout<infer F> ? F : never;
export type Event = { [K in EventKind]: { kind: K } & Value<FieldsOf<(typeof EVENT_LAYOUTS)[K]>> }[EventKind];
export type EventInput = { [K in EventKind]: { kind: K } & Partial<Value<FieldsOf<(typeof EVENT_LAYOUTS)[K]>>> }[EventKind];

const KIND_BY_ID = new Map<number, EventKind>();
for (const [k, l] of Object.entries(EVENT_LAYOUTS)) KIND_BY_ID.set(l.fixedValue[0] & 0xff, k as EventKind);

/** Hot path: the EventID of the record at word `base`. */
export function eventIdOf(u32: Uint32Array, base = 0): number {
  return u32[base] & 0xff;
}

/** Hot path: the StreamID of the record at word `base` (bits 63:32, every record type). */
export function eventSidOf(u32: Uint32Array, base = 0): number {
  return u32[base + 1];
}

/** Hot path: rewrite the StreamID (the vEVENTQ substitutes the vSID). */
export function setEventSid(u32: Uint32Array, base: number, sid: number): void {
  u32[base + 1] = sid;
}

export function eventKindOfId(id: number): EventKind | undefined {
  return KIND_BY_ID.get(id);
}

export function decodeEvent(src: Uint8Array, offset = 0): Event | { kind: "unknown"; eventId: number } {
  const id = src[offset];
  const kind = KIND_BY_ID.get(id);
  if (kind === undefined) return { kind: "unknown", eventId: id };
  return { kind, ...(EVENT_LAYOUTS[kind].decode(src, offset) as Record<string, unknown>) } as Event;
}

export function encodeEvent(e: EventInput): Uint8Array {
  const { kind, ...fields } = e;
  return (EVENT_LAYOUTS[kind] as Layout<FieldMap>).encode(fields as Partial<Value<FieldMap>>);
}

// ---------------------------------------------------------------------------------------------
// PRI queue.

/** PRI queue entry (16 bytes): a PCIe page request as the SMMU records it. */
export const PriEntry = defineLayout("smmu-pri-entry", 16, {
  sid: bits(31, 0),
  ssid: bits(51, 32),
  /** Privileged access requested. */
  priv: bit(58),
  /** Execute access requested. */
  exec: bit(59),
  /** Read access requested. */
  read: bit(60),
  /** Write access requested. */
  write: bit(61),
  /** Last request in the page request group. */
  last: bit(62),
  /** SubstreamID valid. */
  ssv: bit(63),
  /** Page request group index. */
  prgIndex: bits(72, 64),
  /** Page address. */
  addr: addr(127, 76),
});
export type PriEntry = Value<typeof PriEntry.fields>;
