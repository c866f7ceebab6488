/**
 * DmaPort.dmaBuffered on the VT-d unit: a device model's DMA from or to its own buffer
 * (PhysMem.dmaBuffer). In the unit's data memory the usual request is done by dma-wasm.wat (the
 * IOTLB lookup and the copy in WebAssembly); everything else by dma(). Either way the answer must
 * be dma()'s for the equivalent request: two identical units get the same random sequences, one
 * through dmaBuffered and one through dma() with an ordinary array, and must agree on every
 * result, on the bytes read, on memory, on the fault records and on the IOTLB's counts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PhysMem } from "../../src/mm/phys.js";
import { DMA_WASM_BASE64 } from "../../src/hw/dma-wasm-bytes.js";
import type { DmaResult } from "../../src/hw/dma.js";
import { DMA_BASE as BASE, DMA_FS_PASID as FS_PASID, DMA_SID as SID, PAGE, assertSameUnitState, dmaSide, type DmaSide as Side } from "./vtd-unit-helpers.js";

/** Both sides: every frame but one written (the read-only ones too: a write there must fault, not land). */
const side = (): Side => dmaSide(true);

type Op =
  | { op: "dma"; page: number; off: number; len: number; write: boolean; sid: number; pasid: number; fill: number }
  | { op: "flush" }
  | { op: "unmap"; page: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ op: fc.constant("dma" as const), page: fc.integer({ min: BASE - 1, max: BASE + 8 }), off: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 256 }), fc.integer({ min: 0, max: PAGE - 1 })), len: fc.oneof(fc.constant(PAGE), fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 2 * PAGE })), write: fc.boolean(), sid: fc.constantFrom(SID, SID, 0x0311), pasid: fc.constantFrom(-1, -1, FS_PASID, 0, 7), fill: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: "flush" as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("unmap" as const), page: fc.integer({ min: BASE, max: BASE + 7 }) }) },
);

type Out = { res: DmaResult; read: number[] } | { error: string };

function viaBuffer(s: Side, o: Extract<Op, { op: "dma" }>): Out {
  const buf = s.unit.mem.phys.dmaBuffer(2 * PAGE);
  buf.bytes.fill(o.write ? o.fill : 0xee);
  try {
    const res = s.unit.dmaBuffered(o.sid, o.pasid, o.page * PAGE + o.off, o.len, o.write, buf);
    return { res, read: o.write ? [] : [...buf.bytes.subarray(0, o.len)] };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

function viaRequest(s: Side, o: Extract<Op, { op: "dma" }>): Out {
  const data = new Uint8Array(o.len).fill(o.write ? o.fill : 0xee);
  try {
    const res = s.unit.dma({ sid: o.sid, pasid: o.pasid, iova: o.page * PAGE + o.off, length: o.len, write: o.write, data });
    return { res, read: o.write ? [] : [...data] };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

function apply(s: Side, o: Exclude<Op, { op: "dma" }>): void {
  if (o.op === "flush") s.unit.iotlb.clearAll();
  else s.ss.unmap(o.page, 1); // no invalidation: a cached entry goes on being used, on both sides
}

test("dmaBuffered gives dma()'s result for the equivalent request: results, bytes read, memory, fault records, IOTLB counts", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
      const a = side();
      const b = side();
      for (const o of ops) {
        if (o.op !== "dma") {
          apply(a, o);
          apply(b, o);
          continue;
        }
        assert.deepEqual(viaBuffer(a, o), viaRequest(b, o), JSON.stringify(o));
      }
      assertSameUnitState(a.unit, a.data, b.unit, b.data, 8);
    }),
    {
      numRuns: 300,
      examples: [
        // a read caches a read-only page; a write there must fault, not use the entry
        [
          [
            { op: "dma", page: BASE + 6, off: 0, len: 8, write: false, sid: SID, pasid: -1, fill: 1 },
            { op: "dma", page: BASE + 6, off: 0, len: 8, write: true, sid: SID, pasid: -1, fill: 2 },
            { op: "dma", page: BASE + 5, off: 8, len: 8, write: false, sid: SID, pasid: FS_PASID, fill: 3 },
            { op: "dma", page: BASE + 5, off: 8, len: 8, write: true, sid: SID, pasid: FS_PASID, fill: 4 },
          ],
        ],
      ],
    },
  );
});

test("dmaBuffered does the usual request in WebAssembly: an IOTLB hit to a written frame, to or from a buffer in the data memory", () => {
  const s = side();
  const buf = s.unit.mem.phys.dmaBuffer(PAGE);
  assert.notEqual(buf.memory, null, "the buffer is in the data memory");
  buf.bytes.fill(0x5a);
  const iova = (BASE + 1) * PAGE;
  // the first one walks (a miss) and writes the frame through JavaScript
  assert.equal(s.unit.dmaBuffered(SID, -1, iova, PAGE, true, buf).status, "done");
  const before = s.unit.iotlb.placedHits;
  buf.bytes.fill(0x6b, 0, 64);
  assert.equal(s.unit.dmaBuffered(SID, -1, iova + 128, 64, true, buf).bytes, 64);
  assert.equal(s.unit.iotlb.placedHits, before + 1, "a hit counted by the WebAssembly lookup");
  const expect = new Uint8Array(PAGE).fill(0x5a);
  expect.fill(0x6b, 128, 192);
  assert.deepEqual(s.unit.mem.read((s.data + 1) * PAGE, PAGE), expect, "the frame has the bytes");
  const back = s.unit.mem.phys.dmaBuffer(PAGE);
  assert.equal(s.unit.dmaBuffered(SID, -1, iova, PAGE, false, back).bytes, PAGE);
  assert.equal(s.unit.iotlb.placedHits, before + 2);
  assert.deepEqual(back.bytes, expect, "a read brings them back");
  // read-only page: a write is refused there and faults through dma(), as the request would
  assert.equal(s.unit.dmaBuffered(SID, -1, (BASE + 6) * PAGE, 8, false, back).status, "done");
  const hits = s.unit.iotlb.placedHits;
  assert.equal(s.unit.dmaBuffered(SID, -1, (BASE + 6) * PAGE, 8, true, buf).status, "faulted");
  assert.equal(s.unit.iotlb.placedHits, hits, "not served there");
});

test("dmaBuffered leaves to dma(): a buffer of another memory or an ordinary one, a request crossing a page, frames whose contents live elsewhere", () => {
  const s = side();
  const other = new PhysMem().dmaBuffer(PAGE);
  const iova = (BASE + 2) * PAGE;
  other.bytes.fill(1);
  assert.equal(s.unit.dmaBuffered(SID, -1, iova, PAGE, true, other).status, "done");
  const h0 = s.unit.iotlb.placedHits;
  assert.equal(s.unit.dmaBuffered(SID, -1, iova, PAGE, true, other).status, "done");
  assert.equal(s.unit.iotlb.placedHits, h0, "another PhysMem's buffer: JavaScript");
  const mine = s.unit.mem.phys.dmaBuffer(2 * PAGE);
  mine.bytes.fill(2);
  assert.equal(s.unit.dmaBuffered(SID, -1, iova + PAGE - 8, 16, true, mine).bytes, 16, "across two pages");
  assert.equal(s.unit.iotlb.placedHits, h0);
  // a contents hook (server/: frames a real process maps) takes the writes of frame data + 2
  const routed: number[] = [];
  s.unit.mem.phys.contents = {
    read: () => null,
    write: (pfn, off, d) => {
      if (pfn !== s.data + 2) return false;
      routed.push(off, d.length);
      return true;
    },
  };
  assert.equal(s.unit.dmaBuffered(SID, -1, iova + 64, 32, true, mine).bytes, 32);
  assert.deepEqual(routed, [64, 32], "the hook got the write");
  assert.equal(s.unit.iotlb.placedHits, h0);
});

test("the DMA module's bytes are dma-wasm.wat assembled (npm run gen-wasm)", async () => {
  // @ts-expect-error: a JavaScript module without type declarations
  const { assemble } = (await import("../../../scripts/gen-wasm.mjs")) as { assemble: (name: string) => Promise<string> };
  const ts = await assemble("dma-wasm");
  const b64 = [...ts.matchAll(/"([A-Za-z0-9+/=]+)"/g)].map((m) => m[1]).join("");
  assert.equal(b64, DMA_WASM_BASE64, "dma-wasm-bytes.ts is stale: run npm run gen-wasm");
  const mod = new WebAssembly.Module(Buffer.from(DMA_WASM_BASE64, "base64"));
  assert.deepEqual(WebAssembly.Module.exports(mod).map((e) => e.name), ["dma"]);
});

test("a stale IOTLB entry to a freed frame whose slab slot another frame took: dmaBuffered writes what dma() writes, never into the other frame", () => {
  const run = (buffered: boolean) => {
    const s = side();
    const phys = s.unit.mem.phys;
    phys.ref(s.data, 8);
    const buf = phys.dmaBuffer(PAGE);
    buf.bytes.fill(0x77);
    const iova = (BASE + 2) * PAGE;
    const dma = (fill: number): DmaResult => {
      buf.bytes.fill(fill);
      return buffered ? s.unit.dmaBuffered(SID, -1, iova, 64, true, buf) : s.unit.dma({ sid: SID, pasid: -1, iova, length: 64, write: true, data: new Uint8Array(64).fill(fill) });
    };
    dma(1);
    dma(2); // (buffered: through WebAssembly, which remembers the frame's slot)
    // the page is unmapped and its frame freed without an IOTLB invalidation; a new frame is written
    s.ss.unmap(BASE + 2, 1);
    phys.unref(s.data + 2, 1);
    const g = phys.allocRun(1);
    phys.write(g * PAGE, new Uint8Array(PAGE).fill(0x99));
    const r = dma(3);
    return { r, g: phys.read(g * PAGE, PAGE), old: phys.read((s.data + 2) * PAGE, 128), hits: s.unit.iotlb.stats };
  };
  const a = run(true);
  const b = run(false);
  assert.deepEqual(a.g, new Uint8Array(PAGE).fill(0x99), "the new frame is untouched");
  assert.deepEqual(a, b);
});
