/**
 * The image file as qcow2 sees it: positioned reads and writes that go straight to pread/pwrite
 * when the file is a host file (no promise per metadata access), else through the async driver
 * (nbd://). Reads past the end of the file return zeros, as pread does.
 */
import * as sys from "@demu/sys";
import { FileProtocol } from "../file.ts";
import type { BlockDriver } from "../types.ts";

/**
 * Requests at least this long (guest data runs, not tables of the usual cluster sizes) take
 * the file's asynchronous path, which runs them on a pool thread when the file is set so
 * ({@link FileProtocol.threaded}): the caller's next work overlaps the copy.
 */
const LARGE = 256 << 10;

/** Positioned I/O on the file under a qcow2 image. */
export class Qcow2Io {
  readonly #sync: FileProtocol | undefined;
  #length: number;

  private constructor(readonly file: BlockDriver, length: number) {
    this.#sync = file instanceof FileProtocol ? file : undefined;
    this.#length = length;
  }

  static async open(file: BlockDriver): Promise<Qcow2Io> {
    return new Qcow2Io(file, await file.length());
  }

  /** Whether the file is a host file (grows on writes past its end, reads zeros past it). */
  get growable(): boolean {
    return this.#sync !== undefined;
  }

  /** The file's length as last seen (grows with writes past the end). */
  get length(): number {
    return this.#length;
  }

  async read(offset: number, buf: Uint8Array): Promise<void> {
    if (this.#sync) {
      // Metadata is read in place; large data reads may go to a pool thread (FileProtocol.read).
      if (buf.length >= LARGE) await this.#sync.read(offset, buf);
      else this.#sync.readSync(offset, buf);
      return;
    }
    const inFile = Math.max(0, Math.min(buf.length, this.#length - offset));
    if (inFile > 0) await this.file.read(offset, buf.subarray(0, inFile));
    if (inFile < buf.length) buf.fill(0, inFile);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.#sync && data.length < LARGE) this.#sync.writeSync(offset, data);
    else await this.file.write(offset, data);
    if (offset + data.length > this.#length) this.#length = offset + data.length;
  }

  async sync(): Promise<void> {
    await this.file.flush();
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.file.discard(offset, length);
  }

  async truncate(
    length: number,
    preallocation?: "off" | "metadata" | "falloc" | "full",
  ): Promise<void> {
    await this.file.truncate(length, { preallocation, shrink: true });
    this.#length = length;
  }

  /** Reserves (falloc) or writes zeros over (full) a range of the file. */
  async preallocate(offset: number, length: number, mode: "falloc" | "full"): Promise<void> {
    if (mode === "falloc" && this.#sync && sys.fallocate(this.#sync.fd, 0, offset, length)) {
      if (offset + length > this.#length) this.#length = offset + length;
      return;
    }
    const zero = new Uint8Array(Math.min(length, 1 << 20));
    for (let p = offset; p < offset + length; p += zero.length) {
      await this.write(p, zero.subarray(0, Math.min(zero.length, offset + length - p)));
    }
  }

  /** Re-reads the length from the driver. */
  async refreshLength(): Promise<number> {
    this.#length = await this.file.length();
    return this.#length;
  }
}
