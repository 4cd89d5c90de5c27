/** Base64 the way qemu-ga takes it: strict about the alphabet, lenient about padding. */
import { QgaError } from "./errors.ts";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const VALUE = new Int16Array(256).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

/** Decodes; any character outside the alphabet and "=" is rejected with QEMU's message. */
export function decodeBase64(s: string): Uint8Array {
  const out = new Uint8Array(Math.floor(s.length * 3 / 4) + 3);
  let n = 0;
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x3d) continue;
    const v = c < 256 ? VALUE[c] : -1;
    if (v < 0) throw new QgaError("Base64 data contains invalid characters");
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  return out.subarray(0, n);
}

/** Standard padded base64. */
export function encodeBase64(data: Uint8Array): string {
  let s = "";
  const CHUNK = 0x8000;
  for (let i = 0; i < data.length; i += CHUNK) {
    s += String.fromCharCode(...data.subarray(i, i + CHUNK));
  }
  return btoa(s);
}
