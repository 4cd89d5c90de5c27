/**
 * nasm-assembled test programs (tests/guests/cpu/t_*.asm) run on the bare CPU with the minimal
 * harness (RAM, debug and exit ports): each checks itself and exits with 0 or the number of the
 * failing check (0x100 + vector for an unexpected exception).
 */

import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { buildGuest, guestNames, haveNasm } from "./guests/cpu/build.ts";
import { runGuest } from "./guests/cpu/harness.ts";
import type { Cpu } from "../emu/cpu/cpu.ts";

const nasm = haveNasm();
if (!nasm) console.warn("WARNING: nasm not found: CPU guest program tests skipped");

for (const name of nasm ? guestNames().filter((n) => n.startsWith("t_")) : ["t_*"]) {
  Deno.test({
    name: `cpu guest: ${name}`,
    ignore: !nasm,
    fn() {
      // t_irq, t_rfirq get a timer: vector 0x20 every 1000 instructions (idle time counts while
      // halted)
      let next = 1000, idle = 0, pending = false;
      const irq = name === "t_irq" || name === "t_rfirq"
        ? {
          vector: 0x20,
          pending: (cpu: Cpu) => (pending ||= cpu.instructions + idle >= next),
          acknowledge: () => {
            pending = false;
            next += 1000;
          },
          idle: () => {
            idle += 100;
          },
        }
        : undefined;
      // t_pm16, t_dbgprio: writing port 0x80 raises an NMI
      const ports = new Map<number, { write?: (v: number) => void }>();
      let cpuRef: Cpu | null = null;
      if (name === "t_pm16" || name === "t_dbgprio") {
        ports.set(0x80, { write: () => cpuRef?.raiseNmi() });
      }
      // t_ferr: the x87's FERR# sets a latch (vector 0x75, IRQ 13's on a PC); port 0xF0 clears it
      let ferrLatch = false;
      if (name === "t_ferr") ports.set(0xf0, { write: () => (ferrLatch = false) });
      const ferrIrq = { vector: 0x75, pending: () => ferrLatch };
      const r = runGuest(buildGuest(name), {
        maxInstructions: 20_000_000,
        irq: name === "t_ferr" ? ferrIrq : irq,
        ports,
        onCpu: (cpu) => {
          cpuRef = cpu;
          if (name === "t_ferr") cpu.bus.ferr = (on) => (ferrLatch ||= on);
        },
      });
      if (name.startsWith("t_triple")) {
        deepStrictEqual(r.shutdowns, ["triple fault"], `output: ${r.output}`);
        return;
      }
      deepStrictEqual(r.shutdowns, [], `output: ${r.output}`);
      strictEqual(
        r.exitCode,
        0,
        `exit ${
          r.exitCode?.toString(16)
        } after ${r.instructions} instructions; output: ${r.output}`,
      );
    },
  });
}
