/**
 * The PIIX3 PCI-to-ISA bridge (PCI 00:01.0): PIRQ A-D routing to ISA IRQs (config 0x60-0x63)
 * and the reset control register at port 0xCF9.
 */
import type { Machine } from "../machine.ts";
import { PciDevice } from "./pci.ts";

export const PIIX_PIRQC = 0x60;
const RCR_SYS_RST = 2, RCR_RST_CPU = 4;

export class Piix3 extends PciDevice {
  rcr = 0;
  /** Levels of PCI INTA-D lines, per device. */
  readonly #pirqLevels = [0, 0, 0, 0];

  constructor(machine: Machine) {
    super(0x8086, 0x7000, 0x060100, 0x00);
    this.machine = machine;
    this.config[0x0e] = 0x80; // multi-function
    for (let i = 0; i < 4; i++) {
      this.config[PIIX_PIRQC + i] = 0x80;
      this.wmask[PIIX_PIRQC + i] = 0x8f;
    }
  }

  /** Port 0xCF9 (shared dword with 0xCF8, so the PCI bus forwards it). */
  writeRcr(v: number): void {
    if (v & RCR_RST_CPU) {
      this.machine.requestReset();
    }
    this.rcr = v & RCR_SYS_RST;
  }

  /** A PCI interrupt pin: pirq 0..3 (A..D), routed to the ISA IRQ the guest chose. */
  setPirq(pirq: number, level: boolean): void {
    this.#pirqLevels[pirq] = level ? 1 : 0;
    const route = this.config[PIIX_PIRQC + pirq];
    if (route & 0x80) return;
    const irq = route & 0x0f;
    let any = false;
    for (let i = 0; i < 4; i++) {
      const r = this.config[PIIX_PIRQC + i];
      if (!(r & 0x80) && (r & 0x0f) === irq && this.#pirqLevels[i]) any = true;
    }
    this.machine.pic.setIrq(irq, any);
  }

  reset(): void {
    this.resetPci();
    for (let i = 0; i < 4; i++) this.config[PIIX_PIRQC + i] = 0x80;
    this.rcr = 0;
  }
}
