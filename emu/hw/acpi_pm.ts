/**
 * The PIIX4 power-management function (PCI 00:01.3): the ACPI PM1a event/control registers and
 * the 3.579545 MHz PM timer at the I/O base the guest programs (PMBA, config 0x40, enabled by
 * PMREGMISC bit 0), the SCI on IRQ 9, and QEMU's GPE0 block at 0xAFE0. Writing SLP_EN with
 * SLP_TYP 0 to PM1a_CNT powers the machine off, as on QEMU's pc machine.
 */
import type { Machine } from "../machine.ts";
import { PciDevice } from "./pci.ts";

export const PIIX4_PMBA = 0x40;
export const PIIX4_PMREGMISC = 0x80;
export const PM_TIMER_FREQ = 3579545;
const PM_SIZE = 64;
const STS_TMR = 1, STS_PWRBTN = 0x100;
const CNT_SCI_EN = 1, CNT_SLP_EN = 0x2000;
const SCI_IRQ = 9;
const GPE0_BASE = 0xafe0;
const APM_CNT = 0xb2, APM_STS = 0xb3;
const ACPI_ENABLE = 0xf1, ACPI_DISABLE = 0xf0;

export class Piix4Pm extends PciDevice {
  sts = 0;
  en = 0;
  cnt = 0;
  gpeSts = 0;
  gpeEn = 0;
  apmCnt = 0;
  apmSts = 0;
  #mapped = -1;

  constructor(machine: Machine) {
    super(0x8086, 0x7113, 0x068000, 0x03);
    this.machine = machine;
    this.config[0x3d] = 1; // INTA
    // DEVACTB.APMC_EN already set: demu has no SMM, and SeaBIOS then skips its SMM setup
    // (QEMU does the same with smm=off).
    this.config[0x5b] = 0x02;
    this.set32(PIIX4_PMBA, 1);
    this.wmask[PIIX4_PMBA] = 0xc0;
    this.wmask[PIIX4_PMBA + 1] = 0xff;
    this.wmask[PIIX4_PMREGMISC] = 0x01;
    // The APM control port: with no SMM, QEMU's PIIX4 turns ACPI mode on and off here
    // (the FADT's SMI_CMD, ACPI_ENABLE 0xF1 / ACPI_DISABLE 0xF0).
    machine.io.register(APM_CNT, 2, {
      read: (p) => p === APM_CNT ? this.apmCnt : this.apmSts,
      write: (p, _s, v) => {
        if (p === APM_STS) {
          this.apmSts = v;
          return;
        }
        this.apmCnt = v;
        if (v === ACPI_ENABLE) this.cnt |= CNT_SCI_EN;
        else if (v === ACPI_DISABLE) this.cnt &= ~CNT_SCI_EN;
        this.#updateSci();
      },
    });
    machine.io.register(GPE0_BASE, 4, {
      read: (p) => {
        const o = p - GPE0_BASE;
        const v = o < 2 ? this.gpeSts : this.gpeEn;
        return (v >> ((o & 1) * 8)) & 0xff;
      },
      write: (p, _s, v) => {
        const o = p - GPE0_BASE;
        if (o < 2) this.gpeSts &= ~(v << ((o & 1) * 8));
        else {
          const sh = (o & 1) * 8;
          this.gpeEn = (this.gpeEn & ~(0xff << sh)) | ((v & 0xff) << sh);
        }
        this.#updateSci();
      },
    });
  }

  override configWritten(o: number, size: number): void {
    super.configWritten(o, size);
    const base = this.get32(PIIX4_PMBA) & 0xffc0;
    const want = (this.config[PIIX4_PMREGMISC] & 1) && base ? base : -1;
    if (want === this.#mapped) return;
    const io = this.machine.io;
    if (this.#mapped >= 0) io.unregister(this.#mapped, PM_SIZE);
    this.#mapped = want;
    if (want >= 0) {
      io.register(want, PM_SIZE, {
        read: (p, size) => this.#read(p - want, size),
        write: (p, size, v) => this.#write(p - want, size, v),
      });
    }
  }

  /** The PM timer (24 bits) from the machine clock. */
  timer(): number {
    return Math.floor(this.machine.clock.now() * PM_TIMER_FREQ / 1e9) & 0xffffff;
  }

  #read(o: number, size: number): number {
    let v: number;
    if (o >= 8 && o < 12) v = this.timer() >>> ((o - 8) * 8);
    else if (o < 2) v = this.sts >> (o * 8);
    else if (o < 4) v = this.en >> ((o - 2) * 8);
    else if (o < 6) v = this.cnt >> ((o - 4) * 8);
    else v = 0;
    return size === 4 ? v >>> 0 : v & (size === 2 ? 0xffff : 0xff);
  }

  #write(o: number, size: number, v: number): void {
    if (o === 0 || o === 1) {
      this.sts &= ~((size >= 2 && o === 0) ? v & 0xffff : (v & 0xff) << (o * 8));
      if (size === 4 && o === 0) this.#setEn(v >>> 16);
    } else if (o === 2) {
      this.#setEn(v & 0xffff);
    } else if (o === 4 || o === 5) {
      const val = o === 4 && size >= 2
        ? v & 0xffff
        : o === 4
        ? (this.cnt & 0xff00) | v
        : (this.cnt & 0xff) | (v << 8);
      this.#setCnt(val);
    }
    this.#updateSci();
  }

  #setEn(v: number): void {
    this.en = v;
  }

  #setCnt(v: number): void {
    this.cnt = v & ~CNT_SLP_EN;
    if (v & CNT_SLP_EN) {
      const typ = (v >> 10) & 7;
      if (typ === 0) this.machine.stop({ kind: "poweroff" });
    }
  }

  /** The power button (monitor's system_powerdown). */
  powerButton(): void {
    this.sts |= STS_PWRBTN;
    this.#updateSci();
  }

  #updateSci(): void {
    const level = (this.cnt & CNT_SCI_EN) !== 0 &&
      ((this.sts & this.en & (STS_PWRBTN | STS_TMR)) !== 0 || (this.gpeSts & this.gpeEn) !== 0);
    this.machine.pic.setIrq(SCI_IRQ, level);
  }

  reset(): void {
    this.resetPci();
    this.set32(PIIX4_PMBA, 1);
    this.config[PIIX4_PMREGMISC] = 0;
    this.config[0x5b] = 0x02;
    this.configWritten(PIIX4_PMREGMISC, 1);
    this.sts =
      this.en =
      this.cnt =
      this.gpeSts =
      this.gpeEn =
        0;
    this.apmCnt = this.apmSts = 0;
  }
}
