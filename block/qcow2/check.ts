/**
 * The qcow2 consistency checker and repairer behind `qemu-img check [-r leaks|all]`.
 *
 * It works on the protocol layer (the image file) rather than on an open Qcow2Format: it reads
 * the header, walks every L1/L2 table (the active one and each snapshot's), the snapshot table,
 * the refcount table and blocks and the bitmap directory, builds an in-memory refcount table
 * (IMRT) of what is really referenced, and compares it with the refcounts on disk. The walk, its
 * counters and the lines it prints follow QEMU 7.2's qcow2 check so that the two tools report
 * the same numbers and messages on the same image.
 *
 * Repairs are written so that a crash at any point leaves an image that is at most leaking:
 * refcount decreases and increases touch only refcount entries, and a rebuilt refcount structure
 * is written into free clusters and flushed before the header is switched over to it.
 *
 * Where QEMU's behaviour depends on its internals (its refcount block cache writing late and
 * through the metadata overlap check, reads past 2^63 - 2^30 failing, 32-bit arithmetic in
 * places), the checker reproduces the observable result, because its output is compared line
 * by line with the real qemu-img's. One QEMU 7.2 bug is deliberately not reproduced: opening an
 * image read-write for `check -r` that has bitmaps or unknown autoclear bits rewrites the
 * header with the snapshot table pointer zeroed, silently dropping every snapshot.
 */
import { type BlockDriver, BlockError } from "../types.ts";
import {
  encodeFeatureTable,
  getRefcount as getDiskRefcount,
  MAX_CLUSTER_BITS,
  MIN_CLUSTER_BITS,
  parseHeader,
  QCOW2_AUTOCLEAR_BITMAPS,
  QCOW2_AUTOCLEAR_DATA_FILE_RAW,
  QCOW2_EXT_MAGIC_BACKING_FORMAT,
  QCOW2_EXT_MAGIC_BITMAPS,
  QCOW2_EXT_MAGIC_CRYPTO_HEADER,
  QCOW2_EXT_MAGIC_DATA_FILE,
  QCOW2_EXT_MAGIC_FEATURE_TABLE,
  QCOW2_FEATURE_NAMES,
  QCOW2_INCOMPAT_COMPRESSION,
  QCOW2_INCOMPAT_CORRUPT,
  QCOW2_INCOMPAT_DATA_FILE,
  QCOW2_INCOMPAT_DIRTY,
  QCOW2_INCOMPAT_EXTL2,
  QCOW2_INCOMPAT_MASK,
  type Qcow2Snapshot,
  QCOW_MAGIC,
  QCOW_MAX_L1_SIZE,
  QCOW_MAX_REFTABLE_SIZE,
  QCOW_MAX_SNAPSHOT_EXTRA_DATA,
  QCOW_MAX_SNAPSHOTS,
  serializeHeader,
  setRefcount as setDiskRefcount,
} from "./format.ts";

/** What a check found and fixed: QEMU's BdrvCheckResult plus the lines it printed. */
export interface Qcow2CheckResult {
  /** Internal errors (I/O failures, unreadable structures): the check could not finish. */
  checkErrors: number;
  corruptions: number;
  leaks: number;
  corruptionsFixed: number;
  leaksFixed: number;
  /** End of the last cluster in use (by the refcounts on disk or by references). */
  imageEndOffset: number;
  /** Clusters of the virtual disk. */
  totalClusters: number;
  /** Guest clusters allocated in the active L1/L2 tables. */
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** The lines QEMU prints on stderr while checking ("Leaked cluster 9 refcount=1 reference=0"). */
  messages: string[];
  /**
   * Set when the check itself failed (QEMU returns an error and qemu-img prints
   * "Check failed: <failure>" instead of the report): the strerror text, e.g. "Invalid argument".
   */
  failure?: string;
  /**
   * A repair found metadata it must not overwrite and marked the image corrupt. QEMU's driver
   * is unusable afterwards, so qemu-img's second (verifying) check fails at once with
   * "Check failed: No medium found" when this pass fixed anything.
   */
  markedCorrupt?: boolean;
}

/** Options of {@link checkQcow2}. */
export interface Qcow2CheckOptions {
  /** Repair leaked clusters only, or every error that can be repaired (qemu-img check -r). */
  repair?: "leaks" | "all";
  /** Called with each message line as it is produced (besides collecting it in the result). */
  log?: (line: string) => void;
}

// ---- constants the checker needs beyond format.ts ----

const QCOW_MAX_SNAPSHOTS_SIZE = 1024 * QCOW_MAX_SNAPSHOTS;
const QCOW2_MAX_BITMAPS = 65535;
const QCOW2_MAX_BITMAP_DIRECTORY_SIZE = 1024 * QCOW2_MAX_BITMAPS;
const BME_MAX_TABLE_SIZE = 0x8000000;
const BME_MAX_GRANULARITY_BITS = 31;
const BME_MIN_GRANULARITY_BITS = 9;
const BME_MAX_NAME_SIZE = 1023;
const BME_RESERVED_FLAGS = 0xfffffffc;
const BME_FLAG_IN_USE = 1;
const BT_DIRTY_TRACKING_BITMAP = 1;
const BME_DIR_ENTRY_SIZE = 24;
const BME_MAX_PHYS_SIZE = 0x20000000;
/** The largest offset + length QEMU's block layer accepts for a request. */
const BDRV_MAX_LENGTH = 2 ** 63 - 2 ** 30;
/** Memory the checker may spend on refcount blocks it has read (all of them, for most images). */
const REFBLOCK_CACHE_BYTES = 256 << 20;
/** Memory it may spend keeping active L2 tables between the reference walk and the COPIED pass. */
const L2_KEEP_BYTES = 128 << 20;
/** Size of the fixed part of a snapshot table entry. */
const SNAPSHOT_HEADER_SIZE = 40;

/** strerror texts of the errno values the checker reports. */
const STRERROR = {
  EIO: "Input/output error",
  EINVAL: "Invalid argument",
  EFBIG: "File too large",
  ENOMEM: "Cannot allocate memory",
  ENOTSUP: "Not supported",
} as const;
type Errno = keyof typeof STRERROR;

/** An error that ends the check (QEMU's negative return from qcow2_co_check). */
class CheckAbort extends Error {
  constructor(readonly errno: Errno) {
    super(STRERROR[errno]);
  }
}

// ---- helpers ----

function hex(v: number | bigint): string {
  return v.toString(16);
}

/** An offset for counting and messages: the number when it is exact, else the bigint. */
function exact(b: bigint): number | bigint {
  return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

/** A string as C's %s prints it: up to the first NUL. */
function cstr(s: string): string {
  const nul = s.indexOf("\0");
  return nul < 0 ? s : s.slice(0, nul);
}

/** printf's %#x: "0x"-prefixed, except for zero. */
function hexAlt(v: number | bigint): string {
  return v ? `0x${v.toString(16)}` : "0";
}

/** Metadata kinds of QEMU's overlap check, in its bit order, with the names it prints. */
const OL = {
  MAIN_HEADER: 1,
  ACTIVE_L1: 2,
  ACTIVE_L2: 4,
  REFCOUNT_TABLE: 8,
  REFCOUNT_BLOCK: 16,
  SNAPSHOT_TABLE: 32,
  INACTIVE_L1: 64,
  INACTIVE_L2: 128,
  BITMAP_DIRECTORY: 256,
} as const;
const OL_NAMES = [
  "qcow2_header",
  "active L1 table",
  "active L2 table",
  "refcount table",
  "refcount block",
  "snapshot table",
  "inactive L1 table",
  "inactive L2 table",
  "bitmap directory",
];

/** A 64-bit big-endian word as PRIx64 prints it. */
function hex64(bytes: Uint8Array, off: number): string {
  return new DataView(bytes.buffer, bytes.byteOffset + off, 8).getBigUint64(0).toString(16);
}

function be32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

/** A big-endian u64 as a number; exact below 2^53, approximate (but huge) beyond. */
function be64(b: Uint8Array, off: number): number {
  return be32(b, off) * 0x100000000 + be32(b, off + 4);
}

function be64n(b: Uint8Array, off: number): bigint {
  return (BigInt(be32(b, off)) << 32n) | BigInt(be32(b, off + 4));
}

function putBe32(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = v >>> 16;
  b[off + 2] = v >>> 8;
  b[off + 3] = v;
}

function putBe64(b: Uint8Array, off: number, v: number): void {
  putBe32(b, off, Math.floor(v / 0x100000000));
  putBe32(b, off + 4, v >>> 0);
}

/** Host offset bits 9..55 of a table entry (exact: at most 47 significant bits). */
function entryOffset(b: Uint8Array, off: number): number {
  return (be32(b, off) & 0x00ffffff) * 0x100000000 + ((be32(b, off + 4) & 0xfffffe00) >>> 0);
}

/** Reads through the protocol layer; bytes past the end of the file read as zeros, as in QEMU. */
class ImageFile {
  /** Told about every write, so that copies of what was overwritten can be dropped. */
  onWrite?: (offset: number, length: number) => void;

  constructor(readonly file: BlockDriver, public length: number) {}

  /** The length as QEMU's bdrv_getlength reports it: whole 512-byte sectors. */
  get sectorLength(): number {
    return Math.ceil(this.length / 512) * 512;
  }

  async read(offset: number, size: number): Promise<Uint8Array> {
    // QEMU refuses requests reaching past BDRV_MAX_LENGTH (2^63 - 2^30) with EIO.
    if (offset > BDRV_MAX_LENGTH - size) throw new CheckAbort("EIO");
    const buf = new Uint8Array(size);
    if (offset < this.length && size > 0) {
      const n = Math.min(size, this.length - offset);
      await this.file.read(offset, buf.subarray(0, n));
    }
    return buf;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.onWrite?.(offset, data.length);
    await this.file.write(offset, data);
    if (offset + data.length > this.length) this.length = offset + data.length;
  }
}

/**
 * The in-memory refcount table: one counter per host cluster, as wide as the image's refcount
 * entries need (QEMU keeps it in the on-disk entry format; plain typed arrays are faster here).
 */
class Imrt {
  #a: Uint16Array | Uint32Array | Float64Array;
  size: number;

  constructor(private readonly order: number, size: number) {
    this.size = size;
    this.#a = this.#alloc(Math.max(size, 1));
  }

  #alloc(n: number): Uint16Array | Uint32Array | Float64Array {
    if (this.order <= 4) return new Uint16Array(n);
    if (this.order === 5) return new Uint32Array(n);
    return new Float64Array(n);
  }

  get(i: number): number {
    return i < this.size ? this.#a[i] : 0;
  }

  /** The first cluster in [from, to) with a nonzero count, or -1. */
  nextNonZero(from: number, to: number): number {
    const a = this.#a;
    const end = Math.min(to, this.size);
    for (let i = from; i < end; i++) if (a[i] !== 0) return i;
    return -1;
  }

  set(i: number, v: number): void {
    this.#a[i] = v;
  }

  /** Adds one to cluster i when it is in the table and below max; false (nothing done) else. */
  inc(i: number, max: number): boolean {
    if (i >= this.size) return false;
    const r = this.#a[i];
    if (r >= max) return false;
    this.#a[i] = r + 1;
    return true;
  }

  /** The counters themselves (valid below {@link size}), for whole-block comparisons. */
  get counts(): Uint16Array | Uint32Array | Float64Array {
    return this.#a;
  }

  /** Grows to n clusters (never shrinks); new entries are zero. */
  resize(n: number): void {
    if (n > this.#a.length) {
      const b = this.#alloc(Math.max(n, Math.ceil(this.#a.length * 1.5)));
      b.set(this.#a);
      this.#a = b;
    }
    if (n > this.size) this.size = n;
  }

  clear(): void {
    this.#a.fill(0);
  }
}

/** The header fields the checker works from, validated as QEMU's qcow2_do_open does. */
interface Geometry {
  version: number;
  clusterBits: number;
  clusterSize: number;
  /** L2 entries per table. */
  l2Size: number;
  /** Bytes per L2 entry (8, or 16 with extended L2). */
  l2EntrySize: number;
  extL2: boolean;
  refcountOrder: number;
  refcountBlockBits: number;
  refcountMax: number;
  virtualSize: number;
  l1TableOffset: number;
  /** The same offsets exactly (they may exceed 2^53 in a damaged header). */
  l1TableOffsetX: bigint;
  l1Size: number;
  refcountTableOffset: number;
  refcountTableOffsetX: bigint;
  /** Entries of the refcount table. */
  refcountTableSize: number;
  incompatibleFeatures: bigint;
  autoclearFeatures: bigint;
  hasDataFile: boolean;
  csizeShift: bigint;
  csizeMask: bigint;
  clusterOffsetMask: bigint;
  crypto?: { offset: number; length: number };
  /** A bitmaps extension without the autoclear bit: ignored, warned about. */
  staleBitmaps?: boolean;
  /** Lines QEMU prints while opening the image. */
  openMessages: string[];
  /** Text QEMU prints at open without a newline: it starts the next line printed. */
  openContinued?: string;
  bitmaps?: { count: number; dirOffset: number; dirSize: number };
}

/** One snapshot table entry, as much as the checker needs. */
/**
 * A snapshot table entry, with its L1 offset exactly as stored (it may exceed 2^53) and the raw
 * bytes a rewrite of the table copies (QEMU rewrites the fields it read, bit for bit).
 */
type SnapshotEntry = Qcow2Snapshot & {
  l1TableOffsetX: bigint;
  rawHeader: Uint8Array;
  rawKnownExtra: Uint8Array;
  idBytes: Uint8Array;
  nameBytes: Uint8Array;
};

/** Bytes up to the first NUL (strlen). */
function cbytes(b: Uint8Array): Uint8Array {
  const nul = b.indexOf(0);
  return nul < 0 ? b : b.subarray(0, nul);
}

/**
 * qcow2_write_snapshots' table layout: entries 8-aligned, at least 24 bytes of extra data
 * (vm_state_size_large, disk_size, icount), names cut at their first NUL as C strings are.
 */
function serializeSnapshots(snaps: readonly SnapshotEntry[], virtualSize: number): Uint8Array {
  let size = 0;
  for (const sn of snaps) {
    size = Math.ceil(size / 8) * 8;
    size += SNAPSHOT_HEADER_SIZE + Math.max(24, sn.extraDataSize) + cbytes(sn.idBytes).length +
      cbytes(sn.nameBytes).length;
  }
  const buf = new Uint8Array(size);
  const dv = new DataView(buf.buffer);
  let pos = 0;
  for (const sn of snaps) {
    pos = Math.ceil(pos / 8) * 8;
    const id = cbytes(sn.idBytes);
    const name = cbytes(sn.nameBytes);
    const known = sn.rawKnownExtra;
    const stored = known.length;
    buf.set(sn.rawHeader, pos);
    const vmState = stored >= 8 ? be64n(known, 0) : BigInt(be32(sn.rawHeader, 32));
    dv.setUint16(pos + 12, id.length);
    dv.setUint16(pos + 14, name.length);
    dv.setUint32(pos + 32, vmState <= 0xffffffffn ? Number(vmState) : 0);
    dv.setUint32(pos + 36, Math.max(24, sn.extraDataSize));
    pos += SNAPSHOT_HEADER_SIZE;
    dv.setBigUint64(pos, vmState);
    dv.setBigUint64(pos + 8, stored >= 16 ? be64n(known, 8) : BigInt(virtualSize));
    dv.setBigUint64(pos + 16, stored >= 24 ? be64n(known, 16) : 0xffffffffffffffffn);
    pos += 24;
    if (sn.extraDataSize > 24) {
      buf.set(sn.extraUnknown.subarray(0, sn.extraDataSize - 24), pos);
      pos += sn.extraDataSize - 24;
    }
    buf.set(id, pos);
    pos += id.length;
    buf.set(name, pos);
    pos += name.length;
  }
  return buf;
}

function open(msg: string, code: "EINVAL" | "ENOTSUP" | "EFBIG" = "EINVAL"): BlockError {
  return new BlockError(code, msg);
}

/** Reads and validates the header the way qcow2_do_open does in check mode. */
async function readGeometry(img: ImageFile, checkMode = true): Promise<Geometry> {
  const h = await img.read(0, 112);
  if (be32(h, 0) !== QCOW_MAGIC) throw open("Image is not in qcow2 format");
  const version = be32(h, 4);
  if (version < 2 || version > 3) throw open(`Unsupported qcow2 version ${version}`, "ENOTSUP");
  const clusterBits = be32(h, 20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw open(`Unsupported cluster size: 2^${clusterBits}`);
  }
  const clusterSize = 2 ** clusterBits;
  let incompat = 0n;
  let autoclear = 0n;
  let refcountOrder = 4;
  let headerLength = 72;
  if (version === 3) {
    incompat = be64n(h, 72);
    autoclear = be64n(h, 88);
    refcountOrder = be32(h, 96);
    headerLength = be32(h, 100);
    if (headerLength < 104) throw open("qcow2 header too short");
  }
  if (headerLength > clusterSize) throw open("qcow2 header exceeds cluster size");
  const backingFileOffset = be64n(h, 8);
  if (backingFileOffset > BigInt(clusterSize)) throw open("Invalid backing file offset");
  const compressionType = headerLength > 104 ? h[104] : 0;
  if (compressionType > 1) {
    throw open(`qcow2: unknown compression type: ${compressionType}`, "ENOTSUP");
  }
  if (compressionType === 0 && (incompat & QCOW2_INCOMPAT_COMPRESSION)) {
    throw open("qcow2: Compression type incompatible feature bit must not be set");
  }
  if (compressionType !== 0 && !(incompat & QCOW2_INCOMPAT_COMPRESSION)) {
    throw open("qcow2: Compression type incompatible feature bit must be set");
  }
  if (incompat & ~QCOW2_INCOMPAT_MASK) {
    throw open(
      `Unsupported qcow2 feature(s): Unknown incompatible feature: ${
        hex(incompat & ~QCOW2_INCOMPAT_MASK)
      }`,
      "ENOTSUP",
    );
  }
  if (refcountOrder > 6) {
    throw open("Reference count entry width too large; may not exceed 64 bits");
  }
  const extL2 = (incompat & QCOW2_INCOMPAT_EXTL2) !== 0n;
  if (extL2 && clusterSize / 32 < 512) {
    throw open(`Unsupported subcluster size: ${clusterSize / 32}`);
  }
  const l2EntrySize = extL2 ? 16 : 8;
  const l2Size = clusterSize / l2EntrySize;
  const l2Bits = Math.log2(l2Size);
  const refcountTableClusters = be32(h, 56);
  const refcountTableOffsetX = be64n(h, 48);
  const refcountTableOffset = Number(refcountTableOffsetX);
  if (refcountTableClusters === 0 && !checkMode) {
    throw open("Image does not contain a reference count table");
  }
  validateTable(
    refcountTableOffsetX,
    refcountTableClusters,
    clusterSize,
    QCOW_MAX_REFTABLE_SIZE,
    clusterSize,
    "Reference count table",
  );
  if (!checkMode) {
    // Outside check mode QEMU reads the snapshot table when opening.
    validateTable(
      be64n(h, 64),
      be32(h, 60),
      40,
      40 * QCOW_MAX_SNAPSHOTS,
      clusterSize,
      "Snapshot table",
    );
  }
  const l1Size = be32(h, 36);
  const l1TableOffsetX = be64n(h, 40);
  const l1TableOffset = Number(l1TableOffsetX);
  validateTable(l1TableOffsetX, l1Size, 8, QCOW_MAX_L1_SIZE, clusterSize, "Active L1 table");
  const size = be64n(h, 24);
  const l1Needed = (size + (1n << BigInt(clusterBits + l2Bits)) - 1n) >>
    BigInt(clusterBits + l2Bits);
  if (l1Needed > 0x7fffffffn) throw open("Image is too big", "EFBIG");
  if (BigInt(l1Size) < l1Needed) throw open("L1 table is too small");
  const cryptMethod = be32(h, 32);
  if (cryptMethod > 2) throw open(`Unsupported encryption method ${cryptMethod | 0}`);
  if (cryptMethod === 1) throw open("Parameter 'encrypt.key-secret' is required for cipher");
  const csizeShift = BigInt(62 - (clusterBits - 8));
  const geo: Geometry = {
    version,
    clusterBits,
    clusterSize,
    l2Size,
    l2EntrySize,
    extL2,
    refcountOrder,
    refcountBlockBits: clusterBits + 3 - refcountOrder,
    refcountMax: refcountOrder >= 6 ? Number.MAX_VALUE : 2 ** (1 << refcountOrder) - 1,
    virtualSize: Number(size / 512n) * 512,
    l1TableOffset,
    l1TableOffsetX,
    l1Size,
    refcountTableOffset,
    refcountTableOffsetX,
    refcountTableSize: refcountTableClusters * (clusterSize / 8),
    incompatibleFeatures: incompat,
    autoclearFeatures: autoclear,
    openMessages: [],
    hasDataFile: (incompat & QCOW2_INCOMPAT_DATA_FILE) !== 0n,
    csizeShift,
    csizeMask: (1n << BigInt(clusterBits - 8)) - 1n,
    clusterOffsetMask: (1n << csizeShift) - 1n,
  };
  // Header extensions (crypto header and bitmap directory are counted as metadata).
  const extEnd = backingFileOffset ? Number(backingFileOffset) : clusterSize;
  const first = await img.read(0, clusterSize);
  const exts: { type: number; data: Uint8Array }[] = [];
  for (let pos = headerLength; pos < extEnd;) {
    const type = be32(first, pos);
    const len = be32(first, pos + 4);
    pos += 8;
    if (pos > extEnd || len > extEnd - pos) throw open("Header extension too large");
    if (type === 0) break;
    exts.push({ type, data: first.slice(pos, pos + len) });
    pos += (len + 7) & ~7;
  }
  for (const ext of exts) {
    if (ext.type === QCOW2_EXT_MAGIC_CRYPTO_HEADER) {
      if (ext.data.length !== 16) {
        throw open(`CRYPTO header extension size ${ext.data.length}, but expected size 16`);
      }
      geo.crypto = { offset: be64(ext.data, 0), length: be64(ext.data, 8) };
    } else if (ext.type === QCOW2_EXT_MAGIC_BITMAPS) {
      if (ext.data.length !== 24) throw open("bitmaps_ext: Invalid extension length");
      if (!(autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
        // Stale: a program without bitmap support wrote the image. QEMU warns and ignores them.
        geo.staleBitmaps = true;
        geo.openMessages.push(
          version < 3
            ? "qemu-img: warning: This qcow2 v2 image contains bitmaps, but they may have been modified by a program without persistent bitmap support; so now they must all be considered inconsistent"
            : "qemu-img: warning: a program lacking bitmap support modified this file, so all bitmaps are now considered inconsistent",
        );
        // error_printf without a newline: the next line printed continues this one.
        geo.openContinued =
          "Some clusters may be leaked, run 'qemu-img check -r' on the image file to fix.";
        continue;
      }
      if (be32(ext.data, 4) !== 0) throw open("bitmaps_ext: Reserved field is not zero");
      const count = be32(ext.data, 0);
      const dirSize = be64(ext.data, 8);
      const dirOffset = be64(ext.data, 16);
      if (count > QCOW2_MAX_BITMAPS) {
        throw open(
          `bitmaps_ext: Image has ${count} bitmaps, exceeding the QEMU supported maximum of ${QCOW2_MAX_BITMAPS}`,
        );
      }
      if (count === 0) throw open("found bitmaps extension with zero bitmaps");
      if (be64n(ext.data, 16) % BigInt(clusterSize)) {
        throw open("bitmaps_ext: invalid bitmap directory offset");
      }
      if (dirSize > QCOW2_MAX_BITMAP_DIRECTORY_SIZE) {
        throw open(
          `bitmaps_ext: bitmap directory size (${
            be64n(ext.data, 8)
          }) exceeds the maximum supported size (${QCOW2_MAX_BITMAP_DIRECTORY_SIZE})`,
        );
      }
      geo.bitmaps = { count, dirOffset, dirSize };
    }
  }
  if (geo.hasDataFile) {
    if (!exts.some((e) => e.type === QCOW2_EXT_MAGIC_DATA_FILE)) {
      throw open("'data-file' is required for this image");
    }
    throw open("qcow2 images with an external data file are not supported", "ENOTSUP");
  }
  if (autoclear & QCOW2_AUTOCLEAR_DATA_FILE_RAW) throw open("data-file-raw requires a data file");
  if (cryptMethod === 2) {
    if (!geo.crypto) throw open("Missing CRYPTO header for crypt method 2");
    throw open("Parameter 'encrypt.key-secret' is required for cipher");
  }
  if (geo.bitmaps) await validateBitmaps(img, geo);
  if (backingFileOffset) {
    const len = be32(h, 16);
    if (len > Math.min(1023, clusterSize - Number(backingFileOffset)) || len >= 4096) {
      throw open("Backing file name too long");
    }
  }
  return geo;
}

/**
 * Validates a qcow2 header the way QEMU's qcow2_do_open does before it reads any table, and
 * throws a {@link BlockError} with QEMU's message for the first problem found. Drivers call it
 * before their own parsing so that bad images are refused in QEMU's words.
 */
export async function validateQcow2Header(file: BlockDriver): Promise<void> {
  await readGeometry(new ImageFile(file, await file.length()), false);
}

/** One bitmap directory entry, as far as the checker needs it. */
interface BitmapEntry {
  name: string;
  tableOffset: number;
  tableSize: number;
  flags: number;
  granularity: number;
}

/** A bitmap directory QEMU refuses (bitmap_list_load's message). */
class BitmapListError extends Error {}

/** bitmap_list_load: reads and validates the bitmap directory. */
async function loadBitmapList(img: ImageFile, g: Geometry): Promise<BitmapEntry[]> {
  const bm = g.bitmaps!;
  const cs = g.clusterSize;
  if (bm.dirSize === 0) throw new BitmapListError("Requested bitmap directory size is zero");
  let dir: Uint8Array;
  try {
    dir = await img.read(bm.dirOffset, bm.dirSize);
  } catch (e) {
    if (!(e instanceof CheckAbort)) throw e;
    throw new BitmapListError(`Failed to read bitmap directory: ${e.message}`);
  }
  const out: BitmapEntry[] = [];
  const broken = () => new BitmapListError("Broken bitmap directory");
  let pos = 0;
  while (pos < bm.dirSize) {
    if (pos + BME_DIR_ENTRY_SIZE > bm.dirSize) throw broken();
    if (out.length + 1 > bm.count) {
      throw new BitmapListError("More bitmaps found than specified in header extension");
    }
    const tableOffsetX = be64n(dir, pos);
    const tableOffset = Number(tableOffsetX);
    const tableSize = be32(dir, pos + 8);
    const flags = be32(dir, pos + 12);
    const type = dir[pos + 16];
    const granularity = dir[pos + 17];
    const nameSize = (dir[pos + 18] << 8) | dir[pos + 19];
    const extra = be32(dir, pos + 20);
    // calc_dir_entry_size computes in a C int: a huge extra_data_size wraps around.
    const entrySize = (((BME_DIR_ENTRY_SIZE + nameSize + extra) | 0) + 7) & ~7;
    const next = pos + entrySize;
    if (next > bm.dirSize) throw broken();
    if (extra !== 0) throw new BitmapListError("Bitmap extra data is not supported");
    const nameBytes = dir.subarray(pos + BME_DIR_ENTRY_SIZE, pos + BME_DIR_ENTRY_SIZE + nameSize);
    const name = new TextDecoder().decode(nameBytes);
    const phys = tableSize * cs;
    if (
      tableSize === 0 || tableOffsetX === 0n || tableOffsetX % BigInt(cs) ||
      tableSize > BME_MAX_TABLE_SIZE ||
      granularity > BME_MAX_GRANULARITY_BITS || granularity < BME_MIN_GRANULARITY_BITS ||
      (flags & BME_RESERVED_FLAGS) || nameSize > BME_MAX_NAME_SIZE ||
      type !== BT_DIRTY_TRACKING_BITMAP || phys > BME_MAX_PHYS_SIZE ||
      (!(flags & BME_FLAG_IN_USE) && g.virtualSize > phys * 8 * 2 ** granularity)
    ) {
      throw new BitmapListError(`Bitmap '${cstr(name)}' doesn't satisfy the constraints`);
    }
    out.push({ name, tableOffset, tableSize, flags, granularity });
    pos = next;
  }
  if (out.length !== bm.count) {
    throw new BitmapListError("Less bitmaps found than specified in header extension");
  }
  return out;
}

/** check_table_entry: a bitmap table entry's reserved bits and alignment. */
function bitmapTableEntryValid(table: Uint8Array, p: number, cs: number): boolean {
  const hi = be32(table, p);
  const lo = be32(table, p + 4);
  if ((hi & 0xff000000) || (lo & 0x1fe)) return false;
  const off = entryOffset(table, p);
  return !off || (!(lo & 1) && off % cs === 0);
}

/** qcow2_load_dirty_bitmaps at open: the directory and every bitmap table must load. */
async function validateBitmaps(img: ImageFile, g: Geometry): Promise<void> {
  let list: BitmapEntry[];
  try {
    list = await loadBitmapList(img, g);
  } catch (e) {
    if (e instanceof BitmapListError) throw open(e.message);
    throw e;
  }
  for (const b of list) {
    const fail = (why: string) =>
      open(`Could not read bitmap_table table from image for bitmap '${cstr(b.name)}': ${why}`);
    let table: Uint8Array;
    try {
      table = await img.read(b.tableOffset, b.tableSize * 8);
    } catch (e) {
      if (e instanceof CheckAbort) throw fail(e.message);
      throw e;
    }
    for (let i = 0; i < b.tableSize; i++) {
      if (!bitmapTableEntryValid(table, i * 8, g.clusterSize)) throw fail(STRERROR.EINVAL);
    }
    // load_bitmap_data: the table must cover the serialized bitmap exactly (64-bit words).
    const bits = Math.ceil(g.virtualSize / 2 ** b.granularity);
    const bytes = Math.ceil(bits / 64) * 8;
    if (Math.ceil(bytes / g.clusterSize) !== b.tableSize) {
      throw open(`Could not read bitmap '${cstr(b.name)}' from image: ${STRERROR.EINVAL}`);
    }
  }
}

/** qcow2_validate_table: a table's size bound and its offset's alignment. */
function validateTable(
  offset: bigint,
  entries: number,
  entryLen: number,
  maxBytes: number,
  clusterSize: number,
  name: string,
): void {
  if (entries > Math.floor(maxBytes / entryLen)) throw open(`${name} too large`, "EFBIG");
  if (
    offset + BigInt(entries * entryLen) > (1n << 63n) - 1n || offset % BigInt(clusterSize) !== 0n
  ) {
    throw open(`${name} offset invalid`);
  }
}

// ---- the checker ----

class Qcow2Checker {
  readonly res: Qcow2CheckResult = {
    checkErrors: 0,
    corruptions: 0,
    leaks: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
    imageEndOffset: 0,
    totalClusters: 0,
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
    messages: [],
  };
  snapshots: SnapshotEntry[] = [];
  /** What the snapshot table checks found (QEMU keeps these apart from the refcount results). */
  snapRes = { corruptions: 0, corruptionsFixed: 0, checkErrors: 0 };
  snapshotsOffset = 0;
  snapshotsOffsetX = 0n;
  snapshotsSize = 0;
  /** The refcount table as loaded (entries as bigints: offsets may use all 55 bits). */
  reftable: bigint[] = [];
  /** Entries of {@link reftable} up to the last non-empty one (the walks stop there). */
  #reftableUsed = 0;
  /** The refcount table's block offsets (REFT_OFFSET_MASK applied) as numbers, for fast lookups. */
  #rbOffsets: number[] = [];
  #rbOffsetsX: bigint[] = [];
  /** Active L2 tables read by the reference walk, by cluster, reused by the COPIED pass. */
  #keptL2 = new Map<number, Uint8Array>();
  l1: Uint8Array = new Uint8Array(0);
  #refblocks = new Map<number, Uint8Array>();
  #signaledCorruption = false;
  #markedCorrupt = false;
  #dirtyRefblocks = new Set<number>();
  /** Whether the reference walk may repair (false while recounting after a rebuild). */
  walkFixes: boolean;

  constructor(
    readonly img: ImageFile,
    readonly g: Geometry,
    readonly fixLeaks: boolean,
    readonly fixErrors: boolean,
    readonly log?: (line: string) => void,
  ) {
    this.walkFixes = fixErrors;
    for (const m of g.openMessages) this.say(m);
    this.#continued = g.openContinued;
    img.onWrite = (offset, length) => {
      if (!this.#keptL2.size) return;
      const cs = this.g.clusterSize;
      for (let c = Math.floor(offset / cs); c * cs < offset + length; c++) this.#keptL2.delete(c);
    };
  }

  say(line: string): void {
    if (this.#continued !== undefined) {
      line = this.#continued + line;
      this.#continued = undefined;
    }
    this.res.messages.push(line);
    this.log?.(line);
  }

  /** Text printed without a newline: the next line continues it. */
  #continued: string | undefined;

  /** Ends the output: a pending unterminated text becomes the last line. */
  endOutput(): void {
    if (this.#continued !== undefined) {
      const t = this.#continued;
      this.#continued = undefined;
      this.res.messages.push(t);
      this.log?.(t);
    }
  }

  clusters(bytes: number): number {
    return Math.ceil(bytes / this.g.clusterSize);
  }

  /** Reads the active L1 table and the refcount table, failing as QEMU's open does. */
  async load(): Promise<void> {
    const g = this.g;
    try {
      this.l1 = await this.img.read(g.l1TableOffset, g.l1Size * 8);
    } catch (e) {
      if (e instanceof CheckAbort) throw open(`Could not read L1 table: ${e.message}`);
      throw e;
    }
    try {
      await this.loadReftable();
    } catch (e) {
      if (e instanceof CheckAbort) {
        throw open(`Could not initialize refcount handling: ${e.message}`);
      }
      throw e;
    }
  }

  async loadReftable(): Promise<void> {
    const n = this.g.refcountTableSize;
    const bytes = await this.img.read(this.g.refcountTableOffset, n * 8);
    // Most entries of a refcount table are empty: no BigInt for those, and one pass (this runs
    // cold, at start-up, over a whole cluster of entries).
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, n * 2);
    const table = new Array<bigint>(n).fill(0n);
    const blocksX = new Array<bigint>(n).fill(0n);
    const blocks = new Array<number>(n).fill(0);
    let used = n;
    while (used > 0 && !(words[2 * used - 2] | words[2 * used - 1])) used--;
    this.#reftableUsed = used;
    for (let i = 0; i < used; i++) {
      if (!(words[2 * i] | words[2 * i + 1])) continue;
      const e = be64n(bytes, i * 8);
      table[i] = e;
      blocksX[i] = e & 0xfffffffffffffe00n;
      blocks[i] = Number(blocksX[i]);
    }
    this.reftable = table;
    this.#rbOffsetsX = blocksX;
    this.#rbOffsets = blocks;
    this.#refblocks.clear();
  }

  // ---- on-disk refcounts ----

  #indexReftable(): void {
    let used = this.reftable.length;
    while (used > 0 && this.reftable[used - 1] === 0n) used--;
    this.#reftableUsed = used;
    this.#rbOffsetsX = this.reftable.map((e) => e === 0n ? 0n : e & 0xfffffffffffffe00n);
    this.#rbOffsets = this.#rbOffsetsX.map((e) => e === 0n ? 0 : Number(e));
  }

  /** The on-disk refcount when its refblock is already in memory (the fast path), else undefined. */
  cachedRefcount(cluster: number): number | undefined {
    const bits = this.g.refcountBlockBits;
    const idx = Math.floor(cluster / 2 ** bits);
    if (idx >= this.#rbOffsets.length) return 0;
    const off = this.#rbOffsets[idx];
    if (!off) return 0;
    const block = this.#refblocks.get(off);
    if (!block) return undefined;
    return getDiskRefcount(block, cluster - idx * 2 ** bits, this.g.refcountOrder);
  }

  /** qcow2_get_refcount: the refcount on disk, or a CheckAbort("EIO") for a broken refblock. */
  async getRefcount(cluster: number): Promise<number> {
    const idx = Math.floor(cluster / 2 ** this.g.refcountBlockBits);
    if (idx >= this.#rbOffsets.length) return 0;
    const off = this.#rbOffsets[idx];
    if (!off) return 0;
    const offX = this.#rbOffsetsX[idx];
    if (offX % BigInt(this.g.clusterSize)) {
      await this.signalCorruption(
        `Refblock offset ${hexAlt(offX)} unaligned (reftable index: ${hexAlt(idx)})`,
      );
      throw new CheckAbort("EIO");
    }
    const block = await this.refblock(off);
    return getDiskRefcount(block, cluster % 2 ** this.g.refcountBlockBits, this.g.refcountOrder);
  }

  async refblock(off: number): Promise<Uint8Array> {
    let b = this.#refblocks.get(off);
    if (!b) {
      if (this.#refblocks.size * this.g.clusterSize >= REFBLOCK_CACHE_BYTES) {
        await this.flushRefblocksQuietly();
        this.#refblocks.clear();
        this.#dirtyRefblocks.clear();
      }
      b = await this.img.read(off, this.g.clusterSize);
      this.#refblocks.set(off, b);
    }
    return b;
  }

  /** Sets the on-disk refcount of a cluster whose refblock exists (update_refcount). */
  async setRefcount(cluster: number, value: number): Promise<void> {
    const idx = Math.floor(cluster / 2 ** this.g.refcountBlockBits);
    const off = Number(this.reftable[idx] & 0xfffffffffffffe00n);
    const block = await this.refblock(off);
    const i = cluster % 2 ** this.g.refcountBlockBits;
    setDiskRefcount(block, i, this.g.refcountOrder, value);
    this.#dirtyRefblocks.add(off);
  }

  /**
   * Writes the refcount blocks changed by repairs. Like QEMU's refblock cache they are written
   * late: at the end of the check, or before a rebuild, and never once the image has been
   * marked corrupt.
   */
  async flushRefblocks(): Promise<void> {
    if (this.#markedCorrupt) return;
    for (const off of this.#dirtyRefblocks) {
      const block = this.#refblocks.get(off);
      if (!block) continue;
      // QEMU's cache writes refblocks through the overlap check too.
      if (!(await this.preWriteCheck(OL.REFCOUNT_BLOCK, off, this.g.clusterSize))) {
        throw new CheckAbort("EIO");
      }
      await this.img.write(off, block);
    }
    this.#dirtyRefblocks.clear();
  }

  /** Flushes the refblocks where QEMU ignores a failure (it has been reported already). */
  async flushRefblocksQuietly(): Promise<void> {
    try {
      await this.flushRefblocks();
    } catch (e) {
      if (!(e instanceof CheckAbort)) throw e;
    }
  }

  /**
   * qcow2_signal_corruption: reports a corruption once. On a writable image it is fatal: the
   * corrupt bit is set and nothing more is written.
   */
  async signalCorruption(msg: string): Promise<void> {
    const fatal = !this.img.file.readOnly;
    if (this.#signaledCorruption && (!fatal || this.#markedCorrupt)) return;
    if (fatal) {
      this.say(
        `qcow2: Marking image as corrupt: ${msg}; further corruption events will be suppressed`,
      );
      this.#markedCorrupt = true;
      this.res.markedCorrupt = true;
      if (this.g.version >= 3) {
        const bits = this.g.incompatibleFeatures | QCOW2_INCOMPAT_CORRUPT;
        await this.rewriteHeader(bits);
        this.g.incompatibleFeatures = bits;
      }
    } else {
      this.say(
        `qcow2: Image is corrupt: ${msg}; further non-fatal corruption events will be suppressed`,
      );
    }
    this.#signaledCorruption = true;
  }

  /**
   * qcow2_update_header, as qcow2_mark_corrupt uses it: the whole header cluster is written
   * again from what was parsed (extensions in QEMU's order, the feature name table added,
   * everything else in the cluster zeroed). Headers too odd to parse get only the new bits.
   */
  async rewriteHeader(incompat: bigint): Promise<void> {
    const g = this.g;
    let bytes: Uint8Array | undefined;
    try {
      const h = parseHeader(await this.img.read(0, g.clusterSize));
      h.incompatibleFeatures = incompat;
      h.autoclearFeatures = g.autoclearFeatures;
      h.headerLength = Math.max(112, h.headerLength);
      const order = [
        QCOW2_EXT_MAGIC_BACKING_FORMAT,
        QCOW2_EXT_MAGIC_DATA_FILE,
        QCOW2_EXT_MAGIC_CRYPTO_HEADER,
        QCOW2_EXT_MAGIC_FEATURE_TABLE,
        QCOW2_EXT_MAGIC_BITMAPS,
      ];
      const kind = (t: number) => order.indexOf(t) >>> 0;
      const exts = h.extensions.filter((e) =>
        e.type !== QCOW2_EXT_MAGIC_FEATURE_TABLE &&
        (e.type !== QCOW2_EXT_MAGIC_BITMAPS || g.bitmaps)
      );
      // QEMU 7.2 leaves the feature name table out of clusters of 4 KiB and less (room).
      if (g.version >= 3 && g.clusterSize > 4096) {
        exts.push({
          type: QCOW2_EXT_MAGIC_FEATURE_TABLE,
          data: encodeFeatureTable(QCOW2_FEATURE_NAMES),
        });
      }
      h.extensions = exts.map((e, i) => ({ e, i }))
        .sort((a, b) => kind(a.e.type) - kind(b.e.type) || a.i - b.i)
        .map((x) => x.e);
      bytes = serializeHeader(h);
    } catch {
      bytes = undefined;
    }
    if (bytes) {
      await this.img.write(0, bytes);
    } else if (g.version >= 3) {
      const b = new Uint8Array(24);
      const dv = new DataView(b.buffer);
      dv.setBigUint64(0, incompat);
      dv.setBigUint64(8, be64n(await this.img.read(80, 8), 0));
      dv.setBigUint64(16, g.autoclearFeatures);
      await this.img.write(72, b);
    }
    await this.img.file.flush();
  }

  /**
   * qcow2_check_metadata_overlap with QEMU's default ("cached") template: which metadata a
   * write of [offset, offset+size) would hit, ignoring the kinds in `ign`; 0 when none.
   */
  metadataOverlap(ign: number, offset: number, size: number): number {
    const g = this.g;
    const cs = g.clusterSize;
    if (!size) return 0;
    const chk = ~ign;
    if ((chk & OL.MAIN_HEADER) && offset < cs) return OL.MAIN_HEADER;
    const start = Math.floor(offset / cs) * cs;
    const len = Math.ceil((offset - start + size) / cs) * cs;
    const hits = (o: number, l: number) => l > 0 && o < start + len && start < o + l;
    if ((chk & OL.ACTIVE_L1) && g.l1Size && hits(g.l1TableOffset, g.l1Size * 8)) {
      return OL.ACTIVE_L1;
    }
    if ((chk & OL.REFCOUNT_TABLE) && hits(g.refcountTableOffset, g.refcountTableSize * 8)) {
      return OL.REFCOUNT_TABLE;
    }
    if ((chk & OL.SNAPSHOT_TABLE) && hits(this.snapshotsOffset, this.snapshotsSize)) {
      return OL.SNAPSHOT_TABLE;
    }
    if (chk & OL.INACTIVE_L1) {
      for (const sn of this.snapshots) {
        if (sn.l1Size && hits(sn.l1TableOffset, sn.l1Size * 8)) return OL.INACTIVE_L1;
      }
    }
    if (chk & OL.ACTIVE_L2) {
      for (let i = 0; i < g.l1Size; i++) {
        const o = entryOffset(this.l1, i * 8);
        if (o && hits(o, cs)) return OL.ACTIVE_L2;
      }
    }
    if (chk & OL.REFCOUNT_BLOCK) {
      for (const o of this.#rbOffsets) {
        if (o && hits(o, cs)) return OL.REFCOUNT_BLOCK;
      }
    }
    if ((chk & OL.BITMAP_DIRECTORY) && g.bitmaps && hits(g.bitmaps.dirOffset, g.bitmaps.dirSize)) {
      return OL.BITMAP_DIRECTORY;
    }
    return 0;
  }

  /** qcow2_pre_write_overlap_check: false (after signalling the corruption) when the write must not happen. */
  async preWriteCheck(ign: number, offset: number, size: number): Promise<boolean> {
    const ol = this.metadataOverlap(ign, offset, size);
    if (!ol) return true;
    await this.signalCorruption(
      `Preventing invalid write on metadata (overlaps with ${OL_NAMES[Math.log2(ol)]})`,
    );
    return false;
  }

  // ---- building the in-memory refcount table ----

  /** qcow2_inc_refcounts_imrt: counts one reference to every cluster of a byte range. */
  incRefcounts(imrt: Imrt, offset: number | bigint, size: number): void {
    if (size <= 0) return;
    const cs = this.g.clusterSize;
    const beyond = typeof offset === "number" && offset < 2 ** 52
      ? offset + size - this.img.sectorLength >= cs
      : BigInt(offset) + BigInt(size) - BigInt(this.img.sectorLength) >= BigInt(cs);
    if (beyond) {
      this.say(
        `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${
          hex(offset)
        } size 0x${hex(size)}`,
      );
      this.res.corruptions++;
      return;
    }
    const off = Number(offset);
    const first = Math.floor(off / cs);
    const last = Math.floor((off + size - 1) / cs);
    for (let k = first; k <= last; k++) {
      if (k >= imrt.size) imrt.resize(k + 1);
      const r = imrt.get(k);
      if (r >= this.g.refcountMax) {
        this.say(`ERROR: overflow cluster offset=0x${hex(k * cs)}`);
        this.say(
          "Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing",
        );
        this.res.corruptions++;
        continue;
      }
      imrt.set(k, r + 1);
    }
  }

  async checkL1(
    imrt: Imrt,
    l1Offset: bigint,
    l1Size: number,
    fragInfo: boolean,
    active: boolean,
  ): Promise<void> {
    if (!l1Size) return;
    this.incRefcounts(imrt, exact(l1Offset), l1Size * 8);
    const l1 = await this.ioChecked(
      "ERROR: I/O error in check_refcounts_l1",
      () => this.img.read(Number(l1Offset), l1Size * 8),
    );
    for (let i = 0; i < l1Size; i++) {
      const p = i * 8;
      const hi = be32(l1, p);
      const lo = be32(l1, p + 4);
      if (!hi && !lo) continue;
      if ((hi & 0x7f000000) || (lo & 0x1ff)) {
        this.say(`ERROR found L1 entry with reserved bits set: ${hex64(l1, p)}`);
        this.res.corruptions++;
      }
      const l2Offset = entryOffset(l1, p);
      this.incRefcounts(imrt, l2Offset, this.g.clusterSize);
      if (l2Offset % this.g.clusterSize) {
        this.say(
          `ERROR l2_offset=${hex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted`,
        );
        this.res.corruptions++;
      }
      await this.checkL2(imrt, l2Offset, fragInfo, active);
    }
  }

  async checkL2(imrt: Imrt, l2Offset: number, fragInfo: boolean, active: boolean): Promise<void> {
    const g = this.g;
    const cs = g.clusterSize;
    const l2 = await this.ioChecked(
      "ERROR: I/O error in check_refcounts_l2",
      () => this.img.read(l2Offset, cs),
    );
    if (active && l2Offset % cs === 0 && (this.#keptL2.size + 1) * cs <= L2_KEEP_BYTES) {
      this.#keptL2.set(l2Offset / cs, l2);
    }
    let nextContiguous = 0;
    const dv = new DataView(l2.buffer, l2.byteOffset, l2.byteLength);
    // Clusters below this end are counted without the range check of incRefcounts.
    const fileEnd = this.img.sectorLength;
    const max = g.refcountMax;
    // Empty entries are found with plain element loads (cheaper than DataView calls, and
    // endianness does not matter for a zero test).
    const words = new Uint32Array(l2.buffer, l2.byteOffset, l2.byteLength >> 2);
    for (let i = 0; i < g.l2Size; i++) {
      const p = i * g.l2EntrySize;
      if (!g.extL2 && !(words[p >> 2] | words[(p >> 2) + 1])) continue;
      const hi = dv.getUint32(p);
      const lo = dv.getUint32(p + 4);
      if (!g.extL2) {
        // The common entries, in few calls: this loop runs cold over every L2 entry.
        if (hi === 0 && (lo & ~1) === 0) continue; // unallocated, or zero without a cluster
        if ((hi & 0x7f000000) === 0 && (lo & (cs - 1) & ~1) === 0) {
          // A normal cluster (or preallocated zero cluster), aligned, no reserved bits set.
          const offset = (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
          if (offset === 0) continue; // no cluster (a stray COPIED flag is checked later)
          if (fragInfo) {
            this.res.allocatedClusters++;
            if (nextContiguous && offset !== nextContiguous) this.res.fragmentedClusters++;
            nextContiguous = offset + cs;
          }
          if (offset >= fileEnd || !imrt.inc(offset / cs, max)) {
            this.incRefcounts(imrt, offset, cs);
          }
          continue;
        }
      }
      const bmHi = g.extL2 ? be32(l2, p + 8) : 0;
      const bmLo = g.extL2 ? be32(l2, p + 12) : 0;
      const compressed = (hi & 0x40000000) !== 0;
      const offset = entryOffset(l2, p);
      if (!compressed && ((hi & 0x3f000000) || (lo & 0x1fe))) {
        this.say(`ERROR found l2 entry with reserved bits set: ${hex64(l2, p)}`);
        this.res.corruptions++;
      }
      if (compressed) {
        let entry = be64n(l2, p);
        if (entry & (1n << 63n)) {
          this.say(
            `ERROR: coffset=0x${
              hex(entry & g.clusterOffsetMask)
            }: copied flag must never be set for compressed clusters`,
          );
          entry &= ~(1n << 63n);
          this.res.corruptions++;
        }
        if (bmHi || bmLo) {
          this.say(
            `ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap, entry=0x${
              hex(entry)
            }`,
          );
          this.res.corruptions++;
          continue;
        }
        const coffset = entry & g.clusterOffsetMask;
        const sectors = Number((entry >> g.csizeShift) & g.csizeMask) + 1;
        const csize = sectors * 512 - Number(coffset & 511n);
        this.incRefcounts(
          imrt,
          coffset <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(coffset) : coffset,
          csize,
        );
        if (fragInfo) {
          this.res.allocatedClusters++;
          this.res.compressedClusters++;
          this.res.fragmentedClusters++;
        }
        continue;
      }
      const zeroFlag = !g.extL2 && (lo & 1) !== 0;
      if (offset === 0) {
        // Unallocated, or a plain zero cluster.
        if (!zeroFlag && bmLo) {
          this.res.corruptions++;
          this.say("ERROR: Unallocated cluster has non-zero subcluster allocation map");
        }
        continue;
      }
      // A normal cluster, or a preallocated zero cluster.
      if (bmHi & bmLo) {
        this.res.corruptions++;
        this.say(
          `ERROR offset=${
            hex(offset)
          }: Allocated cluster has corrupted subcluster allocation bitmap`,
        );
      }
      if (offset % cs) {
        this.res.corruptions++;
        const containsData = g.extL2 ? bmLo !== 0 : !zeroFlag;
        if (!containsData) {
          this.say(
            `${this.walkFixes ? "Repairing" : "ERROR"} offset=${
              hex(offset)
            }: Preallocated cluster is not properly aligned; L2 entry corrupted.`,
          );
          if (this.walkFixes) {
            if (await this.zeroL2Entry(l2, l2Offset, i, active)) continue;
          }
        } else {
          this.say(
            `ERROR offset=${
              hex(offset)
            }: Data cluster is not properly aligned; L2 entry corrupted.`,
          );
        }
      }
      if (fragInfo) {
        this.res.allocatedClusters++;
        if (nextContiguous && offset !== nextContiguous) this.res.fragmentedClusters++;
        nextContiguous = offset + cs;
      }
      this.incRefcounts(imrt, offset, cs);
    }
  }

  /** Runs a read; an I/O error is reported with `message` and ends the check. */
  async ioChecked<T>(message: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof CheckAbort) {
        this.say(message);
        this.res.checkErrors++;
      }
      throw e;
    }
  }

  /** fix_l2_entry_by_zero: turns a misaligned preallocated zero cluster into a plain zero one. */
  async zeroL2Entry(
    l2: Uint8Array,
    l2Offset: number,
    i: number,
    active: boolean,
  ): Promise<boolean> {
    const g = this.g;
    const p = i * g.l2EntrySize;
    const entry = l2.subarray(p, p + g.l2EntrySize);
    if (g.extL2) {
      const bmHi = be32(entry, 8);
      const bmLo = be32(entry, 12);
      entry.fill(0, 0, 8);
      putBe32(entry, 8, (bmHi | bmLo) >>> 0);
      putBe32(entry, 12, 0);
    } else {
      entry.fill(0);
      entry[7] = 1;
    }
    if (
      !(await this.preWriteCheck(
        active ? OL.ACTIVE_L2 : OL.INACTIVE_L2,
        l2Offset + p,
        g.l2EntrySize,
      ))
    ) {
      this.say("ERROR: Overlap check failed");
      this.res.checkErrors++;
      // Something is seriously wrong: QEMU stops checking here.
      throw new CheckAbort("EIO");
    }
    await this.img.write(l2Offset + p, entry.slice());
    await this.img.file.flush();
    this.res.corruptions--;
    this.res.corruptionsFixed++;
    return true;
  }

  async checkRefblocks(imrt: Imrt, state: { rebuild: boolean }): Promise<void> {
    const g = this.g;
    const cs = g.clusterSize;
    for (let i = 0; i < this.#reftableUsed; i++) {
      const e = this.reftable[i];
      if (e === 0n) continue;
      const offsetN = e & 0xfffffffffffffe00n;
      const cluster = offsetN >> BigInt(g.clusterBits);
      if (e & 0x1ffn) {
        this.say(`ERROR refcount table entry ${i} has reserved bits set`);
        this.res.corruptions++;
        state.rebuild = true;
        continue;
      }
      if (offsetN % BigInt(cs)) {
        this.say(
          `ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`,
        );
        this.res.corruptions++;
        state.rebuild = true;
        continue;
      }
      if (cluster >= BigInt(imrt.size)) {
        this.res.corruptions++;
        this.say(`${this.walkFixes ? "Repairing" : "ERROR"} refcount block ${i} is outside image`);
        if (this.walkFixes) {
          let err: string;
          if (offsetN > (1n << 63n) - 1n - BigInt(cs)) {
            err = STRERROR.EINVAL;
          } else {
            try {
              await this.img.file.truncate(Number(offsetN) + cs);
              this.img.length = await this.img.file.length();
              imrt.resize(this.clusters(this.img.length));
              if (cluster >= BigInt(imrt.size)) {
                err = STRERROR.EINVAL;
              } else {
                this.res.corruptions--;
                this.res.corruptionsFixed++;
                this.incRefcounts(imrt, Number(offsetN), cs);
                continue;
              }
            } catch (e) {
              err = e instanceof Error ? e.message : String(e);
              this.say(`qemu-img: Could not resize file: ${err}`);
            }
          }
          state.rebuild = true;
          this.say(`ERROR could not resize image: ${err}`);
        }
        continue;
      }
      if (offsetN !== 0n) {
        const off = Number(offsetN);
        this.incRefcounts(imrt, off, cs);
        const r = imrt.get(off / cs);
        if (r !== 1) {
          this.say(`ERROR refcount block ${i} refcount=${r}`);
          this.res.corruptions++;
          state.rebuild = true;
        }
      }
    }
  }

  /** qcow2_check_bitmaps_refcounts: the bitmap directory, tables and data clusters. */
  async checkBitmaps(imrt: Imrt): Promise<void> {
    const bm = this.g.bitmaps;
    if (!bm) return;
    const cs = this.g.clusterSize;
    this.incRefcounts(imrt, bm.dirOffset, bm.dirSize);
    let list: BitmapEntry[];
    try {
      list = await loadBitmapList(this.img, this.g);
    } catch (e) {
      if (!(e instanceof BitmapListError) && !(e instanceof CheckAbort)) throw e;
      this.res.corruptions++;
      throw new CheckAbort("EINVAL");
    }
    for (const t of list) {
      this.incRefcounts(imrt, t.tableOffset, t.tableSize * 8);
      let table: Uint8Array;
      try {
        table = await this.img.read(t.tableOffset, t.tableSize * 8);
      } catch (e) {
        if (e instanceof CheckAbort) this.res.corruptions++;
        throw e;
      }
      for (let i = 0; i < t.tableSize; i++) {
        const off = entryOffset(table, i * 8);
        if (!bitmapTableEntryValid(table, i * 8, cs)) {
          this.res.corruptions++;
          continue;
        }
        if (off) this.incRefcounts(imrt, off, cs);
      }
    }
  }

  /** calculate_refcounts: every reference the image makes, counted in imrt. */
  async calculateRefcounts(imrt: Imrt, state: { rebuild: boolean }): Promise<void> {
    const g = this.g;
    this.incRefcounts(imrt, 0, g.clusterSize);
    await this.checkL1(imrt, g.l1TableOffsetX, g.l1Size, true, true);
    for (const sn of this.snapshots) {
      if (sn.l1TableOffsetX % BigInt(g.clusterSize)) {
        this.say(
          `ERROR snapshot ${cstr(sn.id)} (${cstr(sn.name)}) l1_offset=${
            hexAlt(sn.l1TableOffsetX)
          }: L1 table is not cluster aligned; snapshot table entry corrupted`,
        );
        this.res.corruptions++;
        continue;
      }
      if (sn.l1Size > QCOW_MAX_L1_SIZE / 8) {
        this.say(
          `ERROR snapshot ${cstr(sn.id)} (${cstr(sn.name)}) l1_size=${
            hexAlt(sn.l1Size)
          }: L1 table is too large; snapshot table entry corrupted`,
        );
        this.res.corruptions++;
        continue;
      }
      await this.checkL1(imrt, sn.l1TableOffsetX, sn.l1Size, false, false);
    }
    this.incRefcounts(imrt, exact(this.snapshotsOffsetX), this.snapshotsSize);
    this.incRefcounts(imrt, exact(g.refcountTableOffsetX), g.refcountTableSize * 8);
    if (g.crypto) this.incRefcounts(imrt, g.crypto.offset, g.crypto.length);
    await this.checkBitmaps(imrt);
    await this.checkRefblocks(imrt, state);
  }

  /** compare_refcounts: on-disk refcounts against the counted references; returns the highest cluster in use. */
  async compareRefcounts(
    imrt: Imrt,
    fixLeaks: boolean,
    fixErrors: boolean,
    state: { rebuild: boolean },
  ): Promise<number> {
    let highest = 0;
    const rbSize = 2 ** this.g.refcountBlockBits;
    const order = this.g.refcountOrder;
    // One refcount block at a time: its on-disk counts against the counted references.
    for (let start = 0; start < imrt.size; start += rbSize) {
      const end = Math.min(imrt.size, start + rbSize);
      const idx = start / rbSize;
      const off = idx < this.#rbOffsets.length ? this.#rbOffsets[idx] : 0;
      let block: Uint8Array | undefined;
      if (off) {
        try {
          await this.getRefcount(start); // loads the block, or fails as QEMU does for each cluster
          block = this.#refblocks.get(off);
        } catch (e) {
          if (!(e instanceof CheckAbort)) throw e;
          for (let i = start; i < end; i++) {
            this.say(`Can't get refcount for cluster ${i}: ${e.message}`);
            this.res.checkErrors++;
          }
          continue;
        }
      }
      const counts = imrt.counts;
      for (let i = start; i < end; i++) {
        if (!block) {
          // No refblock: every on-disk count here is 0; only referenced clusters matter.
          i = imrt.nextNonZero(i, end);
          if (i < 0) break;
        }
        const k = i - start;
        const r1 = !block
          ? 0
          : order === 4
          ? (block[2 * k] << 8) | block[2 * k + 1]
          : getDiskRefcount(block, k, order);
        const r2 = counts[i];
        if (r1 > 0 || r2 > 0) highest = i;
        if (r1 === r2) continue;
        let fixed: "leaksFixed" | "corruptionsFixed" | undefined;
        if (r1 === 0) state.rebuild = true;
        else if (r1 > r2 && fixLeaks) fixed = "leaksFixed";
        else if (r1 < r2 && fixErrors) fixed = "corruptionsFixed";
        const word = fixed ? "Repairing" : r1 < r2 ? "ERROR" : "Leaked";
        this.say(`${word} cluster ${i} refcount=${this.refcountText(r1, i)} reference=${r2}`);
        if (fixed) {
          await this.setRefcount(i, r2);
          if (r2 === 0) await this.discardCluster(i);
          this.res[fixed]++;
          continue;
        }
        if (r1 < r2) this.res.corruptions++;
        else this.res.leaks++;
      }
    }
    return highest;
  }

  /** A refcount as PRIu64 prints it (64-bit entries may exceed 2^53). */
  refcountText(r: number, cluster: number): string {
    if (r <= Number.MAX_SAFE_INTEGER || this.g.refcountOrder !== 6) return String(r);
    const idx = Math.floor(cluster / 2 ** this.g.refcountBlockBits);
    const off = this.#rbOffsets[idx] ?? 0;
    const block = this.#refblocks.get(off);
    if (!block) return String(r);
    return be64n(block, (cluster % 2 ** this.g.refcountBlockBits) * 8).toString();
  }

  async discardCluster(i: number): Promise<void> {
    const cs = this.g.clusterSize;
    if (i * cs < this.img.length) {
      try {
        await this.img.file.discard(i * cs, cs);
      } catch {
        // Discarding is only an optimisation.
      }
    }
  }

  /** check_oflag_copied: the COPIED flag must be set exactly when the refcount is 1. */
  async checkOflagCopied(): Promise<void> {
    const g = this.g;
    const res = this.res;
    const repair = this.fixErrors ||
      (this.fixLeaks && !res.checkErrors && !res.corruptions && !res.leaks);
    for (let i = 0; i < g.l1Size; i++) {
      const p = i * 8;
      const l2Offset = entryOffset(this.l1, p);
      if (!l2Offset) continue;
      let rc: number;
      try {
        rc = await this.getRefcount(Math.floor(l2Offset / g.clusterSize));
      } catch (e) {
        if (e instanceof CheckAbort) continue;
        throw e;
      }
      const copied = (this.l1[p] & 0x80) !== 0;
      if ((rc === 1) !== copied) {
        res.corruptions++;
        this.say(
          `${repair ? "Repairing" : "ERROR"} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${
            hex64(this.l1, p)
          } refcount=${this.refcountText(rc, Math.floor(l2Offset / g.clusterSize))}`,
        );
        if (repair) {
          this.l1[p] = rc === 1 ? this.l1[p] | 0x80 : this.l1[p] & 0x7f;
          // QEMU writes the L1 entry as part of an aligned block (the host's 4 KiB memory
          // alignment, at most a cluster); the overlap check covers that block.
          const perBlock = Math.max(8, Math.min(4096, g.clusterSize)) / 8;
          const first = Math.floor(i / perBlock) * perBlock;
          if (
            !(await this.preWriteCheck(OL.ACTIVE_L1, g.l1TableOffset + first * 8, perBlock * 8))
          ) {
            res.checkErrors++;
            throw new CheckAbort("EIO");
          }
          await this.img.write(g.l1TableOffset + p, this.l1.slice(p, p + 8));
          await this.img.file.flush();
          res.corruptions--;
          res.corruptionsFixed++;
        }
      }
      const kept = l2Offset % g.clusterSize
        ? undefined
        : this.#keptL2.get(l2Offset / g.clusterSize);
      const l2 = kept ?? await this.img.read(l2Offset, g.clusterSize);
      let dirty = 0;
      const dv = new DataView(l2.buffer, l2.byteOffset, l2.byteLength);
      // The refcount block of the last cluster looked up: neighbours read it without a call
      // (this loop runs cold over every entry; nothing changes refcounts meanwhile).
      const order = g.refcountOrder;
      const perBlock = 2 ** g.refcountBlockBits;
      let rbIndex = -1;
      let rb: Uint8Array | undefined;
      const words = new Uint32Array(l2.buffer, l2.byteOffset, l2.byteLength >> 2);
      for (let j = 0; j < g.l2Size; j++) {
        const q = j * g.l2EntrySize;
        if (!(words[q >> 2] | words[(q >> 2) + 1])) continue; // unallocated
        const hi = dv.getUint32(q);
        if (hi & 0x40000000) continue; // compressed
        const off = (hi & 0x00ffffff) * 0x100000000 + ((dv.getUint32(q + 4) & 0xfffffe00) >>> 0);
        if (!off) continue; // unallocated or plain zero
        let r: number;
        const dc = Math.floor(off / g.clusterSize);
        const idx = Math.floor(dc / perBlock);
        if (idx === rbIndex && rb) {
          const k = dc - idx * perBlock;
          r = order === 4 ? (rb[2 * k] << 8) | rb[2 * k + 1] : getDiskRefcount(rb, k, order);
        } else {
          try {
            r = this.cachedRefcount(dc) ?? await this.getRefcount(dc);
          } catch (e) {
            if (e instanceof CheckAbort) continue;
            throw e;
          }
          rbIndex = idx;
          rb = idx < this.#rbOffsets.length ? this.#refblocks.get(this.#rbOffsets[idx]) : undefined;
        }
        const c = (hi & 0x80000000) !== 0;
        if ((r === 1) !== c) {
          res.corruptions++;
          this.say(
            `${repair ? "Repairing" : "ERROR"} OFLAG_COPIED data cluster: l2_entry=${
              hex64(l2, q)
            } refcount=${this.refcountText(r, Math.floor(off / g.clusterSize))}`,
          );
          if (repair) {
            l2[q] = r === 1 ? l2[q] | 0x80 : l2[q] & 0x7f;
            dirty++;
          }
        }
      }
      if (dirty) {
        if (!(await this.preWriteCheck(OL.ACTIVE_L2, l2Offset, g.clusterSize))) {
          this.say(
            "ERROR: Could not write L2 table; metadata overlap check failed: Input/output error",
          );
          res.checkErrors++;
          throw new CheckAbort("EIO");
        }
        await this.img.write(l2Offset, l2);
        res.corruptions -= dirty;
        res.corruptionsFixed += dirty;
      }
    }
  }

  // ---- snapshots ----

  /**
   * qcow2_check_read_snapshot_table: reads the snapshot table straight from the header fields.
   * With -r all, overhanging snapshots are dropped (the header is updated at once) and entries
   * with too much extra data are noted for {@link fixSnapshotTable}. Counts go to `snapRes`.
   */
  async readSnapshotTable(): Promise<void> {
    const h = await this.img.read(0, 72);
    let nb = be32(h, 60);
    const offsetX = be64n(h, 64);
    const offset = Number(offsetX);
    const g = this.g;
    const sr = this.snapRes;
    const repair = this.fixErrors;
    let reduced = 0;
    let dropped = 0;
    if (nb > QCOW_MAX_SNAPSHOTS && repair) {
      this.say(`Discarding ${nb - QCOW_MAX_SNAPSHOTS} overhanging snapshots`);
      reduced += nb - QCOW_MAX_SNAPSHOTS;
      nb = QCOW_MAX_SNAPSHOTS;
    }
    const tooLarge = nb > QCOW_MAX_SNAPSHOTS;
    if (
      tooLarge || offsetX + BigInt(nb * SNAPSHOT_HEADER_SIZE) > (1n << 63n) - 1n ||
      offsetX % BigInt(g.clusterSize)
    ) {
      sr.checkErrors++;
      this.say(`qemu-img: ERROR snapshot table ${tooLarge ? "too large" : "offset invalid"}`);
      if (tooLarge) {
        this.say(
          `You can force-remove all ${
            nb - QCOW_MAX_SNAPSHOTS
          } overhanging snapshots with qemu-img check -r all`,
        );
      }
      throw new CheckAbort(tooLarge ? "EFBIG" : "EINVAL");
    }
    const fail = (msg: string, hint?: string, errno: Errno = "EFBIG"): never => {
      sr.checkErrors++;
      this.say(`qemu-img: ERROR failed to read the snapshot table: ${msg}`);
      if (hint) this.say(hint);
      throw new CheckAbort(errno);
    };
    const dec = new TextDecoder();
    // The table is read through a window: it may hold 65536 small entries.
    let winStart = -1;
    let win: Uint8Array = new Uint8Array(0);
    const EMPTY = new Uint8Array(0);
    // Synchronous when the window already holds the bytes (65536 entries make 260k reads).
    const inWindow = (at: number, n: number): Uint8Array | undefined =>
      n === 0
        ? EMPTY
        : at >= winStart && at + n <= winStart + win.length
        ? win.subarray(at - winStart, at - winStart + n)
        : undefined;
    const read = async (at: number, n: number): Promise<Uint8Array> => {
      if (at < winStart || at + n > winStart + win.length) {
        winStart = at;
        try {
          win = await this.img.read(
            at,
            at + (1 << 16) > BDRV_MAX_LENGTH ? n : Math.max(n, 1 << 16),
          );
        } catch (e) {
          if (!(e instanceof CheckAbort)) throw e;
          fail(`Failed to read snapshot table: ${e.message}`, undefined, e.errno);
        }
      }
      return win.subarray(at - winStart, at - winStart + n);
    };
    // Positions are relative to the table: its offset may be beyond 2^53 in a damaged header.
    let pos = 0;
    let tableLength = 0;
    const snaps: SnapshotEntry[] = [];
    for (let i = 0; i < nb; i++) {
      const pre = pos;
      tableLength = Math.ceil(tableLength / 8) * 8;
      pos = Math.ceil(pos / 8) * 8;
      const e = inWindow(offset + pos, SNAPSHOT_HEADER_SIZE) ??
        await read(offset + pos, SNAPSHOT_HEADER_SIZE);
      pos += SNAPSHOT_HEADER_SIZE;
      const idLen = (e[12] << 8) | e[13];
      const nameLen = (e[14] << 8) | e[15];
      let extraSize = be32(e, 36);
      let truncate = false;
      if (extraSize > QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
        if (!repair) {
          fail(
            `Too much extra metadata in snapshot table entry ${i}`,
            "You can force-remove this extra metadata with qemu-img check -r all",
          );
        }
        this.say(
          `Discarding too much extra metadata in snapshot table entry ${i} (${extraSize} > ${QCOW_MAX_SNAPSHOT_EXTRA_DATA})`,
        );
        dropped++;
        truncate = true;
      }
      const known = inWindow(offset + pos, Math.min(24, extraSize)) ??
        await read(offset + pos, Math.min(24, extraSize));
      pos += Math.min(24, extraSize);
      const sn: SnapshotEntry = {
        l1TableOffset: be64(e, 0),
        l1TableOffsetX: be32(e, 0) || be32(e, 4) ? be64n(e, 0) : 0n,
        rawHeader: e.slice(),
        rawKnownExtra: known.length ? known.slice() : EMPTY,
        idBytes: EMPTY,
        nameBytes: EMPTY,
        l1Size: be32(e, 8),
        id: "",
        name: "",
        dateSec: be32(e, 16),
        dateNsec: be32(e, 20),
        vmClockNsec: be64(e, 24),
        vmStateSize: extraSize >= 8 ? be64(known, 0) : be32(e, 32),
        diskSize: extraSize >= 16 ? be64(known, 8) : g.virtualSize,
        extraUnknown: new Uint8Array(0),
        extraDataSize: extraSize,
      };
      if (extraSize >= 24) {
        const icount = be64n(known, 16);
        if (icount < 1n << 63n) sn.icount = Number(icount);
      }
      if (extraSize > 24) {
        const end = pos + extraSize - 24;
        if (truncate) extraSize = QCOW_MAX_SNAPSHOT_EXTRA_DATA;
        sn.extraUnknown = (await read(offset + pos, extraSize - 24)).slice();
        sn.extraDataSize = extraSize;
        pos = end;
      }
      const names = inWindow(offset + pos, idLen + nameLen) ??
        await read(offset + pos, idLen + nameLen);
      pos += idLen + nameLen;
      if (idLen + nameLen) {
        sn.idBytes = names.slice(0, idLen);
        sn.nameBytes = names.slice(idLen);
        sn.id = dec.decode(sn.idBytes);
        sn.name = dec.decode(sn.nameBytes);
      }
      tableLength += SNAPSHOT_HEADER_SIZE + extraSize + idLen + nameLen;
      if (tableLength > QCOW_MAX_SNAPSHOTS_SIZE || pos > 0x7fffffff) {
        if (!repair) {
          fail(
            "Snapshot table is too big",
            `You can force-remove all ${nb - i} overhanging snapshots with qemu-img check -r all`,
          );
        }
        this.say(`Discarding ${nb - i} overhanging snapshots (snapshot table is too big)`);
        reduced += nb - i;
        nb = i;
        pos = pre;
        break;
      }
      snaps.push(sn);
    }
    this.snapshots = snaps;
    this.snapshotsOffset = offset;
    this.snapshotsOffsetX = offsetX;
    this.snapshotsSize = pos;
    sr.corruptions += reduced + dropped;
    if (reduced) {
      // The header must say how many snapshots the refcount walk will see.
      const b = new Uint8Array(4);
      putBe32(b, 0, nb);
      await this.img.write(60, b);
      await this.img.file.flush();
      sr.corruptionsFixed += reduced;
      sr.corruptions -= reduced;
    }
    if (g.version >= 3) {
      snaps.forEach((sn, i) => {
        if (sn.extraDataSize < 16) {
          sr.corruptions++;
          this.say(`${repair ? "Repairing" : "ERROR"} snapshot table entry ${i} is incomplete`);
        }
      });
    }
  }

  /** qcow2_check_fix_snapshot_table: rewrites the snapshot table after -r all dropped data. */
  async fixSnapshotTable(): Promise<void> {
    const sr = this.snapRes;
    if (!sr.corruptions || !this.fixErrors) return;
    try {
      await this.writeSnapshots();
    } catch (e) {
      if (!(e instanceof CheckAbort)) throw e;
      sr.checkErrors++;
      this.say(`ERROR failed to update snapshot table: ${e.message}`);
      throw e;
    }
    sr.corruptionsFixed += sr.corruptions;
    sr.corruptions = 0;
  }

  /**
   * qcow2_write_snapshots: the table goes to newly allocated clusters, is flushed, and only then
   * does the header point at it; the old table is freed last (a crash leaks, never corrupts).
   */
  async writeSnapshots(): Promise<void> {
    const g = this.g;
    const cs = g.clusterSize;
    const table = serializeSnapshots(this.snapshots, g.virtualSize);
    let newOffset = 0;
    if (table.length) {
      const n = this.clusters(table.length);
      // alloc_clusters_noref from cluster 0: the first run of n clusters with refcount 0.
      let first = 0;
      for (let c = 0, run = 0; run < n; c++) {
        const r = this.cachedRefcount(c) ?? await this.getRefcount(c);
        if (r) {
          run = 0;
          first = c + 1;
        } else run++;
      }
      for (let c = first; c < first + n; c++) {
        const idx = Math.floor(c / 2 ** g.refcountBlockBits);
        if (!this.#rbOffsets[idx]) throw new CheckAbort("ENOTSUP");
        await this.setRefcount(c, 1);
      }
      newOffset = first * cs;
      await this.flushRefblocks();
      await this.img.file.flush();
      if (!(await this.preWriteCheck(0, newOffset, table.length))) throw new CheckAbort("EIO");
      await this.img.write(newOffset, table);
    }
    await this.img.file.flush();
    const hdr = new Uint8Array(12);
    putBe32(hdr, 0, this.snapshots.length);
    putBe64(hdr, 4, newOffset);
    await this.img.write(60, hdr);
    await this.img.file.flush();
    // Free the old table (qcow2_free_clusters: all or nothing, a message when it fails).
    if (this.snapshotsSize > 0) await this.freeClusters(this.snapshotsOffsetX, this.snapshotsSize);
    this.snapshotsOffset = newOffset;
    this.snapshotsOffsetX = BigInt(newOffset);
    this.snapshotsSize = table.length;
  }

  /**
   * qcow2_free_clusters: one reference less for each cluster of a byte range, all or nothing.
   * Like QEMU 7.2's alloc_refcount_block, the refcount table index is taken modulo 2^32 (it
   * is an unsigned int there), so a range far beyond the image lands where QEMU's lands.
   */
  async freeClusters(offset: bigint, size: number): Promise<void> {
    const g = this.g;
    const cb = BigInt(g.clusterBits);
    const rbBits = BigInt(g.refcountBlockBits);
    const first = offset >> cb;
    const last = (offset + BigInt(size) - 1n) >> cb;
    const where: { block: Uint8Array; off: number; i: number; r: number; c: bigint }[] = [];
    let ok = last - first < 1n << 20n;
    for (let c = first; ok && c <= last; c++) {
      const idx = Number((c >> rbBits) & 0xffffffffn);
      const i = Number(c & ((1n << rbBits) - 1n));
      const off = idx < this.#rbOffsets.length ? this.#rbOffsets[idx] : 0;
      if (!off || this.#rbOffsetsX[idx] % BigInt(g.clusterSize)) {
        ok = false;
        break;
      }
      let block: Uint8Array;
      try {
        block = await this.refblock(off);
      } catch (e) {
        if (!(e instanceof CheckAbort)) throw e;
        ok = false;
        break;
      }
      const r = getDiskRefcount(block, i, g.refcountOrder);
      if (r === 0) ok = false;
      where.push({ block, off, i, r, c });
    }
    if (!ok) {
      this.say(`qcow2_free_clusters failed: ${STRERROR.EINVAL}`);
      return;
    }
    for (const w of where) {
      setDiskRefcount(w.block, w.i, g.refcountOrder, w.r - 1);
      this.#dirtyRefblocks.add(w.off);
      if (
        w.r === 1 && w.c < 1n << 40n &&
        !this.metadataOverlap(OL.SNAPSHOT_TABLE, Number(w.c) * g.clusterSize, 1)
      ) {
        await this.discardCluster(Number(w.c));
      }
    }
  }

  // ---- rebuilding the refcount structure ----

  /**
   * rebuild_refcount_structure: writes new refblocks and a new refcount table into clusters
   * that are free in imrt, then points the header at them. The old structure becomes leaked.
   */
  async rebuild(imrt: Imrt): Promise<void> {
    const g = this.g;
    await this.flushRefblocksQuietly();
    const rbBits = g.refcountBlockBits;
    const rbSize = 2 ** rbBits;
    const reftable: number[] = [];
    let reftableEntries = 0;

    const alloc = (count: number, from: { free: number }): number => {
      let cluster = from.free;
      let run = 0;
      let firstGap = true;
      for (; cluster < imrt.size && run < count; cluster++) {
        if (!imrt.get(cluster)) {
          run++;
          if (firstGap) {
            from.free = cluster;
            firstGap = false;
          }
        } else run = 0;
      }
      if (run < count) imrt.resize(cluster + count - run);
      cluster -= run;
      for (let i = 0; i < count; i++) imrt.set(cluster + i, 1);
      return cluster;
    };

    const writeRefblocks = async (first: number, end: number): Promise<boolean> => {
      const from = { free: 0 };
      let grown = false;
      for (let cluster = first; cluster < end; cluster++) {
        if (!imrt.get(cluster)) continue;
        const idx = Math.floor(cluster / rbSize);
        const start = idx * rbSize;
        let rbCluster: number;
        if (reftableEntries > idx && reftable[idx]) {
          rbCluster = reftable[idx] / g.clusterSize;
        } else {
          if (from.free < start) from.free = start;
          rbCluster = alloc(1, from);
          if (rbCluster >= end) end = rbCluster + 1;
          if (reftableEntries <= idx) {
            reftableEntries = Math.ceil((idx + 1) * 8 / g.clusterSize) * g.clusterSize / 8;
            while (reftable.length < reftableEntries) reftable.push(0);
            grown = true;
          }
          reftable[idx] = rbCluster * g.clusterSize;
        }
        const block = new Uint8Array(g.clusterSize);
        for (let j = 0; j < rbSize; j++) {
          const v = imrt.get(start + j);
          if (v) setDiskRefcount(block, j, g.refcountOrder, Math.min(v, g.refcountMax));
        }
        if (!(await this.preWriteCheck(0, rbCluster * g.clusterSize, g.clusterSize))) {
          this.say(`qemu-img: ERROR writing refblock: ${STRERROR.EIO}`);
          this.res.checkErrors++;
          throw new CheckAbort("EIO");
        }
        await this.img.write(rbCluster * g.clusterSize, block);
        cluster = start + rbSize - 1;
      }
      return grown;
    };

    await writeRefblocks(0, imrt.size);
    let reftableOffset = -1;
    let reftableClusters = 0;
    let changed = true;
    while (changed) {
      reftableClusters = this.clusters(reftableEntries * 8);
      const start = alloc(reftableClusters, { free: 0 });
      reftableOffset = start * g.clusterSize;
      changed = await writeRefblocks(start, start + reftableClusters);
    }
    const table = new Uint8Array(reftableEntries * 8);
    for (let i = 0; i < reftableEntries; i++) putBe64(table, i * 8, reftable[i] ?? 0);
    if (!(await this.preWriteCheck(0, reftableOffset, table.length))) {
      this.say(`qemu-img: ERROR writing reftable: ${STRERROR.EIO}`);
      throw new CheckAbort("EIO");
    }
    await this.img.write(reftableOffset, table);
    // Everything new must be stable before the header points at it.
    await this.img.file.flush();
    const hdr = new Uint8Array(12);
    putBe64(hdr, 0, reftableOffset);
    putBe32(hdr, 8, reftableClusters);
    await this.img.write(48, hdr);
    await this.img.file.flush();
    g.refcountTableOffset = reftableOffset;
    g.refcountTableOffsetX = BigInt(reftableOffset);
    g.refcountTableSize = reftableEntries;
    this.reftable = reftable.map((v) => BigInt(v));
    this.#indexReftable();
    this.#refblocks.clear();
  }

  // ---- the whole check ----

  /** qcow2_check_refcounts. */
  async checkRefcounts(forceRebuild = false): Promise<void> {
    const g = this.g;
    const res = this.res;
    let nbClusters = this.clusters(this.img.length);
    if (nbClusters > 0x7fffffff) {
      res.checkErrors++;
      throw new CheckAbort("EFBIG");
    }
    res.totalClusters = this.clusters(g.virtualSize);
    const imrt = new Imrt(g.refcountOrder, nbClusters);
    const state = { rebuild: forceRebuild };
    await this.calculateRefcounts(imrt, state);
    nbClusters = imrt.size;

    const pre = { ...res, messages: res.messages };
    let highest = await this.compareRefcounts(imrt, false, false, state);

    if (state.rebuild && this.fixErrors) {
      const old = { ...res };
      let freshLeaks = 0;
      this.say("Rebuilding refcount structure");
      await this.rebuild(imrt);
      res.corruptions = 0;
      res.leaks = 0;
      state.rebuild = false;
      imrt.clear();
      this.walkFixes = false;
      await this.calculateRefcounts(imrt, state);
      this.walkFixes = this.fixErrors;
      if (this.fixLeaks) {
        const saved = { ...res };
        res.corruptions = res.leaks = res.checkErrors = 0;
        res.corruptionsFixed = res.leaksFixed = 0;
        highest = await this.compareRefcounts(imrt, true, false, state);
        if (state.rebuild) this.say("ERROR rebuilt refcount structure is still broken");
        freshLeaks = res.leaks;
        Object.assign(res, { ...saved, messages: res.messages });
      }
      if (res.corruptions < old.corruptions) {
        res.corruptionsFixed += old.corruptions - res.corruptions;
      }
      if (res.leaks < old.leaks) res.leaksFixed += old.leaks - res.leaks;
      res.leaks += freshLeaks;
    } else if (this.fixLeaks || this.fixErrors) {
      if (state.rebuild) {
        this.say("ERROR need to rebuild refcount structures");
        res.checkErrors++;
        throw new CheckAbort("EIO");
      }
      if (res.leaks || res.corruptions) {
        Object.assign(res, { ...pre, messages: res.messages });
        highest = await this.compareRefcounts(imrt, this.fixLeaks, this.fixErrors, state);
      }
    }
    await this.checkOflagCopied();
    res.imageEndOffset = (highest + 1) * g.clusterSize;
  }

  /**
   * Opening read-write clears autoclear bits QEMU 7.2 does not know (their owner's data can no
   * longer be trusted). QEMU's header rewrite at that point also zeroes the snapshot table
   * pointer in check mode, dropping every snapshot; demu deliberately keeps them.
   */
  async clearUnknownAutoclear(): Promise<void> {
    const known = QCOW2_AUTOCLEAR_BITMAPS | QCOW2_AUTOCLEAR_DATA_FILE_RAW;
    const a = this.g.autoclearFeatures;
    const unknown = this.g.version >= 3 && (a & ~known) !== 0n;
    if (!unknown && !this.g.staleBitmaps) return;
    // QEMU rewrites the header: unknown autoclear bits and a stale bitmaps extension go.
    this.g.autoclearFeatures = a & known;
    await this.rewriteHeader(this.g.incompatibleFeatures);
    this.g.staleBitmaps = false;
  }

  /** Clears the dirty and corrupt bits once an image has been repaired (v3 only). */
  async markCleanAndConsistent(): Promise<void> {
    if (this.g.version < 3) return;
    const bits = QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT;
    const incompat = this.g.incompatibleFeatures;
    if (!(incompat & bits)) return;
    // qcow2_mark_clean flushes everything (a failure fails the check) before clearing the bit.
    if (incompat & QCOW2_INCOMPAT_DIRTY) await this.flushRefblocks();
    await this.img.file.flush();
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, incompat & ~bits);
    await this.img.write(72, b);
    await this.img.file.flush();
    this.g.incompatibleFeatures = incompat & ~bits;
  }
}

/**
 * Checks a qcow2 image for consistency, as `qemu-img check` does, optionally repairing it.
 *
 * `file` is the protocol layer of the image (read-write when repairing). An image that QEMU
 * would refuse to open throws a {@link BlockError} with QEMU's message; a check that fails midway
 * returns the result with `failure` set. With `repair`, the result counts what was found and
 * fixed in this pass; qemu-img then checks again without repair to report the final state
 * (keeping the fixed counts of the first pass), except when `markedCorrupt` is set: QEMU's
 * second check then fails with "No medium found".
 */
export async function checkQcow2(
  file: BlockDriver,
  opts: Qcow2CheckOptions = {},
): Promise<Qcow2CheckResult> {
  return await runCheck(file, opts, false);
}

/**
 * Rebuilds the refcount table and blocks from the references the image makes, then frees what
 * the old structure leaked: QEMU's repair of a dirty (lazy refcounts) image, or `-r all` on a
 * broken refcount structure. The returned result is that of the repairing pass.
 */
export async function rebuildRefcounts(
  file: BlockDriver,
  opts: Pick<Qcow2CheckOptions, "log"> = {},
): Promise<Qcow2CheckResult> {
  return await runCheck(file, { ...opts, repair: "all" }, true);
}

async function runCheck(
  file: BlockDriver,
  opts: Qcow2CheckOptions,
  forceRebuild: boolean,
): Promise<Qcow2CheckResult> {
  const repair = opts.repair;
  if (repair && file.readOnly) {
    throw new BlockError("EROFS", "Cannot repair an image opened read-only");
  }
  const img = new ImageFile(file, await file.length());
  const geo = await readGeometry(img);
  const checker = new Qcow2Checker(img, geo, !!repair, repair === "all", opts.log);
  const res = checker.res;
  const addSnapshotResults = () => {
    res.corruptions += checker.snapRes.corruptions;
    res.corruptionsFixed += checker.snapRes.corruptionsFixed;
    res.checkErrors += checker.snapRes.checkErrors;
  };
  try {
    await checker.load();
    if (repair) await checker.clearUnknownAutoclear();
    try {
      await checker.readSnapshotTable();
    } catch (e) {
      addSnapshotResults();
      throw e;
    }
    try {
      await checker.checkRefcounts(forceRebuild);
    } catch (e) {
      addSnapshotResults();
      throw e;
    }
    try {
      await checker.fixSnapshotTable();
    } finally {
      addSnapshotResults();
    }
    if (repair && res.checkErrors === 0 && res.corruptions === 0) {
      await checker.markCleanAndConsistent();
    }
    checker.endOutput();
    // As QEMU closing the image: repairs still cached are written now.
    if (repair) {
      await checker.flushRefblocksQuietly();
      await file.flush();
    }
  } catch (e) {
    if (!(e instanceof CheckAbort)) throw e;
    res.failure = e.message;
    checker.endOutput();
    // Closing after a failed check writes what is cached, unless the image was marked corrupt.
    if (repair) {
      await checker.flushRefblocksQuietly();
      await file.flush();
    }
  }
  return res;
}
