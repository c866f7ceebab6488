#!/usr/bin/env node
// Writes the C headers generated from the uAPI tables (src/uapi/c-header.ts) into include/.
// Run after `npm run -s build`; `--check` only reports whether the committed headers are current.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import process from "node:process";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const mod = join(root, "dist/src/uapi/c-header.js");
if (!existsSync(mod)) {
  process.stderr.write("gen-header: dist/ is missing; run `npm run -s build` first\n");
  process.exit(2);
}
const { renderHeaders } = await import(mod);
const check = process.argv.includes("--check");
let stale = 0;
for (const [rel, text] of renderHeaders()) {
  const path = join(root, rel);
  const old = existsSync(path) ? readFileSync(path, "utf8") : null;
  if (old === text) continue;
  stale++;
  if (check) {
    process.stdout.write(`stale: ${rel}\n`);
    continue;
  }
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  process.stdout.write(`wrote ${rel}\n`);
}
if (check && stale) process.exit(1);
