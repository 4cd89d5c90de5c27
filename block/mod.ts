/**
 * Disk images: the BlockDriver interface, the file protocol, the raw format and image opening.
 * qcow2 and nbd:// register themselves here as they land.
 */
export * from "./types.ts";
export * from "./file.ts";
export * from "./raw.ts";
export * from "./open.ts";
export * from "./nbd/mod.ts";
export * from "./qcow2/mod.ts";
export * from "./qcow2/check.ts";

import { registerFormat } from "./open.ts";
import { openQcow2, probeQcow2 } from "./qcow2/mod.ts";
registerFormat("qcow2", openQcow2, probeQcow2);
