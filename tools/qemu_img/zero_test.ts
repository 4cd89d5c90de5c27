import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { allocatedRun, firstNonZero, isZero, isZeroRange } from "./zero.ts";
import { scanBuffers, scannerFor } from "./zero_simd.ts";

Deno.test("isZero finds a single set byte anywhere", () => {
  const b = new Uint8Array(4099);
  strictEqual(isZero(b), true);
  for (const at of [0, 1, 3, 4, 1000, 4095, 4098]) {
    b[at] = 1;
    strictEqual(isZero(b), false, `byte ${at}`);
    strictEqual(isZeroRange(b, at + 1, b.length), true);
    b[at] = 0;
  }
  strictEqual(isZero(b.subarray(3, 1001)), true);
});

Deno.test("allocatedRun treats short zero runs as data and skips long ones", () => {
  const b = new Uint8Array(64 * 1024);
  b.fill(1, 0, 1024); // data, then 1 KiB of zeros, then data: one run
  b.fill(1, 2048, 8192);
  // then 56 KiB of zeros: skippable with -S 4k
  deepStrictEqual(allocatedRun(b, 0, 4096, 4096), { length: 8192, data: true });
  deepStrictEqual(allocatedRun(b.subarray(8192), 8192, 4096, 4096), {
    length: 56 * 1024,
    data: false,
  });
  // With a larger minimum the zeros are written too.
  deepStrictEqual(allocatedRun(b, 0, 64 * 1024, 65536), { length: 65536, data: true });
});

/** is_allocated_sectors as the definition reads: one sector at a time. */
function naiveAllocated(buf: Uint8Array, offset: number, alignment: number) {
  const zeroAt = (s: number) => buf.subarray(s, Math.min(s + 512, buf.length)).every((x) => !x);
  let zero = zeroAt(0);
  let i = 512;
  for (; i < buf.length; i += 512) if (zeroAt(i) !== zero) break;
  if (i >= buf.length) return { length: buf.length, data: !zero };
  const tail = (offset + i) % alignment;
  if (tail) {
    if (zero && i <= tail) zero = false;
    if (!zero) i = Math.min(i + alignment - tail, buf.length);
    else i -= tail;
  }
  return { length: i, data: !zero };
}

/** is_allocated_sectors_min over the model above. */
function naiveRun(buf: Uint8Array, offset: number, minSparse: number, alignment: number) {
  const first = naiveAllocated(buf, offset, alignment);
  if (!first.data) return first;
  let used = first.length;
  let checked = used;
  const min = Math.min(minSparse, buf.length);
  while (checked < buf.length) {
    const r = naiveAllocated(buf.subarray(checked), offset + checked, alignment);
    checked += r.length;
    if (r.data) used = checked;
    else if (r.length >= min && r.length >= 512) break;
  }
  return { length: used, data: true };
}

for (const simd of [false, true]) {
  Deno.test(
    `firstNonZero and allocatedRun agree with a byte-by-byte model at any alignment${
      simd ? " (WebAssembly SIMD scan)" : ""
    }`,
    () => {
      agreesWithModel(simd ? scanBuffers(1, 40000)[0] : new Uint8Array(40000), simd);
    },
  );
}

function agreesWithModel(whole: Uint8Array, simd: boolean) {
  strictEqual(!!scannerFor(whole.buffer), simd);
  let seed = 7;
  const rand = (n: number) => {
    // xorshift32 (exact in 32-bit integer arithmetic, unlike a float LCG)
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    return seed % n;
  };
  for (let round = 0; round < 300; round++) {
    whole.fill(0);
    // A few runs of data among zeros.
    for (let k = rand(4); k > 0; k--) {
      const at = rand(whole.length);
      whole.fill(1 + rand(255), at, Math.min(whole.length, at + 1 + rand(3000)));
    }
    const start = rand(9);
    const buf = whole.subarray(start, start + 1 + rand(whole.length - 9));
    const from = rand(buf.length);
    const to = from + rand(buf.length - from + 1);
    let expect = from;
    while (expect < to && !buf[expect]) expect++;
    strictEqual(firstNonZero(buf, from, to), expect, `round ${round}`);
    strictEqual(isZeroRange(buf, from, to), expect === to);
    const offset = rand(64) * 512;
    for (const minSparse of [4096, 1 << 30]) {
      deepStrictEqual(
        allocatedRun(buf, offset, minSparse, 4096),
        naiveRun(buf, offset, minSparse, 4096),
        `round ${round}`,
      );
    }
  }
}
