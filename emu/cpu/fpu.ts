/**
 * The x87 FPU: the D8..DF escape opcodes, WAIT, FXSAVE/FXRSTOR.
 *
 * Registers hold IEEE doubles for arithmetic. A value loaded from an 80-bit memory operand keeps
 * its exact 80-bit image alongside (until an operation replaces it), so FLD m80 / FSTP m80 and
 * register moves (FLD ST(i), FXCH, FST ST(i)) round-trip all 64 mantissa bits. Arithmetic rounds
 * to double precision (53 bits), not to the 64 bits of extended precision: a known limitation.
 * Exceptions set their status-word flags; an unmasked one raises #MF at the next waiting x87
 * instruction when CR0.NE is set (IRQ 13, the CR0.NE=0 route, is not modelled).
 * @module
 */

import { CR0_EM, CR0_MP, CR0_NE, CR0_TS, MF, NM, UD } from "./consts.ts";
import type { Cpu } from "./cpu.ts";
import type { Instr } from "./instr.ts";

// status word bits
const IE = 0x1, ZE = 0x4, PE = 0x20, SF_ = 0x40, ES = 0x80;
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

  /** Writes ST(i) (not from an 80-bit image). */
  set(i: number, v: number): void {
    const p = (this.top + i) & 7;
    this.val[p] = v;
    this.rawValid[p] = 0;
    this.setTag(p, v);
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

/** Rounds by the control word's RC field. */
function roundRc(fpu: Fpu, v: number): number {
  switch ((fpu.cw >> 10) & 3) {
    case 0: { // nearest even
      const r = Math.round(v);
      return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
    }
    case 1:
      return Math.floor(v);
    case 2:
      return Math.ceil(v);
    default:
      return Math.trunc(v);
  }
}

// ------------------------------------------------------------------ memory operands

function ld32f(cpu: Cpu, lin: number): number {
  scratch.setInt32(0, cpu.rd32(lin), true);
  return scratch.getFloat32(0, true);
}
function ld64f(cpu: Cpu, lin: number): number {
  scratch.setInt32(0, cpu.rd32(lin), true);
  scratch.setInt32(4, cpu.rd32((lin + 4) | 0), true);
  return scratch.getFloat64(0, true);
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
 * FISTP m64 of a register holding an exact 80-bit image with |value| >= 2^53 (beyond a double's
 * integers): converts from the image. Returns false when not applicable.
 */
function st64iExact(fpu: Fpu, cpu: Cpu, lin: number): boolean {
  const p = fpu.top & 7;
  if (!fpu.rawValid[p] || Math.abs(fpu.val[p]) < 2 ** 53) return false;
  const e = (fpu.rawSe[p] & 0x7fff) - 16383;
  if (e < 53 || e > 62) return false; // out of range: the double path reports it
  let hi = fpu.rawHi[p] >>> 0, lo = fpu.rawLo[p] >>> 0;
  const sh = 63 - e; // 1..10 fraction bits
  const frac = lo & ((1 << sh) - 1);
  lo = ((lo >>> sh) | (hi << (32 - sh))) >>> 0;
  hi = hi >>> sh;
  const neg = (fpu.rawSe[p] & 0x8000) !== 0;
  if (frac !== 0) {
    fpu.sw |= PE;
    const half = 1 << (sh - 1);
    const rc = (fpu.cw >> 10) & 3;
    const up = rc === 0
      ? frac > half || (frac === half && (lo & 1) !== 0)
      : rc === 1
      ? neg
      : rc === 2
      ? !neg
      : false;
    if (up) {
      lo = (lo + 1) >>> 0;
      if (lo === 0) hi = (hi + 1) >>> 0;
    }
  }
  if (neg) {
    lo = (~lo + 1) >>> 0;
    hi = (~hi + (lo === 0 ? 1 : 0)) >>> 0;
  }
  cpu.probeWrite(lin, 8);
  cpu.wr32(lin, lo | 0);
  cpu.wr32((lin + 4) | 0, hi | 0);
  return true;
}

/** Integer store with the x87's overflow rule (out of range: the "integer indefinite"). */
function stInt(fpu: Fpu, cpu: Cpu, lin: number, v: number, bytes: number): void {
  let r = roundRc(fpu, v);
  const lim = bytes === 2 ? 32768 : bytes === 4 ? 2147483648 : 9223372036854775808;
  if (!(r >= -lim && r < lim)) {
    fpu.sw |= IE;
    r = -lim;
  } else if (r !== v) fpu.sw |= PE;
  if (bytes === 2) cpu.wr16(lin, r & 0xffff);
  else if (bytes === 4) cpu.wr32(lin, r | 0);
  else {
    cpu.probeWrite(lin, 8);
    const hi = Math.floor(r / 4294967296);
    const lo = r - hi * 4294967296;
    cpu.wr32(lin, lo | 0);
    cpu.wr32((lin + 4) | 0, hi | 0);
  }
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

function ldBcd(cpu: Cpu, lin: number): number {
  let v = 0;
  for (let k = 8; k >= 0; k--) {
    const b = cpu.rd8((lin + k) | 0);
    v = v * 100 + (b >> 4) * 10 + (b & 15);
  }
  return (cpu.rd8((lin + 9) | 0) & 0x80) !== 0 ? -v : v;
}

function stBcd(fpu: Fpu, cpu: Cpu, lin: number, v: number): void {
  cpu.probeWrite(lin, 10);
  let r = Math.abs(roundRc(fpu, v));
  if (!(r < 1e18)) {
    fpu.sw |= IE;
    for (let k = 0; k < 7; k++) cpu.wr8((lin + k) | 0, 0);
    cpu.wr8((lin + 7) | 0, 0xc0);
    cpu.wr8((lin + 8) | 0, 0xff);
    cpu.wr8((lin + 9) | 0, 0xff);
    return;
  }
  for (let k = 0; k < 9; k++) {
    const d = r % 100;
    r = Math.floor(r / 100);
    cpu.wr8((lin + k) | 0, ((Math.floor(d / 10)) << 4) | (d % 10));
  }
  cpu.wr8((lin + 9) | 0, v < 0 || Object.is(v, -0) ? 0x80 : 0);
}

// ------------------------------------------------------------------ arithmetic

function arith(fpu: Fpu, op: number, a: number, b: number): number {
  const r = arith0(fpu, op, a, b);
  // an invalid operation (inf - inf, 0 * inf, ...) made a NaN out of numbers
  if (Number.isNaN(r) && !Number.isNaN(a) && !Number.isNaN(b)) fpu.sw |= IE;
  return r;
}

function arith0(fpu: Fpu, op: number, a: number, b: number): number {
  switch (op) {
    case 0:
      return a + b;
    case 1:
      return a * b;
    case 4:
      return a - b;
    case 5:
      return b - a;
    case 6:
      if (b === 0 && a !== 0 && !Number.isNaN(a)) fpu.sw |= ZE;
      return a / b;
    default:
      if (a === 0 && b !== 0 && !Number.isNaN(b)) fpu.sw |= ZE;
      return b / a;
  }
}

/** FCOM-style compare into C0/C2/C3. */
function compare(fpu: Fpu, a: number, b: number, unordered: boolean): void {
  fpu.sw &= ~(C0 | C1 | C2 | C3);
  if (Number.isNaN(a) || Number.isNaN(b)) {
    if (!unordered) fpu.sw |= IE;
    fpu.sw |= C0 | C2 | C3;
  } else if (a < b) fpu.sw |= C0;
  else if (a === b) fpu.sw |= C3;
}

/** FCOMI-style compare into EFLAGS ZF/PF/CF. */
function compareFlags(cpu: Cpu, fpu: Fpu, a: number, b: number, unordered: boolean): void {
  cpu.materialize();
  let f = cpu.eflags & ~(0x1 | 0x4 | 0x40 | 0x10 | 0x80 | 0x800);
  if (Number.isNaN(a) || Number.isNaN(b)) {
    if (!unordered) fpu.sw |= IE;
    f |= 0x1 | 0x4 | 0x40;
  } else if (a < b) f |= 0x1;
  else if (a === b) f |= 0x40;
  cpu.eflags = f;
}

function fxam(fpu: Fpu): void {
  fpu.sw &= ~(C0 | C1 | C2 | C3);
  const p = fpu.top & 7;
  const v = fpu.val[p];
  if (
    Object.is(v, -0) || v < 0 || (Number.isNaN(v) && fpu.rawValid[p] && (fpu.rawSe[p] & 0x8000))
  ) {
    fpu.sw |= C1;
  }
  if (fpu.isEmpty(0)) fpu.sw |= C0 | C3;
  else if (Number.isNaN(v)) fpu.sw |= C0;
  else if (!Number.isFinite(v)) fpu.sw |= C0 | C2;
  else if (v === 0) fpu.sw |= C3;
  else fpu.sw |= C2;
}

const CONSTS = [1, Math.log2(10), Math.LOG2E, Math.PI, Math.LOG10E / Math.LOG2E, Math.LN2, 0];

/** Partial remainder (FPREM: truncating; FPREM1: IEEE round-to-nearest). */
function prem(fpu: Fpu, ieee: boolean): void {
  const a = fpu.get(0), b = fpu.get(1);
  fpu.sw &= ~(C0 | C1 | C2 | C3);
  if (b === 0 || !Number.isFinite(a) || Number.isNaN(b)) {
    fpu.sw |= IE;
    fpu.set(0, NaN);
    return;
  }
  const qf = a / b;
  const q = ieee
    ? Math.round(qf) - (Math.abs(qf % 1) === 0.5 && Math.round(qf) % 2 ? 1 : 0)
    : Math.trunc(qf);
  const r = a - q * b;
  const qa = Math.abs(q);
  if (qa & 1) fpu.sw |= C1;
  if (qa & 2) fpu.sw |= C3;
  if (qa & 4) fpu.sw |= C0;
  fpu.set(0, Number.isFinite(r) ? r : a % b);
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

function fstenv(fpu: Fpu, cpu: Cpu, lin: number, o32: boolean): void {
  const w = o32 ? 4 : 2;
  cpu.probeWrite(lin, 7 * w);
  const put = (
    k: number,
    v: number,
  ) => (o32 ? cpu.wr32((lin + k * w) | 0, v) : cpu.wr16((lin + k * w) | 0, v));
  put(0, fpu.cw | (o32 ? 0xffff0000 : 0));
  put(1, fpu.status() | (o32 ? 0xffff0000 : 0));
  put(2, fpu.tag | (o32 ? 0xffff0000 : 0));
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
 * waiting x87 instruction (or WAIT) starts: #MF with CR0.NE set. With NE clear a PC would raise
 * IRQ 13 through the interrupt controller, which the CPU's bus does not model: nothing happens.
 */
function pendingCheck(cpu: Cpu, fpu: Fpu): void {
  if ((fpu.sw & 0x3f & ~fpu.cw) !== 0 && (cpu.cr0 & CR0_NE) !== 0) cpu.fault(MF);
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
  if ((cpu.cr0 & (CR0_EM | CR0_TS)) !== 0) cpu.fault(NM);
  const fpu = fpuOf(cpu);
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
        const a = fpu.get(0);
        if (reg === 2 || reg === 3) {
          compare(fpu, a, m, false);
          if (reg === 3) fpu.pop();
          return;
        }
        fpu.set(0, arith(fpu, reg, a, m));
        return;
      }
      case 1:
        switch (reg) {
          case 0:
            fpu.push(ld32f(cpu, lin));
            return;
          case 2:
            st32f(cpu, lin, fpu.get(0));
            return;
          case 3:
            st32f(cpu, lin, fpu.get(0));
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
            stInt(fpu, cpu, lin, fpu.get(0), 4);
            return;
          case 3:
            stInt(fpu, cpu, lin, fpu.get(0), 4);
            fpu.pop();
            return;
          case 5:
            ld80(fpu, cpu, lin);
            return;
          case 7:
            st80(fpu, cpu, lin, 0);
            fpu.pop();
            return;
        }
        break;
      case 5:
        switch (reg) {
          case 0:
            fpu.push(ld64f(cpu, lin));
            return;
          case 2:
            st64f(cpu, lin, fpu.get(0));
            return;
          case 3:
            st64f(cpu, lin, fpu.get(0));
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
            stInt(fpu, cpu, lin, fpu.get(0), 2);
            return;
          case 3:
            stInt(fpu, cpu, lin, fpu.get(0), 2);
            fpu.pop();
            return;
          case 4:
            fpu.push(ldBcd(cpu, lin));
            return;
          case 5:
            ld64i(fpu, cpu, lin);
            return;
          case 6:
            stBcd(fpu, cpu, lin, fpu.get(0));
            fpu.pop();
            return;
          case 7:
            if (!st64iExact(fpu, cpu, lin)) stInt(fpu, cpu, lin, fpu.get(0), 8);
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
      const a = fpu.get(0), b = fpu.get(r);
      if (reg === 2 || reg === 3) {
        compare(fpu, a, b, false);
        if (reg === 3) fpu.pop();
        return;
      }
      fpu.set(0, arith(fpu, reg, a, b));
      return;
    }
    case 4: // DC: ST(i) = ST(i) op ST(0) (with SUB/SUBR and DIV/DIVR swapped)
    case 6: { // DE: the same, then pop
      if (esc === 6 && reg === 3) {
        if (r !== 1) cpu.fault(UD);
        compare(fpu, fpu.get(0), fpu.get(1), false); // FCOMPP
        fpu.pop();
        fpu.pop();
        return;
      }
      if (reg === 2 || reg === 3) { // DC D0+i / D8+i aliases of FCOM/FCOMP
        compare(fpu, fpu.get(0), fpu.get(r), false);
        if (reg === 3 || esc === 6) fpu.pop();
        return;
      }
      const a = fpu.get(r), b = fpu.get(0);
      const op = reg >= 4 ? reg ^ 1 : reg;
      fpu.set(r, arith(fpu, op, a, b));
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
          fpu.push(0);
          fpu.copy(0, r + 1);
          return;
        }
        case 1: // FXCH
          fpu.get(0);
          fpu.get(r);
          fpu.swap(0, r);
          return;
        case 2: // FNOP
          if (r === 0) return;
          break;
        case 4:
          switch (r) {
            case 0:
              fpu.set(0, -fpu.get(0));
              return;
            case 1:
              fpu.set(0, Math.abs(fpu.get(0)));
              return;
            case 4:
              compare(fpu, fpu.get(0), 0, false);
              return;
            case 5:
              fxam(fpu);
              return;
          }
          break;
        case 5:
          if (r < 7) {
            fpu.push(CONSTS[r]);
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
        compare(fpu, fpu.get(0), fpu.get(1), true);
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
        compareFlags(cpu, fpu, fpu.get(0), fpu.get(r), reg === 5);
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
          compare(fpu, fpu.get(0), fpu.get(r), true);
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
        compareFlags(cpu, fpu, fpu.get(0), fpu.get(r), reg === 5);
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
      fpu.set(0, 2 ** fpu.get(0) - 1);
      return;
    case 1: { // FYL2X
      const x = fpu.get(0), y = fpu.get(1);
      if (x === 0) fpu.sw |= ZE;
      fpu.set(1, y * Math.log2(x));
      fpu.pop();
      return;
    }
    case 2: { // FPTAN
      fpu.set(0, Math.tan(fpu.get(0)));
      fpu.sw &= ~C2;
      fpu.push(1);
      return;
    }
    case 3: { // FPATAN
      const x = fpu.get(0), y = fpu.get(1);
      fpu.set(1, Math.atan2(y, x));
      fpu.pop();
      return;
    }
    case 4: { // FXTRACT
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
    case 9: { // FYL2XP1
      const x = fpu.get(0), y = fpu.get(1);
      fpu.set(1, y * Math.log2(1 + x));
      fpu.pop();
      return;
    }
    case 10: { // FSQRT
      const v = fpu.get(0);
      if (v < 0) fpu.sw |= IE;
      fpu.set(0, Math.sqrt(v));
      return;
    }
    case 11: { // FSINCOS
      const v = fpu.get(0);
      fpu.sw &= ~C2;
      fpu.set(0, Math.sin(v));
      fpu.push(Math.cos(v));
      return;
    }
    case 12: // FRNDINT
      fpu.set(0, roundRc(fpu, fpu.get(0)));
      return;
    case 13: { // FSCALE
      const s = Math.trunc(fpu.get(1));
      fpu.set(0, ldexp(fpu.get(0), Number.isFinite(s) ? Math.max(-20000, Math.min(20000, s)) : s));
      return;
    }
    case 14:
      fpu.sw &= ~C2;
      fpu.set(0, Math.sin(fpu.get(0)));
      return;
    default:
      fpu.sw &= ~C2;
      fpu.set(0, Math.cos(fpu.get(0)));
  }
}
