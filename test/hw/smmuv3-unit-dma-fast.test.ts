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
import { PAGE, dmaReqs, runDmaReq } from "./dma-diff.js";
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
