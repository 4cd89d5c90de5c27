/** qemu-img amend: change format options of an existing image (qcow2: compat, lazy_refcounts...). */
import type { Qcow2AmendOptions } from "@demu/block";
import { getopt, type Io, QemuImgError, usageError } from "./cli.ts";
import { amendOptsOf, CreateOpts, createOptsOf, optionsHelp, splitOptions } from "./create_opts.ts";
import { asQcow2, closeAll, errorText, openImg } from "./image.ts";
import { Progress } from "./progress.ts";

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "force", arg: false, key: "force" },
  { name: "force-share", arg: false, key: "U" },
];

/** The amend command line. */
export async function cmdAmend(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":ho:f:t:pqU", LONG);
  let format: string | undefined;
  const options: string[] = [];
  let quiet = false;
  let progress = false;
  for (const [k, v] of opts) {
    if (k === "h") {
      io.out(
        "usage: qemu-img amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] " +
          "[-t cache] [--force] -o options filename\n",
      );
      return 0;
    }
    if (k === "f") format = v;
    else if (k === "o") options.push(v);
    else if (k === "q") quiet = true;
    else if (k === "p") progress = true;
  }
  if (!options.length) throw usageError("Must specify options (-o)");
  if (quiet) progress = false;
  if (options.some((o) => o === "help" || o === "?") && format) {
    const desc = amendOptsOf(format);
    if (!desc) {
      throw new QemuImgError(`Format driver '${format}' does not support option amendment`);
    }
    io.out(optionsHelp(format, desc));
    return 0;
  }
  if (rest.length !== 1) throw usageError("Expecting one image file name");
  const d = await openImg(io, rest[0], { format, readOnly: false, quiet });
  try {
    const q = asQcow2(d);
    const desc = amendOptsOf(d.format);
    if (!q || !desc) {
      throw new QemuImgError(`Format driver '${d.format}' does not support option amendment`);
    }
    const parsed = new CreateOpts(desc);
    for (const o of options) {
      for (const [k, v] of splitOptions(o)) {
        if (!desc.find((x) => x.name === k) && createOptsOf(d.format)?.find((x) => x.name === k)) {
          throw new QemuImgError(`Invalid parameter '${k}'`).withHint(
            "This option is only supported for image creation\n",
          );
        }
        parsed.set(k, v, "");
      }
    }
    const compat = parsed.get("compat");
    if (compat !== undefined && !["0.10", "v2", "1.1", "v3"].includes(compat)) {
      throw new QemuImgError(`Unknown compatibility level ${compat}`);
    }
    const amend: Qcow2AmendOptions = {
      compat: compat === "v2" ? "0.10" : compat === "v3" ? "1.1" : compat,
      lazyRefcounts: parsed.bool("lazy_refcounts"),
      refcountBits: parsed.number("refcount_bits"),
      backingFile: parsed.get("backing_file"),
      backingFormat: parsed.get("backing_fmt"),
      size: parsed.size("size"),
    };
    const p = progress ? new Progress(io) : undefined;
    p?.update(0);
    try {
      await q.amend(amend);
    } catch (e) {
      throw new QemuImgError(errorText(e));
    }
    p?.update(100);
    p?.end();
  } finally {
    await closeAll(d);
  }
  return 0;
}
