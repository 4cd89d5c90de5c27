/** qemu-img check: consistency of a qcow2 image, human or JSON, with -r leaks|all repair. */
import {
  type BlockDriver,
  checkFormatName,
  checkQcow2,
  openProtocol,
  probeFormat,
  type Qcow2CheckResult,
  rawProbeWarning,
} from "@demu/block";
import { getopt, type Io, parseOutputFormat, QemuImgError, usageError } from "./cli.ts";
import { closeAll, errorText, openImg } from "./image.ts";
import { toQemuJson } from "./json.ts";
import { toFixedC } from "./size.ts";

/** QAPI ImageCheck as a JSON value (fields that are zero are left out, as QEMU does). */
export function checkJson(r: Qcow2CheckResult, filename: string, format: string) {
  const opt = (n: number) => (n ? n : undefined);
  return {
    filename,
    format,
    "check-errors": r.checkErrors,
    "image-end-offset": opt(r.imageEndOffset),
    corruptions: opt(r.corruptions),
    leaks: opt(r.leaks),
    "corruptions-fixed": opt(r.corruptionsFixed),
    "leaks-fixed": opt(r.leaksFixed),
    "total-clusters": opt(r.totalClusters),
    "allocated-clusters": opt(r.allocatedClusters),
    "fragmented-clusters": opt(r.fragmentedClusters),
    "compressed-clusters": opt(r.compressedClusters),
  };
}

/** dump_human_image_check(). */
export function checkHuman(r: Qcow2CheckResult): string {
  let s = "";
  if (!(r.corruptions || r.leaks || r.checkErrors)) {
    s += "No errors were found on the image.\n";
  } else {
    if (r.corruptions) {
      s += `\n${r.corruptions} errors were found on the image.\n` +
        "Data may be corrupted, or further writes to the image may corrupt it.\n";
    }
    if (r.leaks) {
      s += `\n${r.leaks} leaked clusters were found on the image.\n` +
        "This means waste of disk space, but no harm to data.\n";
    }
    if (r.checkErrors) {
      s += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
    }
  }
  if (r.totalClusters && r.allocatedClusters) {
    const pct = (n: number, d: number) => toFixedC(n * 100 / d, 2);
    s += `${r.allocatedClusters}/${r.totalClusters} = ${
      pct(r.allocatedClusters, r.totalClusters)
    }% allocated, ${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ${
      pct(r.compressedClusters, r.allocatedClusters)
    }% compressed clusters\n`;
  }
  if (r.imageEndOffset) s += `Image end offset: ${r.imageEndOffset}\n`;
  return s;
}

/** Options of {@link checkImage}. */
export interface CheckRequest {
  filename: string;
  format?: string;
  output: "human" | "json";
  repair?: "leaks" | "all";
  quiet?: boolean;
  /** The name the report shows (default: filename). */
  display?: string;
}

/**
 * QEMU opens the whole chain before checking, so a missing backing file fails the check. Other
 * open errors are left to the checker, which reads damaged images that a normal open refuses.
 */
async function requireBacking(io: Io, filename: string, file: BlockDriver): Promise<void> {
  // No backing file named in the header (backing_file_offset or _size zero): nothing to open.
  const head = new Uint8Array(20);
  if (await file.length() < head.length) return;
  await file.read(0, head);
  const dv = new DataView(head.buffer);
  if (!dv.getBigUint64(8) || !dv.getUint32(16)) return;
  let d;
  try {
    d = await openImg(io, filename, { format: "qcow2", readOnly: true });
  } catch (e) {
    if (errorText(e).includes("Could not open backing file")) throw e;
    return;
  }
  await closeAll(d);
}

/** img_check(): returns the exit code (0 clean, 1 check failed, 2 corrupt, 3 leaks, 63 n/a). */
export async function checkImage(io: Io, req: CheckRequest): Promise<number> {
  let file: BlockDriver;
  try {
    if (req.format) checkFormatName(req.format);
    file = await openProtocol(req.filename, { readOnly: !req.repair });
  } catch (e) {
    throw new QemuImgError(`Could not open '${req.filename}': ${errorText(e)}`);
  }
  try {
    let format = req.format;
    if (!format) {
      const head = new Uint8Array(Math.min(512, await file.length()));
      if (head.length) await file.read(0, head);
      format = probeFormat(head);
      // A repair opens the image for writing, and QEMU warns about a probed raw image then.
      if (format === "raw" && req.repair) io.err(rawProbeWarning(req.filename) + "\n");
    }
    if (format !== "qcow2") throw new QemuImgError("This image format does not support checks", 63);
    await requireBacking(io, req.filename, file);
    const log = (line: string) => io.err(line + "\n");
    let r: Qcow2CheckResult;
    try {
      r = await checkQcow2(file, { repair: req.repair, log });
    } catch (e) {
      throw new QemuImgError(`Could not open '${req.filename}': ${errorText(e)}`);
    }
    if (!r.failure && (r.corruptionsFixed || r.leaksFixed)) {
      if (req.output === "human" && !req.quiet) {
        io.out(
          "The following inconsistencies were found and repaired:\n\n" +
            `    ${r.leaksFixed} leaked clusters\n    ${r.corruptionsFixed} corruptions\n\n` +
            "Double checking the fixed image now...\n",
        );
      }
      const again = await checkQcow2(file, { log });
      again.leaksFixed = r.leaksFixed;
      again.corruptionsFixed = r.corruptionsFixed;
      r = again;
    }
    if (!r.failure && !req.quiet) {
      if (req.output === "json") {
        io.out(toQemuJson(checkJson(r, req.display ?? req.filename, format)) + "\n");
      } else io.out(checkHuman(r));
    }
    if (r.failure) throw new QemuImgError(`Check failed: ${r.failure}`);
    if (r.checkErrors) throw new QemuImgError("Check failed");
    return r.corruptions ? 2 : r.leaks ? 3 : 0;
  } finally {
    await closeAll(file);
  }
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "format", arg: true, key: "f" },
  { name: "repair", arg: true, key: "r" },
  { name: "output", arg: true, key: "output" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "force-share", arg: false, key: "U" },
  // Internal: the operand as the user gave it (--image-opts), for the report.
  { name: "x-display-name", arg: true, key: "display" },
];

/** The check command line. */
export async function cmdCheck(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":hf:r:T:qU", LONG);
  let format: string | undefined;
  let output = "human";
  let repair: "leaks" | "all" | undefined;
  let quiet = false;
  let display: string | undefined;
  for (const [k, v] of opts) {
    if (k === "h") {
      io.out(
        "usage: qemu-img check [--object objectdef] [--image-opts] [-q] [-f fmt] " +
          "[--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename\n",
      );
      return 0;
    }
    if (k === "f") format = v;
    else if (k === "output") output = v;
    else if (k === "q") quiet = true;
    else if (k === "display") display = v;
    else if (k === "r") {
      if (v !== "leaks" && v !== "all") {
        throw usageError(`Unknown option value for -r (expecting 'leaks' or 'all'): ${v}`);
      }
      repair = v;
    }
  }
  if (rest.length !== 1) throw usageError("Expecting one image file name");
  const ofmt = parseOutputFormat(output);
  return await checkImage(io, { filename: rest[0], format, output: ofmt, repair, quiet, display });
}
