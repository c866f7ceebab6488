/** The generic engine's rules: leaf choice, collisions, splitting, freeing, validation. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { IommuError } from "../../src/errno.js";
import {
  ACC_READ,
  ACC_WRITE,
  FAULT_TRANSLATION,
  PT_ACCESSED,
  PT_CACHE,
  PT_MMIO,
  PT_READ,
  PT_WRITE,
  armStage1,
  armStage2,
  vtdFirstStage,
  vtdSecondStage,
} from "../../src/hw/pagetable/format.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { at, bits, newEngine, newMem } from "./helpers.js";

const RW = PT_READ | PT_WRITE;
const code = (c: string) => (e: unknown) => e instanceof IommuError && e.code === c;

test("map uses the largest leaf both addresses' alignment and the remaining length allow", () => {
  const { eng } = newEngine(vtdSecondStage());
  // 1 GiB + 2 MiB + 4 KiB starting 1 GiB aligned on both sides
  eng.map(0x40000, 0x80000, 0x40000 + 0x200 + 1, RW);
  assert.equal(eng.walk(0x40000).leafLevel, 3);
  assert.equal(eng.walk(0x80000).leafLevel, 2);
  assert.equal(eng.walk(0x80200).leafLevel, 1);
  assert.equal(eng.translate(0x80200, ACC_READ), 0xc0200);
  assert.equal(eng.translate(0x80201, ACC_READ), -1);
  // Output misaligned by one page: 4 KiB leaves all the way.
  eng.map(0x100000, 0x80001, 0x400, RW);
  assert.equal(eng.walk(0x100000).leafLevel, 1);
  assert.equal(eng.walk(0x1003ff).leafLevel, 1);
  // Input starts one page before a 2 MiB boundary: 4 KiB, then 2 MiB.
  eng.map(0x1801ff, 0x2001ff, 0x201, RW);
  assert.equal(eng.walk(0x1801ff).leafLevel, 1);
  assert.equal(eng.walk(0x180200).leafLevel, 2);
});

test("map over anything already mapped is EEXIST and leaves nothing of the call mapped", () => {
  const { mem, eng } = newEngine(vtdSecondStage());
  eng.map(0x205, 0x1, 1, RW);
  const frames = mem.tableFrames;
  const before = eng.walk(0x205);
  assert.throws(() => eng.map(0x100, 0x1000, 0x200, RW), code("EEXIST"));
  assert.equal(eng.translate(0x100, ACC_READ), -1);
  assert.equal(eng.translate(0x204, ACC_READ), -1);
  assert.deepEqual(eng.walk(0x205), before);
  assert.equal(mem.tableFrames, frames);
  // A large leaf in the way.
  eng.map(0x40000, 0x40000, 0x40000, RW);
  assert.throws(() => eng.map(0x3fff0, 0x10, 0x20, RW), code("EEXIST"));
  assert.equal(eng.translate(0x3fff0, ACC_READ), -1);
  assert.equal(mem.tableFrames, frames);
  // Mapping a large leaf over a table that holds a mapping.
  assert.throws(() => eng.map(0x200, 0x200, 0x200, RW), code("EEXIST"));
  assert.equal(eng.translate(0x200, ACC_READ), -1);
});

test("map refuses misaligned, out-of-range and no-access requests with EINVAL, changing nothing", () => {
  const { mem, eng } = newEngine(armStage1({ granule: 16384 }));
  const frames = mem.tableFrames;
  assert.throws(() => eng.map(1, 0, 4, RW), code("EINVAL"));
  assert.throws(() => eng.map(0, 2, 4, RW), code("EINVAL"));
  assert.throws(() => eng.map(0, 0, 3, RW), code("EINVAL"));
  assert.throws(() => eng.map(2 ** 36 - 4, 0, 8, RW), code("EINVAL"));
  assert.throws(() => eng.map(0, 2 ** 36, 4, RW), code("EINVAL"), "beyond 48-bit output");
  assert.throws(() => eng.map(0, 0, 4, PT_CACHE), code("EINVAL"));
  assert.throws(() => eng.map(-4, 0, 4, RW), code("EINVAL"));
  assert.throws(() => eng.map(0.5, 0, 4, RW), code("EINVAL"));
  assert.equal(mem.tableFrames, frames);
  eng.map(0, 0, 0, RW);
  assert.equal(eng.unmap(0, 0), 0);
});

test("PT_MMIO wins over PT_CACHE", () => {
  const { eng } = newEngine(armStage1());
  eng.map(0x10, 0x10, 1, RW | PT_CACHE | PT_MMIO | PT_ACCESSED);
  assert.equal(at(eng.walk(0x10), 3).lo & 0x31c, 0x208, "AttrIndx 2, outer shareable");
});

test("unmap cutting a 2 MiB leaf splits it: the rest stays mapped with the same attributes", () => {
  for (const fmt of [vtdSecondStage(), vtdFirstStage(), armStage1(), armStage2()]) {
    const { eng } = newEngine(fmt);
    eng.map(0x200, 0x1000, 0x200, RW | PT_ACCESSED);
    const leaf = at(eng.walk(0x200), 2);
    assert.equal(eng.unmap(0x210, 3), 3, fmt.name);
    for (let p = 0x200; p < 0x400; p++) {
      const want = p >= 0x210 && p < 0x213 ? -1 : 0x1000 + (p - 0x200);
      assert.equal(eng.translate(p, ACC_READ), want, `${fmt.name} page ${p.toString(16)}`);
    }
    const w = eng.walk(0x200);
    assert.equal(w.leafLevel, 1 + (fmt.kind.startsWith("arm") ? 2 : 0), fmt.name);
    const page = w.steps[w.steps.length - 1];
    // Same attribute bits; only the type bits and the address differ.
    const typeLo = fmt.kind.startsWith("arm") ? 0x3 : 0x80;
    assert.equal(page.lo & 0xfff & ~typeLo, leaf.lo & 0xfff & ~typeLo, fmt.name);
    assert.equal(page.hi & 0xfff00000, leaf.hi & 0xfff00000, fmt.name);
  }
});

test("unmap cutting a 1 GiB leaf splits it twice, keeping 2 MiB leaves where it can", () => {
  const { eng } = newEngine(vtdSecondStage());
  eng.map(0x40000, 0x40000, 0x40000, RW);
  assert.equal(eng.unmap(0x40201, 1), 1);
  assert.equal(eng.walk(0x40000).leafLevel, 2);
  assert.equal(eng.walk(0x40200).leafLevel, 1);
  assert.equal(eng.walk(0x40400).leafLevel, 2);
  assert.equal(eng.walk(0x7fe00).leafLevel, 2);
  assert.equal(eng.translate(0x40201, ACC_READ), -1);
  assert.equal(eng.translate(0x40202, ACC_READ), 0x40202);
  assert.equal(eng.translate(0x7ffff, ACC_READ), 0x7ffff);
});

test("unmap skips holes and returns how many pages were mapped", () => {
  const { eng } = newEngine(vtdSecondStage());
  eng.map(0x10, 0x10, 4, RW);
  eng.map(0x40000, 0x40000, 0x40000, RW);
  assert.equal(eng.unmap(0, 0x100000), 0x40004);
  assert.equal(eng.unmap(0, 0x100000), 0);
});

test("tables that become empty are freed, up to (not including) the root", () => {
  const { mem, eng } = newEngine(vtdSecondStage({ addressWidth: 57 }));
  assert.equal(eng.tablePages, 1);
  eng.map(0x123456789a, 0x1, 1, RW);
  eng.map(0x123456789b, 0x2, 1, RW);
  assert.equal(eng.tablePages, 5);
  eng.unmap(0x123456789a, 1);
  assert.equal(eng.tablePages, 5);
  eng.unmap(0x123456789b, 1);
  assert.equal(eng.tablePages, 1);
  assert.equal(mem.tableFrames, 1);
  assert.equal(mem.pooledFrames, 4, "kept for reuse");
  assert.equal(mem.phys.framesInUse, 1 + 4);
  assert.equal(eng.translate(0x123456789a, ACC_READ), -1);
  assert.equal(eng.fault, FAULT_TRANSLATION);
  assert.equal(eng.faultLevel, 5);
});

test("splitting and then unmapping the rest frees the split table too", () => {
  const { eng } = newEngine(armStage2({ inputBits: 40 }));
  eng.map(0x200, 0x200, 0x200, RW | PT_ACCESSED);
  assert.equal(eng.tablePages, 2 + 1);
  eng.unmap(0x300, 1);
  assert.equal(eng.tablePages, 2 + 1 + 1);
  eng.unmap(0x200, 0x200);
  assert.equal(eng.tablePages, 2);
});

test("destroy frees every table, the root included", () => {
  const mem = newMem();
  const a = new PageTableEngine(mem, vtdFirstStage({ levels: 5 }));
  const b = new PageTableEngine(mem, armStage1({ granule: 65536 }));
  a.map(0x123456789a, 0x1, 1, RW);
  a.map(0x40000, 0x40000, 0x40000, RW);
  b.map(0xfffffffe0, 0x10, 0x20, RW);
  assert.ok(mem.tableFrames > 0);
  a.destroy();
  b.destroy();
  assert.equal(mem.tableFrames, 0);
  assert.equal(mem.phys.framesInUse, 0);
  assert.throws(() => a.map(0, 0, 1, RW), /internal assertion/);
});

test("table pages are frames of physical memory: the hardware reads what a DMA write puts there", () => {
  const { mem, eng } = newEngine(vtdSecondStage());
  eng.map(0x12345, 0x42, 1, RW);
  const pte = at(eng.walk(0x12345), 1);
  assert.deepEqual(mem.phys.read(pte.entryPa, 8), Uint8Array.from([0x03, 0x20, 0x04, 0, 0, 0, 0, 0]));
  mem.write(pte.entryPa, Uint8Array.from([0x01, 0x30, 0x04, 0, 0, 0, 0, 0])); // read-only, page 0x43
  assert.equal(eng.translate(0x12345, ACC_READ), 0x43);
  assert.equal(eng.translate(0x12345, ACC_WRITE), -1);
  assert.equal(bits(at(eng.walk(0x12345), 1)), "0x00000000_00043001");
});

test("freed tables are reused zeroed, and the pool goes back to memory when no table is live", () => {
  const mem = newMem();
  const a = new PageTableEngine(mem, vtdSecondStage());
  a.map(0x40000, 0x1, 0x400, RW);
  a.unmap(0x40000, 0x400);
  assert.equal(mem.pooledFrames, 4);
  const b = new PageTableEngine(mem, vtdSecondStage());
  assert.equal(mem.pooledFrames, 3, "b's root came from the pool");
  assert.equal(b.translate(0x40000, ACC_READ), -1, "and was zeroed");
  b.map(0x7fffffff0, 0x2, 0x10, RW);
  assert.equal(b.translate(0x7fffffff0, ACC_READ), 0x2);
  assert.equal(mem.pooledFrames, 0);
  mem.poolLimit = 0;
  b.unmap(0x7fffffff0, 0x10);
  assert.equal(mem.pooledFrames, 0, "over the limit: straight back to memory");
  a.destroy();
  b.destroy();
  assert.equal(mem.tableFrames, 0);
  assert.equal(mem.phys.framesInUse, 0);
});

test("an engine given an existing root walks another engine's tables and refuses to change them", () => {
  const { eng, mem } = newEngine(vtdSecondStage());
  eng.map(0x1000, 0x5000, 0x200, RW);
  const walker = new PageTableEngine(mem, vtdSecondStage(), { root: eng.root });
  assert.equal(walker.borrowed, true);
  assert.equal(walker.translate(0x10ff, ACC_WRITE), 0x50ff);
  assert.deepEqual(
    walker.walk(0x1000).steps.map((s) => [s.entryPa, s.lo, s.hi]),
    eng.walk(0x1000).steps.map((s) => [s.entryPa, s.lo, s.hi]),
  );
  // the owner changes the tables: the walker sees it (it caches nothing)
  eng.unmap(0x1000, 0x200);
  assert.equal(walker.translate(0x10ff, ACC_READ), -1);
  assert.equal(walker.fault, FAULT_TRANSLATION);
  assert.throws(() => walker.map(0x1000, 0x5000, 1, RW), /walker/);
  assert.throws(() => walker.unmap(0x1000, 1), /walker/);
  assert.throws(() => walker.destroy(), /walker/);
  assert.equal(eng.tablePages > 0, true);
});
