/** The `nbd` protocol driver: an NBD export as a BlockDriver, so any demu program opens nbd:// names. */
import {
  type BlockDriver,
  BlockError,
  type BlockStatus,
  type TruncateOptions,
  type WriteZeroesOptions,
} from "../types.ts";
import { type NbdAddress, NbdClient, parseNbdFilename } from "./client.ts";
import {
  META_BASE_ALLOCATION,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
} from "./proto.ts";

/**
 * The name QEMU gives an NBD node whatever it was opened as (nbd_refresh_filename), which
 * qemu-img info and map print: the port always, no path for the default export.
 */
export function canonicalNbdFilename(a: NbdAddress): string {
  if (a.socket) {
    return a.exportName
      ? `nbd+unix:///${a.exportName}?socket=${a.socket}`
      : `nbd+unix://?socket=${a.socket}`;
  }
  return a.exportName ? `nbd://${a.host}:${a.port}/${a.exportName}` : `nbd://${a.host}:${a.port}`;
}

/** Options for {@link NbdDriver.open}. */
export interface NbdOpenOptions {
  readOnly?: boolean;
}

/** A remote export reached over NBD; requests from concurrent callers are pipelined. */
export class NbdDriver implements BlockDriver {
  readonly format = "nbd";
  readonly backing = null;
  readonly readOnly: boolean;
  #size: number;

  private constructor(readonly filename: string, readonly client: NbdClient, readOnly: boolean) {
    this.readOnly = readOnly || !!(client.info.flags & NBD_FLAG_READ_ONLY);
    this.#size = client.info.size;
  }

  /** Connects to the export a filename names (see parseNbdFilename). */
  static async open(filename: string, opts: NbdOpenOptions = {}): Promise<NbdDriver> {
    const address = parseNbdFilename(filename);
    if (!address) throw new BlockError("EINVAL", `'${filename}' is not an NBD name`);
    return await NbdDriver.connect(canonicalNbdFilename(address), address, opts);
  }

  /** Connects to an address. */
  static async connect(
    filename: string,
    address: NbdAddress,
    opts: NbdOpenOptions = {},
  ): Promise<NbdDriver> {
    const client = await NbdClient.connect(address);
    return new NbdDriver(filename, client, !!opts.readOnly);
  }

  length(): Promise<number> {
    return Promise.resolve(this.#size);
  }

  async read(offset: number, buf: Uint8Array): Promise<void> {
    this.#range(offset, buf.length);
    const max = this.client.maxPayload;
    if (buf.length <= max) {
      if (buf.length) await this.client.read(offset, buf);
      return;
    }
    const parts: Promise<unknown>[] = [];
    for (let p = 0; p < buf.length; p += max) {
      parts.push(this.client.read(offset + p, buf.subarray(p, Math.min(p + max, buf.length))));
    }
    await Promise.all(parts);
  }

  async write(offset: number, data: Uint8Array, fua?: boolean): Promise<void> {
    this.#writable();
    this.#range(offset, data.length);
    const flags = fua && (this.client.info.flags & NBD_FLAG_SEND_FUA) ? NBD_CMD_FLAG_FUA : 0;
    const max = this.client.maxPayload;
    const parts: Promise<unknown>[] = [];
    for (let p = 0; p < data.length; p += max) {
      parts.push(
        this.client.write(offset + p, data.subarray(p, Math.min(p + max, data.length)), flags),
      );
    }
    await Promise.all(parts);
  }

  async writeZeroes(offset: number, length: number, opts: WriteZeroesOptions = {}): Promise<void> {
    this.#writable();
    this.#range(offset, length);
    if (!(this.client.info.flags & NBD_FLAG_SEND_WRITE_ZEROES)) {
      if (opts.noFallback) throw new BlockError("ENOTSUP", "write zeroes not supported");
      const chunk = new Uint8Array(Math.min(length, 1 << 20));
      for (let p = 0; p < length; p += chunk.length) {
        await this.write(offset + p, chunk.subarray(0, Math.min(chunk.length, length - p)));
      }
      return;
    }
    const flags = opts.mayUnmap ? 0 : NBD_CMD_FLAG_NO_HOLE;
    await this.#split(offset, length, (o, n) => this.client.writeZeroes(o, n, flags));
  }

  async discard(offset: number, length: number): Promise<void> {
    this.#writable();
    this.#range(offset, length);
    if (!(this.client.info.flags & NBD_FLAG_SEND_TRIM)) return;
    await this.#split(offset, length, (o, n) => this.client.trim(o, n));
  }

  async flush(): Promise<void> {
    if (this.client.info.flags & NBD_FLAG_SEND_FLUSH) await this.client.flush();
  }

  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const end = Math.min(offset + length, this.#size);
    const id = this.client.contextId(META_BASE_ALLOCATION);
    if (offset >= this.#size || id === undefined) {
      return { length, allocated: true, zero: offset >= this.#size, data: offset < this.#size };
    }
    const ext = (await this.client.blockStatus(offset, Math.min(end - offset, 0xffffffff)))
      .get(id);
    if (!ext || ext.length < 2 || ext[0] === 0) {
      return { length: end - offset, allocated: true, zero: false, data: true, offset };
    }
    const flags = ext[1];
    // As QEMU's nbd client: a hole that need not read as zeros is not allocated anywhere.
    return {
      length: Math.min(ext[0], end - offset),
      allocated: !(flags & NBD_STATE_HOLE) || !!(flags & NBD_STATE_ZERO),
      zero: !!(flags & NBD_STATE_ZERO),
      data: !(flags & NBD_STATE_HOLE),
      offset,
      file: this.filename,
    };
  }

  truncate(length: number, _opts?: TruncateOptions): Promise<void> {
    if (length === this.#size) return Promise.resolve();
    return Promise.reject(new BlockError("ENOTSUP", "Cannot resize NBD nodes"));
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  async #split(
    offset: number,
    length: number,
    f: (o: number, n: number) => Promise<unknown>,
  ): Promise<void> {
    // Requests carry 32-bit lengths.
    const max = 0x80000000;
    const parts: Promise<unknown>[] = [];
    for (let p = 0; p < length; p += max) parts.push(f(offset + p, Math.min(max, length - p)));
    await Promise.all(parts);
  }

  #range(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.#size) {
      throw new BlockError("EINVAL", "Invalid argument");
    }
  }

  #writable(): void {
    if (this.readOnly) throw new BlockError("EPERM", "Operation not permitted");
  }
}
