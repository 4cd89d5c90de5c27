/**
 * Cluster compression as QEMU's qcow2 does it: raw deflate with a 4 KiB window (zlib, the
 * default) or one zstd frame. Pure functions, usable inside a Worker.
 */
type Zlib = typeof import("node:zlib");
let zlib: Zlib | undefined;

/**
 * Loads the codecs. node:zlib costs about 50 ms of start-up, so it is imported only by programs
 * that meet compressed clusters (the driver awaits this before its first compressed read or
 * write; Workers and tests call it once).
 */
export async function loadCompression(): Promise<void> {
  zlib ??= await import("node:zlib");
}

function codecs(): Zlib {
  if (!zlib) throw new Error("qcow2 compression used before loadCompression()");
  return zlib;
}

/** The compression types qcow2 knows. */
export type Qcow2CompressionType = "zlib" | "zstd";

/** QEMU's deflate parameters: window bits 12 (raw), memory level 9. */
const ZLIB_WINDOW_BITS = 12;
const ZLIB_MEM_LEVEL = 9;

/**
 * Compresses one cluster. Returns undefined when the result would not fit in clusterSize - 1
 * bytes (QEMU then stores the cluster uncompressed).
 */
export function compressCluster(
  data: Uint8Array,
  type: Qcow2CompressionType,
  clusterSize: number,
): Uint8Array | undefined {
  const zlib = codecs();
  let out: Uint8Array;
  if (type === "zstd") {
    out = zlib.zstdCompressSync(data);
  } else {
    out = zlib.deflateRawSync(data, { windowBits: ZLIB_WINDOW_BITS, memLevel: ZLIB_MEM_LEVEL });
  }
  if (out.length > clusterSize - 1) return undefined;
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/**
 * Decompresses one cluster from its stored bytes (which may run past the end of the compressed
 * stream into padding or a neighbour's data). Throws when the stream is damaged or short.
 */
export function decompressCluster(
  stored: Uint8Array,
  type: Qcow2CompressionType,
  clusterSize: number,
): Uint8Array {
  const zlib = codecs();
  let out: Uint8Array;
  if (type === "zstd") {
    out = zlib.zstdDecompressSync(stored.subarray(0, zstdFrameLength(stored)));
  } else {
    out = zlib.inflateRawSync(stored, {
      windowBits: ZLIB_WINDOW_BITS,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
  }
  if (out.length < clusterSize) throw new Error("compressed cluster is truncated");
  return new Uint8Array(out.buffer, out.byteOffset, clusterSize);
}

/** Length of the zstd frame at the start of data (node's decoder rejects trailing bytes). */
export function zstdFrameLength(data: Uint8Array): number {
  const bad = () => new Error("bad zstd frame");
  if (
    data.length < 6 || data[0] !== 0x28 || data[1] !== 0xb5 || data[2] !== 0x2f || data[3] !== 0xfd
  ) {
    throw bad();
  }
  const fhd = data[4];
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const dictFlag = fhd & 3;
  let pos = 5 + (single ? 0 : 1) + [0, 1, 2, 4][dictFlag] +
    (fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag]);
  for (;;) {
    if (pos + 3 > data.length) throw bad();
    const bh = data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16);
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    pos += 3 + (type === 1 ? 1 : size);
    if (type === 3 || pos > data.length) throw bad();
    if (last) break;
  }
  pos += checksum ? 4 : 0;
  if (pos > data.length) throw bad();
  return pos;
}
