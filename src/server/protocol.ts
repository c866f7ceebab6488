/**
 * The wire protocol between the preload shim (native/shim.c) and the server: length-prefixed
 * little-endian frames, one header (u32 payload length, u32 kind) and a fixed payload per kind.
 * native/shim.c has the same numbers; docs/design/shim-and-server.md explains the exchanges.
 *
 * Two kinds of connections:
 *  - a process's **channel** (one per process, at a high fd number, O_CLOEXEC): HELLO first, then
 *    requests (IOCTL, READ, WRITE, reports, ...) answered by RESULT. While a request runs the
 *    server may ask the shim for memory (READ_MEM, WRITE_MEM), mappings (MAPS) or a new fd
 *    (INSTALL_FD, CLOSE_FD); the shim, blocked in the call, answers each.
 *  - a **file socket** per emulated open file (the fd the program holds): OPEN or ATTACH first,
 *    later only IDENTIFY frames and EOF. EOF means no process holds the file any more: release.
 *    The server writes READY frames into it so that poll/select/epoll on the fd see POLLIN.
 */

export const PROTOCOL_VERSION = 2;
export const HEADER = 8;
/** Largest memory transfer in one frame; larger reads and writes are split. */
export const MEM_CHUNK = 1 << 20;
/** Largest payload either side accepts. */
export const MAX_PAYLOAD = MEM_CHUNK + 64;

export const enum Kind {
  // channel requests (shim -> server), answered by RESULT
  HELLO = 1,
  IOCTL = 2,
  READ = 3,
  WRITE = 4,
  RANGE = 5,
  FORK = 6,
  CLOSED = 7,
  WHOIS = 8,
  STATS = 9,
  EXIT = 10,
  /** fail-nth of a thread: {u32 tid, u32 op (0 get, 1 set), u64 value} -> RESULT {count}. */
  FAILNTH = 11,
  // first (or passive) frames on file sockets
  OPEN = 16,
  ATTACH = 17,
  IDENTIFY = 18,
  // server -> shim while a request runs
  READ_MEM = 32,
  WRITE_MEM = 33,
  MAPS = 34,
  INSTALL_FD = 35,
  CLOSE_FD = 36,
  // the shim's answers
  MEM_DATA = 48,
  MEM_ACK = 49,
  MAPS_DATA = 50,
  FD_INSTALLED = 51,
  CLOSE_ACK = 52,
  // server -> shim
  RESULT = 64,
  READY = 65,
  /**
   * A RESULT that carries the call's last store into the caller's memory: {i64 ret, u64 addr,
   * bytes}. The shim makes the store, then returns ret, or -EFAULT when the store faults (the
   * kernel's copy_to_user of an ioctl struct after the work: see UserMemory.write's `last`). It
   * saves the WRITE_MEM exchange, which came when the shim had stopped polling for the answer.
   */
  RESULT_WRITE = 66,
}

/** HELLO.reason */
export const enum HelloReason {
  IMAGE_START = 0,
  FORK_CHILD = 1,
  RECONNECT = 2,
}

/** HELLO.flags (u32 at offset 20) */
export const enum HelloFlag {
  /** The shim mapped the bell file (bell.ts) and will ring the slot the RESULT names. */
  BELL = 1,
}

/** RANGE.what */
export const enum RangeWhat {
  /** About to unmap [addr, addr+len) (munmap, mremap's old range, MAP_FIXED over it). */
  UNMAP_PRE = 1,
  /** Mapped [addr, addr+len) (mmap, mremap's new range). */
  MAPPED = 2,
  /** madvise(MADV_DONTNEED / FREE / REMOVE) done. */
  DONTNEED = 3,
}

/** OPEN.path */
export const enum OpenPath {
  IOMMU = 0,
  VFIO = 1,
}

/** The file kinds, as the shim's table records them. */
export const enum FileKind {
  IOMMUFD = 1,
  FAULT = 2,
  ACCESS = 3,
  /** Shim-only (never served): /proc/<pid>/task/<tid>/fail-nth, requests go as FAILNTH frames. */
  FAILNTH = 4,
  /** [newer than 6.12] "[iommufd-viommu-event]": read and poll like a fault queue. */
  VEVENTQ = 5,
}

/** FAILNTH.op */
export const enum FailNthOp {
  GET = 0,
  SET = 1,
}

/** Exact payload sizes of fixed-size frames (variable ones: their minimum). */
export const PAYLOAD: Readonly<Record<number, { min: number; max: number }>> = {
  [Kind.HELLO]: { min: 40, max: 40 },
  [Kind.IOCTL]: { min: 32, max: 32 + 4096 },
  [Kind.READ]: { min: 40, max: 40 },
  [Kind.WRITE]: { min: 40, max: 40 },
  [Kind.RANGE]: { min: 24, max: 24 },
  [Kind.FORK]: { min: 8, max: 8 },
  [Kind.CLOSED]: { min: 16, max: 16 },
  [Kind.WHOIS]: { min: 8, max: 8 },
  [Kind.STATS]: { min: 0, max: 0 },
  [Kind.EXIT]: { min: 0, max: 0 },
  [Kind.FAILNTH]: { min: 16, max: 16 },
  [Kind.OPEN]: { min: 24, max: 24 },
  [Kind.ATTACH]: { min: 8, max: 8 },
  [Kind.IDENTIFY]: { min: 8, max: 8 },
  [Kind.MEM_DATA]: { min: 8, max: 8 + MEM_CHUNK },
  [Kind.MEM_ACK]: { min: 8, max: 8 },
  [Kind.MAPS_DATA]: { min: 8, max: 8 + MEM_CHUNK },
  [Kind.FD_INSTALLED]: { min: 8, max: 8 },
  [Kind.CLOSE_ACK]: { min: 8, max: 8 },
};

export interface Frame {
  kind: number;
  payload: Buffer;
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** Check a frame's size against its kind (a bad frame drops the connection). */
export function checkFrame(f: Frame, allowed: ReadonlySet<number>): void {
  if (!allowed.has(f.kind)) throw new ProtocolError(`unexpected frame kind ${f.kind}`);
  const p = PAYLOAD[f.kind];
  if (!p || f.payload.length < p.min || f.payload.length > p.max)
    throw new ProtocolError(`frame kind ${f.kind}: bad payload length ${f.payload.length}`);
}

/** A frame with its header. */
export function frame(kind: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.allocUnsafe(HEADER + payload.length);
  b.writeUInt32LE(payload.length, 0);
  b.writeUInt32LE(kind, 4);
  b.set(payload, HEADER);
  return b;
}

/** RESULT {i64 ret, extra bytes}. */
export function resultFrame(ret: number | bigint, extra?: Uint8Array): Buffer {
  if (typeof ret === "number" && !extra && Number.isSafeInteger(ret)) {
    // the common answer, built in place (no BigInt, one buffer)
    const b = Buffer.allocUnsafe(HEADER + 8);
    b.writeUInt32LE(8, 0);
    b.writeUInt32LE(Kind.RESULT, 4);
    b.writeUInt32LE(ret >>> 0, 8);
    b.writeInt32LE(Math.floor(ret / 0x100000000), 12);
    return b;
  }
  const p = Buffer.alloc(8 + (extra?.length ?? 0));
  p.writeBigInt64LE(BigInt(ret), 0);
  if (extra) p.set(extra, 8);
  return frame(Kind.RESULT, p);
}

/** A RESULT_WRITE frame: ret, and the store the shim makes before returning it. */
export function resultWriteFrame(ret: number, addr: number, data: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(HEADER + 16 + data.length);
  b.writeUInt32LE(16 + data.length, 0);
  b.writeUInt32LE(Kind.RESULT_WRITE, 4);
  b.writeUInt32LE(ret >>> 0, 8);
  b.writeInt32LE(Math.floor(ret / 0x100000000), 12);
  b.writeUInt32LE(addr >>> 0, 16);
  b.writeUInt32LE(Math.floor(addr / 0x100000000), 20);
  b.set(data, 24);
  return b;
}

/** Little-endian field writer for small payloads. */
export class Writer {
  private readonly b: Buffer;
  private o = 0;
  constructor(size: number) {
    this.b = Buffer.alloc(size);
  }
  u32(v: number): this {
    this.b.writeUInt32LE(v >>> 0, this.o);
    this.o += 4;
    return this;
  }
  u64(v: bigint): this {
    this.b.writeBigUInt64LE(BigInt.asUintN(64, v), this.o);
    this.o += 8;
    return this;
  }
  bytes(v: Uint8Array): this {
    this.b.set(v, this.o);
    this.o += v.length;
    return this;
  }
  get buffer(): Buffer {
    return this.b;
  }
}
