/** Building NBD replies: simple and structured headers, data chunks, and pooled reply buffers. */
import {
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  setU64,
} from "@demu/block";

/**
 * Reply buffers for reads, reused once written: a fresh zero-filled array per request costs more
 * than the read itself. Sizes round up to powers of two from 4 KiB; only buffers up to 4 MiB are
 * kept (at most 64 of each size), so a burst of 32 MiB reads does not pin memory afterwards.
 */
export class BufferPool {
  #free = new Map<number, ArrayBuffer[]>();
  #owned = new WeakSet<ArrayBuffer>();

  take(size: number): Uint8Array {
    if (size < 4096) return new Uint8Array(size);
    const cap = 2 ** Math.ceil(Math.log2(size));
    const ab = this.#free.get(cap)?.pop() ?? new ArrayBuffer(cap);
    this.#owned.add(ab);
    return new Uint8Array(ab, 0, size);
  }

  give(buf: Uint8Array): void {
    const ab = buf.buffer as ArrayBuffer;
    if (!this.#owned.has(ab)) return;
    this.#owned.delete(ab);
    if (ab.byteLength > 4 * 1024 * 1024) return;
    let list = this.#free.get(ab.byteLength);
    if (!list) this.#free.set(ab.byteLength, list = []);
    if (list.length < 64) list.push(ab);
  }
}

export const replyBuffers = new BufferPool();

export function isZero(b: Uint8Array): boolean {
  const words = b.byteOffset % 4 === 0
    ? new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2)
    : null;
  let i = 0;
  if (words) {
    for (let k = 0; k < words.length; k++) if (words[k] !== 0) return false;
    i = words.length * 4;
  }
  for (; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

export function simpleHeader(out: Uint8Array, errno: number, handle: Uint8Array): void {
  const v = new DataView(out.buffer, out.byteOffset);
  v.setUint32(0, NBD_SIMPLE_REPLY_MAGIC);
  v.setUint32(4, errno);
  out.set(handle, 8);
}

export function structuredHeader(
  out: Uint8Array,
  flags: number,
  type: number,
  handle: Uint8Array,
  length: number,
): void {
  const v = new DataView(out.buffer, out.byteOffset);
  v.setUint32(0, NBD_STRUCTURED_REPLY_MAGIC);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  out.set(handle, 8);
  v.setUint32(16, length);
}

export function dataChunk(
  out: Uint8Array,
  handle: Uint8Array,
  offset: number,
  n: number,
  done: boolean,
) {
  structuredHeader(
    out,
    done ? NBD_REPLY_FLAG_DONE : 0,
    NBD_REPLY_TYPE_OFFSET_DATA,
    handle,
    8 + n,
  );
  setU64(new DataView(out.buffer, out.byteOffset), 20, offset);
}
