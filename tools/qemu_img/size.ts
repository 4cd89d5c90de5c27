/** Sizes as QEMU reads them ("10G", "1.5M", "0x100") and prints them ("1.5 MiB"). */
import { QemuImgError } from "./cli.ts";

const SUFFIX_POWER: Record<string, number> = {
  b: 0,
  k: 1,
  m: 2,
  g: 3,
  t: 4,
  p: 5,
  e: 6,
};

/** Why a size did not parse: not a size at all, or beyond 2^64. */
export type SizeParseError = "EINVAL" | "ERANGE";

/**
 * qemu_strtosz(): a decimal (optionally with a fraction) or hex number with an optional binary
 * suffix (B, K, M, G, T, P, E; any case). Returns the exact value as a bigint, or the error.
 */
export function strtosz(text: string): bigint | SizeParseError {
  const m = /^[ \t\n\v\f\r]*\+?([0-9]+)/.exec(text);
  if (!m) return "EINVAL";
  let pos = m[0].length;
  let val = BigInt(m[1]);
  let fraction: string | undefined;
  if (val === 0n && (text[pos] === "x" || text[pos] === "X")) {
    const hex = /^0[xX]([0-9a-fA-F]+)/.exec(text.slice(m[0].length - m[1].length));
    if (!hex) return "EINVAL";
    val = BigInt("0x" + hex[1]);
    pos = m[0].length - m[1].length + hex[0].length;
    const c = text[pos];
    if (c === "." || (c !== undefined && c.toLowerCase() in SUFFIX_POWER)) return "EINVAL";
  } else if (text[pos] === ".") {
    const f = /^\.([0-9]*)/.exec(text.slice(pos))!;
    if (/^[eE]/.test(text.slice(pos + f[0].length)) && f[1].length) return "EINVAL";
    fraction = f[1];
    pos += f[0].length;
  }
  if (val >= 1n << 64n) return "ERANGE";
  let power = 0;
  const c = text[pos];
  if (c !== undefined && c.toLowerCase() in SUFFIX_POWER) {
    power = SUFFIX_POWER[c.toLowerCase()];
    pos++;
  }
  if (pos !== text.length) return "EINVAL";
  const mul = 1n << BigInt(10 * power);
  if (mul === 1n) {
    if (fraction && /[1-9]/.test(fraction)) return "EINVAL";
    return val;
  }
  let result = val * mul;
  if (fraction) {
    // 64-bit fixed-point fraction as QEMU computes it, rounded half up.
    const frac = Number("0." + fraction);
    const fixed = BigInt.asUintN(64, BigInt(Math.floor(frac * 2 ** 64)));
    const scaled = fixed * mul;
    result += scaled >> 64n;
    result += (scaled >> 63n) & 1n;
  }
  if (result >= 1n << 64n) return "ERANGE";
  return result;
}

const INT64_MAX = (1n << 63n) - 1n;

/** cvtnum(): a size for a command-line operand, with qemu-img's two error messages. */
export function cvtnum(name: string, text: string, min = 0n, max = INT64_MAX): number {
  const r = strtosz(text);
  if (r === "EINVAL") {
    throw new QemuImgError(
      `Invalid ${name} specified. You may use k, M, G, T, P or E suffixes for\n` +
        "kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.",
    );
  }
  if (r === "ERANGE" || r > max || r < min) {
    throw new QemuImgError(`Invalid ${name} specified. Must be between ${min} and ${max}.`);
  }
  return Number(r);
}

/** parse_option_size(): a size given as an -o option value. */
export function parseOptionSize(name: string, text: string): bigint {
  const r = strtosz(text);
  if (r === "ERANGE") {
    throw new QemuImgError(`Value '${text}' is out of range for parameter '${name}'`);
  }
  if (r === "EINVAL") {
    throw new QemuImgError(
      `qemu-img: Parameter '${name}' expects a non-negative number below 2^64\n` +
        "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n" +
        "and exabytes, respectively.",
      1,
      true,
    );
  }
  return r;
}

const UNITS = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/** C's "%0.3g" for the values size_to_str() prints (0 <= v < 1024; exact ties round to even). */
function g3(v: number): string {
  if (v === 0) return "0";
  const exp = Math.floor(Math.log10(v));
  let s = toFixedC(v, Math.max(0, 2 - exp));
  if (Number(s) >= 1000) return "1e+03"; // %g switches to exponent form at 1000
  if (s.includes(".")) s = s.replace(/\.?0+$/, "");
  return s;
}

/** size_to_str(): "10 GiB", "1.5 MiB", "324 KiB". */
export function sizeToStr(val: number): string {
  // The unit switches when the integer part would reach 1000 (as QEMU's frexp trick does).
  let i = 0;
  const scaled = val / (1000 / 1024);
  if (scaled >= 1) i = Math.floor((Math.floor(Math.log2(scaled)) + 1 - 1) / 10);
  if (i > 6) i = 6;
  const div = 2 ** (i * 10);
  return `${g3(val / div)} ${UNITS[i]}B`;
}

/**
 * printf("%.<digits>f"): like toFixed, but an exact tie rounds to even as glibc does
 * (3.125 prints 3.12, where toFixed gives 3.13).
 */
export function toFixedC(x: number, digits: number): string {
  const s = x.toFixed(digits);
  if (!Number.isFinite(x) || x < 0) return s;
  // Exact value of x as m * 2^e, then test whether x * 10^digits is exactly k + 1/2.
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, x);
  const bits = buf.getBigUint64(0);
  const exp = Number((bits >> 52n) & 0x7ffn);
  let mant = bits & ((1n << 52n) - 1n);
  if (exp) mant |= 1n << 52n;
  const e = (exp || 1) - 1075;
  const scaled = mant * 10n ** BigInt(digits) * 2n; // 2 * x * 10^digits * 2^-e
  if (e >= 0) return s; // An integer: no tie.
  const den = 1n << BigInt(-e);
  if (scaled % den !== 0n) return s;
  const twice = scaled / den; // 2 * x * 10^digits, an integer
  if (twice % 2n === 0n) return s; // x * 10^digits is an integer
  const k = (twice - 1n) / 2n; // the tie is between k and k + 1
  const pick = k % 2n === 0n ? k : k + 1n;
  const str = pick.toString().padStart(digits + 1, "0");
  return digits ? `${str.slice(0, -digits)}.${str.slice(-digits)}` : str;
}
