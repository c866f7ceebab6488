/** The one-screen summary `softiommu run` and `softiommu serve` print when they end. */
import type { ServerStats } from "../server/index.js";

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}

function counts(r: Record<string, number>, limit = 10): string {
  const e = Object.entries(r).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  if (!e.length) return "none";
  const shown = e.slice(0, limit).map(([k, v]) => `${k} ${v}`);
  if (e.length > limit) shown.push(`(+${e.length - limit} more)`);
  return shown.join(", ");
}

export function formatSummary(s: ServerStats, head: string): string {
  const lines = [
    head,
    `  processes ${s.processesSeen}; contexts opened ${s.contextsOpened}, still open ${s.contextsLive}`,
    `  objects created: ${counts(s.objectsCreated)}`,
    `  objects still live: ${counts(s.objectsLive)}`,
    `  ioctls ${s.ioctls}: ${counts(s.ioctlsByName, 8)}`,
    `  errnos returned: ${counts(s.errnos)}`,
    `  bytes mapped ${bytes(s.bytesMapped)}; pinned now ${bytes(s.pinnedBytes)}, at most ${bytes(s.pinnedPeakBytes)}`,
    `  caller memory: ${s.memReads} reads (${bytes(s.memReadBytes)}), ${s.memWrites} writes (${bytes(s.memWriteBytes)}), ${s.memWritesDeferred} copy-backs with the result, ${s.mapsQueries} maps lookups`,
  ];
  if (s.clientsDropped || s.protocolErrors || s.internalErrors || s.abortedRequests)
    lines.push(`  trouble: ${s.clientsDropped} clients dropped, ${s.protocolErrors} protocol errors, ${s.abortedRequests} requests aborted, ${s.internalErrors} internal errors`);
  return lines.join("\n") + "\n";
}
