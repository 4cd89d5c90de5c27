/**
 * PCI bus 0 with configuration mechanism #1 (address at 0xCF8, data at 0xCFC-0xCFF), and the
 * PciDevice base: a 256-byte configuration space with write masks, BARs that map I/O ports or
 * MMIO regions when the command register enables them, and an expansion ROM BAR.
 */
import type { AccessSize } from "../cpu/bus.ts";
import type { Machine } from "../machine.ts";
import { type MmioHandler, type MmioRegion, romHandler } from "./memory.ts";
import type { PortHandler } from "./iobus.ts";

export const PCI_VENDOR_ID = 0x00;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
const PCI_COMMAND_IO = 1, PCI_COMMAND_MEMORY = 2;

/** A BAR: an I/O or memory window the guest places. */
interface Bar {
  io: boolean;
  size: number;
  prefetch: boolean;
  /** Where it is mapped now (-1: not mapped). */
  mapped: number;
  port?: PortHandler;
  region?: MmioRegion;
}

export class PciDevice {
  readonly config: Uint8Array = new Uint8Array(256);
  /** Bits the guest may write. */
  readonly wmask: Uint8Array = new Uint8Array(256);
  readonly bars: (Bar | undefined)[] = new Array(6);
  rom: Uint8Array | null = null;
  #romRegion: MmioRegion | null = null;
  machine!: Machine;
  devfn = 0;

  constructor(vendor: number, device: number, classCode: number, revision = 0) {
    const v = new DataView(this.config.buffer);
    v.setUint16(0, vendor, true);
    v.setUint16(2, device, true);
    this.config[PCI_REVISION_ID] = revision;
    this.config[0x09] = classCode & 0xff;
    this.config[0x0a] = (classCode >> 8) & 0xff;
    this.config[0x0b] = (classCode >> 16) & 0xff;
    // QEMU's subsystem IDs (Red Hat, QEMU): SeaBIOS recognises QEMU by them.
    v.setUint16(PCI_SUBSYSTEM_VENDOR_ID, 0x1af4, true);
    v.setUint16(PCI_SUBSYSTEM_VENDOR_ID + 2, 0x1100, true);
    this.wmask[PCI_COMMAND] = 0x07; // I/O, memory, bus master
    this.wmask[PCI_COMMAND + 1] = 0x05; // SERR, interrupt disable
    this.wmask[PCI_INTERRUPT_LINE] = 0xff;
    this.wmask[0x0c] = 0xff; // cache line size
    this.wmask[0x0d] = 0xff; // latency timer
  }

  get16(o: number): number {
    return this.config[o] | (this.config[o + 1] << 8);
  }
  get32(o: number): number {
    return (this.get16(o) | (this.get16(o + 2) << 16)) >>> 0;
  }
  set16(o: number, v: number): void {
    this.config[o] = v & 0xff;
    this.config[o + 1] = (v >> 8) & 0xff;
  }
  set32(o: number, v: number): void {
    this.set16(o, v & 0xffff);
    this.set16(o + 2, v >>> 16);
  }

  /** Declares an I/O BAR. */
  ioBar(i: number, size: number, handler: PortHandler): void {
    this.bars[i] = { io: true, size, prefetch: false, mapped: -1, port: handler };
    this.config[PCI_BASE_ADDRESS_0 + i * 4] = 1;
    this.set32(PCI_BASE_ADDRESS_0 + i * 4, 1);
    this.#maskBar(PCI_BASE_ADDRESS_0 + i * 4, ~(size - 1) & 0xfffffffc);
  }

  /** Declares a 32-bit memory BAR served by handler (or backed by rom bytes). */
  memBar(i: number, size: number, handler: MmioHandler, prefetch = false, rom?: Uint8Array): void {
    const region: MmioRegion = { name: `pci-bar${i}`, base: -1, size, handler, rom };
    this.bars[i] = { io: false, size, prefetch, mapped: -1, region };
    this.set32(PCI_BASE_ADDRESS_0 + i * 4, prefetch ? 8 : 0);
    this.#maskBar(PCI_BASE_ADDRESS_0 + i * 4, ~(size - 1) & 0xfffffff0);
  }

  /** Declares the expansion ROM. */
  setRom(bytes: Uint8Array): void {
    let size = 2048;
    while (size < bytes.length) size *= 2;
    const padded = new Uint8Array(size).fill(0xff);
    padded.set(bytes);
    this.rom = padded;
    const region: MmioRegion = {
      name: "pci-rom",
      base: -1,
      size,
      handler: { read: () => 0, write() {} },
      rom: padded,
    };
    (region as { handler: MmioHandler }).handler = romHandler(padded, () => region.base);
    this.#romRegion = region;
    this.#maskBar(PCI_ROM_ADDRESS, (~(size - 1) & 0xfffff800) | 1);
  }

  #maskBar(o: number, mask: number): void {
    for (let i = 0; i < 4; i++) this.wmask[o + i] = (mask >>> (8 * i)) & 0xff;
  }

  readConfig(o: number, size: AccessSize): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + this.config[(o + i) & 0xff];
    return v;
  }

  writeConfig(o: number, size: AccessSize, value: number): void {
    for (let i = 0; i < size; i++) {
      const a = o + i;
      if (a > 0xff) break;
      const b = (value >>> (8 * i)) & 0xff;
      const m = this.wmask[a];
      this.config[a] = (this.config[a] & ~m) | (b & m);
    }
    this.configWritten(o, size);
  }

  /** Hook: a config write landed (devices with registers in config space override). */
  configWritten(o: number, size: number): void {
    if (
      o < PCI_BASE_ADDRESS_0 + 24 && o + size > PCI_COMMAND ||
      (o <= PCI_ROM_ADDRESS + 3 && o + size > PCI_ROM_ADDRESS)
    ) {
      this.updateMappings();
    }
  }

  /** Maps or unmaps BARs after a BAR or the command register changed. */
  updateMappings(): void {
    const cmd = this.get16(PCI_COMMAND);
    const m = this.machine;
    for (let i = 0; i < 6; i++) {
      const bar = this.bars[i];
      if (!bar) continue;
      const raw = this.get32(PCI_BASE_ADDRESS_0 + i * 4);
      let addr = -1;
      if (bar.io) {
        const a = raw & 0xfffc;
        if ((cmd & PCI_COMMAND_IO) && a && a + bar.size <= 0x10000) addr = a;
      } else {
        const a = raw & 0xfffffff0;
        if ((cmd & PCI_COMMAND_MEMORY) && a && a !== (~(bar.size - 1) & 0xfffffff0) >>> 0) {
          addr = a >>> 0;
        }
      }
      if (addr === bar.mapped) continue;
      if (bar.io) {
        if (bar.mapped >= 0) m.io.unregister(bar.mapped, bar.size);
        if (addr >= 0) m.io.register(addr, bar.size, bar.port!);
      } else {
        const r = bar.region!;
        if (bar.mapped < 0 && addr >= 0) {
          r.base = addr;
          m.memory.add(r);
        } else if (addr < 0) {
          m.memory.remove(r);
          r.base = -1;
        } else {
          m.memory.move(r, addr);
        }
      }
      bar.mapped = addr;
    }
    if (this.#romRegion) {
      const raw = this.get32(PCI_ROM_ADDRESS);
      const r = this.#romRegion;
      const want = (raw & 1) && (cmd & PCI_COMMAND_MEMORY) ? (raw & 0xfffff800) >>> 0 : -1;
      if (want !== r.base) {
        if (r.base >= 0) m.memory.remove(r);
        r.base = want;
        if (want >= 0) m.memory.add(r);
      }
    }
  }

  /** Reset: BARs and command cleared, mappings dropped. */
  resetPci(): void {
    this.set16(PCI_COMMAND, 0);
    for (let i = 0; i < 6; i++) {
      const bar = this.bars[i];
      if (!bar) continue;
      this.set32(PCI_BASE_ADDRESS_0 + i * 4, bar.io ? 1 : bar.prefetch ? 8 : 0);
    }
    if (this.rom) this.set32(PCI_ROM_ADDRESS, 0);
    this.updateMappings();
  }
}

/** Bus 0 and the configuration mechanism #1 ports. */
export class PciBus {
  readonly devices: Map<number, PciDevice> = new Map();
  address = 0;

  constructor(readonly machine: Machine) {}

  add(dev: PciDevice, slot: number, fn = 0): void {
    dev.devfn = (slot << 3) | fn;
    dev.machine = this.machine;
    this.devices.set(dev.devfn, dev);
  }

  register(): void {
    const io = this.machine.io;
    io.register(0xcf8, 4, {
      read: (p, size) => (p === 0xcf8 && size === 4 ? this.address : 0xffffffff),
      write: (p, size, v) => {
        if (p === 0xcf8 && size === 4) this.address = v >>> 0;
        else if (p === 0xcf9 && size === 1) this.cf9?.(v);
      },
    });
    io.register(0xcfc, 4, {
      read: (p, size) => {
        const d = this.#target();
        if (!d) return 0xffffffff;
        return d.readConfig((this.address & 0xfc) + (p & 3), size);
      },
      write: (p, size, v) => this.#target()?.writeConfig((this.address & 0xfc) + (p & 3), size, v),
    });
  }

  /** The byte port 0xCF9 (PIIX3 reset control) shares this dword; the PIIX3 fills this in. */
  cf9: ((v: number) => void) | null = null;

  #target(): PciDevice | undefined {
    const a = this.address;
    if (!(a & 0x80000000) || ((a >> 16) & 0xff) !== 0) return undefined;
    return this.devices.get((a >> 8) & 0xff);
  }

  reset(): void {
    this.address = 0;
    for (const d of this.devices.values()) d.resetPci();
  }
}
