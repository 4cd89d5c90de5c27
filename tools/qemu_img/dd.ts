/** qemu-img dd: copy part of an image into a new image, dd(1) style operands. */
import type { BlockDriver } from "@demu/block";
import { type Io, QemuImgError, usageError } from "./cli.ts";
import { createImage } from "./create.ts";
import { closeAll, openImg, strerror } from "./image.ts";
import { cvtnum } from "./size.ts";

/** The dd command line: options (-f, -O, -U) and operands (if=, of=, bs=, count=, skip=). */
export async function cmdDd(io: Io, args: string[]): Promise<number> {
  let fmt: string | undefined;
  let outFmt = "raw";
  let input: string | undefined, output: string | undefined;
  let bs = 512;
  let count: number | undefined;
  let skip: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-h" || a === "--help") {
      io.out(
        "usage: qemu-img dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] " +
          "[count=blocks] [skip=blocks] if=input of=output\n",
      );
      return 0;
    }
    if (a === "-f" || a === "-O") {
      if (i + 1 >= args.length) throw usageError(`missing argument for option '${a}'`);
      if (a === "-f") fmt = args[++i];
      else outFmt = args[++i];
      continue;
    }
    if (a.startsWith("-f") && a.length > 2) {
      fmt = a.slice(2);
      continue;
    }
    if (a.startsWith("-O") && a.length > 2) {
      outFmt = a.slice(2);
      continue;
    }
    if (a === "-U" || a === "--force-share" || a === "--image-opts") continue;
    if (a.startsWith("-")) throw usageError(`unrecognized option '${a}'`);
    const eq = a.indexOf("=");
    const key = eq < 0 ? a : a.slice(0, eq);
    const val = eq < 0 ? "" : a.slice(eq + 1);
    if (eq < 0) throw new QemuImgError(`unrecognized operand ${a}`);
    if (key === "if") input = val;
    else if (key === "of") output = val;
    else if (key === "bs") bs = cvtnum("bs", val, 1n, 2147483647n);
    else if (key === "count") count = cvtnum("count", val);
    else if (key === "skip") skip = cvtnum("skip", val);
    else throw new QemuImgError(`unrecognized operand ${key}`);
  }
  if (input === undefined || output === undefined) {
    throw new QemuImgError("Must specify both input and output files");
  }
  let src: BlockDriver | undefined, dst: BlockDriver | undefined;
  try {
    src = await openImg(io, input, { format: fmt });
    const inSize = await src.length();
    let size = inSize;
    if (count !== undefined && count <= Math.floor(inSize / bs)) size = count * bs;
    let inPos: number;
    const skipBytes = (skip ?? 0) * bs;
    if (skip !== undefined && size < skipBytes) {
      io.err(`qemu-img: ${input}: cannot skip to specified offset\n`);
      inPos = size;
    } else inPos = skipBytes;
    await createImage(io, {
      filename: output,
      format: outFmt,
      options: [],
      size: Math.max(0, size - skipBytes),
      quiet: true,
    });
    dst = await openImg(io, output, { format: outFmt, readOnly: false });
    const buf = new Uint8Array(bs);
    let outPos = 0;
    for (; inPos < size; inPos += bs) {
      const n = Math.min(bs, size - inPos);
      const chunk = buf.subarray(0, n);
      try {
        await src.read(inPos, chunk);
      } catch (e) {
        throw new QemuImgError(`error while reading from input image file: ${strerror(e)}`);
      }
      try {
        await dst.write(outPos, chunk);
      } catch (e) {
        throw new QemuImgError(`error while writing to output image file: ${strerror(e)}`);
      }
      outPos += n;
    }
    await dst.flush();
  } finally {
    await closeAll(dst, src);
  }
  return 0;
}
