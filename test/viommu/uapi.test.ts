/**
 * The vIOMMU, vDEVICE and vEVENTQ ioctls and the PASID test ops through the ioctl dispatcher
 * (main.c iommufd_fops_ioctl): the 6.12 table has holes there (ENOTTY); the newest one runs them,
 * copies the result back (min(size, sizeof) bytes) and takes a created object down again when that
 * copy faults; PASID_ATTACH / _REPLACE write pt_id back.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { bytesOf, call, env, ioasAlloc, mockDomain, put, roPage, run, u32At, PAGE, type Env } from "../uapi/helpers.js";
import { S } from "./helpers.js";
import { Viommu } from "../../src/iommufd/viommu.js";

const VIOMMU_ALLOC = 0x3b90;
const VDEVICE_ALLOC = 0x3b91;
const VEVENTQ_ALLOC = 0x3b93;
const HW_QUEUE_ALLOC = 0x3b94;
const HWPT_ALLOC = 0x3b89;
const TEST_CMD = 0x3ba0;

function parentOf(e: Env, idev: number, ioas: number): number {
  const a = e.mem + 2 * PAGE;
  assert.equal(run(e, HWPT_ALLOC, "iommu_hwpt_alloc", { flags: S.IOMMU_HWPT_ALLOC_NEST_PARENT, dev_id: idev, pt_id: ioas }, a), "OK");
  return u32At(e, a + 16);
}

test("profile 6.12: VIOMMU_ALLOC, VDEVICE_ALLOC, VEVENTQ_ALLOC and HW_QUEUE_ALLOC are table holes (ENOTTY), whatever the struct", () => {
  const e = env("6.12");
  for (const [req, name] of [
    [VIOMMU_ALLOC, "iommu_viommu_alloc"],
    [VDEVICE_ALLOC, "iommu_vdevice_alloc"],
    [VEVENTQ_ALLOC, "iommu_veventq_alloc"],
    [HW_QUEUE_ALLOC, "iommu_hw_queue_alloc"],
  ] as const) {
    assert.equal(run(e, req, name, {}), "ENOTTY", name);
    assert.equal(run(e, req, name, { size: 4 }), "ENOTTY", `${name}, even below the minimum size`);
  }
});

test("profile newest: VIOMMU_ALLOC writes out_viommu_id back and the selftest data through data_uptr; below offsetofend(out_viommu_id) is EINVAL", () => {
  const e = env("newest");
  const ioas = ioasAlloc(e);
  const { idev } = mockDomain(e, ioas);
  const parent = parentOf(e, idev, ioas);
  assert.equal(run(e, VIOMMU_ALLOC, "iommu_viommu_alloc", { size: 23, type: S.IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: idev, hwpt_id: parent }), "EINVAL");
  const data = e.mem + PAGE;
  put(e, data, new Uint8Array(24));
  put(e, data, new Uint8Array([0xef, 0xbe, 0, 0]));
  assert.equal(run(e, VIOMMU_ALLOC, "iommu_viommu_alloc", { type: S.IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: idev, hwpt_id: parent, data_len: 24, data_uptr: BigInt(data) }), "OK");
  const id = u32At(e, e.mem + 20);
  assert.ok(e.ctx.objects.get(id) instanceof Viommu);
  assert.equal(u32At(e, data + 4), 0xbeef, "out_data");
  // the 24-byte minimum struct (without data) works too
  assert.equal(run(e, VIOMMU_ALLOC, "iommu_viommu_alloc", { size: 24, type: S.IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: idev, hwpt_id: parent }), "OK");
  assert.equal(u32At(e, e.mem + 20), id + 1);
});

test("profile newest: VIOMMU_ALLOC, VDEVICE_ALLOC and VEVENTQ_ALLOC on a read-only struct fail with EFAULT and leave no object (nor fd) behind", () => {
  const e = env("newest");
  const ioas = ioasAlloc(e);
  const { idev } = mockDomain(e, ioas);
  const parent = parentOf(e, idev, ioas);
  const { ro, fill } = roPage(e);
  const objs = () => [...e.ctx.objects.keys()].sort((a, b) => a - b);
  let before = objs();
  fill(0, bytesOf("iommu_viommu_alloc", { type: S.IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: idev, hwpt_id: parent }));
  assert.equal(call(e, VIOMMU_ALLOC, ro).res, "EFAULT");
  assert.deepEqual(objs(), before);
  assert.equal(e.ctx.objects.get(parent)?.users, 1, "the parent reference went with it");
  assert.equal(run(e, VIOMMU_ALLOC, "iommu_viommu_alloc", { type: S.IOMMU_VIOMMU_TYPE_SELFTEST, dev_id: idev, hwpt_id: parent }), "OK");
  const v = u32At(e, e.mem + 20);
  before = objs();
  fill(0, bytesOf("iommu_vdevice_alloc", { viommu_id: v, dev_id: idev, virt_id: 0x99n }));
  assert.equal(call(e, VDEVICE_ALLOC, ro).res, "EFAULT");
  assert.deepEqual(objs(), before);
  const fds = S.fdTableOf(e.p).size;
  fill(0, bytesOf("iommu_veventq_alloc", { viommu_id: v, type: S.IOMMU_VEVENTQ_TYPE_SELFTEST, veventq_depth: 2 }));
  assert.equal(call(e, VEVENTQ_ALLOC, ro).res, "EFAULT");
  assert.deepEqual(objs(), before);
  assert.equal(S.fdTableOf(e.p).size, fds, "the fd was closed again");
  assert.equal(e.ctx.objects.get(v)?.users, 1);
  // and the same calls on a writable struct succeed
  assert.equal(run(e, VDEVICE_ALLOC, "iommu_vdevice_alloc", { viommu_id: v, dev_id: idev, virt_id: 0x99n }), "OK");
  assert.equal(run(e, VEVENTQ_ALLOC, "iommu_veventq_alloc", { viommu_id: v, type: S.IOMMU_VEVENTQ_TYPE_SELFTEST, veventq_depth: 2 }), "OK");
  assert.ok(S.fdTableOf(e.p).get(u32At(e, e.mem + 24)));
});

test("PASID_ATTACH and PASID_REPLACE write pt_id back; a PASID_ATTACH whose result cannot be copied back is detached again", () => {
  const e = env("newest");
  const ioas = ioasAlloc(e);
  const a = e.mem + 3 * PAGE;
  assert.equal(run(e, TEST_CMD, "iommu_test_cmd", { op: 12, id: ioas, dev_flags: S.MOCK_FLAGS_DEVICE_PASID }, a), "OK");
  const stdev = u32At(e, a + 16);
  const idev = u32At(e, a + 24);
  const hw = e.mem + 2 * PAGE;
  assert.equal(run(e, HWPT_ALLOC, "iommu_hwpt_alloc", { flags: S.IOMMU_HWPT_ALLOC_PASID, dev_id: idev, pt_id: ioas }, hw), "OK");
  const s2 = u32At(e, hw + 16);
  assert.equal(run(e, TEST_CMD, "iommu_test_cmd", { op: 10, id: stdev, pt_id: s2 }), "OK");
  assert.equal(run(e, TEST_CMD, "iommu_test_cmd", { op: S.IOMMU_TEST_OP_PASID_ATTACH, id: stdev, pasid: 5, pt_id: s2 }), "OK");
  assert.equal(u32At(e, e.mem + 20), s2, "pt_id written back");
  assert.equal(run(e, TEST_CMD, "iommu_test_cmd", { op: S.IOMMU_TEST_OP_PASID_CHECK_HWPT, id: stdev, pasid: 5, hwpt_id: s2 }), "OK");
  const { ro, fill } = roPage(e);
  fill(0, bytesOf("iommu_test_cmd", { op: S.IOMMU_TEST_OP_PASID_ATTACH, id: stdev, pasid: 6, pt_id: s2 }));
  assert.equal(call(e, TEST_CMD, ro).res, "EFAULT");
  assert.equal(run(e, TEST_CMD, "iommu_test_cmd", { op: S.IOMMU_TEST_OP_PASID_CHECK_HWPT, id: stdev, pasid: 6, hwpt_id: 0 }), "OK", "PASID 6 is not attached");
  assert.equal(e.ctx.objects.get(s2)?.users, 3, "table + RID + PASID 5");
});
