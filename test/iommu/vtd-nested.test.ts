/**
 * intel-iommu nesting, dirty tracking and page requests: a VTD_S1 nested domain over a NEST_PARENT
 * translates GVA -> GPA -> HPA through a guest-built first-stage table, its invalidations and their
 * errnos; SSADE dirty tracking; I/O page faults through the page request queue.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { IommuError, fail } from "../../src/errno.js";
import type { UserDataArray } from "../../src/iommu/driver.js";
import { WindowFrameStore } from "../../src/hw/memory.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { PT_ACCESSED, PT_READ, PT_USER, PT_WRITE, vtdFirstStage } from "../../src/hw/pagetable/format.js";
import { Pgtt } from "../../src/hw/vtd/tables.js";
import { DEFAULT_CAP, DEFAULT_ECAP, SmFault } from "../../src/hw/vtd/unit.js";
import type { DmaResult } from "../../src/hw/dma.js";
import { IOMMU_READ, IOMMU_WRITE, type IopfFault } from "../../src/iommu/domain.js";
import {
  IOMMU_HWPT_DATA_VTD_S1,
  IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
  IOMMU_VTD_INV_FLAGS_LEAF,
  IOMMU_VTD_S1_EAFE,
  IOMMU_VTD_S1_SRE,
  VtdNestedDomain,
  VtdPagingDomain,
} from "../../src/iommu/drivers/vtd.js";
import type { Device } from "../../src/iommu/device.js";
import type { VtdUnitOptions } from "../../src/hw/vtd/unit.js";
import { CONSTANTS } from "../../src/uapi/constants.js";
import { encode } from "../../src/uapi/structs.js";
import { PAGE, dmaRead, dmaWrite, hostPages, pasidEntryOf, setup, userArray, userData, type Rig } from "./vtd-helpers.js";

const U64_MAX = (1n << 64n) - 1n;
const NEST_PARENT = 1;
const DIRTY = 2;

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
  return "ok";
}

function s1Data(pgtbl: bigint, addrWidth = 48, flags = 0n): Uint8Array {
  return encode("iommu_hwpt_vtd_s1", { flags, pgtbl_addr: pgtbl, addr_width: addrWidth, __reserved: 0 });
}

function inv(addr: bigint, npages: bigint, flags = 0, reserved = 0): Uint8Array {
  return encode("iommu_hwpt_vtd_s1_invalidate", { addr, npages, flags, __reserved: reserved });
}

interface Guest extends Rig {
  parent: VtdPagingDomain;
  s1: PageTableEngine;
  gBase: number;
  host: number;
  nested: VtdNestedDomain;
  /** Host frame behind guest page gp. */
  hostOf(gp: number): number;
}

/** A guest: 64 pages of RAM at GPA 0x4000_0000 mapped by a NEST_PARENT; a 4-level stage-1 table in it. */
function guest(o: { unit?: VtdUnitOptions; parentFlags?: number; addrWidth?: number; s1Flags?: bigint } = {}): Guest {
  const r = setup({ unit: o.unit });
  const parent = r.drv.domainAllocUser(r.dev, NEST_PARENT | (o.parentFlags ?? 0), null, null) as VtdPagingDomain;
  const gBase = 0x40000;
  const n = 64;
  const host = hostPages(r.phys, n, 0x80);
  parent.map(gBase, host * PAGE, n, IOMMU_READ | IOMMU_WRITE, false);
  const s1 = new PageTableEngine(new WindowFrameStore(r.unit.mem, gBase, host, n, gBase + 1), vtdFirstStage({ levels: 4 }));
  const nested = r.drv.domainAllocUser(r.dev, 0, parent, userData(IOMMU_HWPT_DATA_VTD_S1, s1Data(BigInt(s1.root * PAGE), o.addrWidth ?? 48, o.s1Flags ?? 0n)));
  assert.ok(nested instanceof VtdNestedDomain);
  return { ...r, parent, s1, gBase, host, nested, hostOf: (gp) => host + (gp - gBase) };
}

const S1_RW = PT_READ | PT_WRITE | PT_USER | PT_ACCESSED;

test("a nested VTD_S1 domain over a NEST_PARENT translates GVA -> GPA -> HPA; its PASID entry is PGTT nested with the guest's table", () => {
  const g = guest();
  g.drv.attachDev(g.nested, g.dev);
  const gData = g.gBase + 50;
  g.s1.map(0x7000, gData, 1, S1_RW);
  const { r, data } = dmaRead(g.dev, 0x7000_010n, 2);
  assert.equal(r.status, "done");
  assert.deepEqual([...data], [0x80 + 50, 0x80 + 50], "bytes of the host frame behind GPA page gData");
  assert.equal(dmaWrite(g.dev, 0x7000_020n, [9]).status, "done");
  assert.equal(g.phys.read(g.hostOf(gData) * PAGE + 0x20, 1)[0], 9);
  const pe = pasidEntryOf(g.unit, g.dev.sid, 0);
  assert.deepEqual(
    [pe?.pgtt, pe?.fsptptr, pe?.ssptptr, pe?.did, pe?.aw, pe?.fspm, pe?.fpd],
    [Pgtt.NESTED, g.s1.root * PAGE, g.parent.engine.root * PAGE, g.nested.did, 3, 0, 0],
  );
  assert.notEqual(g.nested.did, g.parent.did);
});

test("nested: a guest stage-1 change keeps translating until HWPT_INVALIDATE (PASID-based IOTLB with the nested DID)", () => {
  const g = guest();
  g.drv.attachDev(g.nested, g.dev);
  g.s1.map(0x7000, g.gBase + 50, 2, S1_RW);
  assert.equal(dmaRead(g.dev, 0x7000_000n, 1).r.status, "done");
  assert.equal(dmaRead(g.dev, 0x7001_000n, 1).r.status, "done");
  g.s1.unmap(0x7000, 2);
  assert.equal(dmaRead(g.dev, 0x7000_000n, 1).r.status, "done", "stale");
  const res = g.drv.cacheInvalidateUser(g.nested, userArray(IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, [inv(0x7000_000n, 1n, IOMMU_VTD_INV_FLAGS_LEAF)]));
  assert.deepEqual(res, { done: 1, error: null });
  const r = dmaRead(g.dev, 0x7000_000n, 1).r;
  assert.deepEqual([r.fault?.stage, r.fault?.code], [1, SmFault.FS_ENTRY_NOT_PRESENT]);
  assert.equal(dmaRead(g.dev, 0x7001_000n, 1).r.status, "done", "the other page's entry was not covered");
  assert.deepEqual(g.drv.cacheInvalidateUser(g.nested, userArray(0, [inv(0n, U64_MAX)])), { done: 1, error: null });
  assert.equal(dmaRead(g.dev, 0x7001_000n, 1).r.status, "faulted", "addr 0, npages U64_MAX: everything");
});

test("nested: unmapping the parent flushes the nested translations through the NESTING_IOTLB tag; the DMA faults at stage 2", () => {
  const g = guest();
  g.drv.attachDev(g.nested, g.dev);
  g.s1.map(0x7000, g.gBase + 50, 1, S1_RW);
  assert.equal(dmaRead(g.dev, 0x7000_000n, 1).r.status, "done");
  g.parent.unmap(g.gBase + 50, 1);
  const r = dmaRead(g.dev, 0x7000_000n, 1).r;
  assert.deepEqual([r.fault?.stage, r.fault?.code, r.fault?.ipa], [2, SmFault.SS_ENTRY_NOT_PRESENT, BigInt((g.gBase + 50) * PAGE)]);
});

test("nested domain_alloc_user errnos: flags EOPNOTSUPP, a data type other than VTD_S1 EOPNOTSUPP, a parent without NEST_PARENT EINVAL, a length other than 24 EINVAL, an unreadable buffer EFAULT", () => {
  const { drv, dev } = setup();
  const parent = drv.domainAllocUser(dev, NEST_PARENT, null, null) as VtdPagingDomain;
  const plain = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  const good = s1Data(0x1000n);
  assert.equal(IOMMU_HWPT_DATA_VTD_S1, CONSTANTS.get("IOMMU_HWPT_DATA_VTD_S1"));
  assert.equal(IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, CONSTANTS.get("IOMMU_HWPT_INVALIDATE_DATA_VTD_S1"));
  assert.equal(code(() => drv.domainAllocUser(dev, 1, parent, userData(IOMMU_HWPT_DATA_VTD_S1, good))), "EOPNOTSUPP");
  assert.equal(code(() => drv.domainAllocUser(dev, 0, parent, userData(0xdead, good))), "EOPNOTSUPP");
  assert.equal(code(() => drv.domainAllocUser(dev, 0, parent, null)), "EOPNOTSUPP");
  assert.equal(code(() => drv.domainAllocUser(dev, 0, plain, userData(IOMMU_HWPT_DATA_VTD_S1, good))), "EINVAL");
  assert.equal(code(() => drv.domainAllocUser(dev, 0, parent, userData(IOMMU_HWPT_DATA_VTD_S1, good.slice(0, 16)))), "EINVAL");
  assert.equal(code(() => drv.domainAllocUser(dev, 0, parent, userData(IOMMU_HWPT_DATA_VTD_S1, new Uint8Array(32)))), "EINVAL");
  assert.equal(code(() => drv.domainAllocUser(dev, 0, parent, userData(IOMMU_HWPT_DATA_VTD_S1, good, true))), "EFAULT");
  const n = setup({ unit: { ecap: { ...DEFAULT_ECAP, nest: 0 } } });
  const p2 = n.drv.domainAllocUser(n.dev, 0, null, null) as VtdPagingDomain;
  assert.equal(code(() => n.drv.domainAllocUser(n.dev, 0, p2, userData(IOMMU_HWPT_DATA_VTD_S1, good))), "EOPNOTSUPP");
});

test("nested attach errnos (intel_pasid_setup_nested): addr_width other than 48/57, 57 without FS5LP, SRE without SRS, EAFE without EAFS: EINVAL, and the device is left blocked", () => {
  for (const [o, why] of [
    [{ addrWidth: 39 }, "addr_width 39"],
    [{ addrWidth: 57, unit: { cap: { ...DEFAULT_CAP, fs5lp: 0 } } }, "5-level without FS5LP"],
    [{ s1Flags: BigInt(IOMMU_VTD_S1_SRE) }, "SRE"],
    [{ s1Flags: BigInt(IOMMU_VTD_S1_EAFE) }, "EAFE"],
  ] as const) {
    const g = guest(o);
    assert.equal(code(() => g.drv.attachDev(g.nested, g.dev)), "EINVAL", why);
    // Never attached before: not even the PASID table of RID_PASID exists (the kernel allocates it on first use).
    assert.equal(dmaRead(g.dev, 0n, 1).r.fault?.code, SmFault.PASID_DIR_NOT_PRESENT, why);
    assert.equal(g.nested.did, -1, why);
  }
  const ok = guest({ addrWidth: 57 });
  ok.drv.attachDev(ok.nested, ok.dev);
  assert.equal(pasidEntryOf(ok.unit, ok.dev.sid, 0)?.fspm, 1);
  // A failed attach after a working one leaves the device blocked (device_block_translation ran first).
  const sre = ok.drv.domainAllocUser(ok.dev, 0, ok.parent, userData(IOMMU_HWPT_DATA_VTD_S1, s1Data(0x1000n, 48, BigInt(IOMMU_VTD_S1_SRE))));
  assert.equal(code(() => ok.drv.attachDev(sre, ok.dev)), "EINVAL");
  assert.equal(dmaRead(ok.dev, 0n, 1).r.fault?.code, SmFault.PASID_ENTRY_NOT_PRESENT);
});

test("cache_invalidate_user errnos with partial progress: wrong type EINVAL (0 done), entry_len != 24 EINVAL, flags/reserved EOPNOTSUPP, unaligned or U64_MAX from non-zero EINVAL", () => {
  const g = guest();
  g.drv.attachDev(g.nested, g.dev);
  const run = (type: number, entries: Uint8Array[], len?: number): [number, string] => {
    const r = g.drv.cacheInvalidateUser(g.nested, userArray(type, entries, len));
    return [r.done, r.error === null ? "ok" : (r.error as IommuError).code];
  };
  const ok = inv(0x1000n, 1n);
  assert.deepEqual(run(1, [ok]), [0, "EINVAL"]);
  assert.deepEqual(run(0, []), [0, "ok"]);
  assert.deepEqual(run(0, [ok, ok], 16), [0, "EINVAL"]);
  assert.deepEqual(run(0, [ok, inv(0n, 1n, 2)]), [1, "EOPNOTSUPP"]);
  assert.deepEqual(run(0, [ok, ok, inv(0n, 1n, 0, 1)]), [2, "EOPNOTSUPP"]);
  assert.deepEqual(run(0, [inv(0x1800n, 1n)]), [0, "EINVAL"]);
  assert.deepEqual(run(0, [ok, inv(0x1000n, U64_MAX)]), [1, "EINVAL"]);
  const unreadable: UserDataArray = {
    ...userArray(0, [ok, ok]),
    entry: (i: number) => (i === 0 ? ok : fail("EFAULT", "bad user pointer")),
  };
  const r = g.drv.cacheInvalidateUser(g.nested, unreadable);
  assert.deepEqual([r.done, (r.error as IommuError).code], [1, "EFAULT"]);
});

test("dirty tracking: enabling sets SSADE in the attached devices' PASID entries; DMA writes are reported once by read-and-clear", () => {
  const { phys, unit, drv, dev } = setup();
  const d = drv.domainAllocUser(dev, DIRTY, null, null) as VtdPagingDomain;
  drv.attachDev(d, dev);
  const host = hostPages(phys, 4);
  d.map(0x100, host * PAGE, 4, IOMMU_READ | IOMMU_WRITE, false);
  const seen = (): number[] => {
    const out: number[] = [];
    d.readAndClearDirty(0x100, 4, false, (v, n) => {
      for (let i = 0; i < n; i++) out.push(v + i);
    });
    return out;
  };
  assert.equal(code(() => seen()), "EINVAL", "not tracking yet");
  d.setDirtyTracking(true);
  assert.equal(pasidEntryOf(unit, dev.sid, 0)?.ssade, 1);
  dmaRead(dev, 0x100000n, 8);
  dmaWrite(dev, 0x102000n, [1]);
  assert.deepEqual(seen(), [0x102]);
  assert.deepEqual(seen(), []);
  dmaWrite(dev, 0x102000n, [2]);
  assert.deepEqual(seen(), [0x102], "read-and-clear flushed the IOTLB: the next write marks the page again");
  d.setDirtyTracking(false);
  assert.equal(pasidEntryOf(unit, dev.sid, 0)?.ssade, 0);
  dmaWrite(dev, 0x103000n, [3]);
  d.readAndClearDirty(0x100, 4, false, null);
  assert.equal(d.engine.readAndClearDirty(0x100, 4, null, true), 0, "without SSADE nothing becomes dirty");
  const plain = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  assert.equal(code(() => plain.setDirtyTracking(true)), "EOPNOTSUPP");
});

test("dirty tracking on a NEST_PARENT reaches the nested domains' devices (SSADE in their nested PASID entries)", () => {
  const g = guest({ parentFlags: DIRTY });
  g.drv.attachDev(g.nested, g.dev);
  g.parent.setDirtyTracking(true);
  assert.equal(pasidEntryOf(g.unit, g.dev.sid, 0)?.ssade, 1);
  g.s1.map(0x7000, g.gBase + 50, 1, S1_RW | 128);
  dmaWrite(g.dev, 0x7000_000n, [1]);
  const dirty: number[] = [];
  g.parent.readAndClearDirty(g.gBase, 64, false, (v) => dirty.push(v));
  assert.ok(dirty.includes(g.gBase + 50), "the output GPA page is dirty in the parent");
});

// ---- page requests --------------------------------------------------------------------------------------

function prqRig(): Rig & { dma: VtdPagingDomain } {
  const r = setup({ dev: { ats: true, pri: true, pasidBits: 20 } });
  const rid = r.drv.domainAllocUser(r.dev, 0, null, null) as VtdPagingDomain;
  r.drv.attachDev(rid, r.dev); // enables ATS
  const dma = r.drv.domainAllocDma(r.dev);
  r.drv.setDevPasid(dma, r.dev, 5);
  return { ...r, dma };
}

function start(dev: Device, iova: bigint, out: DmaResult[]): DmaResult {
  return dev.dma({ iova, length: 4, write: true, data: new Uint8Array([1, 2, 3, 4]), pasid: 5, onComplete: (x) => out.push(x) });
}

test("enable IOPF sets PRE; a first-stage fault goes to the domain's iopfHandler as a page request and a success response retries the DMA", () => {
  const { phys, drv, dev, dma } = prqRig();
  assert.equal(code(() => drv.enableIopf(dev)), "ok");
  assert.equal(code(() => drv.enableIopf(dev)), "EBUSY");
  const faults: IopfFault[] = [];
  const host = hostPages(phys, 1, 0);
  dma.iopfHandler = (f) => {
    faults.push(f);
    dma.map(Number(f.addr >> 12n), host * PAGE, 1, IOMMU_READ | IOMMU_WRITE, false);
    drv.pageResponse(dev, f, 0);
  };
  const done: DmaResult[] = [];
  const r = start(dev, 0x9000_000n, done);
  assert.equal(r.status, "pending");
  assert.equal(faults.length, 1);
  assert.deepEqual(
    { ...faults[0], deviceKey: faults[0].deviceKey === dev },
    { deviceKey: true, pasid: 5, pasidValid: true, lastPage: true, grpid: 0, perm: 2, addr: 0x9000_000n },
  );
  assert.deepEqual(done, [{ status: "done", bytes: 4, fault: null }]);
  assert.deepEqual([...phys.read(host * PAGE, 4)], [1, 2, 3, 4]);
  assert.equal(drv.prqLog[0].outcome, "reported");
  // Tearing the PASID down with PRI on drains the page requests (a wait with PD through the queue).
  const before = drv.descriptorsSubmitted;
  drv.removeDevPasid(dev, 5);
  assert.equal(pasidEntryOf(drv.unit, dev.sid, 5)?.p, 0);
  assert.ok(drv.descriptorsSubmitted - before >= 8, "PASID cache, P_IOTLB, device TLB, then the drain's fence + P_IOTLB + device TLB, each with a wait");
});

test("page requests nobody handles are answered Invalid by the driver; the DMA completes faulted", () => {
  const { drv, dev } = prqRig();
  drv.enableIopf(dev);
  const done: DmaResult[] = [];
  assert.equal(start(dev, 0x9000_000n, done).status, "pending");
  assert.equal(done.length, 1);
  assert.equal(done[0].status, "faulted");
  assert.equal(drv.prqLog[0].outcome, "invalid");
});

test("without IOPF enabled (PRE clear, PRI off) the fault is an ordinary one; enable_iopf needs ATS and PRI (ENODEV)", () => {
  const { drv, dev } = prqRig();
  const done: DmaResult[] = [];
  const r = start(dev, 0x9000_000n, done);
  assert.equal(r.status, "faulted");
  assert.equal(drv.faultLog[0].reason, SmFault.FS_ENTRY_NOT_PRESENT);
  assert.equal(drv.faultLog[0].pasid, 5);
  const other = drv.probeDevice({ name: "noats", sid: 0x0500, pasidBits: 20 });
  assert.equal(code(() => drv.enableIopf(other)), "ENODEV");
});
