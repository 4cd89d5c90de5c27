/** The debug console (isa-debugcon): bytes written to port 0x402 go to a backend (SeaBIOS logs). */
import type { CharBackend } from "../chardev/mod.ts";
import type { IoBus } from "./iobus.ts";

export class DebugCon {
  constructor(readonly backend: CharBackend, readonly port = 0x402) {}

  register(io: IoBus): void {
    io.register(this.port, 1, {
      read: () => 0xe9, // the readback value QEMU's isa-debugcon gives
      write: (_p, _s, v) => this.backend.write(new Uint8Array([v])),
    });
  }
}
