/**
 * `npm start`: a guided tour of the model. Creates a context, an IOAS and a mock device with an
 * x86-style MSI window, maps process memory, and prints the IOVA layout, page pins, the mock
 * domain's page table, an in-kernel access's reads and writes, and the unmap, as a report; then
 * the same on the VT-d hardware model (a DMA and its page walk) and a guest doing SVA.
 */
import * as S from "../index.js";
import { Device, ResvType } from "../iommu/device.js";
import { mockIommu, MockPagingDomain } from "../iommu/drivers/mock.js";
import type { IommufdDevice } from "../iommufd/device.js";
import type { HwptPaging } from "../iommufd/hwpt.js";
import { runScenario } from "../guest/scenario.js";
import { vtdSva } from "../guest/vtd/scenarios.js";

const hex = (x: bigint | number): string => "0x" + x.toString(16);
const RW = S.IOMMU_IOAS_MAP_READABLE | S.IOMMU_IOAS_MAP_WRITEABLE;
const out: string[] = [];
const say = (s = ""): void => void out.push(s);
const step = (n: number, s: string): void => say(`\n${n}. ${s}`);

const host = new S.Host();
const proc = host.spawn({ uid: 1000, rlimitMemlock: 64 * 1024 * 1024 });
const ctx = S.openIommufd(host, proc);
say("softiommu walkthrough — the iommufd object model on a simulated host");
say(`process pid ${proc.pid}, uid ${proc.user.uid}, RLIMIT_MEMLOCK ${proc.rlimitMemlock / 1024 / 1024} MiB`);

step(1, "open /dev/iommu and allocate an IOAS");
const ioasId = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
say(`   IOMMU_IOAS_ALLOC -> ioas_id ${ioasId}`);

const ranges = (): string => {
  const arg = proc.mmap(4096, { shared: true });
  const r = ctx.ioasIovaRanges({ ioas_id: ioasId, num_iovas: 8, allowed_iovas: BigInt(arg) });
  const bytes = proc.read(arg, r.num_iovas * 16);
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  const parts: string[] = [];
  for (let i = 0; i < r.num_iovas; i++) parts.push(`[${hex(dv.getBigUint64(i * 16, true))}, ${hex(dv.getBigUint64(i * 16 + 8, true))}]`);
  proc.munmap(arg, 4096);
  return `${parts.join(" ")}  alignment ${hex(r.out_iova_alignment as bigint)}`;
};
say(`   usable IOVA: ${ranges()}`);

step(2, "bind a mock device whose platform reports an MSI window 0xfee00000-0xfeefffff, attach it");
const dev = new Device({ name: "mock-pci-0000:00:01.0", driver: mockIommu, resv: [{ start: 0xfee00000n, length: 0x100000n, type: ResvType.MSI }] });
const idev: IommufdDevice = ctx.bindDevice(dev);
const hwptId = idev.attach(ioasId);
const hwpt = ctx.getHwptPaging(hwptId) as HwptPaging;
say(`   device ${dev.name} -> dev_id ${idev.id}; attach to the IOAS created auto HWPT ${hwptId}`);
say(`   usable IOVA now: ${ranges()}`);
say("   (the mock domain's aperture is 0x1000000-0x7fffffff; the MSI window lies outside it)");

step(3, "map 64 KiB of the process's memory with the kernel choosing the IOVA");
const len = 64 * 1024;
const buf = proc.mmap(len, { shared: true });
proc.write(buf, new TextEncoder().encode("hello from user space"));
const m = ctx.ioasMap({ flags: RW, ioas_id: ioasId, user_va: BigInt(buf), length: BigInt(len), iova: 0n });
say(`   IOMMU_IOAS_MAP user_va ${hex(buf)} length ${hex(len)} -> iova ${hex(m.iova)}`);
say(`   pins: ${proc.mm.pinnedVm} pages pinned, user locked_vm ${proc.user.lockedVm} pages (charged to uid ${proc.user.uid})`);
const firstPfn = proc.mm.pageAt(buf);
say(`   page of user_va ${hex(buf)} is pfn ${hex(firstPfn)} with pin count ${host.phys.pinCount(firstPfn)}`);

step(4, "the mock domain's page table (2 KiB IO pages on 4 KiB CPU pages)");
const d = hwpt.domain as MockPagingDomain;
d.ptes.forEach(0, Number.MAX_SAFE_INTEGER, (first, n, pa, tag) => {
  say(`   IOVA ${hex(first * 2048)}-${hex((first + n) * 2048 - 1)} -> PA ${hex(pa)}-${hex(pa + n * 2048 - 1)}  ${tag & 1 ? "R" : "-"}${tag & 2 ? "W" : "-"}  (${n} IOPTEs)`);
});

step(5, "an in-kernel access (the emulated-mdev path) reads and writes through the IOAS");
const access = ctx.createAccess({ needsPinPages: true, unmap: () => undefined });
access.attach(ioasId);
const got = new Uint8Array(21);
access.rw(m.iova, got, 0);
say(`   access read at iova ${hex(m.iova)}: "${new TextDecoder().decode(got)}"`);
access.rw(m.iova + 0x1000n, new TextEncoder().encode("written by the device"), 1);
say(`   access wrote at iova ${hex(m.iova + 0x1000n)}; the process now reads "${new TextDecoder().decode(proc.read(buf + 0x1000, 21))}"`);
ctx.destroyAccess(access);

step(6, "error paths answer with the kernel's errno and change nothing");
for (const [what, fn] of [
  ["unmap half an area", () => ctx.ioasUnmap({ ioas_id: ioasId, iova: m.iova, length: 0x1000n })],
  ["map over an existing mapping", () => ctx.ioasMap({ flags: RW | S.IOMMU_IOAS_MAP_FIXED_IOVA, ioas_id: ioasId, user_va: BigInt(buf), length: 0x1000n, iova: m.iova })],
  ["map inside the reserved MSI window", () => ctx.ioasMap({ flags: RW | S.IOMMU_IOAS_MAP_FIXED_IOVA, ioas_id: ioasId, user_va: BigInt(buf), length: 0x1000n, iova: 0xfee00000n })],
  ["destroy the IOAS while a device uses it", () => ctx.destroy({ id: ioasId })],
  ["destroy an unknown id", () => ctx.destroy({ id: 99 })],
] as const) {
  try {
    fn();
    say(`   ${what}: succeeded (unexpected)`);
  } catch (e) {
    say(`   ${what}: ${(e as S.IommuError).code}`);
  }
}

step(7, "unmap, detach, close");
const u = ctx.ioasUnmap({ ioas_id: ioasId, iova: 0n, length: (1n << 64n) - 1n });
say(`   IOMMU_IOAS_UNMAP all -> ${hex(u.length)} bytes; pins now ${proc.mm.pinnedVm}, locked_vm ${proc.user.lockedVm}`);
idev.detach();
say(`   detached: auto HWPT ${hwptId} ${ctx.getObject(hwptId) ? "still exists" : "was freed with its last device"}`);
ctx.unbindDevice(idev);
ctx.close();
say(`   context closed: ${ctx.objects.size} objects left, ${host.phys.framesInUse} frames still in use (the process's own memory)`);

step(8, "the same on VT-d hardware: a device's DMA walks a second-stage page table in memory");
{
  const h = new S.Host();
  const p = h.spawn({ uid: 1000, rlimitMemlock: 64 * 1024 * 1024 });
  const c = S.openIommufd(h, p);
  const ioas = c.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const unit = new S.hw.VtdUnit(h.phys);
  const drv = new S.VtdDriver(unit);
  const vdev = drv.probeDevice({ name: "0000:03:00.0", sid: 0x0300 });
  const videv = c.bindDevice(vdev);
  videv.attach(ioas);
  const b = p.mmap(0x4000);
  p.write(b, new TextEncoder().encode("bytes the device reads through VT-d"));
  c.ioasMap({ flags: RW | S.IOMMU_IOAS_MAP_FIXED_IOVA, ioas_id: ioas, user_va: BigInt(b), length: 0x4000n, iova: 0x40000000n });
  const data = new Uint8Array(35);
  const r = vdev.dma({ iova: 0x40000000n, length: 35, write: false, data });
  say(`   VT-d unit, intel-iommu driver; ${vdev.name} (source-id 0x300) bound as dev_id ${videv.id}, attached to IOAS ${ioas}`);
  say(`   DMA read at iova 0x40000000: ${r.status}, "${new TextDecoder().decode(data)}"`);
  const dom = c.getHwptPaging(videv.igroup.hwpt?.id ?? 0).domain as S.VtdPagingDomain;
  say(`   the walk the hardware did (a ${dom.engine.format.levels.length}-level second-stage table):`);
  for (const st of dom.engine.walk(0x40000).steps) say(`     ${st.name.padEnd(6)} entry at ${hex(st.entryPa)} = ${hex(st.hi * 2 ** 32 + st.lo)} (${st.kind})`);
  c.ioasUnmap({ ioas_id: ioas, iova: 0x40000000n, length: 0x4000n });
  const after = vdev.dma({ iova: 0x40000000n, length: 4, write: false, data: new Uint8Array(4) });
  say(`   after IOAS_UNMAP (the driver flushed the IOTLB): ${after.status}, ${after.fault?.kind} fault, reason ${hex(after.fault?.code ?? 0)}`);
}

step(9, "a guest: SVA over an emulated VT-d (softiommu scenario vtd-sva for the whole report)");
{
  const rep = runScenario(vtdSva);
  for (const st of rep.steps) say(`   - ${st.title}`);
  say(`   ${rep.ok ? "scenario OK" : `scenario FAILED: ${rep.error}`}`);
}

console.log(out.join("\n"));
