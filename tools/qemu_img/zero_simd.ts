/**
 * The zero scan in WebAssembly SIMD (QEMU's buffer_is_zero uses SSE2/AVX2): 64 bytes per step,
 * about three times the speed of the JavaScript word loop. It reads only its own memory, so
 * convert reads its chunks straight into buffers allocated there ({@link scanBuffers}).
 */

// Opcodes of the WebAssembly binary format.
const I32 = 0x7f;
const FUNC = 0x60;
const VOID = 0x40;
const BLOCK = 0x02;
const LOOP = 0x03;
const IF = 0x04;
const END = 0x0b;
const BR = 0x0c;
const BR_IF = 0x0d;
const RETURN = 0x0f;
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const I32_CONST = 0x41;
const I32_GE_U = 0x4f;
const I32_ADD = 0x6a;
const I32_AND = 0x71;
const SIMD = 0xfd;
const V128_LOAD = 0x00;
const V128_OR = 0x50;
const V128_ANY_TRUE = 0x53;

// Locals of scan(ptr, len): the parameters, then i and end.
const PTR = 0;
const LEN = 1;
const I = 2;
const STOP = 3;

/** v128.load at ptr + i + offset (the alignment hint 2^4; unaligned addresses work too). */
const load = (offset: number) => [
  LOCAL_GET,
  PTR,
  LOCAL_GET,
  I,
  I32_ADD,
  SIMD,
  V128_LOAD,
  4,
  offset,
];

/**
 * scan(ptr, len): for (i = 0; i < (len & ~63); i += 64) if (any byte of the 64 at ptr + i is
 * set) return i; return len & ~63.
 */
const SCAN_BODY = [
  ...[1, 2, I32], // locals: i, end (i32)
  ...[LOCAL_GET, LEN, I32_CONST, 0x40, /* -64 */ I32_AND, LOCAL_SET, STOP],
  ...[BLOCK, VOID, LOOP, VOID],
  ...[LOCAL_GET, I, LOCAL_GET, STOP, I32_GE_U, BR_IF, 1],
  ...load(0),
  ...load(16),
  ...[SIMD, V128_OR],
  ...load(32),
  ...[SIMD, V128_OR],
  ...load(48),
  ...[SIMD, V128_OR, SIMD, V128_ANY_TRUE],
  ...[IF, VOID, LOCAL_GET, I, RETURN, END],
  ...[LOCAL_GET, I, I32_CONST, 0xc0, 0x00, /* 64 */ I32_ADD, LOCAL_SET, I, BR, 0],
  ...[END, END],
  ...[LOCAL_GET, STOP, END],
];

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function moduleBytes(): Uint8Array<ArrayBuffer> {
  const section = (id: number, body: number[]) => [id, ...leb(body.length), ...body];
  const name = (s: string) => [s.length, ...new TextEncoder().encode(s)];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // "\0asm", version 1
    ...section(1, [1, FUNC, 2, I32, I32, 1, I32]), // type 0: (i32, i32) -> i32
    ...section(2, [1, ...name("env"), ...name("memory"), 0x02, 0x00, 1]), // imported memory
    ...section(3, [1, 0]), // function 0 has type 0
    ...section(7, [1, ...name("scan"), 0x00, 0]), // exported as "scan"
    ...section(10, [1, ...leb(SCAN_BODY.length), ...SCAN_BODY]),
  ]);
}

const PAGE = 65536;

/** The scanner over one WebAssembly memory. */
export interface SimdScanner {
  readonly memory: WebAssembly.Memory;
  /** Offset from ptr of the first 64-byte block holding a non-zero byte; len & ~63 if none. */
  scan(ptr: number, len: number): number;
}

let scanner: SimdScanner | null | undefined;

/**
 * Allocates `count` buffers of `size` bytes in a new scanner memory (one scanner per process:
 * a later call replaces it, so a program allocates its buffers once). Plain buffers when the
 * runtime has no WebAssembly SIMD.
 */
export function scanBuffers(count: number, size: number): Uint8Array[] {
  const bytes = moduleBytes();
  if (typeof WebAssembly !== "object" || !WebAssembly.validate(bytes)) {
    scanner = null;
    return Array.from({ length: count }, () => new Uint8Array(size));
  }
  const memory = new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(count * size / PAGE)) });
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
  const scan = instance.exports.scan as (ptr: number, len: number) => number;
  scanner = { memory, scan };
  return Array.from({ length: count }, (_, i) => new Uint8Array(memory.buffer, i * size, size));
}

/** The scanner whose memory holds `buffer`, if any. */
export function scannerFor(buffer: ArrayBufferLike): SimdScanner | undefined {
  return scanner && scanner.memory.buffer === buffer ? scanner : undefined;
}
