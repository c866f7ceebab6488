/**
 * One accepted Unix-socket connection: frames arrive asynchronously (libuv 'data' events) between
 * requests, and synchronously while a request runs (the model is synchronous: when it needs the
 * caller's memory, the server writes READ_MEM and reads the answer from the same socket before the
 * model call returns). Both paths append to one buffer, so frame order is the socket's order.
 *
 * Synchronous reads use fs.readSync on the socket's fd (non-blocking: EAGAIN means "nothing yet";
 * the wait spins briefly, then sleeps with Atomics.wait in growing steps up to a deadline).
 * All writes are synchronous fs.writeSync, so replies never queue behind libuv.
 */
import fs from "node:fs";
import type net from "node:net";
import type { BellSlot } from "./bell.js";
import { HEADER, MAX_PAYLOAD, ProtocolError, type Frame } from "./protocol.js";

/** The peer went away (EOF, reset) or stopped answering in time. */
export class ClientGone extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ClientGone";
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleepMs(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

/** The errno code of a failed fs call, with stack capture off (EAGAIN is the common case). */
function quietly<T>(fn: () => T): T | { code: string } {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fn();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string") return { code };
    throw e;
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** How long waitFrame polls before it starts sleeping between polls (ms). */
const SPIN_MS = 0.3;

let nextConnId = 1;

export type Role = "new" | "channel" | "file" | "closed";

export class Conn {
  readonly id = nextConnId++;
  readonly fd: number;
  role: Role = "new";
  /** The peer closed (or reset) its end. */
  eof = false;
  /** We closed our end (the socket is destroyed; never touch fd again). */
  closed = false;
  /** This channel's doorbell slot (see bell.ts), when it has one. */
  bell: BellSlot | null = null;
  private buf: Buffer = Buffer.alloc(0);
  private readonly scratch = Buffer.allocUnsafe(64 * 1024);

  constructor(readonly sock: net.Socket) {
    const h = (sock as unknown as { _handle?: { fd?: number } })._handle;
    this.fd = typeof h?.fd === "number" ? h.fd : -1;
  }

  /** Bytes arrived through libuv. */
  append(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
  }

  get buffered(): number {
    return this.buf.length;
  }

  /** The next complete frame in the buffer, or null. Throws ProtocolError for an impossible length. */
  nextFrame(): Frame | null {
    if (this.buf.length < HEADER) return null;
    const len = this.buf.readUInt32LE(0);
    if (len > MAX_PAYLOAD) throw new ProtocolError(`frame payload of ${len} bytes`);
    if (this.buf.length < HEADER + len) return null;
    const kind = this.buf.readUInt32LE(4);
    const payload = Buffer.from(this.buf.subarray(HEADER, HEADER + len));
    this.buf = this.buf.subarray(HEADER + len);
    return { kind, payload };
  }

  /** One non-blocking read: "data", "none" (EAGAIN) or "eof". */
  fill(): "data" | "none" | "eof" {
    if (this.closed || this.eof || this.fd < 0) return "eof";
    const r = quietly(() => fs.readSync(this.fd, this.scratch, 0, this.scratch.length, null));
    if (typeof r === "number") {
      if (r === 0) {
        this.eof = true;
        return "eof";
      }
      this.append(Buffer.from(this.scratch.subarray(0, r)));
      return "data";
    }
    if (r.code === "EAGAIN" || r.code === "EWOULDBLOCK" || r.code === "EINTR") return "none";
    this.eof = true;
    return "eof";
  }

  /**
   * Block until a whole frame is buffered. Throws ClientGone on EOF or after timeoutMs. With a
   * doorbell the socket is read only when the bell rang (and every 32nd poll regardless, in case
   * a ring went unseen); without one every poll is a socket read.
   */
  waitFrame(timeoutMs: number): Frame {
    const t0 = performance.now();
    let polls = 0;
    let nap = 0.01;
    for (;;) {
      const f = this.nextFrame();
      if (f) return f;
      const look = this.bell === null || this.bell.rang() || (++polls & 31) === 0;
      const r = look ? this.fill() : "none";
      if (r === "data") continue;
      if (r === "eof") throw new ClientGone("peer closed the connection");
      const waited = performance.now() - t0;
      if (waited < SPIN_MS) continue;
      if (waited > timeoutMs) throw new ClientGone(`no answer within ${timeoutMs} ms`);
      sleepMs(nap);
      nap = Math.min(nap * 2, 2);
    }
  }

  /** Write all of b. Throws ClientGone when the peer is gone or does not drain its socket in time. */
  send(b: Uint8Array, timeoutMs = 30_000): void {
    if (this.closed || this.fd < 0) throw new ClientGone("connection closed");
    let off = 0;
    let nap = 0.01;
    let deadline = 0;
    while (off < b.length) {
      const r = quietly(() => fs.writeSync(this.fd, b, off, b.length - off));
      if (typeof r === "number") {
        off += r;
        continue;
      }
      if (r.code !== "EAGAIN" && r.code !== "EWOULDBLOCK" && r.code !== "EINTR") {
        this.eof = true;
        throw new ClientGone(`write failed: ${r.code}`);
      }
      if (deadline === 0) deadline = performance.now() + timeoutMs;
      else if (performance.now() > deadline) throw new ClientGone(`peer does not read (${timeoutMs} ms)`);
      sleepMs(nap);
      nap = Math.min(nap * 2, 2);
    }
  }

  /** Best-effort send (notifications): false if it could not be written now. */
  trySend(b: Uint8Array): boolean {
    try {
      this.send(b, 50);
      return true;
    } catch (e) {
      if (e instanceof ClientGone) return false;
      throw e;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.role = "closed";
    this.bell?.release();
    this.bell = null;
    this.buf = Buffer.alloc(0);
    this.sock.destroy();
  }
}
