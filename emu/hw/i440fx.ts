/**
 * The i440FX host bridge (PCI 00:00.0) and its Programmable Attribute Map: the PAM registers
 * (config 0x59-0x5F) choose, per segment of 0xC0000-0xFFFFF, whether reads come from shadow RAM
 * or from ROM (the BIOS at 0xE0000-0xFFFFF, nothing below) and whether writes reach the RAM.
 *
 * One guest RAM array holds what the CPU reads; the other half of each segment (the ROM image
 * or the hidden shadow RAM) waits in a side buffer and the two swap when the read source flips.
 * Pages become Ram (read/write RAM) or Rom (reads from `ram`, writes trapped) — so KVM maps them
 * as read-write or read-only slots and the interpreter as RAM or ROM pages.
 */
import { PageKind } from "../cpu/bus.ts";
import type { Machine } from "../machine.ts";
import { PciDevice } from "./pci.ts";

export const I440FX_PAM0 = 0x59;
export const I440FX_SMRAM = 0x72;
const PAM_RE = 1, PAM_WE = 2;
const SHADOW_BASE = 0xc0000;
const SHADOW_SIZE = 0x40000;

interface PamSegment {
  base: number;
  size: number;
  /** Config register and nibble. */
  reg: number;
  shift: number;
  attr: number;
}

export class I440fx extends PciDevice {
  readonly segments: PamSegment[] = [];
  /** The inactive view of 0xC0000-0xFFFFF (ROM image while shadow RAM is read, and vice versa). */
  readonly side: Uint8Array = new Uint8Array(SHADOW_SIZE);
  /** What reads show with PAM read-enable clear: the BIOS's low alias, 0xFF elsewhere. */
  readonly romImage: Uint8Array = new Uint8Array(SHADOW_SIZE).fill(0xff);

  constructor(machine: Machine, bios: Uint8Array) {
    super(0x8086, 0x1237, 0x060000, 0x02);
    this.machine = machine;
    const isaBios = bios.subarray(Math.max(0, bios.length - 0x20000));
    this.romImage.set(isaBios, SHADOW_SIZE - isaBios.length);
    this.segments.push({ base: 0xf0000, size: 0x10000, reg: I440FX_PAM0, shift: 4, attr: 0 });
    for (let i = 0; i < 12; i++) {
      this.segments.push({
        base: SHADOW_BASE + i * 0x4000,
        size: 0x4000,
        reg: I440FX_PAM0 + 1 + (i >> 1),
        shift: (i & 1) * 4,
        attr: 0,
      });
    }
    for (let r = I440FX_PAM0; r <= I440FX_PAM0 + 6; r++) {
      this.wmask[r] = r === I440FX_PAM0 ? 0x30 : 0x33;
    }
    this.wmask[I440FX_SMRAM] = 0x78;
    this.config[I440FX_SMRAM] = 0x02;
    machine.memory.romWrite = (addr, size, value) => this.#romWrite(addr, size, value);
    this.#powerOn();
  }

  #powerOn(): void {
    const ram = this.machine.ram;
    ram.set(this.romImage, SHADOW_BASE);
    this.machine.memory.written(SHADOW_BASE, SHADOW_SIZE);
    this.side.fill(0);
    for (const s of this.segments) s.attr = 0;
    for (let r = I440FX_PAM0; r <= I440FX_PAM0 + 6; r++) this.config[r] = 0;
    this.machine.memory.setKind(SHADOW_BASE, SHADOW_SIZE, PageKind.Rom);
  }

  override configWritten(o: number, size: number): void {
    super.configWritten(o, size);
    if (o + size > I440FX_PAM0 && o <= I440FX_PAM0 + 6) this.#applyPam();
  }

  #applyPam(): void {
    const ram = this.machine.ram;
    const mem = this.machine.memory;
    let changed = false;
    for (const s of this.segments) {
      const attr = (this.config[s.reg] >> s.shift) & 3;
      if (attr === s.attr) continue;
      changed = true;
      if ((attr & PAM_RE) !== (s.attr & PAM_RE)) {
        const o = s.base - SHADOW_BASE;
        const tmp = ram.slice(s.base, s.base + s.size);
        ram.set(this.side.subarray(o, o + s.size), s.base);
        this.side.set(tmp, o);
        mem.written(s.base, s.size);
      }
      s.attr = attr;
      mem.kinds.fill(
        attr === (PAM_RE | PAM_WE) ? PageKind.Ram : PageKind.Rom,
        s.base >>> 12,
        (s.base + s.size) >>> 12,
      );
    }
    if (changed) mem.changed();
  }

  /** A write to a Rom page in the shadow area: it reaches the hidden shadow RAM when WE is set. */
  #romWrite(addr: number, size: number, value: number): boolean {
    if (addr < SHADOW_BASE || addr >= SHADOW_BASE + SHADOW_SIZE) return false;
    const s = this.segments.find((x) => addr >= x.base && addr < x.base + x.size);
    if (!s || !(s.attr & PAM_WE) || (s.attr & PAM_RE)) return true;
    for (let i = 0; i < size; i++) this.side[addr - SHADOW_BASE + i] = (value >>> (8 * i)) & 0xff;
    return true;
  }

  reset(): void {
    this.resetPci();
    this.config[I440FX_SMRAM] = 0x02;
    this.#powerOn();
  }
}
