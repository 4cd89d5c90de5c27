/**
 * `-chardev pipe,path=P`: as QEMU opens it, P.in (host to guest) and P.out (guest to host) when
 * both exist, else P itself for both directions. Each is opened read-write, so opening a FIFO
 * never waits for the other end (and a FIFO without a reader takes output until it is full, as
 * in QEMU, rather than failing).
 */
import type { CharBackend } from "./mod.ts";

/** An open failure naming the path QEMU names (P, not P.in, when the fallback fails too). */
export class PipeOpenError extends Error {
  constructor(readonly path: string, cause: unknown) {
    super((cause as Error).message, { cause });
  }
}

export class PipeBackend implements CharBackend {
  #receive: ((b: Uint8Array) => void) | null = null;
  #closed = false;

  private constructor(readonly input: Deno.FsFile, readonly output: Deno.FsFile) {}

  /** Opens P.in + P.out, or P; throws PipeOpenError (with its `path`) when neither opens. */
  static open(path: string): PipeBackend {
    const rw = { read: true, write: true } as const;
    let input: Deno.FsFile | null = null;
    try {
      input = Deno.openSync(`${path}.in`, rw);
      const output = Deno.openSync(`${path}.out`, rw);
      return new PipeBackend(input, output).#start();
    } catch {
      input?.close();
    }
    try {
      const both = Deno.openSync(path, rw);
      return new PipeBackend(both, both).#start();
    } catch (e) {
      throw new PipeOpenError(path, e);
    }
  }

  #start(): this {
    this.#pump();
    return this;
  }

  async #pump(): Promise<void> {
    const buf = new Uint8Array(4096);
    for (;;) {
      let n: number | null;
      try {
        n = await this.input.read(buf);
      } catch {
        return;
      }
      if (n === null || this.#closed) return;
      this.#receive?.(buf.slice(0, n));
    }
  }

  write(bytes: Uint8Array): void {
    let done = 0;
    try {
      while (done < bytes.length) done += this.output.writeSync(bytes.subarray(done));
    } catch { /* the file went away */ }
  }

  setReceiver(receive: (b: Uint8Array) => void): void {
    this.#receive = receive;
  }

  close(): void {
    this.#closed = true;
    for (const f of new Set([this.input, this.output])) {
      try {
        f.close();
      } catch { /* closed */ }
    }
  }
}
