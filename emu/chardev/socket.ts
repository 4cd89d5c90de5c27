/**
 * Socket character backends: `tcp:[host]:port` and `unix:path`, as a client or (with
 * `server=on`) a server taking one client at a time; `wait=on` (a server's default) holds the
 * machine until the first client connects, as QEMU does. Output while nobody is connected is
 * dropped; output to a slow client is queued in order. A client with `reconnect=N` does not fail
 * when the server is absent: it reports that once and tries again every N seconds, and again N
 * seconds after a connection ends.
 */
import type { CharBackend } from "./mod.ts";

export interface SocketSpec {
  kind: "tcp" | "unix";
  host: string;
  port: number;
  path: string;
  server: boolean;
  wait: boolean;
  /** Seconds between a client's connection attempts; 0: connect once, at start-up. */
  reconnect?: number;
}

/** What the socket backend reports besides its errors. */
export interface SocketReports {
  /** The chardev's id, in reconnect reports. */
  id?: string;
  /** A reconnecting client's first failure ("Unable to connect character device ..."). */
  error?: (message: string) => void;
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
  #retry: ReturnType<typeof setTimeout> | null = null;
  #reported = false;

  private constructor(readonly spec: SocketSpec, readonly reports: SocketReports = {}) {}

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
  static async open(
    spec: SocketSpec,
    log: (m: string) => void,
    reports: SocketReports = {},
  ): Promise<SocketBackend> {
    const b = new SocketBackend(spec, reports);
    if (!spec.server) {
      if (spec.reconnect) {
        await b.#tryConnect();
        return b;
      }
      b.#attach(await b.#connect());
      return b;
    }
    b.#listener = b.#listen();
    if (spec.wait) {
      log(`QEMU waiting for connection on: ${b.describe()}`);
      b.#attach(await b.#listener.accept());
    }
    b.#acceptLoop();
    return b;
  }

  /** One connection attempt, failing with QEMU's words. */
  async #connect(): Promise<Deno.Conn> {
    const spec = this.spec;
    const name = spec.kind === "unix" ? spec.path : `${spec.host}:${spec.port}`;
    try {
      return spec.kind === "unix"
        ? await Deno.connect({ transport: "unix", path: spec.path })
        : await Deno.connect({ hostname: spec.host, port: spec.port });
    } catch (e) {
      throw new Error(`Failed to connect to '${name}': ${why(e)}`);
    }
  }

  /** reconnect=N: connect now or report (once) and try again in N seconds. */
  async #tryConnect(): Promise<void> {
    if (this.#closed) return;
    try {
      this.#attach(await this.#connect());
    } catch (e) {
      if (!this.#reported) {
        this.#reported = true;
        this.reports.error?.(
          `Unable to connect character device ${this.reports.id ?? ""}: ${(e as Error).message}`,
        );
      }
      this.#scheduleReconnect();
    }
  }

  #scheduleReconnect(): void {
    if (this.#closed || !this.spec.reconnect) return;
    this.#retry = setTimeout(() => {
      this.#retry = null;
      this.#tryConnect();
    }, this.spec.reconnect * 1000);
  }

  /** Listens, removing a stale unix socket first as QEMU does. */
  #listen(): Deno.Listener {
    const spec = this.spec;
    if (spec.kind === "unix") {
      try {
        if (!Deno.lstatSync(spec.path).isDirectory) Deno.removeSync(spec.path);
        else throw new Error(`Failed to unlink socket ${spec.path}: Is a directory`);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
      try {
        return Deno.listen({ transport: "unix", path: spec.path });
      } catch (e) {
        throw new Error(`Failed to bind socket to ${spec.path}: ${why(e)}`);
      }
    }
    try {
      return Deno.listen({ hostname: spec.host, port: spec.port });
    } catch (e) {
      if (e instanceof Deno.errors.AddrInUse) {
        throw new Error("Failed to find an available port: Address already in use");
      }
      throw new Error(`address resolution failed for ${spec.host}:${spec.port}: ${why(e)}`);
    }
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
        if (!this.spec.server) this.#scheduleReconnect();
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
    if (this.#retry !== null) clearTimeout(this.#retry);
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

/** The C library's wording of a connect / bind failure. */
function why(e: unknown): string {
  if (e instanceof Deno.errors.ConnectionRefused) return "Connection refused";
  if (e instanceof Deno.errors.NotFound) return "No such file or directory";
  if (e instanceof Deno.errors.PermissionDenied) return "Permission denied";
  if (e instanceof Deno.errors.AddrInUse) return "Address already in use";
  const m = (e as Error).message;
  if (/failed to lookup address|Name or service not known/i.test(m)) {
    return "Name or service not known";
  }
  return m.replace(/ \(os error \d+\).*$/, "");
}
