/**
 * Helpers for the shim + server tests: build the native parts and the C test programs, run a
 * server in this process, run programs under the shim.
 */
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ensureNative, examplePath, packageRoot, shimPath } from "../../src/cli/native.js";
import { SoftiommuServer, type ServerOptions, type ServerStats } from "../../src/server/index.js";

export { examplePath, shimPath };

function hasCc(): boolean {
  try {
    execFileSync(process.env.CC ?? "cc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Why the native tests cannot run here (no compiler / no shim), or undefined. */
export const skipReason: string | undefined = await (async () => {
  if (process.platform !== "linux" || process.arch !== "x64") return "the preload shim is for Linux x86-64";
  if (!hasCc()) return "no C compiler: the preload shim cannot be built";
  const err = await ensureNative(true);
  return err ?? undefined;
})();

const binDir = fs.mkdtempSync(path.join(os.tmpdir(), "softiommu-test-bin-"));
process.on("exit", () => fs.rmSync(binDir, { recursive: true, force: true }));

/** Compile test/server/c/NAME.c (against include/) once per test process. */
export function compile(name: string): string {
  const out = path.join(binDir, name);
  if (!fs.existsSync(out))
    execFileSync(process.env.CC ?? "cc", ["-O1", "-Wall", "-I", path.join(packageRoot, "include"), "-o", out, path.join(packageRoot, "test", "server", "c", `${name}.c`)], {
      stdio: ["ignore", "ignore", "inherit"],
    });
  return out;
}

export interface Served {
  server: SoftiommuServer;
  sock: string;
}

/** A server in this process on a fresh socket; closed after fn. */
export async function withServer<T>(opts: ServerOptions, fn: (s: Served) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "softiommu-test-"));
  const sock = path.join(dir, "sock");
  const server = new SoftiommuServer(opts);
  await server.listen(sock);
  try {
    return await fn({ server, sock });
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  pid: number;
}

/** Run a program with the shim preloaded against the server at sock. */
export function run(
  sock: string,
  prog: string,
  args: string[] = [],
  opts: { stdin?: string; timeoutMs?: number; onSpawn?: (pid: number) => void; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(prog, args, {
      env: { ...process.env, ...opts.env, LD_PRELOAD: shimPath, SOFTIOMMU_SOCKET: sock },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
    child.once("error", reject);
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    child.stdin.on("error", () => {}); // EPIPE: the program exited without reading its input
    child.stdin.end(opts.stdin ?? "");
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, pid: child.pid ?? -1 });
    });
  });
}

/** Wait until the server holds nothing for exited clients (EOFs and mirrors are asynchronous). */
export async function settled(server: SoftiommuServer, timeoutMs = 5000): Promise<ServerStats> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    await server.whenIdle();
    const s = server.stats();
    const clean = s.contextsLive === 0 && s.filesLive === 0 && s.pinnedBytes === 0 && s.mirrorsLive === 0 && Object.keys(s.objectsLive).length === 0;
    if (clean || Date.now() > end) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The leftovers a settled server must not have. */
export function leftovers(s: ServerStats): Record<string, unknown> {
  return { contexts: s.contextsLive, files: s.filesLive, pinned: s.pinnedBytes, mirrors: s.mirrorsLive, objects: s.objectsLive };
}
export const NOTHING_LEFT = { contexts: 0, files: 0, pinned: 0, mirrors: 0, objects: {} };
