/** The IOTLB: lookups by key over several page sizes, replacement policies, invalidation filters. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Iotlb, type IotlbFilter } from "../../src/hw/iotlb.js";

test("a lookup finds the entry whose page-size span covers the page, for its key only", () => {
  const t = new Iotlb();
  t.insert(7, 0, 0x200, 9, 0x8000, 3, 1, 0); // 2 MiB at vpn 0x200
  t.insert(7, 0, 0x401, 0, 0x9999, 1, 1, 0); // 4 KiB
  assert.equal(t.lookup(7, 0, 0x2ff), 0x80ff);
  assert.equal(t.perms(), 3);
  assert.equal(t.entryPages(), 512);
  assert.equal(t.lookup(7, 0, 0x401), 0x9999);
  assert.equal(t.entryPages(), 1);
  assert.equal(t.lookup(7, 1, 0x2ff), -1, "another PASID misses");
  assert.equal(t.lookup(8, 0, 0x2ff), -1, "another source misses");
  assert.equal(t.lookup(7, 0, 0x400), -1);
  assert.deepEqual([t.stats.hits, t.stats.misses], [2, 3]);
});

test("the reset policy drops every entry when a new one arrives at capacity (QEMU's VT-d IOTLB)", () => {
  const t = new Iotlb({ capacity: 4 });
  for (let i = 0; i < 4; i++) t.insert(1, 0, i, 0, 100 + i, 1, 0, 0);
  assert.equal(t.size, 4);
  t.insert(1, 0, 9, 0, 109, 1, 0, 0);
  assert.equal(t.size, 1);
  assert.equal(t.lookup(1, 0, 0), -1);
  assert.equal(t.lookup(1, 0, 9), 109);
  assert.equal(t.stats.resets, 1);
});

test("the fifo policy evicts the oldest entry; re-inserting a key refreshes it", () => {
  const t = new Iotlb({ capacity: 3, policy: "fifo" });
  t.insert(1, 0, 0, 0, 10, 1, 0, 0);
  t.insert(1, 0, 1, 0, 11, 1, 0, 0);
  t.insert(1, 0, 2, 0, 12, 1, 0, 0);
  t.insert(1, 0, 0, 0, 20, 1, 0, 0); // refresh: 1 is now the oldest
  t.insert(1, 0, 3, 0, 13, 1, 0, 0);
  assert.equal(t.lookup(1, 0, 1), -1);
  assert.equal(t.lookup(1, 0, 0), 20);
  assert.equal(t.lookup(1, 0, 2), 12);
  assert.equal(t.lookup(1, 0, 3), 13);
  assert.equal(t.stats.evictions, 1);
});

test("invalidation by tag, key and range drops exactly the overlapping matching entries", () => {
  const t = new Iotlb();
  t.insert(1, 0, 0x200, 9, 0x1000, 3, 5, 0); // did 5, 2 MiB
  t.insert(1, 3, 0x400, 0, 0x2000, 3, 5, 0); // did 5, pasid 3
  t.insert(2, 0, 0x400, 0, 0x3000, 3, 6, 0); // did 6
  assert.equal(t.invalidate({ tagA: 5, vpn: 0x3ff, npages: 1 }), 1, "the 2 MiB entry overlaps page 0x3ff");
  assert.equal(t.lookup(1, 0, 0x200), -1);
  assert.equal(t.invalidate({ tagA: 5, k2: 0 }), 0);
  assert.equal(t.invalidate({ tagA: 6 }), 1);
  assert.equal(t.lookup(1, 3, 0x400), 0x2000);
  assert.equal(t.invalidate({}), 1);
  assert.equal(t.size, 0);
});

/** The naive reference: a list of entries, the same replacement and invalidation rules. */
interface RefEntry {
  k1: number;
  k2: number;
  vpn: number;
  s: number;
  ppn: number;
  tagA: number;
}
const matches = (e: RefEntry, f: IotlbFilter): boolean =>
  (f.k1 === undefined || e.k1 === f.k1) &&
  (f.k2 === undefined || e.k2 === f.k2) &&
  (f.tagA === undefined || e.tagA === f.tagA) &&
  (f.vpn === undefined || (e.vpn < f.vpn + (f.npages as number) && e.vpn + 2 ** e.s > f.vpn));

test("fast-check: inserts, lookups and invalidations agree with a list model (both policies)", () => {
  const key = fc.record({ k1: fc.integer({ min: 0, max: 3 }), k2: fc.integer({ min: 0, max: 2 }), vpn: fc.integer({ min: 0, max: 4096 }), s: fc.constantFrom(0, 0, 0, 9) });
  const op = fc.oneof(
    fc.record({ op: fc.constant("insert" as const), key, ppn: fc.integer({ min: 0, max: 1 << 20 }), tagA: fc.integer({ min: 0, max: 3 }) }),
    fc.record({ op: fc.constant("lookup" as const), key }),
    fc.record({
      op: fc.constant("inval" as const),
      f: fc.record(
        { k1: fc.integer({ min: 0, max: 3 }), k2: fc.integer({ min: 0, max: 2 }), tagA: fc.integer({ min: 0, max: 3 }), range: fc.tuple(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: 1, max: 600 })) },
        { requiredKeys: [] },
      ),
    }),
  );
  fc.assert(
    fc.property(fc.constantFrom("reset" as const, "fifo" as const), fc.integer({ min: 1, max: 40 }), fc.array(op, { maxLength: 300 }), (policy, capacity, ops) => {
      const t = new Iotlb({ capacity, policy });
      let ref: RefEntry[] = []; // insertion order, oldest first
      for (const o of ops) {
        if (o.op === "insert") {
          const vpn = o.key.vpn - (o.key.vpn % 2 ** o.key.s);
          const same = (e: RefEntry) => e.k1 === o.key.k1 && e.k2 === o.key.k2 && e.vpn === vpn && e.s === o.key.s;
          const had = ref.some(same);
          ref = ref.filter((e) => !same(e));
          if (!had && ref.length >= capacity) {
            if (policy === "reset") ref = [];
            else ref.shift();
          }
          ref.push({ k1: o.key.k1, k2: o.key.k2, vpn, s: o.key.s, ppn: o.ppn, tagA: o.tagA });
          t.insert(o.key.k1, o.key.k2, vpn, o.key.s, o.ppn, 1, o.tagA, 0);
        } else if (o.op === "lookup") {
          const { k1, k2, vpn } = o.key;
          // smallest page size first, as the IOTLB probes
          const hits = ref.filter((e) => e.k1 === k1 && e.k2 === k2 && vpn >= e.vpn && vpn < e.vpn + 2 ** e.s).sort((a, b) => a.s - b.s);
          const want = hits.length ? hits[0].ppn + (vpn - hits[0].vpn) : -1;
          assert.equal(t.lookup(k1, k2, vpn), want);
        } else {
          const f: IotlbFilter = { k1: o.f.k1, k2: o.f.k2, tagA: o.f.tagA };
          if (o.f.range) {
            f.vpn = o.f.range[0];
            f.npages = o.f.range[1];
          }
          const before = ref.length;
          ref = ref.filter((e) => !matches(e, f));
          assert.equal(t.invalidate(f), before - ref.length);
        }
        assert.equal(t.size, ref.length);
      }
    }),
    { seed: 0x10b, numRuns: 300 },
  );
});
