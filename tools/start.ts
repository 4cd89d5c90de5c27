/**
 * `deno task start`: the tutorial's first steps, done for the user.
 *
 *   1. `qemu-img create -f qcow2 test-vm-1.qcow2 10G` (only when the image is absent: running the
 *      task again must not wipe a disk the user may have written to), then `qemu-img info`;
 *   2. `qemu-system-x86_64 test-vm-1.qcow2 -nographic` with demu's emulator: SeaBIOS boots, finds
 *      nothing to boot and prints `No bootable device.`, which is shown live;
 *   3. then the emulator is stopped the way the tutorial's user would stop QEMU, which keeps
 *      retrying the boot forever: Ctrl-A X typed on its stdin (the -nographic mux quits on it).
 *
 * SeaBIOS comes from Debian's seabios package. Without it, and where apt-get exists, the package
 * is fetched with `apt-get download seabios` (no root needed) and unpacked with `dpkg-deb -x`
 * into .cache/seabios, where the emulator looks; elsewhere the task says how to get it and fails.
 */
import { findFirmware } from "../emu/firmware/bios.ts";

const IMAGE = "test-vm-1.qcow2";
const MARKER = "No bootable device";
/** The interpreter reaches the marker in about a second; a loaded CI machine gets far more. */
const BOOT_TIMEOUT_MS = 180_000;
/** Time the emulator has to leave after Ctrl-A X before it is stopped by pid. */
const QUIT_GRACE_MS = 10_000;

const root = new URL("../", import.meta.url).pathname;
/** Where bios.ts looks for an unpacked seabios package (`<cache>/usr/share/seabios`). */
export const SEABIOS_CACHE = `${root}.cache/seabios`;
const enc = new TextEncoder();

/** A one-line failure the task reports on stderr before exiting 1. */
export class StartError extends Error {}

function deno(script: string, args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}${script}`, ...args],
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  });
}

async function runTool(script: string, args: string[]): Promise<void> {
  const { code } = await deno(script, args).output();
  if (code !== 0) throw new StartError(`${script} ${args.join(" ")} failed (exit ${code})`);
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The first directory of $PATH holding an executable `name`, or null. */
export function which(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    try {
      const st = Deno.statSync(`${dir}/${name}`);
      if (st.isFile && (st.mode ?? 0o111) & 0o111) return `${dir}/${name}`;
    } catch { /* not here */ }
  }
  return null;
}

const HOW_TO_GET =
  "install Debian's seabios package (apt-get install seabios), or put bios-256k.bin and " +
  "vgabios-stdvga.bin from it in a directory named by $DEMU_FIRMWARE_DIR";

/**
 * Fetches Debian's seabios package with apt-get and unpacks it into `dest` (the firmware ends up
 * in `dest`/usr/share/seabios). Returns the path of bios-256k.bin. Throws a StartError saying
 * how to get SeaBIOS when apt-get or dpkg-deb is missing or the download fails.
 */
export async function fetchSeabios(dest: string): Promise<string> {
  if (!which("apt-get") || !which("dpkg-deb")) {
    throw new StartError(`SeaBIOS (bios-256k.bin) not found and apt-get is missing: ${HOW_TO_GET}`);
  }
  console.log(`SeaBIOS not installed: fetching Debian's seabios package into ${dest}`);
  const tmp = await Deno.makeTempDir({ prefix: "demu-seabios-" });
  try {
    // apt-get download writes into the current directory; as root it warns that the _apt user
    // cannot write there, which is harmless, so its stderr is shown only on failure.
    const dl = await new Deno.Command("apt-get", {
      args: ["download", "seabios"],
      cwd: tmp,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const deb = [...Deno.readDirSync(tmp)].find((e) => e.name.endsWith(".deb"));
    if (dl.code !== 0 || !deb) {
      const why = new TextDecoder().decode(dl.stderr).trim().split("\n").filter((l) =>
        l.startsWith("E:")
      )[0] ?? `apt-get exited with ${dl.code}`;
      throw new StartError(`apt-get download seabios failed (${why}): ${HOW_TO_GET}`);
    }
    await Deno.mkdir(dest, { recursive: true });
    const x = await new Deno.Command("dpkg-deb", {
      args: ["-x", `${tmp}/${deb.name}`, dest],
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    const bios = `${dest}/usr/share/seabios/bios-256k.bin`;
    if (x.code !== 0 || !exists(bios)) {
      throw new StartError(`dpkg-deb -x ${deb.name} did not give bios-256k.bin: ${HOW_TO_GET}`);
    }
    return bios;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/**
 * Terminal-wide resets in SeaBIOS's console output (ESC c, clear screen, auto-wrap off): passed
 * through they would wipe the qemu-img info above and leave the user's terminal without line
 * wrapping, so the relay drops them. Everything else goes through as the guest wrote it.
 */
const SCREEN_RESETS = ["\x1bc", "\x1b[2J", "\x1b[?7l"];

/** Drops SCREEN_RESETS from a byte stream cut at arbitrary points. */
export class ScreenResetFilter {
  #held = "";
  /** Returns what can be shown now; a possible start of a reset sequence is held back. */
  push(text: string): string {
    let s = this.#held + text;
    this.#held = "";
    for (const r of SCREEN_RESETS) s = s.split(r).join("");
    const esc = s.lastIndexOf("\x1b");
    if (esc >= 0) {
      const tail = s.slice(esc);
      if (SCREEN_RESETS.some((r) => r.startsWith(tail) && r !== tail)) {
        this.#held = tail;
        s = s.slice(0, esc);
      }
    }
    return s;
  }
  /** What is still held back at the end of the stream. */
  flush(): string {
    const s = this.#held;
    this.#held = "";
    return s;
  }
}

/**
 * Boots the image with -nographic, relays the guest's serial console to stdout, and once
 * SeaBIOS has printed MARKER types Ctrl-A X on the emulator's stdin, as a user would. Falls back
 * to SIGTERM / SIGKILL by pid if the emulator does not leave. Returns the exit code for the task.
 */
async function boot(): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}emu/main.ts`, IMAGE, "-nographic"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdin = child.stdin.getWriter();
  const kill = (sig: Deno.Signal) => {
    try {
      child.kill(sig);
    } catch { /* already gone */ }
  };
  // Ctrl-C in the terminal reaches the emulator too (same process group); it stops on its own
  // and this script then reports what it saw, so the listener only keeps the script alive.
  const onInt = () => {};
  Deno.addSignalListener("SIGINT", onInt);

  let seen = false;
  let quitSent = false;
  const timers: ReturnType<typeof setTimeout>[] = [];
  const quit = () => {
    if (quitSent) return;
    quitSent = true;
    stdin.write(new Uint8Array([0x01, 0x78])).catch(() => {}); // Ctrl-A X
    timers.push(setTimeout(() => kill("SIGTERM"), QUIT_GRACE_MS));
    timers.push(setTimeout(() => kill("SIGKILL"), QUIT_GRACE_MS * 2));
  };
  let timedOut = false;
  timers.push(setTimeout(() => {
    timedOut = true;
    kill("SIGTERM");
    timers.push(setTimeout(() => kill("SIGKILL"), QUIT_GRACE_MS));
  }, BOOT_TIMEOUT_MS));

  const filter = new ScreenResetFilter();
  const dec = new TextDecoder();
  // If our own stdout goes away (piped into `head`), keep watching so the emulator still quits.
  let relaying = true;
  const show = async (text: string) => {
    if (!relaying || !text) return;
    try {
      await Deno.stdout.write(enc.encode(text));
    } catch {
      relaying = false;
    }
  };
  let window = ""; // the tail of the output, to find MARKER across chunk boundaries
  for await (const chunk of child.stdout) {
    const text = dec.decode(chunk, { stream: true });
    await show(filter.push(text));
    window = (window + text).slice(-(MARKER.length + 64 + text.length));
    // The whole line, so that the quit message does not cut it.
    const at = window.indexOf(MARKER);
    if (!seen && at >= 0 && window.indexOf("\n", at) >= 0) {
      seen = true;
      quit();
    }
  }
  await show(filter.flush());
  const status = await child.status;
  for (const t of timers) clearTimeout(t);
  Deno.removeSignalListener("SIGINT", onInt);
  try {
    await stdin.close();
  } catch { /* the emulator is gone */ }

  if (!seen) {
    if (timedOut) {
      throw new StartError(`no '${MARKER}' within ${BOOT_TIMEOUT_MS / 1000} s; emulator stopped`);
    }
    throw new StartError(
      `the emulator exited (${status.signal ?? `exit ${status.code}`}) before '${MARKER}'`,
    );
  }
  return status.success ? 0 : status.code || 1;
}

export async function main(): Promise<number> {
  try {
    if (exists(IMAGE)) console.log(`${IMAGE} exists: keeping it (delete it for a fresh one)`);
    else await runTool("tools/qemu-img.ts", ["create", "-f", "qcow2", IMAGE, "10G"]);
    await runTool("tools/qemu-img.ts", ["info", IMAGE]);
    if (!findFirmware("bios-256k.bin")) await fetchSeabios(SEABIOS_CACHE);
    console.log(`\n$ qemu-system-x86_64 ${IMAGE} -nographic   (demu; quit with Ctrl-A X)`);
    return await boot();
  } catch (e) {
    if (!(e instanceof StartError)) throw e;
    console.error(`start: ${e.message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
