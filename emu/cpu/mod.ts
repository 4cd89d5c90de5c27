/**
 * The x86 interpreter.
 *
 * - bus.ts: the contract with the machine ({@link CpuBus} in, {@link CpuControl} out).
 * - cpu.ts: {@link Cpu}: state, memory path (segments, paging, software TLB), block cache, run loop.
 * - decode.ts: bytes -> decoded instructions, a block at a time; ops.ts: the opcode table and
 *   the general handlers; strings.ts: string instructions; sysops.ts: system instructions;
 *   operands.ts: operand access; fast.ts: specialised handlers for hot forms; alu.ts:
 *   arithmetic helpers; flags.ts: lazy flags; system.ts: segmentation, privilege, interrupts,
 *   task switches; fpu.ts: the x87; consts.ts and instr.ts: shared constants and records.
 * @module
 */
export * from "./bus.ts";
export { Cpu, CpuFault, ramOnlyBus } from "./cpu.ts";
