/**
 * File descriptors handed out by iommufd (fault queues, selftest accesses) and the per-process
 * fd tables they live in. A file keeps its context alive until it is closed.
 */
import { fail } from "../errno.js";
import type { Process } from "../mm/index.js";

export interface IommufdFile {
  readonly kind: "fault" | "access" | "iommufd";
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

/** An fd table: lowest free number first, from 3 (0-2 are stdio). Shared slots model dup(). */
export class FdTable {
  private readonly fds = new Map<number, Slot>();
  private readonly refs = new Map<IommufdFile, number>();

  install(file: IommufdFile): number {
    let fd = 3;
    while (this.fds.has(fd)) fd++;
    this.fds.set(fd, { file });
    this.refs.set(file, (this.refs.get(file) ?? 0) + 1);
    return fd;
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
    this.fds.delete(fd);
    const n = (this.refs.get(s.file) ?? 1) - 1;
    if (n === 0) {
      this.refs.delete(s.file);
      s.file.release();
    } else this.refs.set(s.file, n);
  }

  /** Close everything (process exit). */
  closeAll(): void {
    for (const fd of [...this.fds.keys()]) this.close(fd);
  }

  get size(): number {
    return this.fds.size;
  }
}

const tables = new WeakMap<Process, FdTable>();

/** The fd table of a simulated process. */
export function fdTableOf(p: Process): FdTable {
  let t = tables.get(p);
  if (!t) {
    t = new FdTable();
    tables.set(p, t);
  }
  return t;
}
