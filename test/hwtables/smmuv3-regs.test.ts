/**
 * SMMUv3 ID registers as iommu_hw_info_arm_smmuv3 reports them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Aidr, HW_INFO_RELIABLE_MASK, Idr0, Idr1, Idr3, Idr5, Iidr, oasBits, oasCode } from "../../src/hw/smmuv3/index.js";
import { checkPlacement } from "./helpers.js";

// The registers are 32 bits; "qw0 hi:lo" positions lie in the low half.
test("IDR0: every field at its position", () => {
  checkPlacement(Idr0, {
    s2p: "qw0 0",
    s1p: "qw0 1",
    ttf: "qw0 3:2",
    cohacc: "qw0 4",
    btm: "qw0 5",
    httu: "qw0 7:6",
    dormhint: "qw0 8",
    hyp: "qw0 9",
    ats: "qw0 10",
    ns1ats: "qw0 11",
    asid16: "qw0 12",
    msi: "qw0 13",
    sev: "qw0 14",
    atos: "qw0 15",
    pri: "qw0 16",
    vmw: "qw0 17",
    vmid16: "qw0 18",
    cd2l: "qw0 19",
    vatos: "qw0 20",
    ttendian: "qw0 22:21",
    atsrecerr: "qw0 23",
    stallModel: "qw0 25:24",
    termModel: "qw0 26",
    stLevel: "qw0 28:27",
    rmeImpl: "qw0 30",
  });
});

test("IDR1, IDR3, IDR5, IIDR and AIDR: every field at its position", () => {
  checkPlacement(Idr1, {
    sidsize: "qw0 5:0",
    ssidsize: "qw0 10:6",
    priqs: "qw0 15:11",
    eventqs: "qw0 20:16",
    cmdqs: "qw0 25:21",
    attrPermsOvr: "qw0 26",
    attrTypesOvr: "qw0 27",
    rel: "qw0 28",
    queuesPreset: "qw0 29",
    tablesPreset: "qw0 30",
    ecmdq: "qw0 31",
  });
  checkPlacement(Idr3, {
    had: "qw0 2",
    pbha: "qw0 3",
    xnx: "qw0 4",
    pps: "qw0 5",
    mpam: "qw0 7",
    fwb: "qw0 8",
    stt: "qw0 9",
    ril: "qw0 10",
    bbml: "qw0 12:11",
    e0pd: "qw0 13",
    ptwnnc: "qw0 14",
    dpt: "qw0 15",
  });
  checkPlacement(Idr5, { oas: "qw0 2:0", gran4k: "qw0 4", gran16k: "qw0 5", gran64k: "qw0 6", vax: "qw0 11:10", stallMax: "qw0 31:16" });
  checkPlacement(Iidr, { implementer: "qw0 11:0", revision: "qw0 15:12", variant: "qw0 19:16", productId: "qw0 31:20" });
  checkPlacement(Aidr, { archMinorRev: "qw0 3:0", archMajorRev: "qw0 7:4" });
});

test("IDR golden: a two-level-stream-table SMMU with S1+S2, AArch64 tables, 16-bit ASID/VMID, CD2L, ATS, PRI", () => {
  const idr0 = Idr0.encodeWords({ s1p: 1, s2p: 1, ttf: 2, cohacc: 1, httu: 2, asid16: 1, vmid16: 1, cd2l: 1, ats: 1, pri: 1, msi: 1, ttendian: 2, stLevel: 1 })[0];
  assert.equal(idr0, 0x084d_349b);
  const idr1 = Idr1.encodeWords({ sidsize: 32, ssidsize: 20, priqs: 19, eventqs: 19, cmdqs: 19 })[0];
  assert.equal(idr1, 0x0273_9d20);
  const idr5 = Idr5.encodeWords({ oas: 5, gran4k: 1, gran64k: 1, stallMax: 0x80 })[0];
  assert.equal(idr5, 0x0080_0055);
  assert.equal(oasBits(Idr5.decodeWords(new Uint32Array([idr5])).oas), 48);
  assert.equal(oasCode(52), 6);
  assert.equal(oasBits(7), -1);
});

test("the hw_info bits userspace may rely on: IDR0 ST_LEVEL/TERM_MODEL/STALL_MODEL/TTENDIAN/CD2L/ASID16/TTF, IDR1 SIDSIZE/SSIDSIZE, IDR3 BBML/RIL, IDR5 VAX/GRAN*", () => {
  assert.equal(HW_INFO_RELIABLE_MASK.idr0, (3 << 27) | (1 << 26) | (3 << 24) | (3 << 21) | (1 << 19) | (1 << 12) | (3 << 2));
  assert.equal(HW_INFO_RELIABLE_MASK.idr1, 0x7ff);
  assert.equal(HW_INFO_RELIABLE_MASK.idr3, (3 << 11) | (1 << 10));
  assert.equal(HW_INFO_RELIABLE_MASK.idr5, (3 << 10) | (7 << 4));
});
