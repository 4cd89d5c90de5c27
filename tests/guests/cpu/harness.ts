/**
 * A minimal machine for CPU test programs: RAM, a debug console on port 0xE9, an exit port at
 * 0xF4, an optional timer-like interrupt source, and nothing else. No devices.
 */

import { type CpuBus, PageKind, RunExit } from "../../../emu/cpu/bus.ts";
import { Cpu } from "../../../emu/cpu/cpu.ts";

/** Where boot.inc expects to be loaded and entered. */
export const LOAD_ADDR = 0x8000;

export interface GuestResult {
  /** The value written to port 0xF4, or null if none was written. */
  exitCode: number | null;
  /** Text written to port 0xE9. */
  output: string;
  instructions: number;
  shutdowns: string[];
  cpu: Cpu;
}

export interface GuestOptions {
  ramBytes?: number;
  maxInstructions?: number;
  /** Interrupt vector to raise whenever IF=1 and `irqPending()` says so. */
  irq?: {
    pending: (cpu: Cpu) => boolean;
    vector: number;
    acknowledge?: () => void;
    /** Called while the CPU is halted with IF=1: time passes. */
    idle?: () => void;
  };
  /** Called with the CPU once it exists (before it runs). */
  onCpu?: (cpu: Cpu) => void;
  /** Extra I/O ports. */
  ports?: Map<number, { read?: () => number; write?: (v: number) => void }>;
}

/** A RAM-only bus with the test ports. */
export function testBus(ram: Uint8Array, opts: GuestOptions, state: {
  exitCode: number | null;
  output: string;
  shutdowns: string[];
  stop?: () => void;
  cpu?: Cpu;
}): CpuBus {
  return {
    ram,
    pageKind: (p) => (p < ram.length >>> 12 ? PageKind.Ram : PageKind.Mmio),
    mmioRead: (_a, size) => (size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff),
    mmioWrite: () => {},
    ioRead: (port, size) => {
      const p = opts.ports?.get(port);
      if (p?.read) return p.read();
      return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    },
    ioWrite: (port, _size, v) => {
      if (port === 0xe9) state.output += String.fromCharCode(v & 0xff);
      else if (port === 0xf4) {
        state.exitCode = v;
        state.stop?.();
      } else opts.ports?.get(port)?.write?.(v);
    },
    hasInterrupt: () => (state.cpu && opts.irq?.pending(state.cpu)) ?? false,
    acknowledgeInterrupt: () => {
      opts.irq?.acknowledge?.();
      return opts.irq?.vector ?? 0;
    },
    shutdown: (reason) => {
      state.shutdowns.push(reason);
    },
  };
}

/** Loads `image` at LOAD_ADDR, enters it in real mode at 0000:8000 and runs to exit or halt. */
export function runGuest(image: Uint8Array, opts: GuestOptions = {}): GuestResult {
  const ram = new Uint8Array(opts.ramBytes ?? 16 << 20);
  ram.set(image, LOAD_ADDR);
  const state = { exitCode: null as number | null, output: "", shutdowns: [] as string[] } as {
    exitCode: number | null;
    output: string;
    shutdowns: string[];
    stop?: () => void;
    cpu?: Cpu;
  };
  const cpu = new Cpu(testBus(ram, opts, state));
  state.cpu = cpu;
  opts.onCpu?.(cpu);
  state.stop = () => cpu.stop();
  cpu.setSegCache(1, 0, 0, 0xffff, 0x9b);
  cpu.eip = LOAD_ADDR;
  const max = opts.maxInstructions ?? 50_000_000;
  while (cpu.instructions < max && state.exitCode === null) {
    const r = cpu.run(Math.min(1_000_000, max - cpu.instructions));
    if (r === RunExit.Shutdown) break;
    if (r === RunExit.Halted) {
      if (!(opts.irq && (cpu.eflags & 0x200) !== 0)) break;
      // halted with interrupts enabled: time passes until the source raises one
      while (!opts.irq.pending(cpu)) opts.irq.idle?.();
    }
  }
  return { ...state, instructions: cpu.instructions, cpu };
}
