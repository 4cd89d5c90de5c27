/**
 * Stream-socket plumbing shared by the NBD client and server: exact reads through one buffer,
 * and one ordered write queue per socket.
 */

/** The closed connection error both ends raise when the peer goes away mid-message. */
export class NbdDisconnected extends Error {
  constructor(message = "Connection closed") {
    super(message);
    this.name = "NbdDisconnected";
  }
}

/**
 * Buffered exact reads from a stream socket: NBD is a stream of fixed headers and payloads, and
 * reading them through one buffer keeps small headers from costing a syscall each.
 */
export class SocketReader {
  #buf: Uint8Array;
  #start = 0;
  #end = 0;

  constructor(readonly conn: Deno.Conn, size = 256 * 1024) {
    this.#buf = new Uint8Array(size);
  }

  /** Replaces the buffer with one of the given size, keeping what is buffered. */
  resize(size: number): void {
    const pending = this.#buf.subarray(this.#start, this.#end);
    const next = new Uint8Array(Math.max(size, pending.length));
    next.set(pending);
    this.#buf = next;
    this.#end = pending.length;
    this.#start = 0;
  }

  /** Bytes already buffered. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Fills `into` completely; throws NbdDisconnected on EOF. */
  async readInto(into: Uint8Array): Promise<void> {
    let pos = 0;
    while (pos < into.length) {
      if (this.#start < this.#end) {
        const n = Math.min(this.#end - this.#start, into.length - pos);
        into.set(this.#buf.subarray(this.#start, this.#start + n), pos);
        this.#start += n;
        pos += n;
        continue;
      }
      const want = into.length - pos;
      if (want >= this.#buf.length) {
        // Large payloads go straight into their destination.
        const n = await this.#read(into.subarray(pos));
        pos += n;
        continue;
      }
      this.#start = 0;
      this.#end = await this.#read(this.#buf);
    }
  }

  /** Reads exactly n bytes into a new array. */
  async readExact(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    await this.readInto(out);
    return out;
  }

  /** Reads and drops n bytes. */
  async skip(n: number): Promise<void> {
    const scratch = new Uint8Array(Math.min(n, 65536));
    while (n > 0) {
      const part = scratch.subarray(0, Math.min(n, scratch.length));
      await this.readInto(part);
      n -= part.length;
    }
  }

  async #read(into: Uint8Array): Promise<number> {
    let n: number | null;
    try {
      n = await this.conn.read(into);
    } catch (e) {
      throw new NbdDisconnected(e instanceof Error ? e.message : String(e));
    }
    if (n === null || n === 0) throw new NbdDisconnected();
    return n;
  }
}

/**
 * Serialised whole writes to a socket: replies and requests from concurrent tasks must not
 * interleave, so every message goes through one queue. Messages that queue up while a write is
 * in progress go out together (small ones copied into one buffer), which saves a syscall and an
 * event-loop turn per message when many small replies or requests are pipelined.
 */
export class SocketWriter {
  #queue: { parts: Uint8Array[]; done: () => void; fail: (e: Error) => void }[] = [];
  #busy = false;
  #failed: Error | null = null;

  constructor(readonly conn: Deno.Conn) {}

  /** Queues the parts to be written back to back; resolves when they are all written. */
  write(...parts: Uint8Array[]): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise<void>((done, fail) => {
      this.#queue.push({ parts, done, fail });
      if (!this.#busy) this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#busy = true;
    while (this.#queue.length) {
      const batch = this.#queue;
      this.#queue = [];
      try {
        await this.#writeBatch(batch.flatMap((m) => m.parts));
        for (const m of batch) m.done();
      } catch (e) {
        this.#failed = new NbdDisconnected(e instanceof Error ? e.message : String(e));
        for (const m of [...batch, ...this.#queue]) m.fail(this.#failed);
        this.#queue = [];
        break;
      }
    }
    this.#busy = false;
  }

  async #writeBatch(parts: Uint8Array[]): Promise<void> {
    let small: Uint8Array[] = [];
    let smallBytes = 0;
    const flushSmall = async () => {
      if (!small.length) return;
      if (small.length === 1) await writeAll(this.conn, small[0]);
      else {
        const joined = new Uint8Array(smallBytes);
        let o = 0;
        for (const p of small) {
          joined.set(p, o);
          o += p.length;
        }
        await writeAll(this.conn, joined);
      }
      small = [];
      smallBytes = 0;
    };
    for (const p of parts) {
      if (p.length <= COALESCE_LIMIT && smallBytes + p.length <= 4 * COALESCE_LIMIT) {
        small.push(p);
        smallBytes += p.length;
        continue;
      }
      await flushSmall();
      if (p.length <= COALESCE_LIMIT) {
        small.push(p);
        smallBytes = p.length;
      } else {
        await writeAll(this.conn, p);
      }
    }
    await flushSmall();
  }
}

/** Messages up to this size are copied together rather than written one by one. */
const COALESCE_LIMIT = 16 * 1024;

/** Writes all of data (Deno's write may be partial). */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let pos = 0;
  while (pos < data.length) pos += await conn.write(data.subarray(pos));
}
