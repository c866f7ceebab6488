/**
 * Kernel profiles (issue 3 item 8): openIommufd(host, p, { profile: "newest" | "6.12" }). Everything
 * whose answer differs between Debian's 6.12.117 and the newest uAPI, each rule under both
 * profiles, with the errno 6.12 gives:
 *
 * - GET_HW_INFO flags: 6.12 refuses any flag (EOPNOTSUPP, before the device lookup); newest knows
 *   IOMMU_HW_INFO_FLAG_INPUT_TYPE, which makes the kernel read in_data_type (the union with
 *   out_data_type): DEFAULT or the device's own type -> OK, another type -> EOPNOTSUPP.
 * - MOCK_FLAGS_DEVICE_PASID: 6.12 EINVAL; newest: a PASID-capable mock device, out_max_pasid_log2 20.
 * - struct iommu_hwpt_selftest: 4 bytes in 6.12 (data_len 5.. -> EINVAL), 8 in the newest kernel.
 * - IOMMU_TEST_CMD ops 16 and up: 6.12 EOPNOTSUPP; newest DEV_CHECK_CACHE, TRIGGER_VEVENT and the
 *   PASID ops (17..21) work; the DMABUF ops (22+) are not modelled.
 * - IOAS_MAP_FILE / IOAS_CHANGE_PROCESS / VIOMMU_ALLOC / VDEVICE_ALLOC / VEVENTQ_ALLOC: 6.12 has no
 *   such ioctl (ENOTTY, also at the library).
 * - paging HWPT_ALLOC with IOMMU_HWPT_ALLOC_PASID or IOMMU_HWPT_FAULT_ID_VALID: 6.12 EOPNOTSUPP,
 *   newest allocates (a PASID-compatible, or a fault-capable, paging HWPT).
 *
 * The 6.12 answers are the real kernel's: oracle/probes/probe-profiles.c, replayed here through the
 * ioctl dispatcher, must print exactly its transcript probe-profiles.out.txt (INFO lines aside).
 * The newest answers follow the newest kernel's source (device.c iommufd_get_hw_info, selftest.c
 * mock_domain_hw_info / mock_dev_create / iommufd_test_dev_check_cache).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as S from "../../src/index.js";
import { Errno } from "../../src/errno.js";
import type { KernelProfile } from "../../src/iommufd/context.js";
import type { IommuDriver } from "../../src/iommu/driver.js";
import { HWPT_SELFTEST_SIZE, IOMMU_TEST_DEV_CACHE_DEFAULT } from "../../src/iommu/drivers/mock.js";
import { IOMMU_TEST_OP_DEV_CHECK_CACHE } from "../../src/iommufd/test-ops.js";
import { expectErr, failsCleanly, mockDomain, nextId, scratch, type Env as HwptEnv } from "../hwpt/helpers.js";
import { call, env as uenv, put, u32At, u64At, PAGE, type Env as UEnv } from "../uapi/helpers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const PROFILES: readonly KernelProfile[] = ["newest", "6.12"];
const SELFTEST_TYPE = 0xfeedbeef;
const INPUT_TYPE = S.IOMMU_HW_INFO_FLAG_INPUT_TYPE;

/** The fixture of test/hwpt (process, context, IOAS, buffer) under a profile. */
function env(profile: KernelProfile): HwptEnv {
  const host = new S.Host();
  const p = host.spawn({ uid: 1000, capSysResource: true });
  const ctx = S.openIommufd(host, p, { profile });
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const buf = p.mmap(16 * PAGE, { shared: true });
  return { host, p, ctx, ioas, buf };
}

function withDev(profile: KernelProfile): HwptEnv & { md: ReturnType<typeof mockDomain> } {
  const e = env(profile);
  return { ...e, md: mockDomain(e.ctx, e.ioas) };
}

// ------------------------------------------------------------------------------ the profile option

test("openIommufd: the profile defaults to newest, is fixed at open, and an unknown name is a TypeError", () => {
  const host = new S.Host();
  const p = host.spawn({});
  assert.equal(S.openIommufd(host, p).profile, "newest");
  assert.equal(S.openIommufd(host, p, { profile: "6.12" }).profile, "6.12");
  assert.throws(() => S.openIommufd(host, p, { profile: "6.1" as KernelProfile }), TypeError);
});

// ------------------------------------------------------------------------------ GET_HW_INFO

test("GET_HW_INFO flags, 6.12: any flag bit (INPUT_TYPE included) is EOPNOTSUPP, checked before the device; nothing is written", () => {
  const e = withDev("6.12");
  const data = scratch(e.p, new Uint8Array(16).fill(0xaa));
  const call612 = (o: Partial<S.IommuHwInfo>) => () => e.ctx.getHwInfo({ flags: 0, dev_id: e.md.idev, data_len: 16, data_uptr: data, ...o });
  for (const flags of [INPUT_TYPE, 1 << 1, 1 << 31, 0xffffffff]) failsCleanly(e, "EOPNOTSUPP", call612({ flags }), `flags 0x${flags.toString(16)}`);
  failsCleanly(e, "EOPNOTSUPP", call612({ flags: INPUT_TYPE, in_data_type: SELFTEST_TYPE }), "INPUT_TYPE with the device's own type");
  failsCleanly(e, "EOPNOTSUPP", call612({ flags: INPUT_TYPE, dev_id: 999 }), "flags come before the device lookup");
  assert.ok(e.p.read(Number(data), 16).every((b) => b === 0xaa));
});

test("GET_HW_INFO flags, newest: INPUT_TYPE with DEFAULT or the device's own type returns the device's data; other bits are EOPNOTSUPP", () => {
  const e = withDev("newest");
  for (const type of [S.IOMMU_HW_INFO_TYPE_DEFAULT, SELFTEST_TYPE]) {
    const data = scratch(e.p, new Uint8Array(16).fill(0xaa));
    const r = e.ctx.getHwInfo({ flags: INPUT_TYPE, dev_id: e.md.idev, data_len: 16, data_uptr: data, in_data_type: type });
    assert.equal(r.out_data_type, SELFTEST_TYPE);
    assert.equal(r.in_data_type, SELFTEST_TYPE, "one u32: the union holds the answer");
    assert.equal(r.data_len, 8);
    assert.equal(r.out_capabilities, S.IOMMU_HW_CAP_DIRTY_TRACKING);
    assert.deepEqual([...e.p.read(Number(data), 16)], [0, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde, 0, 0, 0, 0, 0, 0, 0, 0]);
  }
  const data = scratch(e.p, new Uint8Array(8).fill(0xaa));
  const c = (o: Partial<S.IommuHwInfo>) => () => e.ctx.getHwInfo({ flags: 0, dev_id: e.md.idev, data_len: 8, data_uptr: data, ...o });
  for (const flags of [1 << 1, 1 << 31, INPUT_TYPE | (1 << 1)]) failsCleanly(e, "EOPNOTSUPP", c({ flags }), `flags 0x${flags.toString(16)}`);
  failsCleanly(e, "EOPNOTSUPP", c({ flags: INPUT_TYPE, __reserved: [0, 1, 0] }), "__reserved still checked");
});

test("GET_HW_INFO INPUT_TYPE, newest: a type the device cannot provide is EOPNOTSUPP, after the device lookup (ENOENT first)", () => {
  const e = withDev("newest");
  const data = scratch(e.p, new Uint8Array(8).fill(0x11));
  const c = (o: Partial<S.IommuHwInfo>) => () => e.ctx.getHwInfo({ flags: INPUT_TYPE, dev_id: e.md.idev, data_len: 8, data_uptr: data, ...o });
  for (const t of [SELFTEST_TYPE + 1, S.IOMMU_HW_INFO_TYPE_INTEL_VTD, S.IOMMU_HW_INFO_TYPE_ARM_SMMUV3, 0xffffffff])
    failsCleanly(e, "EOPNOTSUPP", c({ in_data_type: t }), `type 0x${t.toString(16)}`);
  failsCleanly(e, "ENOENT", c({ in_data_type: SELFTEST_TYPE + 1, dev_id: 999 }), "unknown device before the type check");
  failsCleanly(e, "ENOENT", c({ in_data_type: SELFTEST_TYPE, dev_id: e.ioas }), "an IOAS is not a device");
  assert.ok(e.p.read(Number(data), 8).every((b) => b === 0x11), "the failures wrote nothing");
});

test("GET_HW_INFO INPUT_TYPE, newest: a driver without hw_info answers NONE with no data, whatever type is asked", () => {
  const e = env("newest");
  const noHwInfo: IommuDriver = Object.assign(Object.create(S.mockIommu) as IommuDriver, { hwInfo: () => null });
  const idev = e.ctx.bindDevice(new S.Device({ name: "no-hw-info", driver: noHwInfo }));
  const data = scratch(e.p, new Uint8Array(8).fill(0xaa));
  for (const t of [0, SELFTEST_TYPE, 7]) {
    const r = e.ctx.getHwInfo({ flags: INPUT_TYPE, dev_id: idev.id, data_len: 8, data_uptr: data, in_data_type: t });
    assert.equal(r.out_data_type, S.IOMMU_HW_INFO_TYPE_NONE);
    assert.equal(r.data_len, 0);
  }
  assert.ok(e.p.read(Number(data), 8).every((b) => b === 0), "the whole buffer is cleared");
});

test("GET_HW_INFO without INPUT_TYPE ignores the value at offset 24, under both profiles", () => {
  for (const profile of PROFILES) {
    const e = withDev(profile);
    const r = e.ctx.getHwInfo({ flags: 0, dev_id: e.md.idev, data_len: 0, data_uptr: 0n, in_data_type: SELFTEST_TYPE + 1, out_data_type: SELFTEST_TYPE + 1 });
    assert.equal(r.out_data_type, SELFTEST_TYPE, profile);
    assert.equal(r.data_len, 8, profile);
  }
});

// ------------------------------------------------------------------------------ mock device flags

test("MOCK_FLAGS_DEVICE_PASID, 6.12: EINVAL with or without other flags; no object and no ID left behind", () => {
  const e = env("6.12");
  const next = nextId(e.ctx);
  for (const f of [S.MOCK_FLAGS_DEVICE_PASID, S.MOCK_FLAGS_DEVICE_PASID | S.MOCK_FLAGS_DEVICE_NO_DIRTY, S.MOCK_FLAGS_DEVICE_PASID | S.MOCK_FLAGS_DEVICE_HUGE_IOVA])
    failsCleanly(e, "EINVAL", () => mockDomain(e.ctx, e.ioas, f), `dev_flags 0x${f.toString(16)}`);
  assert.equal(nextId(e.ctx), next);
  // the flags 6.12 knows still work, and its devices report no PASID
  const md = mockDomain(e.ctx, e.ioas, S.MOCK_FLAGS_DEVICE_NO_DIRTY);
  assert.equal(e.ctx.getHwInfo({ flags: 0, dev_id: md.idev, data_len: 0, data_uptr: 0n }).out_max_pasid_log2, 0);
});

test("MOCK_FLAGS_DEVICE_PASID, newest: a PASID-capable device, out_max_pasid_log2 = MOCK_PASID_WIDTH (20); plain devices report 0", () => {
  const e = env("newest");
  const plain = mockDomain(e.ctx, e.ioas);
  const pasid = mockDomain(e.ctx, e.ioas, S.MOCK_FLAGS_DEVICE_PASID);
  const both = mockDomain(e.ctx, e.ioas, S.MOCK_FLAGS_DEVICE_PASID | S.MOCK_FLAGS_DEVICE_NO_DIRTY);
  const hw = (idev: number) => e.ctx.getHwInfo({ flags: 0, dev_id: idev, data_len: 0, data_uptr: 0n });
  assert.equal(S.MOCK_PASID_WIDTH, 20);
  assert.equal(hw(plain.idev).out_max_pasid_log2, 0);
  assert.equal(hw(pasid.idev).out_max_pasid_log2, S.MOCK_PASID_WIDTH);
  assert.equal(hw(pasid.idev).out_capabilities, S.IOMMU_HW_CAP_DIRTY_TRACKING, "a mock device is not PCI: no PASID_EXEC/PRIV bits");
  assert.equal(hw(both.idev).out_max_pasid_log2, S.MOCK_PASID_WIDTH);
  assert.equal(hw(both.idev).out_capabilities, 0n);
  // bits no kernel knows are EINVAL under both profiles
  failsCleanly(e, "EINVAL", () => mockDomain(e.ctx, e.ioas, 1 << 3));
});

// ------------------------------------------------------------------------------ iommu_hwpt_selftest

test("iommu_hwpt_selftest size: 6.12 takes exactly 4 bytes (data_len 5.. EINVAL); newest takes 4..8 (pagetable_type ignored by a nested alloc)", () => {
  assert.deepEqual(HWPT_SELFTEST_SIZE, { "6.12": 4, newest: 8 });
  for (const profile of PROFILES) {
    const e = withDev(profile);
    const parent = e.ctx.hwptAlloc({ flags: S.IOMMU_HWPT_ALLOC_NEST_PARENT, dev_id: e.md.idev, pt_id: e.ioas, data_type: 0, data_len: 0, data_uptr: 0n }).out_hwpt_id as number;
    const data = scratch(e.p, new Uint8Array([0xef, 0xbe, 0xad, 0x0b, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    const nested = (len: number) => () =>
      e.ctx.hwptAlloc({ flags: 0, dev_id: e.md.idev, pt_id: parent, data_type: S.IOMMU_HWPT_DATA_SELFTEST, data_len: len, data_uptr: data }).out_hwpt_id as number;
    const size = HWPT_SELFTEST_SIZE[profile];
    failsCleanly(e, "EINVAL", nested(3), `${profile}: below the minimum`);
    for (let len = 4; len <= 16; len++) {
      if (len > size) {
        failsCleanly(e, "EINVAL", nested(len), `${profile}: data_len ${len} above sizeof ${size}`);
        continue;
      }
      const id = nested(len)();
      e.ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_IOTLB, id, iotlb_id: 0, iotlb: 0xbadbeef });
      e.ctx.destroy({ id });
    }
  }
});

// ------------------------------------------------------------------------------ test ops

test("test ops 16+, 6.12: every op above TRIGGER_IOPF (15) is EOPNOTSUPP, before any argument is looked at", () => {
  const e = withDev("6.12");
  for (const op of [16, 17, 18, 19, 20, 21, 22, 23, 24, 100, 0xffffffff])
    failsCleanly(e, "EOPNOTSUPP", () => e.ctx.testCmd({ op, id: e.md.idev, cache_id: 0, cache: IOMMU_TEST_DEV_CACHE_DEFAULT }), `op ${op}`);
});

test("test ops 16+, newest: DEV_CHECK_CACHE compares a mock device's cache slot (default 0xbaddad); bad slot or value EINVAL, not a device ENOENT", () => {
  const e = withDev("newest");
  const check = (o: Partial<S.IommuTestCmd>) => () => e.ctx.testCmd({ op: IOMMU_TEST_OP_DEV_CHECK_CACHE, id: e.md.idev, cache_id: 0, cache: 0xbaddad, ...o });
  for (let i = 0; i < 4; i++) check({ cache_id: i })();
  failsCleanly(e, "EINVAL", check({ cache_id: 4 }), "slot above MOCK_DEV_CACHE_ID_MAX");
  failsCleanly(e, "EINVAL", check({ cache: 0 }), "another value");
  failsCleanly(e, "ENOENT", check({ id: e.md.stdev }), "the selftest object is not a device");
  failsCleanly(e, "ENOENT", check({ id: 999 }), "no such object");
  // the DMABUF ops softiommu does not model, and ops no kernel has
  for (const op of [22, 23, 24, 100]) failsCleanly(e, "EOPNOTSUPP", () => e.ctx.testCmd({ op, id: e.md.stdev }), `op ${op}`);
});

test("test ops 17..21, newest: known ops that look their arguments up (TRIGGER_VEVENT ENOENT for dev_id 0, PASID ops ENOENT for a non-selftest id)", () => {
  const e = withDev("newest");
  failsCleanly(e, "ENOENT", () => e.ctx.testCmd({ op: 17, id: 0, dev_id: 0 }), "TRIGGER_VEVENT dev_id 0");
  failsCleanly(e, "ENOENT", () => e.ctx.testCmd({ op: 17, id: 0, dev_id: e.md.idev }), "TRIGGER_VEVENT of a device not behind a vIOMMU");
  for (const op of [18, 19, 20, 21]) failsCleanly(e, "ENOENT", () => e.ctx.testCmd({ op, id: e.md.idev, pasid: 1, pt_id: e.md.hwpt }), `op ${op} on the idev, not the selftest object`);
  failsCleanly(e, "ENOENT", () => e.ctx.testCmd({ op: 18, id: e.md.stdev, pasid: 1, pt_id: 999 }), "PASID_ATTACH of an unknown pt_id");
});

test("vIOMMU, vDEVICE and vEVENTQ, 6.12: the library refuses them with ENOTTY before any argument; newest runs them", () => {
  const e = withDev("6.12");
  const parent = e.ctx.hwptAlloc({ flags: S.IOMMU_HWPT_ALLOC_NEST_PARENT, dev_id: e.md.idev, pt_id: e.ioas, data_type: 0, data_len: 0, data_uptr: 0n }).out_hwpt_id as number;
  failsCleanly(e, "ENOTTY", () => e.ctx.viommuAlloc({ flags: 0, type: S.IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: e.md.idev, hwpt_id: parent, data_len: 0, data_uptr: 0n }), "VIOMMU_ALLOC");
  failsCleanly(e, "ENOTTY", () => e.ctx.vdeviceAlloc({ viommu_id: 1, dev_id: e.md.idev, virt_id: 0x99n }), "VDEVICE_ALLOC");
  failsCleanly(e, "ENOTTY", () => e.ctx.veventqAlloc({ flags: 7, viommu_id: 1, type: 0, veventq_depth: 0 }), "VEVENTQ_ALLOC");
  const n = withDev("newest");
  const np = n.ctx.hwptAlloc({ flags: S.IOMMU_HWPT_ALLOC_NEST_PARENT, dev_id: n.md.idev, pt_id: n.ioas, data_type: 0, data_len: 0, data_uptr: 0n }).out_hwpt_id as number;
  const v = n.ctx.viommuAlloc({ flags: 0, type: S.IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: n.md.idev, hwpt_id: np, data_len: 0, data_uptr: 0n }).out_viommu_id as number;
  assert.equal(n.ctx.vdeviceAlloc({ viommu_id: v, dev_id: n.md.idev, virt_id: 0x99n }).out_vdevice_id, v + 1);
  assert.equal(n.ctx.veventqAlloc({ flags: 0, viommu_id: v, type: S.IOMMU_VEVENTQ_TYPE_SELFTEST, veventq_depth: 2 }).out_veventq_id, v + 2);
});

test("paging HWPT_ALLOC with ALLOC_PASID or FAULT_ID_VALID: 6.12 EOPNOTSUPP (nothing left), newest allocates them; NEST_PARENT with a fault id stays EOPNOTSUPP", () => {
  const fault = (e: HwptEnv) => e.ctx.faultQueueAlloc({ flags: 0 }).out_fault_id as number;
  const alloc = (e: HwptEnv & { md: ReturnType<typeof mockDomain> }, flags: number, fault_id = 0) => () =>
    e.ctx.hwptAlloc({ flags, dev_id: e.md.idev, pt_id: e.ioas, data_type: 0, data_len: 0, data_uptr: 0n, fault_id }).out_hwpt_id as number;
  const old = withDev("6.12");
  const f612 = fault(old);
  failsCleanly(old, "EOPNOTSUPP", alloc(old, S.IOMMU_HWPT_ALLOC_PASID), "ALLOC_PASID");
  failsCleanly(old, "EOPNOTSUPP", alloc(old, S.IOMMU_HWPT_FAULT_ID_VALID, f612), "FAULT_ID_VALID");
  const e = withDev("newest");
  const f = fault(e);
  const a = alloc(e, S.IOMMU_HWPT_ALLOC_PASID)();
  assert.equal((e.ctx.objects.get(a) as S.HwptPaging).pasidCompat, true);
  const b = alloc(e, S.IOMMU_HWPT_FAULT_ID_VALID, f)();
  assert.equal((e.ctx.objects.get(b) as S.HwptPaging).fault?.id, f);
  expectErr("EBUSY", () => e.ctx.destroy({ id: f }), "the fault-capable paging HWPT holds its fault queue");
  failsCleanly(e, "ENOENT", alloc(e, S.IOMMU_HWPT_FAULT_ID_VALID, 999), "unknown fault id");
  failsCleanly(e, "EOPNOTSUPP", alloc(e, S.IOMMU_HWPT_FAULT_ID_VALID | S.IOMMU_HWPT_ALLOC_NEST_PARENT, f), "a nesting parent takes no faults");
  failsCleanly(e, "EOPNOTSUPP", alloc(e, 1 << 4), "bits no kernel knows");
});

// ------------------------------------------------------------------------------ newer ioctls

test("IOAS_MAP_FILE and IOAS_CHANGE_PROCESS, 6.12: the library refuses them with ENOTTY (6.12 has no such ioctl) and changes nothing", () => {
  const e = env("6.12");
  const file = e.p.memfdCreate("f");
  file.truncate(0x4000);
  e.ctx.memfdResolver = (_p, n) => (n === 9 ? file : undefined);
  failsCleanly(e, "ENOTTY", () => e.ctx.ioasMapFile({ flags: 7, ioas_id: e.ioas, fd: 9, start: 0n, length: 0x4000n, iova: 1n << 24n }), "MAP_FILE");
  failsCleanly(e, "ENOTTY", () => e.ctx.ioasMapFile({ flags: 7, ioas_id: 999, fd: -1, start: 0n, length: 0n, iova: 0n }), "MAP_FILE, ENOTTY before any argument");
  failsCleanly(e, "ENOTTY", () => e.ctx.ioasChangeProcess({}), "CHANGE_PROCESS");
  failsCleanly(e, "ENOTTY", () => e.ctx.ioasChangeProcess({ __reserved: 1 }), "CHANGE_PROCESS, ENOTTY before __reserved");
});

test("IOAS_MAP_FILE and IOAS_CHANGE_PROCESS, newest: they run", () => {
  const e = env("newest");
  const file = e.p.memfdCreate("f");
  file.truncate(0x4000);
  e.ctx.memfdResolver = (_p, n) => (n === 9 ? file : undefined);
  const r = e.ctx.ioasMapFile({ flags: 7, ioas_id: e.ioas, fd: 9, start: 0n, length: 0x4000n, iova: 1n << 24n });
  assert.equal(r.iova, 1n << 24n);
  e.ctx.ioasChangeProcess({});
  expectErr("EOPNOTSUPP", () => e.ctx.ioasChangeProcess({ __reserved: 1 }));
});

// ------------------------------------------------------------------------------ the oracle probe

const PROBE = join(ROOT, "oracle", "probes", "probe-profiles.out.txt");

/** oracle/probes/probe-profiles.c, call for call, through the ioctl dispatcher. */
function replayProbe(profile: KernelProfile): string[] {
  const e: UEnv = uenv(profile);
  const out: string[] = [];
  const hex = (n: number | bigint) => `0x${n.toString(16)}`;
  const b2 = (n: number) => `0x${n.toString(16).padStart(2, "0")}`;
  const rcOf = (r: ReturnType<typeof call>) => `rc=${r.res === "OK" ? r.ret : -1} errno=${r.res === "OK" ? 0 : Errno[r.res]}`;
  const S_ = e.mem; // struct
  const D = e.mem + PAGE; // data
  const raw = (size: number, fields: [number, number, "u32" | "u64" | "s32"][]): Uint8Array => {
    const b = new Uint8Array(size);
    const v = new DataView(b.buffer);
    for (const [off, val, t] of fields) {
      if (t === "u64") v.setBigUint64(off, BigInt(val), true);
      else if (t === "s32") v.setInt32(off, val, true);
      else v.setUint32(off, val >>> 0, true);
    }
    return b;
  };
  const io = (req: number, b: Uint8Array) => {
    put(e, S_, b);
    return call(e, req, S_);
  };
  const testCmd = (op: number, id: number, extra: [number, number, "u32"][] = []) =>
    io(0x3ba0, raw(72, [[0, 72, "u32"], [4, op, "u32"], [8, id, "u32"], ...extra]));
  const destroy = (id: number) => io(0x3b80, raw(8, [[0, 8, "u32"], [4, id, "u32"]]));
  const ioasAlloc = () => {
    assert.equal(io(0x3b81, raw(12, [[0, 12, "u32"]])).res, "OK");
    return u32At(e, S_ + 8);
  };

  const ioas = ioasAlloc();
  assert.equal(testCmd(2, ioas).res, "OK");
  const stdev = u32At(e, S_ + 16);
  const hwpt = u32At(e, S_ + 20);
  const idev = u32At(e, S_ + 24);
  out.push(`INFO ioas=${ioas} stdev=${stdev} hwpt=${hwpt} idev=${idev}`);

  const hwInfo = (q: string, dev: number, flags: number, type: number) => {
    put(e, D, new Uint8Array(16).fill(0xaa));
    const r = io(0x3b8a, raw(40, [[0, 40, "u32"], [4, flags, "u32"], [8, dev, "u32"], [12, 16, "u32"], [16, D, "u64"], [24, type, "u32"]]));
    const data = e.p.read(D, 16);
    out.push(
      `${q} ${rcOf(r)} data_len=${u32At(e, S_ + 12)} type=${hex(u32At(e, S_ + 24))} max_pasid_log2=${e.p.read(S_ + 28, 1)[0]} ` +
        `caps=${hex(u64At(e, S_ + 32))} byte0=${b2(data[0])} byte8=${b2(data[8])}`,
    );
  };
  hwInfo("K01 hw_info flags=0", idev, 0, 0);
  hwInfo("K02 hw_info flags=INPUT_TYPE type=DEFAULT", idev, INPUT_TYPE, 0);
  hwInfo("K03 hw_info flags=INPUT_TYPE type=SELFTEST", idev, INPUT_TYPE, SELFTEST_TYPE);
  hwInfo("K04 hw_info flags=INPUT_TYPE type=SELFTEST+1", idev, INPUT_TYPE, SELFTEST_TYPE + 1);
  hwInfo("K05 hw_info flags=1<<1", idev, 1 << 1, 0);
  hwInfo("K06 hw_info flags=1<<31", idev, 1 << 31, 0);
  hwInfo("K07 hw_info flags=INPUT_TYPE dev_id=999", 999, INPUT_TYPE, 0);
  hwInfo("K08 hw_info flags=0 type=SELFTEST+1 (no INPUT_TYPE: the field is not read)", idev, 0, SELFTEST_TYPE + 1);
  hwInfo("K09 hw_info flags=INPUT_TYPE type=SELFTEST dev_id=ioas", ioas, INPUT_TYPE, SELFTEST_TYPE);

  {
    const firstFree = ioasAlloc();
    destroy(firstFree);
    const flags = [4, 4 | 1, 4 | 2, 1, 2];
    flags.forEach((f, i) => {
      const r = testCmd(12, ioas, [[28, f, "u32"]]);
      out.push(`K1${i + 1} mock_domain_flags dev_flags=${hex(f)} ${rcOf(r)}`);
      if (r.res === "OK") {
        const s = u32At(e, S_ + 16);
        const d = u32At(e, S_ + 24);
        out.push(`INFO stdev=${s} idev=${d}`);
        hwInfo(`K1${i + 1} hw_info of that device`, d, 0, 0);
        destroy(s);
      }
    });
    const probeId = ioasAlloc();
    out.push(`K16 no ID is used up by the calls above: ${probeId === firstFree ? "yes" : "no"}`);
    out.push(`INFO probe_id=${probeId}`);
    destroy(probeId);
  }

  {
    const hwptAlloc = (flags: number, dev: number, pt: number, type: number, len: number, data: number, fault: number) =>
      io(0x3b89, raw(48, [[0, 48, "u32"], [4, flags, "u32"], [8, dev, "u32"], [12, pt, "u32"], [24, type, "u32"], [28, len, "u32"], [32, data, "u64"], [40, fault, "u32"]]));
    assert.equal(hwptAlloc(1, idev, ioas, 0, 0, 0, 0).res, "OK");
    const parent = u32At(e, S_ + 16);
    out.push(`INFO parent=${parent}`);
    const DATA = D + 64;
    put(e, DATA, raw(16, [[0, 0xbadbeef, "u32"]]));
    [3, 4, 5, 8, 12, 16].forEach((len, i) => {
      const r = hwptAlloc(0, idev, parent, 0xdead, len, DATA, 0);
      out.push(`K2${i + 1} nested data_len=${len} (zeros after iotlb) ${rcOf(r)}`);
      if (r.res === "OK") destroy(u32At(e, S_ + 16));
    });
    put(e, DATA + 4, raw(4, [[0, 7, "u32"]]));
    const r = hwptAlloc(0, idev, parent, 0xdead, 8, DATA, 0);
    out.push(`K27 nested data_len=8 (u32 7 after iotlb) ${rcOf(r)}`);
    if (r.res === "OK") destroy(u32At(e, S_ + 16));
    destroy(parent);

    out.push(`K31 test op 16 (DEV_CHECK_CACHE idev slot 0 = 0xbaddad) ${rcOf(testCmd(16, idev, [[16, 0, "u32"], [20, 0xbaddad, "u32"]]))}`);
    for (const op of [17, 18, 19, 20, 21, 22, 23, 24, 0, 100, 0xffffffff]) out.push(`K32 test op ${op} ${rcOf(testCmd(op, stdev))}`);

    const file = e.p.memfdCreate("probe");
    file.truncate(4096);
    e.ctx.memfdResolver = (_p, n) => (n === 5 ? file : undefined);
    const mf = raw(40, [[0, 40, "u32"], [4, 7, "u32"], [8, ioas, "u32"], [12, 5, "s32"], [16, 0, "u64"], [24, 4096, "u64"], [32, 1 << 24, "u64"]]);
    out.push(`K41 IOAS_MAP_FILE ${rcOf(io(0x3b8f, mf))}`);
    out.push(`K42 IOAS_CHANGE_PROCESS ${rcOf(io(0x3b92, raw(8, [[0, 8, "u32"]])))}`);

    const fa = io(0x3b8e, raw(16, [[0, 16, "u32"]]));
    out.push(`K51 fault_queue_alloc ${rcOf(fa)}`);
    const fault = u32At(e, S_ + 8);
    out.push(`INFO fault=${fault} fault_fd=${u32At(e, S_ + 12)}`);
    out.push(`K52 paging hwpt_alloc flags=ALLOC_PASID ${rcOf(hwptAlloc(1 << 3, idev, ioas, 0, 0, 0, 0))}`);
    out.push(`K53 paging hwpt_alloc flags=FAULT_ID_VALID ${rcOf(hwptAlloc(1 << 2, idev, ioas, 0, 0, 0, fault))}`);
  }
  return out;
}

const noInfo = (lines: string[]) => lines.filter((l) => l && !l.startsWith("INFO"));

test("oracle probe-profiles, 6.12: the model prints exactly the real 6.12.117 kernel's transcript", () => {
  const want = noInfo(readFileSync(PROBE, "utf8").split("\n"));
  assert.deepEqual(noInfo(replayProbe("6.12")), want);
});

/**
 * The same probe under "newest": the lines that differ from the 6.12 transcript, each with the
 * rule behind it (newest kernel source); every other line must be identical.
 */
const NEWEST_DIFFERS: Record<string, string[]> = {
  // INPUT_TYPE with DEFAULT / the device's own type: the device's data (device.c, mock_domain_hw_info)
  K02: ["K02 hw_info flags=INPUT_TYPE type=DEFAULT rc=0 errno=0 data_len=8 type=0xfeedbeef max_pasid_log2=0 caps=0x1 byte0=0x00 byte8=0x00"],
  K03: ["K03 hw_info flags=INPUT_TYPE type=SELFTEST rc=0 errno=0 data_len=8 type=0xfeedbeef max_pasid_log2=0 caps=0x1 byte0=0x00 byte8=0x00"],
  // the flag is known now, so the device lookup answers
  K07: ["K07 hw_info flags=INPUT_TYPE dev_id=999 rc=-1 errno=2 data_len=16 type=0x0 max_pasid_log2=0 caps=0x0 byte0=0xaa byte8=0xaa"],
  K09: ["K09 hw_info flags=INPUT_TYPE type=SELFTEST dev_id=ioas rc=-1 errno=2 data_len=16 type=0xfeedbeef max_pasid_log2=0 caps=0x0 byte0=0xaa byte8=0xaa"],
  // PASID-capable mock devices (mock_dev_create: max_pasids = 1 << MOCK_PASID_WIDTH)
  K11: [
    "K11 mock_domain_flags dev_flags=0x4 rc=0 errno=0",
    "K11 hw_info of that device rc=0 errno=0 data_len=8 type=0xfeedbeef max_pasid_log2=20 caps=0x1 byte0=0x00 byte8=0x00",
  ],
  K12: [
    "K12 mock_domain_flags dev_flags=0x5 rc=0 errno=0",
    "K12 hw_info of that device rc=0 errno=0 data_len=8 type=0xfeedbeef max_pasid_log2=20 caps=0x0 byte0=0x00 byte8=0x00",
  ],
  K13: [
    "K13 mock_domain_flags dev_flags=0x6 rc=0 errno=0",
    "K13 hw_info of that device rc=0 errno=0 data_len=8 type=0xfeedbeef max_pasid_log2=20 caps=0x1 byte0=0x00 byte8=0x00",
  ],
  // struct iommu_hwpt_selftest is 8 bytes (iotlb, pagetable_type)
  K23: ["K23 nested data_len=5 (zeros after iotlb) rc=0 errno=0"],
  K24: ["K24 nested data_len=8 (zeros after iotlb) rc=0 errno=0"],
  K27: ["K27 nested data_len=8 (u32 7 after iotlb) rc=0 errno=0"],
  // IOMMU_TEST_OP_DEV_CHECK_CACHE
  K31: ["K31 test op 16 (DEV_CHECK_CACHE idev slot 0 = 0xbaddad) rc=0 errno=0"],
  // test ops 17..21 exist (selftest.c): TRIGGER_VEVENT looks dev_id 0 up (ENOENT); PASID 0 is
  // IOMMU_NO_PASID, the RID: PASID_ATTACH / _REPLACE look pt_id 0 up (ENOENT), PASID_DETACH detaches
  // the RID, after which PASID_CHECK_HWPT(0, hwpt 0) finds nothing attached; 22.. (DMABUF) are not modelled
  K32: [
    "K32 test op 17 rc=-1 errno=2",
    "K32 test op 18 rc=-1 errno=2",
    "K32 test op 19 rc=-1 errno=2",
    "K32 test op 20 rc=0 errno=0",
    "K32 test op 21 rc=0 errno=0",
    "K32 test op 22 rc=-1 errno=95",
    "K32 test op 23 rc=-1 errno=95",
    "K32 test op 24 rc=-1 errno=95",
    "K32 test op 0 rc=-1 errno=95",
    "K32 test op 100 rc=-1 errno=95",
    "K32 test op 4294967295 rc=-1 errno=95",
  ],
  // the newer IOAS ioctls exist
  K41: ["K41 IOAS_MAP_FILE rc=0 errno=0"],
  K42: ["K42 IOAS_CHANGE_PROCESS rc=0 errno=0"],
  // paging HWPTs take IOMMU_HWPT_ALLOC_PASID and a fault id (hw_pagetable.c iommufd_hwpt_paging_alloc)
  K52: ["K52 paging hwpt_alloc flags=ALLOC_PASID rc=0 errno=0"],
  K53: ["K53 paging hwpt_alloc flags=FAULT_ID_VALID rc=0 errno=0"],
};

test("oracle probe-profiles, newest: the transcript differs from 6.12 exactly in the newer rules", () => {
  const want: string[] = [];
  for (const l of noInfo(readFileSync(PROBE, "utf8").split("\n"))) {
    const k = l.slice(0, 3);
    const repl = NEWEST_DIFFERS[k];
    if (!repl) want.push(l);
    else if (!want.includes(repl[0])) want.push(...repl);
  }
  assert.deepEqual(noInfo(replayProbe("newest")), want);
});

test("newest: paging HWPT_ALLOC takes IOMMU_HWPT_ALLOC_PASID and a fault id; test ops 17..21 (vEVENT, PASID attach) exist", () => {
  const lines = replayProbe("newest");
  assert.ok(lines.includes("K52 paging hwpt_alloc flags=ALLOC_PASID rc=0 errno=0"));
  assert.ok(lines.includes("K53 paging hwpt_alloc flags=FAULT_ID_VALID rc=0 errno=0"));
  assert.ok(!lines.includes("K32 test op 17 rc=-1 errno=95"), "TRIGGER_VEVENT is a known op");
});
