/**
 * The integer soft-float of f80.ts against an exact BigInt reference (test code only): random
 * 64-bit mantissas and exponents in the normal range, every operation rounded to 64, 53 and 24
 * bits under each rounding mode. (Denormals, overflow and the status flags are covered by the
 * differential test against the host FPU, tests/cpu_diff_test.ts, on x86-64 hosts.)
 */

import { deepStrictEqual } from "node:assert/strict";
import * as f80 from "./f80.ts";
import { Rng } from "../../tests/rng.ts";

/** Rounds sign * (m + sticky) * 2^e to `prec` bits by rc: [biased exponent word, mantissa]. */
function refRound(sign: number, m: bigint, e: number, sticky: boolean, prec: number, rc: number) {
  const len = m.toString(2).length;
  const shift = len - prec;
  let keep = m, half = false, below = sticky;
  if (shift > 0) {
    keep = m >> BigInt(shift);
    const rem = m & ((1n << BigInt(shift)) - 1n);
    half = (rem >> BigInt(shift - 1)) === 1n;
    below = below || (rem & ((1n << BigInt(shift - 1)) - 1n)) !== 0n;
  } else keep = m << BigInt(-shift);
  const inexact = half || below;
  let up = false;
  if (inexact) {
    if (rc === 0) up = half && (below || (keep & 1n) === 1n);
    else if (rc === 1) up = sign === 1;
    else if (rc === 2) up = sign === 0;
  }
  if (up) keep += 1n;
  let top = e + len - 1; // exponent of the leading bit
  if (keep >> BigInt(prec) === 1n) {
    keep >>= 1n;
    top++;
  }
  const mant = keep << BigInt(64 - prec);
  return [(sign << 15) | (top + 16383), mant.toString(16)];
}

function got(): [number, string] {
  const m = (BigInt(f80.rHi >>> 0) << 32n) | BigInt(f80.rLo >>> 0);
  return [f80.rSe & 0xffff, m.toString(16)];
}

Deno.test("f80: add, sub, mul, div, sqrt exact against BigInt at every precision and rounding mode", () => {
  const rng = new Rng(0x1234567);
  let cases = 0, mismatches = 0;
  const bad: string[] = [];
  for (let n = 0; n < 3000; n++) {
    const mant = () => {
      // sometimes short mantissas (exact results, ties), usually random 64 bits
      const hi = (rng.next() | 0x80000000) >>> 0;
      const lo = rng.next() % 4 === 0 ? 0 : rng.next() >>> 0;
      return [hi, lo];
    };
    const [ah, al] = mant(), [bh, bl] = mant();
    const as = rng.next() & 1, bs = rng.next() & 1;
    const ae = (rng.next() % 200) - 100;
    const be = rng.next() % 3 === 0 ? ae - (rng.next() % 70) : (rng.next() % 200) - 100;
    const A = (BigInt(ah) << 32n) | BigInt(al), B = (BigInt(bh) << 32n) | BigInt(bl);
    for (const prec of [64, 53, 24]) {
      for (let rc = 0; rc < 4; rc++) {
        for (const op of ["add", "sub", "mul", "div", "sqrt"]) {
          f80.unpack(0, (as << 15) | (ae + 16383), ah | 0, al | 0);
          f80.unpack(1, (bs << 15) | (be + 16383), bh | 0, bl | 0);
          f80.clearFlags();
          let want: (number | string)[];
          if (op === "add" || op === "sub") {
            const sb = op === "sub" ? bs ^ 1 : bs;
            const emin = Math.min(ae, be) - 63;
            const va = (as ? -1n : 1n) * (A << BigInt(ae - 63 - emin));
            const vb = (sb ? -1n : 1n) * (B << BigInt(be - 63 - emin));
            const sum = va + vb;
            if (sum === 0n) continue; // signed zeros: covered by the differential test
            want = refRound(sum < 0n ? 1 : 0, sum < 0n ? -sum : sum, emin, false, prec, rc);
            f80.addX(op === "sub", prec, rc);
          } else if (op === "mul") {
            want = refRound(as ^ bs, A * B, ae + be - 126, false, prec, rc);
            f80.mulX(prec, rc);
          } else if (op === "div") {
            const k = 140n;
            const q = (A << k) / B, r = (A << k) % B;
            want = refRound(as ^ bs, q, ae - be - 140, r !== 0n, prec, rc);
            f80.divX(prec, rc);
          } else {
            if (as === 1) continue;
            // value = A * 2^(ae-63); radicand A << s with (ae - 63 - s) even, s >= 140
            let s = 140;
            if ((ae - 63 - s) % 2 !== 0) s++;
            const N = A << BigInt(s);
            let x = 1n << BigInt((N.toString(2).length + 1) >> 1);
            for (;;) {
              const y = (x + N / x) >> 1n;
              if (y >= x) break;
              x = y;
            }
            want = refRound(0, x, (ae - 63 - s) / 2, x * x !== N, prec, rc);
            f80.sqrtX(prec, rc);
          }
          cases++;
          const g = got();
          if (g[0] !== want[0] || g[1] !== want[1]) {
            mismatches++;
            if (bad.length < 10) {
              bad.push(
                `${op} prec ${prec} rc ${rc} a=${as ? "-" : ""}${A.toString(16)}p${ae} ` +
                  `b=${bs ? "-" : ""}${B.toString(16)}p${be}: ${g} want ${want}`,
              );
            }
          }
        }
      }
    }
  }
  console.log(`f80: ${cases - mismatches}/${cases} cases agree with the BigInt reference`);
  deepStrictEqual(bad, []);
});
