/** The doorbell file (server/bell.ts) and the RESULT frame's two encodings (server/protocol.ts). */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Bell, BellSlot, BELL_SLOTS, BELL_SLOT_BYTES } from "../../src/server/bell.js";
import { resultFrame } from "../../src/server/protocol.js";

test("a RESULT built from a number is byte for byte the one built from the same bigint", () => {
  fc.assert(
    fc.property(fc.oneof(fc.integer({ min: -4096, max: 4096 }), fc.maxSafeInteger(), fc.integer({ min: -(2 ** 31), max: 2 ** 32 })), (n) => {
      assert.deepEqual(resultFrame(n), resultFrame(BigInt(n)));
    }),
  );
  assert.deepEqual([...resultFrame(-2).subarray(8)], [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
});

function tmpBell(): { bell: Bell; file: string } {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "softiommu-bell-")), "sock.bell");
  const bell = Bell.create(file);
  assert.ok(bell);
  return { bell, file };
}

test("bell slots are handed out lowest first, reused after release, and run out after BELL_SLOTS", () => {
  const { bell, file } = tmpBell();
  try {
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(fs.statSync(file).size, BELL_SLOTS * BELL_SLOT_BYTES);
    const got = Array.from({ length: BELL_SLOTS }, () => bell.alloc());
    assert.deepEqual(got, Array.from({ length: BELL_SLOTS }, (_, i) => i));
    assert.equal(bell.alloc(), -1);
    bell.free(5);
    bell.free(2);
    assert.equal(bell.alloc(), 2);
    assert.equal(bell.alloc(), 5);
  } finally {
    bell.close();
  }
  assert.equal(fs.existsSync(file), false, "close removes the file");
});

test("a slot has rung exactly when another writer moved its counter since the last look", () => {
  const { bell, file } = tmpBell();
  const fd = fs.openSync(file, "r+");
  try {
    const ring = (slot: number, n: number): void => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(n >>> 0);
      fs.writeSync(fd, b, 0, 4, slot * BELL_SLOT_BYTES);
    };
    ring(1, 41); // a stale value from an earlier owner of slot 1
    bell.alloc();
    const s1 = new BellSlot(bell, bell.alloc());
    assert.equal(s1.slot, 1);
    assert.equal(s1.rang(), false, "the value found at allocation is not a ring");
    ring(1, 42);
    assert.equal(s1.rang(), true);
    assert.equal(s1.rang(), false);
    ring(0, 7); // someone else's slot
    assert.equal(s1.rang(), false);
    ring(1, 0xffffffff + 1); // the u32 wraps
    assert.equal(s1.rang(), true);
    s1.release();
    assert.equal(bell.alloc(), 1);
  } finally {
    fs.closeSync(fd);
    bell.close();
  }
});
