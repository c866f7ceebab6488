/**
 * Process rules through the shim: a fork child is its own caller, a dup'ed fd keeps the context,
 * two programs at once are isolated, and everything is released when the programs are gone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { compile, leftovers, NOTHING_LEFT, run, settled, skipReason, withServer } from "./helpers.js";
import type { TraceRecord } from "../../src/server/index.js";

test("a forked child using the inherited fd is its own caller: it maps its own pages", { skip: skipReason }, async () => {
  const prog = compile("fork-caller");
  const trace: TraceRecord[] = [];
  await withServer({ trace: (r) => trace.push(r) }, async ({ server, sock }) => {
    const r = await run(sock, prog);
    assert.equal(r.code, 0, r.stderr);
    const child = Number(/child-pid (\d+)/.exec(r.stdout)?.[1]);
    // the device reads what the child wrote after the fork; the parent's copy is untouched
    assert.match(r.stdout, /device-read B parent-has A/);
    const map = trace.find((t) => t.ioctl === "IOMMU_IOAS_MAP");
    assert.equal(map?.pid, child, "IOAS_MAP ran as the child");
    assert.ok(trace.filter((t) => t.ioctl === "IOMMU_TEST_CMD").every((t) => t.pid === r.pid), "the parent's calls ran as the parent");
    assert.deepEqual(leftovers(await settled(server)), NOTHING_LEFT);
  });
});

test("pages a fork child pinned keep its data after it exits", { skip: skipReason }, async () => {
  const prog = compile("fork-caller");
  await withServer({}, async ({ server, sock }) => {
    const r = await run(sock, prog, ["exit-first"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /device-read B parent-has A/);
    assert.deepEqual(leftovers(await settled(server)), NOTHING_LEFT);
  });
});

test("a dup'ed fd keeps the context alive after the original is closed; the last close releases it", { skip: skipReason }, async () => {
  const prog = compile("dup-alive");
  await withServer({}, async ({ server, sock }) => {
    let released: ReturnType<typeof server.stats> | null = null;
    let out = "";
    const done = run(sock, prog, [], {
      onSpawn: () => undefined,
    });
    // poll while the program sleeps after its last close
    const poll = (async () => {
      for (let i = 0; i < 200 && !released; i++) {
        await new Promise((res) => setTimeout(res, 5));
        const st = server.stats();
        if (st.contextsOpened === 2 && st.contextsLive === 0) released = st;
      }
    })();
    const r = await done;
    await poll;
    out = r.stdout;
    assert.equal(r.code, 0, r.stderr);
    assert.match(out, /first-ioas 1 second-ioas 2 alive-through-dups/);
    // lowest free fd number, as the kernel gives: 0-2 are stdio
    assert.match(out, /reopened-fd 3/);
    assert.ok(released, "both contexts were released while the program still ran");
    assert.deepEqual(leftovers(await settled(server)), NOTHING_LEFT);
  });
});

test("two programs at once are isolated: each context has its own IDs and mappings", { skip: skipReason }, async () => {
  const prog = compile("isolated");
  await withServer({}, async ({ server, sock }) => {
    const [a, b] = await Promise.all([run(sock, prog, ["150"]), run(sock, prog, ["150"])]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.match(a.stdout, /isolated 150 rounds/);
    assert.match(b.stdout, /isolated 150 rounds/);
    const st = await settled(server);
    assert.equal(st.contextsOpened, 2);
    assert.deepEqual(leftovers(st), NOTHING_LEFT);
  });
});
