/**
 * The CPU's view of the machine, and the machine's handle on the CPU.
 *
 * The interpreter (emu/cpu) and the PC (emu/machine.ts, emu/hw) meet only here:
 *
 * - {@link CpuBus} is what the machine gives the CPU: guest RAM as one Uint8Array, a per-page
 *   classification of the physical address space (RAM, ROM or device), MMIO and port I/O callbacks,
 *   an interrupt source, and a shutdown notification (triple fault).
 * - {@link CpuControl} is what the CPU offers the machine: run a slice, reset, the A20 gate,
 *   "the memory map changed", and NMI.
 *
 * Physical addresses are plain numbers below 2^36 (PAE); the low 32 bits are what a non-PAE
 * guest sees. Sizes are 1, 2 or 4 bytes; multi-byte values are little-endian, as on the bus.
 * @module
 */

/** Page size of the physical address space classification (4 KiB, the x86 page size). */
export const PHYS_PAGE_SHIFT = 12;

/** How the CPU reaches one 4 KiB physical page. */
export const PageKind = {
  /** Ordinary RAM: reads and writes go straight to {@link CpuBus.ram} at the physical address. */
  Ram: 0,
  /**
   * Read-only memory backed by {@link CpuBus.ram} (BIOS, option ROMs): reads come from `ram`,
   * writes go to {@link CpuBus.mmioWrite} (which may ignore them or switch a shadow mapping).
   */
  Rom: 1,
  /** A device range (or nothing): every access goes through mmioRead/mmioWrite. */
  Mmio: 2,
} as const;
/** One of {@link PageKind}'s values. */
export type PageKind = typeof PageKind[keyof typeof PageKind];

/** The size of one bus access in bytes. */
export type AccessSize = 1 | 2 | 4;

/** What the machine provides to the CPU. All methods are called synchronously from `run`. */
export interface CpuBus {
  /**
   * Guest RAM: physical address `a` is `ram[a]` for pages of kind Ram/Rom. Its length is a
   * multiple of 4 KiB. The CPU keeps a reference: replace it only through `memoryMapChanged`.
   */
  readonly ram: Uint8Array;
  /**
   * Classifies the physical page `page` (= physical address >> 12). Consulted when the CPU
   * fills its TLB, so answers are cached: call {@link CpuControl.memoryMapChanged} whenever an
   * answer would change (PAM/shadow registers, a BAR moved, VGA window switched).
   * Pages at or beyond `ram.length` must not be Ram or Rom.
   */
  pageKind(page: number): PageKind;
  /** A read from a Mmio page (or a Rom page never: ROM reads come from `ram`). */
  mmioRead(addr: number, size: AccessSize): number;
  /** A write to a Mmio or Rom page. `value` holds `size` bytes (unsigned). */
  mmioWrite(addr: number, size: AccessSize, value: number): void;
  /** IN from I/O port `port` (0..0xffff); return the value (unsigned; all ones if nothing there). */
  ioRead(port: number, size: AccessSize): number;
  /** OUT to I/O port `port`. */
  ioWrite(port: number, size: AccessSize, value: number): void;
  /**
   * A maskable interrupt is pending (the PIC/APIC INTR line is high). Polled at instruction
   * boundaries when EFLAGS.IF is set; must be cheap.
   */
  hasInterrupt(): boolean;
  /** The CPU accepts the pending interrupt (INTA cycle): return its vector (0..255). */
  acknowledgeInterrupt(): number;
  /**
   * The machine's virtual time in nanoseconds, if it has a clock. The time-stamp counter then
   * counts it (1 GHz) and keeps running while the CPU halts, as an invariant TSC does; without
   * it the TSC counts retired instructions (a bare CPU in tests).
   */
  clockNs?(): number;
  /**
   * The CPU shut down (triple fault, or a shutdown cycle). A PC resets the CPU on this; the
   * machine should call {@link CpuControl.reset} (possibly after `run` returns).
   */
  shutdown(reason: string): void;
  /**
   * The x87's FERR# output (optional): asserted (true) when an unmasked x87 exception is pending
   * at a waiting x87 instruction while CR0.NE is clear, deasserted (false) once the error is
   * cleared. A PC latches it into IRQ 13 and clears the latch on a write to port 0xF0.
   */
  ferr?: (asserted: boolean) => void;
}

/** Why {@link CpuControl.run} returned. */
export const RunExit = {
  /** The instruction budget is used up. */
  Budget: 0,
  /** HLT with no interrupt deliverable: call `run` again once an interrupt may be pending. */
  Halted: 1,
  /** The CPU shut down (triple fault); `bus.shutdown` was called. */
  Shutdown: 2,
  /** {@link CpuControl.stop} was called from inside a bus callback. */
  Stopped: 3,
} as const;
/** One of {@link RunExit}'s values. */
export type RunExit = typeof RunExit[keyof typeof RunExit];

/** What the CPU offers the machine. */
export interface CpuControl {
  /**
   * Executes up to about `budget` instructions (a block may run a few past it) and returns why it
   * stopped. Interrupts are taken between instructions; a halted CPU resumes when
   * `bus.hasInterrupt()` is true and IF=1 (or an NMI is raised).
   */
  run(budget: number): RunExit;
  /** Asks a running `run` to return (RunExit.Stopped) after the current instruction. */
  stop(): void;
  /** Power-on/INIT reset: CS:IP = F000:FFF0 with base FFFF0000, real mode, caches dropped. */
  reset(): void;
  /** The A20 gate (port 92h, the 8042): when off, physical address bit 20 is forced to zero. */
  setA20(enabled: boolean): void;
  /** The answer of `bus.pageKind` changed for some page, or `bus.ram` was replaced. */
  memoryMapChanged(): void;
  /**
   * Something other than the CPU (DMA, a loader, a device model) wrote guest RAM directly in
   * [addr, addr + length): drops decoded code there, so the CPU executes the new bytes.
   */
  ramWritten(addr: number, length: number): void;
  /** Raises a non-maskable interrupt (taken at the next instruction boundary). */
  raiseNmi(): void;
  /** Instructions retired since reset (a plain number; exact to 2^53). */
  readonly instructions: number;
}
