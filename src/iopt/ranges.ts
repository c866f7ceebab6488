/**
 * Ordered sets of closed 64-bit ranges [start, last] for the io_pagetable's trees (areas, allowed,
 * reserved). Boundaries are bigint: IOVAs span the whole u64 space and these trees are touched once
 * per call, never per page. Lookups are binary searches; the per-page data paths use plain numbers.
 */
export interface Range {
  start: bigint;
  last: bigint;
}

/** Sorted, non-overlapping ranges with payload (areas, allowed ranges). */
export class RangeList<T extends Range> {
  private items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  all(): readonly T[] {
    return this.items;
  }

  /** Index of the first item whose last >= x (items are sorted and disjoint, so lasts increase too). */
  private firstEndingAtOrAfter(x: bigint): number {
    const it = this.items;
    let lo = 0;
    let hi = it.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (it[mid].last < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** First item intersecting [a, b], or undefined. */
  first(a: bigint, b: bigint): T | undefined {
    const i = this.firstEndingAtOrAfter(a);
    const it = this.items[i];
    return it !== undefined && it.start <= b ? it : undefined;
  }

  /** All items intersecting [a, b], in order. */
  intersecting(a: bigint, b: bigint): T[] {
    const out: T[] = [];
    for (let i = this.firstEndingAtOrAfter(a); i < this.items.length && this.items[i].start <= b; i++) out.push(this.items[i]);
    return out;
  }

  /** The item after `item` in order, or undefined. */
  next(item: T): T | undefined {
    const i = this.firstEndingAtOrAfter(item.last);
    return this.items[i] === item ? this.items[i + 1] : this.items[i];
  }

  /** Insert; the caller guarantees it overlaps nothing. */
  insert(item: T): void {
    const i = this.firstEndingAtOrAfter(item.start);
    this.items.splice(i, 0, item);
  }

  remove(item: T): void {
    const i = this.firstEndingAtOrAfter(item.last);
    if (this.items[i] !== item) throw new Error("RangeList.remove: not present");
    this.items.splice(i, 1);
  }

  clear(): void {
    this.items = [];
  }
}

/** A span of [first,last]: either a hole (no range) or used (covered). */
export interface Span {
  start: bigint;
  last: bigint;
  used: boolean;
}

/**
 * Walk [first, last] as alternating holes and used spans of a union of sorted disjoint range lists
 * (interval_tree_for_each_span / double_span). Adjacent or overlapping used ranges merge.
 */
export function spans(lists: ReadonlyArray<readonly Range[]>, first: bigint, last: bigint): Span[] {
  // Merge the relevant ranges of all lists into one sorted array.
  const rs: Range[] = [];
  for (const l of lists) for (const r of l) if (r.last >= first && r.start <= last) rs.push(r);
  if (lists.length > 1) rs.sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
  const out: Span[] = [];
  let cur = first;
  let i = 0;
  while (cur <= last) {
    if (i >= rs.length) {
      out.push({ start: cur, last, used: false });
      break;
    }
    const r = rs[i];
    if (r.last < cur) {
      i++;
      continue;
    }
    if (r.start > cur) {
      const holeLast = r.start - 1n < last ? r.start - 1n : last;
      out.push({ start: cur, last: holeLast, used: false });
      if (holeLast === last) break;
      cur = holeLast + 1n;
      continue;
    }
    // used span: extend across overlapping/adjacent ranges
    let usedLast = r.last;
    i++;
    while (i < rs.length && rs[i].start <= usedLast + 1n) {
      if (rs[i].last > usedLast) usedLast = rs[i].last;
      i++;
    }
    if (usedLast >= last) {
      out.push({ start: cur, last, used: true });
      break;
    }
    out.push({ start: cur, last: usedLast, used: true });
    cur = usedLast + 1n;
  }
  return out;
}

/** Reserved ranges: may overlap, each tagged with its owner (a domain, a device, or the test op). */
export interface Reserved extends Range {
  owner: unknown;
}

export class ReservedSet {
  private entries: Reserved[] = [];
  private merged: Range[] | null = [];

  add(start: bigint, last: bigint, owner: unknown): Reserved {
    const r = { start, last, owner };
    this.entries.push(r);
    this.merged = null;
    return r;
  }

  removeEntry(r: Reserved): void {
    const i = this.entries.indexOf(r);
    if (i >= 0) {
      this.entries.splice(i, 1);
      this.merged = null;
    }
  }

  /** Remove every range reserved by owner. */
  removeOwner(owner: unknown): void {
    const before = this.entries.length;
    this.entries = this.entries.filter((r) => r.owner !== owner);
    if (this.entries.length !== before) this.merged = null;
  }

  hasOwner(owner: unknown): boolean {
    return this.entries.some((r) => r.owner === owner);
  }

  /** Disjoint, sorted coverage of all entries. */
  coverage(): readonly Range[] {
    if (this.merged) return this.merged;
    const sorted = [...this.entries].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const out: Range[] = [];
    for (const r of sorted) {
      const prev = out[out.length - 1];
      if (prev && r.start <= prev.last + 1n && prev.last !== (1n << 64n) - 1n) {
        if (r.last > prev.last) prev.last = r.last;
      } else if (prev && prev.last === (1n << 64n) - 1n) {
        // already covers everything to the end
      } else out.push({ start: r.start, last: r.last });
    }
    this.merged = out;
    return out;
  }

  /** True if any reserved range intersects [a, b]. */
  intersects(a: bigint, b: bigint): boolean {
    const cov = this.coverage();
    let lo = 0;
    let hi = cov.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cov[mid].last < a) lo = mid + 1;
      else hi = mid;
    }
    return lo < cov.length && cov[lo].start <= b;
  }

  get size(): number {
    return this.entries.length;
  }

  list(): readonly Reserved[] {
    return this.entries;
  }
}
