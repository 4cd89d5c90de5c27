/**
 * qemu-io: exercise a disk image with read/write/alloc/map/... commands, as QEMU 7.2's does.
 * The commands live in tools/qemu_io/ so tests can run them directly.
 */
import { qemuIoMain } from "./qemu_io/cli.ts";

if (import.meta.main) Deno.exit(await qemuIoMain(Deno.args));
