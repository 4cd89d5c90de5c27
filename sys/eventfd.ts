/** eventfd(2) through Deno FFI: a counter file descriptor for kicks between threads and KVM. */
import { errno, SysError } from "./libc.ts";

export const EFD_CLOEXEC = 0x80000;
export const EFD_NONBLOCK = 0x800;

const symbols = {
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols>["symbols"] | undefined;
function ev() {
  lib ??= Deno.dlopen("libc.so.6", symbols).symbols;
  return lib;
}

/** eventfd(2); returns the fd (close it with close() from libc.ts). */
export function eventfd(initval = 0, flags = EFD_CLOEXEC): number {
  const fd = ev().eventfd(initval, flags | EFD_CLOEXEC);
  if (fd < 0) throw new SysError("eventfd", errno());
  return fd;
}

/** Adds n to the eventfd counter. */
export function eventfdWrite(fd: number, n = 1n): void {
  const b = new BigUint64Array([n]);
  if (Number(ev().write(fd, new Uint8Array(b.buffer), 8n)) !== 8) {
    throw new SysError("write", errno());
  }
}

/** Reads and resets the counter; with EFD_NONBLOCK returns 0n when it is zero. */
export function eventfdRead(fd: number): bigint {
  const b = new BigUint64Array(1);
  const r = Number(ev().read(fd, new Uint8Array(b.buffer), 8n));
  if (r < 0) {
    if (errno() === 11) return 0n;
    throw new SysError("read", errno());
  }
  return b[0];
}
