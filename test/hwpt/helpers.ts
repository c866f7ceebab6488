/**
 * Shared helpers for the HWPT / device / fault / access tests: an environment like the selftest
 * fixtures (one process, one /dev/iommu context, a shared anonymous buffer), errno matchers and a
 * state snapshot used to check that a failing call changes nothing.
 */
import assert from "node:assert/strict";
import * as S from "../../src/index.js";
import { IommuError, type ErrnoName } from "../../src/errno.js";
import { HwptNested, HwptPaging } from "../../src/iommufd/hwpt.js";
import { IommufdDevice } from "../../src/iommufd/device.js";
import { Fault } from "../../src/iommufd/fault.js";
import { Ioas } from "../../src/iommufd/ioas.js";
import { MockNestedDomain, MockPagingDomain } from "../../src/iommu/drivers/mock.js";

export { S };

export const PAGE = 4096;
export const MOCK_PAGE = 2048;
export const MOCK_HUGE = 512 * MOCK_PAGE;
export const BASE = 1n << 24n; // MOCK_APERTURE_START
export const BUFFER_SIZE = 16 * PAGE;
export const SELFTEST_DATA = 0xdead;
export const INV_SELFTEST = 0xdeadbeef;
export const INV_SELFTEST_INVALID = 0xdadbeef;
export const IOTLB_DEFAULT = 0xbadbeef;

/** Run fn; it must throw an IommuError with this errno. Returns the error. */
export function expectErr(code: ErrnoName, fn: () => unknown, msg?: string): IommuError {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
    assert.equal(e.code, code, `${msg ? msg + ": " : ""}expected ${code}, got ${e.message}`);
    assert.equal(e.errno, S.Errno[code]);
    return e;
  }
  assert.fail(`${msg ? msg + ": " : ""}expected ${code}, but the call succeeded`);
}

export interface Env {
  host: S.Host;
  p: S.Process;
  ctx: S.IommufdCtx;
  ioas: number;
  /** BUFFER_SIZE bytes, MAP_SHARED | MAP_ANONYMOUS, filled with a pattern. */
  buf: number;
}

/** A fresh host, process, context, IOAS and buffer (the iommufd_ioas fixture without domains). */
export function env(opts: { uid?: number; rlimitMemlock?: number } = {}): Env {
  const host = new S.Host();
  const p = host.spawn({ uid: opts.uid ?? 1000, capSysResource: true, rlimitMemlock: opts.rlimitMemlock });
  const ctx = S.openIommufd(host, p);
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const buf = p.mmap(BUFFER_SIZE, { shared: true });
  const fill = new Uint8Array(BUFFER_SIZE);
  for (let i = 0; i < fill.length; i++) fill[i] = (i * 7 + 3) & 0xff;
  p.write(buf, fill);
  return { host, p, ctx, ioas, buf };
}

export interface MockDev {
  stdev: number;
  hwpt: number;
  idev: number;
}

export function mockDomain(ctx: S.IommufdCtx, pt: number, devFlags = 0): MockDev {
  const r = ctx.testCmd(
    devFlags
      ? { op: S.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, id: pt, dev_flags: devFlags }
      : { op: S.IOMMU_TEST_OP_MOCK_DOMAIN, id: pt },
  );
  return { stdev: r.out_stdev_id as number, hwpt: r.out_hwpt_id as number, idev: r.out_idev_id as number };
}

export function replace(ctx: S.IommufdCtx, stdev: number, pt: number): number {
  return ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, id: stdev, pt_id: pt }).pt_id as number;
}

export function hwptAlloc(ctx: S.IommufdCtx, devId: number, ptId: number, flags = 0): number {
  return ctx.hwptAlloc({ flags, dev_id: devId, pt_id: ptId, data_type: 0, data_len: 0, data_uptr: 0n }).out_hwpt_id as number;
}

/** A scratch area in the process for user structs (returned as a bigint pointer). */
export function scratch(p: S.Process, bytes: Uint8Array | number): bigint {
  const len = typeof bytes === "number" ? bytes : bytes.length;
  const addr = p.mmap(Math.max(len, 1));
  if (typeof bytes !== "number") p.write(addr, bytes);
  return BigInt(addr);
}

export function u32s(...v: number[]): Uint8Array {
  const b = new Uint8Array(v.length * 4);
  const dv = new DataView(b.buffer);
  v.forEach((x, i) => dv.setUint32(i * 4, x >>> 0, true));
  return b;
}

/** struct iommu_hwpt_selftest { iotlb } in user memory. */
export function selftestData(p: S.Process, iotlb = IOTLB_DEFAULT): bigint {
  return scratch(p, u32s(iotlb));
}

export function nestedAlloc(ctx: S.IommufdCtx, p: S.Process, devId: number, parent: number, opts: { flags?: number; faultId?: number; iotlb?: number } = {}): number {
  return ctx.hwptAlloc({
    flags: opts.flags ?? 0,
    dev_id: devId,
    pt_id: parent,
    data_type: SELFTEST_DATA,
    data_len: 4,
    data_uptr: selftestData(p, opts.iotlb ?? IOTLB_DEFAULT),
    fault_id: opts.faultId ?? 0,
  }).out_hwpt_id as number;
}

export function ioasMap(ctx: S.IommufdCtx, ioas: number, va: number, len: number, iova: bigint, flags = S.IOMMU_IOAS_MAP_READABLE | S.IOMMU_IOAS_MAP_WRITEABLE): bigint {
  return ctx.ioasMap({ flags: flags | S.IOMMU_IOAS_MAP_FIXED_IOVA, ioas_id: ioas, user_va: BigInt(va), length: BigInt(len), iova }).iova;
}

export function checkRefs(ctx: S.IommufdCtx, va: number, len: number, refs: number): void {
  ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_REFS, id: 0, uptr: BigInt(va), length: BigInt(len), refs });
}

export function checkMap(ctx: S.IommufdCtx, hwpt: number, iova: bigint, len: number, va: number): void {
  ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_MAP, id: hwpt, iova, length: BigInt(len), uptr: BigInt(va) });
}

export function checkIotlb(ctx: S.IommufdCtx, hwpt: number, id: number, v: number): void {
  ctx.testCmd({ op: S.IOMMU_TEST_OP_MD_CHECK_IOTLB, id: hwpt, iotlb_id: id, iotlb: v });
}

export function checkIotlbAll(ctx: S.IommufdCtx, hwpt: number, v: number): void {
  for (let i = 0; i < 4; i++) checkIotlb(ctx, hwpt, i, v);
}

/** The next ID the context would hand out, without consuming it. */
export function nextId(ctx: S.IommufdCtx): number {
  let id = 1;
  while (ctx.objects.has(id)) id++;
  return id;
}

/** Pin counts of every 4 KiB page of [va, va+len) in process p. */
export function pins(host: S.Host, p: S.Process, va: number, len: number): number[] {
  const out: number[] = [];
  for (let a = va; a < va + len; a += PAGE) {
    const pfn = p.mm.peekPfn(a);
    out.push(pfn === undefined ? 0 : host.phys.pinCount(pfn));
  }
  return out;
}

/**
 * Everything a failing ioctl must leave untouched: the object table (IDs, types, user counts),
 * every group's attachment, every IOAS's areas / reservations / alignment / domains, every HWPT's
 * domain contents (mappings, dirty bits, IOTLB), fault queues, and the buffer's pin counts.
 */
export function snapshot(e: Env): unknown {
  const objs: unknown[] = [];
  for (const [id, o] of [...e.ctx.objects].sort((a, b) => a[0] - b[0])) {
    const row: Record<string, unknown> = { id, type: o.type, users: o.users };
    if (o instanceof Ioas) {
      row.areas = o.iopt.areas.all().map((a) => `${a.start}-${a.last}:${a.numAccesses}`);
      row.ranges = o.iopt.iovaRanges().map((r) => `${r.start}-${r.last}`);
      row.align = String(o.iopt.iovaAlignment);
      row.domains = o.iopt.domains.length;
      row.hwpts = o.hwpts.map((h) => h.id);
    }
    if (o instanceof HwptPaging) {
      row.auto = o.autoDomain;
      const d = o.domain;
      if (d instanceof MockPagingDomain) {
        row.mapped = d.mappedPages();
        row.dirty = [...d.dirty].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}:${v}`);
        row.tracking = d.dirtyTracking;
      }
      row.fault = o.fault?.id ?? 0;
    }
    if (o instanceof HwptNested) {
      row.parent = o.parent.id;
      if (o.domain instanceof MockNestedDomain) row.iotlb = [...o.domain.iotlb];
      row.fault = o.fault?.id ?? 0;
    }
    if (o instanceof IommufdDevice) {
      row.attached = o.attached ? (o.igroup.hwpt?.id ?? -1) : 0;
      row.groupDomain = o.dev.group.domain === null ? null : o.dev.group.domain === o.igroup.hwpt?.domain;
    }
    if (o instanceof Fault) {
      row.deliver = o.deliver.length;
      row.response = [...o.response.keys()];
      row.completed = o.completed.length;
    }
    objs.push(row);
  }
  return {
    objs,
    next: nextId(e.ctx),
    pins: pins(e.host, e.p, e.buf, BUFFER_SIZE),
    fds: S.fdTableOf(e.p).size,
    lockedVm: e.p.user.lockedVm,
  };
}

/** Run a call that must fail with `code` and check that it changed nothing. */
export function failsCleanly(e: Env, code: ErrnoName, fn: () => unknown, msg?: string): IommuError {
  const before = snapshot(e);
  const err = expectErr(code, fn, msg);
  assert.deepEqual(snapshot(e), before, `${msg ?? code}: a failing call changed state`);
  return err;
}

/** struct iommu_hwpt_pgfault records decoded from a fault fd read. */
export interface PgFault {
  flags: number;
  dev_id: number;
  pasid: number;
  grpid: number;
  perm: number;
  reserved: number;
  addr: bigint;
  length: number;
  cookie: number;
}

export function decodeFaults(b: Uint8Array): PgFault[] {
  assert.equal(b.length % 40, 0);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const out: PgFault[] = [];
  for (let o = 0; o < b.length; o += 40)
    out.push({
      flags: dv.getUint32(o, true),
      dev_id: dv.getUint32(o + 4, true),
      pasid: dv.getUint32(o + 8, true),
      grpid: dv.getUint32(o + 12, true),
      perm: dv.getUint32(o + 16, true),
      reserved: dv.getUint32(o + 20, true),
      addr: dv.getBigUint64(o + 24, true),
      length: dv.getUint32(o + 32, true),
      cookie: dv.getUint32(o + 36, true),
    });
  return out;
}

export function responses(...r: Array<[cookie: number, code: number]>): Uint8Array {
  return u32s(...r.flat());
}

export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLRDNORM = 0x40;
