/**
 * The nested walk in WebAssembly (src/hw/pagetable/wasm-walk.wat): its bytes are the .wat's, and
 * nested translate() through it gives walk()'s answers (output, fault, permissions, leaf size) on
 * random descriptors of both stages, hardware updates on and off, several engines sharing one
 * arena's walker, and stage-1 table pages moved into the arena as walks find them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PhysMem } from "../../src/mm/phys.js";
import { HwMemory, WindowFrameStore } from "../../src/hw/memory.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import { WASM_WALK_BASE64 } from "../../src/hw/pagetable/wasm-walk-bytes.js";
import {
  ACC_READ,
  ACC_WRITE,
  PT_ACCESSED,
  PT_READ,
  PT_USER,
  PT_WRITE,
  armStage1,
  armStage2,
  vtdFirstStage,
  vtdSecondStage,
} from "../../src/hw/pagetable/format.js";
import { poke, same } from "./helpers.js";

const GB = 0x100000; // guest RAM at GPA 4 GiB
const RAM = 0x400;

/** A guest (RAM pages at GB, host frames from host) with a stage-1 table over a stage-2 table. */
/** small: guest RAM not 2 MiB aligned in host memory, so stage 2 maps it with 4 KiB leaves only. */
function nestedPair(armPair: boolean, hw: { a: boolean; d: boolean }, hw1: { a: boolean; d: boolean } = hw, small = false) {
  const mem = new HwMemory(new PhysMem());
  const host = small ? mem.phys.allocRun(RAM + 1, RAM) + 1 : mem.phys.allocRun(RAM, RAM);
  const s2 = new PageTableEngine(mem, armPair ? armStage2() : vtdSecondStage(), { hwAccessed: hw.a, hwDirty: hw.d });
  s2.map(GB, host, RAM, PT_READ | PT_WRITE | PT_ACCESSED);
  const s1opts = { hwAccessed: hw1.a, hwDirty: hw1.d };
  const s1 = new PageTableEngine(new WindowFrameStore(mem, GB, host, RAM), armPair ? armStage1() : vtdFirstStage(), s1opts);
  s1.map(0x5000, GB + 0x200, 0x100, PT_READ | PT_WRITE | PT_USER | PT_ACCESSED);
  s1.map(0x5100, GB + 0x300, 0x100, PT_READ | PT_ACCESSED);
  s1.setStage2(s2);
  return { mem, host, s1, s2 };
}

test("the arena walker's bytes are wasm-walk.wat assembled (npm run gen-wasm)", async () => {
  // @ts-expect-error: a JavaScript module without type declarations
  const { assemble } = (await import("../../../scripts/gen-wasm.mjs")) as { assemble: () => Promise<string> };
  const ts = await assemble();
  const b64 = [...ts.matchAll(/"([A-Za-z0-9+/=]+)"/g)].map((m) => m[1]).join("");
  assert.equal(b64, WASM_WALK_BASE64, "wasm-walk-bytes.ts is stale: run npm run gen-wasm");
  const mod = new WebAssembly.Module(Buffer.from(WASM_WALK_BASE64, "base64"));
  assert.deepEqual(WebAssembly.Module.exports(mod).map((e) => e.name).sort(), ["nested", "zero"]);
});

test("nested translate through the arena walker serves the common case and gives walk()'s answers", () => {
  const { s1, s2 } = nestedPair(false, { a: false, d: false });
  for (let k = 0; k < 3; k++) for (let p = 0; p < 0x200; p += 7) same(s1, 0x5000 + p, p & 1 ? ACC_WRITE : ACC_READ, true);
  const aw = s2.arenaWalker;
  assert.ok(aw !== null, "the second stage's arena has a walker");
  assert.ok(aw.served > 100, `the walker served the walks (${aw.served})`);
});

test("nested translate agrees with walk on random descriptors of both stages, with the arena walker in use", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ stage: fc.nat(1), step: fc.nat(3), hi: fc.integer({ min: 0, max: 0xffffffff }), lo: fc.integer({ min: 0, max: 0xffffffff }), keep: fc.boolean() }), { maxLength: 3 }),
      fc.array(fc.record({ page: fc.nat(0x1ff), access: fc.nat(15) }), { minLength: 1, maxLength: 24 }),
      fc.boolean(),
      fc.record({ a: fc.boolean(), d: fc.boolean() }),
      fc.record({ a: fc.boolean(), d: fc.boolean() }),
      fc.boolean(),
      (pokes, probes, armPair, hw, hw1, small) => {
        const { mem, s1, s2 } = nestedPair(armPair, hw, hw1, small);
        // Warm: the walker has its record and the stage-1 tables are in the arena before the pokes.
        for (const pr of probes) same(s1, 0x5000 + pr.page, pr.access, true);
        for (const p of pokes) {
          const vpn = 0x5000 + p.step * 0x41;
          const steps = p.stage === 0 ? s1.walk(vpn).steps : s2.walk(GB + 0x200 + p.step).steps;
          const s = steps[p.step % Math.max(1, steps.length)];
          if (s === undefined || mem.peekFrameU32(Math.floor(s.hostEntryPa / 4096)) === undefined) continue;
          // A flipped bit or two (keep) as well as garbage: most walks stay on the fast path.
          if (p.keep) poke(mem, s, (s.hi ^ (1 << (p.hi & 31))) >>> 0, (s.lo ^ (1 << (p.lo & 31))) >>> 0);
          else poke(mem, s, p.hi, p.lo);
        }
        for (const pr of probes) same(s1, 0x5000 + pr.page, pr.access, true);
      },
    ),
    { numRuns: 300 },
  );
});

test("every single bit flipped in every entry of a nested path gives walk()'s answer through the arena walker", () => {
  for (const [armPair, small] of [[false, false], [false, true], [true, false], [true, true]]) {
    // No hardware updates in either stage: writes take the walker too.
    const { mem, s1, s2 } = nestedPair(armPair, { a: false, d: false }, { a: false, d: false }, small);
    const vpn = 0x5003;
    same(s1, vpn, ACC_READ, true);
    const served0 = s2.arenaWalker?.served ?? 0;
    const paths = [...s1.walk(vpn).steps, ...s2.walk(GB + 0x203).steps, ...s2.walk(s1.root).steps];
    for (const s of paths) {
      for (let bit = 0; bit < 64; bit++) {
        const hi = bit >= 32 ? (s.hi ^ (1 << (bit - 32))) >>> 0 : s.hi;
        const lo = bit < 32 ? (s.lo ^ (1 << bit)) >>> 0 : s.lo;
        poke(mem, s, hi, lo);
        for (let access = 1; access < 16; access++) same(s1, vpn, access, true);
        poke(mem, s, s.hi, s.lo);
      }
    }
    assert.ok((s2.arenaWalker?.served ?? 0) > served0, "the walker served some of them");
  }
});

test("engines sharing one arena's walker, with other accesses and hardware settings in between, each get their own answers", () => {
  const mem = new HwMemory(new PhysMem());
  const host = mem.phys.allocRun(RAM, RAM);
  const s2 = new PageTableEngine(mem, vtdSecondStage(), { hwAccessed: false, hwDirty: false });
  s2.map(GB, host, RAM, PT_READ | PT_WRITE | PT_ACCESSED);
  const guest = new WindowFrameStore(mem, GB, host, RAM);
  const a = new PageTableEngine(guest, vtdFirstStage());
  const b = new PageTableEngine(guest, vtdFirstStage());
  a.map(0x5000, GB + 0x200, 0x10, PT_READ | PT_WRITE | PT_ACCESSED);
  b.map(0x5000, GB + 0x300, 0x10, PT_READ | PT_ACCESSED);
  a.setStage2(s2);
  b.setStage2(s2);
  for (let k = 0; k < 40; k++) {
    const e = k % 3 === 0 ? b : a;
    const access = k % 4 === 1 ? ACC_WRITE : ACC_READ;
    same(e, 0x5000 + (k % 16), access, true);
    if (k === 20) s2.setHardwareUpdates(true, true); // a write then needs the slow path (dirty)
    if (k === 30) s2.setHardwareUpdates(false, false);
  }
  assert.equal(a.translate(0x5001, ACC_READ), host + 0x201);
  assert.equal(b.translate(0x5001, ACC_READ), host + 0x301);
  assert.equal(b.translate(0x5001, ACC_WRITE), -1, "b's pages are read-only");
  assert.ok((s2.arenaWalker?.served ?? 0) > 10);
});

test("a stage-1 table page outside the arena moves in on a walk; later writes to it are what the next walk reads", () => {
  const { mem, host, s1 } = nestedPair(false, { a: false, d: false });
  const leafTable = Math.floor(s1.walk(0x5003).steps[3].hostEntryPa / 4096);
  assert.ok(leafTable >= host && leafTable < host + RAM, "the guest's tables are in its RAM");
  assert.equal(mem.phys.inArena(leafTable), false, "guest RAM is not placed in the arena");
  const view = mem.phys.frameU32(leafTable);
  // One table page moves in per walk (the first one the walker finds outside), top level first.
  for (let k = 0; k < 5; k++) assert.equal(s1.translate(0x5003, ACC_READ), host + 0x203);
  assert.equal(mem.phys.inArena(leafTable), true, "walked as a table: moved into the arena");
  const tables = s1.walk(0x5003).steps.map((s) => Math.floor(s.hostEntryPa / 4096));
  assert.ok(tables.every((t) => mem.phys.inArena(t)), "every table page of the path");
  assert.notEqual(mem.phys.frameU32(leafTable), view, "its view is the arena's now");
  // Remap through the model's accessors: the walker must see the new leaf.
  s1.unmap(0x5003, 1);
  assert.equal(s1.translate(0x5003, ACC_READ), -1);
  s1.map(0x5003, GB + 0x3ff, 1, PT_READ | PT_ACCESSED);
  assert.equal(s1.translate(0x5003, ACC_READ), host + 0x3ff);
  const w = mem.phys.arena.slot[leafTable] + 6;
  const entry = mem.phys.read(leafTable * 4096 + 3 * 8, 8);
  assert.deepEqual(entry, new Uint8Array(mem.phys.arena.words.buffer.slice(w * 4, w * 4 + 8)), "read() and the arena agree");
});

test("a destroyed second stage is not walked through the record made for it, even when its root's slot holds another table", () => {
  const { mem, host, s1, s2 } = nestedPair(false, { a: false, d: false });
  // Another stage 2 over the same guest RAM: the same pages for the guest's tables (the low half),
  // but guest page GB + 0x203 at host + 0x303.
  const other = new PageTableEngine(mem, vtdSecondStage());
  other.map(GB, host, 0x200, PT_READ | PT_WRITE | PT_ACCESSED);
  other.map(GB + 0x200, host + 0x300, 0x100, PT_READ | PT_WRITE | PT_ACCESSED);
  for (let k = 0; k < 6; k++) assert.equal(s1.translate(0x5003, ACC_READ), host + 0x203);
  assert.ok((s2.arenaWalker?.served ?? 0) > 0);
  const words = mem.phys.arena.words;
  const oldRoot = mem.phys.arena.slot[s2.root];
  const otherRoot = mem.phys.arena.slot[other.root];
  s2.destroy();
  mem.drainPool(); // its table frames' slots go back to the arena
  words.copyWithin(oldRoot, otherRoot, otherRoot + 1024); // as if a new root took the slot
  for (let k = 0; k < 3; k++) same(s1, 0x5003, ACC_READ, true);
  assert.notEqual(s1.translate(0x5003, ACC_READ), host + 0x303, "not through the other tables");
});

test("a pooled table frame in the arena comes back zeroed (the walker's memset) for the next table", () => {
  const mem = new HwMemory(new PhysMem());
  const eng = new PageTableEngine(mem, vtdSecondStage());
  eng.map(0x40000, 0x7001, 256, PT_READ | PT_WRITE); // 4 KiB leaves: entries 0..255 of one table
  const leafTable = Math.floor(eng.walk(0x40000).steps[3].hostEntryPa / 4096);
  assert.ok(mem.phys.inArena(leafTable));
  mem.phys.frameU32(leafTable).fill(0xdeadbeef, 600, 1024); // garbage past the entries map wrote
  eng.unmap(0x40000, 256); // the leaf table's own entries go: it is freed to the pool as it is
  assert.ok(mem.pooledFrames > 0);
  eng.map(0x80000, 0x9000, 1, PT_READ);
  const again = Math.floor(eng.walk(0x80000).steps[3].hostEntryPa / 4096);
  assert.equal(again, leafTable, "the pooled frame is reused");
  const words = mem.phys.frameU32(again);
  assert.ok(words.every((x, i) => (i === 0 || i === 1 ? true : x === 0)), "zero but for the one new entry");
  assert.equal(eng.translate(0x80000, ACC_READ), 0x9000);
  assert.equal(eng.translate(0x80001, ACC_READ), -1);
});
