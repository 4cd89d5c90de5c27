/** qemu-img -p: "    (12.34/100%)" rewritten in place as work advances, at least 1% apart. */
import type { Io } from "./cli.ts";
import { toFixedC } from "./size.ts";

/** A live progress display as qemu-progress.c prints it. */
export class Progress {
  #last = 0;
  #current = 0;

  constructor(readonly io: Io, readonly minStep = 1) {}

  /**
   * Sets the completed percentage; prints when it moved by more than minStep, and every time it
   * is 0 or 100 (as qemu_progress_print does).
   */
  update(percent: number): void {
    const current = Math.fround(Math.min(100, percent));
    this.#current = current;
    if (
      current > this.#last + this.minStep || current < this.#last - this.minStep ||
      current === 0 || current === 100
    ) {
      this.#last = current;
      this.io.out(`    (${toFixedC(current, 2)}/100%)\r`);
    }
  }

  /** Ends the display with a newline (the caller reports 100% first). */
  end(): void {
    this.io.out("\n");
  }
}
