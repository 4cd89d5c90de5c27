/**
 * The block compiler: a block that the threaded-code loop ran often enough becomes one JS
 * function. Instructions with a generated handler (fast.ts) are inlined with their operand fields
 * folded in as constants (register indices, immediates, the address arithmetic); every other
 * instruction calls its handler as the loop would. The compiled function keeps the loop's rules:
 * EIP is set before the last instruction only, a handler that sets blockExit ends the block
 * after itself, and a fault reports which record raised it (cpu.jk) so that EIP is restored
 * exactly as for the loop. Semantics therefore stay those of the handlers.
 * @module
 */

import type { Cpu } from "./cpu.ts";
import { eaSource } from "./decode.ts";
import { H, handlerBody } from "./fast.ts";
import type { Block, Instr } from "./instr.ts";

/** A compiled block: runs from EIP `base`; returns the number of records run. */
export type BlockFn = (cpu: Cpu, ins: Instr[], base: number) => number;

/**
 * Runs through the loop before a block is compiled. DEMU_JIT_AFTER overrides it (1 compiles
 * every block at once: the CPU tests then check compiled code; 0 turns the compiler off).
 */
export const JIT_THRESHOLD: number = envThreshold() ?? 48;

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

/** The inlined form of record `i` (index k), or null when it has to call its handler. */
function inline(i: Instr, k: number): { code: string; pure: boolean } | null {
  const body = handlerBody(i.fn);
  if (body === undefined) return null;
  let c = body;
  if (c.includes("i.ea(cpu, i)")) {
    const ea = eaSource(i);
    if (ea === null) return null;
    c = c.replaceAll("i.ea(cpu, i)", ea);
  }
  c = c.replace(/\breturn;/g, `break L${k};`);
  if (/\breturn\b/.test(c)) return null;
  c = c.replace(FIELD, (_m, f: string) => literal((i as unknown as Record<string, number>)[f]));
  if (/\bi\b/.test(c)) return null; // a field not folded: keep the handler
  return { code: `L${k}: {\n${c}\n}\n`, pure: !IMPURE.test(c) };
}

/** Compiles block `b` (decoded for code32 = `code32`). */
export function compileBlock(b: Block, code32: number): BlockFn {
  const ins = b.ins;
  const last = ins.length - 1;
  const mask = code32 ? "-1" : "0xffff";
  let src = "let k = 0;\ntry {\n";
  for (let k = 0; k <= last; k++) {
    const i = ins[k];
    src += `k = ${k};\n`;
    if (k === last) src += `cpu.eip = (base + ${i.end}) & ${mask};\n`;
    const il = inline(i, k);
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
