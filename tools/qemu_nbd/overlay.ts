/**
 * qemu-nbd -s: writes go to a temporary layer above the image and vanish on exit. QEMU puts a
 * temporary qcow2 file there; demu keeps the written clusters in memory, which serves the same
 * purpose (the image itself is never modified) without a scratch file to clean up.
 */
import {
  type BlockDriver,
  BlockError,
  type BlockStatus,
  type TruncateOptions,
  type WriteZeroesOptions,
} from "@demu/block";

const CLUSTER = 65536;

/** A copy-on-write layer in memory over a (read-only) image, which becomes its backing. */
export class MemoryOverlay implements BlockDriver {
  readonly format = "qcow2";
  readonly readOnly = false;
  #clusters = new Map<number, Uint8Array>();
  #size = -1;

  constructor(readonly backing: BlockDriver) {}

  get filename(): string {
    return this.backing.filename;
  }

  async length(): Promise<number> {
    if (this.#size < 0) this.#size = await this.backing.length();
    return this.#size;
  }

  async read(offset: number, buf: Uint8Array): Promise<void> {
    await this.#check(offset, buf.length);
    for (let pos = 0; pos < buf.length;) {
      const abs = offset + pos;
      const idx = Math.floor(abs / CLUSTER);
      const within = abs - idx * CLUSTER;
      const n = Math.min(CLUSTER - within, buf.length - pos);
      const c = this.#clusters.get(idx);
      if (c) buf.set(c.subarray(within, within + n), pos);
      else await this.backing.read(abs, buf.subarray(pos, pos + n));
      pos += n;
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.#check(offset, data.length);
    for (let pos = 0; pos < data.length;) {
      const abs = offset + pos;
      const idx = Math.floor(abs / CLUSTER);
      const within = abs - idx * CLUSTER;
      const n = Math.min(CLUSTER - within, data.length - pos);
      const c = await this.#cluster(idx);
      c.set(data.subarray(pos, pos + n), within);
      pos += n;
    }
  }

  async writeZeroes(offset: number, length: number, _opts?: WriteZeroesOptions): Promise<void> {
    await this.write(offset, new Uint8Array(length));
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.writeZeroes(offset, length);
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const idx = Math.floor(offset / CLUSTER);
    const allocated = this.#clusters.has(idx);
    let n = Math.min((idx + 1) * CLUSTER - offset, length);
    for (let i = idx + 1; n < length && this.#clusters.has(i) === allocated; i++) {
      n = Math.min(n + CLUSTER, length);
    }
    return Promise.resolve({ length: n, allocated, zero: false, data: allocated });
  }

  truncate(_length: number, _opts?: TruncateOptions): Promise<void> {
    return Promise.reject(new BlockError("ENOTSUP", "Cannot resize a snapshot overlay"));
  }

  async close(): Promise<void> {
    this.#clusters.clear();
    await this.backing.close();
  }

  async #cluster(idx: number): Promise<Uint8Array> {
    let c = this.#clusters.get(idx);
    if (c) return c;
    c = new Uint8Array(CLUSTER);
    const size = await this.length();
    const start = idx * CLUSTER;
    const n = Math.min(CLUSTER, size - start);
    if (n > 0) await this.backing.read(start, c.subarray(0, n));
    this.#clusters.set(idx, c);
    return c;
  }

  async #check(offset: number, length: number): Promise<void> {
    if (offset < 0 || offset + length > await this.length()) {
      throw new BlockError("EINVAL", "Invalid argument");
    }
  }
}
