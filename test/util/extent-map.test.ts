import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ExtentMap, pushRun, runsPages } from "../../src/util/extent-map.js";

test("a linear extent map keeps a range as one run and splits it on a partial overwrite", () => {
  const m = new ExtentMap(true);
  m.set(100, 1000, 5000, 1);
  assert.equal(m.runCount, 1);
  assert.equal(m.get(100), 5000);
  assert.equal(m.get(1099), 5999);
  assert.equal(m.get(1100), undefined);
  m.set(500, 10, 9000, 1);
  assert.equal(m.runCount, 3);
  assert.equal(m.get(505), 9005);
  assert.equal(m.get(510), 5410);
  m.set(500, 10, 5400, 1); // restores continuity: merges back into one run
  assert.equal(m.runCount, 1);
  assert.equal(m.covered, 1000);
  m.check();
});

test("tags keep otherwise contiguous runs apart", () => {
  const m = new ExtentMap(true);
  m.set(0, 10, 100, 0);
  m.set(10, 10, 110, 1);
  assert.equal(m.runCount, 2);
  assert.equal(m.tagAt(15), 1);
  m.check();
});

test("a count map adds over gaps and reports rising and falling pieces", () => {
  const m = new ExtentMap(false);
  const rises: number[] = [];
  const falls: number[] = [];
  m.add(0, 10, 1);
  m.add(5, 10, 1, (s, n) => rises.push(s, n));
  assert.deepEqual(rises, [10, 5]);
  assert.equal(m.get(7), 2);
  m.add(0, 15, -1, undefined, (s, n) => falls.push(s, n));
  assert.deepEqual(falls, [0, 5, 10, 5]);
  assert.equal(m.covered, 5);
  assert.throws(() => m.add(0, 1, -1));
  m.check();
});

test("pushRun merges contiguous frames", () => {
  const r: number[] = [];
  pushRun(r, 10, 2);
  pushRun(r, 12, 3);
  pushRun(r, 20, 1);
  assert.deepEqual(r, [10, 5, 20, 1]);
  assert.equal(runsPages(r), 6);
});

test("extent maps agree with a per-key array under random set/delete/add", () => {
  const N = 64;
  const op = fc.record({
    kind: fc.constantFrom("set", "delete", "add"),
    start: fc.integer({ min: 0, max: N - 1 }),
    len: fc.integer({ min: 1, max: 20 }),
    base: fc.integer({ min: 0, max: 3 }),
    tag: fc.integer({ min: 0, max: 1 }),
  });
  fc.assert(
    fc.property(fc.boolean(), fc.array(op, { maxLength: 60 }), (linear, ops) => {
      const m = new ExtentMap(linear);
      const ref: (number | undefined)[] = new Array(N + 20).fill(undefined);
      for (const o of ops) {
        if (o.kind === "set") {
          m.set(o.start, o.len, o.base, o.tag);
          for (let k = 0; k < o.len; k++) ref[o.start + k] = linear ? o.base + k : o.base;
        } else if (o.kind === "delete") {
          m.delete(o.start, o.len);
          for (let k = 0; k < o.len; k++) ref[o.start + k] = undefined;
        } else if (!linear) {
          m.add(o.start, o.len, 1);
          for (let k = 0; k < o.len; k++) ref[o.start + k] = (ref[o.start + k] ?? 0) + 1;
        }
        m.check();
      }
      for (let k = 0; k < ref.length; k++) assert.equal(m.get(k), ref[k]);
      assert.equal(m.covered, ref.filter((v) => v !== undefined).length);
    }),
    { numRuns: 300 },
  );
});

test("a linear map with a step advances values by step per key and merges runs that continue each other", () => {
  const m = new ExtentMap(true, 2048);
  m.set(10, 4, 0x100000);
  m.set(14, 2, 0x100000 + 4 * 2048);
  assert.equal(m.runCount, 1, "the second run continues the first");
  assert.equal(m.get(15), 0x100000 + 5 * 2048);
  m.delete(11, 2);
  assert.deepEqual(m.toArray(), [10, 1, 0x100000, 0, 13, 3, 0x100000 + 3 * 2048, 0]);
  m.check();
});
