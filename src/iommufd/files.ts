/**
 * File descriptors handed out by iommufd (fault queues, vEVENTQs, selftest accesses) and the per-process
 * fd tables they live in. A file keeps its context alive until it is closed.
 */
import { fail } from "../errno.js";
import type { Process, ProcessAttachment } from "../mm/index.js";

export interface IommufdFile {
  /** "veventq" [newer than 6.12]: "[iommufd-viommu-event]", read and poll like a fault queue. */
  readonly kind: "fault" | "access" | "iommufd" | "veventq";
  /** Last close of the file. */
  release(): void;
  read?(count: number, pos: number): Uint8Array;
  write?(data: Uint8Array, pos: number): number;
  /** POLLIN (1) | POLLOUT (4) | POLLRDNORM (0x40) ... */
  poll?(): number;
}

interface Slot {
  file: IommufdFile;
}

/**
 * How a table that mirrors a real process's fds (server/) numbers and closes them: the number an
 * fd gets is the one the real process got, and an fd the model closes (an ioctl undoing what it
 * created) is closed in the real process too.
 */
export interface FdNumbering {
  /** The number for a new fd (throws IommuError, e.g. EMFILE, when none can be had). */
  allocate(file: IommufdFile): number;
  /** The model closed fd. */
  closed(fd: number, file: IommufdFile): void;
}

/** An fd table: lowest free number first, from 3 (0-2 are stdio). Shared slots model dup(). */
export class FdTable implements ProcessAttachment {
  private readonly fds = new Map<number, Slot>();
  /** Null: numbers are the lowest free. Set: see FdNumbering. */
  numbering: FdNumbering | null = null;

  install(file: IommufdFile): number {
    if (this.numbering) {
      const n = this.numbering.allocate(file);
      this.installAt(n, file);
      return n;
    }
    let fd = 3;
    while (this.fds.has(fd)) fd++;
    this.fds.set(fd, { file });
    holders.set(file, (holders.get(file) ?? 0) + 1);
    return fd;
  }

  /** Put file at number fd, first dropping whatever the slot held (dup2 semantics). */
  installAt(fd: number, file: IommufdFile): void {
    if (this.fds.has(fd)) this.forget(fd);
    this.fds.set(fd, { file });
    holders.set(file, (holders.get(file) ?? 0) + 1);
  }

  /** The numbers at which this table holds file. */
  fdsOf(file: IommufdFile): number[] {
    const out: number[] = [];
    for (const [fd, s] of this.fds) if (s.file === file) out.push(fd);
    return out;
  }

  get(fd: number): IommufdFile | undefined {
    return this.fds.get(fd)?.file;
  }

  dup(fd: number): number {
    const f = this.get(fd);
    if (!f) fail("EBADF", "bad file descriptor");
    return this.install(f);
  }

  close(fd: number): void {
    const s = this.fds.get(fd);
    if (!s) fail("EBADF", "bad file descriptor");
    this.numbering?.closed(fd, s.file);
    this.forget(fd);
  }

  /** Drop slot fd without telling the numbering (the real fd is already gone); releases on the last holder. */
  forget(fd: number): void {
    const s = this.fds.get(fd);
    if (!s) fail("EBADF", "bad file descriptor");
    this.fds.delete(fd);
    const h = (holders.get(s.file) ?? 1) - 1;
    if (h === 0) {
      holders.delete(s.file);
      s.file.release();
    } else holders.set(s.file, h);
  }

  /** Close everything (process exit). */
  closeAll(): void {
    for (const fd of [...this.fds.keys()]) this.forget(fd);
  }

  get size(): number {
    return this.fds.size;
  }

  /** fork(): the child gets the same files at the same numbers (each file gains a holder). */
  fork(child: Process): void {
    const t = fdTableOf(child);
    for (const [fd, slot] of this.fds) {
      t.fds.set(fd, { file: slot.file });
      holders.set(slot.file, (holders.get(slot.file) ?? 0) + 1);
    }
  }

  /** exit(): every fd is closed. */
  exit(): void {
    this.closeAll();
  }
}

/** Open descriptions across all processes: a file is released when its last fd anywhere closes. */
const holders = new Map<IommufdFile, number>();

const tables = new WeakMap<Process, FdTable>();

/** The fd table of a simulated process. */
export function fdTableOf(p: Process): FdTable {
  let t = tables.get(p);
  if (!t) {
    t = new FdTable();
    tables.set(p, t);
    p.attachments.set("iommufd-fds", t);
  }
  return t;
}
