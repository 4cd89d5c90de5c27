/**
 * x87 transcendental and exact-operation differential test against the host FPU: random 80-bit
 * operands (every rounding mode and precision control: only FSQRT heeds the latter) through FSIN, FCOS, FSINCOS, FPTAN,
 * FPATAN, F2XM1, FYL2X, FYL2XP1 (results within 1 ulp of the host's, status word equal) and
 * FSQRT, FPREM, FPREM1, FSCALE, FXTRACT (results bit-exact, status word equal). The same bytes
 * run natively (executable memory through Deno FFI, [rdi+disp8] operands) and on demu's CPU
 * (32-bit flat protected mode, [edi+disp8]).
 */

import { ok } from "node:assert/strict";
import { Cpu, ramOnlyBus } from "../emu/cpu/cpu.ts";
import { Rng } from "./rng.ts";
import { HostCode } from "./host_code.ts";

const isX64 = Deno.build.arch === "x86_64" && Deno.build.os === "linux";
if (!isX64) console.warn("WARNING: not an x86-64 Linux host: x87 transcendental test skipped");

/** An 80-bit operand: sign+exponent word and the 64-bit mantissa as hi/lo. */
interface X80 {
  se: number;
  hi: number;
  lo: number;
}

/** Buffer layout (offsets from EDI/RDI). */
const B_CW = 0, B_SW = 8, B_Y = 16, B_X = 32, B_OUT = 48;

interface Op {
  name: string;
  byte: number; // D9 xx
  /** Registers left on the stack (y and x loaded first). */
  left: number;
  exact: boolean;
  /** Operand generator: [y, x] */
  gen: (rng: Rng) => [X80, X80];
}

function num(rng: Rng, eMin: number, eMax: number, sign = rng.int(2)): X80 {
  const e = eMin + rng.int(eMax - eMin + 1);
  return { se: (sign << 15) | (e + 16383), hi: (rng.next() | 0x80000000) >>> 0, lo: rng.next() };
}

function fromNumber(v: number): X80 {
  const b = new DataView(new ArrayBuffer(8));
  b.setFloat64(0, v, true);
  const hi32 = b.getUint32(4, true), lo32 = b.getUint32(0, true);
  const sign = hi32 >>> 31;
  const exp = (hi32 >>> 20) & 0x7ff;
  if (exp === 0) return { se: sign << 15, hi: 0, lo: 0 }; // zeros only
  if (exp === 0x7ff) {
    return {
      se: (sign << 15) | 0x7fff,
      hi: 0x80000000 | (lo32 | (hi32 & 0xfffff) ? 0x40000000 : 0),
      lo: 0,
    };
  }
  return {
    se: (sign << 15) | (exp - 1023 + 16383),
    hi: (0x80000000 | ((hi32 & 0xfffff) << 11) | (lo32 >>> 21)) >>> 0,
    lo: (lo32 << 11) >>> 0,
  };
}

/** A special operand now and then: zeros, infinities, NaNs, denormals, 1.0. */
function special(rng: Rng, kinds = 6): X80 | null {
  if (rng.int(12) !== 0) return null;
  const s = rng.int(2) << 15;
  switch (rng.int(kinds)) {
    case 0:
      return { se: s, hi: 0, lo: 0 };
    case 1:
      return { se: s | 0x7fff, hi: 0x80000000, lo: 0 };
    case 2:
      return { se: s | 0x7fff, hi: (0xc0000000 | rng.int(1 << 20)) >>> 0, lo: rng.next() };
    case 3:
      return { se: s, hi: rng.next() >>> 1, lo: rng.next() }; // denormal
    case 4:
      return { se: 0x3fff, hi: 0x80000000, lo: 0 };
    default:
      return { se: s | 0x3fff, hi: 0x80000000, lo: 0 };
  }
}

function withSpecial(rng: Rng, v: X80, kinds = 6): X80 {
  return special(rng, kinds) ?? v;
}

const ANY = (rng: Rng) => num(rng, -30, 30);
/** Near a multiple of pi/2 (where the reduction with the 66-bit pi matters). */
function nearPiHalf(rng: Rng): X80 {
  const k = 1 + rng.int(rng.int(2) ? 8 : 100000);
  const v = fromNumber(k * Math.PI / 2);
  v.lo = (v.lo + rng.int(4096) - 2048) >>> 0;
  v.se |= rng.int(2) << 15;
  return v;
}

const trigArg = (rng: Rng): X80 => {
  const k = rng.int(10);
  if (k < 2) return nearPiHalf(rng);
  if (k < 3) return num(rng, 55, 66); // around the 2^63 range limit
  if (k < 4) return num(rng, -80, -20);
  return withSpecial(rng, num(rng, -8, 20));
};

const OPS: Op[] = [
  { name: "FSIN", byte: 0xfe, left: 2, exact: false, gen: (r) => [ANY(r), trigArg(r)] },
  { name: "FCOS", byte: 0xff, left: 2, exact: false, gen: (r) => [ANY(r), trigArg(r)] },
  { name: "FSINCOS", byte: 0xfb, left: 3, exact: false, gen: (r) => [ANY(r), trigArg(r)] },
  { name: "FPTAN", byte: 0xf2, left: 3, exact: false, gen: (r) => [ANY(r), trigArg(r)] },
  {
    name: "FPATAN",
    byte: 0xf3,
    left: 1,
    exact: false,
    gen: (r) => [withSpecial(r, num(r, -40, 40)), withSpecial(r, num(r, -40, 40))],
  },
  {
    name: "F2XM1",
    byte: 0xf0,
    left: 2,
    exact: false,
    gen: (
      r,
    ) => [
      ANY(r),
      withSpecial(r, r.int(20) === 0 ? fromNumber(r.int(2) ? 1 : -1) : num(r, -70, -1)),
    ],
  },
  {
    name: "FYL2X",
    byte: 0xf1,
    left: 1,
    exact: false,
    gen: (r) => {
      const k = r.int(4);
      const x = k === 0
        ? num(r, -1, 0, 0) // near 1
        : k === 1
        ? { se: 0x3fff + r.int(200) - 100, hi: 0x80000000, lo: 0 } // powers of two
        : num(r, -2000, 2000, r.int(40) === 0 ? 1 : 0);
      return [withSpecial(r, num(r, -20, 20)), withSpecial(r, x)];
    },
  },
  {
    name: "FYL2XP1",
    byte: 0xf9,
    left: 1,
    exact: false,
    // the domain is |x| < 1 - sqrt(2)/2: no +-1 among the special operands
    gen: (r) => [withSpecial(r, num(r, -20, 20)), withSpecial(r, num(r, -80, -3), 4)],
  },
  {
    name: "FSQRT",
    byte: 0xfa,
    left: 2,
    exact: true,
    gen: (r) => [ANY(r), withSpecial(r, num(r, -16000, 16000, r.int(30) === 0 ? 1 : 0))],
  },
  {
    name: "FPREM",
    byte: 0xf8,
    left: 2,
    exact: true,
    gen: (r) => [withSpecial(r, num(r, -20, 20)), withSpecial(r, num(r, -20, 100))],
  },
  {
    name: "FPREM1",
    byte: 0xf5,
    left: 2,
    exact: true,
    gen: (r) => [withSpecial(r, num(r, -20, 20)), withSpecial(r, num(r, -20, 100))],
  },
  {
    name: "FSCALE",
    byte: 0xfd,
    left: 2,
    exact: true,
    gen: (r) => [withSpecial(r, num(r, -2, 15)), withSpecial(r, num(r, -16000, 16000))],
  },
  {
    name: "FXTRACT",
    byte: 0xf4,
    left: 3,
    exact: true,
    gen: (r) => [ANY(r), withSpecial(r, num(r, -16000, 16000))],
  },
];

/** The program: fninit; fldcw; fld y; fld x; op; fnstsw; fstp each register left. */
function program(op: Op, end: number): number[] {
  const b = [0xdb, 0xe3, 0xd9, 0x6f, B_CW, 0xdb, 0x6f, B_Y, 0xdb, 0x6f, B_X, 0xd9, op.byte];
  b.push(0xdd, 0x7f, B_SW);
  for (let k = 0; k < op.left; k++) b.push(0xdb, 0x7f, B_OUT + 16 * k);
  b.push(end);
  return b;
}

function put(v: DataView, o: number, x: X80): void {
  v.setUint32(o, x.lo, true);
  v.setUint32(o + 4, x.hi, true);
  v.setUint16(o + 8, x.se, true);
}

function get(v: DataView, o: number): X80 {
  return { lo: v.getUint32(o, true), hi: v.getUint32(o + 4, true), se: v.getUint16(o + 8, true) };
}

function hex80(x: X80): string {
  return `${x.se.toString(16).padStart(4, "0")}:${x.hi.toString(16).padStart(8, "0")}${
    x.lo.toString(16).padStart(8, "0")
  }`;
}

/** Position of x on the number line of 80-bit values (consecutive values differ by 1). */
function ordinal(x: X80): bigint {
  const m = (BigInt(x.hi) << 32n) | BigInt(x.lo);
  const e = BigInt(x.se & 0x7fff);
  const o = e === 0n ? m : m + (e - 1n) * (1n << 63n);
  return (x.se & 0x8000) !== 0 ? -o : o;
}

function isNaN80(x: X80): boolean {
  return (x.se & 0x7fff) === 0x7fff && ((x.hi & 0x7fffffff) | x.lo) !== 0;
}

Deno.test({
  name: "cpu: x87 transcendentals within 1 ulp and exact operations bit-exact against the host FPU",
  ignore: !isX64,
  fn() {
    const N = Number(Deno.env.get("CPU_X87T_N") ?? 2000);
    const native = new HostCode();
    const { code, data, fn } = native;
    try {
      const codeBytes = new Uint8Array(code.buffer);
      const hv = new DataView(data.buffer);
      const ram = new Uint8Array(1 << 20);
      const dv = new DataView(ram.buffer);
      const cpu = new Cpu(ramOnlyBus(ram));
      const BUF = 0x8000;
      const rng = new Rng(Number(Deno.env.get("CPU_X87T_SEED") ?? 0x9e3779b9));
      const failures: string[] = [];
      const summary: string[] = [];
      let total = 0, bad = 0;
      for (const op of OPS) {
        let same = 0, ulp1 = 0, wrong = 0;
        const prog = program(op, 0xc3);
        codeBytes.set(prog);
        const dprog = program(op, 0xf4);
        for (let n = 0; n < N; n++) {
          const [y, x] = op.gen(rng);
          const cw = 0x7f | ([0, 2, 3][rng.int(3)] << 8) | (rng.int(4) << 10);
          // host
          new Uint8Array(data.buffer).fill(0xcc, 0, 128);
          hv.setUint16(B_CW, cw, true);
          put(hv, B_Y, y);
          put(hv, B_X, x);
          fn.call(data.pointer);
          // demu
          cpu.reset();
          cpu.cr0 |= 1;
          cpu.setSegCache(1, 8, 0, 0xffffffff, 0xc09b);
          for (const sg of [0, 2, 3, 4, 5]) cpu.setSegCache(sg, 16, 0, 0xffffffff, 0xc093);
          cpu.modeChanged();
          cpu.r32[4] = 0x7000;
          cpu.r32[7] = BUF;
          ram.fill(0xcc, BUF, BUF + 128);
          dv.setUint16(BUF + B_CW, cw, true);
          put(dv, BUF + B_Y, y);
          put(dv, BUF + B_X, x);
          ram.set(dprog, 0x1000);
          cpu.flushCode();
          cpu.eip = 0x1000;
          for (let k = 0; k < 10 && !cpu.halted; k++) cpu.run(100);
          // compare
          const hsw = hv.getUint16(B_SW, true), dsw = dv.getUint16(BUF + B_SW, true);
          let worst = 0;
          const errs: string[] = [];
          for (let k = 0; k < op.left; k++) {
            const h = get(hv, B_OUT + 16 * k), d = get(dv, BUF + B_OUT + 16 * k);
            if (h.se === d.se && h.hi === d.hi && h.lo === d.lo) continue;
            let diff = Infinity;
            if (isNaN80(h) || isNaN80(d)) diff = Infinity;
            else if ((h.se & 0x7fff) !== 0x7fff && (d.se & 0x7fff) !== 0x7fff) {
              const dd = ordinal(h) - ordinal(d);
              diff = Number(dd < 0n ? -dd : dd);
            }
            worst = Math.max(worst, diff);
            errs.push(`st${k}=${hex80(d)} host ${hex80(h)}`);
          }
          // C1 is the round-up bit: for the transcendentals it tells how the host's internal
          // approximation (not the exact value) was rounded, so it is compared for exact ops only
          const swMask = op.exact ? 0xffff : 0xffff & ~0x200;
          if ((hsw & swMask) !== (dsw & swMask)) {
            errs.push(`sw=${dsw.toString(16)} host ${hsw.toString(16)}`);
            worst = Infinity;
          }
          if (worst === 0) same++;
          else if (worst <= 1 && !op.exact) ulp1++;
          else {
            wrong++;
            if (wrong <= 5) {
              failures.push(
                `${op.name} pc${(cw >> 8) & 3} rc${(cw >> 10) & 3} y=${hex80(y)} x=${hex80(x)}: ${
                  errs.join("; ")
                }`,
              );
            }
          }
        }
        total += N;
        bad += wrong;
        summary.push(`${op.name} ${same} exact, ${ulp1} within 1 ulp, ${wrong} wrong`);
      }
      console.log(`x87 host differential (${N} per op): ${summary.join("; ")}`);
      for (const f of failures) console.log(`  ${f}`);
      ok(bad === 0, `${bad}/${total} disagree`);
    } finally {
      native.close();
    }
  },
});
