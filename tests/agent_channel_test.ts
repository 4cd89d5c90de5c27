/**
 * The agent's character-device channels (-m isa-serial and -m virtio-serial) on a
 * pseudo-terminal standing in for the guest's port: the test holds the pty master (the "host"
 * end) through libc, starts the agent on the slave path, and exchanges requests. The real
 * qemu-ga runs the same way beside demu's agent, and their replies are compared.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { findQemuGa } from "../agent/testing.ts";
import { closeFd, openPty, readLines, writeAll } from "../agent/testing_pty.ts";

async function runOnPty(which: "demu" | "qemu-ga", method: string): Promise<string[]> {
  const { master, slave } = openPty();
  const dir = await Deno.makeTempDir({ prefix: "agent-pty-" });
  let child: Deno.ChildProcess | undefined;
  try {
    if (method === "virtio-serial") {
      // A virtio port is a raw byte pipe; make the pty behave like one.
      const s = await new Deno.Command("stty", { args: ["-F", slave, "raw", "-echo"] }).output();
      ok(s.success, "stty on the pty slave");
    }
    const common = ["-m", method, "-p", slave, "-t", dir, "-l", `${dir}/log`];
    const argv = which === "demu"
      ? [
        Deno.execPath(),
        "run",
        "-A",
        new URL("../agent/main.ts", import.meta.url).pathname,
        ...common,
      ]
      : [findQemuGa()!, ...common];
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const requests = [
      '{"execute":"guest-ping","id":"serial"}',
      '{"execute":"guest-sync","arguments":{"id":12345}}',
      '{"execute":"guest-get-host-name"}',
      '{"execute":"guest-no-such"}',
    ];
    // The agent may still be starting: repeat a sync (new id each time) until one is answered,
    // then sync once more and drop everything before that answer (late replies to retries).
    const enc = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
    const sync = (id: number) =>
      enc(`\xff{"execute":"guest-sync-delimited","arguments":{"id":${id}}}`);
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      writeAll(master, sync(100 + i));
      up = (await readLines(master, 1, 200)).length > 0;
    }
    ok(up, `${which} answered on ${method}`);
    writeAll(master, sync(77));
    let synced = false;
    for (let i = 0; i < 200 && !synced; i++) {
      synced = (await readLines(master, 1, 100)).some((l) => l.endsWith('{"return": 77}'));
    }
    ok(synced, `${which} resynchronised on ${method}`);
    const out: string[] = [];
    for (const r of requests) {
      writeAll(master, enc(r));
      out.push(...await readLines(master, 1));
    }
    return out;
  } finally {
    try {
      child?.kill("SIGTERM");
    } catch {
      // gone
    }
    await child?.status;
    closeFd(master);
    await Deno.remove(dir, { recursive: true });
  }
}

for (const method of ["isa-serial", "virtio-serial"]) {
  Deno.test(`agent channel: -m ${method} on a pty, demu beside qemu-ga`, async () => {
    const demu = await runOnPty("demu", method);
    strictEqual(demu.length, 4);
    strictEqual(demu[0], '{"return": {}, "id": "serial"}');
    strictEqual(demu[1], '{"return": 12345}');
    strictEqual(
      demu[3],
      '{"error": {"class": "CommandNotFound", "desc": "The command guest-no-such has not been found"}}',
    );
    if (!findQemuGa()) {
      console.warn("\n!!! WARNING: qemu-ga not installed: serial comparison SKIPPED !!!\n");
      return;
    }
    deepStrictEqual(demu, await runOnPty("qemu-ga", method));
  });
}
