/** IOMMU_GET_HW_INFO (device.c iommufd_get_hw_info). */
import { fail } from "../errno.js";
import { IommuCap } from "../iommu/driver.js";
import type { IommufdCtx } from "./context.js";
import { IOMMU_HW_CAP_DIRTY_TRACKING, IOMMU_HW_INFO_TYPE_NONE, type IommuHwInfo } from "./types.js";

export function getHwInfo(ctx: IommufdCtx, cmd: IommuHwInfo): IommuHwInfo {
  const r = cmd.__reserved ?? [0, 0, 0];
  if (cmd.flags || r[0] || r[1] || r[2]) fail("EOPNOTSUPP", "flags and __reserved must be 0");
  const idev = ctx.getDevice(cmd.dev_id);
  const info = idev.dev.driver.hwInfo(idev.dev);
  const type = info ? info.type : IOMMU_HW_INFO_TYPE_NONE;
  const data = info ? info.data : new Uint8Array(0);
  const copyLen = Math.min(cmd.data_len >>> 0, data.length);
  if (copyLen) ctx.writeUser(cmd.data_uptr, data.subarray(0, copyLen));
  if (copyLen < cmd.data_len >>> 0) ctx.writeUser(cmd.data_uptr + BigInt(copyLen), new Uint8Array((cmd.data_len >>> 0) - copyLen));
  let caps = 0n;
  if (idev.dev.driver.capable(idev.dev, IommuCap.DIRTY_TRACKING)) caps |= IOMMU_HW_CAP_DIRTY_TRACKING;
  return {
    ...cmd,
    data_len: data.length,
    out_data_type: type,
    out_max_pasid_log2: idev.dev.maxPasidLog2,
    out_capabilities: caps,
  };
}
