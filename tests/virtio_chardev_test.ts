/**
 * The -chardev backends behind a virtio console, driven by a guest: the boot sector of
 * tests/guests/agent/virtio_console.asm sends "hello over virtio\n" on the console port, echoes
 * the first buffer of host data and powers off. Each backend (stdio, file, pipe with P.in/P.out
 * and with P alone, unix and tcp socket servers, a reconnecting socket client, logfile=) runs
 * the same guest on the real qemu-system-x86_64 (TCG) and on demu's interpreter, and both must
 * carry the same bytes. The option errors are compared with QEMU's, line for line.
 */
import { ok, strictEqual } from "node:assert/strict";
import { haveCommand, runDemu, runUntil } from "./guests/pc/run.ts";

const root = new URL("../", import.meta.url).pathname;
const NASM = haveCommand("nasm", ["-v"]);
const QEMU = haveCommand("qemu-system-x86_64");
if (!NASM) console.warn("WARNING: nasm is not installed: virtio chardev guest tests skipped");
if (!QEMU) console.warn("WARNING: qemu-system-x86_64 is not installed: demu runs alone");

const GREETING = "hello over virtio\n";
const PING = "ping-from-host";
const enc = new TextEncoder(), dec = new TextDecoder();

interface Peer {
  name: string;
  cmd: string;
  pre: string[];
}
const PEERS: Peer[] = [
  ...(QEMU ? [{ name: "qemu", cmd: "qemu-system-x86_64", pre: ["-accel", "tcg"] }] : []),
  { name: "demu", cmd: Deno.execPath(), pre: ["run", "-A", `${root}emu/main.ts`, "-accel", "tcg"] },
];

async function buildGuest(dir: string, asm = "agent/virtio_console.asm"): Promise<string> {
  const bin = `${dir}/guest.bin`, img = `${dir}/guest.img`;
  const r = await new Deno.Command("nasm", {
    args: [
      "-f",
      "bin",
      "-I",
      `${root}tests/guests/pc/`,
      "-o",
      bin,
      `${root}tests/guests/${asm}`,
    ],
  }).output();
  ok(r.success, dec.decode(r.stderr));
  const disk = new Uint8Array(1 << 20);
  disk.set(await Deno.readFile(bin));
  await Deno.writeFile(img, disk);
  return img;
}

/** An emulator process with its output collected as it comes; always stopped by pid. */
class Emulator {
  out = "";
  err = "";
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array> | null;
  readonly #done: Promise<Deno.CommandStatus>;

  constructor(peer: Peer, args: string[], stdin: boolean) {
    this.#child = new Deno.Command(peer.cmd, {
      args: [...peer.pre, ...args],
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = stdin ? this.#child.stdin.getWriter() : null;
    const pump = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
      const d = new TextDecoder();
      for await (const c of s) add(d.decode(c, { stream: true }));
    };
    const reading = Promise.all([
      pump(this.#child.stdout, (t) => this.out += t),
      pump(this.#child.stderr, (t) => this.err += t),
    ]);
    this.#done = this.#child.status.then(async (s) => {
      await reading;
      return s;
    });
  }

  async write(text: string): Promise<void> {
    await this.#stdin!.write(enc.encode(text));
  }

  /** Waits until `pred` holds (checked every 20 ms) or fails after `ms`. */
  async until(what: string, pred: () => boolean, ms = 60_000): Promise<void> {
    const t0 = Date.now();
    while (!pred()) {
      ok(Date.now() - t0 < ms, `timed out waiting for ${what}; stderr: ${this.err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The exit status, or a failure if the guest has not powered off within `ms`. */
  async exit(ms = 60_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const s = await Promise.race([
      this.#done,
      new Promise<null>((r) => timer = setTimeout(() => r(null), ms)),
    ]);
    clearTimeout(timer);
    ok(s, `the guest did not power off; stderr: ${this.err}`);
    return s;
  }

  async stop(): Promise<void> {
    try {
      await this.#stdin?.close();
    } catch { /* gone */ }
    try {
      this.#child.kill("SIGKILL");
    } catch { /* exited */ }
    await this.#done;
  }
}

/** A scratch directory with the guest image, and the arguments every run shares. */
async function scratch(): Promise<{ dir: string; base: string[]; serial: string }> {
  const dir = await Deno.makeTempDir({ prefix: "demu-chardev-" });
  const img = await buildGuest(dir);
  const serial = `${dir}/serial.log`;
  const base = [
    ...["-display", "none", "-no-reboot", "-nic", "none", "-serial", `file:${serial}`],
    ...["-drive", `file=${img},format=raw`, "-device", "virtio-serial"],
    ...["-device", "virtconsole,chardev=c0"],
  ];
  return { dir, base, serial };
}

/** Runs `body` once per peer in a fresh scratch directory; returns each peer's transcript. */
async function eachPeer(
  body: (peer: Peer, s: { dir: string; base: string[]; serial: string }) => Promise<string>,
): Promise<void> {
  const got: [string, string][] = [];
  for (const peer of PEERS) {
    const s = await scratch();
    try {
      try {
        got.push([peer.name, await body(peer, s)]);
      } catch (e) {
        throw new Error(`${peer.name}: ${(e as Error).message}`, { cause: e });
      }
    } finally {
      await Deno.remove(s.dir, { recursive: true });
    }
  }
  for (const [name, t] of got.slice(1)) strictEqual(t, got[0][1], `${name} beside ${got[0][0]}`);
}

function guestDone(serial: string): void {
  ok(Deno.readTextFileSync(serial).includes("DEMU-VIRTIO-OK"), "the guest's marker on COM1");
}

/** Reads until `done(text)` (or `done` bytes) or fails after 60 s. */
async function readUntil(
  r: { read(b: Uint8Array): Promise<number | null> },
  done: number | ((text: string) => boolean),
) {
  const enough = typeof done === "number" ? (t: string) => t.length >= done : done;
  let text = "";
  const buf = new Uint8Array(256);
  const deadline = Date.now() + 60_000;
  while (!enough(text)) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const got = await Promise.race([
      r.read(buf),
      new Promise<"timeout">((res) =>
        timer = setTimeout(() => res("timeout"), deadline - Date.now())
      ),
    ]);
    clearTimeout(timer);
    ok(got !== "timeout", `timed out; got ${JSON.stringify(text)}`);
    if (got === null) break;
    text += dec.decode(buf.subarray(0, got));
  }
  return text;
}

async function connectUnix(path: string): Promise<Deno.UnixConn> {
  const t0 = Date.now();
  for (;;) {
    try {
      return await Deno.connect({ transport: "unix", path });
    } catch {
      ok(Date.now() - t0 < 30_000, `${path} never accepted a connection`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const guestTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name: `virtio chardev: ${name}`, ignore: !NASM, sanitizeResources: false, fn });

guestTest(
  "stdio: the console on the emulator's stdin and stdout",
  () =>
    eachPeer(async (peer, { base, serial }) => {
      const e = new Emulator(peer, [...base, "-monitor", "none", "-chardev", "stdio,id=c0"], true);
      try {
        await e.until("the greeting", () => e.out.includes("\n"));
        await e.write(PING);
        strictEqual((await e.exit()).code, 0, e.err);
        guestDone(serial);
        return e.out;
      } finally {
        await e.stop();
      }
    }),
);

const SCRIPT = haveCommand("script", ["--version"]);
if (!SCRIPT) {
  console.warn("WARNING: script (util-linux) is missing: the stdio signal= cases skipped");
}

/** Runs the peer in a pseudo-terminal (util-linux script), typing Ctrl-C after the greeting. */
async function ctrlC(peer: Peer, base: string[], signal: string): Promise<string> {
  const quote = (a: string) => `'${a.replaceAll("'", "'\\''")}'`;
  // `exec`: script runs the line through $SHELL -c; a shell left waiting in the foreground process
  // group would die of the same SIGINT (dash does) and script would report 130, whatever the
  // emulator did.
  const cmd = "exec " + [peer.cmd, ...peer.pre, ...base, "-monitor", "none"]
    .concat(["-chardev", `stdio,id=c0,signal=${signal}`]).map(quote).join(" ");
  const e = new Emulator(
    { name: "script", cmd: "script", pre: ["-qfec", cmd, "/dev/null"] },
    [],
    true,
  );
  try {
    await e.until("the greeting", () => e.out.includes("\n"));
    await e.write("\x03");
    strictEqual((await e.exit()).code, 0, e.out);
    return e.out.replaceAll("\r\n", "\n");
  } finally {
    await e.stop();
  }
}

Deno.test({
  name: "virtio chardev: stdio signal=on: Ctrl-C on the terminal stops the emulator",
  ignore: !NASM || !SCRIPT,
  sanitizeResources: false,
  fn: () =>
    eachPeer(async (peer, { base, serial }) => {
      const out = await ctrlC(peer, base, "on");
      strictEqual(out, `${GREETING}qemu-system-x86_64: terminating on signal 2\n`);
      ok(!Deno.readTextFileSync(serial).includes("DEMU-VIRTIO-OK"), "the guest got Ctrl-C");
      return out;
    }),
});

Deno.test({
  name: "virtio chardev: stdio signal=off: Ctrl-C goes to the guest, which echoes it",
  ignore: !NASM || !SCRIPT,
  sanitizeResources: false,
  fn: () =>
    eachPeer(async (peer, { base, serial }) => {
      const out = await ctrlC(peer, base, "off");
      strictEqual(out, `${GREETING}\x03`);
      guestDone(serial);
      return out;
    }),
});

for (const append of [false, true]) {
  guestTest(
    `file: output to the file${append ? ", appended (append=on)" : ", truncated"}`,
    () =>
      eachPeer(async (peer, { dir, base }) => {
        const out = `${dir}/console.out`;
        await Deno.writeTextFile(out, "old contents\n");
        const e = new Emulator(peer, [
          ...base,
          ...[
            "-monitor",
            "none",
            "-chardev",
            `file,id=c0,path=${out}${append ? ",append=on" : ""}`,
          ],
        ], false);
        try {
          // A file gives no input: the guest waits for it after its greeting, until stopped.
          await e.until("the greeting in the file", () =>
            Deno.readTextFileSync(out).includes("\n", 13));
          await new Promise((r) =>
            setTimeout(r, 200)
          ); // nothing more may follow
          const text = Deno.readTextFileSync(out);
          strictEqual(text, append ? `old contents\n${GREETING}` : GREETING);
          return text;
        } finally {
          await e.stop();
        }
      }),
  );
}

guestTest(
  "pipe: P.in carries host input, P.out the guest's output",
  () =>
    eachPeer(async (peer, { dir, base, serial }) => {
      const p = `${dir}/console`;
      for (const f of [`${p}.in`, `${p}.out`]) {
        ok((await new Deno.Command("mkfifo", { args: [f] }).output()).success);
      }
      // Opened read-write as the emulator opens them, so neither side waits for the other.
      const fromGuest = await Deno.open(`${p}.out`, { read: true, write: true });
      const toGuest = await Deno.open(`${p}.in`, { read: true, write: true });
      const e = new Emulator(peer, [
        ...base,
        "-monitor",
        "none",
        "-chardev",
        `pipe,id=c0,path=${p}`,
      ], false);
      try {
        const greeting = await readUntil(fromGuest, GREETING.length);
        await toGuest.write(enc.encode(PING));
        const echo = await readUntil(fromGuest, PING.length);
        strictEqual((await e.exit()).code, 0, e.err);
        guestDone(serial);
        return greeting + echo;
      } finally {
        await e.stop();
        fromGuest.close();
        toGuest.close();
      }
    }),
);

guestTest(
  "pipe: P alone (no P.in/P.out) for both ways: the guest hears its own greeting",
  () =>
    eachPeer(async (peer, { dir, base, serial }) => {
      const p = `${dir}/loop`;
      ok((await new Deno.Command("mkfifo", { args: [p] }).output()).success);
      const e = new Emulator(peer, [
        ...base,
        "-monitor",
        "none",
        "-chardev",
        `pipe,id=c0,path=${p}`,
      ], false);
      try {
        // The greeting goes into the FIFO, comes back as input and is echoed: then power-off.
        strictEqual((await e.exit()).code, 0, e.err);
        guestDone(serial);
        return e.err;
      } finally {
        await e.stop();
      }
    }),
);

guestTest(
  "socket: the agent's unix server (server=on,wait=off) with logfile=, started by the monitor",
  () =>
    eachPeer(async (peer, { dir, base, serial }) => {
      const sock = `${dir}/qga.sock`, log = `${dir}/console.log`;
      const e = new Emulator(peer, [
        ...base,
        ...["-S", "-monitor", "stdio"],
        ...["-chardev", `socket,path=${sock},server=on,wait=off,id=c0,logfile=${log}`],
      ], true);
      let conn: Deno.UnixConn | undefined;
      try {
        conn = await connectUnix(sock); // wait=off: the emulator is up and listening
        await e.write("cont\n");
        // Whether the greeting makes it depends on the emulator having taken the connection
        // before the guest writes (until then the port's output is dropped, in QEMU too); on
        // demu's interpreter socket events can lag the guest. The echo always comes back.
        await conn.write(enc.encode(PING));
        const text = await readUntil(conn, (t) => t.endsWith(PING));
        ok(text === PING || text === GREETING + PING, text);
        strictEqual((await e.exit()).code, 0, e.err);
        guestDone(serial);
        strictEqual(Deno.readTextFileSync(log), text, "logfile: the guest's output");
        ok(!(await exists(sock)), "the socket is removed at exit");
        return PING;
      } finally {
        conn?.close();
        await e.stop();
      }
    }),
);

guestTest(
  "socket: a tcp server holding the start until its client comes (wait=on)",
  () =>
    eachPeer(async (peer, { base, serial }) => {
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (l.addr as Deno.NetAddr).port;
      l.close();
      const e = new Emulator(peer, [
        ...base,
        ...["-monitor", "none", "-chardev", `socket,id=c0,host=127.0.0.1,port=${port},server=on`],
      ], false);
      let conn: Deno.TcpConn | undefined;
      try {
        await e.until("the wait message", () => e.err.includes("QEMU waiting for connection"));
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
        const greeting = await readUntil(conn, GREETING.length);
        await conn.write(enc.encode(PING));
        const echo = await readUntil(conn, PING.length);
        strictEqual((await e.exit()).code, 0, e.err);
        guestDone(serial);
        const wait = e.err.replace(/^.*?: -chardev/, "-chardev").replace(/\n.*/s, "");
        return greeting + echo + wait.replaceAll(`${port}`, "PORT");
      } finally {
        conn?.close();
        await e.stop();
      }
    }),
);

guestTest(
  "socket: a client with reconnect=1 waits for its server",
  () =>
    eachPeer(async (peer, { dir, base, serial }) => {
      const sock = `${dir}/host.sock`;
      const e = new Emulator(peer, [
        ...base,
        ...["-monitor", "none", "-chardev", `socket,id=c0,path=${sock},reconnect=1`],
      ], false);
      let listener: Deno.Listener | undefined;
      let conn: Deno.Conn | undefined;
      try {
        await e.until("the connect failure", () => e.err.includes("Unable to connect"));
        listener = Deno.listen({ transport: "unix", path: sock });
        conn = await listener.accept(); // at the next attempt, within a second or so
        // What the guest wrote before the connection was dropped (QEMU's disconnected socket
        // swallows it): the greeting may be lost; the echo of what is sent now may not.
        await conn.write(enc.encode(PING));
        const text = await readUntil(conn, (t) => t.endsWith(PING));
        ok(text === PING || text === GREETING + PING, text);
        strictEqual((await e.exit()).code, 0, e.err);
        guestDone(serial);
        return PING + e.err.replace(/\n.*/s, "").replaceAll(dir, "DIR");
      } finally {
        conn?.close();
        listener?.close();
        await e.stop();
      }
    }),
);

guestTest(
  "-serial chardev:ID: COM1 on a -chardev socket server (wait=on)",
  () =>
    eachPeer(async (peer, { dir }) => {
      const img = await buildGuest(dir, "pc/serial_poweroff.asm");
      const sock = `${dir}/com1.sock`;
      const e = new Emulator(peer, [
        ...["-display", "none", "-no-reboot", "-nic", "none", "-monitor", "none"],
        ...["-drive", `file=${img},format=raw`],
        ...["-chardev", `socket,id=com1,path=${sock},server=on`, "-serial", "chardev:com1"],
      ], false);
      let conn: Deno.UnixConn | undefined;
      try {
        await e.until("the wait message", () => e.err.includes("QEMU waiting for connection"));
        conn = await connectUnix(sock);
        const text = await readUntil(conn, (t) => t.includes("\n"));
        strictEqual(text, "DEMU-BOOT-OK\r\n");
        strictEqual((await e.exit()).code, 0, e.err);
        return text + e.err.replaceAll(dir, "DIR");
      } finally {
        conn?.close();
        await e.stop();
      }
    }),
);

async function exists(p: string): Promise<boolean> {
  try {
    await Deno.lstat(p);
    return true;
  } catch {
    return false;
  }
}

// ---- option errors, beside QEMU's ----------------------------------------------------------

const BASE = ["-display", "none", "-S", "-monitor", "none", "-nic", "none"];

/** -chardev values QEMU refuses; demu must print the same lines and exit 1. */
const BAD = [
  "stdio,id=a,bogus=1",
  "stdio,id=a,signal=maybe",
  "file,id=a",
  "file,id=a,path=/nonexistent-dir/x",
  "file,id=a,path=/tmp,append=on",
  "pipe,id=a",
  "pipe,id=a,path=/nonexistent-dir/p",
  "socket,id=a",
  "socket,id=a,fd=x",
  "socket,id=a,port=5",
  "socket,id=a,host=localhost",
  "socket,id=a,path=/nonexistent-dir/none.sock",
  "socket,id=a,path=/tmp/x.sock,host=h,port=1",
  "socket,id=a,path=/nonexistent-dir/none.sock,wait=off",
  "socket,id=a,path=/tmp/x.sock,server=on,wait=off,reconnect=1",
  "socket,id=a,path=/nonexistent-dir/s.sock,server=on,wait=off",
  "socket,id=a,path=/tmp,server=on,wait=off",
  "stdio",
  "id=a",
  "",
  "foo,id=a",
  "null,id=1a",
  "null,bogus=1,id=1a",
  "null,id=a,width=x",
  "null,id=a,size=1x",
  "null,id=a,tight=maybe",
  "null,id=a,,b",
  "null,id=a,b=c,,d",
  "null,id=a,logfile=/nonexistent-dir/log",
];

/** Whole command lines QEMU refuses (the -chardev's users). */
const BAD_LINES = [
  ["-serial", "chardev:none-such"],
  [
    ...["-chardev", "null,id=x", "-device", "virtio-serial"],
    ...["-device", "virtserialport,chardev=x", "-device", "virtserialport,chardev=x"],
  ],
];

Deno.test("virtio chardev: bad -chardev options fail with QEMU's lines, exit 1", async () => {
  for (const line of [...BAD.map((c) => ["-chardev", c]), ...BAD_LINES]) {
    const args = [...BASE, ...line], c = line.join(" ");
    const d = await runDemu(args, { timeoutMs: 30_000 });
    strictEqual(d.code, 1, `${c}: ${d.stderr}`);
    ok(d.stderr.startsWith(`qemu-system-x86_64: ${line[line.length - 2]} `), d.stderr);
    if (QEMU) {
      const q = await runUntil("qemu-system-x86_64", args, { timeoutMs: 10_000 });
      strictEqual(q.code, 1, `QEMU accepts ${c}`);
      strictEqual(d.stderr, q.stderr, c);
    }
  }
});

/** Accepted with a warning or an informational line: the same text, the machine starts. */
const NOTED: [string, string][] = [
  ["socket,id=a,path=SOCK,server,nowait", "Please use wait=off instead"],
  ["null,id=a,noserver", "Please use server=off instead"],
  ["socket,id=a,path=SOCK,server=on", "QEMU waiting for connection on"],
  ["socket,id=a,path=SOCK-absent,reconnect=1", "Unable to connect character device a"],
];

Deno.test("virtio chardev: deprecated short forms and waits say what QEMU says", async () => {
  const dir = await Deno.makeTempDir({ prefix: "demu-chardev-opts-" });
  try {
    for (const [c, marker] of NOTED) {
      const args = [...BASE, "-chardev", c.replace("SOCK", `${dir}/s.sock`)];
      const d = await runDemu(args, { timeoutMs: 30_000, until: marker });
      ok(d.matched, `${c}: ${d.stderr}`);
      if (QEMU) {
        const q = await runUntil("qemu-system-x86_64", args, { timeoutMs: 10_000, until: marker });
        ok(q.matched, `QEMU: ${c}: ${q.stderr}`);
        const upTo = (s: string) => s.slice(0, s.indexOf(marker) + marker.length);
        strictEqual(upTo(d.stderr), upTo(q.stderr), c);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
