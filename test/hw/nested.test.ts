/**
 * Nested translation: a stage-1 table built in guest memory (guest-physical addresses throughout)
 * walked with every table access and the output translated by a stage-2 engine.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { PhysMem } from "../../src/mm/phys.js";
import { HwMemory, WindowFrameStore } from "../../src/hw/memory.js";
import { PageTableEngine } from "../../src/hw/pagetable/engine.js";
import {
  ACC_READ,
  ACC_WRITE,
  FAULT_PERMISSION,
  FAULT_TRANSLATION,
  PT_ACCESSED,
  PT_READ,
  PT_WRITE,
  armStage1,
  armStage2,
  vtdFirstStage,
  vtdSecondStage,
  type PageTableFormat,
} from "../../src/hw/pagetable/format.js";

const RW = PT_READ | PT_WRITE | PT_ACCESSED;
const GBASE = 0x100000; // guest RAM at GPA 4 GiB
const RAM = 0x400; // 4 MiB of guest RAM: tables first, data pages above 0x200

function machine(s1fmt: PageTableFormat, s2fmt: PageTableFormat, s2opts = {}) {
  const mem = new HwMemory(new PhysMem());
  const host = mem.phys.allocRun(RAM, 512);
  const s2 = new PageTableEngine(mem, s2fmt, s2opts);
  s2.map(GBASE, host, RAM, RW);
  const guest = new WindowFrameStore(mem, GBASE, host, RAM);
  const s1 = new PageTableEngine(guest, s1fmt);
  s1.setStage2(s2);
  return { mem, host, s2, guest, s1 };
}

test("a guest page table over a stage-2 domain translates GVA -> GPA -> HPA", () => {
  for (const [f1, f2] of [
    [vtdFirstStage(), vtdSecondStage()],
    [armStage1(), armStage2({ inputBits: 40 })],
  ] as const) {
    const { host, s1, s2 } = machine(f1, f2);
    s1.map(0x7fff0000, GBASE + 0x234, 3, RW);
    assert.equal(s1.translate(0x7fff0001, ACC_WRITE), host + 0x235, f1.name);
    assert.equal(s1.leafPages, 1);
    assert.equal(s1.perms & (ACC_READ | ACC_WRITE), ACC_READ | ACC_WRITE);
    const w = s1.walk(0x7fff0001);
    assert.equal(w.ppn, host + 0x235);
    assert.equal(w.steps[0].tablePa, s1.root * 4096, "the root is a guest-physical address");
    for (const s of w.steps) {
      const gpn = Math.floor(s.entryPa / 4096);
      assert.ok(gpn >= GBASE && gpn < GBASE + RAM, "stage-1 tables live in guest RAM");
      assert.equal(s.hostEntryPa, s.entryPa - GBASE * 4096 + host * 4096, "read where stage 2 maps it");
    }
    // Unnested, the engine reads its tables through its own store (the guest's view): GVA -> GPA.
    s1.setStage2(null);
    assert.equal(s1.translate(0x7fff0001, ACC_READ), GBASE + 0x235);
    s1.setStage2(s2);
    assert.equal(s1.translate(0x7fff0001, ACC_READ), host + 0x235);
  }
});

test("a stage-2 fault during a stage-1 table walk is reported as a stage-2 fault on that table", () => {
  const { s1, s2 } = machine(vtdFirstStage(), vtdSecondStage());
  s1.map(0x12345, GBASE + 0x300, 1, RW);
  const pde = s1.walk(0x12345).steps[2]; // the FS-PDE's table
  const tableGpn = pde.tablePa / 4096;
  s2.unmap(tableGpn, 1);
  assert.equal(s1.translate(0x12345, ACC_READ), -1);
  assert.equal(s1.faultStage, 2);
  assert.equal(s1.fault, FAULT_TRANSLATION);
  assert.equal(s1.faultGpn, tableGpn);
  assert.equal(s1.faultLevel, 1, "stage 2's level that faulted (its SS-PTE)");
  const w = s1.walk(0x12345);
  assert.equal(w.faultStage, 2);
  assert.equal(w.steps.length, 2, "the walk stopped before reading the unreachable table");
});

test("a stage-2 fault on the output address is a stage-2 fault on that guest page", () => {
  const { s1 } = machine(armStage1(), armStage2());
  s1.map(0x10, GBASE + RAM + 5, 1, RW); // beyond guest RAM
  assert.equal(s1.translate(0x10, ACC_READ), -1);
  assert.equal(s1.faultStage, 2);
  assert.equal(s1.faultGpn, GBASE + RAM + 5);
});

test("nested permissions are the intersection of both stages", () => {
  const { host, s1, s2 } = machine(vtdFirstStage(), vtdSecondStage());
  s1.map(0x10, GBASE + 0x300, 1, RW);
  s2.unmap(GBASE + 0x300, 1);
  s2.map(GBASE + 0x300, host + 0x300, 1, PT_READ);
  assert.equal(s1.translate(0x10, ACC_READ), host + 0x300);
  assert.equal(s1.perms & ACC_WRITE, 0);
  assert.equal(s1.translate(0x10, ACC_WRITE), -1);
  assert.equal(s1.faultStage, 2);
  assert.equal(s1.fault, FAULT_PERMISSION);
  s1.map(0x11, GBASE + 0x301, 1, PT_READ | PT_ACCESSED);
  assert.equal(s1.translate(0x11, ACC_WRITE), -1);
  assert.equal(s1.faultStage, 1, "stage 1 refuses first");
});

test("the hardware's accessed/dirty writes to guest tables go through stage 2 and need its write permission", () => {
  const { mem, host, s1, s2 } = machine(vtdFirstStage(), vtdSecondStage());
  s1.map(0x10, GBASE + 0x300, 1, PT_READ | PT_WRITE); // A and D clear
  const pte = s1.walk(0x10).steps[3];
  const ptGpn = pte.tablePa / 4096;
  s2.unmap(ptGpn, 1);
  s2.map(ptGpn, host + (ptGpn - GBASE), 1, PT_READ);
  assert.equal(s1.translate(0x10, ACC_READ), -1, "setting A needs a write");
  assert.equal(s1.faultStage, 2);
  assert.equal(s1.fault, FAULT_PERMISSION);
  assert.equal(s1.faultGpn, ptGpn);
  s2.unmap(ptGpn, 1);
  s2.map(ptGpn, host + (ptGpn - GBASE), 1, RW);
  assert.equal(s1.translate(0x10, ACC_WRITE), host + 0x300);
  assert.equal(mem.read32(pte.hostEntryPa) & 0x60, 0x60, "A and D set in guest memory");
});

test("a nested translation's leaf size is the smaller of the two stages' leaves", () => {
  const { s1 } = machine(vtdFirstStage(), vtdSecondStage({ largePages2M: false, largePages1G: false }));
  s1.map(0x200, GBASE + 0x200, 0x200, RW); // a 2 MiB stage-1 leaf over 4 KiB stage-2 leaves
  assert.equal(s1.walk(0x200).leafLevel, 2);
  s1.translate(0x2ff, ACC_READ);
  assert.equal(s1.leafPages, 1);
  const mem = new HwMemory(new PhysMem());
  const s2 = new PageTableEngine(mem, vtdSecondStage());
  const host = mem.phys.allocRun(0x400, 0x200);
  s2.map(GBASE, host, 0x400, RW);
  const s1b = new PageTableEngine(new WindowFrameStore(mem, GBASE, host, 0x400), vtdFirstStage());
  s1b.setStage2(s2);
  s1b.map(0x200, GBASE + 0x200, 0x200, RW);
  assert.equal(s1b.translate(0x2ff, ACC_READ), host + 0x2ff);
  assert.equal(s1b.leafPages, 0x200, "both stages 2 MiB");
});

test("a nested translation's permissions and leaf size stay its own when stage 2 translates something else afterwards", () => {
  const mem = new HwMemory(new PhysMem());
  const host = mem.phys.allocRun(0x800, 0x200);
  const s2 = new PageTableEngine(mem, vtdSecondStage());
  s2.map(GBASE, host, 0x1ff, RW); // the tables' pages: 4 KiB leaves (not a whole 2 MiB)
  s2.map(GBASE + 0x1ff, host + 0x1ff, 1, RW);
  s2.map(GBASE + 0x200, host + 0x200, 0x200, PT_READ | PT_ACCESSED); // read-only
  s2.map(GBASE + 0x400, host + 0x400, 0x200, RW); // a 2 MiB leaf
  const s1 = new PageTableEngine(new WindowFrameStore(mem, GBASE, host, 0x800), vtdFirstStage());
  s1.setStage2(s2);
  s1.map(0x1000, GBASE + 0x200, 0x200, RW); // 2 MiB at stage 1 over read-only 2 MiB at stage 2
  assert.equal(s1.translate(0x1005, ACC_READ), host + 0x205);
  const perms = s1.perms;
  const pages = s1.leafPages;
  assert.equal(perms & ACC_WRITE, 0, "stage 2 is read-only there");
  assert.equal(pages, 0x200);
  // Stage 2 now translates a writable 4 KiB page: the nested result must not change.
  assert.equal(s2.translate(GBASE + 0x10, ACC_WRITE), host + 0x10);
  assert.equal(s2.leafPages, 1);
  assert.equal(s1.perms, perms);
  assert.equal(s1.leafPages, pages);
  // And the same through walk(), which computes both eagerly.
  const w = s1.walk(0x1005, ACC_READ);
  assert.deepEqual([w.perms, w.leafPages], [perms, pages]);
});

test("a nested walk for display changes neither stage", () => {
  const { mem, s1, s2 } = machine(vtdFirstStage(), vtdSecondStage(), { hwAccessed: true, hwDirty: true });
  s1.map(0x10, GBASE + 0x300, 1, PT_READ | PT_WRITE);
  const s2leaf = (): number => {
    const st = s2.walk(GBASE + 0x300).steps;
    return st[st.length - 1].entryPa;
  };
  const before = mem.phys.read(s2leaf(), 8);
  assert.equal(before[1] & 0x2, 0, "stage-2 leaf D clear");
  const w = s1.walk(0x10, ACC_WRITE);
  assert.equal(w.ppn >= 0, true);
  assert.equal(s1.walk(0x10).steps[3].lo & 0x60, 0, "stage-1 A/D untouched");
  assert.deepEqual(mem.phys.read(s2leaf(), 8), before, "stage-2 D untouched");
  s1.translate(0x10, ACC_WRITE);
  assert.equal(s1.walk(0x10).steps[3].lo & 0x60, 0x60);
  assert.equal(mem.phys.read(s2leaf(), 8)[1] & 0x2, 0x2, "stage 2 with SSADE: D set by the write");
});

test("random nested mappings translate as the composition of both references", () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ v: fc.integer({ min: 0, max: 63 }), g: fc.integer({ min: 0x200, max: RAM + 8 }) }), { maxLength: 30 }),
      fc.array(fc.integer({ min: 0, max: RAM - 1 }), { maxLength: 6 }),
      (maps, holes) => {
        const { host, s1, s2 } = machine(armStage1(), armStage2({ inputBits: 40 }));
        const ref1 = new Map<number, number>();
        for (const m of maps) {
          if (ref1.has(m.v)) continue;
          s1.map(0x5000 + m.v, GBASE + m.g, 1, RW);
          ref1.set(m.v, GBASE + m.g);
        }
        const s2ref = new Set<number>();
        for (let g = 0; g < RAM; g++) s2ref.add(GBASE + g);
        for (const h of holes) {
          s2.unmap(GBASE + h, 1);
          s2ref.delete(GBASE + h);
        }
        for (let v = 0; v < 64; v++) {
          const got = s1.translate(0x5000 + v, ACC_READ);
          const walked = s1.walk(0x5000 + v, ACC_READ);
          assert.equal(walked.ppn, got);
          const gpn = ref1.get(v);
          // Reachable iff stage 2 maps every stage-1 table on the path and the output (the path
          // as the guest sees it: the same tables walked without stage 2).
          s1.setStage2(null);
          const path = s1.walk(0x5000 + v);
          s1.setStage2(s2);
          const tablesOk = path.steps.every((s) => s2ref.has(Math.floor(s.entryPa / 4096)));
          if (gpn === undefined) assert.equal(got, -1);
          else if (!tablesOk || !s2ref.has(gpn)) {
            assert.equal(got, -1);
            assert.equal(s1.faultStage, 2);
          } else assert.equal(got, host + (gpn - GBASE));
        }
      },
    ),
    { numRuns: 60 },
  );
});
