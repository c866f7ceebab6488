/**
 * Linux errno values (x86-64 numbering) and the one error type softiommu throws for user mistakes.
 * Every failing uAPI call surfaces as an IommuError carrying the errno the kernel would return.
 */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  ENOSPC: 28,
  ESPIPE: 29,
  ERANGE: 34,
  EDEADLK: 35,
  EOVERFLOW: 75,
  EBADFD: 77,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  ETIMEDOUT: 110,
  EBADE: 52,
} as const;

export type ErrnoName = keyof typeof Errno;

const byNumber = new Map<number, ErrnoName>();
for (const [k, v] of Object.entries(Errno)) byNumber.set(v, k as ErrnoName);

export function errnoName(n: number): string {
  return byNumber.get(n) ?? `E${n}`;
}

/** A failed call: carries the errno (name and number) and a short reason. */
export class IommuError extends Error {
  readonly errno: number;
  readonly code: ErrnoName;
  /** The output struct, for the ioctls that write results back even when they fail. */
  out?: unknown;
  constructor(code: ErrnoName, reason: string) {
    super(`${code}: ${reason}`);
    this.code = code;
    this.errno = Errno[code];
  }
}
IommuError.prototype.name = "IommuError";

/** The fields an IommuError is made of (what fail() sets when it skips the constructor). */
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Throw an IommuError. Written as a function so that checks read as one line.
 *
 * When stack traces are off (Error.stackTraceLimit = 0: the socket server runs requests that way,
 * since a failing ioctl is a normal answer there) the error is made without running Error's
 * constructor, which costs about 0.7 µs even with no frames to capture — as much as a whole cheap
 * ioctl. It is the same object otherwise: IommuError's prototype (so instanceof IommuError and
 * instanceof Error hold), message, code and errno; only `stack` is absent.
 */
export function fail(code: ErrnoName, reason: string): never {
  if (Error.stackTraceLimit !== 0) throw new IommuError(code, reason);
  const e = Object.create(IommuError.prototype) as Mutable<IommuError>;
  e.message = `${code}: ${reason}`;
  e.code = code;
  e.errno = Errno[code];
  throw e as IommuError;
}

/** An internal inconsistency: a bug in softiommu, never a user error. */
export function assert(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`softiommu internal assertion failed: ${what}`);
}
