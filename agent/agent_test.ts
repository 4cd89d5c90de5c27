import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { createGuestAgent } from "./service.ts";
import { JsonStreamer, type JsonValue } from "./json.ts";
import { ipv6 } from "./commands/network.ts";
import { posixZoneNames } from "./commands/time.ts";
import type { GuestAgent } from "./agent.ts";

/** Runs one request through the agent in-process; returns the reply text (or null). */
async function call(agent: GuestAgent, req: string): Promise<string | null> {
  let msg: [JsonValue | undefined, string | undefined] | undefined;
  new JsonStreamer((v, e) => msg = [v, e]).feed(new TextEncoder().encode(req));
  const out = await agent.handle(msg![0], msg![1]);
  return out && new TextDecoder().decode(out);
}

async function withAgent(fn: (a: GuestAgent) => Promise<void>, block?: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "agent-unit-" });
  const agent = createGuestAgent({ stateDir: dir, blockRpcs: block });
  try {
    await fn(agent);
  } finally {
    await agent.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("guest-get-load reports /proc/loadavg", async () => {
  await withAgent(async (a) => {
    const r = JSON.parse((await call(a, '{"execute":"guest-get-load"}'))!).return;
    const [l1, l5, l15] = Deno.readTextFileSync("/proc/loadavg").split(" ").map(Number);
    ok(Math.abs(r.load1 - l1) < 0.5 && Math.abs(r.load5 - l5) < 0.5);
    ok(Math.abs(r.load15 - l15) < 0.5);
  });
});

Deno.test("guest-network-get-route lists every kernel route, IPv4 and IPv6", async () => {
  await withAgent(async (a) => {
    const routes = JSON.parse((await call(a, '{"execute":"guest-network-get-route"}'))!).return;
    const v4 = Deno.readTextFileSync("/proc/net/route").trim().split("\n").length - 1;
    let v6 = 0;
    try {
      v6 = Deno.readTextFileSync("/proc/net/ipv6_route").trim().split("\n").filter((l) => l)
        .length;
    } catch {
      // no IPv6
    }
    strictEqual(routes.length, v4 + v6);
    for (const r of routes) {
      ok(typeof r.iface === "string" && typeof r.destination === "string");
      ok(r.version === 4 || r.version === 6);
    }
    // The default IPv4 route agrees with iproute2, where it is installed.
    try {
      const out = new TextDecoder().decode(
        (await new Deno.Command("ip", { args: ["-4", "route", "show", "default"] }).output())
          .stdout,
      );
      const m = /default via (\S+) dev (\S+)/.exec(out);
      if (m) {
        const def = routes.find((r: { version: number; destination: string; mask: string }) =>
          r.version === 4 && r.destination === "0.0.0.0" && r.mask === "0.0.0.0"
        );
        deepStrictEqual([def.gateway, def.iface], [m[1], m[2]]);
      }
    } catch {
      console.warn("ip(8) not available: default-route cross-check skipped");
    }
  });
});

Deno.test("IPv6 addresses are written in the compressed form", () => {
  strictEqual(ipv6("fe800000000000000000000000000000"), "fe80::");
  strictEqual(ipv6("00000000000000000000000000000001"), "::1");
  strictEqual(ipv6("00000000000000000000000000000000"), "::");
  strictEqual(ipv6("fd000000000000000000000000000002"), "fd00::2");
  strictEqual(ipv6("20010db8000000010000000000000001"), "2001:db8:0:1::1");
  strictEqual(ipv6("20010db8000100020003000400050006"), "2001:db8:1:2:3:4:5:6");
});

Deno.test("POSIX TZ rules give the zone names strftime prints", () => {
  deepStrictEqual(posixZoneNames("CET-1CEST,M3.5.0,M10.5.0/3"), { std: "CET", dst: "CEST" });
  deepStrictEqual(posixZoneNames("IST-5:30"), { std: "IST", dst: undefined });
  deepStrictEqual(posixZoneNames("<-05>5"), { std: "-05", dst: undefined });
  deepStrictEqual(posixZoneNames("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0"), {
    std: "+1030",
    dst: "+11",
  });
});

Deno.test("blocked and frozen-state commands, and commands without a success reply", async () => {
  await withAgent(async (a) => {
    strictEqual(
      await call(a, '{"execute":"guest-shutdown","arguments":{"mode":"reboot"}}'),
      '{"error": {"class": "CommandNotFound", "desc": "Command guest-shutdown has been disabled"}}\n',
    );
    a.frozen = true;
    strictEqual(
      await call(a, '{"execute":"guest-get-osinfo"}'),
      '{"error": {"class": "CommandNotFound", "desc": "Command guest-get-osinfo has been disabled: the agent is in frozen state"}}\n',
    );
    strictEqual(await call(a, '{"execute":"guest-fsfreeze-status"}'), '{"return": "frozen"}\n');
    a.frozen = false;
    // guest-exec-status of a finished child is answered once, then forgotten.
    const pid = JSON.parse((await call(a, '{"execute":"guest-exec","arguments":{"path":"true"}}'))!)
      .return.pid;
    let status: string | null = null;
    for (let i = 0; i < 200; i++) {
      status = await call(a, `{"execute":"guest-exec-status","arguments":{"pid":${pid}}}`);
      if (!status!.includes('"exited": false')) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    strictEqual(status, '{"return": {"exitcode": 0, "exited": true}}\n');
  }, ["guest-shutdown"]);
});

Deno.test("-a allows only the listed commands", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-unit-" });
  const agent = createGuestAgent({ stateDir: dir, allowRpcs: ["guest-ping", "guest-info"] });
  try {
    strictEqual(await call(agent, '{"execute":"guest-ping"}'), '{"return": {}}\n');
    strictEqual(
      await call(agent, '{"execute":"guest-get-time"}'),
      '{"error": {"class": "CommandNotFound", "desc": "Command guest-get-time has been disabled"}}\n',
    );
    const info = JSON.parse((await call(agent, '{"execute":"guest-info"}'))!).return;
    const enabled = info.supported_commands.filter((c: { enabled: boolean }) => c.enabled)
      .map((c: { name: string }) => c.name).sort();
    deepStrictEqual(enabled, ["guest-info", "guest-ping"]);
  } finally {
    await agent.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("guest-exec capture-output modes of the newer schema (stdout, stderr, merged)", async () => {
  await withAgent(async (a) => {
    const run = async (mode: unknown) => {
      const req = {
        execute: "guest-exec",
        arguments: {
          path: "sh",
          arg: ["-c", "printf out; printf err >&2"],
          "capture-output": mode,
        },
      };
      const pid = JSON.parse((await call(a, JSON.stringify(req)))!).return.pid;
      for (let i = 0; i < 300; i++) {
        const s = JSON.parse(
          (await call(a, `{"execute":"guest-exec-status","arguments":{"pid":${pid}}}`))!,
        ).return;
        if (s.exited) return s;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error("child did not finish");
    };
    const dec = (s?: string) => s === undefined ? undefined : atob(s);
    const out = await run("stdout");
    deepStrictEqual([dec(out["out-data"]), out["err-data"]], ["out", undefined]);
    const err = await run("stderr");
    deepStrictEqual([err["out-data"], dec(err["err-data"])], [undefined, "err"]);
    const merged = await run("merged");
    ok(["outerr", "errout"].includes(dec(merged["out-data"])!));
    strictEqual(merged["err-data"], undefined);
    const both = await run(true);
    deepStrictEqual([dec(both["out-data"]), dec(both["err-data"])], ["out", "err"]);
    strictEqual(
      await call(a, '{"execute":"guest-exec","arguments":{"path":"true","capture-output":"all"}}'),
      '{"error": {"class": "GenericError", "desc": "Parameter \'capture-output\' does not accept value \'all\'"}}\n',
    );
  });
});
