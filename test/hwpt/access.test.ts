/**
 * In-kernel accesses through the selftest ops CREATE_ACCESS, ACCESS_PAGES, DESTROY_ACCESS_PAGES,
 * ACCESS_RW and ACCESS_REPLACE_IOAS (device.c iommufd_access_*, selftest.c). Expectations are
 * the 6.12 kernel's (oracle-measured errnos).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  S,
  env,
  expectErr,
  failsCleanly,
  ioasMap,
  mockDomain,
  checkMap,
  checkRefs,
  scratch,
  snapshot,
  BASE,
  BUFFER_SIZE,
  MOCK_PAGE,
  PAGE,
  type Env,
} from "./helpers.js";

const NEEDS_PIN = S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES;

function createAccess(e: Env, ioas: number, flags = 0): number {
  return e.ctx.testCmd({ op: S.IOMMU_TEST_OP_CREATE_ACCESS, id: ioas, flags }).out_access_fd as number;
}

function accessPages(e: Env, fd: number, iova: bigint, length: number, uptr: number | bigint, flags = 0): number {
  return e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_PAGES, id: fd, flags, iova, length: BigInt(length), uptr: BigInt(uptr) }).out_access_pages_id as number;
}

function destroyPages(e: Env, fd: number, id: number): void {
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, id: fd, access_pages_id: id });
}

function accessRw(e: Env, fd: number, iova: bigint, length: number, uptr: bigint, flags = 0): void {
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_RW, id: fd, iova, length: BigInt(length), uptr, flags });
}

function closeFd(e: Env, fd: number): void {
  S.fdTableOf(e.p).close(fd);
}

function alignment(e: Env, ioas: number): bigint {
  const err = expectErr("EMSGSIZE", () => e.ctx.ioasIovaRanges({ ioas_id: ioas, num_iovas: 0, allowed_iovas: 0n }));
  return (err.out as S.IommuIoasIovaRanges).out_iova_alignment as bigint;
}

test("create_access: returns a new fd and an access object ID; flags and the IOAS are checked", () => {
  const e = env();
  failsCleanly(e, "EOPNOTSUPP", () => createAccess(e, e.ioas, 2), "unknown flag");
  failsCleanly(e, "ENOENT", () => createAccess(e, 999), "unknown IOAS");
  const a = createAccess(e, e.ioas);
  const b = createAccess(e, e.ioas, NEEDS_PIN);
  assert.equal(b - a, 1);
  assert.deepEqual([...e.ctx.objects.keys()], [1, 2, 3], "each access takes an object ID");
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: 2 }), "the access object belongs to its fd");
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: e.ioas }), "the IOAS has accesses");
  closeFd(e, a);
  closeFd(e, b);
  assert.deepEqual([...e.ctx.objects.keys()], [1]);
  e.ctx.destroy({ id: e.ioas });
});

test("create_access: a pinning access raises the IOAS alignment to PAGE_SIZE; a plain one does not", () => {
  const e = env();
  const a = createAccess(e, e.ioas);
  assert.equal(alignment(e, e.ioas), 1n);
  const b = createAccess(e, e.ioas, NEEDS_PIN);
  assert.equal(alignment(e, e.ioas), BigInt(PAGE));
  expectErr("EINVAL", () => ioasMap(e.ctx, e.ioas, e.buf, PAGE, 0x100800n), "unaligned IOVA");
  closeFd(e, b);
  assert.equal(alignment(e, e.ioas), 1n);
  ioasMap(e.ctx, e.ioas, e.buf, PAGE, 0x100800n);
  failsCleanly(e, "EADDRINUSE", () => createAccess(e, e.ioas, NEEDS_PIN), "an existing unaligned mapping");
  closeFd(e, a);
});

test("access_pages: argument errors (EOPNOTSUPP, ENOMEM, EBADFD, EINVAL, ENOENT, EPERM, EBADE) change nothing", () => {
  const e = env();
  const plain = createAccess(e, e.ioas);
  const pin = createAccess(e, e.ioas, NEEDS_PIN);
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  ioasMap(e.ctx, e.ioas, e.buf, 0x10000, 0x100000n);
  ioasMap(e.ctx, e.ioas, e.buf, PAGE, 0x200000n, S.IOMMU_IOAS_MAP_READABLE);
  const ap = (o: { fd?: number; iova?: bigint; len?: number; uptr?: number; flags?: number }) => () =>
    accessPages(e, o.fd ?? pin, o.iova ?? 0x100000n, o.len ?? PAGE, o.uptr ?? e.buf, o.flags ?? 0);
  failsCleanly(e, "EOPNOTSUPP", ap({ fd: plain }), "an access without NEEDS_PIN_PAGES");
  failsCleanly(e, "EOPNOTSUPP", ap({ flags: 4 }), "unknown flag");
  failsCleanly(e, "ENOMEM", ap({ len: (16 << 20) + 1 }), "more than 16 MiB");
  failsCleanly(e, "ENOMEM", ap({ len: (16 << 20) + 1, fd: 999, flags: 4 }), "the length check comes first");
  failsCleanly(e, "EBADFD", ap({ fd: 0 }), "fd 0");
  failsCleanly(e, "EBADFD", ap({ fd: 999 }), "a closed fd");
  failsCleanly(e, "EBADFD", ap({ fd: f.out_fault_fd as number }), "a fault fd");
  failsCleanly(e, "EBADE", ap({ uptr: e.buf + PAGE }), "uptr is not the memory behind the IOVA");
  failsCleanly(e, "EINVAL", ap({ len: 0 }), "length 0");
  failsCleanly(e, "EINVAL", ap({ iova: 0x100800n }), "unaligned IOVA");
  failsCleanly(e, "ENOENT", ap({ iova: 0x300000n }), "nothing mapped");
  failsCleanly(e, "ENOENT", ap({ iova: 0x10f000n, len: 2 * PAGE, uptr: e.buf + 0xf000 }), "runs past the end of the mapping");
  failsCleanly(e, "EPERM", ap({ iova: 0x200000n, flags: S.MOCK_FLAGS_ACCESS_WRITE }), "write pin of a read-only mapping");
  checkRefs(e.ctx, e.buf, BUFFER_SIZE, 0);
  // reading a read-only mapping is fine
  accessPages(e, pin, 0x200000n, PAGE, e.buf);
  checkRefs(e.ctx, e.buf, PAGE, 1);
});

test("access_pages: pins once per page whatever the number of users; items are destroyed by id", () => {
  const e = env();
  const pin = createAccess(e, e.ioas, NEEDS_PIN);
  ioasMap(e.ctx, e.ioas, e.buf, 0x10000, 0x100000n);
  checkRefs(e.ctx, e.buf, 2 * PAGE, 0);
  const a = accessPages(e, pin, 0x100000n, 2 * PAGE, e.buf);
  assert.equal(a, 0, "item ids count from 0 per access");
  checkRefs(e.ctx, e.buf, 2 * PAGE, 1);
  const b = accessPages(e, pin, 0x100000n, 2 * PAGE, e.buf, S.MOCK_FLAGS_ACCESS_WRITE);
  const c = accessPages(e, pin, 0x100000n, PAGE, 0);
  assert.deepEqual([b, c], [1, 2]);
  checkRefs(e.ctx, e.buf, 2 * PAGE, 1);
  failsCleanly(e, "ENOENT", () => destroyPages(e, pin, 77), "unknown item");
  failsCleanly(e, "EBADFD", () => destroyPages(e, 999, a), "not an access fd");
  destroyPages(e, pin, c);
  destroyPages(e, pin, a);
  checkRefs(e.ctx, e.buf, 2 * PAGE, 1);
  destroyPages(e, pin, b);
  checkRefs(e.ctx, e.buf, 2 * PAGE, 0);
  failsCleanly(e, "ENOENT", () => destroyPages(e, pin, b), "already destroyed");
  assert.equal(accessPages(e, pin, 0x101000n, PAGE, e.buf + PAGE), 3, "ids are not reused");
});

test("access_pin_unmap: IOAS_UNMAP calls the unmap callback, which drops the pinned items", () => {
  const e = env();
  const pin = createAccess(e, e.ioas, NEEDS_PIN);
  ioasMap(e.ctx, e.ioas, e.buf, BUFFER_SIZE, BASE);
  const id = accessPages(e, pin, BASE, BUFFER_SIZE, e.buf);
  const id2 = accessPages(e, pin, BASE + BigInt(PAGE), PAGE, e.buf + PAGE);
  checkRefs(e.ctx, e.buf, BUFFER_SIZE, 1);
  assert.equal(e.ctx.ioasUnmap({ ioas_id: e.ioas, iova: BASE, length: BigInt(BUFFER_SIZE) }).length, BigInt(BUFFER_SIZE));
  expectErr("ENOENT", () => destroyPages(e, pin, id), "the kernel removed the item for us");
  expectErr("ENOENT", () => destroyPages(e, pin, id2));
  checkRefs(e.ctx, e.buf, BUFFER_SIZE, 0);
});

test("access_pin: a domain added and removed while pages are pinned maps the same pages (selftest access_pin)", () => {
  const e = env();
  const pin = createAccess(e, e.ioas, NEEDS_PIN);
  for (let npages = 1; npages < BUFFER_SIZE / PAGE; npages++) {
    const len = npages * PAGE;
    ioasMap(e.ctx, e.ioas, e.buf, BUFFER_SIZE, BASE);
    destroyPages(e, pin, accessPages(e, pin, BASE, len, e.buf));
    const x = accessPages(e, pin, BASE, len, e.buf);
    const y = accessPages(e, pin, BASE, len, e.buf);
    destroyPages(e, pin, y);
    destroyPages(e, pin, x);
    const z = accessPages(e, pin, BASE, len, e.buf);
    const md = mockDomain(e.ctx, e.ioas);
    checkMap(e.ctx, md.hwpt, BASE, BUFFER_SIZE, e.buf);
    checkRefs(e.ctx, e.buf, BUFFER_SIZE, 1);
    e.ctx.destroy({ id: md.stdev });
    destroyPages(e, pin, z);
    e.ctx.ioasUnmap({ ioas_id: e.ioas, iova: BASE, length: BigInt(BUFFER_SIZE) });
    checkRefs(e.ctx, e.buf, BUFFER_SIZE, 0);
  }
  closeFd(e, pin);
});

test("access_domain_destroy: unpinning across a huge page after the domain went", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const size = 2 * (2 << 20);
  const hbuf = e.p.mmap(size, { shared: true, hugetlb: 21, populate: true });
  ioasMap(e.ctx, e.ioas, hbuf, size, BASE);
  const pin = createAccess(e, e.ioas, NEEDS_PIN);
  const id = accessPages(e, pin, BASE + BigInt(PAGE), PAGE, hbuf + PAGE);
  e.ctx.destroy({ id: md.stdev });
  destroyPages(e, pin, id);
  closeFd(e, pin);
  e.p.munmap(hbuf, size);
  e.ctx.destroy({ id: e.ioas });
});

/** check_access_rw from the selftest. */
function checkAccessRw(e: Env, fd: number, iova: bigint, defFlags: number): void {
  const fill = new Uint8Array(BUFFER_SIZE);
  let seed = 12345;
  const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
  for (let i = 0; i < fill.length; i++) fill[i] = rand();
  e.p.write(e.buf, fill);
  const tmp = scratch(e.p, 64);
  for (let off = PAGE - 50; off < PAGE + 50; off += 7) {
    for (let len = 1; len < 64; len += 3) {
      accessRw(e, fd, iova + BigInt(off), len, tmp, defFlags);
      assert.deepEqual(e.p.read(Number(tmp), len), e.p.read(e.buf + off, len), `read off ${off} len ${len}`);
      const w = new Uint8Array(64).map(() => rand());
      e.p.write(Number(tmp), w);
      accessRw(e, fd, iova + BigInt(off), len, tmp, defFlags | S.MOCK_ACCESS_RW_WRITE);
      assert.deepEqual(e.p.read(e.buf + off, len), w.subarray(0, len), `write off ${off} len ${len}`);
    }
  }
  const big = scratch(e.p, BUFFER_SIZE);
  accessRw(e, fd, iova, BUFFER_SIZE, big, defFlags);
  assert.deepEqual(e.p.read(Number(big), BUFFER_SIZE), e.p.read(e.buf, BUFFER_SIZE));
}

test("access_rw: read and write through IOVA, unaligned, across pages, fast and slow path", () => {
  const e = env();
  const fd = createAccess(e, e.ioas);
  const iova = e.ctx.ioasMap({ flags: 6, ioas_id: e.ioas, user_va: BigInt(e.buf), length: BigInt(BUFFER_SIZE), iova: 0n }).iova;
  checkAccessRw(e, fd, iova, 0);
  checkAccessRw(e, fd, iova, S.MOCK_ACCESS_RW_SLOW_PATH);
  checkRefs(e.ctx, e.buf, BUFFER_SIZE, 0);
  e.ctx.ioasUnmap({ ioas_id: e.ioas, iova, length: BigInt(BUFFER_SIZE) });
  closeFd(e, fd);
});

test("access_rw_unaligned: an IOVA at MOCK_PAGE_SIZE offset", () => {
  const e = env();
  const fd = createAccess(e, e.ioas);
  const iova = BASE + BigInt(MOCK_PAGE);
  ioasMap(e.ctx, e.ioas, e.buf, BUFFER_SIZE, iova);
  checkAccessRw(e, fd, iova, 0);
});

test("access_rw: works through a pinning access and with a domain attached", () => {
  const e = env();
  mockDomain(e.ctx, e.ioas);
  const fd = createAccess(e, e.ioas, NEEDS_PIN);
  ioasMap(e.ctx, e.ioas, e.buf, BUFFER_SIZE, BASE);
  checkAccessRw(e, fd, BASE, 0);
  checkAccessRw(e, fd, BASE, S.MOCK_ACCESS_RW_SLOW_PATH);
});

test("access_rw: across two adjacent mappings of different memory", () => {
  const e = env();
  const fd = createAccess(e, e.ioas);
  const other = e.p.mmap(PAGE, { shared: true });
  e.p.write(other, new Uint8Array(PAGE).fill(0x77));
  ioasMap(e.ctx, e.ioas, e.buf, PAGE, 0x100000n);
  ioasMap(e.ctx, e.ioas, other, PAGE, 0x101000n);
  const tmp = scratch(e.p, 16);
  accessRw(e, fd, 0x100ff8n, 16, tmp);
  assert.deepEqual(e.p.read(Number(tmp), 16), new Uint8Array([...e.p.read(e.buf + 0xff8, 8), ...new Array(8).fill(0x77)]));
});

test("access_rw: error cases change nothing", () => {
  const e = env();
  const fd = createAccess(e, e.ioas);
  ioasMap(e.ctx, e.ioas, e.buf, 0x10000, 0x100000n);
  ioasMap(e.ctx, e.ioas, e.buf + 0x10000 - PAGE, PAGE, 0x200000n, S.IOMMU_IOAS_MAP_READABLE);
  const tmp = scratch(e.p, 64);
  const rw = (o: { fd?: number; iova?: bigint; len?: number; uptr?: bigint; flags?: number }) => () =>
    accessRw(e, o.fd ?? fd, o.iova ?? 0x100000n, o.len ?? 32, o.uptr ?? tmp, o.flags ?? 0);
  failsCleanly(e, "EINVAL", rw({ len: 0 }), "length 0");
  failsCleanly(e, "ENOENT", rw({ iova: 0x10fff0n }), "runs past the mapping");
  failsCleanly(e, "ENOENT", rw({ iova: 0x300000n }), "nothing mapped");
  failsCleanly(e, "EOPNOTSUPP", rw({ flags: 2 }), "unknown flag");
  failsCleanly(e, "ENOMEM", rw({ len: (16 << 20) + 1 }), "more than 16 MiB");
  failsCleanly(e, "EFAULT", rw({ uptr: 0n }), "NULL buffer (read)");
  failsCleanly(e, "EFAULT", rw({ uptr: 0n, flags: S.MOCK_ACCESS_RW_WRITE }), "NULL buffer (write)");
  failsCleanly(e, "EBADFD", rw({ fd: 999 }), "not an access fd");
  failsCleanly(e, "EPERM", rw({ iova: 0x200000n, len: 8, flags: S.MOCK_ACCESS_RW_WRITE }), "write to a read-only mapping");
  accessRw(e, fd, 0x200000n, 8, tmp);
});

test("access_replace_ioas: moves the access, dropping its pins; errors change nothing", () => {
  const e = env();
  const pin = createAccess(e, e.ioas, NEEDS_PIN);
  const ioas2 = e.ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  ioasMap(e.ctx, e.ioas, e.buf, 0x10000, 0x100000n);
  const id = accessPages(e, pin, 0x100000n, PAGE, e.buf);
  failsCleanly(e, "ENOENT", () => e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, id: pin, ioas_id: 999 }), "unknown IOAS");
  const accessObj = [...e.ctx.objects.values()].find((o) => o.type === "access")?.id as number;
  failsCleanly(e, "ENOENT", () => e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, id: pin, ioas_id: accessObj }), "an access object is not an IOAS");
  failsCleanly(e, "EBADFD", () => e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, id: 999, ioas_id: ioas2 }), "bad fd");
  const before = snapshot(e);
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, id: pin, ioas_id: e.ioas });
  assert.deepEqual(snapshot(e), before, "replacing with the same IOAS is a no-op");
  checkRefs(e.ctx, e.buf, PAGE, 1);
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, id: pin, ioas_id: ioas2 });
  checkRefs(e.ctx, e.buf, PAGE, 0);
  expectErr("ENOENT", () => destroyPages(e, pin, id), "the unmap callback removed the item");
  e.ctx.destroy({ id: e.ioas });
  expectErr("EBUSY", () => e.ctx.destroy({ id: ioas2 }));
  expectErr("ENOENT", () => accessPages(e, pin, 0x100000n, PAGE, e.buf), "nothing mapped in the new IOAS");
  ioasMap(e.ctx, ioas2, e.buf, PAGE, 0x100000n);
  accessPages(e, pin, 0x100000n, PAGE, e.buf);
  checkRefs(e.ctx, e.buf, PAGE, 1);
  closeFd(e, pin);
  checkRefs(e.ctx, e.buf, PAGE, 0);
  e.ctx.destroy({ id: ioas2 });
});

test("access: closing the access fd unpins its items and frees the object and its ID", () => {
  const e = env();
  const pin = createAccess(e, e.ioas, NEEDS_PIN);
  ioasMap(e.ctx, e.ioas, e.buf, 0x10000, 0x100000n);
  accessPages(e, pin, 0x100000n, 4 * PAGE, e.buf);
  checkRefs(e.ctx, e.buf, 4 * PAGE, 1);
  closeFd(e, pin);
  checkRefs(e.ctx, e.buf, 4 * PAGE, 0);
  assert.deepEqual([...e.ctx.objects.keys()], [1]);
  expectErr("EBADFD", () => accessPages(e, pin, 0x100000n, PAGE, e.buf));
  e.ctx.ioasUnmap({ ioas_id: e.ioas, iova: 0n, length: (1n << 64n) - 1n });
  e.ctx.destroy({ id: e.ioas });
});

test("access_rw: after munmap + mmap at the mapped address, the fast path and the single-page slow path see the new memory, the multi-page slow path the pinned pages", () => {
  const e = env();
  mockDomain(e.ctx, e.ioas);
  const fd = createAccess(e, e.ioas);
  const buf = e.p.mmap(2 * PAGE, { shared: true });
  e.p.write(buf, new Uint8Array(2 * PAGE).fill(0x11));
  ioasMap(e.ctx, e.ioas, buf, 2 * PAGE, BASE);
  const nb = e.p.mmap(2 * PAGE, { shared: true, addr: buf, fixed: true });
  e.p.write(nb, new Uint8Array(2 * PAGE).fill(0x22));
  const tmp = scratch(e.p, 2 * PAGE);
  const read = (iova: bigint, len: number, flags: number): number[] => {
    accessRw(e, fd, iova, len, tmp, flags);
    return [...new Set(e.p.read(Number(tmp), len))];
  };
  assert.deepEqual(read(BASE, 16, 0), [0x22], "fast path: copy_from_user");
  assert.deepEqual(read(BASE + 0xff8n, 16, 0), [0x22]);
  assert.deepEqual(read(BASE, 16, S.MOCK_ACCESS_RW_SLOW_PATH), [0x22], "single page: pins the page mapped now");
  assert.deepEqual(read(BASE + 0xff8n, 16, S.MOCK_ACCESS_RW_SLOW_PATH), [0x11], "two pages: the pinned pages");
  assert.deepEqual(read(BASE, 2 * PAGE, S.MOCK_ACCESS_RW_SLOW_PATH), [0x11]);
  e.p.write(Number(tmp), new Uint8Array(16).fill(0x33));
  accessRw(e, fd, BASE, 16, tmp, S.MOCK_ACCESS_RW_SLOW_PATH | S.MOCK_ACCESS_RW_WRITE);
  assert.equal(e.p.read(nb, 1)[0], 0x33);
});
