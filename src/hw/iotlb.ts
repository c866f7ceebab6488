/**
 * An IOTLB: cached translations of an IOMMU, looked up by the hardware before it walks.
 *
 * An entry caches one leaf: the input pages [vpn, vpn + 2^sizeLog2) (sizeLog2 in 4 KiB pages: 0,
 * 9, 18 for 4 KiB / 2 MiB / 1 GiB) → output pages from ppn, with the access permissions (ACC_*)
 * the walk granted. It is found by its key (k1, k2, vpn, size) — what the unit chooses: VT-d keys
 * by (source-id, PASID) like QEMU's vtd_iotlb_key, SMMUv3 by (ASID, VMID) — and carries two tags
 * (e.g. the domain ID) that only invalidation looks at.
 *
 * Storage is an open-addressing hash table (linear probing, backward-shift deletion) in typed
 * arrays: no object per entry, nothing allocated on lookup or insert. A lookup probes once per page
 * size present in the cache, smallest first.
 *
 * Replacement when `capacity` entries are held and a new one comes:
 * - "reset" (default, QEMU's VT-d and SMMUv3 models): drop every entry, then insert;
 * - "fifo": evict the oldest entry still cached.
 */
import { assert } from "../errno.js";
import { modPow2 } from "../util/num.js";

export type IotlbPolicy = "reset" | "fifo";

export interface IotlbOptions {
  /** Most entries held (default 1024: QEMU's VTD_IOTLB_MAX_SIZE). */
  capacity?: number;
  policy?: IotlbPolicy;
  /**
   * Where the arrays a lookup reads live: `iotlbPlacementBytes(capacity)` bytes of `buffer` at
   * byte `at` (8-aligned, zeroed), so that code outside JavaScript can look up there too (see
   * `placed`). By default the IOTLB has arrays of its own.
   */
  place?: { buffer: ArrayBuffer; at: number };
}

/**
 * Byte offsets of a placed IOTLB's lookup arrays in the buffer (IotlbOptions.place), for code
 * that looks up there: entry j's used flag at used + j (u8), k1 at k1 + 4j (i32), k2 at k2 + 4j,
 * vpn at vpn + 8j (f64), size class at size + j (u8), ppn at ppn + 8j (f64), perms at perms + j
 * (u8); hits (f64) counts the lookups made there that hit (the IOTLB's stats add them). hint
 * (i32 per entry) is that code's own: the IOTLB neither reads nor keeps it (a hint must be
 * checked before use: an entry's slot may hold another translation since).
 */
export interface IotlbPlacement {
  readonly slotMask: number;
  readonly used: number;
  readonly k1: number;
  readonly k2: number;
  readonly vpn: number;
  readonly size: number;
  readonly ppn: number;
  readonly perms: number;
  readonly hits: number;
  readonly hint: number;
}

/** Slots of an IOTLB of `capacity` entries (a power of two, at least twice the capacity). */
function slotsFor(capacity: number): number {
  let slots = 16;
  while (slots < capacity * 2) slots *= 2;
  return slots;
}

function placementAt(at: number, slots: number): IotlbPlacement {
  // 8-byte arrays first, then the 4-byte ones, then bytes: every array aligned
  const vpn = at + 8;
  const ppn = vpn + 8 * slots;
  const k1 = ppn + 8 * slots;
  const k2 = k1 + 4 * slots;
  const hint = k2 + 4 * slots;
  const used = hint + 4 * slots;
  const size = used + slots;
  const perms = size + slots;
  return { slotMask: slots - 1, hits: at, vpn, ppn, k1, k2, hint, used, size, perms };
}

/** Bytes IotlbOptions.place must offer for an IOTLB of `capacity` entries. */
export function iotlbPlacementBytes(capacity: number): number {
  const slots = slotsFor(capacity);
  return 8 + slots * (8 + 8 + 4 + 4 + 4 + 1 + 1 + 1);
}

/** What an invalidation matches; an absent field matches everything. */
export interface IotlbFilter {
  k1?: number;
  k2?: number;
  tagA?: number;
  tagB?: number;
  /** Entries overlapping [vpn, vpn + npages) (both or neither). */
  vpn?: number;
  npages?: number;
}

export interface IotlbStats {
  hits: number;
  misses: number;
  inserts: number;
  evictions: number;
  resets: number;
  invalidated: number;
}

const TWO32 = 4294967296;
const imul = Math.imul;
/** Page-size classes an entry can have: sizeLog2 0..MAX_SIZE_LOG2. */
const MAX_SIZE_LOG2 = 36;

export class Iotlb {
  readonly capacity: number;
  readonly policy: IotlbPolicy;
  /** Slot index of the last hit / insert (read ppn / perms / size through the accessors). */
  private slotMask: number;
  private readonly used: Uint8Array;
  private readonly k1: Int32Array;
  private readonly k2: Int32Array;
  private readonly vpn: Float64Array;
  private readonly sizeLog2: Uint8Array;
  private readonly ppn: Float64Array;
  private readonly permsA: Uint8Array;
  private readonly tagA: Int32Array;
  private readonly tagB: Int32Array;
  /** Insertion serial per slot (fifo) and the ring of (serial, slot) in insertion order. */
  private readonly serial: Float64Array;
  private readonly ringSlot: Int32Array;
  private readonly ringSerial: Float64Array;
  /** Where each slot's live record is in the ring (fifo). */
  private readonly ringPos: Int32Array;
  private ringHead = 0;
  private ringLen = 0;
  private nextSerial = 1;
  /** Entries per page-size class, and the classes present (sorted ascending). */
  private readonly perSize = new Int32Array(MAX_SIZE_LOG2 + 1);
  private sizes: number[] = [];
  private n = 0;
  /** Result of the last lookup: slot, or -1. */
  hit = -1;
  /** Where the lookup arrays are when placed in a shared buffer (IotlbOptions.place), else null. */
  readonly placed: IotlbPlacement | null;
  /** The placement's hit counter (lookups made outside JavaScript). */
  private readonly hitsCell: Float64Array | null;
  /** Counts since creation (plain fields: lookup stays small enough to inline). */
  private hits = 0;
  private misses = 0;
  private inserts = 0;
  private evictions = 0;
  private resets = 0;
  private invalidated = 0;

  constructor(opts: IotlbOptions = {}) {
    const capacity = opts.capacity ?? 1024;
    assert(Number.isInteger(capacity) && capacity >= 1 && capacity <= 1 << 22, "IOTLB capacity 1..4M");
    this.capacity = capacity;
    this.policy = opts.policy ?? "reset";
    const slots = slotsFor(capacity);
    this.slotMask = slots - 1;
    const place = opts.place;
    if (place !== undefined) {
      assert(place.at % 8 === 0 && place.at + iotlbPlacementBytes(capacity) <= place.buffer.byteLength, "IOTLB placement inside its buffer, 8-aligned");
      const p = (this.placed = placementAt(place.at, slots));
      const b = place.buffer;
      this.hitsCell = new Float64Array(b, p.hits, 1);
      this.vpn = new Float64Array(b, p.vpn, slots);
      this.ppn = new Float64Array(b, p.ppn, slots);
      this.k1 = new Int32Array(b, p.k1, slots);
      this.k2 = new Int32Array(b, p.k2, slots);
      this.used = new Uint8Array(b, p.used, slots);
      this.sizeLog2 = new Uint8Array(b, p.size, slots);
      this.permsA = new Uint8Array(b, p.perms, slots);
    } else {
      this.placed = null;
      this.hitsCell = null;
      this.used = new Uint8Array(slots);
      this.k1 = new Int32Array(slots);
      this.k2 = new Int32Array(slots);
      this.vpn = new Float64Array(slots);
      this.sizeLog2 = new Uint8Array(slots);
      this.ppn = new Float64Array(slots);
      this.permsA = new Uint8Array(slots);
    }
    this.tagA = new Int32Array(slots);
    this.tagB = new Int32Array(slots);
    this.serial = new Float64Array(slots);
    this.ringSlot = new Int32Array(this.policy === "fifo" ? capacity * 2 : 0);
    this.ringSerial = new Float64Array(this.policy === "fifo" ? capacity * 2 : 0);
    this.ringPos = new Int32Array(this.policy === "fifo" ? slots : 0);
  }

  /** Entries held. */
  get size(): number {
    return this.n;
  }

  /** The home slot of key (k1, k2, vpn, size class s): a multiplicative hash of all four, small enough to inline. */
  private slotOf(k1: number, k2: number, vpn: number, s: number): number {
    let h = (vpn >>> 0) ^ imul(((vpn / TWO32) >>> 0) ^ k2, 0x27d4eb2d) ^ imul(k1 ^ (s << 24), 0x85ebca6b);
    h = imul(h ^ (h >>> 15), 0x2c1b3c6d);
    return (h ^ (h >>> 13)) & this.slotMask;
  }

  /**
   * Find the entry covering input page vpn for key (k1, k2): returns the output page for vpn, or -1.
   * After a hit, `hit` is its slot and perms() / entryPages() describe it.
   */
  lookup(k1: number, k2: number, vpn: number): number {
    const sizes = this.sizes;
    for (let i = 0; i < sizes.length; i++) {
      const s = sizes[i];
      const base = s === 0 ? vpn : vpn - modPow2(vpn, 2 ** s);
      const used = this.used;
      for (let j = this.slotOf(k1, k2, base, s); used[j] !== 0; j = (j + 1) & this.slotMask) {
        if (this.vpn[j] === base && this.k1[j] === k1 && this.k2[j] === k2 && this.sizeLog2[j] === s) {
          this.hit = j;
          this.hits++;
          return this.ppn[j] + (vpn - base);
        }
      }
    }
    this.hit = -1;
    this.misses++;
    return -1;
  }

  /** Hits of lookups made outside JavaScript on the placed arrays (counted in `stats` too). */
  get placedHits(): number {
    return this.hitsCell === null ? 0 : this.hitsCell[0];
  }

  /** Counts since creation. */
  get stats(): IotlbStats {
    return { hits: this.hits + (this.hitsCell === null ? 0 : this.hitsCell[0]), misses: this.misses, inserts: this.inserts, evictions: this.evictions, resets: this.resets, invalidated: this.invalidated };
  }

  /** ACC_* permissions of the entry in `slot` (default: the last hit). */
  perms(slot = this.hit): number {
    return this.permsA[slot];
  }

  /** Size in 4 KiB pages of the entry in `slot` (default: the last hit). */
  entryPages(slot = this.hit): number {
    return 2 ** this.sizeLog2[slot];
  }

  /** Tags of the entry in `slot`. */
  tags(slot = this.hit): [number, number] {
    return [this.tagA[slot], this.tagB[slot]];
  }

  /**
   * Cache a translation: input pages [vpn, vpn + 2^sizeLog2) (vpn aligned to that) → ppn.., with
   * permissions and tags. Replaces an entry with the same key. Returns the slot.
   */
  insert(k1: number, k2: number, vpn: number, sizeLog2: number, ppn: number, perms: number, tagA: number, tagB: number): number {
    assert(sizeLog2 >= 0 && sizeLog2 <= MAX_SIZE_LOG2 && modPow2(vpn, 2 ** sizeLog2) === 0, "IOTLB entry aligned to its size");
    let j = this.find(k1, k2, vpn, sizeLog2);
    if (j < 0) {
      if (this.n >= this.capacity) {
        if (this.policy === "reset") {
          this.clearAll();
          this.resets++;
        } else this.evictOldest();
      }
      j = this.slotOf(k1, k2, vpn, sizeLog2);
      while (this.used[j] !== 0) j = (j + 1) & this.slotMask;
      this.used[j] = 1;
      this.k1[j] = k1;
      this.k2[j] = k2;
      this.vpn[j] = vpn;
      this.sizeLog2[j] = sizeLog2;
      this.n++;
      if (this.perSize[sizeLog2]++ === 0) this.sizes = this.classes();
    }
    this.ppn[j] = ppn;
    this.permsA[j] = perms;
    this.tagA[j] = tagA;
    this.tagB[j] = tagB;
    if (this.policy === "fifo") this.pushRing(j);
    this.inserts++;
    return j;
  }

  private find(k1: number, k2: number, vpn: number, s: number): number {
    let j = this.slotOf(k1, k2, vpn, s);
    while (this.used[j] !== 0) {
      if (this.vpn[j] === vpn && this.k1[j] === k1 && this.k2[j] === k2 && this.sizeLog2[j] === s) return j;
      j = (j + 1) & this.slotMask;
    }
    return -1;
  }

  private classes(): number[] {
    const out: number[] = [];
    for (let s = 0; s <= MAX_SIZE_LOG2; s++) if (this.perSize[s] > 0) out.push(s);
    return out;
  }

  private pushRing(slot: number): void {
    const cap = this.ringSlot.length;
    if (this.ringLen === cap) this.compactRing();
    const at = (this.ringHead + this.ringLen) % cap;
    const ser = this.nextSerial++;
    this.serial[slot] = ser;
    this.ringPos[slot] = at;
    this.ringSlot[at] = slot;
    this.ringSerial[at] = ser;
    this.ringLen++;
  }

  /** Drop ring records whose slot was since removed or re-inserted. */
  private compactRing(): void {
    const cap = this.ringSlot.length;
    const keepS: number[] = [];
    const keepR: number[] = [];
    for (let i = 0; i < this.ringLen; i++) {
      const at = (this.ringHead + i) % cap;
      const s = this.ringSlot[at];
      if (this.used[s] !== 0 && this.serial[s] === this.ringSerial[at]) {
        keepS.push(s);
        keepR.push(this.ringSerial[at]);
      }
    }
    this.ringHead = 0;
    this.ringLen = keepS.length;
    for (let i = 0; i < keepS.length; i++) {
      this.ringSlot[i] = keepS[i];
      this.ringSerial[i] = keepR[i];
      this.ringPos[keepS[i]] = i;
    }
  }

  private evictOldest(): void {
    const cap = this.ringSlot.length;
    while (this.ringLen > 0) {
      const at = this.ringHead;
      this.ringHead = (this.ringHead + 1) % cap;
      this.ringLen--;
      const s = this.ringSlot[at];
      if (this.used[s] !== 0 && this.serial[s] === this.ringSerial[at]) {
        this.removeSlot(s);
        this.evictions++;
        return;
      }
    }
    assert(false, "fifo ring lost an entry");
  }

  /** Remove the entry in slot j, shifting later probe-chain entries back (no tombstones). */
  private removeSlot(j: number): void {
    const s = this.sizeLog2[j];
    if (--this.perSize[s] === 0) this.sizes = this.classes();
    this.n--;
    this.used[j] = 0;
    this.serial[j] = 0;
    const mask = this.slotMask;
    let hole = j;
    for (let k = (j + 1) & mask; this.used[k] !== 0; k = (k + 1) & mask) {
      const home = this.slotOf(this.k1[k], this.k2[k], this.vpn[k], this.sizeLog2[k]);
      // k may move to the hole when its home is not in (hole, k] (cyclically)
      const between = hole <= k ? home > hole && home <= k : home > hole || home <= k;
      if (between) continue;
      this.moveSlot(k, hole);
      hole = k;
    }
  }

  private moveSlot(from: number, to: number): void {
    this.used[to] = 1;
    this.k1[to] = this.k1[from];
    this.k2[to] = this.k2[from];
    this.vpn[to] = this.vpn[from];
    this.sizeLog2[to] = this.sizeLog2[from];
    this.ppn[to] = this.ppn[from];
    this.permsA[to] = this.permsA[from];
    this.tagA[to] = this.tagA[from];
    this.tagB[to] = this.tagB[from];
    this.serial[to] = this.serial[from];
    if (this.policy === "fifo") {
      // the ring names slots: re-point the moved entry's record
      const at = this.ringPos[from];
      this.ringPos[to] = at;
      this.ringSlot[at] = to;
    }
    this.used[from] = 0;
    this.serial[from] = 0;
  }

  /** Drop everything. */
  clearAll(): void {
    this.invalidated += this.n;
    this.used.fill(0);
    this.serial.fill(0);
    this.perSize.fill(0);
    this.sizes = [];
    this.n = 0;
    this.ringHead = 0;
    this.ringLen = 0;
  }

  /** Drop every entry the filter matches; returns how many. */
  invalidate(f: IotlbFilter): number {
    if (f.k1 === undefined && f.k2 === undefined && f.tagA === undefined && f.tagB === undefined && f.vpn === undefined) {
      const had = this.n;
      this.clearAll();
      return had;
    }
    assert((f.vpn === undefined) === (f.npages === undefined), "an IOTLB range needs vpn and npages");
    const lo = f.vpn ?? 0;
    const hi = f.vpn === undefined ? Infinity : lo + (f.npages as number);
    let dropped = 0;
    for (let j = 0; j <= this.slotMask; ) {
      if (
        this.used[j] !== 0 &&
        (f.k1 === undefined || this.k1[j] === f.k1) &&
        (f.k2 === undefined || this.k2[j] === f.k2) &&
        (f.tagA === undefined || this.tagA[j] === f.tagA) &&
        (f.tagB === undefined || this.tagB[j] === f.tagB) &&
        this.vpn[j] < hi &&
        this.vpn[j] + 2 ** this.sizeLog2[j] > lo
      ) {
        this.removeSlot(j);
        dropped++;
        // an entry shifted into j must be looked at too
        continue;
      }
      j++;
    }
    this.invalidated += dropped;
    return dropped;
  }

  /** Every entry, for reports and tests (not a hot path). */
  entries(): { k1: number; k2: number; vpn: number; pages: number; ppn: number; perms: number; tagA: number; tagB: number }[] {
    const out = [];
    for (let j = 0; j <= this.slotMask; j++)
      if (this.used[j] !== 0)
        out.push({ k1: this.k1[j], k2: this.k2[j], vpn: this.vpn[j], pages: 2 ** this.sizeLog2[j], ppn: this.ppn[j], perms: this.permsA[j], tagA: this.tagA[j], tagB: this.tagB[j] });
    return out;
  }
}
