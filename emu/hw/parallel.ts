/**
 * A parallel port (LPT1 at 0x378, as QEMU's isa-parallel): the data latch reads back what was
 * written (that is how firmware detects the port), status reports a ready printer, and bytes
 * strobed out go to a backend.
 */
import type { CharBackend } from "../chardev/mod.ts";
import type { IoBus } from "./iobus.ts";

const STATUS_BUSY = 0x80, STATUS_ACK = 0x40, STATUS_SELECT = 0x10, STATUS_ERROR = 0x08;
const CONTROL_STROBE = 0x01;

export class ParallelPort {
  data = 0;
  control = 0x0c;

  constructor(readonly backend: CharBackend | null, readonly base = 0x378) {}

  register(io: IoBus): void {
    io.register(this.base, 3, {
      read: (p) => {
        switch (p - this.base) {
          case 0:
            return this.data;
          case 1: // not busy, selected, no error (the active-low lines read high)
            return STATUS_BUSY | STATUS_ACK | STATUS_SELECT | STATUS_ERROR | 0x07;
          default:
            return this.control | 0xe0;
        }
      },
      write: (p, _s, v) => {
        const reg = p - this.base;
        if (reg === 0) this.data = v;
        else if (reg === 2) {
          if ((v & CONTROL_STROBE) && !(this.control & CONTROL_STROBE)) {
            this.backend?.write(new Uint8Array([this.data]));
          }
          this.control = v & 0x1f;
        }
      },
    });
  }

  reset(): void {
    this.data = 0;
    this.control = 0x0c;
  }
}
