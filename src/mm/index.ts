/** The simulated host memory manager: processes, address spaces, page frames, pinning. */
export { ExtentMap, pushRun, runsPages, type PfnRuns } from "../util/extent-map.js";
export { PAGE_SHIFT, PAGE_SIZE, PhysMem, type FrameContents } from "./phys.js";
export { Host, User, HugePool, DEFAULT_RLIMIT_MEMLOCK, type Caps, type SpawnOptions } from "./host.js";
export { Process, type ProcessAttachment, type UserMemory } from "./process.js";
export {
  Mm,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  PROT_EXEC,
  MMAP_TOP,
  MMAP_MIN_ADDR,
  TASK_SIZE,
  type MmapOptions,
  type Vma,
} from "./mm.js";
export { MemFile } from "./memfile.js";
