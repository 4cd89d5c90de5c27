/**
 * Pseudo-terminals for tests: the master end held through libc (nonblocking), the slave's
 * path handed to an agent or client as its "serial port".
 */

const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_NONBLOCK = 0o4000;
const F_SETFL = 4;
const EAGAIN = 11;

let lib: ReturnType<typeof load> | undefined;
const load = () =>
  Deno.dlopen("libc.so.6", {
    posix_openpt: { parameters: ["i32"], result: "i32" },
    grantpt: { parameters: ["i32"], result: "i32" },
    unlockpt: { parameters: ["i32"], result: "i32" },
    ptsname: { parameters: ["i32"], result: "pointer" },
    read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
    close: { parameters: ["i32"], result: "i32" },
    fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
    __errno_location: { parameters: [], result: "pointer" },
  }).symbols;

function libc() {
  lib ??= load();
  return lib;
}

function errno(): number {
  return new Deno.UnsafePointerView(libc().__errno_location()!).getInt32();
}

/** A pty pair: the master fd (ours) and the slave's path (the agent's "port"). */
export function openPty(): { master: number; slave: string } {
  const master = libc().posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || libc().grantpt(master) < 0 || libc().unlockpt(master) < 0) {
    throw new Error(`cannot set up a pty (errno ${errno()})`);
  }
  libc().fcntl(master, F_SETFL, O_RDWR | O_NONBLOCK);
  const slave = Deno.UnsafePointerView.getCString(libc().ptsname(master)!);
  return { master, slave };
}

/** Writes all of data to fd. */
export function writeAll(fd: number, data: Uint8Array<ArrayBuffer>): void {
  let off = 0;
  while (off < data.length) {
    const n = Number(libc().write(fd, data.subarray(off), BigInt(data.length - off)));
    if (n < 0) throw new Error(`write: errno ${errno()}`);
    off += n;
  }
}

/** Reads from the master until `lines` newline-terminated replies arrived or the time is up. */
export async function readLines(fd: number, lines: number, ms = 10000): Promise<string[]> {
  const buf = new Uint8Array(65536);
  let text = "";
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const n = Number(libc().read(fd, buf, BigInt(buf.length)));
    if (n > 0) {
      text += new TextDecoder().decode(buf.subarray(0, n));
      if (text.split("\n").length - 1 >= lines) break;
      continue;
    }
    if (n < 0 && errno() !== EAGAIN && errno() !== 5) throw new Error(`read: errno ${errno()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return text.split("\n").filter((l) => l !== "");
}

/** Closes a descriptor from {@link openPty}. */
export function closeFd(fd: number): void {
  libc().close(fd);
}

/** Reads whatever is available now (nonblocking); null when nothing is. */
export function readSome(fd: number): Uint8Array | null {
  const buf = new Uint8Array(65536);
  const n = Number(libc().read(fd, buf, BigInt(buf.length)));
  return n > 0 ? buf.slice(0, n) : null;
}
