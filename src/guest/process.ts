/**
 * A process inside the guest: its page table lives in guest RAM in the format of the guest's CPU
 * (x86-64 4- or 5-level paging — the VT-d first-stage format, which is why guest SVA can hand it
 * to the IOMMU as is — or Arm VMSAv8-64 stage 1), its pages are guest pages. What the guest kernel
 * does for it: map and unmap anonymous memory, and load and store through its virtual addresses.
 */
import { fail } from "../errno.js";
import { PageTableEngine } from "../hw/pagetable/engine.js";
import { PT_ACCESSED, PT_CACHE, PT_DIRTY, PT_READ, PT_USER, PT_WRITE, armStage1, vtdFirstStage, type PageTableFormat } from "../hw/pagetable/format.js";
import { ACC_READ, ACC_USER, ACC_WRITE } from "../hw/pagetable/format.js";
import { PAGE_SIZE } from "../mm/phys.js";
import type { Vm } from "./vm.js";

export type GuestPaging = "x86-4level" | "x86-5level" | "arm64";

/**
 * The guest kernel's arm64 memory types (Linux 6.12 arch/arm64/include/asm/memory.h: MT_NORMAL 0,
 * MT_NORMAL_TAGGED 1, MT_NORMAL_NC 2, MT_DEVICE_nGnRnE 3, MT_DEVICE_nGnRE 4) and MAIR_EL1 as
 * proc.S sets it (MAIR_EL1_SET: Normal 0xff at 0 and, without MTE, at 1 too; Normal-NC 0x44;
 * nGnRnE 0x00; nGnRE 0x04). The SVA context descriptor carries this MAIR (arm_smmu_make_sva_cd),
 * so the device reads the process's AttrIndx through it.
 */
export const ARM64_MT = { NORMAL: 0, NORMAL_TAGGED: 1, NORMAL_NC: 2, DEVICE_nGnRnE: 3, DEVICE_nGnRE: 4 } as const;
export const ARM64_MAIR_EL1 = { lo: 0x0044ffff, hi: 0x00000004 } as const;

function formatOf(p: GuestPaging): PageTableFormat {
  switch (p) {
    case "x86-4level":
      return vtdFirstStage({ levels: 4 });
    case "x86-5level":
      return vtdFirstStage({ levels: 5 });
    case "arm64":
      // user memory is MT_NORMAL (PROT_DEFAULT: inner shareable, AF, nG)
      return armStage1({ attrIndex: { normal: ARM64_MT.NORMAL, device: ARM64_MT.DEVICE_nGnRE, nonCacheable: ARM64_MT.NORMAL_NC } });
  }
}

let nextPid = 100;

export class GuestProcess {
  readonly pid = nextPid++;
  readonly pt: PageTableEngine;
  /** Guest virtual page → guest page, for what this process mapped. */
  private readonly pages = new Map<number, number>();

  /**
   * The memory type of its pages: normal write-back (Arm: MT_NORMAL, inner shareable, as Linux maps
   * user memory); x86 first-stage leaves carry no cache bits for it.
   */
  private readonly memType: number;

  constructor(
    readonly vm: Vm,
    readonly paging: GuestPaging = "x86-4level",
  ) {
    this.pt = new PageTableEngine(vm.ram, formatOf(paging));
    this.memType = paging === "arm64" ? PT_CACHE : 0;
  }

  /** The page-table root as a guest-physical address (CR3 / TTBR0). */
  get rootGpa(): number {
    return this.pt.root * PAGE_SIZE;
  }

  /** Address width of the paging mode (48 or 57). */
  get addrWidth(): number {
    return this.paging === "x86-5level" ? 57 : 48;
  }

  /**
   * mmap + populate: n pages at guest virtual page vpn, each backed by a fresh guest page, user
   * read/write (the kernel presets accessed and dirty, as Linux does for pages it faults in).
   */
  map(vpn: number, n: number, writable = true): void {
    for (let i = 0; i < n; i++) if (this.pages.has(vpn + i)) fail("EEXIST", `guest virtual page 0x${(vpn + i).toString(16)} is mapped`);
    for (let i = 0; i < n; i++) {
      const g = this.vm.allocPages(1);
      this.pt.map(vpn + i, g, 1, PT_READ | PT_USER | PT_ACCESSED | (writable ? PT_WRITE | PT_DIRTY : 0) | this.memType);
      this.pages.set(vpn + i, g);
    }
  }

  /** munmap: the pages go back to the guest kernel. (The guest must then invalidate its IOMMU's caches.) */
  unmap(vpn: number, n: number): void {
    for (let i = 0; i < n; i++) {
      const g = this.pages.get(vpn + i);
      if (g === undefined) continue;
      this.pt.unmap(vpn + i, 1);
      this.pages.delete(vpn + i);
      this.vm.freePage(g);
    }
  }

  /** The guest page behind guest virtual page vpn (-1 when unmapped). */
  guestPage(vpn: number): number {
    return this.pages.get(vpn) ?? -1;
  }

  /** CPU stores and loads through the process's page table (a fault is EFAULT: the model's SIGSEGV). */
  write(gva: number, data: Uint8Array): void {
    this.each(gva, data.length, true, (gpa, off, n) => this.vm.ram.write(gpa, data.subarray(off, off + n)));
  }

  read(gva: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.each(gva, length, false, (gpa, off, n) => out.set(this.vm.ram.read(gpa, n), off));
    return out;
  }

  private each(gva: number, length: number, write: boolean, fn: (gpa: number, off: number, n: number) => void): void {
    let off = 0;
    while (off < length) {
      const va = gva + off;
      const vpn = Math.floor(va / PAGE_SIZE);
      const ppn = this.pt.translate(vpn, ACC_USER | (write ? ACC_WRITE : ACC_READ));
      if (ppn < 0) fail("EFAULT", `guest process ${this.pid}: no ${write ? "writable" : "readable"} page at 0x${va.toString(16)}`);
      const inPage = va - vpn * PAGE_SIZE;
      const n = Math.min(length - off, PAGE_SIZE - inPage);
      fn(ppn * PAGE_SIZE + inPage, off, n);
      off += n;
    }
  }

  /** exit: every page goes back (the table pages stay with the guest's table allocator). */
  exit(): void {
    for (const [vpn] of [...this.pages]) this.unmap(vpn, 1);
  }
}
