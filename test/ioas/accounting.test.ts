/**
 * Pinned-page accounting (user vs mm mode, RLIMIT_MEMLOCK, CAP_IPC_LOCK) and IOMMU_IOAS_CHANGE_PROCESS
 * (oracle: probe-ioas P10 — measured through VmLck/VmPin of /proc/self/status).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  BUF,
  copy,
  destroy,
  expectErrno,
  expectFailsUnchanged,
  ioasAlloc,
  map,
  mockDomain,
  PAGE,
  refsOf,
  S,
  setup,
  unmapAll,
  type Env,
} from "./helpers.js";

const counters = (env: Env, p: S.Process = env.p): { user: number; mmLocked: number; pinned: number } => ({
  user: p.user.lockedVm,
  mmLocked: p.mm.lockedVm,
  pinned: p.mm.pinnedVm,
});

test("user accounting: lazily mapped pages cost nothing; a domain attach that exceeds RLIMIT_MEMLOCK fails ENOMEM", () => {
  // oracle P10: limit 8 pages; 16-page map without domain -> 0/0; attach -> ENOMEM, counters unchanged
  const env = setup({ rlimitMemlock: 8 * PAGE });
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 16 * PAGE, 0x1000000);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 0, pinned: 0 });
  expectFailsUnchanged(env, () => mockDomain(env, ioas), "ENOMEM");
  assert.equal(refsOf(env, BUF), 0);
});

test("user accounting charges user->locked_vm and mm->pinned_vm, not mm->locked_vm; over the limit is ENOMEM", () => {
  // oracle P10: 8 pages -> VmLck 0, VmPin 32 kB; a 9th page -> ENOMEM (refs 0, counters unchanged)
  const env = setup({ rlimitMemlock: 8 * PAGE });
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  map(env, ioas, BUF, 8 * PAGE, null);
  assert.deepEqual(counters(env), { user: 8, mmLocked: 0, pinned: 8 });
  expectFailsUnchanged(env, () => map(env, ioas, BUF + 8 * PAGE, PAGE, null), "ENOMEM");
  assert.equal(refsOf(env, BUF + 8 * PAGE), 0);
  expectFailsUnchanged(env, () => map(env, ioas, BUF, PAGE, null), "ENOMEM", "a second MAP of a pinned page is charged again");
  unmapAll(env, ioas);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 0, pinned: 0 });
});

test("user accounting is per user: two processes of one user share the limit", () => {
  const env = setup({ rlimitMemlock: 8 * PAGE });
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  map(env, ioas, BUF, 6 * PAGE, null);
  const child = env.p.fork();
  env.ctx.as(child, () => {
    expectErrno(() => map(env, ioas, BUF + 0x100000, 3 * PAGE, null), "ENOMEM");
    map(env, ioas, BUF + 0x100000, 2 * PAGE, null);
  });
  assert.equal(env.p.user.lockedVm, 8);
  assert.equal(child.mm.pinnedVm, 2, "pinned_vm is the mapping process's");
  assert.equal(env.p.mm.pinnedVm, 6);
});

test("mm accounting (RLIMIT_MODE=1) charges mm->locked_vm against RLIMIT_MEMLOCK", () => {
  // oracle P10: 4 pages -> VmLck 16 kB, VmPin 16 kB; 5 more -> ENOMEM
  const env = setup({ rlimitMemlock: 8 * PAGE, rlimitMode: 1 });
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  map(env, ioas, BUF, 4 * PAGE, null);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 4, pinned: 4 });
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 5 * PAGE, null), "ENOMEM");
  map(env, ioas, BUF, 4 * PAGE, null);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 8, pinned: 8 });
  unmapAll(env, ioas);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 0, pinned: 0 });
});

test("each mapping is accounted in the mode of the context it was made through", () => {
  const env = setup({ rlimitMemlock: 64 * PAGE });
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 2 * PAGE, 0x1000000);
  // a second context opened as /dev/vfio/vfio (mm mode) maps other pages: each keeps its own mode
  const ctx2 = S.openIommufd(env.host, env.p, { vfioContainer: true });
  const env2: Env = { ...env, ctx: ctx2 };
  const a2 = ioasAlloc(env2);
  map(env2, a2, BUF + 0x10000, 2 * PAGE, 0x1000000);
  mockDomain(env, ioas);
  mockDomain(env2, a2);
  assert.deepEqual(counters(env), { user: 2, mmLocked: 2, pinned: 4 });
});

test("CAP_IPC_LOCK: no locked_vm accounting and no limit, but pinned_vm still counts", () => {
  // oracle P10 "root": VmLck 0, VmPin 16 kB for 4 pages
  const env = setup({ capIpcLock: true, rlimitMemlock: 0 });
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  map(env, ioas, BUF, 4 * PAGE, null);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 0, pinned: 4 });
  unmapAll(env, ioas);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 0, pinned: 0 });
});

test("COPY shares the charge; two MAPs of the same memory are charged twice", () => {
  const env = setup();
  const a = ioasAlloc(env);
  const b = ioasAlloc(env);
  mockDomain(env, a);
  mockDomain(env, b);
  map(env, a, BUF, 4 * PAGE, 0x1000000);
  copy(env, b, a, 0x1000000, 4 * PAGE, null);
  assert.deepEqual(counters(env), { user: 4, mmLocked: 0, pinned: 4 });
  assert.equal(refsOf(env, BUF), 1);
  map(env, b, BUF, 4 * PAGE, null);
  assert.deepEqual(counters(env), { user: 8, mmLocked: 0, pinned: 8 });
  assert.equal(refsOf(env, BUF), 2);
});

test("detaching the last domain unpins and uncharges; re-attaching charges again", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const md = mockDomain(env, ioas);
  map(env, ioas, BUF, 4 * PAGE, null);
  destroy(env, md.stdev);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 0, pinned: 0 });
  mockDomain(env, ioas);
  assert.deepEqual(counters(env), { user: 4, mmLocked: 0, pinned: 4 });
});

test("destroying an IOAS (no domain) and the domain releases every pin", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const md = mockDomain(env, ioas);
  map(env, ioas, BUF, 4 * PAGE, null);
  destroy(env, md.stdev);
  destroy(env, ioas);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 0, pinned: 0 });
  assert.equal(refsOf(env, BUF), 0);
});

test(
  "closing the iommufd releases every pin (teardown with a mock domain attached)",
  () => {
    const env = setup();
    const ioas = ioasAlloc(env);
    mockDomain(env, ioas);
    map(env, ioas, BUF, 4 * PAGE, null);
    env.ctx.close();
    assert.deepEqual(counters(env), { user: 0, mmLocked: 0, pinned: 0 });
    assert.equal(env.host.phys.pinCount(env.p.mm.peekPfn(BUF) as number), 0);
  },
);

test("closing the iommufd releases every pin (no domain left)", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const md = mockDomain(env, ioas);
  const b = ioasAlloc(env);
  map(env, ioas, BUF, 4 * PAGE, null);
  copy(env, b, ioas, 0x1000000, 4 * PAGE, null);
  destroy(env, md.stdev);
  env.ctx.close();
  assert.equal(env.ctx.objects.size, 0);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 0, pinned: 0 });
});

// ------------------------------------------------------------------ IOAS_CHANGE_PROCESS

function withMemfd(env: Env, size: number): number {
  const file = env.p.memfdCreate("cp");
  file.truncate(size);
  env.ctx.memfdResolver = (_p, n) => (n === 9 ? file : undefined);
  return 9;
}

const mapFile = (env: Env, ioas: number, fd: number, length: number): bigint =>
  env.ctx.ioasMapFile({ flags: S.IOMMU_IOAS_MAP_READABLE | S.IOMMU_IOAS_MAP_WRITEABLE, ioas_id: ioas, fd, start: 0n, length: BigInt(length), iova: 0n }).iova;

test("IOAS_CHANGE_PROCESS with non-zero __reserved returns EOPNOTSUPP", () => {
  const env = setup();
  ioasAlloc(env);
  expectFailsUnchanged(env, () => env.ctx.ioasChangeProcess({ __reserved: 1 }), "EOPNOTSUPP");
});

test("IOAS_CHANGE_PROCESS with any plain (VA-based) MAP present returns EINVAL and changes nothing", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  const fd = withMemfd(env, 16 * PAGE);
  mapFile(env, ioas, fd, 4 * PAGE);
  map(env, ioas, BUF, PAGE, null);
  const child = env.p.fork();
  expectFailsUnchanged(env, () => env.ctx.as(child, () => env.ctx.ioasChangeProcess({})), "EINVAL");
  assert.deepEqual(counters(env, child), { user: 5, mmLocked: 0, pinned: 0 });
});

test("IOAS_CHANGE_PROCESS moves the pinned-page accounting of MAP_FILE maps to the caller (user mode)", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const other = ioasAlloc(env);
  mockDomain(env, ioas);
  mockDomain(env, other);
  const fd = withMemfd(env, 16 * PAGE);
  mapFile(env, ioas, fd, 4 * PAGE);
  copy(env, other, ioas, 0x1000000, 4 * PAGE, null);
  assert.deepEqual(counters(env), { user: 4, mmLocked: 0, pinned: 4 });
  const child = env.p.fork();
  env.ctx.as(child, () => env.ctx.ioasChangeProcess({}));
  assert.deepEqual(counters(env), { user: 4, mmLocked: 0, pinned: 0 });
  assert.equal(child.mm.pinnedVm, 4, "a page object shared by a COPY moves once");
  unmapAll(env, ioas);
  unmapAll(env, other);
  assert.deepEqual(counters(env, child), { user: 0, mmLocked: 0, pinned: 0 }, "later unpins uncharge the new process");
});

test("IOAS_CHANGE_PROCESS in mm mode moves mm->locked_vm; a caller without room gets ENOMEM and nothing moves", () => {
  const env = setup({ rlimitMode: 1, rlimitMemlock: 8 * PAGE });
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  const fd = withMemfd(env, 16 * PAGE);
  mapFile(env, ioas, fd, 6 * PAGE);
  assert.deepEqual(counters(env), { user: 0, mmLocked: 6, pinned: 6 });
  const poor = env.p.fork();
  poor.rlimitMemlock = 4 * PAGE;
  expectFailsUnchanged(env, () => env.ctx.as(poor, () => env.ctx.ioasChangeProcess({})), "ENOMEM");
  assert.deepEqual(counters(env, poor), { user: 0, mmLocked: 0, pinned: 0 });
  const child = env.p.fork();
  env.ctx.as(child, () => env.ctx.ioasChangeProcess({}));
  assert.deepEqual(counters(env), { user: 0, mmLocked: 0, pinned: 0 });
  assert.deepEqual(counters(env, child), { user: 0, mmLocked: 6, pinned: 6 });
});

test("IOAS_CHANGE_PROCESS by the mapping process itself changes nothing", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  const fd = withMemfd(env, 16 * PAGE);
  mapFile(env, ioas, fd, 4 * PAGE);
  env.ctx.ioasChangeProcess({});
  assert.deepEqual(counters(env), { user: 4, mmLocked: 0, pinned: 4 });
});

test("IOAS_CHANGE_PROCESS with no mappings at all succeeds", () => {
  const env = setup();
  ioasAlloc(env);
  env.ctx.ioasChangeProcess({});
});
