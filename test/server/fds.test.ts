/**
 * The fds iommufd hands out, as a program sees them through the shim, against the real 6.12
 * kernel's answers (oracle/probes/probe-fds.out.txt): close-on-exec, access mode, lseek ESPIPE,
 * fstat's type and mode, the /proc/self/fd link, and mmap of /dev/iommu (ENODEV).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { packageRoot } from "../../src/cli/native.js";
import { execFileSync } from "node:child_process";
import os from "node:os";
import { run, skipReason, withServer } from "./helpers.js";

test("/dev/iommu and fault-queue fds look as on Linux 6.12: cloexec, O_RDWR, lseek ESPIPE, fstat type and mode, /proc/self/fd link, mmap ENODEV", { skip: skipReason }, async () => {
  // the probe itself, built against the project's header
  const prog = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "softiommu-fds-")), "probe-fds");
  execFileSync(process.env.CC ?? "cc", ["-O1", "-Wall", "-I", path.join(packageRoot, "include"), "-o", prog, path.join(packageRoot, "oracle", "probes", "probe-fds.c")], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const want = fs.readFileSync(path.join(packageRoot, "oracle", "probes", "probe-fds.out.txt"), "utf8").trimEnd().split("\n");
  await withServer({}, async ({ sock }) => {
    const r = await run(sock, prog);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split("\n"), want);
  });
});
