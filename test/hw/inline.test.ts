/**
 * The lean 4 KiB walk is written to fit V8's inlining budget (engine.ts, translate): a caller's loop
 * then has the whole walk inline, which is most of walk_4level_ns. An edit that makes lean4k or
 * leanEnd too big for it changes no answer, so only this test notices: it runs a loop of
 * translations under --trace-turbo-inlining and looks for both being inlined.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const bench = fileURLToPath(new URL("../../src/hw/bench.js", import.meta.url));

test("translate's lean 4 KiB walk (lean4k and leanEnd) is inlined into a caller's loop", () => {
  const script = `import { benchWalk4Level } from ${JSON.stringify(bench)}; benchWalk4Level(() => 0, 1);`;
  const out = execFileSync(process.execPath, ["--trace-turbo-inlining", "--input-type=module", "-e", script], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  const inlined = (name: string): boolean => new RegExp(`^Inlining \\S+ \\{\\S+ <SharedFunctionInfo ${name}>\\} into`, "m").test(out);
  assert.ok(inlined("translate"), "translate is inlined");
  assert.ok(inlined("lean4k"), "lean4k is inlined (bytecode within --max-inlined-bytecode-size)");
  assert.ok(inlined("leanEnd"), "leanEnd is inlined");
});
