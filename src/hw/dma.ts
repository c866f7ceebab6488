/**
 * DMA through an IOMMU: what a device asks of the hardware and what comes back. Every hardware
 * unit (vtd/unit.ts, smmuv3/unit.ts) implements DmaPort; iommu/device.ts gives each device a port
 * and its requester ID on it.
 *
 * Addresses are bigint here only at the edge: a request's IOVA may be 57 or 64 bits (a number when
 * below 2^53). Inside, units work in page numbers (iova / 4096, exact in a double) and an in-page
 * offset: see {@link iovaPage} and {@link iovaOffset}.
 */
import type { DeviceBuffer } from "../mm/data-memory.js";
import { modPow2 } from "../util/num.js";

/** The kind of a translation failure, common to both architectures (each unit also gives its code). */
export type DmaFaultKind =
  /** No valid translation structure entry for the requester (root/context/PASID entry, STE, CD). */
  | "config"
  /** The requester's translation is blocked or aborted (translation disabled for it). */
  | "blocked"
  /** A page-table walk found no valid entry. */
  | "translation"
  /** The entry found does not allow the access. */
  | "permission"
  /** The address is beyond the input range the table can translate. */
  | "address-size"
  /** Arm: access flag clear and the hardware does not set it. */
  | "access-flag";

export interface DmaFault {
  kind: DmaFaultKind;
  /** 1, or 2 when stage 2 failed (also for a stage-2 failure while walking stage-1 tables). */
  stage: 1 | 2;
  /** The architecture's code: a VT-d fault reason (hw/vtd/regs.ts) or an SMMUv3 event id (hw/smmuv3/events.ts). */
  code: number;
  sid: number;
  /** -1: the request had no PASID. */
  pasid: number;
  /** The input address that failed (page aligned when the hardware reports pages). */
  iova: bigint;
  /** Stage-2 faults: the guest-physical address stage 2 was asked for, else -1n. */
  ipa: bigint;
  write: boolean;
  /** Whether the fault went to the software as a recoverable page request / stall (PRI, stall). */
  recoverable: boolean;
}

export interface DmaRequest {
  /** Requester ID on the unit: VT-d source-id (bus << 8 | devfn), SMMUv3 StreamID. */
  sid: number;
  /** PASID / SubstreamID; -1 for a request without one. */
  pasid: number;
  /**
   * The input address. A number (a safe integer, below 2^53) keeps BigInt off the DMA path; a
   * bigint reaches all 64 bits.
   */
  iova: bigint | number;
  /** Bytes to move; the request may cross pages (each page is translated). */
  length: number;
  write: boolean;
  /** Writes: the bytes to write (length of them). Reads: where the bytes read go (length of room). */
  data: Uint8Array;
  /** Privileged (supervisor) request, where the format distinguishes it. */
  priv?: boolean;
  /** Instruction fetch, where the format distinguishes it. */
  exec?: boolean;
  /**
   * Called when a request that went "pending" (a recoverable fault sent to software) finishes: after
   * a successful response it is retried from the page that faulted.
   */
  onComplete?: (r: DmaResult) => void;
}

export type DmaStatus =
  /** All bytes moved. */
  | "done"
  /** Stopped at a fault that was reported as unrecoverable (fault record / event). */
  | "faulted"
  /** Stopped at a recoverable fault: a page request / stall is outstanding; onComplete tells the end. */
  | "pending";

/** What a DMA request came to. Results are never changed once returned (they may be shared). */
export interface DmaResult {
  readonly status: DmaStatus;
  /** Bytes moved before the stop (all of them when done). */
  readonly bytes: number;
  readonly fault: DmaFault | null;
}

/** The longest request a unit's one-page short path serves, so the most results DONE caches. */
const DONE_MAX = 4096;

/**
 * Done results by length (0..4096), made on first use and frozen: a unit's short path returns the
 * shared one instead of a new object per DMA (allocating it cost ~30 ns of a 4 KiB DMA's ~155
 * here, the object outliving the call through the fallback paths' results). Made full length with
 * every entry present: an array given only its element 4096 is a dictionary (V8 keeps far-apart
 * elements in a hash table), whose lookup cost ~13 ns of that DMA.
 */
export const DONE: (DmaResult | undefined)[] = new Array<DmaResult | undefined>(DONE_MAX + 1).fill(undefined);

/** The shared result of a DMA that moved all its `len` bytes (len: a non-negative integer). */
export function doneResult(len: number): DmaResult {
  if (len > DONE_MAX) return { status: "done", bytes: len, fault: null };
  let r = DONE[len];
  if (r === undefined) DONE[len] = r = Object.freeze({ status: "done", bytes: len, fault: null });
  return r;
}

/** The face of an IOMMU hardware unit towards devices. */
export interface DmaPort {
  dma(req: DmaRequest): DmaResult;
  /**
   * The hot path of one translation, numbers only: the output page for input page vpn, or -1 on a
   * fault (nothing is recorded or reported: a probe, as an ATS translation request would be).
   */
  translatePage(sid: number, pasid: number, vpn: number, write: boolean): number;
  /**
   * A user-level DMA of `len` bytes at `iova` (a number) between a device model's own buffer
   * (PhysMem.dmaBuffer: bytes [0, len) of it) and memory: the result dma() gives for
   * `bufferedRequest(sid, pasid, iova, len, write, buf)`, and the same effects. A device model's hot
   * loop calls this: no request object, and for a buffer in the data memory the unit may do the
   * common case (an IOTLB hit within one page) as one copy inside that memory.
   */
  dmaBuffered(sid: number, pasid: number, iova: number, len: number, write: boolean, buf: DeviceBuffer): DmaResult;
}

/** The request DmaPort.dmaBuffered stands for. */
export function bufferedRequest(sid: number, pasid: number, iova: number, len: number, write: boolean, buf: DeviceBuffer): DmaRequest {
  return { sid, pasid, iova, length: len, write, data: len === buf.bytes.length ? buf.bytes : buf.bytes.subarray(0, len) };
}

/** The 4 KiB page number of a request's IOVA (exact: at most 2^52). */
export function iovaPage(iova: bigint | number): number {
  return typeof iova === "number" ? Math.floor(iova / 4096) : Number(BigInt.asUintN(64, iova) >> 12n);
}

/** The offset of a request's IOVA in its 4 KiB page. */
export function iovaOffset(iova: bigint | number): number {
  return typeof iova === "number" ? modPow2(iova, 4096) : Number(iova & 0xfffn);
}

/** Whether a request's [iova, iova + length) is a valid 64-bit input range. */
export function iovaRangeOk(iova: bigint | number, length: number): boolean {
  if (typeof iova === "number") return Number.isSafeInteger(iova) && iova >= 0;
  return iova >= 0n && iova + BigInt(length) <= 1n << 64n;
}
