/**
 * {@link Qcow2Refcounts}: the refcount table and refcount blocks of an image, cached in memory
 * with write-back. Allocation searches for free clusters (creating self-describing refcount
 * blocks as the image grows); frees are deferred until the tables that referenced the clusters
 * are on disk (see Qcow2Format.flush), so that a crash can only leak.
 */
import { BlockError } from "../types.ts";
import { getRefcount, maxRefcount, QCOW_MAX_REFTABLE_SIZE, setRefcount } from "./format.ts";
import type { Qcow2Io } from "./io.ts";

/** Called when the refcount table moved (the header must be rewritten). */
export type RefcountTableMoved = (offset: number, clusters: number) => Promise<void>;

/** Refcount metadata of one image. */
export class Qcow2Refcounts {
  readonly clusterSize: number;
  readonly order: number;
  readonly max: number;
  /** Refcount entries per block, and its log2. */
  readonly perBlock: number;
  readonly perBlockBits: number;
  /** Host offsets of the refcount blocks (0: none); may outgrow the table's on-disk room. */
  table: number[];
  tableOffset: number;
  tableClusters: number;
  #blocks = new Map<number, Uint8Array>();
  #dirtyBlocks = new Set<number>();
  /** Table entries changed in memory (new blocks hooked in). */
  #dirtyEntries = new Set<number>();
  /** Lowest cluster index that may be free. */
  freeHint = 0;
  /** Host cluster ranges (start index, count) to decrement once their referrers are on disk. */
  #pendingFrees: number[] = [];
  /** Where the next compressed cluster may go (0: start a new cluster). */
  freeByteOffset = 0;

  constructor(
    readonly io: Qcow2Io,
    readonly clusterBits: number,
    order: number,
    table: number[],
    tableOffset: number,
    tableClusters: number,
    readonly onTableMoved: RefcountTableMoved,
  ) {
    this.clusterSize = 2 ** clusterBits;
    this.order = order;
    this.max = maxRefcount(order);
    this.perBlockBits = clusterBits + 3 - order;
    this.perBlock = 2 ** this.perBlockBits;
    this.table = table;
    this.tableOffset = tableOffset;
    this.tableClusters = tableClusters;
  }

  /** Reads the refcount table from the file. */
  static async load(
    io: Qcow2Io,
    clusterBits: number,
    order: number,
    tableOffset: number,
    tableClusters: number,
    onTableMoved: RefcountTableMoved,
  ): Promise<Qcow2Refcounts> {
    const bytes = new Uint8Array(tableClusters * 2 ** clusterBits);
    await io.read(tableOffset, bytes);
    const dv = new DataView(bytes.buffer);
    // Trailing empty entries carry nothing; keep the array short for scans. (Found first: a
    // new image's table is one used entry in a cluster of them, read at every open.)
    const words = new Uint32Array(bytes.buffer);
    let n = bytes.length / 8;
    while (n > 0 && !(words[2 * n - 2] | words[2 * n - 1])) n--;
    const table = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const hi = dv.getUint32(i * 8);
      const lo = dv.getUint32(i * 8 + 4) & 0xfffffe00;
      table[i] = hi * 0x100000000 + (lo >>> 0);
    }
    return new Qcow2Refcounts(
      io,
      clusterBits,
      order,
      table,
      tableOffset,
      tableClusters,
      onTableMoved,
    );
  }

  async #block(bi: number): Promise<Uint8Array | undefined> {
    let b = this.#blocks.get(bi);
    if (b) return b;
    const off = bi < this.table.length ? this.table[bi] : 0;
    if (!off) return undefined;
    if (off % this.clusterSize) {
      throw new BlockError("EIO", `qcow2: refcount block offset ${off} unaligned`);
    }
    b = new Uint8Array(this.clusterSize);
    await this.io.read(off, b);
    this.#blocks.set(bi, b);
    return b;
  }

  /** The refcount of host cluster `index`. */
  async get(index: number): Promise<number> {
    const b = await this.#block(Math.floor(index / this.perBlock));
    return b ? getRefcount(b, index % this.perBlock, this.order) : 0;
  }

  /** Adds delta to the refcount of host cluster `index` (its block must exist when delta > 0). */
  async add(index: number, delta: number): Promise<number> {
    const bi = Math.floor(index / this.perBlock);
    let b = await this.#block(bi);
    if (!b) {
      if (delta < 0) throw new BlockError("EIO", `qcow2: refcount of cluster ${index} underflows`);
      await this.#ensureBlock(bi);
      b = (await this.#block(bi))!;
    }
    const i = index % this.perBlock;
    const v = getRefcount(b, i, this.order) + delta;
    if (v < 0) throw new BlockError("EIO", `qcow2: refcount of cluster ${index} underflows`);
    if (v > this.max) throw new BlockError("EINVAL", "qcow2: refcount overflow");
    setRefcount(b, i, this.order, v);
    this.#dirtyBlocks.add(bi);
    if (v === 0) {
      if (index < this.freeHint) this.freeHint = index;
      // A freed cluster may be reused for anything: stop packing compressed data into it.
      if (this.freeByteOffset && Math.floor(this.freeByteOffset / this.clusterSize) === index) {
        this.freeByteOffset = 0;
      }
    }
    return v;
  }

  /** Adds one to the refcounts of clusters c..c+n-1 (all free, their blocks existing). */
  async #addRun(c: number, n: number): Promise<void> {
    for (let i = c; i < c + n;) {
      const bi = Math.floor(i / this.perBlock);
      const b = this.#blocks.get(bi);
      if (!b) {
        await this.add(i++, 1);
        continue;
      }
      // Within one cached block: no promise per cluster.
      const stop = Math.min(c + n, (bi + 1) * this.perBlock);
      for (; i < stop; i++) {
        const k = i - bi * this.perBlock;
        const v = getRefcount(b, k, this.order) + 1;
        if (v > this.max) throw new BlockError("EINVAL", "qcow2: refcount overflow");
        setRefcount(b, k, this.order, v);
      }
      this.#dirtyBlocks.add(bi);
    }
  }

  /** First run of n free clusters at or after the hint (or `from`, when later). */
  async #findFree(n: number, from = 0): Promise<number> {
    let start = Math.max(this.freeHint, from);
    let run = 0;
    for (let i = start;; i++) {
      const bi = Math.floor(i / this.perBlock);
      if (bi >= this.table.length || !this.table[bi]) {
        // No block: every cluster it would describe is free.
        const room = (bi + 1) * this.perBlock - i;
        if (run + room >= n) return start;
        run += room;
        i += room - 1;
        continue;
      }
      const b = this.#blocks.get(bi) ?? await this.#block(bi);
      if (!b || getRefcount(b, i - bi * this.perBlock, this.order) === 0) {
        if (++run >= n) return start;
      } else {
        run = 0;
        start = i + 1;
      }
    }
  }

  /** Entries the on-disk refcount table has room for. */
  get tableCapacity(): number {
    return this.tableClusters * this.clusterSize / 8;
  }

  #blockSet: Set<number> | null = null;
  #blockSetLength = -1;

  /** Whether a host offset is a refcount block. */
  isBlock(offset: number): boolean {
    if (!this.#blockSet || this.#blockSetLength !== this.table.length) {
      this.#blockSet = new Set(this.table.filter((x) => x));
      this.#blockSetLength = this.table.length;
    }
    return this.#blockSet.has(offset);
  }

  #hasBlock(bi: number): boolean {
    return bi < this.table.length && this.table[bi] !== 0;
  }

  /**
   * Creates refcount block bi as QEMU's alloc_refcount_block does: at the first free cluster at
   * or after `from` (past the range being allocated), describing itself when it falls in its own
   * range, else counted in the block that covers it (created first, after this one's cluster).
   * A full refcount table grows through {@link refcountArea}.
   */
  async #ensureBlock(bi: number, from = 0): Promise<void> {
    for (;;) {
      if (this.#hasBlock(bi)) return;
      const r = await this.#findFree(1, from);
      const rbi = Math.floor(r / this.perBlock);
      if (rbi !== bi && !this.#hasBlock(rbi)) {
        // r is taken for block bi: the block counting r goes after it. Then start over.
        await this.#ensureBlock(rbi, r + 1);
        continue;
      }
      const block = new Uint8Array(this.clusterSize);
      if (rbi === bi) setRefcount(block, r % this.perBlock, this.order, 1);
      else await this.add(r, 1);
      if (bi < this.tableCapacity) {
        while (this.table.length <= bi) this.table.push(0);
        this.table[bi] = r * this.clusterSize;
        this.#blockSet = null;
        this.#blocks.set(bi, block);
        this.#dirtyBlocks.add(bi);
        this.#dirtyEntries.add(bi);
      } else {
        // The table is full: new blocks and a bigger table go after everything in use, the
        // new block hooked into it directly.
        this.#blocks.set(bi, block);
        await this.io.write(r * this.clusterSize, block);
        const used = Math.ceil(Math.max(from, r + 1) / this.perBlock);
        await this.refcountArea(
          used * this.perBlock * this.clusterSize,
          0,
          false,
          bi,
          r * this.clusterSize,
        );
      }
      return;
    }
  }

  /**
   * QEMU's qcow2_refcount_area: writes, at `start` (cluster aligned, free space to the end of
   * the file), the refcount blocks still missing to cover everything up to the end of the new
   * structures plus `additional` clusters, then a new refcount table holding all blocks, and
   * switches the header to it; frees the old table. Returns the first offset after the new
   * structures.
   */
  async refcountArea(
    start: number,
    additional: number,
    exact: boolean,
    newIndex: number,
    newOffset: number,
  ): Promise<number> {
    const cs = this.clusterSize;
    const total = refblockCount(start / cs + additional, cs, this.order, !exact);
    const areaIndex = Math.floor(start / cs / this.perBlock);
    let tableSize = exact ? total : total + Math.ceil(total / 2);
    tableSize = Math.ceil(tableSize / (cs / 8)) * (cs / 8);
    const tableClusters = tableSize * 8 / cs;
    if (tableSize * 8 > QCOW_MAX_REFTABLE_SIZE) {
      throw new BlockError("EFBIG", "qcow2: refcount table too large");
    }
    const table = new Array<number>(Math.max(total, this.table.length)).fill(0);
    this.table.forEach((v, i) => (table[i] = v));
    if (newOffset) table[newIndex] = newOffset;
    let missing = 0;
    for (let i = areaIndex; i < total; i++) if (!table[i]) missing++;
    const tableOffset = start + missing * cs;
    const end = tableOffset + tableClusters * cs;
    let blockOffset = start;
    for (let i = areaIndex; i < total; i++) {
      let block: Uint8Array;
      if (table[i]) {
        this.table = table; // #block() reads through the table
        block = (await this.#block(i))!;
      } else {
        block = new Uint8Array(cs);
        table[i] = blockOffset;
        this.#blocks.set(i, block);
        blockOffset += cs;
      }
      const first = i * this.perBlock * cs;
      if (first < end) {
        const j0 = first < start ? (start - first) / cs : 0;
        const j1 = Math.min((end - first) / cs, this.perBlock);
        for (let j = j0; j < j1; j++) setRefcount(block, j, this.order, 1);
      }
      this.#dirtyBlocks.add(i);
    }
    this.table = table;
    this.#blockSet = null;
    await this.#writeBlocks();
    await this.io.sync();
    const bytes = new Uint8Array(tableClusters * cs);
    const dv = new DataView(bytes.buffer);
    table.forEach((v, i) => {
      if (i < tableSize) {
        dv.setUint32(i * 8, Math.floor(v / 0x100000000));
        dv.setUint32(i * 8 + 4, v >>> 0);
      }
    });
    await this.io.write(tableOffset, bytes);
    await this.io.sync();
    const oldOffset = this.tableOffset;
    const oldClusters = this.tableClusters;
    this.tableOffset = tableOffset;
    this.tableClusters = tableClusters;
    this.#dirtyEntries.clear();
    await this.onTableMoved(tableOffset, tableClusters);
    // The old table is freed but, as in QEMU (pass-discard-other is off), not discarded.
    for (let c = 0; c < oldClusters; c++) await this.add(oldOffset / cs + c, -1);
    return end;
  }

  /** Takes n clusters at a given place (they must be free), as qcow2_alloc_clusters_at. */
  async allocAt(offset: number, n: number): Promise<void> {
    const c0 = offset / this.clusterSize;
    for (let i = 0; i < n; i++) {
      if ((await this.get(c0 + i)) !== 0) {
        throw new BlockError("EIO", `qcow2: cluster ${c0 + i} is not free`);
      }
      await this.add(c0 + i, 1);
    }
  }

  /** Allocates n contiguous clusters (refcount 1); returns the host offset. */
  async alloc(n: number): Promise<number> {
    for (;;) {
      const c = await this.#findFree(n);
      let changed = false;
      const b0 = Math.floor(c / this.perBlock);
      const b1 = Math.floor((c + n - 1) / this.perBlock);
      for (let bi = b0; bi <= b1; bi++) {
        if (!(bi < this.table.length && this.table[bi])) {
          await this.#ensureBlock(bi, c + n);
          changed = true;
        }
      }
      if (changed) {
        let free = true;
        for (let i = 0; i < n && free; i++) free = (await this.get(c + i)) === 0;
        if (!free) continue;
      }
      await this.#addRun(c, n);
      // As QEMU's free_cluster_index: the search goes on after the run just taken (a run of
      // n > 1 too; else every multi-cluster allocation rescans all the clusters before it).
      if (this.freeHint <= c) this.freeHint = c + n;
      return c * this.clusterSize;
    }
  }

  /**
   * Allocates `size` bytes for a compressed cluster, packing several into one host cluster as
   * QEMU does; every host cluster the bytes touch gains one reference.
   */
  async allocBytes(size: number): Promise<number> {
    const cs = this.clusterSize;
    let offset = this.freeByteOffset;
    if (offset) {
      const rc = await this.get(Math.floor(offset / cs));
      if (rc === 0 || rc >= this.max) offset = 0;
    }
    if (offset && cs - (offset % cs) >= size) {
      await this.add(Math.floor(offset / cs), 1);
    } else {
      const c = await this.alloc(1);
      if (offset && c === Math.ceil(offset / cs) * cs) {
        // Spans from the partly used cluster into the new, contiguous one.
        await this.add(Math.floor(offset / cs), 1);
      } else {
        offset = c;
      }
    }
    this.freeByteOffset = (offset + size) % cs ? offset + size : 0;
    return offset;
  }

  /** Queues a decrement of n host clusters starting at byte offset `off` (applied on flush). */
  free(off: number, n: number): void {
    this.#pendingFrees.push(Math.floor(off / this.clusterSize), n);
  }

  /** Queues the decrement of every cluster a byte range touches (compressed clusters). */
  freeBytes(off: number, length: number): void {
    const cs = this.clusterSize;
    const first = Math.floor(off / cs);
    const last = Math.floor((off + length - 1) / cs);
    this.#pendingFrees.push(first, last - first + 1);
  }

  get hasPendingFrees(): boolean {
    return this.#pendingFrees.length > 0;
  }

  get dirty(): boolean {
    return this.#dirtyBlocks.size > 0 || this.#dirtyEntries.size > 0;
  }

  /** Applies queued frees: decrements, and gives clusters that drop to zero back to the file. */
  async applyFrees(discard: boolean): Promise<void> {
    const list = this.#pendingFrees;
    this.#pendingFrees = [];
    const cs = this.clusterSize;
    let runStart = -1;
    let runLen = 0;
    const flushRun = async () => {
      if (runLen && discard) await this.io.discard(runStart * cs, runLen * cs);
      runLen = 0;
    };
    for (let k = 0; k < list.length; k += 2) {
      for (let i = list[k]; i < list[k] + list[k + 1]; i++) {
        if ((await this.add(i, -1)) === 0) {
          if (this.freeByteOffset && Math.floor(this.freeByteOffset / cs) === i) {
            this.freeByteOffset = 0;
          }
          if (runLen && runStart + runLen === i) runLen++;
          else {
            await flushRun();
            runStart = i;
            runLen = 1;
          }
        }
      }
    }
    await flushRun();
  }

  /**
   * Writes dirty refcount blocks, then (after a sync) the refcount table, moving it to a larger
   * place first when it outgrew its clusters. Returns whether anything was written.
   */
  async flush(): Promise<boolean> {
    if (!this.dirty) return false;
    await this.#writeBlocks();
    if (this.#dirtyEntries.size) {
      await this.io.sync(); // blocks before the table entries that point at them
      const b = new Uint8Array(8);
      const dv = new DataView(b.buffer);
      for (const i of [...this.#dirtyEntries].sort((x, y) => x - y)) {
        dv.setUint32(0, Math.floor(this.table[i] / 0x100000000));
        dv.setUint32(4, this.table[i] >>> 0);
        await this.io.write(this.tableOffset + i * 8, b);
      }
      this.#dirtyEntries.clear();
    }
    await this.io.sync();
    return true;
  }

  async #writeBlocks(): Promise<void> {
    for (const bi of [...this.#dirtyBlocks].sort((a, b) => a - b)) {
      await this.io.write(this.table[bi], this.#blocks.get(bi)!);
    }
    this.#dirtyBlocks.clear();
  }

  /** Drops cached blocks (after someone else rewrote the refcounts on disk). */
  reset(table: number[], tableOffset: number, tableClusters: number): void {
    this.table = table;
    this.#blockSet = null;
    this.tableOffset = tableOffset;
    this.tableClusters = tableClusters;
    this.#blocks.clear();
    this.#dirtyBlocks.clear();
    this.#dirtyEntries.clear();
    this.#pendingFrees = [];
    this.freeHint = 0;
    this.freeByteOffset = 0;
  }

  /** Index one past the last cluster (below `limit`, when given) with a non-zero refcount. */
  async lastUsedCluster(limit = Infinity): Promise<number> {
    for (let bi = this.table.length - 1; bi >= 0; bi--) {
      const b = await this.#block(bi);
      if (!b) continue;
      const top = Math.min(this.perBlock, limit - bi * this.perBlock);
      for (let i = top - 1; i >= 0; i--) {
        if (getRefcount(b, i, this.order)) return bi * this.perBlock + i + 1;
      }
    }
    return 0;
  }
}

/**
 * Refcount blocks needed to count `clusters` clusters plus the refcount structures themselves
 * (QEMU's qcow2_refcount_metadata_size; `generous` leaves room for the table to grow by half).
 */
export function refblockCount(
  clusters: number,
  clusterSize: number,
  order: number,
  generous: boolean,
): number {
  const perTableCluster = clusterSize / 8;
  const perBlock = clusterSize * 8 / 2 ** order;
  let table = 0;
  let blocks = 0;
  let n = 0;
  let last: number;
  do {
    last = n;
    blocks = Math.ceil((clusters + table + blocks) / perBlock);
    table = Math.ceil(blocks / perTableCluster);
    n = clusters + blocks + table;
    if (n === last && generous) {
      clusters += Math.ceil(table / 2);
      n = 0;
      generous = false;
    }
  } while (n !== last);
  return blocks;
}
