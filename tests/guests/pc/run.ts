/**
 * Running an emulator (demu's or the real qemu-system-x86_64) as a child process for tests:
 * time-bounded, optionally stopped as soon as a marker appears, always killed by pid.
 */

const root = new URL("../../../", import.meta.url).pathname;
export const DEMU_MAIN = `${root}emu/main.ts`;

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from spawn until the marker appeared (or until exit). */
  ms: number;
  /** The marker was seen. */
  matched: boolean;
  timedOut: boolean;
}

export interface RunOptions {
  /** Stop the process (SIGTERM, then SIGKILL) once stdout or stderr contains this. */
  until?: string;
  timeoutMs: number;
  env?: Record<string, string>;
}

/** Strips terminal escape sequences (SeaBIOS's sercon draws with them). */
export function plain(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/\x1bc/g, "").replace(/\x1b[()][0-9A-Za-z]/g, "").replace(
    // deno-lint-ignore no-control-regex
    /\x1b\[[0-9;?]*[A-Za-z]/g,
    "",
  );
}

/** Runs cmd with args; resolves when it exits, the marker is seen, or the timeout expires. */
export async function runUntil(cmd: string, args: string[], o: RunOptions): Promise<RunResult> {
  const t0 = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: o.env,
  }).spawn();
  const dec = new TextDecoder();
  let stdout = "";
  let stderr = "";
  let matched = false;
  let timedOut = false;
  let ms = -1;
  const kill = (sig: Deno.Signal) => {
    try {
      Deno.kill(child.pid, sig);
    } catch { /* already gone */ }
  };
  let hardKill: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    kill("SIGTERM");
    hardKill ??= setTimeout(() => kill("SIGKILL"), 3000);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    stop();
  }, o.timeoutMs);
  const readOut = (async () => {
    for await (const chunk of child.stdout) {
      stdout += dec.decode(chunk, { stream: true });
      if (o.until && !matched && plain(stdout).includes(o.until)) {
        matched = true;
        ms = performance.now() - t0;
        stop();
      }
    }
  })();
  const readErr = (async () => {
    for await (const chunk of child.stderr) {
      stderr += dec.decode(chunk, { stream: true });
      if (o.until && !matched && stderr.includes(o.until)) {
        matched = true;
        ms = performance.now() - t0;
        stop();
      }
    }
  })();
  const status = await child.status;
  await Promise.all([readOut, readErr]);
  clearTimeout(timer);
  if (hardKill !== undefined) clearTimeout(hardKill);
  if (ms < 0) ms = performance.now() - t0;
  return { code: status.code, stdout, stderr, ms, matched, timedOut };
}

/** Runs demu's emulator. */
export function runDemu(args: string[], o: RunOptions): Promise<RunResult> {
  return runUntil(Deno.execPath(), ["run", "-A", DEMU_MAIN, ...args], o);
}

/** Whether a program can be started. */
export function haveCommand(name: string, args = ["--version"]): boolean {
  try {
    return new Deno.Command(name, { args, stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

/** Whether /dev/kvm can be opened read-write here. */
export function haveKvm(): boolean {
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
    return true;
  } catch {
    return false;
  }
}

/** Whether Debian's SeaBIOS (the seabios package) is installed. */
export function haveSeabios(): boolean {
  try {
    return Deno.statSync("/usr/share/seabios/bios-256k.bin").isFile;
  } catch {
    return false;
  }
}
