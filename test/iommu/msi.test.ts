/**
 * Reserved regions and MSI through iommufd: a device's MSI window is kept out of the IOAS's usable
 * IOVAs, and an ARM-style software-managed MSI window gets an MSI cookie on every paging domain the
 * group uses, so that the core maps the doorbell page there when the device sets up an interrupt.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as S from "../../src/index.js";
import { Device, ResvType } from "../../src/iommu/device.js";
import { mockIommu, MockPagingDomain } from "../../src/iommu/drivers/mock.js";
import { IOMMU_WRITE } from "../../src/iommu/domain.js";

const SW_MSI_BASE = 0x8000000n; // 128 MiB, inside the mock aperture
const SW_MSI_LEN = 0x100000n;
const DOORBELL = 0x08090040; // a GICv3 ITS-style doorbell (physical)
const RW = S.IOMMU_IOAS_MAP_READABLE | S.IOMMU_IOAS_MAP_WRITEABLE;

function setup() {
  const host = new S.Host();
  const p = host.spawn({ uid: 1000 });
  const ctx = S.openIommufd(host, p);
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const dev = new Device({ name: "arm-dev", driver: mockIommu, resv: [{ start: SW_MSI_BASE, length: SW_MSI_LEN, type: ResvType.SW_MSI }] });
  const idev = ctx.bindDevice(dev);
  return { host, p, ctx, ioas, dev, idev };
}

function ranges(e: ReturnType<typeof setup>): Array<[bigint, bigint]> {
  const arg = e.p.mmap(4096, { shared: true });
  const r = e.ctx.ioasIovaRanges({ ioas_id: e.ioas, num_iovas: 16, allowed_iovas: BigInt(arg) });
  const b = e.p.read(arg, r.num_iovas * 16);
  const dv = new DataView(b.buffer, b.byteOffset);
  const out: Array<[bigint, bigint]> = [];
  for (let i = 0; i < r.num_iovas; i++) out.push([dv.getBigUint64(i * 16, true), dv.getBigUint64(i * 16 + 8, true)]);
  return out;
}

test("a device's software MSI window is reserved in the IOAS it attaches to (IOVA_RANGES skips it)", () => {
  const e = setup();
  e.idev.attach(e.ioas);
  assert.deepEqual(ranges(e), [
    [0x1000000n, SW_MSI_BASE - 1n],
    [SW_MSI_BASE + SW_MSI_LEN, 0x7fffffffn],
  ]);
});

test("mapping into the software MSI window with a fixed IOVA is EINVAL", () => {
  const e = setup();
  e.idev.attach(e.ioas);
  const buf = e.p.mmap(4096, { shared: true });
  assert.throws(
    () => e.ctx.ioasMap({ flags: RW | S.IOMMU_IOAS_MAP_FIXED_IOVA, ioas_id: e.ioas, user_va: BigInt(buf), length: 4096n, iova: SW_MSI_BASE }),
    (err: S.IommuError) => err.code === "EINVAL",
  );
});

test("attaching a SW_MSI device takes an MSI cookie at the window base on the paging domain", () => {
  const e = setup();
  const hwptId = e.idev.attach(e.ioas);
  const d = e.ctx.getHwptPaging(hwptId).domain;
  assert.equal(S.msiCookieOf(d)?.base, SW_MSI_BASE);
});

test("setting up an MSI maps the doorbell page write-only at the window base, once per doorbell page", () => {
  const e = setup();
  const hwptId = e.idev.attach(e.ioas);
  const d = e.ctx.getHwptPaging(hwptId).domain as MockPagingDomain;
  const addr = S.devicePrepareMsi(e.dev, DOORBELL);
  assert.equal(addr, SW_MSI_BASE + BigInt(DOORBELL % 4096));
  const idx = Number(SW_MSI_BASE / 2048n);
  assert.equal(d.iovaToPhys(idx), DOORBELL - (DOORBELL % 4096));
  assert.equal(d.protAt(idx), IOMMU_WRITE);
  assert.equal(S.devicePrepareMsi(e.dev, DOORBELL + 4), addr + 4n, "same page, same mapping");
  assert.equal(S.devicePrepareMsi(e.dev, DOORBELL + 0x10000), SW_MSI_BASE + 4096n + BigInt(DOORBELL % 4096), "a second doorbell page takes the next window page");
});

test("IOAS unmap-all does not remove the MSI doorbell mapping", () => {
  const e = setup();
  const hwptId = e.idev.attach(e.ioas);
  const d = e.ctx.getHwptPaging(hwptId).domain as MockPagingDomain;
  S.devicePrepareMsi(e.dev, DOORBELL);
  e.ctx.ioasUnmap({ ioas_id: e.ioas, iova: 0n, length: (1n << 64n) - 1n });
  assert.notEqual(d.iovaToPhys(Number(SW_MSI_BASE / 2048n)), -1);
});

test("replacing onto another paging HWPT gives the new domain its own MSI cookie", () => {
  const e = setup();
  e.idev.attach(e.ioas);
  const manual = e.ctx.hwptAlloc({ flags: 0, dev_id: e.idev.id, pt_id: e.ioas, data_type: 0, data_len: 0, data_uptr: 0n }).out_hwpt_id as number;
  e.idev.replace(manual);
  assert.equal(S.msiCookieOf(e.ctx.getHwptPaging(manual).domain)?.base, SW_MSI_BASE);
});

test("a device without MSI regions takes no cookie and its MSI address is the doorbell itself", () => {
  const host = new S.Host();
  const p = host.spawn({ uid: 1000 });
  const ctx = S.openIommufd(host, p);
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const dev = new Device({ name: "plain", driver: mockIommu });
  const idev = ctx.bindDevice(dev);
  const hwptId = idev.attach(ioas);
  assert.equal(S.msiCookieOf(ctx.getHwptPaging(hwptId).domain), undefined);
  assert.equal(S.devicePrepareMsi(dev, DOORBELL), BigInt(DOORBELL));
});

test("a driver that reports both MSI and SW_MSI regions cannot attach (EINVAL) and leaves nothing reserved", () => {
  const host = new S.Host();
  const p = host.spawn({ uid: 1000 });
  const ctx = S.openIommufd(host, p);
  const ioas = ctx.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const dev = new Device({
    name: "bad",
    driver: mockIommu,
    resv: [
      { start: SW_MSI_BASE, length: SW_MSI_LEN, type: ResvType.SW_MSI },
      { start: 0x9000000n, length: 0x100000n, type: ResvType.MSI },
    ],
  });
  const idev = ctx.bindDevice(dev);
  assert.throws(() => idev.attach(ioas), (err: S.IommuError) => err.code === "EINVAL");
  assert.equal(ctx.getIoas(ioas).iopt.reserved.size, 0);
  assert.equal(ctx.getIoas(ioas).hwpts.length, 0);
});
