/** {@link Qcow2L2Cache}: an LRU write-back cache of L2 tables keyed by host offset. */

/** One cached L2 table. */
export interface L2Table {
  offset: number;
  buf: Uint8Array;
  dv: DataView;
  dirty: boolean;
}

/** LRU cache of L2 tables; evicting a dirty table goes through the owner's writer. */
export class Qcow2L2Cache {
  #map = new Map<number, L2Table>();
  #lastOffset = -1;
  #last: L2Table | undefined;

  /**
   * @param capacity tables kept
   * @param writeBack writes a dirty table (the owner orders it after refcounts)
   */
  constructor(
    readonly capacity: number,
    readonly writeBack: (t: L2Table) => Promise<void>,
  ) {}

  /** The cached table at offset, if any (marks it most recently used). */
  get(offset: number): L2Table | undefined {
    if (offset === this.#lastOffset) return this.#last;
    const t = this.#map.get(offset);
    if (t) {
      this.#map.delete(offset);
      this.#map.set(offset, t);
      this.#lastOffset = offset;
      this.#last = t;
    }
    return t;
  }

  /** Adds a table, evicting the least recently used one when full. */
  async put(t: L2Table): Promise<void> {
    while (this.#map.size >= this.capacity) {
      const [off, old] = this.#map.entries().next().value!;
      if (old.dirty) await this.writeBack(old);
      this.#map.delete(off);
      if (off === this.#lastOffset) {
        this.#lastOffset = -1;
        this.#last = undefined;
      }
    }
    this.#map.set(t.offset, t);
  }

  /** Forgets a table (its cluster was freed or rewritten elsewhere). */
  drop(offset: number): void {
    this.#map.delete(offset);
    if (offset === this.#lastOffset) {
      this.#lastOffset = -1;
      this.#last = undefined;
    }
  }

  /** Dirty tables in host offset order. */
  dirtyTables(): L2Table[] {
    return [...this.#map.values()].filter((t) => t.dirty).sort((a, b) => a.offset - b.offset);
  }

  get hasDirty(): boolean {
    for (const t of this.#map.values()) if (t.dirty) return true;
    return false;
  }

  clear(): void {
    this.#map.clear();
    this.#lastOffset = -1;
    this.#last = undefined;
  }
}
