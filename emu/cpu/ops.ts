/**
 * Instruction handlers and the opcode table that the decoder reads: one {@link OpEntry} per
 * one-byte opcode (0x00..0xff) and per 0F xx opcode (0x100..0x1ff), with ModRM groups as
 * eight sub-entries.
 * @module
 */

import {
  alu,
  dec,
  divQ,
  divR,
  divS64,
  divU64,
  inc,
  mulHi,
  mulLo,
  mulS32,
  mulU32,
  setResult,
  shift,
  trunc,
} from "./alu.ts";
import type { Cpu } from "./cpu.ts";
import {
  BP,
  BR,
  CR0_PE,
  CR0_PG,
  CR0_TS,
  CR4_OSFXSR,
  CR4_PAE,
  CR4_PGE,
  CR4_PSE,
  CR4_TSD,
  CS,
  DE,
  DS,
  ES,
  FS,
  GP,
  GS,
  LDTR,
  OFV,
  SS,
  TR,
  UD,
} from "./consts.ts";
import { eaOffset, regIndex } from "./decode.ts";
import { I_B, I_BS, I_J8, I_JV, I_NONE, I_O, I_P, I_V, I_W, I_WB } from "./consts.ts";
import { AF, CF, DF, IF, MASK, OF, SIGN, VM, ZF } from "./flags.ts";
import type { Handler, Instr } from "./instr.ts";
import { fpuEscape, fpuWait, fxsave } from "./fpu.ts";
import {
  deliverInterrupt,
  descLimit,
  farReturn,
  farTransfer,
  iret,
  isProtected,
  loadLdt,
  loadSeg,
  loadTr,
  peekDescriptor,
} from "./system.ts";

/** One opcode's decoding and handler. */
export interface OpEntry {
  fn: Handler | null;
  modrm: boolean;
  imm: number;
  byte: boolean;
  op: number;
  /** Ends a block (control transfer). */
  end: boolean;
  /** ModRM.reg selects among these (the entry's own fn is unused). */
  group: (OpEntry | null)[] | null;
}

// ------------------------------------------------------------------ operand helpers

function getReg(cpu: Cpu, sz: number, r: number): number {
  return sz === 0 ? cpu.r8[r] : sz === 1 ? cpu.r16[r] : cpu.r32[r];
}

function setReg(cpu: Cpu, sz: number, r: number, v: number): void {
  if (sz === 0) cpu.r8[r] = v;
  else if (sz === 1) cpu.r16[r] = v;
  else cpu.r32[r] = v;
}

function readRm(cpu: Cpu, i: Instr): number {
  return i.mem ? cpu.rd(i.sz, i.ea(cpu, i)) : getReg(cpu, i.sz, i.rm);
}

function writeRm(cpu: Cpu, i: Instr, v: number): void {
  if (i.mem) cpu.wr(i.sz, i.ea(cpu, i), v);
  else setReg(cpu, i.sz, i.rm, v);
}

/** Reads the r/m operand at size sz (its own size, not i.sz). */
function readRmSz(cpu: Cpu, i: Instr, sz: number): number {
  return i.mem ? cpu.rd(sz, i.ea(cpu, i)) : getReg(cpu, sz, regIndex(sz, i.rmN));
}

function ud(cpu: Cpu): void {
  cpu.fault(UD);
}

/** Privileged instruction check: CPL 0 in protected mode, never in v86. */
function needCpl0(cpu: Cpu): void {
  if ((cpu.cr0 & CR0_PE) !== 0 && (cpu.cpl !== 0 || (cpu.eflags & VM) !== 0)) cpu.fault(GP, 0);
}

function iopl(cpu: Cpu): number {
  return (cpu.eflags >> 12) & 3;
}

/** IN/OUT permission: CPL <= IOPL, else the TSS I/O bitmap. */
function checkIo(cpu: Cpu, port: number, size: number): void {
  if ((cpu.cr0 & CR0_PE) === 0) return;
  if ((cpu.eflags & VM) === 0 && cpu.cpl <= iopl(cpu)) return;
  const tr = TR;
  if ((cpu.segAttr[tr] & 0xf) !== 0x9 && (cpu.segAttr[tr] & 0xf) !== 0xb) cpu.fault(GP, 0);
  if (cpu.segLimit[tr] < 0x67) cpu.fault(GP, 0);
  const base = cpu.segBase[tr];
  const mapOff = cpu.sysRd16((base + 0x66) | 0);
  const byte = mapOff + (port >> 3);
  if (byte + 1 > cpu.segLimit[tr]) cpu.fault(GP, 0);
  const bits = cpu.sysRd16((base + byte) | 0);
  if (((bits >> (port & 7)) & ((1 << size) - 1)) !== 0) cpu.fault(GP, 0);
}

function ioIn(cpu: Cpu, port: number, sz: number): number {
  const size = sz === 0 ? 1 : sz === 1 ? 2 : 4;
  checkIo(cpu, port, size);
  cpu.blockExit = true; // a device was touched: it may have raised or lowered an interrupt
  const v = cpu.bus.ioRead(port, size as 1 | 2 | 4);
  return trunc(sz, v);
}

function ioOut(cpu: Cpu, port: number, sz: number, v: number): void {
  const size = sz === 0 ? 1 : sz === 1 ? 2 : 4;
  checkIo(cpu, port, size);
  cpu.blockExit = true;
  cpu.bus.ioWrite(port, size as 1 | 2 | 4, sz === 2 ? v >>> 0 : v & MASK[sz]);
}

/** Sets EIP after a jump, truncated to the operand size. */
function jumpTo(cpu: Cpu, sz: number, target: number): void {
  cpu.eip = sz === 2 ? target >>> 0 : target & 0xffff;
}

// ------------------------------------------------------------------ ALU forms

const hAluRmR: Handler = (cpu, i) => {
  const b = getReg(cpu, i.sz, i.reg);
  if (i.mem) {
    const lin = i.ea(cpu, i);
    if (i.op === 7) {
      alu(cpu, 7, cpu.rd(i.sz, lin), b, i.sz);
      return;
    }
    const a = cpu.rdw(i.sz, lin);
    cpu.wr(i.sz, lin, alu(cpu, i.op, a, b, i.sz));
  } else {
    const r = alu(cpu, i.op, getReg(cpu, i.sz, i.rm), b, i.sz);
    if (i.op !== 7) setReg(cpu, i.sz, i.rm, r);
  }
};

const hAluRRm: Handler = (cpu, i) => {
  const b = readRm(cpu, i);
  const r = alu(cpu, i.op, getReg(cpu, i.sz, i.reg), b, i.sz);
  if (i.op !== 7) setReg(cpu, i.sz, i.reg, r);
};

const hAluAccI: Handler = (cpu, i) => {
  const r = alu(cpu, i.op, getReg(cpu, i.sz, 0), trunc(i.sz, i.imm), i.sz);
  if (i.op !== 7) setReg(cpu, i.sz, 0, r);
};

const hAluRmI: Handler = (cpu, i) => {
  const b = trunc(i.sz, i.imm);
  if (i.mem) {
    const lin = i.ea(cpu, i);
    if (i.op === 7) {
      alu(cpu, 7, cpu.rd(i.sz, lin), b, i.sz);
      return;
    }
    const a = cpu.rdw(i.sz, lin);
    cpu.wr(i.sz, lin, alu(cpu, i.op, a, b, i.sz));
  } else {
    const r = alu(cpu, i.op, getReg(cpu, i.sz, i.rm), b, i.sz);
    if (i.op !== 7) setReg(cpu, i.sz, i.rm, r);
  }
};

const hTestRmR: Handler = (cpu, i) => {
  alu(cpu, 4, readRm(cpu, i), getReg(cpu, i.sz, i.reg), i.sz);
};
const hTestRmI: Handler = (cpu, i) => {
  alu(cpu, 4, readRm(cpu, i), trunc(i.sz, i.imm), i.sz);
};
const hTestAccI: Handler = (cpu, i) => {
  alu(cpu, 4, getReg(cpu, i.sz, 0), trunc(i.sz, i.imm), i.sz);
};

const hIncReg: Handler = (cpu, i) =>
  setReg(cpu, i.sz, i.reg, inc(cpu, getReg(cpu, i.sz, i.reg), i.sz));
const hDecReg: Handler = (cpu, i) =>
  setReg(cpu, i.sz, i.reg, dec(cpu, getReg(cpu, i.sz, i.reg), i.sz));
const hIncRm: Handler = (cpu, i) => {
  if (i.mem) {
    const lin = i.ea(cpu, i);
    cpu.wr(i.sz, lin, inc(cpu, cpu.rdw(i.sz, lin), i.sz));
  } else setReg(cpu, i.sz, i.rm, inc(cpu, getReg(cpu, i.sz, i.rm), i.sz));
};
const hDecRm: Handler = (cpu, i) => {
  if (i.mem) {
    const lin = i.ea(cpu, i);
    cpu.wr(i.sz, lin, dec(cpu, cpu.rdw(i.sz, lin), i.sz));
  } else setReg(cpu, i.sz, i.rm, dec(cpu, getReg(cpu, i.sz, i.rm), i.sz));
};

const hNot: Handler = (cpu, i) => {
  if (i.mem) {
    const lin = i.ea(cpu, i);
    cpu.wr(i.sz, lin, ~cpu.rdw(i.sz, lin));
  } else setReg(cpu, i.sz, i.rm, ~getReg(cpu, i.sz, i.rm));
};
const hNeg: Handler = (cpu, i) => {
  if (i.mem) {
    const lin = i.ea(cpu, i);
    cpu.wr(i.sz, lin, alu(cpu, 5, 0, cpu.rdw(i.sz, lin), i.sz));
  } else setReg(cpu, i.sz, i.rm, alu(cpu, 5, 0, getReg(cpu, i.sz, i.rm), i.sz));
};

// ------------------------------------------------------------------ shifts

function shiftRm(cpu: Cpu, i: Instr, count: number): void {
  count &= 31;
  if (i.mem) {
    const lin = i.ea(cpu, i);
    const v = cpu.rdw(i.sz, lin);
    if (count === 0) return;
    cpu.wr(i.sz, lin, shift(cpu, i.op, v, count, i.sz));
  } else if (count !== 0) {
    setReg(cpu, i.sz, i.rm, shift(cpu, i.op, getReg(cpu, i.sz, i.rm), count, i.sz));
  }
}
const hShift1: Handler = (cpu, i) => shiftRm(cpu, i, 1);
const hShiftCl: Handler = (cpu, i) => shiftRm(cpu, i, cpu.r8[4]);
const hShiftI: Handler = (cpu, i) => shiftRm(cpu, i, i.imm);

function shiftDouble(cpu: Cpu, i: Instr, count: number, left: boolean): void {
  count &= 31;
  const lin = i.mem ? i.ea(cpu, i) : 0;
  const dst = i.mem ? cpu.rdw(i.sz, lin) : getReg(cpu, i.sz, i.rm);
  if (count === 0) return;
  const src = getReg(cpu, i.sz, i.reg);
  const bits = i.sz === 2 ? 32 : 16;
  let r: number, cf: number;
  if (bits === 32) {
    if (left) {
      r = (dst << count) | (src >>> (32 - count));
      cf = (dst >>> (32 - count)) & 1;
    } else {
      r = (dst >>> count) | (src << (32 - count));
      cf = (dst >>> (count - 1)) & 1;
    }
    r |= 0;
  } else {
    // 16-bit with counts above 16 behave as a 32-bit rotate through src:dst (undefined; as P6)
    const wide = left ? ((dst << 16) | src) >>> 0 : ((src << 16) | dst) >>> 0;
    if (left) {
      const w = count <= 16 ? wide : ((wide << 16) | dst) >>> 0;
      const c = count <= 16 ? count : count - 16;
      r = ((w << c) >>> 16) & 0xffff;
      cf = (w >>> (32 - c)) & 1;
    } else {
      const w = count <= 16 ? wide : ((dst << 16) | src) >>> 0;
      const c = count <= 16 ? count : count - 16;
      r = (w >>> c) & 0xffff;
      cf = (w >>> (c - 1)) & 1;
    }
  }
  const sign = SIGN[i.sz];
  const of = ((r ^ dst) & sign) !== 0 ? OF : 0;
  setResult(cpu, r, i.sz, (cf ? CF : 0) | of);
  if (i.mem) cpu.wr(i.sz, lin, r);
  else setReg(cpu, i.sz, i.rm, r);
}

// ------------------------------------------------------------------ multiply / divide

const hMulDiv: Handler = (cpu, i) => {
  const v = readRm(cpu, i);
  const sz = i.sz;
  switch (i.op) {
    case 4: { // MUL
      if (sz === 0) {
        const r = cpu.r8[0] * v;
        cpu.r16[0] = r;
        setResult(cpu, r & 0xff, 0, r > 0xff ? CF | OF : 0);
      } else if (sz === 1) {
        const r = cpu.r16[0] * v;
        cpu.r16[0] = r;
        cpu.r16[4] = r >>> 16;
        setResult(cpu, r & 0xffff, 1, r > 0xffff ? CF | OF : 0);
      } else {
        mulU32(cpu.r32[0], v);
        cpu.r32[0] = mulLo;
        cpu.r32[2] = mulHi;
        setResult(cpu, mulLo, 2, mulHi !== 0 ? CF | OF : 0);
      }
      break;
    }
    case 5: { // IMUL
      if (sz === 0) {
        const r = ((cpu.r8[0] << 24) >> 24) * ((v << 24) >> 24);
        cpu.r16[0] = r;
        setResult(cpu, r & 0xff, 0, r !== ((r << 24) >> 24) ? CF | OF : 0);
      } else if (sz === 1) {
        const r = ((cpu.r16[0] << 16) >> 16) * ((v << 16) >> 16);
        cpu.r16[0] = r;
        cpu.r16[4] = r >> 16;
        setResult(cpu, r & 0xffff, 1, r !== ((r << 16) >> 16) ? CF | OF : 0);
      } else {
        mulS32(cpu.r32[0], v);
        cpu.r32[0] = mulLo;
        cpu.r32[2] = mulHi;
        setResult(cpu, mulLo, 2, mulHi !== mulLo >> 31 ? CF | OF : 0);
      }
      break;
    }
    case 6: { // DIV
      if (sz === 0) {
        const n = cpu.r16[0];
        if (v === 0) cpu.fault(DE);
        const q = Math.floor(n / v);
        if (q > 0xff) cpu.fault(DE);
        cpu.r8[0] = q;
        cpu.r8[1] = n % v;
      } else if (sz === 1) {
        const n = cpu.r16[4] * 65536 + cpu.r16[0];
        if (v === 0) cpu.fault(DE);
        const q = Math.floor(n / v);
        if (q > 0xffff) cpu.fault(DE);
        cpu.r16[0] = q;
        cpu.r16[4] = n % v;
      } else {
        if (!divU64(cpu.r32[2], cpu.r32[0], v)) cpu.fault(DE);
        cpu.r32[0] = divQ;
        cpu.r32[2] = divR;
      }
      break;
    }
    default: { // IDIV
      if (sz === 0) {
        const n = (cpu.r16[0] << 16) >> 16;
        const d = (v << 24) >> 24;
        if (d === 0) cpu.fault(DE);
        const q = Math.trunc(n / d);
        if (q > 127 || q < -128) cpu.fault(DE);
        cpu.r8[0] = q;
        cpu.r8[1] = n - q * d;
      } else if (sz === 1) {
        const n = (cpu.r16[4] << 16) | cpu.r16[0];
        const d = (v << 16) >> 16;
        if (d === 0) cpu.fault(DE);
        const q = Math.trunc(n / d);
        if (q > 32767 || q < -32768) cpu.fault(DE);
        cpu.r16[0] = q;
        cpu.r16[4] = n - q * d;
      } else {
        if (!divS64(cpu.r32[2], cpu.r32[0], v)) cpu.fault(DE);
        cpu.r32[0] = divQ;
        cpu.r32[2] = divR;
      }
    }
  }
};

function imul2(cpu: Cpu, a: number, b: number, sz: number): number {
  if (sz === 1) {
    const r = ((a << 16) >> 16) * ((b << 16) >> 16);
    setResult(cpu, r & 0xffff, 1, r !== ((r << 16) >> 16) ? CF | OF : 0);
    return r & 0xffff;
  }
  mulS32(a, b);
  setResult(cpu, mulLo, 2, mulHi !== mulLo >> 31 ? CF | OF : 0);
  return mulLo;
}
const hImulRRmI: Handler = (cpu, i) => {
  setReg(cpu, i.sz, i.reg, imul2(cpu, readRm(cpu, i), i.imm, i.sz));
};
const hImulRRm: Handler = (cpu, i) => {
  setReg(cpu, i.sz, i.reg, imul2(cpu, getReg(cpu, i.sz, i.reg), readRm(cpu, i), i.sz));
};

// ------------------------------------------------------------------ moves

const hMovRmR: Handler = (cpu, i) => writeRm(cpu, i, getReg(cpu, i.sz, i.reg));
const hMovRRm: Handler = (cpu, i) => setReg(cpu, i.sz, i.reg, readRm(cpu, i));
const hMovRmI: Handler = (cpu, i) => writeRm(cpu, i, i.imm);
const hMovRegI: Handler = (cpu, i) => setReg(cpu, i.sz, i.reg, i.imm);
const hMovAccMoff: Handler = (cpu, i) => setReg(cpu, i.sz, 0, cpu.rd(i.sz, i.ea(cpu, i)));
const hMovMoffAcc: Handler = (cpu, i) => cpu.wr(i.sz, i.ea(cpu, i), getReg(cpu, i.sz, 0));
const hLea: Handler = (cpu, i) => {
  if (!i.mem) ud(cpu);
  setReg(cpu, i.sz, i.reg, eaOffset(cpu, i));
};
const hMovRmSeg: Handler = (cpu, i) => {
  if (i.regN > 5) ud(cpu);
  const v = cpu.segSel[i.regN];
  if (i.mem) cpu.wr16(i.ea(cpu, i), v);
  else setReg(cpu, i.sz, i.rm, v);
};
const hMovSegRm: Handler = (cpu, i) => {
  if (i.regN > 5 || i.regN === CS) ud(cpu);
  const v = i.mem ? cpu.rd16(i.ea(cpu, i)) : cpu.r16[i.rmN << 1];
  loadSeg(cpu, i.regN, v);
  if (i.regN === SS) {
    cpu.shadow = true;
    cpu.blockExit = true;
  }
};
const hXchgRmR: Handler = (cpu, i) => {
  const r = getReg(cpu, i.sz, i.reg);
  if (i.mem) {
    const lin = i.ea(cpu, i);
    const m = cpu.rdw(i.sz, lin);
    cpu.wr(i.sz, lin, r);
    setReg(cpu, i.sz, i.reg, m);
  } else {
    setReg(cpu, i.sz, i.reg, getReg(cpu, i.sz, i.rm));
    setReg(cpu, i.sz, i.rm, r);
  }
};
const hXchgAcc: Handler = (cpu, i) => {
  const a = getReg(cpu, i.sz, 0);
  setReg(cpu, i.sz, 0, getReg(cpu, i.sz, i.reg));
  setReg(cpu, i.sz, i.reg, a);
};
const hMovzx: Handler = (cpu, i) => {
  setReg(cpu, i.sz, i.reg, readRmSz(cpu, i, i.op));
};
const hMovsx: Handler = (cpu, i) => {
  const v = readRmSz(cpu, i, i.op);
  setReg(cpu, i.sz, i.reg, i.op === 0 ? (v << 24) >> 24 : (v << 16) >> 16);
};
const hCbw: Handler = (cpu, i) => {
  if (i.sz === 1) cpu.r16[0] = (cpu.r8[0] << 24) >> 24;
  else cpu.r32[0] = (cpu.r16[0] << 16) >> 16;
};
const hCwd: Handler = (cpu, i) => {
  if (i.sz === 1) cpu.r16[4] = (cpu.r16[0] & 0x8000) !== 0 ? 0xffff : 0;
  else cpu.r32[2] = cpu.r32[0] >> 31;
};
const hXlat: Handler = (cpu, i) => {
  const off = i.asz ? (cpu.r32[3] + cpu.r8[0]) | 0 : (cpu.r16[6] + cpu.r8[0]) & 0xffff;
  cpu.r8[0] = cpu.rd8((cpu.segBase[i.seg] + off) | 0);
};
const hLxs: Handler = (cpu, i) => {
  if (!i.mem) ud(cpu);
  const lin = i.ea(cpu, i);
  const off = cpu.rd(i.sz, lin);
  const sel = cpu.rd16((lin + (i.sz === 2 ? 4 : 2)) | 0);
  loadSeg(cpu, i.op, sel);
  setReg(cpu, i.sz, i.reg, off);
  if (i.op === SS) cpu.blockExit = true;
};
const hBswap: Handler = (cpu, i) => {
  const v = cpu.r32[i.regN];
  cpu.r32[i.regN] = ((v >>> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24)) | 0;
};
const hCmov: Handler = (cpu, i) => {
  const v = readRm(cpu, i);
  if (cpu.cond(i.op)) setReg(cpu, i.sz, i.reg, v);
};
const hSetcc: Handler = (cpu, i) => {
  const v = cpu.cond(i.op) ? 1 : 0;
  if (i.mem) cpu.wr8(i.ea(cpu, i), v);
  else cpu.r8[regIndex(0, i.rmN)] = v;
};

// ------------------------------------------------------------------ stack

const hPushReg: Handler = (cpu, i) => cpu.push(i.sz, getReg(cpu, i.sz, i.reg));
const hPopReg: Handler = (cpu, i) => {
  const v = cpu.pop(i.sz);
  setReg(cpu, i.sz, i.reg, v);
};
const hPushI: Handler = (cpu, i) => cpu.push(i.sz, i.imm);
const hPushRm: Handler = (cpu, i) => cpu.push(i.sz, readRm(cpu, i));
const hPopRm: Handler = (cpu, i) => {
  const sp0 = cpu.r32[4];
  const v = cpu.pop(i.sz);
  try {
    writeRm(cpu, i, v); // the address uses the incremented ESP, as on hardware
  } catch (e) {
    cpu.r32[4] = sp0;
    throw e;
  }
};
const hPushSeg: Handler = (cpu, i) => {
  if (i.sz === 2) {
    // 32-bit push of a segment register writes 16 bits (P6 and later)
    const sp = (cpu.r32[4] - 4) & cpu.spMask;
    cpu.wr16((cpu.segBase[SS] + sp) | 0, cpu.segSel[i.op]);
    if (cpu.spMask === 0xffff) cpu.r16[8] = sp;
    else cpu.r32[4] = sp;
  } else cpu.push16(cpu.segSel[i.op]);
};
const hPopSeg: Handler = (cpu, i) => {
  const v = cpu.peek(i.sz, 0) & 0xffff;
  loadSeg(cpu, i.op, v);
  cpu.pop(i.sz);
  if (i.op === SS) {
    cpu.shadow = true;
    cpu.blockExit = true;
  }
};
const hPusha: Handler = (cpu, i) => {
  const sp = cpu.r32[4];
  const w = i.sz === 2 ? 4 : 2;
  cpu.probeWrite((cpu.segBase[SS] + ((sp - 8 * w) & cpu.spMask)) | 0, 8 * w);
  for (let r = 0; r < 8; r++) {
    cpu.push(
      i.sz,
      r === 4 ? (i.sz === 2 ? sp : sp & 0xffff) : getReg(cpu, i.sz, r * (i.sz === 2 ? 1 : 2)),
    );
  }
};
const hPopa: Handler = (cpu, i) => {
  const w = i.sz === 2 ? 4 : 2;
  const vals = [0, 0, 0, 0, 0, 0, 0, 0];
  for (let r = 7; r >= 0; r--) vals[r] = cpu.peek(i.sz, (7 - r) * w);
  for (let r = 7; r >= 0; r--) if (r !== 4) setReg(cpu, i.sz, r * (i.sz === 2 ? 1 : 2), vals[r]);
  if (cpu.spMask === 0xffff) cpu.r16[8] = cpu.r16[8] + 8 * w;
  else cpu.r32[4] = cpu.r32[4] + 8 * w;
};
const hPushf: Handler = (cpu, i) => {
  if ((cpu.eflags & VM) !== 0 && iopl(cpu) < 3) cpu.fault(GP, 0);
  const f = cpu.getFlags();
  cpu.push(i.sz, i.sz === 2 ? f & 0x00fcffff : f & 0xffff);
};
const hPopf: Handler = (cpu, i) => {
  if ((cpu.eflags & VM) !== 0 && iopl(cpu) < 3) cpu.fault(GP, 0);
  const v = cpu.pop(i.sz);
  let mask = cpu.popfMask(i.sz);
  if ((cpu.eflags & VM) !== 0) mask &= ~0x3000;
  cpu.setFlagsMasked(v, mask);
  cpu.blockExit = true;
};
const hEnter: Handler = (cpu, i) => {
  const level = i.imm2 & 31;
  const sz = i.sz;
  const w = sz === 2 ? 4 : 2;
  const mask = cpu.spMask;
  const ebp = cpu.r32[5];
  const sp0 = cpu.r32[4];
  try {
    cpu.push(sz, sz === 2 ? ebp : ebp & 0xffff);
    const frame = cpu.r32[4] & mask;
    if (level > 0) {
      let bp = ebp;
      for (let k = 1; k < level; k++) {
        bp = (bp - w) & (mask === 0xffff ? 0xffff : -1);
        cpu.push(sz, cpu.rd(sz, (cpu.segBase[SS] + (bp & mask)) | 0));
      }
      cpu.push(sz, frame);
    }
    const newSp = (frame - i.imm - (level > 0 ? w * level : 0)) & mask;
    cpu.probeWrite((cpu.segBase[SS] + newSp) | 0, 1);
    if (sz === 2) cpu.r32[5] = frame;
    else cpu.r16[10] = frame;
    if (mask === 0xffff) cpu.r16[8] = (frame - i.imm - (level > 0 ? w * level : 0)) & 0xffff;
    else cpu.r32[4] = (frame - i.imm - (level > 0 ? w * level : 0)) | 0;
  } catch (e) {
    cpu.r32[4] = sp0;
    throw e;
  }
};
const hLeave: Handler = (cpu, i) => {
  const bp = cpu.r32[5] & cpu.spMask;
  if ((bp >>> 0) + (i.sz === 2 ? 3 : 1) > cpu.segChk[SS]) cpu.limitFault(SS);
  const v = i.sz === 2
    ? cpu.rd32((cpu.segBase[SS] + bp) | 0)
    : cpu.rd16((cpu.segBase[SS] + bp) | 0);
  if (cpu.spMask === 0xffff) cpu.r16[8] = bp + (i.sz === 2 ? 4 : 2);
  else cpu.r32[4] = bp + (i.sz === 2 ? 4 : 2);
  setReg(cpu, i.sz, 5 * (i.sz === 2 ? 1 : 2), v);
};

// ------------------------------------------------------------------ control transfer

const hJcc: Handler = (cpu, i) => {
  if (cpu.cond(i.op)) jumpTo(cpu, i.sz, cpu.eip + i.imm);
};
const hJmpRel: Handler = (cpu, i) => jumpTo(cpu, i.sz, cpu.eip + i.imm);
const hCallRel: Handler = (cpu, i) => {
  cpu.push(i.sz, cpu.eip);
  jumpTo(cpu, i.sz, cpu.eip + i.imm);
};
const hJmpRm: Handler = (cpu, i) => jumpTo(cpu, i.sz, readRm(cpu, i));
const hCallRm: Handler = (cpu, i) => {
  const t = readRm(cpu, i);
  cpu.push(i.sz, cpu.eip);
  jumpTo(cpu, i.sz, t);
};
const hRet: Handler = (cpu, i) => {
  const t = cpu.pop(i.sz);
  if (cpu.spMask === 0xffff) cpu.r16[8] = cpu.r16[8] + i.imm;
  else cpu.r32[4] = cpu.r32[4] + i.imm;
  jumpTo(cpu, i.sz, t);
};
const hRetf: Handler = (cpu, i) => farReturn(cpu, i.sz, i.imm);
const hJmpFar: Handler = (cpu, i) => farTransfer(cpu, i.imm2, i.imm, i.sz, false);
const hCallFar: Handler = (cpu, i) => farTransfer(cpu, i.imm2, i.imm, i.sz, true);
const hFarRm: Handler = (cpu, i) => {
  if (!i.mem) ud(cpu);
  const lin = i.ea(cpu, i);
  const off = cpu.rd(i.sz, lin);
  const sel = cpu.rd16((lin + (i.sz === 2 ? 4 : 2)) | 0);
  farTransfer(cpu, sel, off, i.sz, i.op === 3);
};
const hLoop: Handler = (cpu, i) => {
  let c: number;
  if (i.asz) c = cpu.r32[1] = cpu.r32[1] - 1;
  else c = cpu.r16[2] = cpu.r16[2] - 1;
  let take = c !== 0;
  if (i.op === 0) take = take && cpu.zf() === 0;
  else if (i.op === 1) take = take && cpu.zf() === 1;
  if (take) jumpTo(cpu, i.sz, cpu.eip + i.imm);
};
const hJcxz: Handler = (cpu, i) => {
  const c = i.asz ? cpu.r32[1] : cpu.r16[2];
  if (c === 0) jumpTo(cpu, i.sz, cpu.eip + i.imm);
};
const hInt: Handler = (cpu, i) => deliverInterrupt(cpu, i.imm, -1, 2);
const hInt3: Handler = (cpu) => deliverInterrupt(cpu, BP, -1, 3);
const hInto: Handler = (cpu) => {
  if (cpu.of()) deliverInterrupt(cpu, OFV, -1, 3);
};
const hInt1: Handler = (cpu) => deliverInterrupt(cpu, 1, -1, 3);
const hIret: Handler = (cpu, i) => iret(cpu, i.sz);
const hBound: Handler = (cpu, i) => {
  if (!i.mem) ud(cpu);
  const lin = i.ea(cpu, i);
  const v = getReg(cpu, i.sz, i.reg);
  if (i.sz === 1) {
    const lo = (cpu.rd16(lin) << 16) >> 16, hi = (cpu.rd16((lin + 2) | 0) << 16) >> 16;
    const s = (v << 16) >> 16;
    if (s < lo || s > hi) cpu.fault(BR);
  } else {
    const lo = cpu.rd32(lin), hi = cpu.rd32((lin + 4) | 0);
    if (v < lo || v > hi) cpu.fault(BR);
  }
};
const hHlt: Handler = (cpu) => {
  needCpl0(cpu);
  cpu.halted = true;
  cpu.blockExit = true;
};

// ------------------------------------------------------------------ flags

const hFlagOp: Handler = (cpu, i) => {
  cpu.materialize();
  switch (i.op) {
    case 0: // CMC
      cpu.eflags ^= CF;
      break;
    case 1: // CLC
      cpu.eflags &= ~CF;
      break;
    case 2: // STC
      cpu.eflags |= CF;
      break;
    case 3: // CLI
      if (isProtected(cpu) ? cpu.cpl > iopl(cpu) : (cpu.eflags & VM) !== 0 && iopl(cpu) < 3) {
        cpu.fault(GP, 0);
      }
      cpu.eflags &= ~IF;
      break;
    case 4: // STI
      if (isProtected(cpu) ? cpu.cpl > iopl(cpu) : (cpu.eflags & VM) !== 0 && iopl(cpu) < 3) {
        cpu.fault(GP, 0);
      }
      if ((cpu.eflags & IF) === 0) {
        cpu.eflags |= IF;
        cpu.shadow = true;
        cpu.blockExit = true;
      }
      break;
    case 5: // CLD
      cpu.eflags &= ~DF;
      break;
    case 6: // STD
      cpu.eflags |= DF;
      break;
  }
};
const hSahf: Handler = (cpu) => {
  cpu.materialize();
  cpu.eflags = (cpu.eflags & ~0xd5) | (cpu.r8[1] & 0xd5) | 2;
};
const hLahf: Handler = (cpu) => {
  cpu.r8[1] = (cpu.getFlags() & 0xd5) | 2;
};
const hSalc: Handler = (cpu) => {
  cpu.r8[0] = cpu.cf() ? 0xff : 0;
};

// ------------------------------------------------------------------ BCD

function setSzp8(cpu: Cpu, r: number, cfaf: number): void {
  setResult(cpu, r & 0xff, 0, cfaf);
}
const hDaa: Handler = (cpu) => {
  const old = cpu.r8[0], oldCf = cpu.cf();
  let al = old, cf = 0, af = 0;
  if ((al & 0xf) > 9 || cpu.af()) {
    al += 6;
    af = AF;
    cf = oldCf | (al > 0xff ? 1 : 0);
  }
  if (old > 0x99 || oldCf) {
    al += 0x60;
    cf = 1;
  }
  cpu.r8[0] = al;
  setSzp8(cpu, al, (cf ? CF : 0) | af);
};
const hDas: Handler = (cpu) => {
  const old = cpu.r8[0], oldCf = cpu.cf();
  let al = old, cf = 0, af = 0;
  if ((al & 0xf) > 9 || cpu.af()) {
    al -= 6;
    af = AF;
    cf = oldCf | (old < 6 ? 1 : 0);
  }
  if (old > 0x99 || oldCf) {
    al -= 0x60;
    cf = 1;
  }
  cpu.r8[0] = al;
  setSzp8(cpu, al, (cf ? CF : 0) | af);
};
const hAaa: Handler = (cpu) => {
  if ((cpu.r8[0] & 0xf) > 9 || cpu.af()) {
    cpu.r16[0] = cpu.r16[0] + 0x106;
    cpu.r8[0] &= 0xf;
    setSzp8(cpu, cpu.r8[0], CF | AF);
  } else {
    cpu.r8[0] &= 0xf;
    setSzp8(cpu, cpu.r8[0], 0);
  }
};
const hAas: Handler = (cpu) => {
  if ((cpu.r8[0] & 0xf) > 9 || cpu.af()) {
    cpu.r16[0] = cpu.r16[0] - 6;
    cpu.r8[1] = cpu.r8[1] - 1;
    cpu.r8[0] &= 0xf;
    setSzp8(cpu, cpu.r8[0], CF | AF);
  } else {
    cpu.r8[0] &= 0xf;
    setSzp8(cpu, cpu.r8[0], 0);
  }
};
const hAam: Handler = (cpu, i) => {
  const base = i.imm & 0xff;
  if (base === 0) cpu.fault(DE);
  const al = cpu.r8[0];
  cpu.r8[1] = Math.floor(al / base);
  cpu.r8[0] = al % base;
  setSzp8(cpu, cpu.r8[0], 0);
};
const hAad: Handler = (cpu, i) => {
  const r = cpu.r8[0] + cpu.r8[1] * (i.imm & 0xff);
  alu(cpu, 0, cpu.r8[0], (cpu.r8[1] * (i.imm & 0xff)) & 0xff, 0);
  cpu.r16[0] = r & 0xff;
};

// ------------------------------------------------------------------ strings

function siAdvance(cpu: Cpu, i: Instr, d: number): void {
  if (i.asz) cpu.r32[6] = cpu.r32[6] + d;
  else cpu.r16[12] = cpu.r16[12] + d;
}
function diAdvance(cpu: Cpu, i: Instr, d: number): void {
  if (i.asz) cpu.r32[7] = cpu.r32[7] + d;
  else cpu.r16[14] = cpu.r16[14] + d;
}
function srcLin(cpu: Cpu, i: Instr): number {
  const off = i.asz ? cpu.r32[6] >>> 0 : cpu.r16[12];
  if (off + i.accN > cpu.segChk[i.seg]) cpu.limitFault(i.seg);
  return (cpu.segBase[i.seg] + off) | 0;
}
function dstLin(cpu: Cpu, i: Instr): number {
  const off = i.asz ? cpu.r32[7] >>> 0 : cpu.r16[14];
  if (off + i.accN > cpu.segChkW[ES]) cpu.limitFault(ES);
  return (cpu.segBase[ES] + off) | 0;
}
function count(cpu: Cpu, i: Instr): number {
  return i.asz ? cpu.r32[1] >>> 0 : cpu.r16[2];
}
function setCount(cpu: Cpu, i: Instr, c: number): void {
  if (i.asz) cpu.r32[1] = c;
  else cpu.r16[2] = c;
}

/** Iterations of a REP string op per visit: the rest continues after interrupts are polled. */
const REP_CHUNK = 4096;

function stringOp(cpu: Cpu, i: Instr, body: (cpu: Cpu, i: Instr, d: number) => boolean): void {
  const d = cpu.dstep(i.sz);
  if (i.rep === 0) {
    body(cpu, i, d);
    return;
  }
  let c = count(cpu, i);
  let n = 0;
  while (c !== 0) {
    const stop = body(cpu, i, d);
    c = (c - 1) >>> 0;
    setCount(cpu, i, c);
    if (stop) return;
    if (++n >= REP_CHUNK && c !== 0) {
      cpu.eip = cpu.code32 ? (cpu.eip - i.len) >>> 0 : (cpu.eip - i.len) & 0xffff; // again
      cpu.blockExit = true;
      return;
    }
  }
}

const bMovs = (cpu: Cpu, i: Instr, d: number) => {
  cpu.wr(i.sz, dstLin(cpu, i), cpu.rd(i.sz, srcLin(cpu, i)));
  siAdvance(cpu, i, d);
  diAdvance(cpu, i, d);
  return false;
};
const bStos = (cpu: Cpu, i: Instr, d: number) => {
  cpu.wr(i.sz, dstLin(cpu, i), getReg(cpu, i.sz, 0));
  diAdvance(cpu, i, d);
  return false;
};
const bLods = (cpu: Cpu, i: Instr, d: number) => {
  setReg(cpu, i.sz, 0, cpu.rd(i.sz, srcLin(cpu, i)));
  siAdvance(cpu, i, d);
  return false;
};
const bCmps = (cpu: Cpu, i: Instr, d: number) => {
  const a = cpu.rd(i.sz, srcLin(cpu, i));
  const b = cpu.rd(i.sz, dstLin(cpu, i));
  alu(cpu, 7, a, b, i.sz);
  siAdvance(cpu, i, d);
  diAdvance(cpu, i, d);
  return i.rep === 1 ? cpu.zf() === 0 : cpu.zf() === 1;
};
const bScas = (cpu: Cpu, i: Instr, d: number) => {
  const b = cpu.rd(i.sz, dstLin(cpu, i));
  alu(cpu, 7, getReg(cpu, i.sz, 0), b, i.sz);
  diAdvance(cpu, i, d);
  return i.rep === 1 ? cpu.zf() === 0 : cpu.zf() === 1;
};
const bIns = (cpu: Cpu, i: Instr, d: number) => {
  const lin = dstLin(cpu, i);
  cpu.probeWrite(lin, 1 << i.sz);
  cpu.wr(i.sz, lin, ioIn(cpu, cpu.r16[4], i.sz));
  diAdvance(cpu, i, d);
  return false;
};
const bOuts = (cpu: Cpu, i: Instr, d: number) => {
  ioOut(cpu, cpu.r16[4], i.sz, cpu.rd(i.sz, srcLin(cpu, i)));
  siAdvance(cpu, i, d);
  return false;
};
/**
 * REP MOVS/STOS: whole runs that stay inside one source and one destination page (RAM, cached in
 * the TLB) are copied/filled directly, in either direction. Overlap is allowed when the copy
 * direction makes element-by-element copying equal to memmove (forward with the destination
 * below the source, backward above it); other overlaps, faults, MMIO and page crossings take the
 * element-by-element path, which also fills the TLB for the next run.
 */
function repFast(cpu: Cpu, i: Instr, movs: boolean): void {
  const w = 1 << i.sz;
  const ram = cpu.ram;
  const back = (cpu.eflags & DF) !== 0;
  let c = count(cpu, i);
  let budget = REP_CHUNK * 16;
  while (c !== 0) {
    const si = i.asz ? cpu.r32[6] >>> 0 : cpu.r16[12];
    const di = i.asz ? cpu.r32[7] >>> 0 : cpu.r16[14];
    const sLin = (cpu.segBase[i.seg] + si) | 0;
    const dLin = (cpu.segBase[ES] + di) | 0;
    let n: number;
    if (!back) {
      n = Math.min(c, Math.floor((4096 - (dLin & 0xfff)) / w), budget);
      if (movs) n = Math.min(n, Math.floor((4096 - (sLin & 0xfff)) / w));
      if (!i.asz) {
        n = Math.min(n, Math.floor((0x10000 - di) / w));
        if (movs) n = Math.min(n, Math.floor((0x10000 - si) / w));
      }
    } else {
      n = Math.min(c, Math.floor(((dLin & 0xfff) + w) / w), Math.floor(di / w) + 1, budget);
      if (movs) n = Math.min(n, Math.floor(((sLin & 0xfff) + w) / w), Math.floor(si / w) + 1);
    }
    const bytes = n * w;
    const span = back ? (n - 1) * w : 0; // the run's lowest element lies `span` below the current
    const dHigh = back ? di + w - 1 : di + bytes - 1;
    const sHigh = back ? si + w - 1 : si + bytes - 1;
    const dp = n > 0 && dHigh <= cpu.segChkW[ES] ? cpu.ramIndexW((dLin - span) | 0) : -1;
    const sp = movs && dp >= 0 && sHigh <= cpu.segChk[i.seg]
      ? cpu.ramIndexR((sLin - span) | 0)
      : -1;
    const overlap = movs && sp >= 0 && dp < sp + bytes && sp < dp + bytes;
    if (dp < 0 || (movs && sp < 0) || (overlap && (back ? dp < sp : dp > sp))) {
      // one element the slow way (faults, MMIO, page crossings, replicating overlap)
      const d = back ? -w : w;
      if (movs) bMovs(cpu, i, d);
      else bStos(cpu, i, d);
      c = (c - 1) >>> 0;
      setCount(cpu, i, c);
      if (--budget <= 0) break;
      continue;
    }
    if (movs) ram.copyWithin(dp, sp, sp + bytes);
    else if (w === 1) ram.fill(cpu.r8[0], dp, dp + bytes);
    else {
      const v = cpu.r32[0];
      for (let k = 0; k < bytes; k += w) {
        ram[dp + k] = v;
        ram[dp + k + 1] = v >> 8;
        if (w === 4) {
          ram[dp + k + 2] = v >> 16;
          ram[dp + k + 3] = v >> 24;
        }
      }
    }
    const step = back ? -bytes : bytes;
    if (movs) siAdvance(cpu, i, step);
    diAdvance(cpu, i, step);
    c = (c - n) >>> 0;
    setCount(cpu, i, c);
    budget -= n;
    if (budget <= 0) break;
  }
  if (c !== 0) {
    cpu.eip = cpu.code32 ? (cpu.eip - i.len) >>> 0 : (cpu.eip - i.len) & 0xffff; // again
    cpu.blockExit = true;
  }
}
const hMovs: Handler = (cpu, i) => i.rep !== 0 ? repFast(cpu, i, true) : stringOp(cpu, i, bMovs);
const hStos: Handler = (cpu, i) => i.rep !== 0 ? repFast(cpu, i, false) : stringOp(cpu, i, bStos);
const hLods: Handler = (cpu, i) => stringOp(cpu, i, bLods);
const hCmps: Handler = (cpu, i) => stringOp(cpu, i, bCmps);
const hScas: Handler = (cpu, i) => stringOp(cpu, i, bScas);
const hIns: Handler = (cpu, i) => stringOp(cpu, i, bIns);
const hOuts: Handler = (cpu, i) => stringOp(cpu, i, bOuts);

// ------------------------------------------------------------------ I/O

const hInI: Handler = (cpu, i) => setReg(cpu, i.sz, 0, ioIn(cpu, i.imm, i.sz));
const hOutI: Handler = (cpu, i) => ioOut(cpu, i.imm, i.sz, getReg(cpu, i.sz, 0));
const hInDx: Handler = (cpu, i) => setReg(cpu, i.sz, 0, ioIn(cpu, cpu.r16[4], i.sz));
const hOutDx: Handler = (cpu, i) => ioOut(cpu, cpu.r16[4], i.sz, getReg(cpu, i.sz, 0));

// ------------------------------------------------------------------ bit instructions

function bitOp(cpu: Cpu, i: Instr, bit: number, fromReg: boolean): void {
  const bits = i.sz === 2 ? 32 : 16;
  let lin = 0;
  if (i.mem) {
    lin = i.ea(cpu, i);
    if (fromReg) {
      // register bit offsets address memory beyond the operand (signed)
      const sbit = i.sz === 2 ? bit | 0 : (bit << 16) >> 16;
      lin = (lin + ((sbit >> (i.sz === 2 ? 5 : 4)) << (i.sz === 2 ? 2 : 1))) | 0;
    }
  }
  const b = bit & (bits - 1);
  const v = i.mem ? (i.op === 0 ? cpu.rd(i.sz, lin) : cpu.rdw(i.sz, lin)) : getReg(cpu, i.sz, i.rm);
  const cf = (v >>> b) & 1;
  cpu.materialize();
  cpu.eflags = (cpu.eflags & ~CF) | cf;
  if (i.op === 0) return;
  const m = 1 << b;
  const r = i.op === 1 ? v | m : i.op === 2 ? v & ~m : v ^ m;
  if (i.mem) cpu.wr(i.sz, lin, r);
  else setReg(cpu, i.sz, i.rm, r);
}
const hBtR: Handler = (cpu, i) => bitOp(cpu, i, getReg(cpu, i.sz, i.reg), true);
const hBtI: Handler = (cpu, i) => bitOp(cpu, i, i.imm, false);
const hBsf: Handler = (cpu, i) => {
  const v = readRm(cpu, i);
  cpu.materialize();
  if (v === 0) {
    cpu.eflags |= ZF;
    return;
  }
  cpu.eflags &= ~ZF;
  setReg(cpu, i.sz, i.reg, 31 - Math.clz32(v & -v));
};
const hBsr: Handler = (cpu, i) => {
  const v = readRm(cpu, i);
  cpu.materialize();
  if (v === 0) {
    cpu.eflags |= ZF;
    return;
  }
  cpu.eflags &= ~ZF;
  setReg(cpu, i.sz, i.reg, 31 - Math.clz32(v));
};
const hShld: Handler = (cpu, i) => shiftDouble(cpu, i, i.op ? cpu.r8[4] : i.imm, true);
const hShrd: Handler = (cpu, i) => shiftDouble(cpu, i, i.op ? cpu.r8[4] : i.imm, false);

// ------------------------------------------------------------------ atomics

const hXadd: Handler = (cpu, i) => {
  const r = getReg(cpu, i.sz, i.reg);
  if (i.mem) {
    const lin = i.ea(cpu, i);
    const m = cpu.rdw(i.sz, lin);
    const s = alu(cpu, 0, m, r, i.sz);
    cpu.wr(i.sz, lin, s);
    setReg(cpu, i.sz, i.reg, m);
  } else {
    const m = getReg(cpu, i.sz, i.rm);
    const s = alu(cpu, 0, m, r, i.sz);
    setReg(cpu, i.sz, i.reg, m);
    setReg(cpu, i.sz, i.rm, s);
  }
};
const hCmpxchg: Handler = (cpu, i) => {
  const acc = getReg(cpu, i.sz, 0);
  if (i.mem) {
    const lin = i.ea(cpu, i);
    const m = cpu.rdw(i.sz, lin);
    alu(cpu, 7, acc, m, i.sz);
    if (cpu.zf()) cpu.wr(i.sz, lin, getReg(cpu, i.sz, i.reg));
    else {
      cpu.wr(i.sz, lin, m);
      setReg(cpu, i.sz, 0, m);
    }
  } else {
    const m = getReg(cpu, i.sz, i.rm);
    alu(cpu, 7, acc, m, i.sz);
    if (cpu.zf()) setReg(cpu, i.sz, i.rm, getReg(cpu, i.sz, i.reg));
    else setReg(cpu, i.sz, 0, m);
  }
};
const hCmpxchg8b: Handler = (cpu, i) => {
  if (!i.mem) ud(cpu);
  const lin = i.ea(cpu, i);
  cpu.probeWrite(lin, 8);
  const lo = cpu.rd32(lin), hi = cpu.rd32((lin + 4) | 0);
  cpu.materialize();
  if (lo === cpu.r32[0] && hi === cpu.r32[2]) {
    cpu.wr32(lin, cpu.r32[3]);
    cpu.wr32((lin + 4) | 0, cpu.r32[1]);
    cpu.eflags |= ZF;
  } else {
    cpu.wr32(lin, lo);
    cpu.wr32((lin + 4) | 0, hi);
    cpu.r32[0] = lo;
    cpu.r32[2] = hi;
    cpu.eflags &= ~ZF;
  }
};

// ------------------------------------------------------------------ system

const hNop: Handler = () => {};

/** CPUID: a family-6 (Pentium Pro class) CPU with what this interpreter implements. */
const hCpuid: Handler = (cpu) => {
  const leaf = cpu.r32[0] >>> 0;
  let a = 0, b = 0, c = 0, d = 0;
  if (leaf === 0) {
    a = 2;
    // "GenuineIntel"
    b = 0x756e6547;
    d = 0x49656e69;
    c = 0x6c65746e;
  } else if (leaf === 1) {
    a = 0x0633; // family 6, model 3, stepping 3
    b = 0x00010000;
    // FPU, PSE, TSC, MSR, PAE, CX8, SEP, PGE, CMOV, FXSR: what is implemented (no VME, DE,
    // MCE, APIC, MTRR, MCA, MMX, SSE)
    d = 0x1 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x800 | 0x2000 | 0x8000 | 0x1000000;
  } else if (leaf === 2) {
    a = 0x03020101;
  } else if (leaf === 0x80000000) {
    a = 0x80000001;
  } else if (leaf === 0x80000001) {
    d = 0x100000; // NX (PAE paging with EFER.NXE)
  }
  cpu.r32[0] = a;
  cpu.r32[3] = b;
  cpu.r32[1] = c;
  cpu.r32[2] = d;
};

/**
 * Time-stamp counter: instructions retired before this one (deterministic; RDTSC ends its block,
 * so the count at block entry is exact).
 */
function tsc(cpu: Cpu): number {
  return cpu.instructions + cpu.tscOffset;
}
const hRdtsc: Handler = (cpu) => {
  if ((cpu.cr4 & CR4_TSD) !== 0 && cpu.cpl !== 0 && (cpu.cr0 & CR0_PE) !== 0) cpu.fault(GP, 0);
  const t = tsc(cpu);
  cpu.r32[0] = t | 0;
  cpu.r32[2] = Math.floor(t / 4294967296) | 0;
};
const hRdmsr: Handler = (cpu) => {
  needCpl0(cpu);
  const msr = cpu.r32[1] >>> 0;
  let lo = 0, hi = 0;
  switch (msr) {
    case 0x10: {
      const t = tsc(cpu);
      lo = t | 0;
      hi = Math.floor(t / 4294967296) | 0;
      break;
    }
    case 0x1b:
      lo = cpu.apicBase;
      break;
    case 0x174:
      lo = cpu.sysenterCs;
      break;
    case 0x175:
      lo = cpu.sysenterEsp;
      break;
    case 0x176:
      lo = cpu.sysenterEip;
      break;
    case 0xc0000080:
      lo = cpu.efer;
      break;
    default:
      if (cpu.mtrr.has(msr)) lo = cpu.mtrr.get(msr)!;
      else if (msr === 0x1a0) lo = 1; // IA32_MISC_ENABLE: fast strings
      else if (
        msr === 0x8b || msr === 0x17 || msr === 0x2a || msr === 0x179 || msr === 0x17a ||
        (msr >= 0x186 && msr <= 0x187)
      ) {
        lo = 0; // microcode revision, platform id, EBL_CR_POWERON, MCG_CAP/STATUS, PERFEVTSEL
      } else cpu.fault(GP, 0);
  }
  cpu.r32[0] = lo;
  cpu.r32[2] = hi;
};
const hWrmsr: Handler = (cpu) => {
  needCpl0(cpu);
  const msr = cpu.r32[1] >>> 0;
  const lo = cpu.r32[0];
  switch (msr) {
    case 0x10:
      cpu.tscOffset = (cpu.r32[2] >>> 0) * 4294967296 + (lo >>> 0) - cpu.instructions;
      break;
    case 0x1b:
      cpu.apicBase = lo;
      break;
    case 0x174:
      cpu.sysenterCs = lo & 0xffff;
      break;
    case 0x175:
      cpu.sysenterEsp = lo;
      break;
    case 0x176:
      cpu.sysenterEip = lo;
      break;
    case 0xc0000080:
      cpu.efer = lo & 0x800;
      cpu.flushTlb();
      break;
    default:
      if (msr === 0x8b || msr === 0x2a || msr === 0x1a0 || (msr >= 0x186 && msr <= 0x187)) break;
      cpu.fault(GP, 0);
  }
};
const hSysenter: Handler = (cpu) => {
  if ((cpu.cr0 & CR0_PE) === 0 || (cpu.sysenterCs & 0xfffc) === 0) cpu.fault(GP, 0);
  cpu.materialize();
  cpu.eflags &= ~(VM | IF);
  flatSeg(cpu, CS, cpu.sysenterCs & 0xfffc, 0x9b, 0);
  flatSeg(cpu, SS, (cpu.sysenterCs + 8) & 0xfffc, 0x93, 0);
  cpu.setCpl(0);
  cpu.modeChanged();
  cpu.r32[4] = cpu.sysenterEsp;
  cpu.eip = cpu.sysenterEip >>> 0;
};
const hSysexit: Handler = (cpu) => {
  if ((cpu.cr0 & CR0_PE) === 0 || (cpu.sysenterCs & 0xfffc) === 0 || cpu.cpl !== 0) {
    cpu.fault(GP, 0);
  }
  flatSeg(cpu, CS, ((cpu.sysenterCs + 16) & 0xfffc) | 3, 0xfb, 3);
  flatSeg(cpu, SS, ((cpu.sysenterCs + 24) & 0xfffc) | 3, 0xf3, 3);
  cpu.setCpl(3);
  cpu.modeChanged();
  cpu.r32[4] = cpu.r32[1];
  cpu.eip = cpu.r32[2] >>> 0;
};
function flatSeg(cpu: Cpu, seg: number, sel: number, access: number, _dpl: number): void {
  cpu.setSegCache(seg, sel, 0, 0xffffffff, access | 0xc000);
}

const hMovFromCr: Handler = (cpu, i) => {
  needCpl0(cpu);
  let v = 0;
  switch (i.regN) {
    case 0:
      v = cpu.cr0;
      break;
    case 2:
      v = cpu.cr2;
      break;
    case 3:
      v = cpu.cr3;
      break;
    case 4:
      v = cpu.cr4;
      break;
    default:
      ud(cpu);
  }
  cpu.r32[i.rmN] = v;
};
const hMovToCr: Handler = (cpu, i) => {
  needCpl0(cpu);
  const v = cpu.r32[i.rmN];
  switch (i.regN) {
    case 0: {
      if ((v & CR0_PG) !== 0 && (v & CR0_PE) === 0) cpu.fault(GP, 0);
      const old = cpu.cr0;
      cpu.cr0 = (v & 0xe005003f) | 0x10;
      if (((old ^ cpu.cr0) & (CR0_PG | CR0_PE | 0x10000)) !== 0) cpu.flushTlb();
      if (((old ^ cpu.cr0) & CR0_PE) !== 0) {
        if ((cpu.cr0 & CR0_PE) === 0) cpu.setCpl(0);
      }
      cpu.modeChanged();
      break;
    }
    case 2:
      cpu.cr2 = v;
      break;
    case 3:
      cpu.cr3 = v;
      cpu.flushTlb();
      break;
    case 4: {
      if (
        (v &
          ~(CR4_TSD | CR4_PSE | CR4_PAE | CR4_PGE | CR4_OSFXSR | 0x400)) !==
          0
      ) {
        cpu.fault(GP, 0);
      }
      cpu.cr4 = v;
      cpu.flushTlb();
      cpu.blockExit = true;
      break;
    }
    default:
      ud(cpu);
  }
};
const hMovFromDr: Handler = (cpu, i) => {
  needCpl0(cpu);
  const n = i.regN === 4 ? 6 : i.regN === 5 ? 7 : i.regN;
  cpu.r32[i.rmN] = n === 6 ? cpu.dr[6] | 0xffff0ff0 : n === 7 ? cpu.dr[7] | 0x400 : cpu.dr[n];
};
const hMovToDr: Handler = (cpu, i) => {
  needCpl0(cpu);
  const n = i.regN === 4 ? 6 : i.regN === 5 ? 7 : i.regN;
  cpu.dr[n] = cpu.r32[i.rmN];
};
const hClts: Handler = (cpu) => {
  needCpl0(cpu);
  cpu.cr0 &= ~CR0_TS;
};
const hInvd: Handler = (cpu) => needCpl0(cpu);
const hInvlpg: Handler = (cpu, i) => {
  needCpl0(cpu);
  if (!i.mem) ud(cpu);
  cpu.invlpg(i.ea(cpu, i));
};

/** 0F 01 /0../3: SGDT, SIDT, LGDT, LIDT. */
const hDescTable: Handler = (cpu, i) => {
  if (!i.mem) ud(cpu);
  const lin = i.ea(cpu, i);
  const isIdt = (i.op & 1) !== 0;
  if (i.op < 2) {
    cpu.wr16(lin, isIdt ? cpu.idtLimit : cpu.gdtLimit);
    cpu.wr32((lin + 2) | 0, isIdt ? cpu.idtBase : cpu.gdtBase);
  } else {
    needCpl0(cpu);
    const limit = cpu.rd16(lin);
    let base = cpu.rd32((lin + 2) | 0);
    if (i.sz !== 2) base &= 0xffffff;
    if (isIdt) {
      cpu.idtLimit = limit;
      cpu.idtBase = base;
    } else {
      cpu.gdtLimit = limit;
      cpu.gdtBase = base;
    }
  }
};
const hSmsw: Handler = (cpu, i) => {
  if (i.mem) cpu.wr16(i.ea(cpu, i), cpu.cr0 & 0xffff);
  else setReg(cpu, i.sz, i.rm, i.sz === 2 ? cpu.cr0 : cpu.cr0 & 0xffff);
};
const hLmsw: Handler = (cpu, i) => {
  needCpl0(cpu);
  const v = i.mem ? cpu.rd16(i.ea(cpu, i)) : cpu.r16[i.rmN << 1];
  // LMSW sets PE but never clears it
  const old = cpu.cr0;
  cpu.cr0 = (old & ~0xe) | (v & 0xf) | (old & 1);
  if (((old ^ cpu.cr0) & CR0_PE) !== 0) cpu.modeChanged();
};
/** 0F 00: SLDT, STR, LLDT, LTR, VERR, VERW. */
const hSys00: Handler = (cpu, i) => {
  if (!isProtected(cpu)) ud(cpu);
  switch (i.op) {
    case 0:
    case 1: {
      const v = cpu.segSel[i.op === 0 ? LDTR : TR];
      if (i.mem) cpu.wr16(i.ea(cpu, i), v);
      else setReg(cpu, i.sz, i.rm, v);
      return;
    }
    case 2:
    case 3: {
      needCpl0(cpu);
      const sel = i.mem ? cpu.rd16(i.ea(cpu, i)) : cpu.r16[i.rmN << 1];
      if (i.op === 2) loadLdt(cpu, sel);
      else loadTr(cpu, sel);
      return;
    }
    default: {
      const sel = i.mem ? cpu.rd16(i.ea(cpu, i)) : cpu.r16[i.rmN << 1];
      const d = peekDescriptor(cpu, sel);
      let ok = false;
      if (d !== null) {
        const acc = (d.hi >> 8) & 0xff;
        const dpl = (acc >> 5) & 3;
        if ((acc & 0x10) !== 0) {
          const code = (acc & 8) !== 0, conf = (acc & 4) !== 0;
          const privOk = (code && conf) || (dpl >= cpu.cpl && dpl >= (sel & 3));
          ok = privOk && (i.op === 4 ? !code || (acc & 2) !== 0 : !code && (acc & 2) !== 0);
        }
      }
      cpu.materialize();
      cpu.eflags = ok ? cpu.eflags | ZF : cpu.eflags & ~ZF;
    }
  }
};
/** LAR (op 0) / LSL (op 1). */
const hLarLsl: Handler = (cpu, i) => {
  if (!isProtected(cpu)) ud(cpu);
  const sel = i.mem ? cpu.rd16(i.ea(cpu, i)) : cpu.r16[i.rmN << 1];
  const d = peekDescriptor(cpu, sel);
  let ok = false;
  if (d !== null) {
    const acc = (d.hi >> 8) & 0xff;
    const dpl = (acc >> 5) & 3;
    const type = acc & 0x1f;
    const conf = (acc & 0x1c) === 0x1c;
    const sysOk = i.op === 0
      ? [1, 2, 3, 4, 5, 9, 0xb, 0xc].includes(type)
      : [1, 2, 3, 9, 0xb].includes(type);
    ok = ((acc & 0x10) !== 0 || sysOk) && (conf || (dpl >= cpu.cpl && dpl >= (sel & 3)));
    if (ok) {
      const v = i.op === 0 ? d.hi & 0x00ffff00 : descLimit(d.lo, d.hi);
      setReg(cpu, i.sz, i.reg, i.sz === 2 ? v : v & 0xffff);
    }
  }
  cpu.materialize();
  cpu.eflags = ok ? cpu.eflags | ZF : cpu.eflags & ~ZF;
};
const hArpl: Handler = (cpu, i) => {
  if (!isProtected(cpu)) ud(cpu);
  const lin = i.mem ? i.ea(cpu, i) : 0;
  const dst = i.mem ? cpu.rdw(1, lin) : cpu.r16[i.rmN << 1];
  const src = cpu.r16[i.regN << 1];
  cpu.materialize();
  if ((dst & 3) < (src & 3)) {
    const v = (dst & ~3) | (src & 3);
    if (i.mem) cpu.wr16(lin, v);
    else cpu.r16[i.rmN << 1] = v;
    cpu.eflags |= ZF;
  } else cpu.eflags &= ~ZF;
};
const hWait: Handler = (cpu) => fpuWait(cpu);
const hEsc: Handler = (cpu, i) => fpuEscape(cpu, i);
const hUd: Handler = (cpu) => ud(cpu);
/** 0F AE: FXSAVE (/0), FXRSTOR (/1); the SSE-only forms are #UD (no SSE). */
const hFxsave: Handler = (cpu, i) => {
  if (!i.mem || (cpu.cr4 & CR4_OSFXSR) === 0) ud(cpu);
  fxsave(cpu, i.ea(cpu, i), i.op === 1);
};

// ------------------------------------------------------------------ the table

function ent(
  fn: Handler | null,
  modrm = false,
  imm = I_NONE,
  byte = false,
  op = 0,
  end = false,
): OpEntry {
  return { fn, modrm, imm, byte, op, end, group: null };
}
function grp(entries: (OpEntry | null)[]): OpEntry {
  return { fn: null, modrm: true, imm: I_NONE, byte: false, op: 0, end: false, group: entries };
}

/**
 * Whether opcode `opc` (0x100 + second byte for 0F xx) with ModRM.reg `reg` writes its memory
 * operand (which then needs a writable segment). CMP/TEST/BT and loads do not.
 */
export function writesMemory(opc: number, reg: number): boolean {
  if (opc < 0x40) return (opc & 7) < 2 && (opc >> 3) !== 7; // ALU r/m, r (not CMP)
  switch (opc) {
    case 0x80:
    case 0x81:
    case 0x82:
    case 0x83:
      return reg !== 7;
    case 0x86:
    case 0x87:
    case 0x88:
    case 0x89:
    case 0x8c:
    case 0x8f:
    case 0xa2:
    case 0xa3:
    case 0xc0:
    case 0xc1:
    case 0xc6:
    case 0xc7:
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
      return true;
    case 0xf6:
    case 0xf7:
      return reg === 2 || reg === 3;
    case 0xfe:
    case 0xff:
      return reg < 2;
    case 0xd9:
      return reg === 2 || reg === 3 || reg >= 6;
    case 0xdb:
      return reg === 1 || reg === 2 || reg === 3 || reg === 7;
    case 0xdd:
      return reg === 1 || reg === 2 || reg === 3 || reg >= 6;
    case 0xdf:
      return reg === 1 || reg === 2 || reg === 3 || reg === 6 || reg === 7;
    case 0x100:
      return reg < 2; // SLDT, STR
    case 0x101:
      return reg < 2 || reg === 4; // SGDT, SIDT, SMSW
    case 0x1a4:
    case 0x1a5:
    case 0x1ab:
    case 0x1ac:
    case 0x1ad:
    case 0x1b0:
    case 0x1b1:
    case 0x1b3:
    case 0x1bb:
    case 0x1c0:
    case 0x1c1:
      return true;
    case 0x1ae:
      return reg === 0; // FXSAVE
    case 0x1ba:
      return reg >= 5; // BTS, BTR, BTC
    case 0x1c7:
      return reg === 1; // CMPXCHG8B
  }
  return opc >= 0x190 && opc <= 0x19f; // SETcc
}

/** Executes #UD. */
export const UD_ENTRY: OpEntry = ent(hUd);

/** The opcode table: [0x00..0xff] one-byte, [0x100..0x1ff] two-byte (0F xx). */
export const OPCODES: (OpEntry | null)[] = new Array(512).fill(null);
const T = OPCODES;

for (let op = 0; op < 8; op++) {
  const b = op << 3;
  T[b] = ent(hAluRmR, true, I_NONE, true, op);
  T[b + 1] = ent(hAluRmR, true, I_NONE, false, op);
  T[b + 2] = ent(hAluRRm, true, I_NONE, true, op);
  T[b + 3] = ent(hAluRRm, true, I_NONE, false, op);
  T[b + 4] = ent(hAluAccI, false, I_B, true, op);
  T[b + 5] = ent(hAluAccI, false, I_V, false, op);
}
T[0x06] = ent(hPushSeg, false, I_NONE, false, ES);
T[0x07] = ent(hPopSeg, false, I_NONE, false, ES);
T[0x0e] = ent(hPushSeg, false, I_NONE, false, CS);
T[0x16] = ent(hPushSeg, false, I_NONE, false, SS);
T[0x17] = ent(hPopSeg, false, I_NONE, false, SS);
T[0x1e] = ent(hPushSeg, false, I_NONE, false, DS);
T[0x1f] = ent(hPopSeg, false, I_NONE, false, DS);
T[0x27] = ent(hDaa);
T[0x2f] = ent(hDas);
T[0x37] = ent(hAaa);
T[0x3f] = ent(hAas);
for (let r = 0; r < 8; r++) {
  T[0x40 + r] = ent(hIncReg);
  T[0x48 + r] = ent(hDecReg);
  T[0x50 + r] = ent(hPushReg);
  T[0x58 + r] = ent(hPopReg);
  T[0x90 + r] = ent(hXchgAcc);
  T[0xb0 + r] = ent(hMovRegI, false, I_B, true);
  T[0xb8 + r] = ent(hMovRegI, false, I_V);
}
T[0x90] = ent(hNop);
T[0x60] = ent(hPusha);
T[0x61] = ent(hPopa);
T[0x62] = ent(hBound, true);
T[0x63] = ent(hArpl, true);
T[0x68] = ent(hPushI, false, I_V);
T[0x69] = ent(hImulRRmI, true, I_V);
T[0x6a] = ent(hPushI, false, I_BS);
T[0x6b] = ent(hImulRRmI, true, I_BS);
T[0x6c] = ent(hIns, false, I_NONE, true);
T[0x6d] = ent(hIns);
T[0x6e] = ent(hOuts, false, I_NONE, true);
T[0x6f] = ent(hOuts);
for (let cc = 0; cc < 16; cc++) {
  T[0x70 + cc] = ent(hJcc, false, I_J8, false, cc, true);
  T[0x180 + cc] = ent(hJcc, false, I_JV, false, cc, true);
  T[0x140 + cc] = ent(hCmov, true, I_NONE, false, cc);
  T[0x190 + cc] = ent(hSetcc, true, I_NONE, true, cc);
}
const g1 = (byte: boolean, imm: number) =>
  grp([0, 1, 2, 3, 4, 5, 6, 7].map((op) => ent(hAluRmI, true, imm, byte, op)));
T[0x80] = g1(true, I_B);
T[0x81] = g1(false, I_V);
T[0x82] = g1(true, I_B);
T[0x83] = g1(false, I_BS);
T[0x84] = ent(hTestRmR, true, I_NONE, true);
T[0x85] = ent(hTestRmR, true);
T[0x86] = ent(hXchgRmR, true, I_NONE, true);
T[0x87] = ent(hXchgRmR, true);
T[0x88] = ent(hMovRmR, true, I_NONE, true);
T[0x89] = ent(hMovRmR, true);
T[0x8a] = ent(hMovRRm, true, I_NONE, true);
T[0x8b] = ent(hMovRRm, true);
T[0x8c] = ent(hMovRmSeg, true);
T[0x8d] = ent(hLea, true);
T[0x8e] = ent(hMovSegRm, true);
T[0x8f] = grp([ent(hPopRm, true), null, null, null, null, null, null, null]);
T[0x98] = ent(hCbw);
T[0x99] = ent(hCwd);
T[0x9a] = ent(hCallFar, false, I_P, false, 0, true);
T[0x9b] = ent(hWait);
T[0x9c] = ent(hPushf);
T[0x9d] = ent(hPopf);
T[0x9e] = ent(hSahf);
T[0x9f] = ent(hLahf);
T[0xa0] = ent(hMovAccMoff, false, I_O, true);
T[0xa1] = ent(hMovAccMoff, false, I_O);
T[0xa2] = ent(hMovMoffAcc, false, I_O, true);
T[0xa3] = ent(hMovMoffAcc, false, I_O);
T[0xa4] = ent(hMovs, false, I_NONE, true);
T[0xa5] = ent(hMovs);
T[0xa6] = ent(hCmps, false, I_NONE, true);
T[0xa7] = ent(hCmps);
T[0xa8] = ent(hTestAccI, false, I_B, true);
T[0xa9] = ent(hTestAccI, false, I_V);
T[0xaa] = ent(hStos, false, I_NONE, true);
T[0xab] = ent(hStos);
T[0xac] = ent(hLods, false, I_NONE, true);
T[0xad] = ent(hLods);
T[0xae] = ent(hScas, false, I_NONE, true);
T[0xaf] = ent(hScas);
const g2 = (byte: boolean, fn: Handler, imm: number) =>
  grp([0, 1, 2, 3, 4, 5, 6, 7].map((op) => ent(fn, true, imm, byte, op)));
T[0xc0] = g2(true, hShiftI, I_B);
T[0xc1] = g2(false, hShiftI, I_B);
T[0xc2] = ent(hRet, false, I_W, false, 0, true);
T[0xc3] = ent(hRet, false, I_NONE, false, 0, true);
T[0xc4] = ent(hLxs, true, I_NONE, false, ES);
T[0xc5] = ent(hLxs, true, I_NONE, false, DS);
T[0xc6] = grp([ent(hMovRmI, true, I_B, true), null, null, null, null, null, null, null]);
T[0xc7] = grp([ent(hMovRmI, true, I_V), null, null, null, null, null, null, null]);
T[0xc8] = ent(hEnter, false, I_WB);
T[0xc9] = ent(hLeave);
T[0xca] = ent(hRetf, false, I_W, false, 0, true);
T[0xcb] = ent(hRetf, false, I_NONE, false, 0, true);
T[0xcc] = ent(hInt3, false, I_NONE, false, 0, true);
T[0xcd] = ent(hInt, false, I_B, false, 0, true);
T[0xce] = ent(hInto, false, I_NONE, false, 0, true);
T[0xcf] = ent(hIret, false, I_NONE, false, 0, true);
T[0xd0] = g2(true, hShift1, I_NONE);
T[0xd1] = g2(false, hShift1, I_NONE);
T[0xd2] = g2(true, hShiftCl, I_NONE);
T[0xd3] = g2(false, hShiftCl, I_NONE);
T[0xd4] = ent(hAam, false, I_B);
T[0xd5] = ent(hAad, false, I_B);
T[0xd6] = ent(hSalc);
T[0xd7] = ent(hXlat);
for (let k = 0; k < 8; k++) T[0xd8 + k] = ent(hEsc, true, I_NONE, false, k);
T[0xe0] = ent(hLoop, false, I_J8, false, 0, true);
T[0xe1] = ent(hLoop, false, I_J8, false, 1, true);
T[0xe2] = ent(hLoop, false, I_J8, false, 2, true);
T[0xe3] = ent(hJcxz, false, I_J8, false, 0, true);
T[0xe4] = ent(hInI, false, I_B, true);
T[0xe5] = ent(hInI, false, I_B);
T[0xe6] = ent(hOutI, false, I_B, true);
T[0xe7] = ent(hOutI, false, I_B);
T[0xe8] = ent(hCallRel, false, I_JV, false, 0, true);
T[0xe9] = ent(hJmpRel, false, I_JV, false, 0, true);
T[0xea] = ent(hJmpFar, false, I_P, false, 0, true);
T[0xeb] = ent(hJmpRel, false, I_J8, false, 0, true);
T[0xec] = ent(hInDx, false, I_NONE, true);
T[0xed] = ent(hInDx);
T[0xee] = ent(hOutDx, false, I_NONE, true);
T[0xef] = ent(hOutDx);
T[0xf1] = ent(hInt1, false, I_NONE, false, 0, true);
T[0xf4] = ent(hHlt, false, I_NONE, false, 0, true);
T[0xf5] = ent(hFlagOp, false, I_NONE, false, 0);
const g3 = (byte: boolean) =>
  grp([
    ent(hTestRmI, true, byte ? I_B : I_V, byte),
    ent(hTestRmI, true, byte ? I_B : I_V, byte),
    ent(hNot, true, I_NONE, byte),
    ent(hNeg, true, I_NONE, byte),
    ent(hMulDiv, true, I_NONE, byte, 4),
    ent(hMulDiv, true, I_NONE, byte, 5),
    ent(hMulDiv, true, I_NONE, byte, 6),
    ent(hMulDiv, true, I_NONE, byte, 7),
  ]);
T[0xf6] = g3(true);
T[0xf7] = g3(false);
T[0xf8] = ent(hFlagOp, false, I_NONE, false, 1);
T[0xf9] = ent(hFlagOp, false, I_NONE, false, 2);
T[0xfa] = ent(hFlagOp, false, I_NONE, false, 3);
T[0xfb] = ent(hFlagOp, false, I_NONE, false, 4);
T[0xfc] = ent(hFlagOp, false, I_NONE, false, 5);
T[0xfd] = ent(hFlagOp, false, I_NONE, false, 6);
T[0xfe] = grp([
  ent(hIncRm, true, I_NONE, true),
  ent(hDecRm, true, I_NONE, true),
  null,
  null,
  null,
  null,
  null,
  null,
]);
T[0xff] = grp([
  ent(hIncRm, true),
  ent(hDecRm, true),
  ent(hCallRm, true, I_NONE, false, 0, true),
  ent(hFarRm, true, I_NONE, false, 3, true),
  ent(hJmpRm, true, I_NONE, false, 0, true),
  ent(hFarRm, true, I_NONE, false, 5, true),
  ent(hPushRm, true),
  null,
]);

// two-byte opcodes
T[0x100] = grp(
  [0, 1, 2, 3, 4, 5, -1, -1].map((op) => op < 0 ? null : ent(hSys00, true, I_NONE, false, op)),
);
T[0x101] = grp([
  ent(hDescTable, true, I_NONE, false, 0),
  ent(hDescTable, true, I_NONE, false, 1),
  ent(hDescTable, true, I_NONE, false, 2),
  ent(hDescTable, true, I_NONE, false, 3),
  ent(hSmsw, true),
  null,
  ent(hLmsw, true),
  ent(hInvlpg, true),
]);
T[0x102] = ent(hLarLsl, true, I_NONE, false, 0);
T[0x103] = ent(hLarLsl, true, I_NONE, false, 1);
T[0x106] = ent(hClts);
T[0x108] = ent(hInvd);
T[0x109] = ent(hInvd);
T[0x10b] = ent(hUd);
// 0F 18 (prefetch hints) and 0F 19..1F (hint NOPs, 0F 1F = multi-byte NOP): no-ops with ModRM
for (let op = 0x118; op <= 0x11f; op++) T[op] = ent(hNop, true);
T[0x120] = ent(hMovFromCr, true);
T[0x121] = ent(hMovFromDr, true);
T[0x122] = ent(hMovToCr, true, I_NONE, false, 0, true);
T[0x123] = ent(hMovToDr, true);
T[0x130] = ent(hWrmsr);
T[0x131] = ent(hRdtsc, false, I_NONE, false, 0, true); // ends its block: the count is exact
T[0x132] = ent(hRdmsr);
T[0x134] = ent(hSysenter, false, I_NONE, false, 0, true);
T[0x135] = ent(hSysexit, false, I_NONE, false, 0, true);
T[0x1a0] = ent(hPushSeg, false, I_NONE, false, FS);
T[0x1a1] = ent(hPopSeg, false, I_NONE, false, FS);
T[0x1a2] = ent(hCpuid);
T[0x1a3] = ent(hBtR, true, I_NONE, false, 0);
T[0x1a4] = ent(hShld, true, I_B, false, 0);
T[0x1a5] = ent(hShld, true, I_NONE, false, 1);
T[0x1a8] = ent(hPushSeg, false, I_NONE, false, GS);
T[0x1a9] = ent(hPopSeg, false, I_NONE, false, GS);
T[0x1ab] = ent(hBtR, true, I_NONE, false, 1);
T[0x1ac] = ent(hShrd, true, I_B, false, 0);
T[0x1ad] = ent(hShrd, true, I_NONE, false, 1);
T[0x1ae] = grp([
  ent(hFxsave, true, I_NONE, false, 0),
  ent(hFxsave, true, I_NONE, false, 1),
  null,
  null,
  null,
  null,
  null,
  null,
]);
T[0x1af] = ent(hImulRRm, true);
T[0x1b0] = ent(hCmpxchg, true, I_NONE, true);
T[0x1b1] = ent(hCmpxchg, true);
T[0x1b2] = ent(hLxs, true, I_NONE, false, SS);
T[0x1b3] = ent(hBtR, true, I_NONE, false, 2);
T[0x1b4] = ent(hLxs, true, I_NONE, false, FS);
T[0x1b5] = ent(hLxs, true, I_NONE, false, GS);
T[0x1b6] = ent(hMovzx, true, I_NONE, false, 0);
T[0x1b7] = ent(hMovzx, true, I_NONE, false, 1);
T[0x1ba] = grp(
  [null, null, null, null, 0, 1, 2, 3].map((op) =>
    op === null ? null : ent(hBtI, true, I_B, false, op)
  ),
);
T[0x1bb] = ent(hBtR, true, I_NONE, false, 3);
T[0x1bc] = ent(hBsf, true);
T[0x1bd] = ent(hBsr, true);
T[0x1be] = ent(hMovsx, true, I_NONE, false, 0);
T[0x1bf] = ent(hMovsx, true, I_NONE, false, 1);
T[0x1c0] = ent(hXadd, true, I_NONE, true);
T[0x1c1] = ent(hXadd, true);
T[0x1c7] = grp([null, ent(hCmpxchg8b, true), null, null, null, null, null, null]);
for (let r = 0; r < 8; r++) T[0x1c8 + r] = ent(hBswap);
