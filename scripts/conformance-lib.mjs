// The conformance harness's building blocks (scripts/conformance.mjs runs them): the kselftest
// test list and TAP output parsers, the expectation file, the comparison, and the steps that fetch,
// unpack and build Debian's linux-source-6.12 selftest. The pure functions are unit-tested in
// test/conformance/harness.test.ts (types: conformance-lib.d.mts).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The two selftest programs of tools/testing/selftests/iommu, in the order they run. */
export const PROGRAMS = ["iommufd", "iommufd_fail_nth"];

/** Debian's package and the tree inside its tarball. */
export const DEB_PACKAGE = "linux-source-6.12";
export const TARBALL = `/usr/src/${DEB_PACKAGE}.tar.xz`;
export const TREE_TOP = DEB_PACKAGE;
/** The only parts of the kernel tree the selftest needs (reference section E). */
export const EXTRACT_PATTERNS = [
  `${TREE_TOP}/tools/testing/selftests/kselftest*`,
  `${TREE_TOP}/tools/testing/selftests/iommu`,
  `${TREE_TOP}/drivers/iommu/iommufd/iommufd_test.h`,
];
export const SELFTEST_DIR = "tools/testing/selftests/iommu";

/**
 * The selftest Makefile's flags (tools/testing/selftests/iommu/Makefile and lib.mk's -D_GNU_SOURCE),
 * with the project's header directory standing in for KHDR_INCLUDES: include/linux/iommufd.h
 * forwards to include/softiommu/iommufd.h, which also supplies the few newer names the 6.12.117
 * selftest uses.
 */
export function compileArgs(program, includeDir, out, extra = []) {
  return ["-Wall", "-O2", "-Wno-unused-function", "-D_GNU_SOURCE", "-I", includeDir, ...extra, "-o", out, `${program}.c`];
}

// ------------------------------------------------------------------------------------ test list

/**
 * `PROGRAM -l` (kselftest_harness.h test_harness_list_tests, printed on stderr): one block per
 * fixture, rows "%-20s %-25s %s" of fixture (first row only), variant and test, the two lists
 * side by side. Returns the fixtures with their variants and tests (the implicit "global"
 * fixture has none and is dropped).
 */
export function parseList(text) {
  const fixtures = [];
  let cur = null;
  for (const line of text.split("\n")) {
    if (!line.trim() || line.startsWith("# FIXTURE") || /^-+$/.test(line)) {
      if (/^-+$/.test(line)) cur = null;
      continue;
    }
    let rest;
    if (line[0] !== " ") {
      const name = line.split(/\s+/)[0];
      cur = { fixture: name, variants: [], tests: [] };
      fixtures.push(cur);
      rest = line.slice(Math.max(20, name.length) + 1);
    } else {
      if (!cur) throw new Error(`test list: a row outside any fixture: ${JSON.stringify(line)}`);
      rest = line.slice(21);
    }
    let variant = "";
    if (rest && rest[0] !== " ") {
      variant = rest.split(/\s+/)[0];
      rest = rest.slice(Math.max(25, variant.length) + 1);
    } else rest = rest.slice(26);
    const test = rest.trim();
    if (variant) cur.variants.push(variant);
    if (test) cur.tests.push(test);
  }
  return fixtures.filter((f) => f.tests.length > 0);
}

/** Every run "fixture[.variant].test" in the harness's order (fixture, then variant, then test). */
export function expandList(fixtures) {
  const names = [];
  for (const f of fixtures) for (const v of f.variants.length ? f.variants : [""]) for (const t of f.tests) names.push(v ? `${f.fixture}.${v}.${t}` : `${f.fixture}.${t}`);
  return names;
}

/** The fixture part of a run name. */
export function fixtureOf(name) {
  return name.split(".")[0];
}

// ------------------------------------------------------------------------------------ TAP

const TAP_RESULT = /^(ok|not ok) (\d+) (\S+)(?: #\s?(?:(SKIP|XFAIL|XPASS|TODO)\b)? ?(.*))?$/;

/**
 * One line of kselftest TAP (kselftest.h ksft_test_result_code): "ok N name", "not ok N name",
 * "ok N name # SKIP reason", "# XFAIL", "# XPASS", "not ok N name #  reason". Returns the result,
 * or null for any other line (plans, "# RUN" diagnostics, output of the emulator).
 */
export function parseTapLine(line) {
  const m = TAP_RESULT.exec(line.replace(/\r$/, ""));
  if (!m) return null;
  const [, code, num, name, directive, reason] = m;
  let outcome;
  if (code === "not ok") outcome = "fail";
  else if (directive === "SKIP") outcome = "skip";
  else if (directive === "XFAIL") outcome = "xfail";
  else if (directive === "XPASS") outcome = "xpass";
  else outcome = "pass";
  return { num: Number(num), name, outcome, reason: (reason ?? "").trim() };
}

/** "#  RUN           name ..." — the test that is starting (for the progress line). */
export function parseRunLine(line) {
  const m = /^#\s+RUN\s+(\S+) \.\.\.$/.exec(line.replace(/\r$/, ""));
  return m ? m[1] : null;
}

/** A whole TAP transcript: the plan ("1..N"), the results in order, and the harness's totals line. */
export function parseTap(text) {
  let plan = null;
  let totals = null;
  const results = [];
  for (const line of text.split("\n")) {
    const r = parseTapLine(line);
    if (r) {
      results.push(r);
      continue;
    }
    const p = /^1\.\.(\d+)/.exec(line);
    if (p && plan === null) plan = Number(p[1]);
    const t = /^# Totals: pass:(\d+) fail:(\d+) xfail:(\d+) xpass:(\d+) skip:(\d+) error:(\d+)/.exec(line);
    if (t) totals = { pass: +t[1], fail: +t[2], xfail: +t[3], xpass: +t[4], skip: +t[5], error: +t[6] };
  }
  return { plan, results, totals };
}

/** Splits a stream into lines: push(chunk) calls onLine for each complete line; end() flushes. */
export class LineSplitter {
  constructor(onLine) {
    this.onLine = onLine;
    this.buf = "";
  }
  push(chunk) {
    this.buf += chunk;
    let i;
    while ((i = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 1);
      this.onLine(line);
    }
  }
  end() {
    if (this.buf) this.onLine(this.buf);
    this.buf = "";
  }
}

/** Counts by fixture: { fixture -> { pass, fail, skip, xfail, xpass, total } }, in first-seen order. */
export function fixtureTotals(results) {
  const by = new Map();
  for (const r of results) {
    const f = fixtureOf(r.name);
    let t = by.get(f);
    if (!t) by.set(f, (t = { pass: 0, fail: 0, skip: 0, xfail: 0, xpass: 0, total: 0 }));
    t[r.outcome]++;
    t.total++;
  }
  return by;
}

/** A fixed-width table of fixtureTotals (one line per fixture and a total line). */
export function formatTotals(program, totals) {
  const rows = [...totals].map(([f, t]) => [f, t]);
  const sum = { pass: 0, fail: 0, skip: 0, xfail: 0, xpass: 0, total: 0 };
  for (const [, t] of rows) for (const k of Object.keys(sum)) sum[k] += t[k];
  const w = Math.max(24, ...rows.map(([f]) => f.length));
  const line = (name, t) =>
    `  ${name.padEnd(w)} ${String(t.pass).padStart(4)} pass ${String(t.fail).padStart(4)} fail ${String(t.skip).padStart(4)} skip` +
    (t.xfail || t.xpass ? ` ${t.xfail} xfail ${t.xpass} xpass` : "") +
    `  (${t.total})`;
  return [`${program}:`, ...rows.map(([f, t]) => line(f, t)), line("total", sum)].join("\n");
}

// ------------------------------------------------------------------------------------ expectations

/**
 * The expectation file: "# comment" lines, "[PROGRAM]" section headers, and one line per run:
 * "NAME pass" or "NAME expected-fail: REASON". Returns the entries in file order; throws on a
 * malformed line, a duplicate name, or a run outside a section.
 */
export function parseExpected(text) {
  const entries = [];
  const seen = new Set();
  let program = null;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    const where = `expectation file line ${i + 1}`;
    if (!line || line.startsWith("#")) return;
    const sec = /^\[([\w.-]+)\]$/.exec(line);
    if (sec) {
      program = sec[1];
      return;
    }
    const m = /^(\S+)\s+(pass|expected-fail:\s*(.+))$/.exec(line);
    if (!m) throw new Error(`${where}: want "NAME pass" or "NAME expected-fail: REASON", got ${JSON.stringify(raw)}`);
    if (!program) throw new Error(`${where}: ${m[1]} comes before any [PROGRAM] section`);
    if (seen.has(m[1])) throw new Error(`${where}: ${m[1]} is listed twice`);
    seen.add(m[1]);
    entries.push({ program, name: m[1], expect: m[2] === "pass" ? "pass" : "expected-fail", reason: m[3] ? m[3].trim() : "", line: i + 1 });
  });
  return entries;
}

/**
 * Renders an expectation file for `programs` ([{ program, names }]): each run keeps its entry from
 * `previous` (parseExpected output) when there is one, else gets reasonFor(program, name) (a string:
 * expected-fail with that reason; null: pass).
 */
export function formatExpected(header, programs, previous, reasonFor) {
  const prev = new Map(previous.map((e) => [e.name, e]));
  const width = Math.max(0, ...programs.flatMap((p) => p.names.map((n) => n.length))) + 2;
  const out = header.map((h) => (h ? `# ${h}` : "#"));
  for (const { program, names } of programs) {
    out.push("", `[${program}]`);
    for (const n of names) {
      const e = prev.get(n);
      const reason = e ? (e.expect === "pass" ? null : e.reason) : reasonFor(program, n);
      out.push(`${n.padEnd(width)}${reason === null ? "pass" : `expected-fail: ${reason}`}`);
    }
  }
  return out.join("\n") + "\n";
}

/** Outcomes that count as the test passing. */
export const PASSED = new Set(["pass", "xpass"]);

/**
 * Compares runs with the expectations. `runs`: [{ program, complete, results, listed }] where
 * `listed` are the names the binary enumerates (-l), `results` its parsed TAP results and
 * `complete` says whether every listed test was meant to run (no filter). Returns one row per
 * listed or reported test and the verdict:
 * - unexpectedFailures: expected to pass, and did not pass (failed, skipped, or missing from the
 *   output of a complete run);
 * - unexpectedPasses: marked expected-fail but passed (the file can be updated);
 * - unlisted: tests the binary has that the file does not list (the file must list every test);
 * - stale: entries of the file that the binary does not have.
 * ok is true when there are no unexpected failures and no unlisted tests.
 */
export function compare(expected, runs) {
  const exp = new Map(expected.map((e) => [e.name, e]));
  const rows = [];
  const unexpectedFailures = [];
  const unexpectedPasses = [];
  const unlisted = [];
  const known = new Set();
  for (const run of runs) {
    const got = new Map(run.results.map((r) => [r.name, r]));
    const names = [...run.listed];
    for (const r of run.results) if (!run.listed.includes(r.name)) names.push(r.name);
    for (const name of names) {
      known.add(name);
      const e = exp.get(name);
      const r = got.get(name);
      const outcome = r ? r.outcome : run.complete ? "missing" : "not-run";
      const row = { program: run.program, name, expect: e ? e.expect : null, reason: e ? e.reason : "", outcome };
      rows.push(row);
      if (!e) unlisted.push(row);
      else if (e.expect === "pass" && outcome !== "not-run" && !PASSED.has(outcome)) unexpectedFailures.push(row);
      else if (e.expect === "expected-fail" && PASSED.has(outcome)) unexpectedPasses.push(row);
    }
  }
  const programs = new Set(runs.map((r) => r.program));
  const stale = expected.filter((e) => programs.has(e.program) && !known.has(e.name));
  return { rows, unexpectedFailures, unexpectedPasses, unlisted, stale, ok: unexpectedFailures.length === 0 && unlisted.length === 0 };
}

// ------------------------------------------------------------------------------------ progress

/** "[#####.....]" of width w for done/total. */
export function bar(done, total, w = 30) {
  const n = total > 0 ? Math.min(w, Math.round((done / total) * w)) : 0;
  return `[${"#".repeat(n)}${".".repeat(w - n)}]`;
}

// ------------------------------------------------------------------------------------ fetch, unpack, build

/** Where unpacked sources and built programs live: outside the repo, reused between runs. */
export function cacheDir(env = process.env) {
  if (env.SOFTIOMMU_CACHE_DIR) return env.SOFTIOMMU_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "softiommu");
  const home = env.HOME || homedir();
  if (home) return join(home, ".cache", "softiommu");
  return join(ROOT, "node_modules", ".cache", "softiommu");
}

export function isRoot() {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/** The linux-source-6.12 tarball to use (SOFTIOMMU_LINUX_TARBALL overrides), or null. */
export function findTarball(env = process.env) {
  const t = env.SOFTIOMMU_LINUX_TARBALL || TARBALL;
  return existsSync(t) ? t : null;
}

/** The installed package's version (dpkg), or null. */
export function packageVersion() {
  const r = spawnSync("dpkg-query", ["-W", "-f=${Version}", DEB_PACKAGE], { encoding: "utf8" });
  return r.status === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

/**
 * Makes sure the tarball is there: installs linux-source-6.12 with apt-get when it is missing and
 * we run as root (allowed by `install`). Returns { tarball } or { error } with a message saying
 * what to do.
 */
export function ensureTarball({ install = true, log = () => {} } = {}) {
  let t = findTarball();
  if (t) return { tarball: t };
  if (process.env.SOFTIOMMU_LINUX_TARBALL) return { error: `SOFTIOMMU_LINUX_TARBALL=${process.env.SOFTIOMMU_LINUX_TARBALL} does not exist` };
  const how = `install Debian's ${DEB_PACKAGE} package (\`sudo apt-get install ${DEB_PACKAGE}\`, it puts ${TARBALL} in place) or point SOFTIOMMU_LINUX_TARBALL at a copy of that tarball`;
  if (!isRoot()) return { error: `${TARBALL} is missing and this is not root, so it cannot be installed here: ${how}` };
  if (!install) return { error: `${TARBALL} is missing (--no-install): ${how}` };
  log(`${TARBALL} is missing: apt-get install ${DEB_PACKAGE}`);
  const apt = (args) => spawnSync("apt-get", args, { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  let r = apt(["install", "-y", "--no-install-recommends", DEB_PACKAGE]);
  if (r.status !== 0) {
    log("apt-get install failed; apt-get update and retry");
    apt(["update"]);
    r = apt(["install", "-y", "--no-install-recommends", DEB_PACKAGE]);
  }
  t = findTarball();
  if (!t) return { error: `apt-get install ${DEB_PACKAGE} did not provide ${TARBALL} (exit ${r.status ?? r.signal}): ${how}` };
  return { tarball: t };
}

/**
 * Unpacks only the selftest parts of the tarball into cache/src (reused while the tarball is the
 * same file: its path, size and mtime are kept in a stamp). Returns the tree's top directory.
 */
export function extractSelftest(tarball, cache, { log = () => {} } = {}) {
  const dest = join(cache, "src");
  const tree = join(dest, TREE_TOP);
  const st = statSync(tarball);
  const stamp = JSON.stringify({ tarball, size: st.size, mtime: st.mtimeMs, patterns: EXTRACT_PATTERNS });
  const stampFile = join(dest, "stamp.json");
  if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp && existsSync(join(tree, SELFTEST_DIR, "iommufd.c"))) return tree;
  log(`unpacking the selftest from ${tarball} into ${dest}`);
  const tmp = `${dest}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const r = spawnSync("tar", ["-xJf", tarball, "-C", tmp, "--wildcards", ...EXTRACT_PATTERNS], { encoding: "utf8" });
  if (r.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`tar -xJf ${tarball} failed (exit ${r.status ?? r.signal}):\n${r.stderr}`);
  }
  for (const need of [join(SELFTEST_DIR, "iommufd.c"), join(SELFTEST_DIR, "iommufd_fail_nth.c"), "tools/testing/selftests/kselftest_harness.h", "drivers/iommu/iommufd/iommufd_test.h"])
    if (!existsSync(join(tmp, TREE_TOP, need))) {
      rmSync(tmp, { recursive: true, force: true });
      throw new Error(`${tarball} has no ${TREE_TOP}/${need}`);
    }
  rmSync(dest, { recursive: true, force: true });
  renameSync(tmp, dest);
  writeFileSync(stampFile, stamp);
  return tree;
}

/** mtime of a file, 0 if absent. */
function mtime(p) {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Builds PROGRAM from the unpacked tree against the project's header, into outDir, unless the
 * binary is newer than its inputs. `extra` adds compiler flags (e.g. -static for the oracle).
 * Returns { path, rebuilt } or throws with the compiler's output.
 */
export function buildProgram(tree, program, outDir, { includeDir = join(ROOT, "include"), extra = [], cc = process.env.CC || "cc", source = `${program}.c` } = {}) {
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, program);
  const srcDir = join(tree, SELFTEST_DIR);
  const inputs = [
    join(srcDir, source),
    join(srcDir, "iommufd_utils.h"),
    join(tree, "tools/testing/selftests/kselftest_harness.h"),
    join(tree, "tools/testing/selftests/kselftest.h"),
    join(tree, "drivers/iommu/iommufd/iommufd_test.h"),
    join(includeDir, "softiommu/iommufd.h"),
    join(includeDir, "linux/iommufd.h"),
  ];
  const flagsFile = `${out}.flags`;
  const args = compileArgs(source.replace(/\.c$/, ""), includeDir, out, extra);
  const flags = JSON.stringify([cc, ...args]);
  const newest = Math.max(...inputs.map(mtime));
  if (mtime(out) > newest && existsSync(flagsFile) && readFileSync(flagsFile, "utf8") === flags) return { path: out, rebuilt: false };
  const r = spawnSync(cc, args, { cwd: srcDir, encoding: "utf8" });
  if (r.error) throw new Error(`cannot run the C compiler ${cc}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cc} ${args.join(" ")} (in ${srcDir}) failed:\n${r.stderr}`);
  writeFileSync(flagsFile, flags);
  return { path: out, rebuilt: true, warnings: r.stderr };
}

/**
 * The selftest adapted to Linux 6.12, as the oracle's notes describe it: the two places where the
 * 6.12.117 selftest uses uAPI newer than its kernel are taken out — the iommufd_ioas variant that
 * makes a MOCK_FLAGS_DEVICE_PASID mock device (pasid_capable), and GET_HW_INFO requests for a given
 * data type (IOMMU_HW_INFO_FLAG_INPUT_TYPE). Written next to the cached original (never into the
 * repository) as iommufd_adapted_612.c; every edit must apply exactly once, so a different source
 * fails loudly instead of being half adapted. Returns the source file name.
 */
export function adaptSelftestTo612(tree) {
  const dir = join(tree, SELFTEST_DIR);
  let src = readFileSync(join(dir, "iommufd.c"), "utf8");
  const edits = [
    [/\.pasid_capable = true,/g, ".pasid_capable = false, /* adapted: no PASID mock device before 6.13 */"],
    [/test_err_get_hw_info\(EOPNOTSUPP,[^;]*IOMMU_HW_INFO_TYPE_SELFTEST \+ 1[^;]*;/g, "/* adapted: no IOMMU_HW_INFO_FLAG_INPUT_TYPE in 6.12 */"],
    [/test_cmd_get_hw_info\(self->device_id,\s*IOMMU_HW_INFO_TYPE_SELFTEST,[^;]*;/g, "/* adapted: no IOMMU_HW_INFO_FLAG_INPUT_TYPE in 6.12 */"],
  ];
  for (const [re, by] of edits) {
    const n = (src.match(re) ?? []).length;
    if (n !== 1) throw new Error(`adapting iommufd.c to 6.12: ${re} matched ${n} times, expected once`);
    src = src.replace(re, by);
  }
  const name = "iommufd_adapted_612.c";
  const file = join(dir, name);
  if (!existsSync(file) || readFileSync(file, "utf8") !== src) writeFileSync(file, src);
  return name;
}

/** The runs a built program enumerates (`PROGRAM -l`, which lists on stderr and exits 4). */
export function listRuns(binary) {
  const r = spawnSync(binary, ["-l"], { encoding: "utf8" });
  if (r.error) throw new Error(`cannot run ${binary} -l: ${r.error.message}`);
  const names = expandList(parseList(r.stderr || r.stdout));
  if (!names.length) throw new Error(`${binary} -l listed no tests:\n${r.stderr}${r.stdout}`);
  return names;
}

// ------------------------------------------------------------------------------------ hugepages

export const NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages";

/**
 * Reserves at least `want` 2 MiB hugetlb pages (some fixtures map MAP_HUGETLB memory: the _huge
 * dirty-tracking variants up to 128 MiB). Root only. Returns { before, after } or { error }.
 */
export function reserveHugepages(want) {
  try {
    const before = Number(readFileSync(NR_HUGEPAGES, "utf8").trim());
    if (before >= want) return { before, after: before };
    writeFileSync(NR_HUGEPAGES, `${want}\n`);
    const after = Number(readFileSync(NR_HUGEPAGES, "utf8").trim());
    return { before, after };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}

/** Puts nr_hugepages back (best effort). */
export function restoreHugepages(n) {
  try {
    writeFileSync(NR_HUGEPAGES, `${n}\n`);
  } catch {
    // nothing to do: reported by the caller's next run
  }
}
