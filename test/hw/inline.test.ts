/**
 * Hot paths written to fit V8's inlining budget: the lean 4 KiB walk (engine.ts, translate), whose
 * being inline in a caller's loop is most of walk_4level_ns, and the VT-d unit's usual DMA
 * (vtd/unit.ts, dma) with its IOTLB lookup. An edit that makes them too big changes no answer, so
 * only this test notices: it runs the loops under --trace-turbo-inlining and looks for them being
 * inlined.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const bench = fileURLToPath(new URL("../../src/hw/bench.js", import.meta.url));
const guestBench = fileURLToPath(new URL("../../src/guest/vtd/bench.js", import.meta.url));

/** Whether the trace says function `name` was inlined into function `into`. */
function inlinedInto(trace: string, name: string, into: string): boolean {
  return new RegExp(`^Inlining \\S+ \\{\\S+ <SharedFunctionInfo ${name}>\\} into \\S+ \\{\\S+ <SharedFunctionInfo ${into}>\\}`, "m").test(trace);
}

function trace(script: string): string {
  return execFileSync(process.execPath, ["--trace-turbo-inlining", "--input-type=module", "-e", script], { encoding: "utf8", maxBuffer: 64 << 20 });
}

test("translate's lean 4 KiB walk (lean4k and leanEnd) is inlined into a caller's loop", () => {
  const script = `import { benchWalk4Level } from ${JSON.stringify(bench)}; benchWalk4Level(() => 0, 1);`;
  const out = trace(script);
  const inlined = (name: string): boolean => new RegExp(`^Inlining \\S+ \\{\\S+ <SharedFunctionInfo ${name}>\\} into`, "m").test(out);
  assert.ok(inlined("translate"), "translate is inlined");
  assert.ok(inlined("lean4k"), "lean4k is inlined (bytecode within --max-inlined-bytecode-size)");
  assert.ok(inlined("leanEnd"), "leanEnd is inlined");
});

test("the VT-d unit's usual DMA (dma and the IOTLB lookup) is inlined into a device's loop", () => {
  const out = trace(`import { guestSvaDmaFigures } from ${JSON.stringify(guestBench)}; guestSvaDmaFigures(() => 1, 64, 2);`);
  assert.ok(inlinedInto(out, "dma", "dmaPass"), "dma is inlined");
  assert.ok(inlinedInto(out, "lookup", "dmaPass"), "Iotlb.lookup is inlined");
});
