/**
 * Helpers for the uapi tests: a process with an iommufd context and a page of shared memory to hold
 * ioctl structs, raw ioctl calls through dispatchIoctl with the result as "OK"/errno name, and
 * struct bytes built from the table.
 */
import * as S from "../../src/index.js";
import { IommuError, type ErrnoName } from "../../src/errno.js";
import { dispatchIoctl, type Profile } from "../../src/uapi/ioctl.js";
import { encode, structOf, type UObject } from "../../src/uapi/structs.js";

export { S };

export const PAGE = 4096;

export interface Env {
  host: S.Host;
  p: S.Process;
  ctx: S.IommufdCtx;
  /** Start of a 4-page shared anonymous area for structs. */
  mem: number;
  profile: Profile;
}

/** A fresh host, a root process (the selftest runs as root), one /dev/iommu context. */
export function env(profile: Profile = "newest", uid = 0): Env {
  const host = new S.Host();
  const p = host.spawn({ uid });
  const ctx = S.openIommufd(host, p, { profile });
  const mem = p.mmap(4 * PAGE, { shared: true });
  return { host, p, ctx, mem, profile };
}

export type Result = "OK" | ErrnoName;

/** ioctl(fd, request, arg): "OK" or the errno name. */
export function ioctl(e: Env, request: number, arg: bigint | number): Result {
  return call(e, request, arg).res;
}

/** ioctl with the return value. */
export function call(e: Env, request: number, arg: bigint | number): { res: Result; ret: number } {
  try {
    const r = dispatchIoctl(e.ctx, request, BigInt(arg), { profile: e.profile });
    return { res: "OK", ret: r.ret };
  } catch (err) {
    if (err instanceof IommuError) return { res: err.code, ret: -1 };
    throw err;
  }
}

/** The bytes of `struct name` holding obj, with `size` set to sizeof unless obj says otherwise. */
export function bytesOf(name: string, obj: UObject): Uint8Array {
  const s = structOf(name);
  return encode(s, { size: s.size, ...obj });
}

/** Write bytes at addr in the process. */
export function put(e: Env, addr: number, b: Uint8Array): void {
  e.p.write(addr, b);
}

export function get(e: Env, addr: number, len: number): Uint8Array {
  return e.p.read(addr, len);
}

export function u32At(e: Env, addr: number): number {
  const b = e.p.read(addr, 4);
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
}

export function u64At(e: Env, addr: number): bigint {
  const b = e.p.read(addr, 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

/** Put a struct at e.mem and issue the ioctl; returns the result. */
export function run(e: Env, request: number, name: string, obj: UObject, at = e.mem): Result {
  put(e, at, bytesOf(name, obj));
  return ioctl(e, request, at);
}

/**
 * Two adjacent pages: the first read-only (its contents set through a second, writable mapping of
 * the same memfd), the second writable. Returns the read-only page's address and a writer for it.
 */
export function roPage(e: Env): { ro: number; rw: number; fill: (off: number, b: Uint8Array) => void } {
  const f = e.p.memfdCreate("ro-struct");
  f.truncate(PAGE);
  const w = e.p.mmap(PAGE, { file: f, shared: true });
  const base = e.p.mmap(2 * PAGE, { shared: true });
  const ro = e.p.mmap(PAGE, { file: f, shared: true, prot: S.PROT_READ, addr: base, fixed: true });
  return { ro, rw: base + PAGE, fill: (off, b) => e.p.write(w + off, b) };
}

/** IOAS_ALLOC through the dispatcher; the new IOAS ID. */
export function ioasAlloc(e: Env): number {
  const a = e.mem + 3 * PAGE;
  const r = run(e, 0x3b81, "iommu_ioas_alloc", {}, a);
  if (r !== "OK") throw new Error(`IOAS_ALLOC failed: ${r}`);
  return u32At(e, a + 8);
}

/** IOMMU_TEST_OP_MOCK_DOMAIN through the dispatcher: { stdev, hwpt, idev }. */
export function mockDomain(e: Env, ptId: number): { stdev: number; hwpt: number; idev: number } {
  const a = e.mem + 3 * PAGE;
  const r = run(e, 0x3ba0, "iommu_test_cmd", { op: 2, id: ptId }, a);
  if (r !== "OK") throw new Error(`MOCK_DOMAIN failed: ${r}`);
  return { stdev: u32At(e, a + 16), hwpt: u32At(e, a + 20), idev: u32At(e, a + 24) };
}
