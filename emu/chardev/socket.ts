/**
 * Socket character backends: `tcp:[host]:port` and `unix:path`, as a client or (with
 * `server=on`) a server taking one client at a time; `wait=on` (a server's default) holds the
 * machine until the first client connects, as QEMU does. Output while nobody is connected is
 * dropped; output to a slow client is queued in order.
 */
import type { CharBackend } from "./mod.ts";

export interface SocketSpec {
  kind: "tcp" | "unix";
  host: string;
  port: number;
  path: string;
  server: boolean;
  wait: boolean;
}

/** Parses "tcp:host:port,server=on,wait=off" / "unix:/path,server" (old "server,nowait" too). */
export function parseSocketSpec(spec: string): SocketSpec | null {
  const m = /^(tcp|unix|telnet):(.*)$/.exec(spec);
  if (!m) return null;
  const [addr, ...opts] = m[2].split(",");
  const flags = new Map<string, string>();
  for (const o of opts) {
    const eq = o.indexOf("=");
    if (eq < 0) flags.set(o === "nowait" ? "wait" : o, o === "nowait" ? "off" : "on");
    else flags.set(o.slice(0, eq), o.slice(eq + 1));
  }
  const on = (k: string, dflt: boolean) => {
    const v = flags.get(k);
    return v === undefined ? dflt : v === "on" || v === "yes" || v === "true";
  };
  const server = on("server", false);
  const s: SocketSpec = {
    kind: m[1] === "unix" ? "unix" : "tcp",
    host: "",
    port: 0,
    path: "",
    server,
    wait: server && on("wait", true),
  };
  if (s.kind === "unix") {
    s.path = addr;
  } else {
    const i = addr.lastIndexOf(":");
    s.host = addr.slice(0, i) || (server ? "0.0.0.0" : "localhost");
    s.port = Number(addr.slice(i + 1));
    if (!Number.isInteger(s.port) || s.port < 0 || s.port > 65535) return null;
  }
  return s;
}

export class SocketBackend implements CharBackend {
  #conn: Deno.Conn | null = null;
  #listener: Deno.Listener | null = null;
  #receive: ((b: Uint8Array) => void) | null = null;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(readonly spec: SocketSpec) {}

  /** A client connected (true) or went away (false): virtio-serial tells the guest. */
  onConnection: ((connected: boolean) => void) | null = null;

  /** Whether a peer is connected now. */
  get connected(): boolean {
    return this.#conn !== null;
  }

  /** The address in QEMU's "disconnected:tcp:host:port,server=on" form. */
  describe(): string {
    const s = this.spec;
    const addr = s.kind === "unix" ? `unix:${s.path}` : `tcp:${s.host}:${s.port}`;
    return `disconnected:${addr}${s.server ? ",server=on" : ""}`;
  }

  /** Connects (client) or listens (server; with wait, until the first client arrives). */
  static async open(spec: SocketSpec, log: (m: string) => void): Promise<SocketBackend> {
    const b = new SocketBackend(spec);
    if (!spec.server) {
      const name = spec.kind === "unix" ? spec.path : `${spec.host}:${spec.port}`;
      try {
        b.#attach(
          spec.kind === "unix"
            ? await Deno.connect({ transport: "unix", path: spec.path })
            : await Deno.connect({ hostname: spec.host, port: spec.port }),
        );
      } catch (e) {
        const why = e instanceof Deno.errors.ConnectionRefused
          ? "Connection refused"
          : e instanceof Deno.errors.NotFound
          ? "No such file or directory"
          : (e as Error).message;
        throw new Error(`Failed to connect to '${name}': ${why}`);
      }
      return b;
    }
    b.#listener = spec.kind === "unix"
      ? Deno.listen({ transport: "unix", path: spec.path })
      : Deno.listen({ hostname: spec.host, port: spec.port });
    if (spec.wait) {
      log(`QEMU waiting for connection on: ${b.describe()}`);
      b.#attach(await b.#listener.accept());
    }
    b.#acceptLoop();
    return b;
  }

  async #acceptLoop(): Promise<void> {
    const l = this.#listener!;
    for (;;) {
      let c: Deno.Conn;
      try {
        c = await l.accept();
      } catch {
        return;
      }
      if (this.#conn) c.close(); // one client at a time
      else this.#attach(c);
    }
  }

  #attach(c: Deno.Conn): void {
    this.#conn = c;
    this.onConnection?.(true);
    (async () => {
      const buf = new Uint8Array(4096);
      for (;;) {
        let n: number | null;
        try {
          n = await c.read(buf);
        } catch {
          n = null;
        }
        if (n === null) break;
        this.#receive?.(buf.slice(0, n));
      }
      if (this.#conn === c) {
        this.#conn = null;
        this.onConnection?.(false);
      }
      try {
        c.close();
      } catch { /* closed */ }
    })();
  }

  write(bytes: Uint8Array): void {
    const c = this.#conn;
    if (!c || this.#closed) return;
    const data = bytes.slice();
    this.#queue = this.#queue.then(async () => {
      let done = 0;
      try {
        while (done < data.length) done += await c.write(data.subarray(done));
      } catch { /* the client went away */ }
    });
  }

  setReceiver(receive: (bytes: Uint8Array) => void): void {
    this.#receive = receive;
  }

  async close(): Promise<void> {
    await this.#queue;
    this.#closed = true;
    try {
      this.#conn?.close();
    } catch { /* closed */ }
    try {
      this.#listener?.close();
    } catch { /* closed */ }
    if (this.spec.kind === "unix" && this.spec.server) {
      try {
        Deno.removeSync(this.spec.path);
      } catch { /* gone */ }
    }
  }
}
