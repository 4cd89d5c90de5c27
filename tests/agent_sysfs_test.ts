/**
 * guest-get/set-vcpus and guest-get/set-memory-blocks really reading and writing sysfs — a
 * stand-in sysfs: temp directories bound over /sys/devices/system/cpu and .../memory in the
 * agent's private mount namespace (checked through the agent before anything is written), so
 * no real CPU or memory block changes state. demu's agent beside the real qemu-ga.
 */
import { deepStrictEqual, ok } from "node:assert/strict";
import { canonical, findQemuGa, RawConn, startAgent } from "../agent/testing.ts";

const MARKER = "demu-fake-sysfs";

async function fakeSysfs(dir: string): Promise<string[]> {
  const cpu = `${dir}/cpu`;
  const mem = `${dir}/memory`;
  for (const d of [cpu, mem]) {
    await Deno.mkdir(d);
    await Deno.writeTextFile(`${d}/${MARKER}`, MARKER);
  }
  // cpu0 cannot go offline (no "online" file); cpu1 is online, cpu2 offline, cpu3 online.
  await Deno.mkdir(`${cpu}/cpu0`);
  for (const [n, v] of [[1, "1"], [2, "0"], [3, "1"]]) {
    await Deno.mkdir(`${cpu}/cpu${n}`);
    await Deno.writeTextFile(`${cpu}/cpu${n}/online`, `${v}\n`);
  }
  await Deno.writeTextFile(`${cpu}/online`, "0-1,3\n");
  await Deno.writeTextFile(`${mem}/block_size_bytes`, "8000000\n");
  for (
    const [n, state, removable] of [[0, "online", "0"], [1, "online", "1"], [2, "offline", "1"]]
  ) {
    await Deno.mkdir(`${mem}/memory${n}`);
    await Deno.writeTextFile(`${mem}/memory${n}/state`, `${state}\n`);
    await Deno.writeTextFile(`${mem}/memory${n}/removable`, `${removable}\n`);
  }
  return [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    `mount --bind ${cpu} /sys/devices/system/cpu && mount --bind ${mem} /sys/devices/system/memory && exec "$@"`,
    "sh",
  ];
}

async function readViaAgent(c: RawConn, path: string): Promise<string> {
  const h = (await c.call({ execute: "guest-file-open", arguments: { path } }) as {
    return?: number;
  }).return;
  if (h === undefined) return "";
  const r = await c.call({ execute: "guest-file-read", arguments: { handle: h } }) as {
    return: { "buf-b64": string };
  };
  await c.call({ execute: "guest-file-close", arguments: { handle: h } });
  return atob(r.return["buf-b64"]);
}

Deno.test("agent: vCPU and memory-block changes on a stand-in sysfs, beside qemu-ga", async () => {
  if (Deno.uid() !== 0) {
    console.warn("\n!!! WARNING: not root: stand-in sysfs test SKIPPED !!!\n");
    return;
  }
  const whos = findQemuGa() ? ["qemu-ga", "demu"] as const : ["demu"] as const;
  const results: unknown[] = [];
  for (const who of whos) {
    const dir = await Deno.makeTempDir({ prefix: "agent-sysfs-" });
    try {
      const agent = await startAgent(who, { wrapper: await fakeSysfs(dir) });
      const c = await RawConn.open(agent.socket);
      const out: unknown[] = [];
      try {
        for (const d of ["cpu", "memory"]) {
          const seen = await readViaAgent(c, `/sys/devices/system/${d}/${MARKER}`);
          ok(seen === MARKER, `${who} sees the stand-in ${d} directory`);
        }
        const sortBy = (k: string) => (l: Record<string, number>[]) =>
          [...l].sort((a, b) => a[k] - b[k]);
        const call = async (
          req: object | string,
          sort?: (l: Record<string, number>[]) => unknown,
        ) => {
          const r = canonical(await c.call(req)) as { return?: Record<string, number>[] };
          out.push(sort && r.return ? { return: sort(r.return) } : r);
        };
        const vcpus = sortBy("logical-id");
        const blocks = sortBy("phys-index");
        await call('{"execute":"guest-get-vcpus"}', vcpus);
        await call({
          execute: "guest-set-vcpus",
          arguments: {
            vcpus: [{ "logical-id": 1, online: false }, { "logical-id": 2, online: true }],
          },
        });
        await call('{"execute":"guest-get-vcpus"}', vcpus);
        await call({
          execute: "guest-set-vcpus",
          arguments: {
            vcpus: [{ "logical-id": 3, online: false }, { "logical-id": 0, online: false }],
          },
        });
        await call({
          execute: "guest-set-vcpus",
          arguments: { vcpus: [{ "logical-id": 0, online: false }] },
        });
        await call('{"execute":"guest-get-vcpus"}', vcpus);
        await call('{"execute":"guest-get-memory-blocks"}', blocks);
        await call('{"execute":"guest-get-memory-block-info"}');
        await call({
          execute: "guest-set-memory-blocks",
          arguments: {
            "mem-blks": [
              { "phys-index": 1, online: false },
              { "phys-index": 2, online: true },
              { "phys-index": 0, online: false },
              { "phys-index": 7, online: true },
            ],
          },
        });
        await call('{"execute":"guest-get-memory-blocks"}', blocks);
      } finally {
        await c.close();
        await agent.stop();
      }
      for (const n of [1, 2, 3]) out.push(await Deno.readTextFile(`${dir}/cpu/cpu${n}/online`));
      for (const n of [0, 1, 2]) {
        out.push(await Deno.readTextFile(`${dir}/memory/memory${n}/state`));
      }
      results.push(out);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  if (results.length > 1) deepStrictEqual(results[1], results[0]);
});
