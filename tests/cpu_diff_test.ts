/**
 * Differential test against the host CPU: random user-level instruction sequences (32-bit operand
 * size, register and memory operands) run natively (executable memory through Deno FFI, the
 * sequence wrapped in a small x86-64 prologue/epilogue) and on demu's CPU (32-bit protected mode);
 * registers, flags (the ones the SDM leaves undefined masked) and memory are compared.
 *
 * The instruction mix is limited to encodings that mean the same in 32-bit and 64-bit mode
 * (no INC/DEC 40-4F, no PUSH/POP, no BCD, no ESP), with memory operands as [EBX+disp8] into a
 * buffer mapped below 4 GiB, so the same bytes run on both.
 */

import { deepStrictEqual, ok } from "node:assert/strict";
import { Cpu, ramOnlyBus } from "../emu/cpu/cpu.ts";
import { CF, OF, PF, SF, ZF } from "../emu/cpu/flags.ts";
import { Rng } from "./rng.ts";
import { HostCode } from "./host_code.ts";

const AFL = 0x10;
const ALL = CF | PF | AFL | ZF | SF | OF;

// registers a sequence may write (not ESP, not EBX: EBX is the memory base) and read
const DST = [0, 1, 2, 5, 6, 7];
const SRC = [0, 1, 2, 3, 5, 6, 7];
// byte registers: 0-3 AL..BL, 4-7 AH..BH; BL/BH would change EBX
const DST8 = [0, 1, 2, 4, 5, 6];
const CC_FLAGS = [
  OF,
  OF,
  CF,
  CF,
  ZF,
  ZF,
  CF | ZF,
  CF | ZF,
  SF,
  SF,
  PF,
  PF,
  SF | OF,
  SF | OF,
  ZF | SF | OF,
  ZF | SF | OF,
];

/** One generated instruction: its bytes and its effect on the set of undefined flags. */
interface Gen {
  bytes: number[];
  /** Flags it defines (clears from the undefined set). */
  def: number;
  /** Flags it leaves undefined. */
  undef: number;
  /** Flags it reads (must be defined). */
  reads: number;
  text: string;
}

function modrmReg(reg: number, rm: number): number {
  return 0xc0 | (reg << 3) | rm;
}

/** A memory operand [EBX+disp8] with room for a dword. */
function memOperand(rng: Rng, reg: number): number[] {
  return [0x40 | (reg << 3) | 3, (rng.int(240) - 120) & 0xff];
}

function rm(
  rng: Rng,
  reg: number,
  allowMem: boolean,
  byte = false,
): { bytes: number[]; mem: boolean; rmReg: number } {
  if (allowMem && rng.int(3) === 0) return { bytes: memOperand(rng, reg), mem: true, rmReg: -1 };
  const r = rng.pick(byte ? DST8 : DST);
  return { bytes: [modrmReg(reg, r)], mem: false, rmReg: r };
}

function genOne(rng: Rng): Gen {
  const k = rng.int(19);
  switch (k) {
    case 16: { // DIV/IDIV with operands that cannot fault: a zero/sign-extended dividend, divisor 1..4000
      const r = rng.pick([1, 5, 6, 7]);
      const d = 1 + rng.int(4000);
      const setDivisor = [0xb8 + r, d & 0xff, d >> 8, 0, 0];
      const f = rng.int(3);
      if (f === 0) { // 32-bit: EDX:EAX / r
        const signed = rng.int(2) === 1;
        const ext = signed ? [0x99] : [0x31, 0xd2]; // cdq | xor edx, edx
        return {
          bytes: [...setDivisor, ...ext, 0xf7, modrmReg(signed ? 7 : 6, r)],
          def: ALL,
          undef: ALL,
          reads: 0,
          text: signed ? "idiv32" : "div32",
        };
      }
      if (f === 1) { // 16-bit: DX:AX / r16 with DX = 0 and AX < 65536
        return {
          bytes: [...setDivisor, 0x31, 0xd2, 0x66, 0xf7, modrmReg(6, r)],
          def: ALL,
          undef: ALL,
          reads: 0,
          text: "div16",
        };
      }
      // 8-bit: AX = AL, divisor CL = 1..255 > 0
      const cl = 1 + rng.int(255);
      return {
        bytes: [0x0f, 0xb6, 0xc0, 0xb1, cl, 0xf6, modrmReg(6, 1)], // movzx eax, al; mov cl; div cl
        def: ALL,
        undef: ALL,
        reads: 0,
        text: "div8",
      };
    }
    case 17: { // string instructions inside the buffer, either direction, small counts
      const op = rng.pick([0xa4, 0xa5, 0xaa, 0xab, 0xa6, 0xa7, 0xae, 0xac, 0xad]);
      const w = op & 1 ? 4 : 1;
      const n = rng.int(w === 4 ? 12 : 40);
      const back = rng.int(2) === 1;
      // keep every element inside [-128, 127] going up (forward) or down (backward)
      const pos = () =>
        back ? -128 + n * w + rng.int(256 - n * w - w) : -128 + rng.int(256 - n * w);
      const s0 = pos(), d0 = pos();
      const rep = op === 0xac || op === 0xad
        ? []
        : op === 0xa6 || op === 0xa7 || op === 0xae
        ? [rng.pick([0xf3, 0xf2])]
        : [0xf3];
      const flags = op === 0xa6 || op === 0xa7 || op === 0xae;
      const lodsOnce = rep.length === 0;
      return {
        bytes: [
          0x8d,
          0x73,
          s0 & 0xff, // lea esi, [ebx+s]
          0x8d,
          0x7b,
          d0 & 0xff, // lea edi, [ebx+d]
          0xb9,
          lodsOnce ? 1 : n,
          0,
          0,
          0, // mov ecx, n
          ...(back ? [0xfd] : []), // std
          ...rep,
          op,
          0xfc, // cld
        ],
        // with a count of 0 a REP CMPS/SCAS leaves the flags as they were
        def: flags && n > 0 ? ALL : 0,
        undef: 0,
        reads: 0,
        text: `str${op.toString(16)}x${n}${back ? "d" : ""}`,
      };
    }
    case 18: { // CMPXCHG8B [EBX+d]
      return {
        bytes: [0x0f, 0xc7, ...memOperand(rng, 1)],
        def: 0,
        undef: 0,
        reads: 0,
        text: "cmpxchg8b",
      };
    }
    case 0:
    case 1: { // ALU r/m, r or r, r/m
      const op = rng.int(8);
      const toRm = rng.int(2) === 0;
      const size = rng.int(4); // 0: byte, 1: word, 2-3: dword
      const src = () => (size === 0 ? rng.int(8) : rng.pick(SRC));
      const reg = toRm ? src() : rng.pick(size === 0 ? DST8 : DST);
      const m = rm(rng, reg, true, size === 0);
      if (!toRm && !m.mem) m.bytes[0] = modrmReg(reg, src());
      const opc = (op << 3) | (toRm ? 0 : 2) | (size === 0 ? 0 : 1);
      const pre = size === 1 ? [0x66] : [];
      const logic = op === 1 || op === 4 || op === 6;
      return {
        bytes: [...pre, opc, ...m.bytes],
        def: ALL,
        undef: logic ? AFL : 0,
        reads: op === 2 || op === 3 ? CF : 0,
        text: `alu${op}`,
      };
    }
    case 2: { // ALU r/m, imm
      const op = rng.int(8);
      const m = rm(rng, op, true);
      const short = rng.int(2) === 0;
      const imm = short ? [rng.int(256)] : [rng.int(256), rng.int(256), rng.int(256), rng.int(256)];
      const logic = op === 1 || op === 4 || op === 6;
      return {
        bytes: [short ? 0x83 : 0x81, ...m.bytes, ...imm],
        def: ALL,
        undef: logic ? AFL : 0,
        reads: op === 2 || op === 3 ? CF : 0,
        text: `alui${op}`,
      };
    }
    case 3: { // shifts and rotates
      const op = rng.pick([0, 1, 2, 3, 4, 5, 7]);
      const m = rm(rng, op, true);
      const form = rng.int(3);
      const count = form === 0 ? 1 : rng.int(40);
      const bytes = form === 0
        ? [0xd1, ...m.bytes]
        : form === 1
        ? [0xc1, ...m.bytes, count]
        : [0xb1, count, 0xd3, ...m.bytes]; // mov cl, count; shift by cl
      const c = count & 31;
      const rot = op < 4;
      let def = 0, undef = 0;
      if (c !== 0) {
        if (rot) {
          def = CF | OF;
          if (c !== 1) undef = OF;
        } else {
          def = ALL;
          undef = AFL | (c !== 1 ? OF : 0);
        }
      }
      return {
        bytes,
        def,
        undef,
        reads: op === 2 || op === 3 ? CF : 0,
        text: `shift${op} ${count}`,
      };
    }
    case 4: { // unary: NOT, NEG, MUL, IMUL, TEST imm
      const op = rng.pick([0, 2, 3, 4, 5]);
      if (op === 4 || op === 5) {
        const m = rm(rng, op, true);
        return {
          bytes: [0xf7, ...m.bytes],
          def: ALL,
          undef: SF | ZF | AFL | PF,
          reads: 0,
          text: `mul${op}`,
        };
      }
      const m = rm(rng, op, true);
      const imm = op === 0 ? [rng.int(256), rng.int(256), rng.int(256), rng.int(256)] : [];
      return {
        bytes: [0xf7, ...m.bytes, ...imm],
        def: op === 2 ? 0 : ALL,
        undef: op === 0 ? AFL : 0,
        reads: 0,
        text: `unary${op}`,
      };
    }
    case 5: { // INC/DEC r/m (FF /0, /1)
      const op = rng.int(2);
      const m = rm(rng, op, true);
      return { bytes: [0xff, ...m.bytes], def: ALL & ~CF, undef: 0, reads: 0, text: `incdec${op}` };
    }
    case 6: { // IMUL r, r/m[, imm]
      const reg = rng.pick(DST);
      const m = rm(rng, reg, true);
      const f = rng.int(3);
      const bytes = f === 0
        ? [0x0f, 0xaf, ...m.bytes]
        : f === 1
        ? [0x6b, ...m.bytes, rng.int(256)]
        : [0x69, ...m.bytes, rng.int(256), rng.int(256), rng.int(256), rng.int(256)];
      return { bytes, def: ALL, undef: SF | ZF | AFL | PF, reads: 0, text: "imul2" };
    }
    case 7: { // BT/BTS/BTR/BTC register forms
      const op = rng.int(4);
      const reg = rng.pick(SRC);
      const r = rng.pick(DST);
      const imm = rng.int(2) === 0;
      const bytes = imm
        ? [0x0f, 0xba, modrmReg(4 + op, r), rng.int(256)]
        : [0x0f, 0xa3 + op * 8, modrmReg(reg, r)];
      return { bytes, def: CF, undef: OF | SF | AFL | PF, reads: 0, text: `bt${op}` };
    }
    case 8: { // BSF/BSR
      const reg = rng.pick(DST);
      const m = rm(rng, reg, true);
      return {
        bytes: [0x0f, 0xbc + rng.int(2), ...m.bytes],
        def: ZF,
        undef: CF | OF | SF | AFL | PF,
        reads: 0,
        text: "bsf/bsr",
      };
    }
    case 9: { // SHLD/SHRD by imm or CL
      const reg = rng.pick(SRC);
      const m = rm(rng, reg, true);
      const right = rng.int(2) * 8;
      const byCl = rng.int(2) === 0;
      const count = rng.int(40);
      const bytes = byCl
        ? [0xb1, count, 0x0f, 0xa5 + right, ...m.bytes]
        : [0x0f, 0xa4 + right, ...m.bytes, count];
      const c = count & 31;
      return {
        bytes,
        def: c === 0 ? 0 : ALL,
        undef: c === 0 ? 0 : AFL | (c !== 1 ? OF : 0),
        reads: 0,
        text: `shxd ${count}`,
      };
    }
    case 10: { // MOVZX/MOVSX
      const reg = rng.pick(DST);
      const m = rm(rng, reg, true);
      return {
        bytes: [0x0f, rng.pick([0xb6, 0xb7, 0xbe, 0xbf]), ...m.bytes],
        def: 0,
        undef: 0,
        reads: 0,
        text: "movx",
      };
    }
    case 11: { // CMOVcc / SETcc
      const cc = rng.int(16);
      if (rng.int(2) === 0) {
        const reg = rng.pick(DST);
        const m = rm(rng, reg, true);
        return {
          bytes: [0x0f, 0x40 + cc, ...m.bytes],
          def: 0,
          undef: 0,
          reads: CC_FLAGS[cc],
          text: `cmov${cc}`,
        };
      }
      const m = rm(rng, 0, true, true);
      return {
        bytes: [0x0f, 0x90 + cc, ...m.bytes],
        def: 0,
        undef: 0,
        reads: CC_FLAGS[cc],
        text: `set${cc}`,
      };
    }
    case 12: { // XADD / CMPXCHG / XCHG
      const reg = rng.pick(DST);
      const m = rm(rng, reg, true);
      const f = rng.int(3);
      const bytes = f === 0
        ? [0x0f, 0xc1, ...m.bytes]
        : f === 1
        ? [0x0f, 0xb1, ...m.bytes]
        : [0x87, ...m.bytes];
      return { bytes, def: f === 2 ? 0 : ALL, undef: 0, reads: 0, text: `xop${f}` };
    }
    case 13: { // BSWAP, CDQ, CWDE, LEA
      const f = rng.int(3);
      if (f === 0) {
        return { bytes: [0x0f, 0xc8 + rng.pick(DST)], def: 0, undef: 0, reads: 0, text: "bswap" };
      }
      if (f === 1) {
        return { bytes: [rng.pick([0x98, 0x99])], def: 0, undef: 0, reads: 0, text: "cwde/cdq" };
      }
      const reg = rng.pick(DST);
      return { bytes: [0x8d, ...memOperand(rng, reg)], def: 0, undef: 0, reads: 0, text: "lea" };
    }
    case 14: { // CLC/STC/CMC
      const o = rng.pick([0xf8, 0xf9, 0xf5]);
      return { bytes: [o], def: CF, undef: 0, reads: o === 0xf5 ? CF : 0, text: "cf" };
    }
    default: { // MOV r/m, r / r, r/m / r, imm
      const reg = rng.pick(DST);
      const f = rng.int(3);
      if (f === 2) {
        return {
          bytes: [0xb8 + reg, rng.int(256), rng.int(256), rng.int(256), rng.int(256)],
          def: 0,
          undef: 0,
          reads: 0,
          text: "movi",
        };
      }
      const m = rm(rng, f === 0 ? rng.pick(SRC) : reg, true);
      return {
        bytes: [f === 0 ? 0x89 : 0x8b, ...m.bytes],
        def: 0,
        undef: 0,
        reads: 0,
        text: "mov",
      };
    }
  }
}

/** A sequence of n instructions that never reads an undefined flag; returns bytes and the final undefined set. */
function genSequence(rng: Rng, n: number): { bytes: number[]; undef: number; text: string[] } {
  let undef = 0;
  const bytes: number[] = [];
  const text: string[] = [];
  while (text.length < n) {
    const g = genOne(rng);
    if ((g.reads & undef) !== 0) continue;
    // an instruction that writes CL for a shift also clobbers ECX: fine, ECX is a DST register
    bytes.push(...g.bytes);
    text.push(g.text);
    undef = (undef & ~g.def) | g.undef;
  }
  return { bytes, undef, text };
}

// ------------------------------------------------------------------ native side

const PROLOGUE = [
  0x53,
  0x55,
  0x41,
  0x57, // push rbx, rbp, r15
  0x49,
  0x89,
  0xff, // mov r15, rdi
  0x41,
  0x8b,
  0x47,
  0x20,
  0x50,
  0x9d, // mov eax,[r15+32]; push rax; popfq
  0x41,
  0x8b,
  0x07,
  0x41,
  0x8b,
  0x4f,
  0x04,
  0x41,
  0x8b,
  0x57,
  0x08,
  0x41,
  0x8b,
  0x5f,
  0x0c,
  0x41,
  0x8b,
  0x6f,
  0x14,
  0x41,
  0x8b,
  0x77,
  0x18,
  0x41,
  0x8b,
  0x7f,
  0x1c,
];
const EPILOGUE = [
  0x41,
  0x89,
  0x07,
  0x41,
  0x89,
  0x4f,
  0x04,
  0x41,
  0x89,
  0x57,
  0x08,
  0x41,
  0x89,
  0x5f,
  0x0c,
  0x41,
  0x89,
  0x6f,
  0x14,
  0x41,
  0x89,
  0x77,
  0x18,
  0x41,
  0x89,
  0x7f,
  0x1c,
  0x9c,
  0x58,
  0x41,
  0x89,
  0x47,
  0x20, // pushfq; pop rax; mov [r15+32], eax
  0xfc,
  0x41,
  0x5f,
  0x5d,
  0x5b,
  0xc3, // cld; pop r15, rbp, rbx; ret
];

const isX64 = Deno.build.arch === "x86_64" && Deno.build.os === "linux";
if (!isX64) console.warn("WARNING: not an x86-64 Linux host: CPU differential test skipped");

interface Program {
  bytes: number[];
  /** Arithmetic flags left undefined at the end. */
  undef: number;
  text: string[];
  /** Compare only these bits of EAX (x87 status word in AX); default all. */
  eaxMask?: number;
}

/**
 * Runs `seqs` generated programs natively and on demu and returns the mismatch reports.
 * `initBuf` fills the 256-byte operand buffer; `sameMem` compares the buffers afterwards.
 */
function differential(
  seqs: number,
  gen: (rng: Rng) => Program,
  initBuf: (rng: Rng) => number[],
  sameMem: (demu: Uint8Array, host: Uint8Array) => string | null,
): { report: string[]; mismatches: number } {
  const native = new HostCode(65536);
  const { code, data, fn } = native;
  try {
    const codeBytes = new Uint8Array(code.buffer);
    const dataView = new DataView(data.buffer);
    const dataBytes = new Uint8Array(data.buffer);
    const hostData = Number(Deno.UnsafePointer.value(data.pointer));
    ok(hostData + 4096 < 2 ** 31, "MAP_32BIT mapping above 2 GiB");
    const BUF = 512; // EBX = data + BUF; operands at data+BUF-128 .. +BUF+127
    const RAM_BUF = 0x10000; // where the buffer sits in demu's RAM
    const ram = new Uint8Array(1 << 20);
    const cpu = new Cpu(ramOnlyBus(ram));
    const rng = new Rng(0x2545f491);
    const report: string[] = [];
    let mismatches = 0;
    for (let s = 0; s < seqs; s++) {
      const seed = rng.s;
      const seq = gen(rng);
      // initial state: random registers, buffer and arithmetic flags
      const regs = Array.from({ length: 8 }, () => rng.next() | 0);
      regs[3] = hostData + BUF;
      const flags = (rng.next() & ALL) | 2;
      const buf = initBuf(rng);
      // --- native
      codeBytes.set([...PROLOGUE, ...seq.bytes, ...EPILOGUE]);
      for (let r = 0; r < 8; r++) dataView.setInt32(r * 4, regs[r], true);
      dataView.setInt32(32, flags, true);
      dataBytes.set(buf, BUF - 128);
      fn.call(data.pointer);
      const hostRegs = Array.from({ length: 8 }, (_, r) => dataView.getInt32(r * 4, true));
      const hostFlags = dataView.getInt32(32, true);
      const hostBuf = dataBytes.slice(BUF - 128, BUF + 128);
      // --- demu: 32-bit flat protected mode; DS/ES bases map the host buffer address into RAM
      cpu.reset();
      cpu.cr0 |= 1;
      cpu.setSegCache(1, 8, 0, 0xffffffff, 0xc09b);
      for (const sg of [0, 2, 3, 4, 5]) cpu.setSegCache(sg, 16, 0, 0xffffffff, 0xc093);
      cpu.setSegCache(3, 16, (RAM_BUF - (hostData + BUF)) | 0, 0xffffffff, 0xc093);
      cpu.setSegCache(0, 16, cpu.segBase[3], 0xffffffff, 0xc093);
      cpu.modeChanged();
      for (let r = 0; r < 8; r++) cpu.r32[r] = regs[r];
      cpu.r32[4] = 0x8000;
      cpu.eflags = flags;
      cpu.lop = 0;
      ram.set([...seq.bytes, 0xf4], 0x1000);
      ram.set(buf, RAM_BUF - 128);
      cpu.flushCode();
      cpu.eip = 0x1000;
      for (let k = 0; k < 100 && !cpu.halted; k++) cpu.run(1000);
      const mask = ALL & ~seq.undef;
      const errs: string[] = [];
      for (const r of [0, 1, 2, 3, 5, 6, 7]) {
        const m = r === 0 ? (seq.eaxMask ?? -1) : -1;
        if ((cpu.r32[r] & m) !== (hostRegs[r] & m)) {
          errs.push(`r${r}=${hex(cpu.r32[r] & m)} host ${hex(hostRegs[r] & m)}`);
        }
      }
      if ((cpu.getFlags() & mask) !== (hostFlags & mask)) {
        errs.push(
          `flags=${hex(cpu.getFlags() & mask)} host ${hex(hostFlags & mask)} (mask ${hex(mask)})`,
        );
      }
      const memErr = sameMem(ram.subarray(RAM_BUF - 128, RAM_BUF + 128), hostBuf);
      if (memErr !== null) errs.push(memErr);
      if (errs.length) mismatches++;
      if (errs.length && report.length < 10) {
        report.push(
          `seed ${hex(seed)} [${seq.text.join(", ")}] ${seq.bytes.map(hex).join(" ")}: ${
            errs.join("; ")
          }`,
        );
      }
    }
    return { report, mismatches };
  } finally {
    native.close();
  }
}

function sameBytes(demu: Uint8Array, host: Uint8Array): string | null {
  for (let b = 0; b < 256; b++) {
    if (demu[b] !== host[b]) return `mem[${b - 128}]=${hex(demu[b])} host ${hex(host[b])}`;
  }
  return null;
}

Deno.test({
  name: "cpu: differential against the host CPU (random 32-bit sequences, registers/flags/memory)",
  ignore: !isX64,
  fn() {
    const SEQS = Number(Deno.env.get("CPU_DIFF_SEQS") ?? 3000);
    const LEN = Number(Deno.env.get("CPU_DIFF_LEN") ?? 12);
    const { report, mismatches } = differential(
      SEQS,
      (rng) => genSequence(rng, LEN),
      (rng) => Array.from({ length: 256 }, () => rng.int(256)),
      sameBytes,
    );
    console.log(
      `differential: ${SEQS - mismatches}/${SEQS} sequences of ${LEN} instructions agree`,
    );
    for (const r of report) console.log(`  ${r}`);
    deepStrictEqual(report, []);
  },
});

// ------------------------------------------------------------------ x87

/**
 * Buffer layout for x87 programs (offsets from EBX): 16 input doubles at -128, 8 int32 inputs
 * at 0, control words (RC nearest/down/up/chop) at 32..39, int32 outputs at 40..63, outputs at
 * 64..127 (eight doubles; with extended precision six 10-byte slots, each an m80 or an m64).
 * The precision-control field is the same in all four control words: 53 bits (the IEEE double
 * results), 64 bits (extended precision: every rounding of demu's integer soft-float) or 24.
 */
const X_IN = -128, X_INT = 0, X_CW = 32, X_IOUT = 40, X_OUT = 64;

function x87Buf(rng: Rng, pc: number): number[] {
  const b = new DataView(new ArrayBuffer(256));
  const pick = () => {
    const k = rng.int(8);
    if (k === 0) return rng.int(21) - 10;
    if (k === 1) return 0;
    const mant = rng.next() / 2 ** 32 - 0.5;
    // beyond double precision also huge, tiny and denormal doubles (the extended range holds
    // their products; storing them back as m64/m32 over- and underflows)
    if (pc !== 2 && k === 2) return mant * 10 ** (rng.int(640) - 320);
    return mant * 10 ** (rng.int(14) - 6);
  };
  for (let k = 0; k < 16; k++) b.setFloat64(128 + X_IN + k * 8, pick(), true);
  for (let k = 0; k < 8; k++) b.setInt32(128 + X_INT + k * 4, rng.int(2001) - 1000, true);
  for (let k = 0; k < 4; k++) b.setUint16(128 + X_CW + k * 2, 0x7f | (pc << 8) | (k << 10), true);
  return Array.from(new Uint8Array(b.buffer));
}

/** Whether the 10 bytes at o are an 80-bit NaN. */
function nan80(v: DataView, o: number): boolean {
  return (v.getUint16(o + 8, true) & 0x7fff) === 0x7fff &&
    ((v.getUint32(o + 4, true) & 0x7fffffff) | v.getUint32(o, true)) !== 0;
}

function x87Mem(demu: Uint8Array, host: Uint8Array, ext = false): string | null {
  const d = new DataView(demu.buffer, demu.byteOffset, 256);
  const h = new DataView(host.buffer, host.byteOffset, 256);
  for (let k = 0; k < 6; k++) {
    const o = 128 + X_IOUT + k * 4;
    if (d.getInt32(o, true) !== h.getInt32(o, true)) {
      return `int[${k}]=${d.getInt32(o, true)} host ${h.getInt32(o, true)}`;
    }
  }
  if (ext) {
    // six 10-byte slots: equal bytes, or both NaNs (as m80, or as m64 with equal last bytes)
    for (let k = 0; k < 6; k++) {
      const o = 128 + X_OUT + k * 10;
      const a = demu.subarray(o, o + 10), b = host.subarray(o, o + 10);
      if (a.every((x, j) => x === b[j])) continue;
      if (nan80(d, o) && nan80(h, o)) continue;
      if (
        Number.isNaN(d.getFloat64(o, true)) && Number.isNaN(h.getFloat64(o, true)) &&
        d.getUint16(o + 8, true) === h.getUint16(o + 8, true)
      ) continue;
      const hx = (u: Uint8Array) =>
        [...u].reverse().map((x) => x.toString(16).padStart(2, "0")).join("");
      return `out[${k}]=${hx(a)} host ${hx(b)}`;
    }
    return null;
  }
  for (let k = 0; k < 8; k++) {
    const o = 128 + X_OUT + k * 8;
    const a = d.getFloat64(o, true), b = h.getFloat64(o, true);
    if (!(Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b)))) {
      return `out[${k}]=${a} host ${b}`;
    }
  }
  return null;
}

function x87Program(rng: Rng, n: number, ext = false): Program {
  const m = (reg: number, off: number) => [0x43 | (reg << 3), off & 0xff];
  const bytes: number[] = [0xdb, 0xe3, 0xd9, ...m(5, X_CW)]; // fninit; fldcw [nearest, double]
  const text: string[] = [];
  let depth = 0, undef = 0;
  for (let c = 0; c < n; c++) {
    const k = rng.int(12);
    const i = depth > 0 ? rng.int(depth) : 0;
    if (k <= 1 && depth < (ext ? 6 : 7)) { // loads
      const f = rng.int(4);
      if (f === 0) bytes.push(0xdd, ...m(0, X_IN + rng.int(16) * 8)), text.push("fld m64");
      else if (f === 1) bytes.push(0xdb, ...m(0, X_INT + rng.int(8) * 4)), text.push("fild m32");
      else if (f === 2) bytes.push(0xd9, rng.pick([0xe8, 0xee])), text.push("fld1/z");
      else if (depth > 0) bytes.push(0xd9, 0xc0 + i), text.push(`fld st${i}`);
      else continue;
      if (ext && f === 0 && rng.int(3) === 0) { // replace: FLD m32 or FILD m64/m16 instead
        bytes.length -= 3;
        text.pop();
        const g = rng.int(3);
        if (g === 0) bytes.push(0xd9, ...m(0, X_IN + rng.int(32) * 4)), text.push("fld m32");
        else if (g === 1) bytes.push(0xdf, ...m(5, X_IN + rng.int(16) * 8)), text.push("fild m64");
        else bytes.push(0xdf, ...m(0, X_INT + rng.int(16) * 2)), text.push("fild m16");
      }
      depth++;
    } else if (k <= 4 && depth >= 1) { // arithmetic with memory or registers
      const op = rng.pick([0, 1, 4, 5, 6, 7]);
      const f = rng.int(ext ? 7 : 4);
      if (f === 0) bytes.push(0xdc, ...m(op, X_IN + rng.int(16) * 8)), text.push(`farith${op} m64`);
      // extended mode also: m32 floats (any 4 input bytes: NaNs, denormals), m32 and m16 integers
      else if (f === 4) {
        bytes.push(0xd8, ...m(op, X_IN + rng.int(32) * 4)), text.push(`farith${op} m32`);
      } else if (f === 5) {
        bytes.push(0xda, ...m(op, X_INT + rng.int(8) * 4)), text.push(`fiarith${op} m32`);
      } else if (f === 6) {
        bytes.push(0xde, ...m(op, X_INT + rng.int(16) * 2)), text.push(`fiarith${op} m16`);
      } else if (f === 1) bytes.push(0xd8, 0xc0 + op * 8 + i), text.push(`farith${op} st0,st${i}`);
      else if (f === 2) bytes.push(0xdc, 0xc0 + op * 8 + i), text.push(`farith${op} st${i},st0`);
      else if (depth >= 2) {
        const j = 1 + rng.int(depth - 1);
        bytes.push(0xde, 0xc0 + op * 8 + j);
        text.push(`farith${op}p st${j}`);
        depth--;
      } else continue;
    } else if (k === 5 && depth >= 1) { // unary
      const o = ext && depth >= 2
        ? rng.pick([0xfa, 0xe1, 0xe0, 0xf8, 0xf5, 0xfd, 0xe5, 0xf4])
        : ext
        ? rng.pick([0xfa, 0xe1, 0xe0, 0xe5])
        : rng.pick([0xfa, 0xe1, 0xe0]);
      if (o === 0xf4 && depth >= 6) continue;
      if (o === 0xf4) depth++;
      bytes.push(0xd9, o);
      text.push(
        {
          0xfa: "fsqrt",
          0xe1: "fabs",
          0xe0: "fchs",
          0xf8: "fprem",
          0xf5: "fprem1",
          0xfd: "fscale",
          0xe5: "fxam",
          0xf4: "fxtract",
        }[
          o
        ] as string,
      );
    } else if (k === 6 && depth >= 2) { // fxch
      const j = 1 + rng.int(depth - 1);
      bytes.push(0xd9, 0xc8 + j);
      text.push(`fxch st${j}`);
    } else if (k === 7 && depth >= 1) { // compares
      const f = rng.int(3);
      if (f === 0) bytes.push(0xdc, ...m(2, X_IN + rng.int(16) * 8)), text.push("fcom m64");
      else {
        bytes.push(0xdb, (f === 1 ? 0xf0 : 0xe8) + i);
        text.push(f === 1 ? `fcomi st${i}` : `fucomi st${i}`);
        undef = 0; // FCOMI defines ZF/PF/CF and clears OF/SF/AF
      }
    } else if (k === 8 && depth >= 1) { // FIST/FISTP/FRNDINT under a rounding mode
      const rc = rng.int(4);
      bytes.push(0xd9, ...m(5, X_CW + rc * 2));
      const f = rng.int(ext ? 5 : 3);
      if (f === 0) bytes.push(0xd9, 0xfc), text.push(`frndint rc${rc}`);
      else if (f === 4 && depth < 6) { // FLDL2T/L2E/PI/LG2/LN2: rounded by RC
        const c = 0xe9 + rng.int(5);
        bytes.push(0xd9, c);
        text.push(`fldconst${c - 0xe8} rc${rc}`);
        depth++;
      } else if (f === 4) continue;
      else if (f === 3) { // FST m64 / m32 (extended mode): rounds a 64-bit value by RC
        const single = rng.int(2) === 1;
        bytes.push(single ? 0xd9 : 0xdd, ...m(2, X_OUT + rng.int(6) * 10));
        text.push(`fst m${single ? 32 : 64} rc${rc}`);
      } else if (ext && rng.int(3) === 0) { // FIST m16, FISTP m64 or FBSTP (into an output slot)
        if (f === 1) {
          bytes.push(0xdf, ...m(2, X_IOUT + rng.int(12) * 2)), text.push(`fist m16 rc${rc}`);
        } else if (rng.int(2) === 0) {
          bytes.push(0xdf, ...m(6, X_OUT + rng.int(6) * 10));
          text.push(`fbstp rc${rc}`);
          depth--;
        } else {
          bytes.push(0xdf, ...m(7, X_OUT + rng.int(6) * 10));
          text.push(`fistp m64 rc${rc}`);
          depth--;
        }
      } else {
        bytes.push(0xdb, ...m(f === 1 ? 2 : 3, X_IOUT + rng.int(6) * 4));
        text.push(`fist${f === 2 ? "p" : ""} rc${rc}`);
        if (f === 2) depth--;
      }
      bytes.push(0xd9, ...m(5, X_CW));
    } else if (k === 9 && depth >= 1 && ext) { // stores: m80 or m64 into a 10-byte slot
      const pop = rng.int(2) === 1, f80 = pop && rng.int(2) === 1;
      bytes.push(f80 ? 0xdb : 0xdd, ...m(f80 ? 7 : pop ? 3 : 2, X_OUT + rng.int(6) * 10));
      text.push(f80 ? "fstp m80" : pop ? "fstp m64" : "fst m64");
      if (pop) depth--;
    } else if (k === 9 && depth >= 1) { // stores
      const pop = rng.int(2) === 1;
      bytes.push(0xdd, ...m(pop ? 3 : 2, X_OUT + rng.int(8) * 8));
      text.push(pop ? "fstp m64" : "fst m64");
      if (pop) depth--;
    } else continue;
  }
  // status word (C0-C3 with C1 the round-up bit, TOP, every exception flag) into AX, then empty
  // the stack into the outputs
  bytes.push(0xdf, 0xe0);
  for (let k = 0; k < depth; k++) {
    if (ext) bytes.push(0xdb, ...m(7, X_OUT + k * 10));
    else bytes.push(0xdd, ...m(3, X_OUT + k * 8));
  }
  bytes.push(0xdb, 0xe3); // fninit: leave the host FPU as the ABI expects
  return { bytes, undef, text, eaxMask: 0x4700 | 0x3800 | 0x3f };
}

Deno.test({
  name: "cpu: x87 differential against the host FPU (double precision control)",
  ignore: !isX64,
  fn() {
    const SEQS = Number(Deno.env.get("CPU_DIFF_SEQS") ?? 3000);
    const { report, mismatches } = differential(
      SEQS,
      (rng) => x87Program(rng, 14),
      (rng) => x87Buf(rng, 2),
      (d, h) => x87Mem(d, h),
    );
    console.log(`x87 differential: ${SEQS - mismatches}/${SEQS} programs agree`);
    for (const r of report) console.log(`  ${r}`);
    deepStrictEqual(report, []);
  },
});

for (const [pc, what] of [[3, "extended, 64-bit"], [0, "single, 24-bit"]] as const) {
  Deno.test({
    name: `cpu: x87 differential against the host FPU (${what} precision control)`,
    ignore: !isX64,
    fn() {
      const SEQS = Number(Deno.env.get("CPU_DIFF_SEQS") ?? 3000);
      const { report, mismatches } = differential(
        SEQS,
        (rng) => x87Program(rng, 14, true),
        (rng) => x87Buf(rng, pc),
        (d, h) => x87Mem(d, h, true),
      );
      console.log(`x87 differential (PC=${pc}): ${SEQS - mismatches}/${SEQS} programs agree`);
      for (const r of report) console.log(`  ${r}`);
      deepStrictEqual(report, []);
    },
  });
}

function hex(n: number): string {
  return (n >>> 0).toString(16);
}
