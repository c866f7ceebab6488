/**
 * The ioctl dispatch rules of iommufd_fops_ioctl and the per-ioctl copy-back rules of its handlers,
 * each test named after the rule it pins, through dispatchIoctl on structs in simulated user
 * memory. Includes ports of the kernel selftest's cmd_fail, cmd_length (the 12 structs of 6.12 plus
 * the 4 newer ones) and cmd_ex_fail (tools/testing/selftests/iommu/iommufd.c, Linux 6.12.117).
 * Structs on a read-only page tell which ioctls write back: a write-back there faults (EFAULT).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { IOCTLS, _IO, ioctlFor, TEST_OPS_RESPOND, type IoctlDef, type Profile } from "../../src/uapi/ioctl.js";
import { encode, structOf } from "../../src/uapi/structs.js";
import { bytesOf, call, env, get, ioasAlloc, ioctl, mockDomain, PAGE, put, roPage, run, u32At, u64At, type Env, type Result } from "./helpers.js";

const T = 0x3b;
const IOMMU_DESTROY = 0x3b80;
const IOMMU_IOAS_ALLOC = 0x3b81;
const IOMMU_IOAS_ALLOW_IOVAS = 0x3b82;
const IOMMU_IOAS_IOVA_RANGES = 0x3b84;
const IOMMU_IOAS_MAP = 0x3b85;
const IOMMU_IOAS_UNMAP = 0x3b86;
const IOMMU_OPTION = 0x3b87;
const IOMMU_VFIO_IOAS = 0x3b88;
const IOMMU_HWPT_ALLOC = 0x3b89;
const IOMMU_GET_HW_INFO = 0x3b8a;
const IOMMU_HWPT_SET_DIRTY_TRACKING = 0x3b8b;
const IOMMU_HWPT_GET_DIRTY_BITMAP = 0x3b8c;
const IOMMU_HWPT_INVALIDATE = 0x3b8d;
const IOMMU_FAULT_QUEUE_ALLOC = 0x3b8e;
const IOMMU_IOAS_MAP_FILE = 0x3b8f;
const IOMMU_IOAS_CHANGE_PROCESS = 0x3b92;
const IOMMU_TEST_CMD = 0x3ba0;
const VFIO_GET_API_VERSION = 0x3b64;
const VFIO_CHECK_EXTENSION = 0x3b65;
const VFIO_SET_IOMMU = 0x3b66;
const VFIO_IOMMU_GET_INFO = 0x3b70;
const VFIO_IOMMU_MAP_DMA = 0x3b71;
const VFIO_IOMMU_UNMAP_DMA = 0x3b72;
const VFIO_TYPE1v2_IOMMU = 3;
const IOC_SIZE = (req: number, size: number): number => (req | (size << 16)) >>> 0;
const PROFILES: Profile[] = ["newest", "6.12"];
const U64_MAX = (1n << 64n) - 1n;

const inProfile = (d: IoctlDef, p: Profile): boolean => p === "newest" || !d.newer;

// ------------------------------------------------------------------------------ generic rules

test("nr 0x7f goes to the VFIO compat layer, which answers ENOTTY (without reading the argument)", () => {
  for (const p of PROFILES) {
    const e = env(p);
    put(e, e.mem, bytesOf("iommu_destroy", {}));
    assert.equal(ioctl(e, _IO(T, 0x7f), e.mem), "ENOTTY");
    assert.equal(ioctl(e, _IO(T, 0x7f), 0), "ENOTTY");
    // and nr past the selftest slot (0xa1..0xff) likewise
    for (const nr of [0xa1, 0xb0, 0xff]) assert.equal(ioctl(e, _IO(T, nr), 0), "ENOTTY");
  }
});

test("a request with size or direction bits (or another type byte) is ENOTTY: the table compares the whole value", () => {
  for (const p of PROFILES) {
    const e = env(p);
    for (const d of IOCTLS.filter((x) => inProfile(x, p))) {
      put(e, e.mem, bytesOf(d.struct.name, {}));
      for (const req of [IOC_SIZE(d.request, d.struct.size), (d.request | (3 << 30)) >>> 0, (d.request | (1 << 30)) >>> 0, (0x4100 | d.nr) >>> 0])
        assert.equal(ioctl(e, req, e.mem), "ENOTTY", `${d.name} as 0x${req.toString(16)}`);
    }
  }
});

test("an unreadable size is EFAULT: NULL, an unmapped address, a PROT_NONE page", () => {
  for (const p of PROFILES) {
    const e = env(p);
    const none = e.p.mmap(PAGE, { prot: 0 });
    for (const d of IOCTLS.filter((x) => inProfile(x, p))) {
      assert.equal(ioctl(e, d.request, 0), "EFAULT", d.name);
      assert.equal(ioctl(e, d.request, 0x10000), "EFAULT", d.name);
      assert.equal(ioctl(e, d.request, none), "EFAULT", d.name);
    }
  }
});

test("a table hole reads the size first: EFAULT for an unreadable size, ENOTTY otherwise", () => {
  for (const p of PROFILES) {
    const e = env(p);
    put(e, e.mem, bytesOf("iommu_destroy", {}));
    const holes = [];
    for (let nr = 0x80; nr <= 0xa0; nr++) if (!ioctlFor(_IO(T, nr), p)) holes.push(nr);
    assert.deepEqual(holes.length, p === "newest" ? 11 : 17);
    for (const nr of holes) {
      assert.equal(ioctl(e, _IO(T, nr), 0), "EFAULT", `0x${nr.toString(16)}`);
      assert.equal(ioctl(e, _IO(T, nr), e.mem), "ENOTTY", `0x${nr.toString(16)}`);
    }
  }
});

test("size = min - 1 is EINVAL (and every smaller size, down to 0)", () => {
  for (const p of PROFILES) {
    const e = env(p);
    for (const d of IOCTLS.filter((x) => inProfile(x, p))) {
      for (const size of [d.min - 1, 4, 0]) assert.equal(run(e, d.request, d.struct.name, { size }), "EINVAL", `${d.name} size ${size}`);
    }
  }
});

test("a non-zero byte past sizeof is E2BIG, wherever it is in the tail", () => {
  for (const p of PROFILES) {
    const e = env(p);
    for (const d of IOCTLS.filter((x) => inProfile(x, p))) {
      for (const at of [0, 1, 7, 100]) {
        const b = new Uint8Array(d.struct.size + 128);
        b.set(bytesOf(d.struct.name, { size: d.struct.size + 128 }));
        b[d.struct.size + at] = 0x80;
        put(e, e.mem, b);
        assert.equal(ioctl(e, d.request, e.mem), "E2BIG", `${d.name} byte sizeof+${at}`);
      }
    }
  }
});

test("an unreadable tail is EFAULT; a non-zero byte before the unreadable part is E2BIG", () => {
  const e = env();
  const two = e.p.mmap(2 * PAGE, { shared: true });
  e.p.munmap(two + PAGE, PAGE);
  // IOAS_ALLOC (sizeof 12) 24 bytes before the hole: a 12-byte readable tail, then unmapped memory
  const at = two + PAGE - 24;
  put(e, at, encode("iommu_ioas_alloc", { size: 100 }));
  assert.equal(ioctl(e, IOMMU_IOAS_ALLOC, at), "EFAULT");
  put(e, at + 20, new Uint8Array([1]));
  assert.equal(ioctl(e, IOMMU_IOAS_ALLOC, at), "E2BIG");
  put(e, at, encode("iommu_ioas_alloc", { size: 0xffffffff }));
  assert.equal(ioctl(e, IOMMU_IOAS_ALLOC, at), "E2BIG");
  put(e, at + 20, new Uint8Array([0]));
  assert.equal(ioctl(e, IOMMU_IOAS_ALLOC, at), "EFAULT");
  assert.equal(e.ctx.objects.size, 0, "nothing ran");
  // a struct that ends right at the page end with no tail is fine
  put(e, two + PAGE - 12, encode("iommu_ioas_alloc", { size: 12 }));
  assert.equal(ioctl(e, IOMMU_IOAS_ALLOC, two + PAGE - 12), "OK");
});

/** The state a call leaves: its result, the struct bytes, the next free ID and the open fds. */
function outcome(e: Env, d: IoctlDef, size: number, extra: number): { res: Result; bytes: string; nextId: number; fds: number } {
  const b = new Uint8Array(d.struct.size + extra);
  b.set(bytesOf(d.struct.name, { size }));
  put(e, e.mem, b);
  const res = ioctl(e, d.request, e.mem);
  const bytes = Buffer.from(get(e, e.mem, d.struct.size + extra)).toString("hex");
  return { res, bytes: bytes.slice(0, d.struct.size * 2), nextId: ioasAlloc(e), fds: e.ctx.fds.size };
}

test("a zero trailing byte gives the same result and the same state as size = sizeof", () => {
  for (const p of PROFILES) {
    for (const d of IOCTLS.filter((x) => inProfile(x, p))) {
      for (const extra of [1, 8, 64]) {
        const a = outcome(env(p), d, d.struct.size, 0);
        const b = outcome(env(p), d, d.struct.size + extra, extra);
        assert.deepEqual({ ...b, bytes: b.bytes.replace(/^.{8}/, "") }, { ...a, bytes: a.bytes.replace(/^.{8}/, "") }, `${p} ${d.name} +${extra}`);
      }
    }
  }
});

test("random sizes: below min EINVAL; above sizeof with a non-zero tail byte E2BIG; otherwise never EINVAL/E2BIG from the size", () => {
  const defs = IOCTLS;
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: defs.length - 1 }),
      fc.integer({ min: 0, max: 200 }),
      fc.option(fc.integer({ min: 0, max: 199 }), { nil: undefined }),
      (i, size, nz) => {
        const d = defs[i];
        const e = env("newest");
        const len = Math.max(size, d.struct.size) + 8;
        const b = new Uint8Array(len);
        b.set(bytesOf(d.struct.name, { size }).subarray(0, Math.min(size, d.struct.size)));
        new DataView(b.buffer).setUint32(0, size, true);
        const tailNz = nz !== undefined && size > d.struct.size && d.struct.size + (nz % (size - d.struct.size)) < size;
        if (tailNz) b[d.struct.size + (nz % (size - d.struct.size))] = 1;
        put(e, e.mem, b);
        const r = ioctl(e, d.request, e.mem);
        if (size < d.min) assert.equal(r, "EINVAL");
        else if (tailNz) assert.equal(r, "E2BIG");
        else {
          assert.notEqual(r, "E2BIG");
          assert.notEqual(r, "ENOTTY");
        }
      },
    ),
    { seed: 0x3b80, numRuns: 300 },
  );
});

// ------------------------------------------------------------------------------ copy-back

test("copy-back covers min(size, sizeof): bytes past a short size are never written", () => {
  const e = env();
  const u = e.mem;
  put(e, u, new Uint8Array(128).fill(0xaa));
  put(e, u, encode("iommu_ioas_alloc", { size: 12 }));
  assert.equal(ioctl(e, IOMMU_IOAS_ALLOC, u), "OK");
  assert.equal(u32At(e, u + 8), 1);
  assert.equal(get(e, u + 12, 1)[0], 0xaa);
  const ioas = ioasAlloc(e);
  const { idev } = mockDomain(e, ioas);
  // GET_HW_INFO at its minimum 32: out_capabilities (at 32) is not written
  put(e, u, new Uint8Array(128).fill(0xaa));
  put(e, u, encode("iommu_hw_info", { size: 32, dev_id: idev }).subarray(0, 32));
  assert.equal(ioctl(e, IOMMU_GET_HW_INFO, u), "OK");
  assert.equal(u32At(e, u + 24), 0xfeedbeef);
  assert.deepEqual([...get(e, u + 32, 8)], new Array(8).fill(0xaa));
  // HWPT_ALLOC at its minimum 24: out_hwpt_id (at 16) is written, 24.. untouched
  put(e, u, new Uint8Array(128).fill(0xaa));
  put(e, u, encode("iommu_hwpt_alloc", { size: 24, dev_id: idev, pt_id: ioas }).subarray(0, 24));
  assert.equal(ioctl(e, IOMMU_HWPT_ALLOC, u), "OK");
  assert.ok(u32At(e, u + 16) > 0);
  assert.equal(get(e, u + 24, 1)[0], 0xaa);
  // IOMMU_TEST_CMD at its minimum 68: the 4 tail bytes are not written
  put(e, u, new Uint8Array(128).fill(0xaa));
  put(e, u, encode("iommu_test_cmd", { size: 68, op: 2, id: ioas }).subarray(0, 68));
  assert.equal(ioctl(e, IOMMU_TEST_CMD, u), "OK");
  assert.ok(u32At(e, u + 16) > 0);
  assert.deepEqual([...get(e, u + 68, 4)], [0xaa, 0xaa, 0xaa, 0xaa]);
});

test("copy-back of a longer struct writes sizeof bytes: the zero tail stays, the kernel's own bytes come back", () => {
  const e = env();
  const u = e.mem;
  put(e, u, new Uint8Array(64));
  put(e, u, encode("iommu_ioas_alloc", { size: 64, flags: 0 }));
  assert.equal(ioctl(e, IOMMU_IOAS_ALLOC, u), "OK");
  assert.equal(u32At(e, u), 64, "size comes back as the caller gave it");
  assert.equal(u32At(e, u + 8), 1);
  assert.deepEqual([...get(e, u + 12, 52)], new Array(52).fill(0));
});

test("copy-back rewrites the kernel's copy: unused union bytes of IOMMU_TEST_CMD come back as they were", () => {
  const e = env();
  const ioas = ioasAlloc(e);
  const b = bytesOf("iommu_test_cmd", { op: 2, id: ioas });
  b.fill(0x5a, 28, 64); // beyond mock_domain's 12 bytes of the union
  put(e, e.mem, b);
  assert.equal(ioctl(e, IOMMU_TEST_CMD, e.mem), "OK");
  const after = get(e, e.mem, 72);
  assert.deepEqual([...after.subarray(28, 64)], new Array(36).fill(0x5a));
  assert.ok(u32At(e, e.mem + 16) > 0);
});

test("OPTION writes back only val64", () => {
  const e = env();
  const ioas = ioasAlloc(e);
  const { ro, rw, fill } = roPage(e);
  const o = bytesOf("iommu_option", { option_id: 1, op: 1, object_id: ioas });
  fill(PAGE - 16, o.subarray(0, 16)); // size..object_id on the read-only page, val64 on the next
  put(e, rw, new Uint8Array(8).fill(0x55));
  assert.equal(ioctl(e, IOMMU_OPTION, ro + PAGE - 16), "OK");
  assert.equal(u64At(e, rw), 1n);
  // a failing OPTION writes nothing
  put(e, e.mem, bytesOf("iommu_option", { option_id: 1, op: 1, object_id: 999, val64: 77n }));
  assert.equal(ioctl(e, IOMMU_OPTION, e.mem), "ENOENT");
  assert.equal(u64At(e, e.mem + 16), 77n);
  // SET writes val64 back too (the same value)
  fill(0, new Uint8Array(PAGE));
  fill(PAGE - 16, bytesOf("iommu_option", { option_id: 1, op: 0, object_id: ioas }).subarray(0, 16));
  put(e, rw, new Uint8Array(8));
  assert.equal(ioctl(e, IOMMU_OPTION, ro + PAGE - 16), "OK");
  put(e, e.mem, bytesOf("iommu_option", { option_id: 1, op: 1, object_id: ioas }));
  assert.equal(ioctl(e, IOMMU_OPTION, e.mem), "OK");
  assert.equal(u64At(e, e.mem + 16), 0n);
});

test("DESTROY, ALLOW_IOVAS, VFIO_IOAS SET/CLEAR, SET_DIRTY_TRACKING, GET_DIRTY_BITMAP and IOAS_CHANGE_PROCESS never write back", () => {
  const e = env();
  const ioas = ioasAlloc(e);
  const { idev } = mockDomain(e, ioas);
  const { ro, fill } = roPage(e);
  const onRo = (b: Uint8Array): number => {
    fill(0, new Uint8Array(PAGE));
    fill(0, b);
    return ro;
  };
  assert.equal(ioctl(e, IOMMU_DESTROY, onRo(bytesOf("iommu_destroy", { id: ioasAlloc(e) }))), "OK");
  assert.equal(ioctl(e, IOMMU_IOAS_ALLOW_IOVAS, onRo(bytesOf("iommu_ioas_allow_iovas", { ioas_id: ioas }))), "OK");
  assert.equal(ioctl(e, IOMMU_VFIO_IOAS, onRo(bytesOf("iommu_vfio_ioas", { ioas_id: ioas, op: 1 }))), "OK");
  assert.equal(ioctl(e, IOMMU_VFIO_IOAS, onRo(bytesOf("iommu_vfio_ioas", { op: 2 }))), "OK");
  // a dirty-tracking HWPT to toggle and read
  put(e, e.mem, bytesOf("iommu_hwpt_alloc", { flags: 2, dev_id: idev, pt_id: ioas }));
  assert.equal(ioctl(e, IOMMU_HWPT_ALLOC, e.mem), "OK");
  const hwpt = u32At(e, e.mem + 16);
  assert.equal(ioctl(e, IOMMU_HWPT_SET_DIRTY_TRACKING, onRo(bytesOf("iommu_hwpt_set_dirty_tracking", { flags: 1, hwpt_id: hwpt }))), "OK");
  const bitmap = e.mem + 2 * PAGE;
  const gb = bytesOf("iommu_hwpt_get_dirty_bitmap", { hwpt_id: hwpt, iova: 1n << 24n, length: 64n * 4096n, page_size: 4096n, data: BigInt(bitmap) });
  assert.equal(ioctl(e, IOMMU_HWPT_GET_DIRTY_BITMAP, onRo(gb)), "OK");
  assert.equal(ioctl(e, IOMMU_IOAS_CHANGE_PROCESS, onRo(bytesOf("iommu_ioas_change_process", {}))), "OK");
  // while those that respond fault on the same page
  assert.equal(ioctl(e, IOMMU_VFIO_IOAS, onRo(bytesOf("iommu_vfio_ioas", { ioas_id: ioas, op: 1 }))), "OK");
  assert.equal(ioctl(e, IOMMU_VFIO_IOAS, onRo(bytesOf("iommu_vfio_ioas", { op: 0 }))), "EFAULT");
  assert.equal(ioctl(e, IOMMU_IOAS_IOVA_RANGES, onRo(bytesOf("iommu_ioas_iova_ranges", { ioas_id: ioas, num_iovas: 0 }))), "EFAULT");
});

test("IOAS_UNMAP writes back only on success", () => {
  const e = env();
  const ioas = ioasAlloc(e);
  const buf = e.p.mmap(4 * PAGE, { shared: true });
  put(e, e.mem, bytesOf("iommu_ioas_map", { flags: 7, ioas_id: ioas, user_va: BigInt(buf), length: 4n * 4096n, iova: 1n << 24n }));
  assert.equal(ioctl(e, IOMMU_IOAS_MAP, e.mem), "OK");
  // failing (splits the area): length stays as given
  put(e, e.mem, bytesOf("iommu_ioas_unmap", { ioas_id: ioas, iova: 1n << 24n, length: 4096n }));
  assert.equal(ioctl(e, IOMMU_IOAS_UNMAP, e.mem), "ENOENT");
  assert.equal(u64At(e, e.mem + 16), 4096n);
  const { ro, fill } = roPage(e);
  fill(0, bytesOf("iommu_ioas_unmap", { ioas_id: ioas, iova: 1n << 24n, length: 4096n }));
  assert.equal(ioctl(e, IOMMU_IOAS_UNMAP, ro), "ENOENT", "no write-back, so no fault");
  // succeeding: the unmapped byte count comes back
  put(e, e.mem, bytesOf("iommu_ioas_unmap", { ioas_id: ioas, iova: 0n, length: U64_MAX }));
  assert.equal(ioctl(e, IOMMU_IOAS_UNMAP, e.mem), "OK");
  assert.equal(u64At(e, e.mem + 16), 4n * 4096n);
  fill(0, bytesOf("iommu_ioas_unmap", { ioas_id: ioas, iova: 0n, length: U64_MAX }));
  assert.equal(ioctl(e, IOMMU_IOAS_UNMAP, ro), "EFAULT");
});

test("IOAS_MAP and IOAS_COPY write back only on success (iova untouched by a failure)", () => {
  const e = env();
  const ioas = ioasAlloc(e);
  put(e, e.mem, bytesOf("iommu_ioas_map", { flags: 1 << 5, ioas_id: ioas, iova: 77n }));
  assert.equal(ioctl(e, IOMMU_IOAS_MAP, e.mem), "EOPNOTSUPP");
  assert.equal(u64At(e, e.mem + 32), 77n);
  put(e, e.mem, bytesOf("iommu_ioas_copy", { flags: 6, dst_ioas_id: ioas, src_ioas_id: ioas, length: 4096n, dst_iova: 5n, src_iova: 0n }));
  assert.equal(ioctl(e, 0x3b83, e.mem), "ENOENT");
  assert.equal(u64At(e, e.mem + 24), 5n);
});

test("HWPT_INVALIDATE writes entry_num back even when it fails", () => {
  const e = env();
  put(e, e.mem, bytesOf("iommu_hwpt_invalidate", { hwpt_id: 9999, data_uptr: BigInt(e.mem + PAGE), entry_len: 8, entry_num: 5 }));
  assert.equal(ioctl(e, IOMMU_HWPT_INVALIDATE, e.mem), "ENOENT");
  assert.equal(u32At(e, e.mem + 24), 0);
  put(e, e.mem, bytesOf("iommu_hwpt_invalidate", { hwpt_id: 9999, __reserved: 1, entry_num: 3 }));
  assert.equal(ioctl(e, IOMMU_HWPT_INVALIDATE, e.mem), "EOPNOTSUPP");
  assert.equal(u32At(e, e.mem + 24), 0);
  const { ro, fill } = roPage(e);
  fill(0, bytesOf("iommu_hwpt_invalidate", { hwpt_id: 9999, data_uptr: BigInt(e.mem + PAGE), entry_len: 8, entry_num: 5 }));
  assert.equal(ioctl(e, IOMMU_HWPT_INVALIDATE, ro), "EFAULT", "the failed write-back wins");
  // a rule checked before the handler (size) writes nothing
  put(e, e.mem, bytesOf("iommu_hwpt_invalidate", { size: 31, entry_num: 3 }));
  assert.equal(ioctl(e, IOMMU_HWPT_INVALIDATE, e.mem), "EINVAL");
  assert.equal(u32At(e, e.mem + 24), 3);
});

test("IOVA_RANGES writes num_iovas (the count needed) and the alignment back with EMSGSIZE", () => {
  const e = env();
  const ioas = ioasAlloc(e);
  mockDomain(e, ioas);
  put(e, e.mem, bytesOf("iommu_ioas_iova_ranges", { ioas_id: ioas, num_iovas: 0, allowed_iovas: BigInt(e.mem + PAGE) }));
  assert.equal(ioctl(e, IOMMU_IOAS_IOVA_RANGES, e.mem), "EMSGSIZE");
  assert.equal(u32At(e, e.mem + 8), 1);
  assert.equal(u64At(e, e.mem + 24), 2048n);
  put(e, e.mem, bytesOf("iommu_ioas_iova_ranges", { ioas_id: 999, num_iovas: 0 }));
  assert.equal(ioctl(e, IOMMU_IOAS_IOVA_RANGES, e.mem), "ENOENT");
  assert.equal(u64At(e, e.mem + 24), 0n, "other failures write nothing");
});

test("IOMMU_TEST_CMD writes back only for MOCK_DOMAIN(_FLAGS), MOCK_DOMAIN_REPLACE, CREATE_ACCESS, ACCESS_PAGES, DIRTY, PASID_ATTACH and PASID_REPLACE", () => {
  assert.deepEqual([...TEST_OPS_RESPOND].sort((a, b) => a - b), [2, 5, 7, 10, 12, 13, 18, 19]);
  const e = env();
  const ioas = ioasAlloc(e);
  const { ro, fill } = roPage(e);
  const onRo = (o: Record<string, number | bigint>): number => {
    fill(0, new Uint8Array(PAGE));
    fill(0, bytesOf("iommu_test_cmd", o));
    return ro;
  };
  assert.equal(ioctl(e, IOMMU_TEST_CMD, onRo({ op: 1, id: ioas, start: 1n << 40n, length: 4096n })), "OK");
  assert.equal(ioctl(e, IOMMU_TEST_CMD, onRo({ op: 9, limit: 65536 })), "OK");
  assert.equal(ioctl(e, IOMMU_TEST_CMD, onRo({ op: 4, length: 4096n, uptr: BigInt(e.mem), refs: 0 })), "OK");
  assert.equal(ioctl(e, IOMMU_TEST_CMD, onRo({ op: 2, id: ioas })), "EFAULT");
  assert.equal(ioctl(e, IOMMU_TEST_CMD, onRo({ op: 12, id: ioas, dev_flags: 0 })), "EFAULT");
  assert.equal(ioctl(e, IOMMU_TEST_CMD, onRo({ op: 5, id: ioas, flags: 0 })), "EFAULT");
  const { stdev } = mockDomain(e, ioas);
  assert.equal(ioctl(e, IOMMU_TEST_CMD, onRo({ op: 10, id: stdev, pt_id: ioas })), "EFAULT");
});

test("a creating ioctl whose result cannot be copied back leaves no object, no fd, and its ID is reused", () => {
  const e = env();
  const ioas = ioasAlloc(e);
  const { idev } = mockDomain(e, ioas);
  const { ro, fill } = roPage(e);
  const onRo = (b: Uint8Array): number => {
    fill(0, new Uint8Array(PAGE));
    fill(0, b);
    return ro;
  };
  const before = () => ({ objects: [...e.ctx.objects.keys()].sort((a, b) => a - b).join(","), fds: e.ctx.fds.size });
  const s0 = before();
  assert.equal(ioctl(e, IOMMU_IOAS_ALLOC, onRo(bytesOf("iommu_ioas_alloc", {}))), "EFAULT");
  assert.deepEqual(before(), s0);
  assert.equal(ioctl(e, IOMMU_HWPT_ALLOC, onRo(bytesOf("iommu_hwpt_alloc", { dev_id: idev, pt_id: ioas }))), "EFAULT");
  assert.deepEqual(before(), s0);
  assert.equal(ioctl(e, IOMMU_FAULT_QUEUE_ALLOC, onRo(bytesOf("iommu_fault_alloc", {}))), "EFAULT");
  assert.deepEqual(before(), s0);
  assert.equal(ioctl(e, IOMMU_TEST_CMD, onRo(bytesOf("iommu_test_cmd", { op: 2, id: ioas }))), "EFAULT");
  assert.deepEqual(before(), s0);
  assert.equal(ioctl(e, IOMMU_TEST_CMD, onRo(bytesOf("iommu_test_cmd", { op: 5, id: ioas }))), "EFAULT");
  assert.deepEqual(before(), s0);
  const next = Math.max(...e.ctx.objects.keys()) + 1;
  assert.equal(ioasAlloc(e), next);
});

// ------------------------------------------------------------------------------ profiles

test("profile 6.12: 0x8f..0x94 are ENOTTY (holes, after the size read); newest knows them", () => {
  const e612 = env("6.12");
  const en = env("newest");
  for (let nr = 0x8f; nr <= 0x94; nr++) {
    const d = ioctlFor(_IO(T, nr), "newest") as IoctlDef;
    assert.ok(d);
    assert.equal(ioctlFor(_IO(T, nr), "6.12"), null);
    assert.equal(run(e612, d.request, d.struct.name, {}), "ENOTTY", d.name);
    assert.equal(ioctl(e612, d.request, 0), "EFAULT", d.name);
    assert.notEqual(run(en, d.request, d.struct.name, {}), "ENOTTY", d.name);
  }
});

test("profile newest: IOAS_MAP_FILE and IOAS_CHANGE_PROCESS reach the library", () => {
  const e = env("newest");
  const ioas = ioasAlloc(e);
  assert.equal(run(e, IOMMU_IOAS_CHANGE_PROCESS, "iommu_ioas_change_process", {}), "OK");
  assert.equal(run(e, IOMMU_IOAS_CHANGE_PROCESS, "iommu_ioas_change_process", { __reserved: 1 }), "EOPNOTSUPP");
  // a bad fd: the library's memfd lookup answers (EBADF), not the dispatcher
  assert.equal(run(e, IOMMU_IOAS_MAP_FILE, "iommu_ioas_map_file", { flags: 6, ioas_id: ioas, fd: -1, length: 4096n }), "EBADF");
});

test("profile newest: the HW queue ioctl is not implemented: EOPNOTSUPP, nothing created or written", () => {
  const notImpl = IOCTLS.filter((d) => d.notImplemented);
  assert.deepEqual(
    notImpl.map((d) => [d.name, d.notImplemented?.errno]),
    [["IOMMU_HW_QUEUE_ALLOC", "EOPNOTSUPP"]],
  );
  const e = env("newest");
  const ioas = ioasAlloc(e);
  const { idev, hwpt } = mockDomain(e, ioas);
  for (const d of notImpl) {
    const b = bytesOf(d.struct.name, { type: 0xdeadbeef, dev_id: idev, hwpt_id: hwpt, viommu_id: 1, veventq_depth: 2 });
    put(e, e.mem, b);
    const objs = e.ctx.objects.size;
    assert.equal(ioctl(e, d.request, e.mem), "EOPNOTSUPP", d.name);
    assert.equal(e.ctx.objects.size, objs);
    assert.deepEqual(get(e, e.mem, d.struct.size), b, `${d.name} wrote nothing back`);
    // the generic rules still come first
    assert.equal(run(e, d.request, d.struct.name, { size: d.min - 1 }), "EINVAL");
  }
});

test("profile 6.12: selftest ops newer than 6.12 (16..21) are EOPNOTSUPP", () => {
  const e = env("6.12");
  for (let op = 16; op <= 21; op++) assert.equal(run(e, IOMMU_TEST_CMD, "iommu_test_cmd", { op }), "EOPNOTSUPP", `op ${op}`);
  assert.equal(run(e, IOMMU_TEST_CMD, "iommu_test_cmd", { op: 0 }), "EOPNOTSUPP");
  assert.equal(run(e, IOMMU_TEST_CMD, "iommu_test_cmd", { op: 9, limit: 65536 }), "OK");
});

// ------------------------------------------------------------------------------ VFIO compat

test("VFIO integer-argument ioctls: GET_API_VERSION returns 0, CHECK_EXTENSION(TYPE1v2) returns 1", () => {
  for (const p of PROFILES) {
    const e = env(p);
    assert.deepEqual(call(e, VFIO_GET_API_VERSION, 0), { res: "OK", ret: 0 });
    assert.deepEqual(call(e, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), { res: "OK", ret: 1 });
    assert.deepEqual(call(e, VFIO_CHECK_EXTENSION, 1), { res: "OK", ret: 1 });
    assert.deepEqual(call(e, VFIO_CHECK_EXTENSION, 9), { res: "OK", ret: 1 });
    for (const x of [0, 2, 6, 8, 10, 11]) assert.deepEqual(call(e, VFIO_CHECK_EXTENSION, x), { res: "OK", ret: 0 }, `ext ${x}`);
    // the argument is an unsigned long: a high bit makes it another (unknown) value
    assert.deepEqual(call(e, VFIO_CHECK_EXTENSION, (1n << 32n) | 3n), { res: "OK", ret: 0 });
    assert.deepEqual(call(e, VFIO_CHECK_EXTENSION, U64_MAX), { res: "OK", ret: 0 });
    assert.equal(ioctl(e, VFIO_SET_IOMMU, 7), "EINVAL");
    assert.equal(ioctl(e, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), "ENODEV");
    // size bits make them unknown; DIRTY_PAGES and the rest are ENOTTY
    assert.equal(ioctl(e, IOC_SIZE(VFIO_GET_API_VERSION, 4), 0), "ENOTTY");
    assert.equal(ioctl(e, 0x3b75, e.mem), "ENOTTY");
    assert.equal(ioctl(e, 0x3b67, e.mem), "ENOTTY");
  }
});

test("VFIO pointer ioctls reach the compat layer with the caller's pointer", () => {
  const e = env();
  assert.equal(ioctl(e, VFIO_IOMMU_GET_INFO, 0), "EFAULT");
  put(e, e.mem, encode("vfio_iommu_type1_info", { argsz: 16 }));
  assert.equal(ioctl(e, VFIO_IOMMU_GET_INFO, e.mem), "ENODEV");
  const ioas = ioasAlloc(e);
  mockDomain(e, ioas);
  put(e, e.mem, bytesOf("iommu_vfio_ioas", { ioas_id: ioas, op: 1 }));
  assert.equal(ioctl(e, IOMMU_VFIO_IOAS, e.mem), "OK");
  assert.deepEqual(call(e, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), { res: "OK", ret: 0 });
  put(e, e.mem, encode("vfio_iommu_type1_info", { argsz: 24 }));
  assert.equal(ioctl(e, VFIO_IOMMU_GET_INFO, e.mem), "OK");
  const info = structOf("vfio_iommu_type1_info");
  assert.ok(u32At(e, e.mem) > info.size, "argsz raised to the size with capabilities");
  const buf = e.p.mmap(4 * PAGE, { shared: true });
  put(e, e.mem, encode("vfio_iommu_type1_dma_map", { argsz: 32, flags: 3, vaddr: BigInt(buf), iova: 1n << 24n, size: 4096n }));
  assert.equal(ioctl(e, VFIO_IOMMU_MAP_DMA, e.mem), "OK");
  put(e, e.mem, encode("vfio_iommu_type1_dma_unmap", { argsz: 24, iova: 1n << 24n, size: 4096n }));
  assert.equal(ioctl(e, VFIO_IOMMU_UNMAP_DMA, e.mem), "OK");
  assert.equal(u64At(e, e.mem + 16), 4096n);
});

// ------------------------------------------------------------------------------ selftest ports

test("selftest iommufd.cmd_fail: DESTROY id 0 ENOENT, NULL EFAULT, _IO(';', 0x7f) ENOTTY", () => {
  for (const p of PROFILES) {
    const e = env(p);
    assert.equal(run(e, IOMMU_DESTROY, "iommu_destroy", { id: 0 }), "ENOENT");
    assert.equal(ioctl(e, IOMMU_DESTROY, 0), "EFAULT");
    assert.equal(ioctl(e, _IO(T, 0x80 - 1), e.mem), "ENOTTY");
  }
});

/**
 * TEST_LENGTH(_struct, _ioctl, _last) of the selftest's cmd_length: on one struct buffer followed
 * by one extra byte (0xff, then 0): size = min-1 -> EINVAL; sizeof+1 -> E2BIG; sizeof -> some
 * result; sizeof+1 with a zero extra byte -> the same result. The buffer is reused, as in C.
 */
function testLength(e: Env, name: string, request: number, last: string): void {
  const s = structOf(name);
  const f = s.all.find((x) => x.cpath === last);
  assert.ok(f, `${name}.${last}`);
  const minSize = f.offset + f.elemSize * f.count;
  assert.equal(ioctlFor(request)?.min, minSize, `${name}: the table's minimum is offsetofend(${last})`);
  const at = e.mem + 2 * PAGE;
  const cmd = new Uint8Array(s.size + 1);
  new DataView(cmd.buffer).setUint32(0, minSize - 1, true);
  cmd[s.size] = 0xff;
  put(e, at, cmd);
  assert.equal(ioctl(e, request, at), "EINVAL", `${name}: size min-1`);
  put(e, at, encode("iommu_destroy", { size: s.size + 1 }).subarray(0, 4));
  assert.equal(ioctl(e, request, at), "E2BIG", `${name}: size sizeof+1`);
  put(e, at, encode("iommu_destroy", { size: s.size }).subarray(0, 4));
  const rc = ioctl(e, request, at);
  put(e, at, encode("iommu_destroy", { size: s.size + 1 }).subarray(0, 4));
  put(e, at + s.size, new Uint8Array([0]));
  assert.equal(ioctl(e, request, at), rc, `${name}: sizeof+1 with a zero extra byte answers as sizeof (${rc})`);
}

const LENGTH_612: [string, number, string][] = [
  ["iommu_destroy", IOMMU_DESTROY, "id"],
  ["iommu_hw_info", IOMMU_GET_HW_INFO, "__reserved"],
  ["iommu_hwpt_alloc", IOMMU_HWPT_ALLOC, "__reserved"],
  ["iommu_hwpt_invalidate", IOMMU_HWPT_INVALIDATE, "__reserved"],
  ["iommu_ioas_alloc", IOMMU_IOAS_ALLOC, "out_ioas_id"],
  ["iommu_ioas_iova_ranges", IOMMU_IOAS_IOVA_RANGES, "out_iova_alignment"],
  ["iommu_ioas_allow_iovas", IOMMU_IOAS_ALLOW_IOVAS, "allowed_iovas"],
  ["iommu_ioas_map", IOMMU_IOAS_MAP, "iova"],
  ["iommu_ioas_copy", 0x3b83, "src_iova"],
  ["iommu_ioas_unmap", IOMMU_IOAS_UNMAP, "length"],
  ["iommu_option", IOMMU_OPTION, "val64"],
  ["iommu_vfio_ioas", IOMMU_VFIO_IOAS, "__reserved"],
];
const LENGTH_NEWER: [string, number, string][] = [
  ["iommu_ioas_map_file", IOMMU_IOAS_MAP_FILE, "iova"],
  ["iommu_viommu_alloc", 0x3b90, "out_viommu_id"],
  ["iommu_vdevice_alloc", 0x3b91, "virt_id"],
  ["iommu_ioas_change_process", IOMMU_IOAS_CHANGE_PROCESS, "__reserved"],
];

test("selftest iommufd.cmd_length: the 12 structs of 6.12, under both profiles", () => {
  for (const p of PROFILES) {
    const e = env(p);
    for (const [name, req, last] of LENGTH_612) testLength(e, name, req, last);
  }
});

test("selftest iommufd.cmd_length: the 4 newer structs (map_file, viommu_alloc, vdevice_alloc, change_process), profile newest", () => {
  const e = env("newest");
  for (const [name, req, last] of LENGTH_NEWER) testLength(e, name, req, last);
});

test("selftest iommufd.cmd_ex_fail: a u64 'future' field after iommu_destroy", () => {
  for (const p of PROFILES) {
    const e = env(p);
    const b = new Uint8Array(16);
    b.set(encode("iommu_destroy", { size: 16, id: 0 }));
    put(e, e.mem, b);
    assert.equal(ioctl(e, IOMMU_DESTROY, e.mem), "ENOENT", "object id is invalid and command is longer");
    put(e, e.mem + 8, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
    assert.equal(ioctl(e, IOMMU_DESTROY, e.mem), "E2BIG", "future area is non-zero");
    put(e, e.mem, encode("iommu_destroy", { size: 8, id: 0 }));
    assert.equal(ioctl(e, IOMMU_DESTROY, e.mem), "ENOENT", "original command works");
    put(e, e.mem, encode("iommu_destroy", { size: 7, id: 0 }));
    assert.equal(ioctl(e, IOMMU_DESTROY, e.mem), "EINVAL", "short command fails");
  }
});
