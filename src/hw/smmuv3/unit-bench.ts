/**
 * Micro-benchmark of the SMMUv3 unit's hot path, for bench/run.ts (the model reads no clock; the
 * caller passes one, in milliseconds):
 *
 *   smmu_tlb_hit_mops: benchSmmuTlbHit(now)   translatePage() TLB hits per microsecond (millions/s)
 *
 * One stage-1 stream, 128 pages mapped (4 KiB leaves, so 128 TLB entries, under the 256-entry
 * TLB), warmed, then probed in a pseudo-random order.
 */
import { PhysMem } from "../../mm/phys.js";
import { HwMemory } from "../memory.js";
import { PageTableEngine } from "../pagetable/engine.js";
import { PT_ACCESSED, PT_READ, PT_USER, PT_WRITE, armStage1 } from "../pagetable/format.js";
import { encodeCmdWords } from "./cmdq.js";
import { Cd, Ste, SteConfig } from "./tables.js";
import { SmmuUnit } from "./unit.js";
import { CR0_CMDQEN, CR0_SMMUEN, SmmuReg, STRTAB_FMT_LINEAR, queueBase, strtabBaseCfg } from "./unit-regs.js";

export function benchSmmuTlbHit(now: () => number, iterations = 1 << 24): number {
  const mem = new HwMemory(new PhysMem());
  const unit = new SmmuUnit(mem);
  const strtab = mem.allocTable(4) * 4096; // 256 STEs
  const cmdq = mem.allocTable(1) * 4096;
  unit.writeReg(SmmuReg.STRTAB_BASE_CFG, strtabBaseCfg(STRTAB_FMT_LINEAR, 8, 0));
  unit.writeReg64(SmmuReg.STRTAB_BASE, BigInt(strtab));
  unit.writeReg64(SmmuReg.CMDQ_BASE, queueBase(cmdq, 4));
  const pt = new PageTableEngine(mem, armStage1());
  const data = mem.phys.allocRun(256);
  // every other page: no two neighbours in one leaf, 128 distinct entries
  for (let i = 0; i < 128; i++) pt.map(0x1000 + 2 * i, data + 2 * i, 1, PT_READ | PT_WRITE | PT_USER | PT_ACCESSED);
  const cdt = mem.allocTable(1) * 4096;
  const cd = Cd.encodeWords({ v: 1, t0sz: 16, epd1: 1, ips: 5, aa64: 1, r: 1, a: 1, asid: 1, ttb0: pt.root * 4096 });
  for (let i = 0; i < 16; i++) mem.write32(cdt + 4 * i, cd[i]);
  const ste = Ste.encodeWords({ v: 1, config: SteConfig.S1_TRANS, s1ContextPtr: cdt });
  for (let i = 0; i < 16; i++) mem.write32(strtab + 7 * 64 + 4 * i, ste[i]);
  const sync = encodeCmdWords({ kind: "sync" });
  for (let i = 0; i < 4; i++) mem.write32(cmdq + 4 * i, sync[i]);
  unit.writeReg(SmmuReg.CR0, CR0_CMDQEN | CR0_SMMUEN);
  const pages = new Float64Array(1024);
  let x = 12345;
  for (let i = 0; i < pages.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    pages[i] = 0x1000 + 2 * ((x >>> 8) % 128);
  }
  let sum = 0;
  for (let i = 0; i < pages.length; i++) sum += unit.translatePage(7, -1, pages[i], false);
  const t0 = now();
  for (let i = 0; i < iterations; i++) sum += unit.translatePage(7, -1, pages[i & 1023], (i & 8) !== 0);
  const ms = now() - t0;
  if (sum < 0) throw new Error("a probe missed");
  return iterations / ms / 1000;
}
