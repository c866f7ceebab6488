/**
 * SMMUv3 unit caches: STEs, CDs and translations stay as first fetched until exactly the
 * invalidation that covers them, and the fast paths agree with a naive per-page model under
 * random maps, unmaps, configuration changes and invalidations.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { S1Dss, SteConfig } from "../../src/hw/smmuv3/tables.js";
import type { CmdInput } from "../../src/hw/smmuv3/cmdq.js";
import { Rig, RW, linuxCd, s2Fields } from "./smmuv3-unit-harness.js";

test("a cached STE keeps being used until CFGI_STE of its StreamID (or a range or CFGI_ALL covering it)", () => {
  const rig = new Rig();
  const u = rig.unit;
  for (const sid of [4, 5]) rig.writeSte(sid, { v: 1, config: SteConfig.BYPASS });
  assert.equal(u.translatePage(4, -1, 9, false), 9);
  assert.equal(u.translatePage(5, -1, 9, false), 9);
  for (const sid of [4, 5]) rig.writeSte(sid, { v: 1, config: SteConfig.ABORT });
  const stale: CmdInput[] = [
    { kind: "cfgiSte", sid: 6, leaf: 1 },
    { kind: "cfgiCd", sid: 4, ssid: 0, leaf: 1 },
    { kind: "cfgiCdAll", sid: 4 },
    { kind: "cfgiSteRange", sid: 6, range: 0 }, // SIDs 6..7
    { kind: "tlbiNsnhAll" },
  ];
  for (const c of stale) {
    rig.cmd(c, { kind: "sync" });
    assert.equal(u.translatePage(4, -1, 9, false), 9, `${c.kind} does not refresh SID 4`);
  }
  rig.cmd({ kind: "cfgiSteRange", sid: 5, range: 0 }); // SIDs 4..5
  assert.equal(u.translatePage(4, -1, 9, false), -1);
  assert.equal(u.translatePage(5, -1, 9, false), -1);
  rig.writeSte(4, { v: 1, config: SteConfig.BYPASS });
  rig.writeSte(5, { v: 1, config: SteConfig.BYPASS });
  assert.equal(u.translatePage(4, -1, 9, false), -1, "invalid configurations are not cached, but valid ones are");
  rig.cmd({ kind: "cfgiSte", sid: 4, leaf: 1 });
  assert.equal(u.translatePage(4, -1, 9, false), 9);
  assert.equal(u.translatePage(5, -1, 9, false), -1);
  rig.cmd({ kind: "cfgiSteRange", sid: 0, range: 31 }); // CFGI_ALL
  assert.equal(u.translatePage(5, -1, 9, false), 9);
});

test("a cached CD keeps being used until CFGI_CD of its (StreamID, SubstreamID), CFGI_CD_ALL or a CFGI_STE of the stream", () => {
  const rig = new Rig();
  const u = rig.unit;
  const a = rig.s1Table();
  const b = rig.s1Table();
  const pa = rig.dataPages(1);
  const pb = rig.dataPages(1);
  a.map(0x10, pa, 1, RW);
  b.map(0x10, pb, 1, RW);
  const cdt = rig.alloc(1);
  rig.writeCd(cdt + 64, linuxCd(a.root * 4096, 1));
  rig.writeCd(cdt + 128, linuxCd(a.root * 4096, 2));
  rig.writeSte(3, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt, s1cdmax: 2, s1dss: S1Dss.BYPASS });
  assert.equal(u.translatePage(3, 1, 0x10, false), pa);
  assert.equal(u.translatePage(3, 2, 0x10, false), pa);
  // Retarget both CDs to table b with new ASIDs (so no TLB entry can answer for the new ones).
  rig.writeCd(cdt + 64, linuxCd(b.root * 4096, 11));
  rig.writeCd(cdt + 128, linuxCd(b.root * 4096, 12));
  rig.cmd({ kind: "cfgiCd", sid: 3, ssid: 2, leaf: 1 }, { kind: "cfgiCd", sid: 4, ssid: 1, leaf: 1 });
  assert.equal(u.translatePage(3, 1, 0x10, false), pa, "SSID 1's CD is still the cached one");
  assert.equal(u.translatePage(3, 2, 0x10, false), pb, "SSID 2's CD was refetched");
  assert.ok(u.cdCached(3, 1));
  rig.cmd({ kind: "cfgiCdAll", sid: 3 });
  assert.ok(!u.cdCached(3, 1));
  assert.equal(u.translatePage(3, 1, 0x10, false), pb);
  // CFGI_STE drops the CDs fetched through the STE as well
  rig.writeCd(cdt + 64, linuxCd(a.root * 4096, 21));
  assert.equal(u.translatePage(3, 1, 0x10, false), pb);
  rig.cmd({ kind: "cfgiSte", sid: 3, leaf: 1 });
  assert.equal(u.translatePage(3, 1, 0x10, false), pa);
});

test("an invalid L1CD is cached: a new leaf table is used only after CFGI_CD with Leaf = 0", () => {
  const rig = new Rig();
  const u = rig.unit;
  const pt = rig.s1Table();
  const p = rig.dataPages(1);
  pt.map(0x20, p, 1, RW);
  const l1 = rig.alloc(1);
  rig.writeSte(7, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: l1, s1cdmax: 8, s1fmt: 1, s1dss: S1Dss.BYPASS });
  assert.equal(u.translatePage(7, 3, 0x20, false), -1);
  const leaf = rig.alloc(1);
  rig.writeCd(leaf + 3 * 64, linuxCd(pt.root * 4096, 9));
  rig.writeL1Cd(l1, leaf);
  rig.cmd({ kind: "cfgiCd", sid: 7, ssid: 3, leaf: 1 });
  assert.equal(u.translatePage(7, 3, 0x20, false), -1, "Leaf = 1 leaves the L1CD cached");
  rig.cmd({ kind: "cfgiCd", sid: 7, ssid: 3, leaf: 0 });
  assert.equal(u.translatePage(7, 3, 0x20, false), p);
});

test("a TLB entry keeps translating after unmap until the TLBI that matches its ASID/VMID and address", () => {
  const rig = new Rig();
  const u = rig.unit;
  const pt = rig.s1Table();
  const p = rig.dataPages(2);
  pt.map(0x40, p, 2, RW);
  const cdt = rig.alloc(1);
  rig.writeCd(cdt, linuxCd(pt.root * 4096, 7));
  rig.writeSte(2, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt, s2vmid: 0 });
  assert.equal(u.translatePage(2, -1, 0x40, false), p);
  assert.equal(u.translatePage(2, -1, 0x41, false), p + 1);
  pt.unmap(0x40, 2);
  const misses: CmdInput[] = [
    { kind: "tlbiNhVa", asid: 8, vmid: 0, addr: 0x40000 },
    { kind: "tlbiNhVa", asid: 7, vmid: 1, addr: 0x40000 },
    { kind: "tlbiNhVa", asid: 7, vmid: 0, addr: 0x42000 },
    { kind: "tlbiNhAsid", asid: 6, vmid: 0 },
    { kind: "tlbiNhAll", vmid: 5 },
    { kind: "tlbiS2Ipa", vmid: 0, addr: 0x40000 },
    { kind: "tlbiS12Vmall", vmid: 9 },
    { kind: "cfgiSteRange", sid: 0, range: 31 },
  ];
  for (const c of misses) {
    rig.cmd(c, { kind: "sync" });
    assert.equal(u.translatePage(2, -1, 0x40, false), p, `${c.kind} ${JSON.stringify(c)} leaves it`);
  }
  rig.cmd({ kind: "tlbiNhVa", asid: 7, vmid: 0, addr: 0x40000 });
  assert.equal(u.translatePage(2, -1, 0x40, false), -1);
  assert.equal(u.translatePage(2, -1, 0x41, false), p + 1);
  // a range (TG = 4 KiB, NUM = 1 -> 2 pages) starting below it ends before page 0x41
  rig.cmd({ kind: "tlbiNhVa", asid: 7, vmid: 0, addr: 0x3f000, tg: 1, num: 1, scale: 0 });
  assert.equal(u.translatePage(2, -1, 0x41, false), p + 1);
  rig.cmd({ kind: "tlbiNhVa", asid: 7, vmid: 0, addr: 0x3f000, tg: 1, num: 2, scale: 0 });
  assert.equal(u.translatePage(2, -1, 0x41, false), -1);
});

test("each TLBI drops exactly its entries: NH_ASID, NH_VAA, NH_ALL by VMID, S12_VMALL, S2_IPA for stage-2 entries, NSNH_ALL", () => {
  type Scenario = { cmd: CmdInput; dropped: string[] };
  const scenarios: Scenario[] = [
    { cmd: { kind: "tlbiNhAsid", asid: 1, vmid: 0 }, dropped: ["s1a"] },
    { cmd: { kind: "tlbiNhVaa", vmid: 0, addr: 0x10000 }, dropped: ["s1a", "s1b"] },
    { cmd: { kind: "tlbiNhAll", vmid: 0 }, dropped: ["s1a", "s1b"] },
    { cmd: { kind: "tlbiNhAll", vmid: 5 }, dropped: [] },
    { cmd: { kind: "tlbiS2Ipa", vmid: 5, addr: 0x10000 }, dropped: ["s2"] },
    { cmd: { kind: "tlbiS12Vmall", vmid: 5 }, dropped: ["s2"] },
    { cmd: { kind: "tlbiS12Vmall", vmid: 0 }, dropped: ["s1a", "s1b"] },
    { cmd: { kind: "tlbiNsnhAll" }, dropped: ["s1a", "s1b", "s2"] },
  ];
  for (const sc of scenarios) {
    const rig = new Rig();
    const u = rig.unit;
    const pt = rig.s1Table();
    const s2 = rig.s2Table();
    const p = rig.dataPages(1);
    pt.map(0x10, p, 1, RW);
    s2.map(0x10, p, 1, RW);
    const cdt = rig.alloc(1);
    rig.writeCd(cdt, linuxCd(pt.root * 4096, 1));
    rig.writeCd(cdt + 64, linuxCd(pt.root * 4096, 2));
    rig.writeSte(1, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt });
    rig.writeSte(2, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt + 64 });
    rig.writeSte(3, { v: 1, config: SteConfig.S2_TRANS, ...s2Fields(s2.root * 4096, 5) });
    const streams: Record<string, number> = { s1a: 1, s1b: 2, s2: 3 };
    for (const sid of Object.values(streams)) assert.equal(u.translatePage(sid, -1, 0x10, false), p);
    pt.unmap(0x10, 1);
    s2.unmap(0x10, 1);
    rig.cmd(sc.cmd, { kind: "sync" });
    const gone = Object.entries(streams)
      .filter(([, sid]) => u.translatePage(sid, -1, 0x10, false) === -1)
      .map(([k]) => k);
    assert.deepEqual(gone, sc.dropped, JSON.stringify(sc.cmd));
  }
});

test("model: under random maps, unmaps, CD retargeting and invalidations the unit answers as a naive cache model", () => {
  // Reference: memory (two page tables, the CD in memory) and what the hardware may have
  // cached (the CD it fetched, and per (ASID, page) the translation it walked). A translation
  // uses the cached CD if any, else fetches; then the cached (ASID, page) entry, else walks.
  const PAGES = 8;
  const op = fc.oneof(
    fc.record({ t: fc.constant("map" as const), table: fc.integer({ min: 0, max: 1 }), page: fc.nat(PAGES - 1), frame: fc.nat(7) }),
    fc.record({ t: fc.constant("unmap" as const), table: fc.integer({ min: 0, max: 1 }), page: fc.nat(PAGES - 1) }),
    fc.record({ t: fc.constant("retarget" as const), table: fc.integer({ min: 0, max: 1 }) }),
    fc.record({ t: fc.constant("cfgiCd" as const) }),
    fc.record({ t: fc.constant("tlbiVa" as const), asid: fc.integer({ min: 1, max: 2 }), page: fc.nat(PAGES - 1), n: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ t: fc.constant("tlbiAsid" as const), asid: fc.integer({ min: 1, max: 2 }) }),
    fc.record({ t: fc.constant("translate" as const), page: fc.nat(PAGES - 1), write: fc.boolean() }),
  );
  fc.assert(
    fc.property(fc.array(op, { minLength: 10, maxLength: 80, size: "max" }), (ops) => {
      const rig = new Rig();
      const u = rig.unit;
      const tables = [rig.s1Table(), rig.s1Table()];
      const frames = rig.dataPages(8);
      const cdt = rig.alloc(1);
      const writeCd = (t: number): void => rig.writeCd(cdt, linuxCd(tables[t].root * 4096, t + 1));
      writeCd(0);
      rig.writeSte(1, { v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt });
      const mem: Map<number, number>[] = [new Map(), new Map()];
      let memCd = 0;
      let cachedCd: number | null = null;
      const tlb = new Map<string, number>();
      for (const o of ops) {
        switch (o.t) {
          case "map":
            if (mem[o.table].has(o.page)) break;
            tables[o.table].map(o.page, frames + o.frame, 1, RW);
            mem[o.table].set(o.page, frames + o.frame);
            break;
          case "unmap":
            tables[o.table].unmap(o.page, 1);
            mem[o.table].delete(o.page);
            break;
          case "retarget":
            writeCd(o.table);
            memCd = o.table;
            break;
          case "cfgiCd":
            rig.cmd({ kind: "cfgiCd", sid: 1, ssid: 0, leaf: 1 });
            cachedCd = null;
            break;
          case "tlbiVa":
            rig.cmd({ kind: "tlbiNhVa", asid: o.asid, vmid: 0, addr: o.page * 4096, tg: 1, num: o.n - 1, scale: 0 });
            for (let i = o.page; i < o.page + o.n; i++) tlb.delete(`${o.asid}:${i}`);
            break;
          case "tlbiAsid":
            rig.cmd({ kind: "tlbiNhAsid", asid: o.asid, vmid: 0 });
            for (const k of [...tlb.keys()]) if (k.startsWith(`${o.asid}:`)) tlb.delete(k);
            break;
          case "translate": {
            if (cachedCd === null) cachedCd = memCd;
            const key = `${cachedCd + 1}:${o.page}`;
            let want = tlb.get(key);
            if (want === undefined) {
              want = mem[cachedCd].get(o.page) ?? -1;
              if (want >= 0) tlb.set(key, want);
            }
            assert.equal(u.translatePage(1, -1, o.page, o.write), want);
            // dma() takes the same path as the probe
            const r = u.dma({ sid: 1, pasid: -1, iova: BigInt(o.page * 4096 + 8), length: 4, write: o.write, data: new Uint8Array(4) });
            assert.equal(r.status, want >= 0 ? "done" : "faulted");
          }
        }
      }
    }),
    { numRuns: 150 },
  );
});
