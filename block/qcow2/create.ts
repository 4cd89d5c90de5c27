/** qemu-img create -f qcow2: lays out a new image exactly as QEMU 7.2 does. */
import type { Qcow2CreateOptions } from "./types.ts";

/** Creates a qcow2 image file. */
export function createQcow2(_filename: string, _opts: Qcow2CreateOptions): Promise<void> {
  return Promise.reject(new Error("qcow2: create not yet implemented"));
}
