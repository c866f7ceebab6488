/**
 * Rule-coverage audit (docs/rules-coverage.md): VFIO rules of iommufd-uapi.md A.6 and
 * iommu-stack.md 1.4-1.7, 1.11 and 2.3 (the type1 v1 split) that no earlier test pinned. Compat
 * answers measured by oracle/probes/probe-audit.c; the classic type1 container follows
 * drivers/vfio/vfio_iommu_type1.c (6.12; the oracle kernel has no CONFIG_VFIO_CONTAINER).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as S from "../../src/index.js";
import type { IommuDomain, PagingDomain } from "../../src/iommu/domain.js";
import { IommuCap, type UserData } from "../../src/iommu/driver.js";
import { Area } from "../../src/iopt/io-pagetable.js";
import * as V from "../../src/vfio/index.js";
import { hex, isErrno, UserArg } from "../vfio/helpers.js";
import { PlatformIommu } from "../vfio/platform.js";

const PAGE = 4096n;
const APER = S.MOCK_APERTURE_START;
const RW = S.VFIO_DMA_MAP_FLAG_READ | S.VFIO_DMA_MAP_FLAG_WRITE;

/** /dev/iommu as root with a compat IOAS, a mock domain and VFIO_SET_IOMMU(version). */
function compat(version: number) {
  const host = new S.Host();
  const p = host.spawn({ uid: 0 });
  const ctx = S.openIommufd(host, p);
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN, id: ioas });
  ctx.vfioIoas({ ioas_id: ioas, op: S.IOMMU_VFIO_IOAS_SET });
  assert.equal(ctx.vfioSetIommu(version), 0);
  const arg = new UserArg(p);
  const buf = p.mmap(16 * 4096, { shared: true });
  return { host, p, ctx, ioas, arg, buf };
}

// ------------------------------------------------------------------------------------------------
// iommufd's compat layer

test("compat UNMAP_DMA reads exactly its 24-byte argument: 24 readable bytes are enough, 23 or a NULL pointer is EFAULT (oracle probe-audit A4)", () => {
  const f = compat(S.VFIO_TYPE1v2_IOMMU);
  const two = f.p.mmap(2 * 4096);
  f.p.munmap(two + 4096, 4096);
  const put = (at: number, n: number): bigint => {
    const u = new Uint8Array(24);
    const dv = new DataView(u.buffer);
    dv.setUint32(0, 24, true);
    dv.setBigUint64(8, APER, true);
    dv.setBigUint64(16, PAGE, true);
    f.p.write(at, u.subarray(0, n));
    return BigInt(at);
  };
  assert.equal(f.ctx.vfioIommuUnmapDma(put(two + 4096 - 24, 24)), 0);
  assert.throws(() => f.ctx.vfioIommuUnmapDma(put(two + 4096 - 23, 23)), isErrno("EFAULT"));
  assert.throws(() => f.ctx.vfioIommuUnmapDma(0n), isErrno("EFAULT"));
});

test("compat type1 (v1) split: a cut inside an area an in-kernel access has pinned is EINVAL, unmaps nothing and writes no size back; after the unpin the cut works (oracle probe-audit A5)", () => {
  const f = compat(S.VFIO_TYPE1_IOMMU);
  f.ctx.vfioIommuMapDma(f.arg.dmaMap({ flags: RW, vaddr: f.buf, iova: APER, size: 4n * PAGE }));
  const afd = f.ctx.testCmd({ op: S.IOMMU_TEST_OP_CREATE_ACCESS, id: f.ioas, flags: S.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES }).out_access_fd as number;
  const item = f.ctx.testCmd({ op: S.IOMMU_TEST_OP_ACCESS_PAGES, id: afd, iova: APER, length: PAGE, uptr: BigInt(f.buf), flags: 0 }).out_access_pages_id;
  f.arg.fill(0xcc);
  assert.throws(() => f.ctx.vfioIommuUnmapDma(f.arg.dmaUnmap({ iova: APER + 2n * PAGE, size: PAGE })), isErrno("EINVAL"));
  assert.equal(f.arg.u64(16), PAGE, "size is not written back (the cut fails before the unmap)");
  assert.equal(f.ctx.getIoas(f.ioas).iopt.areas.size, 1);
  f.ctx.testCmd({ op: S.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, id: afd, access_pages_id: item });
  assert.equal(f.ctx.vfioIommuUnmapDma(f.arg.dmaUnmap({ iova: APER + 2n * PAGE, size: PAGE })), 0);
  assert.equal(f.arg.u64(16), PAGE);
  assert.equal(f.ctx.getIoas(f.ioas).iopt.areas.size, 2, "the hole splits the mapping in two");
});

test("compat type1 (v1) split of an area whose MAP is still in progress is EBUSY (white-box: a single caller cannot race MAP)", () => {
  // io_pagetable.c iopt_area_split: !area->pages -> -EBUSY
  const f = compat(S.VFIO_TYPE1_IOMMU);
  const iopt = f.ctx.getIoas(f.ioas).iopt;
  const inFlight = new Area(APER, APER + 4n * PAGE - 1n, 0n, 4n * PAGE, 0);
  iopt.areas.insert(inFlight);
  assert.throws(() => f.ctx.vfioIommuUnmapDma(f.arg.dmaUnmap({ iova: APER + PAGE, size: PAGE })), isErrno("EBUSY"));
  iopt.areas.remove(inFlight);
});

// ------------------------------------------------------------------------------------------------
// the classic type1 container

/** /dev/vfio/vfio served by the legacy container with one group of `dev`, SET_IOMMU(TYPE1v2). */
function type1(dev: S.Device, setIommu = true) {
  const host = new S.Host();
  const p = host.spawn({ uid: 1000 });
  const c = V.openVfioContainer(host, p);
  const vg = V.VfioGroup.forIommuGroup(dev.group);
  const gf = vg.open(p);
  gf.setContainer(c);
  if (setIommu) assert.equal(c.setIommu(S.VFIO_TYPE1v2_IOMMU), 0);
  const buf = p.mmap(16 * 4096);
  const map = (iova: bigint, size: bigint) => c.iommuMapDma({ argsz: 32, flags: RW, vaddr: BigInt(buf), iova, size });
  return { host, p, c, gf, buf, map };
}

test("type1 attach: reserved regions that leave no valid IOVA in the aperture are EINVAL, and the container stays unset", () => {
  // vfio_iommu_type1.c vfio_iommu_resv_exclude: list_empty(iova) -> -EINVAL
  const iommu = new PlatformIommu("whole", {
    apertureStart: 0x100000n,
    apertureEnd: 0x1fffffn,
    resv: [{ start: 0n, length: 0x400000n, type: S.ResvType.RESERVED }],
  });
  const dev = iommu.device();
  const s = type1(dev, false);
  assert.throws(() => s.c.setIommu(S.VFIO_TYPE1v2_IOMMU), isErrno("EINVAL"));
  assert.equal(s.c.driver, null);
  assert.equal(dev.group.domain, null, "the group went back to no domain");
});

test("type1 MAP_DMA while dirty tracking is on gives the new mapping a bitmap: with an IOMMU-backed group its pages read dirty (START is idempotent)", () => {
  const s = type1(S.createMockDevice(0));
  const bm = s.p.mmap(4096);
  s.c.iommuDirtyPages({ argsz: 8, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START });
  s.c.iommuDirtyPages({ argsz: 8, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START });
  s.map(APER, 3n * PAGE);
  s.p.write(bm, new Uint8Array(8).fill(0xff));
  s.c.iommuDirtyPages({ argsz: 48, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, iova: APER, size: 3n * PAGE, bitmap: { pgsize: PAGE, size: 8n, data: BigInt(bm) } });
  assert.equal(hex(s.p.read(bm, 8)), "0700000000000000");
});

test("type1 DIRTY_PAGES GET_BITMAP: bitmap.pgsize must be the smallest page size and the range must not bisect a mapping (EINVAL)", () => {
  const s = type1(S.createMockDevice(0));
  const bm = s.p.mmap(4096);
  s.map(APER, 4n * PAGE);
  s.c.iommuDirtyPages({ argsz: 8, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START });
  const get = { argsz: 48, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, iova: APER, size: 4n * PAGE, bitmap: { pgsize: PAGE, size: 8n, data: BigInt(bm) } };
  for (const pgsize of [0x800n, 0x2000n])
    assert.throws(() => s.c.iommuDirtyPages({ ...get, bitmap: { ...get.bitmap, pgsize } }), isErrno("EINVAL"), `pgsize ${pgsize}`);
  assert.throws(() => s.c.iommuDirtyPages({ ...get, size: 2n * PAGE }), isErrno("EINVAL"), "ends inside the mapping");
  assert.throws(() => s.c.iommuDirtyPages({ ...get, iova: APER + PAGE, size: 3n * PAGE }), isErrno("EINVAL"), "starts inside the mapping");
  s.c.iommuDirtyPages(get);
  assert.equal(s.p.read(bm, 1)[0], 0b1111);
});

// ------------------------------------------------------------------------------------------------
// CHECK_EXTENSION(DMA_CC) on the compat IOAS: the HWPT's enforce_cache_coherency, not the domain's ability

/** A platform IOMMU whose devices report IOMMU_CAP_ENFORCE_CACHE_COHERENCY (snoop control), or not. */
class SnoopIommu extends PlatformIommu {
  constructor(readonly deviceEnforces: boolean) {
    super(deviceEnforces ? "snoop" : "nosnoop", { enforceCacheCoherency: true });
  }
  override capable(dev: S.Device, cap: IommuCap): boolean {
    return cap === IommuCap.ENFORCE_CACHE_COHERENCY ? this.deviceEnforces : super.capable(dev, cap);
  }
  /** Paging HWPTs get this platform's (coherency-capable) domains too. */
  override domainAllocUser(dev: S.Device, flags: number, parent: PagingDomain | null, data: UserData | null): IommuDomain {
    return parent || data || flags ? super.domainAllocUser(dev, flags, parent, data) : this.domainAllocPaging(dev);
  }
}

test("compat CHECK_EXTENSION(DMA_CC) is 1 iff every HWPT of the compat IOAS enforces cache coherency, which a HWPT does only when allocated for a device that asks for it", () => {
  // vfio_compat.c iommufd_vfio_cc_iommu reads hwpt_paging->enforce_cache_coherency, set by
  // hw_pagetable.c iommufd_hwpt_paging_alloc only when idev->enforce_cache_coherency
  const host = new S.Host();
  const p = host.spawn({ uid: 0 });
  const ctx = S.openIommufd(host, p);
  const ioas = S.compatIoasCreate(ctx).id;
  const coherent = ctx.bindDevice(new SnoopIommu(true).device());
  coherent.attach(ioas);
  assert.equal(ctx.vfioCheckExtension(S.VFIO_DMA_CC_IOMMU), 1, "the HWPT was made to enforce coherency");
  // a device that does not ask: its HWPT is not made to enforce, although the domain could
  const plain = ctx.bindDevice(new SnoopIommu(false).device());
  plain.attach(ioas);
  assert.equal(ctx.getIoas(ioas).hwpts.length, 2);
  assert.equal(ctx.vfioCheckExtension(S.VFIO_DMA_CC_IOMMU), 0);
  plain.detach();
  assert.equal(ctx.vfioCheckExtension(S.VFIO_DMA_CC_IOMMU), 1, "its auto HWPT went with the detach");
});
