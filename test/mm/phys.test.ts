import { test } from "node:test";
import assert from "node:assert/strict";
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
