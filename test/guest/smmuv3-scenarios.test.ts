/**
 * The SMMUv3 guest scenarios (src/guest/smmuv3/scenarios.ts) run as the CLI runs them: each must
 * pass (runScenario's ok) with a step-by-step report.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { runScenario, formatReport, type Scenario } from "../../src/guest/scenario.js";
import { SMMUV3_SCENARIOS, smmuv3Dirty, smmuv3Invalidation, smmuv3Ownership, smmuv3Sva, smmuv3Teardown } from "../../src/guest/smmuv3/scenarios.js";

function passes(s: Scenario): void {
  const r = runScenario(s);
  assert.equal(r.ok, true, `${s.name} failed:\n${formatReport(r)}`);
  assert.equal(r.iommu, "smmuv3");
  assert.ok(r.steps.length >= 5, "a step-by-step report");
  for (const st of r.steps) assert.ok(st.title.length > 0);
  assert.match(formatReport(r), /\nOK$/);
}

test("the scenario list: five SMMUv3 scenarios, names prefixed smmuv3-, each with a description", () => {
  assert.deepEqual(
    SMMUV3_SCENARIOS.map((s) => s.name),
    ["smmuv3-sva", "smmuv3-invalidation", "smmuv3-ownership", "smmuv3-dirty", "smmuv3-teardown"],
  );
  for (const s of SMMUV3_SCENARIOS) {
    assert.equal(s.iommu, "smmuv3");
    assert.ok(s.description.length > 20);
  }
});

test("smmuv3-sva: boot → SVA bind at an SSID → DMA → stall → guest event queue → guest maps the page and sends CMD_RESUME → the DMA completes", () => {
  passes(smmuv3Sva);
});

test("smmuv3-invalidation: a guest that forgets TLBI keeps seeing the stale translation until it sends it", () => {
  passes(smmuv3Invalidation);
});

test("smmuv3-ownership: a second VM reaches neither the first VM's device, vIOMMU objects nor (vSID, SSID) mappings", () => {
  passes(smmuv3Ownership);
});

test("smmuv3-dirty: a migration round over the nested setup (no stage-2 dirty tracking on arm-smmu-v3: EOPNOTSUPP, nothing changed, every page copied)", () => {
  passes(smmuv3Dirty);
});

test("smmuv3-teardown: no object, pin, fd, stall or PASID is left", () => {
  passes(smmuv3Teardown);
});
