/**
 * The latency machinery between the shim and the server: the doorbell (bell.ts; the shim rings its
 * channel's slot after every frame it sends, so a polling server reads one file instead of every
 * socket) and `softiommu run --pin` (SOFTIOMMU_PIN: the shim puts the server's thread and the
 * program on different CPUs).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import { BELL_SLOT_BYTES, BELL_SUFFIX } from "../../src/server/bell.js";
import { allowedCpus, formatCpuList, pinPlan } from "../../src/cli/pin.js";
import { compile, run, skipReason, withServer } from "./helpers.js";

const N = 500;

/** Run bell.c and record the most channels-with-a-bell the server reported while it ran. */
async function runBell(sock: string, server: { stats(): { channelsWithBell: number } }): Promise<{ code: number | null; stderr: string; maxBelled: number }> {
  let maxBelled = 0;
  let done = false;
  const watch = (async () => {
    while (!done) {
      maxBelled = Math.max(maxBelled, server.stats().channelsWithBell);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const r = await run(sock, compile("bell"), [String(N)]);
  done = true;
  await watch;
  return { code: r.code, stderr: r.stderr, maxBelled };
}

test("the shim rings its channel's doorbell slot once for every frame it sends", { skip: skipReason }, async () => {
  await withServer({}, async ({ server, sock }) => {
    const r = await runBell(sock, server);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.maxBelled, 1);
    // HELLO is sent before the slot is known; OPEN goes on the file's own socket; then N + 1 ioctls
    const bell = fs.readFileSync(sock + BELL_SUFFIX);
    const rung = bell.readUInt32LE(0);
    assert.ok(rung >= N + 1 && rung <= N + 8, `slot 0 rang ${rung} times for ${N + 1} ioctls`);
    assert.equal(bell.readUInt32LE(BELL_SLOT_BYTES), 0, "nobody else's slot moved");
  });
});

test("without the bell file the shim asks for no slot and the server polls its socket instead", { skip: skipReason }, async () => {
  await withServer({}, async ({ server, sock }) => {
    fs.rmSync(sock + BELL_SUFFIX);
    const r = await runBell(sock, server);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.maxBelled, 0);
  });
});

function cpusOf(pid: number | "self", text?: string): string | null {
  const s = text ?? fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return /^Cpus_allowed_list:\s*(\S+)/m.exec(s)?.[1] ?? null;
}

const cpus = allowedCpus();
const pinSkip = skipReason ?? (!cpus || cpus.length < 2 ? "needs two CPUs" : undefined);

test("SOFTIOMMU_PIN puts the server's thread on its CPU and the program (before main) on the others", { skip: pinSkip }, async () => {
  // a stand-in for the server's thread, so that this test process keeps its own affinity
  const stand = spawn("sleep", ["30"], { stdio: "ignore" });
  try {
    const plan = pinPlan(stand.pid as number, cpus);
    assert.ok(plan);
    await withServer({}, async ({ sock }) => {
      const r = await run(sock, "/bin/cat", ["/proc/self/status"], { env: { SOFTIOMMU_PIN: plan.env } });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(cpusOf("self", r.stdout), formatCpuList(plan.programCpus));
    });
    assert.equal(cpusOf(stand.pid as number), String(plan.serverCpu));
  } finally {
    stand.kill();
  }
});

test("a malformed SOFTIOMMU_PIN changes no affinity", { skip: skipReason }, async () => {
  await withServer({}, async ({ sock }) => {
    const before = cpusOf("self");
    for (const bad of ["", "x", `${process.pid}:`, `${process.pid}:0`, `${process.pid}:0:`, `${process.pid}:1-0:0`, `0:0:0`, `${process.pid}:0:9999`]) {
      const r = await run(sock, "/bin/cat", ["/proc/self/status"], { env: { SOFTIOMMU_PIN: bad } });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(cpusOf("self", r.stdout), before, `SOFTIOMMU_PIN=${bad}`);
    }
    assert.equal(cpusOf("self"), before);
  });
});
