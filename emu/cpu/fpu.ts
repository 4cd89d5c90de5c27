/**
 * The x87 escape opcodes (D8..DF) and WAIT. The x87 unit itself is not implemented yet: CPUID
 * does not advertise an FPU, and every escape raises #NM ("device not available") so that an OS
 * can emulate it or report it, exactly as a CPU without a coprocessor and CR0.EM set would.
 * @module
 */

import type { Cpu } from "./cpu.ts";
import { CR0_EM, CR0_MP, CR0_TS, NM } from "./consts.ts";
import type { Instr } from "./instr.ts";

/** An ESC instruction (D8..DF). */
export function fpuEscape(cpu: Cpu, _i: Instr): void {
  void CR0_EM;
  cpu.fault(NM);
}

/** WAIT/FWAIT: #NM when CR0.MP and CR0.TS are both set; otherwise no pending x87 errors exist. */
export function fpuWait(cpu: Cpu): void {
  if ((cpu.cr0 & (CR0_MP | CR0_TS)) === (CR0_MP | CR0_TS)) cpu.fault(NM);
}
