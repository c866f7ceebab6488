/** The host's global PASID space: lowest free first, PASID 0 never handed out, per-device limits. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { FIRST_GLOBAL_PASID, PASID_INVALID, PASID_MAX, PasidAllocator, deviceMaxPasids } from "../../src/iommu/pasid.js";

test("global PASIDs start at 1 (0 means no PASID) and come lowest free first", () => {
  const a = new PasidAllocator();
  assert.equal(a.allocGlobal(1 << 20), FIRST_GLOBAL_PASID);
  assert.equal(a.allocGlobal(1 << 20), 2);
  assert.equal(a.allocGlobal(1 << 20), 3);
  a.freeGlobal(2);
  assert.equal(a.allocGlobal(1 << 20), 2, "a freed PASID is reused first");
  assert.equal(a.isUsed(0), false);
});

test("a device without PASID support gets PASID_INVALID; a device's PASIDs stay below its limit", () => {
  const a = new PasidAllocator();
  assert.equal(a.allocGlobal(0), PASID_INVALID);
  // 2 PASIDs: only PASID 1 is usable (0 is the RID's)
  assert.equal(a.allocGlobal(2), 1);
  assert.equal(a.allocGlobal(2), PASID_INVALID, "the 1-bit device is out of PASIDs");
  assert.equal(a.allocGlobal(1 << 20), 2, "a wider device still gets one");
  assert.equal(deviceMaxPasids(20, 20), 1 << 20);
  assert.equal(deviceMaxPasids(20, 14), 1 << 14, "the IOMMU's width caps the device's");
  assert.equal(deviceMaxPasids(0, 20), 0);
});

test("the whole 20-bit space can be used up and freeing one ID makes exactly it available", () => {
  const a = new PasidAllocator();
  for (let i = 1; i < PASID_MAX; i++) assert.equal(a.allocGlobal(PASID_MAX), i);
  assert.equal(a.allocGlobal(PASID_MAX), PASID_INVALID);
  a.freeGlobal(777_777);
  assert.equal(a.allocGlobal(PASID_MAX), 777_777);
  assert.equal(a.inUse, PASID_MAX - 1);
});

test("take marks a chosen PASID; taking one in use is EBUSY", () => {
  const a = new PasidAllocator();
  a.take(5);
  assert.throws(() => a.take(5), { code: "EBUSY" });
  assert.throws(() => a.take(PASID_MAX), { code: "EINVAL" });
  assert.equal(a.allocRange(5, 6), 6);
});

test("fast-check: allocRange and free agree with a Set model (lowest free in range)", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant("alloc" as const), min: fc.integer({ min: 0, max: 5000 }), len: fc.integer({ min: 0, max: 3000 }) }),
          fc.record({ op: fc.constant("free" as const), pick: fc.nat() }),
        ),
        { maxLength: 400 },
      ),
      (ops) => {
        const a = new PasidAllocator();
        const ref = new Set<number>();
        for (const o of ops) {
          if (o.op === "alloc") {
            let want = PASID_INVALID;
            for (let i = o.min; i <= o.min + o.len; i++)
              if (!ref.has(i)) {
                want = i;
                break;
              }
            assert.equal(a.allocRange(o.min, o.min + o.len), want);
            if (want !== PASID_INVALID) ref.add(want);
          } else if (ref.size) {
            const id = [...ref][o.pick % ref.size];
            ref.delete(id);
            a.free(id);
          }
          assert.equal(a.inUse, ref.size);
        }
      },
    ),
    { seed: 0x9a51d, numRuns: 200 },
  );
});
