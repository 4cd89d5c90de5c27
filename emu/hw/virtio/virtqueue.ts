/**
 * Split virtqueues (virtio 1.x section 2.7): the descriptor table, the driver ("available")
 * ring and the device ("used") ring in guest RAM. Chains may use indirect descriptor tables;
 * with VIRTIO_F_EVENT_IDX the device publishes avail_event and honours used_event when it
 * decides whether to interrupt.
 */

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** The driver broke the ring's rules (a loop, an address outside RAM): the device needs reset. */
export class VirtqueueError extends Error {}

/** Guest-physical RAM as the device sees it. */
export interface GuestRam {
  readonly ram: Uint8Array;
  /** Tells the CPU (its decoded-code cache) that the device wrote RAM. */
  written(addr: number, len: number): void;
}

/** One buffer of a chain: guest-physical address and length. */
export interface Buf {
  addr: number;
  len: number;
}

/** A chain taken from the available ring. */
export class Chain {
  constructor(
    readonly head: number,
    /** Buffers the device reads (driver to device), in order. */
    readonly out: Buf[],
    /** Buffers the device writes (device to driver), in order. */
    readonly input: Buf[],
    readonly mem: GuestRam,
  ) {}

  get outLength(): number {
    return this.out.reduce((n, b) => n + b.len, 0);
  }
  get inLength(): number {
    return this.input.reduce((n, b) => n + b.len, 0);
  }

  /** Copies up to `len` bytes of the device-readable part from byte offset `off`. */
  readOut(off = 0, len = this.outLength - off): Uint8Array {
    const res = new Uint8Array(Math.max(0, Math.min(len, this.outLength - off)));
    let pos = 0;
    for (const b of this.out) {
      if (pos >= res.length) break;
      if (off >= b.len) {
        off -= b.len;
        continue;
      }
      const n = Math.min(b.len - off, res.length - pos);
      res.set(this.mem.ram.subarray(b.addr + off, b.addr + off + n), pos);
      pos += n;
      off = 0;
    }
    return res;
  }

  /** Writes data into the device-writable part at byte offset `off`; returns bytes written. */
  writeIn(data: Uint8Array, off = 0): number {
    let pos = 0;
    for (const b of this.input) {
      if (pos >= data.length) break;
      if (off >= b.len) {
        off -= b.len;
        continue;
      }
      const n = Math.min(b.len - off, data.length - pos);
      this.mem.ram.set(data.subarray(pos, pos + n), b.addr + off);
      this.mem.written(b.addr + off, n);
      pos += n;
      off = 0;
    }
    return pos;
  }
}

export class Virtqueue {
  /** Queue size the driver chose (a power of two up to maxSize for split rings). */
  size: number;
  ready = false;
  desc = 0;
  driver = 0;
  device = 0;
  /** MSI-X vector the driver assigned (kept for the common config; INTx is used). */
  vector = 0xffff;
  /** Next available-ring index the device will take. */
  lastAvail = 0;
  /** The used ring's idx as the device last published it. */
  usedIdx = 0;
  /** usedIdx when the driver was last interrupted (event index suppression). */
  #signalledUsed = 0;
  #signalledValid = false;
  eventIdx = false;

  constructor(readonly index: number, readonly maxSize: number, readonly mem: GuestRam) {
    this.size = maxSize;
  }

  reset(): void {
    this.size = this.maxSize;
    this.ready = false;
    this.desc = this.driver = this.device = 0;
    this.vector = 0xffff;
    this.lastAvail = this.usedIdx = 0;
    this.#signalledUsed = 0;
    this.#signalledValid = false;
  }

  #check(addr: number, len: number): void {
    if (addr < 0 || addr + len > this.mem.ram.length || !Number.isSafeInteger(addr + len)) {
      throw new VirtqueueError(
        `virtqueue ${this.index}: address 0x${addr.toString(16)} outside RAM`,
      );
    }
  }
  #u16(addr: number): number {
    this.#check(addr, 2);
    const r = this.mem.ram;
    return r[addr] | (r[addr + 1] << 8);
  }
  #u32(addr: number): number {
    this.#check(addr, 4);
    const r = this.mem.ram;
    return (r[addr] | (r[addr + 1] << 8) | (r[addr + 2] << 16) | (r[addr + 3] << 24)) >>> 0;
  }
  #put16(addr: number, v: number): void {
    this.#check(addr, 2);
    this.mem.ram[addr] = v & 0xff;
    this.mem.ram[addr + 1] = (v >> 8) & 0xff;
    this.mem.written(addr, 2);
  }
  #put32(addr: number, v: number): void {
    this.#check(addr, 4);
    for (let i = 0; i < 4; i++) this.mem.ram[addr + i] = (v >>> (8 * i)) & 0xff;
    this.mem.written(addr, 4);
  }
  #u64(addr: number): number {
    return this.#u32(addr) + this.#u32(addr + 4) * 2 ** 32;
  }

  /** The driver's avail idx. */
  availIdx(): number {
    return this.#u16(this.driver + 2);
  }

  /** Chains waiting in the available ring. */
  pending(): number {
    if (!this.ready) return 0;
    return (this.availIdx() - this.lastAvail) & 0xffff;
  }

  /** Takes the next available chain, or null when the ring is empty. */
  pop(): Chain | null {
    if (!this.ready) return null;
    const avail = this.availIdx();
    const waiting = (avail - this.lastAvail) & 0xffff;
    if (waiting === 0) return null;
    if (waiting > this.size) {
      throw new VirtqueueError(`virtqueue ${this.index}: avail idx ${avail} is ${waiting} ahead`);
    }
    const head = this.#u16(this.driver + 4 + 2 * (this.lastAvail % this.size));
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    // Tell the driver how far we have read (it kicks only when it passes this).
    if (this.eventIdx) this.#put16(this.device + 4 + 8 * this.size, this.lastAvail);
    return this.#walk(head);
  }

  #walk(head: number): Chain {
    if (head >= this.size) {
      throw new VirtqueueError(`virtqueue ${this.index}: descriptor ${head} out of range`);
    }
    const out: Buf[] = [], inb: Buf[] = [];
    let table = this.desc, max = this.size, i = head, seen = 0, indirect = false;
    for (;;) {
      const d = table + 16 * i;
      const addr = this.#u64(d), len = this.#u32(d + 8);
      const flags = this.#u16(d + 12), next = this.#u16(d + 14);
      if (++seen > max) throw new VirtqueueError(`virtqueue ${this.index}: descriptor loop`);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (indirect || (flags & VIRTQ_DESC_F_NEXT) || len % 16 || len === 0) {
          throw new VirtqueueError(`virtqueue ${this.index}: bad indirect descriptor`);
        }
        this.#check(addr, len);
        indirect = true;
        table = addr;
        max = len / 16;
        i = 0;
        seen = 0;
        continue;
      }
      this.#check(addr, len);
      if (flags & VIRTQ_DESC_F_WRITE) inb.push({ addr, len });
      else {
        if (inb.length) {
          throw new VirtqueueError(`virtqueue ${this.index}: readable after writable descriptor`);
        }
        out.push({ addr, len });
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) break;
      i = next;
      if (i >= max) throw new VirtqueueError(`virtqueue ${this.index}: next ${i} out of range`);
    }
    return new Chain(head, out, inb, this.mem);
  }

  /** Returns a chain to the driver with `written` bytes in its writable part. */
  push(chain: Chain, written: number): void {
    const slot = this.usedIdx % this.size;
    this.#put32(this.device + 4 + 8 * slot, chain.head);
    this.#put32(this.device + 4 + 8 * slot + 4, written);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.#put16(this.device + 2, this.usedIdx);
  }

  /** Puts a chain back (the device could not use it now); it is taken again by the next pop. */
  unpop(): void {
    this.lastAvail = (this.lastAvail - 1) & 0xffff;
  }

  /** Whether the driver wants an interrupt for what was pushed since the last one. */
  shouldInterrupt(): boolean {
    if (this.eventIdx) {
      const usedEvent = this.#u16(this.driver + 4 + 2 * this.size);
      const newIdx = this.usedIdx, old = this.#signalledUsed;
      const valid = this.#signalledValid;
      this.#signalledUsed = newIdx;
      this.#signalledValid = true;
      // vring_need_event: the driver's event index lies in (old, new].
      return !valid || ((newIdx - usedEvent - 1) & 0xffff) < ((newIdx - old) & 0xffff);
    }
    return !(this.#u16(this.driver) & VIRTQ_AVAIL_F_NO_INTERRUPT);
  }

  /** Suppresses (or re-enables) driver notifications when event index is not in use. */
  setNoNotify(on: boolean): void {
    if (!this.ready || this.eventIdx) return;
    this.#put16(this.device, on ? VIRTQ_USED_F_NO_NOTIFY : 0);
  }
}
