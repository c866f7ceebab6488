/**
 * IOMMU_GET_HW_INFO (device.c iommufd_get_hw_info) with the mock driver: the 8-byte
 * iommu_test_hw_info { flags = 0, test_reg = 0xdeadbeef }, type 0xfeedbeef, dirty capability.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { S, env, expectErr, failsCleanly, mockDomain, scratch, type Env } from "./helpers.js";

const TYPE_SELFTEST = 0xfeedbeef;

function setup(): Env & { idev: number; stdev: number } {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  return { ...e, idev: md.idev, stdev: md.stdev };
}

function info(e: Env, dev: number, ptr: bigint, len: number): S.IommuHwInfo {
  return e.ctx.getHwInfo({ flags: 0, dev_id: dev, data_len: len, data_uptr: ptr });
}

const EXPECTED = [0, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde];

test("get_hw_info: a zero-length buffer (even NULL) reports the kernel's length, type and capabilities", () => {
  const e = setup();
  const r = info(e, e.idev, 0n, 0);
  assert.equal(r.data_len, 8);
  assert.equal(r.out_data_type, TYPE_SELFTEST);
  assert.equal(r.out_capabilities, S.IOMMU_HW_CAP_DIRTY_TRACKING);
  assert.equal(r.out_max_pasid_log2, 0);
});

test("get_hw_info: an exact buffer receives flags = 0 and test_reg = 0xdeadbeef", () => {
  const e = setup();
  const p = scratch(e.p, new Uint8Array(8).fill(0xaa));
  const r = info(e, e.idev, p, 8);
  assert.equal(r.data_len, 8);
  assert.deepEqual([...e.p.read(Number(p), 8)], EXPECTED);
});

test("get_hw_info: a larger buffer gets its tail zero-filled; data_len reports 8", () => {
  const e = setup();
  const p = scratch(e.p, new Uint8Array(40).fill(0xaa));
  const r = info(e, e.idev, p, 32);
  assert.equal(r.data_len, 8);
  assert.deepEqual([...e.p.read(Number(p), 40)], [...EXPECTED, ...new Array(24).fill(0), ...new Array(8).fill(0xaa)], "nothing past data_len is written");
});

test("get_hw_info: a smaller buffer gets only its leading bytes; data_len still reports 8", () => {
  const e = setup();
  const p = scratch(e.p, new Uint8Array(12).fill(0xaa));
  const r = info(e, e.idev, p, 4);
  assert.equal(r.data_len, 8);
  assert.deepEqual([...e.p.read(Number(p), 12)], [0, 0, 0, 0, ...new Array(8).fill(0xaa)]);
  const r2 = info(e, e.idev, p, 6);
  assert.equal(r2.data_len, 8);
  assert.deepEqual([...e.p.read(Number(p), 8)], [0, 0, 0, 0, 0xef, 0xbe, 0xaa, 0xaa]);
});

test("get_hw_info: capabilities: a NO_DIRTY mock device reports no DIRTY_TRACKING", () => {
  const e = setup();
  const nd = mockDomain(e.ctx, e.ioas, S.MOCK_FLAGS_DEVICE_NO_DIRTY);
  const r = info(e, nd.idev, 0n, 0);
  assert.equal(r.out_capabilities, 0n);
  assert.equal(r.out_data_type, TYPE_SELFTEST);
  assert.equal(r.data_len, 8);
});

test("get_hw_info: works for a bound device that is attached to a HWPT or to nothing special", () => {
  const e = setup();
  const h = e.ctx.hwptAlloc({ flags: 0, dev_id: e.idev, pt_id: e.ioas, data_type: 0, data_len: 0, data_uptr: 0n }).out_hwpt_id as number;
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, id: e.stdev, pt_id: h });
  assert.equal(info(e, e.idev, 0n, 0).data_len, 8);
});

test("get_hw_info: error cases (flags, __reserved, not a device, bad buffer) change nothing", () => {
  const e = setup();
  const p = scratch(e.p, 8);
  e.p.write(Number(p), new Uint8Array(8).fill(0x11));
  const call = (o: Partial<S.IommuHwInfo>) => () => e.ctx.getHwInfo({ flags: 0, dev_id: e.idev, data_len: 8, data_uptr: p, ...o });
  failsCleanly(e, "EOPNOTSUPP", call({ flags: 1 << 1 }), "unknown flag (INPUT_TYPE, 1 << 0, by profile: test/conformance/profiles.test.ts)");
  failsCleanly(e, "EOPNOTSUPP", call({ flags: 1 << 31 }), "unknown flag");
  failsCleanly(e, "EOPNOTSUPP", call({ __reserved: [0, 1, 0] }), "__reserved");
  failsCleanly(e, "EOPNOTSUPP", call({ __reserved: [0, 0, 1], dev_id: 999 }), "__reserved before dev_id");
  failsCleanly(e, "ENOENT", call({ dev_id: 999 }), "unknown device");
  failsCleanly(e, "ENOENT", call({ dev_id: e.ioas }), "an IOAS");
  failsCleanly(e, "ENOENT", call({ dev_id: e.stdev }), "the selftest object");
  failsCleanly(e, "ENOENT", call({ dev_id: 0 }), "id 0");
  failsCleanly(e, "EFAULT", call({ data_uptr: 0n }), "NULL buffer with data_len 8");
  assert.deepEqual([...e.p.read(Number(p), 8)], new Array(8).fill(0x11), "the buffer is untouched by the failures");
});

test("get_hw_info: a huge data_len zero-fills page by page up to the first unmapped page, then EFAULT", () => {
  const e = setup();
  const base = e.p.mmap(3 * 4096);
  e.p.write(base, new Uint8Array(3 * 4096).fill(0xaa));
  e.p.munmap(base + 2 * 4096, 4096);
  const err = expectErr("EFAULT", () => info(e, e.idev, BigInt(base + 4), 0xffffffff));
  assert.equal(err.out, undefined, "nothing is written back on failure");
  assert.deepEqual([...e.p.read(base, 12)], [0xaa, 0xaa, 0xaa, 0xaa, ...EXPECTED]);
  assert.ok(e.p.read(base + 12, 2 * 4096 - 12).every((b) => b === 0), "everything up to the hole was cleared");
});
