/**
 * The layout engine's own rules: a table that overlaps, overflows its structure or asks for an
 * inexact number field is refused at definition time; split and wide fields; fixed constants.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { addr, bigAddr, bigBits, bit, bits, defineLayout, hiLo, qwordsToWords, split, wordsToQwords } from "../../src/hw/bitlayout.js";

test("a layout whose fields overlap is refused", () => {
  assert.throws(() => defineLayout("x", 8, { a: bits(7, 0), b: bit(7) }), /overlaps/);
  assert.throws(() => defineLayout("x", 8, { a: bits(7, 0) }, [{ field: bits(3, 0), value: 1 }]), /overlaps/);
});

test("a field beyond the structure's size is refused", () => {
  assert.throws(() => defineLayout("x", 8, { a: bit(64) }), /beyond/);
});

test("number fields are at most 53 bits; wider ones must be bigint", () => {
  assert.throws(() => bits(63, 0), /53/);
  assert.throws(() => addr(63, 2), /53/);
  assert.throws(() => addr(70, 60), /crosses/);
  assert.doesNotThrow(() => bigBits(63, 0));
  assert.doesNotThrow(() => bigAddr(63, 2));
});

test("a split field joins its parts low-order first", () => {
  const L = defineLayout("x", 8, { f: split([15, 12], [63, 52]) });
  const w = L.encodeWords({ f: 0xabcd });
  assert.deepEqual(wordsToQwords(w), [0xabc0_0000_0000_d000n]);
  assert.equal(L.decodeWords(w).f, 0xabcd);
  assert.equal(L.acc.f.get(w, 0), 0xabcd);
});

test("a 64-bit in-place address field decodes exactly, including its top bit", () => {
  const L = defineLayout("x", 16, { lo: addr(63, 12), hi: addr(127, 76), big: bigAddr(11, 2) });
  const w = L.encodeWords({ lo: 0xffff_ffff_ffff_f000, hi: 0x8000_0000_0000_0000, big: 0xffcn });
  assert.deepEqual(wordsToQwords(w), [0xffff_ffff_ffff_fffcn, 0x8000_0000_0000_0000n]);
  assert.deepEqual(L.decodeWords(w), { lo: 0xffff_ffff_ffff_f000, hi: 0x8000_0000_0000_0000, big: 0xffcn });
});

test("fixed constants are written by every encode and recognised by matchesFixed", () => {
  const L = defineLayout("x", 8, { a: bits(15, 8) }, [{ field: bits(7, 0), value: 0x46 }]);
  const w = L.encodeWords({ a: 1 });
  assert.deepEqual([...w], [0x146, 0]);
  assert.ok(L.matchesFixed(w));
  assert.ok(!L.matchesFixed(new Uint32Array([0x145, 0])));
  assert.deepEqual(L.reservedBitsSet(new Uint8Array([0x46, 0, 1, 0, 0, 0, 0, 0x80])), [16, 63]);
});

test("describe lists the non-zero fields, flags by name", () => {
  const L = defineLayout("thing", 8, { p: bit(0), did: bits(31, 16), ptr: addr(63, 32) });
  assert.equal(L.describe({ p: 1, did: 0x42, ptr: 0 }), "thing{p did=0x42}");
});

test("u64 helpers: qwords to words and back, high/low halves of a safe integer", () => {
  const w = qwordsToWords([0x1_0000_0002n, 0xffff_ffff_ffff_ffffn]);
  assert.deepEqual([...w], [2, 1, 0xffffffff, 0xffffffff]);
  assert.deepEqual(wordsToQwords(w), [0x1_0000_0002n, 0xffff_ffff_ffff_ffffn]);
  assert.deepEqual(hiLo(0x1_2345_6789), [1, 0x2345_6789]);
});

/** The structure as one little-endian integer (the reference the accessors are checked against). */
function asBig(w: Uint32Array): bigint {
  let x = 0n;
  for (let i = w.length - 1; i >= 0; i--) x = (x << 32n) | BigInt(w[i]);
  return x;
}

test("any field shape (crossing 0, 1 or 2 word boundaries, in place or shifted) matches a bigint reference", () => {
  const shape = fc
    .record({ lo: fc.nat({ max: 139 }), width: fc.integer({ min: 1, max: 53 }), inPlace: fc.boolean() })
    .filter(({ lo, width, inPlace }) => !inPlace || Math.floor(lo / 64) === Math.floor((lo + width - 1) / 64));
  fc.assert(
    fc.property(shape, fc.bigInt({ min: 0n, max: (1n << 53n) - 1n }), fc.uint32Array({ minLength: 6, maxLength: 6 }), ({ lo, width, inPlace }, raw, bg) => {
      const hi = lo + width - 1;
      const f = inPlace ? addr(hi, lo) : bits(hi, lo);
      const L = defineLayout("shape", 24, { f });
      const r = raw & ((1n << BigInt(width)) - 1n);
      const value = inPlace ? Number(r << BigInt(lo % 64)) : Number(r);
      const mask = ((1n << BigInt(width)) - 1n) << BigInt(lo);
      // Encode: exactly the field's bits.
      assert.equal(asBig(L.encodeWords({ f: value })), r << BigInt(lo));
      // Accessor set over a random background changes only the field's bits.
      const w = bg.slice();
      L.acc.f.set(w, 0, value);
      assert.equal(asBig(w), (asBig(bg) & ~mask) | (r << BigInt(lo)));
      assert.equal(L.acc.f.get(w, 0), value);
      assert.equal(L.decodeWords(w).f, value);
    }),
    { numRuns: 3000, seed: 42 },
  );
});
