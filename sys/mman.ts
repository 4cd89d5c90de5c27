/**
 * mmap(2)/munmap(2) through Deno FFI, and a view of a mapping as an ArrayBuffer (guest RAM under
 * KVM is one anonymous mapping that both the kernel and demu's devices see).
 */
import { errno, SysError } from "./libc.ts";

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
export const MAP_SHARED = 0x1;
export const MAP_PRIVATE = 0x2;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
/** mmap's failure value, (void *)-1. */
const MAP_FAILED = 0xffffffffffffffffn;

const symbols = {
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols>["symbols"] | undefined;
function mm() {
  lib ??= Deno.dlopen("libc.so.6", symbols).symbols;
  return lib;
}

/** A mapping: its address and length, and its bytes as an ArrayBuffer. */
export interface Mapping {
  readonly pointer: Deno.PointerObject;
  readonly length: number;
  /** The mapped bytes (valid until {@link munmap}). */
  readonly buffer: ArrayBuffer;
}

/** mmap(2): maps length bytes of fd (or anonymous memory with fd -1) and returns the mapping. */
export function mmap(
  length: number,
  prot: number,
  flags: number,
  fd = -1,
  offset = 0,
): Mapping {
  const p = mm().mmap(null, BigInt(length), prot, flags, fd, BigInt(offset));
  if (p === null || Deno.UnsafePointer.value(p) === MAP_FAILED) {
    throw new SysError("mmap", errno());
  }
  const buffer = Deno.UnsafePointerView.getArrayBuffer(p, length);
  return { pointer: p, length, buffer };
}

/** munmap(2). The mapping's ArrayBuffer must not be touched afterwards. */
export function munmap(m: Mapping): void {
  if (mm().munmap(m.pointer, BigInt(m.length)) < 0) throw new SysError("munmap", errno());
}

/** The host address of a mapping, as a number (for KVM memory slots). */
export function pointerValue(p: Deno.PointerObject): bigint {
  return BigInt(Deno.UnsafePointer.value(p));
}
