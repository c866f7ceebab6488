/**
 * Memory owned by other processes and copy-on-write: the selftest's fork_gone, fork_present and
 * ro_unshare (pages.c pins through the mapping process's mm; the mock domain must keep pointing
 * at the page the user sees).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { S, env, failsCleanly, ioasMap, mockDomain, checkMap, checkRefs, scratch, BASE, BUFFER_SIZE, PAGE, type Env } from "./helpers.js";

function createAccess(e: Env, ioas: number, flags = 0): number {
  return e.ctx.testCmd({ op: S.IOMMU_TEST_OP_CREATE_ACCESS, id: ioas, flags }).out_access_fd as number;
}

/** Read the whole buffer through the access and compare with what the parent sees. */
function readsBuffer(e: Env, fd: number, iova: bigint): void {
  const fill = new Uint8Array(BUFFER_SIZE).map((_, i) => (i * 13 + 5) & 0xff);
  e.p.write(e.buf, fill);
  const tmp = scratch(e.p, BUFFER_SIZE);
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_RW, id: fd, iova, length: BigInt(BUFFER_SIZE), uptr: tmp, flags: 0 });
  assert.deepEqual(e.p.read(Number(tmp), BUFFER_SIZE), fill);
  const w = new Uint8Array(64).fill(0x3c);
  const src = scratch(e.p, w);
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_RW, id: fd, iova: iova + 100n, length: 64n, uptr: src, flags: S.MOCK_ACCESS_RW_WRITE });
  assert.deepEqual(e.p.read(e.buf + 100, 64), w, "writes land in the shared buffer");
}

test("fork_gone: without a domain, pages mapped by an exited child cannot be pinned: attaching a domain is EFAULT", () => {
  const e = env();
  const fd = createAccess(e, e.ioas);
  const child = e.p.fork();
  e.ctx.as(child, (c) => ioasMap(c, e.ioas, e.buf, BUFFER_SIZE, BASE));
  child.exit();
  failsCleanly(e, "EFAULT", () => mockDomain(e.ctx, e.ioas));
  // the failure left no device behind: a later attach of an empty IOAS works
  e.ctx.ioasUnmap({ ioas_id: e.ioas, iova: BASE, length: BigInt(BUFFER_SIZE) });
  mockDomain(e.ctx, e.ioas);
  S.fdTableOf(e.p).close(fd);
});

test("fork_gone: with a domain, the child's pages were pinned at map time; a second domain copies from the first", () => {
  const e = env();
  mockDomain(e.ctx, e.ioas);
  const fd = createAccess(e, e.ioas);
  const child = e.p.fork();
  e.ctx.as(child, (c) => ioasMap(c, e.ioas, e.buf, BUFFER_SIZE, BASE));
  child.exit();
  const md2 = mockDomain(e.ctx, e.ioas);
  checkMap(e.ctx, md2.hwpt, BASE, BUFFER_SIZE, e.buf);
  readsBuffer(e, fd, BASE);
  checkRefs(e.ctx, e.buf, BUFFER_SIZE, 1);
  e.ctx.ioasUnmap({ ioas_id: e.ioas, iova: BASE, length: BigInt(BUFFER_SIZE) });
  checkRefs(e.ctx, e.buf, BUFFER_SIZE, 0);
});

test("fork_present: pages mapped by a live child are pinned from its mm when a domain attaches", () => {
  const e = env();
  const fd = createAccess(e, e.ioas);
  const child = e.p.fork();
  e.ctx.as(child, (c) => ioasMap(c, e.ioas, e.buf, BUFFER_SIZE, BASE));
  checkRefs(e.ctx, e.buf, BUFFER_SIZE, 0);
  const md = mockDomain(e.ctx, e.ioas);
  checkRefs(e.ctx, e.buf, BUFFER_SIZE, 1);
  readsBuffer(e, fd, BASE);
  checkMap(e.ctx, md.hwpt, BASE, BUFFER_SIZE, e.buf);
  child.exit();
  readsBuffer(e, fd, BASE);
});

test("fork_present: without any domain, an access reads through the child's mm while it lives", () => {
  const e = env();
  const fd = createAccess(e, e.ioas);
  const child = e.p.fork();
  e.ctx.as(child, (c) => ioasMap(c, e.ioas, e.buf, BUFFER_SIZE, BASE));
  readsBuffer(e, fd, BASE);
  readsBuffer(e, fd, BASE);
  checkRefs(e.ctx, e.buf, BUFFER_SIZE, 0);
  child.exit();
});

test("ro_unshare: a read-only IOAS map of a private file mapping keeps its page after a CPU write (MD_CHECK_MAP)", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const file = e.host.createFile("exe", new Uint8Array(PAGE).fill(0x42), { readonly: true });
  const buf = e.p.mmap(PAGE, { file, shared: false, prot: S.PROT_READ | S.PROT_WRITE });
  const iova = e.ctx.ioasMap({ flags: S.IOMMU_IOAS_MAP_READABLE, ioas_id: e.ioas, user_va: BigInt(buf), length: BigInt(PAGE), iova: 0n }).iova;
  checkMap(e.ctx, md.hwpt, iova, PAGE, buf);
  e.p.write(buf, new Uint8Array(PAGE).fill(1));
  checkMap(e.ctx, md.hwpt, iova, PAGE, buf);
  e.p.munmap(buf, PAGE);
});

test("md_check_map: the domain maps the page behind uptr; misalignment is EINVAL, a mismatch EINVAL, not a mock paging HWPT ENOENT", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  ioasMap(e.ctx, e.ioas, e.buf, 4 * PAGE, BASE);
  checkMap(e.ctx, md.hwpt, BASE, 4 * PAGE, e.buf);
  checkMap(e.ctx, md.hwpt, BASE + 2048n, 2048, e.buf + 2048);
  failsCleanly(e, "EINVAL", () => checkMap(e.ctx, md.hwpt, BASE, 4 * PAGE, e.buf + PAGE), "wrong memory");
  failsCleanly(e, "EINVAL", () => checkMap(e.ctx, md.hwpt, BASE + 1024n, 2048, e.buf), "iova not 2K aligned");
  failsCleanly(e, "EINVAL", () => checkMap(e.ctx, md.hwpt, BASE, 1024, e.buf), "length not 2K aligned");
  failsCleanly(e, "EINVAL", () => checkMap(e.ctx, md.hwpt, BASE, 2048, e.buf + 1024), "uptr not 2K aligned");
  failsCleanly(e, "EINVAL", () => checkMap(e.ctx, md.hwpt, BASE, 5 * PAGE, e.buf), "runs past the mapping");
  failsCleanly(e, "EINVAL", () => checkMap(e.ctx, md.hwpt, BASE - 2048n, 2048, e.buf), "nothing mapped there");
  failsCleanly(e, "ENOENT", () => checkMap(e.ctx, e.ioas, BASE, 2048, e.buf), "an IOAS");
  failsCleanly(e, "ENOENT", () => checkMap(e.ctx, 999, BASE, 2048, e.buf), "unknown id");
  const parent = e.ctx.hwptAlloc({ flags: S.IOMMU_HWPT_ALLOC_NEST_PARENT, dev_id: md.idev, pt_id: e.ioas, data_type: 0, data_len: 0, data_uptr: 0n }).out_hwpt_id as number;
  const nested = e.ctx.hwptAlloc({ flags: 0, dev_id: md.idev, pt_id: parent, data_type: 0xdead, data_len: 4, data_uptr: scratch(e.p, new Uint8Array(4)) }).out_hwpt_id as number;
  failsCleanly(e, "ENOENT", () => checkMap(e.ctx, nested, BASE, 2048, e.buf), "a nested HWPT");
  checkMap(e.ctx, parent, BASE, 4 * PAGE, e.buf);
  failsCleanly(e, "EINVAL", () => checkMap(e.ctx, 999, BASE + 1n, 2048, e.buf), "alignment is checked before the id");
  failsCleanly(e, "EFAULT", () => checkMap(e.ctx, md.hwpt, BASE, 2048, 0x1000), "unmapped uptr");
  checkMap(e.ctx, md.hwpt, BASE, 0, e.buf);
});
