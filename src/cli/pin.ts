/**
 * CPU placement for `softiommu run --pin` and the round-trip bench: the server's main thread on one
 * CPU, the program on the others. Both sides poll for a while instead of sleeping (a sleeping
 * thread on a small VM takes longer to wake than a request takes to serve); that only pays when
 * they run on different CPUs. Unpinned, the scheduler sometimes puts them on one CPU, where each
 * poll keeps the other waiting, and tends to keep them there.
 *
 * The shim applies the plan (SOFTIOMMU_PIN, read in its constructor): it sets the server thread's
 * affinity and its own, before the program's main() runs, so that every thread and child of the
 * program inherits it.
 */
import fs from "node:fs";

/** Parse a kernel cpulist ("0-3,6"). Null when malformed. */
export function parseCpuList(s: string): number[] | null {
  const out: number[] = [];
  for (const part of s.trim().split(",")) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return null;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b >= 1024) return null;
    for (let c = a; c <= b; c++) out.push(c);
  }
  return out;
}

/** Format CPUs as a cpulist (ranges collapsed). */
export function formatCpuList(cpus: readonly number[]): string {
  const xs = [...new Set(cpus)].sort((x, y) => x - y);
  const parts: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j] + 1) j++;
    parts.push(i === j ? `${xs[i]}` : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/** The CPUs this process may run on (Cpus_allowed_list of /proc/self/status); null if unknown. */
export function allowedCpus(status = "/proc/self/status"): number[] | null {
  try {
    const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(fs.readFileSync(status, "utf8"));
    return m ? parseCpuList(m[1]) : null;
  } catch {
    return null;
  }
}

export interface PinPlan {
  /** The value of SOFTIOMMU_PIN for the program's environment. */
  env: string;
  serverCpu: number;
  programCpus: number[];
}

/**
 * The server thread `tid` on the last allowed CPU, the program on the rest; null with fewer than
 * two CPUs (nothing to separate).
 */
export function pinPlan(tid: number, cpus: readonly number[] | null = allowedCpus()): PinPlan | null {
  if (!cpus || cpus.length < 2) return null;
  const serverCpu = cpus[cpus.length - 1];
  const programCpus = cpus.slice(0, -1);
  return { env: `${tid}:${serverCpu}:${formatCpuList(programCpus)}`, serverCpu, programCpus };
}
