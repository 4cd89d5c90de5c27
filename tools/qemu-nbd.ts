/**
 * qemu-nbd: serve a disk image over NBD, or list a server's exports (-L), as QEMU 7.2's does.
 * The work lives in tools/qemu_nbd/ (NbdServer, the CLI) so tests can call it directly.
 */
import { qemuNbdMain } from "./qemu_nbd/cli.ts";

if (import.meta.main) Deno.exit(await qemuNbdMain(Deno.args));
