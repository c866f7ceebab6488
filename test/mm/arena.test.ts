import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PAGE_SIZE, PhysMem } from "../../src/mm/phys.js";

/** The words the arena holds for frame pfn (what a hardware walker reads), or null when it has no slot. */
function arenaWords(p: PhysMem, pfn: number): Uint32Array | null {
  const w = pfn < p.arena.slot.length ? p.arena.slot[pfn] : 0;
  return w === 0 ? null : p.arena.words.subarray(w, w + PAGE_SIZE / 4);
}

test("an arena frame reads the same through its view, read(), readOwn() and the arena's words", () => {
  const p = new PhysMem();
  const pfn = p.allocRun(2);
  p.ref(pfn, 2);
  assert.equal(p.useArena(pfn, 2), 2);
  assert.ok(p.inArena(pfn) && p.inArena(pfn + 1));
  const v = p.frameU32(pfn + 1);
  assert.ok(v.every((x) => x === 0), "placed zeroed");
  v[7] = 0x04030201;
  assert.deepEqual(p.read((pfn + 1) * PAGE_SIZE + 28, 4), Uint8Array.from([1, 2, 3, 4]));
  p.write((pfn + 1) * PAGE_SIZE + 32, Uint8Array.from([5, 0, 0, 0x80]));
  assert.equal(v[8], 0x80000005);
  assert.equal(arenaWords(p, pfn + 1)?.[8], 0x80000005);
  arenaWords(p, pfn)![3] = 99;
  assert.equal(p.frameU32(pfn)[3], 99);
  assert.equal(p.readOwn(pfn * PAGE_SIZE + 12, 1)[0], 99);
  assert.equal(p.frameU32(pfn + 1), v, "the view is the cached one");
});

test("a growing arena moves nothing: views made before it grew still alias their frames", () => {
  const p = new PhysMem();
  const first = p.allocRun(1);
  p.ref(first, 1);
  p.useArena(first, 1);
  const early = p.frameU32(first);
  const wordsBefore = p.arena.words;
  const bytesBefore = p.arena.bytes;
  const n = 200; // the arena starts at 16 slots: this grows it several times
  const run = p.allocRun(n);
  p.ref(run, n);
  assert.equal(p.useArena(run, n), n);
  assert.ok(p.arena.bytes > bytesBefore && p.arena.words !== wordsBefore, "it grew");
  early[5] = 0xabcd;
  assert.equal(arenaWords(p, first)?.[5], 0xabcd, "a write through the old view is in the grown arena");
  arenaWords(p, first)![6] = 0x1234;
  assert.equal(early[6], 0x1234, "and the other way round");
  assert.equal(p.read(first * PAGE_SIZE + 20, 1)[0], 0xcd);
  for (let k = 0; k < n; k++) p.frameU32(run + k)[k % 1024] = k + 1;
  for (let k = 0; k < n; k++) assert.equal(arenaWords(p, run + k)?.[k % 1024], k + 1);
});

test("a frame whose last hold goes gives its slot back; the slot comes back zeroed for another frame", () => {
  const p = new PhysMem();
  const a = p.allocRun(1);
  p.ref(a, 1);
  p.useArena(a, 1);
  const slotOfA = p.arena.slot[a];
  p.frameU32(a).fill(0xffffffff);
  assert.equal(p.arena.frames, 1);
  p.unref(a, 1);
  assert.equal(p.inArena(a), false);
  assert.equal(p.arena.frames, 0);
  assert.equal(p.framesMaterialized, 0);
  assert.equal(p.peekFrameU32(a), undefined, "the freed frame reads as zeros");
  const b = p.allocRun(1);
  p.ref(b, 1);
  p.useArena(b, 1);
  assert.equal(p.arena.slot[b], slotOfA, "the slot is reused");
  assert.ok(p.frameU32(b).every((x) => x === 0), "zeroed");
  assert.deepEqual(p.read(a * PAGE_SIZE, 8), new Uint8Array(8), "the old frame still reads as zeros");
});

test("useArena refuses a frame that already has contents (views of it would stop aliasing it)", () => {
  const p = new PhysMem();
  const pfn = p.allocRun(1);
  p.write(pfn * PAGE_SIZE, Uint8Array.from([1]));
  assert.throws(() => p.useArena(pfn, 1), /already has contents/);
  assert.throws(() => p.useArena(p.allocRun(1) + 5, 1), /internal assertion/, "frames never allocated");
});

test("copyRun into arena frames keeps them in the arena with the copied contents", () => {
  const p = new PhysMem();
  const src = p.allocRun(2);
  p.write(src * PAGE_SIZE + 8, Uint8Array.from([7, 7]));
  const dst = p.allocRun(2);
  p.ref(dst, 2);
  p.useArena(dst, 2);
  const v = p.frameU32(dst + 1);
  v[0] = 5; // src + 1 is unwritten: this word must read as zero after the copy
  p.frameU32(dst)[100] = 1;
  p.copyRun(dst, src, 2);
  assert.ok(p.inArena(dst) && p.inArena(dst + 1));
  assert.equal(v[0], 0, "a copy of a zero frame is zeros, seen through the old view");
  assert.equal(arenaWords(p, dst)?.[2], 0x0707);
  assert.equal(arenaWords(p, dst)?.[100], 0, "the old contents are gone");
  p.write(src * PAGE_SIZE + 8, Uint8Array.from([1]));
  assert.equal(p.read(dst * PAGE_SIZE + 8, 1)[0], 7, "a copy, not an alias");
});

test("frames the arena has no room for are ordinary frames and read the same", () => {
  const p = new PhysMem();
  p.arena.limit = 4; // slot 0 and three frames
  const run = p.allocRun(5);
  p.ref(run, 5);
  assert.equal(p.useArena(run, 5), 3);
  assert.deepEqual([0, 1, 2, 3, 4].map((k) => p.inArena(run + k)), [true, true, true, false, false]);
  p.frameU32(run + 4)[1] = 42;
  assert.equal(p.read((run + 4) * PAGE_SIZE + 4, 1)[0], 42);
  assert.equal(p.framesMaterialized, 5);
  p.unref(run, 5);
  assert.equal(p.framesMaterialized, 0);
  assert.equal(p.arena.frames, 0);
});

test("random arena placements, writes, copies and frees read as a per-frame byte reference says", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant("alloc" as const), n: fc.integer({ min: 1, max: 40 }), arena: fc.boolean() }),
          fc.record({ op: fc.constant("write" as const), k: fc.nat(), off: fc.integer({ min: 0, max: PAGE_SIZE - 4 }), val: fc.integer({ min: 1, max: 255 }) }),
          fc.record({ op: fc.constant("piece" as const), k: fc.nat(), off: fc.integer({ min: 0, max: PAGE_SIZE - 1 }), len: fc.integer({ min: 0, max: 300 }), val: fc.integer({ min: 1, max: 255 }) }),
          fc.record({ op: fc.constant("view" as const), k: fc.nat(), word: fc.integer({ min: 0, max: 1023 }), val: fc.integer({ min: 1, max: 0xffffffff }) }),
          fc.record({ op: fc.constant("copy" as const), k: fc.nat(), j: fc.nat() }),
          fc.record({ op: fc.constant("free" as const), k: fc.nat() }),
          fc.record({ op: fc.constant("move" as const), k: fc.nat() }),
        ),
        { maxLength: 60 },
      ),
      fc.integer({ min: 2, max: 80 }),
      (ops, limit) => {
        const p = new PhysMem();
        p.arena.limit = limit;
        const live: number[] = []; // held frames
        const ref = new Map<number, Uint8Array>(); // pfn -> expected bytes
        const views = new Map<number, Uint32Array>(); // views handed out earlier, kept across growth
        const expect = (pfn: number): Uint8Array => ref.get(pfn) ?? new Uint8Array(PAGE_SIZE);
        for (const o of ops) {
          if (o.op === "alloc") {
            const pfn = p.allocRun(o.n);
            p.ref(pfn, o.n);
            if (o.arena) p.useArena(pfn, o.n);
            for (let k = 0; k < o.n; k++) live.push(pfn + k);
          } else if (live.length === 0) {
            continue;
          } else if (o.op === "write") {
            const pfn = live[o.k % live.length];
            p.write(pfn * PAGE_SIZE + o.off, Uint8Array.from([o.val]));
            const b = expect(pfn);
            b[o.off] = o.val;
            ref.set(pfn, b);
          } else if (o.op === "piece") {
            // a DMA's piece of one page (the slab path once the frame has a slot)
            const pfn = live[o.k % live.length];
            const len = Math.min(o.len, PAGE_SIZE - o.off);
            p.writeInFrame(pfn, o.off, new Uint8Array(len).fill(o.val));
            if (len > 0) {
              const b = expect(pfn);
              b.fill(o.val, o.off, o.off + len);
              ref.set(pfn, b);
            }
          } else if (o.op === "view") {
            const pfn = live[o.k % live.length];
            let v = views.get(pfn);
            if (v === undefined) views.set(pfn, (v = p.frameU32(pfn)));
            v[o.word] = o.val;
            const b = expect(pfn);
            new DataView(b.buffer).setUint32(o.word * 4, o.val, true);
            ref.set(pfn, b);
          } else if (o.op === "copy") {
            const d = live[o.k % live.length];
            const s = live[o.j % live.length];
            p.copyFrame(d, s);
            ref.set(d, expect(s).slice());
            // An ordinary frame gets new contents (seen through a fresh view); an arena frame keeps its slot.
            if (!p.inArena(d)) views.delete(d);
          } else if (o.op === "move") {
            const pfn = live[o.k % live.length];
            const was = p.inArena(pfn);
            const moved = p.toArena(pfn);
            assert.equal(moved, p.inArena(pfn), "true exactly when the frame is in the arena after");
            if (was) assert.ok(moved, "a frame already there stays");
            if (moved && !was) views.delete(pfn); // earlier views no longer alias a moved frame
          } else {
            const i = o.k % live.length;
            const pfn = live[i];
            live.splice(i, 1);
            p.unref(pfn, 1);
            ref.delete(pfn);
            views.delete(pfn);
          }
        }
        const slots = new Set<number>();
        for (const pfn of live) {
          assert.deepEqual(p.read(pfn * PAGE_SIZE, PAGE_SIZE), expect(pfn), `frame ${pfn}`);
          const v = views.get(pfn);
          if (v !== undefined) assert.deepEqual(new Uint8Array(v.buffer, v.byteOffset, PAGE_SIZE), expect(pfn), `old view of ${pfn}`);
          const a = arenaWords(p, pfn);
          if (a !== null) {
            assert.deepEqual(new Uint8Array(a.buffer, a.byteOffset, PAGE_SIZE), expect(pfn), `arena words of ${pfn}`);
            const s = p.arena.slot[pfn];
            assert.ok(!slots.has(s), "one slot per frame");
            slots.add(s);
          }
        }
        assert.equal(p.arena.frames, slots.size, "every slot in use belongs to a live frame");
        assert.equal(p.slabs.slots + p.arena.frames, p.framesMaterialized, "every written frame outside the arena has one slab slot");
        assert.ok(p.arena.words.subarray(0, 4096).every((x) => x === 0), "slot 0 (the slot table's entries below the first pfn) stays zero");
        for (const pfn of [...live]) p.unref(pfn, 1);
        assert.equal(p.arena.frames, 0);
        assert.equal(p.slabs.slots, 0, "freed frames gave their slab slots back");
        assert.equal(p.framesMaterialized, 0);
      },
    ),
    { numRuns: 150 },
  );
});

test("toArena moves a frame's contents into the arena: every accessor reads them there, and its slot goes back when it is freed", () => {
  const p = new PhysMem();
  const [a, b, c] = [p.allocRun(1), p.allocRun(1), p.allocRun(1)];
  p.ref(a, 1);
  p.ref(b, 1);
  p.ref(c, 1);
  p.useArena(c, 1); // the arena exists
  p.write(a * PAGE_SIZE + 100, Uint8Array.from([1, 2, 3]));
  const before = p.frameU32(a);
  assert.equal(p.toArena(b), false, "a frame never written reads as zeros and stays out");
  assert.equal(p.inArena(b), false);
  assert.equal(p.toArena(a), true);
  assert.ok(p.inArena(a));
  assert.deepEqual(p.read(a * PAGE_SIZE + 100, 3), Uint8Array.from([1, 2, 3]));
  assert.equal(arenaWords(p, a)?.[25], 0x030201);
  const after = p.frameU32(a);
  assert.notEqual(after, before, "PhysMem's view of it is the arena's");
  after[0] = 9;
  assert.equal(p.read(a * PAGE_SIZE, 1)[0], 9);
  assert.equal(p.toArena(a), true, "already there");
  assert.equal(p.arena.frames, 2);
  p.unref(a, 1);
  assert.equal(p.arena.frames, 1, "freed: its slot went back");
  assert.equal(p.toArena(p.allocRun(1) + 7), false, "a pfn not handed out");
});

test("toArena leaves frames whose contents live elsewhere (the contents hook) where they are", () => {
  const p = new PhysMem();
  const a = p.allocRun(1);
  p.ref(a, 1);
  p.write(a * PAGE_SIZE, Uint8Array.from([5]));
  p.contents = { read: () => null, write: () => false };
  assert.equal(p.toArena(a), false);
  assert.equal(p.inArena(a), false);
  p.contents = null;
});
