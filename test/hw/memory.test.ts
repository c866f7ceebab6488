import { test } from "node:test";
import assert from "node:assert/strict";
import { PhysMem, PAGE_SIZE } from "../../src/mm/index.js";
import { HwMemory, WindowFrameStore } from "../../src/hw/memory.js";

test("frameU32 aliases the bytes that read() and write() see, little-endian words", () => {
  const p = new PhysMem();
  const pfn = p.allocRun(1);
  const v = p.frameU32(pfn);
  assert.equal(v.length, 1024);
  v[3] = 0x11223344;
  assert.deepEqual(p.read(pfn * PAGE_SIZE + 12, 4), Uint8Array.from([0x44, 0x33, 0x22, 0x11]));
  p.write(pfn * PAGE_SIZE + 16, Uint8Array.from([1, 0, 0, 0x80]));
  assert.equal(v[4], 0x80000001);
  assert.equal(p.frameU32(pfn), v, "the view is cached");
});

test("peekFrameU32 never materializes a frame; untouched frames read as zeros", () => {
  const p = new PhysMem();
  const pfn = p.allocRun(2);
  assert.equal(p.peekFrameU32(pfn), undefined);
  assert.equal(p.framesMaterialized, 0);
  p.write(pfn * PAGE_SIZE + PAGE_SIZE + 8, Uint8Array.from([5]));
  const v = p.peekFrameU32(pfn + 1);
  assert.ok(v);
  assert.equal(v[2], 5, "a frame written through write() is seen by the hardware view");
  assert.equal(p.peekFrameU32(pfn - 0x2000), undefined, "pfns below the first frame read as zeros");
});

test("frameU32 of a frame never allocated is a bug", () => {
  const p = new PhysMem();
  assert.throws(() => p.frameU32(0x10), /internal assertion/);
});

test("a frame whose last hold goes loses its view with its contents", () => {
  const p = new PhysMem();
  const pfn = p.allocRun(1);
  p.ref(pfn, 1);
  p.frameU32(pfn)[0] = 7;
  p.unref(pfn, 1);
  assert.equal(p.framesMaterialized, 0);
  assert.equal(p.peekFrameU32(pfn), undefined);
  assert.equal(p.frameU32(pfn)[0], 0, "rematerialized as zeros");
});

test("copyRun into a viewed frame is seen through a fresh view", () => {
  const p = new PhysMem();
  const a = p.allocRun(1);
  const b = p.allocRun(1);
  p.frameU32(a)[9] = 99;
  p.frameU32(b)[9] = 1;
  p.copyFrame(b, a);
  assert.equal(p.frameU32(b)[9], 99);
});

test("table frames are zeroed, referenced (framesInUse) and dropped when freed", () => {
  const phys = new PhysMem();
  const mem = new HwMemory(phys);
  const t = mem.allocTable(4);
  assert.equal(t % 4, 0, "aligned to its size");
  assert.equal(phys.framesInUse, 4);
  assert.equal(mem.tableFrames, 4);
  assert.ok(mem.frameU32(t + 3).every((x) => x === 0));
  mem.frameU32(t)[0] = 1;
  mem.freeTable(t, 4);
  assert.equal(phys.framesInUse, 0);
  assert.equal(mem.tableFrames, 0);
  assert.equal(mem.peekFrameU32(t), undefined);
});

test("DMA reads and writes cross frames and see unwritten memory as zeros", () => {
  const mem = new HwMemory(new PhysMem());
  const pfn = mem.phys.allocRun(3);
  const pa = pfn * PAGE_SIZE + PAGE_SIZE - 3;
  mem.write(pa, Uint8Array.from([1, 2, 3, 4, 5, 6]));
  assert.deepEqual(mem.read(pa - 1, 8), Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 0]));
  assert.deepEqual(mem.read((pfn + 2) * PAGE_SIZE, 4), new Uint8Array(4));
  const dst = new Uint8Array(6).fill(9);
  mem.readInto(pa + 2, dst);
  assert.deepEqual(dst, Uint8Array.from([3, 4, 5, 6, 0, 0]));
  mem.write32(pfn * PAGE_SIZE + 8, 0xdeadbeef);
  assert.equal(mem.read32(pfn * PAGE_SIZE + 8), 0xdeadbeef);
  assert.equal(mem.read32((pfn + 2) * PAGE_SIZE + 4), 0);
});

test("a guest window numbers frames by guest pfn and backs them by the host run", () => {
  const mem = new HwMemory(new PhysMem());
  const host = mem.phys.allocRun(16);
  const g = new WindowFrameStore(mem, 0x100, host, 16);
  const t = g.allocTable(1);
  assert.equal(t, 0x100);
  g.frameU32(t)[5] = 42;
  assert.equal(mem.frameU32(host)[5], 42);
  assert.equal(g.hostPfn(0x10f), host + 15);
  assert.equal(g.hostPfn(0x110), -1);
  assert.equal(g.peekFrameU32(0x200), undefined);
  assert.equal(g.allocTable(4), 0x104, "aligned to its size");
});
