/** qemu-img measure: the file size an image of a format needs, for a size or an existing image. */
import { type BlockDriver, measureQcow2 } from "@demu/block";
import { getopt, type Io, parseOutputFormat, QemuImgError, usageError } from "./cli.ts";
import { parseCreateOptions, qcow2Options } from "./create.ts";
import { createOptsOf, optionsHelp } from "./create_opts.ts";
import { asQcow2, closeAll, errorText, openImg } from "./image.ts";
import { loadSnapshot, parseSnapshotSpec } from "./snapshot.ts";
import { toQemuJson } from "./json.ts";
import { QemuStatusView } from "./map.ts";
import { cvtnum } from "./size.ts";

/** BlockMeasureInfo. */
export interface MeasureInfo {
  required: number;
  fullyAllocated: number;
  bitmaps?: number;
}

/** raw_measure(): a raw image needs its whole size, rounded up to 512 bytes. */
function measureRaw(size: number): MeasureInfo {
  const n = Math.ceil(size / 512) * 512;
  return { required: n, fullyAllocated: n };
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "object", arg: true, key: "object" },
  { name: "output", arg: true, key: "output" },
  { name: "size", arg: true, key: "size" },
  { name: "force-share", arg: false, key: "U" },
];

/** The measure command line. */
export async function cmdMeasure(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":hf:O:o:l:U", LONG);
  let fmt: string | undefined;
  let outFmt = "raw";
  const options: string[] = [];
  let snapshot: string | undefined;
  let output = "human";
  let size: number | undefined;
  let forceShare = false;
  for (const [k, v] of opts) {
    if (k === "h") {
      io.out(
        "usage: qemu-img measure [--output=ofmt] [-O output_fmt] [-o options] " +
          "[--size N | [--object objectdef] [--image-opts] [-f fmt] [-l snapshot_param] filename]\n",
      );
      return 0;
    }
    if (k === "f") fmt = v;
    else if (k === "O") outFmt = v;
    else if (k === "o") options.push(v);
    else if (k === "l") snapshot = v;
    else if (k === "output") output = v;
    else if (k === "U") forceShare = true;
    else if (k === "size") size = cvtnum("image size", v);
  }
  const ofmt = parseOutputFormat(output);
  if (options.some((o) => o === "help" || o === "?")) {
    const desc = createOptsOf(outFmt);
    if (!desc) throw new QemuImgError(`Unknown file format '${outFmt}'`);
    io.out(optionsHelp(outFmt, desc));
    return 0;
  }
  if (rest.length > 1) throw usageError(`Expecting at most one image file name`);
  const filename = rest[0];
  if (filename !== undefined && size !== undefined) {
    throw new QemuImgError("--size N cannot be used together with a filename.");
  }
  if (filename === undefined && size === undefined) {
    throw new QemuImgError("Either --size N or one filename must be specified.");
  }
  if (!createOptsOf(outFmt)) {
    throw new QemuImgError(`Block driver '${outFmt}' does not support size measurement`);
  }
  let src: BlockDriver | undefined;
  try {
    if (filename !== undefined) {
      src = await openImg(io, filename, { format: fmt, forceShare });
      if (snapshot !== undefined) src = await loadSnapshot(src, parseSnapshotSpec(snapshot));
      size = await src.length();
    }
    const copts = parseCreateOptions(outFmt, options, "");
    let info: MeasureInfo;
    try {
      if (outFmt === "raw") info = measureRaw(size!);
      else {
        const m = await measureQcow2(
          qcow2Options(copts, size!, true),
          src && new QemuStatusView(src),
        );
        info = { required: m.required, fullyAllocated: m.fullyAllocated };
        // Only a source that can hold persistent bitmaps (qcow2 v3) reports their size.
        const sq = src && asQcow2(src);
        if (sq && sq.info().compat === "1.1") info.bitmaps = m.bitmaps;
      }
    } catch (e) {
      throw new QemuImgError(errorText(e));
    }
    if (ofmt === "json") {
      io.out(
        toQemuJson({
          bitmaps: info.bitmaps,
          required: info.required,
          "fully-allocated": info.fullyAllocated,
        }) + "\n",
      );
    } else {
      io.out(`required size: ${info.required}\nfully allocated size: ${info.fullyAllocated}\n`);
      if (info.bitmaps !== undefined) io.out(`bitmaps size: ${info.bitmaps}\n`);
    }
  } finally {
    await closeAll(src);
  }
  return 0;
}
