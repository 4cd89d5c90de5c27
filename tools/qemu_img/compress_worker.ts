/**
 * A Worker that compresses clusters for qemu-img convert -c: it receives a batch of clusters and
 * answers with each one's compressed bytes (or nothing, when the cluster does not shrink).
 */
/// <reference lib="deno.worker" />
import { compressCluster, loadCompression, type Qcow2CompressionType } from "@demu/block";

/** A batch of whole clusters, back to back in `data`; those with `skip` set are left alone. */
export interface CompressJob {
  id: number;
  type: Qcow2CompressionType;
  clusterSize: number;
  data: ArrayBuffer;
  skip: boolean[];
}

/**
 * The answer, one length per cluster (-1: keep it uncompressed or skipped) and the compressed
 * bytes back to back.
 */
export interface CompressResult {
  id: number;
  lengths: number[];
  data: ArrayBuffer;
  /** The input handed back, so the caller can still write clusters that did not shrink. */
  input: ArrayBuffer;
}

self.onmessage = async (ev: MessageEvent<CompressJob>) => {
  await loadCompression();
  const { id, type, clusterSize, data, skip } = ev.data;
  const input = new Uint8Array(data);
  const parts: Uint8Array[] = [];
  const lengths: number[] = [];
  let total = 0;
  for (let i = 0, off = 0; off < input.length; i++, off += clusterSize) {
    if (skip[i]) {
      lengths.push(-1);
      continue;
    }
    const c = compressCluster(input.subarray(off, off + clusterSize), type, clusterSize);
    if (c) {
      parts.push(c);
      lengths.push(c.length);
      total += c.length;
    } else lengths.push(-1);
  }
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  const msg: CompressResult = { id, lengths, data: out.buffer, input: data };
  self.postMessage(msg, [out.buffer, data]);
};
