/**
 * End to end with a real VMM: the real qemu-system-x86_64 (TCG) boots the Debian amd64 kernel
 * with an initramfs holding Deno and demu's agent (tests/guests/agent/build.ts); a virtio-serial
 * port named org.qemu.guest_agent.0 carries the agent's channel to a unix socket on the host,
 * where demu's qemu-ga-client drives it: ping, info, a file written then read back, exec with
 * captured output, and a powerdown that ends QEMU.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { buildAgentGuest, missingInputs } from "./guests/agent/build.ts";

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
