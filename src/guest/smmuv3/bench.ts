/**
 * Benchmarks of the SMMUv3 guest path, for bench/run.ts (the model reads no clock: the caller
 * passes one, in milliseconds):
 *
 *   guest_sva_dma_mops         guestSvaDmaMops(now)         4 KiB DMAs with an SSID through a warm
 *                                                            nested setup (guest CD and stage 1 in guest
 *                                                            RAM, stage 2 from iommufd), every one a host
 *                                                            TLB hit, counted as the device's port
 *                                                            translates them (DmaPort.translatePage, one
 *                                                            per 4 KiB page, reads and writes mixed):
 *                                                            millions per second
 *   guest_sva_dma_copy_mops    guestSvaDmaCopyMops(now)     the same DMAs through Device.dma() with the
 *                                                            4 KiB moved out of simulated memory
 *   guest_fault_roundtrip_us   guestFaultRoundtripUs(now)   one stalled DMA → fault fd → guest event
 *                                                            queue → guest faults the page in →
 *                                                            CMD_RESUME → fault fd response → RESUME →
 *                                                            completion: the median, µs
 */
import { assert } from "../../errno.js";
import type { DmaResult } from "../../hw/dma.js";
import { PAGE_SIZE } from "../../mm/phys.js";
import type { Device } from "../../iommu/device.js";
import { GuestProcess } from "../process.js";
import { bootSmmuGuest } from "./setup.js";

/** Pages the DMA loop cycles through: 128 distinct 4 KiB translations, under the host's 256-entry TLB. */
const PAGES = 128;

function warmSetup() {
  const g = bootSmmuGuest({ dev: { canStall: false }, ramBytes: 16 << 20, vmm: { trace: false } });
  const proc = new GuestProcess(g.vm, "arm64");
  const base = 0x10000;
  proc.map(base, PAGES);
  const bond = g.guest.svaBind(g.vsid, proc);
  const data = new Uint8Array(PAGE_SIZE);
  // warm: every page walked once (guest stage 1 over stage 2), then TLB hits only
  for (let i = 0; i < PAGES; i++) {
    const r = g.dev.dma({ iova: BigInt((base + i) * PAGE_SIZE), length: PAGE_SIZE, write: (i & 1) === 0, data, pasid: bond.ssid });
    assert(r.status === "done", "warm-up DMA");
  }
  const walks = (): number => g.machine.smmu?.unit.stats.walks ?? 0;
  const done = (): void => {
    g.vmm.destroy();
    g.vm.destroy();
  };
  return { g, base, ssid: bond.ssid, data, walks, done };
}

export function guestSvaDmaMops(now: () => number, iterations = 1 << 23): number {
  const s = warmSetup();
  const port = s.g.dev.port;
  assert(port !== null, "the device has a port");
  const sid = s.g.dev.sid;
  const vpns = new Float64Array(1024);
  for (let i = 0; i < vpns.length; i++) vpns[i] = s.base + ((i * 37) % PAGES);
  const walks0 = s.walks();
  let bad = 0;
  const t0 = now();
  for (let i = 0; i < iterations; i++) if (port.translatePage(sid, s.ssid, vpns[i & 1023], (i & 8) !== 0) < 0) bad++;
  const ms = now() - t0;
  assert(bad === 0, "a translation of the warm loop failed");
  assert(s.walks() === walks0, "the warm loop walked a table: not all TLB hits");
  s.done();
  return iterations / ms / 1000;
}

/** One pass of guestSvaDmaCopyMops: `n` DMAs over iovas; returns how many did not complete. */
function copyPass(dev: Device, iovas: Float64Array, data: Uint8Array, ssid: number, n: number): number {
  let bad = 0;
  for (let i = 0; i < n; i++) {
    if (dev.dma({ iova: iovas[i & (iovas.length - 1)], length: PAGE_SIZE, write: (i & 8) !== 0, data, pasid: ssid }).status !== "done") bad++;
  }
  return bad;
}

/**
 * Millions of 4 KiB DMAs per second through the device (data moved), at TLB-hitting pages: a
 * warm-up pass, then the median of five timed passes (each pass a function call of its own, so
 * that V8 has it compiled before the timing starts).
 */
export function guestSvaDmaCopyMops(now: () => number, iterations = 1 << 17): number {
  const s = warmSetup();
  const dev = s.g.dev;
  // addresses as numbers (DmaRequest takes either): no BigInt on the DMA path
  const iovas = new Float64Array(PAGES);
  for (let i = 0; i < PAGES; i++) iovas[i] = (s.base + ((i * 37) % PAGES)) * PAGE_SIZE;
  const walks0 = s.walks();
  const pass = iterations >> 3;
  let bad = copyPass(dev, iovas, s.data, s.ssid, pass);
  const per: number[] = [];
  for (let k = 0; k < 5; k++) {
    const t0 = now();
    bad += copyPass(dev, iovas, s.data, s.ssid, pass);
    per.push(pass / (now() - t0) / 1000);
  }
  assert(bad === 0, "a DMA of the warm loop failed");
  assert(s.walks() === walks0, "the warm loop walked a table: not all TLB hits");
  s.done();
  per.sort((a, b) => a - b);
  return per[2];
}

export function guestFaultRoundtripUs(now: () => number, iterations = 2000): number {
  const g = bootSmmuGuest({ dev: { canStall: true }, ramBytes: 64 << 20, vmm: { trace: false } });
  const proc = new GuestProcess(g.vm, "arm64");
  const base = 0x20000;
  g.guest.reserve(proc, base, iterations);
  const bond = g.guest.svaBind(g.vsid, proc);
  const payload = new Uint8Array(64).fill(0xa5);
  let done: DmaResult | null = null;
  const onComplete = (r: DmaResult): void => void (done = r);
  const dev = g.dev;
  const vmm = g.vmm;
  const xs: number[] = [];
  for (let i = -16; i < iterations; i++) {
    // 16 warm-up round trips (same pages: unmapped and invalidated again, not timed)
    const vpn = base + (i < 0 ? 0 : i);
    done = null;
    const t0 = now();
    const r = dev.dma({ iova: BigInt(vpn * PAGE_SIZE + 0x40), length: payload.length, write: true, data: payload, pasid: bond.ssid, onComplete });
    vmm.poll();
    const t1 = now();
    assert(r.status === "pending" && (done as DmaResult | null)?.status === "done", "the stalled DMA completed after the guest's RESUME");
    if (i >= 0) xs.push(t1 - t0);
    else g.guest.unmapAndInvalidate(proc, vpn, 1);
  }
  g.vmm.destroy();
  g.vm.destroy();
  xs.sort((a, b) => a - b);
  return xs[xs.length >> 1] * 1000;
}
