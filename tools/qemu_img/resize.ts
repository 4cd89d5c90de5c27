/** qemu-img resize: grow or (with --shrink) shrink an image's virtual size. */
import { getopt, type Io, QemuImgError, usageError } from "./cli.ts";
import { closeAll, errorText, openImg } from "./image.ts";
import { parseOptionSize } from "./size.ts";

const PREALLOC = ["off", "metadata", "falloc", "full"] as const;
type Prealloc = typeof PREALLOC[number];

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "preallocation", arg: true, key: "preallocation" },
  { name: "shrink", arg: false, key: "shrink" },
];

/** The resize command line: the size is always the last argument, so "-1G" is not an option. */
export async function cmdResize(io: Io, args: string[]): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    io.out(
      "usage: qemu-img resize [--object objectdef] [--image-opts] [-f fmt] " +
        "[--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size\n",
    );
    return 0;
  }
  if (args.length < 2) throw usageError("Not enough arguments");
  let sizeText = args[args.length - 1];
  const { opts, rest } = getopt(args.slice(0, -1), ":f:hqU", LONG);
  let format: string | undefined;
  let quiet = false;
  let shrink = false;
  let prealloc: Prealloc | undefined;
  for (const [k, v] of opts) {
    if (k === "f") format = v;
    else if (k === "q") quiet = true;
    else if (k === "shrink") shrink = true;
    else if (k === "preallocation") {
      if (!(PREALLOC as readonly string[]).includes(v)) {
        throw new QemuImgError(`Invalid preallocation mode '${v}'`);
      }
      prealloc = v as Prealloc;
    }
  }
  if (rest.length !== 1) throw usageError("Expecting image file name and size");
  let relative = 0;
  if (sizeText.startsWith("+")) {
    relative = 1;
    sizeText = sizeText.slice(1);
  } else if (sizeText.startsWith("-")) {
    relative = -1;
    sizeText = sizeText.slice(1);
  }
  const n = parseOptionSize("size", sizeText);
  const d = await openImg(io, rest[0], { format, readOnly: false, quiet });
  try {
    const current = await d.length();
    const total = relative ? BigInt(current) + BigInt(relative) * n : n;
    if (total <= 0n || total > (1n << 63n) - 1n) {
      throw new QemuImgError("New image size must be positive");
    }
    const size = Number(total);
    if (prealloc && prealloc !== "off" && size <= current) {
      throw new QemuImgError("Preallocation can only be used for growing images");
    }
    if (size < current && !shrink) {
      throw new QemuImgError(
        "Use the --shrink option to perform a shrink operation.\n" +
          "warning: Shrinking an image will delete all data beyond the shrunken image's end. " +
          "Before performing such an operation, make sure there is no important data there.",
      );
    }
    try {
      await d.truncate(size, { preallocation: prealloc, shrink: true });
    } catch (e) {
      throw new QemuImgError(errorText(e));
    }
    if (!quiet) io.out("Image resized.\n");
  } finally {
    await closeAll(d);
  }
  return 0;
}
