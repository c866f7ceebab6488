/**
 * VT-d CAP/ECAP (as iommu_hw_info_vtd carries them) and the fault recording register.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CapReg,
  EcapReg,
  FaultReason,
  FaultRecord,
  bytesToWords,
  capDomains,
  capFaultRegOffset,
  capFaultRegs,
  capFromU64,
  capMgawBits,
  capSupportsAw,
  capToU64,
  ecapFromU64,
  ecapPasidBits,
  ecapToU64,
  faultRecordPending,
} from "../../src/hw/vtd/index.js";
import { assertBytes, checkPlacement, qw } from "./helpers.js";

test("CAP register: every field at its position", () => {
  checkPlacement(CapReg, {
    nd: "qw0 2:0",
    afl: "qw0 3",
    rwbf: "qw0 4",
    plmr: "qw0 5",
    phmr: "qw0 6",
    cm: "qw0 7",
    sagaw: "qw0 12:8",
    mgaw: "qw0 21:16",
    zlr: "qw0 22",
    fro: "qw0 33:24",
    sslps: "qw0 37:34",
    psi: "qw0 39",
    nfr: "qw0 47:40",
    mamv: "qw0 53:48",
    dwd: "qw0 54",
    drd: "qw0 55",
    fs1gp: "qw0 56",
    pi: "qw0 59",
    fs5lp: "qw0 60",
    ecmds: "qw0 61",
    esirtps: "qw0 62",
    esrtps: "qw0 63",
  });
});

test("CAP golden: an emulated 48-bit IOMMU with caching mode, 2 MiB/1 GiB pages, PSI and one fault register at 0x220", () => {
  const cap = { nd: 6, cm: 1, sagaw: 0b00110, mgaw: 47, fro: 0x22, sslps: 3, psi: 1, mamv: 18 };
  assert.equal(capToU64(cap), 0x0012_008c_222f_0686n);
  const d = capFromU64(0x0012_008c_222f_0686n);
  assert.deepEqual({ ...d }, { ...CapReg.zero(), ...cap });
  assert.equal(capDomains(d.nd), 65536);
  assert.equal(capMgawBits(d), 48);
  assert.equal(capFaultRegOffset(d), 0x220);
  assert.equal(capFaultRegs(d), 1);
  assert.equal(capSupportsAw(d, 1), true);
  assert.equal(capSupportsAw(d, 2), true);
  assert.equal(capSupportsAw(d, 3), false);
});

test("CAP: the register's unassigned bits (15:13, 23, 38, 58:57) are reported as reserved", () => {
  const v = (1n << 13n) | (1n << 23n) | (1n << 38n) | (1n << 57n);
  assert.deepEqual(CapReg.reservedBitsSet(qw(8, v)), [13, 23, 38, 57]);
});

test("ECAP register: every field at its position", () => {
  checkPlacement(EcapReg, {
    c: "qw0 0",
    qi: "qw0 1",
    dt: "qw0 2",
    ir: "qw0 3",
    eim: "qw0 4",
    pt: "qw0 6",
    sc: "qw0 7",
    iro: "qw0 17:8",
    mhmv: "qw0 23:20",
    mts: "qw0 25",
    nest: "qw0 26",
    prs: "qw0 29",
    ers: "qw0 30",
    srs: "qw0 31",
    nwfs: "qw0 33",
    eafs: "qw0 34",
    pss: "qw0 39:35",
    pasid: "qw0 40",
    dit: "qw0 41",
    pds: "qw0 42",
    smts: "qw0 43",
    vcs: "qw0 44",
    ssads: "qw0 45",
    ssts: "qw0 46",
    fsts: "qw0 47",
    smpwcs: "qw0 48",
    rps: "qw0 49",
    pms: "qw0 51",
  });
});

test("ECAP golden: scalable mode with first- and second-stage, nesting, 20-bit PASIDs, PRS, SRS", () => {
  const ecap = { qi: 1, pt: 1, sc: 1, iro: 0xf, mhmv: 0xf, nest: 1, prs: 1, srs: 1, pss: 19, pasid: 1, smts: 1, ssts: 1, fsts: 1 };
  assert.equal(ecapToU64(ecap), 0x0000_c998_a4f0_0fc2n);
  const d = ecapFromU64(0x0000_c998_a4f0_0fc2n);
  assert.deepEqual({ ...d }, { ...EcapReg.zero(), ...ecap });
  assert.equal(ecapPasidBits(d), 20);
});

test("fault recording register: FI, SID, T2, PRIV, EXE, PP, FR, PV, AT, T1, F", () => {
  checkPlacement(FaultRecord, {
    fi: "qw0 63:12",
    sid: "qw1 15:0",
    t2: "qw1 28",
    priv: "qw1 29",
    exe: "qw1 30",
    pp: "qw1 31",
    fr: "qw1 39:32",
    pv: "qw1 59:40",
    at: "qw1 61:60",
    t1: "qw1 62",
    f: "qw1 63",
  });
  // A read without permission (reason 6) by 03:01.0 at 0x1234_5000 with PASID 0x40.
  const b = qw(16, "0x0000000012345000", "0xc000400680000308");
  const r = FaultRecord.decode(b);
  assert.deepEqual(r, { ...FaultRecord.zero(), fi: 0x1234_5000, sid: 0x308, pp: 1, fr: FaultReason.READ, pv: 0x40, t1: 1, f: 1 });
  assertBytes(FaultRecord.encode(r), b);
  assert.equal(faultRecordPending(bytesToWords(b)), true);
  assert.equal(faultRecordPending(bytesToWords(qw(16, "0x1000", "0x4000000000000000"))), false);
});
