/**
 * Helpers for tests that hold demu's qemu-img against the real one: run either side and capture
 * its output, deterministic pseudo-random data, and the skip-with-a-warning rule for peers.
 */
import { CapturedIo } from "./cli.ts";
import { run } from "./main.ts";

/** What a run printed and returned. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function peerInstalled(cmd: string): boolean {
  try {
    return new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Whether the real qemu-img and qemu-io (Debian qemu-utils) are installed; warns loudly if not. */
export const HAVE_QEMU = (() => {
  const ok = peerInstalled("qemu-img") && peerInstalled("qemu-io");
  if (!ok) {
    console.error(
      "WARNING: qemu-img/qemu-io (Debian qemu-utils) not installed: interop tests are SKIPPED",
    );
  }
  return ok;
})();

const dec = new TextDecoder();

/** Runs a real QEMU tool. */
export async function realTool(cmd: string, args: string[]): Promise<RunResult> {
  const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

/** Runs the real qemu-img. */
export function real(...args: string[]): Promise<RunResult> {
  return realTool("qemu-img", args);
}

/** Runs the real qemu-io on an image with a list of -c commands. */
export async function qemuIo(image: string, fmt: string, cmds: string[]): Promise<void> {
  const args = ["-f", fmt];
  for (const c of cmds) args.push("-c", c);
  args.push(image);
  const r = await realTool("qemu-io", args);
  if (r.code !== 0 || /error|failed/i.test(r.stdout + r.stderr)) {
    throw new Error(`qemu-io ${args.join(" ")}: ${r.stdout}${r.stderr}`);
  }
}

/** Runs demu's qemu-img in this process. */
export async function demu(...args: string[]): Promise<RunResult> {
  const io = new CapturedIo();
  const code = await run(args, io);
  return { code, stdout: io.stdout, stderr: io.stderr };
}

/** A small deterministic PRNG (xorshift32), so failures reproduce. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.#s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x >>> 0;
    return this.#s;
  }
  /** An integer in [0, n). */
  below(n: number): number {
    return this.next() % n;
  }
  /** Fills buf with pseudo-random bytes. */
  fill(buf: Uint8Array): Uint8Array {
    for (let i = 0; i < buf.length; i++) buf[i] = this.next() & 0xff;
    return buf;
  }
}

/** A fresh temporary directory, removed by the returned function. */
export async function tempDir(prefix: string): Promise<[string, () => Promise<void>]> {
  const dir = await Deno.makeTempDir({ prefix });
  return [dir, () => Deno.remove(dir, { recursive: true })];
}
