/** qemu-img bench: time a run of fixed-size reads or writes (and flushes) against an image. */
import type { BlockDriver } from "@demu/block";
import { getopt, type Io, QemuImgError, usageError } from "./cli.ts";
import { closeAll, openImg, strerror } from "./image.ts";
import { cvtnum } from "./size.ts";

/** Parameters of one bench run (BenchData). */
export interface BenchParams {
  count: number;
  depth: number;
  bufsize: number;
  offset: number;
  step: number;
  write: boolean;
  pattern: number;
  flushInterval: number;
  drainOnFlush: boolean;
}

/**
 * Runs the requests. demu's drivers finish a request before the next is issued, so `depth`
 * requests "in flight" are issued back to back, in QEMU's order of offsets.
 */
export async function runBench(d: BlockDriver, p: BenchParams): Promise<number> {
  const size = await d.length();
  const buf = new Uint8Array(p.bufsize);
  if (p.write) buf.fill(p.pattern);
  let offset = p.offset;
  const start = performance.now();
  for (let i = 0; i < p.count; i++) {
    try {
      if (offset + p.bufsize > size) throw new Error("Input/output error");
      if (p.write) await d.write(offset, buf);
      else await d.read(offset, buf);
      if (p.flushInterval && (i + 1) % p.flushInterval === 0) await d.flush();
    } catch (e) {
      throw new QemuImgError(`Failed request: ${strerror(e)}`);
    }
    offset += p.step;
    if (size <= p.bufsize) offset = 0;
    else offset %= size - p.bufsize;
  }
  if (p.write) await d.flush();
  return (performance.now() - start) / 1000;
}

const LONG = [
  { name: "help", arg: false, key: "h" },
  { name: "flush-interval", arg: true, key: "flush-interval" },
  { name: "image-opts", arg: false, key: "image-opts" },
  { name: "pattern", arg: true, key: "pattern" },
  { name: "no-drain", arg: false, key: "no-drain" },
  { name: "force-share", arg: false, key: "U" },
];

const CACHE_MODES = ["none", "writeback", "writethrough", "directsync", "unsafe"];

function intArg(name: string, v: string, max = 2 ** 31 - 1): number {
  const n = /^(0x[0-9a-f]+|[0-9]+)$/i.test(v) ? Number(v) : NaN;
  if (!Number.isFinite(n) || n < 1 || n > max) throw new QemuImgError(`Invalid ${name} specified`);
  return n;
}

/** The bench command line. */
export async function cmdBench(io: Io, args: string[]): Promise<number> {
  const { opts, rest } = getopt(args, ":hc:d:f:ni:o:qs:S:t:wU", LONG);
  const p: BenchParams = {
    count: 75000,
    depth: 64,
    bufsize: 4096,
    offset: 0,
    step: 0,
    write: false,
    pattern: 0,
    flushInterval: 0,
    drainOnFlush: true,
  };
  let format: string | undefined;
  let quiet = false;
  let forceShare = false;
  for (const [k, v] of opts) {
    switch (k) {
      case "h":
        io.out(
          "usage: qemu-img bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] " +
            "[-i aio] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] " +
            "[-S step_size] [-t cache] [-w] [-U] filename\n",
        );
        return 0;
      case "c":
        p.count = intArg("request count", v);
        break;
      case "d":
        p.depth = intArg("queue depth", v);
        break;
      case "f":
        format = v;
        break;
      case "n":
      case "i":
        break;
      case "o":
        p.offset = cvtnum("offset", v);
        break;
      case "q":
        quiet = true;
        break;
      case "s":
        p.bufsize = cvtnum("buffer size", v, 1n, 2147483647n);
        break;
      case "S":
        p.step = cvtnum("step size", v, 0n, 2147483647n);
        break;
      case "t":
        if (!CACHE_MODES.includes(v)) throw new QemuImgError("Invalid cache mode");
        break;
      case "w":
        p.write = true;
        break;
      case "U":
        forceShare = true;
        break;
      case "flush-interval":
        p.flushInterval = intArg("flush interval", v);
        break;
      case "no-drain":
        p.drainOnFlush = false;
        break;
      case "pattern": {
        const n = Number(v);
        if (!/^[0-9]+$/.test(v) || n > 0xff) {
          throw new QemuImgError("Invalid pattern byte specified");
        }
        p.pattern = n;
        break;
      }
    }
  }
  if (rest.length !== 1) throw usageError("Expecting one image file name");
  if (p.flushInterval && !p.write) {
    throw new QemuImgError("--flush-interval is only available in write tests");
  }
  if (!p.drainOnFlush && !p.flushInterval) {
    throw new QemuImgError("--no-drain requires --flush-interval");
  }
  if (!p.step) p.step = p.bufsize;
  const d = await openImg(io, rest[0], { format, readOnly: !p.write, forceShare, quiet });
  try {
    if (!quiet) {
      io.out(
        `Sending ${p.count} ${p.write ? "write" : "read"} requests, ${p.bufsize} bytes each, ` +
          `${p.depth} in parallel (starting at offset ${p.offset}, step size ${p.step})\n`,
      );
      if (p.flushInterval) io.out(`Sending flush every ${p.flushInterval} requests\n`);
    }
    const secs = await runBench(d, p);
    if (!quiet) io.out(`Run completed in ${secs.toFixed(3)} seconds.\n`);
  } finally {
    await closeAll(d);
  }
  return 0;
}
