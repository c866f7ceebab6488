import { test } from "node:test";
import assert from "node:assert/strict";
import { Host, IommuErrorCode, PAGE_SIZE, PROT_READ, MMAP_TOP, runsPages } from "./helpers.js";

const MiB = 1 << 20;
const GiB = 1 << 30;
const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const pageRuns = (start: number, n: number): number[] => [start, n];

test("mmap picks addresses top-down below 0x7f0000000000, first fit, deterministically", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(3 * PAGE_SIZE);
  assert.equal(a, MMAP_TOP - 3 * PAGE_SIZE);
  const b = p.mmap(100); // rounded up to a page
  assert.equal(b, a - PAGE_SIZE);
  p.munmap(a, PAGE_SIZE);
  assert.equal(p.mmap(PAGE_SIZE), a, "first fit from the top reuses the hole");
  const q = h.spawn();
  assert.equal(q.mmap(3 * PAGE_SIZE), a, "same sequence in another process gives the same addresses");
});

test("hugetlb mappings are aligned to their huge page size and rounded up to it", () => {
  const h = new Host();
  const p = h.spawn();
  p.mmap(PAGE_SIZE);
  const a = p.mmap(3 * MiB, { hugetlb: 21 });
  assert.equal(a % (2 * MiB), 0);
  assert.equal(h.hugePool(21).free, 1024 - 2);
  const b = p.mmap(GiB, { hugetlb: 30 });
  assert.equal(b % GiB, 0);
  assert.equal(h.hugePool(30).free, 3);
});

test("mmap of length 0 is EINVAL; a MAP_FIXED address must be aligned", () => {
  const p = new Host().spawn();
  assert.throws(() => p.mmap(0), IommuErrorCode("EINVAL"));
  assert.throws(() => p.mmap(PAGE_SIZE, { addr: 0x10000001, fixed: true }), IommuErrorCode("EINVAL"));
  assert.throws(() => p.mmap(PAGE_SIZE, { addr: 0x10000000 + PAGE_SIZE, fixed: true, hugetlb: 21 }), IommuErrorCode("EINVAL"));
});

test("MAP_FIXED replaces what is mapped there", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(4 * PAGE_SIZE);
  p.write(a, bytes(1, 2, 3));
  p.write(a + 3 * PAGE_SIZE, bytes(4));
  const b = p.mmap(2 * PAGE_SIZE, { addr: a + PAGE_SIZE, fixed: true });
  assert.equal(b, a + PAGE_SIZE);
  assert.deepEqual(p.read(a, 3), bytes(1, 2, 3));
  assert.deepEqual(p.read(a + 3 * PAGE_SIZE, 1), bytes(4));
  assert.deepEqual(p.read(a + PAGE_SIZE, 1), bytes(0));
});

test("hugetlb mmap fails with ENOMEM when the pool lacks pages; munmap returns the reservation", () => {
  const h = new Host({ hugepages2M: 2 });
  const p = h.spawn();
  assert.throws(() => p.mmap(6 * MiB, { hugetlb: 21 }), IommuErrorCode("ENOMEM"));
  const a = p.mmap(4 * MiB, { hugetlb: 21 });
  assert.equal(h.hugePool(21).free, 0);
  assert.throws(() => p.mmap(2 * MiB, { hugetlb: 21 }), IommuErrorCode("ENOMEM"));
  p.write(a, bytes(1)); // allocates one huge page out of the reservation
  assert.equal(h.hugePool(21).free, 0);
  p.munmap(a, 4 * MiB);
  assert.equal(h.hugePool(21).free, 2);
  assert.equal(h.phys.framesInUse, 0);
});

test("munmap inside a huge page is EINVAL; the end rounds up to the huge page", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(4 * MiB, { hugetlb: 21 });
  assert.throws(() => p.munmap(a + PAGE_SIZE, PAGE_SIZE), IommuErrorCode("EINVAL"));
  p.munmap(a, PAGE_SIZE);
  assert.throws(() => p.read(a + 2 * MiB - 1, 1), IommuErrorCode("EFAULT"));
  assert.deepEqual(p.read(a + 2 * MiB, 1), bytes(0));
});

test("anonymous memory is allocated lazily, and a faulted range is one contiguous run", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(16 * PAGE_SIZE);
  assert.equal(h.phys.framesInUse, 0);
  p.write(a, new Uint8Array(16 * PAGE_SIZE).fill(5));
  assert.equal(h.phys.framesInUse, 16);
  const pfn = p.mm.pageAt(a);
  for (let i = 0; i < 16; i++) assert.equal(p.mm.pageAt(a + i * PAGE_SIZE), pfn + i);
});

test("pinning an untouched 1 GiB anonymous range gives one run and costs O(1) runs", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(GiB);
  const runs = p.mm.pinPages(a, GiB / PAGE_SIZE, true);
  assert.equal(runs.length, 2);
  assert.equal(runs[1], GiB / PAGE_SIZE);
  assert.equal(h.phys.pinCount(runs[0] + 12345), 1);
  h.phys.unpinRuns(runs);
  p.exit();
  assert.equal(h.phys.framesInUse, 0);
});

test("hugetlb frames are allocated per huge page, aligned, and compound", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(4 * MiB, { hugetlb: 21 });
  const runs = p.mm.pinPages(a + PAGE_SIZE, 2, false);
  assert.equal(runs.length, 2);
  assert.equal((runs[0] - 1) % 512, 0, "subpage 1 of an aligned huge page");
  assert.ok(h.phys.isCompound(runs[0]));
  assert.equal(h.phys.framesInUse, 512, "only the touched huge page");
  assert.equal(h.phys.isCompound(p.mm.pageAt(a) - 1), false);
  h.phys.unpinRuns(runs);
  p.exit();
  assert.equal(h.phys.framesInUse, 0);
  assert.equal(h.hugePool(21).free, 1024);
});

test("MAP_SHARED anonymous memory is shared with fork children (same frames)", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(2 * PAGE_SIZE, { shared: true });
  p.write(a, bytes(1));
  const c = p.fork();
  c.write(a, bytes(2));
  assert.deepEqual(p.read(a, 1), bytes(2));
  assert.equal(c.mm.pageAt(a), p.mm.pageAt(a));
  p.write(a + PAGE_SIZE, bytes(3)); // a page first touched after the fork is shared too
  assert.deepEqual(c.read(a + PAGE_SIZE, 1), bytes(3));
  p.exit();
  assert.deepEqual(c.read(a, 1), bytes(2));
  c.exit();
  assert.equal(h.phys.framesInUse, 0, "the shared object is freed with its last mapping");
});

test("memfd MAP_SHARED maps map the page cache frames", () => {
  const h = new Host();
  const p = h.spawn();
  const f = p.memfdCreate("buf");
  f.truncate(4 * PAGE_SIZE);
  const a = p.mmap(4 * PAGE_SIZE, { shared: true, file: f });
  const b = p.mmap(2 * PAGE_SIZE, { shared: true, file: f, offset: 2 * PAGE_SIZE });
  p.write(a + 2 * PAGE_SIZE + 5, bytes(42));
  assert.deepEqual(p.read(b + 5, 1), bytes(42));
  assert.deepEqual(f.read(2 * PAGE_SIZE + 5, 1), bytes(42));
  assert.equal(p.mm.pageAt(b), f.pageAt(2));
  f.write(0, bytes(7));
  assert.deepEqual(p.read(a, 1), bytes(7));
});

test("MAP_PRIVATE after fork is copy-on-write: the first write by either side copies", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(2 * PAGE_SIZE);
  p.write(a, bytes(1, 1));
  p.write(a + PAGE_SIZE, bytes(9));
  const before = p.mm.pageAt(a);
  const c = p.fork();
  assert.equal(c.mm.pageAt(a), before, "shared until written");
  c.write(a, bytes(2));
  assert.deepEqual(p.read(a, 2), bytes(1, 1));
  assert.deepEqual(c.read(a, 2), bytes(2, 1), "the copy carries the old contents");
  assert.notEqual(c.mm.pageAt(a), before);
  assert.equal(p.mm.pageAt(a), before);
  p.write(a, bytes(3));
  assert.equal(p.mm.pageAt(a), before, "no longer shared: the parent writes in place");
  p.write(a + PAGE_SIZE, bytes(8));
  assert.deepEqual(c.read(a + PAGE_SIZE, 1), bytes(9));
});

test("a private page pinned before fork stays with the parent; the child gets a copy", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(2 * PAGE_SIZE);
  p.write(a, bytes(5));
  const runs = p.mm.pinPages(a, 1, true);
  const c = p.fork();
  assert.equal(p.mm.pageAt(a), runs[0]);
  assert.notEqual(c.mm.pageAt(a), runs[0]);
  assert.deepEqual(c.read(a, 1), bytes(5));
  p.write(a, bytes(6));
  assert.equal(p.mm.pageAt(a), runs[0], "the parent keeps writing into the pinned frame");
  assert.deepEqual(h.phys.read(runs[0] * PAGE_SIZE, 1), bytes(6));
  assert.deepEqual(c.read(a, 1), bytes(5));
  c.write(a, bytes(7));
  assert.deepEqual(h.phys.read(runs[0] * PAGE_SIZE, 1), bytes(6));
});

test("a long-term pin of a COW-shared page unshares it: the pinned copy is what the process keeps seeing", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(PAGE_SIZE);
  p.write(a, bytes(1));
  const c = p.fork();
  const shared = p.mm.pageAt(a);
  const runs = p.mm.pinPages(a, 1, false); // even a read-only pin unshares
  assert.notEqual(runs[0], shared);
  assert.equal(p.mm.pageAt(a), runs[0]);
  assert.equal(c.mm.pageAt(a), shared);
  p.write(a, bytes(2));
  assert.equal(p.mm.pageAt(a), runs[0], "the later write goes to the pinned frame");
  assert.deepEqual(h.phys.read(runs[0] * PAGE_SIZE, 1), bytes(2));
  assert.deepEqual(c.read(a, 1), bytes(1));
});

test("a pin through MAP_PRIVATE of a file gets an exclusive anonymous copy of the file page", () => {
  const h = new Host();
  const data = new Uint8Array(2 * PAGE_SIZE).fill(0xab);
  const exe = h.createFile("a.out", data, { readonly: true });
  const p = h.spawn();
  const a = p.mmap(2 * PAGE_SIZE, { file: exe, prot: PROT_READ });
  const cached = p.mm.pageAt(a);
  assert.equal(cached, exe.pageAt(0));
  assert.throws(() => p.mm.pinPages(a, 1, true), IommuErrorCode("EFAULT"), "write pin needs PROT_WRITE");
  const runs = p.mm.pinPages(a, 2, false);
  assert.notEqual(runs[0], cached);
  assert.equal(p.mm.pageAt(a), runs[0]);
  assert.deepEqual(h.phys.read(runs[0] * PAGE_SIZE, 2), bytes(0xab, 0xab));

  const b = p.mmap(PAGE_SIZE, { file: exe, prot: PROT_READ | 2 });
  p.write(b, bytes(1));
  assert.deepEqual(exe.read(0, 1), bytes(0xab), "private writes never reach the file");
  const r2 = p.mm.pinPages(b, 1, true);
  assert.equal(r2[0], p.mm.pageAt(b), "already exclusive: no new copy");
});

test("pins fail all-or-nothing: EFAULT for holes, missing PROT_WRITE, or a dead mm", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(4 * PAGE_SIZE);
  p.munmap(a + 2 * PAGE_SIZE, PAGE_SIZE);
  assert.throws(() => p.mm.pinPages(a, 4, false), IommuErrorCode("EFAULT"));
  assert.equal(h.phys.framesInUse, 0, "nothing faulted or pinned");
  const r = p.mmap(PAGE_SIZE, { prot: PROT_READ });
  assert.throws(() => p.mm.pinPages(r, 1, true), IommuErrorCode("EFAULT"));
  assert.deepEqual(p.mm.pinPages(r, 1, false).length, 2);
  const n = p.mmap(PAGE_SIZE, { prot: 0 });
  assert.throws(() => p.mm.pinPages(n, 1, false), IommuErrorCode("EFAULT"));
  assert.throws(() => p.mm.pinPages(a + 1, 1, false), IommuErrorCode("EINVAL"));
  p.exit();
  assert.equal(p.mm.alive, false);
  assert.throws(() => p.mm.pinPages(a, 1, false), IommuErrorCode("EFAULT"));
});

test("munmap of pinned memory keeps the frames until they are unpinned", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(8 * PAGE_SIZE);
  const runs = p.mm.pinPages(a, 8, true);
  assert.equal(runs.length, 2);
  p.write(a + 3 * PAGE_SIZE, bytes(77));
  p.munmap(a, 8 * PAGE_SIZE);
  assert.throws(() => p.read(a, 1), IommuErrorCode("EFAULT"));
  assert.equal(h.phys.framesInUse, 8);
  assert.deepEqual(h.phys.read((runs[0] + 3) * PAGE_SIZE, 1), bytes(77));
  h.phys.unpinRuns(runs);
  assert.equal(h.phys.framesInUse, 0);
  assert.equal(h.phys.framesMaterialized, 0);
});

test("partial munmap punches a hole and splits the mapping", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(6 * PAGE_SIZE);
  p.write(a, new Uint8Array(6 * PAGE_SIZE).fill(1));
  p.munmap(a + 2 * PAGE_SIZE, 2 * PAGE_SIZE);
  assert.equal(h.phys.framesInUse, 4);
  assert.deepEqual(p.read(a + PAGE_SIZE, 1), bytes(1));
  assert.deepEqual(p.read(a + 4 * PAGE_SIZE, 1), bytes(1));
  assert.throws(() => p.read(a + 2 * PAGE_SIZE, 1), IommuErrorCode("EFAULT"));
  assert.throws(() => p.write(a + 3 * PAGE_SIZE, bytes(1)), IommuErrorCode("EFAULT"));
  assert.equal(p.mm.vmas.length, 2);
});

test("exit drops every mapping; pinned frames survive until unpinned; the mm is dead", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(4 * PAGE_SIZE);
  const b = p.mmap(4 * MiB, { hugetlb: 21 });
  p.write(a, bytes(3));
  const r1 = p.mm.pinPages(a, 4, true);
  const r2 = p.mm.pinPages(b, 1, true);
  assert.equal(h.processes.get(p.pid), p);
  p.exit();
  assert.equal(p.alive, false);
  assert.equal(p.mm.alive, false);
  assert.equal(h.processes.has(p.pid), false);
  assert.throws(() => p.read(a, 1), IommuErrorCode("ESRCH"));
  assert.deepEqual(h.phys.read(r1[0] * PAGE_SIZE, 1), bytes(3));
  assert.equal(h.phys.framesInUse, 4 + 1, "the pinned subpage of the huge page");
  assert.equal(h.hugePool(21).free, 1024 - 1, "the pinned huge page is still out; the other reservation is back");
  h.phys.unpinRuns(r1);
  h.phys.unpinRuns(r2);
  assert.equal(h.phys.framesInUse, 0);
  assert.equal(h.hugePool(21).free, 1024);
});

test("truncating a memfd to 0 makes pins EINVAL; pinned frames survive truncation", () => {
  const h = new Host();
  const p = h.spawn();
  const f = p.memfdCreate("m");
  f.truncate(4 * PAGE_SIZE);
  const runs = f.pinPages(0, 4, true);
  assert.equal(runs.length, 2, "one run of page cache");
  f.write(PAGE_SIZE, bytes(9));
  assert.equal(h.phys.pinCount(runs[0] + 1), 1);
  assert.throws(() => f.pinPages(2, 3, false), IommuErrorCode("EINVAL"));
  const a = p.mmap(4 * PAGE_SIZE, { shared: true, file: f });
  f.truncate(0);
  assert.equal(f.size, 0);
  assert.throws(() => f.pinPages(0, 1, false), IommuErrorCode("EINVAL"));
  assert.throws(() => p.read(a, 1), IommuErrorCode("EFAULT"), "SIGBUS beyond the end of the file");
  assert.deepEqual(h.phys.read((runs[0] + 1) * PAGE_SIZE, 1), bytes(9));
  h.phys.unpinRuns(runs);
  assert.equal(h.phys.framesInUse, 0);
  f.truncate(PAGE_SIZE);
  assert.deepEqual(p.read(a, 1), bytes(0), "a fresh page after growing again");
});

test("hugetlb memfds allocate aligned huge pages into the page cache and reserve at mmap", () => {
  const h = new Host({ hugepages2M: 4 });
  const p = h.spawn();
  const f = p.memfdCreate("huge", { hugetlb: 21 });
  assert.throws(() => f.truncate(MiB), IommuErrorCode("EINVAL"));
  f.truncate(6 * MiB);
  const a = p.mmap(6 * MiB, { shared: true, file: f });
  assert.equal(h.hugePool(21).free, 1);
  const runs = f.pinPages(512, 512, true);
  assert.deepEqual(runs.length, 2);
  assert.equal(runs[0] % 512, 0);
  assert.ok(h.phys.isCompound(runs[0]));
  assert.equal(p.mm.pageAt(a + 2 * MiB), runs[0]);
  assert.equal(h.hugePool(21).free, 1, "taken out of the reservation");
  h.phys.unpinRuns(runs);
  p.exit();
  f.truncate(0);
  assert.equal(h.hugePool(21).free, 4);
  assert.equal(h.phys.framesInUse, 0);
});

test("a private hugetlb page pinned at fork is copied for the child", () => {
  const h = new Host({ hugepages2M: 4 });
  const p = h.spawn();
  const a = p.mmap(2 * MiB, { hugetlb: 21 });
  p.write(a + 100, bytes(4));
  const runs = p.mm.pinPages(a, 1, true);
  const c = p.fork();
  assert.equal(p.mm.pageAt(a), runs[0]);
  const cp = c.mm.pageAt(a);
  assert.notEqual(cp, runs[0]);
  assert.equal(cp % 512, 0);
  assert.deepEqual(c.read(a + 100, 1), bytes(4));
  assert.equal(h.hugePool(21).free, 2);
  c.exit();
  p.exit();
  h.phys.unpinRuns(runs);
  assert.equal(h.hugePool(21).free, 4);
  assert.equal(h.phys.framesInUse, 0);
});

test("users are per uid; spawn sets credentials and limits", () => {
  const h = new Host();
  const p = h.spawn({ uid: 5, rlimitMemlock: Infinity });
  const q = h.spawn({ uid: 5, capIpcLock: true });
  assert.equal(p.user, q.user);
  assert.equal(h.user(5), p.user);
  assert.equal(p.rlimitMemlock, Infinity);
  assert.equal(q.rlimitMemlock, 8 * MiB);
  assert.equal(q.caps.ipcLock, true);
  assert.equal(p.caps.ipcLock, false);
  assert.equal(h.spawn({ uid: 0 }).caps.sysRawio, true);
  const c = q.fork();
  assert.equal(c.user, q.user);
  assert.deepEqual(c.caps, q.caps);
  assert.notEqual(c.pid, q.pid);
  assert.equal(c.mm.lockedVm, 0);
});

test("MAP_POPULATE faults the whole range in one run", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(64 * PAGE_SIZE, { populate: true });
  assert.equal(h.phys.framesInUse, 64);
  assert.equal(p.mm.ptes.runCount, 1);
  assert.deepEqual(p.mm.pinPages(a, 64, true), pageRuns(p.mm.pageAt(a), 64));
  assert.equal(runsPages(p.mm.pinPages(a, 64, true)), 64);
});

test("a write into a read-only mapping or into nothing is EFAULT", () => {
  const h = new Host();
  const p = h.spawn();
  const a = p.mmap(PAGE_SIZE, { prot: PROT_READ });
  assert.throws(() => p.write(a, bytes(1)), IommuErrorCode("EFAULT"));
  assert.throws(() => p.write(0x1000000, bytes(1)), IommuErrorCode("EFAULT"));
  assert.throws(() => p.read(0x1000000, 1), IommuErrorCode("EFAULT"));
  const f = h.createFile("ro", new Uint8Array(10), { readonly: true });
  assert.throws(() => p.mmap(PAGE_SIZE, { file: f, shared: true }), IommuErrorCode("EACCES"));
});

test("MAP_SHARED|MAP_HUGETLB anonymous memory reserves at mmap and is shared with children", () => {
  const h = new Host({ hugepages2M: 3 });
  const p = h.spawn();
  const a = p.mmap(4 * MiB, { shared: true, hugetlb: 21 });
  assert.equal(h.hugePool(21).free, 1);
  p.write(a + 2 * MiB, bytes(1));
  const c = p.fork();
  assert.deepEqual(c.read(a + 2 * MiB, 1), bytes(1));
  c.write(a, bytes(2));
  assert.deepEqual(p.read(a, 1), bytes(2));
  assert.equal(h.hugePool(21).free, 1);
  p.exit();
  c.exit();
  assert.equal(h.hugePool(21).free, 3);
  assert.equal(h.phys.framesInUse, 0);
});

test("a fork child has no hugetlb reservation: its faults fail with EFAULT (SIGBUS) once the pool is empty", () => {
  const h = new Host({ hugepages2M: 2 });
  const p = h.spawn();
  const a = p.mmap(4 * MiB, { hugetlb: 21 });
  p.write(a, bytes(1));
  const c = p.fork();
  assert.throws(() => c.write(a + 2 * MiB, bytes(1)), IommuErrorCode("EFAULT"));
  assert.throws(() => c.write(a, bytes(1)), IommuErrorCode("EFAULT"), "no page to break COW into");
  p.write(a + 2 * MiB, bytes(1)); // the parent still owns its reservation
  c.exit();
  p.write(a, bytes(3));
  assert.deepEqual(p.read(a, 1), bytes(3));
});

test("fork fails with ENOMEM when pinned hugetlb pages cannot be copied", () => {
  const h = new Host({ hugepages2M: 1 });
  const p = h.spawn();
  const a = p.mmap(2 * MiB, { hugetlb: 21 });
  const runs = p.mm.pinPages(a, 1, true);
  const before = h.processes.size;
  assert.throws(() => p.fork(), IommuErrorCode("ENOMEM"));
  assert.equal(h.processes.size, before);
  h.phys.unpinRuns(runs);
});

test("a CPU may read a write-only mapping, but a read pin needs PROT_READ", () => {
  const p = new Host().spawn();
  const a = p.mmap(PAGE_SIZE, { prot: 2 });
  p.write(a, bytes(4));
  assert.deepEqual(p.read(a, 1), bytes(4));
  assert.throws(() => p.mm.pinPages(a, 1, false), IommuErrorCode("EFAULT"));
  assert.equal(p.mm.pinPages(a, 1, true).length, 2);
});

test("a non-fixed address is a hint: used when free and aligned, otherwise ignored", () => {
  const p = new Host().spawn();
  const hint = 0x200000000;
  assert.equal(p.mmap(PAGE_SIZE, { addr: hint }), hint);
  assert.notEqual(p.mmap(PAGE_SIZE, { addr: hint }), hint);
  assert.equal(p.mmap(PAGE_SIZE, { addr: hint + 2 * PAGE_SIZE }), hint + 2 * PAGE_SIZE);
});

test("truncating a mapped file zaps shared and private-COW pages beyond the new end", () => {
  const h = new Host();
  const p = h.spawn();
  const f = p.memfdCreate("m");
  f.truncate(2 * PAGE_SIZE);
  const s = p.mmap(2 * PAGE_SIZE, { shared: true, file: f });
  const q = p.mmap(2 * PAGE_SIZE, { file: f });
  p.write(s, bytes(5));
  p.write(s + PAGE_SIZE, bytes(1));
  p.write(q + PAGE_SIZE, bytes(2));
  const pinned = p.mm.pinPages(q + PAGE_SIZE, 1, true);
  f.truncate(PAGE_SIZE);
  assert.throws(() => p.read(s + PAGE_SIZE, 1), IommuErrorCode("EFAULT"));
  assert.throws(() => p.read(q + PAGE_SIZE, 1), IommuErrorCode("EFAULT"));
  assert.deepEqual(h.phys.read(pinned[0] * PAGE_SIZE, 1), bytes(2));
  h.phys.unpinRuns(pinned);
  p.exit();
  assert.equal(h.phys.framesInUse, 1, "the one remaining page of the memfd's cache");
  assert.deepEqual(f.read(0, 1), bytes(5));
});

test("a private file mapping sees file updates until the page is copied", () => {
  const h = new Host();
  const f = h.createFile("data", new Uint8Array(PAGE_SIZE).fill(1));
  const p = h.spawn();
  const a = p.mmap(PAGE_SIZE, { file: f });
  assert.deepEqual(p.read(a, 1), bytes(1));
  f.write(0, bytes(2));
  assert.deepEqual(p.read(a, 1), bytes(2));
  p.write(a + 1, bytes(9));
  f.write(0, bytes(3));
  assert.deepEqual(p.read(a, 2), bytes(2, 9));
  assert.deepEqual(f.read(0, 2), bytes(3, 1));
});
