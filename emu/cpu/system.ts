/**
 * Segmentation and privilege: loading segment registers, far transfers, interrupt and exception
 * delivery, IRET, in real, protected and virtual-8086 mode.
 * @module
 */

import type { Cpu } from "./cpu.ts";
import { CR0_PE, CS, DS, ES, FS, GP, GS, LDTR, NP, SS, SSF, TR, TS } from "./consts.ts";
import { AC, IF, NT, RF, TF, VM } from "./flags.ts";

/** The data segment registers (hoisted: no allocation in the loops that use it). */
const DATA_SEGS = [ES, DS, FS, GS];

/** Scratch output of readDescriptor (no allocation). */
let dLo = 0, dHi = 0;

/** Reads the descriptor `sel` names into dLo/dHi; #GP(sel) (or `vec`) when beyond the table. */
function readDescriptor(cpu: Cpu, sel: number, vec = GP): void {
  const idx = sel & ~7;
  let base: number, limit: number;
  if ((sel & 4) !== 0) {
    if ((cpu.segAttr[LDTR] & 0x80) === 0) cpu.fault(vec, sel & 0xfffc);
    base = cpu.segBase[LDTR];
    limit = cpu.segLimit[LDTR];
  } else {
    base = cpu.gdtBase;
    limit = cpu.gdtLimit;
  }
  if (idx + 7 > limit) cpu.fault(vec, sel & 0xfffc);
  dLo = cpu.sysRd32((base + idx) | 0);
  dHi = cpu.sysRd32((base + idx + 4) | 0);
}

function descBase(lo: number, hi: number): number {
  return ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) | 0;
}

function descLimit(lo: number, hi: number): number {
  const l = (lo & 0xffff) | (hi & 0xf0000);
  return (hi & 0x800000) !== 0 ? ((l << 12) | 0xfff) >>> 0 : l;
}

function descAttr(hi: number): number {
  return (hi >> 8) & 0xf0ff;
}

/** Sets the accessed bit of the descriptor last read. */
function setAccessed(cpu: Cpu, sel: number): void {
  if ((dHi & 0x100) !== 0) return;
  const base = (sel & 4) !== 0 ? cpu.segBase[LDTR] : cpu.gdtBase;
  dHi |= 0x100;
  cpu.sysWr8((base + (sel & ~7) + 5) | 0, (dHi >> 8) & 0xff);
}

/** True in protected mode outside virtual-8086 mode. */
export function isProtected(cpu: Cpu): boolean {
  return (cpu.cr0 & CR0_PE) !== 0 && (cpu.eflags & VM) === 0;
}

function loadCache(cpu: Cpu, seg: number, sel: number, lo: number, hi: number): void {
  cpu.setSegCache(seg, sel, descBase(lo, hi), descLimit(lo, hi), descAttr(hi));
}

/** Real/v86-mode segment load: base = sel * 16. */
function loadReal(cpu: Cpu, seg: number, sel: number): void {
  if ((cpu.eflags & VM) !== 0) {
    cpu.setSegCache(seg, sel, sel << 4, 0xffff, seg === CS ? 0xfb : 0xf3);
  } else {
    cpu.segSel[seg] = sel;
    cpu.segBase[seg] = sel << 4;
    cpu.segCheck(seg); // the flat mask
  }
}

/** MOV/POP/LxS to a data or stack segment register. */
export function loadSeg(cpu: Cpu, seg: number, sel: number): void {
  if (!isProtected(cpu)) {
    loadReal(cpu, seg, sel);
    if (seg === SS) cpu.modeChanged();
    return;
  }
  const rpl = sel & 3;
  if ((sel & 0xfffc) === 0) {
    if (seg === SS) cpu.fault(GP, 0);
    cpu.setSegCache(seg, sel, 0, 0, 0); // unusable: any access faults
    return;
  }
  readDescriptor(cpu, sel);
  const access = (dHi >> 8) & 0xff;
  const dpl = (access >> 5) & 3;
  if (seg === SS) {
    // writable data, RPL = DPL = CPL
    if ((access & 0x1a) !== 0x12 || rpl !== cpu.cpl || dpl !== cpu.cpl) cpu.fault(GP, sel & 0xfffc);
    if ((access & 0x80) === 0) cpu.fault(SSF, sel & 0xfffc);
  } else {
    if ((access & 0x10) === 0 || (access & 0x0a) === 0x08) cpu.fault(GP, sel & 0xfffc); // system or exec-only
    const conforming = (access & 0x0c) === 0x0c;
    if (!conforming && dpl < Math.max(cpu.cpl, rpl)) cpu.fault(GP, sel & 0xfffc);
    if ((access & 0x80) === 0) cpu.fault(NP, sel & 0xfffc);
  }
  setAccessed(cpu, sel);
  loadCache(cpu, seg, sel, dLo, dHi);
  if (seg === SS) cpu.modeChanged();
}

/** Loads CS (already checked) and sets CPL. */
function setCs(cpu: Cpu, sel: number, lo: number, hi: number, cpl: number): void {
  loadCache(cpu, CS, (sel & 0xfffc) | cpl, lo, hi);
  cpu.setCpl(cpl);
  cpu.modeChanged();
}

/** Real/v86-mode CS load. */
function setCsReal(cpu: Cpu, sel: number): void {
  loadReal(cpu, CS, sel);
  cpu.blockExit = true;
  cpu.epoch++;
}

/** Stack pointer used for pushes with an explicit SS base/mask (after a stack switch). */
function pushTo(cpu: Cpu, sz32: boolean, v: number): void {
  if (sz32) cpu.push32(v);
  else cpu.push16(v);
}

/** Reads the inner stack pointer for privilege level `dpl` from the TSS; sets ss/esp out. */
let tssSs = 0, tssEsp = 0;
function tssStack(cpu: Cpu, dpl: number): void {
  const type = cpu.segAttr[TR] & 0xf;
  const base = cpu.segBase[TR];
  if ((type & 8) !== 0) {
    const off = 4 + dpl * 8;
    if (off + 5 > cpu.segLimit[TR]) cpu.fault(TS, cpu.segSel[TR] & 0xfffc);
    tssEsp = cpu.sysRd32((base + off) | 0);
    tssSs = cpu.sysRd16((base + off + 4) | 0);
  } else {
    const off = 2 + dpl * 4;
    if (off + 3 > cpu.segLimit[TR]) cpu.fault(TS, cpu.segSel[TR] & 0xfffc);
    tssEsp = cpu.sysRd16((base + off) | 0);
    tssSs = cpu.sysRd16((base + off + 2) | 0);
  }
}

/** Loads SS:ESP for an inner privilege level (checks per the SDM's stack-switch rules). */
function switchStack(cpu: Cpu, newSs: number, newEsp: number, dpl: number): void {
  if ((newSs & 0xfffc) === 0) cpu.fault(TS, 0);
  readDescriptor(cpu, newSs, TS);
  const access = (dHi >> 8) & 0xff;
  if ((newSs & 3) !== dpl || ((access >> 5) & 3) !== dpl || (access & 0x1a) !== 0x12) {
    cpu.fault(TS, newSs & 0xfffc);
  }
  if ((access & 0x80) === 0) cpu.fault(SSF, newSs & 0xfffc);
  setAccessed(cpu, newSs);
  loadCache(cpu, SS, newSs, dLo, dHi);
  cpu.modeChanged();
  if (cpu.spMask === 0xffff) cpu.r16[8] = newEsp;
  else cpu.r32[4] = newEsp;
}

/** Null out data segment registers the new (outer) privilege may not use. */
function nullOuterSegs(cpu: Cpu): void {
  for (const s of DATA_SEGS) {
    const a = cpu.segAttr[s];
    const dpl = (a >> 5) & 3;
    const dataOrNonConf = (a & 0x08) === 0 || (a & 0x04) === 0;
    if ((cpu.segSel[s] & 0xfffc) !== 0 && dataOrNonConf && dpl < cpu.cpl) {
      cpu.setSegCache(s, 0, 0, 0, 0);
    }
  }
}

/**
 * The `code` of an instruction-breakpoint #DB (a fault with no error code): unlike every other
 * fault it pushes EFLAGS.RF as it is (clear), not set.
 */
export const CODE_BP = -2;

/**
 * EFLAGS as an event pushes (or saves in the TSS): RF set for a fault (kind 1) other than an
 * instruction breakpoint, so that IRET resumes the faulting instruction past its breakpoint;
 * clear for INT n/INT3/INTO (RF is cleared as they start); as it is for hardware interrupts and
 * traps (set only right after an IRET to a breakpoint or inside an interrupted REP string).
 */
function eventFlags(cpu: Cpu, code: number, kind: number): number {
  const f = cpu.getFlags();
  if (kind === 1) return code === CODE_BP ? f : f | RF;
  return kind >= 2 ? f & ~RF : f;
}

/**
 * Delivers interrupt `vec`. kind: 0 external/NMI or a trap-class #DB, 1 exception (fault),
 * 2 INT n, 3 INT3/INTO (software kinds check the gate's DPL). `code` is the error code, -1 for
 * none, or CODE_BP (none; an instruction breakpoint).
 */
export function deliverInterrupt(cpu: Cpu, vec: number, code: number, kind: number): void {
  cpu.halted = false;
  cpu.blockExit = true;
  // entering the #DB handler clears DR7.GD, so that it may use the debug registers
  if (vec === 1 && kind <= 1) cpu.dr[7] &= ~0x2000;
  if ((cpu.cr0 & CR0_PE) === 0) {
    // real mode: IVT entry at IDTR.base + 4*vec
    if (vec * 4 + 3 > cpu.idtLimit) cpu.fault(GP, 0);
    const flags = cpu.getFlags();
    const entry = cpu.rd32((cpu.idtBase + vec * 4) | 0);
    cpu.push16(flags);
    cpu.push16(cpu.segSel[CS]);
    cpu.push16(cpu.eip);
    cpu.eflags = flags & ~(IF | TF | AC | RF);
    cpu.lop = 0;
    setCsReal(cpu, entry >>> 16);
    cpu.eip = entry & 0xffff;
    return;
  }
  const vm = (cpu.eflags & VM) !== 0;
  if (vm && kind === 2 && ((cpu.eflags >> 12) & 3) < 3) cpu.fault(GP, 0);
  const ext = kind === 0 || kind === 1 ? 1 : 0;
  if (vec * 8 + 7 > cpu.idtLimit) cpu.fault(GP, vec * 8 + 2 + ext);
  const gLo = cpu.sysRd32((cpu.idtBase + vec * 8) | 0);
  const gHi = cpu.sysRd32((cpu.idtBase + vec * 8 + 4) | 0);
  const type = (gHi >> 8) & 0x1f;
  const gdpl = (gHi >> 13) & 3;
  if (type !== 0x05 && type !== 0x06 && type !== 0x07 && type !== 0x0e && type !== 0x0f) {
    cpu.fault(GP, vec * 8 + 2 + ext);
  }
  if (kind >= 2 && gdpl < cpu.cpl) cpu.fault(GP, vec * 8 + 2);
  if ((gHi & 0x8000) === 0) cpu.fault(NP, vec * 8 + 2 + ext);
  if (type === 0x05) {
    // the outgoing task's saved EFLAGS follows the same RF rule as a pushed image
    if (kind === 1 && code !== CODE_BP) cpu.eflags |= RF;
    else if (kind >= 2) cpu.eflags &= ~RF;
    taskGate(cpu, gLo >>> 16, TASK_INT, code);
    return;
  }
  const gate32 = (type & 8) !== 0;
  const sel = gLo >>> 16;
  const offset = gate32 ? ((gHi & 0xffff0000) | (gLo & 0xffff)) >>> 0 : gLo & 0xffff;
  if ((sel & 0xfffc) === 0) cpu.fault(GP, ext);
  readDescriptor(cpu, sel);
  const cLo = dLo, cHi = dHi;
  const access = (cHi >> 8) & 0xff;
  const dpl = (access >> 5) & 3;
  if ((access & 0x18) !== 0x18 || dpl > cpu.cpl) cpu.fault(GP, (sel & 0xfffc) + ext);
  if ((access & 0x80) === 0) cpu.fault(NP, (sel & 0xfffc) + ext);
  const flags = eventFlags(cpu, code, kind);
  const conforming = (access & 0x04) !== 0;
  if (!conforming && dpl < cpu.cpl) {
    // inner privilege: new stack from the TSS
    if (vm && dpl !== 0) cpu.fault(GP, sel & 0xfffc);
    tssStack(cpu, dpl);
    const oldSs = cpu.segSel[SS], oldEsp = cpu.r32[4];
    const oldCpl = cpu.cpl;
    const oEs = cpu.segSel[ES], oDs = cpu.segSel[DS], oFs = cpu.segSel[FS], oGs = cpu.segSel[GS];
    cpu.setCpl(dpl);
    // leaving v86 mode first: the ring-0 stack's size comes from its own B bit (a 32-bit ESP0
    // above 64 KiB must not be cut to SP)
    if (vm) cpu.eflags &= ~VM;
    try {
      switchStack(cpu, tssSs, tssEsp, dpl);
    } catch (e) {
      cpu.setCpl(oldCpl);
      if (vm) {
        cpu.eflags |= VM;
        cpu.modeChanged();
      }
      throw e;
    }
    if (vm) {
      pushTo(cpu, gate32, oGs);
      pushTo(cpu, gate32, oFs);
      pushTo(cpu, gate32, oDs);
      pushTo(cpu, gate32, oEs);
      for (const s of DATA_SEGS) {
        cpu.setSegCache(s, 0, 0, 0, 0);
      }
    }
    pushTo(cpu, gate32, oldSs);
    pushTo(cpu, gate32, oldEsp);
  } else if (vm) {
    cpu.fault(GP, sel & 0xfffc);
  }
  pushTo(cpu, gate32, flags);
  pushTo(cpu, gate32, cpu.segSel[CS]);
  pushTo(cpu, gate32, cpu.eip);
  if (code >= 0) pushTo(cpu, gate32, code);
  setAccessed(cpu, sel);
  setCs(cpu, sel, cLo, cHi, conforming ? cpu.cpl : dpl);
  cpu.eflags = flags & ~(TF | NT | RF | VM | ((type & 1) === 0 ? IF : 0));
  cpu.lop = 0;
  cpu.modeChanged();
  cpu.eip = offset;
}

/** Far JMP/CALL to sel:off (call pushes the return address with operand size sz). */
export function farTransfer(cpu: Cpu, sel: number, off: number, sz: number, call: boolean): void {
  if (!isProtected(cpu)) {
    if (call) {
      // push before loading so that a stack fault leaves CS:IP intact
      const sp0 = cpu.r32[4];
      try {
        cpu.push(sz, cpu.segSel[CS]);
        cpu.push(sz, cpu.eip);
      } catch (e) {
        cpu.r32[4] = sp0;
        throw e;
      }
    }
    setCsReal(cpu, sel);
    cpu.eip = sz === 2 ? off >>> 0 : off & 0xffff;
    return;
  }
  if ((sel & 0xfffc) === 0) cpu.fault(GP, 0);
  readDescriptor(cpu, sel);
  const lo = dLo, hi = dHi;
  const access = (hi >> 8) & 0xff;
  const dpl = (access >> 5) & 3;
  const rpl = sel & 3;
  if ((access & 0x18) === 0x18) {
    // code segment
    if ((access & 0x04) !== 0) {
      if (dpl > cpu.cpl) cpu.fault(GP, sel & 0xfffc);
    } else if (rpl > cpu.cpl || dpl !== cpu.cpl) cpu.fault(GP, sel & 0xfffc);
    if ((access & 0x80) === 0) cpu.fault(NP, sel & 0xfffc);
    if (call) {
      const sp0 = cpu.r32[4];
      try {
        cpu.push(sz, cpu.segSel[CS]);
        cpu.push(sz, cpu.eip);
      } catch (e) {
        cpu.r32[4] = sp0;
        throw e;
      }
    }
    setAccessed(cpu, sel);
    setCs(cpu, sel, lo, hi, cpu.cpl);
    cpu.eip = sz === 2 ? off >>> 0 : off & 0xffff;
    return;
  }
  const type = access & 0x1f;
  if (type === 0x04 || type === 0x0c) {
    // call gate
    if (dpl < cpu.cpl || dpl < rpl) cpu.fault(GP, sel & 0xfffc);
    if ((access & 0x80) === 0) cpu.fault(NP, sel & 0xfffc);
    const gate32 = type === 0x0c;
    const csel = lo >>> 16;
    const goff = gate32 ? ((hi & 0xffff0000) | (lo & 0xffff)) >>> 0 : lo & 0xffff;
    const pcount = hi & 0x1f;
    if ((csel & 0xfffc) === 0) cpu.fault(GP, 0);
    readDescriptor(cpu, csel);
    const cLo = dLo, cHi = dHi;
    const cacc = (cHi >> 8) & 0xff;
    const cdpl = (cacc >> 5) & 3;
    if ((cacc & 0x18) !== 0x18 || cdpl > cpu.cpl) cpu.fault(GP, csel & 0xfffc);
    if ((cacc & 0x80) === 0) cpu.fault(NP, csel & 0xfffc);
    const conforming = (cacc & 0x04) !== 0;
    if (call && !conforming && cdpl < cpu.cpl) {
      const oldSs = cpu.segSel[SS], oldEsp = cpu.r32[4], oldMask = cpu.spMask;
      const oldSsBase = cpu.segBase[SS];
      const retCs = cpu.segSel[CS], retEip = cpu.eip;
      const params: number[] = [];
      for (let k = pcount - 1; k >= 0; k--) {
        const a = (oldSsBase + ((oldEsp + k * (gate32 ? 4 : 2)) & oldMask)) | 0;
        params.push(gate32 ? cpu.rd32(a) : cpu.rd16(a));
      }
      tssStack(cpu, cdpl);
      cpu.setCpl(cdpl);
      switchStack(cpu, tssSs, tssEsp, cdpl);
      pushTo(cpu, gate32, oldSs);
      pushTo(cpu, gate32, oldEsp);
      for (const p of params) pushTo(cpu, gate32, p);
      pushTo(cpu, gate32, retCs);
      pushTo(cpu, gate32, retEip);
      setAccessed(cpu, csel);
      setCs(cpu, csel, cLo, cHi, cdpl);
    } else {
      if (call) {
        pushTo(cpu, gate32, cpu.segSel[CS]);
        pushTo(cpu, gate32, cpu.eip);
      } else if (!conforming && cdpl !== cpu.cpl) cpu.fault(GP, csel & 0xfffc);
      setAccessed(cpu, csel);
      setCs(cpu, csel, cLo, cHi, cpu.cpl);
    }
    cpu.eip = goff;
    return;
  }
  if (type === 0x05) {
    // task gate: DPL checked above like a call gate's
    if (dpl < cpu.cpl || dpl < rpl) cpu.fault(GP, sel & 0xfffc);
    if ((access & 0x80) === 0) cpu.fault(NP, sel & 0xfffc);
    taskGate(cpu, lo >>> 16, call ? TASK_CALL : TASK_JMP, -1);
    return;
  }
  if (type === 0x01 || type === 0x09) {
    if (dpl < cpu.cpl || dpl < rpl) cpu.fault(GP, sel & 0xfffc);
    if ((access & 0x80) === 0) cpu.fault(NP, sel & 0xfffc);
    taskSwitch(cpu, sel, lo, hi, call ? TASK_CALL : TASK_JMP, -1);
    return;
  }
  cpu.fault(GP, sel & 0xfffc);
}

// ------------------------------------------------------------------ task switching

const TASK_JMP = 0, TASK_CALL = 1, TASK_INT = 2, TASK_IRET = 3;

/** Through a task gate: the gate's TSS selector must name an available TSS in the GDT. */
function taskGate(cpu: Cpu, tssSel: number, source: number, code: number): void {
  if ((tssSel & 4) !== 0 || (tssSel & 0xfffc) === 0) cpu.fault(GP, tssSel & 0xfffc);
  readDescriptor(cpu, tssSel);
  const type = (dHi >> 8) & 0x1f;
  if (type !== 0x01 && type !== 0x09) cpu.fault(GP, tssSel & 0xfffc);
  if ((dHi & 0x8000) === 0) cpu.fault(NP, tssSel & 0xfffc);
  taskSwitch(cpu, tssSel, dLo, dHi, source, code);
}

function setBusy(cpu: Cpu, sel: number, busy: boolean): void {
  const a = (cpu.gdtBase + (sel & ~7) + 5) | 0;
  const v = cpu.sysRd32((a - 1) | 0) >>> 8;
  cpu.sysWr8(a, busy ? (v | 2) & 0xff : v & 0xfd);
}

/**
 * Switches to the task whose TSS descriptor (lo/hi) `sel` names: saves the current state in the
 * current TSS, loads the new one (CR3, LDT, registers, segments), links/busy bits per source,
 * sets CR0.TS, and pushes `code` (>= 0) on the new stack (exceptions through task gates).
 */
function taskSwitch(cpu: Cpu, sel: number, lo: number, hi: number, source: number, code: number) {
  const type = (hi >> 8) & 0x1f;
  const is32 = (type & 8) !== 0;
  const busy = (hi & 0x200) !== 0;
  if (source === TASK_IRET ? !busy : busy) cpu.fault(GP, sel & 0xfffc);
  const nbase = descBase(lo, hi);
  const nlimit = descLimit(lo, hi);
  if (nlimit < (is32 ? 0x67 : 0x2b)) cpu.fault(TS, sel & 0xfffc);
  // save the outgoing state
  const obase = cpu.segBase[TR];
  const o32 = (cpu.segAttr[TR] & 8) !== 0;
  let flags = cpu.getFlags();
  if (source === TASK_IRET) flags &= ~NT;
  if (o32) {
    cpu.sysWr32((obase + 0x20) | 0, cpu.eip);
    cpu.sysWr32((obase + 0x24) | 0, flags);
    for (let r = 0; r < 8; r++) cpu.sysWr32((obase + 0x28 + r * 4) | 0, cpu.r32[r]);
    for (let s = 0; s < 6; s++) cpu.sysWr32((obase + 0x48 + s * 4) | 0, cpu.segSel[s]);
  } else {
    const w16 = (off: number, v: number) => {
      cpu.sysWr8((obase + off) | 0, v & 0xff);
      cpu.sysWr8((obase + off + 1) | 0, (v >> 8) & 0xff);
    };
    w16(0x0e, cpu.eip);
    w16(0x10, flags);
    for (let r = 0; r < 8; r++) w16(0x12 + r * 2, cpu.r16[r * 2]);
    for (let s = 0; s < 4; s++) w16(0x22 + s * 2, cpu.segSel[s]);
  }
  if (source === TASK_JMP || source === TASK_IRET) setBusy(cpu, cpu.segSel[TR], false);
  // read the incoming state
  const rd32 = (off: number) => cpu.sysRd32((nbase + off) | 0);
  const rd16 = (off: number) => cpu.sysRd16((nbase + off) | 0);
  let neip: number, nflags: number, ncr3 = cpu.cr3, nldt: number;
  const regs = new Int32Array(8);
  const segs = new Uint16Array(6);
  if (is32) {
    ncr3 = rd32(0x1c);
    neip = rd32(0x20) >>> 0;
    nflags = rd32(0x24);
    for (let r = 0; r < 8; r++) regs[r] = rd32(0x28 + r * 4);
    for (let s = 0; s < 6; s++) segs[s] = rd16(0x48 + s * 4);
    nldt = rd16(0x60);
  } else {
    neip = rd16(0x0e);
    nflags = rd16(0x10) | (cpu.eflags & 0xffff0000 & ~VM);
    for (let r = 0; r < 8; r++) regs[r] = (rd16(0x12 + r * 2) << 16) >> 16;
    for (let s = 0; s < 4; s++) segs[s] = rd16(0x22 + s * 2);
    nldt = rd16(0x2a);
  }
  if (source === TASK_CALL || source === TASK_INT) {
    cpu.sysWr8(nbase, cpu.segSel[TR] & 0xff);
    cpu.sysWr8((nbase + 1) | 0, cpu.segSel[TR] >> 8);
    nflags |= NT;
  }
  if (source !== TASK_IRET) setBusy(cpu, sel, true);
  loadCache(cpu, TR, sel, lo, hi | 0x200);
  cpu.cr0 |= 8; // TS
  if (is32 && (cpu.cr0 & 0x80000000) !== 0 && ncr3 !== cpu.cr3) {
    cpu.cr3 = ncr3;
    cpu.flushTlb();
  } else if (is32) cpu.cr3 = ncr3;
  // registers and flags of the new task; segments are loaded with the new task's privilege
  cpu.r32.set(regs);
  cpu.eflags = (nflags & 0x3f7fd5) | 2;
  cpu.lop = 0;
  cpu.eip = neip;
  const vm = (cpu.eflags & VM) !== 0;
  // LDT first: the selectors may refer to it
  if ((nldt & 0xfffc) === 0) {
    cpu.segSel[LDTR] = 0;
    cpu.segAttr[LDTR] = 0;
  } else {
    if ((nldt & 4) !== 0) cpu.fault(TS, nldt & 0xfffc);
    readDescriptor(cpu, nldt, TS);
    if (((dHi >> 8) & 0x1f) !== 0x02) cpu.fault(TS, nldt & 0xfffc);
    loadCache(cpu, LDTR, nldt, dLo, dHi);
  }
  if (vm) {
    cpu.setCpl(3);
    for (let s = 0; s < 6; s++) loadReal(cpu, s, segs[s]);
    cpu.modeChanged();
  } else {
    // CS decides the new CPL
    const csSel = segs[CS];
    if ((csSel & 0xfffc) === 0) cpu.fault(TS, 0);
    readDescriptor(cpu, csSel, TS);
    const acc = (dHi >> 8) & 0xff;
    if ((acc & 0x18) !== 0x18) cpu.fault(TS, csSel & 0xfffc);
    if ((acc & 0x80) === 0) cpu.fault(NP, csSel & 0xfffc);
    setCs(cpu, csSel, dLo, dHi, csSel & 3);
    for (const s of [SS, ES, DS, FS, GS]) {
      if (!is32 && (s === FS || s === GS)) continue;
      loadSeg(cpu, s, segs[s]);
    }
  }
  cpu.modeChanged();
  cpu.flushCodeLinks();
  if (code >= 0) pushTo(cpu, is32, code);
  // the debug trap bit (T) of a 32-bit TSS: #DB with DR6.BT once the switch is complete
  if (is32 && (rd16(0x64) & 1) !== 0) {
    cpu.dr[6] |= 0x8000;
    cpu.tssTrap = true;
    cpu.blockExit = true;
  }
}

/** RETF [n] with operand size sz. */
export function farReturn(cpu: Cpu, sz: number, imm: number): void {
  if (!isProtected(cpu)) {
    const ip = cpu.peek(sz, 0);
    const cs = cpu.peek(sz, sz === 2 ? 4 : 2) & 0xffff;
    cpu.pop(sz);
    cpu.pop(sz);
    setCsReal(cpu, cs);
    cpu.eip = ip;
    addSp(cpu, imm);
    return;
  }
  const w = sz === 2 ? 4 : 2;
  const eip = cpu.peek(sz, 0) >>> 0;
  const sel = cpu.peek(sz, w) & 0xffff;
  if ((sel & 0xfffc) === 0) cpu.fault(GP, 0);
  readDescriptor(cpu, sel);
  const lo = dLo, hi = dHi;
  const access = (hi >> 8) & 0xff;
  const dpl = (access >> 5) & 3;
  const rpl = sel & 3;
  if ((access & 0x18) !== 0x18 || rpl < cpu.cpl) cpu.fault(GP, sel & 0xfffc);
  if ((access & 0x04) !== 0 ? dpl > rpl : dpl !== rpl) cpu.fault(GP, sel & 0xfffc);
  if ((access & 0x80) === 0) cpu.fault(NP, sel & 0xfffc);
  if (rpl > cpu.cpl) {
    const esp = cpu.peek(sz, 2 * w + imm);
    const ss = cpu.peek(sz, 3 * w + imm) & 0xffff;
    setAccessed(cpu, sel);
    setCs(cpu, sel, lo, hi, rpl);
    loadSeg(cpu, SS, ss);
    if (cpu.spMask === 0xffff) cpu.r16[8] = esp;
    else cpu.r32[4] = esp;
    addSp(cpu, imm);
    nullOuterSegs(cpu);
  } else {
    addSp(cpu, 2 * w);
    setAccessed(cpu, sel);
    setCs(cpu, sel, lo, hi, cpu.cpl);
    addSp(cpu, imm);
  }
  cpu.eip = sz === 2 ? eip : eip & 0xffff;
}

function addSp(cpu: Cpu, n: number): void {
  if (cpu.spMask === 0xffff) cpu.r16[8] = cpu.r16[8] + n;
  else cpu.r32[4] = cpu.r32[4] + n;
}

/** IRET with operand size sz. */
export function iret(cpu: Cpu, sz: number): void {
  const w = sz === 2 ? 4 : 2;
  cpu.nmiBlocked = false; // IRET ends NMI blocking (whichever handler it returns from)
  if ((cpu.cr0 & CR0_PE) === 0 || (cpu.eflags & VM) !== 0) {
    if ((cpu.eflags & VM) !== 0 && ((cpu.eflags >> 12) & 3) < 3) cpu.fault(GP, 0);
    const ip = cpu.peek(sz, 0);
    const cs = cpu.peek(sz, w) & 0xffff;
    const fl = cpu.peek(sz, 2 * w);
    addSp(cpu, 3 * w);
    setCsReal(cpu, cs);
    cpu.eip = ip >>> 0;
    let mask = cpu.popfMask(sz);
    if ((cpu.eflags & VM) !== 0) mask &= ~0x3000;
    cpu.setFlagsMasked(fl, mask);
    cpu.blockExit = true;
    return;
  }
  if ((cpu.eflags & NT) !== 0) {
    // nested task: return to the task in the back link
    const back = cpu.sysRd16(cpu.segBase[TR]);
    if ((back & 4) !== 0 || (back & 0xfffc) === 0) cpu.fault(TS, back & 0xfffc);
    readDescriptor(cpu, back, TS);
    const type = (dHi >> 8) & 0x1f;
    if (type !== 0x03 && type !== 0x0b) cpu.fault(TS, back & 0xfffc);
    if ((dHi & 0x8000) === 0) cpu.fault(NP, back & 0xfffc);
    taskSwitch(cpu, back, dLo, dHi, TASK_IRET, -1);
    return;
  }
  const eip = cpu.peek(sz, 0) >>> 0;
  const sel = cpu.peek(sz, w) & 0xffff;
  const fl = cpu.peek(sz, 2 * w);
  if ((fl & VM) !== 0 && sz === 2 && cpu.cpl === 0) {
    // return to virtual-8086 mode
    const esp = cpu.peek(2, 12), ss = cpu.peek(2, 16) & 0xffff;
    const es = cpu.peek(2, 20) & 0xffff, ds = cpu.peek(2, 24) & 0xffff;
    const fs = cpu.peek(2, 28) & 0xffff, gs = cpu.peek(2, 32) & 0xffff;
    cpu.materialize();
    cpu.eflags = (fl & 0x3f7fd5) | 2;
    cpu.setCpl(3);
    setCsReal(cpu, sel);
    for (const [s, v] of [[ES, es], [DS, ds], [FS, fs], [GS, gs], [SS, ss]] as const) {
      loadReal(cpu, s, v);
    }
    cpu.modeChanged();
    cpu.r32[4] = esp;
    cpu.eip = eip & 0xffff;
    return;
  }
  if ((sel & 0xfffc) === 0) cpu.fault(GP, 0);
  readDescriptor(cpu, sel);
  const lo = dLo, hi = dHi;
  const access = (hi >> 8) & 0xff;
  const dpl = (access >> 5) & 3;
  const rpl = sel & 3;
  if ((access & 0x18) !== 0x18 || rpl < cpu.cpl) cpu.fault(GP, sel & 0xfffc);
  if ((access & 0x04) !== 0 ? dpl > rpl : dpl !== rpl) cpu.fault(GP, sel & 0xfffc);
  if ((access & 0x80) === 0) cpu.fault(NP, sel & 0xfffc);
  const mask = cpu.popfMask(sz) | (sz === 2 ? RF : 0); // a 32-bit IRET restores RF
  if (rpl > cpu.cpl) {
    const esp = cpu.peek(sz, 3 * w);
    const ss = cpu.peek(sz, 4 * w) & 0xffff;
    cpu.setFlagsMasked(fl, mask);
    setAccessed(cpu, sel);
    setCs(cpu, sel, lo, hi, rpl);
    loadSeg(cpu, SS, ss);
    if (cpu.spMask === 0xffff) cpu.r16[8] = esp;
    else cpu.r32[4] = esp;
    nullOuterSegs(cpu);
  } else {
    addSp(cpu, 3 * w);
    cpu.setFlagsMasked(fl, mask);
    setAccessed(cpu, sel);
    setCs(cpu, sel, lo, hi, cpu.cpl);
  }
  cpu.eip = sz === 2 ? eip : eip & 0xffff;
  cpu.blockExit = true;
}

/** LLDT. */
export function loadLdt(cpu: Cpu, sel: number): void {
  if ((sel & 0xfffc) === 0) {
    cpu.segSel[LDTR] = 0;
    cpu.segAttr[LDTR] = 0;
    return;
  }
  if ((sel & 4) !== 0) cpu.fault(GP, sel & 0xfffc);
  readDescriptor(cpu, sel);
  if (((dHi >> 8) & 0x1f) !== 0x02) cpu.fault(GP, sel & 0xfffc);
  if ((dHi & 0x8000) === 0) cpu.fault(NP, sel & 0xfffc);
  loadCache(cpu, LDTR, sel, dLo, dHi);
}

/** LTR: marks the TSS busy. */
export function loadTr(cpu: Cpu, sel: number): void {
  if ((sel & 0xfffc) === 0 || (sel & 4) !== 0) cpu.fault(GP, sel & 0xfffc);
  readDescriptor(cpu, sel);
  const type = (dHi >> 8) & 0x1f;
  if (type !== 0x01 && type !== 0x09) cpu.fault(GP, sel & 0xfffc);
  if ((dHi & 0x8000) === 0) cpu.fault(NP, sel & 0xfffc);
  loadCache(cpu, TR, sel, dLo, dHi);
  dHi |= 0x200;
  cpu.segAttr[TR] |= 2;
  cpu.sysWr8((cpu.gdtBase + (sel & ~7) + 5) | 0, (dHi >> 8) & 0xff);
}

/**
 * LAR/LSL/VERR/VERW helper: reads the descriptor of `sel` without faulting.
 * Returns false when the selector is null or outside its table.
 */
export function peekDescriptor(cpu: Cpu, sel: number): { lo: number; hi: number } | null {
  if ((sel & 0xfffc) === 0) return null;
  const idx = sel & ~7;
  const base = (sel & 4) !== 0 ? cpu.segBase[LDTR] : cpu.gdtBase;
  const limit = (sel & 4) !== 0 ? cpu.segLimit[LDTR] : cpu.gdtLimit;
  if (idx + 7 > limit) return null;
  return { lo: cpu.sysRd32((base + idx) | 0), hi: cpu.sysRd32((base + idx + 4) | 0) };
}

/** Exported for LSL. */
export { descLimit };

/** Far transfer to a segment loaded via a selector in real mode (used by reset vectors). */
export function realCs(cpu: Cpu, sel: number): void {
  setCsReal(cpu, sel);
}
