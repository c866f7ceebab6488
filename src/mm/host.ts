/**
 * The simulated host: physical memory, the hugetlb pools, users and processes.
 */
import { assert, fail } from "../errno.js";
import { PhysMem } from "./phys.js";
import { MemFile } from "./memfile.js";
import { Process } from "./process.js";

export type { PfnRuns } from "../util/extent-map.js";

/** Default RLIMIT_MEMLOCK: 8 MiB. */
export const DEFAULT_RLIMIT_MEMLOCK = 8 << 20;

/** A user: owner of the per-user locked-memory count (user->locked_vm). */
export class User {
  /** Pages; maintained by iommufd's accounting code. */
  lockedVm = 0;
  constructor(readonly uid: number) {}
}

export interface Caps {
  ipcLock: boolean;
  sysResource: boolean;
  sysRawio: boolean;
}

/** One hugetlb pool (/sys/kernel/mm/hugepages/hugepages-<size>kB). */
export class HugePool {
  /** Frames (4 KiB pages) per huge page. */
  readonly frames: number;
  /** Huge pages neither allocated nor reserved. */
  free: number;
  constructor(
    readonly shift: 21 | 30,
    readonly total: number,
  ) {
    this.frames = 2 ** (shift - 12);
    this.free = total;
  }

  /** Take n huge pages out of the free count (reservation or allocation); false if too few. */
  take(n: number): boolean {
    if (n > this.free) return false;
    this.free -= n;
    return true;
  }

  /** Give n huge pages back. */
  give(n: number): void {
    this.free += n;
    assert(this.free <= this.total, "hugetlb pool over-freed");
  }
}

export interface SpawnOptions {
  uid?: number;
  capIpcLock?: boolean;
  capSysResource?: boolean;
  capSysRawio?: boolean;
  /** Bytes; default 8 MiB; Infinity = unlimited. */
  rlimitMemlock?: number;
}

export class Host {
  readonly phys = new PhysMem();
  private readonly users = new Map<number, User>();
  private readonly procs = new Map<number, Process>();
  private readonly pools: Map<number, HugePool>;
  private nextPid = 100;

  constructor(opts: { hugepages2M?: number; hugepages1G?: number } = {}) {
    const p2 = opts.hugepages2M ?? 1024;
    const p1 = opts.hugepages1G ?? 4;
    if (!Number.isInteger(p2) || p2 < 0 || !Number.isInteger(p1) || p1 < 0) fail("EINVAL", "bad hugetlb pool size");
    this.pools = new Map([
      [21, new HugePool(21, p2)],
      [30, new HugePool(30, p1)],
    ]);
    this.phys.onHugeFree = (frames) => {
      for (const pool of this.pools.values()) if (pool.frames === frames) pool.give(1);
    };
  }

  /** Live processes, by pid. */
  get processes(): ReadonlyMap<number, Process> {
    return this.procs;
  }

  /** Get or create the user with this uid. */
  user(uid: number): User {
    if (!Number.isInteger(uid) || uid < 0) fail("EINVAL", `bad uid ${uid}`);
    let u = this.users.get(uid);
    if (!u) {
      u = new User(uid);
      this.users.set(uid, u);
    }
    return u;
  }

  /** A new process with an empty address space. Root (uid 0) gets all capabilities unless told otherwise. */
  spawn(opts: SpawnOptions = {}): Process {
    const uid = opts.uid ?? 1000;
    const root = uid === 0;
    const caps: Caps = {
      ipcLock: opts.capIpcLock ?? root,
      sysResource: opts.capSysResource ?? root,
      sysRawio: opts.capSysRawio ?? root,
    };
    const rlimit = opts.rlimitMemlock ?? DEFAULT_RLIMIT_MEMLOCK;
    if (!(rlimit >= 0)) fail("EINVAL", `bad RLIMIT_MEMLOCK ${rlimit}`);
    return this.newProcess(this.user(uid), caps, rlimit);
  }

  /** A regular file holding data (e.g. an executable), to be mapped with mmap({file}). */
  createFile(name: string, data: Uint8Array, opts: { readonly?: boolean } = {}): MemFile {
    return new MemFile(this, name, { data, readonly: opts.readonly ?? false, hugetlbShift: 12 });
  }

  /** The hugetlb pool for pages of 2^shift bytes. */
  hugePool(shift: number): HugePool {
    const p = this.pools.get(shift);
    if (!p) fail("EINVAL", `no hugetlb pool for page shift ${shift}`);
    return p;
  }

  /** @internal Allocate count huge pages' frames (pool accounting is the caller's job). */
  allocHuge(shift: number, count: number): number {
    const frames = this.hugePool(shift).frames;
    const pfn = this.phys.allocRun(count * frames, frames);
    this.phys.markCompound(pfn, count * frames, frames);
    return pfn;
  }

  /** @internal */
  newProcess(user: User, caps: Caps, rlimitMemlock: number): Process {
    const p = new Process(this, this.nextPid++, user, caps, rlimitMemlock);
    this.procs.set(p.pid, p);
    return p;
  }

  /** @internal */
  reap(p: Process): void {
    this.procs.delete(p.pid);
  }
}
