/**
 * Exact 80-bit extended-precision arithmetic for the x87 in integer math (no BigInt): operands are
 * (sign, unbiased exponent, 64-bit mantissa as two uint32 halves); intermediate results are
 * 128-bit values in a Uint32Array (W[3] most significant) rounded by {@link roundPack} to 24, 53
 * or 64 bits with the x87's rounding modes and a chosen exponent range (extended, double, single).
 * @module
 */

/** Operand kinds from {@link unpack}. */
export const K_ZERO = 0, K_FIN = 1, K_INF = 2, K_NAN = 3, K_BAD = 4;

// status word bits this module sets
const DE = 0x2, OE = 0x8, UE = 0x10, PE = 0x20, C1 = 0x200;

/** Unpacked operands: slots 0 and 1. */
export const uS = new Int32Array(2), uE = new Int32Array(2), uK = new Int32Array(2);
export const uH = new Uint32Array(2), uL = new Uint32Array(2);

/** Packed result of the last operation. */
export let rSe = 0, rHi = 0, rLo = 0;
/** Status-word bits raised by the last operation (DE, OE, UE, PE, C1). */
export let rFlags = 0;
/** Exponent of the rounded result's bit 63 and whether it overflowed (roundPack). */
export let rExp = 0, rInf = false;

/**
 * The x87 control word leaves overflow (OM) / underflow (UM) unmasked: roundPack then delivers
 * an extended result with a biased exponent instead of an infinity or a denormal.
 */
let oeUnmasked = false, ueUnmasked = false;
export function setUnmaskedOU(oe: boolean, ue: boolean): void {
  oeUnmasked = oe;
  ueUnmasked = ue;
}

/** The 128-bit working value. */
const W = new Uint32Array(4);
const B = new Uint32Array(4);

/** Splits an 80-bit value into slot `s`; a denormal is normalised (DE raised). */
export function unpack(s: number, se: number, hi: number, lo: number): void {
  uS[s] = (se >> 15) & 1;
  const e = se & 0x7fff;
  hi >>>= 0;
  lo >>>= 0;
  uH[s] = hi;
  uL[s] = lo;
  if (e === 0x7fff) {
    uK[s] = (hi & 0x80000000) === 0 ? K_BAD : ((hi & 0x7fffffff) | lo) === 0 ? K_INF : K_NAN;
    return;
  }
  if (e === 0) {
    if ((hi | lo) === 0) {
      uK[s] = K_ZERO;
      uE[s] = 0;
      return;
    }
    rFlags |= DE;
    let x = -16382;
    if (hi === 0) {
      hi = lo;
      lo = 0;
      x -= 32;
    }
    const z = Math.clz32(hi);
    if (z !== 0) {
      hi = ((hi << z) | (lo >>> (32 - z))) >>> 0;
      lo = (lo << z) >>> 0;
      x -= z;
    }
    uH[s] = hi;
    uL[s] = lo;
    uE[s] = x;
    uK[s] = K_FIN;
    return;
  }
  if ((hi & 0x80000000) === 0) {
    uK[s] = K_BAD; // unnormal: an invalid operand since the 387
    return;
  }
  uE[s] = e - 16383;
  uK[s] = K_FIN;
}

// ------------------------------------------------------------------ 128-bit helpers

function shl(m: Uint32Array, n: number): void {
  while (n >= 32) {
    m[3] = m[2];
    m[2] = m[1];
    m[1] = m[0];
    m[0] = 0;
    n -= 32;
  }
  if (n === 0) return;
  m[3] = (m[3] << n) | (m[2] >>> (32 - n));
  m[2] = (m[2] << n) | (m[1] >>> (32 - n));
  m[1] = (m[1] << n) | (m[0] >>> (32 - n));
  m[0] = m[0] << n;
}

/** Shifts right by n, ORing every bit shifted out into bit 0. */
function shrSticky(m: Uint32Array, n: number): void {
  if (n <= 0) return;
  if (n >= 128) {
    const any = (m[0] | m[1] | m[2] | m[3]) !== 0;
    m[0] = any ? 1 : 0;
    m[1] = m[2] = m[3] = 0;
    return;
  }
  let sticky = 0;
  while (n >= 32) {
    sticky |= m[0];
    m[0] = m[1];
    m[1] = m[2];
    m[2] = m[3];
    m[3] = 0;
    n -= 32;
  }
  if (n !== 0) {
    sticky |= m[0] & ((1 << n) - 1);
    m[0] = (m[0] >>> n) | (m[1] << (32 - n));
    m[1] = (m[1] >>> n) | (m[2] << (32 - n));
    m[2] = (m[2] >>> n) | (m[3] << (32 - n));
    m[3] = m[3] >>> n;
  }
  if (sticky !== 0) m[0] |= 1;
}

function isZero(m: Uint32Array): boolean {
  return (m[0] | m[1] | m[2] | m[3]) === 0;
}

function cmp(a: Uint32Array, b: Uint32Array): number {
  for (let k = 3; k >= 0; k--) {
    if (a[k] !== b[k]) return a[k] > b[k] ? 1 : -1;
  }
  return 0;
}

/** a += b; returns the carry out. */
function add(a: Uint32Array, b: Uint32Array): number {
  let c = 0;
  for (let k = 0; k < 4; k++) {
    const s = a[k] + b[k] + c;
    a[k] = s;
    c = s > 0xffffffff ? 1 : 0;
  }
  return c;
}

/** a = a - b (a >= b). */
function sub(a: Uint32Array, b: Uint32Array): void {
  let br = 0;
  for (let k = 0; k < 4; k++) {
    const d = a[k] - b[k] - br;
    a[k] = d;
    br = d < 0 ? 1 : 0;
  }
}

/** Adds 1 at bit `pos` (0..127); returns the carry out of bit 127. */
function incAt(m: Uint32Array, pos: number): number {
  let k = pos >> 5;
  let add = 2 ** (pos & 31);
  while (k < 4) {
    const s = m[k] + add;
    m[k] = s;
    if (s <= 0xffffffff) return 0;
    add = 1;
    k++;
  }
  return 1;
}

/** The bit at `pos`. */
function bitAt(m: Uint32Array, pos: number): number {
  return (m[pos >> 5] >>> (pos & 31)) & 1;
}

/** Whether any bit below `pos` is set. */
function anyBelow(m: Uint32Array, pos: number): boolean {
  const k = pos >> 5;
  for (let j = 0; j < k; j++) if (m[j] !== 0) return true;
  const b = pos & 31;
  return b !== 0 && (m[k] & ((1 << b) - 1) >>> 0) !== 0;
}

function clearBelow(m: Uint32Array, pos: number): void {
  const k = pos >> 5;
  for (let j = 0; j < k; j++) m[j] = 0;
  const b = pos & 31;
  if (b !== 0) m[k] &= ~((1 << b) - 1);
}

/**
 * Rounds m at bit `lsb` (the lowest kept bit) by rounding control rc for sign `sign`; clears the
 * bits below. Returns 0 exact, 1 inexact truncated, 2 inexact incremented, 3 incremented with a
 * carry out of bit 127.
 */
function roundAt(m: Uint32Array, lsb: number, sign: number, rc: number): number {
  const half = lsb > 0 ? bitAt(m, lsb - 1) : 0;
  const sticky = lsb > 1 ? anyBelow(m, lsb - 1) : false;
  if (half === 0 && !sticky) return 0;
  let up: boolean;
  if (rc === 0) up = half === 1 && (sticky || bitAt(m, lsb) === 1);
  else if (rc === 1) up = sign === 1;
  else if (rc === 2) up = sign === 0;
  else up = false;
  clearBelow(m, lsb);
  if (!up) return 1;
  return incAt(m, lsb) ? 3 : 2;
}

/**
 * Rounds W (value W * 2^(exp-127), i.e. `exp` is the exponent of bit 127) to `prec` bits with
 * rounding control rc in the exponent range [emin, emax] of the destination format, setting rSe/
 * rHi/rLo (extended encoding), rExp, rInf and rFlags. W may be unnormalised; it must not be zero.
 */
export function roundPack(
  sign: number,
  exp: number,
  prec: number,
  rc: number,
  emin = -16382,
  emax = 16383,
): void {
  const m = W;
  if (isZero(m)) {
    rSe = sign << 15;
    rHi = rLo = 0;
    rExp = emin;
    rInf = false;
    return;
  }
  while (m[3] === 0) {
    shl(m, 32);
    exp -= 32;
  }
  const z = Math.clz32(m[3]);
  if (z !== 0) {
    shl(m, z);
    exp -= z;
  }
  let tiny = false, bias = 0;
  if (exp < emin) {
    if (ueUnmasked) {
      // unmasked underflow: flagged for any tiny result; an extended result keeps its
      // significand, the exponent biased up by 24576 (a store is suppressed by its caller)
      rFlags |= UE;
      if (emin === -16382) {
        if (exp + 24576 < emin) {
          // beyond even the biased range (FSCALE by a huge amount): a zero
          rFlags |= PE;
          rInf = false;
          rExp = emin;
          rSe = sign << 15;
          rHi = rLo = 0;
          return;
        }
        bias = 24576;
      }
    }
    if (bias === 0) {
      shrSticky(m, emin - exp);
      exp = emin;
      tiny = true;
    }
  }
  const r = roundAt(m, 128 - prec, sign, rc);
  if (r !== 0) {
    rFlags |= PE;
    if (tiny) rFlags |= UE;
    if (r >= 2) rFlags |= C1;
  }
  if (r === 3) {
    m[3] = 0x80000000;
    exp++;
  }
  if (exp > emax && oeUnmasked && emax === 16383 && exp - 24576 <= emax) bias = -24576;
  if (bias !== 0) {
    // unmasked overflow likewise: the exponent biased down by 24576
    if (bias < 0) rFlags |= OE;
    rInf = false;
    rExp = exp + bias;
    rSe = (sign << 15) | ((exp + bias + 16383) & 0x7fff);
    rHi = m[3] | 0;
    rLo = m[2] | 0;
    return;
  }
  const normal = (m[3] & 0x80000000) !== 0;
  if (exp > emax) {
    rFlags |= OE | PE;
    // (unmasked and beyond even the biased range: an infinity whatever the rounding)
    const toInf = rc === 0 || (rc === 1 && sign === 1) || (rc === 2 && sign === 0) ||
      (oeUnmasked && emax === 16383);
    if (toInf) {
      rFlags |= C1;
      rInf = true;
      rSe = (sign << 15) | 0x7fff;
      rHi = 0x80000000 | 0;
      rLo = 0;
      return;
    }
    rFlags &= ~C1;
    exp = emax;
    m[3] = 0xffffffff;
    m[2] = 0xffffffff;
    m[1] = m[0] = 0;
    clearBelow(m, 128 - prec);
  }
  rInf = false;
  rExp = exp;
  rSe = (sign << 15) | (normal ? exp + 16383 : 0);
  rHi = m[3] | 0;
  rLo = m[2] | 0;
}

/** The rounded result as a JS number (exact: call after roundPack to <= 53 bits). */
export function resultNumber(): number {
  const s = (rSe & 0x8000) !== 0 ? -1 : 1;
  if (rInf) return s * Infinity;
  const mant = (rHi >>> 0) * 4294967296 + (rLo >>> 0);
  if (mant === 0) return s * 0;
  let x = mant, e = rExp - 63;
  while (e < -1000) {
    x *= 2 ** -1000;
    e += 1000;
  }
  while (e > 1000) {
    x *= 2 ** 1000;
    e -= 1000;
  }
  return s * x * 2 ** e;
}

/** Clears rFlags before an operation. */
export function clearFlags(): void {
  rFlags = 0;
}

function loadW(m: Uint32Array, hi: number, lo: number): void {
  m[3] = hi;
  m[2] = lo;
  m[1] = m[0] = 0;
}

// ------------------------------------------------------------------ operations on slots 0 and 1

/** Slot0 +/- slot1 (both K_ZERO or K_FIN), rounded to prec. */
export function addX(subtract: boolean, prec: number, rc: number): void {
  let aS = uS[0], aE = uE[0], bS = uS[1] ^ (subtract ? 1 : 0), bE = uE[1];
  const aZ = uK[0] === K_ZERO, bZ = uK[1] === K_ZERO;
  if (aZ && bZ) {
    const s = aS === bS ? aS : rc === 1 ? 1 : 0;
    rSe = s << 15;
    rHi = rLo = 0;
    return;
  }
  // each mantissa at bits 126..63 (bit 127 free for the carry)
  loadW(W, uH[0], uL[0]);
  loadW(B, uH[1], uL[1]);
  shrSticky(W, 1);
  shrSticky(B, 1);
  if (aZ) aE = bE - 200;
  if (bZ) bE = aE - 200;
  if (aE < bE) {
    for (let k = 0; k < 4; k++) {
      const t = W[k];
      W[k] = B[k];
      B[k] = t;
    }
    let t = aE;
    aE = bE;
    bE = t;
    t = aS;
    aS = bS;
    bS = t;
  }
  shrSticky(B, aE - bE);
  let sign = aS;
  if (aS === bS) add(W, B);
  else {
    const c = cmp(W, B);
    if (c === 0) {
      rSe = (rc === 1 ? 1 : 0) << 15;
      rHi = rLo = 0;
      return;
    }
    if (c < 0) {
      sub(B, W);
      W.set(B);
      sign = bS;
    } else sub(W, B);
  }
  roundPack(sign, aE + 1, prec, rc);
}

/** Slot0 * slot1 (both K_ZERO or K_FIN). */
export function mulX(prec: number, rc: number): void {
  const sign = uS[0] ^ uS[1];
  if (uK[0] === K_ZERO || uK[1] === K_ZERO) {
    rSe = sign << 15;
    rHi = rLo = 0;
    return;
  }
  const a0 = uL[0] & 0xffff, a1 = uL[0] >>> 16, a2 = uH[0] & 0xffff, a3 = uH[0] >>> 16;
  const b0 = uL[1] & 0xffff, b1 = uL[1] >>> 16, b2 = uH[1] & 0xffff, b3 = uH[1] >>> 16;
  const a = [a0, a1, a2, a3], b = [b0, b1, b2, b3];
  const p = [0, 0, 0, 0, 0, 0, 0, 0];
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) p[i + j] += a[i] * b[j];
  }
  let carry = 0;
  for (let k = 0; k < 8; k++) {
    const v = p[k] + carry;
    p[k] = v % 65536;
    carry = Math.floor(v / 65536);
  }
  for (let k = 0; k < 4; k++) W[k] = p[2 * k] + p[2 * k + 1] * 65536;
  roundPack(sign, uE[0] + uE[1] + 1, prec, rc);
}

/** Slot0 / slot1 (slot0 K_ZERO or K_FIN, slot1 K_FIN). */
export function divX(prec: number, rc: number): void {
  const sign = uS[0] ^ uS[1];
  if (uK[0] === K_ZERO) {
    rSe = sign << 15;
    rHi = rLo = 0;
    return;
  }
  let rh = uH[0], rl = uL[0];
  const dh = uH[1], dl = uL[1];
  W.fill(0);
  for (let i = 0; i < 68; i++) {
    if (rh > dh || (rh === dh && rl >= dl)) {
      let l = rl - dl, h = rh - dh;
      if (l < 0) {
        l += 4294967296;
        h--;
      }
      rh = h;
      rl = l;
      const pos = 127 - i;
      W[pos >> 5] |= 1 << (pos & 31);
    }
    rh = rh * 2 + (rl >= 2147483648 ? 1 : 0);
    rl = (rl * 2) % 4294967296;
  }
  if (rh !== 0 || rl !== 0) W[0] |= 1;
  roundPack(sign, uE[0] - uE[1], prec, rc);
}

const R3 = new Uint32Array(4), T3 = new Uint32Array(4), N5 = new Uint32Array(5);

/** Square root of slot0 (K_FIN, positive). */
export function sqrtX(prec: number, rc: number): void {
  const e = uE[0];
  // value = m * 2^(e-63); make the exponent E even, radicand N = M * 2^70
  let E = e - 63, extra = 0;
  if ((E & 1) !== 0) {
    E -= 1;
    extra = 1;
  }
  // N = m << (64 + 6 + extra) in five words
  N5[0] = N5[1] = 0;
  N5[2] = uL[0];
  N5[3] = uH[0];
  N5[4] = 0;
  const sh = 6 + extra;
  N5[4] = N5[3] >>> (32 - sh);
  N5[3] = (N5[3] << sh) | (N5[2] >>> (32 - sh));
  N5[2] = N5[2] << sh;
  R3.fill(0); // remainder
  W.fill(0); // root
  for (let i = 67; i >= 0; i--) {
    const pair = (N5[(2 * i) >> 5] >>> ((2 * i) & 31)) & 3;
    shl(R3, 2);
    R3[0] |= pair;
    // trial = root*4 + 1
    T3.set(W);
    shl(T3, 2);
    T3[0] |= 1;
    shl(W, 1);
    if (cmp(R3, T3) >= 0) {
      sub(R3, T3);
      W[0] |= 1;
    }
  }
  if (!isZero(R3)) {
    shl(W, 1); // room for a sticky bit below the root's last bit
    W[0] |= 1;
    roundPack(0, 127 + (E - 70) / 2 - 1, prec, rc);
  } else roundPack(0, 127 + (E - 70) / 2, prec, rc);
}

/** Compares slot0 with slot1 (neither NaN): -1, 0 or 1. */
export function cmpX(): number {
  const za = uK[0] === K_ZERO, zb = uK[1] === K_ZERO;
  if (za && zb) return 0;
  const sa = za ? (uS[1] ^ 1) : uS[0], sb = zb ? (uS[0] ^ 1) : uS[1];
  if (za) return sb === 1 ? 1 : -1;
  if (zb) return sa === 1 ? -1 : 1;
  if (sa !== sb) return sa === 1 ? -1 : 1;
  let mag: number;
  const ia = uK[0] === K_INF, ib = uK[1] === K_INF;
  if (ia || ib) mag = ia && ib ? 0 : ia ? 1 : -1;
  else if (uE[0] !== uE[1]) mag = uE[0] > uE[1] ? 1 : -1;
  else if (uH[0] !== uH[1]) mag = uH[0] > uH[1] ? 1 : -1;
  else if (uL[0] !== uL[1]) mag = uL[0] > uL[1] ? 1 : -1;
  else mag = 0;
  return sa === 1 ? -mag : mag;
}

/**
 * Rounds slot0 (K_FIN) to an integer by rc. Result packed (rSe/rHi/rLo) as an extended value;
 * also the integer's magnitude in intHi/intLo (valid when it fits 64 bits: intBig false).
 */
export let intHi = 0, intLo = 0, intBig = false;
export function roundInt(rc: number): void {
  const e = uE[0], sign = uS[0];
  if (e >= 63) {
    intBig = e > 63;
    intHi = uH[0];
    intLo = uL[0];
    rSe = (sign << 15) | (e + 16383);
    rHi = uH[0] | 0;
    rLo = uL[0] | 0;
    return;
  }
  loadW(W, uH[0], uL[0]);
  let lsb = 127 - e;
  if (e < 0) {
    shrSticky(W, -e);
    lsb = 127;
  }
  const r = roundAt(W, lsb, sign, rc);
  if (r !== 0) {
    rFlags |= PE;
    if (r >= 2) rFlags |= C1;
  }
  intBig = false;
  if (r === 3) {
    // carried out of bit 127: the integer is 2^(128-lsb)
    const k = 128 - lsb;
    intHi = k >= 32 ? 2 ** (k - 32) : 0;
    intLo = k < 32 ? 2 ** k : 0;
  } else {
    T3.set(W);
    shrSticky(T3, lsb);
    intHi = T3[1];
    intLo = T3[0];
  }
  if (intHi === 0 && intLo === 0) {
    rSe = sign << 15;
    rHi = rLo = 0;
    return;
  }
  loadW(W, intHi, intLo);
  rFlags &= ~(UE | OE);
  const f = rFlags;
  roundPack(sign, 63, 64, rc);
  rFlags = f;
}

/**
 * Partial remainder of slot0 by slot1 (both K_FIN, or slot0 K_ZERO): FPREM (truncating) or
 * FPREM1 (round to nearest). Sets the result and remQ (low quotient bits), remPartial.
 */
export let remQ = 0, remPartial = false;
export function remX(ieee: boolean): void {
  const sa = uS[0];
  remPartial = false;
  remQ = 0;
  if (uK[0] === K_ZERO) {
    rSe = sa << 15;
    rHi = rLo = 0;
    return;
  }
  const d = uE[0] - uE[1];
  const dh = uH[1], dl = uL[1];
  let rh = uH[0], rl = uL[0], baseExp: number, q = 0, sign = sa;
  if (d < 0) {
    baseExp = uE[0];
    if (ieee && d === -1 && (rh > dh || (rh === dh && rl > dl))) {
      // |a| > |b|/2: a - b, with the divisor at the dividend's scale (2*mb)
      // r = 2*mb - ma at exponent ea (value mantissas at 2^(ea-63))
      let l = dl * 2, h = dh * 2 + Math.floor(l / 4294967296);
      l %= 4294967296;
      l -= rl;
      h -= rh;
      if (l < 0) {
        l += 4294967296;
        h--;
      }
      rh = h;
      rl = l;
      sign ^= 1;
      q = 1;
    }
  } else {
    let k = d;
    if (d >= 64) {
      k = 32 + ((d - 32) & 31);
      remPartial = true;
    }
    baseExp = uE[0] - k;
    for (let i = 0; i <= k; i++) {
      q = (q * 2) % 8;
      if (rh > dh || (rh === dh && rl >= dl)) {
        let l = rl - dl, h = rh - dh;
        if (l < 0) {
          l += 4294967296;
          h--;
        }
        rh = h;
        rl = l;
        q |= 1;
      }
      if (i < k) {
        rh = rh * 2 + (rl >= 2147483648 ? 1 : 0);
        rl = (rl * 2) % 4294967296;
      }
    }
    if (ieee && !remPartial) {
      // round the quotient to nearest: compare 2R with the divisor
      const h2 = rh * 2 + (rl >= 2147483648 ? 1 : 0), l2 = (rl * 2) % 4294967296;
      const c = h2 !== dh ? (h2 > dh ? 1 : -1) : l2 !== dl ? (l2 > dl ? 1 : -1) : 0;
      if (c > 0 || (c === 0 && (q & 1) === 1)) {
        let l = dl - rl, h = dh - rh;
        if (l < 0) {
          l += 4294967296;
          h--;
        }
        rh = h;
        rl = l;
        sign ^= 1;
        q = (q + 1) % 8;
      }
    }
  }
  remQ = q;
  W[3] = rh;
  W[2] = rl;
  W[1] = W[0] = 0;
  if (rh === 0 && rl === 0) {
    rSe = sa << 15;
    rHi = rLo = 0;
    return;
  }
  const f = rFlags;
  roundPack(sign, baseExp, 64, 0);
  rFlags = f | (rFlags & UE);
}

/** Rounds slot0 (K_FIN) to prec bits in the exponent range [emin, emax]. */
export function roundSlot0(prec: number, rc: number, emin: number, emax: number): void {
  loadW(W, uH[0], uL[0]);
  roundPack(uS[0], uE[0], prec, rc, emin, emax);
}

/** Slot0 * 2^n exactly (then rounded to the extended range: over/underflow). */
export function scaleX(n: number, rc: number): void {
  loadW(W, uH[0], uL[0]);
  roundPack(uS[0], uE[0] + n, 64, rc);
}

/** Packs a 64-bit unsigned magnitude with a sign as an extended value (exact). */
export function fromInt(sign: number, hi: number, lo: number): void {
  if ((hi | lo) === 0) {
    rSe = sign << 15;
    rHi = rLo = 0;
    return;
  }
  loadW(W, hi >>> 0, lo >>> 0);
  roundPack(sign, 63, 64, 0);
}

/**
 * Rounds sign * (w3:w2:w1:w0, a 128-bit magnitude, bit 0 possibly a sticky bit) * 2^(exp-127)
 * to `prec` bits by rc (for results computed elsewhere, e.g. the transcendentals' BigInt
 * evaluation in f80trans.ts); sets rSe/rHi/rLo and ORs its flags into rFlags.
 */
export function roundPackWords(
  sign: number,
  exp: number,
  w3: number,
  w2: number,
  w1: number,
  w0: number,
  prec: number,
  rc: number,
): void {
  W[3] = w3;
  W[2] = w2;
  W[1] = w1;
  W[0] = w0;
  roundPack(sign, exp, prec, rc);
}
