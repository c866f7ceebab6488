/** The CPU lists of `softiommu run --pin` (cli/pin.ts). */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { formatCpuList, parseCpuList, pinPlan } from "../../src/cli/pin.js";

test("a cpulist formats and parses back to the same CPUs (ranges collapsed, sorted, no duplicates)", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 1, maxLength: 40 }), (xs) => {
      const want = [...new Set(xs)].sort((a, b) => a - b);
      const s = formatCpuList(xs);
      assert.match(s, /^\d+(-\d+)?(,\d+(-\d+)?)*$/);
      assert.deepEqual(parseCpuList(s), want);
    }),
  );
  assert.equal(formatCpuList([3, 0, 1, 2, 7, 5, 6]), "0-3,5-7");
});

test("a malformed cpulist parses to null", () => {
  for (const s of ["", "a", "1-", "-1", "3-1", "1,,2", "1;2", "0-5000"]) assert.equal(parseCpuList(s), null, s);
});

test("--pin puts the server on the last CPU and the program on the rest; one CPU gives no plan", () => {
  assert.deepEqual(pinPlan(42, [0, 1, 2, 3]), { env: "42:3:0-2", serverCpu: 3, programCpus: [0, 1, 2] });
  assert.deepEqual(pinPlan(7, [2, 5]), { env: "7:5:2", serverCpu: 5, programCpus: [2] });
  assert.equal(pinPlan(42, [0]), null);
  assert.equal(pinPlan(42, null), null);
});
