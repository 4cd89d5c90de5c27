/**
 * The decoded form of one instruction: its handler and its operands, fixed-shape so that the
 * threaded-code loop stays monomorphic. A later JIT tier can compile from the same records.
 * @module
 */

import type { Cpu } from "./cpu.ts";

/** Runs one decoded instruction. EIP already points past it when the handler runs. */
export type Handler = (cpu: Cpu, i: Instr) => void;
/** Computes the linear address of a memory operand (segment base included). */
export type EaFn = (cpu: Cpu, i: Instr) => number;

/** Register view index of a register that always reads zero (r32[8]; r16[16]). */
export const ZERO32 = 8;
export const ZERO16 = 16;

/**
 * One decoded instruction. The fields are declared in the order the threaded-code loop and the
 * handlers read them (V8 lays them out so): the hot ones share the object's first cache lines.
 */
export class Instr {
  /** The handler. */
  fn: Handler;
  /**
   * A conditional jump inside a block (a side exit): EIP is set to the next instruction before
   * it runs; when it jumps, the block ends there.
   */
  exit = false;
  /** Offset of the instruction's end from the start of its block. */
  end = 0;
  /** Length in bytes (prefixes included). */
  len = 0;
  /** Memory operand address function. */
  ea: EaFn;
  /** ModRM.reg as an index into the register view of size sz. */
  reg = 0;
  /** ModRM.rm as an index into the register view of size sz (register form). */
  rm = 0;
  /** Base register index into r16 (16-bit addressing) or r32 (32-bit addressing). */
  base = ZERO32;
  /** Displacement (signed). */
  disp = 0;
  /** First immediate. */
  imm = 0;
  /** Segment register of the memory operand (or of string sources). */
  seg = 3;
  /** Bytes accessed at the memory operand minus one (for the segment limit check). */
  accN = 0;
  /** Index register index, as for base. */
  index = ZERO32;
  /** SIB scale as a shift count. */
  scale = 0;
  /** Handler-specific sub-operation (ALU kind, condition code, group index). */
  op = 0;
  /** Operand size: 0 byte, 1 word, 2 dword. */
  sz = 0;
  /** Address size: 0 = 16-bit, 1 = 32-bit. */
  asz = 0;
  /** The ModRM operand is memory. */
  mem = false;
  /** ModRM.reg as a raw number 0..7. */
  regN = 0;
  /** ModRM.rm as a raw number 0..7. */
  rmN = 0;
  /** Second immediate (ENTER's level, far pointer's selector). */
  imm2 = 0;
  /** REP prefix: 0 none, 1 REPE/REP (F3), 2 REPNE (F2). */
  rep = 0;
  /** The first opcode byte (0x100 + second byte for 0F xx). */
  opcode = 0;

  constructor(fn: Handler, ea: EaFn) {
    this.fn = fn;
    this.ea = ea;
  }
}

/**
 * A run of decoded instructions starting at one physical address; fields in the order the
 * block loop reads them, as in Instr.
 */
export class Block {
  ins: Instr[] = [];
  /**
   * The compiled form: runs the whole block from EIP `base`, leaves EIP past the last
   * instruction run and returns how many instructions retired.
   */
  jit: ((cpu: Cpu, ins: Instr[], base: number, lim: number) => number) | null = null;
  /** Times run by the threaded-code loop (it is compiled to JS when hot; see jit.ts). */
  hits = 0;
  /** Cleared when a write to its page drops it. */
  valid = true;
  /** False for code outside RAM (device memory: decoded again each time). */
  cacheable = true;
  linkEpoch = -1;
  /** Cached successors: the EIP they start at (-1: none) and the block, valid in linkEpoch. */
  nextEip0 = -1;
  next0: Block | null = null;
  nextEip1 = -1;
  next1: Block | null = null;
  /** Physical address of the first byte. */
  phys = 0;
  /** Cache key (physical address and code size). */
  key = 0;
  /**
   * For a lone instruction that crosses a page boundary: the physical address of the page its
   * tail lies in (-1: none). The block is cached under its first page, found only while the
   * second page still maps there, and dropped by a write to either page.
   */
  phys2 = -1;
}
