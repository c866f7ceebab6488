/**
 * SMMUv3 stream table entries, L1 stream table descriptors, context descriptors and CD L1
 * descriptors: field positions, golden structures as the kernel's arm_smmu_make_*_ste/cd build
 * them, known patterns decoded, reserved bits, and the index arithmetic.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CacheAttr,
  Cd,
  Eats,
  L1Cd,
  L1Std,
  S1Dss,
  S1Fmt,
  Shareability,
  Ste,
  SteConfig,
  Strw,
  cdL1Index,
  cdL2Index,
  cdLeafEntries,
  cdTableEntries,
  spanEntries,
  spanFor,
  ssidWithinCdTable,
  steL1Index,
  steL2Index,
  steOffset,
} from "../../src/hw/smmuv3/index.js";
import { bytesToWords } from "../../src/hw/vtd/index.js";
import { assertBytes, checkPlacement, qw } from "./helpers.js";

const Z = "0x0";

test("STE: every field at its position in the 64-byte entry", () => {
  checkPlacement(Ste, {
    v: "qw0 0",
    config: "qw0 3:1",
    s1fmt: "qw0 5:4",
    s1ContextPtr: "qw0 51:6",
    s1cdmax: "qw0 63:59",
    s1dss: "qw1 1:0",
    s1cir: "qw1 3:2",
    s1cor: "qw1 5:4",
    s1csh: "qw1 7:6",
    s2hwu: "qw1 11:8",
    dre: "qw1 12",
    cont: "qw1 16:13",
    dcp: "qw1 17",
    ppar: "qw1 18",
    mev: "qw1 19",
    s2fwb: "qw1 25",
    s1stalld: "qw1 27",
    eats: "qw1 29:28",
    strw: "qw1 31:30",
    memattr: "qw1 35:32",
    mtcfg: "qw1 36",
    alloccfg: "qw1 40:37",
    shcfg: "qw1 45:44",
    nscfg: "qw1 47:46",
    privcfg: "qw1 49:48",
    instcfg: "qw1 51:50",
    s2vmid: "qw2 15:0",
    s2t0sz: "qw2 37:32",
    s2sl0: "qw2 39:38",
    s2ir0: "qw2 41:40",
    s2or0: "qw2 43:42",
    s2sh0: "qw2 45:44",
    s2tg: "qw2 47:46",
    s2ps: "qw2 50:48",
    s2aa64: "qw2 51",
    s2endi: "qw2 52",
    s2affd: "qw2 53",
    s2ptw: "qw2 54",
    s2hd: "qw2 55",
    s2ha: "qw2 56",
    s2s: "qw2 57",
    s2r: "qw2 58",
    s2ttb: "qw3 51:4",
  });
});

test("STE golden: a stage-1 CD-table STE (two-level 64 KiB leaves, 2^20 SSIDs, ATS, EL2 stream world)", () => {
  const bytes = Ste.encode({
    v: 1,
    config: SteConfig.S1_TRANS,
    s1fmt: S1Fmt.L2_64K,
    s1ContextPtr: 0xab_cdef_0000,
    s1cdmax: 20,
    s1dss: S1Dss.SSID0,
    s1cir: CacheAttr.WBRA,
    s1cor: CacheAttr.WBRA,
    s1csh: Shareability.ISH,
    eats: Eats.TRANS,
    strw: Strw.EL2,
  });
  assertBytes(bytes, qw(64, "0xa00000abcdef002b", "0x00000000900000d6", Z, Z, Z, Z, Z, Z));
});

test("STE golden: a stage-2 STE (VMID 0x15, 48-bit IPA walked from level 0 with SL0 2, 4 KiB granule, 48-bit PA)", () => {
  const bytes = Ste.encode({
    v: 1,
    config: SteConfig.S2_TRANS,
    shcfg: 1,
    s2vmid: 0x15,
    s2t0sz: 16,
    s2sl0: 2,
    s2ir0: CacheAttr.WBRA,
    s2or0: CacheAttr.WBRA,
    s2sh0: Shareability.ISH,
    s2tg: 0,
    s2ps: 5,
    s2aa64: 1,
    s2ptw: 1,
    s2r: 1,
    s2ttb: 0x1_2340_0000,
  });
  assertBytes(bytes, qw(64, "0xd", "0x0000100000000000", "0x044d359000000015", "0x0000000123400000", Z, Z, Z, Z));
});

test("STE: the abort and bypass patterns decode to Config 0 and 4", () => {
  const abort = Ste.decode(qw(64, "0x1", Z, Z, Z, Z, Z, Z, Z));
  assert.deepEqual(abort, { ...Ste.zero(), v: 1, config: SteConfig.ABORT });
  const bypass = Ste.decode(qw(64, "0x9", "0x0000100000000000", Z, Z, Z, Z, Z, Z));
  assert.deepEqual(bypass, { ...Ste.zero(), v: 1, config: SteConfig.BYPASS, shcfg: 1 });
});

test("STE: unassigned bits (58:52, 88:84, 90, 107:105, 127:116, 159:144, 191:187, 195:192, 255:244, words 4-7) are reserved", () => {
  const b = qw(64, 1n << 52n, (1n << 20n) | (1n << 26n) | (1n << 41n) | (1n << 63n), (1n << 16n) | (1n << 59n), (1n << 3n) | (1n << 52n), 1n, Z, Z, 1n << 63n);
  assert.deepEqual(Ste.reservedBitsSet(b), [52, 84, 90, 105, 127, 144, 187, 195, 244, 256, 511]);
});

test("STE accessors: config, S1ContextPtr and S2TTB read in place from a stream table", () => {
  const table = new Uint32Array(16 * 4);
  const base = steOffset(3) / 4;
  Ste.encodeInto(table, base, { v: 1, config: 7, s1ContextPtr: 0xf_ffff_ffff_ffc0, s2ttb: 0xf_ffff_ffff_fff0, s2vmid: 0xffff });
  assert.equal(Ste.acc.v.get(table, base), 1);
  assert.equal(Ste.acc.config.get(table, base), SteConfig.NESTED);
  assert.equal(Ste.acc.s1ContextPtr.get(table, base), 0xf_ffff_ffff_ffc0);
  assert.equal(Ste.acc.s2ttb.get(table, base), 0xf_ffff_ffff_fff0);
  assert.equal(Ste.acc.s2vmid.get(table, base), 0xffff);
  Ste.acc.s1ContextPtr.set(table, base, 0x40);
  assert.equal(Ste.decodeWords(table, base).s1ContextPtr, 0x40);
  assert.equal(Ste.decodeWords(table, base).config, 7);
  assert.ok(table.subarray(0, base).every((w) => w === 0));
});

test("L1 stream table descriptor: Span 4:0, L2Ptr 51:6", () => {
  checkPlacement(L1Std, { span: "qw0 4:0", l2ptr: "qw0 51:6" });
  assertBytes(L1Std.encode({ span: spanFor(8), l2ptr: 0x8_0000_4000 }), qw(8, "0x0000000800004009"));
});

test("CD: every field at its position in the 64-byte descriptor", () => {
  checkPlacement(Cd, {
    t0sz: "qw0 5:0",
    tg0: "qw0 7:6",
    ir0: "qw0 9:8",
    or0: "qw0 11:10",
    sh0: "qw0 13:12",
    epd0: "qw0 14",
    endi: "qw0 15",
    t1sz: "qw0 21:16",
    tg1: "qw0 23:22",
    ir1: "qw0 25:24",
    or1: "qw0 27:26",
    sh1: "qw0 29:28",
    epd1: "qw0 30",
    v: "qw0 31",
    ips: "qw0 34:32",
    affd: "qw0 35",
    wxn: "qw0 36",
    uwxn: "qw0 37",
    tbi0: "qw0 38",
    tbi1: "qw0 39",
    pan: "qw0 40",
    aa64: "qw0 41",
    hd: "qw0 42",
    ha: "qw0 43",
    s: "qw0 44",
    r: "qw0 45",
    a: "qw0 46",
    aset: "qw0 47",
    asid: "qw0 63:48",
    nscfg0: "qw1 0",
    had0: "qw1 1",
    ttb0: "qw1 51:4",
    hwu0: "qw1 62:59",
    nscfg1: "qw2 0",
    had1: "qw2 1",
    ttb1: "qw2 51:4",
    hwu1: "qw2 62:59",
    mair0: "qw3 31:0",
    mair1: "qw3 63:32",
    amair0: "qw4 31:0",
    amair1: "qw4 63:32",
    impdef0: "qw5 31:0",
    impdef1: "qw5 63:32",
  });
});

test("CD golden: a stage-1 CD as arm_smmu_make_s1_cd writes it (48-bit VA, 4 KiB, ASID 1, TTB1 walks disabled)", () => {
  const bytes = Cd.encode({
    t0sz: 16,
    tg0: 0,
    ir0: CacheAttr.WBRA,
    or0: CacheAttr.WBRA,
    sh0: Shareability.ISH,
    epd1: 1,
    v: 1,
    ips: 5,
    aa64: 1,
    r: 1,
    a: 1,
    aset: 1,
    asid: 1,
    ttb0: 0x1_0000_0000,
    mair0: 0xf404_44ff,
  });
  assertBytes(bytes, qw(64, "0x0001e205c0003510", "0x0000000100000000", Z, "0x00000000f40444ff", Z, Z, Z, Z));
  // Dirty tracking sets HA and HD together.
  const w = bytesToWords(bytes);
  Cd.acc.ha.set(w, 0, 1);
  Cd.acc.hd.set(w, 0, 1);
  assert.equal(w[1], 0x0001_ee05);
});

test("CD: a pattern with V clear decodes as an invalid CD whatever else it holds", () => {
  const cd = Cd.decode(qw(64, "0x0001e20540003510", Z, Z, Z, Z, Z, Z, Z));
  assert.equal(cd.v, 0);
  assert.equal(cd.asid, 1);
  assert.deepEqual(Cd.reservedBitsSet(qw(64, Z, (1n << 2n) | (1n << 52n) | (1n << 63n), 1n << 3n, Z, Z, Z, 1n, Z)), [66, 116, 127, 131, 384]);
});

test("CD table L1 descriptor: V 0, L2Ptr 51:12", () => {
  checkPlacement(L1Cd, { v: "qw0 0", l2ptr: "qw0 51:12" });
  assertBytes(L1Cd.encode({ v: 1, l2ptr: 0x4_5678_9000 }), qw(8, "0x0000000456789001"));
  assert.deepEqual(L1Cd.reservedBitsSet(qw(8, "0x0010000000000800")), [11, 52]);
});

test("stream table indexing: linear by SID * 64; two-level by SID >> SPLIT and SID & (2^SPLIT - 1)", () => {
  assert.equal(steOffset(3), 192);
  assert.equal(steL1Index(0x1234, 8), 0x12);
  assert.equal(steL2Index(0x1234, 8), 0x34);
  assert.equal(steL1Index(0xffff_ffff, 8), 0xff_ffff);
  assert.equal(spanEntries(0), 0);
  assert.equal(spanEntries(1), 1);
  assert.equal(spanEntries(9), 256);
  assert.equal(spanFor(8), 9);
});

test("CD table indexing: S1Fmt 1 has 64-CD leaves, S1Fmt 2 has 1024-CD leaves, linear has none", () => {
  assert.equal(cdLeafEntries(S1Fmt.LINEAR), 0);
  assert.equal(cdLeafEntries(S1Fmt.L2_4K), 64);
  assert.equal(cdLeafEntries(S1Fmt.L2_64K), 1024);
  assert.equal(cdL1Index(0x12345, S1Fmt.L2_64K), 0x48);
  assert.equal(cdL2Index(0x12345, S1Fmt.L2_64K), 0x345);
  assert.equal(cdL1Index(0x12345, S1Fmt.L2_4K), 0x48d);
  assert.equal(cdL2Index(0x12345, S1Fmt.L2_4K), 0x05);
  assert.equal(cdL1Index(77, S1Fmt.LINEAR), 0);
  assert.equal(cdL2Index(77, S1Fmt.LINEAR), 77);
  assert.equal(cdTableEntries(10), 1024);
  assert.equal(ssidWithinCdTable(1023, 10), true);
  assert.equal(ssidWithinCdTable(1024, 10), false);
  assert.equal(ssidWithinCdTable(0, 0), true);
});
