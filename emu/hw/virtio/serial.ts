/**
 * virtio-serial (the virtio console device, virtio 1.x section 5.3) with the multiport feature:
 * a control queue pair announces ports (virtconsole at port 0, virtserialport from 1), their
 * names and whether the host side is open; each port has a receive and a transmit queue that
 * carry bytes to and from a character backend (a socket, a file, stdio).
 */
import type { CharBackend } from "../../chardev/mod.ts";
import type { VirtioBackend, VirtioPci } from "./pci.ts";

export const VIRTIO_CONSOLE_F_SIZE = 0;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1;

export const VIRTIO_CONSOLE_DEVICE_READY = 0;
export const VIRTIO_CONSOLE_DEVICE_ADD = 1;
export const VIRTIO_CONSOLE_DEVICE_REMOVE = 2;
export const VIRTIO_CONSOLE_PORT_READY = 3;
export const VIRTIO_CONSOLE_CONSOLE_PORT = 4;
export const VIRTIO_CONSOLE_RESIZE = 5;
export const VIRTIO_CONSOLE_PORT_OPEN = 6;
export const VIRTIO_CONSOLE_PORT_NAME = 7;

const QUEUE_SIZE = 128;
/** QEMU's default max_ports. */
export const DEFAULT_MAX_PORTS = 31;

/** A port: its number, kind, name and the host side it is wired to. */
export class VirtioSerialPort {
  /** The guest opened the port (PORT_OPEN from the driver). */
  guestOpen = false;
  /** The host side is connected (told to the guest with PORT_OPEN). */
  hostOpen: boolean;
  /** Bytes from the host not yet placed in the guest's receive buffers. */
  readonly pendingIn: Uint8Array[] = [];
  serial!: VirtioSerial;

  constructor(
    readonly id: number,
    readonly backend: CharBackend,
    readonly name: string | null,
    readonly console: boolean,
    hostOpen = true,
  ) {
    this.hostOpen = hostOpen;
  }

  /** The host side connected or went away: tell the guest. */
  setHostOpen(open: boolean): void {
    if (open === this.hostOpen) return;
    this.hostOpen = open;
    // What a departed peer sent and the guest never took goes with it (QEMU leaves it unread
    // in the closed socket), so a later peer's session starts clean.
    if (!open) this.pendingIn.length = 0;
    this.serial.sendControl(this.id, VIRTIO_CONSOLE_PORT_OPEN, open ? 1 : 0);
  }
}

export class VirtioSerial implements VirtioBackend {
  readonly deviceId = 3;
  readonly features = (1n << BigInt(VIRTIO_CONSOLE_F_MULTIPORT));
  readonly queueSizes: number[];
  readonly config = new Uint8Array(12);
  readonly ports = new Map<number, VirtioSerialPort>();
  #t!: VirtioPci;
  /** Control messages waiting for receive buffers on the control queue. */
  readonly #control: Uint8Array[] = [];
  #ready = false;

  constructor(readonly maxPorts = DEFAULT_MAX_PORTS) {
    // Port 0's pair, the control pair, then a pair for each further port.
    this.queueSizes = new Array(2 * (maxPorts + 1)).fill(QUEUE_SIZE);
    new DataView(this.config.buffer).setUint32(4, maxPorts, true);
  }

  attach(t: VirtioPci): void {
    this.#t = t;
  }

  /** Adds a port: nr 0 is reserved for a console, as in QEMU; null picks the lowest free. */
  addPort(
    backend: CharBackend,
    opts: { name?: string | null; console?: boolean; nr?: number | null } = {},
  ): VirtioSerialPort {
    const console = opts.console ?? false;
    let nr = opts.nr ?? null;
    if (nr === null) {
      nr = console && !this.ports.has(0) ? 0 : 1;
      while (this.ports.has(nr)) nr++;
    }
    if (nr === 0 && !console) {
      throw new Error(
        "Port number 0 on virtio-serial devices reserved for virtconsole devices for backward compatibility.",
      );
    }
    if (this.ports.has(nr)) {
      throw new Error(`virtio-serial-bus: A port already exists at id ${nr}`);
    }
    if (nr >= this.maxPorts) {
      throw new Error(
        `virtio-serial-bus: Out-of-range port id specified, max. allowed: ${this.maxPorts - 1}`,
      );
    }
    if (opts.name && [...this.ports.values()].some((p) => p.name === opts.name)) {
      throw new Error(`virtio-serial-bus: A port already exists by name ${opts.name}`);
    }
    const port = new VirtioSerialPort(nr, backend, opts.name ?? null, console);
    port.serial = this;
    this.ports.set(nr, port);
    backend.setReceiver((bytes) => {
      port.pendingIn.push(bytes.slice());
      this.#deliver(port);
    });
    return port;
  }

  reset(): void {
    this.#control.length = 0;
    this.#ready = false;
    for (const p of this.ports.values()) p.guestOpen = false;
  }

  #rxQueue(nr: number): number {
    return nr === 0 ? 0 : 2 * (nr + 1);
  }

  notify(q: number): void {
    if (q === 2) return this.#flushControl(); // control receive: buffers arrived
    if (q === 3) return this.#controlTx();
    const nr = q < 2 ? 0 : (q >> 1) - 1;
    const port = this.ports.get(nr);
    if (q & 1) return this.#transmit(q, port);
    if (port) this.#deliver(port);
  }

  /** Guest to host: the port's transmit queue. Bytes for a missing port are dropped. */
  #transmit(q: number, port: VirtioSerialPort | undefined): void {
    const vq = this.#t.queues[q];
    let used = false;
    for (let c = vq.pop(); c; c = vq.pop()) {
      const data = c.readOut();
      if (port && port.hostOpen) port.backend.write(data);
      vq.push(c, 0);
      used = true;
    }
    if (used) this.#t.notifyQueue(vq);
  }

  /** Host to guest: fills the port's receive buffers with what the host sent. */
  #deliver(port: VirtioSerialPort): void {
    const t = this.#t;
    if (!t || !port.pendingIn.length) return;
    // A serial port's data waits until the guest opens it (QEMU stops reading the chardev).
    if (!port.console && !port.guestOpen) return;
    const vq = t.queues[this.#rxQueue(port.id)];
    t.guard(() => {
      let used = false;
      while (port.pendingIn.length && vq.pending()) {
        const c = vq.pop()!;
        let n = 0;
        while (port.pendingIn.length && n < c.inLength) {
          const head = port.pendingIn[0];
          const k = c.writeIn(head, n);
          n += k;
          if (k === head.length) port.pendingIn.shift();
          else port.pendingIn[0] = head.subarray(k);
        }
        vq.push(c, n);
        used = true;
      }
      if (used) t.notifyQueue(vq);
    });
  }

  /** Queues a control message (with optional trailing bytes, e.g. a port name) for the guest. */
  sendControl(id: number, event: number, value: number, extra?: Uint8Array): void {
    if (!this.#ready) return;
    const m = new Uint8Array(8 + (extra?.length ?? 0));
    const v = new DataView(m.buffer);
    v.setUint32(0, id, true);
    v.setUint16(4, event, true);
    v.setUint16(6, value, true);
    if (extra) m.set(extra, 8);
    this.#control.push(m);
    this.#flushControl();
  }

  #flushControl(): void {
    const t = this.#t;
    const vq = t.queues[2];
    t.guard(() => {
      let used = false;
      while (this.#control.length && vq.pending()) {
        const c = vq.pop()!;
        const msg = this.#control.shift()!;
        vq.push(c, c.writeIn(msg));
        used = true;
      }
      if (used) t.notifyQueue(vq);
    });
  }

  /** Control messages from the driver. */
  #controlTx(): void {
    const t = this.#t;
    const vq = t.queues[3];
    const msgs: Uint8Array[] = [];
    for (let c = vq.pop(); c; c = vq.pop()) {
      msgs.push(c.readOut());
      vq.push(c, 0);
    }
    t.notifyQueue(vq);
    for (const m of msgs) {
      if (m.length < 8) continue;
      const v = new DataView(m.buffer);
      const id = v.getUint32(0, true), event = v.getUint16(4, true), value = v.getUint16(6, true);
      this.#control_(id, event, value);
    }
  }

  #control_(id: number, event: number, value: number): void {
    switch (event) {
      case VIRTIO_CONSOLE_DEVICE_READY:
        if (!value) {
          this.#t.machine?.log?.("guest_errors", "virtio-serial: guest failed to init");
          return;
        }
        this.#ready = true;
        for (const p of this.ports.values()) this.sendControl(p.id, VIRTIO_CONSOLE_DEVICE_ADD, 1);
        return;
      case VIRTIO_CONSOLE_PORT_READY: {
        const p = this.ports.get(id);
        if (!p || !value) return;
        if (p.console) {
          this.sendControl(p.id, VIRTIO_CONSOLE_CONSOLE_PORT, 1);
        }
        if (p.name !== null) {
          const name = new TextEncoder().encode(p.name + "\0");
          this.sendControl(p.id, VIRTIO_CONSOLE_PORT_NAME, 1, name);
        }
        // Consoles are always open; a serial port tells whether its host side is there.
        if (p.console || p.hostOpen) this.sendControl(p.id, VIRTIO_CONSOLE_PORT_OPEN, 1);
        return;
      }
      case VIRTIO_CONSOLE_PORT_OPEN: {
        const p = this.ports.get(id);
        if (!p) return;
        p.guestOpen = value !== 0;
        if (p.guestOpen) this.#deliver(p);
        return;
      }
    }
  }
}
