/**
 * "A failing call changes nothing": every error path of the IOAS ioctls, run against one busy
 * context (two IOASes, a mock domain, copies, reserved and allowed ranges, pinned and lazy
 * mappings), must leave the snapshot (areas, reserved, allowed, alignment, IOVA_RANGES, domain
 * contents, pin counts, locked/pinned counters, objects) exactly as it was. The one documented
 * exception, IOAS_UNMAP's partial progress, is checked to match the kernel.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  addReserved,
  allow,
  BUF,
  copy,
  expectErrno,
  expectFailsUnchanged,
  FIXED,
  ioasAlloc,
  map,
  mockDomain,
  option,
  PAGE,
  PAGE4K,
  R,
  RW,
  S,
  SCRATCH,
  setup,
  snapshot,
  U64_MAX,
  UNMAPPED,
  writeRanges,
  type Env,
} from "./helpers.js";

interface Busy {
  env: Env;
  /** IOAS with a mock domain: areas at 0x1000000 (4 pages RW), 0x1004000 (PAGE4K, R), 0x1010000 (copy) */
  dom: number;
  /** IOAS without domain: reserved 0x10000+0x1000, allowed [0x100000,0x1fffff] and [0x400000,0x4fffff], lazy areas */
  nd: number;
  /** IOAS whose only allowed range is [0x10000, 0x10fff] */
  tiny: number;
  stdev: number;
  hwpt: number;
}

function busy(o: { rlimitMemlock?: number; rlimitMode?: 0 | 1 } = {}): Busy {
  const env = setup({ rlimitMemlock: o.rlimitMemlock ?? 64 * PAGE, rlimitMode: o.rlimitMode });
  const dom = ioasAlloc(env);
  const nd = ioasAlloc(env);
  const tiny = ioasAlloc(env);
  allow(env, tiny, [[0x10000, 0x10fff]]);
  const md = mockDomain(env, dom);
  map(env, dom, BUF, 4 * PAGE, 0x1000000);
  map(env, dom, PAGE4K, PAGE, 0x1004000, R);
  addReserved(env, nd, 0x10000, 0x1000);
  allow(env, nd, [
    [0x100000, 0x1fffff],
    [0x400000, 0x4fffff],
  ]);
  map(env, nd, BUF + 0x10000, 2 * PAGE, 0x20000);
  map(env, nd, UNMAPPED, PAGE, 0x30000);
  map(env, nd, BUF + 1, 3, null);
  copy(env, nd, dom, 0x1000000, 2 * PAGE, 0x40000);
  copy(env, dom, dom, 0x1001000, PAGE, 0x1010000);
  option(env, S.IOMMU_OPTION_HUGE_PAGES, S.IOMMU_OPTION_OP_SET, dom, 1n);
  return { env, dom, nd, tiny, stdev: md.stdev, hwpt: md.hwpt };
}

type Case = [name: string, errno: S.ErrnoName, call: (b: Busy) => unknown];

const cases: Case[] = [
  // IOAS_ALLOC / DESTROY
  ["IOAS_ALLOC flags", "EOPNOTSUPP", (b) => b.env.ctx.ioasAlloc({ flags: 2 })],
  ["DESTROY unknown id", "ENOENT", (b) => b.env.ctx.destroy({ id: 55 })],
  ["DESTROY IOAS with a domain", "EBUSY", (b) => b.env.ctx.destroy({ id: b.dom })],
  ["DESTROY attached HWPT", "EBUSY", (b) => b.env.ctx.destroy({ id: b.hwpt })],
  // IOVA_RANGES
  ["IOVA_RANGES __reserved", "EOPNOTSUPP", (b) => b.env.ctx.ioasIovaRanges({ ioas_id: b.nd, num_iovas: 4, __reserved: 1, allowed_iovas: BigInt(SCRATCH) })],
  ["IOVA_RANGES unknown IOAS", "ENOENT", (b) => b.env.ctx.ioasIovaRanges({ ioas_id: 55, num_iovas: 4, allowed_iovas: BigInt(SCRATCH) })],
  ["IOVA_RANGES bad pointer", "EFAULT", (b) => b.env.ctx.ioasIovaRanges({ ioas_id: b.nd, num_iovas: 4, allowed_iovas: 16n })],
  ["IOVA_RANGES too small", "EMSGSIZE", (b) => b.env.ctx.ioasIovaRanges({ ioas_id: b.nd, num_iovas: 1, allowed_iovas: BigInt(SCRATCH) })],
  // ALLOW_IOVAS
  ["ALLOW __reserved", "EOPNOTSUPP", (b) => (writeRanges(b.env, SCRATCH, [[0x1000, 0x1fff]]), b.env.ctx.ioasAllowIovas({ ioas_id: b.nd, num_iovas: 1, __reserved: 1, allowed_iovas: BigInt(SCRATCH) }))],
  ["ALLOW unknown IOAS", "ENOENT", (b) => b.env.ctx.ioasAllowIovas({ ioas_id: 55, num_iovas: 0, allowed_iovas: 0n })],
  ["ALLOW bad pointer", "EFAULT", (b) => b.env.ctx.ioasAllowIovas({ ioas_id: b.nd, num_iovas: 1, allowed_iovas: 16n })],
  ["ALLOW start == last", "EINVAL", (b) => allow(b.env, b.nd, [[0x5000, 0x5000]])],
  ["ALLOW second range start > last", "EINVAL", (b) => allow(b.env, b.nd, [[0x5000, 0x5fff], [0x7000, 0x6000]])],
  ["ALLOW overlapping ranges", "EINVAL", (b) => allow(b.env, b.nd, [[0x5000, 0x6fff], [0x6000, 0x7fff]])],
  ["ALLOW over a reserved range", "EADDRINUSE", (b) => allow(b.env, b.nd, [[0x1000, 0x10000]])],
  ["ALLOW outside the domain aperture", "EADDRINUSE", (b) => allow(b.env, b.dom, [[0x1000000, 0x80000000]])],
  // ADD_RESERVED
  ["ADD_RESERVED length 0", "EINVAL", (b) => addReserved(b.env, b.nd, 0x90000, 0)],
  ["ADD_RESERVED overflow", "EOVERFLOW", (b) => addReserved(b.env, b.nd, U64_MAX, 2)],
  ["ADD_RESERVED unknown IOAS", "ENOENT", (b) => addReserved(b.env, 55, 0x90000, 0x1000)],
  ["ADD_RESERVED over an area", "EADDRINUSE", (b) => addReserved(b.env, b.nd, 0x21000, 1)],
  ["ADD_RESERVED over a lazy area", "EADDRINUSE", (b) => addReserved(b.env, b.nd, 0x30000, 0x10000)],
  ["ADD_RESERVED in an allowed range", "EADDRINUSE", (b) => addReserved(b.env, b.nd, 0x1ff000, 0x2000)],
  ["ADD_RESERVED over a domain area", "EADDRINUSE", (b) => addReserved(b.env, b.dom, 0x1004000, 0x1000)],
  // MAP
  ["MAP unknown flag", "EOPNOTSUPP", (b) => map(b.env, b.nd, BUF, PAGE, 0x90000, RW | 16)],
  ["MAP __reserved", "EOPNOTSUPP", (b) => b.env.ctx.ioasMap({ flags: RW | FIXED, ioas_id: b.nd, __reserved: 1, user_va: BigInt(BUF), length: 4096n, iova: 0x90000n })],
  ["MAP iova U64_MAX", "EOVERFLOW", (b) => map(b.env, b.nd, BUF, PAGE, U64_MAX)],
  ["MAP length U64_MAX", "EOVERFLOW", (b) => map(b.env, b.nd, BUF, U64_MAX, 0x90000)],
  ["MAP no READ/WRITE", "EINVAL", (b) => map(b.env, b.nd, BUF, PAGE, 0x90000, 0)],
  ["MAP unknown IOAS", "ENOENT", (b) => map(b.env, 55, BUF, PAGE, 0x90000)],
  ["MAP length 0", "EINVAL", (b) => map(b.env, b.nd, BUF, 0, 0x90000)],
  ["MAP huge length", "EINVAL", (b) => map(b.env, b.nd, BUF, U64_MAX - 1n, 0x90000)],
  ["MAP user_va overflow", "EOVERFLOW", (b) => map(b.env, b.nd, U64_MAX - 0xfffn, 0x2000, 0x90000)],
  ["MAP iova overflow", "EOVERFLOW", (b) => map(b.env, b.nd, BUF, 0x2000, U64_MAX - 0xfffn)],
  ["MAP over reserved", "EINVAL", (b) => map(b.env, b.nd, BUF, PAGE, 0x10000)],
  ["MAP over an area", "EEXIST", (b) => map(b.env, b.nd, BUF, PAGE, 0x21000)],
  ["MAP over a copied area", "EEXIST", (b) => map(b.env, b.nd, BUF, 2 * PAGE, 0x3f000)],
  ["MAP misaligned iova (domain)", "EINVAL", (b) => map(b.env, b.dom, BUF, PAGE, 0x1020400)],
  ["MAP misaligned length (domain)", "EINVAL", (b) => map(b.env, b.dom, BUF, 0x400, 0x1020000)],
  ["MAP misaligned VA (domain)", "EINVAL", (b) => map(b.env, b.dom, BUF + 0x400, 0x800, 0x1020800)],
  ["MAP outside the aperture", "EINVAL", (b) => map(b.env, b.dom, BUF, PAGE, 0x90000)],
  ["MAP auto below the alignment", "EINVAL", (b) => map(b.env, b.dom, BUF + 1, 1, null)],
  ["MAP auto too long", "EOVERFLOW", (b) => map(b.env, b.nd, BUF, 1n << 63n, null)],
  ["MAP auto no room in allowed", "ENOSPC", (b) => map(b.env, b.nd, BUF, 0x200000, null)],
  ["MAP auto no room in a tiny allowed range", "ENOSPC", (b) => map(b.env, b.tiny, BUF, 2 * PAGE, null)],
  ["MAP unmapped memory (domain)", "EFAULT", (b) => map(b.env, b.dom, UNMAPPED, PAGE, null)],
  ["MAP partly unmapped memory (domain)", "EFAULT", (b) => map(b.env, b.dom, BUF + 6 * 1024 * 1024 - PAGE, 2 * PAGE, null)],
  ["MAP over RLIMIT_MEMLOCK", "ENOMEM", (b) => map(b.env, b.dom, BUF + 0x100000, 64 * PAGE, null)],
  // COPY
  ["COPY unknown flag", "EOPNOTSUPP", (b) => copy(b.env, b.nd, b.dom, 0x1000000, PAGE, 0x90000, RW | 32)],
  ["COPY length U64_MAX", "EOVERFLOW", (b) => copy(b.env, b.nd, b.dom, 0x1000000, U64_MAX, 0x90000)],
  ["COPY src_iova U64_MAX", "EOVERFLOW", (b) => copy(b.env, b.nd, b.dom, U64_MAX, PAGE, 0x90000)],
  ["COPY dst_iova U64_MAX", "EOVERFLOW", (b) => copy(b.env, b.nd, b.dom, 0x1000000, PAGE, U64_MAX)],
  ["COPY no READ/WRITE", "EINVAL", (b) => copy(b.env, b.nd, b.dom, 0x1000000, PAGE, 0x90000, 0)],
  ["COPY unknown source", "ENOENT", (b) => copy(b.env, b.nd, 55, 0x1000000, PAGE, 0x90000)],
  ["COPY length 0", "EINVAL", (b) => copy(b.env, b.nd, b.dom, 0x1000000, 0, 0x90000)],
  ["COPY src range overflow", "EOVERFLOW", (b) => copy(b.env, b.nd, b.dom, U64_MAX - 0xfn, 0x20, 0x90000)],
  ["COPY hole in source", "ENOENT", (b) => copy(b.env, b.nd, b.dom, 0x1003000, 3 * PAGE, 0x90000)],
  ["COPY unknown destination", "ENOENT", (b) => copy(b.env, 55, b.dom, 0x1000000, PAGE, 0x90000)],
  ["COPY writeable from read-only", "EPERM", (b) => copy(b.env, b.nd, b.dom, 0x1004000, PAGE, 0x90000, RW)],
  ["COPY onto an area", "EEXIST", (b) => copy(b.env, b.nd, b.dom, 0x1000000, PAGE, 0x20000)],
  ["COPY onto reserved", "EINVAL", (b) => copy(b.env, b.nd, b.dom, 0x1000000, PAGE, 0x10000)],
  ["COPY outside the aperture", "EINVAL", (b) => copy(b.env, b.dom, b.nd, 0x20000, PAGE, 0x90000)],
  ["COPY lazy unmapped memory into a domain", "EFAULT", (b) => copy(b.env, b.dom, b.nd, 0x30000, PAGE, null)],
  ["COPY byte area into a domain", "EINVAL", (b) => copy(b.env, b.dom, b.nd, 0x100001, 3, null)],
  ["COPY auto no room", "ENOSPC", (b) => copy(b.env, b.tiny, b.dom, 0x1000000, 2 * PAGE, null)],
  // UNMAP (failures that remove nothing)
  ["UNMAP unknown IOAS", "ENOENT", (b) => b.env.ctx.ioasUnmap({ ioas_id: 55, iova: 0n, length: U64_MAX })],
  ["UNMAP iova U64_MAX", "EOVERFLOW", (b) => b.env.ctx.ioasUnmap({ ioas_id: b.nd, iova: U64_MAX, length: 1n })],
  ["UNMAP length U64_MAX", "EOVERFLOW", (b) => b.env.ctx.ioasUnmap({ ioas_id: b.nd, iova: 1n, length: U64_MAX })],
  ["UNMAP range overflow", "EOVERFLOW", (b) => b.env.ctx.ioasUnmap({ ioas_id: b.nd, iova: U64_MAX - 1n, length: 3n })],
  ["UNMAP length 0", "EINVAL", (b) => b.env.ctx.ioasUnmap({ ioas_id: b.nd, iova: 0x20000n, length: 0n })],
  ["UNMAP nothing there", "ENOENT", (b) => b.env.ctx.ioasUnmap({ ioas_id: b.nd, iova: 0x90000n, length: 0x1000n })],
  ["UNMAP splitting the first area", "ENOENT", (b) => b.env.ctx.ioasUnmap({ ioas_id: b.nd, iova: 0x21000n, length: 0x100000n })],
  ["UNMAP splitting a domain area", "ENOENT", (b) => b.env.ctx.ioasUnmap({ ioas_id: b.dom, iova: 0x1000000n, length: 0x1000n })],
  // OPTION
  ["OPTION __reserved", "EOPNOTSUPP", (b) => b.env.ctx.option({ option_id: 0, op: 1, __reserved: 1, object_id: 0, val64: 0n })],
  ["OPTION unknown option", "EOPNOTSUPP", (b) => option(b.env, 9, 1, 0)],
  ["OPTION RLIMIT object_id", "EOPNOTSUPP", (b) => option(b.env, 0, 1, b.nd)],
  ["OPTION RLIMIT unknown op", "EOPNOTSUPP", (b) => option(b.env, 0, 7, 0)],
  ["OPTION RLIMIT with objects", "EBUSY", (b) => option(b.env, 0, 0, 0, 1n)],
  ["OPTION HUGE_PAGES unknown IOAS", "ENOENT", (b) => option(b.env, 1, 0, 55, 0n)],
  ["OPTION HUGE_PAGES value 2", "EINVAL", (b) => option(b.env, 1, 0, b.nd, 2n)],
  ["OPTION HUGE_PAGES unknown op", "EOPNOTSUPP", (b) => option(b.env, 1, 3, b.nd)],
  ["OPTION HUGE_PAGES=0 misaligned area", "EADDRINUSE", (b) => option(b.env, 1, 0, b.nd, 0n)],
  ["OPTION HUGE_PAGES=0 domain with areas", "EINVAL", (b) => option(b.env, 1, 0, b.dom, 0n)],
  // attach (MOCK_DOMAIN) on the no-domain IOAS: areas outside the aperture
  ["MOCK_DOMAIN with areas outside the aperture", "EADDRINUSE", (b) => mockDomain(b.env, b.nd)],
  ["MOCK_DOMAIN unknown id", "ENOENT", (b) => mockDomain(b.env, 55)],
  // CHANGE_PROCESS
  ["CHANGE_PROCESS __reserved", "EOPNOTSUPP", (b) => b.env.ctx.ioasChangeProcess({ __reserved: 1 })],
  ["CHANGE_PROCESS with VA maps", "EINVAL", (b) => b.env.ctx.as(b.env.p.fork(), () => b.env.ctx.ioasChangeProcess({}))],
];

for (const [name, errno, call] of cases) {
  test(`a failing call changes nothing: ${name} -> ${errno}`, () => {
    const b = busy();
    expectFailsUnchanged(b.env, () => call(b), errno, name);
  });
}

test("a failing call changes nothing in mm accounting mode either (ENOMEM on MAP, COPY and attach)", () => {
  const b = busy({ rlimitMode: 1, rlimitMemlock: 8 * PAGE });
  const { env } = b;
  assert.equal(env.p.mm.lockedVm, 5);
  expectFailsUnchanged(env, () => map(env, b.dom, BUF + 0x100000, 4 * PAGE, null), "ENOMEM");
  const third = ioasAlloc(env);
  map(env, third, BUF + 0x200000, 8 * PAGE, 0x1000000);
  expectFailsUnchanged(env, () => mockDomain(env, third), "ENOMEM");
  expectFailsUnchanged(env, () => copy(env, b.dom, third, 0x1000000, 8 * PAGE, null), "ENOMEM");
});

test("the documented exception: IOAS_UNMAP keeps the areas it removed before failing, as the kernel does", () => {
  // oracle Q1/Q1d/P4: the areas fully inside the range before the offending one are gone
  const b = busy();
  const { env } = b;
  map(env, b.nd, BUF, 2 * PAGE, 0x23000);
  const before = snapshot(env) as { ioas: Array<{ areas: Array<{ start: bigint }> }> };
  const e = expectErrno(() => env.ctx.ioasUnmap({ ioas_id: b.nd, iova: 0x20000n, length: 0x4000n }), "ENOENT");
  assert.equal((e as { unmapped?: bigint }).unmapped, 0x2000n);
  const after = snapshot(env) as typeof before;
  const starts = (s: typeof before, i: number): bigint[] => s.ioas[i].areas.map((a) => a.start);
  assert.deepEqual(
    starts(after, 1),
    starts(before, 1).filter((s) => s !== 0x20000n),
    "only the fully covered area before the split point was removed",
  );
  assert.deepEqual(after.ioas[0], before.ioas[0], "the other IOAS is untouched");
});
