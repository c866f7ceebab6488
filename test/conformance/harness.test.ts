/**
 * The conformance harness (scripts/conformance.mjs, building blocks in scripts/conformance-lib.mjs):
 * the kselftest test-list and TAP parsers, the expectation file and the comparison, on fixtures
 * (test/conformance/fixtures: the 6.12.117 selftest's real `-l` output and a synthetic TAP run) and
 * on the real 6.12 kernel's transcripts (conformance/oracle); the committed expectation files; and
 * that the 6.12.117 selftest builds against the project's header on this machine.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type * as Lib from "../../scripts/conformance-lib.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const lib = (await import(pathToFileURL(join(ROOT, "scripts", "conformance-lib.mjs")).href)) as typeof Lib;
const fixture = (name: string) => readFileSync(join(ROOT, "test", "conformance", "fixtures", name), "utf8");
const repoFile = (...p: string[]) => readFileSync(join(ROOT, ...p), "utf8");

const LIST_IOMMUFD = fixture("list-iommufd.txt");
const LIST_FAIL_NTH = fixture("list-iommufd_fail_nth.txt");
const ORACLE_IOMMUFD = repoFile("conformance", "oracle", "iommufd.tap");
const ORACLE_FAIL_NTH = repoFile("conformance", "oracle", "iommufd_fail_nth.tap");

// ------------------------------------------------------------------------------ test list

test("test list: `iommufd -l` of 6.12.117 has 5 fixtures (global dropped), long names overflow their columns, 190 runs", () => {
  const fx = lib.parseList(LIST_IOMMUFD);
  assert.deepEqual(
    fx.map((f) => [f.fixture, f.variants.length, f.tests.length]),
    [
      ["iommufd", 0, 11],
      ["iommufd_ioas", 4, 24],
      ["iommufd_mock_domain", 4, 7],
      ["iommufd_dirty_tracking", 9, 5],
      ["vfio_compat_mock_domain", 2, 5],
    ],
  );
  assert.deepEqual(fx[3].variants.slice(0, 2), ["domain_dirty8k", "domain_dirty16k"], "a fixture name longer than its 20-column field");
  assert.deepEqual(fx[4].variants, ["Ver1v2", "Ver1v0"]);
  assert.equal(fx[3].tests[4], "get_dirty_bitmap_no_clear");
  const names = lib.expandList(fx);
  assert.equal(names.length, 190);
  assert.equal(new Set(names).size, 190);
  assert.equal(names[0], "iommufd.simple_close", "no variant: fixture.test");
  assert.equal(names[11], "iommufd_ioas.no_domain.ioas_auto_destroy");
  assert.equal(names[189], "vfio_compat_mock_domain.Ver1v0.huge_map");
});

test("test list: iommufd_fail_nth has 7 runs of basic_fail_nth; trailing blanks may be stripped", () => {
  const names = lib.expandList(lib.parseList(LIST_FAIL_NTH));
  assert.deepEqual(names, ["basic", "map_domain", "map_two_domains", "access_rw", "access_pin", "access_pin_domain", "device"].map((t) => `basic_fail_nth.${t}`));
  const stripped = LIST_IOMMUFD.split("\n").map((l) => l.trimEnd()).join("\n");
  assert.deepEqual(lib.expandList(lib.parseList(stripped)), lib.expandList(lib.parseList(LIST_IOMMUFD)));
});

test("test list: the expansion order is the order the harness runs them (the oracle's TAP)", () => {
  assert.deepEqual(
    lib.parseTap(ORACLE_IOMMUFD).results.map((r) => r.name),
    lib.expandList(lib.parseList(LIST_IOMMUFD)),
  );
  assert.deepEqual(
    lib.parseTap(ORACLE_FAIL_NTH).results.map((r) => r.name),
    lib.expandList(lib.parseList(LIST_FAIL_NTH)),
  );
});

// ------------------------------------------------------------------------------ TAP

test("TAP: result lines with SKIP / XFAIL / XPASS directives, '#  reason' on failures, CRLF; other lines are not results", () => {
  assert.deepEqual(lib.parseTapLine("ok 1 fix.a"), { num: 1, name: "fix.a", outcome: "pass", reason: "" });
  assert.deepEqual(lib.parseTapLine("not ok 12 fix.v.b"), { num: 12, name: "fix.v.b", outcome: "fail", reason: "" });
  assert.deepEqual(lib.parseTapLine("ok 3 f.t # SKIP fault injection is not enabled in the kernel"), {
    num: 3,
    name: "f.t",
    outcome: "skip",
    reason: "fault injection is not enabled in the kernel",
  });
  assert.equal(lib.parseTapLine("ok 4 f.t # XFAIL known")?.outcome, "xfail");
  assert.equal(lib.parseTapLine("ok 5 f.t # XPASS unknown")?.outcome, "xpass");
  assert.deepEqual(lib.parseTapLine("not ok 6 f.t #  timeout\r"), { num: 6, name: "f.t", outcome: "fail", reason: "timeout" });
  for (const l of ["1..190", "# Totals: pass:1 fail:0", "#  RUN           f.t ...", "#            OK  f.t", "okay 1 x", "ok 60 not a result: # nonsense", ""])
    assert.equal(lib.parseTapLine(l), null, JSON.stringify(l));
  assert.equal(lib.parseRunLine("#  RUN           iommufd_ioas.no_domain.area ..."), "iommufd_ioas.no_domain.area");
  assert.equal(lib.parseRunLine("ok 1 x"), null);
});

test("TAP: a whole transcript gives the plan, the results in order and the harness's totals", () => {
  const t = lib.parseTap(fixture("tap-mixed.txt"));
  assert.equal(t.plan, 7);
  assert.deepEqual(
    t.results.map((r) => [r.num, r.name, r.outcome]),
    [
      [1, "fix_a.one", "pass"],
      [2, "fix_a.two", "fail"],
      [3, "fix_b.var1.three", "skip"],
      [4, "fix_b.var1.four", "xfail"],
      [5, "fix_b.var2.three", "xpass"],
      [6, "fix_c.five", "fail"],
    ],
  );
  assert.deepEqual(t.totals, { pass: 2, fail: 2, xfail: 1, xpass: 1, skip: 1, error: 0 });
});

test("TAP: the real 6.12 kernel passes 164 of 190 as shipped and fail_nth 7 of 7; the parse agrees with the harness's own totals", () => {
  const a = lib.parseTap(ORACLE_IOMMUFD);
  assert.equal(a.plan, 190);
  const n = (o: string) => a.results.filter((r) => r.outcome === o).length;
  assert.deepEqual([n("pass"), n("fail")], [164, 26]);
  assert.deepEqual(a.totals, { pass: 164, fail: 26, xfail: 0, xpass: 0, skip: 0, error: 0 });
  // the 26 are the whole mock_domain variant of iommufd_ioas (its setup makes a PASID device) and get_hw_info
  const failed = a.results.filter((r) => r.outcome === "fail").map((r) => r.name);
  assert.equal(failed.filter((x) => x.startsWith("iommufd_ioas.mock_domain.")).length, 24);
  assert.deepEqual(failed.filter((x) => !x.startsWith("iommufd_ioas.mock_domain.")), ["iommufd_ioas.two_mock_domain.get_hw_info", "iommufd_ioas.mock_domain_limit.get_hw_info"]);
  const b = lib.parseTap(ORACLE_FAIL_NTH);
  assert.deepEqual(b.totals, { pass: 7, fail: 0, xfail: 0, xpass: 0, skip: 0, error: 0 });
});

test("TAP: the line splitter reassembles lines across chunks and flushes the last partial line", () => {
  const lines: string[] = [];
  const s = new lib.LineSplitter((l) => lines.push(l));
  for (const c of ["ok 1 a\nno", "t ok 2 b\n", "", "ok 3 c\nok 4", " d"]) s.push(c);
  assert.deepEqual(lines, ["ok 1 a", "not ok 2 b", "ok 3 c"]);
  s.end();
  assert.deepEqual(lines.slice(3), ["ok 4 d"]);
});

test("totals per fixture, in first-seen order, with a total line", () => {
  const t = lib.fixtureTotals(lib.parseTap(fixture("tap-mixed.txt")).results);
  assert.deepEqual([...t.keys()], ["fix_a", "fix_b", "fix_c"]);
  assert.deepEqual(t.get("fix_b"), { pass: 0, fail: 0, skip: 1, xfail: 1, xpass: 1, total: 3 });
  const text = lib.formatTotals("prog", t);
  assert.match(text, /^prog:\n/);
  assert.match(text, /fix_a\s+1 pass\s+1 fail\s+0 skip\s+\(2\)/);
  assert.match(text, /total\s+1 pass\s+2 fail\s+1 skip 1 xfail 1 xpass\s+\(6\)$/);
  assert.equal(lib.bar(1, 4, 8), "[##......]");
  assert.equal(lib.bar(9, 4, 4), "[####]");
});

// ------------------------------------------------------------------------------ expectations

const EXP = `# a comment
[prog_a]
fix_a.one   pass
fix_a.two   expected-fail: the shim and server are not built yet

[prog_b]
fix_b.var1.three expected-fail:   fault injection: not emulated  
`;

test("expectation file: sections name the program; 'pass' or 'expected-fail: reason'; comments and blank lines ignored", () => {
  assert.deepEqual(lib.parseExpected(EXP), [
    { program: "prog_a", name: "fix_a.one", expect: "pass", reason: "", line: 3 },
    { program: "prog_a", name: "fix_a.two", expect: "expected-fail", reason: "the shim and server are not built yet", line: 4 },
    { program: "prog_b", name: "fix_b.var1.three", expect: "expected-fail", reason: "fault injection: not emulated", line: 7 },
  ]);
});

test("expectation file: a malformed line, a missing reason, a duplicate or a run before any section is an error with its line", () => {
  assert.throws(() => lib.parseExpected("[p]\nx.y maybe\n"), /line 2/);
  assert.throws(() => lib.parseExpected("[p]\nx.y expected-fail:\n"), /line 2/);
  assert.throws(() => lib.parseExpected("[p]\nx.y pass\n[q]\nx.y pass\n"), /line 4: x\.y is listed twice/);
  assert.throws(() => lib.parseExpected("x.y pass\n"), /before any \[PROGRAM\] section/);
});

test("expectation file: regenerating keeps every existing mark, gives new runs the default, drops gone ones, and round-trips", () => {
  const prev = lib.parseExpected(EXP);
  const text = lib.formatExpected(["header"], [{ program: "prog_a", names: ["fix_a.one", "fix_a.two", "fix_a.new"] }, { program: "prog_b", names: ["fix_b.var1.three"] }], prev, (_p, n) =>
    n === "fix_a.new" ? "new reason" : null,
  );
  assert.match(text, /^# header\n\n\[prog_a\]\n/);
  const back = lib.parseExpected(text);
  assert.deepEqual(
    back.map((e) => [e.program, e.name, e.expect, e.reason]),
    [
      ["prog_a", "fix_a.one", "pass", ""],
      ["prog_a", "fix_a.two", "expected-fail", "the shim and server are not built yet"],
      ["prog_a", "fix_a.new", "expected-fail", "new reason"],
      ["prog_b", "fix_b.var1.three", "expected-fail", "fault injection: not emulated"],
    ],
  );
  assert.equal(lib.formatExpected([], [{ program: "p", names: ["a.b"] }], [], () => null), "\n[p]\na.b  pass\n");
});

// ------------------------------------------------------------------------------ comparison

const r = (name: string, outcome: Lib.Outcome): Lib.TapResult => ({ num: 0, name, outcome, reason: "" });

test("compare: a test expected to pass that fails, skips or has no result is an unexpected failure; expected-fail never fails the run", () => {
  const exp = lib.parseExpected("[p]\na.1 pass\na.2 pass\na.3 pass\na.4 pass\na.5 expected-fail: x\na.6 expected-fail: y\n");
  const v = lib.compare(exp, [{ program: "p", complete: true, listed: ["a.1", "a.2", "a.3", "a.4", "a.5", "a.6"], results: [r("a.1", "pass"), r("a.2", "fail"), r("a.3", "skip"), r("a.5", "fail"), r("a.6", "xfail")] }]);
  assert.deepEqual(v.unexpectedFailures.map((x) => [x.name, x.outcome]), [["a.2", "fail"], ["a.3", "skip"], ["a.4", "missing"]]);
  assert.equal(v.ok, false);
  assert.deepEqual(v.unexpectedPasses, []);
  assert.deepEqual(v.rows.map((x) => x.outcome), ["pass", "fail", "skip", "missing", "fail", "xfail"]);
});

test("compare: a filtered (incomplete) run does not count the tests it did not run; XPASS counts as passing", () => {
  const exp = lib.parseExpected("[p]\na.1 pass\na.2 pass\n");
  const v = lib.compare(exp, [{ program: "p", complete: false, listed: ["a.1", "a.2"], results: [r("a.1", "xpass")] }]);
  assert.equal(v.ok, true);
  assert.deepEqual(v.rows.map((x) => x.outcome), ["xpass", "not-run"]);
});

test("compare: a test marked expected-fail that passes is reported (to update the file) but is not a failure", () => {
  const exp = lib.parseExpected("[p]\na.1 expected-fail: the shim and server are not built yet\n");
  const v = lib.compare(exp, [{ program: "p", complete: true, listed: ["a.1"], results: [r("a.1", "pass")] }]);
  assert.equal(v.ok, true);
  assert.deepEqual(v.unexpectedPasses.map((x) => [x.name, x.reason]), [["a.1", "the shim and server are not built yet"]]);
});

test("compare: a test the binary has but the file does not list fails the run; file entries the binary lacks are stale", () => {
  const exp = lib.parseExpected("[p]\na.1 expected-fail: x\na.gone pass\n[q]\nb.1 pass\n");
  const v = lib.compare(exp, [{ program: "p", complete: true, listed: ["a.1", "a.new"], results: [r("a.1", "fail"), r("a.new", "pass"), r("a.extra", "pass")] }]);
  assert.deepEqual(v.unlisted.map((x) => x.name), ["a.new", "a.extra"]);
  assert.equal(v.ok, false);
  assert.deepEqual(v.stale.map((e) => e.name), ["a.gone"], "only programs that ran are checked for stale entries");
});

// ------------------------------------------------------------------------------ the committed expectation files

test("conformance/expected.txt lists every run: the 190 iommufd runs and the 7 fail_nth tests, in the harness's order, each with a reason when expected to fail", () => {
  const exp = lib.parseExpected(repoFile("conformance", "expected.txt"));
  assert.deepEqual(
    exp.filter((e) => e.program === "iommufd").map((e) => e.name),
    lib.expandList(lib.parseList(LIST_IOMMUFD)),
  );
  assert.deepEqual(
    exp.filter((e) => e.program === "iommufd_fail_nth").map((e) => e.name),
    lib.expandList(lib.parseList(LIST_FAIL_NTH)),
  );
  assert.equal(exp.length, 197);
  for (const e of exp) if (e.expect === "expected-fail") assert.ok(e.reason.length > 10, `${e.name} needs a reason`);
  assert.ok(!exp.some((e) => /newer than 6\.12/.test(e.reason)), "the newest profile implements the newer uAPI: no run may fail for using it");
});

test("conformance/expected-6.12.txt: the same runs; exactly the 26 the real 6.12 kernel fails are expected to fail for using newer uAPI", () => {
  const exp = lib.parseExpected(repoFile("conformance", "expected-6.12.txt"));
  const all = lib.parseExpected(repoFile("conformance", "expected.txt"));
  assert.deepEqual(exp.map((e) => e.name), all.map((e) => e.name));
  const oracleFailed = lib.parseTap(ORACLE_IOMMUFD).results.filter((x) => x.outcome !== "pass").map((x) => x.name);
  const newer = exp.filter((e) => /newer than 6\.12/.test(e.reason)).map((e) => e.name);
  assert.deepEqual(newer, oracleFailed);
  for (const e of exp) if (e.expect === "expected-fail") assert.ok(e.reason.length > 10, `${e.name} needs a reason`);
});

// ------------------------------------------------------------------------------ building on this machine

const HAS_CC = spawnSync(process.env.CC || "cc", ["--version"]).status === 0;

/** The ELF file has a PT_INTERP program header: dynamically linked. */
function dynamicallyLinked(path: string): boolean {
  const b = readFileSync(path);
  if (b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false;
  const phoff = Number(b.readBigUInt64LE(0x20));
  const phentsize = b.readUInt16LE(0x36);
  const phnum = b.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) if (b.readUInt32LE(phoff + i * phentsize) === 3) return true;
  return false;
}

test("the 6.12.117 selftest (iommufd, iommufd_fail_nth) builds dynamically linked against include/ with the Makefile's flags, sources untouched, and lists 190 + 7 runs", { skip: !HAS_CC && "no C compiler (cc)" }, (t) => {
  const tarball = lib.findTarball();
  if (!tarball) {
    t.skip(`${lib.TARBALL} is absent (apt-get install ${lib.DEB_PACKAGE}, or set SOFTIOMMU_LINUX_TARBALL)`);
    return;
  }
  const tree = lib.extractSelftest(tarball, lib.cacheDir());
  const src = join(tree, lib.SELFTEST_DIR);
  const before = readFileSync(join(src, "iommufd.c"));
  const out = mkdtempSync(join(tmpdir(), "softiommu-selftest-"));
  try {
    for (const [program, list] of [
      ["iommufd", LIST_IOMMUFD],
      ["iommufd_fail_nth", LIST_FAIL_NTH],
    ] as const) {
      const b = lib.buildProgram(tree, program, out);
      assert.ok(b.rebuilt && existsSync(b.path), program);
      assert.ok(dynamicallyLinked(b.path), `${program} is dynamically linked`);
      assert.deepEqual(lib.listRuns(b.path), lib.expandList(lib.parseList(list)), `${program} -l`);
      assert.equal(lib.buildProgram(tree, program, out).rebuilt, false, "an up-to-date build is reused");
    }
    assert.deepEqual(readFileSync(join(src, "iommufd.c")), before, "the selftest source is not edited");
    assert.deepEqual(lib.compileArgs("iommufd", "/inc", "/o/iommufd"), ["-Wall", "-O2", "-Wno-unused-function", "-D_GNU_SOURCE", "-I", "/inc", "-o", "/o/iommufd", "iommufd.c"]);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("the selftest adapted to 6.12 takes out exactly the PASID mock device and the data-type GET_HW_INFO requests, builds, and still lists 190 runs", { skip: !HAS_CC && "no C compiler (cc)" }, (t) => {
  const tarball = lib.findTarball();
  if (!tarball) {
    t.skip(`${lib.TARBALL} is absent`);
    return;
  }
  const tree = lib.extractSelftest(tarball, lib.cacheDir());
  const src = join(tree, lib.SELFTEST_DIR);
  const before = readFileSync(join(src, "iommufd.c"), "utf8");
  const name = lib.adaptSelftestTo612(tree);
  const adapted = readFileSync(join(src, name), "utf8");
  assert.equal(readFileSync(join(src, "iommufd.c"), "utf8"), before, "the original is not edited");
  assert.ok(!adapted.includes(".pasid_capable = true"));
  assert.ok(!/IOMMU_HW_INFO_TYPE_SELFTEST(\s*\+\s*1)?,\s*&buffer_exact/.test(adapted), "no data-type GET_HW_INFO requests left");
  assert.equal(adapted.split("/* adapted:").length - 1, 3, "three edits");
  const out = mkdtempSync(join(tmpdir(), "softiommu-adapted-"));
  try {
    const b = lib.buildProgram(tree, "iommufd", out, { source: name });
    assert.deepEqual(lib.listRuns(b.path), lib.expandList(lib.parseList(LIST_IOMMUFD)));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("the harness only unpacks the selftest parts of the tree", () => {
  assert.deepEqual(lib.EXTRACT_PATTERNS, [
    "linux-source-6.12/tools/testing/selftests/kselftest*",
    "linux-source-6.12/tools/testing/selftests/iommu",
    "linux-source-6.12/drivers/iommu/iommufd/iommufd_test.h",
  ]);
  assert.equal(lib.cacheDir({ SOFTIOMMU_CACHE_DIR: "/x" }), "/x");
  assert.equal(lib.cacheDir({ XDG_CACHE_HOME: "/c" }), "/c/softiommu");
  assert.equal(lib.cacheDir({ HOME: "/h" }), "/h/.cache/softiommu");
});
