/**
 * The VMM glue for an emulated VT-d (QEMU's intel-iommu with x-flts, intel_iommu_accel.c), over
 * iommufd: what the guest writes into the vIOMMU (vvtd.ts) becomes nested HWPTs on the VM's
 * stage-2 parent, attached at host PASIDs of the assigned devices.
 *
 * - **PASID-cache invalidation** (PASID-selective, domain-selective, global): the guest PASID
 *   entries it covers are read from guest RAM (root → context → PASID directory → PASID table) and
 *   compared with the VMM's shadow of each. First-stage → IOMMU_HWPT_ALLOC nested (VTD_S1,
 *   pgtbl_addr = FSPTPTR, addr_width 48 / 57 from FSPM, SRE/WPE/EAFE flags) on the parent with the
 *   VM's fault queue (IOMMU_HWPT_FAULT_ID_VALID) and IOMMU_HWPT_ALLOC_PASID, attached at the host
 *   PASID; a changed entry → a new nested HWPT replaces the old one (IOMMU_HWPT_ALLOC then replace,
 *   the old HWPT destroyed); pass-through → the parent at that PASID; not present → detached. The
 *   RID_PASID entry drives the RID's attachment the same way (QEMU's x-flts flow proper).
 * - **PASID-based IOTLB invalidation** → IOMMU_HWPT_INVALIDATE with one VTD_S1 entry on each nested
 *   HWPT whose shadow matches the descriptor's DID and PASID: {addr, npages = 2^AM, LEAF if IH}, or
 *   {0, U64_MAX} for all of the PASID. IOTLB (type 2) descriptors do not cover first-stage entries
 *   in scalable mode and are not forwarded.
 * - **Context-cache invalidation** drops the VMM's cached context entries; a device whose context
 *   is gone loses its shadows, one whose context is present has its PASID table replayed. SRTP and
 *   TE replay everything (TE off detaches every PASID and puts the RID back on the parent).
 * - **Guest PASID → host PASID** through the VM's PasidSet (vm.pasids): the guest gets PASIDs from
 *   the VMM through the virtual command interface (each backed at once by a host PASID), or uses
 *   one of its own choosing, which gets its host PASID the first time the guest uses it. The
 *   device's DMA then carries the host PASID (`dma`), as ENQCMD's PASID translation does.
 * - **I/O page faults**: `runEventLoop` reads the fault fd, turns each record into a page request
 *   descriptor in the guest's page request queue (guest RID, guest PASID, the host's group index),
 *   and the guest's page group response into a response written to the fault fd (by cookie).
 *
 * The 2020 "bind guest PASID" rules hold at `bindGpasid` / `unbindGpasid` (intel_svm_bind_gpasid
 * as the seed thread drew it, with the PASID-set ownership check of the 2021 proposal): a device
 * without 20-bit PASIDs → EINVAL; a host PASID outside 1..2^20-1 → EINVAL; a host PASID of another
 * VM → EPERM; 57-bit guest paging on a host without first-stage 5-level paging → EINVAL; the same
 * (host PASID, guest PASID) bound again for the same device by the same VMM → EINVAL; further
 * sub-devices (guest devices backed by the same host device) join the bind with a user count;
 * the last unbind tears the host PASID's attachment down but the PASID stays allocated until it is
 * freed (VCMD FREE, or VM teardown). A failing bind changes nothing.
 *
 * Errors a guest causes while the VMM shadows its entries do not stop the guest's queue: they are
 * kept in `errors`, and the guest sees a fault record (reason 0x5B, PASID entry invalid
 * programming — an approximation: hardware would report it on the first DMA that used the entry).
 */
import { assert, fail, IommuError } from "../../errno.js";
import type { DmaResult } from "../../hw/dma.js";
import { PcGran, PiotlbGran, PrgResponse } from "../../hw/vtd/qi.js";
import { capFromU64, capToU64, ecapFromU64, ecapToU64, type CapReg, type EcapReg } from "../../hw/vtd/regs.js";
import { PasidDirEntry, PasidEntry, Pgtt, SmContextEntry, SmRootEntry } from "../../hw/vtd/tables.js";
import { SmFault, Ttm } from "../../hw/vtd/unit-regs.js";
import { IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, IOMMU_VTD_INV_FLAGS_LEAF, IOMMU_VTD_S1_EAFE, IOMMU_VTD_S1_SRE, IOMMU_VTD_S1_WPE } from "../../iommu/drivers/vtd.js";
import { PASID_MAX } from "../../iommu/pasid.js";
import {
  IOMMU_PGFAULT_FLAGS_LAST_PAGE,
  IOMMU_PGFAULT_FLAGS_PASID_VALID,
  IOMMUFD_PAGE_RESP_INVALID,
  IOMMUFD_PAGE_RESP_SUCCESS,
  PGFAULT_SIZE,
} from "../../iommufd/fault.js";
import { fdTableOf, type IommufdFile } from "../../iommufd/files.js";
import {
  IOMMU_HW_INFO_TYPE_INTEL_VTD,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_HWPT_DATA_VTD_S1,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_FAULT_ID_VALID,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
} from "../../iommufd/types.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import type { AssignedDevice, Vm } from "../vm.js";
import { Vcmd, VcmdStatus, VirtualVtd } from "./vvtd.js";

const U64_MAX = (1n << 64n) - 1n;
const POLLIN = 1;
const PERM_READ = 1;
const PERM_WRITE = 2;
const PERM_EXEC = 4;
const PERM_PRIV = 8;
/** Most fault records read at once. */
const READ_RECORDS = 16;

export interface VmmVtdOptions {
  /** Advertise first-stage 5-level paging (default: the host unit's FS5LP). */
  fs5lp?: boolean;
  /** Advertise the virtual command interface for PASID allocation (default true). */
  vcmd?: boolean;
  /** The stage-2 parent HWPT nested HWPTs sit on (default vm.parent). */
  parent?: number;
}

/** A device as the guest sees it: a requester ID on the vIOMMU, backed by an assigned host device. */
export class VtdGuestDevice {
  /** The VMM's cached context entry (undefined: not read since the last context-cache invalidation). */
  ctx: GuestContext | null | undefined = undefined;
  /** Shadows of the guest's PASID entries, by guest PASID. */
  readonly shadows = new Map<number, Shadow>();
  constructor(
    /** Guest source-id (bus << 8 | devfn). */
    readonly sid: number,
    readonly assigned: AssignedDevice,
    /**
     * The first guest device of its host device: it owns the RID. Further guest devices on the
     * same host device are sub-devices (mdev-like): they share the host device's PASIDs.
     */
    readonly primary: boolean,
  ) {}
}

export interface GuestContext {
  paside: boolean;
  pre: boolean;
  pdts: number;
  dirGpa: number;
  ridPasid: number;
}

/** What the VMM derived from a guest PASID entry. */
export interface Shadow {
  kind: "first-stage" | "pass-through";
  did: number;
  /** First stage: the guest page table (GPA), 48 or 57, iommu_hwpt_vtd_s1 flags. */
  pgtbl: number;
  addrWidth: number;
  flags: number;
  /** The host PASID (IOMMU_NO_PASID for the RID). */
  hpasid: number;
}

/** intel_svm_bind_gpasid's data (struct iommu_gpasid_bind_data, VT-d format) as iommufd carries it. */
export interface GpasidBindData {
  hpasid: number;
  gpasid: number;
  kind: "first-stage" | "pass-through";
  /** First stage: the guest's page-table root (GPA). */
  pgtbl?: number;
  /** 48 or 57. */
  addrWidth?: number;
  /** IOMMU_VTD_S1_SRE / _WPE / _EAFE. */
  flags?: number;
}

/** A host PASID of a host device bound to a guest page table (or the parent). */
export interface GpasidBind {
  readonly assigned: AssignedDevice;
  readonly hpasid: number;
  readonly gpasid: number;
  kind: "first-stage" | "pass-through";
  pgtbl: number;
  addrWidth: number;
  flags: number;
  /** The HWPT attached at hpasid (a nested one the bind owns, or the parent). */
  hwpt: number;
  ownsHwpt: boolean;
  /** The guest (sub-)devices sharing the bind: the user count. */
  readonly users: Set<VtdGuestDevice>;
}

/** A shadowing error the guest caused (also recorded as a vIOMMU fault). */
export interface VmmError {
  sid: number;
  gpasid: number;
  code: string;
  message: string;
}

interface RidState {
  hwpt: number;
  ownsHwpt: boolean;
  shadow: Shadow | null;
}

interface PendingGroup {
  cookie: number;
}

export class VmmVtd {
  readonly vvtd: VirtualVtd;
  readonly parent: number;
  readonly faultId: number;
  readonly faultFd: number;
  /** The host unit's CAP/ECAP (GET_HW_INFO) and the device's PASID width, per assigned device. */
  readonly hostCap: CapReg;
  readonly hostEcap: EcapReg;
  readonly devices: VtdGuestDevice[] = [];
  readonly errors: VmmError[] = [];
  /** Observer of what the VMM does (one line per action), for reports. */
  onTrace: ((line: string) => void) | null = null;
  /** Counters. */
  readonly stats = { hwptAllocs: 0, hwptInvalidates: 0, attaches: 0, replaces: 0, detaches: 0, pageRequests: 0, responses: 0 };

  private readonly binds = new Map<number, GpasidBind>();
  private readonly rid = new Map<AssignedDevice, RidState>();
  private readonly pasidLog2 = new Map<AssignedDevice, number>();
  private readonly pending = new Map<number, PendingGroup>();
  private readonly faultFile: IommufdFile;
  private scratch = 0;
  private scratchBytes = 0;
  private inLoop = false;
  /** struct iommu_hwpt_page_response, reused. */
  private readonly respBuf = new Uint8Array(8);
  private readonly respView = new DataView(this.respBuf.buffer);
  private dead = false;

  constructor(
    readonly vm: Vm,
    opts: VmmVtdOptions = {},
  ) {
    assert(vm.machine.kind === "vtd", "an emulated VT-d needs a VT-d host");
    if (vm.assigned.length === 0) fail("ENODEV", "assign a host device first: the vIOMMU mirrors its IOMMU's capabilities");
    this.parent = opts.parent ?? vm.parent;
    const info = this.hwInfo(vm.assigned[0]);
    this.hostCap = capFromU64(info.cap);
    this.hostEcap = ecapFromU64(info.ecap);
    const fq = vm.ctx.faultQueueAlloc({ flags: 0 });
    this.faultId = fq.out_fault_id as number;
    this.faultFd = fq.out_fault_fd as number;
    this.faultFile = fdTableOf(vm.vmm).get(this.faultFd) as IommufdFile;
    const { cap, ecap } = vIommuCaps(this.hostCap, this.hostEcap, opts);
    this.vvtd = new VirtualVtd(vm.ram, {
      cap,
      ecap,
      backend: {
        contextCacheInvalidate: (g, _did, sid, fm) => this.contextCacheInvalidate(g, sid, fm),
        pasidCacheInvalidate: (g, did, pasid) => this.pasidCacheInvalidate(g, did, pasid),
        iotlbInvalidate: () => undefined,
        pasidIotlbInvalidate: (g, did, pasid, addr, am, ih) => this.pasidIotlbInvalidate(g, did, pasid, addr, am, ih),
        pageGroupResponse: (r) => this.pageGroupResponse(r.rid, r.prgi, r.rc),
        virtualCommand: (cmd, operand) => this.virtualCommand(cmd, operand),
        rootTableSet: () => this.replayAll(),
        translationChanged: (on) => (on ? this.replayAll() : this.translationOff()),
      },
    });
  }


  /**
   * Put assigned device `a` in front of the guest at source-id `sid`. A second guest device on the
   * same assigned device is a sub-device of it (shares its host PASIDs, has no RID of its own).
   */
  attachGuestDevice(a: AssignedDevice, sid: number): VtdGuestDevice {
    this.live();
    if (!this.vm.assigned.includes(a)) fail("EINVAL", "not a device of this VM");
    if (this.devices.some((d) => d.sid === sid)) fail("EEXIST", `guest source-id ${sid} is taken`);
    const gd = new VtdGuestDevice(sid, a, !this.devices.some((d) => d.assigned === a));
    this.devices.push(gd);
    if (gd.primary) this.rid.set(a, { hwpt: this.parent, ownsHwpt: false, shadow: null });
    return gd;
  }

  // ==== ioctls the VMM makes ===========================================================================

  private hwInfo(a: AssignedDevice): { cap: bigint; ecap: bigint; pasidLog2: number } {
    const buf = this.buf(24);
    const r = this.vm.ctx.getHwInfo({ flags: 0, dev_id: a.idev.id, data_len: 24, data_uptr: BigInt(buf) });
    if (r.out_data_type !== IOMMU_HW_INFO_TYPE_INTEL_VTD) fail("EOPNOTSUPP", "the host IOMMU is not VT-d");
    const b = new DataView(this.vm.vmm.read(buf, 24).buffer);
    const pasidLog2 = r.out_max_pasid_log2 ?? 0;
    this.pasidLog2.set(a, pasidLog2);
    return { cap: b.getBigUint64(8, true), ecap: b.getBigUint64(16, true), pasidLog2 };
  }

  private devicePasidLog2(a: AssignedDevice): number {
    return this.pasidLog2.get(a) ?? this.hwInfo(a).pasidLog2;
  }

  /** A user buffer in the VMM process of at least `bytes` (ioctl payloads). */
  private buf(bytes: number): number {
    if (bytes > this.scratchBytes) {
      if (this.scratch !== 0) this.vm.vmm.munmap(this.scratch, this.scratchBytes);
      this.scratchBytes = Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE;
      this.scratch = this.vm.vmm.mmap(this.scratchBytes);
    }
    return this.scratch;
  }

  /** IOMMU_HWPT_ALLOC of a nested HWPT: iommu_hwpt_vtd_s1 on the parent, with the fault queue. */
  private allocNested(a: AssignedDevice, pgtbl: number, addrWidth: number, flags: number): number {
    const data = new Uint8Array(24);
    const dv = new DataView(data.buffer);
    dv.setBigUint64(0, BigInt(flags), true);
    dv.setBigUint64(8, BigInt(pgtbl), true);
    dv.setUint32(16, addrWidth, true);
    const ptr = this.buf(24);
    this.vm.vmm.write(ptr, data);
    const id = this.vm.ctx.hwptAlloc({
      flags: IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID,
      dev_id: a.idev.id,
      pt_id: this.parent,
      data_type: IOMMU_HWPT_DATA_VTD_S1,
      data_len: 24,
      data_uptr: BigInt(ptr),
      fault_id: this.faultId,
    }).out_hwpt_id as number;
    this.stats.hwptAllocs++;
    this.onTrace?.(`IOMMU_HWPT_ALLOC nested: dev_id ${a.idev.id}, pt_id ${this.parent} (parent), VTD_S1 {flags 0x${flags.toString(16)}, pgtbl_addr 0x${pgtbl.toString(16)}, addr_width ${addrWidth}}, fault_id ${this.faultId} → hwpt ${id}`);
    return id;
  }

  private destroyHwpt(id: number): void {
    this.vm.ctx.destroy({ id });
    this.onTrace?.(`IOMMU_DESTROY hwpt ${id}`);
  }

  /** IOMMU_HWPT_INVALIDATE with one iommu_hwpt_vtd_s1_invalidate entry. */
  private invalidateHwpt(hwpt: number, addr: bigint, npages: bigint, leaf: boolean): void {
    const e = new Uint8Array(24);
    const dv = new DataView(e.buffer);
    dv.setBigUint64(0, addr, true);
    dv.setBigUint64(8, npages, true);
    dv.setUint32(16, leaf ? IOMMU_VTD_INV_FLAGS_LEAF : 0, true);
    const ptr = this.buf(24);
    this.vm.vmm.write(ptr, e);
    this.vm.ctx.hwptInvalidate({ hwpt_id: hwpt, data_uptr: BigInt(ptr), data_type: IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, entry_len: 24, entry_num: 1 });
    this.stats.hwptInvalidates++;
    this.onTrace?.(`IOMMU_HWPT_INVALIDATE hwpt ${hwpt}: {addr 0x${addr.toString(16)}, npages ${npages === U64_MAX ? "U64_MAX" : npages}, flags ${leaf ? "LEAF" : "0"}}`);
  }

  // ==== the 2020 bind rules ===============================================================================

  private bindKey(a: AssignedDevice, hpasid: number): number {
    return a.idev.id * PASID_MAX + hpasid;
  }

  /** The bind of host PASID hpasid on guest device gd's host device (undefined: none). */
  bindOf(gd: VtdGuestDevice, hpasid: number): GpasidBind | undefined {
    return this.binds.get(this.bindKey(gd.assigned, hpasid));
  }

  private checkBindData(gd: VtdGuestDevice, d: GpasidBindData): void {
    if (this.devicePasidLog2(gd.assigned) !== 20) fail("EINVAL", "VT-d supports devices with full 20-bit PASIDs only");
    if (!(Number.isInteger(d.hpasid) && d.hpasid > 0 && d.hpasid < PASID_MAX)) fail("EINVAL", `host PASID ${d.hpasid} is not in 1..2^20-1`);
    this.vm.pasids.check(d.hpasid);
    if (this.vm.pasids.guestOf(d.hpasid) !== d.gpasid) fail("EINVAL", `host PASID ${d.hpasid} does not back guest PASID ${d.gpasid}`);
    if (d.kind === "first-stage") {
      if (d.pgtbl === undefined || d.pgtbl % PAGE_SIZE !== 0) fail("EINVAL", "the guest page table must be page aligned");
      if (d.addrWidth !== 48 && d.addrWidth !== 57) fail("EINVAL", `address width ${d.addrWidth} is neither 48 nor 57`);
      if (d.addrWidth === 57 && this.hostCap.fs5lp === 0) fail("EINVAL", "Cannot support 5 level paging requested by guest");
      if ((d.flags ?? 0) & ~(IOMMU_VTD_S1_SRE | IOMMU_VTD_S1_WPE | IOMMU_VTD_S1_EAFE)) fail("EINVAL", "unknown bind flags");
    }
  }

  /**
   * intel_svm_bind_gpasid in iommufd form: the guest page table at host PASID d.hpasid of gd's
   * host device (HWPT_ALLOC nested + attach), or the parent for pass-through. A sub-device of an
   * already bound device only joins (user count).
   */
  bindGpasid(gd: VtdGuestDevice, d: GpasidBindData): void {
    this.live();
    this.checkBindData(gd, d);
    const a = gd.assigned;
    const key = this.bindKey(a, d.hpasid);
    const b = this.binds.get(key);
    const pgtbl = d.pgtbl ?? 0;
    const addrWidth = d.addrWidth ?? 0;
    const flags = d.flags ?? 0;
    if (b !== undefined) {
      // the same VMM process asks again for the same (host PASID, guest PASID) on the same device
      if (b.users.has(gd)) fail("EINVAL", "Cannot bind the same guest-host PASID for the same process");
      if (b.kind !== d.kind || b.pgtbl !== pgtbl || b.addrWidth !== addrWidth || b.flags !== flags) fail("EINVAL", "a sub-device's bind differs from its device's entry for the PASID");
      b.users.add(gd);
      this.onTrace?.(`guest device ${fmt(gd.sid)} joins the bind of host PASID ${d.hpasid} (${b.users.size} users)`);
      return;
    }
    let hwpt = this.parent;
    let own = false;
    if (d.kind === "first-stage") {
      hwpt = this.allocNested(a, pgtbl, addrWidth, flags);
      own = true;
    }
    try {
      a.idev.pasidAttach(hwpt, d.hpasid);
    } catch (e) {
      if (own) this.destroyHwpt(hwpt);
      throw e;
    }
    this.stats.attaches++;
    this.onTrace?.(`attach hwpt ${hwpt} at host PASID ${d.hpasid} of ${a.dev.name} (guest PASID ${d.gpasid})`);
    this.vm.pasids.hold(d.hpasid);
    this.binds.set(key, { assigned: a, hpasid: d.hpasid, gpasid: d.gpasid, kind: d.kind, pgtbl, addrWidth, flags, hwpt, ownsHwpt: own, users: new Set([gd]) });
  }

  /**
   * intel_svm_unbind_gpasid: one user less; the last one detaches the host PASID (and destroys its
   * nested HWPT). The PASID stays allocated in the VM's set.
   */
  unbindGpasid(gd: VtdGuestDevice, hpasid: number): void {
    this.live();
    const key = this.bindKey(gd.assigned, hpasid);
    const b = this.binds.get(key);
    if (b === undefined || !b.users.has(gd)) fail("EINVAL", `guest device ${fmt(gd.sid)} has no bind at host PASID ${hpasid}`);
    b.users.delete(gd);
    if (b.users.size > 0) {
      this.onTrace?.(`guest device ${fmt(gd.sid)} leaves the bind of host PASID ${hpasid} (${b.users.size} users left)`);
      return;
    }
    b.assigned.idev.pasidDetach(hpasid);
    this.stats.detaches++;
    this.onTrace?.(`detach host PASID ${hpasid} of ${b.assigned.dev.name}`);
    if (b.ownsHwpt) this.destroyHwpt(b.hwpt);
    this.vm.pasids.release(hpasid);
    this.binds.delete(key);
  }

  /** Replace on change: a new HWPT for the bind (the old one destroyed); on failure the old stays. */
  private rebind(b: GpasidBind, s: Shadow): void {
    let hwpt = this.parent;
    let own = false;
    if (s.kind === "first-stage") {
      if (s.addrWidth === 57 && this.hostCap.fs5lp === 0) fail("EINVAL", "Cannot support 5 level paging requested by guest");
      hwpt = this.allocNested(b.assigned, s.pgtbl, s.addrWidth, s.flags);
      own = true;
    }
    try {
      b.assigned.idev.pasidReplace(hwpt, b.hpasid);
    } catch (e) {
      if (own) this.destroyHwpt(hwpt);
      throw e;
    }
    this.stats.replaces++;
    this.onTrace?.(`replace: hwpt ${hwpt} at host PASID ${b.hpasid} (was hwpt ${b.hwpt})`);
    if (b.ownsHwpt) this.destroyHwpt(b.hwpt);
    Object.assign(b, { kind: s.kind, pgtbl: s.pgtbl, addrWidth: s.addrWidth, flags: s.flags, hwpt, ownsHwpt: own });
  }

  // ==== reading the guest's tables ===========================================================================

  private words(gpa: number): { f: Uint32Array | undefined; w: number } | null {
    if (!this.vm.ram.contains(gpa, 8)) return null;
    return { f: this.vm.ram.peekFrameU32(Math.floor(gpa / PAGE_SIZE)), w: (gpa % PAGE_SIZE) >>> 2 };
  }

  /** The guest's scalable-mode context entry for gd (cached until a context-cache invalidation). */
  context(gd: VtdGuestDevice): GuestContext | null {
    if (gd.ctx !== undefined) return gd.ctx;
    gd.ctx = this.readContext(gd);
    return gd.ctx;
  }

  private readContext(gd: VtdGuestDevice): GuestContext | null {
    const v = this.vvtd;
    if (!v.translationEnabled || v.rootTtm !== Ttm.SCALABLE) return null;
    const bus = gd.sid >>> 8;
    const df = gd.sid & 0xff;
    const re = this.words(v.rootGpa + bus * 16);
    if (re === null || re.f === undefined) return null;
    const upper = df >= 128;
    const present = upper ? SmRootEntry.acc.up.get(re.f, re.w) : SmRootEntry.acc.lp.get(re.f, re.w);
    if (present === 0) return null;
    const ct = upper ? SmRootEntry.acc.uctp.get(re.f, re.w) : SmRootEntry.acc.lctp.get(re.f, re.w);
    const ce = this.words(ct + (df & 0x7f) * 32);
    if (ce === null || ce.f === undefined) return null;
    const a = SmContextEntry.acc;
    if (a.p.get(ce.f, ce.w) === 0) return null;
    return { paside: a.paside.get(ce.f, ce.w) === 1, pre: a.pre.get(ce.f, ce.w) === 1, pdts: a.pdts.get(ce.f, ce.w), dirGpa: a.pasiddirptr.get(ce.f, ce.w), ridPasid: a.ridPasid.get(ce.f, ce.w) };
  }

  /** The guest's PASID entry (decoded), or null when it (or its directory entry) is not present. */
  guestPasidEntry(gd: VtdGuestDevice, pasid: number): PasidEntry | null {
    const c = this.context(gd);
    if (c === null) return null;
    if (pasid !== c.ridPasid && !c.paside) return null;
    if (pasid >>> 6 >= 2 ** (c.pdts + 7)) return null;
    const de = this.words(c.dirGpa + (pasid >>> 6) * 8);
    if (de === null || de.f === undefined || PasidDirEntry.acc.p.get(de.f, de.w) === 0) return null;
    const pe = this.words(PasidDirEntry.acc.ptp.get(de.f, de.w) + (pasid & 63) * 64);
    if (pe === null || pe.f === undefined || PasidEntry.acc.p.get(pe.f, pe.w) === 0) return null;
    if (PasidEntry.hasReservedBits(pe.f, pe.w)) return { ...PasidEntry.decodeWords(pe.f, pe.w), pgtt: -1 };
    return PasidEntry.decodeWords(pe.f, pe.w);
  }

  /** Every guest PASID with a present entry in gd's PASID table, ascending. */
  private presentPasids(gd: VtdGuestDevice): number[] {
    const c = this.context(gd);
    if (c === null) return [];
    const out: number[] = [];
    // only RID_PASID's directory entry matters without PASIDE
    const dirEntries = c.paside ? 2 ** (c.pdts + 7) : (c.ridPasid >>> 6) + 1;
    const ram = this.vm.ram;
    const perPage = PAGE_SIZE / 8;
    for (let first = 0; first < dirEntries; first += perPage) {
      const gpa = c.dirGpa + first * 8;
      if (!ram.contains(gpa, PAGE_SIZE)) break;
      const dir = ram.peekFrameU32(Math.floor(gpa / PAGE_SIZE));
      if (dir === undefined) continue; // a page of zeros: nothing present
      for (let i = first; i < Math.min(dirEntries, first + perPage); i++) {
        const dw = (i - first) * 2;
        if (PasidDirEntry.acc.p.get(dir, dw) === 0) continue;
        const t = this.words(PasidDirEntry.acc.ptp.get(dir, dw));
        if (t === null || t.f === undefined) continue;
        for (let k = 0; k < 64; k++) if (PasidEntry.acc.p.get(t.f, t.w + k * 16) === 1) out.push(i * 64 + k);
      }
    }
    if (!c.paside) return out.filter((p) => p === c.ridPasid);
    return out;
  }

  // ==== shadowing ===========================================================================================

  /** The shadow a guest entry asks for (null: an entry the vIOMMU cannot honour — a fault is recorded). */
  private shadowFor(gd: VtdGuestDevice, gpasid: number, e: PasidEntry): Omit<Shadow, "hpasid"> | null {
    const caps = this.vvtd;
    let why = "";
    if (e.pgtt === Pgtt.FIRST_STAGE) {
      if (e.fspm > 1 || (e.fspm === 1 && caps.cap.fs5lp === 0)) why = `FSPM ${e.fspm} without the vIOMMU's 5-level support`;
      else if ((e.sre && caps.ecap.srs === 0) || (e.eafe && caps.ecap.eafs === 0)) why = "SRE/EAFE without the vIOMMU's support";
      else {
        const flags = (e.sre ? IOMMU_VTD_S1_SRE : 0) | (e.wpe ? IOMMU_VTD_S1_WPE : 0) | (e.eafe ? IOMMU_VTD_S1_EAFE : 0);
        return { kind: "first-stage", did: e.did, pgtbl: e.fsptptr, addrWidth: e.fspm === 1 ? 57 : 48, flags };
      }
    } else if (e.pgtt === Pgtt.PASS_THROUGH) {
      return { kind: "pass-through", did: e.did, pgtbl: 0, addrWidth: 0, flags: 0 };
    } else why = e.pgtt === -1 ? "reserved bits set" : `PGTT ${e.pgtt} is not offered by the vIOMMU (first stage and pass-through only)`;
    this.guestError(gd, gpasid, "EINVAL", `invalid PASID entry: ${why}`);
    return null;
  }

  private guestError(gd: VtdGuestDevice, gpasid: number, code: string, message: string): void {
    this.errors.push({ sid: gd.sid, gpasid, code, message });
    this.onTrace?.(`guest error at ${fmt(gd.sid)} PASID ${gpasid}: ${code} ${message}`);
    this.vvtd.recordFault({ fr: SmFault.PASID_ENTRY_INVALID, sid: gd.sid, pp: 1, pv: gpasid, fi: 0, t1: 1 });
  }

  /** Bring (gd, gpasid) in line with the guest's entry; did filters (a DID-selective invalidation). */
  private syncPasid(gd: VtdGuestDevice, gpasid: number, did?: number): void {
    const c = this.context(gd);
    const e = this.guestPasidEntry(gd, gpasid);
    if (c !== null && gpasid === c.ridPasid) return this.syncRid(gd, e, did);
    const sh = gd.shadows.get(gpasid);
    if (did !== undefined && !((e !== null && e.did === did) || (sh !== undefined && sh.did === did))) return;
    const want = e === null ? null : this.shadowFor(gd, gpasid, e);
    try {
      if (want === null) {
        if (sh !== undefined) {
          gd.shadows.delete(gpasid);
          this.unbindGpasid(gd, sh.hpasid);
        }
        return;
      }
      if (sh !== undefined) {
        if (sameShadow(sh, want)) {
          sh.did = want.did;
          return;
        }
        const b = this.bindOf(gd, sh.hpasid) as GpasidBind;
        if (b.kind !== want.kind || b.pgtbl !== want.pgtbl || b.addrWidth !== want.addrWidth || b.flags !== want.flags) this.rebind(b, { ...want, hpasid: sh.hpasid });
        gd.shadows.set(gpasid, { ...want, hpasid: sh.hpasid });
        return;
      }
      // first use of the guest PASID: its host PASID is allocated now unless the guest got it from the VMM
      let hpasid: number;
      let fresh = false;
      if (this.hasGuestPasid(gpasid)) hpasid = this.vm.pasids.hostOf(gpasid);
      else {
        hpasid = this.vm.pasids.alloc(gpasid, 2 ** this.devicePasidLog2(gd.assigned));
        fresh = true;
        this.onTrace?.(`guest PASID ${gpasid} first used: host PASID ${hpasid} allocated in ${this.vm.name}'s PASID set`);
      }
      try {
        this.bindGpasid(gd, { hpasid, gpasid, ...want });
      } catch (err) {
        if (fresh) this.vm.pasids.free(hpasid);
        throw err;
      }
      gd.shadows.set(gpasid, { ...want, hpasid });
    } catch (err) {
      if (!(err instanceof IommuError)) throw err;
      this.guestError(gd, gpasid, err.code, err.message);
    }
  }

  private hasGuestPasid(gpasid: number): boolean {
    for (const [g] of this.vm.pasids.entries()) if (g === gpasid) return true;
    return false;
  }

  /** The RID_PASID entry: the RID's attachment (primary guest devices only). */
  private syncRid(gd: VtdGuestDevice, e: PasidEntry | null, did?: number): void {
    if (!gd.primary) return;
    const st = this.rid.get(gd.assigned) as RidState;
    if (did !== undefined && !((e !== null && e.did === did) || (st.shadow !== null && st.shadow.did === did))) return;
    const want = e === null ? null : this.shadowFor(gd, 0, e);
    try {
      this.setRid(gd.assigned, st, want === null ? null : { ...want, hpasid: 0 });
    } catch (err) {
      if (!(err instanceof IommuError)) throw err;
      this.guestError(gd, 0, err.code, err.message);
    }
  }

  private setRid(a: AssignedDevice, st: RidState, s: Shadow | null): void {
    if (st.shadow !== null && s !== null && sameShadow(st.shadow, s)) {
      st.shadow.did = s.did;
      return;
    }
    const idev = a.idev;
    if (s === null) {
      if (idev.attached) {
        idev.detach();
        this.onTrace?.(`detach the RID of ${a.dev.name} (guest entry not present: DMA without PASID blocked)`);
      }
      if (st.ownsHwpt) this.destroyHwpt(st.hwpt);
      Object.assign(st, { hwpt: 0, ownsHwpt: false, shadow: null });
      return;
    }
    if (s.kind === "pass-through" && st.hwpt === this.parent && !st.ownsHwpt && idev.attached) {
      st.shadow = s; // already there
      return;
    }
    let hwpt = this.parent;
    let own = false;
    if (s.kind === "first-stage") {
      if (s.addrWidth === 57 && this.hostCap.fs5lp === 0) fail("EINVAL", "Cannot support 5 level paging requested by guest");
      hwpt = this.allocNested(a, s.pgtbl, s.addrWidth, s.flags);
      own = true;
    }
    try {
      if (idev.attached) idev.replace(hwpt);
      else idev.attach(hwpt);
    } catch (e) {
      if (own) this.destroyHwpt(hwpt);
      throw e;
    }
    this.onTrace?.(`RID of ${a.dev.name} → hwpt ${hwpt}${own ? " (nested)" : " (parent)"}`);
    if (st.ownsHwpt) this.destroyHwpt(st.hwpt);
    Object.assign(st, { hwpt, ownsHwpt: own, shadow: s });
  }

  /** Every PASID of gd the guest has present or the VMM shadows (did: only those of that DID). */
  private syncDevice(gd: VtdGuestDevice, did?: number): void {
    const ps = new Set(this.presentPasids(gd));
    for (const p of gd.shadows.keys()) ps.add(p);
    const st = gd.primary ? this.rid.get(gd.assigned) : undefined;
    if (st?.shadow) ps.add(this.context(gd)?.ridPasid ?? 0);
    for (const p of [...ps].sort((x, y) => x - y)) this.syncPasid(gd, p, did);
    // a context that went away takes the RID's attachment with it
    if (this.context(gd) === null && st !== undefined && st.shadow !== null) {
      try {
        this.setRid(gd.assigned, st, null);
      } catch (err) {
        if (!(err instanceof IommuError)) throw err;
        this.guestError(gd, 0, err.code, err.message);
      }
    }
  }

  // ==== what the vIOMMU hands over ============================================================================

  private pasidCacheInvalidate(g: number, did: number, pasid: number): void {
    this.onTrace?.(`guest PASID-cache invalidation: ${g === PcGran.PASID ? `DID ${did} PASID ${pasid}` : g === PcGran.DOMAIN ? `DID ${did}` : "global"}`);
    for (const gd of this.devices) {
      if (g === PcGran.PASID) this.syncPasid(gd, pasid, did);
      else this.syncDevice(gd, g === PcGran.DOMAIN ? did : undefined);
    }
  }

  private contextCacheInvalidate(g: number, sid: number, fm: number): void {
    const mask = g === 3 ? ~((7 << (3 - fm)) & 7) & 0xffff : 0;
    for (const gd of this.devices) {
      if (g === 3 && (gd.sid & mask) !== (sid & mask)) continue;
      gd.ctx = undefined;
      this.syncDevice(gd);
    }
  }

  private pasidIotlbInvalidate(g: number, did: number, gpasid: number, addr: number, am: number, ih: boolean): void {
    const hwpts = new Set<number>();
    for (const gd of this.devices) {
      const c = this.context(gd);
      if (c !== null && gpasid === c.ridPasid) {
        const st = gd.primary ? this.rid.get(gd.assigned) : undefined;
        if (st?.ownsHwpt && st.shadow?.did === did) hwpts.add(st.hwpt);
        continue;
      }
      const sh = gd.shadows.get(gpasid);
      if (sh === undefined || sh.kind !== "first-stage" || sh.did !== did) continue;
      const b = this.bindOf(gd, sh.hpasid);
      if (b?.ownsHwpt) hwpts.add(b.hwpt);
    }
    for (const h of hwpts) {
      if (g === PiotlbGran.PASID) this.invalidateHwpt(h, 0n, U64_MAX, false);
      else this.invalidateHwpt(h, BigInt(Math.floor(addr / PAGE_SIZE / 2 ** am) * 2 ** am * PAGE_SIZE), 2n ** BigInt(am), ih);
    }
  }

  private replayAll(): void {
    for (const gd of this.devices) {
      gd.ctx = undefined;
      this.syncDevice(gd);
    }
  }

  private translationOff(): void {
    for (const gd of this.devices) {
      gd.ctx = undefined;
      for (const [p, sh] of [...gd.shadows]) {
        gd.shadows.delete(p);
        this.unbindGpasid(gd, sh.hpasid);
      }
    }
    // DMA remapping off: requests without PASID reach guest memory untranslated (GPA = IOVA)
    for (const [a, st] of this.rid) if (st.shadow !== null || st.hwpt !== this.parent) this.setRid(a, st, { kind: "pass-through", did: 0, pgtbl: 0, addrWidth: 0, flags: 0, hpasid: 0 });
  }

  private virtualCommand(cmd: number, operand: number): { sc: number; result: number } {
    const set = this.vm.pasids;
    if (cmd === Vcmd.ALLOC) {
      const used = new Set(set.entries().map(([g]) => g));
      let g = 1;
      while (used.has(g)) g++;
      try {
        const h = set.alloc(g, 2 ** Math.max(0, ...this.vm.assigned.map((a) => this.devicePasidLog2(a))));
        this.onTrace?.(`VCMD ALLOC: guest PASID ${g} → host PASID ${h} (${this.vm.name}'s PASID set)`);
        return { sc: VcmdStatus.SUCCESS, result: g };
      } catch (e) {
        if (!(e instanceof IommuError)) throw e;
        return { sc: VcmdStatus.NO_PASID_AVAIL, result: 0 };
      }
    }
    try {
      const h = set.hostOf(operand);
      set.free(h);
      this.onTrace?.(`VCMD FREE: guest PASID ${operand} (host PASID ${h}) freed`);
      return { sc: VcmdStatus.SUCCESS, result: 0 };
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      return { sc: VcmdStatus.INVALID_PASID, result: 0 };
    }
  }

  // ==== I/O page faults ========================================================================================

  /**
   * The VMM's event loop on the fault fd: every fault record becomes a page request in the guest's
   * queue (whose answer comes back through pageGroupResponse); loops until the fd has nothing to
   * read (answers may retry DMAs that fault again). Returns the records handled.
   */
  runEventLoop(): number {
    if (this.inLoop || this.dead) return 0;
    this.inLoop = true;
    let n = 0;
    try {
      const f = this.faultFile;
      while (((f.poll as () => number)() & POLLIN) !== 0) {
        const bytes = (f.read as (c: number, p: number) => Uint8Array)(PGFAULT_SIZE * READ_RECORDS, 0);
        const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
        for (let off = 0; off < bytes.length; off += PGFAULT_SIZE) {
          this.deliverFault(dv, off);
          n++;
        }
      }
    } finally {
      this.inLoop = false;
    }
    return n;
  }

  private deliverFault(dv: DataView, off: number): void {
    const flags = dv.getUint32(off, true);
    const devId = dv.getUint32(off + 4, true);
    const hpasid = dv.getUint32(off + 8, true);
    const grpid = dv.getUint32(off + 12, true);
    const perm = dv.getUint32(off + 16, true);
    const addr = dv.getBigUint64(off + 24, true);
    const cookie = dv.getUint32(off + 36, true);
    const last = (flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE) !== 0;
    const pasidValid = (flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) !== 0;
    const a = this.vm.assigned.find((x) => x.idev.id === devId);
    let gd: VtdGuestDevice | undefined;
    let gpasid = 0;
    if (a !== undefined && pasidValid) {
      const b = this.binds.get(this.bindKey(a, hpasid));
      if (b !== undefined) {
        gd = [...b.users].find((u) => u.primary) ?? [...b.users][0];
        gpasid = b.gpasid;
      }
    } else if (a !== undefined) gd = this.devices.find((d) => d.assigned === a && d.primary);
    const prgi = grpid & 0x1ff;
    if (gd !== undefined && last) this.pending.set(gd.sid * 512 + prgi, { cookie });
    this.onTrace?.(
      `fault record: dev_id ${devId}, host PASID ${pasidValid ? hpasid : "-"}, grpid ${grpid}, perm 0x${perm.toString(16)}, addr 0x${addr.toString(16)}, cookie ${cookie} → ${gd !== undefined ? `page request to guest ${fmt(gd.sid)} PASID ${gpasid}` : "no guest target"}`,
    );
    const ok =
      gd !== undefined &&
      this.vvtd.injectPageRequest({
        pp: pasidValid ? 1 : 0,
        rid: gd.sid,
        pasid: gpasid,
        er: perm & PERM_EXEC ? 1 : 0,
        pmr: perm & PERM_PRIV ? 1 : 0,
        rdr: perm & PERM_READ ? 1 : 0,
        wrr: perm & PERM_WRITE ? 1 : 0,
        lpig: last ? 1 : 0,
        prgi,
        addr: Number(addr & ~0xfffn),
      });
    this.stats.pageRequests++;
    if (!ok && last) {
      this.onTrace?.("the guest's page request queue cannot take it: answered Invalid");
      if (gd !== undefined) this.pending.delete(gd.sid * 512 + prgi);
      this.respond(cookie, IOMMUFD_PAGE_RESP_INVALID);
    }
  }

  private pageGroupResponse(rid: number, prgi: number, rc: number): void {
    const key = rid * 512 + prgi;
    const p = this.pending.get(key);
    if (p === undefined) return; // no such group outstanding: ignored, as the device would
    this.pending.delete(key);
    // iommufd takes SUCCESS or INVALID; a Response Failure ends the group as Invalid
    this.respond(p.cookie, rc === PrgResponse.SUCCESS ? IOMMUFD_PAGE_RESP_SUCCESS : IOMMUFD_PAGE_RESP_INVALID);
  }

  private respond(cookie: number, code: number): void {
    const resp = this.respBuf;
    this.respView.setUint32(0, cookie, true);
    this.respView.setUint32(4, code, true);
    (this.faultFile.write as (d: Uint8Array, p: number) => number)(resp, 0);
    this.stats.responses++;
    this.onTrace?.(`fault fd response: cookie ${cookie}, code ${code === IOMMUFD_PAGE_RESP_SUCCESS ? "SUCCESS" : "INVALID"}`);
  }

  /** Page groups injected into the guest and not answered yet. */
  get pendingPageRequests(): number {
    return this.pending.size;
  }

  // ==== the device, as the guest drives it ========================================================================

  /**
   * The device does DMA for the guest: a guest PASID (-1: none) is translated to the host PASID
   * the VM's set backs it with (ENQCMD's PASID translation; ENOENT when the VM has no such PASID),
   * and a DMA that faults recoverably is carried through the event loop (guest page request,
   * response). Returns the final result (still "pending" if the guest has not answered).
   */
  dma(gd: VtdGuestDevice, req: { pasid: number; iova: bigint; length: number; write: boolean; data: Uint8Array; onComplete?: (r: DmaResult) => void }): DmaResult {
    this.live();
    const hpasid = req.pasid < 0 ? -1 : this.vm.pasids.hostOf(req.pasid);
    let final: DmaResult | null = null;
    const dev = gd.assigned.dev;
    if (dev.port === null) fail("ENODEV", `${dev.name} has no IOMMU hardware model`);
    // what Device.dma does, with the request built in one shape (the unit's hot path stays monomorphic)
    const r = dev.port.dma({
      sid: dev.sid,
      pasid: hpasid,
      iova: req.iova,
      length: req.length,
      write: req.write,
      data: req.data,
      onComplete: (x) => {
        final = x;
        req.onComplete?.(x);
      },
    });
    if (r.status !== "pending") return r;
    this.runEventLoop();
    return final ?? r;
  }

  // ==== dirty tracking (migration) =====================================================================================

  /**
   * IOMMU_HWPT_SET_DIRTY_TRACKING on the parent: the host driver turns second-stage A/D (SSADE) on
   * in every PASID entry whose second stage is the parent — its RID attachments and the nested
   * HWPTs on it, at the RID and at PASIDs — so the device's writes through guest SVA are tracked.
   */
  setDirtyTracking(enable: boolean): void {
    this.live();
    this.vm.ctx.hwptSetDirtyTracking({ flags: enable ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0, hwpt_id: this.parent });
    this.onTrace?.(`IOMMU_HWPT_SET_DIRTY_TRACKING hwpt ${this.parent}: ${enable ? "on" : "off"}`);
  }

  /** IOMMU_HWPT_GET_DIRTY_BITMAP over guest pages [firstGpfn, firstGpfn + n): the dirty guest page numbers. */
  dirtyGuestPages(firstGpfn: number, n: number, clear = true): number[] {
    this.live();
    const bytes = Math.ceil(n / 64) * 8;
    const ptr = this.buf(bytes);
    this.vm.vmm.write(ptr, new Uint8Array(bytes));
    this.vm.ctx.hwptGetDirtyBitmap({
      hwpt_id: this.parent,
      flags: clear ? 0 : IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
      iova: BigInt(firstGpfn * PAGE_SIZE),
      length: BigInt(n * PAGE_SIZE),
      page_size: BigInt(PAGE_SIZE),
      data: BigInt(ptr),
    });
    const bm = this.vm.vmm.read(ptr, bytes);
    const out: number[] = [];
    for (let i = 0; i < n; i++) if ((bm[i >>> 3] >>> (i & 7)) & 1) out.push(firstGpfn + i);
    return out;
  }

  // ==== teardown =========================================================================================================

  /** Every bind, nested HWPT and the fault queue go (the VM's own teardown follows: vm.destroy()). */
  destroy(): void {
    if (this.dead) return;
    for (const gd of this.devices) {
      for (const [p, sh] of [...gd.shadows]) {
        gd.shadows.delete(p);
        this.unbindGpasid(gd, sh.hpasid);
      }
    }
    for (const b of [...this.binds.values()]) for (const u of [...b.users]) this.unbindGpasid(u, b.hpasid);
    for (const [a, st] of this.rid) {
      if (st.ownsHwpt) {
        if (a.idev.attached) a.idev.replace(this.parent);
        this.destroyHwpt(st.hwpt);
        Object.assign(st, { hwpt: this.parent, ownsHwpt: false, shadow: null });
      }
    }
    // page groups the guest never answered are answered Invalid by the fault object's destruction
    this.pending.clear();
    fdTableOf(this.vm.vmm).close(this.faultFd);
    this.vm.ctx.destroy({ id: this.faultId });
    if (this.scratch !== 0) this.vm.vmm.munmap(this.scratch, this.scratchBytes);
    this.scratch = 0;
    this.dead = true;
  }

  /** Live binds (tests, reports). */
  allBinds(): GpasidBind[] {
    return [...this.binds.values()];
  }

  private live(): void {
    if (this.dead) fail("EINVAL", "the VMM's vIOMMU was torn down");
  }
}

function sameShadow(a: Omit<Shadow, "hpasid">, b: Omit<Shadow, "hpasid">): boolean {
  return a.kind === b.kind && a.pgtbl === b.pgtbl && a.addrWidth === b.addrWidth && a.flags === b.flags;
}

/**
 * CAP / ECAP of the vIOMMU, as QEMU's intel-iommu with x-flts builds them: scalable mode with
 * first-stage translation only (no second stage, so no nesting inside the guest), caching mode (the
 * guest must invalidate after making entries present, which is how the VMM learns of them), PASIDs
 * of 20 bits, queued invalidation, device TLBs, pass-through, the virtual command interface; from
 * the host where the guest's tables end up in host hardware: first-stage 1 GiB and 5-level paging,
 * page requests (PRS).
 */
export function vIommuCaps(host: CapReg, hostEcap: EcapReg, opts: VmmVtdOptions = {}): { cap: bigint; ecap: bigint } {
  const fs5lp = opts.fs5lp ?? host.fs5lp === 1;
  const cap: Partial<CapReg> = {
    nd: 2,
    cm: 1,
    sagaw: 0b00100 | (fs5lp ? 0b01000 : 0),
    mgaw: fs5lp ? 56 : 47,
    fro: 0x22,
    psi: 1,
    nfr: 7,
    mamv: 18,
    dwd: 1,
    drd: 1,
    fs1gp: host.fs1gp,
    fs5lp: fs5lp ? 1 : 0,
  };
  const ecap: Partial<EcapReg> = {
    qi: 1,
    dt: hostEcap.dt,
    pt: 1,
    iro: 0x0f,
    prs: hostEcap.prs,
    pss: 19,
    pasid: 1,
    pds: 1,
    smts: 1,
    vcs: (opts.vcmd ?? true) ? 1 : 0,
    fsts: 1,
  };
  return { cap: capToU64(cap), ecap: ecapToU64(ecap) };
}

function fmt(sid: number): string {
  return `${(sid >>> 8).toString(16).padStart(2, "0")}:${((sid >>> 3) & 0x1f).toString(16).padStart(2, "0")}.${sid & 7}`;
}
