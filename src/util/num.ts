/**
 * x mod p for a non-negative safe integer x and a power of two p (up to 2^52), in SSE arithmetic.
 *
 * V8 compiles `%` on values it cannot prove to be int32 (page numbers and addresses above 2^31
 * are doubles) to the x87 `fprem` loop, which cost more than the rest of a DMA's translation; a
 * division by a power of two is exact, so floor-multiply-subtract gives the same result.
 */
export function modPow2(x: number, p: number): number {
  return x - Math.floor(x / p) * p;
}
