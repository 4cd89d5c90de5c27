/**
 * guest-shutdown and guest-set-time (without a time: the clock is read from the RTC through
 * hwclock) really run their helper programs here, but in a private mount namespace where
 * shutdown (systemctl) and hwclock are bind-mounted stand-ins that only log their arguments.
 * Before anything is sent, the agent itself must read the stand-ins back at those paths, so a
 * failed bind mount can never shut this machine down. demu's agent beside the real qemu-ga.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { canonical, findQemuGa, RawConn, startAgent } from "../agent/testing.ts";

const MARKER = "DEMU-FAKE-HELPER";

async function fakes(dir: string): Promise<string[]> {
  for (const name of ["shutdown", "hwclock"]) {
    await Deno.writeTextFile(
      `${dir}/${name}`,
      `#!/bin/sh\n# ${MARKER}\necho "${name} $*" >> ${dir}/calls\nexit $(cat ${dir}/rc 2>/dev/null || echo 0)\n`,
      { mode: 0o755 },
    );
  }
  // /usr/sbin/shutdown is a symlink to systemctl on Debian: the bind mount lands on its target.
  return [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    `mount --bind ${dir}/shutdown /sbin/shutdown && mount --bind ${dir}/hwclock /sbin/hwclock && exec "$@"`,
    "sh",
  ];
}

/** Reads a file through the agent (guest-file-*): what the agent's namespace has there. */
async function readViaAgent(c: RawConn, path: string): Promise<string> {
  const h = (await c.call({ execute: "guest-file-open", arguments: { path } }) as {
    return?: number;
  }).return;
  if (h === undefined) return "";
  const r = await c.call({
    execute: "guest-file-read",
    arguments: { handle: h, count: 65536 },
  }) as {
    return: { "buf-b64": string };
  };
  await c.call({ execute: "guest-file-close", arguments: { handle: h } });
  return atob(r.return["buf-b64"]);
}

Deno.test({
  name: "agent: guest-shutdown and guest-set-time run their helpers (stand-ins), as qemu-ga",
  async fn() {
    if (Deno.uid() !== 0) {
      console.warn("\n!!! WARNING: not root: shutdown/hwclock stand-in test SKIPPED !!!\n");
      return;
    }
    const whos = findQemuGa() ? ["qemu-ga", "demu"] as const : ["demu"] as const;
    const results: unknown[] = [];
    for (const who of whos) {
      const dir = await Deno.makeTempDir({ prefix: "agent-power-" });
      try {
        const agent = await startAgent(who, { wrapper: await fakes(dir) });
        const c = await RawConn.open(agent.socket);
        const out: unknown[] = [];
        try {
          // The safety check: both helpers must be the stand-ins inside the agent's namespace.
          for (const p of ["/sbin/shutdown", "/usr/sbin/shutdown", "/sbin/hwclock"]) {
            ok((await readViaAgent(c, p)).includes(MARKER), `${who}: ${p} is the stand-in`);
          }
          const quiet = async (req: string) => {
            // Success answers nothing: wait a moment, then check the agent still serves.
            out.push(canonical(await c.call(req, 700)) ?? "no reply");
            out.push(canonical(await c.call('{"execute":"guest-ping"}')));
          };
          await quiet('{"execute":"guest-shutdown"}');
          await quiet('{"execute":"guest-shutdown","arguments":{"mode":"halt"}}');
          await quiet('{"execute":"guest-shutdown","arguments":{"mode":"reboot"}}');
          out.push(canonical(await c.call('{"execute":"guest-set-time"}')));
          await Deno.writeTextFile(`${dir}/rc`, "1");
          out.push(canonical(await c.call('{"execute":"guest-shutdown"}')));
          out.push(canonical(await c.call('{"execute":"guest-set-time"}')));
        } finally {
          await c.close();
          await agent.stop();
        }
        out.push(await Deno.readTextFile(`${dir}/calls`));
        results.push(out);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
    if (results.length > 1) deepStrictEqual(results[1], results[0]);
    const demu = results.at(-1) as unknown[];
    strictEqual(demu[0], "no reply");
    deepStrictEqual(demu[6], { return: {} });
    deepStrictEqual(demu[7], {
      error: { class: "GenericError", desc: "child process has failed to shutdown" },
    });
    strictEqual(
      demu.at(-1),
      "shutdown -h -P +0 hypervisor initiated shutdown\nshutdown -h -H +0 hypervisor initiated shutdown\n" +
        "shutdown -h -r +0 hypervisor initiated shutdown\nhwclock -s\n" +
        "shutdown -h -P +0 hypervisor initiated shutdown\nhwclock -s\n",
    );
  },
});
