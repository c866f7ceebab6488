/** IOMMU_IOAS_ALLOC and IOMMU_DESTROY rules (oracle: probe-6.12-rules Q7, probe-ioas P1/P9/P12). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BUF, destroy, expectErrno, expectFailsUnchanged, ioasAlloc, iovaRanges, map, mockDomain, setup, U64_MAX, UNMAPPED } from "./helpers.js";

test("IOAS_ALLOC returns the lowest free ID, starting at 1", () => {
  const env = setup();
  assert.equal(ioasAlloc(env), 1);
  assert.equal(ioasAlloc(env), 2);
  assert.equal(ioasAlloc(env), 3);
});

test("IOAS_ALLOC with non-zero flags returns EOPNOTSUPP and uses no ID", () => {
  const env = setup();
  expectFailsUnchanged(env, () => env.ctx.ioasAlloc({ flags: 1 }), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => env.ctx.ioasAlloc({ flags: 0x80000000 }), "EOPNOTSUPP");
  assert.equal(ioasAlloc(env), 1, "the failed allocation left no ID behind");
});

test("a fresh IOAS allows the whole 64-bit space with alignment 1", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 1n, ranges: [[0n, U64_MAX]] });
  assert.equal(env.ctx.getIoas(ioas).iopt.areas.size, 0);
});

test("IOMMU_DESTROY of an unknown ID (including 0) returns ENOENT", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => destroy(env, 0), "ENOENT");
  expectFailsUnchanged(env, () => destroy(env, 99), "ENOENT");
  destroy(env, ioas);
  expectErrno(() => destroy(env, ioas), "ENOENT", "destroying twice");
});

test("IOMMU_DESTROY of an IOAS with mappings but no domain succeeds and unpins nothing left", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x100000);
  destroy(env, ioas);
  expectErrno(() => env.ctx.getIoas(ioas), "ENOENT");
  assert.equal(env.ctx.objects.size, 0);
});

test("IOMMU_DESTROY of an IOAS with a domain attached, of the attached HWPT or of the device returns EBUSY", () => {
  // oracle Q7: ioas=1, stdev=2, idev=3, hwpt=4
  const env = setup();
  const ioas = ioasAlloc(env);
  const md = mockDomain(env, ioas);
  assert.deepEqual(md, { stdev: 2, hwpt: 4, idev: 3 });
  expectFailsUnchanged(env, () => destroy(env, md.hwpt), "EBUSY", "attached HWPT");
  expectFailsUnchanged(env, () => destroy(env, md.idev), "EBUSY", "device");
  expectFailsUnchanged(env, () => destroy(env, ioas), "EBUSY", "IOAS with a domain");
  destroy(env, md.stdev);
  expectErrno(() => destroy(env, md.hwpt), "ENOENT", "the auto HWPT died with its device");
  expectErrno(() => destroy(env, md.idev), "ENOENT", "the device object died with the mock device");
  destroy(env, ioas);
  assert.equal(ioasAlloc(env), 1, "oracle Q7: next IOAS id is 1 again");
});

test("IOMMU_DESTROY frees the ID and the lowest free ID is reused first", () => {
  // oracle P9: 1,2,3; destroy 2 -> next 2 then 4; destroy 1 and 3 -> next 1
  const env = setup();
  const a = ioasAlloc(env);
  const b = ioasAlloc(env);
  const c = ioasAlloc(env);
  assert.deepEqual([a, b, c], [1, 2, 3]);
  destroy(env, b);
  assert.equal(ioasAlloc(env), 2);
  assert.equal(ioasAlloc(env), 4);
  destroy(env, a);
  destroy(env, c);
  assert.equal(ioasAlloc(env), 1);
  assert.equal(ioasAlloc(env), 3);
});

test("a failed MOCK_DOMAIN attach leaves no object and no ID behind", () => {
  // oracle P12: area on unmapped memory inside the aperture -> attach EFAULT; next id is 2
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, UNMAPPED, 0x1000, 0x1000000);
  expectFailsUnchanged(env, () => mockDomain(env, ioas), "EFAULT");
  assert.equal(ioasAlloc(env), 2);
});

test("IOMMU_DESTROY of the MOCK_DOMAIN stdev detaches: the IOAS's ranges and alignment go back", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const md = mockDomain(env, ioas);
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 0x800n, ranges: [[0x1000000n, 0x7fffffffn]] });
  destroy(env, md.stdev);
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 1n, ranges: [[0n, U64_MAX]] });
  assert.equal(env.ctx.getIoas(ioas).users, 1);
});

test("MOCK_DOMAIN on an ID that is not an IOAS or HWPT returns EINVAL; unknown ID ENOENT", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const md = mockDomain(env, ioas);
  expectFailsUnchanged(env, () => mockDomain(env, 77), "ENOENT");
  expectFailsUnchanged(env, () => mockDomain(env, md.idev), "EINVAL");
});
