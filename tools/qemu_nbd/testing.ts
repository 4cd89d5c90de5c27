/**
 * Helpers for the NBD and qemu-io tests (tests/nbd_*_test.ts, tests/qemu_io_*_test.ts): finding
 * peer programs, free ports, starting servers and waiting until they accept, killing them by pid.
 */

const here = new URL(".", import.meta.url);
/** Paths of demu's programs. */
export const DEMU_QEMU_NBD = new URL("../qemu-nbd.ts", here).pathname;
export const DEMU_QEMU_IO = new URL("../qemu-io.ts", here).pathname;
export const DEMU_QEMU_IMG = new URL("../qemu-img.ts", here).pathname;

/** Whether a program is on PATH. */
export function have(program: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${program}`).isFile) return true;
    } catch { /* not here */ }
  }
  return false;
}

/** have() for several programs, warning loudly about the missing ones; true when all are there. */
export function peers(...programs: string[]): boolean {
  const missing = programs.filter((p) => !have(p));
  if (missing.length) {
    console.error(
      `\n!!! WARNING: ${missing.join(", ")} not installed: tests needing them are SKIPPED !!!\n`,
    );
  }
  return missing.length === 0;
}

/** The result of a finished program. */
export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion. */
export async function run(cmd: string, args: string[], stdin?: string): Promise<Ran> {
  const p = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = p.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const o = await p.output();
  const d = new TextDecoder();
  return { code: o.code, stdout: d.decode(o.stdout), stderr: d.decode(o.stderr) };
}

/** Runs one of demu's programs (a .ts path) under this Deno. */
export function runDemu(script: string, args: string[], stdin?: string): Promise<Ran> {
  return run(Deno.execPath(), ["run", "-A", "--quiet", script, ...args], stdin);
}

/** A TCP port nobody listens on right now. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A started server process. */
export interface Server {
  pid: number;
  /** Stops it (SIGTERM, then SIGKILL) and waits for it to exit. */
  stop(): Promise<void>;
  /** stderr collected so far. */
  stderr(): string;
  exited: Promise<Deno.CommandStatus>;
}

/** Starts a server and waits until it accepts connections at the given address. */
export async function startServer(
  cmd: string,
  args: string[],
  at: { port?: number; socket?: string },
  timeoutMs = 15000,
): Promise<Server> {
  const p = new Deno.Command(cmd, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .spawn();
  let err = "";
  const d = new TextDecoder();
  const pump = (async () => {
    for await (const chunk of p.stderr) err += d.decode(chunk);
  })();
  let done = false;
  const exited = p.status.then((s) => {
    done = true;
    return s;
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (done) {
      await pump;
      throw new Error(`${cmd} ${args.join(" ")} exited early: ${err}`);
    }
    try {
      const c = at.socket
        ? await Deno.connect({ transport: "unix", path: at.socket })
        : await Deno.connect({ hostname: "127.0.0.1", port: at.port! });
      c.close();
      break;
    } catch {
      if (Date.now() > deadline) {
        p.kill("SIGKILL");
        await exited;
        throw new Error(`${cmd} did not start listening: ${err}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    pid: p.pid,
    exited,
    stderr: () => err,
    async stop() {
      if (!done) {
        try {
          p.kill("SIGTERM");
        } catch { /* gone */ }
        const t = setTimeout(() => {
          try {
            p.kill("SIGKILL");
          } catch { /* gone */ }
        }, 3000);
        await exited;
        clearTimeout(t);
      }
      await pump;
    },
  };
}

/** Starts demu's qemu-nbd with the given arguments (add -p/-k yourself; `at` says which). */
export function startDemuNbd(args: string[], at: { port?: number; socket?: string }) {
  return startServer(Deno.execPath(), ["run", "-A", "--quiet", DEMU_QEMU_NBD, ...args], at);
}

/** A temp dir and its remover. */
export async function tempDir(prefix: string): Promise<[string, () => Promise<void>]> {
  const d = await Deno.makeTempDir({ prefix });
  return [d, () => Deno.remove(d, { recursive: true }).catch(() => {})];
}

/** A deterministic byte generator (xorshift32) for test data. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.#s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#s = x >>> 0;
    return this.#s;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
  below(n: number): number {
    return this.next() % n;
  }
}

/** Drops qemu-io's timing figures (the statistics lines), which differ run to run. */
export function dropTimings(text: string): string {
  return text
    .replace(/^[^\n,]+, \d+ ops; [^\n]*$/gm, "<stats>")
    .replace(/^\d+,\d+,\d+:\d\d:\d\d\.\d\d,[\d.]+,[\d.]+$/gm, "<stats>");
}
