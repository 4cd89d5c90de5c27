/**
 * End to end with a real VMM: the real qemu-system-x86_64 (TCG) boots the Debian amd64 kernel
 * with an initramfs holding Deno and demu's agent (tests/guests/agent/build.ts); a virtio-serial
 * port named org.qemu.guest_agent.0 carries the agent's channel to a unix socket on the host,
 * where demu's qemu-ga-client drives it: ping, info, a file written then read back, exec with
 * captured output, and a powerdown that ends QEMU.
 *
 * Then the i386 guest of the issue (tests/guests/agent/i386.ts): the real qemu-ga from Debian's
 * i386 packages on the i386 kernel, driven the same way, plus a `-drive if=virtio` disk the guest
 * formats and writes (through guest-exec), checked afterwards with the real qemu-img; on the real
 * QEMU and in demu (its interpreter, its virtio-serial and virtio-blk).
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { buildAgentGuest, missingInputs } from "./guests/agent/build.ts";
import {
  buildI386Guest,
  I386_APPEND,
  missingI386Inputs,
  READY as I386_READY,
} from "./guests/agent/i386.ts";

const CLIENT = new URL("../tools/qemu-ga-client.ts", import.meta.url).pathname;

function hasQemu(): boolean {
  try {
    return new Deno.Command("qemu-system-x86_64", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
}

const why = !hasQemu() ? "qemu-system-x86_64 is not installed (qemu-system-x86)" : missingInputs();
if (why) console.warn(`WARNING: agent_e2e_test skipped: ${why}`);

/** Runs demu's qemu-ga-client against the socket; returns status and output. */
async function client(
  sock: string,
  args: string[],
): Promise<{ code: number; out: string; err: string }> {
  const p = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLIENT, `--address=unix:${sock}`, "--timeout=10", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      p.kill("SIGKILL");
    } catch { /* gone */ }
  }, 30_000);
  const o = await p.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

async function execute(sock: string, req: unknown): Promise<Record<string, unknown>> {
  const r = await client(sock, ["execute", JSON.stringify(req)]);
  strictEqual(r.code, 0, `execute ${JSON.stringify(req)}: ${r.err}`);
  const reply = JSON.parse(r.out);
  ok("return" in reply, `no return in ${r.out}`);
  return reply.return;
}

const b64 = (s: string) => btoa(s);
const unb64 = (s: string) => atob(s);

Deno.test({
  name: "agent e2e: QEMU boots Linux with demu's agent on virtio-serial; the client drives it",
  ignore: why !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const guest = await buildAgentGuest();
    await using dir = await (async () => {
      const path = await Deno.makeTempDir({ prefix: "demu-agent-e2e-" });
      return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
    })();
    const sock = `${dir.path}/qga.sock`;
    const serial = `${dir.path}/serial.log`;
    const qemu = new Deno.Command("qemu-system-x86_64", {
      args: [
        ...["-machine", "pc", "-accel", "tcg", "-cpu", "max", "-m", "1G"],
        ...["-nographic", "-no-reboot", "-monitor", "none", "-serial", `file:${serial}`],
        ...["-kernel", guest.kernel, "-initrd", guest.initrd],
        ...["-append", "console=ttyS0 quiet panic=-1"],
        ...["-chardev", `socket,path=${sock},server=on,wait=off,id=qga0`],
        ...["-device", "virtio-serial"],
        ...["-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"],
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(qemu.stderr).text();
    const status = qemu.status;
    let exited = false;
    status.then(() => exited = true);
    const serialText = () => {
      try {
        return Deno.readTextFileSync(serial).slice(-4000);
      } catch {
        return "";
      }
    };
    try {
      // Boot and start the agent: a few seconds on an idle machine, more on a shared one.
      const deadline = Date.now() + 150_000;
      while (!serialText().includes("demu-guest: starting agent")) {
        ok(!exited, `QEMU exited during boot:\n${serialText()}`);
        ok(Date.now() < deadline, `the guest did not start the agent in time:\n${serialText()}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      // Deno's start-up in a TCG guest takes a while: ping until the agent answers.
      let ping = await client(sock, ["ping"]);
      while (ping.code !== 0) {
        ok(!exited, `QEMU exited:\n${serialText()}`);
        ok(Date.now() < deadline, `the agent never answered: ${ping.err}\n${serialText()}`);
        await new Promise((r) => setTimeout(r, 1000));
        ping = await client(sock, ["ping"]);
      }
      strictEqual(ping.out, "");

      const info = await client(sock, ["info"]);
      strictEqual(info.code, 0, info.err);
      ok(/^version: \d+\.\d+\.\d+\n/.test(info.out), info.out);
      ok(/enabled: .*guest-exec/.test(info.out), info.out);

      // The guest's identity comes from the guest, not the host.
      const os = await execute(sock, { execute: "guest-get-osinfo" });
      strictEqual(os["kernel-release"], guest.kernel.replace(/^.*vmlinuz-/, ""));
      strictEqual(os["machine"], "x86_64");

      // A file written through the agent, then read back (twice: by handle and with `cat`).
      const text = "written by the host through virtio-serial\n".repeat(50);
      const h = await execute(sock, {
        execute: "guest-file-open",
        arguments: { path: "/tmp/e2e.txt", mode: "w" },
      });
      const w = await execute(sock, {
        execute: "guest-file-write",
        arguments: { handle: h, "buf-b64": b64(text) },
      });
      deepStrictEqual(w, { count: text.length, eof: false });
      await execute(sock, { execute: "guest-file-close", arguments: { handle: h } });
      const h2 = await execute(sock, {
        execute: "guest-file-open",
        arguments: { path: "/tmp/e2e.txt", mode: "r" },
      });
      const r = await execute(sock, {
        execute: "guest-file-read",
        arguments: { handle: h2, count: 65536 },
      });
      strictEqual(r.count, text.length);
      strictEqual(unb64(r["buf-b64"] as string), text);
      await execute(sock, { execute: "guest-file-close", arguments: { handle: h2 } });
      const cat = await client(sock, ["cat", "/tmp/e2e.txt"]);
      strictEqual(cat.code, 0, cat.err);
      strictEqual(cat.out, text);

      // Exec with captured output and exit status.
      const { pid } = await execute(sock, {
        execute: "guest-exec",
        arguments: {
          path: "/bin/sh",
          arg: ["-c", "cat /tmp/e2e.txt | wc -l; uname -s; echo oops >&2; exit 3"],
          "capture-output": true,
        },
      }) as { pid: number };
      let st: Record<string, unknown> = { exited: false };
      while (!st.exited) {
        ok(Date.now() < deadline, "the exec never finished");
        st = await execute(sock, { execute: "guest-exec-status", arguments: { pid } });
      }
      strictEqual(st.exitcode, 3);
      strictEqual(unb64(st["out-data"] as string), "50\nLinux\n");
      strictEqual(unb64(st["err-data"] as string), "oops\n");

      // Shutdown: the guest powers off and QEMU (with -no-reboot) exits on its own.
      const down = await client(sock, ["powerdown"]);
      strictEqual(down.code, 0, down.err);
      const end = Date.now() + 60_000;
      while (!exited) {
        ok(Date.now() < end, `QEMU still running after powerdown:\n${serialText()}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      strictEqual((await status).code, 0);
      ok(serialText().includes("reboot: Power down"), serialText());
    } finally {
      if (!exited) {
        try {
          qemu.kill("SIGKILL");
        } catch { /* gone */ }
      }
      await status;
      const e = await stderr;
      if (e.trim()) console.error(`qemu-system-x86_64: ${e}`);
    }
  },
});

// The i386 guest: the real qemu-ga (Debian's i386 package) on the i386 kernel, with a virtio disk
// that the host has the guest format and write through guest-exec.
const whyI386 = !hasCommand("qemu-system-i386")
  ? "qemu-system-i386 is not installed (qemu-system-x86)"
  : !hasCommand("qemu-img")
  ? "qemu-img is not installed (qemu-utils)"
  : missingI386Inputs();
if (whyI386) console.warn(`WARNING: agent_e2e_test i386 guest skipped: ${whyI386}`);
/**
 * The same guest in demu: on the interpreter it boots to qemu-ga in about 45 s here (this host's
 * KVM, kvm_pvm, cannot run the i386 kernel: the real QEMU -enable-kvm stops with the same
 * emulation failure, so the interpreter it is).
 */

function hasCommand(name: string): boolean {
  try {
    return new Deno.Command(name, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

async function runI386(cmd: string, pre: string[], bootMs: number): Promise<void> {
  const guest = await buildI386Guest();
  const dir = await Deno.makeTempDir({ prefix: "demu-agent-i386-" });
  const sock = `${dir}/qga.sock`, serial = `${dir}/serial.log`, disk = `${dir}/disk.qcow2`;
  const mk = await new Deno.Command("qemu-img", {
    args: ["create", "-q", "-f", "qcow2", disk, "64M"],
  }).output();
  ok(mk.success);
  const vm = new Deno.Command(cmd, {
    args: [
      ...pre,
      ...["-m", "256", "-display", "none", "-no-reboot", "-monitor", "none", "-nic", "none"],
      ...["-serial", `file:${serial}`, "-kernel", guest.kernel, "-initrd", guest.initrd],
      ...["-append", I386_APPEND],
      ...["-chardev", `socket,path=${sock},server=on,wait=off,id=qga0`],
      ...["-device", "virtio-serial"],
      ...["-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"],
      ...["-drive", `if=virtio,file=${disk},format=qcow2`],
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(vm.stderr).text();
  let exited = false;
  const status = vm.status.then((s) => {
    exited = true;
    return s;
  });
  const serialText = () => {
    try {
      return Deno.readTextFileSync(serial).slice(-3000);
    } catch {
      return "";
    }
  };
  try {
    const deadline = Date.now() + bootMs;
    while (!serialText().includes(I386_READY)) {
      if (exited) throw new Error(`the VMM exited during boot: ${await stderr}\n${serialText()}`);
      ok(Date.now() < deadline, `qemu-ga did not start in time:\n${serialText()}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    let ping = await client(sock, ["ping"]);
    while (ping.code !== 0) {
      ok(Date.now() < deadline, `qemu-ga never answered: ${ping.err}\n${serialText()}`);
      await new Promise((r) => setTimeout(r, 1000));
      ping = await client(sock, ["ping"]);
    }
    const info = await client(sock, ["info"]);
    strictEqual(info.code, 0, info.err);
    ok(/^version: 7\.2\.\d+\n/.test(info.out), info.out);
    const os = await execute(sock, { execute: "guest-get-osinfo" });
    strictEqual(os["machine"], "i686");
    // The virtio disk: formatted, mounted, written, unmounted by the guest.
    const { pid } = await execute(sock, {
      execute: "guest-exec",
      arguments: {
        path: "/bin/sh",
        arg: [
          "-c",
          "mke2fs -q /dev/vda && mount -t ext2 /dev/vda /mnt && " +
          "echo demu-virtio-disk-text > /mnt/hello.txt && umount /mnt && echo written",
        ],
        "capture-output": true,
      },
    }) as { pid: number };
    let st: Record<string, unknown> = { exited: false };
    while (!st.exited) {
      ok(Date.now() < deadline, "the exec never finished");
      await new Promise((r) => setTimeout(r, 300));
      st = await execute(sock, { execute: "guest-exec-status", arguments: { pid } });
    }
    strictEqual(
      st.exitcode,
      0,
      `${unb64((st["out-data"] ?? "") as string)}${unb64((st["err-data"] ?? "") as string)}`,
    );
    ok(unb64(st["out-data"] as string).endsWith("written\n"), unb64(st["out-data"] as string));
    const down = await client(sock, ["powerdown"]);
    strictEqual(down.code, 0, down.err);
    const end = Date.now() + 60_000;
    while (!exited) {
      ok(Date.now() < end, `still running after powerdown:\n${serialText()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    strictEqual((await status).code, 0);
    // The real qemu-img: the image is clean and holds the filesystem and the file.
    const check = await new Deno.Command("qemu-img", { args: ["check", disk] }).output();
    const ct = new TextDecoder().decode(check.stdout);
    strictEqual(check.code, 0, ct);
    ok(ct.includes("No errors were found on the image."), ct);
    const raw = `${dir}/disk.raw`;
    ok(
      (await new Deno.Command("qemu-img", { args: ["convert", "-O", "raw", disk, raw] }).output())
        .success,
    );
    const bytes = await Deno.readFile(raw);
    strictEqual(bytes[1024 + 56] | (bytes[1024 + 57] << 8), 0xef53, "the ext2 superblock magic");
    ok(
      new TextDecoder("latin1").decode(bytes).includes("demu-virtio-disk-text\n"),
      "the file's text on the disk",
    );
  } finally {
    if (!exited) {
      try {
        vm.kill("SIGKILL");
      } catch { /* gone */ }
    }
    await status;
    await stderr;
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "agent e2e i386: QEMU runs the real qemu-ga over virtio-serial; a virtio disk is written",
  ignore: whyI386 !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => runI386("qemu-system-i386", ["-machine", "pc", "-accel", "tcg"], 120_000),
});

Deno.test({
  name: "agent e2e i386 in demu: the real qemu-ga over demu's virtio-serial; a virtio disk",
  ignore: whyI386 !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    runI386(
      Deno.execPath(),
      ["run", "-A", new URL("../emu/main.ts", import.meta.url).pathname, "-accel", "tcg"],
      6 * 60_000,
    ),
});
