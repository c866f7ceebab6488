/**
 * IOMMU_VIOMMU_ALLOC (viommu.c) and what hangs off a vIOMMU: nested HWPTs allocated on it,
 * HWPT_INVALIDATE on it (the mock's device-cache invalidation), its references, and the selftest
 * mock's vIOMMU data (in_data loopback, mmap region). Behaviour of the newest kernel: viommu.c
 * iommufd_viommu_alloc_ioctl, hw_pagetable.c iommufd_viommu_alloc_hwpt_nested / _invalidate,
 * selftest.c mock_viommu_*, and the newest selftest's iommufd_viommu fixture.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { env, expectErr, hwptAlloc, mockDomain, replace, scratch, selftestData, u32s, SELFTEST_DATA, IOTLB_DEFAULT } from "../hwpt/helpers.js";
import {
  S,
  FAULT_VALID,
  NEST,
  PASID_FLAG,
  VIOMMU_SELFTEST,
  devCache,
  failsCleanlyFull,
  fullSnapshot,
  invEntries,
  nested,
  vdeviceAlloc,
  veventqAlloc,
  viommuAlloc,
  viommuEnv,
} from "./helpers.js";
import { HwptNested } from "../../src/iommufd/hwpt.js";
import { Viommu } from "../../src/iommufd/viommu.js";
import { MockViommu, MOCK_VIOMMU_MMAP_LENGTH } from "../../src/iommu/drivers/mock.js";
import type { IommuDriver } from "../../src/iommu/driver.js";

const CACHE_DEFAULT = S.IOMMU_TEST_DEV_CACHE_DEFAULT;
const INV = S.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST;

// ------------------------------------------------------------------------------ VIOMMU_ALLOC

test("VIOMMU_ALLOC: non-zero flags or type DEFAULT is EOPNOTSUPP, checked before the device lookup", () => {
  const e = viommuEnv();
  failsCleanlyFull(e, "EOPNOTSUPP", () => viommuAlloc(e.ctx, 999, 999, { flags: 1 }), "flags");
  failsCleanlyFull(e, "EOPNOTSUPP", () => viommuAlloc(e.ctx, 999, 999, { type: S.IOMMU_VIOMMU_TYPE_DEFAULT }), "type DEFAULT");
});

test("VIOMMU_ALLOC errnos in the kernel's order: no device ENOENT, a type the driver does not know EOPNOTSUPP (before the HWPT), no paging HWPT ENOENT, not a nesting parent EINVAL", () => {
  const e = viommuEnv();
  const { idev, stdev } = e.md;
  failsCleanlyFull(e, "ENOENT", () => viommuAlloc(e.ctx, 999, e.parent), "no device");
  failsCleanlyFull(e, "ENOENT", () => viommuAlloc(e.ctx, stdev, e.parent), "the selftest object is not a device");
  failsCleanlyFull(e, "EOPNOTSUPP", () => viommuAlloc(e.ctx, idev, 0, { type: 0xdead }), "unknown type, even with hwpt_id 0");
  failsCleanlyFull(e, "EOPNOTSUPP", () => viommuAlloc(e.ctx, idev, e.parent, { type: S.IOMMU_VIOMMU_TYPE_ARM_SMMUV3 }), "a type of another driver");
  failsCleanlyFull(e, "ENOENT", () => viommuAlloc(e.ctx, idev, 0), "hwpt_id 0");
  failsCleanlyFull(e, "ENOENT", () => viommuAlloc(e.ctx, idev, e.nested), "a nested HWPT is not a paging HWPT");
  failsCleanlyFull(e, "ENOENT", () => viommuAlloc(e.ctx, idev, e.viommu), "a vIOMMU is not a paging HWPT");
  const plain = hwptAlloc(e.ctx, idev, e.ioas, 0);
  failsCleanlyFull(e, "EINVAL", () => viommuAlloc(e.ctx, idev, plain), "not a nesting parent");
  failsCleanlyFull(e, "EINVAL", () => viommuAlloc(e.ctx, idev, e.md.hwpt), "the automatic HWPT is not a nesting parent");
});

test("VIOMMU_ALLOC: a driver without vIOMMU support answers EOPNOTSUPP", () => {
  const e = env();
  const noViommu: IommuDriver = Object.assign(Object.create(S.mockIommu) as IommuDriver, { viommuAlloc: undefined, viommuTypeSupported: undefined });
  const idev = e.ctx.bindDevice(new S.Device({ name: "no-viommu", driver: noViommu }));
  const parent = hwptAlloc(e.ctx, idev.id, e.ioas, NEST);
  failsCleanlyFull(e, "EOPNOTSUPP", () => viommuAlloc(e.ctx, idev.id, parent));
});

test("VIOMMU_ALLOC: the vIOMMU holds its parent HWPT (destroy EBUSY) and IOMMU_DESTROY takes it down once nothing depends on it", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, NEST);
  const v = viommuAlloc(e.ctx, md.idev, parent);
  const obj = e.ctx.objects.get(v) as Viommu;
  assert.equal(obj.type, "viommu");
  assert.equal(obj.viommuType, VIOMMU_SELFTEST);
  assert.ok(obj.ops instanceof MockViommu);
  assert.equal(e.ctx.objects.get(parent)?.users, 2);
  failsCleanlyFull(e, "EBUSY", () => e.ctx.destroy({ id: parent }), "the parent");
  const mock = obj.ops as MockViommu;
  e.ctx.destroy({ id: v });
  assert.equal(mock.destroyed, true, "the driver's destroy ran");
  assert.equal(e.ctx.objects.has(v), false);
  assert.equal(e.ctx.objects.get(parent)?.users, 1);
  e.ctx.destroy({ id: parent });
  expectErr("ENOENT", () => e.ctx.destroy({ id: v }));
});

test("a vIOMMU is EBUSY while a nested HWPT, a vDEVICE or a vEVENTQ holds it; each released, it goes", () => {
  const e = viommuEnv();
  failsCleanlyFull(e, "EBUSY", () => e.ctx.destroy({ id: e.viommu }), "nested HWPT");
  e.ctx.destroy({ id: e.nested });
  const vd = vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  failsCleanlyFull(e, "EBUSY", () => e.ctx.destroy({ id: e.viommu }), "vDEVICE");
  e.ctx.destroy({ id: vd });
  const q = veventqAlloc(e.ctx, e.viommu, 4);
  failsCleanlyFull(e, "EBUSY", () => e.ctx.destroy({ id: e.viommu }), "vEVENTQ");
  failsCleanlyFull(e, "EBUSY", () => e.ctx.destroy({ id: q.id }), "the vEVENTQ's fd holds it");
  S.fdTableOf(e.p).close(q.fd);
  e.ctx.destroy({ id: q.id });
  e.ctx.destroy({ id: e.viommu });
  e.ctx.destroy({ id: e.parent });
});

test("VIOMMU_ALLOC with iommu_viommu_selftest data: out_data loops in_data back, an mmap region of two pages from offset PAGE_SIZE; the region is freed with the vIOMMU", () => {
  const e = viommuEnv();
  const data = scratch(e.p, new Uint8Array(24).fill(0x77));
  e.p.write(Number(data), u32s(0xbeef));
  const v = viommuAlloc(e.ctx, e.md.idev, e.parent, { data_len: 24, data_uptr: data });
  const out = new DataView(e.p.read(Number(data), 24).buffer);
  assert.equal(out.getUint32(0, true), 0xbeef, "in_data unchanged");
  assert.equal(out.getUint32(4, true), 0xbeef, "out_data = in_data");
  assert.equal(out.getBigUint64(8, true), 4096n, "the first mmap offset skips page 0");
  assert.equal(out.getBigUint64(16, true), BigInt(MOCK_VIOMMU_MMAP_LENGTH));
  assert.equal(((e.ctx.objects.get(v) as Viommu).ops as MockViommu).page, 0xbeef, "the page's first u32 reads back in_data");
  // a second vIOMMU takes the next free region
  const data2 = scratch(e.p, u32s(1, 0, 0, 0, 0, 0));
  const v2 = viommuAlloc(e.ctx, e.md.idev, e.parent, { data_len: 24, data_uptr: data2 });
  assert.equal(new DataView(e.p.read(Number(data2), 24).buffer).getBigUint64(8, true), 4096n + BigInt(MOCK_VIOMMU_MMAP_LENGTH));
  assert.deepEqual(e.ctx.mmapRegions, [[4096n, 8192n], [12288n, 8192n]]);
  e.ctx.destroy({ id: v });
  assert.deepEqual(e.ctx.mmapRegions, [[12288n, 8192n]]);
  const data3 = scratch(e.p, u32s(3, 0, 0, 0, 0, 0));
  viommuAlloc(e.ctx, e.md.idev, e.parent, { data_len: 24, data_uptr: data3 });
  assert.equal(new DataView(e.p.read(Number(data3), 24).buffer).getBigUint64(8, true), 4096n, "the freed region is reused");
  e.ctx.destroy({ id: v2 });
});

test("VIOMMU_ALLOC data rules: shorter than in_data+out_data EINVAL, non-zero bytes past the 24-byte struct E2BIG (zeros fine), unreadable EFAULT; only data_len bytes are written back", () => {
  const e = viommuEnv();
  const data = scratch(e.p, new Uint8Array(40));
  e.p.write(Number(data), u32s(0x1234));
  const call = (len: number, ptr = data) => () => viommuAlloc(e.ctx, e.md.idev, e.parent, { data_len: len, data_uptr: ptr });
  failsCleanlyFull(e, "EINVAL", call(7), "7 bytes");
  failsCleanlyFull(e, "EINVAL", call(4), "4 bytes");
  e.p.write(Number(data) + 30, new Uint8Array([1]));
  failsCleanlyFull(e, "E2BIG", call(32), "a non-zero byte at offset 30");
  e.p.write(Number(data) + 30, new Uint8Array([0]));
  failsCleanlyFull(e, "EFAULT", call(24, 0x10n), "unreadable");
  // 8 bytes: in/out data only, nothing past them is written
  e.p.write(Number(data) + 8, new Uint8Array(16).fill(0x55));
  viommuAlloc(e.ctx, e.md.idev, e.parent, { data_len: 8, data_uptr: data });
  const b = e.p.read(Number(data), 24);
  assert.deepEqual([...b.subarray(0, 8)], [...u32s(0x1234, 0x1234)]);
  assert.ok(b.subarray(8).every((x) => x === 0x55), "bytes past data_len untouched");
  // longer than the struct with zeros: accepted, 24 bytes written
  const z = scratch(e.p, new Uint8Array(32));
  viommuAlloc(e.ctx, e.md.idev, e.parent, { data_len: 32, data_uptr: z });
  assert.equal(new DataView(e.p.read(Number(z), 32).buffer).getBigUint64(16, true), 8192n);
});

// ------------------------------------------------------------------------------ nested HWPTs on a vIOMMU

test("HWPT_ALLOC on a vIOMMU: a nested HWPT with selftest data that holds the vIOMMU (not the parent) and whose parent is the vIOMMU's", () => {
  const e = viommuEnv();
  const h = e.ctx.objects.get(e.nested) as HwptNested;
  assert.ok(h instanceof HwptNested);
  assert.equal(h.viommu?.id, e.viommu);
  assert.equal(h.parent.id, e.parent);
  assert.equal(e.ctx.objects.get(e.viommu)?.users, 2);
  assert.equal(e.ctx.objects.get(e.parent)?.users, 2, "the parent is held by the vIOMMU only");
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_IOTLB, id: e.nested, iotlb_id: 3, iotlb: IOTLB_DEFAULT });
  e.ctx.destroy({ id: e.nested });
  assert.equal(e.ctx.objects.get(e.viommu)?.users, 1);
});

test("HWPT_ALLOC on a vIOMMU: flags beyond FAULT_ID_VALID | ALLOC_PASID EOPNOTSUPP, no data EOPNOTSUPP or EINVAL, wrong data type EOPNOTSUPP, bad data_len EINVAL, NULL data EFAULT", () => {
  const e = viommuEnv();
  const dev = e.md.idev;
  const data = selftestData(e.p);
  const call = (o: Partial<S.IommuHwptAlloc>) => () =>
    e.ctx.hwptAlloc({ flags: 0, dev_id: dev, pt_id: e.viommu, data_type: SELFTEST_DATA, data_len: 4, data_uptr: data, ...o });
  failsCleanlyFull(e, "EOPNOTSUPP", call({ flags: NEST }), "NEST_PARENT");
  failsCleanlyFull(e, "EOPNOTSUPP", call({ flags: S.IOMMU_HWPT_ALLOC_DIRTY_TRACKING }), "DIRTY_TRACKING");
  failsCleanlyFull(e, "EOPNOTSUPP", call({ flags: FAULT_VALID | (1 << 31) }), "an unknown high bit with FAULT_ID_VALID");
  failsCleanlyFull(e, "EINVAL", call({ data_type: 0 }), "DATA_NONE with a data_len");
  failsCleanlyFull(e, "EINVAL", call({ data_len: 0 }), "a data type without data_len");
  failsCleanlyFull(e, "EOPNOTSUPP", call({ data_type: SELFTEST_DATA + 1 }), "another data type");
  failsCleanlyFull(e, "EINVAL", call({ data_len: 3 }), "below iotlb");
  failsCleanlyFull(e, "EINVAL", call({ data_len: 9 }), "above sizeof(iommu_hwpt_selftest)");
  failsCleanlyFull(e, "EFAULT", call({ data_uptr: 0n }), "NULL data");
  const ok = call({ flags: PASID_FLAG })().out_hwpt_id as number;
  assert.equal((e.ctx.objects.get(ok) as HwptNested).pasidCompat, true);
});

test("HWPT_ALLOC on a vIOMMU for a device behind another IOMMU is EINVAL, as is VDEVICE_ALLOC", () => {
  const e = viommuEnv();
  const other: IommuDriver = Object.create(S.mockIommu) as IommuDriver;
  const idev = e.ctx.bindDevice(new S.Device({ name: "other-iommu", driver: other }));
  failsCleanlyFull(e, "EINVAL", () => nested(e, idev.id, e.viommu), "HWPT_ALLOC");
  failsCleanlyFull(e, "EINVAL", () => vdeviceAlloc(e.ctx, e.viommu, idev.id, 0x55n), "VDEVICE_ALLOC");
  // another mock device of the same IOMMU is fine
  const md2 = mockDomain(e.ctx, e.ioas);
  nested(e, md2.idev, e.viommu);
  vdeviceAlloc(e.ctx, e.viommu, md2.idev, 0x55n);
});

test("attaching a nested HWPT of a vIOMMU needs the device's vDEVICE on that vIOMMU: ENOENT and nothing changes; with it, attach and replace work", () => {
  const e = viommuEnv();
  failsCleanlyFull(e, "ENOENT", () => replace(e.ctx, e.md.stdev, e.nested), "replace without a vDEVICE");
  failsCleanlyFull(e, "ENOENT", () => mockDomain(e.ctx, e.nested), "a new device attaching without a vDEVICE");
  // a vDEVICE on another vIOMMU does not count
  const v2 = viommuAlloc(e.ctx, e.md.idev, e.parent);
  vdeviceAlloc(e.ctx, v2, e.md.idev, 0x99n);
  failsCleanlyFull(e, "ENOENT", () => replace(e.ctx, e.md.stdev, e.nested), "vDEVICE on another vIOMMU");
  const vd = e.ctx.objects.get(e.md.idev) as S.IommufdDevice;
  e.ctx.destroy({ id: vd.vdev?.id as number });
  vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  assert.equal(replace(e.ctx, e.md.stdev, e.nested), e.nested);
  expectErr("EBUSY", () => e.ctx.destroy({ id: e.nested }));
  replace(e.ctx, e.md.stdev, e.ioas);
  e.ctx.destroy({ id: e.nested });
});

test("viommu_alloc_nested_iopf: an IOPF HWPT on a vIOMMU (unknown fault id ENOENT, unknown high flag EOPNOTSUPP) attaches once the vDEVICE exists and queues the device's page requests", () => {
  const e = viommuEnv();
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  const fid = f.out_fault_id as number;
  failsCleanlyFull(e, "ENOENT", () => nested(e, e.md.idev, e.viommu, FAULT_VALID, 0xffffffff), "unknown fault id");
  failsCleanlyFull(e, "EOPNOTSUPP", () => nested(e, e.md.idev, e.viommu, FAULT_VALID | (1 << 31), fid), "unknown high flag");
  const iopf = nested(e, e.md.idev, e.viommu, FAULT_VALID, fid);
  failsCleanlyFull(e, "ENOENT", () => replace(e.ctx, e.md.stdev, iopf), "before the vDEVICE");
  vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  replace(e.ctx, e.md.stdev, iopf);
  expectErr("EBUSY", () => e.ctx.destroy({ id: iopf }));
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_IOPF, id: 0, dev_id: e.md.idev, pasid: 0x1, grpid: 0x2, perm: 3, addr: 0xdeadbeefn });
  const rec = S.fdTableOf(e.p).get(f.out_fault_fd as number)?.read?.(40, 0) as Uint8Array;
  const dv = new DataView(rec.buffer);
  assert.equal(dv.getUint32(4, true), e.md.idev);
  assert.equal(dv.getUint32(8, true), 1, "PASID 1 falls back to the nested RID domain");
  replace(e.ctx, e.md.stdev, e.ioas);
  e.ctx.destroy({ id: iopf });
  S.fdTableOf(e.p).close(f.out_fault_fd as number);
  e.ctx.destroy({ id: fid });
});

// ------------------------------------------------------------------------------ HWPT_INVALIDATE on a vIOMMU

function invalidate(e: ReturnType<typeof viommuEnv>, o: Partial<S.IommuHwptInvalidate>): S.IommuHwptInvalidate {
  return e.ctx.hwptInvalidate({ hwpt_id: e.viommu, data_uptr: 0n, data_type: INV, entry_len: 12, entry_num: 0, ...o });
}

function invalidateErr(e: ReturnType<typeof viommuEnv>, code: Parameters<typeof expectErr>[0], o: Partial<S.IommuHwptInvalidate>, msg: string): number {
  const before = fullSnapshot(e);
  const err = expectErr(code, () => invalidate(e, o), msg);
  assert.deepEqual(fullSnapshot(e), before, `${msg}: nothing changed`);
  return (err.out as S.IommuHwptInvalidate).entry_num;
}

test("vdevice_cache: HWPT_INVALIDATE on a vIOMMU zeroes the device-cache slots of the vDEVICE's device, stops at the first bad entry and reports how many were handled", () => {
  const e = viommuEnv();
  const dev = e.md.idev;
  vdeviceAlloc(e.ctx, e.viommu, dev, 0x99n);
  assert.deepEqual(devCache(e, dev), [CACHE_DEFAULT, CACHE_DEFAULT, CACHE_DEFAULT, CACHE_DEFAULT]);
  assert.equal(invalidate(e, { entry_num: 0 }).entry_num, 0, "a zero-length array checks the data type");
  const one = invEntries(e, { vdev: 0x99 });
  assert.equal(invalidateErr(e, "EINVAL", { entry_num: 1, data_uptr: one, data_type: S.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID }, "wrong type"), 0);
  assert.equal(invalidateErr(e, "EINVAL", { entry_num: 0, data_type: S.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID }, "wrong type, empty array"), 0);
  assert.equal(invalidateErr(e, "EINVAL", { entry_num: 1, data_uptr: invEntries(e, {}), entry_len: 13 }, "entry_len + 1 (zeros: vdev_id 0 is no vDEVICE)"), 0);
  assert.equal(invalidateErr(e, "EINVAL", { entry_num: 1, data_uptr: invEntries(e, {}), entry_len: 1 }, "entry_len 1"), 0);
  assert.equal(invalidateErr(e, "EOPNOTSUPP", { entry_num: 1, data_uptr: invEntries(e, { flags: 0xffffffff, vdev: 0x99 }) }, "unknown flags"), 0);
  assert.equal(invalidateErr(e, "EINVAL", { entry_num: 1, data_uptr: 0n }, "NULL array"), 0);
  assert.equal(invalidateErr(e, "EINVAL", { entry_num: 1, data_uptr: one, entry_len: 0 }, "entry_len 0"), 0);
  assert.equal(invalidateErr(e, "EINVAL", { entry_num: 1, data_uptr: invEntries(e, { vdev: 0x99, cache: 4 }) }, "cache_id above 3"), 0);
  assert.equal(invalidateErr(e, "EINVAL", { entry_num: 1, data_uptr: invEntries(e, { vdev: 0x9 }) }, "unknown vdev_id"), 0);
  expectErr("EOPNOTSUPP", () => invalidate(e, { entry_num: 2, data_uptr: invEntries(e, { vdev: 0x99, cache: 0 }, { flags: 0xffffffff, vdev: 0x99, cache: 1 }) }));
  assert.deepEqual(devCache(e, dev), [0, CACHE_DEFAULT, CACHE_DEFAULT, CACHE_DEFAULT]);
  const err = expectErr("EINVAL", () => invalidate(e, { entry_num: 2, data_uptr: invEntries(e, { vdev: 0x99, cache: 0 }, { vdev: 0x99, cache: 4 }) }));
  assert.equal((err.out as S.IommuHwptInvalidate).entry_num, 1, "the first entry was handled");
  assert.equal(invalidate(e, { entry_num: 1, data_uptr: invEntries(e, { vdev: 0x99, cache: 1 }) }).entry_num, 1);
  assert.deepEqual(devCache(e, dev), [0, 0, CACHE_DEFAULT, CACHE_DEFAULT]);
  assert.equal(invalidate(e, { entry_num: 2, data_uptr: invEntries(e, { vdev: 0x99, cache: 2 }, { vdev: 0x99, cache: 3 }) }).entry_num, 2);
  assert.deepEqual(devCache(e, dev), [0, 0, 0, 0]);
  for (let i = 0; i < 4; i++) e.ctx.testCmd({ op: S.IOMMU_TEST_OP_DEV_CHECK_CACHE, id: dev, cache_id: i, cache: 0 });
});

test("HWPT_INVALIDATE on a vIOMMU: FLAG_ALL zeroes every slot (cache_id is still range-checked first); only the vDEVICE's device is touched", () => {
  const e = viommuEnv();
  const md2 = mockDomain(e.ctx, e.ioas);
  vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  vdeviceAlloc(e.ctx, e.viommu, md2.idev, 0x42n);
  const all = S.IOMMU_TEST_INVALIDATE_FLAG_ALL;
  assert.equal(invalidateErr(e, "EINVAL", { entry_num: 1, data_uptr: invEntries(e, { flags: all, vdev: 0x42, cache: 4 }) }, "FLAG_ALL with cache_id 4"), 0);
  invalidate(e, { entry_num: 1, data_uptr: invEntries(e, { flags: all, vdev: 0x42, cache: 2 }) });
  assert.deepEqual(devCache(e, md2.idev), [0, 0, 0, 0]);
  assert.deepEqual(devCache(e, e.md.idev), [CACHE_DEFAULT, CACHE_DEFAULT, CACHE_DEFAULT, CACHE_DEFAULT]);
});

test("HWPT_INVALIDATE on a vIOMMU copies the whole array first: a longer entry_len reads zero-filled structs (non-zero tail E2BIG), an unreadable entry is EFAULT with nothing handled", () => {
  const e = viommuEnv();
  vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  // entry_len 16 with zero tails
  const b = new Uint8Array(32);
  b.set(u32s(0, 0x99, 1), 0);
  b.set(u32s(0, 0x99, 2), 16);
  assert.equal(invalidate(e, { entry_num: 2, entry_len: 16, data_uptr: scratch(e.p, b) }).entry_num, 2);
  assert.deepEqual(devCache(e, e.md.idev), [CACHE_DEFAULT, 0, 0, CACHE_DEFAULT]);
  b[12 + 16] = 1;
  b.set(u32s(0, 0x99, 0), 0);
  assert.equal(invalidateErr(e, "E2BIG", { entry_num: 2, entry_len: 16, data_uptr: scratch(e.p, b) }, "a non-zero tail in the second entry"), 0);
  // the second entry unreadable: nothing is handled, not even the first
  const page = e.p.mmap(4096);
  e.p.write(page + 4096 - 12, u32s(0, 0x99, 3));
  e.p.munmap(page + 4096, 4096);
  assert.equal(invalidateErr(e, "EFAULT", { entry_num: 2, data_uptr: BigInt(page + 4096 - 12) }, "unreadable second entry"), 0);
  assert.deepEqual(devCache(e, e.md.idev), [CACHE_DEFAULT, 0, 0, CACHE_DEFAULT]);
});

test("HWPT_INVALIDATE: a paging HWPT stays ENOENT (as in 6.12), an unknown id ENOENT, a vDEVICE ENOENT", () => {
  const e = viommuEnv();
  const vd = vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  for (const id of [e.parent, 999, vd]) assert.equal(invalidateErr(e, "ENOENT", { hwpt_id: id, entry_num: 0 }, `id ${id}`), 0);
});

// ------------------------------------------------------------------------------ teardown

test("closing the context with vIOMMUs, nested HWPTs, vDEVICEs and an attached device tears everything down", () => {
  const e = viommuEnv();
  const data = scratch(e.p, u32s(5, 0, 0, 0, 0, 0));
  viommuAlloc(e.ctx, e.md.idev, e.parent, { data_len: 24, data_uptr: data });
  vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  replace(e.ctx, e.md.stdev, e.nested);
  const dev = (e.ctx.objects.get(e.md.idev) as S.IommufdDevice).dev;
  const mock = (e.ctx.objects.get(e.viommu) as Viommu).ops as MockViommu;
  e.ctx.close();
  assert.equal(e.ctx.released, true);
  assert.equal(e.ctx.objects.size, 0);
  assert.deepEqual(e.ctx.tombstoned, []);
  assert.deepEqual(e.ctx.mmapRegions, []);
  assert.equal(mock.destroyed, true);
  assert.equal(mock.vdevs.size, 0, "the driver's vDEVICE records went with them");
  assert.equal(dev.group.domain, null);
  assert.equal(dev.group.ownerCnt, 0);
});
