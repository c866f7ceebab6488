/**
 * IOMMU_VEVENTQ_ALLOC and the vEVENTQ fd (eventq.c, driver.c iommufd_viommu_report_event,
 * iommufd_private.h iommufd_vevent_handler), with IOMMU_TEST_OP_TRIGGER_VEVENT (selftest.c): the
 * newest selftest's vdevice_alloc test, the read-size rules, overflow with the LOST_EVENTS header
 * and sequence numbers, poll, and the fd's lifetime. A fast-check model test checks the queue
 * against a plain list.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { expectErr, mockDomain, replace, POLLIN, POLLOUT, POLLRDNORM } from "../hwpt/helpers.js";
import {
  S,
  VEVENTQ_SELFTEST,
  decodeVevents,
  failsCleanlyFull,
  file,
  readErr,
  readFd,
  triggerVevent,
  vdeviceAlloc,
  veventqAlloc,
  viommuAlloc,
  viommuEnv,
  type ViommuEnv,
} from "./helpers.js";
import { Veventq } from "../../src/iommufd/veventq.js";
import { Viommu } from "../../src/iommufd/viommu.js";

const HDR = 8;
const REC = 12;
const LOST = S.IOMMU_VEVENTQ_FLAG_LOST_EVENTS;

/** The fixture with a vDEVICE (virt_id) and the device attached to the vIOMMU's nested HWPT. */
function attached(virtId = 0x99n): ViommuEnv & { vdev: number } {
  const e = viommuEnv();
  const vdev = vdeviceAlloc(e.ctx, e.viommu, e.md.idev, virtId);
  replace(e.ctx, e.md.stdev, e.nested);
  return { ...e, vdev };
}

// ------------------------------------------------------------------------------ VEVENTQ_ALLOC

test("VEVENTQ_ALLOC errnos in the kernel's order: flags/__reserved/type DEFAULT EOPNOTSUPP, depth 0 or above 1<<19 EINVAL, no vIOMMU ENOENT, a second queue of a type EEXIST", () => {
  const e = viommuEnv();
  const call = (o: Partial<S.IommuVeventqAlloc>) => () => e.ctx.veventqAlloc({ flags: 0, viommu_id: e.viommu, type: VEVENTQ_SELFTEST, veventq_depth: 2, ...o });
  failsCleanlyFull(e, "EOPNOTSUPP", call({ flags: 1, veventq_depth: 0, viommu_id: 999 }), "flags first");
  failsCleanlyFull(e, "EOPNOTSUPP", call({ __reserved: 1, veventq_depth: 0 }), "__reserved");
  failsCleanlyFull(e, "EOPNOTSUPP", call({ type: S.IOMMU_VEVENTQ_TYPE_DEFAULT }), "type DEFAULT");
  failsCleanlyFull(e, "EINVAL", call({ veventq_depth: 0, viommu_id: 999 }), "depth 0, before the vIOMMU");
  failsCleanlyFull(e, "EINVAL", call({ veventq_depth: S.VEVENTQ_MAX_DEPTH + 1 }), "depth above the cap");
  failsCleanlyFull(e, "ENOENT", call({ viommu_id: 999 }), "no vIOMMU");
  failsCleanlyFull(e, "ENOENT", call({ viommu_id: e.parent }), "a HWPT is not a vIOMMU");
  const big = call({ veventq_depth: S.VEVENTQ_MAX_DEPTH })();
  S.fdTableOf(e.p).close(big.out_veventq_fd as number);
  e.ctx.destroy({ id: big.out_veventq_id as number });
  const q = call({})();
  failsCleanlyFull(e, "EEXIST", call({}), "one queue per type");
  // any other type is a queue of its own (the core does not ask the driver)
  const other = call({ type: S.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 })();
  assert.notEqual(other.out_veventq_id, q.out_veventq_id);
  assert.equal((e.ctx.objects.get(e.viommu) as Viommu).veventqs.length, 2);
});

test("VEVENTQ_ALLOC: the fd reads as the vEVENTQ and holds it (destroy EBUSY) and the context; after close the queue can be destroyed and a new one of that type made", () => {
  const e = viommuEnv();
  const q = veventqAlloc(e.ctx, e.viommu, 4);
  const f = file(e, q.fd);
  assert.equal(f.kind, "veventq");
  assert.equal(f.write, undefined, "no write");
  failsCleanlyFull(e, "EBUSY", () => e.ctx.destroy({ id: q.id }));
  e.ctx.close();
  assert.equal(e.ctx.released, false, "the vEVENTQ fd keeps the context");
  S.fdTableOf(e.p).close(q.fd);
  assert.equal(e.ctx.released, true);
  assert.equal(e.ctx.objects.size, 0);
  const e2 = viommuEnv();
  const q2 = veventqAlloc(e2.ctx, e2.viommu, 4);
  S.fdTableOf(e2.p).close(q2.fd);
  e2.ctx.destroy({ id: q2.id });
  veventqAlloc(e2.ctx, e2.viommu, 4);
});

// ------------------------------------------------------------------------------ read rules

test("vEVENTQ read: offset must be 0 (ESPIPE); a count below a header is EINVAL (0 too), empty or not; an empty queue reads 0 bytes", () => {
  const e = attached();
  const q = veventqAlloc(e.ctx, e.viommu, 2);
  readErr(e, "EINVAL", q.fd, 0);
  readErr(e, "EINVAL", q.fd, HDR - 1);
  readErr(e, "ESPIPE", q.fd, 64, 1);
  assert.equal(readFd(e, q.fd, HDR).length, 0, "empty: nothing to check the payload against");
  assert.equal(readFd(e, q.fd, 64).length, 0);
  triggerVevent(e.ctx, e.md.idev);
  readErr(e, "EINVAL", q.fd, 0);
  readErr(e, "EINVAL", q.fd, HDR - 1);
  readErr(e, "EINVAL", q.fd, HDR, 0);
  readErr(e, "EINVAL", q.fd, REC - 1);
  assert.equal((e.ctx.objects.get(q.id) as Veventq).length, 1, "the failed reads consumed nothing");
  assert.deepEqual(decodeVevents(readFd(e, q.fd, REC)), [{ flags: 0, sequence: 0, virtId: 0x99 }]);
});

test("vEVENTQ read returns whole records only: what does not fit after the first record stays queued", () => {
  const e = attached();
  const q = veventqAlloc(e.ctx, e.viommu, 8);
  for (let i = 0; i < 3; i++) triggerVevent(e.ctx, e.md.idev);
  assert.deepEqual(decodeVevents(readFd(e, q.fd, 2 * REC + REC - 1)).map((r) => r.sequence), [0, 1]);
  assert.deepEqual(decodeVevents(readFd(e, q.fd, 64)).map((r) => r.sequence), [2]);
});

test("vEVENTQ poll: POLLIN | POLLRDNORM while a record is queued, never POLLOUT", () => {
  const e = attached();
  const q = veventqAlloc(e.ctx, e.viommu, 2);
  const f = file(e, q.fd);
  assert.equal(f.poll?.(), 0);
  triggerVevent(e.ctx, e.md.idev);
  assert.equal(f.poll?.(), POLLIN | POLLRDNORM);
  assert.equal((f.poll?.() ?? 0) & POLLOUT, 0);
  readFd(e, q.fd, 64);
  assert.equal(f.poll?.(), 0);
});

// ------------------------------------------------------------------------------ TRIGGER_VEVENT

test("TRIGGER_VEVENT: the record carries the vDEVICE's virt_id captured at attach, with consecutive sequence numbers", () => {
  const e = attached(0x1234n);
  const q = veventqAlloc(e.ctx, e.viommu, 8);
  triggerVevent(e.ctx, e.md.idev);
  triggerVevent(e.ctx, e.md.idev);
  assert.deepEqual(decodeVevents(readFd(e, q.fd, 64)), [
    { flags: 0, sequence: 0, virtId: 0x1234 },
    { flags: 0, sequence: 1, virtId: 0x1234 },
  ]);
  // the vDEVICE destroyed while attached: the mock keeps reporting the ID it attached with
  e.ctx.destroy({ id: e.vdev });
  triggerVevent(e.ctx, e.md.idev);
  assert.deepEqual(decodeVevents(readFd(e, q.fd, 64)), [{ flags: 0, sequence: 2, virtId: 0x1234 }]);
});

test("TRIGGER_VEVENT: ENOENT for an unknown device or one not attached through a vIOMMU (also after detach); EOPNOTSUPP when the vIOMMU has no selftest vEVENTQ; a failure queues nothing", () => {
  const e = viommuEnv();
  const q = veventqAlloc(e.ctx, e.viommu, 2);
  failsCleanlyFull(e, "ENOENT", () => triggerVevent(e.ctx, 999), "unknown device");
  failsCleanlyFull(e, "ENOENT", () => triggerVevent(e.ctx, e.md.idev), "attached to the IOAS");
  vdeviceAlloc(e.ctx, e.viommu, e.md.idev, 0x99n);
  failsCleanlyFull(e, "ENOENT", () => triggerVevent(e.ctx, e.md.idev), "a vDEVICE alone is not enough");
  replace(e.ctx, e.md.stdev, e.nested);
  triggerVevent(e.ctx, e.md.idev);
  replace(e.ctx, e.md.stdev, e.ioas);
  failsCleanlyFull(e, "ENOENT", () => triggerVevent(e.ctx, e.md.idev), "moved back to the IOAS");
  replace(e.ctx, e.md.stdev, e.nested);
  const idev = e.ctx.objects.get(e.md.idev) as S.IommufdDevice;
  idev.detach();
  failsCleanlyFull(e, "ENOENT", () => triggerVevent(e.ctx, e.md.idev), "detached");
  idev.attach(e.nested);
  S.fdTableOf(e.p).close(q.fd);
  e.ctx.destroy({ id: q.id });
  failsCleanlyFull(e, "EOPNOTSUPP", () => triggerVevent(e.ctx, e.md.idev), "no vEVENTQ");
  assert.equal((e.ctx.objects.get(e.viommu) as Viommu).dropped, 1);
});

test("TRIGGER_VEVENT with virt_id 0 is ENOENT (the mock treats vdev_id 0 as none)", () => {
  const e = attached(0n);
  veventqAlloc(e.ctx, e.viommu, 2);
  failsCleanlyFull(e, "ENOENT", () => triggerVevent(e.ctx, e.md.idev));
});

// ------------------------------------------------------------------------------ overflow and sequence numbers

test("vdevice_alloc overflow: depth 2 and three events read as two events and a LOST_EVENTS header with the third sequence number; afterwards the next event follows without a gap", () => {
  const e = attached();
  const q = veventqAlloc(e.ctx, e.viommu, 2);
  triggerVevent(e.ctx, e.md.idev);
  assert.deepEqual(decodeVevents(readFd(e, q.fd, REC)), [{ flags: 0, sequence: 0, virtId: 0x99 }]);
  for (let i = 0; i < 3; i++) triggerVevent(e.ctx, e.md.idev);
  const obj = e.ctx.objects.get(q.id) as Veventq;
  assert.equal(obj.numEvents, 2);
  assert.equal(obj.lost, 1);
  assert.deepEqual(decodeVevents(readFd(e, q.fd, 3 * REC)), [
    { flags: 0, sequence: 1, virtId: 0x99 },
    { flags: 0, sequence: 2, virtId: 0x99 },
    { flags: LOST, sequence: 3, virtId: null },
  ]);
  triggerVevent(e.ctx, e.md.idev);
  assert.deepEqual(decodeVevents(readFd(e, q.fd, 3 * REC)), [{ flags: 0, sequence: 4, virtId: 0x99 }]);
});

test("vEVENTQ overflow: the single LOST_EVENTS header moves to the tail with each lost event's sequence number; an event that fits after a read replaces it, the sequence gap telling the loss", () => {
  const e = attached();
  const q = veventqAlloc(e.ctx, e.viommu, 1);
  for (let i = 0; i < 4; i++) triggerVevent(e.ctx, e.md.idev);
  const obj = e.ctx.objects.get(q.id) as Veventq;
  assert.deepEqual(obj.peekAll().map((r) => [r.lost, r.sequence]), [[false, 0], [true, 3]], "one header, the latest lost sequence");
  // a count of one record takes the event; the header would fit but is left for the next read
  assert.deepEqual(decodeVevents(readFd(e, q.fd, REC)), [{ flags: 0, sequence: 0, virtId: 0x99 }]);
  // now room again: the next event takes the header's place
  triggerVevent(e.ctx, e.md.idev);
  assert.deepEqual(decodeVevents(readFd(e, q.fd, 64)), [{ flags: 0, sequence: 4, virtId: 0x99 }]);
});

test("vEVENTQ: a LOST_EVENTS header at the head is read with a count of a header alone", () => {
  const e = attached();
  const q = veventqAlloc(e.ctx, e.viommu, 1);
  triggerVevent(e.ctx, e.md.idev);
  triggerVevent(e.ctx, e.md.idev);
  decodeVevents(readFd(e, q.fd, REC));
  assert.deepEqual(decodeVevents(readFd(e, q.fd, HDR)), [{ flags: LOST, sequence: 1, virtId: null }]);
  assert.equal(readFd(e, q.fd, 64).length, 0);
});

test("vEVENTQ sequence numbers run 0..INT_MAX and wrap to 0", () => {
  const e = attached();
  const q = veventqAlloc(e.ctx, e.viommu, 4);
  (e.ctx.objects.get(q.id) as Veventq).sequence = 0x7ffffffe;
  for (let i = 0; i < 3; i++) triggerVevent(e.ctx, e.md.idev);
  assert.deepEqual(decodeVevents(readFd(e, q.fd, 64)).map((r) => r.sequence), [0x7ffffffe, 0x7fffffff, 0]);
});

test("vEVENTQs of a vIOMMU take only their own type; events of a vIOMMU reach only its queues", () => {
  const e = attached();
  const q = veventqAlloc(e.ctx, e.viommu, 4);
  const smmu = veventqAlloc(e.ctx, e.viommu, 4, S.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3);
  const v2 = viommuAlloc(e.ctx, e.md.idev, e.parent);
  const q2 = veventqAlloc(e.ctx, v2, 4);
  triggerVevent(e.ctx, e.md.idev);
  assert.equal(decodeVevents(readFd(e, q.fd, 64)).length, 1);
  assert.equal(readFd(e, smmu.fd, 64).length, 0);
  assert.equal(readFd(e, q2.fd, 64).length, 0);
});

// ------------------------------------------------------------------------------ model test

/** The queue as a plain list, following the kernel's rules literally. */
class RefQueue {
  recs: { lost: boolean; seq: number; v: number }[] = [];
  n = 0;
  seq = 0;
  constructor(readonly depth: number) {}
  report(v: number): void {
    if (this.recs.length && this.recs[this.recs.length - 1].lost) this.recs.pop();
    if (this.n === this.depth) this.recs.push({ lost: true, seq: this.seq, v: 0 });
    else {
      this.recs.push({ lost: false, seq: this.seq, v });
      this.n++;
    }
    this.seq = (this.seq + 1) & 0x7fffffff;
  }
  read(count: number): { lost: boolean; seq: number; v: number }[] | "EINVAL" {
    if (count < HDR) return "EINVAL";
    const out: { lost: boolean; seq: number; v: number }[] = [];
    let done = 0;
    while (this.recs.length) {
      const r = this.recs[0];
      const need = r.lost ? HDR : REC;
      if (count - done < HDR) break;
      if (need > count - done) {
        if (!done) return "EINVAL";
        break;
      }
      this.recs.shift();
      if (!r.lost) this.n--;
      out.push(r);
      done += need;
    }
    return out;
  }
}

test("model: any interleaving of reports and reads (with any read count) gives the records a plain list following the kernel's rules gives", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 6 }),
      fc.array(fc.oneof(fc.record({ t: fc.constant("report" as const), v: fc.integer({ min: 1, max: 0xffff }) }), fc.record({ t: fc.constant("read" as const), n: fc.integer({ min: 0, max: 80 }) })), {
        maxLength: 60,
      }),
      (depth, ops) => {
        const e = viommuEnv();
        const v = e.ctx.objects.get(e.viommu) as Viommu;
        const q = veventqAlloc(e.ctx, e.viommu, depth);
        const obj = e.ctx.objects.get(q.id) as Veventq;
        const ref = new RefQueue(depth);
        for (const op of ops) {
          if (op.t === "report") {
            const payload = new Uint8Array(4);
            new DataView(payload.buffer).setUint32(0, op.v, true);
            v.report(VEVENTQ_SELFTEST, payload);
            ref.report(op.v);
          } else {
            const want = ref.read(op.n);
            if (want === "EINVAL") {
              expectErr("EINVAL", () => readFd(e, q.fd, op.n));
              continue;
            }
            const got = decodeVevents(readFd(e, q.fd, op.n));
            assert.deepEqual(
              got.map((r) => [r.flags === LOST, r.sequence, r.virtId ?? 0]),
              want.map((r) => [r.lost, r.seq, r.v]),
            );
          }
          assert.equal(obj.numEvents, ref.n);
          assert.equal(obj.length, ref.recs.length);
        }
      },
    ),
    { numRuns: 200 },
  );
});

test("teardown: closing the context with a vEVENTQ holding records, its fd closed, leaves nothing", () => {
  const e = attached();
  const q = veventqAlloc(e.ctx, e.viommu, 2);
  for (let i = 0; i < 5; i++) triggerVevent(e.ctx, e.md.idev);
  S.fdTableOf(e.p).close(q.fd);
  mockDomain(e.ctx, e.ioas);
  e.ctx.close();
  assert.equal(e.ctx.released, true);
  assert.equal(e.ctx.objects.size, 0);
});
