// Types of conformance-lib.mjs (for test/conformance/harness.test.ts).

export const ROOT: string;
export const PROGRAMS: readonly string[];
export const DEB_PACKAGE: string;
export const TARBALL: string;
export const TREE_TOP: string;
export const EXTRACT_PATTERNS: readonly string[];
export const SELFTEST_DIR: string;
export function compileArgs(program: string, includeDir: string, out: string, extra?: string[]): string[];

export interface ListedFixture {
  fixture: string;
  variants: string[];
  tests: string[];
}
export function parseList(text: string): ListedFixture[];
export function expandList(fixtures: ListedFixture[]): string[];
export function fixtureOf(name: string): string;

export type Outcome = "pass" | "fail" | "skip" | "xfail" | "xpass";
export interface TapResult {
  num: number;
  name: string;
  outcome: Outcome;
  reason: string;
}
export interface TapTotals {
  pass: number;
  fail: number;
  xfail: number;
  xpass: number;
  skip: number;
  error: number;
}
export function parseTapLine(line: string): TapResult | null;
export function parseRunLine(line: string): string | null;
export function parseTap(text: string): { plan: number | null; results: TapResult[]; totals: TapTotals | null };
export class LineSplitter {
  constructor(onLine: (line: string) => void);
  push(chunk: string): void;
  end(): void;
}
export interface FixtureCount {
  pass: number;
  fail: number;
  skip: number;
  xfail: number;
  xpass: number;
  total: number;
}
export function fixtureTotals(results: TapResult[]): Map<string, FixtureCount>;
export function formatTotals(program: string, totals: Map<string, FixtureCount>): string;

export interface Expectation {
  program: string;
  name: string;
  expect: "pass" | "expected-fail";
  reason: string;
  line: number;
}
export function parseExpected(text: string): Expectation[];
export function formatExpected(
  header: string[],
  programs: { program: string; names: string[] }[],
  previous: Expectation[],
  reasonFor: (program: string, name: string) => string | null,
): string;
export const PASSED: ReadonlySet<string>;
export interface ProgramRun {
  program: string;
  complete: boolean;
  results: TapResult[];
  listed: string[];
}
export interface CompareRow {
  program: string;
  name: string;
  expect: "pass" | "expected-fail" | null;
  reason: string;
  outcome: Outcome | "missing" | "not-run";
}
export function compare(
  expected: Expectation[],
  runs: ProgramRun[],
): { rows: CompareRow[]; unexpectedFailures: CompareRow[]; unexpectedPasses: CompareRow[]; unlisted: CompareRow[]; stale: Expectation[]; ok: boolean };
export function bar(done: number, total: number, w?: number): string;

export function cacheDir(env?: Record<string, string | undefined>): string;
export function isRoot(): boolean;
export function findTarball(env?: Record<string, string | undefined>): string | null;
export function packageVersion(): string | null;
export function ensureTarball(opts?: { install?: boolean; log?: (msg: string) => void }): { tarball: string; error?: undefined } | { error: string; tarball?: undefined };
export function extractSelftest(tarball: string, cache: string, opts?: { log?: (msg: string) => void }): string;
export function buildProgram(
  tree: string,
  program: string,
  outDir: string,
  opts?: { includeDir?: string; extra?: string[]; cc?: string; source?: string },
): { path: string; rebuilt: boolean; warnings?: string };
/** Writes iommufd_adapted_612.c (the selftest with its newer-than-6.12 uses taken out) next to iommufd.c; returns its name. */
export function adaptSelftestTo612(tree: string): string;
export function listRuns(binary: string): string[];
export const NR_HUGEPAGES: string;
export function reserveHugepages(want: number): { before: number; after: number; error?: undefined } | { error: string; before?: undefined; after?: undefined };
export function restoreHugepages(n: number): void;
