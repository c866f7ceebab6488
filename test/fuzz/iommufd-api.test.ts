/**
 * Whole-API robustness: random sequences over every iommufd call of the library (IOAS, mock
 * devices, HWPTs, replace, accesses and their pins, fault queues, options, reservations, fds).
 * Rules pinned: a call either succeeds or throws IommuError (never an internal error); a failing
 * call leaves the observable state exactly as it was (objects and their users, areas, reserved and
 * allowed ranges, alignment, domain contents, pins, locked memory) — except IOAS_UNMAP, which keeps
 * the areas it removed before failing, like the kernel; and closing every fd releases every
 * object, pin and locked page.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { BUF, BUF_LEN, PAGE4K, SCRATCH, setup, snapshot, S, type Env } from "../ioas/helpers.js";

type Op =
  | { k: "ioasAlloc" }
  | { k: "destroy"; id: number }
  | { k: "map"; ioas: number; off: number; len: number; iova: number | null; flags: number }
  | { k: "unmap"; ioas: number; iova: number; len: number }
  | { k: "unmapAll"; ioas: number }
  | { k: "copy"; dst: number; src: number; srcIova: number; len: number; dstIova: number | null }
  | { k: "mockDomain"; pt: number; flags: number }
  | { k: "replace"; stdev: number; pt: number }
  | { k: "hwptAlloc"; dev: number; pt: number; flags: number }
  | { k: "access"; ioas: number; pin: boolean }
  | { k: "accessPages"; fd: number; iova: number; len: number; write: boolean }
  | { k: "accessUnpin"; fd: number; item: number }
  | { k: "accessRw"; fd: number; iova: number; len: number; write: boolean }
  | { k: "closeFd"; fd: number }
  | { k: "hugePages"; ioas: number; on: boolean }
  | { k: "addReserved"; ioas: number; start: number; len: number }
  | { k: "allow"; ioas: number; start: number; len: number; clear: boolean }
  | { k: "fault" }
  | { k: "dirty"; hwpt: number; on: boolean };

const id = fc.integer({ min: 0, max: 9 });
const fdArb = fc.integer({ min: 3, max: 8 });
const base = 0x1000000; // the mock aperture start
const iovaArb = fc.oneof(fc.constantFrom(base, base + 0x800, base + 0x1000, base + 0x10000), fc.integer({ min: 0, max: 0x40 }).map((k) => base + k * 0x800));
const lenArb = fc.oneof(fc.constantFrom(0x800, 0x1000, 0x2000, 0x10000, 1, 0), fc.integer({ min: 1, max: 32 }).map((k) => k * 0x800));

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.constant<Op>({ k: "ioasAlloc" }),
  id.map<Op>((i) => ({ k: "destroy", id: i })),
  fc.record({ k: fc.constant("map" as const), ioas: id, off: fc.integer({ min: 0, max: 64 }).map((x) => x * 0x800), len: lenArb, iova: fc.option(iovaArb), flags: fc.constantFrom(2, 4, 6, 0, 8) }),
  fc.record({ k: fc.constant("unmap" as const), ioas: id, iova: iovaArb, len: lenArb }),
  id.map<Op>((i) => ({ k: "unmapAll", ioas: i })),
  fc.record({ k: fc.constant("copy" as const), dst: id, src: id, srcIova: iovaArb, len: lenArb, dstIova: fc.option(iovaArb) }),
  fc.record({ k: fc.constant("mockDomain" as const), pt: id, flags: fc.constantFrom(0, 0, 1, 2, 8) }),
  fc.record({ k: fc.constant("replace" as const), stdev: id, pt: id }),
  fc.record({ k: fc.constant("hwptAlloc" as const), dev: id, pt: id, flags: fc.constantFrom(0, 1, 2, 3, 4, 16) }),
  fc.record({ k: fc.constant("access" as const), ioas: id, pin: fc.boolean() }),
  fc.record({ k: fc.constant("accessPages" as const), fd: fdArb, iova: iovaArb, len: lenArb, write: fc.boolean() }),
  fc.record({ k: fc.constant("accessUnpin" as const), fd: fdArb, item: fc.integer({ min: 0, max: 4 }) }),
  fc.record({ k: fc.constant("accessRw" as const), fd: fdArb, iova: iovaArb, len: lenArb, write: fc.boolean() }),
  fdArb.map<Op>((fd) => ({ k: "closeFd", fd })),
  fc.record({ k: fc.constant("hugePages" as const), ioas: id, on: fc.boolean() }),
  fc.record({ k: fc.constant("addReserved" as const), ioas: id, start: iovaArb, len: lenArb }),
  fc.record({ k: fc.constant("allow" as const), ioas: id, start: iovaArb, len: lenArb, clear: fc.boolean() }),
  fc.constant<Op>({ k: "fault" }),
  fc.record({ k: fc.constant("dirty" as const), hwpt: id, on: fc.boolean() }),
);

const big = (n: number): bigint => BigInt(n);

function run(env: Env, op: Op): void {
  const { ctx, p } = env;
  switch (op.k) {
    case "ioasAlloc":
      ctx.ioasAlloc({ flags: 0 });
      return;
    case "destroy":
      ctx.destroy({ id: op.id });
      return;
    case "map":
      ctx.ioasMap({
        flags: op.flags | (op.iova === null ? 0 : S.IOMMU_IOAS_MAP_FIXED_IOVA),
        ioas_id: op.ioas,
        user_va: big(BUF + op.off),
        length: big(op.len),
        iova: big(op.iova ?? 0),
      });
      return;
    case "unmap":
      ctx.ioasUnmap({ ioas_id: op.ioas, iova: big(op.iova), length: big(op.len) });
      return;
    case "unmapAll":
      ctx.ioasUnmap({ ioas_id: op.ioas, iova: 0n, length: (1n << 64n) - 1n });
      return;
    case "copy":
      ctx.ioasCopy({
        flags: S.IOMMU_IOAS_MAP_READABLE | (op.dstIova === null ? 0 : S.IOMMU_IOAS_MAP_FIXED_IOVA),
        dst_ioas_id: op.dst,
        src_ioas_id: op.src,
        length: big(op.len),
        dst_iova: big(op.dstIova ?? 0),
        src_iova: big(op.srcIova),
      });
      return;
    case "mockDomain":
      ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, id: op.pt, dev_flags: op.flags });
      return;
    case "replace":
      ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, id: op.stdev, pt_id: op.pt });
      return;
    case "hwptAlloc":
      ctx.hwptAlloc({ flags: op.flags, dev_id: op.dev, pt_id: op.pt, data_type: 0, data_len: 0, data_uptr: 0n });
      return;
    case "access":
      ctx.testCmd({ op: S.IOMMU_TEST_OP_CREATE_ACCESS, id: op.ioas, flags: op.pin ? S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES : 0 });
      return;
    case "accessPages":
      ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_PAGES, id: op.fd, iova: big(op.iova), length: big(op.len), uptr: 0n, flags: op.write ? S.MOCK_FLAGS_ACCESS_WRITE : 0 });
      return;
    case "accessUnpin":
      ctx.testCmd({ op: S.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, id: op.fd, access_pages_id: op.item });
      return;
    case "accessRw":
      ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_RW, id: op.fd, iova: big(op.iova), length: big(op.len), uptr: big(SCRATCH), flags: op.write ? S.MOCK_ACCESS_RW_WRITE : 0 });
      return;
    case "closeFd":
      S.fdTableOf(p).close(op.fd);
      return;
    case "hugePages":
      ctx.option({ option_id: S.IOMMU_OPTION_HUGE_PAGES, op: S.IOMMU_OPTION_OP_SET, object_id: op.ioas, val64: op.on ? 1n : 0n });
      return;
    case "addReserved":
      ctx.testCmd({ op: S.IOMMU_TEST_OP_ADD_RESERVED, id: op.ioas, start: big(op.start), length: big(op.len) });
      return;
    case "allow": {
      const b = new Uint8Array(16);
      const dv = new DataView(b.buffer);
      dv.setBigUint64(0, big(op.start), true);
      dv.setBigUint64(8, big(op.start + op.len - 1), true);
      p.write(SCRATCH, b);
      ctx.ioasAllowIovas({ ioas_id: op.ioas, num_iovas: op.clear ? 0 : 1, allowed_iovas: big(SCRATCH) });
      return;
    }
    case "fault":
      ctx.faultQueueAlloc({ flags: 0 });
      return;
    case "dirty":
      ctx.hwptSetDirtyTracking({ flags: op.on ? 1 : 0, hwpt_id: op.hwpt });
      return;
  }
}

/** Calls whose failure may legitimately keep earlier progress (the kernel does the same). */
const PARTIAL = new Set(["unmap", "closeFd"]);

test("random iommufd call sequences: only IommuErrors, failing calls change nothing, close releases everything", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
      const env = setup();
      env.ctx.ioasAlloc({ flags: 0 });
      for (const op of ops) {
        const before = PARTIAL.has(op.k) ? null : snapshot(env);
        try {
          run(env, op);
        } catch (e) {
          if (!(e instanceof S.IommuError)) throw new Error(`${JSON.stringify(op)} threw a non-IommuError: ${String(e)}`);
          if (before) assert.deepEqual(snapshot(env), before, `failing ${op.k} changed state (${e.code})`);
        }
      }
      // the process exits: every fd closes, the context goes away, nothing stays pinned or charged
      const { host, p, ctx } = env;
      const pfns: number[] = [];
      for (let a = BUF; a < BUF + BUF_LEN; a += 4096) {
        const pfn = p.mm.peekPfn(a);
        if (pfn !== undefined) pfns.push(pfn);
      }
      const page = p.mm.peekPfn(PAGE4K);
      p.exit();
      assert.equal(ctx.released, true, "the context is released when its process exits");
      assert.equal(ctx.objects.size, 0);
      assert.equal(p.user.lockedVm, 0, "user locked_vm back to 0");
      for (const pfn of [...pfns, ...(page === undefined ? [] : [page])]) assert.equal(host.phys.pinCount(pfn), 0);
      assert.equal(host.phys.framesInUse, 0, "every frame freed once the process is gone");
    }),
    { seed: 0x5eed, numRuns: 150 },
  );
});
