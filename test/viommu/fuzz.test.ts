/**
 * Random sequences over the newer objects (vIOMMUs, nested HWPTs on them, vDEVICEs, vEVENTQs and
 * their fds, PASID attachments, fault-capable HWPTs, selftest devices coming and going): every call
 * either succeeds or fails with an IommuError that changed nothing, and closing the context (after
 * the fds) always tears everything down: no object, no tombstone, no mmap region, no PASID or
 * group attachment, no ownership, no pin, no driver-side vDEVICE record.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { IommuError } from "../../src/errno.js";
import { env, hwptAlloc, mockDomain, pins, scratch, u32s, BUFFER_SIZE, PAGE, BASE, ioasMap } from "../hwpt/helpers.js";
import { S, FAULT_VALID, NEST, PASID_FLAG, fullSnapshot, nested, vdeviceAlloc, viommuAlloc, triggerVevent } from "./helpers.js";
import { IommufdDevice } from "../../src/iommufd/device.js";
import { Viommu } from "../../src/iommufd/viommu.js";
import { MockViommu } from "../../src/iommu/drivers/mock.js";
import { groupPasidsAttached } from "../../src/iommu/core.js";

type Op =
  | { k: "dev"; pasid: boolean }
  | { k: "parent"; d: number; flags: number }
  | { k: "viommu"; d: number; h: number; data: boolean }
  | { k: "nested"; d: number; pt: number; flags: number; f: number }
  | { k: "vdev"; v: number; d: number; virt: number }
  | { k: "veventq"; v: number; depth: number; type: number }
  | { k: "replace"; d: number; pt: number }
  | { k: "pasid"; op: number; d: number; pasid: number; pt: number }
  | { k: "vevent"; d: number }
  | { k: "fault" }
  | { k: "read"; q: number; n: number }
  | { k: "closefd"; q: number }
  | { k: "destroy"; id: number }
  | { k: "inval"; v: number; vdev: number; cache: number; flags: number }
  | { k: "map" };

const idx = fc.integer({ min: 0, max: 7 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant("dev" as const), pasid: fc.boolean() }),
  fc.record({ k: fc.constant("parent" as const), d: idx, flags: fc.constantFrom(NEST, 0, PASID_FLAG, NEST | PASID_FLAG, FAULT_VALID) }),
  fc.record({ k: fc.constant("viommu" as const), d: idx, h: idx, data: fc.boolean() }),
  fc.record({ k: fc.constant("nested" as const), d: idx, pt: idx, flags: fc.constantFrom(0, PASID_FLAG, FAULT_VALID, FAULT_VALID | PASID_FLAG), f: idx }),
  fc.record({ k: fc.constant("vdev" as const), v: idx, d: idx, virt: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ k: fc.constant("veventq" as const), v: idx, depth: fc.integer({ min: 0, max: 3 }), type: fc.constantFrom(S.IOMMU_VEVENTQ_TYPE_SELFTEST, S.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3) }),
  fc.record({ k: fc.constant("replace" as const), d: idx, pt: idx }),
  fc.record({ k: fc.constant("pasid" as const), op: fc.constantFrom(18, 19, 20, 21), d: idx, pasid: fc.constantFrom(0, 1, 2, 1024), pt: idx }),
  fc.record({ k: fc.constant("vevent" as const), d: idx }),
  fc.record({ k: fc.constant("fault" as const) }),
  fc.record({ k: fc.constant("read" as const), q: idx, n: fc.constantFrom(0, 8, 12, 24, 100) }),
  fc.record({ k: fc.constant("closefd" as const), q: idx }),
  fc.record({ k: fc.constant("destroy" as const), id: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ k: fc.constant("inval" as const), v: idx, vdev: fc.integer({ min: 0, max: 3 }), cache: fc.integer({ min: 0, max: 4 }), flags: fc.constantFrom(0, 1, 2) }),
  fc.record({ k: fc.constant("map" as const) }),
);

test("random sequences of vIOMMU / vDEVICE / vEVENTQ / PASID calls: a failing call changes nothing, and the context always tears down completely", () => {
  /** Successful calls per kind over all runs: the sequences must reach the deep states. */
  const ok = new Map<string, number>();
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) => {
      const e = env();
      const devs: { stdev: number; idev: number; dev: S.Device }[] = [];
      const hwpts: number[] = [];
      const viommus: number[] = [];
      const faults: number[] = [];
      const qfds: number[] = [];
      const mocks: MockViommu[] = [];
      const pick = <T>(a: T[], i: number, dflt: T): T => (a.length ? a[i % a.length] : dflt);
      const data = scratch(e.p, u32s(0xbeef, 0, 0, 0, 0, 0));
      const add = (): void => {
        const md = mockDomain(e.ctx, e.ioas, S.MOCK_FLAGS_DEVICE_PASID);
        devs.push({ stdev: md.stdev, idev: md.idev, dev: (e.ctx.objects.get(md.idev) as IommufdDevice).dev });
      };
      add();
      // the iommufd_viommu fixture as the starting point, so that short sequences reach deep states
      const parents = [hwptAlloc(e.ctx, devs[0].idev, e.ioas, NEST | PASID_FLAG)];
      hwpts.push(parents[0]);
      viommus.push(viommuAlloc(e.ctx, devs[0].idev, parents[0]));
      mocks.push((e.ctx.objects.get(viommus[0]) as Viommu).ops as MockViommu);
      hwpts.push(nested(e, devs[0].idev, viommus[0], PASID_FLAG));
      vdeviceAlloc(e.ctx, viommus[0], devs[0].idev, 0x90n);
      qfds.push(e.ctx.veventqAlloc({ flags: 0, viommu_id: viommus[0], type: S.IOMMU_VEVENTQ_TYPE_SELFTEST, veventq_depth: 2 }).out_veventq_fd as number);
      for (const op of ops) {
        const d = pick(devs, "d" in op ? op.d : 0, { stdev: 999, idev: 999, dev: devs[0].dev });
        const before = fullSnapshot(e);
        try {
          switch (op.k) {
            case "dev": {
              const md = mockDomain(e.ctx, e.ioas, op.pasid ? S.MOCK_FLAGS_DEVICE_PASID : 0);
              devs.push({ stdev: md.stdev, idev: md.idev, dev: (e.ctx.objects.get(md.idev) as IommufdDevice).dev });
              break;
            }
            case "parent": {
              const h = hwptAlloc(e.ctx, d.idev, e.ioas, op.flags);
              hwpts.push(h);
              if (op.flags & NEST) parents.push(h);
              break;
            }
            case "viommu": {
              const v = viommuAlloc(e.ctx, d.idev, op.h === 7 ? pick(hwpts, op.d, 999) : pick(parents, op.h, 999), op.data ? { data_len: 24, data_uptr: data } : {});
              viommus.push(v);
              mocks.push((e.ctx.objects.get(v) as Viommu).ops as MockViommu);
              break;
            }
            case "nested": {
              const pt = op.pt % 2 ? pick(viommus, op.pt, 999) : op.pt === 6 ? pick(hwpts, op.d, 999) : pick(parents, op.pt, 999);
              hwpts.push(nested(e, d.idev, pt, op.flags, pick(faults, op.f, 999)));
              break;
            }
            case "vdev":
              vdeviceAlloc(e.ctx, pick(viommus, op.v, 999), d.idev, BigInt(0x90 + op.virt));
              break;
            case "veventq": {
              const q = e.ctx.veventqAlloc({ flags: 0, viommu_id: pick(viommus, op.v, 999), type: op.type, veventq_depth: op.depth });
              qfds.push(q.out_veventq_fd as number);
              break;
            }
            case "replace":
              e.ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, id: d.stdev, pt_id: op.pt === 7 ? e.ioas : pick(hwpts, op.pt, e.ioas) });
              break;
            case "pasid":
              e.ctx.testCmd({ op: op.op, id: d.stdev, pasid: op.pasid, pt_id: op.pt === 7 ? e.ioas : pick(hwpts, op.pt, 999), hwpt_id: op.pt === 7 ? 0 : pick(hwpts, op.pt, 0) });
              break;
            case "vevent":
              triggerVevent(e.ctx, d.idev);
              break;
            case "fault": {
              const f = e.ctx.faultQueueAlloc({ flags: 0 });
              faults.push(f.out_fault_id as number);
              qfds.push(f.out_fault_fd as number);
              break;
            }
            case "read": {
              const fd = pick(qfds, op.q, -1);
              const f = S.fdTableOf(e.p).get(fd);
              if (f?.read) f.read(f.kind === "fault" ? 40 : op.n, 0);
              break;
            }
            case "closefd": {
              const fd = pick(qfds, op.q, -1);
              if (S.fdTableOf(e.p).get(fd)) S.fdTableOf(e.p).close(fd);
              break;
            }
            case "destroy":
              e.ctx.destroy({ id: op.id });
              break;
            case "inval": {
              const b = scratch(e.p, u32s(op.flags, 0x90 + op.vdev, op.cache));
              e.ctx.hwptInvalidate({ hwpt_id: pick(viommus, op.v, 999), data_uptr: b, data_type: S.IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, entry_len: 12, entry_num: 1 });
              break;
            }
            case "map":
              ioasMap(e.ctx, e.ioas, e.buf, BUFFER_SIZE, BASE + BigInt(16 * PAGE * (1 + (hwpts.length % 8))));
              break;
          }
          const kind = op.k === "pasid" ? `pasid${op.op}` : op.k;
          ok.set(kind, (ok.get(kind) ?? 0) + 1);
        } catch (err) {
          if (!(err instanceof IommuError)) throw err;
          // HWPT_INVALIDATE reports partial progress; every other failure is a clean no-op
          if (op.k !== "inval" || err.code !== "EOPNOTSUPP") assert.deepEqual(fullSnapshot(e), before, `${JSON.stringify(op)} failed with ${err.code} but changed state`);
        }
      }
      for (const fd of qfds) if (S.fdTableOf(e.p).get(fd)) S.fdTableOf(e.p).close(fd);
      e.ctx.close();
      assert.equal(e.ctx.released, true);
      assert.equal(e.ctx.objects.size, 0);
      assert.deepEqual(e.ctx.tombstoned, []);
      assert.deepEqual(e.ctx.mmapRegions, []);
      for (const x of devs) {
        assert.equal(x.dev.group.domain, null);
        assert.equal(x.dev.group.ownerCnt, 0);
        assert.deepEqual(groupPasidsAttached(x.dev.group), []);
      }
      for (const m of mocks) {
        assert.equal(m.destroyed, true);
        assert.equal(m.vdevs.size, 0);
      }
      assert.ok(pins(e.host, e.p, e.buf, BUFFER_SIZE).every((n) => n === 0));
      assert.equal(e.p.user.lockedVm, 0);
    }),
    // a fixed seed: the coverage check below must not depend on luck (deterministic tests)
    { numRuns: 300, seed: 0x5eed },
  );
  for (const k of ["viommu", "nested", "vdev", "veventq", "vevent", "replace", "pasid18", "pasid19", "pasid21", "inval", "destroy"])
    assert.ok((ok.get(k) ?? 0) > 0, `no successful ${k} in any run: ${JSON.stringify([...ok])}`);
});
