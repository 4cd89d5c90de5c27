/** Opening images for qemu-img: QEMU's error wording, the raw-probe warning, the backing chain. */
import {
  type BlockDriver,
  BlockError,
  checkFormatName,
  FileProtocol,
  openImage,
  probeFormat,
  Qcow2Format,
  RawFormat,
} from "@demu/block";
import { type Io, QemuImgError } from "./cli.ts";

/** How qemu-img opens one image. */
export interface ImgOpenOptions {
  format?: string;
  readOnly?: boolean;
  noBacking?: boolean;
  forceShare?: boolean;
  /** -q was given (warnings are printed all the same, as QEMU does). */
  quiet?: boolean;
  /**
   * cache=unsafe (qemu-img convert's default for its target): flushes are not passed to the
   * host file, so the data reaches the disk when the kernel writes it back.
   */
  cacheUnsafe?: boolean;
  /** Called when probing settled on raw. */
  onRawProbe?: () => void;
}

/** The text of an error thrown by the block layer. */
export function errorText(e: unknown): string {
  if (e instanceof QemuImgError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** Opens an image as img_open() does; failures read "Could not open 'name': why". */
export async function openImg(
  io: Io,
  filename: string,
  opts: ImgOpenOptions = {},
): Promise<BlockDriver> {
  const readOnly = opts.readOnly ?? true;
  if (opts.cacheUnsafe && !/^[a-z0-9+.-]+:\/\//i.test(filename)) {
    return await openUnsafe(filename, opts, readOnly);
  }
  try {
    return await openImage(filename, {
      format: opts.format,
      readOnly,
      noBacking: opts.noBacking,
      forceShare: opts.forceShare,
      warn: (m) => {
        opts.onRawProbe?.();
        // QEMU warns only when a probed raw image is opened for writing (-q does not silence it).
        if (!readOnly) io.err(m + "\n");
      },
    });
  } catch (e) {
    throw new QemuImgError(`Could not open '${filename}': ${errorText(e)}`);
  }
}

async function openUnsafe(
  filename: string,
  opts: ImgOpenOptions,
  readOnly: boolean,
): Promise<BlockDriver> {
  let file: FileProtocol | undefined;
  try {
    if (opts.format) checkFormatName(opts.format);
    file = FileProtocol.open(filename, { readOnly });
    file.flush = () => Promise.resolve();
    let format = opts.format;
    if (!format) {
      const head = new Uint8Array(Math.min(512, await file.length()));
      if (head.length) await file.read(0, head);
      format = probeFormat(head);
    }
    if (format === "qcow2") {
      return await Qcow2Format.open(file, { readOnly, noBacking: opts.noBacking });
    }
    return new RawFormat(file);
  } catch (e) {
    await file?.close();
    throw new QemuImgError(`Could not open '${filename}': ${errorText(e)}`);
  }
}

/**
 * Lets the host file under an image (a format's `file`, down to the protocol) run its large
 * requests on pool threads: for a caller that keeps several in flight (convert).
 */
export function useThreadedIo(d: BlockDriver): void {
  for (let x: unknown = d; x; x = (x as { file?: unknown }).file) {
    if (x instanceof FileProtocol) {
      x.threaded = true;
      return;
    }
  }
}

/** The image as a qcow2 driver, when it is one. */
export function asQcow2(d: BlockDriver): Qcow2Format | undefined {
  return d instanceof Qcow2Format ? d : undefined;
}

/** errno text of a block-layer error, as strerror() would print it. */
export function strerror(e: unknown): string {
  if (e instanceof BlockError) {
    switch (e.code) {
      case "EIO":
        return "Input/output error";
      case "EINVAL":
        return "Invalid argument";
      case "ENOSPC":
        return "No space left on device";
      case "EPERM":
        return "Operation not permitted";
      case "ENOTSUP":
        return "Operation not supported";
      case "EROFS":
        return "Read-only file system";
      case "EFBIG":
        return "File too large";
    }
  }
  return errorText(e);
}

/** Closes drivers, ignoring errors (cleanup after a failure already reported). */
export async function closeAll(...drivers: (BlockDriver | undefined | null)[]): Promise<void> {
  for (const d of drivers) {
    if (!d) continue;
    try {
      await d.close();
    } catch {
      // Already failing; the first error is the one reported.
    }
  }
}

/**
 * The name a backing file resolves to, relative to the directory of the image that names it
 * (bdrv_get_full_backing_filename): absolute names and protocol URIs stay as they are.
 */
export function resolveBacking(imageName: string, backing: string): string {
  if (backing.startsWith("/") || /^[a-z0-9+.-]+:\/\//i.test(backing)) return backing;
  if (/^[a-z0-9+.-]+:\/\//i.test(imageName)) return backing;
  const slash = imageName.lastIndexOf("/");
  return slash >= 0 ? imageName.slice(0, slash + 1) + backing : backing;
}

/**
 * The write side of a read-only view over an image (map's QEMU-status view, a snapshot view):
 * every write is refused, and a flush has nothing to do.
 */
export abstract class ReadOnlyView {
  readonly readOnly = true;
  write(): Promise<void> {
    return Promise.reject(new Error("read-only view"));
  }
  writeZeroes(): Promise<void> {
    return this.write();
  }
  discard(): Promise<void> {
    return this.write();
  }
  truncate(): Promise<void> {
    return this.write();
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}
