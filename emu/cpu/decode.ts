/**
 * The decoder: bytes at CS:EIP -> {@link Instr} records, a block at a time. Which handler and which
 * operands an opcode has comes from the table in ops.ts ({@link OpEntry}); this file only knows the
 * encoding (prefixes, ModRM, SIB, displacements, immediates).
 * @module
 */

import { type Cpu, CpuFault } from "./cpu.ts";
import { CS, DS, GP, I_B, I_BS, I_J8, I_JV, I_O, I_P, I_V, I_W, I_WB, SS, UD } from "./consts.ts";
import { Block, type EaFn, type Handler, Instr, ZERO16, ZERO32 } from "./instr.ts";
import { fuse, specialize } from "./fast.ts";
import { OPCODES, type OpEntry, UD_ENTRY, writesMemory } from "./ops.ts";

const tooLong: Handler = (cpu) => cpu.fault(GP, 0);

/**
 * The most records one block holds (96, not 48: fewer hot blocks are cut, and a cut block gets no
 * jumps inside it from the block compiler; Linux decompression ~6% faster).
 */
export const MAX_BLOCK = 96;

/** Register view index of register n for operand size sz (byte registers AH..BH sit at +1). */
export function regIndex(sz: number, n: number): number {
  return sz === 0 ? ((n & 3) << 2) | (n >> 2) : sz === 1 ? n << 1 : n;
}

// Each address function also checks the segment limit for the operand's size.
const ea16: EaFn = (cpu, i) => {
  const off = (cpu.r16[i.base] + cpu.r16[i.index] + i.disp) & 0xffff;
  if (off + i.accN > cpu.segChk[i.seg]) cpu.limitFault(i.seg, off, i.accN, false);
  return (cpu.segBase[i.seg] + off) | 0;
};
const ea32: EaFn = (cpu, i) => {
  const off = (cpu.r32[i.base] + (cpu.r32[i.index] << i.scale) + i.disp) >>> 0;
  if (off + i.accN > cpu.segChk[i.seg]) cpu.limitFault(i.seg, off, i.accN, false);
  return (cpu.segBase[i.seg] + off) | 0;
};
const ea32Base: EaFn = (cpu, i) => {
  const off = (cpu.r32[i.base] + i.disp) >>> 0;
  if (off + i.accN > cpu.segChk[i.seg]) cpu.limitFault(i.seg, off, i.accN, false);
  return (cpu.segBase[i.seg] + off) | 0;
};
// The same for operands the instruction writes: they also need a writable segment.
const ea16w: EaFn = (cpu, i) => {
  const off = (cpu.r16[i.base] + cpu.r16[i.index] + i.disp) & 0xffff;
  if (off + i.accN > cpu.segChkW[i.seg]) cpu.limitFault(i.seg, off, i.accN, true);
  return (cpu.segBase[i.seg] + off) | 0;
};
const ea32w: EaFn = (cpu, i) => {
  const off = (cpu.r32[i.base] + (cpu.r32[i.index] << i.scale) + i.disp) >>> 0;
  if (off + i.accN > cpu.segChkW[i.seg]) cpu.limitFault(i.seg, off, i.accN, true);
  return (cpu.segBase[i.seg] + off) | 0;
};
const ea32Basew: EaFn = (cpu, i) => {
  const off = (cpu.r32[i.base] + i.disp) >>> 0;
  if (off + i.accN > cpu.segChkW[i.seg]) cpu.limitFault(i.seg, off, i.accN, true);
  return (cpu.segBase[i.seg] + off) | 0;
};
const eaNone: EaFn = () => 0;

/**
 * JS for the linear address of `i`'s memory operand with its fields folded in (for the block
 * compiler, jit.ts; O is a scratch local there): the same arithmetic and limit check as its
 * address function, or null.
 */
export function eaSource(i: Instr, flat?: (seg: number, write: boolean) => boolean): string | null {
  const f = i.ea;
  const w = f === ea16w || f === ea32w || f === ea32Basew;
  let off: string;
  if (f === ea16 || f === ea16w) {
    off = `(cpu.r16[${i.base}] + cpu.r16[${i.index}] + ${i.disp}) & 0xffff`;
  } else if (f === ea32 || f === ea32w) {
    off = `(cpu.r32[${i.base}] + (cpu.r32[${i.index}] << ${i.scale}) + ${i.disp}) >>> 0`;
  } else if (f === ea32Base || f === ea32Basew) {
    off = i.base === ZERO32 ? `${i.disp >>> 0}` : `(cpu.r32[${i.base}] + ${i.disp}) >>> 0`;
  } else return null;
  const lin = w ? "linW" : "linR";
  if (f !== ea16 && f !== ea16w && flat?.(i.seg, w)) {
    // base 0, limit 4G (the caller checks that it still is): only a wrap past 4G faults
    if (i.accN === 0) return `((${off}) | 0)`;
    return `((O = ${off}) > ${0xffffffff - i.accN} ? cpu.${lin}(${i.seg}, O, ${i.accN}) : O | 0)`;
  }
  // the quick limit check inline; the method repeats it and faults (or allows expand-down)
  const chk = w ? "segChkW" : "segChk";
  return `((O = ${off}) + ${i.accN} > cpu.${chk}[${i.seg}] ? cpu.${
    w ? "linW" : "linR"
  }(${i.seg}, O, ${i.accN}) : (cpu.segBase[${i.seg}] + O) | 0)`;
}

/** The offset part of a memory operand (LEA, BOUND's and LxS's addresses are built from it). */
export function eaOffset(cpu: Cpu, i: Instr): number {
  if (i.asz === 0) return (cpu.r16[i.base] + cpu.r16[i.index] + i.disp) & 0xffff;
  return (cpu.r32[i.base] + (cpu.r32[i.index] << i.scale) + i.disp) | 0;
}

// 16-bit ModRM rm -> base/index (as r16 view indices) and default segment
const RM16_BASE = [3 * 2, 3 * 2, 5 * 2, 5 * 2, 6 * 2, 7 * 2, 5 * 2, 3 * 2];
const RM16_INDEX = [6 * 2, 7 * 2, 6 * 2, 7 * 2, ZERO16, ZERO16, ZERO16, ZERO16];
const RM16_SS = [false, false, true, true, false, false, true, false];

let fetchPtr = 0;
/** Linear address one past the last byte the CS limit allows (instruction fetch check). */
let fetchEnd = 0;
function fb(cpu: Cpu): number {
  if (fetchPtr === fetchEnd) cpu.fault(GP, 0);
  return cpu.fetch8(fetchPtr++ | 0);
}
function fw(cpu: Cpu): number {
  const lo = fb(cpu);
  return lo | (fb(cpu) << 8);
}
function fd(cpu: Cpu): number {
  const lo = fw(cpu);
  return (lo | (fw(cpu) << 16)) | 0;
}

/** The entry that handled the last decoded instruction ends a block. */
let lastEnds = false;
/** The last decoded instruction is a Jcc (a block goes on past it: a side exit). */
let lastJcc = false;

/** Decodes one instruction at linear address lin. Faults (#PF/#GP) propagate. */
export function decodeOne(cpu: Cpu, lin: number): Instr {
  fetchPtr = lin;
  // bytes beyond the code segment's limit fault (#GP(0)) when fetched
  const off = (lin - cpu.segBase[CS]) >>> 0;
  const room = cpu.segLimit[CS] - off + 1;
  fetchEnd = room >= 16 ? lin - 1 : room <= 0 ? lin : (lin + room) | 0;
  const code32 = cpu.code32;
  let osz = code32 ? 2 : 1;
  let asz = code32;
  let seg = -1;
  let rep = 0;
  let lock = false;
  let b: number;
  for (let n = 0;; n++) {
    b = fb(cpu);
    if (n >= 15) break; // 15 prefixes: whatever follows makes the instruction too long
    if (b === 0x66) osz = code32 ? 1 : 2;
    else if (b === 0x67) asz = code32 ^ 1;
    else if (b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e) seg = (b >> 3) & 3;
    else if (b === 0x64 || b === 0x65) seg = b - 0x60;
    else if (b === 0xf3) rep = 1;
    else if (b === 0xf2) rep = 2;
    else if (b === 0xf0) lock = true;
    else break;
  }
  let opc = b;
  if (b === 0x0f) opc = 0x100 | fb(cpu);
  let e: OpEntry | null = OPCODES[opc];
  let modrm = -1;
  if (e !== null && e.modrm) {
    modrm = fb(cpu);
    if (e.group !== null) e = e.group[(modrm >> 3) & 7];
  }
  if (e === null) e = UD_ENTRY;
  const i = new Instr(e.fn as Handler, eaNone);
  i.opcode = opc;
  i.op = e.op;
  i.sz = e.byte ? 0 : osz;
  i.asz = asz;
  i.rep = rep;
  i.seg = seg >= 0 ? seg : DS;
  if (modrm < 0) {
    i.regN = opc & 7;
    i.reg = regIndex(i.sz, opc & 7);
  } else {
    // MOV to/from CR/DR ignore ModRM.mod: the operand is always a register
    const mod = opc >= 0x120 && opc <= 0x123 ? 3 : modrm >> 6,
      reg = (modrm >> 3) & 7,
      rm = modrm & 7;
    i.regN = reg;
    i.reg = regIndex(i.sz, reg);
    i.rmN = rm;
    i.rm = regIndex(i.sz, rm);
    if (mod !== 3) {
      i.mem = true;
      if (asz === 0) {
        i.ea = ea16;
        if (mod === 0 && rm === 6) {
          i.base = ZERO16;
          i.index = ZERO16;
          i.disp = fw(cpu);
        } else {
          i.base = RM16_BASE[rm];
          i.index = RM16_INDEX[rm];
          if (seg < 0 && RM16_SS[rm]) i.seg = SS;
          i.disp = mod === 1 ? (fb(cpu) << 24) >> 24 : mod === 2 ? fw(cpu) : 0;
        }
      } else {
        let base = rm, index = 4, scale = 0;
        if (rm === 4) {
          const sib = fb(cpu);
          scale = sib >> 6;
          index = (sib >> 3) & 7;
          base = sib & 7;
        }
        if (base === 5 && mod === 0) {
          i.base = ZERO32;
          i.disp = fd(cpu);
        } else {
          i.base = base;
          if (seg < 0 && (base === 4 || base === 5)) i.seg = SS;
          i.disp = mod === 1 ? (fb(cpu) << 24) >> 24 : mod === 2 ? fd(cpu) : 0;
        }
        i.index = index === 4 ? ZERO32 : index;
        i.scale = scale;
        i.ea = i.index === ZERO32 ? ea32Base : ea32;
      }
    }
  }
  switch (e.imm) {
    case I_B:
      i.imm = fb(cpu);
      break;
    case I_BS:
    case I_J8:
      i.imm = (fb(cpu) << 24) >> 24;
      break;
    case I_V:
      i.imm = osz === 2 ? fd(cpu) : fw(cpu);
      break;
    case I_JV:
      i.imm = osz === 2 ? fd(cpu) : (fw(cpu) << 16) >> 16;
      break;
    case I_W:
      i.imm = fw(cpu);
      break;
    case I_WB:
      i.imm = fw(cpu);
      i.imm2 = fb(cpu);
      break;
    case I_P:
      i.imm = osz === 2 ? fd(cpu) >>> 0 : fw(cpu);
      i.imm2 = fw(cpu);
      break;
    case I_O:
      i.disp = asz ? fd(cpu) : fw(cpu);
      i.base = asz ? ZERO32 : ZERO16;
      i.index = asz ? ZERO32 : ZERO16;
      i.ea = asz ? ea32Base : ea16;
      i.mem = true;
      break;
  }
  if (i.mem && writesMemory(opc, i.regN)) {
    i.ea = i.ea === ea16 ? ea16w : i.ea === ea32 ? ea32w : i.ea === ea32Base ? ea32Basew : i.ea;
  }
  i.accN = opc === 0x1b6 || opc === 0x1be
    ? 0
    : opc === 0x1b7 || opc === 0x1bf
    ? 1
    : (1 << i.sz) - 1;
  i.len = (fetchPtr - lin) | 0;
  if (i.len > 15) {
    i.fn = tooLong; // more than 15 bytes (redundant prefixes): #GP(0)
  } else if (e !== UD_ENTRY) {
    const s = specialize(i);
    if (s !== null) i.fn = s;
  }
  // REP string instructions may restart themselves, which needs EIP: they end blocks too
  lastEnds = e.end || (rep !== 0 && ((opc >= 0xa4 && opc <= 0xaf) || (opc >= 0x6c && opc <= 0x6f)));
  lastJcc = (opc >= 0x70 && opc <= 0x7f) || (opc >= 0x180 && opc <= 0x18f);
  if (lock && !lockable(opc, i.regN, i.mem)) {
    i.fn = lockUd;
    lastEnds = true;
  }
  return i;
}

/** A LOCK prefix on an instruction that cannot take it: #UD (decided once, at decode). */
const lockUd: Handler = (cpu) => cpu.fault(UD);

/**
 * Whether LOCK is allowed: the read-modify-write instructions (ADD, ADC, AND, BTC, BTR, BTS,
 * CMPXCHG, CMPXCHG8B, DEC, INC, NEG, NOT, OR, SBB, SUB, XOR, XADD, XCHG) with a memory destination.
 */
function lockable(opc: number, reg: number, mem: boolean): boolean {
  if (!mem) return false;
  if (opc < 0x38) return (opc & 7) <= 1; // ALU r/m, r (not CMP 38/39, not the reg/imm forms)
  if (opc >= 0x80 && opc <= 0x83) return reg !== 7; // group 1 but CMP
  if (opc === 0x86 || opc === 0x87) return true; // XCHG
  if (opc === 0xf6 || opc === 0xf7) return reg === 2 || reg === 3; // NOT, NEG
  if (opc === 0xfe || opc === 0xff) return reg <= 1; // INC, DEC
  if (opc === 0x1ab || opc === 0x1b3 || opc === 0x1bb) return true; // BTS, BTR, BTC
  if (opc === 0x1ba) return reg >= 5; // BTS/BTR/BTC imm8
  if (opc === 0x1b0 || opc === 0x1b1 || opc === 0x1c0 || opc === 0x1c1) return true;
  return opc === 0x1c7 && reg === 1; // CMPXCHG8B
}

/** Decodes the block starting at linear `lin` (physical `phys`). */
export function decodeBlock(cpu: Cpu, lin: number, phys: number): Block {
  const b = new Block();
  b.phys = phys;
  let p = lin;
  for (;;) {
    let i: Instr;
    try {
      i = decodeOne(cpu, p);
    } catch (err) {
      if (err instanceof CpuFault && b.ins.length > 0) break; // the fault belongs to a later run
      throw err;
    }
    const crosses = ((p & 0xfff) + i.len) > 0x1000;
    if (crosses && b.ins.length > 0) break; // decoded again as a block of its own
    i.end = (p - lin + i.len) | 0;
    p = (p + i.len) | 0;
    const prev = b.ins.length > 0 ? b.ins[b.ins.length - 1] : null;
    const jcc = lastJcc && i.fn !== lockUd;
    if (prev === null || i.fn === lockUd || !fuse(prev, i)) b.ins.push(i);
    if (jcc) b.ins[b.ins.length - 1].exit = true; // the Jcc or the pair fused with it
    if (crosses) {
      b.phys2 = 0; // the caller records the second page's physical address
      break;
    }
    if ((lastEnds && !jcc) || b.ins.length >= MAX_BLOCK || (p & 0xfff) === 0) break;
  }
  return b;
}
