/**
 * Image creation options (-o): the option lists of raw and qcow2 in QEMU's order, parsing of
 * "key=value,key2=value2" strings, and the "Formatting ..." line that echoes them.
 */
import { QemuImgError } from "./cli.ts";
import { parseOptionSize } from "./size.ts";

/** How an option's value is read. */
export type OptType = "size" | "number" | "bool" | "string";

/** One creation option as QEMU's QemuOptDesc has it. */
export interface OptDesc {
  name: string;
  type: OptType;
  help: string;
  /** The default QEMU shows in the Formatting line. */
  def?: string;
}

const FILE_OPTS: OptDesc[] = [
  { name: "nocow", type: "bool", help: "Turn off copy-on-write (valid only on btrfs)" },
  {
    name: "extent_size_hint",
    type: "size",
    help: "Extent size hint for the image file, 0 to disable",
  },
];

const RAW_OPTS: OptDesc[] = [
  { name: "size", type: "size", help: "Virtual disk size" },
  FILE_OPTS[0],
  {
    name: "preallocation",
    type: "string",
    help: "Preallocation mode (allowed values: off, falloc, full)",
  },
  FILE_OPTS[1],
];

const QCOW2_OPTS: OptDesc[] = [
  {
    name: "encryption",
    type: "bool",
    help: "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)",
  },
  {
    name: "encrypt.format",
    type: "string",
    help: "Encrypt the image, format choices: 'aes', 'luks'",
  },
  {
    name: "encrypt.key-secret",
    type: "string",
    help: "ID of secret providing qcow AES key or LUKS passphrase",
  },
  { name: "cluster_size", type: "size", help: "qcow2 cluster size", def: "65536" },
  { name: "extended_l2", type: "bool", help: "Extended L2 tables", def: "off" },
  {
    name: "preallocation",
    type: "string",
    help: "Preallocation mode (allowed values: off, metadata, falloc, full)",
  },
  {
    name: "compression_type",
    type: "string",
    help: "Compression method used for image cluster compression",
    def: "zlib",
  },
  { name: "size", type: "size", help: "Virtual disk size" },
  { name: "compat", type: "string", help: "Compatibility level (v2 [0.10] or v3 [1.1])" },
  { name: "backing_file", type: "string", help: "File name of a base image" },
  { name: "backing_fmt", type: "string", help: "Image format of the base image" },
  { name: "data_file", type: "string", help: "File name of an external data file" },
  {
    name: "data_file_raw",
    type: "bool",
    help: "The external data file must stay valid as a raw image",
  },
  { name: "lazy_refcounts", type: "bool", help: "Postpone refcount updates", def: "off" },
  {
    name: "refcount_bits",
    type: "number",
    help: "Width of a reference count entry in bits",
    def: "16",
  },
  ...FILE_OPTS,
];

/** The creation options of a format; undefined for a format demu does not know. */
export function createOptsOf(format: string): OptDesc[] | undefined {
  if (format === "raw") return RAW_OPTS;
  if (format === "qcow2") return QCOW2_OPTS;
  return undefined;
}

/** The amend options of qcow2 (the common options; others are refused when changed). */
export function amendOptsOf(format: string): OptDesc[] | undefined {
  if (format !== "qcow2") return undefined;
  const names = [
    "size",
    "compat",
    "backing_file",
    "backing_fmt",
    "data_file",
    "data_file_raw",
    "encrypt.format",
    "lazy_refcounts",
    "refcount_bits",
  ];
  return names.map((n) => QCOW2_OPTS.find((o) => o.name === n)!);
}

/** Splits "a=1,b=2" as QEMU's option parser does (",," is a literal comma). */
export function splitOptions(text: string): [string, string][] {
  const out: [string, string][] = [];
  let i = 0;
  while (i < text.length) {
    let key = "";
    while (i < text.length && text[i] !== "=" && text[i] !== ",") key += text[i++];
    let value = "";
    let hasValue = false;
    if (text[i] === "=") {
      hasValue = true;
      i++;
      while (i < text.length) {
        if (text[i] === ",") {
          if (text[i + 1] === ",") {
            value += ",";
            i += 2;
            continue;
          }
          break;
        }
        value += text[i++];
      }
    }
    i++;
    if (!key && !hasValue) continue;
    // A bare "key" means key=on for booleans, as QEMU's implied value.
    out.push([key, hasValue ? value : "on"]);
  }
  return out;
}

/** Parsed option values, keeping the text each was given as (for the Formatting line). */
export class CreateOpts {
  readonly values = new Map<string, string>();
  constructor(readonly desc: OptDesc[]) {}

  has(name: string): boolean {
    return this.values.has(name);
  }
  /** Sets an option from its text, validating its type (QEMU's messages; `prefix` names the file). */
  set(name: string, value: string, prefix: string): void {
    const d = this.desc.find((o) => o.name === name);
    if (!d) throw new QemuImgError(`${prefix}Invalid parameter '${name}'`);
    if (d.type === "size") {
      try {
        parseOptionSize(name, value);
      } catch (e) {
        if (e instanceof QemuImgError && e.bare) {
          throw new QemuImgError(e.message.replace(/^qemu-img: /, `qemu-img: ${prefix}`), 1, true);
        }
        throw new QemuImgError(prefix + (e as Error).message);
      }
    } else if (d.type === "number") {
      if (!/^[0-9]+$/.test(value) && !/^0x[0-9a-f]+$/i.test(value)) {
        throw new QemuImgError(`${prefix}Parameter '${name}' expects a number`);
      }
    } else if (d.type === "bool") {
      if (parseBool(value) === undefined) {
        throw new QemuImgError(`${prefix}Parameter '${name}' expects 'on' or 'off'`);
      }
    }
    this.values.set(name, value);
  }
  get(name: string): string | undefined {
    return this.values.get(name);
  }
  size(name: string): number | undefined {
    const v = this.values.get(name);
    return v === undefined ? undefined : Number(parseOptionSize(name, v));
  }
  number(name: string): number | undefined {
    const v = this.values.get(name);
    return v === undefined ? undefined : Number(v);
  }
  bool(name: string): boolean | undefined {
    const v = this.values.get(name);
    return v === undefined ? undefined : parseBool(v);
  }
  /** qemu_opts_print(): every option set or with a default, in the format's order. */
  print(): string {
    const parts: string[] = [];
    for (const d of this.desc) {
      const v = this.values.get(d.name);
      if (v === undefined) {
        if (d.def !== undefined) parts.push(`${d.name}=${d.def}`);
        continue;
      }
      if (d.type === "size") parts.push(`${d.name}=${parseOptionSize(d.name, v)}`);
      else if (d.type === "number") parts.push(`${d.name}=${Number(v)}`);
      else if (d.type === "string") parts.push(`${d.name}=${v.replaceAll(",", ",,")}`);
      else parts.push(`${d.name}=${v}`);
    }
    return parts.join(" ");
  }
}

/** QEMU's boolean option values. */
export function parseBool(v: string): boolean | undefined {
  if (v === "on" || v === "yes" || v === "true" || v === "y") return true;
  if (v === "off" || v === "no" || v === "false" || v === "n") return false;
  return undefined;
}

/** "-o help": the list of a format's options. */
export function optionsHelp(format: string, desc: OptDesc[]): string {
  const sorted = [...desc].sort((a, b) => a.name.localeCompare(b.name));
  const kind = (t: OptType) =>
    t === "bool" ? "bool (on/off)" : t === "number" ? "num" : t === "size" ? "size" : "str";
  const lines = sorted.map((d) => {
    const left = `  ${d.name}=<${kind(d.type)}>`;
    return `${left.padEnd(24)} - ${d.help}`;
  });
  return `Supported ${format} options:\n${lines.join("\n")}\n\n` +
    "The protocol level may support further options.\n" +
    "Specify the target filename to include those options.\n";
}
