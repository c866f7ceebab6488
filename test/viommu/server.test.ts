/**
 * A vEVENTQ fd through the preload shim and the server (test/viommu/c/veventq.c): the fd is a real
 * socket whose poll says POLLIN while records are queued; read() gives whole records with the
 * kernel's size rules; the fd has no write (EINVAL); it holds the vEVENTQ (DESTROY EBUSY) until
 * closed.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import assert from "node:assert/strict";
import { packageRoot } from "../../src/cli/native.js";
import { run, skipReason, withServer } from "../server/helpers.js";

function compileHere(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "softiommu-viommu-bin-"));
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, name);
  execFileSync(process.env.CC ?? "cc", ["-O1", "-Wall", "-I", path.join(packageRoot, "include"), "-o", out, path.join(packageRoot, "test", "viommu", "c", `${name}.c`)], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  return out;
}

test("a vEVENTQ fd through the shim: poll, read-size rules, overflow with a LOST_EVENTS header, no write, DESTROY EBUSY until closed", { skip: skipReason }, async () => {
  const prog = compileHere("veventq");
  await withServer({}, async ({ sock }) => {
    const r = await run(sock, prog);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        "poll empty 0",
        "read 64 ->",
        "poll one 1",
        "read 0 errno 22",
        "read 8 errno 22",
        "read 12 -> 0:0x99",
        "poll drained 0",
        "read 64 -> 1:0x99 2:0x99 lost:3",
        "read 64 -> 4:0x99",
        "write errno 22",
        "destroy while open errno 16",
        "destroyed",
        "",
      ].join("\n"),
    );
  });
});
