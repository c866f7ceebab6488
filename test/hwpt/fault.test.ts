/**
 * IOMMU_FAULT_QUEUE_ALLOC, IOMMU_TEST_OP_TRIGGER_IOPF and the fault fd protocol (fault.c):
 * read/write/poll rules, cookies, auto-response on detach and replace, object lifetime.
 * Expectations measured on Linux 6.12.
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
  replace,
  decodeFaults,
  responses,
  snapshot,
  POLLIN,
  POLLOUT,
  POLLRDNORM,
  type Env,
} from "./helpers.js";
import { Fault, IOMMUFD_PAGE_RESP_INVALID, IOMMUFD_PAGE_RESP_SUCCESS } from "../../src/iommufd/fault.js";
import type { IommufdFile } from "../../src/iommufd/files.js";
import type { HwptNested } from "../../src/iommufd/hwpt.js";

const FAULT_VALID = S.IOMMU_HWPT_FAULT_ID_VALID;
const LAST_PAGE = 2;
const PASID_VALID = 1;

interface FEnv extends Env {
  stdev: number;
  idev: number;
  auto: number;
  parent: number;
  fid: number;
  ffd: number;
  file: IommufdFile;
  iopf: number;
  nested: number;
}

function setup(): FEnv {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, S.IOMMU_HWPT_ALLOC_NEST_PARENT);
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  const fid = f.out_fault_id as number;
  const ffd = f.out_fault_fd as number;
  const iopf = nestedAlloc(e.ctx, e.p, md.idev, parent, { flags: FAULT_VALID, faultId: fid });
  const nested = nestedAlloc(e.ctx, e.p, md.idev, parent);
  const file = S.fdTableOf(e.p).get(ffd) as IommufdFile;
  return { ...e, stdev: md.stdev, idev: md.idev, auto: md.hwpt, parent, fid, ffd, file, iopf, nested };
}

function trigger(e: Env, dev: number, o: { pasid?: number; grpid?: number; perm?: number; addr?: bigint } = {}): void {
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_IOPF, id: 0, dev_id: dev, pasid: o.pasid ?? 0, grpid: o.grpid ?? 0, perm: o.perm ?? 0, addr: o.addr ?? 0n });
}

function rd(f: IommufdFile, count: number, pos = 0): ReturnType<typeof decodeFaults> {
  return decodeFaults((f.read as NonNullable<IommufdFile["read"]>).call(f, count, pos));
}

function wr(f: IommufdFile, data: Uint8Array, pos = 0): number {
  return (f.write as NonNullable<IommufdFile["write"]>).call(f, data, pos);
}

function poll(f: IommufdFile): number {
  return (f.poll as NonNullable<IommufdFile["poll"]>).call(f);
}

function faultObj(e: FEnv): Fault {
  return e.ctx.objects.get(e.fid) as Fault;
}

test("fault_queue_alloc: returns an object ID and a new fd; flags must be 0", () => {
  const e = env();
  failsCleanly(e, "EOPNOTSUPP", () => e.ctx.faultQueueAlloc({ flags: 1 }));
  const a = e.ctx.faultQueueAlloc({ flags: 0 });
  const b = e.ctx.faultQueueAlloc({ flags: 0 });
  assert.equal(a.out_fault_id, 2);
  assert.equal(b.out_fault_id, 3);
  assert.equal((b.out_fault_fd as number) - (a.out_fault_fd as number), 1, "fds are allocated lowest-first");
  const f = S.fdTableOf(e.p).get(a.out_fault_fd as number) as IommufdFile;
  assert.equal(f.kind, "fault");
  assert.deepEqual(rd(f, 40), [], "nothing queued: read returns 0 bytes without blocking");
  assert.equal(poll(f), POLLOUT);
});

test("fault_queue_alloc: the fd holds the object: DESTROY is EBUSY until the fd is closed", () => {
  const e = env();
  const a = e.ctx.faultQueueAlloc({ flags: 0 });
  const id = a.out_fault_id as number;
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id }));
  S.fdTableOf(e.p).close(a.out_fault_fd as number);
  e.ctx.destroy({ id });
  expectErr("ENOENT", () => e.ctx.destroy({ id }));
});

test("fault: a HWPT using the fault holds it too (EBUSY after the fd is closed, until the HWPT goes)", () => {
  const e = setup();
  S.fdTableOf(e.p).close(e.ffd);
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: e.fid }));
  e.ctx.destroy({ id: e.iopf });
  e.ctx.destroy({ id: e.fid });
});

test("trigger_iopf: an unknown or non-device id is ENOENT; a device without a fault HWPT drops the fault", () => {
  const e = setup();
  failsCleanly(e, "ENOENT", () => trigger(e, 999));
  failsCleanly(e, "ENOENT", () => trigger(e, e.ioas));
  failsCleanly(e, "ENOENT", () => trigger(e, e.stdev));
  trigger(e, e.idev, { grpid: 1 });
  assert.deepEqual(rd(e.file, 40), []);
  replace(e.ctx, e.stdev, e.nested);
  trigger(e, e.idev, { grpid: 1, pasid: 3 });
  assert.deepEqual(rd(e.file, 40), [], "a nested HWPT without a fault object");
});

test("trigger_iopf: a bound device that is not a selftest mock device is EINVAL", () => {
  const e = env();
  const dev = new S.Device({ name: "pci-0000:00:02.0", driver: S.mockIommu });
  const idev = e.ctx.bindDevice(dev);
  idev.attach(e.ioas);
  failsCleanly(e, "EINVAL", () => trigger(e, idev.id, { grpid: 1 }));
  idev.detach();
  e.ctx.unbindDevice(idev);
});

test("fault fd read: records carry flags, the device ID, pasid, grpid, perm, addr, length 0 and a cookie", () => {
  const e = setup();
  replace(e.ctx, e.stdev, e.iopf);
  assert.equal(e.ctx.objects.has(e.auto), false, "the auto HWPT went with the replace");
  trigger(e, e.idev, { pasid: 0, grpid: 1, perm: 1, addr: 0x1000n });
  trigger(e, e.idev, { pasid: 5, grpid: 2, perm: 3, addr: 0x2000n });
  trigger(e, e.idev, { pasid: 1, grpid: 2, perm: 15, addr: 0xdeadbeafn });
  assert.equal(poll(e.file), POLLOUT | POLLIN | POLLRDNORM);
  const one = rd(e.file, 40);
  assert.deepEqual(one, [{ flags: LAST_PAGE, dev_id: e.idev, pasid: 0, grpid: 1, perm: 1, reserved: 0, addr: 0x1000n, length: 0, cookie: 1 }]);
  const rest = rd(e.file, 120);
  assert.deepEqual(rest.map((f) => [f.flags, f.pasid, f.grpid, f.perm, f.addr, f.cookie]), [
    [LAST_PAGE | PASID_VALID, 5, 2, 3, 0x2000n, 2],
    [LAST_PAGE | PASID_VALID, 1, 2, 15, 0xdeadbeafn, 3],
  ]);
  assert.equal(poll(e.file), POLLOUT, "read groups wait for a response but do not make the fd readable");
  assert.deepEqual(rd(e.file, 40), []);
});

test("fault fd read: count must be a multiple of 40 at position 0 (ESPIPE); a first group that does not fit is EINVAL", () => {
  const e = setup();
  replace(e.ctx, e.stdev, e.iopf);
  expectErr("ESPIPE", () => rd(e.file, 39), "count 39 with nothing queued");
  trigger(e, e.idev, { grpid: 1 });
  trigger(e, e.idev, { grpid: 2 });
  const before = snapshot(e);
  expectErr("ESPIPE", () => rd(e.file, 39));
  expectErr("ESPIPE", () => rd(e.file, 41));
  expectErr("ESPIPE", () => rd(e.file, 40, 40), "pread at offset 40");
  expectErr("EINVAL", () => rd(e.file, 0), "count 0 with a group queued");
  assert.deepEqual(snapshot(e), before, "failed reads dequeue nothing");
  assert.deepEqual(rd(e.file, 40).map((f) => f.grpid), [1], "a group that does not fit after the first stays queued");
  assert.equal(poll(e.file) & POLLIN, POLLIN);
  assert.deepEqual(rd(e.file, 400).map((f) => f.grpid), [2]);
});

test("fault fd write: 8-byte responses; ESPIPE, bad code and unknown cookie fail; partial progress wins", () => {
  const e = setup();
  replace(e.ctx, e.stdev, e.iopf);
  for (let g = 1; g <= 3; g++) trigger(e, e.idev, { grpid: g });
  assert.deepEqual(rd(e.file, 120).map((f) => f.cookie), [1, 2, 3]);
  expectErr("ESPIPE", () => wr(e.file, new Uint8Array(7)));
  expectErr("ESPIPE", () => wr(e.file, responses([1, 0]), 8), "position 8");
  expectErr("EINVAL", () => wr(e.file, responses([1, 2])), "code 2");
  expectErr("EINVAL", () => wr(e.file, responses([99, 0])), "unknown cookie");
  expectErr("EINVAL", () => wr(e.file, responses([0, 0])), "cookie 0 is never allocated");
  assert.equal(wr(e.file, responses([1, IOMMUFD_PAGE_RESP_SUCCESS])), 8);
  expectErr("EINVAL", () => wr(e.file, responses([1, 0])), "already answered");
  assert.equal(wr(e.file, responses([2, IOMMUFD_PAGE_RESP_INVALID], [2, 0])), 8, "stops at the bad second record, reports 8");
  assert.equal(wr(e.file, responses([3, 0], [9, 0])), 8);
  const f = faultObj(e);
  assert.deepEqual(f.completed.map((g) => [g.faults[0].grpid, g.response]), [
    [1, IOMMUFD_PAGE_RESP_SUCCESS],
    [2, IOMMUFD_PAGE_RESP_INVALID],
    [3, IOMMUFD_PAGE_RESP_SUCCESS],
  ]);
  assert.equal(f.response.size, 0);
  assert.equal(wr(e.file, new Uint8Array(0)), 0, "an empty write is 0");
});

test("fault cookies: the lowest free cookie >= 1 is reused after a response", () => {
  const e = setup();
  replace(e.ctx, e.stdev, e.iopf);
  trigger(e, e.idev, { grpid: 1 });
  trigger(e, e.idev, { grpid: 2 });
  trigger(e, e.idev, { grpid: 3 });
  assert.deepEqual(rd(e.file, 120).map((f) => f.cookie), [1, 2, 3]);
  wr(e.file, responses([1, 0]));
  wr(e.file, responses([2, 0]));
  trigger(e, e.idev, { grpid: 4 });
  assert.deepEqual(rd(e.file, 40).map((f) => [f.grpid, f.cookie]), [[4, 1]]);
  trigger(e, e.idev, { grpid: 5 });
  assert.deepEqual(rd(e.file, 40).map((f) => [f.grpid, f.cookie]), [[5, 2]]);
  trigger(e, e.idev, { grpid: 6 });
  assert.deepEqual(rd(e.file, 40).map((f) => [f.grpid, f.cookie]), [[6, 4]], "3 is still outstanding");
});

test("fault auto-response: replacing the HWPT answers INVALID to queued and read-but-unanswered groups", () => {
  const e = setup();
  const f2 = e.ctx.faultQueueAlloc({ flags: 0 });
  const file2 = S.fdTableOf(e.p).get(f2.out_fault_fd as number) as IommufdFile;
  const iopf2 = nestedAlloc(e.ctx, e.p, e.idev, e.parent, { flags: FAULT_VALID, faultId: f2.out_fault_id as number });
  replace(e.ctx, e.stdev, e.iopf);
  trigger(e, e.idev, { grpid: 1 });
  trigger(e, e.idev, { grpid: 2 });
  assert.deepEqual(rd(e.file, 40).map((f) => f.cookie), [1]);
  // replacing with the same HWPT changes nothing
  replace(e.ctx, e.stdev, e.iopf);
  assert.equal(faultObj(e).completed.length, 0);
  replace(e.ctx, e.stdev, iopf2);
  assert.equal(poll(e.file), POLLOUT);
  assert.deepEqual(rd(e.file, 40), []);
  expectErr("EINVAL", () => wr(e.file, responses([1, 0])), "the read group was already answered");
  assert.deepEqual(faultObj(e).completed.map((g) => [g.faults[0].grpid, g.response]).sort(), [
    [1, IOMMUFD_PAGE_RESP_INVALID],
    [2, IOMMUFD_PAGE_RESP_INVALID],
  ]);
  // new faults go to the new HWPT's queue
  trigger(e, e.idev, { grpid: 7 });
  assert.deepEqual(rd(file2, 40).map((f) => [f.grpid, f.cookie]), [[7, 1]]);
  assert.deepEqual(rd(e.file, 40), []);
});

test("fault auto-response: replacing onto a HWPT without a fault object, and detaching, answer INVALID", () => {
  const e = setup();
  replace(e.ctx, e.stdev, e.iopf);
  trigger(e, e.idev, { grpid: 1 });
  replace(e.ctx, e.stdev, e.nested);
  assert.equal(faultObj(e).completed.length, 1);
  replace(e.ctx, e.stdev, e.iopf);
  trigger(e, e.idev, { grpid: 2 });
  trigger(e, e.idev, { grpid: 3 });
  rd(e.file, 40);
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: e.iopf }), "attached fault HWPT");
  e.ctx.destroy({ id: e.stdev });
  assert.deepEqual(faultObj(e).completed.map((g) => g.response), [1, 1, 1]);
  assert.equal(poll(e.file), POLLOUT);
  assert.deepEqual(rd(e.file, 40), []);
  expectErr("EINVAL", () => wr(e.file, responses([1, 0])));
  e.ctx.destroy({ id: e.iopf });
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: e.fid }), "fd still open");
});

test("fault: a device attached directly to a fault HWPT reports faults with its own device ID", () => {
  const e = setup();
  const d2 = mockDomain(e.ctx, e.iopf);
  trigger(e, d2.idev, { pasid: 7, grpid: 9, perm: 2, addr: 0x9000n });
  assert.deepEqual(rd(e.file, 80).map((f) => [f.flags, f.dev_id, f.pasid, f.grpid]), [[LAST_PAGE | PASID_VALID, d2.idev, 7, 9]]);
  trigger(e, e.idev, { grpid: 1 });
  assert.deepEqual(rd(e.file, 40), [], "the first device is still on its auto domain");
});

test("fault: destroying the fault object (after the HWPT and fd are gone) completes what is left", () => {
  const e = setup();
  replace(e.ctx, e.stdev, e.iopf);
  trigger(e, e.idev, { grpid: 1 });
  const f = faultObj(e);
  replace(e.ctx, e.stdev, e.ioas);
  e.ctx.destroy({ id: e.iopf });
  S.fdTableOf(e.p).close(e.ffd);
  e.ctx.destroy({ id: e.fid });
  assert.deepEqual(f.completed.map((g) => g.response), [IOMMUFD_PAGE_RESP_INVALID]);
});

test("fault: the fd keeps working after the /dev/iommu fd is closed, and closing it last frees everything", () => {
  const e = setup();
  replace(e.ctx, e.stdev, e.iopf);
  trigger(e, e.idev, { grpid: 1 });
  e.ctx.close();
  assert.equal(e.ctx.released, false);
  assert.deepEqual(rd(e.file, 40).map((f) => f.grpid), [1]);
  assert.equal(wr(e.file, responses([1, 0])), 8);
  S.fdTableOf(e.p).close(e.ffd);
  assert.equal(e.ctx.released, true);
  assert.equal(e.ctx.objects.size, 0);
});

test("fault: devices sharing an iommu_group share the attach handle: faults report the attaching device and are answered when the group detaches", () => {
  const e = setup();
  const group = new S.IommuGroup();
  const a = e.ctx.bindDevice(new S.Device({ name: "pci-0000:00:04.0", driver: S.mockIommu, group }));
  const b = e.ctx.bindDevice(new S.Device({ name: "pci-0000:00:04.1", driver: S.mockIommu, group }));
  a.attach(e.iopf);
  b.attach(e.iopf);
  const hw = e.ctx.objects.get(e.iopf) as HwptNested;
  const report = (dev: S.Device, grpid: number) =>
    hw.domain.iopfHandler?.({ deviceKey: dev, pasid: 0, pasidValid: false, lastPage: true, grpid, perm: 1, addr: 0n });
  report(b.dev, 1);
  assert.deepEqual(rd(e.file, 40).map((f) => [f.grpid, f.dev_id]), [[1, a.id]], "dev_id is the device that attached the group");
  report(b.dev, 2);
  a.detach();
  assert.equal(faultObj(e).completed.length, 0, "the group is still attached through b");
  b.replace(e.nested);
  assert.deepEqual(faultObj(e).completed.map((g) => [g.faults[0].grpid, g.response]).sort(), [
    [1, IOMMUFD_PAGE_RESP_INVALID],
    [2, IOMMUFD_PAGE_RESP_INVALID],
  ]);
  b.replace(e.iopf);
  report(b.dev, 3);
  assert.deepEqual(rd(e.file, 40).map((f) => [f.grpid, f.dev_id]), [[3, b.id]], "the replacing device owns the new handle");
  b.detach();
  assert.equal(faultObj(e).completed.length, 3);
  e.ctx.unbindDevice(a);
  e.ctx.unbindDevice(b);
});
