/**
 * guest-ping round trips per second over a unix socket: demu's agent beside the real qemu-ga,
 * same machine, same run. One client sends a ping and waits for its reply before the next
 * (latency-bound), then a pipelined run keeps 64 pings in flight (throughput-bound).
 */
import { findQemuGa, RawConn, startAgent } from "../../agent/testing.ts";

const SECONDS = 2;
const WINDOW = 64;

async function serialRate(c: RawConn): Promise<number> {
  const end = performance.now() + SECONDS * 1000;
  let n = 0;
  while (performance.now() < end) {
    await c.send('{"execute":"guest-ping"}');
    const r = await c.replies(1);
    if (!r.length) throw new Error("no reply");
    n++;
  }
  return n / SECONDS;
}

async function pipelinedRate(c: RawConn): Promise<number> {
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  let sent = 0, got = 0;
  const ping = '{"execute":"guest-ping"}';
  await c.send(ping.repeat(WINDOW));
  sent += WINDOW;
  while (performance.now() < end) {
    const r = await c.replies(WINDOW / 2);
    got += r.length;
    await c.send(ping.repeat(r.length));
    sent += r.length;
  }
  got += (await c.replies(sent - got)).length;
  return got / ((performance.now() - t0) / 1000);
}

const ROUNDS = 3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Alternates the agents over a few rounds (the machine is shared) and reports medians. */
export async function bench(): Promise<void> {
  const whos = findQemuGa() ? ["qemu-ga", "demu"] as const : ["demu"] as const;
  if (!findQemuGa()) console.warn("!!! qemu-ga not installed: only demu's agent measured !!!");
  const serial: Record<string, number[]> = {};
  const piped: Record<string, number[]> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const who of whos) {
      const agent = await startAgent(who);
      try {
        const c = await RawConn.open(agent.socket);
        await c.call('{"execute":"guest-ping"}');
        (serial[who] ??= []).push(await serialRate(c));
        (piped[who] ??= []).push(await pipelinedRate(c));
        await c.close();
      } finally {
        await agent.stop();
      }
    }
  }
  console.log(`guest-ping round trips/s over a unix socket (median of ${ROUNDS} alternating runs)`);
  console.log(`${"agent".padEnd(8)} ${"one-by-one".padStart(10)} ${"pipelined".padStart(12)}`);
  for (const who of whos) {
    const [s, p] = [median(serial[who]), median(piped[who])];
    console.log(`${who.padEnd(8)} ${s.toFixed(0).padStart(10)} ${p.toFixed(0).padStart(12)}`);
  }
  if (serial["qemu-ga"]) {
    const r = (who: string, m: Record<string, number[]>) => median(m[who]);
    console.log(
      `demu/qemu-ga: ${(r("demu", serial) / r("qemu-ga", serial)).toFixed(2)}x one-by-one, ` +
        `${(r("demu", piped) / r("qemu-ga", piped)).toFixed(2)}x pipelined`,
    );
  }
}

if (import.meta.main) await bench();
