/**
 * Builds the guest for the agent's end-to-end test: an initramfs (cpio "newc", uncompressed so a
 * TCG guest spends no time inflating it) holding busybox, the Deno binary with the libraries it
 * links, demu's agent sources (agent/ and sys/ under a two-member workspace), the kernel modules
 * that carry virtio-serial, and an /init that loads them, names the ports under
 * /dev/virtio-ports/ (udev's job on a real system) and runs the agent on
 * org.qemu.guest_agent.0. Paired with the host's Debian kernel (/boot/vmlinuz-*).
 *
 * The image is cached in .cache/guests/agent/ at the repository root (outside git), keyed by a
 * hash of every input, so rebuilding only happens when one changes.
 *
 *   deno run -A tests/guests/agent/build.ts     # prints the kernel and initramfs paths
 */

import { Cpio } from "../cpio.ts";

export { Cpio };

const root = new URL("../../../", import.meta.url).pathname;
export const CACHE_DIR = `${root}.cache/guests/agent`;

/** The virtio-serial stack, in load order, for kernels that build it as modules. */
const MODULES = [
  "virtio",
  "virtio_ring",
  "virtio_pci_legacy_dev",
  "virtio_pci_modern_dev",
  "virtio_pci",
  "virtio_console",
];

export interface AgentGuest {
  kernel: string;
  initrd: string;
}

/** Why the guest cannot be built here, or null when it can. */
export function missingInputs(): string | null {
  if (!findKernel()) return "no kernel at /boot/vmlinuz-* (install linux-image-amd64)";
  if (!findBusybox()) return "no static busybox (install busybox-static)";
  if (!findDeno()) return "no deno binary on PATH";
  if (Deno.build.arch !== "x86_64") return "the Deno binary is not x86_64";
  return null;
}

function findKernel(): { path: string; release: string } | null {
  let best: { path: string; release: string } | null = null;
  try {
    for (const e of Deno.readDirSync("/boot")) {
      const m = /^vmlinuz-(.+)$/.exec(e.name);
      if (!m || !e.isFile) continue;
      if (!best || m[1] > best.release) best = { path: `/boot/${e.name}`, release: m[1] };
    }
  } catch {
    return null;
  }
  return best;
}

function findBusybox(): string | null {
  for (const p of ["/bin/busybox", "/usr/bin/busybox"]) {
    try {
      const real = Deno.realPathSync(p);
      const head = new Uint8Array(Deno.readFileSync(real).subarray(0, 4096));
      // A static binary has no PT_INTERP: no "ld-linux" path in its first page.
      if (!new TextDecoder("latin1").decode(head).includes("ld-linux")) return real;
    } catch { /* next */ }
  }
  return null;
}

function findDeno(): string | null {
  try {
    return Deno.realPathSync(Deno.execPath());
  } catch {
    return null;
  }
}

/** Shared libraries the dynamic binary needs: [path as ldd names it, real file]. */
async function sharedLibs(binary: string): Promise<[string, string][]> {
  const out = await new Deno.Command("ldd", { args: [binary], stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`ldd ${binary} failed`);
  const libs: [string, string][] = [];
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push([m[1], Deno.realPathSync(m[1])]);
  }
  return libs;
}

/** Module files (in load order) for the names above, from modules.dep; built-ins are skipped. */
function moduleFiles(release: string): string[] {
  const dir = `/lib/modules/${release}`;
  let dep: string;
  try {
    dep = Deno.readTextFileSync(`${dir}/modules.dep`);
  } catch {
    return [];
  }
  const deps = new Map<string, string[]>();
  for (const line of dep.split("\n")) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (m) deps.set(m[1], m[2].split(/\s+/).filter(Boolean));
  }
  const byName = new Map<string, string>();
  for (const k of deps.keys()) {
    const base = k.split("/").pop()!.replace(/\.ko(\.\w+)?$/, "").replaceAll("-", "_");
    byName.set(base, k);
  }
  const order: string[] = [];
  const visit = (rel: string) => {
    if (order.includes(rel)) return;
    // modules.dep lists every dependency, nearest first: load them deepest first.
    for (const d of [...(deps.get(rel) ?? [])].reverse()) visit(d);
    order.push(rel);
  };
  for (const n of MODULES) {
    const rel = byName.get(n);
    if (rel) visit(rel);
  }
  return order.map((rel) => `${dir}/${rel}`);
}

const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu HOME=/root
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mkdir -p /var/run /var/log
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
ls -l /dev/virtio-ports/
echo "demu-guest: starting agent"
cd /demu
DENO_DIR=/tmp/deno DENO_NO_UPDATE_CHECK=1 /bin/deno run --no-check --no-lock -A agent/main.ts \\
  -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0
echo "demu-guest: agent exited with $?"
poweroff -f
`;

// guest-shutdown runs "shutdown -h -P +0 MESSAGE" as qemu-ga does; busybox has no shutdown.
const SHUTDOWN = `#!/bin/sh
case " $* " in
  *" -r "*) (sleep 1; reboot -f) & ;;
  *" -H "*) (sleep 1; halt -f) & ;;
  *) (sleep 1; poweroff -f) & ;;
esac
exit 0
`;

/** Files of the repository the agent needs (agent/, sys/), relative to the repository root. */
function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of [...Deno.readDirSync(root + rel)].sort((a, b) => a.name < b.name ? -1 : 1)) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory) walk(r);
      else if (e.isFile && /\.(ts|json)$/.test(e.name) && !/_test\.ts$/.test(e.name)) out.push(r);
    }
  };
  walk("agent");
  walk("sys");
  return out;
}

const WORKSPACE = JSON.stringify({ workspace: ["./sys", "./agent"] }) + "\n";

/** Builds (or finds cached) the guest; throws when an input is missing (see missingInputs). */
export async function buildAgentGuest(): Promise<AgentGuest> {
  const why = missingInputs();
  if (why) throw new Error(why);
  const kernel = findKernel()!;
  const busybox = findBusybox()!;
  const deno = findDeno()!;
  const libs = await sharedLibs(deno);
  const modules = moduleFiles(kernel.release);
  const sources = sourceFiles();

  // The cache key: the content of every input (big binaries by size, mtime and path).
  const h = new Uint8Array(
    await crypto.subtle.digest(
      "SHA-256",
      new TextEncoder().encode(JSON.stringify({
        v: 1,
        init: INIT,
        shutdown: SHUTDOWN,
        ws: WORKSPACE,
        bins: [deno, busybox, kernel.path, ...libs.map((l) => l[1]), ...modules].map((p) => {
          const s = Deno.statSync(p);
          return [p, s.size, s.mtime?.getTime()];
        }),
        src: sources.map((s) => [s, Deno.readTextFileSync(root + s)]),
      })),
    ),
  );
  const key = [...h.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const initrd = `${CACHE_DIR}/initrd-${key}.cpio`;
  try {
    Deno.statSync(initrd);
    return { kernel: kernel.path, initrd };
  } catch { /* build it */ }

  const c = new Cpio();
  for (
    const d of [
      "bin",
      "sbin",
      "dev",
      "proc",
      "sys",
      "tmp",
      "root",
      "etc",
      "lib",
      "lib64",
      "lib/x86_64-linux-gnu",
      "lib/modules",
      "demu",
    ]
  ) c.dir(d);
  c.charDev("dev/console", 5, 1);
  c.charDev("dev/null", 1, 3);
  c.file("bin/busybox", await Deno.readFile(busybox), 0o755);
  c.file("bin/deno", await Deno.readFile(deno), 0o755);
  c.file("init", new TextEncoder().encode(INIT), 0o755);
  c.file("sbin/shutdown", new TextEncoder().encode(SHUTDOWN), 0o755);
  c.file("etc/passwd", new TextEncoder().encode("root:x:0:0:root:/root:/bin/sh\n"));
  c.file("etc/group", new TextEncoder().encode("root:x:0:\n"));
  const seen = new Set<string>();
  for (const [named, real] of libs) {
    // ldd's names: /lib/x86_64-linux-gnu/libc.so.6 and /lib64/ld-linux-x86-64.so.2.
    const rel = named.replace(/^\/+/, "").replace(/^usr\//, "");
    if (seen.has(rel)) continue;
    seen.add(rel);
    c.file(rel, await Deno.readFile(real), 0o755);
  }
  const modNames: string[] = [];
  for (const m of modules) {
    const name = `lib/modules/${m.split("/").pop()}`;
    c.file(name, await Deno.readFile(m));
    modNames.push("/" + name);
  }
  c.file("etc/modules.list", new TextEncoder().encode(modNames.join("\n") + "\n"));
  c.file("demu/deno.json", new TextEncoder().encode(WORKSPACE));
  const dirs = new Set<string>();
  for (const s of sources) {
    const parts = s.split("/");
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join("/");
      if (!dirs.has(d)) {
        dirs.add(d);
        c.dir(`demu/${d}`);
      }
    }
    c.file(`demu/${s}`, await Deno.readFile(root + s));
  }
  await Deno.mkdir(CACHE_DIR, { recursive: true });
  // Old builds are stale once an input changed.
  for (const e of Deno.readDirSync(CACHE_DIR)) {
    if (/^initrd-.*\.cpio(\.tmp\d+)?$/.test(e.name)) {
      await Deno.remove(`${CACHE_DIR}/${e.name}`).catch(() => {});
    }
  }
  const tmp = `${initrd}.tmp${Deno.pid}`;
  await c.writeTo(tmp);
  await Deno.rename(tmp, initrd);
  return { kernel: kernel.path, initrd };
}

if (import.meta.main) {
  const g = await buildAgentGuest();
  console.log(`kernel: ${g.kernel}\ninitrd: ${g.initrd}`);
}
