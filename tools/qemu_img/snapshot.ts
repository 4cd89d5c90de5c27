/** qemu-img snapshot: list, create, apply and delete internal snapshots (qcow2). */
import { type BlockDriver, rawProbeWarning } from "@demu/block";
import { getopt, type Io, QemuImgError, usageError } from "./cli.ts";
import { snapshotTable } from "./human.ts";
import { asQcow2, closeAll, errorText, openImg, ReadOnlyView } from "./image.ts";

/** Which snapshot -l names in convert: by id, by name, or either. */
export interface SnapshotSpec {
  id?: string;
  name?: string;
}

/** Parses convert -l: "snapshot.id=1,snapshot.name=x" or a bare name. */
export function parseSnapshotSpec(text: string): SnapshotSpec {
  if (!text.startsWith("snapshot.")) return { name: text };
  const spec: SnapshotSpec = {};
  for (const part of text.split(",")) {
    const [k, v] = part.split("=", 2);
    if (k === "snapshot.id") spec.id = v;
    else if (k === "snapshot.name") spec.name = v;
    else throw new QemuImgError(`Invalid parameter '${k}'`);
  }
  return spec;
}

/**
 * bdrv_snapshot_load_tmp(): the image as it was at a snapshot, read-only. demu reads the snapshot
 * from a private copy of the image with the snapshot applied; the copy goes away on close.
 */
export async function loadSnapshot(src: BlockDriver, spec: SnapshotSpec): Promise<BlockDriver> {
  const q = asQcow2(src);
  if (!q) {
    throw new QemuImgError(
      `Failed to load snapshot: Block format '${src.format}' used by device '' does not support temporarily loading internal snapshots`,
    );
  }
  const snap = q.listSnapshots().find((s) =>
    (spec.id === undefined || s.id === spec.id) &&
    (spec.name === undefined || s.name === spec.name)
  ) ?? (spec.id === undefined && spec.name !== undefined
    ? q.listSnapshots().find((s) =>
      s.id === spec.name
    )
    : undefined);
  if (!snap) throw new QemuImgError("Failed to load snapshot: Can't find snapshot");
  const dir = await Deno.makeTempDir({ prefix: "qemu-img-snap" });
  const copy = `${dir}/image.qcow2`;
  await Deno.copyFile(src.filename, copy);
  const { openImage } = await import("@demu/block");
  const view = await openImage(copy, { format: "qcow2", readOnly: false, noBacking: true });
  const vq = asQcow2(view)!;
  await vq.applySnapshot(snap.id);
  const backing = src.backing ?? null;
  // Reads through the copy; the source's own backing chain answers what the copy leaves to it.
  return new SnapshotView(view, backing, src, dir);
}

/** A read-only view of a snapshot over a private copy of the image. */
class SnapshotView extends ReadOnlyView implements BlockDriver {
  readonly format = "qcow2";
  constructor(
    readonly inner: BlockDriver,
    readonly backing: BlockDriver | null,
    readonly source: BlockDriver,
    readonly dir: string,
  ) {
    super();
  }
  get filename(): string {
    return this.source.filename;
  }
  length() {
    return this.inner.length();
  }
  async read(offset: number, buf: Uint8Array): Promise<void> {
    if (!this.backing) return this.inner.read(offset, buf);
    // The copy has no backing attached: fill unallocated ranges from the source's backing.
    let pos = 0;
    while (pos < buf.length) {
      const st = await this.inner.blockStatus(offset + pos, buf.length - pos);
      const part = buf.subarray(pos, pos + st.length);
      if (st.allocated) await this.inner.read(offset + pos, part);
      else {
        const blen = await this.backing.length();
        const inRange = Math.max(0, Math.min(part.length, blen - (offset + pos)));
        if (inRange) await this.backing.read(offset + pos, part.subarray(0, inRange));
        part.fill(0, inRange);
      }
      pos += st.length;
    }
  }
  blockStatus(offset: number, length: number) {
    return this.inner.blockStatus(offset, length);
  }
  async close(): Promise<void> {
    await closeAll(this.inner, this.source);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "force-share", arg: false, key: "U" },
];

/** The snapshot command line. */
export async function cmdSnapshot(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":la:c:d:hqU", LONG);
  let action: "l" | "a" | "c" | "d" | undefined;
  let name = "";
  let quiet = false;
  let forceShare = false;
  for (const [k, v] of opts) {
    if (k === "h") {
      io.out(
        "usage: qemu-img snapshot [--object objectdef] [--image-opts] [-U] [-q] " +
          "[-l | -a snapshot | -c snapshot | -d snapshot] filename\n",
      );
      return 0;
    }
    if (k === "l" || k === "a" || k === "c" || k === "d") {
      if (action) throw usageError("Cannot mix '-l', '-a', '-c', '-d'");
      action = k;
      name = v;
    } else if (k === "q") quiet = true;
    else if (k === "U") forceShare = true;
  }
  if (rest.length !== 1) throw usageError("Expecting one image file name");
  if (!action) return 0;
  const filename = rest[0];
  let probed = false;
  const d = await openImg(io, filename, {
    readOnly: action === "l",
    forceShare,
    quiet,
    noBacking: true,
    onRawProbe: () => (probed = true),
  });
  try {
    const q = asQcow2(d);
    switch (action) {
      case "l":
        if (q) io.out(snapshotTable(q.listSnapshots()));
        break;
      case "c":
        if (!q) {
          throw new QemuImgError(
            `Could not create snapshot '${name}': -95 (Operation not supported)`,
          );
        }
        try {
          await q.createSnapshot(name);
        } catch (e) {
          throw new QemuImgError(`Could not create snapshot '${name}': ${errorText(e)}`);
        }
        break;
      case "a":
        if (!q) {
          // QEMU reopens the image to try its file layer, repeating a probed-raw warning.
          if (probed) io.err(rawProbeWarning(filename) + "\n");
          throw new QemuImgError(
            `Could not apply snapshot '${name}': Block driver does not support snapshots`,
          );
        }
        try {
          await q.applySnapshot(name);
        } catch (e) {
          throw new QemuImgError(`Could not apply snapshot '${name}': ${errorText(e)}`);
        }
        break;
      case "d": {
        const sn = q?.listSnapshots().find((s) => s.name === name);
        if (!q || !sn) {
          throw new QemuImgError(`Could not delete snapshot '${name}': snapshot not found`);
        }
        try {
          await q.deleteSnapshot(sn.id);
        } catch (e) {
          throw new QemuImgError(`Could not delete snapshot '${name}': ${errorText(e)}`);
        }
        break;
      }
    }
  } finally {
    await closeAll(d);
  }
  return 0;
}
