/**
 * A client killed in the middle of an ioctl (SIGKILL while the server reads its memory) leaves the
 * server serving others, and its context, objects and pins are released.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { compile, examplePath, leftovers, NOTHING_LEFT, run, settled, skipReason, withServer } from "./helpers.js";

test("a client killed mid-ioctl is dropped; the server serves others and releases its context, objects and pins", { skip: skipReason }, async () => {
  const prog = compile("kill-target");
  await withServer({}, async ({ server, sock }) => {
    // the killer runs outside this process: the server blocks our event loop while it serves
    const r = await run(sock, prog, [], {
      onSpawn: (pid) => void spawn("sh", ["-c", `sleep 0.6; kill -9 ${pid}`], { stdio: "ignore" }),
    });
    assert.equal(r.signal, "SIGKILL");
    assert.match(r.stdout, /ready/);
    assert.doesNotMatch(r.stdout, /finished/);
    const mid = server.stats();
    assert.ok(mid.memReads > 1000, `the server was reading the client's memory (${mid.memReads} reads)`);
    assert.ok(mid.abortedRequests >= 1, "the request was abandoned");
    assert.equal(mid.internalErrors, 0);
    // others are still served
    const other = await run(sock, examplePath);
    assert.equal(other.code, 0, other.stderr);
    assert.match(other.stdout, /vmm-example: OK/);
    const st = await settled(server);
    assert.deepEqual(leftovers(st), NOTHING_LEFT);
    assert.equal(st.objectsCreated.ioas, 3);
  });
});
