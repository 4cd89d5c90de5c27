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
const CLIENT = new URL("../tools/qemu-ga-client.ts", import.meta.url).pathname;

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
          // qemu-ga-client's powerdown (helper fails: an error) and reboot (helper works).
          await c.close();
          for (const [rc, sub] of [["1", "powerdown"], ["0", "reboot"]]) {
            await Deno.writeTextFile(`${dir}/rc`, rc);
            const r = await new Deno.Command(Deno.execPath(), {
              args: ["run", "-A", CLIENT, `--address=unix:${agent.socket}`, sub],
              stdin: "null",
            }).output();
            out.push(`${sub}: ${r.code} ${new TextDecoder().decode(r.stderr)}`);
          }
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
    deepStrictEqual(demu.slice(9, 11), [
      "powerdown: 1 qemu-ga-client: child process has failed to shutdown\n",
      "reboot: 0 ",
    ]);
    strictEqual(
      demu.at(-1),
      "shutdown -h -P +0 hypervisor initiated shutdown\nshutdown -h -H +0 hypervisor initiated shutdown\n" +
        "shutdown -h -r +0 hypervisor initiated shutdown\nhwclock -s\n" +
        "shutdown -h -P +0 hypervisor initiated shutdown\nhwclock -s\n" +
        "shutdown -h -P +0 hypervisor initiated shutdown\nshutdown -h -r +0 hypervisor initiated shutdown\n",
    );
  },
});

/**
 * A systemctl stand-in whose "status" exit code and action exit code come from files, and a
 * /sys/power whose "state" file is a plain temp file, both bound into the agent's private
 * mount namespace. pm-utils must be absent (it is not installed on Debian by default).
 */
async function suspendFakes(dir: string): Promise<string[]> {
  await Deno.mkdir(`${dir}/power`);
  await Deno.writeTextFile(`${dir}/power/state`, `freeze mem disk ${MARKER}\n`);
  await Deno.writeTextFile(`${dir}/power/disk`, "[platform] shutdown reboot suspend\n");
  await Deno.writeTextFile(
    `${dir}/systemctl`,
    `#!/bin/sh\n# ${MARKER}\necho "systemctl $*" >> ${dir}/calls\n` +
      `if [ "$1" = status ]; then exit $(cat ${dir}/status_rc); fi\nexit $(cat ${dir}/verb_rc)\n`,
    { mode: 0o755 },
  );
  return [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    `mount --bind ${dir}/systemctl /usr/bin/systemctl && mount --bind ${dir}/power /sys/power && exec "$@"`,
    "sh",
  ];
}

function pmUtilsInstalled(): boolean {
  for (const d of ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]) {
    try {
      Deno.statSync(`${d}/pm-is-supported`);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

Deno.test({
  name: "agent: guest-suspend-* through systemd, then sysfs, against stand-ins",
  async fn() {
    if (Deno.uid() !== 0 || pmUtilsInstalled()) {
      console.warn(
        "\n!!! WARNING: not root or pm-utils installed: suspend stand-in test SKIPPED !!!\n",
      );
      return;
    }
    const run = async (
      who: "qemu-ga" | "demu",
      statusRc: number,
      verbRc: number,
      state?: string,
    ) => {
      const dir = await Deno.makeTempDir({ prefix: "agent-suspend-" });
      try {
        const wrapper = await suspendFakes(dir);
        if (state !== undefined) await Deno.writeTextFile(`${dir}/power/state`, state);
        await Deno.writeTextFile(`${dir}/status_rc`, String(statusRc));
        await Deno.writeTextFile(`${dir}/verb_rc`, String(verbRc));
        const agent = await startAgent(who, { wrapper });
        const c = await RawConn.open(agent.socket);
        const out: unknown[] = [];
        const writes: string[] = [];
        try {
          ok((await readViaAgent(c, "/bin/systemctl")).includes(MARKER), "systemctl stand-in");
          ok((await readViaAgent(c, "/usr/bin/systemctl")).includes(MARKER), "systemctl stand-in");
          const st = await readViaAgent(c, "/sys/power/state");
          ok(st.includes(MARKER) || st === state, "/sys/power stand-in");
          for (const mode of ["ram", "disk", "hybrid"]) {
            // A real /sys/power/state keeps listing the states; the stand-in file must be reset.
            if (state !== undefined) await Deno.writeTextFile(`${dir}/power/state`, state);
            out.push(
              canonical(await c.call(`{"execute":"guest-suspend-${mode}"}`, 700)) ?? "no reply",
            );
            writes.push(await Deno.readTextFile(`${dir}/power/state`));
          }
        } finally {
          await c.close();
          await agent.stop();
        }
        let calls = "";
        try {
          calls = await Deno.readTextFile(`${dir}/calls`);
        } catch {
          // never called
        }
        return { out, calls, writes };
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    };
    // systemd present and working: both agents ask it, in the same words, and answer nothing.
    const demuA = await run("demu", 3, 0);
    deepStrictEqual(demuA.out, ["no reply", "no reply", "no reply"]);
    strictEqual(
      demuA.calls,
      "systemctl status systemd-suspend\nsystemctl suspend\nsystemctl status systemd-hibernate\n" +
        "systemctl hibernate\nsystemctl status systemd-hybrid-sleep\nsystemctl hybrid-sleep\n",
    );
    if (findQemuGa()) deepStrictEqual(demuA, await run("qemu-ga", 3, 0));
    // systemctl fails: demu goes on to /sys/power/state ("mem", "disk"; hybrid has no sysfs
    // form). (qemu-ga 7.2 stops after the failed systemd try and answers nothing at all.)
    const demuB = await run("demu", 3, 1, "freeze mem disk");
    deepStrictEqual(demuB.out, [
      "no reply",
      "no reply",
      {
        error: {
          class: "GenericError",
          desc:
            "the helper program 'systemctl hybrid-sleep' returned an unexpected exit status code (1)",
        },
      },
    ]);
    deepStrictEqual(demuB.writes, ["mem", "disk", "freeze mem disk"]);
    // Nothing offers suspend: an error (qemu-ga 7.2 answers nothing and does nothing).
    const demuC = await run("demu", 4, 0, "freeze");
    const unsupported = {
      error: {
        class: "GenericError",
        desc: "the requested suspend mode is not supported by the guest",
      },
    };
    deepStrictEqual(demuC.out, [unsupported, unsupported, unsupported]);
  },
});

Deno.test({
  name: "agent: guest-set-time with a time, where the kernel refuses it (user namespace)",
  async fn() {
    // In a user namespace the agent is "root" but lacks CAP_SYS_TIME over the real clock, so
    // settimeofday fails with EPERM: the whole path runs and this machine's clock cannot move.
    const wrapper = ["unshare", "-U", "-r"];
    const whos = findQemuGa() ? ["qemu-ga", "demu"] as const : ["demu"] as const;
    const results: unknown[] = [];
    for (const who of whos) {
      const agent = await startAgent(who, { wrapper });
      const c = await RawConn.open(agent.socket);
      try {
        const map = (await readViaAgent(c, "/proc/self/uid_map")).trim().split(/\s+/);
        // The initial namespace maps all 2^32 ids; a user namespace from unshare -r maps one.
        ok(map.length === 3 && map[2] === "1", `${who} runs in a user namespace: ${map}`);
        const now = BigInt(Date.now()) * 1_000_000n;
        const out = [];
        for (const t of [now, now + 3_600_000_000_000n]) {
          out.push(
            canonical(await c.call(`{"execute":"guest-set-time","arguments":{"time":${t}}}`)),
          );
        }
        results.push(out);
      } finally {
        await c.close();
        await agent.stop();
      }
    }
    if (results.length > 1) deepStrictEqual(results[1], results[0]);
    const refused = {
      error: {
        class: "GenericError",
        desc: "Failed to set time to guest: Operation not permitted",
      },
    };
    deepStrictEqual(results.at(-1), [refused, refused]);
  },
});
