/**
 * fail-nth fault injection (src/fail-nth.ts), swept the way tools/testing/selftests/iommu/
 * iommufd_fail_nth.c sweeps the kernel: run a call sequence with the task's counter armed at
 * N = 1, 2, ... until a run completes without the injected failure firing. After every run:
 *  - the call that met the injected failure changed nothing (snapshot before == after), and
 *  - closing every fd leaves no context, object, pinned frame or locked/pinned page count.
 * A fast-check property does the same for random call sequences with a random N.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { IommuError } from "../../src/errno.js";
import { asTask, FailNth, shouldFail } from "../../src/fail-nth.js";
import { BASE, BUFFER_SIZE, env, hwptAlloc, ioasMap, mockDomain, PAGE, replace, S, scratch, snapshot, type Env } from "../hwpt/helpers.js";

const RW = S.IOMMU_IOAS_MAP_READABLE | S.IOMMU_IOAS_MAP_WRITEABLE;

/** One step of a sequence; `mayFail` steps are allowed to fail without injection (the selftest ignores them). */
interface Step {
  name: string;
  run: () => unknown;
  mayFail?: boolean;
}

interface RunResult {
  fired: boolean;
  /** The site named by the injected error, if one fired and was returned. */
  site: string | null;
}

/** Run the steps with the counter armed at n; stop at the first failing step (the selftest's `return -1`). */
function runArmed(e: Env, n: number, steps: (e: Env) => Step[]): RunResult {
  const task = new FailNth();
  task.set(n);
  let site: string | null = null;
  const list = steps(e);
  asTask(task, () => {
    for (const s of list) {
      const before = asTask(null, () => snapshot(e));
      const armedBefore = task.remaining !== 0;
      try {
        s.run();
      } catch (err) {
        if (!(err instanceof IommuError)) throw err;
        const firedHere = armedBefore && task.remaining === 0;
        if (!firedHere) {
          if (s.mayFail) continue;
          assert.fail(`step ${s.name} failed without an injected failure (n=${n}): ${err.message}`);
        }
        const m = /fault injection \(fail-nth\) at (.*)$/.exec(err.message);
        site = m ? m[1] : null;
        assert.ok(site, `step ${s.name} (n=${n}): the failure that consumed the counter is not the injected one: ${err.message}`);
        assert.deepEqual(asTask(null, () => snapshot(e)), before, `step ${s.name} (n=${n}, ${site}): the failing call changed state`);
        return;
      }
    }
  });
  return { fired: n > 0 && task.remaining === 0, site };
}

/** The selftest's teardown: close every fd, then nothing may be left. */
function teardownClean(e: Env, what: string): void {
  S.fdTableOf(e.p).closeAll();
  assert.ok(e.ctx.released, `${what}: the context is not released`);
  assert.equal(e.ctx.objects.size, 0, `${what}: objects left`);
  assert.equal(e.host.phys.framesPinned, 0, `${what}: frames left pinned`);
  assert.equal(e.p.user.lockedVm, 0, `${what}: user locked_vm left`);
  assert.equal(e.p.mm.pinnedVm, 0, `${what}: mm pinned_vm left`);
  assert.equal(e.p.mm.lockedVm, 0, `${what}: mm locked_vm left`);
}

/** Sweep n = 1.. until no failure fires; returns the sites seen and the number of runs. */
function sweep(steps: (e: Env) => Step[]): { sites: Set<string>; runs: number } {
  // the unarmed run must complete
  const e0 = env();
  const r0 = runArmed(e0, 0, steps);
  assert.equal(r0.fired, false);
  teardownClean(e0, "unarmed run");
  const sites = new Set<string>();
  for (let n = 1; ; n++) {
    assert.ok(n < 400, "the sweep does not end");
    const e = env();
    const r = runArmed(e, n, steps);
    teardownClean(e, `n=${n}${r.site ? ` (${r.site})` : ""}`);
    if (!r.fired) return { sites, runs: n };
    if (r.site) sites.add(r.site);
  }
}

function createAccess(e: Env, ioas: number, flags = 0): number {
  return e.ctx.testCmd({ op: S.IOMMU_TEST_OP_CREATE_ACCESS, id: ioas, flags }).out_access_fd as number;
}

test("fail-nth counter: fires exactly at the Nth point, reads 0 after, 0 disarms", () => {
  const t = new FailNth();
  assert.equal(asTask(t, shouldFail), false, "disarmed");
  t.set(3);
  assert.deepEqual(asTask(t, () => [shouldFail(), shouldFail(), shouldFail(), shouldFail()]), [false, false, true, false]);
  assert.equal(t.remaining, 0);
  t.set(2);
  t.set(0);
  assert.equal(asTask(t, shouldFail), false);
  assert.equal(shouldFail(), false, "no current task: never fails");
  assert.throws(() => t.set(-1), RangeError);
});

test("sweep basic (ioas.c): alloc, ranges, allow, map, copy, unmap", () => {
  const { sites, runs } = sweep((e) => {
    let ioas = 0;
    let iova = 0n;
    const ranges = scratch(e.p, 10 * 16);
    return [
      { name: "IOAS_ALLOC", run: () => (ioas = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number) },
      { name: "IOAS_IOVA_RANGES", run: () => e.ctx.ioasIovaRanges({ ioas_id: ioas, num_iovas: 10, allowed_iovas: ranges }) },
      {
        name: "IOAS_ALLOW_IOVAS",
        run: () => {
          const b = new Uint8Array(16);
          const dv = new DataView(b.buffer);
          dv.setBigUint64(0, 16n * 1024n, true);
          dv.setBigUint64(8, BigInt(BUFFER_SIZE + 16 * 1024 * 600 - 1), true);
          e.p.write(Number(ranges), b);
          e.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: 1, allowed_iovas: ranges });
        },
      },
      { name: "IOAS_MAP", run: () => (iova = e.ctx.ioasMap({ flags: RW, ioas_id: ioas, user_va: BigInt(e.buf), length: BigInt(BUFFER_SIZE), iova: 0n }).iova) },
      { name: "IOAS_COPY", run: () => e.ctx.ioasCopy({ flags: RW, dst_ioas_id: ioas, src_ioas_id: ioas, length: BigInt(PAGE), dst_iova: 0n, src_iova: iova }) },
      { name: "IOAS_UNMAP", run: () => e.ctx.ioasUnmap({ ioas_id: ioas, iova, length: BigInt(BUFFER_SIZE) }) },
      { name: "IOAS_UNMAP (nothing left)", run: () => e.ctx.ioasUnmap({ ioas_id: ioas, iova, length: BigInt(BUFFER_SIZE) }), mayFail: true },
    ];
  });
  assert.ok(runs > 5, `only ${runs} runs`);
  for (const s of ["iommufd_object_alloc (ioas)", "iommufd_get_object", "iopt_alloc_user_pages", "iopt_alloc_area"]) assert.ok(sites.has(s), `site ${s} never fired (${[...sites].join(", ")})`);
});

test("sweep map_domain / map_two_domains: mock domains, maps, destroy, re-attach, explicit HWPT", () => {
  const { sites } = sweep((e) => {
    let md: { stdev: number; hwpt: number; idev: number } = { stdev: 0, hwpt: 0, idev: 0 };
    let md2 = md;
    return [
      { name: "MOCK_DOMAIN", run: () => (md = mockDomain(e.ctx, e.ioas)) },
      { name: "MOCK_DOMAIN 2", run: () => (md2 = mockDomain(e.ctx, e.ioas)) },
      { name: "IOAS_MAP", run: () => ioasMap(e.ctx, e.ioas, e.buf, BUFFER_SIZE, BASE) },
      { name: "DESTROY stdev", run: () => e.ctx.destroy({ id: md.stdev }) },
      { name: "MOCK_DOMAIN again", run: () => (md = mockDomain(e.ctx, e.ioas)) },
      { name: "HWPT_ALLOC", run: () => hwptAlloc(e.ctx, md2.idev, e.ioas) },
      { name: "IOAS_UNMAP all", run: () => e.ctx.ioasUnmap({ ioas_id: e.ioas, iova: 0n, length: (1n << 64n) - 1n }) },
    ];
  });
  for (const s of ["mock_domain_map_pages", "iopt_pages pin batch", "domain_alloc", "xa_alloc (object ID)", "iopt_table_enforce_dev_resv_regions", "iommufd_object_alloc (device)"])
    assert.ok(sites.has(s), `site ${s} never fired (${[...sites].join(", ")})`);
});

test("sweep access_rw / access_pin: accesses, pins, reads and writes, with and without a domain", () => {
  const { sites } = sweep((e) => {
    let fd = -1;
    let pagesId = 0;
    const tmp = scratch(e.p, 2 * PAGE);
    return [
      { name: "CREATE_ACCESS", run: () => (fd = createAccess(e, e.ioas, S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES)) },
      { name: "IOAS_MAP", run: () => ioasMap(e.ctx, e.ioas, e.buf, BUFFER_SIZE, BASE) },
      { name: "ACCESS_RW", run: () => e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_RW, id: fd, iova: BASE, length: 64n, uptr: tmp, flags: 0 }) },
      { name: "ACCESS_RW slow", run: () => e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_RW, id: fd, iova: BASE + 0xff0n, length: 64n, uptr: tmp, flags: S.MOCK_ACCESS_RW_SLOW_PATH | S.MOCK_ACCESS_RW_WRITE }) },
      {
        name: "ACCESS_PAGES",
        run: () => (pagesId = e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_PAGES, id: fd, flags: 0, iova: BASE, length: BigInt(4 * PAGE), uptr: BigInt(e.buf) }).out_access_pages_id as number),
      },
      { name: "MOCK_DOMAIN", run: () => mockDomain(e.ctx, e.ioas) },
      { name: "DESTROY_ACCESS_PAGES", run: () => e.ctx.testCmd({ op: S.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, id: fd, access_pages_id: pagesId }) },
    ];
  });
  for (const s of ["iommufd_object_alloc (access)", "iopt_pages_rw_page", "iopt_pages pin batch"]) assert.ok(sites.has(s), `site ${s} never fired (${[...sites].join(", ")})`);
});

test("sweep device (device.c): mock device, GET_HW_INFO, HWPT_ALLOC, replace, accesses across IOASes", () => {
  const { sites } = sweep((e) => {
    let md: { stdev: number; hwpt: number; idev: number } = { stdev: 0, hwpt: 0, idev: 0 };
    let ioas2 = 0;
    let hwpt = 0;
    let fd = -1;
    const info = scratch(e.p, 64);
    return [
      { name: "IOAS_ALLOC", run: () => (ioas2 = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number) },
      { name: "IOAS_MAP", run: () => ioasMap(e.ctx, e.ioas, e.buf, 8 * PAGE, BASE) },
      { name: "IOAS_MAP 2", run: () => ioasMap(e.ctx, ioas2, e.buf, 8 * PAGE, BASE) },
      { name: "CREATE_ACCESS", run: () => (fd = createAccess(e, e.ioas, S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES)) },
      { name: "ACCESS_REPLACE_IOAS", run: () => e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, id: fd, ioas_id: ioas2 }) },
      { name: "MOCK_DOMAIN", run: () => (md = mockDomain(e.ctx, e.ioas)) },
      { name: "GET_HW_INFO", run: () => e.ctx.getHwInfo({ flags: 0, dev_id: md.idev, data_len: 64, data_uptr: info }) },
      { name: "HWPT_ALLOC", run: () => (hwpt = hwptAlloc(e.ctx, md.idev, e.ioas)) },
      { name: "MOCK_DOMAIN_REPLACE (ioas2)", run: () => replace(e.ctx, md.stdev, ioas2) },
      { name: "MOCK_DOMAIN_REPLACE (hwpt)", run: () => replace(e.ctx, md.stdev, hwpt) },
      { name: "IOAS_COPY", run: () => e.ctx.ioasCopy({ flags: RW, dst_ioas_id: ioas2, src_ioas_id: e.ioas, length: BigInt(PAGE), dst_iova: 0n, src_iova: BASE }) },
    ];
  });
  for (const s of ["hw_info", "mock device alloc", "iommufd_test_alloc_access", "iopt_get_pages (pages list element)", "domain_alloc"])
    assert.ok(sites.has(s), `site ${s} never fired (${[...sites].join(", ")})`);
});

test("property: random call sequences under a random fail-nth leave nothing behind after close", () => {
  type Op =
    | { k: "ioas" }
    | { k: "map"; io: number; off: number; pages: number }
    | { k: "domain"; io: number }
    | { k: "destroy"; which: number }
    | { k: "copy"; io: number; io2: number }
    | { k: "unmap"; io: number }
    | { k: "access"; io: number }
    | { k: "pin"; a: number; pages: number }
    | { k: "rw"; a: number; slow: boolean; write: boolean };
  const op: fc.Arbitrary<Op> = fc.oneof(
    fc.constant({ k: "ioas" as const }),
    fc.record({ k: fc.constant("map" as const), io: fc.nat(3), off: fc.nat(8), pages: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ k: fc.constant("domain" as const), io: fc.nat(3) }),
    fc.record({ k: fc.constant("destroy" as const), which: fc.nat(20) }),
    fc.record({ k: fc.constant("copy" as const), io: fc.nat(3), io2: fc.nat(3) }),
    fc.record({ k: fc.constant("unmap" as const), io: fc.nat(3) }),
    fc.record({ k: fc.constant("access" as const), io: fc.nat(3) }),
    fc.record({ k: fc.constant("pin" as const), a: fc.nat(3), pages: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ k: fc.constant("rw" as const), a: fc.nat(3), slow: fc.boolean(), write: fc.boolean() }),
  );
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 14 }), fc.integer({ min: 1, max: 40 }), (ops, n) => {
      const e = env();
      const ioases = [e.ioas];
      const iovas: Array<[number, bigint]> = [];
      const accesses: number[] = [];
      const tmp = scratch(e.p, 2 * PAGE);
      const pick = <T>(xs: T[], i: number): T | undefined => (xs.length ? xs[i % xs.length] : undefined);
      const task = new FailNth();
      task.set(n);
      asTask(task, () => {
        for (const o of ops) {
          const before = asTask(null, () => snapshot(e));
          const armed = task.remaining !== 0;
          try {
            switch (o.k) {
              case "ioas":
                ioases.push(e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number);
                break;
              case "map": {
                const io = pick(ioases, o.io) as number;
                const iova = e.ctx.ioasMap({ flags: RW, ioas_id: io, user_va: BigInt(e.buf + o.off * PAGE), length: BigInt(Math.min(o.pages, 16 - o.off) * PAGE), iova: 0n }).iova;
                iovas.push([io, iova]);
                break;
              }
              case "domain":
                mockDomain(e.ctx, pick(ioases, o.io) as number);
                break;
              case "destroy": {
                const ids = [...e.ctx.objects.keys()];
                const id = pick(ids, o.which);
                if (id !== undefined) e.ctx.destroy({ id });
                break;
              }
              case "copy": {
                const src = pick(iovas, o.io);
                if (src) e.ctx.ioasCopy({ flags: RW, dst_ioas_id: pick(ioases, o.io2) as number, src_ioas_id: src[0], length: BigInt(PAGE), dst_iova: 0n, src_iova: src[1] });
                break;
              }
              case "unmap": {
                const m = pick(iovas, o.io);
                if (m) e.ctx.ioasUnmap({ ioas_id: m[0], iova: m[1], length: BigInt(PAGE) });
                break;
              }
              case "access":
                accesses.push(createAccess(e, pick(ioases, o.io) as number, S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES));
                break;
              case "pin": {
                const a = pick(accesses, o.a);
                const m = pick(iovas, o.a);
                if (a !== undefined && m) e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_PAGES, id: a, flags: 0, iova: m[1], length: BigInt(o.pages * PAGE), uptr: BigInt(e.buf) });
                break;
              }
              case "rw": {
                const a = pick(accesses, o.a);
                const m = pick(iovas, o.a);
                const flags = (o.slow ? S.MOCK_ACCESS_RW_SLOW_PATH : 0) | (o.write ? S.MOCK_ACCESS_RW_WRITE : 0);
                if (a !== undefined && m) e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_RW, id: a, iova: m[1] + 8n, length: 32n, uptr: tmp, flags });
                break;
              }
            }
          } catch (err) {
            if (!(err instanceof IommuError)) throw err;
            if (armed && task.remaining === 0 && /fault injection/.test(err.message))
              assert.deepEqual(asTask(null, () => snapshot(e)), before, `${o.k} (n=${n}): the injected failure changed state: ${err.message}`);
          }
        }
      });
      teardownClean(e, `n=${n}`);
    }),
    { numRuns: Number(process.env.FAILNTH_RUNS ?? 150) },
  );
});
