/**
 * Golden tests for the Arm VMSAv8-64 formats (stage 1 and stage 2; 4, 16 and 64 KiB granules),
 * the expected descriptors written out by hand from the Arm ARM's descriptor layouts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ACC_EXEC,
  ACC_READ,
  ACC_USER,
  ACC_WRITE,
  FAULT_ACCESS_FLAG,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  PT_ACCESSED,
  PT_CACHE,
  PT_EXEC,
  PT_MMIO,
  PT_READ,
  PT_USER,
  PT_WRITE,
  armStage1,
  armStage2,
} from "../../src/hw/pagetable/format.js";
import { IommuError } from "../../src/errno.js";
import { at, bits, hx, newEngine, poke } from "./helpers.js";

const RW = PT_READ | PT_WRITE;
const LINUX = RW | PT_CACHE | PT_ACCESSED; // what io-pgtable-arm writes for IOMMU_READ|WRITE|CACHE

// ---- stage 1 ---------------------------------------------------------------------------------------

test("an Arm stage-1 page at level 3 has bits 1:0=0b11, AttrIndx 4:2, AP 7:6, SH 9:8, AF 10, nG 11, OA 47:12, PXN/UXN 54:53", () => {
  const { eng } = newEngine(armStage1());
  eng.map(0x12345, 0x800001234, 1, LINUX | PT_USER);
  const w = eng.walk(0x12345);
  assert.deepEqual(
    w.steps.map((s) => [s.name, s.kind]),
    [
      ["L0", "table"],
      ["L1", "table"],
      ["L2", "table"],
      ["L3", "leaf"],
    ],
  );
  // nG | AF | SH=0b11 | AP=0b01 (EL0 RW) | AttrIndx=1 | page; UXN|PXN (no PT_EXEC)
  assert.equal(bits(at(w, 3)), hx(0x00608000, 0x01234f47));
});

test("an Arm stage-1 read-only privileged executable page has AP=0b10, outer shareable, AttrIndx 0", () => {
  const { eng } = newEngine(armStage1());
  eng.map(0x10, 0x20, 1, PT_READ | PT_EXEC | PT_ACCESSED);
  assert.equal(bits(at(eng.walk(0x10), 3)), hx(0, 0x00020e83));
  eng.map(0x11, 0x20, 1, RW | PT_MMIO | PT_ACCESSED | PT_EXEC);
  assert.equal(bits(at(eng.walk(0x11), 3)), hx(0, 0x00020e0b), "device memory: AttrIndx 2");
});

test("an Arm stage-1 level-2 block has bits 1:0=0b01 and OA 47:21", () => {
  const { eng } = newEngine(armStage1());
  eng.map(0x200, 0x12345600, 512, LINUX | PT_EXEC);
  const w = eng.walk(0x3ff);
  assert.equal(w.leafLevel, 2);
  assert.equal(bits(at(w, 2)), hx(0x00000123, 0x45600f05));
  assert.equal(w.ppn, 0x123457ff);
});

test("an Arm stage-1 level-1 block maps 1 GiB with OA 47:30", () => {
  const { eng } = newEngine(armStage1());
  eng.map(0x40000, 0x7c0000, 0x40000, LINUX | PT_EXEC);
  const w = eng.walk(0x40000);
  assert.equal(w.leafLevel, 1);
  assert.equal(bits(at(w, 1)), hx(0x00000007, 0xc0000f05));
});

test("Arm table descriptors are 0b11 with the next-level table's address and nothing else", () => {
  for (const fmt of [armStage1(), armStage2()]) {
    const { eng } = newEngine(fmt);
    eng.map(0x12345, 0x1, 1, LINUX);
    const w = eng.walk(0x12345);
    for (let i = 0; i + 1 < w.steps.length; i++) {
      assert.equal(w.steps[i].lo, w.steps[i + 1].tablePa + 3, `${fmt.name} ${w.steps[i].name}`);
      assert.equal(w.steps[i].hi, 0);
    }
  }
});

test("a 39-bit stage-1 VA space starts at level 1; 2^39 and above is out of range", () => {
  const { eng } = newEngine(armStage1({ inputBits: 39 }));
  eng.map(0x7ffffff, 0x10, 1, LINUX);
  assert.deepEqual(
    eng.walk(0x7ffffff).steps.map((s) => s.name),
    ["L1", "L2", "L3"],
  );
  assert.throws(
    () => eng.map(0x8000000, 0x10, 1, LINUX),
    (e: unknown) => e instanceof IommuError && e.code === "EINVAL",
  );
});

test("with the 4 KiB granule a block descriptor at level 0 is invalid: a translation fault", () => {
  const { mem, eng } = newEngine(armStage1());
  eng.map(0x12345, 0x1, 1, LINUX);
  const l0 = at(eng.walk(0x12345), 0);
  poke(mem, l0, 0, 0x00000401); // a block-looking descriptor
  assert.equal(eng.translate(0x12345, ACC_READ), -1);
  assert.equal(eng.fault, FAULT_TRANSLATION);
  assert.equal(eng.faultLevel, 0);
});

test("a level-3 descriptor with bit 1 clear is reserved: a translation fault", () => {
  const { mem, eng } = newEngine(armStage1());
  eng.map(0x12345, 0x1, 1, LINUX);
  const l3 = at(eng.walk(0x12345), 3);
  poke(mem, l3, l3.hi, l3.lo & ~2);
  assert.equal(eng.translate(0x12345, ACC_READ), -1);
  assert.equal(eng.fault, FAULT_TRANSLATION);
  assert.equal(eng.faultLevel, 3);
});

test("AF=0 is an access flag fault unless the hardware manages AF (HA), which then sets it", () => {
  const { eng } = newEngine(armStage1());
  eng.map(0x12345, 0x1, 1, RW);
  assert.equal(eng.translate(0x12345, ACC_READ), -1);
  assert.equal(eng.fault, FAULT_ACCESS_FLAG);
  assert.equal(eng.faultLevel, 3);
  eng.setHardwareUpdates(true, false);
  assert.equal(eng.translate(0x12345, ACC_READ), 1);
  assert.equal(at(eng.walk(0x12345), 3).lo & 0x400, 0x400);
});

test("stage 1: AP[2] refuses writes, AP[1]=0 refuses unprivileged (EL0) accesses, XN refuses execution", () => {
  const { eng } = newEngine(armStage1());
  eng.map(0x10, 0x20, 1, PT_READ | PT_ACCESSED);
  assert.equal(eng.translate(0x10, ACC_READ), 0x20);
  assert.equal(eng.translate(0x10, ACC_WRITE), -1);
  assert.equal(eng.fault, FAULT_PERMISSION);
  assert.equal(eng.translate(0x10, ACC_READ | ACC_USER), -1);
  assert.equal(eng.translate(0x10, ACC_EXEC), -1);
  eng.map(0x11, 0x20, 1, RW | PT_USER | PT_EXEC | PT_ACCESSED);
  assert.equal(eng.translate(0x11, ACC_WRITE | ACC_USER | ACC_EXEC), 0x20);
});

test("stage 1: APTable[1] in a table descriptor forbids writes to everything below it", () => {
  const { mem, eng } = newEngine(armStage1());
  eng.map(0x12345, 0x1, 1, LINUX);
  const l1 = at(eng.walk(0x12345), 1);
  poke(mem, l1, l1.hi | (1 << 30), l1.lo); // bit 62
  assert.equal(eng.translate(0x12345, ACC_READ), 1);
  assert.equal(eng.translate(0x12345, ACC_WRITE), -1);
  assert.equal(eng.fault, FAULT_PERMISSION);
});

// ---- stage 2 -----------------------------------------------------------------------------------------

test("an Arm stage-2 page has MemAttr 5:2, S2AP 7:6, SH 9:8, AF 10, OA 47:12 and XN 54", () => {
  const { eng } = newEngine(armStage2());
  eng.map(0x12345, 0x800001234, 1, LINUX | PT_EXEC);
  // AF | SH=0b11 | S2AP=0b11 | MemAttr=0b1111 (write-back) | page
  assert.equal(bits(at(eng.walk(0x12345), 3)), hx(0x00008000, 0x012347ff));
  eng.map(0x12346, 0x1234, 1, PT_WRITE | PT_ACCESSED);
  // write-only, normal non-cacheable (MemAttr 0b0101), outer shareable, XN
  assert.equal(bits(at(eng.walk(0x12346), 3)), hx(0x00400000, 0x01234697));
  eng.map(0x12347, 0x1234, 1, RW | PT_MMIO | PT_ACCESSED);
  assert.equal(at(eng.walk(0x12347), 3).lo & 0x3c, 0x4, "device memory: MemAttr 0b0001");
});

test("an Arm stage-2 level-2 block has bits 1:0=0b01", () => {
  const { eng } = newEngine(armStage2());
  eng.map(0x200, 0x12345600, 512, LINUX);
  assert.equal(bits(at(eng.walk(0x200), 2)), hx(0x00400123, 0x456007fd));
});

test("stage 2: S2AP[1]=0 refuses writes and S2AP[0]=0 refuses reads", () => {
  const { eng } = newEngine(armStage2());
  eng.map(0x10, 0x20, 1, PT_READ | PT_ACCESSED);
  eng.map(0x11, 0x21, 1, PT_WRITE | PT_ACCESSED);
  assert.equal(eng.translate(0x10, ACC_READ), 0x20);
  assert.equal(eng.translate(0x10, ACC_WRITE), -1);
  assert.equal(eng.fault, FAULT_PERMISSION);
  assert.equal(eng.translate(0x11, ACC_WRITE), 0x21);
  assert.equal(eng.translate(0x11, ACC_READ), -1);
  assert.equal(eng.translate(0x11, ACC_READ | ACC_USER), -1, "stage 2 has no EL0 distinction");
  assert.equal(eng.translate(0x11, ACC_WRITE | ACC_USER), 0x21);
});

test("a 40-bit IPA stage 2 starts at level 1 with two concatenated tables (1024 entries)", () => {
  const fmt = armStage2({ inputBits: 40 });
  assert.deepEqual(
    fmt.levels.map((l) => [l.name, l.bits, l.frames]),
    [
      ["L1", 10, 2],
      ["L2", 9, 1],
      ["L3", 9, 1],
    ],
  );
  const { eng } = newEngine(fmt);
  assert.equal(eng.tablePages, 2);
  const vpn = 0xffc0000; // IPA 0xFF_C000_0000, the last GiB
  eng.map(vpn, 0x5, 1, LINUX);
  const w = eng.walk(vpn);
  assert.equal(w.steps[0].index, 0x3ff);
  assert.equal(w.steps[0].entryPa, w.steps[0].tablePa + 0x3ff * 8, "in the second concatenated table");
  assert.equal(eng.translate(vpn, ACC_READ), 0x5);
  assert.deepEqual(
    armStage2({ inputBits: 48 }).levels.map((l) => l.name),
    ["L0", "L1", "L2", "L3"],
    "512 level-0 entries: no concatenation",
  );
  assert.deepEqual(
    armStage2({ inputBits: 40, startLevel: 0 }).levels.map((l) => [l.name, l.bits]),
    [
      ["L0", 1],
      ["L1", 9],
      ["L2", 9],
      ["L3", 9],
    ],
  );
});

// ---- other granules ----------------------------------------------------------------------------------

test("16 KiB granule: 11 index bits a level, 16 KiB pages at level 3, 32 MiB blocks at level 2", () => {
  const fmt = armStage1({ granule: 16384 });
  assert.deepEqual(
    fmt.levels.map((l) => [l.name, l.shift, l.bits, l.leaf]),
    [
      ["L0", 47, 1, false],
      ["L1", 36, 11, false],
      ["L2", 25, 11, true],
      ["L3", 14, 11, true],
    ],
  );
  const { eng } = newEngine(fmt);
  eng.map(0x12344, 0x800001234, 4, LINUX); // IOVA 0x1234_4000, one 16 KiB page
  const w = eng.walk(0x12347);
  assert.deepEqual(
    w.steps.map((s) => s.index),
    [0, 0, 0x9, 0xd1],
  );
  assert.equal(bits(at(w, 3)), hx(0x00608000, 0x01234f07));
  assert.equal(w.ppn, 0x800001237);
  assert.throws(() => eng.map(0x12349, 0x10, 4, LINUX), /EINVAL/);
  eng.map(0x2000, 0x4000, 0x2000, LINUX); // 32 MiB
  assert.equal(eng.walk(0x2000).leafLevel, 2);
  assert.equal(at(eng.walk(0x2000), 2).lo & 3, 1);
});

test("64 KiB granule: 64 KiB tables of 8192 entries spread over 16 frames, 512 MiB blocks", () => {
  const fmt = armStage1({ granule: 65536 });
  assert.deepEqual(
    fmt.levels.map((l) => [l.name, l.shift, l.bits, l.frames]),
    [
      ["L1", 42, 6, 1],
      ["L2", 29, 13, 16],
      ["L3", 16, 13, 16],
    ],
  );
  const { eng } = newEngine(fmt);
  const vpn = 0xffffffff0; // IOVA 0xFFFF_FFFF_0000
  eng.map(vpn, 0x10, 16, LINUX);
  const w = eng.walk(vpn + 15);
  assert.deepEqual(
    w.steps.map((s) => s.index),
    [0x3f, 0x1fff, 0x1fff],
  );
  assert.equal(at(w, 3).entryPa, at(w, 3).tablePa + 0x1fff * 8, "in the table's 16th frame");
  assert.equal(w.ppn, 0x1f);
  assert.equal(eng.tablePages, 1 + 16 + 16);
  eng.map(0x20000, 0x40000, 0x20000, LINUX);
  assert.equal(eng.walk(0x20000).leafLevel, 2);
  assert.equal(eng.walk(0x20000).leafPages, 0x20000);
});
