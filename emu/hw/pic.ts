/**
 * The 8259A programmable interrupt controller pair of a PC (master at 0x20, slave at 0xA0 on
 * the master's IRQ2), with the PIIX3's edge/level control registers (ELCR) at 0x4D0/0x4D1.
 */
import type { AccessSize } from "../cpu/bus.ts";
import type { IoBus } from "./iobus.ts";

/** One 8259A. */
export class Pic8259 {
  irr = 0;
  imr = 0;
  isr = 0;
  /** Line levels last seen, for edge detection. */
  lastLevel = 0;
  elcr = 0;
  priorityAdd = 0;
  vectorBase = 0;
  /** 0: ready; 2..4: waiting for ICW2..ICW4. */
  initStep = 0;
  needIcw4 = false;
  single = false;
  autoEoi = false;
  rotateOnAutoEoi = false;
  readIsr = false;
  poll = false;
  specialMask = false;
  specialFullyNested = false;

  constructor(readonly isMaster: boolean, readonly elcrMask: number) {}

  reset(): void {
    this.irr =
      this.imr =
      this.isr =
      this.lastLevel =
      this.priorityAdd =
      this.vectorBase =
        0;
    this.initStep = 0;
    this.needIcw4 =
      this.single =
      this.autoEoi =
      this.rotateOnAutoEoi =
        false;
    this.readIsr =
      this.poll =
      this.specialMask =
      this.specialFullyNested =
        false;
  }

  setLine(irq: number, level: boolean): void {
    const mask = 1 << irq;
    if (this.elcr & mask) {
      if (level) {
        this.irr |= mask;
        this.lastLevel |= mask;
      } else {
        this.irr &= ~mask;
        this.lastLevel &= ~mask;
      }
    } else if (level) {
      if (!(this.lastLevel & mask)) this.irr |= mask;
      this.lastLevel |= mask;
    } else {
      this.lastLevel &= ~mask;
    }
  }

  /** Priority (0 highest .. 7) of the highest bit set in mask, 8 when none. */
  #priority(mask: number): number {
    if (!mask) return 8;
    let p = 0;
    while (!(mask & (1 << ((p + this.priorityAdd) & 7)))) p++;
    return p;
  }

  /** The IRQ this chip would deliver now, or -1. */
  pending(): number {
    const p = this.#priority(this.irr & ~this.imr);
    if (p === 8) return -1;
    let inService = this.isr;
    if (this.specialMask) inService &= ~this.imr;
    if (this.specialFullyNested && this.isMaster) inService &= ~(1 << 2);
    return p < this.#priority(inService) ? (p + this.priorityAdd) & 7 : -1;
  }

  /** The INTA cycle for irq. */
  acknowledge(irq: number): void {
    const mask = 1 << irq;
    if (this.autoEoi) {
      if (this.rotateOnAutoEoi) this.priorityAdd = (irq + 1) & 7;
    } else {
      this.isr |= mask;
    }
    if (!(this.elcr & mask)) this.irr &= ~mask;
  }

  readPort(a0: number): number {
    if (this.poll) {
      this.poll = false;
      const irq = this.pending();
      if (irq < 0) return 0;
      this.acknowledge(irq);
      return 0x80 | irq;
    }
    if (a0) return this.imr;
    return this.readIsr ? this.isr : this.irr;
  }

  writePort(a0: number, v: number): void {
    if (!a0) {
      if (v & 0x10) { // ICW1
        this.reset();
        this.needIcw4 = (v & 1) !== 0;
        this.single = (v & 2) !== 0;
        this.initStep = 2;
      } else if (v & 0x08) { // OCW3
        if (v & 0x04) this.poll = true;
        if (v & 0x02) this.readIsr = (v & 1) !== 0;
        if (v & 0x40) this.specialMask = (v & 0x20) !== 0;
      } else { // OCW2
        const cmd = v >> 5;
        switch (cmd) {
          case 0:
          case 4:
            this.rotateOnAutoEoi = cmd === 4;
            break;
          case 1: // non-specific EOI
          case 5: { // rotate on non-specific EOI
            const p = this.#priority(this.isr);
            if (p !== 8) {
              const irq = (p + this.priorityAdd) & 7;
              this.isr &= ~(1 << irq);
              if (cmd === 5) this.priorityAdd = (irq + 1) & 7;
            }
            break;
          }
          case 3: // specific EOI
            this.isr &= ~(1 << (v & 7));
            break;
          case 6: // set priority
            this.priorityAdd = (v + 1) & 7;
            break;
          case 7: // rotate on specific EOI
            this.isr &= ~(1 << (v & 7));
            this.priorityAdd = (v + 1) & 7;
            break;
        }
      }
      return;
    }
    switch (this.initStep) {
      case 0:
        this.imr = v;
        break;
      case 2:
        this.vectorBase = v & 0xf8;
        this.initStep = this.single ? (this.needIcw4 ? 4 : 0) : 3;
        break;
      case 3:
        this.initStep = this.needIcw4 ? 4 : 0;
        break;
      case 4:
        this.specialFullyNested = (v & 0x10) !== 0;
        this.autoEoi = (v & 2) !== 0;
        this.initStep = 0;
        break;
    }
  }
}

/** Master and slave, cascaded; the INTR output the CPU polls. */
export class PicPair {
  readonly master = new Pic8259(true, 0xf8);
  readonly slave = new Pic8259(false, 0xde);
  /** The INTR line (an interrupt is deliverable). */
  intr = false;
  /** Called when INTR goes high (to wake a halted CPU or kick KVM). */
  onRaise: (() => void) | null = null;

  register(io: IoBus): void {
    io.register(0x20, 2, {
      read: (p) => this.#read(this.master, p & 1),
      write: (p, _s, v) => this.#write(this.master, p & 1, v),
    });
    io.register(0xa0, 2, {
      read: (p) => this.#read(this.slave, p & 1),
      write: (p, _s, v) => this.#write(this.slave, p & 1, v),
    });
    io.register(0x4d0, 2, {
      read: (p: number, _s: AccessSize) => (p === 0x4d0 ? this.master : this.slave).elcr,
      write: (p: number, _s: AccessSize, v: number) => {
        const c = p === 0x4d0 ? this.master : this.slave;
        c.elcr = v & c.elcrMask;
        this.update();
      },
    });
  }

  reset(): void {
    this.master.reset();
    this.slave.reset();
    this.update();
  }

  #read(c: Pic8259, a0: number): number {
    const v = c.readPort(a0);
    this.update();
    return v;
  }

  #write(c: Pic8259, a0: number, v: number): void {
    c.writePort(a0, v);
    this.update();
  }

  /** Drives ISA IRQ line 0..15. */
  setIrq(irq: number, level: boolean): void {
    if (irq >= 8) this.slave.setLine(irq - 8, level);
    else this.master.setLine(irq, level);
    this.update();
  }

  /** A rising then falling edge on an edge-triggered line. */
  pulseIrq(irq: number): void {
    this.setIrq(irq, true);
    this.setIrq(irq, false);
  }

  update(): void {
    this.master.setLine(2, this.slave.pending() >= 0);
    const was = this.intr;
    this.intr = this.master.pending() >= 0;
    if (this.intr && !was) this.onRaise?.();
  }

  /** The INTA cycle: the vector of the interrupt being taken. */
  acknowledge(): number {
    const m = this.master;
    const irq = m.pending();
    let vector: number;
    if (irq < 0) {
      vector = m.vectorBase + 7; // spurious
    } else {
      m.acknowledge(irq);
      if (irq === 2) {
        const s = this.slave.pending();
        if (s >= 0) {
          this.slave.acknowledge(s);
          vector = this.slave.vectorBase + s;
        } else {
          vector = this.slave.vectorBase + 7;
        }
      } else {
        vector = m.vectorBase + irq;
      }
    }
    this.update();
    return vector;
  }
}
