/**
 * Direct Linux boot (-kernel, -initrd, -append) by the x86 boot protocol, with demu's own stub
 * kernel (tests/guests/pc/linux_stub.asm): it prints its command line and the start of its
 * initrd from boot_params, then powers off through the ACPI tables. demu under the interpreter
 * and under KVM must print what the real QEMU prints (QEMU enters through the setup code, demu
 * through the 32-bit entry). Loader errors are QEMU's.
 */
import { ok, strictEqual } from "node:assert/strict";
import { buildLinuxStub, haveNasm } from "./guests/pc/build.ts";
import { haveCommand, haveKvm, plain, runDemu, runUntil } from "./guests/pc/run.ts";

const NASM = haveNasm();
const KVM = haveKvm();
const QEMU = haveCommand("qemu-system-x86_64");
if (!NASM) console.warn("WARNING: nasm is not installed: skipping the -kernel boots");
if (!KVM) console.warn("WARNING: /dev/kvm is not accessible: -kernel under KVM skipped");
if (!QEMU) console.warn("WARNING: qemu-system-x86_64 is not installed: no comparison with QEMU");

const APPEND = "console=ttyS0 demu=direct-boot";
const EXPECTED = `LINUX-STUB cmdline=[${APPEND}] initrd=[INITRD-012345678]\r\n`;
const ARGS = ["-display", "none", "-serial", "stdio", "-nic", "none", "-no-reboot"];

for (const accel of ["tcg", "kvm"]) {
  Deno.test({
    name: `linux: -kernel/-initrd/-append under ${accel} prints what QEMU's guest prints`,
    ignore: !NASM || (accel === "kvm" && !KVM),
    async fn() {
      await using stub = await buildLinuxStub();
      const { kernel, initrd } = stub;
      const boot = ["-kernel", kernel, "-initrd", initrd, "-append", APPEND];
      const d = await runDemu(["-accel", accel, ...ARGS, ...boot], { timeoutMs: 30000 });
      strictEqual(d.code, 0, d.stderr);
      strictEqual(plain(d.stdout), EXPECTED);
      if (QEMU && (accel === "tcg" || KVM)) {
        const q = await runUntil("qemu-system-x86_64", ["-accel", accel, ...ARGS, ...boot], {
          timeoutMs: 30000,
        });
        strictEqual(q.code, 0, q.stderr);
        strictEqual(plain(q.stdout), plain(d.stdout));
      }
    },
  });
}

Deno.test("linux: loader errors in QEMU's words", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const notKernel = `${dir}/not-a-kernel`;
    await Deno.writeTextFile(notKernel, "hello\n");
    const cases: [string[], string][] = [
      [["-initrd", "x"], "qemu-system-x86_64: -initrd only allowed with -kernel option"],
      [["-append", "x"], "qemu-system-x86_64: -append only allowed with -kernel option"],
      [
        ["-kernel", `${dir}/missing`],
        `qemu: could not open kernel file '${dir}/missing': No such file or directory`,
      ],
      [["-kernel", notKernel], "qemu: invalid kernel header"],
    ];
    for (const [args, expected] of cases) {
      const d = await runDemu(["-display", "none", ...args], { timeoutMs: 20000 });
      strictEqual(d.code, 1);
      strictEqual(d.stderr.trim(), expected);
      if (QEMU) {
        const q = await runUntil("qemu-system-x86_64", ["-display", "none", ...args], {
          timeoutMs: 20000,
        });
        strictEqual(q.code, 1);
        ok(q.stderr.trim().endsWith(expected), `QEMU said: ${q.stderr}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
