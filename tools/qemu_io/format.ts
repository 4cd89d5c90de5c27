/**
 * qemu-io's number and report formats: sizes ("64 KiB", "4.500 KiB"), times ("00.00 sec"), the
 * two-line I/O report and its -C machine form, hex dumps, and size arguments with suffixes.
 */

const UNITS: [number, string][] = [
  [2 ** 60, " EiB"],
  [2 ** 50, " PiB"],
  [2 ** 40, " TiB"],
  [2 ** 30, " GiB"],
  [2 ** 20, " MiB"],
  [2 ** 10, " KiB"],
];

/**
 * printf("%.Nf"): JavaScript's toFixed rounds exact ties up, glibc rounds them to even
 * (2.0625 -> "2.062"), so ties are settled here.
 */
export function fixed(v: number, digits: number): string {
  // toFixed(n) is exact for up to 100 digits, enough to see whether v sits exactly on a tie.
  const exact = v.toFixed(Math.min(100, digits + 60));
  const dot = exact.indexOf(".");
  const tail = exact.slice(dot + 1 + digits);
  if (!/^50*$/.test(tail)) return v.toFixed(digits);
  const kept = exact.slice(0, dot + 1 + digits).replace(/\.$/, "");
  const lastDigit = Number(kept.replace(".", "").slice(-1));
  if (lastDigit % 2 === 0) return kept;
  return v.toFixed(digits); // odd: the tie rounds up, as toFixed does
}

/** A byte count as qemu-io prints it: three decimals in the largest unit, ".000" dropped. */
export function cvtstr(value: number): string {
  let suffix = " bytes";
  for (const [size, name] of UNITS) {
    if (value >= size) {
      value /= size;
      suffix = name;
      break;
    }
  }
  return `${fixed(value, 3)}${suffix}`.replace(".000", "");
}

/** Elapsed seconds as qemu-io prints them: "00.12 sec" under a second, else "h:mm:ss.cc". */
export function timestr(seconds: number, verbose = false): string {
  const whole = Math.floor(seconds);
  const frac = seconds - whole;
  if (verbose || whole) {
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = (whole % 60) + frac;
    return `${h}:${String(m).padStart(2, "0")}:${fixed(s, 2).padStart(5, "0")}`;
  }
  return `${fixed(frac, 2).padStart(5, "0")} sec`;
}

/** The statistics after an I/O command (read, write, discard, ...). */
export function report(
  op: string,
  seconds: number,
  offset: number,
  count: number,
  total: number,
  ops: number,
  machine: boolean,
): string {
  const t = seconds > 0 ? seconds : 1e-9;
  if (machine) {
    return `${total},${ops},${timestr(seconds, true)},${fixed(total / t, 3)},${
      fixed(ops / t, 3)
    }\n`;
  }
  return `${op} ${total}/${count} bytes at offset ${offset}\n` +
    `${cvtstr(total)}, ${ops} ops; ${timestr(seconds)} (${cvtstr(total / t)}/sec and ${
      fixed(ops / t, 4)
    } ops/sec)\n`;
}

/** The hex dump of -v: 16 bytes a line, absolute offsets, letters and digits at the end. */
export function dumpBuffer(buf: Uint8Array, offset: number): string {
  const lines: string[] = [];
  for (let i = 0; i < buf.length; i += 16) {
    const row = buf.subarray(i, Math.min(i + 16, buf.length));
    let hex = "";
    let text = "";
    for (const b of row) {
      hex += b.toString(16).padStart(2, "0") + " ";
      // QEMU shows letters and digits only (isalnum), everything else as a dot.
      const alnum = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) ||
        (b >= 0x61 && b <= 0x7a);
      text += alnum ? String.fromCharCode(b) : ".";
    }
    lines.push(`${(offset + i).toString(16).padStart(8, "0")}:  ${hex} ${text}`);
  }
  return lines.map((l) => l + "\n").join("");
}

/** A size argument (qemu_strtosz): digits with an optional fraction and a b/k/m/g/t/p/e suffix. */
export function cvtnum(arg: string): number | "EINVAL" | "ERANGE" {
  const m = /^\s*(\d+(?:\.\d*)?|\.\d+|0[xX][0-9a-fA-F]+)([bBkKmMgGtTpPeE]?)$/.exec(arg);
  if (!m) return "EINVAL";
  const hex = /^0[xX]/.test(m[1]);
  if (hex && m[2] && !/^[bB]$/.test(m[2]) && m[1].length > 2) {
    // QEMU refuses hex with a size suffix other than b.
    return "EINVAL";
  }
  const base = hex ? parseInt(m[1], 16) : Number(m[1]);
  const mult = ({
    "": 1,
    b: 1,
    k: 2 ** 10,
    m: 2 ** 20,
    g: 2 ** 30,
    t: 2 ** 40,
    p: 2 ** 50,
    e: 2 ** 60,
  } as Record<
    string,
    number
  >)[m[2].toLowerCase()];
  if (!m[2] && m[1].includes(".")) return "EINVAL";
  const v = base * mult;
  if (m[2] && !Number.isInteger(v)) return "EINVAL";
  if (v > 2 ** 63 - 1 || !Number.isSafeInteger(v)) return "ERANGE";
  return v;
}

/** The message qemu-io prints for a bad size argument. */
export function cvtnumError(rc: "EINVAL" | "ERANGE", arg: string): string {
  return rc === "ERANGE"
    ? `Parsing error: argument too large -- ${arg}\n`
    : `Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${arg}\n`;
}

/** strerror() text for the block layer's errno-like codes. */
export function strerror(code: string): string {
  switch (code) {
    case "EPERM":
      return "Operation not permitted";
    case "EINVAL":
      return "Invalid argument";
    case "ENOSPC":
      return "No space left on device";
    case "ENOTSUP":
      return "Operation not supported";
    case "EROFS":
      return "Read-only file system";
    case "EFBIG":
      return "File too large";
    default:
      return "Input/output error";
  }
}
