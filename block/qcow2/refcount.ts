/**
 * {@link Qcow2Refcounts}: the refcount table and refcount blocks of an image, cached in memory
 * with write-back. Allocation searches for free clusters (creating self-describing refcount
 * blocks as the image grows); frees are deferred until the tables that referenced the clusters
 * are on disk (see Qcow2Format.flush), so that a crash can only leak.
 */
import { BlockError } from "../types.ts";
import { getRefcount, maxRefcount, setRefcount } from "./format.ts";
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
  #tableDirty = false;
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
    const table: number[] = [];
    for (let i = 0; i < bytes.length / 8; i++) {
      const hi = dv.getUint32(i * 8);
      const lo = dv.getUint32(i * 8 + 4) & 0xfffffe00;
      table.push(hi * 0x100000000 + (lo >>> 0));
    }
    // Trailing empty entries carry nothing; keep the array short for scans.
    while (table.length && table[table.length - 1] === 0) table.pop();
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
    if (v === 0 && index < this.freeHint) this.freeHint = index;
    return v;
  }

  /** First run of n free clusters at or after the hint. */
  async #findFree(n: number): Promise<number> {
    let start = this.freeHint;
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
      if ((await this.get(i)) === 0) {
        if (++run >= n) return start;
      } else {
        run = 0;
        start = i + 1;
      }
    }
  }

  /** Creates refcount block bi; returns after it exists (possibly describing itself). */
  async #ensureBlock(bi: number): Promise<void> {
    for (;;) {
      if (bi < this.table.length && this.table[bi]) return;
      const r = await this.#findFree(1);
      const rbi = Math.floor(r / this.perBlock);
      if (rbi !== bi && !(rbi < this.table.length && this.table[rbi])) {
        await this.#ensureBlock(rbi);
        continue;
      }
      while (this.table.length <= bi) this.table.push(0);
      this.table[bi] = r * this.clusterSize;
      this.#blocks.set(bi, new Uint8Array(this.clusterSize));
      this.#dirtyBlocks.add(bi);
      this.#tableDirty = true;
      await this.add(r, 1);
      if (this.freeHint === r) this.freeHint = r + 1;
      return;
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
          await this.#ensureBlock(bi);
          changed = true;
        }
      }
      if (changed) {
        let free = true;
        for (let i = 0; i < n && free; i++) free = (await this.get(c + i)) === 0;
        if (!free) continue;
      }
      for (let i = 0; i < n; i++) await this.add(c + i, 1);
      if (n === 1 && this.freeHint <= c) this.freeHint = c + 1;
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
    if (offset && (await this.get(Math.floor(offset / cs))) >= this.max) offset = 0;
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
    return this.#dirtyBlocks.size > 0 || this.#tableDirty;
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
    let moved: { offset: number; clusters: number; oldOffset: number; oldClusters: number } | null =
      null;
    if (this.#tableDirty && this.table.length * 8 > this.tableClusters * this.clusterSize) {
      // Grow: allocate room for the table plus the blocks that describe the new room.
      for (let extra = 1;; extra++) {
        const clusters = Math.ceil((this.table.length + 1) * 8 / this.clusterSize) + extra;
        const off = await this.alloc(clusters);
        if (this.table.length * 8 <= clusters * this.clusterSize) {
          moved = {
            offset: off,
            clusters,
            oldOffset: this.tableOffset,
            oldClusters: this.tableClusters,
          };
          break;
        }
        this.free(off, clusters);
        await this.applyFrees(false);
      }
    }
    await this.#writeBlocks();
    if (this.#tableDirty) {
      await this.io.sync(); // blocks before the table that points at them
      const target = moved ?? { offset: this.tableOffset, clusters: this.tableClusters };
      const bytes = new Uint8Array(target.clusters * this.clusterSize);
      const dv = new DataView(bytes.buffer);
      this.table.forEach((v, i) => {
        dv.setUint32(i * 8, Math.floor(v / 0x100000000));
        dv.setUint32(i * 8 + 4, v >>> 0);
      });
      await this.io.write(target.offset, bytes);
      this.#tableDirty = false;
      if (moved) {
        await this.io.sync();
        this.tableOffset = moved.offset;
        this.tableClusters = moved.clusters;
        await this.onTableMoved(moved.offset, moved.clusters);
        this.free(moved.oldOffset, moved.oldClusters);
        await this.applyFrees(true);
        await this.#writeBlocks();
      }
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
    this.tableOffset = tableOffset;
    this.tableClusters = tableClusters;
    this.#blocks.clear();
    this.#dirtyBlocks.clear();
    this.#tableDirty = false;
    this.#pendingFrees = [];
    this.freeHint = 0;
    this.freeByteOffset = 0;
  }

  /** Index one past the last cluster with a non-zero refcount. */
  async lastUsedCluster(): Promise<number> {
    for (let bi = this.table.length - 1; bi >= 0; bi--) {
      const b = await this.#block(bi);
      if (!b) continue;
      for (let i = this.perBlock - 1; i >= 0; i--) {
        if (getRefcount(b, i, this.order)) return bi * this.perBlock + i + 1;
      }
    }
    return 0;
  }
}
