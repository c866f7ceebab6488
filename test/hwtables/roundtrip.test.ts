/**
 * Round-trip properties over every structure layout (fast-check, fixed seeds): in-range values
 * survive encode/decode with reserved bits zero; arbitrary bytes survive decode/encode except
 * for reserved bits; the hot-path accessors agree with the codec and touch only their field.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { FieldMap, Layout } from "../../src/hw/bitlayout.js";
import * as vtd from "../../src/hw/vtd/index.js";
import * as smmu from "../../src/hw/smmuv3/index.js";
import { arbBytes, arbValue } from "./helpers.js";

const LAYOUTS: Layout<FieldMap>[] = [
  vtd.LegacyRootEntry,
  vtd.SmRootEntry,
  vtd.LegacyContextEntry,
  vtd.SmContextEntry,
  vtd.PasidDirEntry,
  vtd.PasidEntry,
  ...Object.values(vtd.QI_LAYOUTS),
  vtd.PageRequestDesc,
  vtd.CapReg,
  vtd.EcapReg,
  vtd.FaultRecord,
  smmu.Ste,
  smmu.L1Std,
  smmu.Cd,
  smmu.L1Cd,
  ...Object.values(smmu.CMD_LAYOUTS),
  ...Object.values(smmu.EVENT_LAYOUTS),
  smmu.PriEntry,
  smmu.Idr0,
  smmu.Idr1,
  smmu.Idr3,
  smmu.Idr5,
  smmu.Iidr,
  smmu.Aidr,
] as unknown as Layout<FieldMap>[];

const RUNS = { numRuns: 150, seed: 0x5eed };

test("every layout is listed once and has a distinct name", () => {
  assert.equal(new Set(LAYOUTS.map((l) => l.name)).size, LAYOUTS.length);
  assert.ok(LAYOUTS.length >= 60);
});

test("decode(encode(x)) = x for in-range fields; the encoding has no reserved bit set and carries its fixed constants", () => {
  for (const layout of LAYOUTS) {
    fc.assert(
      fc.property(arbValue(layout), (v) => {
        const bytes = layout.encode(v);
        assert.equal(bytes.length, layout.bytes);
        assert.deepEqual(layout.decode(bytes), v, layout.name);
        assert.deepEqual(layout.reservedBitsSet(bytes), [], layout.name);
        assert.ok(layout.matchesFixed(vtd.bytesToWords(bytes)), layout.name);
      }),
      RUNS,
    );
  }
});

test("encode(decode(bytes)) = bytes with the reserved bits cleared and the fixed constants forced", () => {
  for (const layout of LAYOUTS) {
    fc.assert(
      fc.property(arbBytes(layout), (bytes) => {
        const w = vtd.bytesToWords(bytes);
        for (let i = 0; i < w.length; i++) w[i] = ((w[i] & ~layout.reservedMask[i] & ~layout.fixedMask[i]) | layout.fixedValue[i]) >>> 0;
        assert.deepEqual(vtd.bytesToWords(layout.encode(layout.decode(bytes))), w, layout.name);
        assert.equal(layout.hasReservedBits(vtd.bytesToWords(bytes)), layout.reservedBitsSet(bytes).length > 0, layout.name);
      }),
      RUNS,
    );
  }
});

test("hot-path accessors read what decode reads, and set writes exactly their own field", () => {
  for (const layout of LAYOUTS) {
    const acc = layout.acc as Record<string, { get(u: Uint32Array, b: number): number | bigint; set(u: Uint32Array, b: number, v: never): void }>;
    fc.assert(
      fc.property(arbBytes(layout), arbValue(layout), fc.nat({ max: 3 }), (bytes, v, pad) => {
        // Place the structure at a word offset inside a larger buffer, as in a table page.
        const mem = new Uint32Array(pad + layout.words + 2).fill(0xa5a5a5a5);
        mem.set(vtd.bytesToWords(bytes), pad);
        const before = layout.decode(bytes) as Record<string, unknown>;
        for (const name of layout.fieldNames) assert.deepEqual(acc[name].get(mem, pad), before[name], `${layout.name}.${name}`);
        const name = layout.fieldNames[(pad * 7) % layout.fieldNames.length];
        if (name === undefined) return;
        acc[name].set(mem, pad, (v as Record<string, unknown>)[name] as never);
        const after = layout.decodeWords(mem, pad) as Record<string, unknown>;
        assert.deepEqual(after, { ...before, [name]: (v as Record<string, unknown>)[name] }, `${layout.name}.${name}`);
        // Reserved bits and the guard words around the structure are untouched.
        assert.equal(mem[pad + layout.words], 0xa5a5a5a5);
        if (pad > 0) assert.equal(mem[pad - 1], 0xa5a5a5a5);
        const orig = vtd.bytesToWords(bytes);
        for (let i = 0; i < layout.words; i++) assert.equal((mem[pad + i] & layout.reservedMask[i]) >>> 0, (orig[i] & layout.reservedMask[i]) >>> 0);
      }),
      RUNS,
    );
  }
});

test("the 64-bit-word form used at the uAPI boundary round-trips", () => {
  for (const layout of LAYOUTS) {
    fc.assert(
      fc.property(arbValue(layout), (v) => {
        const q = layout.toQwords(v);
        assert.equal(q.length, Math.ceil(layout.bytes / 8));
        assert.deepEqual(layout.fromQwords(q), v, layout.name);
      }),
      { ...RUNS, numRuns: 50 },
    );
  }
});

test("VT-d descriptors and SMMUv3 commands and events round-trip through their dispatching codecs", () => {
  const qiKinds = Object.keys(vtd.QI_LAYOUTS) as vtd.QiKind[];
  for (const kind of qiKinds) {
    fc.assert(
      fc.property(arbValue(vtd.QI_LAYOUTS[kind] as unknown as Layout<FieldMap>), (v) => {
        const d = { kind, ...v } as vtd.QiDescriptor;
        assert.deepEqual(vtd.decodeQi(vtd.encodeQi(d, 256), 256), d);
      }),
      { ...RUNS, numRuns: 50 },
    );
  }
  for (const kind of Object.keys(smmu.CMD_LAYOUTS) as smmu.CmdKind[]) {
    fc.assert(
      fc.property(arbValue(smmu.CMD_LAYOUTS[kind] as unknown as Layout<FieldMap>), (v) => {
        const c = { kind, ...v } as smmu.Cmd;
        assert.deepEqual(smmu.decodeCmd(smmu.encodeCmd(c)), c);
      }),
      { ...RUNS, numRuns: 50 },
    );
  }
  for (const kind of Object.keys(smmu.EVENT_LAYOUTS) as smmu.EventKind[]) {
    fc.assert(
      fc.property(arbValue(smmu.EVENT_LAYOUTS[kind] as unknown as Layout<FieldMap>), (v) => {
        const e = { kind, ...v } as smmu.Event;
        assert.deepEqual(smmu.decodeEvent(smmu.encodeEvent(e)), e);
      }),
      { ...RUNS, numRuns: 50 },
    );
  }
});

test("vSTE validation never accepts a vSTE with a disallowed bit, and what it returns is always a legal vSTE", () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (q0, q1) => {
      const allowed0 = 0xf80f_ffff_ffff_ffffn;
      const allowed1 = 0x3800_00ffn;
      const cfg = Number((q0 >> 1n) & 7n);
      const eats = Number((q1 >> 28n) & 3n);
      const legal = (q0 & 1n) === 0n || ((q0 & ~allowed0) === 0n && (q1 & ~allowed1) === 0n && [0, 4, 5].includes(cfg) && eats < 2);
      let out: Uint32Array | undefined;
      try {
        out = smmu.validateVste([q0, q1]).ste;
      } catch (e) {
        assert.equal((e as { errno?: number }).errno, 5);
      }
      assert.equal(out !== undefined, legal);
      if (out) assert.doesNotThrow(() => smmu.validateVste(out));
    }),
    { numRuns: 2000, seed: 0x5eed },
  );
});
