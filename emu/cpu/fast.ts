/**
 * Specialised handlers for the hottest instruction forms. The generic handlers in ops.ts branch
 * on operand size, register-or-memory and ALU operation at run time; here one handler is built
 * per (operation, size, form) from a template, with those choices made at build time, so that
 * each is small and monomorphic. The decoder swaps one in when the decoded form matches
 * ({@link specialize}); semantics stay defined by ops.ts/alu.ts, which the 286 vectors check.
 * @module
 */

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

function make(name: string, body: string, fusable = false): Handler {
  // deno-lint-ignore no-explicit-any
  const f = new Function("cpu", "i", body) as any;
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
  return null;
}

/**
 * 32-bit SHL/SHR/SAR (C1 imm, D1 by one, D3 by CL) on a register or memory operand, indexed
 * [form 0 imm | 1 one | 2 cl][mem 0/1][op 4 shl, 5 shr, 7 sar]. Flags as alu.ts's shift().
 */
const SHIFT32: Handler[][][] = [0, 1, 2].map((form) =>
  [0, 1].map((mem) =>
    [4, 5, 7].map((op) => {
      const count = form === 0 ? "i.imm & 31" : form === 1 ? "1" : "cpu.r8[4] & 31";
      const load = mem
        ? "const lin = i.ea(cpu, i); const v = cpu.rdw32(lin);"
        : "const v = cpu.r32[i.rm];";
      const store = mem ? "cpu.wr32(lin, r);" : "cpu.r32[i.rm] = r;";
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

const FUSED = new Map<string, Handler>();

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
    f = make(
      `fused_${key}`,
      `{ ${body} } cpu.instructions++; if (${COND[cc]}) cpu.eip = ${target};`,
    );
    FUSED.set(key, f);
  }
  a.fn = f;
  a.imm2 = j.imm;
  a.len += j.len;
  a.end = j.end;
  return true;
}
