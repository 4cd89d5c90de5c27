/**
 * Opening images by name: the protocol from the name (a path, or nbd:// when the NBD driver is
 * registered), the format from -f or by probing, as QEMU does.
 */
import { FileProtocol } from "./file.ts";
import { RawFormat } from "./raw.ts";
import { type BlockDriver, BlockError } from "./types.ts";

/** Options for {@link openImage}. */
export interface OpenOptions {
  /** The format (-f); probed when absent. */
  format?: string;
  readOnly?: boolean;
  /** Do not open the backing file (qemu-img -u, info without the chain). */
  noBacking?: boolean;
  /** Where warnings go (the raw probing warning); default: stderr. */
  warn?: (message: string) => void;
  /** Share locks with other users of the image (-U); accepted for QEMU compatibility. */
  forceShare?: boolean;
}

/** Opens a format on top of an already open protocol driver. */
export type FormatOpener = (file: BlockDriver, opts: OpenOptions) => Promise<BlockDriver>;
/** Opens a protocol from a filename it recognises; returns undefined when the name is not its. */
export type ProtocolOpener = (
  filename: string,
  opts: OpenOptions,
) => Promise<BlockDriver | undefined>;
/** Recognises a format from the first bytes of an image. */
export type FormatProbe = (head: Uint8Array) => boolean;

interface FormatEntry {
  open: FormatOpener;
  probe?: FormatProbe;
}

const formats = new Map<string, FormatEntry>([
  ["raw", { open: (file) => Promise.resolve(new RawFormat(file)) }],
]);
const protocols: ProtocolOpener[] = [];

/** Adds a format (qcow2 registers itself through block/mod.ts). */
export function registerFormat(name: string, open: FormatOpener, probe?: FormatProbe): void {
  formats.set(name, { open, probe });
}

/** Adds a protocol (nbd). Protocols are tried in order before the file protocol. */
export function registerProtocol(open: ProtocolOpener): void {
  protocols.push(open);
}

/** The formats demu knows, for messages and --help. */
export function formatNames(): string[] {
  return [...formats.keys()];
}

/** Throws QEMU's error for a format name demu does not know. */
export function checkFormatName(format: string): void {
  if (!formats.has(format)) throw new BlockError("EINVAL", `Unknown driver '${format}'`);
}

/** Opens the protocol layer for a filename: nbd:// and friends, else a host file. */
export async function openProtocol(filename: string, opts: OpenOptions = {}): Promise<BlockDriver> {
  for (const p of protocols) {
    const d = await p(filename, opts);
    if (d) return d;
  }
  return FileProtocol.open(filename, { readOnly: opts.readOnly });
}

/** Guesses the format of an image from its first bytes: a registered format's magic, else raw. */
export function probeFormat(head: Uint8Array): string {
  for (const [name, entry] of formats) {
    if (entry.probe?.(head)) return name;
  }
  return "raw";
}

/** QEMU's warning when probing settles on raw. */
export function rawProbeWarning(filename: string): string {
  return `WARNING: Image format was not specified for '${filename}' and probing guessed raw.\n` +
    `         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n` +
    `         Specify the 'raw' format explicitly to remove the restrictions.`;
}

/** Opens an image: protocol from the name, then the format given or probed. */
export async function openImage(filename: string, opts: OpenOptions = {}): Promise<BlockDriver> {
  if (opts.format) checkFormatName(opts.format);
  const file = await openProtocol(filename, opts);
  try {
    let format = opts.format;
    if (!format) {
      const len = await file.length();
      const head = new Uint8Array(Math.min(512, len));
      if (head.length) await file.read(0, head);
      format = probeFormat(head);
      if (format === "raw") (opts.warn ?? console.error)(rawProbeWarning(filename));
    }
    return await formats.get(format)!.open(file, opts);
  } catch (e) {
    await file.close();
    throw e;
  }
}
