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
  PT_ACCESSED,
  PT_READ,
  PT_WRITE,
  armStage1,
  armStage2,
  vtdFirstStage,
  vtdSecondStage,
  type PageTableFormat,
} from "../../src/hw/pagetable/format.js";
import { newEngine, poke } from "./helpers.js";

const FORMATS: PageTableFormat[] = [vtdSecondStage(), vtdSecondStage({ addressWidth: 57 }), vtdFirstStage(), armStage1(), armStage2({ inputBits: 40 }), armStage1({ granule: 16384 })];

const word = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0, 1, 3, 0x83, 0x403, 0x401, 0x7c3, 0x80000000));

function same(eng: PageTableEngine, vpn: number, access: number): void {
  const w = eng.walk(vpn, access);
  const ppn = eng.translate(vpn, access);
  assert.equal(ppn, w.ppn, `${eng.format.name} vpn ${vpn} access ${access}`);
  if (ppn < 0) {
    assert.deepEqual([eng.fault, eng.faultLevel, eng.faultStage], [w.fault, w.faultLevel, w.faultStage]);
  } else {
    assert.deepEqual([eng.perms, eng.leafPages, eng.leafLevel], [w.perms, w.leafPages, w.leafLevel]);
  }
}

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
        for (const pr of probes) same(s1, 0x5000 + pr.page, pr.access);
      },
    ),
    { numRuns: 150 },
  );
});
