/**
 * The VT-d unit's caches: the context cache, the PASID cache and the IOTLB keep what they cached
 * until the invalidation that matches it, and only that one; a model test holds the IOTLB to a
 * naive per-page reference under random map / unmap / access / invalidation sequences.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { PT_ACCESSED, PT_DIRTY, PT_READ, PT_USER, PT_WRITE, vtdFirstStage, vtdSecondStage } from "../../src/hw/pagetable/format.js";
import type { QiDescriptorInput } from "../../src/hw/vtd/qi.js";
import { Pgtt } from "../../src/hw/vtd/tables.js";
import { SmFault, type VtdRig, type VtdUnit } from "../../src/hw/vtd/unit.js";
import { PAGE, newUnit, read, write } from "./vtd-unit-helpers.js";

const RW = PT_READ | PT_WRITE;

function ssDomain(unit: VtdUnit, rig: VtdRig, sid: number, did: number, opts: { ssade?: boolean; pasid?: number } = {}): PageTableEngine {
  const ss = new PageTableEngine(unit.mem, vtdSecondStage({ addressWidth: 48 }));
  rig.setContext(sid);
  rig.setPasid(sid, opts.pasid ?? 0, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did, ssptptr: ss.root * PAGE, ssade: opts.ssade ? 1 : 0 });
  return ss;
}

test("the context cache keeps a cleared context entry until a device-selective invalidation that matches its source-id under the function mask", () => {
  const { unit, rig } = newUnit();
  const sid = 0x0312; // bus 3, device 2, function 2
  const ss = ssDomain(unit, rig, sid, 1);
  ss.map(0x10, unit.mem.phys.allocRun(1), 1, RW);
  assert.equal(read(unit, sid, -1, 0x10000n, 1).r.status, "done");
  rig.clearContext(sid);
  // Empty the IOTLB and the PASID cache: only the context cache stands between the request and memory.
  const flushRest: QiDescriptorInput[] = [{ kind: "iotlb", g: 1 }, { kind: "pasidCache", g: 3 }];
  assert.ok(rig.submit(...flushRest));
  assert.equal(read(unit, sid, -1, 0x10000n, 1).r.status, "done", "stale context entry");
  assert.ok(rig.submit({ kind: "contextCache", g: 3, sid: 0x0316, fm: 0 }, ...flushRest));
  assert.equal(read(unit, sid, -1, 0x10000n, 1).r.status, "done", "function 6 is not function 2");
  assert.ok(rig.submit({ kind: "contextCache", g: 3, sid: 0x0412, fm: 3 }, ...flushRest));
  assert.equal(read(unit, sid, -1, 0x10000n, 1).r.status, "done", "another bus");
  assert.ok(rig.submit({ kind: "contextCache", g: 3, sid: 0x0316, fm: 1 }, ...flushRest));
  assert.equal(read(unit, sid, -1, 0x10000n, 1).r.fault?.code, SmFault.CONTEXT_ENTRY_NOT_PRESENT, "FM 1 ignores function bit 2: 6 matches 2");
});

test("context-cache invalidation: global and domain-selective (the DID is ignored in scalable mode) drop every entry", () => {
  for (const g of [1, 2]) {
    const { unit, rig } = newUnit();
    const ss = ssDomain(unit, rig, 0x0100, 1);
    ss.map(0, unit.mem.phys.allocRun(1), 1, RW);
    read(unit, 0x0100, -1, 0n, 1);
    assert.equal(unit.contextCacheSize, 1);
    rig.submit({ kind: "contextCache", g, did: 999 });
    assert.equal(unit.contextCacheSize, 0);
  }
});

test("the PASID cache keeps a changed PASID entry until a PASID-cache invalidation with its DID (and PASID)", () => {
  const { unit, rig } = newUnit();
  const sid = 0x0500;
  const ss = ssDomain(unit, rig, sid, 7, { pasid: 3 });
  ss.map(0x10, unit.mem.phys.allocRun(1), 1, RW);
  assert.equal(read(unit, sid, 3, 0x10000n, 1).r.status, "done");
  rig.clearPasid(sid, 3);
  const iotlbAll: QiDescriptorInput = { kind: "iotlb", g: 1 };
  assert.ok(rig.submit(iotlbAll));
  assert.equal(read(unit, sid, 3, 0x10000n, 1).r.status, "done", "stale PASID entry");
  assert.ok(rig.submit({ kind: "pasidCache", g: 1, did: 8, pasid: 3 }, iotlbAll));
  assert.equal(read(unit, sid, 3, 0x10000n, 1).r.status, "done", "another DID");
  assert.ok(rig.submit({ kind: "pasidCache", g: 1, did: 7, pasid: 4 }, iotlbAll));
  assert.equal(read(unit, sid, 3, 0x10000n, 1).r.status, "done", "another PASID");
  assert.ok(rig.submit({ kind: "pasidCache", g: 1, did: 7, pasid: 3 }, iotlbAll));
  assert.equal(read(unit, sid, 3, 0x10000n, 1).r.fault?.code, SmFault.PASID_ENTRY_NOT_PRESENT);
});

test("PASID-cache invalidation: domain-selective drops every PASID of the DID; global drops all", () => {
  const { unit, rig } = newUnit();
  const ss = ssDomain(unit, rig, 0x0100, 1, { pasid: 1 });
  rig.setPasid(0x0100, 2, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did: 1, ssptptr: ss.root * PAGE });
  rig.setPasid(0x0100, 3, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did: 2, ssptptr: ss.root * PAGE });
  for (const p of [1, 2, 3]) read(unit, 0x0100, p, 0n, 1);
  assert.equal(unit.pasidCacheSize, 3);
  rig.submit({ kind: "pasidCache", g: 0, did: 1 });
  assert.equal(unit.pasidCacheSize, 1);
  rig.submit({ kind: "pasidCache", g: 3 });
  assert.equal(unit.pasidCacheSize, 0);
});

test("an unmapped page keeps translating from the IOTLB until a page-selective invalidation of its DID and range", () => {
  const { unit, rig } = newUnit();
  const sid = 0x0600;
  const ss = ssDomain(unit, rig, sid, 4);
  const data = unit.mem.phys.allocRun(1);
  ss.map(0x123, data, 1, RW);
  assert.equal(unit.translatePage(sid, -1, 0x123, false), data);
  ss.unmap(0x123, 1);
  const stillThere = (): boolean => unit.translatePage(sid, -1, 0x123, false) === data;
  const misses: QiDescriptorInput[] = [
    { kind: "iotlb", g: 3, did: 5, addr: 0x123000, am: 0 }, // another DID
    { kind: "iotlb", g: 3, did: 4, addr: 0x124000, am: 0 }, // the next page
    { kind: "iotlb", g: 3, did: 4, addr: 0x120000, am: 1 }, // 0x120-0x121
    { kind: "pasidIotlb", g: 2, did: 4, pasid: 1 }, // another PASID
    { kind: "iotlb", g: 2, did: 3 }, // another domain
  ];
  for (const d of misses) {
    assert.ok(rig.submit(d));
    assert.ok(stillThere(), `survives ${JSON.stringify(d)}`);
  }
  assert.ok(rig.submit({ kind: "iotlb", g: 3, did: 4, addr: 0x120000, am: 2 })); // 0x120-0x123
  assert.equal(unit.translatePage(sid, -1, 0x123, false), -1);
});

test("PASID-based IOTLB invalidation reaches requests without PASID through RID_PASID, and first-stage entries by page", () => {
  const { unit, rig } = newUnit();
  const sid = 0x0700;
  const fs = new PageTableEngine(unit.mem, vtdFirstStage());
  rig.setContext(sid);
  rig.setPasid(sid, 0, { pgtt: Pgtt.FIRST_STAGE, did: 9, fsptptr: fs.root * PAGE });
  const data = unit.mem.phys.allocRun(2);
  fs.map(0x40, data, 2, RW | PT_USER | PT_ACCESSED | PT_DIRTY);
  assert.equal(unit.translatePage(sid, -1, 0x40, true), data);
  assert.equal(unit.translatePage(sid, 0, 0x41, true), data + 1);
  fs.unmap(0x40, 2);
  rig.submit({ kind: "pasidIotlb", g: 3, did: 9, pasid: 0, addr: 0x40000, am: 0 });
  assert.equal(unit.translatePage(sid, -1, 0x40, true), -1, "the RID_PASID entry went");
  assert.equal(unit.translatePage(sid, 0, 0x41, true), data + 1, "page 0x41 stays");
  rig.submit({ kind: "pasidIotlb", g: 2, did: 9, pasid: 0 });
  assert.equal(unit.translatePage(sid, 0, 0x41, true), -1);
});

test("a 2 MiB IOTLB entry goes with a page-selective invalidation of any page in it; domain and global invalidations drop everything of theirs", () => {
  const { unit, rig } = newUnit();
  const ss = ssDomain(unit, rig, 0x0800, 2);
  const data = unit.mem.phys.allocRun(1024, 512);
  ss.map(0x200, data, 512, RW);
  assert.equal(unit.translatePage(0x0800, -1, 0x2ff, false), data + 0xff);
  assert.deepEqual(unit.iotlb.entries().map((e) => e.pages), [512]);
  rig.submit({ kind: "iotlb", g: 3, did: 2, addr: 0x3fe000, am: 0 });
  assert.equal(unit.iotlb.size, 0);
  const ss2 = ssDomain(unit, rig, 0x0801, 3);
  ss2.map(0, data + 512, 2, RW);
  unit.translatePage(0x0800, -1, 0x200, false);
  unit.translatePage(0x0801, -1, 0, false);
  unit.translatePage(0x0801, -1, 1, false);
  rig.submit({ kind: "iotlb", g: 2, did: 3 });
  assert.deepEqual(unit.iotlb.entries().map((e) => e.tagA), [2]);
  rig.submit({ kind: "iotlb", g: 1 });
  assert.equal(unit.iotlb.size, 0);
});

test("with SSADE the first write after a read walks again and sets D; once D is cleared, writes set it again only after an IOTLB flush", () => {
  const { unit, rig } = newUnit();
  const sid = 0x0900;
  const ss = ssDomain(unit, rig, sid, 5, { ssade: true });
  const data = unit.mem.phys.allocRun(1);
  ss.map(0x10, data, 1, RW);
  const dirty = (): number => ss.readAndClearDirty(0x10, 1, null, true);
  assert.equal(read(unit, sid, -1, 0x10000n, 1).r.status, "done");
  assert.equal(dirty(), 0);
  assert.equal(write(unit, sid, -1, 0x10000n, [1]).status, "done");
  assert.equal(dirty(), 1);
  assert.equal(unit.stats.walks, 2);
  ss.readAndClearDirty(0x10, 1); // software clears D
  assert.equal(write(unit, sid, -1, 0x10000n, [2]).status, "done");
  assert.equal(dirty(), 0, "the IOTLB entry (writable, dirty) serves the write: D stays clear");
  rig.submit({ kind: "iotlb", g: 3, did: 5, addr: 0x10000, am: 0 });
  write(unit, sid, -1, 0x10000n, [3]);
  assert.equal(dirty(), 1);
});

test("without SSADE the hardware never sets A or D in second-stage entries", () => {
  const { unit, rig } = newUnit();
  const ss = ssDomain(unit, rig, 0x0a00, 5);
  ss.map(0x10, unit.mem.phys.allocRun(1), 1, RW);
  write(unit, 0x0a00, -1, 0x10000n, [1]);
  const leaf = ss.walk(0x10).steps[3];
  assert.equal(leaf.lo & 0x300, 0);
});

test("cache capacities: a full context or PASID cache is emptied before a new entry; the IOTLB resets at capacity", () => {
  const { unit, rig } = newUnit({ contextCacheCapacity: 2, pasidCacheCapacity: 2, iotlb: { capacity: 4 } });
  const data = unit.mem.phys.allocRun(1);
  for (const sid of [0x100, 0x101, 0x102]) ssDomain(unit, rig, sid, 1).map(0, data, 8, RW);
  read(unit, 0x100, -1, 0n, 1);
  read(unit, 0x101, -1, 0n, 1);
  assert.equal(unit.contextCacheSize, 2);
  read(unit, 0x102, -1, 0n, 1);
  assert.equal(unit.contextCacheSize, 1);
  assert.equal(unit.pasidCacheSize, 1);
  assert.equal(unit.iotlb.size, 3);
  read(unit, 0x102, -1, BigInt(PAGE), 1);
  assert.equal(unit.iotlb.size, 4);
  read(unit, 0x102, -1, BigInt(2 * PAGE), 1);
  assert.equal(unit.iotlb.size, 1, "the fifth entry reset the 4-entry IOTLB");
  assert.equal(unit.iotlb.stats.resets, 1);
});

// ---- model test ----------------------------------------------------------------------------------------

type Op =
  | { op: "map"; d: number; vpn: number; f: number; w: boolean }
  | { op: "unmap"; d: number; vpn: number }
  | { op: "access"; d: number; vpn: number; w: boolean; dma: boolean }
  | { op: "flushRange"; d: number; vpn: number; am: number }
  | { op: "flushDomain"; d: number }
  | { op: "flushGlobal" }
  | { op: "flushOther"; d: number };

const PAGES = 8;
const FRAMES = 8;

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant("map" as const), d: fc.nat(1), vpn: fc.nat(PAGES - 1), f: fc.nat(FRAMES - 1), w: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("unmap" as const), d: fc.nat(1), vpn: fc.nat(PAGES - 1) }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant("access" as const), d: fc.nat(1), vpn: fc.nat(PAGES - 1), w: fc.boolean(), dma: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("flushRange" as const), d: fc.nat(1), vpn: fc.nat(PAGES - 1), am: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("flushDomain" as const), d: fc.nat(1) }) },
  { weight: 1, arbitrary: fc.constant({ op: "flushGlobal" as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("flushOther" as const), d: fc.nat(1) }) },
);

interface Pte {
  f: number;
  w: boolean;
}

/**
 * Two domains: 0 = second stage (DID 1) for requests without PASID of sid 0x0100; 1 = first stage
 * (DID 2) for PASID 5 of sid 0x0200 (dirty-tracked: a read fills the cache without write).
 */
function runModel(ops: Op[], flushEveryChange: boolean): void {
  const { unit, rig } = newUnit();
  const frames = unit.mem.phys.allocRun(FRAMES);
  for (let i = 0; i < FRAMES; i++) unit.mem.write((frames + i) * PAGE, new Uint8Array([i + 1]));
  const ss = new PageTableEngine(unit.mem, vtdSecondStage({ addressWidth: 48 }));
  rig.setContext(0x0100);
  rig.setPasid(0x0100, 0, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did: 1, ssptptr: ss.root * PAGE });
  const fs = new PageTableEngine(unit.mem, vtdFirstStage());
  rig.setContext(0x0200);
  rig.setPasid(0x0200, 5, { pgtt: Pgtt.FIRST_STAGE, did: 2, fsptptr: fs.root * PAGE });
  const engines = [ss, fs];
  const sids = [0x0100, 0x0200];
  const pasids = [-1, 5];
  const dids = [1, 2];
  const tracksDirty = [false, true];
  const table = [new Map<number, Pte>(), new Map<number, Pte>()];
  const cache = [new Map<number, Pte>(), new Map<number, Pte>()];
  const flushRange = (d: number, vpn: number, am: number): void => {
    const n = 2 ** am;
    const base = Math.floor(vpn / n) * n;
    // The address need not be aligned: the hardware ignores its low AM bits (as QEMU's model does).
    const desc: QiDescriptorInput =
      d === 0 ? { kind: "iotlb", g: 3, did: 1, addr: vpn * PAGE, am } : { kind: "pasidIotlb", g: 3, did: 2, pasid: 5, addr: vpn * PAGE, am };
    assert.ok(rig.submit(desc));
    for (let v = base; v < base + n; v++) cache[d].delete(v);
  };
  for (const o of ops) {
    switch (o.op) {
      case "map": {
        if (table[o.d].has(o.vpn)) break;
        const prot = o.d === 0 ? (o.w ? RW : PT_READ) : (o.w ? RW : PT_READ) | PT_USER | PT_ACCESSED;
        engines[o.d].map(o.vpn, frames + o.f, 1, prot);
        table[o.d].set(o.vpn, { f: o.f, w: o.w });
        if (flushEveryChange) flushRange(o.d, o.vpn, 0);
        break;
      }
      case "unmap":
        if (!table[o.d].has(o.vpn)) break;
        engines[o.d].unmap(o.vpn, 1);
        table[o.d].delete(o.vpn);
        if (flushEveryChange) flushRange(o.d, o.vpn, 0);
        break;
      case "access": {
        // The reference: a cached entry that allows the access answers; else the table decides
        // and (on success) replaces the cached entry.
        const c = cache[o.d].get(o.vpn);
        let want = -1;
        if (c !== undefined && (!o.w || c.w)) want = c.f;
        else {
          const t = table[o.d].get(o.vpn);
          if (t !== undefined && (!o.w || t.w)) {
            want = t.f;
            cache[o.d].set(o.vpn, { f: t.f, w: t.w && (o.w || !tracksDirty[o.d]) });
          }
        }
        if (o.dma) {
          const data = new Uint8Array(1);
          const r = unit.dma({ sid: sids[o.d], pasid: pasids[o.d], iova: BigInt(o.vpn * PAGE), length: 1, write: o.w, data: o.w ? new Uint8Array([want + 1]) : data });
          assert.equal(r.status, want < 0 ? "faulted" : "done", `dma ${JSON.stringify(o)}`);
          if (!o.w && want >= 0) assert.equal(data[0], want + 1, `dma read ${JSON.stringify(o)}`);
        } else {
          const got = unit.translatePage(sids[o.d], pasids[o.d], o.vpn, o.w);
          assert.equal(got, want < 0 ? -1 : frames + want, `translate ${JSON.stringify(o)}`);
        }
        break;
      }
      case "flushRange":
        flushRange(o.d, o.vpn, o.am);
        break;
      case "flushDomain":
        assert.ok(rig.submit(o.d === 0 ? { kind: "iotlb", g: 2, did: 1 } : { kind: "pasidIotlb", g: 2, did: 2, pasid: 5 }));
        cache[o.d].clear();
        break;
      case "flushGlobal":
        assert.ok(rig.submit({ kind: "iotlb", g: 1 }));
        cache[0].clear();
        cache[1].clear();
        break;
      case "flushOther":
        // Invalidations that match nothing cached: another DID, another PASID of the same DID.
        assert.ok(
          rig.submit(
            { kind: "iotlb", g: 2, did: 3 },
            { kind: "iotlb", g: 3, did: 3, addr: 0, am: 5 },
            { kind: "pasidIotlb", g: 2, did: dids[o.d], pasid: 6 },
            { kind: "pasidIotlb", g: 3, did: dids[o.d], pasid: 6, addr: 0, am: 5 },
            { kind: "pasidIotlb", g: 3, did: 4, pasid: pasids[o.d] < 0 ? 0 : pasids[o.d], addr: 0, am: 5 },
          ),
        );
        break;
    }
  }
}

test("model: with an invalidation after every change, every translation equals the page table (a Map per page)", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 20, maxLength: 120, size: "max" }), (ops) => runModel(ops, true)),
    { numRuns: 150 },
  );
});

test("model: under random invalidation orders a stale IOTLB entry translates exactly until the invalidation that matches it", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 20, maxLength: 160, size: "max" }), (ops) => runModel(ops, false)),
    { numRuns: 200 },
  );
});
