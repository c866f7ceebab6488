/**
 * Capabilities: the emulated kernel checks the calling program's real effective capabilities
 * (sent by the shim), and `grantCaps` (softiommu run --cap) adds capabilities on top of them.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { packageRoot } from "../../src/cli/native.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { compile, run, skipReason, withServer } from "./helpers.js";

const CAP_SYS_RESOURCE = 24n;
/** Whether programs this test starts really have CAP_SYS_RESOURCE (CapEff of this process). */
const realSysResource = ((BigInt("0x" + (/CapEff:\s*([0-9a-f]+)/.exec(fs.readFileSync("/proc/self/status", "utf8"))?.[1] ?? "0")) >> CAP_SYS_RESOURCE) & 1n) === 1n;

test("RLIMIT_MODE SET through the shim answers by the program's real CAP_SYS_RESOURCE", { skip: skipReason }, async () => {
  const prog = compile("rlimit-mode");
  await withServer({}, async ({ sock }) => {
    const r = await run(sock, prog);
    assert.equal(r.code, 0, r.stderr);
    if (realSysResource) assert.match(r.stdout, /set-ok\nmode 1/);
    else assert.match(r.stdout, /set-errno 1\nmode 0/, "EPERM, and the mode is unchanged");
  });
});

test("grantCaps sys_resource (run --cap sys_resource) lets RLIMIT_MODE SET succeed whatever the real capabilities", { skip: skipReason }, async () => {
  const prog = compile("rlimit-mode");
  await withServer({ grantCaps: ["sys_resource"] }, async ({ sock }) => {
    const r = await run(sock, prog);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /set-ok\nmode 1/);
  });
});

test("softiommu run --cap all grants the capabilities; an unknown name is refused before anything runs", { skip: skipReason }, () => {
  const prog = compile("rlimit-mode");
  const cli = path.join(packageRoot, "dist", "src", "cli", "main.js");
  const ok = spawnSync(process.execPath, [cli, "run", "-q", "--cap", "all", "--", prog], { encoding: "utf8" });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /set-ok\nmode 1/);
  const bad = spawnSync(process.execPath, [cli, "run", "-q", "--cap", "sys_bogus", "--", prog], { encoding: "utf8" });
  assert.notEqual(bad.status, 0);
  assert.equal(bad.stdout, "", "the program did not run");
  assert.match(bad.stderr, /unknown capability "sys_bogus"/);
});
