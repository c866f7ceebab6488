/** IOMMU_IOAS_COPY rules (oracle: probe-6.12-rules Q9, probe-ioas P8). */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  addReserved,
  BUF,
  copy,
  expectFailsUnchanged,
  FIXED,
  ioasAlloc,
  map,
  mockDomain,
  PAGE4K,
  R,
  refsOf,
  RW,
  S,
  setup,
  U64_MAX,
  unmapAll,
  W,
} from "./helpers.js";

const copyCmd = (dst: number, src: number, o: Partial<S.IommuIoasCopy>): S.IommuIoasCopy => ({
  flags: RW | FIXED,
  dst_ioas_id: dst,
  src_ioas_id: src,
  length: 0x1000n,
  dst_iova: 0x300000n,
  src_iova: 0x100000n,
  ...o,
});

test("IOAS_COPY may span adjacent areas, even with discontiguous user VAs (fixed and automatic)", () => {
  // oracle Q9a/Q9a'/Q9a''
  const env = setup();
  const src = ioasAlloc(env);
  const dst = ioasAlloc(env);
  map(env, src, BUF, 0x1000, 0x100000);
  map(env, src, BUF + 0x1000, 0x1000, 0x101000);
  assert.equal(copy(env, dst, src, 0x100000, 0x2000, 0x500000), 0x500000n);
  assert.equal(copy(env, dst, src, 0x100000, 0x2000, null), 0x2000n);
  map(env, src, BUF + 0x5000, 0x1000, 0x110000);
  map(env, src, BUF + 0x2000, 0x1000, 0x111000);
  copy(env, dst, src, 0x110000, 0x2000, 0x600000);
  const areas = env.ctx.getIoas(dst).iopt.areas.all().map((a) => [a.start, a.last]);
  assert.deepEqual(areas, [
    [0x2000n, 0x2fffn],
    [0x3000n, 0x3fffn],
    [0x500000n, 0x500fffn],
    [0x501000n, 0x501fffn],
    [0x600000n, 0x600fffn],
    [0x601000n, 0x601fffn],
  ], "one destination area per source area");
});

test("IOAS_COPY of a range with a hole, or inside a hole, returns ENOENT", () => {
  // oracle Q9b
  const env = setup();
  const src = ioasAlloc(env);
  const dst = ioasAlloc(env);
  map(env, src, BUF, 0x1000, 0x300000);
  map(env, src, BUF, 0x1000, 0x302000);
  expectFailsUnchanged(env, () => copy(env, dst, src, 0x300000, 0x3000, 0x700000), "ENOENT");
  expectFailsUnchanged(env, () => copy(env, dst, src, 0x301000, 0x1000, 0x700000), "ENOENT");
  expectFailsUnchanged(env, () => copy(env, dst, src, 0x2ff000, 0x2000, 0x700000), "ENOENT", "starting before the area");
});

test("IOAS_COPY of part of an area is allowed; copying onto the result returns EEXIST", () => {
  // oracle Q9x
  const env = setup();
  const src = ioasAlloc(env);
  const dst = ioasAlloc(env);
  map(env, src, BUF, 0x1000, 0x300000);
  copy(env, dst, src, 0x300000, 0x800, 0x700000);
  expectFailsUnchanged(env, () => copy(env, dst, src, 0x300000, 0x1000, 0x700000), "EEXIST");
});

test("IOAS_COPY with automatic IOVA aligns like the source VA of the copied slice", () => {
  // oracle P8: a 0x800 slice at +0x800 of a 2M-aligned VA lands at 0x1800
  const env = setup();
  const src = ioasAlloc(env);
  const dst = ioasAlloc(env);
  map(env, src, BUF, 0x1000, 0x100000, R);
  copy(env, dst, src, 0x100000, 0x1000, 0x200000, R);
  addReserved(env, dst, 0x400000, 0x1000);
  assert.equal(copy(env, dst, src, 0x100800, 0x800, null, R), 0x1800n);
});

test("IOAS_COPY with automatic IOVA uses the first slice's VA, also for multi-area and mid-area copies", () => {
  // oracle P13d: slices from VAs +0x3800, +0x10000, +0 -> 0x1800; middle -> 0x4000; at +0xc00 -> 0x5400
  const env = setup();
  const src = ioasAlloc(env);
  const dst = ioasAlloc(env);
  map(env, src, BUF + 0x3800, 0x800, 0x100000);
  map(env, src, BUF + 0x10000, 0x1000, 0x100800);
  map(env, src, BUF, 0x800, 0x101800);
  assert.equal(copy(env, dst, src, 0x100000, 0x2000, null), 0x1800n);
  assert.equal(copy(env, dst, src, 0x100800, 0x1000, null), 0x4000n);
  assert.equal(copy(env, dst, src, 0x100c00, 0x1000, null), 0x5400n);
  assert.equal(env.ctx.ioasUnmap({ ioas_id: src, iova: 0x100000n, length: 0x2000n }).length, 0x2000n, "oracle P13h");
});

test("IOAS_COPY WRITEABLE from a mapping made without WRITEABLE returns EPERM", () => {
  // oracle P8: RW and W copies of a READABLE map fail EPERM, R succeeds
  const env = setup();
  const src = ioasAlloc(env);
  const dst = ioasAlloc(env);
  map(env, src, BUF, 0x1000, 0x100000, R);
  expectFailsUnchanged(env, () => copy(env, dst, src, 0x100000, 0x1000, 0x200000, RW), "EPERM");
  expectFailsUnchanged(env, () => copy(env, dst, src, 0x100000, 0x1000, 0x300000, W), "EPERM");
  copy(env, dst, src, 0x100000, 0x1000, 0x200000, R);
});

test("IOAS_COPY argument checks and their order", () => {
  // oracle P8
  const env = setup();
  const src = ioasAlloc(env);
  const dst = ioasAlloc(env);
  map(env, src, BUF, 0x1000, 0x100000, R);
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(dst, src, { flags: FIXED })), "EINVAL", "no READ/WRITE");
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(dst, src, { flags: RW | 9 })), "EOPNOTSUPP", "unknown flag");
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(dst, src, { length: 0n })), "EINVAL", "length 0");
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(dst, 99, {})), "ENOENT", "unknown source");
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(99, src, {})), "ENOENT", "unknown destination");
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(99, src, { src_iova: 0x500000n })), "ENOENT", "hole + unknown destination");
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(dst, src, { dst_iova: U64_MAX })), "EOVERFLOW", "dst_iova U64_MAX");
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(dst, src, { src_iova: U64_MAX })), "EOVERFLOW", "src_iova U64_MAX");
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(dst, src, { length: U64_MAX })), "EOVERFLOW", "length U64_MAX");
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(dst, src, { src_iova: U64_MAX - 0x10n, length: 0x100n })), "EOVERFLOW", "src range overflow");
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(dst, src, { flags: R | FIXED, dst_iova: U64_MAX - 0x10n, length: 0x100n })), "EOVERFLOW", "dst range overflow");
  addReserved(env, dst, 0x400000, 0x1000);
  expectFailsUnchanged(env, () => env.ctx.ioasCopy(copyCmd(dst, src, { flags: R | FIXED, dst_iova: 0x400000n })), "EINVAL", "reserved destination");
});

test("IOAS_COPY within one IOAS is allowed", () => {
  // oracle P8 src==dst
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x100000, R);
  copy(env, ioas, ioas, 0x100000, 0x1000, 0x300000, R);
  assert.equal(env.ctx.getIoas(ioas).iopt.areas.size, 2);
});

test("IOAS_COPY into a domain-backed IOAS shares the pinned pages (no second pin)", () => {
  // oracle P8: map with domain refs 1; copy refs 1; unmap src refs 1; unmap dst refs 0
  const env = setup();
  const src = ioasAlloc(env);
  const dst = ioasAlloc(env);
  mockDomain(env, src);
  mockDomain(env, dst);
  map(env, src, PAGE4K, 0x1000, 0x1000000);
  assert.equal(refsOf(env, PAGE4K), 1);
  copy(env, dst, src, 0x1000000, 0x1000, 0x2000000);
  assert.equal(refsOf(env, PAGE4K), 1);
  assert.equal(env.p.user.lockedVm, 1, "charged once");
  unmapAll(env, src);
  assert.equal(refsOf(env, PAGE4K), 1, "the copy keeps the page pinned");
  unmapAll(env, dst);
  assert.equal(refsOf(env, PAGE4K), 0);
  assert.equal(env.p.user.lockedVm, 0);
});

test("IOAS_COPY from an IOAS without a domain pins once, whatever the number of copies", () => {
  // oracle P8: nodomain map refs 0; copy into a domain IOAS refs 1; into a second domain IOAS still 1
  const env = setup();
  const a = ioasAlloc(env);
  const b = ioasAlloc(env);
  const nd = ioasAlloc(env);
  mockDomain(env, a);
  mockDomain(env, b);
  map(env, nd, PAGE4K, 0x1000, 0x1000000);
  assert.equal(refsOf(env, PAGE4K), 0);
  copy(env, b, nd, 0x1000000, 0x1000, 0x3000000);
  assert.equal(refsOf(env, PAGE4K), 1);
  copy(env, a, nd, 0x1000000, 0x1000, 0x3001000);
  assert.equal(refsOf(env, PAGE4K), 1);
});

test("IOAS_COPY of unmapped memory into a domain-backed IOAS returns EFAULT", () => {
  const env = setup();
  const src = ioasAlloc(env);
  const dst = ioasAlloc(env);
  mockDomain(env, dst);
  map(env, src, 0x80000000, 0x1000, 0x1000000);
  expectFailsUnchanged(env, () => copy(env, dst, src, 0x1000000, 0x1000, null), "EFAULT");
});
