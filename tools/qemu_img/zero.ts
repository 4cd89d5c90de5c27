/** Fast all-zero tests of buffers (QEMU's buffer_is_zero), used for sparse detection. */

/** True when every byte of buf is zero. */
export function isZero(buf: Uint8Array): boolean {
  const len = buf.length;
  let i = 0;
  const head = (8 - (buf.byteOffset & 7)) & 7;
  for (; i < head && i < len; i++) if (buf[i]) return false;
  const words = Math.floor((len - i) / 8);
  if (words > 0) {
    const w = new BigUint64Array(buf.buffer, buf.byteOffset + i, words);
    // Checking the first word early keeps non-zero data (the common case) cheap.
    if (w[0] !== 0n) return false;
    const w32 = new Uint32Array(buf.buffer, buf.byteOffset + i, words * 2);
    for (let j = 0; j < w32.length; j += 4) {
      if (w32[j] | w32[j + 1] | w32[j + 2] | w32[j + 3]) return false;
    }
    i += words * 8;
  }
  for (; i < len; i++) if (buf[i]) return false;
  return true;
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
  const SECTOR = 512;
  const first = isAllocated(buf, offset, alignment);
  if (!first.data) return first;
  let used = first.length;
  let checked = used;
  while (checked < buf.length) {
    const r = isAllocated(buf.subarray(checked), offset + checked, alignment);
    checked += r.length;
    if (r.data) used = checked;
    else if (r.length >= Math.min(minSparse, buf.length) && r.length >= SECTOR) break;
  }
  return { length: used, data: true };
}

function isAllocated(
  buf: Uint8Array,
  offset: number,
  alignment: number,
): { length: number; data: boolean } {
  const SECTOR = 512;
  const n = buf.length;
  let zero = isZero(buf.subarray(0, Math.min(SECTOR, n)));
  let i = SECTOR;
  for (; i < n; i += SECTOR) {
    if (zero !== isZero(buf.subarray(i, Math.min(i + SECTOR, n)))) break;
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
