/**
 * Operand access shared by the instruction handlers: registers by size, the ModRM operand,
 * privilege checks, port I/O with the IOPL/bitmap check.
 * @module
 */

import { trunc } from "./alu.ts";
import type { Cpu } from "./cpu.ts";
import { CR0_PE, GP, TR, UD } from "./consts.ts";
import { regIndex } from "./decode.ts";
import { ioBreakpoints } from "./debug.ts";
import { MASK, VM } from "./flags.ts";
import type { Instr } from "./instr.ts";

// ------------------------------------------------------------------ operand helpers

export function getReg(cpu: Cpu, sz: number, r: number): number {
  return sz === 0 ? cpu.r8[r] : sz === 1 ? cpu.r16[r] : cpu.r32[r];
}

export function setReg(cpu: Cpu, sz: number, r: number, v: number): void {
  if (sz === 0) cpu.r8[r] = v;
  else if (sz === 1) cpu.r16[r] = v;
  else cpu.r32[r] = v;
}

export function readRm(cpu: Cpu, i: Instr): number {
  return i.mem ? cpu.rd(i.sz, i.ea(cpu, i)) : getReg(cpu, i.sz, i.rm);
}

export function writeRm(cpu: Cpu, i: Instr, v: number): void {
  if (i.mem) cpu.wr(i.sz, i.ea(cpu, i), v);
  else setReg(cpu, i.sz, i.rm, v);
}

/** Reads the r/m operand at size sz (its own size, not i.sz). */
export function readRmSz(cpu: Cpu, i: Instr, sz: number): number {
  return i.mem ? cpu.rd(sz, i.ea(cpu, i)) : getReg(cpu, sz, regIndex(sz, i.rmN));
}

export function ud(cpu: Cpu): void {
  cpu.fault(UD);
}

/** Privileged instruction check: CPL 0 in protected mode, never in v86. */
export function needCpl0(cpu: Cpu): void {
  if ((cpu.cr0 & CR0_PE) !== 0 && (cpu.cpl !== 0 || (cpu.eflags & VM) !== 0)) cpu.fault(GP, 0);
}

export function iopl(cpu: Cpu): number {
  return (cpu.eflags >> 12) & 3;
}

/** IN/OUT permission: CPL <= IOPL, else the TSS I/O bitmap. */
export function checkIo(cpu: Cpu, port: number, size: number): void {
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

export function ioIn(cpu: Cpu, port: number, sz: number): number {
  const size = sz === 0 ? 1 : sz === 1 ? 2 : 4;
  checkIo(cpu, port, size);
  if (cpu.dbgOn) ioBreakpoints(cpu, port, size);
  cpu.blockExit = true; // a device was touched: it may have raised or lowered an interrupt
  const v = cpu.bus.ioRead(port, size as 1 | 2 | 4);
  return trunc(sz, v);
}

export function ioOut(cpu: Cpu, port: number, sz: number, v: number): void {
  const size = sz === 0 ? 1 : sz === 1 ? 2 : 4;
  checkIo(cpu, port, size);
  if (cpu.dbgOn) ioBreakpoints(cpu, port, size);
  cpu.blockExit = true;
  cpu.bus.ioWrite(port, size as 1 | 2 | 4, sz === 2 ? v >>> 0 : v & MASK[sz]);
}

/** Sets EIP after a jump, truncated to the operand size. */
export function jumpTo(cpu: Cpu, sz: number, target: number): void {
  cpu.eip = sz === 2 ? target >>> 0 : target & 0xffff;
}
