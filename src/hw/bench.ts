/**
 * Micro-benchmarks of the hardware walk, for bench/run.ts. The model never reads a clock, so the
 * caller passes one (e.g. `() => performance.now()`, milliseconds).
 *
 *   walk_4level_ns: benchWalk4Level(now)   random 4 KiB translations, each a full 4-level walk
 *   walk_nested_ns: benchWalkNested(now)   the same through a 4-level stage 1 over a 4-level stage 2
 *   walk_c_ns:      bench/c/walk.c         benchWalk4Level's walk in C (walk4LevelShape: what it must match;
 *                                          walk4LevelRounds: the model's rounds to alternate with its)
 *
 * In bench/run.ts:  import { benchWalk4Level } from "../src/hw/index.js";
 *                   walk_4level_ns: benchWalk4Level(() => performance.now())
 */
import { PhysMem } from "../mm/phys.js";
import { HwMemory, WindowFrameStore } from "./memory.js";
import { PageTableEngine } from "./pagetable/engine.js";
import { ACC_READ, PT_ACCESSED, PT_READ, PT_WRITE, vtdFirstStage, vtdSecondStage } from "./pagetable/format.js";

export type Clock = () => number;

const CHUNK = 512; // 4 KiB pages per 2 MiB chunk
const SAMPLES = 1 << 16;

/** A seeded generator (xorshift32): the benchmark is the same every run. */
function rng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/**
 * `chunks` distinct 2 MiB-aligned input chunks spread over the low 8 TiB (IOVA < 2^43: where VMMs
 * put guest RAM; page numbers stay small integers for V8), and SAMPLES pages in them (int32, as
 * bench/c/walk.c keeps its samples in integers).
 */
function layout(chunks: number, seed: number): { bases: number[]; samples: Int32Array } {
  const r = rng(seed);
  const seen = new Set<number>();
  const bases: number[] = [];
  while (bases.length < chunks) {
    const c = Math.floor(r() * 2 ** 22); // 2^22 chunks of 2 MiB = 2^43 bytes
    if (seen.has(c)) continue;
    seen.add(c);
    bases.push(c * CHUNK);
  }
  const samples = new Int32Array(SAMPLES);
  for (let i = 0; i < SAMPLES; i++) samples[i] = bases[Math.floor(r() * chunks)] + Math.floor(r() * CHUNK);
  return { bases, samples };
}

/**
 * One timed pass: every sample translated 8 times for a read; returns a checksum. A function of
 * its own, so that it is compiled once and stays compiled: the loop around it (clock reads, the
 * figures' array) may deoptimize while warming up without sending a pass back to the interpreter
 * for part of a round (on-stack replacement into a fresh compile of a long loop took rounds from
 * ~25 to 60-190 ns a walk here). The access is an argument, as bench/c/walk.c reads it once per
 * round (an imported constant is a load and a check on every use).
 */
function pass(engine: PageTableEngine, samples: Int32Array, access: number): number {
  let sink = 0;
  for (let k = 0; k < 8; k++) {
    for (let i = 0; i < SAMPLES; i++) sink = (sink + engine.translate(samples[i], access)) | 0;
  }
  return sink;
}

function timeLoop(engine: PageTableEngine, samples: Int32Array, now: Clock, rounds: number): number {
  const per = new Float64Array(rounds);
  let sink = 0;
  for (let r = 0; r < rounds; r++) {
    const t0 = now();
    sink ^= pass(engine, samples, ACC_READ);
    per[r] = ((now() - t0) * 1e6) / (8 * SAMPLES);
  }
  if (sink === 0.5) throw new Error("unreachable");
  per.sort();
  return per[rounds >> 1];
}

/**
 * The table benchWalk4Level walks: a VT-d second-stage 4-level table holding 1 GiB of 4 KiB leaves
 * in 512 chunks of 2 MiB spread over 8 TiB (16 top-level entries, almost every chunk its own
 * level-3 and level-2 table), all mapping the same 512 data pages; and the samples. Its table
 * frames are in PhysMem's FrameArena (bench/c/walk.c keeps its tables in one block the same way).
 */
function setup4Level(): { eng: PageTableEngine; samples: Int32Array } {
  const mem = new HwMemory(new PhysMem());
  const eng = new PageTableEngine(mem, vtdSecondStage({ addressWidth: 48 }));
  const { bases, samples } = layout(512, 0x5eed);
  const data = mem.phys.allocRun(CHUNK + 1) + 1; // not 2 MiB aligned: 4 KiB leaves only
  for (const b of bases) eng.map(b, data, CHUNK, PT_READ | PT_WRITE);
  return { eng, samples };
}

/**
 * ns per translation of a random mapped 4 KiB page with no cache in front (setup4Level's table, 4
 * entry reads a walk). Median of `rounds` rounds of 512 Ki walks.
 */
export function benchWalk4Level(now: Clock, rounds = 9): number {
  const { eng, samples } = setup4Level();
  for (let i = 0; i < SAMPLES; i++) if (eng.translate(samples[i], ACC_READ) < 0) throw new Error("bench: unmapped sample");
  timeLoop(eng, samples, now, 2); // warm up
  return timeLoop(eng, samples, now, rounds);
}

/**
 * benchWalk4Level's walk one round at a time, for bench/run.ts to alternate with bench/c/walk.c's
 * rounds (this VM's speed drifts within seconds: figures taken apart measure the drift). Builds
 * and warms the table; each call of the result times one round of 512 Ki walks, ns per walk.
 */
export function walk4LevelRounds(now: Clock): () => number {
  const { eng, samples } = setup4Level();
  for (let i = 0; i < SAMPLES; i++) if (eng.translate(samples[i], ACC_READ) < 0) throw new Error("bench: unmapped sample");
  timeLoop(eng, samples, now, 2); // warm up
  let sink = 0;
  return () => {
    const t0 = now();
    sink ^= pass(eng, samples, ACC_READ);
    const ns = ((now() - t0) * 1e6) / (8 * SAMPLES);
    if (sink === 0.5) throw new Error("unreachable");
    return ns;
  };
}

/**
 * What bench/c/walk.c must reproduce to measure the same walk: the sum of the output page numbers
 * of one pass over benchWalk4Level's samples (same samples, same table contents) and the number of
 * page-table frames (same table shape).
 */
export function walk4LevelShape(): { checksum: number; tables: number } {
  const { eng, samples } = setup4Level();
  let checksum = 0;
  for (let i = 0; i < SAMPLES; i++) checksum += eng.translate(samples[i], ACC_READ);
  return { checksum, tables: eng.tablePages };
}

/**
 * ns per nested translation: a 4-level first-stage table (x86 format, built in guest memory) over a
 * 4-level second stage mapping the guest's 64 MiB of RAM with 4 KiB leaves; every stage-1 table
 * read and the output go through a full stage-2 walk (24 entry reads per translation).
 */
export function benchWalkNested(now: Clock, rounds = 9): number {
  const mem = new HwMemory(new PhysMem());
  const ramPages = 16384;
  const gBase = 0x100000; // guest RAM at GPA 4 GiB
  const hBase = mem.phys.allocRun(ramPages);
  const s2 = new PageTableEngine(mem, vtdSecondStage({ addressWidth: 48, largePages2M: false, largePages1G: false }));
  s2.map(gBase, hBase, ramPages, PT_READ | PT_WRITE);
  const guest = new WindowFrameStore(mem, gBase, hBase, ramPages);
  const s1 = new PageTableEngine(guest, vtdFirstStage({ levels: 4 }));
  const { bases, samples } = layout(256, 0x1e57);
  const dataBase = gBase + 4097; // guest data pages after the table area, not 2 MiB aligned
  const dataPages = ramPages - 4097 - CHUNK;
  bases.forEach((b, k) => s1.map(b, dataBase + ((k * CHUNK) % dataPages), CHUNK, PT_READ | PT_WRITE | PT_ACCESSED));
  s1.setStage2(s2);
  for (let i = 0; i < SAMPLES; i++) if (s1.translate(samples[i], ACC_READ) < 0) throw new Error("bench: unmapped sample");
  timeLoop(s1, samples, now, 2);
  return timeLoop(s1, samples, now, rounds);
}
