/**
 * The qcow2 checker against the real `qemu-img check`: images written by the real qemu-img and
 * qemu-io, then corrupted by poking bytes. demu's check must print the same lines and report
 * the same numbers; its `-r leaks` and `-r all` repairs must leave an image the real check
 * accepts as the real repair does.
 */
import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { FileProtocol } from "../file.ts";
import type { BlockDriver } from "../types.ts";
import { checkQcow2, rebuildRefcounts } from "./check.ts";
import { demuCheck, haveQemu, must, Poke, realCheck } from "../../tests/fixtures/qcow2/util.ts";

const HAVE_QEMU = haveQemu("block/qcow2/check_test.ts");

interface Case {
  name: string;
  /** qemu-img create -o options (after -f qcow2). */
  opts?: string;
  size?: string;
  /** qemu-io -c commands writing the image. */
  io?: string[];
  /** Extra qemu-img commands run after qemu-io (e.g. snapshot -c); "{}" stands for the image. */
  img?: string[][];
  /** qemu-img commands run before qemu-io (e.g. bitmap --add), "{}" standing for the image. */
  pre?: string[][];
  poke?: (p: Poke) => void;
  /** Skip the repair comparisons (the repair path is covered elsewhere). */
  noRepair?: boolean;
  /**
   * Why the images repaired by QEMU and by demu are not compared afterwards (QEMU stores
   * persistent bitmaps anew, in newly allocated clusters, when it closes a writable image).
   */
  noAfter?: string;
  /** The repair modes compared (default: leaks and all). */
  modes?: ("leaks" | "all")[];
}

const W = ["write -P 1 0 128k", "write -P 2 1M 64k"];

const CASES: Case[] = [
  { name: "clean image", io: W },
  { name: "empty image" },
  {
    name: "leaked cluster past the data",
    io: W,
    poke: (p) => p.setRefcount(p.grow(1), 1),
  },
  {
    name: "refcount too high on a data cluster",
    io: W,
    poke: (p) => p.setRefcount(p.dataOf(1) / p.l.clusterSize, 2),
  },
  {
    name: "refcount zero on a data cluster (rebuild)",
    io: W,
    poke: (p) => p.setRefcount(p.dataOf(0) / p.l.clusterSize, 0),
  },
  {
    name: "cluster referenced twice with refcount 1",
    io: W,
    poke: (p) => p.setU64(p.l2Entry(1), p.u64(p.l2Entry(0))),
  },
  {
    name: "L2 entry pointing outside the file",
    io: W,
    poke: (p) => p.setU64(p.l2Entry(1), (1n << 63n) | 0x40000000000n),
  },
  {
    name: "COPIED flag missing on a data cluster",
    io: W,
    poke: (p) => p.setU64(p.l2Entry(0), p.u64(p.l2Entry(0)) & ~(1n << 63n)),
  },
  {
    name: "COPIED flag missing on an L1 entry",
    io: W,
    poke: (p) => p.setU64(p.l1Entry(0), p.u64(p.l1Entry(0)) & ~(1n << 63n)),
  },
  {
    name: "reserved bits in L1 and L2 entries",
    io: W,
    poke: (p) => {
      p.setU64(p.l2Entry(1), p.u64(p.l2Entry(1)) | 0x0100000000000000n);
      p.setU64(p.l1Entry(0), p.u64(p.l1Entry(0)) | 0x100n);
    },
  },
  {
    name: "unaligned L2 table offset",
    io: W,
    poke: (p) => p.setU64(p.l1Entry(0), p.u64(p.l1Entry(0)) + 0x200n),
  },
  {
    name: "unaligned data cluster",
    io: W,
    poke: (p) => p.setU64(p.l2Entry(1), p.u64(p.l2Entry(1)) + 0x200n),
  },
  {
    name: "unaligned preallocated zero cluster",
    io: W,
    poke: (p) => p.setU64(p.l2Entry(1), (p.u64(p.l2Entry(1)) + 0x200n) | 1n),
  },
  {
    name: "refcount table entry with reserved bits",
    io: W,
    poke: (p) => p.setU64(p.l.reftableOffset, p.u64(p.l.reftableOffset) | 1n),
  },
  {
    name: "refcount block outside the image",
    io: W,
    poke: (p) => p.setU64(p.l.reftableOffset + 8, BigInt(p.b.length + 4 * p.l.clusterSize)),
  },
  {
    name: "unaligned refcount block",
    io: W,
    poke: (p) => p.setU64(p.l.reftableOffset, p.u64(p.l.reftableOffset) + 0x200n),
  },
  {
    name: "data cluster overlapping the refcount block",
    io: W,
    poke: (p) => p.setU64(p.l2Entry(1), (1n << 63n) | BigInt(p.refblock(0))),
  },
  {
    name: "L2 table overlapping the L1 table",
    io: W,
    poke: (p) => p.setU64(p.l1Entry(0), (1n << 63n) | BigInt(p.l.l1Offset)),
  },
  {
    name: "refcount_bits=1 with a leak",
    opts: "refcount_bits=1",
    io: W,
    poke: (p) => p.setRefcount(p.grow(2) + 1, 1),
  },
  {
    name: "refcount_bits=8, refcount too high",
    opts: "refcount_bits=8",
    io: W,
    poke: (p) => p.setRefcount(p.dataOf(0) / p.l.clusterSize, 200),
  },
  {
    name: "refcount_bits=64, huge refcount",
    opts: "refcount_bits=64",
    io: W,
    poke: (p) => {
      const c = p.dataOf(0) / p.l.clusterSize;
      const rb = p.refblock(0);
      p.setU64(rb + 8 * c, 0xfffffffffffffff0n);
    },
  },
  {
    name: "refcount_bits=2, refcount too high",
    opts: "refcount_bits=2",
    io: W,
    poke: (p) => p.setRefcount(p.dataOf(1) / p.l.clusterSize, 3),
  },
  {
    name: "refcount_bits=32, leak and a shared cluster",
    opts: "refcount_bits=32",
    io: W,
    poke: (p) => {
      p.setRefcount(p.grow(1), 7);
      p.setU64(p.l2Entry(3), p.u64(p.l2Entry(0)));
    },
  },
  {
    name: "bitmap table entry with reserved bits",
    io: W,
    pre: [["bitmap", "--add", "{}", "b0"]],
    noAfter: "bitmaps are re-stored by QEMU on close",
    poke: (p) => p.setU64(p.bitmapTable, p.u64(p.bitmapTable) | 2n),
  },
  {
    name: "bitmap table entry pointing outside the file",
    io: W,
    pre: [["bitmap", "--add", "{}", "b0"]],
    noAfter: "bitmaps are re-stored by QEMU on close",
    poke: (p) => p.setU64(p.bitmapTable + 8, 0x4000000000n),
  },
  {
    name: "bitmap directory entry of an unknown type",
    io: W,
    pre: [["bitmap", "--add", "{}", "b0"]],
    noAfter: "bitmaps are re-stored by QEMU on close",
    poke: (p) => p.b[p.bitmapDir + 16] = 7,
  },
  {
    name: "refcount_bits=2 and 4, leaks",
    opts: "refcount_bits=4",
    io: W,
    poke: (p) => p.setRefcount(p.dataOf(0) / p.l.clusterSize, 9),
  },
  { name: "compat 0.10 clean", opts: "compat=0.10", io: W },
  {
    name: "compat 0.10 with a leak and a missing COPIED flag",
    opts: "compat=0.10",
    io: W,
    poke: (p) => {
      p.setRefcount(p.grow(1), 1);
      p.setU64(p.l2Entry(1), p.u64(p.l2Entry(1)) & ~(1n << 63n));
    },
  },
  {
    name: "512-byte clusters",
    opts: "cluster_size=512",
    io: ["write -P 3 0 8k", "write -P 4 300k 3k"],
    poke: (p) => p.setRefcount(p.grow(3) + 2, 1),
  },
  {
    name: "2 MiB clusters",
    opts: "cluster_size=2M",
    size: "8M",
    io: ["write -P 3 0 8k", "write -P 4 4M 3k"],
    poke: (p) => p.setRefcount(p.dataOf(0) / p.l.clusterSize, 3),
  },
  {
    name: "snapshots",
    io: W,
    img: [["snapshot", "-c", "s1"]],
  },
  {
    name: "snapshots, then overwrite and a leak",
    io: W,
    img: [["snapshot", "-c", "s1"], ["snapshot", "-c", "s2"]],
    poke: (p) => p.setRefcount(p.grow(1), 1),
  },
  {
    name: "snapshot with its shared cluster refcount too low",
    io: W,
    img: [["snapshot", "-c", "s1"]],
    poke: (p) => p.setRefcount(p.dataOf(0) / p.l.clusterSize, 1),
  },
  {
    name: "compressed clusters",
    io: ["write -c -P 5 0 64k", "write -c -P 6 64k 64k", "write -P 7 192k 64k"],
  },
  {
    name: "compressed clusters with a wrong refcount and a COPIED flag",
    io: ["write -c -P 5 0 64k", "write -c -P 6 64k 64k"],
    poke: (p) => {
      const e = p.u64(p.l2Entry(0));
      p.setU64(p.l2Entry(0), e | (1n << 63n));
    },
  },
  {
    name: "zero clusters",
    io: ["write -P 1 0 64k", "write -z 64k 128k", "write -z -u 0 64k", "write -P 1 256k 64k"],
  },
  {
    name: "extended L2",
    opts: "extended_l2=on",
    io: ["write -P 1 0 4k", "write -z 40k 8k", "write -P 2 512k 64k", "discard 512k 32k"],
  },
  {
    name: "extended L2, corrupt subcluster bitmaps",
    opts: "extended_l2=on",
    io: ["write -P 1 0 4k", "write -P 2 64k 64k"],
    poke: (p) => {
      p.setU64(p.l2Entry(0) + 8, 0x0000000100000001n);
      p.setU64(p.l2Entry(3) + 8, 0x00000000000000ffn);
    },
  },
  {
    name: "lazy refcounts, dirty, refcounts not written",
    opts: "lazy_refcounts=on",
    io: W,
    poke: (p) => {
      p.setRefcount(p.dataOf(1) / p.l.clusterSize, 0);
      p.setU64(72, p.u64(72) | 1n);
    },
  },
  {
    name: "snapshot L1 table unaligned",
    io: W,
    img: [["snapshot", "-c", "s1"]],
    poke: (p) => p.setU64(p.snapshots, p.u64(p.snapshots) + 0x200n),
  },
  {
    name: "snapshot L1 table too large",
    io: W,
    img: [["snapshot", "-c", "s1"]],
    poke: (p) => p.setU32(p.snapshots + 8, 0x1000000),
  },
  {
    name: "snapshot L1 table past the end",
    io: W,
    img: [["snapshot", "-c", "s1"]],
    poke: (p) => p.setU64(p.snapshots, 0x100000000n),
  },
  {
    name: "snapshot table offset unaligned",
    io: W,
    img: [["snapshot", "-c", "s1"]],
    poke: (p) => p.setU64(64, p.u64(64) + 8n),
  },
  {
    name: "too many snapshots",
    io: W,
    modes: ["all"], // qemu-img takes seconds on 65536 snapshots; -r leaks adds nothing here
    img: [["snapshot", "-c", "s1"]],
    poke: (p) => p.setU32(60, 70000),
  },
  {
    name: "snapshot extra data too large",
    io: W,
    img: [["snapshot", "-c", "s1"]],
    poke: (p) => p.setU32(p.snapshots + 36, 5000),
  },
  {
    name: "refcount overflow with refcount_bits=1",
    opts: "refcount_bits=1",
    io: W,
    poke: (p) => p.setU64(p.l2Entry(2), p.u64(p.l2Entry(0))),
  },
  {
    name: "leak between data clusters",
    io: ["write -P 1 0 64k", "write -P 2 128k 64k", "discard 0 64k"],
    poke: (p) => p.setRefcount(p.grow(1), 1),
  },
  {
    name: "refcount block also used as data",
    io: W,
    poke: (p) => p.setU64(p.l2Entry(5), (1n << 63n) | BigInt(p.refblock(0))),
  },
  {
    name: "wiped refcount table entry with many clusters (rebuild grows the table)",
    opts: "cluster_size=512",
    size: "4M",
    io: ["write -P 1 0 1M", "write -P 2 3M 512k"],
    poke: (p) => p.setU64(p.l.reftableOffset, 0n),
  },
  {
    name: "compat 0.10, refcount zero (rebuild)",
    opts: "compat=0.10",
    io: W,
    poke: (p) => p.setRefcount(p.dataOf(1) / p.l.clusterSize, 0),
  },
  {
    name: "extended L2, compressed cluster with a subcluster bitmap",
    opts: "extended_l2=on",
    io: ["write -c -P 1 0 64k", "write -P 2 64k 64k"],
    poke: (p) => {
      p.setU64(p.l2Entry(0) + 8, 0x1n);
      p.setU64(p.l2Entry(5) + 8, 0x3n);
    },
  },
  {
    name: "dirty bit on a consistent image",
    opts: "lazy_refcounts=on",
    io: W,
    poke: (p) => p.setU64(72, p.u64(72) | 1n),
  },
  {
    name: "corrupt bit set on a consistent image",
    io: W,
    poke: (p) => p.setU64(72, p.u64(72) | 2n),
  },
];

async function makeImage(dir: string, c: Case): Promise<string> {
  const path = `${dir}/img.qcow2`;
  await must("qemu-img", [
    "create",
    "-q",
    "-f",
    "qcow2",
    ...(c.opts ? ["-o", c.opts] : []),
    path,
    c.size ?? "2M",
  ]);
  const withPath = (a: string[]) =>
    a.includes("{}") ? a.map((x) => x === "{}" ? path : x) : [
      ...a,
      path,
    ];
  for (const a of c.pre ?? []) await must("qemu-img", withPath(a));
  if (c.io?.length) await must("qemu-io", ["-f", "qcow2", ...c.io.flatMap((x) => ["-c", x]), path]);
  for (const a of c.img ?? []) await must("qemu-img", withPath(a));
  if (c.poke) {
    const p = await Poke.load(path);
    c.poke(p);
    await p.save(path);
  }
  return path;
}

for (const c of CASES) {
  Deno.test({
    name: `qcow2 check agrees with qemu-img check: ${c.name}`,
    ignore: !HAVE_QEMU,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "demu-check-" });
      try {
        const base = await makeImage(dir, c);
        const before = await Deno.readFile(base);
        const real = await realCheck(base);
        const mine = await demuCheck(base);
        deepStrictEqual(mine, real);
        deepStrictEqual(await Deno.readFile(base), before, "a read-only check wrote to the image");
        if (c.noRepair) return;
        for (const mode of c.modes ?? ["leaks", "all"] as const) {
          const a = `${dir}/real-${mode}.qcow2`;
          const b = `${dir}/demu-${mode}.qcow2`;
          await Deno.copyFile(base, a);
          await Deno.copyFile(base, b);
          const realFix = await realCheck(a, mode);
          const mineFix = await demuCheck(b, mode);
          deepStrictEqual(mineFix, realFix, `-r ${mode}`);
          // The real checker judges both repaired images alike.
          if (c.noAfter) continue;
          const afterReal = await realCheck(a);
          const afterMine = await realCheck(b);
          deepStrictEqual(afterMine, afterReal, `real check after -r ${mode}`);
        }
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "qcow2 check: open errors read like QEMU's",
  ignore: !HAVE_QEMU,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "demu-check-" });
    try {
      const path = `${dir}/img.qcow2`;
      const pokes: [string, (p: Poke) => void][] = [
        ["bad magic", (p) => p.setU32(0, 0x12345678)],
        ["version 4", (p) => p.setU32(4, 4)],
        ["cluster bits 30", (p) => p.setU32(20, 30)],
        ["refcount order 7", (p) => p.setU32(96, 7)],
        ["header length 50", (p) => p.setU32(100, 50)],
        ["unaligned L1", (p) => p.setU64(40, p.u64(40) + 8n)],
        ["L1 too large", (p) => p.setU32(36, 0x1000000)],
        ["L1 too small", (p) => p.setU32(36, 0)],
        ["reftable unaligned", (p) => p.setU64(48, p.u64(48) + 8n)],
        ["reftable too large", (p) => p.setU32(56, 0x10000)],
        ["huge size", (p) => p.setU64(24, 0x7fffffffffffffffn)],
        ["unknown incompatible feature", (p) => p.setU64(72, 1n << 40n)],
        ["backing file offset past the cluster", (p) => p.setU64(8, 0x20000n)],
      ];
      for (const [what, poke] of pokes) {
        await must("qemu-img", ["create", "-q", "-f", "qcow2", path, "1M"]);
        const p = await Poke.load(path);
        poke(p);
        await p.save(path);
        const real = await realCheck(path);
        const mine = await demuCheck(path);
        deepStrictEqual(mine.failure, real.failure, what);
        strictEqual(mine.exit, 1, what);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "qcow2 check: bitmaps are counted as QEMU counts them",
  ignore: !HAVE_QEMU,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "demu-check-" });
    try {
      const path = `${dir}/img.qcow2`;
      await must("qemu-img", ["create", "-q", "-f", "qcow2", path, "4M"]);
      await must("qemu-img", ["bitmap", "--add", path, "b0"]);
      await must("qemu-img", ["bitmap", "--add", "-g", "512", path, "b1"]);
      await must("qemu-io", ["-f", "qcow2", "-c", "write -P 1 0 1M", path]);
      deepStrictEqual(await demuCheck(path), await realCheck(path));
      // Leak one of the bitmap clusters' refcounts.
      const p = await Poke.load(path);
      p.setRefcount(p.grow(1), 1);
      await p.save(path);
      deepStrictEqual(await demuCheck(path), await realCheck(path));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "qcow2 rebuildRefcounts: rebuilds a wiped refcount structure",
  ignore: !HAVE_QEMU,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "demu-check-" });
    try {
      const path = `${dir}/img.qcow2`;
      await must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "refcount_bits=64", path, "4M"]);
      await must("qemu-io", [
        "-f",
        "qcow2",
        "-c",
        "write -P 9 0 1M",
        "-c",
        "write -c 2M 64k",
        path,
      ]);
      await must("qemu-img", ["snapshot", "-c", "s", path]);
      await must("qemu-io", ["-f", "qcow2", "-c", "write -P 8 0 64k", path]);
      const p = await Poke.load(path);
      p.b.fill(0, p.refblock(0), p.refblock(0) + p.l.clusterSize);
      await p.save(path);
      const f = FileProtocol.open(path);
      const r = await rebuildRefcounts(f);
      await f.close();
      ok(r.messages.includes("Rebuilding refcount structure"), r.messages.join("\n"));
      const after = await realCheck(path);
      strictEqual(after.exit, 0, after.messages.join("\n"));
      const data = await must("qemu-io", [
        "-f",
        "qcow2",
        "-c",
        "read -P 8 0 64k",
        "-c",
        "read -P 9 64k 960k",
        path,
      ]);
      ok(!data.stdout.includes("Pattern verification failed"), data.stdout);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("qcow2 check: repairing a read-only file is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "demu-check-" });
  try {
    const path = `${dir}/x`;
    await Deno.writeFile(path, new Uint8Array(1024));
    const f = FileProtocol.open(path, { readOnly: true });
    await rejects(checkQcow2(f, { repair: "leaks" }), /read-only/);
    await f.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A BlockDriver over image bytes that records writes and flushes, so that a crash at any point
 * of a repair can be replayed: everything before the last completed flush is on disk, and any
 * subset of the writes after it may be.
 */
class RecordingFile implements BlockDriver {
  readonly format = "file";
  readonly filename = "rec.qcow2";
  readonly readOnly = false;
  readonly backing = null;
  /** Writes in order; a flush is recorded as null. */
  log: ({ offset: number; data: Uint8Array } | null)[] = [];
  constructor(public bytes: Uint8Array) {}
  length() {
    return Promise.resolve(this.bytes.length);
  }
  read(offset: number, buf: Uint8Array) {
    buf.fill(0);
    if (offset < this.bytes.length) buf.set(this.bytes.subarray(offset, offset + buf.length));
    return Promise.resolve();
  }
  write(offset: number, data: Uint8Array) {
    this.log.push({ offset, data: data.slice() });
    this.bytes = apply(this.bytes, offset, data);
    return Promise.resolve();
  }
  writeZeroes(offset: number, length: number) {
    return this.write(offset, new Uint8Array(length));
  }
  discard(offset: number, length: number) {
    const end = Math.min(this.bytes.length, offset + length);
    return end > offset ? this.write(offset, new Uint8Array(end - offset)) : Promise.resolve();
  }
  flush() {
    this.log.push(null);
    return Promise.resolve();
  }
  blockStatus(offset: number, length: number) {
    return Promise.resolve({ length, allocated: true, zero: false, data: true, offset });
  }
  truncate(length: number) {
    const b = new Uint8Array(length);
    b.set(this.bytes.subarray(0, length));
    this.bytes = b;
    return Promise.resolve();
  }
  close() {
    return Promise.resolve();
  }
}

function apply(bytes: Uint8Array, offset: number, data: Uint8Array): Uint8Array {
  let b = bytes;
  if (offset + data.length > b.length) {
    b = new Uint8Array(offset + data.length);
    b.set(bytes);
  }
  b.set(data, offset);
  return b;
}

Deno.test({
  name: "qcow2 check: a repair interrupted at any write leaves no new corruption",
  ignore: !HAVE_QEMU,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "demu-check-crash-" });
    try {
      const scenarios: [string, Case, "leaks" | "all"][] = [
        ["leaks", CASES.find((c) => c.name === "leaked cluster past the data")!, "leaks"],
        [
          "rebuild",
          CASES.find((c) => c.name === "refcount zero on a data cluster (rebuild)")!,
          "all",
        ],
        [
          "dirty",
          CASES.find((c) => c.name === "lazy refcounts, dirty, refcounts not written")!,
          "all",
        ],
        ["COPIED", CASES.find((c) => c.name === "COPIED flag missing on a data cluster")!, "all"],
      ];
      let states = 0;
      for (const [what, c, mode] of scenarios) {
        const base = await makeImage(dir, c);
        const original = await Deno.readFile(base);
        const before = await realCheck(base);
        const rec = new RecordingFile(original.slice());
        await checkQcow2(rec, { repair: mode });
        const flushes = rec.log.flatMap((e, i) => (e === null ? [i] : []));
        let seed = 1;
        for (let n = 0; n <= rec.log.length; n++) {
          // Crash after n log entries: the last flush before n is durable, later writes are
          // either all there, none there, or a random half.
          const durable = flushes.filter((f) => f < n).at(-1) ?? -1;
          for (const pick of ["all", "none", "some"] as const) {
            let img: Uint8Array = original.slice();
            rec.log.slice(0, n).forEach((e, i) => {
              if (!e) return;
              const keep = i <= durable || pick === "all" ||
                (pick === "some" && ((seed = (seed * 1103515245 + 12345) >>> 0) & 0x100));
              if (keep) img = apply(img, e.offset, e.data);
            });
            const path = `${dir}/crash.qcow2`;
            await Deno.writeFile(path, img);
            const after = await realCheck(path);
            states++;
            const corrupt = after.fields.corruptions ?? 0;
            ok(
              !after.failure && corrupt <= (before.fields.corruptions ?? 0),
              `${what}: crash after entry ${n} (${pick}) of ${rec.log.length}:\n` +
                after.messages.join("\n"),
            );
          }
        }
      }
      console.log(`interrupted repairs: ${states} crash states checked`);
      ok(states > 20, `only ${states} crash states`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "qcow2 check -r keeps the snapshots of an image with bitmaps (QEMU 7.2 drops them)",
  ignore: !HAVE_QEMU,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "demu-check-" });
    try {
      const path = `${dir}/img.qcow2`;
      await must("qemu-img", ["create", "-q", "-f", "qcow2", path, "1M"]);
      await must("qemu-io", ["-f", "qcow2", "-c", "write -P 3 0 64k", path]);
      await must("qemu-img", ["snapshot", "-c", "s1", path]);
      await must("qemu-img", ["bitmap", "--add", path, "b0"]);
      const p = await Poke.load(path);
      p.setRefcount(p.grow(1), 1);
      await p.save(path);
      const mine = await demuCheck(path, "leaks");
      deepStrictEqual(mine.messages, [
        `Leaked cluster ${p.b.length / p.l.clusterSize - 1} refcount=1 reference=0`,
        `Repairing cluster ${p.b.length / p.l.clusterSize - 1} refcount=1 reference=0`,
      ]);
      strictEqual(mine.exit, 0);
      const list = await must("qemu-img", ["snapshot", "-l", path]);
      ok(list.stdout.includes("s1"), list.stdout);
      strictEqual((await realCheck(path)).exit, 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
