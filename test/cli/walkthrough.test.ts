/** `npm start`: the walkthrough runs to the end and reports what each step claims. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { packageRoot } from "../../src/cli/native.js";

test("the walkthrough reports the mock path, a VT-d DMA with its page walk, and the guest SVA scenario ending OK", () => {
  const r = spawnSync(process.execPath, [path.join(packageRoot, "dist", "src", "cli", "walkthrough.js")], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /access read at iova 0x1000000: "hello from user space"/);
  assert.match(out, /context closed: 0 objects left/);
  assert.match(out, /DMA read at iova 0x40000000: done, "bytes the device reads through VT-d"/);
  assert.match(out, /SS-PTE entry at 0x[0-9a-f]+ = 0x[0-9a-f]+ \(leaf\)/);
  assert.match(out, /after IOAS_UNMAP \(the driver flushed the IOTLB\): faulted, translation fault/);
  assert.match(out, /retried DMA done/);
  assert.match(out, /scenario OK/);
});
