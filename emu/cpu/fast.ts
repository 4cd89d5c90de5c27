/**
 * Specialised handlers for the hottest instruction forms. The generic handlers in ops.ts branch
 * on operand size, register-or-memory and ALU operation at run time; here one handler is built
 * per (operation, size, form) from a template, with those choices made at build time, so that
 * each is small and monomorphic. The decoder swaps one in when the decoded form matches
 * ({@link specialize}); semantics stay defined by ops.ts/alu.ts, which the 286 vectors check.
 * @module
 */

import { imul2, shift } from "./alu.ts";
import type { Handler, Instr } from "./instr.ts";
import {
  LOP_ADC,
  LOP_ADD,
  LOP_DEC,
  LOP_INC,
  LOP_LOGIC,
  LOP_RESULT,
  LOP_SBB,
  LOP_SUB,
} from "./flags.ts";

const VIEW = ["r8", "r16", "r32"];
const RD = ["rd8", "rd16", "rd32"];
const RDW = ["rdw8", "rdw16", "rdw32"];
const WR = ["wr8", "wr16", "wr32"];
const MASKS = ["0xff", "0xffff", "-1"];

/** JS computing `r` from `a` and `b` for ALU op (0..7), setting the lazy-flag record. */
function aluBody(op: number, sz: number): string {
  const m = MASKS[sz];
  const set = (lop: number, expr: string) =>
    `const r = ${expr}; cpu.la = a; cpu.lb = b; cpu.lr = r; cpu.lsz = ${sz}; cpu.lop = ${lop};`;
  switch (op) {
    case 0:
      return set(LOP_ADD, "a + b");
    case 1:
      return set(LOP_LOGIC, "a | b");
    case 2:
      return `const c = cpu.cf(); cpu.lcin = c; ${set(LOP_ADC, "a + b + c")}`;
    case 3:
      return `const c = cpu.cf(); cpu.lcin = c; ${set(LOP_SBB, "a - b - c")}`;
    case 4:
      return set(LOP_LOGIC, "a & b");
    case 6:
      return set(LOP_LOGIC, "a ^ b");
    default:
      return set(LOP_SUB, "a - b") + (m ? "" : "");
  }
}

/** The JS body of each generated register-only handler (for fusing with a following Jcc). */
const BODIES = new Map<Handler, string>();
/** The JS body of every generated handler (the block compiler, jit.ts, inlines them). */
const ALL_BODIES = new Map<Handler, string>();

/** The source of a generated handler's body (`cpu` and `i` free), or undefined. */
export function handlerBody(fn: Handler): string | undefined {
  return ALL_BODIES.get(fn);
}

/**
 * Shared semantics that generated bodies call as `H.name(...)` (the block compiler passes the
 * same object), so that a template resolves operand forms without repeating the operation.
 */
export const H = { shift, imul2 };

function make(name: string, body: string, fusable = false): Handler {
  // deno-lint-ignore no-explicit-any
  const f = new Function("H", `return function (cpu, i) {\n${body}\n};`)(H) as any;
  Object.defineProperty(f, "name", { value: name });
  if (fusable) BODIES.set(f, body);
  ALL_BODIES.set(f, body);
  return f as Handler;
}

function store(sz: number, target: string): string {
  return sz === 2 ? `${target} = r | 0;` : `${target} = r;`;
}

/** ALU handlers indexed [form][op][sz]. */
const ALU: Handler[][][] = [];
const FORMS = ["rmr_reg", "rmr_mem", "rrm_reg", "rrm_mem", "rmi_reg", "rmi_mem", "acci"];
for (let f = 0; f < FORMS.length; f++) {
  ALU.push([]);
  for (let op = 0; op < 8; op++) {
    ALU[f].push([]);
    for (let sz = 0; sz < 3; sz++) {
      const v = VIEW[sz];
      const immB = sz === 2 ? "i.imm | 0" : `i.imm & ${MASKS[sz]}`;
      const w = op !== 7;
      let body: string;
      switch (FORMS[f]) {
        case "rmr_reg":
          body = `const R = cpu.${v}; const a = R[i.rm], b = R[i.reg]; ${aluBody(op, sz)} ${
            w ? store(sz, "R[i.rm]") : ""
          }`;
          break;
        case "rmr_mem":
          body = `const b = cpu.${v}[i.reg]; const lin = i.ea(cpu, i); const a = cpu.${
            w ? RDW[sz] : RD[sz]
          }(lin); ${aluBody(op, sz)} ${w ? `cpu.${WR[sz]}(lin, r);` : ""}`;
          break;
        case "rrm_reg":
          body = `const R = cpu.${v}; const a = R[i.reg], b = R[i.rm]; ${aluBody(op, sz)} ${
            w ? store(sz, "R[i.reg]") : ""
          }`;
          break;
        case "rrm_mem":
          body = `const b = cpu.${RD[sz]}(i.ea(cpu, i)); const R = cpu.${v}; const a = R[i.reg]; ${
            aluBody(op, sz)
          } ${w ? store(sz, "R[i.reg]") : ""}`;
          break;
        case "rmi_reg":
          body = `const R = cpu.${v}; const a = R[i.rm], b = ${immB}; ${aluBody(op, sz)} ${
            w ? store(sz, "R[i.rm]") : ""
          }`;
          break;
        case "rmi_mem":
          body = `const b = ${immB}; const lin = i.ea(cpu, i); const a = cpu.${
            w ? RDW[sz] : RD[sz]
          }(lin); ${aluBody(op, sz)} ${w ? `cpu.${WR[sz]}(lin, r);` : ""}`;
          break;
        default:
          body = `const R = cpu.${v}; const a = R[0], b = ${immB}; ${aluBody(op, sz)} ${
            w ? store(sz, "R[0]") : ""
          }`;
      }
      const fusable = !FORMS[f].endsWith("_mem");
      ALU[f][op].push(make(`alu_${FORMS[f]}_${op}_${sz}`, body, fusable));
    }
  }
}

const INC: Handler[] = [1, 2].map((sz) =>
  make(
    `inc_r${sz}`,
    `const R = cpu.${VIEW[sz]}; const a = R[i.reg]; cpu.lcin = cpu.cf(); const r = a + 1; ` +
      `cpu.la = a; cpu.lb = 1; cpu.lr = r; cpu.lsz = ${sz}; cpu.lop = ${LOP_INC}; ${
        store(sz, "R[i.reg]")
      }`,
    true,
  )
);
const DEC: Handler[] = [1, 2].map((sz) =>
  make(
    `dec_r${sz}`,
    `const R = cpu.${VIEW[sz]}; const a = R[i.reg]; cpu.lcin = cpu.cf(); const r = a - 1; ` +
      `cpu.la = a; cpu.lb = 1; cpu.lr = r; cpu.lsz = ${sz}; cpu.lop = ${LOP_DEC}; ${
        store(sz, "R[i.reg]")
      }`,
    true,
  )
);

/** TEST r/m, r (register form) by size. */
const TEST_RR: Handler[] = [0, 1, 2].map((sz) =>
  make(
    `test_rr_${sz}`,
    `const R = cpu.${VIEW[sz]}; const a = R[i.rm], b = R[i.reg]; const r = a & b; ` +
      `cpu.la = a; cpu.lb = b; cpu.lr = r; cpu.lsz = ${sz}; cpu.lop = ${LOP_LOGIC};`,
    true,
  )
);

/** MOV handlers indexed [form][sz]: rm<-reg (reg), rm<-reg (mem), reg<-rm (reg), reg<-rm (mem), reg<-imm. */
const MOV: Handler[][] = [0, 1, 2, 3, 4].map((f) =>
  [0, 1, 2].map((sz) => {
    const v = VIEW[sz];
    switch (f) {
      case 0:
        return make(`mov_rmr_reg_${sz}`, `const R = cpu.${v}; R[i.rm] = R[i.reg];`);
      case 1:
        return make(`mov_rmr_mem_${sz}`, `cpu.${WR[sz]}(i.ea(cpu, i), cpu.${v}[i.reg]);`);
      case 2:
        return make(`mov_rrm_reg_${sz}`, `const R = cpu.${v}; R[i.reg] = R[i.rm];`);
      case 3:
        return make(`mov_rrm_mem_${sz}`, `cpu.${v}[i.reg] = cpu.${RD[sz]}(i.ea(cpu, i));`);
      default:
        return make(`mov_ri_${sz}`, `cpu.${v}[i.reg] = i.imm;`);
    }
  })
);

/** Jcc by condition code, for 16- and 32-bit operand size. */
const COND = [
  "cpu.of() !== 0",
  "cpu.of() === 0",
  "cpu.cf() !== 0",
  "cpu.cf() === 0",
  "cpu.zf() !== 0",
  "cpu.zf() === 0",
  "(cpu.cf() | cpu.zf()) !== 0",
  "(cpu.cf() | cpu.zf()) === 0",
  "cpu.sf() !== 0",
  "cpu.sf() === 0",
  "cpu.pf() !== 0",
  "cpu.pf() === 0",
  "cpu.sf() !== cpu.of()",
  "cpu.sf() === cpu.of()",
  "(cpu.zf() !== 0 || cpu.sf() !== cpu.of())",
  "(cpu.zf() === 0 && cpu.sf() === cpu.of())",
];
const JCC: Handler[][] = [1, 2].map((sz) =>
  COND.map((c, cc) =>
    make(
      `j${cc}_${sz}`,
      `if (${c}) cpu.eip = ${sz === 2 ? "(cpu.eip + i.imm) >>> 0" : "(cpu.eip + i.imm) & 0xffff"};`,
    )
  )
);

const PUSH32 = make("push_r32", "cpu.push32(cpu.r32[i.reg]);");
const CALL32 = make("call_rel32", "const e = cpu.eip; cpu.push32(e); cpu.eip = (e + i.imm) >>> 0;");
const RET32 = make("ret32", "cpu.eip = cpu.pop32() >>> 0;");
const JMP32 = make("jmp_rel32", "cpu.eip = (cpu.eip + i.imm) >>> 0;");
const LEA32 = make(
  "lea32",
  "const R = cpu.r32; R[i.reg] = (R[i.base] + (R[i.index] << i.scale) + i.disp) | 0;",
);
const MOVZX8 = make("movzx_r32_r8", "cpu.r32[i.reg] = cpu.r8[((i.rmN & 3) << 2) | (i.rmN >> 2)];");
const PUSHI32 = make("push_i32", "cpu.push32(i.imm);");
const POP32 = make("pop_r32", "const v = cpu.pop32(); cpu.r32[i.reg] = v;");
/** NOP, PAUSE and the hint NOPs (0F 18..1F): nothing, but a body the block compiler inlines. */
const NOP = make("nop", "");

/** The ModRM register operand of size sz read by JS (the rm field, register form). */
const RM = ["cpu.r8[i.rm]", "cpu.r16[i.rm]", "cpu.r32[i.rm]"];

/** An r/m operand of size sz read into `v` and written back: the read, and the store of `e`. */
function rmw(sz: number, mem: number, v: string): { load: string; put: (e: string) => string } {
  return mem
    ? {
      load: `const lin = i.ea(cpu, i); const ${v} = cpu.${RDW[sz]}(lin);`,
      put: (e) => `cpu.${WR[sz]}(lin, ${e});`,
    }
    : { load: `const ${v} = ${RM[sz]};`, put: (e) => `${RM[sz]} = ${e};` };
}

/** The count of a group-2 shift by form: an immediate, 1, or CL (masked to 5 bits). */
const SHIFT_COUNT = ["i.imm & 31", "1", "cpu.r8[4] & 31"];
/** A byte/word register named by rmN (MOVZX/MOVSX sources have their own size). */
const SRC_RM = ["cpu.r8[((i.rmN & 3) << 2) | (i.rmN >> 2)]", "cpu.r16[i.rmN << 1]"];
const TRUNC = ["r & 0xff", "r & 0xffff", "r | 0"];

/** MOVZX/MOVSX indexed [sign][src size][dst size 1|2 -> 0|1][mem]. */
const MOVX: Handler[][][][] = [0, 1].map((sx) =>
  [0, 1].map((ssz) =>
    [1, 2].map((dsz) =>
      [0, 1].map((mem) => {
        const src = mem ? `cpu.${RD[ssz]}(i.ea(cpu, i))` : SRC_RM[ssz];
        const v = sx ? (ssz === 0 ? `(v << 24) >> 24` : `(v << 16) >> 16`) : "v";
        return make(
          `mov${sx ? "s" : "z"}x_${ssz}_${dsz}_${mem}`,
          `const v = ${src}; cpu.${VIEW[dsz]}[i.reg] = ${v};`,
        );
      })
    )
  )
);

/** INC/DEC r/m (FE/FF /0 /1) indexed [dec][sz][mem], as alu.ts's inc()/dec(). */
const INCDEC_RM: Handler[][][] = [0, 1].map((d) =>
  [0, 1, 2].map((sz) =>
    [0, 1].map((mem) => {
      const { load, put } = rmw(sz, mem, "a");
      const store = put(TRUNC[sz]);
      return make(
        `${d ? "dec" : "inc"}_rm_${sz}_${mem}`,
        `${load} cpu.lcin = cpu.cf(); cpu.lop = ${d ? LOP_DEC : LOP_INC}; const r = a ${
          d ? "-" : "+"
        } 1; cpu.la = a; cpu.lb = 1; cpu.lr = r; cpu.lsz = ${sz}; ${store}`,
        !mem,
      );
    })
  )
);

/** Group-2 shifts and rotates through alu.ts's shift(), indexed [count form][sz][mem]. */
const SHIFT_ANY: Handler[][][] = [0, 1, 2].map((form) =>
  [0, 1, 2].map((sz) =>
    [0, 1].map((mem) => {
      const count = SHIFT_COUNT[form];
      const body = mem
        ? `const c = ${count}; const lin = i.ea(cpu, i); const v = cpu.${RDW[sz]}(lin); ` +
          `if (c === 0) return; cpu.${WR[sz]}(lin, H.shift(cpu, i.op, v, c, ${sz}));`
        : `const c = ${count}; if (c !== 0) ${RM[sz]} = H.shift(cpu, i.op, ${RM[sz]}, c, ${sz});`;
      return make(`shift_${form}_${sz}_${mem}`, body);
    })
  )
);

/** IMUL r, r/m and IMUL r, r/m, imm indexed [imm form][sz 1|2 -> 0|1][mem]. */
const IMUL: Handler[][][] = [0, 1].map((imm) =>
  [1, 2].map((sz) =>
    [0, 1].map((mem) => {
      // alu.ts's imul2 written out: the double product is exact whenever it fits the
      // destination, and past that its magnitude alone says the signed result overflowed
      const rm = mem ? `cpu.${RD[sz]}(i.ea(cpu, i))` : RM[sz];
      const operands = imm
        ? `const a = ${rm}, b = i.imm;`
        : `const b = ${rm}, a = ${RM[sz].replace("i.rm", "i.reg")};`;
      const body = sz === 2
        ? `${operands} const x = a | 0, y = b | 0; const r = Math.imul(x, y); const p = x * y; ` +
          `cpu.lop = ${LOP_RESULT}; cpu.lr = r; cpu.lsz = 2; ` +
          `cpu.lcin = p > 2147483647 || p < -2147483648 ? 0x801 : 0; cpu.r32[i.reg] = r;`
        : `${operands} const p = ((a << 16) >> 16) * ((b << 16) >> 16); const r = p & 0xffff; ` +
          `cpu.lop = ${LOP_RESULT}; cpu.lr = r; cpu.lsz = 1; ` +
          `cpu.lcin = p !== ((p << 16) >> 16) ? 0x801 : 0; cpu.r16[i.reg] = r;`;
      return make(`imul_${imm}_${sz}_${mem}`, body);
    })
  )
);

/** NOT and NEG r/m (F6/F7 /2 /3) indexed [neg][sz][mem], as ops.ts's hNot/hNeg. */
const NOTNEG: Handler[][][] = [0, 1].map((neg) =>
  [0, 1, 2].map((sz) =>
    [0, 1].map((mem) => {
      const { load, put } = rmw(sz, mem, "b");
      const calc = neg ? `const a = 0; ${aluBody(5, sz)}` : "const r = ~b;";
      const back = put(sz === 2 && !mem ? "r | 0" : "r");
      return make(`${neg ? "neg" : "not"}_${sz}_${mem}`, `${load} ${calc} ${back}`);
    })
  )
);

/** TEST r/m, r (memory form) and TEST r/m, imm indexed [imm form][sz][mem]. */
const TEST_ANY: Handler[][][] = [0, 1].map((imm) =>
  [0, 1, 2].map((sz) =>
    [0, 1].map((mem) => {
      const a = mem ? `cpu.${RD[sz]}(i.ea(cpu, i))` : RM[sz];
      const b = imm ? (sz === 2 ? "i.imm | 0" : `i.imm & ${MASKS[sz]}`) : `cpu.${VIEW[sz]}[i.reg]`;
      return make(
        `test_${imm}_${sz}_${mem}`,
        `const a = ${a}, b = ${b}; const r = a & b; ` +
          `cpu.la = a; cpu.lb = b; cpu.lr = r; cpu.lsz = ${sz}; cpu.lop = ${LOP_LOGIC};`,
        !mem,
      );
    })
  )
);

/** SETcc indexed [cc][mem] and CMOVcc indexed [cc][sz 1|2 -> 0|1][mem]. */
const SETCC: Handler[][] = COND.map((c, cc) =>
  [0, 1].map((mem) =>
    make(
      `set${cc}_${mem}`,
      mem
        ? `const v = (${c}) ? 1 : 0; cpu.wr8(i.ea(cpu, i), v);`
        : `${SRC_RM[0]} = (${c}) ? 1 : 0;`,
    )
  )
);
const CMOV: Handler[][][] = COND.map((c, cc) =>
  [1, 2].map((sz) =>
    [0, 1].map((mem) =>
      make(
        `cmov${cc}_${sz}_${mem}`,
        `const v = ${mem ? `cpu.${RD[sz]}(i.ea(cpu, i))` : RM[sz]}; if (${c}) cpu.${
          VIEW[sz]
        }[i.reg] = v;`,
      )
    )
  )
);

/** MOV r/m, imm (C6/C7) indexed [sz][mem]; MOV AL/AX/EAX <-> moffs indexed [store][sz]. */
const MOV_RMI: Handler[][] = [0, 1, 2].map((sz) =>
  [0, 1].map((mem) =>
    make(
      `mov_rmi_${sz}_${mem}`,
      mem ? `cpu.${WR[sz]}(i.ea(cpu, i), i.imm);` : `${RM[sz]} = i.imm;`,
    )
  )
);
const MOV_MOFF: Handler[][] = [0, 1].map((st) =>
  [0, 1, 2].map((sz) =>
    make(
      `mov_moff_${st}_${sz}`,
      st
        ? `cpu.${WR[sz]}(i.ea(cpu, i), cpu.${VIEW[sz]}[0]);`
        : `cpu.${VIEW[sz]}[0] = cpu.${RD[sz]}(i.ea(cpu, i));`,
    )
  )
);

/** CWDE/CBW and CDQ/CWD by size (1|2 -> 0|1). */
const CBW = [
  make("cbw", "cpu.r16[0] = (cpu.r8[0] << 24) >> 24;"),
  make("cwde", "cpu.r32[0] = (cpu.r16[0] << 16) >> 16;"),
];
const CWD = [
  make("cwd", "cpu.r16[4] = (cpu.r16[0] & 0x8000) !== 0 ? 0xffff : 0;"),
  make("cdq", "cpu.r32[2] = cpu.r32[0] >> 31;"),
];

/**
 * Returns a specialised handler for the decoded instruction `i` (opcode in i.opcode, ModRM and
 * sizes decoded), or null to keep the generic one.
 */
export function specialize(i: Instr): Handler | null {
  const o = i.opcode;
  const sz = i.sz;
  if (o < 0x40 && (o & 7) < 6) {
    const op = o >> 3;
    switch (o & 7) {
      case 0:
      case 1:
        return ALU[i.mem ? 1 : 0][op][sz];
      case 2:
      case 3:
        return ALU[i.mem ? 3 : 2][op][sz];
      default:
        return ALU[6][op][sz];
    }
  }
  if (o >= 0x80 && o <= 0x83) return ALU[i.mem ? 5 : 4][i.regN][sz];
  if ((o === 0x84 || o === 0x85) && !i.mem) return TEST_RR[sz];
  if (o >= 0x40 && o < 0x48 && sz > 0) return INC[sz - 1];
  if (o >= 0x48 && o < 0x50 && sz > 0) return DEC[sz - 1];
  if (o >= 0x88 && o <= 0x8b) return MOV[(o & 2) + (i.mem ? 1 : 0)][sz];
  if (o >= 0xb0 && o <= 0xbf) return MOV[4][sz];
  if ((o >= 0x70 && o <= 0x7f) || (o >= 0x180 && o <= 0x18f)) return JCC[sz === 2 ? 1 : 0][o & 15];
  if ((o === 0xc1 || o === 0xd1 || o === 0xd3) && sz === 2 && i.regN >= 4) {
    const op = i.regN === 6 ? 0 : i.regN === 7 ? 2 : i.regN - 4; // SAL = SHL
    return SHIFT32[o === 0xc1 ? 0 : o === 0xd1 ? 1 : 2][i.mem ? 1 : 0][op];
  }
  if (o >= 0x50 && o < 0x58 && sz === 2) return PUSH32;
  if (o === 0xe8 && sz === 2) return CALL32;
  if (o === 0xc3 && sz === 2) return RET32;
  if ((o === 0xe9 || o === 0xeb) && sz === 2) return JMP32;
  if (o === 0x8d && sz === 2 && i.mem && i.asz === 1) return LEA32;
  if (o === 0x1b6 && sz === 2 && !i.mem) return MOVZX8;
  if ((o === 0x68 || o === 0x6a) && sz === 2) return PUSHI32;
  if (o >= 0x58 && o < 0x60 && sz === 2) return POP32;
  const m = i.mem ? 1 : 0;
  if ((o === 0x1b6 || o === 0x1b7 || o === 0x1be || o === 0x1bf) && sz > 0) {
    return MOVX[o >= 0x1be ? 1 : 0][o & 1][sz - 1][m];
  }
  if ((o === 0xfe || o === 0xff) && i.regN < 2) return INCDEC_RM[i.regN][sz][m];
  if (
    (o === 0xc0 || o === 0xc1 || o === 0xd0 || o === 0xd1 || o === 0xd2 || o === 0xd3) &&
    sz < 2 && i.regN >= 4
  ) {
    const op = i.regN === 6 ? 0 : i.regN === 7 ? 2 : i.regN - 4; // SAL = SHL
    return SHIFT_NARROW[o <= 0xc1 ? 0 : o <= 0xd1 ? 1 : 2][sz][m][op];
  }
  if (o === 0xc0 || o === 0xc1) return SHIFT_ANY[0][sz][m];
  if (o === 0xd0 || o === 0xd1) return SHIFT_ANY[1][sz][m];
  if (o === 0xd2 || o === 0xd3) return SHIFT_ANY[2][sz][m];
  if (o === 0x1af && sz > 0) return IMUL[0][sz - 1][m];
  if ((o === 0x69 || o === 0x6b) && sz > 0) return IMUL[1][sz - 1][m];
  if (o === 0x84 || o === 0x85) return TEST_ANY[0][sz][m];
  if ((o === 0xf6 || o === 0xf7) && i.regN < 2) return TEST_ANY[1][sz][m];
  if ((o === 0xf6 || o === 0xf7) && (i.regN === 2 || i.regN === 3)) {
    return NOTNEG[i.regN - 2][sz][m];
  }
  if (o >= 0x190 && o <= 0x19f) return SETCC[o & 15][m];
  if (o >= 0x140 && o <= 0x14f && sz > 0) return CMOV[o & 15][sz - 1][m];
  if ((o === 0xc6 || o === 0xc7) && i.regN === 0) return MOV_RMI[sz][m];
  if (o >= 0xa0 && o <= 0xa3) return MOV_MOFF[o >> 1 & 1][sz];
  if (o === 0x98 && sz > 0) return CBW[sz - 1];
  if (o === 0x99 && sz > 0) return CWD[sz - 1];
  if (o === 0x90 || (o >= 0x118 && o <= 0x11f)) return NOP;
  return null;
}

/**
 * 32-bit SHL/SHR/SAR (C1 imm, D1 by one, D3 by CL) on a register or memory operand, indexed
 * [form 0 imm | 1 one | 2 cl][mem 0/1][op 4 shl, 5 shr, 7 sar]. Flags as alu.ts's shift().
 */
const SHIFT32: Handler[][][] = [0, 1, 2].map((form) =>
  [0, 1].map((mem) =>
    [4, 5, 7].map((op) => {
      const count = SHIFT_COUNT[form];
      const { load, put } = rmw(2, mem, "v");
      const store = put("r");
      const calc = op === 4
        ? "const r = v << c; const cf = (v >>> (32 - c)) & 1; const of = (r >>> 31) ^ cf;"
        : op === 5
        ? "const r = v >>> c; const cf = (v >>> (c - 1)) & 1; const of = c === 1 ? v >>> 31 : 0;"
        : "const r = v >> c; const cf = (v >> (c - 1)) & 1; const of = 0;";
      return make(
        `shift32_${form}_${mem}_${op}`,
        `const c = ${count}; ${load} if (c === 0) return; ${calc} ` +
          `cpu.lop = ${LOP_RESULT}; cpu.lr = r; cpu.lsz = 2; cpu.lcin = cf | (of << 11) | 0x10; ${store}`,
      );
    })
  )
);

/**
 * SHL/SAL, SHR and SAR of a byte or word by an immediate, 1 or CL, indexed [count form][sz][mem]
 * [op 0 SHL, 1 SHR, 2 SAR]: alu.ts's shift() for those sizes written out (same flag record).
 */
const SHIFT_NARROW: Handler[][][][] = [0, 1, 2].map((form) =>
  [0, 1].map((sz) =>
    [0, 1].map((mem) =>
      [4, 5, 7].map((op) => {
        const bits = sz === 0 ? 8 : 16, m = sz === 0 ? "0xff" : "0xffff";
        const count = SHIFT_COUNT[form];
        const { load, put } = rmw(sz, mem, "v");
        const store = put("r");
        const calc = op === 4
          ? `const r = (v << c) & ${m}; const cf = c <= ${bits} ? (v >>> (${bits} - c)) & 1 : 0; ` +
            `const of = ((r >>> ${bits - 1}) & 1) ^ cf;`
          : op === 5
          ? `const r = v >>> c; const cf = c <= ${bits} ? (v >>> (c - 1)) & 1 : 0; ` +
            `const of = c === 1 ? (v >>> ${bits - 1}) & 1 : 0;`
          : `const sv = (v << ${32 - bits}) >> ${
            32 - bits
          }; const n = c > ${bits} ? ${bits} : c; ` +
            `const r = (sv >> n) & ${m}; const cf = (sv >> (n - 1)) & 1; const of = 0;`;
        return make(
          `shiftn_${form}_${sz}_${mem}_${op}`,
          `const c = ${count}; ${load} if (c === 0) return; ${calc} cpu.lop = ${LOP_RESULT}; ` +
            `cpu.lr = r; cpu.lsz = ${sz}; cpu.lcin = cf | (of << 11) | 0x10; ${store}`,
        );
      })
    )
  )
);

const FUSED = new Map<string, Handler>();

/**
 * Condition cc evaluated straight from the locals of a flag-setting body (a, b, r, and c for
 * ADC/SBB) whose lazy-flag record is (lop, sz): the formulas of flags.ts with the operation
 * and size known, so no dispatch on cpu.lop. PF still reads the record. Null: keep COND.
 */
/**
 * CF, OF, ZF and SF of a lazy-flag record whose operation and size are known, as JS over the
 * names that hold its fields (`carry`: the ADC/SBB carry in; `lcin`: the record's lcin, for
 * INC/DEC and LOP_RESULT): the formulas of flags.ts without the dispatch on lop. Used for fused
 * compare-and-jumps here and for the flag locals of the block compiler (jit.ts).
 */
export function flagFormulas(
  lop: number,
  sz: number,
  n: { a: string; b: string; r: string; carry: string; lcin: string },
): { cf: string; of: string; zf: string; sf: string } | null {
  const M = ["0xff", "0xffff", "0xffffffff"][sz];
  const S = ["0x80", "0x8000", "0x80000000"][sz];
  const S1 = ["0x7f", "0x7fff", "0x7fffffff"][sz];
  const B1 = [7, 15, 31][sz];
  const { a, b, r, carry: c, lcin } = n;
  let cf: string, of: string;
  switch (lop) {
    case LOP_ADD:
      cf = `((${r} & ${M}) >>> 0 < ${a} >>> 0 ? 1 : 0)`;
      of = `(((${a} ^ ${r}) & (${b} ^ ${r}) & ${S}) !== 0 ? 1 : 0)`;
      break;
    case LOP_ADC:
      cf = `(${c} ? ((${r} & ${M}) >>> 0 <= ${a} >>> 0 ? 1 : 0) : ` +
        `((${r} & ${M}) >>> 0 < ${a} >>> 0 ? 1 : 0))`;
      of = `(((${a} ^ ${r}) & (${b} ^ ${r}) & ${S}) !== 0 ? 1 : 0)`;
      break;
    case LOP_SUB:
      cf = `(${a} >>> 0 < ${b} >>> 0 ? 1 : 0)`;
      of = `(((${a} ^ ${b}) & (${a} ^ ${r}) & ${S}) !== 0 ? 1 : 0)`;
      break;
    case LOP_SBB:
      cf = `(${c} ? (${a} >>> 0 <= ${b} >>> 0 ? 1 : 0) : (${a} >>> 0 < ${b} >>> 0 ? 1 : 0))`;
      of = `(((${a} ^ ${b}) & (${a} ^ ${r}) & ${S}) !== 0 ? 1 : 0)`;
      break;
    case LOP_LOGIC:
      cf = "0";
      of = "0";
      break;
    case LOP_INC:
      cf = `(${lcin} & 1)`;
      of = `((${r} & ${M}) >>> 0 === ${S} ? 1 : 0)`;
      break;
    case LOP_DEC:
      cf = `(${lcin} & 1)`;
      of = `((${r} & ${M}) >>> 0 === ${S1} ? 1 : 0)`;
      break;
    case LOP_RESULT:
      cf = `(${lcin} & 1)`;
      of = `((${lcin} >> 11) & 1)`;
      break;
    default:
      return null;
  }
  return { cf, of, zf: `((${r} & ${M}) === 0 ? 1 : 0)`, sf: `((${r} >>> ${B1}) & 1)` };
}

function directCond(cc: number, lop: number, sz: number): string | null {
  const f = lop === LOP_RESULT
    ? null
    : flagFormulas(lop, sz, { a: "a", b: "b", r: "r", carry: "c", lcin: "cpu.lcin" });
  if (f === null) return null;
  return COND[cc]
    .replaceAll("cpu.cf()", f.cf)
    .replaceAll("cpu.of()", f.of)
    .replaceAll("cpu.zf()", f.zf)
    .replaceAll("cpu.sf()", f.sf);
}

/**
 * Fuses a flag-setting register instruction `a` with the conditional jump `j` after it into one
 * handler (both bodies inline: one dispatch instead of two). The fused record is `a` with
 * imm2 = the jump displacement and len/end covering both; it retires two instructions.
 */
export function fuse(a: Instr, j: Instr): boolean {
  const body = BODIES.get(a.fn);
  const o = j.opcode;
  if (body === undefined || !((o >= 0x70 && o <= 0x7f) || (o >= 0x180 && o <= 0x18f))) return false;
  const cc = o & 15;
  const key = `${a.fn.name}/${cc}/${j.sz}`;
  let f = FUSED.get(key);
  if (f === undefined) {
    const target = j.sz === 2 ? "(cpu.eip + i.imm2) >>> 0" : "(cpu.eip + i.imm2) & 0xffff";
    // the flag record the body leaves (its literal lop and lsz) lets the condition be direct
    const lop = [...body.matchAll(/cpu\.lop = (\d+);/g)];
    const lsz = [...body.matchAll(/cpu\.lsz = (\d);/g)];
    const direct = lop.length === 1 && lsz.length === 1
      ? directCond(cc, Number(lop[0][1]), Number(lsz[0][1]))
      : null;
    f = make(
      `fused_${key}`,
      direct !== null
        ? `${body} cpu.instructions++; if (${direct}) cpu.eip = ${target};`
        : `{ ${body} } cpu.instructions++; if (${COND[cc]}) cpu.eip = ${target};`,
    );
    FUSED.set(key, f);
  }
  a.fn = f;
  a.imm2 = j.imm;
  a.len += j.len;
  a.end = j.end;
  return true;
}
