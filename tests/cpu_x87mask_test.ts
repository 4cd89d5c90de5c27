/**
 * x87 exception responses against the host FPU: random control words (every precision and
 * rounding control, masked and unmasked exceptions) and operands across
 * the whole extended range (zeros, infinities, NaNs, denormals, values that overflow and
 * underflow) through arithmetic, FSQRT, FSCALE, FPREM, FXTRACT, FRNDINT, compares, the
 * transcendentals and the stores to memory. After the operation only non-waiting instructions
 * run (FNSTSW, FNSAVE), so an unmasked exception stays pending on the host instead of trapping;
 * the status word, the saved control/status/tag words, the eight registers and the memory
 * destination are compared. Half the control words unmask a random set of exceptions: with an
 * unmasked invalid-operation, zero-divide or denormal exception the destination and the stack
 * stay as they were; with an unmasked overflow or underflow a register gets the result with its
 * exponent biased by 24576 and a memory destination is left alone.
 */

import { ok } from "node:assert/strict";
import { Cpu, ramOnlyBus } from "../emu/cpu/cpu.ts";
import { Rng } from "./rng.ts";
import { HostCode } from "./host_code.ts";

/** CPU_X87M_MASKED=1: every exception masked (the default responses only). */
const MASKED_ONLY = Deno.env.get("CPU_X87M_MASKED") === "1";
const isX64 = Deno.build.arch === "x86_64" && Deno.build.os === "linux";
if (!isX64) console.warn("WARNING: not an x86-64 Linux host: x87 exception response test skipped");

/** Buffer layout (offsets from EDI/RDI). */
const B_CW = 0x00, B_SW = 0x08, B_Y = 0x10, B_X = 0x20, B_MEM = 0x30, B_SAVE = 0x40;

const FLD1_X6 = [0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8, 0xd9, 0xe8];

/** The operation's bytes ([rdi+0x30] is the memory operand). */
const OPS: [string, number[]][] = [
  ["fadd st0,st1", [0xd8, 0xc1]],
  ["fsub st0,st1", [0xd8, 0xe1]],
  ["fmul st0,st1", [0xd8, 0xc9]],
  ["fdiv st0,st1", [0xd8, 0xf1]],
  ["faddp st1", [0xde, 0xc1]],
  ["fdivrp st1", [0xde, 0xf1]],
  ["fmulp st1", [0xde, 0xc9]],
  ["fadd m64", [0xdc, 0x47, B_MEM]],
  ["fdiv m32", [0xd8, 0x77, B_MEM]],
  ["fsqrt", [0xd9, 0xfa]],
  ["fscale", [0xd9, 0xfd]],
  ["fprem", [0xd9, 0xf8]],
  ["fxtract", [0xd9, 0xf4]],
  ["frndint", [0xd9, 0xfc]],
  ["fcomp st1", [0xd8, 0xd9]],
  ["fucompp", [0xda, 0xe9]],
  ["fsin", [0xd9, 0xfe]],
  ["fptan", [0xd9, 0xf2]],
  ["fpatan", [0xd9, 0xf3]],
  ["fyl2x", [0xd9, 0xf1]],
  ["f2xm1", [0xd9, 0xf0]],
  ["fst m32", [0xd9, 0x57, B_MEM]],
  ["fstp m64", [0xdd, 0x5f, B_MEM]],
  ["fstp m80", [0xdb, 0x7f, B_MEM]],
  ["fist m16", [0xdf, 0x57, B_MEM]],
  ["fistp m32", [0xdb, 0x5f, B_MEM]],
  ["fistp m64", [0xdf, 0x7f, B_MEM]],
  ["fbstp", [0xdf, 0x77, B_MEM]],
  ["fprem1", [0xd9, 0xf5]],
  ["fyl2xp1", [0xd9, 0xf9]],
  ["fcos", [0xd9, 0xff]],
  ["fsincos", [0xd9, 0xfb]],
  ["ftst", [0xd9, 0xe4]],
  ["fxam", [0xd9, 0xe5]],
  ["fiadd m32", [0xda, 0x47, B_MEM]],
  ["fisubr m16", [0xde, 0x6f, B_MEM]],
  ["fild m64", [0xdf, 0x6f, B_MEM]],
  ["fld m80", [0xdb, 0x6f, B_MEM]],
  ["fld m32", [0xd9, 0x47, B_MEM]],
  ["fld m64", [0xdd, 0x47, B_MEM]],
  ["fsubr m64", [0xdc, 0x6f, B_MEM]],
  ["fidiv m16", [0xde, 0x77, B_MEM]],
  ["fcom m32", [0xd8, 0x57, B_MEM]],
  ["fxch st2", [0xd9, 0xca]], // ST(2) empty: a stack underflow
  ["fstp st3", [0xdd, 0xdb]],
  ["fchs; fabs", [0xd9, 0xe0, 0xd9, 0xe1]],
  // six FLD1 fill the stack (8 registers): the operation then overflows it
  ["fsincos (full)", [...FLD1_X6, 0xd9, 0xfb]],
  ["fptan (full)", [...FLD1_X6, 0xd9, 0xf2]],
  ["fxtract (full)", [...FLD1_X6, 0xd9, 0xf4]],
  ["fld st1 (full)", [...FLD1_X6, 0xd9, 0xc1]],
];

/** The transcendentals: results may differ by an ulp (cpu_x87trans_test.ts), C1 not compared. */
const INEXACT = new Set([
  "fyl2xp1",
  "fcos",
  "fsincos",
  "fsin",
  "fptan",
  "fpatan",
  "fyl2x",
  "f2xm1",
  "fsincos (full)",
  "fptan (full)",
]);

/**
 * fninit; fld y; fld x; fnclex; fldcw; op; fnstsw; fnsave; end. (Only the op's last instruction
 * may raise an unmasked exception: a waiting instruction after it would trap on the host.)
 */
function program(op: number[], end: number): number[] {
  return [
    0xdb,
    0xe3,
    0xdb,
    0x6f,
    B_Y,
    0xdb,
    0x6f,
    B_X,
    0xdb,
    0xe2,
    0xd9,
    0x6f,
    B_CW,
    ...op,
    0xdd,
    0x7f,
    B_SW,
    0xdd,
    0x77,
    B_SAVE,
    end,
  ];
}

/** A random operand as its 10 bytes. */
function operand(rng: Rng, moderate: boolean): number[] {
  const s = rng.int(2) << 15;
  let se: number, hi: number, lo = rng.next();
  const k = rng.int(16);
  if (k === 0) [se, hi, lo] = [s, 0, 0];
  else if (k === 1) [se, hi, lo] = [s | 0x7fff, 0x80000000, 0];
  else if (k === 2) [se, hi] = [s | 0x7fff, (0xc0000000 | rng.int(1 << 28)) >>> 0]; // QNaN
  else if (k === 3) [se, hi] = [s, rng.next() >>> 1]; // denormal
  else if (k === 4) [se, hi, lo] = [s | 0x3fff, 0x80000000, 0]; // +-1
  else if (k < 9 || moderate) {
    [se, hi] = [s | (16383 + rng.int(141) - 70), (rng.next() | 0x80000000) >>> 0];
  } else if (k < 12) {
    // huge or tiny: products and quotients over- and underflow
    const e = rng.int(2) ? 16383 - rng.int(40) : 1 + rng.int(40);
    [se, hi] = [s | e, (rng.next() | 0x80000000) >>> 0];
  } else [se, hi] = [s | (1 + rng.int(0x7ffe)), (rng.next() | 0x80000000) >>> 0];
  const b = new DataView(new ArrayBuffer(10));
  b.setUint32(0, lo, true);
  b.setUint32(4, hi, true);
  b.setUint16(8, se, true);
  return Array.from(new Uint8Array(b.buffer));
}

/** A memory source operand: a double (fadd m64) or a single (fdiv m32), with specials. */
function memOperand(rng: Rng): number[] {
  const b = new DataView(new ArrayBuffer(16));
  const k = rng.int(8);
  if (k === 0) b.setUint32(0, rng.next() & 0x807fffff, true); // single denormal / zero
  else if (k === 1) b.setUint32(0, (rng.next() & 0x803fffff) | 0x7f800001, true); // SNaN m32
  else b.setUint32(0, rng.next(), true);
  if (k === 2) b.setUint32(4, rng.next() & 0x800fffff, true); // double denormal
  else if (k === 3) b.setUint32(4, (rng.next() & 0x8007ffff) | 0x7ff00000, true); // SNaN/inf
  else b.setUint32(4, rng.next(), true);
  for (let i = 8; i < 16; i++) b.setUint8(i, 0xcc);
  return Array.from(new Uint8Array(b.buffer));
}

/** Position of a 10-byte value on the number line of 80-bit values (neighbours differ by 1). */
function ordinal(a: Uint8Array): bigint {
  const v = new DataView(a.slice().buffer);
  const m = v.getBigUint64(0, true), se = v.getUint16(8, true);
  const e = BigInt(se & 0x7fff);
  const o = e === 0n ? m : m + (e - 1n) * (1n << 63n);
  return (se & 0x8000) !== 0 ? -o : o;
}

function hex(a: Uint8Array): string {
  return [...a].reverse().map((x) => x.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name: "cpu: x87 exception responses, masked and unmasked, agree with the host FPU",
  ignore: !isX64,
  fn() {
    const N = Number(Deno.env.get("CPU_X87M_N") ?? 800);
    const native = new HostCode();
    const { code, data, fn } = native;
    try {
      const codeBytes = new Uint8Array(code.buffer);
      const host = new Uint8Array(data.buffer, 0, 256);
      const ram = new Uint8Array(1 << 20);
      const BUF = 0x8000;
      const demu = ram.subarray(BUF, BUF + 256);
      const cpu = new Cpu(ramOnlyBus(ram));
      const rng = new Rng(Number(Deno.env.get("CPU_X87M_SEED") ?? 0x1234567));
      const failures: string[] = [];
      const summary: string[] = [];
      let bad = 0, total = 0;
      for (const [name, op] of OPS) {
        codeBytes.set(program(op, 0xc3));
        const dprog = program(op, 0xf4);
        const moderate = INEXACT.has(name);
        let wrong = 0;
        for (let n = 0; n < N; n++) {
          const buf = new Uint8Array(256).fill(0xcc);
          const masks = rng.int(2) || MASKED_ONLY ? 0x3f : rng.int(64);
          const cw = 0x40 | masks | ([0, 2, 3][rng.int(3)] << 8) | (rng.int(4) << 10);
          buf[B_CW] = cw & 0xff;
          buf[B_CW + 1] = cw >> 8;
          buf.set(operand(rng, moderate), B_Y);
          const x = operand(rng, moderate);
          // FYL2XP1 is defined for |x| < 1 - sqrt(2)/2 only (the hardware's result beyond is
          // arbitrary): a finite x is brought below 1/4
          const xe = (x[8] | (x[9] << 8)) & 0x7fff;
          if (name === "fyl2xp1" && xe !== 0x7fff && xe > 0x3ffc) {
            x[8] = 0xfc - rng.int(60);
            x[9] = (x[9] & 0x80) | 0x3f;
          }
          buf.set(x, B_X);
          buf.set(memOperand(rng), B_MEM);
          // host
          host.set(buf);
          fn.call(data.pointer);
          // demu: 32-bit flat protected mode, EDI = the buffer
          cpu.reset();
          cpu.cr0 |= 1;
          cpu.setSegCache(1, 8, 0, 0xffffffff, 0xc09b);
          for (const sg of [0, 2, 3, 4, 5]) cpu.setSegCache(sg, 16, 0, 0xffffffff, 0xc093);
          cpu.modeChanged();
          cpu.r32[4] = 0x7000;
          cpu.r32[7] = BUF;
          demu.set(buf);
          ram.set(dprog, 0x1000);
          cpu.flushCode();
          cpu.eip = 0x1000;
          for (let k = 0; k < 10 && !cpu.halted; k++) cpu.run(100);
          // compare: FNSTSW, the memory operand, FNSAVE's control/status/tag words, registers
          const errs: string[] = [];
          const c1 = moderate ? ~0x200 : ~0;
          const w = (a: Uint8Array, o: number) => a[o] | (a[o + 1] << 8);
          if ((w(host, B_SW) & c1) !== (w(demu, B_SW) & c1)) {
            errs.push(`sw=${w(demu, B_SW).toString(16)} host ${w(host, B_SW).toString(16)}`);
          }
          for (const [what, o, len] of [["mem", B_MEM, 16], ["tag", B_SAVE + 8, 2]] as const) {
            const a = demu.subarray(o, o + len), b = host.subarray(o, o + len);
            if (!a.every((x, j) => x === b[j])) errs.push(`${what}=${hex(a)} host ${hex(b)}`);
          }
          const top = (w(host, B_SAVE + 4) >> 11) & 7, tags = w(host, B_SAVE + 8);
          for (let r = 0; r < 8; r++) {
            // an empty register's bytes are whatever the register held before: not compared
            if (((tags >> (((top + r) & 7) * 2)) & 3) === 3) continue;
            const o = B_SAVE + 28 + r * 10;
            const a = demu.subarray(o, o + 10), b = host.subarray(o, o + 10);
            if (a.every((x, j) => x === b[j])) continue;
            if (moderate) {
              // an ulp apart: neighbours on the line of 80-bit values (finite, same sign)
              const d = ordinal(a) - ordinal(b);
              if ((w(a, 8) & 0x7fff) !== 0x7fff && (w(b, 8) & 0x7fff) !== 0x7fff) {
                if (d === 1n || d === -1n) continue;
              }
            }
            errs.push(`st${r}=${hex(a)} host ${hex(b)}`);
          }
          if (errs.length) {
            wrong++;
            if (wrong <= 4) {
              failures.push(
                `${name} cw=${cw.toString(16)} y=${hex(buf.subarray(B_Y, B_Y + 10))} x=${
                  hex(buf.subarray(B_X, B_X + 10))
                } m=${hex(buf.subarray(B_MEM, B_MEM + 8))}: ${errs.join("; ")}`,
              );
            }
          }
        }
        total += N;
        bad += wrong;
        if (wrong) summary.push(`${name} ${wrong}`);
      }
      console.log(
        `x87 exception responses: ${total - bad}/${total} agree${
          summary.length ? ` (disagreeing: ${summary.join(", ")})` : ""
        }`,
      );
      for (const f of failures) console.log(`  ${f}`);
      ok(bad === 0, `${bad}/${total} disagree`);
    } finally {
      native.close();
    }
  },
});
