/**
 * Codec round trips for every struct of the table (fast-check, fixed seeds): random field values
 * encode -> decode -> the same values; random bytes decode -> encode -> the same bytes wherever a
 * byte is meaningful (encodeInto over the original bytes gives them back exactly); plus a few
 * known answers for byte order, signedness, unions and the test command's variants.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { decode, encode, encodeInto, maskOf, STRUCTS, structOf, type Field, type StructLayout, type UObject } from "../../src/uapi/structs.js";

const SEED = 0x10a1;

function scalarArb(f: Field): fc.Arbitrary<number | bigint> {
  switch (f.scalar) {
    case "u8":
      return fc.integer({ min: 0, max: 0xff });
    case "u16":
      return fc.integer({ min: 0, max: 0xffff });
    case "u32":
      return fc.integer({ min: 0, max: 0xffffffff });
    case "s32":
      return fc.integer({ min: -0x80000000, max: 0x7fffffff });
    default:
      return fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  }
}

function fieldArb(f: Field): fc.Arbitrary<unknown> {
  const one: fc.Arbitrary<unknown> = f.struct ? structArb(f.struct, undefined) : scalarArb(f);
  return f.isArray ? fc.array(one, { minLength: f.count, maxLength: f.count }) : one;
}

/** Values for the fields a decode of this struct (and selector value) yields; union aliases share one value. */
function structArb(s: StructLayout, sel: number | undefined): fc.Arbitrary<UObject> {
  const fields = [...s.common, ...(sel === undefined ? [] : (s.variants.find((v) => v.select.includes(sel))?.fields ?? []))].filter((f) => f.count !== 0);
  const primary = new Map<number, Field>();
  for (const f of fields) if (!primary.has(f.offset)) primary.set(f.offset, f);
  const rec: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of primary.values()) rec[f.key] = s.selector === f.key && sel !== undefined ? fc.constant(sel) : fieldArb(f);
  return fc.record(rec).map((r) => {
    const o: UObject = {};
    for (const f of fields) o[f.key] = (r as UObject)[(primary.get(f.offset) as Field).key];
    return o;
  });
}

/** Each struct, and each (struct, selector value) of a variant union. */
function cases(): { s: StructLayout; sel: number | undefined; label: string }[] {
  const out: { s: StructLayout; sel: number | undefined; label: string }[] = [];
  for (const s of STRUCTS.values()) {
    if (!s.variants.length) out.push({ s, sel: undefined, label: s.name });
    else for (const v of s.variants) for (const sel of v.select) out.push({ s, sel, label: `${s.name}.${v.name}` });
  }
  return out;
}

test("random field values survive encode -> decode for every struct and every test-command variant", () => {
  for (const { s, sel, label } of cases()) {
    fc.assert(
      fc.property(structArb(s, sel), (o) => {
        const b = encode(s, o);
        assert.equal(b.length, s.size);
        assert.deepEqual(decode(s, b), o, label);
      }),
      { seed: SEED, numRuns: 60 },
    );
  }
});

test("random bytes survive decode -> encode wherever a byte is meaningful, and decode -> encodeInto exactly", () => {
  for (const { s, sel, label } of cases()) {
    const mask = maskOf(s, sel);
    const sf = s.selector ? s.common.find((f) => f.key === s.selector) : undefined;
    fc.assert(
      fc.property(fc.uint8Array({ minLength: s.size, maxLength: s.size }), (raw) => {
        const b = new Uint8Array(raw);
        if (sf && sel !== undefined) new DataView(b.buffer).setUint32(sf.offset, sel, true);
        const o = decode(s, b);
        const e = encode(s, o);
        for (let i = 0; i < s.size; i++) assert.equal(e[i], mask[i] ? b[i] : 0, `${label} byte ${i}`);
        const over = new Uint8Array(b);
        encodeInto(s, o, over);
        assert.deepEqual(over, b, label);
      }),
      { seed: SEED, numRuns: 60 },
    );
  }
});

test("fully meaningful structs: every byte is covered by a field (no padding)", () => {
  const padded: string[] = [];
  for (const s of STRUCTS.values()) {
    if (s.variants.length) continue;
    if (maskOf(s).some((x) => x === 0)) padded.push(s.name);
  }
  // only the structs whose C layout has a flexible tail or none: none of the table's structs has padding
  assert.deepEqual(padded, []);
  // the test command: every variant leaves its unused union bytes and the tail pad undetermined
  const t = structOf("iommu_test_cmd");
  assert.equal(maskOf(t, 1).reduce((a, x) => a + x, 0), 16 + 16 + 4);
  // dirty: flags, 4 bytes of padding before iova, then five u64
  assert.equal(maskOf(t, 13).reduce((a, x) => a + x, 0), 16 + 4 + 40 + 4);
});

test("encode is little-endian and byte-exact (IOAS_MAP known answer)", () => {
  const b = encode("iommu_ioas_map", { size: 40, flags: 7, ioas_id: 2, user_va: 0x1122334455667788n, length: 0x200000n, iova: 0x1000000n });
  assert.equal(
    Buffer.from(b).toString("hex"),
    "28000000" + "07000000" + "02000000" + "00000000" + "8877665544332211" + "0000200000000000" + "0000000100000000",
  );
});

test("s32 fields decode signed and encode two's complement (IOAS_MAP_FILE fd = -1)", () => {
  const b = encode("iommu_ioas_map_file", { fd: -1 });
  assert.deepEqual([...b.subarray(12, 16)], [0xff, 0xff, 0xff, 0xff]);
  assert.equal(decode("iommu_ioas_map_file", b).fd, -1);
});

test("u64 fields take bigint (or a safe number) and wrap to 64 bits; values decode as bigint", () => {
  const b = encode("iommu_ioas_unmap", { iova: 0n, length: -1n });
  assert.equal(decode("iommu_ioas_unmap", b).length, (1n << 64n) - 1n);
  assert.equal(decode("iommu_ioas_unmap", encode("iommu_ioas_unmap", { iova: 4096 })).iova, 4096n);
});

test("the hw_info union: both names decode the same u32; out_data_type, written last, wins on encode", () => {
  const s = structOf("iommu_hw_info");
  const o = decode(s, encode(s, { in_data_type: 0xfeedbeef }));
  assert.equal(o.in_data_type, 0xfeedbeef);
  assert.equal(o.out_data_type, 0xfeedbeef);
  const b = encode(s, { in_data_type: 5, out_data_type: 7 });
  assert.equal(decode(s, b).in_data_type, 7);
  assert.deepEqual(decode(s, encode(s, { __reserved: [1, 2, 3] })).__reserved, [1, 2, 3]);
});

test("the test command decodes the union member its op selects, with the flat names IommufdCtx uses", () => {
  const s = structOf("iommu_test_cmd");
  const o = decode(s, encode(s, { size: 72, op: 14, id: 9, iotlb_id: 3, iotlb: 0xbadbeef }));
  assert.deepEqual(o, { size: 72, op: 14, id: 9, __reserved: 0, iotlb_id: 3, iotlb: 0xbadbeef, last: 0 });
  const d = decode(s, encode(s, { op: 13, flags: 0, iova: 1n << 24n, length: 8192n, page_size: 2048n, uptr: 0x7000n, out_nr_dirty: 4n }));
  assert.equal(d.out_nr_dirty, 4n);
  assert.equal(d.uptr, 0x7000n);
  // an unknown op decodes the common members only
  assert.deepEqual(Object.keys(decode(s, encode(s, { op: 999 }))), ["size", "op", "id", "__reserved", "last"]);
});

test("nested structs and flexible arrays (VFIO capability structs)", () => {
  const s = structOf("vfio_iommu_type1_info_cap_iova_range");
  assert.equal(s.size, 16);
  const o = decode(s, encode(s, { header: { id: 1, version: 1, next: 24 }, nr_iovas: 2, reserved: 0 }));
  assert.deepEqual(o, { header: { id: 1, version: 1, next: 24 }, nr_iovas: 2, reserved: 0 });
  assert.equal(s.all.find((f) => f.cname === "iova_ranges")?.offset, 16);
  assert.equal(structOf("vfio_iommu_type1_dma_unmap").all.find((f) => f.cname === "data")?.offset, 24);
});

test("decode of a buffer shorter than sizeof is a RangeError, not a silent short read", () => {
  assert.throws(() => decode("iommu_hw_info", new Uint8Array(39)), RangeError);
  assert.throws(() => encodeInto("iommu_destroy", {}, new Uint8Array(8), 4), RangeError);
  assert.deepEqual(decode("iommu_destroy", new Uint8Array([0, 0, 8, 0, 0, 0, 5, 0, 0, 0]), 2), { size: 8, id: 5 });
});
