/**
 * The block layer's one interface. Formats (raw, qcow2) and protocols (file, nbd) are all
 * BlockDrivers; a format reads and writes its image through another BlockDriver (its "file"),
 * and a qcow2 image reaches its backing file through one too, so formats stack.
 *
 * Offsets and lengths are byte counts held in plain numbers (exact up to 2^53).
 */

/** What {@link BlockDriver.blockStatus} says about the extent starting at the asked offset. */
export interface BlockStatus {
  /** Bytes from the asked offset that share this status (> 0, at most the asked length). */
  length: number;
  /** This layer answers reads itself (false: reads fall through to the backing file). */
  allocated: boolean;
  /** Reads of the extent return zeros. */
  zero: boolean;
  /** The extent is backed by stored data (false: a hole or a zero cluster). */
  data: boolean;
  /** Where the bytes live in {@link BlockStatus.file}, when the mapping is direct (not compressed). */
  offset?: number;
  /** The file name holding `offset`. */
  file?: string;
  /** The data is stored compressed. */
  compressed?: boolean;
}

/** Options of a write-zeroes request. */
export interface WriteZeroesOptions {
  /** The range may be deallocated instead of written (NBD_CMD_FLAG_NO_HOLE clear, -u in qemu-io). */
  mayUnmap?: boolean;
  /** Fail with {@link BlockError} code "ENOTSUP" rather than fall back to writing zero buffers. */
  noFallback?: boolean;
}

/** Options of a truncate (resize) request. */
export interface TruncateOptions {
  /** off, metadata, falloc, full — as QEMU's preallocation option. */
  preallocation?: "off" | "metadata" | "falloc" | "full";
  /** Allow making the image smaller. */
  shrink?: boolean;
}

/** A disk image or a storage protocol: everything the tools and the emulator read and write. */
export interface BlockDriver {
  /** The driver's name as QEMU spells it: "raw", "qcow2", "file", "nbd". */
  readonly format: string;
  /** The name it was opened with (a path or an nbd:// URI). */
  readonly filename: string;
  /** Opened read-only: writes throw. */
  readonly readOnly: boolean;
  /** The image this one reads through to, when it has one (qcow2 backing files). */
  readonly backing?: BlockDriver | null;

  /** Virtual size in bytes. */
  length(): Promise<number>;
  /** Fills buf with the bytes at offset. Reads beyond the end are an error. */
  read(offset: number, buf: Uint8Array): Promise<void>;
  /** Writes data at offset; with fua, the data is stable before the promise resolves. */
  write(offset: number, data: Uint8Array, fua?: boolean): Promise<void>;
  /** Makes a range read as zeros. */
  writeZeroes(offset: number, length: number, opts?: WriteZeroesOptions): Promise<void>;
  /** Tells the driver a range is no longer needed; it may read back as anything (zeros here). */
  discard(offset: number, length: number): Promise<void>;
  /** Makes everything written so far stable. */
  flush(): Promise<void>;
  /** The allocation status of the extent starting at offset, at most length bytes long. */
  blockStatus(offset: number, length: number): Promise<BlockStatus>;
  /** Changes the virtual size. */
  truncate(length: number, opts?: TruncateOptions): Promise<void>;
  /** Flushes and releases everything. The driver is unusable afterwards. */
  close(): Promise<void>;
  /** Bytes the image occupies on the host (qemu-img info's "disk size"); undefined when unknown. */
  allocatedSize?(): Promise<number | undefined>;
}

/** Error codes the block layer uses, named as errno so that NBD and qemu-io can map them. */
export type BlockErrorCode = "EIO" | "EINVAL" | "ENOSPC" | "EPERM" | "ENOTSUP" | "EROFS" | "EFBIG";

/** An I/O error with an errno-like code, so that callers (qemu-io, qemu-nbd) report it as QEMU does. */
export class BlockError extends Error {
  constructor(readonly code: BlockErrorCode, message: string) {
    super(message);
    this.name = "BlockError";
  }
}
