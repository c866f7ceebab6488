import { test } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { Host, PAGE_SIZE } from "../../src/mm/index.js";

const GiB = 1 << 30;

test("pinning and unpinning 1 GiB of fresh anonymous memory is a handful of run operations (micro-check)", (t) => {
  const h = new Host();
  const p = h.spawn({ rlimitMemlock: Infinity });
  const npages = GiB / PAGE_SIZE;
  // Warm up the code paths once so the measurement is not dominated by JIT compilation.
  const w = p.mmap(16 * PAGE_SIZE);
  h.phys.unpinRuns(p.mm.pinPages(w, 16, true));
  p.munmap(w, 16 * PAGE_SIZE);

  const a = p.mmap(GiB);
  const t0 = performance.now();
  const runs = p.mm.pinPages(a, npages, true);
  h.phys.unpinRuns(runs);
  const ms = performance.now() - t0;
  t.diagnostic(`pin + unpin of 1 GiB: ${ms.toFixed(3)} ms`);
  assert.deepEqual(runs.length, 2, "one run of 262144 frames");
  assert.equal(runs[1], npages);
  assert.equal(h.phys.framesInUse, npages, "still mapped");
  assert.ok(p.mm.ptes.runCount <= 2, "the page table holds a run per range, not per page");

  // After fork, the child's pin unshares the whole gigabyte: one new run, O(runs) for untouched contents.
  const c = p.fork();
  const t1 = performance.now();
  const r2 = c.mm.pinPages(a, npages, false);
  t.diagnostic(`unsharing pin of 1 GiB after fork: ${(performance.now() - t1).toFixed(3)} ms`);
  assert.equal(r2.length, 2);
  h.phys.unpinRuns(r2);
  c.exit();
  p.exit();
  assert.equal(h.phys.framesInUse, 0);
});
