/**
 * The x86 CPU: architectural state, the memory path (segmentation, paging, software TLB), the
 * threaded-code block cache and the run loop. Instruction semantics live in ops.ts, decoding in
 * decode.ts, protected-mode control transfers in system.ts.
 * @module
 */

import { type CpuBus, type CpuControl, PageKind, RunExit } from "./bus.ts";
import { AC, DF, IF, LazyFlags, NT, RF, TF, VM } from "./flags.ts";
import type { Block } from "./instr.ts";
import { decodeBlock, decodeOne } from "./decode.ts";
import { compileBlock, JIT_THRESHOLD } from "./jit.ts";
import { CODE_BP, deliverInterrupt } from "./system.ts";

export * from "./consts.ts";
import {
  ACF,
  CR0_AM,
  CR0_CD,
  CR0_ET,
  CR0_NW,
  CR0_PE,
  CR0_PG,
  CR0_WP,
  CR4_PAE,
  CR4_PGE,
  CR4_PSE,
  CS,
  DB,
  DBLF,
  LDTR,
  PF,
  SS,
  TR,
} from "./consts.ts";

/** Thrown (the one instance) by a handler that raised an exception; see Cpu.fault. */
export class CpuFault {
  readonly name = "CpuFault";
}
const FAULT = new CpuFault();

const TLB_PAGES = 1 << 20;
const TLB_LOG = 1 << 16;

/** A bus with nothing on it beyond RAM; handy for tests and as a default. */
export function ramOnlyBus(ram: Uint8Array): CpuBus {
  return {
    ram,
    pageKind: (p) => (p < ram.length >>> 12 ? PageKind.Ram : PageKind.Mmio),
    mmioRead: (_a, size) => (size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff),
    mmioWrite: () => {},
    ioRead: (_p, size) => (size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff),
    ioWrite: () => {},
    hasInterrupt: () => false,
    acknowledgeInterrupt: () => 0,
    shutdown: () => {},
  };
}

/** The interpreter. */
export class Cpu extends LazyFlags implements CpuControl {
  bus: CpuBus;
  ram: Uint8Array;
  /** RAM as dwords (aligned 32-bit accesses take one load); RAM's byte offset must be 4-aligned. */
  ram32: Int32Array;
  private ramPages: number;

  /** General registers: r32[0..7] = EAX..EDI, r32[8] = 0 (addressing "no register"). */
  readonly r32: Int32Array;
  readonly r16: Uint16Array;
  readonly r8: Uint8Array;
  eip = 0;

  segSel: Uint16Array = new Uint16Array(8);
  segBase: Int32Array = new Int32Array(8);
  segLimit: Uint32Array = new Uint32Array(8);
  /** Descriptor attributes: access byte in bits 0..7, flags nibble (AVL,L,D/B,G) in bits 12..15. */
  segAttr: Uint16Array = new Uint16Array(8);
  /** The highest offset the quick EA check allows: the limit; -1 (all fail) for expand-down. */
  segChk: Float64Array = new Float64Array(8);
  /** The same for writes: -1 where the segment is not writable (protected mode). */
  segChkW: Float64Array = new Float64Array(8);
  /**
   * Per segment register s, bit s: base 0 and reads checked against 4G - 1 (flat for reads);
   * bit 8 + s: the same for writes. Compiled blocks check their flat segments in one test.
   */
  flatMask = 0;
  gdtBase = 0;
  gdtLimit = 0xffff;
  idtBase = 0;
  idtLimit = 0x3ff;

  cr0 = 0;
  cr2 = 0;
  cr3 = 0;
  cr4 = 0;
  dr: Int32Array = new Int32Array(8);
  /** DR7 enables a breakpoint: every instruction runs through stepTrap (checked per block). */
  dbgOn = false;
  /** Bits 0-3: enabled data breakpoints (their pages never enter the TLB). */
  dbgData = 0;
  /** Data breakpoints hit by the running instruction (B0-B3). */
  dbgHit = 0;
  /** A task switch loaded a 32-bit TSS with its T bit set: #DB before its first instruction. */
  tssTrap = false;
  /** Size of the access being translated (for data breakpoint overlap). */
  accSize = 1;
  efer = 0;
  cpl = 0;
  /** 1 when CS is a 32-bit segment. */
  code32 = 0;
  /** 0xffff or 0xffffffff|0 by SS.B. */
  spMask = 0xffff;
  a20Mask = 0xffffffff | 0;

  /** Model-specific state. */
  tscOffset = 0;
  /** The last TSC value read (RDTSC never returns the same value twice). */
  tscLast = -1;
  /** IA32_TSC_ADJUST: the sum of every change made to the TSC by writes. */
  tscAdjust = 0;
  sysenterCs = 0;
  sysenterEsp = 0;
  sysenterEip = 0;
  apicBase = 0xfee00900;
  mtrr: Map<number, number> = new Map<number, number>();

  halted = false;
  /** An interrupt shadow (after MOV SS/POP SS/STI) suppresses interrupts before the next block. */
  shadow = false;
  /** The instruction after an interrupt shadow runs alone, so that interrupts are checked right after it. */
  private stepOne = false;
  nmiPending = false;
  nmiBlocked = false;
  /** Set by handlers that must end the running block (mode change, SMC, HLT). */
  blockExit = false;
  private stopRequested = false;
  private shutdownRequested = false;
  instructions = 0;

  /** Pending exception (set by fault()). */
  excVec = 0;
  excCode = -1;
  /** Depth of exception delivery: 1 while delivering, 2 while delivering a double fault. */
  private excDepth = 0;

  // ---- software TLB: index = linear page | user<<20; value = physical page + 1, 0 = miss.
  private tlbR = new Int32Array(2 * TLB_PAGES);
  private tlbW = new Int32Array(2 * TLB_PAGES);
  /** Execute permission (separate from read: NX pages are readable, not executable). */
  private tlbX = new Int32Array(2 * TLB_PAGES);
  private tlbLog = new Int32Array(TLB_LOG);
  /**
   * Per TLB index: its entries came from a global page (CR4.PGE), which a CR3 write keeps.
   * Those indices are logged apart (tlbGLog), so that a CR3 write walks only the others.
   */
  private tlbGlobal = new Uint8Array(2 * TLB_PAGES);
  private tlbGLog = new Int32Array(TLB_LOG);
  private tlbGLogN = 0;
  /** tlbWByPage for the write entries of global pages. */
  private tlbWByPageG = new Map<number, number[]>();
  /** Physical page -> the write-TLB indices filled for it (so a page turning into code drops them). */
  private tlbWByPage = new Map<number, number[]>();
  private tlbLogN = 0;
  /** 0 or 1<<20: which half of the TLB the current privilege uses. */
  tlbUser = 0;
  private pageKinds: Uint8Array;

  // ---- threaded code cache
  /** Per physical page: its decoded blocks by (offset << 1 | code32). */
  private pageBlocks: (Map<number, Block> | undefined)[] = [];
  /** Bumped whenever linear->physical or CS changes: block links made before are stale. */
  epoch = 0;
  private codePage: Uint8Array;
  /** Per 64-byte line of RAM: decoded code lies there. */
  private codeLines: Uint8Array;

  /** x87 and SSE state live in fpu.ts; attached lazily. */
  fpu: unknown = null;

  constructor(bus: CpuBus) {
    super();
    this.bus = bus;
    this.ram = bus.ram;
    this.ram32 = dwordView(this.ram);
    this.ramPages = this.ram.length >>> 12;
    const buf = new ArrayBuffer(4 * 10);
    this.r32 = new Int32Array(buf);
    this.r16 = new Uint16Array(buf);
    this.r8 = new Uint8Array(buf);
    this.codePage = new Uint8Array(this.ramPages);
    this.codeLines = new Uint8Array(this.ramPages * 64);
    this.pageKinds = new Uint8Array(this.ramPages);
    this.memoryMapChanged();
    this.reset();
  }

  // ------------------------------------------------------------------ control

  reset(): void {
    this.r32.fill(0);
    this.r32[2] = 0x600; // EDX = family 6 signature at reset
    this.eflags = 2;
    this.lop = 0;
    this.cr0 = CR0_ET | CR0_CD | CR0_NW;
    this.cr2 = this.cr3 = this.cr4 = 0;
    this.efer = 0;
    this.cpl = 0;
    this.tlbUser = 0;
    this.dr.fill(0);
    this.dr[6] = 0xffff0ff0 | 0;
    this.dr[7] = 0x400;
    this.dbgOn = false;
    this.dbgData = 0;
    this.tssTrap = false;
    this.dbgHeld = 0;
    for (let s = 0; s < 6; s++) {
      this.segSel[s] = 0;
      this.segBase[s] = 0;
      this.setSegCache(s, 0, 0, 0xffff, 0x93);
    }
    this.segSel[CS] = 0xf000;
    this.segBase[CS] = 0xffff0000 | 0;
    this.segAttr[CS] = 0x9b;
    this.segCheck(CS);
    this.segLimit[LDTR] = this.segLimit[TR] = 0xffff;
    this.segAttr[LDTR] = 0x82;
    this.segAttr[TR] = 0x8b;
    this.gdtBase = this.idtBase = 0;
    this.gdtLimit = this.idtLimit = 0xffff;
    this.eip = 0xfff0;
    this.code32 = 0;
    this.spMask = 0xffff;
    this.halted = false;
    this.shadow = this.stepOne = false;
    this.nmiPending = this.nmiBlocked = false;
    this.excDepth = 0;
    this.shutdownRequested = false;
    this.fpu = null;
    this.flushTlb();
    this.flushCode();
  }

  setA20(enabled: boolean): void {
    const m = enabled ? 0xffffffff | 0 : ~(1 << 20);
    if (m !== this.a20Mask) {
      this.a20Mask = m;
      this.flushTlb();
    }
  }

  /**
   * Bytes of plain RAM from 1 MiB up (no ROM, no device page): with paging off, compiled
   * blocks access them without the TLB (jit.ts).
   */
  directSpan = 0;

  /**
   * Linear addresses are physical (paging off, A20 on) and no access needs the TLB's slow path
   * for anything else (data breakpoints, alignment checks): what compiled blocks check before
   * they reach RAM above 1 MiB directly.
   */
  physicalDirect(): boolean {
    return (this.cr0 & CR0_PG) === 0 && this.a20Mask === -1 && this.dbgData === 0 &&
      !this.acActive;
  }

  memoryMapChanged(): void {
    this.blockExit = true; // a compiled block holds ram/ram32 in locals
    const other = this.ram !== this.bus.ram;
    this.ram = this.bus.ram;
    this.ram32 = dwordView(this.ram);
    const pages = this.ram.length >>> 12;
    if (other) this.flushCode(); // other RAM: no decoded block holds
    if (pages !== this.ramPages) {
      this.ramPages = pages;
      this.codePage = new Uint8Array(pages);
      this.codeLines = new Uint8Array(pages * 64);
      this.pageKinds = new Uint8Array(pages);
    }
    // only the pages whose kind changed lose their code: a PCI BAR that moves (Linux sizes
    // every BAR at boot) changes no page of RAM, and dropping all code there cost the boot
    // its warm blocks. Contents that change under a page (PAM swapping shadow RAM) come
    // through ramWritten.
    for (let p = 0; p < pages; p++) {
      const kind = this.bus.pageKind(p);
      if (kind !== this.pageKinds[p]) {
        this.pageKinds[p] = kind;
        if (this.codePage[p] !== 0) this.invalidateCodePage(p);
      }
    }
    let p = 256;
    while (p < pages && this.pageKinds[p] === PageKind.Ram) p++;
    this.directSpan = Math.max(0, p - 256) * 4096;
    this.flushTlb();
  }

  ramWritten(addr: number, length: number): void {
    if (length <= 0) return;
    const first = Math.floor(addr / 4096);
    const last = Math.min(Math.floor((addr + length - 1) / 4096), this.ramPages - 1);
    for (let p = first; p <= last; p++) if (this.codePage[p] !== 0) this.invalidateCodePage(p);
  }

  raiseNmi(): void {
    this.nmiPending = true;
  }

  stop(): void {
    this.stopRequested = true;
    this.blockExit = true;
  }

  /** Runs up to about `budget` instructions. */
  run(budget: number): RunExit {
    this.stopRequested = false;
    let done = 0;

    while (done < budget) {
      if (this.shutdownRequested || this.stopRequested) {
        return this.shutdownRequested ? RunExit.Shutdown : RunExit.Stopped;
      }
      if (this.tssTrap) {
        // a task switch into a TSS with its T bit: #DB (BT) before the new task's first instruction
        this.tssTrap = false;
        this.guardedInterrupt(DB, -1, 0);
        continue;
      }
      if (this.shadow) {
        // Only the next instruction is shielded: `sti; nop; cli` must take a pending IRQ
        // after the nop, so that one instruction runs alone before the check below.
        this.shadow = false;
        this.stepOne = true;
      } else if (this.nmiPending && !this.nmiBlocked) {
        this.nmiPending = false;
        this.nmiBlocked = true;
        this.halted = false;
        this.guardedInterrupt(2, -1, 0);
        continue;
      } else if ((this.eflags & IF) !== 0 && this.bus.hasInterrupt()) {
        this.halted = false;
        this.guardedInterrupt(this.bus.acknowledgeInterrupt() & 0xff, -1, 0);
        continue;
      }
      if (this.halted) {
        return RunExit.Halted;
      }
      done += this.runBlock(budget - done);
    }
    return this.shutdownRequested ? RunExit.Shutdown : RunExit.Budget;
  }

  /**
   * Runs blocks back to back, following each block's cached successor, until about `limit`
   * instructions ran or a handler asked for a return to the event loop (blockExit: interrupts
   * may be pending, the mode changed, code was overwritten). Returns instructions retired.
   */
  private runBlock(limit: number): number {
    // the budget counts retired instructions (a fused pair is two) the same way whether a block
    // ran interpreted or compiled, so that slices end at the same instruction either way
    const start = this.instructions;
    let k = 0;
    let inJit = false;
    // the running block and its EIP, for a fault's EIP (null: none, EIP is current)
    let cur: Block | null = null;
    let curBase = 0;
    try {
      if ((this.eflags & (TF | RF)) !== 0 || this.dbgOn || this.stepOne) {
        // before any block lookup: a code breakpoint comes ahead of the fetch's page fault
        this.stepOne = false;
        this.instructions++;
        return this.stepTrap();
      }
      let block = this.lookupBlock();
      for (;;) {
        cur = block;
        this.blockExit = false;
        // TF, RF and breakpoints are checked above, before the first block only: whatever
        // turns one on (POPF/IRET through setFlagsMasked, a task switch, a DR7 write) ends
        // the block with blockExit, so the next block starts a new runBlock
        const ins = block.ins;
        // EIP is not kept current inside a block: only the last instruction (every control
        // transfer ends a block) sees it. A fault recomputes it from the instruction's offset.
        const base = this.eip;
        curBase = base;
        let jit = block.jit;
        if (jit === null && ++block.hits >= JIT_THRESHOLD && block.cacheable && block.valid) {
          // hot: compiled before this run (so that DEMU_JIT_AFTER=1 runs compiled code only)
          jit = block.jit = compileBlock(block, this.code32, this.ram32.length !== 0, {
            flatMask: this.flatMask,
            spMask: this.spMask,
            direct: this.physicalDirect(),
          });
        }
        if (jit !== null) {
          inJit = true;
          k = jit(this, ins, base, limit - (this.instructions - start));
          if (k < 0) {
            // compiled for flat segments that are no longer flat: compiled again without
            block.jit = compileBlock(block, this.code32, this.ram32.length !== 0);
            k = block.jit(this, ins, base, limit - (this.instructions - start));
          }
          inJit = false;
        } else {
          const last = ins.length - 1;
          const mask = this.code32 ? -1 : 0xffff;
          let exited = false;
          for (k = 0; k < last; k++) {
            const i = ins[k];
            if (i.exit) {
              // a conditional jump inside the block: when taken, the block ends here
              const fall = (base + i.end) & mask;
              this.eip = fall;
              i.fn(this, i);
              if ((this.eip | 0) !== (fall | 0)) {
                k++;
                exited = true;
                break;
              }
              continue;
            }
            i.fn(this, i);
            if (this.blockExit) {
              this.eip = (base + i.end) & mask;
              k++;
              exited = true;
              break;
            }
          }
          if (!exited) {
            const i = ins[last];
            this.eip = (base + i.end) & mask;
            i.fn(this, i);
            k = last + 1;
          }
        }
        this.instructions += k;
        k = 0;
        // 32-bit code may leave EIP as a negative int32 (16-bit code masks it)
        let eip = this.eip;
        if (eip < 0) this.eip = eip = eip >>> 0;
        if (this.blockExit || this.instructions - start >= limit) break;
        // follow the cached successor when it was linked under the same translation epoch
        let next: Block | null = null;
        if (block.linkEpoch === this.epoch) {
          if (block.nextEip0 === eip) next = block.next0;
          else if (block.nextEip1 === eip) next = block.next1;
        } else {
          block.linkEpoch = this.epoch;
          block.nextEip0 = block.nextEip1 = -1;
          block.next0 = block.next1 = null;
        }
        if (next === null || !next.valid) {
          cur = null; // a fault in the lookup belongs to the new EIP
          next = this.lookupBlock();
          if (next.cacheable) {
            if (block.nextEip0 === -1 || block.nextEip0 === eip) {
              block.nextEip0 = eip;
              block.next0 = next;
            } else {
              block.nextEip1 = eip;
              block.next1 = next;
            }
          }
        }
        block = next;
      }
      return this.instructions - start;
    } catch (e) {
      if (e !== FAULT) throw e;
      if (inJit) {
        k = this.jk;
        this.instructions += this.jx;
      }
      this.eip = this.faultEip(cur, curBase, k);
      this.instructions += k + 1;
      this.guardedInterrupt(this.excVec, this.excCode, 1);
      return this.instructions - start;
    }
  }

  /**
   * The record of the running compiled block that may raise a fault, and the instructions to
   * add to k + 1 for the count it retired (set by jit.ts code before each call that can fault).
   */
  jk = 0;
  jx = 0;

  /** Linear address of offset `off` in segment `seg` for a read of n+1 bytes (limit checked). */
  linR(seg: number, off: number, n: number): number {
    if (off + n > this.segChk[seg]) this.limitFault(seg, off, n, false);
    return (this.segBase[seg] + off) | 0;
  }

  /** The same for a write (the segment must be writable). */
  linW(seg: number, off: number, n: number): number {
    if (off + n > this.segChkW[seg]) this.limitFault(seg, off, n, true);
    return (this.segBase[seg] + off) | 0;
  }

  /** EIP of instruction k of block b run from `base` (or the current EIP when b is null). */
  private faultEip(b: Block | null, base: number, k: number): number {
    if (b === null || k >= b.ins.length) return this.eip;
    const i = b.ins[k];
    const e = base + i.end - i.len;
    return this.code32 ? e >>> 0 : e & 0xffff;
  }

  /** TF set: run one instruction, then #DB (after it, as a trap). */
  private stepTrap(): number {
    // decoded afresh: a cached block may hold fused pairs, single-stepping needs one instruction
    // (runBlock has no running block here: a fault restores EIP from `start` below)
    const start = this.eip;
    const rfBefore = (this.eflags & RF) !== 0;
    // an instruction breakpoint is a fault before the instruction (not with RF set), ahead of
    // the faults of fetching and decoding it
    if (this.dbgOn && !rfBefore) {
      const hit = this.codeBreakpoints((this.segBase[CS] + start) | 0);
      if (hit !== 0) {
        this.dr[6] = (this.dr[6] & ~0xf) | hit;
        this.fault(DB, CODE_BP);
      }
    }
    if (rfBefore) this.eflags &= ~RF; // RF lasts one instruction: cleared once it starts
    const i = decodeOne(this, (this.segBase[CS] + start) | 0);
    this.eip = (start + i.len) & (this.code32 ? -1 : 0xffff);
    if (this.code32) this.eip >>>= 0;
    const tfBefore = (this.eflags & TF) !== 0;
    this.dbgHit = 0;
    // a REP string traps after each iteration (single step, breakpoints): one per visit
    this.repStep = i.rep !== 0 && (tfBefore || this.dbgOn);
    try {
      i.fn(this, i);
    } catch (e) {
      this.repStep = false;
      this.eip = start;
      if (this.dbgHeld !== 0) {
        // traps held over a MOV SS come right after the fault's delivery (its handler's start)
        this.dr[6] = (this.dr[6] & ~0xf) | (this.dbgHeld & 0xf) | (this.dbgHeld & 0x4000);
        this.dbgHeld = 0;
        this.tssTrap = true;
      }
      throw e;
    }
    this.repStep = false;
    // single step (BS) and data breakpoints (B0-B3), with any held over a MOV SS/POP SS
    const t = this.dbgHit | (tfBefore ? 0x4000 : 0) | this.dbgHeld;
    this.dbgHeld = 0;
    if (t !== 0 && !this.halted) {
      // MOV SS/POP SS (not STI) hold their debug traps until after the next instruction
      if (this.shadow && i.opcode !== 0xfb) this.dbgHeld = t;
      else {
        // one trap after the instruction; a task switch's T-bit trap (BT) joins it
        this.tssTrap = false;
        this.dr[6] = ((t & 0xf) !== 0 ? (this.dr[6] & ~0xf) | (t & 0xf) : this.dr[6]) |
          (t & 0x4000);
        this.guardedInterrupt(DB, -1, 0);
      }
    }
    return 1;
  }
  /** Debug traps (DR6 B0-B3, BS) held over a MOV SS/POP SS for one instruction. */
  private dbgHeld = 0;
  /** A REP string instruction runs one iteration per visit (it is being single-stepped). */
  repStep = false;

  /** Enabled execution breakpoints (R/W 00) at linear address `lin`: B0-B3 bits. */
  private codeBreakpoints(lin: number): number {
    const d7 = this.dr[7];
    let hit = 0;
    for (let k = 0; k < 4; k++) {
      if (((d7 >> (k * 2)) & 3) !== 0 && ((d7 >>> (16 + k * 4)) & 3) === 0 && this.dr[k] === lin) {
        hit |= 1 << k;
      }
    }
    return hit;
  }

  /**
   * A data access at [lin, lin + accSize) (access 0 read, 1 write) against the enabled data
   * breakpoints: records hits in dbgHit; true when lin's page holds a watched address (so that
   * the TLB is not filled for it and every access there comes back here).
   */
  private dataBreakpoints(lin: number, access: number): boolean {
    const d7 = this.dr[7];
    let watched = false;
    for (let k = 0; k < 4; k++) {
      if ((this.dbgData & (1 << k)) === 0) continue;
      const rw = (d7 >>> (16 + k * 4)) & 3;
      const lenCode = (d7 >>> (18 + k * 4)) & 3;
      const len = lenCode === 0 ? 1 : lenCode === 1 ? 2 : lenCode === 3 ? 4 : 8;
      const a = (this.dr[k] & ~(len - 1)) >>> 0;
      if (a >>> 12 === lin >>> 12 || ((a + len - 1) >>> 12) === lin >>> 12) watched = true;
      if (rw === 1 && access !== 1) continue;
      const l = lin >>> 0;
      if (l < a + len && a < l + this.accSize) this.dbgHit |= 1 << k;
    }
    return watched;
  }

  /** After a write to DR0-DR3 or DR7: which breakpoints are live (the TLB forgets their pages). */
  debugRegsChanged(): void {
    const d7 = this.dr[7];
    let data = 0;
    for (let k = 0; k < 4; k++) {
      const rw = (d7 >>> (16 + k * 4)) & 3;
      if (((d7 >> (k * 2)) & 3) !== 0 && (rw === 1 || rw === 3)) data |= 1 << k;
    }
    this.dbgOn = (d7 & 0xff) !== 0;
    this.dbgData = data;
    this.flushTlb();
    this.blockExit = true;
  }

  /**
   * Delivers an interrupt or exception, escalating to #DF and shutdown when delivery faults.
   * kind: 0 external/NMI, 1 exception (fault or trap), 2 software INT n, 3 INT3/INTO.
   */
  guardedInterrupt(vec: number, code: number, kind: number): void {
    if (kind === 1) {
      if (this.excDepth === 2 || (this.excDepth === 1 && vec === DBLF)) {
        this.doShutdown("triple fault");
        return;
      }
      if (this.excDepth === 1 && isContributory(this.excPrev, vec)) {
        vec = DBLF;
        code = 0;
        this.excDepth = 2;
      } else this.excDepth++;
      this.excPrev = vec;
    } else this.excDepth = 1, this.excPrev = -1;
    try {
      deliverInterrupt(this, vec, code, kind);
      this.excDepth = 0;
    } catch (e) {
      if (e !== FAULT) throw e;
      this.guardedInterrupt(this.excVec, this.excCode, 1);
    }
    this.excDepth = 0;
  }
  private excPrev = -1;

  private doShutdown(reason: string): void {
    this.shutdownRequested = true;
    this.halted = true;
    this.blockExit = true;
    this.excDepth = 0;
    this.bus.shutdown(reason);
  }

  /** Raises exception `vec` (with error code `code`, or -1 for none): never returns. */
  fault(vec: number, code = -1): never {
    this.excVec = vec;
    this.excCode = code;
    throw FAULT;
  }

  /** Loads a segment register's hidden part. */
  setSegCache(seg: number, sel: number, base: number, limit: number, attr: number): void {
    this.segSel[seg] = sel;
    this.segBase[seg] = base;
    this.segLimit[seg] = limit;
    this.segAttr[seg] = attr;
    this.segCheck(seg);
  }

  /**
   * Derives the limit checks of segment `seg` from its cache: reads and writes up to the limit
   * (expand-down: every access goes to limitFault, which checks it), and in protected mode the
   * type rules: a null selector faults on
   * any access, code is never writable and execute-only code is not readable, read-only data is
   * not writable. Real and virtual-8086 mode check limits only.
   */
  segCheck(seg: number): void {
    const attr = this.segAttr[seg];
    const limit = this.segLimit[seg];
    const chk = (attr & 0x1c) === 0x14 ? -1 : limit; // expand-down: checked in limitFault
    if ((this.cr0 & 1) === 0 || (this.eflags & 0x20000) !== 0) {
      this.segChk[seg] = this.segChkW[seg] = chk;
    } else if (attr === 0) {
      this.segChk[seg] = this.segChkW[seg] = -1;
    } else {
      const code = (attr & 0x18) === 0x18;
      this.segChk[seg] = code && (attr & 2) === 0 ? -1 : chk;
      this.segChkW[seg] = code || (attr & 2) === 0 ? -1 : chk;
    }
    const base0 = this.segBase[seg] === 0;
    const r = base0 && this.segChk[seg] === 0xffffffff ? 1 << seg : 0;
    const w = base0 && this.segChkW[seg] === 0xffffffff ? 0x100 << seg : 0;
    const mask = (this.flatMask & ~(0x101 << seg)) | r | w;
    // compiled code after a handler call assumes the flatness it was compiled for until it
    // sees blockExit (jit.ts)
    if (mask !== this.flatMask) this.blockExit = true;
    this.flatMask = mask;
  }

  /**
   * A memory operand at offset off (+n more bytes) in segment seg failed the quick limit check:
   * #SS(0) or #GP(0). Expand-down data segments always come here (their quick check fails every
   * access): for them the valid offsets are limit+1 up to 0xFFFF (B clear) or 0xFFFFFFFF, and an
   * access inside returns normally.
   */
  limitFault(seg: number, off: number, n: number, write: boolean): void {
    const attr = this.segAttr[seg];
    if ((attr & 0x1c) === 0x14) {
      const pm = (this.cr0 & 1) !== 0 && (this.eflags & 0x20000) === 0;
      if (!pm || ((attr & 0x80) !== 0 && (!write || (attr & 2) !== 0))) {
        const upper = (attr & 0x4000) !== 0 ? 0xffffffff : 0xffff;
        const o = off >>> 0;
        if (o > this.segLimit[seg] && o + n <= upper) return;
      }
    }
    this.fault(seg === 2 ? 12 : 13, 0);
  }

  // ------------------------------------------------------------------ blocks

  private lookupBlock(): Block {
    const lin = (this.segBase[CS] + this.eip) | 0;
    const e = this.tlbX[(lin >>> 12) | this.tlbUser];
    const phys = e !== 0 ? (e - 1) * 4096 + (lin & 0xfff) : this.translate(lin, 2);
    const p = Math.floor(phys / 4096);
    const key = ((phys & 0xfff) << 1) | this.code32;
    const map = this.pageBlocks[p];
    if (map !== undefined) {
      const b = map.get(key);
      // a block crossing into the next page: only while that page maps where it did (and a
      // write to that page, which drops it there, has not dropped it)
      if (b !== undefined && (b.phys2 < 0 || (b.valid && this.nextPagePhys(lin) === b.phys2))) {
        return b;
      }
    }
    const b = decodeBlock(this, lin, phys);
    b.key = key;
    if (b.phys2 >= 0) b.phys2 = this.nextPagePhys(lin);
    if (b.cacheable) this.registerBlock(b);
    return b;
  }

  /** The physical address of the code page after the one linear `lin` lies in. */
  private nextPagePhys(lin: number): number {
    const next = ((lin | 0xfff) + 1) | 0;
    const e = this.tlbX[(next >>> 12) | this.tlbUser];
    return e !== 0 ? (e - 1) * 4096 : this.translate(next, 2);
  }

  private registerBlock(b: Block): void {
    const p = Math.floor(b.phys / 4096);
    const p2 = b.phys2 < 0 ? -1 : Math.floor(b.phys2 / 4096);
    if (p >= this.ramPages || p2 >= this.ramPages) {
      b.cacheable = false; // code outside RAM (device memory) is decoded every time
      return;
    }
    let map = this.pageBlocks[p];
    if (map === undefined) map = this.pageBlocks[p] = new Map();
    map.set(b.key, b);
    const off = b.phys & 0xfff;
    const lines = this.codeLines;
    for (let l = off >> 6, e = (off + this.blockBytes(b) - 1) >> 6; l <= e && l < 64; l++) {
      lines[p * 64 + l] = 1;
    }
    this.markCodePage(p);
    if (p2 >= 0) {
      // the tail (under 16 bytes) lies in the second page's first line: a write there drops
      // the block through that page's map, under a key no lookup uses
      let map2 = this.pageBlocks[p2];
      if (map2 === undefined) map2 = this.pageBlocks[p2] = new Map();
      map2.set(-1 - (p * 8192 + b.key), b);
      lines[p2 * 64] = 1;
      this.markCodePage(p2);
    }
  }

  private markCodePage(p: number): void {
    if (this.codePage[p] === 0) {
      this.codePage[p] = 1;
      this.dropWriteTlbFor(p);
    }
  }

  /**
   * A store to [a, a+size) of a page holding code: drops the page's blocks only when the bytes
   * lie in a 64-byte line that holds decoded code (data next to code costs a slow store, not a
   * re-decode).
   */
  private codeWritten(a: number, size: number): void {
    const p = Math.floor(a / 4096);
    const l0 = (a & 0xfff) >> 6, l1 = ((a & 0xfff) + size - 1) >> 6;
    const lines = this.codeLines;
    if (lines[p * 64 + l0] !== 0 || (l1 < 64 && lines[p * 64 + l1] !== 0)) {
      this.invalidateCodePage(p);
    }
  }

  private blockBytes(b: Block): number {
    let n = 0;
    for (const i of b.ins) n += i.len;
    return n;
  }

  /** Drops the decoded blocks of physical page p (a write hit it). */
  invalidateCodePage(p: number): void {
    const map = this.pageBlocks[p];
    this.codePage[p] = 0;
    this.codeLines.fill(0, p * 64, p * 64 + 64);
    if (map === undefined) return;
    this.pageBlocks[p] = undefined;
    for (const b of map.values()) b.valid = false;
    // the running block may be among them (self-modifying code): the loop stops after the
    // instruction that wrote (any block would do; keeping track of which one costs every block)
    this.blockExit = true;
  }

  /** Invalidates block links (CS:EIP to physical mappings may have changed). */
  flushCodeLinks(): void {
    this.epoch++;
    this.blockExit = true;
  }

  /** Drops every decoded block. */
  flushCode(): void {
    for (const map of this.pageBlocks) {
      if (map !== undefined) { for (const b of map.values()) b.valid = false; }
    }
    this.pageBlocks = [];
    this.codePage.fill(0);
    this.codeLines.fill(0);
    this.blockExit = true;
    this.epoch++;
  }

  // ------------------------------------------------------------------ TLB and paging

  /**
   * Drops every cached translation (paging mode change, A20, memory map) or, for a CR3 write
   * (`keepGlobal`), all but those of global pages (CR4.PGE): the kernel's mappings then survive
   * its switches between address spaces, as on the real CPU (Linux switches to a temporary
   * address space and back for every patch of its text at boot, ~37,000 times a second).
   */
  flushTlb(keepGlobal = false): void {
    if (
      keepGlobal && (this.cr4 & CR4_PGE) !== 0 && this.tlbLogN < TLB_LOG &&
      this.tlbGLogN < TLB_LOG
    ) {
      this.flushNonGlobal();
      return;
    }
    this.epoch++;
    this.tlbWByPage.clear();
    this.tlbWByPageG.clear();
    this.largeRegion.fill(0);
    if (this.tlbLogN >= TLB_LOG || this.tlbGLogN >= TLB_LOG) {
      this.tlbR.fill(0);
      this.tlbW.fill(0);
      this.tlbX.fill(0);
      this.tlbGlobal.fill(0);
    } else {
      for (
        const [log, n] of [[this.tlbLog, this.tlbLogN], [this.tlbGLog, this.tlbGLogN]] as const
      ) {
        for (let k = 0; k < n; k++) {
          const x = log[k];
          this.tlbR[x] = 0;
          this.tlbW[x] = 0;
          this.tlbX[x] = 0;
          this.tlbGlobal[x] = 0;
        }
      }
    }
    this.tlbLogN = 0;
    this.tlbGLogN = 0;
  }

  /** flushTlb's CR3 case: the entries not from global pages go. */
  private flushNonGlobal(): void {
    const log = this.tlbLog, g = this.tlbGlobal;
    let code = false; // code was fetched through a page that goes: block links go too
    for (let k = 0; k < this.tlbLogN; k++) {
      const x = log[k];
      if (g[x] !== 0) continue; // filled again from a global page since
      if (this.tlbX[x] !== 0) code = true;
      this.tlbR[x] = this.tlbW[x] = this.tlbX[x] = 0;
    }
    this.tlbLogN = 0;
    this.tlbWByPage.clear();
    if (code || this.acActive) this.epoch++; // (alignment checks: user code has no entries)
  }

  /** INVLPG: drops one linear page in both privilege halves. */
  invlpg(lin: number): void {
    const region = lin >>> 22;
    const x = lin >>> 12;
    // block links follow code fetched through tlbX: a page no code was fetched through since
    // they were made (the kernel's text_poke INVLPGs its writable alias of the text, tens of
    // thousands of times at boot) leaves them standing. (With alignment checks on, user code
    // is fetched without TLB entries.)
    if (
      this.largeRegion[region] !== 0 || this.tlbX[x] !== 0 || this.tlbX[x | TLB_PAGES] !== 0 ||
      this.acActive
    ) {
      this.epoch++;
    }
    if (this.largeRegion[region] !== 0) {
      // the address may lie in a 4 MiB/2 MiB page: drop every 4 KiB entry cached from it
      this.largeRegion[region] = 0;
      const first = region << 10;
      for (let x = first; x < first + 1024; x++) {
        this.tlbR[x] = this.tlbW[x] = this.tlbX[x] = 0;
        this.tlbR[x | TLB_PAGES] = this.tlbW[x | TLB_PAGES] = this.tlbX[x | TLB_PAGES] = 0;
      }
      return;
    }
    this.tlbR[x] = this.tlbW[x] = this.tlbX[x] = 0;
    this.tlbR[x | TLB_PAGES] = this.tlbW[x | TLB_PAGES] = this.tlbX[x | TLB_PAGES] = 0;
  }

  private dropWriteTlbFor(physPage: number): void {
    // the write-TLB entries that map this page (recorded when they were filled)
    const w = this.tlbW;
    for (const map of [this.tlbWByPage, this.tlbWByPageG]) {
      const list = map.get(physPage);
      if (list === undefined) continue;
      map.delete(physPage);
      for (let k = 0; k < list.length; k++) if (w[list[k]] === physPage + 1) w[list[k]] = 0;
    }
  }

  /** Sets the CPL (and with it which TLB half applies). */
  setCpl(cpl: number): void {
    this.cpl = cpl;
    this.tlbUser = cpl === 3 ? TLB_PAGES : 0;
    this.blockExit = true; // a compiled block holds tlbUser in a local
    this.updateAc();
  }

  /**
   * Alignment checking (CR0.AM, EFLAGS.AC, CPL 3): while on, user pages stay out of the TLB so
   * that every access takes the slow path, which checks alignment (#AC(0)).
   */
  acActive = false;
  updateAc(): void {
    const on = this.cpl === 3 && (this.cr0 & CR0_AM) !== 0 && (this.eflags & AC) !== 0;
    if (on === this.acActive) return;
    this.acActive = on;
    if (on) {
      this.flushTlb();
      this.blockExit = true;
    }
  }

  /**
   * Linear to physical. access: 0 read, 1 write, 2 execute. Faults with #PF. Fills the TLB.
   * Uses the current privilege (CPL 3 = user) unless `sys` (descriptor tables, TSS).
   */
  translate(lin: number, access: number, sys = false): number {
    const user = !sys && this.cpl === 3;
    let phys: number;
    let writable = true;
    this.walkLarge = false;
    this.walkGlobal = false;
    if ((this.cr0 & CR0_PG) === 0) {
      phys = (lin & this.a20Mask) >>> 0;
    } else if ((this.cr4 & CR4_PAE) !== 0) {
      const r = this.walkPae(lin, access, user);
      phys = r;
      writable = this.walkWritable;
    } else {
      phys = this.walk32(lin, access, user);
      writable = this.walkWritable;
    }
    if (this.dbgData !== 0 && access !== 2 && !sys && this.dataBreakpoints(lin, access)) {
      return phys; // a watched page: no TLB entry
    }
    if (this.acActive && user) return phys; // alignment checks: user accesses stay slow
    // fill the TLB for RAM/ROM pages
    const pp = Math.floor(phys / 4096);
    if (pp < this.ramPages && !sys) {
      const kind = this.pageKinds[pp];
      if (kind !== PageKind.Mmio) {
        const x = (lin >>> 12) | (user ? TLB_PAGES : 0);
        if (this.walkLarge) this.largeRegion[lin >>> 22] = 1;
        const global = this.walkGlobal;
        if (access === 2) this.tlbX[x] = pp + 1;
        else this.tlbR[x] = pp + 1;
        if (kind === PageKind.Ram && writable && this.codePage[pp] === 0 && (access === 1)) {
          this.tlbW[x] = pp + 1;
          const byPage = global ? this.tlbWByPageG : this.tlbWByPage;
          const list = byPage.get(pp);
          if (list === undefined) byPage.set(pp, [x]);
          else list.push(x);
        }
        if (global) {
          if (this.tlbGlobal[x] === 0) {
            this.tlbGlobal[x] = 1;
            if (this.tlbGLogN < TLB_LOG) this.tlbGLog[this.tlbGLogN++] = x;
            else this.tlbGLogN = TLB_LOG;
          }
        } else {
          this.tlbGlobal[x] = 0;
          if (this.tlbLogN < TLB_LOG) this.tlbLog[this.tlbLogN++] = x;
          else this.tlbLogN = TLB_LOG;
        }
      }
    }
    return phys;
  }

  /** Whether the last walk found the page writable for the access's privilege (and dirty). */
  private walkWritable = true;
  /** The last walk found a global page (G set, CR4.PGE on). */
  private walkGlobal = false;
  /** The last walk went through a large (4 MiB or 2 MiB) page. */
  private walkLarge = false;
  /** Per 4 MiB linear region: TLB entries from a large page are cached there (for INVLPG). */
  private largeRegion = new Uint8Array(1024);

  private pageFault(lin: number, present: boolean, access: number, user: boolean, rsvd = false) {
    this.cr2 = lin;
    const code = (present ? 1 : 0) | (access === 1 ? 2 : 0) | (user ? 4 : 0) | (rsvd ? 8 : 0) |
      (access === 2 && (this.efer & 0x800) !== 0 && (this.cr4 & CR4_PAE) !== 0 ? 16 : 0);
    this.fault(PF, code);
  }

  private walk32(lin: number, access: number, user: boolean): number {
    const pdeAddr = ((this.cr3 & ~0xfff) + ((lin >>> 22) << 2)) >>> 0;
    const pde = this.physRead32(pdeAddr);
    if ((pde & 1) === 0) this.pageFault(lin, false, access, user);
    const wp = (this.cr0 & CR0_WP) !== 0;
    if ((pde & 0x80) !== 0 && (this.cr4 & CR4_PSE) !== 0) {
      if (user && (pde & 4) === 0) this.pageFault(lin, true, access, user);
      const w = (pde & 2) !== 0;
      if (access === 1 && !w && (user || wp)) this.pageFault(lin, true, access, user);
      let npde = pde | 0x20;
      if (access === 1) npde |= 0x40;
      if (npde !== pde) this.physWrite32(pdeAddr, npde);
      this.walkWritable = (w || (!user && !wp)) && (npde & 0x40) !== 0;
      this.walkGlobal = (npde & 0x100) !== 0 && (this.cr4 & CR4_PGE) !== 0;
      this.walkLarge = true;
      return (((pde & 0xffc00000) | (lin & 0x3fffff)) & this.a20Mask) >>> 0;
    }
    const pteAddr = ((pde & ~0xfff) + (((lin >>> 12) & 0x3ff) << 2)) >>> 0;
    const pte = this.physRead32(pteAddr);
    if ((pte & 1) === 0) this.pageFault(lin, false, access, user);
    if (user && (pde & pte & 4) === 0) this.pageFault(lin, true, access, user);
    const w = (pde & pte & 2) !== 0;
    if (access === 1 && !w && (user || wp)) this.pageFault(lin, true, access, user);
    if ((pde & 0x20) === 0) this.physWrite32(pdeAddr, pde | 0x20);
    let npte = pte | 0x20;
    if (access === 1) npte |= 0x40;
    if (npte !== pte) this.physWrite32(pteAddr, npte);
    this.walkWritable = (w || (!user && !wp)) && (npte & 0x40) !== 0;
    this.walkGlobal = (npte & 0x100) !== 0 && (this.cr4 & CR4_PGE) !== 0;
    return (((pte & ~0xfff) | (lin & 0xfff)) & this.a20Mask) >>> 0;
  }

  private walkPae(lin: number, access: number, user: boolean): number {
    const nxe = (this.efer & 0x800) !== 0;
    const pdptAddr = ((this.cr3 & ~0x1f) + ((lin >>> 30) << 3)) >>> 0;
    const pdpteLo = this.physRead32(pdptAddr);
    if ((pdpteLo & 1) === 0) this.pageFault(lin, false, access, user);
    const pdpteHi = this.physRead32(pdptAddr + 4) & 0xf;
    const pdBase = pdpteHi * 4294967296 + ((pdpteLo & ~0xfff) >>> 0);
    const pdeAddr = pdBase + (((lin >>> 21) & 0x1ff) << 3);
    const pde = this.physRead32(pdeAddr);
    const pdeHi = this.physRead32(pdeAddr + 4);
    if ((pde & 1) === 0) this.pageFault(lin, false, access, user);
    const wp = (this.cr0 & CR0_WP) !== 0;
    if ((pde & 0x80) !== 0) {
      if (user && (pde & 4) === 0) this.pageFault(lin, true, access, user);
      if (access === 2 && nxe && pdeHi < 0) this.pageFault(lin, true, access, user);
      const w = (pde & 2) !== 0;
      if (access === 1 && !w && (user || wp)) this.pageFault(lin, true, access, user);
      let npde = pde | 0x20;
      if (access === 1) npde |= 0x40;
      if (npde !== pde) this.physWrite32(pdeAddr, npde);
      this.walkWritable = (w || (!user && !wp)) && (npde & 0x40) !== 0;
      this.walkGlobal = (npde & 0x100) !== 0 && (this.cr4 & CR4_PGE) !== 0;
      this.walkLarge = true;
      return (pdeHi & 0xf) * 4294967296 +
        ((((pde & 0xffe00000) | (lin & 0x1fffff)) & this.a20Mask) >>> 0);
    }
    const pteAddr = (pdeHi & 0xf) * 4294967296 + ((pde & ~0xfff) >>> 0) +
      (((lin >>> 12) & 0x1ff) << 3);
    const pte = this.physRead32(pteAddr);
    const pteHi = this.physRead32(pteAddr + 4);
    if ((pte & 1) === 0) this.pageFault(lin, false, access, user);
    if (user && (pde & pte & 4) === 0) this.pageFault(lin, true, access, user);
    if (access === 2 && nxe && (pdeHi < 0 || pteHi < 0)) this.pageFault(lin, true, access, user);
    const w = (pde & pte & 2) !== 0;
    if (access === 1 && !w && (user || wp)) this.pageFault(lin, true, access, user);
    if ((pde & 0x20) === 0) this.physWrite32(pdeAddr, pde | 0x20);
    let npte = pte | 0x20;
    if (access === 1) npte |= 0x40;
    if (npte !== pte) this.physWrite32(pteAddr, npte);
    this.walkWritable = (w || (!user && !wp)) && (npte & 0x40) !== 0;
    this.walkGlobal = (npte & 0x100) !== 0 && (this.cr4 & CR4_PGE) !== 0;
    return (pteHi & 0xf) * 4294967296 + ((((pte & ~0xfff) | (lin & 0xfff)) & this.a20Mask) >>> 0);
  }

  // ------------------------------------------------------------------ physical access

  physRead8(a: number): number {
    const p = Math.floor(a / 4096);
    if (p < this.ramPages && this.pageKinds[p] !== PageKind.Mmio) return this.ram[a];
    this.blockExit = true; // a device was touched: recheck interrupts soon
    return this.bus.mmioRead(a, 1) & 0xff;
  }

  physRead32(a: number): number {
    const p = Math.floor(a / 4096);
    if (p < this.ramPages && this.pageKinds[p] !== PageKind.Mmio && (a & 0xfff) <= 0xffc) {
      const r = this.ram;
      return r[a] | (r[a + 1] << 8) | (r[a + 2] << 16) | (r[a + 3] << 24);
    }
    this.blockExit = true;
    return this.bus.mmioRead(a, 4) | 0;
  }

  physWrite8(a: number, v: number): void {
    const p = Math.floor(a / 4096);
    if (p < this.ramPages && this.pageKinds[p] === PageKind.Ram) {
      if (this.codePage[p] !== 0) this.codeWritten(a, 1);
      this.ram[a] = v;
    } else {
      this.blockExit = true;
      this.bus.mmioWrite(a, 1, v & 0xff);
    }
  }

  physWrite32(a: number, v: number): void {
    const p = Math.floor(a / 4096);
    if (p < this.ramPages && this.pageKinds[p] === PageKind.Ram && (a & 0xfff) <= 0xffc) {
      if (this.codePage[p] !== 0) this.codeWritten(a, 4);
      const r = this.ram;
      r[a] = v;
      r[a + 1] = v >> 8;
      r[a + 2] = v >> 16;
      r[a + 3] = v >> 24;
    } else {
      this.blockExit = true;
      this.bus.mmioWrite(a, 4, v >>> 0);
    }
  }

  // ------------------------------------------------------------------ linear access

  /** Reads a byte at a linear address. */
  rd8(lin: number): number {
    const e = this.tlbR[(lin >>> 12) | this.tlbUser];
    if (e !== 0) return this.ram[(e - 1) * 4096 + (lin & 0xfff)];
    return this.physRead8(this.translate(lin, 0));
  }

  rd16(lin: number): number {
    const e = this.tlbR[(lin >>> 12) | this.tlbUser];
    if (e !== 0 && (lin & 0xfff) !== 0xfff) {
      const a = (e - 1) * 4096 + (lin & 0xfff);
      return this.ram[a] | (this.ram[a + 1] << 8);
    }
    return this.rdSlow(lin, 2);
  }

  rd32(lin: number): number {
    const e = this.tlbR[(lin >>> 12) | this.tlbUser];
    if (e !== 0 && (lin & 0xfff) <= 0xffc) {
      const a = (e - 1) * 4096 + (lin & 0xfff);
      if ((a & 3) === 0 && this.ram32.length !== 0) return this.ram32[a >>> 2];
      const r = this.ram;
      return r[a] | (r[a + 1] << 8) | (r[a + 2] << 16) | (r[a + 3] << 24);
    }
    return this.rdSlow(lin, 4);
  }

  private rdSlow(lin: number, size: 2 | 4): number {
    if (this.acActive && this.cpl === 3 && (lin & (size - 1)) !== 0) this.fault(ACF, 0);
    if (((lin & 0xfff) + size) <= 0x1000) {
      this.accSize = size;
      const a = this.translate(lin, 0);
      this.accSize = 1;
      const p = Math.floor(a / 4096);
      if (p < this.ramPages && this.pageKinds[p] !== PageKind.Mmio) {
        const r = this.ram;
        return size === 2
          ? r[a] | (r[a + 1] << 8)
          : r[a] | (r[a + 1] << 8) | (r[a + 2] << 16) | (r[a + 3] << 24);
      }
      this.blockExit = true;
      const v = this.bus.mmioRead(a, size);
      return size === 2 ? v & 0xffff : v | 0;
    }
    // crosses a page: translate both pages first so that a fault leaves nothing half done
    this.translate(lin, 0);
    this.translate((lin + size - 1) | 0, 0);
    let v = 0;
    for (let k = 0; k < size; k++) v |= this.rd8((lin + k) | 0) << (8 * k);
    return v;
  }

  wr8(lin: number, v: number): void {
    const e = this.tlbW[(lin >>> 12) | this.tlbUser];
    if (e !== 0) {
      this.ram[(e - 1) * 4096 + (lin & 0xfff)] = v;
      return;
    }
    this.physWrite8(this.translate(lin, 1), v);
  }

  wr16(lin: number, v: number): void {
    const e = this.tlbW[(lin >>> 12) | this.tlbUser];
    if (e !== 0 && (lin & 0xfff) !== 0xfff) {
      const a = (e - 1) * 4096 + (lin & 0xfff);
      this.ram[a] = v;
      this.ram[a + 1] = v >> 8;
      return;
    }
    this.wrSlow(lin, 2, v);
  }

  wr32(lin: number, v: number): void {
    const e = this.tlbW[(lin >>> 12) | this.tlbUser];
    if (e !== 0 && (lin & 0xfff) <= 0xffc) {
      const a = (e - 1) * 4096 + (lin & 0xfff);
      if ((a & 3) === 0 && this.ram32.length !== 0) {
        this.ram32[a >>> 2] = v;
        return;
      }
      const r = this.ram;
      r[a] = v;
      r[a + 1] = v >> 8;
      r[a + 2] = v >> 16;
      r[a + 3] = v >> 24;
      return;
    }
    this.wrSlow(lin, 4, v);
  }

  private wrSlow(lin: number, size: 2 | 4, v: number): void {
    if (this.acActive && this.cpl === 3 && (lin & (size - 1)) !== 0) this.fault(ACF, 0);
    if (((lin & 0xfff) + size) <= 0x1000) {
      this.accSize = size;
      const a = this.translate(lin, 1);
      this.accSize = 1;
      const p = Math.floor(a / 4096);
      if (p < this.ramPages && this.pageKinds[p] === PageKind.Ram) {
        if (this.codePage[p] !== 0) this.codeWritten(a, size);
        const r = this.ram;
        r[a] = v;
        r[a + 1] = v >> 8;
        if (size === 4) {
          r[a + 2] = v >> 16;
          r[a + 3] = v >> 24;
        }
        return;
      }
      this.blockExit = true;
      this.bus.mmioWrite(a, size, size === 2 ? v & 0xffff : v >>> 0);
      return;
    }
    this.translate(lin, 1);
    this.translate((lin + size - 1) | 0, 1);
    for (let k = 0; k < size; k++) this.wr8((lin + k) | 0, v >> (8 * k));
  }

  /** RAM index of `lin` if the TLB maps it readable to RAM/ROM, else -1. */
  ramIndexR(lin: number): number {
    const e = this.tlbR[(lin >>> 12) | this.tlbUser];
    return e === 0 ? -1 : (e - 1) * 4096 + (lin & 0xfff);
  }

  /** RAM index of `lin` if the TLB maps it writable to RAM holding no code, else -1. */
  ramIndexW(lin: number): number {
    const e = this.tlbW[(lin >>> 12) | this.tlbUser];
    return e === 0 ? -1 : (e - 1) * 4096 + (lin & 0xfff);
  }

  /** Reads for a read-modify-write: faults now if the later write would (flags stay intact). */
  rdw(sz: number, lin: number): number {
    const size = 1 << sz;
    const e = this.tlbW[(lin >>> 12) | this.tlbUser];
    if (e === 0 || (lin & 0xfff) > 0x1000 - size) this.probeWrite(lin, size);
    return sz === 0 ? this.rd8(lin) : sz === 1 ? this.rd16(lin) : this.rd32(lin);
  }

  rdw8(lin: number): number {
    const e = this.tlbW[(lin >>> 12) | this.tlbUser];
    if (e !== 0) return this.ram[(e - 1) * 4096 + (lin & 0xfff)];
    this.probeWrite(lin, 1);
    return this.rd8(lin);
  }

  rdw16(lin: number): number {
    const e = this.tlbW[(lin >>> 12) | this.tlbUser];
    if (e !== 0 && (lin & 0xfff) !== 0xfff) {
      const a = (e - 1) * 4096 + (lin & 0xfff);
      return this.ram[a] | (this.ram[a + 1] << 8);
    }
    this.probeWrite(lin, 2);
    return this.rd16(lin);
  }

  rdw32(lin: number): number {
    const e = this.tlbW[(lin >>> 12) | this.tlbUser];
    if (e !== 0 && (lin & 0xfff) <= 0xffc) {
      const a = (e - 1) * 4096 + (lin & 0xfff);
      const r = this.ram;
      return r[a] | (r[a + 1] << 8) | (r[a + 2] << 16) | (r[a + 3] << 24);
    }
    this.probeWrite(lin, 4);
    return this.rd32(lin);
  }

  /** Reads by operand size code. */
  rd(sz: number, lin: number): number {
    return sz === 0 ? this.rd8(lin) : sz === 1 ? this.rd16(lin) : this.rd32(lin);
  }

  /** Writes by operand size code. */
  wr(sz: number, lin: number, v: number): void {
    if (sz === 0) this.wr8(lin, v);
    else if (sz === 1) this.wr16(lin, v);
    else this.wr32(lin, v);
  }

  /** Checks that a write to `lin` of `size` bytes would succeed (before a multi-part update). */
  probeWrite(lin: number, size: number): void {
    this.translate(lin, 1);
    if (((lin & 0xfff) + size) > 0x1000) this.translate((lin + size - 1) | 0, 1);
  }

  /** Reads a code byte for the decoder. */
  fetch8(lin: number): number {
    const e = this.tlbX[(lin >>> 12) | this.tlbUser];
    if (e !== 0) return this.ram[(e - 1) * 4096 + (lin & 0xfff)];
    return this.physRead8(this.translate(lin, 2));
  }

  /** System-table reads/writes (GDT, IDT, TSS): supervisor privilege whatever the CPL. */
  sysRd32(lin: number): number {
    const u = this.tlbUser;
    const c = this.cpl;
    this.tlbUser = 0;
    this.cpl = 0;
    try {
      return this.rd32(lin);
    } finally {
      this.tlbUser = u;
      this.cpl = c;
    }
  }

  sysRd16(lin: number): number {
    return this.sysRd32(lin) & 0xffff;
  }

  sysWr8(lin: number, v: number): void {
    const u = this.tlbUser;
    const c = this.cpl;
    this.tlbUser = 0;
    this.cpl = 0;
    try {
      this.wr8(lin, v);
    } finally {
      this.tlbUser = u;
      this.cpl = c;
    }
  }

  sysWr32(lin: number, v: number): void {
    const u = this.tlbUser;
    const c = this.cpl;
    this.tlbUser = 0;
    this.cpl = 0;
    try {
      this.wr32(lin, v);
    } finally {
      this.tlbUser = u;
      this.cpl = c;
    }
  }

  // ------------------------------------------------------------------ stack

  push16(v: number): void {
    const sp = (this.r32[4] - 2) & this.spMask;
    if (sp + 1 > this.segChk[SS]) this.limitFault(SS, sp, 1, true);
    this.wr16((this.segBase[SS] + sp) | 0, v);
    if (this.spMask === 0xffff) this.r16[8] = sp;
    else this.r32[4] = sp;
  }

  push32(v: number): void {
    const sp = (this.r32[4] - 4) & this.spMask;
    if ((sp >>> 0) + 3 > this.segChk[SS]) this.limitFault(SS, sp >>> 0, 3, true);
    this.wr32((this.segBase[SS] + sp) | 0, v);
    if (this.spMask === 0xffff) this.r16[8] = sp;
    else this.r32[4] = sp;
  }

  push(sz: number, v: number): void {
    if (sz === 2) this.push32(v);
    else this.push16(v);
  }

  pop16(): number {
    const sp = this.r32[4] & this.spMask;
    if ((sp >>> 0) + 1 > this.segChk[SS]) this.limitFault(SS, sp >>> 0, 1, false);
    const v = this.rd16((this.segBase[SS] + sp) | 0);
    if (this.spMask === 0xffff) this.r16[8] = sp + 2;
    else this.r32[4] = sp + 4 - 2;
    return v;
  }

  pop32(): number {
    const sp = this.r32[4] & this.spMask;
    if ((sp >>> 0) + 3 > this.segChk[SS]) this.limitFault(SS, sp >>> 0, 3, false);
    const v = this.rd32((this.segBase[SS] + sp) | 0);
    if (this.spMask === 0xffff) this.r16[8] = sp + 4;
    else this.r32[4] = sp + 4;
    return v;
  }

  pop(sz: number): number {
    return sz === 2 ? this.pop32() : this.pop16();
  }

  /** Reads the stack at ESP+off without popping. */
  peek(sz: number, off: number): number {
    const o = (this.r32[4] + off) & this.spMask;
    if ((o >>> 0) + (sz === 2 ? 3 : 1) > this.segChk[SS]) {
      this.limitFault(SS, o >>> 0, sz === 2 ? 3 : 1, false);
    }
    const lin = (this.segBase[SS] + o) | 0;
    return sz === 2 ? this.rd32(lin) : this.rd16(lin);
  }

  // ------------------------------------------------------------------ flags

  /** Writes EFLAGS under a mask of bits the instruction may change. */
  setFlagsMasked(v: number, changeable: number): void {
    this.materialize();
    const old = this.eflags;
    this.eflags = ((old & ~changeable) | (v & changeable) | 2) & ~0x8028;
    this.lop = 0;
    if (((old ^ this.eflags) & (IF | TF | RF | VM)) !== 0) this.blockExit = true;
    if (((old ^ this.eflags) & AC) !== 0) this.updateAc();
  }

  /** The mask of EFLAGS bits POPF/IRET may change at the current privilege. */
  popfMask(sz: number): number {
    let m = 0x0dd5 | TF | DF | NT | AC | 0x200000;
    if ((this.cr0 & CR0_PE) === 0) m |= IF | 0x3000;
    else {
      if (this.cpl === 0) m |= 0x3000;
      if (this.cpl <= ((this.eflags >> 12) & 3)) m |= IF;
    }
    if (sz !== 2) m &= 0xffff;
    return m;
  }

  /** The real-mode or protected-mode state changed: recompute cached mode bits. */
  modeChanged(): void {
    for (let s = 0; s < 6; s++) this.segCheck(s);
    this.code32 = (this.cr0 & CR0_PE) !== 0 && (this.eflags & VM) === 0 &&
        (this.segAttr[CS] & 0x4000) !== 0
      ? 1
      : 0;
    this.spMask = (this.cr0 & CR0_PE) !== 0 && (this.eflags & VM) === 0 &&
        (this.segAttr[SS] & 0x4000) !== 0
      ? -1
      : 0xffff;
    this.blockExit = true;
    // Block links hold while code is fetched the same way: an interrupt or IRET that comes
    // back to the same CS (the common case) keeps them; any other change drops them.
    const pe = (this.cr0 & CR0_PE) | (this.eflags & VM);
    if (
      this.segBase[CS] !== this.linkCsBase || this.segLimit[CS] !== this.linkCsLimit ||
      this.segAttr[CS] !== this.linkCsAttr || this.code32 !== this.linkCode32 ||
      this.tlbUser !== this.linkUser || pe !== this.linkPe
    ) {
      this.linkCsBase = this.segBase[CS];
      this.linkCsLimit = this.segLimit[CS];
      this.linkCsAttr = this.segAttr[CS];
      this.linkCode32 = this.code32;
      this.linkUser = this.tlbUser;
      this.linkPe = pe;
      this.epoch++;
    }
  }
  /** The code-fetch state (CS base, limit and attributes, sizes, privilege) of the last
   * modeChanged that dropped the block links. */
  private linkCsBase = -1;
  private linkCsLimit = -1;
  private linkCsAttr = -1;
  private linkCode32 = -1;
  private linkUser = -1;
  private linkPe = -1;

  /** Directional step for string instructions. */
  dstep(sz: number): number {
    return (this.eflags & DF) !== 0 ? -(1 << sz) : 1 << sz;
  }
}

/** A dword view of RAM (empty when the bytes do not start 4-aligned: the byte path is used). */
function dwordView(ram: Uint8Array): Int32Array {
  return (ram.byteOffset & 3) === 0
    ? new Int32Array(ram.buffer, ram.byteOffset, ram.length >>> 2)
    : new Int32Array(0);
}

function isContributory(prev: number, vec: number): boolean {
  const contributory = (v: number) => v === 0 || (v >= 10 && v <= 13);
  if (contributory(prev) && contributory(vec)) return true;
  if (prev === PF && (contributory(vec) || vec === PF)) return true;
  return false;
}
