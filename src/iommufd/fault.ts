/** Fault queue objects and their fds (fault.c): I/O page faults read as records, answered by cookie. */
import { fail } from "../errno.js";
import { shouldFail } from "../fail-nth.js";
import { Device } from "../iommu/device.js";
import type { IopfFault } from "../iommu/domain.js";
import type { IommufdCtx } from "./context.js";
import type { AttachHandle, IommufdDevice } from "./device.js";
import type { IommufdFile } from "./files.js";
import type { Hwpt } from "./hwpt.js";
import { IommufdObject } from "./object.js";
import { ObjType } from "./types.js";

export const IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0;
export const IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1;
export const IOMMUFD_PAGE_RESP_SUCCESS = 0;
export const IOMMUFD_PAGE_RESP_INVALID = 1;
/** enum iommu_page_response_code's IOMMU_PAGE_RESP_FAILURE (the kernel's abort path, not a uAPI code). */
export const IOMMU_PAGE_RESP_FAILURE = 2;
export const PGFAULT_SIZE = 40;
export const PAGE_RESPONSE_SIZE = 8;

export interface FaultGroup {
  hwpt: Hwpt;
  /** The group attachment the fault came through; its device is the dev_id user space reads. */
  handle: AttachHandle;
  faults: IopfFault[];
  cookie: number;
  /** How the group was completed (for observers and tests). */
  response: number | null;
}

export class Fault extends IommufdObject {
  readonly type = ObjType.FAULT;
  readonly deliver: FaultGroup[] = [];
  readonly response = new Map<number, FaultGroup>();
  /** Groups completed towards the "hardware", in order (response code per group). */
  readonly completed: FaultGroup[] = [];
  private partial: IopfFault[] = [];
  constructor(readonly ctx: IommufdCtx) {
    super();
  }

  destroy(): void {
    const all = [...this.deliver, ...this.response.values()];
    this.deliver.length = 0;
    this.response.clear();
    for (const g of all) this.complete(g, IOMMUFD_PAGE_RESP_INVALID);
  }

  /**
   * iopf_group_response: the group is answered; the device that raised it hears the code through
   * its driver (page_response), which tells the hardware to retry (success) or give up the DMA.
   */
  private complete(g: FaultGroup, code: number): void {
    g.response = code;
    this.completed.push(g);
    const last = g.faults[g.faults.length - 1];
    const dev = last.deviceKey;
    if (dev instanceof Device) dev.driver.pageResponse?.(dev, last, code);
  }

  /** iommufd_fault_iopf_handler: queue a page request (groups close on LAST_PAGE). */
  deliverFault(hwpt: Hwpt, handle: AttachHandle, f: IopfFault): void {
    if (!f.lastPage) {
      // report_partial_fault's kzalloc (a fault-injection point): the partial fault is dropped
      if (shouldFail()) return;
      this.partial.push(f);
      return;
    }
    const faults = [...this.partial.filter((p) => p.grpid === f.grpid), f];
    this.partial = this.partial.filter((p) => p.grpid !== f.grpid);
    const g: FaultGroup = { hwpt, handle, faults, cookie: 0, response: null };
    // iopf_group_alloc's kzalloc (a fault-injection point): the group is answered
    // IOMMU_PAGE_RESP_FAILURE at once (iommu_report_device_fault's abort_group) and never queued
    if (shouldFail()) return this.complete(g, IOMMU_PAGE_RESP_FAILURE);
    this.deliver.push(g);
  }

  /** iommufd_auto_response_faults: answer INVALID to everything of this attach handle. */
  autoRespond(hwpt: Hwpt, handle: AttachHandle): void {
    for (let i = this.deliver.length - 1; i >= 0; i--) {
      const g = this.deliver[i];
      if (g.hwpt === hwpt && g.handle === handle) {
        this.deliver.splice(i, 1);
        this.complete(g, IOMMUFD_PAGE_RESP_INVALID);
      }
    }
    for (const [c, g] of [...this.response]) {
      if (g.hwpt === hwpt && g.handle === handle) {
        this.response.delete(c);
        this.complete(g, IOMMUFD_PAGE_RESP_INVALID);
      }
    }
  }

  /** xa_alloc(XA_FLAGS_ALLOC1, xa_limit_32b): the lowest free cookie >= 1, reused once answered. */
  private allocCookie(): number {
    let c = 1;
    while (this.response.has(c)) c++;
    return c;
  }

  read(count: number, pos: number): Uint8Array {
    if (pos !== 0 || count % PGFAULT_SIZE) fail("ESPIPE", "read must be whole records at offset 0");
    const groups: FaultGroup[] = [];
    let done = 0;
    while (this.deliver.length) {
      const g = this.deliver[0];
      if (done + g.faults.length * PGFAULT_SIZE > count) {
        if (done === 0) fail("EINVAL", "the first fault group does not fit");
        break;
      }
      this.deliver.shift();
      g.cookie = this.allocCookie();
      this.response.set(g.cookie, g);
      groups.push(g);
      done += g.faults.length * PGFAULT_SIZE;
    }
    const buf = new Uint8Array(done);
    const dv = new DataView(buf.buffer);
    let off = 0;
    for (const g of groups) {
      for (const f of g.faults) {
        let flags = 0;
        if (f.pasidValid) flags |= IOMMU_PGFAULT_FLAGS_PASID_VALID;
        if (f.lastPage) flags |= IOMMU_PGFAULT_FLAGS_LAST_PAGE;
        dv.setUint32(off + 0, flags, true);
        dv.setUint32(off + 4, g.handle.idev.id, true);
        dv.setUint32(off + 8, f.pasid >>> 0, true);
        dv.setUint32(off + 12, f.grpid >>> 0, true);
        dv.setUint32(off + 16, f.perm >>> 0, true);
        dv.setBigUint64(off + 24, f.addr, true);
        dv.setUint32(off + 36, g.cookie, true);
        off += PGFAULT_SIZE;
      }
    }
    return buf;
  }

  write(data: Uint8Array, pos: number): number {
    if (pos !== 0 || data.length % PAGE_RESPONSE_SIZE) fail("ESPIPE", "write must be whole responses at offset 0");
    const dv = new DataView(data.buffer, data.byteOffset, data.length);
    let done = 0;
    try {
      while (done < data.length) {
        const cookie = dv.getUint32(done, true);
        const code = dv.getUint32(done + 4, true);
        if (code !== IOMMUFD_PAGE_RESP_SUCCESS && code !== IOMMUFD_PAGE_RESP_INVALID) fail("EINVAL", "bad response code");
        const g = this.response.get(cookie);
        if (!g) fail("EINVAL", "unknown cookie");
        this.response.delete(cookie);
        this.complete(g, code);
        done += PAGE_RESPONSE_SIZE;
      }
    } catch (e) {
      if (done === 0) throw e;
    }
    return done;
  }

  poll(): number {
    const POLLIN = 0x1;
    const POLLOUT = 0x4;
    const POLLRDNORM = 0x40;
    return POLLOUT | (this.deliver.length ? POLLIN | POLLRDNORM : 0);
  }
}

/**
 * find_fault_handler (io-pgfault.c): the attachment a page request of idev belongs to. A request
 * with a valid PASID goes to that PASID's attachment [newer than 6.12]; when the PASID has none,
 * to the RID's attachment only if it is a nested HWPT (the mock and SMMUv3 keep the PASID table in
 * the guest: user_pasid_table). A request without PASID goes to the RID's attachment.
 */
export function faultTarget(idev: IommufdDevice, f: IopfFault): { hwpt: Hwpt; handle: AttachHandle } | null {
  const g = idev.igroup;
  if (f.pasidValid) {
    const pa = g.pasids.get(f.pasid);
    if (pa) return { hwpt: pa.hwpt, handle: pa.handle };
    if (!g.hwpt || g.hwpt.type !== ObjType.HWPT_NESTED) return null;
  }
  if (!g.hwpt || !g.handle || !idev.attached) return null;
  return { hwpt: g.hwpt, handle: g.handle };
}

/**
 * iommu_report_device_fault for a bound device: the fault goes to the HWPT of its attachment
 * (faultTarget), through that attachment's handle, if the HWPT has a fault object (in 6.12 only
 * nested HWPTs can; paging HWPTs can too in the newest kernel). Otherwise it is answered at once
 * and nothing is queued.
 */
export function reportDeviceFault(idev: IommufdDevice, f: IopfFault): void {
  const t = faultTarget(idev, f);
  if (!t || !t.hwpt.fault) return;
  t.hwpt.fault.deliverFault(t.hwpt, t.handle, f);
}

/** A fault the driver reported through hwpt's domain (its iopfHandler): queued if that is where it belongs. */
export function routeDomainFault(idev: IommufdDevice, hwpt: Hwpt, f: IopfFault): void {
  const t = faultTarget(idev, f);
  if (!t || t.hwpt !== hwpt || !hwpt.fault) return;
  hwpt.fault.deliverFault(hwpt, t.handle, f);
}

/** The anon-inode fd "[iommufd-pgfault]": holds the fault object and the context. */
export class FaultFile implements IommufdFile {
  readonly kind = "fault" as const;
  constructor(readonly fault: Fault) {}
  read(count: number, pos: number): Uint8Array {
    return this.fault.read(count, pos);
  }
  write(data: Uint8Array, pos: number): number {
    return this.fault.write(data, pos);
  }
  poll(): number {
    return this.fault.poll();
  }
  release(): void {
    this.fault.users--;
    this.fault.ctx.fileClosed();
  }
}

export function faultQueueAlloc(ctx: IommufdCtx, flags: number): { out_fault_id: number; out_fault_fd: number } {
  if (flags) fail("EOPNOTSUPP", "flags must be 0");
  ctx.allocPoint("fault");
  const f = new Fault(ctx);
  ctx.addObject(f);
  f.users++;
  ctx.fileOpened();
  const fd = ctx.fds.install(new FaultFile(f));
  return { out_fault_id: f.id, out_fault_fd: fd };
}
