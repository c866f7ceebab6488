/**
 * The softiommu server: one Host for every client, a Unix socket the preload shim connects to,
 * and the glue that turns the shim's frames into library calls (docs/design/shim-and-server.md).
 *
 * The model is synchronous, and so is the server while it serves a request: it runs the library
 * call to the end, reading and writing the caller's memory through the caller's channel as the
 * call needs it (READ_MEM / WRITE_MEM / MAPS / INSTALL_FD), then answers RESULT. Frames of other
 * clients wait in their sockets meanwhile. A client that sends a bad frame, dies, or stops
 * answering is dropped; its memory accesses fail with EFAULT so the call unwinds as a failing call
 * would, and the files it held are released when their sockets report EOF.
 */
import { asTask, FailNth, shouldFail, swapTask } from "../fail-nth.js";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { errnoName, Errno, fail, IommuError, type ErrnoName } from "../errno.js";
import { openIommufd, type IommufdCtx } from "../iommufd/context.js";
import { FdTable, fdTableOf, type IommufdFile } from "../iommufd/files.js";
import { Host, MMAP_MIN_ADDR, PAGE_SIZE, TASK_SIZE } from "../mm/index.js";
import { decode, ioctlFor, VFIO_IOCTLS, dispatchIoctl, type Profile, type StructLayout, type UObject } from "../uapi/index.js";
import { Bell, BellSlot, BELL_SUFFIX } from "./bell.js";
import { ClientGone, Conn } from "./conn.js";
import { parseMaps, Mirror, Mirrors, withCaps, type Capability, type Creds } from "./mirror.js";
import {
  HelloFlag,
  checkFrame,
  FailNthOp,
  FileKind,
  frame,
  HelloReason,
  Kind,
  MEM_CHUNK,
  OpenPath,
  PROTOCOL_VERSION,
  ProtocolError,
  RangeWhat,
  resultFrame,
  resultWriteFrame,
  Writer,
  type Frame,
} from "./protocol.js";

export interface ServerOptions {
  /** The kernel to answer as (default "newest"). */
  profile?: Profile;
  /** Called with one record per ioctl (softiommu run --trace). */
  trace?: (rec: TraceRecord) => void;
  /** Diagnostics (dropped clients, internal errors). Default: none. */
  log?: (msg: string) => void;
  /** How long a client may take to answer a memory request before it is dropped (ms, default 10000). */
  clientTimeoutMs?: number;
  /**
   * Capabilities every client is treated as having, whatever its real ones (`softiommu run --cap`):
   * for running code that needs e.g. CAP_SYS_RESOURCE where the real process cannot have it.
   */
  grantCaps?: readonly Capability[];
}

export interface TraceRecord {
  seq: number;
  pid: number;
  tid: number;
  fd: number;
  ioctl: string;
  request: string;
  arg: string;
  in?: unknown;
  ret: number;
  errno?: string;
  out?: unknown;
  us: number;
}

/** What the server holds for one open file of a client (an fd's socket). */
interface Served {
  id: bigint;
  kind: FileKind;
  file: IommufdFile;
  ctx: IommufdCtx;
  /** The file's socket; null until its ATTACH arrives (or after release). */
  conn: Conn | null;
  /** Created by an ioctl, its socket not accepted yet. */
  token: bigint | null;
  /** Slot in the server's hold table (the reference the real file keeps while its socket is open). */
  holdFd: number;
  released: boolean;
  /** A READY frame is in the socket (fault queues). */
  signaled: boolean;
  bornAt: number;
}

/** The request being served. */
interface Current {
  m: Mirror;
  conn: Conn;
  ctx: IommufdCtx | null;
  /** Bytes of the caller's memory the shim sent with the request (the ioctl struct). */
  cacheAddr: number;
  cache: Uint8Array;
  cacheWritten: boolean;
  /**
   * The request may hand its last store to the shim with its RESULT (RESULT_WRITE), and the store
   * it handed over (UserMemory.write's `last`).
   */
  canDefer: boolean;
  deferred: { addr: number; data: Uint8Array } | null;
  gone: boolean;
  /** The caller's whole layout was learned during this request. */
  learnedAll: boolean;
}

const POLLIN = 1;
const U64_MAX = (1n << 64n) - 1n;
const MAX_RW_COUNT = 0x7ffff000;
/** The largest last store a RESULT_WRITE carries (ioctl structs are a few hundred bytes at most). */
const DEFER_MAX = 4096;

const mapCount = (m: Map<string, number>, k: string, n = 1): void => {
  m.set(k, (m.get(k) ?? 0) + n);
};

/** JSON with u64 values as numbers when exact, else hex strings. */
export function jsonify(v: unknown): unknown {
  return JSON.parse(
    JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? (x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : "0x" + x.toString(16)) : x)),
  );
}

export interface ServerStats {
  connections: number;
  clientsDropped: number;
  protocolErrors: number;
  internalErrors: number;
  abortedRequests: number;
  processesSeen: number;
  mirrorsLive: number;
  contextsOpened: number;
  contextsLive: number;
  objectsCreated: Record<string, number>;
  objectsLive: Record<string, number>;
  ioctls: number;
  ioctlsByName: Record<string, number>;
  errnos: Record<string, number>;
  bytesMapped: number;
  pinnedBytes: number;
  pinnedPeakBytes: number;
  memReads: number;
  memReadBytes: number;
  memWrites: number;
  /** Last stores of ioctls handed to the shim with their RESULT (RESULT_WRITE; not in memWrites). */
  memWritesDeferred: number;
  memWriteBytes: number;
  mapsQueries: number;
  filesLive: number;
  /** Open channels whose shim rings a doorbell slot (bell.ts). */
  channelsWithBell: number;
}

export class SoftiommuServer {
  readonly host = new Host();
  readonly mirrors: Mirrors;
  readonly profile: Profile;
  private readonly opts: ServerOptions;
  private srv: net.Server | null = null;
  /** The channels' doorbell file (bell.ts); null when it could not be created. */
  private bell: Bell | null = null;
  socketPath = "";
  private readonly conns = new Set<Conn>();
  private readonly channelMirror = new Map<Conn, Mirror>();
  private readonly channelCreds = new Map<Conn, Creds>();
  private readonly fileOfConn = new Map<Conn, Served>();
  /** tid -> fail-nth counter (/proc/<pid>/task/<tid>/fail-nth), armed threads only. */
  private readonly failNth = new Map<number, FailNth>();
  private readonly files = new Map<bigint, Served>();
  private readonly byFile = new Map<IommufdFile, Served>();
  private readonly tokens = new Map<bigint, Served>();
  private readonly nonces = new Map<bigint, Served>();
  private readonly faults = new Set<Served>();
  private readonly hold = new FdTable();
  private readonly contexts = new Set<IommufdCtx>();
  private readonly eofHandled = new WeakSet<Conn>();
  private readonly seenObjects = new WeakSet<object>();
  private readonly busy = new Set<Conn>();
  private cur: Current | null = null;
  private presetFd: number | null = null;
  private pumping = false;
  private nextFileId = 1n;
  private nextToken = 1n;
  private seq = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly timeoutMs: number;
  private readonly idle: (() => void)[] = [];

  private readonly st = {
    connections: 0,
    clientsDropped: 0,
    protocolErrors: 0,
    internalErrors: 0,
    abortedRequests: 0,
    processesSeen: 0,
    contextsOpened: 0,
    objectsCreated: new Map<string, number>(),
    ioctls: 0,
    ioctlsByName: new Map<string, number>(),
    errnos: new Map<string, number>(),
    bytesMapped: 0,
    pinnedPeakFrames: 0,
    memReads: 0,
    memReadBytes: 0,
    memWrites: 0,
    memWritesDeferred: 0,
    memWriteBytes: 0,
    mapsQueries: 0,
  };

  constructor(opts: ServerOptions = {}) {
    this.opts = opts;
    this.profile = opts.profile ?? "newest";
    if (this.profile !== "newest" && this.profile !== "6.12") throw new TypeError(`unknown kernel profile ${String(this.profile)}`);
    this.timeoutMs = opts.clientTimeoutMs ?? 10_000;
    this.mirrors = new Mirrors(this.host, (m) => this.setupMirror(m));
    this.host.phys.contents = {
      read: (pfn, off, len) => this.frameRead(pfn, off, len),
      write: (pfn, off, data) => this.frameWrite(pfn, off, data),
    };
  }

  private log(msg: string): void {
    this.opts.log?.(msg);
  }

  // ------------------------------------------------------------------ listening

  /** Listen on a Unix socket at path (its directory is created 0700, the socket is made 0600). */
  listen(sockPath: string): Promise<void> {
    fs.mkdirSync(path.dirname(sockPath), { recursive: true, mode: 0o700 });
    try {
      fs.unlinkSync(sockPath);
    } catch {
      // not there
    }
    this.socketPath = sockPath;
    this.bell = Bell.create(sockPath + BELL_SUFFIX);
    const srv = net.createServer({ allowHalfOpen: false }, (s) => this.accept(s));
    this.srv = srv;
    this.timer = setInterval(() => this.housekeeping(), 250);
    this.timer.unref();
    return new Promise((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(sockPath, () => {
        fs.chmodSync(sockPath, 0o600);
        srv.off("error", reject);
        resolve();
      });
    });
  }

  /** Stop listening, drop every client, exit every mirror (releasing all contexts). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const srv = this.srv;
    this.srv = null;
    for (const c of [...this.conns]) this.dropConn(c, null);
    for (const m of [...this.mirrors.byPid.values()]) this.mirrors.exit(m);
    if (srv) await new Promise<void>((r) => srv.close(() => r()));
    try {
      if (this.socketPath) fs.unlinkSync(this.socketPath);
    } catch {
      // gone
    }
    this.bell?.close();
    this.bell = null;
  }

  /** Resolves when no request is running and no frame is waiting. */
  whenIdle(): Promise<void> {
    if (!this.pumping && !this.cur && this.busy.size === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  private accept(s: net.Socket): void {
    const c = new Conn(s);
    if (c.fd < 0) {
      s.destroy();
      return;
    }
    this.conns.add(c);
    this.st.connections++;
    s.on("data", (d: Buffer) => {
      if (c.closed) return;
      c.append(d);
      this.pump();
    });
    const gone = (): void => {
      c.eof = true;
      this.pump();
    };
    s.on("end", gone);
    s.on("close", gone);
    s.on("error", gone);
  }

  // ------------------------------------------------------------------ the pump

  /** Serve every complete frame and every EOF, one frame per connection per round. */
  private pump(): void {
    if (this.pumping || this.cur) return;
    this.pumping = true;
    try {
      let last: Conn | null = null;
      for (let progress = true; progress; ) {
        progress = false;
        for (const c of [...this.conns]) {
          if (c.closed || this.busy.has(c)) continue;
          let f: Frame | null;
          try {
            f = c.nextFrame();
          } catch (e) {
            if (!(e instanceof ProtocolError)) throw e;
            this.protocolError(c, e);
            progress = true;
            continue;
          }
          if (f) {
            this.serveFrame(c, f);
            progress = true;
            last = c;
          } else if (c.eof && !this.eofHandled.has(c)) {
            this.handleEof(c);
            progress = true;
          }
        }
        // A client usually sends its next request at once: wait for it here a little instead of
        // going back to the event loop, whose wake-up costs more than the request itself.
        if (!progress && last) {
          progress = this.linger(last);
          last = null;
        }
      }
    } finally {
      this.pumping = false;
    }
    if (!this.cur && this.busy.size === 0) for (const r of this.idle.splice(0)) r();
  }

  /**
   * Poll the channels for up to LINGER_US after answering on `last`; true when bytes (or an EOF)
   * arrived on one of them. Channels with a doorbell cost one pread per poll together; each one
   * without costs a socket read, so with more than LINGER_MAX_UNBELLED of those we do not linger.
   */
  private linger(last: Conn): boolean {
    if (last.closed || last.role !== "channel") return false;
    const belled: Conn[] = [];
    const plain: Conn[] = [];
    for (const c of this.conns) {
      if (c.role !== "channel" || c.closed || c.eof || this.busy.has(c)) continue;
      if (c.bell) belled.push(c);
      else if (plain.length === LINGER_MAX_UNBELLED) return false;
      else plain.push(c);
    }
    const t0 = performance.now();
    for (let i = 1; ; i++) {
      if (belled.length) {
        this.bell?.poll();
        for (const c of belled) if (c.bell?.rang(true) && c.fill() !== "none") return true;
      }
      for (const c of plain) if (c.fill() !== "none") return true;
      if ((i & 7) === 0 && performance.now() - t0 > LINGER_US / 1000) return false;
    }
  }

  private protocolError(c: Conn, e: Error): void {
    this.st.protocolErrors++;
    this.log(`softiommu: dropping client (connection ${c.id}): ${e.message}`);
    this.dropConn(c, e);
  }

  /** Close a connection from our side and apply what its EOF means. */
  private dropConn(c: Conn, why: Error | null): void {
    if (why) this.st.clientsDropped++;
    c.eof = true;
    if (!this.eofHandled.has(c)) this.handleEof(c);
    c.close();
    this.conns.delete(c);
  }

  private handleEof(c: Conn): void {
    this.eofHandled.add(c);
    const m = this.channelMirror.get(c);
    if (m) {
      this.channelMirror.delete(c);
      this.channelCreds.delete(c);
      if (m.channel === c) {
        m.channel = null;
        if (!isAlive(m.pid)) this.mirrors.exit(m);
      }
    }
    const s = this.fileOfConn.get(c);
    if (s) this.releaseServed(s);
    c.close();
    this.conns.delete(c);
  }

  private serveFrame(c: Conn, f: Frame): void {
    // failing calls throw IommuError: capturing their stacks would cost more than the call
    const stackLimit = Error.stackTraceLimit;
    if (!this.opts.log) Error.stackTraceLimit = 0;
    try {
      this.serveFrameInner(c, f);
    } finally {
      Error.stackTraceLimit = stackLimit;
    }
  }

  private serveFrameInner(c: Conn, f: Frame): void {
    try {
      switch (c.role) {
        case "new":
          return this.serveFirst(c, f);
        case "channel":
          return this.serveRequest(c, f);
        case "file":
          checkFrame(f, FILE_KINDS);
          return this.identify(c, f);
        default:
          return;
      }
    } catch (e) {
      if (e instanceof ProtocolError) return this.protocolError(c, e);
      if (e instanceof ClientGone) return this.dropConn(c, e);
      this.st.internalErrors++;
      this.log(`softiommu: internal error: ${(e as Error).stack ?? String(e)}`);
      this.dropConn(c, e as Error);
    }
  }

  // ------------------------------------------------------------------ first frames

  private serveFirst(c: Conn, f: Frame): void {
    checkFrame(f, FIRST_KINDS);
    const p = f.payload;
    switch (f.kind) {
      case Kind.HELLO:
        return this.hello(c, p);
      case Kind.OPEN:
        return this.open(c, p);
      case Kind.ATTACH: {
        const s = this.tokens.get(p.readBigUInt64LE(0));
        if (!s) throw new ProtocolError("ATTACH for an unknown token");
        this.tokens.delete(s.token as bigint);
        s.token = null;
        if (s.released) {
          c.close();
          this.conns.delete(c);
          return;
        }
        s.conn = c;
        c.role = "file";
        this.fileOfConn.set(c, s);
        if (s.kind !== FileKind.FAULT && s.kind !== FileKind.VEVENTQ) c.trySend(frame(Kind.READY));
        this.refreshReady();
        return;
      }
      case Kind.STATS:
        c.send(resultFrame(0, Buffer.from(JSON.stringify(this.stats()))));
        return;
    }
  }

  private hello(c: Conn, p: Buffer): void {
    const version = p.readUInt32LE(0);
    if (version !== PROTOCOL_VERSION) {
      c.trySend(resultFrame(-71)); // EPROTO
      throw new ProtocolError(`protocol version ${version}, want ${PROTOCOL_VERSION}`);
    }
    const pid = p.readUInt32LE(4);
    const ppid = p.readUInt32LE(8);
    const reason = p.readUInt32LE(12);
    const memlock = p.readBigUInt64LE(32);
    const creds: Creds = withCaps(
      {
        uid: p.readUInt32LE(16),
        capEff: p.readBigUInt64LE(24),
        rlimitMemlock: memlock === U64_MAX || memlock > BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(memlock),
      },
      this.opts.grantCaps ?? [],
    );
    if (pid === 0 || pid > 0x3fffffff) throw new ProtocolError(`bad pid ${pid}`);
    let m = this.mirrors.get(pid);
    if (reason === HelloReason.IMAGE_START || !m) {
      if (m && reason === HelloReason.IMAGE_START) this.mirrors.exit(m);
      const parent = reason === HelloReason.FORK_CHILD ? this.mirrors.get(ppid) : undefined;
      m = parent ? this.forkMirror(parent, pid, creds) : this.mirrors.create(pid, creds);
      this.st.processesSeen++;
    }
    if (m.channel && m.channel !== c) {
      const old = m.channel;
      this.channelMirror.delete(old);
    }
    m.channel = c;
    c.role = "channel";
    this.channelMirror.set(c, m);
    this.channelCreds.set(c, creds);
    if (!c.bell && this.bell && p.readUInt32LE(20) & HelloFlag.BELL) {
      const slot = this.bell.alloc();
      if (slot >= 0) c.bell = new BellSlot(this.bell, slot);
    }
    c.send(resultFrame(0, new Writer(4).u32(c.bell ? c.bell.slot : 0xffffffff).buffer));
  }

  private forkMirror(parent: Mirror, pid: number, creds: Creds): Mirror {
    try {
      return this.mirrors.fork(parent, pid);
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      return this.mirrors.create(pid, creds);
    }
  }

  private open(c: Conn, p: Buffer): void {
    const version = p.readUInt32LE(0);
    if (version !== PROTOCOL_VERSION) {
      c.trySend(resultFrame(-71));
      throw new ProtocolError(`protocol version ${version}`);
    }
    const pid = p.readUInt32LE(4);
    const fd = p.readUInt32LE(8);
    const which = p.readUInt32LE(16);
    const tid = p.readUInt32LE(20);
    if (fd > 0x7fffffff || (which !== OpenPath.IOMMU && which !== OpenPath.VFIO)) throw new ProtocolError("bad OPEN");
    const m = this.mirrors.get(pid);
    if (!m) throw new ProtocolError(`OPEN from pid ${pid} before its HELLO`);
    // iommufd_fops_open's kzalloc of the context: a fault-injection point of the opening thread
    const armed = this.failNth.get(tid) ?? null;
    if (armed && asTask(armed, shouldFail)) {
      this.failNth.delete(tid);
      mapCount(this.st.errnos, "ENOMEM");
      c.send(resultFrame(-Errno.ENOMEM));
      c.close();
      this.conns.delete(c);
      return;
    }
    this.presetFd = fd;
    let ctx: IommufdCtx;
    try {
      ctx = openIommufd(this.host, m.proc, { vfioContainer: which === OpenPath.VFIO, profile: this.profile });
    } finally {
      this.presetFd = null;
    }
    const file = fdTableOf(m.proc).get(fd) as IommufdFile;
    const s = this.serve(FileKind.IOMMUFD, file, ctx, c, null);
    this.contexts.add(ctx);
    this.st.contextsOpened++;
    c.role = "file";
    c.send(resultFrame(0, new Writer(8).u64(s.id).buffer));
    // iommufd has no poll: the default mask (readable and writable) — one READY frame that stays
    c.trySend(frame(Kind.READY));
  }

  private serve(kind: FileKind, file: IommufdFile, ctx: IommufdCtx, conn: Conn | null, token: bigint | null): Served {
    const s: Served = {
      id: this.nextFileId++,
      kind,
      file,
      ctx,
      conn,
      token,
      holdFd: this.hold.install(file),
      released: false,
      signaled: false,
      bornAt: performance.now(),
    };
    this.files.set(s.id, s);
    this.byFile.set(file, s);
    if (conn) this.fileOfConn.set(conn, s);
    if (token !== null) this.tokens.set(token, s);
    if (kind === FileKind.FAULT || kind === FileKind.VEVENTQ) this.faults.add(s);
    return s;
  }

  /** The real file is gone (its socket's EOF, or the model closed the fd it created): release it. */
  private releaseServed(s: Served): void {
    if (s.released) return;
    s.released = true;
    this.files.delete(s.id);
    this.byFile.delete(s.file);
    this.faults.delete(s);
    if (s.token !== null) this.tokens.delete(s.token);
    if (s.conn) this.fileOfConn.delete(s.conn);
    for (const [n, x] of this.nonces) if (x === s) this.nonces.delete(n);
    this.mirrors.forEachSlot((m, fd) => fdTableOf(m.proc).forget(fd), s.file);
    this.hold.forget(s.holdFd);
    for (const ctx of this.contexts) if (ctx.released) this.contexts.delete(ctx);
  }

  private identify(c: Conn, f: Frame): void {
    const s = this.fileOfConn.get(c);
    if (s) this.nonces.set(f.payload.readBigUInt64LE(0), s);
  }

  // ------------------------------------------------------------------ channel requests

  private serveRequest(c: Conn, f: Frame): void {
    checkFrame(f, REQUEST_KINDS);
    let m = this.channelMirror.get(c);
    if (!m) throw new ProtocolError("request on a channel without a process");
    if (m.exited) {
      // the process announced its exit and still talks (late atexit work): a fresh mirror
      m = this.mirrors.create(m.pid, this.channelCreds.get(c) as Creds);
      m.channel = c;
      this.channelMirror.set(c, m);
    }
    this.sweepChildren(m);
    const p = f.payload;
    switch (f.kind) {
      case Kind.IOCTL:
        return this.ioctl(c, m, p);
      case Kind.FAILNTH:
        return this.failNthRequest(c, p);
      case Kind.READ:
      case Kind.WRITE:
        return this.readWrite(c, m, p, f.kind === Kind.WRITE);
      case Kind.RANGE:
        this.range(c, m, p);
        return c.send(resultFrame(0));
      case Kind.FORK: {
        const child = p.readUInt32LE(0);
        if (child === 0 || child > 0x3fffffff) throw new ProtocolError(`bad child pid ${child}`);
        if (!this.mirrors.get(child)) {
          this.forkMirror(m, child, this.channelCreds.get(c) as Creds);
          this.st.processesSeen++;
        }
        return c.send(resultFrame(0));
      }
      case Kind.CLOSED:
        return this.closed(c, m, p);
      case Kind.WHOIS:
        return this.whois(c, m, p);
      case Kind.STATS:
        return c.send(resultFrame(0, Buffer.from(JSON.stringify(this.stats()))));
      case Kind.EXIT: {
        // exit_mm: pinned pages outlive the address space; keep what they hold now
        this.begin(m, c, null, 0n, new Uint8Array(0));
        let saved: [number, Uint8Array][];
        try {
          saved = this.snapshotPinned(m, 0, TASK_SIZE / PAGE_SIZE);
        } finally {
          this.cur = null;
        }
        this.mirrors.exit(m);
        for (const [pfn, bytes] of saved) this.host.phys.writeOwn(pfn * PAGE_SIZE, bytes);
        return c.send(resultFrame(0));
      }
    }
  }

  /** EOFs of the caller's children first: a parent that waited for its child sees it gone. */
  private sweepChildren(m: Mirror): void {
    if (m.children.size === 0) return;
    for (const ch of [...m.children]) {
      const c = ch.channel;
      if (!c) continue;
      while (c.fill() === "data");
      if (c.eof) this.handleEof(c);
    }
  }

  private begin(m: Mirror, c: Conn, ctx: IommufdCtx | null, addr: bigint, cache: Uint8Array): Current {
    const cur: Current = {
      m,
      conn: c,
      ctx,
      cacheAddr: addr <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(addr) : -1,
      cache: new Uint8Array(cache), // a copy (Buffer.prototype.slice would be a view)
      cacheWritten: false,
      canDefer: false,
      deferred: null,
      gone: false,
      learnedAll: false,
    };
    this.cur = cur;
    return cur;
  }

  private ioctl(c: Conn, m: Mirror, p: Buffer): void {
    const fileId = p.readBigUInt64LE(0);
    const arg = p.readBigUInt64LE(8);
    const fd = p.readUInt32LE(16);
    const tid = p.readUInt32LE(20);
    const request = p.readUInt32LE(24);
    const plen = p.readUInt32LE(28);
    if (32 + plen !== p.length) throw new ProtocolError("IOCTL prefetch length mismatch");
    const prefetch = p.subarray(32); // the frame's own bytes (begin() takes a copy to serve reads from)
    const s = this.files.get(fileId);
    const t0 = performance.now();
    this.st.ioctls++;
    const name = ioctlName(request, this.profile);
    mapCount(this.st.ioctlsByName, name);
    let ret: number;
    let cur: Current | null = null;
    if (!s || s.released) ret = -Errno.EBADF;
    else if (s.kind !== FileKind.IOMMUFD) ret = -Errno.ENOTTY;
    else {
      const ctx = s.ctx;
      cur = this.begin(m, c, ctx, arg, prefetch);
      cur.canDefer = true;
      // ctx.as(m.proc, ...) and asTask(thread, ...) by hand: one catch here instead of a
      // try/finally per layer for the error of every failing ioctl to pass through
      const prevCaller = ctx.caller;
      const prevTask = swapTask(this.failNth.get(tid) ?? null);
      ctx.caller = m.proc;
      try {
        ret = dispatchIoctl(ctx, request, arg, { profile: this.profile }).ret;
      } catch (e) {
        if (e instanceof IommuError) ret = -e.errno;
        else {
          this.st.internalErrors++;
          this.log(`softiommu: internal error in ${name}: ${(e as Error).stack ?? String(e)}`);
          ret = -Errno.EIO;
        }
      }
      ctx.caller = prevCaller;
      swapTask(prevTask);
      this.cur = null;
      // a counter that fired reads 0 like an absent one: forget it
      if (this.failNth.get(tid)?.remaining === 0) this.failNth.delete(tid);
      // a failing call creates nothing
      if (ret >= 0) {
        this.countObjects(ctx);
        this.countMapped(request, prefetch);
      }
    }
    if (ret < 0) mapCount(this.st.errnos, errnoName(-ret));
    this.st.pinnedPeakFrames = Math.max(this.st.pinnedPeakFrames, this.host.phys.framesPinned);
    if (this.opts.trace) this.traceIoctl(m, tid, fd, request, arg, prefetch, cur, ret, performance.now() - t0);
    this.refreshReady();
    if (cur?.gone) {
      this.st.abortedRequests++;
      throw new ClientGone("client gone during the request");
    }
    const dw = cur?.deferred;
    c.send(dw ? resultWriteFrame(ret, dw.addr, dw.data) : resultFrame(ret));
  }

  /**
   * FAILNTH {tid, op, value}: /proc/<pid>/task/<tid>/fail-nth. The counter is the thread's
   * (task_struct.fail_nth), kept here so the model's injection points can consume it.
   */
  private failNthRequest(c: Conn, p: Buffer): void {
    const tid = p.readUInt32LE(0);
    const op = p.readUInt32LE(4);
    const value = p.readBigUInt64LE(8);
    if (tid === 0 || tid > 0x3fffffff) throw new ProtocolError(`bad tid ${tid}`);
    if (op === FailNthOp.GET) return c.send(resultFrame(this.failNth.get(tid)?.remaining ?? 0));
    if (op !== FailNthOp.SET) throw new ProtocolError(`bad FAILNTH op ${op}`);
    if (value > 0x7fffffffn) return c.send(resultFrame(-Errno.EINVAL));
    const n = Number(value);
    if (n === 0) this.failNth.delete(tid);
    else {
      let t = this.failNth.get(tid);
      if (!t) {
        t = new FailNth();
        this.failNth.set(tid, t);
      }
      t.set(n);
    }
    c.send(resultFrame(0));
  }

  private countObjects(ctx: IommufdCtx): void {
    for (const o of ctx.objects.values()) {
      if (this.seenObjects.has(o)) continue;
      this.seenObjects.add(o);
      mapCount(this.st.objectsCreated, o.type);
    }
  }

  private countMapped(request: number, prefetch: Uint8Array): void {
    const key = request === 0x3b71 ? "size" : "length";
    const d = request === 0x3b71 ? VFIO_IOCTLS[4] : request === 0x3b85 || request === 0x3b8f || request === 0x3b83 ? ioctlFor(request, this.profile) : null;
    if (!d || !d.struct) return;
    const v = decodePadded(d.struct, prefetch)?.[key];
    if (typeof v === "bigint") this.st.bytesMapped += Number(v);
  }

  private traceIoctl(m: Mirror, tid: number, fd: number, request: number, arg: bigint, prefetch: Uint8Array, cur: Current | null, ret: number, ms: number): void {
    const d = ioctlFor(request, this.profile);
    const v = VFIO_IOCTLS.find((x) => x.request === request);
    const st = d?.struct ?? v?.struct ?? null;
    const rec: TraceRecord = {
      seq: ++this.seq,
      pid: m.pid,
      tid,
      fd,
      ioctl: ioctlName(request, this.profile),
      request: "0x" + request.toString(16),
      arg: "0x" + arg.toString(16),
      ret: ret < 0 ? -1 : ret,
      us: Math.round(ms * 10000) / 10,
    };
    if (v && v.arg === "int") rec.in = { arg: jsonify(arg) };
    else if (st && prefetch.length >= 4) rec.in = jsonify(decodePadded(st, prefetch));
    if (ret < 0) rec.errno = errnoName(-ret);
    if (st && cur?.cacheWritten) rec.out = jsonify(decodePadded(st, cur.cache));
    this.opts.trace?.(rec);
  }

  private readWrite(c: Conn, m: Mirror, p: Buffer, write: boolean): void {
    const fileId = p.readBigUInt64LE(0);
    const buf = p.readBigUInt64LE(8);
    let count = p.readBigUInt64LE(16);
    const posRaw = p.readBigUInt64LE(24);
    const flags = p.readUInt32LE(36);
    const s = this.files.get(fileId);
    let ret: number;
    const cur = this.begin(m, c, s?.ctx ?? null, 0n, new Uint8Array(0));
    try {
      if (!s || s.released) fail("EBADF", "not an open file");
      if (flags & 1) s.signaled = false;
      if (count > BigInt(MAX_RW_COUNT)) count = BigInt(MAX_RW_COUNT);
      const n = Number(count);
      const pos = posRaw === U64_MAX ? 0 : posRaw > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(posRaw);
      if (pos < 0) fail("EINVAL", "bad position");
      if (!write) {
        if (!s.file.read) fail("EINVAL", "the file has no read");
        const data = s.file.read(n, pos);
        if (data.length) m.proc.write(toAddr(buf), data);
        ret = data.length;
      } else {
        if (!s.file.write) fail("EINVAL", "the file has no write");
        if (n > 64 << 20) fail("ENOMEM", "write too large");
        const data = n ? m.proc.read(toAddr(buf), n) : new Uint8Array(0);
        ret = s.file.write(data, pos);
      }
    } catch (e) {
      if (e instanceof IommuError) ret = -e.errno;
      else throw e;
    } finally {
      this.cur = null;
    }
    if (ret < 0) mapCount(this.st.errnos, errnoName(-ret));
    this.refreshReady();
    if (cur.gone) throw new ClientGone("client gone during read/write");
    c.send(resultFrame(ret));
  }

  /** A fault queue that has records gets one READY frame in its socket (POLLIN for poll/select/epoll). */
  private refreshReady(): void {
    for (const s of this.faults) {
      if (s.signaled || !s.conn || s.released) continue;
      let mask = 0;
      try {
        mask = s.file.poll?.() ?? 0;
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
      if (mask & POLLIN && s.conn.trySend(frame(Kind.READY))) s.signaled = true;
    }
  }

  private range(c: Conn, m: Mirror, p: Buffer): void {
    const addr = p.readBigUInt64LE(0);
    const len = p.readBigUInt64LE(8);
    const what = p.readUInt32LE(16);
    const P = BigInt(PAGE_SIZE);
    if (len === 0n || addr % P || addr + len > BigInt(Number.MAX_SAFE_INTEGER)) return;
    const vpn = Number(addr / P);
    const n = Number((len + P - 1n) / P);
    const mm = m.proc.mm;
    if (!mm.alive) return;
    this.begin(m, c, null, 0n, new Uint8Array(0));
    try {
      if (what === RangeWhat.UNMAP_PRE || what === RangeWhat.MAPPED) {
        const saved = what === RangeWhat.UNMAP_PRE ? this.snapshotPinned(m, vpn, n) : [];
        try {
          mm.unmap(vpn, n);
        } catch (e) {
          if (!(e instanceof IommuError)) throw e;
        }
        for (const [pfn, bytes] of saved) this.host.phys.writeOwn(pfn * PAGE_SIZE, bytes);
      } else if (what === RangeWhat.DONTNEED) {
        for (const v of mm.vmas) {
          const s = Math.max(v.start, vpn);
          const e = Math.min(v.end, vpn + n);
          if (s < e && v.shift === 12) mm.zapPtes(s, e - s);
        }
      }
    } finally {
      this.cur = null;
    }
  }

  /** The real contents of pinned frames mapped in [vpn, vpn+n), read before the program unmaps them. */
  private snapshotPinned(m: Mirror, vpn: number, n: number): [number, Uint8Array][] {
    const phys = this.host.phys;
    const runs: [number, number[]][] = []; // [first vpn, pfns of consecutive pages]
    m.proc.mm.ptes.forEach(vpn, n, (s, cnt, base) => {
      for (let i = 0; i < cnt; i++) {
        if (phys.pinCount(base + i) === 0) continue;
        const last = runs.at(-1);
        if (last && last[0] + last[1].length === s + i && last[1].length < MEM_CHUNK / PAGE_SIZE) last[1].push(base + i);
        else runs.push([s + i, [base + i]]);
      }
    });
    const out: [number, Uint8Array][] = [];
    for (const [v, pfns] of runs) {
      let bytes: Uint8Array;
      try {
        bytes = this.userRead(m, v * PAGE_SIZE, pfns.length * PAGE_SIZE);
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
        continue;
      }
      pfns.forEach((pfn, i) => out.push([pfn, bytes.slice(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)]));
    }
    return out;
  }

  private closed(c: Conn, m: Mirror, p: Buffer): void {
    const s = this.files.get(p.readBigUInt64LE(0));
    const fd = p.readUInt32LE(8);
    if (!s) return c.send(resultFrame(0));
    const t = fdTableOf(m.proc);
    if (t.get(fd) === s.file) t.forget(fd);
    const finish = (): void => {
      if (s.conn && !s.released) {
        while (s.conn.fill() === "data");
        // IDENTIFY frames that came with it are harmless; EOF means the last holder closed
        if (s.conn.eof) this.handleEof(s.conn);
      }
      c.send(resultFrame(0));
    };
    if (s.token === null) return finish();
    // its socket is still in the listen backlog: answer once it is accepted (or after a while)
    this.busy.add(c);
    const deadline = performance.now() + 2000;
    const retry = (): void => {
      if (s.token !== null && !s.released && performance.now() < deadline && !c.closed) {
        setTimeout(retry, 1);
        return;
      }
      this.busy.delete(c);
      try {
        if (!c.closed) finish();
      } catch (e) {
        if (!(e instanceof ClientGone)) throw e;
        this.dropConn(c, e);
      }
      this.pump();
    };
    setImmediate(retry);
  }

  private whois(c: Conn, m: Mirror, p: Buffer): void {
    const nonce = p.readBigUInt64LE(0);
    const fd = p.readUInt32LE(8);
    for (const [conn, s] of this.fileOfConn) {
      if (conn.closed) continue;
      while (conn.fill() === "data");
      for (let f = conn.nextFrame(); f; f = conn.nextFrame()) if (f.kind === Kind.IDENTIFY && f.payload.length === 8) this.nonces.set(f.payload.readBigUInt64LE(0), s);
    }
    const s = this.nonces.get(nonce);
    if (!s || s.released) return c.send(resultFrame(-Errno.EBADF));
    this.nonces.delete(nonce);
    if (fd <= 0x7fffffff) fdTableOf(m.proc).installAt(fd, s.file);
    c.send(resultFrame(0, new Writer(16).u64(s.id).u32(s.kind).u32(0).buffer));
  }

  // ------------------------------------------------------------------ mirrors and memory

  private setupMirror(m: Mirror): void {
    m.proc.memory = {
      read: (addr, len) => this.userRead(m, addr, len),
      write: (addr, data, last) => this.userWrite(m, addr, data, last === true),
    };
    m.proc.mm.onMissing = (vpn, n) => this.learnMaps(m, vpn, n);
    fdTableOf(m.proc).numbering = {
      allocate: (file) => this.installFd(m, file),
      closed: (fd, file) => this.modelClosedFd(m, fd, file),
    };
  }

  /** The current request's caller, if it is m and still there. */
  private callerIs(m: Mirror): Current | null {
    const cur = this.cur;
    return cur && cur.m === m && !cur.gone ? cur : null;
  }

  /** Send a frame to the caller's shim and wait for its answer of the expected kind. */
  private ask(cur: Current, out: Buffer, want: Kind): Buffer {
    try {
      cur.conn.send(out, this.timeoutMs);
      const f = cur.conn.waitFrame(this.timeoutMs);
      checkFrame(f, new Set([want]));
      return f.payload;
    } catch (e) {
      if (e instanceof ClientGone || e instanceof ProtocolError) {
        cur.gone = true;
        this.log(`softiommu: client ${cur.m.pid} lost during a request: ${e.message}`);
        fail("EFAULT", "the caller went away");
      }
      throw e;
    }
  }

  userRead(m: Mirror, addr: number, len: number): Uint8Array {
    if (len === 0) return new Uint8Array(0);
    const cur = this.callerIs(m);
    if (!cur) return this.procMemIo(m, addr, len, null);
    if (cur.cacheAddr >= 0 && addr >= cur.cacheAddr && addr + len <= cur.cacheAddr + cur.cache.length)
      return cur.cache.slice(addr - cur.cacheAddr, addr - cur.cacheAddr + len);
    const out = new Uint8Array(len);
    for (let off = 0; off < len; off += MEM_CHUNK) {
      const n = Math.min(MEM_CHUNK, len - off);
      const r = this.ask(cur, frame(Kind.READ_MEM, new Writer(16).u64(BigInt(addr + off)).u32(n).u32(0).buffer), Kind.MEM_DATA);
      const err = r.readInt32LE(0);
      if (err !== 0) {
        if (r.length !== 8) throw this.badAnswer(cur, "MEM_DATA with an error carries data");
        fail("EFAULT", `cannot read user memory at 0x${(addr + off).toString(16)}`);
      }
      if (r.length !== 8 + n) throw this.badAnswer(cur, `MEM_DATA of ${r.length - 8} bytes, asked ${n}`);
      out.set(r.subarray(8), off);
      this.st.memReads++;
      this.st.memReadBytes += n;
    }
    return out;
  }

  userWrite(m: Mirror, addr: number, data: Uint8Array, last = false): void {
    if (data.length === 0) return;
    const cur = this.callerIs(m);
    if (!cur) {
      this.procMemIo(m, addr, data.length, data);
      return;
    }
    if (last && cur.canDefer && cur.deferred === null && data.length <= DEFER_MAX) {
      // the shim makes this store when the RESULT comes (Kind.RESULT_WRITE)
      cur.deferred = { addr, data: new Uint8Array(data) };
      this.st.memWritesDeferred++;
    } else for (let off = 0; off < data.length; off += MEM_CHUNK) {
      const n = Math.min(MEM_CHUNK, data.length - off);
      const r = this.ask(cur, frame(Kind.WRITE_MEM, new Writer(8 + n).u64(BigInt(addr + off)).bytes(data.subarray(off, off + n)).buffer), Kind.MEM_ACK);
      if (r.readInt32LE(0) !== 0) fail("EFAULT", `cannot write user memory at 0x${(addr + off).toString(16)}`);
      this.st.memWrites++;
      this.st.memWriteBytes += n;
    }
    // keep the request's copy of the struct in step (the trace decodes what was written back)
    const cs = cur.cacheAddr;
    if (cs >= 0) {
      const s = Math.max(addr, cs);
      const e = Math.min(addr + data.length, cs + cur.cache.length);
      if (s < e) {
        cur.cache.set(data.subarray(s - addr, e - addr), s - cs);
        cur.cacheWritten = true;
      }
    }
  }

  private badAnswer(cur: Current, what: string): IommuError {
    cur.gone = true;
    this.st.protocolErrors++;
    this.log(`softiommu: client ${cur.m.pid}: ${what}`);
    return new IommuError("EFAULT", "the caller answered out of protocol");
  }

  /** Memory of a process that is not the caller (a device access to its pinned pages): /proc/<pid>/mem. */
  private procMemIo(m: Mirror, addr: number, len: number, data: Uint8Array | null): Uint8Array {
    if (m.memFd === -1) {
      try {
        m.memFd = fs.openSync(`/proc/${m.pid}/mem`, "r+");
      } catch {
        m.memFd = -2;
      }
    }
    if (m.memFd < 0) fail("EFAULT", "the process's memory is not reachable");
    try {
      if (data) {
        if (fs.writeSync(m.memFd, data, 0, len, addr) !== len) fail("EFAULT", "short write");
        return data;
      }
      const out = new Uint8Array(len);
      if (fs.readSync(m.memFd, out, 0, len, addr) !== len) fail("EFAULT", "short read");
      return out;
    } catch (e) {
      if (e instanceof IommuError) throw e;
      fail("EFAULT", "bad address");
    }
  }

  /**
   * Where a frame lives in real processes. A shared page whose object no mirror maps may still be
   * mapped by the caller in a range the mirror never needed: learn the caller's whole layout once
   * per request and look again.
   */
  private locateFrame(pfn: number): { m: Mirror; va: number }[] {
    const cur = this.cur;
    const first = cur && !cur.gone ? cur.m : null;
    const locs = this.mirrors.locate(pfn, first);
    if (locs.length && locs[0].m === first) return locs;
    if (!cur || cur.gone || cur.learnedAll || !this.mirrors.cachedInObject(pfn)) return locs;
    cur.learnedAll = true;
    this.learnMaps(cur.m, MMAP_MIN_ADDR / PAGE_SIZE, (TASK_SIZE - MMAP_MIN_ADDR) / PAGE_SIZE);
    return this.mirrors.locate(pfn, first);
  }

  private frameRead(pfn: number, off: number, len: number): Uint8Array | null {
    for (const loc of this.locateFrame(pfn)) {
      try {
        return this.userRead(loc.m, loc.va + off, len);
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    }
    return null;
  }

  private frameWrite(pfn: number, off: number, data: Uint8Array): boolean {
    for (const loc of this.locateFrame(pfn)) {
      try {
        this.userWrite(loc.m, loc.va + off, data);
        return true;
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    }
    return false;
  }

  /** Mm.onMissing: learn the real mappings of [vpn, vpn+n). */
  private learnMaps(m: Mirror, vpn: number, n: number): void {
    let addr = vpn * PAGE_SIZE;
    const end = (vpn + n) * PAGE_SIZE;
    const cur = this.callerIs(m);
    let text = "";
    if (cur) {
      for (let rounds = 0; addr < end && rounds < 64; rounds++) {
        this.st.mapsQueries++;
        let r: Buffer;
        try {
          r = this.ask(cur, frame(Kind.MAPS, new Writer(16).u64(BigInt(addr)).u64(BigInt(end - addr)).buffer), Kind.MAPS_DATA);
        } catch (e) {
          if (e instanceof IommuError) return;
          throw e;
        }
        const chunk = r.subarray(8).toString("latin1");
        text += chunk;
        if (!(r.readUInt32LE(0) & 1)) break;
        const last = parseMaps(chunk).at(-1);
        if (!last || last.end <= addr) break;
        addr = last.end;
      }
    } else {
      try {
        text = fs.readFileSync(`/proc/${m.pid}/smaps`, "latin1");
      } catch {
        return;
      }
    }
    this.mirrors.learn(m, parseMaps(text), vpn, n);
  }

  /** FdNumbering.allocate: the caller's shim makes the fd (a socket to us) and tells its number. */
  private installFd(m: Mirror, file: IommufdFile): number {
    if (this.presetFd !== null) {
      const n = this.presetFd;
      this.presetFd = null;
      return n;
    }
    const cur = this.callerIs(m);
    if (!cur || !cur.ctx) fail("EMFILE", "no caller to install an fd in");
    // a vEVENTQ is served like a fault queue: records to read, a READY frame while something is queued
    const kind =
      file.kind === "fault" ? FileKind.FAULT : file.kind === "veventq" ? FileKind.VEVENTQ : file.kind === "access" ? FileKind.ACCESS : FileKind.IOMMUFD;
    const token = this.nextToken++;
    const id = this.nextFileId;
    const O_CLOEXEC = 0o2000000;
    const r = this.ask(cur, frame(Kind.INSTALL_FD, new Writer(24).u64(token).u64(id).u32(kind).u32(O_CLOEXEC).buffer), Kind.FD_INSTALLED);
    const fd = r.readInt32LE(0);
    if (fd < 0) {
      const name = errnoName(-fd);
      fail((name in Errno ? name : "EMFILE") as ErrnoName, "the process could not take a new fd");
    }
    const s = this.serve(kind, file, cur.ctx, null, token);
    if (s.id !== id) throw new Error("softiommu bug: file id changed during INSTALL_FD");
    return fd;
  }

  /** FdNumbering.closed: the model closes an fd it just created (a failing ioctl): close it in the process too. */
  private modelClosedFd(m: Mirror, fd: number, file: IommufdFile): void {
    const s = this.byFile.get(file);
    const cur = this.callerIs(m);
    if (cur) {
      try {
        this.ask(cur, frame(Kind.CLOSE_FD, new Writer(8).u32(fd).u32(0).buffer), Kind.CLOSE_ACK);
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
      }
    }
    if (s && !s.released) {
      // the process's only fd for it is gone: drop our hold now (the mirror slot goes next)
      s.released = true;
      this.files.delete(s.id);
      this.byFile.delete(s.file);
      this.faults.delete(s);
      if (s.token !== null) this.tokens.delete(s.token);
      s.token = null;
      if (s.conn) {
        this.fileOfConn.delete(s.conn);
        this.eofHandled.add(s.conn);
        s.conn.close();
        this.conns.delete(s.conn);
      }
      this.hold.forget(s.holdFd);
    }
  }

  private housekeeping(): void {
    if (this.cur || this.pumping) return;
    for (const m of [...this.mirrors.byPid.values()]) if (!m.channel && !isAlive(m.pid)) this.mirrors.exit(m);
    const now = performance.now();
    for (const s of [...this.tokens.values()]) if (now - s.bornAt > 30_000) this.releaseServed(s);
    this.mirrors.gc();
  }

  // ------------------------------------------------------------------ statistics

  stats(): ServerStats {
    const live = new Map<string, number>();
    for (const ctx of this.contexts) {
      if (ctx.released) continue;
      for (const o of ctx.objects.values()) mapCount(live, o.type);
    }
    const obj = (m: Map<string, number>): Record<string, number> => Object.fromEntries([...m].sort());
    const st = this.st;
    return {
      connections: st.connections,
      clientsDropped: st.clientsDropped,
      protocolErrors: st.protocolErrors,
      internalErrors: st.internalErrors,
      abortedRequests: st.abortedRequests,
      processesSeen: st.processesSeen,
      mirrorsLive: this.mirrors.byPid.size,
      contextsOpened: st.contextsOpened,
      contextsLive: [...this.contexts].filter((c) => !c.released).length,
      objectsCreated: obj(st.objectsCreated),
      objectsLive: obj(live),
      ioctls: st.ioctls,
      ioctlsByName: obj(st.ioctlsByName),
      errnos: obj(st.errnos),
      bytesMapped: st.bytesMapped,
      pinnedBytes: this.host.phys.framesPinned * PAGE_SIZE,
      pinnedPeakBytes: st.pinnedPeakFrames * PAGE_SIZE,
      memReads: st.memReads,
      memReadBytes: st.memReadBytes,
      memWrites: st.memWrites,
      memWritesDeferred: st.memWritesDeferred,
      memWriteBytes: st.memWriteBytes,
      mapsQueries: st.mapsQueries,
      filesLive: this.files.size,
      channelsWithBell: [...this.conns].filter((c) => c.bell !== null && !c.closed).length,
    };
  }
}

/** How long the server polls a channel for its next request after answering one (µs). */
const LINGER_US = 100;
const LINGER_MAX_UNBELLED = 4;

const FIRST_KINDS: ReadonlySet<number> = new Set([Kind.HELLO, Kind.OPEN, Kind.ATTACH, Kind.STATS]);
const FILE_KINDS: ReadonlySet<number> = new Set([Kind.IDENTIFY]);
const REQUEST_KINDS: ReadonlySet<number> = new Set([
  Kind.FAILNTH,
  Kind.IOCTL,
  Kind.READ,
  Kind.WRITE,
  Kind.RANGE,
  Kind.FORK,
  Kind.CLOSED,
  Kind.WHOIS,
  Kind.STATS,
  Kind.EXIT,
]);

function toAddr(v: bigint): number {
  if (v === 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) fail("EFAULT", "bad user pointer");
  return Number(v);
}

/** The ioctl's name for statistics and the trace. */
export function ioctlName(request: number, profile: Profile): string {
  const d = ioctlFor(request, profile);
  if (d) return d.name;
  const v = VFIO_IOCTLS.find((x) => x.request === request >>> 0);
  return v ? v.name : "0x" + (request >>> 0).toString(16);
}

function decodePadded(s: StructLayout, bytes: Uint8Array): UObject | null {
  if (bytes.length < 4) return null;
  const b = new Uint8Array(s.size);
  b.set(bytes.subarray(0, Math.min(bytes.length, s.size)));
  try {
    return decode(s, b);
  } catch {
    return null;
  }
}

/** The real process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** $XDG_RUNTIME_DIR/softiommu/sock, else /tmp/softiommu-$UID/sock. */
export function defaultSocketPath(): string {
  const rt = process.env.XDG_RUNTIME_DIR;
  const uid = typeof process.getuid === "function" ? process.getuid() : 0;
  return rt ? path.join(rt, "softiommu", "sock") : path.join("/tmp", `softiommu-${uid}`, "sock");
}
