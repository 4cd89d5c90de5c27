/** qemu-nbd -o: export an image from a byte offset on (QEMU's raw driver with offset=). */
import type { BlockDriver, BlockStatus, TruncateOptions, WriteZeroesOptions } from "@demu/block";
import { BlockError } from "@demu/block";

/** The bytes of `inner` from `start` to its end, as a disk of their own. */
export class OffsetView implements BlockDriver {
  readonly format = "raw";
  readonly backing = null;

  constructor(readonly inner: BlockDriver, readonly start: number, readonly size: number) {}

  get filename(): string {
    return this.inner.filename;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  length(): Promise<number> {
    return Promise.resolve(this.size);
  }
  read(offset: number, buf: Uint8Array): Promise<void> {
    this.#check(offset, buf.length);
    return this.inner.read(this.start + offset, buf);
  }
  write(offset: number, data: Uint8Array, fua?: boolean): Promise<void> {
    this.#check(offset, data.length);
    return this.inner.write(this.start + offset, data, fua);
  }
  writeZeroes(offset: number, length: number, opts?: WriteZeroesOptions): Promise<void> {
    this.#check(offset, length);
    return this.inner.writeZeroes(this.start + offset, length, opts);
  }
  discard(offset: number, length: number): Promise<void> {
    this.#check(offset, length);
    return this.inner.discard(this.start + offset, length);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    // The whole chain below answers, as QEMU's raw driver passes status through.
    const { chainStatus } = await import("./status.ts");
    const s = await chainStatus(this.inner, this.start + offset, length);
    return { length: s.length, allocated: true, zero: s.zero, data: s.data };
  }
  truncate(_length: number, _opts?: TruncateOptions): Promise<void> {
    return Promise.reject(new BlockError("ENOTSUP", "Cannot resize an offset export"));
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  #check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new BlockError("EINVAL", "Invalid argument");
    }
  }
}
