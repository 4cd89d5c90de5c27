/**
 * The BigInt evaluation behind the x87 transcendentals (f80trans.ts): its constants against the
 * x87's own (FLDPI, FLDLN2 rounded to nearest, the 66-bit pi of the trigonometric reduction), and
 * identities between independently computed series (sin^2 + cos^2 = 1, atan2 inverting
 * sin/cos, log2 inverting 2^x - 1) far below an ulp of the 64-bit format. The comparison with the
 * host FPU is tests/cpu_x87trans_test.ts.
 */

import { ok, strictEqual } from "node:assert/strict";
import {
  add,
  atan2,
  type BF,
  bf,
  exp2m1,
  fromParts,
  LN2,
  log2,
  mul,
  PI,
  PI66,
  sinCos,
  sub,
} from "./f80trans.ts";
import { Rng } from "../../tests/rng.ts";

/** The 64-bit mantissa of v rounded to nearest (ties to even). */
function mant64(v: BF): bigint {
  const n = v.m.toString(2).length;
  const sh = BigInt(n - 64);
  let m = v.m >> sh;
  const rem = v.m & ((1n << sh) - 1n), half = 1n << (sh - 1n);
  if (rem > half || (rem === half && (m & 1n) === 1n)) m += 1n;
  return m;
}

/** |v| < 2^e. */
function below(v: BF, e: number): boolean {
  return v.m === 0n || v.e + (v.m < 0n ? -v.m : v.m).toString(2).length <= e;
}

Deno.test("f80trans: pi, ln 2 and the 66-bit pi as the x87 holds them", () => {
  strictEqual(mant64(PI).toString(16), "c90fdaa22168c235"); // FLDPI, RC nearest
  strictEqual(mant64(LN2).toString(16), "b17217f7d1cf79ac"); // FLDLN2, RC nearest
  strictEqual(PI66.m.toString(16), "3243f6a8885a308d3");
  strictEqual(PI66.e, -64);
});

Deno.test("f80trans: series agree with each other far below an ulp", () => {
  const rng = new Rng(0x51ed27);
  for (let n = 0; n < 300; n++) {
    const x = fromParts(
      rng.next() & 1,
      (rng.next() % 40) - 30,
      rng.next() | 0x80000000,
      rng.next(),
    );
    // sin^2 + cos^2 = 1
    const [s, c] = sinCos(x);
    ok(below(sub(add(mul(s, s), mul(c, c)), bf(1)), -140), `sin^2+cos^2 at ${n}`);
    // atan2 undoes sin/cos for |r| < 1/2 (beyond pi/4 sin/cos reduce by the x87's 66-bit pi,
    // which differs from pi by 2^-67: by design)
    const r = fromParts(rng.next() & 1, -2 - (rng.next() % 30), rng.next() | 0x80000000, 0);
    const [sr, cr] = sinCos(r);
    ok(below(sub(atan2(sr, cr), r), -140 + Math.min(0, r.e + 63)), `atan2 at ${n}`);
    // log2(1 + (2^t - 1)) = t
    const t = fromParts(rng.next() & 1, -1 - (rng.next() % 20), rng.next() | 0x80000000, 0);
    ok(below(sub(log2(add(exp2m1(t), bf(1))), t), -140), `log2/exp2 at ${n}`);
  }
});
