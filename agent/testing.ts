/**
 * Helpers for tests that drive guest agents over unix sockets: start demu's agent or the real
 * qemu-ga on a temp socket, send raw bytes, collect replies. Kept beside the agent so that
 * tests in tests/ and the ping benchmark share one implementation.
 */
import { JsonStreamer, type JsonValue } from "./json.ts";

/** A running agent process on a temp socket; stop() kills it (by pid) and removes its files. */
export interface AgentProcess {
  socket: string;
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

/** Where the real qemu-ga is, or undefined (tests then skip loudly). */
export function findQemuGa(): string | undefined {
  for (const p of ["/usr/sbin/qemu-ga", "/usr/bin/qemu-ga"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch {
      // not installed here
    }
  }
  return undefined;
}

const MAIN = new URL("./main.ts", import.meta.url).pathname;

async function waitForSocket(path: string, child: Deno.ChildProcess, ms = 15000) {
  let exited = false;
  child.status.then(() => exited = true);
  const end = Date.now() + ms;
  while (Date.now() < end && !exited) {
    try {
      // listening, not only bound (the file exists between bind and listen): a connection
      // that is accepted and closed at once
      if (Deno.statSync(path).isSocket) {
        (await Deno.connect({ transport: "unix", path })).close();
        return;
      }
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`agent did not create ${path}${exited ? " (it exited)" : ""}`);
}

/** Options for {@link startAgent}. */
export interface StartOptions {
  /** Extra command-line arguments (-b, -F, ...). */
  args?: string[];
  /** Wrap the command (e.g. ["prlimit", "--nofile=64"]). */
  wrapper?: string[];
  /** Extra environment variables (e.g. TZ). */
  env?: Record<string, string>;
  /** A state directory to use (kept when the agent stops) instead of a fresh one. */
  stateDir?: string;
}

/** Starts "demu" (agent/main.ts) or "qemu-ga" with -m unix-listen in a fresh temp dir. */
export async function startAgent(
  which: "demu" | "qemu-ga",
  opts: StartOptions = {},
): Promise<AgentProcess> {
  const dir = await Deno.makeTempDir({ prefix: `agent-${which}-` });
  const socket = `${dir}/qga.sock`;
  const state = opts.stateDir ?? `${dir}/state`;
  if (!opts.stateDir) await Deno.mkdir(state);
  const common = ["-m", "unix-listen", "-p", socket, "-t", state, "-l", `${dir}/log`];
  let argv: string[];
  if (which === "demu") argv = [Deno.execPath(), "run", "-A", MAIN, ...common];
  else {
    const bin = findQemuGa();
    if (!bin) throw new Error("qemu-ga is not installed");
    argv = [bin, ...common];
  }
  argv = [...(opts.wrapper ?? []), ...argv, ...(opts.args ?? [])];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    env: opts.env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await waitForSocket(socket, child);
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
  return {
    socket,
    dir,
    pid: child.pid,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // gone
        }
      }, 3000);
      await child.status;
      clearTimeout(t);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** One reply: its parsed value, and whether a 0xFF byte preceded it. */
export interface Reply {
  /** The reply line as sent (without the 0xFF and the newline). */
  raw: string;
  value: JsonValue | undefined;
  error?: string;
  delimited: boolean;
}

/** A raw client connection: send bytes, wait for a number of reply lines. */
export class RawConn {
  // Received bytes not yet taken: #store[#start, #end), grown by doubling.
  #store = new Uint8Array(1 << 16);
  #start = 0;
  #end = 0;
  #scanned = 0;
  #closed = false;
  #waiters: (() => void)[] = [];
  #pump: Promise<void>;

  private constructor(readonly conn: Deno.UnixConn) {
    this.#pump = this.#read();
  }

  /** Connects, retrying for up to 5 s while the agent starts (no socket yet, or not accepting). */
  static async open(path: string): Promise<RawConn> {
    for (let i = 0;; i++) {
      try {
        return new RawConn(await Deno.connect({ transport: "unix", path }));
      } catch (e) {
        const starting = e instanceof Deno.errors.ConnectionRefused ||
          e instanceof Deno.errors.NotFound;
        if (!starting || i >= 250) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  async #read(): Promise<void> {
    const chunk = new Uint8Array(1 << 16);
    try {
      for (;;) {
        const n = await this.conn.read(chunk);
        if (n === null) break;
        if (this.#end + n > this.#store.length) {
          const live = this.#end - this.#start;
          const bigger = new Uint8Array(Math.max(this.#store.length, (live + n) * 2));
          bigger.set(this.#store.subarray(this.#start, this.#end));
          this.#scanned -= this.#start;
          this.#start = 0;
          this.#end = live;
          this.#store = bigger;
        }
        this.#store.set(chunk.subarray(0, n), this.#end);
        this.#end += n;
        this.#waiters.splice(0).forEach((w) => w());
      }
    } catch {
      // closed under us
    }
    this.#closed = true;
    this.#waiters.splice(0).forEach((w) => w());
  }

  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /** Takes complete reply lines as they arrive; returns what came within the timeout. */
  async replies(count: number, timeoutMs = 5000): Promise<Reply[]> {
    const out: Reply[] = [];
    const end = Date.now() + timeoutMs;
    while (out.length < count) {
      const found = this.#store.subarray(this.#scanned, this.#end).indexOf(0x0a);
      this.#scanned = found < 0 ? this.#end : this.#scanned + found;
      if (found >= 0) {
        let line = this.#store.slice(this.#start, this.#scanned);
        this.#start = this.#scanned = this.#scanned + 1;
        const delimited = line[0] === 0xff;
        if (delimited) line = line.subarray(1);
        let value: JsonValue | undefined;
        let error: string | undefined;
        new JsonStreamer((v, e) => {
          value = v;
          error = e;
        }).feed(line);
        out.push({ raw: new TextDecoder().decode(line), value, error, delimited });
        continue;
      }
      if (this.#closed || Date.now() >= end) break;
      await new Promise<void>((r) => {
        const t = setTimeout(r, end - Date.now());
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return out;
  }

  /** Sends one request and returns its one reply's text (undefined on timeout). */
  async callRaw(req: string | object, timeoutMs = 5000): Promise<string | undefined> {
    await this.send(typeof req === "string" ? req : JSON.stringify(req));
    return (await this.replies(1, timeoutMs))[0]?.raw;
  }

  /** Sends one request and returns its one reply's value (undefined on timeout). */
  async call(req: string | object, timeoutMs = 5000): Promise<JsonValue | undefined> {
    await this.send(typeof req === "string" ? req : JSON.stringify(req));
    const r = await this.replies(1, timeoutMs);
    return r[0]?.value;
  }

  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // closed
    }
    await this.#pump;
  }
}

/** The shape of a value: keys and value types, recursively (lists: the set of element shapes). */
export function shape(v: unknown): unknown {
  if (v === null) return "null";
  if (Array.isArray(v)) {
    const shapes = new Map<string, unknown>();
    for (const x of v) {
      const s = shape(x);
      shapes.set(JSON.stringify(s), s);
    }
    return { list: [...shapes.keys()].sort().map((k) => shapes.get(k)) };
  }
  if (typeof v === "object") {
    if (v.constructor?.name === "JsonFloat") return "number";
    const o = v as Record<string, unknown>;
    return Object.fromEntries(Object.keys(o).sort().map((k) => [k, shape(o[k])]));
  }
  if (typeof v === "bigint") return "number";
  return typeof v;
}

/** A value with object keys sorted, so replies compare regardless of key order. */
export function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object" && v.constructor?.name !== "JsonFloat") {
    const o = v as Record<string, unknown>;
    return Object.fromEntries(Object.keys(o).sort().map((k) => [k, canonical(o[k])]));
  }
  if (v && typeof v === "object") return (v as { value: number }).value;
  return v;
}
