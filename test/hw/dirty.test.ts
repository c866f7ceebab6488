/**
 * Dirty tracking: the hardware's dirty state per format (VT-d D with SSADE, x86 D always, Arm DBM
 * with HD) and read-and-clear over a range, against a reference set of written pages.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ACC_READ,
  ACC_WRITE,
  FAULT_PERMISSION,
  PT_ACCESSED,
  PT_DIRTY,
  PT_READ,
  PT_WRITE,
  armStage1,
  armStage2,
  vtdFirstStage,
  vtdSecondStage,
  type PageTableFormat,
} from "../../src/hw/pagetable/format.js";
import type { EngineOptions } from "../../src/hw/pagetable/engine.js";
import { at, newEngine } from "./helpers.js";

const RW = PT_READ | PT_WRITE | PT_ACCESSED;

function dirtyRuns(eng: { readAndClearDirty: (v: number, n: number, r: (v: number, n: number) => void, noClear?: boolean) => number }, vpn: number, n: number, noClear = false): [number, number][] {
  const out: [number, number][] = [];
  eng.readAndClearDirty(vpn, n, (v, k) => out.push([v, k]), noClear);
  return out;
}

test("VT-d second stage with SSADE: a write sets D (bit 9) in the leaf, a read sets only A (bit 8)", () => {
  const { eng } = newEngine(vtdSecondStage(), { hwAccessed: true, hwDirty: true });
  eng.map(0x100, 0x900, 2, PT_READ | PT_WRITE);
  eng.translate(0x100, ACC_READ);
  assert.equal(at(eng.walk(0x100), 1).lo & 0x300, 0x100);
  eng.translate(0x101, ACC_WRITE);
  assert.equal(at(eng.walk(0x101), 1).lo & 0x300, 0x300);
  assert.equal(at(eng.walk(0x101), 4).lo & 0x100, 0x100, "A also set in the tables used");
  assert.deepEqual(dirtyRuns(eng, 0, 0x1000), [[0x101, 1]]);
  assert.equal(at(eng.walk(0x101), 1).lo & 0x300, 0x100, "D cleared, A kept");
  assert.deepEqual(dirtyRuns(eng, 0, 0x1000), [], "nothing dirty after the clear");
});

test("VT-d second stage without SSADE: the hardware leaves A and D alone", () => {
  const { eng } = newEngine(vtdSecondStage());
  eng.map(0x100, 0x900, 1, PT_READ | PT_WRITE);
  eng.translate(0x100, ACC_WRITE);
  assert.equal(at(eng.walk(0x100), 1).lo & 0x300, 0);
  assert.equal(eng.readAndClearDirty(0, 0x1000), 0);
  eng.setHardwareUpdates(true, true);
  eng.translate(0x100, ACC_WRITE);
  assert.equal(eng.readAndClearDirty(0, 0x1000), 1);
});

test("read-and-clear with noClear reports without clearing", () => {
  const { eng } = newEngine(vtdSecondStage(), { hwAccessed: true, hwDirty: true });
  eng.map(0x100, 0x900, 4, PT_READ | PT_WRITE);
  eng.translate(0x102, ACC_WRITE);
  assert.deepEqual(dirtyRuns(eng, 0x100, 4, true), [[0x102, 1]]);
  assert.deepEqual(dirtyRuns(eng, 0x100, 4, true), [[0x102, 1]]);
  assert.deepEqual(dirtyRuns(eng, 0x100, 4), [[0x102, 1]]);
  assert.deepEqual(dirtyRuns(eng, 0x100, 4), []);
});

test("a dirty large leaf is reported clipped to the range and cleaned whole", () => {
  const { eng } = newEngine(vtdSecondStage(), { hwAccessed: true, hwDirty: true });
  eng.map(0x200, 0x400, 0x200, PT_READ | PT_WRITE);
  eng.translate(0x3ff, ACC_WRITE);
  assert.deepEqual(dirtyRuns(eng, 0x300, 0x10), [[0x300, 0x10]]);
  assert.deepEqual(dirtyRuns(eng, 0x200, 0x200), [], "the whole 2 MiB leaf was cleaned");
  eng.translate(0x200, ACC_WRITE);
  assert.deepEqual(dirtyRuns(eng, 0, 0x1000), [[0x200, 0x200]]);
});

test("a leaf mapped with PT_DIRTY starts dirty", () => {
  const { eng } = newEngine(vtdSecondStage(), { hwAccessed: true, hwDirty: true });
  eng.map(0x10, 0x10, 2, PT_READ | PT_WRITE | PT_DIRTY);
  assert.equal(eng.readAndClearDirty(0, 0x100), 2);
});

test("first stage (x86 paging): the hardware always sets D on a write; read-and-clear clears bit 6", () => {
  const { eng } = newEngine(vtdFirstStage());
  eng.map(0x100, 0x900, 1, PT_READ | PT_WRITE);
  eng.translate(0x100, ACC_WRITE);
  assert.equal(at(eng.walk(0x100), 1).lo & 0x60, 0x60);
  assert.deepEqual(dirtyRuns(eng, 0x100, 1), [[0x100, 1]]);
  assert.equal(at(eng.walk(0x100), 1).lo & 0x60, 0x20);
});

test("Arm stage 1 DBM: writable-clean is AP[2]=1 with DBM (bit 51); an HD write clears AP[2]", () => {
  const { eng } = newEngine(armStage1(), { dbm: true, hwDirty: true });
  eng.map(0x100, 0x900, 1, RW);
  let pte = at(eng.walk(0x100), 3);
  assert.equal(pte.hi & (1 << 19), 1 << 19, "DBM");
  assert.equal(pte.lo & 0x80, 0x80, "AP[2]: clean");
  assert.equal(eng.readAndClearDirty(0x100, 1), 0);
  assert.equal(eng.translate(0x100, ACC_WRITE), 0x900);
  pte = at(eng.walk(0x100), 3);
  assert.equal(pte.lo & 0x80, 0, "written: AP[2] cleared, dirty");
  assert.deepEqual(dirtyRuns(eng, 0x100, 1), [[0x100, 1]]);
  assert.equal(at(eng.walk(0x100), 3).lo & 0x80, 0x80, "cleaned back to writable-clean");
  assert.equal(eng.translate(0x100, ACC_WRITE), 0x900, "and still writable");
});

test("Arm DBM without hardware dirty management: a write to a writable-clean page is a permission fault", () => {
  const { eng } = newEngine(armStage1(), { dbm: true, hwDirty: false });
  eng.map(0x100, 0x900, 1, RW);
  assert.equal(eng.translate(0x100, ACC_READ), 0x900);
  assert.equal(eng.translate(0x100, ACC_WRITE), -1);
  assert.equal(eng.fault, FAULT_PERMISSION);
});

test("Arm stage 2 DBM: writable-clean is S2AP[1]=0 with DBM; an HD write sets S2AP[1]", () => {
  const { eng } = newEngine(armStage2(), { dbm: true, hwDirty: true });
  eng.map(0x100, 0x900, 1, RW);
  assert.equal(at(eng.walk(0x100), 3).lo & 0xc0, 0x40);
  eng.translate(0x100, ACC_WRITE);
  assert.equal(at(eng.walk(0x100), 3).lo & 0xc0, 0xc0);
  assert.equal(eng.readAndClearDirty(0x100, 1), 1);
  assert.equal(at(eng.walk(0x100), 3).lo & 0xc0, 0x40);
});

test("Arm: writable leaves without DBM and read-only leaves are never reported dirty", () => {
  const { eng } = newEngine(armStage1(), { hwDirty: true });
  eng.map(0x100, 0x900, 1, RW);
  eng.map(0x101, 0x901, 1, PT_READ | PT_ACCESSED);
  eng.translate(0x100, ACC_WRITE);
  assert.equal(eng.readAndClearDirty(0, 0x1000), 0);
  const { eng: d } = newEngine(armStage1(), { dbm: true, hwDirty: true });
  d.map(0x100, 0x900, 1, RW | PT_DIRTY);
  assert.equal(d.readAndClearDirty(0, 0x1000), 1, "PT_DIRTY: writable-dirty, as Linux maps with HD");
});

const CASES: [PageTableFormat, EngineOptions][] = [
  [vtdSecondStage(), { hwAccessed: true, hwDirty: true }],
  [vtdFirstStage(), {}],
  [armStage1(), { dbm: true, hwAccessed: true, hwDirty: true }],
  [armStage2({ inputBits: 40 }), { dbm: true, hwAccessed: true, hwDirty: true }],
];

for (const [fmt, opts] of CASES) {
  test(`${fmt.name}: read-and-clear reports exactly the pages written since the last clear`, () => {
    const U = 0x600; // three 2 MiB regions
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant<"w">("w"), at: fc.integer({ min: 0, max: U - 1 }) }),
            fc.record({ op: fc.constant<"r">("r"), at: fc.integer({ min: 0, max: U - 1 }) }),
            fc.record({ op: fc.constant<"c">("c"), at: fc.integer({ min: 0, max: U - 1 }), len: fc.integer({ min: 1, max: U }) }),
          ),
          { maxLength: 40 },
        ),
        (large, ops) => {
          const { eng } = newEngine(fmt, opts);
          // 4 KiB leaves (output misaligned) or 2 MiB leaves.
          eng.map(0x200, large ? 0x1000 : 0x1001, U, RW);
          const leaf = large ? 0x200 : 1;
          const dirty = new Set<number>(); // dirty leaves, by first page
          for (const o of ops) {
            if (o.op === "w") {
              assert.equal(eng.translate(0x200 + o.at, ACC_WRITE), (large ? 0x1000 : 0x1001) + o.at);
              dirty.add(o.at - (o.at % leaf));
            } else if (o.op === "r") {
              eng.translate(0x200 + o.at, ACC_READ);
            } else {
              const len = Math.min(o.len, U - o.at);
              const want = new Map<number, number>();
              for (const d of [...dirty].sort((a, b) => a - b)) {
                const s = Math.max(d, o.at);
                const e = Math.min(d + leaf, o.at + len);
                if (s < e) {
                  want.set(s, e - s);
                  dirty.delete(d);
                }
              }
              const got = new Map(dirtyRuns(eng, 0x200 + o.at, len).map(([v, n]) => [v - 0x200, n]));
              assert.deepEqual(got, want);
            }
          }
          assert.equal(eng.readAndClearDirty(0x200, U, null, true), [...dirty].length * leaf);
        },
      ),
      { numRuns: 80 },
    );
  });
}
