/** qemu-img measure for qcow2: the file size an image needs, computed as QEMU 7.2 does. */
import type { BlockDriver, BlockStatus } from "../types.ts";
import { resolveCreateOptions } from "./create.ts";
import type { Qcow2CreateOptions, Qcow2Measure } from "./types.ts";

function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/**
 * Bytes of refcount table and blocks needed to count `clusters` clusters plus themselves
 * (iterated until it converges, as QEMU's qcow2_refcount_metadata_size).
 */
export function refcountMetadataSize(
  clusters: number,
  clusterSize: number,
  refcountOrder: number,
): number {
  const perTableCluster = clusterSize / 8;
  const perBlock = clusterSize * 8 / 2 ** refcountOrder;
  let table = 0;
  let blocks = 0;
  let n = 0;
  let last: number;
  do {
    last = n;
    blocks = Math.ceil((clusters + table + blocks) / perBlock);
    table = Math.ceil(blocks / perTableCluster);
    n = clusters + blocks + table;
  } while (n !== last);
  return (blocks + table) * clusterSize;
}

/** File size of a fully preallocated image (QEMU's qcow2_calc_prealloc_size). */
export function preallocSize(
  totalSize: number,
  clusterSize: number,
  refcountOrder: number,
  extendedL2: boolean,
): number {
  const aligned = roundUp(totalSize, clusterSize);
  const l2e = extendedL2 ? 16 : 8;
  let meta = clusterSize; // header
  const nl2e = roundUp(aligned / clusterSize, clusterSize / l2e);
  meta += nl2e * l2e;
  const nl1e = roundUp(nl2e * l2e / clusterSize, clusterSize / 8);
  meta += nl1e * 8;
  meta += refcountMetadataSize((meta + aligned) / clusterSize, clusterSize, refcountOrder);
  return meta + aligned;
}

/** Block status through a backing chain (QEMU's bdrv_block_status_above with no base). */
async function statusAbove(d: BlockDriver, offset: number, length: number): Promise<BlockStatus> {
  const st = await d.blockStatus(offset, length);
  if (st.allocated || !d.backing) return st;
  const blen = await d.backing.length();
  if (offset >= blen) return { ...st, zero: true };
  const below = await statusAbove(d.backing, offset, Math.min(st.length, blen - offset));
  return below;
}

/**
 * Measures the space a qcow2 image with these options needs, for an empty image of opts.size
 * or for a copy of `source` (whose allocated, non-zero extents count as data).
 */
export async function measureQcow2(
  opts: Qcow2CreateOptions,
  source?: BlockDriver,
): Promise<Qcow2Measure> {
  const srcSize = source ? await source.length() : opts.size ?? 0;
  const o = resolveCreateOptions({
    ...opts,
    size: roundUp(srcSize, 512),
    backingFile: undefined,
  });
  const cs = 2 ** o.clusterBits;
  const virtualSize = roundUp(srcSize, cs);
  const prealloc = o.preallocation === "full" || o.preallocation === "falloc";
  let required = prealloc ? virtualSize : 0;
  if (source && !prealloc) {
    required = 0;
    let pos = 0;
    while (pos < srcSize) {
      const st = await statusAbove(source, pos, srcSize - pos);
      let n = st.length;
      if (!st.zero && st.data) {
        n = roundUp(pos + n, cs) - pos;
        required += (pos % cs) + n;
      }
      pos += n;
    }
  }
  const fullyAllocated = preallocSize(virtualSize, cs, o.refcountOrder, o.extendedL2);
  return {
    required: fullyAllocated - virtualSize + required,
    fullyAllocated,
    bitmaps: 0,
    hasBitmaps: o.version >= 3 && source?.format === "qcow2",
  };
}
