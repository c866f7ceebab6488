/**
 * Property test: random sequences of mmap / munmap / write / read / fork / pin / unpin / exit run
 * against a naive reference model that keeps one object per logical page (its bytes and pin count).
 * Every read must agree with the model; every pinned page must sit in one frame whose pin count and
 * contents agree with the model (so a device looking at the pinned frame sees what the process sees);
 * and after unpinning everything and exiting every process no frame may remain in use.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { IommuError } from "../../src/errno.js";
import { Host, PAGE_SIZE, type MemFile, type Process } from "../../src/mm/index.js";

const BASE = 0x10000000;
const U = 12; // pages in the universe
const FILE_PAGES = 6;
const MEMFD_PAGES = 8;

type Kind = "anon" | "shared" | "file" | "memfd";

interface MPage {
  data: Uint8Array;
  pins: number;
  pfn: number; // valid while pins > 0
}
interface MVma {
  start: number;
  n: number;
  prot: number;
  kind: Kind;
  /** shared / memfd: the page objects; index = off + (vpn - start) */
  pages: MPage[] | null;
  off: number;
}
interface MProc {
  sut: Process;
  vmas: MVma[];
  priv: Map<number, MPage>;
}
interface MPin {
  runs: number[];
  pages: MPage[];
}

const newPage = (data?: Uint8Array): MPage => ({ data: data ? data.slice() : new Uint8Array(PAGE_SIZE), pins: 0, pfn: -1 });

function fileData(): Uint8Array {
  const d = new Uint8Array(FILE_PAGES * PAGE_SIZE);
  for (let i = 0; i < d.length; i++) d[i] = (Math.floor(i / PAGE_SIZE) * 31 + i) & 0xff;
  return d;
}

type Cmd =
  | { k: "mmap"; p: number; start: number; n: number; prot: number; kind: Kind; off: number }
  | { k: "munmap"; p: number; start: number; n: number }
  | { k: "write"; p: number; page: number; off: number; len: number; val: number }
  | { k: "read"; p: number; page: number; off: number; len: number }
  | { k: "fork"; p: number }
  | { k: "pin"; p: number; start: number; n: number; write: boolean }
  | { k: "pinFile"; pgoff: number; n: number }
  | { k: "fileWrite"; off: number; len: number; val: number }
  | { k: "unpin"; i: number }
  | { k: "exit"; p: number };

const idx = fc.nat(3);
const page = fc.integer({ min: 0, max: U - 1 });
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    arbitrary: fc.record({
      k: fc.constant("mmap" as const),
      p: idx,
      start: page,
      n: fc.integer({ min: 1, max: 8 }),
      prot: fc.constantFrom(0, 1, 3, 3, 3),
      kind: fc.constantFrom<Kind>("anon", "anon", "shared", "file", "memfd"),
      off: fc.nat(MEMFD_PAGES - 1),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ k: fc.constant("munmap" as const), p: idx, start: page, n: fc.integer({ min: 1, max: 6 }) }), weight: 1 },
  {
    arbitrary: fc.record({
      k: fc.constant("write" as const),
      p: idx,
      page,
      off: fc.oneof(fc.nat(64), fc.integer({ min: PAGE_SIZE - 16, max: PAGE_SIZE - 1 })),
      len: fc.integer({ min: 1, max: 24 }),
      val: fc.integer({ min: 1, max: 255 }),
    }),
    weight: 5,
  },
  {
    arbitrary: fc.record({
      k: fc.constant("read" as const),
      p: idx,
      page,
      off: fc.oneof(fc.nat(64), fc.integer({ min: PAGE_SIZE - 16, max: PAGE_SIZE - 1 })),
      len: fc.integer({ min: 1, max: 24 }),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ k: fc.constant("fork" as const), p: idx }), weight: 2 },
  {
    arbitrary: fc.record({ k: fc.constant("pin" as const), p: idx, start: page, n: fc.integer({ min: 1, max: 6 }), write: fc.boolean() }),
    weight: 4,
  },
  { arbitrary: fc.record({ k: fc.constant("pinFile" as const), pgoff: fc.nat(MEMFD_PAGES), n: fc.integer({ min: 1, max: 4 }) }), weight: 1 },
  {
    arbitrary: fc.record({
      k: fc.constant("fileWrite" as const),
      off: fc.nat(MEMFD_PAGES * PAGE_SIZE - 1),
      len: fc.integer({ min: 1, max: 16 }),
      val: fc.integer({ min: 1, max: 255 }),
    }),
    weight: 1,
  },
  { arbitrary: fc.record({ k: fc.constant("unpin" as const), i: fc.nat(15) }), weight: 3 },
  { arbitrary: fc.record({ k: fc.constant("exit" as const), p: idx }), weight: 1 },
);

class World {
  readonly host = new Host({ hugepages2M: 0, hugepages1G: 0 });
  readonly exe: MemFile;
  readonly memfd: MemFile;
  readonly exeData = fileData();
  readonly memfdPages: MPage[] = [];
  procs: MProc[] = [];
  pins: MPin[] = [];

  constructor() {
    this.exe = this.host.createFile("lib.so", this.exeData);
    const first = this.host.spawn();
    this.procs.push({ sut: first, vmas: [], priv: new Map() });
    this.memfd = first.memfdCreate("buf");
    this.memfd.truncate(MEMFD_PAGES * PAGE_SIZE);
    for (let i = 0; i < MEMFD_PAGES; i++) this.memfdPages.push(newPage());
  }

  proc(i: number): MProc {
    if (this.procs.length === 0) this.procs.push({ sut: this.host.spawn(), vmas: [], priv: new Map() });
    return this.procs[i % this.procs.length];
  }

  static vmaOf(p: MProc, vpn: number): MVma | undefined {
    return p.vmas.find((v) => vpn >= v.start && vpn < v.start + v.n);
  }

  /** The model page behind vpn (created on first use), or an errno. */
  pageOf(p: MProc, vpn: number, need: number): MPage | "EFAULT" {
    const v = World.vmaOf(p, vpn);
    if (!v || (v.prot & need) !== need) return "EFAULT";
    const i = vpn - v.start;
    if (v.kind === "shared" || v.kind === "memfd") {
      const pg = v.pages![v.off + i];
      return pg ?? "EFAULT"; // beyond the end of the memfd: SIGBUS
    }
    if (v.kind === "file" && v.off + i >= FILE_PAGES) return "EFAULT";
    let pg = p.priv.get(vpn);
    if (!pg) {
      const at = (v.off + i) * PAGE_SIZE;
      pg = newPage(v.kind === "file" ? this.exeData.subarray(at, at + PAGE_SIZE) : undefined);
      p.priv.set(vpn, pg);
    }
    return pg;
  }

  unmapModel(p: MProc, start: number, n: number): void {
    const out: MVma[] = [];
    for (const v of p.vmas) {
      const e = v.start + v.n;
      if (e <= start || v.start >= start + n) {
        out.push(v);
        continue;
      }
      if (v.start < start) out.push({ ...v, n: start - v.start });
      if (e > start + n) out.push({ ...v, start: start + n, n: e - (start + n), off: v.off + (start + n - v.start) });
    }
    p.vmas = out;
    for (let vpn = start; vpn < start + n; vpn++) p.priv.delete(vpn);
  }

  /** Which pages [page, page+len) of bytes touch; the model pages or the expected errno. */
  span(p: MProc, addrOff: number, len: number, need: number): MPage[] | "EFAULT" {
    const pages: MPage[] = [];
    for (let vpn = Math.floor(addrOff / PAGE_SIZE); vpn * PAGE_SIZE < addrOff + len; vpn++) {
      if (vpn >= U + 1) return "EFAULT";
      const pg = this.pageOf(p, vpn, need);
      if (pg === "EFAULT") return pg;
      pages.push(pg);
    }
    return pages;
  }

  run(c: Cmd): void {
    const h = this.host;
    switch (c.k) {
      case "mmap": {
        const p = this.proc(c.p);
        const n = Math.min(c.n, U - c.start);
        const shared = c.kind === "shared" || c.kind === "memfd";
        const file = c.kind === "file" ? this.exe : c.kind === "memfd" ? this.memfd : undefined;
        const off = c.kind === "file" ? c.off % FILE_PAGES : c.kind === "memfd" ? c.off : 0;
        const a = p.sut.mmap(n * PAGE_SIZE, { addr: BASE + c.start * PAGE_SIZE, fixed: true, prot: c.prot, shared, file, offset: off * PAGE_SIZE });
        assert.equal(a, BASE + c.start * PAGE_SIZE);
        this.unmapModel(p, c.start, n);
        let pages: MPage[] | null = null;
        if (c.kind === "shared") pages = Array.from({ length: n }, () => newPage());
        if (c.kind === "memfd") pages = this.memfdPages;
        p.vmas.push({ start: c.start, n, prot: c.prot, kind: c.kind, pages, off });
        break;
      }
      case "munmap": {
        const p = this.proc(c.p);
        p.sut.munmap(BASE + c.start * PAGE_SIZE, c.n * PAGE_SIZE);
        this.unmapModel(p, c.start, c.n);
        break;
      }
      case "write": {
        const p = this.proc(c.p);
        const at = c.page * PAGE_SIZE + c.off;
        const data = new Uint8Array(c.len).map((_, i) => (c.val + i) & 0xff);
        const pages = this.span(p, at, c.len, 2);
        if (pages === "EFAULT") {
          assert.throws(() => p.sut.write(BASE + at, data), (e: unknown) => e instanceof IommuError && e.code === "EFAULT");
          break;
        }
        p.sut.write(BASE + at, data);
        for (let i = 0; i < c.len; i++) {
          const b = at + i;
          pages[Math.floor(b / PAGE_SIZE) - c.page].data[b % PAGE_SIZE] = data[i];
        }
        break;
      }
      case "read": {
        const p = this.proc(c.p);
        const at = c.page * PAGE_SIZE + c.off;
        const pages = this.span(p, at, c.len, 1);
        if (pages === "EFAULT") {
          assert.throws(() => p.sut.read(BASE + at, c.len), (e: unknown) => e instanceof IommuError && e.code === "EFAULT");
          break;
        }
        const got = p.sut.read(BASE + at, c.len);
        const want = new Uint8Array(c.len);
        for (let i = 0; i < c.len; i++) {
          const b = at + i;
          want[i] = pages[Math.floor(b / PAGE_SIZE) - c.page].data[b % PAGE_SIZE];
        }
        assert.deepEqual(got, want, `read of pid ${p.sut.pid} at page ${c.page}+${c.off}`);
        break;
      }
      case "fork": {
        const p = this.proc(c.p);
        const child = p.sut.fork();
        const priv = new Map<number, MPage>();
        for (const [vpn, pg] of p.priv) priv.set(vpn, newPage(pg.data));
        this.procs.push({ sut: child, vmas: p.vmas.map((v) => ({ ...v })), priv });
        break;
      }
      case "pin": {
        const p = this.proc(c.p);
        const n = Math.min(c.n, U - c.start);
        const pages: MPage[] = [];
        let bad = false;
        for (let vpn = c.start; vpn < c.start + n; vpn++) {
          const pg = this.pageOf(p, vpn, c.write ? 3 : 1);
          if (pg === "EFAULT") bad = true;
          else pages.push(pg);
        }
        const inUse = h.phys.framesInUse;
        if (bad) {
          assert.throws(
            () => p.sut.mm.pinPages(BASE + c.start * PAGE_SIZE, n, c.write),
            (e: unknown) => e instanceof IommuError && e.code === "EFAULT",
          );
          assert.equal(h.phys.framesInUse, inUse, "a failed pin changes nothing");
          break;
        }
        this.recordPin(p.sut.mm.pinPages(BASE + c.start * PAGE_SIZE, n, c.write), pages);
        break;
      }
      case "pinFile": {
        if (c.pgoff + c.n > MEMFD_PAGES) {
          assert.throws(() => this.memfd.pinPages(c.pgoff, c.n, true), (e: unknown) => e instanceof IommuError && e.code === "EINVAL");
          break;
        }
        this.recordPin(this.memfd.pinPages(c.pgoff, c.n, true), this.memfdPages.slice(c.pgoff, c.pgoff + c.n));
        break;
      }
      case "fileWrite": {
        const len = Math.min(c.len, MEMFD_PAGES * PAGE_SIZE - c.off);
        const data = new Uint8Array(len).fill(c.val);
        this.memfd.write(c.off, data);
        for (let i = 0; i < len; i++) {
          const b = c.off + i;
          this.memfdPages[Math.floor(b / PAGE_SIZE)].data[b % PAGE_SIZE] = c.val;
        }
        break;
      }
      case "unpin": {
        if (this.pins.length === 0) break;
        const [pin] = this.pins.splice(c.i % this.pins.length, 1);
        h.phys.unpinRuns(pin.runs);
        for (const pg of pin.pages) pg.pins--;
        break;
      }
      case "exit": {
        if (this.procs.length === 0) break;
        const i = c.p % this.procs.length;
        this.procs[i].sut.exit();
        this.procs.splice(i, 1);
        break;
      }
    }
  }

  recordPin(runs: number[], pages: MPage[]): void {
    const pfns: number[] = [];
    for (let i = 0; i < runs.length; i += 2) for (let k = 0; k < runs[i + 1]; k++) pfns.push(runs[i] + k);
    assert.equal(pfns.length, pages.length);
    pages.forEach((pg, i) => {
      if (pg.pins > 0) assert.equal(pfns[i], pg.pfn, "a page pinned twice must be pinned in the same frame");
      pg.pfn = pfns[i];
      pg.pins++;
    });
    this.pins.push({ runs, pages });
  }

  /** Every pinned page: pin count and contents agree with the model; no two pages share a frame. */
  check(): void {
    const seen = new Map<number, MPage>();
    for (const pin of this.pins) {
      for (const pg of pin.pages) {
        const other = seen.get(pg.pfn);
        assert.ok(!other || other === pg, "two logical pages pinned in one frame");
        if (other) continue;
        seen.set(pg.pfn, pg);
        assert.equal(this.host.phys.pinCount(pg.pfn), pg.pins, "pin count");
        assert.deepEqual(this.host.phys.read(pg.pfn * PAGE_SIZE, PAGE_SIZE), pg.data, "pinned frame contents");
      }
    }
  }

  /** Every page of every live process reads as the model says. */
  checkAllReads(): void {
    for (const p of this.procs) {
      for (const v of p.vmas) {
        for (let vpn = v.start; vpn < v.start + v.n; vpn++) {
          const pg = this.pageOf(p, vpn, 1);
          if (pg === "EFAULT") continue;
          assert.deepEqual(p.sut.read(BASE + vpn * PAGE_SIZE, PAGE_SIZE), pg.data, `page ${vpn} of pid ${p.sut.pid}`);
        }
      }
    }
  }

  finish(): void {
    this.checkAllReads();
    this.check();
    for (const pin of this.pins) this.host.phys.unpinRuns(pin.runs);
    this.pins = [];
    for (const p of this.procs) p.sut.exit();
    this.procs = [];
    assert.equal(this.host.processes.size, 0);
    this.memfd.truncate(0);
    this.exe.truncate(0);
    assert.equal(this.host.phys.framesInUse, 0, "frames leaked");
    assert.equal(this.host.phys.framesMaterialized, 0, "contents of freed frames kept");
  }
}

test("random mmap/munmap/write/read/fork/pin/unpin/exit sequences agree with a per-page reference model", () => {
  fc.assert(
    fc.property(fc.array(cmdArb, { minLength: 1, maxLength: 80, size: "max" }), (cmds) => {
      const w = new World();
      for (const c of cmds) {
        w.run(c);
        w.check();
      }
      w.finish();
    }),
    { numRuns: 400 },
  );
});
