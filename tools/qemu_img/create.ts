/** qemu-img create: a new raw or qcow2 image. */
import { createQcow2, FileProtocol, type Qcow2CreateOptions } from "@demu/block";
import { getopt, type Io, QemuImgError, usageError } from "./cli.ts";
import { CreateOpts, createOptsOf, optionsHelp, splitOptions } from "./create_opts.ts";
import { closeAll, errorText, openImg, resolveBacking } from "./image.ts";
import { cvtnum } from "./size.ts";

/** What {@link createImage} needs: the parsed create command line. */
export interface CreateRequest {
  filename: string;
  format: string;
  /** The -o strings, joined. */
  options: string[];
  size?: number;
  backingFile?: string;
  backingFormat?: string;
  unsafe?: boolean;
  quiet?: boolean;
}

const PREALLOC_RAW = ["off", "falloc", "full"];
const PREALLOC_QCOW2 = ["off", "metadata", "falloc", "full"];

/** Parses -o strings for a format (throws QEMU's messages, prefixed with the file name). */
export function parseCreateOptions(format: string, options: string[], prefix: string): CreateOpts {
  const desc = createOptsOf(format);
  if (!desc) throw new QemuImgError(`${prefix}Unknown file format '${format}'`);
  const opts = new CreateOpts(desc);
  for (const o of options) {
    for (const [k, v] of splitOptions(o)) opts.set(k, v, prefix);
  }
  return opts;
}

/** Creates a raw image file as file-posix does (including the allocated first block). */
export async function createRaw(filename: string, size: number, prealloc: string): Promise<void> {
  const f = FileProtocol.open(filename, { create: true, truncate: true });
  try {
    await f.truncate(size, { preallocation: prealloc as "off" | "falloc" | "full" });
    if (prealloc === "off" && size > 0) {
      // QEMU writes the first block so that later alignment probing is cheap; match its layout.
      await f.write(0, new Uint8Array(Math.min(size, 4096)));
    }
  } finally {
    await f.close();
  }
}

/** bdrv_img_create(): validates, prints "Formatting ...", creates. */
export async function createImage(io: Io, req: CreateRequest): Promise<void> {
  const prefix = `${req.filename}: `;
  const opts = parseCreateOptions(req.format, req.options, prefix);
  if (req.size !== undefined) opts.values.set("size", String(req.size));
  if (req.backingFile !== undefined) {
    if (!opts.desc.find((d) => d.name === "backing_file")) {
      throw new QemuImgError(
        `${prefix}Backing file not supported for file format '${req.format}'`,
      );
    }
    opts.values.set("backing_file", req.backingFile);
  }
  if (req.backingFormat !== undefined) {
    if (!opts.desc.find((d) => d.name === "backing_fmt")) {
      throw new QemuImgError(
        `${prefix}Backing file format not supported for file format '${req.format}'`,
      );
    }
    opts.values.set("backing_fmt", req.backingFormat);
  }
  const backing = opts.get("backing_file");
  const backingFmt = opts.get("backing_fmt");
  if (backingFmt !== undefined && backing === undefined) {
    printFormatting(io, req, opts);
    throw new QemuImgError(`${prefix}Backing format cannot be used without backing file`);
  }
  if (backing !== undefined && backing === req.filename) {
    throw new QemuImgError(
      `${prefix}Error: Trying to create an image with the same filename as the backing file`,
    );
  }
  if (backing !== undefined && backingFmt === undefined) {
    const err = new QemuImgError(`${prefix}Backing file specified without backing format`);
    // QEMU names the format it would have probed (its hint has no final newline).
    try {
      const b = await openImg(io, resolveBacking(req.filename, backing), { noBacking: true });
      err.withHint(`Detected format of ${b.format}.`);
      await closeAll(b);
    } catch {
      // Not openable: the error alone.
    }
    throw err;
  }
  if (backing !== undefined && !req.unsafe) {
    const full = resolveBacking(req.filename, backing);
    let b;
    try {
      b = await openImg(io, full, { format: backingFmt, readOnly: true, noBacking: true });
    } catch (e) {
      const msg = errorText(e).replace(/^Could not open '[^']*': (?=Could not open)/, "");
      throw new QemuImgError(`${prefix}${msg}`, 1, false).withHint(
        "Could not open backing image.\n",
      );
    }
    try {
      if (!opts.has("size")) opts.values.set("size", String(await b.length()));
    } finally {
      await closeAll(b);
    }
  }
  if (!opts.has("size")) throw new QemuImgError(`${prefix}Image creation needs a size parameter`);
  const size = opts.size("size")!;
  printFormatting(io, req, opts);
  try {
    if (req.format === "raw") {
      const prealloc = opts.get("preallocation") ?? "off";
      if (!PREALLOC_RAW.includes(prealloc)) throw new Error(`invalid parameter value: ${prealloc}`);
      await createRaw(req.filename, size, prealloc);
    } else {
      await createQcow2(req.filename, qcow2Options(opts, size, !!req.unsafe));
    }
  } catch (e) {
    if (e instanceof QemuImgError) throw e;
    throw new QemuImgError(prefix + errorText(e));
  }
}

/** The typed qcow2 create options from parsed -o values (enum values checked as QEMU does). */
export function qcow2Options(opts: CreateOpts, size: number, unsafe: boolean): Qcow2CreateOptions {
  const compat = opts.get("compat");
  if (compat !== undefined && !["0.10", "v2", "1.1", "v3"].includes(compat)) {
    throw new Error(`Parameter 'version' does not accept value '${compat}'`);
  }
  const ct = opts.get("compression_type");
  if (ct !== undefined && ct !== "zlib" && ct !== "zstd") {
    throw new Error(`Parameter 'compression-type' does not accept value '${ct}'`);
  }
  const prealloc = opts.get("preallocation");
  if (prealloc !== undefined && !PREALLOC_QCOW2.includes(prealloc)) {
    throw new Error(`Parameter 'preallocation' does not accept value '${prealloc}'`);
  }
  const encrypt = opts.get("encrypt.format") ?? (opts.bool("encryption") ? "aes" : undefined);
  return {
    size,
    clusterSize: opts.size("cluster_size"),
    compat: compat === "v2" ? "0.10" : compat === "v3" ? "1.1" : compat,
    backingFile: opts.get("backing_file"),
    backingFormat: opts.get("backing_fmt"),
    lazyRefcounts: opts.bool("lazy_refcounts"),
    preallocation: prealloc as Qcow2CreateOptions["preallocation"],
    refcountBits: opts.number("refcount_bits"),
    extendedL2: opts.bool("extended_l2"),
    compressionType: ct as Qcow2CreateOptions["compressionType"],
    encrypt,
    dataFile: opts.get("data_file"),
    unsafe,
  };
}

function printFormatting(io: Io, req: CreateRequest, opts: CreateOpts): void {
  if (!req.quiet) io.out(`Formatting '${req.filename}', fmt=${req.format} ${opts.print()}\n`);
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "object", arg: true, key: "object" },
];

/** The create command line. */
export async function cmdCreate(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":F:b:f:ho:qu", LONG);
  let format = "raw";
  const options: string[] = [];
  let backingFile: string | undefined;
  let backingFormat: string | undefined;
  let quiet = false;
  let unsafe = false;
  for (const [k, v] of opts) {
    if (k === "h") return help(io);
    if (k === "F") backingFormat = v;
    else if (k === "b") backingFile = v;
    else if (k === "f") format = v;
    else if (k === "o") options.push(v);
    else if (k === "q") quiet = true;
    else if (k === "u") unsafe = true;
  }
  if (options.some((o) => o === "help" || o === "?")) {
    const desc = createOptsOf(format);
    if (!desc) throw new QemuImgError(`Unknown file format '${format}'`);
    io.out(optionsHelp(format, desc));
    return 0;
  }
  if (rest.length < 1) throw usageError("Expecting image file name");
  const filename = rest[0];
  let size: number | undefined;
  if (rest.length >= 2) size = cvtnum("image size", rest[1]);
  if (rest.length > 2) throw usageError(`Unexpected argument: ${rest[2]}`);
  await createImage(io, {
    filename,
    format,
    options,
    size,
    backingFile,
    backingFormat,
    unsafe,
    quiet,
  });
  return 0;
}

function help(io: Io): number {
  io.out(
    "usage: qemu-img create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]]\n" +
      "       [-u] [-o options] filename [size]\n",
  );
  return 0;
}
