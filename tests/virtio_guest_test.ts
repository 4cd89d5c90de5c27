/**
 * A guest drives demu's virtio-serial through the CPU: a boot sector (tests/guests/agent/
 * virtio_console.asm) finds the device on PCI, sets it up as a legacy driver, sends a greeting on
 * the console port, echoes what the host sends, and powers off. The host end is a unix socket
 * chardev (`-chardev socket,...,server=on,wait=on -device virtio-serial -device virtconsole`).
 * The same guest runs on the real QEMU (TCG), demu's interpreter and demu under KVM; all must
 * carry the same bytes. A second boot sector (virtio_blk.asm) writes, reads back and flushes a
 * sector of a `-drive if=virtio` qcow2 disk; the real qemu-img then checks the image and reads the
 * sector.
 */
import { ok, strictEqual } from "node:assert/strict";
import { haveCommand, haveKvm } from "./guests/pc/run.ts";

const root = new URL("../", import.meta.url).pathname;
const NASM = haveCommand("nasm", ["-v"]);
const QEMU = haveCommand("qemu-system-x86_64");
const KVM = haveKvm();
if (!NASM) console.warn("WARNING: nasm is not installed: virtio guest tests skipped");
if (!QEMU) console.warn("WARNING: qemu-system-x86_64 is not installed: no QEMU run to compare");
if (!KVM) console.warn("WARNING: /dev/kvm is not accessible: the KVM run is skipped");

async function buildImage(dir: string, name = "virtio_console"): Promise<string> {
  const bin = `${dir}/${name}.bin`, img = `${dir}/${name}.img`;
  const r = await new Deno.Command("nasm", {
    args: [
      "-f",
      "bin",
      "-I",
      `${root}tests/guests/pc/`,
      "-o",
      bin,
      `${root}tests/guests/agent/${name}.asm`,
    ],
  }).output();
  ok(r.success, new TextDecoder().decode(r.stderr));
  const disk = new Uint8Array(1 << 20);
  disk.set(await Deno.readFile(bin));
  await Deno.writeFile(img, disk);
  return img;
}

async function readUntil(conn: Deno.Conn, pred: (s: string) => boolean, ms: number) {
  let text = "";
  const buf = new Uint8Array(256);
  const deadline = Date.now() + ms;
  while (!pred(text)) {
    const left = deadline - Date.now();
    ok(left > 0, `timed out; got ${JSON.stringify(text)}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buf),
      new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), left)),
    ]);
    clearTimeout(timer);
    ok(n !== "timeout", `timed out; got ${JSON.stringify(text)}`);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return text;
}

async function runGuest(cmd: string, pre: string[]): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "demu-virtio-guest-" });
  let child: Deno.ChildProcess | undefined;
  let conn: Deno.Conn | undefined;
  try {
    const img = await buildImage(dir);
    const sock = `${dir}/console.sock`, serial = `${dir}/serial.log`;
    child = new Deno.Command(cmd, {
      args: [
        ...pre,
        ...["-display", "none", "-no-reboot", "-monitor", "none", "-serial", `file:${serial}`],
        ...["-drive", `file=${img},format=raw`],
        ...["-chardev", `socket,path=${sock},server=on,wait=on,id=c0`],
        ...["-device", "virtio-serial", "-device", "virtconsole,chardev=c0"],
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    // The server waits for us (wait=on): connect once the socket is there.
    const t0 = Date.now();
    for (;;) {
      try {
        conn = await Deno.connect({ transport: "unix", path: sock });
        break;
      } catch {
        ok(Date.now() - t0 < 30_000, "the chardev socket never appeared");
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    strictEqual(await readUntil(conn, (s) => s.includes("\n"), 60_000), "hello over virtio\n");
    await conn.write(new TextEncoder().encode("ping-from-host"));
    strictEqual(await readUntil(conn, (s) => s.length >= 14, 30_000), "ping-from-host");
    const status = await Promise.race([
      child.status,
      new Promise<null>((r) => setTimeout(() => r(null), 30_000)),
    ]);
    ok(status, "the guest did not power off");
    strictEqual(status.code, 0, await stderr);
    ok(Deno.readTextFileSync(serial).includes("DEMU-VIRTIO-OK"), "the guest's marker");
  } finally {
    try {
      conn?.close();
    } catch { /* closed */ }
    if (child) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
}

const DEMU = [Deno.execPath(), ["run", "-A", `${root}emu/main.ts`]] as const;

Deno.test({
  name: "virtio guest: the real QEMU (TCG) runs the boot-sector virtio console driver",
  ignore: !NASM || !QEMU,
  fn: () => runGuest("qemu-system-x86_64", ["-accel", "tcg"]),
});

Deno.test({
  name: "virtio guest: demu's interpreter carries the same bytes through virtio-serial",
  ignore: !NASM,
  sanitizeResources: false,
  fn: () => runGuest(DEMU[0], [...DEMU[1], "-accel", "tcg"]),
});

Deno.test({
  name: "virtio guest: demu under KVM carries the same bytes through virtio-serial",
  ignore: !NASM || !KVM,
  sanitizeResources: false,
  fn: () => runGuest(DEMU[0], [...DEMU[1], "-accel", "kvm"]),
});

const QEMU_IMG = haveCommand("qemu-img") && haveCommand("qemu-io");
if (!QEMU_IMG) console.warn("WARNING: qemu-img/qemu-io not installed: virtio-blk guest skipped");

async function runBlkGuest(cmd: string, pre: string[]): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "demu-virtio-blk-guest-" });
  try {
    const img = await buildImage(dir, "virtio_blk");
    const disk = `${dir}/data.qcow2`;
    const mk = await new Deno.Command("qemu-img", {
      args: ["create", "-q", "-f", "qcow2", disk, "4M"],
    }).output();
    ok(mk.success);
    const child = new Deno.Command(cmd, {
      args: [
        ...pre,
        ...["-display", "none", "-no-reboot", "-monitor", "none", "-serial", "stdio"],
        ...["-drive", `file=${img},format=raw`, "-drive", `if=virtio,file=${disk},format=qcow2`],
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
    }, 60_000);
    const out = await child.output();
    clearTimeout(timer);
    const text = new TextDecoder().decode(out.stdout);
    strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
    ok(text.includes("DEMU-VIRTIO-BLK-OK"), text.slice(-300));
    const check = await new Deno.Command("qemu-img", { args: ["check", disk] }).output();
    const ct = new TextDecoder().decode(check.stdout);
    strictEqual(check.code, 0, ct);
    ok(ct.includes("No errors were found on the image."), ct);
    const io = await new Deno.Command("qemu-io", {
      args: [
        "-c",
        "read -P 0x56 512 512",
        "-c",
        "read -P 0 0 512",
        "-c",
        "read -P 0 1024 4k",
        disk,
      ],
    }).output();
    const it = new TextDecoder().decode(io.stdout);
    ok(io.success && !/Pattern verification failed/.test(it), it);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "virtio guest: the real QEMU (TCG) runs the boot-sector virtio-blk driver",
  ignore: !NASM || !QEMU || !QEMU_IMG,
  fn: () => runBlkGuest("qemu-system-x86_64", ["-accel", "tcg"]),
});

Deno.test({
  name: "virtio guest: demu's interpreter writes a virtio-blk qcow2 disk qemu-img finds clean",
  ignore: !NASM || !QEMU_IMG,
  fn: () => runBlkGuest(DEMU[0], [...DEMU[1], "-accel", "tcg"]),
});

Deno.test({
  name: "virtio guest: demu under KVM writes a virtio-blk qcow2 disk qemu-img finds clean",
  ignore: !NASM || !QEMU_IMG || !KVM,
  fn: () => runBlkGuest(DEMU[0], [...DEMU[1], "-accel", "kvm"]),
});
