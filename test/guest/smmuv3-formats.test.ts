/**
 * Guest-visible SMMUv3 formats bit by bit, against hand-computed words from the SMMUv3
 * specification's field positions: the STEs and CDs the guest driver writes into guest RAM, the
 * commands it issues (CFGI_*, TLBI_NH_VA ranges, RESUME), and the event records the VMM injects
 * into the guest's event queue. Also a model test of the guest's TLBI ranges.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { bootSmmuGuest } from "../../src/guest/smmuv3/setup.js";
import { GuestProcess } from "../../src/guest/process.js";
import { CmdOp, CmdTlbiNhVa } from "../../src/hw/smmuv3/cmdq.js";
import { defaultIdRegs } from "../../src/hw/smmuv3/unit-regs.js";
import { Idr3 } from "../../src/hw/smmuv3/regs.js";
import { HostMachine } from "../../src/guest/machine.js";
import { Vm } from "../../src/guest/vm.js";
import { VSmmu } from "../../src/guest/smmuv3/vsmmu.js";
import { vsmmuIdRegs } from "../../src/guest/smmuv3/vmm.js";
import { GuestSmmuDriver } from "../../src/guest/smmuv3/guest-driver.js";

const PAGE = 4096;

function lo(x: number): number {
  return x % 2 ** 32 >>> 0;
}
function hi(x: number): number {
  return Math.floor(x / 2 ** 32);
}

test("the STE the guest writes for SVA is arm_smmu_make_cdtable_ste bit for bit: V, Config 0b101, S1Fmt 64K_L2, S1ContextPtr, S1CDMax 20, S1DSS, S1CIR/COR WBRA, S1CSH ISH, S1STALLD for a master that cannot stall", () => {
  for (const canStall of [true, false]) {
    const g = bootSmmuGuest({ dev: { canStall }, ramBytes: 16 << 20, guest: { traceCommands: true } });
    const proc = new GuestProcess(g.vm, "arm64");
    g.guest.svaBind(g.vsid, proc);
    const ste = g.guest.readWords(g.guest.stePa(g.vsid), 16);
    const cdt = g.master.cd?.base ?? -1;
    assert.equal(cdt % 64, 0);
    // dword 0: V (0) | Config 5 (3:1) | S1Fmt 2 (5:4) | S1ContextPtr (51:6) | S1CDMax 20 (63:59)
    assert.equal(ste[0], (1 | (5 << 1) | (2 << 4) | lo(cdt)) >>> 0);
    assert.equal(ste[1], (hi(cdt) | (20 << 27)) >>> 0);
    // dword 1: S1DSS 0 = terminate (blocked RID) | S1CIR 1 (3:2) | S1COR 1 (5:4) | S1CSH 3 (7:6) | S1STALLD (27)
    assert.equal(ste[2], ((1 << 2) | (1 << 4) | (3 << 6) | (canStall ? 0 : 1 << 27)) >>> 0);
    for (let i = 3; i < 16; i++) assert.equal(ste[i], 0, `STE word ${i}`);
    // the RID in bypass: S1DSS = 1
    g.guest.attachRid(g.vsid, "bypass");
    assert.equal(g.guest.readWords(g.guest.stePa(g.vsid), 3)[2] & 3, 1);
  }
});

test("the L1 stream table descriptor and the L1 CD descriptor: Span 9 with L2Ptr, V with L2Ptr (4 KiB aligned)", () => {
  const g = bootSmmuGuest({ ramBytes: 16 << 20, vsid: 0x123 });
  const proc = new GuestProcess(g.vm, "arm64");
  g.guest.svaBind(g.vsid, proc, 0x405);
  const l1 = g.guest.readWords(g.guest.strtab + 1 * 8, 2);
  const l2 = g.guest.stePa(0x123) - 0x23 * 64;
  assert.equal(l1[0], (9 | lo(l2)) >>> 0, "Span = SPLIT + 1 = 9 (bits 4:0), L2Ptr (51:6)");
  assert.equal(l1[1], hi(l2));
  const cd = g.master.cd;
  assert.ok(cd);
  const l1cd = g.guest.readWords(cd.base + 1 * 8, 2); // SSID 0x405 is in leaf 1 (1024 CDs each)
  const leaf = cd.l2.get(1) ?? -1;
  assert.equal(leaf % PAGE, 0);
  assert.equal(l1cd[0], (1 | lo(leaf)) >>> 0);
  assert.equal(l1cd[1], hi(leaf));
  assert.equal(g.guest.readWords(cd.base, 2)[0], 0, "leaf 0 was never made");
});

test("the CD for an SVA bond is arm_smmu_make_sva_cd bit for bit: T0SZ 16, TG0 4K, IR0/OR0 WBWA, SH0 ISH, EPD1, V, IPS, AA64, S, R, A, ASET, ASID, TTB0 = the process's table, MAIR = the CPU's", () => {
  const g = bootSmmuGuest({ ramBytes: 16 << 20 });
  const p1 = new GuestProcess(g.vm, "arm64");
  const p2 = new GuestProcess(g.vm, "arm64");
  g.guest.svaBind(g.vsid, p1);
  const b = g.guest.svaBind(g.vsid, p2);
  assert.equal(b.ssid, 2, "the second process gets the next PASID");
  assert.equal(b.asid, 2);
  const cd = g.master.cd;
  assert.ok(cd);
  const w = g.guest.readWords((cd.l2.get(0) as number) + 2 * 64, 16);
  // word 0: T0SZ 16 (5:0) | TG0 0 (7:6) | IR0 1 (9:8) | OR0 1 (11:10) | SH0 3 (13:12) | EPD1 (30) | V (31)
  assert.equal(w[0], (16 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 30) | (1 << 31)) >>> 0);
  assert.equal(w[0], 0xc0003510);
  // word 1: IPS 5 (34:32) | AA64 (41) | S (44) | R (45) | A (46) | ASET (47) | ASID 2 (63:48)
  assert.equal(w[1], (5 | (1 << 9) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 15) | (2 << 16)) >>> 0);
  // dword 1: TTB0 (51:4)
  assert.equal(w[2], lo(p2.rootGpa));
  assert.equal(w[3], hi(p2.rootGpa));
  // dword 3: MAIR_EL1 as Linux 6.12 sets it (proc.S MAIR_EL1_SET): attr 0 Normal 0xff, 1 Normal
  // 0xff (the MT_NORMAL_TAGGED slot without MTE), 2 Normal-NC 0x44, 3 nGnRnE 0x00, 4 nGnRE 0x04
  assert.equal(w[6], 0x0044ffff);
  assert.equal(w[7], 0x00000004);
  for (const i of [4, 5, 8, 9, 10, 11, 12, 13, 14, 15]) assert.equal(w[i], 0, `CD word ${i}`);
});

test("the commands the guest issues, bit for bit: CFGI_STE, CFGI_CD (SSID, SID, Leaf), TLBI_NH_ASID, TLBI_NH_VA with NUM/SCALE/TG, CMD_SYNC with CS = SEV", () => {
  const g = bootSmmuGuest({ ramBytes: 16 << 20, guest: { traceCommands: true } });
  const proc = new GuestProcess(g.vm, "arm64");
  const log = g.guest.commandLog ?? [];
  const n0 = log.length;
  const b = g.guest.svaBind(g.vsid, proc);
  const bindCmds = log.slice(n0).map((w) => [...w]);
  const sync = [CmdOp.CMD_SYNC | (2 << 12) | (3 << 22) | (0xf << 24), 0, 0, 0];
  assert.deepEqual(bindCmds, [
    [CmdOp.CFGI_CD | (1 << 12), 8, 0, 0], // the new L1 CD descriptor (Leaf = 0)
    sync,
    [CmdOp.CFGI_CD | (1 << 12), 8, 1, 0], // the CD (Leaf = 1)
    sync,
    [CmdOp.CFGI_STE, 8, 1, 0], // break: V = 0
    sync,
    [CmdOp.CFGI_STE, 8, 1, 0], // the CD-table STE
    sync,
  ]);
  const n1 = log.length;
  proc.map(0x12340, 5);
  g.guest.unmapAndInvalidate(proc, 0x12340, 5);
  // 5 pages, Leaf = 0, RIL: one range of NUM + 1 = 5 pages at SCALE 0 (NUM 16:12, SCALE 25:20;
  // TG 4 KiB = 1 at bits 75:74, TTL 0, Leaf 0; the address from bit 76 up, in place)
  assert.deepEqual(
    log.slice(n1).map((w) => [...w]),
    [[CmdOp.TLBI_NH_VA | (4 << 12) | (0 << 20), b.asid << 16, (1 << 10) | lo(0x12340 * PAGE), hi(0x12340 * PAGE)], sync],
  );
  // one page, non-leaf: two pages (SCALE 1, NUM 0), never NUM = SCALE = 0
  assert.deepEqual([...g.guest.tlbiRange(b.asid, 0x500, 1)[0]], [CmdOp.TLBI_NH_VA | (1 << 20), b.asid << 16, (1 << 10) | lo(0x500 * PAGE), 0]);
  const n2 = log.length;
  g.guest.svaUnbind(b);
  const unbind = log.slice(n2).map((w) => [...w]);
  assert.deepEqual(unbind[0], [CmdOp.CFGI_CD | (1 << 12), 8, 1, 0], "the CD cleared (V first)");
  assert.ok(unbind.some((w) => w[0] === CmdOp.TLBI_NH_ASID && w[1] === b.asid << 16), "TLBI_NH_ASID of the bond's ASID");
  assert.deepEqual(g.guest.readWords(g.guest.stePa(g.vsid), 2), new Uint32Array([1, 0]), "back to the abort STE (V, Config 0)");
});

test("without RIL the guest invalidates page by page, and past 512 pages the whole ASID", () => {
  const vm = new Vm(new HostMachine({ iommu: "smmuv3" }), { ramBytes: 4 << 20 });
  const host = { ...defaultIdRegs(), idr3: Idr3.encodeWords({ ril: 0 })[0] };
  const noop = { steChanged: () => null, invalidate: (c: readonly Uint32Array[]) => ({ done: c.length, errno: null }), resume: () => {}, stallTerm: () => {}, configChanged: () => {} };
  const g = new GuestSmmuDriver(vm, new VSmmu(vm.ram, vsmmuIdRegs(host), noop));
  const three = g.tlbiRange(7, 0x100, 3);
  assert.deepEqual(
    three.map((w) => [...w]),
    [0x100, 0x101, 0x102].map((p) => [CmdOp.TLBI_NH_VA, 7 << 16, lo(p * PAGE), hi(p * PAGE)]),
  );
  assert.deepEqual(
    g.tlbiRange(7, 0x100, 512).map((w) => [...w]),
    [[CmdOp.TLBI_NH_ASID, 7 << 16, 0, 0]],
  );
});

test("the guest's range TLBIs cover exactly the unmapped pages (one more for a single-page non-leaf range, as Linux), model", () => {
  const g = bootSmmuGuest({ ramBytes: 8 << 20 });
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 36 }), fc.integer({ min: 1, max: 5000 }), (vpn, n) => {
      const covered = new Set<number>();
      for (const w of g.guest.tlbiRange(3, vpn, n)) {
        const c = CmdTlbiNhVa.decodeWords(w);
        assert.equal(c.tg, 1, "4 KiB granule");
        assert.equal(c.ttl, 0);
        assert.equal(c.leaf, 0);
        const start = c.addr / PAGE;
        const count = (c.num + 1) * 2 ** c.scale;
        for (let p = start; p < start + count; p++) {
          assert.ok(!covered.has(p), "no page twice");
          covered.add(p);
        }
      }
      for (let p = vpn; p < vpn + n; p++) assert.ok(covered.has(p), `page ${p} invalidated`);
      const extra = (n & 31) === 1 ? 1 : 0;
      assert.equal(covered.size, n + extra);
    }),
    { numRuns: 200 },
  );
});
