/**
 * The 8042 keyboard controller (ports 0x60/0x64) with a PS/2 keyboard and mouse behind it. The
 * controller's output port drives the A20 gate and the CPU reset line (command 0xD1, 0xFE).
 */
import type { Machine } from "../machine.ts";

const STAT_OBF = 0x01, STAT_SYS = 0x04, STAT_CMD = 0x08, STAT_UNLOCKED = 0x10, STAT_AUX_OBF = 0x20;
const CCB_KBD_INT = 0x01, CCB_AUX_INT = 0x02, CCB_SYS = 0x04, CCB_KBD_DISABLE = 0x10;
const CCB_AUX_DISABLE = 0x20, CCB_TRANSLATE = 0x40;
const OUT_RESET = 0x01, OUT_A20 = 0x02;
const ACK = 0xfa;

/** Scancode set 2 to set 1 translation (8042 translation mode), for make codes below 0x80. */
const XLATE: number[] = (() => {
  // deno-fmt-ignore
  const t = [
    0xff,0x43,0x41,0x3f,0x3d,0x3b,0x3c,0x58,0x64,0x44,0x42,0x40,0x3e,0x0f,0x29,0x59,
    0x65,0x38,0x2a,0x70,0x1d,0x10,0x02,0x5a,0x66,0x71,0x2c,0x1f,0x1e,0x11,0x03,0x5b,
    0x67,0x2e,0x2d,0x20,0x12,0x05,0x04,0x5c,0x68,0x39,0x2f,0x21,0x14,0x13,0x06,0x5d,
    0x69,0x31,0x30,0x23,0x22,0x15,0x07,0x5e,0x6a,0x72,0x32,0x24,0x16,0x08,0x09,0x5f,
    0x6b,0x33,0x25,0x17,0x18,0x0b,0x0a,0x60,0x6c,0x34,0x35,0x26,0x27,0x19,0x0c,0x61,
    0x6d,0x73,0x28,0x74,0x1a,0x0d,0x62,0x6e,0x3a,0x36,0x1c,0x1b,0x75,0x2b,0x63,0x76,
    0x55,0x56,0x77,0x78,0x79,0x7a,0x0e,0x7b,0x7c,0x4f,0x7d,0x4b,0x47,0x7e,0x7f,0x6f,
    0x52,0x53,0x50,0x4c,0x4d,0x48,0x01,0x45,0x57,0x4e,0x51,0x4a,0x37,0x49,0x46,0x54,
  ];
  return t;
})();

export class I8042 {
  status = STAT_SYS | STAT_UNLOCKED;
  ccb = CCB_KBD_INT | CCB_SYS | CCB_TRANSLATE;
  outPort = OUT_RESET | OUT_A20;
  /** Bytes waiting for the guest, tagged keyboard (false) or aux (true). */
  queue: { v: number; aux: boolean }[] = [];
  /** A controller command waiting for its data byte. */
  #pendingCmd = 0;
  /** A keyboard (or mouse) command waiting for its argument. */
  #kbdCmd = 0;
  #auxCmd = 0;
  kbdEnabled = true;
  auxEnabled = false;
  scancodeSet = 2;
  #breakPrefix = false;
  #irq1 = false;
  #irq12 = false;

  constructor(readonly machine: Machine) {}

  register(): void {
    this.machine.io.register(0x60, 1, {
      read: () => this.readData(),
      write: (_p, _s, v) => this.writeData(v),
    });
    this.machine.io.register(0x64, 1, {
      read: () => this.status,
      write: (_p, _s, v) => this.writeCommand(v),
    });
  }

  reset(): void {
    this.status = STAT_SYS | STAT_UNLOCKED;
    this.ccb = CCB_KBD_INT | CCB_SYS | CCB_TRANSLATE;
    this.outPort = OUT_RESET | OUT_A20;
    this.queue = [];
    this.#pendingCmd = this.#kbdCmd = this.#auxCmd = 0;
    this.kbdEnabled = true;
    this.auxEnabled = false;
    this.scancodeSet = 2;
    this.#update();
  }

  #push(v: number, aux = false): void {
    this.queue.push({ v, aux });
    this.#update();
  }

  #update(): void {
    const head = this.queue[0];
    this.status &= ~(STAT_OBF | STAT_AUX_OBF);
    let irq1 = false, irq12 = false;
    if (head) {
      this.status |= STAT_OBF | (head.aux ? STAT_AUX_OBF : 0);
      if (head.aux) irq12 = (this.ccb & CCB_AUX_INT) !== 0;
      else irq1 = (this.ccb & CCB_KBD_INT) !== 0;
    }
    if (irq1 !== this.#irq1) {
      this.#irq1 = irq1;
      this.machine.pic.setIrq(1, irq1);
    }
    if (irq12 !== this.#irq12) {
      this.#irq12 = irq12;
      this.machine.pic.setIrq(12, irq12);
    }
  }

  readData(): number {
    const head = this.queue.shift();
    // Reading empties the output buffer: the interrupt line drops, and the next byte (if any)
    // raises it again — a fresh edge for the edge-triggered PIC input.
    this.status &= ~(STAT_OBF | STAT_AUX_OBF);
    if (this.#irq1) {
      this.#irq1 = false;
      this.machine.pic.setIrq(1, false);
    }
    if (this.#irq12) {
      this.#irq12 = false;
      this.machine.pic.setIrq(12, false);
    }
    this.#update();
    return head ? head.v : 0;
  }

  writeCommand(v: number): void {
    this.status |= STAT_CMD;
    switch (v) {
      case 0x20:
        this.#push(this.ccb);
        break;
      case 0x60:
      case 0xd1:
      case 0xd2:
      case 0xd3:
      case 0xd4:
        this.#pendingCmd = v;
        break;
      case 0xa7:
        this.ccb |= CCB_AUX_DISABLE;
        break;
      case 0xa8:
        this.ccb &= ~CCB_AUX_DISABLE;
        break;
      case 0xa9:
        this.#push(0x00);
        break;
      case 0xaa:
        this.status |= STAT_SYS;
        this.#push(0x55);
        break;
      case 0xab:
        this.#push(0x00);
        break;
      case 0xad:
        this.ccb |= CCB_KBD_DISABLE;
        break;
      case 0xae:
        this.ccb &= ~CCB_KBD_DISABLE;
        break;
      case 0xc0:
        this.#push(0x00);
        break;
      case 0xd0:
        this.#push(this.outPort);
        break;
      case 0xdd: // A20 off (HP vectra)
        this.machine.setA20(false);
        break;
      case 0xdf:
        this.machine.setA20(true);
        break;
      default:
        if ((v & 0xf0) === 0xf0) {
          if (!(v & 1)) this.machine.requestReset(); // pulse output bit 0: CPU reset
        }
    }
    this.#update();
  }

  writeData(v: number): void {
    this.status &= ~STAT_CMD;
    const cmd = this.#pendingCmd;
    this.#pendingCmd = 0;
    switch (cmd) {
      case 0x60:
        this.ccb = v;
        this.status = (this.status & ~STAT_SYS) | (v & CCB_SYS);
        this.#update();
        return;
      case 0xd1:
        this.outPort = v;
        this.machine.setA20((v & OUT_A20) !== 0);
        if (!(v & OUT_RESET)) this.machine.requestReset();
        return;
      case 0xd2:
        this.#push(v);
        return;
      case 0xd3:
        this.#push(v, true);
        return;
      case 0xd4:
        this.#mouseCommand(v);
        return;
    }
    this.#keyboardCommand(v);
  }

  #keyboardCommand(v: number): void {
    const arg = this.#kbdCmd;
    if (arg) {
      this.#kbdCmd = 0;
      if (arg === 0xf0 && v === 0) {
        this.#push(ACK);
        this.#push(this.scancodeSet);
        return;
      }
      if (arg === 0xf0) this.scancodeSet = v & 3 || 2;
      this.#push(ACK);
      return;
    }
    switch (v) {
      case 0xff:
        this.kbdEnabled = true;
        this.scancodeSet = 2;
        this.#push(ACK);
        this.#push(0xaa);
        break;
      case 0xf2:
        this.#push(ACK);
        this.#push(0xab);
        this.#push(0x83);
        break;
      case 0xee:
        this.#push(0xee);
        break;
      case 0xed:
      case 0xf0:
      case 0xf3:
        this.#kbdCmd = v;
        this.#push(ACK);
        break;
      case 0xf4:
        this.kbdEnabled = true;
        this.#push(ACK);
        break;
      case 0xf5:
        this.kbdEnabled = false;
        this.#push(ACK);
        break;
      case 0xf6:
        this.scancodeSet = 2;
        this.#push(ACK);
        break;
      default:
        this.#push(ACK);
    }
  }

  #mouseCommand(v: number): void {
    if (this.#auxCmd) {
      this.#auxCmd = 0;
      this.#push(ACK, true);
      return;
    }
    switch (v) {
      case 0xff:
        this.auxEnabled = false;
        this.#push(ACK, true);
        this.#push(0xaa, true);
        this.#push(0x00, true);
        break;
      case 0xf2:
        this.#push(ACK, true);
        this.#push(0x00, true);
        break;
      case 0xe9:
        this.#push(ACK, true);
        for (const b of [0x00, 0x02, 0x64]) this.#push(b, true);
        break;
      case 0xe8:
      case 0xf3:
        this.#auxCmd = v;
        this.#push(ACK, true);
        break;
      case 0xf4:
        this.auxEnabled = true;
        this.#push(ACK, true);
        break;
      case 0xf5:
        this.auxEnabled = false;
        this.#push(ACK, true);
        break;
      default:
        this.#push(ACK, true);
    }
  }

  /** A key event in scancode set 2 bytes (make codes; `release` adds the F0 prefix). */
  keySet2(code: number, release: boolean, extended = false): void {
    if (!this.kbdEnabled || (this.ccb & CCB_KBD_DISABLE)) return;
    if (this.ccb & CCB_TRANSLATE) {
      if (extended) this.#push(0xe0);
      this.#push((XLATE[code] ?? code) | (release ? 0x80 : 0));
    } else {
      if (extended) this.#push(0xe0);
      if (release) this.#push(0xf0);
      this.#push(code);
    }
    this.#breakPrefix = false;
  }
}
