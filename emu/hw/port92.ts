/** System control port A (0x92): the fast A20 gate (bit 1) and a fast reset (bit 0). */
import type { Machine } from "../machine.ts";

export class Port92 {
  value = 0;
  constructor(readonly machine: Machine) {}

  register(): void {
    this.machine.io.register(0x92, 1, {
      read: () => this.value | (this.machine.a20 ? 2 : 0),
      write: (_p, _s, v) => {
        this.machine.setA20((v & 2) !== 0);
        if ((v & 1) && !(this.value & 1)) this.machine.requestReset();
        this.value = v & 1;
      },
    });
  }

  reset(): void {
    this.value = 0;
  }
}
