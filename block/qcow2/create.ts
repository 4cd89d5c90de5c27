/**
 * qemu-img create -f qcow2: lays out a new image as QEMU 7.2 does. The header goes in cluster 0,
 * the refcount table in cluster 1, its first refcount block in cluster 2; the image is then
 * opened and grown to its size, which places the L1 table at cluster 3 and preallocates.
 */
import { FileProtocol } from "../file.ts";
import { openImage, openProtocol, probeFormat } from "../open.ts";
import { BlockError } from "../types.ts";
import {
  encodeFeatureTable,
  QCOW2_COMPAT_LAZY_REFCOUNTS,
  QCOW2_EXT_MAGIC_FEATURE_TABLE,
  QCOW2_FEATURE_NAMES,
  QCOW2_INCOMPAT_COMPRESSION,
  QCOW2_INCOMPAT_EXTL2,
  QCOW2_MAX_BACKING_FILE_NAME,
  QCOW2_V2_HEADER_LENGTH,
  QCOW2_V3_HEADER_LENGTH,
  type Qcow2Header,
  QCOW_MAGIC,
  serializeHeader,
  setRefcount,
} from "./format.ts";
import { Qcow2Format, resolveBackingPath } from "./image.ts";
import type { Qcow2CreateOptions } from "./types.ts";

/** The options after defaults and validation, as QEMU would use them. */
export interface Qcow2ResolvedOptions {
  size: number;
  clusterBits: number;
  version: 2 | 3;
  refcountOrder: number;
  lazyRefcounts: boolean;
  extendedL2: boolean;
  compressionType: 0 | 1;
  preallocation: "off" | "metadata" | "falloc" | "full";
}

function einval(m: string): BlockError {
  return new BlockError("EINVAL", m);
}

/** Checks create options and fills in QEMU's defaults; throws QEMU's messages. */
export function resolveCreateOptions(opts: Qcow2CreateOptions): Qcow2ResolvedOptions {
  if (opts.encrypt) {
    throw new BlockError("ENOTSUP", "qcow2: encrypted images are not supported");
  }
  if (opts.dataFile) {
    throw new BlockError("ENOTSUP", "qcow2: external data files (data_file) are not supported");
  }
  const cluster = opts.clusterSize ?? 65536;
  const clusterBits = Math.log2(cluster);
  if (!Number.isInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) {
    throw einval("Cluster size must be a power of two between 512 and 2048k");
  }
  let version: 2 | 3 = 3;
  const compat = opts.compat ?? "1.1";
  if (compat === "0.10" || compat === "v2") version = 2;
  else if (compat === "1.1" || compat === "v3") version = 3;
  else throw einval(`Parameter 'version' does not accept value '${compat}'`);
  const v3hint = "(use version=v3 or greater)";
  const lazy = !!opts.lazyRefcounts;
  if (lazy && version < 3) {
    throw einval(`Lazy refcounts only supported with compatibility level 1.1 and above ${v3hint}`);
  }
  const extL2 = !!opts.extendedL2;
  if (extL2) {
    if (version < 3) {
      throw einval(
        `Extended L2 entries are only supported with compatibility level 1.1 and above ${v3hint}`,
      );
    }
    if (clusterBits < 14) {
      throw einval(
        "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes",
      );
    }
  }
  const bits = opts.refcountBits ?? 16;
  const order = Math.log2(bits);
  if (!Number.isInteger(order) || order < 0 || order > 6) {
    throw einval("Refcount width must be a power of two and may not exceed 64 bits");
  }
  if (version < 3 && bits !== 16) {
    throw einval(
      `Different refcount widths than 16 bits require compatibility level 1.1 or above ${v3hint}`,
    );
  }
  const ctype = opts.compressionType ?? "zlib";
  if (ctype !== "zlib" && ctype !== "zstd") {
    throw einval(`Parameter 'compression-type' does not accept value '${ctype}'`);
  }
  if (ctype === "zstd" && version < 3) {
    throw einval(
      `Non-zlib compression type is only supported with compatibility level 1.1 and above ${v3hint}`,
    );
  }
  const prealloc = opts.preallocation ?? "off";
  if (!["off", "metadata", "falloc", "full"].includes(prealloc)) {
    throw einval(`Parameter 'preallocation' does not accept value '${prealloc}'`);
  }
  if (opts.backingFile && prealloc !== "off") {
    throw einval(
      "Backing file and preallocation can only be used at the same time if extended_l2 is on",
    );
  }
  const size = opts.size ?? 0;
  if (size < 0 || !Number.isSafeInteger(size)) {
    throw einval("Invalid image size specified");
  }
  const l2Entries = 2 ** clusterBits / (extL2 ? 16 : 8);
  if (Math.ceil(size / (2 ** clusterBits * l2Entries)) * 8 > 1 << 25) {
    throw einval(
      "The image size is too large for file format 'qcow2' (try using a larger cluster size)",
    );
  }
  return {
    // QEMU rounds the size up to whole sectors.
    size: Math.ceil(size / 512) * 512,
    clusterBits,
    version,
    refcountOrder: order,
    lazyRefcounts: lazy,
    extendedL2: extL2,
    compressionType: ctype === "zstd" ? 1 : 0,
    preallocation: prealloc as Qcow2ResolvedOptions["preallocation"],
  };
}

/**
 * Finds the size and format of a backing file as qemu-img create does (for a missing -F it
 * probes, and QEMU then refuses: "Backing file specified without backing format").
 */
async function inspectBacking(
  imageName: string,
  backing: string,
  fmt: string | undefined,
): Promise<{ size: number; format: string }> {
  const path = resolveBackingPath(imageName, backing);
  let img;
  try {
    img = await openImage(path, { format: fmt, readOnly: true, warn: () => {} });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new BlockError("EIO", `${msg}\nCould not open backing image.`);
  }
  try {
    return { size: await img.length(), format: img.format };
  } finally {
    await img.close();
  }
}

/** Probes the format of an existing file (for -b without -F). */
async function probeFile(path: string): Promise<string> {
  const f = await openProtocol(path, { readOnly: true });
  try {
    const len = await f.length();
    const head = new Uint8Array(Math.min(512, len));
    if (head.length) await f.read(0, head);
    return probeFormat(head);
  } finally {
    await f.close();
  }
}

/** The header QEMU writes first: no L1 table yet, refcount table at cluster 1. */
export function initialHeader(o: Qcow2ResolvedOptions): Qcow2Header {
  const cs = 2 ** o.clusterBits;
  let incompat = 0n;
  if (o.compressionType) incompat |= QCOW2_INCOMPAT_COMPRESSION;
  if (o.extendedL2) incompat |= QCOW2_INCOMPAT_EXTL2;
  return {
    magic: QCOW_MAGIC,
    version: o.version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits: o.clusterBits,
    size: 0,
    cryptMethod: 0,
    l1Size: 0,
    l1TableOffset: 0,
    refcountTableOffset: cs,
    refcountTableClusters: 1,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatibleFeatures: incompat,
    compatibleFeatures: o.lazyRefcounts ? QCOW2_COMPAT_LAZY_REFCOUNTS : 0n,
    autoclearFeatures: 0n,
    refcountOrder: o.refcountOrder,
    headerLength: o.version >= 3 ? QCOW2_V3_HEADER_LENGTH : QCOW2_V2_HEADER_LENGTH,
    compressionType: o.compressionType,
    // QEMU 7.2 writes the feature name table only for v3 with clusters above 4 KiB.
    extensions: o.version >= 3 && cs > 4096
      ? [{ type: QCOW2_EXT_MAGIC_FEATURE_TABLE, data: encodeFeatureTable(QCOW2_FEATURE_NAMES) }]
      : [],
  };
}

/** Creates a qcow2 image file (replacing an existing file, as qemu-img create does). */
export async function createQcow2(filename: string, opts: Qcow2CreateOptions): Promise<void> {
  if (opts.size === undefined && !opts.backingFile) {
    throw einval("Image creation needs a size parameter");
  }
  const o = resolveCreateOptions({ ...opts, size: opts.size ?? 0 });
  let backingFormat = opts.backingFormat;
  if (opts.backingFile) {
    if (opts.backingFile.length > QCOW2_MAX_BACKING_FILE_NAME) {
      throw einval("Backing file name too long");
    }
    if (!opts.unsafe) {
      if (!backingFormat) {
        const path = resolveBackingPath(filename, opts.backingFile);
        let detected = "raw";
        try {
          detected = await probeFile(path);
        } catch (e) {
          const msg = e instanceof Error ? e.message : String(e);
          throw new BlockError("EIO", `${msg}\nCould not open backing image.`);
        }
        throw einval(
          `Backing file specified without backing format\nDetected format of ${detected}.`,
        );
      }
      const b = await inspectBacking(filename, opts.backingFile, backingFormat);
      if (opts.size === undefined) o.size = b.size;
      backingFormat = b.format === backingFormat ? backingFormat : backingFormat;
    }
  }
  const cs = 2 ** o.clusterBits;
  const h = initialHeader(o);
  const file = FileProtocol.open(filename, { create: true, truncate: true });
  // Like QEMU's creation (BDRV_O_NO_FLUSH until the image is complete), the flushes that order
  // metadata updates are skipped while nothing can use the image yet: a crash leaves a
  // half-created file either way. Closing flushes once. (Each fdatasync of a fresh file waits
  // for a journal commit: six of them cost ~25 ms of every create and convert.)
  const flush = file.flush.bind(file);
  file.flush = () => Promise.resolve();
  let img: Qcow2Format | undefined;
  try {
    const first = new Uint8Array(3 * cs);
    first.set(serializeHeader(h));
    // Refcount table entry 0 -> block at cluster 2, which counts clusters 0..2.
    new DataView(first.buffer).setUint32(cs + 4, 2 * cs);
    const block = first.subarray(2 * cs);
    for (let i = 0; i < 3; i++) setRefcount(block, i, o.refcountOrder, 1);
    await file.write(0, first);
    img = await Qcow2Format.open(file, { noBacking: true });
    if (opts.backingFile) await img.changeBackingFile(opts.backingFile, backingFormat);
    await img.truncate(o.size, { preallocation: o.preallocation });
    file.flush = flush;
    await img.close();
    img = undefined;
  } catch (e) {
    if (img) await img.close().catch(() => {});
    else await file.close().catch(() => {});
    await Deno.remove(filename).catch(() => {});
    throw e;
  }
}
