/**
 * The guest kernel's intel-iommu driver, programming the emulated VT-d (vvtd.ts) as Linux 6.12
 * programs a scalable-mode unit, with the structures in guest RAM (page-table area of GuestRam):
 *
 * - boot: queued invalidation (IQA with 256-bit descriptors, GCMD.QIE), the root table (RTADDR
 *   with TTM = scalable, GCMD.SRTP) and the global context / PASID / IOTLB invalidations that
 *   follow it, the page request queue (PQH / PQT / PQA), events unmasked, GCMD.TE;
 * - a device: its PASID directory (2^(PDTS+7) entries for the device's PASID width), the
 *   scalable-mode context entry (PASIDE, DTE for ATS, RID_PASID 0), then PRE when the device takes
 *   I/O page faults; its RID_PASID entry is pass-through (a guest booted with iommu=pt);
 * - SVA (intel_svm_set_dev_pasid): the process's PASID entry is first-stage only, FSPTPTR = the
 *   process's CR3 (a GPA), FSPM 1 for 5-level paging, DID = FLPT_DEFAULT_DID (1, as 6.12 tags SVA
 *   domains), then — the vIOMMU has caching mode — PASID-cache and PASID-based IOTLB invalidation;
 *   unbind tears the entry down as intel_pasid_tear_down_entry does (P cleared, PASID-cache,
 *   P_IOTLB, device TLB, entry cleared, page requests drained);
 * - after the process unmaps memory (the mm notifier): a page-selective PASID-based IOTLB
 *   invalidation (calculate_psi_aligned_address's mask) and the device TLBs;
 * - page requests (prq_event_thread): each request is checked, faulted into the process (a page of
 *   a lazily populated region, `addLazyRegion`) and answered with a page group response.
 *
 * PASIDs for processes come from the VMM through the virtual command interface when the vIOMMU
 * offers it (ECAP.VCS, VCCAP.PAS), else from the guest's own allocator (lowest free from 1).
 * Every descriptor goes through `submit`, which appends a wait descriptor with a status write and
 * checks the status came back (qi_submit_sync).
 */
import { fail, IommuError } from "../../errno.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import {
  CcGran,
  IotlbGran,
  PageRequestDesc,
  PcGran,
  PiotlbGran,
  PrgResponse,
  QI_LAYOUTS,
  QiType,
  type QiDescriptorInput,
  type QiKind,
} from "../../hw/vtd/qi.js";
import { capFromU64, ecapFromU64, type CapReg, type EcapReg } from "../../hw/vtd/regs.js";
import { Fspm, PasidDirEntry, PasidEntry, Pgtt, SmContextEntry, SmRootEntry } from "../../hw/vtd/tables.js";
import { EventCtl, Fsts, Gcmd, Gsts, IQA_DW, Prs, Ttm, VtdReg } from "../../hw/vtd/unit-regs.js";
import type { GuestProcess } from "../process.js";
import type { Vm } from "../vm.js";
import { Vcmd, VcmdReg, VCCAP_PAS, VCMD_OPERAND_SHIFT, VCRSP_IP, VCRSP_RESULT_SHIFT, VCRSP_SC_SHIFT, VcmdStatus, type VirtualVtd } from "./vvtd.js";

/** FLPT_DEFAULT_DID: pass-through and SVA PASID entries (Linux 6.12). */
export const FLPT_DEFAULT_DID = 1;
/** IQ of one page: 128 descriptors of 256 bits. */
const IQ_ENTRIES = 128;
const PRQ_BYTES = PAGE_SIZE;
/** Page group responses queued per submission (each submission ends with its wait descriptor). */
const RESPONSE_BATCH = 32;

export interface GuestDeviceOptions {
  /** The device's PCI PASID capability width (0: none). Default 20. */
  pasidBits?: number;
  /** PCI ATS (device TLB). Default true. */
  ats?: boolean;
  /** PCI PRI (page requests): the guest turns I/O page faults on for it. Default true. */
  pri?: boolean;
}

interface GDev {
  sid: number;
  pasidBits: number;
  ats: boolean;
  pri: boolean;
  pdts: number;
  dirGpfn: number;
  /** PASID-directory index → PASID table guest page. */
  tables: Map<number, number>;
}

interface Sva {
  proc: GuestProcess;
  pasid: number;
  /** Guest SID → bind count (iommu_sva_bind_device handles). */
  devs: Map<number, number>;
}

/** The fields of a page request descriptor the handler uses. */
type PageRequest = Omit<PageRequestDesc, "pdp" | "privateData0" | "privateData1">;

interface LazyRegion {
  vpn: number;
  n: number;
  writable: boolean;
}

/** One page request as the guest's PRQ thread handled it. */
export interface GuestPageRequest {
  rid: number;
  pasid: number;
  pasidPresent: boolean;
  addr: number;
  read: boolean;
  write: boolean;
  prgi: number;
  lastPage: boolean;
  /** The response code sent (PrgResponse), or -1 for none (a stop marker, or not the group's last page). */
  response: number;
  /** What the handler did. */
  outcome: "mapped" | "already-mapped" | "invalid" | "stop-marker";
}

export class GuestVtdDriver {
  readonly cap: CapReg;
  readonly ecap: EcapReg;
  /** The address width code of first-stage domains (AGAW: 2 = 48-bit, 3 = 57-bit). */
  readonly agaw: number;
  /** Page requests handled, in order. */
  readonly prqLog: GuestPageRequest[] = [];
  /** Observer of what the driver does (one line per action), for reports. */
  onTrace: ((line: string) => void) | null = null;

  private booted = false;
  private rootGpfn = 0;
  private iqGpfn = 0;
  private prqGpfn = 0;
  private statusGpfn = 0;
  private iqTail = 0;
  /**
   * The host frames behind the queue pages: guest RAM is the VMM's shared mapping, pinned while
   * it is mapped in the IOAS, so the frames stay (the guest kernel's own pointers to its queues).
   */
  private iqFrame: Uint32Array = new Uint32Array(0);
  private statusFrame: Uint32Array = new Uint32Array(0);
  private prqFrame: Uint32Array = new Uint32Array(0);
  private statusSeq = 0;
  private readonly ctxTables = new Map<number, number>();
  private readonly devs = new Map<number, GDev>();
  private readonly svas = new Map<GuestProcess, Sva>();
  private readonly byPasid = new Map<number, Sva>();
  private readonly lazy = new Map<GuestProcess, LazyRegion[]>();
  private readonly ownPasids = new Set<number>();
  private inPrq = false;

  constructor(
    readonly vm: Vm,
    readonly iommu: VirtualVtd,
  ) {
    this.cap = capFromU64(iommu.read64(VtdReg.CAP));
    this.ecap = ecapFromU64(iommu.read64(VtdReg.ECAP));
    // __iommu_calculate_sagaw with first-stage only: 4-level, and 5-level with FS5LP
    this.agaw = this.ecap.ssts === 0 && this.ecap.fsts === 1 ? (this.cap.fs5lp ? 3 : 2) : this.cap.sagaw & 0b1000 ? 3 : 2;
  }


  // ==== boot ========================================================================================

  /** What intel_iommu_init does for one unit: QI, root table, global invalidations, PRQ, TE. */
  boot(): void {
    if (this.booted) fail("EBUSY", "the guest IOMMU driver is already up");
    const u = this.iommu;
    if (this.ecap.smts === 0) fail("ENODEV", "the vIOMMU has no scalable mode");
    if (this.ecap.qi === 0) fail("ENODEV", "the vIOMMU has no queued invalidation");
    const ram = this.vm.ram;
    this.rootGpfn = ram.allocTable(1);
    this.iqGpfn = ram.allocTable(1);
    this.statusGpfn = ram.allocTable(1);
    this.iqFrame = ram.frameU32(this.iqGpfn);
    this.statusFrame = ram.frameU32(this.statusGpfn);
    // dmar_enable_qi: tail 0, queue base with DW (256-bit descriptors for scalable mode), QIE
    u.write32(VtdReg.IQT, 0);
    u.write64(VtdReg.IQA, BigInt(this.iqGpfn * PAGE_SIZE) | BigInt(IQA_DW));
    let gcmd = Gcmd.QIE;
    u.write32(VtdReg.GCMD, gcmd >>> 0);
    if ((u.read32(VtdReg.GSTS) & Gsts.QIES) === 0) fail("EIO", "queued invalidation did not come up");
    this.onTrace?.(`IQA = 0x${u.read64(VtdReg.IQA).toString(16)} (queue at GPA 0x${(this.iqGpfn * PAGE_SIZE).toString(16)}, 256-bit descriptors, ${IQ_ENTRIES} entries); GCMD.QIE`);
    // iommu_set_root_entry: RTADDR with TTM = scalable, SRTP, then the global flushes
    u.write64(VtdReg.RTADDR, BigInt(this.rootGpfn * PAGE_SIZE) | (BigInt(Ttm.SCALABLE) << 10n));
    u.write32(VtdReg.GCMD, (gcmd | Gcmd.SRTP) >>> 0);
    if ((u.read32(VtdReg.GSTS) & Gsts.RTPS) === 0) fail("EIO", "root table pointer not latched");
    this.onTrace?.(`RTADDR = 0x${u.read64(VtdReg.RTADDR).toString(16)} (root table at GPA 0x${(this.rootGpfn * PAGE_SIZE).toString(16)}, TTM = scalable); GCMD.SRTP`);
    this.submit(
      { kind: "contextCache", g: CcGran.GLOBAL },
      { kind: "pasidCache", g: PcGran.GLOBAL },
      { kind: "iotlb", g: IotlbGran.GLOBAL, dw: this.cap.dwd, dr: this.cap.drd },
    );
    // intel_iommu_enable_prq
    if (this.ecap.prs === 1) {
      this.prqGpfn = ram.allocTable(PRQ_BYTES / PAGE_SIZE);
      this.prqFrame = ram.frameU32(this.prqGpfn);
      u.write64(VtdReg.PQH, 0n);
      u.write64(VtdReg.PQT, 0n);
      u.write64(VtdReg.PQA, BigInt(this.prqGpfn * PAGE_SIZE) | 0n);
      u.onPageRequestEvent = () => this.handlePageRequests();
      u.write32(VtdReg.PECTL, 0);
      this.onTrace?.(`PQA = 0x${u.read64(VtdReg.PQA).toString(16)} (page request queue at GPA 0x${(this.prqGpfn * PAGE_SIZE).toString(16)}, ${PRQ_BYTES / 32} entries); PECTL unmasked`);
    }
    u.write32(VtdReg.FECTL, 0);
    gcmd |= Gcmd.TE;
    u.write32(VtdReg.GCMD, gcmd >>> 0);
    if ((u.read32(VtdReg.GSTS) & Gsts.TES) === 0) fail("EIO", "translation did not come on");
    this.onTrace?.(`GCMD.TE: DMA remapping on (GSTS = 0x${u.read32(VtdReg.GSTS).toString(16)})`);
    this.booted = true;
  }

  get rootTableGpa(): number {
    return this.rootGpfn * PAGE_SIZE;
  }

  get iqGpa(): number {
    return this.iqGpfn * PAGE_SIZE;
  }

  get prqGpa(): number {
    return this.prqGpfn * PAGE_SIZE;
  }

  // ==== invalidation queue =========================================================================

  /**
   * qi_submit_sync: the descriptors and a wait descriptor with a status write go into the queue,
   * IQT moves, and the status must come back. A queue error is EIO (the descriptor stays at IQH).
   */
  submit(...descs: QiDescriptorInput[]): void {
    const u = this.iommu;
    const status = this.statusGpfn * PAGE_SIZE;
    const seq = (this.statusSeq = (this.statusSeq + 1) >>> 0 || 1);
    const all = [...descs, { kind: "wait", sw: 1, fn: 1, statusData: seq, statusAddr: BigInt(status) } as QiDescriptorInput];
    if (all.length >= IQ_ENTRIES) fail("EINVAL", "too many descriptors for the queue");
    const iq = this.iqFrame;
    for (const d of all) {
      putQi(iq, this.iqTail * 8, d);
      this.iqTail = (this.iqTail + 1) % IQ_ENTRIES;
    }
    u.write32(VtdReg.IQT, this.iqTail << 5);
    if ((u.read32(VtdReg.FSTS) & Fsts.IQE) !== 0) fail("EIO", `invalidation queue error (IQEI ${u.read32(VtdReg.IQERCD) & 0xf})`);
    if (this.statusFrame[0] !== seq) fail("EIO", "the wait descriptor's status was not written");
  }

  // ==== devices ======================================================================================

  /** probe + attach of a device at source-id sid: context entry, PASID directory, RID_PASID pass-through, PRE. */
  addDevice(sid: number, o: GuestDeviceOptions = {}): void {
    this.live();
    if (this.devs.has(sid)) fail("EEXIST", `device ${fmtSid(sid)} is already set up`);
    const pasidBits = o.pasidBits ?? 20;
    const pasidOn = pasidBits > 0 && this.ecap.pasid === 1;
    const maxPasid = pasidOn ? 2 ** Math.min(pasidBits, this.ecap.pss + 1) : 1;
    // intel_pasid_alloc_table: at least one page; PDTS from max_pasid >> 6
    let pdts = 0;
    while (2 ** (pdts + 7) < maxPasid / 64 && pdts < 7) pdts++;
    const dirFrames = Math.max(1, (2 ** (pdts + 7) * 8) / PAGE_SIZE);
    const ram = this.vm.ram;
    const dirGpfn = ram.allocTable(dirFrames);
    const d: GDev = { sid, pasidBits, ats: (o.ats ?? true) && this.ecap.dt === 1, pri: (o.pri ?? true) && this.ecap.prs === 1, pdts, dirGpfn, tables: new Map() };
    // context entry (context_entry_set_pasid_table)
    const c = this.contextSlot(sid);
    SmContextEntry.encodeInto(ram.frameU32(c.gpfn), c.word, {
      p: 1,
      dte: d.ats ? 1 : 0,
      paside: pasidOn ? 1 : 0,
      pdts,
      pasiddirptr: dirGpfn * PAGE_SIZE,
      ridPasid: 0,
    });
    this.devs.set(sid, d);
    this.onTrace?.(`context entry of ${fmtSid(sid)} at GPA 0x${c.gpa.toString(16)}: ${hexWords(ram.frameU32(c.gpfn), c.word, 8)}`);
    // caching mode: the non-present → present change is flushed (device-selective, then DSI of DID 0)
    if (this.cap.cm === 1) this.submit({ kind: "contextCache", g: CcGran.DEVICE, sid }, { kind: "iotlb", g: IotlbGran.DOMAIN, did: 0, dw: this.cap.dwd, dr: this.cap.drd });
    // RID_PASID: pass-through (intel_pasid_setup_pass_through)
    this.writePasidEntry(d, 0, { p: 1, pgtt: Pgtt.PASS_THROUGH, did: FLPT_DEFAULT_DID, aw: this.agaw, pwsnp: this.ecap.smpwcs });
    this.flushNewEntry(0, FLPT_DEFAULT_DID);
    // intel_iommu_enable_iopf → context_flip_pri: PRE, device-selective context flush, device TLB
    if (d.pri) {
      SmContextEntry.acc.pre.set(ram.frameU32(c.gpfn), c.word, 1);
      const descs: QiDescriptorInput[] = [{ kind: "contextCache", g: CcGran.DEVICE, sid }];
      if (d.ats) descs.push({ kind: "deviceTlb", sid, pfsid: sid, s: 1, addr: DEVTLB_ALL });
      this.submit(...descs);
      this.onTrace?.(`I/O page faults on for ${fmtSid(sid)}: context PRE = 1`);
    }
  }

  private contextSlot(sid: number): { gpfn: number; word: number; gpa: number } {
    const ram = this.vm.ram;
    const bus = sid >>> 8;
    const df = sid & 0xff;
    const upper = df >= 128;
    const key = bus * 2 + (upper ? 1 : 0);
    let ct = this.ctxTables.get(key);
    if (ct === undefined) {
      ct = ram.allocTable(1);
      this.ctxTables.set(key, ct);
      const root = ram.frameU32(this.rootGpfn);
      if (upper) {
        SmRootEntry.acc.uctp.set(root, bus * 4, ct * PAGE_SIZE);
        SmRootEntry.acc.up.set(root, bus * 4, 1);
      } else {
        SmRootEntry.acc.lctp.set(root, bus * 4, ct * PAGE_SIZE);
        SmRootEntry.acc.lp.set(root, bus * 4, 1);
      }
      this.onTrace?.(`root entry ${bus} (${upper ? "upper" : "lower"} half) → context table at GPA 0x${(ct * PAGE_SIZE).toString(16)}`);
    }
    const word = (df & 0x7f) * 8;
    return { gpfn: ct, word, gpa: ct * PAGE_SIZE + word * 4 };
  }

  /** Guest-physical address of sid's context entry (-1: none). */
  contextEntryGpa(sid: number): number {
    if (!this.devs.has(sid)) return -1;
    return this.contextSlot(sid).gpa;
  }

  /** Guest-physical address of (sid, pasid)'s PASID entry (-1: no table for it yet). */
  pasidEntryGpa(sid: number, pasid: number): number {
    const d = this.devs.get(sid);
    if (d === undefined) return -1;
    const t = d.tables.get(pasid >>> 6);
    return t === undefined ? -1 : t * PAGE_SIZE + (pasid & 63) * 64;
  }

  /** intel_pasid_get_entry: the PASID table page for pasid (allocated, directory entry made present). */
  private pasidSlot(d: GDev, pasid: number): { gpfn: number; word: number } {
    if (pasid >>> 6 >= 2 ** (d.pdts + 7)) fail("EINVAL", `PASID ${pasid} is beyond ${fmtSid(d.sid)}'s PASID directory`);
    const ram = this.vm.ram;
    let t = d.tables.get(pasid >>> 6);
    if (t === undefined) {
      t = ram.allocTable(1);
      d.tables.set(pasid >>> 6, t);
      const dirWord = (pasid >>> 6) * 2;
      const dir = ram.frameU32(d.dirGpfn + Math.floor(dirWord / 1024));
      PasidDirEntry.encodeInto(dir, dirWord % 1024, { p: 1, ptp: t * PAGE_SIZE });
    }
    return { gpfn: t, word: (pasid & 63) * 16 };
  }

  private writePasidEntry(d: GDev, pasid: number, v: Partial<PasidEntry>): void {
    const s = this.pasidSlot(d, pasid);
    const f = this.vm.ram.frameU32(s.gpfn);
    PasidEntry.encodeInto(f, s.word, v);
    this.onTrace?.(`PASID entry ${fmtSid(d.sid)} PASID ${pasid} at GPA 0x${(s.gpfn * PAGE_SIZE + s.word * 4).toString(16)}: ${PasidEntry.describe(v)}`);
  }

  /** pasid_flush_caches: with caching mode, PASID-cache (PASID-selective) and P_IOTLB of the PASID. */
  private flushNewEntry(pasid: number, did: number): void {
    if (this.cap.cm !== 1) return;
    this.submit({ kind: "pasidCache", g: PcGran.PASID, did, pasid }, { kind: "pasidIotlb", g: PiotlbGran.PASID, did, pasid });
  }

  // ==== PASIDs for processes ==========================================================================

  /** The process's PASID (mm->pasid): from the VMM (VCMD ALLOC) or the guest's own allocator. */
  private allocPasid(): number {
    const u = this.iommu;
    if (this.ecap.vcs === 1 && (u.read64(VcmdReg.VCCAP) & BigInt(VCCAP_PAS)) !== 0n) {
      u.write64(VcmdReg.VCMD, BigInt(Vcmd.ALLOC));
      const r = u.read64(VcmdReg.VCRSP);
      if ((r & BigInt(VCRSP_IP)) !== 0n) fail("EIO", "virtual command still in progress");
      const sc = Number((r & 0xffn) >> BigInt(VCRSP_SC_SHIFT));
      if (sc === VcmdStatus.NO_PASID_AVAIL) fail("ENOSPC", "the VMM has no PASID for us");
      if (sc !== VcmdStatus.SUCCESS) fail("ENODEV", `virtual command status ${sc}`);
      const pasid = Number((r >> BigInt(VCRSP_RESULT_SHIFT)) & 0xfffffn);
      this.onTrace?.(`VCMD ALLOC → VCRSP 0x${r.toString(16)}: PASID ${pasid} from the VMM`);
      return pasid;
    }
    const max = 2 ** (this.ecap.pss + 1);
    for (let p = 1; p < max; p++) {
      if (!this.ownPasids.has(p)) {
        this.ownPasids.add(p);
        return p;
      }
    }
    fail("ENOSPC", "no PASID is free");
  }

  private freePasid(pasid: number): void {
    const u = this.iommu;
    if (this.ecap.vcs === 1 && (u.read64(VcmdReg.VCCAP) & BigInt(VCCAP_PAS)) !== 0n) {
      u.write64(VcmdReg.VCMD, (BigInt(pasid) << BigInt(VCMD_OPERAND_SHIFT)) | BigInt(Vcmd.FREE));
      const r = u.read64(VcmdReg.VCRSP);
      const sc = Number((r & 0xffn) >> BigInt(VCRSP_SC_SHIFT));
      this.onTrace?.(`VCMD FREE PASID ${pasid} → VCRSP 0x${r.toString(16)}${sc === VcmdStatus.SUCCESS ? "" : " (refused)"}`);
      return;
    }
    this.ownPasids.delete(pasid);
  }

  /** The PASID of a bound process (-1: none). */
  pasidOf(proc: GuestProcess): number {
    return this.svas.get(proc)?.pasid ?? -1;
  }

  // ==== SVA ==========================================================================================

  /**
   * iommu_sva_bind_device(dev, mm): the process's page table at its PASID on the device (a second
   * bind of the same pair only counts). Returns the PASID the device is to use.
   */
  svaBind(proc: GuestProcess, sid: number): number {
    this.live();
    const d = this.devs.get(sid);
    if (d === undefined) fail("ENODEV", `no device ${fmtSid(sid)}`);
    if (d.pasidBits === 0 || this.ecap.pasid === 0) fail("EOPNOTSUPP", `${fmtSid(sid)} has no PASID support`);
    if (this.ecap.fsts === 0) fail("EINVAL", "No first level translation support");
    const five = proc.paging === "x86-5level";
    if (proc.paging === "arm64") fail("EINVAL", "not an x86 page table");
    if (five && this.cap.fs5lp === 0) fail("EINVAL", "No 5-level paging support for first-level");
    let sva = this.svas.get(proc);
    const fresh = sva === undefined;
    if (sva === undefined) {
      const pasid = this.allocPasid();
      sva = { proc, pasid, devs: new Map() };
    }
    const pasid = sva.pasid;
    if (pasid >= 2 ** Math.min(d.pasidBits, this.ecap.pss + 1)) {
      if (fresh) this.freePasid(pasid);
      fail("ENOSPC", `PASID ${pasid} is beyond ${fmtSid(sid)}'s PASID width`);
    }
    const n = sva.devs.get(sid) ?? 0;
    if (n > 0) {
      sva.devs.set(sid, n + 1);
      return pasid;
    }
    const s = this.pasidSlot(d, pasid);
    if (PasidEntry.acc.p.get(this.vm.ram.frameU32(s.gpfn), s.word) === 1) {
      if (fresh) this.freePasid(pasid);
      fail("EBUSY", `PASID ${pasid} of ${fmtSid(sid)} is in use`);
    }
    if (fresh) {
      this.svas.set(proc, sva);
      this.byPasid.set(pasid, sva);
    }
    // intel_pasid_setup_first_level
    this.writePasidEntry(d, pasid, {
      p: 1,
      pgtt: Pgtt.FIRST_STAGE,
      fsptptr: proc.rootGpa,
      fspm: five ? Fspm.LEVEL5 : Fspm.LEVEL4,
      did: FLPT_DEFAULT_DID,
      aw: this.agaw,
      pwsnp: this.ecap.smpwcs,
    });
    sva.devs.set(sid, 1);
    this.flushNewEntry(pasid, FLPT_DEFAULT_DID);
    return pasid;
  }

  /** iommu_sva_unbind_device: the last handle tears the PASID entry down (the PASID stays the process's). */
  svaUnbind(proc: GuestProcess, sid: number): void {
    this.live();
    const sva = this.svas.get(proc);
    const n = sva?.devs.get(sid) ?? 0;
    if (sva === undefined || n === 0) fail("EINVAL", `process ${proc.pid} is not bound to ${fmtSid(sid)}`);
    if (n > 1) {
      sva.devs.set(sid, n - 1);
      return;
    }
    sva.devs.delete(sid);
    this.tearDownEntry(this.devs.get(sid) as GDev, sva.pasid);
  }

  /** intel_pasid_tear_down_entry(dev, pasid, fault_ignore = false). */
  private tearDownEntry(d: GDev, pasid: number): void {
    const s = this.pasidSlot(d, pasid);
    const f = this.vm.ram.frameU32(s.gpfn);
    const a = PasidEntry.acc;
    if (a.p.get(f, s.word) === 0) return;
    const did = a.did.get(f, s.word);
    const pgtt = a.pgtt.get(f, s.word);
    a.p.set(f, s.word, 0);
    this.onTrace?.(`PASID entry ${fmtSid(d.sid)} PASID ${pasid}: P cleared`);
    const descs: QiDescriptorInput[] = [{ kind: "pasidCache", g: PcGran.PASID, did, pasid }];
    if (pgtt === Pgtt.PASS_THROUGH || pgtt === Pgtt.FIRST_STAGE) descs.push({ kind: "pasidIotlb", g: PiotlbGran.PASID, did, pasid });
    else descs.push({ kind: "iotlb", g: IotlbGran.DOMAIN, did, dw: this.cap.dwd, dr: this.cap.drd });
    if (d.ats) descs.push({ kind: "pasidDeviceTlb", sid: d.sid, pfsid: d.sid, pasid, s: 1, addr: DEVTLB_ALL });
    this.submit(...descs);
    f.fill(0, s.word, s.word + 16);
    // intel_iommu_drain_pasid_prq: page requests of the PASID are drained (page-request drain wait)
    if (d.pri) this.submit({ kind: "wait", fn: 1, pd: 1 });
  }

  /**
   * The process's mm goes away (or it gives its PASID back): every device bind is torn down and
   * the PASID is freed (VCMD FREE).
   */
  releaseProcess(proc: GuestProcess): void {
    const sva = this.svas.get(proc);
    if (sva === undefined) return;
    for (const sid of [...sva.devs.keys()]) {
      sva.devs.delete(sid);
      this.tearDownEntry(this.devs.get(sid) as GDev, sva.pasid);
    }
    this.svas.delete(proc);
    this.byPasid.delete(sva.pasid);
    this.lazy.delete(proc);
    this.freePasid(sva.pasid);
  }

  /**
   * The mm notifier after the process's pages [vpn, vpn + n) changed (intel_arch_invalidate_
   * secondary_tlbs → cache_tag_flush_range): a PASID-based IOTLB invalidation covering the range
   * (page-selective, or the whole PASID when the mask would exceed MAMV) and each device's TLB.
   */
  flushRange(proc: GuestProcess, vpn: number, n: number): void {
    const sva = this.svas.get(proc);
    if (sva === undefined || sva.devs.size === 0 || n <= 0) return;
    const { addr, am } = psiAligned(vpn, n);
    const pasid = sva.pasid;
    const descs: QiDescriptorInput[] =
      am > this.cap.mamv
        ? [{ kind: "pasidIotlb", g: PiotlbGran.PASID, did: FLPT_DEFAULT_DID, pasid }]
        : [{ kind: "pasidIotlb", g: PiotlbGran.PAGE, did: FLPT_DEFAULT_DID, pasid, addr, am, ih: 0 }];
    for (const sid of sva.devs.keys()) {
      const d = this.devs.get(sid) as GDev;
      if (d.ats) descs.push({ kind: "pasidDeviceTlb", sid, pfsid: sid, pasid, s: am > 0 ? 1 : 0, addr: devTlbAddr(addr, am) });
    }
    this.submit(...descs);
  }

  /** munmap as the guest kernel does it: unmap, then the mm notifier's flush. */
  unmapAndFlush(proc: GuestProcess, vpn: number, n: number): void {
    proc.unmap(vpn, n);
    this.flushRange(proc, vpn, n);
  }

  /** mmap without populate: pages of [vpn, vpn + n) are faulted in on first touch (also by the device). */
  addLazyRegion(proc: GuestProcess, vpn: number, n: number, writable = true): void {
    let l = this.lazy.get(proc);
    if (l === undefined) this.lazy.set(proc, (l = []));
    l.push({ vpn, n, writable });
  }

  // ==== page requests ==================================================================================

  /** prq_event_thread: handle every queued page request and answer the groups. Returns how many. */
  handlePageRequests(): number {
    if (this.inPrq) return 0;
    this.inPrq = true;
    try {
      const u = this.iommu;
      u.write32(VtdReg.PRS, Prs.PPR);
      const mask = PRQ_BYTES - 32;
      const tail = Number(u.read64(VtdReg.PQT)) & mask;
      let head = Number(u.read64(VtdReg.PQH)) & mask;
      const prq = this.prqFrame;
      const responses: QiDescriptorInput[] = [];
      let n = 0;
      const a = PageRequestDesc.acc;
      while (head !== tail) {
        const w = head >>> 2;
        const r: PageRequest = {
          pp: a.pp.get(prq, w),
          rid: a.rid.get(prq, w),
          pasid: a.pasid.get(prq, w),
          er: a.er.get(prq, w),
          pmr: a.pmr.get(prq, w),
          rdr: a.rdr.get(prq, w),
          wrr: a.wrr.get(prq, w),
          lpig: a.lpig.get(prq, w),
          prgi: a.prgi.get(prq, w),
          addr: a.addr.get(prq, w),
        };
        head = (head + 32) & mask;
        n++;
        const resp = this.pageRequest(r);
        if (resp !== null) responses.push(resp);
      }
      u.write64(VtdReg.PQH, BigInt(tail));
      if ((u.read32(VtdReg.PRS) & Prs.PRO) !== 0 && (Number(u.read64(VtdReg.PQH)) & mask) === (Number(u.read64(VtdReg.PQT)) & mask)) u.write32(VtdReg.PRS, Prs.PRO);
      for (let i = 0; i < responses.length; i += RESPONSE_BATCH) this.submit(...responses.slice(i, i + RESPONSE_BATCH));
      return n;
    } finally {
      this.inPrq = false;
    }
  }

  private pageRequest(r: PageRequest): QiDescriptorInput | null {
    const log: GuestPageRequest = {
      rid: r.rid,
      pasid: r.pasid,
      pasidPresent: r.pp === 1,
      addr: r.addr,
      read: r.rdr === 1,
      write: r.wrr === 1,
      prgi: r.prgi,
      lastPage: r.lpig === 1,
      response: -1,
      outcome: "invalid",
    };
    this.prqLog.push(log);
    const answer = (rc: number): QiDescriptorInput | null => {
      if (!log.lastPage) return null;
      log.response = rc;
      return { kind: "pageGroupResponse", rid: r.rid, pasid: r.pasid, pp: r.pp, rc, lpig: 1, prgi: r.prgi };
    };
    if (!log.read && !log.write && log.lastPage) {
      log.outcome = "stop-marker";
      return null;
    }
    // handle_bad_prq_event: no PASID, a privileged or execute request with reads, an unknown device
    if (r.pp === 0 || (r.pmr === 1 && (log.read || log.write)) || (r.er === 1 && log.read) || !this.devs.has(r.rid)) return answer(PrgResponse.INVALID);
    const sva = this.byPasid.get(r.pasid);
    if (sva === undefined || !sva.devs.has(r.rid)) return answer(PrgResponse.INVALID);
    const proc = sva.proc;
    const vpn = Math.floor(r.addr / PAGE_SIZE);
    if (proc.guestPage(vpn) >= 0) {
      // mapped since the request was made (or a permission the process's table denies: invalid)
      const region = this.regionOf(proc, vpn);
      if (log.write && region !== null && !region.writable) return answer(PrgResponse.INVALID);
      log.outcome = "already-mapped";
      return answer(PrgResponse.SUCCESS);
    }
    const region = this.regionOf(proc, vpn);
    if (region === null || (log.write && !region.writable)) return answer(PrgResponse.INVALID);
    // handle_mm_fault: a fresh page of the process (out of memory: the request fails)
    try {
      proc.map(vpn, 1, region.writable);
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      return answer(PrgResponse.INVALID);
    }
    log.outcome = "mapped";
    return answer(PrgResponse.SUCCESS);
  }

  private regionOf(proc: GuestProcess, vpn: number): LazyRegion | null {
    for (const l of this.lazy.get(proc) ?? []) if (vpn >= l.vpn && vpn < l.vpn + l.n) return l;
    return null;
  }

  /** Read and clear the fault recording registers the vIOMMU filled (dmar_fault). */
  readFaults(): { sid: number; pasid: number; reason: number; addr: number; write: boolean }[] {
    const u = this.iommu;
    const out: { sid: number; pasid: number; reason: number; addr: number; write: boolean }[] = [];
    const fsts = u.read32(VtdReg.FSTS);
    if ((fsts & Fsts.PPF) !== 0) {
      const base = this.cap.fro * 16;
      const nfr = this.cap.nfr + 1;
      let idx = (fsts >>> 8) & 0xff;
      for (let i = 0; i < nfr; i++) {
        const off = base + idx * 16;
        const w3 = u.read32(off + 12);
        if ((w3 & 0x80000000) === 0) break;
        const w2 = u.read32(off + 8);
        out.push({
          sid: w2 & 0xffff,
          pasid: (w2 >>> 31) & 1 ? (w3 >>> 8) & 0xfffff : -1,
          reason: w3 & 0xff,
          addr: Number(u.read64(off) & ~0xfffn),
          write: ((w3 >>> 30) & 1) === 0,
        });
        u.write32(off + 12, 0x80000000);
        idx = (idx + 1) % nfr;
      }
    }
    u.write32(VtdReg.FSTS, Fsts.PFO | Fsts.PPF);
    return out;
  }

  /** Mask or unmask the page request event (a guest that is busy, or tests of a masked event). */
  maskPageRequests(masked: boolean): void {
    this.iommu.write32(VtdReg.PECTL, masked ? EventCtl.IM : 0);
  }

  private live(): void {
    if (!this.booted) fail("ENODEV", "the guest IOMMU driver has not booted");
  }
}

const QI_TYPE_OF: Record<QiKind, number> = {
  contextCache: QiType.CONTEXT_CACHE,
  iotlb: QiType.IOTLB,
  deviceTlb: QiType.DEVICE_TLB,
  iec: QiType.IEC,
  wait: QiType.WAIT,
  pasidIotlb: QiType.PASID_IOTLB,
  pasidCache: QiType.PASID_CACHE,
  pasidDeviceTlb: QiType.PASID_DEVICE_TLB,
  pageGroupResponse: QiType.PAGE_GROUP_RESPONSE,
};

/**
 * Write a 256-bit descriptor at word `base` of the queue page: what encodeQi produces, written in
 * place through the layout's accessors (no intermediate bytes, no per-field range check: the
 * driver builds its descriptors from values it holds).
 */
export function putQi(u32: Uint32Array, base: number, d: QiDescriptorInput): void {
  const acc = QI_LAYOUTS[d.kind].acc as unknown as Record<string, { set(u: Uint32Array, b: number, v: number | bigint): void }>;
  const type = QI_TYPE_OF[d.kind];
  u32.fill(0, base, base + 8);
  u32[base] = (type & 0xf) | ((type >>> 4) << 9);
  const f = d as unknown as Record<string, number | bigint | string | undefined>;
  for (const k in f) {
    const v = f[k];
    if (k === "kind" || v === undefined || v === 0 || v === 0n) continue;
    acc[k].set(u32, base, v as number | bigint);
  }
}

/** A device-TLB invalidation of everything: S = 1 and bit 63 the lowest clear address bit. */
const DEVTLB_ALL = 2 ** 63 - PAGE_SIZE;

/**
 * calculate_psi_aligned_address: the smallest naturally aligned power-of-two range of pages
 * covering [vpn, vpn + n): its byte address and AM (log2 of its pages).
 */
export function psiAligned(vpn: number, n: number): { addr: number; am: number } {
  let am = 0;
  while (2 ** am < n) am++;
  if (vpn % 2 ** am !== 0) {
    const last = vpn + n - 1;
    am = 0;
    while (Math.floor(vpn / 2 ** am) !== Math.floor(last / 2 ** am)) am++;
  }
  return { addr: Math.floor(vpn / 2 ** am) * 2 ** am * PAGE_SIZE, am };
}

/** The ATS invalidation address for 2^am pages at addr: with S set, the low address bits encode the size. */
function devTlbAddr(addr: number, am: number): number {
  if (am === 0) return addr;
  return addr + (2 ** (am - 1) - 1) * PAGE_SIZE;
}

export function fmtSid(sid: number): string {
  return `${(sid >>> 8).toString(16).padStart(2, "0")}:${((sid >>> 3) & 0x1f).toString(16).padStart(2, "0")}.${sid & 7}`;
}

/** Words of a structure as 64-bit hex, low qword first. */
export function hexWords(u32: Uint32Array, base: number, words: number): string {
  const q: string[] = [];
  for (let i = 0; i < words; i += 2) q.push(`0x${(u32[base + i + 1] >>> 0).toString(16).padStart(8, "0")}${(u32[base + i] >>> 0).toString(16).padStart(8, "0")}`);
  return q.join(" ");
}
