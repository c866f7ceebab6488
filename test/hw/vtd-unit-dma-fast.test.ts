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
import { PhysMem } from "../../src/mm/phys.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { PT_READ, PT_USER, PT_WRITE, vtdFirstStage, vtdSecondStage } from "../../src/hw/pagetable/format.js";
import { Pgtt } from "../../src/hw/vtd/tables.js";
import { DEFAULT_ECAP, VtdRig, VtdUnit } from "../../src/hw/vtd/unit.js";
import { PAGE, assertSameUnitState } from "./vtd-unit-helpers.js";
import { dmaReqs, runDmaReq } from "./dma-diff.js";

const SID = 0x0310;
const BASE = 0x40; // the domains map input pages BASE .. BASE+7 (some read-only), page BASE+8 is a hole
const FS_PASID = 5; // a first-stage domain, whose last two pages are supervisor-only

interface Side {
  unit: VtdUnit;
  data: number;
}

/**
 * A unit with a second-stage domain at PASID 0 (requests without PASID) and a first-stage one at
 * FS_PASID, each over 8 pages of the same memory.
 */
function side(): Side {
  const unit = new VtdUnit(new PhysMem(), { ecap: { ...DEFAULT_ECAP, srs: 1 } }); // supervisor requests
  const rig = new VtdRig(unit);
  const ss = new PageTableEngine(unit.mem, vtdSecondStage({ addressWidth: 48 }));
  rig.setContext(SID);
  rig.setPasid(SID, 0, { pgtt: Pgtt.SECOND_STAGE, aw: 2, did: 3, ssptptr: ss.root * PAGE, ssade: 0 });
  const data = unit.mem.phys.allocRun(8);
  ss.map(BASE, data, 6, PT_READ | PT_WRITE);
  ss.map(BASE + 6, data + 6, 2, PT_READ);
  const fs = new PageTableEngine(unit.mem, vtdFirstStage());
  rig.setPasid(SID, FS_PASID, { pgtt: Pgtt.FIRST_STAGE, did: 4, fsptptr: fs.root * PAGE, sre: 1 });
  fs.map(BASE, data, 4, PT_READ | PT_WRITE | PT_USER);
  fs.map(BASE + 4, data + 4, 2, PT_READ | PT_USER);
  fs.map(BASE + 6, data + 6, 2, PT_READ | PT_WRITE);
  return { unit, data };
}

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
