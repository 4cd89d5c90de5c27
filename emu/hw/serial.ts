/**
 * A 16550A UART (COM1 at 0x3F8/IRQ4 by default). Transmission is instantaneous (the byte goes
 * to the backend at once and THR is empty again); received bytes wait in a 16-byte FIFO.
 */
import type { CharBackend } from "../chardev/mod.ts";
import type { IoBus } from "./iobus.ts";

// Register bits (names from the 16550A data sheet).
const IER_RDI = 1, IER_THRI = 2, IER_RLSI = 4, IER_MSI = 8;
const IIR_NO_INT = 1, IIR_MSI = 0, IIR_THRI = 2, IIR_RDI = 4, IIR_RLSI = 6, IIR_FIFO = 0xc0;
const LSR_DR = 1, LSR_OE = 2, LSR_THRE = 0x20, LSR_TEMT = 0x40;
const LCR_DLAB = 0x80;
const MCR_DTR = 1, MCR_RTS = 2, MCR_OUT1 = 4, MCR_OUT2 = 8, MCR_LOOP = 0x10;
const MSR_DCTS = 1, MSR_DDSR = 2, MSR_TERI = 4, MSR_DDCD = 8;
const MSR_CTS = 0x10, MSR_DSR = 0x20, MSR_RI = 0x40, MSR_DCD = 0x80;
const FCR_ENABLE = 1, FCR_CLEAR_RX = 2;
const FIFO_SIZE = 16;

export class Serial16550 {
  ier = 0;
  lcr = 0;
  mcr = MCR_OUT2;
  lsr = LSR_THRE | LSR_TEMT;
  msr = MSR_DCD | MSR_DSR | MSR_CTS;
  scr = 0;
  fcr = 0;
  divisor = 12;
  rx: number[] = [];
  /** A THR-empty interrupt is owed (cleared by reading IIR or writing THR). */
  thrIpending = false;
  #irqLevel = false;

  constructor(
    readonly backend: CharBackend,
    readonly setIrq: (level: boolean) => void,
    readonly base = 0x3f8,
  ) {
    backend.setReceiver((bytes) => this.receive(bytes));
  }

  register(io: IoBus): void {
    io.register(this.base, 8, {
      read: (p) => this.read(p - this.base),
      write: (p, _s, v) => this.write(p - this.base, v),
    });
  }

  reset(): void {
    this.ier =
      this.lcr =
      this.scr =
      this.fcr =
        0;
    this.mcr = MCR_OUT2;
    this.lsr = LSR_THRE | LSR_TEMT;
    this.msr = MSR_DCD | MSR_DSR | MSR_CTS;
    this.rx = [];
    this.thrIpending = false;
    this.#update();
  }

  /** Host input for the guest. */
  receive(bytes: Uint8Array): void {
    for (const b of bytes) {
      if (this.rx.length >= FIFO_SIZE) this.lsr |= LSR_OE;
      else this.rx.push(b);
    }
    if (this.rx.length) this.lsr |= LSR_DR;
    this.#update();
  }

  /** Room in the receive FIFO (front ends throttle on it). */
  get rxSpace(): number {
    return FIFO_SIZE - this.rx.length;
  }

  #iir(): number {
    let id = IIR_NO_INT;
    if ((this.ier & IER_RLSI) && (this.lsr & LSR_OE)) id = IIR_RLSI;
    else if ((this.ier & IER_RDI) && (this.lsr & LSR_DR)) id = IIR_RDI;
    else if ((this.ier & IER_THRI) && this.thrIpending) id = IIR_THRI;
    else if ((this.ier & IER_MSI) && (this.msr & 0x0f)) id = IIR_MSI;
    return id;
  }

  #update(): void {
    const level = this.#iir() !== IIR_NO_INT && (this.mcr & MCR_OUT2) !== 0;
    if (level !== this.#irqLevel) {
      this.#irqLevel = level;
      this.setIrq(level);
    }
  }

  read(reg: number): number {
    switch (reg) {
      case 0: {
        if (this.lcr & LCR_DLAB) return this.divisor & 0xff;
        const v = this.rx.length ? this.rx.shift()! : 0;
        if (!this.rx.length) this.lsr &= ~LSR_DR;
        this.#update();
        return v;
      }
      case 1:
        return this.lcr & LCR_DLAB ? this.divisor >> 8 : this.ier;
      case 2: {
        const id = this.#iir();
        if (id === IIR_THRI) this.thrIpending = false;
        this.#update();
        return id | (this.fcr & FCR_ENABLE ? IIR_FIFO : 0);
      }
      case 3:
        return this.lcr;
      case 4:
        return this.mcr;
      case 5: {
        const v = this.lsr;
        this.lsr &= ~LSR_OE;
        this.#update();
        return v;
      }
      case 6: {
        let v = this.msr;
        if (this.mcr & MCR_LOOP) {
          v = (v & 0x0f) | ((this.mcr & MCR_RTS) ? MSR_CTS : 0) |
            ((this.mcr & MCR_DTR) ? MSR_DSR : 0) | ((this.mcr & MCR_OUT1) ? MSR_RI : 0) |
            ((this.mcr & MCR_OUT2) ? MSR_DCD : 0);
        }
        this.msr &= ~(MSR_DCTS | MSR_DDSR | MSR_TERI | MSR_DDCD);
        this.#update();
        return v;
      }
      default:
        return this.scr;
    }
  }

  write(reg: number, v: number): void {
    switch (reg) {
      case 0:
        if (this.lcr & LCR_DLAB) {
          this.divisor = (this.divisor & 0xff00) | v;
          return;
        }
        if (this.mcr & MCR_LOOP) this.receive(new Uint8Array([v]));
        else this.backend.write(new Uint8Array([v]));
        this.thrIpending = true;
        this.lsr |= LSR_THRE | LSR_TEMT;
        break;
      case 1:
        if (this.lcr & LCR_DLAB) {
          this.divisor = (this.divisor & 0xff) | (v << 8);
          return;
        }
        // Enabling THRI with THR empty raises the interrupt at once, as the 16550A does.
        if ((v & IER_THRI) && !(this.ier & IER_THRI) && (this.lsr & LSR_THRE)) {
          this.thrIpending = true;
        }
        this.ier = v & 0x0f;
        break;
      case 2:
        this.fcr = v & 0xc9;
        if (v & FCR_CLEAR_RX) {
          this.rx = [];
          this.lsr &= ~LSR_DR;
        }
        break;
      case 3:
        this.lcr = v;
        return;
      case 4:
        this.mcr = v & 0x1f;
        break;
      case 5:
        return;
      case 6:
        return;
      default:
        this.scr = v;
        return;
    }
    this.#update();
  }
}
