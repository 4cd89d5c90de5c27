/** {@link Qcow2Format}: a qcow2 image as a BlockDriver. */
import type { BlockDriver, BlockStatus, TruncateOptions, WriteZeroesOptions } from "../types.ts";
import type { OpenOptions } from "../open.ts";
import type { Qcow2AmendOptions, Qcow2Info, Qcow2SnapshotInfo } from "./types.ts";

const notYet = (what: string) => Promise.reject(new Error(`qcow2: ${what} not yet implemented`));

/** An open qcow2 image. */
export class Qcow2Format implements BlockDriver {
  readonly format = "qcow2";
  backing: BlockDriver | null = null;
  private constructor(readonly file: BlockDriver, readonly readOnly: boolean) {}
  get filename(): string {
    return this.file.filename;
  }
  static open(_file: BlockDriver, _opts: OpenOptions): Promise<Qcow2Format> {
    return notYet("open");
  }
  info(): Qcow2Info {
    throw new Error("not yet");
  }
  listSnapshots(): Qcow2SnapshotInfo[] {
    throw new Error("not yet");
  }
  createSnapshot(_name: string): Promise<void> {
    return notYet("createSnapshot");
  }
  applySnapshot(_idOrName: string): Promise<void> {
    return notYet("applySnapshot");
  }
  deleteSnapshot(_idOrName: string): Promise<void> {
    return notYet("deleteSnapshot");
  }
  writeCompressed(_offset: number, _data: Uint8Array): Promise<void> {
    return notYet("writeCompressed");
  }
  writeCompressedPrepared(
    _offset: number,
    _compressed: Uint8Array | undefined,
    _raw: Uint8Array,
  ): Promise<void> {
    return notYet("writeCompressedPrepared");
  }
  changeBackingFile(_name?: string, _fmt?: string): Promise<void> {
    return notYet("changeBackingFile");
  }
  amend(_opts: Qcow2AmendOptions): Promise<void> {
    return notYet("amend");
  }
  length(): Promise<number> {
    return notYet("length");
  }
  read(_offset: number, _buf: Uint8Array): Promise<void> {
    return notYet("read");
  }
  write(_offset: number, _data: Uint8Array, _fua?: boolean): Promise<void> {
    return notYet("write");
  }
  writeZeroes(_offset: number, _length: number, _opts?: WriteZeroesOptions): Promise<void> {
    return notYet("writeZeroes");
  }
  discard(_offset: number, _length: number): Promise<void> {
    return notYet("discard");
  }
  flush(): Promise<void> {
    return notYet("flush");
  }
  blockStatus(_offset: number, _length: number): Promise<BlockStatus> {
    return notYet("blockStatus");
  }
  truncate(_length: number, _opts?: TruncateOptions): Promise<void> {
    return notYet("truncate");
  }
  close(): Promise<void> {
    return notYet("close");
  }
}
