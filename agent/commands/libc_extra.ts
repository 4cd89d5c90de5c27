/** The few libc calls the agent needs beyond @demu/sys: settimeofday, getpwnam-free lookups. */
import { QgaError } from "../errors.ts";

const symbols = {
  settimeofday: { parameters: ["buffer", "pointer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols>["symbols"] | undefined;

function libc() {
  lib ??= Deno.dlopen("libc.so.6", symbols).symbols;
  return lib;
}

function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

/** strerror(3) of an errno value. */
export function strerror(code: number): string {
  const p = libc().strerror(code);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${code}`;
}

/** settimeofday(2); a failure becomes "<what>: <strerror>". */
export function settimeofday(sec: bigint, usec: bigint, what: string): void {
  const tv = new BigInt64Array([sec, usec]);
  if (libc().settimeofday(new Uint8Array(tv.buffer), null) < 0) {
    const e = errno();
    throw new QgaError(`${what}: ${strerror(e)}`);
  }
}
