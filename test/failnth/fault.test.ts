/**
 * fail-nth on the page-fault path (iommu_report_device_fault): the group's allocation failing
 * answers the group IOMMU_PAGE_RESP_FAILURE at once and never queues it, as the kernel's
 * abort_group does; the report call itself (TRIGGER_IOPF) still succeeds.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { IommuError } from "../../src/errno.js";
import { asTask, FailNth } from "../../src/fail-nth.js";
import { Fault, IOMMU_PAGE_RESP_FAILURE } from "../../src/iommufd/fault.js";
import { env, hwptAlloc, mockDomain, nestedAlloc, replace, S, snapshot } from "../hwpt/helpers.js";

test("fail-nth: TRIGGER_IOPF's device lookup fails cleanly, then the fault group's allocation answers FAILURE", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, S.IOMMU_HWPT_ALLOC_NEST_PARENT);
  const fq = e.ctx.faultQueueAlloc({ flags: 0 });
  const iopf = nestedAlloc(e.ctx, e.p, md.idev, parent, { flags: S.IOMMU_HWPT_FAULT_ID_VALID, faultId: fq.out_fault_id as number });
  replace(e.ctx, md.stdev, iopf);
  const fault = e.ctx.getObject(fq.out_fault_id as number) as Fault;
  const trigger = (): unknown => e.ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_IOPF, id: 0, dev_id: md.idev, pasid: 0, grpid: 7, perm: 0, addr: 0x1000n });

  const t = new FailNth();
  t.set(1);
  const before = snapshot(e);
  assert.throws(() => asTask(t, trigger), (err: unknown) => err instanceof IommuError && err.code === "ENOENT");
  assert.deepEqual(snapshot(e), before, "iommufd_get_object failing changes nothing");

  t.set(2);
  asTask(t, trigger);
  assert.equal(t.remaining, 0, "the injected failure fired");
  assert.equal(fault.deliver.length, 0, "the group is not queued");
  assert.deepEqual(fault.completed.map((g) => [g.faults[0].grpid, g.response]), [[7, IOMMU_PAGE_RESP_FAILURE]]);

  asTask(t, trigger);
  assert.equal(fault.deliver.length, 1, "disarmed: queued as usual");
  S.fdTableOf(e.p).closeAll();
  assert.ok(e.ctx.released);
  assert.equal(e.host.phys.framesPinned, 0);
});
