import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { FileProtocol, openImage } from "./mod.ts";

Deno.test("file protocol: positioned writes, reads past the end as zero, holes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/a.img`;
    await Deno.writeFile(path, new Uint8Array(0));
    const f = FileProtocol.open(path);
    await f.write(1 << 20, new Uint8Array([1, 2, 3]));
    assertEquals(await f.length(), (1 << 20) + 3);
    const buf = new Uint8Array(6);
    await f.read((1 << 20) - 1, buf);
    assertEquals([...buf], [0, 1, 2, 3, 0, 0]);
    const st = await f.blockStatus(0, 4096);
    assertEquals(st.data, false);
    assertEquals(st.zero, true);
    await f.close();
    const warnings: string[] = [];
    const raw = await openImage(path, { warn: (m) => warnings.push(m) });
    assertEquals(raw.format, "raw");
    assertEquals(warnings.length, 1);
    await raw.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("file protocol: threaded large reads and writes, several in flight", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.img`;
    await Deno.writeFile(path, new Uint8Array(0));
    const f = FileProtocol.open(path);
    f.threaded = true;
    const unit = 1 << 20;
    const parts = [0, 1, 2, 3].map((k) => new Uint8Array(unit).fill(0x11 * (k + 1)));
    // Four writes at once, growing the file; then reads at once, the last one past the end.
    await Promise.all(parts.map((p, k) => f.write(k * unit, p)));
    assertEquals(await f.length(), 4 * unit);
    const back = [0, 1, 2, 3].map(() => new Uint8Array(unit).fill(0xff));
    const tail = new Uint8Array(unit).fill(0xff);
    await Promise.all([
      ...back.map((b, k) => f.read(k * unit, b)),
      f.read(4 * unit - unit / 2, tail),
    ]);
    back.forEach((b, k) => assertEquals(b.every((x) => x === 0x11 * (k + 1)), true));
    assertEquals(tail.subarray(0, unit / 2).every((x) => x === 0x44), true);
    assertEquals(tail.subarray(unit / 2).every((x) => x === 0), true);
    await f.close();
    const ro = FileProtocol.open(path, { readOnly: true });
    ro.threaded = true;
    let refused = false;
    await ro.write(0, parts[0]).catch(() => (refused = true));
    assertEquals(refused, true);
    await ro.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
