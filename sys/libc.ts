/**
 * Thin libc bindings through Deno FFI. Only what demu needs, typed; every call that can fail
 * throws a {@link SysError} carrying errno and the call's name.
 */

const LIBC_PATHS = ["libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"];

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  pread: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  fsync: { parameters: ["i32"], result: "i32" },
  fdatasync: { parameters: ["i32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  fallocate: { parameters: ["i32", "i32", "i64", "i64"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof symbols>["symbols"];
let lib: Libc | undefined;

/** The loaded libc symbols (loaded on first use). */
export function libc(): Libc {
  if (lib) return lib;
  let lastError: unknown;
  for (const path of LIBC_PATHS) {
    try {
      lib = Deno.dlopen(path, symbols).symbols;
      return lib;
    } catch (e) {
      lastError = e;
    }
  }
  throw new Error(`cannot load libc: ${lastError}`);
}

/** The calling thread's errno. */
export function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

/** The text libc gives for an errno value ("No such file or directory"). */
export function strerror(code: number): string {
  const p = libc().strerror(code);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${code}`;
}

/** An error from a libc call. */
export class SysError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(strerror(errno));
    this.name = "SysError";
  }
}

// errno values (Linux x86_64).
export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EIO = 5;
export const EAGAIN = 11;
export const EACCES = 13;
export const EEXIST = 17;
export const EINVAL = 22;
export const ENOSPC = 28;
export const ENXIO = 6;
export const EOPNOTSUPP = 95;

// open(2) flags.
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_TRUNC = 0o1000;
export const O_DIRECT = 0o40000;
export const O_CLOEXEC = 0o2000000;

// lseek(2) whence.
export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

// fallocate(2) modes.
export const FALLOC_FL_KEEP_SIZE = 1;
export const FALLOC_FL_PUNCH_HOLE = 2;
export const FALLOC_FL_ZERO_RANGE = 0x10;

const encoder = new TextEncoder();
function cString(s: string): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(encoder.encode(s).length + 1);
  encoder.encodeInto(s, b);
  return b;
}

function check(call: string, r: number | bigint): number {
  const n = Number(r);
  if (n < 0) throw new SysError(call, errno());
  return n;
}

/** open(2); returns the fd. */
export function open(path: string, flags: number, mode = 0o644): number {
  for (;;) {
    const r = libc().open(cString(path), flags | O_CLOEXEC, mode);
    if (r < 0 && errno() === EINTR) continue;
    return check("open", r);
  }
}

/** close(2). */
export function close(fd: number): void {
  check("close", libc().close(fd));
}

/** Reads exactly buf.length bytes at pos; bytes past end of file read as zero. Returns bytes read from the file. */
export function preadFull(fd: number, buf: Uint8Array, pos: number): number {
  let done = 0;
  const c = libc();
  while (done < buf.length) {
    const view = done === 0 ? buf : buf.subarray(done);
    const r = Number(
      c.pread(fd, view as Uint8Array<ArrayBuffer>, BigInt(view.length), BigInt(pos + done)),
    );
    if (r < 0) {
      if (errno() === EINTR) continue;
      throw new SysError("pread", errno());
    }
    if (r === 0) {
      buf.fill(0, done);
      return done;
    }
    done += r;
  }
  return done;
}

/** Writes all of data at pos. */
export function pwriteFull(fd: number, data: Uint8Array, pos: number): void {
  let done = 0;
  const c = libc();
  while (done < data.length) {
    const view = done === 0 ? data : data.subarray(done);
    const r = Number(
      c.pwrite(fd, view as Uint8Array<ArrayBuffer>, BigInt(view.length), BigInt(pos + done)),
    );
    if (r < 0) {
      if (errno() === EINTR) continue;
      throw new SysError("pwrite", errno());
    }
    done += r;
  }
}

/** fsync(2). */
export function fsync(fd: number): void {
  check("fsync", libc().fsync(fd));
}

/** fdatasync(2). */
export function fdatasync(fd: number): void {
  check("fdatasync", libc().fdatasync(fd));
}

/** ftruncate(2). */
export function ftruncate(fd: number, length: number): void {
  check("ftruncate", libc().ftruncate(fd, BigInt(length)));
}

/** fallocate(2); returns false (instead of throwing) when the filesystem does not support the mode. */
export function fallocate(fd: number, mode: number, offset: number, length: number): boolean {
  const r = libc().fallocate(fd, mode, BigInt(offset), BigInt(length));
  if (r < 0) {
    const e = errno();
    if (e === EOPNOTSUPP || e === EINVAL) return false;
    throw new SysError("fallocate", e);
  }
  return true;
}

/** lseek(2); returns -1 with ENXIO (no more data/holes) instead of throwing. */
export function lseek(fd: number, offset: number, whence: number): number {
  const r = Number(libc().lseek(fd, BigInt(offset), whence));
  if (r < 0) {
    const e = errno();
    if (e === ENXIO) return -1;
    throw new SysError("lseek", e);
  }
  return r;
}

/** The fields of struct stat (x86_64) that demu uses. */
export interface Stat {
  size: number;
  /** Bytes actually allocated (st_blocks * 512). */
  allocated: number;
  mode: number;
  blksize: number;
}

/** fstat(2). */
export function fstat(fd: number): Stat {
  const buf = new Uint8Array(144);
  check("fstat", libc().fstat(fd, buf));
  const v = new DataView(buf.buffer);
  return {
    mode: v.getUint32(24, true),
    size: Number(v.getBigInt64(48, true)),
    blksize: Number(v.getBigInt64(56, true)),
    allocated: Number(v.getBigInt64(64, true)) * 512,
  };
}
