#!/usr/bin/env node
// Builds the preload shim (native/shim.c -> native/build/libsoftiommu-shim.so) and the bundled
// example client (examples/vmm-example.c -> native/build/vmm-example) with the system C compiler.
// Run by `npm install` / `npm ci` (package.json "install"), and on demand by `softiommu run`.
// Without a compiler it prints a warning and exits 0: the library and its tests work without the
// native parts (the shim tests then skip).
//
//   node native/build.mjs [--quiet] [--force]
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, renameSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const buildDir = join(root, "native", "build");
export const shimPath = join(buildDir, "libsoftiommu-shim.so");
export const examplePath = join(buildDir, "vmm-example");

const TARGETS = [
  {
    out: shimPath,
    srcs: [join(root, "native", "shim.c"), join(root, "include", "softiommu", "iommufd.h")],
    args: (out) => ["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-fvisibility=hidden", "-I", join(root, "include"), "-o", out, join(root, "native", "shim.c"), "-ldl", "-lpthread"],
  },
  {
    out: examplePath,
    srcs: [join(root, "examples", "vmm-example.c"), join(root, "include", "softiommu", "iommufd.h")],
    args: (out) => ["-O2", "-Wall", "-Wextra", "-I", join(root, "include"), "-o", out, join(root, "examples", "vmm-example.c")],
  },
];

function compiler() {
  for (const cc of [process.env.CC, "cc", "gcc", "clang"]) {
    if (!cc) continue;
    try {
      execFileSync(cc, ["--version"], { stdio: "ignore" });
      return cc;
    } catch {
      // try the next one
    }
  }
  return null;
}

const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : 0);

/**
 * Build what is missing or older than its sources. Returns { ok, built, error }; never throws.
 * ok is false when there is no compiler or a compile failed.
 */
export function buildNative({ force = false, quiet = false } = {}) {
  const say = (s) => {
    if (!quiet) process.stderr.write(s);
  };
  const stale = TARGETS.filter((t) => force || mtime(t.out) < Math.max(...t.srcs.map(mtime)));
  if (!stale.length) return { ok: true, built: [], error: null };
  const cc = compiler();
  if (!cc) {
    const error = "no C compiler (cc) found: the preload shim and the example client are not built; `softiommu run` needs them";
    say(`softiommu: warning: ${error}\n`);
    return { ok: false, built: [], error };
  }
  mkdirSync(buildDir, { recursive: true });
  const built = [];
  for (const t of stale) {
    const tmp = `${t.out}.tmp${process.pid}`;
    try {
      execFileSync(cc, t.args(tmp), { stdio: ["ignore", "ignore", "pipe"] });
      renameSync(tmp, t.out);
      built.push(t.out);
    } catch (e) {
      const error = `building ${t.out} failed: ${String(e.stderr ?? e.message).trim()}`;
      say(`softiommu: warning: ${error}\n`);
      return { ok: false, built, error };
    }
  }
  say(`softiommu: built ${built.map((b) => b.slice(root.length + 1)).join(", ")}\n`);
  return { ok: true, built, error: null };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  buildNative({ force: process.argv.includes("--force"), quiet: process.argv.includes("--quiet") });
}
