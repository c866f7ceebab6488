import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PhysMem, PAGE_SIZE } from "../../src/mm/index.js";

test("frames are handed out by a counter, aligned on request, never reused", () => {
  const p = new PhysMem();
  const a = p.allocRun(3);
  const b = p.allocRun(1, 512);
  assert.ok(b >= a + 3);
  assert.equal(b % 512, 0);
  assert.equal(p.allocRun(1), b + 1);
});

test("untouched frames read as zeros; reads and writes may cross frames", () => {
  const p = new PhysMem();
  const pfn = p.allocRun(2);
  assert.deepEqual(p.read(pfn * PAGE_SIZE, 4), new Uint8Array(4));
  p.write(pfn * PAGE_SIZE + PAGE_SIZE - 2, Uint8Array.from([1, 2, 3, 4]));
  assert.deepEqual(p.read(pfn * PAGE_SIZE + PAGE_SIZE - 3, 6), Uint8Array.from([0, 1, 2, 3, 4, 0]));
  assert.equal(p.framesMaterialized, 2);
});

test("pin counts are per frame and unpinning below zero is a bug", () => {
  const p = new PhysMem();
  const pfn = p.allocRun(10);
  p.pin(pfn, 10);
  p.pin(pfn + 2, 3);
  assert.equal(p.pinCount(pfn + 1), 1);
  assert.equal(p.pinCount(pfn + 3), 2);
  assert.equal(p.framesInUse, 10);
  p.unpin(pfn + 2, 3);
  p.unpin(pfn, 10);
  assert.equal(p.framesInUse, 0);
  assert.throws(() => p.unpin(pfn, 1), /internal assertion/);
});

test("a frame's contents are dropped when its last reference or pin goes", () => {
  const p = new PhysMem();
  const pfn = p.allocRun(1);
  p.ref(pfn, 1);
  p.pin(pfn, 1);
  p.write(pfn * PAGE_SIZE, Uint8Array.from([7]));
  p.unref(pfn, 1);
  assert.equal(p.read(pfn * PAGE_SIZE, 1)[0], 7, "still pinned: contents survive");
  p.unpin(pfn, 1);
  assert.equal(p.framesInUse, 0);
  assert.equal(p.framesMaterialized, 0);
});

test("copyFrame copies contents", () => {
  const p = new PhysMem();
  const a = p.allocRun(1);
  const b = p.allocRun(1);
  p.write(a * PAGE_SIZE + 100, Uint8Array.from([9, 8]));
  p.copyFrame(b, a);
  assert.deepEqual(p.read(b * PAGE_SIZE + 100, 2), Uint8Array.from([9, 8]));
  p.write(a * PAGE_SIZE + 100, Uint8Array.from([1]));
  assert.equal(p.read(b * PAGE_SIZE + 100, 1)[0], 9, "a copy, not an alias");
});

test("a huge page goes back to its pool only when none of its frames is held", () => {
  const p = new PhysMem();
  let freed = 0;
  p.onHugeFree = (frames) => {
    assert.equal(frames, 512);
    freed++;
  };
  const pfn = p.allocRun(512, 512);
  p.markCompound(pfn, 512, 512);
  assert.ok(p.isCompound(pfn + 100));
  p.ref(pfn, 512);
  p.pin(pfn + 3, 1);
  p.unref(pfn, 512);
  assert.equal(freed, 0);
  assert.equal(p.framesInUse, 1);
  p.unpin(pfn + 3, 1);
  assert.equal(freed, 1);
  assert.equal(p.isCompound(pfn), false);
});

test("readInto reads what read() reads, zeros for unwritten frames, across frame boundaries", () => {
  const m = new PhysMem();
  const pfn = m.allocRun(4);
  m.ref(pfn, 4);
  const bytes = Uint8Array.from({ length: 3 * PAGE_SIZE }, (_, i) => (i * 7 + 3) & 0xff);
  m.write(pfn * PAGE_SIZE + 100, bytes.subarray(0, PAGE_SIZE + 50));
  m.write((pfn + 3) * PAGE_SIZE, bytes.subarray(0, 10));
  for (const [at, len] of [[0, 4 * PAGE_SIZE], [100, PAGE_SIZE], [PAGE_SIZE - 3, 7], [2 * PAGE_SIZE, PAGE_SIZE], [3 * PAGE_SIZE + 5, 20], [0, 0]]) {
    const dst = new Uint8Array(len).fill(0xee);
    m.readInto(pfn * PAGE_SIZE + at, dst);
    assert.deepEqual(dst, m.read(pfn * PAGE_SIZE + at, len), `${at} +${len}`);
  }
});

test("readInFrame / writeInFrame do what readInto / write do at pfn * PAGE_SIZE + off, with or without a contents hook", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ frame: fc.nat(5), off: fc.nat(PAGE_SIZE - 1), len: fc.nat(PAGE_SIZE), write: fc.boolean(), fill: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 30 }),
      fc.boolean(),
      (ops, hooked) => {
        const mems = [new PhysMem(), new PhysMem()];
        const pfns = mems.map((m) => m.allocRun(4));
        // A hook that keeps frames 1 and 2 of each memory to itself (as server/ does with frames a process maps).
        if (hooked) {
          for (let k = 0; k < 2; k++) {
            const own = new Map<number, Uint8Array>();
            const base = pfns[k];
            const mine = (pfn: number): Uint8Array | undefined => {
              if (pfn !== base + 1 && pfn !== base + 2) return undefined;
              let f = own.get(pfn);
              if (f === undefined) own.set(pfn, (f = new Uint8Array(PAGE_SIZE)));
              return f;
            };
            mems[k].contents = {
              read: (pfn, off, len) => mine(pfn)?.slice(off, off + len) ?? null,
              write: (pfn, off, data) => {
                const f = mine(pfn);
                if (f === undefined) return false;
                f.set(data, off);
                return true;
              },
            };
          }
        }
        for (const o of ops) {
          const len = Math.min(o.len, PAGE_SIZE - o.off);
          const [a, b] = [pfns[0] + o.frame, pfns[1] + o.frame]; // frames 4 and 5: beyond the run
          if (o.write) {
            const data = new Uint8Array(len).fill(o.fill);
            mems[0].writeInFrame(a, o.off, data);
            mems[1].write(b * PAGE_SIZE + o.off, data);
          } else {
            const x = new Uint8Array(len).fill(0xee);
            const y = new Uint8Array(len).fill(0xee);
            mems[0].readInFrame(a, o.off, x);
            mems[1].readInto(b * PAGE_SIZE + o.off, y);
            assert.deepEqual(x, y);
          }
        }
        for (let f = 0; f < 6; f++) assert.deepEqual(mems[0].read((pfns[0] + f) * PAGE_SIZE, PAGE_SIZE), mems[1].read((pfns[1] + f) * PAGE_SIZE, PAGE_SIZE), `frame ${f}`);
      },
    ),
  );
});

test("readInFrame / writeInFrame refuse a piece that does not lie within the frame", () => {
  const m = new PhysMem();
  const pfn = m.allocRun(1);
  assert.throws(() => m.writeInFrame(pfn, PAGE_SIZE - 1, new Uint8Array(2)), /within a frame/);
  assert.throws(() => m.readInFrame(pfn, -1, new Uint8Array(1)), /within a frame/);
  assert.equal(m.framesMaterialized, 0, "nothing written");
});

test("a frame written before its pfn was handed out keeps its contents once it is", () => {
  const m = new PhysMem();
  const first = m.allocRun(1);
  const ahead = first + 10; // not allocated yet
  m.write(ahead * PAGE_SIZE + 8, Uint8Array.of(1, 2, 3));
  const run = m.allocRun(16); // now covers `ahead`
  assert.ok(run <= ahead && ahead < run + 16);
  assert.deepEqual(m.read(ahead * PAGE_SIZE + 8, 3), Uint8Array.of(1, 2, 3));
  const dst = new Uint8Array(3);
  m.readInto(ahead * PAGE_SIZE + 8, dst);
  assert.deepEqual(dst, Uint8Array.of(1, 2, 3));
  m.write(ahead * PAGE_SIZE + 9, Uint8Array.of(9));
  assert.deepEqual(m.read(ahead * PAGE_SIZE + 8, 3), Uint8Array.of(1, 9, 3));
});

test("frames first written one after another sit side by side in one slab", () => {
  const m = new PhysMem();
  const pfn = m.allocRun(8);
  for (const k of [5, 1, 7]) m.writeInFrame(pfn + k, 0, Uint8Array.of(k));
  const views = [5, 1, 7].map((k) => m.frameU32(pfn + k));
  assert.ok(views.every((v) => v.buffer === views[0].buffer), "one slab");
  assert.deepEqual(
    views.map((v) => v.byteOffset - views[0].byteOffset),
    [0, PAGE_SIZE, 2 * PAGE_SIZE],
    "in the order they were first written",
  );
  assert.equal(m.slabs.slots, 3);
});

test("a slab slot given back comes back zeroed for the next frame written", () => {
  const m = new PhysMem();
  const a = m.allocRun(1);
  m.ref(a, 1);
  m.write(a * PAGE_SIZE, new Uint8Array(PAGE_SIZE).fill(0xab));
  const slot = m.frameU32(a).byteOffset;
  m.unref(a, 1);
  assert.equal(m.slabs.slots, 0, "dropped with the frame's last hold");
  const b = m.allocRun(1);
  m.writeInFrame(b, 100, Uint8Array.of(1));
  assert.equal(m.frameU32(b).byteOffset, slot, "the same slot, reused");
  const expected = new Uint8Array(PAGE_SIZE);
  expected[100] = 1;
  assert.deepEqual(m.read(b * PAGE_SIZE, PAGE_SIZE), expected);
});

test("the slabs go when the last written frame is freed", () => {
  const m = new PhysMem();
  const pfn = m.allocRun(600);
  m.ref(pfn, 600);
  for (let k = 0; k < 600; k++) m.writeInFrame(pfn + k, 0, Uint8Array.of(1));
  assert.equal(m.slabs.bytes, 2 * 512 * PAGE_SIZE, "600 slots: two slabs");
  m.unref(pfn, 599);
  assert.equal(m.slabs.bytes, 2 * 512 * PAGE_SIZE, "one frame still written");
  m.unref(pfn + 599, 1);
  assert.equal(m.slabs.bytes, 0);
  const b = m.allocRun(1);
  m.writeInFrame(b, 7, Uint8Array.of(9));
  assert.equal(m.read(b * PAGE_SIZE + 7, 1)[0], 9);
  assert.equal(m.slabs.slots, 1);
});
