/** Every scenario of the guest side, by name (the CLI's `softiommu scenario NAME`). */
import type { Scenario } from "./scenario.js";
import { vtdScenarios } from "./vtd/scenarios.js";
import { SMMUV3_SCENARIOS } from "./smmuv3/scenarios.js";

export const SCENARIOS: readonly Scenario[] = [...vtdScenarios, ...SMMUV3_SCENARIOS];

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
