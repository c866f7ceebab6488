/**
 * IOMMU_HWPT_SET_DIRTY_TRACKING and IOMMU_HWPT_GET_DIRTY_BITMAP with the selftest DIRTY op
 * (hw_pagetable.c, io_pagetable.c, iova_bitmap.c, selftest.c). Expectations are the 6.12 kernel's,
 * measured with the oracle where the code was not obvious (a walk error is ignored, the bitmap is
 * pinned lazily, page_size is checked with masks).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { S, env, expectErr, failsCleanly, hwptAlloc, ioasMap, mockDomain, nestedAlloc, scratch, BASE, MOCK_PAGE, MOCK_HUGE, PAGE, type Env } from "./helpers.js";

const DIRTY = S.IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
const NO_CLEAR = S.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR;

interface DEnv extends Env {
  idev: number;
  stdev: number;
  hwpt: number;
  dioas: number;
  dhwpt: number;
}

/** iommufd_dirty_tracking fixture + a dirty-tracking HWPT on a second IOAS mapping `size` bytes at BASE. */
function dirtyEnv(size: number, huge = false): DEnv & { buffer: number } {
  const e = env({ rlimitMemlock: Infinity });
  const md = mockDomain(e.ctx, e.ioas, huge ? S.MOCK_FLAGS_DEVICE_HUGE_IOVA : 0);
  const buffer = huge ? e.p.mmap(Math.max(size, 2 << 20), { shared: true, hugetlb: 21, populate: true }) : e.p.mmap(size, { shared: true });
  const dioas = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  ioasMap(e.ctx, dioas, buffer, size, BASE);
  const dhwpt = hwptAlloc(e.ctx, md.idev, dioas, DIRTY);
  return { ...e, idev: md.idev, stdev: md.stdev, hwpt: md.hwpt, dioas, dhwpt, buffer };
}

function setDirty(e: Env, hwpt: number, on: boolean): void {
  e.ctx.hwptSetDirtyTracking({ flags: on ? S.IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0, hwpt_id: hwpt });
}

/** IOMMU_TEST_OP_DIRTY: mark the IOPTEs selected by the bits (relative to iova, page_size units). */
function markDirty(e: Env, hwpt: number, iova: bigint, length: number, pageSize: number, bits: number[]): bigint {
  const nbits = length / pageSize;
  const bm = new Uint8Array(Math.ceil(nbits / 8));
  for (const b of bits) bm[b >> 3] |= 1 << (b & 7);
  const uptr = scratch(e.p, bm);
  return e.ctx.testCmd({ op: S.IOMMU_TEST_OP_DIRTY, id: hwpt, iova, length: BigInt(length), page_size: BigInt(pageSize), uptr }).out_nr_dirty as bigint;
}

function getDirty(e: Env, hwpt: number, iova: bigint, length: number, pageSize: number, data: bigint, flags = 0): void {
  e.ctx.hwptGetDirtyBitmap({ hwpt_id: hwpt, flags, iova, length: BigInt(length), page_size: BigInt(pageSize), data });
}

function bitsOf(e: Env, addr: bigint, nbytes: number): number[] {
  const b = e.p.read(Number(addr), nbytes);
  const out: number[] = [];
  for (let i = 0; i < nbytes * 8; i++) if (b[i >> 3] & (1 << (i & 7))) out.push(i);
  return out;
}

const range = (a: number, n: number): number[] => Array.from({ length: n }, (_, i) => a + i);

test("set_dirty_tracking: enable/disable on a dirty-capable HWPT, attached or not, repeatedly", () => {
  const e = dirtyEnv(16 * 1024);
  const s = mockDomain(e.ctx, e.dhwpt);
  setDirty(e, e.dhwpt, true);
  setDirty(e, e.dhwpt, true);
  setDirty(e, e.dhwpt, false);
  setDirty(e, e.dhwpt, false);
  e.ctx.destroy({ id: s.stdev });
  setDirty(e, e.dhwpt, true);
  e.ctx.destroy({ id: e.dhwpt });
});

test("set_dirty_tracking: error cases (flags, not a paging HWPT, no dirty ops) change nothing", () => {
  const e = dirtyEnv(16 * 1024);
  const parent = hwptAlloc(e.ctx, e.idev, e.ioas, S.IOMMU_HWPT_ALLOC_NEST_PARENT);
  const nested = nestedAlloc(e.ctx, e.p, e.idev, parent);
  failsCleanly(e, "EOPNOTSUPP", () => e.ctx.hwptSetDirtyTracking({ flags: 2, hwpt_id: e.dhwpt }), "unknown flag");
  failsCleanly(e, "EOPNOTSUPP", () => e.ctx.hwptSetDirtyTracking({ flags: 3, hwpt_id: 999 }), "flags before the id");
  failsCleanly(e, "ENOENT", () => setDirty(e, 999, true), "unknown id");
  failsCleanly(e, "ENOENT", () => setDirty(e, e.ioas, true), "an IOAS");
  failsCleanly(e, "ENOENT", () => setDirty(e, nested, true), "a nested HWPT");
  failsCleanly(e, "ENOENT", () => setDirty(e, e.idev, true), "a device");
  failsCleanly(e, "EOPNOTSUPP", () => setDirty(e, e.hwpt, true), "auto domain without dirty ops");
  failsCleanly(e, "EOPNOTSUPP", () => setDirty(e, e.hwpt, false), "disabling needs dirty ops too");
  failsCleanly(e, "EOPNOTSUPP", () => setDirty(e, parent, true), "a manual HWPT without DIRTY_TRACKING");
  // __reserved is not checked by 6.12
  e.ctx.hwptSetDirtyTracking({ flags: 1, hwpt_id: e.dhwpt, __reserved: 5 });
});

test("dirty op: marking needs tracking enabled, aligned arguments and a bitmap; counts only mapped IOPTEs", () => {
  const e = dirtyEnv(64 * 1024);
  const bm = scratch(e.p, new Uint8Array(64).fill(0xff));
  const dirtyCmd = (o: Partial<S.IommuTestCmd>) => () =>
    e.ctx.testCmd({ op: S.IOMMU_TEST_OP_DIRTY, id: e.dhwpt, iova: BASE, length: 0x4000n, page_size: 0x800n, uptr: bm, ...o });
  failsCleanly(e, "EINVAL", dirtyCmd({}), "tracking disabled");
  setDirty(e, e.dhwpt, true);
  failsCleanly(e, "EINVAL", dirtyCmd({ page_size: 0n }), "page_size 0");
  failsCleanly(e, "EINVAL", dirtyCmd({ length: 0n }), "length 0");
  failsCleanly(e, "EINVAL", dirtyCmd({ iova: BASE + 0x400n }), "iova not a multiple of page_size");
  failsCleanly(e, "EINVAL", dirtyCmd({ length: 0xc00n }), "length not a multiple of page_size");
  failsCleanly(e, "EINVAL", dirtyCmd({ uptr: 0n }), "NULL bitmap");
  failsCleanly(e, "EOVERFLOW", dirtyCmd({ length: 1n << 40n }), "more than 16M*8 bits");
  failsCleanly(e, "EINVAL", dirtyCmd({ length: 1n << 40n, page_size: 0n }), "argument checks come first");
  failsCleanly(e, "ENOENT", dirtyCmd({ id: 999 }), "unknown HWPT");
  failsCleanly(e, "ENOENT", dirtyCmd({ id: e.dioas }), "an IOAS");
  failsCleanly(e, "EINVAL", dirtyCmd({ id: e.hwpt }), "tracking not enabled on the auto domain");
  failsCleanly(e, "EFAULT", dirtyCmd({ uptr: 8n }), "unreadable bitmap");
  assert.equal(markDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, [0, 2]), 2n);
  assert.equal(markDirty(e, e.dhwpt, 0x2000000n, 0x4000, MOCK_PAGE, [0]), 0n, "nothing mapped there");
  // the kernel indexes IOPTEs by iova / page_size: with 4 KiB pages this lands below the mapping
  assert.equal(markDirty(e, e.dhwpt, BASE, 0x4000, 0x1000, [0, 1]), 0n);
});

test("get_dirty_bitmap: argument checks in order (flags/__reserved, id, range, page_size, dirty ops) change nothing", () => {
  const e = dirtyEnv(64 * 1024);
  const bm = scratch(e.p, 64);
  const call = (o: Partial<S.IommuHwptGetDirtyBitmap>) => () =>
    e.ctx.hwptGetDirtyBitmap({ hwpt_id: e.dhwpt, flags: 0, iova: BASE, length: 0x4000n, page_size: 0x800n, data: bm, ...o });
  const parent = hwptAlloc(e.ctx, e.idev, e.ioas, S.IOMMU_HWPT_ALLOC_NEST_PARENT);
  const nested = nestedAlloc(e.ctx, e.p, e.idev, parent);
  failsCleanly(e, "EOPNOTSUPP", call({ flags: 2 }), "unknown flag");
  failsCleanly(e, "EOPNOTSUPP", call({ __reserved: 1 }), "__reserved");
  failsCleanly(e, "EOPNOTSUPP", call({ flags: 2, hwpt_id: 999 }), "flags before id");
  failsCleanly(e, "ENOENT", call({ hwpt_id: 999 }), "unknown id");
  failsCleanly(e, "ENOENT", call({ hwpt_id: nested }), "nested HWPT");
  failsCleanly(e, "ENOENT", call({ hwpt_id: e.dioas }), "IOAS");
  failsCleanly(e, "EINVAL", call({ length: 0n }), "length 0");
  failsCleanly(e, "EOVERFLOW", call({ iova: (1n << 64n) - 0x800n, length: 0x1000n }), "iova + length overflows");
  failsCleanly(e, "EINVAL", call({ iova: BASE + 0x400n, length: 0x800n, page_size: 0x400n }), "iova below the IOAS alignment (2 KiB)");
  failsCleanly(e, "EINVAL", call({ length: 0xc00n, page_size: 0x400n }), "length below the IOAS alignment");
  failsCleanly(e, "EINVAL", call({ page_size: 0n }), "page_size 0");
  failsCleanly(e, "EINVAL", call({ iova: BASE + 0x800n, length: 0x2000n, page_size: 0x1000n }), "iova not page_size aligned");
  failsCleanly(e, "EINVAL", call({ length: 0x1800n, page_size: 0x1000n }), "end not page_size aligned");
  failsCleanly(e, "EINVAL", call({ hwpt_id: e.hwpt, length: 0x1800n, page_size: 0x1000n }), "range checks come before the dirty-ops check");
  failsCleanly(e, "EOPNOTSUPP", call({ hwpt_id: e.hwpt }), "no dirty ops on the domain");
  failsCleanly(e, "EOPNOTSUPP", call({ hwpt_id: parent }), "manual HWPT without DIRTY_TRACKING");
});

/** _test_mock_dirty_bitmaps from the selftest. */
function mockDirtyBitmaps(e: DEnv, length: number, pteSize: number, bitmap: bigint, flags: number): void {
  const pageSize = MOCK_PAGE;
  const nbits = length / pageSize;
  const npte = pteSize / pageSize;
  const pteset = 2 * npte;
  const nr = Math.floor(nbits / pteset) || 1;
  const bytes = Math.ceil(nbits / 8);
  const marks: number[] = [];
  for (let i = 0; i < nbits; i += pteset) marks.push(i);
  assert.equal(markDirty(e, e.dhwpt, BASE, length, pageSize, marks), BigInt(nr));
  e.p.write(Number(bitmap), new Uint8Array(bytes));
  getDirty(e, e.dhwpt, BASE, length, pageSize, bitmap, flags);
  const expected: number[] = [];
  for (let i = 0; i < nbits; i += pteset) for (let j = 0; j < npte && i + j < nbits; j++) expected.push(i + j);
  assert.deepEqual(bitsOf(e, bitmap, bytes), expected);
  e.p.write(Number(bitmap), new Uint8Array(bytes));
  getDirty(e, e.dhwpt, BASE, length, pageSize, bitmap, flags);
  assert.deepEqual(bitsOf(e, bitmap, bytes), flags & NO_CLEAR ? expected : [], "read again");
}

for (const [size, huge] of [
  [8 * 1024, false],
  [16 * 1024, false],
  [64 * 1024, false],
  [128 * 1024, false],
  [320 * 1024, false],
  [64 << 20, false],
  [64 << 20, true],
  [128 << 20, true],
] as Array<[number, boolean]>) {
  for (const flags of [0, NO_CLEAR]) {
    test(`get_dirty_bitmap${flags ? "_no_clear" : ""}: ${size / 1024}K${huge ? " huge (1 MiB IOPTEs)" : ""}, bitmap aligned, +MOCK_PAGE_SIZE and +0xff1`, () => {
      const e = dirtyEnv(size, huge);
      setDirty(e, e.dhwpt, true);
      const nbytes = Math.ceil(size / MOCK_PAGE / 8);
      const area = BigInt(e.p.mmap(nbytes + 2 * PAGE));
      for (const off of [0n, BigInt(MOCK_PAGE), 0xff1n]) mockDirtyBitmaps(e, size, huge ? MOCK_HUGE : MOCK_PAGE, area + off, flags);
    });
  }
}

test("get_dirty_bitmap: bits follow the requested page_size (2K, 1K, 4K, and 0x1800 counts as 2K: __ffs)", () => {
  const e = dirtyEnv(64 * 1024);
  setDirty(e, e.dhwpt, true);
  markDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, [0, 2, 4, 6]);
  const bm = scratch(e.p, 64);
  const read = (len: number, ps: number): number[] => {
    e.p.write(Number(bm), new Uint8Array(64));
    getDirty(e, e.dhwpt, BASE, len, ps, bm, NO_CLEAR);
    return bitsOf(e, bm, 8);
  };
  assert.deepEqual(read(0x4000, 0x800), [0, 2, 4, 6]);
  assert.deepEqual(read(0x4000, 0x400), [0, 1, 4, 5, 8, 9, 12, 13]);
  assert.deepEqual(read(0x4000, 0x1000), [0, 1, 2, 3]);
  assert.deepEqual(read(0x6000, 0x1800), [0, 2, 4, 6], "a non-power-of-two page_size passes the mask checks");
});

test("get_dirty_bitmap: with tracking disabled the call succeeds and writes nothing", () => {
  const e = dirtyEnv(16 * 1024);
  const bm = scratch(e.p, new Uint8Array(8).fill(0xee));
  getDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, bm);
  assert.deepEqual([...e.p.read(Number(bm), 8)], new Array(8).fill(0xee));
  // bits marked while enabled survive a disable but are cleared by the next enable
  setDirty(e, e.dhwpt, true);
  markDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, [0, 1]);
  setDirty(e, e.dhwpt, false);
  e.p.write(Number(bm), new Uint8Array(8));
  getDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, bm, NO_CLEAR);
  assert.deepEqual(bitsOf(e, bm, 8), []);
  setDirty(e, e.dhwpt, true);
  getDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, bm, NO_CLEAR);
  assert.deepEqual(bitsOf(e, bm, 8), [], "enabling starts from a clean snapshot");
  markDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, [3]);
  setDirty(e, e.dhwpt, true);
  getDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, bm, NO_CLEAR);
  assert.deepEqual(bitsOf(e, bm, 8), [], "enabling again clears again");
});

test("get_dirty_bitmap: a range with a hole succeeds; the mapped prefix is reported and nothing after the hole", () => {
  const e = dirtyEnv(64 * 1024);
  setDirty(e, e.dhwpt, true);
  markDirty(e, e.dhwpt, BASE, 0x10000, MOCK_PAGE, [0, 2, 31]);
  const bm = scratch(e.p, 64);
  getDirty(e, e.dhwpt, BASE, 0x20000, MOCK_PAGE, bm, NO_CLEAR);
  assert.deepEqual(bitsOf(e, bm, 16), [0, 2, 31]);
  e.p.write(Number(bm), new Uint8Array(64));
  getDirty(e, e.dhwpt, BASE - 0x1000n, 0x20000, MOCK_PAGE, bm);
  assert.deepEqual(bitsOf(e, bm, 16), [], "a hole at the start ends the walk at once");
  getDirty(e, e.dhwpt, BASE, 0x10000, MOCK_PAGE, bm);
  assert.deepEqual(bitsOf(e, bm, 16), [0, 2, 31], "and cleared nothing");
});

test("get_dirty_bitmap: the bitmap is only touched when something is dirty; unwritable bitmaps lose the bits but the dirty state is cleared", () => {
  const e = dirtyEnv(64 * 1024);
  setDirty(e, e.dhwpt, true);
  getDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, 0n);
  markDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, [0, 1]);
  getDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, 0n);
  const bm = scratch(e.p, 8);
  getDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, bm, NO_CLEAR);
  assert.deepEqual(bitsOf(e, bm, 8), [], "the NULL read cleared the bits");
  const ro = BigInt(e.p.mmap(PAGE, { prot: S.PROT_READ }));
  markDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, [3]);
  getDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, ro);
  getDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, bm, NO_CLEAR);
  assert.deepEqual(bitsOf(e, bm, 8), []);
  // a bitmap running into an unmapped page: the bytes in the first page get their bits
  const two = e.p.mmap(3 * PAGE);
  e.p.munmap(two + PAGE, PAGE);
  markDirty(e, e.dhwpt, BASE, 0x10000, MOCK_PAGE, range(0, 32));
  getDirty(e, e.dhwpt, BASE, 0x10000, MOCK_PAGE, BigInt(two + PAGE - 4));
  assert.deepEqual([...e.p.read(two + PAGE - 4, 4)], [0xff, 0xff, 0xff, 0xff]);
});

test("get_dirty_bitmap: bits that fall in an unpinnable bitmap page are dropped, the others land, the dirty state is cleared", () => {
  const e = dirtyEnv(128 * 1024);
  setDirty(e, e.dhwpt, true);
  const two = e.p.mmap(3 * PAGE);
  e.p.munmap(two + PAGE, PAGE);
  const bm = BigInt(two + PAGE - 4);
  markDirty(e, e.dhwpt, BASE, 0x20000, MOCK_PAGE, [32]);
  getDirty(e, e.dhwpt, BASE, 0x20000, MOCK_PAGE, bm);
  assert.deepEqual([...e.p.read(two + PAGE - 4, 4)], [0, 0, 0, 0]);
  markDirty(e, e.dhwpt, BASE, 0x20000, MOCK_PAGE, [0, 32]);
  getDirty(e, e.dhwpt, BASE, 0x20000, MOCK_PAGE, bm);
  assert.deepEqual([...e.p.read(two + PAGE - 4, 4)], [1, 0, 0, 0]);
  // the next page read-only instead of missing: same result, nothing written there
  e.p.mmap(PAGE, { addr: two + PAGE, fixed: true, prot: S.PROT_READ });
  e.p.write(two + PAGE - 4, new Uint8Array(4));
  markDirty(e, e.dhwpt, BASE, 0x20000, MOCK_PAGE, [0, 32]);
  getDirty(e, e.dhwpt, BASE, 0x20000, MOCK_PAGE, bm);
  assert.deepEqual([...e.p.read(two + PAGE - 4, 5)], [1, 0, 0, 0, 0]);
  const check = scratch(e.p, 16);
  getDirty(e, e.dhwpt, BASE, 0x20000, MOCK_PAGE, check, NO_CLEAR);
  assert.deepEqual(bitsOf(e, check, 16), [], "everything was cleared");
});

test("get_dirty_bitmap: huge IOPTEs report every bit they cover, even past the end of a shorter range", () => {
  const e = dirtyEnv(4 << 20, true);
  setDirty(e, e.dhwpt, true);
  assert.equal(markDirty(e, e.dhwpt, BASE, 1 << 20, MOCK_PAGE, [0]), 1n);
  const bm = BigInt(e.p.mmap(PAGE));
  getDirty(e, e.dhwpt, BASE, 2 << 20, MOCK_PAGE, bm, NO_CLEAR);
  assert.deepEqual(bitsOf(e, bm, 256), range(0, 512));
  e.p.write(Number(bm), new Uint8Array(256));
  getDirty(e, e.dhwpt, BASE, 0x40000, MOCK_PAGE, bm, NO_CLEAR);
  assert.deepEqual(bitsOf(e, bm, 256), range(0, 512), "a 256 KiB range (128 bits) still gets the IOPTE's 512 bits");
  e.p.write(Number(bm), new Uint8Array(256));
  getDirty(e, e.dhwpt, BASE + 0x40000n, 0x80000, MOCK_PAGE, bm, NO_CLEAR);
  assert.deepEqual(bitsOf(e, bm, 256), range(0, 512), "a range starting inside the IOPTE records from its own start");
  // a non-head IOPTE of the second huge page, then a clearing read with 4 KiB granularity
  assert.equal(markDirty(e, e.dhwpt, BASE + (1n << 20n), 1 << 20, MOCK_PAGE, [8]), 1n);
  e.p.write(Number(bm), new Uint8Array(256));
  getDirty(e, e.dhwpt, BASE + (1n << 20n), 1 << 20, MOCK_PAGE, bm);
  assert.deepEqual(bitsOf(e, bm, 256), range(0, 512));
  e.p.write(Number(bm), new Uint8Array(256));
  getDirty(e, e.dhwpt, BASE, 1 << 20, 0x1000, bm);
  assert.deepEqual(bitsOf(e, bm, 256), range(0, 256));
  e.p.write(Number(bm), new Uint8Array(256));
  getDirty(e, e.dhwpt, BASE, 2 << 20, MOCK_PAGE, bm);
  assert.deepEqual(bitsOf(e, bm, 256), [], "both huge IOPTEs were cleared");
});

test("get_dirty_bitmap: unmapping drops the dirty state of the unmapped IOPTEs", () => {
  const e = dirtyEnv(64 * 1024);
  setDirty(e, e.dhwpt, true);
  markDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, [0, 1]);
  e.ctx.ioasUnmap({ ioas_id: e.dioas, iova: BASE, length: 0x10000n });
  ioasMap(e.ctx, e.dioas, e.buffer, 0x10000, BASE);
  const bm = scratch(e.p, 8);
  getDirty(e, e.dhwpt, BASE, 0x4000, MOCK_PAGE, bm);
  assert.deepEqual(bitsOf(e, bm, 8), []);
});

test("device_dirty_capability: GET_HW_INFO reports DIRTY_TRACKING for the fixture device", () => {
  const e = dirtyEnv(16 * 1024);
  const r = e.ctx.getHwInfo({ flags: 0, dev_id: e.idev, data_len: 0, data_uptr: 0n });
  assert.equal(r.out_capabilities, S.IOMMU_HW_CAP_DIRTY_TRACKING);
  expectErr("EOPNOTSUPP", () => setDirty(e, e.hwpt, true));
});
