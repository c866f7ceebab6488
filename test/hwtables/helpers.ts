/**
 * Helpers for the hardware-structure golden tests: expected bytes are written as 64-bit words in
 * hex (the way the specifications draw them), and field positions as "qwN hi:lo" strings, written
 * independently of the layouts' absolute bit numbers so that a transcription slip in either shows.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type { FieldDef, FieldMap, Layout, Value } from "../../src/hw/bitlayout.js";

/** 64-bit words (hex strings or bigints, low word first) -> little-endian bytes of `bytes` length. */
export function qw(bytes: number, ...words: (string | bigint)[]): Uint8Array {
  const out = new Uint8Array(Math.max(8, Math.ceil(bytes / 8) * 8));
  const dv = new DataView(out.buffer);
  words.forEach((w, i) => dv.setBigUint64(i * 8, typeof w === "bigint" ? w : BigInt(w), true));
  // A 32-bit register is the low half of "qw0"; nothing may spill past its size.
  assert.ok(out.subarray(bytes).every((b) => b === 0), `value does not fit ${bytes} bytes`);
  return out.slice(0, bytes);
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

/** The little-endian bytes as 64-bit words in hex, for readable assertion failures. */
export function qwords(b: Uint8Array): string[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const out: string[] = [];
  for (let i = 0; i + 8 <= b.length; i += 8) out.push("0x" + dv.getBigUint64(i, true).toString(16).padStart(16, "0"));
  if (b.length % 8 === 4) out.push("0x" + dv.getUint32(b.length - 4, true).toString(16).padStart(8, "0"));
  return out;
}

export function assertBytes(actual: Uint8Array, expected: Uint8Array): void {
  assert.deepEqual(qwords(actual), qwords(expected));
}

/** The mask of "qwN hi:lo" as bytes of a structure of `bytes` length. */
export function maskBytes(bytes: number, pos: string): Uint8Array {
  const m = /^qw(\d+) (\d+)(?::(\d+))?$/.exec(pos);
  assert.ok(m, `bad position ${pos}`);
  const q = Number(m[1]);
  const hi = Number(m[2]);
  const lo = m[3] === undefined ? hi : Number(m[3]);
  const words: bigint[] = new Array(Math.max(1, Math.ceil(bytes / 8))).fill(0n);
  words[q] = ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo);
  return qw(bytes, ...words);
}

/** The largest value a field holds (all its bits set), in the layout's value representation. */
export function maxValue(f: FieldDef): number | bigint {
  if (f.kind === "big") return ((1n << BigInt(f.width)) - 1n) << BigInt(f.shift);
  return (2 ** f.width - 1) * 2 ** f.shift;
}

/**
 * Check each field of `layout` sits exactly at its spec position: setting the field to all ones
 * sets exactly the bits of `pos` ("qwN hi:lo"); split fields list several positions. The table
 * must name every field of the layout.
 */
export function checkPlacement<F extends FieldMap>(layout: Layout<F>, table: Record<keyof F & string, string | string[]>): void {
  assert.deepEqual(Object.keys(table).sort(), [...layout.fieldNames].sort(), `${layout.name}: the placement table must cover every field`);
  for (const name of layout.fieldNames) {
    const f = layout.fields[name];
    const enc = layout.encode({ [name]: maxValue(f) } as unknown as Partial<Value<F>>);
    const positions = table[name];
    const expected = new Uint8Array(layout.bytes);
    for (const p of Array.isArray(positions) ? positions : [positions]) {
      const m = maskBytes(layout.bytes, p);
      for (let i = 0; i < expected.length; i++) expected[i] |= m[i];
    }
    // The fixed constants (type codes, opcodes) are always present.
    const fixed = layout.encode({} as Partial<Value<F>>);
    for (let i = 0; i < expected.length; i++) expected[i] |= fixed[i];
    assert.deepEqual(qwords(enc), qwords(expected), `${layout.name}.${name} at ${String(positions)}`);
  }
}

/** fast-check arbitrary of in-range values of a layout. */
export function arbValue<F extends FieldMap>(layout: Layout<F>): fc.Arbitrary<Value<F>> {
  const rec: Record<string, fc.Arbitrary<number | bigint>> = {};
  for (const name of layout.fieldNames) {
    const f = layout.fields[name];
    if (f.kind === "big") {
      rec[name] = fc.bigInt({ min: 0n, max: (1n << BigInt(f.width)) - 1n }).map((x) => x << BigInt(f.shift));
    } else if (f.width <= 31) {
      rec[name] = fc.integer({ min: 0, max: 2 ** f.width - 1 }).map((x) => x * 2 ** f.shift);
    } else {
      rec[name] = fc.bigInt({ min: 0n, max: (1n << BigInt(f.width)) - 1n }).map((x) => Number(x) * 2 ** f.shift);
    }
  }
  // fc.record builds null-prototype objects; spread into plain ones for deepStrictEqual.
  return fc.record(rec).map((o) => ({ ...o })) as unknown as fc.Arbitrary<Value<F>>;
}

/** fast-check arbitrary of arbitrary bytes of a layout's size. */
export function arbBytes(layout: Layout<FieldMap>): fc.Arbitrary<Uint8Array> {
  return fc.uint8Array({ minLength: layout.bytes, maxLength: layout.bytes });
}
