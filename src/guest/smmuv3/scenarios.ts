/**
 * The SMMUv3 guest scenarios (issue 5): each boots a VM whose guest programs an emulated SMMUv3,
 * lets the VMM turn that into iommufd vIOMMU objects and nested HWPTs, and checks one story end to
 * end, logging each step with the values a reader wants to see.
 */
import assert from "node:assert/strict";
import { IommuError } from "../../errno.js";
import { EventId, decodeEvent } from "../../hw/smmuv3/events.js";
import { CmdOp } from "../../hw/smmuv3/cmdq.js";
import type { DmaResult } from "../../hw/dma.js";
import { fdTableOf } from "../../iommufd/files.js";
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HW_CAP_DIRTY_TRACKING,
  ObjType,
} from "../../iommufd/types.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import { HostMachine } from "../machine.js";
import { GuestProcess } from "../process.js";
import type { Scenario, ScenarioLog } from "../scenario.js";
import { bootSmmuGuest, cdLine, cmdLine, eventLine, hex, steLine, type SmmuGuest } from "./setup.js";
import { describeIdRegs } from "./vsmmu.js";
import { IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 } from "./vmm.js";

const PAGE = PAGE_SIZE;

/** Lines appended to arr since index `from` (and the new length). */
function since<T>(arr: readonly T[], from: number): T[] {
  return arr.slice(from);
}

function errnoOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof IommuError) return e.code;
    throw e;
  }
  return "no error";
}

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed + i * 7) & 0xff;
  return b;
}

function dmaRead(g: SmmuGuest, gva: number, n: number, ssid: number): { r: DmaResult; data: Uint8Array } {
  const data = new Uint8Array(n);
  return { r: g.dev.dma({ iova: BigInt(gva), length: n, write: false, data, pasid: ssid }), data };
}

/** Boot with the steps every scenario starts with logged. */
function boot(log: ScenarioLog, o: Parameters<typeof bootSmmuGuest>[0] & { label?: string }): SmmuGuest {
  const g = bootSmmuGuest({ ...o, guest: { traceCommands: true, ...o.guest } });
  const who = o.label ? `${o.label}: ` : "";
  const host = g.machine.smmu?.unit;
  log.step(
    `${who}host SMMUv3 with ${g.dev.name} at StreamID ${hex(g.dev.sid)} (${g.dev.maxPasidLog2} PASID bits${g.plugged.canStall ? ", can stall" : ""}) assigned to ${g.vm.name}`,
    ...(g.vmm.hostIdr ? describeIdRegs(g.vmm.hostIdr).map((l) => `host ${l}`) : []),
    `guest RAM ${g.vm.ram.size >> 20} MiB mapped at IOVA = GPA in IOAS ${g.vm.ioas}, stage 2 = NEST_PARENT HWPT ${g.vm.parent}`,
    ...(host ? [`host unit: ${host.constructor.name}`] : []),
  );
  log.step(`${who}VMM plugs the device into its vSMMU as vSID ${hex(g.vsid)}`, ...g.vmm.trace.slice(0, g.traceMark), ...describeIdRegs(g.vmm.vsmmu.idr).map((l) => `vSMMU ${l}`));
  const gd = g.guest;
  log.step(
    `${who}guest arm-smmu-v3 probes the vSMMU and enables it`,
    `stream table: ${gd.st2l ? "2-level (SPLIT 8)" : "linear"} at GPA ${hex(gd.strtab)}, ${gd.strtabLog2} StreamID bits`,
    `command queue at GPA ${hex(gd.cmdq)} (${2 ** gd.cmdqLog2} entries), event queue at GPA ${hex(gd.evtq)} (${2 ** gd.evtqLog2} entries)`,
    ...(gd.commandLog ?? []).map((w) => `guest command ${cmdLine(w)}`),
    ...g.vmm.trace.slice(g.traceMark).map((l) => `VMM: ${l}`),
  );
  assert.ok(g.vmm.vsmmu.smmuEnabled, "the guest enabled its vSMMU");
  assert.equal(g.plugged.state, "abort", "before the guest writes an STE for it, the device is attached to the abort HWPT");
  assert.ok(g.vmm.veventq !== null, "the VMM allocated the vEVENTQ when the guest enabled its event queue");
  return g;
}

/** Bind a fresh arm64 process at a PASID, logging the CD and STE the guest wrote. */
function bind(log: ScenarioLog, g: SmmuGuest, proc: GuestProcess, ssid?: number) {
  const c0 = g.guest.commandLog?.length ?? 0;
  const t0 = g.vmm.trace.length;
  const bond = g.guest.svaBind(g.vsid, proc, ssid);
  const cdPa = cdAddr(g, bond.ssid);
  log.step(
    `guest binds process ${proc.pid} (page table at GPA ${hex(proc.rootGpa)}) to vSID ${hex(g.vsid)}: PASID (SSID) ${bond.ssid}, ASID ${bond.asid}`,
    `CD ${bond.ssid} at GPA ${hex(cdPa)}: ${cdLine(g.guest.readWords(cdPa, 16))}`,
    `STE ${hex(g.vsid)} at GPA ${hex(g.guest.stePa(g.vsid))}: ${steLine(g.guest.readWords(g.guest.stePa(g.vsid), 16))}`,
    ...since(g.guest.commandLog ?? [], c0).map((w) => `guest command ${cmdLine(w)}`),
    ...since(g.vmm.trace, t0).map((l) => `VMM: ${l}`),
  );
  assert.equal(g.plugged.state, "translate", "the guest's S1-translate STE became a nested HWPT");
  return bond;
}

/** The guest-physical address of the CD for ssid (read back through the guest's CD table). */
function cdAddr(g: SmmuGuest, ssid: number): number {
  const cd = g.master.cd;
  assert.ok(cd !== null, "the master has a CD table");
  if (cd.s1fmt === 0) return cd.base + ssid * 64;
  const l1 = g.guest.readWords(cd.base + Math.floor(ssid / 1024) * 8, 2);
  const l2 = (l1[1] & 0xfffff) * 2 ** 32 + ((l1[0] & 0xfffff000) >>> 0);
  return l2 + (ssid % 1024) * 64;
}

// =================================================================================================

export const smmuv3Sva: Scenario = {
  name: "smmuv3-sva",
  iommu: "smmuv3",
  description: "guest SVA over an emulated SMMUv3: boot, bind a process at an SSID, DMA, stall, guest event queue, CMD_RESUME, completion",
  run(log) {
    const g = boot(log, {});
    const proc = new GuestProcess(g.vm, "arm64");
    const base = 0x40000;
    proc.map(base, 1);
    const msg = pattern(64, 0x21);
    proc.write(base * PAGE + 0x100, msg);
    g.guest.reserve(proc, base + 1, 16);
    log.step(
      `guest process ${proc.pid}: one page at GVA ${hex(base * PAGE)} (GPA ${hex(proc.guestPage(base) * PAGE)}) holding a message; 16 more pages reserved, populated on fault`,
    );
    const bond = bind(log, g, proc);

    const rd = dmaRead(g, base * PAGE + 0x100, 64, bond.ssid);
    log.step(
      `device reads 64 bytes at GVA ${hex(base * PAGE + 0x100)} with SSID ${bond.ssid}: ${rd.r.status}`,
      `GVA → GPA ${hex(proc.guestPage(base) * PAGE + 0x100)} (guest stage 1) → host page ${hex(g.vm.ram.hostPfn(proc.guestPage(base)) * PAGE)} (stage 2)`,
    );
    assert.equal(rd.r.status, "done");
    assert.deepEqual(rd.data, msg, "the device read what the process wrote");

    const gva = (base + 5) * PAGE + 0x80;
    const payload = pattern(32, 0x90);
    let done: DmaResult | null = null;
    const unit = g.machine.smmu?.unit;
    assert.ok(unit);
    const w = g.dev.dma({ iova: BigInt(gva), length: payload.length, write: true, data: payload, pasid: bond.ssid, onComplete: (x) => (done = x) });
    log.step(
      `device writes 32 bytes at GVA ${hex(gva)} (reserved, not yet populated) with SSID ${bond.ssid}: ${w.status}`,
      `host SMMU: stage-1 translation fault, CD.S = 1 and STE.S1STALLD = 0, so the transaction stalls (${unit.pendingCount} outstanding)`,
      `the host driver hands it to the nested HWPT's fault queue (fault ${g.vmm.fault?.id})`,
    );
    assert.equal(w.status, "pending", "the transaction stalls");
    assert.equal(unit.pendingCount, 1);

    const e0 = g.guest.events.length;
    const c0 = g.guest.commandLog?.length ?? 0;
    const t0 = g.vmm.trace.length;
    const handled = g.vmm.poll();
    const ev = g.guest.events[e0];
    log.step(
      `VMM: ${handled} record read from the fault fd, injected into the guest's event queue; the guest's event interrupt runs`,
      ...since(g.vmm.trace, t0).map((l) => `VMM: ${l}`),
      ...(ev ? [`guest event queue: ${eventLine(ev.words)}`] : []),
      `guest: fault handler maps GVA ${hex(gva & ~0xfff)} into process ${proc.pid} (GPA ${hex(proc.guestPage(Math.floor(gva / PAGE)) * PAGE)})`,
      ...since(g.guest.commandLog ?? [], c0).map((x) => `guest command ${cmdLine(x)}`),
    );
    assert.ok(ev !== undefined, "the guest read an event");
    const d = decodeEvent(new Uint8Array(ev.words.buffer, ev.words.byteOffset, 32)) as { kind: string; sid: number; ssv: number; ssid: number; stall: number; stag: number; rnw: number; inputAddr: bigint };
    assert.equal(d.kind, "fTranslation");
    assert.equal(d.sid, g.vsid, "the event carries the virtual StreamID");
    assert.equal(d.ssv, 1);
    assert.equal(d.ssid, bond.ssid);
    assert.equal(d.stall, 1);
    assert.equal(d.rnw, 0, "a write");
    assert.equal(d.inputAddr, BigInt(gva));
    const resume = since(g.guest.commandLog ?? [], c0).find((x) => (x[0] & 0xff) === CmdOp.RESUME);
    assert.ok(resume, "the guest answered with CMD_RESUME");
    assert.equal(resume[1], g.vsid);
    assert.equal(resume[2] & 0xffff, d.stag, "RESUME names the event's STAG");
    assert.equal((resume[0] >>> 12) & 3, 1, "Action = Retry");

    const fin = done as DmaResult | null;
    log.step(
      `the host SMMU retries the DMA after RESUME: ${fin?.status ?? "still pending"}; the process reads what the device wrote`,
      `process ${proc.pid} at GVA ${hex(gva)}: ${[...proc.read(gva, 8)].map((b) => hex(b, 2)).join(" ")} …`,
    );
    assert.equal(fin?.status, "done", "the DMA completed");
    assert.equal(unit.pendingCount, 0);
    assert.deepEqual(proc.read(gva, payload.length), payload);
    assert.equal(g.vmm.pendingStalls, 0);
    assert.deepEqual(g.vmm.errors, []);
  },
};

export const smmuv3Invalidation: Scenario = {
  name: "smmuv3-invalidation",
  iommu: "smmuv3",
  description: "a guest that forgets TLBI after unmapping keeps seeing the stale translation until it sends it; the fault then reaches its event queue through the vEVENTQ",
  run(log) {
    const g = boot(log, { dev: { canStall: false } });
    const proc = new GuestProcess(g.vm, "arm64");
    const base = 0x7000;
    proc.map(base, 4);
    const old = pattern(16, 0x33);
    proc.write(base * PAGE, old);
    const bond = bind(log, g, proc);
    const gpa = proc.guestPage(base) * PAGE;
    const first = dmaRead(g, base * PAGE, 16, bond.ssid);
    log.step(`device reads GVA ${hex(base * PAGE)} with SSID ${bond.ssid}: ${first.r.status} (the host TLB now holds GVA page → host page, tagged with the guest's ASID ${bond.asid} and the vIOMMU's VMID)`);
    assert.equal(first.r.status, "done");
    assert.deepEqual(first.data, old);

    proc.unmap(base, 1);
    const cpu = errnoOf(() => proc.read(base * PAGE, 4));
    const stale = dmaRead(g, base * PAGE, 16, bond.ssid);
    log.step(
      `guest unmaps the page but forgets to invalidate: the CPU faults (${cpu}) while the device still reads through the stale TLB entry: ${stale.r.status}`,
      `device read ${[...stale.data.subarray(0, 8)].map((b) => hex(b, 2)).join(" ")} … from GPA ${hex(gpa)}, a page the guest kernel has freed`,
    );
    assert.equal(cpu, "EFAULT");
    assert.equal(stale.r.status, "done", "a stale IOTLB entry keeps translating, as on hardware");
    assert.deepEqual(stale.data, old);
    const again = dmaRead(g, base * PAGE, 16, bond.ssid);
    assert.equal(again.r.status, "done", "…for as long as nobody invalidates");

    const c0 = g.guest.commandLog?.length ?? 0;
    const t0 = g.vmm.trace.length;
    const fwd0 = g.vmm.stats.commandsForwarded;
    g.guest.invalidate(proc, base, 1);
    const cmds = since(g.guest.commandLog ?? [], c0);
    log.step(
      `guest sends the invalidation it owed: ${cmds.length - 1} TLBI_NH_VA and a CMD_SYNC; the VMM forwards the TLBI with one HWPT_INVALIDATE on vIOMMU ${g.vmm.viommuId}`,
      ...cmds.map((w) => `guest command ${cmdLine(w)}`),
      ...since(g.vmm.trace, t0).map((l) => `VMM: ${l}`),
      `host: the command is rewritten with the vIOMMU's VMID and issued to the SMMU's command queue`,
    );
    assert.equal(cmds[0][0] & 0xff, CmdOp.TLBI_NH_VA);
    assert.equal(cmds[cmds.length - 1][0] & 0xff, CmdOp.CMD_SYNC);
    assert.equal(g.vmm.stats.commandsForwarded - fwd0, cmds.length - 1, "every TLBI was forwarded, the CMD_SYNC completed by the VMM");

    const after = dmaRead(g, base * PAGE + 0x10, 4, bond.ssid);
    log.step(`device reads GVA ${hex(base * PAGE + 0x10)} again: ${after.r.status} (${after.r.fault?.kind}, stage ${after.r.fault?.stage}); the host driver reports it to the vEVENTQ with the vSID`);
    assert.equal(after.r.status, "faulted");
    assert.equal(after.r.fault?.kind, "translation");
    assert.equal(after.r.fault?.stage, 1);

    const e0 = g.guest.events.length;
    const t1 = g.vmm.trace.length;
    g.vmm.poll();
    const ev = g.guest.events[e0];
    log.step(
      `VMM reads the vEVENTQ fd and writes the record into the guest's event queue`,
      ...since(g.vmm.trace, t1).map((l) => `VMM: ${l}`),
      ...(ev ? [`guest event queue: ${eventLine(ev.words)}`] : []),
    );
    assert.ok(ev);
    assert.equal(ev.id, EventId.F_TRANSLATION);
    assert.equal(ev.sid, g.vsid, "the physical StreamID was replaced by the vSID");
    assert.equal(ev.ssid, bond.ssid);
    assert.equal(ev.stall, false);
    assert.equal(ev.addr, BigInt(base * PAGE + 0x10));
    assert.deepEqual(g.vmm.errors, []);
  },
};

export const smmuv3Ownership: Scenario = {
  name: "smmuv3-ownership",
  iommu: "smmuv3",
  description: "two VMs on one SMMUv3: neither reaches the other's device, vIOMMU objects or (vSID, SSID) mappings; each one's DMA and faults stay its own",
  run(log) {
    const machine = new HostMachine({ iommu: "smmuv3" });
    const a = boot(log, { machine, name: "vm1", label: "vm1", dev: { name: "0000:01:00.0", sid: 0x100, canStall: false }, vsid: 0x8, ramBytes: 16 << 20 });
    const b = boot(log, { machine, name: "vm2", label: "vm2", dev: { name: "0000:02:00.0", sid: 0x200, canStall: false }, vsid: 0x9, ramBytes: 16 << 20 });
    const gva = 0x5000 * PAGE;
    const pa = new GuestProcess(a.vm, "arm64");
    const pb = new GuestProcess(b.vm, "arm64");
    pa.map(0x5000, 1);
    pb.map(0x5000, 1);
    pa.write(gva, new TextEncoder().encode("vm1 secret data."));
    pb.write(gva, new TextEncoder().encode("vm2 other bytes."));
    const ba = a.guest.svaBind(a.vsid, pa);
    const bb = b.guest.svaBind(b.vsid, pb);
    const ra = dmaRead(a, gva, 16, ba.ssid);
    const rb = dmaRead(b, gva, 16, bb.ssid);
    log.step(
      `both guests bind a process at PASID ${ba.ssid} and DMA at the same GVA ${hex(gva)}: each device reads its own VM's page`,
      `vm1 ${a.dev.name} SSID ${ba.ssid}: "${new TextDecoder().decode(ra.data)}"`,
      `vm2 ${b.dev.name} SSID ${bb.ssid}: "${new TextDecoder().decode(rb.data)}"`,
    );
    assert.equal(ba.ssid, bb.ssid, "the same SSID in both guests");
    assert.equal(new TextDecoder().decode(ra.data), "vm1 secret data.");
    assert.equal(new TextDecoder().decode(rb.data), "vm2 other bytes.");

    const bindErr = errnoOf(() => b.vm.ctx.bindDevice(a.dev));
    log.step(`vm2's VMM tries to bind vm1's device ${a.dev.name} to its iommufd: ${bindErr} (iommu_device_claim_dma_owner: the group's DMA owner is vm1's context)`);
    assert.equal(bindErr, "EPERM");

    const foreign: string[] = [];
    for (const [id, obj] of a.vm.ctx.objects) {
      const other = b.vm.ctx.getObject(id);
      assert.notEqual(other, obj, `object ID ${id} in vm2's context is not vm1's object`);
      foreign.push(`ID ${id}: vm1 ${obj.type} ↔ vm2 ${other ? `its own ${other.type}` : "nothing"}`);
    }
    log.step(`object IDs are per context: every ID of vm1's objects names vm2's own object (or nothing) in vm2's context`, ...foreign);

    // vm2's VMM names vm1's vSID in a CFGI_CD on its own vIOMMU: the kernel knows no such vDEVICE
    const cmd = new Uint8Array(16);
    const dv = new DataView(cmd.buffer);
    dv.setUint32(0, CmdOp.CFGI_CD | (ba.ssid << 12), true);
    dv.setUint32(4, a.vsid, true);
    dv.setUint32(8, 1, true);
    const ptr = b.vm.vmm.mmap(PAGE);
    b.vm.vmm.write(ptr, cmd);
    const invErr = errnoOf(() =>
      b.vm.ctx.hwptInvalidate({ hwpt_id: b.vmm.viommuId, data_uptr: BigInt(ptr), data_type: IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, entry_len: 16, entry_num: 1 }),
    );
    log.step(`vm2's VMM sends CFGI_CD for vSID ${hex(a.vsid)} (vm1's) SSID ${ba.ssid} on its vIOMMU ${b.vmm.viommuId}: ${invErr} (no vDEVICE with that virtual SID there)`);
    assert.equal(invErr, "EIO");

    // vm2's guest programs an STE and a CD invalidation for vm1's vSID in its own vSMMU
    const t0 = b.vmm.trace.length;
    const f0 = b.vmm.stats.commandsForwarded;
    b.guest.issue([{ kind: "cfgiSte", sid: a.vsid, leaf: 1 }, { kind: "cfgiCd", sid: a.vsid, ssid: ba.ssid, leaf: 1 }], true);
    const still = dmaRead(a, gva, 16, ba.ssid);
    log.step(
      `vm2's guest issues CFGI_STE and CFGI_CD for vSID ${hex(a.vsid)}: its VMM has no device there and sends nothing (${b.vmm.trace.length - t0} calls); vm1's DMA: ${still.r.status}`,
    );
    assert.equal(b.vmm.stats.commandsForwarded, f0);
    assert.equal(b.vmm.trace.length, t0);
    assert.equal(still.r.status, "done");
    assert.equal(new TextDecoder().decode(still.data), "vm1 secret data.");

    // faults stay with their VM
    const ea = a.guest.events.length;
    const eb = b.guest.events.length;
    const miss = dmaRead(b, 0x6000 * PAGE, 4, bb.ssid);
    a.vmm.poll();
    b.vmm.poll();
    log.step(
      `vm2's device faults at GVA ${hex(0x6000 * PAGE)} (${miss.r.status}): the event reaches vm2's guest only`,
      ...b.guest.events.slice(eb).map((e) => `vm2 guest event: ${eventLine(e.words)}`),
      `vm1 guest events: ${a.guest.events.length - ea}`,
    );
    assert.equal(miss.r.status, "faulted");
    assert.equal(b.guest.events.length - eb, 1);
    assert.equal(b.guest.events[eb].sid, b.vsid);
    assert.equal(a.guest.events.length - ea, 0);

    log.step(
      "PASIDs: SMMUv3 SubstreamIDs live in each guest's CD table; neither VMM allocated a host PASID, both PASID sets are empty",
      `host PASIDs in use: ${machine.pasids.inUse}; vm1 set: ${a.vm.pasids.size}; vm2 set: ${b.vm.pasids.size}`,
    );
    assert.equal(machine.pasids.inUse, 0);
    assert.equal(a.vm.pasids.size, 0);
    assert.equal(b.vm.pasids.size, 0);
  },
};

export const smmuv3Dirty: Scenario = {
  name: "smmuv3-dirty",
  iommu: "smmuv3",
  description:
    "a migration round over the nested SMMUv3 setup: arm-smmu-v3 has no stage-2 dirty tracking (EOPNOTSUPP, nothing changes), so the VMM counts every page dirty and the device's writes reach the copy",
  run(log) {
    const g = boot(log, { dev: { canStall: false }, ramBytes: 8 << 20 });
    const proc = new GuestProcess(g.vm, "arm64");
    proc.map(0x9000, 4);
    const bond = bind(log, g, proc);
    const ctx = g.vm.ctx;
    const info = ctx.getHwInfo({ flags: 0, dev_id: g.assigned.idev.id, data_len: 0, data_uptr: 0n });
    const ids0 = [...ctx.objects.keys()];
    const en = errnoOf(() => ctx.hwptSetDirtyTracking({ flags: IOMMU_HWPT_DIRTY_TRACKING_ENABLE, hwpt_id: g.vm.parent }));
    const alloc = errnoOf(() =>
      ctx.hwptAlloc({ flags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING, dev_id: g.assigned.idev.id, pt_id: g.vm.ioas, data_type: 0, data_len: 0, data_uptr: 0n }),
    );
    const bm = g.vm.vmm.mmap(PAGE);
    const get = errnoOf(() => ctx.hwptGetDirtyBitmap({ hwpt_id: g.vm.parent, flags: 0, iova: 0n, length: BigInt(g.vm.ram.size), page_size: BigInt(PAGE), data: BigInt(bm) }));
    log.step(
      "migration starts: the VMM asks for dirty tracking of guest RAM over the nested setup",
      `GET_HW_INFO capabilities: ${hex(info.out_capabilities ?? 0n)} (DIRTY_TRACKING ${(info.out_capabilities ?? 0n) & IOMMU_HW_CAP_DIRTY_TRACKING ? "set: stage-1 HTTU" : "clear"})`,
      `SET_DIRTY_TRACKING on NEST_PARENT HWPT ${g.vm.parent}: ${en}`,
      `HWPT_ALLOC NEST_PARENT | DIRTY_TRACKING: ${alloc} (arm-smmu-v3 tracks dirty pages at stage 1 only; a stage-2 domain with DIRTY_TRACKING is refused)`,
      `GET_DIRTY_BITMAP on HWPT ${g.vm.parent}: ${get}`,
    );
    assert.equal(en, "EOPNOTSUPP");
    assert.equal(alloc, "EOPNOTSUPP");
    assert.equal(get, "EOPNOTSUPP");
    assert.deepEqual([...ctx.objects.keys()], ids0, "the failing calls created nothing");

    // QEMU without IOMMU (or device) dirty tracking: every page the device can write is dirty
    const pages = g.vm.ram.size / PAGE;
    const dest = new Map<number, Uint8Array>();
    const copyAll = (): number => {
      for (let i = 0; i < pages; i++) dest.set(i, g.vm.ram.read(i * PAGE, PAGE));
      return pages;
    };
    const round1 = copyAll();
    const writes = [0x9000, 0x9002, 0x9003].map((vpn, i) => ({ vpn, data: pattern(24, 0x50 + i) }));
    for (const w of writes) {
      const r = g.dev.dma({ iova: BigInt(w.vpn * PAGE + 0x200), length: w.data.length, write: true, data: w.data, pasid: bond.ssid });
      assert.equal(r.status, "done");
    }
    const round2 = copyAll();
    log.step(
      `round 1 copies all ${round1} guest pages; the device writes 3 process pages with SSID ${bond.ssid} meanwhile; round 2 (stop and copy) copies all ${round2} again`,
      ...writes.map((w) => `device wrote GVA ${hex(w.vpn * PAGE + 0x200)} → GPA ${hex(proc.guestPage(w.vpn) * PAGE + 0x200)}`),
      "without dirty tracking the rounds never shrink: the VM must stop for a full copy",
    );
    assert.equal(round2, pages, "no page can be left out without dirty information");
    for (const w of writes) {
      const gp = proc.guestPage(w.vpn);
      assert.deepEqual((dest.get(gp) as Uint8Array).subarray(0x200, 0x200 + w.data.length), w.data, "the destination holds the device's write");
    }
    log.step("the destination's copy holds every byte the device wrote, at the GPAs the guest's page table gives");
  },
};

export const smmuv3Teardown: Scenario = {
  name: "smmuv3-teardown",
  iommu: "smmuv3",
  description: "VM teardown with an SVA bond and a stalled DMA: the stall is aborted, and no object, pin, fd or PASID is left",
  run(log) {
    const machine = new HostMachine({ iommu: "smmuv3" });
    const pinned0 = machine.host.phys.framesPinned;
    const g = boot(log, { machine, ramBytes: 8 << 20 });
    const proc = new GuestProcess(g.vm, "arm64");
    g.guest.reserve(proc, 0x3000, 8);
    const bond = bind(log, g, proc);
    let done: DmaResult | null = null;
    const r = g.dev.dma({ iova: BigInt(0x3002 * PAGE), length: 8, write: true, data: new Uint8Array(8).fill(1), pasid: bond.ssid, onComplete: (x) => (done = x) });
    const unit = machine.smmu?.unit;
    assert.ok(unit);
    log.step(`a DMA with SSID ${bond.ssid} stalls (${r.status}) and nobody answers it before the VM goes down; ${machine.host.phys.framesPinned - pinned0} pages pinned`);
    assert.equal(r.status, "pending");

    const t0 = g.vmm.trace.length;
    g.vmm.destroy();
    const left = [...g.vm.ctx.objects.values()].map((o) => o.type);
    const fin = done as DmaResult | null;
    log.step(
      "the VMM unplugs the device from its vSMMU: back to the stage-2 parent, every vIOMMU object destroyed",
      ...since(g.vmm.trace, t0).map((l) => `VMM: ${l}`),
      `the stalled DMA was answered INVALID when its HWPT was replaced, the host SMMU aborted it: ${fin?.status}`,
      `objects left in the context: ${left.join(", ")}`,
    );
    assert.equal(fin?.status, "faulted");
    assert.equal(unit.pendingCount, 0, "no stall left in the host SMMU");
    assert.deepEqual(left.sort(), [ObjType.DEVICE, ObjType.HWPT_PAGING, ObjType.IOAS].sort(), "only the VM's own IOAS, parent and device remain");
    assert.equal(fdTableOf(g.vm.vmm).size, 1, "only /dev/iommu is open (the fault and vEVENTQ fds are closed)");

    g.vm.destroy();
    const after = g.dev.dma({ iova: 0x1000n, length: 4, write: false, data: new Uint8Array(4) });
    log.step(
      "the VM is destroyed: devices unbound, /dev/iommu closed, PASID set freed, VMM exited",
      `objects: ${g.vm.ctx.objects.size}; pinned pages: ${machine.host.phys.framesPinned - pinned0}; host PASIDs in use: ${machine.pasids.inUse}; VMM fds: ${fdTableOf(g.vm.vmm).size}`,
      `the device's DMA now: ${after.status} (${after.fault?.kind})`,
    );
    assert.equal(g.vm.ctx.objects.size, 0);
    assert.equal(machine.host.phys.framesPinned, pinned0, "no pin left");
    assert.equal(machine.pasids.inUse, 0, "no PASID left");
    assert.equal(fdTableOf(g.vm.vmm).size, 0);
    assert.equal(after.status, "faulted", "the unbound device is blocked");
  },
};

export const SMMUV3_SCENARIOS: readonly Scenario[] = [smmuv3Sva, smmuv3Invalidation, smmuv3Ownership, smmuv3Dirty, smmuv3Teardown];
