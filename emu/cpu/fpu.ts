/**
 * The x87 FPU: the D8..DF escape opcodes, WAIT, FXSAVE/FXRSTOR.
 *
 * Each register holds a double and, unless that double is the exact value, the 80-bit image
 * (rawValid); the image is what the arithmetic reads. FADD/FSUB/FMUL/FDIV/FSQRT compute exactly in 64-bit mantissa with integer soft-float (f80.ts) and round
 * by the precision-control (24/53/64 bits) and rounding-control fields; compares, FRNDINT,
 * FSCALE, FPREM/FPREM1, FXTRACT, FXAM, FIST, FBSTP, FST m32/m64 (rounded by RC into the format's
 * range), FILD, FBLD and the constants (rounded by RC) work on the exact image too, with the
 * status word (C1 as the round-up bit, IE/DE/ZE/OE/UE/PE) as a P6 sets it. The transcendental
 * instructions (FSIN, FCOS, FSINCOS, FPTAN, FPATAN, F2XM1, FYL2X, FYL2XP1) are evaluated in
 * BigInt floating point (f80trans.ts) and rounded once to 64 bits: within 1 ulp of the host
 * FPU's results (tests/cpu_x87trans_test.ts), with the x87's 66-bit pi in the trigonometric
 * reduction.
 * Exceptions set their status-word flags; an unmasked one raises #MF at the next waiting x87
 * instruction when CR0.NE is set, and asserts FERR# (CpuBus.ferr: IRQ 13 on a PC) when it is
 * clear. An unmasked invalid-operation, zero-divide or denormal exception leaves the registers
 * and the stack alone; unmasked overflow/underflow give the biased-exponent result and suppress
 * stores (escapeUnmasked; tests/cpu_x87mask_test.ts checks these against the host FPU).
 * @module
 */

import { CR0_EM, CR0_MP, CR0_NE, CR0_TS, MF, NM, UD } from "./consts.ts";
import type { Cpu } from "./cpu.ts";
import type { Instr } from "./instr.ts";
import {
  atan2,
  type BF,
  bf,
  div as bfDiv,
  exp2m1,
  fromParts,
  log2,
  log2p1,
  mul as bfMul,
  PI,
  round80,
  sinCos,
} from "./f80trans.ts";
import {
  addX,
  clearFlags,
  cmpX,
  divX,
  fromInt,
  intBig,
  intHi,
  intLo,
  K_BAD,
  K_FIN,
  K_INF,
  K_NAN,
  K_ZERO,
  mulX,
  remPartial,
  remQ,
  remX,
  resultNumber,
  rFlags,
  rHi,
  rLo,
  roundInt,
  roundSlot0,
  rSe,
  scaleX,
  setUnmaskedOU,
  sqrtX,
  uE,
  uH,
  uK,
  uL,
  unpack,
  uS,
} from "./f80.ts";

// status word bits
const IE = 0x1, DE = 0x2, ZE = 0x4, OE = 0x8, UE = 0x10, PE = 0x20, SF_ = 0x40, ES = 0x80;
const C0 = 0x100, C1 = 0x200, C2 = 0x400, C3 = 0x4000;

/** The x87 register file and control state. */
export class Fpu {
  /** Physical registers R0..R7 (ST(i) = R[(top + i) & 7]). */
  val = new Float64Array(8);
  /** 1 where raw80 holds the register's exact 80-bit image. */
  rawValid = new Uint8Array(8);
  rawLo = new Int32Array(8);
  rawHi = new Int32Array(8);
  rawSe = new Uint16Array(8);
  /** 2 bits per register: 0 valid, 1 zero, 2 special, 3 empty. */
  tag = 0xffff;
  top = 0;
  sw = 0;
  cw = 0x37f;
  fip = 0;
  fcs = 0;
  fdp = 0;
  fds = 0;
  fop = 0;
  mxcsr = 0x1f80;
  /** XMM0..7 as raw bytes (kept by FXSAVE/FXRSTOR; no SSE instructions act on them). */
  xmm = new Uint8Array(128);
  /** FERR# is active (an unmasked exception met a waiting instruction with CR0.NE clear). */
  ferr = false;

  reset(): void {
    this.cw = 0x37f;
    this.sw = 0;
    this.tag = 0xffff;
    this.top = 0;
    this.fip =
      this.fcs =
      this.fdp =
      this.fds =
      this.fop =
        0;
    this.rawValid.fill(0);
  }

  isEmpty(i: number): boolean {
    return ((this.tag >> (((this.top + i) & 7) * 2)) & 3) === 3;
  }

  st(i: number): number {
    return this.val[(this.top + i) & 7];
  }

  private setTag(phys: number, v: number): void {
    const t = v === 0 ? 1 : Number.isFinite(v) ? 0 : 2;
    this.tag = (this.tag & ~(3 << (phys * 2))) | (t << (phys * 2));
  }

  /** Writes ST(i) (not from an 80-bit image); a NaN is the negative "real indefinite". */
  set(i: number, v: number): void {
    const p = (this.top + i) & 7;
    this.val[p] = v;
    this.setTag(p, v);
    if (v !== v) {
      this.rawValid[p] = 1;
      this.rawSe[p] = 0xffff;
      this.rawHi[p] = 0xc0000000 | 0;
      this.rawLo[p] = 0;
    } else this.rawValid[p] = 0;
  }

  /** Copies ST(src) into ST(dst), exact image included. */
  copy(dst: number, src: number): void {
    const s = (this.top + src) & 7, d = (this.top + dst) & 7;
    this.val[d] = this.val[s];
    this.rawValid[d] = this.rawValid[s];
    this.rawLo[d] = this.rawLo[s];
    this.rawHi[d] = this.rawHi[s];
    this.rawSe[d] = this.rawSe[s];
    this.tag = (this.tag & ~(3 << (d * 2))) | (((this.tag >> (s * 2)) & 3) << (d * 2));
  }

  /** Exchanges ST(a) and ST(b), exact images and tags included. */
  swap(a: number, b: number): void {
    const pa = (this.top + a) & 7, pb = (this.top + b) & 7;
    const v = this.val[pa], rv = this.rawValid[pa], rl = this.rawLo[pa], rh = this.rawHi[pa];
    const rs = this.rawSe[pa], ta = (this.tag >> (pa * 2)) & 3, tb = (this.tag >> (pb * 2)) & 3;
    this.val[pa] = this.val[pb];
    this.rawValid[pa] = this.rawValid[pb];
    this.rawLo[pa] = this.rawLo[pb];
    this.rawHi[pa] = this.rawHi[pb];
    this.rawSe[pa] = this.rawSe[pb];
    this.val[pb] = v;
    this.rawValid[pb] = rv;
    this.rawLo[pb] = rl;
    this.rawHi[pb] = rh;
    this.rawSe[pb] = rs;
    this.tag = (this.tag & ~(3 << (pa * 2)) & ~(3 << (pb * 2))) | (tb << (pa * 2)) |
      (ta << (pb * 2));
  }

  push(v: number): void {
    if (!this.isEmpty(7)) {
      this.sw |= IE | SF_ | C1;
      v = NaN; // the "real indefinite"
    } else this.sw &= ~C1;
    this.top = (this.top - 1) & 7;
    this.set(0, v);
  }

  pop(): void {
    const p = this.top;
    this.tag |= 3 << (p * 2);
    this.rawValid[p] = 0;
    this.top = (this.top + 1) & 7;
  }

  /** Reads ST(i), flagging a stack underflow when empty. */
  get(i: number): number {
    if (this.isEmpty(i)) {
      this.sw |= IE | SF_;
      this.sw &= ~C1;
      return NaN;
    }
    return this.st(i);
  }

  /** The status word with TOP and the summary bit filled in. */
  status(): number {
    let s = (this.sw & ~0x3800) | (this.top << 11);
    if ((s & 0x3f & ~this.cw) !== 0) s |= ES | 0x8000;
    else s &= ~(ES | 0x8000);
    return s & 0xffff;
  }
}

function fpuOf(cpu: Cpu): Fpu {
  let f = cpu.fpu as Fpu | null;
  if (f === null) {
    f = new Fpu();
    cpu.fpu = f;
  }
  return f;
}

// ------------------------------------------------------------------ format conversions

const scratch = new DataView(new ArrayBuffer(8));

/** x * 2^e without intermediate overflow/underflow. */
function ldexp(x: number, e: number): number {
  if (!Number.isFinite(e)) {
    // scaling by an infinity (FSCALE): 0 * 2^inf and inf * 2^-inf are invalid
    if (e !== e) return NaN;
    return e > 0 ? (x === 0 ? NaN : x * Infinity) : Number.isFinite(x) ? x * 0 : NaN;
  }
  while (e > 1000) {
    x *= 2 ** 1000;
    e -= 1000;
  }
  while (e < -1000) {
    x *= 2 ** -1000;
    e += 1000;
  }
  return x * 2 ** e;
}

/** Decodes an 80-bit extended value (sign+exponent word, mantissa hi/lo) to a double. */
export function f80ToNumber(se: number, hi: number, lo: number): number {
  const sign = (se & 0x8000) !== 0 ? -1 : 1;
  const exp = se & 0x7fff;
  const mant = (hi >>> 0) * 4294967296 + (lo >>> 0);
  if (exp === 0x7fff) {
    return ((hi & 0x7fffffff) | lo) === 0 ? sign * Infinity : NaN;
  }
  if (mant === 0) return sign * 0;
  return sign * ldexp(mant, (exp === 0 ? 1 : exp) - 16383 - 63);
}

/** Encodes a double as 80-bit extended; results in f80Se/f80Hi/f80Lo. */
export let f80Se = 0, f80Hi = 0, f80Lo = 0;
export function numberToF80(v: number): void {
  scratch.setFloat64(0, v, true);
  const lo32 = scratch.getUint32(0, true), hi32 = scratch.getUint32(4, true);
  const sign = (hi32 >>> 31) << 15;
  let exp = (hi32 >>> 20) & 0x7ff;
  let mhi = ((hi32 & 0xfffff) << 11) | (lo32 >>> 21);
  let mlo = lo32 << 11;
  if (exp === 0x7ff) {
    f80Se = sign | 0x7fff;
    f80Hi = (mhi | 0x80000000) | (Number.isNaN(v) ? 0x40000000 : 0);
    f80Lo = mlo;
    return;
  }
  if (exp === 0) {
    if (mhi === 0 && mlo === 0) {
      f80Se = sign;
      f80Hi = f80Lo = 0;
      return;
    }
    // double denormal: normalise (extended has the range)
    exp = 1;
    while ((mhi & 0x40000000) === 0) {
      mhi = (mhi << 1) | (mlo >>> 31);
      mlo <<= 1;
      exp--;
    }
    mhi = (mhi << 1) | (mlo >>> 31);
    mlo <<= 1;
    exp--;
    f80Se = sign | (exp - 1023 + 16383 + 1 - 1);
    f80Hi = mhi | 0x80000000;
    f80Lo = mlo;
    return;
  }
  f80Se = sign | (exp - 1023 + 16383);
  f80Hi = mhi | 0x80000000;
  f80Lo = mlo;
}

// ------------------------------------------------------------------ memory operands

/**
 * The last m32/m64 operand was a denormal in its own format: DE for FLD, and for arithmetic and
 * compares when the operation really uses its value (not with a NaN, not x/0).
 */
let memDenormal = false;
/** The last m32/m64 operand was a signalling NaN (IE when used; loaded as a quiet NaN). */
let memSnan = false;
function ld32f(cpu: Cpu, lin: number): number {
  const bits = cpu.rd32(lin);
  scratch.setInt32(0, bits, true);
  const v = scratch.getFloat32(0, true);
  memDenormal = v !== 0 && Math.abs(v) < 2 ** -126;
  memSnan = (bits & 0x7fc00000) === 0x7f800000 && (bits & 0x3fffff) !== 0;
  return v;
}
function ld64f(cpu: Cpu, lin: number): number {
  const lo = cpu.rd32(lin), hi = cpu.rd32((lin + 4) | 0);
  scratch.setInt32(0, lo, true);
  scratch.setInt32(4, hi, true);
  const v = scratch.getFloat64(0, true);
  memDenormal = v !== 0 && Math.abs(v) < 2 ** -1022;
  memSnan = (hi & 0x7ff80000) === 0x7ff00000 && ((hi & 0x7ffff) | lo) !== 0;
  return v;
}
/**
 * After FLD m32/m64 pushed a NaN (scratch still holds its bits): ST(0) gets that NaN, quiet,
 * with its sign and payload (not the indefinite); a stack overflow's indefinite stays.
 */
function loadedNaN(fpu: Fpu, single: boolean): void {
  const p = fpu.top;
  if (fpu.val[p] === fpu.val[p] || (fpu.sw & SF_) !== 0 && (fpu.sw & C1) !== 0) return;
  let sign: number, hi: number, lo: number;
  if (single) {
    const b = scratch.getInt32(0, true);
    sign = b >>> 31;
    hi = 0x80000000 | (((b & 0x7fffff) | 0x400000) << 8);
    lo = 0;
  } else {
    const l = scratch.getInt32(0, true), h = scratch.getInt32(4, true);
    sign = h >>> 31;
    hi = 0x80000000 | (((h & 0xfffff) | 0x80000) << 11) | (l >>> 21);
    lo = l << 11;
  }
  fpu.rawValid[p] = 1;
  fpu.rawSe[p] = (sign << 15) | 0x7fff;
  fpu.rawHi[p] = hi | 0;
  fpu.rawLo[p] = lo | 0;
}

function st32f(cpu: Cpu, lin: number, v: number): void {
  scratch.setFloat32(0, v, true);
  cpu.wr32(lin, scratch.getInt32(0, true));
}
function st64f(cpu: Cpu, lin: number, v: number): void {
  cpu.probeWrite(lin, 8);
  scratch.setFloat64(0, v, true);
  cpu.wr32(lin, scratch.getInt32(0, true));
  cpu.wr32((lin + 4) | 0, scratch.getInt32(4, true));
}
/** FILD m64: pushes the value with its exact 80-bit image (64-bit integers need all 64 bits). */
function ld64i(fpu: Fpu, cpu: Cpu, lin: number): void {
  let lo = cpu.rd32(lin), hi = cpu.rd32((lin + 4) | 0);
  fpu.push(hi * 4294967296 + (lo >>> 0));
  if (hi === 0 && lo === 0) return;
  const neg = hi < 0;
  if (neg) {
    lo = (~lo + 1) | 0;
    hi = (~hi + (lo === 0 ? 1 : 0)) | 0;
  }
  // normalise: shift left until bit 63 is set
  let e = 63;
  while (hi >= 0) {
    hi = (hi << 1) | (lo >>> 31);
    lo <<= 1;
    e--;
  }
  const p = fpu.top;
  fpu.rawValid[p] = 1;
  fpu.rawLo[p] = lo;
  fpu.rawHi[p] = hi;
  fpu.rawSe[p] = (neg ? 0x8000 : 0) | (16383 + e);
}

/**
 * FIST/FISTP of ST(0) to a 2-, 4- or 8-byte integer, rounded from the exact 80-bit value by RC;
 * out of range (or NaN, infinity): IE and the "integer indefinite".
 */
function fistX(fpu: Fpu, cpu: Cpu, lin: number, bytes: number): void {
  clearFlags();
  ldReg(fpu, 0, 0);
  const k = uK[0], neg = uS[0] === 1;
  let hi = 0, lo = 0, bad = k !== K_ZERO && k !== K_FIN;
  if (k === K_FIN) {
    roundInt((fpu.cw >> 10) & 3);
    hi = intHi >>> 0;
    lo = intLo >>> 0;
    if (intBig) bad = true;
    else if (bytes === 8) bad = hi > 0x80000000 || (hi === 0x80000000 && (lo !== 0 || !neg));
    else {
      const lim = bytes === 4 ? 2147483648 : 32768;
      bad = hi !== 0 || lo > lim || (lo === lim && !neg);
    }
  }
  if (bad) {
    fpu.sw |= IE;
    fpu.sw &= ~C1;
    if (storeBlocked(fpu, IE)) return;
    hi = bytes === 8 ? 0x80000000 : 0;
    lo = bytes === 8 ? 0 : bytes === 4 ? 0x80000000 : 0x8000;
  } else {
    fpu.sw = (fpu.sw & ~C1) | (rFlags & (PE | C1));
    if (neg) {
      lo = (~lo + 1) >>> 0;
      hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
    }
  }
  if (bytes === 2) cpu.wr16(lin, lo & 0xffff);
  else if (bytes === 4) cpu.wr32(lin, lo | 0);
  else {
    cpu.probeWrite(lin, 8);
    cpu.wr32(lin, lo | 0);
    cpu.wr32((lin + 4) | 0, hi | 0);
  }
}

/** FST/FSTP m32 or m64: ST(0) rounded from its exact value by RC into the format's range. */
function fstX(fpu: Fpu, cpu: Cpu, lin: number, single: boolean): void {
  clearFlags();
  fpu.sw &= ~C1;
  ldReg(fpu, 0, 0);
  let v = uV[0];
  if (uK[0] === K_FIN) {
    const rc = (fpu.cw >> 10) & 3;
    clearFlags(); // a store reports no denormal operand
    if (single) roundSlot0(24, rc, -126, 127);
    else roundSlot0(53, rc, -1022, 1023);
    v = resultNumber();
    applyFlags(fpu);
    if (storeBlocked(fpu, rFlags)) return;
  } else if (uK[0] === K_BAD) {
    fpu.sw |= IE;
    if (storeBlocked(fpu, IE)) return;
    v = NaN;
  } else if (uK[0] === K_NAN) {
    if ((uH[0] & 0x40000000) === 0) fpu.sw |= IE; // a signalling NaN
    // (a stack underflow's indefinite: IE from ldReg, this instruction's when unmasked)
    if ((fpu.sw & IE) !== 0 && storeBlocked(fpu, IE)) return;
    // the NaN's sign and top payload bits, made quiet
    const sg = uS[0] << 31, h = uH[0], l = uL[0];
    if (single) cpu.wr32(lin, sg | 0x7fc00000 | ((h >>> 8) & 0x3fffff));
    else {
      cpu.probeWrite(lin, 8);
      cpu.wr32(lin, (h << 21) | (l >>> 11));
      cpu.wr32((lin + 4) | 0, sg | 0x7ff80000 | ((h >>> 11) & 0x7ffff));
    }
    return;
  }
  if (single) st32f(cpu, lin, v);
  else st64f(cpu, lin, v);
}

function ld80(fpu: Fpu, cpu: Cpu, lin: number): void {
  const lo = cpu.rd32(lin), hi = cpu.rd32((lin + 4) | 0), se = cpu.rd16((lin + 8) | 0);
  fpu.push(f80ToNumber(se, hi, lo));
  const p = fpu.top;
  fpu.rawValid[p] = 1;
  fpu.rawLo[p] = lo;
  fpu.rawHi[p] = hi;
  fpu.rawSe[p] = se;
}

function st80(fpu: Fpu, cpu: Cpu, lin: number, i: number): void {
  const p = (fpu.top + i) & 7;
  cpu.probeWrite(lin, 10);
  if (fpu.rawValid[p]) {
    f80Lo = fpu.rawLo[p];
    f80Hi = fpu.rawHi[p];
    f80Se = fpu.rawSe[p];
  } else numberToF80(fpu.val[p]);
  cpu.wr32(lin, f80Lo);
  cpu.wr32((lin + 4) | 0, f80Hi);
  cpu.wr16((lin + 8) | 0, f80Se);
}

/** FBLD: pushes the 18-digit packed BCD integer, exact (it needs up to 60 mantissa bits). */
function ldBcd(fpu: Fpu, cpu: Cpu, lin: number): void {
  let h = 0, l = 0;
  for (let k = 8; k >= 0; k--) {
    const b = cpu.rd8((lin + k) | 0);
    const d = (b >> 4) * 10 + (b & 15);
    if (k >= 5) h = h * 100 + d; // digits 17..10
    else l = l * 100 + d; // digits 9..0
  }
  const neg = (cpu.rd8((lin + 9) | 0) & 0x80) !== 0;
  if (!fpu.isEmpty(7)) {
    fpu.push(NaN); // stack overflow
    return;
  }
  fpu.push(neg ? -(h * 1e10 + l) : h * 1e10 + l);
  // exact 64-bit magnitude: h * 10^10 + l with h < 10^8, split so every product is exact
  const hL = h % 65536, hH = Math.floor(h / 65536);
  const t0 = hL * 1e10 + l; // < 2^50
  const p1 = hH * 1e10; // < 2^48
  const p1lo = p1 % 65536, p1hi = Math.floor(p1 / 65536);
  let lo = t0 % 4294967296 + p1lo * 65536;
  let hi = Math.floor(t0 / 4294967296) + p1hi;
  if (lo >= 4294967296) {
    lo -= 4294967296;
    hi++;
  }
  clearFlags();
  fromInt(neg ? 1 : 0, hi, lo);
  setResult(fpu, 0);
}

/** FBSTP: ST(0) rounded by RC from its exact value to an 18-digit packed BCD integer. */
function stBcd(fpu: Fpu, cpu: Cpu, lin: number): void {
  cpu.probeWrite(lin, 10);
  clearFlags();
  fpu.sw &= ~C1;
  ldReg(fpu, 0, 0);
  const k = uK[0];
  let hi = 0, lo = 0, bad = k !== K_ZERO && k !== K_FIN;
  if (k === K_FIN) {
    roundInt((fpu.cw >> 10) & 3);
    hi = intHi >>> 0;
    lo = intLo >>> 0;
    // at most 18 digits: below 10^18 = 0x0DE0B6B3_A7640000
    bad = intBig || hi > 0x0de0b6b3 || (hi === 0x0de0b6b3 && lo >= 0xa7640000);
  }
  if (bad) {
    fpu.sw |= IE;
    if (storeBlocked(fpu, IE)) return;
    for (let b = 0; b < 7; b++) cpu.wr8((lin + b) | 0, 0);
    cpu.wr8((lin + 7) | 0, 0xc0);
    cpu.wr8((lin + 8) | 0, 0xff);
    cpu.wr8((lin + 9) | 0, 0xff);
    return;
  }
  fpu.sw |= rFlags & (PE | C1);
  // split the 60-bit magnitude into two 9-digit halves: long division by 10^9 in 16-bit limbs
  const limbs = [hi >>> 16, hi & 0xffff, lo >>> 16, lo & 0xffff];
  let rem = 0;
  const q: number[] = [];
  for (const l of limbs) {
    const cur = rem * 65536 + l;
    q.push(Math.floor(cur / 1e9));
    rem = cur % 1e9;
  }
  let high = ((q[0] * 65536 + q[1]) * 65536 + q[2]) * 65536 + q[3]; // < 10^9: exact
  let low = rem;
  // 18 digits, least significant first: nine from each half; byte b holds digits 2b and 2b+1
  const digits: number[] = [];
  for (let d = 0; d < 9; d++, low = Math.floor(low / 10)) digits.push(low % 10);
  for (let d = 0; d < 9; d++, high = Math.floor(high / 10)) digits.push(high % 10);
  for (let b = 0; b < 9; b++) cpu.wr8((lin + b) | 0, (digits[2 * b + 1] << 4) | digits[2 * b]);
  cpu.wr8((lin + 9) | 0, uS[0] ? 0x80 : 0);
}

// ------------------------------------------------------------------ arithmetic

/** The double value of slot s (for the special operands: zeros, infinities, NaNs). */
const uV = new Float64Array(2);

/** Loads ST(i) into slot s; an empty register flags a stack underflow and reads as a NaN. */
function ldReg(fpu: Fpu, s: number, i: number): void {
  const p = (fpu.top + i) & 7;
  if (((fpu.tag >> (p * 2)) & 3) === 3) {
    fpu.sw |= IE | SF_;
    fpu.sw &= ~C1;
    uV[s] = NaN;
    unpack(s, 0xffff, 0xc0000000 | 0, 0);
    return;
  }
  uV[s] = fpu.val[p];
  if (fpu.rawValid[p]) unpack(s, fpu.rawSe[p], fpu.rawHi[p], fpu.rawLo[p]);
  else {
    numberToF80(fpu.val[p]);
    unpack(s, f80Se, f80Hi, f80Lo);
  }
}

/** Loads a number (a memory operand: exact in extended precision) into slot s. */
function ldNum(s: number, v: number): void {
  uV[s] = v;
  if (memDenormal) rFlags0 |= 0x2; // DE, applied with the result
  numberToF80(v);
  unpack(s, f80Se, f80Hi, f80Lo);
  if (memSnan) uH[s] &= ~0x40000000; // still signalling: IE where it is used
}

/** DE of a memory operand (ldNum), raised only where the operation uses the value. */
let rFlags0 = 0;

/** Writes the packed result (rSe/rHi/rLo) to ST(i). */
function setResult(fpu: Fpu, i: number): void {
  const p = (fpu.top + i) & 7;
  fpu.val[p] = f80ToNumber(rSe, rHi, rLo);
  fpu.rawValid[p] = 1;
  fpu.rawSe[p] = rSe;
  fpu.rawHi[p] = rHi;
  fpu.rawLo[p] = rLo;
  const e = rSe & 0x7fff;
  const t = e === 0x7fff ? 2 : e !== 0 ? 0 : (rHi | rLo) === 0 ? 1 : 2;
  fpu.tag = (fpu.tag & ~(3 << (p * 2))) | (t << (p * 2));
}

/** Mantissa bits for the precision-control field (01, reserved, acts as 53). */
function precision(fpu: Fpu): number {
  const pc = (fpu.cw >> 8) & 3;
  return pc === 0 ? 24 : pc === 3 ? 64 : 53;
}

/** Applies the flags of an exact operation: C1 is the round-up bit. */
function applyFlags(fpu: Fpu): void {
  fpu.sw = (fpu.sw & ~C1) | rFlags;
}

function swapSlots(): void {
  let t = uS[0];
  uS[0] = uS[1];
  uS[1] = t;
  t = uE[0];
  uE[0] = uE[1];
  uE[1] = t;
  t = uK[0];
  uK[0] = uK[1];
  uK[1] = t;
  t = uH[0];
  uH[0] = uH[1];
  uH[1] = t;
  t = uL[0];
  uL[0] = uL[1];
  uL[1] = t;
  t = uV[0];
  uV[0] = uV[1];
  uV[1] = t;
}

/**
 * ST(dst) = slot0 op slot1 (op: 0 add, 1 mul, 4 sub, 5 subr, 6 div, 7 divr), exact in 64-bit
 * mantissa and rounded by the precision and rounding control fields.
 */
function arithX(fpu: Fpu, op: number, dst: number): void {
  if (op === 5 || op === 7) {
    swapSlots();
    op--;
  }
  const ka = uK[0], kb = uK[1];
  fpu.sw &= ~C1;
  if (ka === K_BAD || kb === K_BAD) {
    fpu.sw |= IE;
    fpu.set(dst, NaN);
    return;
  }
  if (ka === K_NAN || kb === K_NAN) {
    // NaN operands: the only one; of two, a quiet one over a signalling one, else the one with
    // the larger significand; made quiet
    const s = ka !== K_NAN ? 1 : kb !== K_NAN ? 0 : nanPick(0, 1);
    if (
      ((uH[0] & 0x40000000) === 0 && ka === K_NAN) || ((uH[1] & 0x40000000) === 0 && kb === K_NAN)
    ) {
      fpu.sw |= IE;
    }
    setNaN(fpu, dst, s);
    return;
  }
  if (ka > K_FIN || kb > K_FIN || (op === 6 && kb === K_ZERO)) {
    // with an infinity or a zero divisor only a finite operand's sign matters (its double value
    // may be out of double range); a denormal operand is reported beside an infinity, not for x/0
    if (!(op === 6 && kb === K_ZERO)) fpu.sw |= rFlags0 | (rFlags & 0x2);
    fpu.set(dst, arith(fpu, op, repr(0), repr(1)));
    return;
  }
  const prec = precision(fpu), rc = (fpu.cw >> 10) & 3;
  if (op === 0 || op === 4) addX(op === 4, prec, rc);
  else if (op === 1) mulX(prec, rc);
  else divX(prec, rc);
  applyFlags(fpu);
  fpu.sw |= rFlags0;
  setResult(fpu, dst);
}

/**
 * Of two NaN slots, the x87's choice: a quiet NaN over a signalling one, otherwise the larger
 * significand (the first one on a tie).
 */
function nanPick(a: number, b: number): number {
  const qa = uH[a] & 0x40000000, qb = uH[b] & 0x40000000;
  if (qa !== qb) return qa !== 0 ? a : b;
  const ha = uH[a] & 0x3fffffff, hb = uH[b] & 0x3fffffff;
  return hb > ha || (hb === ha && uL[b] > uL[a]) ? b : a;
}

/** Slot s as a double for the special cases: a finite value as +-1. */
function repr(s: number): number {
  return uK[s] === K_FIN ? (uS[s] ? -1 : 1) : uV[s];
}

/** Writes slot s's NaN, made quiet, to ST(i). */
function setNaN(fpu: Fpu, i: number, s: number): void {
  const p = (fpu.top + i) & 7;
  fpu.val[p] = NaN;
  fpu.rawValid[p] = 1;
  fpu.rawSe[p] = (uS[s] << 15) | 0x7fff;
  fpu.rawHi[p] = uH[s] | 0x40000000 | 0x80000000;
  fpu.rawLo[p] = uL[s];
  fpu.tag = (fpu.tag & ~(3 << (p * 2))) | (2 << (p * 2));
}

/** Double arithmetic for the special operands (infinities, NaNs, division by zero). */
function arith(fpu: Fpu, op: number, a: number, b: number): number {
  let r: number;
  switch (op) {
    case 0:
      r = a + b;
      break;
    case 1:
      r = a * b;
      break;
    case 4:
      r = a - b;
      break;
    default:
      if (b === 0 && a !== 0 && Number.isFinite(a)) fpu.sw |= ZE; // not for inf / 0
      r = a / b;
  }
  // an invalid operation (inf - inf, 0 * inf, ...) made a NaN out of numbers
  if (Number.isNaN(r) && !Number.isNaN(a) && !Number.isNaN(b)) fpu.sw |= IE;
  return r;
}

/** Compares slot0 with slot1: 0 greater, 1 less, 2 equal, 3 unordered. */
function compareX(fpu: Fpu, unordered: boolean): number {
  const ka = uK[0], kb = uK[1];
  if (ka >= K_NAN || kb >= K_NAN) {
    const snan = (ka === K_NAN && (uH[0] & 0x40000000) === 0) ||
      (kb === K_NAN && (uH[1] & 0x40000000) === 0);
    if (!unordered || snan || ka === K_BAD || kb === K_BAD) fpu.sw |= IE;
    return 3;
  }
  fpu.sw |= rFlags0 | (rFlags & 0x2); // a denormal operand (from memory or a register)
  const c = cmpX();
  return c > 0 ? 0 : c < 0 ? 1 : 2;
}

/** FCOM-style compare of slot0 with slot1 into C0/C2/C3. */
function compare(fpu: Fpu, unordered: boolean): void {
  const c = compareX(fpu, unordered);
  fpu.sw &= ~(C0 | C1 | C2 | C3);
  fpu.sw |= c === 3 ? C0 | C2 | C3 : c === 1 ? C0 : c === 2 ? C3 : 0;
}

/** FCOMI-style compare of slot0 with slot1 into EFLAGS ZF/PF/CF. */
function compareFlags(cpu: Cpu, fpu: Fpu, unordered: boolean): void {
  const c = compareX(fpu, unordered);
  cpu.materialize();
  let f = cpu.eflags & ~(0x1 | 0x4 | 0x40 | 0x10 | 0x80 | 0x800);
  f |= c === 3 ? 0x1 | 0x4 | 0x40 : c === 1 ? 0x1 : c === 2 ? 0x40 : 0;
  cpu.eflags = f;
}

/** Loads ST(0) and ST(i) and compares them (FCOM family). */
function compareRegs(fpu: Fpu, i: number, unordered: boolean): void {
  clearFlags();
  ldReg(fpu, 0, 0);
  ldReg(fpu, 1, i);
  compare(fpu, unordered);
}

function fxam(fpu: Fpu): void {
  fpu.sw &= ~(C0 | C1 | C2 | C3);
  const p = fpu.top & 7;
  let se: number, hi: number, lo: number;
  if (fpu.rawValid[p]) {
    se = fpu.rawSe[p];
    hi = fpu.rawHi[p];
    lo = fpu.rawLo[p];
  } else {
    numberToF80(fpu.val[p]);
    se = f80Se;
    hi = f80Hi;
    lo = f80Lo;
  }
  if ((se & 0x8000) !== 0) fpu.sw |= C1;
  const e = se & 0x7fff, mant = (hi | lo) !== 0, j = (hi & 0x80000000) !== 0;
  if (fpu.isEmpty(0)) fpu.sw |= C0 | C3;
  else if (e === 0x7fff) fpu.sw |= !j ? 0 : ((hi & 0x7fffffff) | lo) === 0 ? C0 | C2 : C0;
  else if (e === 0) fpu.sw |= mant ? C2 | C3 : C3; // denormal / zero
  else if (j) fpu.sw |= C2; // normal (an unnormal is "unsupported": 0)
}

const CONSTS = [1, Math.log2(10), Math.LOG2E, Math.PI, Math.LOG10E / Math.LOG2E, Math.LN2, 0];
/**
 * FLDL2T, FLDL2E, FLDPI, FLDLG2, FLDLN2 as 80-bit images truncated to 64 mantissa bits (sign/
 * exponent, high, low) and whether the exact value lies above the truncation by at least half
 * an ulp (round to nearest goes up). RC up rounds every one of them up (they are inexact).
 */
const CONST80: readonly (readonly [number, number, number, boolean])[] = [
  [0x4000, 0xd49a784b, 0xcd1b8afe, false], // log2(10) = ...8AFE 49..
  [0x3fff, 0xb8aa3b29, 0x5c17f0bb, true], // log2(e)  = ...F0BB BE..
  [0x4000, 0xc90fdaa2, 0x2168c234, true], // pi       = ...C234 C4..
  [0x3ffd, 0x9a209a84, 0xfbcff798, true], // log10(2) = ...F798 8F..
  [0x3ffe, 0xb17217f7, 0xd1cf79ab, true], // ln(2)    = ...79AB C9..
];

/** FLD constant k (1..5) rounded by RC (positive constants: down and chop truncate). */
function ldConst(fpu: Fpu, k: number): void {
  const [se, hi, lo, halfUp] = CONST80[k - 1];
  const overflow = !fpu.isEmpty(7);
  fpu.push(CONSTS[k]);
  if (overflow) return; // the indefinite
  const rc = (fpu.cw >> 10) & 3;
  const up = rc === 0 ? halfUp : rc === 2;
  const p = fpu.top;
  fpu.rawValid[p] = 1;
  fpu.rawSe[p] = se;
  fpu.rawHi[p] = hi | 0;
  fpu.rawLo[p] = up ? (lo + 1) | 0 : lo | 0; // no carry out of the low half for these five
}

/** Partial remainder (FPREM: truncating; FPREM1: IEEE round-to-nearest), exact. */
function prem(fpu: Fpu, ieee: boolean): void {
  clearFlags();
  ldReg(fpu, 0, 0);
  ldReg(fpu, 1, 1);
  const ka = uK[0], kb = uK[1];
  // invalid operands: reduction complete (C1, C2 clear), C0 and C3 as they were
  if (ka >= K_NAN || kb >= K_NAN || kb === K_ZERO || ka === K_INF) fpu.sw &= ~(C1 | C2);
  if (transNaN(fpu, 2, 0)) return; // the larger NaN, made quiet (or the indefinite)
  if (kb === K_ZERO || ka === K_INF) {
    fpu.sw |= IE;
    fpu.set(0, NaN);
    return;
  }
  fpu.sw &= ~(C0 | C1 | C2 | C3);
  if (kb === K_INF || ka === K_ZERO) {
    fpu.sw |= rFlags & 0x2; // a denormal operand is still reported
    return; // ST(0) unchanged
  }
  remX(ieee);
  fpu.sw |= rFlags & 0x12; // DE, UE
  if (remPartial) fpu.sw |= C2;
  else {
    if (remQ & 1) fpu.sw |= C1;
    if (remQ & 2) fpu.sw |= C3;
    if (remQ & 4) fpu.sw |= C0;
  }
  setResult(fpu, 0);
}

// ------------------------------------------------------------------ environment

function fldenv(fpu: Fpu, cpu: Cpu, lin: number, o32: boolean): void {
  const w = o32 ? 4 : 2;
  fpu.cw = cpu.rd16(lin);
  const sw = cpu.rd16((lin + w) | 0);
  fpu.sw = sw & ~0x3800;
  fpu.top = (sw >> 11) & 7;
  fpu.tag = cpu.rd16((lin + 2 * w) | 0);
  fpu.fip = o32 ? cpu.rd32((lin + 3 * w) | 0) : cpu.rd16((lin + 3 * w) | 0);
  fpu.fdp = o32 ? cpu.rd32((lin + 5 * w) | 0) : cpu.rd16((lin + 5 * w) | 0);
}

/**
 * The tag word as FSTENV/FSAVE store it: each non-empty register classified from its contents
 * (00 valid, 01 zero, 10 special: NaN, infinity, denormal, unsupported), empty ones 11.
 */
function tagWord(fpu: Fpu): number {
  let t = 0;
  for (let p = 0; p < 8; p++) {
    let c = 3;
    if (((fpu.tag >> (p * 2)) & 3) !== 3) {
      let se: number, hi: number, lo: number;
      if (fpu.rawValid[p]) [se, hi, lo] = [fpu.rawSe[p], fpu.rawHi[p], fpu.rawLo[p]];
      else {
        numberToF80(fpu.val[p]);
        [se, hi, lo] = [f80Se, f80Hi, f80Lo];
      }
      const e = se & 0x7fff;
      if (e === 0x7fff) c = 2;
      else if (e === 0) c = (hi | lo) === 0 ? 1 : 2;
      else c = hi < 0 ? 0 : 2; // the integer bit clear: an unnormal
    }
    t |= c << (p * 2);
  }
  return t;
}

function fstenv(fpu: Fpu, cpu: Cpu, lin: number, o32: boolean): void {
  const w = o32 ? 4 : 2;
  cpu.probeWrite(lin, 7 * w);
  const put = (
    k: number,
    v: number,
  ) => (o32 ? cpu.wr32((lin + k * w) | 0, v) : cpu.wr16((lin + k * w) | 0, v));
  put(0, fpu.cw | (o32 ? 0xffff0000 : 0));
  put(1, fpu.status() | (o32 ? 0xffff0000 : 0));
  put(2, tagWord(fpu) | (o32 ? 0xffff0000 : 0));
  put(3, fpu.fip);
  put(4, o32 ? (fpu.fcs & 0xffff) | ((fpu.fop & 0x7ff) << 16) : fpu.fcs);
  put(5, fpu.fdp);
  put(6, fpu.fds);
}

/** FXSAVE (0F AE /0) and FXRSTOR (/1) of the 512-byte area. */
export function fxsave(cpu: Cpu, lin: number, restore: boolean): void {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.fault((cpu.cr0 & CR0_EM) !== 0 ? UD : NM);
  if ((lin & 15) !== 0) cpu.fault(13, 0);
  const fpu = fpuOf(cpu);
  if (!restore) {
    cpu.probeWrite(lin, 512);
    cpu.wr16(lin, fpu.cw);
    cpu.wr16((lin + 2) | 0, fpu.status());
    let ftw = 0;
    for (let p = 0; p < 8; p++) if (((fpu.tag >> (p * 2)) & 3) !== 3) ftw |= 1 << p;
    cpu.wr8((lin + 4) | 0, ftw);
    cpu.wr8((lin + 5) | 0, 0);
    cpu.wr16((lin + 6) | 0, fpu.fop);
    cpu.wr32((lin + 8) | 0, fpu.fip);
    cpu.wr32((lin + 12) | 0, fpu.fcs);
    cpu.wr32((lin + 16) | 0, fpu.fdp);
    cpu.wr32((lin + 20) | 0, fpu.fds);
    cpu.wr32((lin + 24) | 0, fpu.mxcsr);
    cpu.wr32((lin + 28) | 0, 0xffff);
    for (let i = 0; i < 8; i++) {
      const a = (lin + 32 + i * 16) | 0;
      st80(fpu, cpu, a, i);
      for (let k = 10; k < 16; k++) cpu.wr8((a + k) | 0, 0);
    }
    for (let k = 0; k < 128; k++) cpu.wr8((lin + 160 + k) | 0, fpu.xmm[k]);
    return;
  }
  const mx = cpu.rd32((lin + 24) | 0);
  if ((mx & ~0xffff) !== 0) cpu.fault(13, 0);
  fpu.cw = cpu.rd16(lin);
  const sw = cpu.rd16((lin + 2) | 0);
  fpu.sw = sw & ~0x3800;
  fpu.top = (sw >> 11) & 7;
  const ftw = cpu.rd8((lin + 4) | 0);
  fpu.fop = cpu.rd16((lin + 6) | 0);
  fpu.fip = cpu.rd32((lin + 8) | 0);
  fpu.fcs = cpu.rd32((lin + 12) | 0) & 0xffff;
  fpu.fdp = cpu.rd32((lin + 16) | 0);
  fpu.fds = cpu.rd32((lin + 20) | 0) & 0xffff;
  fpu.mxcsr = mx;
  const savedTop = fpu.top;
  for (let i = 0; i < 8; i++) {
    const a = (lin + 32 + i * 16) | 0;
    const lo = cpu.rd32(a), hi = cpu.rd32((a + 4) | 0), se = cpu.rd16((a + 8) | 0);
    const p = (savedTop + i) & 7;
    fpu.val[p] = f80ToNumber(se, hi, lo);
    fpu.rawValid[p] = 1;
    fpu.rawLo[p] = lo;
    fpu.rawHi[p] = hi;
    fpu.rawSe[p] = se;
  }
  let tag = 0;
  for (let p = 0; p < 8; p++) {
    const v = fpu.val[p];
    const t = (ftw & (1 << p)) === 0 ? 3 : v === 0 ? 1 : Number.isFinite(v) ? 0 : 2;
    tag |= t << (p * 2);
  }
  fpu.tag = tag;
  for (let k = 0; k < 128; k++) fpu.xmm[k] = cpu.rd8((lin + 160 + k) | 0);
}

function fsave(fpu: Fpu, cpu: Cpu, lin: number, o32: boolean): void {
  const env = o32 ? 28 : 14;
  cpu.probeWrite(lin, env + 80);
  fstenv(fpu, cpu, lin, o32);
  for (let i = 0; i < 8; i++) st80(fpu, cpu, (lin + env + i * 10) | 0, i);
  fpu.reset();
}

function frstor(fpu: Fpu, cpu: Cpu, lin: number, o32: boolean): void {
  const env = o32 ? 28 : 14;
  fldenv(fpu, cpu, lin, o32);
  const tag = fpu.tag;
  for (let i = 0; i < 8; i++) {
    const a = (lin + env + i * 10) | 0;
    const lo = cpu.rd32(a), hi = cpu.rd32((a + 4) | 0), se = cpu.rd16((a + 8) | 0);
    const p = (fpu.top + i) & 7;
    fpu.val[p] = f80ToNumber(se, hi, lo);
    fpu.rawValid[p] = 1;
    fpu.rawLo[p] = lo;
    fpu.rawHi[p] = hi;
    fpu.rawSe[p] = se;
  }
  fpu.tag = tag;
  ferrCheck(cpu, fpu);
}

// ------------------------------------------------------------------ dispatch

/** WAIT/FWAIT: #NM when CR0.MP and CR0.TS are both set. */
export function fpuWait(cpu: Cpu): void {
  if ((cpu.cr0 & (CR0_MP | CR0_TS)) === (CR0_MP | CR0_TS)) cpu.fault(NM);
  const fpu = cpu.fpu as Fpu | null;
  if (fpu !== null) pendingCheck(cpu, fpu);
}

/**
 * An unmasked exception left pending by an earlier x87 instruction is reported when the next
 * waiting x87 instruction (or WAIT) starts: #MF with CR0.NE set. With NE clear (the PC's
 * MS-DOS-compatible mode) the FERR# output is asserted instead (CpuBus.ferr; a PC latches it
 * into IRQ 13, cleared by a write to port 0xF0) and the instruction goes on, as with IGNNE#;
 * FERR# stays active until the error is cleared (FNCLEX, FNINIT, ...).
 */
function pendingCheck(cpu: Cpu, fpu: Fpu): void {
  if ((fpu.sw & 0x3f & ~fpu.cw) === 0) return;
  if ((cpu.cr0 & CR0_NE) !== 0) cpu.fault(MF);
  if (!fpu.ferr) {
    fpu.ferr = true;
    cpu.bus.ferr?.(true);
    cpu.blockExit = true; // the interrupt it raises is taken after this instruction
  }
}

/** The non-waiting control instructions, which never report pending exceptions. */
function noWait(esc: number, reg: number, mem: boolean, rm: number): boolean {
  if (mem) {
    return (esc === 1 && (reg === 6 || reg === 7)) || (esc === 5 && (reg === 6 || reg === 7));
  }
  return (esc === 3 && reg === 4 && (rm === 2 || rm === 3)) || (esc === 7 && reg === 4 && rm === 0);
}

/** An ESC instruction (D8..DF): i.op is the low three opcode bits, ModRM decoded. */
export function fpuEscape(cpu: Cpu, i: Instr): void {
  const fpu = cpu.fpu as Fpu | null;
  if (fpu !== null && (fpu.cw & 0x3f) !== 0x3f && !control(i)) escapeUnmasked(cpu, i, fpu);
  else escape(cpu, i);
  ferrCheck(cpu, cpu.fpu as Fpu);
}

/** The control instructions (environment, control and status word): no numeric exceptions. */
function control(i: Instr): boolean {
  const esc = i.op, reg = i.regN;
  if (i.mem) return (esc === 1 || esc === 5) && reg >= 4;
  return (esc === 3 || esc === 7) && reg === 4;
}

// the register file before an instruction run with unmasked exceptions
const sVal = new Float64Array(8), sRaw = new Uint8Array(8), sLo = new Int32Array(8);
const sHi = new Int32Array(8), sSe = new Uint16Array(8);

/**
 * An instruction run while some exception is unmasked. The invalid-operation, zero-divide and
 * denormal exceptions are detected before the result: unmasked, they leave the registers and
 * the stack as they were (compares still set the condition codes). Unmasked overflow and
 * underflow give an extended result with its exponent biased by 24576 (f80.ts) and suppress a
 * store to memory, with its pop.
 */
function escapeUnmasked(cpu: Cpu, i: Instr, fpu: Fpu): void {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.fault(NM);
  pendingCheck(cpu, fpu); // earlier errors first (escape's own check then finds none)
  const old = fpu.sw & 0x7f, cc = fpu.sw; // the exception flags and SF
  const top = fpu.top, tag = fpu.tag;
  sVal.set(fpu.val);
  sRaw.set(fpu.rawValid);
  sLo.set(fpu.rawLo);
  sHi.set(fpu.rawHi);
  sSe.set(fpu.rawSe);
  fpu.sw &= ~0x7f;
  storeAborted = false;
  setUnmaskedOU((fpu.cw & 0x8) === 0, (fpu.cw & 0x10) === 0);
  try {
    escape(cpu, i);
  } catch (e) {
    fpu.sw |= old;
    throw e;
  } finally {
    setUnmaskedOU(false, false);
  }
  // FLD m32/m64 loads a denormal even with DE unmasked
  const pre = i.mem && reg0(i) ? IE | ZE : IE | DE | ZE;
  const raised = fpu.sw & 0x3f;
  if (storeAborted || (raised & ~fpu.cw & pre) !== 0) {
    // C1 tells a stack overflow (1) from an underflow (0)
    const c1 = (fpu.sw & SF_) !== 0 ? fpu.sw & C1 : 0;
    // condition codes as they were, but a compare's (they tell "unordered" or the order)
    if (!isCompare(i)) fpu.sw = (fpu.sw & ~(C0 | C1 | C2 | C3)) | (cc & (C0 | C1 | C2 | C3));
    fpu.top = top;
    fpu.tag = tag;
    fpu.val.set(sVal);
    fpu.rawValid.set(sRaw);
    fpu.rawLo.set(sLo);
    fpu.rawHi.set(sHi);
    fpu.rawSe.set(sSe);
    // no result, so none of the result's flags (a suppressed store keeps OE/UE, its cause)
    fpu.sw = (fpu.sw & (storeAborted ? ~(PE | C1) : ~(OE | UE | PE | C1))) | c1;
  }
  fpu.sw |= old;
}

/** The compares (FCOM, FCOMP, FCOMPP, FUCOM, FUCOMP, FUCOMPP, FICOM, FICOMP, FTST): C0/C2/C3. */
function isCompare(i: Instr): boolean {
  const esc = i.op, reg = i.regN, rm = i.rmN;
  if (i.mem) return (reg === 2 || reg === 3) && (esc & 1) === 0;
  if (esc === 0) return reg === 2 || reg === 3;
  if (esc === 6) return reg === 3 && rm === 1;
  if (esc === 2) return reg === 5 && rm === 1;
  if (esc === 5) return reg === 4 || reg === 5;
  return esc === 1 && reg === 4 && rm === 4;
}

/** FLD m32 (D9 /0) or FLD m64 (DD /0). */
function reg0(i: Instr): boolean {
  return i.regN === 0 && (i.op === 1 || i.op === 5);
}

/** A store that an unmasked exception suppressed (its pop too). */
let storeAborted = false;

/** Whether `bits` hold an exception that suppresses a store when unmasked (all but PE). */
function storeBlocked(fpu: Fpu, bits: number): boolean {
  if ((bits & ~fpu.cw & (IE | DE | ZE | OE | UE)) === 0) return false;
  storeAborted = true;
  return true;
}

/** FNCLEX, FNINIT, FLDCW, FLDENV/FRSTOR/FXRSTOR ended the error: FERR# goes inactive. */
function ferrCheck(cpu: Cpu, fpu: Fpu): void {
  if (fpu.ferr && (fpu.sw & 0x3f & ~fpu.cw) === 0) {
    fpu.ferr = false;
    cpu.bus.ferr?.(false);
  }
}

function escape(cpu: Cpu, i: Instr): void {
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.fault(NM);
  const fpu = fpuOf(cpu);
  memDenormal = memSnan = false;
  rFlags0 = 0;
  const esc = i.op;
  const reg = i.regN;
  if (!noWait(esc, reg, i.mem, i.rmN)) pendingCheck(cpu, fpu);
  if (i.mem) {
    const lin = i.ea(cpu, i);
    const o32 = i.sz === 2;
    // instructions that do not update FIP/FDP first
    if (esc === 1 && reg >= 4) {
      switch (reg) {
        case 4:
          return fldenv(fpu, cpu, lin, o32);
        case 5:
          fpu.cw = cpu.rd16(lin);
          return;
        case 6:
          return fstenv(fpu, cpu, lin, o32);
        default:
          cpu.wr16(lin, fpu.cw);
          return;
      }
    }
    if (esc === 5 && reg >= 4) {
      if (reg === 4) return frstor(fpu, cpu, lin, o32);
      if (reg === 6) return fsave(fpu, cpu, lin, o32);
      if (reg === 7) {
        cpu.wr16(lin, fpu.status());
        return;
      }
      cpu.fault(UD);
    }
    fpu.fdp = lin;
    fpu.fop = ((0xd8 + esc) << 8) & 0x700;
    switch (esc) {
      case 0:
      case 2:
      case 4:
      case 6: {
        // arithmetic with a memory operand: m32fp, m32int, m64fp, m16int
        const m = esc === 0
          ? ld32f(cpu, lin)
          : esc === 2
          ? cpu.rd32(lin)
          : esc === 4
          ? ld64f(cpu, lin)
          : (cpu.rd16(lin) << 16) >> 16;
        clearFlags();
        ldReg(fpu, 0, 0);
        ldNum(1, m);
        if (reg === 2 || reg === 3) {
          compare(fpu, false);
          if (reg === 3) fpu.pop();
          return;
        }
        arithX(fpu, reg, 0);
        return;
      }
      case 1:
        switch (reg) {
          case 0:
            fpu.push(ld32f(cpu, lin));
            loadedNaN(fpu, true);
            if (memDenormal) fpu.sw |= 0x2; // DE
            if (memSnan) fpu.sw |= IE; // made quiet
            return;
          case 2:
            fstX(fpu, cpu, lin, true);
            return;
          case 3:
            fstX(fpu, cpu, lin, true);
            fpu.pop();
            return;
        }
        break;
      case 3:
        switch (reg) {
          case 0:
            fpu.push(cpu.rd32(lin));
            return;
          case 1: // FISTTP m32 (SSE3): not advertised
            break;
          case 2:
            fistX(fpu, cpu, lin, 4);
            return;
          case 3:
            fistX(fpu, cpu, lin, 4);
            fpu.pop();
            return;
          case 5:
            ld80(fpu, cpu, lin);
            return;
          case 7:
            if (fpu.isEmpty(0)) {
              // stack underflow: the indefinite is stored (FSAVE stores what the register holds)
              fpu.get(0);
              if (storeBlocked(fpu, IE)) return;
              fpu.set(0, NaN);
            }
            st80(fpu, cpu, lin, 0);
            fpu.sw &= ~C1;
            fpu.pop();
            return;
        }
        break;
      case 5:
        switch (reg) {
          case 0:
            fpu.push(ld64f(cpu, lin));
            loadedNaN(fpu, false);
            if (memDenormal) fpu.sw |= 0x2; // DE
            if (memSnan) fpu.sw |= IE; // made quiet
            return;
          case 2:
            fstX(fpu, cpu, lin, false);
            return;
          case 3:
            fstX(fpu, cpu, lin, false);
            fpu.pop();
            return;
        }
        break;
      case 7:
        switch (reg) {
          case 0:
            fpu.push((cpu.rd16(lin) << 16) >> 16);
            return;
          case 2:
            fistX(fpu, cpu, lin, 2);
            return;
          case 3:
            fistX(fpu, cpu, lin, 2);
            fpu.pop();
            return;
          case 4:
            ldBcd(fpu, cpu, lin);
            return;
          case 5:
            ld64i(fpu, cpu, lin);
            return;
          case 6:
            stBcd(fpu, cpu, lin);
            fpu.pop();
            return;
          case 7:
            fistX(fpu, cpu, lin, 8);
            fpu.pop();
            return;
        }
        break;
    }
    cpu.fault(UD);
  }
  const r = i.rmN;
  switch (esc) {
    case 0: { // D8: ST(0) = ST(0) op ST(i)
      clearFlags();
      ldReg(fpu, 0, 0);
      ldReg(fpu, 1, r);
      if (reg === 2 || reg === 3) {
        compare(fpu, false);
        if (reg === 3) fpu.pop();
        return;
      }
      arithX(fpu, reg, 0);
      return;
    }
    case 4: // DC: ST(i) = ST(i) op ST(0) (with SUB/SUBR and DIV/DIVR swapped)
    case 6: { // DE: the same, then pop
      if (esc === 6 && reg === 3) {
        if (r !== 1) cpu.fault(UD);
        compareRegs(fpu, 1, false); // FCOMPP
        fpu.pop();
        fpu.pop();
        return;
      }
      if (reg === 2 || reg === 3) { // DC D0+i / D8+i aliases of FCOM/FCOMP
        compareRegs(fpu, r, false);
        if (reg === 3 || esc === 6) fpu.pop();
        return;
      }
      clearFlags();
      ldReg(fpu, 0, r);
      ldReg(fpu, 1, 0);
      arithX(fpu, reg >= 4 ? reg ^ 1 : reg, r);
      if (esc === 6) fpu.pop();
      return;
    }
    case 1:
      switch (reg) {
        case 0: { // FLD ST(i)
          if (fpu.isEmpty(r)) {
            fpu.get(r);
            fpu.push(NaN);
            return;
          }
          if (!fpu.isEmpty(7)) {
            fpu.push(NaN); // stack overflow: the indefinite
            return;
          }
          fpu.push(0);
          fpu.copy(0, r + 1);
          return;
        }
        case 1: // FXCH
          // an empty register takes part as the indefinite (stack underflow)
          if (fpu.isEmpty(0)) fpu.get(0), fpu.set(0, NaN);
          if (fpu.isEmpty(r)) fpu.get(r), fpu.set(r, NaN);
          fpu.swap(0, r);
          fpu.sw &= ~C1;
          return;
        case 2: // FNOP
          if (r === 0) return;
          break;
        case 4:
          switch (r) {
            case 0: // FCHS
            case 1: { // FABS
              fpu.get(0);
              const p = fpu.top;
              fpu.val[p] = r === 0 ? -fpu.val[p] : Math.abs(fpu.val[p]);
              fpu.rawSe[p] = r === 0 ? fpu.rawSe[p] ^ 0x8000 : fpu.rawSe[p] & 0x7fff;
              fpu.sw &= ~C1;
              return;
            }
            case 4: // FTST
              clearFlags();
              ldReg(fpu, 0, 0);
              ldNum(1, 0);
              compare(fpu, false);
              return;
            case 5:
              fxam(fpu);
              return;
          }
          break;
        case 5:
          if (r < 7) {
            if (r >= 1 && r <= 5) ldConst(fpu, r);
            else fpu.push(CONSTS[r]);
            return;
          }
          break;
        case 6:
        case 7:
          transcendental(fpu, (reg - 6) * 8 + r);
          return;
      }
      break;
    case 2:
      if (reg < 4) { // FCMOVB/E/BE/U
        const c = reg === 0
          ? cpu.cf()
          : reg === 1
          ? cpu.zf()
          : reg === 2
          ? cpu.cf() | cpu.zf()
          : cpu.pf();
        if (c) fpu.copy(0, r);
        return;
      }
      if (reg === 5 && r === 1) { // FUCOMPP
        compareRegs(fpu, 1, true);
        fpu.pop();
        fpu.pop();
        return;
      }
      break;
    case 3:
      if (reg < 4) { // FCMOVNB/NE/NBE/NU
        const c = reg === 0
          ? cpu.cf()
          : reg === 1
          ? cpu.zf()
          : reg === 2
          ? cpu.cf() | cpu.zf()
          : cpu.pf();
        if (!c) fpu.copy(0, r);
        return;
      }
      if (reg === 4) {
        if (r === 2) { // FNCLEX
          fpu.sw &= ~0x80ff;
          return;
        }
        if (r === 3) { // FNINIT
          fpu.reset();
          return;
        }
        if (r === 0 || r === 1 || r === 4) return; // FENI/FDISI/FSETPM: no-ops since the 287
      }
      if (reg === 5 || reg === 6) {
        clearFlags();
        ldReg(fpu, 0, 0);
        ldReg(fpu, 1, r);
        compareFlags(cpu, fpu, reg === 5);
        return;
      }
      break;
    case 5:
      switch (reg) {
        case 0: { // FFREE
          const p = (fpu.top + r) & 7;
          fpu.tag |= 3 << (p * 2);
          return;
        }
        case 2: // FST ST(i)
          fpu.get(0);
          fpu.copy(r, 0);
          return;
        case 3: // FSTP ST(i)
          fpu.get(0);
          fpu.copy(r, 0);
          fpu.pop();
          return;
        case 4:
        case 5:
          compareRegs(fpu, r, true);
          if (reg === 5) fpu.pop();
          return;
      }
      break;
    case 7:
      if (reg === 4 && r === 0) { // FNSTSW AX
        cpu.r16[0] = fpu.status();
        return;
      }
      if (reg === 5 || reg === 6) { // FUCOMIP / FCOMIP
        clearFlags();
        ldReg(fpu, 0, 0);
        ldReg(fpu, 1, r);
        compareFlags(cpu, fpu, reg === 5);
        fpu.pop();
        return;
      }
      if (reg === 0) { // FFREEP
        const p = (fpu.top + r) & 7;
        fpu.tag |= 3 << (p * 2);
        fpu.pop();
        return;
      }
      break;
  }
  cpu.fault(UD);
}

/** D9 E0..FF beyond the constants: k = (reg-6)*8 + rm. */
function transcendental(fpu: Fpu, k: number): void {
  switch (k) {
    case 0: // F2XM1
      f2xm1(fpu);
      return;
    case 1: // FYL2X
      fyl2x(fpu, false);
      return;
    case 2: // FPTAN
      trig(fpu, 2);
      return;
    case 3: // FPATAN
      fpatan(fpu);
      return;
    case 4: { // FXTRACT
      clearFlags();
      ldReg(fpu, 0, 0);
      if (uK[0] === K_FIN && !fpu.isEmpty(7)) {
        fpu.set(0, NaN); // stack overflow: the indefinite in both
        fpu.push(NaN);
        return;
      }
      if (uK[0] === K_FIN) {
        // exact: the exponent (a small integer) replaces ST(0), the significand is pushed
        const sign = uS[0], e = uE[0], h = uH[0], l = uL[0];
        fpu.sw |= rFlags & 0x2; // DE
        fpu.set(0, e);
        fpu.push(0);
        const p = fpu.top;
        fpu.val[p] = f80ToNumber((sign << 15) | 0x3fff, h, l);
        fpu.rawValid[p] = 1;
        fpu.rawSe[p] = (sign << 15) | 0x3fff;
        fpu.rawHi[p] = h | 0;
        fpu.rawLo[p] = l | 0;
        fpu.tag &= ~(3 << (p * 2));
        return;
      }
      if (uK[0] === K_NAN || uK[0] === K_BAD) {
        // the operand's quiet NaN (or the indefinite) in both
        transNaN(fpu, 1, 0);
        fpu.top = (fpu.top - 1) & 7;
        fpu.copy(0, 1);
        return;
      }
      const v = fpu.get(0);
      if (v === 0) {
        fpu.sw |= ZE;
        fpu.set(0, -Infinity);
        fpu.push(v);
        return;
      }
      if (!Number.isFinite(v)) {
        fpu.set(0, Math.abs(v));
        fpu.push(v);
        return;
      }
      const e = Math.floor(Math.log2(Math.abs(v)));
      let sig = v / 2 ** e;
      let ee = e;
      if (Math.abs(sig) >= 2) {
        sig /= 2;
        ee++;
      } else if (Math.abs(sig) < 1) {
        sig *= 2;
        ee--;
      }
      fpu.set(0, ee);
      fpu.push(sig);
      return;
    }
    case 5:
      prem(fpu, true);
      return;
    case 6: // FDECSTP
      fpu.top = (fpu.top - 1) & 7;
      fpu.sw &= ~C1;
      return;
    case 7: // FINCSTP
      fpu.top = (fpu.top + 1) & 7;
      fpu.sw &= ~C1;
      return;
    case 8:
      prem(fpu, false);
      return;
    case 9: // FYL2XP1
      fyl2x(fpu, true);
      return;
    case 10: { // FSQRT
      fpu.sw &= ~C1;
      clearFlags();
      ldReg(fpu, 0, 0);
      const k = uK[0];
      if (k === K_FIN && uS[0] === 0) {
        sqrtX(precision(fpu), (fpu.cw >> 10) & 3);
        applyFlags(fpu);
        setResult(fpu, 0);
        return;
      }
      if (k === K_ZERO || k === K_NAN || (k === K_INF && uS[0] === 0)) return; // unchanged
      fpu.sw |= IE; // negative, -inf, unnormal
      fpu.set(0, NaN);
      return;
    }
    case 11: // FSINCOS
      trig(fpu, 3);
      return;
    case 12: // FRNDINT
      fpu.sw &= ~C1;
      clearFlags();
      ldReg(fpu, 0, 0);
      if (uK[0] === K_FIN) {
        roundInt((fpu.cw >> 10) & 3);
        applyFlags(fpu);
        setResult(fpu, 0);
      } else if (uK[0] === K_BAD) {
        fpu.sw |= IE;
        fpu.set(0, NaN);
      }
      return;
    case 13: { // FSCALE
      fpu.sw &= ~C1;
      clearFlags();
      ldReg(fpu, 0, 0);
      ldReg(fpu, 1, 1);
      if (uK[0] === K_FIN && uK[1] === K_ZERO) {
        fpu.sw |= rFlags & 0x2; // scaled by 2^0: ST(0) as it is (a denormal is no underflow)
        return;
      }
      if (uK[0] === K_FIN && uK[1] === K_FIN) {
        // the scale: ST(1) truncated toward zero (clamped far beyond the exponent range)
        const e = uE[1];
        let n = e < 0 ? 0 : e >= 20 ? 1 << 20 : uH[1] >>> (31 - e);
        if (uS[1] === 1) n = -n;
        scaleX(n, (fpu.cw >> 10) & 3);
        applyFlags(fpu);
        setResult(fpu, 0);
        return;
      }
      if (uK[0] === K_BAD || uK[1] === K_BAD) {
        fpu.sw |= IE;
        fpu.set(0, NaN);
        return;
      }
      if (transNaN(fpu, 2, 0)) return; // the larger NaN, made quiet
      // a zero or an infinity scaled, or a scale of +-inf (0 * 2^inf, inf * 2^-inf invalid);
      // a denormal operand beside an infinity is reported
      fpu.sw |= rFlags & 0x2;
      const sc = uK[1] === K_INF ? repr(1) : 0;
      if (sc === 0 && uK[0] !== K_FIN) return; // ST(0) unchanged
      const v = ldexp(repr(0), sc);
      if (v !== v) fpu.sw |= IE;
      fpu.set(0, v);
      return;
    }
    case 14: // FSIN
      trig(fpu, 0);
      return;
    default: // FCOS
      trig(fpu, 1);
  }
}

// ------------------------------------------------------------------ transcendentals

/** Slot s (K_FIN) as an exact BigInt float. */
function slotBf(s: number): BF {
  return fromParts(uS[s], uE[s], uH[s], uL[s]);
}

/** Rounds v (nonzero) to 64 bits by RC into ST(i), with its flags (PE, UE, OE, C1). */
function setRounded(fpu: Fpu, i: number, v: BF, exact = false): void {
  round80(v, (fpu.cw >> 10) & 3, exact);
  applyFlags(fpu);
  // as the hardware: precision is flagged even for an exact result, underflow for a tiny one
  fpu.sw |= PE | ((rSe & 0x7fff) === 0 && (rHi | rLo) !== 0 ? UE : 0);
  setResult(fpu, i);
}

/**
 * NaN and unsupported operands of a transcendental with `n` operands in slots 0..n-1: writes
 * the quiet NaN (the one with the larger significand) or the indefinite (IE) to ST(dst) and
 * returns true; false when every operand is a number (zero, finite or infinite).
 */
function transNaN(fpu: Fpu, n: number, dst: number): boolean {
  let bad = false, nan = -1;
  for (let s = 0; s < n; s++) {
    if (uK[s] === K_BAD) bad = true;
    else if (uK[s] === K_NAN) {
      if ((uH[s] & 0x40000000) === 0) fpu.sw |= IE;
      nan = nan < 0 ? s : nanPick(nan, s);
    }
  }
  if (bad) {
    fpu.sw |= IE;
    fpu.set(dst, NaN);
    return true;
  }
  if (nan >= 0) {
    setNaN(fpu, dst, nan);
    return true;
  }
  return false;
}

/**
 * FSIN (0), FCOS (1), FPTAN (2), FSINCOS (3): |x| >= 2^63 sets C2 and leaves ST(0) alone;
 * otherwise the reduction by the 66-bit pi and an extended-precision evaluation (f80trans.ts).
 * FPTAN pushes 1; FSINCOS leaves sin in ST(0)'s place and pushes cos.
 */
function trig(fpu: Fpu, op: number): void {
  fpu.sw &= ~(C1 | C2);
  clearFlags();
  ldReg(fpu, 0, 0);
  const two = op >= 2;
  if (two && !fpu.isEmpty(7)) {
    // stack overflow: ST(0) and the new top become the indefinite
    fpu.sw |= IE | SF_ | C1;
    fpu.set(0, NaN);
    fpu.top = (fpu.top - 1) & 7;
    fpu.set(0, NaN);
    return;
  }
  if (uK[0] === K_FIN && uE[0] >= 63) {
    fpu.sw |= C2; // out of range: the operand is left as it is
    return;
  }
  if (uK[0] === K_INF) {
    uK[0] = K_BAD; // sin/cos/tan of an infinity is invalid
  }
  if (transNaN(fpu, 1, 0)) {
    if (two) {
      fpu.top = (fpu.top - 1) & 7;
      fpu.copy(0, 1);
    }
    return;
  }
  if (uK[0] === K_ZERO) {
    // sin(+-0) = tan(+-0) = +-0, cos(+-0) = 1
    if (op === 1) fpu.set(0, 1);
    if (two) {
      fpu.top = (fpu.top - 1) & 7;
      fpu.set(0, 1);
    }
    return;
  }
  const flags0 = rFlags & 0x2; // DE
  const [s, c] = sinCos(slotBf(0), op === 0 ? 1 : op === 1 ? 2 : 3);
  if (op === 0) setRounded(fpu, 0, s);
  else if (op === 1) setRounded(fpu, 0, c);
  else if (op === 2) {
    setRounded(fpu, 0, bfDiv(s, c));
    fpu.top = (fpu.top - 1) & 7;
    fpu.set(0, 1);
  } else {
    setRounded(fpu, 0, s);
    const f = rFlags;
    clearFlags();
    fpu.top = (fpu.top - 1) & 7;
    setRounded(fpu, 0, c);
    fpu.sw |= (f & ~C1) | flags0;
  }
}

/** FPATAN: ST(1) = atan2(ST(1), ST(0)), pop. */
function fpatan(fpu: Fpu): void {
  fpu.sw &= ~C1;
  clearFlags();
  ldReg(fpu, 0, 0); // x
  ldReg(fpu, 1, 1); // y
  if (!transNaN(fpu, 2, 1)) {
    if (uK[0] === K_FIN && uK[1] === K_FIN) setRounded(fpu, 1, atan2(slotBf(1), slotBf(0)));
    else {
      // zeros and infinities: a multiple of pi/4 with atan2's signs (finite values as +-1)
      const q = Math.round(Math.atan2(repr(1), repr(0)) / (Math.PI / 4));
      fpu.sw |= rFlags & 0x2;
      if (q === 0) fpu.set(1, Math.atan2(repr(1), repr(0)));
      else setRounded(fpu, 1, bfMul(bf(q), PI_4));
    }
  }
  fpu.pop();
}

const PI_4: BF = bfMul(PI, fromParts(0, -2, 0x80000000 | 0, 0));

/** F2XM1: ST(0) = 2^ST(0) - 1 (defined for -1 <= x <= 1; computed beyond too). */
function f2xm1(fpu: Fpu): void {
  fpu.sw &= ~C1;
  clearFlags();
  ldReg(fpu, 0, 0);
  if (transNaN(fpu, 1, 0)) return;
  if (uK[0] === K_ZERO) return;
  if (uK[0] === K_INF) {
    fpu.set(0, uS[0] ? -1 : Infinity);
    return;
  }
  if (uE[0] >= 0 && (uE[0] > 0 || uH[0] !== 0x80000000 || uL[0] !== 0)) {
    // beyond the domain (|x| > 1) the hardware leaves ST(0) as it is, flagging precision
    fpu.sw |= PE;
    return;
  }
  // 2^x - 1 of x = +-1 is exact
  setRounded(fpu, 0, exp2m1(slotBf(0)), uE[0] === 0);
}

/**
 * FYL2X: ST(1) = ST(1) * log2(ST(0)), pop; FYL2XP1 (p1): ST(1) = ST(1) * log2(ST(0) + 1), pop.
 * Zeros, infinities, negative and out-of-domain operands as the SDM's tables give them.
 */
function fyl2x(fpu: Fpu, p1: boolean): void {
  fpu.sw &= ~C1;
  clearFlags();
  ldReg(fpu, 0, 0); // x
  ldReg(fpu, 1, 1); // y
  if (transNaN(fpu, 2, 1)) {
    fpu.pop();
    return;
  }
  const de = rFlags & 0x2; // DE, unless the operands are invalid
  const kx = uK[0], ky = uK[1], sx = uS[0], sy = uS[1];
  // the logarithm's sign (-1, 0 for log = +-0, 1), or NaN when the operand is out of range
  let lg: number;
  let lgZero = 0; // the sign of a zero logarithm
  if (p1) {
    if (kx === K_ZERO) (lg = 0), (lgZero = sx);
    else if (kx === K_INF) lg = sx ? NaN : Infinity;
    else {
      // x < -1 is invalid; x = -1 is log(0)
      const c = uE[0] > 0 || (uE[0] === 0 && ((uH[0] & 0x7fffffff) | uL[0]) !== 0);
      lg = sx && c ? NaN : sx && uE[0] === 0 ? -Infinity : sx ? -1 : 1;
    }
  } else {
    if (kx === K_ZERO) lg = -Infinity;
    else if (sx) lg = NaN;
    else if (kx === K_INF) lg = Infinity;
    else if (uE[0] === 0 && uH[0] === 0x80000000 && uL[0] === 0) lg = 0;
    else lg = uE[0] >= 0 ? 1 : -1;
  }
  if (lg !== lg) {
    fpu.sw |= IE;
    fpu.set(1, NaN);
    fpu.pop();
    return;
  }
  fpu.sw |= de;
  if (lg === -Infinity || lg === Infinity) {
    // log(0) or log(inf): y = 0 is invalid; a finite y over log(0) divides by zero
    if (ky === K_ZERO) {
      fpu.sw |= IE;
      fpu.set(1, NaN);
    } else {
      // a finite y over log(0) divides by zero (a denormal y is not reported then)
      if (lg === -Infinity && ky === K_FIN) fpu.sw = (fpu.sw & ~0x2) | ZE;
      fpu.set(1, (sy ? -1 : 1) * lg);
    }
    fpu.pop();
    return;
  }
  if (ky === K_INF) {
    if (lg === 0) {
      fpu.sw |= IE;
      fpu.set(1, NaN);
    } else fpu.set(1, (sy ? -1 : 1) * lg * Infinity);
    fpu.pop();
    return;
  }
  if (ky === K_ZERO || lg === 0) {
    fpu.set(1, (sy ^ (lg < 0 ? 1 : lg === 0 ? lgZero : 0)) ? -0 : 0);
    fpu.pop();
    return;
  }
  const x = slotBf(0);
  const l = p1 ? log2p1(x) : log2(x);
  // log2 of a power of two is exact
  const exact = !p1 && uH[0] === 0x80000000 && uL[0] === 0;
  setRounded(fpu, 1, bfMul(slotBf(1), l), exact);
  fpu.pop();
}
