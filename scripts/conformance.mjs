#!/usr/bin/env node
// npm run conformance [-- OPTIONS] [-- PROGRAM-ARGS]: the kernel's own iommufd selftest, from
// Debian's linux-source-6.12 package, built against softiommu's header and run under
// `softiommu run`; every test is compared with the expectation file (conformance/).
//
//   1. the tarball /usr/src/linux-source-6.12.tar.xz (apt-get install when missing, as root);
//   2. only tools/testing/selftests/{kselftest*,iommu} and iommufd_test.h unpacked into the cache
//      ($SOFTIOMMU_CACHE_DIR, $XDG_CACHE_HOME/softiommu or ~/.cache/softiommu);
//   3. `iommufd` and `iommufd_fail_nth` built (dynamically linked) with the selftest Makefile's
//      flags and -I include/ (the project's <linux/iommufd.h>), sources untouched;
//   4. as root, 2 MiB hugepages reserved (MAP_HUGETLB fixtures) and put back afterwards;
//   5. each program run as `node dist/src/cli/main.js run --cap all [--kernel 6.12] -- PROGRAM`
//      with a progress line, its TAP parsed, totals printed per fixture (--cap all: the program is
//      treated as the oracle's root, who has every capability the model checks, even where the real
//      root lacks one, like a container without CAP_SYS_RESOURCE);
//   6. every run compared with the expectation file: exit 1 when a test expected to pass does not
//      (or the binary has a test the file does not list), 2 when the suite cannot run at all.
//
// Options:
//   --kernel newest|6.12   profile for `softiommu run` (default newest); 6.12 uses expected-6.12.txt
//   --expected FILE        another expectation file
//   --only PROGRAM         run only this program (repeatable): iommufd, iommufd_fail_nth
//   --build-only           steps 1-3 and the expectation-file check, no run
//   --update-expected      rewrite the expectation file from the binaries' test lists (`-l`),
//                          keeping every existing mark; new tests get expected-fail with a reason
//   --oracle DIR           run static builds on the real 6.12 kernel instead (DIR/run-in-vm.sh,
//                          ../shared/oracle) and store the transcripts in conformance/oracle/
//   --no-install           never apt-get install
//   --real-caps            no --cap all: the emulated kernel checks the program's real capabilities
//   --adapted              iommufd adapted to 6.12 (its PASID mock device and GET_HW_INFO data-type
//                          requests taken out; built as iommufd_adapted_612.c in the cache), run
//                          with --kernel 6.12 against conformance/expected-6.12-adapted.txt
//   -- ARGS                passed to the programs (kselftest filters: -f/-v/-t/-r ...)
// Environment: SOFTIOMMU_CACHE_DIR, SOFTIOMMU_LINUX_TARBALL, SOFTIOMMU_HUGEPAGES (default 128),
// SOFTIOMMU_RUN_CLI (another `softiommu` CLI script to run under), CC.
// iommufd_fail_nth runs safely as root on a kernel with fault injection: the shim emulates
// /sys/kernel/debug/fail* and /proc/<pid>/task/<tid>/fail-nth (the counter lives in the server).
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  bar,
  buildProgram,
  cacheDir,
  compare,
  ensureTarball,
  extractSelftest,
  fixtureTotals,
  formatExpected,
  formatTotals,
  isRoot,
  LineSplitter,
  listRuns,
  packageVersion,
  parseExpected,
  parseRunLine,
  parseTapLine,
  PROGRAMS,
  adaptSelftestTo612,
  reserveHugepages,
  restoreHugepages,
  ROOT,
} from "./conformance-lib.mjs";

const out = (s = "") => process.stdout.write(`${s}\n`);
const note = (s) => process.stderr.write(`conformance: ${s}\n`);
const die = (s, code = 2) => {
  note(s);
  process.exit(code);
};

// ------------------------------------------------------------------------------------ options

const argv = process.argv.slice(2);
const dd = argv.indexOf("--");
const opts = dd >= 0 ? argv.slice(0, dd) : argv;
const passArgs = dd >= 0 ? argv.slice(dd + 1) : [];
let kernel = "newest";
let expectedFile = null;
const only = [];
let buildOnly = false;
let update = false;
let oracle = null;
let install = true;
let realCaps = false;
let adapted = false;
for (let i = 0; i < opts.length; i++) {
  const a = opts[i];
  const val = () => {
    if (i + 1 >= opts.length) die(`${a} needs a value`);
    return opts[++i];
  };
  if (a === "--kernel") kernel = val();
  else if (a === "--expected") expectedFile = val();
  else if (a === "--only") only.push(val());
  else if (a === "--build-only") buildOnly = true;
  else if (a === "--update-expected") update = true;
  else if (a === "--oracle") oracle = val();
  else if (a === "--no-install") install = false;
  else if (a === "--real-caps") realCaps = true;
  else if (a === "--adapted") adapted = true;
  else if (a === "-h" || a === "--help") {
    const src = readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n");
    out(src.slice(1, src.findIndex((l) => l.startsWith("import"))).map((l) => l.replace(/^\/\/ ?/, "")).join("\n"));
    process.exit(0);
  } else die(`unknown option ${a} (--help lists them)`);
}
if (kernel !== "newest" && kernel !== "6.12") die(`--kernel ${kernel}: want newest or 6.12`);
for (const p of only) if (!PROGRAMS.includes(p)) die(`--only ${p}: want one of ${PROGRAMS.join(", ")}`);
// --adapted: iommufd with its two newer-than-6.12 uses taken out, answered as 6.12
if (adapted) kernel = "6.12";
const programs = adapted ? ["iommufd"] : only.length ? PROGRAMS.filter((p) => only.includes(p)) : PROGRAMS;
if (oracle) kernel = "6.12";
expectedFile ??= join(ROOT, "conformance", adapted ? "expected-6.12-adapted.txt" : kernel === "6.12" ? "expected-6.12.txt" : "expected.txt");
const ORACLE_DIR = join(ROOT, "conformance", "oracle");

// ------------------------------------------------------------------------------------ 1-3: sources and build

const cache = cacheDir();
const got = ensureTarball({ install, log: note });
if (got.error) die(got.error);
const tarball = got.tarball;
let tree;
try {
  tree = extractSelftest(tarball, cache, { log: note });
} catch (e) {
  die(e.message);
}
const version = packageVersion();
const buildDir = join(cache, (oracle ? "build-static" : "build") + (adapted ? "-adapted" : ""));
const adaptedSource = adapted ? adaptSelftestTo612(tree) : null;
const binaries = {};
for (const p of programs) {
  try {
    const b = buildProgram(tree, p, buildDir, { ...(oracle ? { extra: ["-static"] } : {}), ...(adaptedSource ? { source: adaptedSource } : {}) });
    binaries[p] = b.path;
    if (b.rebuilt) note(`built ${b.path}${oracle ? " (static, for the oracle)" : ""}`);
  } catch (e) {
    die(e.message);
  }
}
out(`selftest: ${tarball}${version ? ` (${version})` : ""}, built in ${buildDir}`);

const listed = {};
for (const p of programs) listed[p] = listRuns(binaries[p]);
out(`tests: ${programs.map((p) => `${p} ${listed[p].length}`).join(", ")}`);

// ------------------------------------------------------------------------------------ expectations

const DEFAULT_REASON = "the shim and server are not built yet";
const HEADER = [
  "Expected results of the kernel's iommufd selftest (Debian's linux-source-6.12, 6.12.117) under",
  `\`softiommu run${kernel === "6.12" ? " --kernel 6.12" : ""}\`: one line per run, "NAME pass" or "NAME expected-fail: REASON".`,
  "`npm run conformance` fails when a test marked pass does not pass, or the binary has a test not",
  `listed here. Regenerate the list (keeping every mark) with \`npm run conformance -- ${kernel === "6.12" ? "--kernel 6.12 " : ""}--update-expected\`.`,
  ...(kernel === "6.12"
    ? ["", "Profile 6.12 reproduces the real 6.12.117 kernel (conformance/oracle/*.tap): as shipped, 26 runs use uAPI", "newer than 6.12 and fail there too."]
    : ["", "Profile newest: softiommu implements the newest uAPI, so every run is meant to pass."]),
];

/** Why a test fails on the real 6.12 kernel, from the stored oracle transcript (null: it passes). */
function oracleReasons(program) {
  const f = join(ORACLE_DIR, `${program}.tap`);
  if (!existsSync(f)) return new Map();
  const reasons = new Map();
  let diag = [];
  for (const line of readFileSync(f, "utf8").split("\n")) {
    if (parseRunLine(line)) diag = [];
    else if (line.startsWith("# ")) diag.push(line);
    const r = parseTapLine(line);
    if (!r || r.outcome === "pass") continue;
    const d = diag.join("\n");
    let why = "fails on the real 6.12.117 kernel too";
    if (/MOCK_FLAGS_DEVICE_PASID/.test(d)) why = "its setup makes a MOCK_FLAGS_DEVICE_PASID mock device, newer than 6.12 (EINVAL): the real 6.12.117 kernel fails it too";
    else if (/get_hw_info/.test(d)) why = "asks GET_HW_INFO for a data type (IOMMU_HW_INFO_FLAG_INPUT_TYPE), newer than 6.12 (EOPNOTSUPP): the real 6.12.117 kernel fails it too";
    reasons.set(r.name, why);
  }
  return reasons;
}

let expected = [];
if (existsSync(expectedFile)) {
  try {
    expected = parseExpected(readFileSync(expectedFile, "utf8"));
  } catch (e) {
    die(`${relative(process.cwd(), expectedFile)}: ${e.message}`);
  }
}

if (update) {
  const reasons = kernel === "6.12" ? Object.fromEntries(PROGRAMS.map((p) => [p, oracleReasons(p)])) : {};
  const all = PROGRAMS.map((p) => ({ program: p, names: listed[p] ?? expected.filter((e) => e.program === p).map((e) => e.name) }));
  const text = formatExpected(HEADER, all, expected, (p, n) => reasons[p]?.get(n) ?? DEFAULT_REASON);
  mkdirSync(join(ROOT, "conformance"), { recursive: true });
  writeFileSync(expectedFile, text);
  const e = parseExpected(text);
  out(`wrote ${relative(process.cwd(), expectedFile)}: ${e.length} runs, ${e.filter((x) => x.expect === "pass").length} expected to pass`);
  process.exit(0);
}

if (!oracle && !existsSync(expectedFile)) die(`${expectedFile} is missing: create it with \`npm run conformance -- ${kernel === "6.12" ? "--kernel 6.12 " : ""}--update-expected\``);
if (!oracle) {
  const check = compare(expected, programs.map((p) => ({ program: p, complete: false, results: [], listed: listed[p] })));
  if (check.unlisted.length) {
    note(`${relative(process.cwd(), expectedFile)} does not list ${check.unlisted.length} test(s) the binaries have, e.g. ${check.unlisted[0].name}; add them with --update-expected`);
    process.exit(1);
  }
  for (const s of check.stale) note(`${relative(process.cwd(), expectedFile)}:${s.line}: ${s.name} is not a test of ${s.program} any more`);
}
const nPass = expected.filter((e) => programs.includes(e.program) && e.expect === "pass").length;
if (!oracle) out(`expectations: ${relative(process.cwd(), expectedFile)} (${expected.filter((e) => programs.includes(e.program)).length} runs, ${nPass} expected to pass)`);
if (buildOnly) process.exit(0);

// ------------------------------------------------------------------------------------ 4-5: run

let runner;
if (oracle) {
  runner = join(oracle, "run-in-vm.sh");
  if (!existsSync(runner)) die(`--oracle ${oracle}: no run-in-vm.sh there (build it with ../shared/oracle/build.sh ${oracle})`);
} else {
  runner = process.env.SOFTIOMMU_RUN_CLI || join(ROOT, "dist", "src", "cli", "main.js");
  if (!existsSync(runner)) {
    die(
      `cannot run the selftest: \`softiommu run\` is not built yet (${relative(process.cwd(), runner)} is missing; ` +
        "it comes with the preload shim, the server and the CLI of issue 3 — `npm run build` once they land). " +
        `Everything else is ready: the programs are in ${buildDir} and ${relative(process.cwd(), expectedFile)} lists every run.`,
    );
  }
}

let hugepagesBefore = null;
if (isRoot() && !oracle) {
  const want = Number(process.env.SOFTIOMMU_HUGEPAGES || 128);
  const r = reserveHugepages(want);
  if (r.error) note(`could not reserve ${want} hugepages (${r.error}): MAP_HUGETLB fixtures will fail`);
  else {
    if (r.after < want) note(`only ${r.after} of ${want} 2 MiB hugepages could be reserved: some MAP_HUGETLB fixtures may fail`);
    if (r.after !== r.before) {
      hugepagesBefore = r.before;
      note(`reserved ${r.after} 2 MiB hugepages (was ${r.before}; put back at the end)`);
    }
  }
} else if (!oracle) note("not root: no hugepages reserved (the MAP_HUGETLB fixtures need /proc/sys/vm/nr_hugepages >= 128)");
const putBack = () => {
  if (hugepagesBefore !== null) restoreHugepages(hugepagesBefore);
  hugepagesBefore = null;
};
process.on("exit", putBack);
process.on("SIGINT", () => process.exit(130));
process.on("SIGTERM", () => process.exit(143));

const tty = process.stderr.isTTY === true;
const resultsDir = join(cache, "results", oracle ? "oracle-6.12" : kernel);
mkdirSync(resultsDir, { recursive: true });

/** Runs one program; resolves to { results, plan, status, stderrTail, log }. */
function runProgram(program) {
  const total = listed[program].length;
  const args = oracle ? [binaries[program], ...passArgs] : [runner, "run", ...(realCaps ? [] : ["--cap", "all"]), ...(kernel !== "newest" ? ["--kernel", kernel] : []), "--", binaries[program], ...passArgs];
  const cmd = oracle ? runner : process.execPath;
  const logPath = join(resultsDir, `${program}.tap`);
  const log = createWriteStream(logPath);
  const errPath = join(resultsDir, `${program}.stderr.txt`);
  const errLog = createWriteStream(errPath);
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: buildDir, stdio: ["ignore", "pipe", "pipe"] });
    const results = [];
    const diags = new Map();
    let diag = [];
    let plan = null;
    let current = "";
    let lastFixture = null;
    const tail = [];
    const counts = { pass: 0, fail: 0, skip: 0 };
    const draw = () => {
      if (!tty) return;
      const line = `${program} ${bar(results.length, plan ?? total)} ${results.length}/${plan ?? total}  pass ${counts.pass} fail ${counts.fail} skip ${counts.skip}  ${current}`;
      process.stderr.write(`\r\x1b[K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
    };
    const fixtureDone = (f) => {
      if (tty || !f) return;
      const t = fixtureTotals(results.filter((r) => r.name.split(".")[0] === f)).get(f);
      if (t) note(`${program}: ${f} done (${t.pass} pass, ${t.fail} fail, ${t.skip} skip) — ${results.length}/${plan ?? total}`);
    };
    const stdout = new LineSplitter((line) => {
      log.write(`${line}\n`);
      const p = /^1\.\.(\d+)$/.exec(line);
      if (p && plan === null) plan = Number(p[1]);
      const run = parseRunLine(line);
      if (run) {
        current = run;
        diag = [];
      } else if (line.startsWith("# ") && !/^#\s+(OK|FAIL)\s/.test(line)) diag.push(line.slice(2));
      const r = parseTapLine(line);
      if (r) {
        if (r.outcome !== "pass") diags.set(r.name, diag.slice(0, 4));
        const f = r.name.split(".")[0];
        if (lastFixture !== null && f !== lastFixture) fixtureDone(lastFixture);
        lastFixture = f;
        results.push(r);
        if (r.outcome === "pass" || r.outcome === "xpass") counts.pass++;
        else if (r.outcome === "skip") counts.skip++;
        else counts.fail++;
      }
      draw();
    });
    const stderr = new LineSplitter((line) => {
      errLog.write(`${line}\n`);
      // the harness's assertion messages (TH_LOG) go to stderr
      if (line.startsWith("# ")) diag.push(line.slice(2));
      tail.push(line);
      if (tail.length > 20) tail.shift();
    });
    child.stdout.setEncoding("utf8").on("data", (c) => stdout.push(c));
    child.stderr.setEncoding("utf8").on("data", (c) => stderr.push(c));
    draw();
    child.on("error", (e) => tail.push(`spawn failed: ${e.message}`));
    child.on("close", (status, signal) => {
      stdout.end();
      stderr.end();
      fixtureDone(lastFixture);
      if (tty) process.stderr.write("\r\x1b[K");
      log.end();
      errLog.end();
      resolve({ results, diags, plan, status: status ?? signal, stderrTail: tail, log: logPath, errLog: errPath });
    });
  });
}

const runs = [];
const diagnostics = new Map();
let broken = false;
for (const p of programs) {
  note(`running ${p} (${listed[p].length} tests)${oracle ? " on the oracle kernel" : ` under softiommu run${kernel !== "newest" ? ` --kernel ${kernel}` : ""}`}`);
  const r = await runProgram(p);
  if (r.plan === null && r.results.length === 0) {
    broken = true;
    note(`${p}: no TAP output at all (exit ${r.status}); the last lines of its stderr (${r.errLog}):`);
    for (const l of r.stderrTail) process.stderr.write(`    ${l}\n`);
  }
  runs.push({ program: p, complete: passArgs.length === 0, results: r.results, listed: listed[p] });
  for (const [k, d] of r.diags) diagnostics.set(k, d);
  out();
  out(formatTotals(p, fixtureTotals(r.results)));
  out(`  transcript: ${r.log}`);
  if (oracle) {
    mkdirSync(ORACLE_DIR, { recursive: true });
    const stored = join(ORACLE_DIR, `${p}${adapted ? "-adapted-6.12" : ""}.tap`);
    writeFileSync(stored, readFileSync(r.log, "utf8"));
    out(`  stored as ${relative(process.cwd(), stored)}`);
  }
}
putBack();

// ------------------------------------------------------------------------------------ 6: compare

if (oracle) {
  for (const run of runs) {
    const failed = run.results.filter((r) => r.outcome === "fail");
    out(`${run.program} on the real 6.12 kernel: ${run.results.length - failed.length}/${run.results.length} not failing${failed.length ? `; failing: ${failed.map((r) => r.name).join(" ")}` : ""}`);
  }
  process.exit(broken ? 2 : 0);
}

const v = compare(expected, runs);
out();
const byOutcome = (rows, o) => rows.filter((r) => r.outcome === o).length;
const ran = v.rows.filter((r) => r.outcome !== "not-run");
const notRun = v.rows.length - ran.length;
out(
  `conformance (${kernel}): ${byOutcome(ran, "pass") + byOutcome(ran, "xpass")} of ${ran.length} passed, ${byOutcome(ran, "fail") + byOutcome(ran, "xfail")} failed, ` +
    `${byOutcome(ran, "skip")} skipped, ${byOutcome(ran, "missing")} missing (no result)${notRun ? `, ${notRun} not run (filtered)` : ""}; ` +
    `${ran.filter((r) => r.expect === "pass").length} expected to pass`,
);
if (v.unexpectedPasses.length) {
  out(`${v.unexpectedPasses.length} test(s) marked expected-fail now pass — mark them pass in ${relative(process.cwd(), expectedFile)}:`);
  for (const r of v.unexpectedPasses) out(`  ${r.name}  (was: ${r.reason})`);
}
if (v.unlisted.length) {
  out(`${v.unlisted.length} test(s) are not in ${relative(process.cwd(), expectedFile)}:`);
  for (const r of v.unlisted) out(`  ${r.name}: ${r.outcome}`);
}
if (v.unexpectedFailures.length) {
  out(`FAIL: ${v.unexpectedFailures.length} test(s) expected to pass did not:`);
  for (const r of v.unexpectedFailures) {
    out(`  ${r.name}: ${r.outcome}`);
    for (const d of diagnostics.get(r.name) ?? []) out(`      ${d}`);
  }
}
if (broken) process.exit(2);
if (!v.ok) process.exit(1);
out(`OK: every test expected to pass passed (${ran.filter((r) => r.expect === "pass").length} of ${ran.length})`);
