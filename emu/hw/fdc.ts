/**
 * The floppy disk controller (an 82078 at 0x3F0, IRQ 6, as QEMU's isa-fdc) with one 1.44 MB
 * drive and no medium — QEMU's pc machine has that drive by default, and SeaBIOS probes it and
 * lists it in its boot order. Commands answer as a drive without a diskette does: seeks and
 * recalibrations complete, reads and READ ID end abnormally (no ID address mark).
 */
import type { Machine } from "../machine.ts";

const MSR_RQM = 0x80, MSR_DIO = 0x40, MSR_CB = 0x10;
const DOR_NRESET = 0x04, DOR_DMAEN = 0x08;
const ST0_ABNORMAL = 0x40, ST0_SEEK_END = 0x20;
const ST1_MISSING_AM = 0x01;
const DIR_DISK_CHANGED = 0x80;
/** Delay from a command's end to its interrupt (the guest is back in its wait loop by then). */
const IRQ_DELAY_NS = 20_000;

/** Command byte counts (including the opcode) by the low 5 bits of the opcode. */
const COMMAND_LENGTH: Record<number, number> = {
  0x02: 9, // READ TRACK
  0x03: 3, // SPECIFY
  0x04: 2, // SENSE DRIVE STATUS
  0x05: 9, // WRITE DATA
  0x06: 9, // READ DATA
  0x07: 2, // RECALIBRATE
  0x08: 1, // SENSE INTERRUPT STATUS
  0x09: 9, // WRITE DELETED DATA
  0x0a: 2, // READ ID
  0x0c: 9, // READ DELETED DATA
  0x0d: 6, // FORMAT TRACK
  0x0e: 1, // DUMPREG
  0x0f: 3, // SEEK
  0x10: 1, // VERSION
  0x12: 2, // PERPENDICULAR MODE
  0x13: 4, // CONFIGURE
  0x14: 1, // LOCK
  0x18: 1, // PART ID
};

export class FloppyController {
  dor = 0;
  dsr = 0;
  ccr = 0;
  cylinder = 0;
  #cmd: number[] = [];
  #result: number[] = [];
  #pendingSense = false;
  #st0 = 0;
  #specify = [0, 0];
  #locked = false;

  /** Raises IRQ 6 a little after a command completes, as the drive's mechanics take time. */
  #irqTimer;

  constructor(readonly machine: Machine) {
    this.#irqTimer = machine.clock.timer(() => {
      if (this.dor & DOR_DMAEN) this.machine.pic.setIrq(6, true);
    });
  }

  register(): void {
    this.machine.io.register(0x3f0, 6, {
      read: (p) => this.read(p - 0x3f0),
      write: (p, _s, v) => this.write(p - 0x3f0, v),
    });
    this.machine.io.register(0x3f7, 1, {
      read: () => DIR_DISK_CHANGED, // no medium
      write: (_p, _s, v) => this.ccr = v & 3,
    });
  }

  reset(): void {
    this.dor = 0;
    this.#cmd = [];
    this.#result = [];
    this.#pendingSense = false;
    this.cylinder = 0;
    this.machine.pic.setIrq(6, false);
  }

  #irq(st0: number): void {
    this.#st0 = st0;
    this.#pendingSense = true;
    this.#raiseSoon();
  }

  #raiseSoon(): void {
    this.#irqTimer.mod(this.machine.clock.now() + IRQ_DELAY_NS);
  }

  #lowerIrq(): void {
    this.#irqTimer.del();
    this.machine.pic.setIrq(6, false);
  }

  read(reg: number): number {
    switch (reg) {
      case 0:
        return 0xff; // SRA: not a PS/2 model 30
      case 1:
        return 0xff;
      case 2:
        return this.dor;
      case 3:
        return 0;
      case 4: { // MSR
        if (!(this.dor & DOR_NRESET)) return 0;
        if (this.#result.length) return MSR_RQM | MSR_DIO | MSR_CB;
        return MSR_RQM | (this.#cmd.length ? MSR_CB : 0);
      }
      case 5: {
        const v = this.#result.shift() ?? 0;
        if (!this.#result.length) this.#lowerIrq();
        return v;
      }
      default:
        return 0xff;
    }
  }

  write(reg: number, v: number): void {
    switch (reg) {
      case 2: {
        const wasReset = !(this.dor & DOR_NRESET);
        this.dor = v;
        if (wasReset && (v & DOR_NRESET)) {
          // Leaving reset: the controller interrupts (polling mode status for each drive).
          this.#cmd = [];
          this.#result = [];
          this.#irq(0xc0);
        } else if (!(v & DOR_NRESET)) {
          this.#lowerIrq();
        }
        return;
      }
      case 4:
        this.dsr = v;
        if (v & 0x80) { // software reset
          this.#cmd = [];
          this.#result = [];
          this.#irq(0xc0);
        }
        return;
      case 5:
        this.#commandByte(v);
        return;
    }
  }

  #commandByte(v: number): void {
    if (this.#result.length) return;
    this.#cmd.push(v);
    const op = this.#cmd[0];
    const len = COMMAND_LENGTH[op & 0x1f] ?? 1;
    if (this.#cmd.length < len) return;
    const cmd = this.#cmd;
    this.#cmd = [];
    this.#execute(op, cmd);
  }

  #execute(op: number, c: number[]): void {
    const drive = (c[1] ?? 0) & 3;
    const head = ((c[1] ?? 0) >> 2) & 1;
    switch (op & 0x1f) {
      case 0x03: // SPECIFY
        this.#specify = [c[1], c[2]];
        return;
      case 0x04: // SENSE DRIVE STATUS: track 0, two-sided, no write protect info without medium
        this.#result = [0x28 | (this.cylinder === 0 ? 0x10 : 0) | (head << 2) | drive];
        return;
      case 0x07: // RECALIBRATE
        this.cylinder = 0;
        this.#irq(ST0_SEEK_END | drive);
        return;
      case 0x0f: // SEEK
        this.cylinder = c[2];
        this.#irq(ST0_SEEK_END | (head << 2) | drive);
        return;
      case 0x08: // SENSE INTERRUPT STATUS
        if (this.#pendingSense) {
          this.#pendingSense = false;
          this.#result = [this.#st0, this.cylinder];
        } else {
          this.#result = [0x80];
        }
        this.#lowerIrq();
        return;
      case 0x02:
      case 0x05:
      case 0x06:
      case 0x09:
      case 0x0a:
      case 0x0c:
      case 0x0d: { // data transfers and READ ID: no medium, no address mark
        const chrn = op === 0x0a || (op & 0x1f) === 0x0a
          ? [this.cylinder, head, 1, 2]
          : [c[2] ?? 0, c[3] ?? 0, c[4] ?? 0, c[5] ?? 0];
        this.#result = [ST0_ABNORMAL | (head << 2) | drive, ST1_MISSING_AM, 0, ...chrn];
        this.#st0 = ST0_ABNORMAL | drive;
        this.#raiseSoon();
        return;
      }
      case 0x0e: // DUMPREG
        this.#result = [
          this.cylinder,
          0,
          0,
          0,
          this.#specify[0],
          this.#specify[1],
          0,
          0,
          this.#locked ? 0x80 : 0,
          0,
        ];
        return;
      case 0x10: // VERSION: an enhanced controller
        this.#result = [0x90];
        return;
      case 0x12: // PERPENDICULAR MODE
      case 0x13: // CONFIGURE
        return;
      case 0x14: // LOCK / UNLOCK
        this.#locked = (op & 0x80) !== 0;
        this.#result = [this.#locked ? 0x10 : 0];
        return;
      case 0x18: // PART ID
        this.#result = [0x41];
        return;
      default:
        this.#result = [0x80]; // invalid command
    }
  }
}
