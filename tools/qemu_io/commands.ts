/**
 * qemu-io's command set over a BlockDriver: each command parses its arguments as QEMU's does and
 * prints the same lines, so scripts written against QEMU's qemu-io read demu's output unchanged.
 */
import { type BlockDriver, BlockError, openImage } from "@demu/block";
import { getopt, GetoptError } from "./getopt.ts";
import { cvtnum, cvtnumError, cvtstr, dumpBuffer, report, strerror } from "./format.ts";
import { topAllocated } from "../qemu_nbd/status.ts";
import {
  AIO_READ_HELP,
  AIO_WRITE_HELP,
  DISCARD_HELP,
  OPEN_HELP,
  READ_HELP,
  READV_HELP,
  REOPEN_HELP,
  SIGRAISE_HELP,
  WRITE_HELP,
  WRITEV_HELP,
} from "./help_text.ts";

/** Where output goes: stdout-like and stderr-like sinks. */
export interface IoSinks {
  out(text: string): void;
  err(text: string): void;
}

/** How the image is (re)opened. */
export interface IoOpenOptions {
  format?: string;
  readOnly?: boolean;
  forceShare?: boolean;
  snapshot?: boolean;
}

/** The largest single request (QEMU's BDRV_REQUEST_MAX_BYTES). */
const MAX_REQUEST = 0x7fffffff - 511;
const SECTOR = 512;

interface CmdInfo {
  name: string;
  alt?: string;
  min: number;
  max: number;
  /** Usable without an open image. */
  noFile?: boolean;
  /** Needs write permission on the image. */
  write?: boolean;
  /** Absent where QEMU's is NULL (no extra blank in help). */
  args?: string;
  oneline: string;
  help?: string;
  run: (io: QemuIo, argv: string[]) => Promise<number>;
}

class Usage extends Error {}

/** One qemu-io session: an image (or none) and the commands run against it. */
export class QemuIo {
  blk: BlockDriver | null = null;
  quit = false;
  /** How the open image was opened, for reopen. */
  openedAs: { path: string; opts: IoOpenOptions } | null = null;
  #aio = new Set<Promise<void>>();

  constructor(readonly sinks: IoSinks) {}

  out(s: string): void {
    this.sinks.out(s);
  }
  err(s: string): void {
    this.sinks.err(s);
  }

  /** Opens an image as the CLI and the open command do; false (after printing why) on failure. */
  async open(path: string, opts: IoOpenOptions = {}): Promise<boolean> {
    if (this.blk) {
      this.err("qemu-io: file open already, try 'help close'\n");
      return false;
    }
    try {
      this.blk = await openImage(path, {
        format: opts.format,
        readOnly: opts.readOnly || opts.snapshot,
        forceShare: opts.forceShare,
        warn: (m) => this.err(m + "\n"),
      });
      this.openedAs = { path, opts: { ...opts, format: opts.format ?? this.blk.format } };
      if (opts.snapshot) {
        const { MemoryOverlay } = await import("../qemu_nbd/overlay.ts");
        this.blk = new MemoryOverlay(this.blk);
      }
      return true;
    } catch (e) {
      if (e instanceof BlockError) {
        this.err(`qemu-io: can't open device ${path}: ${e.message}\n`);
        return false;
      }
      throw e;
    }
  }

  /** Waits for outstanding aio requests and closes the image. */
  async close(): Promise<void> {
    await this.drain();
    const b = this.blk;
    this.blk = null;
    await b?.close();
  }

  /** Waits for every outstanding aio request (aio_flush). */
  async drain(): Promise<void> {
    while (this.#aio.size) await Promise.allSettled([...this.#aio]);
  }

  /** Runs one command line; resolves to 0 or a negative errno-like status. */
  async command(line: string): Promise<number> {
    const argv = splitLine(line);
    if (!argv.length) return 0;
    const ct = findCommand(argv[0]);
    if (!ct) {
      this.err(`command "${argv[0]}" not found\n`);
      return -22;
    }
    if (!ct.noFile && !this.blk) {
      this.err("no file open, try 'help open'\n");
      return -22;
    }
    const argc = argv.length - 1;
    if (argc < ct.min || (ct.max !== -1 && argc > ct.max)) {
      const expected = ct.min === ct.max
        ? `${ct.min} arguments`
        : ct.max === -1
        ? `at least ${ct.min} arguments`
        : `between ${ct.min} and ${ct.max} arguments`;
      this.err(`bad argument count ${argc} to ${argv[0]}, expected ${expected}\n`);
      return -22;
    }
    if (ct.write && this.blk?.readOnly) {
      this.err("qemu-io: Block node is read-only\n");
      return -1;
    }
    try {
      return await ct.run(this, argv);
    } catch (e) {
      if (e instanceof Usage || e instanceof GetoptError) {
        if (e instanceof GetoptError) this.err(`${argv[0]}: ${e.message}\n`);
        this.out(`${ct.name} ${ct.args} -- ${ct.oneline}\n`);
        return -22;
      }
      throw e;
    }
  }

  /** Tracks an aio request until it completes. */
  track(p: Promise<void>): void {
    const q = p.finally(() => this.#aio.delete(q));
    this.#aio.add(q);
  }
}

/** Splits a command line at blanks, honouring double quotes as QEMU's breakline does. */
export function splitLine(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inWord = false;
  let quoted = false;
  for (const ch of line.replace(/[\r\n]+$/, "")) {
    if (ch === '"') {
      quoted = !quoted;
      inWord = true;
      continue;
    }
    if (!quoted && (ch === " " || ch === "\t")) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
      continue;
    }
    cur += ch;
    inWord = true;
  }
  if (inWord) out.push(cur);
  return out;
}

// ---- helpers ----------------------------------------------------------------------------------

function num(io: QemuIo, arg: string): number | null {
  const v = cvtnum(arg);
  if (typeof v === "number") return v;
  io.out(cvtnumError(v, arg));
  return null;
}

function pattern(io: QemuIo, arg: string): number | null {
  const m = /^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)$/.exec(arg);
  const v = m
    ? (/^0[xX]/.test(arg) ? parseInt(arg, 16) : /^0\d/.test(arg) ? parseInt(arg, 8) : Number(arg))
    : NaN;
  if (!(v >= 0 && v <= 255)) {
    io.out(`${arg} is not a valid pattern byte\n`);
    return null;
  }
  return v;
}

function errText(e: unknown): string {
  if (e instanceof BlockError) return strerror(e.code);
  return "Input/output error";
}

function errno(e: unknown): number {
  if (e instanceof BlockError) {
    return { EPERM: -1, EINVAL: -22, ENOSPC: -28, ENOTSUP: -95, EROFS: -30, EFBIG: -27, EIO: -5 }[
      e.code
    ];
  }
  return -5;
}

/** QEMU's range check on a request (blk_check_byte_request): -EIO beyond the end. */
async function checkRange(blk: BlockDriver, offset: number, count: number): Promise<void> {
  const len = await blk.length();
  if (offset > len || len - offset < count) throw new BlockError("EIO", "Input/output error");
}

function now(): number {
  return performance.now() / 1000;
}

function firstMismatch(buf: Uint8Array, p: number): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== p) return true;
  return false;
}

interface RwFlags {
  C: boolean;
  q: boolean;
  v: boolean;
  P?: number;
}

function parseRwFlags(io: QemuIo, opts: [string, string][], keys: string): RwFlags | null {
  const f: RwFlags = { C: false, q: false, v: false };
  for (const [k, v] of opts) {
    if (!keys.includes(k)) continue;
    if (k === "C") f.C = true;
    if (k === "q") f.q = true;
    if (k === "v") f.v = true;
    if (k === "P") {
      const p = pattern(io, v);
      if (p === null) return null;
      f.P = p;
    }
  }
  return f;
}

// ---- commands ---------------------------------------------------------------------------------

async function readCmd(io: QemuIo, argv: string[]): Promise<number> {
  const { opts, operands } = getopt(argv.slice(1), "abCqvpP:l:s:");
  const f = parseRwFlags(io, opts, "CqvP");
  if (!f) return -22;
  let patOff = 0;
  let patLen: number | null = null;
  let vmstate = false;
  for (const [k, v] of opts) {
    if (k === "b") vmstate = true;
    if (k === "s" || k === "l") {
      const n = num(io, v);
      if (n === null) return -22;
      if (k === "s") patOff = n;
      else patLen = n;
    }
  }
  if (operands.length !== 2) throw new Usage();
  if (f.P === undefined && opts.some(([k]) => k === "s" || k === "l")) throw new Usage();
  const offset = num(io, operands[0]);
  if (offset === null) return -22;
  const count = num(io, operands[1]);
  if (count === null) return -22;
  if (count > MAX_REQUEST) {
    io.out(`length cannot exceed ${MAX_REQUEST}, given ${operands[1]}\n`);
    return -22;
  }
  const pl = patLen ?? count - patOff;
  if (f.P !== undefined && (patOff + pl > count || pl < 0)) {
    io.out("pattern verification range exceeds end of read data\n");
    return -22;
  }
  const buf = new Uint8Array(count);
  const t0 = now();
  try {
    if (vmstate) throw new BlockError("ENOTSUP", "vmstate");
    await checkRange(io.blk!, offset, count);
    await io.blk!.read(offset, buf);
  } catch (e) {
    io.out(`read failed: ${errText(e)}\n`);
    return errno(e);
  }
  const t = now() - t0;
  let ret = 0;
  if (f.P !== undefined && firstMismatch(buf.subarray(patOff, patOff + pl), f.P)) {
    io.out(`Pattern verification failed at offset ${offset + patOff}, ${pl} bytes\n`);
    ret = -22;
  }
  if (f.q) return ret;
  if (f.v) io.out(dumpBuffer(buf, offset));
  io.out(report("read", t, offset, count, count, 1, f.C));
  return ret;
}

async function writeCmd(io: QemuIo, argv: string[]): Promise<number> {
  const { opts, operands } = getopt(argv.slice(1), "bcCfnpP:qs:uz");
  const f = parseRwFlags(io, opts, "CqP");
  if (!f) return -22;
  const has = (k: string) => opts.some(([o]) => o === k);
  const z = has("z"), u = has("u"), n = has("n"), c = has("c"), fua = has("f");
  const source = opts.find(([k]) => k === "s")?.[1];
  if (operands.length !== 2) throw new Usage();
  if ((fua && (has("b") || c))) {
    io.out("-f and -b or -c cannot be specified at the same time\n");
    return -22;
  }
  if (n && !z) {
    io.out("-n requires -z to be specified\n");
    return -22;
  }
  if (u && !z) {
    io.out("-u requires -z to be specified\n");
    return -22;
  }
  if (Number(z) + Number(f.P !== undefined) + Number(source !== undefined) > 1) {
    io.out("Only one of -z, -P, and -s can be specified at the same time\n");
    return -22;
  }
  const offset = num(io, operands[0]);
  if (offset === null) return -22;
  const count = num(io, operands[1]);
  if (count === null) return -22;
  if (count > MAX_REQUEST && !z) {
    io.out(`length cannot exceed ${MAX_REQUEST}, given ${operands[1]}\n`);
    return -22;
  }
  let buf: Uint8Array | null = null;
  if (!z) {
    buf = new Uint8Array(count).fill(f.P ?? 0xcd);
    if (source !== undefined) {
      // QEMU repeats the file's bytes until the buffer is full.
      let data: Uint8Array;
      try {
        data = Deno.readFileSync(source);
      } catch (e) {
        const why = e instanceof Deno.errors.NotFound
          ? "No such file or directory"
          : e instanceof Deno.errors.PermissionDenied
          ? "Permission denied"
          : "Input/output error";
        io.err(`${source}: ${why}\n`);
        return -22;
      }
      if (!data.length) {
        io.err(`qemu-io: Failed to read pattern file '${source}': file is empty\n`);
        return -22;
      }
      for (let p = 0; p < count; p += data.length) {
        buf.set(data.subarray(0, Math.min(data.length, count - p)), p);
      }
    }
  }
  const blk = io.blk!;
  const t0 = now();
  try {
    if (has("b")) throw new BlockError("ENOTSUP", "vmstate");
    await checkRange(blk, offset, count);
    if (z) await blk.writeZeroes(offset, count, { mayUnmap: u, noFallback: n });
    else if (c) {
      const wc = (blk as { writeCompressed?: (o: number, d: Uint8Array) => Promise<void> })
        .writeCompressed;
      if (!wc) throw new BlockError("ENOTSUP", "compression");
      await wc.call(blk, offset, buf!);
    } else await blk.write(offset, buf!, fua);
  } catch (e) {
    io.out(`write failed: ${errText(e)}\n`);
    return errno(e);
  }
  if (f.q) return 0;
  io.out(report("wrote", now() - t0, offset, count, count, 1, f.C));
  return 0;
}

/** Parses "off len [len..]" of readv/writev/aio_*. */
function vectorArgs(io: QemuIo, operands: string[]): { offset: number; lens: number[] } | null {
  if (operands.length < 2) throw new Usage();
  const offset = num(io, operands[0]);
  if (offset === null) return null;
  const lens: number[] = [];
  for (const a of operands.slice(1)) {
    const n = num(io, a);
    if (n === null) return null;
    lens.push(n);
  }
  return { offset, lens };
}

async function readvCmd(io: QemuIo, argv: string[]): Promise<number> {
  const { opts, operands } = getopt(argv.slice(1), "CP:qv");
  const f = parseRwFlags(io, opts, "CqvP");
  if (!f) return -22;
  const va = vectorArgs(io, operands);
  if (!va) return -22;
  const count = va.lens.reduce((a, b) => a + b, 0);
  const buf = new Uint8Array(count);
  const t0 = now();
  try {
    await checkRange(io.blk!, va.offset, count);
    await io.blk!.read(va.offset, buf);
  } catch (e) {
    io.out(`readv failed: ${errText(e)}\n`);
    return errno(e);
  }
  const t = now() - t0;
  let ret = 0;
  if (f.P !== undefined && firstMismatch(buf, f.P)) {
    io.out(`Pattern verification failed at offset ${va.offset}, ${count} bytes\n`);
    ret = -22;
  }
  if (f.q) return ret;
  if (f.v) io.out(dumpBuffer(buf, va.offset));
  io.out(report("read", t, va.offset, count, count, 1, f.C));
  return ret;
}

async function writevCmd(io: QemuIo, argv: string[]): Promise<number> {
  const { opts, operands } = getopt(argv.slice(1), "CfqpP:");
  const f = parseRwFlags(io, opts, "CqP");
  if (!f) return -22;
  const va = vectorArgs(io, operands);
  if (!va) return -22;
  const count = va.lens.reduce((a, b) => a + b, 0);
  const buf = new Uint8Array(count).fill(f.P ?? 0xcd);
  const t0 = now();
  try {
    await checkRange(io.blk!, va.offset, count);
    await io.blk!.write(va.offset, buf, opts.some(([k]) => k === "f"));
  } catch (e) {
    io.out(`writev failed: ${errText(e)}\n`);
    return errno(e);
  }
  if (f.q) return 0;
  io.out(report("wrote", now() - t0, va.offset, count, count, 1, f.C));
  return 0;
}

function aioReadCmd(io: QemuIo, argv: string[]): Promise<number> {
  const { opts, operands } = getopt(argv.slice(1), "CiP:qv");
  const f = parseRwFlags(io, opts, "CqvP");
  if (!f) return Promise.resolve(-22);
  const va = vectorArgs(io, operands);
  if (!va) return Promise.resolve(-22);
  if (opts.some(([k]) => k === "i")) {
    io.out("injecting invalid read request\n");
    return Promise.resolve(0);
  }
  const count = va.lens.reduce((a, b) => a + b, 0);
  const blk = io.blk!;
  const t0 = now();
  io.track((async () => {
    const buf = new Uint8Array(count);
    try {
      await checkRange(blk, va.offset, count);
      await blk.read(va.offset, buf);
    } catch (e) {
      io.out(`readv failed: ${errText(e)}\n`);
      return;
    }
    const t = now() - t0;
    if (f.P !== undefined && firstMismatch(buf, f.P)) {
      io.out(`Pattern verification failed at offset ${va.offset}, ${count} bytes\n`);
    }
    if (f.q) return;
    if (f.v) io.out(dumpBuffer(buf, va.offset));
    io.out(report("read", t, va.offset, count, count, 1, f.C));
  })());
  return Promise.resolve(0);
}

function aioWriteCmd(io: QemuIo, argv: string[]): Promise<number> {
  const { opts, operands } = getopt(argv.slice(1), "CfiqP:uz");
  const f = parseRwFlags(io, opts, "CqP");
  if (!f) return Promise.resolve(-22);
  const has = (k: string) => opts.some(([o]) => o === k);
  const z = has("z");
  if (has("u") && !z) {
    io.out("-u requires -z to be specified\n");
    return Promise.resolve(-22);
  }
  if (z && f.P !== undefined) {
    io.out("-z and -P cannot be specified at the same time\n");
    return Promise.resolve(-22);
  }
  const va = vectorArgs(io, operands);
  if (!va) return Promise.resolve(-22);
  if (has("i")) {
    io.out("injecting invalid write request\n");
    return Promise.resolve(0);
  }
  if (z && va.lens.length !== 1) throw new Usage();
  const count = va.lens.reduce((a, b) => a + b, 0);
  const blk = io.blk!;
  const t0 = now();
  io.track((async () => {
    try {
      await checkRange(blk, va.offset, count);
      if (z) await blk.writeZeroes(va.offset, count, { mayUnmap: has("u") });
      else await blk.write(va.offset, new Uint8Array(count).fill(f.P ?? 0xcd), has("f"));
    } catch (e) {
      io.out(`aio_write failed: ${errText(e)}\n`);
      return;
    }
    if (f.q) return;
    io.out(report("wrote", now() - t0, va.offset, count, count, 1, f.C));
  })());
  return Promise.resolve(0);
}

async function aioFlushCmd(io: QemuIo): Promise<number> {
  await io.drain();
  return 0;
}

async function discardCmd(io: QemuIo, argv: string[]): Promise<number> {
  const { opts, operands } = getopt(argv.slice(1), "Cq");
  const f = parseRwFlags(io, opts, "Cq")!;
  if (operands.length !== 2) throw new Usage();
  const offset = num(io, operands[0]);
  if (offset === null) return -22;
  const count = num(io, operands[1]);
  if (count === null) return -22;
  if (count > MAX_REQUEST) {
    io.out(`length cannot exceed ${MAX_REQUEST}, given ${operands[1]}\n`);
    return -22;
  }
  const t0 = now();
  try {
    await checkRange(io.blk!, offset, count);
    await io.blk!.discard(offset, count);
  } catch (e) {
    io.out(`discard failed: ${errText(e)}\n`);
    return errno(e);
  }
  if (!f.q) io.out(report("discard", now() - t0, offset, count, count, 1, f.C));
  return 0;
}

async function allocCmd(io: QemuIo, argv: string[]): Promise<number> {
  const offset = num(io, argv[1]);
  if (offset === null) return -22;
  let count = SECTOR;
  if (argv.length === 3) {
    const n = num(io, argv[2]);
    if (n === null) return -22;
    count = n;
  }
  const blk = io.blk!;
  const len = await blk.length();
  let remaining = count;
  let pos = offset;
  let sum = 0;
  while (remaining > 0) {
    if (pos >= len) {
      // Nothing exists past the end: QEMU reports a shortened count.
      count -= remaining;
      break;
    }
    let s;
    try {
      s = await topAllocated(blk, pos, Math.min(remaining, len - pos));
    } catch (e) {
      io.out(`is_allocated failed: ${errText(e)}\n`);
      return errno(e);
    }
    if (s.allocated) sum += s.length;
    pos += s.length;
    remaining -= s.length;
  }
  io.out(`${sum}/${count} bytes allocated at offset ${cvtstr(offset)}\n`);
  return 0;
}

async function mapCmd(io: QemuIo): Promise<number> {
  const blk = io.blk!;
  const len = await blk.length();
  for (let offset = 0; offset < len;) {
    let s;
    try {
      s = await topAllocated(blk, offset, Math.min(len - offset, MAX_REQUEST));
    } catch (e) {
      io.err(`Failed to get allocation status: ${errText(e)}\n`);
      return errno(e);
    }
    // Runs longer than one request merge, as QEMU's map_is_allocated does.
    let n = s.length;
    while (offset + n < len) {
      const t = await topAllocated(blk, offset + n, Math.min(len - offset - n, MAX_REQUEST));
      if (t.allocated !== s.allocated) break;
      n += t.length;
    }
    io.out(
      `${cvtstr(n)} (0x${n.toString(16)}) bytes ${
        s.allocated ? "   " : "not"
      } allocated at offset ${cvtstr(offset)} (0x${offset.toString(16)})\n`,
    );
    offset += n;
  }
  return 0;
}

async function lengthCmd(io: QemuIo): Promise<number> {
  io.out(`${cvtstr(await io.blk!.length())}\n`);
  return 0;
}

interface Qcow2InfoLike {
  clusterSize: number;
  compat: string;
  compressionType: string;
  lazyRefcounts: boolean;
  refcountBits: number;
  corrupt: boolean;
  extendedL2: boolean;
  virtualSize: number;
}

async function infoCmd(io: QemuIo): Promise<number> {
  const blk = io.blk!;
  io.out(`format name: ${blk.format}\n`);
  const q = (blk as { info?: () => Qcow2InfoLike }).info;
  if (blk.format === "qcow2" && typeof q === "function") {
    const i = q.call(blk);
    const l2Bits = Math.log2(i.clusterSize / (i.extendedL2 ? 16 : 8));
    const clusterBits = Math.log2(i.clusterSize);
    const l1VmStateIndex = Math.ceil(i.virtualSize / 2 ** (clusterBits + l2Bits));
    io.out(`cluster size: ${cvtstr(i.clusterSize)}\n`);
    io.out(`vm state offset: ${cvtstr(l1VmStateIndex * 2 ** (clusterBits + l2Bits))}\n`);
    io.out("Format specific information:\n");
    io.out(`    compat: ${i.compat}\n`);
    if (i.compat !== "0.10") {
      io.out(`    compression type: ${i.compressionType}\n`);
      io.out(`    lazy refcounts: ${i.lazyRefcounts}\n`);
    }
    io.out(`    refcount bits: ${i.refcountBits}\n`);
    if (i.compat !== "0.10") {
      io.out(`    corrupt: ${i.corrupt}\n`);
      io.out(`    extended l2: ${i.extendedL2}\n`);
    }
    return 0;
  }
  // QEMU's raw asks its protocol; the nbd protocol has no such information, so info stops here.
  const proto = (blk as { file?: BlockDriver }).file;
  if (blk.format === "nbd" || proto?.format === "nbd") return 0;
  io.out("cluster size: 0 bytes\nvm state offset: 0 bytes\n");
  await Promise.resolve();
  return 0;
}

async function flushCmd(io: QemuIo): Promise<number> {
  try {
    await io.blk!.flush();
  } catch (e) {
    io.err(`qemu-io: flush failed: ${errText(e)}\n`);
    return errno(e);
  }
  return 0;
}

async function truncateCmd(io: QemuIo, argv: string[]): Promise<number> {
  const { opts, operands } = getopt(argv.slice(1), "m:");
  let prealloc: "off" | "metadata" | "falloc" | "full" = "off";
  for (const [k, v] of opts) {
    if (k !== "m") continue;
    if (v !== "off" && v !== "metadata" && v !== "falloc" && v !== "full") {
      io.err(`qemu-io: Invalid preallocation mode '${v}'\n`);
      return -22;
    }
    prealloc = v;
  }
  if (operands.length !== 1) throw new Usage();
  const offset = num(io, operands[0]);
  if (offset === null) return -22;
  try {
    await io.blk!.truncate(offset, { preallocation: prealloc, shrink: true });
  } catch (e) {
    io.err(`qemu-io: ${e instanceof Error ? e.message : e}\n`);
    return errno(e);
  }
  return 0;
}

async function openCmd(io: QemuIo, argv: string[]): Promise<number> {
  const { opts, operands } = getopt(argv.slice(1), "rsCnkUt:d:o:i:");
  const o: IoOpenOptions = {};
  for (const [k, v] of opts) {
    if (k === "r") o.readOnly = true;
    if (k === "s") o.snapshot = true;
    if (k === "U") o.forceShare = true;
    if (k === "o") {
      for (const kv of v.split(",")) {
        const [key, val] = kv.split("=");
        if (key === "driver") o.format = val;
        if (key === "read-only") o.readOnly = val === "on";
      }
    }
  }
  if (operands.length !== 1) throw new Usage();
  return (await io.open(operands[0], o)) ? 0 : -22;
}

async function closeCmd(io: QemuIo): Promise<number> {
  await io.close();
  return 0;
}

async function sleepCmd(io: QemuIo, argv: string[]): Promise<number> {
  if (!/^\d+$/.test(argv[1])) {
    io.out(`${argv[1]} is not a valid number\n`);
    return -22;
  }
  await new Promise((r) => setTimeout(r, Number(argv[1])));
  return 0;
}

function helpCmd(io: QemuIo, argv: string[]): Promise<number> {
  if (argv.length === 1) {
    for (const c of [...COMMANDS].sort((a, b) => a.name.localeCompare(b.name))) {
      io.out(helpLine(c));
    }
    io.out("\nUse 'help commandname' for extended help.\n");
    return Promise.resolve(0);
  }
  const c = findCommand(argv[1]);
  if (!c) {
    io.out(`command ${argv[1]} not found\n`);
    return Promise.resolve(0);
  }
  io.out(helpLine(c));
  if (c.help) io.out(c.help);
  return Promise.resolve(0);
}

function quitCmd(io: QemuIo): Promise<number> {
  io.quit = true;
  return Promise.resolve(0);
}

async function reopenCmd(io: QemuIo, argv: string[]): Promise<number> {
  const { opts, operands } = getopt(argv.slice(1), "c:o:rw");
  if (operands.length) throw new Usage();
  const ro = opts.some(([k]) => k === "r");
  const rw = opts.some(([k]) => k === "w");
  if (ro && rw) {
    io.err("qemu-io: Only one -r/-w option may be given\n");
    return -22;
  }
  const was = io.openedAs;
  if (!was || was.opts.snapshot) {
    io.err("qemu-io: Cannot reopen this image\n");
    return -22;
  }
  const readOnly = ro ? true : rw ? false : !!was.opts.readOnly;
  await io.close();
  if (!(await io.open(was.path, { ...was.opts, readOnly }))) {
    await io.open(was.path, was.opts);
    return -22;
  }
  return 0;
}

function sigraiseCmd(io: QemuIo, argv: string[]): Promise<number> {
  const n = Number(argv[1]);
  if (!/^\d+$/.test(argv[1]) || n > 64) {
    io.out(`non-numeric argument, or extraneous/unrecognized suffix -- ${argv[1]}\n`);
    return Promise.resolve(-22);
  }
  const names: Record<number, Deno.Signal> = {
    1: "SIGHUP",
    2: "SIGINT",
    3: "SIGQUIT",
    6: "SIGABRT",
    9: "SIGKILL",
    10: "SIGUSR1",
    12: "SIGUSR2",
    14: "SIGALRM",
    15: "SIGTERM",
  };
  if (names[n]) Deno.kill(Deno.pid, names[n]);
  return Promise.resolve(0);
}

function abortCmd(): Promise<number> {
  Deno.kill(Deno.pid, "SIGABRT");
  return Promise.resolve(0);
}

/** Breakpoints need QEMU's blkdebug driver, which demu does not have. */
function debugCmd(msg: string) {
  return (io: QemuIo, argv: string[]): Promise<number> => {
    if (msg) io.out(msg.replace("%s", argv[1] ?? "") + "\n");
    return Promise.resolve(-95);
  };
}

const COMMANDS: CmdInfo[] = [
  {
    name: "aio_flush",
    min: 0,
    max: 0,
    oneline: "completes all outstanding aio requests",
    run: aioFlushCmd,
  },
  {
    name: "aio_read",
    min: 2,
    max: -1,
    args: "[-Ciqv] [-P pattern] off len [len..]",
    oneline: "asynchronously reads a number of bytes",
    help: AIO_READ_HELP,
    run: aioReadCmd,
  },
  {
    name: "aio_write",
    min: 2,
    max: -1,
    write: true,
    args: "[-Cfiquz] [-P pattern] off len [len..]",
    oneline: "asynchronously writes a number of bytes",
    help: AIO_WRITE_HELP,
    run: aioWriteCmd,
  },
  {
    name: "alloc",
    alt: "a",
    min: 1,
    max: 2,
    args: "offset [count]",
    oneline: "checks if offset is allocated in the file",
    run: allocCmd,
  },
  {
    name: "close",
    alt: "c",
    min: 0,
    max: 0,
    oneline: "close the current open file",
    run: closeCmd,
  },
  {
    name: "discard",
    alt: "d",
    min: 2,
    max: -1,
    write: true,
    args: "[-Cq] off len",
    oneline: "discards a number of bytes at a specified offset",
    help: DISCARD_HELP,
    run: discardCmd,
  },
  {
    name: "flush",
    alt: "f",
    min: 0,
    max: 0,
    oneline: "flush all in-core file state to disk",
    run: flushCmd,
  },
  {
    name: "help",
    alt: "?",
    min: 0,
    max: 1,
    noFile: true,
    args: "[command]",
    oneline: "help for one or all commands",
    run: helpCmd,
  },
  {
    name: "info",
    alt: "i",
    min: 0,
    max: 0,
    oneline: "prints information about the current file",
    run: infoCmd,
  },
  {
    name: "length",
    alt: "l",
    min: 0,
    max: 0,
    oneline: "gets the length of the current file",
    run: lengthCmd,
  },
  {
    name: "map",
    alt: "m",
    min: 0,
    max: 0,
    args: "",
    oneline: "prints the allocated areas of a file",
    run: mapCmd,
  },
  {
    name: "open",
    alt: "o",
    min: 1,
    max: -1,
    noFile: true,
    args: "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
    oneline: "open the file specified by path",
    help: OPEN_HELP,
    run: openCmd,
  },
  {
    name: "quit",
    alt: "q",
    min: 0,
    max: 0,
    noFile: true,
    oneline: "exit the program",
    run: quitCmd,
  },
  {
    name: "read",
    alt: "r",
    min: 2,
    max: -1,
    args: "[-abCqv] [-P pattern [-s off] [-l len]] off len",
    oneline: "reads a number of bytes at a specified offset",
    help: READ_HELP,
    run: readCmd,
  },
  {
    name: "readv",
    min: 2,
    max: -1,
    args: "[-Cqv] [-P pattern] off len [len..]",
    oneline: "reads a number of bytes at a specified offset",
    help: READV_HELP,
    run: readvCmd,
  },
  {
    name: "sleep",
    min: 1,
    max: 1,
    noFile: true,
    oneline: "waits for the given value in milliseconds",
    run: sleepCmd,
  },
  {
    name: "truncate",
    alt: "t",
    min: 1,
    max: 3,
    write: true,
    args: "[-m prealloc_mode] off",
    oneline: "truncates the current file at the given offset",
    run: truncateCmd,
  },
  {
    name: "write",
    alt: "w",
    min: 2,
    max: -1,
    write: true,
    args: "[-bcCfnquz] [-P pattern | -s source_file] off len",
    oneline: "writes a number of bytes at a specified offset",
    help: WRITE_HELP,
    run: writeCmd,
  },
  {
    name: "writev",
    min: 2,
    max: -1,
    write: true,
    args: "[-Cfq] [-P pattern] off len [len..]",
    oneline: "writes a number of bytes at a specified offset",
    help: WRITEV_HELP,
    run: writevCmd,
  },
  {
    name: "abort",
    min: 0,
    max: 0,
    noFile: true,
    oneline: "simulate a program crash using abort(3)",
    run: abortCmd,
  },
  {
    name: "break",
    min: 2,
    max: 2,
    args: "event tag",
    oneline: "sets a breakpoint on event and tags the stopped request as tag",
    run: debugCmd("Could not set breakpoint: Operation not supported"),
  },
  {
    name: "remove_break",
    min: 1,
    max: 1,
    args: "tag",
    oneline: "remove a breakpoint by tag",
    run: debugCmd("Could not remove breakpoint %s: Operation not supported"),
  },
  {
    name: "resume",
    min: 1,
    max: 1,
    args: "tag",
    oneline: "resumes the request tagged as tag",
    run: debugCmd("Could not resume request: Operation not supported"),
  },
  {
    name: "wait_break",
    min: 1,
    max: 1,
    args: "tag",
    oneline: "waits for the suspension of a request",
    run: debugCmd(""),
  },
  {
    name: "reopen",
    min: 0,
    max: -1,
    args: "[(-r|-w)] [-c cache] [-o options]",
    oneline: "reopens an image with new options",
    help: REOPEN_HELP,
    run: reopenCmd,
  },
  {
    name: "sigraise",
    min: 1,
    max: 1,
    noFile: true,
    args: "signal",
    oneline: "raises a signal",
    help: SIGRAISE_HELP,
    run: sigraiseCmd,
  },
];

function helpLine(c: CmdInfo): string {
  return `${c.name} ${c.args !== undefined ? c.args + " " : ""}-- ${c.oneline}\n`;
}

function findCommand(name: string): CmdInfo | undefined {
  return COMMANDS.find((c) => c.name === name || c.alt === name);
}
