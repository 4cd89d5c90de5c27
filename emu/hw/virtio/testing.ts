/**
 * For tests: a guest driver for virtio PCI devices that does what a guest OS does through the
 * machine's buses — PCI configuration cycles at 0xCF8/0xCFC, BAR placement, the capability walk,
 * the status handshake, queue set-up in guest RAM (modern or legacy layout), descriptor chains
 * (direct or indirect), kicks and used-ring reads — so devices are tested from the guest's side.
 */
import { Machine } from "../../machine.ts";
import { PciBus } from "../pci.ts";
import {
  STATUS_ACKNOWLEDGE,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
  type VirtioBackend,
  VirtioPci,
} from "./pci.ts";

export const IO_BASE = 0xc000;
export const MMIO_BASE = 0xfe000000;

/** A machine with RAM and a PCI bus holding one virtio device at slot 3, BARs placed. */
export class TestBoard {
  readonly machine: Machine;
  readonly pci: PciBus;
  readonly dev: VirtioPci;
  /** INTx level changes, in order. */
  readonly irq: boolean[] = [];
  level = false;

  constructor(backend: VirtioBackend, ramSize = 4 << 20) {
    this.machine = new Machine(new Uint8Array(ramSize), null);
    this.pci = new PciBus(this.machine);
    this.dev = new VirtioPci(backend, this.machine.memory);
    this.dev.setIntx = (l) => {
      this.level = l;
      this.irq.push(l);
    };
    this.pci.add(this.dev, 3);
    this.pci.register();
  }

  #addr(o: number): void {
    this.machine.io.write(0xcf8, 4, (0x80000000 | (3 << 11) | (o & 0xfc)) >>> 0);
  }
  cfgRead(o: number, size: 1 | 2 | 4): number {
    this.#addr(o);
    return this.machine.io.read(0xcfc + (o & 3), size);
  }
  cfgWrite(o: number, size: 1 | 2 | 4, v: number): void {
    this.#addr(o);
    this.machine.io.write(0xcfc + (o & 3), size, v);
  }

  /** Places BAR 0 (I/O) and BAR 4 (memory) and enables decoding and bus mastering. */
  placeBars(): void {
    this.cfgWrite(0x10, 4, IO_BASE);
    this.cfgWrite(0x20, 4, MMIO_BASE);
    this.cfgWrite(0x04, 2, 7);
  }
}

/** The modern structures a driver locates through the vendor capabilities. */
export interface ModernLayout {
  common: number;
  isr: number;
  device: number;
  notify: number;
  notifyMultiplier: number;
}

/** A queue as the driver laid it out. */
export interface DriverQueue {
  index: number;
  size: number;
  desc: number;
  avail: number;
  used: number;
  /** The driver's avail idx. */
  availIdx: number;
  /** How far the driver has read the used ring. */
  lastUsed: number;
  freeDesc: number;
  notifyOff: number;
}

export class GuestDriver {
  readonly m: Machine;
  layout!: ModernLayout;
  readonly queues: DriverQueue[] = [];
  /** Next free guest-physical byte for rings and buffers. */
  #heap = 0x10000;

  constructor(readonly board: TestBoard, readonly legacy = false) {
    this.m = board.machine;
    board.placeBars();
    if (!legacy) this.layout = this.findCaps();
  }

  alloc(len: number, align = 16): number {
    this.#heap = Math.ceil(this.#heap / align) * align;
    const a = this.#heap;
    this.#heap += len;
    return a;
  }

  /** Walks the capability list for the virtio structures (all in one memory BAR here). */
  findCaps(): ModernLayout {
    const b = this.board;
    const found: Partial<ModernLayout> = {};
    if (!(b.cfgRead(0x06, 2) & 0x10)) throw new Error("no capability list");
    for (let p = b.cfgRead(0x34, 1); p; p = b.cfgRead(p + 1, 1)) {
      if (b.cfgRead(p, 1) !== 0x09) continue;
      const type = b.cfgRead(p + 3, 1), bar = b.cfgRead(p + 4, 1);
      const base = (b.cfgRead(0x10 + 4 * bar, 4) & ~0xf) >>> 0;
      const addr = base + b.cfgRead(p + 8, 4);
      if (type === 1) found.common = addr;
      if (type === 2) {
        found.notify = addr;
        found.notifyMultiplier = b.cfgRead(p + 16, 4);
      }
      if (type === 3) found.isr = addr;
      if (type === 4) found.device = addr;
    }
    if (found.common === undefined || found.notify === undefined || found.isr === undefined) {
      throw new Error(`missing capabilities: ${JSON.stringify(found)}`);
    }
    return found as ModernLayout;
  }

  // Register access.
  common(o: number, size: 1 | 2 | 4): number {
    return this.m.memory.read(this.layout.common + o, size);
  }
  setCommon(o: number, size: 1 | 2 | 4, v: number): void {
    this.m.memory.write(this.layout.common + o, size, v);
  }
  legacyRead(o: number, size: 1 | 2 | 4): number {
    return this.m.io.read(IO_BASE + o, size);
  }
  legacyWrite(o: number, size: 1 | 2 | 4, v: number): void {
    this.m.io.write(IO_BASE + o, size, v);
  }
  status(): number {
    return this.legacy ? this.legacyRead(18, 1) : this.common(0x14, 1);
  }
  setStatus(v: number): void {
    if (this.legacy) this.legacyWrite(18, 1, v);
    else this.setCommon(0x14, 1, v);
  }
  readIsr(): number {
    return this.legacy ? this.legacyRead(19, 1) : this.m.memory.read(this.layout.isr, 1);
  }
  /** Reads the device configuration space. */
  config(o: number, size: 1 | 2 | 4): number {
    return this.legacy
      ? this.legacyRead(20 + o, size)
      : this.m.memory.read(this.layout.device + o, size);
  }
  setConfig(o: number, size: 1 | 2 | 4, v: number): void {
    if (this.legacy) this.legacyWrite(20 + o, size, v);
    else this.m.memory.write(this.layout.device + o, size, v);
  }

  /** The device's 64 feature bits (32 under legacy). */
  deviceFeatures(): bigint {
    if (this.legacy) return BigInt(this.legacyRead(0, 4) >>> 0);
    this.setCommon(0x00, 4, 0);
    const lo = this.common(0x04, 4) >>> 0;
    this.setCommon(0x00, 4, 1);
    const hi = this.common(0x04, 4) >>> 0;
    return BigInt(lo) | (BigInt(hi) << 32n);
  }

  /**
   * The initialization sequence (virtio 1.x 3.1.1): reset, ACKNOWLEDGE, DRIVER, features,
   * FEATURES_OK (checked), queues, DRIVER_OK. Returns whether the device accepted the features.
   */
  init(features: bigint, queueCount: number, queueSize?: number): boolean {
    this.setStatus(0);
    this.setStatus(STATUS_ACKNOWLEDGE);
    this.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    if (this.legacy) {
      this.legacyWrite(4, 4, Number(features & 0xffffffffn));
    } else {
      this.setCommon(0x08, 4, 0);
      this.setCommon(0x0c, 4, Number(features & 0xffffffffn));
      this.setCommon(0x08, 4, 1);
      this.setCommon(0x0c, 4, Number(features >> 32n));
      this.setStatus(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
      if (!(this.status() & STATUS_FEATURES_OK)) return false;
    }
    for (let i = 0; i < queueCount; i++) this.setupQueue(i, queueSize);
    this.setStatus(this.status() | STATUS_DRIVER_OK);
    return true;
  }

  setupQueue(i: number, want?: number): DriverQueue {
    let size: number, desc: number, avail: number, used: number, notifyOff = 0;
    if (this.legacy) {
      this.legacyWrite(14, 2, i);
      size = this.legacyRead(12, 2);
      const bytes = Math.ceil((16 * size + 6 + 2 * size) / 4096) * 4096 + 6 + 8 * size;
      desc = this.alloc(bytes, 4096);
      avail = desc + 16 * size;
      used = Math.ceil((avail + 6 + 2 * size) / 4096) * 4096;
      this.legacyWrite(8, 4, desc / 4096);
    } else {
      this.setCommon(0x16, 2, i);
      size = this.common(0x18, 2);
      if (want) {
        this.setCommon(0x18, 2, want);
        size = this.common(0x18, 2);
      }
      desc = this.alloc(16 * size, 16);
      avail = this.alloc(6 + 2 * size, 2);
      used = this.alloc(6 + 8 * size, 4);
      this.setCommon(0x20, 4, desc);
      this.setCommon(0x24, 4, 0);
      this.setCommon(0x28, 4, avail);
      this.setCommon(0x2c, 4, 0);
      this.setCommon(0x30, 4, used);
      this.setCommon(0x34, 4, 0);
      notifyOff = this.common(0x1e, 2);
      this.setCommon(0x1c, 2, 1);
    }
    const q: DriverQueue = {
      index: i,
      size,
      desc,
      avail,
      used,
      availIdx: 0,
      lastUsed: 0,
      freeDesc: 0,
      notifyOff,
    };
    this.queues[i] = q;
    return q;
  }

  #w16(a: number, v: number) {
    this.m.ram[a] = v & 0xff;
    this.m.ram[a + 1] = (v >> 8) & 0xff;
  }
  #w32(a: number, v: number) {
    new DataView(this.m.ram.buffer).setUint32(a, v >>> 0, true);
  }
  r16(a: number): number {
    return this.m.ram[a] | (this.m.ram[a + 1] << 8);
  }
  r32(a: number): number {
    return new DataView(this.m.ram.buffer).getUint32(a, true);
  }

  #writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number) {
    const d = table + 16 * i;
    this.#w32(d, addr);
    this.#w32(d + 4, 0);
    this.#w32(d + 8, len);
    this.#w16(d + 12, flags);
    this.#w16(d + 14, next);
  }

  /**
   * Makes a chain of device-readable buffers (copied into RAM) followed by device-writable ones
   * (of the given lengths) and publishes it. Returns the head and the writable buffers'
   * addresses.
   */
  addChain(
    q: number,
    out: Uint8Array[],
    inLens: number[],
    opts: { indirect?: boolean; publish?: boolean } = {},
  ): { head: number; inAddrs: number[] } {
    const dq = this.queues[q];
    const bufs: { addr: number; len: number; write: boolean }[] = [];
    for (const o of out) {
      const a = this.alloc(o.length || 1);
      this.m.ram.set(o, a);
      bufs.push({ addr: a, len: o.length, write: false });
    }
    const inAddrs: number[] = [];
    for (const n of inLens) {
      const a = this.alloc(n || 1);
      this.m.ram.fill(0xcc, a, a + n);
      inAddrs.push(a);
      bufs.push({ addr: a, len: n, write: true });
    }
    const head = dq.freeDesc % dq.size;
    if (opts.indirect) {
      const table = this.alloc(16 * bufs.length);
      bufs.forEach((b, i) =>
        this.#writeDesc(
          table,
          i,
          b.addr,
          b.len,
          (b.write ? 2 : 0) | (i + 1 < bufs.length ? 1 : 0),
          i + 1,
        )
      );
      this.#writeDesc(dq.desc, head, table, 16 * bufs.length, 4, 0);
      dq.freeDesc++;
    } else {
      bufs.forEach((b, i) => {
        const idx = (dq.freeDesc + i) % dq.size;
        const next = (dq.freeDesc + i + 1) % dq.size;
        this.#writeDesc(
          dq.desc,
          idx,
          b.addr,
          b.len,
          (b.write ? 2 : 0) | (i + 1 < bufs.length ? 1 : 0),
          next,
        );
      });
      dq.freeDesc += bufs.length;
    }
    this.#w16(dq.avail + 4 + 2 * (dq.availIdx % dq.size), head);
    dq.availIdx = (dq.availIdx + 1) & 0xffff;
    if (opts.publish !== false) this.publish(q);
    return { head, inAddrs };
  }

  /** Makes every chain added so far visible to the device (the avail idx). */
  publish(q: number): void {
    const dq = this.queues[q];
    this.#w16(dq.avail + 2, dq.availIdx);
  }

  /** Notifies the device of queue q. */
  kick(q: number): void {
    if (this.legacy) this.legacyWrite(16, 2, q);
    else {
      const a = this.layout.notify + this.queues[q].notifyOff * this.layout.notifyMultiplier;
      this.m.memory.write(a, 2, q);
    }
  }

  /** Used elements the device returned since the last call. */
  takeUsed(q: number): { id: number; len: number }[] {
    const dq = this.queues[q];
    const idx = this.r16(dq.used + 2);
    const res: { id: number; len: number }[] = [];
    while (dq.lastUsed !== idx) {
      const e = dq.used + 4 + 8 * (dq.lastUsed % dq.size);
      res.push({ id: this.r32(e), len: this.r32(e + 4) });
      dq.lastUsed = (dq.lastUsed + 1) & 0xffff;
    }
    return res;
  }

  /** The device's avail_event (event index feature). */
  availEvent(q: number): number {
    const dq = this.queues[q];
    return this.r16(dq.used + 4 + 8 * dq.size);
  }
  /** Sets the driver's used_event (event index feature). */
  setUsedEvent(q: number, v: number): void {
    const dq = this.queues[q];
    this.#w16(dq.avail + 4 + 2 * dq.size, v);
  }
  /** Sets the driver's avail flags (NO_INTERRUPT). */
  setAvailFlags(q: number, v: number): void {
    this.#w16(this.queues[q].avail, v);
  }
  usedFlags(q: number): number {
    return this.r16(this.queues[q].used);
  }

  bytes(addr: number, len: number): Uint8Array {
    return this.m.ram.slice(addr, addr + len);
  }
}
