/**
 * The VT-d guest scenarios (`softiommu scenario vtd-...`): a guest programs an emulated VT-d, the
 * VMM shadows it into iommufd nested HWPTs, and a device does DMA with a guest process's virtual
 * addresses. Each step logs what the guest wrote (entries and descriptors as hex), what the VMM
 * did (ioctls), and what the device saw; each scenario checks what it claims and throws otherwise.
 */
import { IommuError } from "../../errno.js";
import { PageRequestDesc } from "../../hw/vtd/qi.js";
import { PasidEntry, SmContextEntry } from "../../hw/vtd/tables.js";
import { PASID_MAX } from "../../iommu/pasid.js";
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
} from "../../iommufd/types.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import type { DmaResult } from "../../hw/dma.js";
import { HostMachine, type HostDeviceOptions } from "../machine.js";
import { GuestProcess } from "../process.js";
import type { Scenario, ScenarioLog } from "../scenario.js";
import { Vm, type AssignedDevice } from "../vm.js";
import { fmtSid, GuestVtdDriver, hexWords } from "./guest-driver.js";
import { VmmVtd, type VmmVtdOptions, type VtdGuestDevice } from "./vmm.js";

/** A failed scenario check. */
export class ScenarioCheckError extends Error {
  override name = "ScenarioCheckError";
}

function expect(cond: boolean, what: string): asserts cond {
  if (!cond) throw new ScenarioCheckError(what);
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** Lines collected from the guest driver, the VMM and the vIOMMU between two steps. */
class Collector {
  lines: string[] = [];
  take(): string[] {
    const l = this.lines;
    this.lines = [];
    return l;
  }
}

/** A booted VT-d guest: host machine, VM, VMM with its vIOMMU, the guest's IOMMU driver. */
export interface VtdGuest {
  m: HostMachine;
  vm: Vm;
  a: AssignedDevice;
  vmm: VmmVtd;
  gd: VtdGuestDevice;
  drv: GuestVtdDriver;
  out: Collector;
}

export interface BootOptions {
  machine?: HostMachine;
  name?: string;
  device?: HostDeviceOptions;
  guestSid?: number;
  vmm?: VmmVtdOptions;
  /** Allocate the stage-2 parent with DIRTY_TRACKING (as QEMU does when the host can track). */
  dirtyParent?: boolean;
  ramBytes?: number;
}

/**
 * Bring a VT-d guest up: VM on the machine, host device assigned, the VMM's vIOMMU, the guest's
 * IOMMU driver booted and the device set up in the guest (context entry, RID_PASID pass-through,
 * PRE). Logs each stage.
 */
export function bootVtdGuest(log: ScenarioLog, o: BootOptions = {}): VtdGuest {
  const m = o.machine ?? new HostMachine({ iommu: "vtd" });
  const out = new Collector();
  const dev = m.addDevice(o.device ?? { name: "0000:03:00.0", sid: 0x0300 });
  const vm = new Vm(m, { ramBytes: o.ramBytes ?? 32 << 20, name: o.name ?? "vm" });
  const a = vm.assign(dev);
  let parent = vm.parent;
  if (o.dirtyParent) {
    parent = vm.ctx.hwptAlloc({
      flags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID,
      dev_id: a.idev.id,
      pt_id: vm.ioas,
      data_type: 0,
      data_len: 0,
      data_uptr: 0n,
    }).out_hwpt_id as number;
    a.idev.replace(parent);
  }
  const vmm = new VmmVtd(vm, { ...o.vmm, parent });
  vmm.onTrace = (l) => out.lines.push(`VMM: ${l}`);
  log.step(
    `${vm.name}: guest RAM ${vm.ram.size >> 20} MiB mapped at IOVA = GPA; ${dev.name} (host sid ${hex(dev.sid)}) assigned`,
    `iommufd: IOAS ${vm.ioas}, stage-2 parent HWPT ${parent} (NEST_PARENT | ALLOC_PASID${o.dirtyParent ? " | DIRTY_TRACKING" : ""}), device id ${a.idev.id}, fault queue ${vmm.faultId} (fd ${vmm.faultFd})`,
    `host unit: CAP ${hex(m.vtd?.unit.capU64 ?? 0n)} ECAP ${hex(m.vtd?.unit.ecapU64 ?? 0n)}`,
    `vIOMMU:    CAP ${hex(vmm.vvtd.capU64)} (CM ${vmm.vvtd.cap.cm}, FS1GP ${vmm.vvtd.cap.fs1gp}, FS5LP ${vmm.vvtd.cap.fs5lp}, NFR+1 ${vmm.vvtd.cap.nfr + 1} at ${hex(vmm.vvtd.cap.fro * 16)})`,
    `           ECAP ${hex(vmm.vvtd.ecapU64)} (SMTS ${vmm.vvtd.ecap.smts}, FSTS ${vmm.vvtd.ecap.fsts}, SSTS ${vmm.vvtd.ecap.ssts}, PASID ${vmm.vvtd.ecap.pasid} of ${vmm.vvtd.ecap.pss + 1} bits, PRS ${vmm.vvtd.ecap.prs}, VCS ${vmm.vvtd.ecap.vcs})`,
  );
  const gd = vmm.attachGuestDevice(a, o.guestSid ?? 0x0010);
  const drv = new GuestVtdDriver(vm, vmm.vvtd);
  drv.onTrace = (l) => out.lines.push(`guest: ${l}`);
  vmm.vvtd.onDescriptor = (kind, bytes) => out.lines.push(`vIOMMU fetched ${kind} descriptor: ${hexWords(new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4), 0, bytes.length / 4)}`);
  drv.boot();
  expect(vmm.vvtd.translationEnabled, "the guest turned DMA remapping on");
  log.step(`${vm.name}: the guest's intel-iommu driver boots on the vIOMMU`, ...out.take());
  drv.addDevice(gd.sid);
  const ctxGpa = drv.contextEntryGpa(gd.sid);
  const ce = SmContextEntry.decode(vm.ram.read(ctxGpa, 32));
  expect(ce.p === 1 && ce.paside === 1 && ce.pre === 1 && ce.pdts === 7, "context entry: present, PASIDs on, page requests on, 2^14-entry PASID directory");
  log.step(`${vm.name}: the guest sets up device ${fmtSid(gd.sid)} (its view of ${dev.name})`, ...out.take(), `context entry decoded: ${SmContextEntry.describe(ce)}`);
  vmm.vvtd.onDescriptor = (kind, bytes) => {
    if (kind !== "wait") out.lines.push(`vIOMMU fetched ${kind} descriptor: ${hexWords(new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4), 0, bytes.length / 4)}`);
  };
  return { m, vm, a, vmm, gd, drv, out };
}

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function pasidEntryLines(g: VtdGuest, pasid: number): string[] {
  const gpa = g.drv.pasidEntryGpa(g.gd.sid, pasid);
  if (gpa < 0) return [`PASID ${pasid}: no PASID table`];
  const bytes = g.vm.ram.read(gpa, 64);
  const w = new Uint32Array(bytes.buffer, bytes.byteOffset, 16);
  return [`PASID entry at GPA ${hex(gpa)}: ${hexWords(w, 0, 8)}`, `                           ${hexWords(w, 8, 8)}`, `decoded: ${PasidEntry.describe(PasidEntry.decode(bytes))}`];
}

function prqSlotLines(g: VtdGuest, index: number): string[] {
  const gpa = g.drv.prqGpa + ((index * 32) % PAGE_SIZE);
  const bytes = g.vm.ram.read(gpa, 32);
  return [`page request descriptor at GPA ${hex(gpa)}: ${hexWords(new Uint32Array(bytes.buffer, bytes.byteOffset, 8), 0, 8)}`, `decoded: ${PageRequestDesc.describe(PageRequestDesc.decode(bytes))}`];
}

// ==== vtd-sva =============================================================================================

export const vtdSva: Scenario = {
  name: "vtd-sva",
  iommu: "vtd",
  description: "boot → guest SVA bind → DMA with the PASID → I/O page fault → guest PRQ → guest maps and responds → DMA completes",
  run(log) {
    const m = new HostMachine({ iommu: "vtd" });
    // the host kernel already holds a PASID of the global space (a host SVA user), so guest and
    // host PASIDs differ
    const hostKernelPasid = m.pasids.allocGlobal(PASID_MAX);
    log.step(`host: the kernel holds PASID ${hostKernelPasid} of the global PASID space (a host SVA user)`);
    const g = bootVtdGuest(log, { machine: m });
    const { vm, vmm, gd, drv, out } = g;
    const proc = new GuestProcess(vm, "x86-4level");
    const BUF = 0x7f000; // guest virtual page of a populated buffer
    const LAZY = 0x7f100; // guest virtual pages mapped on first touch
    proc.map(BUF, 4);
    const payload = pattern(3 * PAGE_SIZE, 0x31);
    proc.write(BUF * PAGE_SIZE + 0x800, payload);
    drv.addLazyRegion(proc, LAZY, 64);
    log.step(
      `guest: process ${proc.pid} maps 4 pages at GVA ${hex(BUF * PAGE_SIZE)} and reserves 64 lazily populated pages at ${hex(LAZY * PAGE_SIZE)}`,
      `CR3 (4-level page table root) at GPA ${hex(proc.rootGpa)}`,
      ...[0, 1, 2, 3].map((i) => `GVA ${hex((BUF + i) * PAGE_SIZE)} → GPA ${hex(proc.guestPage(BUF + i) * PAGE_SIZE)}`),
    );
    const pasid = drv.svaBind(proc, gd.sid);
    const hpasid = vm.pasids.hostOf(pasid);
    const b = vmm.bindOf(gd, hpasid);
    expect(b !== undefined && b.kind === "first-stage" && b.pgtbl === proc.rootGpa && b.addrWidth === 48, "the VMM bound the guest CR3 at the host PASID");
    expect(pasid !== hpasid, "guest and host PASIDs differ");
    const e = PasidEntry.decode(vm.ram.read(drv.pasidEntryGpa(gd.sid, pasid), 64));
    expect(e.p === 1 && e.pgtt === 1 && e.fsptptr === proc.rootGpa && e.fspm === 0 && e.did === 1, "first-stage PASID entry with FSPTPTR = CR3");
    log.step(
      `guest: SVA bind of process ${proc.pid} to ${fmtSid(gd.sid)}: PASID ${pasid} (from the VMM); the VMM backs it with host PASID ${hpasid}`,
      ...pasidEntryLines(g, pasid),
      ...out.take(),
      `PASID set of ${vm.name}: ${vm.pasids.entries().map(([gp, hp]) => `guest ${gp} → host ${hp}`).join(", ")}`,
    );
    // DMA with the PASID through the warm nested setup: GVA → GPA (guest table) → host page (stage 2)
    const rd = new Uint8Array(payload.length);
    const r1 = vmm.dma(gd, { pasid, iova: BigInt(BUF * PAGE_SIZE + 0x800), length: rd.length, write: false, data: rd });
    expect(r1.status === "done" && same(rd, payload), "the device read the process's buffer through its virtual addresses");
    log.step(
      `device: DMA read of ${rd.length} bytes at GVA ${hex(BUF * PAGE_SIZE + 0x800)} with guest PASID ${pasid} (sent as host PASID ${hpasid})`,
      `result ${r1.status}, ${r1.bytes} bytes, first bytes ${[...rd.subarray(0, 8)].map((x) => hex(x)).join(" ")}`,
      `host IOTLB now holds ${m.vtd?.unit.iotlb.size ?? 0} entries`,
    );
    // I/O page fault: a page of the lazy region nobody touched
    const gva = (LAZY + 5) * PAGE_SIZE + 0x40;
    const wr = pattern(64, 0x99);
    let completed: DmaResult | null = null;
    const host = g.m.vtd?.driver;
    const hostPrq = host?.prqLog.length ?? 0;
    const r2 = vmm.dma(gd, { pasid, iova: BigInt(gva), length: wr.length, write: true, data: wr, onComplete: (x) => (completed = x) });
    const req = drv.prqLog[drv.prqLog.length - 1];
    expect(host !== undefined && host.prqLog.length === hostPrq + 1 && host.prqLog[hostPrq].pasid === hpasid, "the host PRQ got the request with the host PASID");
    expect(req !== undefined && req.pasid === pasid && req.rid === gd.sid && req.write && req.addr === (LAZY + 5) * PAGE_SIZE, "the guest PRQ got it with the guest PASID and RID");
    expect(req.outcome === "mapped" && req.response === 0, "the guest mapped the page and answered success");
    expect(completed !== null && (completed as DmaResult).status === "done" && r2.status === "done", "the retried DMA completed");
    expect(same(proc.read(gva, wr.length), wr), "the bytes landed in the process's new page");
    log.step(
      `device: DMA write at GVA ${hex(gva)} (not populated): I/O page fault, host PRQ → fault fd → guest PRQ → guest maps → page group response → retried DMA ${r2.status}`,
      `host PRQ: rid ${hex(host.prqLog[hostPrq].rid)} PASID ${host.prqLog[hostPrq].pasid} addr ${hex(host.prqLog[hostPrq].addr)} prgi ${host.prqLog[hostPrq].prgi}`,
      ...out.take(),
      ...prqSlotLines(g, drv.prqLog.length - 1),
      `guest: GVA ${hex(LAZY + 5)}000 → GPA ${hex(proc.guestPage(LAZY + 5) * PAGE_SIZE)} (fresh page), response code ${req.response} (success)`,
      `the process reads back ${[...proc.read(gva, 8)].map((x) => hex(x)).join(" ")}`,
    );
    drv.svaUnbind(proc, gd.sid);
    expect(vmm.bindOf(gd, hpasid) === undefined && vm.pasids.hostOf(pasid) === hpasid, "unbind detached the host PASID; the PASID stays allocated");
    log.step(`guest: unbind: PASID entry torn down; the VMM detaches host PASID ${hpasid} (still allocated: guest ${pasid} → host ${hpasid})`, ...out.take());
    drv.releaseProcess(proc);
    vmm.destroy();
    vm.destroy();
    m.pasids.freeGlobal(hostKernelPasid);
    expect(m.pasids.inUse === 0, "every PASID is back");
    log.step("guest: the process exits (VCMD FREE); VM torn down", ...out.take());
  },
};

// ==== vtd-invalidation ========================================================================================

export const vtdInvalidation: Scenario = {
  name: "vtd-invalidation",
  iommu: "vtd",
  description: "a guest that unmaps without a PASID-based IOTLB invalidation keeps a stale translation, as on hardware; the invalidation forwarded with HWPT_INVALIDATE ends it",
  run(log) {
    const g = bootVtdGuest(log);
    const { vm, vmm, gd, drv, out } = g;
    const proc = new GuestProcess(vm, "x86-4level");
    const V = 0x40000;
    proc.map(V, 4);
    const a = pattern(PAGE_SIZE, 0xa1);
    proc.write((V + 2) * PAGE_SIZE, a);
    const pasid = drv.svaBind(proc, gd.sid);
    out.take();
    const page = proc.guestPage(V + 2);
    const rd = new Uint8Array(16);
    const r1 = vmm.dma(gd, { pasid, iova: BigInt((V + 2) * PAGE_SIZE), length: 16, write: false, data: rd });
    expect(r1.status === "done" && same(rd, a.subarray(0, 16)), "the device reads the page");
    log.step(`device reads GVA ${hex((V + 2) * PAGE_SIZE)} (GPA ${hex(page * PAGE_SIZE)}) with PASID ${pasid}: the host IOTLB caches the nested translation`, `read ${[...rd.subarray(0, 8)].map((x) => hex(x)).join(" ")}`);
    // the buggy guest: munmap without the mm notifier's flush; the page goes to another process
    proc.unmap(V + 2, 1);
    const other = new GuestProcess(vm, "x86-4level");
    other.map(0x100, 1);
    const secret = pattern(PAGE_SIZE, 0x5e);
    other.write(0x100 * PAGE_SIZE, secret);
    expect(other.guestPage(0x100) === page, "the guest reused the freed page for another process");
    expect(proc.guestPage(V + 2) === -1, "the page is unmapped in the process");
    log.step(
      `guest (buggy): process ${proc.pid} unmaps GVA ${hex((V + 2) * PAGE_SIZE)} and issues no invalidation; guest page ${hex(page * PAGE_SIZE)} now belongs to process ${other.pid}, which writes a secret into it`,
      ...out.take(),
    );
    const r2 = vmm.dma(gd, { pasid, iova: BigInt((V + 2) * PAGE_SIZE), length: 16, write: false, data: rd });
    expect(r2.status === "done" && same(rd, secret.subarray(0, 16)), "the stale IOTLB entry still translates: the device reads the other process's page");
    log.step(`device reads the unmapped GVA again: ${r2.status} — the stale IOTLB entry still translates; it reads process ${other.pid}'s secret`, `read ${[...rd.subarray(0, 8)].map((x) => hex(x)).join(" ")}`);
    drv.flushRange(proc, V + 2, 1);
    const lines = out.take();
    expect(lines.some((l) => l.includes("IOMMU_HWPT_INVALIDATE")), "the VMM forwarded the invalidation");
    log.step(`guest: the PASID-based IOTLB invalidation it owed (page-selective, PASID ${pasid}); the VMM forwards it`, ...lines);
    const prq = drv.prqLog.length;
    const r3 = vmm.dma(gd, { pasid, iova: BigInt((V + 2) * PAGE_SIZE), length: 16, write: false, data: rd });
    expect(r3.status === "faulted", "the translation is gone: the DMA faults");
    expect(drv.prqLog.length === prq + 1 && drv.prqLog[prq].outcome === "invalid" && drv.prqLog[prq].response === 1, "the guest answered the page request Invalid (no mapping there)");
    log.step(`device reads the GVA again: page request, the guest has no mapping and answers Invalid → DMA ${r3.status}`, ...out.take(), ...prqSlotLines(g, prq));
    vmm.destroy();
    vm.destroy();
  },
};

// ==== vtd-pasid-ownership =======================================================================================

export const vtdPasidOwnership: Scenario = {
  name: "vtd-pasid-ownership",
  iommu: "vtd",
  description: "a second VM on the same machine cannot bind or reach the first VM's host PASID; its own guest PASID maps to another host PASID",
  run(log) {
    const m = new HostMachine({ iommu: "vtd" });
    const A = bootVtdGuest(log, { machine: m, name: "vm-a", device: { name: "0000:03:00.0", sid: 0x0300 } });
    const pa = new GuestProcess(A.vm, "x86-4level");
    pa.map(0x500, 1);
    const dataA = pattern(64, 0xaa);
    pa.write(0x500 * PAGE_SIZE, dataA);
    const gpA = A.drv.svaBind(pa, A.gd.sid);
    const hpA = A.vm.pasids.hostOf(gpA);
    log.step(`vm-a: process binds: guest PASID ${gpA} → host PASID ${hpA}`, ...A.out.take());
    const B = bootVtdGuest(log, { machine: m, name: "vm-b", device: { name: "0000:04:00.0", sid: 0x0400 } });
    const pb = new GuestProcess(B.vm, "x86-4level");
    pb.map(0x500, 1);
    const dataB = pattern(64, 0xbb);
    pb.write(0x500 * PAGE_SIZE, dataB);
    const gpB = B.drv.svaBind(pb, B.gd.sid);
    const hpB = B.vm.pasids.hostOf(gpB);
    expect(gpB === gpA && hpB !== hpA, "the same guest PASID in vm-b is another host PASID");
    log.step(`vm-b: process binds: guest PASID ${gpB} → host PASID ${hpB} (the same guest PASID as vm-a's, another host PASID)`, ...B.out.take());
    // vm-b's VMM tries to bind vm-a's host PASID
    const before = { a: A.a.idev.attachedPasids().join(","), b: B.a.idev.attachedPasids().join(","), binds: B.vmm.allBinds().length };
    let code = "";
    try {
      B.vmm.bindGpasid(B.gd, { hpasid: hpA, gpasid: gpB, kind: "first-stage", pgtbl: pb.rootGpa, addrWidth: 48 });
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      code = e.code;
    }
    expect(code === "EPERM", "binding another VM's host PASID is EPERM");
    expect(A.a.idev.attachedPasids().join(",") === before.a && B.a.idev.attachedPasids().join(",") === before.b && B.vmm.allBinds().length === before.binds, "the failed bind changed nothing");
    log.step(`vm-b's VMM asks to bind host PASID ${hpA} (vm-a's) to its device: ${code}; nothing changed`, `vm-a's device PASIDs: [${before.a}], vm-b's: [${before.b}]`);
    // vm-b's device sends DMA tagged with vm-a's host PASID (no PASID translation on its way)
    const rd = new Uint8Array(64);
    const r = B.a.dev.dma({ pasid: hpA, iova: BigInt(0x500 * PAGE_SIZE), length: 64, write: false, data: rd });
    expect(r.status === "faulted" && r.fault?.kind === "config", "vm-b's device has nothing at vm-a's host PASID");
    log.step(`vm-b's device DMA tagged with host PASID ${hpA}: ${r.status} (${r.fault?.kind}, reason ${hex(r.fault?.code ?? 0)}): vm-a's memory is not reachable`);
    // and vm-b's guest cannot name vm-a's PASIDs at all: its set has no translation for them
    let enoent = "";
    try {
      B.vmm.dma(B.gd, { pasid: gpA + 1, iova: 0n, length: 4, write: false, data: new Uint8Array(4) });
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      enoent = e.code;
    }
    expect(enoent === "ENOENT", "a guest PASID the VM does not hold has no host PASID");
    const ra = A.vmm.dma(A.gd, { pasid: gpA, iova: BigInt(0x500 * PAGE_SIZE), length: 64, write: false, data: rd });
    expect(ra.status === "done" && same(rd, dataA), "vm-a reads its process");
    const rb = B.vmm.dma(B.gd, { pasid: gpB, iova: BigInt(0x500 * PAGE_SIZE), length: 64, write: false, data: rd });
    expect(rb.status === "done" && same(rd, dataB), "vm-b reads its own process at the same GVA with the same guest PASID");
    log.step(`each VM's DMA with guest PASID ${gpA} at GVA ${hex(0x500 * PAGE_SIZE)} reads its own process (vm-a ${hex(dataA[0])}…, vm-b ${hex(dataB[0])}…); vm-b's guest PASID ${gpA + 1} has no host PASID (${enoent})`);
    B.vmm.destroy();
    B.vm.destroy();
    expect(!m.pasids.isUsed(hpB) && m.pasids.isUsed(hpA), "vm-b's teardown freed its PASID only");
    const r2 = A.vmm.dma(A.gd, { pasid: gpA, iova: BigInt(0x500 * PAGE_SIZE), length: 64, write: false, data: rd });
    expect(r2.status === "done", "vm-a is unaffected");
    log.step(`vm-b torn down: host PASID ${hpB} freed, vm-a's host PASID ${hpA} still bound and working`);
    A.vmm.destroy();
    A.vm.destroy();
  },
};

// ==== vtd-dirty ==================================================================================================

export const vtdDirty: Scenario = {
  name: "vtd-dirty",
  iommu: "vtd",
  description: "a migration round over the nested setup: dirty tracking on the parent, device writes through the guest's first stage, GET_DIRTY_BITMAP shows the guest pages written",
  run(log) {
    const g = bootVtdGuest(log, { dirtyParent: true });
    const { vm, vmm, gd, drv, out } = g;
    const proc = new GuestProcess(vm, "x86-4level");
    const V = 0x20000;
    proc.map(V, 8);
    const pasid = drv.svaBind(proc, gd.sid);
    out.take();
    const first = vm.ram.firstGpfn;
    const n = vm.ram.pages;
    vmm.setDirtyTracking(true);
    const clean = vmm.dirtyGuestPages(first, n);
    expect(clean.length === 0, "the first harvest after enabling is clean");
    log.step(`migration starts: the VMM turns dirty tracking on for the stage-2 parent ${vmm.parent}`, ...out.take(), `first harvest: ${clean.length} dirty pages`);
    const written = [1, 4, 6];
    for (const i of written) {
      const r = vmm.dma(gd, { pasid, iova: BigInt((V + i) * PAGE_SIZE + 0x10), length: 32, write: true, data: pattern(32, i) });
      expect(r.status === "done", "device write through the nested translation");
    }
    const rd = vmm.dma(gd, { pasid, iova: BigInt((V + 2) * PAGE_SIZE), length: 32, write: false, data: new Uint8Array(32) });
    expect(rd.status === "done", "device read");
    // and one DMA without PASID (the RID is pass-through in the guest: IOVA = GPA)
    const gpfnRid = vm.allocPages(1);
    const rr = vmm.dma(gd, { pasid: -1, iova: BigInt(gpfnRid * PAGE_SIZE), length: 8, write: true, data: pattern(8, 3) });
    expect(rr.status === "done", "device write without PASID");
    const expected = [...written.map((i) => proc.guestPage(V + i)), gpfnRid].sort((x, y) => x - y);
    const dirty = vmm.dirtyGuestPages(first, n);
    expect(dirty.join(",") === expected.join(","), `dirty guest pages ${dirty.join(",")} are the pages written (${expected.join(",")})`);
    log.step(
      `device writes GVA pages ${written.map((i) => hex(V + i)).join(", ")} with PASID ${pasid}, reads ${hex(V + 2)}, and writes GPA ${hex(gpfnRid * PAGE_SIZE)} without PASID`,
      ...written.map((i) => `GVA ${hex((V + i) * PAGE_SIZE)} → guest page ${hex(proc.guestPage(V + i))}`),
      `IOMMU_HWPT_GET_DIRTY_BITMAP: dirty guest pages ${dirty.map((x) => hex(x)).join(", ")} (the read page ${hex(proc.guestPage(V + 2))} is not)`,
    );
    const again = vmm.dirtyGuestPages(first, n);
    expect(again.length === 0, "the harvest cleared the bits");
    const r4 = vmm.dma(gd, { pasid, iova: BigInt((V + 7) * PAGE_SIZE), length: 8, write: true, data: pattern(8, 7) });
    expect(r4.status === "done", "device write");
    const round2 = vmm.dirtyGuestPages(first, n);
    expect(round2.length === 1 && round2[0] === proc.guestPage(V + 7), "the second round sees only the new write");
    log.step(`second round: the previous harvest cleared the bits; one more device write → dirty ${round2.map((x) => hex(x)).join(", ")}`);
    vmm.setDirtyTracking(false);
    log.step("migration done: dirty tracking off", ...out.take());
    vmm.destroy();
    vm.destroy();
  },
};

// ==== vtd-teardown ===================================================================================================

export const vtdTeardown: Scenario = {
  name: "vtd-teardown",
  iommu: "vtd",
  description: "a VM with binds on two devices, a sub-device and an unanswered page request is torn down: no iommufd object, pinned page or PASID is left",
  run(log) {
    const m = new HostMachine({ iommu: "vtd" });
    const pinned0 = m.host.phys.framesPinned;
    const g = bootVtdGuest(log, { machine: m });
    const { vm, vmm, gd, drv, out } = g;
    const dev2 = m.addDevice({ name: "0000:05:00.0", sid: 0x0500 });
    const a2 = vm.assign(dev2);
    const gd2 = vmm.attachGuestDevice(a2, 0x0018);
    drv.addDevice(gd2.sid);
    // a sub-device of the first device (an mdev-like slice): another guest RID on the same host device
    const sub = vmm.attachGuestDevice(g.a, 0x0020);
    drv.addDevice(sub.sid);
    const p1 = new GuestProcess(vm, "x86-4level");
    const p2 = new GuestProcess(vm, "x86-4level");
    p1.map(0x10, 2);
    p2.map(0x10, 2);
    drv.addLazyRegion(p2, 0x80, 8);
    const pasid1 = drv.svaBind(p1, gd.sid);
    drv.svaBind(p1, sub.sid);
    const pasid2 = drv.svaBind(p2, gd2.sid);
    const h1 = vm.pasids.hostOf(pasid1);
    expect(vmm.bindOf(gd, h1)?.users.size === 2, "the sub-device shares the bind of its device");
    // the guest stops answering page requests: one stays outstanding
    drv.maskPageRequests(true);
    let ended: DmaResult | null = null;
    const r = vmm.dma(gd2, { pasid: pasid2, iova: BigInt(0x83 * PAGE_SIZE), length: 8, write: true, data: new Uint8Array(8), onComplete: (x) => (ended = x) });
    expect(r.status === "pending" && vmm.pendingPageRequests === 1, "a page request waits for the guest");
    out.take();
    const objs = [...vm.ctx.objects.values()].map((o) => `${o.type} ${o.id}`);
    log.step(
      `${vm.name} running: PASID ${pasid1} bound on ${fmtSid(gd.sid)} and its sub-device ${fmtSid(sub.sid)} (host PASID ${h1}, 2 users), PASID ${pasid2} on ${fmtSid(gd2.sid)}, one page request unanswered`,
      `iommufd objects: ${objs.join(", ")}`,
      `pinned frames: ${m.host.phys.framesPinned - pinned0}, host PASIDs in use: ${m.pasids.inUse}`,
    );
    vmm.destroy();
    expect((ended as DmaResult | null)?.status === "faulted", "the unanswered DMA ended (answered Invalid when the fault queue went)");
    const left = [...vm.ctx.objects.values()].map((o) => `${o.type} ${o.id}`);
    log.step("the VMM tears its vIOMMU down: binds detached, nested HWPTs and the fault queue destroyed; the outstanding DMA ends faulted", ...out.take(), `iommufd objects left to the VM: ${left.join(", ")}`);
    vm.destroy();
    expect(vm.ctx.objects.size === 0, "no iommufd object is left");
    expect(m.host.phys.framesPinned === pinned0, "no page is pinned");
    expect(m.pasids.inUse === 0, "no PASID is allocated");
    const stale = g.a.dev.dma({ pasid: h1, iova: BigInt(0x10 * PAGE_SIZE), length: 4, write: false, data: new Uint8Array(4) });
    expect(stale.status === "faulted", "the old host PASID translates nothing");
    log.step(
      "the VM goes: devices closed, /dev/iommu closed, PASID set freed, VMM exits",
      `iommufd objects: ${vm.ctx.objects.size}, pinned frames: ${m.host.phys.framesPinned - pinned0}, host PASIDs in use: ${m.pasids.inUse}`,
      `DMA with the old host PASID ${h1}: ${stale.status} (${stale.fault?.kind})`,
    );
  },
};

export const vtdScenarios: readonly Scenario[] = [vtdSva, vtdInvalidation, vtdPasidOwnership, vtdDirty, vtdTeardown];
