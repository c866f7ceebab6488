/**
 * The kernel's fail-nth fault injection (lib/fault-inject.c, /proc/<pid>/task/<tid>/fail-nth).
 *
 * Each task has a counter. Writing N (> 0) arms it; every fault-injection point the task passes
 * (`should_fail()`: an allocation, iommufd_should_fail()) decrements it, and the point that brings
 * it to 0 fails. Reading gives the count still to go, so "0" means the injected failure fired;
 * writing 0 disarms it. The model's injection points call {@link shouldFail} / {@link failPoint};
 * they fail only while a task with an armed counter is current ({@link asTask}), so library users
 * who never arm a counter see no difference. Every point must leave everything as it was when it
 * fails (the caller's unwinding is the kernel's error path).
 */
import { fail, type ErrnoName } from "./errno.js";

/** One task's fail-nth counter (task_struct.fail_nth). */
export class FailNth {
  /** Injection points still to pass before one fails; 0 = disarmed (or the failure fired). */
  remaining = 0;
  /** How many injection points were passed while this task was current (a diagnostic). */
  passed = 0;

  /** proc_fail_nth_write: N > 0 arms, 0 disarms. */
  set(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new RangeError(`fail-nth: bad count ${n}`);
    this.remaining = n;
  }
}

let current: FailNth | null = null;

/** Run fn with `task` as the current task (the one whose counter the injection points consume). */
export function asTask<T>(task: FailNth | null, fn: () => T): T {
  const prev = current;
  current = task;
  try {
    return fn();
  } finally {
    current = prev;
  }
}

/**
 * Make `task` current and return the one it replaces, for a caller that restores it itself (the
 * socket server's request path, which avoids a try/finally per layer: an exception passing through
 * one costs about as much as the throw).
 */
export function swapTask(task: FailNth | null): FailNth | null {
  const prev = current;
  current = task;
  return prev;
}

/** The current task's counter, if any. */
export function currentTask(): FailNth | null {
  return current;
}

/** should_fail() at one injection point: true exactly when the current task's counter reaches 0 here. */
export function shouldFail(): boolean {
  const t = current;
  if (!t) return false;
  t.passed++;
  if (t.remaining === 0) return false;
  t.remaining--;
  return t.remaining === 0;
}

/** An injection point that fails with `errno` (ENOMEM for allocations) when {@link shouldFail} says so. */
export function failPoint(errno: ErrnoName, site: string): void {
  if (shouldFail()) fail(errno, `fault injection (fail-nth) at ${site}`);
}
