/**
 * A misbehaving protocol client for fuzz.test.ts, run as a separate process (the server blocks its
 * own event loop while it waits for a client's answer):
 *
 *   node fuzz-client.js --fuzz-client SOCKET SEED CONNECTIONS
 *
 * Each connection plays one scenario with seeded random choices: garbage bytes, impossible
 * lengths, frames of the wrong kind, valid HELLO/OPEN followed by random IOCTL/READ/WRITE/RANGE
 * frames whose memory requests get right, wrong, short or no answers, random ATTACH tokens,
 * abrupt closes. Prints "fuzz-client: N frames sent" at the end. Loaded without --fuzz-client
 * (the test runner loads every file under test/) it does nothing.
 */
import net from "node:net";
import process from "node:process";
import { frame, HEADER, Kind, PROTOCOL_VERSION } from "../../src/server/protocol.js";

let seed = 1;
function rnd(): number {
  // xorshift32
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
const int = (n: number): number => Math.floor(rnd() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
const bytes = (n: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return b;
};

let sent = 0;

class Client {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  constructor(readonly s: net.Socket) {
    s.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (const w of this.waiters.splice(0)) w();
    });
    const gone = (): void => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    };
    s.on("close", gone);
    s.on("error", gone);
  }
  static connect(path: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path, () => resolve(new Client(s)));
      s.once("error", reject);
    });
  }
  send(b: Buffer): void {
    if (this.closed) return;
    sent++;
    this.s.write(b);
  }
  /** The next frame from the server, or null on close / after ms. */
  async next(ms = 300): Promise<{ kind: number; payload: Buffer } | null> {
    const end = Date.now() + ms;
    for (;;) {
      if (this.buf.length >= HEADER) {
        const len = this.buf.readUInt32LE(0);
        if (this.buf.length >= HEADER + len) {
          const kind = this.buf.readUInt32LE(4);
          const payload = this.buf.subarray(HEADER, HEADER + len);
          this.buf = this.buf.subarray(HEADER + len);
          return { kind, payload };
        }
      }
      if (this.closed || Date.now() > end) return null;
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 20);
      });
    }
  }
  end(): void {
    this.closed = true;
    this.s.destroy();
  }
}

const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};
const u64 = (v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt.asUintN(64, v));
  return b;
};

function hello(pid: number, reason = 0): Buffer {
  return frame(Kind.HELLO, Buffer.concat([u32(PROTOCOL_VERSION), u32(pid), u32(process.ppid), u32(reason), u32(0), u32(0), u64(0n), u64((1n << 64n) - 1n)]));
}

/** Answer the server's requests until RESULT (randomly misbehaving) — false when we gave up. */
async function serveUntilResult(c: Client): Promise<bigint | null> {
  for (let i = 0; i < 10000; i++) {
    const f = await c.next();
    if (!f) return null;
    // (a RESULT_WRITE's store is the shim's to make; this client makes none)
    if (f.kind === Kind.RESULT || f.kind === Kind.RESULT_WRITE) return f.payload.length >= 8 ? f.payload.readBigInt64LE(0) : null;
    const mood = int(100);
    if (mood < 2) {
      c.end();
      return null;
    }
    if (mood < 4) {
      c.send(bytes(int(40)));
      continue;
    }
    switch (f.kind) {
      case Kind.READ_MEM: {
        const len = f.payload.readUInt32LE(8);
        if (mood < 8) c.send(frame(Kind.MEM_DATA, Buffer.concat([u32(0), u32(0), bytes(Math.max(0, len - 1))])));
        else if (mood < 30) c.send(frame(Kind.MEM_DATA, Buffer.concat([u32(14), u32(0)])));
        else if (mood < 40) c.send(frame(Kind.MEM_DATA, Buffer.concat([u32(0), u32(0), Buffer.alloc(len)])));
        else c.send(frame(Kind.MEM_DATA, Buffer.concat([u32(0), u32(0), bytes(len)])));
        break;
      }
      case Kind.WRITE_MEM:
        c.send(frame(Kind.MEM_ACK, Buffer.concat([u32(mood < 20 ? 14 : 0), u32(0)])));
        break;
      case Kind.MAPS: {
        const lines = mood < 50 ? "" : `${(0x10000 * (1 + int(100))).toString(16)}-${(0x10000 * (101 + int(100))).toString(16)} rw-${pick(["p", "s"])} 00000000 00:05 ${int(5)} ${pick(["", "/dev/zero (deleted)", "[heap]", "/memfd:x (deleted)"])}\nKernelPageSize: ${pick([4, 2048, 7])} kB\n`;
        c.send(frame(Kind.MAPS_DATA, Buffer.concat([u32(int(3)), u32(0), Buffer.from(lines)])));
        break;
      }
      case Kind.INSTALL_FD:
        c.send(frame(Kind.FD_INSTALLED, Buffer.concat([u32(mood < 30 ? -24 : 3 + int(20)), u32(0)])));
        break;
      case Kind.CLOSE_FD:
        c.send(frame(Kind.CLOSE_ACK, Buffer.concat([u32(0), u32(0)])));
        break;
      default:
        c.send(frame(Kind.MEM_ACK, Buffer.concat([u32(0), u32(0)])));
    }
  }
  return null;
}

function randomRequest(fileId: bigint): Buffer {
  const k = int(10);
  if (k < 6) {
    const req = int(10) < 8 ? 0x3b80 + int(0x22) : pick([0x3b64, 0x3b65, 0x3b66, 0x3b70, 0x3b71, 0x3b72, int(2 ** 32)]);
    const size = pick([0, 4, 8, 12, 16, 24, 32, 40, 48, 64, 88, 120, 200, int(5000)]);
    const pre = bytes(Math.min(int(10) < 8 ? size : int(300), 4096));
    if (pre.length >= 4) pre.writeUInt32LE(size, 0);
    if (req === 0x3ba0 && pre.length >= 8) pre.writeUInt32LE(1 + int(22), 4);
    for (let o = 8; o + 4 <= Math.min(pre.length, 48); o += 4) if (int(3) === 0) pre.writeUInt32LE(int(8), o);
    const arg = pick([0n, 0x1000n, 0x7fff00000000n + BigInt(int(1 << 20)), BigInt(int(2 ** 31)) * 4096n, (1n << 64n) - 1n]);
    return frame(Kind.IOCTL, Buffer.concat([u64(int(4) === 0 ? BigInt(int(100)) : fileId), u64(arg), u32(3), u32(process.pid), u32(req), u32(pre.length), pre]));
  }
  if (k < 7) return frame(pick([Kind.READ, Kind.WRITE]), Buffer.concat([u64(int(3) ? fileId : BigInt(int(50))), u64(BigInt(int(2 ** 31))), u64(BigInt(int(1 << 16))), u64(pick([0n, 5n, (1n << 64n) - 1n])), u32(3), u32(int(2))]));
  if (k < 8) return frame(Kind.RANGE, Buffer.concat([u64(BigInt(int(1 << 20)) * 4096n), u64(BigInt(int(1 << 12)) * 4096n), u32(1 + int(3)), u32(0)]));
  if (k < 9) return frame(pick([Kind.CLOSED, Kind.WHOIS]), Buffer.concat([u64(int(2) ? fileId : BigInt(int(50))), u32(int(10)), u32(0)]));
  return frame(pick([Kind.STATS, Kind.FORK, Kind.HELLO, Kind.OPEN, 99]), bytes(pick([0, 8, 16, 40])));
}

async function scenario(path: string, deadPid: number): Promise<void> {
  const c = await Client.connect(path);
  switch (int(8)) {
    case 0: // garbage
      c.send(bytes(1 + int(64)));
      break;
    case 1: // impossible length
      c.send(Buffer.concat([u32(0x7fffffff), u32(Kind.HELLO)]));
      break;
    case 2: // stray first frames
      c.send(frame(pick([Kind.ATTACH, Kind.IDENTIFY, Kind.STATS, Kind.IOCTL, Kind.MEM_DATA]), bytes(pick([0, 8, 9, 40]))));
      await c.next(100);
      break;
    case 3: // a channel from a process that does not exist, reporting a fork
      c.send(hello(pick([process.pid, deadPid]), int(3)));
      await c.next();
      c.send(frame(Kind.FORK, Buffer.concat([u32(deadPid + 1 + int(10)), u32(0)])));
      await c.next();
      break;
    default: {
      // a real context, then random requests on the channel
      c.send(hello(process.pid, int(3)));
      if ((await c.next())?.kind !== Kind.RESULT) break;
      const f = await Client.connect(path);
      f.send(frame(Kind.OPEN, Buffer.concat([u32(1), u32(process.pid), u32(3 + int(10)), u32(2), u32(int(2)), u32(0)])));
      const r = await f.next();
      const fileId = r && r.kind === Kind.RESULT && r.payload.length >= 16 ? r.payload.readBigUInt64LE(8) : 0n;
      for (let i = 0, n = 1 + int(12); i < n && !c.closed; i++) {
        c.send(randomRequest(fileId));
        if ((await serveUntilResult(c)) === null) break;
        if (int(20) === 0) f.send(frame(Kind.IDENTIFY, bytes(8)));
      }
      if (int(2)) f.end();
      else setTimeout(() => f.end(), int(50));
    }
  }
  if (int(3)) c.end();
  else setTimeout(() => c.end(), int(30));
}

async function main(): Promise<void> {
  const [, , , path, seedArg, nArg] = process.argv;
  seed = (Number(seedArg) >>> 0) || 1;
  const n = Number(nArg) || 50;
  const deadPid = 4194304 + 1000;
  for (let i = 0; i < n; i++) {
    try {
      await scenario(path, deadPid);
    } catch {
      // a refused or reset connection is part of the game
    }
  }
  process.stdout.write(`fuzz-client: ${sent} frames sent\n`);
}

if (process.argv[2] === "--fuzz-client") await main();
