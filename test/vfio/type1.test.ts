/**
 * The classic VFIO type1 container (drivers/vfio/container.c, group.c, vfio_iommu_type1.c of Linux
 * 6.12), selectable next to iommufd's compat layer. Each test is named after the rule it pins.
 * Reference: shared/reference/iommu-stack.md 1.1-1.8; seeds/001 (reserved MSI IOVA) and seeds/004
 * (group-attach tracking for mdevs wrapping a PF/VF). The oracle kernel is built without
 * CONFIG_VFIO_CONTAINER, so these rules come from the source, not from measurements.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as S from "../../src/index.js";
import { IommuGroup, ResvType } from "../../src/iommu/device.js";
import { IOMMU_READ, IOMMU_WRITE, type PagingDomain } from "../../src/iommu/domain.js";
import { U64_MAX } from "../../src/util/u64.js";
import * as V from "../../src/vfio/index.js";
import { hex, isErrno } from "./helpers.js";
import { armIommu, mockDevice, PlatformIommu, x86Iommu } from "./platform.js";

const PAGE = 4096n;
const APER = S.MOCK_APERTURE_START;
const RW = S.VFIO_DMA_MAP_FLAG_READ | S.VFIO_DMA_MAP_FLAG_WRITE;

type Device = ReturnType<typeof mockDevice>;

interface Setup {
  host: S.Host;
  p: S.Process;
  c: V.VfioContainer;
  dev: Device;
  vg: V.VfioGroup;
  gf: V.VfioGroupFile;
  buf: number;
  map(iova: bigint, vaddr: number | bigint, size: bigint, flags?: number): number;
  unmap(iova: bigint, size: bigint, flags?: number): bigint;
  info(argsz?: number): V.VfioIommuType1Info;
  iommu(): V.VfioIommuType1;
}

/** open /dev/vfio/vfio, put one group in, SET_IOMMU(type); a 64 KiB buffer. */
function setup(
  o: {
    type?: number | null;
    dev?: Device;
    vg?: V.VfioGroup;
    uid?: number;
    rlimitMemlock?: number;
    capIpcLock?: boolean;
    type1?: Partial<V.Type1Params>;
    host?: S.Host;
  } = {},
): Setup {
  const host = o.host ?? new S.Host();
  const p = host.spawn({ uid: o.uid ?? 1000, rlimitMemlock: o.rlimitMemlock, capIpcLock: o.capIpcLock });
  const c = V.openVfioContainer(host, p, { type1: o.type1 });
  const dev = o.dev ?? mockDevice();
  const vg = o.vg ?? V.VfioGroup.forIommuGroup(dev.group);
  const gf = vg.open(p);
  gf.setContainer(c);
  if (o.type !== null) assert.equal(c.setIommu(o.type ?? S.VFIO_TYPE1v2_IOMMU), 0);
  const buf = p.mmap(16 * 4096);
  return {
    host,
    p,
    c,
    dev,
    vg,
    gf,
    buf,
    map: (iova, vaddr, size, flags = RW) => c.iommuMapDma({ argsz: 32, flags, vaddr: BigInt(vaddr), iova, size }),
    unmap: (iova, size, flags = 0) => c.iommuUnmapDma({ argsz: 24, flags, iova, size }).size,
    info: (argsz = 4096) => c.iommuGetInfo({ argsz }),
    iommu: () => c.iommu as V.VfioIommuType1,
  };
}

function capOf<T extends V.VfioInfoCap>(info: V.VfioIommuType1Info, id: number): T | undefined {
  return info.caps?.find((c) => c.header.id === id) as T | undefined;
}

function ranges(info: V.VfioIommuType1Info): [bigint, bigint][] | undefined {
  return capOf<V.VfioIommuType1InfoCapIovaRange>(info, S.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)?.iova_ranges.map((r) => [r.start, r.end]);
}

function dmaAvail(info: V.VfioIommuType1Info): number | undefined {
  return capOf<V.VfioIommuType1InfoDmaAvail>(info, S.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL)?.avail;
}

/** Physical byte address the domain translates iova to (-1 if unmapped). */
function phys(d: PagingDomain, iova: bigint): number {
  const off = Number(iova % BigInt(1 << d.pgShift));
  const pa = d.iovaToPhys(Number(iova >> BigInt(d.pgShift)));
  return pa < 0 ? -1 : pa + off;
}

function pinCount(s: { host: S.Host; p: S.Process }, addr: number): number {
  const pfn = s.p.mm.peekPfn(addr);
  return pfn === undefined ? 0 : s.host.phys.pinCount(pfn);
}

// ================================================================================================
// 1.1 objects and call order

test("GET_API_VERSION is 0 and, before SET_IOMMU, CHECK_EXTENSION polls the drivers: TYPE1, TYPE1v2, NESTING, UNMAP_ALL are 1; UPDATE_VADDR, DMA_CC, NOIOMMU 0", () => {
  const host = new S.Host();
  const c = V.openVfioContainer(host, host.spawn());
  assert.equal(c.getApiVersion(), 0);
  const want: Record<number, number> = { 0: 0, 1: 1, 2: 0, 3: 1, 4: 0, 5: 0, 6: 1, 7: 0, 8: 0, 9: 1, 10: 0, 11: 0 };
  for (const [e, v] of Object.entries(want)) assert.equal(c.checkExtension(Number(e)), v, `extension ${e}`);
});

test("SET_IOMMU without a group in the container is EINVAL", () => {
  const host = new S.Host();
  const c = V.openVfioContainer(host, host.spawn());
  assert.throws(() => c.setIommu(S.VFIO_TYPE1v2_IOMMU), isErrno("EINVAL"));
});

test("SET_IOMMU of a type no driver claims is ENODEV; UNMAP_ALL is claimed by type1 but its open refuses it: EINVAL", () => {
  const s = setup({ type: null });
  for (const t of [0, S.VFIO_SPAPR_TCE_IOMMU, S.VFIO_DMA_CC_IOMMU, S.VFIO_EEH, S.VFIO_NOIOMMU_IOMMU, S.VFIO_UPDATE_VADDR, 77])
    assert.throws(() => s.c.setIommu(t), isErrno("ENODEV"), `type ${t}`);
  assert.throws(() => s.c.setIommu(S.VFIO_UNMAP_ALL), isErrno("EINVAL"));
  assert.equal(s.c.driver, null, "nothing was set");
  assert.equal(s.c.setIommu(S.VFIO_TYPE1v2_IOMMU), 0);
});

test("SET_IOMMU when an IOMMU is already set is EINVAL", () => {
  const s = setup();
  assert.throws(() => s.c.setIommu(S.VFIO_TYPE1v2_IOMMU), isErrno("EINVAL"));
  assert.throws(() => s.c.setIommu(S.VFIO_TYPE1_IOMMU), isErrno("EINVAL"));
});

test("SET_IOMMU(TYPE1_NESTING) is EINVAL when the IOMMU driver cannot enable nesting (mock), and leaves the container unset", () => {
  const s = setup({ type: null });
  assert.throws(() => s.c.setIommu(S.VFIO_TYPE1_NESTING_IOMMU), isErrno("EINVAL"));
  assert.equal(s.c.driver, null);
  assert.equal(s.dev.group.domain, null, "the group went back to no domain");
  assert.equal(s.c.setIommu(S.VFIO_TYPE1_IOMMU), 0);
});

test("IOMMU ioctls before SET_IOMMU are EINVAL (GET_INFO, MAP_DMA, UNMAP_DMA, DIRTY_PAGES)", () => {
  const s = setup({ type: null });
  assert.throws(() => s.info(), isErrno("EINVAL"));
  assert.throws(() => s.map(APER, s.buf, PAGE), isErrno("EINVAL"));
  assert.throws(() => s.unmap(APER, PAGE), isErrno("EINVAL"));
  assert.throws(() => s.c.iommuDirtyPages({ argsz: 8, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START }), isErrno("EINVAL"));
});

test("GROUP_GET_STATUS: VIABLE when nobody owns the group's DMA, CONTAINER_SET|VIABLE in a container, 0 while another owner holds it; argsz < 8 EINVAL", () => {
  const host = new S.Host();
  const p = host.spawn();
  const dev = mockDevice();
  const vg = V.VfioGroup.forIommuGroup(dev.group);
  const gf = vg.open(p);
  assert.throws(() => gf.getStatus({ argsz: 7, flags: 0 }), isErrno("EINVAL"));
  assert.equal(gf.getStatus({ argsz: 8, flags: 0 }).flags, V.VFIO_GROUP_FLAGS_VIABLE);
  const c = V.openVfioContainer(host, p);
  gf.setContainer(c);
  assert.equal(gf.getStatus({ argsz: 8, flags: 0 }).flags, V.VFIO_GROUP_FLAGS_VIABLE | V.VFIO_GROUP_FLAGS_CONTAINER_SET);
  gf.unsetContainer();
  // a device of the group bound to iommufd: the group's DMA is owned elsewhere
  const ctx = S.openIommufd(host, p);
  ctx.bindDevice(dev);
  assert.equal(gf.getStatus({ argsz: 8, flags: 0 }).flags, 0);
  assert.throws(() => gf.setContainer(c), isErrno("EPERM"), "a group owned by iommufd cannot join a container");
});

test("a group file can be open once (EBUSY); SET_CONTAINER twice is EINVAL; UNSET_CONTAINER without a container EINVAL", () => {
  const s = setup({ type: null });
  assert.throws(() => s.vg.open(s.p), isErrno("EBUSY"));
  assert.throws(() => s.gf.setContainer(s.c), isErrno("EINVAL"));
  s.gf.unsetContainer();
  assert.throws(() => s.gf.unsetContainer(), isErrno("EINVAL"));
  s.gf.close();
  assert.throws(() => s.gf.getStatus({ argsz: 8, flags: 0 }), isErrno("EBADF"));
  assert.ok(s.vg.open(s.p), "the group can be opened again once closed");
});

test("GET_DEVICE_FD: an unknown name is ENODEV, before SET_IOMMU EINVAL; while a device file is open UNSET_CONTAINER is EBUSY", () => {
  const s = setup({ type: null });
  assert.throws(() => s.gf.getDeviceFd("nope"), isErrno("ENODEV"));
  assert.throws(() => s.gf.getDeviceFd(s.dev.name), isErrno("EINVAL"));
  s.c.setIommu(S.VFIO_TYPE1v2_IOMMU);
  const df = s.gf.getDeviceFd(s.dev.name);
  assert.equal(s.vg.containerUsers, 2);
  assert.throws(() => s.gf.unsetContainer(), isErrno("EBUSY"));
  df.close();
  s.gf.unsetContainer();
  assert.equal(s.vg.container, null);
});

test("removing the last group releases the IOMMU: every mapping is unmapped and unpinned, and the container is back to its initial state", () => {
  const s = setup({ rlimitMemlock: 1 << 30 });
  s.map(APER, s.buf, 4n * PAGE);
  assert.equal(pinCount(s, s.buf), 1);
  assert.equal(s.p.mm.lockedVm, 4);
  s.gf.unsetContainer();
  assert.equal(pinCount(s, s.buf), 0);
  assert.equal(s.p.mm.lockedVm, 0);
  assert.equal(s.c.driver, null);
  assert.equal(s.dev.group.domain, null);
  assert.equal(s.dev.group.ownerCnt, 0, "DMA ownership released");
  assert.throws(() => s.info(), isErrno("EINVAL"));
  assert.equal(s.c.checkExtension(S.VFIO_UPDATE_VADDR), 0, "answers as a fresh container");
  assert.throws(() => s.c.setIommu(S.VFIO_TYPE1v2_IOMMU), isErrno("EINVAL"), "no group left");
});

test("closing the group file leaves the container, but only once its device files are closed", () => {
  const s = setup();
  s.map(APER, s.buf, PAGE);
  const df = s.gf.getDeviceFd(s.dev.name);
  s.gf.close();
  assert.equal(s.vg.container, s.c, "the open device file keeps the group in the container");
  assert.equal(pinCount(s, s.buf), 1);
  df.close();
  assert.equal(s.vg.container, null);
  assert.equal(s.c.driver, null);
  assert.equal(pinCount(s, s.buf), 0);
});

test("a closed container fd answers EBADF, but its groups keep the IOMMU state alive until they leave", () => {
  const s = setup();
  s.map(APER, s.buf, PAGE);
  s.c.close();
  assert.throws(() => s.c.getApiVersion(), isErrno("EBADF"));
  assert.equal(pinCount(s, s.buf), 1);
  s.gf.close();
  assert.equal(pinCount(s, s.buf), 0);
});

test("a second group joining a container with the IOMMU set is attached at once; a group is attached to a container only once (EINVAL)", () => {
  const s = setup();
  const dev2 = mockDevice();
  const g2 = V.VfioGroup.forIommuGroup(dev2.group).open(s.p);
  g2.setContainer(s.c);
  assert.equal(dev2.group.domain, s.dev.group.domain, "mock groups share one domain");
  assert.throws(() => s.iommu().attachGroup(g2.group), isErrno("EINVAL"));
});

// ================================================================================================
// 1.2 extensions once set

test("CHECK_EXTENSION after SET_IOMMU: UPDATE_VADDR is 1 without mdevs and 0 with an emulated group; DMA_CC is 1 iff every domain enforces coherency", () => {
  const s = setup();
  assert.equal(s.c.checkExtension(S.VFIO_UPDATE_VADDR), 1);
  assert.equal(s.c.checkExtension(S.VFIO_DMA_CC_IOMMU), 0, "the mock domain does not enforce cache coherency");
  assert.equal(s.c.checkExtension(S.VFIO_TYPE1_NESTING_IOMMU), 1);
  V.VfioGroup.mdev("mdev0").open(s.p).setContainer(s.c);
  assert.equal(s.c.checkExtension(S.VFIO_UPDATE_VADDR), 0);

  const x = setup({ dev: x86Iommu().device() });
  assert.equal(x.c.checkExtension(S.VFIO_DMA_CC_IOMMU), 1);
  V.VfioGroup.forIommuGroup(mockDevice().group).open(x.p).setContainer(x.c);
  assert.equal(x.c.checkExtension(S.VFIO_DMA_CC_IOMMU), 0, "one non-coherent domain makes it 0");
});

// ================================================================================================
// 1.3 GET_INFO

test("GET_INFO: argsz below 16 is EINVAL; flags are PGSIZES|CAPS; a buffer smaller than the whole chain gets no caps at all (cap_offset 0, argsz raised), unlike iommufd's partial caps", () => {
  const s = setup();
  assert.throws(() => s.info(15), isErrno("EINVAL"));
  for (const argsz of [16, 24, 56, 72, 103]) {
    const i = s.info(argsz);
    assert.equal(i.flags, S.VFIO_IOMMU_INFO_PGSIZES | S.VFIO_IOMMU_INFO_CAPS);
    assert.equal(i.cap_offset, 0);
    assert.equal(i.argsz, 104);
    assert.equal(i.caps, undefined, `argsz ${argsz}: nothing past the header is copied`);
    assert.equal(V.encodeIommuType1Info(i, argsz).length, Math.min(argsz, 24), "only min(argsz, 24) bytes are written");
  }
  const full = s.info(104);
  assert.equal(full.cap_offset, 24);
  assert.equal(full.argsz, 104);
});

test("GET_INFO caps come in type1's order MIGRATION, DMA_AVAIL, IOVA_RANGE, padded to 8 bytes and zero-filled, byte for byte; a large argsz is left as it was (iommufd shrinks it)", () => {
  const s = setup();
  const i = s.info(4096);
  assert.deepEqual(
    i.caps?.map((c) => [c.header.id, c.header.next]),
    [
      [V.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 56],
      [S.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 72],
      [S.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 0],
    ],
  );
  assert.equal(
    hex(V.encodeIommuType1Info(i, 4096)),
    "00100000030000000010000000000000" + "1800000000000000" +
      "0200010038000000" + "0000000000000000" + "0010000000000000" + "0000001000000000" +
      "0300010048000000" + "ffff000000000000" +
      "0100010000000000" + "0100000000000000" + "0000000100000000" + "ffffff7f00000000",
  );
});

test("GET_INFO iova_pgsizes: the AND of the domains' page sizes with sub-4K sizes folded into PAGE_SIZE; the MIGRATION cap reports the smallest", () => {
  const s = setup();
  assert.equal(s.info().iova_pgsizes, 0x1000n, "mock 2 KiB pages fold into 4 KiB");
  const h = setup({ dev: S.createMockDevice(S.MOCK_FLAGS_DEVICE_HUGE_IOVA) });
  assert.equal(h.info().iova_pgsizes, 0x101000n, "2 KiB | 1 MiB -> 4 KiB | 1 MiB");
  const mig = capOf<V.VfioIommuType1InfoCapMigration>(h.info(), V.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION);
  assert.equal(mig?.pgsize_bitmap, 0x1000n);
  assert.equal(mig?.max_dirty_bitmap_size, V.DIRTY_BITMAP_SIZE_MAX);
  assert.equal(mig?.flags, 0);
});

test("GET_INFO for an mdev-only container: no IOVA_RANGE cap (the valid list is empty), pgsizes PAGE_MASK", () => {
  const s = setup({ vg: V.VfioGroup.mdev("mdev0") });
  assert.equal(s.info(24).argsz, 24 + 32 + 16);
  const i = s.info();
  assert.deepEqual(i.caps?.map((c) => c.header.id), [V.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, S.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL]);
  assert.equal(i.iova_pgsizes, 0xfffffffffffff000n);
  assert.equal(ranges(i), undefined);
});

// ================================================================================================
// dma_entry_limit and the DMA_AVAIL capability

test("dma_entry_limit defaults to 65535 per container and DMA_AVAIL counts it down per mapping, back up per unmapped mapping", () => {
  const s = setup({ rlimitMemlock: 1 << 30 });
  assert.equal(dmaAvail(s.info()), 65535);
  for (let i = 0n; i < 3n; i++) s.map(APER + i * PAGE, s.buf, PAGE);
  assert.equal(dmaAvail(s.info()), 65532);
  assert.equal(s.unmap(APER, 3n * PAGE), 3n * PAGE);
  assert.equal(dmaAvail(s.info()), 65535);
});

test("dma_entry_limit exhausted: the next MAP_DMA is ENOSPC and DMA_AVAIL reads 0; another container has its own budget", () => {
  const s = setup({ type1: { dmaEntryLimit: 4 }, rlimitMemlock: 1 << 30 });
  for (let i = 0n; i < 4n; i++) s.map(APER + i * PAGE, s.buf + Number(i) * 4096, PAGE);
  assert.throws(() => s.map(APER + 8n * PAGE, s.buf, PAGE), isErrno("ENOSPC"));
  assert.equal(dmaAvail(s.info()), 0);
  const t = setup({ type1: { dmaEntryLimit: 4 }, host: s.host });
  assert.equal(dmaAvail(t.info()), 4);
  t.map(APER, t.buf, PAGE);
  s.unmap(APER, PAGE);
  assert.equal(s.map(APER + 8n * PAGE, s.buf, PAGE), 0, "a freed slot can be used again");
});

test("MAP_DMA checks in type1's order: alignment before overlap (EINVAL), overlap before the limit (EEXIST), the limit before the valid IOVA range (ENOSPC)", () => {
  const s = setup({ type1: { dmaEntryLimit: 1 } });
  s.map(APER, s.buf, PAGE);
  assert.throws(() => s.map(APER + 0x800n, s.buf, PAGE), isErrno("EINVAL"));
  assert.throws(() => s.map(APER, s.buf, PAGE), isErrno("EEXIST"));
  assert.throws(() => s.map(0n, s.buf, PAGE), isErrno("ENOSPC"), "iova 0 is outside the aperture, but the limit is checked first");
  s.unmap(APER, PAGE);
  assert.throws(() => s.map(0n, s.buf, PAGE), isErrno("EINVAL"));
});

// ================================================================================================
// 1.4 MAP_DMA

test("MAP_DMA: argsz below 32 or an unknown flag is EINVAL", () => {
  const s = setup();
  assert.throws(() => s.c.iommuMapDma({ argsz: 31, flags: RW, vaddr: BigInt(s.buf), iova: APER, size: PAGE }), isErrno("EINVAL"));
  assert.throws(() => s.map(APER, s.buf, PAGE, RW | (1 << 3)), isErrno("EINVAL"));
  assert.throws(() => s.map(APER, s.buf, PAGE, 1 << 31), isErrno("EINVAL"));
});

test("MAP_DMA: flags must have READ and/or WRITE, or VADDR alone: flags 0 (accepted by iommufd) and VADDR|READ are EINVAL", () => {
  const s = setup();
  assert.throws(() => s.map(APER, s.buf, PAGE, 0), isErrno("EINVAL"));
  assert.throws(() => s.map(APER, s.buf, PAGE, S.VFIO_DMA_MAP_FLAG_VADDR | S.VFIO_DMA_MAP_FLAG_READ), isErrno("EINVAL"));
  for (const f of [S.VFIO_DMA_MAP_FLAG_READ, S.VFIO_DMA_MAP_FLAG_WRITE, RW]) {
    assert.equal(s.map(APER, s.buf, PAGE, f), 0);
    s.unmap(APER, PAGE);
  }
});

test("MAP_DMA: size 0, or size, iova or vaddr not aligned to the smallest page size (4 KiB, even on the 2 KiB mock) is EINVAL", () => {
  const s = setup();
  assert.throws(() => s.map(APER, s.buf, 0n), isErrno("EINVAL"));
  assert.throws(() => s.map(APER, s.buf, 0x800n), isErrno("EINVAL"));
  assert.throws(() => s.map(APER + 0x800n, s.buf, PAGE), isErrno("EINVAL"));
  assert.throws(() => s.map(APER, s.buf + 0x800, PAGE), isErrno("EINVAL"));
  assert.throws(() => s.map(APER, s.buf + 0x100, PAGE), isErrno("EINVAL"));
});

test("MAP_DMA with 1 MiB IO pages supported still only requires 4 KiB alignment (the smallest size)", () => {
  const s = setup({ dev: S.createMockDevice(S.MOCK_FLAGS_DEVICE_HUGE_IOVA) });
  assert.equal(s.map(APER + PAGE, s.buf, PAGE), 0);
});

test("MAP_DMA: an iova or vaddr range that wraps past 2^64 is EINVAL (iommufd says EOVERFLOW)", () => {
  const s = setup({ vg: V.VfioGroup.mdev("mdev0") });
  assert.throws(() => s.map(U64_MAX - 0xfffn, s.buf, 2n * PAGE), isErrno("EINVAL"));
  assert.throws(() => s.map(APER, U64_MAX - 0xfffn, 2n * PAGE), isErrno("EINVAL"));
});

test("MAP_DMA: any overlap with an existing mapping is EEXIST", () => {
  const s = setup();
  s.map(APER + 4n * PAGE, s.buf, 4n * PAGE);
  for (const [iova, size] of [
    [APER + 4n * PAGE, 4n * PAGE],
    [APER + 5n * PAGE, PAGE],
    [APER, 5n * PAGE],
    [APER + 7n * PAGE, 4n * PAGE],
    [APER, 16n * PAGE],
  ] as const)
    assert.throws(() => s.map(iova, s.buf, size), isErrno("EEXIST"), `[${iova}, +${size})`);
  assert.equal(s.map(APER, s.buf, 4n * PAGE), 0, "adjacent is fine");
  assert.equal(s.map(APER + 8n * PAGE, s.buf, 4n * PAGE), 0);
});

test("MAP_DMA: a range not inside one valid IOVA range is EINVAL (outside the mock aperture, or straddling its end)", () => {
  const s = setup();
  assert.throws(() => s.map(0n, s.buf, PAGE), isErrno("EINVAL"));
  assert.throws(() => s.map(APER - PAGE, s.buf, 2n * PAGE), isErrno("EINVAL"));
  assert.throws(() => s.map(S.MOCK_APERTURE_LAST + 1n - PAGE, s.buf, 2n * PAGE), isErrno("EINVAL"));
  assert.equal(s.map(S.MOCK_APERTURE_LAST + 1n - PAGE, s.buf, PAGE), 0);
});

test("MAP_DMA: an unmapped vaddr is EFAULT, WRITE of read-only memory EFAULT, READ of it works; a failure leaves no mapping and no pin", () => {
  const s = setup();
  const ro = s.p.mmap(4 * 4096, { prot: S.PROT_READ, populate: true });
  assert.throws(() => s.map(APER, 0x10000, PAGE), isErrno("EFAULT"));
  assert.throws(() => s.map(APER, ro, PAGE), isErrno("EFAULT"));
  assert.throws(() => s.map(APER, ro, PAGE, S.VFIO_DMA_MAP_FLAG_WRITE), isErrno("EFAULT"));
  assert.equal(dmaAvail(s.info()), 65535);
  assert.equal(s.p.mm.lockedVm, 0);
  assert.equal(s.map(APER, ro, PAGE, S.VFIO_DMA_MAP_FLAG_READ), 0);
  assert.equal(pinCount(s, ro), 1);
});

test("MAP_DMA maps the pinned pages into the domain: each IOVA translates to its vaddr's page, with the requested permissions", () => {
  const s = setup();
  s.p.write(s.buf + 4096, new Uint8Array([1])); // fault in
  s.map(APER, s.buf, 4n * PAGE, S.VFIO_DMA_MAP_FLAG_READ);
  const d = s.iommu().groupIommuDomain(s.dev.group);
  for (let i = 0; i < 4; i++) {
    assert.equal(phys(d, APER + BigInt(i) * PAGE), (s.p.mm.peekPfn(s.buf + i * 4096) as number) * 4096);
    assert.equal(d.protAt(Number((APER + BigInt(i) * PAGE) >> 11n)), IOMMU_READ);
  }
  assert.equal(phys(d, APER + 4n * PAGE), -1);
});

test("MAP_DMA charges mm->locked_vm per mapping (the same pages mapped twice count twice) and RLIMIT_MEMLOCK is ENOMEM, leaving nothing pinned", () => {
  const s = setup({ rlimitMemlock: 6 * 4096 });
  s.map(APER, s.buf, 4n * PAGE);
  assert.equal(s.p.mm.lockedVm, 4);
  assert.equal(s.p.user.lockedVm, 0, "type1 charges the mm, not the user");
  s.map(APER + 4n * PAGE, s.buf, 2n * PAGE);
  assert.equal(s.p.mm.lockedVm, 6);
  assert.equal(pinCount(s, s.buf), 2);
  assert.throws(() => s.map(APER + 8n * PAGE, s.buf + 8 * 4096, PAGE), isErrno("ENOMEM"));
  assert.equal(pinCount(s, s.buf + 8 * 4096), 0);
  assert.equal(s.p.mm.lockedVm, 6);
  assert.equal(dmaAvail(s.info()), 65533);
  s.unmap(0n, 0n, S.VFIO_DMA_UNMAP_FLAG_ALL);
  assert.equal(s.p.mm.lockedVm, 0);
  assert.equal(pinCount(s, s.buf), 0);
});

test("MAP_DMA with CAP_IPC_LOCK is not limited by RLIMIT_MEMLOCK but still counted in locked_vm", () => {
  const s = setup({ rlimitMemlock: 0, capIpcLock: true });
  assert.equal(s.map(APER, s.buf, 16n * PAGE), 0);
  assert.equal(s.p.mm.lockedVm, 16);
});

test("locked_vm is shared with iommufd's mm-mode accounting: pins charged by either count against the same RLIMIT_MEMLOCK", () => {
  const s = setup({ rlimitMemlock: 8 * 4096 });
  const ctx = S.openIommufd(s.host, s.p, { vfioContainer: true });
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  ctx.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN, id: ioas });
  const other = s.p.mmap(8 * 4096);
  ctx.ioasMap({ flags: 7, ioas_id: ioas, user_va: BigInt(other), length: 6n * PAGE, iova: APER });
  assert.equal(s.p.mm.lockedVm, 6);
  assert.throws(() => s.map(APER, s.buf, 4n * PAGE), isErrno("ENOMEM"));
  assert.equal(s.map(APER, s.buf, 2n * PAGE), 0);
  assert.equal(s.p.mm.lockedVm, 8);
});

// ================================================================================================
// 1.5 UNMAP_DMA

test("UNMAP_DMA: argsz below 24 or an unknown flag is EINVAL; GET_DIRTY_BITMAP with ALL or VADDR is EINVAL", () => {
  const s = setup();
  assert.throws(() => s.c.iommuUnmapDma({ argsz: 23, flags: 0, iova: APER, size: PAGE }), isErrno("EINVAL"));
  assert.throws(() => s.unmap(APER, PAGE, 1 << 3), isErrno("EINVAL"));
  assert.throws(() => s.unmap(0n, 0n, S.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | S.VFIO_DMA_UNMAP_FLAG_ALL), isErrno("EINVAL"));
  assert.throws(() => s.unmap(APER, PAGE, S.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | S.VFIO_DMA_UNMAP_FLAG_VADDR), isErrno("EINVAL"));
});

test("UNMAP_DMA: iova or size not aligned to the smallest page size, size 0, or a wrapping range is EINVAL; ALL needs iova 0 and size 0", () => {
  const s = setup();
  s.map(APER, s.buf, 4n * PAGE);
  for (const [iova, size, flags] of [
    [APER + 0x800n, PAGE, 0],
    [APER, 0x800n, 0],
    [APER, 0n, 0],
    [U64_MAX - 0xfffn, 2n * PAGE, 0],
    [APER, 0n, S.VFIO_DMA_UNMAP_FLAG_ALL],
    [0n, PAGE, S.VFIO_DMA_UNMAP_FLAG_ALL],
  ] as const)
    assert.throws(() => s.unmap(iova, size, flags), isErrno("EINVAL"), `${iova} ${size} ${flags}`);
  assert.equal(s.unmap(APER, 4n * PAGE), 4n * PAGE, "nothing was removed by the failures");
});

test("UNMAP_DMA v2: a range that bisects a mapping at either end is EINVAL (iommufd says ENOENT) and removes nothing", () => {
  const s = setup();
  s.map(APER, s.buf, 4n * PAGE);
  s.map(APER + 4n * PAGE, s.buf, 4n * PAGE);
  for (const [iova, size] of [
    [APER + PAGE, PAGE],
    [APER, PAGE],
    [APER + 3n * PAGE, 2n * PAGE],
    [APER, 6n * PAGE],
    [APER + 2n * PAGE, 6n * PAGE],
    [0n, APER + PAGE],
  ] as const)
    assert.throws(() => s.unmap(iova, size), isErrno("EINVAL"), `[${iova}, +${size})`);
  assert.equal(dmaAvail(s.info()), 65533);
});

test("UNMAP_DMA v2: every whole mapping inside the range goes, any number of them; a range with no mapping succeeds with 0", () => {
  const s = setup();
  s.map(APER, s.buf, 4n * PAGE);
  s.map(APER + 8n * PAGE, s.buf, 4n * PAGE);
  assert.equal(s.unmap(APER + 4n * PAGE, 4n * PAGE), 0n);
  assert.equal(s.unmap(0n, 1n << 40n), 8n * PAGE);
  assert.equal(s.unmap(APER, 16n * PAGE), 0n);
});

test("UNMAP_DMA v1: a range starting inside a mapping stops the walk there: success with 0 bytes, nothing removed", () => {
  const s = setup({ type: S.VFIO_TYPE1_IOMMU });
  s.map(APER, s.buf, 4n * PAGE);
  s.map(APER + 4n * PAGE, s.buf, 4n * PAGE);
  assert.equal(s.unmap(APER + PAGE, PAGE), 0n);
  assert.equal(s.unmap(APER + PAGE, 7n * PAGE), 0n, "even though the second mapping is fully covered");
  assert.equal(dmaAvail(s.info()), 65533);
});

test("UNMAP_DMA v1: a range covering the first IOVA of a mapping removes the whole mapping, even past the range's end, and reports its size", () => {
  const s = setup({ type: S.VFIO_TYPE1_IOMMU });
  s.map(APER, s.buf, 4n * PAGE);
  s.map(APER + 4n * PAGE, s.buf, 4n * PAGE);
  assert.equal(s.unmap(APER, PAGE), 4n * PAGE);
  assert.equal(s.unmap(APER + 2n * PAGE, 3n * PAGE), 4n * PAGE, "starts in a hole, covers the second mapping's first page");
  assert.equal(dmaAvail(s.info()), 65535);
});

test("UNMAP_DMA ALL removes every mapping ([0, U64_MAX]) and reports the total; on an empty container it succeeds with 0", () => {
  const s = setup({ type: S.VFIO_TYPE1_IOMMU });
  s.map(APER, s.buf, 4n * PAGE);
  s.map(S.MOCK_APERTURE_LAST + 1n - PAGE, s.buf, PAGE);
  assert.equal(s.unmap(0n, 0n, S.VFIO_DMA_UNMAP_FLAG_ALL), 5n * PAGE);
  assert.equal(s.unmap(0n, 0n, S.VFIO_DMA_UNMAP_FLAG_ALL), 0n);
});

test("UNMAP_DMA unmaps from the domain, unpins and uncharges", () => {
  const s = setup();
  s.map(APER, s.buf, 4n * PAGE);
  const d = s.iommu().groupIommuDomain(s.dev.group);
  assert.notEqual(phys(d, APER), -1);
  s.unmap(APER, 4n * PAGE);
  assert.equal(phys(d, APER), -1);
  assert.equal(d.mappedPages(), 0);
  assert.equal(pinCount(s, s.buf), 0);
  assert.equal(s.p.mm.lockedVm, 0);
});

test("UNMAP_DMA is not restricted to the process that mapped (no owner check in 6.12); the pins are uncharged from the mapper", () => {
  const s = setup();
  s.map(APER, s.buf, 4n * PAGE);
  const child = s.p.fork();
  assert.equal(s.c.as(child, (c) => c.iommuUnmapDma({ argsz: 24, flags: 0, iova: APER, size: 4n * PAGE }).size), 4n * PAGE);
  assert.equal(s.p.mm.lockedVm, 0);
  assert.equal(child.mm.lockedVm, 0);
});

// ================================================================================================
// VADDR (VFIO_UPDATE_VADDR)

test("UNMAP_DMA VADDR invalidates the vaddrs of whole mappings (DMA goes on); MAP_DMA VADDR renews an exact, invalidated mapping: ENOENT without one, EINVAL otherwise", () => {
  const s = setup();
  s.map(APER, s.buf, 4n * PAGE);
  const d = s.iommu().groupIommuDomain(s.dev.group);
  const before = phys(d, APER);
  assert.throws(() => s.map(APER, s.buf, 4n * PAGE, S.VFIO_DMA_MAP_FLAG_VADDR), isErrno("EINVAL"), "not invalidated");
  assert.equal(s.unmap(APER, 4n * PAGE, S.VFIO_DMA_UNMAP_FLAG_VADDR), 4n * PAGE);
  assert.equal(phys(d, APER), before, "still mapped");
  assert.equal(dmaAvail(s.info()), 65534, "still a mapping");
  assert.throws(() => s.map(APER + 8n * PAGE, s.buf, PAGE, S.VFIO_DMA_MAP_FLAG_VADDR), isErrno("ENOENT"));
  assert.throws(() => s.map(APER, s.buf, 2n * PAGE, S.VFIO_DMA_MAP_FLAG_VADDR), isErrno("EINVAL"), "size mismatch");
  const other = s.p.mmap(4 * 4096);
  assert.equal(s.map(APER, other, 4n * PAGE, S.VFIO_DMA_MAP_FLAG_VADDR), 0);
  assert.equal(s.iommu().dmaList.first(APER, APER)?.vaddr, BigInt(other));
  assert.throws(() => s.map(APER, other, 4n * PAGE, S.VFIO_DMA_MAP_FLAG_VADDR), isErrno("EINVAL"), "valid again");
});

test("UNMAP_DMA VADDR over a range holding an already-invalid mapping rolls the others back and is EINVAL", () => {
  const s = setup();
  s.map(APER, s.buf, 4n * PAGE);
  s.map(APER + 4n * PAGE, s.buf, 4n * PAGE);
  s.unmap(APER + 4n * PAGE, 4n * PAGE, S.VFIO_DMA_UNMAP_FLAG_VADDR);
  assert.throws(() => s.unmap(APER, 8n * PAGE, S.VFIO_DMA_UNMAP_FLAG_VADDR), isErrno("EINVAL"));
  assert.equal(s.iommu().vaddrInvalidCount, 1);
  assert.equal(s.iommu().dmaList.first(APER, APER)?.vaddrInvalid, false);
});

test("while a vaddr is invalid, attaching a group is EBUSY (attach might have to pin)", () => {
  const s = setup();
  s.map(APER, s.buf, 4n * PAGE);
  s.unmap(APER, 4n * PAGE, S.VFIO_DMA_UNMAP_FLAG_VADDR);
  const g2 = V.VfioGroup.forIommuGroup(mockDevice().group).open(s.p);
  assert.throws(() => g2.setContainer(s.c), isErrno("EBUSY"));
  assert.equal(g2.group.iommuGroup.ownerCnt, 0, "the DMA ownership claim was undone");
  s.map(APER, s.buf, 4n * PAGE, S.VFIO_DMA_MAP_FLAG_VADDR);
  g2.setContainer(s.c);
});

test("UNMAP_DMA VADDR with an emulated (mdev) group in the container is EBUSY", () => {
  const s = setup();
  V.VfioGroup.mdev("mdev0").open(s.p).setContainer(s.c);
  s.map(APER, s.buf, PAGE);
  assert.throws(() => s.unmap(APER, PAGE, S.VFIO_DMA_UNMAP_FLAG_VADDR), isErrno("EBUSY"));
});

test("MAP_DMA VADDR from another process moves the mapping's locked_vm to it (ENOMEM if that exceeds its limit)", () => {
  const s = setup({ rlimitMemlock: 1 << 20 });
  s.map(APER, s.buf, 4n * PAGE);
  s.unmap(APER, 4n * PAGE, S.VFIO_DMA_UNMAP_FLAG_VADDR);
  const poor = s.host.spawn({ uid: 1000, rlimitMemlock: 2 * 4096 });
  const pbuf = poor.mmap(4 * 4096);
  assert.throws(() => s.c.as(poor, (c) => c.iommuMapDma({ argsz: 32, flags: S.VFIO_DMA_MAP_FLAG_VADDR, vaddr: BigInt(pbuf), iova: APER, size: 4n * PAGE })), isErrno("ENOMEM"));
  const rich = s.host.spawn({ uid: 1000, rlimitMemlock: 1 << 20 });
  const rbuf = rich.mmap(4 * 4096);
  s.c.as(rich, (c) => c.iommuMapDma({ argsz: 32, flags: S.VFIO_DMA_MAP_FLAG_VADDR, vaddr: BigInt(rbuf), iova: APER, size: 4n * PAGE }));
  assert.equal(s.p.mm.lockedVm, 0);
  assert.equal(rich.mm.lockedVm, 4);
  s.unmap(APER, 4n * PAGE);
  assert.equal(rich.mm.lockedVm, 0);
});

// ================================================================================================
// 1.7 reserved regions and MSI (seeds/001)

test("x86: the hardware MSI window 0xfee00000-0xfeefffff is excluded from the valid IOVAs (two IOVA ranges), MAP_DMA into it is EINVAL, no MSI cookie is taken", () => {
  const s = setup({ dev: x86Iommu().device() });
  assert.deepEqual(ranges(s.info()), [
    [0n, 0xfedfffffn],
    [0xfef00000n, (1n << 48n) - 1n],
  ]);
  assert.throws(() => s.map(V.X86_MSI_START, s.buf, PAGE), isErrno("EINVAL"));
  assert.throws(() => s.map(V.X86_MSI_START - PAGE, s.buf, 2n * PAGE), isErrno("EINVAL"), "straddling into the window");
  assert.throws(() => s.map(V.X86_MSI_LAST + 1n - PAGE, s.buf, 2n * PAGE), isErrno("EINVAL"), "straddling out of it");
  assert.equal(s.map(V.X86_MSI_START - PAGE, s.buf, PAGE), 0);
  assert.equal(s.map(V.X86_MSI_LAST + 1n, s.buf, PAGE), 0);
  const d = s.iommu().groupIommuDomain(s.dev.group);
  assert.equal(S.msiCookieOf(d), undefined);
  assert.equal(S.iommuDmaPrepareMsi(d, 0xfee00000), 0xfee00000n, "x86 MSIs are not translated");
});

test("ARM: the SW_MSI window is excluded from the valid IOVAs and the domain gets an MSI cookie at its base; each doorbell page is mapped once, at the next page of the window", () => {
  const s = setup({ dev: armIommu().device() });
  assert.deepEqual(ranges(s.info()), [
    [0n, V.ARM_SW_MSI_BASE - 1n],
    [V.ARM_SW_MSI_BASE + V.ARM_SW_MSI_LENGTH, (1n << 48n) - 1n],
  ]);
  assert.throws(() => s.map(V.ARM_SW_MSI_BASE, s.buf, PAGE), isErrno("EINVAL"));
  const d = s.iommu().groupIommuDomain(s.dev.group);
  assert.equal(S.msiCookieOf(d)?.base, V.ARM_SW_MSI_BASE);
  const its = 0x8090040; // GITS_TRANSLATER of a GICv3 ITS
  assert.equal(S.iommuDmaPrepareMsi(d, its), V.ARM_SW_MSI_BASE + 0x40n);
  assert.equal(S.iommuDmaPrepareMsi(d, its), V.ARM_SW_MSI_BASE + 0x40n, "the same doorbell reuses its page");
  assert.equal(S.iommuDmaPrepareMsi(d, 0x90000000), V.ARM_SW_MSI_BASE + PAGE, "another doorbell takes the next page");
  assert.equal(phys(d, V.ARM_SW_MSI_BASE + 0x40n), its);
  assert.equal(d.protAt(Number(V.ARM_SW_MSI_BASE >> 11n)), IOMMU_WRITE);
});

test("seeds/001: UNMAP of 0..2^64-1 (UNMAP_ALL, or iova 0 with the largest aligned size) removes the user's mappings but never the MSI doorbell mappings", () => {
  for (const how of ["all", "range"] as const) {
    const s = setup({ dev: armIommu().device() });
    const d = s.iommu().groupIommuDomain(s.dev.group);
    const msi = S.iommuDmaPrepareMsi(d, 0x8090040);
    s.map(0x100000n, s.buf, 4n * PAGE);
    s.map(0x40000000n, s.buf, 4n * PAGE);
    const n = how === "all" ? s.unmap(0n, 0n, S.VFIO_DMA_UNMAP_FLAG_ALL) : s.unmap(0n, U64_MAX + 1n - PAGE);
    assert.equal(n, 8n * PAGE);
    assert.equal(phys(d, msi), 0x8090040, `${how}: the doorbell is still mapped`);
    assert.equal(d.mappedPages(), PAGE_IO(d), "only the doorbell page is left");
  }
});

test("seeds/001: the proposed VFIO_DMA_MAP_FLAG_MSI_RESERVED_IOVA (bit 2) was never merged: that bit is VADDR, so registering an MSI range through MAP_DMA is EINVAL (with READ|WRITE) or ENOENT (alone); the window is found through IOVA_RANGE instead", () => {
  const s = setup({ dev: armIommu().device() });
  const MSI_RESERVED_IOVA = 1 << 2;
  assert.equal(MSI_RESERVED_IOVA, S.VFIO_DMA_MAP_FLAG_VADDR);
  assert.throws(() => s.map(V.ARM_SW_MSI_BASE, 0n, V.ARM_SW_MSI_LENGTH, RW | MSI_RESERVED_IOVA), isErrno("EINVAL"));
  assert.throws(() => s.map(V.ARM_SW_MSI_BASE, 0n, V.ARM_SW_MSI_LENGTH, MSI_RESERVED_IOVA), isErrno("ENOENT"));
  const r = ranges(s.info()) as [bigint, bigint][];
  assert.ok(r.every(([a, b]) => b < V.ARM_SW_MSI_BASE || a >= V.ARM_SW_MSI_BASE + V.ARM_SW_MSI_LENGTH), "the window is a hole in IOVA_RANGE");
});

function PAGE_IO(d: PagingDomain): number {
  return 4096 >> d.pgShift;
}

test("a group reporting both a hardware MSI region and a SW_MSI window: the hardware region wins, no cookie is taken, both are excluded", () => {
  const both = new PlatformIommu("both", {
    resv: [
      { start: V.ARM_SW_MSI_BASE, length: V.ARM_SW_MSI_LENGTH, type: ResvType.SW_MSI },
      { start: V.X86_MSI_START, length: 0x100000n, type: ResvType.MSI },
    ],
  });
  const s = setup({ dev: both.device() });
  assert.equal(S.msiCookieOf(s.iommu().groupIommuDomain(s.dev.group)), undefined);
  assert.equal(ranges(s.info())?.length, 3);
});

test("reserved regions: DIRECT and RESERVED ranges are excluded from the valid IOVAs, DIRECT_RELAXABLE ones (e.g. USB/GPU RMRRs) stay usable", () => {
  const iommu = x86Iommu({
    resv: [
      { start: 0xe0000n, length: 0x20000n, type: ResvType.DIRECT },
      { start: 0x3f000000n, length: 0x1000000n, type: ResvType.DIRECT_RELAXABLE },
      { start: 0xfed00000n, length: 0x1000n, type: ResvType.RESERVED },
    ],
  });
  const s = setup({ dev: iommu.device() });
  assert.deepEqual(ranges(s.info()), [
    [0n, 0xdffffn],
    [0x100000n, 0xfecfffffn],
    [0xfed01000n, (1n << 48n) - 1n],
  ]);
  assert.equal(s.map(0x3f000000n, s.buf, PAGE), 0, "relaxable");
  assert.throws(() => s.map(0xe0000n, s.buf, PAGE), isErrno("EINVAL"));
});

test("the valid IOVAs of several groups: the intersection of their apertures minus all their reserved regions", () => {
  const s = setup({ dev: x86Iommu().device() });
  V.VfioGroup.forIommuGroup(armIommu().device().group).open(s.p).setContainer(s.c);
  V.VfioGroup.forIommuGroup(mockDevice().group).open(s.p).setContainer(s.c);
  assert.deepEqual(ranges(s.info()), [
    [APER, V.ARM_SW_MSI_BASE - 1n],
    [V.ARM_SW_MSI_BASE + V.ARM_SW_MSI_LENGTH, S.MOCK_APERTURE_LAST],
  ]);
});

test("attaching a group whose non-relaxable reserved region covers an existing mapping is EINVAL and changes nothing", () => {
  const s = setup({ dev: x86Iommu({ resv: [] }).device() });
  s.map(V.X86_MSI_START, s.buf, PAGE);
  const g2 = V.VfioGroup.forIommuGroup(x86Iommu().device().group).open(s.p);
  assert.throws(() => g2.setContainer(s.c), isErrno("EINVAL"));
  assert.equal(g2.group.container, null);
  assert.equal(g2.group.iommuGroup.domain, null);
  assert.equal(g2.group.iommuGroup.ownerCnt, 0);
  assert.deepEqual(ranges(s.info()), [[0n, (1n << 48n) - 1n]]);
  // a relaxable region over the mapping does not conflict
  const g3 = V.VfioGroup.forIommuGroup(
    x86Iommu({ resv: [{ start: V.X86_MSI_START, length: PAGE, type: ResvType.DIRECT_RELAXABLE }] }).device().group,
  ).open(s.p);
  g3.setContainer(s.c);
});

test("attaching a group whose aperture would cut off an existing mapping is EINVAL, and so is a disjoint aperture", () => {
  const s = setup({ dev: x86Iommu().device() });
  s.map(0x100000n, s.buf, PAGE);
  const g2 = V.VfioGroup.forIommuGroup(mockDevice().group).open(s.p);
  assert.throws(() => g2.setContainer(s.c), isErrno("EINVAL"), "the mock aperture starts at 16 MiB");
  s.unmap(0x100000n, PAGE);
  s.map(S.MOCK_APERTURE_LAST + 1n, s.buf, PAGE);
  assert.throws(() => g2.setContainer(s.c), isErrno("EINVAL"), "and ends below 2 GiB");
  s.unmap(0n, 0n, S.VFIO_DMA_UNMAP_FLAG_ALL);
  g2.setContainer(s.c);
  const high = new PlatformIommu("high", { apertureStart: 1n << 40n, apertureEnd: (1n << 41n) - 1n });
  const g3 = V.VfioGroup.forIommuGroup(high.device().group).open(s.p);
  assert.throws(() => g3.setContainer(s.c), isErrno("EINVAL"), "disjoint from [16M, 2G)");
});

test("detaching a group gives its reserved regions back and widens the aperture again", () => {
  const s = setup({ dev: x86Iommu().device() });
  const g2 = V.VfioGroup.forIommuGroup(mockDevice().group).open(s.p);
  g2.setContainer(s.c);
  assert.deepEqual(ranges(s.info()), [[APER, S.MOCK_APERTURE_LAST]]);
  g2.unsetContainer();
  assert.deepEqual(ranges(s.info()), [
    [0n, 0xfedfffffn],
    [0xfef00000n, (1n << 48n) - 1n],
  ]);
  const g3 = V.VfioGroup.forIommuGroup(armIommu().device().group).open(s.p);
  g3.setContainer(s.c);
  assert.equal(ranges(s.info())?.length, 3);
  g3.unsetContainer();
  assert.equal(ranges(s.info())?.length, 2, "the SW_MSI window is usable again");
});

test("without MSI isolation (no interrupt remapping) attaching is EPERM, unless allow_unsafe_interrupts is set", () => {
  const noIr = { isolatedMsi: () => false };
  const s = setup({ type: null, type1: noIr });
  assert.throws(() => s.c.setIommu(S.VFIO_TYPE1v2_IOMMU), isErrno("EPERM"));
  assert.equal(s.c.driver, null);
  const t = setup({ type1: { ...noIr, allowUnsafeInterrupts: true } });
  assert.equal(t.c.driver, "vfio-iommu-type1");
});

// ================================================================================================
// 1.8 domains, replay, emulated groups

test("groups of the same IOMMU driver and coherency share one domain; another driver (or coherency) gets its own domain with every mapping replayed into it", () => {
  const s = setup({ dev: x86Iommu().device(), rlimitMemlock: 1 << 30 });
  s.map(0x100000n, s.buf, 4n * PAGE);
  const sibling = (s.dev.driver as PlatformIommu).device(); // same IOMMU instance, another group
  V.VfioGroup.forIommuGroup(sibling.group).open(s.p).setContainer(s.c);
  assert.equal(s.iommu().domains.length, 1, "same driver, same coherency: shared");
  const m = mockDevice();
  const mg = V.VfioGroup.forIommuGroup(m.group).open(s.p);
  assert.throws(() => mg.setContainer(s.c), isErrno("EINVAL"), "mapping below the mock aperture");
  s.unmap(0x100000n, 4n * PAGE);
  s.map(APER, s.buf, 4n * PAGE);
  mg.setContainer(s.c);
  assert.equal(s.iommu().domains.length, 2);
  const dx = s.iommu().groupIommuDomain(s.dev.group);
  const dm = s.iommu().groupIommuDomain(m.group);
  assert.notEqual(dx, dm);
  for (let i = 0n; i < 4n; i++) assert.equal(phys(dm, APER + i * PAGE), phys(dx, APER + i * PAGE), "replayed to the same pages");
  assert.equal(pinCount(s, s.buf), 1, "replay reuses the mapping's pins");
  assert.equal(s.p.mm.lockedVm, 4);
  s.map(APER + 8n * PAGE, s.buf, PAGE);
  assert.notEqual(phys(dm, APER + 8n * PAGE), -1, "new mappings go into every domain");
  assert.notEqual(phys(dx, APER + 8n * PAGE), -1);
  s.unmap(0n, 0n, S.VFIO_DMA_UNMAP_FLAG_ALL);
  assert.equal(dm.mappedPages() + dx.mappedPages(), 0);
});

test("iova_pgsizes is the AND over all domains: a 2 KiB-only domain removes the 1 MiB size of another", () => {
  const huge = new PlatformIommu("huge");
  const hd = new S.Device({ name: "h0", driver: huge, flags: S.MOCK_FLAGS_DEVICE_HUGE_IOVA });
  const s = setup({ dev: hd });
  assert.equal(s.info().iova_pgsizes, 0x101000n);
  V.VfioGroup.forIommuGroup(mockDevice().group).open(s.p).setContainer(s.c);
  assert.equal(s.info().iova_pgsizes, 0x1000n);
});

test("the last IOMMU domain leaving with an emulated group still present unmaps and unpins everything but keeps the mappings (pinned again on demand)", () => {
  const s = setup({ rlimitMemlock: 1 << 30 });
  V.VfioGroup.mdev("mdev0").open(s.p).setContainer(s.c);
  s.map(APER, s.buf, 4n * PAGE);
  assert.equal(s.p.mm.lockedVm, 4);
  s.gf.unsetContainer();
  assert.equal(s.iommu().domains.length, 0);
  assert.equal(pinCount(s, s.buf), 0);
  assert.equal(s.p.mm.lockedVm, 0);
  assert.equal(dmaAvail(s.info()), 65534, "the mapping is still recorded");
  assert.deepEqual(ranges(s.info()), [[0n, U64_MAX]], "the valid list widened to everything");
});

test("an mdev-only container records mappings without pinning, accepts any IOVA, and pins when an IOMMU-backed group arrives (replay)", () => {
  const s = setup({ vg: V.VfioGroup.mdev("mdev0") });
  assert.equal(s.map(0n, s.buf, 4n * PAGE), 0, "iova 0: the empty list allows everything");
  assert.equal(pinCount(s, s.buf), 0);
  assert.equal(s.p.mm.lockedVm, 0);
  const x = x86Iommu().device();
  V.VfioGroup.forIommuGroup(x.group).open(s.p).setContainer(s.c);
  assert.equal(pinCount(s, s.buf), 1);
  assert.equal(s.p.mm.lockedVm, 4);
  assert.notEqual(phys(s.iommu().groupIommuDomain(x.group), 0n), -1);
});

test("replay that exceeds RLIMIT_MEMLOCK fails the attach with ENOMEM and leaves nothing pinned or attached", () => {
  const s = setup({ vg: V.VfioGroup.mdev("mdev0"), rlimitMemlock: 2 * 4096 });
  s.map(APER, s.buf, 4n * PAGE);
  const m = mockDevice();
  const g = V.VfioGroup.forIommuGroup(m.group).open(s.p);
  assert.throws(() => g.setContainer(s.c), isErrno("ENOMEM"));
  assert.equal(pinCount(s, s.buf), 0);
  assert.equal(s.p.mm.lockedVm, 0);
  assert.equal(m.group.domain, null);
  assert.equal(m.group.ownerCnt, 0);
  assert.equal(s.iommu().domains.length, 0);
});

// ================================================================================================
// seeds/004: group-attach tracking for mdevs wrapping a PF/VF of a non-singleton IOMMU group

/** A non-singleton IOMMU group: a PF and a VF behind the same IOMMU (no ACS between them). */
function pfVfGroup(): { group: IommuGroup; pf: Device; vf: Device } {
  const group = new IommuGroup();
  const pf = mockDevice(group, "0000:01:00.0");
  const vf = mockDevice(group, "0000:01:00.1");
  return { group, pf, vf };
}

test("seeds/004: an mdev wrapping the PF and one wrapping the VF of the same group, in one container, share one attachment (refcount 2, one domain)", () => {
  const { group, pf, vf } = pfVfGroup();
  const m1 = V.VfioGroup.mdev("mdev-pf", { iommuDevice: pf });
  const s = setup({ vg: m1 });
  assert.equal(group.domain, s.iommu().domains[0].domain);
  const m2 = V.VfioGroup.mdev("mdev-vf", { iommuDevice: vf });
  m2.open(s.p).setContainer(s.c);
  assert.equal(s.iommu().domains.length, 1, "no second domain is allocated (none leaked)");
  assert.deepEqual(
    s.iommu().groupObjects().map((o) => [o.iommuGroup, o.count]),
    [[group, 2]],
  );
  assert.equal(s.iommu().domains[0].groupList.length, 2, "both VFIO groups are listed in the domain");
  assert.equal(group.ownerCnt, 2, "both claims are held by the same owner (the container)");
});

test("seeds/004: a wrapped-PF mdev and vfio-pci of the same group's other device in one container share the attachment, in either order", () => {
  for (const order of ["mdev first", "vfio-pci first"] as const) {
    const { group, pf } = pfVfGroup();
    const mdev = V.VfioGroup.mdev("mdev-pf", { iommuDevice: pf });
    const pci = V.VfioGroup.forIommuGroup(group);
    const [first, second] = order === "mdev first" ? [mdev, pci] : [pci, mdev];
    const s = setup({ vg: first });
    second.open(s.p).setContainer(s.c);
    assert.deepEqual(s.iommu().groupObjects().map((o) => o.count), [2], order);
    assert.equal(s.iommu().domains.length, 1);
  }
});

test("seeds/004: the same IOMMU group in another container fails: EPERM from the DMA-ownership claim at SET_CONTAINER, EBUSY from the IOMMU attach at the type1 level", () => {
  const { group, pf, vf } = pfVfGroup();
  const s = setup({ vg: V.VfioGroup.mdev("mdev-pf", { iommuDevice: pf }) });
  const other = V.openVfioContainer(s.host, s.p);
  const m2 = V.VfioGroup.mdev("mdev-vf", { iommuDevice: vf }).open(s.p);
  assert.throws(() => m2.setContainer(other), isErrno("EPERM"));
  assert.throws(() => V.VfioGroup.forIommuGroup(group).open(s.p).setContainer(other), isErrno("EPERM"));
  // the type1 backend of another container, asked directly, cannot attach the group either
  const t1 = new V.VfioIommuType1(s.host.phys, S.VFIO_TYPE1v2_IOMMU, V.defaultType1Params(), () => s.p);
  assert.throws(() => t1.attachGroup(m2.group), isErrno("EBUSY"));
  assert.equal(t1.domains.length, 0);
  assert.equal(group.domain, s.iommu().domains[0].domain, "the first container's attachment is untouched");
});

test("seeds/004: detach cannot fail and detaches the IOMMU group only when its last user leaves; the remaining user's DMA keeps working", () => {
  const { group, pf, vf } = pfVfGroup();
  const s = setup({ vg: V.VfioGroup.mdev("mdev-pf", { iommuDevice: pf }) });
  const m2 = V.VfioGroup.mdev("mdev-vf", { iommuDevice: vf }).open(s.p);
  m2.setContainer(s.c);
  s.map(APER, s.buf, 4n * PAGE);
  const d = s.iommu().domains[0].domain;
  s.gf.unsetContainer();
  assert.equal(group.domain, d, "still attached for the VF mdev");
  assert.deepEqual(s.iommu().groupObjects().map((o) => o.count), [1]);
  assert.notEqual(phys(d, APER), -1, "mappings stay");
  assert.equal(s.iommu().groupIommuDomain(m2.group.iommuGroup), d);
  // detaching a group that is not in the container is a no-op, not an error
  s.iommu().detachGroup(V.VfioGroup.mdev("stranger"));
  m2.unsetContainer();
  assert.equal(group.domain, null);
  assert.equal(group.ownerCnt, 0);
  assert.equal(pinCount(s, s.buf), 0);
  // now another container can have the group
  const t = setup({ vg: V.VfioGroup.mdev("mdev-vf2", { iommuDevice: vf }), host: s.host });
  assert.equal(group.domain, t.iommu().domains[0].domain);
});

test("seeds/004: the same VFIO group attached twice to one container is still EINVAL (duplicates are tracked by the VFIO group's own IOMMU group)", () => {
  const { pf } = pfVfGroup();
  const m1 = V.VfioGroup.mdev("mdev-pf", { iommuDevice: pf });
  const s = setup({ vg: m1 });
  assert.throws(() => s.iommu().attachGroup(m1), isErrno("EINVAL"));
  assert.deepEqual(s.iommu().groupObjects().map((o) => o.count), [1]);
});

// ================================================================================================
// emulated devices: vfio_pin_pages and the dma_unmap notifier

/** An mdev vendor driver that pins pages and honours dma_unmap. */
function vendor() {
  const pinned = new Map<bigint, number>();
  let dev: V.VfioDevice | null = null;
  const ops: V.VfioDeviceOps = {
    dmaUnmap(iova, length) {
      for (const [i, n] of [...pinned]) {
        if (i >= iova + length || i + BigInt(n) * PAGE <= iova) continue;
        dev?.unpinPages(i, n);
        pinned.delete(i);
      }
    },
  };
  return {
    ops,
    bind(d: V.VfioDevice) {
      dev = d;
    },
    pin(iova: bigint, n: number, prot = IOMMU_READ | IOMMU_WRITE): number[] {
      const pfns = (dev as V.VfioDevice).pinPages(iova, n, prot);
      pinned.set(iova, n);
      return pfns;
    },
    pinned,
  };
}

test("vfio_pin_pages: needs TYPE1v2 (EACCES), an open device with dma_unmap (EINVAL), a mapping (EINVAL), the mapping's permission (EPERM); at most 512 pages (E2BIG)", () => {
  const v = vendor();
  const vg = V.VfioGroup.mdev("mdev0", { ops: v.ops });
  const s = setup({ vg, type: S.VFIO_TYPE1_IOMMU });
  v.bind(vg.devices[0]);
  assert.throws(() => v.pin(APER, 1), isErrno("EINVAL"), "the device is not open");
  const df = s.gf.getDeviceFd("mdev0");
  s.map(APER, s.buf, 4n * PAGE, S.VFIO_DMA_MAP_FLAG_READ);
  assert.throws(() => v.pin(APER, 1), isErrno("EACCES"));
  df.close();

  const w = vendor();
  const wg = V.VfioGroup.mdev("mdev1", { ops: w.ops });
  const t = setup({ vg: wg });
  w.bind(wg.devices[0]);
  t.gf.getDeviceFd("mdev1");
  t.map(APER, t.buf, 4n * PAGE, S.VFIO_DMA_MAP_FLAG_READ);
  assert.throws(() => w.pin(APER + 8n * PAGE, 1), isErrno("EINVAL"));
  assert.throws(() => w.pin(APER, 1, IOMMU_WRITE), isErrno("EPERM"));
  assert.throws(() => w.pin(APER, 513, IOMMU_READ), isErrno("E2BIG"));
  assert.throws(() => w.pin(APER, 5, IOMMU_READ), isErrno("EINVAL"), "runs past the mapping");
  assert.equal(pinCount(t, t.buf), 0, "the partial pin was undone");
});

test("vfio_pin_pages in an mdev-only container pins from the mapping owner's memory and charges each page once, however often it is pinned", () => {
  const v = vendor();
  const vg = V.VfioGroup.mdev("mdev0", { ops: v.ops });
  const s = setup({ vg });
  v.bind(vg.devices[0]);
  s.gf.getDeviceFd("mdev0");
  s.map(APER, s.buf, 4n * PAGE);
  const pfns = v.pin(APER + PAGE, 2);
  assert.deepEqual(pfns, [s.p.mm.peekPfn(s.buf + 4096), s.p.mm.peekPfn(s.buf + 8192)]);
  assert.equal(s.p.mm.lockedVm, 2);
  (vg.devices[0] as V.VfioDevice).pinPages(APER + PAGE, 1, IOMMU_READ);
  assert.equal(s.p.mm.lockedVm, 2, "a second pin of the same page is not charged again");
  assert.equal(pinCount(s, s.buf + 4096), 1);
  (vg.devices[0] as V.VfioDevice).unpinPages(APER + PAGE, 1);
  assert.equal(pinCount(s, s.buf + 4096), 1, "still held once");
});

test("UNMAP_DMA of a range with pages pinned by an emulated device asks the device (dma_unmap) to unpin, then unmaps", () => {
  const v = vendor();
  const vg = V.VfioGroup.mdev("mdev0", { ops: v.ops });
  const s = setup({ vg });
  v.bind(vg.devices[0]);
  s.gf.getDeviceFd("mdev0");
  s.map(APER, s.buf, 4n * PAGE);
  v.pin(APER, 4);
  assert.equal(pinCount(s, s.buf), 1);
  assert.equal(s.unmap(APER, 4n * PAGE), 4n * PAGE);
  assert.equal(v.pinned.size, 0);
  assert.equal(pinCount(s, s.buf), 0);
  assert.equal(s.p.mm.lockedVm, 0);
});

test("with an IOMMU domain present, vfio_pin_pages charges nothing (the mapping already pinned and charged the pages)", () => {
  const v = vendor();
  const vg = V.VfioGroup.mdev("mdev0", { ops: v.ops });
  const s = setup();
  vg.open(s.p).setContainer(s.c);
  v.bind(vg.devices[0]);
  const f = vg.openedFile as V.VfioGroupFile;
  f.getDeviceFd("mdev0");
  s.map(APER, s.buf, 4n * PAGE);
  assert.equal(s.p.mm.lockedVm, 4);
  v.pin(APER, 2);
  assert.equal(s.p.mm.lockedVm, 4);
  assert.equal(pinCount(s, s.buf), 2, "the page is pinned by the mapping and by the device");
  // the IOMMU group leaves: its pins go, the device's stay and are now charged (reaccount)
  s.gf.unsetContainer();
  assert.equal(pinCount(s, s.buf), 1);
  assert.equal(s.p.mm.lockedVm, 2);
});

// ================================================================================================
// 1.6 dirty page tracking

test("DIRTY_PAGES needs TYPE1v2 (EACCES) and exactly one of START, STOP, GET_BITMAP (EINVAL); GET_BITMAP without tracking is EINVAL", () => {
  const v1 = setup({ type: S.VFIO_TYPE1_IOMMU });
  assert.throws(() => v1.c.iommuDirtyPages({ argsz: 8, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START }), isErrno("EACCES"));
  const s = setup();
  assert.throws(() => s.c.iommuDirtyPages({ argsz: 8, flags: 0 }), isErrno("EINVAL"));
  assert.throws(() => s.c.iommuDirtyPages({ argsz: 8, flags: 3 }), isErrno("EINVAL"));
  assert.throws(() => s.c.iommuDirtyPages({ argsz: 8, flags: 8 }), isErrno("EINVAL"));
  const bm = s.p.mmap(4096);
  s.map(APER, s.buf, 4n * PAGE);
  const get = { argsz: 48, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, iova: APER, size: 4n * PAGE, bitmap: { pgsize: PAGE, size: 8n, data: BigInt(bm) } };
  assert.throws(() => s.c.iommuDirtyPages(get), isErrno("EINVAL"));
  assert.throws(() => s.c.iommuDirtyPages({ ...get, argsz: 47 }), isErrno("EINVAL"));
});

test("dirty tracking with an IOMMU-backed group: every page of every mapping reads dirty, on every read", () => {
  const s = setup();
  const bm = s.p.mmap(4096);
  s.map(APER, s.buf, 4n * PAGE);
  s.map(APER + 4n * PAGE, s.buf, 2n * PAGE);
  s.c.iommuDirtyPages({ argsz: 8, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START });
  const get = { argsz: 48, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, iova: APER, size: 8n * PAGE, bitmap: { pgsize: PAGE, size: 8n, data: BigInt(bm) } };
  for (let round = 0; round < 2; round++) {
    s.p.write(bm, new Uint8Array(8).fill(0xff));
    s.c.iommuDirtyPages(get);
    assert.equal(hex(s.p.read(bm, 8)), "3f00000000000000", "6 pages, the rest of the word cleared");
  }
  assert.throws(() => s.c.iommuDirtyPages({ ...get, bitmap: { ...get.bitmap, pgsize: 0x800n } }), isErrno("EINVAL"), "pgsize must be the smallest");
  assert.throws(() => s.c.iommuDirtyPages({ ...get, size: 2n * PAGE }), isErrno("EINVAL"), "bisects a mapping");
  s.c.iommuDirtyPages({ argsz: 8, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP });
  assert.throws(() => s.c.iommuDirtyPages(get), isErrno("EINVAL"));
});

test("vfio_dma_rw: an emulated device's driver reads and writes IOVA through the owner's memory; writes mark their pages dirty", () => {
  const v = vendor();
  const vg = V.VfioGroup.mdev("mdev0", { ops: v.ops });
  const s = setup({ vg });
  v.bind(vg.devices[0]);
  s.gf.getDeviceFd("mdev0");
  const dev = vg.devices[0] as V.VfioDevice;
  const bm = s.p.mmap(4096);
  s.map(APER, s.buf, 4n * PAGE);
  s.map(APER + 4n * PAGE, s.buf + 4 * 4096, 4n * PAGE, S.VFIO_DMA_MAP_FLAG_READ);
  s.p.write(s.buf + 0x1ff0, new TextEncoder().encode("across a page edge"));
  const got = new Uint8Array(18);
  dev.dmaRw(APER + 0x1ff0n, got, false, null);
  assert.equal(new TextDecoder().decode(got), "across a page edge");
  s.c.iommuDirtyPages({ argsz: 8, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START });
  dev.dmaRw(APER + 0x2ffcn, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), true, null);
  assert.deepEqual([...s.p.read(s.buf + 0x2ffc, 8)], [1, 2, 3, 4, 5, 6, 7, 8]);
  const get = { argsz: 48, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, iova: APER, size: 4n * PAGE, bitmap: { pgsize: PAGE, size: 8n, data: BigInt(bm) } };
  s.c.iommuDirtyPages(get);
  assert.equal(hex(s.p.read(bm, 8)), "0c00000000000000", "pages 2 and 3 were written");
  // a copy spanning two mappings goes mapping by mapping; a write into a read-only mapping is EPERM
  dev.dmaRw(APER + 4n * PAGE - 4n, new Uint8Array(8), false, null);
  assert.throws(() => dev.dmaRw(APER + 4n * PAGE, new Uint8Array(4), true, null), isErrno("EPERM"));
  assert.throws(() => dev.dmaRw(APER + 8n * PAGE, new Uint8Array(4), false, null), isErrno("EINVAL"), "no mapping");
  assert.throws(() => dev.dmaRw(APER, new Uint8Array(0), false, null), isErrno("EINVAL"), "empty buffer");
  const other = s.host.spawn({ uid: 1000 });
  assert.throws(() => dev.dmaRw(APER, new Uint8Array(4), false, other), isErrno("EFAULT"), "another process's context cannot reach the owner's memory");
  dev.dmaRw(APER, new Uint8Array(4), false, s.p);
});

test("dirty tracking with only emulated devices: only the pages they pinned are dirty; a read re-arms with the pages pinned at that moment, so an unpinned page is reported once more", () => {
  const v = vendor();
  const vg = V.VfioGroup.mdev("mdev0", { ops: v.ops });
  const s = setup({ vg });
  v.bind(vg.devices[0]);
  s.gf.getDeviceFd("mdev0");
  const bm = s.p.mmap(4096);
  s.map(APER, s.buf, 8n * PAGE);
  s.c.iommuDirtyPages({ argsz: 8, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START });
  v.pin(APER + 2n * PAGE, 1);
  v.pin(APER + 5n * PAGE, 1);
  const get = { argsz: 48, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, iova: APER, size: 8n * PAGE, bitmap: { pgsize: PAGE, size: 8n, data: BigInt(bm) } };
  s.c.iommuDirtyPages(get);
  assert.equal(s.p.read(bm, 1)[0], 0b100100);
  (vg.devices[0] as V.VfioDevice).unpinPages(APER + 5n * PAGE, 1);
  s.c.iommuDirtyPages(get);
  assert.equal(s.p.read(bm, 1)[0], 0b100100, "still pinned when the previous read re-armed the bitmap");
  s.c.iommuDirtyPages(get);
  assert.equal(s.p.read(bm, 1)[0], 0b000100);
});

test("UNMAP_DMA with GET_DIRTY_BITMAP reports the mapping's dirty bits relative to the unmap's iova, then unmaps", () => {
  const s = setup();
  const bm = s.p.mmap(4096);
  s.map(APER + 2n * PAGE, s.buf, 2n * PAGE);
  const unmap = { argsz: 48, flags: S.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, iova: APER, size: 8n * PAGE, bitmap: { pgsize: PAGE, size: 8n, data: BigInt(bm) } };
  assert.throws(() => s.c.iommuUnmapDma(unmap), isErrno("EINVAL"), "tracking is off");
  s.c.iommuDirtyPages({ argsz: 8, flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START });
  assert.throws(() => s.c.iommuUnmapDma({ ...unmap, argsz: 47 }), isErrno("EINVAL"));
  assert.equal(s.c.iommuUnmapDma(unmap).size, 2n * PAGE);
  assert.equal(s.p.read(bm, 1)[0], 0b1100);
});

// ================================================================================================
// 1.10 no-IOMMU groups, lifetime

test("no-IOMMU groups: opening needs CAP_SYS_RAWIO, they cannot share a container with real groups (EPERM), SET_IOMMU(NOIOMMU) needs enable_unsafe_noiommu_mode, and the backend has no DMA ioctls (ENOTTY)", () => {
  const host = new S.Host();
  const user = host.spawn({ uid: 1000 });
  const root = host.spawn({ uid: 0 });
  const ng = V.VfioGroup.noIommu("0000:02:00.0");
  assert.throws(() => ng.open(user), isErrno("EPERM"));
  const nf = ng.open(root);
  const real = V.VfioGroup.forIommuGroup(mockDevice().group).open(root);
  const c = V.openVfioContainer(host, root);
  real.setContainer(c);
  assert.throws(() => nf.setContainer(c), isErrno("EPERM"), "real and fake groups cannot mix");
  real.unsetContainer();
  nf.setContainer(c);
  assert.equal(c.checkExtension(S.VFIO_TYPE1v2_IOMMU), 0, "only the no-IOMMU driver is polled now");
  assert.throws(() => c.setIommu(S.VFIO_NOIOMMU_IOMMU), isErrno("ENODEV"), "enable_unsafe_noiommu_mode is off");
  if (!S.CONFIG_VFIO_NOIOMMU) return;
  const c2 = V.openVfioContainer(host, root, { enableUnsafeNoiommuMode: true });
  nf.unsetContainer();
  nf.setContainer(c2);
  assert.equal(c2.checkExtension(S.VFIO_NOIOMMU_IOMMU), 1);
  assert.throws(() => c2.setIommu(S.VFIO_TYPE1v2_IOMMU), isErrno("ENODEV"));
  assert.throws(() => c2.as(user, (x) => x.setIommu(S.VFIO_NOIOMMU_IOMMU)), isErrno("EPERM"));
  assert.equal(c2.setIommu(S.VFIO_NOIOMMU_IOMMU), 0);
  assert.throws(() => c2.iommuGetInfo({ argsz: 24 }), isErrno("ENOTTY"));
  assert.ok(nf.getDeviceFd("0000:02:00.0"));
});

test("a mapping outlives the process that made it: its pins stay until the unmap, which does not charge the dead address space", () => {
  const s = setup();
  const child = s.p.fork();
  const cbuf = child.mmap(4 * 4096);
  s.c.as(child, (c) => c.iommuMapDma({ argsz: 32, flags: RW, vaddr: BigInt(cbuf), iova: APER, size: 4n * PAGE }));
  const pfn = child.mm.peekPfn(cbuf) as number;
  child.exit();
  assert.equal(s.host.phys.pinCount(pfn), 1, "still pinned for the device");
  assert.equal(s.unmap(APER, 4n * PAGE), 4n * PAGE);
  assert.equal(s.host.phys.pinCount(pfn), 0);
});

test("an mdev-only container records MAP_DMA without touching memory; the attach that replays it pins through the attaching process (EFAULT where the vaddr is not mapped)", () => {
  const s = setup({ vg: V.VfioGroup.mdev("mdev0") });
  const stranger = s.host.spawn({ uid: 1000 });
  // the stranger's address space has nothing at s.buf, but nothing is pinned yet
  assert.equal(s.c.as(stranger, (c) => c.iommuMapDma({ argsz: 32, flags: RW, vaddr: BigInt(s.buf), iova: APER, size: PAGE })), 0);
  const g = V.VfioGroup.forIommuGroup(mockDevice().group).open(stranger);
  assert.throws(() => g.setContainer(s.c), isErrno("EFAULT"), "replay pins the stranger's (unmapped) memory");
  const h = V.VfioGroup.forIommuGroup(mockDevice().group).open(s.p);
  h.setContainer(s.c);
  assert.equal(pinCount(s, s.buf), 1, "attached by s.p: its page at that address is pinned");
  assert.equal(stranger.mm.lockedVm, 1, "but charged to the mapping's owner");
  assert.equal(s.p.mm.lockedVm, 0);
});
