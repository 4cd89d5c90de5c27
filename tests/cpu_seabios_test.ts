/**
 * The interpreter inside the whole PC: the real SeaBIOS (Debian's seabios package) boots on
 * demu's CPU and devices, loads a nasm-built boot sector from an IDE disk, which prints through
 * the debug console, enters protected mode, checks a computation and powers off via ACPI.
 */

import { ok, strictEqual } from "node:assert/strict";
import { buildGuest, haveNasm } from "./guests/cpu/build.ts";

const BIOS = "/usr/share/seabios/bios-256k.bin";
const haveBios = (() => {
  try {
    return Deno.statSync(BIOS).isFile;
  } catch {
    return false;
  }
})();
const nasm = haveNasm();
if (!haveBios) console.warn(`WARNING: ${BIOS} missing (Debian seabios): SeaBIOS boot test skipped`);
if (!nasm) console.warn("WARNING: nasm not found: SeaBIOS boot test skipped");

Deno.test({
  name: "cpu: SeaBIOS boots a disk on the interpreter and the boot sector powers off",
  ignore: !haveBios || !nasm,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "demu-cpu-bios-" });
    try {
      const img = `${dir}/disk.img`;
      const disk = new Uint8Array(1 << 20);
      disk.set(buildGuest("mbr_boot"));
      await Deno.writeFile(img, disk);
      const log = `${dir}/debugcon.log`;
      const main = new URL("../emu/main.ts", import.meta.url).pathname;
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          main,
          "-display",
          "none",
          "-serial",
          "null",
          "-debugcon",
          `file:${log}`,
          "-m",
          "32",
          "-no-reboot",
          "-drive",
          `file=${img},format=raw`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
      const out = await child.output();
      clearTimeout(timer);
      const text = await Deno.readTextFile(log).catch(() => "");
      const stderr = new TextDecoder().decode(out.stderr);
      ok(text.includes("SeaBIOS (version"), `no SeaBIOS banner; stderr: ${stderr}`);
      ok(
        text.includes("Booting from Hard Disk"),
        `did not reach the disk boot:\n${text.slice(-2000)}`,
      );
      ok(text.includes("MBR: real mode ok"), `boot sector did not run:\n${text.slice(-2000)}`);
      ok(
        text.includes("MBR: protected mode loop ok"),
        `protected-mode check failed:\n${text.slice(-500)}`,
      );
      strictEqual(out.code, 0, `exit ${out.code}; stderr: ${stderr}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
