/**
 * Rule-coverage audit (docs/rules-coverage.md): IOAS rules of iommufd-uapi.md A.2 and
 * iommu-stack.md 2.3 that no earlier test pinned. Kernel answers from oracle/probes/probe-audit.c
 * where user space can reach the rule; the rest follows drivers/iommu/iommufd/io_pagetable.c (6.12).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PagingDomain, type IommuDomain } from "../../src/iommu/domain.js";
import type { IommuDriver, HwInfo } from "../../src/iommu/driver.js";
import { IommuCap } from "../../src/iommu/driver.js";
import { Area } from "../../src/iopt/io-pagetable.js";
import { PlatformIommu } from "../vfio/platform.js";
import {
  addReserved,
  BUF,
  expectErrno,
  expectFailsUnchanged,
  getIoas,
  ioasAlloc,
  iovaRanges,
  map,
  mockDomain,
  PAGE,
  refsOf,
  S,
  setup,
  unmap,
  U64_MAX,
} from "../ioas/helpers.js";

/** A paging domain whose smallest IO page is 8 KiB (larger than PAGE_SIZE). */
class BigPageDomain extends PagingDomain {
  readonly pgShift = 13;
  readonly pgsizeBitmap = 0x2000n;
  readonly apertureStart = 0n;
  readonly apertureEnd = U64_MAX;
  readonly dirtyOps = false;
  map(): void {}
  unmap(): void {}
  iovaToPhys(): number {
    return -1;
  }
  protAt(): number {
    return 0;
  }
  mappedPages(): number {
    return 0;
  }
}

class BigPageIommu implements IommuDriver {
  readonly name = "bigpage";
  hwInfo(): HwInfo | null {
    return null;
  }
  domainAllocUser(): IommuDomain {
    return new BigPageDomain(this);
  }
  domainAllocPaging(): PagingDomain {
    return new BigPageDomain(this);
  }
  capable(_dev: S.Device, cap: IommuCap): boolean {
    return cap === IommuCap.CACHE_COHERENCY;
  }
  attachDev(): void {}
}

test("IOAS_IOVA_RANGES alignment is at most PAGE_SIZE: a domain whose smallest IO page is 8 KiB cannot attach (EINVAL) and leaves nothing behind", () => {
  // io_pagetable.c iopt_table_add_domain: new_iova_alignment > PAGE_SIZE -> -EINVAL
  const env = setup();
  const ioas = ioasAlloc(env);
  const idev = env.ctx.bindDevice(new S.Device({ name: "bigpage0", driver: new BigPageIommu() }));
  expectFailsUnchanged(env, () => idev.attach(ioas), "EINVAL", "auto domain");
  expectFailsUnchanged(
    env,
    () => env.ctx.hwptAlloc({ flags: 0, dev_id: idev.id, pt_id: ioas, data_type: 0, data_len: 0, data_uptr: 0n }),
    "EINVAL",
    "manual HWPT",
  );
  assert.deepEqual(iovaRanges(env, ioas), { num: 1, align: 1n, ranges: [[0n, U64_MAX]] });
  assert.equal(idev.attached, false);
});

test("IOAS_UNMAP of an area whose MAP is still in progress fails EBUSY (white-box: a single caller cannot race MAP)", () => {
  // io_pagetable.c iopt_unmap_iova_range: !area->pages -> -EBUSY ("Userspace should not race map/unmap")
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, PAGE, 0x100000);
  const iopt = getIoas(env, ioas).iopt;
  // the state IOAS_MAP is in between inserting the area and publishing it (area->pages == NULL)
  const inFlight = new Area(0x200000n, 0x201fffn, 0n, 0x2000n, 0);
  iopt.areas.insert(inFlight);
  expectErrno(() => unmap(env, ioas, 0x200000, 0x2000), "EBUSY");
  const e = expectErrno(() => unmap(env, ioas, 0, U64_MAX), "EBUSY", "unmap-all meets it too");
  assert.equal((e as { unmapped?: bigint }).unmapped, 0x1000n, "the published area before it was already removed");
  assert.equal(iopt.areas.size, 1);
  iopt.areas.remove(inFlight);
  assert.equal(unmap(env, ioas, 0, U64_MAX), 0n);
});

test("IOAS_UNMAP of an area an access keeps pinned after its unmap callback fails EDEADLK after 101 callbacks; the area then refuses new access pins (EINVAL)", () => {
  // io_pagetable.c iopt_unmap_iova_range: num_accesses -> prevent_access, notify, retry; tries > 100 -> -EDEADLOCK
  const env = setup();
  const ioas = ioasAlloc(env);
  map(env, ioas, BUF, 4 * PAGE, 0x100000);
  let calls = 0;
  const access = env.ctx.createAccess({
    needsPinPages: true,
    unmap: () => {
      calls++; // a broken driver: never unpins
    },
  });
  access.attach(ioas);
  access.pinPages(0x100000n, BigInt(PAGE), false);
  const before = refsOf(env, BUF);
  const e = expectErrno(() => unmap(env, ioas, 0x100000, 4 * PAGE), "EDEADLK");
  assert.equal(e.errno, 35, "EDEADLOCK is EDEADLK (35) on x86");
  assert.equal(calls, 101);
  assert.equal(getIoas(env, ioas).iopt.areas.size, 1, "nothing was unmapped");
  assert.equal(refsOf(env, BUF), before);
  expectErrno(() => access.pinPages(0x101000n, BigInt(PAGE), false), "EINVAL", "prevent_access stays set");
  expectErrno(() => access.rw(0x101000n, new Uint8Array(8), 0), "EINVAL");
});

test("IOAS_MAP with a domain attached: a range whose first page is unmapped fails EFAULT and pins nothing (oracle probe-audit A3)", () => {
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  const b = env.p.mmap(4 * PAGE);
  env.p.write(b, new Uint8Array(4 * PAGE).fill(2));
  env.p.munmap(b, PAGE);
  expectFailsUnchanged(env, () => map(env, ioas, b, 4 * PAGE, null), "EFAULT");
  for (let i = 1; i < 4; i++) assert.equal(refsOf(env, b + i * PAGE), 0);
});

test("IOAS_IOVA_RANGES with two domains of different apertures reports the holes of the reserved ranges inside their intersection", () => {
  // each attached domain reserves everything outside its aperture (iopt_table_add_domain)
  class NarrowIommu extends PlatformIommu {
    override domainAllocUser(dev: S.Device): IommuDomain {
      return this.domainAllocPaging(dev);
    }
  }
  const env = setup();
  const ioas = ioasAlloc(env);
  mockDomain(env, ioas);
  const narrow = new NarrowIommu("narrow", { apertureStart: 0x10000000n, apertureEnd: 0x3fffffffn });
  env.ctx.bindDevice(narrow.device()).attach(ioas);
  addReserved(env, ioas, 0x20000000n, 0x1000n);
  assert.deepEqual(iovaRanges(env, ioas), {
    num: 2,
    align: 0x800n,
    ranges: [
      [0x10000000n, 0x1fffffffn],
      [0x20001000n, 0x3fffffffn],
    ],
  });
  expectErrno(() => map(env, ioas, BUF, PAGE, 0x1000000), "EINVAL", "inside the mock aperture but outside the narrow one");
});
