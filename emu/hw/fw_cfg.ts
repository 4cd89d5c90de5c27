/**
 * QEMU's firmware configuration device (fw_cfg) on the I/O ports SeaBIOS expects: selector
 * 0x510, data 0x511, DMA address 0x514 (big-endian, high half first). Items are byte strings by
 * key; named files get keys from 0x20 and are listed in the file directory (key 0x19).
 */
import type { Machine } from "../machine.ts";

export const FW_CFG_SIGNATURE = 0x00;
export const FW_CFG_ID = 0x01;
export const FW_CFG_UUID = 0x02;
export const FW_CFG_RAM_SIZE = 0x03;
export const FW_CFG_NOGRAPHIC = 0x04;
export const FW_CFG_NB_CPUS = 0x05;
export const FW_CFG_KERNEL_ADDR = 0x07;
export const FW_CFG_KERNEL_SIZE = 0x08;
export const FW_CFG_KERNEL_CMDLINE = 0x09;
export const FW_CFG_INITRD_ADDR = 0x0a;
export const FW_CFG_INITRD_SIZE = 0x0b;
export const FW_CFG_BOOT_DEVICE = 0x0c;
export const FW_CFG_NUMA = 0x0d;
export const FW_CFG_BOOT_MENU = 0x0e;
export const FW_CFG_MAX_CPUS = 0x0f;
export const FW_CFG_FILE_DIR = 0x19;
export const FW_CFG_FILE_FIRST = 0x20;
export const FW_CFG_IRQ0_OVERRIDE = 0x8002;

/** FW_CFG_ID bits: the traditional interface and DMA. */
const FW_CFG_VERSION = 1, FW_CFG_VERSION_DMA = 2;
const DMA_CTL_ERROR = 1,
  DMA_CTL_READ = 2,
  DMA_CTL_SKIP = 4,
  DMA_CTL_SELECT = 8,
  DMA_CTL_WRITE = 0x10;
/** What reading the DMA port returns: "QEMU CFG" as a big-endian u64. */
const DMA_SIGNATURE = [0x51, 0x45, 0x4d, 0x55, 0x20, 0x43, 0x46, 0x47];
const FILE_NAME_SIZE = 56;

/** Little-endian helpers for item values. */
export function le16(v: number): Uint8Array {
  return new Uint8Array([v & 0xff, (v >> 8) & 0xff]);
}
export function le32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}
export function le64(v: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
  return b;
}

export class FwCfg {
  readonly items: Map<number, Uint8Array> = new Map();
  readonly files: { name: string; key: number }[] = [];
  /** Guest writes to a file (etc/... written through DMA) are delivered here. */
  readonly writeCallbacks: Map<number, (data: Uint8Array) => void> = new Map();
  selector = 0;
  offset = 0;
  #dmaHigh = 0;

  constructor(readonly machine: Machine) {
    this.items.set(FW_CFG_SIGNATURE, new TextEncoder().encode("QEMU"));
    this.items.set(FW_CFG_ID, le32(FW_CFG_VERSION | FW_CFG_VERSION_DMA));
    this.items.set(FW_CFG_UUID, new Uint8Array(16));
    this.#updateDir();
  }

  register(): void {
    const io = this.machine.io;
    io.register(0x510, 2, {
      read: (p, size) => {
        if (p === 0x511) return this.readByte();
        return size === 2 ? this.selector : 0;
      },
      write: (p, size, v) => {
        if (p === 0x510 && size >= 2) this.select(v & 0xffff);
      },
    });
    io.register(0x514, 8, {
      read: (p, size) => {
        const o = p - 0x514;
        let v = 0;
        for (let i = 0; i < size; i++) v = v * 256 + (DMA_SIGNATURE[o + i] ?? 0);
        return v;
      },
      write: (p, size, v) => {
        if (size !== 4) return;
        if (p === 0x514) this.#dmaHigh = bswap32(v);
        else if (p === 0x518) this.dma(this.#dmaHigh * 2 ** 32 + bswap32(v));
      },
    });
  }

  /** Sets a numbered item. */
  add(key: number, data: Uint8Array): void {
    this.items.set(key, data);
  }

  /** Adds (or replaces) a named file; returns its key. */
  addFile(name: string, data: Uint8Array, onWrite?: (data: Uint8Array) => void): number {
    let f = this.files.find((x) => x.name === name);
    if (!f) {
      f = { name, key: FW_CFG_FILE_FIRST + this.files.length };
      this.files.push(f);
    }
    this.items.set(f.key, data);
    if (onWrite) this.writeCallbacks.set(f.key, onWrite);
    this.#updateDir();
    return f.key;
  }

  #updateDir(): void {
    const sorted = [...this.files].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    const dir = new Uint8Array(4 + sorted.length * 64);
    const v = new DataView(dir.buffer);
    v.setUint32(0, sorted.length);
    sorted.forEach((f, i) => {
      const o = 4 + i * 64;
      v.setUint32(o, this.items.get(f.key)?.length ?? 0);
      v.setUint16(o + 4, f.key);
      const name = new TextEncoder().encode(f.name).subarray(0, FILE_NAME_SIZE - 1);
      dir.set(name, o + 8);
    });
    this.items.set(FW_CFG_FILE_DIR, dir);
  }

  select(key: number): void {
    this.selector = key;
    this.offset = 0;
  }

  readByte(): number {
    const item = this.items.get(this.selector);
    if (!item || this.offset >= item.length) return 0;
    return item[this.offset++];
  }

  /** Runs the DMA descriptor at guest physical address addr. */
  dma(addr: number): void {
    const ram = this.machine.ram;
    if (addr + 16 > ram.length) return;
    const d = new DataView(ram.buffer, ram.byteOffset + addr, 16);
    let control = d.getUint32(0);
    let length = d.getUint32(4);
    const target = Number(d.getBigUint64(8));
    if (control & DMA_CTL_SELECT) this.select(control >>> 16);
    const item = this.items.get(this.selector);
    let error = false;
    let t = target;
    if (control & (DMA_CTL_READ | DMA_CTL_SKIP | DMA_CTL_WRITE)) {
      while (length > 0) {
        const avail = item ? Math.max(0, item.length - this.offset) : 0;
        const n = Math.min(length, avail);
        if (control & DMA_CTL_READ) {
          if (t + length > ram.length) {
            error = true;
            break;
          }
          if (n) ram.set(item!.subarray(this.offset, this.offset + n), t);
          ram.fill(0, t + n, t + length);
          this.machine.memory.written(t, length);
        } else if (control & DMA_CTL_WRITE) {
          if (!item || t + n > ram.length) {
            error = true;
            break;
          }
          item.set(ram.subarray(t, t + n), this.offset);
          this.writeCallbacks.get(this.selector)?.(item);
        }
        this.offset += n;
        t += length;
        length = 0;
      }
    }
    control = error ? DMA_CTL_ERROR : 0;
    d.setUint32(0, control);
  }
}

function bswap32(v: number): number {
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
}
