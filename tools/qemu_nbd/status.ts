/**
 * Allocation status through a backing chain, as QEMU's block layer reports it above a node: what
 * NBD's base:allocation and qemu:allocation-depth contexts and qemu-io's map describe.
 */
import type { BlockDriver } from "@demu/block";
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from "@demu/block";

/** One extent's status seen through the whole chain. */
export interface ChainStatus {
  length: number;
  /** Reads return zeros. */
  zero: boolean;
  /** Backed by stored data somewhere in the chain. */
  data: boolean;
  /** 1 for the top image, 2 for its backing file, ...; 0 when no layer allocates it. */
  depth: number;
}

/** The status of the extent at offset (at most length bytes), walking backing files. */
export async function chainStatus(
  top: BlockDriver,
  offset: number,
  length: number,
): Promise<ChainStatus> {
  let node: BlockDriver = top;
  let len = length;
  for (let depth = 1;; depth++) {
    const s = await node.blockStatus(offset, len);
    len = Math.max(1, Math.min(s.length, len));
    if (s.allocated) return { length: len, zero: s.zero, data: s.data, depth };
    const backing = node.backing;
    if (!backing) return { length: len, zero: true, data: false, depth: 0 };
    const blen = await backing.length();
    if (offset >= blen) return { length: len, zero: true, data: false, depth: 0 };
    len = Math.min(len, blen - offset);
    node = backing;
  }
}

/**
 * Whether the top layer alone allocates the extent (qemu-io's alloc), merged over consecutive
 * extents with the same answer.
 */
export async function topAllocated(
  top: BlockDriver,
  offset: number,
  length: number,
): Promise<{ allocated: boolean; length: number }> {
  const first = await top.blockStatus(offset, length);
  let n = Math.max(1, Math.min(first.length, length));
  while (n < length) {
    const s = await top.blockStatus(offset + n, length - n);
    if (s.allocated !== first.allocated) break;
    n += Math.max(1, Math.min(s.length, length - n));
  }
  return { allocated: first.allocated, length: n };
}

/** Ceiling on extents in one BLOCK_STATUS chunk, so a reply stays bounded. */
const MAX_EXTENTS = 1 << 16;

/** Extents as [length, flags, ...] for base:allocation (depth=false) or qemu:allocation-depth. */
export async function extents(
  d: BlockDriver,
  offset: number,
  length: number,
  one: boolean,
  depth: boolean,
): Promise<number[]> {
  const out: number[] = [];
  const end = offset + length;
  for (let pos = offset; pos < end;) {
    const s = await chainStatus(d, pos, end - pos);
    const value = depth ? s.depth : (s.data ? 0 : NBD_STATE_HOLE) | (s.zero ? NBD_STATE_ZERO : 0);
    const n = out.length;
    if (n && out[n - 1] === value) out[n - 2] += s.length;
    else if (one && n) break;
    else if (n / 2 >= MAX_EXTENTS) break;
    else out.push(s.length, value);
    pos += s.length;
  }
  return out;
}
