/** The VT-d guest scenarios: each runs to the end with every check it makes holding, and reports readable steps. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatReport, runScenario } from "../../src/guest/scenario.js";
import { vtdScenarios } from "../../src/guest/vtd/scenarios.js";

const names = ["vtd-sva", "vtd-invalidation", "vtd-pasid-ownership", "vtd-dirty", "vtd-teardown"];

test("the VT-d scenarios are the five the issue names, each a vtd- scenario with a description", () => {
  assert.deepEqual(
    vtdScenarios.map((s) => s.name),
    names,
  );
  for (const s of vtdScenarios) {
    assert.equal(s.iommu, "vtd");
    assert.ok(s.description.length > 20);
  }
});

for (const s of vtdScenarios) {
  test(`scenario ${s.name} passes every check it makes and logs its steps with details`, () => {
    const r = runScenario(s);
    assert.equal(r.error, undefined);
    assert.equal(r.ok, true);
    assert.ok(r.steps.length >= 4, "several steps");
    assert.ok(
      r.steps.some((st) => st.detail.length > 0),
      "steps carry details",
    );
    const text = formatReport(r);
    assert.match(text, new RegExp(`^scenario ${s.name} \\(vtd\\)`));
    assert.match(text, /OK$/);
  });
}

test("a scenario report shows the guest's entries and descriptors as hex and the VMM's ioctls", () => {
  const text = formatReport(runScenario(vtdScenarios[0]));
  assert.match(text, /PASID entry at GPA 0x[0-9a-f]+: 0x[0-9a-f]{16} 0x[0-9a-f]{16}/);
  assert.match(text, /vIOMMU fetched pasidCache descriptor: 0x[0-9a-f]{16}/);
  assert.match(text, /IOMMU_HWPT_ALLOC nested: .*VTD_S1 \{flags 0x0, pgtbl_addr 0x[0-9a-f]+, addr_width 48\}/);
  assert.match(text, /page request descriptor at GPA 0x[0-9a-f]+: 0x[0-9a-f]{16}/);
  assert.match(text, /fault fd response: cookie \d+, code SUCCESS/);
});
