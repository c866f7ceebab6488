/**
 * The SMMUv3 register file (src/hw/smmuv3/regfile.ts) as both models present it: the host unit
 * and the guest's vSMMU answer the same register accesses the same way, but for what their ID
 * registers make different (the vSMMU has no PRI queue).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { HostMachine } from "../../src/guest/machine.js";
import { Vm } from "../../src/guest/vm.js";
import { VSmmu, type VSmmuBackend } from "../../src/guest/smmuv3/vsmmu.js";
import { vsmmuIdRegs } from "../../src/guest/smmuv3/vmm.js";
import { PhysMem } from "../../src/mm/phys.js";
import { HwMemory } from "../../src/hw/memory.js";
import { SmmuUnit } from "../../src/hw/smmuv3/unit.js";
import type { SmmuRegisterFile } from "../../src/hw/smmuv3/regfile.js";
import {
  CR0_ATSCHK,
  CR0_CMDQEN,
  CR0_EVTQEN,
  CR0_PRIQEN,
  CR0_SMMUEN,
  GBPA_ABORT,
  GBPA_UPDATE,
  IRQ_CTRL_EVTQ_IRQEN,
  IRQ_CTRL_GERROR_IRQEN,
  IRQ_CTRL_PRIQ_IRQEN,
  PAGE1_OFFSET,
  Q_OVF,
  SmmuReg,
  defaultIdRegs,
  queueBase,
} from "../../src/hw/smmuv3/unit-regs.js";

const quiet: VSmmuBackend = {
  steChanged: () => null,
  invalidate: (cmds) => ({ done: cmds.length, errno: null }),
  resume: () => {},
  stallTerm: () => {},
  configChanged: () => {},
};

function models(): [string, SmmuRegisterFile, boolean][] {
  const host = new SmmuUnit(new HwMemory(new PhysMem()));
  const vm = new Vm(new HostMachine({ iommu: "smmuv3" }), { ramBytes: 2 << 20 });
  const v = new VSmmu(vm.ram, vsmmuIdRegs(defaultIdRegs()), quiet);
  return [
    ["host unit", host, true],
    ["vSMMU", v, false],
  ];
}

test("both SMMUv3 models: page 1 is an exact alias of page 0", () => {
  for (const [name, m] of models()) {
    assert.equal(m.readReg(PAGE1_OFFSET + SmmuReg.IDR0), m.readReg(SmmuReg.IDR0), name);
    m.writeReg64(SmmuReg.EVTQ_BASE, queueBase(0x40000, 4));
    m.writeReg(SmmuReg.EVTQ_CONS, 3);
    assert.equal(m.readReg(SmmuReg.EVTQ_CONS - PAGE1_OFFSET), 3, `${name}: EVTQ_CONS through page 0`);
    m.writeReg(SmmuReg.EVTQ_CONS - PAGE1_OFFSET, 5);
    assert.equal(m.readReg(SmmuReg.EVTQ_CONS), 5, `${name}: and back through page 1`);
  }
});

test("both SMMUv3 models: CR0 holds the enables the ID registers allow and is acknowledged at once; CR1/CR2 store", () => {
  for (const [name, m, pri] of models()) {
    m.writeReg(SmmuReg.CR0, CR0_SMMUEN | CR0_EVTQEN | CR0_PRIQEN | CR0_ATSCHK | (1 << 9));
    const want = CR0_SMMUEN | CR0_EVTQEN | (pri ? CR0_PRIQEN : 0); // no ATS in either: ATSCHK is RES0
    assert.equal(m.readReg(SmmuReg.CR0), want, name);
    assert.equal(m.readReg(SmmuReg.CR0ACK), want, name);
    m.writeReg(SmmuReg.CR1, 0x3f);
    m.writeReg(SmmuReg.CR2, 0x7);
    assert.deepEqual([m.readReg(SmmuReg.CR1), m.readReg(SmmuReg.CR2)], [0x3f, 0x7], `${name}: written while SMMUEN = 1 too (as QEMU)`);
  }
});

test("both SMMUv3 models: GBPA changes only when written with Update, which reads back clear", () => {
  for (const [name, m] of models()) {
    const reset = m.readReg(SmmuReg.GBPA);
    assert.equal(reset, 0x1000, `${name}: SHCFG = use incoming`);
    m.writeReg(SmmuReg.GBPA, GBPA_ABORT);
    assert.equal(m.readReg(SmmuReg.GBPA), reset, `${name}: no Update, no change`);
    m.writeReg(SmmuReg.GBPA, GBPA_ABORT | GBPA_UPDATE | (1 << 7));
    assert.equal(m.readReg(SmmuReg.GBPA), GBPA_ABORT, `${name}: the fields, bit 7 RES0, Update done`);
  }
});

test("both SMMUv3 models: ID registers, CR0ACK, IRQ_CTRLACK and GERROR ignore writes; unimplemented offsets read zero", () => {
  for (const [name, m] of models()) {
    const idr0 = m.readReg(SmmuReg.IDR0);
    for (const off of [SmmuReg.IDR0, SmmuReg.CR0ACK, SmmuReg.IRQ_CTRLACK, SmmuReg.GERROR, SmmuReg.STATUSR, 0x300]) m.writeReg(off, 0xffffffff);
    assert.equal(m.readReg(SmmuReg.IDR0), idr0, name);
    assert.equal(m.readReg(SmmuReg.CR0ACK), 0, name);
    assert.equal(m.readReg(SmmuReg.IRQ_CTRLACK), 0, name);
    assert.equal(m.readReg(SmmuReg.GERROR), 0, name);
    assert.equal(m.readReg(0x300), 0, name);
  }
});

test("both SMMUv3 models: IRQ_CTRL holds the enables of the interrupts the model has (the PRI queue's only with PRI)", () => {
  for (const [name, m, pri] of models()) {
    m.writeReg(SmmuReg.IRQ_CTRL, 0xff);
    const want = IRQ_CTRL_GERROR_IRQEN | IRQ_CTRL_EVTQ_IRQEN | (pri ? IRQ_CTRL_PRIQ_IRQEN : 0);
    assert.equal(m.readReg(SmmuReg.IRQ_CTRL), want, name);
    assert.equal(m.readReg(SmmuReg.IRQ_CTRLACK), want, name);
  }
});

test("both SMMUv3 models: queue index registers keep the index and wrap bits of the programmed size; an enabled queue's base and SMMU-owned index ignore writes", () => {
  for (const [name, m] of models()) {
    m.writeReg64(SmmuReg.CMDQ_BASE, queueBase(0x10000, 3));
    m.writeReg64(SmmuReg.EVTQ_BASE, queueBase(0x20000, 2));
    m.writeReg(SmmuReg.CMDQ_CONS, 0xffff);
    assert.equal(m.readReg(SmmuReg.CMDQ_CONS), 0xf, `${name}: 8 entries: index 3 bits + wrap`);
    m.writeReg(SmmuReg.EVTQ_PROD, 0xffffffff);
    assert.equal(m.readReg(SmmuReg.EVTQ_PROD), (0x7 | Q_OVF) >>> 0, `${name}: 4 entries, OVFLG kept`);
    m.writeReg(SmmuReg.CR0, CR0_CMDQEN | CR0_EVTQEN);
    m.writeReg64(SmmuReg.CMDQ_BASE, queueBase(0x30000, 5));
    m.writeReg(SmmuReg.EVTQ_PROD, 1);
    m.writeReg(SmmuReg.EVTQ_CONS, 2);
    assert.equal(m.readReg64(SmmuReg.CMDQ_BASE), queueBase(0x10000, 3), name);
    assert.equal(m.readReg(SmmuReg.EVTQ_PROD), (0x7 | Q_OVF) >>> 0, `${name}: PROD is the SMMU's while enabled`);
    assert.equal(m.readReg(SmmuReg.EVTQ_CONS), 2, `${name}: CONS is software's`);
  }
});

test("both SMMUv3 models: STRTAB_BASE and STRTAB_BASE_CFG ignore writes while SMMUEN = 1", () => {
  for (const [name, m] of models()) {
    m.writeReg64(SmmuReg.STRTAB_BASE, 0x123440n);
    m.writeReg(SmmuReg.STRTAB_BASE_CFG, 0xffffffff);
    assert.equal(m.readReg(SmmuReg.STRTAB_BASE_CFG), 0x307ff, `${name}: LOG2SIZE, SPLIT, FMT`);
    m.writeReg(SmmuReg.CR0, CR0_SMMUEN);
    m.writeReg64(SmmuReg.STRTAB_BASE, 0x999000n);
    m.writeReg(SmmuReg.STRTAB_BASE_CFG, 1);
    assert.equal(m.readReg64(SmmuReg.STRTAB_BASE), 0x123440n, name);
    assert.equal(m.readReg(SmmuReg.STRTAB_BASE_CFG), 0x307ff, name);
  }
});
