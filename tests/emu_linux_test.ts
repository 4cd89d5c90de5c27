/**
 * The Linux guests of the PC issue, on demu's interpreter: an isolinux CD with Debian's i386
 * kernel and a busybox initramfs (tests/guests/linux/build.ts) boots to userspace, prints its
 * marker on ttyS0 and powers off through ACPI (exit 0); with -hda disk.qcow2 it makes a
 * filesystem and writes a file that a second boot finds, and the real `qemu-img check` passes;
 * with -snapshot the same writes leave the image byte-identical.
 *
 * The guest is built from apt packages (see the builder); without them the tests are skipped
 * with a warning.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { buildLinuxGuest, DISK_TEXT, MARKER, missingInputs } from "./guests/linux/build.ts";
import { haveCommand, runDemu, type RunResult } from "./guests/pc/run.ts";

const WHY = missingInputs();
if (WHY) {
  console.warn(`WARNING: the Linux test guest cannot be built (${WHY}): Linux boots skipped`);
}
const QEMU_IMG = haveCommand("qemu-img");
if (!QEMU_IMG) console.warn("WARNING: qemu-img is not installed: the disk boots are skipped");

/**
 * demu's interpreter does not reach the guest's userspace yet: after "evm: HMAC attrs" (the end
 * of the kernel's late initcalls, before /init runs) it spins for minutes where QEMU TCG takes
 * ~3 s. Until that is fixed the cases below are skipped loudly (set DEMU_LINUX_TRY=1 to run
 * them anyway) (the bench, tests/bench/emu_boot_bench.ts, shows where it stands).
 */
const DEMU_REACHES_USERSPACE = Deno.env.get("DEMU_LINUX_TRY") === "1";
if (!DEMU_REACHES_USERSPACE) {
  console.warn(
    "WARNING: demu's interpreter does not yet boot the Linux test guest to userspace " +
      "(stalls after the kernel's late initcalls): the Linux boot cases are ignored",
  );
}

/** One boot may take minutes on the interpreter, more on a loaded machine. */
const BOOT_MS = 15 * 60_000;
const ARGS = ["-nographic", "-no-reboot", "-nic", "none", "-m", "128"];

function explain(r: RunResult): string {
  return `exit ${r.code}${r.timedOut ? " (timed out)" : ""}; stderr: ${r.stderr.slice(-1500)}\n` +
    `serial tail:\n${r.stdout.slice(-3000)}`;
}

async function qemuImg(args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command("qemu-img", { args, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
}

async function boot(iso: string, extra: string[]): Promise<RunResult> {
  return await runDemu(["-cdrom", iso, ...ARGS, ...extra], { timeoutMs: BOOT_MS });
}

Deno.test({
  name: "linux: the isolinux CD boots to userspace on the interpreter and powers off (exit 0)",
  ignore: WHY !== null || !DEMU_REACHES_USERSPACE,
  async fn() {
    const g = await buildLinuxGuest();
    const r = await boot(g.iso, []);
    ok(r.stdout.includes(MARKER), `no marker: ${explain(r)}`);
    ok(r.stdout.includes("DEMU-DISK: none"), `the guest saw a disk: ${explain(r)}`);
    ok(r.stdout.includes("reboot: Power down"), `no ACPI power-off: ${explain(r)}`);
    strictEqual(r.code, 0, explain(r));
  },
});

Deno.test({
  name: "linux: -hda disk.qcow2: the guest writes a filesystem and a file, a second boot finds it",
  ignore: WHY !== null || !QEMU_IMG || !DEMU_REACHES_USERSPACE,
  async fn() {
    const g = await buildLinuxGuest();
    const dir = await Deno.makeTempDir({ prefix: "demu-linux-disk-" });
    try {
      const disk = `${dir}/disk.qcow2`;
      strictEqual((await qemuImg(["create", "-q", "-f", "qcow2", disk, "64M"])).code, 0);
      const first = await boot(g.iso, ["-hda", disk]);
      ok(first.stdout.includes(`DEMU-DISK: wrote ${DISK_TEXT}`), `no write: ${explain(first)}`);
      strictEqual(first.code, 0, explain(first));
      const second = await boot(g.iso, ["-hda", disk]);
      ok(second.stdout.includes(`DEMU-DISK: found ${DISK_TEXT}`), `not found: ${explain(second)}`);
      strictEqual(second.code, 0, explain(second));
      const check = await qemuImg(["check", disk]);
      strictEqual(check.code, 0, check.out);
      ok(check.out.includes("No errors were found"), check.out);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "linux: -snapshot: the guest's writes leave the image byte-identical",
  ignore: WHY !== null || !QEMU_IMG || !DEMU_REACHES_USERSPACE,
  async fn() {
    const g = await buildLinuxGuest();
    const dir = await Deno.makeTempDir({ prefix: "demu-linux-snap-" });
    try {
      const disk = `${dir}/disk.qcow2`;
      strictEqual((await qemuImg(["create", "-q", "-f", "qcow2", disk, "64M"])).code, 0);
      const before = await Deno.readFile(disk);
      const r = await boot(g.iso, ["-hda", disk, "-snapshot"]);
      ok(r.stdout.includes(`DEMU-DISK: wrote ${DISK_TEXT}`), `no write: ${explain(r)}`);
      strictEqual(r.code, 0, explain(r));
      deepStrictEqual(await Deno.readFile(disk), before, "the image changed under -snapshot");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
