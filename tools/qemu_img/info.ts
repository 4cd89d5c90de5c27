/** qemu-img info: what an image is, human or JSON, optionally down its backing chain. */
import type { BlockDriver } from "@demu/block";
import { getopt, type Io, parseOutputFormat, QemuImgError, usageError } from "./cli.ts";
import { dumpQObject, snapshotJson, snapshotTable } from "./human.ts";
import { asQcow2, closeAll, openImg, resolveBacking } from "./image.ts";
import { type QValue, toQemuJson } from "./json.ts";
import { sizeToStr } from "./size.ts";
import type { Qcow2SnapshotInfo } from "@demu/block";

/** QAPI ImageInfo, as the fields qemu-img prints. */
export interface ImageInfo {
  filename: string;
  format: string;
  dirtyFlag: boolean;
  actualSize?: number;
  virtualSize: number;
  clusterSize?: number;
  backingFilename?: string;
  fullBackingFilename?: string;
  backingFilenameFormat?: string;
  snapshots?: Qcow2SnapshotInfo[];
  formatSpecific?: { type: string; data: { [k: string]: QValue | undefined } };
}

/** Host bytes an image takes ("disk size"). */
export async function actualSize(d: BlockDriver): Promise<number | undefined> {
  if (d.allocatedSize) return await d.allocatedSize();
  const file = (d as { file?: BlockDriver }).file;
  if (file?.allocatedSize) return await file.allocatedSize();
  return undefined;
}

/** bdrv_query_image_info() of an open image. */
export async function queryImageInfo(d: BlockDriver, filename: string): Promise<ImageInfo> {
  const info: ImageInfo = {
    filename,
    format: d.format,
    dirtyFlag: false,
    actualSize: await actualSize(d),
    virtualSize: await d.length(),
  };
  // QEMU counts a raw image's size in whole 512-byte sectors.
  if (d.format === "raw") info.virtualSize = Math.ceil(info.virtualSize / 512) * 512;
  const q = asQcow2(d);
  if (q) {
    const qi = q.info();
    info.clusterSize = qi.clusterSize;
    info.dirtyFlag = qi.dirty;
    if (qi.backingFile !== undefined) {
      info.backingFilename = qi.backingFile;
      info.fullBackingFilename = resolveBacking(filename, qi.backingFile);
      info.backingFilenameFormat = qi.backingFormat;
    }
    const snaps = q.listSnapshots();
    if (snaps.length) info.snapshots = snaps;
    info.formatSpecific = {
      type: "qcow2",
      data: qi.compat === "0.10"
        ? {
          compat: "0.10",
          "compression-type": qi.compressionType,
          "refcount-bits": qi.refcountBits,
        }
        : {
          compat: "1.1",
          "compression-type": qi.compressionType,
          "lazy-refcounts": qi.lazyRefcounts,
          "refcount-bits": qi.refcountBits,
          corrupt: qi.corrupt,
          "extended-l2": qi.extendedL2,
        },
    };
  }
  return info;
}

/** ImageInfo as QAPI JSON. */
export function imageInfoJson(i: ImageInfo): QValue {
  return {
    filename: i.filename,
    format: i.format,
    "dirty-flag": i.dirtyFlag,
    "actual-size": i.actualSize,
    "virtual-size": i.virtualSize,
    "cluster-size": i.clusterSize,
    "backing-filename": i.backingFilename,
    "full-backing-filename": i.fullBackingFilename,
    "backing-filename-format": i.backingFilenameFormat,
    snapshots: i.snapshots?.map(snapshotJson),
    "format-specific": i.formatSpecific,
  };
}

/** bdrv_image_info_dump(): the human form. */
export function imageInfoHuman(i: ImageInfo): string {
  let s = `image: ${i.filename}\nfile format: ${i.format}\n` +
    `virtual size: ${sizeToStr(i.virtualSize)} (${i.virtualSize} bytes)\n` +
    `disk size: ${i.actualSize === undefined ? "unavailable" : sizeToStr(i.actualSize)}\n`;
  if (i.clusterSize !== undefined) s += `cluster_size: ${i.clusterSize}\n`;
  if (i.dirtyFlag) s += "cleanly shut down: no\n";
  if (i.backingFilename !== undefined) {
    s += `backing file: ${i.backingFilename}`;
    if (i.fullBackingFilename === undefined) s += " (cannot determine actual path)";
    else if (i.fullBackingFilename !== i.backingFilename) {
      s += ` (actual path: ${i.fullBackingFilename})`;
    }
    s += "\n";
    if (i.backingFilenameFormat !== undefined) {
      s += `backing file format: ${i.backingFilenameFormat}\n`;
    }
  }
  if (i.snapshots) s += snapshotTable(i.snapshots);
  if (i.formatSpecific) {
    s += "Format specific information:\n" + dumpQObject(1, i.formatSpecific.data);
  }
  return s;
}

/** collect_image_info_list(): the image and, with `chain`, every backing file below it. */
export async function collectImageInfo(
  io: Io,
  filename: string,
  format: string | undefined,
  chain: boolean,
  forceShare: boolean,
): Promise<ImageInfo[]> {
  const seen = new Set<string>();
  const list: ImageInfo[] = [];
  let name: string | undefined = filename;
  let fmt = format;
  while (name !== undefined) {
    if (seen.has(name)) {
      throw new QemuImgError(`Backing file '${name}' creates an infinite loop.`);
    }
    seen.add(name);
    const d = await openImg(io, name, { format: fmt, noBacking: true, forceShare });
    try {
      const info = await queryImageInfo(d, name);
      list.push(info);
      if (!chain) break;
      name = info.fullBackingFilename ?? info.backingFilename;
      fmt = info.backingFilenameFormat;
    } finally {
      await closeAll(d);
    }
  }
  return list;
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "format", arg: true, key: "f" },
  { name: "output", arg: true, key: "output" },
  { name: "backing-chain", arg: false, key: "backing-chain" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "force-share", arg: false, key: "U" },
];

/** The info command line. */
export async function cmdInfo(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":f:hU", LONG);
  let format: string | undefined;
  let output = "human";
  let chain = false;
  let forceShare = false;
  for (const [k, v] of opts) {
    if (k === "h") {
      io.out(
        "usage: qemu-img info [--object objectdef] [--image-opts] [-f fmt] " +
          "[--output=ofmt] [--backing-chain] [-U] filename\n",
      );
      return 0;
    }
    if (k === "f") format = v;
    else if (k === "output") output = v;
    else if (k === "backing-chain") chain = true;
    else if (k === "U") forceShare = true;
  }
  if (rest.length !== 1) throw usageError("Expecting one image file name");
  const ofmt = parseOutputFormat(output);
  const list = await collectImageInfo(io, rest[0], format, chain, forceShare);
  if (ofmt === "json") {
    const json = chain ? list.map(imageInfoJson) : imageInfoJson(list[0]);
    io.out(toQemuJson(json) + "\n");
  } else {
    io.out(list.map(imageInfoHuman).join("\n"));
  }
  return 0;
}
