/** IOMMU_OPTION: RLIMIT_MODE and HUGE_PAGES (oracle: probe-6.12-rules Q8, probe-ioas P3/P10/P12). */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  BUF,
  destroy,
  expectFailsUnchanged,
  ioasAlloc,
  iovaRanges,
  map,
  mockDomain,
  option,
  PAGE4K,
  S,
  setup,
  U64_MAX,
  unmapAll,
} from "./helpers.js";

const { IOMMU_OPTION_RLIMIT_MODE: RLIMIT, IOMMU_OPTION_HUGE_PAGES: HUGE, IOMMU_OPTION_OP_SET: SET, IOMMU_OPTION_OP_GET: GET } = S;

// ------------------------------------------------------------------ RLIMIT_MODE

test("OPTION RLIMIT_MODE: GET is 0 on a fresh fd; SET 1 and back to 0 work while the fd has no objects", () => {
  // oracle Q8x
  const env = setup();
  assert.equal(option(env, RLIMIT, GET, 0, 77n), 0n);
  option(env, RLIMIT, SET, 0, 1n);
  assert.equal(option(env, RLIMIT, GET, 0), 1n);
  option(env, RLIMIT, SET, 0, 0n);
  assert.equal(option(env, RLIMIT, GET, 0), 0n);
});

test("OPTION RLIMIT_MODE SET while the fd holds any object returns EBUSY (whatever the value)", () => {
  // oracle Q8a, P3
  const env = setup();
  ioasAlloc(env);
  expectFailsUnchanged(env, () => option(env, RLIMIT, SET, 0, 1n), "EBUSY");
  expectFailsUnchanged(env, () => option(env, RLIMIT, SET, 0, 0n), "EBUSY");
  expectFailsUnchanged(env, () => option(env, RLIMIT, SET, 0, 5n), "EBUSY");
  assert.equal(option(env, RLIMIT, GET, 0), 0n);
});

test("OPTION RLIMIT_MODE SET with a value >= 2 returns EINVAL", () => {
  // oracle P3
  const env = setup();
  expectFailsUnchanged(env, () => option(env, RLIMIT, SET, 0, 2n), "EINVAL");
  expectFailsUnchanged(env, () => option(env, RLIMIT, SET, 0, U64_MAX), "EINVAL");
});

test("OPTION RLIMIT_MODE SET without CAP_SYS_RESOURCE returns EPERM, checked before EBUSY/EINVAL", () => {
  // oracle P10
  const env = setup({ capSysResource: false });
  expectFailsUnchanged(env, () => option(env, RLIMIT, SET, 0, 1n), "EPERM");
  ioasAlloc(env);
  expectFailsUnchanged(env, () => option(env, RLIMIT, SET, 0, 3n), "EPERM");
  assert.equal(option(env, RLIMIT, GET, 0), 0n, "GET needs no capability");
});

test("OPTION RLIMIT_MODE with a non-zero object_id returns EOPNOTSUPP", () => {
  // oracle Q8x
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => option(env, RLIMIT, GET, ioas), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => option(env, RLIMIT, SET, ioas, 1n), "EOPNOTSUPP");
});

test("OPTION with an unknown op, unknown option_id or non-zero __reserved returns EOPNOTSUPP", () => {
  // oracle Q8b, Q8x, P3
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => option(env, RLIMIT, 2, 0), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => option(env, HUGE, 2, ioas), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => option(env, 2, GET, 0), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => env.ctx.option({ option_id: HUGE, op: GET, __reserved: 1, object_id: ioas, val64: 0n }), "EOPNOTSUPP");
});

test("a context opened as /dev/vfio/vfio starts in mm accounting mode", () => {
  const env = setup();
  const ctx = S.openIommufd(env.host, env.p, { vfioContainer: true });
  assert.equal(ctx.option({ option_id: RLIMIT, op: GET, object_id: 0, val64: 0n }).val64, 1n);
});

// ------------------------------------------------------------------ HUGE_PAGES

test("OPTION HUGE_PAGES GET is 1 on a new IOAS", () => {
  // oracle Q8c
  const env = setup();
  const ioas = ioasAlloc(env);
  assert.equal(option(env, HUGE, GET, ioas, 0xabcn), 1n);
});

test("OPTION HUGE_PAGES with object_id 0 or an unknown ID returns ENOENT (before the op is looked at)", () => {
  // oracle P3
  const env = setup();
  ioasAlloc(env);
  expectFailsUnchanged(env, () => option(env, HUGE, SET, 0, 0n), "ENOENT");
  expectFailsUnchanged(env, () => option(env, HUGE, GET, 0), "ENOENT");
  expectFailsUnchanged(env, () => option(env, HUGE, SET, 77, 0n), "ENOENT");
  expectFailsUnchanged(env, () => option(env, HUGE, 2, 77), "ENOENT");
});

test("OPTION HUGE_PAGES SET with a value >= 2 returns EINVAL", () => {
  // oracle Q8x
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => option(env, HUGE, SET, ioas, 2n), "EINVAL");
});

test("OPTION HUGE_PAGES=0 raises the alignment to PAGE_SIZE; =1 lowers it back; repeating is harmless", () => {
  // oracle P3
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, PAGE4K, 0x1000, 0x100000);
  option(env, HUGE, SET, ioas, 0n);
  assert.equal(option(env, HUGE, GET, ioas), 0n);
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 0x1000n, ranges: [[0n, U64_MAX]] });
  option(env, HUGE, SET, ioas, 0n);
  expectFailsUnchanged(env, () => map(env, ioas, PAGE4K, 0x800, 0x200000), "EINVAL", "length below PAGE_SIZE");
  expectFailsUnchanged(env, () => map(env, ioas, PAGE4K + 0x800, 0x800, null), "EINVAL", "automatic, below PAGE_SIZE");
  option(env, HUGE, SET, ioas, 1n);
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 1n, ranges: [[0n, U64_MAX]] });
});

test("OPTION HUGE_PAGES=0 with a mapping not aligned to PAGE_SIZE returns EADDRINUSE", () => {
  // oracle P3: a 0x800 map at page+0x800 -> EADDRINUSE and GET still 1
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, PAGE4K + 0x800, 0x800, 0x100000);
  expectFailsUnchanged(env, () => option(env, HUGE, SET, ioas, 0n), "EADDRINUSE");
  assert.equal(option(env, HUGE, GET, ioas), 1n);
  unmapAll(env, ioas);
  map(env, ioas, PAGE4K + 0x800, 0x800, 0x100800);
  expectFailsUnchanged(env, () => option(env, HUGE, SET, ioas, 0n), "EADDRINUSE", "page offset 0x800");
});

test("OPTION HUGE_PAGES=0 while a domain is attached and a mapping exists returns EINVAL", () => {
  // oracle P12: EINVAL with domain + area; =1 is always fine; =0 fine once the IOAS is empty
  const env = setup();
  const ioas = ioasAlloc(env);
  const md = mockDomain(env, ioas);
  map(env, ioas, BUF, 0x1000, 0x1000000);
  expectFailsUnchanged(env, () => option(env, HUGE, SET, ioas, 0n), "EINVAL");
  option(env, HUGE, SET, ioas, 1n);
  unmapAll(env, ioas);
  option(env, HUGE, SET, ioas, 0n);
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 0x1000n, ranges: [[0x1000000n, 0x7fffffffn]] });
  destroy(env, md.stdev);
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 0x1000n, ranges: [[0n, U64_MAX]] }, "still PAGE_SIZE without the domain");
});

test("OPTION HUGE_PAGES=0 makes the domain use PAGE_SIZE IOPTEs at most; SET 0 again is a no-op", () => {
  const hugeIoptes = (off: boolean): number => {
    const env = setup({ capIpcLock: true });
    const ioas = ioasAlloc(env);
    if (off) option(env, HUGE, SET, ioas, 0n);
    const out = env.ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, id: ioas, dev_flags: S.MOCK_FLAGS_DEVICE_HUGE_IOVA });
    const dom = env.ctx.getHwptPaging(out.out_hwpt_id as number).domain as S.MockPagingDomain;
    map(env, ioas, BUF, 0x200000, 0x1200000);
    if (off) option(env, HUGE, SET, ioas, 0n); // already off: succeeds even with a domain and a mapping
    let huge = 0;
    dom.ptes.forEach(0, 2 ** 40, (_s, n, _b, tag) => {
      if (tag & 0x100) huge += n;
    });
    return huge;
  };
  assert.ok(hugeIoptes(false) > 0, "control: large IOPTEs are used by default");
  assert.equal(hugeIoptes(true), 0);
});
