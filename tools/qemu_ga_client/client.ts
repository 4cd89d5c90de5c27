/**
 * A host-side qemu-ga client: connects to the agent's channel (a unix socket, a TCP port, or
 * a serial/virtio character device), resynchronises with 0xFF + guest-sync-delimited, and
 * runs commands. Replies are parsed with the agent's own QMP streamer, so 64-bit integers
 * (guest-get-time) arrive exactly.
 */
import { CharDevice, JsonStreamer, type JsonValue } from "@demu/agent";

/** Where the agent listens: "unix:PATH", "tcp:HOST:PORT", "HOST:PORT", "serial:PATH" or a path. */
export type QgaAddress =
  | { kind: "unix"; path: string }
  | { kind: "tcp"; host: string; port: number }
  | { kind: "serial"; path: string };

/** Parses an --address value. */
export function parseAddress(s: string): QgaAddress {
  if (s.startsWith("unix:")) return { kind: "unix", path: s.slice(5) };
  if (s.startsWith("serial:")) return { kind: "serial", path: s.slice(7) };
  const tcp = /^(?:tcp:)?(\[[^\]]+\]|[^/:]+):(\d+)$/.exec(s);
  if (tcp) return { kind: "tcp", host: tcp[1].replace(/^\[|\]$/g, ""), port: Number(tcp[2]) };
  if (s.startsWith("tcp:")) throw new QgaClientError(`invalid tcp address '${s}'`);
  try {
    const st = Deno.statSync(s);
    if (st.isCharDevice) return { kind: "serial", path: s };
  } catch {
    // a socket path that does not exist yet is still a unix address
  }
  return { kind: "unix", path: s };
}

function describe(a: QgaAddress): string {
  return a.kind === "tcp" ? `tcp:${a.host}:${a.port}` : `${a.kind}:${a.path}`;
}

/** A failure the CLI reports in one line. */
export class QgaClientError extends Error {}

/** An error reply from the agent. */
export class QgaCommandError extends QgaClientError {
  constructor(readonly errorClass: string, readonly desc: string) {
    super(desc);
  }
}

interface Stream {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

function osText(e: unknown): string {
  const m = /^(.*?) \(os error \d+\)/.exec((e as Error)?.message ?? "");
  return m ? m[1] : String((e as Error)?.message ?? e);
}

/** Whether path is a terminal (a serial line or pty), whose line discipline needs turning off. */
function isTty(path: string): boolean {
  try {
    const f = Deno.openSync(path, { read: true });
    try {
      return f.isTerminal();
    } finally {
      f.close();
    }
  } catch {
    return false;
  }
}

/** A serial line carries bytes unaltered: no echo, no line editing, no CR/LF mapping. */
async function rawMode(path: string): Promise<void> {
  const r = await new Deno.Command("stty", {
    args: ["-F", path, "raw", "-echo"],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!r.success) {
    throw new Error(`stty: ${new TextDecoder().decode(r.stderr).trim()}`);
  }
}

/** A connected client. */
export class QgaClient {
  #replies: { value?: JsonValue; error?: string }[] = [];
  #waiter: (() => void) | undefined;
  #closed = false;
  #synced = false;
  #streamer = new JsonStreamer((value, error) => {
    this.#replies.push({ value, error });
    this.#waiter?.();
  });
  #pump: Promise<void>;

  private constructor(private readonly stream: Stream, readonly timeoutMs: number) {
    this.#pump = this.#readLoop();
  }

  /** Connects; fails with a one-line error when nothing listens there. */
  static async connect(address: QgaAddress, timeoutMs = 3000): Promise<QgaClient> {
    let stream: Stream;
    try {
      if (address.kind === "unix") {
        stream = await Deno.connect({ transport: "unix", path: address.path });
      } else if (address.kind === "tcp") {
        stream = await Deno.connect({ hostname: address.host, port: address.port });
      } else {
        const file = CharDevice.open(address.path);
        stream = file;
        if (Deno.statSync(address.path).isCharDevice && isTty(address.path)) {
          await rawMode(address.path);
        }
      }
    } catch (e) {
      throw new QgaClientError(`failed to connect to ${describe(address)}: ${osText(e)}`);
    }
    return new QgaClient(stream, timeoutMs);
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await this.stream.read(buf);
        if (n === null) break;
        let chunk = buf.subarray(0, n);
        // 0xFF from guest-sync-delimited: whatever came before it is stale; start afresh.
        const ff = chunk.lastIndexOf(0xff);
        if (ff >= 0) {
          this.#streamer.reset();
          this.#replies = [];
          chunk = chunk.subarray(ff + 1);
        }
        this.#streamer.feed(chunk);
      }
    } catch {
      // the connection broke; pending waits time out or see the close
    }
    this.#closed = true;
    this.#waiter?.();
  }

  async #send(text: string | Uint8Array): Promise<void> {
    const data = typeof text === "string" ? new TextEncoder().encode(text) : text;
    let off = 0;
    try {
      while (off < data.length) off += await this.stream.write(data.subarray(off));
    } catch (e) {
      throw new QgaClientError(`failed to send to the agent: ${osText(e)}`);
    }
  }

  /** The next reply (skipping the parse errors a 0xFF provokes), or undefined on timeout. */
  async #next(timeoutMs: number): Promise<JsonValue | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.#replies.shift();
      if (r) {
        if (r.error !== undefined) continue;
        return r.value;
      }
      if (this.#closed) throw new QgaClientError("the agent closed the connection");
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#waiter = undefined;
    }
  }

  /** Flushes the agent's parser and drops stale replies: 0xFF, then guest-sync-delimited. */
  async sync(timeoutMs = this.timeoutMs): Promise<void> {
    const id = Math.floor(Math.random() * 0x7fffffff);
    await this.#send(new Uint8Array([0xff]));
    await this.#send(`{"execute": "guest-sync-delimited", "arguments": {"id": ${id}}}\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await this.#next(Math.max(0, deadline - Date.now()));
      if (v === undefined) {
        throw new QgaClientError(`the agent did not respond within ${timeoutMs / 1000} seconds`);
      }
      const ret = (v as { return?: JsonValue }).return;
      if (ret === id || ret === BigInt(id)) break;
    }
    this.#synced = true;
  }

  /**
   * Sends a request object and returns its reply. With expectReply false (guest-shutdown,
   * guest-suspend-*), waits a moment for an error and returns undefined when none comes.
   */
  async request(req: Record<string, unknown>, expectReply = true): Promise<JsonValue | undefined> {
    if (!this.#synced) await this.sync();
    await this.#send(JSON.stringify(req, (_k, v) => typeof v === "bigint" ? Number(v) : v) + "\n");
    const reply = await this.#next(expectReply ? this.timeoutMs : Math.min(this.timeoutMs, 1000));
    if (reply === undefined) {
      if (!expectReply) return undefined;
      throw new QgaClientError(`the agent did not respond within ${this.timeoutMs / 1000} seconds`);
    }
    return reply;
  }

  /** Runs a command; returns its "return" value, throws {@link QgaCommandError} on an error reply. */
  async execute(
    command: string,
    args?: Record<string, unknown>,
    expectReply = true,
  ): Promise<unknown> {
    const req: Record<string, unknown> = { execute: command };
    if (args) req.arguments = args;
    const reply = await this.request(req, expectReply);
    if (reply === undefined) return undefined;
    const r = reply as { return?: JsonValue; error?: { class?: string; desc?: string } };
    if (r.error) throw new QgaCommandError(r.error.class ?? "GenericError", r.error.desc ?? "");
    return r.return;
  }

  /**
   * Closes the connection. A read blocked on a tty is not woken by close, so the reader is
   * waited for only briefly; it ends with the process.
   */
  async close(): Promise<void> {
    try {
      this.stream.close();
    } catch {
      // closed
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#pump, new Promise((r) => timer = setTimeout(r, 100))]);
    clearTimeout(timer);
  }
}
