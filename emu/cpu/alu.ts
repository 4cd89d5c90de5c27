/**
 * Integer arithmetic shared by the handlers: the eight ALU operations, shifts and rotates,
 * 32x32->64 multiply and 64/32 divide done in 16-bit pieces (no BigInt).
 * @module
 */

import type { Cpu } from "./cpu.ts";
import {
  AF,
  BITS,
  CF,
  LOP_ADC,
  LOP_ADD,
  LOP_DEC,
  LOP_EAGER,
  LOP_INC,
  LOP_LOGIC,
  LOP_RESULT,
  LOP_SBB,
  LOP_SUB,
  MASK,
  OF,
  SIGN,
} from "./flags.ts";

/** Truncates v to operand size sz (dword results stay int32). */
export function trunc(sz: number, v: number): number {
  return sz === 2 ? v | 0 : v & MASK[sz];
}

/** ALU operation op (0 ADD, 1 OR, 2 ADC, 3 SBB, 4 AND, 5 SUB, 6 XOR, 7 CMP). Sets lazy flags. */
export function alu(cpu: Cpu, op: number, a: number, b: number, sz: number): number {
  let r: number;
  switch (op) {
    case 0:
      r = a + b;
      cpu.lop = LOP_ADD;
      break;
    case 1:
      r = a | b;
      cpu.lop = LOP_LOGIC;
      break;
    case 2: {
      const c = cpu.cf();
      r = a + b + c;
      cpu.lcin = c;
      cpu.lop = LOP_ADC;
      break;
    }
    case 3: {
      const c = cpu.cf();
      r = a - b - c;
      cpu.lcin = c;
      cpu.lop = LOP_SBB;
      break;
    }
    case 4:
      r = a & b;
      cpu.lop = LOP_LOGIC;
      break;
    case 6:
      r = a ^ b;
      cpu.lop = LOP_LOGIC;
      break;
    default:
      r = a - b;
      cpu.lop = LOP_SUB;
  }
  cpu.la = a;
  cpu.lb = b;
  cpu.lr = r;
  cpu.lsz = sz;
  return sz === 2 ? r | 0 : r & MASK[sz];
}

export function inc(cpu: Cpu, a: number, sz: number): number {
  cpu.lcin = cpu.cf();
  cpu.lop = LOP_INC;
  cpu.la = a;
  cpu.lb = 1;
  cpu.lr = a + 1;
  cpu.lsz = sz;
  return trunc(sz, a + 1);
}

export function dec(cpu: Cpu, a: number, sz: number): number {
  cpu.lcin = cpu.cf();
  cpu.lop = LOP_DEC;
  cpu.la = a;
  cpu.lb = 1;
  cpu.lr = a - 1;
  cpu.lsz = sz;
  return trunc(sz, a - 1);
}

/** Records a result whose ZF/SF/PF follow from r and whose CF/AF/OF are given. */
export function setResult(cpu: Cpu, r: number, sz: number, cfafof: number): void {
  cpu.lop = LOP_RESULT;
  cpu.lr = r;
  cpu.lsz = sz;
  cpu.lcin = cfafof;
}

/**
 * Sets CF and OF only (rotates), keeping the other flags. Lazily when it can: every lazy record
 * derives ZF/SF/PF from its result alone, so a LOP_RESULT record over the same result, with CF,
 * OF and the AF evaluated now, keeps them (hashing code rotates between ALU operations; making
 * all six flags eager each time cost more than the rotate).
 */
function setCfOf(cpu: Cpu, cf: number, of: number): void {
  if (cpu.lop === LOP_EAGER) {
    cpu.eflags = (cpu.eflags & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0);
    return;
  }
  cpu.lcin = (cf ? CF : 0) | cpu.af() | (of ? OF : 0);
  cpu.lop = LOP_RESULT;
}

/**
 * Group-2 shift/rotate op (0 ROL, 1 ROR, 2 RCL, 3 RCR, 4 SHL, 5 SHR, 6 SAL, 7 SAR) of v by
 * count (already masked to 5 bits). Returns the result; count 0 changes nothing.
 */
export function shift(cpu: Cpu, op: number, v: number, count: number, sz: number): number {
  if (count === 0) return v;
  const bits = BITS[sz];
  const mask = MASK[sz];
  const sign = SIGN[sz];
  v = v & mask;
  switch (op) {
    case 0: {
      const c = count & (bits - 1);
      const r = c === 0 ? v : ((v << c) | (v >>> (bits - c))) & mask;
      const cf = r & 1;
      setCfOf(cpu, cf, ((r & sign) !== 0 ? 1 : 0) ^ cf);
      return trunc(sz, r);
    }
    case 1: {
      const c = count & (bits - 1);
      const r = c === 0 ? v : ((v >>> c) | (v << (bits - c))) & mask;
      const msb = (r & sign) !== 0 ? 1 : 0;
      const msb2 = (r & (sign >>> 1)) !== 0 ? 1 : 0;
      setCfOf(cpu, msb, msb ^ msb2);
      return trunc(sz, r);
    }
    case 2: {
      let c = count;
      if (sz < 2) c = c % (bits + 1);
      let r = v, cf = cpu.cf();
      for (let k = 0; k < c; k++) {
        const out = (r & sign) !== 0 ? 1 : 0;
        r = ((r << 1) | cf) & mask;
        cf = out;
      }
      setCfOf(cpu, cf, ((r & sign) !== 0 ? 1 : 0) ^ cf);
      return trunc(sz, r);
    }
    case 3: {
      let c = count;
      if (sz < 2) c = c % (bits + 1);
      let r = v >>> 0, cf = cpu.cf();
      let of = 0;
      for (let k = 0; k < c; k++) {
        const out = r & 1;
        if (k === c - 1) of = ((r & sign) !== 0 ? 1 : 0) ^ cf;
        r = ((r >>> 1) | (cf ? sign : 0)) & mask;
        cf = out;
      }
      if (c === 0) of = ((r & sign) !== 0 ? 1 : 0) ^ ((r & (sign >>> 1)) !== 0 ? 1 : 0);
      setCfOf(cpu, cf, of);
      return trunc(sz, r);
    }
    case 4:
    case 6: {
      const r = count < 32 ? (v << count) & mask : 0;
      const cf = count <= bits ? (v >>> (bits - count)) & 1 : 0;
      const of = ((r & sign) !== 0 ? 1 : 0) ^ cf;
      setResult(cpu, r, sz, (cf ? CF : 0) | (of ? OF : 0) | AF);
      return trunc(sz, r);
    }
    case 5: {
      const r = count < 32 ? v >>> count : 0;
      const cf = count <= bits ? (v >>> (count - 1)) & 1 : 0;
      const of = count === 1 ? ((v & sign) !== 0 ? 1 : 0) : 0;
      setResult(cpu, r, sz, (cf ? CF : 0) | (of ? OF : 0) | AF);
      return trunc(sz, r);
    }
    default: {
      const sv = (v << (32 - bits)) >> (32 - bits);
      const c = count > bits ? bits : count;
      const r = (c >= 32 ? sv >> 31 : sv >> c) & mask;
      const cf = (c >= 32 ? sv >> 31 : sv >> (c - 1)) & 1;
      setResult(cpu, r, sz, (cf ? CF : 0) | AF);
      return trunc(sz, r);
    }
  }
}

/** Output of mul32/div64 (no allocation). */
export let mulHi = 0, mulLo = 0;

/** Unsigned 32x32 -> 64 into mulHi:mulLo (int32 halves). */
export function mulU32(a: number, b: number): void {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl, lh = al * bh, hl = ah * bl; // each < 2^32
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  mulLo = Math.imul(a, b);
  mulHi = (ah * bh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) | 0;
}

/** Signed 32x32 -> 64 into mulHi:mulLo. */
export function mulS32(a: number, b: number): void {
  mulU32(a, b);
  let hi = mulHi;
  if ((a | 0) < 0) hi = (hi - b) | 0;
  if ((b | 0) < 0) hi = (hi - a) | 0;
  mulHi = hi;
}

/** IMUL r, r/m (and the three-operand form) at 16 or 32 bits: the truncated product; sets flags. */
export function imul2(cpu: Cpu, a: number, b: number, sz: number): number {
  if (sz === 1) {
    const r = ((a << 16) >> 16) * ((b << 16) >> 16);
    setResult(cpu, r & 0xffff, 1, r !== ((r << 16) >> 16) ? CF | OF : 0);
    return r & 0xffff;
  }
  mulS32(a, b);
  setResult(cpu, mulLo, 2, mulHi !== mulLo >> 31 ? CF | OF : 0);
  return mulLo;
}

export let divQ = 0, divR = 0;

/** Unsigned (hi:lo) / d; false on divide error (d = 0 or quotient > 32 bits). */
export function divU64(hi: number, lo: number, d: number): boolean {
  hi >>>= 0;
  lo >>>= 0;
  d >>>= 0;
  if (d === 0 || hi >= d) return false;
  const x1 = hi * 65536 + (lo >>> 16);
  const q1 = Math.floor(x1 / d);
  const r1 = x1 - q1 * d;
  const x0 = r1 * 65536 + (lo & 0xffff);
  const q0 = Math.floor(x0 / d);
  divQ = q1 * 65536 + q0;
  divR = x0 - q0 * d;
  return true;
}

/** Signed (hi:lo) / d; false on divide error. divQ/divR hold int32 results. */
export function divS64(hi: number, lo: number, d: number): boolean {
  hi |= 0;
  lo |= 0;
  d |= 0;
  if (d === 0) return false;
  const neg = hi < 0;
  let mh = hi, ml = lo;
  if (neg) {
    ml = (~lo + 1) | 0;
    mh = (~hi + (lo === 0 ? 1 : 0)) | 0;
  }
  const ad = d < 0 ? -d : d;
  if (!divU64(mh, ml, ad)) return false;
  const qneg = neg !== d < 0;
  if (qneg ? divQ > 0x80000000 : divQ > 0x7fffffff) return false;
  divQ = qneg ? -divQ | 0 : divQ | 0;
  divR = neg ? -divR | 0 : divR | 0;
  return true;
}
