/** IOMMU hardware models: physical memory for hardware, page-table formats and their one engine. */
export { HwMemory, WindowFrameStore, type FrameStore } from "./memory.js";
export {
  PT_READ,
  PT_WRITE,
  PT_EXEC,
  PT_USER,
  PT_CACHE,
  PT_MMIO,
  PT_ACCESSED,
  PT_DIRTY,
  ACC_READ,
  ACC_WRITE,
  ACC_EXEC,
  ACC_USER,
  PERM_ALL,
  FAULT_NONE,
  FAULT_TRANSLATION,
  FAULT_ADDRESS_SIZE,
  FAULT_RESERVED,
  FAULT_ACCESS_FLAG,
  FAULT_PERMISSION,
  FAULT_NAMES,
  vtdSecondStage,
  vtdFirstStage,
  armStage1,
  armStage2,
  hex64,
  type Bits64,
  type LevelDesc,
  type PermRules,
  type ProtRule,
  type FormatKind,
  type PageTableFormat,
  type VtdSecondStageOptions,
  type VtdFirstStageOptions,
  type ArmOptions,
} from "./pagetable/format.js";
export { PageTableEngine, type EngineOptions, type WalkResult, type WalkStep } from "./pagetable/engine.js";
export { benchWalk4Level, benchWalkNested, type Clock } from "./bench.js";
export { Iotlb, type IotlbOptions, type IotlbPolicy, type IotlbFilter, type IotlbStats } from "./iotlb.js";
export type { DmaPort, DmaRequest, DmaResult, DmaFault, DmaFaultKind, DmaStatus } from "./dma.js";
export { VtdUnit, VtdRig, benchTranslateHit, type VtdUnitOptions, type VtdUnitStats } from "./vtd/unit.js";
export { SmmuUnit, SmmuReg, type SmmuUnitOptions, type SmmuUnitStats, type SmmuFeatures } from "./smmuv3/unit.js";
