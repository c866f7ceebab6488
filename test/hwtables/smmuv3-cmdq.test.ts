/**
 * SMMUv3 command queue entries: field positions of every command, golden commands as
 * arm_smmu_cmdq_build_cmd encodes them, dispatch on the opcode.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CMD_LAYOUTS,
  CmdOp,
  PriResp,
  ResumeAction,
  SyncCs,
  cfgiAll,
  cmdKindOfOpcode,
  cmdOpcode,
  decodeCmd,
  encodeCmd,
  encodeCmdWords,
} from "../../src/hw/smmuv3/index.js";
import { assertBytes, checkPlacement, qw } from "./helpers.js";

const RANGE = { num: "qw0 16:12", scale: "qw0 25:20", leaf: "qw1 0", ttl: "qw1 9:8", tg: "qw1 11:10" };

test("every command has its opcode in bits 7:0 and its fields at their positions", () => {
  const L = CMD_LAYOUTS;
  checkPlacement(L.prefetchConfig, { ssec: "qw0 10", ssv: "qw0 11", ssid: "qw0 31:12", sid: "qw0 63:32" });
  checkPlacement(L.cfgiSte, { ssec: "qw0 10", sid: "qw0 63:32", leaf: "qw1 0" });
  checkPlacement(L.cfgiSteRange, { ssec: "qw0 10", sid: "qw0 63:32", range: "qw1 4:0" });
  checkPlacement(L.cfgiCd, { ssec: "qw0 10", ssid: "qw0 31:12", sid: "qw0 63:32", leaf: "qw1 0" });
  checkPlacement(L.cfgiCdAll, { ssec: "qw0 10", sid: "qw0 63:32" });
  checkPlacement(L.tlbiNhAll, { vmid: "qw0 47:32" });
  checkPlacement(L.tlbiNhAsid, { vmid: "qw0 47:32", asid: "qw0 63:48" });
  checkPlacement(L.tlbiNhVa, { ...RANGE, vmid: "qw0 47:32", asid: "qw0 63:48", addr: "qw1 63:12" });
  checkPlacement(L.tlbiNhVaa, { ...RANGE, vmid: "qw0 47:32", addr: "qw1 63:12" });
  checkPlacement(L.tlbiS12Vmall, { vmid: "qw0 47:32" });
  checkPlacement(L.tlbiS2Ipa, { ...RANGE, vmid: "qw0 47:32", addr: "qw1 51:12" });
  checkPlacement(L.tlbiNsnhAll, {});
  checkPlacement(L.atcInv, { global: "qw0 9", ssv: "qw0 11", ssid: "qw0 31:12", sid: "qw0 63:32", size: "qw1 5:0", addr: "qw1 63:12" });
  checkPlacement(L.priResp, { ssv: "qw0 11", ssid: "qw0 31:12", sid: "qw0 63:32", prgIndex: "qw1 8:0", resp: "qw1 13:12" });
  checkPlacement(L.resume, { ssec: "qw0 10", action: "qw0 13:12", sid: "qw0 63:32", stag: "qw1 15:0" });
  checkPlacement(L.stallTerm, { ssec: "qw0 10", sid: "qw0 63:32" });
  checkPlacement(L.sync, { cs: "qw0 13:12", msh: "qw0 23:22", msiattr: "qw0 27:24", msidata: "qw0 63:32", msiaddr: "qw1 51:2" });
});

test("the opcodes are the architected values", () => {
  const ops = Object.fromEntries(Object.entries(CMD_LAYOUTS).map(([k, l]) => [k, l.fixedValue[0]]));
  assert.deepEqual(ops, {
    prefetchConfig: 0x01,
    cfgiSte: 0x03,
    cfgiSteRange: 0x04,
    cfgiCd: 0x05,
    cfgiCdAll: 0x06,
    tlbiNhAll: 0x10,
    tlbiNhAsid: 0x11,
    tlbiNhVa: 0x12,
    tlbiNhVaa: 0x13,
    tlbiS12Vmall: 0x28,
    tlbiS2Ipa: 0x2a,
    tlbiNsnhAll: 0x30,
    atcInv: 0x40,
    priResp: 0x41,
    resume: 0x44,
    stallTerm: 0x45,
    sync: 0x46,
  });
});

test("CFGI golden: CFGI_STE leaf, CFGI_ALL as CFGI_STE_RANGE with Range 31, CFGI_CD leaf, CFGI_CD_ALL", () => {
  assertBytes(encodeCmd({ kind: "cfgiSte", sid: 0x10, leaf: 1 }), qw(16, "0x0000001000000003", "0x1"));
  assertBytes(encodeCmd(cfgiAll()), qw(16, "0x4", "0x1f"));
  assertBytes(encodeCmd({ kind: "cfgiCd", sid: 0x10, ssid: 5, leaf: 1 }), qw(16, "0x0000001000005005", "0x1"));
  assertBytes(encodeCmd({ kind: "cfgiCdAll", sid: 0xffff_ffff }), qw(16, "0xffffffff00000006", "0x0"));
});

test("TLBI golden: NH_VA with range fields and a kernel VA, S2_IPA, NSNH_ALL, NH_ASID", () => {
  assertBytes(
    encodeCmd({ kind: "tlbiNhVa", asid: 0xabcd, vmid: 3, addr: 0xffff_8000_0000_1000, leaf: 1, num: 1, scale: 2, tg: 1, ttl: 3 }),
    qw(16, "0xabcd000300201012", "0xffff800000001701"),
  );
  assertBytes(encodeCmd({ kind: "tlbiS2Ipa", vmid: 7, addr: 0xf_ffff_ffff_f000, leaf: 1 }), qw(16, "0x000000070000002a", "0x000ffffffffff001"));
  assertBytes(encodeCmd({ kind: "tlbiNsnhAll" }), qw(16, "0x30", "0x0"));
  assertBytes(encodeCmd({ kind: "tlbiNhAsid", vmid: 1, asid: 2 }), qw(16, "0x0002000100000011", "0x0"));
  // The top-half VA survives decoding (a 4 KiB-aligned 64-bit address is exact as a number).
  const d = decodeCmd(qw(16, "0xabcd000300201012", "0xffff800000001701"));
  assert.ok(d.kind === "tlbiNhVa" && d.addr === 0xffff_8000_0000_1000 && d.asid === 0xabcd && d.scale === 2);
});

test("ATC_INV, PRI_RESP, RESUME and CMD_SYNC golden", () => {
  assertBytes(encodeCmd({ kind: "atcInv", sid: 0x100, ssv: 1, ssid: 0x20, size: 52 }), qw(16, "0x0000010000020840", "0x34"));
  assertBytes(
    encodeCmd({ kind: "priResp", sid: 0x100, ssv: 1, ssid: 3, prgIndex: 0x1ff, resp: PriResp.SUCCESS }),
    qw(16, "0x0000010000003841", "0x21ff"),
  );
  assertBytes(encodeCmd({ kind: "resume", sid: 0x22, action: ResumeAction.RETRY, stag: 0xbeef }), qw(16, "0x0000002200001044", "0xbeef"));
  assertBytes(
    encodeCmd({ kind: "sync", cs: SyncCs.IRQ, msh: 3, msiattr: 0xf, msiaddr: 0x1234_5678 }),
    qw(16, "0x000000000fc01046", "0x0000000012345678"),
  );
});

test("decoding dispatches on the opcode; unknown opcodes decode as unknown", () => {
  assert.deepEqual(decodeCmd(qw(16, "0x0000001000000003", "0x1")), { kind: "cfgiSte", ssec: 0, sid: 0x10, leaf: 1 });
  assert.deepEqual(decodeCmd(qw(16, "0x7", "0x0")), { kind: "unknown", opcode: 7 });
  assert.deepEqual(decodeCmd(qw(16, "0x20", "0x0")), { kind: "unknown", opcode: CmdOp.TLBI_EL2_ALL });
  assert.equal(cmdKindOfOpcode(0x46), "sync");
  assert.equal(cmdOpcode(encodeCmdWords({ kind: "resume" })), 0x44);
  // Reserved bits: PRI_RESP bits 10:8 of dword 0 and bits 11:9 of dword 1.
  assert.deepEqual(CMD_LAYOUTS.priResp.reservedBitsSet(qw(16, "0x541", "0x200")), [8, 10, 73]);
});
