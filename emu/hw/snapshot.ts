/**
 * -snapshot: a copy-on-write overlay in memory over a disk image. Guest writes land in the
 * overlay and vanish when the emulator exits; the image itself is opened read-only and never
 * written.
 */
import { type BlockDriver, BlockError, type BlockStatus } from "@demu/block";

const CHUNK = 64 * 1024;

export class SnapshotOverlay implements BlockDriver {
  readonly format: string;
  readonly filename: string;
  readonly readOnly = false;
  readonly #chunks = new Map<number, Uint8Array>();

  constructor(readonly base: BlockDriver, readonly size: number) {
    this.format = base.format;
    this.filename = base.filename;
  }

  static async over(base: BlockDriver): Promise<SnapshotOverlay> {
    return new SnapshotOverlay(base, await base.length());
  }

  length(): Promise<number> {
    return Promise.resolve(this.size);
  }

  async #chunk(i: number): Promise<Uint8Array> {
    let c = this.#chunks.get(i);
    if (!c) {
      c = new Uint8Array(CHUNK);
      const start = i * CHUNK;
      const n = Math.min(CHUNK, this.size - start);
      await this.base.read(start, c.subarray(0, n));
      this.#chunks.set(i, c);
    }
    return c;
  }

  async read(offset: number, buf: Uint8Array): Promise<void> {
    if (offset + buf.length > this.size) throw new BlockError("EIO", "read beyond end of image");
    let done = 0;
    while (done < buf.length) {
      const pos = offset + done;
      const i = Math.floor(pos / CHUNK);
      const o = pos - i * CHUNK;
      const n = Math.min(CHUNK - o, buf.length - done);
      const c = this.#chunks.get(i);
      if (c) buf.set(c.subarray(o, o + n), done);
      else await this.base.read(pos, buf.subarray(done, done + n));
      done += n;
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (offset + data.length > this.size) {
      throw new BlockError("ENOSPC", "write beyond end of image");
    }
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const i = Math.floor(pos / CHUNK);
      const o = pos - i * CHUNK;
      const n = Math.min(CHUNK - o, data.length - done);
      (await this.#chunk(i)).set(data.subarray(done, done + n), o);
      done += n;
    }
  }

  writeZeroes(offset: number, length: number): Promise<void> {
    return this.write(offset, new Uint8Array(length));
  }

  discard(offset: number, length: number): Promise<void> {
    return this.writeZeroes(offset, length);
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  blockStatus(_offset: number, length: number): Promise<BlockStatus> {
    return Promise.resolve({ length, allocated: true, zero: false, data: true });
  }

  truncate(): Promise<void> {
    return Promise.reject(new BlockError("ENOTSUP", "cannot resize a snapshot overlay"));
  }

  async close(): Promise<void> {
    this.#chunks.clear();
    await this.base.close();
  }
}
