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
  "triple_fault",
  "acpi_off",
  "tick_count",
  "high_ram",
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

/** A built guest in its own temporary directory, removed by `await using`. */
export interface BuiltGuest extends AsyncDisposable {
  dir: string;
  raw: string;
  qcow2: string;
  /** The El Torito ISO (buildGuestIso only). */
  iso: string;
}

async function tempGuestDir(): Promise<{ dir: string; dispose: () => Promise<void> }> {
  const dir = await Deno.makeTempDir({ prefix: "demu-guest-" });
  return { dir, dispose: () => Deno.remove(dir, { recursive: true }).catch(() => {}) };
}

/**
 * Builds one guest into a fresh temporary directory (tests run in parallel and QEMU locks
 * images, so nothing is shared); returns the raw and qcow2 image paths.
 */
export async function buildGuest(name: string): Promise<BuiltGuest> {
  const { dir, dispose } = await tempGuestDir();
  const bin = `${dir}/${name}.bin`;
  const raw = `${dir}/${name}.img`;
  const qcow2 = `${dir}/${name}.qcow2`;
  try {
    await run("nasm", ["-f", "bin", "-I", here, "-o", bin, `${here}${name}.asm`]);
    const sector = await Deno.readFile(bin);
    if (sector.length % 512 || sector[510] !== 0x55 || sector[511] !== 0xaa) {
      throw new Error(`${name}: not a boot sector (${sector.length} bytes)`);
    }
    const disk = new Uint8Array(1 << 20);
    disk.set(sector);
    await Deno.writeFile(raw, disk);
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
  } catch (e) {
    await dispose();
    throw e;
  }
  return { dir, raw, qcow2, iso: "", [Symbol.asyncDispose]: dispose };
}

/** Builds a guest and a bootable (El Torito) ISO around its boot sector. */
export async function buildGuestIso(name: string): Promise<BuiltGuest> {
  const g = await buildGuest(name);
  const { buildBootIso } = await import("./iso.ts");
  g.iso = `${g.dir}/${name}.iso`;
  const boot = await Deno.readFile(`${g.dir}/${name}.bin`);
  await Deno.writeFile(g.iso, buildBootIso(boot.subarray(0, 512)));
  return g;
}

/** Builds the Linux-boot-protocol stub kernel and a small initrd in a temporary directory. */
export async function buildLinuxStub(): Promise<
  { kernel: string; initrd: string } & AsyncDisposable
> {
  const { dir, dispose } = await tempGuestDir();
  const kernel = `${dir}/linux_stub.bzImage`;
  const initrd = `${dir}/linux_stub.initrd`;
  try {
    await run("nasm", ["-f", "bin", "-I", here, "-o", kernel, `${here}linux_stub.asm`]);
    await Deno.writeTextFile(initrd, "INITRD-0123456789ABCDEF-tail");
  } catch (e) {
    await dispose();
    throw e;
  }
  return { kernel, initrd, [Symbol.asyncDispose]: dispose };
}

if (import.meta.main) {
  // Builds every guest into .cache/guests/pc for manual runs.
  await Deno.mkdir(GUEST_DIR, { recursive: true });
  for (const g of GUESTS) {
    await using built = await buildGuestIso(g);
    for (const f of [built.raw, built.qcow2, built.iso, `${built.dir}/${g}.bin`]) {
      await Deno.copyFile(f, `${GUEST_DIR}/${f.slice(built.dir.length + 1)}`);
    }
    console.log(`${GUEST_DIR}/${g}.{bin,img,qcow2,iso}`);
  }
  await using stub = await buildLinuxStub();
  await Deno.copyFile(stub.kernel, `${GUEST_DIR}/linux_stub.bzImage`);
  await Deno.copyFile(stub.initrd, `${GUEST_DIR}/linux_stub.initrd`);
}
