/**
 * demu's qemu-ga-client (tools/qemu-ga-client.ts) against the real qemu-ga and against demu's
 * agent: the same subcommands give the same output from both; errors (agent absent, command
 * blocked, no answer) are one line and a non-zero exit. Destructive subcommands (powerdown,
 * suspend, fstrim, fsfreeze freeze) run only against agents started with them blocked (-b).
 */
import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { type AgentProcess, findQemuGa, RawConn, startAgent } from "../agent/testing.ts";
import { closeFd, openPty, readSome, writeAll } from "../agent/testing_pty.ts";

const CLIENT = new URL("../tools/qemu-ga-client.ts", import.meta.url).pathname;
const qemuGa = findQemuGa();
if (!qemuGa) {
  console.warn("\n!!! WARNING: qemu-ga is not installed: client tests run against demu only !!!\n");
}
const WHO: ("demu" | "qemu-ga")[] = qemuGa ? ["qemu-ga", "demu"] : ["demu"];

interface Run {
  code: number;
  out: string;
  err: string;
  bytes: Uint8Array;
}

async function client(...args: string[]): Promise<Run> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLIENT, ...args],
    stdin: "null",
    env: { QGA_CLIENT_ADDRESS: "" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr), bytes: r.stdout };
}

async function withBoth(
  args: string[],
  fn: (agents: Record<string, AgentProcess>) => Promise<void>,
): Promise<void> {
  const agents: Record<string, AgentProcess> = {};
  try {
    for (const who of WHO) agents[who] = await startAgent(who, { args });
    await fn(agents);
  } finally {
    for (const a of Object.values(agents)) await a.stop();
  }
}

Deno.test("qemu-ga-client: subcommands give the same output from qemu-ga and demu's agent", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qga-client-" });
  try {
    // A binary file bigger than one read chunk, so cat has to loop.
    const data = new Uint8Array(200_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
    await Deno.writeFile(`${dir}/blob`, data);
    await withBoth([], async (agents) => {
      const outputs: Record<string, string[]> = {};
      for (const [who, agent] of Object.entries(agents)) {
        const addr = `--address=unix:${agent.socket}`;
        const out: string[] = [];
        const info = await client(addr, "info");
        strictEqual(info.code, 0, info.err);
        out.push(info.out.split("\n")[0]);
        match(info.out, /\tenabled: .*guest-ping/);
        const ping = await client(addr, "ping");
        strictEqual(ping.code, 0, ping.err);
        strictEqual(ping.out, "");
        const cat = await client(`--address=${agent.socket}`, "cat", `${dir}/blob`);
        strictEqual(cat.code, 0, cat.err);
        deepStrictEqual(cat.bytes, data, `${who}: cat returns the file's bytes`);
        for (
          const args of [
            ["fsfreeze", "status"],
            ["ifconfig"],
            ["execute", '{"execute":"guest-sync","arguments":{"id":5}}'],
            ["execute", '"guest-get-osinfo"'],
          ]
        ) {
          const r = await client(addr, ...args);
          strictEqual(r.code, 0, `${who} ${args}: ${r.err}`);
          out.push(r.out);
        }
        const bad = await client(addr, "execute", '{"execute":"guest-file-open","arguments":{}}');
        strictEqual(bad.code, 1);
        out.push(bad.out);
        const missing = await client(addr, "cat", `${dir}/missing`);
        strictEqual(missing.code, 1);
        out.push(missing.err);
        outputs[who] = out;
      }
      for (const who of WHO) deepStrictEqual(outputs[who], outputs[WHO[0]], `${who} output`);
      const demu = outputs.demu;
      strictEqual(demu[1], "thawed\n");
      strictEqual(demu[3], '{"return": 5}\n');
      strictEqual(
        demu[6],
        `qemu-ga-client: failed to open file '${dir}/missing' (mode: 'r'): No such file or directory\n`,
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qemu-ga-client: blocked destructive commands report the agent's error", async () => {
  const blocked = [
    "guest-shutdown",
    "guest-suspend-ram",
    "guest-suspend-disk",
    "guest-suspend-hybrid",
    "guest-fstrim",
    "guest-fsfreeze-freeze",
  ];
  await withBoth(["-b", blocked.join(",")], async (agents) => {
    for (const agent of Object.values(agents)) {
      const addr = `--address=unix:${agent.socket}`;
      for (
        const [args, cmd] of [
          [["powerdown"], "guest-shutdown"],
          [["reboot"], "guest-shutdown"],
          [["halt"], "guest-shutdown"],
          [["suspend", "ram"], "guest-suspend-ram"],
          [["suspend", "hybrid"], "guest-suspend-hybrid"],
          [["fstrim"], "guest-fstrim"],
          [["fsfreeze", "freeze"], "guest-fsfreeze-freeze"],
        ] as const
      ) {
        const r = await client(addr, ...args);
        strictEqual(r.code, 1, `${args}`);
        strictEqual(r.err, `qemu-ga-client: Command ${cmd} has been disabled\n`);
      }
    }
  });
});

Deno.test("qemu-ga-client: resynchronises after a previous client's stale partial message", async () => {
  await withBoth([], async (agents) => {
    for (const agent of Object.values(agents)) {
      const raw = await RawConn.open(agent.socket);
      await raw.send('{"execute":"guest-sync","arguments":{"id":');
      await raw.close();
      const r = await client(`--address=unix:${agent.socket}`, "execute", '"guest-ping"');
      strictEqual(r.code, 0, r.err);
      strictEqual(r.out, '{"return": {}}\n');
    }
  });
});

Deno.test("qemu-ga-client: usage errors, an absent agent and a silent agent", async () => {
  const help = await client("--help");
  strictEqual(help.code, 0);
  match(help.out, /Usage: qemu-ga-client/);
  const noCmd = await client("--address=/tmp/x");
  strictEqual(noCmd.code, 1);
  const badCmd = await client("--address=/tmp/x", "frobnicate");
  strictEqual(badCmd.code, 1);
  match(badCmd.err, /invalid command 'frobnicate'/);
  const noAddr = await client("ping");
  strictEqual(noAddr.code, 1);
  match(noAddr.err, /no agent address/);
  const dir = await Deno.makeTempDir({ prefix: "qga-client-" });
  try {
    const absent = await client(`--address=unix:${dir}/none.sock`, "ping");
    strictEqual(absent.code, 1);
    strictEqual(
      absent.err,
      `qemu-ga-client: failed to connect to unix:${dir}/none.sock: No such file or directory\n`,
    );
    // Something listens but never answers: ping gives up after its timeout.
    const listener = Deno.listen({ transport: "unix", path: `${dir}/mute.sock` });
    const held: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const c of listener) held.push(c);
    })();
    const mute = await client(`--address=unix:${dir}/mute.sock`, "ping", "1");
    listener.close();
    await accepting;
    held.forEach((c) => c.close());
    strictEqual(mute.code, 1);
    strictEqual(mute.err, "qemu-ga-client: Not responded in 1 sec\n");
    ok(!mute.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Copies bytes both ways between two streams until either side ends. */
async function splice(
  a: { read(p: Uint8Array): Promise<number | null>; write(p: Uint8Array): Promise<number> },
  b: { read(p: Uint8Array): Promise<number | null>; write(p: Uint8Array): Promise<number> },
): Promise<void> {
  const pump = async (from: typeof a, to: typeof b) => {
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) return;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch {
      // one side closed
    }
  };
  await Promise.race([pump(a, b), pump(b, a)]);
}

Deno.test("qemu-ga-client: tcp addresses (HOST:PORT and tcp:HOST:PORT)", async () => {
  // qemu-ga has no TCP transport; a relay stands in for a VMM's TCP chardev in front of it.
  const agent = await startAgent("demu");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const relay = (async () => {
    for await (const tcp of listener) {
      const unix = await Deno.connect({ transport: "unix", path: agent.socket });
      conns.push(tcp, unix);
      splice(tcp, unix).then(() => {
        for (const c of [tcp, unix]) {
          try {
            c.close();
          } catch {
            // closed
          }
        }
      });
    }
  })();
  try {
    const port = listener.addr.port;
    for (const addr of [`127.0.0.1:${port}`, `tcp:127.0.0.1:${port}`]) {
      const r = await client(
        `--address=${addr}`,
        "execute",
        '{"execute":"guest-sync","arguments":{"id":3}}',
      );
      strictEqual(r.code, 0, r.err);
      strictEqual(r.out, '{"return": 3}\n');
    }
  } finally {
    listener.close();
    await relay;
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // closed
      }
    }
    await agent.stop();
  }
});

Deno.test("qemu-ga-client: a serial address (a tty standing for the host's end of the port)", async () => {
  // The client opens the pty slave; the test relays the master to demu's agent socket.
  const agent = await startAgent("demu");
  const { master, slave } = openPty();
  const unix = await Deno.connect({ transport: "unix", path: agent.socket });
  let stop = false;
  const toAgent = (async () => {
    while (!stop) {
      const data = readSome(master);
      if (data) await unix.write(data);
      else await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const fromAgent = (async () => {
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await unix.read(buf);
        if (n === null) return;
        writeAll(master, buf.slice(0, n));
      }
    } catch {
      // closed
    }
  })();
  try {
    for (const addr of [`serial:${slave}`, slave]) {
      const r = await client(
        `--address=${addr}`,
        "execute",
        '{"execute":"guest-sync","arguments":{"id":4}}',
      );
      strictEqual(r.code, 0, r.err);
      strictEqual(r.out, '{"return": 4}\n');
    }
  } finally {
    stop = true;
    await toAgent;
    unix.close();
    await fromAgent;
    closeFd(master);
    await agent.stop();
  }
});
