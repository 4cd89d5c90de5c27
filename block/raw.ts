/** The `raw` format: the image's bytes are the virtual disk's bytes, passed straight to the protocol. */
import type { BlockDriver, BlockStatus, TruncateOptions, WriteZeroesOptions } from "./types.ts";

/** A raw image over any protocol driver (file, nbd). */
export class RawFormat implements BlockDriver {
  readonly format = "raw";
  readonly backing = null;

  constructor(readonly file: BlockDriver) {}

  get filename(): string {
    return this.file.filename;
  }
  get readOnly(): boolean {
    return this.file.readOnly;
  }
  length(): Promise<number> {
    return this.file.length();
  }
  read(offset: number, buf: Uint8Array): Promise<void> {
    return this.file.read(offset, buf);
  }
  write(offset: number, data: Uint8Array, fua?: boolean): Promise<void> {
    return this.file.write(offset, data, fua);
  }
  writeZeroes(offset: number, length: number, opts?: WriteZeroesOptions): Promise<void> {
    return this.file.writeZeroes(offset, length, opts);
  }
  discard(offset: number, length: number): Promise<void> {
    return this.file.discard(offset, length);
  }
  flush(): Promise<void> {
    return this.file.flush();
  }
  blockStatus(offset: number, length: number): Promise<BlockStatus> {
    return this.file.blockStatus(offset, length);
  }
  truncate(length: number, opts?: TruncateOptions): Promise<void> {
    return this.file.truncate(length, opts);
  }
  allocatedSize(): Promise<number | undefined> {
    // Unknown for protocols that cannot tell (nbd://): qemu-img info then says "unavailable".
    return this.file.allocatedSize?.() ?? Promise.resolve(undefined);
  }
  close(): Promise<void> {
    return this.file.close();
  }
}
