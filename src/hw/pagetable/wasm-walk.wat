;; The nested walk of PageTableEngine.nested4k in WebAssembly, over a FrameArena's memory.
;; Assembled by scripts/gen-wasm.mjs into wasm-walk-bytes.ts (test/hw/wasm-walk.test.ts checks the
;; two agree). The memory is the arena's: the slot table at byte 0 (one i32 per pfn below its
;; length, R_NSLOTS: the frame's first word, 0 for none), frames in 4 KiB slots after it.
;;
;; nested(v, r): a stage-1 walk of input page v (int32, 4 KiB granule, 9 index bits a level, entered
;; at the top level's shift) whose every table page and output go through a stage-2 walk of the
;; same kind; r is the byte address of a parameter record (the R_* word offsets of wasm-walk.ts),
;; which also receives the results. Returns the output page number (>= 0, below 2^31); -1 when
;; the walk is not for this path (an output from 2^31 up, anything the JavaScript paths check or
;; update: translateGeneric redoes it, faults included); -2 when a stage-1 table page is in a frame without a slot (its pfn at R_HP:
;; the caller moves the frame to the arena, if it can, and walks in JavaScript this time). It only
;; reads memory, and writes the record's results.
;;
;; It mirrors nested4k and lean4k with 64-bit entries: along each stage-2 walk and the stage-1
;; path the table entries are ANDed (every entry must have the lo bits of NT) and ORed (none may
;; have the hi bits of BT), and a leaf must have NL's bits among LB's; the stage-2 walks for table
;; reads are checked at the end (a walk that went wrong reads only memory: what it finds is thrown
;; away), before anything is reported. A table entry's frame is found as lean4k finds it,
;; slot[(lo >>> 12) | (hi << 20)], the slot table's entry for pfn 0 (zero) beyond the table's end.
(module
  (import "arena" "memory" (memory 1 65536 shared))

  ;; zero(at, len): bytes [at, at+len) of the arena set to zero, as memset does (a fill through a
  ;; typed array over a shared buffer moves one element at a time: 5x slower for a 4 KiB table).
  (func (export "zero") (param $at i32) (param $len i32)
    (memory.fill (local.get $at) (i32.const 0) (local.get $len)))

  (func (export "nested") (param $v i32) (param $r i32) (result i32)
    (local $sh i32) (local $w i32) (local $g i64) (local $e i64) (local $and1 i64) (local $or1 i64)
    (local $s i32) (local $e2 i64) (local $and2 i64) (local $or2 i64) (local $bad i64) (local $off i64)
    (local $fin i32) (local $hp i64) (local $ws i32) (local $top i32)
    (local $tm2 i64) (local $bt2 i64) (local $root2 i32) (local $sh2 i32) (local $top2 i32)
    (local $p i32) (local $ns i32)
    (local.set $sh (i32.load offset=4 (local.get $r)))
    (local.set $top (i32.shr_u (local.get $v) (local.get $sh)))
    (local.set $g (i64.extend_i32_u (i32.add (i32.load (local.get $r)) (i32.shr_u (local.get $top) (i32.const 9)))))
    (local.set $w (i32.shl (i32.and (local.get $top) (i32.const 511)) (i32.const 3)))
    (local.set $and1 (i64.const -1))
    (local.set $ns (i32.load offset=240 (local.get $r)))
    (local.set $root2 (i32.load offset=80 (local.get $r)))
    (local.set $sh2 (i32.load offset=84 (local.get $r)))
    (local.set $top2 (i32.load offset=88 (local.get $r)))
    (local.set $tm2 (i64.extend_i32_u (i32.load offset=92 (local.get $r))))
    (local.set $bt2 (i64.extend_i32_u (i32.load offset=96 (local.get $r))))
    (loop $level
      ;; Stage 2 of guest page g: below 2^31 and within its top level's entries.
      (if (i32.or (i64.gt_u (local.get $g) (i64.const 0x7fffffff))
                  (i32.ge_u (i32.shr_u (i32.wrap_i64 (local.get $g)) (local.get $sh2)) (local.get $top2)))
        (then (return (i32.const -1))))
      (local.set $s (local.get $sh2))
      (local.set $e2 (i64.load (i32.add (local.get $root2)
                                        (i32.shl (i32.shr_u (i32.wrap_i64 (local.get $g)) (local.get $s)) (i32.const 3)))))
      (local.set $and2 (i64.const -1))
      (local.set $or2 (i64.const 0))
      (block $walk
        (if (i32.eq (local.get $s) (i32.const 27))
          (then
            (br_if $walk (i64.eq (i64.and (local.get $e2) (local.get $tm2)) (local.get $bt2)))
            (local.set $and2 (i64.and (local.get $and2) (local.get $e2)))
            (local.set $or2 (i64.or (local.get $or2) (local.get $e2)))
            (local.set $e2 (i64.load (i32.add (i32.shl (i32.load (i32.shl (select (local.tee $p (i32.wrap_i64 (i64.shr_u (local.get $e2) (i64.const 12))))
                                                                (i32.const 0) (i32.lt_u (local.get $p) (local.get $ns)))
                                                        (i32.const 2)))
                                     (i32.const 2)) (i32.wrap_i64 (i64.and (i64.shr_u (local.get $g) (i64.const 15)) (i64.const 0xff8))))))
            (local.set $s (i32.const 18))))
        (if (i32.eq (local.get $s) (i32.const 18))
          (then
            (br_if $walk (i64.eq (i64.and (local.get $e2) (local.get $tm2)) (local.get $bt2)))
            (local.set $and2 (i64.and (local.get $and2) (local.get $e2)))
            (local.set $or2 (i64.or (local.get $or2) (local.get $e2)))
            (local.set $e2 (i64.load (i32.add (i32.shl (i32.load (i32.shl (select (local.tee $p (i32.wrap_i64 (i64.shr_u (local.get $e2) (i64.const 12))))
                                                                (i32.const 0) (i32.lt_u (local.get $p) (local.get $ns)))
                                                        (i32.const 2)))
                                     (i32.const 2)) (i32.wrap_i64 (i64.and (i64.shr_u (local.get $g) (i64.const 6)) (i64.const 0xff8))))))
            (local.set $s (i32.const 9))))
        (if (i32.eq (local.get $s) (i32.const 9))
          (then
            (br_if $walk (i64.eq (i64.and (local.get $e2) (local.get $tm2)) (local.get $bt2)))
            (local.set $and2 (i64.and (local.get $and2) (local.get $e2)))
            (local.set $or2 (i64.or (local.get $or2) (local.get $e2)))
            (local.set $e2 (i64.load (i32.add (i32.shl (i32.load (i32.shl (select (local.tee $p (i32.wrap_i64 (i64.shr_u (local.get $e2) (i64.const 12))))
                                                                (i32.const 0) (i32.lt_u (local.get $p) (local.get $ns)))
                                                        (i32.const 2)))
                                     (i32.const 2)) (i32.wrap_i64 (i64.and (i64.shl (local.get $g) (i64.const 3)) (i64.const 0xff8))))))
            (local.set $s (i32.const 0))))
      )
      ;; Stage 2's leaf: of its level's type (a page at the last level, a block where blocks may be).
      (if (if (result i32) (i32.eqz (local.get $s))
            (then (i64.ne (i64.and (local.get $e2) (i64.extend_i32_u (i32.load offset=100 (local.get $r)))) (i64.extend_i32_u (i32.load offset=104 (local.get $r)))))
            (else (i32.eqz (i32.and (i32.shr_u (i32.load offset=108 (local.get $r)) (local.get $s)) (i32.const 1)))))
        (then (local.set $bad (i64.const -1))))
      (local.set $off (i64.sub (i64.shl (i64.const 1) (i64.extend_i32_u (local.get $s))) (i64.const 1)))
      (local.set $hp (i64.or (i64.and (i64.shr_u (i64.and (local.get $e2) (i64.load offset=112 (local.get $r))) (i64.const 12))
                                      (i64.xor (local.get $off) (i64.const -1)))
                             (i64.and (local.get $g) (local.get $off))))
      (if (local.get $fin)
        (then
          ;; The output's stage-2 walk, with the masks of the access; then all the table reads'.
          (if (i64.ne (i64.or (local.get $bad)
                (i64.or
                  (i64.or (i64.and (i64.xor (local.get $and2) (i64.const -1)) (i64.load offset=152 (local.get $r)))
                          (i64.and (local.get $or2) (i64.load offset=160 (local.get $r))))
                  (i64.and (i64.xor (local.get $e2) (i64.load offset=168 (local.get $r))) (i64.load offset=176 (local.get $r)))))
                (i64.const 0))
            (then (return (i32.const -1))))
          (i32.store offset=192 (local.get $r) (local.get $sh))
          (i32.store offset=196 (local.get $r) (i32.wrap_i64 (local.get $and1)))
          (i32.store offset=200 (local.get $r) (i32.wrap_i64 (i64.shr_u (local.get $or1) (i64.const 32))))
          (i64.store offset=204 (local.get $r) (local.get $e))
          (i32.store offset=212 (local.get $r) (local.get $s))
          (i32.store offset=216 (local.get $r) (i32.wrap_i64 (local.get $and2)))
          (i32.store offset=220 (local.get $r) (i32.wrap_i64 (i64.shr_u (local.get $or2) (i64.const 32))))
          (i64.store offset=224 (local.get $r) (local.get $e2))
          (if (i64.gt_u (local.get $hp) (i64.const 0x7fffffff)) (then (return (i32.const -1))))
          (return (i32.wrap_i64 (local.get $hp)))))
      ;; A stage-1 table read: stage 2's read masks (checked with the rest at the end).
      (local.set $bad (i64.or (local.get $bad)
        (i64.or
          (i64.or (i64.and (i64.xor (local.get $and2) (i64.const -1)) (i64.load offset=120 (local.get $r)))
                  (i64.and (local.get $or2) (i64.load offset=128 (local.get $r))))
          (i64.and (i64.xor (local.get $e2) (i64.load offset=136 (local.get $r))) (i64.load offset=144 (local.get $r))))))
      ;; The stage-1 table's frame: it must have a slot.
      (if (i64.ge_u (local.get $hp) (i64.extend_i32_u (local.get $ns))) (then (return (i32.const -1))))
      (local.set $ws (i32.load (i32.shl (i32.wrap_i64 (local.get $hp)) (i32.const 2))))
      (if (i32.eqz (local.get $ws))
        (then
          (if (i64.ne (local.get $bad) (i64.const 0)) (then (return (i32.const -1))))
          (i32.store offset=232 (local.get $r) (i32.wrap_i64 (local.get $hp)))
          (return (i32.const -2))))
      (local.set $e (i64.load (i32.add (i32.shl (local.get $ws) (i32.const 2)) (local.get $w))))
      (if (i64.eqz (i64.and (local.get $e) (i64.extend_i32_u (i32.load offset=8 (local.get $r))))) (then (return (i32.const -1))))
      (if (i32.or (i32.eqz (local.get $sh)) (i64.eq (i64.and (local.get $e) (i64.extend_i32_u (i32.load offset=12 (local.get $r)))) (i64.extend_i32_u (i32.load offset=16 (local.get $r)))))
        (then
          ;; Stage 1's leaf: its type, then the path's and the leaf's masks.
          (if (if (result i32) (local.get $sh)
                (then (i32.eqz (i32.and (i32.shr_u (i32.load offset=28 (local.get $r)) (local.get $sh)) (i32.const 1))))
                (else (i64.ne (i64.and (local.get $e) (i64.extend_i32_u (i32.load offset=20 (local.get $r))))
                              (i64.extend_i32_u (i32.load offset=24 (local.get $r))))))
            (then (return (i32.const -1))))
          (if (i64.ne
                (i64.or
                  (i64.or (i64.and (i64.xor (local.get $and1) (i64.const -1)) (i64.load offset=40 (local.get $r)))
                          (i64.and (local.get $or1) (i64.load offset=48 (local.get $r))))
                  (i64.and (i64.xor (local.get $e) (i64.load offset=56 (local.get $r))) (i64.load offset=64 (local.get $r))))
                (i64.const 0))
            (then (return (i32.const -1))))
          (local.set $off (i64.sub (i64.shl (i64.const 1) (i64.extend_i32_u (local.get $sh))) (i64.const 1)))
          (local.set $g (i64.or (i64.and (i64.shr_u (i64.and (local.get $e) (i64.load offset=72 (local.get $r))) (i64.const 12))
                                         (i64.xor (local.get $off) (i64.const -1)))
                                (i64.and (i64.extend_i32_u (local.get $v)) (local.get $off))))
          (local.set $fin (i32.const 1))
          (br $level)))
      ;; A stage-1 table entry: on to the next level.
      (local.set $and1 (i64.and (local.get $and1) (local.get $e)))
      (local.set $or1 (i64.or (local.get $or1) (local.get $e)))
      (local.set $g (i64.shr_u (i64.and (local.get $e) (i64.load offset=32 (local.get $r))) (i64.const 12)))
      (local.set $sh (i32.sub (local.get $sh) (i32.const 9)))
      (local.set $w (i32.shl (i32.and (i32.shr_u (local.get $v) (local.get $sh)) (i32.const 511)) (i32.const 3)))
      (br $level))
    (unreachable))

)
