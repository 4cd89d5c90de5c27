/**
 * The option haggling of the handshake, byte for byte: one sequence of good, bad and odd options
 * (wrong lengths, unknown options, STARTTLS without TLS, meta contexts before and after structured
 * replies, INFO with every info request, unknown exports) sent to demu's and the real qemu-nbd
 * serving the same image; every reply (type and payload) must be the same.
 */
import { deepStrictEqual } from "node:assert/strict";
import { IHAVEOPT, NBDMAGIC, SocketReader } from "@demu/block";
import { peers, startDemuNbd, startServer, tempDir } from "../tools/qemu_nbd/testing.ts";

const ignore = !peers("qemu-nbd");

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}
function u16(n: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, n);
  return b;
}
function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
const text = (s: string) => new TextEncoder().encode(s);
const str = (s: string) => cat(u32(text(s).length), text(s));
const meta = (name: string, ...queries: string[]) =>
  cat(str(name), u32(queries.length), ...queries.map(str));
const info = (name: string, ...reqs: number[]) =>
  cat(str(name), u16(reqs.length), ...reqs.map(u16));

/** [option, payload] in order; the last is GO, after which the connection is in transmission. */
const SEQUENCE: [number, Uint8Array][] = [
  [5, new Uint8Array(0)], // STARTTLS
  [8, text("x")], // STRUCTURED_REPLY with a payload
  [3, text("abc")], // LIST with a payload
  [6, new Uint8Array(2)], // INFO too short
  [7, cat(info("exp"), text("q"))], // GO with trailing bytes
  [9, new Uint8Array(1)], // LIST_META_CONTEXT too short
  [9, meta("exp")], // LIST_META_CONTEXT before structured replies
  [10, meta("exp", "base:allocation")], // SET before structured replies
  [0x55, new Uint8Array(0)], // unknown option
  [8, new Uint8Array(0)], // STRUCTURED_REPLY
  [8, new Uint8Array(0)], // again
  [9, meta("exp", "base:")],
  [9, meta("exp", "qemu:")],
  [9, meta("exp", "qemu:allocation-depth", "nonsense:x", "base:allocation")],
  [9, meta("nope")],
  [10, meta("exp", "base:", "qemu:allocation-depth")],
  [3, new Uint8Array(0)], // LIST
  [6, info("exp", 0, 1, 2, 3)], // INFO asking for everything
  [6, info("nope")],
  [6, info("exp")],
  [7, info("exp", 3)], // GO
];

/** Runs SEQUENCE; returns every reply as [option, type, payload bytes]. */
async function haggle(socket: string): Promise<[number, number, number[]][]> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  const r = new SocketReader(conn);
  const out: [number, number, number[]][] = [];
  try {
    const g = new DataView((await r.readExact(18)).buffer);
    deepStrictEqual([g.getBigUint64(0), g.getBigUint64(8)], [NBDMAGIC, IHAVEOPT]);
    await conn.write(u32(3));
    for (const [opt, payload] of SEQUENCE) {
      const h = new Uint8Array(16);
      const v = new DataView(h.buffer);
      v.setBigUint64(0, IHAVEOPT);
      v.setUint32(8, opt);
      v.setUint32(12, payload.length);
      await conn.write(cat(h, payload));
      for (;;) {
        const rv = new DataView((await r.readExact(20)).buffer);
        const type = rv.getUint32(12);
        const data = await r.readExact(rv.getUint32(16));
        out.push([rv.getUint32(8), type, [...data]]);
        if (type === 1 || type >= 0x80000000) break;
      }
    }
  } finally {
    conn.close();
  }
  return out;
}

Deno.test({
  name: "handshake options: demu's qemu-nbd answers byte for byte as the real one",
  ignore,
  async fn() {
    const [dir, cleanup] = await tempDir("demu-nbd-options-");
    try {
      const img = `${dir}/d.raw`;
      await Deno.writeFile(img, new Uint8Array(1 << 20));
      const replies = [];
      for (const who of ["demu", "real"]) {
        const socket = `${dir}/${who}.sock`;
        const args = ["-t", "-f", "raw", "-x", "exp", "-D", "the disk", "-A", "-k", socket, img];
        const s = who === "demu"
          ? await startDemuNbd(args, { socket })
          : await startServer("qemu-nbd", args, { socket });
        try {
          replies.push(await haggle(socket));
        } finally {
          await s.stop();
        }
      }
      deepStrictEqual(replies[0], replies[1]);
    } finally {
      await cleanup();
    }
  },
});

/** Bad and edge requests: [type, flags, offset, length, payload length]. */
const REQUESTS: [number, number, number, number, number][] = [
  [0, 0, 0, 512, 0], // READ
  [0, 0, 0, 64 << 20, 0], // READ too long
  [0, 0, 1 << 20, 1, 0], // READ at the end
  [0, 0, (1 << 20) - 1, 2, 0], // READ across the end
  [0, 0x80, 0, 512, 0], // unknown flag
  [0, 4, 0, 512, 0], // DF
  [1, 0, (1 << 20) - 2, 4, 4], // WRITE across the end
  [1, 1, 0, 512, 512], // WRITE with FUA
  [3, 0, 0, 0, 0], // FLUSH
  [4, 0, 1 << 20, 4096, 0], // TRIM past the end
  [4, 0, 0, 4096, 0], // TRIM
  [5, 0, 0, 4096, 0], // CACHE
  [5, 0, 1 << 20, 1, 0], // CACHE past the end
  [6, 0, (1 << 20) - 512, 1024, 0], // WRITE_ZEROES across the end
  [6, 2 | 16, 0, 4096, 0], // WRITE_ZEROES NO_HOLE|FAST_ZERO
  [6, 8, 0, 4096, 0], // WRITE_ZEROES with REQ_ONE
  [7, 0, 0, 4096, 0], // BLOCK_STATUS without contexts
  [99, 0, 0, 512, 0], // unknown command
];

/** Sends REQUESTS one at a time with simple replies; returns each errno. */
async function requestErrnos(socket: string): Promise<number[]> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  const r = new SocketReader(conn);
  const out: number[] = [];
  try {
    await r.readExact(18);
    await conn.write(u32(3));
    const h = new Uint8Array(16);
    const v = new DataView(h.buffer);
    v.setBigUint64(0, IHAVEOPT);
    v.setUint32(8, 7);
    const go = info("exp");
    v.setUint32(12, go.length);
    await conn.write(cat(h, go));
    for (;;) {
      const rv = new DataView((await r.readExact(20)).buffer);
      await r.readExact(rv.getUint32(16));
      if (rv.getUint32(12) === 1) break;
    }
    let handle = 1;
    for (const [type, flags, offset, length, payloadLen] of REQUESTS) {
      const q = new Uint8Array(28);
      const qv = new DataView(q.buffer);
      qv.setUint32(0, 0x25609513);
      qv.setUint16(4, flags);
      qv.setUint16(6, type);
      qv.setUint32(12, handle++);
      qv.setUint32(20, offset);
      qv.setUint32(24, length);
      await conn.write(cat(q, new Uint8Array(payloadLen)));
      const rv = new DataView((await r.readExact(16)).buffer);
      const errno = rv.getUint32(4);
      out.push(errno);
      if (!errno && type === 0) await r.readExact(length);
    }
  } finally {
    conn.close();
  }
  return out;
}

Deno.test({
  name: "transmission: each bad or edge request gets the errno the real qemu-nbd gives",
  ignore,
  async fn() {
    const [dir, cleanup] = await tempDir("demu-nbd-requests-");
    try {
      for (const extra of [[], ["-r"]]) {
        const errnos = [];
        for (const who of ["demu", "real"]) {
          const img = `${dir}/${who}.raw`;
          await Deno.writeFile(img, new Uint8Array(1 << 20));
          const socket = `${dir}/${who}.sock`;
          const args = ["-t", "-f", "raw", "-x", "exp", ...extra, "-k", socket, img];
          const s = who === "demu"
            ? await startDemuNbd(args, { socket })
            : await startServer("qemu-nbd", args, { socket });
          try {
            errnos.push(await requestErrnos(socket));
          } finally {
            await s.stop();
          }
        }
        deepStrictEqual(errnos[0], errnos[1], `qemu-nbd ${extra.join(" ")}`);
      }
    } finally {
      await cleanup();
    }
  },
});
