/**
 * The iommufd ioctl table and the dispatcher that applies the kernel's rules to a raw
 * ioctl(fd, request, arg) on /dev/iommu (or /dev/vfio/vfio, served by the same code), as
 * drivers/iommu/iommufd/main.c iommufd_fops_ioctl does, in this order:
 *
 *  1. nr = request & 0xff outside 0x80..0xa0 (the table ends at the selftest slot) -> the VFIO type1
 *     compat ioctls, matched on the whole request value; anything else there -> ENOTTY.
 *  2. the u32 `size` at arg is read from the caller's memory -> EFAULT when unreadable (also for
 *     table holes: the read comes first).
 *  3. the table entry's request value must equal `request` exactly (no size/dir bits, no holes)
 *     -> ENOTTY.
 *  4. size < the entry's minimum -> EINVAL.
 *  5. copy_struct_from_user: size > sizeof with any non-zero byte past sizeof -> E2BIG (unreadable
 *     tail -> EFAULT); min(size, sizeof) bytes are copied, the rest of the kernel struct is zero.
 *  6. the IommufdCtx method runs; the struct is copied back (min(size, sizeof) bytes of the
 *     kernel's copy) according to the entry's copy-back rule, read from each kernel handler:
 *     "success" (iommufd_ucmd_respond after the work), "never", "always" (HWPT_INVALIDATE: also when
 *     the handler fails), "success+EMSGSIZE" (IOVA_RANGES), "val64" (OPTION: only val64),
 *     "get-op" (VFIO_IOAS: only for op GET), "test-op" (IOMMU_TEST_CMD: only the ops that respond).
 *     A fault while copying back gives EFAULT; an object the call created is then taken down again,
 *     as the kernel aborts it.
 *
 * Errors are thrown as IommuError (the caller maps them to -1/errno); success returns the ioctl's
 * return value (0, or a VFIO value such as CHECK_EXTENSION's 1).
 *
 * Profiles: "6.12" is Debian's 6.12.117 (0x80..0x8e plus the selftest slot 0xa0; 0x8f..0x9f are
 * holes -> ENOTTY; test ops newer than 6.12 -> EOPNOTSUPP). "newest" adds 0x8f..0x94. Of those,
 * HW_QUEUE_ALLOC names an object kind softiommu does not implement yet: after the generic size
 * checks it fails with EOPNOTSUPP ("struct understood, value not supported": what a newest kernel
 * answers when the vIOMMU's driver has no HW queue support), writes nothing back, creates nothing.
 */
import type { KernelProfile } from "../iommufd/context.js";
import { fail, IommuError } from "../errno.js";
import type { IommufdCtx } from "../iommufd/context.js";
import type { IommuTestCmd } from "../iommufd/test-ops.js";
import type {
  IommuDestroy,
  IommuFaultAlloc,
  IommuHwInfo,
  IommuHwptAlloc,
  IommuHwptGetDirtyBitmap,
  IommuHwptInvalidate,
  IommuHwptSetDirtyTracking,
  IommuIoasAlloc,
  IommuIoasAllowIovas,
  IommuIoasChangeProcess,
  IommuIoasCopy,
  IommuIoasIovaRanges,
  IommuIoasMap,
  IommuIoasMapFile,
  IommuIoasUnmap,
  IommuOption,
  IommuVdeviceAlloc,
  IommuVeventqAlloc,
  IommuVfioIoas,
  IommuViommuAlloc,
} from "../iommufd/types.js";
import { decode, encodeInto, structOf, type StructLayout, type UObject } from "./structs.js";

/** The kernel whose uAPI the dispatcher answers as (the context's profile). */
export type Profile = KernelProfile;

/** ';' — the ioctl type byte of iommufd and VFIO. */
export const IOMMUFD_TYPE = 0x3b;
export const IOMMUFD_CMD_BASE = 0x80;
/** The selftest slot: IOMMUFD_CMD_BASE + 32, the last entry of the kernel's table. */
export const IOMMUFD_TEST_NR = IOMMUFD_CMD_BASE + 32;
/** _IO(type, nr): no direction and no size bits. */
export const _IO = (type: number, nr: number): number => ((type << 8) | nr) >>> 0;

export type CopyBack = "never" | "success" | "always" | "success+EMSGSIZE" | "val64" | "get-op" | "test-op";

export interface IoctlDef {
  /** Macro name (IOMMU_DESTROY ...). */
  readonly name: string;
  /** IOMMUFD_CMD_* enumerator. */
  readonly cmdName: string;
  readonly nr: number;
  /** The full 32-bit request value: 0x3b00 | nr. */
  readonly request: number;
  readonly struct: StructLayout;
  /** offsetofend of the last field the kernel registers. */
  readonly min: number;
  /** The IommufdCtx method it runs (null: not implemented by the library). */
  readonly method: string | null;
  readonly copyBack: CopyBack;
  /** Newer than Linux 6.12: a hole (ENOTTY) under the "6.12" profile. */
  readonly newer: boolean;
  /** softiommu does not implement the object kind yet: the errno it answers with. */
  readonly notImplemented: { readonly errno: "EOPNOTSUPP"; readonly why: string } | null;
  readonly doc: string;
  /** Run the method on the decoded struct; returns the struct to copy back (when the rule copies). */
  readonly run: (ctx: IommufdCtx, cmd: UObject) => UObject | void;
  /** Take down what a successful call created, when copying the result back faults. */
  readonly undo?: (ctx: IommufdCtx, out: UObject) => void;
}

/**
 * Selftest ops whose handlers copy the struct back on success (selftest.c iommufd_ucmd_respond):
 * MOCK_DOMAIN, CREATE_ACCESS, ACCESS_PAGES, MOCK_DOMAIN_REPLACE, MOCK_DOMAIN_FLAGS, DIRTY, and
 * [newer than 6.12] PASID_ATTACH, PASID_REPLACE.
 */
export const TEST_OPS_RESPOND: ReadonlySet<number> = new Set([2, 5, 7, 10, 12, 13, 18, 19]);
/** Selftest ops Linux 6.12 knows (ADD_RESERVED .. TRIGGER_IOPF). */
export const TEST_OPS_612_MAX = 15;

const as = <T>(o: UObject): T => o as unknown as T;
const obj = (o: unknown): UObject => o as UObject;

/** Best-effort teardown helpers for the "copy-back faulted" path. */
function dropObject(ctx: IommufdCtx, id: unknown): void {
  if (typeof id !== "number" || !ctx.getObject(id)) return;
  try {
    ctx.destroy({ id });
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
  }
}
function dropFd(ctx: IommufdCtx, fd: unknown): void {
  if (typeof fd !== "number" || !ctx.fds.get(fd)) return;
  ctx.fds.close(fd);
}

/** A PASID_ATTACH whose result could not be copied back: iommufd_device_detach(idev, pasid). */
function undoPasidAttach(ctx: IommufdCtx, out: UObject): void {
  try {
    ctx.testCmd({ op: 20, id: Number(out.id), pasid: Number(out.pasid ?? 0) });
  } catch (e) {
    if (!(e instanceof IommuError)) throw e;
  }
}

interface Entry {
  cmdName: string;
  name: string;
  nr: number;
  struct: string;
  method: string | null;
  copyBack: CopyBack;
  newer?: boolean;
  notImplemented?: string;
  doc: string;
  run: IoctlDef["run"];
  undo?: IoctlDef["undo"];
}

const notImpl = (what: string) => (): never => fail("EOPNOTSUPP", `not implemented in softiommu: ${what} objects`);

const ENTRIES: readonly Entry[] = [
  {
    cmdName: "IOMMUFD_CMD_DESTROY",
    name: "IOMMU_DESTROY",
    nr: 0x80,
    struct: "iommu_destroy",
    method: "destroy",
    copyBack: "never",
    doc: "destroy an object",
    run: (ctx, c) => ctx.destroy(as<IommuDestroy>(c)),
  },
  {
    cmdName: "IOMMUFD_CMD_IOAS_ALLOC",
    name: "IOMMU_IOAS_ALLOC",
    nr: 0x81,
    struct: "iommu_ioas_alloc",
    method: "ioasAlloc",
    copyBack: "success",
    doc: "create an IOAS",
    run: (ctx, c) => obj(ctx.ioasAlloc(as<IommuIoasAlloc>(c))),
    undo: (ctx, out) => dropObject(ctx, out.out_ioas_id),
  },
  {
    cmdName: "IOMMUFD_CMD_IOAS_ALLOW_IOVAS",
    name: "IOMMU_IOAS_ALLOW_IOVAS",
    nr: 0x82,
    struct: "iommu_ioas_allow_iovas",
    method: "ioasAllowIovas",
    copyBack: "never",
    doc: "set the allowed IOVA ranges",
    run: (ctx, c) => ctx.ioasAllowIovas(as<IommuIoasAllowIovas>(c)),
  },
  {
    cmdName: "IOMMUFD_CMD_IOAS_COPY",
    name: "IOMMU_IOAS_COPY",
    nr: 0x83,
    struct: "iommu_ioas_copy",
    method: "ioasCopy",
    copyBack: "success",
    doc: "copy mappings between IOASes",
    run: (ctx, c) => obj(ctx.ioasCopy(as<IommuIoasCopy>(c))),
  },
  {
    cmdName: "IOMMUFD_CMD_IOAS_IOVA_RANGES",
    name: "IOMMU_IOAS_IOVA_RANGES",
    nr: 0x84,
    struct: "iommu_ioas_iova_ranges",
    method: "ioasIovaRanges",
    copyBack: "success+EMSGSIZE",
    doc: "list the usable IOVA ranges",
    run: (ctx, c) => obj(ctx.ioasIovaRanges(as<IommuIoasIovaRanges>(c))),
  },
  {
    cmdName: "IOMMUFD_CMD_IOAS_MAP",
    name: "IOMMU_IOAS_MAP",
    nr: 0x85,
    struct: "iommu_ioas_map",
    method: "ioasMap",
    copyBack: "success",
    doc: "map user memory",
    run: (ctx, c) => obj(ctx.ioasMap(as<IommuIoasMap>(c))),
  },
  {
    cmdName: "IOMMUFD_CMD_IOAS_UNMAP",
    name: "IOMMU_IOAS_UNMAP",
    nr: 0x86,
    struct: "iommu_ioas_unmap",
    method: "ioasUnmap",
    copyBack: "success",
    doc: "unmap an IOVA range",
    run: (ctx, c) => obj(ctx.ioasUnmap(as<IommuIoasUnmap>(c))),
  },
  {
    cmdName: "IOMMUFD_CMD_OPTION",
    name: "IOMMU_OPTION",
    nr: 0x87,
    struct: "iommu_option",
    method: "option",
    copyBack: "val64",
    doc: "get or set an option",
    run: (ctx, c) => obj(ctx.option(as<IommuOption>(c))),
  },
  {
    cmdName: "IOMMUFD_CMD_VFIO_IOAS",
    name: "IOMMU_VFIO_IOAS",
    nr: 0x88,
    struct: "iommu_vfio_ioas",
    method: "vfioIoas",
    copyBack: "get-op",
    doc: "select the VFIO compat IOAS",
    run: (ctx, c) => obj(ctx.vfioIoas(as<IommuVfioIoas>(c))),
  },
  {
    cmdName: "IOMMUFD_CMD_HWPT_ALLOC",
    name: "IOMMU_HWPT_ALLOC",
    nr: 0x89,
    struct: "iommu_hwpt_alloc",
    method: "hwptAlloc",
    copyBack: "success",
    doc: "allocate a HW page table",
    run: (ctx, c) => obj(ctx.hwptAlloc(as<IommuHwptAlloc>(c))),
    undo: (ctx, out) => dropObject(ctx, out.out_hwpt_id),
  },
  {
    cmdName: "IOMMUFD_CMD_GET_HW_INFO",
    name: "IOMMU_GET_HW_INFO",
    nr: 0x8a,
    struct: "iommu_hw_info",
    method: "getHwInfo",
    copyBack: "success",
    doc: "read IOMMU information of a device",
    run: (ctx, c) => obj(ctx.getHwInfo(as<IommuHwInfo>(c))),
  },
  {
    cmdName: "IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING",
    name: "IOMMU_HWPT_SET_DIRTY_TRACKING",
    nr: 0x8b,
    struct: "iommu_hwpt_set_dirty_tracking",
    method: "hwptSetDirtyTracking",
    copyBack: "never",
    doc: "turn dirty tracking on or off",
    run: (ctx, c) => ctx.hwptSetDirtyTracking(as<IommuHwptSetDirtyTracking>(c)),
  },
  {
    cmdName: "IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP",
    name: "IOMMU_HWPT_GET_DIRTY_BITMAP",
    nr: 0x8c,
    struct: "iommu_hwpt_get_dirty_bitmap",
    method: "hwptGetDirtyBitmap",
    copyBack: "never",
    doc: "read the dirty bitmap",
    run: (ctx, c) => ctx.hwptGetDirtyBitmap(as<IommuHwptGetDirtyBitmap>(c)),
  },
  {
    cmdName: "IOMMUFD_CMD_HWPT_INVALIDATE",
    name: "IOMMU_HWPT_INVALIDATE",
    nr: 0x8d,
    struct: "iommu_hwpt_invalidate",
    method: "hwptInvalidate",
    copyBack: "always",
    doc: "invalidate caches of a nested HWPT",
    run: (ctx, c) => obj(ctx.hwptInvalidate(as<IommuHwptInvalidate>(c))),
  },
  {
    cmdName: "IOMMUFD_CMD_FAULT_QUEUE_ALLOC",
    name: "IOMMU_FAULT_QUEUE_ALLOC",
    nr: 0x8e,
    struct: "iommu_fault_alloc",
    method: "faultQueueAlloc",
    copyBack: "success",
    doc: "create a fault queue and its fd",
    run: (ctx, c) => obj(ctx.faultQueueAlloc(as<IommuFaultAlloc>(c))),
    undo: (ctx, out) => {
      dropFd(ctx, out.out_fault_fd);
      dropObject(ctx, out.out_fault_id);
    },
  },
  {
    cmdName: "IOMMUFD_CMD_IOAS_MAP_FILE",
    name: "IOMMU_IOAS_MAP_FILE",
    nr: 0x8f,
    struct: "iommu_ioas_map_file",
    method: "ioasMapFile",
    copyBack: "success",
    newer: true,
    doc: "map a memfd range",
    run: (ctx, c) => obj(ctx.ioasMapFile(as<IommuIoasMapFile>(c))),
  },
  {
    cmdName: "IOMMUFD_CMD_VIOMMU_ALLOC",
    name: "IOMMU_VIOMMU_ALLOC",
    nr: 0x90,
    struct: "iommu_viommu_alloc",
    method: "viommuAlloc",
    copyBack: "success",
    newer: true,
    doc: "create a vIOMMU",
    run: (ctx, c) => obj(ctx.viommuAlloc(as<IommuViommuAlloc>(c))),
    undo: (ctx, out) => dropObject(ctx, out.out_viommu_id),
  },
  {
    cmdName: "IOMMUFD_CMD_VDEVICE_ALLOC",
    name: "IOMMU_VDEVICE_ALLOC",
    nr: 0x91,
    struct: "iommu_vdevice_alloc",
    method: "vdeviceAlloc",
    copyBack: "success",
    newer: true,
    doc: "create a vDEVICE",
    run: (ctx, c) => obj(ctx.vdeviceAlloc(as<IommuVdeviceAlloc>(c))),
    undo: (ctx, out) => dropObject(ctx, out.out_vdevice_id),
  },
  {
    cmdName: "IOMMUFD_CMD_IOAS_CHANGE_PROCESS",
    name: "IOMMU_IOAS_CHANGE_PROCESS",
    nr: 0x92,
    struct: "iommu_ioas_change_process",
    method: "ioasChangeProcess",
    copyBack: "never",
    newer: true,
    doc: "charge pinned pages to the calling process",
    run: (ctx, c) => ctx.ioasChangeProcess(as<IommuIoasChangeProcess>(c)),
  },
  {
    cmdName: "IOMMUFD_CMD_VEVENTQ_ALLOC",
    name: "IOMMU_VEVENTQ_ALLOC",
    nr: 0x93,
    struct: "iommu_veventq_alloc",
    method: "veventqAlloc",
    copyBack: "success",
    newer: true,
    doc: "create a vEVENTQ and its fd",
    run: (ctx, c) => obj(ctx.veventqAlloc(as<IommuVeventqAlloc>(c))),
    undo: (ctx, out) => {
      dropFd(ctx, out.out_veventq_fd);
      dropObject(ctx, out.out_veventq_id);
    },
  },
  {
    cmdName: "IOMMUFD_CMD_HW_QUEUE_ALLOC",
    name: "IOMMU_HW_QUEUE_ALLOC",
    nr: 0x94,
    struct: "iommu_hw_queue_alloc",
    method: null,
    copyBack: "success",
    newer: true,
    notImplemented: "HW queue",
    doc: "create a HW queue",
    run: notImpl("HW queue"),
  },
  {
    cmdName: "",
    name: "IOMMU_TEST_CMD",
    nr: IOMMUFD_TEST_NR,
    struct: "iommu_test_cmd",
    method: "testCmd",
    copyBack: "test-op",
    doc: "selftest mock driver operation",
    run: (ctx, c) => obj(ctx.testCmd(as<IommuTestCmd>(c))),
    undo: (ctx, out) => {
      // MOCK_DOMAIN(_FLAGS) and CREATE_ACCESS create; the rest only change state
      if (out.op === 2 || out.op === 12) dropObject(ctx, out.out_stdev_id);
      if (out.op === 5) dropFd(ctx, out.out_access_fd);
      // PASID_ATTACH: iommufd_test_pasid_attach detaches again (REPLACE keeps the new HWPT)
      if (out.op === 18) undoPasidAttach(ctx, out);
    },
  },
];

function toDef(e: Entry): IoctlDef {
  const s = structOf(e.struct);
  if (s.min === null) throw new Error(`ioctl table: ${e.struct} has no minimum size`);
  return {
    name: e.name,
    cmdName: e.cmdName,
    nr: e.nr,
    request: _IO(IOMMUFD_TYPE, e.nr),
    struct: s,
    min: s.min,
    method: e.method,
    copyBack: e.copyBack,
    newer: e.newer === true,
    notImplemented: e.notImplemented ? { errno: "EOPNOTSUPP", why: `${e.notImplemented} objects are not implemented yet` } : null,
    doc: e.doc,
    run: e.run,
    ...(e.undo ? { undo: e.undo } : {}),
  };
}

/** Every iommufd ioctl of the newest uAPI plus IOMMU_TEST_CMD, by nr. */
export const IOCTLS: readonly IoctlDef[] = ENTRIES.map(toDef);

const TABLE_LEN = IOMMUFD_TEST_NR - IOMMUFD_CMD_BASE + 1;
function table(profile: Profile): readonly (IoctlDef | null)[] {
  const t: (IoctlDef | null)[] = new Array(TABLE_LEN).fill(null);
  for (const d of IOCTLS) if (profile === "newest" || !d.newer) t[d.nr - IOMMUFD_CMD_BASE] = d;
  return t;
}
const TABLES: Record<Profile, readonly (IoctlDef | null)[]> = { newest: table("newest"), "6.12": table("6.12") };

/** The ioctl a request value names under a profile (exact match, as the kernel compares). */
export function ioctlFor(request: number, profile: Profile = "newest"): IoctlDef | null {
  const cmd = request >>> 0;
  const nr = cmd & 0xff;
  if (nr < IOMMUFD_CMD_BASE || nr - IOMMUFD_CMD_BASE >= TABLE_LEN) return null;
  const d = TABLES[profile][nr - IOMMUFD_CMD_BASE];
  return d && d.request === cmd ? d : null;
}

// ---------------------------------------------------------------------------------- VFIO compat

export const VFIO_TYPE = IOMMUFD_TYPE;
export const VFIO_BASE = 100;

export interface VfioIoctlDef {
  readonly name: string;
  readonly request: number;
  /** "int": the argument is a value, not a pointer; "none": no argument; "ptr": a struct pointer. */
  readonly arg: "none" | "int" | "ptr";
  readonly struct: StructLayout | null;
}

/** The VFIO container ioctls iommufd's compat layer answers (vfio_compat.c iommufd_vfio_ioctl). */
export const VFIO_IOCTLS: readonly VfioIoctlDef[] = [
  { name: "VFIO_GET_API_VERSION", request: _IO(VFIO_TYPE, VFIO_BASE + 0), arg: "none", struct: null },
  { name: "VFIO_CHECK_EXTENSION", request: _IO(VFIO_TYPE, VFIO_BASE + 1), arg: "int", struct: null },
  { name: "VFIO_SET_IOMMU", request: _IO(VFIO_TYPE, VFIO_BASE + 2), arg: "int", struct: null },
  { name: "VFIO_IOMMU_GET_INFO", request: _IO(VFIO_TYPE, VFIO_BASE + 12), arg: "ptr", struct: structOf("vfio_iommu_type1_info") },
  { name: "VFIO_IOMMU_MAP_DMA", request: _IO(VFIO_TYPE, VFIO_BASE + 13), arg: "ptr", struct: structOf("vfio_iommu_type1_dma_map") },
  { name: "VFIO_IOMMU_UNMAP_DMA", request: _IO(VFIO_TYPE, VFIO_BASE + 14), arg: "ptr", struct: structOf("vfio_iommu_type1_dma_unmap") },
];
/** Known to VFIO but refused by iommufd's compat layer (ENOTTY). */
export const VFIO_IOMMU_DIRTY_PAGES = _IO(VFIO_TYPE, VFIO_BASE + 17);

/** An `unsigned long` ioctl argument as the int the compat handlers compare (no match if it does not fit). */
function intArg(arg: bigint): number {
  const v = BigInt.asUintN(64, arg);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : -1;
}

function vfioIoctl(ctx: IommufdCtx, cmd: number, arg: bigint): number {
  switch (cmd) {
    case 0x3b64: // VFIO_GET_API_VERSION
      return ctx.vfioGetApiVersion();
    case 0x3b66: // VFIO_SET_IOMMU
      return ctx.vfioSetIommu(intArg(arg));
    case 0x3b65: // VFIO_CHECK_EXTENSION
      return ctx.vfioCheckExtension(intArg(arg));
    case 0x3b70: // VFIO_IOMMU_GET_INFO
      return ctx.vfioIommuGetInfo(arg);
    case 0x3b71: // VFIO_IOMMU_MAP_DMA
      return ctx.vfioIommuMapDma(arg);
    case 0x3b72: // VFIO_IOMMU_UNMAP_DMA
      return ctx.vfioIommuUnmapDma(arg);
    default: // including VFIO_IOMMU_DIRTY_PAGES: -ENOIOCTLCMD, which user space sees as ENOTTY
      return fail("ENOTTY", `unknown ioctl 0x${cmd.toString(16)}`);
  }
}

// ---------------------------------------------------------------------------------- dispatch

const PAGE = 4096;
const VAL64_OFFSET = (structOf("iommu_option").common.find((f) => f.key === "val64") as { offset: number }).offset;

function readU32(ctx: IommufdCtx, ptr: bigint): number {
  const b = ctx.readUser(ptr, 4);
  return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
}

/**
 * check_zeroed_user over [ptr, ptr + len): E2BIG at the first non-zero byte, EFAULT at the first
 * unreadable byte, whichever comes first. Read a page at a time (len can be up to 4 GiB).
 */
function checkZeroedUser(ctx: IommufdCtx, ptr: bigint, len: number): void {
  let off = 0;
  while (off < len) {
    const addr = ptr + BigInt(off);
    const n = Math.min(len - off, PAGE - Number(addr % BigInt(PAGE)));
    const b = ctx.readUser(addr, n);
    for (let i = 0; i < n; i++) if (b[i] !== 0) fail("E2BIG", "non-zero bytes past the end of the kernel's struct");
    off += n;
  }
}

/** copy_struct_from_user into a fresh sizeof(struct) buffer. */
function copyStructFromUser(ctx: IommufdCtx, ksize: number, ptr: bigint, usize: number): Uint8Array {
  const kbuf = new Uint8Array(ksize);
  const size = Math.min(ksize, usize);
  if (usize > ksize) checkZeroedUser(ctx, ptr + BigInt(ksize), usize - ksize);
  kbuf.set(ctx.readUser(ptr, size), 0);
  return kbuf;
}

export interface DispatchOptions {
  /** Which kernel's ioctl table to answer with; defaults to the context's own profile. */
  profile?: Profile;
}

/** What to write back after the handler: the struct to encode, "val64", or nothing. */
function writeBackOf(d: IoctlDef, cmd: UObject, out: UObject | void, err: IommuError | null): UObject | "val64" | null {
  switch (d.copyBack) {
    case "never":
      return null;
    case "success":
      return err ? null : (out ?? cmd);
    case "always":
      // hwpt invalidate: entry_num reports the entries handled, also when failing (0 if none)
      if (!err) return out ?? cmd;
      return (err.out as UObject | undefined) ?? { ...cmd, entry_num: 0 };
    case "success+EMSGSIZE":
      if (!err) return out ?? cmd;
      return err.code === "EMSGSIZE" && err.out ? (err.out as UObject) : null;
    case "val64":
      return err ? null : "val64";
    case "get-op":
      return !err && cmd.op === 0 ? (out ?? cmd) : null;
    case "test-op":
      return !err && TEST_OPS_RESPOND.has(Number(cmd.op)) ? (out ?? cmd) : null;
  }
}

/**
 * ioctl(fd, request, arg) on an iommufd fd of `ctx`, issued by ctx.caller (arg is an address in
 * its memory, or an integer for the VFIO integer-argument ioctls). Returns the ioctl's return value;
 * failures throw IommuError with the errno the kernel would return.
 */
export function dispatchIoctl(ctx: IommufdCtx, request: number, arg: bigint, opts: DispatchOptions = {}): { ret: number } {
  const profile: Profile = opts.profile ?? ctx.profile;
  const cmd = request >>> 0;
  const nr = cmd & 0xff;
  if (nr < IOMMUFD_CMD_BASE || nr - IOMMUFD_CMD_BASE >= TABLE_LEN) return { ret: vfioIoctl(ctx, cmd, arg) };

  const usize = readU32(ctx, arg);
  const d = TABLES[profile][nr - IOMMUFD_CMD_BASE];
  if (!d || d.request !== cmd) fail("ENOTTY", `unknown ioctl 0x${cmd.toString(16)}`);
  if (usize < d.min) fail("EINVAL", `size ${usize} is below ${d.name}'s minimum ${d.min}`);
  const kbuf = copyStructFromUser(ctx, d.struct.size, arg, usize);
  const input = decode(d.struct, kbuf);

  if (profile === "6.12" && d.nr === IOMMUFD_TEST_NR && Number(input.op) > TEST_OPS_612_MAX)
    fail("EOPNOTSUPP", `test op ${input.op} is newer than Linux 6.12`);

  let out: UObject | void = undefined;
  let err: IommuError | null = null;
  if (d.copyBack === "always" || d.copyBack === "success+EMSGSIZE") {
    // these write their struct back also when they fail
    try {
      out = d.run(ctx, input);
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      err = e;
    }
  } else {
    // a failure has nothing to write back: let it go by as it is (a caught and rethrown error
    // costs as much again as the throw, about a microsecond, on the path of every failing ioctl)
    out = d.run(ctx, input);
  }

  const wb = writeBackOf(d, input, out, err);
  if (wb !== null) {
    // Nothing follows the copy-back, and unless an object must be taken down when it fails, its
    // failure only turns the result into EFAULT: it is the call's last store (UserMemory.write).
    const last = !(d.undo && !err && wb !== "val64");
    try {
      if (wb === "val64") {
        // main.c iommufd_option: copy_to_user of val64 alone
        encodeInto(d.struct, { val64: out ? out.val64 : input.val64 }, kbuf);
        ctx.writeUser(arg + BigInt(VAL64_OFFSET), kbuf.subarray(VAL64_OFFSET, VAL64_OFFSET + 8), last);
      } else {
        encodeInto(d.struct, wb, kbuf);
        ctx.writeUser(arg, kbuf.subarray(0, Math.min(usize, d.struct.size)), last);
      }
    } catch (e) {
      if (!(e instanceof IommuError)) throw e;
      // the kernel aborts an object whose creation it could not report
      if (!err && d.undo && wb !== "val64") d.undo(ctx, wb);
      throw new IommuError("EFAULT", `cannot copy ${d.name}'s result back`);
    }
  }
  if (err) throw err;
  return { ret: 0 };
}
