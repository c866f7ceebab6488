/**
 * Through the shim, a C program gets exactly what the library answers: the same return values,
 * errnos and bytes written back, for a script of ioctls run once by a real program (through the
 * preload shim and the server) and once in-process on the library (uapi dispatchIoctl on a
 * simulated process with the same memory layout).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { IommuError } from "../../src/errno.js";
import { openIommufd } from "../../src/iommufd/context.js";
import { Host } from "../../src/mm/index.js";
import { dispatchIoctl, encode, type Profile, type UObject } from "../../src/uapi/index.js";
import { compile, run, settled, leftovers, NOTHING_LEFT, skipReason, withServer } from "./helpers.js";

const ARENA = 0x200000000;
const U64_MAX = (1n << 64n) - 1n;
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

interface Step {
  what: string;
  request: number;
  /** p: the arena, n: NULL, i: the integer arg, a: arena + arg */
  mode: "p" | "n" | "i" | "a";
  arg?: number;
  /** [arena offset, bytes] */
  put?: [number, Uint8Array][];
}

const s = (name: string, o: UObject): Uint8Array => encode(name, o);
const cmd = (o: UObject): Uint8Array => encode("iommu_test_cmd", { size: 88, ...o });

function script(): Step[] {
  const tail = new Uint8Array(24);
  tail.set(s("iommu_ioas_alloc", { size: 24, flags: 0, out_ioas_id: 0 }));
  tail[20] = 1;
  return [
    { what: "DESTROY of id 0", request: 0x3b80, mode: "p", put: [[0, s("iommu_destroy", { size: 8, id: 0 })]] },
    { what: "DESTROY with a NULL argument", request: 0x3b80, mode: "n" },
    { what: "nr 0x7f", request: 0x3b7f, mode: "p" },
    { what: "size bits in the request", request: 0xc0103b85, mode: "p", put: [[0, s("iommu_ioas_alloc", { size: 12, flags: 0, out_ioas_id: 0 })]] },
    { what: "IOAS_ALLOC size 4", request: 0x3b81, mode: "p", put: [[0, s("iommu_destroy", { size: 4, id: 0 })]] },
    { what: "IOAS_ALLOC non-zero tail", request: 0x3b81, mode: "p", put: [[0, tail]] },
    { what: "IOAS_ALLOC", request: 0x3b81, mode: "p", put: [[0, s("iommu_ioas_alloc", { size: 12, flags: 0, out_ioas_id: 0 })]] },
    { what: "IOAS_ALLOC zero tail of 4096", request: 0x3b81, mode: "p", put: [[0, s("iommu_ioas_alloc", { size: 4096, flags: 0, out_ioas_id: 0 })]] },
    { what: "IOAS_ALLOC bad flags", request: 0x3b81, mode: "p", put: [[0, s("iommu_ioas_alloc", { size: 12, flags: 1, out_ioas_id: 0 })]] },
    { what: "OPTION RLIMIT_MODE get", request: 0x3b87, mode: "p", put: [[0, s("iommu_option", { size: 24, option_id: 0, op: 1, __reserved: 0, object_id: 0, val64: 7n })]] },
    { what: "VFIO_GET_API_VERSION", request: 0x3b64, mode: "i", arg: 0 },
    { what: "VFIO_CHECK_EXTENSION TYPE1v2", request: 0x3b65, mode: "i", arg: 3 },
    { what: "VFIO_CHECK_EXTENSION 99", request: 0x3b65, mode: "i", arg: 99 },
    { what: "MOCK_DOMAIN", request: 0x3ba0, mode: "p", put: [[0, cmd({ op: 2, id: 1 })]] },
    { what: "MOCK_DOMAIN on nothing", request: 0x3ba0, mode: "p", put: [[0, cmd({ op: 2, id: 77 })]] },
    {
      what: "IOAS_MAP of arena pages",
      request: 0x3b85,
      mode: "p",
      put: [[0, s("iommu_ioas_map", { size: 40, flags: 7, ioas_id: 1, __reserved: 0, user_va: BigInt(ARENA + 8192), length: 0x2000n, iova: 0x1000000n })]],
    },
    {
      what: "IOAS_MAP over it",
      request: 0x3b85,
      mode: "p",
      put: [[0, s("iommu_ioas_map", { size: 40, flags: 7, ioas_id: 1, __reserved: 0, user_va: BigInt(ARENA + 8192), length: 0x2000n, iova: 0x1000000n })]],
    },
    {
      what: "IOAS_MAP odd length",
      request: 0x3b85,
      mode: "p",
      put: [[0, s("iommu_ioas_map", { size: 40, flags: 3, ioas_id: 1, __reserved: 0, user_va: BigInt(ARENA + 8192), length: 0x123n, iova: 0n })]],
    },
    {
      what: "IOAS_MAP of unmapped memory",
      request: 0x3b85,
      mode: "p",
      put: [[0, s("iommu_ioas_map", { size: 40, flags: 3, ioas_id: 1, __reserved: 0, user_va: 0x300000000n, length: 0x1000n, iova: 0n })]],
    },
    { what: "IOVA_RANGES no room", request: 0x3b84, mode: "p", put: [[0, s("iommu_ioas_iova_ranges", { size: 32, ioas_id: 1, num_iovas: 0, __reserved: 0, allowed_iovas: 0n, out_iova_alignment: 0n })]] },
    {
      what: "IOVA_RANGES",
      request: 0x3b84,
      mode: "p",
      put: [[0, s("iommu_ioas_iova_ranges", { size: 32, ioas_id: 1, num_iovas: 4, __reserved: 0, allowed_iovas: BigInt(ARENA + 4096), out_iova_alignment: 0n })]],
    },
    {
      what: "IOVA_RANGES to a bad pointer",
      request: 0x3b84,
      mode: "p",
      put: [[0, s("iommu_ioas_iova_ranges", { size: 32, ioas_id: 1, num_iovas: 4, __reserved: 0, allowed_iovas: 16n, out_iova_alignment: 0n })]],
    },
    { what: "CHECK_MAP", request: 0x3ba0, mode: "p", put: [[0, cmd({ op: 3, id: 4, iova: 0x1000000n, length: 0x2000n, uptr: BigInt(ARENA + 8192) })]] },
    { what: "CHECK_REFS 1", request: 0x3ba0, mode: "p", put: [[0, cmd({ op: 4, id: 0, length: 0x2000n, uptr: BigInt(ARENA + 8192), refs: 1 })]] },
    { what: "CHECK_REFS 2", request: 0x3ba0, mode: "p", put: [[0, cmd({ op: 4, id: 0, length: 0x2000n, uptr: BigInt(ARENA + 8192), refs: 2 })]] },
    { what: "CREATE_ACCESS", request: 0x3ba0, mode: "p", put: [[0, cmd({ op: 5, id: 1, flags: 0 })]] },
    {
      what: "ACCESS_RW read",
      request: 0x3ba0,
      mode: "p",
      put: [
        [0, cmd({ op: 8, id: 4, iova: 0x1000010n, length: 32n, uptr: BigInt(ARENA + 4096), flags: 0 })],
        [8192 + 16, new Uint8Array(32).fill(0x5a)],
      ],
    },
    { what: "GET_HW_INFO", request: 0x3b8a, mode: "p", put: [[0, s("iommu_hw_info", { size: 32, flags: 0, dev_id: 3, data_len: 64, data_uptr: BigInt(ARENA + 4096) })]] },
    { what: "HWPT_ALLOC bad flags", request: 0x3b89, mode: "p", put: [[0, s("iommu_hwpt_alloc", { size: 44, flags: 0xff, dev_id: 3, pt_id: 1 })]] },
    { what: "IOAS_UNMAP of nothing", request: 0x3b86, mode: "p", put: [[0, s("iommu_ioas_unmap", { size: 32, ioas_id: 1, iova: 0x5000000n, length: 0x1000n })]] },
    { what: "IOAS_UNMAP all", request: 0x3b86, mode: "p", put: [[0, s("iommu_ioas_unmap", { size: 32, ioas_id: 1, iova: 0n, length: U64_MAX })]] },
    { what: "IOAS_MAP_FILE bad fd", request: 0x3b8f, mode: "p", put: [[0, s("iommu_ioas_map_file", { size: 40, flags: 3, ioas_id: 1, fd: -1, start: 0n, length: 4096n, iova: 0n })]] },
    { what: "VIOMMU_ALLOC", request: 0x3b90, mode: "p", put: [[0, s("iommu_viommu_alloc", { size: 24, flags: 0, type: 1, dev_id: 3, hwpt_id: 1 })]] },
    { what: "test op 99", request: 0x3ba0, mode: "p", put: [[0, cmd({ op: 99, id: 1 })]] },
    { what: "test op 16", request: 0x3ba0, mode: "p", put: [[0, cmd({ op: 16, id: 3 })]] },
    { what: "DESTROY the IOAS while the device holds it", request: 0x3b80, mode: "p", put: [[0, s("iommu_destroy", { size: 8, id: 1 })]] },
    { what: "DESTROY IOAS 2", request: 0x3b80, mode: "p", put: [[0, s("iommu_destroy", { size: 8, id: 2 })]] },
    { what: "an unreadable struct", request: 0x3b81, mode: "i", arg: 0x10 },
  ];
}

function line(st: Step): string {
  const segs = (st.put ?? []).map(([off, b]) => `${off.toString(16)}:${hex(b)}`);
  return [st.request.toString(16), st.mode, (st.arg ?? 0).toString(16), ...segs].join(" ");
}

/** The same script on the library: a simulated process with the arena at the same address. */
function library(steps: Step[], profile: Profile): string[] {
  const host = new Host();
  const p = host.spawn({ uid: 0 });
  p.mmap(65536, { addr: ARENA, fixed: true });
  const ctx = openIommufd(host, p, { profile });
  const out: string[] = [];
  for (const st of steps) {
    p.write(ARENA, new Uint8Array(65536));
    for (const [off, b] of st.put ?? []) p.write(ARENA + off, b);
    const arg = st.mode === "p" ? BigInt(ARENA) : st.mode === "n" ? 0n : st.mode === "a" ? BigInt(ARENA + (st.arg ?? 0)) : BigInt(st.arg ?? 0);
    let ret: number;
    let errno = 0;
    try {
      ret = dispatchIoctl(ctx, st.request, arg, { profile }).ret;
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      ret = -1;
      errno = e.errno;
    }
    out.push(`${ret} ${errno} ${hex(p.read(ARENA, 256))} ${hex(p.read(ARENA + 4096, 256))}`);
  }
  return out;
}

for (const profile of ["newest", "6.12"] as const) {
  test(`errnos, return values and copied-back bytes through the shim equal the library's (${profile})`, { skip: skipReason }, async () => {
    const steps = script();
    const want = library(steps, profile);
    const prog = compile("script");
    await withServer({ profile }, async ({ server, sock }) => {
      const r = await run(sock, prog, [], { stdin: steps.map(line).join("\n") + "\n" });
      assert.equal(r.code, 0, r.stderr);
      const got = r.stdout.trimEnd().split("\n");
      assert.equal(got.length, steps.length, r.stdout);
      for (let i = 0; i < steps.length; i++) assert.equal(got[i], want[i], `step ${i}: ${steps[i].what}`);
      assert.deepEqual(leftovers(await settled(server)), NOTHING_LEFT);
    });
  });
}

test("an ioctl's struct in read-only memory: the work is done and EFAULT returned, an allocation is taken down (the copy-back rides on the result)", { skip: skipReason }, async () => {
  const prog = compile("ro-copyback");
  await withServer({}, async ({ server, sock }) => {
    const r = await run(sock, prog, []);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split("\n"), [
      "map-ro -1 14", // drivers/iommu/iommufd/ioas.c iommufd_ioas_map: mapped, then respond fails
      `unmap-all 0 ${1 << 20}`, // the mapping stayed
      "map-rw 0 iova",
      "alloc-ro -1 14", // iommufd_ioas_alloc_ioctl: respond fails, the IOAS is destroyed
      "destroy-next -1 2",
    ]);
    const st = await settled(server);
    assert.ok(st.memWritesDeferred >= 2, `the IOAS_MAP / UNMAP copy-backs went with their results (${st.memWritesDeferred})`);
    assert.deepEqual(leftovers(st), NOTHING_LEFT);
  });
});
