/** A small pool of compression Workers: batches go out round-robin, results come back in order. */
import type { Qcow2CompressionType } from "@demu/block";
import type { CompressJob, CompressResult } from "./compress_worker.ts";

/** One compressed cluster: its bytes, or undefined when it is to be stored uncompressed. */
export interface CompressedCluster {
  compressed?: Uint8Array;
  raw: Uint8Array;
}

/** Compresses batches of clusters in parallel Workers. */
export class CompressPool {
  #workers: Worker[] = [];
  #pending = new Map<number, { done: (r: CompressResult) => void; fail: (e: Error) => void }>();
  #next = 0;
  #failure?: Error;

  constructor(size = Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 8))) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL("./compress_worker.ts", import.meta.url), { type: "module" });
      w.onmessage = (ev: MessageEvent<CompressResult>) => {
        const done = this.#pending.get(ev.data.id);
        this.#pending.delete(ev.data.id);
        done?.done(ev.data);
      };
      w.onerror = (ev) => {
        ev.preventDefault();
        this.#failure = new Error(`compression worker failed: ${ev.message}`);
        for (const p of this.#pending.values()) p.fail(this.#failure);
        this.#pending.clear();
      };
      this.#workers.push(w);
    }
  }

  get size(): number {
    return this.#workers.length;
  }

  /**
   * Compresses whole clusters laid back to back in `data` (its buffer is handed to the worker),
   * except those marked in `skip`. Returns one entry per cluster.
   */
  compress(
    data: Uint8Array,
    skip: boolean[],
    type: Qcow2CompressionType,
    clusterSize: number,
  ): Promise<CompressedCluster[]> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#next++;
    const buf = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength
      ? data.buffer as ArrayBuffer
      : data.slice().buffer;
    const job: CompressJob = { id, type, clusterSize, data: buf, skip };
    return new Promise((resolve, reject) => {
      const done = (r: CompressResult) => {
        const input = new Uint8Array(r.input);
        const out = new Uint8Array(r.data);
        const clusters: CompressedCluster[] = [];
        let pos = 0;
        r.lengths.forEach((len, i) => {
          const raw = input.subarray(i * clusterSize, (i + 1) * clusterSize);
          if (len < 0) clusters.push({ raw });
          else {
            clusters.push({ compressed: out.subarray(pos, pos + len), raw });
            pos += len;
          }
        });
        resolve(clusters);
      };
      this.#pending.set(id, { done, fail: reject });
      this.#workers[id % this.#workers.length].postMessage(job, [buf]);
    });
  }

  /** Stops the workers. */
  close(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
  }
}
