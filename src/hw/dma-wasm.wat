;; A hardware unit's common DMA in WebAssembly, over a PhysMem's data memory (mm/data-memory.ts):
;; one page's piece, to or from a device buffer in the same memory, through an IOTLB hit on a
;; 4 KiB entry to a frame that has contents in a slab slot. Anything else returns -1 and the
;; unit's JavaScript path does the DMA (with the same result: it makes the same checks, and more).
;;
;; dma(rec, k1, k2, vpn, off, len, buf, write) -> len, or -1
;;   rec    byte address of the unit's record (words: slotMask, then the byte offsets of the
;;          IOTLB's arrays used, k1, k2, vpn, size, ppn, perms, of its hit counter, and of the
;;          hint array; see hw/iotlb.ts IotlbPlacement)
;;   k1, k2 the IOTLB key (VT-d: source-id, PASID)
;;   vpn    the input page (an integer below 2^52; the caller checked)
;;   off, len  the piece within the page (the caller checked off + len <= 4096, len > 0)
;;   buf    byte address of the device buffer's bytes (the caller checked buf + len is inside it)
;;   write  1: the device writes memory (buf -> frame), 0: it reads (frame -> buf)
;;
;; The lookup is Iotlb.lookup's for size class 0: the same hash of (k1, k2, vpn, 0), linear probing
;; from the home slot while slots are used; an entry matches on vpn, k1, k2 and class 0. A hit needs
;; the permissions the JavaScript path needs (write: ACC_WRITE | ACC_USER = 10, read: ACC_READ |
;; ACC_USER = 9). The output frame's slot comes from the slot table at byte 0 (2^18 entries, by
;; pfn - 4096); slots 1 .. DATA_SLOTS - 1 are at DATA_AT + slot * 4096. The slot table's entries
;; of a guest's frames are scattered (a read that misses the cache on the DMA's critical path), so
;; the slot found is kept as the entry's hint and used next time once the slot owners (at
;; SLOT_OWNER_AT, by slot: the pfn it holds) confirm it still holds this frame.
(module
  (import "e" "m" (memory 1024 1024))
  (func (export "dma") (param $rec i32) (param $k1 i32) (param $k2 i32) (param $vpn f64)
    (param $off i32) (param $len i32) (param $buf i32) (param $write i32) (result i32)
    (local $v i64) (local $h i32) (local $mask i32) (local $j i32) (local $need i32)
    (local $ppn f64) (local $s i32) (local $frame i32) (local $pfn i32) (local $ha i32)
    (local.set $v (i64.trunc_f64_u (local.get $vpn)))
    ;; h = lo(vpn) ^ imul(hi(vpn) ^ k2, 0x27d4eb2d) ^ imul(k1 ^ (0 << 24), 0x85ebca6b)
    (local.set $h
      (i32.xor
        (i32.xor
          (i32.wrap_i64 (local.get $v))
          (i32.mul (i32.xor (i32.wrap_i64 (i64.shr_u (local.get $v) (i64.const 32))) (local.get $k2)) (i32.const 0x27d4eb2d)))
        (i32.mul (local.get $k1) (i32.const 0x85ebca6b))))
    (local.set $h (i32.mul (i32.xor (local.get $h) (i32.shr_u (local.get $h) (i32.const 15))) (i32.const 0x2c1b3c6d)))
    (local.set $mask (i32.load (local.get $rec)))
    (local.set $j (i32.and (i32.xor (local.get $h) (i32.shr_u (local.get $h) (i32.const 13))) (local.get $mask)))
    (block $hit
      (loop $probe
        ;; an unused slot ends the probe: no 4 KiB entry
        (if (i32.eqz (i32.load8_u (i32.add (i32.load offset=4 (local.get $rec)) (local.get $j))))
          (then (return (i32.const -1))))
        (br_if $hit
          (i32.and
            (i32.and
              (f64.eq (f64.load (i32.add (i32.load offset=16 (local.get $rec)) (i32.shl (local.get $j) (i32.const 3)))) (local.get $vpn))
              (i32.eq (i32.load (i32.add (i32.load offset=8 (local.get $rec)) (i32.shl (local.get $j) (i32.const 2)))) (local.get $k1)))
            (i32.and
              (i32.eq (i32.load (i32.add (i32.load offset=12 (local.get $rec)) (i32.shl (local.get $j) (i32.const 2)))) (local.get $k2))
              (i32.eqz (i32.load8_u (i32.add (i32.load offset=20 (local.get $rec)) (local.get $j)))))))
        (local.set $j (i32.and (i32.add (local.get $j) (i32.const 1)) (local.get $mask)))
        (br $probe)))
    ;; the permissions the access needs
    (local.set $need (select (i32.const 10) (i32.const 9) (local.get $write)))
    (if (i32.ne (i32.and (i32.load8_u (i32.add (i32.load offset=28 (local.get $rec)) (local.get $j))) (local.get $need)) (local.get $need))
      (then (return (i32.const -1))))
    ;; the output frame (class 0: the entry's ppn itself), in the slot table's reach
    (local.set $ppn (f64.load (i32.add (i32.load offset=24 (local.get $rec)) (i32.shl (local.get $j) (i32.const 3)))))
    (if (i32.or (f64.lt (local.get $ppn) (f64.const 4096)) (f64.ge (local.get $ppn) (f64.const 266240)))
      (then (return (i32.const -1))))
    (local.set $pfn (i32.trunc_f64_u (local.get $ppn)))
    ;; the entry's hint, if slot owners (SLOT_OWNER_AT = 1 MiB) say it holds this pfn (DATA_SLOTS = 15360)
    (local.set $ha (i32.add (i32.load offset=36 (local.get $rec)) (i32.shl (local.get $j) (i32.const 2))))
    (local.set $s (i32.load (local.get $ha)))
    (if (i32.or (i32.ge_u (local.get $s) (i32.const 15360))
                (i32.ne (i32.load (i32.add (i32.const 0x100000) (i32.shl (local.get $s) (i32.const 2)))) (local.get $pfn)))
      (then
        ;; else the slot table (0: the frame has no contents in a slab)
        (local.set $s (i32.load (i32.shl (i32.sub (local.get $pfn) (i32.const 4096)) (i32.const 2))))
        (if (i32.or (i32.eqz (local.get $s)) (i32.ge_u (local.get $s) (i32.const 15360)))
          (then (return (i32.const -1))))
        (i32.store (local.get $ha) (local.get $s))))
    (local.set $frame (i32.add (i32.add (i32.const 0x400000) (i32.shl (local.get $s) (i32.const 12))) (local.get $off)))
    (if (local.get $write)
      (then (memory.copy (local.get $frame) (local.get $buf) (local.get $len)))
      (else (memory.copy (local.get $buf) (local.get $frame) (local.get $len))))
    ;; count the hit where the IOTLB's stats find it
    (f64.store (i32.load offset=32 (local.get $rec))
      (f64.add (f64.load (i32.load offset=32 (local.get $rec))) (f64.const 1)))
    (local.get $len)))
