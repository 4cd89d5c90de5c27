/**
 * The i386 guest of the agent's end-to-end test in demu (issue 7): Debian's i386 kernel
 * (linux-image-686) and an initramfs holding the real qemu-ga from Debian's i386 packages with the
 * libraries it links, a static busybox, and the kernel's virtio modules. /init loads them, names
 * the virtio ports under /dev/virtio-ports/ and runs qemu-ga on org.qemu.guest_agent.0; the host
 * drives it (and, through guest-exec, formats and writes a virtio disk).
 *
 * The packages are fetched with `apt-get download` (i386 must be a dpkg foreign architecture)
 * into .cache/guests/agent/i386-debs/; the image is cached beside them by a hash of its inputs.
 *
 *   deno run -A tests/guests/agent/i386.ts     # prints the kernel and initramfs paths
 */
import { CACHE_DIR, Cpio } from "./build.ts";

const DEBS = `${CACHE_DIR}/i386-debs`;
const PACKAGES = [
  "busybox-static:i386",
  "qemu-guest-agent:i386",
  "libc6:i386",
  "libglib2.0-0:i386",
  "libnuma1:i386",
  "libudev1:i386",
  "liburing2:i386",
  "libgcc-s1:i386",
  "libpcre2-8-0:i386",
  "libffi8:i386",
  "libmount1:i386",
  "libselinux1:i386",
  "libblkid1:i386",
  "zlib1g:i386",
];
/** Load order of the modules (the virtio stack is modular in Debian's 686 kernel). */
const MODULES = [
  "drivers/virtio/virtio.ko",
  "drivers/virtio/virtio_ring.ko",
  "drivers/virtio/virtio_pci_legacy_dev.ko",
  "drivers/virtio/virtio_pci_modern_dev.ko",
  "drivers/virtio/virtio_pci.ko",
  "drivers/char/virtio_console.ko",
  "drivers/block/virtio_blk.ko",
  // ext4 (which also mounts ext2) for the disk the host has the guest format.
  "lib/crc16.ko",
  "crypto/crc32c_generic.ko",
  "fs/mbcache.ko",
  "fs/jbd2/jbd2.ko",
  "fs/ext4/ext4.ko",
];

export const I386_APPEND = "console=ttyS0 panic=-1 cryptomgr.notests quiet";
export const READY = "demu-guest: starting qemu-ga";

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/sbin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mkdir -p /var/run /var/log /run /mnt
for m in $(cat /etc/modules.list); do insmod "$m" || echo "init: insmod $m failed"; done
mkdir -p /dev/virtio-ports
i=0
while [ $i -lt 100 ]; do
  for d in /sys/class/virtio-ports/*; do
    [ -e "$d/name" ] || continue
    n=$(cat "$d/name")
    [ -n "$n" ] && ln -sf "/dev/\${d##*/}" "/dev/virtio-ports/$n"
  done
  [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ] && break
  i=$((i+1)); sleep 0.1
done
echo "${READY}"
/usr/sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 -t /run
echo "demu-guest: qemu-ga exited with $?"
poweroff -f
`;

// qemu-ga's guest-shutdown runs "shutdown -h -P +0 MESSAGE"; busybox has no shutdown.
const SHUTDOWN = `#!/bin/sh
case " $* " in
  *" -r "*) (sleep 1; reboot -f) & ;;
  *" -H "*) (sleep 1; halt -f) & ;;
  *) (sleep 1; poweroff -f) & ;;
esac
exit 0
`;

function run(cmd: string, args: string[], cwd?: string): string {
  const out = new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).outputSync();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
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

function debsPresent(): string[] {
  try {
    return [...Deno.readDirSync(DEBS)].filter((e) => e.name.endsWith(".deb")).map((e) =>
      `${DEBS}/${e.name}`
    ).sort();
  } catch {
    return [];
  }
}

/** Why the guest cannot be built, or null. */
export function missingI386Inputs(): string | null {
  if (!have("dpkg-deb")) return "no dpkg-deb (not a Debian system)";
  if (debsPresent().some((d) => /linux-image-.*-686_/.test(d))) return null;
  if (!have("apt-get")) return "no apt-get to fetch the i386 packages";
  const out = new Deno.Command("apt-cache", { args: ["depends", "linux-image-686:i386"] })
    .outputSync();
  if (!/linux-image-[0-9]/.test(new TextDecoder().decode(out.stdout))) {
    return "apt knows no linux-image-686:i386 (dpkg --add-architecture i386 && apt-get update)";
  }
  return null;
}

function fetchDebs(): string[] {
  const have = debsPresent();
  if (have.some((d) => /linux-image-.*-686_/.test(d)) && have.length > PACKAGES.length) return have;
  const dep = run("apt-cache", ["depends", "linux-image-686:i386"]);
  const kernel = /Depends:\s*(linux-image-[0-9][^\s:]*-686)/.exec(dep)?.[1];
  if (!kernel) throw new Error("apt knows no linux-image-686:i386");
  Deno.mkdirSync(DEBS, { recursive: true });
  run("apt-get", ["download", "-q", kernel, ...PACKAGES], DEBS);
  return debsPresent();
}

export interface I386Guest {
  kernel: string;
  initrd: string;
}

/** Builds (or finds cached) the i386 qemu-ga guest. */
export async function buildI386Guest(): Promise<I386Guest> {
  const why = missingI386Inputs();
  if (why) throw new Error(why);
  const debs = fetchDebs();
  const h = new Uint8Array(
    await crypto.subtle.digest(
      "SHA-256",
      new TextEncoder().encode(JSON.stringify({ v: 1, INIT, SHUTDOWN, MODULES, debs })),
    ),
  );
  const key = [...h.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const dir = `${CACHE_DIR}/i386-${key}`;
  const guest = { kernel: `${dir}/vmlinuz`, initrd: `${dir}/initrd.cpio` };
  try {
    Deno.statSync(guest.initrd);
    return guest;
  } catch { /* build it */ }

  // Older builds are stale once an input changed.
  for (const e of Deno.readDirSync(CACHE_DIR)) {
    if (/^i386-[0-9a-f]{16}$/.test(e.name)) {
      await Deno.remove(`${CACHE_DIR}/${e.name}`, { recursive: true }).catch(() => {});
    }
  }
  const stage = await Deno.makeTempDir({ prefix: "demu-i386-stage-" });
  try {
    for (const d of debs) run("dpkg-deb", ["-x", d, stage]);
    const c = new Cpio();
    const enc = new TextEncoder();
    const dirs = new Set<string>();
    const mkdirs = (rel: string) => {
      const parts = rel.split("/");
      for (let i = 1; i < parts.length; i++) {
        const p = parts.slice(0, i).join("/");
        if (!dirs.has(p)) {
          dirs.add(p);
          c.dir(p);
        }
      }
    };
    for (const d of ["bin", "sbin", "dev", "proc", "sys", "tmp", "root", "etc", "mnt"]) {
      mkdirs(`${d}/x`);
    }
    c.charDev("dev/console", 5, 1);
    c.charDev("dev/null", 1, 3);
    c.file("init", enc.encode(INIT), 0o755);
    c.file("sbin/shutdown", enc.encode(SHUTDOWN), 0o755);
    c.file("etc/passwd", enc.encode("root:x:0:0:root:/root:/bin/sh\n"));
    c.file("etc/group", enc.encode("root:x:0:\n"));
    c.file("bin/busybox", await Deno.readFile(`${stage}/bin/busybox`), 0o755);
    mkdirs("usr/sbin/qemu-ga");
    c.file("usr/sbin/qemu-ga", await Deno.readFile(`${stage}/usr/sbin/qemu-ga`), 0o755);
    // Every shared library the packages ship (files and their symlinks), where they ship them.
    const libs = (rel: string) => {
      let entries: Deno.DirEntry[];
      try {
        entries = [...Deno.readDirSync(`${stage}/${rel}`)];
      } catch {
        return;
      }
      for (const e of entries.sort((a, b) => a.name < b.name ? -1 : 1)) {
        const r = `${rel}/${e.name}`;
        if (e.isDirectory) continue;
        if (!/\.so(\.|$)/.test(e.name) && !/^ld-linux/.test(e.name)) continue;
        mkdirs(r);
        if (e.isSymlink) c.symlink(r, Deno.readLinkSync(`${stage}/${r}`));
        else c.file(r, Deno.readFileSync(`${stage}/${r}`), 0o755);
      }
    };
    libs("lib");
    libs("lib/i386-linux-gnu");
    libs("usr/lib/i386-linux-gnu");
    const release = [...Deno.readDirSync(`${stage}/lib/modules`)][0].name;
    const names: string[] = [];
    for (const m of MODULES) {
      const name = `lib/modules/${m.split("/").pop()}`;
      mkdirs(name);
      c.file(name, await Deno.readFile(`${stage}/lib/modules/${release}/kernel/${m}`));
      names.push("/" + name);
    }
    c.file("etc/modules.list", enc.encode(names.join("\n") + "\n"));
    await Deno.mkdir(dir, { recursive: true });
    await Deno.copyFile(`${stage}/boot/vmlinuz-${release}`, `${guest.kernel}.tmp${Deno.pid}`);
    await Deno.rename(`${guest.kernel}.tmp${Deno.pid}`, guest.kernel);
    await c.writeTo(`${guest.initrd}.tmp${Deno.pid}`);
    await Deno.rename(`${guest.initrd}.tmp${Deno.pid}`, guest.initrd);
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
  return guest;
}

if (import.meta.main) {
  const g = await buildI386Guest();
  console.log(`kernel: ${g.kernel}\ninitrd: ${g.initrd}`);
}
