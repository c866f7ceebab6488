/** SMMUv3 data formats: STE, CD, L1 descriptors, commands, events, PRI entries, IDRs, nesting rules. */
export * from "./tables.js";
export * from "./cmdq.js";
export * from "./events.js";
export * from "./regs.js";
export * from "./nesting.js";
