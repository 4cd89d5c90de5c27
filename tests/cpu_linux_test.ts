/**
 * Opt-in: a 32-bit Debian kernel (e.g. linux-image-6.1.0-*-686, its /boot/vmlinuz-*) boots on
 * the interpreter with the PC devices and reaches the expected "VFS: Unable to mount root fs"
 * panic (no disk, no initrd) with no CPU faults on the way. Takes minutes, so it runs only when
 * DEMU_I386_KERNEL names the bzImage:
 *
 *     DEMU_I386_KERNEL=/path/to/vmlinuz deno test -A tests/cpu_linux_test.ts
 */

import { ok } from "node:assert/strict";

const kernel = Deno.env.get("DEMU_I386_KERNEL");
if (!kernel) {
  console.warn(
    "WARNING: DEMU_I386_KERNEL not set: 32-bit Linux boot test skipped (see its header)",
  );
}

Deno.test({
  name: "cpu: a 32-bit Linux kernel boots to the root-mount panic on the interpreter",
  ignore: !kernel,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "demu-cpu-linux-" });
    try {
      const log = `${dir}/serial.log`;
      const main = new URL("../emu/main.ts", import.meta.url).pathname;
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          main,
          "-kernel",
          kernel!,
          "-append",
          "console=ttyS0 panic=1",
          "-display",
          "none",
          "-serial",
          `file:${log}`,
          "-m",
          "128",
          "-no-reboot",
        ],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), 1_500_000);
      const out = await child.output();
      clearTimeout(timer);
      const text = await Deno.readTextFile(log).catch(() => "");
      const tail = text.slice(-3000);
      ok(
        text.includes("Linux version"),
        `no kernel banner: ${new TextDecoder().decode(out.stderr)}`,
      );
      ok(text.includes("VFS: Unable to mount root fs"), `did not reach the root mount:\n${tail}`);
      for (
        const bad of ["invalid opcode", "general protection fault", "BUG:", "WARNING:", "Oops"]
      ) {
        ok(!text.includes(bad), `"${bad}" in the kernel log:\n${tail}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
