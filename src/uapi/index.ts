/**
 * uapi/: the binary uAPI of /dev/iommu. One table of struct definitions with byte-exact codecs
 * (structs.ts, layout.ts), the constants (constants.ts), the ioctl table with the kernel's
 * dispatch rules (ioctl.ts) and the C headers generated from the same tables (c-header.ts).
 */
export * from "./structs.js";
export * from "./constants.js";
export * from "./ioctl.js";
export { renderHeaders } from "./c-header.js";
