/** The I/O-port bus: devices register port ranges; the CPU reaches them with IN and OUT. */
import type { AccessSize } from "../cpu/bus.ts";

/** A device's port handlers. `port` is the absolute port number. */
export interface PortHandler {
  read(port: number, size: AccessSize): number;
  write(port: number, size: AccessSize, value: number): void;
}

const MASKS = [0, 0xff, 0xffff, 0, 0xffffffff];

/** 64K ports, each pointing to the handler that owns it. */
export class IoBus {
  readonly #handlers: (PortHandler | undefined)[] = new Array(0x10000);
  /** Called for accesses to ports nobody owns (the -d unimp log). */
  onUnassigned: ((port: number, size: AccessSize, write: boolean, value: number) => void) | null =
    null;

  /** Gives ports [start, start+count) to handler. */
  register(start: number, count: number, handler: PortHandler): void {
    for (let p = start; p < start + count; p++) this.#handlers[p & 0xffff] = handler;
  }

  /** Frees ports [start, start+count). */
  unregister(start: number, count: number): void {
    for (let p = start; p < start + count; p++) this.#handlers[p & 0xffff] = undefined;
  }

  read(port: number, size: AccessSize): number {
    const h = this.#handlers[port];
    if (h) return h.read(port, size) & MASKS[size];
    this.onUnassigned?.(port, size, false, 0);
    return MASKS[size];
  }

  write(port: number, size: AccessSize, value: number): void {
    const h = this.#handlers[port];
    if (h) h.write(port, size, value & MASKS[size]);
    else this.onUnassigned?.(port, size, true, value);
  }
}
