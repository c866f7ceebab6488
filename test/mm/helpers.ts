/** Shared helpers for the mm tests. */
import { IommuError, type ErrnoName } from "../../src/errno.js";

export * from "../../src/mm/index.js";

/** An assert.throws matcher: an IommuError with this errno. */
export function IommuErrorCode(code: ErrnoName): (e: unknown) => boolean {
  return (e) => {
    if (!(e instanceof IommuError)) throw e;
    if (e.code !== code) throw new Error(`expected ${code}, got ${e.message}`);
    return true;
  };
}
