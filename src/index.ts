/** softiommu: the Linux IOMMU userspace stack as an executable model. Public library entry point. */
export { Errno, IommuError, errnoName, type ErrnoName } from "./errno.js";
export * from "./mm/index.js";
export { IommufdCtx, openIommufd, KERNEL_PROFILES, type OpenOptions, type KernelProfile } from "./iommufd/context.js";
export * from "./iommufd/types.js";
export * from "./iommufd/test-ops.js";
export * from "./iommufd/vfio-compat.js";
export { fdTableOf, FdTable, type IommufdFile } from "./iommufd/files.js";
export * from "./iommu/drivers/mock.js";
export { Device, IommuGroup, ResvType, type ResvRegion } from "./iommu/device.js";
export * from "./vfio/index.js";
export { devicePrepareMsi, iommuDmaPrepareMsi, msiCookieOf } from "./iommu/msi.js";
export { IommufdDevice } from "./iommufd/device.js";
export { Access, type AccessOps } from "./iommufd/access.js";
export { HwptPaging, HwptNested } from "./iommufd/hwpt.js";
export { Ioas } from "./iommufd/ioas.js";
export * as uapi from "./uapi/index.js";
