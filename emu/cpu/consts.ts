/**
 * Architectural constants: segment register numbers, exception vectors, control register bits.
 * @module
 */

/** Segment register numbers, in the encoding's order. */
export const ES = 0, CS = 1, SS = 2, DS = 3, FS = 4, GS = 5, LDTR = 6, TR = 7;

/** Exception vectors. */
export const DE = 0, DB = 1, NMI = 2, BP = 3, OFV = 4, BR = 5, UD = 6, NM = 7, DBLF = 8;
export const TS = 10, NP = 11, SSF = 12, GP = 13, PF = 14, MF = 16, ACF = 17, MC = 18, XM = 19;

/** CR0 bits. */
export const CR0_PE = 1, CR0_MP = 2, CR0_EM = 4, CR0_TS = 8, CR0_ET = 0x10, CR0_NE = 0x20;
export const CR0_WP = 0x10000, CR0_AM = 0x40000, CR0_NW = 0x20000000, CR0_CD = 0x40000000;
export const CR0_PG = 0x80000000 | 0;
/** CR4 bits. */
export const CR4_VME = 1, CR4_PVI = 2, CR4_TSD = 4, CR4_DE = 8, CR4_PSE = 0x10, CR4_PAE = 0x20;
export const CR4_PGE = 0x80, CR4_OSFXSR = 0x200, CR4_OSXMMEXCPT = 0x400;

/** Immediate kinds of an opcode entry. */
export const I_NONE = 0;
/** imm8, zero-extended. */
export const I_B = 1;
/** imm8 sign-extended. */
export const I_BS = 2;
/** imm16 or imm32 by operand size. */
export const I_V = 3;
/** imm16. */
export const I_W = 4;
/** imm16 then imm8 (ENTER). */
export const I_WB = 5;
/** far pointer: offset (operand size) then selector. */
export const I_P = 6;
/** memory offset of address size (MOV moffs). */
export const I_O = 7;
/** rel8 (sign-extended). */
export const I_J8 = 8;
/** rel16/rel32 by operand size. */
export const I_JV = 9;
