/** qemu-img compare: are two images' guest-visible contents the same? */
import type { BlockDriver } from "@demu/block";
import { getopt, type Io, QemuImgError, usageError } from "./cli.ts";
import { closeAll, openImg, strerror } from "./image.ts";
import { Progress } from "./progress.ts";
import { isZero } from "./zero.ts";

const IO_BUF_SIZE = 2 << 20;
const SECTOR = 512;

/** Block-status bits as QEMU numbers them (strict mode compares them). */
const DATA = 0x01, ZERO = 0x02, OFFSET_VALID = 0x04, ALLOCATED = 0x10, EOF = 0x20;

/** bdrv_block_status_above(bs, NULL, ...): status flags and run length over the whole chain. */
async function chainFlags(
  d: BlockDriver,
  offset: number,
  bytes: number,
): Promise<[number, number]> {
  let layer: BlockDriver | null = d;
  while (layer) {
    const st = await layer.blockStatus(offset, bytes);
    bytes = st.length;
    if (st.data || st.zero) {
      let f = (st.data ? DATA : 0) | (st.zero ? ZERO : 0) | ALLOCATED;
      if (st.offset !== undefined) f |= OFFSET_VALID;
      if (offset + bytes === await layer.length()) f |= EOF;
      return [f, bytes];
    }
    const below: BlockDriver | null = layer.backing ?? null;
    if (!below) return [ZERO, bytes];
    const blen = await below.length();
    if (offset >= blen) return [ZERO, bytes];
    bytes = Math.min(bytes, blen - offset);
    layer = below;
  }
  return [ZERO, bytes];
}

/** Thrown to end a comparison with qemu-img compare's exit code after printing `text`. */
class Outcome {
  constructor(readonly code: number) {}
}

function firstDifference(a: Uint8Array, b: Uint8Array): { differs: boolean; run: number } {
  const cmp = (i: number, len: number) => {
    for (let j = i; j < i + len; j++) if (a[j] !== b[j]) return true;
    return false;
  };
  let i = Math.min(a.length, SECTOR);
  const differs = cmp(0, i);
  while (i < a.length) {
    const len = Math.min(a.length - i, SECTOR);
    if (cmp(i, len) !== differs) break;
    i += len;
  }
  return { differs, run: i };
}

/** Options of {@link compareImages}. */
export interface CompareOptions {
  strict?: boolean;
  quiet?: boolean;
  progress?: Progress;
}

/** img_compare() on open images; returns the exit code (0 same, 1 different, 3/4 errors). */
export async function compareImages(
  io: Io,
  a: BlockDriver,
  b: BlockDriver,
  names: [string, string],
  opts: CompareOptions = {},
): Promise<number> {
  const say = (t: string) => {
    if (!opts.quiet) io.out(t);
  };
  const size1 = await a.length();
  const size2 = await b.length();
  const total = Math.min(size1, size2);
  // Progress moves by each chunk's share of the larger image, summed in single precision as
  // qemu_progress_print() does.
  const progressBase = Math.max(size1, size2);
  let shown = 0;
  const advance = (chunk: number) => {
    const f = Math.fround;
    shown = f(shown + f(f(f(f(chunk) / f(progressBase)) * 100) / 100 * 100));
    opts.progress?.update(shown);
  };
  const buf1 = new Uint8Array(IO_BUF_SIZE);
  const buf2 = new Uint8Array(IO_BUF_SIZE);
  if (opts.strict && size1 !== size2) {
    say("Strict mode: Image size mismatch!\n");
    return 1;
  }
  const readOrFail = async (d: BlockDriver, off: number, buf: Uint8Array, name: string) => {
    try {
      await d.read(off, buf);
    } catch (e) {
      io.err(`qemu-img: Error while reading offset ${off} of ${name}: ${strerror(e)}\n`);
      throw new Outcome(4);
    }
  };
  const checkEmpty = async (d: BlockDriver, off: number, len: number, name: string) => {
    const buf = buf1.subarray(0, len);
    await readOrFail(d, off, buf, name);
    for (let i = 0; i < len; i += SECTOR) {
      if (!isZero(buf.subarray(i, Math.min(i + SECTOR, len)))) {
        say(`Content mismatch at offset ${off + i}!\n`);
        throw new Outcome(1);
      }
    }
  };
  try {
    for (let off = 0; off < total;) {
      const [s1, n1] = await chainFlags(a, off, size1 - off).catch(() => {
        io.err(`qemu-img: Sector allocation test failed for ${names[0]}\n`);
        throw new Outcome(3);
      });
      const [s2, n2] = await chainFlags(b, off, size2 - off).catch(() => {
        io.err(`qemu-img: Sector allocation test failed for ${names[1]}\n`);
        throw new Outcome(3);
      });
      let chunk = Math.min(n1, n2, total - off);
      if (opts.strict && s1 !== s2) {
        say(`Strict mode: Offset ${off} block status mismatch!\n`);
        return 1;
      }
      const alloc1 = !!(s1 & ALLOCATED), alloc2 = !!(s2 & ALLOCATED);
      if ((s1 & ZERO) && (s2 & ZERO)) {
        // Both read as zeros.
      } else if (alloc1 === alloc2) {
        if (alloc1) {
          chunk = Math.min(chunk, IO_BUF_SIZE);
          const x = buf1.subarray(0, chunk), y = buf2.subarray(0, chunk);
          await readOrFail(a, off, x, names[0]);
          await readOrFail(b, off, y, names[1]);
          const d = firstDifference(x, y);
          if (d.differs || d.run !== chunk) {
            say(`Content mismatch at offset ${off + (d.differs ? 0 : d.run)}!\n`);
            return 1;
          }
        }
      } else {
        chunk = Math.min(chunk, IO_BUF_SIZE);
        if (alloc1) await checkEmpty(a, off, chunk, names[0]);
        else await checkEmpty(b, off, chunk, names[1]);
      }
      off += chunk;
      advance(chunk);
    }
    if (size1 !== size2) {
      say("Warning: Image size mismatch!\n");
      const [over, name, overSize] = size1 > size2 ? [a, names[0], size1] : [b, names[1], size2];
      for (let off = total; off < overSize;) {
        let [s, chunk] = await chainFlags(over, off, overSize - off);
        if (s & ALLOCATED) {
          chunk = Math.min(chunk, IO_BUF_SIZE);
          await checkEmpty(over, off, chunk, name);
        }
        off += chunk;
        advance(chunk);
      }
    }
  } catch (e) {
    if (e instanceof Outcome) return e.code;
    throw e;
  }
  say("Images are identical.\n");
  return 0;
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "force-share", arg: false, key: "U" },
];

/** The compare command line. */
export async function cmdCompare(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":hf:F:T:pqsU", LONG);
  let fmt1: string | undefined, fmt2: string | undefined;
  let strict = false, quiet = false, progress = false, forceShare = false;
  for (const [k, v] of opts) {
    if (k === "h") {
      io.out(
        "usage: qemu-img compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] " +
          "[-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2\n",
      );
      return 0;
    }
    if (k === "f") fmt1 = v;
    else if (k === "F") fmt2 = v;
    else if (k === "s") strict = true;
    else if (k === "q") quiet = true;
    else if (k === "p") progress = true;
    else if (k === "U") forceShare = true;
  }
  if (quiet) progress = false;
  if (rest.length !== 2) throw usageError("Expecting two image file names");
  let a: BlockDriver | undefined, b: BlockDriver | undefined;
  // QEMU ends the progress line however the comparison ends, even when an image fails to open.
  const p = progress ? new Progress(io, 2) : undefined;
  try {
    try {
      a = await openImg(io, rest[0], { format: fmt1, forceShare });
      b = await openImg(io, rest[1], { format: fmt2, forceShare });
    } catch (e) {
      if (e instanceof QemuImgError) throw new QemuImgError(e.message, 2);
      throw e;
    }
    p?.update(0);
    return await compareImages(io, a, b, [rest[0], rest[1]], { strict, quiet, progress: p });
  } finally {
    p?.end();
    await closeAll(a, b);
  }
}
