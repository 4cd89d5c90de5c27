/** Group commit for flushes: one fdatasync for every request that asked at about the same time. */
import type { BlockDriver } from "@demu/block";

/**
 * Flushes shared by every request that asks for one at about the same time (FLUSH, and FUA on
 * writes): pipelined FUA writes then cost one fdatasync per batch instead of one each. A flush
 * starts on the next timer turn, after the requests already read have done their writes, and
 * covers all of them; a request that arrives while one runs waits for the next.
 */
export class GroupFlush {
  #next: Promise<void> | null = null;
  #running: Promise<void> = Promise.resolve();

  constructor(readonly driver: BlockDriver) {}

  flush(): Promise<void> {
    if (this.#next) return this.#next;
    const after = this.#running;
    const next = new Promise<void>((resolve, reject) => {
      setTimeout(() => {
        after.then(() => {
          this.#next = null;
          const run = this.driver.flush();
          this.#running = run.catch(() => {});
          run.then(resolve, reject);
        });
      }, 0);
    });
    this.#next = next;
    return next;
  }
}
