/**
 * The VT-d unit serves the usual DMA (user level, within one page, a number IOVA, an IOTLB hit with
 * the permission) on a short path in dma(); everything else takes the general page-by-page path.
 * Both must give the same answers: two identical units get the same random request sequences, one
 * with number IOVAs (the short path where it applies) and one with bigint IOVAs (never the short
 * path), and must agree on every result, on memory, on the fault records and on the IOTLB's counts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { DMA_BASE as BASE, DMA_FS_PASID as FS_PASID, DMA_SID as SID, PAGE, assertSameUnitState, dmaSide as side } from "./vtd-unit-helpers.js";
import { dmaReqs, runDmaReq } from "./dma-diff.js";

const req = dmaReqs(BASE - 1, BASE + 9, [SID, SID, SID, 0x0311], [-1, -1, -1, FS_PASID, FS_PASID, 0, 7]);

test("dma: the short path for the usual request and the general path give the same results, memory, fault records and IOTLB counts", () => {
  fc.assert(
    fc.property(fc.array(req, { minLength: 1, maxLength: 40 }), (reqs) => {
      const fast = side();
      const slow = side();
      for (const r of reqs) {
        const a = runDmaReq(fast.unit, r, false);
        const b = runDmaReq(slow.unit, r, true);
        assert.deepEqual(a, b, JSON.stringify(r));
      }
      assertSameUnitState(fast.unit, fast.data, slow.unit, slow.data, 8);
    }),
    {
      numRuns: 150,
      examples: [
        // a supervisor request caches a supervisor-only page; a user request must not use that entry
        [
          [
            { page: BASE + 6, off: 0, len: PAGE, write: true, priv: true, sid: SID, pasid: FS_PASID, fill: 1 },
            { page: BASE + 6, off: 0, len: PAGE, write: true, priv: false, sid: SID, pasid: FS_PASID, fill: 2 },
            { page: BASE + 6, off: 8, len: 16, write: false, priv: false, sid: SID, pasid: FS_PASID, fill: 3 },
          ],
        ],
      ],
    },
  );
});

test("dma: a number IOVA that is not an integer, negative or beyond 2^53 is refused as with a bigint one", () => {
  const s = side();
  for (const iova of [BASE * PAGE + 0.5, -PAGE, 2 ** 53 + PAGE]) {
    assert.throws(() => s.unit.dma({ sid: SID, pasid: -1, iova, length: 4, write: true, data: new Uint8Array(4) }), /DMA address range/, String(iova));
  }
  assert.throws(() => s.unit.dma({ sid: 0x10000, pasid: -1, iova: BASE * PAGE, length: 4, write: true, data: new Uint8Array(4) }), /source-id/);
  assert.throws(() => s.unit.dma({ sid: SID, pasid: 1 << 20, iova: BASE * PAGE, length: 4, write: true, data: new Uint8Array(4) }), /PASID/);
  assert.throws(() => s.unit.dma({ sid: SID, pasid: -1, iova: BASE * PAGE, length: 8, write: true, data: new Uint8Array(4) }), /DMA length and buffer/);
});
