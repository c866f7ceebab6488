/** VT-d data formats: translation-structure entries, queued-invalidation descriptors, registers. */
export * from "./tables.js";
export * from "./qi.js";
export * from "./regs.js";
export {
  Layout,
  defineLayout,
  bit,
  bits,
  split,
  addr,
  bigBits,
  bigAddr,
  bytesToWords,
  wordsToBytes,
  qwordsToWords,
  wordsToQwords,
  hiLo,
  type Value,
  type FieldDef,
  type FieldMap,
  type NumAccessor,
  type BigAccessor,
} from "../bitlayout.js";
