/** xorshift32: a deterministic pseudo-random sequence for tests (print the seed on failure). */
export class Rng {
  constructor(public s: number) {}
  /** The next 32-bit unsigned value. */
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return this.next() % n;
  }
  /** One element of a. */
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
}
