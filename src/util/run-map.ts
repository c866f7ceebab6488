/**
 * A map from integer indices to values that advance linearly within a run:
 * index i in a run (start, n, base) maps to base + (i - start). Used for page index -> pfn and
 * IO page index -> physical address. Adjacent runs that continue each other are merged,
 * so physically contiguous memory costs one entry whatever its size.
 */
export class RunMap {
  private starts: number[] = [];
  private lens: number[] = [];
  private bases: number[] = [];
  /** Extra per-run tag (e.g. protection bits); runs only merge when tags agree. */
  private tags: number[] = [];
  /** Multiplier between index units and value units (e.g. 2048 bytes per IO page). */
  constructor(readonly step: number = 1) {}

  /** Index of the last run with start <= x, or -1. */
  private find(x: number): number {
    const s = this.starts;
    let lo = 0;
    let hi = s.length - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid] <= x) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans;
  }

  get runs(): number {
    return this.starts.length;
  }

  /** Value at index x, or -1 when unmapped. */
  get(x: number): number {
    const i = this.find(x);
    if (i < 0 || x >= this.starts[i] + this.lens[i]) return -1;
    return this.bases[i] + (x - this.starts[i]) * this.step;
  }

  /** Tag of the run holding x, or -1. */
  tagAt(x: number): number {
    const i = this.find(x);
    if (i < 0 || x >= this.starts[i] + this.lens[i]) return -1;
    return this.tags[i];
  }

  /** Remove [start, start+n). Whole runs inside the range are spliced out in one step. */
  remove(start: number, n: number): void {
    if (n <= 0) return;
    const end = start + n;
    const s = this.starts;
    const l = this.lens;
    const b = this.bases;
    const t = this.tags;
    let i = this.find(start);
    if (i < 0) i = 0;
    if (i < s.length && s[i] + l[i] <= start) i++;
    if (i >= s.length || s[i] >= end) return;
    // first run may start before `start`
    if (s[i] < start) {
      const rs = s[i];
      const re = rs + l[i];
      if (re > end) {
        // the range is strictly inside one run: split it
        s.splice(i + 1, 0, end);
        l.splice(i + 1, 0, re - end);
        b.splice(i + 1, 0, b[i] + (end - rs) * this.step);
        t.splice(i + 1, 0, t[i]);
        l[i] = start - rs;
        return;
      }
      l[i] = start - rs;
      i++;
    }
    // runs fully inside [start, end)
    let j = i;
    while (j < s.length && s[j] + l[j] <= end) j++;
    if (j > i) {
      s.splice(i, j - i);
      l.splice(i, j - i);
      b.splice(i, j - i);
      t.splice(i, j - i);
    }
    // last run may extend past `end`
    if (i < s.length && s[i] < end) {
      const rs = s[i];
      b[i] += (end - rs) * this.step;
      l[i] -= end - rs;
      s[i] = end;
    }
  }

  /** Map [start, start+n) to base, base+step, ... (replacing anything there). */
  set(start: number, n: number, base: number, tag = 0): void {
    if (n <= 0) return;
    this.remove(start, n);
    let i = this.find(start) + 1;
    const s = this.starts;
    const l = this.lens;
    const b = this.bases;
    const t = this.tags;
    // merge with the previous run when it continues exactly
    if (i > 0 && s[i - 1] + l[i - 1] === start && t[i - 1] === tag && b[i - 1] + l[i - 1] * this.step === base) {
      l[i - 1] += n;
      i--;
    } else {
      s.splice(i, 0, start);
      l.splice(i, 0, n);
      b.splice(i, 0, base);
      t.splice(i, 0, tag);
    }
    // merge with the next run
    if (i + 1 < s.length && s[i] + l[i] === s[i + 1] && t[i + 1] === tag && b[i] + l[i] * this.step === b[i + 1]) {
      l[i] += l[i + 1];
      s.splice(i + 1, 1);
      l.splice(i + 1, 1);
      b.splice(i + 1, 1);
      t.splice(i + 1, 1);
    }
  }

  /** Calls fn(first, n, base, tag) for each mapped piece intersecting [start, start+n), in order. */
  forEach(start: number, n: number, fn: (first: number, count: number, base: number, tag: number) => void): void {
    const end = start + n;
    let i = this.find(start);
    if (i < 0) i = 0;
    const s = this.starts;
    while (i < s.length && s[i] < end) {
      const rs = s[i];
      const re = rs + this.lens[i];
      const a = Math.max(rs, start);
      const z = Math.min(re, end);
      if (z > a) fn(a, z - a, this.bases[i] + (a - rs) * this.step, this.tags[i]);
      i++;
    }
  }

  /** Number of indices mapped within [start, start+n). */
  countMapped(start: number, n: number): number {
    let c = 0;
    this.forEach(start, n, (_a, k) => {
      c += k;
    });
    return c;
  }

  clear(): void {
    this.starts = [];
    this.lens = [];
    this.bases = [];
    this.tags = [];
  }
}
