#!/usr/bin/env node
/**
 * The softiommu command.
 *
 *   softiommu serve [--socket PATH] [--kernel newest|6.12] [--trace FILE]
 *   softiommu run [--trace FILE] [--kernel newest|6.12] [--summary-json FILE] [-- PROGRAM ARGS...]
 *   softiommu stats [--socket PATH]
 *
 * `run` starts a private server, runs PROGRAM with the preload shim (or, without a program, the
 * bundled example client examples/vmm-example.c), prints a summary and exits with PROGRAM's status.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import process from "node:process";
import { Command, InvalidArgumentError, Option } from "commander";
import { CAPABILITIES, defaultSocketPath, SoftiommuServer, type Capability, type ServerStats, type TraceRecord } from "../server/index.js";
import { frame, Kind } from "../server/protocol.js";
import { ensureNative, examplePath, shimPath } from "./native.js";
import { formatSummary } from "./summary.js";
import { pinPlan } from "./pin.js";
import { SCENARIOS, findScenario } from "../guest/scenarios.js";
import { formatReport, runScenario } from "../guest/scenario.js";

const KERNELS = ["newest", "6.12"] as const;
type Kernel = (typeof KERNELS)[number];

function kernelOption(): Option {
  return new Option("--kernel <profile>", "the kernel to answer as").choices(KERNELS).default("newest");
}

function capOption(): Option {
  const names = Object.keys(CAPABILITIES) as Capability[];
  return new Option(
    "--cap <names>",
    `treat the program as having these capabilities in the emulated kernel, whatever its real ones (comma-separated: ${names.join(", ")}, or all)`,
  )
    .argParser((v: string, prev: Capability[] | undefined): Capability[] => {
      const out = [...(prev ?? [])];
      for (const raw of v.split(",")) {
        const n = raw.trim().toLowerCase().replace(/^cap_/, "");
        if (n === "all") out.push(...names);
        else if ((names as string[]).includes(n)) out.push(n as Capability);
        else throw new InvalidArgumentError(`unknown capability ${JSON.stringify(raw)} (known: ${names.join(", ")}, all)`);
      }
      return [...new Set(out)];
    })
    .default([] as Capability[]);
}

function traceSink(file: string | undefined): { write: ((r: TraceRecord) => void) | undefined; close: () => void } {
  if (!file) return { write: undefined, close: () => {} };
  const fd = fs.openSync(file, "w");
  return {
    write: (r) => void fs.writeSync(fd, JSON.stringify(r) + "\n"),
    close: () => fs.closeSync(fd),
  };
}

/** The runtime directory for private sockets: $XDG_RUNTIME_DIR, else the temp dir. */
function runtimeBase(): string {
  const rt = process.env.XDG_RUNTIME_DIR;
  return rt && fs.existsSync(rt) ? rt : os.tmpdir();
}

interface ServeOpts {
  socket?: string;
  kernel: Kernel;
  cap: Capability[];
  trace?: string;
  verbose?: boolean;
}

async function serve(opts: ServeOpts): Promise<void> {
  const err = await ensureNative();
  if (err) process.stderr.write(`softiommu: warning: ${err}\n`);
  const sock = opts.socket ?? defaultSocketPath();
  const trace = traceSink(opts.trace);
  const server = new SoftiommuServer({
    profile: opts.kernel,
    grantCaps: opts.cap,
    trace: trace.write,
    log: opts.verbose ? (m) => process.stderr.write(m + "\n") : undefined,
  });
  await server.listen(sock);
  process.env.SOFTIOMMU_SOCKET = sock;
  process.stdout.write(`softiommu: serving ${opts.kernel === "6.12" ? "Linux 6.12" : "the newest uAPI"} on ${sock}\n`);
  process.stdout.write(`export SOFTIOMMU_SOCKET=${sock}\n`);
  if (fs.existsSync(shimPath)) process.stdout.write(`export LD_PRELOAD=${shimPath}\n`);
  const stop = async (): Promise<void> => {
    await server.close();
    trace.close();
    process.stderr.write(formatSummary(server.stats(), "softiommu serve: stopped"));
    process.exit(0);
  };
  process.once("SIGINT", () => void stop());
  process.once("SIGTERM", () => void stop());
}

interface RunOpts {
  kernel: Kernel;
  cap: Capability[];
  trace?: string;
  summaryJson?: string;
  quiet?: boolean;
  verbose?: boolean;
  pin?: boolean;
}

async function run(argv: string[], opts: RunOpts): Promise<number> {
  const err = await ensureNative(!opts.verbose);
  if (err) {
    process.stderr.write(`softiommu run: ${err}\n`);
    return 127;
  }
  const [prog, ...args] = argv.length ? argv : [examplePath];
  const dir = fs.mkdtempSync(path.join(runtimeBase(), "softiommu-run-"));
  fs.chmodSync(dir, 0o700);
  const sock = path.join(dir, "sock");
  const trace = traceSink(opts.trace);
  const server = new SoftiommuServer({
    profile: opts.kernel,
    grantCaps: opts.cap,
    trace: trace.write,
    log: opts.verbose ? (m) => process.stderr.write(m + "\n") : undefined,
  });
  await server.listen(sock);
  const preload = [shimPath, ...(process.env.LD_PRELOAD ? [process.env.LD_PRELOAD] : [])].join(":");
  const env: NodeJS.ProcessEnv = { ...process.env, LD_PRELOAD: preload, SOFTIOMMU_SOCKET: sock };
  delete env.SOFTIOMMU_PIN;
  if (opts.pin) {
    const plan = pinPlan(process.pid);
    if (plan) env.SOFTIOMMU_PIN = plan.env;
    else process.stderr.write("softiommu run: --pin needs at least two CPUs; running unpinned\n");
  }
  const child = spawn(prog, args, { stdio: "inherit", env });
  const forward = (sig: NodeJS.Signals): void => void child.kill(sig);
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  const status = await new Promise<number>((resolve) => {
    child.once("error", (e) => {
      process.stderr.write(`softiommu run: cannot run ${prog}: ${e.message}\n`);
      resolve(127);
    });
    child.once("exit", (code, signal) => resolve(code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0)));
  });
  process.off("SIGINT", forward);
  process.off("SIGTERM", forward);
  // let the last EOFs (files closed at exit) arrive before counting
  for (let i = 0; i < 50 && server.stats().filesLive > 0; i++) await new Promise((r) => setTimeout(r, 10));
  await server.whenIdle();
  const stats: ServerStats = server.stats();
  await server.close();
  trace.close();
  fs.rmSync(dir, { recursive: true, force: true });
  if (opts.summaryJson) fs.writeFileSync(opts.summaryJson, JSON.stringify({ status, ...stats }, null, 2) + "\n");
  if (!opts.quiet) process.stderr.write(formatSummary(stats, `softiommu run: ${path.basename(prog)} exited with status ${status} (kernel ${opts.kernel})`));
  return status;
}

async function stats(opts: { socket?: string }): Promise<void> {
  const sock = opts.socket ?? process.env.SOFTIOMMU_SOCKET ?? defaultSocketPath();
  const s = net.connect(sock);
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    s.once("error", reject);
    s.on("connect", () => s.write(frame(Kind.STATS)));
    s.on("data", (d: Buffer) => {
      chunks.push(d);
      const b = Buffer.concat(chunks);
      if (b.length >= 8 && b.length >= 8 + b.readUInt32LE(0)) {
        const st = JSON.parse(b.subarray(16, 8 + b.readUInt32LE(0)).toString()) as ServerStats;
        process.stdout.write(formatSummary(st, `softiommu server on ${sock}`));
        s.destroy();
        resolve();
      }
    });
  });
}

function positiveFile(v: string): string {
  if (!v) throw new InvalidArgumentError("a file name is needed");
  return v;
}

const program = new Command();
program.name("softiommu").enablePositionalOptions().description("The Linux IOMMU userspace stack (iommufd, VFIO type1) as an executable model");

program
  .command("serve")
  .description("serve /dev/iommu to programs running with the preload shim (LD_PRELOAD)")
  .option("--socket <path>", "socket path (default $XDG_RUNTIME_DIR/softiommu/sock or /tmp/softiommu-$UID/sock)")
  .addOption(kernelOption())
  .addOption(capOption())
  .option("--trace <file>", "write one JSON line per ioctl", positiveFile)
  .option("-v, --verbose", "log dropped clients and internal errors")
  .action(async (o: ServeOpts) => serve(o));

program
  .command("run")
  .description("run PROGRAM against a private softiommu server (no PROGRAM: the bundled example VMM client)")
  .argument("[program...]", "the program and its arguments (after --)")
  .addOption(kernelOption())
  .addOption(capOption())
  .option("--trace <file>", "write one JSON line per ioctl: decoded arguments, result, duration", positiveFile)
  .option("--summary-json <file>", "also write the summary as JSON", positiveFile)
  .option("-q, --quiet", "no summary on stderr")
  .option("-v, --verbose", "log dropped clients and internal errors")
  .option("--pin", "run the server on one CPU and the program on the others (steadier ioctl latency; the program sees one CPU fewer)")
  .passThroughOptions()
  .action(async (argv: string[], o: RunOpts) => {
    process.exitCode = await run(argv, o);
  });

program
  .command("scenario")
  .description("run a guest-side scenario (vIOMMU, guest SVA, faults, PASIDs) and print its step-by-step report")
  .argument("[names...]", "scenarios to run (default: all); `--list` names them")
  .option("-l, --list", "list the scenarios")
  .option("--json", "print the reports as JSON")
  .action((names: string[], o: { list?: boolean; json?: boolean }) => {
    if (o.list) {
      for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(24)} ${s.iommu.padEnd(7)} ${s.description}\n`);
      return;
    }
    const chosen = names.length ? names.map((n) => findScenario(n) ?? n) : [...SCENARIOS];
    const unknown = chosen.filter((c): c is string => typeof c === "string");
    if (unknown.length) {
      process.stderr.write(`softiommu scenario: unknown scenario ${unknown.join(", ")} (\`softiommu scenario --list\` names them)\n`);
      process.exitCode = 2;
      return;
    }
    const reports = chosen.map((s) => runScenario(s as Exclude<(typeof chosen)[number], string>));
    if (o.json) process.stdout.write(JSON.stringify(reports, null, 2) + "\n");
    else process.stdout.write(reports.map(formatReport).join("\n\n") + "\n");
    if (reports.some((r) => !r.ok)) process.exitCode = 1;
  });

program
  .command("stats")
  .description("print the summary of a running server")
  .option("--socket <path>", "socket path (default $SOFTIOMMU_SOCKET or the serve default)")
  .action(async (o: { socket?: string }) => stats(o));

await program.parseAsync(process.argv);
