/** util/num.ts: modPow2 is `%` for what it is used on (non-negative safe integers, powers of two). */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { modPow2 } from "../../src/util/num.js";

test("modPow2(x, 2^k) equals x % 2^k for every non-negative safe integer x and k up to 52", () => {
  fc.assert(
    fc.property(fc.maxSafeNat(), fc.integer({ min: 0, max: 52 }), (x, k) => {
      assert.equal(modPow2(x, 2 ** k), x % 2 ** k);
    }),
    { numRuns: 2000 },
  );
  for (const x of [0, 1, 4095, 4096, 4097, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) assert.equal(modPow2(x, 4096), x % 4096);
});
