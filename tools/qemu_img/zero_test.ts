import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { allocatedRun, isZero, isZeroRange } from "./zero.ts";

Deno.test("isZero finds a single set byte anywhere", () => {
  const b = new Uint8Array(4099);
  strictEqual(isZero(b), true);
  for (const at of [0, 1, 3, 4, 1000, 4095, 4098]) {
    b[at] = 1;
    strictEqual(isZero(b), false, `byte ${at}`);
    strictEqual(isZeroRange(b, at + 1, b.length), true);
    b[at] = 0;
  }
  strictEqual(isZero(b.subarray(3, 1001)), true);
});

Deno.test("allocatedRun treats short zero runs as data and skips long ones", () => {
  const b = new Uint8Array(64 * 1024);
  b.fill(1, 0, 1024); // data, then 1 KiB of zeros, then data: one run
  b.fill(1, 2048, 8192);
  // then 56 KiB of zeros: skippable with -S 4k
  deepStrictEqual(allocatedRun(b, 0, 4096, 4096), { length: 8192, data: true });
  deepStrictEqual(allocatedRun(b.subarray(8192), 8192, 4096, 4096), {
    length: 56 * 1024,
    data: false,
  });
  // With a larger minimum the zeros are written too.
  deepStrictEqual(allocatedRun(b, 0, 64 * 1024, 65536), { length: 65536, data: true });
});
