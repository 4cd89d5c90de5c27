/**
 * The qcow2 format driver: QEMU's copy-on-write image format, versions 2 and 3.
 *
 * - format.ts: on-disk structures (header, extensions, snapshot table, entries)
 * - image.ts: {@link Qcow2Format}, the BlockDriver over an open image
 * - create.ts, measure.ts, compress.ts: qemu-img create / measure, cluster compression
 */
import { Qcow2Format } from "./image.ts";
import type { BlockDriver } from "../types.ts";
import type { OpenOptions } from "../open.ts";

export * from "./format.ts";
export * from "./types.ts";
export * from "./compress.ts";
export { Qcow2Format } from "./image.ts";
export { createQcow2 } from "./create.ts";
export { measureQcow2 } from "./measure.ts";

/** The FormatOpener registered as "qcow2". */
export function openQcow2(file: BlockDriver, opts: OpenOptions): Promise<BlockDriver> {
  return Qcow2Format.open(file, opts);
}
