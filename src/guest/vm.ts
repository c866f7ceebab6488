/**
 * A VM as a VMM builds it on iommufd: the VMM process's memory is guest RAM; it opens /dev/iommu,
 * maps guest RAM into an IOAS at IOVA = GPA, allocates a NEST_PARENT HWPT on it (stage 2: GPA →
 * host page), and assigns devices (bound to the context, their RID attached to the parent). The
 * guest side (guest processes, the guest's IOMMU driver) lives in guest RAM; the VMM glue turns
 * what the guest programs into nested HWPTs.
 */
import { fail } from "../errno.js";
import { openIommufd, type IommufdCtx, type KernelProfile } from "../iommufd/context.js";
import type { IommufdDevice } from "../iommufd/device.js";
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT,
  IOMMU_HWPT_ALLOC_PASID,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
} from "../iommufd/types.js";
import type { Device } from "../iommu/device.js";
import type { Process } from "../mm/process.js";
import { PAGE_SIZE } from "../mm/phys.js";
import { GuestRam } from "./ram.js";
import type { HostMachine } from "./machine.js";
import type { PasidSet } from "./pasid-set.js";
import { PasidSets } from "./pasid-set.js";

export interface VmOptions {
  /** Guest RAM in bytes (default 64 MiB). */
  ramBytes?: number;
  /** Guest pages kept for page tables and IOMMU structures (default 1/8 of RAM, at the top). */
  tablePages?: number;
  /** The kernel the VMM talks to (default newest: PASID attach needs it). */
  profile?: KernelProfile;
  /** Allocate the stage-2 parent with IOMMU_HWPT_ALLOC_DIRTY_TRACKING (live migration). */
  dirtyTracking?: boolean;
  /** This VM's PASID quota in its PASID set (default 1024). */
  pasidQuota?: number;
  /** Registry of PASID sets shared by every VM on the machine (default: one per machine). */
  pasidSets?: PasidSets;
  name?: string;
}

const machineSets = new WeakMap<HostMachine, PasidSets>();

/** The PASID sets of a machine: one registry over its global PASID space. */
export function pasidSetsOf(m: HostMachine): PasidSets {
  let s = machineSets.get(m);
  if (!s) {
    s = new PasidSets(m.pasids);
    machineSets.set(m, s);
  }
  return s;
}

export interface AssignedDevice {
  dev: Device;
  idev: IommufdDevice;
}

export class Vm {
  readonly name: string;
  readonly vmm: Process;
  readonly ctx: IommufdCtx;
  readonly ioas: number;
  readonly ram: GuestRam;
  /** The stage-2 HWPT (NEST_PARENT, PASID-compatible on VT-d) every nested HWPT of this VM sits on. */
  readonly parent: number;
  readonly pasids: PasidSet;
  readonly assigned: AssignedDevice[] = [];
  /** Guest page allocator for data pages (below the table area): bump, then a free list. */
  private nextData: number;
  private readonly dataEnd: number;
  private readonly freeData: number[] = [];
  private dead = false;
  private readonly dirtyTracking: boolean;

  constructor(
    readonly machine: HostMachine,
    opts: VmOptions = {},
  ) {
    this.name = opts.name ?? "vm";
    this.dirtyTracking = opts.dirtyTracking ?? false;
    const bytes = opts.ramBytes ?? 64 << 20;
    const pages = bytes / PAGE_SIZE;
    const tablePages = opts.tablePages ?? Math.max(64, Math.floor(pages / 8));
    this.vmm = machine.host.spawn({ uid: 1000, capIpcLock: true });
    const va = this.vmm.mmap(bytes, { shared: true });
    this.ram = new GuestRam(this.vmm, va, bytes, { tableArea: { first: pages - tablePages, count: tablePages } });
    this.nextData = 16; // the first 64 KiB stay free (real mode and BIOS, as on a PC)
    this.dataEnd = pages - tablePages;
    this.ctx = openIommufd(machine.host, this.vmm, { profile: opts.profile ?? "newest" });
    this.ioas = this.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
    this.pasids = (opts.pasidSets ?? pasidSetsOf(machine)).create(this, opts.pasidQuota ?? 1024);
    this.parent = 0;
    this.ctx.ioasMap({
      flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
      ioas_id: this.ioas,
      user_va: BigInt(va),
      length: BigInt(bytes),
      iova: 0n,
    });
  }

  /**
   * Assign a host device: bind it to the VM's context and attach its RID to the stage-2 parent
   * (allocated with the first device, which the HWPT_ALLOC needs).
   */
  assign(dev: Device): AssignedDevice {
    this.live();
    const idev = this.ctx.bindDevice(dev);
    if (this.parent === 0) {
      // VT-d: guest PASIDs are attached on the host, so the RID's HWPT must be PASID-compatible;
      // SMMUv3 keeps a guest's PASIDs (SubstreamIDs) in the guest's own CD table
      const pasidCompat = this.machine.kind === "vtd" ? IOMMU_HWPT_ALLOC_PASID : 0;
      const id = this.ctx.hwptAlloc({
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT | pasidCompat | (this.dirtyTracking ? IOMMU_HWPT_ALLOC_DIRTY_TRACKING : 0),
        dev_id: idev.id,
        pt_id: this.ioas,
        data_type: 0,
        data_len: 0,
        data_uptr: 0n,
      }).out_hwpt_id as number;
      (this as { parent: number }).parent = id;
    }
    idev.attach(this.parent);
    const a = { dev, idev };
    this.assigned.push(a);
    return a;
  }

  /** n contiguous guest data pages (zeroed); returns the first guest page number. */
  allocPages(n = 1): number {
    this.live();
    if (n === 1 && this.freeData.length) {
      const g = this.freeData.pop() as number;
      this.ram.write(g * PAGE_SIZE, new Uint8Array(PAGE_SIZE));
      return g;
    }
    if (this.nextData + n > this.dataEnd) fail("ENOMEM", "guest RAM is full");
    const g = this.ram.firstGpfn + this.nextData;
    this.nextData += n;
    return g;
  }

  freePage(gpfn: number): void {
    this.freeData.push(gpfn);
  }

  /**
   * VM teardown as a VMM does it: each device fd closes (VFIO detaches its PASIDs and RID and
   * unbinds it), then /dev/iommu (every object and pin goes); the PASID set is freed, the VMM exits.
   */
  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    for (const { idev } of this.assigned.splice(0)) {
      for (const p of idev.attachedPasids()) idev.pasidDetach(p);
      if (idev.attached) idev.detach();
      this.ctx.unbindDevice(idev);
    }
    this.ctx.close();
    this.pasids.destroy();
    this.vmm.exit();
  }

  private live(): void {
    if (this.dead) fail("EINVAL", `${this.name} was torn down`);
  }
}
