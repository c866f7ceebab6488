/**
 * IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_ALLOW_IOVAS and the selftest ADD_RESERVED op
 * (oracle: probe-6.12-rules Q4-Q6, probe-ioas P1/P6/P12).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  addReserved,
  allow,
  BUF,
  expectErrno,
  expectFailsUnchanged,
  ioasAlloc,
  iovaRanges,
  map,
  mockDomain,
  readRanges,
  SCRATCH,
  setup,
  U64_MAX,
  writeRanges,
} from "./helpers.js";

// ------------------------------------------------------------------ IOVA_RANGES

test("IOAS_IOVA_RANGES reports the holes of the reserved ranges and the alignment", () => {
  // oracle Q4
  const env = setup();
  const ioas = ioasAlloc(env);
  addReserved(env, ioas, 0x1000, 0x1000);
  assert.deepEqual(iovaRanges(env, ioas), { num: 2, align: 1n, ranges: [[0n, 0xfffn], [0x2000n, U64_MAX]] });
  mockDomain(env, ioas);
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 0x800n, ranges: [[0x1000000n, 0x7fffffffn]] });
  const ioas2 = ioasAlloc(env);
  mockDomain(env, ioas2);
  assert.deepEqual(iovaRanges(env, ioas2), { num: 1, align: 0x800n, ranges: [[0x1000000n, 0x7fffffffn]] });
});

test("IOAS_IOVA_RANGES does not report mappings: they are not holes of the reserved tree", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x100000);
  map(env, ioas, BUF + 1, 1, null);
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 1n, ranges: [[0n, U64_MAX]] });
});

test("IOAS_IOVA_RANGES with too small num_iovas returns EMSGSIZE, the needed count, and fills what fits", () => {
  // oracle P1: capacity 1 of 2 -> first entry written, second untouched, num_iovas=2
  const env = setup();
  const ioas = ioasAlloc(env);
  addReserved(env, ioas, 0x1000, 0x1000);
  env.p.write(SCRATCH, new Uint8Array(48).fill(0xcc));
  const e = expectErrno(() => env.ctx.ioasIovaRanges({ ioas_id: ioas, num_iovas: 1, allowed_iovas: BigInt(SCRATCH) }), "EMSGSIZE");
  assert.deepEqual(e.out, { ioas_id: ioas, num_iovas: 2, allowed_iovas: BigInt(SCRATCH), out_iova_alignment: 1n });
  assert.deepEqual(readRanges(env, SCRATCH, 1), [[0n, 0xfffn]]);
  assert.deepEqual([...env.p.read(SCRATCH + 16, 16)], new Array(16).fill(0xcc), "nothing written past the capacity");
});

test("IOAS_IOVA_RANGES with num_iovas=0 returns EMSGSIZE with the count and writes no entry", () => {
  // oracle Q4e / P1
  const env = setup();
  const ioas = ioasAlloc(env);
  addReserved(env, ioas, 0x1000, 0x1000);
  mockDomain(env, ioas);
  env.p.write(SCRATCH, new Uint8Array(16).fill(0xcc));
  const e = expectErrno(() => env.ctx.ioasIovaRanges({ ioas_id: ioas, num_iovas: 0, allowed_iovas: BigInt(SCRATCH) }), "EMSGSIZE");
  assert.deepEqual(e.out, { ioas_id: ioas, num_iovas: 1, allowed_iovas: BigInt(SCRATCH), out_iova_alignment: 0x800n });
  assert.deepEqual([...env.p.read(SCRATCH, 16)], new Array(16).fill(0xcc));
  // with a NULL pointer too
  const e2 = expectErrno(() => env.ctx.ioasIovaRanges({ ioas_id: ioas, num_iovas: 0, allowed_iovas: 0n }), "EMSGSIZE");
  assert.equal((e2.out as { num_iovas: number }).num_iovas, 1);
});

test("IOAS_IOVA_RANGES with exactly enough room succeeds", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  addReserved(env, ioas, 0x1000, 0x1000);
  const out = env.ctx.ioasIovaRanges({ ioas_id: ioas, num_iovas: 2, allowed_iovas: BigInt(SCRATCH) });
  assert.equal(out.num_iovas, 2);
  assert.deepEqual(readRanges(env, SCRATCH, 2), [[0n, 0xfffn], [0x2000n, U64_MAX]]);
});

test("IOAS_IOVA_RANGES errors: __reserved EOPNOTSUPP, unknown IOAS ENOENT, unwritable array EFAULT", () => {
  // oracle P1
  const env = setup();
  const ioas = ioasAlloc(env);
  addReserved(env, ioas, 0x1000, 0x1000);
  expectFailsUnchanged(env, () => env.ctx.ioasIovaRanges({ ioas_id: ioas, num_iovas: 2, __reserved: 1, allowed_iovas: BigInt(SCRATCH) }), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => env.ctx.ioasIovaRanges({ ioas_id: 99, num_iovas: 2, allowed_iovas: BigInt(SCRATCH) }), "ENOENT");
  expectFailsUnchanged(env, () => env.ctx.ioasIovaRanges({ ioas_id: ioas, num_iovas: 2, allowed_iovas: 8n }), "EFAULT");
});

// ------------------------------------------------------------------ ADD_RESERVED

test("ADD_RESERVED may overlap, repeat or touch existing reserved ranges", () => {
  // oracle Q5a
  const env = setup();
  const ioas = ioasAlloc(env);
  addReserved(env, ioas, 0x1000, 0x1000);
  addReserved(env, ioas, 0x1000, 0x1000);
  addReserved(env, ioas, 0x1800, 0x1000);
  addReserved(env, ioas, 0x2000, 0x1000);
  assert.deepEqual(iovaRanges(env, ioas).ranges, [[0n, 0xfffn], [0x3000n, U64_MAX]]);
});

test("ADD_RESERVED with length 0 returns EINVAL (checked before the IOAS ID)", () => {
  // oracle Q5b, P12
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => addReserved(env, ioas, 0x10000, 0), "EINVAL");
  expectFailsUnchanged(env, () => addReserved(env, 99, 0x10000, 0), "EINVAL");
});

test("ADD_RESERVED past the end of the 64-bit space returns EOVERFLOW; ending exactly at U64_MAX is fine", () => {
  // oracle Q5c/Q5d
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => addReserved(env, ioas, U64_MAX - 0x10n, 0x100), "EOVERFLOW");
  addReserved(env, ioas, U64_MAX - 0xffn, 0x100);
  assert.deepEqual(iovaRanges(env, ioas).ranges, [[0n, U64_MAX - 0x100n]]);
});

test("ADD_RESERVED on an unknown IOAS returns ENOENT", () => {
  const env = setup();
  ioasAlloc(env);
  expectFailsUnchanged(env, () => addReserved(env, 99, 0x10000, 0x1000), "ENOENT");
});

test("ADD_RESERVED over a mapped area returns EADDRINUSE", () => {
  // oracle Q5e, P12
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x100000);
  expectFailsUnchanged(env, () => addReserved(env, ioas, 0x100000, 0x1000), "EADDRINUSE");
  expectFailsUnchanged(env, () => addReserved(env, ioas, 0x100800, 0x10), "EADDRINUSE");
  expectFailsUnchanged(env, () => addReserved(env, ioas, 0xff000, 0x1001), "EADDRINUSE");
  addReserved(env, ioas, 0xff000, 0x1000);
  addReserved(env, ioas, 0x101000, 0x1000);
});

test("ADD_RESERVED inside an allowed range returns EADDRINUSE; next to it is fine", () => {
  // oracle P6
  const env = setup();
  const ioas = ioasAlloc(env);
  allow(env, ioas, [[0x40000, 0x7ffff]]);
  expectFailsUnchanged(env, () => addReserved(env, ioas, 0x40000, 0x1000), "EADDRINUSE");
  expectFailsUnchanged(env, () => addReserved(env, ioas, 0x3f000, 0x1001), "EADDRINUSE");
  addReserved(env, ioas, 0x80000, 0x1000);
  addReserved(env, ioas, 0x3f000, 0x1000);
});

test("ADD_RESERVED outside a mock domain's aperture overlaps its reservation and succeeds", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  addReserved(env, ioas, 0x1000, 0x1000);
  addReserved(env, ioas, 0x1000000, 0x1000);
  assert.deepEqual(iovaRanges(env, ioas).ranges, [[0x1001000n, 0x7fffffffn]]);
});

// ------------------------------------------------------------------ ALLOW_IOVAS

test("IOAS_ALLOW_IOVAS does not change the IOVA_RANGES answer", () => {
  // oracle Q6b: allowed ranges are not reported
  const env = setup();
  const ioas = ioasAlloc(env);
  allow(env, ioas, [
    [0x10000, 0x1ffff],
    [0x1000, 0x1fff],
  ]);
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 1n, ranges: [[0n, U64_MAX]] });
  assert.deepEqual(
    env.ctx.getIoas(ioas).iopt.allowed.all().map((r) => [r.start, r.last]),
    [
      [0x1000n, 0x1fffn],
      [0x10000n, 0x1ffffn],
    ],
    "ranges given in descending order are accepted",
  );
});

test("IOAS_ALLOW_IOVAS with a range whose start >= last returns EINVAL and keeps the old list", () => {
  // oracle Q6a, Q6x
  const env = setup();
  const ioas = ioasAlloc(env);
  allow(env, ioas, [[0x50000, 0x5ffff]]);
  writeRanges(env, SCRATCH, [[0x1000, 0x1000]]);
  expectFailsUnchanged(env, () => env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 1, allowed_iovas: BigInt(SCRATCH) }), "EINVAL", "start == last");
  writeRanges(env, SCRATCH, [[0x2000, 0x1fff]]);
  expectFailsUnchanged(env, () => env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 1, allowed_iovas: BigInt(SCRATCH) }), "EINVAL", "start > last");
  assert.deepEqual(env.ctx.getIoas(ioas).iopt.allowed.all().map((r) => [r.start, r.last]), [[0x50000n, 0x5ffffn]]);
});

test("IOAS_ALLOW_IOVAS with overlapping ranges returns EINVAL; adjacent ranges are fine", () => {
  // oracle Q6x
  const env = setup();
  const ioas = ioasAlloc(env);
  writeRanges(env, SCRATCH, [
    [0x1000, 0x2fff],
    [0x2000, 0x3fff],
  ]);
  expectFailsUnchanged(env, () => env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 2, allowed_iovas: BigInt(SCRATCH) }), "EINVAL");
  allow(env, ioas, [
    [0x1000, 0x1fff],
    [0x2000, 0x2fff],
  ]);
  assert.equal(env.ctx.getIoas(ioas).iopt.allowed.size, 2);
});

test("IOAS_ALLOW_IOVAS with num_iovas=0 clears the list (NULL pointer allowed)", () => {
  // oracle Q6c
  const env = setup();
  const ioas = ioasAlloc(env);
  allow(env, ioas, [[0x1000, 0x1fff]]);
  env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 0, allowed_iovas: 0n });
  assert.equal(env.ctx.getIoas(ioas).iopt.allowed.size, 0);
});

test("IOAS_ALLOW_IOVAS over a reserved range returns EADDRINUSE and keeps the old list", () => {
  // oracle P6
  const env = setup();
  const ioas = ioasAlloc(env);
  allow(env, ioas, [[0x40000, 0x7ffff]]);
  addReserved(env, ioas, 0x80000, 0x1000);
  writeRanges(env, SCRATCH, [[0x7f000, 0x80000]]);
  expectFailsUnchanged(env, () => env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 1, allowed_iovas: BigInt(SCRATCH) }), "EADDRINUSE");
  assert.deepEqual(iovaRanges(env, ioas).ranges, [[0n, 0x7ffffn], [0x81000n, U64_MAX]]);
});

test("IOAS_ALLOW_IOVAS outside a mock domain's aperture returns EADDRINUSE; inside is fine", () => {
  // oracle P6
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  allow(env, ioas, [[0x1000000, 0x1ffffff]]);
  writeRanges(env, SCRATCH, [[0x100000, 0x1ffffff]]);
  expectFailsUnchanged(env, () => env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 1, allowed_iovas: BigInt(SCRATCH) }), "EADDRINUSE");
});

test("IOAS_ALLOW_IOVAS may cover existing mappings and need not cover them", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x10000);
  allow(env, ioas, [[0x40000, 0x7ffff]]);
  allow(env, ioas, [[0x0, 0x7ffff]]);
});

test("attaching a domain whose aperture excludes an allowed range returns EADDRINUSE", () => {
  // oracle P6: "attach with allowed outside aperture" -> EADDRINUSE, then fine after clearing
  const env = setup();
  const ioas = ioasAlloc(env);
  allow(env, ioas, [[0x40000, 0x7ffff]]);
  expectFailsUnchanged(env, () => mockDomain(env, ioas), "EADDRINUSE");
  allow(env, ioas, []);
  mockDomain(env, ioas);
});

test("IOAS_ALLOW_IOVAS errors: __reserved EOPNOTSUPP, unknown IOAS ENOENT before range checks, bad pointer EFAULT", () => {
  // oracle P6
  const env = setup();
  const ioas = ioasAlloc(env);
  writeRanges(env, SCRATCH, [[0x2000, 0x1000]]);
  expectFailsUnchanged(env, () => env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 1, __reserved: 1, allowed_iovas: BigInt(SCRATCH) }), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => env.ctx.ioasAllowIovas({ ioas_id: 99, num_iovas: 1, allowed_iovas: BigInt(SCRATCH) }), "ENOENT");
  expectFailsUnchanged(env, () => env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 1, allowed_iovas: 8n }), "EFAULT");
  // the array is read one entry at a time: a bad second entry after a good first one
  const lastEntry = SCRATCH + 2 * 4096 - 16;
  writeRanges(env, lastEntry, [[0x1000, 0x1fff]]);
  expectFailsUnchanged(env, () => env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 2, allowed_iovas: BigInt(lastEntry) }), "EFAULT");
});

test("ALLOW_IOVAS with a huge num_iovas stops at the first unreadable entry (EFAULT) without per-entry cost, and finds overlaps far apart (EINVAL)", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  // 10240 disjoint ranges filling 40 pages, followed by an unmapped page
  const n = 10240;
  const arr = env.p.mmap(n * 16 + 4096);
  env.p.munmap(arr + n * 16, 4096);
  const b = new Uint8Array(n * 16);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < n; i++) {
    dv.setBigUint64(i * 16, BigInt(i) * 0x10000n, true);
    dv.setBigUint64(i * 16 + 8, BigInt(i) * 0x10000n + 0xfffn, true);
  }
  env.p.write(arr, b);
  expectErrno(() => env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 0xffffffff, allowed_iovas: BigInt(arr) }), "EFAULT");
  // the last entry overlaps the first: EINVAL, and the failed call changes nothing
  dv.setBigUint64((n - 1) * 16, 0x800n, true);
  dv.setBigUint64((n - 1) * 16 + 8, 0x900n, true);
  env.p.write(arr, b);
  expectErrno(() => env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: n, allowed_iovas: BigInt(arr) }), "EINVAL");
  assert.equal(env.ctx.getIoas(ioas).iopt.allowed.size, 0);
  env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: n - 1, allowed_iovas: BigInt(arr) });
  assert.equal(env.ctx.getIoas(ioas).iopt.allowed.size, n - 1);
});
