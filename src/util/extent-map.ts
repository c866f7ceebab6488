/**
 * Extent maps: integer keys (page numbers, pfns, IO page indices) grouped into runs, so that a
 * range of a million pages costs one entry, not a million. The one run structure of the project:
 * page tables and page caches (mm/), pinned-pfn storage and holder counts (iopt/), mock IOPTEs.
 *
 * Every run is (start, len, base, tag). In a *linear* map the value of key k inside a run is
 * base + (k - start) * step (a page table: vpn -> pfn, a page cache: pgoff -> pfn); in a *constant* map
 * it is base for every key of the run (a count map: pfn -> pin count). `tag` is a small integer
 * kept alongside (e.g. the kind of a page-table entry). Adjacent runs whose values continue each
 * other and whose tags agree are merged, so the representation is canonical.
 *
 * Runs live in one flat number array [start, len, base, tag, start, len, ...] sorted by start:
 * lookups are binary searches, edits are splices (cheap while maps hold up to a few thousand runs,
 * which is what iommufd workloads produce).
 */
import { assert } from "../errno.js";

/** Flat list of physical runs [pfn0, n0, pfn1, n1, ...] in page order. */
export type PfnRuns = number[];

/** Append (pfn, n) to runs, merging with the last run when contiguous. */
export function pushRun(runs: PfnRuns, pfn: number, n: number): void {
  if (n <= 0) return;
  const k = runs.length;
  if (k >= 2 && runs[k - 2] + runs[k - 1] === pfn) runs[k - 1] += n;
  else runs.push(pfn, n);
}

/** Number of pages described by runs. */
export function runsPages(runs: PfnRuns): number {
  let n = 0;
  for (let i = 1; i < runs.length; i += 2) n += runs[i];
  return n;
}

const STRIDE = 4;
/** Above this many inserted numbers, avoid `splice(..., ...spread)` (argument count limits). */
const SPREAD_LIMIT = 8192;

export class ExtentMap {
  /** Flat [start, len, base, tag]* sorted by start, non-overlapping, len > 0. */
  private r: number[] = [];
  private cov = 0;

  /**
   * @param linear values advance with the key inside a run (else every key of a run has its base)
   * @param step for linear maps, how much the value advances per key (e.g. 2048 bytes per IO page)
   */
  constructor(
    readonly linear: boolean,
    readonly step = 1,
  ) {}

  /** Number of runs. */
  get runCount(): number {
    return this.r.length / STRIDE;
  }

  /** Number of keys present. */
  get covered(): number {
    return this.cov;
  }

  /** Index of the first run whose end is > key (runCount if none). */
  private upper(key: number): number {
    const r = this.r;
    let lo = 0;
    let hi = r.length / STRIDE;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const o = mid * STRIDE;
      if (r[o] + r[o + 1] <= key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index of the run holding key, or -1. */
  private find(key: number): number {
    const i = this.upper(key);
    return i < this.r.length / STRIDE && this.r[i * STRIDE] <= key ? i : -1;
  }

  has(key: number): boolean {
    return this.find(key) >= 0;
  }

  /** The value at key (base, shifted for linear maps), or undefined. */
  get(key: number): number | undefined {
    const i = this.find(key);
    if (i < 0) return undefined;
    const o = i * STRIDE;
    return this.linear ? this.r[o + 2] + (key - this.r[o]) * this.step : this.r[o + 2];
  }

  /** The tag at key, or undefined. */
  tagAt(key: number): number | undefined {
    const i = this.find(key);
    return i < 0 ? undefined : this.r[i * STRIDE + 3];
  }

  /**
   * Visit the runs overlapping [start, start+len), clipped to it, in order. The callback must not
   * modify this map (use collect() for that).
   */
  forEach(start: number, len: number, cb: (s: number, n: number, base: number, tag: number) => void): void {
    const end = start + len;
    const r = this.r;
    const lin = this.linear;
    for (let i = this.upper(start) * STRIDE; i < r.length && r[i] < end; i += STRIDE) {
      const s = Math.max(r[i], start);
      const e = Math.min(r[i] + r[i + 1], end);
      cb(s, e - s, lin ? r[i + 2] + (s - r[i]) * this.step : r[i + 2], r[i + 3]);
    }
  }

  /**
   * Visit every piece of [start, start+len) in order: present runs (clipped) and the gaps between
   * them (present = false, base = tag = 0). Must not modify this map.
   */
  walk(
    start: number,
    len: number,
    cb: (s: number, n: number, present: boolean, base: number, tag: number) => void,
  ): void {
    const end = start + len;
    let cur = start;
    this.forEach(start, len, (s, n, base, tag) => {
      if (s > cur) cb(cur, s - cur, false, 0, 0);
      cb(s, n, true, base, tag);
      cur = s + n;
    });
    if (cur < end) cb(cur, end - cur, false, 0, 0);
  }

  /** The runs overlapping [start, start+len), clipped, as flat [s, n, base, tag]*. */
  collect(start: number, len: number): number[] {
    const out: number[] = [];
    this.forEach(start, len, (s, n, b, t) => out.push(s, n, b, t));
    return out;
  }

  /** The gaps (absent pieces) of [start, start+len) as flat [s, n]*. */
  collectGaps(start: number, len: number): number[] {
    const out: number[] = [];
    this.walk(start, len, (s, n, present) => {
      if (!present) out.push(s, n);
    });
    return out;
  }

  /** How many keys of [start, start+len) are present. */
  countIn(start: number, len: number): number {
    let c = 0;
    this.forEach(start, len, (_s, n) => (c += n));
    return c;
  }

  /** True if every key of [start, start+len) is present. */
  covers(start: number, len: number): boolean {
    return this.countIn(start, len) === len;
  }

  /** True if some key of [start, start+len) is present. */
  anyIn(start: number, len: number): boolean {
    if (len <= 0) return false;
    const i = this.upper(start);
    return i < this.r.length / STRIDE && this.r[i * STRIDE] < start + len;
  }

  /** First and last present key, or undefined when empty. */
  bounds(): [number, number] | undefined {
    const r = this.r;
    if (r.length === 0) return undefined;
    const o = r.length - STRIDE;
    return [r[0], r[o] + r[o + 1] - 1];
  }

  /** Map [start, start+len) to base (linear: base..base+len-1), replacing what was there. */
  set(start: number, len: number, base: number, tag = 0): void {
    const r = this.r;
    const n = r.length;
    // fast path: appending past the last run (maps are usually filled in ascending order)
    if (len > 0 && (n === 0 || r[n - STRIDE] + r[n - STRIDE + 1] <= start)) {
      const o = n - STRIDE;
      if (
        n > 0 &&
        r[o] + r[o + 1] === start &&
        r[o + 3] === tag &&
        (this.linear ? r[o + 2] + r[o + 1] * this.step === base : r[o + 2] === base)
      )
        r[o + 1] += len;
      else r.push(start, len, base, tag);
      this.cov += len;
      return;
    }
    this.replace(start, len, [start, len, base, tag]);
  }

  /** Remove [start, start+len). */
  delete(start: number, len: number): void {
    this.replace(start, len, []);
  }

  clear(): void {
    this.r = [];
    this.cov = 0;
  }

  /**
   * Add delta to the value of every key of [start, start+len), absent keys counting as 0 (constant
   * maps only; tags are dropped to 0). Keys reaching 0 are removed. onRise gets the pieces that went
   * from 0 to non-zero, onFall those that went to 0 (called after the map is updated). Asserts that
   * no value goes negative.
   */
  add(
    start: number,
    len: number,
    delta: number,
    onRise?: (s: number, n: number) => void,
    onFall?: (s: number, n: number) => void,
  ): void {
    assert(!this.linear, "ExtentMap.add on a linear map");
    if (len <= 0 || delta === 0) return;
    const pieces: number[] = [];
    const rise: number[] = [];
    const fall: number[] = [];
    this.walk(start, len, (s, n, present, base) => {
      const v = (present ? base : 0) + delta;
      assert(v >= 0, "ExtentMap.add: count below zero");
      if (v > 0) pieces.push(s, n, v, 0);
      if (!present && v > 0) rise.push(s, n);
      else if (present && v === 0) fall.push(s, n);
    });
    this.replace(start, len, pieces);
    if (onRise) for (let i = 0; i < rise.length; i += 2) onRise(rise[i], rise[i + 1]);
    if (onFall) for (let i = 0; i < fall.length; i += 2) onFall(fall[i], fall[i + 1]);
  }

  /** Ensure a run boundary at key; returns the index of the first run starting at or after key. */
  private splitAt(key: number): number {
    const i = this.upper(key);
    const r = this.r;
    const o = i * STRIDE;
    if (o < r.length && r[o] < key) {
      const s = r[o];
      const cut = key - s;
      const base = r[o + 2];
      r.splice(o + STRIDE, 0, key, r[o + 1] - cut, this.linear ? base + cut * this.step : base, r[o + 3]);
      r[o + 1] = cut;
      return i + 1;
    }
    return i;
  }

  private mergeable(o: number, p: number): boolean {
    const r = this.r;
    return (
      r[o] + r[o + 1] === r[p] &&
      r[o + 3] === r[p + 3] &&
      (this.linear ? r[o + 2] + r[o + 1] * this.step === r[p + 2] : r[o + 2] === r[p + 2])
    );
  }

  /** Merge run i with run i+1 when possible. */
  private tryMerge(i: number): void {
    if (i < 0) return;
    const o = i * STRIDE;
    const p = o + STRIDE;
    if (p >= this.r.length) return;
    if (this.mergeable(o, p)) {
      this.r[o + 1] += this.r[p + 1];
      this.r.splice(p, STRIDE);
    }
  }

  /**
   * Replace everything in [start, start+len) by `pieces` (flat [s, n, base, tag]*, sorted,
   * non-overlapping, inside the range, n > 0).
   */
  replace(start: number, len: number, pieces: number[]): void {
    if (len <= 0) return;
    const end = start + len;
    const i = this.splitAt(start);
    const j = this.splitAt(end);
    const r = this.r;
    for (let k = i * STRIDE; k < j * STRIDE; k += STRIDE) this.cov -= r[k + 1];
    // Normalize the new pieces (merge neighbours that continue each other).
    const ins: number[] = [];
    for (let k = 0; k < pieces.length; k += STRIDE) {
      const s = pieces[k];
      const n = pieces[k + 1];
      assert(n > 0 && s >= start && s + n <= end, "ExtentMap.replace: piece outside range");
      const q = ins.length - STRIDE;
      if (q >= 0) {
        assert(ins[q] + ins[q + 1] <= s, "ExtentMap.replace: pieces overlap or unsorted");
        if (
          ins[q] + ins[q + 1] === s &&
          ins[q + 3] === pieces[k + 3] &&
          (this.linear ? ins[q + 2] + ins[q + 1] * this.step === pieces[k + 2] : ins[q + 2] === pieces[k + 2])
        ) {
          ins[q + 1] += n;
          this.cov += n;
          continue;
        }
      }
      ins.push(s, n, pieces[k + 2], pieces[k + 3]);
      this.cov += n;
    }
    if (ins.length <= SPREAD_LIMIT) {
      r.splice(i * STRIDE, (j - i) * STRIDE, ...ins);
    } else {
      this.r = r.slice(0, i * STRIDE).concat(ins, r.slice(j * STRIDE));
    }
    const m = ins.length / STRIDE;
    this.tryMerge(i + m - 1);
    this.tryMerge(i - 1);
  }

  /** All runs as flat [start, len, base, tag]* (a copy; for tests and debugging). */
  toArray(): number[] {
    return this.r.slice();
  }

  /** Check the structural invariants (for tests). */
  check(): void {
    const r = this.r;
    let c = 0;
    for (let o = 0; o < r.length; o += STRIDE) {
      assert(Number.isInteger(r[o]) && r[o + 1] > 0, "ExtentMap: bad run");
      if (o > 0) {
        assert(r[o - STRIDE] + r[o - STRIDE + 1] <= r[o], "ExtentMap: overlap");
        assert(!this.mergeable(o - STRIDE, o), "ExtentMap: unmerged neighbours");
      }
      c += r[o + 1];
    }
    assert(c === this.cov, "ExtentMap: covered count out of sync");
  }
}
