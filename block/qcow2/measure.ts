/** qemu-img measure for qcow2: the file size an image needs, as QEMU computes it. */
import type { BlockDriver } from "../types.ts";
import type { Qcow2CreateOptions, Qcow2Measure } from "./types.ts";

/** Measures the space a qcow2 image with these options (and this source's data) needs. */
export function measureQcow2(
  _opts: Qcow2CreateOptions,
  _source?: BlockDriver,
): Promise<Qcow2Measure> {
  return Promise.reject(new Error("qcow2: measure not yet implemented"));
}
