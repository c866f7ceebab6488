/**
 * A process: credentials (user, capabilities, RLIMIT_MEMLOCK) and an address space.
 */
import { fail } from "../errno.js";
import { MemFile } from "./memfile.js";
import { Mm, type MmapOptions } from "./mm.js";
import { PAGE_SIZE } from "./phys.js";
import type { Caps, Host, User } from "./host.js";

/**
 * Per-process state that layers above mm keep (e.g. iommufd's fd table): told about fork, so the
 * child inherits it, and about exit, so it is released (files closed) when the process dies.
 */
export interface ProcessAttachment {
  fork(child: Process): void;
  exit(): void;
}

/**
 * Where the CPU loads and stores of a process go when it mirrors a real process (server/: the
 * program's own memory, reached through the preload shim). Throws IommuError EFAULT for an
 * address the real process cannot access.
 */
export interface UserMemory {
  read(addr: number, length: number): Uint8Array;
  /**
   * last: the call's final copy-back, after which the call touches nothing (the kernel's
   * copy_to_user of an ioctl struct whose failure only turns the result into EFAULT): the memory
   * may carry it out with the call's result instead, and give EFAULT then.
   */
  write(addr: number, data: Uint8Array, last?: boolean): void;
}

export class Process {
  readonly mm: Mm;
  private live = true;
  /** Attachments by key (one per upper-layer kind). */
  readonly attachments = new Map<string, ProcessAttachment>();
  /** Null: loads and stores use the simulated memory. Set: they go to a real process (not inherited by fork). */
  memory: UserMemory | null = null;

  /** @internal Use Host.spawn or Process.fork. */
  constructor(
    readonly host: Host,
    readonly pid: number,
    readonly user: User,
    public caps: Caps,
    /** Bytes; Infinity = unlimited. */
    public rlimitMemlock: number,
  ) {
    this.mm = new Mm(host);
  }

  get alive(): boolean {
    return this.live;
  }

  private checkAlive(): void {
    if (!this.live) fail("ESRCH", `process ${this.pid} has exited`);
  }

  /** mmap(2); returns the address. */
  mmap(length: number, opts: MmapOptions = {}): number {
    this.checkAlive();
    return this.mm.map(length, opts);
  }

  /** munmap(2): may cover several mappings, or punch a hole in one. */
  munmap(addr: number, length: number): void {
    this.checkAlive();
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % PAGE_SIZE !== 0) fail("EINVAL", `bad address ${addr}`);
    if (!Number.isSafeInteger(length) || length <= 0) fail("EINVAL", `bad length ${length}`);
    this.mm.unmap(addr / PAGE_SIZE, Math.ceil(length / PAGE_SIZE));
  }

  /** memfd_create(2) [MFD_HUGETLB]: an empty file; size it with truncate(). */
  memfdCreate(name: string, opts: { hugetlb?: 21 | 30 } = {}): MemFile {
    this.checkAlive();
    const h = opts.hugetlb;
    if (h !== undefined && h !== 21 && h !== 30) fail("EINVAL", `bad huge page shift ${String(h)}`);
    return new MemFile(this.host, name, { hugetlbShift: h ?? 12 });
  }

  /** fork(2): same user, capabilities and limits; a copy of the address space. */
  fork(): Process {
    this.checkAlive();
    const child = this.host.newProcess(this.user, { ...this.caps }, this.rlimitMemlock);
    try {
      this.mm.forkInto(child.mm);
    } catch (e) {
      child.exit();
      throw e;
    }
    for (const a of this.attachments.values()) a.fork(child);
    return child;
  }

  /** exit(2): the address space goes away (pinned frames survive until unpinned). Idempotent. */
  exit(): void {
    if (!this.live) return;
    // files first (they may hold pins charged to this mm), then the address space
    for (const a of [...this.attachments.values()]) a.exit();
    this.attachments.clear();
    this.mm.teardown();
    this.live = false;
    this.host.reap(this);
  }

  /** A CPU load of [addr, addr+length): faults pages in; EFAULT if unmapped or not readable. */
  read(addr: number, length: number): Uint8Array {
    this.checkAlive();
    if (!Number.isSafeInteger(addr) || addr < 0) fail("EFAULT", `bad address ${addr}`);
    if (!Number.isSafeInteger(length) || length < 0) fail("EINVAL", `bad length ${length}`);
    if (this.memory) return this.memory.read(addr, length);
    return this.mm.readVirt(addr, length);
  }

  /**
   * A CPU store: write fault (COW break); EFAULT if unmapped or not writable. `last`: see
   * UserMemory.write.
   */
  write(addr: number, data: Uint8Array, last = false): void {
    this.checkAlive();
    if (!Number.isSafeInteger(addr) || addr < 0) fail("EFAULT", `bad address ${addr}`);
    if (this.memory) return this.memory.write(addr, data, last);
    this.mm.writeVirt(addr, data);
  }
}
