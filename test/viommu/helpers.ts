/**
 * Helpers for the vIOMMU / vDEVICE / vEVENTQ / PASID tests: the newest selftest's iommufd_viommu
 * fixture (a mock device on an IOAS, a NEST_PARENT HWPT, a selftest vIOMMU, a nested HWPT on it),
 * vEVENT record decoding, and a snapshot that extends test/hwpt's with the newer objects' state.
 */
import assert from "node:assert/strict";
import { S, env, hwptAlloc, mockDomain, selftestData, snapshot, expectErr, SELFTEST_DATA, type Env, type MockDev } from "../hwpt/helpers.js";
import type { ErrnoName, IommuError } from "../../src/errno.js";
import { IommufdDevice } from "../../src/iommufd/device.js";
import { HwptNested, HwptPaging } from "../../src/iommufd/hwpt.js";
import { Vdevice } from "../../src/iommufd/vdevice.js";
import { Veventq } from "../../src/iommufd/veventq.js";
import { Viommu } from "../../src/iommufd/viommu.js";
import { MockViommu, mockDevCache } from "../../src/iommu/drivers/mock.js";
import { groupPasidsAttached } from "../../src/iommu/core.js";

export { S };

export const VIOMMU_SELFTEST = S.IOMMU_VIOMMU_TYPE_SELFTEST;
export const VEVENTQ_SELFTEST = S.IOMMU_VEVENTQ_TYPE_SELFTEST;
export const NEST = S.IOMMU_HWPT_ALLOC_NEST_PARENT;
export const PASID_FLAG = S.IOMMU_HWPT_ALLOC_PASID;
export const FAULT_VALID = S.IOMMU_HWPT_FAULT_ID_VALID;

export interface ViommuEnv extends Env {
  md: MockDev;
  parent: number;
  viommu: number;
  nested: number;
}

export function viommuAlloc(ctx: S.IommufdCtx, devId: number, hwptId: number, o: Partial<S.IommuViommuAlloc> = {}): number {
  return ctx.viommuAlloc({ flags: 0, type: VIOMMU_SELFTEST, dev_id: devId, hwpt_id: hwptId, data_len: 0, data_uptr: 0n, ...o }).out_viommu_id as number;
}

/** A nested HWPT with iommu_hwpt_selftest data on a parent HWPT or a vIOMMU. */
export function nested(e: Env, devId: number, pt: number, flags = 0, faultId = 0): number {
  return e.ctx.hwptAlloc({ flags, dev_id: devId, pt_id: pt, data_type: SELFTEST_DATA, data_len: 4, data_uptr: selftestData(e.p), fault_id: faultId })
    .out_hwpt_id as number;
}

/** FIXTURE_SETUP(iommufd_viommu), variant mock_viommu. */
export function viommuEnv(devFlags = 0): ViommuEnv {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas, devFlags);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, NEST);
  const viommu = viommuAlloc(e.ctx, md.idev, parent);
  return { ...e, md, parent, viommu, nested: nested(e, md.idev, viommu) };
}

export function vdeviceAlloc(ctx: S.IommufdCtx, viommu: number, devId: number, virtId: bigint): number {
  return ctx.vdeviceAlloc({ viommu_id: viommu, dev_id: devId, virt_id: virtId }).out_vdevice_id as number;
}

export function veventqAlloc(ctx: S.IommufdCtx, viommu: number, depth: number, type = VEVENTQ_SELFTEST): { id: number; fd: number } {
  const r = ctx.veventqAlloc({ flags: 0, viommu_id: viommu, type, veventq_depth: depth });
  return { id: r.out_veventq_id as number, fd: r.out_veventq_fd as number };
}

export function triggerVevent(ctx: S.IommufdCtx, devId: number): void {
  ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_VEVENT, id: 0, dev_id: devId });
}

export function file(e: Env, fd: number): S.IommufdFile {
  const f = S.fdTableOf(e.p).get(fd);
  assert.ok(f, `fd ${fd} is open`);
  return f;
}

export function readFd(e: Env, fd: number, count: number, pos = 0): Uint8Array {
  const f = file(e, fd);
  assert.ok(f.read);
  return f.read(count, pos);
}

export function readErr(e: Env, code: ErrnoName, fd: number, count: number, pos = 0): IommuError {
  return expectErr(code, () => readFd(e, fd, count, pos), `read(${count}) at ${pos}`);
}

/** One record of a vEVENTQ read: iommufd_vevent_header + the selftest payload { virt_id } when present. */
export interface VRecord {
  flags: number;
  sequence: number;
  virtId: number | null;
}

/** Decode selftest vEVENT records (12 bytes each; an 8-byte LOST_EVENTS header has no payload). */
export function decodeVevents(b: Uint8Array): VRecord[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const out: VRecord[] = [];
  let o = 0;
  while (o < b.length) {
    const flags = dv.getUint32(o, true);
    const sequence = dv.getUint32(o + 4, true);
    o += 8;
    if (flags & S.IOMMU_VEVENTQ_FLAG_LOST_EVENTS) out.push({ flags, sequence, virtId: null });
    else {
      out.push({ flags, sequence, virtId: dv.getUint32(o, true) });
      o += 4;
    }
  }
  assert.equal(o, b.length, "whole records only");
  return out;
}

/** struct iommu_viommu_invalidate_selftest entries in user memory. */
export function invEntries(e: Env, ...entries: Array<{ flags?: number; vdev?: number; cache?: number }>): bigint {
  const b = new Uint8Array(Math.max(1, entries.length) * 12 + 16);
  const dv = new DataView(b.buffer);
  entries.forEach((x, i) => {
    dv.setUint32(i * 12, (x.flags ?? 0) >>> 0, true);
    dv.setUint32(i * 12 + 4, (x.vdev ?? 0) >>> 0, true);
    dv.setUint32(i * 12 + 8, (x.cache ?? 0) >>> 0, true);
  });
  const addr = e.p.mmap(b.length);
  e.p.write(addr, b);
  return BigInt(addr);
}

/** The four device-cache slots of a bound mock device. */
export function devCache(e: Env, devId: number): number[] {
  const idev = e.ctx.objects.get(devId) as IommufdDevice;
  return [...(mockDevCache(idev.dev) ?? [])];
}

/**
 * test/hwpt's snapshot plus what the newer objects hold: tombstoned IDs, mmap regions, each
 * vIOMMU's vDEVICEs / vEVENTQs / driver state, each vEVENTQ's records and counters, each nested
 * HWPT's vIOMMU, each device's vDEVICE, PASID attachments and device cache.
 */
export function fullSnapshot(e: Env): unknown {
  const extra: unknown[] = [];
  for (const [id, o] of [...e.ctx.objects].sort((a, b) => a[0] - b[0])) {
    if (o instanceof Viommu) {
      const ops = o.ops;
      extra.push({
        id,
        vdevs: [...o.vdevs].map(([k, v]) => `${k}:${v.id}`),
        qs: o.veventqs.map((q) => q.id),
        parent: o.hwpt.id,
        mock: ops instanceof MockViommu ? { vdevs: [...ops.vdevs.keys()].map(String), page: ops.page, off: String(ops.mmapOffset) } : null,
      });
    }
    if (o instanceof Veventq) extra.push({ id, recs: o.peekAll().map((r) => `${r.lost}:${r.sequence}:${r.payload ? [...r.payload].join(",") : ""}`), n: o.numEvents, seq: o.sequence });
    if (o instanceof Vdevice) extra.push({ id, viommu: o.viommu.id, idev: o.idev.id, virt: String(o.virtId) });
    if (o instanceof HwptNested) extra.push({ id, viommu: o.viommu?.id ?? 0, compat: o.pasidCompat });
    if (o instanceof HwptPaging) extra.push({ id, compat: o.pasidCompat });
    if (o instanceof IommufdDevice)
      extra.push({
        id,
        vdev: o.vdev?.id ?? 0,
        pasids: [...o.igroup.pasids].map(([p, pa]) => `${p}:${pa.hwpt.id}:${pa.devices.map((d) => d.id).join("+")}:${pa.handle.idev.id}`),
        corePasids: groupPasidsAttached(o.dev.group),
        cache: [...(mockDevCache(o.dev) ?? [])],
      });
  }
  return {
    base: snapshot(e),
    extra,
    tomb: e.ctx.tombstoned,
    mmaps: e.ctx.mmapRegions.map(([o, l]) => `${o}+${l}`),
  };
}

/** A call that must fail with `code` and change nothing (fullSnapshot). */
export function failsCleanlyFull(e: Env, code: ErrnoName, fn: () => unknown, msg?: string): IommuError {
  const before = fullSnapshot(e);
  const err = expectErr(code, fn, msg);
  assert.deepEqual(fullSnapshot(e), before, `${msg ?? code}: a failing call changed state`);
  return err;
}
