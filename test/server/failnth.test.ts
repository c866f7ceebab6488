/** fail-nth fault injection through the shim (the interface iommufd_fail_nth uses). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { compile, leftovers, NOTHING_LEFT, run, settled, skipReason, withServer } from "./helpers.js";

test("fail-nth through the shim: debugfs emulated, the thread's counter fails its Nth injection point", { skip: skipReason }, async () => {
  const prog = compile("fail-nth");
  await withServer({}, async ({ server, sock }) => {
    const r = await run(sock, prog);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(r.stdout.trimEnd().split("\n"), [
      "writeat failslab/ignore-gfp-wait: ok",
      "fail* entries: 3",
      "armed 1: ioas_alloc -12, fail-nth reads 0",
      "after: ioas_alloc 0 id 1",
      "armed 100: ioas_alloc 0 id 2, fail-nth reads 99",
      "disarm: 1",
      "disarmed reads 0",
      "bad write: -1 errno 22",
      "armed open: -1 errno 12",
    ]);
    const st = await settled(server);
    assert.deepEqual(leftovers(st), NOTHING_LEFT);
    assert.equal(st.internalErrors + st.protocolErrors, 0);
  });
});
