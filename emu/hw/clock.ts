/**
 * The machine clock: virtual nanoseconds and callbacks scheduled on them. Devices never use
 * wall-clock timers; the accelerator decides how virtual time advances (following the host's
 * monotonic clock under KVM, or stepped by hand in tests so that runs are deterministic).
 */

/** A callback on the machine clock, re-armed with {@link ClockTimer.mod}. */
export class ClockTimer {
  /** The virtual time (ns) it fires at; -1 when not armed. */
  expires = -1;
  constructor(readonly clock: MachineClock, readonly callback: () => void) {}

  /** Arms the timer for virtual time `at` (ns). */
  mod(at: number): void {
    this.expires = at;
    this.clock.changed();
  }

  /** Disarms the timer. */
  del(): void {
    if (this.expires < 0) return;
    this.expires = -1;
    this.clock.changed();
  }

  get pending(): boolean {
    return this.expires >= 0;
  }
}

/** Where virtual time comes from. */
export type TimeSource = () => number;

/** The host's monotonic clock in ns. */
export const hostTime: TimeSource = () => performance.now() * 1e6;

/** Virtual time and the timers on it. */
export class MachineClock {
  readonly timers: ClockTimer[] = [];
  #manual = 0;
  #source: TimeSource | null;
  #base = 0;
  /** Called when a timer is armed (an accelerator re-computes its next wake-up). */
  onChange: (() => void) | null = null;

  /** With no source the clock is manual: it moves only through {@link MachineClock.advance}. */
  constructor(source: TimeSource | null = null) {
    this.#source = source;
    if (source) this.#base = source();
  }

  /** Virtual nanoseconds since the machine was created. */
  now(): number {
    return this.#source ? this.#source() - this.#base : this.#manual;
  }

  /** A new (disarmed) timer. */
  timer(callback: () => void): ClockTimer {
    const t = new ClockTimer(this, callback);
    this.timers.push(t);
    return t;
  }

  /** The cached earliest expiry (-1: none); stale when #dirty. */
  #next = -1;
  #dirty = true;

  changed(): void {
    this.#dirty = true;
    this.onChange?.();
  }

  /** The earliest armed expiry, or -1. */
  nextDeadline(): number {
    if (!this.#dirty) return this.#next;
    let best = -1;
    for (const t of this.timers) {
      if (t.expires >= 0 && (best < 0 || t.expires < best)) best = t.expires;
    }
    this.#next = best;
    this.#dirty = false;
    return best;
  }

  /** Runs every timer whose time has come (in expiry order); returns how many ran. */
  runDue(): number {
    const next = this.nextDeadline();
    if (next < 0 || next > this.now()) return 0;
    let ran = 0;
    for (;;) {
      const now = this.now();
      let due: ClockTimer | null = null;
      for (const t of this.timers) {
        if (t.expires >= 0 && t.expires <= now && (!due || t.expires < due.expires)) due = t;
      }
      if (!due) return ran;
      due.expires = -1;
      this.#dirty = true;
      due.callback();
      ran++;
    }
  }

  /** Manual clock: moves time forward by ns, running the timers due on the way, in order. */
  advance(ns: number): void {
    if (this.#source) throw new Error("advance() needs a manual clock");
    const end = this.#manual + ns;
    for (;;) {
      const d = this.nextDeadline();
      if (d < 0 || d > end) break;
      if (d > this.#manual) this.#manual = d;
      this.runDue();
    }
    this.#manual = end;
    this.runDue();
  }
}

/**
 * Virtual time counted in instructions (QEMU's -icount): each instruction is 2^shift ns, and
 * while the CPU halts the clock warps straight to the next timer instead of following the
 * host. The same guest then sees the same times on every run, however fast the host is.
 */
export class InstructionTime {
  readonly nsPerInstruction: number;
  /** sleep=on: idle time is also waited for in real time (QEMU's default). */
  sleep = true;
  /** Instructions retired so far (set once the CPU exists). */
  instructions: () => number = () => 0;
  #warp = 0;

  constructor(shift: number) {
    this.nsPerInstruction = 2 ** shift;
  }

  /** The time source for the machine clock. */
  readonly source: TimeSource = () => this.instructions() * this.nsPerInstruction + this.#warp;

  /** Moves virtual time forward to `to` (ns) while the CPU is idle. */
  warpTo(to: number): void {
    const now = this.source();
    if (to > now) this.#warp += to - now;
  }
}
