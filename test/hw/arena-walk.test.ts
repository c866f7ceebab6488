/**
 * Page-table frames live in PhysMem's FrameArena and translate()'s lean path reads them there.
 * These tests hold it to a per-page reference and to walk() (which reads through the frames' views)
 * when tables are in the arena, outside it (arena full), freed and their slots reused by other
 * engines' tables, and when the arena grows between translations.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PhysMem } from "../../src/mm/phys.js";
import { HwMemory } from "../../src/hw/memory.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { ACC_READ, ACC_WRITE, PT_ACCESSED, PT_READ, PT_WRITE, armStage1, armStage2, vtdFirstStage, vtdSecondStage, type PageTableFormat } from "../../src/hw/pagetable/format.js";

/** Granules per chunk of input space the random operations work in. */
const CHUNK = 4096;

const FORMATS: PageTableFormat[] = [
  vtdSecondStage({ addressWidth: 48 }),
  vtdSecondStage({ addressWidth: 39 }),
  vtdFirstStage({ levels: 4 }),
  armStage1({ inputBits: 48 }),
  armStage2({ inputBits: 40 }),
  armStage1({ granule: 16384, inputBits: 47 }),
  armStage2({ granule: 65536, inputBits: 48 }),
];

/** Frames of memory held as page tables that are (and are not) in the arena. */
function tableFramesInArena(mem: HwMemory, eng: PageTableEngine, vpns: number[]): { inside: number; outside: number } {
  const seen = new Set<number>();
  let inside = 0;
  let outside = 0;
  for (const v of vpns) {
    for (const s of eng.walk(v).steps) {
      const pfn = Math.floor(s.tablePa / 4096) + (s.index >>> 9);
      if (seen.has(pfn)) continue;
      seen.add(pfn);
      if (mem.phys.inArena(pfn)) inside++;
      else outside++;
    }
  }
  return { inside, outside };
}

for (const fmt of FORMATS) {
  test(`${fmt.name}: with tables in and out of the arena and slots reused across engines, translate agrees with walk and the reference`, () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 24 }),
        fc.boolean(),
        fc.array(
          fc.record({
            eng: fc.nat(2),
            kind: fc.constantFrom("map", "map", "unmap", "renew"),
            chunk: fc.nat(31),
            page: fc.nat(CHUNK - 1),
            len: fc.integer({ min: 1, max: 96 }),
            ro: fc.boolean(),
          }),
          { minLength: 1, maxLength: 25 },
        ),
        (limit, noPool, ops) => {
          const mem = new HwMemory(new PhysMem());
          mem.phys.arena.limit = limit;
          if (noPool) mem.poolLimit = 0; // freed tables go straight back: their slots are reused at once
          const engines: PageTableEngine[] = [];
          const refs: Map<number, { ppn: number; write: boolean }>[] = [];
          const make = (): PageTableEngine => new PageTableEngine(mem, fmt);
          for (let k = 0; k < 3; k++) {
            engines.push(make());
            refs.push(new Map());
          }
          const g = engines[0].granulePages;
          // Chunks of CHUNK granules spread over the input space (a new top-level entry for most).
          const span = engines[0].inputPages / g;
          const chunkBase = (c: number): number => Math.floor((c * 2654435761) % (span / CHUNK)) * CHUNK;
          for (const o of ops) {
            const e = engines[o.eng];
            const ref = refs[o.eng];
            const start = chunkBase(o.chunk) + o.page;
            const len = Math.min(o.len, chunkBase(o.chunk) + CHUNK - start);
            if (o.kind === "renew") {
              // Frees every table of this engine (their slots go back) and starts anew.
              e.destroy();
              engines[o.eng] = make();
              ref.clear();
            } else if (o.kind === "map") {
              let clash = false;
              for (let k = 0; k < len && !clash; k++) clash = ref.has(start + k);
              if (clash) continue;
              const ppn = (0x100000 + o.chunk * CHUNK + o.page) * g;
              e.map(start * g, ppn, len * g, PT_READ | PT_ACCESSED | (o.ro ? 0 : PT_WRITE));
              for (let k = 0; k < len; k++) ref.set(start + k, { ppn: ppn + k * g, write: !o.ro });
            } else {
              let had = 0;
              for (let k = 0; k < len; k++) if (ref.delete(start + k)) had++;
              assert.equal(e.unmap(start * g, len * g), had * g);
            }
            for (let k = 0; k < 3; k++) {
              const ek = engines[k];
              // Granules all over the chunk (index bits of every frame of 16 and 64 KiB tables),
              // and those the call changed.
              const probes = [start - 1, start, start + len - 1, start + len];
              for (let p = 0; p < CHUNK; p += 97) probes.push(chunkBase(o.chunk) + p, chunkBase((o.chunk + 1) % 32) + p);
              {
                for (const s of probes) {
                  if (s < 0 || s >= span) continue;
                  const r = refs[k].get(s);
                  const v = s * g + (g - 1);
                  assert.equal(ek.translate(v, ACC_READ), r ? r.ppn + g - 1 : -1, `${fmt.name} engine ${k} granule ${s}`);
                  if (r) assert.equal(ek.translate(v, ACC_WRITE), r.write ? r.ppn + g - 1 : -1);
                  const w = ek.walk(v, ACC_READ);
                  assert.equal(w.ppn, r ? r.ppn + g - 1 : -1);
                }
              }
            }
          }
          for (const e of engines) e.destroy();
          assert.equal(mem.tableFrames, 0);
          assert.equal(mem.phys.framesInUse, 0);
          assert.equal(mem.phys.arena.frames, 0, "every slot went back");
        },
      ),
      { numRuns: 40 },
    );
  });
}

test("table frames HwMemory hands out are in the arena; when it is full the rest are not, and walks read both", () => {
  const mem = new HwMemory(new PhysMem());
  mem.phys.arena.limit = 6; // slot 0 and five tables
  const eng = new PageTableEngine(mem, vtdSecondStage({ addressWidth: 48 }));
  const vpns: number[] = [];
  for (let c = 0; c < 8; c++) {
    const vpn = c * 0x8000000 + c * 0x40000 + c * 0x200; // a new table at every level below the root
    eng.map(vpn, 0x5000 + c, 1, PT_READ | PT_WRITE);
    vpns.push(vpn);
  }
  const { inside, outside } = tableFramesInArena(mem, eng, vpns);
  assert.equal(inside, 5);
  assert.equal(outside, eng.tablePages - 5);
  for (let c = 0; c < 8; c++) {
    assert.equal(eng.translate(vpns[c], ACC_READ), 0x5000 + c);
    assert.equal(eng.translate(vpns[c] + 1, ACC_READ), -1);
  }
});

test("the walk sees tables placed after the arena grew under translations already made", () => {
  const mem = new HwMemory(new PhysMem());
  const eng = new PageTableEngine(mem, vtdSecondStage({ addressWidth: 48 }));
  eng.map(0, 0x9000, 1, PT_READ);
  assert.equal(eng.translate(0, ACC_READ), 0x9000); // the lean path is warm with the first arena
  const bytes = mem.phys.arena.bytes;
  const words = mem.phys.arena.words;
  for (let c = 1; c <= 100; c++) eng.map(c * 0x40000, 0x9000 + c, 1, PT_READ); // a level-2 and a leaf table each
  assert.ok(mem.phys.arena.bytes > bytes && mem.phys.arena.words !== words, "the arena grew");
  for (let c = 0; c <= 100; c++) assert.equal(eng.translate(c * 0x40000, ACC_READ), 0x9000 + c);
  assert.equal(tableFramesInArena(mem, eng, [0, 100 * 0x40000]).outside, 0);
});

test("the pool keeps freed tables in the arena; draining it gives their slots back", () => {
  const mem = new HwMemory(new PhysMem());
  const keep = mem.allocTable(1);
  const t = mem.allocTable(4);
  for (let i = 0; i < 4; i++) assert.ok(mem.phys.inArena(t + i));
  assert.equal(mem.phys.arena.frames, 5);
  mem.frameU32(t + 2)[9] = 7;
  mem.freeTable(t, 4);
  assert.equal(mem.pooledFrames, 4);
  assert.equal(mem.phys.arena.frames, 5, "pooled frames keep their slots");
  assert.equal(mem.allocTable(4), t, "reused from the pool");
  assert.equal(mem.frameU32(t + 2)[9], 0, "zeroed");
  mem.freeTable(t, 4);
  mem.freeTable(keep, 1); // no table is live: the pool drains
  assert.equal(mem.phys.arena.frames, 0);
  assert.equal(mem.phys.framesInUse, 0);
});

test("an entry in a table's second frame is read from that frame (16 and 64 KiB granules, concatenated stage-2 roots)", () => {
  // Entries i and i + 512 of one table are in different frames; map both to different outputs.
  const cases: { fmt: PageTableFormat; span: number }[] = [
    { fmt: armStage1({ granule: 16384, inputBits: 47 }), span: 4 }, // a level-3 entry maps one 16 KiB granule
    { fmt: armStage2({ granule: 65536, inputBits: 48 }), span: 16 },
    { fmt: armStage2({ inputBits: 40 }), span: 0x40000 }, // level 1 (two concatenated tables) maps 1 GiB an entry
  ];
  for (const { fmt, span } of cases) {
    const mem = new HwMemory(new PhysMem());
    const eng = new PageTableEngine(mem, fmt);
    const lo = 88 * span;
    const hi = (88 + 512) * span;
    const g = eng.granulePages;
    eng.map(lo, 0x200000, g, PT_READ | PT_ACCESSED);
    eng.map(hi, 0x300000, g, PT_READ | PT_ACCESSED);
    assert.equal(eng.translate(hi, ACC_READ), 0x300000, `${fmt.name}: the second frame's entry`);
    assert.equal(eng.translate(lo, ACC_READ), 0x200000, `${fmt.name}: the first frame's entry`);
    assert.equal(eng.walk(hi).ppn, 0x300000);
  }
});

test("tables at pfns beyond the end of the arena's slot table (never placed) are walked through their views", () => {
  const phys = new PhysMem();
  phys.arena.entries = 0x1000 + 64; // a short slot table (by default it covers 2^25 pfns)
  const mem = new HwMemory(phys);
  const eng = new PageTableEngine(mem, vtdSecondStage({ addressWidth: 48 })); // its root is in the arena
  eng.map(0, 0x7000, 1, PT_READ);
  const slots = mem.phys.arena.slot.length;
  assert.equal(slots, 0x1000 + 64);
  mem.phys.allocRun(4 * slots); // the next tables' pfns are far beyond the slot table
  const vpn = 0x8000000 + 0x40000 + 0x200 + 5; // new tables at every level below the root
  eng.map(vpn, 0x7001, 1, PT_READ | PT_WRITE);
  assert.equal(mem.phys.arena.slot.length, slots, "the slot table did not grow");
  const steps = eng.walk(vpn).steps;
  assert.ok(steps.slice(1).every((s) => Math.floor(s.tablePa / 4096) - 0x1000 >= slots && !mem.phys.inArena(Math.floor(s.tablePa / 4096))));
  for (let k = 0; k < 3; k++) {
    assert.equal(eng.translate(vpn, ACC_WRITE), 0x7001);
    assert.equal(eng.translate(vpn + 1, ACC_READ), -1);
    assert.equal(eng.translate(0, ACC_READ), 0x7000);
  }
});

test("an engine destroyed never translates through the tables that took its frames' slots", () => {
  const mem = new HwMemory(new PhysMem());
  mem.poolLimit = 0; // freed tables go straight back to PhysMem: their slots are reused at once
  const keep = new PageTableEngine(mem, vtdSecondStage({ addressWidth: 48 })); // keeps tables live
  const a = new PageTableEngine(mem, vtdSecondStage({ addressWidth: 48 }));
  a.map(0x1234, 0x5000, 1, PT_READ);
  assert.equal(a.translate(0x1234, ACC_READ), 0x5000);
  const aRoot = a.root;
  a.destroy();
  const b = new PageTableEngine(mem, vtdSecondStage({ addressWidth: 48 }));
  b.map(0x1234, 0x6000, 1, PT_READ);
  assert.notEqual(b.root, aRoot, "pfns are not reused");
  assert.equal(mem.phys.arena.frames, keep.tablePages + b.tablePages, "b's tables took the freed slots");
  assert.equal(b.translate(0x1234, ACC_READ), 0x6000);
  assert.equal(a.translate(0x1234, ACC_READ), -1, "a's root reads as zeros, not as b's root");
  assert.equal(a.walk(0x1234).ppn, -1);
});
