/**
 * The SMMUv3 unit serves the usual DMA (user level, within one page, a number IOVA, on the stream it
 * resolved last, a TLB hit with the permission) on a short path in dma(); everything else takes the
 * general path. Both must give the same answers: two identical units get the same random request
 * sequences, one with number IOVAs (the short path where it applies) and one with bigint IOVAs
 * (never the short path), and must agree on every result, on memory, on the events recorded and on
 * the TLB's counts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { SteConfig } from "../../src/hw/smmuv3/tables.js";
import { Rig, RO, RW, linuxCd } from "./smmuv3-unit-harness.js";
import { PAGE, dmaReqs, runDmaReq, type DmaReq } from "./dma-diff.js";
import { PT_ACCESSED, PT_READ, PT_WRITE } from "../../src/hw/pagetable/format.js";

const BASE = 0x100; // pages BASE .. BASE+7 mapped on each stream (some read-only, some kernel-only), BASE+8 a hole

interface Side {
  rig: Rig;
  data: number;
}

/** Streams 3 and 4: stage 1 through one CD each (ASIDs 5 and 6) over the same 8 data pages. */
function side(): Side {
  const rig = new Rig();
  const data = rig.dataPages(8);
  for (const [sid, asid] of [
    [3, 5],
    [4, 6],
  ]) {
    const pt = rig.s1Table();
    pt.map(BASE, data, 4, RW);
    pt.map(BASE + 4, data + 4, 2, RO);
    pt.map(BASE + 6, data + 6, 2, PT_READ | PT_WRITE | PT_ACCESSED); // no PT_USER: privileged only
    const cdt = rig.alloc(1);
    rig.writeCd(cdt, linuxCd(pt.root * PAGE, asid));
    rig.writeSte(sid, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt });
  }
  return { rig, data };
}

const req = dmaReqs(BASE - 1, BASE + 8, [3, 3, 3, 4, 7], [-1]);

test("dma: the short path for the usual request and the general path give the same results, memory, events and TLB counts", () => {
  fc.assert(
    fc.property(fc.array(req, { minLength: 1, maxLength: 40 }), (reqs) => {
      const fast = side();
      const slow = side();
      for (const r of reqs) assert.deepEqual(runDmaReq(fast.rig.unit, r, false), runDmaReq(slow.rig.unit, r, true), JSON.stringify(r));
      assert.deepEqual(fast.rig.mem.read(fast.data * PAGE, 8 * PAGE), slow.rig.mem.read(slow.data * PAGE, 8 * PAGE), "memory");
      assert.deepEqual(fast.rig.events(), slow.rig.events(), "events");
      assert.deepEqual(fast.rig.unit.tlb.stats, slow.rig.unit.tlb.stats, "TLB counts");
    }),
    {
      numRuns: 150,
      examples: [
        // a privileged request caches a kernel-only page; a user request must not use that entry
        [
          [
            { page: BASE + 6, off: 0, len: PAGE, write: true, priv: true, sid: 3, pasid: -1, fill: 1 },
            { page: BASE + 6, off: 0, len: PAGE, write: true, priv: false, sid: 3, pasid: -1, fill: 2 },
            { page: BASE + 6, off: 8, len: 16, write: false, priv: false, sid: 3, pasid: -1, fill: 3 },
          ],
        ],
        // the short path only for the stream resolved last
        [
          [
            { page: BASE, off: 0, len: PAGE, write: true, priv: false, sid: 3, pasid: -1, fill: 1 },
            { page: BASE + 1, off: 0, len: PAGE, write: true, priv: false, sid: 4, pasid: -1, fill: 2 },
            { page: BASE, off: 0, len: 64, write: true, priv: false, sid: 3, pasid: -1, fill: 3 },
            { page: BASE + 4, off: 0, len: 64, write: true, priv: false, sid: 3, pasid: -1, fill: 4 },
          ],
        ],
      ],
    },
  );
});

/** One request through dmaBuffered (a device buffer of the rig's memory), as runDmaReq reports it. */
function runBuffered(s: Side, r: DmaReq): ReturnType<typeof runDmaReq> {
  if (r.priv) return runDmaReq(s.rig.unit, r, false); // (dmaBuffered makes user-level requests only)
  const buf = s.rig.mem.phys.dmaBuffer(2 * PAGE);
  buf.bytes.fill(r.write ? r.fill : 0);
  try {
    const res = s.rig.unit.dmaBuffered(r.sid, r.pasid, r.page * PAGE + r.off, r.len, r.write, buf);
    return { res, data: r.write ? new Uint8Array(r.len).fill(r.fill) : buf.bytes.slice(0, r.len) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

test("dmaBuffered gives dma()'s result for the equivalent request (the usual one in WebAssembly): results, bytes, memory, events and TLB counts", () => {
  fc.assert(
    fc.property(fc.array(req, { minLength: 1, maxLength: 40 }), (reqs) => {
      const a = side();
      const b = side();
      // every frame but one with contents (the read-only ones too: a write there must fault, not land)
      for (const x of [a, b]) for (let k = 0; k < 8; k++) if (k !== 2) x.rig.mem.write((x.data + k) * PAGE, new Uint8Array(PAGE).fill(0x20 + k));
      for (const r of reqs) assert.deepEqual(runBuffered(a, r), runDmaReq(b.rig.unit, r, false), JSON.stringify(r));
      assert.deepEqual(a.rig.mem.read(a.data * PAGE, 8 * PAGE), b.rig.mem.read(b.data * PAGE, 8 * PAGE), "memory");
      assert.deepEqual(a.rig.events(), b.rig.events(), "events");
      assert.deepEqual(a.rig.unit.tlb.stats, b.rig.unit.tlb.stats, "TLB counts");
    }),
    {
      numRuns: 200,
      examples: [
        // the page written first (so it has contents in the data memory), then read (the TLB
        // caches it), then written again: through WebAssembly; a read-only page written after a read
        [
          [
            { page: BASE, off: 0, len: 64, write: true, priv: false, sid: 3, pasid: -1, fill: 1 },
            { page: BASE, off: 0, len: 64, write: false, priv: false, sid: 3, pasid: -1, fill: 2 },
            { page: BASE, off: 64, len: 64, write: true, priv: false, sid: 3, pasid: -1, fill: 3 },
            { page: BASE + 4, off: 0, len: 8, write: false, priv: false, sid: 3, pasid: -1, fill: 4 },
            { page: BASE + 4, off: 0, len: 8, write: true, priv: false, sid: 3, pasid: -1, fill: 5 },
          ],
        ],
      ],
    },
  );
});

test("dmaBuffered on the SMMUv3 unit does the usual request in WebAssembly", () => {
  const s = side();
  const buf = s.rig.mem.phys.dmaBuffer(PAGE);
  buf.bytes.fill(0x3c);
  const iova = BASE * PAGE;
  assert.equal(s.rig.unit.dmaBuffered(3, -1, iova, PAGE, true, buf).status, "done"); // walks, writes through JavaScript
  const h = s.rig.unit.tlb.placedHits;
  assert.equal(s.rig.unit.dmaBuffered(3, -1, iova + 256, 32, true, buf).bytes, 32);
  assert.equal(s.rig.unit.tlb.placedHits, h + 1, "a hit counted by the WebAssembly lookup");
  assert.deepEqual(s.rig.mem.read(s.data * PAGE, 8), new Uint8Array(8).fill(0x3c));
});
