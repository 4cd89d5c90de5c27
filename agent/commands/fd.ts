/**
 * Files as qemu-ga holds them for guest-file-*: a raw descriptor opened non-blocking (so a
 * FIFO without a peer cannot stall the agent), new files created 0666 regardless of umask,
 * and read/write/lseek straight to the kernel. Failures throw {@link FdError} with errno.
 */

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  close: { parameters: ["i32"], result: "i32" },
  fchmod: { parameters: ["i32", "u32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols>["symbols"] | undefined;
function libc() {
  lib ??= Deno.dlopen("libc.so.6", symbols).symbols;
  return lib;
}

const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_TRUNC = 0o1000;
const O_APPEND = 0o2000;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const EINTR = 4;
const EEXIST = 17;

/** A failed call: errno and its strerror text. */
export class FdError extends Error {
  constructor(readonly errno: number) {
    const p = libc().strerror(errno);
    super(p ? Deno.UnsafePointerView.getCString(p) : `errno ${errno}`);
  }
}

function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

/** open(2) flags for an fopen(3) mode ("r", "w+", "ab", "r+b", ...); undefined if invalid. */
export function fopenFlags(mode: string): number | undefined {
  const m = /^([rwa])(b?)(\+?)(b?)$/.exec(mode);
  if (!m || (m[2] && m[4])) return undefined;
  const plus = m[3] === "+";
  switch (m[1]) {
    case "r":
      return plus ? O_RDWR : O_RDONLY;
    case "w":
      return (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC;
    default:
      return (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND;
  }
}

/** An open guest file. */
export class GuestFd {
  private constructor(readonly fd: number) {}

  /** Opens like fopen: a file this call creates gets mode 0666, as qemu-ga leaves it. */
  static open(path: string, flags: number): GuestFd {
    const name = new TextEncoder().encode(path + "\0");
    const base = flags | O_NONBLOCK | O_CLOEXEC;
    for (;;) {
      if (flags & O_CREAT) {
        const fd = libc().open(name, base | O_EXCL, 0o666);
        if (fd >= 0) {
          libc().fchmod(fd, 0o666);
          return new GuestFd(fd);
        }
        const e = errno();
        if (e === EINTR) continue;
        if (e !== EEXIST) throw new FdError(e);
      }
      const fd = libc().open(name, base & ~(O_CREAT | O_EXCL), 0);
      if (fd >= 0) return new GuestFd(fd);
      const e = errno();
      if (e === EINTR) continue;
      throw new FdError(e);
    }
  }

  /** Reads up to buf.length bytes, looping like fread; returns bytes read and whether EOF hit. */
  read(buf: Uint8Array<ArrayBuffer>): { count: number; eof: boolean } {
    let done = 0;
    while (done < buf.length) {
      const n = Number(libc().read(this.fd, buf.subarray(done), BigInt(buf.length - done)));
      if (n > 0) {
        done += n;
        continue;
      }
      if (n === 0) return { count: done, eof: true };
      const e = errno();
      if (e === EINTR) continue;
      throw new FdError(e);
    }
    return { count: done, eof: false };
  }

  /** Writes all of data, looping like fwrite. */
  write(data: Uint8Array<ArrayBuffer>): number {
    let done = 0;
    while (done < data.length) {
      const n = Number(libc().write(this.fd, data.subarray(done), BigInt(data.length - done)));
      if (n >= 0) {
        done += n;
        continue;
      }
      const e = errno();
      if (e === EINTR) continue;
      throw new FdError(e);
    }
    return done;
  }

  /** lseek(2); returns the new position. */
  seek(offset: number, whence: 0 | 1 | 2): number {
    const r = Number(libc().lseek(this.fd, BigInt(offset), whence));
    if (r < 0) throw new FdError(errno());
    return r;
  }

  close(): void {
    if (libc().close(this.fd) < 0) throw new FdError(errno());
  }
}
