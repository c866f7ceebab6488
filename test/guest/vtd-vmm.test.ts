/**
 * The emulated VT-d and the VMM glue: what the guest writes becomes nested HWPTs (or the parent) at
 * host PASIDs only on the matching PASID-cache invalidation; changes replace, removals detach;
 * PASID-based IOTLB invalidations are forwarded; the RID_PASID entry drives the RID; context and
 * TE changes replay or tear down; queue errors and page-request overflow behave as on hardware.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestProcess } from "../../src/guest/process.js";
import type { ScenarioLog } from "../../src/guest/scenario.js";
import { bootVtdGuest, type BootOptions, type VtdGuest } from "../../src/guest/vtd/scenarios.js";
import { encodeQi } from "../../src/hw/vtd/qi.js";
import { PasidEntry } from "../../src/hw/vtd/tables.js";
import { Fsts, Prs, VtdReg, Gcmd } from "../../src/hw/vtd/unit-regs.js";
import { ObjType, type IommuHwptInvalidate } from "../../src/iommufd/types.js";
import type { HwptNested } from "../../src/iommufd/hwpt.js";
import type { DmaResult } from "../../src/hw/dma.js";

const PAGE = 4096;
const quiet: ScenarioLog = { step: () => undefined };
const boot = (o: BootOptions = {}): VtdGuest => bootVtdGuest(quiet, o);

function read(g: VtdGuest, pasid: number, gva: number, n: number): { r: DmaResult; data: Uint8Array } {
  const data = new Uint8Array(n);
  const r = g.vmm.dma(g.gd, { pasid, iova: BigInt(gva), length: n, write: false, data });
  return { r, data };
}

/** Record the VTD_S1 invalidation entries the VMM passes to IOMMU_HWPT_INVALIDATE. */
function spyInvalidations(g: VtdGuest): { hwpt: number; addr: bigint; npages: bigint; flags: number }[] {
  const out: { hwpt: number; addr: bigint; npages: bigint; flags: number }[] = [];
  const ctx = g.vm.ctx;
  const orig = ctx.hwptInvalidate.bind(ctx);
  ctx.hwptInvalidate = (cmd: IommuHwptInvalidate) => {
    const e = g.vm.vmm.read(Number(cmd.data_uptr), 24);
    const dv = new DataView(e.buffer, e.byteOffset, 24);
    out.push({ hwpt: cmd.hwpt_id, addr: dv.getBigUint64(0, true), npages: dv.getBigUint64(8, true), flags: dv.getUint32(16, true) });
    return orig(cmd);
  };
  return out;
}

/** Write a PASID entry for (sid, pasid) straight into guest memory, as a guest driver would. */
function writeEntry(g: VtdGuest, pasid: number, v: Partial<PasidEntry>): void {
  g.vm.ram.write(g.drv.pasidEntryGpa(g.gd.sid, pasid), PasidEntry.encode(v));
}

test("a first-stage guest entry becomes, on its PASID-cache invalidation, a nested VTD_S1 HWPT on the parent with the fault queue, attached at the host PASID", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  const pasid = g.drv.svaBind(p, g.gd.sid);
  const h = g.vm.pasids.hostOf(pasid);
  const b = g.vmm.bindOf(g.gd, h);
  assert.ok(b);
  const obj = g.vm.ctx.objects.get(b.hwpt) as HwptNested;
  assert.equal(obj.type, ObjType.HWPT_NESTED);
  assert.equal(obj.parent.id, g.vm.parent);
  assert.equal(obj.fault?.id, g.vmm.faultId);
  assert.equal(obj.pasidCompat, true);
  assert.deepEqual(g.a.idev.attachedPasids(), [h]);
});

test("a guest entry is not acted on until a PASID-cache invalidation covering its DID and PASID", () => {
  const g = boot({ vmm: { vcmd: false } });
  const p = new GuestProcess(g.vm, "x86-4level");
  p.map(0x10, 1);
  g.drv.svaBind(new GuestProcess(g.vm), g.gd.sid); // PASID 1 (makes the table for 0-63)
  writeEntry(g, 5, { p: 1, pgtt: 1, did: 9, aw: 3, fsptptr: p.rootGpa });
  assert.deepEqual(g.vm.pasids.entries().map(([x]) => x), [1], "nothing for PASID 5 yet");
  g.drv.submit({ kind: "pasidCache", g: 1, did: 3, pasid: 5 });
  assert.deepEqual(g.vm.pasids.entries().map(([x]) => x), [1], "another DID: not covered");
  g.drv.submit({ kind: "pasidCache", g: 1, did: 9, pasid: 4 });
  assert.deepEqual(g.vm.pasids.entries().map(([x]) => x), [1], "another PASID: not covered");
  g.drv.submit({ kind: "pasidCache", g: 0, did: 9 });
  assert.deepEqual(g.vm.pasids.entries().map(([x]) => x), [1, 5], "domain-selective for DID 9 covers it: host PASID allocated on first use");
  assert.equal(read(g, 5, 0x10 * PAGE, 4).r.status, "done");
});

test("an entry changed in place is re-shadowed on invalidation by replace: a new nested HWPT, the old one destroyed, DMA through the new table", () => {
  const g = boot();
  const p1 = new GuestProcess(g.vm, "x86-4level");
  const p2 = new GuestProcess(g.vm, "x86-4level");
  p1.map(0x30, 1);
  p2.map(0x30, 1);
  p1.write(0x30 * PAGE, new Uint8Array([1, 1]));
  p2.write(0x30 * PAGE, new Uint8Array([2, 2]));
  const pasid = g.drv.svaBind(p1, g.gd.sid);
  const h = g.vm.pasids.hostOf(pasid);
  const old = g.vmm.bindOf(g.gd, h)?.hwpt as number;
  assert.deepEqual([...read(g, pasid, 0x30 * PAGE, 2).data], [1, 1]);
  const gpa = g.drv.pasidEntryGpa(g.gd.sid, pasid);
  const e = PasidEntry.decode(g.vm.ram.read(gpa, 64));
  g.vm.ram.write(gpa, PasidEntry.encode({ ...e, fsptptr: p2.rootGpa }));
  g.drv.submit({ kind: "pasidCache", g: 1, did: 1, pasid }, { kind: "pasidIotlb", g: 2, did: 1, pasid });
  const now = g.vmm.bindOf(g.gd, h)?.hwpt as number;
  assert.notEqual(now, old);
  assert.equal(g.vm.ctx.objects.has(old), false, "the old HWPT was destroyed");
  assert.deepEqual(g.a.idev.attachedPasids(), [h]);
  assert.deepEqual([...read(g, pasid, 0x30 * PAGE, 2).data], [2, 2], "the device now walks process 2's table");
});

test("a pass-through PASID entry attaches the parent at the host PASID: the device reaches guest-physical addresses with that PASID", () => {
  const g = boot({ vmm: { vcmd: false } });
  g.drv.svaBind(new GuestProcess(g.vm), g.gd.sid);
  const gpfn = g.vm.allocPages(1);
  g.vm.ram.write(gpfn * PAGE, new Uint8Array([9, 8, 7]));
  writeEntry(g, 6, { p: 1, pgtt: 4, did: 1, aw: 3 });
  g.drv.submit({ kind: "pasidCache", g: 1, did: 1, pasid: 6 });
  const h = g.vm.pasids.hostOf(6);
  const b = g.vmm.bindOf(g.gd, h);
  assert.equal(b?.kind, "pass-through");
  assert.equal(b?.hwpt, g.vm.parent);
  assert.deepEqual([...read(g, 6, gpfn * PAGE, 3).data], [9, 8, 7]);
  // cleared: detached, the PASID stays in the set
  writeEntry(g, 6, {});
  g.drv.submit({ kind: "pasidCache", g: 1, did: 1, pasid: 6 });
  assert.equal(g.vmm.bindOf(g.gd, h), undefined);
  assert.equal(g.a.idev.attachedPasids().includes(h), false);
  assert.equal(g.vm.pasids.hostOf(6), h);
  assert.equal(read(g, 6, gpfn * PAGE, 3).r.status, "faulted");
});

test("a first-stage RID_PASID entry nests the RID: DMA without PASID walks the guest's table; pass-through puts the parent back", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  p.map(0x123, 1);
  p.write(0x123 * PAGE, new Uint8Array([4, 5, 6]));
  const gpa = g.drv.pasidEntryGpa(g.gd.sid, 0);
  g.vm.ram.write(gpa, PasidEntry.encode({ p: 1, pgtt: 1, did: 2, aw: 3, fsptptr: p.rootGpa }));
  g.drv.submit({ kind: "pasidCache", g: 1, did: 2, pasid: 0 });
  const hwpt = g.a.idev.igroup.hwpt;
  assert.equal(hwpt?.type, ObjType.HWPT_NESTED);
  assert.deepEqual([...read(g, -1, 0x123 * PAGE, 3).data], [4, 5, 6]);
  g.vm.ram.write(gpa, PasidEntry.encode({ p: 1, pgtt: 4, did: 1, aw: 3 }));
  g.drv.submit({ kind: "pasidCache", g: 1, did: 1, pasid: 0 });
  assert.equal(g.a.idev.igroup.hwpt?.id, g.vm.parent);
  assert.equal(g.vm.ctx.objects.has(hwpt?.id as number), false, "the RID's nested HWPT was destroyed");
});

test("P_IOTLB invalidations are forwarded to the PASID's nested HWPT: page-selective {addr, 2^AM, LEAF if IH}, PASID-selective {0, U64_MAX}; IOTLB (type 2) ones are not", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  const pasid = g.drv.svaBind(p, g.gd.sid);
  const hwpt = g.vmm.bindOf(g.gd, g.vm.pasids.hostOf(pasid))?.hwpt;
  const inv = spyInvalidations(g);
  g.drv.submit({ kind: "pasidIotlb", g: 3, did: 1, pasid, addr: 0x40008000, am: 3, ih: 1 });
  g.drv.submit({ kind: "pasidIotlb", g: 2, did: 1, pasid });
  g.drv.submit({ kind: "pasidIotlb", g: 2, did: 5, pasid }, { kind: "pasidIotlb", g: 2, did: 1, pasid: pasid + 1 });
  g.drv.submit({ kind: "iotlb", g: 1 }, { kind: "iotlb", g: 2, did: 1 });
  assert.deepEqual(inv, [
    { hwpt, addr: 0x40008000n, npages: 8n, flags: 1 },
    { hwpt, addr: 0n, npages: (1n << 64n) - 1n, flags: 0 },
  ]);
});

test("clearing a device's context entry and invalidating the context cache drops its shadows; making it present again replays its PASID table", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  p.map(0x77, 1);
  const pasid = g.drv.svaBind(p, g.gd.sid);
  const h = g.vm.pasids.hostOf(pasid);
  const cgpa = g.drv.contextEntryGpa(g.gd.sid);
  const saved = g.vm.ram.read(cgpa, 32);
  g.vm.ram.write(cgpa, new Uint8Array(32));
  g.drv.submit({ kind: "contextCache", g: 3, sid: g.gd.sid });
  assert.deepEqual(g.a.idev.attachedPasids(), []);
  assert.equal(g.a.idev.attached, false, "the RID is detached too");
  assert.equal(read(g, pasid, 0x77 * PAGE, 4).r.status, "faulted");
  g.vm.ram.write(cgpa, saved);
  g.drv.submit({ kind: "contextCache", g: 3, sid: g.gd.sid });
  assert.deepEqual(g.a.idev.attachedPasids(), [h]);
  assert.equal(g.a.idev.attached, true);
  assert.equal(read(g, pasid, 0x77 * PAGE, 4).r.status, "done");
});

test("translation off (GCMD.TE clear) detaches every PASID and puts the RID on the parent; back on, the tables are replayed", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  p.map(0x88, 1);
  const pasid = g.drv.svaBind(p, g.gd.sid);
  const h = g.vm.pasids.hostOf(pasid);
  const v = g.vmm.vvtd;
  v.write32(VtdReg.GCMD, Gcmd.QIE);
  assert.equal(v.translationEnabled, false);
  assert.deepEqual(g.a.idev.attachedPasids(), []);
  assert.equal(g.a.idev.igroup.hwpt?.id, g.vm.parent);
  v.write32(VtdReg.GCMD, (Gcmd.QIE | Gcmd.TE) >>> 0);
  assert.deepEqual(g.a.idev.attachedPasids(), [h]);
  assert.equal(read(g, pasid, 0x88 * PAGE, 4).r.status, "done");
});

test("a descriptor with a reserved bit set stops the vIOMMU's queue at it (FSTS.IQE, IQEI 4, IQH on it); clearing IQE resumes after the guest fixes it", () => {
  const g = boot();
  const v = g.vmm.vvtd;
  const bad = encodeQi({ kind: "pasidCache", g: 3 }, 256);
  bad[8] = 1; // a bit in qword 1 of a PASID-cache descriptor is reserved
  const iq = g.drv.iqGpa;
  const tail = Number(v.read64(VtdReg.IQT));
  g.vm.ram.write(iq + tail, bad);
  v.write32(VtdReg.IQT, tail + 32);
  assert.equal(v.read32(VtdReg.FSTS) & Fsts.IQE, Fsts.IQE);
  assert.equal(v.read32(VtdReg.IQERCD) & 0xf, 4);
  assert.equal(Number(v.read64(VtdReg.IQH)), tail, "the head stays on the bad descriptor");
  assert.throws(() => g.drv.submit({ kind: "iotlb", g: 1 }), { code: "EIO" }, "nothing is processed while IQE is set");
  bad[8] = 0;
  g.vm.ram.write(iq + tail, bad);
  v.write32(VtdReg.FSTS, Fsts.IQE);
  assert.equal(v.read32(VtdReg.FSTS) & Fsts.IQE, 0);
  assert.equal(v.read64(VtdReg.IQH), v.read64(VtdReg.IQT), "the rest of the queue ran");
});

test("a masked page request event stays pending; a full page request queue sets PRS.PRO and the VMM answers the host Invalid", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  g.drv.addLazyRegion(p, 0x1000, 256);
  const pasid = g.drv.svaBind(p, g.gd.sid);
  g.drv.maskPageRequests(true);
  const ends: DmaResult[] = [];
  const rs: DmaResult[] = [];
  for (let i = 0; i < 128; i++) rs.push(g.vmm.dma(g.gd, { pasid, iova: BigInt((0x1000 + i) * PAGE), length: 4, write: true, data: new Uint8Array(4), onComplete: (x) => ends.push(x) }));
  // 4 KiB queue: 128 slots, one always empty
  assert.equal(rs.filter((r) => r.status === "pending").length, 127);
  assert.equal(rs[127].status, "faulted", "the 128th could not be queued: answered Invalid");
  assert.equal(g.vmm.vvtd.read32(VtdReg.PRS) & Prs.PRO, Prs.PRO);
  assert.equal(g.vmm.vvtd.read32(VtdReg.PECTL) >>> 30, 3, "IM and IP: the event is pending");
  g.drv.maskPageRequests(false);
  assert.equal(ends.filter((x) => x.status === "done").length, 127, "unmasking delivered the event; the guest answered all");
  assert.equal(g.vmm.vvtd.read32(VtdReg.PRS) & Prs.PRO, 0, "the guest cleared PRO once the queue was empty");
  assert.equal(g.vmm.pendingPageRequests, 0);
});

test("the guest answers Invalid for a PASID it has no bind for and for a write to a read-only region", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  g.drv.addLazyRegion(p, 0x300, 4, false);
  const pasid = g.drv.svaBind(p, g.gd.sid);
  const w = g.vmm.dma(g.gd, { pasid, iova: BigInt(0x301 * PAGE), length: 4, write: true, data: new Uint8Array(4) });
  assert.equal(w.status, "faulted");
  assert.equal(g.drv.prqLog.at(-1)?.response, 1);
  const r = read(g, pasid, 0x301 * PAGE, 4);
  assert.equal(r.r.status, "done", "a read faults the page in");
  assert.equal(g.drv.prqLog.at(-1)?.outcome, "mapped");
});

test("after the guest answers, a DMA spanning several unpopulated pages faults once per page and completes", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  g.drv.addLazyRegion(p, 0x500, 8);
  const pasid = g.drv.svaBind(p, g.gd.sid);
  const data = new Uint8Array(3 * PAGE).map((_, i) => i & 0xff);
  const r = g.vmm.dma(g.gd, { pasid, iova: BigInt(0x500 * PAGE + 100), length: data.length, write: true, data });
  assert.equal(r.status, "done");
  assert.equal(r.bytes, data.length);
  assert.equal(g.drv.prqLog.length, 4, "pages 0x500-0x503");
  assert.deepEqual(p.read(0x500 * PAGE + 100, data.length), data);
});

test("VCMD: the guest's PASIDs come from the VMM backed by host PASIDs; freeing one that is bound is refused", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  const pasid = g.drv.svaBind(p, g.gd.sid);
  assert.deepEqual(g.vm.pasids.entries(), [[pasid, g.vm.pasids.hostOf(pasid)]]);
  const v = g.vmm.vvtd;
  v.write64(0xe00, (BigInt(pasid) << 16n) | 2n);
  assert.equal(v.read64(0xe10), 32n, "status 16: the PASID is bound");
  g.drv.releaseProcess(p);
  assert.deepEqual(g.vm.pasids.entries(), [], "unbound and freed at mm exit");
});

test("the VMM's teardown answers outstanding page requests (the DMA ends faulted) and leaves the VM only its own objects", () => {
  const g = boot();
  const p = new GuestProcess(g.vm, "x86-4level");
  g.drv.addLazyRegion(p, 0x600, 2);
  const pasid = g.drv.svaBind(p, g.gd.sid);
  g.drv.maskPageRequests(true);
  let end: DmaResult | null = null;
  g.vmm.dma(g.gd, { pasid, iova: BigInt(0x600 * PAGE), length: 4, write: false, data: new Uint8Array(4), onComplete: (x) => (end = x) });
  const before = new Set(g.vm.ctx.objects.keys());
  g.vmm.destroy();
  assert.equal((end as DmaResult | null)?.status, "faulted");
  const left = [...g.vm.ctx.objects.values()].map((o) => o.type).sort();
  assert.deepEqual(left, [ObjType.DEVICE, ObjType.HWPT_PAGING, ObjType.IOAS].sort());
  assert.ok(before.size > left.length);
  assert.throws(() => g.vmm.dma(g.gd, { pasid, iova: 0n, length: 1, write: false, data: new Uint8Array(1) }), { code: "EINVAL" });
  g.vm.destroy();
  assert.equal(g.m.pasids.inUse, 0);
});
