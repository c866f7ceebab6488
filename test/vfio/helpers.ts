/** Shared helpers for the VFIO tests: errno capture and the type1 structs in simulated user memory. */
import { IommuError, type ErrnoName } from "../../src/errno.js";
import type { Process } from "../../src/mm/index.js";

/** Run fn; the errno name it failed with, or "OK". Anything but an IommuError is rethrown. */
export function errnoOf(fn: () => unknown): ErrnoName | "OK" {
  try {
    fn();
    return "OK";
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
}

/** An assert.throws matcher: an IommuError with this errno. */
export function isErrno(code: ErrnoName): (e: unknown) => boolean {
  return (e) => {
    if (!(e instanceof IommuError)) throw e;
    if (e.code !== code) throw new Error(`expected ${code}, got ${e.message}`);
    return true;
  };
}

/** Bytes as lowercase hex (as the oracle probes print them). */
export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

/** A page of the caller's memory holding one ioctl argument struct, read and written as the kernel does. */
export class UserArg {
  readonly addr: number;
  constructor(readonly p: Process, readonly size = 4096) {
    this.addr = p.mmap(size, { shared: true });
  }
  get ptr(): bigint {
    return BigInt(this.addr);
  }
  fill(byte: number): void {
    this.p.write(this.addr, new Uint8Array(this.size).fill(byte));
  }
  bytes(len = this.size): Uint8Array {
    return this.p.read(this.addr, len);
  }
  u32(off: number): number {
    const b = this.p.read(this.addr + off, 4);
    return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
  }
  u16(off: number): number {
    const b = this.p.read(this.addr + off, 2);
    return new DataView(b.buffer, b.byteOffset, 2).getUint16(0, true);
  }
  u64(off: number): bigint {
    const b = this.p.read(this.addr + off, 8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }
  setU32(off: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.p.write(this.addr + off, b);
  }
  setU64(off: number, v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
    this.p.write(this.addr + off, b);
  }
  /** struct vfio_iommu_type1_dma_map */
  dmaMap(m: { argsz?: number; flags: number; vaddr: bigint | number; iova: bigint; size: bigint }): bigint {
    this.setU32(0, m.argsz ?? 32);
    this.setU32(4, m.flags);
    this.setU64(8, BigInt(m.vaddr));
    this.setU64(16, m.iova);
    this.setU64(24, m.size);
    return this.ptr;
  }
  /** struct vfio_iommu_type1_dma_unmap */
  dmaUnmap(u: { argsz?: number; flags?: number; iova: bigint; size: bigint }): bigint {
    this.setU32(0, u.argsz ?? 24);
    this.setU32(4, u.flags ?? 0);
    this.setU64(8, u.iova);
    this.setU64(16, u.size);
    return this.ptr;
  }
}
