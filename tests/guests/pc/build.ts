/**
 * Builds demu's PC test guests: each *.asm here assembled with nasm into a boot sector, then a
 * 1 MiB raw disk image and a qcow2 copy (made with the real qemu-img when installed, else with
 * demu's), in .cache/guests/pc/ at the repository root (outside git).
 *
 *   deno run -A tests/guests/pc/build.ts
 */

const here = new URL(".", import.meta.url).pathname;
const root = new URL("../../../", import.meta.url).pathname;
export const GUEST_DIR = `${root}.cache/guests/pc`;

/** The guests' names (the .asm files). */
export const GUESTS = [
  "serial_poweroff",
  "pit_hlt",
  "disk_write",
  "modes",
  "keyboard_echo",
  "pit_spin",
  "exec_mmio",
];

async function run(cmd: string, args: string[]): Promise<void> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(r.stderr)}`);
  }
}

function hasCommand(name: string): boolean {
  try {
    return new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Whether nasm is installed (the guests cannot be built without it). */
export function haveNasm(): boolean {
  return hasCommand("nasm");
}

/** Builds one guest; returns the raw and qcow2 image paths. */
export async function buildGuest(name: string): Promise<{ raw: string; qcow2: string }> {
  await Deno.mkdir(GUEST_DIR, { recursive: true });
  const bin = `${GUEST_DIR}/${name}.bin`;
  const raw = `${GUEST_DIR}/${name}.img`;
  const qcow2 = `${GUEST_DIR}/${name}.qcow2`;
  await run("nasm", ["-f", "bin", "-I", here, "-o", bin, `${here}${name}.asm`]);
  const sector = await Deno.readFile(bin);
  if (sector.length % 512 || sector[510] !== 0x55 || sector[511] !== 0xaa) {
    throw new Error(`${name}: not a boot sector (${sector.length} bytes)`);
  }
  const disk = new Uint8Array(1 << 20);
  disk.set(sector);
  await Deno.writeFile(raw, disk);
  await Deno.remove(qcow2).catch(() => {});
  if (hasCommand("qemu-img")) {
    await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2]);
  } else {
    await run(Deno.execPath(), [
      "run",
      "-A",
      `${root}tools/qemu-img.ts`,
      "convert",
      "-f",
      "raw",
      "-O",
      "qcow2",
      raw,
      qcow2,
    ]);
  }
  return { raw, qcow2 };
}

if (import.meta.main) {
  for (const g of GUESTS) console.log(g, await buildGuest(g));
}

/** Builds the Linux-boot-protocol stub kernel and a small initrd; returns their paths. */
export async function buildLinuxStub(): Promise<{ kernel: string; initrd: string }> {
  await Deno.mkdir(GUEST_DIR, { recursive: true });
  const kernel = `${GUEST_DIR}/linux_stub.bzImage`;
  const initrd = `${GUEST_DIR}/linux_stub.initrd`;
  await run("nasm", ["-f", "bin", "-I", here, "-o", kernel, `${here}linux_stub.asm`]);
  await Deno.writeTextFile(initrd, "INITRD-0123456789ABCDEF-tail");
  return { kernel, initrd };
}

/** Builds a bootable (El Torito) ISO around a guest's boot sector; returns its path. */
export async function buildGuestIso(name: string): Promise<string> {
  await buildGuest(name);
  const { buildBootIso } = await import("./iso.ts");
  const iso = `${GUEST_DIR}/${name}.iso`;
  const boot = await Deno.readFile(`${GUEST_DIR}/${name}.bin`);
  await Deno.writeFile(iso, buildBootIso(boot.subarray(0, 512)));
  return iso;
}
