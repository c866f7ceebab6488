/**
 * The struct table against C: a generated C program includes the generated headers and prints
 * sizeof / offsetof / member sizes / constant values, compiled with the system cc; the committed
 * headers must be what the tables render; the Linux 6.12.117 selftest must compile against them;
 * the computed sizes and minimums must match the reference catalog.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { renderHeaders } from "../../src/uapi/c-header.js";
import { CONSTANTS } from "../../src/uapi/constants.js";
import { IOCTLS, VFIO_IOCTLS, VFIO_IOMMU_DIRTY_PAGES } from "../../src/uapi/ioctl.js";
import { STRUCTS, structOf } from "../../src/uapi/structs.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const INCLUDE = join(ROOT, "include");

function haveCc(): boolean {
  const r = spawnSync("cc", ["--version"], { encoding: "utf8" });
  return !r.error && r.status === 0;
}
const NO_CC = haveCc() ? false : "no C compiler: `cc` is not on PATH (install gcc to run the C layout checks)";

/** Compile and run a C program against include/; returns its stdout. */
function runC(src: string, flags: string[] = ["-std=gnu11"]): string {
  const dir = mkdtempSync(join(tmpdir(), "softiommu-uapi-"));
  try {
    writeFileSync(join(dir, "t.c"), src);
    const exe = join(dir, "t");
    const c = spawnSync("cc", [...flags, "-Wall", "-Wextra", "-Werror", "-I", INCLUDE, join(dir, "t.c"), "-o", exe], { encoding: "utf8" });
    assert.equal(c.status, 0, `cc failed:\n${c.stderr}`);
    const r = spawnSync(exe, [], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const PRELUDE = [
  "#include <softiommu/iommufd.h>",
  "#include <softiommu/vfio_type1.h>",
  "#include <stddef.h>",
  "#include <stdio.h>",
  '#define SZ(s) printf("S %s %zu %zu\\n", #s, sizeof(struct s), (size_t)_Alignof(struct s));',
  '#define OFF(s, m) printf("O %s %s %zu\\n", #s, #m, offsetof(struct s, m));',
  '#define MSZ(s, m) printf("M %s %s %zu\\n", #s, #m, sizeof(((struct s *)0)->m));',
  '#define K(n) printf("K %s %llu\\n", #n, (unsigned long long)(n));',
  "int main(void) {",
];

test("every struct's sizeof, alignment, offsetof and member size agree with C", { skip: NO_CC }, () => {
  const lines = [...PRELUDE];
  const want: string[] = [];
  for (const s of STRUCTS.values()) {
    lines.push(`SZ(${s.name})`);
    want.push(`S ${s.name} ${s.size} ${s.align}`);
    for (const f of s.all) {
      lines.push(`OFF(${s.name}, ${f.cpath})`);
      want.push(`O ${s.name} ${f.cpath} ${f.offset}`);
      if (f.count !== 0) {
        lines.push(`MSZ(${s.name}, ${f.cpath})`);
        want.push(`M ${s.name} ${f.cpath} ${f.elemSize * f.count}`);
      }
    }
  }
  lines.push("return 0; }", "");
  const got = runC(lines.join("\n")).trim().split("\n");
  assert.deepEqual(got, want);
  assert.ok(want.length > 400, `checked ${want.length} facts`);
});

test("every constant and ioctl number agrees with C", { skip: NO_CC }, () => {
  const lines = [...PRELUDE];
  const want: string[] = [];
  for (const [name, v] of CONSTANTS) {
    lines.push(`K(${name})`);
    want.push(`K ${name} ${v}`);
  }
  for (const d of IOCTLS) {
    lines.push(`K(${d.name})`);
    want.push(`K ${d.name} ${d.request}`);
    if (d.cmdName) {
      lines.push(`K(${d.cmdName})`);
      want.push(`K ${d.cmdName} ${d.nr}`);
    }
  }
  for (const v of VFIO_IOCTLS) {
    lines.push(`K(${v.name})`);
    want.push(`K ${v.name} ${v.request}`);
  }
  lines.push("K(VFIO_IOMMU_DIRTY_PAGES)");
  want.push(`K VFIO_IOMMU_DIRTY_PAGES ${VFIO_IOMMU_DIRTY_PAGES}`);
  lines.push("return 0; }", "");
  assert.deepEqual(runC(lines.join("\n")).trim().split("\n"), want);
});

test("the generated headers compile cleanly as C11, C17, C2x and C++17", { skip: NO_CC }, () => {
  const src = "#include <softiommu/iommufd.h>\n#include <softiommu/vfio_type1.h>\nint main(void) { return IOMMU_TEST_CMD == 0x3ba0 ? 0 : 1; }\n";
  for (const std of ["-std=c11", "-std=c17", "-std=gnu2x"]) runC(src, [std, "-pedantic"]);
  const cxx = spawnSync("c++", ["--version"]);
  if (!cxx.error) {
    const dir = mkdtempSync(join(tmpdir(), "softiommu-uapi-"));
    try {
      writeFileSync(join(dir, "t.cc"), src);
      const r = spawnSync("c++", ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", INCLUDE, "-fsyntax-only", join(dir, "t.cc")], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test("the committed headers are what the tables render (run scripts/gen-header.mjs after changing them)", () => {
  for (const [rel, text] of renderHeaders()) {
    const path = join(ROOT, rel);
    assert.ok(existsSync(path), `${rel} is missing: run \`npm run -s build && node scripts/gen-header.mjs\``);
    assert.equal(readFileSync(path, "utf8"), text, `${rel} is stale: run \`npm run -s build && node scripts/gen-header.mjs\``);
  }
});

/** Where a Linux 6.12 source tree may be (Debian's linux-source-6.12, unpacked). */
function linuxTree(): string | null {
  const cands = [process.env.SOFTIOMMU_LINUX_SRC, "/usr/src/linux-source-6.12", "/root/oracle/linux-source-6.12"];
  for (const c of cands) if (c && existsSync(join(c, "tools/testing/selftests/iommu/iommufd.c"))) return c;
  return null;
}

test("the Linux 6.12.117 selftest compiles against the header (the newer names come from it)", { skip: NO_CC }, (t) => {
  const tree = linuxTree();
  if (!tree) {
    t.skip("no unpacked linux-source-6.12 tree (set SOFTIOMMU_LINUX_SRC to one)");
    return;
  }
  const dir = join(tree, "tools/testing/selftests/iommu");
  const cc = (file: string, extra: string[] = []) =>
    spawnSync("cc", ["-fsyntax-only", "-Wall", "-O2", "-Wno-unused-function", "-D_GNU_SOURCE", ...extra, "-I", INCLUDE, file], { cwd: dir, encoding: "utf8" });
  for (const f of ["iommufd.c", "iommufd_fail_nth.c"]) {
    const r = cc(f);
    assert.equal(r.status, 0, `${f}:\n${r.stderr}`);
  }
  // without the compat names the 6.12 selftest does not build: they are what the header adds
  const r = cc("iommufd.c", ["-DSOFTIOMMU_NO_TEST_COMPAT"]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /MOCK_FLAGS_DEVICE_PASID/);
  assert.match(r.stderr, /MOCK_PASID_WIDTH/);
});

test("sizes and minimum sizes match the reference catalog (iommufd-uapi.md A.1 and B)", () => {
  const a1: [string, number, number, number][] = [
    ["iommu_destroy", 0x80, 8, 8],
    ["iommu_ioas_alloc", 0x81, 12, 12],
    ["iommu_ioas_allow_iovas", 0x82, 24, 24],
    ["iommu_ioas_copy", 0x83, 40, 40],
    ["iommu_ioas_iova_ranges", 0x84, 32, 32],
    ["iommu_ioas_map", 0x85, 40, 40],
    ["iommu_ioas_unmap", 0x86, 24, 24],
    ["iommu_option", 0x87, 24, 24],
    ["iommu_vfio_ioas", 0x88, 12, 12],
    ["iommu_hwpt_alloc", 0x89, 48, 24],
    ["iommu_hw_info", 0x8a, 40, 32],
    ["iommu_hwpt_set_dirty_tracking", 0x8b, 16, 16],
    ["iommu_hwpt_get_dirty_bitmap", 0x8c, 48, 48],
    ["iommu_hwpt_invalidate", 0x8d, 32, 32],
    ["iommu_fault_alloc", 0x8e, 16, 16],
    ["iommu_ioas_map_file", 0x8f, 40, 40],
    ["iommu_viommu_alloc", 0x90, 40, 24],
    ["iommu_vdevice_alloc", 0x91, 24, 24],
    ["iommu_ioas_change_process", 0x92, 8, 8],
    ["iommu_veventq_alloc", 0x93, 32, 28],
    ["iommu_hw_queue_alloc", 0x94, 40, 40],
    ["iommu_test_cmd", 0xa0, 72, 68],
  ];
  assert.deepEqual(
    IOCTLS.map((d) => [d.struct.name, d.nr, d.struct.size, d.min]),
    a1,
  );
  for (const d of IOCTLS) assert.equal(d.request, 0x3b00 | d.nr);
  const sizes: Record<string, number> = {
    iommu_iova_range: 16,
    iommu_hwpt_vtd_s1: 24,
    iommu_hwpt_arm_smmuv3: 16,
    iommu_hw_info_vtd: 24,
    iommu_hw_info_arm_smmuv3: 40,
    iommu_hw_info_tegra241_cmdqv: 8,
    iommu_hwpt_vtd_s1_invalidate: 24,
    iommu_viommu_arm_smmuv3_invalidate: 16,
    iommu_hwpt_pgfault: 40,
    iommu_hwpt_page_response: 8,
    iommu_viommu_tegra241_cmdqv: 16,
    iommufd_vevent_header: 8,
    iommu_vevent_arm_smmuv3: 32,
    iommu_vevent_tegra241_cmdqv: 16,
    iommu_test_hw_info: 8,
    iommu_hwpt_selftest: 4,
    iommu_hwpt_invalidate_selftest: 8,
    iommu_viommu_selftest: 24,
    iommu_viommu_invalidate_selftest: 12,
    iommu_viommu_event_selftest: 4,
    vfio_info_cap_header: 8,
    vfio_iova_range: 16,
    vfio_iommu_type1_info: 24,
    vfio_iommu_type1_info_cap_iova_range: 16,
    vfio_iommu_type1_info_dma_avail: 12,
    vfio_iommu_type1_dma_map: 32,
    vfio_iommu_type1_dma_unmap: 24,
  };
  for (const [n, sz] of Object.entries(sizes)) assert.equal(structOf(n).size, sz, n);
  // driver minimums the kernel checks with its own copy helpers
  assert.equal(structOf("iommu_hwpt_selftest").min, 4);
  assert.equal(structOf("iommu_hwpt_invalidate_selftest").min, 8);
  assert.equal(structOf("iommu_hwpt_vtd_s1").min, 24);
  assert.equal(structOf("vfio_iommu_type1_info").min, 16);
  // B: the test command's union members at their absolute offsets
  const t = structOf("iommu_test_cmd");
  const at = (p: string) => t.all.find((f) => f.cpath === p)?.offset;
  assert.deepEqual(
    ["add_reserved.start", "mock_domain.out_idev_id", "mock_domain_flags.dev_flags", "check_refs.refs", "access_pages.uptr", "access_rw.flags", "dirty.out_nr_dirty", "check_iotlb.iotlb", "trigger_iopf.addr", "last"].map(at),
    [16, 24, 28, 32, 40, 40, 56, 20, 32, 64],
  );
});

test("the table holds 49 structs: 35 iommufd, 7 selftest, 7 VFIO type1", () => {
  const count = (h: string) => [...STRUCTS.values()].filter((s) => s.header === h).length;
  assert.equal(STRUCTS.size, 49);
  assert.deepEqual([count("iommufd"), count("selftest"), count("vfio")], [35, 7, 7]);
});
