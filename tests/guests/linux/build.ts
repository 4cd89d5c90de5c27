/**
 * Builds the Linux test guest of the PC issue: an isolinux CD image holding Debian's i386 kernel
 * (linux-image-*-686) and a busybox initramfs (busybox-static:i386). Its /init:
 *
 *   1. prints MARKER on the console (ttyS0; isolinux passes console=ttyS0);
 *   2. loads the IDE/SCSI disk stack and ext4 from the kernel package (ata_piix, sd_mod, ext4 and
 *      what they depend on; the Debian kernel builds them as modules);
 *   3. when a disk (/dev/sda) is present: mounts it; finds the file /demu.txt and prints
 *      "DEMU-DISK: found <content>", or else makes an ext2 filesystem (busybox mke2fs), writes
 *      the file and prints "DEMU-DISK: wrote <content>"; without a disk prints "DEMU-DISK: none";
 *   4. powers off through ACPI (poweroff -f).
 *
 * Inputs come from apt (`dpkg --add-architecture i386 && apt-get update` must have run): the
 * .deb files are fetched with `apt-get download` into .cache/guests/linux/debs/ and unpacked with
 * dpkg-deb; the ISO is written by xorriso (or genisoimage). Everything built lives in
 * .cache/guests/linux/ at the repository root (outside git), keyed by a hash of every input.
 *
 *   deno run -A tests/guests/linux/build.ts     # prints the ISO's path
 */

import { Cpio } from "../cpio.ts";

const root = new URL("../../../", import.meta.url).pathname;
export const CACHE_DIR = `${root}.cache/guests/linux`;
const DEBS = `${CACHE_DIR}/debs`;

/** Printed by the guest's /init once it runs in userspace. */
export const MARKER = "DEMU-LINUX-MARKER: userspace reached";
/** The content of the file the guest writes to its disk. */
export const DISK_TEXT = "demu-disk-file-v1";

/** The disk stack and the filesystem, for kernels that build them as modules (load order). */
const MODULES = ["ata_piix", "sd_mod", "crc32c_generic", "ext4"];

/**
 * The kernel command line isolinux hands over. panic=-1: a panic reboots (exits with -no-reboot).
 * cryptomgr.notests: Debian's kernel self-tests its crypto at boot, and the finite-field
 * Diffie-Hellman tests (ffdhe2048..8192 key generation, 8192-bit modular exponentiations in C)
 * cost ~3 s of QEMU TCG's 7 s boot and minutes on an interpreter, for nothing this guest needs.
 */
export const APPEND = "console=ttyS0 panic=-1 cryptomgr.notests";

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "${MARKER}"
for m in $(cat /etc/modules.list); do insmod "$m" || echo "init: insmod $m failed"; done
i=0
while [ ! -b /dev/sda ] && [ $i -lt 10 ]; do i=$((i+1)); sleep 0.5; done
mkdir -p /mnt
if [ -b /dev/sda ]; then
  if mount -t ext4 /dev/sda /mnt 2>/dev/null && [ -f /mnt/demu.txt ]; then
    echo "DEMU-DISK: found $(cat /mnt/demu.txt)"
    umount /mnt
  else
    umount /mnt 2>/dev/null
    mke2fs -q /dev/sda || echo "init: mke2fs failed"
    mount -t ext4 /dev/sda /mnt || echo "init: mount failed"
    echo "${DISK_TEXT}" > /mnt/demu.txt
    sync
    umount /mnt || echo "init: umount failed"
    echo "DEMU-DISK: wrote $(echo ${DISK_TEXT})"
  fi
else
  echo "DEMU-DISK: none"
fi
echo "DEMU-LINUX: powering off"
poweroff -f
`;

const ISOLINUX_CFG = `DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND ${APPEND}
`;

function run(cmd: string, args: string[], cwd?: string): string {
  let out;
  try {
    out = new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).outputSync();
  } catch (e) {
    throw new Error(`${cmd}: ${(e as Error).message}`);
  }
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

function have(cmd: string, args = ["--version"]): boolean {
  try {
    return new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

function isoTool(): string | null {
  if (have("xorriso")) return "xorriso";
  if (have("genisoimage")) return "genisoimage";
  return null;
}

/** Why the guest cannot be built here, or null when it can. */
export function missingInputs(): string | null {
  if (!have("dpkg-deb")) return "no dpkg-deb (not a Debian system)";
  if (!isoTool()) return "neither xorriso nor genisoimage is installed (apt-get install xorriso)";
  if (cachedDebs()) return null;
  if (!have("apt-get")) return "no apt-get to fetch the kernel, busybox and isolinux";
  try {
    kernelPackage();
  } catch (e) {
    return `${(e as Error).message} (run: dpkg --add-architecture i386 && apt-get update)`;
  }
  return null;
}

/** The versioned i386 kernel package behind the linux-image-686 metapackage. */
function kernelPackage(): string {
  const out = run("apt-cache", ["depends", "linux-image-686:i386"]);
  const m = /Depends:\s*(linux-image-[0-9][^\s:]*-686)(:i386)?/.exec(out);
  if (!m) throw new Error("apt knows no linux-image-686:i386");
  return m[1];
}

interface Debs {
  kernel: string;
  busybox: string;
  isolinux: string;
  syslinux: string;
}

function cachedDebs(): Debs | null {
  let names: string[];
  try {
    names = [...Deno.readDirSync(DEBS)].map((e) => e.name).filter((n) => n.endsWith(".deb"))
      .sort();
  } catch {
    return null;
  }
  const find = (re: RegExp) => names.filter((n) => re.test(n)).pop();
  const kernel = find(/^linux-image-[0-9].*-686_.*_i386\.deb$/);
  const busybox = find(/^busybox-static_.*_i386\.deb$/);
  const isolinux = find(/^isolinux_.*\.deb$/);
  const syslinux = find(/^syslinux-common_.*\.deb$/);
  if (!kernel || !busybox || !isolinux || !syslinux) return null;
  return {
    kernel: `${DEBS}/${kernel}`,
    busybox: `${DEBS}/${busybox}`,
    isolinux: `${DEBS}/${isolinux}`,
    syslinux: `${DEBS}/${syslinux}`,
  };
}

function fetchDebs(): Debs {
  const have = cachedDebs();
  if (have) return have;
  Deno.mkdirSync(DEBS, { recursive: true });
  run("apt-get", [
    "download",
    `${kernelPackage()}:i386`,
    "busybox-static:i386",
    "isolinux",
    "syslinux-common",
  ], DEBS);
  const got = cachedDebs();
  if (!got) throw new Error("apt-get download did not produce the expected .deb files");
  return got;
}

/** The "depends=" field of a module's .modinfo section (NUL-separated key=value strings). */
function moduleDepends(ko: Uint8Array): string[] {
  const text = new TextDecoder("latin1").decode(ko);
  const m = /\0depends=([^\0]*)\0/.exec(text);
  return m ? m[1].split(",").filter(Boolean) : [];
}

/** Module files (dependencies first) for MODULES, found under the unpacked kernel's tree. */
function moduleFiles(modDir: string): string[] {
  const byName = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) walk(p);
      else if (e.name.endsWith(".ko")) byName.set(e.name.slice(0, -3).replaceAll("-", "_"), p);
    }
  };
  walk(`${modDir}/kernel`);
  const order: string[] = [];
  const visit = (name: string) => {
    const p = byName.get(name);
    if (!p || order.includes(p)) return; // built in, or already queued
    for (const d of moduleDepends(Deno.readFileSync(p))) visit(d.replaceAll("-", "_"));
    order.push(p);
  };
  for (const n of MODULES) visit(n);
  return order;
}

async function sha(parts: unknown): Promise<string> {
  const h = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(parts))),
  );
  return [...h.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export interface LinuxGuest {
  /** The bootable CD image. */
  iso: string;
  /** The kernel and initramfs inside it (for -kernel/-initrd boots). */
  kernel: string;
  initrd: string;
}

/** Builds (or finds cached) the guest; throws when an input is missing (see missingInputs). */
export async function buildLinuxGuest(): Promise<LinuxGuest> {
  const why = missingInputs();
  if (why) throw new Error(why);
  const debs = fetchDebs();
  const key = await sha({
    v: 1,
    init: INIT,
    cfg: ISOLINUX_CFG,
    modules: MODULES,
    debs: Object.values(debs).map((p) => [p.split("/").pop(), Deno.statSync(p).size]),
  });
  const out = `${CACHE_DIR}/${key}`;
  const guest = {
    iso: `${out}/linux.iso`,
    kernel: `${out}/iso/vmlinuz`,
    initrd: `${out}/iso/initrd.img`,
  };
  try {
    Deno.statSync(guest.iso);
    return guest;
  } catch { /* build it */ }

  // Old builds are stale once an input changed.
  for (const e of Deno.readDirSync(CACHE_DIR)) {
    if (e.isDirectory && e.name !== "debs") {
      await Deno.remove(`${CACHE_DIR}/${e.name}`, { recursive: true }).catch(() => {});
    }
  }
  const work = `${out}.tmp${Deno.pid}`;
  await Deno.mkdir(`${work}/x`, { recursive: true });
  for (const d of Object.values(debs)) run("dpkg-deb", ["-x", d, `${work}/x`]);
  const x = `${work}/x`;
  const vmlinuz = [...Deno.readDirSync(`${x}/boot`)].find((e) => e.name.startsWith("vmlinuz-"));
  if (!vmlinuz) throw new Error("the kernel package holds no /boot/vmlinuz-*");
  const release = vmlinuz.name.slice("vmlinuz-".length);
  const modules = moduleFiles(`${x}/lib/modules/${release}`);

  const c = new Cpio();
  for (const d of ["bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "etc", "lib"]) c.dir(d);
  c.dir("lib/modules");
  c.charDev("dev/console", 5, 1);
  c.charDev("dev/null", 1, 3);
  c.file("bin/busybox", await Deno.readFile(`${x}/bin/busybox`), 0o755);
  c.file("init", new TextEncoder().encode(INIT), 0o755);
  const names: string[] = [];
  for (const m of modules) {
    const name = `lib/modules/${m.split("/").pop()}`;
    c.file(name, await Deno.readFile(m));
    names.push("/" + name);
  }
  c.file("etc/modules.list", new TextEncoder().encode(names.join("\n") + "\n"));

  const iso = `${work}/iso`;
  await Deno.mkdir(`${iso}/isolinux`, { recursive: true });
  await Deno.copyFile(`${x}/boot/${vmlinuz.name}`, `${iso}/vmlinuz`);
  await c.writeTo(`${iso}/initrd.img`);
  await Deno.copyFile(`${x}/usr/lib/ISOLINUX/isolinux.bin`, `${iso}/isolinux/isolinux.bin`);
  await Deno.copyFile(
    `${x}/usr/lib/syslinux/modules/bios/ldlinux.c32`,
    `${iso}/isolinux/ldlinux.c32`,
  );
  await Deno.writeTextFile(`${iso}/isolinux/isolinux.cfg`, ISOLINUX_CFG);
  const tool = isoTool()!;
  const mkisofs = [
    "-o",
    `${work}/linux.iso`,
    "-b",
    "isolinux/isolinux.bin",
    "-c",
    "isolinux/boot.cat",
    "-no-emul-boot",
    "-boot-load-size",
    "4",
    "-boot-info-table",
    "-J",
    "-R",
    "-V",
    "DEMU_LINUX",
    iso,
  ];
  run(tool, tool === "xorriso" ? ["-as", "mkisofs", "-quiet", ...mkisofs] : ["-quiet", ...mkisofs]);
  await Deno.remove(x, { recursive: true });
  await Deno.rename(work, out);
  return guest;
}

if (import.meta.main) {
  try {
    const g = await buildLinuxGuest();
    console.log(`iso: ${g.iso}\nkernel: ${g.kernel}\ninitrd: ${g.initrd}`);
  } catch (e) {
    console.error(`build.ts: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
