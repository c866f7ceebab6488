/**
 * Shared fixture and helpers for the IOAS rule tests. Addresses mirror the oracle runs
 * (oracle/probes/probe-ioas.c and oracle/probes/probe-6.12-rules.c): a 2 MiB aligned buffer
 * and a lone 4 KiB page, so that the automatic IOVAs measured on Linux 6.12 apply unchanged.
 */
import assert from "node:assert/strict";
import * as S from "../../src/index.js";
import type { Ioas } from "../../src/iommufd/ioas.js";

export { S };

export const R = S.IOMMU_IOAS_MAP_READABLE;
export const W = S.IOMMU_IOAS_MAP_WRITEABLE;
export const RW = R | W;
export const FIXED = S.IOMMU_IOAS_MAP_FIXED_IOVA;
export const U64_MAX = (1n << 64n) - 1n;
export const PAGE = 4096;

/** 2 MiB aligned, 6 MiB long (the oracle used the same low bits). */
export const BUF = 0x7f5aac200000;
export const BUF_LEN = 6 << 20;
/** A separate 4 KiB page whose address has 0x1000 as lowest set bit. */
export const PAGE4K = 0x7f5aac92f000;
/** Scratch page for user-pointer arguments (range arrays). */
export const SCRATCH = 0x7f5aaca00000;
/** Where iovaRanges() (and so snapshot()) lets the kernel write its answer: never SCRATCH. */
export const RANGES_OUT = SCRATCH + 4096;
/** Nothing is mapped here in the test process. */
export const UNMAPPED = 0x80000000;

export interface Env {
  host: S.Host;
  p: S.Process;
  ctx: S.IommufdCtx;
}

export interface EnvOptions {
  uid?: number;
  capIpcLock?: boolean;
  capSysResource?: boolean;
  rlimitMemlock?: number;
  /** Accounting mode set through IOMMU_OPTION right after open (0 user, 1 mm). */
  rlimitMode?: 0 | 1;
}

/** A process with BUF, PAGE4K and SCRATCH mapped (private anonymous) and an open iommufd. */
export function setup(o: EnvOptions = {}): Env {
  const host = new S.Host();
  const p = host.spawn({
    uid: o.uid ?? 1000,
    capIpcLock: o.capIpcLock ?? false,
    capSysResource: o.capSysResource ?? true,
    rlimitMemlock: o.rlimitMemlock ?? S.DEFAULT_RLIMIT_MEMLOCK,
  });
  p.mmap(BUF_LEN, { addr: BUF, fixed: true });
  p.mmap(PAGE, { addr: PAGE4K, fixed: true });
  p.mmap(2 * PAGE, { addr: SCRATCH, fixed: true });
  const ctx = S.openIommufd(host, p);
  if (o.rlimitMode !== undefined) ctx.option({ option_id: S.IOMMU_OPTION_RLIMIT_MODE, op: S.IOMMU_OPTION_OP_SET, object_id: 0, val64: BigInt(o.rlimitMode) });
  return { host, p, ctx };
}

// ------------------------------------------------------------------ errno helpers

/** Run fn; return "ok" or the IommuError code it threw (anything else is rethrown). */
export function errnoOf(fn: () => unknown): string {
  try {
    fn();
    return "ok";
  } catch (e) {
    if (e instanceof S.IommuError) return e.code;
    throw e;
  }
}

/** Assert that fn throws an IommuError with exactly this errno; returns the error. */
export function expectErrno(fn: () => unknown, code: S.ErrnoName, msg?: string): S.IommuError {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof S.IommuError)) throw e;
    assert.equal(e.code, code, msg ?? `expected ${code}, got ${e.message}`);
    assert.equal(e.errno, S.Errno[code]);
    return e;
  }
  assert.fail(msg ?? `expected ${code}, but the call succeeded`);
}

// ------------------------------------------------------------------ ioctl shorthands

export function ioasAlloc(env: Env): number {
  return env.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
}

export function map(env: Env, ioas: number, uva: number | bigint, length: number | bigint, iova: number | bigint | null, flags = RW): bigint {
  const out = env.ctx.ioasMap({
    flags: flags | (iova === null ? 0 : FIXED),
    ioas_id: ioas,
    user_va: BigInt(uva),
    length: BigInt(length),
    iova: iova === null ? 0n : BigInt(iova),
  });
  return out.iova;
}

export function unmap(env: Env, ioas: number, iova: number | bigint, length: number | bigint): bigint {
  return env.ctx.ioasUnmap({ ioas_id: ioas, iova: BigInt(iova), length: BigInt(length) }).length;
}

export function unmapAll(env: Env, ioas: number): bigint {
  return unmap(env, ioas, 0n, U64_MAX);
}

export function copy(env: Env, dst: number, src: number, srcIova: number | bigint, length: number | bigint, dstIova: number | bigint | null, flags = RW): bigint {
  return env.ctx.ioasCopy({
    flags: flags | (dstIova === null ? 0 : FIXED),
    dst_ioas_id: dst,
    src_ioas_id: src,
    length: BigInt(length),
    dst_iova: dstIova === null ? 0n : BigInt(dstIova),
    src_iova: BigInt(srcIova),
  }).dst_iova;
}

export function addReserved(env: Env, ioas: number, start: number | bigint, length: number | bigint): void {
  env.ctx.testCmd({ op: S.IOMMU_TEST_OP_ADD_RESERVED, id: ioas, start: BigInt(start), length: BigInt(length) });
}

export interface MockDomain {
  stdev: number;
  hwpt: number;
  idev: number;
}

export function mockDomain(env: Env, ptId: number): MockDomain {
  const out = env.ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN, id: ptId });
  return { stdev: out.out_stdev_id as number, hwpt: out.out_hwpt_id as number, idev: out.out_idev_id as number };
}

export function destroy(env: Env, id: number): void {
  env.ctx.destroy({ id });
}

/** Write iommu_iova_range[] to user memory at addr. */
export function writeRanges(env: Env, addr: number, ranges: ReadonlyArray<readonly [number | bigint, number | bigint]>): void {
  if (!ranges.length) return;
  const b = new Uint8Array(16 * ranges.length);
  const dv = new DataView(b.buffer);
  ranges.forEach(([s, l], i) => {
    dv.setBigUint64(i * 16, BigInt(s), true);
    dv.setBigUint64(i * 16 + 8, BigInt(l), true);
  });
  env.p.write(addr, b);
}

/** Read n iommu_iova_range entries from user memory. */
export function readRanges(env: Env, addr: number, n: number): Array<[bigint, bigint]> {
  if (n === 0) return [];
  const b = env.p.read(addr, 16 * n);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: Array<[bigint, bigint]> = [];
  for (let i = 0; i < n; i++) out.push([dv.getBigUint64(i * 16, true), dv.getBigUint64(i * 16 + 8, true)]);
  return out;
}

export function allow(env: Env, ioas: number, ranges: ReadonlyArray<readonly [number | bigint, number | bigint]>): void {
  writeRanges(env, SCRATCH, ranges);
  env.ctx.ioasAllowIovas({ ioas_id: ioas, num_iovas: ranges.length, allowed_iovas: ranges.length ? BigInt(SCRATCH) : 0n });
}

export interface RangesOut {
  num: number;
  align: bigint;
  ranges: Array<[bigint, bigint]>;
}

/** IOMMU_IOAS_IOVA_RANGES with room for 16 entries (as the oracle probe does). */
export function iovaRanges(env: Env, ioas: number): RangesOut {
  const out = env.ctx.ioasIovaRanges({ ioas_id: ioas, num_iovas: 16, allowed_iovas: BigInt(RANGES_OUT) });
  return { num: out.num_iovas, align: out.out_iova_alignment as bigint, ranges: readRanges(env, RANGES_OUT, Math.min(out.num_iovas, 16)) };
}

export function option(env: Env, optionId: number, op: number, objectId: number, val64 = 0n): bigint {
  return env.ctx.option({ option_id: optionId, op, object_id: objectId, val64 }).val64;
}

/** The page's pin count as MD_CHECK_REFS sees it (the first refs value in 0..7 that passes). */
export function refsOf(env: Env, addr: number): number {
  for (let r = 0; r < 8; r++) {
    const e = errnoOf(() => env.ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_REFS, id: 0, length: 4096n, uptr: BigInt(addr), refs: r }));
    if (e === "ok") return r;
    if (e !== "EIO") throw new Error(`MD_CHECK_REFS failed with ${e}`);
  }
  return -1;
}

export function checkRefs(env: Env, addr: number, length: number, refs: number): void {
  env.ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_REFS, id: 0, length: BigInt(length), uptr: BigInt(addr), refs });
}

export function getIoas(env: Env, id: number): Ioas {
  return env.ctx.getIoas(id);
}

// ------------------------------------------------------------------ state snapshots

function ownerLabel(o: unknown): string {
  if (o === null) return "test";
  if (typeof o === "object") return (o as object).constructor.name;
  return String(o);
}

/**
 * Everything a failing call must leave untouched: every object of the context (id, type, users),
 * each IOAS's areas (placement, page slice, protection, pinned state), reserved and allowed
 * ranges, alignment and large-page setting, the IOVA_RANGES answer, what each attached domain
 * maps, the pin count of every present page of the process, and the locked/pinned counters.
 */
export function snapshot(env: Env): unknown {
  const { ctx, p, host } = env;
  const objects = [...ctx.objects].sort((a, b) => a[0] - b[0]).map(([id, o]) => [id, o.type, o.users]);
  const ioas: unknown[] = [];
  for (const [id, o] of [...ctx.objects].sort((a, b) => a[0] - b[0])) {
    if (o.type !== "ioas") continue;
    const iopt = (o as Ioas).iopt;
    ioas.push({
      id,
      areas: iopt.areas.all().map((a) => ({
        start: a.start,
        last: a.last,
        prot: a.prot,
        pageOffset: a.pageOffset,
        pages: [a.firstIndex, a.lastIndex],
        published: a.pages !== null,
        inDomains: a.inDomains,
        pagesRefs: a.pages?.refs,
        npinned: a.pages?.npinned,
      })),
      reserved: iopt.reserved
        .list()
        .map((r) => [r.start, r.last, ownerLabel(r.owner)])
        .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)),
      allowed: iopt.allowed.all().map((r) => [r.start, r.last]),
      alignment: iopt.iovaAlignment,
      disableLargePages: iopt.disableLargePages,
      domains: iopt.domains.map((d) => d.mappedPages()),
      accesses: iopt.accesses.length,
      uapi: iovaRanges(env, id),
    });
  }
  const pins: Array<[number, number]> = [];
  for (const [start, len] of [
    [BUF, BUF_LEN],
    [PAGE4K, PAGE],
  ]) {
    for (let a = start; a < start + len; a += PAGE) {
      const pfn = p.mm.peekPfn(a);
      if (pfn === undefined) continue;
      const c = host.phys.pinCount(pfn);
      if (c) pins.push([a, c]);
    }
  }
  return {
    objects,
    ioas,
    pins,
    userLockedVm: p.user.lockedVm,
    mmLockedVm: p.mm.lockedVm,
    mmPinnedVm: p.mm.pinnedVm,
    accountMode: ctx.accountMode,
    compatIoas: ctx.compatIoas?.id ?? null,
  };
}

/** Assert that fn fails with errno and that the observable state is exactly as before. */
export function expectFailsUnchanged(env: Env, fn: () => unknown, code: S.ErrnoName, msg?: string): S.IommuError {
  const before = snapshot(env);
  const e = expectErrno(fn, code, msg);
  assert.deepEqual(snapshot(env), before, `${msg ?? code}: state changed by a failing call`);
  return e;
}

export const hex = (x: bigint | number): string => "0x" + BigInt(x).toString(16);
