/**
 * qemu-img rebase: point an overlay at a different backing file. Safe mode first copies into the
 * overlay every range where the old and the new backing differ, so guest data stays the same;
 * -u only rewrites the header.
 */
import type { BlockDriver } from "@demu/block";
import { getopt, type Io, QemuImgError, usageError } from "./cli.ts";
import { asQcow2, closeAll, errorText, openImg, resolveBacking } from "./image.ts";
import { Progress } from "./progress.ts";
import { statusAbove } from "./convert.ts";

const IO_BUF_SIZE = 2 << 20;
const SECTOR = 512;

/** Reads `buf` from a backing image, zeros past its end (or everywhere when there is none). */
async function readBacking(d: BlockDriver | null, size: number, off: number, buf: Uint8Array) {
  const n = d ? Math.max(0, Math.min(buf.length, size - off)) : 0;
  if (n > 0) await d!.read(off, buf.subarray(0, n));
  buf.fill(0, n);
}

function sectorsDiffer(a: Uint8Array, b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (a[i] !== b[i]) return true;
  return false;
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "force-share", arg: false, key: "U" },
];

/** The rebase command line. */
export async function cmdRebase(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":hf:F:b:upt:T:qU", LONG);
  let format: string | undefined;
  let newFmt: string | undefined;
  let newBase: string | undefined;
  let unsafe = false;
  let progress = false;
  let quiet = false;
  for (const [k, v] of opts) {
    if (k === "h") {
      io.out(
        "usage: qemu-img rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] " +
          "[-t cache] [-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename\n",
      );
      return 0;
    }
    if (k === "f") format = v;
    else if (k === "F") newFmt = v;
    else if (k === "b") newBase = v;
    else if (k === "u") unsafe = true;
    else if (k === "p") progress = true;
    else if (k === "q") quiet = true;
  }
  if (quiet) progress = false;
  if (rest.length !== 1) throw usageError("Expecting one image file name");
  if (!unsafe && newBase === undefined) {
    throw usageError("Must specify backing file (-b) or use unsafe mode (-u)");
  }
  const name = rest[0];
  const top = await openImg(io, name, { format, readOnly: false, quiet, noBacking: unsafe });
  let newBacking: BlockDriver | undefined;
  try {
    const q = asQcow2(top);
    const target = newBase === "" ? undefined : newBase;
    const noFormat = () =>
      new QemuImgError(
        `Could not change the backing file to '${target}': backing format must be specified`,
      );
    if (unsafe && target !== undefined && newFmt === undefined) throw noFormat();
    if (!unsafe) {
      // A new base that is already in the chain is used as it is there (bdrv_find_backing_image),
      // and only what the layers above it hold needs comparing.
      const prefix = target === undefined ? undefined : findInChain(top, name, target);
      if (target !== undefined && !prefix) {
        try {
          newBacking = await openImg(io, resolveBacking(name, target), {
            format: newFmt,
            noBacking: false,
          });
        } catch (e) {
          // blk_new_open() reports the protocol's error once, not wrapped by img_open().
          const why = errorText(e).replace(/^Could not open '[^']*': /, "");
          throw new QemuImgError(`Could not open new backing file '${target}': ${why}`);
        }
      }
      await copyDifferences(
        top,
        top.backing ?? null,
        prefix ?? newBacking ?? null,
        progress ? io : undefined,
        prefix,
      );
      // QEMU copies first and only then finds it cannot record a backing file without a format.
      if (target !== undefined && newFmt === undefined) throw noFormat();
    }
    if (!q) {
      if (target === undefined && top.format === "raw") return 0;
      throw new QemuImgError(
        `Could not change the backing file to '${newBase}': Operation not supported`,
      );
    }
    try {
      await q.changeBackingFile(target, target === undefined ? undefined : newFmt);
    } catch (e) {
      throw new QemuImgError(
        `Could not change the backing file to '${newBase}': ${errorText(e)}`,
      );
    }
  } finally {
    await closeAll(newBacking, top);
  }
  return 0;
}

/** The layer of top's backing chain that `target` (as named from top) is, by real path. */
function findInChain(top: BlockDriver, topName: string, target: string): BlockDriver | undefined {
  const real = (p: string) => {
    try {
      return Deno.realPathSync(p);
    } catch {
      return undefined;
    }
  };
  const want = real(resolveBacking(topName, target));
  if (want === undefined) return undefined;
  let d: BlockDriver | null | undefined = top.backing;
  while (d) {
    if (real(d.filename) === want) return d;
    d = d.backing;
  }
  return undefined;
}

/** Safe rebase: where the overlay falls through and old and new backing differ, copy the old data up. */
async function copyDifferences(
  top: BlockDriver,
  oldB: BlockDriver | null,
  newB: BlockDriver | null,
  progressIo?: Io,
  prefix?: BlockDriver,
): Promise<void> {
  const size = await top.length();
  const oldSize = oldB ? await oldB.length() : 0;
  const newSize = newB ? await newB.length() : 0;
  const a = new Uint8Array(IO_BUF_SIZE);
  const b = new Uint8Array(IO_BUF_SIZE);
  const p = progressIo ? new Progress(progressIo, 2) : undefined;
  p?.update(0);
  // QEMU advances the display by a fixed step per chunk it compares, whatever its length.
  const step = 100 / (size / Math.min(size, IO_BUF_SIZE));
  let shown = 0;
  for (let off = 0; off < size;) {
    const st = await top.blockStatus(off, Math.min(IO_BUF_SIZE, size - off));
    let n = st.length;
    if (!st.allocated && prefix && oldB) {
      // Unchanged since the new base: the guest already sees the new base's data here.
      const above = await statusAbove(oldB, prefix, off, n);
      if (above.kind === "unallocated") {
        off += above.length;
        continue;
      }
      n = above.length;
    }
    if (!st.allocated) {
      // Chunks stop where a backing file ends; past it the backing reads as zeros.
      if (off < oldSize && off + n > oldSize) n = oldSize - off;
      if (newB && off < newSize && off + n > newSize) n = newSize - off;
      const x = a.subarray(0, n), y = b.subarray(0, n);
      await readBacking(oldB, oldSize, off, x);
      await readBacking(newB, newSize, off, y);
      // Write runs of differing sectors, as compare_buffers() walks them.
      let pos = 0;
      while (pos < n) {
        const first = Math.min(n, pos + SECTOR);
        const differs = sectorsDiffer(x, y, pos, first);
        let end = first;
        while (end < n && sectorsDiffer(x, y, end, Math.min(n, end + SECTOR)) === differs) {
          end = Math.min(n, end + SECTOR);
        }
        if (differs) await top.write(off + pos, x.subarray(pos, end));
        pos = end;
      }
      shown = Math.fround(shown + step);
      p?.update(shown);
    }
    off += n;
  }
  await top.flush();
  p?.update(100);
  p?.end();
}
