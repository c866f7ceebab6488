/**
 * A piecewise-constant counter over integer indices (page numbers): how many users hold each index.
 * Stored as sorted breakpoints, so a million-page range held once costs one segment, not a million.
 * add()/sub() report the sub-ranges whose count crossed zero, which is what pin/unpin decisions need.
 */
export class CountRuns {
  /** starts[i] begins a segment with count counts[i], running to starts[i+1] (or Infinity). */
  private starts: number[] = [0];
  private counts: number[] = [0];

  /** Index of the segment containing x. */
  private seg(x: number): number {
    const s = this.starts;
    let lo = 0;
    let hi = s.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (s[mid] <= x) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Make x a segment boundary; returns the segment index starting at x. */
  private split(x: number): number {
    const i = this.seg(x);
    if (this.starts[i] === x) return i;
    this.starts.splice(i + 1, 0, x);
    this.counts.splice(i + 1, 0, this.counts[i]);
    return i + 1;
  }

  private merge(from: number, to: number): void {
    const s = this.starts;
    const c = this.counts;
    const lo = Math.max(1, from);
    const hi = Math.min(s.length - 1, to);
    for (let i = hi; i >= lo; i--) {
      if (c[i] === c[i - 1]) {
        s.splice(i, 1);
        c.splice(i, 1);
      }
    }
  }

  /**
   * Add delta (+1 or -1 typically) to every index in [start, start+count).
   * Calls onCross(first, n) for each maximal sub-range whose count went from 0 to >0 (delta>0)
   * or from >0 to 0 (delta<0).
   */
  add(start: number, count: number, delta: number, onCross?: (first: number, n: number) => void): void {
    if (count <= 0 || delta === 0) return;
    const end = start + count;
    const a = this.split(start);
    const b = this.split(end);
    const s = this.starts;
    const c = this.counts;
    let runStart = -1;
    for (let i = a; i < b; i++) {
      const before = c[i];
      const after = before + delta;
      if (after < 0) throw new Error("CountRuns: count below zero");
      c[i] = after;
      const crossed = delta > 0 ? before === 0 : after === 0;
      if (crossed) {
        if (runStart < 0) runStart = s[i];
      } else if (runStart >= 0) {
        onCross?.(runStart, s[i] - runStart);
        runStart = -1;
      }
    }
    if (runStart >= 0) onCross?.(runStart, end - runStart);
    this.merge(a, b + 1);
  }

  /** Count at index x. */
  get(x: number): number {
    return this.counts[this.seg(x)];
  }

  /** Calls fn(first, n, count) for each maximal run with non-zero count intersecting [start, start+count). */
  forEachHeld(start: number, count: number, fn: (first: number, n: number, c: number) => void): void {
    const end = start + count;
    let i = this.seg(start);
    const s = this.starts;
    const c = this.counts;
    while (i < s.length && s[i] < end) {
      const segEnd = i + 1 < s.length ? s[i + 1] : Infinity;
      const a = Math.max(s[i], start);
      const b = Math.min(segEnd, end);
      if (c[i] !== 0 && b > a) fn(a, b - a, c[i]);
      i++;
    }
  }

  /** True when every index has count zero. */
  isEmpty(): boolean {
    return this.starts.length === 1 && this.counts[0] === 0;
  }

  /** Number of segments (for memory accounting in tests). */
  get segments(): number {
    return this.starts.length;
  }
}
