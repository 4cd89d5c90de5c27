/**
 * Filesystem freeze/thaw and trim on a loop-mounted temp ext4 filesystem (never on this
 * machine's real filesystems): the FIFREEZE/FITHAW/FITRIM bindings directly, and
 * guest-fsfreeze-freeze-list/status/thaw with an fsfreeze hook on demu's agent beside the real
 * qemu-ga. Needs root, mkfs.ext4 and loop devices; skipped loudly otherwise.
 */
import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import { fsFreeze, fsThaw, fsTrim, statvfs, SysError } from "@demu/sys";
import { canonical, findQemuGa, RawConn, startAgent } from "../agent/testing.ts";

const CLIENT = new URL("../tools/qemu-ga-client.ts", import.meta.url).pathname;

async function sh(cmd: string, args: string[]): Promise<boolean> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return r.success;
  } catch {
    return false;
  }
}

/** Makes and mounts a small ext4 image; undefined (with a loud warning) when that cannot be done. */
async function loopFs(): Promise<
  { dir: string; mnt: string; cleanup(): Promise<void> } | undefined
> {
  if (Deno.uid() !== 0) {
    console.warn("\n!!! WARNING: not root: loop-mount fsfreeze/fstrim tests SKIPPED !!!\n");
    return undefined;
  }
  const dir = await Deno.makeTempDir({ prefix: "agent-fs-" });
  const img = `${dir}/fs.img`;
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  const f = await Deno.open(img, { write: true, create: true });
  await f.truncate(32 * 1024 * 1024);
  f.close();
  const ok = await sh("mkfs.ext4", ["-q", "-F", img]) &&
    await sh("mount", ["-o", "loop", img, mnt]);
  if (!ok) {
    await Deno.remove(dir, { recursive: true });
    console.warn(
      "\n!!! WARNING: cannot mkfs.ext4/loop-mount here: fsfreeze/fstrim tests SKIPPED !!!\n",
    );
    return undefined;
  }
  return {
    dir,
    mnt,
    async cleanup() {
      // Never leave it frozen: a frozen mount cannot be unmounted cleanly.
      try {
        fsThaw(mnt);
      } catch {
        // was not frozen
      }
      await sh("umount", [mnt]);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("sys: FIFREEZE/FITHAW/FITRIM and statvfs on a loop-mounted filesystem", async () => {
  const fs = await loopFs();
  if (!fs) return;
  try {
    const st = statvfs(fs.mnt);
    ok(st.blocks > 0n && st.bfree <= st.blocks && st.frsize > 0n);
    fsFreeze(fs.mnt);
    // A second freeze of a frozen filesystem is EBUSY; a thaw of a thawed one is EINVAL.
    throws(() => fsFreeze(fs.mnt), (e) => e instanceof SysError && e.errno === 16);
    fsThaw(fs.mnt);
    throws(() => fsThaw(fs.mnt), (e) => e instanceof SysError && e.errno === 22);
    const trim = fsTrim(fs.mnt, 4096n);
    ok(trim.trimmed > 0n, "free space of a fresh filesystem is trimmed");
    ok(trim.minimum >= 4096n);
    throws(() => fsTrim(`${fs.dir}/missing`), (e) => e instanceof SysError && e.call === "open");
  } finally {
    await fs.cleanup();
  }
});

Deno.test({
  name: "agent: fsfreeze with a hook on a loop mount, demu beside qemu-ga",
  ignore: !findQemuGa(),
  async fn() {
    const fs = await loopFs();
    if (!fs) return;
    try {
      const replies: Record<string, unknown[]> = {};
      for (const who of ["qemu-ga", "demu"] as const) {
        const hookLog: string = `${fs.dir}/${who}-hook.log`;
        const hook: string = `${fs.dir}/${who}-hook.sh`;
        await Deno.writeTextFile(hook, `#!/bin/sh\necho "$1" >> ${hookLog}\n`, { mode: 0o755 });
        const agent = await startAgent(who, { args: [`-F${hook}`] });
        const c = await RawConn.open(agent.socket);
        const out: unknown[] = [];
        const call = async (req: object) => out.push(canonical(await c.call(req)));
        try {
          await call({ execute: "guest-fsfreeze-status" });
          await call({
            execute: "guest-fsfreeze-freeze-list",
            arguments: { mountpoints: [fs.mnt, `${fs.dir}/not-a-mountpoint`] },
          });
          await call({ execute: "guest-fsfreeze-status" });
          await call({ execute: "guest-ping" });
          await call({ execute: "guest-get-time" });
          await call({ execute: "guest-file-open", arguments: { path: "/etc/hostname" } });
          await call({
            execute: "guest-fsfreeze-freeze-list",
            arguments: { mountpoints: [fs.mnt] },
          });
          // While frozen, the kernel itself refuses a second freeze of the mount.
          throws(() => fsFreeze(fs.mnt), (e) => e instanceof SysError && e.errno === 16);
          await call({ execute: "guest-fsfreeze-thaw" });
          await call({ execute: "guest-fsfreeze-status" });
          await call({ execute: "guest-fsfreeze-thaw" });
          await call({ execute: "guest-fsfreeze-freeze-list", arguments: { mountpoints: [] } });
          await call({ execute: "guest-fsfreeze-status" });
          // The filesystem is writable again.
          await Deno.writeTextFile(`${fs.mnt}/${who}`, "ok");
          const fsinfo = await c.call({ execute: "guest-get-fsinfo" }) as {
            return: { mountpoint: string; "used-bytes": number }[];
          };
          const mine = fsinfo.return.find((m) => m.mountpoint === fs.mnt);
          ok(mine, `${who} lists the loop mount in guest-get-fsinfo`);
          const { "used-bytes": _u, ...stable } = mine;
          out.push(canonical(stable));
        } finally {
          await c.close();
          await agent.stop();
        }
        strictEqual(
          await Deno.readTextFile(hookLog),
          "freeze\nthaw\nthaw\nfreeze\n",
          `${who} hook`,
        );
        replies[who] = out;
      }
      deepStrictEqual(replies.demu, replies["qemu-ga"]);
      deepStrictEqual(replies.demu.slice(0, 3), [
        { return: "thawed" },
        { return: 1 },
        { return: "frozen" },
      ]);
    } finally {
      await fs.cleanup();
    }
  },
});

Deno.test({
  name: "agent: a restarted agent finds filesystems left frozen and can thaw them, as qemu-ga",
  ignore: !findQemuGa(),
  async fn() {
    const fs = await loopFs();
    if (!fs) return;
    try {
      const results: unknown[] = [];
      for (const who of ["qemu-ga", "demu"] as const) {
        const stateDir: string = `${fs.dir}/${who}-state`;
        await Deno.mkdir(stateDir);
        const out: unknown[] = [];
        const first = await startAgent(who, { stateDir });
        try {
          const c = await RawConn.open(first.socket);
          out.push(
            canonical(
              await c.call({
                execute: "guest-fsfreeze-freeze-list",
                arguments: { mountpoints: [fs.mnt] },
              }),
            ),
          );
          await c.close();
        } finally {
          await first.stop();
        }
        const second = await startAgent(who, { stateDir });
        try {
          const c = await RawConn.open(second.socket);
          for (
            const req of [
              '{"execute":"guest-fsfreeze-status"}',
              '{"execute":"guest-get-osinfo"}',
              '{"execute":"guest-fsfreeze-thaw"}',
              '{"execute":"guest-fsfreeze-status"}',
            ]
          ) out.push(canonical(await c.call(req)));
          await c.close();
        } finally {
          await second.stop();
        }
        results.push(out);
      }
      deepStrictEqual(results[1], results[0]);
      deepStrictEqual((results[1] as unknown[])[1], { return: "frozen" });
      deepStrictEqual((results[1] as unknown[])[3], { return: 1 });
    } finally {
      await fs.cleanup();
    }
  },
});

/**
 * Runs the agent in a private mount namespace whose /proc/self/mountinfo lists only the given
 * mount (a tmpfs over /proc holding that one line), so that whole-system commands
 * (guest-fsfreeze-freeze, guest-fstrim) can only reach the loop filesystem.
 */
async function onlyMount(mnt: string, dir: string): Promise<string[]> {
  const line = (await Deno.readTextFile("/proc/self/mountinfo")).split("\n")
    .find((l) => l.split(" ")[4] === mnt);
  if (!line) throw new Error(`${mnt} is not in mountinfo`);
  await Deno.writeTextFile(`${dir}/mountinfo`, line + "\n");
  return [
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    `mount -t tmpfs tmpfs /proc && mkdir /proc/self && cp ${dir}/mountinfo /proc/self/mountinfo && exec "$@"`,
    "sh",
  ];
}

Deno.test({
  name: "agent: guest-fsfreeze-freeze and guest-fstrim on a mount table of one loop mount",
  ignore: !findQemuGa(),
  async fn() {
    const results: unknown[] = [];
    for (const who of ["qemu-ga", "demu"] as const) {
      const fs = await loopFs();
      if (!fs) return;
      try {
        const agent = await startAgent(who, { wrapper: await onlyMount(fs.mnt, fs.dir) });
        const c = await RawConn.open(agent.socket);
        const out: unknown[] = [];
        try {
          // Safety first: the agent must see nothing but the loop mount before anything runs.
          const info = await c.call('{"execute":"guest-get-fsinfo"}') as {
            return: { mountpoint: string }[];
          };
          deepStrictEqual(info.return.map((m) => m.mountpoint), [fs.mnt]);
          for (
            const req of [
              '{"execute":"guest-fstrim"}',
              '{"execute":"guest-fstrim","arguments":{"minimum":1048576}}',
              '{"execute":"guest-fsfreeze-freeze"}',
              '{"execute":"guest-fsfreeze-status"}',
              '{"execute":"guest-fstrim"}',
              '{"execute":"guest-fsfreeze-thaw"}',
              '{"execute":"guest-fsfreeze-status"}',
            ]
          ) {
            out.push(JSON.stringify(canonical(await c.call(req))).replaceAll(fs.mnt, "MNT"));
          }
          // The same through qemu-ga-client's subcommands (the agent serves one client at a time).
          await c.close();
          for (
            const args of [["fsfreeze", "freeze"], ["fsfreeze", "status"], ["fsfreeze", "thaw"], [
              "fstrim",
            ]]
          ) {
            const r = await new Deno.Command(Deno.execPath(), {
              args: ["run", "-A", CLIENT, `--address=unix:${agent.socket}`, ...args],
              stdin: "null",
            }).output();
            const text = new TextDecoder().decode(r.code ? r.stderr : r.stdout);
            out.push(`${r.code} ${text.replaceAll(fs.mnt, "MNT").replace(/\d+ bytes/, "N bytes")}`);
            if (args[1] === "freeze") {
              // The kernel agrees: a second freeze of the filesystem is refused while frozen.
              throws(() => fsFreeze(fs.mnt), (e) => e instanceof SysError && e.errno === 16);
            }
          }
        } finally {
          await c.close();
          await agent.stop();
        }
        results.push(out);
      } finally {
        await fs.cleanup();
      }
    }
    // Trimmed byte counts depend on the allocator's state: compared in shape, the rest exactly.
    const trimShape = (s: unknown) =>
      String(s).replace(/"trimmed":\d+/g, '"trimmed":N').replace(/"minimum":\d+/g, '"minimum":N');
    deepStrictEqual(
      (results[1] as string[]).map(trimShape),
      (results[0] as string[]).map(trimShape),
    );
    const demu = results[1] as string[];
    ok(/"trimmed":[1-9]/.test(demu[0]), `free space trimmed: ${demu[0]}`);
    deepStrictEqual(demu.slice(7), [
      "0 1 filesystems frozen\n",
      "0 frozen\n",
      "0 1 filesystems thawed\n",
      "0 MNT: N bytes trimmed (minimum 0)\n",
    ]);
    deepStrictEqual(demu.slice(2, 7), [
      '{"return":1}',
      '{"return":"frozen"}',
      '{"error":{"class":"CommandNotFound","desc":"Command guest-fstrim has been disabled: the agent is in frozen state"}}',
      '{"return":1}',
      '{"return":"thawed"}',
    ]);
  },
});

/** A 64 MiB image with an MBR holding one Linux partition (from sector 2048 to the end). */
async function partitionedImage(path: string): Promise<void> {
  const size = 64 * 1024 * 1024;
  const f = await Deno.open(path, { write: true, create: true });
  await f.truncate(size);
  const mbr = new Uint8Array(512);
  const v = new DataView(mbr.buffer);
  mbr[446 + 4] = 0x83; // partition type: Linux
  v.setUint32(446 + 8, 2048, true); // first LBA
  v.setUint32(446 + 12, size / 512 - 2048, true); // sectors
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  await f.write(mbr);
  f.close();
}

async function output(cmd: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(cmd, { args, stderr: "piped" }).output();
  if (!r.success) throw new Error(`${cmd}: ${new TextDecoder().decode(r.stderr)}`);
  return new TextDecoder().decode(r.stdout).trim();
}

Deno.test({
  name: "agent: fsinfo and get-disks for a partitioned loop disk mounted twice, as qemu-ga",
  ignore: !findQemuGa(),
  async fn() {
    if (Deno.uid() !== 0) {
      console.warn("\n!!! WARNING: not root: partitioned loop disk test SKIPPED !!!\n");
      return;
    }
    const dir = await Deno.makeTempDir({ prefix: "agent-disks-" });
    let loop = "";
    try {
      await partitionedImage(`${dir}/disk.img`);
      try {
        loop = await output("losetup", ["-P", "-f", "--show", `${dir}/disk.img`]);
      } catch (e) {
        console.warn(`\n!!! WARNING: losetup -P failed (${e}): partition test SKIPPED !!!\n`);
        return;
      }
      let part = `${loop}p1`;
      let partitioned = false;
      for (let i = 0; i < 50 && !partitioned; i++) {
        try {
          partitioned = Deno.statSync(part).isBlockDevice === true;
        } catch {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      if (!partitioned) {
        // Some kernels (this sandbox's) read no partition tables: use the whole disk.
        console.warn(
          "\n!!! WARNING: kernel found no partition on the loop disk: partitions not covered !!!\n",
        );
        part = loop;
      }
      await output("mkfs.ext4", ["-q", "-F", part]);
      await Deno.mkdir(`${dir}/a`);
      await Deno.mkdir(`${dir}/b`);
      // Mounted (and bind-mounted) only inside the agents' own mount namespaces.
      const wrapper = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        `mount ${part} ${dir}/a && mount --bind ${dir}/a ${dir}/b && exec "$@"`,
        "sh",
      ];
      const results: unknown[] = [];
      for (const who of ["qemu-ga", "demu"] as const) {
        const agent = await startAgent(who, { wrapper });
        const c = await RawConn.open(agent.socket);
        try {
          const fsinfo = await c.call('{"execute":"guest-get-fsinfo"}') as {
            return: { mountpoint: string; "used-bytes"?: number }[];
          };
          const mine = fsinfo.return.filter((m) => m.mountpoint.startsWith(dir))
            .map(({ "used-bytes": _u, ...rest }) => canonical(rest));
          const disks = await c.call('{"execute":"guest-get-disks"}') as {
            return: { name: string }[];
          };
          const loopEntries = disks.return.filter((d) => d.name.startsWith(loop))
            .map(canonical);
          // Freezing a device through two of its mounts: the second finds it frozen already.
          const freeze = canonical(
            await c.call({
              execute: "guest-fsfreeze-freeze-list",
              arguments: { mountpoints: [`${dir}/a`, `${dir}/b`] },
            }),
          );
          const thaw = canonical(await c.call('{"execute":"guest-fsfreeze-thaw"}'));
          results.push({ mine, loopEntries, freeze, thaw });
        } finally {
          await c.close();
          await agent.stop();
        }
      }
      deepStrictEqual(results[1], results[0]);
      const demu = results[1] as { mine: unknown[]; loopEntries: unknown[] };
      strictEqual(demu.mine.length, 2, "the bind mount is listed too, as qemu-ga 7.2 does");
      deepStrictEqual(demu.loopEntries, [
        ...(partitioned ? [{ dependencies: [loop], name: part, partition: true }] : []),
        { dependencies: [], name: loop, partition: false },
      ]);
    } finally {
      if (loop) await output("losetup", ["-d", loop]).catch(() => "");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
