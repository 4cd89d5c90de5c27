import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import {
  compressCluster,
  decompressCluster,
  loadCompression,
  zstdFrameLength,
} from "./compress.ts";

await loadCompression();

function sample(cs: number, seed: number): Uint8Array {
  const d = new Uint8Array(cs);
  let x = seed;
  for (let i = 0; i < cs; i += 7) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    d[i] = x & 0x3f;
  }
  return d;
}

for (const type of ["zlib", "zstd"] as const) {
  Deno.test(`compress: ${type} round trip with trailing bytes after the stream`, () => {
    for (const cs of [512, 65536, 2 << 20]) {
      const data = sample(cs, cs);
      const c = compressCluster(data, type, cs);
      ok(c && c.length < cs, `${cs}: shrinks`);
      // Stored sectors run past the stream into padding or the next cluster's bytes.
      const stored = new Uint8Array(c.length + 700);
      stored.set(c);
      stored.fill(0xab, c.length);
      deepStrictEqual(decompressCluster(stored, type, cs), data);
    }
  });

  Deno.test(`compress: ${type} refuses to shrink random data and rejects damage`, () => {
    const rnd = crypto.getRandomValues(new Uint8Array(65536));
    strictEqual(compressCluster(rnd, type, 65536), undefined);
    const c = compressCluster(new Uint8Array(65536), type, 65536)!;
    throws(() => decompressCluster(c.subarray(0, Math.max(1, c.length - 4)), type, 65536));
  });
}

Deno.test("compress: zlib output is raw deflate with QEMU's 4 KiB window", () => {
  const c = compressCluster(new Uint8Array(4096).fill(1), "zlib", 4096)!;
  // No zlib header (0x78 ..): a raw deflate block starts with BFINAL/BTYPE bits.
  ok(c[0] !== 0x78);
});

Deno.test("compress: zstd frame length parses the frame exactly", () => {
  const c = compressCluster(sample(65536, 3), "zstd", 65536)!;
  const withJunk = new Uint8Array(c.length + 33);
  withJunk.set(c);
  strictEqual(zstdFrameLength(withJunk), c.length);
  throws(() => zstdFrameLength(new Uint8Array(10)), /bad zstd frame/);
});
