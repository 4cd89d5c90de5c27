/**
 * System instruction handlers: CPUID, RDTSC, RDMSR/WRMSR, SYSENTER/SYSEXIT, control and debug
 * registers, descriptor tables, LLDT/LTR/VERR/VERW/LAR/LSL/ARPL, CLTS, INVLPG, HLT's relatives,
 * the x87 escapes' entry points.
 * @module
 */

import type { Cpu } from "./cpu.ts";
import {
  CR0_PE,
  CR0_PG,
  CR0_TS,
  CR4_DE,
  CR4_OSFXSR,
  CR4_PAE,
  CR4_PGE,
  CR4_PSE,
  CR4_TSD,
  CS,
  DB,
  GP,
  LDTR,
  SS,
  TR,
} from "./consts.ts";
import { IF, VM, ZF } from "./flags.ts";
import type { Handler } from "./instr.ts";
import { fpuEscape, fpuWait, fxsave } from "./fpu.ts";
import { descLimit, isProtected, loadLdt, loadTr, peekDescriptor } from "./system.ts";
import { needCpl0, setReg, ud } from "./operands.ts";

// ------------------------------------------------------------------ system

export const hNop: Handler = () => {};

/** CPUID: a family-6 (Pentium Pro class) CPU with what this interpreter implements. */
export const hCpuid: Handler = (cpu) => {
  const leaf = cpu.r32[0] >>> 0;
  let a = 0, b = 0, c = 0, d = 0;
  if (leaf === 0) {
    a = 0x16;
    // "GenuineIntel"
    b = 0x756e6547;
    d = 0x49656e69;
    c = 0x6c65746e;
  } else if (leaf === 1) {
    a = 0x0633; // family 6, model 3, stepping 3
    b = 0x00010000;
    // FPU, DE, PSE, TSC, MSR, PAE, CX8, SEP, PGE, CMOV, FXSR: what is implemented (no VME,
    // MCE, APIC, MTRR, MCA, MMX, SSE)
    d = 0x1 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x800 | 0x2000 | 0x8000 | 0x1000000;
  } else if (leaf === 2) {
    a = 0x03020101;
  } else if (leaf === 7) {
    // Leaves 3-6 and 8-0x14 are empty (no serial number, cache descriptors, MONITOR, power
    // management, topology, XSAVE, trace).
    if (cpu.r32[1] === 0) b = 0x2; // IA32_TSC_ADJUST (MSR 0x3b)
  } else if (leaf === 0x15) {
    // The TSC's frequency (1 GHz: it counts the machine clock's nanoseconds), so that a guest
    // need not calibrate it against the PIT, which an interpreter under host load makes noisy.
    a = 1; // TSC/crystal ratio 1/1
    b = 1;
    c = 1_000_000_000; // crystal Hz
  } else if (leaf === 0x16) {
    a = b = 1000; // base and maximum frequency, MHz
  } else if (leaf === 0x80000000) {
    a = 0x80000007;
  } else if (leaf === 0x80000001) {
    d = 0x100000; // NX (PAE paging with EFER.NXE)
  } else if (leaf === 0x80000007) {
    // Invariant TSC: it counts the machine clock at a constant rate and runs on while the CPU
    // halts (see tsc()). With TSC_ADJUST, Linux trusts it without a clocksource watchdog, which
    // on an interpreter (late timer ticks under host load) would otherwise mark it unstable and
    // fall back to the jiffies-based PIT clocksource, whose time stops in one-shot timer mode.
    d = 0x100;
  }
  cpu.r32[0] = a;
  cpu.r32[3] = b;
  cpu.r32[1] = c;
  cpu.r32[2] = d;
};

/**
 * Time-stamp counter: the machine's virtual nanoseconds when the bus has a clock (so it runs on
 * while the CPU halts: a guest that keeps time with the TSC, as Linux does, must not see time
 * stop while it idles), else instructions retired before this one (RDTSC ends its block, so the
 * count at block entry is exact). Strictly increasing either way.
 */
export function tsc(cpu: Cpu): number {
  const ns = cpu.bus.clockNs?.();
  let t = (ns === undefined ? cpu.instructions : Math.floor(ns)) + cpu.tscOffset;
  if (t <= cpu.tscLast) t = cpu.tscLast + 1;
  cpu.tscLast = t;
  return t;
}
export const hRdtsc: Handler = (cpu) => {
  if ((cpu.cr4 & CR4_TSD) !== 0 && cpu.cpl !== 0 && (cpu.cr0 & CR0_PE) !== 0) cpu.fault(GP, 0);
  const t = tsc(cpu);
  cpu.r32[0] = t | 0;
  cpu.r32[2] = Math.floor(t / 4294967296) | 0;
};
export const hRdmsr: Handler = (cpu) => {
  needCpl0(cpu);
  const msr = cpu.r32[1] >>> 0;
  let lo = 0, hi = 0;
  switch (msr) {
    case 0x10: {
      const t = tsc(cpu);
      lo = t | 0;
      hi = Math.floor(t / 4294967296) | 0;
      break;
    }
    case 0x3b: // IA32_TSC_ADJUST
      lo = cpu.tscAdjust | 0;
      hi = Math.floor(cpu.tscAdjust / 4294967296) | 0;
      break;
    case 0x1b:
      lo = cpu.apicBase;
      break;
    case 0x174:
      lo = cpu.sysenterCs;
      break;
    case 0x175:
      lo = cpu.sysenterEsp;
      break;
    case 0x176:
      lo = cpu.sysenterEip;
      break;
    case 0xc0000080:
      lo = cpu.efer;
      break;
    default:
      if (cpu.mtrr.has(msr)) lo = cpu.mtrr.get(msr)!;
      else if (msr === 0x1a0) lo = 1; // IA32_MISC_ENABLE: fast strings
      else if (
        msr === 0x8b || msr === 0x17 || msr === 0x2a || msr === 0x179 || msr === 0x17a ||
        (msr >= 0x186 && msr <= 0x187)
      ) {
        lo = 0; // microcode revision, platform id, EBL_CR_POWERON, MCG_CAP/STATUS, PERFEVTSEL
      } else cpu.fault(GP, 0);
  }
  cpu.r32[0] = lo;
  cpu.r32[2] = hi;
};
export const hWrmsr: Handler = (cpu) => {
  needCpl0(cpu);
  const msr = cpu.r32[1] >>> 0;
  const lo = cpu.r32[0];
  switch (msr) {
    case 0x10:
    case 0x3b: {
      // Writing the TSC moves TSC_ADJUST by the same amount, and writing TSC_ADJUST moves the
      // TSC by the change (SDM 17.17.3); TSC_ADJUST is signed.
      const ns = cpu.bus.clockNs?.();
      const base = ns === undefined ? cpu.instructions : Math.floor(ns);
      const delta = msr === 0x10
        ? (cpu.r32[2] >>> 0) * 4294967296 + (lo >>> 0) - (base + cpu.tscOffset)
        : (cpu.r32[2] | 0) * 4294967296 + (lo >>> 0) - cpu.tscAdjust;
      cpu.tscOffset += delta;
      cpu.tscAdjust += delta;
      cpu.tscLast = base + cpu.tscOffset - 1;
      break;
    }
    case 0x1b:
      cpu.apicBase = lo;
      break;
    case 0x174:
      cpu.sysenterCs = lo & 0xffff;
      break;
    case 0x175:
      cpu.sysenterEsp = lo;
      break;
    case 0x176:
      cpu.sysenterEip = lo;
      break;
    case 0xc0000080:
      cpu.efer = lo & 0x800;
      cpu.flushTlb();
      break;
    default:
      if (msr === 0x8b || msr === 0x2a || msr === 0x1a0 || (msr >= 0x186 && msr <= 0x187)) break;
      cpu.fault(GP, 0);
  }
};
export const hSysenter: Handler = (cpu) => {
  if ((cpu.cr0 & CR0_PE) === 0 || (cpu.sysenterCs & 0xfffc) === 0) cpu.fault(GP, 0);
  cpu.materialize();
  cpu.eflags &= ~(VM | IF);
  flatSeg(cpu, CS, cpu.sysenterCs & 0xfffc, 0x9b, 0);
  flatSeg(cpu, SS, (cpu.sysenterCs + 8) & 0xfffc, 0x93, 0);
  cpu.setCpl(0);
  cpu.modeChanged();
  cpu.r32[4] = cpu.sysenterEsp;
  cpu.eip = cpu.sysenterEip >>> 0;
};
export const hSysexit: Handler = (cpu) => {
  if ((cpu.cr0 & CR0_PE) === 0 || (cpu.sysenterCs & 0xfffc) === 0 || cpu.cpl !== 0) {
    cpu.fault(GP, 0);
  }
  flatSeg(cpu, CS, ((cpu.sysenterCs + 16) & 0xfffc) | 3, 0xfb, 3);
  flatSeg(cpu, SS, ((cpu.sysenterCs + 24) & 0xfffc) | 3, 0xf3, 3);
  cpu.setCpl(3);
  cpu.modeChanged();
  cpu.r32[4] = cpu.r32[1];
  cpu.eip = cpu.r32[2] >>> 0;
};
export function flatSeg(cpu: Cpu, seg: number, sel: number, access: number, _dpl: number): void {
  cpu.setSegCache(seg, sel, 0, 0xffffffff, access | 0xc000);
}

export const hMovFromCr: Handler = (cpu, i) => {
  needCpl0(cpu);
  let v = 0;
  switch (i.regN) {
    case 0:
      v = cpu.cr0;
      break;
    case 2:
      v = cpu.cr2;
      break;
    case 3:
      v = cpu.cr3;
      break;
    case 4:
      v = cpu.cr4;
      break;
    default:
      ud(cpu);
  }
  cpu.r32[i.rmN] = v;
};
export const hMovToCr: Handler = (cpu, i) => {
  needCpl0(cpu);
  const v = cpu.r32[i.rmN];
  switch (i.regN) {
    case 0: {
      if ((v & CR0_PG) !== 0 && (v & CR0_PE) === 0) cpu.fault(GP, 0);
      const old = cpu.cr0;
      cpu.cr0 = (v & 0xe005003f) | 0x10;
      if (((old ^ cpu.cr0) & (CR0_PG | CR0_PE | 0x10000)) !== 0) cpu.flushTlb();
      if (((old ^ cpu.cr0) & CR0_PE) !== 0) {
        if ((cpu.cr0 & CR0_PE) === 0) cpu.setCpl(0);
      }
      cpu.modeChanged();
      break;
    }
    case 2:
      cpu.cr2 = v;
      break;
    case 3:
      cpu.cr3 = v;
      cpu.flushTlb(true); // global pages stay
      break;
    case 4: {
      if (
        (v &
          ~(CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_PGE | CR4_OSFXSR | 0x400)) !==
          0
      ) {
        cpu.fault(GP, 0);
      }
      cpu.cr4 = v;
      cpu.flushTlb();
      cpu.blockExit = true;
      break;
    }
    default:
      ud(cpu);
  }
};
/** DR7.GD: a MOV to or from a debug register is a #DB fault (DR6.BD), GD cleared. */
function generalDetect(cpu: Cpu): void {
  if ((cpu.dr[7] & 0x2000) !== 0) {
    cpu.dr[7] &= ~0x2000;
    cpu.dr[6] |= 0x2000;
    cpu.fault(DB);
  }
}
/** DR4/DR5 alias DR6/DR7, unless CR4.DE is set: then they are #UD. */
function drIndex(cpu: Cpu, r: number): number {
  if (r === 4 || r === 5) {
    if ((cpu.cr4 & CR4_DE) !== 0) ud(cpu);
    return r + 2;
  }
  return r;
}
export const hMovFromDr: Handler = (cpu, i) => {
  needCpl0(cpu);
  const n = drIndex(cpu, i.regN);
  generalDetect(cpu);
  // DR6 holds B0-B3, BD, BS, BT (the rest reads 1, bit 12 reads 0); DR7's bit 10 reads 1 and
  // bits 11, 12, 14, 15 read 0
  cpu.r32[i.rmN] = n === 6
    ? (cpu.dr[6] & 0xe00f) | 0xffff0ff0
    : n === 7
    ? (cpu.dr[7] & ~0xd800) | 0x400
    : cpu.dr[n];
};
export const hMovToDr: Handler = (cpu, i) => {
  needCpl0(cpu);
  const n = drIndex(cpu, i.regN);
  generalDetect(cpu);
  cpu.dr[n] = cpu.r32[i.rmN];
  if (n < 4 || n === 7) cpu.debugRegsChanged();
};
export const hClts: Handler = (cpu) => {
  needCpl0(cpu);
  cpu.cr0 &= ~CR0_TS;
};
export const hInvd: Handler = (cpu) => needCpl0(cpu);
export const hInvlpg: Handler = (cpu, i) => {
  needCpl0(cpu);
  if (!i.mem) ud(cpu);
  cpu.invlpg(i.ea(cpu, i));
};

/** 0F 01 /0../3: SGDT, SIDT, LGDT, LIDT. */
export const hDescTable: Handler = (cpu, i) => {
  if (!i.mem) ud(cpu);
  const lin = i.ea(cpu, i);
  const isIdt = (i.op & 1) !== 0;
  if (i.op < 2) {
    cpu.wr16(lin, isIdt ? cpu.idtLimit : cpu.gdtLimit);
    cpu.wr32((lin + 2) | 0, isIdt ? cpu.idtBase : cpu.gdtBase);
  } else {
    needCpl0(cpu);
    const limit = cpu.rd16(lin);
    let base = cpu.rd32((lin + 2) | 0);
    if (i.sz !== 2) base &= 0xffffff;
    if (isIdt) {
      cpu.idtLimit = limit;
      cpu.idtBase = base;
    } else {
      cpu.gdtLimit = limit;
      cpu.gdtBase = base;
    }
  }
};
export const hSmsw: Handler = (cpu, i) => {
  if (i.mem) cpu.wr16(i.ea(cpu, i), cpu.cr0 & 0xffff);
  else setReg(cpu, i.sz, i.rm, i.sz === 2 ? cpu.cr0 : cpu.cr0 & 0xffff);
};
export const hLmsw: Handler = (cpu, i) => {
  needCpl0(cpu);
  const v = i.mem ? cpu.rd16(i.ea(cpu, i)) : cpu.r16[i.rmN << 1];
  // LMSW sets PE but never clears it
  const old = cpu.cr0;
  cpu.cr0 = (old & ~0xe) | (v & 0xf) | (old & 1);
  if (((old ^ cpu.cr0) & CR0_PE) !== 0) cpu.modeChanged();
};
/** 0F 00: SLDT, STR, LLDT, LTR, VERR, VERW. */
export const hSys00: Handler = (cpu, i) => {
  if (!isProtected(cpu)) ud(cpu);
  switch (i.op) {
    case 0:
    case 1: {
      const v = cpu.segSel[i.op === 0 ? LDTR : TR];
      if (i.mem) cpu.wr16(i.ea(cpu, i), v);
      else setReg(cpu, i.sz, i.rm, v);
      return;
    }
    case 2:
    case 3: {
      needCpl0(cpu);
      const sel = i.mem ? cpu.rd16(i.ea(cpu, i)) : cpu.r16[i.rmN << 1];
      if (i.op === 2) loadLdt(cpu, sel);
      else loadTr(cpu, sel);
      return;
    }
    default: {
      const sel = i.mem ? cpu.rd16(i.ea(cpu, i)) : cpu.r16[i.rmN << 1];
      const d = peekDescriptor(cpu, sel);
      let ok = false;
      if (d !== null) {
        const acc = (d.hi >> 8) & 0xff;
        const dpl = (acc >> 5) & 3;
        if ((acc & 0x10) !== 0) {
          const code = (acc & 8) !== 0, conf = (acc & 4) !== 0;
          const privOk = (code && conf) || (dpl >= cpu.cpl && dpl >= (sel & 3));
          ok = privOk && (i.op === 4 ? !code || (acc & 2) !== 0 : !code && (acc & 2) !== 0);
        }
      }
      cpu.materialize();
      cpu.eflags = ok ? cpu.eflags | ZF : cpu.eflags & ~ZF;
    }
  }
};
/** LAR (op 0) / LSL (op 1). */
export const hLarLsl: Handler = (cpu, i) => {
  if (!isProtected(cpu)) ud(cpu);
  const sel = i.mem ? cpu.rd16(i.ea(cpu, i)) : cpu.r16[i.rmN << 1];
  const d = peekDescriptor(cpu, sel);
  let ok = false;
  if (d !== null) {
    const acc = (d.hi >> 8) & 0xff;
    const dpl = (acc >> 5) & 3;
    const type = acc & 0x1f;
    const conf = (acc & 0x1c) === 0x1c;
    const sysOk = i.op === 0
      ? [1, 2, 3, 4, 5, 9, 0xb, 0xc].includes(type)
      : [1, 2, 3, 9, 0xb].includes(type);
    ok = ((acc & 0x10) !== 0 || sysOk) && (conf || (dpl >= cpu.cpl && dpl >= (sel & 3)));
    if (ok) {
      const v = i.op === 0 ? d.hi & 0x00ffff00 : descLimit(d.lo, d.hi);
      setReg(cpu, i.sz, i.reg, i.sz === 2 ? v : v & 0xffff);
    }
  }
  cpu.materialize();
  cpu.eflags = ok ? cpu.eflags | ZF : cpu.eflags & ~ZF;
};
export const hArpl: Handler = (cpu, i) => {
  if (!isProtected(cpu)) ud(cpu);
  const lin = i.mem ? i.ea(cpu, i) : 0;
  const dst = i.mem ? cpu.rdw(1, lin) : cpu.r16[i.rmN << 1];
  const src = cpu.r16[i.regN << 1];
  cpu.materialize();
  if ((dst & 3) < (src & 3)) {
    const v = (dst & ~3) | (src & 3);
    if (i.mem) cpu.wr16(lin, v);
    else cpu.r16[i.rmN << 1] = v;
    cpu.eflags |= ZF;
  } else cpu.eflags &= ~ZF;
};
export const hWait: Handler = (cpu) => fpuWait(cpu);
export const hEsc: Handler = (cpu, i) => fpuEscape(cpu, i);
export const hUd: Handler = (cpu) => ud(cpu);
/** 0F AE: FXSAVE (/0), FXRSTOR (/1); the SSE-only forms are #UD (no SSE). */
export const hFxsave: Handler = (cpu, i) => {
  if (!i.mem || (cpu.cr4 & CR4_OSFXSR) === 0) ud(cpu);
  fxsave(cpu, i.ea(cpu, i), i.op === 1);
};
