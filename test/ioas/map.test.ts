/**
 * IOMMU_IOAS_MAP (fixed and automatic IOVA) and IOMMU_IOAS_MAP_FILE
 * (oracle: probe-6.12-rules Q2/Q3/Q11, probe-ioas P2/P5/P6/P7/P12).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  addReserved,
  allow,
  BUF,
  checkRefs,
  destroy,
  expectErrno,
  expectFailsUnchanged,
  FIXED,
  hex,
  ioasAlloc,
  iovaRanges,
  map,
  mockDomain,
  PAGE4K,
  R,
  refsOf,
  RW,
  S,
  setup,
  U64_MAX,
  unmapAll,
  UNMAPPED,
  W,
  type Env,
} from "./helpers.js";

const mapCmd = (ioas: number, o: Partial<S.IommuIoasMap>): S.IommuIoasMap => ({ flags: RW | FIXED, ioas_id: ioas, user_va: BigInt(BUF), length: 0x1000n, iova: 0x1000n, ...o });

// ------------------------------------------------------------------ automatic IOVA (measured on the oracle)

function autoSeq(env: Env, ioas: number, uva: number): string[] {
  return [0x1000, 0x3000, 0x1000, 0x200000].map((len) => hex(map(env, ioas, uva, len, null)));
}

test("automatic IOVA without a domain: lowest hole, aligned to min(roundup_pow2(len), lowest bit of the VA)", () => {
  // oracle Q2a/Q2b/Q2e
  const cases: Array<[number, string[]]> = [
    [BUF, ["0x1000", "0x4000", "0x2000", "0x200000"]],
    [BUF + 0x1000, ["0x1000", "0x2000", "0x5000", "0x6000"]],
    [BUF + 0x10000, ["0x1000", "0x4000", "0x2000", "0x10000"]],
  ];
  for (const [uva, want] of cases) {
    const env = setup();
    assert.deepEqual(autoSeq(env, ioasAlloc(env), uva), want, `uva ${hex(uva)}`);
  }
});

test("automatic IOVA with a mock domain starts at the aperture", () => {
  // oracle Q2c/Q2d
  const cases: Array<[number, string[]]> = [
    [BUF, ["0x1000000", "0x1004000", "0x1001000", "0x1200000"]],
    [BUF + 0x1000, ["0x1000000", "0x1001000", "0x1004000", "0x1005000"]],
  ];
  for (const [uva, want] of cases) {
    const env = setup();
    const ioas = ioasAlloc(env);
    mockDomain(env, ioas);
    assert.deepEqual(autoSeq(env, ioas, uva), want, `uva ${hex(uva)}`);
  }
});

test("automatic IOVA keeps the VA's offset in the page, searching from the aligned start of the allowed span", () => {
  // oracle Q3a-c: len 1 at buf+1 -> 0x1001; len 3 at buf+5 -> 0x1005 (fresh) and 0x1005 next to the 0x1001 area
  const env = setup();
  const a = ioasAlloc(env);
  assert.equal(map(env, a, BUF + 1, 1, null), 0x1001n);
  const b = ioasAlloc(env);
  assert.equal(map(env, b, BUF + 5, 3, null), 0x1005n);
  assert.equal(map(env, a, BUF + 5, 3, null), 0x1005n);
  assert.deepEqual(iovaRanges(env, a), { num: 1, align: 1n, ranges: [[0n, U64_MAX]] });
});

test("automatic IOVA below the IOAS alignment returns EINVAL", () => {
  // oracle Q3e/Q3f: with a mock domain (alignment 2048) byte-granular maps fail
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  expectFailsUnchanged(env, () => map(env, ioas, BUF + 1, 1, null), "EINVAL");
  expectFailsUnchanged(env, () => map(env, ioas, BUF + 5, 3, null), "EINVAL");
  // the VA's lowest bit 0x400 is below 0x800 even though the length is aligned
  expectFailsUnchanged(env, () => map(env, ioas, BUF + 0x400, 0x800, null), "EINVAL");
});

test("automatic IOVA with sub-page offsets inside the mock aperture", () => {
  // oracle P7: after a fixed 0x800 map at 0x1000800, auto 0x800 from page+0x800 lands at 0x1001800
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  map(env, ioas, PAGE4K + 0x800, 0x800, 0x1000800);
  assert.equal(map(env, ioas, PAGE4K + 0x800, 0x800, null), 0x1001800n);
  assert.equal(refsOf(env, PAGE4K), 2, "two MAPs of the same page pin it twice");
});

test("automatic IOVA avoids reserved ranges and mappings", () => {
  // oracle P12: reserved 0x10000+0x1000, areas at 0x11000, 0x20000, 0x21000 -> 64K lands at 0x30000, 4K at 0x1000
  const env = setup();
  const ioas = ioasAlloc(env);
  addReserved(env, ioas, 0x10000, 0x1000);
  map(env, ioas, BUF, 0x1000, 0x20000);
  map(env, ioas, BUF, 0x1000, 0x21000);
  map(env, ioas, BUF, 0x1000, 0x11000);
  assert.equal(map(env, ioas, BUF, 0x10000, null), 0x30000n);
  assert.equal(map(env, ioas, BUF, 0x1000, null), 0x1000n);
});

test("automatic IOVA only picks from the allowed ranges; ENOSPC when nothing fits", () => {
  // oracle P6
  const env = setup();
  const ioas = ioasAlloc(env);
  allow(env, ioas, [[0x10000, 0x10fff]]);
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x2000, null), "ENOSPC");
  assert.equal(map(env, ioas, BUF, 0x1000, null), 0x10000n);
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x1000, null), "ENOSPC");
  assert.equal(map(env, ioas, BUF, 0x1000, 0x50000), 0x50000n, "a fixed IOVA ignores the allowed ranges");
  allow(env, ioas, [
    [0x0, 0xfff],
    [0x40000, 0x7ffff],
  ]);
  assert.equal(map(env, ioas, BUF, 0x1000, null), 0x40000n, "IOVAs below PAGE_SIZE are never picked");
  assert.equal(map(env, ioas, BUF + 0x1000, 0x3000, null), 0x41000n);
});

test("automatic IOVA: adjacent allowed ranges merge into one span; alignment can still leave no room", () => {
  // oracle P13a/P13i
  const env = setup();
  const ioas = ioasAlloc(env);
  allow(env, ioas, [
    [0x1000, 0x1fff],
    [0x2000, 0x2fff],
  ]);
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x2000, null), "ENOSPC", "aligned to 0x2000 only 0x1000 is left");
  assert.equal(map(env, ioas, BUF + 0x1000, 0x2000, null), 0x1000n);
});

test("automatic IOVA: allowed ranges are clipped to [PAGE_SIZE, ULONG_MAX - PAGE_SIZE]", () => {
  // oracle P13f/P13g
  const env = setup();
  const low = ioasAlloc(env);
  allow(env, low, [[0, 0x2fff]]);
  assert.equal(map(env, low, BUF, 0x1000, null), 0x1000n);
  expectFailsUnchanged(env, () => map(env, low, BUF, 0x2000, null), "ENOSPC");
  const top = ioasAlloc(env);
  allow(env, top, [[U64_MAX - 0x10000n, U64_MAX]]);
  assert.equal(map(env, top, BUF, 0x1000, null), U64_MAX - 0xffffn);
  expectFailsUnchanged(env, () => map(env, top, BUF, 0x10000, null), "ENOSPC");
  assert.equal(map(env, top, BUF + 0x3000, 0x3000, null), U64_MAX - 0xefffn);
});

test("automatic IOVA: the page offset is OR'ed into the aligned hole start", () => {
  // oracle P13b/c/e: reserved 0x5000+0x1000, area 0x1000+0x800
  const env = setup();
  const ioas = ioasAlloc(env);
  addReserved(env, ioas, 0x5000, 0x1000);
  map(env, ioas, BUF, 0x800, 0x1000);
  assert.equal(map(env, ioas, BUF + 0x800, 0x800, null), 0x1800n);
  assert.equal(map(env, ioas, BUF + 0x1001, 0x1000, null), 0x2001n);
  assert.equal(map(env, ioas, BUF + 0x1001, 0x1000, null), 0x3001n);
  assert.equal(map(env, ioas, BUF + 0x6000, 0x3000, null), 0x6000n);
});

test("automatic IOVA of length >= ULONG_MAX/2 returns EOVERFLOW; just below that fits", () => {
  // oracle P5
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => map(env, ioas, 0x1000, 1n << 63n, null), "EOVERFLOW");
  assert.equal(map(env, ioas, 0x1000, (1n << 63n) - 0x1000n, null), 0x1000n);
});

test("automatic IOVA never returns IOVA 0 but a fixed map at IOVA 0 is fine", () => {
  // oracle P5 "fixed iova 0"
  const env = setup();
  const ioas = ioasAlloc(env);
  assert.equal(map(env, ioas, BUF, 0x1000, 0), 0n);
  assert.equal(map(env, ioas, BUF, 0x1000, null), 0x1000n);
});

test("automatic IOVA writes the chosen IOVA back", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const out = env.ctx.ioasMap({ flags: RW, ioas_id: ioas, user_va: BigInt(BUF), length: 0x1000n, iova: 0xdead000n });
  assert.equal(out.iova, 0x1000n, "the input iova is ignored without FIXED_IOVA");
});

// ------------------------------------------------------------------ fixed IOVA

test("IOAS_MAP over an existing mapping returns EEXIST", () => {
  // oracle P12
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 0x1000, 0x20000);
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x2, 0x20fff), "EEXIST", "overlapping the last byte");
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x1000, 0x20000), "EEXIST", "exactly the same range");
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x3000, 0x1f000), "EEXIST", "covering the area");
  map(env, ioas, BUF, 0x1000, 0x21000);
  map(env, ioas, BUF, 0x1000, 0x1f000);
});

test("IOAS_MAP over a reserved range returns EINVAL (even when it also overlaps a mapping)", () => {
  // oracle P12
  const env = setup();
  const ioas = ioasAlloc(env);
  addReserved(env, ioas, 0x10000, 0x1000);
  map(env, ioas, BUF, 0x1000, 0x20000);
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x12000, 0xf000), "EINVAL", "reserved + area");
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x100, 0x10800), "EINVAL", "inside reserved");
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x2, 0xffff), "EINVAL", "touching the first reserved byte");
  map(env, ioas, BUF, 0x1000, 0x11000);
});

test("IOAS_MAP outside a mock domain's aperture returns EINVAL", () => {
  // oracle P7
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  expectFailsUnchanged(env, () => map(env, ioas, PAGE4K, 0x1000, 0x100000), "EINVAL");
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x2000, 0x7ffff000), "EINVAL", "crossing the aperture end");
});

test("IOAS_MAP misaligned to the IOAS alignment returns EINVAL (iova, length, or the VA's page offset)", () => {
  // oracle P7: mock domain alignment is 2048
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  map(env, ioas, PAGE4K + 0x800, 0x800, 0x1000800);
  expectFailsUnchanged(env, () => map(env, ioas, PAGE4K + 0x400, 0x800, 0x1002800), "EINVAL", "VA page offset 0x400");
  expectFailsUnchanged(env, () => map(env, ioas, PAGE4K, 0x400, 0x1003000), "EINVAL", "length 0x400");
  expectFailsUnchanged(env, () => map(env, ioas, PAGE4K, 0x800, 0x1004400), "EINVAL", "iova 0x400");
});

test("IOAS_MAP with length 0 returns EINVAL (fixed and automatic)", () => {
  // oracle P5
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0, 0x1000), "EINVAL");
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0, null), "EINVAL");
});

test("IOAS_MAP EOVERFLOW: iova or length >= ULONG_MAX, user_va + length or iova + length past 2^64", () => {
  // oracle P5
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => map(env, ioas, BUF, U64_MAX, 0x1000), "EOVERFLOW", "length U64_MAX");
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x1000, U64_MAX), "EOVERFLOW", "iova U64_MAX");
  expectFailsUnchanged(env, () => env.ctx.ioasMap(mapCmd(ioas, { flags: RW, iova: U64_MAX })), "EOVERFLOW", "iova U64_MAX, automatic");
  expectFailsUnchanged(env, () => map(env, ioas, U64_MAX - 0xfffn, 0x2000, 0x1000), "EOVERFLOW", "user_va + length");
  expectFailsUnchanged(env, () => map(env, ioas, BUF, 0x2000, U64_MAX - 0xfffn), "EOVERFLOW", "iova + length");
  assert.equal(map(env, ioas, BUF, 0x1000, U64_MAX - 0xfffn), U64_MAX - 0xfffn, "ending exactly at U64_MAX is fine");
});

test("IOAS_MAP with a length above SIZE_MAX - PAGE_SIZE returns EINVAL", () => {
  // oracle P5: length U64_MAX-1 -> EINVAL (the pages object refuses it)
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => map(env, ioas, BUF, U64_MAX - 1n, 0x1000), "EINVAL");
});

test("IOAS_MAP flag and field checks: unknown flags or __reserved EOPNOTSUPP, no READ/WRITE EINVAL, unknown IOAS ENOENT", () => {
  // oracle P5 (including the order: a bad IOAS ID wins over length 0, but not over missing R/W)
  const env = setup();
  const ioas = ioasAlloc(env);
  expectFailsUnchanged(env, () => env.ctx.ioasMap(mapCmd(ioas, { flags: RW | 8 })), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => env.ctx.ioasMap(mapCmd(ioas, { __reserved: 1 })), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => env.ctx.ioasMap(mapCmd(ioas, { flags: FIXED })), "EINVAL");
  expectFailsUnchanged(env, () => env.ctx.ioasMap(mapCmd(99, {})), "ENOENT");
  expectFailsUnchanged(env, () => env.ctx.ioasMap(mapCmd(99, { length: 0n })), "ENOENT");
  expectFailsUnchanged(env, () => env.ctx.ioasMap(mapCmd(99, { flags: FIXED })), "EINVAL");
  expectFailsUnchanged(env, () => env.ctx.ioasMap(mapCmd(ioas, { flags: RW | 8, length: 0n, iova: U64_MAX })), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => env.ctx.ioasMap(mapCmd(ioas, { flags: FIXED, iova: U64_MAX })), "EOVERFLOW");
});

test("IOAS_MAP READABLE-only and WRITEABLE-only maps are accepted", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  map(env, ioas, BUF, 0x1000, 0x1000000, R);
  map(env, ioas, BUF, 0x1000, 0x1001000, W);
});

// ------------------------------------------------------------------ lazy pinning and EFAULT

test("IOAS_MAP of unmapped user memory succeeds without a domain (pages are pinned lazily)", () => {
  // oracle P2: uva 1<<31 with no domain -> ok, iova 0x1000
  const env = setup();
  const ioas = ioasAlloc(env);
  assert.equal(map(env, ioas, UNMAPPED, 0x1000, null), 0x1000n);
  assert.equal(map(env, ioas, U64_MAX - 0x1fffn, 0x1000, 0x100000), 0x100000n, "even above TASK_SIZE");
  assert.equal(env.p.user.lockedVm, 0);
  assert.equal(env.p.mm.pinnedVm, 0);
});

test("IOAS_MAP of unmapped user memory with a domain attached returns EFAULT and pins nothing", () => {
  // oracle P2: 1<<31 -> EFAULT; half-unmapped buffer -> EFAULT with refs 0 on the mapped half
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  expectFailsUnchanged(env, () => map(env, ioas, UNMAPPED, 0x1000, null), "EFAULT");
  const b = env.p.mmap(0x4000);
  env.p.write(b, new Uint8Array(0x4000).fill(1));
  env.p.munmap(b + 0x2000, 0x2000);
  expectFailsUnchanged(env, () => map(env, ioas, b, 0x4000, null), "EFAULT");
  assert.equal(refsOf(env, b), 0);
  map(env, ioas, b, 0x2000, 0x1000000);
  assert.equal(refsOf(env, b), 1);
});

test("IOAS_MAP WRITEABLE of read-only memory with a domain returns EFAULT; READABLE-only is fine", () => {
  // oracle P2
  const env = setup();
  const ioas = ioasAlloc(env);
  const ro = env.p.mmap(0x1000, { prot: S.PROT_READ });
  const nd = ioasAlloc(env);
  map(env, nd, ro, 0x1000, null, RW);
  mockDomain(env, ioas);
  expectFailsUnchanged(env, () => map(env, ioas, ro, 0x1000, null, RW), "EFAULT");
  map(env, ioas, ro, 0x1000, null, R);
});

test("attaching a domain pins the lazily mapped pages; unmapped memory makes the attach fail EFAULT", () => {
  // oracle P12
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, UNMAPPED, 0x1000, 0x1000000);
  expectFailsUnchanged(env, () => mockDomain(env, ioas), "EFAULT");
  unmapAll(env, ioas);
  map(env, ioas, PAGE4K, 0x1000, 0x1000000);
  assert.equal(refsOf(env, PAGE4K), 0, "no domain: nothing pinned");
  const md = mockDomain(env, ioas);
  assert.equal(refsOf(env, PAGE4K), 1);
  destroy(env, md.stdev);
  assert.equal(refsOf(env, PAGE4K), 0, "the last domain going away unpins");
});

test("attaching a domain with a mapping outside its aperture or misaligned to it returns EADDRINUSE", () => {
  // oracle P2 (area at 0x1000 outside the aperture), P3 (0x800-aligned area vs 4K), P10
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, UNMAPPED, 0x1000, null);
  expectFailsUnchanged(env, () => mockDomain(env, ioas), "EADDRINUSE");
  unmapAll(env, ioas);
  map(env, ioas, BUF + 1, 1, 0x1000001);
  expectFailsUnchanged(env, () => mockDomain(env, ioas), "EADDRINUSE", "area not 2048-aligned");
});

test("MD_CHECK_REFS: one pin per MAP while a domain is attached; none without a domain", () => {
  // oracle Q11 / Q11x
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  checkRefs(env, PAGE4K, 0x1000, 0);
  expectErrno(() => checkRefs(env, PAGE4K, 0x1000, 1), "EIO");
  assert.equal(map(env, ioas, PAGE4K, 0x1000, null), 0x1000000n);
  checkRefs(env, PAGE4K, 0x1000, 1);
  expectErrno(() => checkRefs(env, PAGE4K, 0x1000, 0), "EIO");
  assert.equal(map(env, ioas, PAGE4K, 0x1000, null), 0x1001000n);
  checkRefs(env, PAGE4K, 0x1000, 2);
  const env2 = setup();
  const nd = ioasAlloc(env2);
  map(env2, nd, PAGE4K, 0x1000, null);
  map(env2, nd, PAGE4K, 0x1000, null);
  checkRefs(env2, PAGE4K, 0x1000, 0);
});

test("MD_CHECK_REFS with a misaligned pointer or length returns EINVAL", () => {
  const env = setup();
  expectErrno(() => checkRefs(env, PAGE4K + 1, 0x1000, 0), "EINVAL");
  expectErrno(() => checkRefs(env, PAGE4K, 0x800, 0), "EINVAL");
});

test("two domains on one IOAS still pin each page once", () => {
  // oracle P11
  const env = setup();
  const ioas = ioasAlloc(env);
  const a = mockDomain(env, ioas);
  const b = mockDomain(env, ioas);
  map(env, ioas, PAGE4K, 0x1000, null);
  assert.equal(refsOf(env, PAGE4K), 1);
  destroy(env, a.stdev);
  assert.equal(refsOf(env, PAGE4K), 1);
  destroy(env, b.stdev);
  assert.equal(refsOf(env, PAGE4K), 0);
  mockDomain(env, ioas);
  assert.equal(refsOf(env, PAGE4K), 1);
});

test("MD_CHECK_MAP: the domain maps the IOVA to the page behind the user VA", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const md = mockDomain(env, ioas);
  const iova = map(env, ioas, BUF + 0x3000, 0x5000, null);
  env.ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_MAP, id: md.hwpt, iova, length: 0x5000n, uptr: BigInt(BUF + 0x3000) });
  expectErrno(() => env.ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_MAP, id: md.hwpt, iova, length: 0x1000n, uptr: BigInt(BUF) }), "EINVAL");
});

// ------------------------------------------------------------------ MAP_FILE

function withMemfd(env: Env, size: number): { fd: number; file: S.MemFile } {
  const file = env.p.memfdCreate("test");
  file.truncate(size);
  const fd = 42;
  env.ctx.memfdResolver = (_p, n) => (n === fd ? file : undefined);
  return { fd, file };
}

const mapFile = (env: Env, ioas: number, fd: number, start: number | bigint, length: number | bigint, iova: number | bigint | null, flags = RW): bigint =>
  env.ctx.ioasMapFile({ flags: flags | (iova === null ? 0 : FIXED), ioas_id: ioas, fd, start: BigInt(start), length: BigInt(length), iova: iova === null ? 0n : BigInt(iova) }).iova;

test("IOAS_MAP_FILE maps a memfd range; the domain points at the file's pages", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const md = mockDomain(env, ioas);
  const { fd, file } = withMemfd(env, 0x10000);
  assert.equal(mapFile(env, ioas, fd, 0x2000, 0x4000, null), 0x1000000n);
  const dom = env.ctx.getHwptPaging(md.hwpt).domain;
  assert.equal(dom.iovaToPhys(0x1000000 / 2048), file.pageAt(2) * 4096);
  assert.equal(dom.iovaToPhys((0x1000000 + 0x3800) / 2048), file.pageAt(5) * 4096 + 0x800);
  assert.equal(env.p.user.lockedVm, 4);
  unmapAll(env, ioas);
  assert.equal(env.p.user.lockedVm, 0);
});

test("IOAS_MAP_FILE beyond the end of the file returns EINVAL when pages are pinned", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  const { fd } = withMemfd(env, 0x4000);
  expectFailsUnchanged(env, () => mapFile(env, ioas, fd, 0x2000, 0x4000, null), "EINVAL");
  expectFailsUnchanged(env, () => mapFile(env, ioas, fd, 0x4000, 0x1000, null), "EINVAL");
  mapFile(env, ioas, fd, 0, 0x4000, null);
});

test("IOAS_MAP_FILE cannot pin a partial last page of the file (memfd_pin_folios pins whole pages inside i_size)", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  const { fd } = withMemfd(env, 0x3800);
  expectFailsUnchanged(env, () => mapFile(env, ioas, fd, 0x3000, 0x800, null), "EINVAL");
  mapFile(env, ioas, fd, 0, 0x3000, null);
});

test("IOAS_MAP_FILE of a memfd truncated to 0 returns EINVAL when pages are pinned", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  const { fd, file } = withMemfd(env, 0x4000);
  mapFile(env, ioas, fd, 0, 0x4000, null);
  file.truncate(0);
  expectFailsUnchanged(env, () => mapFile(env, ioas, fd, 0, 0x1000, null), "EINVAL");
});

test("IOAS_MAP_FILE is lazy like IOAS_MAP: beyond EOF succeeds until a domain needs the pages", () => {
  // iopt_alloc_file_pages has no size check; memfd_pin_folios refuses pages past i_size at pin time
  const env = setup();
  const ioas = ioasAlloc(env);
  const { fd } = withMemfd(env, 0x1000);
  mapFile(env, ioas, fd, 0, 0x4000, 0x1000000);
  expectFailsUnchanged(env, () => mockDomain(env, ioas), "EINVAL");
});

test("IOAS_MAP_FILE argument checks: flags, overflow, R/W, IOAS, length 0, bad fd", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  const { fd } = withMemfd(env, 0x4000);
  expectFailsUnchanged(env, () => mapFile(env, ioas, fd, 0, 0x1000, null, RW | 8), "EOPNOTSUPP");
  expectFailsUnchanged(env, () => mapFile(env, ioas, fd, 0, U64_MAX, null), "EOVERFLOW");
  expectFailsUnchanged(env, () => mapFile(env, ioas, fd, 0, 0x1000, U64_MAX), "EOVERFLOW");
  expectFailsUnchanged(env, () => mapFile(env, ioas, fd, 0, 0x1000, null, 0), "EINVAL");
  expectFailsUnchanged(env, () => mapFile(env, 99, fd, 0, 0x1000, null), "ENOENT");
  expectFailsUnchanged(env, () => mapFile(env, ioas, fd, 0, 0, null), "EINVAL");
  expectFailsUnchanged(env, () => mapFile(env, ioas, fd, U64_MAX - 0xfffn, 0x2000, null), "EOVERFLOW");
  expectFailsUnchanged(env, () => mapFile(env, ioas, 7, 0, 0x1000, null), "EBADF");
  expectFailsUnchanged(env, () => mapFile(env, ioas, 7, 0, 0, null), "EINVAL", "length 0 is checked before the fd");
});
