/**
 * Disk images: the BlockDriver interface, the file protocol, the raw format and image opening.
 * qcow2 and nbd:// register themselves here as they land.
 */
export * from "./types.ts";
export * from "./file.ts";
export * from "./raw.ts";
export * from "./open.ts";
