/**
 * String instructions (MOVS, STOS, LODS, CMPS, SCAS, INS, OUTS) with REP/REPE/REPNE: element by
 * element in general, whole in-page runs copied or filled at once for REP MOVS/STOS.
 * @module
 */

import { alu } from "./alu.ts";
import type { Cpu } from "./cpu.ts";
import { ES } from "./consts.ts";
import { DF, RF } from "./flags.ts";
import type { Handler, Instr } from "./instr.ts";
import { getReg, ioIn, ioOut, setReg } from "./operands.ts";

// ------------------------------------------------------------------ strings

export function siAdvance(cpu: Cpu, i: Instr, d: number): void {
  if (i.asz) cpu.r32[6] = cpu.r32[6] + d;
  else cpu.r16[12] = cpu.r16[12] + d;
}
export function diAdvance(cpu: Cpu, i: Instr, d: number): void {
  if (i.asz) cpu.r32[7] = cpu.r32[7] + d;
  else cpu.r16[14] = cpu.r16[14] + d;
}
export function srcLin(cpu: Cpu, i: Instr): number {
  const off = i.asz ? cpu.r32[6] >>> 0 : cpu.r16[12];
  if (off + i.accN > cpu.segChk[i.seg]) cpu.limitFault(i.seg, off, i.accN, false);
  return (cpu.segBase[i.seg] + off) | 0;
}
export function dstLin(cpu: Cpu, i: Instr): number {
  const off = i.asz ? cpu.r32[7] >>> 0 : cpu.r16[14];
  if (off + i.accN > cpu.segChkW[ES]) cpu.limitFault(ES, off, i.accN, true);
  return (cpu.segBase[ES] + off) | 0;
}
export function count(cpu: Cpu, i: Instr): number {
  return i.asz ? cpu.r32[1] >>> 0 : cpu.r16[2];
}
export function setCount(cpu: Cpu, i: Instr, c: number): void {
  if (i.asz) cpu.r32[1] = c;
  else cpu.r16[2] = c;
}

/** Iterations of a REP string op per visit: the rest continues after interrupts are polled. */
const REP_CHUNK = 4096;

export function stringOp(
  cpu: Cpu,
  i: Instr,
  body: (cpu: Cpu, i: Instr, d: number) => boolean,
): void {
  const d = cpu.dstep(i.sz);
  if (i.rep === 0) {
    body(cpu, i, d);
    return;
  }
  let c = count(cpu, i);
  let n = 0;
  while (c !== 0) {
    const stop = body(cpu, i, d);
    c = (c - 1) >>> 0;
    setCount(cpu, i, c);
    if (stop) return;
    if ((++n >= REP_CHUNK || cpu.repStep) && c !== 0) {
      cpu.eip = cpu.code32 ? (cpu.eip - i.len) >>> 0 : (cpu.eip - i.len) & 0xffff; // again
      cpu.eflags |= RF; // an interrupt between iterations pushes RF set (no breakpoint again)
      cpu.blockExit = true;
      return;
    }
  }
}

const bMovs = (cpu: Cpu, i: Instr, d: number) => {
  cpu.wr(i.sz, dstLin(cpu, i), cpu.rd(i.sz, srcLin(cpu, i)));
  siAdvance(cpu, i, d);
  diAdvance(cpu, i, d);
  return false;
};
const bStos = (cpu: Cpu, i: Instr, d: number) => {
  cpu.wr(i.sz, dstLin(cpu, i), getReg(cpu, i.sz, 0));
  diAdvance(cpu, i, d);
  return false;
};
const bLods = (cpu: Cpu, i: Instr, d: number) => {
  setReg(cpu, i.sz, 0, cpu.rd(i.sz, srcLin(cpu, i)));
  siAdvance(cpu, i, d);
  return false;
};
const bCmps = (cpu: Cpu, i: Instr, d: number) => {
  const a = cpu.rd(i.sz, srcLin(cpu, i));
  const b = cpu.rd(i.sz, dstLin(cpu, i));
  alu(cpu, 7, a, b, i.sz);
  siAdvance(cpu, i, d);
  diAdvance(cpu, i, d);
  return i.rep === 1 ? cpu.zf() === 0 : cpu.zf() === 1;
};
const bScas = (cpu: Cpu, i: Instr, d: number) => {
  const b = cpu.rd(i.sz, dstLin(cpu, i));
  alu(cpu, 7, getReg(cpu, i.sz, 0), b, i.sz);
  diAdvance(cpu, i, d);
  return i.rep === 1 ? cpu.zf() === 0 : cpu.zf() === 1;
};
const bIns = (cpu: Cpu, i: Instr, d: number) => {
  const lin = dstLin(cpu, i);
  cpu.probeWrite(lin, 1 << i.sz);
  cpu.wr(i.sz, lin, ioIn(cpu, cpu.r16[4], i.sz));
  diAdvance(cpu, i, d);
  return false;
};
const bOuts = (cpu: Cpu, i: Instr, d: number) => {
  ioOut(cpu, cpu.r16[4], i.sz, cpu.rd(i.sz, srcLin(cpu, i)));
  siAdvance(cpu, i, d);
  return false;
};
/**
 * REP MOVS/STOS: whole runs that stay inside one source and one destination page (RAM, cached in
 * the TLB) are copied/filled directly, in either direction. Overlap is allowed when the copy
 * direction makes element-by-element copying equal to memmove (forward with the destination
 * below the source, backward above it); other overlaps, faults, MMIO and page crossings take the
 * element-by-element path, which also fills the TLB for the next run.
 */
export function repFast(cpu: Cpu, i: Instr, movs: boolean): void {
  const w = 1 << i.sz;
  const ram = cpu.ram;
  const back = (cpu.eflags & DF) !== 0;
  let c = count(cpu, i);
  let budget = cpu.repStep ? 1 : REP_CHUNK * 16;
  while (c !== 0) {
    const si = i.asz ? cpu.r32[6] >>> 0 : cpu.r16[12];
    const di = i.asz ? cpu.r32[7] >>> 0 : cpu.r16[14];
    const sLin = (cpu.segBase[i.seg] + si) | 0;
    const dLin = (cpu.segBase[ES] + di) | 0;
    let n: number;
    if (!back) {
      n = Math.min(c, Math.floor((4096 - (dLin & 0xfff)) / w), budget);
      if (movs) n = Math.min(n, Math.floor((4096 - (sLin & 0xfff)) / w));
      if (!i.asz) {
        n = Math.min(n, Math.floor((0x10000 - di) / w));
        if (movs) n = Math.min(n, Math.floor((0x10000 - si) / w));
      }
    } else {
      n = Math.min(c, Math.floor(((dLin & 0xfff) + w) / w), Math.floor(di / w) + 1, budget);
      if (movs) n = Math.min(n, Math.floor(((sLin & 0xfff) + w) / w), Math.floor(si / w) + 1);
    }
    const bytes = n * w;
    const span = back ? (n - 1) * w : 0; // the run's lowest element lies `span` below the current
    const dHigh = back ? di + w - 1 : di + bytes - 1;
    const sHigh = back ? si + w - 1 : si + bytes - 1;
    const dp = n > 0 && dHigh <= cpu.segChkW[ES] ? cpu.ramIndexW((dLin - span) | 0) : -1;
    const sp = movs && dp >= 0 && sHigh <= cpu.segChk[i.seg]
      ? cpu.ramIndexR((sLin - span) | 0)
      : -1;
    const overlap = movs && sp >= 0 && dp < sp + bytes && sp < dp + bytes;
    if (dp < 0 || (movs && sp < 0) || (overlap && (back ? dp < sp : dp > sp))) {
      // one element the slow way (faults, MMIO, page crossings, replicating overlap)
      const d = back ? -w : w;
      if (movs) bMovs(cpu, i, d);
      else bStos(cpu, i, d);
      c = (c - 1) >>> 0;
      setCount(cpu, i, c);
      if (--budget <= 0) break;
      continue;
    }
    if (movs) ram.copyWithin(dp, sp, sp + bytes);
    else if (w === 1) ram.fill(cpu.r8[0], dp, dp + bytes);
    else {
      const v = cpu.r32[0];
      for (let k = 0; k < bytes; k += w) {
        ram[dp + k] = v;
        ram[dp + k + 1] = v >> 8;
        if (w === 4) {
          ram[dp + k + 2] = v >> 16;
          ram[dp + k + 3] = v >> 24;
        }
      }
    }
    const step = back ? -bytes : bytes;
    if (movs) siAdvance(cpu, i, step);
    diAdvance(cpu, i, step);
    c = (c - n) >>> 0;
    setCount(cpu, i, c);
    budget -= n;
    if (budget <= 0) break;
  }
  if (c !== 0) {
    cpu.eip = cpu.code32 ? (cpu.eip - i.len) >>> 0 : (cpu.eip - i.len) & 0xffff; // again
    cpu.eflags |= RF; // as in stringOp
    cpu.blockExit = true;
  }
}
export const hMovs: Handler = (cpu, i) =>
  i.rep !== 0 ? repFast(cpu, i, true) : stringOp(cpu, i, bMovs);
export const hStos: Handler = (cpu, i) =>
  i.rep !== 0 ? repFast(cpu, i, false) : stringOp(cpu, i, bStos);
export const hLods: Handler = (cpu, i) => stringOp(cpu, i, bLods);
export const hCmps: Handler = (cpu, i) => stringOp(cpu, i, bCmps);
export const hScas: Handler = (cpu, i) => stringOp(cpu, i, bScas);
export const hIns: Handler = (cpu, i) => stringOp(cpu, i, bIns);
export const hOuts: Handler = (cpu, i) => stringOp(cpu, i, bOuts);
