/**
 * Scenarios: end-to-end stories of the guest side (boot → SVA bind → DMA → fault → response, …),
 * each runnable from the CLI (`softiommu scenario NAME`) with a readable step-by-step report and
 * from tests. A scenario throws (an AssertionError or IommuError) when what it checks does not hold.
 */
import type { IommuKind } from "./machine.js";

export interface ScenarioStep {
  /** One line: what happened ("guest binds process 100 to PASID 5 of 0000:03:00.0"). */
  title: string;
  /** Indented lines under it: values a reader wants to see (entries, addresses, records). */
  detail: string[];
}

export interface ScenarioLog {
  step(title: string, ...detail: string[]): void;
}

export interface Scenario {
  /** CLI name, e.g. "vtd-sva". */
  readonly name: string;
  readonly iommu: IommuKind;
  /** One sentence for `softiommu scenario --list`. */
  readonly description: string;
  run(log: ScenarioLog): void;
}

export interface ScenarioReport {
  name: string;
  iommu: IommuKind;
  ok: boolean;
  steps: ScenarioStep[];
  /** The failure, when !ok. */
  error?: string;
}

/** Run a scenario, collecting its steps; never throws. */
export function runScenario(s: Scenario): ScenarioReport {
  const steps: ScenarioStep[] = [];
  const log: ScenarioLog = { step: (title, ...detail) => void steps.push({ title, detail }) };
  try {
    s.run(log);
    return { name: s.name, iommu: s.iommu, ok: true, steps };
  } catch (e) {
    return { name: s.name, iommu: s.iommu, ok: false, steps, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  }
}

/** The report as text: numbered steps with their details, then OK or the failure. */
export function formatReport(r: ScenarioReport): string {
  const lines = [`scenario ${r.name} (${r.iommu})`];
  r.steps.forEach((s, i) => {
    lines.push(`${String(i + 1).padStart(3)}. ${s.title}`);
    for (const d of s.detail) lines.push(`       ${d}`);
  });
  lines.push(r.ok ? "OK" : `FAILED: ${r.error ?? "unknown error"}`);
  return lines.join("\n");
}
