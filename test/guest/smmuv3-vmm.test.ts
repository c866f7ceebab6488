/**
 * The VMM glue (src/guest/smmuv3/vmm.ts) between the guest's vSMMU and iommufd: the objects it
 * makes at plug time, the nested HWPT it makes from the guest's STE (and the kernel's EIO for a
 * vSTE it refuses, with nothing changed), the forwarding of the guest's invalidations, the
 * vEVENTQ records and the stall round trip as the guest sees them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { bootSmmuGuest, type SmmuGuest } from "../../src/guest/smmuv3/setup.js";
import { GuestProcess } from "../../src/guest/process.js";
import { HostMachine } from "../../src/guest/machine.js";
import { Vm } from "../../src/guest/vm.js";
import { SmmuVmm, QEMU_VSTE_MASK } from "../../src/guest/smmuv3/vmm.js";
import { CmdOp } from "../../src/hw/smmuv3/cmdq.js";
import { EventId } from "../../src/hw/smmuv3/events.js";
import { Ste, SteConfig } from "../../src/hw/smmuv3/tables.js";
import { CmdqErr } from "../../src/hw/smmuv3/unit-regs.js";
import { SmmuNestedDomain } from "../../src/iommu/drivers/smmuv3.js";
import type { HwptNested } from "../../src/iommufd/hwpt.js";
import type { Viommu } from "../../src/iommufd/viommu.js";
import type { Vdevice } from "../../src/iommufd/vdevice.js";
import { ObjType } from "../../src/iommufd/types.js";
import type { DmaResult } from "../../src/hw/dma.js";

const PAGE = 4096;

function objectsOf(g: SmmuGuest): string[] {
  return [...g.vm.ctx.objects].map(([id, o]) => `${id}:${o.type}`);
}

function read(g: SmmuGuest, gva: number, n: number, ssid: number) {
  const data = new Uint8Array(n);
  return { r: g.dev.dma({ iova: BigInt(gva), length: n, write: false, data, pasid: ssid }), data };
}

/** Overwrite the guest's STE for the vSID (words 0-3) and send CFGI_STE + CMD_SYNC as the guest. */
function writeSteAndSync(g: SmmuGuest, words: Uint32Array): void {
  const pa = g.guest.stePa(g.vsid);
  const f = g.vm.ram.frameU32(Math.floor(pa / PAGE));
  f.set(words.subarray(0, 4), (pa % PAGE) / 4);
  g.guest.issue([{ kind: "cfgiSte", sid: g.vsid, leaf: 1 }], true);
}

test("plug: a vIOMMU of type ARM_SMMUV3 on the VM's NEST_PARENT HWPT, the abort and bypass nested HWPTs, a vDEVICE whose virt_id is the vSID; SMMU disabled with GBPA bypass = the bypass HWPT", () => {
  const m = new HostMachine({ iommu: "smmuv3" });
  const dev = m.addDevice({ name: "0000:01:00.0", sid: 0x100 });
  const vm = new Vm(m, { ramBytes: 8 << 20 });
  const a = vm.assign(dev);
  const vmm = new SmmuVmm(vm, [{ assigned: a, vsid: 0x42 }]);
  const viommu = vm.ctx.getObject(vmm.viommuId) as Viommu;
  assert.equal(viommu.type, ObjType.VIOMMU);
  assert.equal(viommu.hwpt.id, vm.parent);
  const abort = vm.ctx.getObject(vmm.abortHwpt) as HwptNested;
  const bypass = vm.ctx.getObject(vmm.bypassHwpt) as HwptNested;
  assert.equal((abort.domain as SmmuNestedDomain).config, SteConfig.ABORT);
  assert.equal((bypass.domain as SmmuNestedDomain).config, SteConfig.BYPASS);
  const vdev = vm.ctx.getObject(vmm.devices[0].vdeviceId) as Vdevice;
  assert.equal(vdev.type, ObjType.VDEVICE);
  assert.equal(viommu.vdevs.get(0x42n), vdev);
  assert.equal(vmm.devices[0].hwpt, vmm.bypassHwpt);
  assert.equal(vmm.veventq, null, "no vEVENTQ before the guest enables its event queue");
  assert.equal(vmm.fault, null, "no fault queue without a stall-capable device");
  // a second device with the same vSID is refused, nothing made
  const dev2 = m.addDevice({ name: "0000:02:00.0", sid: 0x200 });
  const a2 = vm.assign(dev2);
  const before = [...vm.ctx.objects.keys()];
  assert.throws(() => vmm.plug(a2, { vsid: 0x42 }), { code: "EEXIST" });
  assert.throws(() => vmm.plug(a2, { vsid: 1 << 16 }), { code: "EINVAL" });
  assert.deepEqual([...vm.ctx.objects.keys()], before);
});

test("the guest's S1-translate STE becomes IOMMU_HWPT_ALLOC on the vIOMMU with the first two STE words masked as QEMU masks them, with the fault queue for a stall-capable device; the device is attached to it", () => {
  const g = bootSmmuGuest({ ramBytes: 8 << 20 });
  const proc = new GuestProcess(g.vm, "arm64");
  g.guest.svaBind(g.vsid, proc);
  const h = g.vm.ctx.getObject(g.plugged.s1Hwpt) as HwptNested;
  assert.equal(h.type, ObjType.HWPT_NESTED);
  assert.equal(h.viommu?.id, g.vmm.viommuId);
  assert.equal(h.fault?.id, g.vmm.fault?.id, "FAULT_ID_VALID with the VM's fault queue");
  const ste = g.guest.readWords(g.guest.stePa(g.vsid), 4);
  const d = h.domain as SmmuNestedDomain;
  const want = [0, 1, 2, 3].map((i) => (ste[i] & QEMU_VSTE_MASK[i]) >>> 0);
  assert.deepEqual([Number(d.ste[0] & 0xffffffffn), Number(d.ste[0] >> 32n), Number(d.ste[1] & 0xffffffffn), Number(d.ste[1] >> 32n)], want);
  assert.equal(g.plugged.hwpt, h.id);
  assert.equal(g.assigned.idev.attached, true);
  // QEMU's masks: STE0 V|Config|S1Fmt|S1ContextPtr(55:6)|S1CDMax, STE1 S1DSS|S1CIR|S1COR|S1CSH|S1STALLD|EATS
  assert.deepEqual([...QEMU_VSTE_MASK], [0xffffffff, 0xf8ffffff, 0x3f0000ff, 0]);
});

test("a vSTE the kernel refuses (Config S2, EATS S1CHK, S1ContextPtr above bit 51) is the kernel's EIO, CERROR_ILL in the guest, and changes nothing: same objects, same attachment, DMA as before", () => {
  const g = bootSmmuGuest({ ramBytes: 8 << 20, dev: { canStall: false } });
  const proc = new GuestProcess(g.vm, "arm64");
  proc.map(0x100, 1);
  proc.write(0x100 * PAGE, new Uint8Array([5, 6, 7, 8]));
  const b = g.guest.svaBind(g.vsid, proc);
  const good = g.guest.readWords(g.guest.stePa(g.vsid), 16);
  const bad: [string, (w: Uint32Array) => void][] = [
    ["Config = S2 translate", (w) => Ste.acc.config.set(w, 0, SteConfig.S2_TRANS)],
    ["Config = nested", (w) => Ste.acc.config.set(w, 0, SteConfig.NESTED)],
    ["EATS = S1CHK", (w) => Ste.acc.eats.set(w, 0, 2)],
    ["S1ContextPtr bit 53", (w) => (w[1] |= 1 << 21)],
  ];
  for (const [what, mutate] of bad) {
    const objs = objectsOf(g);
    const hwpt = g.plugged.hwpt;
    const errs = g.vmm.errors.length;
    const gerrs = g.guest.cmdErrors.length;
    const w = good.slice();
    mutate(w);
    writeSteAndSync(g, w);
    assert.equal(g.vmm.errors.length, errs + 1, what);
    assert.equal(g.vmm.errors[errs].errno, "EIO", `${what}: the kernel's errno`);
    assert.deepEqual(g.guest.cmdErrors.slice(gerrs), [{ op: CmdOp.CFGI_STE, err: CmdqErr.ILL }], `${what}: CFGI_STE is CERROR_ILL for the guest`);
    assert.deepEqual(objectsOf(g), objs, `${what}: no object made or lost`);
    assert.equal(g.plugged.hwpt, hwpt, `${what}: the attachment stays`);
    const r = read(g, 0x100 * PAGE, 4, b.ssid);
    assert.equal(r.r.status, "done");
    assert.deepEqual([...r.data], [5, 6, 7, 8]);
  }
  // the guest puts its good STE back: a new nested HWPT replaces the old one, which is destroyed
  const old = g.plugged.s1Hwpt;
  writeSteAndSync(g, good);
  assert.notEqual(g.plugged.s1Hwpt, old);
  assert.equal(g.vm.ctx.getObject(old), undefined, "the previous nested HWPT was destroyed");
});

test("abort and bypass STEs attach the pre-made HWPTs (the nested one is destroyed); SMMUEN = 0 follows GBPA", () => {
  const g = bootSmmuGuest({ ramBytes: 8 << 20 });
  const proc = new GuestProcess(g.vm, "arm64");
  const b = g.guest.svaBind(g.vsid, proc);
  const nested = g.plugged.s1Hwpt;
  g.guest.svaUnbind(b);
  assert.equal(g.plugged.hwpt, g.vmm.abortHwpt);
  assert.equal(g.plugged.s1Hwpt, 0);
  assert.equal(g.vm.ctx.getObject(nested), undefined);
  g.guest.attachRid(g.vsid, "bypass");
  assert.equal(g.plugged.hwpt, g.vmm.bypassHwpt);
  // the guest disables the SMMU with GBPA abort: every device gets the abort HWPT
  g.vmm.vsmmu.writeReg(0x44, (1 << 31) | (1 << 20));
  g.vmm.vsmmu.writeReg(0x20, 0);
  assert.equal(g.plugged.hwpt, g.vmm.abortHwpt);
  g.vmm.vsmmu.writeReg(0x44, 1 << 31);
  assert.equal(g.plugged.hwpt, g.vmm.bypassHwpt);
});

test("guest invalidations: consecutive TLBIs and CFGI_CDs are one HWPT_INVALIDATE on the vIOMMU; a SID-based command for a vSID without a device is skipped; CMD_SYNC is the VMM's to complete", () => {
  const g = bootSmmuGuest({ ramBytes: 8 << 20 });
  const calls0 = g.vmm.stats.invalidateCalls;
  const fwd0 = g.vmm.stats.commandsForwarded;
  g.guest.issue(
    [
      { kind: "tlbiNhAsid", asid: 1 },
      { kind: "tlbiNhVa", asid: 1, addr: 0x5000 },
      { kind: "cfgiCd", sid: g.vsid, ssid: 3, leaf: 1 },
      { kind: "cfgiCdAll", sid: 0x77 },
      { kind: "tlbiNsnhAll" },
    ],
    true,
  );
  assert.equal(g.vmm.stats.invalidateCalls - calls0, 1);
  assert.equal(g.vmm.stats.commandsForwarded - fwd0, 4, "CFGI_CD_ALL of vSID 0x77 skipped (no vDEVICE), as QEMU");
  assert.match(g.vmm.trace[g.vmm.trace.length - 1], /HWPT_INVALIDATE viommu \d+: 4 commands \(0x11 0x12 0x5 0x30\)/);
  assert.deepEqual(g.vmm.errors, []);
});

test("a forwarded command the kernel refuses (CFGI_CD for a vSID whose vDEVICE is gone) is CERROR_ILL at that command: the TLBI before it was done, the one after it too once the guest skipped it", () => {
  const g = bootSmmuGuest({ ramBytes: 8 << 20 });
  g.vm.ctx.destroy({ id: g.plugged.vdeviceId }); // behind the VMM's back
  const fwd0 = g.vmm.stats.commandsForwarded;
  g.guest.issue([{ kind: "tlbiNhAsid", asid: 1 }, { kind: "cfgiCd", sid: g.vsid, ssid: 1 }, { kind: "tlbiNhAsid", asid: 2 }], true);
  assert.equal(g.vmm.errors.at(-1)?.errno, "EIO");
  assert.deepEqual(g.guest.cmdErrors.at(-1), { op: CmdOp.CFGI_CD, err: CmdqErr.ILL });
  assert.equal(g.vmm.stats.commandsForwarded - fwd0, 2);
});

test("a translation fault of the nested device reaches the guest's event queue through the vEVENTQ: F_TRANSLATION with the vSID, SSV/SSID, RnW, the input address (words hand-checked)", () => {
  const g = bootSmmuGuest({ ramBytes: 8 << 20, dev: { canStall: false } });
  const proc = new GuestProcess(g.vm, "arm64");
  const b = g.guest.svaBind(g.vsid, proc);
  const r = read(g, 0x654321 * PAGE + 0x18, 4, b.ssid);
  assert.equal(r.r.status, "faulted");
  assert.equal(g.guest.events.length, 0, "nothing until the VMM polls");
  assert.equal(g.vmm.poll(), 1);
  const ev = g.guest.events[0];
  const w = ev.words;
  assert.equal(w[0], (EventId.F_TRANSLATION | (1 << 11) | (b.ssid << 12)) >>> 0, "EventID 0x10, SSV (11), SSID (31:12)");
  assert.equal(w[1], g.vsid, "StreamID = vSID");
  assert.equal(w[2], 0, "no stall, no STAG");
  assert.equal(w[3] & (1 << 3), 1 << 3, "RnW (99) = read");
  assert.equal(w[3] & (1 << 7), 0, "S2 (103) = 0: a stage-1 fault");
  assert.equal(w[4], (0x654321 * PAGE + 0x18) % 2 ** 32);
  assert.equal(w[5], Math.floor((0x654321 * PAGE + 0x18) / 2 ** 32));
});

test("the vEVENTQ overflowing (more faults than its depth before the VMM polls) becomes an overflow of the guest's event queue", () => {
  const g = bootSmmuGuest({ ramBytes: 8 << 20, dev: { canStall: false } });
  const proc = new GuestProcess(g.vm, "arm64");
  const b = g.guest.svaBind(g.vsid, proc);
  const depth = 2 ** g.guest.evtqLog2;
  for (let i = 0; i < depth + 3; i++) assert.equal(read(g, (0x1000 + i) * PAGE, 4, b.ssid).r.status, "faulted");
  g.vmm.poll();
  assert.equal(g.vmm.lostVevents, 1, "one LOST_EVENTS header");
  assert.equal(g.guest.events.length, depth);
  assert.equal(g.guest.stats.overflows, 1);
});

test("stall round trip as the guest sees it: F_TRANSLATION with Stall and a STAG in its event queue, CMD_RESUME Retry completes the DMA, Abort (address outside any region) ends it faulted; an unknown STAG is ignored", () => {
  const g = bootSmmuGuest({ ramBytes: 8 << 20, guest: { traceCommands: true } });
  const proc = new GuestProcess(g.vm, "arm64");
  g.guest.reserve(proc, 0x800, 4);
  const b = g.guest.svaBind(g.vsid, proc);
  let done: DmaResult | null = null;
  const gva = 0x801 * PAGE + 0x30;
  const r = g.dev.dma({ iova: BigInt(gva), length: 4, write: false, data: new Uint8Array(4), pasid: b.ssid, onComplete: (x) => (done = x) });
  assert.equal(r.status, "pending");
  g.vmm.poll();
  const ev = g.guest.events[0];
  assert.ok(ev, "the stall reached the guest");
  // F_TRANSLATION | SSV | SSID; vSID; STAG 0 | Stall (95); RnW (99) | CLASS IN = 2 (105:104); InputAddr
  assert.deepEqual([...ev.words], [(0x10 | (1 << 11) | (b.ssid << 12)) >>> 0, g.vsid, 0x80000000, (1 << 3) | (2 << 8), gva, 0, 0, 0]);
  const resume = (g.guest.commandLog ?? []).filter((w) => (w[0] & 0xff) === CmdOp.RESUME);
  assert.deepEqual([...resume[0]], [CmdOp.RESUME | (1 << 12), g.vsid, 0, 0], "RESUME: Action Retry (13:12), SID, STAG (79:64)");
  assert.equal((done as DmaResult | null)?.status, "done");
  assert.equal(g.vmm.stats.responses, 1);
  // outside any region: the guest aborts
  done = null;
  const r2 = g.dev.dma({ iova: BigInt(0x900 * PAGE), length: 4, write: true, data: new Uint8Array(4), pasid: b.ssid, onComplete: (x) => (done = x) });
  assert.equal(r2.status, "pending");
  g.vmm.poll();
  assert.equal(g.guest.stats.resumesAbort, 1);
  assert.equal((done as DmaResult | null)?.status, "faulted");
  assert.equal(g.machine.smmu?.unit.pendingCount, 0);
  // a RESUME naming no stall changes nothing
  const n = g.vmm.stats.responses;
  g.guest.issue([{ kind: "resume", sid: g.vsid, stag: 99, action: 1 }], false);
  assert.equal(g.vmm.stats.responses, n);
});

test("a vSMMU with 8 StreamID bits: the guest uses a linear stream table, SVA works through it; removing the master puts the abort STE back and frees its CD table", () => {
  const g = bootSmmuGuest({ ramBytes: 8 << 20, dev: { canStall: false }, vmm: { sidBits: 8 }, vsid: 0x21 });
  assert.equal(g.guest.st2l, false);
  assert.equal(g.guest.stePa(0x21), g.guest.strtab + 0x21 * 64);
  const proc = new GuestProcess(g.vm, "arm64");
  proc.map(0x300, 1);
  proc.write(0x300 * PAGE, new Uint8Array([9, 8, 7]));
  const b = g.guest.svaBind(g.vsid, proc);
  assert.equal(g.plugged.state, "translate");
  const r = read(g, 0x300 * PAGE, 3, b.ssid);
  assert.equal(r.r.status, "done");
  assert.deepEqual([...r.data], [9, 8, 7]);
  g.guest.removeMaster(g.vsid);
  assert.equal(g.master.cd, null);
  assert.equal(g.plugged.hwpt, g.vmm.abortHwpt);
  assert.equal(read(g, 0x300 * PAGE, 3, b.ssid).r.status, "faulted");
});
