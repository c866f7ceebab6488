/**
 * Fuzzing the server: random and mutated frames from a misbehaving protocol client, and random
 * ioctl buffers from C programs through the shim. The server never crashes, keeps serving other
 * clients, and after the clients exit holds no context, object, pin or mirror.
 * SOFTIOMMU_FUZZ_SCALE=N multiplies the run (nightly-size runs: e.g. 100).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { compile, examplePath, leftovers, NOTHING_LEFT, run, settled, skipReason, withServer } from "./helpers.js";

const SCALE = Math.max(1, Number(process.env.SOFTIOMMU_FUZZ_SCALE ?? 1) || 1);
const client = fileURLToPath(new URL("./fuzz-client.js", import.meta.url));

function fuzzFrames(sock: string, seed: number, connections: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [client, "--fuzz-client", sock, String(seed), String(connections)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.once("close", (code) => resolve({ code, out }));
  });
}

test("random and mutated frames never crash the server, and it cleans up after the clients", { timeout: 120_000 * SCALE }, async () => {
  await withServer({ clientTimeoutMs: 300 }, async ({ server, sock }) => {
    let frames = 0;
    for (let seed = 1; seed <= 3 * SCALE; seed++) {
      const r = await fuzzFrames(sock, seed, 40);
      assert.equal(r.code, 0);
      frames += Number(/(\d+) frames/.exec(r.out)?.[1] ?? 0);
    }
    assert.ok(frames >= 300, `${frames} frames sent`);
    const st = await settled(server);
    assert.equal(st.internalErrors, 0, "no internal error in the model or the server");
    assert.ok(st.protocolErrors > 0 && st.clientsDropped > 0, "broken clients were dropped");
    assert.deepEqual(leftovers(st), NOTHING_LEFT);
  });
});

test("random ioctl buffers through the shim never crash the server, and it cleans up after the programs", { skip: skipReason, timeout: 120_000 * SCALE }, async () => {
  const prog = compile("fuzz-ioctl");
  await withServer({}, async ({ server, sock }) => {
    for (let seed = 1; seed <= 4 * SCALE; seed++) {
      const r = await run(sock, prog, [String(seed), "250"]);
      assert.equal(r.code, 0, `seed ${seed}: ${r.stderr}`);
      assert.match(r.stdout, /fuzz-ioctl 250 calls/);
    }
    const ok = await run(sock, examplePath);
    assert.equal(ok.code, 0, ok.stderr);
    const st = await settled(server);
    assert.equal(st.internalErrors, 0, "no internal error in the model or the server");
    assert.deepEqual(leftovers(st), NOTHING_LEFT);
  });
});
