/**
 * The VMM's glue between the guest's vSMMU and the host SMMUv3 through iommufd: QEMU's
 * hw/arm/smmuv3-accel.c (accel=on), plus the stall round trip QEMU does not do yet.
 *
 *  - Plug (set_iommu_device): GET_HW_INFO of the device (IOMMU_HW_INFO_TYPE_ARM_SMMUV3) checked
 *    against what the vSMMU advertises (QEMU's smmuv3_accel_check_hw_compatible: EINVAL here);
 *    the first device also fixes the "auto" properties (SSIDSIZE, RIL, ATS from the host) and
 *    allocates the vIOMMU (IOMMU_VIOMMU_TYPE_ARM_SMMUV3 on the VM's NEST_PARENT HWPT) with the
 *    two pre-made nested HWPTs of QEMU (vSTE abort, vSTE bypass); every device gets its vDEVICE
 *    (virt_id = its virtual StreamID) and is attached according to the guest's configuration
 *    (SMMU disabled: GBPA's abort or bypass HWPT).
 *  - The guest's CFGI_STE / CFGI_STE_RANGE / CFGI_ALL: read the guest STE; invalid or Config
 *    abort → the abort HWPT; bypass → the bypass HWPT; anything else → IOMMU_HWPT_ALLOC on the
 *    vIOMMU with IOMMU_HWPT_DATA_ARM_SMMUV3 = the first two STE words masked as QEMU masks them
 *    (with FAULT_ID_VALID and the VM's fault queue for a stall-capable device), then replace the
 *    device's attachment and destroy the previous nested HWPT. A failure leaves the device as it
 *    was and makes the command CERROR_ILL in the guest (QEMU). Two departures: QEMU rejects
 *    Config 6/7 itself, here the kernel is asked and its EIO is what the VMM reports; and a vSID
 *    the guest's stream table has no STE for (beyond it, invalid L1 descriptor) gets the abort
 *    HWPT, as the hardware aborts such a stream, where QEMU leaves the device as it was.
 *  - TLBI_NH_*, TLBI_NSNH_ALL, CFGI_CD*, ATC_INV: forwarded as raw 16-byte commands with
 *    IOMMU_HWPT_INVALIDATE on the vIOMMU, one call per run of consecutive commands (QEMU sends
 *    them one at a time; the kernel's entry_num tells which one failed, so the guest sees the
 *    same). SID-based commands for a vSID without a vDEVICE are skipped, as QEMU does.
 *  - The vEVENTQ (allocated when the guest enables its event queue, depth = the guest's queue
 *    size, as QEMU): `poll()` reads it and writes each record (already carrying the vSID) into the
 *    guest's event queue; a LOST_EVENTS header becomes an overflow of the guest's queue.
 *  - Stalls: `poll()` also reads the fault queue fd; each fault becomes an F_TRANSLATION event with
 *    Stall = 1 and a virtual STAG (lowest free per vSID) in the guest's event queue (RnW, PnU, InD
 *    from the fault's perm; the fault record does not say which translation fault it was, so the
 *    model's choice is F_TRANSLATION, CLASS = IN). The guest's CMD_RESUME (vSID, STAG) becomes the
 *    response written to the fault fd: Retry → IOMMUFD_PAGE_RESP_SUCCESS, Abort/Terminate →
 *    IOMMUFD_PAGE_RESP_INVALID; CMD_STALL_TERM answers every stall of the vSID INVALID. When the
 *    guest's event queue cannot take the event, the stall is answered INVALID at once.
 *
 * PASIDs (SubstreamIDs) of an SMMUv3 guest live in the guest's own CD tables, which the host
 * walks through stage 2: the VMM allocates no host PASID (as upstream) and the VM's PasidSet
 * stays empty. Ownership is the device's: a (vSID, SSID) pair means something only through the
 * vDEVICE of this VM's vIOMMU, whose objects no other iommufd context can name, and whose device
 * no other context can bind; another VM's vSID is unknown to this vIOMMU (the kernel's EIO for a
 * CFGI_CD naming it). This is the model's choice, pinned by the smmuv3-ownership scenario.
 */
import { IommuError, fail } from "../../errno.js";
import { CmdOp, ResumeAction } from "../../hw/smmuv3/cmdq.js";
import { EvtFTranslation, EventClass } from "../../hw/smmuv3/events.js";
import { Aidr, Idr0, Idr1, Idr3, Idr5, type Idr0 as Idr0T, type Idr1 as Idr1T, type Idr3 as Idr3T, type Idr5 as Idr5T } from "../../hw/smmuv3/regs.js";
import type { SmmuIdRegs } from "../../hw/smmuv3/unit-regs.js";
import { fdTableOf } from "../../iommufd/files.js";
import {
  IOMMU_HWPT_DATA_ARM_SMMUV3,
  IOMMU_HWPT_FAULT_ID_VALID,
  IOMMU_HW_INFO_TYPE_ARM_SMMUV3,
  IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
  IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
  IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
  VEVENT_HEADER_SIZE,
} from "../../iommufd/types.js";
import { IOMMUFD_PAGE_RESP_INVALID, IOMMUFD_PAGE_RESP_SUCCESS, PGFAULT_SIZE } from "../../iommufd/fault.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import type { AssignedDevice, Vm } from "../vm.js";
import { VSmmu, type VSmmuBackend } from "./vsmmu.js";

/** IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 */
export const IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1;
/** sizeof(struct iommu_hw_info_arm_smmuv3) */
const HW_INFO_SIZE = 40;
/** iommu_fault perm bits. */
const PERM_READ = 1 << 0;
const PERM_EXEC = 1 << 2;
const PERM_PRIV = 1 << 3;

/**
 * QEMU's STE0_MASK / STE1_MASK (smmuv3-accel.c), as 32-bit words: V, Config, S1Fmt, S1ContextPtr
 * (bits 55:6: four bits wider than the kernel allows, which the kernel answers EIO), S1CDMax;
 * S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS.
 */
export const QEMU_VSTE_MASK: Readonly<Uint32Array> = new Uint32Array([0xffffffff, 0xf8ffffff, 0x3f0000ff, 0]);

export interface SmmuVmmOptions {
  /** StreamID bits the vSMMU advertises (QEMU: 16). The guest uses a linear table up to 8. */
  sidBits?: number;
  /** Advertise 2-level stream tables (IDR0.ST_LEVEL; QEMU requires the host's value). Default: the host's. */
  stLevel2?: boolean;
  /** SubstreamID bits ("auto": the host's, QEMU's ssidsize=auto). Default "auto". */
  ssidBits?: number | "auto";
  /** Output address size: 44 (QEMU's default) or 48 (oas=48). Default 48. */
  oas?: 44 | 48;
  /** log2 of the queue sizes advertised in IDR1 (default: 8 for commands, 7 for events). */
  cmdqLog2?: number;
  evtqLog2?: number;
  /** Keep `trace`, one line per iommufd call and event (default true). */
  trace?: boolean;
}

/** What plug() takes for each device. */
export interface PlugOptions {
  /** The virtual StreamID the guest knows the device by. */
  vsid: number;
  /** The platform says "dma-can-stall": stage-1 faults may stall (default false). */
  canStall?: boolean;
}

export interface PluggedDevice {
  readonly assigned: AssignedDevice;
  readonly vsid: number;
  readonly canStall: boolean;
  /** The vDEVICE's object ID. */
  vdeviceId: number;
  /** The HWPT the device is attached to. */
  hwpt: number;
  /** The nested HWPT made from the guest's STE (0 when abort/bypass or none). */
  s1Hwpt: number;
  /** What the last STE install put in place. */
  state: "s2" | "abort" | "bypass" | "translate";
}

/** A call that failed, as the VMM saw it. */
export interface VmmError {
  what: string;
  errno: string;
  message: string;
}

/** The vSMMU's ID registers for a host's (null: QEMU's defaults without a host). */
export function vsmmuIdRegs(host: SmmuIdRegs | null, opts: SmmuVmmOptions = {}): SmmuIdRegs {
  const h0: Idr0T | null = host ? Idr0.decodeWords(new Uint32Array([host.idr0])) : null;
  const h1: Idr1T | null = host ? Idr1.decodeWords(new Uint32Array([host.idr1])) : null;
  const h3: Idr3T | null = host ? Idr3.decodeWords(new Uint32Array([host.idr3])) : null;
  const h5: Idr5T | null = host ? Idr5.decodeWords(new Uint32Array([host.idr5])) : null;
  const ssid = opts.ssidBits === undefined || opts.ssidBits === "auto" ? (h1?.ssidsize ?? 0) : opts.ssidBits;
  const oas = (opts.oas ?? 48) === 48 ? 5 : 4;
  return {
    idr0: Idr0.encodeWords({
      s1p: 1,
      s2p: 0,
      ttf: 2,
      cohacc: 1,
      asid16: 1,
      // stall and terminate models as the host's: a stall can only be the host's
      stallModel: h0 ? h0.stallModel : 1,
      termModel: h0 ? h0.termModel : 1,
      ttendian: 2,
      cd2l: h0 ? h0.cd2l : 1,
      ats: h0 ? h0.ats : 0,
      stLevel: (opts.stLevel2 ?? (h0 ? h0.stLevel === 1 : true)) ? 1 : 0,
    })[0],
    idr1: Idr1.encodeWords({ sidsize: opts.sidBits ?? 16, ssidsize: ssid, eventqs: opts.evtqLog2 ?? 7, cmdqs: opts.cmdqLog2 ?? 8 })[0],
    idr2: 0,
    idr3: Idr3.encodeWords({ ril: h3 ? h3.ril : 1 })[0],
    idr4: 0,
    idr5: Idr5.encodeWords({
      oas,
      gran4k: h5 ? h5.gran4k : 1,
      gran16k: h5 ? h5.gran16k : 0,
      gran64k: h5 ? h5.gran64k : 0,
      stallMax: h5 && h0 && h0.stallModel !== 1 ? h5.stallMax : 0,
    })[0],
    iidr: 0,
    aidr: Aidr.encodeWords({ archMajorRev: 0, archMinorRev: 1 })[0],
  };
}

/** QEMU's smmuv3_accel_check_hw_compatible: why the host cannot back this vSMMU, or null. */
export function hwIncompatibility(host: SmmuIdRegs, v: SmmuIdRegs): string | null {
  const h0 = Idr0.decodeWords(new Uint32Array([host.idr0]));
  const v0 = Idr0.decodeWords(new Uint32Array([v.idr0]));
  const h1 = Idr1.decodeWords(new Uint32Array([host.idr1]));
  const v1 = Idr1.decodeWords(new Uint32Array([v.idr1]));
  const h3 = Idr3.decodeWords(new Uint32Array([host.idr3]));
  const v3 = Idr3.decodeWords(new Uint32Array([v.idr3]));
  const h5 = Idr5.decodeWords(new Uint32Array([host.idr5]));
  const v5 = Idr5.decodeWords(new Uint32Array([v.idr5]));
  if (h0.stLevel !== v0.stLevel) return `stream table format mismatch (host ST_LEVEL ${h0.stLevel}, vSMMU ${v0.stLevel})`;
  if (h0.ttendian > v0.ttendian) return "the host SMMU does not walk little-endian tables";
  if (h0.ttf < v0.ttf) return "the host SMMU does not take AArch64 tables";
  if (h1.sidsize < v1.sidsize) return `host SIDSIZE ${h1.sidsize} below the vSMMU's ${v1.sidsize}`;
  if (h1.ssidsize < v1.ssidsize) return `host SSIDSIZE ${h1.ssidsize} below the vSMMU's ${v1.ssidsize}`;
  if (h3.ril < v3.ril) return "the host SMMU has no range invalidation";
  if (h5.oas < v5.oas) return "the host's IPA size is below the vSMMU's OAS";
  if (h0.ats < v0.ats) return "the host SMMU has no ATS";
  if (h5.gran4k !== v5.gran4k || h5.gran16k !== v5.gran16k || h5.gran64k !== v5.gran64k) return "translation granules differ";
  return null;
}

function errnoOf(e: unknown): string {
  return e instanceof IommuError ? e.code : "EIO";
}

/** An outstanding stall: the fault group's cookie on the fault fd. */
interface StallRec {
  cookie: number;
}

export class SmmuVmm implements VSmmuBackend {
  readonly vsmmu: VSmmu;
  readonly devices: PluggedDevice[] = [];
  /** The host's ID registers as GET_HW_INFO gave them for the first device (null: none plugged). */
  readonly hostIdr: SmmuIdRegs | null;
  viommuId = 0;
  abortHwpt = 0;
  bypassHwpt = 0;
  veventq: { id: number; fd: number } | null = null;
  fault: { id: number; fd: number } | null = null;
  /** Failed calls, oldest first. */
  readonly errors: VmmError[] = [];
  /** What the VMM did through iommufd, one line per call (the last 512). */
  readonly trace: string[] = [];
  readonly stats = { steInstalls: 0, nestedAllocs: 0, invalidateCalls: 0, commandsForwarded: 0, veventsInjected: 0, stallsInjected: 0, responses: 0 };
  /** (vSID << 16 | STAG) → the outstanding stall. */
  private readonly stalls = new Map<number, StallRec>();
  private scratch = 0;
  private static readonly SCRATCH_PAGES = 4;
  private dead = false;
  /** The vEVENTQ sequence last seen (-1: none yet), for lost-event accounting. */
  private lastSeq = -1;
  lostVevents = 0;
  /** SMMUEN / GBPA as the devices were last attached for. */
  private lastConfig = "bypass";

  constructor(
    readonly vm: Vm,
    plug: readonly ({ assigned: AssignedDevice } & PlugOptions)[],
    readonly opts: SmmuVmmOptions = {},
  ) {
    this.scratch = vm.vmm.mmap(SmmuVmm.SCRATCH_PAGES * PAGE_SIZE);
    this.hostIdr = plug.length ? this.hwInfo(plug[0].assigned) : null;
    this.vsmmu = new VSmmu(vm.ram, vsmmuIdRegs(this.hostIdr, opts), this);
    for (const p of plug) this.plug(p.assigned, p);
  }

  private log(line: string): void {
    if (this.opts.trace === false) return;
    this.trace.push(line);
    if (this.trace.length > 512) this.trace.shift();
  }

  private record(what: string, e: unknown): string {
    const errno = errnoOf(e);
    this.errors.push({ what, errno, message: e instanceof Error ? e.message : String(e) });
    if (this.errors.length > 256) this.errors.shift();
    this.log(`${what}: ${errno}`);
    return errno;
  }

  private get ctx() {
    return this.vm.ctx;
  }

  /** IOMMU_GET_HW_INFO for an assigned device: the host SMMU's ID registers. */
  private hwInfo(a: AssignedDevice): SmmuIdRegs {
    const ptr = BigInt(this.scratch);
    const r = this.ctx.getHwInfo({ flags: 0, dev_id: a.idev.id, data_len: HW_INFO_SIZE, data_uptr: ptr });
    if (r.out_data_type !== IOMMU_HW_INFO_TYPE_ARM_SMMUV3) fail("EINVAL", `hw_info type ${r.out_data_type} is not ARM_SMMUV3`);
    const b = this.vm.vmm.read(this.scratch, HW_INFO_SIZE);
    const dv = new DataView(b.buffer, b.byteOffset, b.length);
    const w = (o: number): number => dv.getUint32(o, true);
    return { idr0: w(8), idr1: w(12), idr2: w(16), idr3: w(20), idr4: w(24), idr5: w(28), iidr: w(32), aidr: w(36) };
  }

  private writeScratch(data: Uint8Array): bigint {
    this.vm.vmm.write(this.scratch, data);
    return BigInt(this.scratch);
  }

  /**
   * set_iommu_device: check the host, allocate the vIOMMU with the first device, the device's
   * vDEVICE, the fault queue for the first stall-capable device, and attach the device as the
   * guest's configuration says. A failure undoes what this call made.
   */
  plug(a: AssignedDevice, o: PlugOptions): PluggedDevice {
    this.live();
    if (!this.vm.assigned.includes(a)) fail("EINVAL", "the device is not assigned to this VM");
    if (this.devices.some((d) => d.assigned === a)) fail("EEXIST", "the device is plugged already");
    if (!Number.isInteger(o.vsid) || o.vsid < 0 || o.vsid >= 2 ** this.vsmmu.sidBits) fail("EINVAL", `vSID ${o.vsid} beyond the vSMMU's StreamIDs`);
    if (this.devices.some((d) => d.vsid === o.vsid)) fail("EEXIST", `vSID 0x${o.vsid.toString(16)} is taken`);
    const why = hwIncompatibility(this.hwInfo(a), this.vsmmu.idr);
    if (why !== null) fail("EINVAL", `host SMMUv3 incompatible: ${why}`);
    const made: number[] = [];
    const firstViommu = this.viommuId === 0;
    const fdsMade: number[] = [];
    try {
      if (firstViommu) this.allocViommu(a, made, fdsMade);
      const canStall = o.canStall ?? false;
      if (canStall && this.fault === null) {
        const f = this.ctx.faultQueueAlloc({ flags: 0 });
        this.fault = { id: f.out_fault_id as number, fd: f.out_fault_fd as number };
        made.push(this.fault.id);
        fdsMade.push(this.fault.fd);
        this.log(`FAULT_QUEUE_ALLOC → fault ${this.fault.id}, fd ${this.fault.fd}`);
      }
      const vdev = this.ctx.vdeviceAlloc({ viommu_id: this.viommuId, dev_id: a.idev.id, virt_id: BigInt(o.vsid) }).out_vdevice_id as number;
      made.push(vdev);
      this.log(`VDEVICE_ALLOC dev ${a.idev.id} vSID 0x${o.vsid.toString(16)} → vdevice ${vdev}`);
      const d: PluggedDevice = { assigned: a, vsid: o.vsid, canStall, vdeviceId: vdev, hwpt: this.vm.parent, s1Hwpt: 0, state: "s2" };
      this.devices.push(d);
      const errno = this.installSte(d);
      if (errno !== null) {
        this.devices.pop();
        fail(errno as "EIO", "the device could not be attached as the guest's configuration says");
      }
      return d;
    } catch (e) {
      for (const fd of fdsMade) fdTableOf(this.vm.vmm).close(fd);
      for (const id of made.reverse()) this.ctx.destroy({ id });
      if (firstViommu) {
        this.viommuId = this.abortHwpt = this.bypassHwpt = 0;
        this.veventq = null;
      }
      if (this.fault && made.includes(this.fault.id)) this.fault = null;
      throw e;
    }
  }

  /** smmuv3_accel_alloc_viommu: the vIOMMU, the abort and bypass HWPTs, and the vEVENTQ if the guest's queue is on. */
  private allocViommu(a: AssignedDevice, made: number[], fds: number[]): void {
    const v = this.ctx.viommuAlloc({ flags: 0, type: IOMMU_VIOMMU_TYPE_ARM_SMMUV3, dev_id: a.idev.id, hwpt_id: this.vm.parent, data_len: 0, data_uptr: 0n });
    this.viommuId = v.out_viommu_id as number;
    made.push(this.viommuId);
    this.log(`VIOMMU_ALLOC ARM_SMMUV3 on parent ${this.vm.parent} → viommu ${this.viommuId}`);
    this.abortHwpt = this.allocVste(a, new Uint32Array([1, 0, 0, 0]), 0);
    made.push(this.abortHwpt);
    this.bypassHwpt = this.allocVste(a, new Uint32Array([1 | (4 << 1), 0, 0, 0]), 0);
    made.push(this.bypassHwpt);
    this.log(`HWPT_ALLOC vSTE abort → ${this.abortHwpt}, vSTE bypass → ${this.bypassHwpt}`);
    if (this.vsmmu.evtqEnabled) {
      this.allocVeventq();
      if (this.veventq) {
        made.push(this.veventq.id);
        fds.push(this.veventq.fd);
      }
    }
  }

  private allocVeventq(): void {
    if (this.viommuId === 0 || this.veventq !== null) return;
    const q = this.ctx.veventqAlloc({ flags: 0, viommu_id: this.viommuId, type: IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, veventq_depth: 2 ** this.vsmmu.evtqLog2 });
    this.veventq = { id: q.out_veventq_id as number, fd: q.out_veventq_fd as number };
    this.log(`VEVENTQ_ALLOC depth ${2 ** this.vsmmu.evtqLog2} → veventq ${this.veventq.id}, fd ${this.veventq.fd}`);
  }

  /** IOMMU_HWPT_ALLOC on the vIOMMU from a vSTE (4 words: STE dwords 0-1). */
  private allocVste(a: AssignedDevice, vste: Uint32Array, faultId: number): number {
    const b = new Uint8Array(16);
    const dv = new DataView(b.buffer);
    for (let i = 0; i < 4; i++) dv.setUint32(4 * i, vste[i], true);
    const r = this.ctx.hwptAlloc({
      flags: faultId ? IOMMU_HWPT_FAULT_ID_VALID : 0,
      dev_id: a.idev.id,
      pt_id: this.viommuId,
      data_type: IOMMU_HWPT_DATA_ARM_SMMUV3,
      data_len: 16,
      data_uptr: this.writeScratch(b),
      ...(faultId ? { fault_id: faultId } : {}),
    });
    return r.out_hwpt_id as number;
  }

  // ==============================================================================================
  // VSmmuBackend

  steChanged(first: number, last: number): string | null {
    let errno: string | null = null;
    for (const d of this.devices) {
      if (d.vsid < first || d.vsid > last) continue;
      const e = this.installSte(d);
      errno ??= e;
    }
    return errno;
  }

  configChanged(): void {
    if (this.dead) return;
    if (this.vsmmu.evtqEnabled && this.veventq === null && this.viommuId !== 0) {
      try {
        this.allocVeventq();
      } catch (e) {
        this.record("VEVENTQ_ALLOC", e);
      }
    }
    // SMMUEN or GBPA changed: every device follows (GBPA's HWPT while disabled, its STE once enabled)
    const key = this.vsmmu.smmuEnabled ? "on" : this.vsmmu.gbpaAbort ? "abort" : "bypass";
    if (key === this.lastConfig) return;
    this.lastConfig = key;
    for (const d of this.devices) this.installSte(d);
  }

  /**
   * smmuv3_accel_install_ste for one device: the HWPT its guest configuration calls for, attached
   * in place of the current one. Returns null or the errno of the failing call (nothing changed).
   */
  installSte(d: PluggedDevice): string | null {
    if (this.dead || this.viommuId === 0) return null;
    this.stats.steInstalls++;
    let target: number;
    let state: PluggedDevice["state"];
    let newS1 = 0;
    let detail = "";
    if (!this.vsmmu.smmuEnabled) {
      const abort = this.vsmmu.gbpaAbort;
      target = abort ? this.abortHwpt : this.bypassHwpt;
      state = abort ? "abort" : "bypass";
      detail = `SMMU disabled, GBPA ${abort ? "abort" : "bypass"}`;
    } else {
      // No STE (vSID beyond the table, an invalid L1 descriptor): the hardware aborts the stream
      // (C_BAD_STREAMID); QEMU leaves the device as it was, here it gets the abort HWPT.
      const ste = this.vsmmu.readSte(d.vsid) ?? new Uint32Array(16);
      const valid = (ste[0] & 1) === 1;
      const cfg = (ste[0] >>> 1) & 7;
      if (!valid || cfg < 4) {
        target = this.abortHwpt;
        state = "abort";
        detail = valid ? "STE Config abort" : "STE not valid";
      } else if (cfg === 4) {
        target = this.bypassHwpt;
        state = "bypass";
        detail = "STE Config bypass";
      } else {
        const vste = new Uint32Array(4);
        for (let i = 0; i < 4; i++) vste[i] = ste[i] & QEMU_VSTE_MASK[i];
        const faultId = d.canStall && this.fault !== null ? this.fault.id : 0;
        try {
          newS1 = this.allocVste(d.assigned, vste, faultId);
        } catch (e) {
          return this.record(`HWPT_ALLOC nested (vSID 0x${d.vsid.toString(16)})`, e);
        }
        this.stats.nestedAllocs++;
        target = newS1;
        state = "translate";
        const q0 = (BigInt(vste[1]) << 32n) | BigInt(vste[0]);
        const q1 = (BigInt(vste[3]) << 32n) | BigInt(vste[2]);
        detail = `vSTE {0x${q0.toString(16).padStart(16, "0")}, 0x${q1.toString(16).padStart(16, "0")}}${faultId ? `, fault ${faultId}` : ""} → hwpt ${newS1}`;
      }
    }
    if (target !== d.hwpt) {
      try {
        d.assigned.idev.replace(target);
      } catch (e) {
        if (newS1) this.ctx.destroy({ id: newS1 });
        return this.record(`replace vSID 0x${d.vsid.toString(16)} → hwpt ${target}`, e);
      }
    }
    const old = d.s1Hwpt;
    d.hwpt = target;
    d.s1Hwpt = newS1;
    d.state = state;
    if (old !== 0 && old !== newS1) this.ctx.destroy({ id: old });
    this.log(`install STE vSID 0x${d.vsid.toString(16)}: ${detail}; attached hwpt ${target}${old && old !== newS1 ? `, destroyed hwpt ${old}` : ""}`);
    return null;
  }

  /** Forward a run of invalidation commands with one HWPT_INVALIDATE on the vIOMMU. */
  invalidate(cmds: readonly Uint32Array[]): { done: number; errno: string | null } {
    if (this.dead || this.viommuId === 0) return { done: cmds.length, errno: null };
    // the commands sent and the index of each in the run
    const send: Uint32Array[] = [];
    const at: number[] = [];
    for (let i = 0; i < cmds.length; i++) {
      const op = cmds[i][0] & 0xff;
      const sidBased = op === CmdOp.CFGI_CD || op === CmdOp.CFGI_CD_ALL || op === CmdOp.ATC_INV;
      if (sidBased && !this.devices.some((d) => d.vsid === cmds[i][1])) continue; // no vDEVICE: skipped (QEMU)
      send.push(cmds[i]);
      at.push(i);
    }
    const per = (SmmuVmm.SCRATCH_PAGES * PAGE_SIZE) / 16;
    for (let start = 0; start < send.length; start += per) {
      const chunk = send.slice(start, start + per);
      const b = new Uint8Array(chunk.length * 16);
      const dv = new DataView(b.buffer);
      chunk.forEach((w, j) => {
        for (let k = 0; k < 4; k++) dv.setUint32(16 * j + 4 * k, w[k], true);
      });
      this.stats.invalidateCalls++;
      try {
        this.ctx.hwptInvalidate({ hwpt_id: this.viommuId, data_uptr: this.writeScratch(b), data_type: IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, entry_len: 16, entry_num: chunk.length });
        this.stats.commandsForwarded += chunk.length;
        this.log(`HWPT_INVALIDATE viommu ${this.viommuId}: ${chunk.length} command${chunk.length === 1 ? "" : "s"} (${chunk.map((w) => `0x${(w[0] & 0xff).toString(16)}`).join(" ")})`);
      } catch (e) {
        const out = e instanceof IommuError ? (e.out as { entry_num?: number } | undefined) : undefined;
        const done = start + (out?.entry_num ?? 0);
        this.stats.commandsForwarded += done - start;
        const errno = this.record(`HWPT_INVALIDATE viommu ${this.viommuId} (command 0x${((send[done]?.[0] ?? 0) & 0xff).toString(16)})`, e);
        return { done: at[done] ?? cmds.length, errno };
      }
    }
    return { done: cmds.length, errno: null };
  }

  resume(vsid: number, stag: number, action: number): void {
    const key = vsid * 65536 + stag;
    const s = this.stalls.get(key);
    if (s === undefined) return; // hardware ignores a RESUME it has no stall for
    this.stalls.delete(key);
    this.respond(s, action === ResumeAction.RETRY ? IOMMUFD_PAGE_RESP_SUCCESS : IOMMUFD_PAGE_RESP_INVALID, () => `RESUME vSID 0x${vsid.toString(16)} STAG ${stag}`);
  }

  stallTerm(vsid: number): void {
    for (const [key, s] of [...this.stalls]) {
      if (Math.floor(key / 65536) !== vsid) continue;
      this.stalls.delete(key);
      this.respond(s, IOMMUFD_PAGE_RESP_INVALID, () => `STALL_TERM vSID 0x${vsid.toString(16)}`);
    }
  }

  private respond(s: StallRec, code: number, why: () => string): void {
    if (this.fault === null) return;
    const b = new Uint8Array(8);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, s.cookie, true);
    dv.setUint32(4, code, true);
    const file = fdTableOf(this.vm.vmm).get(this.fault.fd);
    try {
      if (file?.write === undefined) fail("EBADF", "the fault queue's fd is gone");
      file.write(b, 0);
      this.stats.responses++;
      if (this.opts.trace !== false) this.log(`${why()} → fault fd response cookie ${s.cookie} ${code === IOMMUFD_PAGE_RESP_SUCCESS ? "SUCCESS" : "INVALID"}`);
    } catch (e) {
      this.record(`fault fd write (cookie ${s.cookie})`, e);
    }
  }

  /** Outstanding stalls the guest has not answered. */
  get pendingStalls(): number {
    return this.stalls.size;
  }

  // ==============================================================================================
  // The event loop

  /**
   * One turn of the VMM's event loop: drain the vEVENTQ fd and the fault fd into the guest's event
   * queue (the guest's interrupt runs when everything is written). Returns the records handled.
   */
  poll(): number {
    if (this.dead) return 0;
    return this.vsmmu.batch(() => this.drainVeventq() + this.drainFaults());
  }

  private drainVeventq(): number {
    if (this.veventq === null) return 0;
    const file = fdTableOf(this.vm.vmm).get(this.veventq.fd);
    if (file?.read === undefined) return 0; // the VM went away under the VMM
    const read = file.read;
    let n = 0;
    for (;;) {
      const b = read.call(file, 64 * (VEVENT_HEADER_SIZE + 32), 0);
      if (b.length === 0) return n;
      const dv = new DataView(b.buffer, b.byteOffset, b.length);
      let off = 0;
      while (off < b.length) {
        const flags = dv.getUint32(off, true);
        const seq = dv.getUint32(off + 4, true);
        off += VEVENT_HEADER_SIZE;
        n++;
        if (flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS) {
          this.log(`vEVENTQ overflow at sequence ${seq}`);
          this.lostVevents++;
          this.vsmmu.overflow();
          this.lastSeq = -1;
          continue;
        }
        if (this.lastSeq >= 0 && ((seq - this.lastSeq) & 0x7fffffff) !== 1) this.lostVevents += ((seq - this.lastSeq) & 0x7fffffff) - 1;
        this.lastSeq = seq;
        const rec = new Uint32Array(8);
        for (let i = 0; i < 8; i++) rec[i] = dv.getUint32(off + 4 * i, true);
        off += 32;
        this.stats.veventsInjected++;
        this.log(`vEVENT seq ${seq}: event 0x${(rec[0] & 0xff).toString(16)} vSID 0x${rec[1].toString(16)} → guest event queue`);
        this.vsmmu.pushEvent(rec);
      }
    }
  }

  private drainFaults(): number {
    if (this.fault === null) return 0;
    const file = fdTableOf(this.vm.vmm).get(this.fault.fd);
    if (file?.read === undefined) return 0;
    const read = file.read;
    let n = 0;
    for (;;) {
      const b = read.call(file, 16 * PGFAULT_SIZE, 0);
      if (b.length === 0) return n;
      const dv = new DataView(b.buffer, b.byteOffset, b.length);
      for (let off = 0; off < b.length; off += PGFAULT_SIZE) {
        n++;
        const flags = dv.getUint32(off, true);
        const devId = dv.getUint32(off + 4, true);
        const pasid = dv.getUint32(off + 8, true);
        const perm = dv.getUint32(off + 16, true);
        const addr = dv.getBigUint64(off + 24, true);
        const cookie = dv.getUint32(off + 36, true);
        const d = this.devices.find((x) => x.assigned.idev.id === devId);
        if (d === undefined) continue;
        this.injectStall(d, (flags & 1) !== 0, pasid, perm, addr, cookie);
      }
    }
  }

  private injectStall(d: PluggedDevice, pasidValid: boolean, pasid: number, perm: number, addr: bigint, cookie: number): void {
    let stag = 0;
    while (this.stalls.has(d.vsid * 65536 + stag) && stag < 0xffff) stag++;
    const rec: StallRec = { cookie };
    // F_TRANSLATION with Stall = 1 (written field by field: this is the fault round trip's hot path)
    const ev = new Uint32Array(8);
    const f = EvtFTranslation.acc;
    ev.set(EvtFTranslation.fixedValue);
    f.sid.set(ev, 0, d.vsid);
    f.ssv.set(ev, 0, pasidValid ? 1 : 0);
    f.ssid.set(ev, 0, pasidValid ? pasid : 0);
    f.stag.set(ev, 0, stag);
    f.stall.set(ev, 0, 1);
    f.pnu.set(ev, 0, perm & PERM_PRIV ? 1 : 0);
    f.ind.set(ev, 0, perm & PERM_EXEC ? 1 : 0);
    f.rnw.set(ev, 0, perm & PERM_READ ? 1 : 0);
    f.class.set(ev, 0, EventClass.IN);
    f.inputAddr.set(ev, 0, BigInt.asUintN(64, addr));
    this.stats.stallsInjected++;
    const key = d.vsid * 65536 + stag;
    if (this.stalls.has(key)) {
      this.respond(rec, IOMMUFD_PAGE_RESP_INVALID, () => `no free STAG for vSID 0x${d.vsid.toString(16)}`);
      return;
    }
    // known before the record is visible: the guest may answer from the interrupt it raises
    this.stalls.set(key, rec);
    if (!this.vsmmu.pushEvent(ev)) {
      this.stalls.delete(key);
      this.respond(rec, IOMMUFD_PAGE_RESP_INVALID, () => `stall of vSID 0x${d.vsid.toString(16)} not deliverable`);
      return;
    }
    if (this.opts.trace !== false) {
      const at = `dev ${d.assigned.idev.id}${pasidValid ? ` PASID ${pasid}` : ""} addr 0x${addr.toString(16)}`;
      this.log(`fault cookie ${cookie} ${at} → guest F_TRANSLATION stall vSID 0x${d.vsid.toString(16)} STAG ${stag}`);
    }
  }

  // ==============================================================================================
  // Teardown

  /**
   * unset_iommu_device for every device (back to the stage-2 parent, the nested HWPT and vDEVICE
   * destroyed), then the vEVENTQ, the pre-made HWPTs, the vIOMMU and the fault queue, with their
   * fds. Idempotent. The VM itself (vm.destroy) is the caller's.
   */
  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    const fds = fdTableOf(this.vm.vmm);
    for (const d of this.devices.splice(0)) {
      if (d.hwpt !== this.vm.parent) d.assigned.idev.replace(this.vm.parent);
      if (d.s1Hwpt) this.ctx.destroy({ id: d.s1Hwpt });
      this.ctx.destroy({ id: d.vdeviceId });
      this.log(`unplug vSID 0x${d.vsid.toString(16)}: back to parent ${this.vm.parent}, vdevice ${d.vdeviceId} destroyed`);
    }
    this.stalls.clear();
    if (this.veventq) {
      fds.close(this.veventq.fd);
      this.ctx.destroy({ id: this.veventq.id });
      this.veventq = null;
    }
    if (this.viommuId) {
      this.ctx.destroy({ id: this.abortHwpt });
      this.ctx.destroy({ id: this.bypassHwpt });
      this.ctx.destroy({ id: this.viommuId });
      this.viommuId = this.abortHwpt = this.bypassHwpt = 0;
    }
    if (this.fault) {
      fds.close(this.fault.fd);
      this.ctx.destroy({ id: this.fault.id });
      this.fault = null;
    }
    this.vm.vmm.munmap(this.scratch, SmmuVmm.SCRATCH_PAGES * PAGE_SIZE);
    this.log("vIOMMU torn down");
  }

  private live(): void {
    if (this.dead) fail("EINVAL", "the VMM's vSMMU was torn down");
  }
}
