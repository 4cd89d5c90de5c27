/** qemu-img map: where each extent of the virtual disk comes from, down the backing chain. */
import {
  type BlockDriver,
  type BlockStatus,
  getRefcount,
  parseHeader,
  REFT_OFFSET_MASK,
} from "@demu/block";
import { getopt, type Io, parseOutputFormat, QemuImgError, usageError } from "./cli.ts";
import { asQcow2, closeAll, openImg, ReadOnlyView, strerror } from "./image.ts";
import { cvtnum } from "./size.ts";

/** One extent as qemu-img map reports it (MapEntry). */
export interface MapEntry {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
  depth: number;
  present: boolean;
  offset?: number;
  filename?: string;
}

const GiB = 1 << 30;

const preallocated = new WeakMap<BlockDriver, boolean>();

/**
 * qcow2_detect_metadata_preallocation(): an image with far more clusters in use (by refcount)
 * than the host has actually allocated was preallocated with metadata only. For such images QEMU asks the
 * file whether a data cluster's bytes are a hole (and then reports them as zeros).
 */
async function metadataPreallocated(d: BlockDriver): Promise<BlockDriver | undefined> {
  const q = asQcow2(d);
  if (!q) return undefined;
  let yes = preallocated.get(d);
  if (yes === undefined) {
    const cs = q.info().clusterSize;
    const allocated = await q.file.allocatedSize?.();
    if (allocated === undefined) yes = false;
    else {
      const real = Math.floor(allocated / cs);
      const threshold = Math.max(Math.floor(real * 10 / 9), real + 2);
      yes = await countReferencedClusters(q.file, threshold) >= threshold;
    }
    preallocated.set(d, yes);
  }
  return yes ? q.file : undefined;
}

/** Clusters of the file with a non-zero refcount, counted up to `limit`. */
async function countReferencedClusters(file: BlockDriver, limit: number): Promise<number> {
  const head = new Uint8Array(Math.min(4096, await file.length()));
  await file.read(0, head);
  const h = parseHeader(head);
  const cs = 2 ** h.clusterBits;
  const endCluster = Math.ceil((await file.length()) / cs);
  const perBlock = (cs * 8) >> h.refcountOrder;
  const table = new Uint8Array(h.refcountTableClusters * cs);
  await file.read(h.refcountTableOffset, table);
  const dv = new DataView(table.buffer);
  const block = new Uint8Array(cs);
  let count = 0;
  for (let i = 0; i * perBlock < endCluster && i * 8 < table.length && count < limit; i++) {
    const off = Number(dv.getBigUint64(i * 8) & REFT_OFFSET_MASK);
    if (!off) continue;
    await file.read(off, block);
    for (let j = 0; j < perBlock && i * perBlock + j < endCluster; j++) {
      if (getRefcount(block, j, h.refcountOrder)) count++;
    }
  }
  return count;
}

/**
 * A read-only view of an image whose block status reads as QEMU's would: the driver's look
 * through to holes in the file is kept only for metadata-preallocated images. Used where a
 * library routine walks the status itself (measure).
 */
export class QemuStatusView extends ReadOnlyView implements BlockDriver {
  readonly backing: BlockDriver | null;
  constructor(readonly inner: BlockDriver) {
    super();
    this.backing = inner.backing ? new QemuStatusView(inner.backing) : null;
  }
  get format(): string {
    return this.inner.format;
  }
  get filename(): string {
    return this.inner.filename;
  }
  length(): Promise<number> {
    return this.inner.length();
  }
  read(offset: number, buf: Uint8Array): Promise<void> {
    return this.inner.read(offset, buf);
  }
  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const st = { ...await this.inner.blockStatus(offset, length) };
    if (st.data && st.zero && st.offset !== undefined && !await metadataPreallocated(this.inner)) {
      st.zero = false;
    }
    return st;
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  allocatedSize(): Promise<number | undefined> {
    return this.inner.allocatedSize?.() ?? Promise.resolve(undefined);
  }
}

/**
 * get_block_status(): the status at `offset` of the first layer in the chain that has the data
 * (or knows it reads as zeros), and how deep that layer is.
 */
export async function chainStatus(
  top: BlockDriver,
  offset: number,
  bytes: number,
): Promise<MapEntry> {
  let d: BlockDriver = top;
  let depth = 0;
  for (;;) {
    const st = { ...await d.blockStatus(offset, bytes) };
    bytes = st.length;
    if (st.data && st.zero && st.offset !== undefined && !await metadataPreallocated(d)) {
      // The driver looked through to a hole in the file, which QEMU does only for
      // metadata-preallocated images: elsewhere such bytes are plain data.
      st.zero = false;
    }
    if (st.data && !st.zero && st.offset !== undefined) {
      const file = await metadataPreallocated(d);
      if (file) {
        const fileLen = await file.length();
        if (st.offset >= fileLen) st.zero = true;
        else {
          const fst = await file.blockStatus(st.offset, bytes);
          bytes = Math.min(bytes, fst.length);
          if (fst.zero) st.zero = true;
        }
      }
    }
    if (st.data || st.zero) {
      return {
        start: offset,
        length: Math.min(bytes, st.length),
        data: st.data,
        zero: st.zero,
        depth,
        present: st.allocated,
        offset: st.offset,
        filename: st.offset !== undefined ? st.file : undefined,
      };
    }
    const below = d.backing;
    if (!below || offset >= await below.length()) {
      // No layer below (or it ends before here): reads as zeros, owned by no one. An unallocated
      // subcluster of an allocated cluster still has a host offset, which QEMU reports.
      return {
        start: offset,
        length: bytes,
        data: false,
        zero: true,
        depth,
        present: false,
        offset: st.offset,
        filename: st.offset !== undefined ? st.file : undefined,
      };
    }
    const rest = (await below.length()) - offset;
    if (bytes > rest) bytes = rest;
    d = below;
    depth++;
  }
}

function mergeable(curr: MapEntry, next: MapEntry): boolean {
  if (curr.length === 0) return false;
  if (
    curr.zero !== next.zero || curr.data !== next.data || curr.depth !== next.depth ||
    curr.present !== next.present ||
    (curr.filename === undefined) !== (next.filename === undefined) ||
    (curr.offset === undefined) !== (next.offset === undefined)
  ) return false;
  if (curr.filename !== undefined && curr.filename !== next.filename) return false;
  if (curr.offset !== undefined && curr.offset + curr.length !== next.offset) return false;
  return true;
}

const hex = (n: number) => (n === 0 ? "0" : "0x" + n.toString(16));

/** dump_map_entry(); may adjust `next` as QEMU does to coalesce human output. */
function dumpEntry(io: Io, fmt: "human" | "json", e: MapEntry, next?: MapEntry): void {
  if (fmt === "json") {
    let s =
      `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}`;
    if (e.offset !== undefined) s += `, "offset": ${e.offset}`;
    s += "}";
    if (next) s += ",\n";
    io.out(s);
    return;
  }
  if (e.data && e.offset === undefined) {
    throw new QemuImgError("File contains external, encrypted or compressed clusters.");
  }
  if (e.data && !e.zero) {
    io.out(
      hex(e.start).padEnd(16) + hex(e.length).padEnd(16) + hex(e.offset ?? 0).padEnd(16) +
        (e.filename ?? "") + "\n",
    );
  }
  if (next && (!next.data || next.zero)) {
    next.data = false;
    next.zero = true;
  }
}

/** Prints the map of an open image from `start` for `maxLength` bytes. */
export async function printMap(
  io: Io,
  d: BlockDriver,
  fmt: "human" | "json",
  start = 0,
  maxLength = Infinity,
): Promise<void> {
  const length = Math.min(await d.length(), start + maxLength);
  if (fmt === "human") {
    io.out("Offset".padEnd(16) + "Length".padEnd(16) + "Mapped to".padEnd(16) + "File\n");
  } else io.out("[");
  let curr: MapEntry = { start, length: 0, data: false, zero: false, depth: 0, present: false };
  while (curr.start + curr.length < length) {
    const offset = curr.start + curr.length;
    const n = Math.min(GiB, length - offset);
    let next: MapEntry;
    try {
      next = await chainStatus(d, offset, n);
    } catch (e) {
      throw new QemuImgError(`Could not read file metadata: ${strerror(e)}`);
    }
    if (mergeable(curr, next)) {
      curr.length += next.length;
      continue;
    }
    if (curr.length > 0) dumpEntry(io, fmt, curr, next);
    curr = next;
  }
  dumpEntry(io, fmt, curr);
  if (fmt === "json") io.out("]\n");
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "format", arg: true, key: "f" },
  { name: "output", arg: true, key: "output" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "force-share", arg: false, key: "U" },
  { name: "start-offset", arg: true, key: "s" },
  { name: "max-length", arg: true, key: "l" },
];

/** The map command line. */
export async function cmdMap(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":f:s:l:hU", LONG);
  let format: string | undefined;
  let output = "human";
  let forceShare = false;
  let start = 0;
  let maxLength = Infinity;
  for (const [k, v] of opts) {
    if (k === "h") {
      io.out(
        "usage: qemu-img map [--object objectdef] [--image-opts] [-f fmt] " +
          "[--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename\n",
      );
      return 0;
    }
    if (k === "f") format = v;
    else if (k === "output") output = v;
    else if (k === "U") forceShare = true;
    else if (k === "s") start = cvtnum("start offset", v);
    else if (k === "l") maxLength = cvtnum("max length", v);
  }
  if (rest.length !== 1) throw usageError("Expecting one image file name");
  const ofmt = parseOutputFormat(output);
  const d = await openImg(io, rest[0], { format, forceShare });
  try {
    await printMap(io, d, ofmt, start, maxLength);
  } finally {
    await closeAll(d);
  }
  return 0;
}
