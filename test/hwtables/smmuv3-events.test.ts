/**
 * SMMUv3 event records and PRI queue entries: field positions, golden records, dispatch on the
 * EventID, and the vSID rewrite the vEVENTQ applies.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  EVENT_LAYOUTS,
  EventClass,
  EventId,
  PriEntry,
  VEVENTQ_FORWARDED_EVENTS,
  decodeEvent,
  encodeEvent,
  eventIdOf,
  eventKindOfId,
  eventSidOf,
  setEventSid,
} from "../../src/hw/smmuv3/index.js";
import { bytesToWords, wordsToBytes } from "../../src/hw/vtd/index.js";
import { assertBytes, checkPlacement, qw } from "./helpers.js";

const SSID = { ssv: "qw0 11", ssid: "qw0 31:12", sid: "qw0 63:32" };
const FAULT = {
  ...SSID,
  stag: "qw1 15:0",
  stall: "qw1 31",
  pnu: "qw1 33",
  ind: "qw1 34",
  rnw: "qw1 35",
  nsipa: "qw1 38",
  s2: "qw1 39",
  class: "qw1 41:40",
  inputAddr: "qw2 63:0",
};

test("event records: EventID in 7:0 and each record's fields at their positions", () => {
  const L = EVENT_LAYOUTS;
  checkPlacement(L.fUut, { ...SSID, pnu: "qw1 33", ind: "qw1 34", rnw: "qw1 35", inputAddr: "qw2 63:0" });
  checkPlacement(L.cBadStreamid, SSID);
  checkPlacement(L.fSteFetch, { ...SSID, fetchAddr: "qw3 51:3" });
  checkPlacement(L.cBadSte, SSID);
  checkPlacement(L.fStreamDisabled, { sid: "qw0 63:32" });
  checkPlacement(L.fTranslForbidden, { sid: "qw0 63:32", rnw: "qw1 35", inputAddr: "qw2 63:0" });
  checkPlacement(L.cBadSubstreamid, { ssid: "qw0 31:12", sid: "qw0 63:32" });
  checkPlacement(L.fCdFetch, { ...SSID, fetchAddr: "qw3 51:3" });
  checkPlacement(L.cBadCd, SSID);
  checkPlacement(L.fWalkEabt, { ...FAULT, fetchAddr: "qw3 51:3" });
  for (const l of [L.fTranslation, L.fAddrSize, L.fAccess, L.fPermission]) checkPlacement(l, { ...FAULT, ipa: "qw3 51:12" });
  checkPlacement(L.fCfgConflict, SSID);
});

test("the EventIDs are the architected values", () => {
  const ids = Object.fromEntries(Object.entries(EVENT_LAYOUTS).map(([k, l]) => [k, l.fixedValue[0]]));
  assert.deepEqual(ids, {
    fUut: 0x01,
    cBadStreamid: 0x02,
    fSteFetch: 0x03,
    cBadSte: 0x04,
    fStreamDisabled: 0x06,
    fTranslForbidden: 0x07,
    cBadSubstreamid: 0x08,
    fCdFetch: 0x09,
    cBadCd: 0x0a,
    fWalkEabt: 0x0b,
    fTranslation: 0x10,
    fAddrSize: 0x11,
    fAccess: 0x12,
    fPermission: 0x13,
    fCfgConflict: 0x21,
  });
});

test("F_TRANSLATION golden: a stalled stage-2 fault on a table walk read, with input address and IPA", () => {
  const bytes = encodeEvent({
    kind: "fTranslation",
    sid: 0x100,
    ssv: 1,
    ssid: 1,
    stag: 0x55,
    stall: 1,
    rnw: 1,
    s2: 1,
    class: EventClass.TT,
    inputAddr: 0xffff_0000_1234_5678n,
    ipa: 0x8_0000_0000,
  });
  assertBytes(bytes, qw(32, "0x0000010000001810", "0x0000018880000055", "0xffff000012345678", "0x0000000800000000"));
  const d = decodeEvent(bytes);
  assert.ok(d.kind === "fTranslation" && d.inputAddr === 0xffff_0000_1234_5678n && d.ipa === 0x8_0000_0000 && d.stag === 0x55);
});

test("C_BAD_STE and F_STREAM_DISABLED decode from their raw patterns", () => {
  assert.deepEqual(decodeEvent(qw(32, "0x0000004200000004", "0x0", "0x0", "0x0")), { kind: "cBadSte", ssv: 0, ssid: 0, sid: 0x42 });
  assert.deepEqual(decodeEvent(qw(32, "0x0000004200000006", "0x0", "0x0", "0x0")), { kind: "fStreamDisabled", sid: 0x42 });
  assert.deepEqual(decodeEvent(qw(32, "0x24", "0x0", "0x0", "0x0")), { kind: "unknown", eventId: EventId.E_PAGE_REQUEST });
  assert.equal(eventKindOfId(0x13), "fPermission");
});

test("the vEVENTQ forwards C_BAD_STE, F_STREAM_DISABLED, C_BAD_SUBSTREAMID, C_BAD_CD and the four translation faults, with the vSID", () => {
  assert.deepEqual([...VEVENTQ_FORWARDED_EVENTS].sort((a, b) => a - b), [0x04, 0x06, 0x08, 0x0a, 0x10, 0x11, 0x12, 0x13]);
  const w = bytesToWords(encodeEvent({ kind: "fPermission", sid: 0x1234, rnw: 0, inputAddr: 0x1000n }));
  assert.equal(eventIdOf(w), EventId.F_PERMISSION);
  assert.equal(eventSidOf(w), 0x1234);
  setEventSid(w, 0, 7);
  const d = decodeEvent(wordsToBytes(w));
  assert.ok(d.kind === "fPermission" && d.sid === 7 && d.inputAddr === 0x1000n);
});

test("PRI queue entry: SID 31:0, SSID 51:32, Priv/Exec/Read/Write/Last/SSV 58-63; PRG index, page address", () => {
  checkPlacement(PriEntry, {
    sid: "qw0 31:0",
    ssid: "qw0 51:32",
    priv: "qw0 58",
    exec: "qw0 59",
    read: "qw0 60",
    write: "qw0 61",
    last: "qw0 62",
    ssv: "qw0 63",
    prgIndex: "qw1 8:0",
    addr: "qw1 63:12",
  });
  const b = qw(16, "0xf000000500000100", "0x00007fff00000003");
  assertBytes(PriEntry.encode({ sid: 0x100, ssid: 5, ssv: 1, read: 1, write: 1, last: 1, prgIndex: 3, addr: 0x7fff_0000_0000 }), b);
  assert.deepEqual(PriEntry.decode(b), { sid: 0x100, ssid: 5, priv: 0, exec: 0, read: 1, write: 1, last: 1, ssv: 1, prgIndex: 3, addr: 0x7fff_0000_0000 });
  assert.deepEqual(PriEntry.reservedBitsSet(qw(16, 1n << 52n, 1n << 9n)), [52, 73]);
});
