import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { BlockError, NbdDriver, NbdHandshake, openImage } from "@demu/block";
import { NbdServer } from "./server.ts";
import { extents } from "./status.ts";
import { MemoryOverlay } from "./overlay.ts";

const MiB = 1 << 20;

/** Serves exports in this process on a unix socket; returns the path and a stopper. */
function serve(server: NbdServer, dir: string) {
  const path = `${dir}/s.sock`;
  const l = Deno.listen({ transport: "unix", path });
  const conns: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const c of l) conns.push(server.handle(c));
  })();
  return {
    path,
    async stop() {
      l.close();
      await accepting.catch(() => {});
      server.closeAll();
      await Promise.all(conns);
    },
  };
}

Deno.test("NbdServer and NbdDriver: data, zeroes, trims, holes and block status round-trip", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/d.raw`;
    await Deno.writeFile(file, new Uint8Array(0));
    await Deno.truncate(file, 4 * MiB);
    const img = await openImage(file, { format: "raw" });
    const server = await NbdServer.create([
      { name: "d", description: "disk", driver: img, readOnly: false, discard: "unmap" },
      { name: "ro", description: "", driver: new MemoryOverlay(img), readOnly: true },
    ]);
    const s = serve(server, dir);
    try {
      const d = await NbdDriver.open(`nbd+unix:///d?socket=${s.path}`);
      strictEqual(await d.length(), 4 * MiB);
      const data = new Uint8Array(MiB).map((_, i) => (i * 7) & 0xff);
      // Pipelined: several writes and reads in flight at once.
      await Promise.all([0, 1, 2].map((i) => d.write(i * MiB, data)));
      const back = await Promise.all([0, 1, 2].map(async (i) => {
        const b = new Uint8Array(MiB);
        await d.read(i * MiB, b);
        return b;
      }));
      for (const b of back) deepStrictEqual(b, data);
      await d.writeZeroes(MiB, 64 * 1024, { mayUnmap: true });
      await d.discard(2 * MiB, MiB);
      const z = new Uint8Array(64 * 1024).fill(1);
      await d.read(MiB, z);
      ok(z.every((b) => b === 0));
      // Block status reflects the punched hole; the last MiB was never written.
      const st = await d.blockStatus(3 * MiB, MiB);
      deepStrictEqual([st.zero, st.data], [true, false]);
      const ext = await extents(img, 0, 4 * MiB, false, false);
      deepStrictEqual(ext.filter((_, i) => i % 2 === 1).includes(3), true);
      await rejects(d.read(4 * MiB - 1, new Uint8Array(2)), BlockError);
      await d.flush();
      await d.close();

      const ro = await NbdDriver.open(`nbd+unix:///ro?socket=${s.path}`);
      strictEqual(ro.readOnly, true);
      await rejects(ro.write(0, new Uint8Array(1)), BlockError);
      await ro.close();

      const h = await NbdHandshake.open({ socket: s.path, exportName: "" });
      deepStrictEqual(await h.list(), [{ name: "d", description: "disk" }, {
        name: "ro",
        description: "",
      }]);
      await h.abort();
      await rejects(NbdDriver.open(`nbd+unix:///nope?socket=${s.path}`), /export unknown/);
    } finally {
      await s.stop();
      await img.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
