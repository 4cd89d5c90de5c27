/**
 * The qcow2 on-disk format: header, header extensions, snapshot table, table entries and
 * refcount entries, as QEMU's docs/interop/qcow2.txt names them. Pure functions over bytes, used
 * by the driver (mod.ts), the checker (check.ts) and the creator (create.ts).
 *
 * 64-bit fields that may carry flag bits (L1/L2 entries, feature masks) are bigints here; the
 * driver's hot paths use the number-pair helpers at the bottom instead.
 */

/** "QFI\xfb". */
export const QCOW_MAGIC = 0x514649fb;
/** Largest header length QEMU writes for version 3 (with compression_type and padding). */
export const QCOW2_V3_HEADER_LENGTH = 112;
/** Header length of version 2 (and the fixed part of version 3 without compression_type). */
export const QCOW2_V2_HEADER_LENGTH = 72;
/** Header length of version 3 without the compression_type byte. */
export const QCOW2_V3_MIN_HEADER_LENGTH = 104;

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;

/** Table entry flags (bit 63: refcount exactly one; bit 62: compressed; bit 0: zero, v3). */
export const QCOW_OFLAG_COPIED = 1n << 63n;
export const QCOW_OFLAG_COMPRESSED = 1n << 62n;
export const QCOW_OFLAG_ZERO = 1n;

/** Host cluster offset bits of an L1 entry (9..55). */
export const L1E_OFFSET_MASK = 0x00fffffffffffe00n;
/** Host cluster offset bits of a standard L2 entry (9..55). */
export const L2E_OFFSET_MASK = 0x00fffffffffffe00n;
/** Host offset bits of a refcount table entry (9..63). */
export const REFT_OFFSET_MASK = 0xfffffffffffffe00n;
/** Bits that must be zero in an L1 entry. */
export const L1E_RESERVED_MASK = 0x7f000000000001ffn;
/** Bits that must be zero in a standard L2 entry (bit 0 is the zero flag in v3). */
export const L2E_STD_RESERVED_MASK = 0x3f000000000001fen;

/** Incompatible feature bits. */
export const QCOW2_INCOMPAT_DIRTY = 1n << 0n;
export const QCOW2_INCOMPAT_CORRUPT = 1n << 1n;
export const QCOW2_INCOMPAT_DATA_FILE = 1n << 2n;
export const QCOW2_INCOMPAT_COMPRESSION = 1n << 3n;
export const QCOW2_INCOMPAT_EXTL2 = 1n << 4n;
export const QCOW2_INCOMPAT_MASK = 0x1fn;
/** Compatible feature bits. */
export const QCOW2_COMPAT_LAZY_REFCOUNTS = 1n << 0n;
/** Autoclear feature bits. */
export const QCOW2_AUTOCLEAR_BITMAPS = 1n << 0n;
export const QCOW2_AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

/** Header extension types. */
export const QCOW2_EXT_MAGIC_END = 0x00000000;
export const QCOW2_EXT_MAGIC_BACKING_FORMAT = 0xe2792aca;
export const QCOW2_EXT_MAGIC_FEATURE_TABLE = 0x6803f857;
export const QCOW2_EXT_MAGIC_CRYPTO_HEADER = 0x0537be77;
export const QCOW2_EXT_MAGIC_BITMAPS = 0x23852875;
export const QCOW2_EXT_MAGIC_DATA_FILE = 0x44415441;

/** crypt_method values. */
export const QCOW_CRYPT_NONE = 0;
export const QCOW_CRYPT_AES = 1;
export const QCOW_CRYPT_LUKS = 2;

/** compression_type values. */
export const QCOW2_COMPRESSION_TYPE_ZLIB = 0;
export const QCOW2_COMPRESSION_TYPE_ZSTD = 1;

/** Longest backing file name QEMU accepts. */
export const QCOW2_MAX_BACKING_FILE_NAME = 1023;
/** Most snapshots an image may hold. */
export const QCOW_MAX_SNAPSHOTS = 65536;
/** Largest L1 table QEMU accepts (bytes). */
export const QCOW_MAX_L1_SIZE = 1 << 25;
/** Largest refcount table QEMU accepts (bytes). */
export const QCOW_MAX_REFTABLE_SIZE = 1 << 23;
/** Subclusters per cluster with extended L2 entries. */
export const QCOW_EXTL2_SUBCLUSTERS_PER_CLUSTER = 32;

/** Recognises a qcow2 image by its magic (any version; open() rejects what it cannot read). */
export function probeQcow2(head: Uint8Array): boolean {
  return head.length >= 4 &&
    ((head[0] << 24) | (head[1] << 16) | (head[2] << 8) | head[3]) >>> 0 === QCOW_MAGIC;
}

/** One header extension as stored: type and payload (without padding). */
export interface Qcow2HeaderExtension {
  type: number;
  data: Uint8Array;
}

/** Every field of a qcow2 header (v2 or v3), plus its extensions and backing file name. */
export interface Qcow2Header {
  magic: number;
  version: number;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Extensions in file order, unknown ones included. */
  extensions: Qcow2HeaderExtension[];
  /** Header bytes past the fields this version knows (header_length > 112), kept as found. */
  unknownHeaderFields?: Uint8Array;
  /** The backing file name, when backingFileOffset is set. */
  backingFile?: string;
}

/** A malformed image: the message reads like QEMU's. */
export class Qcow2FormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Qcow2FormatError";
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function u64(dv: DataView, off: number): number {
  const hi = dv.getUint32(off);
  const lo = dv.getUint32(off + 4);
  if (hi >= 0x200000) throw new Qcow2FormatError(`64-bit field at ${off} too large`);
  return hi * 0x100000000 + lo;
}

function setU64(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, Math.floor(v / 0x100000000));
  dv.setUint32(off + 4, v >>> 0);
}

/**
 * Parses a qcow2 header from the image's first bytes (at least the first cluster, or the whole
 * file when shorter). Validates only what is needed to read it; the driver checks the rest.
 */
export function parseHeader(bytes: Uint8Array): Qcow2Header {
  if (bytes.length < QCOW2_V2_HEADER_LENGTH) {
    throw new Qcow2FormatError("Image is not in qcow2 format");
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = dv.getUint32(0);
  if (magic !== QCOW_MAGIC) throw new Qcow2FormatError("Image is not in qcow2 format");
  const version = dv.getUint32(4);
  if (version < 2 || version > 3) {
    throw new Qcow2FormatError(`Unsupported qcow2 version ${version}`);
  }
  const h: Qcow2Header = {
    magic,
    version,
    backingFileOffset: u64(dv, 8),
    backingFileSize: dv.getUint32(16),
    clusterBits: dv.getUint32(20),
    size: u64(dv, 24),
    cryptMethod: dv.getUint32(32),
    l1Size: dv.getUint32(36),
    l1TableOffset: u64(dv, 40),
    refcountTableOffset: u64(dv, 48),
    refcountTableClusters: dv.getUint32(56),
    nbSnapshots: dv.getUint32(60),
    snapshotsOffset: u64(dv, 64),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: QCOW2_V2_HEADER_LENGTH,
    compressionType: 0,
    extensions: [],
  };
  if (h.clusterBits < MIN_CLUSTER_BITS || h.clusterBits > MAX_CLUSTER_BITS) {
    throw new Qcow2FormatError(`Unsupported cluster size: 2^${h.clusterBits}`);
  }
  const clusterSize = 2 ** h.clusterBits;
  if (version === 3) {
    if (bytes.length < QCOW2_V3_MIN_HEADER_LENGTH) {
      throw new Qcow2FormatError("qcow2 header exceeds cluster size");
    }
    h.incompatibleFeatures = dv.getBigUint64(72);
    h.compatibleFeatures = dv.getBigUint64(80);
    h.autoclearFeatures = dv.getBigUint64(88);
    h.refcountOrder = dv.getUint32(96);
    h.headerLength = dv.getUint32(100);
    if (h.headerLength < QCOW2_V3_MIN_HEADER_LENGTH) {
      throw new Qcow2FormatError("qcow2 header too short");
    }
    if (h.headerLength > clusterSize) {
      throw new Qcow2FormatError("qcow2 header exceeds cluster size");
    }
    if (h.headerLength > QCOW2_V3_MIN_HEADER_LENGTH) {
      if (bytes.length <= QCOW2_V3_MIN_HEADER_LENGTH) {
        throw new Qcow2FormatError("qcow2 header exceeds cluster size");
      }
      h.compressionType = bytes[104];
    }
    if (h.headerLength > QCOW2_V3_HEADER_LENGTH) {
      h.unknownHeaderFields = bytes.slice(QCOW2_V3_HEADER_LENGTH, h.headerLength);
    }
  }
  // Header extensions: from the end of the header up to the end marker or the backing file name.
  let pos = h.headerLength;
  const extEnd = h.backingFileOffset && h.backingFileOffset < clusterSize
    ? h.backingFileOffset
    : Math.min(clusterSize, bytes.length);
  while (pos + 8 <= extEnd) {
    const type = dv.getUint32(pos);
    const len = dv.getUint32(pos + 4);
    pos += 8;
    if (type === QCOW2_EXT_MAGIC_END) break;
    if (len > extEnd - pos) throw new Qcow2FormatError("Invalid extension length");
    h.extensions.push({ type, data: bytes.slice(pos, pos + len) });
    pos += (len + 7) & ~7;
  }
  if (h.backingFileOffset) {
    if (h.backingFileSize > QCOW2_MAX_BACKING_FILE_NAME || h.backingFileSize > clusterSize) {
      throw new Qcow2FormatError("Backing file name too long");
    }
    const end = h.backingFileOffset + h.backingFileSize;
    if (end > Math.min(clusterSize, bytes.length)) {
      throw new Qcow2FormatError("Backing file name too long");
    }
    h.backingFile = dec.decode(bytes.subarray(h.backingFileOffset, end));
  }
  return h;
}

/**
 * Serializes a header into one cluster: fixed fields, the extensions in order, the end marker
 * and the backing file name (backingFileOffset/Size are recomputed, as QEMU does).
 */
export function serializeHeader(h: Qcow2Header): Uint8Array {
  const clusterSize = 2 ** h.clusterBits;
  const buf = new Uint8Array(clusterSize);
  const dv = new DataView(buf.buffer);
  const headerLength = h.version >= 3 ? h.headerLength : QCOW2_V2_HEADER_LENGTH;
  dv.setUint32(0, QCOW_MAGIC);
  dv.setUint32(4, h.version);
  dv.setUint32(20, h.clusterBits);
  setU64(dv, 24, h.size);
  dv.setUint32(32, h.cryptMethod);
  dv.setUint32(36, h.l1Size);
  setU64(dv, 40, h.l1TableOffset);
  setU64(dv, 48, h.refcountTableOffset);
  dv.setUint32(56, h.refcountTableClusters);
  dv.setUint32(60, h.nbSnapshots);
  setU64(dv, 64, h.snapshotsOffset);
  if (h.version >= 3) {
    dv.setBigUint64(72, h.incompatibleFeatures);
    dv.setBigUint64(80, h.compatibleFeatures);
    dv.setBigUint64(88, h.autoclearFeatures);
    dv.setUint32(96, h.refcountOrder);
    dv.setUint32(100, headerLength);
    if (headerLength > QCOW2_V3_MIN_HEADER_LENGTH) buf[104] = h.compressionType;
    if (h.unknownHeaderFields && headerLength > QCOW2_V3_HEADER_LENGTH) {
      buf.set(
        h.unknownHeaderFields.subarray(0, headerLength - QCOW2_V3_HEADER_LENGTH),
        QCOW2_V3_HEADER_LENGTH,
      );
    }
  }
  let pos = headerLength;
  const room = (n: number) => {
    if (pos + n > clusterSize) throw new Qcow2FormatError("Header extensions exceed cluster size");
  };
  for (const ext of h.extensions) {
    const padded = (ext.data.length + 7) & ~7;
    room(8 + padded);
    dv.setUint32(pos, ext.type);
    dv.setUint32(pos + 4, ext.data.length);
    buf.set(ext.data, pos + 8);
    pos += 8 + padded;
  }
  room(8);
  pos += 8; // end marker: type 0, length 0
  if (h.backingFile) {
    const name = enc.encode(h.backingFile);
    room(name.length);
    buf.set(name, pos);
    setU64(dv, 8, pos);
    dv.setUint32(16, name.length);
    pos += name.length;
  }
  return buf;
}

/** Finds a header extension by type. */
export function findExtension(h: Qcow2Header, type: number): Qcow2HeaderExtension | undefined {
  return h.extensions.find((e) => e.type === type);
}

/** The backing format extension's text, when present. */
export function backingFormatOf(h: Qcow2Header): string | undefined {
  const e = findExtension(h, QCOW2_EXT_MAGIC_BACKING_FORMAT);
  return e ? dec.decode(e.data) : undefined;
}

/** Sets (or with undefined removes) the backing format extension, placed first as QEMU does. */
export function setBackingFormat(h: Qcow2Header, fmt: string | undefined): void {
  h.extensions = h.extensions.filter((e) => e.type !== QCOW2_EXT_MAGIC_BACKING_FORMAT);
  if (fmt) h.extensions.unshift({ type: QCOW2_EXT_MAGIC_BACKING_FORMAT, data: enc.encode(fmt) });
}

/** One entry of the feature name table extension. */
export interface Qcow2FeatureName {
  /** 0 incompatible, 1 compatible, 2 autoclear. */
  type: number;
  bit: number;
  name: string;
}

/** The feature names QEMU 7.2 writes, in its order. */
export const QCOW2_FEATURE_NAMES: readonly Qcow2FeatureName[] = [
  { type: 0, bit: 0, name: "dirty bit" },
  { type: 0, bit: 1, name: "corrupt bit" },
  { type: 0, bit: 2, name: "external data file" },
  { type: 0, bit: 3, name: "compression type" },
  { type: 0, bit: 4, name: "extended L2 entries" },
  { type: 1, bit: 0, name: "lazy refcounts" },
  { type: 2, bit: 0, name: "bitmaps" },
  { type: 2, bit: 1, name: "raw external data" },
];

/** Encodes a feature name table extension payload (48 bytes per entry). */
export function encodeFeatureTable(names: readonly Qcow2FeatureName[]): Uint8Array {
  const out = new Uint8Array(48 * names.length);
  names.forEach((f, i) => {
    out[i * 48] = f.type;
    out[i * 48 + 1] = f.bit;
    out.set(enc.encode(f.name).subarray(0, 46), i * 48 + 2);
  });
  return out;
}

/** Decodes a feature name table extension payload. */
export function decodeFeatureTable(data: Uint8Array): Qcow2FeatureName[] {
  const out: Qcow2FeatureName[] = [];
  for (let i = 0; i + 48 <= data.length; i += 48) {
    const raw = data.subarray(i + 2, i + 48);
    const nul = raw.indexOf(0);
    out.push({
      type: data[i],
      bit: data[i + 1],
      name: dec.decode(nul < 0 ? raw : raw.subarray(0, nul)),
    });
  }
  return out;
}

// ---- snapshot table ----

/** One internal snapshot as stored in the snapshot table. */
export interface Qcow2Snapshot {
  l1TableOffset: number;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  /** vm_state_size (the 64-bit extra field when present). */
  vmStateSize: number;
  /** Virtual disk size at the snapshot (extra data), when recorded. */
  diskSize?: number;
  /** icount (extra data), -1 (undefined here) when not recorded. */
  icount?: number;
  /** Extra data bytes beyond the known fields, kept as they were. */
  extraUnknown: Uint8Array;
  /** The extra_data_size as stored (QEMU writes 24). */
  extraDataSize: number;
}

/** Size of the fixed part of a snapshot table entry. */
export const QCOW2_SNAPSHOT_HEADER_SIZE = 40;
/** The extra data size QEMU 7.2 writes (vm_state_size_large, disk_size, icount). */
export const QCOW2_SNAPSHOT_EXTRA_SIZE = 24;
/** Largest extra data QEMU accepts per snapshot. */
export const QCOW_MAX_SNAPSHOT_EXTRA_DATA = 1024;

/** Parses `count` snapshot table entries from bytes (the table as read from the file). */
export function parseSnapshotTable(bytes: Uint8Array, count: number): Qcow2Snapshot[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Qcow2Snapshot[] = [];
  let pos = 0;
  const need = (n: number) => {
    if (pos + n > bytes.length) throw new Qcow2FormatError("Snapshot table is truncated");
  };
  for (let i = 0; i < count; i++) {
    pos = (pos + 7) & ~7;
    need(QCOW2_SNAPSHOT_HEADER_SIZE);
    const idLen = dv.getUint16(pos + 12);
    const nameLen = dv.getUint16(pos + 14);
    const extraSize = dv.getUint32(pos + 36);
    if (extraSize > QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
      throw new Qcow2FormatError("Too much extra metadata in snapshot table entry");
    }
    const s: Qcow2Snapshot = {
      l1TableOffset: u64(dv, pos),
      l1Size: dv.getUint32(pos + 8),
      id: "",
      name: "",
      dateSec: dv.getUint32(pos + 16),
      dateNsec: dv.getUint32(pos + 20),
      vmClockNsec: u64(dv, pos + 24),
      vmStateSize: dv.getUint32(pos + 32),
      extraUnknown: new Uint8Array(0),
      extraDataSize: extraSize,
    };
    pos += QCOW2_SNAPSHOT_HEADER_SIZE;
    need(extraSize);
    if (extraSize >= 8) s.vmStateSize = u64(dv, pos);
    if (extraSize >= 16) s.diskSize = u64(dv, pos + 8);
    if (extraSize >= 24) {
      const ic = dv.getBigInt64(pos + 16);
      if (ic >= 0n) s.icount = Number(ic);
    }
    if (extraSize > 24) s.extraUnknown = bytes.slice(pos + 24, pos + extraSize);
    pos += extraSize;
    need(idLen + nameLen);
    s.id = dec.decode(bytes.subarray(pos, pos + idLen));
    pos += idLen;
    s.name = dec.decode(bytes.subarray(pos, pos + nameLen));
    pos += nameLen;
    out.push(s);
  }
  return out;
}

/** Bytes the snapshot table takes once serialized. */
export function snapshotTableSize(snaps: readonly Qcow2Snapshot[]): number {
  let pos = 0;
  for (const s of snaps) {
    pos = (pos + 7) & ~7;
    const extra = Math.max(QCOW2_SNAPSHOT_EXTRA_SIZE, s.extraDataSize, 24 + s.extraUnknown.length);
    pos += QCOW2_SNAPSHOT_HEADER_SIZE + extra + enc.encode(s.id).length +
      enc.encode(s.name).length;
  }
  // Entries start 8-aligned; QEMU does not pad after the last one.
  return pos;
}

/** Serializes the snapshot table (QEMU's layout: entries 8-aligned, extra data 24 bytes). */
export function serializeSnapshotTable(snaps: readonly Qcow2Snapshot[]): Uint8Array {
  const buf = new Uint8Array(snapshotTableSize(snaps));
  const dv = new DataView(buf.buffer);
  let pos = 0;
  for (const s of snaps) {
    pos = (pos + 7) & ~7;
    const id = enc.encode(s.id);
    const name = enc.encode(s.name);
    const extra = Math.max(QCOW2_SNAPSHOT_EXTRA_SIZE, s.extraDataSize, 24 + s.extraUnknown.length);
    setU64(dv, pos, s.l1TableOffset);
    dv.setUint32(pos + 8, s.l1Size);
    dv.setUint16(pos + 12, id.length);
    dv.setUint16(pos + 14, name.length);
    dv.setUint32(pos + 16, s.dateSec);
    dv.setUint32(pos + 20, s.dateNsec);
    setU64(dv, pos + 24, s.vmClockNsec);
    dv.setUint32(pos + 32, Math.min(s.vmStateSize, 0xffffffff));
    dv.setUint32(pos + 36, extra);
    pos += QCOW2_SNAPSHOT_HEADER_SIZE;
    setU64(dv, pos, s.vmStateSize);
    setU64(dv, pos + 8, s.diskSize ?? 0);
    dv.setBigInt64(pos + 16, s.icount === undefined ? -1n : BigInt(s.icount));
    buf.set(s.extraUnknown, pos + 24);
    pos += extra;
    buf.set(id, pos);
    pos += id.length;
    buf.set(name, pos);
    pos += name.length;
  }
  return buf;
}

// ---- refcount entries ----

/** Reads refcount entry `index` of a refcount block with 2^order-bit entries. */
export function getRefcount(block: Uint8Array, index: number, order: number): number {
  switch (order) {
    case 0:
      return (block[index >> 3] >> (index & 7)) & 1;
    case 1:
      return (block[index >> 2] >> (2 * (index & 3))) & 3;
    case 2:
      return (block[index >> 1] >> (4 * (index & 1))) & 15;
    case 3:
      return block[index];
    case 4:
      return (block[index * 2] << 8) | block[index * 2 + 1];
    case 5: {
      const p = index * 4;
      return ((block[p] << 24) | (block[p + 1] << 16) | (block[p + 2] << 8) | block[p + 3]) >>> 0;
    }
    case 6: {
      const p = index * 8;
      const hi = ((block[p] << 24) | (block[p + 1] << 16) | (block[p + 2] << 8) | block[p + 3]) >>>
        0;
      const lo =
        ((block[p + 4] << 24) | (block[p + 5] << 16) | (block[p + 6] << 8) | block[p + 7]) >>> 0;
      return hi * 0x100000000 + lo;
    }
  }
  throw new RangeError(`bad refcount order ${order}`);
}

/** Writes refcount entry `index`; `value` must fit 2^order bits (checked by the caller). */
export function setRefcount(block: Uint8Array, index: number, order: number, value: number): void {
  switch (order) {
    case 0:
    case 1:
    case 2: {
      const bits = 1 << order;
      const perByte = 8 >> order;
      const shift = bits * (index % perByte);
      const mask = ((1 << bits) - 1) << shift;
      const b = index >> (3 - order);
      block[b] = (block[b] & ~mask) | ((value << shift) & mask);
      return;
    }
    case 3:
      block[index] = value;
      return;
    case 4:
      block[index * 2] = value >> 8;
      block[index * 2 + 1] = value;
      return;
    case 5: {
      const p = index * 4;
      block[p] = value >>> 24;
      block[p + 1] = value >>> 16;
      block[p + 2] = value >>> 8;
      block[p + 3] = value;
      return;
    }
    case 6: {
      const p = index * 8;
      const hi = Math.floor(value / 0x100000000);
      const lo = value >>> 0;
      block[p] = hi >>> 24;
      block[p + 1] = hi >>> 16;
      block[p + 2] = hi >>> 8;
      block[p + 3] = hi;
      block[p + 4] = lo >>> 24;
      block[p + 5] = lo >>> 16;
      block[p + 6] = lo >>> 8;
      block[p + 7] = lo;
      return;
    }
  }
  throw new RangeError(`bad refcount order ${order}`);
}

/** Largest refcount representable with 2^order bits (capped at 2^53-1 for 64-bit entries). */
export function maxRefcount(order: number): number {
  return order >= 6 ? Number.MAX_SAFE_INTEGER : 2 ** (1 << order) - 1;
}

// ---- compressed cluster descriptors ----

/** Where a compressed cluster's bytes live. */
export interface CompressedDescriptor {
  /** Host offset of the first compressed byte. */
  offset: number;
  /** Bytes to read: whole 512-byte sectors counted from offset's sector, minus the lead-in. */
  size: number;
  /** Number of 512-byte sectors as stored (nb_csectors). */
  sectors: number;
}

/** Bit position where the sector count starts in a compressed L2 entry. */
export function csizeShift(clusterBits: number): number {
  return 62 - (clusterBits - 8);
}

/** Decodes a compressed L2 entry given as a bigint. */
export function decodeCompressedDescriptor(
  entry: bigint,
  clusterBits: number,
): CompressedDescriptor {
  const shift = BigInt(csizeShift(clusterBits));
  const offsetMask = (1n << shift) - 1n;
  const sizeMask = (1n << BigInt(clusterBits - 8)) - 1n;
  const offset = Number(entry & offsetMask);
  const sectors = Number((entry >> shift) & sizeMask) + 1;
  return { offset, sectors, size: sectors * 512 - (offset & 511) };
}

/** Encodes a compressed L2 entry (without the COPIED bit, which compressed entries never carry). */
export function encodeCompressedDescriptor(
  offset: number,
  compressedSize: number,
  clusterBits: number,
): bigint {
  const sectors = Math.floor((offset + compressedSize - 1) / 512) - Math.floor(offset / 512);
  return QCOW_OFLAG_COMPRESSED | (BigInt(sectors) << BigInt(csizeShift(clusterBits))) |
    BigInt(offset);
}

// ---- number-pair helpers for hot paths ----

/** Host offset bits of a table entry split into its high and low 32-bit words. */
export function entryOffset(hi: number, lo: number): number {
  return (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
}

/** Reads a big-endian u64 from a DataView as a number (throws past 2^53). */
export function readU64(dv: DataView, off: number): number {
  return u64(dv, off);
}

/** Writes a number as a big-endian u64. */
export function writeU64(dv: DataView, off: number, v: number): void {
  setU64(dv, off, v);
}
