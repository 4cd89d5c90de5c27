/**
 * The x87 transcendental instructions (FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X,
 * FYL2XP1) evaluated in extended precision: the finite operands are exact rationals (64-bit
 * mantissa, binary exponent), the functions are computed with BigInt floating point carrying
 * {@link PREC} bits (argument reduction, then Taylor/atanh series), and the result is rounded
 * once to the 64-bit format by f80.ts's roundPack under the rounding control. That is within
 * 1 ulp of the exact result (almost always the correctly rounded one).
 *
 * Like the Intel x87, FSIN/FCOS/FSINCOS/FPTAN reduce their argument modulo pi/2 with the 66-bit
 * value of pi the hardware holds (exactly, with no further error), so near multiples of pi the
 * results follow the hardware's, not the mathematical function's.
 *
 * Not in the hot path (these instructions cost hundreds of cycles on the real CPU too); BigInt
 * is used here on purpose.
 * @module
 */

import { roundPackWords } from "./f80.ts";

/** Working precision in bits. */
const PREC = 160;

/** A binary floating-point value m * 2^e (m signed, |m| < 2^PREC after normalising). */
export interface BF {
  m: bigint;
  e: number;
}

function bitLen(m: bigint): number {
  if (m < 0n) m = -m;
  if (m === 0n) return 0;
  const f = Number(m);
  if (f < 2 ** 1000) {
    // from the double's exponent; near a power of two the rounding may make it one too many
    let n = Math.floor(Math.log2(f)) + 1;
    if (m >> BigInt(n - 1) === 0n) n--;
    else if (m >> BigInt(n) !== 0n) n++;
    return n;
  }
  const s = m.toString(16);
  return (s.length - 1) * 4 + (32 - Math.clz32(parseInt(s[0], 16)));
}

function norm(m: bigint, e: number): BF {
  if (m === 0n) return { m: 0n, e: 0 };
  const n = bitLen(m);
  if (n > PREC) {
    const sh = n - PREC;
    m = m < 0n ? -((-m) >> BigInt(sh)) : m >> BigInt(sh);
    e += sh;
  }
  return { m, e };
}

/** The exponent of the value's leading bit plus one (|x| < 2^top). */
function top(a: BF): number {
  return a.m === 0n ? -Infinity : a.e + bitLen(a.m);
}

export function bf(n: number): BF {
  return norm(BigInt(n), 0);
}

export function add(a: BF, b: BF): BF {
  if (a.m === 0n) return b;
  if (b.m === 0n) return a;
  const ta = top(a), tb = top(b);
  if (ta - tb > PREC + 8) return a;
  if (tb - ta > PREC + 8) return b;
  const e = Math.min(a.e, b.e);
  return norm((a.m << BigInt(a.e - e)) + (b.m << BigInt(b.e - e)), e);
}

export function neg(a: BF): BF {
  return { m: -a.m, e: a.e };
}

export function sub(a: BF, b: BF): BF {
  return add(a, neg(b));
}

export function mul(a: BF, b: BF): BF {
  return norm(a.m * b.m, a.e + b.e);
}

export function div(a: BF, b: BF): BF {
  if (a.m === 0n) return a;
  const s = PREC + 4 + bitLen(b.m) - bitLen(a.m);
  const sh = s > 0 ? s : 0;
  return norm((a.m << BigInt(sh)) / b.m, a.e - sh - b.e);
}

function divInt(a: BF, n: number): BF {
  return norm((a.m << 40n) / BigInt(n), a.e - 40);
}

/** a * 2^n. */
function ldexp(a: BF, n: number): BF {
  return { m: a.m, e: a.e + n };
}

function sqrtBf(a: BF): BF {
  // make the exponent even and the mantissa about 2*PREC bits
  let m = a.m, e = a.e;
  const want = 2 * PREC + 4 - bitLen(m);
  if (want > 0) {
    m <<= BigInt(want);
    e -= want;
  }
  if ((e & 1) !== 0) {
    m <<= 1n;
    e -= 1;
  }
  // Newton's iteration for the integer square root, from the double's square root (too large)
  const n = bitLen(m);
  const sh = Math.max(0, n - 100) & ~1;
  let x = (BigInt(Math.ceil(Math.sqrt(Number(m >> BigInt(sh))) * (1 + 2 ** -40))) + 1n) <<
    BigInt(sh / 2);
  for (;;) {
    const y = (x + m / x) >> 1n;
    if (y >= x) break;
    x = y;
  }
  return norm(x, e / 2);
}

/** Sum of a series whose terms shrink: stops when a term is below the sum's precision. */
function negligible(term: BF, sum: BF): boolean {
  return term.m === 0n || top(term) < top(sum) - PREC - 4;
}

/** atan(t) for |t| <= ~0.2: t - t^3/3 + t^5/5 - ... */
function atanSeries(t: BF): BF {
  const t2 = mul(t, t);
  let pow = t, sum = t;
  for (let k = 1;; k++) {
    pow = neg(mul(pow, t2));
    const term = divInt(pow, 2 * k + 1);
    if (negligible(term, sum)) return sum;
    sum = add(sum, term);
  }
}

/** atanh(t) for |t| <= ~0.2: t + t^3/3 + t^5/5 + ... */
function atanhSeries(t: BF): BF {
  const t2 = mul(t, t);
  let pow = t, sum = t;
  for (let k = 1;; k++) {
    pow = mul(pow, t2);
    const term = divInt(pow, 2 * k + 1);
    if (negligible(term, sum)) return sum;
    sum = add(sum, term);
  }
}

const ONE = bf(1);
/** pi (Machin: 16 atan(1/5) - 4 atan(1/239)) and ln 2 (2 atanh(1/3)) to the working precision. */
export const PI: BF = sub(
  ldexp(atanSeries(div(ONE, bf(5))), 4),
  ldexp(atanSeries(div(ONE, bf(239))), 2),
);
export const LN2: BF = ldexp(atanhSeries(div(ONE, bf(3))), 1);

/** The x87's 66-bit pi (0x3243F6A8885A308D3 * 2^-64), used for the trigonometric reduction. */
export const PI66: BF = { m: PI.m >> BigInt(bitLen(PI.m) - 66), e: PI.e + bitLen(PI.m) - 66 };

/** sin(r) for |r| <= ~pi/4 (Taylor series). */
function sinSmall(r: BF): BF {
  const r2 = mul(r, r);
  let term = r, s = r;
  for (let k = 1;; k++) {
    term = neg(divInt(mul(term, r2), (2 * k) * (2 * k + 1)));
    if (negligible(term, s)) return s;
    s = add(s, term);
  }
}

/** cos(r) for |r| <= ~pi/4 (Taylor series). */
function cosSmall(r: BF): BF {
  const r2 = mul(r, r);
  let term = ONE, c = ONE;
  for (let k = 1;; k++) {
    term = neg(divInt(mul(term, r2), (2 * k - 1) * (2 * k)));
    if (negligible(term, c)) return c;
    c = add(c, term);
  }
}

/** A finite x87 operand: (-1)^sign * (hi:lo) * 2^(exp-63). */
export function fromParts(sign: number, exp: number, hi: number, lo: number): BF {
  const m = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  return norm(sign ? -m : m, exp - 63);
}

/**
 * sin and cos of x (|x| < 2^63) with the hardware's reduction: x - k * pi66/2 exactly, k the
 * nearest integer; returns [sin, cos] of x (`need`: 1 sin only, 2 cos only, 3 both; the other
 * is then zero).
 */
export function sinCos(x: BF, need = 3): [BF, BF] {
  const negx = x.m < 0n;
  const ax = negx ? neg(x) : x;
  let k = 0n;
  let r = ax;
  // half of pi66 as an integer ratio: PI66.m * 2^(PI66.e - 1)
  const pe = PI66.e - 1;
  if (top(ax) >= 0) {
    // scale both to 2^lo units: exact integers
    const lo = Math.min(ax.e, pe);
    const X = ax.m << BigInt(ax.e - lo), P = PI66.m << BigInt(pe - lo);
    k = (2n * X + P) / (2n * P);
    r = norm(X - k * P, lo);
  }
  const q = Number(k & 3n);
  // an odd quadrant swaps the two
  const wantS = (q & 1) === 0 ? need & 1 : need & 2, wantC = (q & 1) === 0 ? need & 2 : need & 1;
  const zero = { m: 0n, e: 0 };
  let s = wantS ? sinSmall(r) : zero, c = wantC ? cosSmall(r) : zero;
  if (q === 1) [s, c] = [c, neg(s)];
  else if (q === 2) [s, c] = [neg(s), neg(c)];
  else if (q === 3) [s, c] = [neg(c), s];
  return [negx ? neg(s) : s, c];
}

/** atan2(y, x) for finite nonzero y and x. */
export function atan2(y: BF, x: BF): BF {
  const ay = y.m < 0n ? neg(y) : y, ax = x.m < 0n ? neg(x) : x;
  const swap = top(ay) > top(ax) || (top(ay) === top(ax) && sub(ay, ax).m > 0n);
  let t = swap ? div(ax, ay) : div(ay, ax); // in (0, 1]
  // two halvings: atan(t) = 2 atan(t / (1 + sqrt(1 + t^2))), down to t <= tan(pi/16)
  let doubles = 0;
  for (let k = 0; k < 2; k++) {
    if (top(t) < -3) break;
    t = div(t, add(ONE, sqrtBf(add(ONE, mul(t, t)))));
    doubles++;
  }
  let a = ldexp(atanSeries(t), doubles);
  if (swap) a = sub(ldexp(PI, -1), a);
  if (x.m < 0n) a = sub(PI, a);
  return y.m < 0n ? neg(a) : a;
}

/** 2^x - 1 (expm1(x ln 2) by its series; |x| <= 1 is the instruction's domain). */
export function exp2m1(x: BF): BF {
  // beyond the domain: 2^x = 2^n * 2^f with f in [-0.5, 0.5]
  let n = 0;
  let f = x;
  if (top(x) > 0) {
    const half = norm(1n, -1);
    const fl = add(x, half);
    // floor(x + 1/2)
    n = Number(fl.e >= 0 ? fl.m << BigInt(fl.e) : fl.m >> BigInt(-fl.e));
    f = sub(x, bf(n));
  }
  const z = mul(f, LN2);
  let term = z, sum = z;
  for (let k = 2;; k++) {
    term = divInt(mul(term, z), k);
    if (negligible(term, sum)) break;
    sum = add(sum, term);
  }
  if (n === 0) return sum;
  return sub(ldexp(add(sum, ONE), n), ONE);
}

/** ln(m) for m in [0.7, 1.42]: 2 atanh((m - 1) / (m + 1)). */
function lnNear1(m: BF): BF {
  return ldexp(atanhSeries(div(sub(m, ONE), add(m, ONE))), 1);
}

/** log2(x) for finite x > 0. */
export function log2(x: BF): BF {
  // x = m * 2^n with m in [sqrt(1/2), sqrt(2))
  const t = top(x);
  let n = t - 1;
  let m = ldexp(x, -n); // [1, 2)
  // sqrt(2) ~ 1.4142: compare m * m with 2
  if (sub(mul(m, m), bf(2)).m > 0n) {
    m = ldexp(m, -1);
    n++;
  }
  return add(bf(n), div(lnNear1(m), LN2));
}

/** log2(1 + x) for |x| < 1 - sqrt(2)/2 (the instruction's domain) and beyond (1 + x > 0). */
export function log2p1(x: BF): BF {
  if (top(x) <= -2) {
    // ln(1 + x) = 2 atanh(x / (2 + x)), accurate for tiny x
    return div(ldexp(atanhSeries(div(x, add(bf(2), x))), 1), LN2);
  }
  return log2(add(ONE, x));
}

const MASK32 = 0xffffffffn;

/**
 * Rounds a nonzero value to the 64-bit extended format under rc (f80.ts's roundPack: rSe/rHi/
 * rLo, rFlags gets PE, UE, OE, C1 as the round-up bit).
 */
export function round80(v: BF, rc: number, exact = false): void {
  const sign = v.m < 0n ? 1 : 0;
  let m = sign ? -v.m : v.m;
  let e = v.e;
  const n = bitLen(m);
  let sticky = 0n;
  if (n > 128) {
    const sh = BigInt(n - 128);
    sticky = (m & ((1n << sh) - 1n)) !== 0n ? 1n : 0n;
    m >>= sh;
    e += n - 128;
  } else if (n < 128) {
    m <<= BigInt(128 - n);
    e -= 128 - n;
  }
  // a series' own error lies far below bit 0: sticky unless the value is known to be exact
  m |= sticky | (exact ? 0n : 1n);
  roundPackWords(
    sign,
    e + 127,
    Number((m >> 96n) & MASK32),
    Number((m >> 64n) & MASK32),
    Number((m >> 32n) & MASK32),
    Number(m & MASK32),
    64,
    rc,
  );
}
