/**
 * An address space (struct mm_struct): VMAs, a page table, hugetlb reservations, and the fault /
 * GUP logic that iommufd observes through pinning.
 *
 * The page table is one linear extent map vpn -> pfn for the whole address space, tagged ANON (a
 * private anonymous page, possibly still COW-shared with other address spaces after fork) or FILE
 * (a page-cache frame: every page of a shared mapping, and not-yet-copied pages of a private file
 * mapping). Each entry holds one reference on its frame; a private anonymous frame referenced by
 * exactly one page table is exclusive to it, so a write reuses it, otherwise the write copies it.
 *
 * Faults work on ranges: every frame a fault needs is allocated in one contiguous run (in page
 * order), so faulting or pinning an untouched gigabyte costs a handful of operations.
 */
import { assert, fail, IommuError } from "../errno.js";
import { ExtentMap, pushRun, type PfnRuns } from "../util/extent-map.js";
import { MemFile } from "./memfile.js";
import { PAGE_SIZE } from "./phys.js";
import type { Host } from "./host.js";

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;

/** Page-table entry tags. */
const ANON = 0;
const FILE = 1;

/** Top of the mmap area (addresses are picked top-down below it). */
export const MMAP_TOP = 0x7f0000000000;
/** vm.mmap_min_addr. */
export const MMAP_MIN_ADDR = 0x10000;
/** Highest user address + 1 (x86-64, 4-level paging). */
export const TASK_SIZE = 0x7ffffffff000;

const TOP_VPN = MMAP_TOP / PAGE_SIZE;
const MIN_VPN = MMAP_MIN_ADDR / PAGE_SIZE;
const TASK_VPN = TASK_SIZE / PAGE_SIZE;

export interface MmapOptions {
  /** PROT_READ 1 | PROT_WRITE 2 | PROT_EXEC 4; default 3. */
  prot?: number;
  shared?: boolean;
  file?: MemFile;
  /** File offset in bytes. */
  offset?: number;
  /** MAP_HUGETLB with MAP_HUGE_2MB (21) or MAP_HUGE_1GB (30). */
  hugetlb?: 21 | 30;
  addr?: number;
  fixed?: boolean;
  populate?: boolean;
}

/** A mapping (struct vm_area_struct). Page numbers are in 4 KiB units. */
export interface Vma {
  mm: Mm;
  start: number;
  end: number;
  prot: number;
  shared: boolean;
  /** The mapped file; for a shared anonymous mapping the hidden shmem object. Null: private anonymous. */
  file: MemFile | null;
  /** File page (4 KiB units) mapped at start. */
  pgoff: number;
  /** Page shift: 12, or 21 / 30 for hugetlb. */
  shift: number;
}

/** A planned fault step. */
interface Op {
  /** Map page-cache frames (FILE) or install a new anonymous frame (ANON). */
  kind: typeof ANON | typeof FILE;
  vma: Vma;
  vpn: number;
  n: number;
  /** ANON: copy from this pfn; SRC_ZERO: zero-filled; SRC_CACHE: copy from the file's cache at pgoff. */
  src: number;
  pgoff: number;
  /** ANON: the frame the entry held before (unreferenced after the copy), or -1. */
  old: number;
}
const SRC_ZERO = -1;
const SRC_CACHE = -2;

const alignDown = (x: number, a: number): number => Math.floor(x / a) * a;
const alignUp = (x: number, a: number): number => Math.ceil(x / a) * a;
const hex = (vpn: number): string => "0x" + (vpn * PAGE_SIZE).toString(16);

export class Mm {
  /** Pages; maintained by iommufd's accounting code. */
  lockedVm = 0;
  /** Pages; maintained by iommufd's accounting code. */
  pinnedVm = 0;
  /** @internal Sorted, non-overlapping. */
  readonly vmas: Vma[] = [];
  /** @internal Page table: vpn -> pfn, tag ANON / FILE. */
  readonly ptes = new ExtentMap(true);
  /** @internal Hugetlb pages reserved for private mappings and not yet allocated: vpn ranges, value = page shift. */
  readonly resv = new ExtentMap(false);
  private live = true;
  /**
   * Null, or asked to add the VMAs of [vpn, vpn+n) before a fault fails on an address no VMA
   * covers. The server/ mirror of a real process learns the program's mappings this way (from its
   * /proc/self/maps), since glibc's own mmaps bypass the preload shim.
   */
  onMissing: ((vpn: number, n: number) => void) | null = null;

  /** @internal Created by Process. */
  constructor(private readonly host: Host) {}

  get alive(): boolean {
    return this.live;
  }

  /** Number of pages currently present in the page table (for tests and debugging). */
  get residentPages(): number {
    return this.ptes.covered;
  }

  // ---------------------------------------------------------------- VMAs

  /** Index of the first VMA whose end is above vpn (vmas.length if none). */
  private upper(vpn: number): number {
    const v = this.vmas;
    let lo = 0;
    let hi = v.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (v[mid].end <= vpn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The VMA containing the address, if any. */
  vmaAt(addr: number): Readonly<Vma> | undefined {
    const vpn = Math.floor(addr / PAGE_SIZE);
    const v = this.vmas[this.upper(vpn)];
    return v && v.start <= vpn ? v : undefined;
  }

  private isFree(vpn: number, n: number): boolean {
    const v = this.vmas[this.upper(vpn)];
    return !v || v.start >= vpn + n;
  }

  private insertVma(vma: Vma): void {
    const i = this.upper(vma.start);
    assert(i === this.vmas.length || this.vmas[i].start >= vma.end, "insertVma: overlap");
    this.vmas.splice(i, 0, vma);
    vma.file?.mappings.add(vma);
  }

  /** Top-down first fit below MMAP_TOP, aligned; the hint is used when it fits. */
  private unmappedArea(n: number, align: number, hint: number | undefined): number {
    if (hint !== undefined && hint % align === 0 && hint >= MIN_VPN && hint + n <= TASK_VPN && this.isFree(hint, n))
      return hint;
    let hi = TOP_VPN;
    for (let i = this.vmas.length - 1; i >= -1; i--) {
      const lo = i >= 0 ? this.vmas[i].end : MIN_VPN;
      if (lo < hi) {
        const cand = alignDown(hi - n, align);
        if (cand >= lo && cand >= MIN_VPN) return cand;
      }
      if (i >= 0) hi = Math.min(hi, this.vmas[i].start);
    }
    fail("ENOMEM", "no room in the address space");
  }

  /** @internal mmap(2). */
  map(length: number, opts: MmapOptions): number {
    if (!this.live) fail("EFAULT", "address space is gone");
    const prot = opts.prot ?? PROT_READ | PROT_WRITE;
    if (!Number.isInteger(prot) || prot < 0 || prot > 7) fail("EINVAL", `bad prot ${prot}`);
    if (!Number.isSafeInteger(length) || length <= 0) fail("EINVAL", `bad length ${length}`);
    const shared = opts.shared ?? false;
    const file = opts.file ?? null;
    let shift = 12;
    if (file) {
      shift = file.hugetlbShift;
      if (opts.hugetlb !== undefined && opts.hugetlb !== shift) fail("EINVAL", "MAP_HUGETLB does not match the file");
    } else if (opts.hugetlb !== undefined) {
      if (opts.hugetlb !== 21 && opts.hugetlb !== 30) fail("EINVAL", `bad huge page shift ${String(opts.hugetlb)}`);
      shift = opts.hugetlb;
    }
    const hf = 2 ** (shift - 12);
    const hbytes = hf * PAGE_SIZE;
    const npages = Math.ceil(length / hbytes) * hf;
    const offset = opts.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % hbytes !== 0) fail("EINVAL", `bad offset ${offset}`);
    if (file && shared && file.readonly && prot & PROT_WRITE) fail("EACCES", "shared writable map of a read-only file");
    const addr = opts.addr;
    if (addr !== undefined && (!Number.isSafeInteger(addr) || addr < 0)) fail("EINVAL", `bad address ${addr}`);

    let vpn: number;
    if (opts.fixed) {
      if (addr === undefined || addr % hbytes !== 0) fail("EINVAL", "MAP_FIXED needs an aligned address");
      vpn = addr / PAGE_SIZE;
      if (vpn < MIN_VPN) fail("EPERM", "address below mmap_min_addr");
      if (vpn + npages > TASK_VPN) fail("ENOMEM", "mapping beyond TASK_SIZE");
      this.unmap(vpn, npages);
    } else {
      vpn = this.unmappedArea(npages, hf, addr !== undefined ? Math.floor(addr / PAGE_SIZE) : undefined);
    }

    let f = file;
    let pgoff = offset / PAGE_SIZE;
    if (!f && shared) {
      f = new MemFile(this.host, "dev/zero (deleted)", { anonymous: true, hugetlbShift: shift, size: npages * PAGE_SIZE });
      pgoff = 0;
    }
    if (shift !== 12) {
      if (shared) {
        f!.reserve(pgoff, npages);
      } else {
        if (!this.host.hugePool(shift).take(npages / hf)) fail("ENOMEM", "hugetlb pool has too few free pages");
        this.resv.set(vpn, npages, shift);
      }
    }
    const vma: Vma = { mm: this, start: vpn, end: vpn + npages, prot, shared, file: f, pgoff, shift };
    this.insertVma(vma);

    if (opts.populate && prot !== PROT_NONE) {
      let n = npages;
      if (f) n = Math.max(0, Math.min(n, f.pages - pgoff));
      const write = (prot & PROT_WRITE) !== 0 && !shared;
      try {
        this.faultIn(vpn, n, write, write, true);
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    }
    return vpn * PAGE_SIZE;
  }

  /** @internal munmap(2) of pages [vpn, vpn+n). */
  unmap(vpn: number, n: number): void {
    let s = vpn;
    let e = vpn + n;
    // hugetlb mappings are cut at huge page boundaries: the end rounds up, the start must be aligned.
    const last = this.vmas[this.upper(e - 1)];
    if (last && last.start < e && last.shift !== 12) e = Math.min(last.end, alignUp(e, 2 ** (last.shift - 12)));
    const first = this.vmas[this.upper(s)];
    if (first && first.start < s && first.end > s && first.shift !== 12 && s % 2 ** (first.shift - 12) !== 0)
      fail("EINVAL", "munmap inside a huge page");
    s = Math.max(s, 0);

    let i = this.upper(s);
    while (i < this.vmas.length && this.vmas[i].start < e) {
      const v = this.vmas[i];
      const os = Math.max(s, v.start);
      const oe = Math.min(e, v.end);
      this.zapPtes(os, oe - os);
      this.dropResv(os, oe - os);
      if (os > v.start && oe < v.end) {
        const right: Vma = { ...v, start: oe, pgoff: v.pgoff + (oe - v.start) };
        v.end = os;
        this.vmas.splice(i + 1, 0, right);
        right.file?.mappings.add(right);
        i += 2;
      } else if (os > v.start) {
        v.end = os;
        i++;
      } else if (oe < v.end) {
        v.pgoff += oe - v.start;
        v.start = oe;
        i++;
      } else {
        this.vmas.splice(i, 1);
        this.detach(v);
      }
    }
  }

  private detach(v: Vma): void {
    const f = v.file;
    if (!f) return;
    f.mappings.delete(v);
    if (f.anonymous && f.mappings.size === 0) f.release();
  }

  /** @internal Drop the page-table entries of [vpn, vpn+n) (their frames lose a reference). */
  zapPtes(vpn: number, n: number): void {
    if (n <= 0) return;
    const runs = this.ptes.collect(vpn, n);
    if (runs.length === 0) return;
    this.ptes.delete(vpn, n);
    for (let i = 0; i < runs.length; i += 4) this.host.phys.unref(runs[i + 2], runs[i + 1]);
  }

  /** Return the unused hugetlb reservations of [vpn, vpn+n) to their pools. */
  private dropResv(vpn: number, n: number): void {
    const runs = this.resv.collect(vpn, n);
    if (runs.length === 0) return;
    this.resv.delete(vpn, n);
    for (let i = 0; i < runs.length; i += 4) {
      const pool = this.host.hugePool(runs[i + 2]);
      pool.give(runs[i + 1] / pool.frames);
    }
  }

  /** @internal exit_mmap(): drop every mapping; the mm is dead afterwards. */
  teardown(): void {
    if (!this.live) return;
    for (const v of this.vmas) {
      this.zapPtes(v.start, v.end - v.start);
      this.dropResv(v.start, v.end - v.start);
    }
    const all = this.vmas.splice(0);
    for (const v of all) this.detach(v);
    assert(this.ptes.covered === 0 && this.resv.covered === 0, "teardown left pages behind");
    this.live = false;
  }

  // ---------------------------------------------------------------- faults

  /**
   * @internal Fault in pages [vpn, vpn+n): every page becomes present; with `exclusive`, every page
   * of a private mapping becomes an anonymous page exclusive to this mm (COW broken, file pages
   * copied). `write` requires PROT_WRITE, otherwise PROT_READ is required (a CPU load, `cpu`, only
   * needs some access: on x86 PROT_WRITE and PROT_EXEC imply readable). All checks happen before
   * anything changes: a failing fault changes nothing.
   */
  faultIn(vpn: number, n: number, write: boolean, exclusive: boolean, cpu = false): void {
    if (!this.live) fail("EFAULT", "address space is gone");
    if (n <= 0) return;
    const end = vpn + n;

    // 1. Find the VMAs; check permissions and file sizes.
    const pieces: [Vma, number, number][] = [];
    let i = this.upper(vpn);
    let cur = vpn;
    let asked = false;
    while (cur < end) {
      const v = this.vmas[i];
      if (!v || v.start > cur) {
        if (this.onMissing && !asked) {
          asked = true;
          this.onMissing(cur, end - cur);
          i = this.upper(cur);
          continue;
        }
        fail("EFAULT", `address ${hex(cur)} is not mapped`);
      }
      if (!(v.prot & (write ? PROT_WRITE : cpu ? PROT_READ | PROT_WRITE | PROT_EXEC : PROT_READ)))
        fail("EFAULT", `address ${hex(cur)} is not ${write ? "writable" : "readable"}`);
      const e = Math.min(end, v.end);
      if (v.file && v.pgoff + (e - v.start) > v.file.pages)
        fail("EFAULT", `address ${hex(cur)}: mapping extends beyond the end of ${v.file.name} (SIGBUS)`);
      const hf = 2 ** (v.shift - 12);
      pieces.push([v, alignDown(cur, hf), alignUp(e, hf)]);
      cur = e;
      i++;
    }

    // 2. Plan.
    const ops: Op[] = [];
    const phys = this.host.phys;
    for (const [v, s, e] of pieces) {
      const pg = (x: number): number => v.pgoff + (x - v.start);
      const file = v.file;
      if (v.shared) {
        this.ptes.walk(s, e - s, (gs, gn, present) => {
          if (!present) ops.push({ kind: FILE, vma: v, vpn: gs, n: gn, src: SRC_ZERO, pgoff: pg(gs), old: -1 });
        });
        continue;
      }
      this.ptes.walk(s, e - s, (ps, pn, present, pfn, tag) => {
        if (!present) {
          if (!file) {
            ops.push({ kind: ANON, vma: v, vpn: ps, n: pn, src: SRC_ZERO, pgoff: 0, old: -1 });
          } else if (v.shift === 12) {
            ops.push({ kind: exclusive ? ANON : FILE, vma: v, vpn: ps, n: pn, src: SRC_CACHE, pgoff: pg(ps), old: -1 });
          } else {
            // A private hugetlb file mapping: uses the cached page if there is one, else a fresh one.
            const p0 = pg(ps);
            file.cache.walk(p0, pn, (cs, cn, cached, cpfn) => {
              const at = ps + (cs - p0);
              if (!cached) ops.push({ kind: ANON, vma: v, vpn: at, n: cn, src: SRC_ZERO, pgoff: 0, old: -1 });
              else if (exclusive) ops.push({ kind: ANON, vma: v, vpn: at, n: cn, src: cpfn, pgoff: 0, old: -1 });
              else ops.push({ kind: FILE, vma: v, vpn: at, n: cn, src: SRC_ZERO, pgoff: cs, old: -1 });
            });
          }
          return;
        }
        if (!exclusive) return;
        if (tag === FILE) {
          ops.push({ kind: ANON, vma: v, vpn: ps, n: pn, src: pfn, pgoff: 0, old: pfn });
          return;
        }
        phys.forRefs(pfn, pn, (fs, fn, refs) => {
          if (refs > 1) ops.push({ kind: ANON, vma: v, vpn: ps + (fs - pfn), n: fn, src: fs, pgoff: 0, old: fs });
        });
      });
    }
    if (ops.length === 0) return;

    // 3. Check the hugetlb pools before changing anything.
    const need = new Map<number, number>();
    for (const op of ops) {
      const v = op.vma;
      if (v.shift === 12) continue;
      const hf = 2 ** (v.shift - 12);
      assert(op.vpn % hf === 0 && op.n % hf === 0, "hugetlb fault not huge-page aligned");
      const k =
        op.kind === FILE ? v.file!.hugeNeed(op.pgoff, op.n) : (op.n - this.resv.countIn(op.vpn, op.n)) / hf;
      if (k > 0) need.set(v.shift, (need.get(v.shift) ?? 0) + k);
    }
    for (const [shift, k] of need)
      if (k > this.host.hugePool(shift).free) fail("EFAULT", "hugetlb pool exhausted (SIGBUS)");

    // 4. Execute.
    for (const op of ops)
      if (op.kind === FILE || op.src === SRC_CACHE) op.vma.file!.ensureCache(op.pgoff, op.n, "EFAULT");
    let small = 0;
    for (const op of ops) if (op.kind === ANON && op.vma.shift === 12) small += op.n;
    let next = small > 0 ? phys.allocRun(small) : 0;
    for (const op of ops) {
      const v = op.vma;
      if (op.kind === FILE) {
        for (const [at, cn, cpfn] of this.cacheRuns(v.file!, op.pgoff, op.n, op.vpn)) {
          this.ptes.set(at, cn, cpfn, FILE);
          phys.ref(cpfn, cn);
        }
        continue;
      }
      let pfn: number;
      if (v.shift === 12) {
        pfn = next;
        next += op.n;
      } else {
        const pool = this.host.hugePool(v.shift);
        const reserved = this.resv.countIn(op.vpn, op.n);
        this.resv.delete(op.vpn, op.n);
        assert(pool.take((op.n - reserved) / pool.frames), "hugetlb pool accounting");
        pfn = this.host.allocHuge(v.shift, op.n / pool.frames);
      }
      if (op.src >= 0) phys.copyRun(pfn, op.src, op.n);
      else if (op.src === SRC_CACHE)
        for (const [at, cn, cpfn] of this.cacheRuns(v.file!, op.pgoff, op.n, op.vpn)) phys.copyRun(pfn + (at - op.vpn), cpfn, cn);
      if (op.old >= 0) phys.unref(op.old, op.n);
      this.ptes.set(op.vpn, op.n, pfn, ANON);
      phys.ref(pfn, op.n);
    }
  }

  /** The cache runs of file pages [pgoff, pgoff+n) placed at vpn: [vpn, n, pfn]*. */
  private cacheRuns(file: MemFile, pgoff: number, n: number, vpn: number): [number, number, number][] {
    const out: [number, number, number][] = [];
    file.cache.forEach(pgoff, n, (cs, cn, cpfn) => out.push([vpn + (cs - pgoff), cn, cpfn]));
    assert(out.reduce((a, r) => a + r[1], 0) === n, "page cache fill");
    return out;
  }

  // ---------------------------------------------------------------- GUP and CPU access

  /**
   * get_user_pages(FOLL_PIN | FOLL_LONGTERM [| FOLL_WRITE]): fault in, unshare private pages, pin.
   * Returns the frames as runs in page order. All or nothing.
   */
  pinPages(addr: number, npages: number, write: boolean): PfnRuns {
    if (!this.live) fail("EFAULT", "address space is gone");
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % PAGE_SIZE !== 0) fail("EINVAL", `bad address ${addr}`);
    if (!Number.isSafeInteger(npages) || npages < 0) fail("EINVAL", `bad page count ${npages}`);
    if (npages === 0) return [];
    const vpn = addr / PAGE_SIZE;
    this.faultIn(vpn, npages, write, true);
    const runs: PfnRuns = [];
    this.ptes.forEach(vpn, npages, (_s, n, pfn) => pushRun(runs, pfn, n));
    this.host.phys.pinRuns(runs);
    return runs;
  }

  /** The frame backing addr now, read-faulting it in (get_user_pages without a pin). */
  pageAt(addr: number): number {
    if (!this.live) fail("EFAULT", "address space is gone");
    if (!Number.isSafeInteger(addr) || addr < 0) fail("EFAULT", `bad address ${addr}`);
    const vpn = Math.floor(addr / PAGE_SIZE);
    this.faultIn(vpn, 1, false, false);
    const pfn = this.ptes.get(vpn);
    assert(pfn !== undefined, "pageAt after fault");
    return pfn;
  }

  /** The frame mapped at addr without faulting, or undefined (for tests and debugging). */
  peekPfn(addr: number): number | undefined {
    return this.ptes.get(Math.floor(addr / PAGE_SIZE));
  }

  /** @internal CPU loads. */
  readVirt(addr: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    if (length === 0) return out;
    const first = Math.floor(addr / PAGE_SIZE);
    const last = Math.ceil((addr + length) / PAGE_SIZE);
    this.faultIn(first, last - first, false, false, true);
    const phys = this.host.phys;
    this.ptes.forEach(first, last - first, (s, n, pfn) => {
      const a = Math.max(s * PAGE_SIZE, addr);
      const e = Math.min((s + n) * PAGE_SIZE, addr + length);
      out.set(phys.read(pfn * PAGE_SIZE + (a - s * PAGE_SIZE), e - a), a - addr);
    });
    return out;
  }

  /** @internal CPU stores. */
  writeVirt(addr: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const first = Math.floor(addr / PAGE_SIZE);
    const last = Math.ceil((addr + data.length) / PAGE_SIZE);
    this.faultIn(first, last - first, true, true);
    const phys = this.host.phys;
    this.ptes.forEach(first, last - first, (s, n, pfn) => {
      const a = Math.max(s * PAGE_SIZE, addr);
      const e = Math.min((s + n) * PAGE_SIZE, addr + data.length);
      phys.write(pfn * PAGE_SIZE + (a - s * PAGE_SIZE), data.subarray(a - addr, e - addr));
    });
  }

  // ---------------------------------------------------------------- fork

  /**
   * @internal dup_mmap(): copy the VMAs into child; shared pages and file pages are shared,
   * private anonymous pages become COW-shared, except pages with a long-term pin, which the child
   * gets a copy of right away (so the pinned frame stays the parent's). Hugetlb reservations stay
   * with the parent.
   */
  forkInto(child: Mm): void {
    if (!this.live) fail("EFAULT", "address space is gone");
    const phys = this.host.phys;
    const shares: number[] = []; // [vpn, n, pfn, tag]*
    const copies: number[] = []; // [vpn, n, srcPfn, shift]*
    for (const v of this.vmas) {
      this.ptes.forEach(v.start, v.end - v.start, (s, n, pfn, tag) => {
        if (v.shared || tag === FILE) {
          shares.push(s, n, pfn, tag);
        } else if (v.shift === 12) {
          phys.forPins(pfn, n, (fs, fn, pins) => {
            if (pins > 0) copies.push(s + (fs - pfn), fn, fs, 12);
            else shares.push(s + (fs - pfn), fn, fs, ANON);
          });
        } else {
          const hf = 2 ** (v.shift - 12);
          for (let h = 0; h < n; h += hf) {
            if (phys.anyPinned(pfn + h, hf)) copies.push(s + h, hf, pfn + h, v.shift);
            else shares.push(s + h, hf, pfn + h, ANON);
          }
        }
      });
    }
    const need = new Map<number, number>();
    let small = 0;
    for (let i = 0; i < copies.length; i += 4) {
      const shift = copies[i + 3];
      if (shift === 12) small += copies[i + 1];
      else need.set(shift, (need.get(shift) ?? 0) + 1);
    }
    for (const [shift, k] of need)
      if (k > this.host.hugePool(shift).free) fail("ENOMEM", "hugetlb pool too small to copy pinned pages for fork");

    for (const v of this.vmas) child.insertVma({ ...v, mm: child });
    for (let i = 0; i < shares.length; i += 4) {
      child.ptes.set(shares[i], shares[i + 1], shares[i + 2], shares[i + 3]);
      phys.ref(shares[i + 2], shares[i + 1]);
    }
    let next = small > 0 ? phys.allocRun(small) : 0;
    for (let i = 0; i < copies.length; i += 4) {
      const [vpn, n, src, shift] = [copies[i], copies[i + 1], copies[i + 2], copies[i + 3]];
      let pfn: number;
      if (shift === 12) {
        pfn = next;
        next += n;
      } else {
        assert(this.host.hugePool(shift).take(1), "hugetlb pool accounting");
        pfn = this.host.allocHuge(shift, 1);
      }
      phys.copyRun(pfn, src, n);
      child.ptes.set(vpn, n, pfn, ANON);
      phys.ref(pfn, n);
    }
  }
}
