/**
 * translate()'s fast paths against walk()'s generic path on random descriptors: whatever bits an
 * entry holds (garbage included), both must give the same output, fault, fault level, permissions
 * and leaf size, nested or not.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PhysMem } from "../../src/mm/phys.js";
import { HwMemory, WindowFrameStore } from "../../src/hw/memory.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import {
  ACC_READ,
  ACC_WRITE,
  FAULT_TRANSLATION,
  PT_ACCESSED,
  PT_READ,
  PT_USER,
  PT_WRITE,
  armStage1,
  armStage2,
  vtdFirstStage,
  vtdSecondStage,
  type PageTableFormat,
} from "../../src/hw/pagetable/format.js";
import { PAGE, newEngine, poke, same } from "./helpers.js";

// 4-level and 3-level 4 KiB formats with one-frame roots (translate's lean4k, entered at the top
// level's shift), 5-level, a concatenated stage-2 root and a 16 KiB granule (translateLean).
const FORMATS: PageTableFormat[] = [
  vtdSecondStage(),
  vtdSecondStage({ addressWidth: 39 }),
  vtdSecondStage({ addressWidth: 57 }),
  vtdFirstStage(),
  armStage1(),
  armStage1({ inputBits: 39 }),
  armStage2({ inputBits: 40 }),
  armStage1({ granule: 16384 }),
];

const word = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0, 1, 3, 0x83, 0x403, 0x401, 0x7c3, 0x80000000));

for (const fmt of FORMATS) {
  test(`${fmt.name}: translate agrees with walk on random descriptors and accesses`, () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ step: fc.nat(4), hi: word, lo: word }), { maxLength: 4 }),
        fc.array(fc.record({ page: fc.nat(0x3ff), access: fc.nat(15) }), { minLength: 1, maxLength: 20 }),
        fc.record({ a: fc.boolean(), d: fc.boolean() }),
        (pokes, probes, hw) => {
          const { mem, eng } = newEngine(fmt, { hwAccessed: hw.a, hwDirty: hw.d, dbm: true });
          const g = eng.granulePages;
          const base = 0x200 * 0x200; // a 1 GiB-aligned input page
          eng.map(base, 0x40000, 0x200, PT_READ | PT_WRITE | PT_ACCESSED);
          eng.map(base + 0x200, 0x1234 * g, 0x200, PT_READ);
          for (const p of pokes) {
            const steps = eng.walk(base + ((p.step * 97) % 0x400) * 1).steps;
            const s = steps[p.step % steps.length];
            // Only entries of real tables (a garbage pointer may lead anywhere, even unallocated).
            if (mem.peekFrameU32(Math.floor(s.hostEntryPa / 4096)) !== undefined) poke(mem, s, p.hi, p.lo);
          }
          for (const pr of probes) same(eng, base + pr.page - (pr.page % g), pr.access);
        },
      ),
      { numRuns: 150 },
    );
  });
}

test("nested translate agrees with walk on random stage-1 descriptors and stage-2 holes", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ step: fc.nat(3), hi: word, lo: word }), { maxLength: 3 }),
      fc.array(fc.nat(0x3f), { maxLength: 3 }),
      fc.array(fc.record({ page: fc.nat(0x3ff), access: fc.nat(15) }), { minLength: 1, maxLength: 20 }),
      fc.boolean(),
      (pokes, holes, probes, armPair) => {
        const mem = new HwMemory(new PhysMem());
        const host = mem.phys.allocRun(0x400);
        const GB = 0x100000;
        const s2 = new PageTableEngine(mem, armPair ? armStage2() : vtdSecondStage(), { hwAccessed: true, hwDirty: true });
        s2.map(GB, host, 0x400, PT_READ | PT_WRITE | PT_ACCESSED);
        const s1 = new PageTableEngine(new WindowFrameStore(mem, GB, host, 0x400), armPair ? armStage1() : vtdFirstStage());
        s1.map(0x5000, GB + 0x200, 0x100, PT_READ | PT_WRITE | PT_ACCESSED);
        s1.map(0x5100, GB + 0x300, 0x100, PT_READ);
        s1.setStage2(s2);
        for (const p of pokes) {
          const steps = s1.walk(0x5000 + p.step * 0x41).steps;
          const s = steps[p.step % Math.max(1, steps.length)];
          if (s !== undefined && mem.peekFrameU32(Math.floor(s.hostEntryPa / 4096)) !== undefined) poke(mem, s, p.hi, p.lo);
        }
        for (const h of holes) s2.unmap(GB + h, 1);
        for (const pr of probes) same(s1, 0x5000 + pr.page, pr.access, true);
      },
    ),
    { numRuns: 150 },
  );
});

test("every attribute bit of a table entry's high word (deny bits: XD, APTable, XNTable...) reaches translate as walk() sees it, nested or not", () => {
  // Bits 52..63 of the entry (hi bits 20..31), the address left alone; every access type.
  for (const armPair of [false, true]) {
    for (const nested of [false, true]) {
      for (let level = 0; level < 3; level++) {
        for (let bit = 20; bit < 32; bit++) {
          const mem = new HwMemory(new PhysMem());
          const host = mem.phys.allocRun(0x400);
          const GB = 0x100000;
          let eng: PageTableEngine;
          if (nested) {
            const s2 = new PageTableEngine(mem, armPair ? armStage2() : vtdSecondStage());
            s2.map(GB, host, 0x400, PT_READ | PT_WRITE | PT_ACCESSED);
            eng = new PageTableEngine(new WindowFrameStore(mem, GB, host, 0x400), armPair ? armStage1() : vtdFirstStage());
            eng.map(0x5000, GB + 0x200, 0x10, PT_READ | PT_WRITE | PT_USER | PT_ACCESSED);
            eng.setStage2(s2);
          } else {
            eng = new PageTableEngine(mem, armPair ? armStage1() : vtdFirstStage());
            eng.map(0x5000, host + 0x200, 0x10, PT_READ | PT_WRITE | PT_USER | PT_ACCESSED);
          }
          const s = eng.walk(0x5003).steps[level];
          poke(mem, s, (s.hi | (1 << bit)) >>> 0, s.lo);
          for (let access = 1; access < 16; access++) same(eng, 0x5003, access, nested);
        }
      }
    }
  }
});

// ---- the lean single-stage walk's limits: each case must give walk()'s answer ---------------------

test("a table address at or above 2^43 is read as itself, never as the table its low 31 bits name", () => {
  for (const fmt of [vtdSecondStage(), vtdFirstStage(), armStage1()]) {
    const { mem, eng } = newEngine(fmt);
    eng.map(0x12345, 0x4000, 1, PT_READ | PT_WRITE | PT_ACCESSED);
    assert.equal(eng.translate(0x12345, ACC_READ), 0x4000);
    const top = eng.walk(0x12345).steps[0];
    // Address bit 43 (pfn + 2^31) and bit 44 (pfn + 2^32, which wraps to the same pfn in int32),
    // within each format's address field (Arm's ends at bit 47).
    for (const extra of [1 << 11, 1 << 12]) {
      poke(mem, top, top.hi | extra, top.lo);
      const w = eng.walk(0x12345, ACC_READ);
      assert.equal(w.fault, FAULT_TRANSLATION, `${fmt.name}: the frame beyond is not there`);
      same(eng, 0x12345, ACC_READ);
      poke(mem, top, top.hi, top.lo);
      assert.equal(eng.translate(0x12345, ACC_READ), 0x4000);
    }
  }
});

test("a walker whose root is beyond 2^32 reads that root, not the frame its low 32 bits name", () => {
  const { mem, eng } = newEngine(vtdSecondStage());
  eng.map(0x777, 0x4000, 1, PT_READ);
  const far = new PageTableEngine(mem, vtdSecondStage(), { root: eng.root + 2 ** 32 });
  assert.equal(far.translate(0x777, ACC_READ), -1);
  assert.equal(far.fault, FAULT_TRANSLATION);
  same(far, 0x777, ACC_READ);
});

test("tables whose frames were written as bytes (no cached frame view) translate like any other", () => {
  for (const fmt of [vtdSecondStage(), armStage2({ inputBits: 40 })]) {
    const { mem, eng } = newEngine(fmt);
    eng.map(0x40000, 0x9000, 0x400, PT_READ | PT_WRITE | PT_ACCESSED);
    // A copy of the root table made with copyRun (contents, no views) and one written with write().
    const n = fmt.levels[0].frames;
    const copied = mem.phys.allocRun(n, n);
    mem.phys.ref(copied, n);
    mem.phys.copyRun(copied, eng.root, n);
    const written = mem.phys.allocRun(n, n);
    mem.phys.ref(written, n);
    mem.phys.write(written * PAGE, mem.phys.read(eng.root * PAGE, n * PAGE));
    for (const root of [copied, written]) {
      const w = new PageTableEngine(mem, fmt, { root });
      for (const v of [0x40000, 0x40001, 0x403ff, 0x40400]) {
        for (let k = 0; k < 2; k++) {
          // the first walk finds no view; the second walks the view the first one made
          assert.equal(w.translate(v, ACC_READ), eng.translate(v, ACC_READ), `${fmt.name} root ${root} vpn ${v}`);
          same(w, v, ACC_READ);
        }
      }
    }
  }
});

test("high input pages (IOVAs near the top of the address width) translate as walk() says", () => {
  for (const fmt of [vtdSecondStage(), vtdSecondStage({ addressWidth: 57 }), vtdFirstStage({ levels: 5 }), armStage1(), armStage1({ granule: 16384 })]) {
    const { eng } = newEngine(fmt);
    const g = eng.granulePages;
    const top = eng.inputPages - 0x400;
    eng.map(top, 0x10000, 0x200, PT_READ | PT_WRITE | PT_ACCESSED);
    eng.map(top + 0x200, 0x1234 * g, 0x200, PT_READ | PT_ACCESSED);
    for (const v of [top, top + g, top + 0x1ff, top + 0x200, top + 0x3ff - (g - 1), eng.inputPages - 1, 0x7fffffff - (0x7fffffff % g)]) {
      for (const a of [ACC_READ, ACC_WRITE]) same(eng, v - (v % g), a);
    }
    assert.equal(eng.translate(top + g, ACC_READ), 0x10000 + g);
  }
});
