/** qemu-img -p: "    (12.34/100%)" rewritten in place as work advances, at least 1% apart. */
import type { Io } from "./cli.ts";
import { toFixedC } from "./size.ts";

/** A live progress display as qemu-progress.c prints it. */
export class Progress {
  #last = -Infinity;
  #current = 0;

  constructor(readonly io: Io, readonly minStep = 1) {}

  /** Sets the completed percentage; prints when it moved by minStep or reached 100. */
  update(percent: number): void {
    this.#current = Math.min(100, percent);
    if (this.#current - this.#last >= this.minStep || (this.#current === 100 && this.#last < 100)) {
      this.#last = this.#current;
      this.io.out(`    (${toFixedC(this.#current, 2)}/100%)\r`);
    }
  }

  /** Ends the display with a newline. */
  end(): void {
    this.update(100);
    this.io.out("\n");
  }
}
