import { deepStrictEqual, ok, rejects, strictEqual, throws } from "node:assert/strict";
import { BlockError } from "../types.ts";
import { NbdHandshake, parseNbdFilename } from "./client.ts";
import { canonicalNbdFilename, NbdDriver } from "./driver.ts";

Deno.test("parseNbdFilename reads the names QEMU accepts", () => {
  deepStrictEqual(parseNbdFilename("nbd://example.com:1234/disk"), {
    host: "example.com",
    port: 1234,
    exportName: "disk",
  });
  deepStrictEqual(parseNbdFilename("nbd://localhost"), {
    host: "localhost",
    port: 10809,
    exportName: "",
  });
  deepStrictEqual(parseNbdFilename("nbd://[::1]:99/a%20b"), {
    host: "::1",
    port: 99,
    exportName: "a b",
  });
  deepStrictEqual(parseNbdFilename("nbd+unix:///exp?socket=/tmp/s.sock"), {
    socket: "/tmp/s.sock",
    exportName: "exp",
  });
  deepStrictEqual(parseNbdFilename("nbd:unix:/tmp/s:exportname=x"), {
    socket: "/tmp/s",
    exportName: "x",
  });
  deepStrictEqual(parseNbdFilename("nbd:h:77"), { host: "h", port: 77, exportName: "" });
  strictEqual(parseNbdFilename("/tmp/disk.img"), undefined);
  strictEqual(parseNbdFilename("disk.qcow2"), undefined);
  throws(() => parseNbdFilename("nbd+unix:///exp"), BlockError);
});

Deno.test("connecting to nothing fails with QEMU's wording", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await rejects(
      NbdDriver.open(`nbd+unix:///?socket=${dir}/none.sock`),
      (e: Error) =>
        e.message === `Failed to connect to '${dir}/none.sock': No such file or directory`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a server that is not NBD is refused at the greeting", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const serving = (async () => {
    const c = await l.accept();
    await c.write(new TextEncoder().encode("HTTP/1.0 200 OK\r\n\r\nhello there, not nbd"));
    c.close();
  })();
  try {
    await rejects(NbdHandshake.open({ host: "127.0.0.1", port, exportName: "" }), (e: Error) => {
      ok(e instanceof BlockError);
      return e.message === "Bad initial magic received";
    });
  } finally {
    await serving;
    l.close();
  }
});

Deno.test("canonicalNbdFilename names nodes as QEMU's nbd_refresh_filename", () => {
  const names = [
    "nbd://localhost",
    "nbd://h:99/",
    "nbd://h:99/x",
    "nbd+unix:///?socket=/s",
    "nbd+unix:///e?socket=/s",
    "nbd:unix:/s",
    "nbd:h:5:exportname=e",
  ].map((n) => canonicalNbdFilename(parseNbdFilename(n)!));
  deepStrictEqual(names, [
    "nbd://localhost:10809",
    "nbd://h:99",
    "nbd://h:99/x",
    "nbd+unix://?socket=/s",
    "nbd+unix:///e?socket=/s",
    "nbd+unix://?socket=/s",
    "nbd://h:5/e",
  ]);
});
