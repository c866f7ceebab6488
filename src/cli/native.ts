/**
 * Where the native parts live (native/build/, made by native/build.mjs at `npm install`) and a
 * way to build them on demand.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** The package root (this file is dist/src/cli/native.js). */
export const packageRoot = fileURLToPath(new URL("../../../", import.meta.url));
export const shimPath = join(packageRoot, "native", "build", "libsoftiommu-shim.so");
export const examplePath = join(packageRoot, "native", "build", "vmm-example");

interface BuildResult {
  ok: boolean;
  built: string[];
  error: string | null;
}

/** Build the shim and the example if missing or stale; the error when that is impossible. */
export async function ensureNative(quiet = true): Promise<string | null> {
  const script = join(packageRoot, "native", "build.mjs");
  if (!existsSync(script)) return existsSync(shimPath) ? null : `${script} is missing`;
  const mod = (await import(pathToFileURL(script).href)) as { buildNative: (o: { quiet: boolean }) => BuildResult };
  const r = mod.buildNative({ quiet });
  if (r.ok) return null;
  return existsSync(shimPath) && existsSync(examplePath) ? null : r.error;
}
