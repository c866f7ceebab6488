/**
 * server/: the socket server behind `softiommu serve` and `softiommu run` (one Host, many client
 * programs through the preload shim). See docs/design/shim-and-server.md.
 */
export { SoftiommuServer, defaultSocketPath, isAlive, ioctlName, jsonify, type ServerOptions, type ServerStats, type TraceRecord } from "./server.js";
export { CAPABILITIES, parseMaps, type Capability, type MapsEntry } from "./mirror.js";
export * as protocol from "./protocol.js";
