/**
 * The block compiler: a block that the threaded-code loop ran often enough becomes one JS
 * function. Instructions with a generated handler (fast.ts) are inlined with their operand fields
 * folded in as constants (register indices, immediates, the address arithmetic); every other
 * instruction calls its handler as the loop would. Memory operands get the TLB fast path and
 * the segment limit check written out (the cpu.ts methods stay the slow path), and lazy-flag
 * stores that a later register-only instruction overwrites unseen are dropped. Runs of inlined
 * records keep the general registers in JS locals; segments that are flat when the block is
 * compiled (base 0, limit 4G) skip the base and limit arithmetic behind an entry check, and
 * with paging off RAM above 1 MiB is reached without the TLB; an inlined jump inside the block
 * returns straight from its taken branch. The compiled
 * function keeps the loop's rules: EIP is set before the last instruction and before each side
 * exit (a Jcc inside the block) only, a handler that sets blockExit ends the block after
 * itself, and before any call that may fault the block leaves the state the fault needs (the
 * registers and flags, which record it is: cpu.jk, cpu.jx) so that EIP and the count are
 * restored exactly as for the loop. Semantics therefore stay those of the handlers.
 * @module
 */

import type { Cpu } from "./cpu.ts";
import { eaSource, MAX_BLOCK } from "./decode.ts";
import { flagFormulas, H, handlerBody } from "./fast.ts";
import type { Block, Instr } from "./instr.ts";
import { LOP_ADD, LOP_LOGIC, LOP_RESULT, LOP_SUB } from "./flags.ts";

/**
 * A compiled block: runs from EIP `base`; returns the number of instructions retired, or -1
 * (having run nothing) when a segment it was compiled for as flat is no longer flat. `lim` is
 * what is left of the slice's budget: a block that loops inside itself or jumps forward inside
 * itself stops where the loop would have stopped between blocks.
 */
export type BlockFn = (cpu: Cpu, ins: Instr[], base: number, lim: number) => number;

/** The segment state a block is compiled for. */
export interface FlatSegments {
  /** cpu.ts's flatMask: which segments are flat (base 0, limit 4G) for reads and for writes. */
  flatMask: number;
  /** The stack pointer's mask (-1: ESP, 0xffff: SP). */
  spMask: number;
  /**
   * Linear addresses are physical (paging off, A20 on) and accesses need no TLB for anything
   * else (no data breakpoints, no alignment checks): RAM above 1 MiB is accessed directly.
   */
  direct: boolean;
}

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
/** The slow paths of inlined memory accesses (they set S) and the segment checks of addresses. */
const SLOW = /S = 1[,;] cpu\.(rdw|rd|wr)(8|16|32)\(|cpu\.lin[RW]\(|cpu\.limitFault\(/g;
/** Calls that may touch memory or devices (and so set blockExit or fault). */
const IMPURE = /cpu\.(rd|wr|push|pop|lin|peek|io|fault|limitFault)/;

function literal(v: number): string {
  return v < 0 ? `(${v})` : `${v}`;
}

/**
 * The TLB fast paths of cpu.ts's rd8/rd16/rd32, rdw8/16/32 and wr8/16/32 written out for the
 * address in local `a` (T and X are scratch locals); the slow path is the method itself. With
 * `direct` (the block runs with paging off and A20 on, so linear addresses are physical) an
 * address in the plain RAM above 1 MiB (cpu.directSpan bytes of it) is read, and written where
 * no decoded code lies, without the TLB; others take the TLB path.
 */
function readInline(
  kind: string,
  size: string,
  a: string,
  ram32: boolean,
  direct = false,
): string | null {
  const tlb = kind === "rdw" ? "cpu.tlbW" : "cpu.tlbR";
  const e = `(T = ${tlb}[(${a} >>> 12) | cpu.tlbUser]) !== 0`;
  const call = `(S = 1, cpu.${kind}${size}(${a}))`;
  // a write-intent read (rdw) of a direct address: the write after it checks for code
  const win = `(${a} - 1048576) >>> 0 < cpu.directSpan`;
  if (size === "8") {
    const t = `(${e} ? cpu.ram[(T - 1) * 4096 + (${a} & 0xfff)] : ${call})`;
    return direct ? `(${win} ? cpu.ram[${a}] : ${t})` : t;
  }
  if (size === "16") {
    const t = `(${e} && (${a} & 0xfff) !== 0xfff ? (X = (T - 1) * 4096 + (${a} & 0xfff), ` +
      `cpu.ram[X] | (cpu.ram[X + 1] << 8)) : ${call})`;
    return direct
      ? `(${win} && (${a} & 0xfff) !== 0xfff ? cpu.ram[${a}] | (cpu.ram[${a} + 1] << 8) : ${t})`
      : t;
  }
  if (!ram32) return null;
  const t =
    `(${e} && (${a} & 3) === 0 ? cpu.ram32[(T - 1) * 1024 + ((${a} & 0xfff) >>> 2)] : ${call})`;
  return direct ? `(${win} && (${a} & 3) === 0 ? cpu.ram32[${a} >>> 2] : ${t})` : t;
}

function writeInline(
  size: string,
  a: string,
  v: string,
  ram32: boolean,
  direct = false,
): string | null {
  const e = `(T = cpu.tlbW[(${a} >>> 12) | cpu.tlbUser]) !== 0`;
  const win = direct
    ? `(${a} - 1048576) >>> 0 < cpu.directSpan && cpu.codePage[${a} >>> 12] === 0`
    : "";
  if (size === "8") {
    const d = direct ? `if (${win}) cpu.ram[${a}] = V; else ` : "";
    return `{ const V = ${v}; ${d}if (${e}) cpu.ram[(T - 1) * 4096 + (${a} & 0xfff)] = V; ` +
      `else { S = 1; cpu.wr8(${a}, V); } }`;
  }
  if (size === "16") {
    const d = direct
      ? `if (${win} && (${a} & 0xfff) !== 0xfff) { cpu.ram[${a}] = V; cpu.ram[${a} + 1] = V >> 8; } else `
      : "";
    return `{ const V = ${v}; ${d}if (${e} && (${a} & 0xfff) !== 0xfff) { X = (T - 1) * 4096 + ` +
      `(${a} & 0xfff); cpu.ram[X] = V; cpu.ram[X + 1] = V >> 8; } else { S = 1; cpu.wr16(${a}, V); } }`;
  }
  if (!ram32) return null;
  const d = direct ? `if (${win} && (${a} & 3) === 0) cpu.ram32[${a} >>> 2] = V; else ` : "";
  return `{ const V = ${v}; ${d}if (${e} && (${a} & 3) === 0) ` +
    `cpu.ram32[(T - 1) * 1024 + ((${a} & 0xfff) >>> 2)] = V; else { S = 1; cpu.wr32(${a}, V); } }`;
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
function inlineMemory(c: string, ram32: boolean, direct: boolean): string {
  c = c.replace(
    /cpu\.(rdw|rd)(8|16|32)\((A\d+|lin)\)/g,
    (m, kind, size, a) => readInline(kind, size, a, ram32, direct) ?? m,
  );
  for (let from = 0;;) {
    const m = /cpu\.wr(8|16|32)\((A\d+|lin), /g;
    m.lastIndex = from;
    const r = m.exec(c);
    if (r === null) break;
    const open = r.index + r[0].length;
    const close = closing(c, open);
    if (close < 0 || c[close + 1] !== ";") break;
    const w = writeInline(r[1], r[2], c.slice(open, close), ram32, direct);
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
function inline(
  i: Instr,
  k: number,
  ram32: boolean,
  flat?: (seg: number, write: boolean) => boolean,
  stack?: () => boolean,
  direct = false,
): { code: string; pure: boolean } | null {
  const body = handlerBody(i.fn);
  if (body === undefined) return null;
  let c = body;
  let pre = "";
  if (/cpu\.(push32|pop32)\(/.test(c) && ram32 && stack !== undefined && stack()) {
    // a flat 32-bit stack: cpu.ts's push32/pop32 written out (ESP moves after the access, so
    // that a fault leaves it as it was)
    c = c.replace(
      /cpu\.push32\(([^;]*)\);/g,
      (_m, v: string) =>
        `{ const V${k} = ${v}; P = (cpu.r32[4] - 4) | 0; ` +
        `if ((P >>> 0) > 4294967292) cpu.limitFault(2, P >>> 0, 3, true); ` +
        `${writeInline("32", "P", `V${k}`, true, direct)} cpu.r32[4] = P; }`,
    );
    c = c.replace(
      /cpu\.pop32\(\)/g,
      `(P = cpu.r32[4], (P >>> 0) > 4294967292 ? cpu.limitFault(2, P >>> 0, 3, false) : 0, ` +
        `Y = ${readInline("rd", "32", "P", true, direct)}, cpu.r32[4] = (P + 4) | 0, Y)`,
    );
  }
  if (c.includes("i.ea(cpu, i)")) {
    // the address first (nothing a body does before using it has an effect), then the
    // accesses through it written out
    const ea = eaSource(i, flat);
    if (ea === null) return null;
    pre = `const A${k} = ${ea};\n`;
    c = c.replaceAll("i.ea(cpu, i)", `A${k}`);
  }
  c = c.replace(/\breturn;/g, `break L${k};`);
  if (/\breturn\b/.test(c)) return null;
  c = c.replace(FIELD, (_m, f: string) => literal((i as unknown as Record<string, number>)[f]));
  if (/\bi\b/.test(c)) return null; // a field not folded: keep the handler
  // a shift by a constant count that is not zero always shifts (and sets the flags)
  const count = /^const c = (\d+)(?: & 31)?;/.exec(c);
  if (count !== null && (Number(count[1]) & 31) !== 0) {
    c = c.replace(/ if \(c === 0\) break L\d+;/, "");
  }
  if (pre !== "") c = inlineMemory(c, ram32, direct);
  return { code: `L${k}: {\n${pre}${c}\n}\n`, pure: !IMPURE.test(pre + c) };
}

/** Assignments to the lazy-flag record in inlined code. */
const FLAG_STORE = /cpu\.(la|lb|lr|lsz|lop|lcin) = [^;]*;/g;
/** A flag writer whose record stays in locals: F<field><k> hold what cpu.<field> would. */
interface Writer {
  k: number;
  lop: number;
  lsz: number;
  /** It sets lcin too (the lop's flags depend on it). */
  cin: boolean;
  /** It sets la and lb (a LOP_RESULT record needs only lr and lcin). */
  ab: boolean;
}

/** Reads of the four flags a Jcc needs. */
const FLAG_GET = /cpu\.(cf|zf|sf|of)\(\)/g;
/** Anything else that reads or writes the flag state (helpers, handlers' flag methods). */
const FLAG_OTHER =
  /\bH\.|cpu\.(pf|af|getFlags|materialize|setFlags\w*|cond)\(|cpu\.(la|lb|lr|lsz|lop|lcin|eflags)\b/;

/** The stores that put writer `w`'s record into the CPU (none for no writer). */
function flagWriteBack(w: Writer | null): string {
  if (w === null) return "";
  const k = w.k;
  return `${w.ab ? `cpu.la = Fla${k}; cpu.lb = Flb${k}; ` : ""}cpu.lr = Flr${k}; ` +
    `cpu.lsz = ${w.lsz}; cpu.lop = ${w.lop};${w.cin ? ` cpu.lcin = Flcin${k};` : ""}\n`;
}

/** CF, ZF, SF or OF of writer `w`'s record, evaluated from its locals. */
function flagExpr(f: string, w: Writer): string {
  const k = w.k;
  const n = { a: `Fla${k}`, b: `Flb${k}`, r: `Flr${k}`, carry: `Flcin${k}`, lcin: `Flcin${k}` };
  return flagFormulas(w.lop, w.lsz, n)![f as "cf" | "of" | "zf" | "sf"];
}

/**
 * Keeps the lazy-flag record in locals: an inlined record that sets the whole record with a
 * known operation and size (and nothing else touching the flags) assigns F<field><k> instead of
 * the CPU's fields, and the CF/ZF/SF/OF reads after it evaluate those locals directly. The CPU's
 * fields get the pending writer's values before anything that reads them (a handler, a helper,
 * PF/AF/EFLAGS), before every return and before a call that may fault (withSync): a fault
 * inside a writer leaves the record as the writer before it set it. Rewrites `ils` in place; returns per record
 * the write-back to put before it, the pending writer before it and after it, and for the
 * targets of jumps inside the block (`joins`, where nothing is pending) the write-back that ends
 * the path falling through to them.
 */
function deferFlags(ils: ({ code: string; pure: boolean } | null)[], joins: Set<number>) {
  const before: string[] = [], at: (Writer | null)[] = [], after: (Writer | null)[] = [];
  const join: string[] = [];
  let pending: Writer | null = null;
  for (let k = 0; k < ils.length; k++) {
    // a record that a jump inside the block skips to: the record is written back on the way
    // in that falls through (a jump over it writes back before it jumps)
    join.push(joins.has(k) ? flagWriteBack(pending) : "");
    if (joins.has(k)) pending = null;
    at.push(pending);
    const il = ils[k];
    let wb = "";
    if (il === null) {
      wb = flagWriteBack(pending);
      pending = null;
    } else {
      let c = il.code;
      const stores = [...c.matchAll(FLAG_STORE)];
      // a read inside the first store (lcin = cf()) still sees the writer before
      const first = stores.length === 0 ? Infinity : stores[0].index! + stores[0][0].length;
      const selfRead = [...c.matchAll(FLAG_GET)].some((g) => g.index! >= first);
      if (selfRead || FLAG_OTHER.test(c.replace(FLAG_STORE, ""))) {
        wb = flagWriteBack(pending);
        pending = null;
      } else {
        if (pending !== null) {
          const w: Writer = pending;
          c = c.replace(FLAG_GET, (_m, f: string) => flagExpr(f, w));
        }
        if (stores.length !== 0) {
          const set = new Map<string, string>();
          for (const m of stores) set.set(m[1], m[0].slice(m[0].indexOf("=") + 1, -1).trim());
          const lop = Number(set.get("lop")), lsz = Number(set.get("lsz"));
          const cin = set.has("lcin");
          const needCin = lop !== LOP_ADD && lop !== LOP_SUB && lop !== LOP_LOGIC;
          const ab = set.has("la") && set.has("lb");
          const ok = set.size === stores.length && !/\bbreak L/.test(c) && set.has("lr") &&
            (ab || lop === LOP_RESULT) && Number.isInteger(lop) &&
            lop >= LOP_ADD && lop <= LOP_RESULT && (lsz === 0 || lsz === 1 || lsz === 2) &&
            (cin || !needCin);
          if (ok) {
            c = c.replace(
              FLAG_STORE,
              (m, f: string) =>
                f === "lop" || f === "lsz" ? "" : `F${f}${k} =${m.slice(m.indexOf("=") + 1)}`,
            );
            pending = { k, lop, lsz, cin, ab };
          } else {
            wb = flagWriteBack(pending);
            pending = null;
            c = il.code; // the CPU's fields are current before it: its own reads stay
          }
        }
      }
      il.code = c;
    }
    before.push(wb);
    after.push(pending);
  }
  return { before, at, after, join };
}

/** A relative jump's taken branch in a handler body: `cpu.eip = (cpu.eip + imm) & mask;`. */
const TAKEN = /cpu\.eip = \(cpu\.eip \+ (\(-\d+\)|\d+)\) (>>> 0|& 0xffff);/;

/** The TAKEN statement of inlined code when it is the code's last statement, or null. */
function takenAtEnd(code: string): RegExpExecArray | null {
  const t = TAKEN.exec(code);
  return t !== null && code.slice(t.index + t[0].length).trim() === "}" ? t : null;
}

/** A general register read or written by index: `cpu.r32[n]`. */
const REG = /\bcpu\.r32\[(\d)\]/g;
const REG_WRITE = /\bcpu\.r32\[(\d)\]\s*(?:[-+*|&^]|<<|>>>?)?=(?!=)/g;

/**
 * Inlined register-only code that reaches the registers through `cpu.r32[n]` alone (the
 * `const R = cpu.r32` of a template resolved), or null: such records keep registers in locals.
 */
function registerForm(code: string): string | null {
  const view = /\bconst R = cpu\.(r32|r16|r8);/.exec(code);
  if (view !== null) {
    code = code.replace(view[0], "").replace(/\bR\[/g, `cpu.${view[1]}[`);
  }
  if (/\bR\b/.test(code)) return null;
  const wide = narrowToWide(code);
  if (wide === null) return null;
  code = wide;
  if (code.replace(REG, "").includes("cpu.r32")) return null;
  return code;
}

/**
 * Rewrites byte and word register accesses with literal indices (`cpu.r8[5]`, `cpu.r16[4] = e;`)
 * as the same bits of `cpu.r32[n]` (the views alias it, little-endian), or null when one has
 * another form.
 */
function narrowToWide(code: string): string | null {
  // indices the templates compute from folded fields: `cpu.r8[((5 & 3) << 2) | (5 >> 2)]`
  code = code.replace(
    /cpu\.(r8|r16)\[([\d\s()&|<>+]+)\]/g,
    (_m, v: string, e: string) => `cpu.${v}[${new Function(`return ${e};`)()}]`,
  );
  // writes first: `cpu.rNN[i] = expr;` with the expression up to its statement's end
  for (;;) {
    const m = /cpu\.(r8|r16)\[(\d+)\] = (?!=)/.exec(code);
    if (m === null) break;
    let depth = 0, end = m.index + m[0].length;
    for (; end < code.length; end++) {
      const ch = code[end];
      if (ch === "(" || ch === "[" || ch === "{") depth++;
      else if (ch === ")" || ch === "]" || ch === "}") {
        if (--depth < 0) return null;
      } else if (ch === ";" && depth === 0) break;
    }
    if (end >= code.length) return null;
    const e = code.slice(m.index + m[0].length, end);
    const x = Number(m[2]);
    const [n, sh, mask] = m[1] === "r16"
      ? [x >> 1, (x & 1) * 16, 0xffff]
      : [x >> 2, (x & 3) * 8, 0xff];
    const keep = ~(mask << sh);
    code = code.slice(0, m.index) +
      `cpu.r32[${n}] = (cpu.r32[${n}] & ${keep}) | (((${e}) & ${mask}) << ${sh})` + code.slice(end);
  }
  code = code.replace(/cpu\.(r8|r16)\[(\d+)\]/g, (_m, v: string, i: string) => {
    const x = Number(i);
    return v === "r16"
      ? `((cpu.r32[${x >> 1}] >>> ${(x & 1) * 16}) & 0xffff)`
      : `((cpu.r32[${x >> 2}] >>> ${(x & 3) * 8}) & 0xff)`;
  });
  return /cpu\.(r8|r16)\b/.test(code) ? null : code;
}

/** Calls that leave the general registers alone (memory accesses, flag evaluation). */
const KEEPS = /^((rd|rdw|wr)(8|16|32)|lin[RW]|limitFault|cf|zf|sf|of|pf|af)$/;

/** Whether every call in `code` leaves the registers alone (push/pop move ESP, for one). */
function callsKeepRegisters(code: string): boolean {
  for (const m of code.matchAll(/\bcpu\.(\w+)\(/g)) if (!KEEPS.test(m[1])) return false;
  return true;
}

/** Calls that cannot fault: the lazy-flag evaluators. */
const NO_FAULT = /^(cf|zf|sf|of|pf|af)$/;
/** The slow paths of inlined accesses and the address checks: calls that are rarely made. */
const SLOW_READ = /\(S = 1, (?=cpu\.)/g;
const SLOW_WRITE = /\bS = 1; (?=cpu\.)/g;
const CHECK = /\bcpu\.(linR|linW|limitFault)\((\d+),/g;

/**
 * Record k's code with what a fault inside it needs written first: the registers its run keeps
 * in locals (`back`), the lazy-flag record pending before it (`flags`), and which record it is
 * with the count the block retired before it (cpu.jk, cpu.jx: runBlock's catch reads them).
 * The slow paths of inlined accesses and the address checks get it inline, where it costs
 * nothing on the fast path; a record with any other call that can fault gets it before
 * itself. Writing state back early is harmless: the locals stay what the code goes on with.
 * (A try/catch around the block did this once at the fault, but its exception edges made V8's
 * code for every block slower: the kernel's decompression took 10% longer.)
 */
function withSync(code: string, k: number, dk: number, back: string, flags: string): string {
  const stmts = `${back}${flags}cpu.jk = ${k}; cpu.jx = ${dk} - D + N;`;
  const expr = stmts.split(";").map((x) => x.trim()).filter((x) => x !== "").join(", ");
  const rest = code.replace(SLOW, "");
  const other = [...rest.matchAll(/\bcpu\.(\w+)\(/g)].some((m) => !NO_FAULT.test(m[1])) ||
    /\bH\.|\bI\[/.test(rest);
  if (other) return `${stmts}\n${code}`;
  return code.replace(SLOW_READ, `(S = 1, ${expr}, `)
    .replace(SLOW_WRITE, `S = 1; ${stmts} `)
    .replace(CHECK, (_m, f: string, seg: string) => `cpu.${f}((${expr}, ${seg}),`);
}

/** CPU fields that compiled code reads once at entry (none is assigned by inlined code). */
const HOISTED =
  /\bcpu\.(r32|r16|r8|ram32|ram|tlbR|tlbW|tlbUser|segBase|segChkW|segChk|codePage|directSpan)\b(?!\s*=[^=])/g;

/**
 * Compiles block `b` (decoded for code32 = `code32`). A run of inlined records whose calls leave
 * the registers alone (memory accesses, flag evaluation) keeps the registers it uses in JS
 * locals: read at the run's start, written back at its end (before a side exit's test), before
 * an early exit inside it and before a call that may fault (withSync: a local the run has
 * not written yet holds the register's value, so writing back every local the run may write
 * leaves exactly what the records before the fault left).
 */
export function compileBlock(
  b: Block,
  code32: number,
  ram32: boolean,
  segs: FlatSegments | null = null,
): BlockFn {
  const ins = b.ins;
  const last = ins.length - 1;
  const mask = code32 ? "-1" : "0xffff";
  // memory operands through a segment that is flat now (base 0, limit 4G) skip the base and
  // limit arithmetic; the function starts by checking that those segments are still flat, and
  // a handler it calls that changes them (loads a segment register) sets blockExit (segCheck),
  // which ends the block right after it
  const guard = new Set<string>();
  let flatBits = 0; // of cpu.flatMask
  const flat = (seg: number, write: boolean): boolean => {
    const bit = (write ? 0x100 : 1) << seg;
    if (segs === null || (segs.flatMask & bit) === 0) return false;
    flatBits |= bit;
    return true;
  };
  // a flat stack segment with a 32-bit stack pointer, checked on entry with the segments
  const stack = (): boolean => {
    if (segs === null || segs.spMask !== -1 || !flat(2, true) || !flat(2, false)) return false;
    guard.add("cpu.spMask === -1");
    return true;
  };
  // physical addressing, checked on entry (the loop recompiles without it when that fails)
  const direct = segs !== null && segs.direct && ram32;
  if (direct) {
    // cpu.physicalDirect() written out (no call on every block entry)
    guard.add(
      "(cpu.cr0 & -2147483648) === 0 && cpu.a20Mask === -1 && cpu.dbgData === 0 && !cpu.acActive",
    );
  }
  const ils: ({ code: string; pure: boolean } | null)[] = [];
  for (let k = 0; k <= last; k++) {
    const il = inline(
      ins[k],
      k,
      ram32,
      flat,
      stack,
      direct,
    );
    ils.push(il);
  }
  // forward jumps to a record of the same block (past a normalisation, say) stay inside the
  // function: the records in between sit in a labelled block the jump breaks out of.
  // Properly nested ones only; the target starts a new register run with no flags pending.
  const skipTo = new Map<number, number>();
  const starts = ins.map((i) => i.end - i.len);
  // Not in a block the decoder cut at MAX_BLOCK records: the loop would have run the target's
  // own block, which goes on past this one's end, and a slice's budget would then run out at
  // another instruction than here (compiled and interpreted runs stay in step under -icount).
  for (let k = 0; k < last && ins.length < MAX_BLOCK; k++) {
    const t0 = ins[k].exit && ils[k] !== null ? takenAtEnd(ils[k]!.code) : null;
    if (t0 === null) continue;
    const target = ins[k].end + Number(t0[1].replace(/[()]/g, ""));
    const t = starts.indexOf(target, k + 2);
    if (t < 0 || target <= ins[k].end) continue;
    let nests = true;
    for (const [a, e] of skipTo) if (a < k && k < e && t > e) nests = false;
    if (nests) skipTo.set(k, t);
  }
  const joins = new Set(skipTo.values());
  const flags = deferFlags(ils, joins);
  // the count a compiled block returns is of instructions: an inlined fused compare-and-jump is
  // two (its handler counts the second itself: cpu.instructions++, dropped here); W[k] counts
  // the instructions of records 0..k-1
  const W = [0];
  for (let k = 0; k <= last; k++) {
    const il = ils[k];
    const fused = il !== null && il.code.includes("cpu.instructions++;");
    if (fused) il!.code = il!.code.replace("cpu.instructions++;", "");
    W.push(W[k] + (fused ? 2 : 1));
  }
  const reg = ils.map((il, k) =>
    il !== null && k < last && callsKeepRegisters(il.code) ? registerForm(il.code) : null
  );
  // a register-form side exit whose taken branch returns from the block (writing the run's
  // registers back there) does not end its run: the fall-through goes on with the locals
  const through = reg.map((r, k) => r !== null && ins[k].exit && takenAtEnd(r) !== null);
  const called0 = ils.findIndex((il) => il === null);
  const firstCall = called0 < 0 ? Infinity : called0;
  let looped = false;
  const locals = new Set<string>();
  let src = "";
  let back = ""; // the write-back ending the current run
  for (let k = 0; k <= last; k++) {
    const i = ins[k];
    const il = ils[k];
    let code = il !== null ? il.code : `I[${k}].fn(cpu, I[${k}]);\n`;
    if (joins.has(k)) {
      // the end of the records that jumps skip: the fall-through path finishes its flags
      let n = 0;
      for (const t of skipTo.values()) if (t === k) n++;
      src += flags.join[k] + "}\n".repeat(n);
    }
    // a jump from this record past later ones breaks out of a block opened here
    if (skipTo.has(k)) src += `J${k}: {\n`;
    if (
      reg[k] !== null &&
      (k === 0 || reg[k - 1] === null || (ins[k - 1].exit && !through[k - 1]) || joins.has(k))
    ) {
      // a run starts: its extent, the registers it uses and writes
      let e = k;
      while (
        e < last && reg[e] !== null && !(e > k && ins[e - 1].exit && !through[e - 1]) &&
        !(e > k && joins.has(e))
      ) e++;
      const used = new Set<string>(), written = new Set<string>();
      for (let j = k; j < e; j++) {
        for (const m of reg[j]!.matchAll(REG)) used.add(m[1]);
        for (const m of reg[j]!.matchAll(REG_WRITE)) written.add(m[1]);
      }
      for (const n of used) {
        locals.add(n);
        src += `Q${n} = cpu.r32[${n}];\n`;
      }
      back = [...written].map((n) => `cpu.r32[${n}] = Q${n};\n`).join("");
    }
    let norm = "";
    if (reg[k] !== null) {
      // a local holds what the Int32Array would: the record's writes made int32 after it
      const w = new Set([...reg[k]!.matchAll(REG_WRITE)].map((m) => m[1]));
      code = reg[k]!.replace(REG, (_m, n: string) => `Q${n}`);
      norm = [...w].map((n) => `Q${n} |= 0;\n`).join("");
    }
    const endsRun = reg[k] !== null &&
      (reg[k + 1] === null || (i.exit && !through[k]) || joins.has(k + 1));
    // the writer pending before the record, unless it was written back before it (the record
    // then may set the CPU's fields itself before a call, as its handler does)
    const pendingFlags = flags.before[k] === "" ? flagWriteBack(flags.at[k]) : "";
    code = withSync(code, k, W[k] - k, reg[k] !== null ? back : "", pendingFlags);
    if (k === last) src += `cpu.eip = (base + ${i.end}) & ${mask};\n`;
    src += flags.before[k];
    const fwb = flagWriteBack(flags.after[k]); // before a return after this record
    if (i.exit && k < last) {
      // a side exit: EIP = the next instruction; a taken jump ends the block
      src += `const f${k} = (base + ${i.end}) & ${mask};\n`;
      const taken = il === null ? null : takenAtEnd(code);
      if (taken !== null) {
        // an inlined jump whose last statement is the taken branch: it leaves the block there
        // (EIP stays stale on the fall-through; only block ends and faults need it)
        const wb = reg[k] !== null ? back : "";
        const disp = Number(taken[1].replace(/[()]/g, ""));
        // a jump back to the block's start with only inlined code before it loops here (a
        // called handler might change what the entry checks assumed) while the slice's budget
        // (lim, in instructions) lasts and nothing asks for a return to the event loop: the
        // loop would stop at the same instruction after as many turns of the block
        const loop = i.end + disp === 0 && k < firstCall;
        looped ||= loop;
        const skip = skipTo.get(k);
        const leave = loop
          ? `{ ${wb}${fwb}N += ${W[k + 1]} - D; D = 0; ` +
            `if (N < lim && !cpu.blockExit) continue LOOP; cpu.eip = base; return N; }`
          : skip !== undefined
          ? `{ ${wb}${fwb}if (N + ${W[k + 1]} - D >= lim) { cpu.eip = (f${k} + ${taken[1]}) ` +
            `${taken[2]}; return ${W[k + 1]}; } D += ${W[skip] - W[k + 1]}; break J${k}; }`
          : `{ cpu.eip = (f${k} + ${taken[1]}) ${taken[2]}; ${wb}${fwb}return ${W[k + 1]}; }`;
        src += code.slice(0, taken.index) + leave +
          code.slice(taken.index + taken[0].length) + norm + (endsRun ? back : "");
        continue;
      }
      src += `cpu.eip = f${k};\n`;
      src += code + norm + (endsRun ? back : "");
      src += `if ((cpu.eip | 0) !== (f${k} | 0)) { ${fwb}return ${W[k + 1]}; }\n`;
      continue;
    }
    src += code + norm + (endsRun ? back : "");
    if (k < last && (il === null || !il.pure)) {
      // a record whose only calls are the slow paths of inlined accesses (which set S) and
      // address checks (which can only fault) can have set blockExit only on a slow path
      const slowOnly = il !== null && !IMPURE.test(il.code.replace(SLOW, ""));
      src +=
        `if (${slowOnly ? "S !== 0 && " : ""}cpu.blockExit) { ${
          reg[k] !== null && !endsRun ? back : ""
        }` +
        `${fwb}cpu.eip = (base + ${i.end}) & ${mask}; return ${W[k + 1]}; }\n`;
    }
  }
  // the flag locals
  const writers = new Map<number, Writer>();
  for (const w of flags.after) if (w !== null) writers.set(w.k, w);
  for (const w of writers.values()) {
    const fields = [...(w.ab ? ["la", "lb"] : []), "lr", ...(w.cin ? ["lcin"] : [])];
    for (const f of fields) locals.add(`F${f}${w.k}`);
  }
  const decl = [...locals].map((n) => `${/^\d+$/.test(n) ? "Q" : ""}${n} = 0`).join(", ");
  if (flatBits !== 0) guard.add(`(cpu.flatMask & ${flatBits}) === ${flatBits}`);
  const check = guard.size === 0 ? "" : `if (!(${[...guard].join(" && ")})) return -1;\n`;
  src += `${flagWriteBack(flags.after[last])}return ${W[last + 1]};\n`;
  if (skipTo.size !== 0) {
    // records a jump skipped (D) did not run: every return leaves them out (and cpu.jx, for a
    // fault, too)
    src = src.replace(/\breturn (\d+);/g, "return $1 - D;");
  }
  if (looped) {
    // the records of earlier turns count too: every return adds them (and cpu.jx, for a fault)
    src = `LOOP: for (;;) {\n${src.replace(/\breturn (\d+)/g, "return N + $1")}}\n`;
  }
  src = `${check}let N = 0, D = 0, S = 0, T = 0, X = 0, O = 0, P = 0, Y = 0${
    decl ? ", " + decl : ""
  };\n${src}`;
  // the CPU's arrays (never replaced while a block runs: memoryMapChanged and setCpl end it)
  // and the TLB half read once, so that no slow-path call in between makes V8 load them again
  const hoisted = new Set<string>();
  src = src.replace(HOISTED, (_m, f: string) => {
    hoisted.add(f);
    return `C_${f}`;
  });
  const pre = [...hoisted].map((f) => `const C_${f} = cpu.${f};\n`).join("");
  // named by physical address, so that profiles (perf with --perf-basic-prof) tell blocks apart
  const name = `block_${b.phys.toString(16)}`;
  return new Function("H", `return function ${name}(cpu, I, base, lim) {\n${pre}${src}};`)(
    H,
  ) as BlockFn;
}
