/**
 * {@link Qcow2Format}: an open qcow2 image as a BlockDriver.
 *
 * Guest offsets map through the L1 table (in memory) and L2 tables (Qcow2L2Cache) to host
 * clusters whose refcounts Qcow2Refcounts keeps. Metadata is write-back cached and reaches the
 * file in dependency order on flush (refcounts, then L2 tables, then L1 entries, then frees), so
 * a crash at any point leaves at most leaked clusters.
 */
import {
  type BlockDriver,
  BlockError,
  type BlockStatus,
  type TruncateOptions,
  type WriteZeroesOptions,
} from "../types.ts";
import { openImage, type OpenOptions, registerFormat } from "../open.ts";
import {
  backingFormatOf,
  csizeShift,
  decodeFeatureTable,
  encodeFeatureTable,
  entryOffset,
  MAX_CLUSTER_BITS,
  maxRefcount,
  MIN_CLUSTER_BITS,
  parseHeader,
  parseSnapshotTable,
  probeQcow2,
  QCOW2_COMPAT_LAZY_REFCOUNTS,
  QCOW2_EXT_MAGIC_FEATURE_TABLE,
  QCOW2_FEATURE_NAMES,
  QCOW2_INCOMPAT_COMPRESSION,
  QCOW2_INCOMPAT_CORRUPT,
  QCOW2_INCOMPAT_DATA_FILE,
  QCOW2_INCOMPAT_DIRTY,
  QCOW2_INCOMPAT_EXTL2,
  QCOW2_INCOMPAT_MASK,
  QCOW2_V2_HEADER_LENGTH,
  Qcow2FormatError,
  type Qcow2Header,
  type Qcow2Snapshot,
  QCOW_CRYPT_NONE,
  QCOW_MAX_L1_SIZE,
  QCOW_MAX_REFTABLE_SIZE,
  QCOW_MAX_SNAPSHOTS,
  serializeHeader,
  serializeSnapshotTable,
  setBackingFormat,
  setRefcount,
} from "./format.ts";
import {
  compressCluster,
  decompressCluster,
  loadCompression,
  type Qcow2CompressionType,
} from "./compress.ts";
import { validateQcow2Header } from "./check.ts";
import { Qcow2Io } from "./io.ts";
import { type L2Table, Qcow2L2Cache } from "./l2_cache.ts";
import { Qcow2Refcounts } from "./refcount.ts";
import { checkQcow2 } from "./check.ts";
import type { Qcow2AmendOptions, Qcow2Info, Qcow2SnapshotInfo } from "./types.ts";

const COPIED_HI = 0x80000000;
const COMPRESSED_HI = 0x40000000;
const ZERO_LO = 1;
const TWO32 = 0x100000000;

/** L2 cache size in bytes (QEMU's default maximum on Linux). */
const L2_CACHE_BYTES = 32 << 20;

/** How a (sub)cluster reads. */
const enum Kind {
  Unallocated,
  Zero,
  Normal,
  Compressed,
}

/** Host-side facts about one guest (sub)cluster, filled by #lookup. */
interface Lookup {
  kind: Kind;
  /** Host offset of the cluster (Normal, preallocated Zero), else 0. */
  host: number;
  /** Bytes from the asked offset with the same kind and contiguous host bytes, within the cluster. */
  bytes: number;
}

function parseDirname(name: string): string {
  const i = name.lastIndexOf("/");
  return i < 0 ? "" : name.slice(0, i + 1);
}

/** Resolves a backing file name as QEMU does: relative names are relative to the image. */
export function resolveBackingPath(imageName: string, backing: string): string {
  if (backing.startsWith("/") || /^[a-z][a-z0-9+.-]*:/i.test(backing)) return backing;
  return parseDirname(imageName) + backing;
}

/** An open qcow2 image. */
export class Qcow2Format implements BlockDriver {
  readonly format = "qcow2";
  backing: BlockDriver | null = null;
  #io: Qcow2Io;
  #h: Qcow2Header;
  #cb: number;
  #cs: number;
  #extL2: boolean;
  #es: number;
  #l2Entries: number;
  #scSize: number;
  #l1!: Uint8Array;
  #l1dv!: DataView;
  #l1Dirty = new Set<number>();
  #refs!: Qcow2Refcounts;
  #cache: Qcow2L2Cache;
  #snapshots: Qcow2Snapshot[] = [];
  #backingLength = 0;
  #compression: Qcow2CompressionType;
  #dirtyOnDisk = false;
  #closed = false;
  #zeros: Uint8Array;
  #decompHost = -1;
  #decompBuf: Uint8Array | null = null;
  #readOnly: boolean;
  /** Pending coalesced data write (views of the current request's buffers). */
  #runHost = -1;
  #runParts: Uint8Array[] = [];
  #runLen = 0;
  /** End of the last cluster allocated with only part of it written (see #coverAllocated). */
  #allocEnd = 0;

  private constructor(readonly file: BlockDriver, io: Qcow2Io, h: Qcow2Header, readOnly: boolean) {
    this.#io = io;
    this.#h = h;
    this.#readOnly = readOnly;
    this.#cb = h.clusterBits;
    this.#cs = 2 ** h.clusterBits;
    this.#extL2 = (h.incompatibleFeatures & QCOW2_INCOMPAT_EXTL2) !== 0n;
    this.#es = this.#extL2 ? 16 : 8;
    this.#l2Entries = this.#cs / this.#es;
    this.#scSize = this.#extL2 ? this.#cs / 32 : this.#cs;
    this.#compression = h.compressionType === 1 ? "zstd" : "zlib";
    this.#zeros = new Uint8Array(this.#cs);
    this.#cache = new Qcow2L2Cache(
      Math.max(16, Math.floor(L2_CACHE_BYTES / this.#cs)),
      (t) => this.#writeBackL2(t),
    );
  }

  get filename(): string {
    return this.file.filename;
  }
  get readOnly(): boolean {
    return this.#readOnly;
  }
  get clusterSize(): number {
    return this.#cs;
  }
  /** The parsed header (a live object: do not modify). */
  get header(): Qcow2Header {
    return this.#h;
  }

  #lock: Promise<unknown> = Promise.resolve();

  /** Runs requests one at a time: metadata updates span awaits and must not interleave. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn);
    this.#lock = run.catch(() => {});
    return run;
  }

  /** Reads guest bytes. */
  read(offset: number, buf: Uint8Array): Promise<void> {
    return this.#serial(() => this.#read(offset, buf));
  }

  /** Writes guest bytes (copy-on-write where clusters are shared, compressed or absent). */
  write(offset: number, data: Uint8Array, fua?: boolean): Promise<void> {
    return this.#serial(() => this.#write(offset, data, fua));
  }

  /**
   * Writes one whole cluster given its compressed form (compressCluster with this image's type
   * over the whole cluster, zero-padded past the end of the image), or stored plainly when
   * compressed is undefined (it did not shrink). `raw` is the uncompressed data.
   */
  writeCompressedPrepared(
    offset: number,
    compressed: Uint8Array | undefined,
    raw: Uint8Array,
  ): Promise<void> {
    return this.#serial(() => this.#writeCompressedPrepared(offset, compressed, raw));
  }

  /** Makes a range read as zeros (v3: zero flags; mayUnmap frees the clusters). */
  writeZeroes(offset: number, length: number, opts: WriteZeroesOptions = {}): Promise<void> {
    return this.#serial(() => this.#writeZeroes(offset, length, opts));
  }

  /** Frees whole clusters of a range (they read as zeros, or as the backing file in v2). */
  discard(offset: number, length: number): Promise<void> {
    return this.#serial(() => this.#discard(offset, length));
  }

  /** Allocation status of the extent at offset (allocated: this layer; offset: host offset). */
  blockStatus(offset: number, length: number): Promise<BlockStatus> {
    return this.#serial(() => this.#blockStatus(offset, length));
  }

  /** Writes all cached metadata in dependency order and syncs the file. */
  flush(): Promise<void> {
    return this.#serial(() => this.#flush());
  }

  /** Flushes, clears the dirty bit, closes the file and the backing chain. */
  close(): Promise<void> {
    return this.#serial(() => this.#close());
  }

  /** Reverts the active state to a snapshot (qemu-img snapshot -a). */
  applySnapshot(idOrName: string): Promise<void> {
    return this.#serial(() => this.#applySnapshot(idOrName));
  }

  /** Deletes a snapshot by ID or name (qemu-img snapshot -d). */
  deleteSnapshot(idOrName: string): Promise<void> {
    return this.#serial(() => this.#deleteSnapshot(idOrName));
  }

  /** Rewrites the backing file name and format in the header (qemu-img rebase -u). */
  changeBackingFile(name?: string, fmt?: string): Promise<void> {
    return this.#serial(() => this.#changeBackingFile(name, fmt));
  }

  /** Changes image options in place (qemu-img amend): compat, lazy_refcounts, refcount_bits. */
  amend(opts: Qcow2AmendOptions): Promise<void> {
    return this.#serial(() => this.#amend(opts));
  }

  /** Changes the virtual size: grows (with optional preallocation) or, with shrink, shrinks. */
  truncate(length: number, opts: TruncateOptions = {}): Promise<void> {
    return this.#serial(() => this.#truncate(length, opts));
  }

  /** Creates an internal snapshot of the current state (qemu-img snapshot -c). */
  createSnapshot(
    name: string,
    extra: { vmStateSize?: number; vmClockNsec?: number; icount?: number; dateMs?: number } = {},
  ): Promise<Qcow2SnapshotInfo> {
    return this.#serial(() => this.#createSnapshot(name, extra));
  }

  /** Opens a qcow2 image on top of its file; opens the backing chain unless opts.noBacking. */
  static async open(file: BlockDriver, opts: OpenOptions = {}): Promise<Qcow2Format> {
    // Refuse bad headers in QEMU's words before parsing them.
    await validateQcow2Header(file);
    const io = await Qcow2Io.open(file);
    const head = new Uint8Array(Math.min(io.length, 512));
    await io.read(0, head);
    if (head.length < QCOW2_V2_HEADER_LENGTH) {
      throw new BlockError("EINVAL", "Image is not in qcow2 format");
    }
    const bits = new DataView(head.buffer).getUint32(20);
    if (bits < MIN_CLUSTER_BITS || bits > MAX_CLUSTER_BITS) {
      // parseHeader reports magic/version first, as QEMU does.
      try {
        parseHeader(head);
      } catch (e) {
        throw wrap(e);
      }
    }
    const first = new Uint8Array(Math.min(io.length, 2 ** bits));
    await io.read(0, first);
    let h: Qcow2Header;
    try {
      h = parseHeader(first);
    } catch (e) {
      throw wrap(e);
    }
    const readOnly = !!opts.readOnly || file.readOnly;
    const img = new Qcow2Format(file, io, h, readOnly);
    await img.#load(opts);
    return img;
  }

  async #load(opts: OpenOptions): Promise<void> {
    const h = this.#h;
    const cs = this.#cs;
    const einval = (m: string) => new BlockError("EINVAL", m);
    if (h.backingFileOffset > cs) throw einval("Invalid backing file offset");
    const unknown = h.incompatibleFeatures & ~QCOW2_INCOMPAT_MASK;
    if (unknown) {
      const table = h.extensions.find((e) => e.type === QCOW2_EXT_MAGIC_FEATURE_TABLE);
      const names = table ? decodeFeatureTable(table.data) : [];
      const parts: string[] = [];
      for (let bit = 0n; bit < 64n; bit++) {
        if (!(unknown & (1n << bit))) continue;
        const f = names.find((n) => n.type === 0 && BigInt(n.bit) === bit);
        parts.push(f ? f.name : `Unknown incompatible feature: ${(1n << bit).toString(16)}`);
      }
      throw new BlockError("ENOTSUP", `Unsupported qcow2 feature(s): ${parts.join(", ")}`);
    }
    if (h.cryptMethod !== QCOW_CRYPT_NONE) {
      throw new BlockError(
        "ENOTSUP",
        `qcow2: encrypted images are not supported (encryption method ${h.cryptMethod})`,
      );
    }
    if (h.incompatibleFeatures & QCOW2_INCOMPAT_DATA_FILE) {
      throw new BlockError("ENOTSUP", "qcow2: external data files are not supported");
    }
    if ((h.incompatibleFeatures & QCOW2_INCOMPAT_CORRUPT) && !this.#readOnly) {
      throw new BlockError(
        "EPERM",
        "qcow2: Image is corrupt; cannot be opened read/write",
      );
    }
    if (h.refcountOrder > 6) {
      throw einval("Reference count entry width too large; may not exceed 64 bits");
    }
    if (h.version < 3 && h.refcountOrder !== 4) throw einval("Invalid refcount order");
    if (h.compressionType > 1) throw einval(`Unknown compression type '${h.compressionType}'`);
    if (h.compressionType !== 0 && !(h.incompatibleFeatures & QCOW2_INCOMPAT_COMPRESSION)) {
      throw einval(
        "Compression type incompatible feature bit must be set if compression type is not zlib",
      );
    }
    if (this.#extL2 && this.#cb < 14) {
      throw einval(
        "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes",
      );
    }
    if (!this.#readOnly && (h.incompatibleFeatures & QCOW2_INCOMPAT_DIRTY)) {
      await this.#repairDirty();
    }
    // Refcount table.
    if (h.refcountTableClusters > QCOW_MAX_REFTABLE_SIZE / cs) {
      throw einval("Reference count table too large");
    }
    if (h.refcountTableClusters === 0 || h.refcountTableOffset % cs) {
      throw einval("Invalid reference count table offset");
    }
    if (h.refcountTableOffset === 0) throw einval("Image does not contain a reference count table");
    this.#refs = await Qcow2Refcounts.load(
      this.#io,
      this.#cb,
      h.refcountOrder,
      h.refcountTableOffset,
      h.refcountTableClusters,
      (off, clusters) => this.#onRefTableMoved(off, clusters),
    );
    // Snapshots.
    if (h.nbSnapshots > QCOW_MAX_SNAPSHOTS) throw einval("Too many snapshots");
    if (h.nbSnapshots && (h.snapshotsOffset % cs || h.snapshotsOffset === 0)) {
      throw einval("Invalid snapshot table offset");
    }
    if (h.nbSnapshots) {
      const bytes = new Uint8Array(Math.min(h.nbSnapshots * 1128 + 8, 64 << 20));
      await this.#io.read(h.snapshotsOffset, bytes);
      try {
        this.#snapshots = parseSnapshotTable(bytes, h.nbSnapshots);
      } catch (e) {
        throw wrap(e);
      }
    }
    // Active L1 table.
    if (h.l1Size > QCOW_MAX_L1_SIZE / 8) throw new BlockError("EFBIG", "Active L1 table too large");
    const need = this.#l1Needed(h.size);
    if (h.l1Size < need) throw einval("L1 table is too small");
    if (h.l1Size && (h.l1TableOffset % cs || h.l1TableOffset === 0)) {
      throw einval("Invalid L1 table offset");
    }
    this.#l1 = new Uint8Array(h.l1Size * 8);
    if (h.l1Size) await this.#io.read(h.l1TableOffset, this.#l1);
    this.#l1dv = new DataView(this.#l1.buffer);
    // Backing file.
    if (h.backingFile !== undefined && !opts.noBacking) {
      const fmt = backingFormatOf(h);
      const path = resolveBackingPath(this.filename, h.backingFile);
      try {
        this.backing = await openImage(path, {
          format: fmt,
          readOnly: true,
          forceShare: opts.forceShare,
          warn: () => {},
        });
      } catch (e) {
        throw new BlockError(
          "EIO",
          `Could not open backing file: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
      this.#backingLength = await this.backing.length();
    }
    this.#dirtyOnDisk = (h.incompatibleFeatures & QCOW2_INCOMPAT_DIRTY) !== 0n;
    if (!this.#readOnly) {
      if (h.autoclearFeatures) {
        // We keep no bitmaps up to date: clearing the bit tells QEMU they are stale.
        h.autoclearFeatures = 0n;
        await this.#writeHeader();
      }
    }
  }

  #l1Needed(size: number): number {
    return Math.ceil(size / (this.#cs * this.#l2Entries));
  }

  async #onRefTableMoved(offset: number, clusters: number): Promise<void> {
    this.#h.refcountTableOffset = offset;
    this.#h.refcountTableClusters = clusters;
    const b = new Uint8Array(12);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, Math.floor(offset / TWO32));
    dv.setUint32(4, offset >>> 0);
    dv.setUint32(8, clusters);
    await this.#io.write(48, b);
    await this.#io.sync();
  }

  /** Rewrites the header cluster from #h (the header must still fit in one cluster). */
  async #writeHeader(): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = serializeHeader(this.#h);
    } catch (e) {
      throw wrap(e);
    }
    await this.#io.write(0, bytes);
    await this.#io.sync();
  }

  async #writeIncompat(): Promise<void> {
    if (this.#h.version < 3) return;
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, this.#h.incompatibleFeatures);
    await this.#io.write(72, b);
    await this.#io.sync();
  }

  // ---------------------------------------------------------------- info

  /** The format-specific facts qemu-img info shows. */
  info(): Qcow2Info {
    const h = this.#h;
    return {
      clusterSize: this.#cs,
      compat: h.version >= 3 ? "1.1" : "0.10",
      compressionType: this.#compression,
      lazyRefcounts: (h.compatibleFeatures & QCOW2_COMPAT_LAZY_REFCOUNTS) !== 0n,
      refcountBits: 1 << h.refcountOrder,
      corrupt: (h.incompatibleFeatures & QCOW2_INCOMPAT_CORRUPT) !== 0n,
      extendedL2: this.#extL2,
      dirty: (h.incompatibleFeatures & QCOW2_INCOMPAT_DIRTY) !== 0n,
      virtualSize: h.size,
      backingFile: h.backingFile,
      backingFormat: backingFormatOf(h),
      headerExtensions: h.extensions.map((e) => ({ type: e.type, length: e.data.length })),
      incompatibleFeatures: h.incompatibleFeatures,
      compatibleFeatures: h.compatibleFeatures,
      autoclearFeatures: h.autoclearFeatures,
    };
  }

  /** The internal snapshots, in table order. */
  listSnapshots(): Qcow2SnapshotInfo[] {
    return this.#snapshots.map((s) => ({
      id: s.id,
      name: s.name,
      vmStateSize: s.vmStateSize,
      dateSec: s.dateSec,
      dateNsec: s.dateNsec,
      vmClockNsec: s.vmClockNsec,
      icount: s.icount,
      diskSize: s.diskSize,
    }));
  }

  length(): Promise<number> {
    return Promise.resolve(this.#h.size);
  }

  allocatedSize(): Promise<number | undefined> {
    return this.file.allocatedSize?.() ?? Promise.resolve(undefined);
  }

  // ---------------------------------------------------------------- lookup

  #l1Entry(i: number): number {
    if (i >= this.#h.l1Size) return 0;
    const hi = this.#l1dv.getUint32(i * 8);
    const lo = this.#l1dv.getUint32(i * 8 + 4);
    return entryOffset(hi, lo);
  }

  #l1Copied(i: number): boolean {
    return (this.#l1dv.getUint32(i * 8) & COPIED_HI) !== 0;
  }

  #setL1(i: number, offset: number, copied: boolean): void {
    this.#l2Set = null;
    this.#l1dv.setUint32(i * 8, Math.floor(offset / TWO32) | (copied ? COPIED_HI : 0));
    this.#l1dv.setUint32(i * 8 + 4, offset >>> 0);
    this.#l1Dirty.add(i);
  }

  #checkTableOffset(off: number, what: string): void {
    if (off % this.#cs || off < this.#cs || off >= Math.max(this.#io.length, 1) + this.#cs) {
      throw this.#corruption(`${what} offset 0x${off.toString(16)} is invalid`);
    }
  }

  #corruption(msg: string): BlockError {
    if (!this.#readOnly && !(this.#h.incompatibleFeatures & QCOW2_INCOMPAT_CORRUPT)) {
      this.#h.incompatibleFeatures |= QCOW2_INCOMPAT_CORRUPT;
      console.error(
        `qcow2: Marking image as corrupt: ${msg}; further corruption events will be suppressed`,
      );
      // Best effort: the error is what matters.
      this.#writeIncompat().catch(() => {});
      this.#readOnly = true;
    }
    return new BlockError("EIO", `qcow2: ${msg}`);
  }

  /** The L2 table at host offset off (loaded into the cache). */
  async #l2At(off: number): Promise<L2Table> {
    const t = this.#cache.get(off);
    if (t) return t;
    this.#checkTableOffset(off, "L2 table");
    const buf = new Uint8Array(this.#cs);
    await this.#io.read(off, buf);
    const nt: L2Table = { offset: off, buf, dv: new DataView(buf.buffer), dirty: false };
    await this.#cache.put(nt);
    return nt;
  }

  /** The L2 table for guest cluster gc, or undefined when its L1 entry is empty. */
  async #l2For(gc: number): Promise<L2Table | undefined> {
    const off = this.#l1Entry(Math.floor(gc / this.#l2Entries));
    return off ? await this.#l2At(off) : undefined;
  }

  /**
   * Classifies the guest bytes at `pos` (within one cluster, at most `max` bytes): how they read
   * and where their host bytes are.
   */
  async #lookup(pos: number, max: number, out: Lookup): Promise<void> {
    const cs = this.#cs;
    const gc = Math.floor(pos / cs);
    const inoff = pos - gc * cs;
    const t = await this.#l2For(gc);
    let n = Math.min(max, cs - inoff);
    if (!t) {
      out.kind = Kind.Unallocated;
      out.host = 0;
      out.bytes = n;
      return;
    }
    const e = (gc % this.#l2Entries) * this.#es;
    const hi = t.dv.getUint32(e);
    const lo = t.dv.getUint32(e + 4);
    if (hi & COMPRESSED_HI) {
      out.kind = Kind.Compressed;
      out.host = 0;
      out.bytes = n;
      return;
    }
    const host = entryOffset(hi, lo);
    if (host % cs) {
      // As QEMU: a misaligned host cluster is a corruption, never read or written through.
      throw this.#corruption(
        `Cluster allocation offset 0x${host.toString(16)} unaligned (L2 offset: 0x${
          t.offset.toString(16)
        }, L2 index: 0x${(gc % this.#l2Entries).toString(16)})`,
      );
    }
    if (!this.#extL2) {
      if (lo & ZERO_LO && this.#h.version >= 3) out.kind = Kind.Zero;
      else out.kind = host ? Kind.Normal : Kind.Unallocated;
      out.host = host ? host + inoff : 0;
      out.bytes = n;
      return;
    }
    const alloc = t.dv.getUint32(e + 12);
    const zero = t.dv.getUint32(e + 8);
    const scs = this.#scSize;
    let sc = Math.floor(inoff / scs);
    const kindOf = (s: number): Kind => {
      const bit = 1 << s;
      if (alloc & bit) return host ? Kind.Normal : Kind.Unallocated;
      if (zero & bit) return Kind.Zero;
      return Kind.Unallocated;
    };
    if ((alloc & (1 << sc)) && !host) {
      throw this.#corruption(`allocated subcluster without host offset in cluster ${gc}`);
    }
    const k = kindOf(sc);
    let len = (sc + 1) * scs - inoff;
    while (len < n && sc < 31 && kindOf(sc + 1) === k) {
      sc++;
      len += scs;
    }
    n = Math.min(n, len);
    out.kind = k;
    out.host = k === Kind.Normal || (k === Kind.Zero && host) ? host + inoff : 0;
    out.bytes = n;
  }

  // ---------------------------------------------------------------- read

  #checkRange(offset: number, length: number): void {
    if (this.#closed) throw new BlockError("EIO", "Image is closed");
    if (offset < 0 || length < 0 || offset + length > this.#h.size) {
      throw new BlockError("EIO", "Request beyond the end of the image");
    }
  }

  async #read(offset: number, buf: Uint8Array): Promise<void> {
    this.#checkRange(offset, buf.length);
    await this.#flushRun();
    await this.#readGuest(offset, buf);
  }

  #lk: Lookup = { kind: Kind.Unallocated, host: 0, bytes: 0 };

  async #readGuest(offset: number, buf: Uint8Array): Promise<void> {
    const lk = this.#lk;
    let pos = 0;
    // Coalesce host-contiguous normal extents into one read.
    let runHost = -1;
    let runStart = 0;
    let runLen = 0;
    while (pos < buf.length) {
      await this.#lookup(offset + pos, buf.length - pos, lk);
      const n = lk.bytes;
      if (lk.kind === Kind.Normal) {
        if (runLen && runHost + runLen === lk.host && runStart + runLen === pos) {
          runLen += n;
        } else {
          if (runLen) await this.#io.read(runHost, buf.subarray(runStart, runStart + runLen));
          runHost = lk.host;
          runStart = pos;
          runLen = n;
        }
      } else {
        const part = buf.subarray(pos, pos + n);
        if (lk.kind === Kind.Zero) part.fill(0);
        else if (lk.kind === Kind.Unallocated) await this.#readBacking(offset + pos, part);
        else await this.#readCompressed(offset + pos, part);
      }
      pos += n;
    }
    if (runLen) await this.#io.read(runHost, buf.subarray(runStart, runStart + runLen));
  }

  async #readBacking(pos: number, part: Uint8Array): Promise<void> {
    const inBacking = this.backing
      ? Math.max(0, Math.min(part.length, this.#backingLength - pos))
      : 0;
    if (inBacking) await this.backing!.read(pos, part.subarray(0, inBacking));
    if (inBacking < part.length) part.fill(0, inBacking);
  }

  async #readCompressed(pos: number, part: Uint8Array): Promise<void> {
    const cs = this.#cs;
    const gc = Math.floor(pos / cs);
    const t = (await this.#l2For(gc))!;
    const e = (gc % this.#l2Entries) * this.#es;
    const hi = t.dv.getUint32(e);
    const lo = t.dv.getUint32(e + 4);
    const cluster = await this.#decompress(hi, lo);
    const inoff = pos - gc * cs;
    part.set(cluster.subarray(inoff, inoff + part.length));
  }

  /** Decodes a compressed entry given as its two words: host offset and stored length. */
  #compressedDesc(hi: number, lo: number): { offset: number; size: number } {
    // The sector count sits wholly in the high word (csize_shift >= 49).
    const hiShift = csizeShift(this.#cb) - 32;
    const offset = (hi & ((1 << hiShift) - 1)) * TWO32 + (lo >>> 0);
    const sectors = ((hi >>> hiShift) & ((1 << (this.#cb - 8)) - 1)) + 1;
    return { offset, size: sectors * 512 - (offset % 512) };
  }

  async #decompress(hi: number, lo: number): Promise<Uint8Array> {
    const { offset, size } = this.#compressedDesc(hi, lo);
    if (offset === this.#decompHost && this.#decompBuf) return this.#decompBuf;
    const stored = new Uint8Array(size);
    await this.#io.read(offset, stored);
    await loadCompression();
    try {
      this.#decompBuf = decompressCluster(stored, this.#compression, this.#cs);
    } catch {
      this.#decompHost = -1;
      throw new BlockError(
        "EIO",
        `qcow2: could not decompress cluster at 0x${offset.toString(16)}`,
      );
    }
    this.#decompHost = offset;
    return this.#decompBuf;
  }

  // ---------------------------------------------------------------- write

  #checkWritable(): void {
    if (this.#readOnly) throw new BlockError("EPERM", "Image is read-only");
  }

  /** Sets the dirty bit before the first metadata change of a lazy-refcounts image. */
  async #beginMetadataChange(): Promise<void> {
    if (this.#dirtyOnDisk || this.#h.version < 3) return;
    if (!(this.#h.compatibleFeatures & QCOW2_COMPAT_LAZY_REFCOUNTS)) return;
    this.#h.incompatibleFeatures |= QCOW2_INCOMPAT_DIRTY;
    await this.#writeIncompat();
    this.#dirtyOnDisk = true;
  }

  /**
   * Queues a data write at a host offset, merged with the pending one when host-contiguous.
   * The run holds views of the caller's buffers: write() flushes it before returning.
   */
  async #queueData(host: number, data: Uint8Array): Promise<void> {
    if (this.#runLen && this.#runHost + this.#runLen === host && this.#runLen < (16 << 20)) {
      const parts = this.#runParts;
      const last = parts[parts.length - 1];
      if (last.buffer === data.buffer && last.byteOffset + last.length === data.byteOffset) {
        parts[parts.length - 1] = new Uint8Array(
          last.buffer,
          last.byteOffset,
          last.length + data.length,
        );
      } else {
        parts.push(data);
      }
      this.#runLen += data.length;
      return;
    }
    await this.#flushRun();
    this.#runHost = host;
    this.#runParts.push(data);
    this.#runLen = data.length;
  }

  async #flushRun(): Promise<void> {
    if (!this.#runLen) return;
    const parts = this.#runParts;
    const host = this.#runHost;
    this.#runParts = [];
    this.#runLen = 0;
    this.#runHost = -1;
    let pos = host;
    for (const part of parts) {
      await this.#io.write(pos, part);
      pos += part.length;
    }
  }

  async #write(offset: number, data: Uint8Array, fua?: boolean): Promise<void> {
    this.#checkRange(offset, data.length);
    this.#checkWritable();
    const cs = this.#cs;
    let pos = 0;
    while (pos < data.length) {
      const g = offset + pos;
      const gc = Math.floor(g / cs);
      const inoff = g - gc * cs;
      const n = Math.min(cs - inoff, data.length - pos);
      const chunk = data.subarray(pos, pos + n);
      const t = await this.#l2For(gc);
      let done = false;
      if (t && !this.#extL2 && this.#l1Copied(Math.floor(gc / this.#l2Entries))) {
        const e = (gc % this.#l2Entries) * 8;
        const hi = t.dv.getUint32(e);
        const lo = t.dv.getUint32(e + 4);
        if ((hi & COPIED_HI) && !(hi & COMPRESSED_HI) && !(lo & ZERO_LO)) {
          const host = entryOffset(hi, lo);
          if (host) {
            this.#checkDataOffset(host);
            await this.#queueData(host + inoff, chunk);
            done = true;
          }
        }
      }
      if (!done && inoff === 0 && !this.#extL2 && data.length - pos >= 2 * cs) {
        // Whole unallocated clusters in a row (a copy into a new image): one run.
        const k = await this.#writeNewRun(
          gc,
          data.subarray(pos, pos + Math.floor((data.length - pos) / cs) * cs),
        );
        if (k) {
          pos += k * cs;
          continue;
        }
      }
      if (!done) {
        await this.#beginMetadataChange();
        await this.#writeSlow(gc, inoff, chunk);
      }
      pos += n;
    }
    // The caller may reuse its buffer once we return.
    await this.#flushRun();
    if (fua) await this.#flush();
  }

  /**
   * Writes whole clusters starting at guest cluster gc that hold nothing yet (unallocated or
   * plain zero, within one L2 table) into one contiguous new host run. Returns how many
   * clusters it wrote; 0 when fewer than two qualify.
   */
  async #writeNewRun(gc: number, data: Uint8Array): Promise<number> {
    const cs = this.#cs;
    const first = gc % this.#l2Entries;
    const max = Math.min(data.length / cs, this.#l2Entries - first);
    const t0 = await this.#l2For(gc);
    const empty = (t: L2Table, i: number) => {
      const e = (first + i) * 8;
      return t.dv.getUint32(e) === 0 && (t.dv.getUint32(e + 4) & ~ZERO_LO) === 0;
    };
    let k = 0;
    if (t0) { while (k < max && empty(t0, k)) k++; }
    else k = max;
    if (k < 2) return 0;
    await this.#beginMetadataChange();
    const t = await this.#l2ForWrite(gc);
    const host = await this.#refs.alloc(k);
    for (let i = 0; i < k; i++) {
      const e = (first + i) * 8;
      const h = host + i * cs;
      t.dv.setUint32(e, Math.floor(h / TWO32) | COPIED_HI);
      t.dv.setUint32(e + 4, h >>> 0);
    }
    t.dirty = true;
    await this.#queueData(host, data.subarray(0, k * cs));
    return k;
  }

  /**
   * Before guest data goes into an existing cluster: it must be aligned, inside the file and
   * not hold metadata (QEMU's overlap check), else the image is corrupt and nothing is written.
   */
  #checkDataOffset(host: number): void {
    const cs = this.#cs;
    const h = this.#h;
    const hex = `0x${host.toString(16)}`;
    if (host < cs || host % cs) {
      throw this.#corruption(`data cluster offset ${hex} is invalid`);
    }
    if (host >= Math.max(Math.ceil(this.#io.length / cs) * cs, this.#allocEnd)) {
      throw this.#corruption(`data cluster offset ${hex} is beyond the end of the file`);
    }
    const within = (start: number, bytes: number) => host >= start && host < start + bytes;
    if (
      within(h.l1TableOffset, h.l1Size * 8) ||
      within(h.refcountTableOffset, h.refcountTableClusters * cs) ||
      (h.nbSnapshots && within(h.snapshotsOffset, this.#snapTableBytes())) ||
      this.#refs.isBlock(host) || this.#isActiveL2(host)
    ) {
      throw this.#corruption(`data write at ${hex} would overwrite metadata`);
    }
  }

  #l2Set: Set<number> | null = null;
  #snapBytes = -1;
  #snapBytesOf: Qcow2Snapshot[] | null = null;

  #snapTableBytes(): number {
    if (this.#snapBytesOf !== this.#snapshots) {
      this.#snapBytes = serializeSnapshotTable(this.#snapshots).length;
      this.#snapBytesOf = this.#snapshots;
    }
    return this.#snapBytes;
  }

  /** Whether a host offset is one of the active L2 tables (set rebuilt after L1 changes). */
  #isActiveL2(host: number): boolean {
    if (!this.#l2Set) {
      const set = new Set<number>();
      for (let i = 0; i < this.#h.l1Size; i++) {
        const off = this.#l1Entry(i);
        if (off) set.add(off);
      }
      this.#l2Set = set;
    }
    return this.#l2Set.has(host);
  }

  /** An L2 table for guest cluster gc that this image owns alone (allocating or copying it). */
  async #l2ForWrite(gc: number): Promise<L2Table> {
    const l1i = Math.floor(gc / this.#l2Entries);
    const old = this.#l1Entry(l1i);
    if (old && this.#l1Copied(l1i)) return await this.#l2At(old);
    const off = await this.#refs.alloc(1);
    const buf = new Uint8Array(this.#cs);
    if (old) {
      const src = await this.#l2At(old);
      buf.set(src.buf);
      this.#refs.free(old, 1);
    }
    this.#cache.drop(off);
    const t: L2Table = { offset: off, buf, dv: new DataView(buf.buffer), dirty: true };
    await this.#cache.put(t);
    this.#setL1(l1i, off, true);
    return t;
  }

  /** Frees what an L2 entry pointed at (deferred until the entry's change is on disk). */
  #freeEntry(hi: number, lo: number): void {
    if (hi & COMPRESSED_HI) {
      const d = this.#compressedDesc(hi, lo);
      const start = d.offset - (d.offset % 512);
      this.#refs.freeBytes(start, d.size + (d.offset % 512));
      if (d.offset === this.#decompHost) this.#decompHost = -1;
      return;
    }
    const host = entryOffset(hi, lo);
    if (host) this.#refs.free(host, 1);
  }

  /**
   * Writes part of one guest cluster that cannot be written in place: allocates (copying on
   * write what the write does not cover), fills a preallocated zero cluster, or writes
   * subclusters.
   */
  async #writeSlow(gc: number, inoff: number, chunk: Uint8Array): Promise<void> {
    const cs = this.#cs;
    const t = await this.#l2ForWrite(gc);
    const e = (gc % this.#l2Entries) * this.#es;
    const hi = t.dv.getUint32(e);
    const lo = t.dv.getUint32(e + 4);
    const oldHost = hi & COMPRESSED_HI ? 0 : entryOffset(hi, lo);
    const copied = (hi & COPIED_HI) !== 0 && !(hi & COMPRESSED_HI);
    const base = gc * cs;
    if (this.#extL2) {
      await this.#writeSubclusters(t, e, gc, inoff, chunk, hi, lo, oldHost, copied);
      return;
    }
    const zeroFlag = !(hi & COMPRESSED_HI) && (lo & ZERO_LO) !== 0 && this.#h.version >= 3;
    if (chunk.length < cs && !oldHost && !(hi & COMPRESSED_HI) && this.#io.growable) {
      // The cluster reads as zeros now: a new cluster past the end of the file needs only the
      // written bytes (the file is extended to whole clusters before metadata points there).
      const zeroNow = zeroFlag || !this.backing || base >= this.#backingLength;
      const host = zeroNow ? await this.#refs.alloc(1) : 0;
      if (host && host >= this.#io.length && host >= this.#runEnd()) {
        await this.#queueData(host + inoff, chunk);
        if (host + cs > this.#allocEnd) this.#allocEnd = host + cs;
        t.dv.setUint32(e, Math.floor(host / TWO32) | COPIED_HI);
        t.dv.setUint32(e + 4, host >>> 0);
        t.dirty = true;
        return;
      }
      if (host) {
        // Inside the file: the old bytes of that cluster must become zeros.
        const content = new Uint8Array(cs);
        content.set(chunk, inoff);
        await this.#queueData(host, content);
        t.dv.setUint32(e, Math.floor(host / TWO32) | COPIED_HI);
        t.dv.setUint32(e + 4, host >>> 0);
        t.dirty = true;
        return;
      }
    }
    // Build the whole cluster unless the write covers it.
    let content = chunk;
    if (chunk.length < cs) {
      content = new Uint8Array(cs);
      if (!zeroFlag) {
        await this.#flushRun();
        await this.#readGuest(base, content);
      }
      content.set(chunk, inoff);
    }
    if (oldHost && copied) {
      // A preallocated zero cluster we own: fill it in place.
      this.#checkDataOffset(oldHost);
      await this.#queueData(oldHost, content === chunk ? chunk : content);
      t.dv.setUint32(e + 4, lo & ~ZERO_LO);
      t.dirty = true;
      return;
    }
    const host = await this.#refs.alloc(1);
    await this.#queueData(host, content);
    t.dv.setUint32(e, Math.floor(host / TWO32) | COPIED_HI);
    t.dv.setUint32(e + 4, host >>> 0);
    t.dirty = true;
    this.#freeEntry(hi, lo);
  }

  async #writeSubclusters(
    t: L2Table,
    e: number,
    gc: number,
    inoff: number,
    chunk: Uint8Array,
    hi: number,
    lo: number,
    oldHost: number,
    copied: boolean,
  ): Promise<void> {
    const cs = this.#cs;
    const scs = this.#scSize;
    const base = gc * cs;
    await this.#flushRun();
    if ((hi & COMPRESSED_HI) || (oldHost && !copied)) {
      // Shared or compressed: copy the whole cluster as it reads now.
      const content = new Uint8Array(cs);
      await this.#readGuest(base, content);
      content.set(chunk, inoff);
      const host = await this.#refs.alloc(1);
      await this.#io.write(host, content);
      t.dv.setUint32(e, Math.floor(host / TWO32) | COPIED_HI);
      t.dv.setUint32(e + 4, host >>> 0);
      t.dv.setUint32(e + 8, 0);
      t.dv.setUint32(e + 12, 0xffffffff);
      t.dirty = true;
      this.#freeEntry(hi, lo);
      return;
    }
    const s0 = Math.floor(inoff / scs);
    const s1 = Math.floor((inoff + chunk.length - 1) / scs);
    const start = s0 * scs;
    const end = (s1 + 1) * scs;
    let content = chunk;
    if (start !== inoff || end !== inoff + chunk.length) {
      content = new Uint8Array(end - start);
      await this.#readGuest(base + start, content);
      content.set(chunk, inoff - start);
    }
    let host = oldHost;
    if (!host) {
      host = await this.#refs.alloc(1);
      t.dv.setUint32(e, Math.floor(host / TWO32) | COPIED_HI);
      t.dv.setUint32(e + 4, host >>> 0);
    } else {
      this.#checkDataOffset(host);
    }
    await this.#io.write(host + start, content);
    let mask = 0;
    for (let s = s0; s <= s1; s++) mask |= 1 << s;
    t.dv.setUint32(e + 12, (t.dv.getUint32(e + 12) | mask) >>> 0);
    t.dv.setUint32(e + 8, (t.dv.getUint32(e + 8) & ~mask) >>> 0);
    t.dirty = true;
  }

  // ---------------------------------------------------------------- compressed writes

  /** Compresses one whole cluster with the image's compression type and writes it. */
  async writeCompressed(offset: number, data: Uint8Array): Promise<void> {
    let whole = data;
    if (data.length < this.#cs) {
      // The last cluster of an image that ends mid-cluster: compressed as a whole cluster
      // padded with zeros, as QEMU does.
      whole = new Uint8Array(this.#cs);
      whole.set(data);
    }
    await loadCompression();
    await this.writeCompressedPrepared(
      offset,
      compressCluster(whole, this.#compression, this.#cs),
      data,
    );
  }

  /** The image's compression type, for callers that compress in Workers. */
  get compressionType(): Qcow2CompressionType {
    return this.#compression;
  }

  /**
   * Writes one whole cluster given its compressed form (from compressCluster with this image's
   * type), or stored plainly when compressed is undefined (it did not shrink).
   */
  async #writeCompressedPrepared(
    offset: number,
    compressed: Uint8Array | undefined,
    raw: Uint8Array,
  ): Promise<void> {
    const cs = this.#cs;
    this.#checkWritable();
    if (offset % cs) throw new BlockError("EINVAL", "Compressed writes must be cluster aligned");
    const len = Math.min(cs, this.#h.size - offset);
    this.#checkRange(offset, len);
    if (raw.length < cs && offset + raw.length < this.#h.size) {
      throw new BlockError("EINVAL", "Compressed writes must cover a whole cluster");
    }
    if (compressed && raw.length < cs) {
      // The image's last, partial cluster: QEMU reads back a whole cluster, so compress the
      // zero-padded cluster here whatever the caller compressed.
      const whole = new Uint8Array(cs);
      whole.set(raw.subarray(0, len));
      await loadCompression();
      compressed = compressCluster(whole, this.#compression, cs);
    }
    if (!compressed) {
      await this.#write(offset, raw.subarray(0, len));
      return;
    }
    await this.#beginMetadataChange();
    await this.#flushRun();
    const gc = offset / cs;
    const t = await this.#l2ForWrite(gc);
    const e = (gc % this.#l2Entries) * this.#es;
    const hi = t.dv.getUint32(e);
    const lo = t.dv.getUint32(e + 4);
    const host = await this.#refs.allocBytes(compressed.length);
    await this.#io.write(host, compressed);
    const hiShift = csizeShift(this.#cb) - 32;
    const sectors = Math.floor((host + compressed.length - 1) / 512) - Math.floor(host / 512);
    t.dv.setUint32(e, (COMPRESSED_HI | (sectors << hiShift) | Math.floor(host / TWO32)) >>> 0);
    t.dv.setUint32(e + 4, host >>> 0);
    if (host === this.#decompHost) this.#decompHost = -1;
    if (this.#extL2) {
      t.dv.setUint32(e + 8, 0);
      t.dv.setUint32(e + 12, 0);
    }
    t.dirty = true;
    this.#freeEntry(hi, lo);
  }

  // ---------------------------------------------------------------- zeroes and discard

  async #writeZeroes(offset: number, length: number, opts: WriteZeroesOptions = {}): Promise<void> {
    this.#checkRange(offset, length);
    this.#checkWritable();
    const cs = this.#cs;
    const end = offset + length;
    // v3 marks clusters zero; v2 can only drop them, and only without a backing file.
    const canFlag = this.#h.version >= 3 || (!this.backing && !!opts.mayUnmap);
    let pos = offset;
    while (pos < end) {
      const gc = Math.floor(pos / cs);
      const inoff = pos - gc * cs;
      const cend = Math.min(end, gc * cs + cs, this.#h.size);
      const whole = inoff === 0 && (cend === gc * cs + cs || cend === this.#h.size);
      if (whole && canFlag) {
        await this.#zeroCluster(gc, !!opts.mayUnmap, false);
      } else if (this.#extL2) {
        await this.#zeroSubclusters(gc, inoff, cend - pos, opts);
      } else if (!(await this.#readsZero(gc))) {
        // As QEMU: a cluster that does not read as zeros already needs zero bytes written.
        if (opts.noFallback) throw new BlockError("ENOTSUP", "write zeroes not supported");
        await this.#writeZeroBuffers(pos, cend - pos);
      }
      pos = cend;
    }
  }

  /** Whether a whole (standard) cluster reads as zeros without touching data. */
  async #readsZero(gc: number): Promise<boolean> {
    const lk: Lookup = { kind: Kind.Unallocated, host: 0, bytes: 0 };
    await this.#lookup(gc * this.#cs, this.#cs, lk);
    if (lk.kind === Kind.Zero) return true;
    return lk.kind === Kind.Unallocated &&
      (!this.backing || gc * this.#cs >= this.#backingLength);
  }

  async #writeZeroBuffers(offset: number, length: number): Promise<void> {
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let p = offset; p < offset + length; p += chunk.length) {
      await this.#write(p, chunk.subarray(0, Math.min(chunk.length, offset + length - p)));
    }
  }

  /** Zeroes or discards one whole cluster through its L2 entry. */
  async #zeroCluster(gc: number, unmap: boolean, discard: boolean): Promise<void> {
    const existing = await this.#l2For(gc);
    const v3 = this.#h.version >= 3;
    if (!existing) {
      // Nothing allocated: it already reads as zero unless a backing file shows through.
      if (!this.backing || (discard && !v3)) return;
    }
    await this.#beginMetadataChange();
    await this.#flushRun();
    const t = await this.#l2ForWrite(gc);
    const e = (gc % this.#l2Entries) * this.#es;
    const hi = t.dv.getUint32(e);
    const lo = t.dv.getUint32(e + 4);
    const host = hi & COMPRESSED_HI ? 0 : entryOffset(hi, lo);
    const owned = host !== 0 && (hi & COPIED_HI) !== 0;
    const keep = !unmap && !discard && owned;
    if (this.#extL2) {
      if (keep) {
        t.dv.setUint32(e + 8, 0xffffffff);
        t.dv.setUint32(e + 12, 0);
      } else {
        t.dv.setUint32(e, 0);
        t.dv.setUint32(e + 4, 0);
        t.dv.setUint32(e + 8, discard && !this.backing && !host ? 0 : 0xffffffff);
        t.dv.setUint32(e + 12, 0);
        this.#freeEntry(hi, lo);
      }
    } else if (keep) {
      t.dv.setUint32(e + 4, (lo | ZERO_LO) >>> 0);
    } else {
      const zeroFlag = v3 && (!discard || this.backing || hi || lo);
      t.dv.setUint32(e, 0);
      t.dv.setUint32(e + 4, zeroFlag ? ZERO_LO : 0);
      this.#freeEntry(hi, lo);
    }
    t.dirty = true;
  }

  async #zeroSubclusters(
    gc: number,
    inoff: number,
    len: number,
    opts: WriteZeroesOptions,
  ): Promise<void> {
    const scs = this.#scSize;
    const s0 = Math.ceil(inoff / scs);
    const s1 = Math.floor((inoff + len) / scs); // exclusive
    const cs = this.#cs;
    // Partial subclusters at the edges are written as zero bytes.
    if (s0 >= s1) {
      await this.#writeZeroBuffers(gc * cs + inoff, len);
      return;
    }
    if (inoff < s0 * scs) await this.#writeZeroBuffers(gc * cs + inoff, s0 * scs - inoff);
    if (s1 * scs < inoff + len) {
      await this.#writeZeroBuffers(gc * cs + s1 * scs, inoff + len - s1 * scs);
    }
    void opts;
    await this.#beginMetadataChange();
    await this.#flushRun();
    const t0 = await this.#l2For(gc);
    if (t0) {
      const e0 = (gc % this.#l2Entries) * this.#es;
      const h0 = t0.dv.getUint32(e0);
      if ((h0 & COMPRESSED_HI) || (entryOffset(h0, t0.dv.getUint32(e0 + 4)) && !(h0 & COPIED_HI))) {
        // Shared or compressed: fall back to a full copy with zero bytes.
        await this.#writeZeroBuffers(gc * cs + s0 * scs, (s1 - s0) * scs);
        return;
      }
    }
    const t = await this.#l2ForWrite(gc);
    const e = (gc % this.#l2Entries) * this.#es;
    let mask = 0;
    for (let s = s0; s < s1; s++) mask |= 1 << s;
    t.dv.setUint32(e + 8, (t.dv.getUint32(e + 8) | mask) >>> 0);
    t.dv.setUint32(e + 12, (t.dv.getUint32(e + 12) & ~mask) >>> 0);
    t.dirty = true;
  }

  async #discard(offset: number, length: number): Promise<void> {
    this.#checkRange(offset, length);
    this.#checkWritable();
    const cs = this.#cs;
    // Only whole clusters can be discarded; the partial ends are left alone, as QEMU does.
    const first = Math.ceil(offset / cs);
    const endPos = offset + length;
    const last = endPos === this.#h.size ? Math.ceil(endPos / cs) : Math.floor(endPos / cs);
    for (let gc = first; gc < last; gc++) await this.#zeroCluster(gc, true, true);
  }

  // ---------------------------------------------------------------- block status

  async #blockStatus(offset: number, length: number): Promise<BlockStatus> {
    this.#checkRange(offset, 0);
    const max = Math.min(length, this.#h.size - offset);
    await this.#flushRun();
    const lk = this.#lk;
    await this.#lookup(offset, max, lk);
    const kind = lk.kind;
    const host0 = lk.host;
    let len = lk.bytes;
    while (len < max) {
      await this.#lookup(offset + len, max - len, lk);
      if (lk.kind !== kind) break;
      if (kind === Kind.Normal && lk.host !== host0 + len) break;
      if (kind === Kind.Zero && (lk.host !== 0) !== (host0 !== 0)) break;
      if (kind === Kind.Zero && host0 && lk.host !== host0 + len) break;
      len += lk.bytes;
    }
    switch (kind) {
      case Kind.Normal: {
        // As QEMU: the host file tells whether the mapped bytes are a hole (reads as zeros),
        // and the extent ends where the file's status changes.
        let zero = false;
        if (this.#io.growable) {
          const fst = await this.file.blockStatus(host0, len);
          zero = fst.zero;
          if (!(host0 >= this.#io.length && fst.zero)) len = Math.min(len, fst.length);
        }
        return {
          length: len,
          allocated: true,
          zero,
          data: true,
          offset: host0,
          file: this.filename,
        };
      }
      case Kind.Zero:
        return host0
          ? {
            length: len,
            allocated: true,
            zero: true,
            data: false,
            offset: host0,
            file: this.filename,
          }
          : { length: len, allocated: true, zero: true, data: false };
      case Kind.Compressed:
        return { length: len, allocated: true, zero: false, data: true, compressed: true };
      default: {
        const zero = !this.backing || offset >= this.#backingLength;
        if (this.backing && offset < this.#backingLength) {
          len = Math.min(len, this.#backingLength - offset);
        }
        return { length: len, allocated: false, zero, data: false };
      }
    }
  }

  // ---------------------------------------------------------------- flush and close

  /** Writes a dirty L2 table being evicted: its new refcounts go first. */
  /** End of the pending run (host offset), or 0. */
  #runEnd(): number {
    return this.#runLen ? this.#runHost + this.#runLen : 0;
  }

  /** Extends the file over clusters written only in part, before metadata points at them. */
  async #coverAllocated(): Promise<void> {
    if (this.#allocEnd > this.#io.length) await this.#io.truncate(this.#allocEnd);
  }

  async #writeBackL2(t: L2Table): Promise<void> {
    await this.#flushRun();
    await this.#coverAllocated();
    await this.#refs.flush();
    await this.#io.write(t.offset, t.buf);
    t.dirty = false;
  }

  /** Writes all cached metadata in dependency order and syncs the file. */
  async #flush(): Promise<void> {
    if (this.#closed || this.#readOnly) return;
    await this.#flushRun();
    await this.#coverAllocated();
    await this.#refs.flush(); // syncs when it wrote anything
    const dirty = this.#cache.dirtyTables();
    for (const t of dirty) {
      await this.#io.write(t.offset, t.buf);
      t.dirty = false;
    }
    if (this.#l1Dirty.size) {
      if (dirty.length) await this.#io.sync(); // L2 tables before the L1 entries
      await this.#writeL1Entries();
    }
    if (this.#refs.hasPendingFrees) {
      await this.#io.sync(); // the references are gone on disk before the counts drop
      await this.#refs.applyFrees(true);
      await this.#refs.flush();
    }
    await this.#io.sync();
  }

  async #writeL1Entries(): Promise<void> {
    const idx = [...this.#l1Dirty].sort((a, b) => a - b);
    this.#l1Dirty.clear();
    let i = 0;
    while (i < idx.length) {
      let j = i;
      while (j + 1 < idx.length && idx[j + 1] === idx[j] + 1) j++;
      const a = idx[i] * 8;
      const b = idx[j] * 8 + 8;
      await this.#io.write(this.#h.l1TableOffset + a, this.#l1.subarray(a, b));
      i = j + 1;
    }
  }

  async #close(): Promise<void> {
    if (this.#closed) return;
    try {
      if (!this.#readOnly) {
        await this.#flush();
        if (this.#dirtyOnDisk && (this.#h.incompatibleFeatures & QCOW2_INCOMPAT_DIRTY)) {
          this.#h.incompatibleFeatures &= ~QCOW2_INCOMPAT_DIRTY;
          await this.#writeIncompat();
          this.#dirtyOnDisk = false;
        }
      }
    } finally {
      this.#closed = true;
      this.#cache.clear();
      await this.file.close();
      if (this.backing) await this.backing.close();
    }
  }

  // ---------------------------------------------------------------- placeholders filled below

  /** Finds a snapshot as qemu-img does: by ID first, then by name. */
  #findSnapshot(idOrName: string): number {
    const byId = this.#snapshots.findIndex((s) => s.id === idOrName);
    return byId >= 0 ? byId : this.#snapshots.findIndex((s) => s.name === idOrName);
  }

  /** Creates an internal snapshot of the current state (qemu-img snapshot -c). */
  async #createSnapshot(
    name: string,
    extra: { vmStateSize?: number; vmClockNsec?: number; icount?: number; dateMs?: number } = {},
  ): Promise<Qcow2SnapshotInfo> {
    this.#checkWritable();
    if (this.#snapshots.length >= QCOW_MAX_SNAPSHOTS) {
      throw new BlockError("EFBIG", "Too many snapshots");
    }
    await this.#flush();
    const h = this.#h;
    const cs = this.#cs;
    let maxId = 0;
    for (const s of this.#snapshots) {
      const n = Number(s.id);
      if (Number.isInteger(n) && n > maxId) maxId = n;
    }
    if (!(await this.#treeCanGainRef(this.#l1, h.l1Size))) {
      throw new BlockError("EINVAL", "-22 (Invalid argument)");
    }
    // The snapshot's own copy of the L1 table.
    let l1Off = 0;
    if (h.l1Size) {
      l1Off = await this.#refs.alloc(Math.ceil(h.l1Size * 8 / cs));
      await this.#refs.flush();
      await this.#io.write(l1Off, this.#l1.slice());
      await this.#io.sync();
    }
    // Everything the active table reaches gains a reference (and loses COPIED).
    await this.#updateTreeRefcounts(this.#l1, h.l1Size, 1, true);
    await this.#flush();
    const now = extra.dateMs ?? Date.now();
    const snap: Qcow2Snapshot = {
      l1TableOffset: l1Off,
      l1Size: h.l1Size,
      id: String(maxId + 1),
      name,
      dateSec: Math.floor(now / 1000),
      dateNsec: (now % 1000) * 1000000,
      vmClockNsec: extra.vmClockNsec ?? 0,
      vmStateSize: extra.vmStateSize ?? 0,
      diskSize: h.size,
      icount: extra.icount ?? 0,
      extraUnknown: new Uint8Array(0),
      extraDataSize: 24,
    };
    await this.#writeSnapshotTable([...this.#snapshots, snap]);
    return this.listSnapshots().at(-1)!;
  }

  /** Reverts the active state to a snapshot (qemu-img snapshot -a). */
  async #applySnapshot(idOrName: string): Promise<void> {
    this.#checkWritable();
    const i = this.#findSnapshot(idOrName);
    if (i < 0) throw new BlockError("EINVAL", "Failed to load snapshot: No such file or directory");
    const sn = this.#snapshots[i];
    await this.#flush();
    const h = this.#h;
    const cs = this.#cs;
    if (sn.l1Size > h.l1Size) await this.#growL1(sn.l1Size);
    const snL1 = new Uint8Array(sn.l1Size * 8);
    if (sn.l1Size) {
      if (sn.l1TableOffset % cs) throw this.#corruption("snapshot L1 table offset unaligned");
      await this.#io.read(sn.l1TableOffset, snL1);
    }
    if (!(await this.#treeCanGainRef(snL1, sn.l1Size))) {
      throw new BlockError("EINVAL", "Failed to load snapshot: Invalid argument");
    }
    // The snapshot's tree gains the active table's reference first, so a crash only leaks.
    await this.#updateTreeRefcounts(snL1, sn.l1Size, 1, false, sn.l1TableOffset);
    await this.#flush();
    const oldL1 = this.#l1.slice();
    const newL1 = new Uint8Array(h.l1Size * 8);
    newL1.set(snL1);
    await this.#io.write(h.l1TableOffset, newL1);
    await this.#io.sync();
    this.#l1 = newL1;
    this.#l1dv = new DataView(newL1.buffer);
    this.#l2Set = null;
    this.#l1Dirty.clear();
    await this.#updateTreeRefcounts(oldL1, oldL1.length / 8, -1, false);
    await this.#updateTreeRefcounts(this.#l1, h.l1Size, 0, true);
    if (sn.diskSize !== undefined && sn.diskSize !== h.size) {
      h.size = sn.diskSize;
      await this.#writeSize();
    }
    await this.#flush();
  }

  /** Deletes a snapshot by ID or name (qemu-img snapshot -d). */
  async #deleteSnapshot(idOrName: string): Promise<void> {
    this.#checkWritable();
    const i = this.#findSnapshot(idOrName);
    if (i < 0) throw new BlockError("EINVAL", "snapshot not found");
    const sn = this.#snapshots[i];
    await this.#flush();
    await this.#writeSnapshotTable(this.#snapshots.filter((_, k) => k !== i));
    const snL1 = new Uint8Array(sn.l1Size * 8);
    if (sn.l1Size) await this.#io.read(sn.l1TableOffset, snL1);
    await this.#updateTreeRefcounts(snL1, sn.l1Size, -1, false);
    if (sn.l1Size) {
      const n = Math.ceil(sn.l1Size * 8 / this.#cs);
      for (let k = 0; k < n; k++) await this.#dropRef(sn.l1TableOffset + k * this.#cs);
    }
    await this.#updateTreeRefcounts(this.#l1, this.#h.l1Size, 0, true);
    await this.#flush();
  }

  /** Immediately drops one reference to a host cluster; gives it back when unused. */
  async #dropRef(off: number): Promise<number> {
    const rc = await this.#refs.add(Math.floor(off / this.#cs), -1);
    if (rc === 0) {
      this.#cache.drop(off);
      if (Math.floor(this.#decompHost / this.#cs) === Math.floor(off / this.#cs)) {
        this.#decompHost = -1;
      }
      await this.#io.discard(off, this.#cs);
    }
    return rc;
  }

  /**
   * QEMU's update_snapshot_refcount: adds `addend` (1, -1 or 0) to the refcount of every L2
   * table and data cluster a tree of tables reaches, and sets COPIED where the count is one.
   * `active` says the L1 is the active table (its entries are updated in memory).
   */
  async #updateTreeRefcounts(
    l1: Uint8Array,
    l1Size: number,
    addend: number,
    active: boolean,
    writeBackAt = 0,
  ): Promise<void> {
    const cs = this.#cs;
    const dv = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
    let modified = false;
    for (let i = 0; i < l1Size; i++) {
      const l2off = entryOffset(dv.getUint32(i * 8), dv.getUint32(i * 8 + 4));
      if (!l2off) continue;
      const t = await this.#l2At(l2off);
      let l2rc: number;
      if (addend < 0) {
        // Entries first: once the table's count drops to zero it must not be touched.
        await this.#updateL2Entries(t, addend);
        l2rc = await this.#dropRef(l2off);
      } else {
        if (addend) await this.#refs.add(l2off / cs, addend);
        l2rc = await this.#refs.get(l2off / cs);
        await this.#updateL2Entries(t, addend);
      }
      if (active) this.#setL1(i, l2off, l2rc === 1);
      else if (writeBackAt && l2rc > 0) {
        const hi = dv.getUint32(i * 8);
        const nhi = l2rc === 1 ? (hi | COPIED_HI) >>> 0 : (hi & ~COPIED_HI) >>> 0;
        if (nhi !== hi) {
          dv.setUint32(i * 8, nhi);
          modified = true;
        }
      }
    }
    // As QEMU, an inactive L1 table gets its COPIED flags brought up to date too.
    if (modified) await this.#io.write(writeBackAt, l1.subarray(0, l1Size * 8));
  }

  /** Whether every cluster a tree reaches can take one more reference (narrow refcounts). */
  async #treeCanGainRef(l1: Uint8Array, l1Size: number): Promise<boolean> {
    const cs = this.#cs;
    const max = this.#refs.max;
    if (max >= 0xffff) return true;
    const adds = new Map<number, number>();
    const bump = (c: number) => adds.set(c, (adds.get(c) ?? 0) + 1);
    const dv = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
    for (let i = 0; i < l1Size; i++) {
      const l2off = entryOffset(dv.getUint32(i * 8), dv.getUint32(i * 8 + 4));
      if (!l2off) continue;
      bump(l2off / cs);
      const t = await this.#l2At(l2off);
      for (let e = 0; e < cs; e += this.#es) {
        const hi = t.dv.getUint32(e);
        const lo = t.dv.getUint32(e + 4);
        if (hi & COMPRESSED_HI) {
          const d = this.#compressedDesc(hi, lo);
          const last = Math.floor((d.offset + d.size - 1) / cs);
          for (let c = Math.floor(d.offset / cs); c <= last; c++) bump(c);
        } else if (entryOffset(hi, lo)) bump(entryOffset(hi, lo) / cs);
      }
    }
    for (const [c, n] of adds) if ((await this.#refs.get(c)) + n > max) return false;
    return true;
  }

  async #updateL2Entries(t: L2Table, addend: number): Promise<void> {
    const cs = this.#cs;
    const es = this.#es;
    for (let e = 0; e < cs; e += es) {
      const hi = t.dv.getUint32(e);
      const lo = t.dv.getUint32(e + 4);
      if (hi & COMPRESSED_HI) {
        if (!addend) continue;
        const d = this.#compressedDesc(hi, lo);
        const first = Math.floor(d.offset / cs);
        const last = Math.floor((d.offset + d.size - 1) / cs);
        for (let c = first; c <= last; c++) {
          if (addend < 0) await this.#dropRef(c * cs);
          else await this.#refs.add(c, addend);
        }
        continue;
      }
      const host = entryOffset(hi, lo);
      if (!host) continue;
      let rc: number;
      if (addend < 0) rc = await this.#dropRef(host);
      else {
        if (addend) await this.#refs.add(host / cs, addend);
        rc = await this.#refs.get(host / cs);
      }
      const nhi = rc === 1 ? (hi | COPIED_HI) >>> 0 : (hi & ~COPIED_HI) >>> 0;
      if (nhi !== hi) {
        t.dv.setUint32(e, nhi);
        t.dirty = true;
      }
    }
  }

  /** Writes a new snapshot table, points the header at it, then frees the old one. */
  async #writeSnapshotTable(snaps: Qcow2Snapshot[]): Promise<void> {
    const h = this.#h;
    const cs = this.#cs;
    const bytes = serializeSnapshotTable(snaps);
    let off = 0;
    if (snaps.length) {
      off = await this.#refs.alloc(Math.ceil(bytes.length / cs));
      await this.#refs.flush();
      await this.#io.write(off, bytes);
      await this.#io.sync();
    }
    const oldOff = h.snapshotsOffset;
    const oldSize = serializeSnapshotTable(this.#snapshots).length;
    const hadOld = this.#snapshots.length > 0;
    h.nbSnapshots = snaps.length;
    h.snapshotsOffset = off;
    const b = new Uint8Array(12);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, snaps.length);
    dv.setUint32(4, Math.floor(off / TWO32));
    dv.setUint32(8, off >>> 0);
    await this.#io.write(60, b);
    await this.#io.sync();
    this.#snapshots = snaps;
    if (hadOld && oldOff) {
      const n = Math.ceil(oldSize / cs);
      for (let k = 0; k < n; k++) await this.#dropRef(oldOff + k * cs);
      await this.#refs.flush();
    }
  }

  /** Rewrites the backing file name and format in the header (qemu-img rebase -u). */
  async #changeBackingFile(name?: string, fmt?: string): Promise<void> {
    this.#checkWritable();
    if (name && new TextEncoder().encode(name).length > 1023) {
      throw new BlockError("EINVAL", "Backing file name too long");
    }
    if (fmt && !name) throw new BlockError("EINVAL", "Backing format given without backing file");
    await this.#flush();
    const h = this.#h;
    h.backingFile = name || undefined;
    if (!name) {
      h.backingFileOffset = 0;
      h.backingFileSize = 0;
    }
    setBackingFormat(h, name ? fmt : undefined);
    await this.#writeHeader();
  }
  /** Changes image options in place (qemu-img amend): compat, lazy_refcounts, refcount_bits. */
  async #amend(opts: Qcow2AmendOptions): Promise<void> {
    this.#checkWritable();
    const creationOnly = (name: string) =>
      new BlockError(
        "EINVAL",
        `Invalid parameter '${name}'\nThis option is only supported for image creation`,
      );
    if (opts.clusterSize !== undefined) throw creationOnly("cluster_size");
    if (opts.compressionType !== undefined) throw creationOnly("compression_type");
    if (opts.extendedL2 !== undefined) throw creationOnly("extended_l2");
    const h = this.#h;
    let version = h.version;
    if (opts.compat !== undefined) {
      if (opts.compat === "0.10" || opts.compat === "v2") version = 2;
      else if (opts.compat === "1.1" || opts.compat === "v3") version = 3;
      else {
        throw new BlockError(
          "EINVAL",
          `Parameter 'version' does not accept value '${opts.compat}'`,
        );
      }
    }
    const hint = "(use compat=1.1 or greater)";
    const lazy = opts.lazyRefcounts ??
      ((h.compatibleFeatures & QCOW2_COMPAT_LAZY_REFCOUNTS) !== 0n);
    if (opts.refcountBits !== undefined) {
      const o = Math.log2(opts.refcountBits);
      if (!Number.isInteger(o) || o < 0 || o > 6) {
        throw new BlockError(
          "EINVAL",
          "Refcount width must be a power of two and may not exceed 64 bits",
        );
      }
      if (version < 3 && opts.refcountBits !== 16) {
        throw new BlockError(
          "EINVAL",
          `Refcount widths other than 16 bits require compatibility level 1.1 or above ${hint}`,
        );
      }
    }
    if (version < 3 && opts.lazyRefcounts) {
      throw new BlockError(
        "EINVAL",
        `Lazy refcounts only supported with compatibility level 1.1 and above ${hint}`,
      );
    }
    if (version < 3 && h.version >= 3) {
      const bad = h.incompatibleFeatures & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_COMPRESSION);
      if (bad) {
        throw new BlockError(
          "ENOTSUP",
          `Cannot downgrade an image with incompatible features 0x${bad.toString(16)} set`,
        );
      }
      const order = opts.refcountBits !== undefined
        ? Math.log2(opts.refcountBits)
        : h.refcountOrder;
      if (order !== 4) {
        throw new BlockError("ENOTSUP", "compat=0.10 requires refcount_bits=16");
      }
    }
    await this.#flush();
    if (opts.size !== undefined && opts.size !== h.size) {
      await this.#truncate(opts.size, { shrink: true });
    }
    if (opts.backingFile !== undefined || opts.backingFormat !== undefined) {
      await this.#changeBackingFile(opts.backingFile ?? h.backingFile, opts.backingFormat);
    }
    if (opts.refcountBits !== undefined && Math.log2(opts.refcountBits) !== h.refcountOrder) {
      await this.#changeRefcountOrder(Math.log2(opts.refcountBits));
    }
    if (version < 3 && h.version >= 3) {
      await this.#downgrade();
    } else if (version >= 3 && h.version < 3) {
      h.version = 3;
      h.headerLength = 112;
      if (this.#cs > 4096 && !h.extensions.some((e) => e.type === QCOW2_EXT_MAGIC_FEATURE_TABLE)) {
        h.extensions.push({
          type: QCOW2_EXT_MAGIC_FEATURE_TABLE,
          data: encodeFeatureTable(QCOW2_FEATURE_NAMES),
        });
      }
      await this.#writeHeader();
    }
    if (h.version >= 3 && lazy !== ((h.compatibleFeatures & QCOW2_COMPAT_LAZY_REFCOUNTS) !== 0n)) {
      await this.#flush();
      if (lazy) h.compatibleFeatures |= QCOW2_COMPAT_LAZY_REFCOUNTS;
      else {
        h.compatibleFeatures &= ~QCOW2_COMPAT_LAZY_REFCOUNTS;
        h.incompatibleFeatures &= ~QCOW2_INCOMPAT_DIRTY;
        this.#dirtyOnDisk = false;
      }
      await this.#writeHeader();
    }
  }

  /** compat=0.10: zero clusters become real zeros, then the header becomes version 2. */
  async #downgrade(): Promise<void> {
    const h = this.#h;
    const cs = this.#cs;
    // Snapshot tables must not hold zero clusters: v2 cannot express them.
    for (const sn of this.#snapshots) {
      const l1 = new Uint8Array(sn.l1Size * 8);
      if (sn.l1Size) await this.#io.read(sn.l1TableOffset, l1);
      const dv = new DataView(l1.buffer);
      for (let i = 0; i < sn.l1Size; i++) {
        const off = entryOffset(dv.getUint32(i * 8), dv.getUint32(i * 8 + 4));
        if (!off) continue;
        const t = await this.#l2At(off);
        for (let e = 0; e < cs; e += 8) {
          if (!(t.dv.getUint32(e) & COMPRESSED_HI) && (t.dv.getUint32(e + 4) & ZERO_LO)) {
            throw new BlockError(
              "ENOTSUP",
              "Cannot downgrade an image with zero clusters in internal snapshots",
            );
          }
        }
      }
    }
    const zero = new Uint8Array(cs);
    for (let gc = 0; gc * cs < h.size; gc++) {
      const t = await this.#l2For(gc);
      if (!t) {
        gc = (Math.floor(gc / this.#l2Entries) + 1) * this.#l2Entries - 1;
        continue;
      }
      const e = (gc % this.#l2Entries) * 8;
      const hi = t.dv.getUint32(e);
      const lo = t.dv.getUint32(e + 4);
      if (hi & COMPRESSED_HI) {
        if (this.#compression !== "zlib") {
          throw new BlockError(
            "ENOTSUP",
            "Cannot downgrade an image with zstd-compressed clusters",
          );
        }
        continue;
      }
      if (!(lo & ZERO_LO)) continue;
      if (!entryOffset(hi, lo) && !this.backing && !h.backingFile) {
        const w = await this.#l2ForWrite(gc);
        w.dv.setUint32(e + 4, 0);
        w.dirty = true;
      } else {
        await this.#write(gc * cs, zero.subarray(0, Math.min(cs, h.size - gc * cs)));
      }
    }
    await this.#flush();
    h.version = 2;
    h.headerLength = QCOW2_V2_HEADER_LENGTH;
    h.incompatibleFeatures = 0n;
    h.compatibleFeatures = 0n;
    h.autoclearFeatures = 0n;
    h.compressionType = 0;
    this.#compression = "zlib";
    h.extensions = h.extensions.filter((x) => x.type !== QCOW2_EXT_MAGIC_FEATURE_TABLE);
    this.#dirtyOnDisk = false;
    await this.#writeHeader();
  }

  /**
   * Rewrites the refcount structure with another entry width: new blocks and table go after
   * everything in use, the header switches to them in one write, and the old structure's
   * clusters are free in the new one.
   */
  async #changeRefcountOrder(order: number): Promise<void> {
    const cs = this.#cs;
    await this.#flush();
    const refs = this.#refs;
    const last = await refs.lastUsedCluster();
    const max = maxRefcount(order);
    const old = new Set<number>();
    for (let c = 0; c < refs.tableClusters; c++) old.add(refs.tableOffset / cs + c);
    for (const b of refs.table) if (b) old.add(b / cs);
    const perBlock = (cs * 8) >> order;
    let blocks = 0;
    let tableClusters = 0;
    for (;;) {
      const end = last + blocks + tableClusters;
      const nb = Math.ceil(end / perBlock);
      const nt = Math.max(1, Math.ceil(nb * 8 / cs));
      if (nb === blocks && nt === tableClusters) break;
      blocks = nb;
      tableClusters = nt;
    }
    const blockBufs: Uint8Array[] = [];
    for (let b = 0; b < blocks; b++) blockBufs.push(new Uint8Array(cs));
    const total = last + blocks + tableClusters;
    for (let c = 0; c < total; c++) {
      const v = c >= last ? 1 : old.has(c) ? 0 : await refs.get(c);
      if (!v) continue;
      if (v > max) {
        throw new BlockError(
          "EINVAL",
          `Cannot decrease refcount entry width to ${1 << order} bits: cluster at offset ` +
            `0x${(c * cs).toString(16)} has a refcount of ${v}`,
        );
      }
      setRefcount(blockBufs[Math.floor(c / perBlock)], c % perBlock, order, v);
    }
    const table = new Uint8Array(tableClusters * cs);
    const tdv = new DataView(table.buffer);
    for (let b = 0; b < blocks; b++) {
      const off = (last + b) * cs;
      tdv.setUint32(b * 8, Math.floor(off / TWO32));
      tdv.setUint32(b * 8 + 4, off >>> 0);
      await this.#io.write(off, blockBufs[b]);
    }
    const tableOff = (last + blocks) * cs;
    await this.#io.write(tableOff, table);
    await this.#io.sync();
    const h = this.#h;
    h.refcountOrder = order;
    h.refcountTableOffset = tableOff;
    h.refcountTableClusters = tableClusters;
    await this.#writeHeader();
    this.#refs = await Qcow2Refcounts.load(
      this.#io,
      this.#cb,
      order,
      tableOff,
      tableClusters,
      (off, clusters) => this.#onRefTableMoved(off, clusters),
    );
    for (const c of [...old].sort((a, b) => a - b)) await this.#io.discard(c * cs, cs);
  }

  /** Changes the virtual size: grows (with optional preallocation) or, with shrink, shrinks. */
  async #truncate(length: number, opts: TruncateOptions = {}): Promise<void> {
    this.#checkWritable();
    const h = this.#h;
    const old = h.size;
    if (length % 512) throw new BlockError("EINVAL", "The new size must be a multiple of 512");
    if (this.#snapshots.length && h.version < 3) {
      throw new BlockError("ENOTSUP", "Can't resize a v2 image which has snapshots");
    }
    const prealloc = opts.preallocation ?? "off";
    if (length < old) {
      if (!opts.shrink) {
        throw new BlockError("EINVAL", "Use the --shrink option to perform a shrink operation.");
      }
      if (prealloc !== "off") {
        throw new BlockError("ENOTSUP", "Preallocation can't be used for shrinking an image");
      }
      await this.#shrink(length);
      return;
    }
    if (length === old) return;
    await this.#flush();
    const need = this.#l1Needed(length);
    if (need > h.l1Size) await this.#growL1(need);
    h.size = length;
    await this.#writeSize();
    if (prealloc !== "off") await this.#preallocate(old, length, prealloc);
    if (this.backing && this.#backingLength > old && h.version >= 3) {
      // The new area must not show the backing file's bytes.
      await this.#writeZeroes(old, Math.min(this.#backingLength, length) - old);
      await this.#flush();
    }
  }

  async #writeSize(): Promise<void> {
    const b = new Uint8Array(8);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, Math.floor(this.#h.size / TWO32));
    dv.setUint32(4, this.#h.size >>> 0);
    await this.#io.write(24, b);
    await this.#io.sync();
  }

  /** Moves the active L1 table to a new place with room for `entries` entries. */
  async #growL1(entries: number): Promise<void> {
    const h = this.#h;
    const cs = this.#cs;
    if (entries > QCOW_MAX_L1_SIZE / 8) throw new BlockError("EFBIG", "Active L1 table too large");
    await this.#flush();
    const bytes = entries * 8;
    const off = await this.#refs.alloc(Math.ceil(bytes / cs));
    await this.#refs.flush();
    const l1 = new Uint8Array(bytes);
    l1.set(this.#l1);
    await this.#io.write(off, l1);
    await this.#io.sync();
    const oldOff = h.l1TableOffset;
    const oldSize = h.l1Size;
    h.l1TableOffset = off;
    h.l1Size = entries;
    const b = new Uint8Array(12);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, entries);
    dv.setUint32(4, Math.floor(off / TWO32));
    dv.setUint32(8, off >>> 0);
    await this.#io.write(36, b);
    await this.#io.sync();
    this.#l1 = l1;
    this.#l1dv = new DataView(l1.buffer);
    this.#l2Set = null;
    if (oldSize) {
      this.#refs.free(oldOff, Math.ceil(oldSize * 8 / cs));
      await this.#refs.applyFrees(true);
      await this.#refs.flush();
    }
  }

  /**
   * Allocates data clusters for [from, to) as QEMU does: per L2 table, its table first, then one
   * contiguous run for its unallocated entries; falloc/full then reserve or zero the runs.
   */
  async #preallocate(
    from: number,
    to: number,
    mode: "metadata" | "falloc" | "full",
  ): Promise<void> {
    const cs = this.#cs;
    if (mode !== "metadata") {
      await this.#preallocateData(from, to, mode);
      return;
    }
    const runs: number[] = [];
    await this.#beginMetadataChange();
    const last = Math.ceil(to / cs);
    let gc = Math.floor(from / cs);
    const allocated = (t: L2Table, g: number) => {
      const e = (g % this.#l2Entries) * this.#es;
      const hi = t.dv.getUint32(e);
      return (hi & COMPRESSED_HI) !== 0 || entryOffset(hi, t.dv.getUint32(e + 4)) !== 0;
    };
    while (gc < last) {
      const t = await this.#l2ForWrite(gc);
      const tableEnd = Math.min(last, (Math.floor(gc / this.#l2Entries) + 1) * this.#l2Entries);
      while (gc < tableEnd && allocated(t, gc)) gc++;
      let n = 0;
      while (gc + n < tableEnd && !allocated(t, gc + n)) n++;
      if (!n) continue;
      const host = await this.#refs.alloc(n);
      for (let i = 0; i < n; i++) {
        const e = ((gc + i) % this.#l2Entries) * this.#es;
        const h = host + i * cs;
        t.dv.setUint32(e, Math.floor(h / TWO32) | COPIED_HI);
        t.dv.setUint32(e + 4, h >>> 0);
        // Extended L2: subclusters stay unallocated or zero; the cluster is reserved.
        if (this.#extL2) t.dv.setUint32(e + 12, 0);
      }
      t.dirty = true;
      runs.push(host, n * cs);
      gc += n;
    }
    let end = 0;
    for (let k = 0; k < runs.length; k += 2) end = Math.max(end, runs[k] + runs[k + 1]);
    if (end > this.#allocEnd) this.#allocEnd = end;
    await this.#flush();
    if (mode !== "metadata") {
      for (let k = 0; k < runs.length; k += 2) {
        await this.#io.preallocate(runs[k], runs[k + 1], mode);
      }
      await this.#io.sync();
    }
  }

  /**
   * falloc/full as QEMU lays them out: refcount structures for everything first (a new area
   * after the last used cluster), then the data clusters in one run reserved in the file, then
   * the L2 entries (their tables go wherever clusters are free).
   */
  async #preallocateData(from: number, to: number, mode: "falloc" | "full"): Promise<void> {
    const cs = this.#cs;
    await this.#beginMetadataChange();
    await this.#flush();
    const fileClusters = Math.ceil(this.#io.length / cs);
    const start = (await this.#refs.lastUsedCluster(fileClusters)) * cs;
    const first = Math.floor(from / cs);
    const nbData = Math.ceil(to / cs) - first;
    if (nbData <= 0) return;
    const nbL2 = Math.ceil(nbData / this.#l2Entries) + 1;
    const dataStart = await this.#refs.refcountArea(start, nbData + nbL2, true, 0, 0);
    await this.#refs.allocAt(dataStart, nbData);
    await this.#refs.flush();
    if (this.#io.length < dataStart) await this.#io.truncate(dataStart);
    await this.#io.truncate(dataStart + nbData * cs, mode);
    for (let i = 0; i < nbData; i++) {
      const gc = first + i;
      const t = await this.#l2ForWrite(gc);
      const e = (gc % this.#l2Entries) * this.#es;
      const hi = t.dv.getUint32(e);
      const lo = t.dv.getUint32(e + 4);
      const host = dataStart + i * cs;
      t.dv.setUint32(e, Math.floor(host / TWO32) | COPIED_HI);
      t.dv.setUint32(e + 4, host >>> 0);
      if (this.#extL2) t.dv.setUint32(e + 12, 0);
      t.dirty = true;
      this.#freeEntry(hi, lo);
    }
    await this.#flush();
  }

  async #shrink(length: number): Promise<void> {
    const h = this.#h;
    const cs = this.#cs;
    await this.#flush();
    const first = Math.ceil(length / cs);
    const last = Math.ceil(h.size / cs);
    for (let gc = first; gc < last; gc++) {
      const t = await this.#l2For(gc);
      if (!t) {
        gc = (Math.floor(gc / this.#l2Entries) + 1) * this.#l2Entries - 1;
        continue;
      }
      const e = (gc % this.#l2Entries) * this.#es;
      const hi = t.dv.getUint32(e);
      const lo = t.dv.getUint32(e + 4);
      if (!hi && !lo && (!this.#extL2 || !t.dv.getUint32(e + 8))) continue;
      const w = await this.#l2ForWrite(gc);
      w.buf.fill(0, e, e + this.#es);
      w.dirty = true;
      this.#freeEntry(hi, lo);
    }
    // L1 entries wholly beyond the new end lose their tables.
    const keep = this.#l1Needed(length);
    for (let i = keep; i < h.l1Size; i++) {
      const off = this.#l1Entry(i);
      if (!off) continue;
      this.#setL1(i, 0, false);
      this.#cache.drop(off);
      this.#refs.free(off, 1);
    }
    await this.#flush();
    h.size = length;
    await this.#writeSize();
    const lastUsed = await this.#refs.lastUsedCluster();
    if (lastUsed * cs < this.#io.length) await this.#io.truncate(lastUsed * cs);
  }

  /**
   * A dirty image (lazy refcounts, not closed cleanly) has refcounts that may lag behind its
   * tables: repair them as QEMU does on a read-write open, then re-read the header.
   */
  async #repairDirty(): Promise<void> {
    const res = await checkQcow2(this.file, { repair: "all" });
    if (res.failure || res.checkErrors || res.corruptions > res.corruptionsFixed) {
      throw new BlockError("EIO", "Could not repair dirty image");
    }
    await this.#io.refreshLength();
    const first = new Uint8Array(Math.min(this.#io.length, this.#cs));
    await this.#io.read(0, first);
    Object.assign(this.#h, parseHeader(first));
  }
}

function wrap(e: unknown): unknown {
  if (e instanceof Qcow2FormatError) return new BlockError("EINVAL", e.message);
  return e;
}

// Registered here as well as in block/mod.ts, so that backing files open (and create finds its
// backing file) whichever module a caller imported the driver through.
registerFormat("qcow2", (file, opts) => Qcow2Format.open(file, opts), probeQcow2);
