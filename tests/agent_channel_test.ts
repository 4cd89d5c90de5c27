/**
 * The agent's character-device channels (-m isa-serial and -m virtio-serial) on a
 * pseudo-terminal standing in for the guest's port: the test holds the pty master (the "host"
 * end) through libc, starts the agent on the slave path, and exchanges requests. The real
 * qemu-ga runs the same way beside demu's agent, and their replies are compared.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { findQemuGa } from "../agent/testing.ts";

const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_NONBLOCK = 0o4000;
const F_SETFL = 4;
const EAGAIN = 11;

const libc = Deno.dlopen("libc.so.6", {
  posix_openpt: { parameters: ["i32"], result: "i32" },
  grantpt: { parameters: ["i32"], result: "i32" },
  unlockpt: { parameters: ["i32"], result: "i32" },
  ptsname: { parameters: ["i32"], result: "pointer" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
}).symbols;

function errno(): number {
  return new Deno.UnsafePointerView(libc.__errno_location()!).getInt32();
}

/** A pty pair: the master fd (ours) and the slave's path (the agent's "port"). */
function openPty(): { master: number; slave: string } {
  const master = libc.posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || libc.grantpt(master) < 0 || libc.unlockpt(master) < 0) {
    throw new Error(`cannot set up a pty (errno ${errno()})`);
  }
  libc.fcntl(master, F_SETFL, O_RDWR | O_NONBLOCK);
  const slave = Deno.UnsafePointerView.getCString(libc.ptsname(master)!);
  return { master, slave };
}

function writeAll(fd: number, data: Uint8Array<ArrayBuffer>): void {
  let off = 0;
  while (off < data.length) {
    const n = Number(libc.write(fd, data.subarray(off), BigInt(data.length - off)));
    if (n < 0) throw new Error(`write: errno ${errno()}`);
    off += n;
  }
}

/** Reads from the master until `lines` newline-terminated replies arrived or the time is up. */
async function readLines(fd: number, lines: number, ms = 10000): Promise<string[]> {
  const buf = new Uint8Array(65536);
  let text = "";
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const n = Number(libc.read(fd, buf, BigInt(buf.length)));
    if (n > 0) {
      text += new TextDecoder().decode(buf.subarray(0, n));
      if (text.split("\n").length - 1 >= lines) break;
      continue;
    }
    if (n < 0 && errno() !== EAGAIN && errno() !== 5) throw new Error(`read: errno ${errno()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return text.split("\n").filter((l) => l !== "");
}

async function runOnPty(which: "demu" | "qemu-ga", method: string): Promise<string[]> {
  const { master, slave } = openPty();
  const dir = await Deno.makeTempDir({ prefix: "agent-pty-" });
  let child: Deno.ChildProcess | undefined;
  try {
    if (method === "virtio-serial") {
      // A virtio port is a raw byte pipe; make the pty behave like one.
      const s = await new Deno.Command("stty", { args: ["-F", slave, "raw", "-echo"] }).output();
      ok(s.success, "stty on the pty slave");
    }
    const common = ["-m", method, "-p", slave, "-t", dir, "-l", `${dir}/log`];
    const argv = which === "demu"
      ? [
        Deno.execPath(),
        "run",
        "-A",
        new URL("../agent/main.ts", import.meta.url).pathname,
        ...common,
      ]
      : [findQemuGa()!, ...common];
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const requests = [
      '{"execute":"guest-ping","id":"serial"}',
      '{"execute":"guest-sync","arguments":{"id":12345}}',
      '{"execute":"guest-get-host-name"}',
      '{"execute":"guest-no-such"}',
    ];
    // The agent may still be starting: repeat a sync (new id each time) until one is answered,
    // then sync once more and drop everything before that answer (late replies to retries).
    const enc = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
    const sync = (id: number) =>
      enc(`\xff{"execute":"guest-sync-delimited","arguments":{"id":${id}}}`);
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      writeAll(master, sync(100 + i));
      up = (await readLines(master, 1, 200)).length > 0;
    }
    ok(up, `${which} answered on ${method}`);
    writeAll(master, sync(77));
    let synced = false;
    for (let i = 0; i < 200 && !synced; i++) {
      synced = (await readLines(master, 1, 100)).some((l) => l.endsWith('{"return": 77}'));
    }
    ok(synced, `${which} resynchronised on ${method}`);
    const out: string[] = [];
    for (const r of requests) {
      writeAll(master, enc(r));
      out.push(...await readLines(master, 1));
    }
    return out;
  } finally {
    try {
      child?.kill("SIGTERM");
    } catch {
      // gone
    }
    await child?.status;
    libc.close(master);
    await Deno.remove(dir, { recursive: true });
  }
}

for (const method of ["isa-serial", "virtio-serial"]) {
  Deno.test(`agent channel: -m ${method} on a pty, demu beside qemu-ga`, async () => {
    const demu = await runOnPty("demu", method);
    strictEqual(demu.length, 4);
    strictEqual(demu[0], '{"return": {}, "id": "serial"}');
    strictEqual(demu[1], '{"return": 12345}');
    strictEqual(
      demu[3],
      '{"error": {"class": "CommandNotFound", "desc": "The command guest-no-such has not been found"}}',
    );
    if (!findQemuGa()) {
      console.warn("\n!!! WARNING: qemu-ga not installed: serial comparison SKIPPED !!!\n");
      return;
    }
    deepStrictEqual(demu, await runOnPty("qemu-ga", method));
  });
}
