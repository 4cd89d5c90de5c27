/**
 * A character device (a virtio-serial port, a serial line, a pty) as a byte stream. Deno's own
 * file reads on a terminal block the whole event loop, which would stall everything else the
 * agent (or client) does while it waits for input; here read(2) and write(2) run on FFI
 * worker threads instead, so only that thread waits.
 */

const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_CLOEXEC = 0o2000000;

const symbols = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols>["symbols"] | undefined;
function libc() {
  lib ??= Deno.dlopen("libc.so.6", symbols).symbols;
  return lib;
}

/** After this many failed reads in a row the device counts as hung up (end of stream). */
const MAX_READ_ERRORS = 3;

/** An open character device. */
export class CharDevice {
  #closed = false;
  private constructor(readonly fd: number, readonly path: string) {}

  /** Opens path read-write, without making it the controlling terminal. */
  static open(path: string): CharDevice {
    const name = new TextEncoder().encode(path + "\0");
    const fd = libc().open(name, O_RDWR | O_NOCTTY | O_CLOEXEC, 0);
    if (fd < 0) {
      const p = libc().__errno_location();
      const e = p ? new Deno.UnsafePointerView(p).getInt32() : 0;
      const text = Deno.UnsafePointerView.getCString(libc().strerror(e)!);
      throw new Error(text);
    }
    return new CharDevice(fd, path);
  }

  /** Reads some bytes; null at end of file or hang-up (errno is per-thread, so not told apart). */
  async read(p: Uint8Array): Promise<number | null> {
    for (let errors = 0; errors < MAX_READ_ERRORS && !this.#closed; errors++) {
      const n = Number(await libc().read(this.fd, p as Uint8Array<ArrayBuffer>, BigInt(p.length)));
      if (n > 0) return n;
      if (n === 0) return null;
    }
    return null;
  }

  async write(p: Uint8Array): Promise<number> {
    if (this.#closed) throw new Error("device closed");
    const n = Number(await libc().write(this.fd, p as Uint8Array<ArrayBuffer>, BigInt(p.length)));
    if (n < 0) throw new Error(`write to ${this.path} failed`);
    return n;
  }

  /** Closes the descriptor. A read already waiting on its thread returns when data or EOF come. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc().close(this.fd);
  }
}
