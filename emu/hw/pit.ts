/**
 * The 8254 programmable interval timer (ports 0x40-0x43) and port 0x61's gate/speaker bits.
 * Counters are computed from the machine clock (no per-tick work): channel 0 raises IRQ 0 on
 * each period through a clock timer; channel 2's output is readable in port 0x61 bit 5.
 */
import type { MachineClock } from "./clock.ts";
import type { ClockTimer } from "./clock.ts";
import type { IoBus } from "./iobus.ts";

/** The 8254's input clock, Hz. */
export const PIT_FREQ = 1193182;

const ticksAt = (ns: number) => Math.floor(ns * PIT_FREQ / 1e9);
const nsAt = (ticks: number) => Math.ceil(ticks * 1e9 / PIT_FREQ);

/** One counter. */
export class PitChannel {
  mode = 0;
  /** 1: LSB, 2: MSB, 3: LSB then MSB. */
  rw = 3;
  bcd = false;
  /** The reload value (0 means 65536). */
  count = 0x10000;
  /** Virtual time the count was loaded (ns). */
  loadTime = 0;
  gate = true;
  /** A full count has been written since the mode was set. */
  loaded = false;
  /** One-shot modes (0, 1, 4, 5): the terminal-count edge of this count was delivered. */
  edgeDone = false;
  #writeHigh = false;
  #writeLatch = 0;
  #readHigh = false;
  #latched: number[] = [];
  #statusLatched = -1;
  /** Lower count byte written, waiting for the upper one (rw=3). */
  timer: ClockTimer | null = null;
  onOutputEdge: (() => void) | null = null;

  constructor(readonly clock: MachineClock) {}

  #elapsed(): number {
    return ticksAt(this.clock.now() - this.loadTime);
  }

  /** The current counter value. */
  value(): number {
    const d = this.#elapsed();
    const c = this.count;
    switch (this.mode) {
      case 0:
      case 1:
      case 4:
      case 5:
        return (c - d) & 0xffff;
      case 3:
        return (c - ((2 * d) % c)) & 0xffff;
      default:
        return (c - (d % c)) & 0xffff;
    }
  }

  /** The OUT pin. */
  output(): boolean {
    const d = this.#elapsed();
    const c = this.count;
    if (!this.loaded) return this.mode !== 0;
    switch (this.mode) {
      case 0:
        return d >= c;
      case 1:
        return d >= c;
      case 2:
        return d % c !== c - 1;
      case 3:
        return d % c < (c + 1) >> 1;
      case 4:
      case 5:
        return d !== c;
      default:
        return false;
    }
  }

  /** Schedules the next interrupt edge (channel 0). */
  schedule(): void {
    if (!this.timer) return;
    if (!this.loaded || !this.gate) return this.timer.del();
    const d = this.#elapsed();
    const c = this.count;
    let next: number;
    switch (this.mode) {
      case 0:
      case 1:
      case 4:
      case 5:
        // Not `d >= c`: the host may stall between loading the count and this line (a GC pause,
        // preemption under load) long enough for the terminal count to pass already; the edge
        // is still owed then, and the timer fires at once. Losing it lost Linux's one-shot tick
        // and left the guest idle forever.
        if (this.edgeDone) return this.timer.del();
        next = c;
        break;
      default: // 2, 3: periodic, edge at the start of each period
        next = (Math.floor(d / c) + 1) * c;
    }
    this.timer.mod(this.loadTime + nsAt(next));
  }

  fire(): void {
    this.edgeDone = true;
    this.onOutputEdge?.();
    this.schedule();
  }

  #load(v: number): void {
    this.count = v === 0 ? 0x10000 : v;
    this.loadTime = this.clock.now();
    this.loaded = true;
    this.edgeDone = false;
    this.schedule();
  }

  setControl(v: number): void {
    const rw = (v >> 4) & 3;
    if (rw === 0) {
      this.latchCount();
      return;
    }
    this.rw = rw;
    this.mode = (v >> 1) & 7;
    if (this.mode > 5) this.mode -= 4;
    this.bcd = (v & 1) !== 0;
    this.#writeHigh = this.#readHigh = false;
    this.loaded = false;
    this.timer?.del();
  }

  latchCount(): void {
    if (this.#latched.length) return;
    const v = this.value();
    if (this.rw === 1) this.#latched = [v & 0xff];
    else if (this.rw === 2) this.#latched = [v >> 8];
    else this.#latched = [v & 0xff, v >> 8];
  }

  latchStatus(): void {
    if (this.#statusLatched >= 0) return;
    this.#statusLatched = (this.output() ? 0x80 : 0) | (this.loaded ? 0 : 0x40) |
      (this.rw << 4) | (this.mode << 1) | (this.bcd ? 1 : 0);
  }

  read(): number {
    if (this.#statusLatched >= 0) {
      const s = this.#statusLatched;
      this.#statusLatched = -1;
      return s;
    }
    if (this.#latched.length) return this.#latched.shift()!;
    const v = this.value();
    switch (this.rw) {
      case 1:
        return v & 0xff;
      case 2:
        return v >> 8;
      default:
        this.#readHigh = !this.#readHigh;
        return this.#readHigh ? v & 0xff : v >> 8;
    }
  }

  write(v: number): void {
    switch (this.rw) {
      case 1:
        return this.#load(v);
      case 2:
        return this.#load(v << 8);
      default:
        if (!this.#writeHigh) {
          this.#writeLatch = v;
          this.#writeHigh = true;
          if (this.mode === 0) this.timer?.del(); // mode 0 stops counting on the first byte
        } else {
          this.#writeHigh = false;
          this.#load(this.#writeLatch | (v << 8));
        }
    }
  }

  setGate(on: boolean): void {
    if (
      on && !this.gate && (this.mode === 1 || this.mode === 2 || this.mode === 3 || this.mode === 5)
    ) {
      this.loadTime = this.clock.now(); // a rising gate restarts the count
      this.edgeDone = false;
    }
    this.gate = on;
    this.schedule();
  }
}

export class Pit {
  readonly channels: PitChannel[];
  /** Port 0x61 bits 0 (channel 2 gate) and 1 (speaker data). */
  port61 = 0;
  #refresh = false;

  constructor(readonly clock: MachineClock, raiseIrq0: () => void) {
    this.channels = [0, 1, 2].map(() => new PitChannel(clock));
    const ch0 = this.channels[0];
    ch0.timer = clock.timer(() => ch0.fire());
    ch0.onOutputEdge = raiseIrq0;
    this.channels[2].gate = false;
  }

  register(io: IoBus): void {
    io.register(0x40, 4, {
      read: (p) => p === 0x43 ? 0xff : this.channels[p - 0x40].read(),
      write: (p, _s, v) => {
        if (p !== 0x43) return this.channels[p - 0x40].write(v);
        const sel = v >> 6;
        if (sel === 3) { // read-back
          for (let i = 0; i < 3; i++) {
            if (!(v & (2 << i))) continue;
            if (!(v & 0x20)) this.channels[i].latchCount();
            if (!(v & 0x10)) this.channels[i].latchStatus();
          }
          return;
        }
        this.channels[sel].setControl(v);
      },
    });
    io.register(0x61, 1, {
      read: () => {
        this.#refresh = !this.#refresh; // bit 4 toggles (DRAM refresh), some BIOSes wait on it
        return this.port61 | (this.#refresh ? 0x10 : 0) |
          (this.channels[2].output() ? 0x20 : 0);
      },
      write: (_p, _s, v) => {
        this.port61 = v & 3;
        this.channels[2].setGate((v & 1) !== 0);
      },
    });
  }

  reset(): void {
    for (const c of this.channels) {
      c.setControl(0x36);
      c.loaded = false;
      c.timer?.del();
    }
    this.port61 = 0;
    this.channels[2].gate = false;
  }
}
