/**
 * Abuse of the agent: oversized and deeply nested messages, invalid UTF-8 and binary garbage,
 * a host that vanishes mid-message, a flood of pipelined requests, exhausted file handles.
 * Every case ends with the agent still serving; where the real qemu-ga is installed the
 * whole reply stream is compared with its stream for the same bytes.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import {
  type AgentProcess,
  canonical,
  findQemuGa,
  RawConn,
  type Reply,
  startAgent,
} from "../agent/testing.ts";

const qemuGa = findQemuGa();
if (!qemuGa) {
  console.warn(
    "\n!!! WARNING: qemu-ga is not installed: abuse tests run on demu's agent only !!!\n",
  );
}
const WHO: ("demu" | "qemu-ga")[] = qemuGa ? ["qemu-ga", "demu"] : ["demu"];

/** Sends bytes, then a marker ping, and returns every reply up to the marker's. */
async function feedAndMark(c: RawConn, data: Uint8Array, marker: number): Promise<unknown[]> {
  await c.send(data);
  await c.send(`{"execute":"guest-ping","id":${marker}}`);
  const out: unknown[] = [];
  for (;;) {
    const r: Reply[] = await c.replies(1, 20000);
    if (!r.length) throw new Error("agent stopped answering");
    const v = canonical(r[0].value) as { id?: unknown };
    out.push(v);
    if (v.id === marker) return out;
  }
}

async function perAgent(
  fn: (who: string, agent: AgentProcess) => Promise<unknown>,
  opts: { wrapper?: string[] } = {},
): Promise<unknown[]> {
  const results: unknown[] = [];
  for (const who of WHO) {
    const agent = await startAgent(who, opts);
    try {
      results.push(await fn(who, agent));
    } finally {
      await agent.stop();
    }
  }
  return results;
}

function sameAcross(results: unknown[], what: string): void {
  for (const r of results.slice(1)) deepStrictEqual(r, results[0], what);
}

const enc = new TextEncoder();

/** A deterministic byte generator (xorshift), so the garbage is the same on every run. */
function garbage(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

Deno.test("agent abuse: malformed streams give the same error replies and the agent keeps serving", async () => {
  const inputs: [string, Uint8Array][] = [
    ["deep nesting", enc.encode("[".repeat(1100) + "]".repeat(1100))],
    [
      "invalid UTF-8",
      new Uint8Array([...enc.encode('{"execute":"guest-ping","id":"'), 0xc3, 0x28, 0x22, 0x7d]),
    ],
    ["NUL and controls", enc.encode('{"execute":\0"guest-ping"}\x01\x02{"a":1}')],
    ["binary garbage", garbage(4096, 12345)],
    ["more garbage", garbage(4096, 987654321)],
    ["unbalanced closers", enc.encode("]]]}}}[}{]")],
  ];
  const results = await perAgent(async (_who, agent) => {
    const c = await RawConn.open(agent.socket);
    const out: unknown[] = [];
    let marker = 1000;
    for (const [, data] of inputs) out.push(await feedAndMark(c, data, marker++));
    await c.close();
    return out;
  });
  for (let i = 0; i < inputs.length; i++) {
    sameAcross(results.map((r) => (r as unknown[])[i]), inputs[i][0]);
  }
  const demu = results.at(-1) as unknown[][];
  ok(demu[0].some((r) => JSON.stringify(r).includes("JSON nesting depth limit exceeded")));
});

function bigPing(size: number): Uint8Array {
  const big = new Uint8Array(size);
  const head = enc.encode('{"execute":"guest-ping","id":"');
  big.set(head);
  big.fill(0x61, head.length, big.length - 2);
  big.set(enc.encode('"}'), big.length - 2);
  return big;
}

Deno.test("agent abuse: a large valid message (4 MiB id) is answered like qemu-ga", async () => {
  const results = await perAgent(async (_who, agent) => {
    const c = await RawConn.open(agent.socket);
    const out = await feedAndMark(c, bigPing(4 * 1024 * 1024), 7);
    await c.close();
    return out;
  });
  sameAcross(results, "4 MiB message");
  strictEqual((results[0] as unknown[]).length, 2);
});

// Only demu's agent: qemu-ga 7.2 takes minutes over a message this size (it is quadratic in
// the buffered input; 32 MiB already takes ~11 s here), which is too slow for a unit test.
Deno.test("agent abuse: an oversized message (65 MiB) is refused and the agent keeps serving", async () => {
  const agent = await startAgent("demu");
  try {
    const c = await RawConn.open(agent.socket);
    const out = await feedAndMark(c, bigPing(65 * 1024 * 1024 + 64), 7);
    await c.close();
    deepStrictEqual(out, [
      { error: { class: "GenericError", desc: "JSON token size limit exceeded" } },
      // The closing brace after the refused string is a stray closer, as in QEMU's streamer.
      { error: { class: "GenericError", desc: "JSON parse error, expecting value" } },
      { return: {}, id: 7 },
    ]);
  } finally {
    await agent.stop();
  }
});

// qemu-ga keeps a vanished client's partial message and glues the next client's bytes to it
// (hence the protocol's advice to send 0xFF first); demu's agent starts each connection with a
// clean parser, which the issue asks for ("a clean reset"). So this is demu-only.
Deno.test("agent abuse: a client vanishing mid-message leaves nothing for the next", async () => {
  const agent = await startAgent("demu");
  try {
    const a = await RawConn.open(agent.socket);
    await a.send('{"execute":"guest-sync","arguments":{"id":');
    await a.close();
    const b = await RawConn.open(agent.socket);
    await b.send('{"execute":"guest-ping","id":1}');
    const r = await b.replies(1);
    // A client that disconnects before reading its replies does not upset the agent either.
    await b.send('{"execute":"guest-get-osinfo"}{"execute":"guest-info"}');
    await b.close();
    const d = await RawConn.open(agent.socket);
    const r2 = await d.call('{"execute":"guest-ping","id":2}');
    await d.close();
    deepStrictEqual([canonical(r[0]?.value), canonical(r2)], [
      { return: {}, id: 1 },
      { return: {}, id: 2 },
    ]);
  } finally {
    await agent.stop();
  }
});

Deno.test("agent abuse: a flood of pipelined requests is answered in order", async () => {
  const N = 2000;
  let text = "";
  for (let i = 0; i < N; i++) text += `{"execute":"guest-ping","id":${i}}`;
  await perAgent(async (who, agent) => {
    const c = await RawConn.open(agent.socket);
    await c.send(text);
    const r = await c.replies(N, 30000);
    await c.close();
    strictEqual(r.length, N, `${who} answered all`);
    r.forEach((x, i) => deepStrictEqual(canonical(x.value), { return: {}, id: i }));
  });
});

async function hasPrlimit(): Promise<boolean> {
  try {
    return (await new Deno.Command("prlimit", { args: ["--version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

Deno.test("agent abuse: exhausted file handles give an error, then recover", async (t) => {
  if (!(await hasPrlimit())) {
    console.warn("\n!!! WARNING: prlimit missing: file-handle exhaustion test SKIPPED !!!\n");
    return;
  }
  await t.step("both agents", async () => {
    const results = await perAgent(async (_who, agent) => {
      const c = await RawConn.open(agent.socket);
      const handles: number[] = [];
      let error: unknown;
      for (let i = 0; i < 200; i++) {
        const r = await c.call({
          execute: "guest-file-open",
          arguments: { path: "/etc/hostname" },
        }) as {
          return?: number;
          error?: unknown;
        };
        if (r.error) {
          error = r.error;
          break;
        }
        handles.push(r.return!);
      }
      ok(error, "the limit was reached");
      const close = await c.call({
        execute: "guest-file-close",
        arguments: { handle: handles.pop() },
      });
      const again = await c.call({
        execute: "guest-file-open",
        arguments: { path: "/etc/hostname" },
      }) as {
        return?: number;
      };
      const ping = await c.call('{"execute":"guest-ping"}');
      await c.close();
      return [canonical(error), canonical(close), typeof again.return, canonical(ping)];
    }, { wrapper: ["prlimit", "--nofile=96:96"] });
    sameAcross(results, "handle exhaustion");
    // The open itself takes the last descriptor; persisting the handle counter then fails.
    deepStrictEqual((results[0] as unknown[])[0], {
      class: "GenericError",
      desc: "failed to commit persistent state to disk",
    });
  });
});
