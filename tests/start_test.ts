/**
 * `deno task start` (tools/start.ts) run as the tutorial's user runs it, in a scratch directory:
 * the image is created and described by qemu-img, SeaBIOS boots it to `No bootable device`, the
 * emulator is quit with Ctrl-A X and nothing is left running. A second run keeps the image. The
 * SeaBIOS fetch (apt-get download + dpkg-deb -x) is checked by booting what it unpacked.
 */
import { deepStrictEqual, match, ok } from "node:assert/strict";
import { findFirmware } from "../emu/firmware/bios.ts";
import { haveCommand, plain } from "./guests/pc/run.ts";

function includes(s: string, part: string): void {
  ok(s.includes(part), `missing ${JSON.stringify(part)} in:\n${s}`);
}

const START = new URL("../tools/start.ts", import.meta.url).pathname;
const APT = haveCommand("apt-get") && haveCommand("dpkg-deb");
/** start.ts boots what the emulator finds, or fetches it with apt-get. */
const SEABIOS = findFirmware("bios-256k.bin") !== null || APT;
if (!SEABIOS) console.warn("start_test: SKIPPED: no seabios and no apt-get to fetch it");

interface Run {
  code: number;
  out: string;
  err: string;
}

/** Runs the start script with cwd `dir`, bounded by a timeout (killed by pid). */
async function runStart(dir: string, env: Record<string, string> = {}): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", START],
    cwd: dir,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 240_000);
  const r = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** Pids of the processes whose working directory is `dir` (the emulator would be one). */
function processesIn(dir: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readLinkSync(`/proc/${e.name}/cwd`) === dir) pids.push(Number(e.name));
    } catch { /* gone or not ours */ }
  }
  return pids;
}

function checkBoot(r: Run): void {
  const out = plain(r.out);
  deepStrictEqual(r.code, 0, `exit ${r.code}\n${r.out}\n${r.err}`);
  for (
    const line of [
      "image: test-vm-1.qcow2",
      "file format: qcow2",
      "virtual size: 10 GiB (10737418240 bytes)",
      "cluster_size: 65536",
    ]
  ) includes(out, line);
  match(out, /SeaBIOS \(version [^)]+\)/);
  includes(out, "Booting from Hard Disk...");
  includes(out, "No bootable device.");
  // SeaBIOS's banner comes after qemu-img's info, and the boot ends with the quit.
  ok(out.indexOf("image: test-vm-1.qcow2") < out.indexOf("SeaBIOS (version"));
  ok(out.indexOf("No bootable device.") < out.indexOf("QEMU: Terminated"), out);
  // The terminal resets SeaBIOS sends are not passed on to the user's terminal.
  ok(!r.out.includes("\x1bc") && !r.out.includes("\x1b[2J"), "screen reset relayed");
}

Deno.test({
  name: "start: create + info + boot to 'No bootable device', quit, run again",
  ignore: !SEABIOS,
  async fn() {
    const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "demu-start-" }));
    try {
      const first = await runStart(dir);
      checkBoot(first);
      includes(first.out, "Formatting 'test-vm-1.qcow2', fmt=qcow2");
      deepStrictEqual(processesIn(dir), [], "processes left running in the scratch directory");
      const image = `${dir}/test-vm-1.qcow2`;
      if (haveCommand("qemu-img")) {
        const c = await new Deno.Command("qemu-img", { args: ["check", image] }).output();
        deepStrictEqual(c.code, 0, new TextDecoder().decode(c.stdout));
      }

      // Run twice: the image (maybe written to by the user meanwhile) is kept, not recreated.
      const mark = new Uint8Array([0xde, 0x4d, 0x55]);
      const f = await Deno.open(image, { write: true });
      await f.seek(0x1f0000, Deno.SeekMode.Start); // past the metadata: not read by qemu-img
      await f.write(mark);
      f.close();
      const before = await Deno.readFile(image);
      const second = await runStart(dir);
      checkBoot(second);
      ok(!second.out.includes("Formatting"), "the image was created again");
      includes(second.out, "test-vm-1.qcow2 exists: keeping it");
      deepStrictEqual(await Deno.readFile(image), before);
      deepStrictEqual(processesIn(dir), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "start: SeaBIOS fetched with apt-get download + dpkg-deb -x boots",
  ignore: !APT,
  async fn() {
    const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "demu-start-fw-" }));
    try {
      const { fetchSeabios } = await import("../tools/start.ts");
      let bios: string;
      try {
        bios = await fetchSeabios(`${dir}/cache`);
      } catch (e) {
        // No network or no package lists: say so loudly, as for a missing peer.
        console.warn(`start_test: fetch SKIPPED: ${(e as Error).message}`);
        return;
      }
      deepStrictEqual(bios, `${dir}/cache/usr/share/seabios/bios-256k.bin`);
      deepStrictEqual((await Deno.stat(bios)).size, 256 * 1024);
      // The emulator boots the fetched firmware (searched first through $DEMU_FIRMWARE_DIR).
      const run = await Deno.makeTempDir({ dir, prefix: "run-" });
      const r = await runStart(run, { DEMU_FIRMWARE_DIR: `${dir}/cache/usr/share/seabios` });
      checkBoot(r);
      deepStrictEqual(processesIn(run), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("start: without apt-get, a one-line message on how to get SeaBIOS", async () => {
  const dir = await Deno.makeTempDir({ prefix: "demu-start-noapt-" });
  try {
    const code = `import { fetchSeabios } from ${JSON.stringify(START)};
      try { await fetchSeabios(${JSON.stringify(`${dir}/cache`)}); console.log("fetched"); }
      catch (e) { console.log(e.constructor.name + ": " + e.message); }`;
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      env: { PATH: `${dir}/empty` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(r.stdout).trim();
    deepStrictEqual(out.split("\n").length, 1, out);
    match(out, /^StartError: SeaBIOS \(bios-256k\.bin\) not found and apt-get is missing: /);
    includes(out, "apt-get install seabios");
    deepStrictEqual([...Deno.readDirSync(dir)], [], "nothing unpacked");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
