/**
 * Bit-exact layouts of little-endian hardware structures (table entries, queue descriptors,
 * registers) described by one table per structure, from which come:
 *
 *  - codecs between bytes and plain typed objects (`decode`, `encode`), for tests, reports and
 *    the uAPI boundary;
 *  - field accessors over a `Uint32Array` view of simulated memory (`acc.<field>.get/set`), for
 *    hot paths: no allocation, no bigint;
 *  - the reserved-bit mask (every bit no field or fixed value claims), for "reserved bits must
 *    be zero" checks.
 *
 * Field values: a field of up to 53 bits is a `number`. An address-like field keeps its bits in
 * place within its 64-bit word (`addr(51, 6)` decodes to the byte address, low 6 bits zero), so
 * any such field of at most 53 significant bits is exact as a number even when its top bit is
 * 63 (a 4 KiB-aligned 64-bit address is an exact double). Wider fields (a full 64-bit input
 * address, a 62-bit status address) are `bigint` and are never on a hot path.
 *
 * Bit positions are absolute within the structure (bit 64 = bit 0 of the second 64-bit word),
 * written high:low as the specifications do: `bits(79, 64)`.
 *
 * Note on placement: this module is shared by src/hw/vtd/ and src/hw/smmuv3/; it lives here only
 * because those were the directories open to the author. It belongs in src/hw/.
 */
import { assert } from "../errno.js";

/** Accessors read typed arrays in host byte order; the structures are little endian. */
const HOST_LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
assert(HOST_LE, "bitlayout: Uint32Array accessors assume a little-endian host");

const P32 = 4294967296; // 2^32

export type FieldKind = "num" | "big";

/** A contiguous run of bits of a field; parts are listed low-order first. */
export interface FieldPart {
  readonly bit: number;
  readonly width: number;
}

export interface FieldDef<K extends FieldKind = FieldKind> {
  readonly kind: K;
  readonly parts: readonly FieldPart[];
  /** Total width of the stored bits. */
  readonly width: number;
  /** The decoded value is (stored bits) * 2^shift: non-zero for in-place address fields. */
  readonly shift: number;
}

function part(hi: number, lo: number): FieldPart {
  if (!(Number.isInteger(hi) && Number.isInteger(lo) && hi >= lo && lo >= 0)) assert(false, `bad bit range ${hi}:${lo}`);
  return { bit: lo, width: hi - lo + 1 };
}

/** A one-bit flag at absolute bit `n`. */
export function bit(n: number): FieldDef<"num"> {
  return { kind: "num", parts: [part(n, n)], width: 1, shift: 0 };
}

/** An unsigned field of bits hi:lo (at most 53 bits), decoded shifted down to bit 0. */
export function bits(hi: number, lo: number): FieldDef<"num"> {
  const p = part(hi, lo);
  if (!(p.width <= 53)) assert(false, `field ${hi}:${lo} is wider than 53 bits; use bigBits`);
  return { kind: "num", parts: [p], width: p.width, shift: 0 };
}

/** A field stored in several runs, low-order run first: split([15, 12], [63, 52]). */
export function split(...ranges: ReadonlyArray<readonly [number, number]>): FieldDef<"num"> {
  const parts = ranges.map(([hi, lo]) => part(hi, lo));
  const width = parts.reduce((s, p) => s + p.width, 0);
  assert(width <= 53, "split field wider than 53 bits");
  return { kind: "num", parts, width, shift: 0 };
}

/**
 * An address field: bits hi:lo of one 64-bit word, decoded in place (the value is the address
 * with bits below lo%64 zero). At most 53 stored bits.
 */
export function addr(hi: number, lo: number): FieldDef<"num"> {
  const p = part(hi, lo);
  if (!(Math.floor(hi / 64) === Math.floor(lo / 64))) assert(false, `address field ${hi}:${lo} crosses a 64-bit word`);
  if (!(p.width <= 53)) assert(false, `address field ${hi}:${lo} stores more than 53 bits; use bigAddr`);
  return { kind: "num", parts: [p], width: p.width, shift: lo % 64 };
}

/** A raw field of up to 64 bits decoded as a bigint. */
export function bigBits(hi: number, lo: number): FieldDef<"big"> {
  const p = part(hi, lo);
  assert(p.width <= 64, "bigBits wider than 64");
  return { kind: "big", parts: [p], width: p.width, shift: 0 };
}

/** An address field within one 64-bit word, decoded in place as a bigint (e.g. 63:2). */
export function bigAddr(hi: number, lo: number): FieldDef<"big"> {
  const p = part(hi, lo);
  if (!(Math.floor(hi / 64) === Math.floor(lo / 64))) assert(false, `address field ${hi}:${lo} crosses a 64-bit word`);
  return { kind: "big", parts: [p], width: p.width, shift: lo % 64 };
}

export type FieldMap = Record<string, FieldDef>;

/** The plain object of a layout: numbers, and bigints for the wide fields. */
export type Value<F extends FieldMap> = {
  -readonly [K in keyof F]: F[K] extends FieldDef<"big"> ? bigint : number;
};

/** Hot-path accessor of a number field over a Uint32Array view; `base` is a word index. */
export interface NumAccessor {
  get(u32: Uint32Array, base: number): number;
  /** Writes the field without range checks (bits outside the field are masked off). */
  set(u32: Uint32Array, base: number, v: number): void;
}

export interface BigAccessor {
  get(u32: Uint32Array, base: number): bigint;
  set(u32: Uint32Array, base: number, v: bigint): void;
}

export type AccessorMap<F extends FieldMap> = {
  readonly [K in keyof F]: F[K] extends FieldDef<"big"> ? BigAccessor : NumAccessor;
};

/** A constant a layout always carries (a descriptor type code, an opcode). */
export interface FixedDef {
  readonly field: FieldDef<"num">;
  readonly value: number;
}

/** One 32-bit-word slice of a field: bits [sh, sh+width) of word `word` hold value bits [pos, pos+width). */
interface Chunk {
  readonly word: number;
  readonly sh: number;
  readonly width: number;
  readonly pos: number;
}

function chunksOf(f: FieldDef): Chunk[] {
  const out: Chunk[] = [];
  let pos = 0;
  for (const p of f.parts) {
    let b = p.bit;
    let left = p.width;
    while (left > 0) {
      const word = b >>> 5;
      const sh = b & 31;
      const width = Math.min(left, 32 - sh);
      out.push({ word, sh, width, pos });
      pos += width;
      b += width;
      left -= width;
    }
  }
  return out;
}

function maskOf(width: number): number {
  return width >= 32 ? 0xffffffff : 2 ** width - 1;
}

function readChunk(u32: Uint32Array, base: number, c: Chunk): number {
  const w = u32[base + c.word];
  if (c.width === 32) return w;
  return (w >>> c.sh) & maskOf(c.width);
}

function writeChunk(u32: Uint32Array, base: number, c: Chunk, v: number): void {
  const i = base + c.word;
  if (c.width === 32) {
    u32[i] = v;
    return;
  }
  const m = maskOf(c.width);
  u32[i] = (u32[i] & ~(m << c.sh)) | ((v & m) << c.sh);
}

function numAccessor(f: FieldDef): NumAccessor {
  const chunks = chunksOf(f);
  const mul = 2 ** f.shift;
  if (chunks.length === 1) {
    const c = chunks[0];
    const word = c.word;
    const sh = c.sh;
    if (c.width === 32) {
      return mul === 1
        ? { get: (u32, b) => u32[b + word], set: (u32, b, v) => void (u32[b + word] = v) }
        : {
            get: (u32, b) => u32[b + word] * mul,
            set: (u32, b, v) => void (u32[b + word] = Math.floor(v / mul)),
          };
    }
    const m = maskOf(c.width);
    const inPlace = m << sh; // the field's bits within the word (as an int32)
    if (mul === 2 ** sh && c.pos === 0) {
      // An address whose bits sit in place in a single 32-bit word (e.g. 31:12 of a low word).
      return {
        get: (u32, b) => (u32[b + word] & inPlace) >>> 0,
        set: (u32, b, v) => void (u32[b + word] = (u32[b + word] & ~inPlace) | (v & inPlace)),
      };
    }
    if (mul === 1) {
      return {
        get: (u32, b) => (u32[b + word] >>> sh) & m,
        set: (u32, b, v) => void (u32[b + word] = (u32[b + word] & ~inPlace) | ((v & m) << sh)),
      };
    }
    return {
      get: (u32, b) => ((u32[b + word] >>> sh) & m) * mul,
      set: (u32, b, v) => void (u32[b + word] = (u32[b + word] & ~inPlace) | ((Math.floor(v / mul) & m) << sh)),
    };
  }
  if (chunks.length === 2 && chunks[1].word === chunks[0].word + 1 && chunks[0].sh + chunks[0].width === 32 && chunks[1].sh === 0) {
    // A field crossing one 32-bit boundary (51:6, 63:12, ...): the common pointer shape.
    const c0 = chunks[0];
    const c1 = chunks[1];
    const w0 = c0.word;
    const sh0 = c0.sh;
    const m0 = maskOf(c0.width);
    const m1 = maskOf(c1.width);
    const hiMul = 2 ** c1.pos * mul; // weight of the high chunk's bit 0 in the value
    const loMul = mul; // weight of the low chunk's bit 0
    const in0 = m0 << sh0;
    return {
      get: (u32, b) => (((u32[b + w0] >>> sh0) & m0) >>> 0) * loMul + ((u32[b + w0 + 1] & m1) >>> 0) * hiMul,
      set: (u32, b, v) => {
        const raw = Math.floor(v / mul);
        u32[b + w0] = (u32[b + w0] & ~in0) | ((raw & m0) << sh0);
        u32[b + w0 + 1] = (u32[b + w0 + 1] & ~m1) | (Math.floor(raw / 2 ** c1.pos) & m1);
      },
    };
  }
  return {
    get: (u32, b) => {
      let v = 0;
      for (const c of chunks) v += readChunk(u32, b, c) * 2 ** c.pos;
      return v * mul;
    },
    set: (u32, b, v) => {
      const raw = Math.floor(v / mul);
      for (const c of chunks) writeChunk(u32, b, c, Math.floor(raw / 2 ** c.pos) % 2 ** c.width);
    },
  };
}

function bigAccessor(f: FieldDef): BigAccessor {
  const chunks = chunksOf(f);
  const sh = BigInt(f.shift);
  return {
    get: (u32, b) => {
      let v = 0n;
      for (const c of chunks) v |= BigInt(readChunk(u32, b, c)) << BigInt(c.pos);
      return v << sh;
    },
    set: (u32, b, v) => {
      const raw = BigInt.asUintN(f.width, v >> sh);
      for (const c of chunks) writeChunk(u32, b, c, Number((raw >> BigInt(c.pos)) & BigInt(maskOf(c.width))));
    },
  };
}

export type Bytes = Uint8Array;

/** A structure layout: the codec, the accessors and the reserved mask derived from one table. */
export class Layout<F extends FieldMap> {
  readonly words: number;
  readonly acc: AccessorMap<F>;
  /** Per 32-bit word: the bits no field or fixed constant claims. */
  readonly reservedMask: Uint32Array;
  /** Per 32-bit word: the bits of the fixed constants, and their values. */
  readonly fixedMask: Uint32Array;
  readonly fixedValue: Uint32Array;
  readonly fieldNames: readonly (keyof F & string)[];

  constructor(
    readonly name: string,
    readonly bytes: number,
    readonly fields: F,
    readonly fixed: readonly FixedDef[] = [],
  ) {
    if (!(bytes > 0 && bytes % 4 === 0)) assert(false, `${name}: size must be a multiple of 4 bytes`);
    this.words = bytes / 4;
    const claimed = new Uint32Array(this.words);
    const claim = (f: FieldDef, what: string): void => {
      for (const c of chunksOf(f)) {
        if (!(c.word < this.words)) assert(false, `${name}.${what} lies beyond the structure`);
        const m = (maskOf(c.width) << c.sh) >>> 0;
        if (!((claimed[c.word] & m) === 0)) assert(false, `${name}.${what} overlaps another field`);
        claimed[c.word] = claimed[c.word] | m;
      }
    };
    const acc: Record<string, NumAccessor | BigAccessor> = {};
    for (const [k, f] of Object.entries(fields)) {
      claim(f, k);
      acc[k] = f.kind === "big" ? bigAccessor(f) : numAccessor(f);
    }
    this.fixedMask = new Uint32Array(this.words);
    this.fixedValue = new Uint32Array(this.words);
    for (const fx of fixed) {
      claim(fx.field, "<fixed>");
      if (!(fx.value >= 0 && fx.value < 2 ** fx.field.width)) assert(false, `${name}: fixed value out of range`);
      const tmp = new Uint32Array(this.words);
      numAccessor(fx.field).set(tmp, 0, fx.value);
      for (const c of chunksOf(fx.field)) this.fixedMask[c.word] = this.fixedMask[c.word] | (maskOf(c.width) << c.sh);
      for (let i = 0; i < this.words; i++) this.fixedValue[i] = this.fixedValue[i] | tmp[i];
    }
    this.reservedMask = new Uint32Array(this.words);
    for (let i = 0; i < this.words; i++) this.reservedMask[i] = ~claimed[i] >>> 0;
    this.acc = acc as AccessorMap<F>;
    this.fieldNames = Object.keys(fields) as (keyof F & string)[];
  }

  /** A value with every field zero. */
  zero(): Value<F> {
    const v: Record<string, number | bigint> = {};
    for (const [k, f] of Object.entries(this.fields)) v[k] = f.kind === "big" ? 0n : 0;
    return v as Value<F>;
  }

  /** Decode from a word view (hot-path friendly source: simulated memory). */
  decodeWords(u32: Uint32Array, base = 0): Value<F> {
    const v: Record<string, number | bigint> = {};
    const acc = this.acc as Record<string, NumAccessor | BigAccessor>;
    for (const k of this.fieldNames) v[k] = acc[k].get(u32, base);
    return v as Value<F>;
  }

  /** Decode `bytes` little-endian bytes starting at `offset`. */
  decode(src: Bytes, offset = 0): Value<F> {
    return this.decodeWords(this.wordsOf(src, offset), 0);
  }

  /** Check a value fits its fields; returns a reason, or undefined when it does. */
  check(v: Partial<Value<F>>): string | undefined {
    for (const [k, f] of Object.entries(this.fields)) {
      const x = (v as Record<string, unknown>)[k];
      if (x === undefined) continue;
      if (f.kind === "big") {
        if (typeof x !== "bigint") return `${this.name}.${k}: expected a bigint`;
        const lowMask = (1n << BigInt(f.shift)) - 1n;
        if (x < 0n || x >> BigInt(f.shift) >= 1n << BigInt(f.width) || (x & lowMask) !== 0n)
          return `${this.name}.${k}: ${x} does not fit ${f.width} bits << ${f.shift}`;
      } else {
        if (typeof x !== "number" || !Number.isInteger(x) || x < 0) return `${this.name}.${k}: expected a non-negative integer`;
        const unit = 2 ** f.shift;
        if (x % unit !== 0 || x / unit >= 2 ** f.width) return `${this.name}.${k}: 0x${x.toString(16)} does not fit ${f.width} bits << ${f.shift}`;
      }
    }
    for (const k of Object.keys(v)) if (!(k in this.fields)) return `${this.name}: unknown field ${k}`;
    return undefined;
  }

  /**
   * Write a whole structure at word `base`: every field from `v` (absent fields 0), the fixed
   * constants, reserved bits 0. Values are range-checked (a bad value is a caller bug).
   */
  encodeInto(u32: Uint32Array, base: number, v: Partial<Value<F>>): void {
    const why = this.check(v);
    assert(why === undefined, why ?? "");
    for (let i = 0; i < this.words; i++) u32[base + i] = this.fixedValue[i];
    const acc = this.acc as Record<string, NumAccessor | BigAccessor>;
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) continue;
      (acc[k] as { set(u: Uint32Array, b: number, x: unknown): void }).set(u32, base, x);
    }
  }

  encodeWords(v: Partial<Value<F>>): Uint32Array {
    const u32 = new Uint32Array(this.words);
    this.encodeInto(u32, 0, v);
    return u32;
  }

  /** Encode to `bytes` little-endian bytes. */
  encode(v: Partial<Value<F>>): Uint8Array {
    return this.bytesOf(this.encodeWords(v));
  }

  /** True when the fixed constants of this layout are present at `base`. */
  matchesFixed(u32: Uint32Array, base = 0): boolean {
    for (let i = 0; i < this.words; i++) if ((u32[base + i] & this.fixedMask[i]) !== this.fixedValue[i]) return false;
    return true;
  }

  /** Hot-path check: any reserved bit set in the structure at `base`? */
  hasReservedBits(u32: Uint32Array, base = 0): boolean {
    for (let i = 0; i < this.words; i++) if ((u32[base + i] & this.reservedMask[i]) !== 0) return true;
    return false;
  }

  /** The absolute positions of the reserved bits that are set (for reports and tests). */
  reservedBitsSet(src: Bytes | Uint32Array, offset = 0): number[] {
    const u32 = src instanceof Uint32Array ? src.subarray(offset, offset + this.words) : this.wordsOf(src, offset);
    const out: number[] = [];
    for (let i = 0; i < this.words; i++) {
      const x = (u32[i] & this.reservedMask[i]) >>> 0;
      for (let b = 0; b < 32; b++) if ((x >>> b) & 1) out.push(i * 32 + b);
    }
    return out;
  }

  /** The structure as 64-bit words (uAPI boundary / display). */
  toQwords(v: Partial<Value<F>>): bigint[] {
    const u32 = this.encodeWords(v);
    const out: bigint[] = [];
    for (let i = 0; i < this.words; i += 2) out.push(BigInt(u32[i]) | (BigInt(u32[i + 1] ?? 0) << 32n));
    return out;
  }

  /** Decode from 64-bit words (uAPI boundary). Missing trailing words read as zero. */
  fromQwords(q: readonly bigint[]): Value<F> {
    return this.decodeWords(qwordsToWords(q, this.words), 0);
  }

  /** "name{f=0x.. g=..}" listing the non-zero fields, for reports. */
  describe(v: Partial<Value<F>>): string {
    const parts: string[] = [];
    for (const k of this.fieldNames) {
      const x = (v as Record<string, number | bigint | undefined>)[k];
      if (x === undefined || x === 0 || x === 0n) continue;
      const f = this.fields[k];
      parts.push(f.width === 1 && f.shift === 0 ? k : `${k}=0x${x.toString(16)}`);
    }
    return `${this.name}{${parts.join(" ")}}`;
  }

  private wordsOf(src: Bytes, offset: number): Uint32Array {
    if (!(offset >= 0 && offset + this.bytes <= src.length)) assert(false, `${this.name}: ${this.bytes} bytes needed at offset ${offset}`);
    const dv = new DataView(src.buffer, src.byteOffset + offset, this.bytes);
    const u32 = new Uint32Array(this.words);
    for (let i = 0; i < this.words; i++) u32[i] = dv.getUint32(i * 4, true);
    return u32;
  }

  private bytesOf(u32: Uint32Array): Uint8Array {
    const out = new Uint8Array(this.bytes);
    const dv = new DataView(out.buffer);
    for (let i = 0; i < this.words; i++) dv.setUint32(i * 4, u32[i], true);
    return out;
  }
}

export function defineLayout<F extends FieldMap>(name: string, bytes: number, fields: F, fixed: readonly FixedDef[] = []): Layout<F> {
  return new Layout(name, bytes, fields, fixed);
}

/** Little-endian bytes -> 32-bit words (the length must be a multiple of 4). */
export function bytesToWords(src: Bytes): Uint32Array {
  assert(src.length % 4 === 0, "length must be a multiple of 4");
  const dv = new DataView(src.buffer, src.byteOffset, src.length);
  const out = new Uint32Array(src.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(i * 4, true);
  return out;
}

/** 32-bit words -> little-endian bytes. */
export function wordsToBytes(u32: Uint32Array): Uint8Array {
  const out = new Uint8Array(u32.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < u32.length; i++) dv.setUint32(i * 4, u32[i], true);
  return out;
}

/** 64-bit words -> 32-bit words (pads or truncates to `nwords`). */
export function qwordsToWords(q: readonly bigint[], nwords = q.length * 2): Uint32Array {
  const out = new Uint32Array(nwords);
  for (let i = 0; i < q.length && 2 * i < nwords; i++) {
    const x = BigInt.asUintN(64, q[i]);
    out[2 * i] = Number(x & 0xffffffffn);
    if (2 * i + 1 < nwords) out[2 * i + 1] = Number(x >> 32n);
  }
  return out;
}

/** 32-bit words -> 64-bit words. */
export function wordsToQwords(u32: Uint32Array): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < u32.length; i += 2) out.push(BigInt(u32[i]) | (BigInt(u32[i + 1] ?? 0) << 32n));
  return out;
}

/** The high and low 32-bit halves of a non-negative safe integer (64-bit value as a pair). */
export function hiLo(v: number): [hi: number, lo: number] {
  return [Math.floor(v / P32), v % P32];
}
