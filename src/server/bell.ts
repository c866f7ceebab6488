/**
 * The doorbell: a small shared file beside the socket (`<socket>.bell`, mode 0600) in which each
 * channel has a 64-byte slot whose first u32 the shim increments (in its MAP_SHARED mapping, no
 * system call) after every frame it sends on its channel.
 *
 * Why: the server polls a channel while it waits for the shim's next frame (lingering after an
 * answer, or waiting for MEM_DATA in the middle of a request). Node's only synchronous socket read
 * throws on EAGAIN, and that exception costs ~5 µs on a small VM — more than the request itself.
 * One pread of this file answers "did any of my channels send something?" for every channel at
 * once, without an exception. The bell is a hint only: the socket stays the source of truth, a
 * bell that does not ring just means the server falls back to reading the socket (slowly), and a
 * bell rung with nothing to read costs one EAGAIN.
 */
import fs from "node:fs";

/** Bytes per slot (one cache line: shims in different processes do not share lines). */
export const BELL_SLOT_BYTES = 64;
/** Slots in the file (4 KiB). More channels than this go without a bell. */
export const BELL_SLOTS = 64;

export class Bell {
  readonly path: string;
  private readonly fd: number;
  private readonly buf = Buffer.alloc(BELL_SLOTS * BELL_SLOT_BYTES);
  private readonly used = new Uint8Array(BELL_SLOTS);
  /** Slots below this index cover every slot in use (what a poll reads). */
  private top = 0;

  private constructor(path: string, fd: number) {
    this.path = path;
    this.fd = fd;
  }

  /** Create (or recreate) the bell file; null when that is not possible (the server then polls sockets). */
  static create(path: string): Bell | null {
    try {
      try {
        fs.unlinkSync(path);
      } catch {
        // not there
      }
      const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      fs.ftruncateSync(fd, BELL_SLOTS * BELL_SLOT_BYTES);
      return new Bell(path, fd);
    } catch {
      return null;
    }
  }

  /** A free slot, or -1 when all are taken. */
  alloc(): number {
    const i = this.used.indexOf(0);
    if (i < 0) return -1;
    this.used[i] = 1;
    if (i >= this.top) this.top = i + 1;
    return i;
  }

  free(slot: number): void {
    if (slot < 0 || slot >= BELL_SLOTS) return;
    this.used[slot] = 0;
    while (this.top > 0 && this.used[this.top - 1] === 0) this.top--;
  }

  /** Read the slots in use (one pread). */
  poll(): void {
    if (this.top === 0) return;
    try {
      fs.readSync(this.fd, this.buf, 0, this.top * BELL_SLOT_BYTES, 0);
    } catch {
      // the file is ours: a failure leaves the last values, which only delays a wake-up
    }
  }

  /** A slot's counter as of the last poll. */
  count(slot: number): number {
    return this.buf.readUInt32LE(slot * BELL_SLOT_BYTES);
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed
    }
    try {
      fs.unlinkSync(this.path);
    } catch {
      // gone
    }
  }
}

/** One channel's view of its slot: has it rung since we last looked? */
export class BellSlot {
  private seen: number;
  constructor(
    readonly bell: Bell,
    readonly slot: number,
  ) {
    bell.poll();
    this.seen = bell.count(slot);
  }

  /** Give the slot back (the channel closed). */
  release(): void {
    this.bell.free(this.slot);
  }

  /** Poll the file (unless the caller just did) and report whether the counter moved. */
  rang(fresh = false): boolean {
    if (!fresh) this.bell.poll();
    const n = this.bell.count(this.slot);
    if (n === this.seen) return false;
    this.seen = n;
    return true;
  }
}

/** The bell file's name is the socket's path plus this (the shim derives it the same way). */
export const BELL_SUFFIX = ".bell";
