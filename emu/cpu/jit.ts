/**
 * The block compiler: a block that the threaded-code loop ran often enough becomes one JS
 * function. Instructions with a generated handler (fast.ts) are inlined with their operand fields
 * folded in as constants (register indices, immediates, the address arithmetic); every other
 * instruction calls its handler as the loop would. Memory operands get the TLB fast path and
 * the segment limit check written out (the cpu.ts methods stay the slow path), and lazy-flag
 * stores that a later register-only instruction overwrites unseen are dropped. The compiled
 * function keeps the loop's rules: EIP is set before the last instruction and before each side
 * exit (a Jcc inside the block) only, a handler that sets blockExit ends the block after
 * itself, and a fault reports which record raised it (cpu.jk) so that EIP is restored exactly
 * as for the loop. Semantics therefore stay those of the handlers.
 * @module
 */

import type { Cpu } from "./cpu.ts";
import { eaSource } from "./decode.ts";
import { H, handlerBody } from "./fast.ts";
import type { Block, Instr } from "./instr.ts";

/** A compiled block: runs from EIP `base`; returns the number of records run. */
export type BlockFn = (cpu: Cpu, ins: Instr[], base: number) => number;

/**
 * Runs through the loop before a block is compiled. High: a new JS function starts in V8's
 * bytecode interpreter and pays for its own compiles, which only a block run tens of thousands
 * of times earns back (Linux boot, CPU seconds to the marker: 48 -> 29, 2000 -> 22,
 * 20000 -> 20, never -> 34). DEMU_JIT_AFTER overrides it (1 compiles
 * every block at once: the CPU tests then check compiled code; 0 turns the compiler off).
 */
export const JIT_THRESHOLD: number = envThreshold() ?? 20000;

function envThreshold(): number | undefined {
  try {
    const q = Deno.permissions.querySync({ name: "env", variable: "DEMU_JIT_AFTER" });
    if (q.state !== "granted") return undefined; // never prompt
    const v = Deno.env.get("DEMU_JIT_AFTER");
    return v === undefined ? undefined : Number(v) > 0 ? Number(v) : Infinity;
  } catch {
    return undefined; // no --allow-env
  }
}

const FIELD = /\bi\.(rm|reg|imm2|imm|base|index|scale|disp|rmN|regN|accN|seg|op)\b/g;
/** Calls that may touch memory or devices (and so set blockExit or fault). */
const IMPURE = /cpu\.(rd|wr|push|pop|lin|peek|io|fault|limitFault)/;

function literal(v: number): string {
  return v < 0 ? `(${v})` : `${v}`;
}

/**
 * The TLB fast paths of cpu.ts's rd8/rd16/rd32, rdw8/16/32 and wr8/16/32 written out for the
 * address in local `a` (T and X are scratch locals); the slow path is the method itself.
 */
function readInline(kind: string, size: string, a: string, ram32: boolean): string | null {
  const tlb = kind === "rdw" ? "cpu.tlbW" : "cpu.tlbR";
  const e = `(T = ${tlb}[(${a} >>> 12) | cpu.tlbUser]) !== 0`;
  const call = `cpu.${kind}${size}(${a})`;
  if (size === "8") return `(${e} ? cpu.ram[(T - 1) * 4096 + (${a} & 0xfff)] : ${call})`;
  if (size === "16") {
    return `(${e} && (${a} & 0xfff) !== 0xfff ? (X = (T - 1) * 4096 + (${a} & 0xfff), ` +
      `cpu.ram[X] | (cpu.ram[X + 1] << 8)) : ${call})`;
  }
  if (!ram32) return null;
  return `(${e} && (${a} & 3) === 0 ? cpu.ram32[(T - 1) * 1024 + ((${a} & 0xfff) >>> 2)] : ${call})`;
}

function writeInline(size: string, a: string, v: string, ram32: boolean): string | null {
  const e = `(T = cpu.tlbW[(${a} >>> 12) | cpu.tlbUser]) !== 0`;
  if (size === "8") {
    return `{ const V = ${v}; if (${e}) cpu.ram[(T - 1) * 4096 + (${a} & 0xfff)] = V; ` +
      `else cpu.wr8(${a}, V); }`;
  }
  if (size === "16") {
    return `{ const V = ${v}; if (${e} && (${a} & 0xfff) !== 0xfff) { X = (T - 1) * 4096 + ` +
      `(${a} & 0xfff); cpu.ram[X] = V; cpu.ram[X + 1] = V >> 8; } else cpu.wr16(${a}, V); }`;
  }
  if (!ram32) return null;
  return `{ const V = ${v}; if (${e} && (${a} & 3) === 0) ` +
    `cpu.ram32[(T - 1) * 1024 + ((${a} & 0xfff) >>> 2)] = V; else cpu.wr32(${a}, V); }`;
}

/** Index of the parenthesis closing the one opened just before `from`, or -1. */
function closing(s: string, from: number): number {
  let depth = 1;
  for (let p = from; p < s.length; p++) {
    if (s[p] === "(") depth++;
    else if (s[p] === ")" && --depth === 0) return p;
  }
  return -1;
}

/** Writes memory accesses at the address locals (A<k>, lin) of `c` out inline. */
function inlineMemory(c: string, ram32: boolean): string {
  c = c.replace(
    /cpu\.(rdw|rd)(8|16|32)\((A\d+|lin)\)/g,
    (m, kind, size, a) => readInline(kind, size, a, ram32) ?? m,
  );
  for (let from = 0;;) {
    const m = /cpu\.wr(8|16|32)\((A\d+|lin), /g;
    m.lastIndex = from;
    const r = m.exec(c);
    if (r === null) break;
    const open = r.index + r[0].length;
    const close = closing(c, open);
    if (close < 0 || c[close + 1] !== ";") break;
    const w = writeInline(r[1], r[2], c.slice(open, close), ram32);
    if (w === null) {
      from = close;
      continue;
    }
    c = c.slice(0, r.index) + w + c.slice(close + 2);
    from = r.index + w.length;
  }
  return c;
}

/** The inlined form of record `i` (index k), or null when it has to call its handler. */
function inline(i: Instr, k: number, ram32: boolean): { code: string; pure: boolean } | null {
  const body = handlerBody(i.fn);
  if (body === undefined) return null;
  let c = body;
  let pre = "";
  if (c.includes("i.ea(cpu, i)")) {
    // the address first (nothing a body does before using it has an effect), then the
    // accesses through it written out
    const ea = eaSource(i);
    if (ea === null) return null;
    pre = `const A${k} = ${ea};\n`;
    c = c.replaceAll("i.ea(cpu, i)", `A${k}`);
  }
  c = c.replace(/\breturn;/g, `break L${k};`);
  if (/\breturn\b/.test(c)) return null;
  c = c.replace(FIELD, (_m, f: string) => literal((i as unknown as Record<string, number>)[f]));
  if (/\bi\b/.test(c)) return null; // a field not folded: keep the handler
  if (pre !== "") c = inlineMemory(c, ram32);
  return { code: `L${k}: {\n${pre}${c}\n}\n`, pure: !IMPURE.test(pre + c) };
}

/** Assignments to the lazy-flag record in inlined code. */
const FLAG_STORE = /cpu\.(la|lb|lr|lsz|lop|lcin) = [^;]*;/g;
/** Code that reads the flags (evaluates them, or reads the record or EFLAGS), or calls out. */
const FLAG_READ =
  /cpu\.(cf|zf|sf|of|pf|af|cond|getFlags|materialize)\(|\bH\.|cpu\.(la|lb|lr|lsz|lop|lcin|eflags)\b(?!\s*=[^=])/;

/**
 * Removes stores to the lazy-flag record that a later instruction of the block overwrites with
 * nothing in between that could observe them: only inlined register-only instructions (no
 * memory, so no fault and no early exit), no side exit, nothing reading the flags. The record
 * after such a run is the same; so is any state an exception or the block's end could see.
 */
function dropDeadFlagStores(ins: Instr[], ils: ({ code: string; pure: boolean } | null)[]) {
  let dead = new Set<string>(); // fields overwritten further on before anything can see them
  for (let k = ins.length - 1; k >= 0; k--) {
    const il = ils[k];
    if (il === null || !il.pure || ins[k].exit || k === ins.length - 1) {
      dead = new Set();
      continue;
    }
    const writes = [...il.code.matchAll(FLAG_STORE)].map((m) => m[1]);
    if (dead.size !== 0) {
      il.code = il.code.replace(FLAG_STORE, (m, f: string) => (dead.has(f) ? "" : m));
    }
    // a body reads before it writes: one that reads makes every earlier store visible; one
    // that may skip its stores (a shift by zero leaves the flags) overwrites nothing for sure
    if (FLAG_READ.test(il.code)) dead = new Set();
    else if (!/\bbreak L/.test(il.code)) { for (const f of writes) dead.add(f); }
  }
}

/** Compiles block `b` (decoded for code32 = `code32`). */
export function compileBlock(b: Block, code32: number, ram32: boolean): BlockFn {
  const ins = b.ins;
  const last = ins.length - 1;
  const mask = code32 ? "-1" : "0xffff";
  const ils = ins.map((i, k) => inline(i, k, ram32));
  dropDeadFlagStores(ins, ils);
  let src = "let k = 0, T = 0, X = 0, O = 0;\ntry {\n";
  for (let k = 0; k <= last; k++) {
    const i = ins[k];
    src += `k = ${k};\n`;
    if (k === last) src += `cpu.eip = (base + ${i.end}) & ${mask};\n`;
    const il = ils[k];
    if (i.exit && k < last) {
      // a side exit: EIP = the next instruction; a taken jump ends the block
      src += `const f${k} = (base + ${i.end}) & ${mask};\ncpu.eip = f${k};\n`;
      src += il !== null ? il.code : `I[${k}].fn(cpu, I[${k}]);\n`;
      src += `if ((cpu.eip | 0) !== (f${k} | 0)) return ${k + 1};\n`;
      continue;
    }
    src += il !== null ? il.code : `I[${k}].fn(cpu, I[${k}]);\n`;
    if (k < last && (il === null || !il.pure)) {
      src += `if (cpu.blockExit) { cpu.eip = (base + ${i.end}) & ${mask}; return ${k + 1}; }\n`;
    }
  }
  src += `return ${last + 1};\n} catch (e) {\ncpu.jk = k;\nthrow e;\n}\n`;
  return new Function("H", `return function (cpu, I, base) {\n${src}};`)(H) as BlockFn;
}
