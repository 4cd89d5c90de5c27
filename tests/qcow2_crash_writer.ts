/**
 * The crash test's victim: opens a qcow2 image through demu's driver and writes, zeroes,
 * discards and flushes at random until it is killed. Every request is logged (one JSON line,
 * written before the request is issued) and every completed flush is logged after it returns, so
 * the test knows which data the image must hold after a SIGKILL.
 *
 * Usage: deno run -A tests/qcow2_crash_writer.ts IMAGE LOG SEED
 * Written data: byte at guest offset p of request i is (i * 131 + p) & 0xff, never 0 for i > 0.
 */
import { openImage } from "../block/mod.ts";

/** The byte request `i` writes at guest offset `p`. */
export function patternByte(i: number, p: number): number {
  return ((i * 131 + p) % 255) + 1;
}

/** One logged request. */
export interface CrashOp {
  i: number;
  op: "write" | "zero" | "discard" | "flush" | "flushed" | "open" | "snapshot";
  off?: number;
  len?: number;
  /** A write that went through the compressed path (data as {@link compressedByte}). */
  compressed?: boolean;
}

/** The byte a compressed write of request `i` puts at guest offset `p` (compressible). */
export function compressedByte(i: number, p: number, clusterStart: number): number {
  return patternByte(i, p) & ((p - clusterStart) & 64 ? 0x0f : 0xff);
}

if (import.meta.main) {
  const [path, logPath, seedText] = Deno.args;
  let x = (Number(seedText) * 2654435761) >>> 0 || 1;
  const rand = (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
  const log = Deno.openSync(logPath, { write: true, create: true, append: true });
  const enc = new TextEncoder();
  const say = (o: CrashOp) => log.writeSync(enc.encode(JSON.stringify(o) + "\n"));
  const img = await openImage(path, { format: "qcow2" });
  const size = await img.length();
  // qcow2 extras beyond the BlockDriver interface: compressed writes and internal snapshots.
  const q = img as unknown as {
    clusterSize?: number;
    writeCompressed?: (offset: number, data: Uint8Array) => Promise<void>;
    createSnapshot?: (name: string) => Promise<unknown>;
    deleteSnapshot?: (idOrName: string) => Promise<void>;
  };
  const snapshots: string[] = [];
  // Cluster-ish granularity for discards and zeroes so that they take effect whole.
  const unit = 65536;
  const first = Number(seedText) * 100000;
  say({ i: first, op: "open" });
  for (let i = first + 1;; i++) {
    const r = rand(100);
    if (r < 8 && q.writeCompressed && q.clusterSize) {
      // A whole cluster, compressed; where the image cannot take it, written plainly.
      const cs = q.clusterSize;
      const off = rand(size / cs) * cs;
      const data = new Uint8Array(cs);
      for (let p = 0; p < cs; p++) data[p] = compressedByte(i, off + p, off);
      say({ i, op: "write", off, len: cs, compressed: true });
      try {
        await q.writeCompressed(off, data);
      } catch {
        await img.write(off, data);
      }
    } else if (r < 11 && q.createSnapshot && q.deleteSnapshot) {
      // Snapshots change no guest data: the log notes them, the model ignores them.
      say({ i, op: "snapshot" });
      try {
        await q.createSnapshot(`s${i}`);
        snapshots.push(`s${i}`);
        if (snapshots.length > 2) await q.deleteSnapshot(snapshots.shift()!);
      } catch {
        // refcount_bits=1 images cannot share clusters: no snapshots there
      }
    } else if (r < 55) {
      const len = 1 + rand(3 * unit);
      const off = rand(4) === 0 ? Math.min(rand(size / unit) * unit, size - len) : rand(size - len);
      const data = new Uint8Array(len);
      for (let p = 0; p < len; p++) data[p] = patternByte(i, off + p);
      say({ i, op: "write", off, len });
      await img.write(off, data);
    } else if (r < 68) {
      const len = (1 + rand(3)) * unit;
      const off = rand(size / unit - 3) * unit;
      say({ i, op: "zero", off, len });
      await img.writeZeroes(off, len, { mayUnmap: rand(2) === 0 });
    } else if (r < 78) {
      const len = (1 + rand(3)) * unit;
      const off = rand(size / unit - 3) * unit;
      say({ i, op: "discard", off, len });
      await img.discard(off, len);
    } else {
      say({ i, op: "flush" });
      await img.flush();
      say({ i, op: "flushed" });
    }
  }
}
