/**
 * vEVENTQ objects and their fds (eventq.c) [newer than 6.12]: the queue of one event type of a
 * vIOMMU ("[iommufd-viommu-event]"), read as records: a struct iommufd_vevent_header { flags,
 * sequence } followed by the type's payload.
 *
 * Rules (iommufd_viommu_report_event, iommufd_vevent_handler, iommufd_veventq_fops_read):
 * - every reported event takes the next sequence number (0..INT_MAX, then 0 again), lost or not;
 * - while veventq_depth events are queued, a new event is lost: the queue's single LOST_EVENTS
 *   header (no payload) moves to the tail with that event's sequence number; a later event that
 *   fits takes the header's place at the tail (the gap in sequence numbers still tells the loss);
 * - read: offset must be 0 (ESPIPE), count at least a header (EINVAL); whole records only, as many
 *   as fit; a first record whose payload does not fit is EINVAL; an empty queue reads 0 bytes;
 * - poll: POLLIN | POLLRDNORM while something is queued, never POLLOUT (there is no write).
 */
import { fail } from "../errno.js";
import type { IommufdCtx } from "./context.js";
import type { IommufdFile } from "./files.js";
import { IommufdObject } from "./object.js";
import {
  IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
  IOMMU_VEVENTQ_TYPE_DEFAULT,
  ObjType,
  VEVENT_HEADER_SIZE,
  VEVENTQ_MAX_DEPTH,
  type IommuVeventqAlloc,
} from "./types.js";
import type { Viommu } from "./viommu.js";

const INT_MAX = 0x7fffffff;
const POLLIN = 0x1;
const POLLRDNORM = 0x40;

/** One queued record: an event with its payload, or the LOST_EVENTS header (payload null). */
interface VEvent {
  seq: number;
  data: Uint8Array | null;
}

export class Veventq extends IommufdObject {
  readonly type = ObjType.VEVENTQ;
  /** Records in order; the live part starts at `head` (compacted as it grows). */
  private q: VEvent[] = [];
  private head = 0;
  /** veventq->num_events: queued events (the LOST_EVENTS header is not one). */
  numEvents = 0;
  /** veventq->sequence: the next event's sequence number. */
  sequence = 0;
  /** Events lost to overflow (for observers and tests). */
  lost = 0;

  constructor(
    readonly ctx: IommufdCtx,
    readonly viommu: Viommu,
    /** The IOMMU_VEVENTQ_TYPE_* it takes. */
    readonly veventqType: number,
    readonly depth: number,
  ) {
    super();
  }

  /** Records queued (events plus a trailing LOST_EVENTS header if there is one). */
  get length(): number {
    return this.q.length - this.head;
  }

  private tailIsLost(): boolean {
    return this.length > 0 && this.q[this.q.length - 1].data === null;
  }

  /** iommufd_viommu_report_event for this queue: queue the payload, or record a loss. */
  deliver(payload: Uint8Array): void {
    if (this.tailIsLost()) this.q.pop();
    let ev: VEvent;
    if (this.numEvents === this.depth) {
      ev = { seq: this.sequence, data: null };
      this.lost++;
    } else {
      ev = { seq: this.sequence, data: new Uint8Array(payload) };
      this.numEvents++;
    }
    this.q.push(ev);
    this.sequence = (this.sequence + 1) & INT_MAX;
  }

  private shift(): void {
    this.head++;
    if (this.head === this.q.length) {
      this.q = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.q.length) {
      this.q = this.q.slice(this.head);
      this.head = 0;
    }
  }

  /** The queued records as { lost, sequence, payload } (oldest first), without consuming them. */
  peekAll(): { lost: boolean; sequence: number; payload: Uint8Array | null }[] {
    return this.q.slice(this.head).map((e) => ({ lost: e.data === null, sequence: e.seq, payload: e.data }));
  }

  read(count: number, pos: number): Uint8Array {
    if (pos !== 0) fail("ESPIPE", "a vEVENTQ is read at offset 0");
    if (count < VEVENT_HEADER_SIZE) fail("EINVAL", "read count below a vEVENT header");
    const out: VEvent[] = [];
    let done = 0;
    while (this.length) {
      const e = this.q[this.head];
      if (done >= count || count - done < VEVENT_HEADER_SIZE) break;
      const need = VEVENT_HEADER_SIZE + (e.data ? e.data.length : 0);
      if (e.data && need > count - done) {
        if (done === 0) fail("EINVAL", "the first vEVENT does not fit in the read count");
        break;
      }
      this.shift();
      if (e.data) this.numEvents--;
      out.push(e);
      done += need;
    }
    const buf = new Uint8Array(done);
    const dv = new DataView(buf.buffer);
    let off = 0;
    for (const e of out) {
      dv.setUint32(off, e.data ? 0 : IOMMU_VEVENTQ_FLAG_LOST_EVENTS, true);
      dv.setUint32(off + 4, e.seq, true);
      off += VEVENT_HEADER_SIZE;
      if (e.data) {
        buf.set(e.data, off);
        off += e.data.length;
      }
    }
    return buf;
  }

  poll(): number {
    return this.length ? POLLIN | POLLRDNORM : 0;
  }

  /** iommufd_veventq_destroy: queued records go, the vIOMMU reference is dropped. */
  destroy(): void {
    this.q = [];
    this.head = 0;
    this.numEvents = 0;
    const i = this.viommu.veventqs.indexOf(this);
    if (i >= 0) this.viommu.veventqs.splice(i, 1);
    this.viommu.users--;
  }
}

/** The anon-inode fd "[iommufd-viommu-event]": holds the vEVENTQ and the context. No write. */
export class VeventqFile implements IommufdFile {
  readonly kind = "veventq" as const;
  constructor(readonly veventq: Veventq) {}
  read(count: number, pos: number): Uint8Array {
    return this.veventq.read(count, pos);
  }
  poll(): number {
    return this.veventq.poll();
  }
  release(): void {
    this.veventq.users--;
    this.veventq.ctx.fileClosed();
  }
}

/**
 * iommufd_veventq_alloc, in the kernel's order: flags, __reserved or type DEFAULT -> EOPNOTSUPP;
 * depth 0 or above VEVENTQ_MAX_DEPTH (1 << 19) -> EINVAL; viommu_id not a vIOMMU -> ENOENT; a
 * vEVENTQ of that type already on the vIOMMU -> EEXIST. Returns the object ID and a new fd (which
 * holds the vEVENTQ and the context).
 */
export function veventqAlloc(ctx: IommufdCtx, cmd: IommuVeventqAlloc): IommuVeventqAlloc {
  if (cmd.flags || cmd.__reserved || cmd.type === IOMMU_VEVENTQ_TYPE_DEFAULT) fail("EOPNOTSUPP", "flags/__reserved must be 0, type not DEFAULT");
  if (!cmd.veventq_depth || cmd.veventq_depth > VEVENTQ_MAX_DEPTH) fail("EINVAL", "veventq_depth out of range");
  const viommu = ctx.getViommu(cmd.viommu_id);
  if (viommu.veventqOf(cmd.type)) fail("EEXIST", "the vIOMMU already has a vEVENTQ of that type");
  ctx.allocPoint("veventq");
  const id = ctx.reserveId(false);
  const q = new Veventq(ctx, viommu, cmd.type, cmd.veventq_depth);
  q.id = id;
  viommu.users++;
  viommu.veventqs.push(q);
  // the fd's references: the object and the context
  q.users++;
  ctx.fileOpened();
  let fd: number;
  try {
    fd = ctx.fds.install(new VeventqFile(q));
  } catch (e) {
    q.users--;
    ctx.fileClosed();
    ctx.abortAndDestroy(q);
    throw e;
  }
  ctx.publish(q);
  return { ...cmd, out_veventq_id: id, out_veventq_fd: fd };
}
