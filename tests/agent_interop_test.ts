/**
 * demu's guest agent beside the real qemu-ga (Debian qemu-guest-agent), both in unix-listen
 * mode on temp sockets: the same requests to both, replies compared in value where they are
 * deterministic (errors: class and wording) and in shape (keys, types) where values
 * legitimately differ (times, pids, counters). Nothing here changes this machine: the
 * destructive commands are exercised through their argument checks, error paths and -b.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import {
  type AgentProcess,
  canonical,
  findQemuGa,
  RawConn,
  shape,
  startAgent,
} from "../agent/testing.ts";

const qemuGa = findQemuGa();
if (!qemuGa) {
  console.warn(
    "\n!!! WARNING: qemu-ga (Debian qemu-guest-agent) is not installed: agent interop tests SKIPPED !!!\n",
  );
}

interface Pair {
  real: RawConn;
  demu: RawConn;
}

async function both(p: Pair, req: string | object): Promise<[unknown, unknown]> {
  const [a, b] = await Promise.all([p.real.call(req), p.demu.call(req)]);
  return [canonical(a), canonical(b)];
}

async function withAgents(
  args: string[],
  fn: (p: Pair, agents: { real: AgentProcess; demu: AgentProcess }) => Promise<void>,
): Promise<void> {
  const [real, demu] = await Promise.all([
    startAgent("qemu-ga", { args }),
    startAgent("demu", { args }),
  ]);
  const p = { real: await RawConn.open(real.socket), demu: await RawConn.open(demu.socket) };
  try {
    await fn(p, { real, demu });
  } finally {
    await p.real.close();
    await p.demu.close();
    await real.stop();
    await demu.stop();
  }
}

/** Runs a comparison, retrying a few times when the machine changed between the two reads. */
async function settled(check: () => Promise<void>): Promise<void> {
  for (let i = 0;; i++) {
    try {
      return await check();
    } catch (e) {
      if (i >= 4) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Requests whose replies must be identical (errors above all). */
const SAME_REPLY: string[] = [
  '{"execute":"guest-ping"}',
  '{"execute":"guest-ping","id":5}',
  '{"execute":"guest-ping","id":[1,{"a":"x"}]}',
  '{"execute":"guest-ping","id":"\\u00e9\\/\\ud83d\\ude00\\t"}',
  '{"execute":"guest-ping","id":0.1}',
  '{"execute":"guest-ping","id":-0.0}',
  '{"execute":"guest-ping","id":1.5e3}',
  '{"execute":"guest-sync","arguments":{"id":9223372036854775807}}',
  '{"execute":"guest-sync","arguments":{"id":-5}}',
  '{"execute":"guest-sync","arguments":{"id":"x"}}',
  '{"execute":"guest-sync","arguments":{"id":1.5}}',
  '{"execute":"guest-sync","arguments":{"id":18446744073709551615}}',
  '{"execute":"guest-sync"}',
  '{"execute":"guest-pingx"}',
  '{"execute":1}',
  "[1]",
  '"str"',
  '{"foo":1}',
  "{}",
  '{"id":1}',
  '{"execute":"guest-ping","arguments":5}',
  '{"execute":"guest-ping","arguments":{"a":1}}',
  '{"exec-oob":"guest-ping"}',
  "{bad json}",
  "}",
  "[1 2]",
  "[1,]",
  '{"a":}',
  '{"a"}',
  "{1:2}",
  '{"execute":"guest-ping" "x":1}',
  '{"a":"\\q"}',
  "{'execute':'guest-ping'}",
  '{"execute":"guest-get-devices"}',
  '{"execute":"guest-file-open","arguments":{"path":"/nonexistent/x"}}',
  '{"execute":"guest-file-open","arguments":{"path":"/tmp","mode":"w"}}',
  '{"execute":"guest-file-open","arguments":{"path":"/tmp/x","mode":"zz"}}',
  '{"execute":"guest-file-read","arguments":{"handle":123}}',
  '{"execute":"guest-file-close","arguments":{"handle":123}}',
  '{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0,"whence":"bogus"}}',
  '{"execute":"guest-file-seek","arguments":{"handle":1,"offset":0,"whence":true}}',
  '{"execute":"guest-file-seek","arguments":{"handle":1}}',
  '{"execute":"guest-set-vcpus","arguments":{"vcpus":5}}',
  '{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":"a","online":true}]}}',
  '{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"online":true}]}}',
  '{"execute":"guest-set-vcpus","arguments":{"vcpus":[]}}',
  '{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":0,"online":false}]}}',
  '{"execute":"guest-set-vcpus","arguments":{"vcpus":[{"logical-id":4099,"online":true}]}}',
  '{"execute":"guest-set-memory-blocks","arguments":{"mem-blks":[{"phys-index":999999,"online":true}]}}',
  '{"execute":"guest-shutdown","arguments":{"mode":"bogus"}}',
  '{"execute":"guest-shutdown","arguments":{"mode":5}}',
  '{"execute":"guest-exec","arguments":{"path":"x","arg":[1]}}',
  '{"execute":"guest-exec","arguments":{"path":"/nonexistent/prog"}}',
  '{"execute":"guest-exec-status","arguments":{"pid":0}}',
  '{"execute":"guest-set-time","arguments":{"time":9000000000000000000}}',
  '{"execute":"guest-set-time","arguments":{"time":-5000000000000000000}}',
  '{"execute":"guest-set-time","arguments":{"time":"now"}}',
  '{"execute":"guest-set-user-password","arguments":{"username":"a:b","password":"eA==","crypted":false}}',
  '{"execute":"guest-set-user-password","arguments":{"username":"nouser-demu","password":"!!","crypted":false}}',
  '{"execute":"guest-set-user-password","arguments":{"username":"nouser-demu","password":"eAo=","crypted":false}}',
  '{"execute":"guest-set-user-password","arguments":{"username":"nouser-demu","password":"eA==","crypted":false}}',
  '{"execute":"guest-set-user-password","arguments":{"username":"x","password":"eA=="}}',
  '{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"nouser-demu"}}',
  '{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"nobody"}}',
  '{"execute":"guest-fsfreeze-status"}',
  '{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":"x"}}',
  '{"execute":"guest-fstrim","arguments":{"minimum":"x"}}',
  '{"execute":"guest-get-host-name"}',
  '{"execute":"guest-get-osinfo"}',
  '{"execute":"guest-get-timezone"}',
  '{"execute":"guest-get-users"}',
  '{"execute":"guest-get-memory-block-info"}',
  '{"execute":"guest-get-vcpus"}',
  '{"execute":"guest-get-memory-blocks"}',
];

Deno.test({
  name: "agent interop: deterministic replies are identical to qemu-ga's",
  ignore: !qemuGa,
  async fn() {
    await withAgents([], async (p) => {
      // Byte for byte: same members in the same order, same number formatting and escapes.
      for (const req of SAME_REPLY) {
        const [real, demu] = await Promise.all([p.real.callRaw(req), p.demu.callRaw(req)]);
        ok(real !== undefined, `qemu-ga answered nothing to ${req}`);
        strictEqual(demu, real, `reply to ${req}`);
      }
    });
  },
});

Deno.test({
  name: "agent interop: stream framing, 0xFF resync and sync-delimited match qemu-ga byte for byte",
  ignore: !qemuGa,
  async fn() {
    await withAgents([], async (p) => {
      const cases: [Uint8Array | string, number][] = [
        [new Uint8Array([0xff, ...new TextEncoder().encode('{"execute":"guest-ping"}')]), 2],
        ['{"execute":"guest-sync-delimited","arguments":{"id":42}}', 1],
        ['{"execute":"guest-ping"}{"execute":"guest-ping","id":2}', 2],
        ['{"execute":@}', 2],
        ['{"execute":"guest-ping", "id": -}', 1],
        ['{"execute":"guest-ping", "id": 01}', 2],
        ['{"execute":"guest-ping", "id": "\x01"}', 2],
        ['{"execute":"guest-ping", "id": TRUE}', 2],
        ['{"execute":"guest-ping", "id": "\\ud800"}', 1],
        ['{"execute":"guest-ping","id":1e400}', 1],
        ['{"execute":"guest-ping","id":100000000000000000000000}', 1],
      ];
      for (const [data, n] of cases) {
        const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
        await Promise.all([p.real.send(bytes), p.demu.send(bytes)]);
        const [a, b] = await Promise.all([p.real.replies(n), p.demu.replies(n)]);
        strictEqual(a.length, n, `qemu-ga reply count for ${new TextDecoder().decode(bytes)}`);
        deepStrictEqual(
          b.map((r) => [r.delimited, r.raw]),
          a.map((r) => [r.delimited, r.raw]),
          `replies to ${new TextDecoder().decode(bytes)}`,
        );
      }
      // A message split over several writes, with a pause, is still one message.
      for (const part of ['{"execute":', '"guest-sync",', '"arguments":{"id":7}}']) {
        await Promise.all([p.real.send(part), p.demu.send(part)]);
        await new Promise((r) => setTimeout(r, 30));
      }
      const [a, b] = await Promise.all([p.real.replies(1), p.demu.replies(1)]);
      deepStrictEqual(canonical(b[0].value), canonical(a[0].value));
      deepStrictEqual(canonical(a[0].value), { return: 7 });
    });
  },
});

/** Replies whose values differ legitimately; compared in shape and in what is stable. */
Deno.test({
  name: "agent interop: system information matches qemu-ga in shape and stable values",
  ignore: !qemuGa,
  async fn() {
    await withAgents([], async (p) => {
      // guest-info: same version, same commands (qemu-ga 7.2 lacks the two newer ones).
      const [ri, di] = await both(p, '{"execute":"guest-info"}') as {
        return: {
          version: string;
          supported_commands: { name: string; enabled: boolean; "success-response": boolean }[];
        };
      }[];
      strictEqual(di.return.version, ri.return.version);
      const byName = (l: typeof ri.return.supported_commands) =>
        Object.fromEntries(l.map((c) => [c.name, c]));
      const newer = ["guest-get-load", "guest-network-get-route"];
      const demuCmds = byName(di.return.supported_commands);
      for (const n of newer) ok(demuCmds[n]?.enabled, `${n} is offered`);
      for (const n of newer) delete demuCmds[n];
      deepStrictEqual(demuCmds, byName(ri.return.supported_commands));
      // Beyond the two newer commands, the reply is byte for byte qemu-ga's.
      const [rawReal, rawDemu] = await Promise.all([
        p.real.callRaw('{"execute":"guest-info"}'),
        p.demu.callRaw('{"execute":"guest-info"}'),
      ]);
      const dropNewer = (s: string) =>
        s.replace(
          /\{"enabled": true, "name": "guest-(get-load|network-get-route)", "success-response": true\}, /g,
          "",
        );
      strictEqual(dropNewer(rawDemu!), rawReal);

      const [rt, dt] = await both(p, '{"execute":"guest-get-time"}') as { return: bigint }[];
      strictEqual(typeof dt.return, "bigint");
      ok(Number(dt.return - rt.return) / 1e9 < 5, "clocks agree within 5 s");

      const sortById = (l: { "logical-id": number }[]) =>
        [...l].sort((a, b) => a["logical-id"] - b["logical-id"]);
      const [rv, dv] = await both(p, '{"execute":"guest-get-vcpus"}') as {
        return: { "logical-id": number }[];
      }[];
      deepStrictEqual(sortById(dv.return), sortById(rv.return));

      const byIndex = (l: { "phys-index": number }[]) =>
        [...l].sort((a, b) => a["phys-index"] - b["phys-index"]);
      const [rm, dm] = await both(p, '{"execute":"guest-get-memory-blocks"}') as {
        return: { "phys-index": number }[];
      }[];
      deepStrictEqual(byIndex(dm.return), byIndex(rm.return));

      // fsinfo: all but the used bytes (which move as other tests write) are identical. Other
      // tests mount and unmount loop filesystems meanwhile, so a mismatch is retried.
      type Fs = { "used-bytes"?: number };
      const strip = (l: Fs[]) => l.map(({ "used-bytes": _u, ...rest }) => rest);
      await settled(async () => {
        const [rf, df] = await both(p, '{"execute":"guest-get-fsinfo"}') as { return: Fs[] }[];
        deepStrictEqual(shape(df.return), shape(rf.return));
        deepStrictEqual(strip(df.return), strip(rf.return));
      });

      // Byte for byte once the moving numbers (used bytes, traffic and I/O counters, CPU
      // times) are blanked: member order, names, addresses, types all identical.
      const blank = (t: string | undefined) =>
        (t ?? "").replace(/"(used-bytes|[rt]x-[a-z]+)": \d+/g, '"$1": N')
          .replace(
            /"(user|nice|system|idle|iowait|irq|softirq|steal|guest|guestnice)": \d+/g,
            '"$1": N',
          )
          .replace(/"([a-z]+-(ios|merges|sectors|ticks)|ios-pgr)": \d+/g, '"$1": N');
      for (
        const cmd of [
          "guest-get-disks",
          "guest-get-fsinfo",
          "guest-network-get-interfaces",
          "guest-get-cpustats",
          "guest-get-diskstats",
        ]
      ) {
        await settled(async () => {
          const req = `{"execute":"${cmd}"}`;
          const [r, d] = await Promise.all([p.real.callRaw(req), p.demu.callRaw(req)]);
          strictEqual(blank(d), blank(r), cmd);
        });
      }

      // Interfaces: names, addresses and MACs identical; counters only in shape.
      type Nif = { statistics?: unknown };
      const [rn, dn] = await both(p, '{"execute":"guest-network-get-interfaces"}') as {
        return: Nif[];
      }[];
      deepStrictEqual(shape(dn.return), shape(rn.return));
      const noStats = (l: Nif[]) => l.map(({ statistics: _s, ...rest }) => rest);
      deepStrictEqual(noStats(dn.return), noStats(rn.return));

      for (const cmd of ["guest-get-cpustats", "guest-get-diskstats"]) {
        await settled(async () => {
          const [r, d] = await both(p, `{"execute":"${cmd}"}`) as {
            return: { name?: string }[];
          }[];
          deepStrictEqual(shape(d.return), shape(r.return), cmd);
          strictEqual(d.return.length, r.return.length, `${cmd} entries`);
          if (cmd === "guest-get-diskstats") {
            deepStrictEqual(d.return.map((x) => x.name), r.return.map((x) => x.name));
          }
        });
      }

      // A no-op vCPU change (online stays online) is accepted and counted by both.
      const vcpus = sortById(rv.return) as { "logical-id": number; "can-offline": boolean }[];
      const flexible = vcpus.find((v) => v["can-offline"]);
      if (flexible) {
        const req = {
          execute: "guest-set-vcpus",
          arguments: { vcpus: [{ "logical-id": flexible["logical-id"], online: true }] },
        };
        const [r, d] = await both(p, req);
        deepStrictEqual(d, r);
        deepStrictEqual(r, { return: 1 });
      }
      const blocks = byIndex(rm.return);
      if (blocks.length) {
        const req = {
          execute: "guest-set-memory-blocks",
          arguments: { "mem-blks": [{ "phys-index": blocks[0]["phys-index"], online: true }] },
        };
        const [r, d] = await both(p, req);
        deepStrictEqual(d, r);
      }
    });
  },
});

Deno.test({
  name: "agent interop: guest-file-* sequence gives the same replies",
  ignore: !qemuGa,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "agent-files-" });
    try {
      await withAgents([], async (p) => {
        for (const who of ["real", "demu"] as const) {
          await Deno.writeTextFile(`${dir}/${who}-ro`, "read only");
        }
        const run = async (who: "real" | "demu") => {
          const c = p[who];
          const f = `${dir}/${who}`;
          const out: unknown[] = [];
          const call = async (req: object) => out.push(canonical(await c.call(req)));
          await call({ execute: "guest-file-open", arguments: { path: f, mode: "w+" } });
          const h = (out[0] as { return: number }).return;
          await call({
            execute: "guest-file-write",
            arguments: { handle: h, "buf-b64": "aGVsbG8gd29ybGQ=" },
          });
          await call({
            execute: "guest-file-write",
            arguments: { handle: h, "buf-b64": "aGVsbG8", count: 2 },
          });
          await call({
            execute: "guest-file-write",
            arguments: { handle: h, "buf-b64": "aGVsbG8=", count: 10 },
          });
          await call({ execute: "guest-file-write", arguments: { handle: h, "buf-b64": "a$b" } });
          await call({ execute: "guest-file-write", arguments: { handle: h, "buf-b64": "" } });
          await call({ execute: "guest-file-flush", arguments: { handle: h } });
          await call({
            execute: "guest-file-seek",
            arguments: { handle: h, offset: 0, whence: "cur" },
          });
          await call({
            execute: "guest-file-seek",
            arguments: { handle: h, offset: 6, whence: 0 },
          });
          await call({ execute: "guest-file-read", arguments: { handle: h, count: 3 } });
          await call({ execute: "guest-file-read", arguments: { handle: h } });
          await call({ execute: "guest-file-read", arguments: { handle: h, count: 0 } });
          await call({ execute: "guest-file-read", arguments: { handle: h, count: -1 } });
          await call({ execute: "guest-file-read", arguments: { handle: h, count: 50331649 } });
          await call({
            execute: "guest-file-seek",
            arguments: { handle: h, offset: -100, whence: "set" },
          });
          await call({
            execute: "guest-file-seek",
            arguments: { handle: h, offset: -2, whence: "end" },
          });
          await call({
            execute: "guest-file-seek",
            arguments: { handle: h, offset: 0, whence: 7 },
          });
          await call({ execute: "guest-file-close", arguments: { handle: h } });
          await call({ execute: "guest-file-close", arguments: { handle: h } });
          await call({ execute: "guest-file-open", arguments: { path: `${f}-ro`, mode: "r" } });
          const h2 = (out.at(-1) as { return: number }).return;
          await call({ execute: "guest-file-write", arguments: { handle: h2, "buf-b64": "eA==" } });
          await call({ execute: "guest-file-read", arguments: { handle: h2 } });
          await call({ execute: "guest-file-close", arguments: { handle: h2 } });
          await call({ execute: "guest-file-open", arguments: { path: f, mode: "ab+" } });
          return { out, content: await Deno.readTextFile(f) };
        };
        const real = await run("real");
        const demu = await run("demu");
        deepStrictEqual(demu.out, real.out);
        strictEqual(demu.content, real.content);
        strictEqual(real.content, "hello worldhe");
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

type ExecStatus = { return?: { exited: boolean } };

async function waitExit(c: RawConn, pid: number): Promise<unknown> {
  for (let i = 0; i < 1200; i++) {
    const r = await c.call(
      { execute: "guest-exec-status", arguments: { pid } },
      20000,
    ) as ExecStatus;
    if (!r.return || r.return.exited) return canonical(r);
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`pid ${pid} did not exit`);
}

Deno.test({
  name: "agent interop: guest-exec with input, captured output, env, exit codes and signals",
  ignore: !qemuGa,
  async fn() {
    await withAgents([], async (p) => {
      const reqs = [
        {
          path: "sh",
          arg: ["-c", "echo out; echo err >&2; read x; echo $x; exit 3"],
          "input-data": "aGkK",
          "capture-output": true,
        },
        { path: "sh", arg: ["-c", "kill -9 $$"] },
        { path: "env", env: ["A=1", "B=two"], "capture-output": true },
        { path: "true", "capture-output": true },
        { path: "/bin/sh", arg: ["-c", "head -c 100000 /dev/zero"], "capture-output": true },
        // Beyond 16 MiB the output is cut and flagged as truncated.
        {
          path: "sh",
          arg: ["-c", "head -c 17000000 /dev/zero; echo e >&2"],
          "capture-output": true,
        },
      ];
      for (const args of reqs) {
        const out: unknown[] = [];
        for (const who of ["real", "demu"] as const) {
          const r = await p[who].call({ execute: "guest-exec", arguments: args }) as {
            return: { pid: number };
          };
          ok(r.return?.pid > 0, `${who} started ${JSON.stringify(args)}`);
          const status = await waitExit(p[who], r.return.pid);
          const again = await p[who].call({
            execute: "guest-exec-status",
            arguments: { pid: r.return.pid },
          });
          out.push([status, canonical(again)]);
        }
        deepStrictEqual(out[1], out[0], `exec ${JSON.stringify(args)}`);
      }
    });
  },
});

Deno.test({
  name: "agent interop: -b blocks commands with the same errors and guest-info flags",
  ignore: !qemuGa,
  async fn() {
    const blocked = ["guest-ping", "guest-shutdown", "guest-suspend-ram", "guest-file-open"];
    await withAgents(["-b", blocked.join(",")], async (p) => {
      for (
        const req of [
          '{"execute":"guest-ping","id":9}',
          '{"execute":"guest-shutdown"}',
          '{"execute":"guest-shutdown","arguments":{"mode":"halt"}}',
          '{"execute":"guest-suspend-ram"}',
          '{"execute":"guest-file-open","arguments":{"path":"/etc/hostname"}}',
          '{"execute":"guest-sync","arguments":{"id":1}}',
        ]
      ) {
        const [r, d] = await both(p, req);
        deepStrictEqual(d, r, req);
      }
      const [ri, di] = await both(p, '{"execute":"guest-info"}') as {
        return: { supported_commands: { name: string; enabled: boolean }[] };
      }[];
      const disabled = (x: typeof ri) =>
        x.return.supported_commands.filter((c) => !c.enabled).map((c) => c.name).sort();
      deepStrictEqual(disabled(di), disabled(ri));
      deepStrictEqual(disabled(ri), [...blocked, "guest-get-devices"].sort());
    });
  },
});

Deno.test({
  name: "agent interop: guest-get-timezone under other zones gives qemu-ga's zone names",
  ignore: !qemuGa,
  async fn() {
    const zones = [
      "Europe/Paris",
      "America/New_York",
      "Australia/Sydney",
      "Asia/Kolkata",
      "UTC",
      "Etc/GMT+5",
    ];
    for (const tz of zones) {
      const [real, demu] = await Promise.all([
        startAgent("qemu-ga", { env: { TZ: tz } }),
        startAgent("demu", { env: { TZ: tz } }),
      ]);
      try {
        const [r, d] = [await RawConn.open(real.socket), await RawConn.open(demu.socket)];
        const req = '{"execute":"guest-get-timezone"}';
        strictEqual(await d.callRaw(req), await r.callRaw(req), tz);
        await r.close();
        await d.close();
      } finally {
        await real.stop();
        await demu.stop();
      }
    }
  },
});

Deno.test({
  name: "agent interop: FIFOs, fopen modes and new-file permissions as qemu-ga",
  ignore: !qemuGa,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "agent-fopen-" });
    try {
      await withAgents([], async (p) => {
        const run = async (who: "real" | "demu") => {
          const c = p[who];
          const d = `${dir}/${who}`;
          await Deno.mkdir(d);
          const fifo = `${d}/fifo`;
          await new Deno.Command("mkfifo", { args: [fifo] }).output();
          const out: unknown[] = [];
          const call = async (req: object) => {
            const r = await c.call(req);
            out.push(canonical(r));
            return (r as { return?: number }).return;
          };
          // A FIFO without a writer opens at once (non-blocking) and reads as empty.
          const rd = await call({ execute: "guest-file-open", arguments: { path: fifo } });
          const wr = await call({
            execute: "guest-file-open",
            arguments: { path: fifo, mode: "w" },
          });
          await call({ execute: "guest-file-read", arguments: { handle: rd } });
          await call({
            execute: "guest-file-write",
            arguments: { handle: wr, "buf-b64": "cGlwZQ==" },
          });
          await call({
            execute: "guest-file-seek",
            arguments: { handle: wr, offset: 0, whence: "set" },
          });
          await call({ execute: "guest-file-close", arguments: { handle: wr } });
          // (Reads after that first EAGAIN differ: qemu-ga's stdio FILE keeps its error flag
          // set, so it fails reads that did get data; demu reports what each read did.)
          for (const mode of ["a+", "rb+", "r+b", "wb+", "ab", "wbx", "rb+b", "", "R"]) {
            await call({ execute: "guest-file-open", arguments: { path: `${d}/f-${mode}`, mode } });
          }
          const perms: Record<string, number> = {};
          for await (const e of Deno.readDir(d)) {
            if (e.name.startsWith("f-")) {
              perms[e.name] = (await Deno.stat(`${d}/${e.name}`)).mode! & 0o777;
            }
          }
          return { out: JSON.stringify(out).replaceAll(d, "D"), perms };
        };
        const real = await run("real");
        const demu = await run("demu");
        deepStrictEqual(demu, real);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** One struct utmp record (x86_64 glibc layout, 384 bytes). */
function utmpRecord(type: number, user: string, line: string, sec: number, usec: number) {
  const b = new Uint8Array(384);
  const v = new DataView(b.buffer);
  v.setInt32(0, type, true);
  v.setInt32(4, 4242, true);
  b.set(new TextEncoder().encode(line), 8);
  b.set(new TextEncoder().encode(user), 44);
  v.setInt32(340, sec, true);
  v.setInt32(344, usec, true);
  return b;
}

Deno.test({
  name: "agent interop: guest-get-users from a utmp in a private mount namespace",
  ignore: !qemuGa,
  async fn() {
    if (Deno.uid() !== 0) {
      console.warn("\n!!! WARNING: not root: guest-get-users utmp test SKIPPED !!!\n");
      return;
    }
    const dir = await Deno.makeTempDir({ prefix: "agent-utmp-" });
    try {
      const recs = [
        utmpRecord(7, "alice", "pts/1", 1700000100, 250000),
        utmpRecord(8, "ghost", "pts/2", 1700000000, 0), // DEAD_PROCESS: not a login
        utmpRecord(7, "bob", "pts/3", 1700000200, 500000),
        utmpRecord(7, "alice", "pts/4", 1700000050, 900000), // earlier repeat login
        utmpRecord(7, "alice", "pts/5", 1700000300, 0),
        utmpRecord(6, "LOGIN", "tty1", 1700000000, 0),
      ];
      const data = new Uint8Array(recs.length * 384);
      recs.forEach((r, i) => data.set(r, i * 384));
      await Deno.writeFile(`${dir}/utmp`, data);
      // Both agents see this file as /run/utmp (/var/run/utmp) in their own mount namespace;
      // the machine's /run is not touched.
      const wrapper = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        `mount -t tmpfs tmpfs /run && cp ${dir}/utmp /run/utmp && exec "$@"`,
        "sh",
      ];
      const [real, demu] = await Promise.all([
        startAgent("qemu-ga", { wrapper }),
        startAgent("demu", { wrapper }),
      ]);
      try {
        const [r, d] = [await RawConn.open(real.socket), await RawConn.open(demu.socket)];
        const req = '{"execute":"guest-get-users"}';
        const [rr, dd] = [await r.callRaw(req), await d.callRaw(req)];
        strictEqual(dd, rr);
        strictEqual(
          rr,
          '{"return": [{"login-time": 1700000050.9000001, "user": "alice"}, {"login-time": 1700000200.5, "user": "bob"}]}',
        );
        await r.close();
        await d.close();
      } finally {
        await real.stop();
        await demu.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
