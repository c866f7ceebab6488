/**
 * One VM with an SMMUv3 guest, booted: a host device assigned to the VM, the VMM's vSMMU with the
 * device plugged at a virtual StreamID, and the guest's driver probed with the device as a master.
 * Scenarios, tests and benchmarks start here. Also the formatting the scenario reports share.
 */
import { Cd, Ste } from "../../hw/smmuv3/tables.js";
import { decodeEvent } from "../../hw/smmuv3/events.js";
import { decodeCmd } from "../../hw/smmuv3/cmdq.js";
import type { Device } from "../../iommu/device.js";
import { HostMachine } from "../machine.js";
import { Vm, type AssignedDevice } from "../vm.js";
import { GuestSmmuDriver, type GuestMaster, type GuestSmmuOptions } from "./guest-driver.js";
import { SmmuVmm, type PluggedDevice, type SmmuVmmOptions } from "./vmm.js";

export interface SmmuGuestOptions {
  /** The host (default: a new one with an SMMUv3). */
  machine?: HostMachine;
  name?: string;
  /** The host device (default 0000:01:00.0 at StreamID 0x100, 20 PASID bits, stall-capable). */
  dev?: { name?: string; sid?: number; pasidBits?: number; canStall?: boolean };
  /** The virtual StreamID the guest sees (default 0x8). */
  vsid?: number;
  /** Guest RAM (default 64 MiB). */
  ramBytes?: number;
  vmm?: SmmuVmmOptions;
  guest?: GuestSmmuOptions;
}

export interface SmmuGuest {
  machine: HostMachine;
  vm: Vm;
  dev: Device;
  assigned: AssignedDevice;
  vmm: SmmuVmm;
  guest: GuestSmmuDriver;
  plugged: PluggedDevice;
  master: GuestMaster;
  vsid: number;
  /** vmm.trace's length when the VMM was made (what came after is the guest's doing). */
  traceMark: number;
}

export function bootSmmuGuest(o: SmmuGuestOptions = {}): SmmuGuest {
  const machine = o.machine ?? new HostMachine({ iommu: "smmuv3" });
  const canStall = o.dev?.canStall ?? true;
  const dev = machine.addDevice({ name: o.dev?.name ?? "0000:01:00.0", sid: o.dev?.sid ?? 0x100, pasidBits: o.dev?.pasidBits ?? 20, iopf: canStall });
  const vm = new Vm(machine, { ramBytes: o.ramBytes ?? 64 << 20, name: o.name ?? "vm" });
  const assigned = vm.assign(dev);
  const vsid = o.vsid ?? 0x8;
  const vmm = new SmmuVmm(vm, [{ assigned, vsid, canStall }], o.vmm);
  const traceMark = vmm.trace.length;
  const guest = new GuestSmmuDriver(vm, vmm.vsmmu, o.guest);
  const master = guest.addMaster(vsid, { canStall, pasidBits: o.dev?.pasidBits ?? 20 });
  return { machine, vm, dev, assigned, vmm, guest, plugged: vmm.devices[0], master, vsid, traceMark };
}

// ---- report formatting ------------------------------------------------------------------------------

export function hex(n: number | bigint, width = 0): string {
  return `0x${n.toString(16).padStart(width, "0")}`;
}

/** 64-bit words of a structure, low word first. */
export function qwords(w: Uint32Array, n = w.length / 2): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(hex((BigInt(w[2 * i + 1]) << 32n) | BigInt(w[2 * i]), 16));
  return out.join(" ");
}

export function steLine(w: Uint32Array): string {
  return `${Ste.describe(Ste.decodeWords(w))} = ${qwords(w, 4)} …`;
}

export function cdLine(w: Uint32Array): string {
  return `${Cd.describe(Cd.decodeWords(w))} = ${qwords(w, 4)} …`;
}

function bytesOf(w: Uint32Array): Uint8Array {
  const b = new Uint8Array(w.length * 4);
  const dv = new DataView(b.buffer);
  for (let i = 0; i < w.length; i++) dv.setUint32(4 * i, w[i], true);
  return b;
}

export function eventLine(w: Uint32Array): string {
  const e = decodeEvent(bytesOf(w)) as Record<string, unknown> & { kind: string };
  const f = Object.entries(e)
    .filter(([k, v]) => k !== "kind" && v !== 0 && v !== 0n)
    .map(([k, v]) => `${k}=${typeof v === "number" || typeof v === "bigint" ? hex(v) : String(v)}`);
  return `${e.kind}{${f.join(" ")}} = ${qwords(w, 4)}`;
}

export function cmdLine(w: Uint32Array): string {
  const c = decodeCmd(bytesOf(w)) as Record<string, unknown> & { kind: string };
  const f = Object.entries(c)
    .filter(([k, v]) => k !== "kind" && v !== 0 && v !== 0n)
    .map(([k, v]) => `${k}=${typeof v === "number" || typeof v === "bigint" ? hex(v) : String(v)}`);
  return `${c.kind}{${f.join(" ")}} = ${qwords(w, 2)}`;
}
