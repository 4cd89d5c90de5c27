/**
 * Finding the firmware: SeaBIOS (bios-256k.bin) and the std VGA option ROM, from -bios, from
 * $DEMU_FIRMWARE_DIR, from Debian's seabios package, or from QEMU's data directory.
 */

/** Directories searched, in order. */
export function firmwareDirs(): string[] {
  const dirs: string[] = [];
  const env = Deno.env.get("DEMU_FIRMWARE_DIR");
  if (env) dirs.push(env);
  dirs.push("/usr/share/seabios", "/usr/share/qemu", "/usr/local/share/qemu");
  // Where `apt-get download seabios && dpkg-deb -x seabios_*.deb .cache/seabios` puts it.
  dirs.push(new URL("../../.cache/seabios/usr/share/seabios", import.meta.url).pathname);
  return dirs;
}

/** The path of a firmware file, or null. */
export function findFirmware(name: string): string | null {
  if (name.includes("/")) return existsFile(name) ? name : null;
  for (const d of firmwareDirs()) {
    const p = `${d}/${name}`;
    if (existsFile(p)) return p;
  }
  return existsFile(name) ? name : null;
}

function existsFile(p: string): boolean {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}

/** Reads the BIOS image, with QEMU's message when it is missing. */
export function loadBios(name = "bios-256k.bin"): Uint8Array {
  const path = findFirmware(name);
  if (!path) {
    throw new Error(
      `could not load PC BIOS '${name}' (install Debian's seabios package: apt-get install ` +
        "seabios, or unpack it into .cache/seabios with apt-get download seabios and dpkg-deb -x)",
    );
  }
  const b = Deno.readFileSync(path);
  if (b.length < 0x10000 || b.length > 0x1000000 || b.length % 0x10000) {
    throw new Error(`could not load PC BIOS '${name}'`);
  }
  return b;
}

/** The VGA BIOS for std VGA, or null when not installed (the VGA then has no ROM). */
export function loadVgaRom(): Uint8Array | null {
  const path = findFirmware("vgabios-stdvga.bin");
  return path ? Deno.readFileSync(path) : null;
}
