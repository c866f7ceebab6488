/**
 * The intel-iommu driver (Linux 6.12, scalable mode) over the VT-d unit model: initialization,
 * device probe, paging domains, attach, map / unmap with the IOTLB flushes (strict and lazy),
 * hw_info, capabilities, PASID attach, and DMA through the hardware landing in host memory.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { IommuError } from "../../src/errno.js";
import { ResvType } from "../../src/iommu/device.js";
import { BlockedDomain, IOMMU_READ, IOMMU_WRITE } from "../../src/iommu/domain.js";
import { IommuCap } from "../../src/iommu/driver.js";
import {
  IOMMU_HW_INFO_TYPE_INTEL_VTD,
  IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17,
  VtdPagingDomain,
} from "../../src/iommu/drivers/vtd.js";
import { Pgtt } from "../../src/hw/vtd/tables.js";
import { DEFAULT_CAP, DEFAULT_ECAP, Gsts, SmFault, VtdReg, VtdUnit } from "../../src/hw/vtd/unit.js";
import { PhysMem } from "../../src/mm/phys.js";
import { CONSTANTS } from "../../src/uapi/constants.js";
import { decode, structOf } from "../../src/uapi/structs.js";
import { PAGE, contextOf, dmaRead, dmaWrite, hostPages, pasidEntryOf, setup } from "./vtd-helpers.js";

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
  return "ok";
}

test("init: queued invalidation with 256-bit descriptors, the root table in scalable mode, translation on, a 16-page PRQ, events unmasked", () => {
  const { unit } = setup();
  const gsts = unit.read32(VtdReg.GSTS);
  for (const b of [Gsts.TES, Gsts.RTPS, Gsts.QIES]) assert.equal((gsts & b) >>> 0, b >>> 0);
  assert.equal((unit.read64(VtdReg.RTADDR) >> 10n) & 3n, 1n, "TTM = 01 (scalable)");
  assert.equal(unit.read64(VtdReg.IQA) & 0xfffn, (1n << 11n) | 1n, "DW = 1, QS = 1");
  assert.equal(unit.read64(VtdReg.PQA) & 7n, 4n, "PQS = PRQ_ORDER 4");
  assert.equal(unit.read32(VtdReg.FECTL), 0);
  assert.equal(unit.read32(VtdReg.PECTL), 0);
});

test("probe writes the kernel's context entry: PASID directory sized by the PASID width (PDTS), PASIDE, DTE with ATS, RID_PASID 0, FPD clear", () => {
  const { unit, drv, dev } = setup({ dev: { pasidBits: 20, ats: true } });
  const c = contextOf(unit, dev.sid);
  assert.ok(c);
  assert.deepEqual([c.p, c.fpd, c.paside, c.dte, c.pdts, c.ridPasid, c.pre], [1, 0, 1, 1, 7, 0, 0]);
  assert.equal(dev.maxPasidLog2, 20);
  const plain = drv.probeDevice({ name: "plain", sid: 0x0381 });
  const c2 = contextOf(unit, plain.sid);
  assert.ok(c2);
  assert.deepEqual([c2.paside, c2.dte, c2.pdts], [0, 0, 2], "no PASID: one directory page, PDTS 2");
  assert.equal(plain.maxPasidLog2, 0);
  assert.deepEqual(plain.resv, [{ start: 0xfee00000n, length: 0x100000n, type: ResvType.MSI }]);
  assert.equal(plain.port, unit);
  assert.equal(plain.sid, 0x0381);
});

test("hwInfo: IOMMU_HW_INFO_TYPE_INTEL_VTD with struct iommu_hw_info_vtd {flags ERRATA_772415_SPR17, __reserved 0, cap_reg, ecap_reg}", () => {
  const { unit, drv, dev } = setup();
  const info = drv.hwInfo(dev);
  assert.equal(info.type, IOMMU_HW_INFO_TYPE_INTEL_VTD);
  assert.equal(IOMMU_HW_INFO_TYPE_INTEL_VTD, CONSTANTS.get("IOMMU_HW_INFO_TYPE_INTEL_VTD"));
  assert.equal(IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, CONSTANTS.get("IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17"));
  assert.equal(info.data.length, structOf("iommu_hw_info_vtd").size);
  assert.deepEqual(decode("iommu_hw_info_vtd", info.data), { flags: 1, __reserved: 0, cap_reg: unit.capU64, ecap_reg: unit.ecapU64 });
  assert.equal(info.data[8], Number(unit.capU64 & 0xffn), "little endian");
});

test("capabilities: cache coherency always; enforce-coherency with ECAP.SC; dirty tracking with SSADS and SMPWC", () => {
  const { drv, dev } = setup();
  assert.deepEqual([IommuCap.CACHE_COHERENCY, IommuCap.ENFORCE_CACHE_COHERENCY, IommuCap.DIRTY_TRACKING].map((c) => drv.capable(dev, c)), [true, true, true]);
  const n = setup({ unit: { ecap: { ...DEFAULT_ECAP, sc: 0, ssads: 0 } } });
  assert.deepEqual([IommuCap.CACHE_COHERENCY, IommuCap.ENFORCE_CACHE_COHERENCY, IommuCap.DIRTY_TRACKING].map((c) => n.drv.capable(n.dev, c)), [true, false, false]);
});

test("user paging domains are second stage at the unit's AGAW: 4K|2M|1G, aperture 2^57-1 (5-level) or 2^48-1 (4-level only)", () => {
  const { drv, dev } = setup();
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  assert.equal(d.useFirstLevel, false);
  assert.equal(d.pgsizeBitmap, (1n << 12n) | (1n << 21n) | (1n << 30n));
  assert.deepEqual([d.apertureStart, d.apertureEnd, d.pgShift], [0n, (1n << 57n) - 1n, 12]);
  assert.equal(d.engine.format.levels.length, 5);
  const four = setup({ unit: { cap: { ...DEFAULT_CAP, sagaw: 0b00100 } } });
  const d4 = four.drv.domainAllocUser(four.dev, 0, null, null) as VtdPagingDomain;
  assert.equal(d4.apertureEnd, (1n << 48n) - 1n);
  const small = setup({ unit: { cap: { ...DEFAULT_CAP, sslps: 0b01 } } });
  assert.equal((small.drv.domainAllocUser(small.dev, 0, null, null) as VtdPagingDomain).pgsizeBitmap, (1n << 12n) | (1n << 21n));
  // The DMA-API default domain is first stage: the canonical aperture skips bit 56.
  const dma = drv.domainAllocDma(dev);
  assert.equal(dma.useFirstLevel, true);
  assert.equal(dma.apertureEnd, (1n << 56n) - 1n);
});

test("attach writes the RID_PASID entry the kernel writes: second stage, DID 2 (0 and 1 reserved), AW 5-level, the table root, FPD clear", () => {
  const { unit, drv, dev } = setup();
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  drv.attachDev(d, dev);
  const pe = pasidEntryOf(unit, dev.sid, 0);
  assert.ok(pe);
  assert.deepEqual(
    [pe.p, pe.pgtt, pe.did, pe.aw, pe.ssptptr, pe.fpd, pe.ssade, pe.pwsnp],
    [1, Pgtt.SECOND_STAGE, 2, 3, d.engine.root * PAGE, 0, 0, 1],
  );
  assert.equal(d.did, 2);
});

test("map then DMA: reads and writes through the domain reach the mapped host pages; a huge mapping uses 2 MiB leaves", () => {
  const { phys, drv, dev } = setup();
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  drv.attachDev(d, dev);
  const host = hostPages(phys, 4);
  d.map(0x100, host * PAGE, 4, IOMMU_READ | IOMMU_WRITE, false);
  const { r, data } = dmaRead(dev, 0x100ffen, 4);
  assert.equal(r.status, "done");
  assert.deepEqual([...data], [0x10, 0x10, 0x11, 0x11]);
  assert.equal(dmaWrite(dev, 0x102000n, [1, 2, 3]).status, "done");
  assert.deepEqual([...phys.read((host + 2) * PAGE, 3)], [1, 2, 3]);
  assert.equal(d.iovaToPhys(0x103), (host + 3) * PAGE);
  assert.equal(d.protAt(0x103), IOMMU_READ | IOMMU_WRITE);
  assert.equal(d.mappedPages(), 4);
  const huge = phys.allocRun(1024, 512);
  d.map(0x200000 / PAGE, huge * PAGE, 512, IOMMU_READ, false);
  assert.equal(d.engine.walk(0x200).leafPages, 512);
  assert.equal(d.protAt(0x300), IOMMU_READ);
  d.map(0x400000 / PAGE, (huge + 512) * PAGE, 512, IOMMU_READ, true);
  assert.equal(d.engine.walk(0x400).leafPages, 1, "smallOnly: 4 KiB leaves");
});

test("strict unmap: the IOTLB is flushed before unmap returns; the next DMA faults (0x79) and dmar_fault logs it", () => {
  const { phys, drv, dev } = setup();
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  drv.attachDev(d, dev);
  const host = hostPages(phys, 2);
  d.map(0x10, host * PAGE, 2, IOMMU_READ | IOMMU_WRITE, false);
  assert.equal(dmaRead(dev, 0x10000n, 8).r.status, "done");
  d.unmap(0x10, 1);
  const r = dmaRead(dev, 0x10000n, 8).r;
  assert.equal(r.status, "faulted");
  assert.equal(r.fault?.code, SmFault.SS_ENTRY_NOT_PRESENT);
  assert.deepEqual(drv.faultLog, [{ write: false, reason: SmFault.SS_ENTRY_NOT_PRESENT, sid: dev.sid, pasid: -1, addr: 0x10000n }]);
  assert.equal(dmaRead(dev, 0x11000n, 8).r.status, "done", "the other page stays mapped");
  assert.equal(d.mappedPages(), 1);
});

test("lazy (flush queue): after unmap the stale IOTLB entry keeps translating until the queued flush", () => {
  const { phys, drv, dev } = setup({ drv: { lazy: true } });
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  drv.attachDev(d, dev);
  const host = hostPages(phys, 1, 0x77);
  d.map(0x10, host * PAGE, 1, IOMMU_READ, false);
  assert.equal(dmaRead(dev, 0x10000n, 1).data[0], 0x77);
  d.unmap(0x10, 1);
  const stale = dmaRead(dev, 0x10000n, 1);
  assert.equal(stale.r.status, "done");
  assert.equal(stale.data[0], 0x77, "the unmapped page is still reachable");
  assert.ok(d.pendingFlush);
  drv.flushLazy(d);
  assert.equal(dmaRead(dev, 0x10000n, 1).r.status, "faulted");
});

test("unmap flushes page-selectively when the range fits CAP.MAMV, domain-selectively when it does not", () => {
  const { phys, drv, dev } = setup();
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  drv.attachDev(d, dev);
  const host = hostPages(phys, 2);
  d.map(0x10, host * PAGE, 1, IOMMU_READ, false);
  d.map(0x9_0000, (host + 1) * PAGE, 1, IOMMU_READ, false);
  const staleFar = (): boolean => {
    dmaRead(dev, 0x9_0000_000n, 1);
    d.engine.unmap(0x9_0000, 1); // behind the driver's back: only a flush can drop the cached entry
    return true;
  };
  staleFar();
  d.unmap(0x10, 1); // 1 page: PSI
  assert.equal(dmaRead(dev, 0x9_0000_000n, 1).r.status, "done", "a PSI elsewhere keeps the stale entry");
  d.engine.map(0x9_0000, host + 1, 1, 1);
  d.map(0x10, host * PAGE, 1, IOMMU_READ, false);
  staleFar();
  d.unmap(0, 2 ** 19); // 2 GiB: mask 19 > MAMV 18 -> DSI
  assert.equal(dmaRead(dev, 0x9_0000_000n, 1).r.status, "faulted", "the DSI dropped every entry of the DID");
});

test("map errors: EFAULT beyond the domain width, EINVAL without read or write, EINVAL for read-only on a NEST_PARENT (ERRATA_772415_SPR17)", () => {
  const { phys, drv, dev } = setup();
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  const host = hostPages(phys, 1);
  assert.equal(code(() => d.map(2 ** 45 - 1, host * PAGE, 2, IOMMU_READ, false)), "EFAULT");
  assert.equal(code(() => d.map(0, host * PAGE, 1, 0, false)), "EINVAL");
  const np = drv.domainAllocUser(dev, 1, null, null) as VtdPagingDomain;
  assert.equal(code(() => np.map(0, host * PAGE, 1, IOMMU_READ, false)), "EINVAL");
  np.map(0, host * PAGE, 1, IOMMU_READ | IOMMU_WRITE, false);
});

test("domain_alloc_user errnos: unknown flags, user data on a paging domain, dirty tracking without SSADS, NEST_PARENT without nesting: EOPNOTSUPP", () => {
  const { drv, dev } = setup();
  assert.equal(code(() => drv.domainAllocUser(dev, 1 << 2, null, null)), "EOPNOTSUPP");
  assert.equal(code(() => drv.domainAllocUser(dev, 0, null, { type: 1, len: 24, read: () => new Uint8Array(24) })), "EOPNOTSUPP");
  const dt = drv.domainAllocUser(dev, 2, null, null) as VtdPagingDomain;
  assert.equal(dt.dirtyOps, true);
  const n = setup({ unit: { ecap: { ...DEFAULT_ECAP, ssads: 0, nest: 0 } } });
  assert.equal(code(() => n.drv.domainAllocUser(n.dev, 2, null, null)), "EOPNOTSUPP");
  assert.equal(code(() => n.drv.domainAllocUser(n.dev, 1, null, null)), "EOPNOTSUPP");
});

test("DIDs: the lowest free from 2, one per domain, shared by its devices, freed with the last detach", () => {
  const { drv, dev } = setup();
  const dev2 = drv.probeDevice({ name: "dev1", sid: 0x0301 });
  const a = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  const b = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  drv.attachDev(a, dev);
  drv.attachDev(a, dev2);
  drv.attachDev(b, dev2); // dev2 leaves a
  assert.deepEqual([a.did, b.did], [2, 3]);
  drv.attachDev(new BlockedDomain(drv), dev);
  assert.equal(a.did, -1, "a's DID went with its last device");
  const c = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  drv.attachDev(c, dev);
  assert.equal(c.did, 2);
});

test("attaching the blocked domain tears the RID_PASID entry down: DMA faults with PASID entry not present (0x59)", () => {
  const { phys, unit, drv, dev } = setup();
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  drv.attachDev(d, dev);
  d.map(0, hostPages(phys, 1) * PAGE, 1, IOMMU_READ, false);
  assert.equal(dmaRead(dev, 0n, 1).r.status, "done");
  drv.attachDev(new BlockedDomain(drv), dev);
  assert.equal(pasidEntryOf(unit, dev.sid, 0)?.p, 0);
  assert.equal(dmaRead(dev, 0n, 1).r.fault?.code, SmFault.PASID_ENTRY_NOT_PRESENT);
});

test("replacing a device's domain switches its DMA at once (the old entry's caches are invalidated)", () => {
  const { phys, drv, dev } = setup();
  const a = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  const b = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  a.map(0, hostPages(phys, 1, 0xaa) * PAGE, 1, IOMMU_READ, false);
  b.map(0, hostPages(phys, 1, 0xbb) * PAGE, 1, IOMMU_READ, false);
  drv.attachDev(a, dev);
  assert.equal(dmaRead(dev, 0n, 1).data[0], 0xaa);
  drv.attachDev(b, dev);
  assert.equal(dmaRead(dev, 0n, 1).data[0], 0xbb);
});

test("the DMA-API domain is first stage: PGTT 1, FSPM 5-level; leaves carry U/S, A and (writable) D without XD; unmap flushes with P_IOTLB", () => {
  const { phys, unit, drv, dev } = setup();
  const d = drv.domainAllocDma(dev);
  drv.attachDev(d, dev);
  const pe = pasidEntryOf(unit, dev.sid, 0);
  assert.deepEqual([pe?.pgtt, pe?.fspm, pe?.fsptptr, pe?.did], [Pgtt.FIRST_STAGE, 1, d.engine.root * PAGE, 2]);
  const host = hostPages(phys, 1, 0x42);
  d.map(0x20, host * PAGE, 1, IOMMU_READ | IOMMU_WRITE, false);
  const leaf = d.engine.walk(0x20).steps.at(-1);
  assert.ok(leaf);
  assert.equal(leaf.lo & 0x67, 0x67, "P, R/W, U/S, A, D");
  assert.equal(leaf.hi >>> 31, 0, "XD clear");
  assert.equal(dmaRead(dev, 0x20000n, 1).data[0], 0x42);
  d.unmap(0x20, 1);
  assert.equal(dmaRead(dev, 0x20000n, 1).r.fault?.code, SmFault.FS_ENTRY_NOT_PRESENT);
});

test("set_dev_pasid writes that PASID's entry and PASID requests translate through it; remove_dev_pasid blocks them again", () => {
  const { phys, unit, drv, dev } = setup();
  const rid = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  drv.attachDev(rid, dev);
  const p = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  p.map(0x40, hostPages(phys, 1, 0x5e) * PAGE, 1, IOMMU_READ, false);
  drv.setDevPasid(p, dev, 7);
  const pe = pasidEntryOf(unit, dev.sid, 7);
  assert.deepEqual([pe?.p, pe?.pgtt, pe?.did], [1, Pgtt.SECOND_STAGE, p.did]);
  assert.equal(dmaRead(dev, 0x40000n, 1, 7).data[0], 0x5e);
  assert.equal(dmaRead(dev, 0x40000n, 1).r.status, "faulted", "the RID's domain has nothing there");
  drv.removeDevPasid(dev, 7);
  assert.equal(dmaRead(dev, 0x40000n, 1, 7).r.fault?.code, SmFault.PASID_ENTRY_NOT_PRESENT);
  assert.equal(p.did, -1);
});

test("set_dev_pasid errnos: a dirty-tracking domain EINVAL, a nested or blocked domain EOPNOTSUPP, a PASID beyond the table ENODEV, no PASID support EOPNOTSUPP", () => {
  const { drv, dev } = setup({ dev: { pasidBits: 5 } });
  const dirty = drv.domainAllocUser(dev, 2, null, null);
  assert.equal(code(() => drv.setDevPasid(dirty, dev, 1)), "EINVAL");
  assert.equal(code(() => drv.setDevPasid(new BlockedDomain(drv), dev, 1)), "EOPNOTSUPP");
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  assert.equal(code(() => drv.setDevPasid(d, dev, 1 << 15)), "ENODEV", "the smallest table covers PASIDs below 32768");
  assert.equal(d.did, -1, "the failed attach gave its DID back");
  const n = setup({ unit: { ecap: { ...DEFAULT_ECAP, pasid: 0, prs: 0 } } });
  assert.equal(code(() => n.drv.setDevPasid(n.drv.domainAllocUser(n.dev, 0, null, null), n.dev, 1)), "EOPNOTSUPP");
});

test("set_dev_pasid on an attached PASID replaces its domain", () => {
  const { phys, drv, dev } = setup();
  const a = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  const b = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  a.map(0, hostPages(phys, 1, 0xaa) * PAGE, 1, IOMMU_READ, false);
  b.map(0, hostPages(phys, 1, 0xbb) * PAGE, 1, IOMMU_READ, false);
  drv.setDevPasid(a, dev, 3);
  assert.equal(dmaRead(dev, 0n, 1, 3).data[0], 0xaa);
  drv.setDevPasid(b, dev, 3);
  assert.equal(dmaRead(dev, 0n, 1, 3).data[0], 0xbb);
  assert.equal(a.did, -1);
});

test("with ATS enabled every IOTLB flush also invalidates the device TLB: one more descriptor per unmap (and the unit accepts it)", () => {
  const counts: number[] = [];
  for (const ats of [false, true]) {
    const { phys, drv, dev } = setup({ dev: { ats } });
    const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
    drv.attachDev(d, dev);
    d.map(0, hostPages(phys, 1) * PAGE, 1, IOMMU_READ, false);
    const before = drv.descriptorsSubmitted;
    d.unmap(0, 1);
    counts.push(drv.descriptorsSubmitted - before);
  }
  assert.deepEqual(counts, [2, 3], "IOTLB PSI + wait; IOTLB PSI + device-TLB + wait");
});

test("unplugging a device (release_device) blocks it and clears its context entry; the source-id can be probed again", () => {
  const { phys, unit, drv, dev } = setup();
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  drv.attachDev(d, dev);
  d.map(0, hostPages(phys, 1) * PAGE, 1, IOMMU_READ, false);
  dev.unplug();
  assert.equal(contextOf(unit, 0x0300)?.p, 0);
  assert.equal(d.did, -1);
  assert.equal(dev.group.devices.length, 0);
  const again = drv.probeDevice({ name: "again", sid: 0x0300 });
  assert.equal(contextOf(unit, again.sid)?.p, 1);
  assert.equal(dmaRead(again, 0n, 1).r.fault?.code, SmFault.PASID_DIR_NOT_PRESENT);
});

test("iommu_paging_domain_alloc (VFIO type1) gives a second-stage domain like the user one", () => {
  const { phys, drv, dev } = setup();
  const d = drv.domainAllocPaging(dev);
  assert.deepEqual([d.useFirstLevel, d.apertureEnd, d.dirtyOps], [false, (1n << 57n) - 1n, false]);
  drv.attachDev(d, dev);
  d.map(1, hostPages(phys, 1, 0x33) * PAGE, 1, IOMMU_READ, false);
  assert.equal(dmaRead(dev, 0x1000n, 1).data[0], 0x33);
});

test("an untranslated DMA (translation off) far beyond memory is aborted, not a crash", () => {
  const unit = new VtdUnit(new PhysMem());
  const r = unit.dma({ sid: 1, pasid: -1, iova: 1n << 62n, length: 1, write: true, data: new Uint8Array(1) });
  assert.deepEqual([r.status, r.fault?.kind], ["faulted", "address-size"]);
});

test("domain free gives the page-table pages back (not while a device still uses them)", () => {
  const { phys, unit, drv, dev } = setup();
  const d = drv.domainAllocUser(dev, 0, null, null) as VtdPagingDomain;
  d.map(0x12345, hostPages(phys, 1) * PAGE, 1, IOMMU_READ, false);
  drv.attachDev(d, dev);
  d.free();
  assert.equal(dmaRead(dev, 0x12345000n, 1).r.status, "done", "still attached: tables kept");
  drv.attachDev(new BlockedDomain(drv), dev);
  const held = d.engine.tablePages;
  assert.equal(held, 5, "a 5-level path");
  const before = unit.mem.tableFrames;
  d.free();
  assert.equal(unit.mem.tableFrames, before - held, "the root and every table below it are gone");
});
