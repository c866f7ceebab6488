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
    this.name = "IommuError";
    this.code = code;
    this.errno = Errno[code];
  }
}

/** Throw an IommuError. Written as a function so that checks read as one line. */
export function fail(code: ErrnoName, reason: string): never {
  throw new IommuError(code, reason);
}

/** An internal inconsistency: a bug in softiommu, never a user error. */
export function assert(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`softiommu internal assertion failed: ${what}`);
}
