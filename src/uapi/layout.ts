/**
 * C layout rules and the byte codec behind the uAPI struct table (structs.ts).
 *
 * A struct is declared once as a list of C members (scalars, fixed and flexible arrays, nested
 * structs, anonymous unions of alternatives, and an anonymous union of named variants chosen by a
 * selector field such as iommu_test_cmd.op). From that declaration this module computes offsets,
 * sizes and alignment exactly as a C compiler does on x86-64 (LP64: every member aligned to its
 * natural alignment, __aligned_u64 to 8, a struct's size rounded up to its alignment), and compiles
 * a flat plan per struct that decode/encode walk with one DataView per call: no allocation per
 * field other than the decoded values themselves.
 */

/** C scalar types of the uAPI: __u8 __u16 __u32 __s32 __aligned_u64 __aligned_le64. */
export type ScalarType = "u8" | "u16" | "u32" | "s32" | "u64" | "le64";

/** A decoded value: numbers for 8..32-bit fields, bigint for 64-bit fields, arrays, nested structs. */
export type UValue = number | bigint | number[] | bigint[] | UObject | UObject[];
export interface UObject {
  [key: string]: UValue | undefined;
}

// ---------------------------------------------------------------------------------- declarations

/**
 * One C member: [name, type, doc, options]. Types: "u32", "u8[3]", "u64[2]", "struct NAME",
 * "struct NAME[]" (flexible array), "u8[]".
 */
export type MemberDecl = readonly [name: string, type: string, doc: string, opts?: { key?: string }];
/** An anonymous union whose members are alternative names of the same bytes. */
export interface UnionDecl {
  readonly union: readonly MemberDecl[];
  readonly doc: string;
}
/** An anonymous union of named struct members; the member in use is chosen by a selector field. */
export interface VariantsDecl {
  readonly variants: readonly VariantDecl[];
  readonly doc: string;
}
export interface VariantDecl {
  /** C member name of the union's struct member (e.g. "add_reserved"). */
  readonly name: string;
  /** Selector values (e.g. test op numbers) that use this member. */
  readonly select: readonly number[];
  readonly fields: readonly MemberDecl[];
  /** Newer than Linux 6.12. */
  readonly newer?: boolean;
}
export type FieldDecl = MemberDecl | UnionDecl | VariantsDecl;

export interface StructDecl {
  readonly name: string;
  /** Which generated header renders it. */
  readonly header: "iommufd" | "selftest" | "vfio";
  readonly doc: string;
  readonly fields: readonly FieldDecl[];
  /** The member whose end is the smallest size the kernel accepts (offsetofend in its tables). */
  readonly minField?: string;
  /** For a VariantsDecl: the field whose value picks the variant. */
  readonly selector?: string;
  /** Absent from Linux 6.12's uAPI. */
  readonly newer?: boolean;
}

// ---------------------------------------------------------------------------------- layouts

export interface Field {
  /** Property name in the decoded object. */
  readonly key: string;
  /** C member designator for offsetof (e.g. "add_reserved.start"). */
  readonly cpath: string;
  /** C member name (last component). */
  readonly cname: string;
  readonly scalar: ScalarType | null;
  /** Nested struct type, when the member is a struct. */
  readonly struct: StructLayout | null;
  readonly offset: number;
  /** Size of one element. */
  readonly elemSize: number;
  /** 1 for a plain member, n for a fixed array, 0 for a flexible array. */
  readonly count: number;
  /** Declared as an array (count may still be 1). */
  readonly isArray: boolean;
  readonly align: number;
  readonly doc: string;
}

export interface VariantLayout {
  readonly name: string;
  readonly select: readonly number[];
  readonly fields: readonly Field[];
  readonly newer: boolean;
}

/** A C item in declaration order, for rendering the header. */
export type Item =
  | { readonly kind: "member"; readonly field: Field }
  | { readonly kind: "union"; readonly members: readonly Field[]; readonly doc: string; readonly offset: number; readonly size: number }
  | { readonly kind: "variants"; readonly variants: readonly VariantLayout[]; readonly doc: string; readonly offset: number; readonly size: number };

export interface StructLayout {
  readonly name: string;
  readonly header: StructDecl["header"];
  readonly doc: string;
  readonly newer: boolean;
  /** sizeof(struct name) */
  readonly size: number;
  readonly align: number;
  /** offsetofend(struct, minField), or null when the kernel registers no minimum for it. */
  readonly min: number | null;
  readonly minField: string | null;
  readonly items: readonly Item[];
  /** Members always present (not inside a variant), in declaration order; union alternatives included. */
  readonly common: readonly Field[];
  readonly variants: readonly VariantLayout[];
  readonly selector: string | null;
  /** Every field, variants included (for offsetof checks). */
  readonly all: readonly Field[];
  /** Compiled codec plans: the common part, and one per variant. */
  readonly plan: Plan;
  readonly variantPlans: ReadonlyMap<number, Plan>;
}

const SCALAR_SIZE: Record<ScalarType, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8, le64: 8 };

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

const TYPE_RE = /^(struct\s+)?([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d*)\])?$/;

interface Parsed {
  scalar: ScalarType | null;
  struct: StructLayout | null;
  elemSize: number;
  align: number;
  count: number;
  isArray: boolean;
}

function parseType(t: string, known: ReadonlyMap<string, StructLayout>, where: string): Parsed {
  const m = TYPE_RE.exec(t.trim());
  if (!m) throw new Error(`uapi table: bad type "${t}" in ${where}`);
  const isArray = m[3] !== undefined;
  const count = !isArray ? 1 : m[3] === "" ? 0 : Number(m[3]);
  if (m[1]) {
    const s = known.get(m[2]);
    if (!s) throw new Error(`uapi table: struct ${m[2]} used before its definition in ${where}`);
    return { scalar: null, struct: s, elemSize: s.size, align: s.align, count, isArray };
  }
  const sc = m[2] as ScalarType;
  if (!(sc in SCALAR_SIZE)) throw new Error(`uapi table: unknown scalar "${m[2]}" in ${where}`);
  return { scalar: sc, struct: null, elemSize: SCALAR_SIZE[sc], align: SCALAR_SIZE[sc], count, isArray };
}

/** Lay out a sequence of members from `start`; returns the fields and the end offset / alignment. */
function layoutSeq(
  decls: readonly MemberDecl[],
  start: number,
  prefix: string,
  known: ReadonlyMap<string, StructLayout>,
  where: string,
): { fields: Field[]; end: number; align: number } {
  const fields: Field[] = [];
  let off = start;
  let align = 1;
  for (const [name, type, doc, opts] of decls) {
    const p = parseType(type, known, `${where}.${name}`);
    off = alignUp(off, p.align);
    align = Math.max(align, p.align);
    fields.push({
      key: opts?.key ?? name,
      cpath: prefix + name,
      cname: name,
      scalar: p.scalar,
      struct: p.struct,
      offset: off,
      elemSize: p.elemSize,
      count: p.count,
      isArray: p.isArray,
      align: p.align,
      doc,
    });
    off += p.elemSize * p.count;
  }
  return { fields, end: off, align };
}

function isMember(f: FieldDecl): f is MemberDecl {
  return Array.isArray(f);
}

/** Compute the C layout of one declared struct. */
export function layoutStruct(d: StructDecl, known: ReadonlyMap<string, StructLayout>): StructLayout {
  const items: Item[] = [];
  const common: Field[] = [];
  const all: Field[] = [];
  let variants: VariantLayout[] = [];
  let off = 0;
  let align = 1;
  for (const f of d.fields) {
    if (isMember(f)) {
      const r = layoutSeq([f], off, "", known, d.name);
      items.push({ kind: "member", field: r.fields[0] });
      common.push(r.fields[0]);
      all.push(r.fields[0]);
      off = r.end;
      align = Math.max(align, r.align);
    } else if ("union" in f) {
      // every alternative starts at the union's (aligned) offset
      let ua = 1;
      for (const m of f.union) ua = Math.max(ua, parseType(m[1], known, d.name).align);
      const base = alignUp(off, ua);
      let size = 0;
      const members: Field[] = [];
      for (const m of f.union) {
        const r = layoutSeq([m], base, "", known, d.name);
        members.push(r.fields[0]);
        size = Math.max(size, r.end - base);
      }
      size = alignUp(size, ua);
      items.push({ kind: "union", members, doc: f.doc, offset: base, size });
      common.push(...members);
      all.push(...members);
      off = base + size;
      align = Math.max(align, ua);
    } else {
      // a union of anonymous-typed struct members; each member struct has its own alignment
      let ua = 1;
      const rel = f.variants.map((v) => {
        const r = layoutSeq(v.fields, 0, `${v.name}.`, known, `${d.name}.${v.name}`);
        ua = Math.max(ua, r.align);
        return { v, r };
      });
      const base = alignUp(off, ua);
      let size = 0;
      variants = rel.map(({ v, r }) => {
        size = Math.max(size, alignUp(r.end, r.align));
        const fields = r.fields.map((x) => ({ ...x, offset: x.offset + base }));
        all.push(...fields);
        return { name: v.name, select: v.select, fields, newer: v.newer === true };
      });
      size = alignUp(size, ua);
      items.push({ kind: "variants", variants, doc: f.doc, offset: base, size });
      off = base + size;
      align = Math.max(align, ua);
    }
  }
  const size = alignUp(off, align);
  let min: number | null = null;
  if (d.minField) {
    const mf = all.find((x) => x.cpath === d.minField);
    if (!mf) throw new Error(`uapi table: ${d.name}: minField ${d.minField} is not a member`);
    min = mf.offset + mf.elemSize * mf.count;
  }
  const plan = compilePlan(common);
  const variantPlans = new Map<number, Plan>();
  for (const v of variants) {
    const p = compilePlan([...common, ...v.fields]);
    for (const sel of v.select) {
      if (variantPlans.has(sel)) throw new Error(`uapi table: ${d.name}: selector ${sel} used twice`);
      variantPlans.set(sel, p);
    }
  }
  if (variants.length && !d.selector) throw new Error(`uapi table: ${d.name}: variants need a selector`);
  return {
    name: d.name,
    header: d.header,
    doc: d.doc,
    newer: d.newer === true,
    size,
    align,
    min,
    minField: d.minField ?? null,
    items,
    common,
    variants,
    selector: d.selector ?? null,
    all,
    plan,
    variantPlans,
  };
}

// ---------------------------------------------------------------------------------- codec plans

const K_U8 = 0,
  K_U16 = 1,
  K_U32 = 2,
  K_S32 = 3,
  K_U64 = 4,
  K_ARR = 5,
  K_STRUCT = 6;

/** A flat list of (kind, offset, key) triples; arrays and nested structs keep their Field. */
export interface Plan {
  readonly n: number;
  readonly kind: Uint8Array;
  readonly off: Uint32Array;
  readonly key: readonly string[];
  readonly field: readonly Field[];
}

function scalarKind(s: ScalarType): number {
  switch (s) {
    case "u8":
      return K_U8;
    case "u16":
      return K_U16;
    case "u32":
      return K_U32;
    case "s32":
      return K_S32;
    default:
      return K_U64;
  }
}

function compilePlan(fields: readonly Field[]): Plan {
  // flexible arrays carry no bytes of the struct itself: they are not decoded
  const fs = fields.filter((f) => f.count !== 0);
  const kind = new Uint8Array(fs.length);
  const off = new Uint32Array(fs.length);
  fs.forEach((f, i) => {
    kind[i] = f.isArray ? K_ARR : f.struct ? K_STRUCT : scalarKind(f.scalar as ScalarType);
    off[i] = f.offset;
  });
  return { n: fs.length, kind, off, key: fs.map((f) => f.key), field: fs };
}

function readScalar(dv: DataView, s: ScalarType, o: number): number | bigint {
  switch (s) {
    case "u8":
      return dv.getUint8(o);
    case "u16":
      return dv.getUint16(o, true);
    case "u32":
      return dv.getUint32(o, true);
    case "s32":
      return dv.getInt32(o, true);
    default:
      return dv.getBigUint64(o, true);
  }
}

function writeScalar(dv: DataView, s: ScalarType, o: number, v: unknown): void {
  switch (s) {
    case "u8":
      dv.setUint8(o, Number(v));
      return;
    case "u16":
      dv.setUint16(o, Number(v), true);
      return;
    case "u32":
    case "s32":
      dv.setUint32(o, Number(v) >>> 0, true);
      return;
    default:
      dv.setBigUint64(o, BigInt.asUintN(64, typeof v === "bigint" ? v : BigInt(v as number)), true);
  }
}

function planFor(s: StructLayout, dv: DataView, base: number, obj: UObject | null): Plan {
  if (!s.selector) return s.plan;
  // the selector is a common member that precedes the union
  const sel = s.common.find((f) => f.key === s.selector) as Field;
  const v = obj ? obj[sel.key] : readScalar(dv, sel.scalar as ScalarType, base + sel.offset);
  return s.variantPlans.get(Number(v ?? 0)) ?? s.plan;
}

function decodeWith(p: Plan, dv: DataView, base: number, out: UObject): UObject {
  const { kind, off, key } = p;
  for (let i = 0; i < p.n; i++) {
    const o = base + off[i];
    switch (kind[i]) {
      case K_U8:
        out[key[i]] = dv.getUint8(o);
        break;
      case K_U16:
        out[key[i]] = dv.getUint16(o, true);
        break;
      case K_U32:
        out[key[i]] = dv.getUint32(o, true);
        break;
      case K_S32:
        out[key[i]] = dv.getInt32(o, true);
        break;
      case K_U64:
        out[key[i]] = dv.getBigUint64(o, true);
        break;
      case K_STRUCT: {
        const f = p.field[i];
        const s = f.struct as StructLayout;
        out[key[i]] = decodeWith(planFor(s, dv, o, null), dv, o, {});
        break;
      }
      default: {
        const f = p.field[i];
        if (f.struct) {
          const s = f.struct;
          const a: UObject[] = new Array(f.count);
          for (let j = 0; j < f.count; j++) a[j] = decodeWith(planFor(s, dv, o + j * f.elemSize, null), dv, o + j * f.elemSize, {});
          out[key[i]] = a;
        } else if (f.scalar === "u64" || f.scalar === "le64") {
          const a: bigint[] = new Array(f.count);
          for (let j = 0; j < f.count; j++) a[j] = dv.getBigUint64(o + j * 8, true);
          out[key[i]] = a;
        } else {
          const a: number[] = new Array(f.count);
          for (let j = 0; j < f.count; j++) a[j] = readScalar(dv, f.scalar as ScalarType, o + j * f.elemSize) as number;
          out[key[i]] = a;
        }
      }
    }
  }
  return out;
}

function encodeWith(p: Plan, dv: DataView, base: number, obj: UObject): void {
  const { kind, off, key } = p;
  for (let i = 0; i < p.n; i++) {
    const v = obj[key[i]];
    if (v === undefined) continue;
    const o = base + off[i];
    switch (kind[i]) {
      case K_U8:
        dv.setUint8(o, Number(v));
        break;
      case K_U16:
        dv.setUint16(o, Number(v), true);
        break;
      case K_U32:
      case K_S32:
        dv.setUint32(o, Number(v) >>> 0, true);
        break;
      case K_U64:
        dv.setBigUint64(o, BigInt.asUintN(64, typeof v === "bigint" ? v : BigInt(v as number)), true);
        break;
      case K_STRUCT: {
        const s = p.field[i].struct as StructLayout;
        const sub = v as UObject;
        encodeWith(planFor(s, dv, o, sub), dv, o, sub);
        break;
      }
      default: {
        const f = p.field[i];
        const a = v as readonly unknown[];
        const n = Math.min(a.length, f.count);
        for (let j = 0; j < n; j++) {
          const e = a[j];
          if (e === undefined) continue;
          const eo = o + j * f.elemSize;
          if (f.struct) encodeWith(planFor(f.struct, dv, eo, e as UObject), dv, eo, e as UObject);
          else writeScalar(dv, f.scalar as ScalarType, eo, e);
        }
      }
    }
  }
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decode sizeof(struct) bytes at `offset` into a plain object: u64 as bigint, smaller integers as
 * numbers (s32 signed), fixed arrays as arrays, nested structs as objects. Union alternatives all
 * appear (same value under each name); a variant union decodes only the member the selector picks.
 */
export function decodeStruct(s: StructLayout, bytes: Uint8Array, offset = 0): UObject {
  if (offset < 0 || offset + s.size > bytes.byteLength) throw new RangeError(`decode ${s.name}: need ${s.size} bytes at ${offset}`);
  const dv = viewOf(bytes);
  return decodeWith(planFor(s, dv, offset, null), dv, offset, {});
}

/**
 * Write the object's fields into `bytes` at `offset`, leaving every byte that no present field
 * covers untouched (padding, unused union bytes, fields the object omits). Union alternatives are
 * written in declaration order, so a later one present in the object wins.
 */
export function encodeStructInto(s: StructLayout, obj: UObject, bytes: Uint8Array, offset = 0): void {
  if (offset < 0 || offset + s.size > bytes.byteLength) throw new RangeError(`encode ${s.name}: need ${s.size} bytes at ${offset}`);
  const dv = viewOf(bytes);
  encodeWith(planFor(s, dv, offset, obj), dv, offset, obj);
}

/** A fresh sizeof(struct) buffer holding the object (missing fields and padding are zero). */
export function encodeStruct(s: StructLayout, obj: UObject): Uint8Array {
  const b = new Uint8Array(s.size);
  encodeStructInto(s, obj, b, 0);
  return b;
}

/**
 * Which bytes of the struct a decoded object determines (1 = covered by a decoded field): all but
 * padding, flexible tails and the union bytes the chosen variant does not use. `selectorValue`
 * picks the variant of a variant union (none: the common members only).
 */
export function meaningfulMask(s: StructLayout, selectorValue?: number): Uint8Array {
  const m = new Uint8Array(s.size);
  const p = selectorValue === undefined ? s.plan : (s.variantPlans.get(selectorValue) ?? s.plan);
  const mark = (f: Field, base: number): void => {
    for (let j = 0; j < f.count; j++) {
      const o = base + f.offset + j * f.elemSize;
      if (f.struct) {
        const sub = meaningfulMask(f.struct);
        for (let k = 0; k < sub.length; k++) if (sub[k]) m[o + k] = 1;
      } else m.fill(1, o, o + f.elemSize);
    }
  };
  for (const f of p.field) mark(f, 0);
  return m;
}
