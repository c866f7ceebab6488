/**
 * The model's answers to oracle/probes/dispatch-probe.c, printed line for line in the probe's
 * format, compared with the real Linux 6.12.117 kernel's transcript stored beside the probe
 * (dispatch-probe.out.txt; INFO lines carry IDs and are not compared). Profile "6.12", as the
 * oracle kernel.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Errno } from "../../src/errno.js";
import { _IO } from "../../src/uapi/ioctl.js";
import { encode } from "../../src/uapi/structs.js";
import { bytesOf, call, env, PAGE, put, roPage, u32At, u64At, type Env } from "./helpers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const T = 0x3b;
const IOC = (dir: number, nr: number, size: number): number => ((dir << 30) | (size << 16) | (T << 8) | nr) >>> 0;
const READ = 2;
const WRITE = 1;

function transcript(): string[] {
  const out: string[] = [];
  const e: Env = env("6.12");
  const errnoOf = (r: ReturnType<typeof call>): number => (r.res === "OK" ? 0 : Errno[r.res]);
  const say = (q: string, r: ReturnType<typeof call>): void => {
    out.push(`${q} rc=${r.res === "OK" ? r.ret : -1} errno=${errnoOf(r)}`);
  };
  const io = (req: number, arg: number | bigint): ReturnType<typeof call> => call(e, req, arg);
  const u = e.mem;
  const { ro, rw, fill } = roPage(e);
  const onRo = (b: Uint8Array): number => {
    fill(0, new Uint8Array(PAGE));
    fill(0, b);
    return ro;
  };
  const newIoas = (): number => {
    const a = e.mem + 3 * PAGE;
    put(e, a, bytesOf("iommu_ioas_alloc", {}));
    assert.equal(io(0x3b81, a).res, "OK");
    return u32At(e, a + 8);
  };
  const byte = (addr: number): string => `0x${e.p.read(addr, 1)[0].toString(16).padStart(2, "0")}`;
  const d = bytesOf("iommu_destroy", { id: 0 });
  put(e, u, d);

  say("D01 nr 0x7f", io(_IO(T, 0x7f), u));
  say("D02 nr 0x7f NULL", io(_IO(T, 0x7f), 0));
  say("D03 DESTROY with size bits", io(IOC(READ | WRITE, 0x80, 8), u));
  say("D04 DESTROY with direction bits only", io(IOC(READ, 0x80, 0), u));
  say("D05 DESTROY type 'A'", io(_IO(0x41, 0x80), u));
  say("D06 DESTROY NULL", io(0x3b80, 0));
  say("D07 DESTROY unmapped", io(0x3b80, 0x10000));
  say("D08 hole 0x95 NULL", io(_IO(T, 0x95), 0));
  say("D09 hole 0x95", io(_IO(T, 0x95), u));
  put(e, u + PAGE, new Uint8Array(PAGE));
  for (let nr = 0x8f; nr <= 0x94; nr++) say(`D10 nr 0x${nr.toString(16)} (newer than 6.12)`, io(_IO(T, nr), u + PAGE));
  say("D11 nr 0xa1 NULL", io(_IO(T, 0xa1), 0));
  say("D12 nr 0xff NULL", io(_IO(T, 0xff), 0));
  put(e, u, bytesOf("iommu_destroy", { size: 7 }));
  say("D13 DESTROY size 7", io(0x3b80, u));
  put(e, u, new Uint8Array(PAGE));
  put(e, u, encode("iommu_destroy", { size: 9 }));
  put(e, u + 8, new Uint8Array([1]));
  say("D14 DESTROY size 9 tail 1", io(0x3b80, u));
  put(e, u + 8, new Uint8Array([0]));
  say("D15 DESTROY size 9 tail 0", io(0x3b80, u));
  put(e, u, encode("iommu_destroy", { size: 0 }));
  say("D16 DESTROY size 0", io(0x3b80, u));
  {
    const two = e.p.mmap(2 * PAGE, { shared: true });
    e.p.munmap(two + PAGE, PAGE);
    const t = two + PAGE - 16;
    put(e, t, encode("iommu_destroy", { size: 64 }));
    say("D17 DESTROY tail of zeros into an unmapped page", io(0x3b80, t));
    put(e, t + 12, new Uint8Array([1]));
    say("D18 DESTROY tail non-zero before an unmapped page", io(0x3b80, t));
    put(e, t, encode("iommu_destroy", { size: 0xffffffff }));
    say("D19 DESTROY size 0xffffffff non-zero tail", io(0x3b80, t));
  }
  {
    put(e, u, new Uint8Array(64).fill(0xaa));
    put(e, u, encode("iommu_ioas_alloc", { size: 12 }).subarray(0, 12));
    let r = io(0x3b81, u);
    out.push(`D20 IOAS_ALLOC size 12 rc=${r.res === "OK" ? 0 : -1} id=${u32At(e, u + 8)} byte12=${byte(u + 12)}`);
    put(e, u, new Uint8Array(64));
    put(e, u, encode("iommu_ioas_alloc", { size: 16 }));
    r = io(0x3b81, u);
    out.push(`D21 IOAS_ALLOC size 16 rc=${r.res === "OK" ? 0 : -1} id=${u32At(e, u + 8)} size=${u32At(e, u)}`);
  }
  const ioas = newIoas();
  put(e, u + 2 * PAGE, bytesOf("iommu_test_cmd", { op: 2, id: ioas }));
  assert.equal(io(0x3ba0, u + 2 * PAGE).res, "OK");
  const idev = u32At(e, u + 2 * PAGE + 24);
  {
    put(e, u, new Uint8Array(64).fill(0xaa));
    put(e, u, encode("iommu_hw_info", { size: 32, dev_id: idev }).subarray(0, 32));
    let r = io(0x3b8a, u);
    out.push(`D22 GET_HW_INFO size 32 rc=${r.res === "OK" ? 0 : -1} type=0x${u32At(e, u + 24).toString(16)} data_len=${u32At(e, u + 12)} byte32=${byte(u + 32)}`);
    put(e, u, new Uint8Array(64).fill(0xaa));
    put(e, u, encode("iommu_hwpt_alloc", { size: 24, dev_id: idev, pt_id: ioas }).subarray(0, 24));
    r = io(0x3b89, u);
    out.push(`D23 HWPT_ALLOC size 24 rc=${r.res === "OK" ? 0 : -1} out_hwpt_id=${u32At(e, u + 16)} byte24=${byte(u + 24)}`);
    put(e, u, new Uint8Array(128).fill(0xaa));
    put(e, u, encode("iommu_test_cmd", { size: 68, op: 2, id: ioas }).subarray(0, 68));
    r = io(0x3ba0, u);
    out.push(`D24 MOCK_DOMAIN size 68 rc=${r.res === "OK" ? 0 : -1} stdev=${u32At(e, u + 16)} byte68=${byte(u + 68)}`);
  }
  {
    const o = bytesOf("iommu_option", { option_id: 1, op: 1, object_id: ioas });
    say("D30 OPTION GET read-only struct", io(0x3b87, onRo(o)));
    fill(0, new Uint8Array(PAGE));
    fill(PAGE - 16, o.subarray(0, 16));
    put(e, rw, new Uint8Array(8).fill(0x55));
    const r = io(0x3b87, ro + PAGE - 16);
    out.push(`D31 OPTION GET val64 on a writable page rc=${r.res === "OK" ? 0 : -1} errno=${errnoOf(r)} val64=${u64At(e, rw)}`);
    say("D32 DESTROY read-only struct", io(0x3b80, onRo(bytesOf("iommu_destroy", { id: newIoas() }))));
    say("D33 IOAS_ALLOC read-only struct", io(0x3b81, onRo(bytesOf("iommu_ioas_alloc", {}))));
    out.push(`D34 next IOAS_ALLOC id=${newIoas()}`);
    const un = bytesOf("iommu_ioas_unmap", { ioas_id: ioas, iova: 1n << 24n, length: 4096n });
    say("D35 IOAS_UNMAP failing read-only struct", io(0x3b86, onRo(un)));
    put(e, u, un);
    let r2 = io(0x3b86, u);
    out.push(`D36 IOAS_UNMAP failing rc=-1 errno=${errnoOf(r2)} length=${u64At(e, u + 16)}`);
    say("D37 IOAS_UNMAP all (succeeds) read-only struct", io(0x3b86, onRo(bytesOf("iommu_ioas_unmap", { ioas_id: ioas, iova: 0n, length: (1n << 64n) - 1n }))));
    const inv = bytesOf("iommu_hwpt_invalidate", { hwpt_id: 9999, entry_num: 5 });
    put(e, u, inv);
    r2 = io(0x3b8d, u);
    out.push(`D38 HWPT_INVALIDATE bad id rc=-1 errno=${errnoOf(r2)} entry_num=${u32At(e, u + 24)}`);
    say("D39 HWPT_INVALIDATE bad id read-only struct", io(0x3b8d, onRo(inv)));
    const rg = bytesOf("iommu_ioas_iova_ranges", { ioas_id: ioas, num_iovas: 0 });
    put(e, u, rg);
    r2 = io(0x3b84, u);
    out.push(`D40 IOVA_RANGES capacity 0 rc=-1 errno=${errnoOf(r2)} num_iovas=${u32At(e, u + 8)} align=${u64At(e, u + 24)}`);
    say("D41 IOVA_RANGES capacity 0 read-only struct", io(0x3b84, onRo(rg)));
    say("D42 VFIO_IOAS SET read-only struct", io(0x3b88, onRo(bytesOf("iommu_vfio_ioas", { ioas_id: ioas, op: 1 }))));
    say("D43 VFIO_IOAS GET read-only struct", io(0x3b88, onRo(bytesOf("iommu_vfio_ioas", { ioas_id: ioas, op: 0 }))));
    say("D44 VFIO_IOAS CLEAR read-only struct", io(0x3b88, onRo(bytesOf("iommu_vfio_ioas", { ioas_id: ioas, op: 2 }))));
    say("D45 ALLOW_IOVAS read-only struct", io(0x3b82, onRo(bytesOf("iommu_ioas_allow_iovas", { ioas_id: ioas }))));
    say("D46 SET_DIRTY_TRACKING bad id read-only struct", io(0x3b8b, onRo(bytesOf("iommu_hwpt_set_dirty_tracking", { hwpt_id: 9999 }))));
    say("D47 GET_DIRTY_BITMAP bad id read-only struct", io(0x3b8c, onRo(bytesOf("iommu_hwpt_get_dirty_bitmap", { hwpt_id: 9999 }))));
    say("D48 ADD_RESERVED read-only struct", io(0x3ba0, onRo(bytesOf("iommu_test_cmd", { op: 1, id: ioas, start: 1n << 40n, length: 4096n }))));
    say("D49 MOCK_DOMAIN read-only struct", io(0x3ba0, onRo(bytesOf("iommu_test_cmd", { op: 2, id: ioas }))));
    out.push(`D50 next IOAS_ALLOC id=${newIoas()}`);
    put(e, u, bytesOf("iommu_ioas_map", { flags: 1 << 5, ioas_id: ioas, iova: 77n }));
    r2 = io(0x3b85, u);
    out.push(`D51 IOAS_MAP bad flags rc=-1 errno=${errnoOf(r2)} iova=${u64At(e, u + 32)}`);
    say("D52 FAULT_QUEUE_ALLOC read-only struct", io(0x3b8e, onRo(bytesOf("iommu_fault_alloc", {}))));
    out.push(`D53 next IOAS_ALLOC id=${newIoas()}`);
    put(e, u, bytesOf("iommu_test_cmd", { op: 16 }));
    say("D54 test op 16", io(0x3ba0, u));
  }
  say("D60 VFIO_GET_API_VERSION", io(0x3b64, 0));
  say("D61 VFIO_CHECK_EXTENSION(TYPE1v2)", io(0x3b65, 3));
  say("D62 VFIO_CHECK_EXTENSION(TYPE1v2 + 1<<32)", io(0x3b65, 3n | (1n << 32n)));
  say("D63 VFIO_CHECK_EXTENSION(NOIOMMU)", io(0x3b65, 8));
  say("D64 VFIO_SET_IOMMU(7)", io(0x3b66, 7));
  say("D65 VFIO_SET_IOMMU(TYPE1v2) without compat IOAS", io(0x3b66, 3));
  say("D66 VFIO_GET_API_VERSION with size bits", io(IOC(READ, 100, 4), 0));
  say("D67 VFIO_IOMMU_DIRTY_PAGES", io(0x3b75, u));
  say("D68 VFIO_IOMMU_GET_INFO NULL", io(0x3b70, 0));
  return out;
}

test("the dispatcher answers dispatch-probe.c exactly as the real Linux 6.12.117 kernel did", () => {
  const want = readFileSync(join(ROOT, "oracle/probes/dispatch-probe.out.txt"), "utf8")
    .split("\n")
    .filter((l) => l && !l.startsWith("INFO"));
  const got = transcript();
  for (let i = 0; i < Math.max(want.length, got.length); i++) assert.equal(got[i], want[i], `line ${i + 1}`);
});
