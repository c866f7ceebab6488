/**
 * IOMMU_HWPT_INVALIDATE on selftest nested HWPTs and IOMMU_TEST_OP_MD_CHECK_IOTLB
 * (hw_pagetable.c iommufd_hwpt_invalidate, selftest.c mock_domain_cache_invalidate_user).
 * entry_num is written back on success and on failure (the number of entries handled).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  S,
  env,
  expectErr,
  failsCleanly,
  hwptAlloc,
  mockDomain,
  nestedAlloc,
  scratch,
  snapshot,
  u32s,
  checkIotlb,
  checkIotlbAll,
  INV_SELFTEST,
  INV_SELFTEST_INVALID,
  IOTLB_DEFAULT,
  type Env,
} from "./helpers.js";

const FLAG_ALL = 1;

interface IEnv extends Env {
  idev: number;
  stdev: number;
  parent: number;
  n0: number;
  n1: number;
}

function setup(): IEnv {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, S.IOMMU_HWPT_ALLOC_NEST_PARENT);
  const n0 = nestedAlloc(e.ctx, e.p, md.idev, parent);
  const n1 = nestedAlloc(e.ctx, e.p, md.idev, parent);
  return { ...e, idev: md.idev, stdev: md.stdev, parent, n0, n1 };
}

/** An array of iommu_hwpt_invalidate_selftest { flags, iotlb_id } in user memory. */
function reqs(e: Env, ...r: Array<[flags: number, id: number]>): bigint {
  return scratch(e.p, u32s(...r.flat()));
}

function inval(e: Env, o: Partial<S.IommuHwptInvalidate> & { hwpt_id: number }): S.IommuHwptInvalidate {
  return e.ctx.hwptInvalidate({ data_uptr: 0n, data_type: INV_SELFTEST, entry_len: 8, entry_num: 0, ...o });
}

/** Expect failure with `code`, entry_num written back as `done`, and nothing else changed but the IOTLBs. */
function invalFails(e: Env, code: Parameters<typeof expectErr>[0], done: number, o: Partial<S.IommuHwptInvalidate> & { hwpt_id: number }, msg: string): void {
  const err = expectErr(code, () => inval(e, o), msg);
  const out = err.out as S.IommuHwptInvalidate;
  assert.ok(out, `${msg}: the struct is written back on failure`);
  assert.equal(out.entry_num, done, `${msg}: entry_num`);
}

test("hwpt_invalidate: the early checks fail with entry_num = 0 written back and change nothing", () => {
  const e = setup();
  const r = reqs(e, [0, 0]);
  const cases: Array<[Parameters<typeof expectErr>[0], Partial<S.IommuHwptInvalidate> & { hwpt_id: number }, string]> = [
    ["EOPNOTSUPP", { hwpt_id: e.n0, data_uptr: r, entry_num: 1, __reserved: 1 }, "__reserved"],
    ["EOPNOTSUPP", { hwpt_id: 999, data_uptr: 0n, entry_num: 1, entry_len: 0, __reserved: 1 }, "__reserved comes first"],
    ["EINVAL", { hwpt_id: e.n0, data_uptr: 0n, entry_num: 1 }, "NULL data_uptr with entries"],
    ["EINVAL", { hwpt_id: e.n0, data_uptr: r, entry_num: 1, entry_len: 0 }, "entry_len 0 with entries"],
    ["EINVAL", { hwpt_id: e.n0, data_uptr: r, entry_num: 1, entry_len: 4097 }, "entry_len above PAGE_SIZE"],
    ["EINVAL", { hwpt_id: e.n0, data_uptr: r, entry_num: (1 << 19) + 1 }, "entry_num above 1<<19"],
    ["EINVAL", { hwpt_id: 999, data_uptr: 0n, entry_num: 1 }, "array checks come before the id lookup"],
    ["ENOENT", { hwpt_id: e.parent, data_uptr: r, entry_num: 1 }, "a paging (parent) HWPT"],
    ["ENOENT", { hwpt_id: e.parent, entry_num: 0 }, "a paging HWPT with an empty array"],
    ["ENOENT", { hwpt_id: e.ioas, data_uptr: r, entry_num: 1 }, "an IOAS"],
    ["ENOENT", { hwpt_id: 999, data_uptr: r, entry_num: 1 }, "unknown id"],
    ["EINVAL", { hwpt_id: e.n0, data_type: INV_SELFTEST_INVALID, entry_num: 0 }, "entry_num 0 still probes the data type"],
    ["EINVAL", { hwpt_id: e.n0, data_uptr: r, data_type: INV_SELFTEST_INVALID, entry_num: 1 }, "wrong data type"],
    ["EINVAL", { hwpt_id: e.n0, data_uptr: r, entry_num: 1, entry_len: 9 }, "entry_len above the struct size"],
    ["EINVAL", { hwpt_id: e.n0, data_uptr: r, entry_num: 1, entry_len: 16 }, "entry_len 16 (even with a zero tail)"],
    ["EINVAL", { hwpt_id: e.n0, data_uptr: r, entry_num: 1, entry_len: 7 }, "entry_len below the minimum"],
    ["EINVAL", { hwpt_id: e.n0, data_uptr: r, entry_num: 1, entry_len: 1 }, "entry_len 1"],
    ["EFAULT", { hwpt_id: e.n0, data_uptr: 8n, entry_num: 1 }, "unreadable array"],
  ];
  for (const [code, o, msg] of cases) {
    const before = snapshot(e);
    invalFails(e, code, 0, o, msg);
    assert.deepEqual(snapshot(e), before, `${msg}: state changed`);
  }
  checkIotlbAll(e.ctx, e.n0, IOTLB_DEFAULT);
});

test("hwpt_invalidate: entry_num 0 is a successful probe (entry_len and data_uptr ignored)", () => {
  const e = setup();
  const out = inval(e, { hwpt_id: e.n0, entry_num: 0, entry_len: 0, data_uptr: 0n });
  assert.equal(out.entry_num, 0);
  assert.equal(inval(e, { hwpt_id: e.n0, entry_num: 0, entry_len: 99999 }).entry_num, 0);
  checkIotlbAll(e.ctx, e.n0, IOTLB_DEFAULT);
});

test("hwpt_invalidate: entry errors: unknown flags -> EOPNOTSUPP, iotlb_id > 3 -> EINVAL (even with FLAG_ALL)", () => {
  const e = setup();
  invalFails(e, "EOPNOTSUPP", 0, { hwpt_id: e.n0, data_uptr: reqs(e, [0xffffffff, 0]), entry_num: 1 }, "flags 0xffffffff");
  invalFails(e, "EOPNOTSUPP", 0, { hwpt_id: e.n0, data_uptr: reqs(e, [2, 0]), entry_num: 1 }, "flags 2");
  invalFails(e, "EINVAL", 0, { hwpt_id: e.n0, data_uptr: reqs(e, [0, 4]), entry_num: 1 }, "iotlb_id 4");
  invalFails(e, "EINVAL", 0, { hwpt_id: e.n0, data_uptr: reqs(e, [FLAG_ALL, 77]), entry_num: 1 }, "FLAG_ALL with iotlb_id 77");
  checkIotlbAll(e.ctx, e.n0, IOTLB_DEFAULT);
});

test("hwpt_invalidate: processing stops at the first bad entry and entry_num reports the entries handled", () => {
  const e = setup();
  invalFails(e, "EOPNOTSUPP", 1, { hwpt_id: e.n0, data_uptr: reqs(e, [0, 0], [0xffffffff, 1]), entry_num: 2 }, "2nd has bad flags");
  checkIotlb(e.ctx, e.n0, 0, 0);
  for (const i of [1, 2, 3]) checkIotlb(e.ctx, e.n0, i, IOTLB_DEFAULT);
  invalFails(e, "EINVAL", 1, { hwpt_id: e.n0, data_uptr: reqs(e, [0, 0], [0, 4]), entry_num: 2 }, "2nd has a bad id");
  invalFails(e, "EINVAL", 2, { hwpt_id: e.n0, data_uptr: reqs(e, [0, 2], [0, 0], [0, 9]), entry_num: 3 }, "3rd has a bad id");
  checkIotlb(e.ctx, e.n0, 2, 0);
  checkIotlb(e.ctx, e.n0, 1, IOTLB_DEFAULT);
  // the array ends early in user memory: the readable entries are handled
  const page = e.p.mmap(8192);
  e.p.munmap(page + 4096, 4096);
  e.p.write(page + 4088, u32s(0, 1));
  invalFails(e, "EFAULT", 1, { hwpt_id: e.n0, data_uptr: BigInt(page + 4088), entry_num: 2 }, "2nd entry unreadable");
  checkIotlb(e.ctx, e.n0, 1, 0);
});

test("hwpt_invalidate: single, pairs and FLAG_ALL invalidations zero the mock IOTLB entries (the selftest sequence)", () => {
  const e = setup();
  assert.equal(inval(e, { hwpt_id: e.n0, data_uptr: reqs(e, [0, 1]), entry_num: 1 }).entry_num, 1);
  checkIotlb(e.ctx, e.n0, 1, 0);
  checkIotlb(e.ctx, e.n0, 0, IOTLB_DEFAULT);
  assert.equal(inval(e, { hwpt_id: e.n0, data_uptr: reqs(e, [0, 2], [0, 3]), entry_num: 2 }).entry_num, 2);
  checkIotlb(e.ctx, e.n0, 2, 0);
  checkIotlb(e.ctx, e.n0, 3, 0);
  checkIotlb(e.ctx, e.n0, 0, IOTLB_DEFAULT);
  assert.equal(inval(e, { hwpt_id: e.n1, data_uptr: reqs(e, [FLAG_ALL, 3]), entry_num: 1 }).entry_num, 1);
  checkIotlbAll(e.ctx, e.n1, 0);
  checkIotlb(e.ctx, e.n0, 0, IOTLB_DEFAULT);
  // the same entry twice is fine
  assert.equal(inval(e, { hwpt_id: e.n0, data_uptr: reqs(e, [0, 0], [0, 0]), entry_num: 2 }).entry_num, 2);
  checkIotlbAll(e.ctx, e.n0, 0);
});

test("hwpt_invalidate: works whether or not the nested HWPT is attached", () => {
  const e = setup();
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, id: e.stdev, pt_id: e.n0 });
  assert.equal(inval(e, { hwpt_id: e.n0, data_uptr: reqs(e, [FLAG_ALL, 0]), entry_num: 1 }).entry_num, 1);
  checkIotlbAll(e.ctx, e.n0, 0);
});

test("md_check_iotlb: mismatch and index > 3 are EINVAL; non-nested ids are ENOENT", () => {
  const e = setup();
  checkIotlbAll(e.ctx, e.n0, IOTLB_DEFAULT);
  failsCleanly(e, "EINVAL", () => checkIotlb(e.ctx, e.n0, 0, 0), "mismatch");
  failsCleanly(e, "EINVAL", () => checkIotlb(e.ctx, e.n0, 4, IOTLB_DEFAULT), "index 4");
  failsCleanly(e, "ENOENT", () => checkIotlb(e.ctx, e.parent, 0, IOTLB_DEFAULT), "paging HWPT");
  failsCleanly(e, "ENOENT", () => checkIotlb(e.ctx, 999, 0, IOTLB_DEFAULT), "unknown id");
  failsCleanly(e, "ENOENT", () => checkIotlb(e.ctx, e.ioas, 0, IOTLB_DEFAULT), "IOAS");
});
