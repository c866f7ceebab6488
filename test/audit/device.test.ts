/**
 * Rule-coverage audit (docs/rules-coverage.md): device, HWPT, GET_HW_INFO, dirty-tracking and
 * fault-fd rules of iommufd-uapi.md A.2-A.4 and iommu-stack.md 1.9 and 2.5 that no earlier test
 * pinned. Kernel answers from oracle/probes/probe-audit.c where user space can reach the rule;
 * otherwise drivers/iommu/iommufd/device.c, hw_pagetable.c and drivers/iommu/iommu.c (6.12).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { attachGroup, detachGroup, unuseDefaultDomain, useDefaultDomain } from "../../src/iommu/core.js";
import { PCI_PASID_CTRL_ENABLE, PCI_PASID_CTRL_EXEC, PCI_PASID_CTRL_PRIV } from "../../src/iommu/device.js";
import type { IommuDomain, PagingDomain } from "../../src/iommu/domain.js";
import { IommuCap, type HwInfo, type IommuDriver } from "../../src/iommu/driver.js";
import { fail } from "../../src/errno.js";
import type { IommufdFile } from "../../src/iommufd/files.js";
import * as V from "../../src/vfio/index.js";
import {
  S,
  env,
  expectErr,
  failsCleanly,
  hwptAlloc,
  ioasMap,
  mockDomain,
  nestedAlloc,
  replace,
  scratch,
  BASE,
  MOCK_PAGE,
  PAGE,
  POLLIN,
  POLLOUT,
  POLLRDNORM,
} from "../hwpt/helpers.js";
import { mockDevice, PlatformIommu, x86Iommu } from "../vfio/platform.js";

/** An IOMMU driver with no hw_info op, no dirty tracking and (optionally) no cache coherency. */
class BareIommu implements IommuDriver {
  readonly name = "bare";
  constructor(readonly coherent = true) {}
  hwInfo(): HwInfo | null {
    return null;
  }
  domainAllocUser(): IommuDomain {
    fail("EOPNOTSUPP", "no domains");
  }
  domainAllocPaging(): PagingDomain {
    fail("EOPNOTSUPP", "no domains");
  }
  capable(_dev: S.Device, cap: IommuCap): boolean {
    return cap === IommuCap.CACHE_COHERENCY && this.coherent;
  }
  attachDev(): void {}
}

// ------------------------------------------------------------------------------------------------
// binding (iommufd_device_bind) and DMA ownership (iommu.c)

test("BIND: a device whose IOMMU does not report IOMMU_CAP_CACHE_COHERENCY cannot be bound (EINVAL); its group stays unowned", () => {
  const e = env();
  const dev = new S.Device({ name: "noncoherent", driver: new BareIommu(false) });
  failsCleanly(e, "EINVAL", () => e.ctx.bindDevice(dev));
  assert.equal(dev.group.ownerCnt, 0);
  assert.ok(e.ctx.bindDevice(new S.Device({ name: "coherent", driver: new BareIommu(true) })));
});

test("BIND: a device whose MSIs the platform cannot isolate is EPERM unless allow_unsafe_interrupts; selftest mock devices are exempt", () => {
  const host = new S.Host();
  const p = host.spawn({ uid: 1000 });
  const iommu = x86Iommu();
  const strict = S.openIommufd(host, p, { isolatedMsi: () => false });
  const ioas = strict.ioasAlloc({ flags: 0 }).out_ioas_id as number;
  const dev = iommu.device();
  assert.throws(() => strict.bindDevice(dev), (err: S.IommuError) => err.code === "EPERM");
  assert.equal(dev.group.ownerCnt, 0, "nothing claimed");
  assert.equal(strict.objects.size, 1, "no device object");
  // iommufd_selftest_is_mock_dev(): the mock device binds whatever the platform says
  const md = strict.testCmd({ op: S.IOMMU_TEST_OP_MOCK_DOMAIN, id: ioas });
  assert.equal(md.out_idev_id, 3);
  const lax = S.openIommufd(host, p, { isolatedMsi: () => false, allowUnsafeInterrupts: true });
  assert.ok(lax.bindDevice(dev), "allow_unsafe_interrupts lets it bind");
});

test("BIND: a group sitting on a non-default domain (attached by a kernel user without DMA ownership) cannot be claimed: EBUSY", () => {
  // iommu.c __iommu_take_dma_ownership: group->domain != default_domain -> -EBUSY
  const e = env();
  const dev = mockDevice();
  attachGroup(S.mockIommu.domainAllocPaging(dev), dev.group);
  failsCleanly(e, "EBUSY", () => e.ctx.bindDevice(dev));
  detachGroup(dev.group);
  assert.ok(e.ctx.bindDevice(dev));
});

test("DMA ownership: a device bound to a kernel DMA-API driver makes its group unclaimable: iommufd bind of a sibling and VFIO SET_CONTAINER are EPERM, GROUP_GET_STATUS is not VIABLE", () => {
  const e = env();
  const group = new S.IommuGroup();
  const kdev = mockDevice(group, "nic0");
  const sibling = mockDevice(group, "nic1");
  useDefaultDomain(kdev);
  failsCleanly(e, "EPERM", () => e.ctx.bindDevice(sibling));
  const vg = V.VfioGroup.forIommuGroup(group);
  const gf = vg.open(e.p);
  assert.equal(gf.getStatus({ argsz: 8, flags: 0 }).flags, 0, "not viable");
  const c = V.openVfioContainer(e.host, e.p);
  assert.throws(() => gf.setContainer(c), (err: S.IommuError) => err.code === "EPERM");
  unuseDefaultDomain(kdev);
  assert.equal(gf.getStatus({ argsz: 8, flags: 0 }).flags, V.VFIO_GROUP_FLAGS_VIABLE);
  assert.ok(e.ctx.bindDevice(sibling));
});

test("DMA ownership: a kernel DMA-API driver cannot bind to a device of a group user space owns (EBUSY); once released it can", () => {
  // iommu.c iommu_device_use_default_domain: owner_cnt && (owner || domain != default) -> -EBUSY
  const e = env();
  const group = new S.IommuGroup();
  const a = mockDevice(group, "a");
  const b = mockDevice(group, "b");
  const idev = e.ctx.bindDevice(a);
  assert.throws(() => useDefaultDomain(b), (err: S.IommuError) => err.code === "EBUSY");
  assert.equal(group.ownerCnt, 1);
  e.ctx.unbindDevice(idev);
  useDefaultDomain(b);
  assert.equal(group.ownerCnt, 1);
  unuseDefaultDomain(b);
  assert.equal(group.ownerCnt, 0);
});

// ------------------------------------------------------------------------------------------------
// attach / replace (device.c)

test("ATTACH to a HWPT of another IOMMU driver is EINVAL and leaves nothing reserved; attaching to the IOAS then skips the incompatible auto HWPT and makes a new one", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const iommu = x86Iommu();
  const idev = e.ctx.bindDevice(iommu.device());
  const iopt = e.ctx.getIoas(e.ioas).iopt;
  const reserved = iopt.reserved.size;
  failsCleanly(e, "EINVAL", () => idev.attach(md.hwpt));
  assert.equal(iopt.reserved.size, reserved, "the device's MSI window is not left reserved");
  const auto = idev.attach(e.ioas);
  assert.notEqual(auto, md.hwpt);
  assert.equal(e.ctx.getIoas(e.ioas).hwpts.length, 2);
});

test("REPLACE needs an existing attachment: replacing on a bound device that is not attached is EINVAL", () => {
  // device.c iommufd_device_do_replace: igroup->hwpt == NULL or !iommufd_device_is_attached -> -EINVAL
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const idev = e.ctx.bindDevice(mockDevice());
  failsCleanly(e, "EINVAL", () => idev.replace(e.ioas), "to an IOAS");
  failsCleanly(e, "EINVAL", () => idev.replace(md.hwpt), "to a HWPT");
  assert.equal(idev.attached, false);
});

test("device reserved regions: DIRECT_RELAXABLE regions are not reserved in the IOAS; a driver reporting two SW_MSI windows cannot attach (EINVAL)", () => {
  const e = env();
  const iopt = e.ctx.getIoas(e.ioas).iopt;
  const dev = new S.Device({
    name: "rmrr",
    driver: S.mockIommu,
    resv: [
      { start: 0x3000000n, length: 0x1000n, type: S.ResvType.DIRECT_RELAXABLE },
      { start: 0x4000000n, length: 0x1000n, type: S.ResvType.RESERVED },
    ],
  });
  e.ctx.bindDevice(dev).attach(e.ioas);
  assert.equal(iopt.reserved.intersects(0x3000000n, 0x3000fffn), false, "relaxable: still usable");
  assert.equal(iopt.reserved.intersects(0x4000000n, 0x4000fffn), true);
  ioasMap(e.ctx, e.ioas, e.buf, PAGE, 0x3000000n);
  const e2 = env();
  const twoSw = new S.Device({
    name: "twosw",
    driver: S.mockIommu,
    resv: [
      { start: 0x8000000n, length: 0x100000n, type: S.ResvType.SW_MSI },
      { start: 0x9000000n, length: 0x100000n, type: S.ResvType.SW_MSI },
    ],
  });
  const idev2 = e2.ctx.bindDevice(twoSw);
  failsCleanly(e2, "EINVAL", () => idev2.attach(e2.ioas));
  assert.equal(e2.ctx.getIoas(e2.ioas).iopt.reserved.size, 0);
});

// ------------------------------------------------------------------------------------------------
// HWPT_ALLOC, GET_HW_INFO, SET_DIRTY_TRACKING

test("HWPT_ALLOC nested on a nesting parent of another IOMMU driver is EINVAL", () => {
  // hw_pagetable.c iommufd_hwpt_nested_alloc: parent->common.domain->owner != ops -> -EINVAL
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, S.IOMMU_HWPT_ALLOC_NEST_PARENT);
  const other = e.ctx.bindDevice(x86Iommu().device());
  failsCleanly(e, "EINVAL", () => nestedAlloc(e.ctx, e.p, other.id, parent));
  assert.ok(nestedAlloc(e.ctx, e.p, md.idev, parent), "the parent's own driver can");
});

test("GET_HW_INFO for a driver without hw_info reports type NONE and data_len 0, and zero-fills the user buffer", () => {
  const e = env();
  const idev = e.ctx.bindDevice(new S.Device({ name: "noinfo", driver: new BareIommu() }));
  const buf = scratch(e.p, new Uint8Array(16).fill(0xaa));
  const r = e.ctx.getHwInfo({ flags: 0, dev_id: idev.id, data_len: 12, data_uptr: buf });
  assert.equal(r.out_data_type, S.IOMMU_HW_INFO_TYPE_NONE);
  assert.equal(r.data_len, 0);
  assert.equal(r.out_capabilities, 0n);
  assert.deepEqual([...e.p.read(Number(buf), 16)], [...new Array(12).fill(0), 0xaa, 0xaa, 0xaa, 0xaa]);
});

test("GET_HW_INFO: out_max_pasid_log2 is the width of the enabled PASIDs; a PCI device also reports PASID_EXEC/PASID_PRIV from its PASID control register; the 6.12 mock device reports 0 (oracle probe-audit A2)", () => {
  const e = env();
  const info = (dev: S.Device) => {
    const idev = e.ctx.bindDevice(dev);
    const r = e.ctx.getHwInfo({ flags: 0, dev_id: idev.id, data_len: 0, data_uptr: 0n });
    return [r.out_max_pasid_log2, r.out_capabilities];
  };
  const DIRTY = S.IOMMU_HW_CAP_DIRTY_TRACKING;
  const EXEC = S.IOMMU_HW_CAP_PCI_PASID_EXEC;
  const PRIV = S.IOMMU_HW_CAP_PCI_PASID_PRIV;
  const ctrlAll = PCI_PASID_CTRL_ENABLE | PCI_PASID_CTRL_EXEC | PCI_PASID_CTRL_PRIV;
  const dev = (o: Partial<{ isPci: boolean; maxPasidLog2: number; pciPasidCtrl: number }>) => new S.Device({ name: "pasid", driver: S.mockIommu, ...o });
  assert.deepEqual(info(dev({ isPci: true, maxPasidLog2: 20, pciPasidCtrl: ctrlAll })), [20, DIRTY | EXEC | PRIV]);
  assert.deepEqual(info(dev({ isPci: true, maxPasidLog2: 16, pciPasidCtrl: PCI_PASID_CTRL_ENABLE | PCI_PASID_CTRL_EXEC })), [16, DIRTY | EXEC]);
  assert.deepEqual(info(dev({ isPci: false, maxPasidLog2: 20, pciPasidCtrl: ctrlAll })), [20, DIRTY], "not PCI: no PCI capability bits");
  assert.deepEqual(info(dev({ isPci: true, maxPasidLog2: 0, pciPasidCtrl: ctrlAll })), [0, DIRTY], "PASID not enabled: nothing reported");
  const md = mockDomain(e.ctx, e.ioas);
  const r = e.ctx.getHwInfo({ flags: 0, dev_id: md.idev, data_len: 0, data_uptr: 0n });
  assert.deepEqual([r.out_max_pasid_log2, r.out_capabilities, r.data_len, r.out_data_type], [0, DIRTY, 8, S.IOMMU_HW_INFO_TYPE_SELFTEST]);
});

test("SET_DIRTY_TRACKING: enabling, also when already enabled, clears the existing dirty bits; __reserved is not checked (oracle probe-audit A6)", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const dhwpt = hwptAlloc(e.ctx, md.idev, e.ioas, S.IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  mockDomain(e.ctx, dhwpt);
  ioasMap(e.ctx, e.ioas, e.buf, 4 * PAGE, BASE);
  const len = 8n * BigInt(MOCK_PAGE);
  e.ctx.hwptSetDirtyTracking({ flags: S.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, hwpt_id: dhwpt, __reserved: 5 });
  const mark = scratch(e.p, new Uint8Array([0xff]));
  const marked = e.ctx.testCmd({ op: S.IOMMU_TEST_OP_DIRTY, id: dhwpt, iova: BASE, length: len, page_size: BigInt(MOCK_PAGE), uptr: mark });
  assert.equal(marked.out_nr_dirty, 8n);
  const out = scratch(e.p, 8);
  const get = () => {
    e.p.write(Number(out), new Uint8Array(8));
    e.ctx.hwptGetDirtyBitmap({ hwpt_id: dhwpt, flags: S.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, iova: BASE, length: len, page_size: BigInt(MOCK_PAGE), data: out });
    return e.p.read(Number(out), 1)[0];
  };
  assert.equal(get(), 0xff);
  e.ctx.hwptSetDirtyTracking({ flags: S.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, hwpt_id: dhwpt });
  assert.equal(get(), 0, "enabling again starts from a clean snapshot");
});

// ------------------------------------------------------------------------------------------------
// the fault fd, DESTROY

test("fault fd poll: EPOLLOUT always; EPOLLIN|EPOLLRDNORM only while a fault group waits to be read (oracle probe-audit A7)", () => {
  const e = env();
  const md = mockDomain(e.ctx, e.ioas);
  const parent = hwptAlloc(e.ctx, md.idev, e.ioas, S.IOMMU_HWPT_ALLOC_NEST_PARENT);
  const f = e.ctx.faultQueueAlloc({ flags: 0 });
  const iopf = nestedAlloc(e.ctx, e.p, md.idev, parent, { flags: S.IOMMU_HWPT_FAULT_ID_VALID, faultId: f.out_fault_id as number });
  const file = S.fdTableOf(e.p).get(f.out_fault_fd as number) as IommufdFile;
  const poll = () => (file.poll as NonNullable<IommufdFile["poll"]>).call(file);
  assert.equal(poll(), POLLOUT);
  replace(e.ctx, md.stdev, iopf);
  e.ctx.testCmd({ op: S.IOMMU_TEST_OP_TRIGGER_IOPF, id: 0, dev_id: md.idev, pasid: 0, grpid: 1, perm: 1, addr: 0x1000n });
  assert.equal(poll(), POLLOUT | POLLIN | POLLRDNORM);
  (file.read as NonNullable<IommufdFile["read"]>).call(file, 40, 0);
  assert.equal(poll(), POLLOUT, "a group read but not yet answered does not make the fd readable");
});

test("DESTROY of an access object is EBUSY while its driver holds it; after the access fd is closed the ID is ENOENT (oracle probe-audit A9)", () => {
  const e = env();
  const fd = e.ctx.testCmd({ op: S.IOMMU_TEST_OP_CREATE_ACCESS, id: e.ioas }).out_access_fd as number;
  const accessId = [...e.ctx.objects.values()].find((o) => o.type === "access")?.id as number;
  assert.equal(accessId, 2);
  failsCleanly(e, "EBUSY", () => e.ctx.destroy({ id: accessId }));
  S.fdTableOf(e.p).close(fd);
  expectErr("ENOENT", () => e.ctx.destroy({ id: accessId }));
});

test("HWPT_ALLOC for a device that enforces cache coherency needs a domain that can enforce it: otherwise EINVAL and nothing is left (a driver bug the kernel WARNs about)", () => {
  // hw_pagetable.c iommufd_hwpt_paging_alloc: idev->enforce_cache_coherency -> iommufd_hwpt_paging_enforce_cc
  class LyingIommu extends PlatformIommu {
    override capable(dev: S.Device, cap: IommuCap): boolean {
      return cap === IommuCap.ENFORCE_CACHE_COHERENCY ? true : super.capable(dev, cap);
    }
    override domainAllocUser(dev: S.Device): IommuDomain {
      return this.domainAllocPaging(dev);
    }
  }
  const e = env();
  const idev = e.ctx.bindDevice(new LyingIommu("lying", { enforceCacheCoherency: false }).device());
  failsCleanly(e, "EINVAL", () => hwptAlloc(e.ctx, idev.id, e.ioas), "manual HWPT");
  failsCleanly(e, "EINVAL", () => idev.attach(e.ioas), "auto HWPT");
  const ok = e.ctx.bindDevice(new LyingIommu("honest", { enforceCacheCoherency: true }).device());
  assert.ok(hwptAlloc(e.ctx, ok.id, e.ioas));
});
