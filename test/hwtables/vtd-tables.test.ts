/**
 * VT-d root, context, PASID directory and PASID table entries: every field at its specification
 * position, hand-built golden entries, known patterns decoded, reserved bits, index arithmetic.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  LegacyContextEntry,
  LegacyRootEntry,
  PasidDirEntry,
  PasidEntry,
  Pgtt,
  SmContextEntry,
  SmRootEntry,
  awBits,
  awFromBits,
  awLevels,
  devfn,
  fspmLevels,
  legacyContextOffset,
  pasidDirEntries,
  pasidDirEntryOffset,
  pasidDirIndex,
  pasidEntryOffset,
  pasidTableIndex,
  pasidWithinDir,
  pdtsFor,
  rootEntryOffset,
  sidBus,
  sidDevfn,
  smContextIsUpper,
  smContextOffset,
  sourceId,
} from "../../src/hw/vtd/index.js";
import { assertBytes, checkPlacement, qw } from "./helpers.js";

test("legacy root entry: P at bit 0, context-table pointer at 63:12", () => {
  checkPlacement(LegacyRootEntry, { p: "qw0 0", ctp: "qw0 63:12" });
  assertBytes(LegacyRootEntry.encode({ p: 1, ctp: 0x7654_3000 }), qw(16, "0x0000000076543001", "0x0"));
});

test("scalable-mode root entry: lower table in qword 0, upper table in qword 1", () => {
  checkPlacement(SmRootEntry, { lp: "qw0 0", lctp: "qw0 63:12", up: "qw1 0", uctp: "qw1 63:12" });
  assertBytes(SmRootEntry.encode({ lp: 1, lctp: 0x1000, up: 1, uctp: 0xff_ffff_f000 }), qw(16, "0x0000000000001001", "0x000000fffffff001"));
  assert.deepEqual(SmRootEntry.decode(qw(16, "0x0", "0x0000000000abc001")), { lp: 0, lctp: 0, up: 1, uctp: 0xabc000 });
});

test("legacy context entry: P, FPD, TT, SLPTPTR; AW, ignored 70:67, DID 87:72", () => {
  checkPlacement(LegacyContextEntry, {
    p: "qw0 0",
    fpd: "qw0 1",
    tt: "qw0 3:2",
    slptptr: "qw0 63:12",
    aw: "qw1 2:0",
    avail: "qw1 6:3",
    did: "qw1 23:8",
  });
  // Pass-through (TT 2), 48-bit AW, domain 0x1234.
  assertBytes(LegacyContextEntry.encode({ p: 1, tt: 2, aw: 2, did: 0x1234 }), qw(16, "0x9", "0x123402"));
  // A 4-level second-stage table at 0x1_2345_6000 for domain 7.
  const e = LegacyContextEntry.decode(qw(16, "0x0000000123456001", "0x0000000000000702"));
  assert.deepEqual(e, { p: 1, fpd: 0, tt: 0, slptptr: 0x1_2345_6000, aw: 2, avail: 0, did: 7 });
});

test("legacy context entry: bit 71 and bits 127:88 are reserved", () => {
  const b = qw(16, "0x1", (1n << 7n) | (1n << 24n) | (1n << 63n));
  assert.deepEqual(LegacyContextEntry.reservedBitsSet(b), [64 + 7, 64 + 24, 127]);
});

test("scalable-mode context entry: P FPD DTE PASIDE PRE, PDTS 11:9, directory pointer; RID_PASID, RID_PRIV", () => {
  checkPlacement(SmContextEntry, {
    p: "qw0 0",
    fpd: "qw0 1",
    dte: "qw0 2",
    paside: "qw0 3",
    pre: "qw0 4",
    pdts: "qw0 11:9",
    pasiddirptr: "qw0 63:12",
    ridPasid: "qw1 19:0",
    ridPriv: "qw1 20",
  });
  // As the kernel sets up a device with ATS and PRI: directory at 0x4567_8000 for 2^20 PASIDs.
  assertBytes(
    SmContextEntry.encode({ p: 1, paside: 1, dte: 1, pre: 1, pdts: 7, pasiddirptr: 0x4567_8000 }),
    qw(32, "0x0000000045678e1d", "0x0", "0x0", "0x0"),
  );
  assertBytes(SmContextEntry.encode({ ridPasid: 0xfffff, ridPriv: 1 }), qw(32, "0x0", "0x1fffff", "0x0", "0x0"));
});

test("scalable-mode context entry: bits 8:5, 127:85 and the upper 128 bits are reserved", () => {
  const b = qw(32, "0x20", 1n << 21n, "0x0", 1n << 63n);
  assert.deepEqual(SmContextEntry.reservedBitsSet(b), [5, 64 + 21, 255]);
  assert.equal(SmContextEntry.hasReservedBits(new Uint32Array([0x1e0, 0, 0, 0, 0, 0, 0, 0])), true);
  assert.equal(SmContextEntry.hasReservedBits(new Uint32Array([0xe1f, 0, 0x1fffff, 0, 0, 0, 0, 0])), false);
});

test("PASID directory entry: P, FPD and a 4 KiB PASID-table pointer", () => {
  checkPlacement(PasidDirEntry, { p: "qw0 0", fpd: "qw0 1", ptp: "qw0 63:12" });
  assertBytes(PasidDirEntry.encode({ p: 1, fpd: 1, ptp: 0xabc000 }), qw(8, "0x0000000000abc003"));
});

test("PASID table entry: every field at its position in the 512-bit entry", () => {
  checkPlacement(PasidEntry, {
    p: "qw0 0",
    fpd: "qw0 1",
    aw: "qw0 4:2",
    pgtt: "qw0 8:6",
    ssade: "qw0 9",
    ssptptr: "qw0 63:12",
    did: "qw1 15:0",
    pwsnp: "qw1 23",
    pgsnp: "qw1 24",
    cd: "qw1 25",
    emte: "qw1 26",
    emt: "qw1 29:27",
    pwt: "qw1 30",
    pcd: "qw1 31",
    pat: "qw1 63:32",
    sre: "qw2 0",
    fspm: "qw2 3:2",
    wpe: "qw2 4",
    eafe: "qw2 7",
    fsptptr: "qw2 63:12",
  });
});

test("PASID table entry golden: nested translation as the kernel programs it for IOMMU_HWPT_DATA_VTD_S1", () => {
  const bytes = PasidEntry.encode({
    p: 1,
    aw: 2,
    pgtt: Pgtt.NESTED,
    ssade: 1,
    ssptptr: 0x1_2345_6000,
    did: 0x105,
    pwsnp: 1,
    sre: 1,
    eafe: 1,
    fspm: 0,
    fsptptr: 0x7fe0_0000,
  });
  assertBytes(bytes, qw(64, "0x00000001234562c9", "0x0000000000800105", "0x000000007fe00081", "0x0", "0x0", "0x0", "0x0", "0x0"));
});

test("PASID table entry golden: first-stage only, 5-level, WPE, PAT and PCD", () => {
  const bytes = PasidEntry.encode({ p: 1, pgtt: Pgtt.FIRST_STAGE, did: 1, pcd: 1, pat: 0x1234_5678, fspm: 1, wpe: 1, fsptptr: 0xf_ffff_f000 });
  assertBytes(bytes, qw(64, "0x0000000000000041", "0x1234567880000001", "0x0000000ffffff014", "0x0", "0x0", "0x0", "0x0", "0x0"));
});

test("PASID table entry: a pass-through entry written as raw qwords decodes to P, PGTT 4 and its DID", () => {
  const e = PasidEntry.decode(qw(64, "0x101", "0x2", "0x0", "0x0", "0x0", "0x0", "0x0", "0x0"));
  assert.equal(e.p, 1);
  assert.equal(e.pgtt, Pgtt.PASS_THROUGH);
  assert.equal(e.did, 2);
  assert.deepEqual({ ...e, p: 0, pgtt: 0, did: 0 }, PasidEntry.zero());
});

test("PASID table entry: bits 5, 11:10, 86:80, 129, 134:133, 139:136 and all of 511:192 are reserved", () => {
  const b = qw(64, (1n << 5n) | (1n << 10n) | (1n << 11n), 1n << 16n, (1n << 1n) | (1n << 5n) | (1n << 6n) | (1n << 8n), 0n, 0n, 0n, 0n, 1n << 63n);
  assert.deepEqual(PasidEntry.reservedBitsSet(b), [5, 10, 11, 80, 129, 133, 134, 136, 511]);
});

test("PASID table entry accessors read and write fields in place in a 4 KiB PASID table", () => {
  const page = new Uint32Array(1024);
  const pasid = 0x12345;
  const base = pasidEntryOffset(pasid) / 4;
  PasidEntry.encodeInto(page, base, { p: 1, pgtt: Pgtt.NESTED, did: 9, ssptptr: 0xffff_f000_0000, fsptptr: 0xffff_ffff_f000 });
  const a = PasidEntry.acc;
  assert.equal(a.p.get(page, base), 1);
  assert.equal(a.pgtt.get(page, base), 3);
  assert.equal(a.did.get(page, base), 9);
  assert.equal(a.ssptptr.get(page, base), 0xffff_f000_0000);
  assert.equal(a.fsptptr.get(page, base), 0xffff_ffff_f000);
  a.pgtt.set(page, base, Pgtt.PASS_THROUGH);
  a.fsptptr.set(page, base, 0x2000);
  assert.equal(PasidEntry.decodeWords(page, base).pgtt, 4);
  assert.equal(PasidEntry.decodeWords(page, base).fsptptr, 0x2000);
  assert.equal(PasidEntry.decodeWords(page, base).ssptptr, 0xffff_f000_0000);
  // Neighbouring entries are untouched.
  assert.ok(page.subarray(0, base).every((w) => w === 0));
  assert.ok(page.subarray(base + 16).every((w) => w === 0));
});

test("encoding a field out of range or an unaligned pointer is refused", () => {
  assert.throws(() => PasidEntry.encode({ pgtt: 8 }), /pgtt/);
  assert.throws(() => PasidEntry.encode({ ssptptr: 0x1234 }), /ssptptr/);
  assert.throws(() => PasidEntry.encode({ did: -1 }), /did/);
  assert.throws(() => PasidEntry.encode({ nope: 1 } as never), /unknown field/);
});

test("source IDs and root/context indexing: bus selects the root entry, devfn the context entry", () => {
  const sid = sourceId(0x3a, devfn(0x1f, 7));
  assert.equal(sid, 0x3aff);
  assert.equal(sidBus(sid), 0x3a);
  assert.equal(sidDevfn(sid), 0xff);
  assert.equal(rootEntryOffset(0x3a), 0x3a0);
  assert.equal(legacyContextOffset(0x85), 0x850);
  assert.equal(smContextIsUpper(0x7f), false);
  assert.equal(smContextIsUpper(0x80), true);
  assert.equal(smContextOffset(0x85), 5 * 32);
  assert.equal(smContextOffset(0x05), 5 * 32);
});

test("PASID indexing: directory index is pasid >> 6, table index is pasid & 0x3f", () => {
  assert.equal(pasidDirIndex(0x12345), 0x48d);
  assert.equal(pasidTableIndex(0x12345), 0x05);
  assert.equal(pasidDirIndex(0xfffff), 0x3fff);
  assert.equal(pasidTableIndex(0xfffff), 0x3f);
  assert.equal(pasidDirEntryOffset(0x12345), 0x48d * 8);
  assert.equal(pasidEntryOffset(0x12345), 5 * 64);
  assert.equal(pasidDirIndex(63), 0);
  assert.equal(pasidDirIndex(64), 1);
});

test("PDTS sizes the PASID directory at 2^(PDTS+7) entries", () => {
  assert.equal(pasidDirEntries(0), 128);
  assert.equal(pasidDirEntries(7), 16384);
  assert.equal(pasidWithinDir(128 * 64 - 1, 0), true);
  assert.equal(pasidWithinDir(128 * 64, 0), false);
  assert.equal(pasidWithinDir(0xfffff, 7), true);
  assert.equal(pasidWithinDir(0x100000, 7), false);
  assert.equal(pdtsFor(1), 0);
  assert.equal(pdtsFor(128 * 64), 0);
  assert.equal(pdtsFor(128 * 64 + 1), 1);
  assert.equal(pdtsFor(1 << 20), 7);
});

test("address-width codes: AW 1/2/3 are 39/48/57 bits and 3/4/5 levels; FSPM 0/1 are 4/5 levels", () => {
  assert.deepEqual([1, 2, 3].map(awBits), [39, 48, 57]);
  assert.deepEqual([1, 2, 3].map(awLevels), [3, 4, 5]);
  assert.deepEqual([39, 48, 57, 52].map(awFromBits), [1, 2, 3, -1]);
  assert.deepEqual([0, 1, 2].map(fspmLevels), [4, 5, -1]);
});
