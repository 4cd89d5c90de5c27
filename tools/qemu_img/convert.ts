/**
 * qemu-img convert: copies one or more images (concatenated) into a new or existing image,
 * skipping zeros (sparse detection), optionally compressing clusters in parallel Workers.
 */
import type { BlockDriver, Qcow2CompressionType } from "@demu/block";
import { getopt, type Io, QemuImgError } from "./cli.ts";
import { type CompressedCluster, CompressPool } from "./compress_pool.ts";
import { createRaw, parseCreateOptions, qcow2Options } from "./create.ts";
import { asQcow2, closeAll, errorText, openImg, strerror, useThreadedIo } from "./image.ts";
import { Progress } from "./progress.ts";
import { loadSnapshot, parseSnapshotSpec } from "./snapshot.ts";
import { cvtnum } from "./size.ts";
import { allocatedRun, isZeroRange } from "./zero.ts";
import { scanBuffers } from "./zero_simd.ts";
import { createQcow2 } from "@demu/block";

/** The parsed convert command line. */
export interface ConvertRequest {
  sources: string[];
  target: string;
  srcFormat?: string;
  outFormat: string;
  options: string[];
  compress?: boolean;
  skipCreate?: boolean;
  /** -S in bytes (0: write everything). */
  minSparse?: number;
  progress?: boolean;
  backingFile?: string;
  backingFormat?: string;
  snapshot?: string;
  quiet?: boolean;
  targetIsZero?: boolean;
  forceShare?: boolean;
  /** -t: the target's cache mode (default unsafe: no flushes to the host file). */
  cache?: string;
}

const IO_BUF_SIZE = 2 << 20;
/** Bytes per source read: two chunks (each still scanned on its own, as QEMU's buffer). */
const READ_UNIT = 2 * IO_BUF_SIZE;
/** Source reads in flight while one unit is scanned and another written. */
const READ_AHEAD = 3;
const SECTOR = 512;

/** Where a source extent's data comes from, as convert_iteration_sectors classifies it. */
type Kind = "data" | "zero" | "backing";

/** Block status of `d` above `base` (null: the whole chain), as bdrv_block_status_above. */
export async function statusAbove(
  d: BlockDriver,
  base: BlockDriver | null,
  offset: number,
  bytes: number,
): Promise<{ kind: Kind | "unallocated"; length: number }> {
  let layer: BlockDriver | null = d;
  while (layer && layer !== base) {
    const st = await layer.blockStatus(offset, bytes);
    bytes = st.length;
    if (st.zero) return { kind: "zero", length: bytes };
    if (st.data) return { kind: "data", length: bytes };
    const below: BlockDriver | null = layer.backing ?? null;
    if (!below) return { kind: "zero", length: bytes };
    if (below === base) break;
    const blen = await below.length();
    if (offset >= blen) return { kind: "zero", length: bytes };
    bytes = Math.min(bytes, blen - offset);
    layer = below;
  }
  return { kind: "unallocated", length: bytes };
}

/** The copy itself, on open images. */
export class Converter {
  hasZeroInit = false;
  written = 0;
  #pool?: CompressPool;
  #buffers?: Uint8Array[];

  constructor(
    readonly sources: BlockDriver[],
    readonly target: BlockDriver,
    readonly opts: {
      compress: boolean;
      minSparse: number;
      targetHasBacking: boolean;
      progress?: Progress;
    },
  ) {}

  async run(): Promise<void> {
    const sizes = await Promise.all(this.sources.map((s) => s.length()));
    const q = asQcow2(this.target);
    const clusterSize = this.opts.compress ? q!.info().clusterSize : 0;
    if (this.opts.progress) await this.#countData();
    let base = 0;
    try {
      for (let i = 0; i < this.sources.length; i++) {
        if (this.opts.compress) await this.#copyCompressed(i, base, sizes[i], clusterSize);
        else await this.#copy(i, base, sizes[i]);
        base += sizes[i];
      }
    } finally {
      this.#pool?.close();
    }
    await this.target.flush();
    this.opts.progress?.update(100);
  }

  #dataTotal = 0;
  #dataDone = 0;

  /**
   * Progress counts only what gets copied (data, and zeros when nothing is sparse), as QEMU's
   * allocated_sectors/allocated_done do; skipped zeros and backing ranges do not move it.
   */
  async #countData(): Promise<void> {
    for (const src of this.sources) {
      const base = this.opts.targetHasBacking ? src.backing ?? null : null;
      const size = await src.length();
      for (let off = 0; off < size;) {
        const st = await statusAbove(src, base, off, size - off);
        const copied = st.kind === "data" || (st.kind === "unallocated" && !base) ||
          (st.kind === "zero" && !this.opts.minSparse);
        if (copied) this.#dataTotal += st.length;
        off += st.length;
      }
    }
  }

  #copied(bytes: number): void {
    this.#dataDone += bytes;
    if (this.opts.progress && this.#dataTotal > 0) {
      this.opts.progress.update((this.#dataDone / this.#dataTotal) * 100);
    }
  }

  async #zero(offset: number, length: number): Promise<void> {
    if (this.hasZeroInit) return;
    await this.target.writeZeroes(offset, length, { mayUnmap: this.opts.minSparse > 0 });
  }

  /**
   * The unit a qcow2 target allocates (a cluster, or a subcluster with extended L2), 0 for raw.
   * QEMU fills the rest of a newly allocated cluster (COW), so zero runs inside a cluster that
   * gets data are written, not skipped: the image file has no holes under allocated clusters.
   */
  #granularity(): number {
    const q = asQcow2(this.target);
    if (!q) return 0;
    const i = q.info();
    return i.extendedL2 ? i.clusterSize / 32 : i.clusterSize;
  }

  async #copy(index: number, base: number, size: number): Promise<void> {
    const src = this.sources[index];
    const backingBase = this.opts.targetHasBacking ? src.backing ?? null : null;
    // In the SIMD scanner's memory: chunks are read straight where the zero scan runs.
    const free: Uint8Array[] = this.#buffers ??= scanBuffers(READ_AHEAD + 2, READ_UNIT);
    const align = Math.max(SECTOR, pow2floor(this.opts.minSparse));
    const gran = this.#granularity();
    let off = 0;
    while (off < size) {
      const st = await statusAbove(src, backingBase, off, Math.min(size - off, 1 << 30));
      let kind: Kind = st.kind === "unallocated"
        ? (this.opts.targetHasBacking ? "backing" : "data")
        : st.kind;
      let end = off + st.length;
      if (gran && end < size && (base + end) % gran) {
        // Keep every window's end on an allocation unit: data grows to the next boundary,
        // skipped ranges shrink to the previous one (or become data when that leaves nothing).
        if (kind === "data") end = Math.min(size, alignUp(base + end, gran) - base);
        else {
          const down = alignDown(base + end, gran) - base;
          if (down > off) end = down;
          else {
            kind = "data";
            end = Math.min(size, alignUp(base + off + 1, gran) - base);
          }
        }
      }
      if (kind === "backing") {
        off = end;
      } else if (kind === "zero") {
        await this.#zero(base + off, end - off);
        if (!this.opts.minSparse) this.#copied(end - off);
        off = end;
      } else {
        // Up to READ_AHEAD units are read (on pool threads, for a host file) while this one
        // is scanned and the one before is written, as QEMU keeps several requests in flight
        // (-m, default 8). Writes stay in order: a unit's writes start after the previous
        // one's (a qcow2 target queues them; a raw target's ranges do not overlap).
        const pending: { off: number; buf: Uint8Array; chunk: Uint8Array; done: Promise<void> }[] =
          [];
        let next = off;
        const issue = () => {
          while (next < end && free.length && pending.length < READ_AHEAD) {
            const buf = free.pop()!;
            const chunk = buf.subarray(0, Math.min(end - next, READ_UNIT));
            const done = src.read(next, chunk);
            done.catch(() => {}); // reported when awaited; not unhandled if an earlier one fails
            pending.push({ off: next, buf, chunk, done });
            next += chunk.length;
          }
        };
        issue();
        let writing: { buf: Uint8Array; bytes: number; done: Promise<void> } | undefined;
        const finishWrite = async () => {
          if (!writing) return;
          const w = writing;
          writing = undefined;
          await w.done;
          // Progress moves chunk by chunk, as QEMU's does.
          for (let n = 0; n < w.bytes; n += IO_BUF_SIZE) {
            this.#copied(Math.min(IO_BUF_SIZE, w.bytes - n));
          }
          free.push(w.buf);
        };
        while (pending.length) {
          const job = pending.shift()!;
          await job.done;
          issue();
          // Scans the unit while the previous one is written; writes it after that one.
          const runs = this.#planUnit(base + job.off, job.chunk, align, gran);
          await finishWrite();
          const done = this.#writePlan(base + job.off, job.chunk, runs);
          done.catch(() => {}); // reported when awaited in finishWrite
          writing = { buf: job.buf, bytes: job.chunk.length, done };
          issue();
        }
        await finishWrite();
        off = end;
      }
    }
  }

  /**
   * The runs of a read unit: each IO_BUF_SIZE chunk of it planned on its own (QEMU's buffer),
   * neighbouring runs of one kind merged across chunks (one write instead of two).
   */
  #planUnit(
    offset: number,
    unit: Uint8Array,
    align: number,
    gran: number,
  ): [number, number, boolean][] {
    const out: [number, number, boolean][] = [];
    for (let sub = 0; sub < unit.length; sub += IO_BUF_SIZE) {
      const part = unit.subarray(sub, Math.min(unit.length, sub + IO_BUF_SIZE));
      for (const [from, to, data] of this.#planData(offset + sub, part, align, gran)) {
        const last = out[out.length - 1];
        if (last && last[2] === data && last[1] === sub + from) last[1] = sub + to;
        else out.push([sub + from, sub + to, data]);
      }
    }
    return out;
  }

  /**
   * Runs of data (true) and of skippable zeros (false) in a chunk, as QEMU's sparse detection
   * finds them: [from, to, data] in chunk order, neighbours of one kind merged.
   */
  #planData(
    offset: number,
    chunk: Uint8Array,
    align: number,
    gran: number,
  ): [number, number, boolean][] {
    if (!this.opts.minSparse) return [[0, chunk.length, true]];
    const runs: [number, number, boolean][] = [];
    for (let pos = 0; pos < chunk.length;) {
      const run = allocatedRun(chunk.subarray(pos), offset + pos, this.opts.minSparse, align);
      runs.push([pos, pos + run.length, run.data]);
      pos += run.length;
    }
    if (gran) {
      // A zero run is skipped only where it covers whole allocation units.
      for (const r of runs) {
        if (r[2]) continue;
        const s = alignUp(offset + r[0], gran) - offset;
        const e = r[1] === chunk.length ? r[1] : alignDown(offset + r[1], gran) - offset;
        if (s >= e) r[2] = true;
        else {
          if (s > r[0]) runs.push([r[0], s, true]);
          if (e < r[1]) runs.push([e, r[1], true]);
          r[0] = s;
          r[1] = e;
        }
      }
      runs.sort((a, b) => a[0] - b[0]);
    }
    const merged: [number, number, boolean][] = [];
    for (let i = 0; i < runs.length;) {
      let j = i;
      while (j + 1 < runs.length && runs[j + 1][2] === runs[i][2]) j++;
      merged.push([runs[i][0], runs[j][1], runs[i][2]]);
      i = j + 1;
    }
    return merged;
  }

  /** Writes a chunk's runs (from {@link #planData}) one after the other. */
  async #writePlan(offset: number, chunk: Uint8Array, runs: [number, number, boolean][]) {
    for (const [from, to, data] of runs) {
      if (data) {
        await this.target.write(offset + from, chunk.subarray(from, to));
        this.written += to - from;
      } else await this.#zero(offset + from, to - from);
    }
  }

  async #copyCompressed(
    index: number,
    base: number,
    size: number,
    clusterSize: number,
  ): Promise<void> {
    const src = this.sources[index];
    const q = asQcow2(this.target)!;
    const type: Qcow2CompressionType = q.info().compressionType;
    const pool = this.#pool ??= new CompressPool();
    const batchBytes = Math.max(1, Math.floor((1 << 20) / clusterSize)) * clusterSize;
    const backingBase = this.opts.targetHasBacking ? src.backing ?? null : null;
    const inflight: { offset: number; zero: boolean[]; done: Promise<CompressedCluster[]> }[] = [];
    const maxInflight = pool.size * 3;
    const drain = async () => {
      const job = inflight.shift()!;
      const clusters = await job.done;
      for (let i = 0; i < job.zero.length; i++) {
        if (job.zero[i]) continue;
        const { compressed, raw } = clusters[i];
        await q.writeCompressedPrepared(job.offset + i * clusterSize, compressed, raw);
        this.written += clusterSize;
      }
      this.#copied(job.zero.length * clusterSize);
    };
    /** The next batch: whole clusters, classified by the source's block status. */
    const plan = async (off: number) => {
      const n = Math.min(batchBytes, alignUp(size - off, clusterSize));
      const st = await statusAbove(src, backingBase, off, Math.min(n, size - off));
      let kind: Kind = st.kind === "unallocated"
        ? (this.opts.targetHasBacking ? "backing" : "data")
        : st.kind;
      // A cluster with any data is copied whole.
      if (st.length < clusterSize) kind = "data";
      const span = Math.min(n, Math.max(clusterSize, alignDown(st.length, clusterSize)));
      let read: Promise<Uint8Array> | undefined;
      if (kind === "data") {
        const buf = new Uint8Array(span);
        read = src.read(off, buf.subarray(0, Math.min(span, size - off))).then(() => buf);
      }
      return { off, span, kind, read };
    };
    let cur: Awaited<ReturnType<typeof plan>> | undefined = await plan(0);
    while (cur) {
      if (cur.kind === "data") {
        const buf = await cur.read!;
        const zero: boolean[] = [];
        for (let c = 0; c < cur.span; c += clusterSize) {
          const z = isZeroRange(buf, c, c + clusterSize);
          zero.push(z);
          if (z) await this.#zero(base + cur.off + c, Math.min(clusterSize, size - cur.off - c));
        }
        inflight.push({
          offset: base + cur.off,
          zero,
          done: pool.compress(buf, zero, type, clusterSize),
        });
      } else if (cur.kind === "zero") {
        await this.#zero(base + cur.off, Math.min(cur.span, size - cur.off));
      }
      // Read the next batch while the Workers compress this one.
      const after: number = cur.off + cur.span;
      cur = after < size ? await plan(after) : undefined;
      if (inflight.length >= maxInflight) await drain();
    }
    while (inflight.length) await drain();
  }
}

function pow2floor(n: number): number {
  if (n <= 0) return 0;
  return 2 ** Math.floor(Math.log2(n));
}
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;
const alignDown = (n: number, a: number) => Math.floor(n / a) * a;

/** img_convert() after option parsing. */
export async function convert(io: Io, req: ConvertRequest): Promise<void> {
  const minSparse = req.minSparse ?? 4096;
  const compress = !!req.compress;
  if (req.targetIsZero && !req.skipCreate) {
    throw new QemuImgError("--target-is-zero requires use of -n flag");
  }
  const sources: BlockDriver[] = [];
  let target: BlockDriver | undefined;
  let created = false;
  let ok = false;
  try {
    for (const name of req.sources) {
      sources.push(await openImg(io, name, { format: req.srcFormat, forceShare: req.forceShare }));
    }
    if (req.snapshot !== undefined) {
      if (sources.length > 1) {
        throw new QemuImgError("No support for concatenating multiple snapshot");
      }
      sources[0] = await loadSnapshot(sources[0], parseSnapshotSpec(req.snapshot));
    }
    let total = 0;
    for (const s of sources) total += await s.length();
    // The target has a backing file when -B or -o backing_file names one.
    let backingName = req.backingFile;

    if (!req.skipCreate) {
      const opts = parseCreateOptions(req.outFormat, req.options, "");
      if (compress && req.outFormat !== "qcow2") {
        throw new QemuImgError("Compression not supported for this file format");
      }
      if (compress && (opts.get("encrypt.format") || opts.bool("encryption"))) {
        throw new QemuImgError("Compression and encryption not supported at the same time");
      }
      const prealloc = opts.get("preallocation");
      if (compress && prealloc && prealloc !== "off") {
        throw new QemuImgError("Compression and preallocation not supported at the same time");
      }
      if (req.backingFile !== undefined && req.outFormat === "raw") {
        throw new QemuImgError("Backing file not supported for file format 'raw'");
      }
      if (req.backingFile !== undefined) opts.values.set("backing_file", req.backingFile);
      if (req.backingFormat !== undefined) opts.values.set("backing_fmt", req.backingFormat);
      if (opts.get("backing_file") !== undefined && opts.get("backing_fmt") === undefined) {
        throw new QemuImgError("Use of backing file requires explicit backing format");
      }
      backingName = opts.get("backing_file");
      if (!opts.has("size")) opts.values.set("size", String(total));
      const size = opts.size("size")!;
      try {
        if (req.outFormat === "raw") {
          await createRaw(req.target, size, prealloc ?? "off");
        } else {
          await createQcow2(req.target, qcow2Options(opts, size, true));
        }
        created = true;
      } catch (e) {
        throw new QemuImgError(
          `${req.target}: error while converting ${req.outFormat}: ${errorText(e)}`,
        );
      }
    }
    const targetHasBacking = backingName !== undefined;
    target = await openImg(io, req.target, {
      format: req.outFormat,
      readOnly: false,
      noBacking: !targetHasBacking,
      cacheUnsafe: req.cache === undefined || req.cache === "unsafe",
    });
    if (compress && !asQcow2(target)) {
      throw new QemuImgError("Compression not supported for this file format");
    }
    const tlen = await target.length();
    if (req.skipCreate && tlen < total) {
      throw new QemuImgError(`Target is too small: ${tlen} bytes, ${total} bytes needed`);
    }
    // The copy keeps reads ahead and a write in flight: the host files' copies overlap it.
    for (const d of [...sources, target]) useThreadedIo(d);
    const progress = req.progress && !req.quiet ? new Progress(io) : undefined;
    progress?.update(0);
    const conv = new Converter(sources, target, {
      compress,
      minSparse,
      targetHasBacking,
      progress,
    });
    if (req.skipCreate) conv.hasZeroInit = !!req.targetIsZero;
    else conv.hasZeroInit = !targetHasBacking && minSparse > 0;
    if (!conv.hasZeroInit && !targetHasBacking && total > 0) {
      try {
        await target.writeZeroes(0, total, { mayUnmap: true, noFallback: true });
        conv.hasZeroInit = true;
      } catch {
        // The target cannot zero cheaply; zeros are written where the source has them.
      }
    }
    try {
      await conv.run();
    } catch (e) {
      if (e instanceof QemuImgError) throw e;
      throw new QemuImgError(`error while writing at byte ${conv.written}: ${strerror(e)}`);
    }
    progress?.end();
    ok = true;
  } finally {
    await closeAll(target, ...sources);
    if (!ok && created) {
      try {
        await Deno.remove(req.target);
      } catch {
        // Nothing to clean up.
      }
    }
  }
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "target-image-opts", arg: false, key: "target-image-opts" },
  { name: "salvage", arg: false, key: "salvage" },
  { name: "target-is-zero", arg: false, key: "target-is-zero" },
  { name: "bitmaps", arg: false, key: "bitmaps" },
  { name: "skip-broken-bitmaps", arg: false, key: "skip-broken-bitmaps" },
  { name: "force-share", arg: false, key: "U" },
];

const CACHE_MODES = ["none", "writeback", "writethrough", "directsync", "unsafe"];

/** The convert command line. */
export async function cmdConvert(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":hf:O:B:CF:co:l:S:pt:T:qnm:WUr:", LONG);
  const req: ConvertRequest = { sources: [], target: "", outFormat: "raw", options: [] };
  for (const [k, v] of opts) {
    switch (k) {
      case "h":
        io.out(
          "usage: qemu-img convert [--object objectdef] [--image-opts] [--target-image-opts]\n" +
            "       [--target-is-zero] [--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n] [-f fmt]\n" +
            "       [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]]\n" +
            "       [-o options] [-l snapshot_param] [-S sparse_size] [-r rate_limit] [-m num_coroutines]\n" +
            "       [-W] [--salvage] filename [filename2 [...]] output_filename\n",
        );
        return 0;
      case "f":
        req.srcFormat = v;
        break;
      case "O":
        req.outFormat = v;
        break;
      case "B":
        req.backingFile = v;
        break;
      case "F":
        req.backingFormat = v;
        break;
      case "c":
        req.compress = true;
        break;
      case "o":
        if (v === "help" || v === "?") {
          const { createOptsOf, optionsHelp } = await import("./create_opts.ts");
          const desc = createOptsOf(req.outFormat);
          if (!desc) throw new QemuImgError(`Unknown file format '${req.outFormat}'`);
          io.out(optionsHelp(req.outFormat, desc));
          return 0;
        }
        req.options.push(v);
        break;
      case "l":
        req.snapshot = v;
        break;
      case "S":
        req.minSparse = cvtnum("buffer size for sparse output", v);
        if (req.minSparse % SECTOR || req.minSparse > 2 ** 31 - 1) {
          throw new QemuImgError(
            "Invalid buffer size for sparse output specified. Must be a multiple of 512 bytes " +
              "no larger than 2147483136.",
          );
        }
        break;
      case "p":
        req.progress = true;
        break;
      case "t":
      case "T":
        if (!CACHE_MODES.includes(v)) throw new QemuImgError(`Invalid cache option: ${v}`);
        if (k === "t") req.cache = v;
        break;
      case "q":
        req.quiet = true;
        break;
      case "n":
        req.skipCreate = true;
        break;
      case "m": {
        const m = Number(v);
        if (!/^[0-9]+$/.test(v) || m < 1 || m > 16) {
          throw new QemuImgError(
            "Invalid number of coroutines. Allowed number of coroutines is between 1 and 16",
          );
        }
        break;
      }
      case "r":
        cvtnum("rate limit", v);
        break;
      case "U":
        req.forceShare = true;
        break;
      case "target-is-zero":
        req.targetIsZero = true;
        break;
    }
  }
  if (rest.length < 2) throw new QemuImgError("Must specify image file name");
  req.target = rest[rest.length - 1];
  req.sources = rest.slice(0, -1);
  if (req.quiet) req.progress = false;
  await convert(io, req);
  return 0;
}
