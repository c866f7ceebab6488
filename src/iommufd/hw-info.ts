/**
 * IOMMU_GET_HW_INFO (device.c iommufd_get_hw_info).
 *
 * Profiles: 6.12 accepts no flag at all (any bit -> EOPNOTSUPP) and reads nothing at offset 24.
 * The newest uAPI knows IOMMU_HW_INFO_FLAG_INPUT_TYPE: with it the u32 at offset 24 is read as
 * in_data_type (it is a union with out_data_type), the type of data wanted; without it that field
 * is taken as DEFAULT whatever it holds. A driver with hw_info answers DEFAULT or its own type and
 * refuses any other with EOPNOTSUPP (each driver checks `*type` itself; with one type per driver
 * that check is the same everywhere, so it is made here); a driver without hw_info answers NONE
 * with no data whatever was asked.
 */
import { failPoint } from "../fail-nth.js";
import { fail } from "../errno.js";
import { PCI_PASID_CTRL_EXEC, PCI_PASID_CTRL_PRIV } from "../iommu/device.js";
import { IommuCap } from "../iommu/driver.js";
import { PAGE_SIZE } from "../mm/index.js";
import type { IommufdCtx } from "./context.js";
import {
  IOMMU_HW_CAP_DIRTY_TRACKING,
  IOMMU_HW_CAP_PCI_PASID_EXEC,
  IOMMU_HW_CAP_PCI_PASID_PRIV,
  IOMMU_HW_INFO_FLAG_INPUT_TYPE,
  IOMMU_HW_INFO_TYPE_DEFAULT,
  IOMMU_HW_INFO_TYPE_NONE,
  type IommuHwInfo,
} from "./types.js";

export function getHwInfo(ctx: IommufdCtx, cmd: IommuHwInfo): IommuHwInfo {
  const r = cmd.__reserved ?? [0, 0, 0];
  const supportedFlags = ctx.profile === "6.12" ? 0 : IOMMU_HW_INFO_FLAG_INPUT_TYPE;
  if (cmd.flags & ~supportedFlags) fail("EOPNOTSUPP", ctx.profile === "6.12" ? "flags must be 0 (Linux 6.12)" : "unknown flags");
  if (r[0] || r[1] || r[2]) fail("EOPNOTSUPP", "__reserved must be 0");
  const wanted = cmd.flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE ? (cmd.in_data_type ?? 0) >>> 0 : IOMMU_HW_INFO_TYPE_DEFAULT;
  const idev = ctx.getDevice(cmd.dev_id);
  // the driver's hw_info allocates its data (kzalloc): a fault-injection point
  failPoint("ENOMEM", "hw_info");
  const info = idev.dev.driver.hwInfo(idev.dev);
  if (info && wanted !== IOMMU_HW_INFO_TYPE_DEFAULT && wanted !== info.type)
    fail("EOPNOTSUPP", `the device cannot provide hw_info type 0x${wanted.toString(16)}`);
  const type = info ? info.type : IOMMU_HW_INFO_TYPE_NONE;
  const data = info ? info.data : new Uint8Array(0);
  const userLen = cmd.data_len >>> 0;
  const copyLen = Math.min(userLen, data.length);
  writePaged(ctx, cmd.data_uptr, data.subarray(0, copyLen), copyLen);
  // zero the rest of a bigger user buffer (clear_user); data_len can be up to 4 GiB
  if (copyLen < userLen) writePaged(ctx, cmd.data_uptr + BigInt(copyLen), null, userLen - copyLen);
  let caps = 0n;
  if (idev.dev.driver.capable(idev.dev, IommuCap.DIRTY_TRACKING)) caps |= IOMMU_HW_CAP_DIRTY_TRACKING;
  // PASID is reported only when enabled; a PCI device's EXEC/PRIV bits mirror its PASID control
  const dev = idev.dev;
  if (dev.maxPasidLog2 && dev.isPci) {
    if (dev.pciPasidCtrl & PCI_PASID_CTRL_EXEC) caps |= IOMMU_HW_CAP_PCI_PASID_EXEC;
    if (dev.pciPasidCtrl & PCI_PASID_CTRL_PRIV) caps |= IOMMU_HW_CAP_PCI_PASID_PRIV;
  }
  return {
    ...cmd,
    data_len: data.length,
    // one u32 in the kernel's struct: in_data_type (newest) and out_data_type share it
    ...(cmd.in_data_type !== undefined ? { in_data_type: type } : {}),
    out_data_type: type,
    out_max_pasid_log2: idev.dev.maxPasidLog2,
    out_capabilities: caps,
  };
}

/**
 * copy_to_user / clear_user of `len` bytes (zeros when data is null), one page at a time: bytes
 * before a faulting page stay written and the call fails with EFAULT, as the kernel's copy does.
 */
function writePaged(ctx: IommufdCtx, ptr: bigint, data: Uint8Array | null, len: number): void {
  let off = 0;
  let zeros: Uint8Array | null = null;
  while (off < len) {
    const addr = ptr + BigInt(off);
    const n = Math.min(len - off, PAGE_SIZE - Number(addr % BigInt(PAGE_SIZE)));
    let chunk: Uint8Array;
    if (data) chunk = data.subarray(off, off + n);
    else {
      if (!zeros) zeros = new Uint8Array(PAGE_SIZE);
      chunk = zeros.subarray(0, n);
    }
    ctx.writeUser(addr, chunk);
    off += n;
  }
}
