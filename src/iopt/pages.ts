/**
 * iopt_pages: the user memory behind one MAP (or MAP_FILE), shared by every area cloned from it
 * with COPY. Pages are pinned lazily, once per pages object, while any domain-filled area or any
 * in-kernel access needs them; the pinned frames are kept as runs (page index -> pfn), and the
 * pin is charged to the mapping process's RLIMIT_MEMLOCK in the context's accounting mode.
 */
import { failPoint } from "../fail-nth.js";
import { fail, IommuError } from "../errno.js";
import type { MemFile, PhysMem, Process } from "../mm/index.js";
import { PAGE_SIZE } from "../mm/index.js";
import { ExtentMap } from "../util/extent-map.js";

export const enum AccountMode {
  NONE = 0,
  USER = 1,
  MM = 2,
}

/** Highest user address + 1 on x86-64 (TASK_SIZE): nothing above can be pinned. */
const TASK_SIZE = 0x7ffffffff000;

export class IoptPages {
  /** kref: areas and in-flight copies holding this object. */
  refs = 1;
  /** First byte of the first page (uptr aligned down), for user memory. */
  readonly uptr: bigint;
  readonly npages: number;
  readonly writable: boolean;
  accountMode: AccountMode;
  /** Pages currently pinned and charged. */
  npinned = 0;
  /** How many holders (domain-filled areas and accesses) need each page index. */
  private readonly users = new ExtentMap(false);
  /** page index -> pfn for every pinned page. */
  readonly pfns = new ExtentMap(true);
  /** In-kernel access pins, by exact [start,last] page range: holder count. */
  readonly accessRanges = new Map<string, number>();

  private constructor(
    readonly phys: PhysMem,
    public source: Process,
    uptr: bigint,
    npages: number,
    writable: boolean,
    readonly file: MemFile | null,
    readonly filePgoff: number,
  ) {
    this.uptr = uptr;
    this.npages = npages;
    this.writable = writable;
    this.accountMode = source.caps.ipcLock ? AccountMode.NONE : AccountMode.USER;
  }

  /** iopt_alloc_pages for a user VA range. Checks length and overflow as the kernel does. */
  static forUser(phys: PhysMem, source: Process, uptr: bigint, length: bigint, writable: boolean): IoptPages {
    const SIZE_MAX = (1n << 64n) - 1n;
    if (length > SIZE_MAX - 4096n || length === 0n) fail("EINVAL", "bad length");
    if (uptr + length > SIZE_MAX) fail("EOVERFLOW", "user_va + length overflows");
    const base = uptr & ~4095n;
    const npages = Number((length + (uptr - base) + 4095n) / 4096n);
    return new IoptPages(phys, source, base, npages, writable, null, 0);
  }

  /** iopt_alloc_file_pages: a memfd range starting at a byte offset. */
  static forFile(phys: PhysMem, source: Process, file: MemFile, start: bigint, length: bigint, writable: boolean): IoptPages {
    const SIZE_MAX = (1n << 64n) - 1n;
    if (length > SIZE_MAX - 4096n || length === 0n) fail("EINVAL", "bad length");
    if (start + length - 1n > SIZE_MAX) fail("EOVERFLOW", "start + length - 1 overflows");
    if (writable && file.readonly) fail("EPERM", "writable mapping of a file not open for writing");
    const base = start & ~4095n;
    const npages = Number((length + (start - base) + 4095n) / 4096n);
    // file pages are addressed by page offset; uptr holds the byte offset of the first page
    return new IoptPages(phys, source, base, npages, writable, file, Number(base / 4096n));
  }

  get isFile(): boolean {
    return this.file !== null;
  }

  /** Pin frames for [start, start+n) page indices from the source; all-or-nothing. */
  private pinFromSource(start: number, n: number): number[] {
    if (this.file) {
      // pin_memfd_pages asks memfd_pin_folios for whole pages, which refuses any range whose last
      // byte is at or past i_size: a partial last page of the file cannot be pinned either.
      if ((this.filePgoff + start + n) * PAGE_SIZE > this.file.size) fail("EINVAL", "file pages beyond the end of the file");
      return this.file.pinPages(this.filePgoff + start, n, this.writable);
    }
    const addr = this.uptr + BigInt(start) * 4096n;
    if (addr + BigInt(n) * 4096n > BigInt(TASK_SIZE)) fail("EFAULT", "address outside user space");
    if (!this.source.mm.alive) fail("EFAULT", "the mapping process has exited");
    return this.source.mm.pinPages(Number(addr), n, this.writable);
  }

  /** do_update_pinned(npages, inc): charge or uncharge pinned pages. */
  private charge(npages: number, inc: boolean, p: Process = this.source): void {
    if (npages === 0) return;
    if (this.accountMode === AccountMode.USER) {
      if (inc) {
        const limit = Math.floor(p.rlimitMemlock / PAGE_SIZE);
        if (p.user.lockedVm + npages > limit) fail("ENOMEM", "RLIMIT_MEMLOCK exceeded (user accounting)");
        p.user.lockedVm += npages;
      } else p.user.lockedVm -= npages;
    } else if (this.accountMode === AccountMode.MM) {
      if (inc) {
        if (!p.mm.alive) fail("EINVAL", "the mapping process has exited");
        const limit = Math.floor(p.rlimitMemlock / PAGE_SIZE);
        if (p.mm.lockedVm + npages > limit) fail("ENOMEM", "RLIMIT_MEMLOCK exceeded (mm accounting)");
        p.mm.lockedVm += npages;
      } else p.mm.lockedVm -= npages;
    }
    if (inc) p.mm.pinnedVm += npages;
    else p.mm.pinnedVm -= npages;
  }

  /**
   * Take one hold on page indices [start, start+n): pages not yet held are pinned and charged.
   * All-or-nothing: on EFAULT/ENOMEM nothing is pinned or counted.
   */
  hold(start: number, n: number): void {
    if (n <= 0) return;
    // the pieces nobody holds yet are the ones to pin
    const gaps = this.users.collectGaps(start, n);
    const pinned: Array<[number, number[]]> = [];
    let total = 0;
    try {
      for (let g = 0; g < gaps.length; g += 2) {
        // a pin batch (pfn_reader / batch allocation): a fault-injection point
        failPoint("ENOMEM", "iopt_pages pin batch");
        pinned.push([gaps[g], this.pinFromSource(gaps[g], gaps[g + 1])]);
        total += gaps[g + 1];
      }
      this.charge(total, true);
    } catch (e) {
      for (const [, runs] of pinned) this.unpinRuns(runs);
      throw e;
    }
    for (const [a, runs] of pinned) {
      let idx = a;
      for (let i = 0; i < runs.length; i += 2) {
        this.pfns.set(idx, runs[i + 1], runs[i]);
        idx += runs[i + 1];
      }
    }
    this.npinned += total;
    this.users.add(start, n, +1);
  }

  private unpinRuns(runs: number[]): void {
    const phys = this.phys;
    for (let i = 0; i < runs.length; i += 2) phys.unpin(runs[i], runs[i + 1]);
  }

  /** Drop one hold on [start, start+n); pages no longer held are unpinned and uncharged. */
  release(start: number, n: number): void {
    if (n <= 0) return;
    let freed = 0;
    const phys = this.phys;
    this.users.add(start, n, -1, undefined, (a, k) => {
      this.pfns.forEach(a, k, (_i, cnt, pfn) => phys.unpin(pfn, cnt));
      this.pfns.delete(a, k);
      freed += k;
    });
    this.npinned -= freed;
    this.charge(freed, false);
  }

  /**
   * IOAS_CHANGE_PROCESS for one pages object: charge the pinned pages to `to` first (ENOMEM
   * leaves everything as it was), then uncharge the old process and make `to` the source.
   */
  chargeTo(to: Process): void {
    if (to === this.source) return;
    this.charge(this.npinned, true, to);
  }
  unchargeAndMove(to: Process): void {
    if (to === this.source) return;
    this.charge(this.npinned, false, this.source);
    this.source = to;
  }
  /** Undo chargeTo after a later failure. */
  unchargeFrom(to: Process): void {
    if (to === this.source) return;
    this.charge(this.npinned, false, to);
  }

  /** Whether page index i is pinned. */
  isPinned(i: number): boolean {
    return this.users.has(i);
  }

  /** Holders of page index i (tests). */
  holders(i: number): number {
    return this.users.get(i) ?? 0;
  }

  pfnAt(i: number): number {
    return this.pfns.get(i) ?? -1;
  }

  /** True when nothing is held. */
  get idle(): boolean {
    return this.users.runCount === 0;
  }

  /** Read (or write) bytes at a byte offset of the pages object; see IoPagetable.accessRw for the paths. */
  rwPinnedOrRemote(startByte: number, data: Uint8Array, write: boolean): void {
    const phys = this.phys;
    let off = 0;
    while (off < data.length) {
      const b = startByte + off;
      const idx = Math.floor(b / PAGE_SIZE);
      const inPage = b % PAGE_SIZE;
      const chunk = Math.min(PAGE_SIZE - inPage, data.length - off);
      let pfn = this.pfns.get(idx) ?? -1;
      let temp: number[] | null = null;
      if (pfn < 0 || !this.isPinned(idx)) {
        failPoint("ENOMEM", "pfn_reader (iopt_pages_rw_slow)");
        // pfn_reader: pin from the source mm (or file) just for this copy
        temp = this.pinFromSource(idx, 1);
        pfn = temp[0];
      }
      const pa = pfn * PAGE_SIZE + inPage;
      if (write) phys.write(pa, data.subarray(off, off + chunk));
      else data.set(phys.read(pa, chunk), off);
      if (temp) this.unpinRuns(temp);
      off += chunk;
    }
  }

  /** Read/write through the source process's current view of the VA range (copy_{to,from}_user). */
  rwUser(startByte: number, data: Uint8Array, write: boolean): void {
    // iopt_pages_rw_page: iommufd_should_fail() -> EINVAL
    failPoint("EINVAL", "iopt_pages_rw_page");
    if (this.file) {
      if (write) this.file.write(Number(this.uptr) + startByte, data);
      else data.set(this.file.read(Number(this.uptr) + startByte, data.length));
      return;
    }
    const va = this.uptr + BigInt(startByte);
    if (va + BigInt(data.length) > BigInt(TASK_SIZE)) fail("EFAULT", "bad address");
    try {
      if (write) this.source.write(Number(va), data);
      else data.set(this.source.read(Number(va), data.length));
    } catch (e) {
      if (e instanceof IommuError) fail("EFAULT", "copy through the user mapping failed");
      throw e;
    }
  }
}
