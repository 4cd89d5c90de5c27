/**
 * JSON as QEMU prints it: objects keep the iteration order of QEMU's QDict (a 512-bucket hash
 * table, newest first within a bucket), pretty-printed with four-space indents.
 */

const QDICT_BUCKET_MAX = 512;

/** QEMU's qdict hash (tdb_hash) of a key. */
function qdictHash(name: string): number {
  const bytes = new TextEncoder().encode(name);
  let value = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    value = (value + ((bytes[i] << ((i * 5) % 24)) >>> 0)) >>> 0;
  }
  return (Math.imul(1103515243, value) + 12345) >>> 0;
}

/** Keys of an object in the order QEMU's QDict iterates them (insertion order = object order). */
export function qdictOrder(keys: string[]): string[] {
  const buckets = new Map<number, string[]>();
  for (const k of keys) {
    const b = qdictHash(k) % QDICT_BUCKET_MAX;
    const list = buckets.get(b) ?? [];
    list.unshift(k);
    buckets.set(b, list);
  }
  return [...buckets.keys()].sort((a, b) => a - b).flatMap((b) => buckets.get(b)!);
}

function quote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (cp < 0x20 || cp >= 0x7f) {
      for (const unit of cp > 0xffff ? [...String.fromCodePoint(cp)] : [ch]) {
        out += "\\u" + unit.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
      }
    } else out += ch;
  }
  return out + '"';
}

/** A value QEMU would print: objects are QDicts, arrays QLists. Undefined members are left out. */
export type QValue = string | number | boolean | null | QValue[] | {
  [k: string]: QValue | undefined;
};

function write(v: QValue, depth: number): string {
  const pad = (d: number) => "\n" + " ".repeat(4 * d);
  if (v === null) return "null";
  if (typeof v === "string") return quote(v);
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(v);
  if (typeof v === "boolean") return v ? "true" : "false";
  if (Array.isArray(v)) {
    if (!v.length) return "[" + pad(depth) + "]";
    return "[" + v.map((e) => pad(depth + 1) + write(e, depth + 1)).join(",") + pad(depth) + "]";
  }
  const keys = qdictOrder(Object.keys(v).filter((k) => v[k] !== undefined));
  if (!keys.length) return "{" + pad(depth) + "}";
  return "{" +
    keys.map((k) => pad(depth + 1) + quote(k) + ": " + write(v[k]!, depth + 1)).join(",") +
    pad(depth) + "}";
}

/** qobject_to_json_pretty() of a value. */
export function toQemuJson(v: QValue): string {
  return write(v, 0);
}
