/**
 * The legacy VFIO container stack with the classic type1 IOMMU backend (drivers/vfio/container.c,
 * group.c, vfio_iommu_type1.c). The VFIO uAPI constants shared with iommufd's compat layer are
 * exported from iommufd/vfio-compat.ts; only the ones it lacks are exported here.
 */
export { VfioContainer, openVfioContainer, type VfioContainerOptions } from "./container.js";
export { VfioGroup, VfioGroupFile, VfioDevice, VfioDeviceFile, type VfioDeviceOps } from "./group.js";
export {
  VfioIommuType1,
  defaultType1Params,
  type1CheckExtensionNoIommu,
  type Type1Params,
  type Type1Device,
} from "./type1-container.js";
export { VfioDma, type VfioPfn } from "./dma.js";
export {
  VfioDomain,
  VfioIommuGroup,
  VfioGroupObject,
  VFIO_IOMMU,
  VFIO_EMULATED_IOMMU,
  VFIO_NO_IOMMU,
  groupResvRegions,
  swMsiBase,
  type VfioGroupType,
  type Type1GroupRef,
} from "./domain.js";
export { IovaList } from "./iova-list.js";
export * from "./uapi.js";
