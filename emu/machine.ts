/**
 * The Machine: guest memory, the I/O-port bus, the MMIO map, the interrupt controller and the
 * clock, plus the run state an accelerator acts on (reset and power-off requests, deferred
 * device work). The CPU — the interpreter or a KVM vCPU — reaches devices only through here;
 * {@link Machine} implements the interpreter's {@link CpuBus}.
 */
import {
  type AccessSize,
  type CpuBus,
  type CpuControl,
  type PageKind,
  RunExit,
} from "./cpu/bus.ts";
import { setImmediate } from "node:timers";
import { type InstructionTime, MachineClock, type TimeSource } from "./hw/clock.ts";
import { IoBus } from "./hw/iobus.ts";
import { PhysMemory } from "./hw/memory.ts";
import { PicPair } from "./hw/pic.ts";

/** Why the machine stopped running. */
export type StopReason =
  | { kind: "poweroff" }
  | { kind: "quit" }
  | { kind: "error"; message: string };

/** A device that takes part in system reset. */
export interface Resettable {
  reset(): void;
}

export class Machine implements CpuBus {
  readonly memory: PhysMemory;
  readonly io: IoBus = new IoBus();
  readonly pic: PicPair = new PicPair();
  readonly clock: MachineClock;
  readonly resettables: Resettable[] = [];
  /** Device work in flight (disk I/O); the CPU does not run until it settles. */
  readonly pending: Set<Promise<unknown>> = new Set();
  /** A reset was requested (0xCF9, port 0x92, the 8042, triple fault); the accelerator acts on it. */
  resetRequested = false;
  /** Set when the machine must stop (power-off, quit, fatal error). */
  stopReason: StopReason | null = null;
  /** -no-reboot: a reset request stops the machine instead. */
  noReboot = false;
  /** A20 gate state and its listeners (the CPU; KVM ignores it, as modern hosts do). */
  a20 = true;
  readonly a20Listeners: ((on: boolean) => void)[] = [];
  /** Wakes an accelerator that waits for an event (halted guest, async I/O). */
  #wakers: (() => void)[] = [];
  /** Log sink for -d categories. */
  log: ((category: string, message: string) => void) | null = null;

  constructor(ram: Uint8Array, timeSource: TimeSource | null) {
    this.memory = new PhysMemory(ram);
    this.clock = new MachineClock(timeSource);
    this.pic.onRaise = () => this.wake();
    this.pic.register(this.io);
  }

  get ram(): Uint8Array {
    return this.memory.ram;
  }

  // CpuBus.
  pageKind(page: number): PageKind {
    return this.memory.pageKind(page);
  }
  mmioRead(addr: number, size: AccessSize): number {
    return this.memory.read(addr, size);
  }
  mmioWrite(addr: number, size: AccessSize, value: number): void {
    this.memory.write(addr, size, value);
  }
  ioRead(port: number, size: AccessSize): number {
    return this.io.read(port, size);
  }
  ioWrite(port: number, size: AccessSize, value: number): void {
    this.io.write(port, size, value);
  }
  hasInterrupt(): boolean {
    return this.pic.intr;
  }
  clockNs(): number {
    return this.clock.now();
  }
  acknowledgeInterrupt(): number {
    const v = this.pic.acknowledge();
    this.log?.("int", `Servicing hardware INT=0x${v.toString(16).padStart(2, "0")}`);
    return v;
  }
  shutdown(reason: string): void {
    this.log?.("cpu_reset", `CPU shutdown: ${reason}`);
    this.requestReset();
  }
  /** The interpreter's x87 FERR# output (CpuBus.ferr); the PC wires it to IRQ 13. */
  ferr?: (asserted: boolean) => void;

  /** Called when the CPU must leave its run slice at once (power-off, reset). */
  onRunStateChange: (() => void) | null = null;

  /** Asks for a system reset (or a stop with -no-reboot). */
  requestReset(): void {
    if (this.noReboot) this.stop({ kind: "poweroff" });
    else this.resetRequested = true;
    this.onRunStateChange?.();
    this.wake();
  }

  /** Stops the machine. The first reason wins. */
  stop(reason: StopReason): void {
    this.stopReason ??= reason;
    this.onRunStateChange?.();
    this.wake();
  }

  setA20(on: boolean): void {
    if (on === this.a20) return;
    this.a20 = on;
    for (const l of this.a20Listeners) l(on);
  }

  /** Resets every device (the accelerator resets the CPU). */
  resetDevices(): void {
    this.resetRequested = false;
    for (const d of this.resettables) d.reset();
    this.pic.reset();
    this.setA20(true);
  }

  /** Called when device work is deferred (the interpreter ends its slice to wait for it). */
  onDefer: (() => void) | null = null;

  /** Registers device work the CPU must wait for. */
  defer(p: Promise<unknown>): void {
    this.onDefer?.();
    const tracked = p.catch((e) => this.stop({ kind: "error", message: String(e?.message ?? e) }))
      .finally(() => {
        this.pending.delete(tracked);
        this.wake();
      });
    this.pending.add(tracked);
  }

  /** Resolves at the next {@link Machine.wake} or after ms milliseconds (-1: no timeout). */
  waitEvent(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        if (timer) clearTimeout(timer);
        resolve();
      };
      this.#wakers.push(done);
      if (ms >= 0) timer = setTimeout(() => this.wake(), ms);
    });
  }

  wake(): void {
    const w = this.#wakers;
    if (!w.length) return;
    this.#wakers = [];
    for (const f of w) f();
  }
}

/**
 * Lets the event loop run (stdin, async disk I/O, timers) and comes back at once. setImmediate
 * costs microseconds; setTimeout(0) is clamped to milliseconds when nested.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Instructions per interpreter slice between device/clock checks. */
const SLICE = 20000;

/**
 * Runs the machine on the interpreter: slices of instructions, the clock's timers between
 * them, waiting (not spinning) while the guest halts.
 */
export async function runInterpreter(
  m: Machine,
  cpu: CpuControl,
  icount: InstructionTime | null = null,
): Promise<StopReason> {
  if (icount) icount.instructions = () => cpu.instructions;
  m.a20Listeners.push((on) => cpu.setA20(on));
  m.memory.listeners.push(() => cpu.memoryMapChanged());
  m.memory.writeListeners.push((a, n) => cpu.ramWritten(a, n));
  m.onDefer = () => cpu.stop();
  // A power-off or reset takes effect after the instruction that asked for it.
  m.onRunStateChange = () => cpu.stop();
  cpu.reset();
  let lastYield = performance.now();
  for (;;) {
    if (m.pending.size) await Promise.all([...m.pending]);
    if (m.stopReason) return m.stopReason;
    if (m.resetRequested) {
      m.resetDevices();
      cpu.reset();
    }
    m.clock.runDue();
    const exit = cpu.run(SLICE);
    if (exit === RunExit.Halted) {
      for (;;) {
        m.clock.runDue();
        if (m.pic.intr || m.stopReason || m.resetRequested || m.pending.size) break;
        const d = m.clock.nextDeadline();
        if (icount && d >= 0) {
          // Instruction-counted time does not pass while halted: jump to the next timer.
          if (icount.sleep) await m.waitEvent(Math.max(0, (d - m.clock.now()) / 1e6));
          icount.warpTo(d);
          continue;
        }
        await m.waitEvent(d < 0 ? -1 : Math.max(0, (d - m.clock.now()) / 1e6));
      }
      lastYield = performance.now();
    }
    // Yield every millisecond, not every 10: Deno's runtime polls sockets and pipes only every
    // 61st turn of a busy event loop (tokio's event interval) unless it parks, so with 10 ms
    // slices a connection waited ~600 ms to be accepted; at 1 ms, ~60 ms, for ~0.7% of the CPU
    // (a turn costs ~7 us). A halted guest parks in waitEvent and polls at once.
    const now = performance.now();
    if (now - lastYield >= 1) {
      lastYield = now;
      await yieldToEventLoop();
    }
  }
}
