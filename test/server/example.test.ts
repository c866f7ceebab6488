/** The bundled example client and `softiommu run` end to end. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { packageRoot } from "../../src/cli/native.js";
import { examplePath, leftovers, NOTHING_LEFT, run, settled, skipReason, withServer } from "./helpers.js";

const EXPECTED = [
  "opened /dev/iommu: ioas 1, mock device 2 (idev 3) on auto domain 4",
  "mapped 16 MiB of guest RAM at IOVA 0x1000000",
  "usable IOVA ranges (1, alignment 2048): [0x1000000, 0x7fffffff]",
  'device access (fd 4): read 64 bytes of guest RAM, wrote "written by the device" into it',
  "dirty tracking: the device dirtied 2731 of 8192 IO pages; the bitmap showed 2731, then 0",
  "torn down: device, HWPT, mapping and IOAS destroyed, /dev/iommu closed",
  "vmm-example: OK",
];

test("the example client runs under the shim, exits 0 and prints the expected report", { skip: skipReason }, async () => {
  await withServer({}, async ({ server, sock }) => {
    const r = await run(sock, examplePath);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split("\n"), EXPECTED);
    const st = await settled(server);
    assert.deepEqual(leftovers(st), NOTHING_LEFT);
    assert.equal(st.internalErrors + st.protocolErrors + st.clientsDropped, 0);
    assert.deepEqual(st.errnos, { EMSGSIZE: 1, ENOENT: 1 });
  });
});

test("softiommu run without a program runs the example, returns its status and writes a JSON trace", { skip: skipReason }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "softiommu-run-test-"));
  try {
    const tracePath = path.join(dir, "trace.jsonl");
    const sumPath = path.join(dir, "summary.json");
    const cli = path.join(packageRoot, "dist", "src", "cli", "main.js");
    const r = spawnSync(process.execPath, [cli, "run", "--trace", tracePath, "--summary-json", sumPath], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /vmm-example: OK/);
    assert.match(r.stderr, /contexts opened 1, still open 0/);
    assert.match(r.stderr, /errnos returned: EMSGSIZE 1, ENOENT 1/);
    const recs = fs.readFileSync(tracePath, "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(recs.length, 20);
    const map = recs.find((x) => x.ioctl === "IOMMU_IOAS_MAP") as { in: Record<string, unknown>; ret: number; us: number };
    assert.equal(map.in.length, 16 << 20);
    assert.equal(map.in.iova, 0x1000000);
    assert.equal(map.ret, 0);
    assert.ok(map.us > 0);
    const ranges = recs.filter((x) => x.ioctl === "IOMMU_IOAS_IOVA_RANGES");
    assert.equal(ranges[0].errno, "EMSGSIZE");
    assert.equal((ranges[0].out as Record<string, unknown>).num_iovas, 1);
    const sum = JSON.parse(fs.readFileSync(sumPath, "utf8")) as Record<string, unknown>;
    assert.equal(sum.status, 0);
    assert.equal(sum.contextsLive, 0);
    // a failing program's status comes back
    const f = spawnSync(process.execPath, [cli, "run", "-q", "--", "sh", "-c", "exit 7"], { encoding: "utf8" });
    assert.equal(f.status, 7);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
