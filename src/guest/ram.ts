/**
 * Guest RAM: a range of the VMM process's memory that the guest sees as guest-physical memory
 * from GPA `gpaBase` (the VMM maps the same range into an IOAS at IOVA = GPA, so devices reach it).
 *
 * It is also a FrameStore numbered by guest page number, so the page-table engine can build a
 * guest's page tables in it (what a guest kernel does for its processes) and the hardware's
 * stage-1 walker reads them where the guest put them. Table pages come from a bump allocator over
 * a region of guest RAM the guest reserves for them (`tableArea`), reused through a free list.
 */
import { assert, fail } from "../errno.js";
import type { FrameStore } from "../hw/memory.js";
import { PAGE_SIZE } from "../mm/phys.js";
import type { Process } from "../mm/process.js";

export interface GuestRamOptions {
  /** Guest-physical base (bytes, page aligned). Default 0. */
  gpaBase?: number;
  /** Guest pages [first, first + count) (relative to gpaBase) used for page-table pages. Default: the top eighth. */
  tableArea?: { first: number; count: number };
}

export class GuestRam implements FrameStore {
  readonly gpaBase: number;
  readonly pages: number;
  private next: number;
  private readonly tableEnd: number;
  private readonly freeList: number[] = [];

  constructor(
    /** The VMM process whose memory backs the guest. */
    readonly vmm: Process,
    /** Where in the VMM the RAM starts (bytes, page aligned). */
    readonly va: number,
    /** Size in bytes (page multiple). */
    readonly size: number,
    opts: GuestRamOptions = {},
  ) {
    assert(va % PAGE_SIZE === 0 && size % PAGE_SIZE === 0 && size > 0, "guest RAM is whole pages");
    this.gpaBase = opts.gpaBase ?? 0;
    assert(this.gpaBase % PAGE_SIZE === 0, "guest RAM base is page aligned");
    this.pages = size / PAGE_SIZE;
    const area = opts.tableArea ?? { first: this.pages - Math.max(1, Math.floor(this.pages / 8)), count: Math.max(1, Math.floor(this.pages / 8)) };
    assert(area.first >= 0 && area.count > 0 && area.first + area.count <= this.pages, "table area inside guest RAM");
    this.next = this.gpaBase / PAGE_SIZE + area.first;
    this.tableEnd = this.next + area.count;
  }

  /** First guest page number. */
  get firstGpfn(): number {
    return this.gpaBase / PAGE_SIZE;
  }

  contains(gpa: number, length = 1): boolean {
    return gpa >= this.gpaBase && gpa + length <= this.gpaBase + this.size;
  }

  /** The VMM virtual address of guest-physical address gpa. */
  vaOf(gpa: number): number {
    if (!this.contains(gpa)) fail("EFAULT", `GPA 0x${gpa.toString(16)} is outside guest RAM`);
    return this.va + (gpa - this.gpaBase);
  }

  /** Host frame behind guest page gpfn (faulting the VMM's page in), or -1 outside guest RAM. */
  hostPfn(gpfn: number): number {
    const gpa = gpfn * PAGE_SIZE;
    if (!this.contains(gpa, PAGE_SIZE)) return -1;
    return this.vmm.mm.pageAt(this.vaOf(gpa));
  }

  /** Guest CPU stores and loads (through the VMM's memory: copy-on-write and all). */
  write(gpa: number, data: Uint8Array): void {
    if (!this.contains(gpa, data.length)) fail("EFAULT", `GPA range 0x${gpa.toString(16)} +${data.length} is outside guest RAM`);
    this.vmm.write(this.vaOf(gpa), data);
  }

  read(gpa: number, length: number): Uint8Array {
    if (!this.contains(gpa, length)) fail("EFAULT", `GPA range 0x${gpa.toString(16)} +${length} is outside guest RAM`);
    return this.vmm.read(this.vaOf(gpa), length);
  }

  // ---- FrameStore (numbered by guest page) ----------------------------------------------------

  frameU32(gpfn: number): Uint32Array {
    const gpa = gpfn * PAGE_SIZE;
    if (!(this.contains(gpa, PAGE_SIZE))) assert(false, `guest page ${gpfn} outside guest RAM`);
    // a store makes the page the VMM's own (not the zero page, not COW-shared)
    const va = this.vaOf(gpa);
    if (this.vmm.mm.peekPfn(va) === undefined) this.vmm.write(va, new Uint8Array(1));
    return this.vmm.host.phys.frameU32(this.vmm.mm.pageAt(va));
  }

  peekFrameU32(gpfn: number): Uint32Array | undefined {
    const gpa = gpfn * PAGE_SIZE;
    if (!this.contains(gpa, PAGE_SIZE)) return undefined;
    const pfn = this.vmm.mm.peekPfn(this.vaOf(gpa));
    return pfn === undefined ? undefined : this.vmm.host.phys.peekFrameU32(pfn);
  }

  allocTable(frames: number): number {
    if (frames === 1 && this.freeList.length > 0) {
      const g = this.freeList.pop() as number;
      this.frameU32(g).fill(0);
      return g;
    }
    const g = Math.ceil(this.next / frames) * frames;
    if (g + frames > this.tableEnd) fail("ENOMEM", "the guest's page-table area is full");
    this.next = g + frames;
    for (let i = 0; i < frames; i++) {
      // a fresh private page of zeros (write-faulted so the frame is the VMM's own)
      this.write((g + i) * PAGE_SIZE, new Uint8Array(PAGE_SIZE));
    }
    return g;
  }

  freeTable(gpfn: number, frames: number): void {
    for (let i = 0; i < frames; i++) {
      this.frameU32(gpfn + i).fill(0);
      if (frames === 1) this.freeList.push(gpfn);
    }
  }
}
