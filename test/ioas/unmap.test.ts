/** IOMMU_IOAS_UNMAP rules (oracle: probe-6.12-rules Q1/Q1d/Q3d, probe-ioas P4). */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  BUF,
  expectErrno,
  expectFailsUnchanged,
  ioasAlloc,
  iovaRanges,
  map,
  mockDomain,
  PAGE4K,
  refsOf,
  S,
  setup,
  snapshot,
  U64_MAX,
  unmap,
  unmapAll,
  type Env,
} from "./helpers.js";

const areasOf = (env: Env, ioas: number): bigint[][] => env.ctx.getIoas(ioas).iopt.areas.all().map((a) => [a.start, a.last]);

test("IOAS_UNMAP of exactly one area returns its length", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x2000, 0x100000);
  assert.equal(unmap(env, ioas, 0x100000, 0x2000), 0x2000n);
  assert.equal(env.ctx.getIoas(ioas).iopt.areas.size, 0);
});

test("IOAS_UNMAP that would split an area returns ENOENT", () => {
  // oracle Q1x: the first half of a single area -> ENOENT, then the whole area -> 0x2000
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x2000, 0x100000);
  expectFailsUnchanged(env, () => unmap(env, ioas, 0x100000, 0x1000), "ENOENT", "first half");
  expectFailsUnchanged(env, () => unmap(env, ioas, 0x101000, 0x1000), "ENOENT", "second half");
  expectFailsUnchanged(env, () => unmap(env, ioas, 0x100800, 0x10), "ENOENT", "middle");
  assert.equal(unmap(env, ioas, 0x100000, 0x2000), 0x2000n);
});

test("IOAS_UNMAP starting inside an area removes nothing and returns ENOENT", () => {
  // oracle P4: A=[0x100000,+0x2000) B=[0x102000,+0x1000); unmap(0x101000,0x2000) -> ENOENT, B still there
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x2000, 0x100000);
  map(env, ioas, BUF, 0x1000, 0x102000);
  expectFailsUnchanged(env, () => unmap(env, ioas, 0x101000, 0x2000), "ENOENT");
  assert.equal(unmap(env, ioas, 0x102000, 0x1000), 0x1000n);
});

test("IOAS_UNMAP keeps the areas it removed before meeting one it would split (partial progress, as the kernel)", () => {
  // oracle Q1: A=[0x100000,+0x1000) B=[0x101000,+0x2000); unmap(0x100000,0x2000) -> ENOENT but A is gone
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x100000);
  map(env, ioas, BUF, 0x2000, 0x101000);
  const e = expectErrno(() => unmap(env, ioas, 0x100000, 0x2000), "ENOENT");
  assert.equal((e as { unmapped?: bigint }).unmapped, 0x1000n, "the error carries what was removed");
  assert.equal(e.out, undefined, "nothing is written back on failure");
  assert.deepEqual(areasOf(env, ioas), [[0x101000n, 0x102fffn]]);
  expectErrno(() => unmap(env, ioas, 0x100000, 0x1000), "ENOENT", "A was already removed");
  assert.equal(unmap(env, ioas, 0x101000, 0x2000), 0x2000n);
});

test("IOAS_UNMAP partial progress over several areas (oracle P4: A and B removed, C kept)", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x100000);
  map(env, ioas, BUF, 0x1000, 0x102000);
  map(env, ioas, BUF, 0x2000, 0x104000);
  expectErrno(() => unmap(env, ioas, 0x100000, 0x5000), "ENOENT");
  assert.deepEqual(areasOf(env, ioas), [[0x104000n, 0x105fffn]]);
  expectErrno(() => unmap(env, ioas, 0x100000, 0x1000), "ENOENT");
  expectErrno(() => unmap(env, ioas, 0x102000, 0x1000), "ENOENT");
  assert.equal(unmap(env, ioas, 0x104000, 0x2000), 0x2000n);
});

test("IOAS_UNMAP partial progress with a domain unpins and unmaps the removed areas only", () => {
  // oracle Q1d: same outcome with a mock domain attached
  const env = setup();
  const ioas = ioasAlloc(env);
  const md = mockDomain(env, ioas);
  map(env, ioas, PAGE4K, 0x1000, 0x1100000);
  map(env, ioas, BUF, 0x2000, 0x1101000);
  assert.equal(refsOf(env, PAGE4K), 1);
  expectErrno(() => unmap(env, ioas, 0x1100000, 0x2000), "ENOENT");
  assert.equal(refsOf(env, PAGE4K), 0, "the removed area's page was unpinned");
  assert.equal(refsOf(env, BUF), 1, "the kept area's page stays pinned");
  const dom = env.ctx.getHwptPaging(md.hwpt).domain;
  assert.equal(dom.iovaToPhys(0x1100000 / 2048), -1);
  assert.notEqual(dom.iovaToPhys(0x1101000 / 2048), -1);
  expectErrno(() => unmap(env, ioas, 0x1100000, 0x1000), "ENOENT");
  assert.equal(unmap(env, ioas, 0x1101000, 0x2000), 0x2000n);
  // a partial first area, then a full second: nothing is removed
  map(env, ioas, BUF, 0x2000, 0x1200000);
  map(env, ioas, BUF, 0x1000, 0x1202000);
  expectFailsUnchanged(env, () => unmap(env, ioas, 0x1201000, 0x2000), "ENOENT");
  assert.equal(unmap(env, ioas, 0x1202000, 0x1000), 0x1000n);
});

test("IOAS_UNMAP of a range that starts and ends in holes removes the areas inside", () => {
  // oracle Q1x: unmap(0x200000,0x3000) with an area at 0x201000+0x1000 -> 0x1000
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x201000);
  assert.equal(unmap(env, ioas, 0x200000, 0x3000), 0x1000n);
});

test("IOAS_UNMAP of a range with nothing mapped returns ENOENT", () => {
  // oracle P4 "unmap empty range"
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x100000);
  expectFailsUnchanged(env, () => unmap(env, ioas, 0x500000, 0x1000), "ENOENT");
  expectFailsUnchanged(env, () => unmap(env, ioas, 1n << 63n, 1n << 63n), "ENOENT", "up to the very end");
});

test("IOAS_UNMAP with iova=0 and length=U64_MAX unmaps everything, and succeeds on an empty IOAS", () => {
  // oracle P4: unmap all -> 0x2000, again -> 0
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x100000);
  map(env, ioas, BUF, 0x1000, U64_MAX - 0xfffn);
  map(env, ioas, BUF, 1, 0);
  assert.equal(unmapAll(env, ioas), 0x2001n);
  assert.equal(unmapAll(env, ioas), 0n);
  assert.equal(env.ctx.getIoas(ioas).iopt.areas.size, 0);
});

test("IOAS_UNMAP with length 0 returns EINVAL (iova=0,length=0 is not unmap-all)", () => {
  // oracle Q3d, P4
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x1000);
  expectFailsUnchanged(env, () => unmap(env, ioas, 0, 0), "EINVAL");
  expectFailsUnchanged(env, () => unmap(env, ioas, 0x1000, 0), "EINVAL");
});

test("IOAS_UNMAP EOVERFLOW: iova or length >= ULONG_MAX (other than unmap-all) or iova + length past 2^64", () => {
  // oracle P4
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x1000);
  expectFailsUnchanged(env, () => unmap(env, ioas, U64_MAX, 1), "EOVERFLOW");
  expectFailsUnchanged(env, () => unmap(env, ioas, 1, U64_MAX), "EOVERFLOW");
  expectFailsUnchanged(env, () => unmap(env, ioas, 1n << 63n, (1n << 63n) + 1n), "EOVERFLOW");
});

test("IOAS_UNMAP of an unknown IOAS returns ENOENT, checked first", () => {
  // oracle P4 "bad id"
  const env = setup();
  ioasAlloc(env);
  expectFailsUnchanged(env, () => unmapAll(env, 99), "ENOENT");
  expectFailsUnchanged(env, () => unmap(env, 99, 0, 0), "ENOENT");
  expectFailsUnchanged(env, () => unmap(env, 99, U64_MAX, 1), "ENOENT");
});

test("IOAS_UNMAP of a COPY leaves the source mapping intact", () => {
  const env = setup();
  const a = ioasAlloc(env);
  const b = ioasAlloc(env);
  mockDomain(env, a);
  map(env, a, PAGE4K, 0x1000, 0x1000000);
  env.ctx.ioasCopy({ flags: 7, dst_ioas_id: b, src_ioas_id: a, length: 0x1000n, dst_iova: 0x5000n, src_iova: 0x1000000n });
  const before = snapshot(env);
  assert.equal(unmapAll(env, b), 0x1000n);
  assert.notDeepEqual(snapshot(env), before);
  assert.equal(refsOf(env, PAGE4K), 1);
  assert.equal(env.ctx.getIoas(a).iopt.areas.size, 1);
});

test("IOAS_UNMAP of an area an in-kernel access has pinned calls the access's unmap callback first", () => {
  // selftest access_pin_unmap: the mock access drops its item, so DESTROY_ACCESS_PAGES then gives ENOENT
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  map(env, ioas, BUF, 0x4000, 0x1000000);
  const acc = env.ctx.testCmd({ op: S.IOMMU_TEST_OP_CREATE_ACCESS, id: ioas, flags: S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES }).out_access_fd as number;
  const item = env.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_PAGES, id: acc, flags: 0, iova: 0x1001000n, length: 0x1000n, uptr: BigInt(BUF + 0x1000) }).out_access_pages_id;
  assert.equal(refsOf(env, BUF + 0x1000), 1, "the domain and the access share one pin");
  assert.equal(unmap(env, ioas, 0x1000000, 0x4000), 0x4000n);
  assert.equal(refsOf(env, BUF + 0x1000), 0);
  expectErrno(() => env.ctx.testCmd({ op: S.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, id: acc, access_pages_id: item }), "ENOENT");
});

test("an access that pins pages raises the IOAS alignment to PAGE_SIZE and makes the IOAS busy", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const acc = env.ctx.testCmd({ op: S.IOMMU_TEST_OP_CREATE_ACCESS, id: ioas, flags: S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES }).out_access_fd as number;
  assert.equal(iovaRanges(env, ioas).align, 0x1000n);
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x800, 0x10000), "EINVAL");
  expectFailsUnchanged(env, () => env.ctx.destroy({ id: ioas }), "EBUSY");
  env.ctx.fds.close(acc);
  assert.equal(iovaRanges(env, ioas).align, 1n);
});

test("creating a pinning access on an IOAS with a sub-page mapping returns EADDRINUSE", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x800, 0x10000);
  expectFailsUnchanged(env, () => env.ctx.testCmd({ op: S.IOMMU_TEST_OP_CREATE_ACCESS, id: ioas, flags: S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES }), "EADDRINUSE");
});
