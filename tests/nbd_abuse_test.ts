/**
 * demu's qemu-nbd under hostile and broken clients, speaking raw bytes: bad magic, unknown and
 * oversized options, oversized lengths, out-of-range offsets, writes to a read-only export,
 * unknown commands and flags, disconnects mid-request, a stalled handshake and a client that
 * never reads its replies, and a thousand connections of random bytes. Each gets the protocol's
 * answer (or the connection closed), the server keeps serving everyone else with pipelined
 * requests, and the image still passes the real `qemu-img check` with the expected contents.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import {
  encodeRequest,
  IHAVEOPT,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_SIMPLE_REPLY_MAGIC,
  NBDMAGIC,
  openImage,
  SocketReader,
} from "@demu/block";
import { freePort, peers, Rng, run, startDemuNbd, tempDir } from "../tools/qemu_nbd/testing.ts";

const ignore = !peers("qemu-img", "qemu-io");
const MiB = 1 << 20;
const SIZE = 16 * MiB;

/** A raw-bytes NBD client for poking at the server. */
class RawClient {
  readonly reader: SocketReader;
  private constructor(readonly conn: Deno.Conn) {
    this.reader = new SocketReader(conn);
  }
  static async connect(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }
  async send(...parts: Uint8Array[]): Promise<void> {
    for (const p of parts) {
      let o = 0;
      while (o < p.length) o += await this.conn.write(p.subarray(o));
    }
  }
  /** Reads the greeting and answers with the given client flags. */
  async greet(flags = 3): Promise<void> {
    const g = new DataView((await this.reader.readExact(18)).buffer);
    strictEqual(g.getBigUint64(0), NBDMAGIC);
    strictEqual(g.getBigUint64(8), IHAVEOPT);
    await this.send(u32(flags));
  }
  async option(opt: number, payload = new Uint8Array(0)): Promise<void> {
    const h = new Uint8Array(16);
    const v = new DataView(h.buffer);
    v.setBigUint64(0, IHAVEOPT);
    v.setUint32(8, opt);
    v.setUint32(12, payload.length);
    await this.send(h, payload);
  }
  /** One option reply: [type, payload]. */
  async optionReply(): Promise<[number, Uint8Array]> {
    const v = new DataView((await this.reader.readExact(20)).buffer);
    return [v.getUint32(12), await this.reader.readExact(v.getUint32(16))];
  }
  /** NBD_OPT_GO for an export; returns the final reply type. */
  async go(name: string): Promise<number> {
    const n = new TextEncoder().encode(name);
    const p = new Uint8Array(4 + n.length + 2);
    new DataView(p.buffer).setUint32(0, n.length);
    p.set(n, 4);
    await this.option(NBD_OPT_GO, p);
    for (;;) {
      const [type] = await this.optionReply();
      if (type !== 3) return type; // skip NBD_REP_INFO
    }
  }
  async request(type: number, handle: number, offset: number, length: number, flags = 0) {
    await this.send(encodeRequest(flags, type, handle, offset, length));
  }
  /** A simple reply: [errno, handle]. */
  async reply(dataLength = 0): Promise<[number, number, Uint8Array]> {
    const v = new DataView((await this.reader.readExact(16)).buffer);
    strictEqual(v.getUint32(0), NBD_SIMPLE_REPLY_MAGIC);
    const errno = v.getUint32(4);
    const data = errno ? new Uint8Array(0) : await this.reader.readExact(dataLength);
    return [errno, v.getUint32(12), data];
  }
  /** True when the server has closed the connection (EOF within the time limit). */
  async closedByServer(ms = 5000): Promise<boolean> {
    const buf = new Uint8Array(64);
    const timer = setTimeout(() => this.conn.close(), ms);
    try {
      for (;;) {
        const n = await this.conn.read(buf);
        if (n === null) return true;
      }
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** A client in transmission phase with simple replies. */
async function transmission(port: number, name = ""): Promise<RawClient> {
  const c = await RawClient.connect(port);
  await c.greet();
  strictEqual(await c.go(name), NBD_REP_ACK);
  return c;
}

Deno.test({
  name: "qemu-nbd survives hostile clients and keeps serving (qcow2 and a read-only raw)",
  ignore,
  async fn() {
    const [dir, cleanup] = await tempDir("demu-nbd-abuse-");
    try {
      await abuse(dir);
    } finally {
      await cleanup();
    }
  },
});

/** The whole abuse run against two servers in dir; the image checks come last. */
async function abuse(dir: string): Promise<void> {
  const img = `${dir}/disk.qcow2`;
  const ro = `${dir}/ro.raw`;
  strictEqual((await run("qemu-img", ["create", "-q", "-f", "qcow2", img, "16M"])).code, 0);
  strictEqual((await run("qemu-io", ["-f", "qcow2", "-c", "write -P 0x3c 0 16M", img])).code, 0);
  await Deno.writeFile(ro, new Uint8Array(MiB).fill(0x77));
  const port = freePort();
  const roPort = freePort();
  const srv = await startDemuNbd(
    ["-t", "-e", "0", "-f", "qcow2", "-b", "127.0.0.1", "-p", String(port), img],
    { port },
  );
  const roSrv = await startDemuNbd(
    ["-t", "-e", "0", "-r", "-f", "raw", "-x", "ro", "-b", "127.0.0.1", "-p", String(roPort), ro],
    { port: roPort },
  );
  try {
    // Bad magic: unknown client flags, then a bad option magic.
    let c = await RawClient.connect(port);
    await c.greet(0xfffffff0);
    ok(await c.closedByServer(), "unknown client flags close the connection");
    c = await RawClient.connect(port);
    await c.greet();
    await c.send(new Uint8Array(16).fill(0x41));
    ok(await c.closedByServer(), "bad option magic closes the connection");

    // Unknown options, oversized options, bad payloads, unknown exports: error replies.
    c = await RawClient.connect(port);
    await c.greet();
    await c.option(0x77, new Uint8Array(10));
    strictEqual((await c.optionReply())[0], NBD_REP_ERR_UNSUP);
    await c.option(0x78, new Uint8Array(100 * 1024));
    strictEqual((await c.optionReply())[0], NBD_REP_ERR_TOO_BIG);
    await c.option(NBD_OPT_LIST, new Uint8Array(3));
    strictEqual((await c.optionReply())[0], NBD_REP_ERR_INVALID);
    await c.option(NBD_OPT_GO, new Uint8Array([0, 0, 0, 9, 1]));
    strictEqual((await c.optionReply())[0], NBD_REP_ERR_INVALID);
    strictEqual(await c.go("no such export"), NBD_REP_ERR_UNKNOWN);
    strictEqual(await c.go(""), NBD_REP_ACK, "the same connection still gets in");

    // Transmission: every bad request gets its errno and the connection goes on.
    const bad: [number, number, number, number, number][] = [
      // type, offset, length, flags, expected errno
      [NBD_CMD_READ, 0, 64 * MiB, 0, NBD_EINVAL],
      [NBD_CMD_READ, SIZE, 1, 0, NBD_EINVAL],
      [NBD_CMD_READ, SIZE - 1, 2, 0, NBD_EINVAL],
      [NBD_CMD_READ, 2 ** 53, 512, 0, NBD_EINVAL],
      [NBD_CMD_WRITE_ZEROES, SIZE - 512, 1024, 0, NBD_EINVAL],
      [NBD_CMD_TRIM, SIZE, 4096, 0, NBD_EINVAL],
      [99, 0, 512, 0, NBD_EINVAL],
      [NBD_CMD_READ, 0, 512, 0x80, NBD_EINVAL],
      [NBD_CMD_BLOCK_STATUS, 0, 512, 0, NBD_EINVAL],
    ];
    let handle = 1;
    for (const [type, offset, length, flags, errno] of bad) {
      await c.request(type, handle, offset, length, flags);
      deepStrictEqual((await c.reply()).slice(0, 2), [errno, handle], `request type ${type}`);
      handle++;
    }
    // A write past the end still has its payload consumed.
    await c.request(NBD_CMD_WRITE, handle, SIZE - 2, 4);
    await c.send(new Uint8Array(4).fill(9));
    deepStrictEqual((await c.reply()).slice(0, 2), [NBD_EINVAL, handle++]);
    // Pipelined: 32 requests out before any reply is read; every one answered once.
    const handles = new Set<number>();
    for (let i = 0; i < 32; i++) {
      await c.request(NBD_CMD_READ, 1000 + i, i * 4096, 4096);
      handles.add(1000 + i);
    }
    for (let i = 0; i < 32; i++) {
      const [errno, h, data] = await c.reply(4096);
      strictEqual(errno, 0);
      ok(handles.delete(h), `handle ${h} answered once`);
      ok(data.every((b) => b === 0x3c));
    }
    // An oversized write cannot be skipped: EINVAL, then the server hangs up.
    await c.request(NBD_CMD_WRITE, handle, 0, 64 * MiB);
    deepStrictEqual((await c.reply()).slice(0, 2), [NBD_EINVAL, handle]);
    ok(await c.closedByServer(), "oversized write ends the connection");

    // A read-only export refuses writes (EINVAL, as QEMU 7.2: they are not advertised).
    c = await transmission(roPort, "ro");
    for (const type of [NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES, NBD_CMD_TRIM]) {
      await c.request(type, type, 0, 512);
      if (type === NBD_CMD_WRITE) await c.send(new Uint8Array(512));
      deepStrictEqual((await c.reply()).slice(0, 2), [NBD_EINVAL, type]);
    }
    await c.request(NBD_CMD_FLUSH, 50, 0, 0);
    deepStrictEqual((await c.reply()).slice(0, 2), [0, 50]);
    c.close();

    // Disconnects mid-request: half a header, a write missing its payload, a read then gone.
    c = await transmission(port);
    await c.send(encodeRequest(0, NBD_CMD_READ, 1, 0, 512).subarray(0, 13));
    c.close();
    c = await transmission(port);
    await c.request(NBD_CMD_WRITE, 2, 0, MiB);
    await c.send(new Uint8Array(1000).fill(0xee));
    c.close();
    c = await transmission(port);
    await c.request(NBD_CMD_READ, 3, 0, 8 * MiB);
    c.close();

    // A stalled handshake and a client that never reads its replies do not hold anyone up.
    const stalled = await RawClient.connect(port);
    const hog = await transmission(port);
    for (let i = 0; i < 64; i++) await hog.request(NBD_CMD_READ, i, 0, 4 * MiB);

    // A thousand connections of random bytes, while a real client works alongside.
    const rng = new Rng(42);
    const good = await openImage(`nbd://127.0.0.1:${port}`, { format: "raw" });
    const goodWork = (async () => {
      const buf = new Uint8Array(65536);
      for (let i = 0; i < 40; i++) {
        const off = (i % 16) * MiB;
        await good.write(off, new Uint8Array(65536).fill(0x3c));
        await good.read(off, buf);
        ok(buf.every((b) => b === 0x3c));
      }
    })();
    let goodError: unknown = null;
    goodWork.catch((e) => (goodError = e));
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const junk = rng.bytes(1 + rng.below(400));
          // A third send valid client flags first, so the garbage lands in option parsing.
          if (i % 3 === 0 && junk.length >= 4) junk.set(u32(3), 0);
          let conn: Deno.Conn | undefined;
          try {
            conn = await Deno.connect({ hostname: "127.0.0.1", port });
            await conn.read(new Uint8Array(18));
            await conn.write(junk);
          } catch { /* the server may hang up first */ }
          try {
            conn?.close();
          } catch { /* closed */ }
        }),
      );
    }
    await goodWork.catch(() => {});
    strictEqual(goodError, null, "the well-behaved client was served throughout");
    await good.close();
    stalled.close();
    hog.close();

    // Still serving: a fresh client reads the expected bytes.
    c = await transmission(port);
    await c.request(NBD_CMD_READ, 7, 15 * MiB, 65536);
    const [errno, , data] = await c.reply(65536);
    strictEqual(errno, 0);
    ok(data.every((b) => b === 0x3c));
    c.close();
  } finally {
    await srv.stop();
    await roSrv.stop();
  }
  const check = await run("qemu-img", ["check", img]);
  strictEqual(check.code, 0, check.stdout + check.stderr);
  const r = await run("qemu-io", ["-f", "qcow2", "-c", "read -P 0x3c 0 16M", img]);
  strictEqual(r.code, 0, r.stdout + r.stderr);
  deepStrictEqual(await Deno.readFile(ro), new Uint8Array(MiB).fill(0x77));
}
