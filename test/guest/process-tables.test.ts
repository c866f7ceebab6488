/**
 * A guest process's page table as the guest's CPU (and, with guest SVA, the device) finds it in
 * guest RAM, entry by entry, decoded here by hand from the architecture manuals (Intel SDM vol. 3
 * §4.5 IA-32e paging, 4- and 5-level; Arm ARM D8.3 VMSAv8-64 stage-1 descriptors, 4 KiB granule):
 * the walk below reads guest RAM directly, starting at CR3 / TTBR0, without the model's walker.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { HostMachine } from "../../src/guest/machine.js";
import { Vm } from "../../src/guest/vm.js";
import { GuestProcess, type GuestPaging } from "../../src/guest/process.js";
import { GUEST_MAIR_EL1 } from "../../src/guest/smmuv3/guest-driver.js";

const PAGE = 4096;

/** The 64-bit entry at gpa as [hi, lo] words. */
function entry(vm: Vm, gpa: number): [number, number] {
  const b = vm.ram.read(gpa, 8);
  const dv = new DataView(b.buffer, b.byteOffset, 8);
  return [dv.getUint32(4, true), dv.getUint32(0, true)];
}

/** Bits 51:12 of an entry: the address it holds. */
const addrOf = ([hi, lo]: [number, number]): number => (hi & 0xfffff) * 2 ** 32 + ((lo & 0xfffff000) >>> 0);

/** Walk from the root: the entries on the path of gva, top first. */
function walk(vm: Vm, root: number, gva: number, levels: number): [number, number][] {
  const out: [number, number][] = [];
  let table = root;
  for (let l = levels - 1; l >= 0; l--) {
    const idx = Math.floor(gva / 2 ** (12 + 9 * l)) % 512;
    const e = entry(vm, table + idx * 8);
    out.push(e);
    table = addrOf(e);
  }
  return out;
}

function setup(paging: GuestPaging): { vm: Vm; proc: GuestProcess } {
  const m = new HostMachine({ iommu: paging === "arm64" ? "smmuv3" : "vtd" });
  const vm = new Vm(m, { ramBytes: 8 << 20 });
  return { vm, proc: new GuestProcess(vm, paging) };
}

for (const [paging, levels] of [["x86-4level", 4], ["x86-5level", 5]] as const) {
  test(`${paging}: every table entry is P|R/W|U/S with the next table's address (PS 0, XD 0); the page's PTE is P|R/W|U/S|A|D|XD with the guest page`, () => {
    const { vm, proc } = setup(paging);
    const gva = paging === "x86-5level" ? 0x0123_4567_8000 * 2 ** 8 : 0x7f12_3456_7000; // above 2^48 for LA57
    proc.map(gva / PAGE, 1);
    const path = walk(vm, proc.rootGpa, gva, levels);
    assert.equal(path.length, levels);
    for (let i = 0; i < levels - 1; i++) {
      const [hi, lo] = path[i];
      assert.equal(lo & 0x7, 0x7, `level ${levels - i}: P (0), R/W (1), U/S (2)`);
      assert.equal(lo & 0x80, 0, `level ${levels - i}: PS (7) clear: a table`);
      assert.equal(hi & 0x80000000, 0, `level ${levels - i}: XD (63) clear: execution is decided at the leaf`);
      assert.equal(hi & 0x7ff00000, 0, `level ${levels - i}: bits 62:52 clear`);
      assert.ok(addrOf(path[i]) > 0 && addrOf(path[i]) % PAGE === 0, "the next table's guest-physical address");
    }
    const [hi, lo] = path[levels - 1];
    const g = proc.guestPage(gva / PAGE);
    assert.ok(g > 0);
    // P 0, R/W 1, U/S 2, PWT 3 = 0, PCD 4 = 0, A 5, D 6, PAT 7 = 0, G 8 = 0; address 51:12; XD 63
    assert.equal(lo & 0xfff, 0x067);
    assert.equal(addrOf(path[levels - 1]), g * PAGE);
    assert.equal(hi >>> 31, 1, "XD: a data page");
    // read-only: R/W clear
    proc.map(gva / PAGE + 1, 1, false);
    const ro = walk(vm, proc.rootGpa, gva + PAGE, levels)[levels - 1];
    assert.equal(ro[1] & 0xfff, 0x025, "P|U/S|A, no R/W, no D");
  });
}

test("arm64: table descriptors are 0b11 with the next table's address and nothing else; the page is 0b11, AttrIndx MT_NORMAL (0xff in the MAIR the SVA CD carries), AP 0b01 (EL0 RW), SH inner, AF, nG, PXN|UXN", () => {
  const { vm, proc } = setup("arm64");
  const gva = 0x7f_1234_5000;
  proc.map(gva / PAGE, 1);
  const path = walk(vm, proc.rootGpa, gva, 4);
  for (let i = 0; i < 3; i++) {
    const [hi, lo] = path[i];
    assert.equal(lo & 0xfff, 0x3, `L${i}: table descriptor, no attributes`);
    assert.equal(hi & 0xfff00000, 0, `L${i}: no upper attributes (63:52)`);
    assert.ok(addrOf(path[i]) > 0 && addrOf(path[i]) % PAGE === 0, `L${i}: the next table's address`);
  }
  const [hi, lo] = path[3];
  // 1:0 = 0b11 page, AttrIndx 4:2 = 0 (MT_NORMAL), NS 5 = 0, AP 7:6 = 0b01, SH 9:8 = 0b11, AF 10, nG 11
  assert.equal(lo & 0xfff, 0x3 | (0 << 2) | (0b01 << 6) | (0b11 << 8) | (1 << 10) | (1 << 11));
  // the MAIR byte that AttrIndx selects is Normal, inner and outer write-back (0xff)
  const attr = (lo >>> 2) & 7;
  const mair = attr < 4 ? (GUEST_MAIR_EL1.lo >>> (8 * attr)) & 0xff : (GUEST_MAIR_EL1.hi >>> (8 * (attr - 4))) & 0xff;
  assert.equal(mair, 0xff);
  assert.equal(addrOf(path[3]), proc.guestPage(gva / PAGE) * PAGE);
  // PXN 53, UXN 54 (bits 21 and 22 of the high word); DBM 51, Contiguous 52 clear
  assert.equal(hi >>> 20, 0b110);
  // read-only: AP 0b11 (EL0 RO)
  proc.map(gva / PAGE + 1, 1, false);
  const ro = walk(vm, proc.rootGpa, gva + PAGE, 4)[3];
  assert.equal((ro[1] >>> 6) & 3, 0b11);
});
