/**
 * What an SMMUv3 unit makes of its ID registers and of the configuration structures it fetches:
 * the feature set (from IDR0/1/3/5), and the checks that turn an STE or a CD into a cached
 * configuration or into the configuration error the architecture names (C_BAD_STE, C_BAD_CD).
 * Pure functions over words; unit.ts builds the walkers and caches the results.
 */
import { Idr0, Idr1, Idr3, Idr5, oasBits } from "./regs.js";
import { Cd, S1Fmt, Ste, SteConfig, Strw } from "./tables.js";
import type { SmmuIdRegs } from "./unit-regs.js";

/** The unit's capabilities, decoded once from its ID registers. */
export interface SmmuFeatures {
  readonly s1: boolean;
  readonly s2: boolean;
  /** HTTU: hardware access-flag update, and dirty-state update. */
  readonly httuA: boolean;
  readonly httuD: boolean;
  readonly asidBits: number;
  readonly vmidBits: number;
  readonly cd2l: boolean;
  readonly st2l: boolean;
  readonly pri: boolean;
  readonly ats: boolean;
  readonly hyp: boolean;
  readonly msi: boolean;
  readonly sev: boolean;
  /** IDR0.STALL_MODEL: 0 stall and terminate, 1 terminate only, 2 stall forced. */
  readonly stallModel: number;
  readonly sidBits: number;
  readonly ssidBits: number;
  readonly cmdqLog2: number;
  readonly evtqLog2: number;
  readonly priqLog2: number;
  readonly ril: boolean;
  /** Output address size in bits (IDR5.OAS), also the input size of stage 2 (IAS). */
  readonly oas: number;
  readonly gran4k: boolean;
  readonly gran16k: boolean;
  readonly gran64k: boolean;
  /** Most stalled transactions outstanding at once (IDR5.STALL_MAX). */
  readonly stallMax: number;
  /** Big-endian tables supported (IDR0.TTENDIAN mixed or BE). */
  readonly bigEndian: boolean;
}

export function decodeFeatures(r: SmmuIdRegs): SmmuFeatures {
  const i0 = Idr0.decodeWords(new Uint32Array([r.idr0]));
  const i1 = Idr1.decodeWords(new Uint32Array([r.idr1]));
  const i3 = Idr3.decodeWords(new Uint32Array([r.idr3]));
  const i5 = Idr5.decodeWords(new Uint32Array([r.idr5]));
  const oas = oasBits(i5.oas);
  return {
    s1: i0.s1p === 1,
    s2: i0.s2p === 1,
    httuA: i0.httu >= 1,
    httuD: i0.httu === 2,
    asidBits: i0.asid16 ? 16 : 8,
    vmidBits: i0.vmid16 ? 16 : 8,
    cd2l: i0.cd2l === 1,
    st2l: i0.stLevel === 1,
    pri: i0.pri === 1,
    ats: i0.ats === 1,
    hyp: i0.hyp === 1,
    msi: i0.msi === 1,
    sev: i0.sev === 1,
    stallModel: i0.stallModel,
    sidBits: i1.sidsize,
    ssidBits: i1.ssidsize,
    cmdqLog2: i1.cmdqs,
    evtqLog2: i1.eventqs,
    priqLog2: i1.priqs,
    ril: i3.ril === 1,
    // OAS above 48 bits (LPA) is not modelled: treated as 48.
    oas: oas < 0 || oas > 48 ? 48 : oas,
    gran4k: i5.gran4k === 1,
    gran16k: i5.gran16k === 1,
    gran64k: i5.gran64k === 1,
    stallMax: i5.stallMax,
    bigEndian: i0.ttendian === 0 || i0.ttendian === 3,
  };
}

/** A translation regime's geometry: granule (bytes), input bits, and the walk's start level. */
export interface Geometry {
  granule: 4096 | 16384 | 65536;
  inputBits: number;
  /** Stage 2: the start level (from S2SL0); stage 1: -1 (the format's natural one). */
  startLevel: number;
}

function granuleOk(f: SmmuFeatures, g: number): boolean {
  return g === 4096 ? f.gran4k : g === 16384 ? f.gran16k : g === 65536 ? f.gran64k : false;
}

/**
 * Stage-2 geometry of an STE, or null when the combination is one the architecture makes
 * ILLEGAL (or this model does not walk): S2TG not implemented, S2T0SZ out of range, or S2SL0
 * leaving the start level resolving no bits or needing more than 16 concatenated tables.
 */
export function s2Geometry(f: SmmuFeatures, s2t0sz: number, s2sl0: number, s2tg: number): Geometry | null {
  const granule = s2tg === 0 ? 4096 : s2tg === 1 ? 65536 : s2tg === 2 ? 16384 : 0;
  if (granule === 0 || !granuleOk(f, granule)) return null;
  const ia = 64 - s2t0sz;
  if (ia < 25 || ia > Math.min(48, f.oas)) return null;
  const g = Math.log2(granule);
  const bpl = g - 3;
  // S2SL0 -> start level: 4 KiB 0/1/2 = level 2/1/0; 16 and 64 KiB 0/1/2 = level 3/2/1.
  let sl: number;
  if (granule === 4096) sl = s2sl0 === 0 ? 2 : s2sl0 === 1 ? 1 : s2sl0 === 2 ? 0 : -1;
  else sl = s2sl0 === 0 ? 3 : s2sl0 === 1 ? 2 : s2sl0 === 2 ? 1 : -1;
  if (sl < 0) return null;
  const topBits = ia - (g + (3 - sl) * bpl);
  if (topBits < 1 || topBits > bpl + 4) return null;
  return { granule: granule as Geometry["granule"], inputBits: ia, startLevel: sl };
}

/** Stage-1 geometry of one CD region (TTB0: tg encoding Tg0; TTB1: the TG1 encoding). */
export function s1Geometry(f: SmmuFeatures, tsz: number, tg: number, ttb1: boolean): Geometry | null {
  const granule = ttb1
    ? tg === 2
      ? 4096
      : tg === 1
        ? 16384
        : tg === 3
          ? 65536
          : 0
    : tg === 0
      ? 4096
      : tg === 1
        ? 65536
        : tg === 2
          ? 16384
          : 0;
  if (granule === 0 || !granuleOk(f, granule)) return null;
  const ia = 64 - tsz;
  // 52-bit VAs (IDR5.VAX) are not modelled; the smallest region the engine walks is 25 bits.
  if (ia < 25 || ia > 48) return null;
  return { granule: granule as Geometry["granule"], inputBits: ia, startLevel: -1 };
}

/**
 * Checks of a valid STE (V = 1) that do not need memory: true when it is well-formed for this
 * unit, false for C_BAD_STE.
 */
export function steWellFormed(f: SmmuFeatures, w: Uint32Array, b: number): boolean {
  const cfg = Ste.acc.config.get(w, b);
  if (cfg >= 1 && cfg <= 3) return false;
  if (cfg === SteConfig.ABORT || cfg === SteConfig.BYPASS) return true;
  const s1 = (cfg & 1) !== 0;
  const s2 = (cfg & 2) !== 0;
  if ((s1 && !f.s1) || (s2 && !f.s2)) return false;
  const strw = Ste.acc.strw.get(w, b);
  if (strw !== Strw.NSEL1 && !(strw === Strw.EL2 && f.hyp)) return false;
  if (s1) {
    const cdmax = Ste.acc.s1cdmax.get(w, b);
    const fmt = Ste.acc.s1fmt.get(w, b);
    if (cdmax > f.ssidBits) return false;
    if (cdmax > 0) {
      if (fmt === 3 || (fmt !== S1Fmt.LINEAR && !f.cd2l)) return false;
      if (Ste.acc.s1dss.get(w, b) === 3) return false;
    }
    if (!s2 && Ste.acc.s1ContextPtr.get(w, b) >= 2 ** f.oas) return false;
  }
  if (s2) {
    if (Ste.acc.s2aa64.get(w, b) !== 1) return false;
    if (Ste.acc.s2endi.get(w, b) === 1 && !f.bigEndian) return false;
    const ps = oasBits(Ste.acc.s2ps.get(w, b));
    if (ps < 0) return false;
    if (s2Geometry(f, Ste.acc.s2t0sz.get(w, b), Ste.acc.s2sl0.get(w, b), Ste.acc.s2tg.get(w, b)) === null) return false;
    if (Ste.acc.s2ttb.get(w, b) >= 2 ** f.oas) return false;
  }
  return true;
}

/** Checks of a valid CD (V = 1) that do not need memory: true when well-formed, false for C_BAD_CD. */
export function cdWellFormed(f: SmmuFeatures, w: Uint32Array, b: number): boolean {
  if (Cd.acc.aa64.get(w, b) !== 1) return false;
  if (Cd.acc.endi.get(w, b) === 1 && !f.bigEndian) return false;
  if (oasBits(Cd.acc.ips.get(w, b)) < 0) return false;
  if (Cd.acc.epd0.get(w, b) === 0 && s1Geometry(f, Cd.acc.t0sz.get(w, b), Cd.acc.tg0.get(w, b), false) === null) return false;
  if (Cd.acc.epd1.get(w, b) === 0 && s1Geometry(f, Cd.acc.t1sz.get(w, b), Cd.acc.tg1.get(w, b), true) === null) return false;
  return true;
}
