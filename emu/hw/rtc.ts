/**
 * The MC146818 real-time clock and its 128 bytes of CMOS RAM (index 0x70, data 0x71). The time
 * is the host's UTC at power-on plus machine-clock time; periodic, alarm and update-ended
 * interrupts go to IRQ 8 through clock timers.
 */
import type { ClockTimer, MachineClock } from "./clock.ts";
import type { IoBus } from "./iobus.ts";

export const RTC_SECONDS = 0, RTC_SECONDS_ALARM = 1, RTC_MINUTES = 2, RTC_MINUTES_ALARM = 3;
export const RTC_HOURS = 4, RTC_HOURS_ALARM = 5, RTC_DAY_OF_WEEK = 6, RTC_DAY_OF_MONTH = 7;
export const RTC_MONTH = 8, RTC_YEAR = 9;
export const RTC_REG_A = 0x0a, RTC_REG_B = 0x0b, RTC_REG_C = 0x0c, RTC_REG_D = 0x0d;
export const RTC_CENTURY = 0x32;

const REG_A_UIP = 0x80;
const REG_B_SET = 0x80, REG_B_PIE = 0x40, REG_B_AIE = 0x20, REG_B_UIE = 0x10;
const REG_B_DM = 0x04, REG_B_24H = 0x02;
const REG_C_IRQF = 0x80, REG_C_PF = 0x40, REG_C_AF = 0x20, REG_C_UF = 0x10;
/** Update-in-progress lasts 244 us before each second boundary. */
const UIP_NS = 244_000;

export class Rtc {
  readonly cmos: Uint8Array = new Uint8Array(128);
  index = 0;
  /** Host epoch milliseconds at virtual time 0. */
  #baseMs: number;
  /** Seconds added by guest writes to the clock (guest time minus host time). */
  #offsetS = 0;
  #periodic: ClockTimer;
  #second: ClockTimer;

  constructor(
    readonly clock: MachineClock,
    readonly setIrq: (level: boolean) => void,
    startMs: number = Date.now(),
  ) {
    this.#baseMs = startMs;
    this.cmos[RTC_REG_A] = 0x26;
    this.cmos[RTC_REG_B] = REG_B_24H;
    this.cmos[RTC_REG_D] = 0x80;
    this.#periodic = clock.timer(() => this.#onPeriodic());
    this.#second = clock.timer(() => this.#onSecond());
    this.#scheduleSecond();
  }

  register(io: IoBus): void {
    io.register(0x70, 2, {
      read: (p) => p === 0x70 ? 0xff : this.read(this.index),
      write: (p, _s, v) => {
        if (p === 0x70) this.index = v & 0x7f;
        else this.write(this.index, v);
      },
    });
  }

  /** Guest time now, in epoch seconds (fractional). */
  #nowS(): number {
    return (this.#baseMs + this.clock.now() / 1e6) / 1000 + this.#offsetS;
  }

  #toBcd(v: number): number {
    return this.cmos[RTC_REG_B] & REG_B_DM ? v : ((Math.floor(v / 10) << 4) | (v % 10));
  }

  #fromBcd(v: number): number {
    return this.cmos[RTC_REG_B] & REG_B_DM ? v : ((v >> 4) * 10 + (v & 15));
  }

  #timeFields(): void {
    const d = new Date(Math.floor(this.#nowS()) * 1000);
    const c = this.cmos;
    c[RTC_SECONDS] = this.#toBcd(d.getUTCSeconds());
    c[RTC_MINUTES] = this.#toBcd(d.getUTCMinutes());
    let h = d.getUTCHours();
    if (!(c[RTC_REG_B] & REG_B_24H)) {
      const pm = h >= 12;
      h = h % 12 || 12;
      c[RTC_HOURS] = this.#toBcd(h) | (pm ? 0x80 : 0);
    } else {
      c[RTC_HOURS] = this.#toBcd(h);
    }
    c[RTC_DAY_OF_WEEK] = this.#toBcd(d.getUTCDay() + 1);
    c[RTC_DAY_OF_MONTH] = this.#toBcd(d.getUTCDate());
    c[RTC_MONTH] = this.#toBcd(d.getUTCMonth() + 1);
    c[RTC_YEAR] = this.#toBcd(d.getUTCFullYear() % 100);
    c[RTC_CENTURY] = this.#toBcd(Math.floor(d.getUTCFullYear() / 100));
  }

  read(i: number): number {
    const c = this.cmos;
    if (i <= RTC_YEAR || i === RTC_CENTURY) {
      if (!(c[RTC_REG_B] & REG_B_SET)) this.#timeFields();
      return c[i];
    }
    if (i === RTC_REG_A) {
      const frac = this.#nowS() % 1;
      const uip = !(c[RTC_REG_B] & REG_B_SET) && frac >= 1 - UIP_NS / 1e9;
      return (c[RTC_REG_A] & 0x7f) | (uip ? REG_A_UIP : 0);
    }
    if (i === RTC_REG_C) {
      const v = c[RTC_REG_C];
      c[RTC_REG_C] = 0;
      if (v & REG_C_IRQF) this.setIrq(false);
      return v;
    }
    return c[i];
  }

  write(i: number, v: number): void {
    const c = this.cmos;
    switch (i) {
      case RTC_REG_A:
        c[i] = v & 0x7f;
        this.#schedulePeriodic();
        return;
      case RTC_REG_B: {
        const wasSet = c[i] & REG_B_SET;
        if (!wasSet && (v & REG_B_SET)) this.#timeFields();
        c[i] = v;
        if (wasSet && !(v & REG_B_SET)) this.#setFromFields();
        this.#schedulePeriodic();
        return;
      }
      case RTC_REG_C:
      case RTC_REG_D:
        return;
    }
    c[i] = v;
    if ((i <= RTC_YEAR || i === RTC_CENTURY) && !(c[RTC_REG_B] & REG_B_SET)) {
      if (i !== RTC_SECONDS_ALARM && i !== RTC_MINUTES_ALARM && i !== RTC_HOURS_ALARM) {
        this.#setFromFields();
      }
    }
  }

  /** The guest set the clock: keep the difference from host time. */
  #setFromFields(): void {
    const c = this.cmos;
    let h = c[RTC_HOURS];
    const pm = !(c[RTC_REG_B] & REG_B_24H) && (h & 0x80);
    h = this.#fromBcd(h & 0x7f);
    if (!(c[RTC_REG_B] & REG_B_24H)) h = (h % 12) + (pm ? 12 : 0);
    const year = this.#fromBcd(c[RTC_CENTURY]) * 100 + this.#fromBcd(c[RTC_YEAR]);
    const t = Date.UTC(
      year,
      this.#fromBcd(c[RTC_MONTH]) - 1,
      this.#fromBcd(c[RTC_DAY_OF_MONTH]),
      h,
      this.#fromBcd(c[RTC_MINUTES]),
      this.#fromBcd(c[RTC_SECONDS]),
    ) / 1000;
    this.#offsetS = t - Math.floor((this.#baseMs + this.clock.now() / 1e6) / 1000);
  }

  #raise(flag: number): void {
    const c = this.cmos;
    c[RTC_REG_C] |= flag;
    const enabled = (c[RTC_REG_B] & (REG_B_PIE | REG_B_AIE | REG_B_UIE)) &
      ((flag & REG_C_PF ? REG_B_PIE : 0) | (flag & REG_C_AF ? REG_B_AIE : 0) |
        (flag & REG_C_UF ? REG_B_UIE : 0));
    if (enabled && !(c[RTC_REG_C] & REG_C_IRQF)) {
      c[RTC_REG_C] |= REG_C_IRQF;
      this.setIrq(true);
    }
  }

  /** Periodic interrupt period in ns from register A's rate bits, 0 when off. */
  #periodNs(): number {
    const rate = this.cmos[RTC_REG_A] & 0x0f;
    if (!rate) return 0;
    const r = rate <= 2 ? rate + 7 : rate;
    return 1e9 * (1 << (r - 1)) / 32768;
  }

  #schedulePeriodic(): void {
    const p = this.#periodNs();
    if (!p || !(this.cmos[RTC_REG_B] & REG_B_PIE)) return this.#periodic.del();
    const now = this.clock.now();
    this.#periodic.mod((Math.floor(now / p) + 1) * p);
  }

  #onPeriodic(): void {
    this.#raise(REG_C_PF);
    this.#schedulePeriodic();
  }

  #scheduleSecond(): void {
    const s = this.#nowS();
    const nextS = Math.floor(s) + 1;
    this.#second.mod(this.clock.now() + Math.max(1, (nextS - s) * 1e9));
  }

  #onSecond(): void {
    const c = this.cmos;
    if (!(c[RTC_REG_B] & REG_B_SET)) {
      this.#timeFields();
      let flags = REG_C_UF;
      const match = (alarm: number, v: number) => (alarm & 0xc0) === 0xc0 || alarm === v;
      if (
        match(c[RTC_SECONDS_ALARM], c[RTC_SECONDS]) &&
        match(c[RTC_MINUTES_ALARM], c[RTC_MINUTES]) &&
        match(c[RTC_HOURS_ALARM], c[RTC_HOURS])
      ) flags |= REG_C_AF;
      this.#raise(flags);
    }
    this.#scheduleSecond();
  }

  reset(): void {
    this.cmos[RTC_REG_B] &= ~(REG_B_PIE | REG_B_AIE | REG_B_UIE);
    this.cmos[RTC_REG_C] = 0;
    this.setIrq(false);
    this.#periodic.del();
  }
}
