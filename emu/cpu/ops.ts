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
  imul2,
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
import { BP, BR, CS, DE, DS, ES, FS, GP, GS, OFV, SS } from "./consts.ts";
import { eaOffset, regIndex } from "./decode.ts";
import { I_B, I_BS, I_J8, I_JV, I_NONE, I_O, I_P, I_V, I_W, I_WB } from "./consts.ts";
import { AF, CF, DF, IF, OF, SIGN, VM, ZF } from "./flags.ts";
import type { Handler, Instr } from "./instr.ts";
import { deliverInterrupt, farReturn, farTransfer, iret, isProtected, loadSeg } from "./system.ts";
import {
  getReg,
  ioIn,
  ioOut,
  iopl,
  jumpTo,
  needCpl0,
  readRm,
  readRmSz,
  setReg,
  ud,
  writeRm,
} from "./operands.ts";
import { hCmps, hIns, hLods, hMovs, hOuts, hScas, hStos } from "./strings.ts";
import {
  hArpl,
  hClts,
  hCpuid,
  hDescTable,
  hEsc,
  hFxsave,
  hInvd,
  hInvlpg,
  hLarLsl,
  hLmsw,
  hMovFromCr,
  hMovFromDr,
  hMovToCr,
  hMovToDr,
  hNop,
  hRdmsr,
  hRdtsc,
  hSmsw,
  hSys00,
  hSysenter,
  hSysexit,
  hUd,
  hWait,
  hWrmsr,
} from "./sysops.ts";

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
  if ((bp >>> 0) + (i.sz === 2 ? 3 : 1) > cpu.segChk[SS]) {
    cpu.limitFault(SS, bp >>> 0, i.sz === 2 ? 3 : 1, false);
  }
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
const hInt1: Handler = (cpu) => deliverInterrupt(cpu, 1, -1, 0); // ICEBP: no gate DPL check
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
