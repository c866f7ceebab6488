/** PASID sets per VM over the host PASID space: quotas, guest↔host translation, ownership, teardown. */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PasidAllocator } from "../../src/iommu/pasid.js";
import { PasidSets } from "../../src/guest/pasid-set.js";

test("a guest PASID is backed by a host PASID that differs from it, translated both ways within the set", () => {
  const space = new PasidAllocator();
  space.take(5); // the host already uses some PASIDs
  space.allocGlobal(1 << 20);
  const sets = new PasidSets(space);
  const vm = sets.create("vm1", 8);
  const h = vm.alloc(5);
  assert.equal(h, 2, "lowest free host PASID, not the guest's number");
  assert.equal(vm.hostOf(5), 2);
  assert.equal(vm.guestOf(2), 5);
  assert.throws(() => vm.hostOf(6), { code: "ENOENT" });
  assert.throws(() => vm.alloc(5), { code: "EEXIST" });
  assert.throws(() => vm.alloc(0), { code: "EINVAL" }, "guest PASID 0 means no PASID");
});

test("a set's quota caps its PASIDs (ENOSPC) and a freed PASID makes room", () => {
  const sets = new PasidSets(new PasidAllocator());
  const vm = sets.create("vm1", 2);
  const a = vm.alloc(1);
  vm.alloc(2);
  assert.throws(() => vm.alloc(3), { code: "ENOSPC" });
  vm.free(a);
  assert.equal(vm.alloc(3), a);
});

test("a PASID allocated for one VM is not usable by another (EPERM), and the other's lookup misses", () => {
  const sets = new PasidSets(new PasidAllocator());
  const vm1 = sets.create("vm1", 4);
  const vm2 = sets.create("vm2", 4);
  const h = vm1.alloc(7);
  assert.throws(() => vm2.check(h), { code: "EPERM" });
  assert.throws(() => vm2.hold(h), { code: "EPERM" });
  assert.throws(() => vm2.free(h), { code: "EPERM" });
  assert.throws(() => vm2.hostOf(7), { code: "ENOENT" });
  const h2 = vm2.alloc(7);
  assert.notEqual(h2, h, "the same guest PASID in two VMs is two host PASIDs");
  assert.throws(() => sets.create("vm1", 1), { code: "EEXIST" });
});

test("a bound PASID cannot be freed (EBUSY) until its last bind is released", () => {
  const sets = new PasidSets(new PasidAllocator());
  const vm = sets.create("vm", 4);
  const h = vm.alloc(3);
  vm.hold(h);
  vm.hold(h);
  vm.release(h);
  assert.throws(() => vm.free(h), { code: "EBUSY" });
  vm.release(h);
  vm.free(h);
  assert.equal(vm.size, 0);
});

test("VM teardown frees every PASID of its set, bound or not, back to the host space", () => {
  const space = new PasidAllocator();
  const sets = new PasidSets(space);
  const vm = sets.create("vm", 100);
  for (let g = 1; g <= 10; g++) vm.alloc(g);
  vm.hold(vm.hostOf(4));
  vm.destroy();
  assert.equal(space.inUse, 0);
  assert.equal(sets.get("vm"), undefined);
  assert.equal(sets.owner.size, 0);
  assert.throws(() => vm.alloc(1), { code: "EINVAL" });
  sets.create("vm", 1); // the token can have a new set
});

test("fast-check: across VMs, host PASIDs are distinct, owned by one set, and all come back at teardown", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ vm: fc.integer({ min: 0, max: 2 }), op: fc.constantFrom("alloc", "free", "destroy"), g: fc.integer({ min: 1, max: 12 }) }), { maxLength: 200 }),
      (ops) => {
        const space = new PasidAllocator();
        const sets = new PasidSets(space);
        const ref = new Map<number, Map<number, number>>(); // vm -> guest -> host
        for (const o of ops) {
          const s = sets.get(o.vm) ?? sets.create(o.vm, 6);
          const m = ref.get(o.vm) ?? new Map<number, number>();
          ref.set(o.vm, m);
          if (o.op === "alloc") {
            if (m.has(o.g)) assert.throws(() => s.alloc(o.g), { code: "EEXIST" });
            else if (m.size >= 6) assert.throws(() => s.alloc(o.g), { code: "ENOSPC" });
            else m.set(o.g, s.alloc(o.g));
          } else if (o.op === "free") {
            const h = m.get(o.g);
            if (h !== undefined) {
              s.free(h);
              m.delete(o.g);
            }
          } else {
            s.destroy();
            ref.delete(o.vm);
          }
          const all = [...ref.values()].flatMap((x) => [...x.values()]);
          assert.equal(new Set(all).size, all.length, "host PASIDs are distinct");
          assert.equal(space.inUse, all.length);
          for (const [vm, x] of ref) for (const [g, h] of x) assert.equal(sets.get(vm)?.guestOf(h), g);
        }
        for (const s of [...sets.sets.values()]) s.destroy();
        assert.equal(space.inUse, 0);
      },
    ),
    { seed: 0x5e75, numRuns: 200 },
  );
});
