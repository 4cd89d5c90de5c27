/** qemu-img commit: write an overlay's data down into its backing file (or a base further down). */
import { type BlockDriver, createQcow2 } from "@demu/block";
import { getopt, type Io, QemuImgError, usageError } from "./cli.ts";
import { statusAbove } from "./convert.ts";
import { asQcow2, closeAll, errorText, openImg, resolveBacking } from "./image.ts";
import { Progress } from "./progress.ts";

const IO_BUF_SIZE = 2 << 20;

/** The chain below `top` as [driver, name] pairs, names resolved as QEMU resolves them. */
function chainOf(top: BlockDriver, topName: string): { d: BlockDriver; name: string }[] {
  const out: { d: BlockDriver; name: string }[] = [];
  let name = topName;
  let d: BlockDriver | null | undefined = top;
  while (d) {
    out.push({ d, name });
    const q = asQcow2(d);
    const b = q?.info().backingFile;
    if (b === undefined) break;
    name = resolveBacking(name, b);
    d = d.backing;
  }
  return out;
}

/**
 * qcow2_make_empty(): the overlay as if freshly created (same options, same backing), which is
 * what QEMU does for an image without snapshots. Images with snapshots keep their clusters
 * (the committed data reads the same either way).
 */
async function makeEmpty(top: BlockDriver, name: string): Promise<void> {
  const q = asQcow2(top);
  if (!q || q.listSnapshots().length) return;
  const i = q.info();
  const size = await top.length();
  await top.close();
  await createQcow2(name, {
    size,
    clusterSize: i.clusterSize,
    compat: i.compat,
    backingFile: i.backingFile,
    backingFormat: i.backingFormat,
    lazyRefcounts: i.lazyRefcounts,
    refcountBits: i.refcountBits,
    extendedL2: i.extendedL2,
    compressionType: i.compressionType,
    unsafe: true,
  });
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
];

/** The commit command line. */
export async function cmdCommit(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":f:ht:b:dpqr:", LONG);
  let format: string | undefined;
  let baseName: string | undefined;
  let drop = false;
  let progress = false;
  let quiet = false;
  for (const [k, v] of opts) {
    if (k === "h") {
      io.out(
        "usage: qemu-img commit [--object objectdef] [--image-opts] [-q] [-f fmt] " +
          "[-t cache] [-b base] [-r rate_limit] [-d] [-p] filename\n",
      );
      return 0;
    }
    if (k === "f") format = v;
    else if (k === "b") {
      baseName = v;
      drop = true;
    } else if (k === "d") drop = true;
    else if (k === "p") progress = true;
    else if (k === "q") quiet = true;
  }
  if (quiet) progress = false;
  if (rest.length !== 1) throw usageError("Expecting one image file name");
  const name = rest[0];
  const top = await openImg(io, name, { format, readOnly: false, quiet });
  const p = progress ? new Progress(io) : undefined;
  let base: BlockDriver | undefined;
  let topClosed = false;
  try {
    p?.update(0);
    const chain = chainOf(top, name);
    let baseIdx = 1;
    if (baseName !== undefined) {
      baseIdx = chain.findIndex((c, i) =>
        i > 0 && (c.name === baseName || c.d.filename === baseName)
      );
      if (baseIdx < 0) {
        throw new QemuImgError(`Did not find '${baseName}' in the backing chain of '${name}'`);
      }
    } else if (chain.length < 2 || !top.backing) {
      throw new QemuImgError("Image does not have a backing file");
    }
    const baseEntry = chain[baseIdx];
    // The chain's copy of the base is read-only; write through a second, writable handle.
    base = await openImg(io, baseEntry.name, { format: baseEntry.d.format, readOnly: false });
    const size = await top.length();
    if (await base.length() < size) await base.truncate(size);
    const buf = new Uint8Array(IO_BUF_SIZE);
    for (let off = 0; off < size;) {
      const st = await statusAbove(top, baseEntry.d, off, size - off);
      if (st.kind !== "unallocated") {
        const end = off + st.length;
        for (let pos = off; pos < end; pos += IO_BUF_SIZE) {
          const chunk = buf.subarray(0, Math.min(IO_BUF_SIZE, end - pos));
          await top.read(pos, chunk);
          try {
            if (st.kind === "zero") await base.writeZeroes(pos, chunk.length, { mayUnmap: true });
            else await base.write(pos, chunk);
          } catch (e) {
            throw new QemuImgError(errorText(e));
          }
        }
      }
      off += st.length;
      p?.update((off / size) * 100);
    }
    await base.flush();
    if (!drop) {
      topClosed = true;
      await makeEmpty(top, name);
    }
    p?.update(100);
  } finally {
    p?.end();
    await closeAll(base);
    if (!topClosed) await closeAll(top);
  }
  if (!quiet) io.out("Image committed.\n");
  return 0;
}
