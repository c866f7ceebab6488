/**
 * Invalidation like hardware, as a model test over both drivers: random maps, unmaps, DMAs and
 * (lazy) flushes against a per-page reference of what is mapped and what the IOTLB may still hold.
 * Strict: no translation outlives the unmap that removed it. Lazy: a page translated before its
 * unmap keeps translating to its old page exactly until the flush, and not after.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PhysMem } from "../../src/mm/phys.js";
import { HwMemory } from "../../src/hw/memory.js";
import { DEFAULT_CAP, VtdUnit } from "../../src/hw/vtd/unit.js";
import { SmmuUnit } from "../../src/hw/smmuv3/unit.js";
import { IOMMU_READ, IOMMU_WRITE, type PagingDomain } from "../../src/iommu/domain.js";
import type { Device } from "../../src/iommu/device.js";
import { VtdDriver, type VtdPagingDomain } from "../../src/iommu/drivers/vtd.js";
import { SmmuDriver, createSmmuDevice, type SmmuDomain } from "../../src/iommu/drivers/smmuv3.js";

const PAGE = 4096;
/** IOVA pages used (well below both IOTLBs' capacities, so nothing is evicted). */
const SPAN = 96;
const IOVA0 = 0x4000;
const HOST_PAGES = 64;

interface Rig {
  phys: PhysMem;
  dev: Device;
  domain: PagingDomain;
  flush(): void;
}

function vtdRig(lazy: boolean): Rig {
  const phys = new PhysMem();
  const drv = new VtdDriver(new VtdUnit(phys), { lazy });
  const dev = drv.probeDevice({ name: "d", sid: 0x0100 });
  const domain = drv.domainAllocPaging(dev);
  drv.attachDev(domain, dev);
  dev.group.domain = domain;
  return { phys, dev, domain, flush: () => drv.flushLazy(domain as VtdPagingDomain) };
}

function smmuRig(lazy: boolean): Rig {
  const phys = new PhysMem();
  const drv = new SmmuDriver(new SmmuUnit(new HwMemory(phys)), { invalidation: lazy ? "lazy" : "strict" });
  const dev = createSmmuDevice(drv, { name: "d", sid: 0x10 });
  const domain = drv.domainAllocPaging(dev);
  drv.attachDev(domain, dev);
  dev.group.domain = domain;
  return { phys, dev, domain, flush: () => (domain as SmmuDomain).flush() };
}

type Op = { op: "map"; at: number; n: number; host: number } | { op: "unmap"; at: number; n: number } | { op: "dma"; at: number } | { op: "flush" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant("map" as const), at: fc.nat(SPAN - 1), n: fc.integer({ min: 1, max: 8 }), host: fc.nat(HOST_PAGES - 1) }),
  fc.record({ op: fc.constant("unmap" as const), at: fc.nat(SPAN - 1), n: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant("dma" as const), at: fc.nat(SPAN - 1) }),
  fc.record({ op: fc.constant("dma" as const), at: fc.nat(SPAN - 1) }),
  fc.record({ op: fc.constant("flush" as const) }),
);

function check(make: (lazy: boolean) => Rig, lazy: boolean, ops: Op[]): void {
  const r = make(lazy);
  // host pages tagged with their own index, so a DMA read tells which page it reached
  const base = r.phys.allocRun(HOST_PAGES);
  for (let i = 0; i < HOST_PAGES; i++) r.phys.write((base + i) * PAGE, new Uint8Array(new Uint32Array([0x1000 + i]).buffer));
  const mapped = new Map<number, number>(); // iova page -> host index
  const cached = new Map<number, number>(); // what the IOTLB may hold: iova page -> host index
  for (const o of ops) {
    if (o.op === "map") {
      const n = Math.min(o.n, SPAN - o.at, HOST_PAGES - o.host);
      let free = true;
      // like an IOVA allocator: never reuse a page still mapped, nor (lazy) one not yet flushed
      for (let i = 0; i < n; i++) if (mapped.has(o.at + i) || cached.has(o.at + i)) free = false;
      if (!free) continue;
      r.domain.map(IOVA0 + o.at, (base + o.host) * PAGE, n, IOMMU_READ | IOMMU_WRITE, true);
      for (let i = 0; i < n; i++) mapped.set(o.at + i, o.host + i);
    } else if (o.op === "unmap") {
      // unmap whole runs that are mapped (the io_pagetable never unmaps holes)
      const n = Math.min(o.n, SPAN - o.at);
      let all = true;
      for (let i = 0; i < n; i++) if (!mapped.has(o.at + i)) all = false;
      if (!all) continue;
      r.domain.unmap(IOVA0 + o.at, n);
      for (let i = 0; i < n; i++) {
        mapped.delete(o.at + i);
        if (!lazy) cached.delete(o.at + i);
      }
    } else if (o.op === "flush") {
      if (!lazy) continue;
      r.flush();
      for (const p of [...cached.keys()]) if (!mapped.has(p)) cached.delete(p);
    } else {
      const data = new Uint8Array(4);
      // the IOVA as a bigint or as a number (DmaRequest takes both): the same answers either way
      const iova = (IOVA0 + o.at) * PAGE;
      const res = r.dev.dma({ iova: o.at % 2 === 0 ? BigInt(iova) : iova, length: 4, write: false, data, pasid: -1 });
      const want = mapped.get(o.at) ?? cached.get(o.at);
      if (want === undefined) {
        assert.equal(res.status, "faulted", `page ${o.at}: no translation may survive (${lazy ? "lazy" : "strict"})`);
      } else {
        assert.equal(res.status, "done", `page ${o.at} translates`);
        assert.equal(new Uint32Array(data.buffer)[0], 0x1000 + want, `page ${o.at} reaches host page ${want}`);
        cached.set(o.at, want);
      }
    }
  }
}

for (const [name, make] of [
  ["VT-d", vtdRig],
  ["SMMUv3", smmuRig],
] as const) {
  for (const lazy of [false, true]) {
    test(`${name} ${lazy ? "lazy" : "strict"}: ${lazy ? "a stale IOTLB entry translates exactly until the flush" : "no translation outlives its unmap"} (fast-check against a per-page model)`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 10, maxLength: 120 }), (ops) => check(make, lazy, ops)),
        { seed: lazy ? 0x1a2 : 0x57c, numRuns: 120 },
      );
    });
  }
}

// ---- every format, large leaves included (strict) -------------------------------------------

const BIG_SPAN = 4096;
const BIG_HOST = 2048;

interface FormatRig extends Rig {
  name: string;
}

function formatRigs(): (() => FormatRig)[] {
  const vtd = (name: string, cap: Partial<Record<string, number>> | null, firstStage: boolean) => (): FormatRig => {
    const phys = new PhysMem();
    const unit = new VtdUnit(phys, cap ? { cap: { ...DEFAULT_CAP, ...cap } } : {});
    const drv = new VtdDriver(unit);
    const dev = drv.probeDevice({ name: "d", sid: 0x0100 });
    const domain = firstStage ? drv.domainAllocDma(dev) : drv.domainAllocPaging(dev);
    drv.attachDev(domain, dev);
    dev.group.domain = domain;
    return { name, phys, dev, domain, flush: () => undefined };
  };
  const smmu = (name: string, stage2: boolean) => (): FormatRig => {
    const phys = new PhysMem();
    const drv = new SmmuDriver(new SmmuUnit(new HwMemory(phys)));
    const dev = createSmmuDevice(drv, { name: "d", sid: 0x10 });
    const domain = (stage2 ? drv.domainAllocUser(dev, 1 /* NEST_PARENT: stage 2 */, null, null) : drv.domainAllocPaging(dev)) as PagingDomain;
    drv.attachDev(domain, dev);
    dev.group.domain = domain;
    return { name, phys, dev, domain, flush: () => undefined };
  };
  return [
    vtd("VT-d second stage, 5-level", null, false),
    vtd("VT-d second stage, 4-level", { sagaw: 0b00100, mgaw: 47 }, false),
    vtd("VT-d first stage (DMA domain)", null, true),
    smmu("SMMUv3 stage 1", false),
    smmu("SMMUv3 stage 2", true),
  ];
}

type BigOp = { op: "map"; at: number; n: number; host: number; huge: boolean } | { op: "unmap"; at: number; n: number } | { op: "dma"; at: number; write: boolean };

const bigOpArb: fc.Arbitrary<BigOp> = fc.oneof(
  fc.record({ op: fc.constant("map" as const), at: fc.nat(BIG_SPAN - 1), n: fc.integer({ min: 1, max: 40 }), host: fc.nat(BIG_HOST - 1), huge: fc.constant(false) }),
  fc.record({ op: fc.constant("map" as const), at: fc.nat(BIG_SPAN / 512 - 1), n: fc.constant(512), host: fc.nat(BIG_HOST / 512 - 1), huge: fc.constant(true) }),
  fc.record({ op: fc.constant("unmap" as const), at: fc.nat(BIG_SPAN - 1), n: fc.integer({ min: 1, max: 600 }) }),
  fc.record({ op: fc.constant("dma" as const), at: fc.nat(BIG_SPAN - 1), write: fc.boolean() }),
);

function checkFormat(make: () => FormatRig, ops: BigOp[], probes: number[]): void {
  const r = make();
  const base = r.phys.allocRun(BIG_HOST, 512);
  for (let i = 0; i < BIG_HOST; i++) r.phys.write((base + i) * PAGE, new Uint8Array(new Uint32Array([0x1000 + i]).buffer));
  const mapped = new Map<number, number>();
  const dmaAt = (page: number, write: boolean): void => {
    // reads fetch the page's tag (offset 0); writes go to offset 16, leaving the tag alone
    const data = new Uint8Array(4).fill(0xee);
    const res = r.dev.dma({ iova: BigInt((IOVA0 + page) * PAGE + (write ? 16 : 0)), length: 4, write, data, pasid: -1 });
    const want = mapped.get(page);
    if (want === undefined) assert.equal(res.status, "faulted", `${r.name}: page ${page} is not mapped`);
    else {
      assert.equal(res.status, "done", `${r.name}: page ${page} is mapped`);
      if (!write) assert.equal(new Uint32Array(data.buffer)[0], 0x1000 + want, `${r.name}: page ${page} reaches host page ${want}`);
    }
  };
  for (const o of ops) {
    if (o.op === "map") {
      const at = o.huge ? o.at * 512 : o.at;
      const host = o.huge ? o.host * 512 : o.host;
      const n = Math.min(o.n, BIG_SPAN - at, BIG_HOST - host);
      let free = true;
      for (let i = 0; i < n; i++) if (mapped.has(at + i)) free = false;
      if (!free) continue;
      r.domain.map(IOVA0 + at, (base + host) * PAGE, n, IOMMU_READ | IOMMU_WRITE, false);
      for (let i = 0; i < n; i++) mapped.set(at + i, host + i);
    } else if (o.op === "unmap") {
      // any range: the drivers split large leaves it cuts
      const n = Math.min(o.n, BIG_SPAN - o.at);
      r.domain.unmap(IOVA0 + o.at, n);
      for (let i = 0; i < n; i++) mapped.delete(o.at + i);
    } else dmaAt(o.at, o.write);
  }
  for (const p of probes) dmaAt(p, false);
}

for (const make of formatRigs()) {
  const name = make().name;
  test(`${name}: after random map/unmap sets (large leaves included, cut by unmaps), every DMA translation equals a per-page reference`, () => {
    fc.assert(
      fc.property(fc.array(bigOpArb, { minLength: 5, maxLength: 60 }), fc.array(fc.nat(BIG_SPAN - 1), { minLength: 64, maxLength: 64 }), (ops, probes) =>
        checkFormat(make, ops, probes),
      ),
      { seed: 0xf0a7, numRuns: 60 },
    );
  });
}
