/** Fast all-zero tests of buffers (QEMU's buffer_is_zero), used for sparse detection. */

import { scannerFor } from "./zero_simd.ts";

const SECTOR = 512;

let lastBuffer: ArrayBufferLike | undefined;
let lastWords: Uint32Array<ArrayBufferLike> = new Uint32Array(0);

/** A Uint32Array over the whole of buffer (its trailing bytes past a multiple of 4 left out). */
function wordView(buffer: ArrayBufferLike): Uint32Array {
  if (buffer !== lastBuffer || lastWords.length !== buffer.byteLength >>> 2) {
    lastBuffer = buffer;
    lastWords = new Uint32Array(buffer, 0, buffer.byteLength >>> 2);
  }
  return lastWords;
}

/** True when bytes [from, to) of buf are all zero. */
export function isZeroRange(buf: Uint8Array, from: number, to: number): boolean {
  // Data is usually non-zero right away: look at the ends before scanning.
  if (from >= to) return true;
  if (buf[from] || buf[to - 1]) return false;
  return firstNonZero(buf, from, to) === to;
}

/** The index of the first non-zero byte of buf in [from, to), or `to` when they are all zero. */
export function firstNonZero(buf: Uint8Array, from: number, to: number): number {
  const simd = to - from >= 256 ? scannerFor(buf.buffer) : undefined;
  if (simd) {
    // Whole 64-byte blocks in WebAssembly SIMD; then bytes of the block found, or of the tail.
    const blocks = (to - from) & ~63;
    const r = simd.scan(buf.byteOffset + from, to - from);
    const stop = r < blocks ? from + r + 64 : to;
    for (let i = from + r; i < stop; i++) if (buf[i]) return i;
    return to;
  }
  let i = from;
  const head = (4 - ((buf.byteOffset + i) & 3)) & 3;
  for (const stop = Math.min(to, i + head); i < stop; i++) if (buf[i]) return i;
  const words = (to - i) >>> 2;
  if (words > 0) {
    // One word view per ArrayBuffer, reused: a view per 512-byte sector cost more than the scan.
    const w = wordView(buf.buffer);
    let j = (buf.byteOffset + i) >>> 2;
    const end = j + words;
    // Eight words per test: zeros (the long runs) cost one branch per 32 bytes.
    for (const end8 = end - 7; j < end8; j += 8) {
      if (w[j] | w[j + 1] | w[j + 2] | w[j + 3] | w[j + 4] | w[j + 5] | w[j + 6] | w[j + 7]) {
        break;
      }
    }
    for (; j < end; j++) {
      if (w[j]) {
        i = j * 4 - buf.byteOffset;
        while (!buf[i]) i++;
        return i;
      }
    }
    i = end * 4 - buf.byteOffset;
  }
  for (; i < to; i++) if (buf[i]) return i;
  return to;
}

/** True when every byte of buf is zero. */
export function isZero(buf: Uint8Array): boolean {
  return isZeroRange(buf, 0, buf.length);
}

/**
 * is_allocated_sectors_min(): how many bytes from the start of buf form one run that should be
 * written (true) or may be skipped as zeros (false). Zero runs shorter than `minSparse` count as
 * data; run ends are aligned to `alignment` (bytes, counted from `offset`) as QEMU does.
 */
export function allocatedRun(
  buf: Uint8Array,
  offset: number,
  minSparse: number,
  alignment: number,
): { length: number; data: boolean } {
  const first = isAllocated(buf, 0, offset, alignment);
  if (!first.data) return first;
  let used = first.length;
  let checked = used;
  const min = Math.min(minSparse, buf.length);
  while (checked < buf.length) {
    const r = isAllocated(buf, checked, offset + checked, alignment);
    checked += r.length;
    if (r.data) used = checked;
    else if (r.length >= min && r.length >= SECTOR) break;
  }
  return { length: used, data: true };
}

/** is_allocated_sectors() on buf[start..]: one run of sectors that are all zero or all not. */
function isAllocated(
  buf: Uint8Array,
  start: number,
  offset: number,
  alignment: number,
): { length: number; data: boolean } {
  const n = buf.length - start;
  let zero = isZeroRange(buf, start, start + Math.min(SECTOR, n));
  let i = SECTOR;
  if (zero) {
    // The zero run ends at the sector holding the first non-zero byte: one scan, not one per sector.
    const nz = firstNonZero(buf, start, buf.length) - start;
    i = nz >= n ? n : Math.floor(nz / SECTOR) * SECTOR;
  } else {
    for (; i < n; i += SECTOR) {
      // A data sector usually starts with a non-zero byte: no call for those.
      if (buf[start + i]) continue;
      if (isZeroRange(buf, start + i, start + Math.min(i + SECTOR, n))) break;
    }
  }
  if (i >= n) return { length: n, data: !zero };
  const tail = (offset + i) % alignment;
  if (tail) {
    if (zero && i <= tail) zero = false;
    if (!zero) i = Math.min(i + alignment - tail, n);
    else i -= tail;
  }
  return { length: i, data: !zero };
}
