/**
 * Golden tests for the VT-d formats, the expected descriptors written out by hand from the VT-d
 * specification (second-stage paging entries) and the SDM (x86-64 4-/5-level paging, the VT-d
 * first-stage format).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ACC_EXEC,
  ACC_READ,
  ACC_USER,
  ACC_WRITE,
  FAULT_ADDRESS_SIZE,
  FAULT_NONE,
  FAULT_PERMISSION,
  FAULT_RESERVED,
  FAULT_TRANSLATION,
  PT_ACCESSED,
  PT_CACHE,
  PT_DIRTY,
  PT_EXEC,
  PT_READ,
  PT_USER,
  PT_WRITE,
  vtdFirstStage,
  vtdSecondStage,
} from "../../src/hw/pagetable/format.js";
import { IommuError } from "../../src/errno.js";
import { at, bits, hx, newEngine, poke } from "./helpers.js";

const RW = PT_READ | PT_WRITE;

// ---- second stage ------------------------------------------------------------------------------

test("a VT-d second-stage 4 KiB leaf at level 1 has R=1 W=1 PS=0 and address bits 51:12", () => {
  const { eng } = newEngine(vtdSecondStage());
  eng.map(0x12345, 0x800001234, 1, RW); // IOVA 0x12345000 -> PA 0x8000_0123_4000
  const w = eng.walk(0x12345);
  assert.deepEqual(
    w.steps.map((s) => [s.level, s.name, s.kind]),
    [
      [4, "SS-PML4E", "table"],
      [3, "SS-PDPE", "table"],
      [2, "SS-PDE", "table"],
      [1, "SS-PTE", "leaf"],
    ],
  );
  assert.equal(bits(at(w, 1)), hx(0x00008000, 0x01234003));
  assert.equal(w.ppn, 0x800001234);
  assert.equal(w.leafPages, 1);
  assert.equal(w.perms & (ACC_READ | ACC_WRITE), ACC_READ | ACC_WRITE);
});

test("a VT-d second-stage read-only leaf has R=1 W=0; SNP, X, A and D come from prot", () => {
  const { eng } = newEngine(vtdSecondStage());
  eng.map(0x10, 0x5555, 1, PT_READ);
  assert.equal(bits(at(eng.walk(0x10), 1)), hx(0, 0x05555001));
  eng.map(0x11, 0x5555, 1, RW | PT_CACHE | PT_EXEC | PT_ACCESSED | PT_DIRTY);
  // SNP 11, D 9, A 8, X 2, W 1, R 0
  assert.equal(bits(at(eng.walk(0x11), 1)), hx(0, 0x05555b07));
});

test("a VT-d second-stage 2 MiB leaf at level 2 has PS=1, R/W bits, address bits 51:21", () => {
  const { eng } = newEngine(vtdSecondStage());
  eng.map(0x200, 0x12345600, 512, RW); // IOVA 2 MiB -> PA 0x123_4560_0000
  const w = eng.walk(0x2ff);
  assert.equal(w.steps.length, 3);
  assert.equal(at(w, 2).kind, "leaf");
  assert.equal(bits(at(w, 2)), hx(0x00000123, 0x45600083));
  assert.equal(w.ppn, 0x123456ff);
  assert.equal(w.leafPages, 512);
  assert.equal(w.leafLevel, 2);
});

test("a VT-d second-stage 1 GiB leaf at level 3 has PS=1, R/W bits, address bits 51:30", () => {
  const { eng } = newEngine(vtdSecondStage());
  eng.map(0x40000, 0x7c0000, 0x40000, RW); // IOVA 1 GiB -> PA 31 GiB
  const w = eng.walk(0x40001);
  assert.equal(w.steps.length, 2);
  assert.equal(bits(at(w, 3)), hx(0x00000007, 0xc0000083));
  assert.equal(w.ppn, 0x7c0001);
  assert.equal(w.leafPages, 0x40000);
});

test("VT-d second-stage table entries hold R|W and the next table's address, PS=0", () => {
  const { eng } = newEngine(vtdSecondStage());
  eng.map(0x7fffc0201, 0x1000, 1, RW);
  const w = eng.walk(0x7fffc0201);
  for (let i = 0; i < 3; i++) {
    const s = w.steps[i];
    const next = w.steps[i + 1];
    assert.equal(s.lo & 0xfff, 0x003, `${s.name} low bits`);
    assert.equal((s.lo & ~0xfff) >>> 0, next.tablePa % 2 ** 32);
    assert.equal(s.hi, Math.floor(next.tablePa / 2 ** 32));
  }
  assert.equal(w.steps[0].tablePa, eng.root * 4096);
});

test("the walk reads entry index*8 of each table, the index from IOVA bits 47:39, 38:30, 29:21, 20:12", () => {
  const { eng } = newEngine(vtdSecondStage());
  const vpn = 0x7fffc0201; // IOVA 0x7FFF_C020_1000
  eng.map(vpn, 0x3000, 1, RW);
  const w = eng.walk(vpn);
  assert.deepEqual(
    w.steps.map((s) => s.index),
    [0xff, 0x1ff, 0x1, 0x1],
  );
  for (const s of w.steps) assert.equal(s.entryPa, s.tablePa + s.index * 8);
});

test("a 5-level VT-d second stage resolves IOVA bits 56:48 in SS-PML5E", () => {
  const { eng } = newEngine(vtdSecondStage({ addressWidth: 57 }));
  assert.equal(eng.format.name, "vtd-ss-5level");
  const vpn = 0x123456789a; // IOVA 0x1_2345_6789_A000
  eng.map(vpn, 0xabc, 1, RW);
  const w = eng.walk(vpn);
  assert.deepEqual(
    w.steps.map((s) => [s.name, s.index]),
    [
      ["SS-PML5E", 0x1],
      ["SS-PML4E", 0x46],
      ["SS-PDPE", 0x115],
      ["SS-PDE", 0x13c],
      ["SS-PTE", 0x9a],
    ],
  );
  assert.equal(eng.translate(vpn, ACC_READ), 0xabc);
  // The top of the 57-bit space.
  const top = 2 ** 45 - 1;
  eng.map(top, 0xdef, 1, RW);
  assert.equal(eng.translate(top, ACC_WRITE), 0xdef);
});

test("a 3-level VT-d second stage (AW 39) starts at SS-PDPE and refuses IOVAs of 2^39 and up", () => {
  const { eng } = newEngine(vtdSecondStage({ addressWidth: 39 }));
  eng.map(0x7ffffff, 0x10, 1, RW);
  assert.deepEqual(
    eng.walk(0x7ffffff).steps.map((s) => s.name),
    ["SS-PDPE", "SS-PDE", "SS-PTE"],
  );
  assert.throws(
    () => eng.map(0x8000000, 0x10, 1, RW),
    (e: unknown) => e instanceof IommuError && e.code === "EINVAL",
  );
  assert.equal(eng.translate(0x8000000, ACC_READ), -1);
  assert.equal(eng.fault, FAULT_ADDRESS_SIZE);
});

test("without 1 GiB second-stage pages a 1 GiB aligned map is built from 2 MiB leaves", () => {
  const { eng } = newEngine(vtdSecondStage({ largePages1G: false }));
  eng.map(0x40000, 0x80000, 0x40000, RW);
  const w = eng.walk(0x40000);
  assert.equal(w.leafLevel, 2);
  assert.equal(bits(at(w, 2)), hx(0, 0x80000083));
  const { eng: small } = newEngine(vtdSecondStage({ largePages2M: false, largePages1G: false }));
  small.map(0x200, 0x400, 512, RW);
  assert.equal(small.walk(0x3ff).leafLevel, 1);
});

test("PS=1 at a level without large pages is a reserved-field fault at that level", () => {
  const { mem, eng } = newEngine(vtdSecondStage({ largePages1G: false }));
  eng.map(0x40000, 0x77, 1, RW);
  poke(mem, at(eng.walk(0x40000), 3), 0, 0x80000083);
  assert.equal(eng.translate(0x40000, ACC_READ), -1);
  assert.equal(eng.fault, FAULT_RESERVED);
  assert.equal(eng.faultLevel, 3);
  assert.equal(eng.walk(0x40000).fault, FAULT_RESERVED);
});

test("a second-stage entry with R=W=0 is not present: a translation fault at its level", () => {
  const { mem, eng } = newEngine(vtdSecondStage());
  eng.map(0x1000, 0x77, 1, RW);
  const s2 = at(eng.walk(0x1000), 2);
  poke(mem, s2, s2.hi, s2.lo & ~3);
  assert.equal(eng.translate(0x1000, ACC_READ), -1);
  assert.equal(eng.fault, FAULT_TRANSLATION);
  assert.equal(eng.faultLevel, 2);
  assert.equal(eng.translate(0x999999, ACC_READ), -1);
  assert.equal(eng.faultLevel, 3, "nothing mapped below the SS-PML4E's first entry: the SS-PDPE is empty");
});

test("R and W in a second-stage table entry limit everything below it", () => {
  const { mem, eng } = newEngine(vtdSecondStage());
  eng.map(0x1000, 0x77, 1, RW);
  const s3 = at(eng.walk(0x1000), 3);
  poke(mem, s3, s3.hi, s3.lo & ~2);
  assert.equal(eng.translate(0x1000, ACC_READ), 0x77);
  assert.equal(eng.perms & ACC_WRITE, 0);
  assert.equal(eng.translate(0x1000, ACC_WRITE), -1);
  assert.equal(eng.fault, FAULT_PERMISSION);
  assert.equal(eng.translate(0x1000, ACC_EXEC), -1, "X is not granted by R|W");
});

// ---- first stage ---------------------------------------------------------------------------------

test("a VT-d first-stage 4 KiB PTE has P, R/W, U/S, address bits 51:12 and XD without exec", () => {
  const { eng } = newEngine(vtdFirstStage());
  eng.map(0x12345, 0x800001234, 1, RW | PT_USER);
  const w = eng.walk(0x12345);
  assert.deepEqual(
    w.steps.map((s) => s.name),
    ["FS-PML4E", "FS-PDPE", "FS-PDE", "FS-PTE"],
  );
  assert.equal(bits(at(w, 1)), hx(0x80008000, 0x01234007));
  eng.map(0x12346, 0x1234, 1, PT_READ | PT_EXEC | PT_ACCESSED | PT_DIRTY);
  // supervisor, read-only, executable, A and D preset: P 0, A 5, D 6
  assert.equal(bits(at(eng.walk(0x12346), 1)), hx(0, 0x01234061));
});

test("VT-d first-stage table entries are P|R/W|U/S|A and point at the next table", () => {
  const { eng } = newEngine(vtdFirstStage());
  eng.map(0x12345, 0x1, 1, PT_READ);
  const w = eng.walk(0x12345);
  for (let i = 0; i < 3; i++) {
    assert.equal(w.steps[i].lo & 0xfff, 0x027);
    assert.equal(w.steps[i].lo - 0x27, w.steps[i + 1].tablePa);
  }
});

test("a VT-d first-stage 2 MiB page is a PDE with PS=1 and address bits 51:21", () => {
  const { eng } = newEngine(vtdFirstStage());
  eng.map(0x200, 0x12345600, 512, RW | PT_USER | PT_EXEC);
  const w = eng.walk(0x200);
  assert.equal(w.leafLevel, 2);
  assert.equal(bits(at(w, 2)), hx(0x00000123, 0x45600087));
});

test("a VT-d first-stage 1 GiB page is a PDPE with PS=1 only with FS1GP", () => {
  const { eng } = newEngine(vtdFirstStage());
  eng.map(0x40000, 0x7c0000, 0x40000, RW | PT_EXEC);
  assert.equal(bits(at(eng.walk(0x40000), 3)), hx(0x00000007, 0xc0000083));
  const { eng: no1g } = newEngine(vtdFirstStage({ largePages1G: false }));
  no1g.map(0x40000, 0x7c0000, 0x40000, RW);
  assert.equal(no1g.walk(0x40000).leafLevel, 2);
});

test("first stage: the hardware sets A in every entry it uses, and D in the leaf on a write", () => {
  const { mem, eng } = newEngine(vtdFirstStage());
  eng.map(0x12345, 0x42, 1, RW);
  const top = at(eng.walk(0x12345), 4);
  poke(mem, top, top.hi, top.lo & ~0x20);
  assert.equal(at(eng.walk(0x12345), 1).lo & 0x60, 0, "mapped with A and D clear");
  assert.equal(eng.translate(0x12345, ACC_READ), 0x42);
  let w = eng.walk(0x12345);
  assert.equal(at(w, 4).lo & 0x20, 0x20, "A set in the PML4E again");
  assert.equal(at(w, 1).lo & 0x60, 0x20, "A set in the PTE, D still clear after a read");
  eng.translate(0x12345, ACC_WRITE);
  w = eng.walk(0x12345);
  assert.equal(at(w, 1).lo & 0x60, 0x60, "D set by the write");
});

test("first stage: a user request needs U/S in every entry; a write needs R/W in every entry", () => {
  const { mem, eng } = newEngine(vtdFirstStage());
  eng.map(0x12345, 0x42, 1, RW | PT_USER);
  assert.equal(eng.translate(0x12345, ACC_READ | ACC_USER), 0x42);
  const pdpe = at(eng.walk(0x12345), 3);
  poke(mem, pdpe, pdpe.hi, pdpe.lo & ~0x4);
  assert.equal(eng.translate(0x12345, ACC_READ | ACC_USER), -1);
  assert.equal(eng.fault, FAULT_PERMISSION);
  assert.equal(eng.translate(0x12345, ACC_WRITE), 0x42, "supervisor writes still allowed");
  const pde = at(eng.walk(0x12345), 2);
  poke(mem, pde, pde.hi, pde.lo & ~0x2);
  assert.equal(eng.translate(0x12345, ACC_WRITE), -1);
  assert.equal(eng.translate(0x12345, ACC_READ), 0x42);
});

test("first stage: XD in any entry on the path forbids execution", () => {
  const { mem, eng } = newEngine(vtdFirstStage());
  eng.map(0x12345, 0x42, 1, RW | PT_EXEC);
  assert.equal(eng.translate(0x12345, ACC_EXEC), 0x42);
  const pml4e = at(eng.walk(0x12345), 4);
  poke(mem, pml4e, pml4e.hi | 0x80000000, pml4e.lo);
  assert.equal(eng.translate(0x12345, ACC_EXEC), -1);
  assert.equal(eng.fault, FAULT_PERMISSION);
  assert.equal(eng.translate(0x12345, ACC_READ), 0x42);
  eng.map(0x22345, 0x43, 1, RW);
  assert.equal(eng.translate(0x22345, ACC_EXEC), -1, "mapped without PT_EXEC: XD");
});

test("first stage: PS in a PML4E is reserved", () => {
  const { mem, eng } = newEngine(vtdFirstStage());
  eng.map(0x12345, 0x42, 1, RW);
  const pml4e = at(eng.walk(0x12345), 4);
  poke(mem, pml4e, pml4e.hi, pml4e.lo | 0x80);
  assert.equal(eng.translate(0x12345, ACC_READ), -1);
  assert.equal(eng.fault, FAULT_RESERVED);
  assert.equal(eng.faultLevel, 4);
});

test("5-level first-stage paging translates 57-bit addresses through FS-PML5E", () => {
  const { eng } = newEngine(vtdFirstStage({ levels: 5 }));
  const vpn = 0x123456789a;
  eng.map(vpn, 0x99, 1, RW);
  const w = eng.walk(vpn, ACC_READ);
  assert.equal(w.fault, FAULT_NONE);
  assert.deepEqual(
    w.steps.map((s) => [s.name, s.index]),
    [
      ["FS-PML5E", 0x1],
      ["FS-PML4E", 0x46],
      ["FS-PDPE", 0x115],
      ["FS-PDE", 0x13c],
      ["FS-PTE", 0x9a],
    ],
  );
});
