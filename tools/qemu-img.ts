/**
 * qemu-img: create, inspect, check, convert and modify disk images, with QEMU 7.2's command
 * line and output. The work happens in ./qemu_img/; this file is the program.
 */
import { consoleIo, type Io } from "./qemu_img/cli.ts";
import { run } from "./qemu_img/main.ts";

/** Runs qemu-img with `args`; returns the exit code (tests call this directly). */
export function main(args: string[], io: Io = consoleIo()): Promise<number> {
  return run(args, io);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
