/**
 * The agent's channels: a unix socket it listens on (one client at a time, as qemu-ga), or a
 * character device (a virtio-serial port or a serial line) it reads and writes directly.
 * Each connection gets a fresh JSON streamer, so a client that vanishes mid-message leaves
 * nothing behind for the next one.
 */
import type { GuestAgent } from "./agent.ts";
import { JsonStreamer, type JsonValue } from "./json.ts";
import { CharDevice } from "./chardev_io.ts";

/** The default path of each method, as qemu-ga documents them. */
export const DEFAULT_PATHS: Record<string, string> = {
  "virtio-serial": "/dev/virtio-ports/org.qemu.guest_agent.0",
  "isa-serial": "/dev/ttyS0",
};

/** A byte stream both ways (a socket connection or an opened device). */
export interface Duplex {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
}

async function writeAll(w: Duplex, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await w.write(data.subarray(off));
}

/**
 * Serves one byte stream until it ends: messages are handled strictly in order and each
 * reply is written before the next message is looked at.
 */
export async function serveStream(agent: GuestAgent, conn: Duplex): Promise<void> {
  const pending: [JsonValue | undefined, string | undefined][] = [];
  const streamer = new JsonStreamer((v, e) => pending.push([v, e]));
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buf);
    } catch (e) {
      agent.log("debug", `channel read failed: ${(e as Error).message}`);
      return;
    }
    if (n === null) return;
    streamer.feed(buf.subarray(0, n));
    while (pending.length) {
      const [value, error] = pending.shift()!;
      if (error) agent.log("warning", `failed to parse request: ${error}`);
      const reply = await agent.handle(value, error);
      if (!reply) continue;
      try {
        await writeAll(conn, reply);
      } catch (e) {
        agent.log("warning", `error sending response: ${(e as Error).message}`);
        return;
      }
    }
  }
}

function isSocket(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket === true;
  } catch {
    return false;
  }
}

/** A running channel: stop() closes it and waits for the serving loop to end. */
export interface Channel {
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

/** Listens on a unix socket (a stale socket file is replaced) and serves clients one by one. */
export function listenUnix(agent: GuestAgent, path: string): Channel {
  if (isSocket(path)) Deno.removeSync(path);
  let listener: Deno.UnixListener;
  try {
    listener = Deno.listen({ transport: "unix", path });
  } catch (e) {
    throw new Error(`Failed to bind socket to ${path}: ${errText(e)}`);
  }
  let current: Deno.UnixConn | undefined;
  let stopping = false;
  const done = (async () => {
    for (;;) {
      let conn: Deno.UnixConn;
      try {
        conn = await listener.accept();
      } catch {
        break;
      }
      if (stopping) {
        conn.close();
        break;
      }
      current = conn;
      agent.log("debug", "new client connected");
      await serveStream(agent, conn);
      current = undefined;
      try {
        conn.close();
      } catch {
        // already closed
      }
      agent.log("debug", "client disconnected");
    }
  })();
  return {
    done,
    async stop() {
      stopping = true;
      try {
        listener.close();
      } catch {
        // closed
      }
      try {
        current?.close();
      } catch {
        // closed
      }
      await done;
      try {
        Deno.removeSync(path);
      } catch {
        // gone
      }
    },
  };
}

function errText(e: unknown): string {
  const m = /^(.*?) \(os error \d+\)/.exec((e as Error)?.message ?? "");
  return m ? m[1] : String((e as Error)?.message ?? e);
}

/**
 * Serves a character device: a virtio-serial port or a serial line (put into raw mode first).
 * A port whose host side is not connected reads as end-of-file; the agent then waits and
 * reads again, starting a fresh stream, as qemu-ga does after a hang-up.
 */
export async function openCharDevice(
  agent: GuestAgent,
  path: string,
  method: "virtio-serial" | "isa-serial",
): Promise<Channel> {
  let file: CharDevice;
  try {
    file = CharDevice.open(path);
  } catch (e) {
    throw new Error(`error opening channel '${path}': ${errText(e)}`);
  }
  if (method === "isa-serial") {
    try {
      await makeRaw(path);
    } catch (e) {
      file.close();
      throw e;
    }
  }
  let stopping = false;
  const done = (async () => {
    while (!stopping) {
      await serveStream(agent, file);
      if (stopping) break;
      // End of file: the host side is gone for now; poll gently until it returns.
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    done,
    async stop() {
      stopping = true;
      file.close();
      // A read waiting on its thread is not woken by close; do not wait for it forever.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([done, new Promise((r) => timer = setTimeout(r, 200))]);
      clearTimeout(timer);
    },
  };
}

/** Raw 8-bit serial line at 115200 baud, no echo, as qemu-ga configures ttyS ports. */
async function makeRaw(path: string): Promise<void> {
  try {
    const out = await new Deno.Command("stty", {
      args: ["-F", path, "raw", "-echo", "115200", "cs8", "-cstopb", "-parenb", "clocal"],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(new TextDecoder().decode(out.stderr).trim());
    }
  } catch (e) {
    throw new Error(`error setting termios flags on '${path}': ${errText(e)}`);
  }
}
