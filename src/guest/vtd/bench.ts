/**
 * Benchmarks of guest SVA over nested VT-d, for bench/run.ts. The model reads no clock: the caller
 * passes one (`() => performance.now()`, milliseconds).
 *
 *   guest_sva_dma_mops:       guestSvaDmaMops(now)        4 KiB DMAs per second (millions) with a
 *                                                         guest PASID through a warm nested setup
 *                             guestSvaDmaFigures(now, n)  the same over n pages, and the copies alone
 *   guest_fault_roundtrip_us: guestFaultRoundtripUs(now)  I/O page fault → guest PRQ → guest
 *                                                         response → completed DMA (µs)
 */
import { assert } from "../../errno.js";
import type { DmaPort, DmaRequest, DmaResult } from "../../hw/dma.js";
import type { DeviceBuffer } from "../../mm/data-memory.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import { HostMachine } from "../machine.js";
import { GuestProcess } from "../process.js";
import { Vm } from "../vm.js";
import { GuestVtdDriver } from "./guest-driver.js";
import { VmmVtd, type VtdGuestDevice } from "./vmm.js";

export type Clock = () => number;

/** xorshift32: the same samples every run. */
function rng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

interface Rig {
  m: HostMachine;
  vm: Vm;
  vmm: VmmVtd;
  gd: VtdGuestDevice;
  drv: GuestVtdDriver;
  proc: GuestProcess;
  pasid: number;
}

function rig(pages: number): Rig {
  const m = new HostMachine({ iommu: "vtd" });
  const vm = new Vm(m, { ramBytes: 64 << 20, name: "bench" });
  const a = vm.assign(m.addDevice({ name: "0000:03:00.0", sid: 0x0300 }));
  const vmm = new VmmVtd(vm);
  const gd = vmm.attachGuestDevice(a, 0x0010);
  const drv = new GuestVtdDriver(vm, vmm.vvtd);
  drv.boot();
  drv.addDevice(gd.sid);
  const proc = new GuestProcess(vm, "x86-4level");
  if (pages > 0) proc.map(0x10000, pages);
  const pasid = drv.svaBind(proc, gd.sid);
  return { m, vm, vmm, gd, drv, proc, pasid };
}

function median(xs: number[]): number {
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)];
}

/**
 * One timed pass: a DMA at each of iovas; returns the bytes moved. A function of its own, compiled
 * once and kept (a round measured inside the caller's long loop ran partly in code V8 was still
 * replacing on the stack: 6 M/s against 9-10 here).
 */
function dmaPass(port: DmaPort, req: DmaRequest, iovas: Float64Array): number {
  let sink = 0;
  for (let i = 0; i < iovas.length; i++) {
    req.iova = iovas[i];
    sink += port.dma(req).bytes;
  }
  return sink;
}

/** The same DMAs as a device model's hot loop makes them: dmaBuffered from its own buffer. */
function bufferedPass(port: DmaPort, sid: number, pasid: number, buf: DeviceBuffer, iovas: Float64Array): number {
  let sink = 0;
  for (let i = 0; i < iovas.length; i++) sink += port.dmaBuffered(sid, pasid, iovas[i], PAGE_SIZE, true, buf).bytes;
  return sink;
}

/** Uint8Array.prototype.set, called as the DMA path calls it (PhysMem.writeInFrame). */
const U8_SET = Uint8Array.prototype.set;

/**
 * The same copies without an IOMMU: buf into the frame each of iovas' DMAs lands in (frames found
 * beforehand), so the floor the DMA figure sits on. The copy is made as the DMA path makes it
 * (`frames[i].set(buf)` costs a property lookup more per call).
 */
function copyPass(frames: Uint8Array[], buf: Uint8Array): number {
  let sink = 0;
  for (let i = 0; i < frames.length; i++) {
    U8_SET.call(frames[i], buf);
    sink += buf.length;
  }
  return sink;
}

/** What guestSvaDmaFigures measures, M/s: DMAs through the IOMMU, and the bare copies alone. */
export interface GuestSvaDmaFigures {
  /** DmaPort.dmaBuffered from a device buffer (PhysMem.dmaBuffer). */
  dmaMops: number;
  /** DmaPort.dma with a request object and an ordinary array. */
  reqMops: number;
  copyFloorMops: number;
}

/**
 * Millions of 4 KiB DMA writes per second with a PASID, at random pages of a bound guest process
 * (`pages` of them, each translation hitting the host's 1024-entry IOTLB once warm), and the same
 * copies with no IOMMU at all (the floor: a 4 KiB copy into a working set larger than the CPU's
 * L2 costs about as much as the goal allows a DMA). The device does its DMAs as a device model's
 * hot loop would: from a buffer of its own (PhysMem.dmaBuffer) through DmaPort.dmaBuffered, the
 * host PASID looked up once (ENQCMD's translation is per work queue, not per DMA); `reqMops` times
 * the same DMAs through DmaPort.dma with one request object reused and an ordinary array. Medians
 * of rounds, the three alternating.
 */
export function guestSvaDmaFigures(now: Clock, pages = 512, rounds = 7): GuestSvaDmaFigures {
  const r = rig(pages);
  const dev = r.gd.assigned.dev;
  const port = dev.port;
  assert(port !== null, "the device has an IOMMU port");
  const hpasid = r.vm.pasids.hostOf(r.pasid);
  const SAMPLES = 1 << 14;
  const next = rng(0x5eed);
  // addresses as numbers (DmaRequest takes either): no BigInt on the DMA path
  const iovas = new Float64Array(SAMPLES);
  for (let i = 0; i < SAMPLES; i++) iovas[i] = (0x10000 + Math.floor(next() * pages)) * PAGE_SIZE;
  const buf = new Uint8Array(PAGE_SIZE).fill(0x5a);
  const req: DmaRequest = { sid: dev.sid, pasid: hpasid, iova: 0, length: PAGE_SIZE, write: true, data: buf };
  const phys = r.m.host.phys;
  const dbuf = phys.dmaBuffer(PAGE_SIZE);
  dbuf.bytes.fill(0x5a);
  // warm: every page once (IOTLB filled, dirty/accessed state settled)
  for (let p = 0; p < pages; p++) {
    req.iova = (0x10000 + p) * PAGE_SIZE;
    assert(port.dma(req).status === "done", "bench: warm-up DMA");
  }
  // the frames the DMAs write, as byte views of the same memory
  const frames = Array.from(iovas, (iova) => {
    const w = phys.frameU32(port.translatePage(dev.sid, hpasid, iova / PAGE_SIZE, true));
    return new Uint8Array(w.buffer, w.byteOffset, PAGE_SIZE);
  });
  const dma: number[] = [];
  const viaReq: number[] = [];
  const copy: number[] = [];
  let sink = 0;
  for (let k = 0; k < rounds + 1; k++) {
    let t0 = now();
    sink += bufferedPass(port, dev.sid, hpasid, dbuf, iovas);
    const ms = now() - t0;
    t0 = now();
    sink += dmaPass(port, req, iovas);
    const rms = now() - t0;
    t0 = now();
    sink += copyPass(frames, buf);
    const cms = now() - t0;
    if (k > 0) {
      dma.push(SAMPLES / ms / 1000);
      viaReq.push(SAMPLES / rms / 1000);
      copy.push(SAMPLES / cms / 1000);
    }
  }
  assert(sink === 3 * PAGE_SIZE * SAMPLES * (rounds + 1), "bench: every DMA moved 4 KiB");
  r.vmm.destroy();
  r.vm.destroy();
  return { dmaMops: median(dma), reqMops: median(viaReq), copyFloorMops: median(copy) };
}

/** guest_sva_dma_mops: guestSvaDmaFigures's DMA figure at 512 pages. */
export function guestSvaDmaMops(now: Clock, rounds = 7): number {
  return guestSvaDmaFigures(now, 512, rounds).dmaMops;
}

/**
 * Microseconds from a device DMA that faults on a page the guest has not populated to its
 * completion: host page request → host PRQ thread → fault fd → the VMM injects a page request
 * into the guest's queue → the guest's PRQ handler maps the page and queues a page group response
 * → the VMM writes the response to the fault fd → the host retries the DMA. Median per fault.
 */
export function guestFaultRoundtripUs(now: Clock, rounds = 5): number {
  const PER_ROUND = 512;
  // warm-up: the round trip crosses ~40 functions (unit, host driver, iommufd fault queue, VMM,
  // guest driver, guest page tables); V8 has them all optimized only after a few thousand (with
  // 1024 warm faults the median was 40-46 µs, with 4096 21-29 µs, with 8192 no better)
  const WARM = 4096;
  const r = rig(0);
  const LAZY = 0x20000;
  r.drv.addLazyRegion(r.proc, LAZY, WARM + PER_ROUND * rounds);
  const data = new Uint8Array(64);
  let done = 0;
  const onComplete = (x: DmaResult): void => {
    if (x.status === "done") done++;
  };
  let page = LAZY;
  const fault = (): void => void r.vmm.dma(r.gd, { pasid: r.pasid, iova: BigInt(page++ * PAGE_SIZE), length: 64, write: true, data, onComplete });
  for (let i = 0; i < WARM; i++) fault();
  const per: number[] = [];
  for (let k = 0; k < rounds; k++) {
    const t0 = now();
    for (let i = 0; i < PER_ROUND; i++) fault();
    per.push(((now() - t0) * 1000) / PER_ROUND);
  }
  assert(done === WARM + PER_ROUND * rounds, "bench: every faulting DMA completed");
  r.vmm.destroy();
  r.vm.destroy();
  return median(per);
}
