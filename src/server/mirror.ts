/**
 * Mirrors of real processes: for each real pid that talks to the server, a simulated Process of
 * the one Host, whose VMAs follow the program's mappings so that pinning the program's buffers
 * gives the page identity Linux gives (MAP_SHARED mappings of one object share frames, fork
 * shares and copies-on-write, pinned private pages are copied for a fork child, ...).
 *
 * The mirror learns mappings two ways: the shim reports the program's own mmap / munmap / mremap /
 * madvise / fork calls, and, because glibc's internal mmaps (malloc, posix_memalign, stacks) bypass
 * an LD_PRELOAD interposer, the mirror asks for the real /proc/self/maps lines of a range when a
 * fault finds no VMA there (Mm.onMissing). Shared objects are keyed by the maps line's dev:inode
 * (the inode of a MAP_SHARED|MAP_ANONYMOUS mapping is its shmem object, the same in a fork child).
 *
 * Contents are not mirrored: user copies (Process.memory) and device accesses to frames that a
 * live process maps (PhysMem.contents) go to the real memory; see server.ts.
 */
import { IommuError } from "../errno.js";
import { fdTableOf } from "../iommufd/files.js";
import { MemFile, PAGE_SIZE, PROT_EXEC, PROT_READ, PROT_WRITE, TASK_SIZE, type Host, type Mm, type Process } from "../mm/index.js";
import type { Conn } from "./conn.js";

export interface MapsEntry {
  /** Bytes. */
  start: number;
  end: number;
  prot: number;
  shared: boolean;
  /** File offset in bytes. */
  offset: number;
  dev: string;
  inode: number;
  path: string;
  /** 12, or 21 / 30 for hugetlb (from smaps' KernelPageSize). */
  pageShift: number;
}

const HEADER_RE = /^([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-][sp]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)\s*(.*)$/;
const KPS_RE = /^KernelPageSize:\s+(\d+) kB/;

/** Parse /proc/<pid>/maps lines, optionally followed (as in smaps) by KernelPageSize lines. */
export function parseMaps(text: string): MapsEntry[] {
  const out: MapsEntry[] = [];
  for (const line of text.split("\n")) {
    const h = HEADER_RE.exec(line);
    if (h) {
      const start = parseInt(h[1], 16);
      const end = parseInt(h[2], 16);
      const offset = parseInt(h[4], 16);
      if (!(start < end) || end > TASK_SIZE || start % PAGE_SIZE || end % PAGE_SIZE || !Number.isSafeInteger(offset)) continue;
      const perms = h[3];
      const prot = (perms[0] === "r" ? PROT_READ : 0) | (perms[1] === "w" ? PROT_WRITE : 0) | (perms[2] === "x" ? PROT_EXEC : 0);
      out.push({ start, end, prot, shared: perms[3] === "s", offset, dev: h[5], inode: Number(h[6]), path: h[7], pageShift: 12 });
      continue;
    }
    const k = KPS_RE.exec(line);
    if (k && out.length) {
      const kb = Number(k[1]);
      out[out.length - 1].pageShift = kb === 2048 ? 21 : kb === 1048576 ? 30 : 12;
    }
  }
  return out;
}

/** Mappings the mirror leaves out: the kernel's special mappings (GUP refuses them). */
function special(e: MapsEntry): boolean {
  return e.path === "[vdso]" || e.path === "[vvar]" || e.path === "[vsyscall]" || e.path === "[vvar_vclock]" || e.path.startsWith("[uprobes");
}

/** Objects of hugetlb anonymous mappings (private ones have no object of their own). */
function anonymousObject(path: string): boolean {
  return path.startsWith("/dev/zero") || path.startsWith("/anon_hugepage") || path.startsWith("/SYSV") || path.startsWith("/memfd:");
}

export class Mirror {
  /** The process's channel connection, when it has one. */
  channel: Conn | null = null;
  /** An fd on /proc/<pid>/mem for device accesses while the process is not the caller (-1: not open, -2: failed). */
  memFd = -1;
  readonly children = new Set<Mirror>();
  parent: Mirror | null = null;
  exited = false;
  constructor(
    readonly pid: number,
    readonly proc: Process,
  ) {}
}

export interface Creds {
  uid: number;
  capEff: bigint;
  /** Bytes; Infinity for RLIM_INFINITY. */
  rlimitMemlock: number;
}

const CAP_IPC_LOCK = 14n;
const CAP_SYS_RAWIO = 17n;
const CAP_SYS_RESOURCE = 24n;

/** The capabilities the model checks, by the name `softiommu run --cap` takes. */
export const CAPABILITIES = { ipc_lock: CAP_IPC_LOCK, sys_rawio: CAP_SYS_RAWIO, sys_resource: CAP_SYS_RESOURCE } as const;
export type Capability = keyof typeof CAPABILITIES;

/** creds with the named capabilities added to the effective set. */
export function withCaps(creds: Creds, grant: readonly Capability[]): Creds {
  let capEff = creds.capEff;
  for (const c of grant) capEff |= 1n << CAPABILITIES[c];
  return { ...creds, capEff };
}

/** All mirrors of one server, and the shared objects their mappings name. */
export class Mirrors {
  readonly byPid = new Map<number, Mirror>();
  readonly byMm = new Map<Mm, Mirror>();
  private readonly objects = new Map<string, MemFile>();

  constructor(
    readonly host: Host,
    /** Called for every new mirror (the server installs its hooks). */
    private readonly setup: (m: Mirror) => void,
  ) {}

  get(pid: number): Mirror | undefined {
    return this.byPid.get(pid);
  }

  /** A mirror for a process the server has not seen fork: empty address space, the real credentials. */
  create(pid: number, creds: Creds): Mirror {
    const has = (bit: bigint): boolean => ((creds.capEff >> bit) & 1n) === 1n;
    const proc = this.host.spawn({
      uid: creds.uid,
      capIpcLock: has(CAP_IPC_LOCK),
      capSysResource: has(CAP_SYS_RESOURCE),
      capSysRawio: has(CAP_SYS_RAWIO),
      rlimitMemlock: creds.rlimitMemlock,
    });
    return this.add(pid, proc, null);
  }

  /** fork(): the child's mirror is a fork of the parent's (COW, pinned pages copied, fds inherited). */
  fork(parent: Mirror, childPid: number): Mirror {
    const proc = parent.proc.fork();
    return this.add(childPid, proc, parent);
  }

  private add(pid: number, proc: Process, parent: Mirror | null): Mirror {
    const old = this.byPid.get(pid);
    if (old) this.exit(old);
    const m = new Mirror(pid, proc);
    m.parent = parent;
    parent?.children.add(m);
    this.byPid.set(pid, m);
    this.byMm.set(proc.mm, m);
    this.setup(m);
    return m;
  }

  /** The real process is gone (or exec'd): exit the mirror (its pinned frames stay pinned). */
  exit(m: Mirror): void {
    if (m.exited) return;
    m.exited = true;
    if (this.byPid.get(m.pid) === m) this.byPid.delete(m.pid);
    this.byMm.delete(m.proc.mm);
    m.parent?.children.delete(m);
    for (const c of m.children) c.parent = null;
    m.children.clear();
    m.proc.memory = null;
    m.proc.exit();
  }

  /**
   * Add mirror VMAs for the parts of [vpn, vpn+n) (page numbers) that the maps entries cover and
   * the mirror does not. Existing VMAs are left alone.
   */
  learn(m: Mirror, entries: readonly MapsEntry[], vpn: number, n: number): void {
    const mm = m.proc.mm;
    const lo = vpn * PAGE_SIZE;
    const hi = (vpn + n) * PAGE_SIZE;
    for (const e of entries) {
      if (e.end <= lo || e.start >= hi || special(e)) continue;
      for (const [gs, ge] of this.gaps(mm, e.start, e.end)) this.mapGap(m, e, gs, ge);
    }
  }

  /** The byte ranges of [start, end) no mirror VMA covers. */
  private gaps(mm: Mm, start: number, end: number): [number, number][] {
    const out: [number, number][] = [];
    let cur = start;
    for (const v of mm.vmas) {
      const vs = v.start * PAGE_SIZE;
      const ve = v.end * PAGE_SIZE;
      if (ve <= cur) continue;
      if (vs >= end) break;
      if (vs > cur) out.push([cur, vs]);
      cur = Math.max(cur, ve);
      if (cur >= end) break;
    }
    if (cur < end) out.push([cur, end]);
    return out;
  }

  private mapGap(m: Mirror, e: MapsEntry, gs: number, ge: number): void {
    const huge = e.pageShift !== 12 ? (e.pageShift as 21 | 30) : undefined;
    const hbytes = 2 ** e.pageShift;
    if (gs % hbytes || ge % hbytes) return;
    const offset = e.offset + (gs - e.start);
    try {
      if (e.inode === 0) {
        // private anonymous (heap, stack, malloc arenas); an inode-less shared one gets its own object
        m.proc.mmap(ge - gs, { addr: gs, fixed: true, prot: e.prot, shared: e.shared, ...(huge ? { hugetlb: huge } : {}) });
        return;
      }
      if (huge && !e.shared && anonymousObject(e.path)) {
        m.proc.mmap(ge - gs, { addr: gs, fixed: true, prot: e.prot, hugetlb: huge });
        return;
      }
      const file = this.object(e, offset + (ge - gs));
      m.proc.mmap(ge - gs, { addr: gs, fixed: true, prot: e.prot, shared: e.shared, file, offset });
    } catch (err) {
      if (!(err instanceof IommuError)) throw err;
    }
  }

  /**
   * The mirror object for a maps entry's dev:inode, grown to at least `size` bytes. Objects outlive
   * their mirror mappings (the real object may still be mapped by a process the server has not
   * asked about, e.g. a parent whose child pinned the pages and exited); gc() frees the ones
   * nothing maps or pins.
   */
  private object(e: MapsEntry, size: number): MemFile {
    const key = `${e.dev}:${e.inode}:${e.pageShift}`;
    let f = this.objects.get(key);
    if (!f) {
      f = new MemFile(this.host, e.path || key, { hugetlbShift: e.pageShift, size: 0 });
      this.objects.set(key, f);
    }
    const unit = 2 ** e.pageShift;
    const want = Math.ceil(size / unit) * unit;
    if (f.size < want) f.truncate(want);
    return f;
  }

  /** Free the objects no mirror maps and whose frames nothing pins (their real objects may be gone). */
  gc(): void {
    const phys = this.host.phys;
    for (const [key, f] of this.objects) {
      if (f.mappings.size) continue;
      let pinned = false;
      f.cache.forEach(0, f.pages, (_s, n, base) => {
        if (!pinned && phys.anyPinned(base, n)) pinned = true;
      });
      if (pinned) continue;
      this.objects.delete(key);
      try {
        f.truncate(0);
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    }
  }

  /** True when some mirror object's page cache holds the frame (a shared page). */
  cachedInObject(pfn: number): boolean {
    for (const f of this.objects.values()) {
      let hit = false;
      f.cache.forEach(0, f.pages, (_s, n, base) => {
        if (!hit && pfn >= base && pfn < base + n) hit = true;
      });
      if (hit) return true;
    }
    return false;
  }

  /**
   * Where a frame is mapped in live mirrors now: page-table entries, or shared mappings of the
   * page-cache object holding it. `first` (the caller) is tried first, then mirrors whose process
   * still has its channel, then the rest (a process that exited without telling may linger).
   */
  locate(pfn: number, first: Mirror | null = null): { m: Mirror; va: number }[] {
    const order = [...this.byPid.values()].filter((m) => !m.exited);
    const rank = (m: Mirror): number => (m === first ? 0 : m.channel ? 1 : 2);
    order.sort((a, b) => rank(a) - rank(b));
    const out: { m: Mirror; va: number }[] = [];
    for (const m of order) {
      let va = -1;
      const mm = m.proc.mm;
      for (const v of mm.vmas) {
        mm.ptes.forEach(v.start, v.end - v.start, (s, n, base) => {
          if (va < 0 && pfn >= base && pfn < base + n) va = (s + (pfn - base)) * PAGE_SIZE;
        });
        if (va >= 0) break;
      }
      if (va >= 0) out.push({ m, va });
    }
    for (const f of this.objects.values()) {
      let pgoff = -1;
      f.cache.forEach(0, f.pages, (s, n, base) => {
        if (pgoff < 0 && pfn >= base && pfn < base + n) pgoff = s + (pfn - base);
      });
      if (pgoff < 0) continue;
      const hits = [...f.mappings].filter((v) => pgoff >= v.pgoff && pgoff < v.pgoff + (v.end - v.start));
      for (const v of hits) {
        const m = this.byMm.get(v.mm);
        if (!m || m.exited || out.some((o) => o.m === m)) continue;
        out.push({ m, va: (v.start + (pgoff - v.pgoff)) * PAGE_SIZE });
      }
    }
    out.sort((a, b) => rank(a.m) - rank(b.m));
    return out;
  }

  /** fds of every mirror that name file (for purging when the real file is gone). */
  forEachSlot(cb: (m: Mirror, fd: number) => void, file: unknown): void {
    for (const m of this.byPid.values()) {
      const t = fdTableOf(m.proc);
      for (const fd of t.fdsOf(file as never)) cb(m, fd);
    }
  }
}
