/** The `file` protocol: a host file read and written with positioned I/O (pread/pwrite). */
import * as sys from "@demu/sys";
import {
  type BlockDriver,
  BlockError,
  type BlockStatus,
  type TruncateOptions,
  type WriteZeroesOptions,
} from "./types.ts";

/** With {@link FileProtocol.threaded}, reads and writes at least this long go to a pool thread. */
const THREADED_BYTES = 256 << 10;

const threadedSymbols = {
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
} as const;
let threadedLib: Deno.DynamicLibrary<typeof threadedSymbols>["symbols"] | undefined;

/** pread(2) on a thread of Deno's blocking pool; resolves to its return value (-1: failed). */
function threadedPread(fd: number, buf: Uint8Array, offset: number): Promise<number | bigint> {
  threadedLib ??= Deno.dlopen("libc.so.6", threadedSymbols).symbols;
  return threadedLib.pread(fd, buf as Uint8Array<ArrayBuffer>, BigInt(buf.length), BigInt(offset));
}

/** pwrite(2) on a thread of Deno's blocking pool. */
function threadedPwrite(fd: number, data: Uint8Array, offset: number): Promise<number | bigint> {
  threadedLib ??= Deno.dlopen("libc.so.6", threadedSymbols).symbols;
  return threadedLib.pwrite(
    fd,
    data as Uint8Array<ArrayBuffer>,
    BigInt(data.length),
    BigInt(offset),
  );
}

/** Options for {@link FileProtocol.open}. */
export interface FileOpenOptions {
  readOnly?: boolean;
  /** Create the file (fails if it exists unless truncate is set). */
  create?: boolean;
  truncate?: boolean;
}

/** A host file as a BlockDriver. Its length is the file's length. */
export class FileProtocol implements BlockDriver {
  readonly format = "file";
  readonly backing = null;
  #fd: number;
  #size: number;

  private constructor(readonly filename: string, fd: number, readonly readOnly: boolean) {
    this.#fd = fd;
    this.#size = sys.fstat(fd).size;
  }

  /** Opens a host file; errors read as QEMU's ("Could not open 'x': No such file or directory"). */
  static open(filename: string, opts: FileOpenOptions = {}): FileProtocol {
    const readOnly = !!opts.readOnly;
    let flags = readOnly ? sys.O_RDONLY : sys.O_RDWR;
    if (opts.create) flags |= sys.O_CREAT | (opts.truncate ? sys.O_TRUNC : sys.O_EXCL);
    try {
      return new FileProtocol(filename, sys.open(filename, flags), readOnly);
    } catch (e) {
      if (e instanceof sys.SysError) {
        throw new BlockError("EIO", `Could not open '${filename}': ${e.message}`);
      }
      throw e;
    }
  }

  /** The file descriptor, for callers that need to hand it to the kernel (mmap, locks). */
  get fd(): number {
    return this.#fd;
  }

  length(): Promise<number> {
    return Promise.resolve(this.#size);
  }

  /** Synchronous read for hot paths that own the file (qcow2 metadata, convert). */
  readSync(offset: number, buf: Uint8Array): void {
    sys.preadFull(this.#fd, buf, offset);
  }

  /**
   * Large reads and writes run on a thread of Deno's blocking pool, as QEMU's thread-pool I/O:
   * for callers that keep several requests in flight (qemu-img convert reads ahead while it
   * scans and writes), whose other work then overlaps the kernel's copy. A caller that waits for
   * each request in turn only pays the hand-off, so it is off by default.
   */
  threaded = false;

  read(offset: number, buf: Uint8Array): Promise<void> {
    if (this.threaded && buf.length >= THREADED_BYTES) return this.#readThreaded(offset, buf);
    this.readSync(offset, buf);
    return Promise.resolve();
  }

  /**
   * A read on a pool thread ({@link threaded}). A failed or short one is finished here, which
   * also gives errno (it is per thread) and the zero fill past the end of the file.
   */
  async #readThreaded(offset: number, buf: Uint8Array): Promise<void> {
    const fd = this.#fd;
    const r = Number(await threadedPread(fd, buf, offset));
    if (r === buf.length) return;
    sys.preadFull(fd, buf.subarray(Math.max(r, 0)), offset + Math.max(r, 0));
  }

  /** Synchronous write; grows the file when writing past its end. */
  writeSync(offset: number, data: Uint8Array): void {
    this.#writable();
    sys.pwriteFull(this.#fd, data, offset);
    if (offset + data.length > this.#size) this.#size = offset + data.length;
  }

  write(offset: number, data: Uint8Array, fua?: boolean): Promise<void> {
    if (this.threaded && data.length >= THREADED_BYTES && !fua) {
      return this.#writeThreaded(offset, data);
    }
    this.writeSync(offset, data);
    if (fua) sys.fdatasync(this.#fd);
    return Promise.resolve();
  }

  /** A write on a pool thread ({@link threaded}); a short one is finished here. */
  async #writeThreaded(offset: number, data: Uint8Array): Promise<void> {
    this.#writable();
    const fd = this.#fd;
    const r = Math.max(0, Number(await threadedPwrite(fd, data, offset)));
    if (r < data.length) sys.pwriteFull(fd, data.subarray(r), offset + r);
    if (offset + data.length > this.#size) this.#size = offset + data.length;
  }

  writeZeroes(offset: number, length: number, opts: WriteZeroesOptions = {}): Promise<void> {
    this.#writable();
    const end = offset + length;
    const mode = opts.mayUnmap
      ? sys.FALLOC_FL_PUNCH_HOLE | sys.FALLOC_FL_KEEP_SIZE
      : sys.FALLOC_FL_ZERO_RANGE;
    if (end <= this.#size && sys.fallocate(this.#fd, mode, offset, length)) {
      return Promise.resolve();
    }
    if (offset >= this.#size) {
      // Past the end a file reads as zeros: growing it is enough.
      sys.ftruncate(this.#fd, end);
      this.#size = end;
      return Promise.resolve();
    }
    if (opts.noFallback) {
      return Promise.reject(new BlockError("ENOTSUP", "write zeroes not supported"));
    }
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let pos = offset; pos < end; pos += chunk.length) {
      this.writeSync(pos, chunk.subarray(0, Math.min(chunk.length, end - pos)));
    }
    return Promise.resolve();
  }

  discard(offset: number, length: number): Promise<void> {
    this.#writable();
    const end = Math.min(offset + length, this.#size);
    if (end > offset) {
      sys.fallocate(
        this.#fd,
        sys.FALLOC_FL_PUNCH_HOLE | sys.FALLOC_FL_KEEP_SIZE,
        offset,
        end - offset,
      );
    }
    return Promise.resolve();
  }

  flush(): Promise<void> {
    if (!this.readOnly) sys.fdatasync(this.#fd);
    return Promise.resolve();
  }

  /** Data and holes as the filesystem reports them (SEEK_DATA/SEEK_HOLE). */
  blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const end = Math.min(offset + length, this.#size);
    if (offset >= this.#size) {
      return Promise.resolve({
        length,
        allocated: true,
        zero: true,
        data: false,
        offset,
        file: this.filename,
      });
    }
    const data = sys.lseek(this.#fd, offset, sys.SEEK_DATA);
    if (data < 0 || data > offset) {
      // A hole from offset up to the next data (or the end).
      const holeEnd = data < 0 ? end : Math.min(data, end);
      return Promise.resolve({
        length: holeEnd - offset,
        allocated: true,
        zero: true,
        data: false,
        offset,
        file: this.filename,
      });
    }
    const hole = sys.lseek(this.#fd, offset, sys.SEEK_HOLE);
    const dataEnd = hole < 0 ? end : Math.min(hole, end);
    return Promise.resolve({
      length: dataEnd - offset,
      allocated: true,
      zero: false,
      data: true,
      offset,
      file: this.filename,
    });
  }

  truncate(length: number, opts: TruncateOptions = {}): Promise<void> {
    this.#writable();
    if (length < this.#size && opts.shrink === false) {
      return Promise.reject(new BlockError("EINVAL", "Cannot shrink without shrink"));
    }
    const old = this.#size;
    sys.ftruncate(this.#fd, length);
    this.#size = length;
    if (length > old) {
      const p = opts.preallocation ?? "off";
      if (p === "falloc") sys.fallocate(this.#fd, 0, old, length - old);
      if (p === "full") {
        const chunk = new Uint8Array(Math.min(length - old, 1 << 20));
        for (let pos = old; pos < length; pos += chunk.length) {
          sys.pwriteFull(this.#fd, chunk.subarray(0, Math.min(chunk.length, length - pos)), pos);
        }
      }
    }
    return Promise.resolve();
  }

  allocatedSize(): Promise<number> {
    return Promise.resolve(sys.fstat(this.#fd).allocated);
  }

  close(): Promise<void> {
    if (this.#fd >= 0) {
      const fd = this.#fd;
      this.#fd = -1;
      sys.close(fd);
    }
    return Promise.resolve();
  }

  #writable(): void {
    if (this.readOnly) throw new BlockError("EPERM", "Image is read-only");
  }
}
