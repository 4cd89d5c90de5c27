/**
 * The physical address space: guest RAM as one Uint8Array (an mmap'd region under KVM), a kind
 * per 4 KiB page (RAM, ROM backed by `ram`, or device), and the MMIO regions devices register.
 */
import { type AccessSize, PageKind, PHYS_PAGE_SHIFT } from "../cpu/bus.ts";

/** A device's memory-mapped handlers; `addr` is the absolute physical address. */
export interface MmioHandler {
  read(addr: number, size: AccessSize): number;
  write(addr: number, size: AccessSize, value: number): void;
}

/** One registered MMIO range. */
export interface MmioRegion {
  readonly name: string;
  base: number;
  readonly size: number;
  readonly handler: MmioHandler;
  /**
   * For ROMs outside RAM (the BIOS flash at 4G-256K, option ROM BARs): the bytes. Accelerators
   * may map them read-only instead of trapping reads.
   */
  readonly rom?: Uint8Array;
}

/** A ROM outside RAM: reads from its bytes, writes ignored. */
export function romHandler(bytes: Uint8Array, base: () => number): MmioHandler {
  return {
    read(addr, size) {
      const o = addr - base();
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + (bytes[o + i] ?? 0xff);
      return v;
    },
    write() {},
  };
}

export class PhysMemory {
  readonly ram: Uint8Array;
  /** PageKind per page of `ram`. */
  readonly kinds: Uint8Array;
  readonly regions: MmioRegion[] = [];
  /**
   * Writes to Rom pages: a device (the PAM logic) may take them (return true); else they are
   * dropped.
   */
  romWrite: ((addr: number, size: AccessSize, value: number) => boolean) | null = null;
  /** Listeners told when page kinds or regions change (the CPU's TLB, KVM's memory slots). */
  readonly listeners: (() => void)[] = [];
  #last: MmioRegion | null = null;
  /** Unassigned accesses, for -d unimp/guest_errors. */
  onUnassigned: ((addr: number, write: boolean) => void) | null = null;

  constructor(ram: Uint8Array) {
    if (ram.length % 4096) throw new Error("RAM size must be a multiple of 4 KiB");
    this.ram = ram;
    this.kinds = new Uint8Array(ram.length >>> PHYS_PAGE_SHIFT);
  }

  pageKind(page: number): PageKind {
    return page < this.kinds.length ? this.kinds[page] as PageKind : PageKind.Mmio;
  }

  /** Sets the kind of [addr, addr+len) (page aligned) and tells the listeners. */
  setKind(addr: number, len: number, kind: PageKind): void {
    this.kinds.fill(kind, addr >>> PHYS_PAGE_SHIFT, (addr + len) >>> PHYS_PAGE_SHIFT);
    this.changed();
  }

  changed(): void {
    for (const l of this.listeners) l();
  }

  /** Listeners told when something other than the CPU wrote RAM (the interpreter's code cache). */
  readonly writeListeners: ((addr: number, length: number) => void)[] = [];

  /** A device or loader wrote ram[addr, addr+length) directly. */
  written(addr: number, length: number): void {
    for (const l of this.writeListeners) l(addr, length);
  }

  /** Registers an MMIO range (device pages must also be marked Mmio when inside RAM). */
  add(region: MmioRegion): MmioRegion {
    this.regions.push(region);
    this.changed();
    return region;
  }

  remove(region: MmioRegion): void {
    const i = this.regions.indexOf(region);
    if (i >= 0) this.regions.splice(i, 1);
    if (this.#last === region) this.#last = null;
    this.changed();
  }

  /** Moves a region (a PCI BAR reprogrammed); base -1 unmaps it. */
  move(region: MmioRegion, base: number): void {
    region.base = base;
    this.#last = null;
    this.changed();
  }

  find(addr: number): MmioRegion | null {
    const l = this.#last;
    if (l && l.base >= 0 && addr >= l.base && addr < l.base + l.size) return l;
    for (const r of this.regions) {
      if (r.base >= 0 && addr >= r.base && addr < r.base + r.size) return (this.#last = r);
    }
    return null;
  }

  read(addr: number, size: AccessSize): number {
    const r = this.find(addr);
    if (r) return r.handler.read(addr, size);
    const page = addr >>> PHYS_PAGE_SHIFT;
    if (addr + size <= this.ram.length && this.kinds[page] !== PageKind.Mmio) {
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + this.ram[addr + i];
      return v;
    }
    this.onUnassigned?.(addr, false);
    return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
  }

  write(addr: number, size: AccessSize, value: number): void {
    const r = this.find(addr);
    if (r) return r.handler.write(addr, size, value);
    const page = addr >>> PHYS_PAGE_SHIFT;
    if (page < this.kinds.length) {
      const k = this.kinds[page];
      if (k === PageKind.Ram) {
        for (let i = 0; i < size; i++) this.ram[addr + i] = (value >>> (8 * i)) & 0xff;
        return;
      }
      if (k === PageKind.Rom) {
        this.romWrite?.(addr, size, value);
        return;
      }
    }
    this.onUnassigned?.(addr, true);
  }
}
