/**
 * Context teardown (main.c iommufd_fops_release): closing /dev/iommu destroys every object, but
 * only once the last fd that holds the context (fault queues, selftest accesses) is closed. Pins
 * and locked-memory charges drop to 0 then (the selftest's teardown_iommufd check).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { S, env, hwptAlloc, ioasMap, mockDomain, nestedAlloc, checkRefs, pins, BASE, BUFFER_SIZE, PAGE, type Env } from "./helpers.js";
import { IommufdDevice } from "../../src/iommufd/device.js";

function reopenCheckRefs(e: Env): void {
  const ctx2 = S.openIommufd(e.host, e.p);
  checkRefs(ctx2, e.buf, BUFFER_SIZE, 0);
  ctx2.close();
}

test("teardown: closing a context with devices, HWPTs and mappings destroys everything and unpins", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const dev = (e.ctx.objects.get(md.idev) as IommufdDevice).dev;
  mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, S.IOMMU_HWPT_ALLOC_NEST_PARENT | S.IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  nestedAlloc(e.ctx, e.p, md.idev, parent);
  ioasMap(e.ctx, e.ioas, e.buf, BUFFER_SIZE, BASE);
  const ioas2 = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  ioasMap(e.ctx, ioas2, e.buf, BUFFER_SIZE, BASE);
  mockDomain(e.ctx, ioas2, S.MOCK_FLAGS_DEVICE_HUGE_IOVA);
  checkRefs(e.ctx, e.buf, BUFFER_SIZE, 2);
  assert.ok(e.p.user.lockedVm > 0);
  e.ctx.close();
  assert.equal(e.ctx.released, true);
  assert.equal(e.ctx.objects.size, 0);
  assert.equal(e.ctx.groups.size, 0);
  assert.deepEqual(pins(e.host, e.p, e.buf, BUFFER_SIZE), new Array(BUFFER_SIZE / PAGE).fill(0));
  assert.equal(e.p.user.lockedVm, 0);
  assert.equal(dev.group.domain, null);
  assert.equal(dev.group.ownerCnt, 0);
  reopenCheckRefs(e);
});

test("teardown: an open access fd keeps the context (and its pins) alive until it is closed", () => {
  const e = env();
  mockDomain(e.ctx, e.ioas);
  ioasMap(e.ctx, e.ioas, e.buf, BUFFER_SIZE, BASE);
  const afd = e.ctx.testCmd({ op: S.IOMMU_TEST_OP_CREATE_ACCESS, id: e.ioas, flags: S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES }).out_access_fd as number;
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_PAGES, id: afd, flags: 0, iova: BASE, length: BigInt(2 * PAGE), uptr: BigInt(e.buf) });
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  e.ctx.close();
  assert.equal(e.ctx.released, false);
  assert.ok(e.ctx.objects.size > 0);
  assert.equal(pins(e.host, e.p, e.buf, PAGE)[0], 1, "still pinned while fds are open");
  S.fdTableOf(e.p).close(afd);
  assert.equal(e.ctx.released, false, "the fault fd still holds the context");
  assert.equal(pins(e.host, e.p, e.buf, PAGE)[0], 1, "the domain still holds the pages");
  S.fdTableOf(e.p).close(f.out_fault_fd as number);
  assert.equal(e.ctx.released, true);
  assert.equal(e.ctx.objects.size, 0);
  assert.deepEqual(pins(e.host, e.p, e.buf, BUFFER_SIZE), new Array(BUFFER_SIZE / PAGE).fill(0));
  assert.equal(e.p.user.lockedVm, 0);
  reopenCheckRefs(e);
});

test("teardown: a fault HWPT with queued and read faults is torn down cleanly", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, S.IOMMU_HWPT_ALLOC_NEST_PARENT);
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  const iopf = nestedAlloc(e.ctx, e.p, md.idev, parent, { flags: S.IOMMU_HWPT_FAULT_ID_VALID, faultId: f.out_fault_id as number });
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, id: md.stdev, pt_id: iopf });
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_IOPF, id: 0, dev_id: md.idev, pasid: 0, grpid: 1, perm: 1, addr: 0n });
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_IOPF, id: 0, dev_id: md.idev, pasid: 0, grpid: 2, perm: 1, addr: 0n });
  const file = S.fdTableOf(e.p).get(f.out_fault_fd as number);
  file?.read?.(40, 0);
  S.fdTableOf(e.p).close(f.out_fault_fd as number);
  e.ctx.close();
  assert.equal(e.ctx.released, true);
  assert.equal(e.ctx.objects.size, 0);
});

test("teardown: closing an empty context, and a context whose objects were all destroyed", () => {
  const e = env();
  e.ctx.destroy({ id: e.ioas });
  e.ctx.close();
  assert.equal(e.ctx.released, true);
  const e2 = env();
  e2.ctx.close();
  assert.equal(e2.ctx.released, true);
});

test("teardown: the mapping process exits while a forked child holds the fd: pinned frames survive until the last close", () => {
  const e = env();
  const other = e.host.spawn({ uid: 1000 });
  const ctx = S.openIommufd(e.host, other);
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  mockDomain(ctx, ioas);
  const buf = other.mmap(BUFFER_SIZE, { shared: true });
  ioasMap(ctx, ioas, buf, BUFFER_SIZE, BASE);
  const pfn = other.mm.peekPfn(buf) as number;
  assert.equal(e.host.phys.pinCount(pfn), 1);
  const holder = other.fork();
  other.exit();
  assert.equal(ctx.released, false, "the child's inherited fd keeps the context");
  assert.equal(e.host.phys.pinCount(pfn), 1, "the domain still holds the frame");
  ctx.as(holder, (c) => c.close());
  assert.equal(ctx.released, true);
  assert.equal(e.host.phys.pinCount(pfn), 0);
  assert.equal(other.user.lockedVm, 0);
  holder.exit();
});

test("teardown: exit of the only process holding /dev/iommu closes the fd and releases the context", () => {
  const e = env();
  const other = e.host.spawn({ uid: 1000 });
  const ctx = S.openIommufd(e.host, other);
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  mockDomain(ctx, ioas);
  const buf = other.mmap(BUFFER_SIZE, { shared: true });
  ioasMap(ctx, ioas, buf, BUFFER_SIZE, BASE);
  const pfn = other.mm.peekPfn(buf) as number;
  const inUse = e.host.phys.framesInUse;
  other.exit();
  assert.equal(ctx.released, true);
  assert.equal(ctx.objects.size, 0);
  assert.equal(other.user.lockedVm, 0);
  assert.equal(e.host.phys.pinCount(pfn), 0);
  assert.equal(e.host.phys.framesInUse, inUse - BUFFER_SIZE / 4096, "the exited process's frames are freed (unpinned and unmapped)");
});
