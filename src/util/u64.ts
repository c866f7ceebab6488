/** 64-bit constants and helpers for the uAPI boundary (the only place bigint is used). */
export const U64_MAX = (1n << 64n) - 1n;
/** unsigned long on x86-64 / arm64. */
export const ULONG_MAX = U64_MAX;
export const U32_MAX = 0xffffffff;
export const PAGE_SIZE_N = 4096n;

/** Lowest set bit of x (x > 0), as a bigint power of two. */
export function lowestBit(x: bigint): bigint {
  return x & -x;
}

/** Round up to a power of two (x >= 1). */
export function roundupPow2(x: bigint): bigint {
  let p = 1n;
  while (p < x) p <<= 1n;
  return p;
}

/** __ffs for a positive number bitmap (returns the bit index). */
export function ffsNumber(x: number): number {
  if (x <= 0) return -1;
  let i = 0;
  while (x % 2 === 0) {
    x /= 2;
    i++;
  }
  return i;
}

export function isPow2(x: bigint): boolean {
  return x > 0n && (x & (x - 1n)) === 0n;
}
