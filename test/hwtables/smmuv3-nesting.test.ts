/**
 * The kernel's SMMUv3 nesting rules at the iommufd boundary: vSTE validation for
 * IOMMU_HWPT_DATA_ARM_SMMUV3 and the vIOMMU invalidation command filter, each failure with its
 * exact errno (EIO = 5).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { IommuError } from "../../src/errno.js";
import {
  CmdOp,
  Eats,
  Ste,
  SteConfig,
  VIOMMU_ACCEPTED_OPCODES,
  VSTE_ALLOWED_MASK,
  convertViommuCmd,
  decodeCmd,
  encodeCmd,
  encodeCmdWords,
  validateVste,
  type CmdInput,
  type VsmmuContext,
  type VsmmuFeatures,
} from "../../src/hw/smmuv3/index.js";
import { wordsToBytes, wordsToQwords } from "../../src/hw/vtd/index.js";

function isErrno(code: string, errno: number) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof IommuError, `expected an IommuError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.errno, errno);
    return true;
  };
}
const EIO = isErrno("EIO", 5);

/** A vSTE (STE dwords 0 and 1) as two u64s. */
function vste(v: Parameters<typeof Ste.encodeWords>[0]): bigint[] {
  return wordsToQwords(Ste.encodeWords(v).slice(0, 4));
}

test("vSTE with V clear is accepted and becomes all zeros, whatever else it holds", () => {
  const r = validateVste([0xffff_ffff_ffff_fffen, 0xffff_ffff_ffff_ffffn]);
  assert.deepEqual([...r.ste], [0, 0, 0, 0]);
  assert.equal(r.enableAts, false);
});

test("vSTE may set only V, Config, S1Fmt, S1ContextPtr, S1CDMax (word 0) and S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS (word 1)", () => {
  assert.deepEqual(wordsToQwords(VSTE_ALLOWED_MASK as Uint32Array), [0xf80f_ffff_ffff_ffffn, 0x3800_00ffn]);
  const full = vste({
    v: 1,
    config: SteConfig.S1_TRANS,
    s1fmt: 2,
    s1ContextPtr: 0xf_ffff_ffff_ffc0,
    s1cdmax: 31,
    s1dss: 2,
    s1cir: 3,
    s1cor: 3,
    s1csh: 3,
    s1stalld: 1,
    eats: Eats.TRANS,
  });
  const r = validateVste(full);
  assert.deepEqual(wordsToQwords(r.ste), [full[0], full[1] & ~(3n << 28n)]);
  assert.equal(r.enableAts, true);
});

test("any other bit of vSTE words 0 and 1 is EIO", () => {
  for (let b = 1; b < 128; b++) {
    const q = [1n, 0n];
    q[b >> 6] |= 1n << BigInt(b & 63);
    const allowed = b < 64 ? (0xf80f_ffff_ffff_ffffn >> BigInt(b)) & 1n : (0x3800_00ffn >> BigInt(b - 64)) & 1n;
    // Keep Config/EATS legal where the bit itself is allowed: only Config bits 1-3 and EATS bit 29 need care.
    if (allowed) {
      if (b >= 1 && b <= 3) continue; // Config values are checked separately
      if (b === 64 + 29) continue; // EATS = 2 is checked separately
      assert.doesNotThrow(() => validateVste(q), `bit ${b}`);
    } else {
      assert.throws(() => validateVste(q), EIO, `bit ${b}`);
    }
  }
});

test("vSTE Config other than abort (0), bypass (4) or S1 translate (5) is EIO", () => {
  for (let cfg = 0; cfg < 8; cfg++) {
    const q = vste({ v: 1, config: cfg });
    if (cfg === 0 || cfg === 4 || cfg === 5) assert.doesNotThrow(() => validateVste(q), `config ${cfg}`);
    else assert.throws(() => validateVste(q), EIO, `config ${cfg}`);
  }
});

test("vSTE EATS S1CHK (2) or 3 is EIO; EATS is cleared and turns ATS on only with S1 translate", () => {
  for (const eats of [2, 3]) assert.throws(() => validateVste(vste({ v: 1, config: SteConfig.S1_TRANS, eats })), EIO);
  const bypass = validateVste(vste({ v: 1, config: SteConfig.BYPASS, eats: Eats.TRANS }));
  assert.equal(bypass.enableAts, false);
  assert.equal(Ste.acc.eats.get(bypass.ste, 0), 0);
  const s1 = validateVste(vste({ v: 1, config: SteConfig.S1_TRANS, eats: Eats.ABORT }));
  assert.equal(s1.enableAts, false);
});

test("vSTE validation accepts bytes, words or u64s alike and leaves its input untouched", () => {
  const words = Ste.encodeWords({ v: 1, config: 5, s1ContextPtr: 0x1000, eats: 1 }).slice(0, 4);
  const copy = words.slice();
  const a = validateVste(words);
  const b = validateVste(wordsToBytes(words));
  const c = validateVste(wordsToQwords(words));
  assert.deepEqual([...a.ste], [...b.ste]);
  assert.deepEqual([...a.ste], [...c.ste]);
  assert.deepEqual([...words], [...copy]);
  assert.throws(() => validateVste(new Uint8Array(15)), isErrno("EINVAL", 22));
});

const ctx: VsmmuContext = { vmid: 0x42, vsidToSid: (v) => (v === 7 ? 0x1234 : undefined) };

function conv(c: CmdInput, context: VsmmuContext = ctx) {
  return decodeCmd(wordsToBytes(convertViommuCmd(encodeCmd(c), context)));
}

test("vIOMMU: TLBI_NSNH_ALL becomes TLBI_NH_ALL of the vIOMMU's VMID", () => {
  const out = convertViommuCmd(encodeCmd({ kind: "tlbiNsnhAll" }), ctx);
  assert.deepEqual([...out], [CmdOp.TLBI_NH_ALL, 0x42, 0, 0]);
});

test("vIOMMU: TLBI_NH_ALL, NH_ASID, NH_VA and NH_VAA get the vIOMMU's VMID, every other field kept", () => {
  assert.deepEqual(conv({ kind: "tlbiNhAll", vmid: 9 }), { kind: "tlbiNhAll", vmid: 0x42 });
  assert.deepEqual(conv({ kind: "tlbiNhAsid", vmid: 9, asid: 0x77 }), { kind: "tlbiNhAsid", vmid: 0x42, asid: 0x77 });
  const va = { kind: "tlbiNhVa", vmid: 0xffff, asid: 3, addr: 0xffff_8000_0000_0000, leaf: 1, num: 2, scale: 1, tg: 1, ttl: 3 } as const;
  assert.deepEqual(conv(va), { ...va, vmid: 0x42 });
  assert.deepEqual(conv({ kind: "tlbiNhVaa", vmid: 1, addr: 0x1000 }), { ...decodeCmd(encodeCmd({ kind: "tlbiNhVaa", addr: 0x1000 })), vmid: 0x42 });
});

test("vIOMMU: ATC_INV, CFGI_CD and CFGI_CD_ALL get the physical SID of the vDEVICE; an unknown vSID is EIO", () => {
  assert.deepEqual(conv({ kind: "atcInv", sid: 7, ssv: 1, ssid: 3, size: 52 }), {
    kind: "atcInv",
    sid: 0x1234,
    ssv: 1,
    ssid: 3,
    size: 52,
    global: 0,
    addr: 0,
  });
  assert.deepEqual(conv({ kind: "cfgiCd", sid: 7, ssid: 5, leaf: 1 }), { kind: "cfgiCd", sid: 0x1234, ssid: 5, leaf: 1, ssec: 0 });
  assert.deepEqual(conv({ kind: "cfgiCdAll", sid: 7 }), { kind: "cfgiCdAll", sid: 0x1234, ssec: 0 });
  for (const kind of ["atcInv", "cfgiCd", "cfgiCdAll"] as const) {
    assert.throws(() => convertViommuCmd(encodeCmd({ kind, sid: 8 }), ctx), EIO, kind);
  }
});

test("vIOMMU: every other opcode (CFGI_STE, CFGI_ALL, CMD_SYNC, PRI_RESP, RESUME, TLBI_S2_IPA, ...) is EIO", () => {
  assert.deepEqual([...VIOMMU_ACCEPTED_OPCODES].sort((a, b) => a - b), [0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x30, 0x40]);
  for (let op = 0; op < 256; op++) {
    const w = new Uint32Array([op, 7, 0, 0]);
    if (VIOMMU_ACCEPTED_OPCODES.includes(op)) assert.doesNotThrow(() => convertViommuCmd(w, ctx), `op ${op}`);
    else assert.throws(() => convertViommuCmd(w, ctx), EIO, `op 0x${op.toString(16)}`);
  }
  for (const c of [{ kind: "cfgiSte", sid: 7 }, { kind: "sync" }, { kind: "priResp", sid: 7 }, { kind: "resume", sid: 7 }] as const) {
    assert.throws(() => convertViommuCmd(encodeCmd(c), ctx), EIO, c.kind);
  }
});

test("vIOMMU: the command is converted without modifying the caller's buffer", () => {
  const w = encodeCmdWords({ kind: "tlbiNhAsid", vmid: 1, asid: 2 });
  const out = convertViommuCmd(w, ctx);
  assert.equal(w[1], 0x0002_0001);
  assert.equal(out[1], 0x0002_0042);
});

const FEAT: VsmmuFeatures = { asidBits: 16, ssidBits: 20, rangeInv: true, ds: false, ats: true };
const strict: VsmmuContext = { ...ctx, strict: FEAT };

test("strict vIOMMU filter: a bit a command may not carry (e.g. SSec) is EIO only with the strict checks", () => {
  const w = encodeCmdWords({ kind: "tlbiNhVa", asid: 1, addr: 0x1000, tg: 1, ttl: 3 });
  w[0] |= 1 << 10;
  assert.doesNotThrow(() => convertViommuCmd(w, ctx));
  assert.throws(() => convertViommuCmd(w, strict), EIO);
  assert.throws(() => convertViommuCmd(encodeCmdWords({ kind: "cfgiCd", sid: 7, ssec: 1 }), strict), EIO);
  assert.doesNotThrow(() => convertViommuCmd(encodeCmdWords({ kind: "cfgiCd", sid: 7, ssid: 9, leaf: 1 }), strict));
});

test("strict vIOMMU filter: TLBI range fields follow the architecture (TG 0 forbids NUM/SCALE/TTL; TTL 0 needs a range)", () => {
  const va = (x: Partial<Record<"num" | "scale" | "tg" | "ttl", number>>) => encodeCmdWords({ kind: "tlbiNhVa", asid: 1, addr: 0x1000, ...x });
  assert.doesNotThrow(() => convertViommuCmd(va({}), strict));
  assert.throws(() => convertViommuCmd(va({ num: 1 }), strict), EIO);
  assert.throws(() => convertViommuCmd(va({ ttl: 2 }), strict), EIO);
  assert.throws(() => convertViommuCmd(va({ tg: 1 }), strict), EIO);
  assert.doesNotThrow(() => convertViommuCmd(va({ tg: 1, ttl: 3 }), strict));
  assert.doesNotThrow(() => convertViommuCmd(va({ tg: 1, num: 4, scale: 1 }), strict));
  assert.throws(() => convertViommuCmd(va({ tg: 2, ttl: 1 }), strict), EIO);
  assert.doesNotThrow(() => convertViommuCmd(va({ tg: 2, ttl: 1 }), { ...ctx, strict: { ...FEAT, ds: true } }));
  assert.throws(() => convertViommuCmd(va({ tg: 1, scale: 32 }), strict), EIO);
  assert.doesNotThrow(() => convertViommuCmd(va({ tg: 1, scale: 32 }), { ...ctx, strict: { ...FEAT, ds: true } }));
  assert.throws(() => convertViommuCmd(va({ tg: 1, num: 1 }), { ...ctx, strict: { ...FEAT, rangeInv: false } }), EIO);
});

test("strict vIOMMU filter: 8-bit ASIDs, ATC_INV without ATS or with Size above 52, SSIDs without substreams are EIO", () => {
  const asid8 = { ...ctx, strict: { ...FEAT, asidBits: 8 } };
  assert.doesNotThrow(() => convertViommuCmd(encodeCmdWords({ kind: "tlbiNhAsid", asid: 0xff }), asid8));
  assert.throws(() => convertViommuCmd(encodeCmdWords({ kind: "tlbiNhAsid", asid: 0x100 }), asid8), EIO);
  assert.throws(() => convertViommuCmd(encodeCmdWords({ kind: "atcInv", sid: 7 }), { ...ctx, strict: { ...FEAT, ats: false } }), EIO);
  assert.throws(() => convertViommuCmd(encodeCmdWords({ kind: "atcInv", sid: 7, size: 53 }), strict), EIO);
  assert.doesNotThrow(() => convertViommuCmd(encodeCmdWords({ kind: "atcInv", sid: 7, size: 52, ssv: 1, ssid: 1, global: 1 }), strict));
  assert.throws(() => convertViommuCmd(encodeCmdWords({ kind: "atcInv", sid: 7, ssv: 1 }), { ...ctx, strict: { ...FEAT, ssidBits: 0 } }), EIO);
  assert.throws(() => convertViommuCmd(encodeCmdWords({ kind: "tlbiNhAll", vmid: 1 }).map((x, i) => (i === 2 ? 1 : x)), strict), EIO);
});
