/**
 * The remaining IOMMU_TEST_CMD ops used by the HWPT tests: MD_CHECK_REFS, SET_TEMP_MEMORY_LIMIT
 * and unknown ops (selftest.c iommufd_test).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { S, env, failsCleanly, ioasMap, mockDomain, checkRefs, BASE, PAGE } from "./helpers.js";

test("md_check_refs: pin counts per 4 KiB page; unaligned is EINVAL, a mismatch EIO, unmapped EFAULT", () => {
  const e = env();
  checkRefs(e.ctx, e.buf, 4 * PAGE, 0);
  mockDomain(e.ctx, e.ioas);
  ioasMap(e.ctx, e.ioas, e.buf, 2 * PAGE, BASE);
  checkRefs(e.ctx, e.buf, 2 * PAGE, 1);
  checkRefs(e.ctx, e.buf + 2 * PAGE, 2 * PAGE, 0);
  ioasMap(e.ctx, e.ioas, e.buf, PAGE, BASE + 0x10000n);
  checkRefs(e.ctx, e.buf, PAGE, 2);
  failsCleanly(e, "EIO", () => checkRefs(e.ctx, e.buf, 2 * PAGE, 2), "the second page has 1");
  failsCleanly(e, "EINVAL", () => checkRefs(e.ctx, e.buf + 1, PAGE, 0), "unaligned uptr");
  failsCleanly(e, "EINVAL", () => checkRefs(e.ctx, e.buf, PAGE + 1, 0), "unaligned length");
  failsCleanly(e, "EFAULT", () => checkRefs(e.ctx, 0, PAGE, 0), "NULL");
  checkRefs(e.ctx, 0, 0, 7);
});

test("md_check_refs: huge (compound) pages are skipped whatever refs says", () => {
  const e = env();
  const h = e.p.mmap(2 << 20, { shared: true, hugetlb: 21, populate: true });
  mockDomain(e.ctx, e.ioas);
  ioasMap(e.ctx, e.ioas, h, 2 << 20, BASE);
  checkRefs(e.ctx, h, 4 * PAGE, 0);
  checkRefs(e.ctx, h, 4 * PAGE, 5);
});

test("set_temp_memory_limit: below 12 bytes is EINVAL; anything else is accepted", () => {
  const e = env();
  const set = (limit: number) => () => e.ctx.testCmd({ op: S.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, id: 0, limit });
  failsCleanly(e, "EINVAL", set(11));
  failsCleanly(e, "EINVAL", set(0));
  set(12)();
  set(65536)();
  assert.equal(e.ctx.tempMemoryLimit, 65536);
});

test("test_cmd: an unknown op is EOPNOTSUPP", () => {
  const e = env();
  for (const op of [0, 99, 0x10000]) failsCleanly(e, "EOPNOTSUPP", () => e.ctx.testCmd({ op, id: e.ioas }), `op ${op}`);
});
