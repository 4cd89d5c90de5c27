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
