/**
 * Model-based tests: random map/unmap sequences on every format against a naive reference (a Map
 * per page of the granule). After every call every page of the universe must translate exactly as
 * the reference says (output page, and the write permission), walk() must agree with translate(),
 * a call the reference rejects must change nothing, and after unmapping everything only the root
 * table may remain.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { IommuError } from "../../src/errno.js";
import {
  ACC_READ,
  ACC_WRITE,
  FAULT_NONE,
  PT_ACCESSED,
  PT_READ,
  PT_WRITE,
  armStage1,
  armStage2,
  vtdFirstStage,
  vtdSecondStage,
  type PageTableFormat,
} from "../../src/hw/pagetable/format.js";
import { newEngine } from "./helpers.js";

interface Ref {
  ppn: number;
  write: boolean;
}

const FORMATS: PageTableFormat[] = [
  vtdSecondStage({ addressWidth: 39 }),
  vtdSecondStage({ addressWidth: 48 }),
  vtdSecondStage({ addressWidth: 57, largePages1G: false }),
  vtdFirstStage({ levels: 4 }),
  vtdFirstStage({ levels: 5 }),
  armStage1({ inputBits: 39 }),
  armStage1({ inputBits: 48 }),
  armStage2({ inputBits: 40 }),
  armStage2({ inputBits: 33 }),
  armStage1({ granule: 16384, inputBits: 47 }),
  armStage1({ granule: 65536, inputBits: 42 }),
  armStage2({ granule: 65536, inputBits: 48 }),
];

/** Pages (of 4 KiB) per leaf at the lowest level that holds blocks, or 4 granules if none do. */
function blockPages(f: PageTableFormat): number {
  const g = 2 ** (f.granuleShift - 12);
  const blocks = f.levels.filter((l) => l.leaf && l.shift > f.granuleShift && l.shift <= 29);
  return blocks.length ? 2 ** (blocks[blocks.length - 1].shift - 12) : 4 * g;
}

interface Op {
  kind: "map" | "unmap";
  start: number; // in granules, within the universe
  len: number; // in granules
  out: number; // output slot (aligned to a block) or -1 for misaligned by one granule
  ro: boolean;
}

function opArb(universe: number, block: number): fc.Arbitrary<Op> {
  const pos = fc.oneof(
    fc.integer({ min: 0, max: universe - 1 }),
    fc.integer({ min: 0, max: 3 }).map((k) => k * block),
    fc.integer({ min: 1, max: 3 }).map((k) => k * block - 1),
    fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: block - 2 })).map(([k, o]) => k * block + o),
  );
  const len = fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constant(block), fc.integer({ min: 1, max: 2 * block + 3 }));
  return fc.record({
    kind: fc.constantFrom<"map" | "unmap">("map", "map", "unmap"),
    start: pos,
    len,
    out: fc.integer({ min: -1, max: 5 }),
    ro: fc.boolean(),
  });
}

/** Walks that ended in a leaf larger than a granule, per format (the generator must reach them). */
const blockLeaves = new Map<string, number>();

function runModel(fmt: PageTableFormat, baseChoice: number, ops: Op[]): void {
  const { mem, eng } = newEngine(fmt);
  const g = eng.granulePages;
  const blockG = blockPages(fmt) / g; // granules per block
  const universe = 4 * blockG; // granules
  const inputG = eng.inputPages / g;
  // Where the universe sits: the bottom, the top of the input space, or across a top-level boundary.
  const topSpan = 2 ** (fmt.levels[0].shift - fmt.granuleShift);
  const bases = [0, inputG - universe, Math.max(0, topSpan - 2 * blockG)];
  const base = bases[baseChoice % bases.length];
  const ref = new Map<number, Ref>();
  const rootFrames = eng.tablePages;
  for (const o of ops) {
    const start = Math.min(o.start, universe - 1);
    const len = Math.min(o.len, universe - start);
    const vpn = (base + start) * g;
    if (o.kind === "map") {
      const outG = o.out < 0 ? 7 * blockG + 1 : (o.out + 8) * blockG; // misaligned, or block aligned
      const ppn = (outG + (o.out >= 0 ? start % blockG : 0)) * g;
      let clash = false;
      for (let k = 0; k < len && !clash; k++) clash = ref.has(start + k);
      const prot = PT_READ | PT_ACCESSED | (o.ro ? 0 : PT_WRITE);
      if (clash) {
        const frames = eng.tablePages;
        assert.throws(
          () => eng.map(vpn, ppn, len * g, prot),
          (e: unknown) => e instanceof IommuError && e.code === "EEXIST",
        );
        assert.equal(eng.tablePages, frames, "a failed map frees what it allocated");
      } else {
        eng.map(vpn, ppn, len * g, prot);
        for (let k = 0; k < len; k++) ref.set(start + k, { ppn: ppn + k * g, write: !o.ro });
      }
    } else {
      let had = 0;
      for (let k = 0; k < len; k++) if (ref.delete(start + k)) had++;
      assert.equal(eng.unmap(vpn, len * g), had * g);
    }
    // Every page of the universe (the first and last 4 KiB page of each granule).
    for (let s = 0; s < universe; s++) {
      const r = ref.get(s);
      const v = (base + s) * g;
      const got = eng.translate(v + g - 1, ACC_READ);
      assert.equal(got, r ? r.ppn + g - 1 : -1, `${fmt.name}: granule ${s} after ${o.kind} ${start}+${len}`);
      if (r) {
        assert.equal(eng.translate(v, r.write ? ACC_WRITE : ACC_READ), r.ppn);
        if (!r.write) assert.equal(eng.translate(v, ACC_WRITE), -1);
      }
      if (s % 61 === 0 || (r === undefined) !== (ref.get(s - 1) === undefined)) {
        const w = eng.walk(v, ACC_READ);
        assert.equal(w.ppn, r ? r.ppn : -1, `${fmt.name}: walk of granule ${s}`);
        assert.equal(w.fault === FAULT_NONE, r !== undefined);
        if (w.leafPages > g) blockLeaves.set(fmt.name, (blockLeaves.get(fmt.name) ?? 0) + 1);
      }
    }
    // Just outside the universe nothing is ever mapped.
    if (base > 0) assert.equal(eng.translate((base - 1) * g, ACC_READ), -1);
    if (base + universe < inputG) assert.equal(eng.translate((base + universe) * g, ACC_READ), -1);
  }
  eng.unmap(base * g, universe * g);
  assert.equal(eng.tablePages, rootFrames, `${fmt.name}: only the root remains`);
  assert.equal(mem.tableFrames, rootFrames);
  eng.destroy();
  assert.equal(mem.phys.framesInUse, 0);
}

for (const fmt of FORMATS) {
  test(`${fmt.name}: random map/unmap agree with a per-page reference; cut blocks keep the rest mapped`, () => {
    const blockG = blockPages(fmt) / 2 ** (fmt.granuleShift - 12);
    const runs = blockG > 2048 ? 12 : 60;
    fc.assert(
      fc.property(fc.nat(2), fc.array(opArb(4 * blockG, blockG), { minLength: 1, maxLength: 12 }), (b, ops) => runModel(fmt, b, ops)),
      // beside the random runs, always one whole aligned block (with 12 runs the generator alone
      // sometimes made none, and the coverage check below then failed by chance)
      { numRuns: runs, examples: [[0, [{ kind: "map", start: 0, len: blockG, out: 0, ro: false }]]] },
    );
    if (fmt.levels.some((l, i) => l.leaf && i < fmt.levels.length - 1 && l.shift <= 29)) {
      assert.ok((blockLeaves.get(fmt.name) ?? 0) > 0, "the runs mapped some blocks");
    }
  });
}

test("1 GiB leaves: random 1 GiB-scale map/unmap on VT-d second stage and Arm stage 1 agree with the reference", () => {
  const GIB = 0x40000;
  for (const fmt of [vtdSecondStage(), armStage1()]) {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            map: fc.boolean(),
            start: fc.oneof(fc.integer({ min: 0, max: 3 }).map((k) => k * GIB), fc.integer({ min: 0, max: 4 * GIB - 1 })),
            len: fc.oneof(fc.constant(GIB), fc.integer({ min: 1, max: 2 * GIB }), fc.integer({ min: 1, max: 600 })),
          }),
          { minLength: 1, maxLength: 6 },
        ),
        (ops) => {
          const { eng } = newEngine(fmt);
          const ref = new Map<number, number>();
          const probes = new Set<number>();
          for (const o of ops) {
            const len = Math.min(o.len, 4 * GIB - o.start);
            for (const p of [o.start - 1, o.start, o.start + 1, o.start + len - 1, o.start + len]) if (p >= 0 && p < 4 * GIB) probes.add(p);
            if (o.map) {
              let clash = false;
              for (let k = 0; k < len && !clash; k++) clash = ref.has(o.start + k);
              const ppn = 0x100000 + o.start;
              if (clash) {
                assert.throws(() => eng.map(o.start, ppn, len, PT_READ | PT_WRITE | PT_ACCESSED), /EEXIST/);
              } else {
                eng.map(o.start, ppn, len, PT_READ | PT_WRITE | PT_ACCESSED);
                for (let k = 0; k < len; k++) ref.set(o.start + k, ppn + k);
              }
            } else {
              let had = 0;
              for (let k = 0; k < len; k++) if (ref.delete(o.start + k)) had++;
              assert.equal(eng.unmap(o.start, len), had);
            }
          }
          for (let i = 0; i < 3000; i++) probes.add((i * 2654435761) % (4 * GIB));
          for (const p of probes) assert.equal(eng.translate(p, ACC_READ), ref.get(p) ?? -1, `${fmt.name} page ${p}`);
          eng.unmap(0, 4 * GIB);
          assert.equal(eng.tablePages, 1);
        },
      ),
      { numRuns: 15 },
    );
  }
});
