/**
 * I/O breakpoints (the i686's debug extension): with CR4.DE set, a DR7 breakpoint whose R/W
 * field is 10b watches I/O ports DRn..DRn+LEN-1 (ports, not linear addresses). An IN, OUT, INS or
 * OUTS touching a watched port records the breakpoint's DR6 B bit; the #DB trap follows the
 * instruction, as a data breakpoint's does (cpu.ts stepTrap). Only called while some breakpoint
 * is enabled in DR7 (cpu.dbgOn), so port I/O costs nothing extra otherwise.
 * @module
 */

import type { Cpu } from "./cpu.ts";
import { CR4_DE } from "./consts.ts";

/** An access of `size` bytes to `port` against the enabled I/O breakpoints: B0-B3 hits. */
export function ioBreakpoints(cpu: Cpu, port: number, size: number): void {
  if ((cpu.cr4 & CR4_DE) === 0) return; // R/W 10b is undefined without the debug extension
  const d7 = cpu.dr[7];
  for (let k = 0; k < 4; k++) {
    if (((d7 >> (k * 2)) & 3) === 0 || ((d7 >>> (16 + k * 4)) & 3) !== 2) continue;
    const lenCode = (d7 >>> (18 + k * 4)) & 3;
    const len = lenCode === 0 ? 1 : lenCode === 1 ? 2 : lenCode === 3 ? 4 : 8;
    const a = cpu.dr[k] & 0xffff & ~(len - 1);
    if (port < a + len && a < port + size) cpu.dbgHit |= 1 << k;
  }
}
