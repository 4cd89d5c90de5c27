/**
 * The virtio PCI transport (virtio 1.x section 4.1), transitional as QEMU's virtio-*-pci on the
 * pc machine: the legacy register block in I/O BAR 0 (legacy drivers: 32 feature bits, page
 * frame numbers, rings laid out contiguously) and the modern capabilities (common, notify, ISR
 * and device configuration) in memory BAR 4. Interrupts are INTx (pin A) with the ISR register;
 * there is no MSI-X (the vector registers read back "no vector").
 */
import type { AccessSize } from "../../cpu/bus.ts";
import { PCI_INTERRUPT_PIN, PCI_STATUS, PciDevice } from "../pci.ts";
import { type GuestRam, Virtqueue, VirtqueueError } from "./virtqueue.ts";

export const VIRTIO_F_RING_INDIRECT_DESC = 28;
export const VIRTIO_F_RING_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24;
export const VIRTIO_F_ANY_LAYOUT = 27;

export const STATUS_ACKNOWLEDGE = 1;
export const STATUS_DRIVER = 2;
export const STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8;
export const STATUS_NEEDS_RESET = 0x40;
export const STATUS_FAILED = 0x80;

export const VIRTIO_PCI_CAP_COMMON_CFG = 1;
export const VIRTIO_PCI_CAP_NOTIFY_CFG = 2;
export const VIRTIO_PCI_CAP_ISR_CFG = 3;
export const VIRTIO_PCI_CAP_DEVICE_CFG = 4;
export const VIRTIO_PCI_CAP_PCI_CFG = 5;

/** Where the modern structures sit in BAR 4 (QEMU's layout: one 4 KiB page each). */
export const MODERN_COMMON = 0x0000;
export const MODERN_ISR = 0x1000;
export const MODERN_DEVICE = 0x2000;
export const MODERN_NOTIFY = 0x3000;
export const NOTIFY_OFF_MULTIPLIER = 4;
const MODERN_BAR = 4;
const MODERN_BAR_SIZE = 0x4000;

/** Legacy register offsets in BAR 0. */
export const VIRTIO_PCI_HOST_FEATURES = 0;
export const VIRTIO_PCI_GUEST_FEATURES = 4;
export const VIRTIO_PCI_QUEUE_PFN = 8;
export const VIRTIO_PCI_QUEUE_NUM = 12;
export const VIRTIO_PCI_QUEUE_SEL = 14;
export const VIRTIO_PCI_QUEUE_NOTIFY = 16;
export const VIRTIO_PCI_STATUS = 18;
export const VIRTIO_PCI_ISR = 19;
export const VIRTIO_PCI_CONFIG = 20;

/** What a device type (blk, console) supplies to the transport. */
export interface VirtioBackend {
  /** The virtio device ID (2 block, 3 console). */
  readonly deviceId: number;
  /** Device-specific feature bits offered (the transport adds the ring and version bits). */
  readonly features: bigint;
  /** Queue count and each queue's maximum size. */
  readonly queueSizes: number[];
  /** The device configuration space. */
  readonly config: Uint8Array;
  /** Attached to its transport (called once). */
  attach(t: VirtioPci): void;
  /** The driver wrote the configuration space. */
  configWritten?(off: number, size: number): void;
  /** The driver notified queue q. */
  notify(q: number): void;
  /** DRIVER_OK was set (the driver is ready). */
  activate?(): void;
  /** Device reset (status written 0, or system reset). */
  reset(): void;
}

/** A virtio device on PCI. */
export class VirtioPci extends PciDevice {
  readonly queues: Virtqueue[];
  status = 0;
  isr = 0;
  /** Feature bits the driver accepted. */
  driverFeatures = 0n;
  readonly hostFeatures: bigint;
  #deviceFeatureSelect = 0;
  #driverFeatureSelect = 0;
  #queueSelect = 0;
  configGeneration = 0;
  /** Legacy access (BAR 0) was used since reset: the legacy interface rules apply. */
  legacy = false;
  /** Drives the interrupt pin (the board routes INTx to the PIIX3's PIRQ lines). */
  setIntx: (level: boolean) => void = () => {};
  readonly mem: GuestRam;

  constructor(readonly backend: VirtioBackend, mem: GuestRam) {
    // Transitional PCI device IDs of the types that existed before virtio 1.0 (net, block,
    // console); the PCI class codes QEMU gives them.
    const ids: Record<number, number> = { 1: 0x1000, 2: 0x1001, 3: 0x1003 };
    const classes: Record<number, number> = { 1: 0x020000, 2: 0x010000, 3: 0x078000 };
    super(
      0x1af4,
      ids[backend.deviceId] ?? 0x1040 + backend.deviceId,
      classes[backend.deviceId] ?? 0xff0000,
      0,
    );
    this.mem = mem;
    this.set16(0x2e, backend.deviceId); // subsystem ID: the virtio device ID
    this.config[PCI_INTERRUPT_PIN] = 1;
    this.hostFeatures = backend.features | (1n << BigInt(VIRTIO_F_VERSION_1)) |
      (1n << BigInt(VIRTIO_F_RING_EVENT_IDX)) | (1n << BigInt(VIRTIO_F_RING_INDIRECT_DESC)) |
      (1n << BigInt(VIRTIO_F_NOTIFY_ON_EMPTY)) | (1n << BigInt(VIRTIO_F_ANY_LAYOUT));
    this.queues = backend.queueSizes.map((n, i) => new Virtqueue(i, n, mem));
    let legacySize = 32;
    while (legacySize < VIRTIO_PCI_CONFIG + backend.config.length) legacySize *= 2;
    this.ioBar(0, legacySize, {
      read: (p, size) => this.#legacyRead(p - this.#ioBase(), size),
      write: (p, size, v) => this.#legacyWrite(p - this.#ioBase(), size, v),
    });
    this.memBar(MODERN_BAR, MODERN_BAR_SIZE, {
      read: (a, size) => this.modernRead(a - this.#memBase(), size),
      write: (a, size, v) => this.modernWrite(a - this.#memBase(), size, v),
    });
    this.#capabilities();
    backend.attach(this);
  }

  #ioBase(): number {
    return this.bars[0]!.mapped;
  }
  #memBase(): number {
    return this.bars[MODERN_BAR]!.mapped;
  }

  /** Offset of the VIRTIO_PCI_CAP_PCI_CFG capability in configuration space. */
  #pciCfg = 0;

  /** An access to pci_cfg_data: the BAR, offset and length the driver put in the capability. */
  #windowAccess(write: boolean, value = 0): number {
    const at = this.#pciCfg;
    const bar = this.config[at + 4], off = this.get32(at + 8), len = this.get32(at + 12);
    if (len !== 1 && len !== 2 && len !== 4) return 0;
    const size = len as AccessSize;
    if (bar === MODERN_BAR && off + len <= MODERN_BAR_SIZE) {
      if (!write) return this.modernRead(off, size);
      this.modernWrite(off, size, value);
    } else if (bar === 0 && off + len <= this.bars[0]!.size) {
      if (!write) return this.#legacyRead(off, size);
      this.#legacyWrite(off, size, value);
    }
    return 0;
  }

  override readConfig(o: number, size: AccessSize): number {
    const data = this.#pciCfg + 16;
    if (this.#pciCfg && o >= data && o < data + 4) {
      const v = this.#windowAccess(false);
      return (v >>> (8 * (o - data))) & (size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff);
    }
    return super.readConfig(o, size);
  }

  override writeConfig(o: number, size: AccessSize, value: number): void {
    const data = this.#pciCfg + 16;
    if (this.#pciCfg && o >= data && o < data + 4) {
      this.#windowAccess(true, (value << (8 * (o - data))) >>> 0);
      return;
    }
    super.writeConfig(o, size, value);
  }

  #capabilities(): void {
    this.config[PCI_STATUS] |= 0x10; // capability list
    const caps: [number, number, number, number][] = [
      [VIRTIO_PCI_CAP_COMMON_CFG, MODERN_COMMON, 0x38, 16],
      [VIRTIO_PCI_CAP_ISR_CFG, MODERN_ISR, 1, 16],
      [VIRTIO_PCI_CAP_DEVICE_CFG, MODERN_DEVICE, Math.max(1, this.backend.config.length), 16],
      [VIRTIO_PCI_CAP_NOTIFY_CFG, MODERN_NOTIFY, NOTIFY_OFF_MULTIPLIER * this.queues.length, 20],
      // The configuration-space window onto the BARs: bar, offset and length set by the driver.
      [VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 20],
    ];
    let at = 0x40;
    this.config[0x34] = at;
    caps.forEach(([type, off, len, capLen], i) => {
      const next = i + 1 < caps.length ? at + capLen : 0;
      this.config[at] = 0x09; // vendor-specific
      this.config[at + 1] = next;
      this.config[at + 2] = capLen;
      this.config[at + 3] = type;
      this.config[at + 4] = type === VIRTIO_PCI_CAP_PCI_CFG ? 0 : MODERN_BAR;
      this.set32(at + 8, off);
      this.set32(at + 12, len);
      if (type === VIRTIO_PCI_CAP_NOTIFY_CFG) this.set32(at + 16, NOTIFY_OFF_MULTIPLIER);
      if (type === VIRTIO_PCI_CAP_PCI_CFG) {
        this.#pciCfg = at;
        this.wmask[at + 4] = 0xff;
        for (let k = 8; k < 20; k++) this.wmask[at + k] = 0xff;
      }
      at += capLen;
    });
  }

  has(bit: number): boolean {
    return ((this.driverFeatures >> BigInt(bit)) & 1n) === 1n;
  }

  /**
   * Raises the used-buffer interrupt for queue q if the driver wants one. `inFlight`: chains the
   * device still holds (with VIRTIO_F_NOTIFY_ON_EMPTY an emptied queue interrupts regardless).
   */
  notifyQueue(q: Virtqueue, inFlight = 0): void {
    let want: boolean;
    try {
      want = q.shouldInterrupt();
      if (!want && this.has(VIRTIO_F_NOTIFY_ON_EMPTY) && !inFlight && q.pending() === 0) {
        want = true;
      }
    } catch (e) {
      return this.fail(e);
    }
    if (want) this.raise(1);
  }

  /** Sets ISR bits and asserts INTx. */
  raise(bits: number): void {
    this.isr |= bits;
    this.setIntx(true);
  }

  /** The device configuration changed: bump the generation and interrupt. */
  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) & 0xff;
    if (this.status & STATUS_DRIVER_OK) this.raise(2);
  }

  /** The driver broke a ring rule: flag NEEDS_RESET and stop using the rings. */
  fail(e: unknown): void {
    if (!(e instanceof VirtqueueError)) throw e;
    this.machine?.log?.("guest_errors", `virtio: ${e.message}`);
    this.status |= STATUS_NEEDS_RESET;
    for (const q of this.queues) q.ready = false;
    this.configChanged();
  }

  /** Runs fn for queue q, turning ring errors into NEEDS_RESET. */
  guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.fail(e);
    }
  }

  /** Device reset: status, features and every queue back to their initial state. */
  resetDevice(): void {
    this.status = 0;
    this.isr = 0;
    this.driverFeatures = 0n;
    this.#deviceFeatureSelect = this.#driverFeatureSelect = this.#queueSelect = 0;
    this.legacy = false;
    for (const q of this.queues) q.reset();
    this.setIntx(false);
    this.backend.reset();
  }

  reset(): void {
    this.resetDevice();
  }

  #setStatus(v: number): void {
    if (v === 0) return this.resetDevice();
    const was = this.status;
    if ((v & STATUS_FEATURES_OK) && !(was & STATUS_FEATURES_OK) && !this.legacy) {
      // Features the device did not offer, or a modern driver without VERSION_1: refuse.
      if ((this.driverFeatures & ~this.hostFeatures) || !this.has(VIRTIO_F_VERSION_1)) {
        v &= ~STATUS_FEATURES_OK;
      }
    }
    this.status = v & 0xff;
    const eventIdx = this.has(VIRTIO_F_RING_EVENT_IDX);
    for (const q of this.queues) q.eventIdx = eventIdx;
    if ((v & STATUS_DRIVER_OK) && !(was & STATUS_DRIVER_OK)) this.backend.activate?.();
  }

  #readIsr(): number {
    const v = this.isr;
    this.isr = 0;
    this.setIntx(false);
    return v;
  }

  #notify(q: number): void {
    if (q >= this.queues.length || !this.queues[q].ready) return;
    if (this.status & STATUS_NEEDS_RESET) return;
    this.guard(() => this.backend.notify(q));
  }

  #configRead(off: number, size: number): number {
    const c = this.backend.config;
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + (c[off + i] ?? 0);
    return v;
  }
  #configWrite(off: number, size: number, v: number): void {
    const c = this.backend.config;
    if (off + size > c.length) return;
    for (let i = 0; i < size; i++) c[off + i] = (v >>> (8 * i)) & 0xff;
    this.backend.configWritten?.(off, size);
  }

  // The legacy interface (BAR 0).

  #legacyRead(o: number, size: AccessSize): number {
    this.legacy = true;
    const q = this.queues[this.#queueSelect];
    switch (o) {
      case VIRTIO_PCI_HOST_FEATURES:
        return Number(this.hostFeatures & 0xffffffffn);
      case VIRTIO_PCI_GUEST_FEATURES:
        return Number(this.driverFeatures & 0xffffffffn);
      case VIRTIO_PCI_QUEUE_PFN:
        return q ? Math.floor(q.desc / 4096) : 0;
      case VIRTIO_PCI_QUEUE_NUM:
        return q ? q.maxSize : 0;
      case VIRTIO_PCI_QUEUE_SEL:
        return this.#queueSelect;
      case VIRTIO_PCI_STATUS:
        return this.status;
      case VIRTIO_PCI_ISR:
        return this.#readIsr();
    }
    if (o >= VIRTIO_PCI_CONFIG) return this.#configRead(o - VIRTIO_PCI_CONFIG, size);
    return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
  }

  #legacyWrite(o: number, size: AccessSize, v: number): void {
    this.legacy = true;
    const q = this.queues[this.#queueSelect];
    switch (o) {
      case VIRTIO_PCI_GUEST_FEATURES:
        this.driverFeatures = BigInt(v >>> 0) & this.hostFeatures;
        return;
      case VIRTIO_PCI_QUEUE_PFN: {
        if (!q) return;
        if (v === 0) {
          q.reset();
          return;
        }
        // Legacy layout: descriptors, then the avail ring, then the used ring on the next page.
        q.size = q.maxSize;
        q.desc = (v >>> 0) * 4096;
        q.driver = q.desc + 16 * q.size;
        q.device = Math.ceil((q.driver + 6 + 2 * q.size) / 4096) * 4096;
        q.ready = true;
        return;
      }
      case VIRTIO_PCI_QUEUE_SEL:
        this.#queueSelect = v & 0xffff;
        return;
      case VIRTIO_PCI_QUEUE_NOTIFY:
        this.#notify(v & 0xffff);
        return;
      case VIRTIO_PCI_STATUS:
        this.#setStatus(v & 0xff);
        return;
    }
    if (o >= VIRTIO_PCI_CONFIG) this.#configWrite(o - VIRTIO_PCI_CONFIG, size, v);
  }

  // The modern interface (BAR 4).

  /** Reads the modern BAR at offset o. */
  modernRead(o: number, size: AccessSize): number {
    if (o >= MODERN_COMMON && o < MODERN_COMMON + 0x38) return this.#commonRead(o, size);
    if (o === MODERN_ISR) return this.#readIsr();
    if (o >= MODERN_DEVICE && o < MODERN_DEVICE + 0x1000) {
      return this.#configRead(o - MODERN_DEVICE, size);
    }
    return 0;
  }

  /** Writes the modern BAR at offset o. */
  modernWrite(o: number, size: AccessSize, v: number): void {
    if (o >= MODERN_COMMON && o < MODERN_COMMON + 0x38) return this.#commonWrite(o, size, v);
    if (o >= MODERN_DEVICE && o < MODERN_DEVICE + 0x1000) {
      return this.#configWrite(o - MODERN_DEVICE, size, v);
    }
    if (o >= MODERN_NOTIFY && o < MODERN_NOTIFY + NOTIFY_OFF_MULTIPLIER * this.queues.length) {
      this.#notify((o - MODERN_NOTIFY) / NOTIFY_OFF_MULTIPLIER | 0);
    }
  }

  #commonRead(o: number, size: AccessSize): number {
    const q = this.queues[this.#queueSelect];
    const half = (x: number, hi: boolean) => (hi ? Math.floor(x / 2 ** 32) : x) >>> 0;
    let v: number;
    switch (o & ~3) {
      case 0x00:
        v = this.#deviceFeatureSelect;
        break;
      case 0x04:
        v = this.#deviceFeatureSelect > 1
          ? 0
          : Number((this.hostFeatures >> BigInt(32 * this.#deviceFeatureSelect)) & 0xffffffffn);
        break;
      case 0x08:
        v = this.#driverFeatureSelect;
        break;
      case 0x0c:
        v = this.#driverFeatureSelect > 1
          ? 0
          : Number((this.driverFeatures >> BigInt(32 * this.#driverFeatureSelect)) & 0xffffffffn);
        break;
      case 0x10: // config_msix_vector (no MSI-X), num_queues
        v = 0xffff | (this.queues.length << 16);
        break;
      case 0x14: // device_status, config_generation, queue_select
        v = this.status | (this.configGeneration << 8) | (this.#queueSelect << 16);
        break;
      case 0x18: // queue_size, queue_msix_vector
        v = (q ? q.size : 0) | (0xffff << 16);
        break;
      case 0x1c: // queue_enable, queue_notify_off
        v = (q?.ready ? 1 : 0) | ((q ? this.#queueSelect : 0) << 16);
        break;
      case 0x20:
      case 0x24:
        v = q ? half(q.desc, o >= 0x24) : 0;
        break;
      case 0x28:
      case 0x2c:
        v = q ? half(q.driver, o >= 0x2c) : 0;
        break;
      case 0x30:
      case 0x34:
        v = q ? half(q.device, o >= 0x34) : 0;
        break;
      default:
        v = 0;
    }
    v = (v >>> (8 * (o & 3))) >>> 0;
    return size === 4 ? v : v & (size === 2 ? 0xffff : 0xff);
  }

  #commonWrite(o: number, size: AccessSize, v: number): void {
    const q = this.queues[this.#queueSelect];
    v >>>= 0;
    switch (o) {
      case 0x00:
        this.#deviceFeatureSelect = v;
        return;
      case 0x08:
        this.#driverFeatureSelect = v;
        return;
      case 0x0c: {
        if (this.#driverFeatureSelect > 1 || (this.status & STATUS_FEATURES_OK)) return;
        const shift = BigInt(32 * this.#driverFeatureSelect);
        this.driverFeatures = (this.driverFeatures & ~(0xffffffffn << shift)) |
          (BigInt(v) << shift);
        return;
      }
      case 0x14:
        if (size === 1) this.#setStatus(v & 0xff);
        return;
      case 0x16:
        this.#queueSelect = v & 0xffff;
        return;
      case 0x18:
        if (q && !q.ready) {
          // Split rings need a power of two no larger than the maximum.
          if (v && v <= q.maxSize && (v & (v - 1)) === 0) q.size = v;
        }
        return;
      case 0x1a:
        if (q) q.vector = v & 0xffff;
        return;
      case 0x1c:
        if (q && (v & 1)) q.ready = true;
        return;
    }
    if (!q || q.ready || o < 0x20 || o >= 0x38 || size !== 4) return;
    const field = o < 0x28 ? "desc" : o < 0x30 ? "driver" : "device";
    const hi = (o & 4) !== 0;
    const cur = q[field];
    q[field] = hi ? (cur >>> 0) + v * 2 ** 32 : Math.floor(cur / 2 ** 32) * 2 ** 32 + v;
  }
}
