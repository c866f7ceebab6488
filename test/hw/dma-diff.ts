/**
 * Shared by the units' short-path tests (vtd-unit-dma-fast, smmuv3-unit-dma-fast): random DMA
 * requests around a few mapped pages, and one request run against a port with a number IOVA (the
 * short path where it applies) or a bigint one (never the short path).
 */
import fc from "fast-check";
import type { DmaPort, DmaResult } from "../../src/hw/dma.js";

export const PAGE = 4096;

export interface DmaReq {
  page: number;
  off: number;
  len: number;
  write: boolean;
  priv: boolean;
  sid: number;
  pasid: number;
  fill: number;
}

/** Requests at pages [first, last], up to two pages long, from the given streams and PASIDs. */
export function dmaReqs(first: number, last: number, sids: number[], pasids: number[]): fc.Arbitrary<DmaReq> {
  return fc.record({
    page: fc.integer({ min: first, max: last }),
    off: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: PAGE - 1 })),
    len: fc.oneof(fc.constant(PAGE), fc.integer({ min: 0, max: 2 * PAGE })),
    write: fc.boolean(),
    priv: fc.boolean(),
    sid: fc.constantFrom(...sids),
    pasid: fc.constantFrom(...pasids),
    fill: fc.integer({ min: 1, max: 255 }),
  });
}

/** One request through port: what it returned and the buffer, or the error it threw. */
export function runDmaReq(port: DmaPort, r: DmaReq, asBigint: boolean): { res: DmaResult; data: Uint8Array } | { error: string } {
  const iova = r.page * PAGE + r.off;
  const data = r.write ? new Uint8Array(r.len).fill(r.fill) : new Uint8Array(r.len);
  try {
    const res = port.dma({ sid: r.sid, pasid: r.pasid, iova: asBigint ? BigInt(iova) : iova, length: r.len, write: r.write, data, priv: r.priv || undefined });
    return { res, data };
  } catch (e) {
    return { error: (e as Error).message };
  }
}
