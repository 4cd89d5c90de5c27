/**
 * qcow2 interop with the real QEMU 7.2 tools, both ways:
 *
 * - images created and written by demu (random writes, zero writes, unmaps, discards,
 *   compressed clusters, snapshots, backing chains) pass the real `qemu-img check` with no
 *   errors and no leaks and compare identical (`qemu-img compare`) with a raw model;
 * - images created and written by the real `qemu-img`/`qemu-io` read back byte-identical
 *   through demu, and demu's block status agrees with `qemu-img map`;
 * - `createQcow2` produces byte-for-byte the file the real `qemu-img create` does.
 *
 * Matrix: every cluster size from 512 B to 2 MiB, refcount_bits 1/16/64, compat 0.10 and 1.1,
 * extended_l2, deflate and zstd, lazy refcounts, snapshots, backing chains three deep.
 */
import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import {
  createQcow2,
  FileProtocol,
  openImage,
  type Qcow2CreateOptions,
  Qcow2Format,
} from "../block/mod.ts";
import { haveQemu, must, realCheck, run } from "./fixtures/qcow2/util.ts";

const HAVE_QEMU = haveQemu("tests/qcow2_interop_test.ts");
const SIZE = 4 << 20;

/** A small deterministic PRNG (xorshift32). */
function rng(seed: number): (n: number) => number {
  let x = (seed * 2654435761) >>> 0 || 1;
  return (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % n;
  };
}

interface Config {
  name: string;
  /** qemu-img create -o text. */
  o: string;
  demu: Partial<Qcow2CreateOptions>;
}

const CLUSTER_SIZES = [
  512,
  1024,
  2048,
  4096,
  8192,
  16384,
  32768,
  65536,
  131072,
  262144,
  524288,
  1 << 20,
  2 << 20,
];

const CONFIGS: Config[] = [
  ...CLUSTER_SIZES.map((cs) => ({
    name: `cluster_size=${cs}`,
    o: `cluster_size=${cs}`,
    demu: { clusterSize: cs },
  })),
  {
    name: "refcount_bits=1",
    o: "refcount_bits=1,cluster_size=4096",
    demu: { refcountBits: 1, clusterSize: 4096 },
  },
  { name: "refcount_bits=64", o: "refcount_bits=64", demu: { refcountBits: 64 } },
  { name: "compat=0.10", o: "compat=0.10", demu: { compat: "0.10" } },
  {
    name: "compat=0.10,512",
    o: "compat=0.10,cluster_size=512",
    demu: { compat: "0.10", clusterSize: 512 },
  },
  { name: "extended_l2", o: "extended_l2=on", demu: { extendedL2: true } },
  {
    name: "extended_l2,16k",
    o: "extended_l2=on,cluster_size=16384",
    demu: { extendedL2: true, clusterSize: 16384 },
  },
  { name: "zstd", o: "compression_type=zstd", demu: { compressionType: "zstd" } },
  {
    name: "zstd,extended_l2,4k-ish",
    o: "compression_type=zstd,extended_l2=on,cluster_size=32768",
    demu: { compressionType: "zstd", extendedL2: true, clusterSize: 32768 },
  },
  { name: "lazy_refcounts", o: "lazy_refcounts=on", demu: { lazyRefcounts: true } },
];

function clusterOf(c: Config): number {
  return c.demu.clusterSize ?? 65536;
}

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "demu-qcow2-interop-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function openRw(path: string): Promise<Qcow2Format> {
  return await Qcow2Format.open(FileProtocol.open(path), {});
}

async function readAll(path: string): Promise<Uint8Array> {
  const img = await openImage(path, { format: "qcow2", readOnly: true });
  try {
    const b = new Uint8Array(await img.length());
    await img.read(0, b);
    return b;
  } finally {
    await img.close();
  }
}

/** The guest content as the real qemu-img sees it. */
async function qemuContent(dir: string, path: string): Promise<Uint8Array> {
  const out = `${dir}/content.raw`;
  await must("qemu-img", ["convert", "-O", "raw", path, out]);
  const b = await Deno.readFile(out);
  await Deno.remove(out);
  return b;
}

function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

async function assertCleanAndEqual(dir: string, path: string, model: Uint8Array, what: string) {
  const chk = await realCheck(path);
  strictEqual(chk.failure, undefined, `${what}: check failed: ${chk.failure}`);
  strictEqual(chk.fields["corruptions"] ?? 0, 0, `${what}: corruptions ${chk.messages.join("; ")}`);
  strictEqual(chk.fields["leaks"] ?? 0, 0, `${what}: leaks ${chk.messages.join("; ")}`);
  strictEqual(chk.exit, 0, `${what}: qemu-img check exit ${chk.exit}`);
  const raw = `${dir}/model.raw`;
  await Deno.writeFile(raw, model);
  const cmp = await run("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", path, raw]);
  strictEqual(cmp.code, 0, `${what}: qemu-img compare: ${cmp.stdout}${cmp.stderr}`);
}

/** Random writes, zero writes (with and without unmap), discards and compressed clusters. */
async function randomOps(img: Qcow2Format, model: Uint8Array, seed: number, n: number) {
  const r = rng(seed);
  const cs = img.clusterSize;
  const size = model.length;
  for (let i = 0; i < n; i++) {
    const len = 1 + r(Math.min(size, cs * 3));
    const off = r(size - len + 1);
    const op = r(20);
    if (op < 11) {
      const d = new Uint8Array(len);
      const v = 1 + r(255);
      for (let j = 0; j < len; j += 1 + r(64)) d[j] = v;
      d[0] = v;
      await img.write(off, d);
      model.set(d, off);
    } else if (op < 15) {
      await img.writeZeroes(off, len, { mayUnmap: op >= 13 });
      model.fill(0, off, off + len);
    } else if (op < 17) {
      // Discard: whole clusters only; they read as zeros afterwards (no backing file here).
      await img.discard(off, len);
      const a = Math.ceil(off / cs) * cs;
      const e = off + len === size ? size : Math.floor((off + len) / cs) * cs;
      if (e > a) model.fill(0, a, e);
    } else if (op < 19) {
      const a = Math.floor(off / cs) * cs;
      const end = Math.min(size, a + cs);
      const c = new Uint8Array(cs);
      c.set(model.subarray(a, end));
      await img.writeCompressed(a, c.subarray(0, end - a));
    } else {
      await img.flush();
    }
  }
}

Deno.test({
  name: "qcow2 interop: create is byte-identical to qemu-img create",
  ignore: !HAVE_QEMU,
  async fn() {
    await withTemp(async (dir) => {
      const cases: [number, string, Partial<Qcow2CreateOptions>][] = [
        [10 * 2 ** 30, "", {}],
        [10 * 2 ** 20, "compat=0.10", { compat: "0.10" }],
        [64 * 2 ** 20, "cluster_size=512", { clusterSize: 512 }],
        // The L1 table outgrows the first refcount block: the refcount table grows as QEMU's.
        [64 * 2 ** 30, "cluster_size=512", { clusterSize: 512 }],
        [10 * 2 ** 30, "cluster_size=512,refcount_bits=64", { clusterSize: 512, refcountBits: 64 }],
        [100 * 2 ** 30, "cluster_size=512,refcount_bits=1", { clusterSize: 512, refcountBits: 1 }],
        // Preallocation: metadata interleaves L2 tables and data; falloc/full put a new
        // refcount area first, then the data run.
        [20 << 20, "preallocation=metadata,cluster_size=4096", {
          preallocation: "metadata",
          clusterSize: 4096,
        }],
        [20 << 20, "preallocation=metadata", { preallocation: "metadata" }],
        [20 << 20, "preallocation=falloc,cluster_size=512", {
          preallocation: "falloc",
          clusterSize: 512,
        }],
        [20 << 20, "preallocation=falloc", { preallocation: "falloc" }],
        [20 << 20, "preallocation=full,cluster_size=4096", {
          preallocation: "full",
          clusterSize: 4096,
        }],
        [20 << 20, "preallocation=full,cluster_size=2M", {
          preallocation: "full",
          clusterSize: 2 << 20,
        }],
        [100 * 2 ** 30, "cluster_size=2M", { clusterSize: 2 << 20 }],
        [5 * 2 ** 30, "refcount_bits=1", { refcountBits: 1 }],
        [5 * 2 ** 30, "refcount_bits=64,lazy_refcounts=on", {
          refcountBits: 64,
          lazyRefcounts: true,
        }],
        [5 * 2 ** 30, "extended_l2=on,compression_type=zstd", {
          extendedL2: true,
          compressionType: "zstd",
        }],
        [0, "", {}],
        [17 * 2 ** 20, "cluster_size=4k,refcount_bits=8", { clusterSize: 4096, refcountBits: 8 }],
        [123456789, "cluster_size=8k", { clusterSize: 8192 }],
      ];
      for (const [size, o, demu] of cases) {
        await createQcow2(`${dir}/d.qcow2`, { size, ...demu });
        await must("qemu-img", [
          "create",
          "-q",
          "-f",
          "qcow2",
          ...(o ? ["-o", o] : []),
          `${dir}/r.qcow2`,
          String(size),
        ]);
        const a = await Deno.readFile(`${dir}/d.qcow2`);
        const b = await Deno.readFile(`${dir}/r.qcow2`);
        strictEqual(firstDiff(a, b), -1, `create ${size} ${o}: files differ`);
      }
      // With a backing file and format.
      await createQcow2(`${dir}/base.qcow2`, { size: 1 << 20 });
      await createQcow2(
        `${dir}/d.qcow2`,
        {
          size: undefined,
          backingFile: "base.qcow2",
          backingFormat: "qcow2",
          clusterSize: 4096,
        },
      );
      await must("qemu-img", [
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4k",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        `${dir}/r.qcow2`,
      ]);
      strictEqual(
        firstDiff(await Deno.readFile(`${dir}/d.qcow2`), await Deno.readFile(`${dir}/r.qcow2`)),
        -1,
        "backing create differs",
      );
    });
  },
});

Deno.test({
  name: "qcow2 interop: create refuses what QEMU refuses, with its words",
  async fn() {
    await withTemp(async (dir) => {
      const p = `${dir}/x.qcow2`;
      const bad: [Partial<Qcow2CreateOptions>, RegExp][] = [
        [{ clusterSize: 1000 }, /Cluster size must be a power of two between 512 and 2048k/],
        [{ clusterSize: 4 << 20 }, /Cluster size must be a power of two between 512 and 2048k/],
        [{ extendedL2: true, clusterSize: 4096 }, /at least 16384 bytes/],
        [{ refcountBits: 3 }, /Refcount width must be a power of two and may not exceed 64 bits/],
        [
          { compat: "0.10", lazyRefcounts: true },
          /Lazy refcounts only supported with compatibility level 1.1/,
        ],
        [{ compat: "0.10", refcountBits: 8 }, /Different refcount widths than 16 bits require/],
        [{ compat: "0.10", compressionType: "zstd" }, /Non-zlib compression type/],
        [{ encrypt: true }, /encrypt/],
        [{ dataFile: "x.raw" }, /data file/],
        [{ backingFile: `${dir}/nonexistent`, backingFormat: "qcow2" }, /Could not open/],
      ];
      for (const [o, re] of bad) {
        await rejects(createQcow2(p, { size: 1 << 20, ...o }), re, JSON.stringify(o));
      }
    });
  },
});

Deno.test({
  name: "qcow2 interop: demu-written images pass qemu-img check and compare (matrix)",
  ignore: !HAVE_QEMU,
  async fn() {
    await withTemp(async (dir) => {
      for (const [k, c] of CONFIGS.entries()) {
        const path = `${dir}/w.qcow2`;
        await createQcow2(path, { size: SIZE, ...c.demu });
        const model = new Uint8Array(SIZE);
        const img = await openRw(path);
        await randomOps(img, model, 100 + k, clusterOf(c) >= (1 << 20) ? 25 : 60);
        const back = new Uint8Array(SIZE);
        await img.read(0, back);
        strictEqual(firstDiff(back, model), -1, `${c.name}: demu reads back what it wrote`);
        await img.close();
        await assertCleanAndEqual(dir, path, model, c.name);
      }
    });
  },
});

Deno.test({
  name: "qcow2 interop: images written by qemu-io read back identical through demu (matrix)",
  ignore: !HAVE_QEMU,
  async fn() {
    await withTemp(async (dir) => {
      for (const [k, c] of CONFIGS.entries()) {
        const path = `${dir}/q.qcow2`;
        await must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", c.o, path, String(SIZE)]);
        const cs = clusterOf(c);
        const r = rng(500 + k);
        const cmds: string[] = [];
        // QEMU compresses only into clusters nothing has touched yet.
        const touched = new Set<number>();
        const touch = (off: number, len: number) => {
          for (let x = Math.floor(off / cs); x <= Math.floor((off + len - 1) / cs); x++) {
            touched.add(x);
          }
        };
        for (let i = 0; i < 40; i++) {
          const len = 1 + r(Math.min(SIZE, cs * 3));
          const off = r(SIZE - len + 1);
          const op = r(12);
          if (op >= 10) {
            const a = Math.floor(off / cs);
            if ((a + 1) * cs <= SIZE && !touched.has(a)) {
              cmds.push(`write -c -P ${1 + r(255)} ${a * cs} ${cs}`);
              touch(a * cs, cs);
            }
            continue;
          }
          touch(off, len);
          if (op < 6) cmds.push(`write -P ${1 + r(255)} ${off} ${len}`);
          else if (op < 8) cmds.push(`write -z ${off} ${len}`);
          else if (op < 9) cmds.push(`write -z -u ${off} ${len}`);
          else cmds.push(`discard ${off} ${len}`);
        }
        await must("qemu-io", ["-f", "qcow2", ...cmds.flatMap((x) => ["-c", x]), path]);
        const want = await qemuContent(dir, path);
        const got = await readAll(path);
        strictEqual(firstDiff(got, want), -1, `${c.name}: demu read differs from qemu-img convert`);
        await compareMap(path, c.name);
      }
    });
  },
});

/** demu's block status against qemu-img map --output=json: allocation, data, host offsets. */
async function compareMap(path: string, what: string): Promise<void> {
  const m = await must("qemu-img", ["map", "--output=json", "-f", "qcow2", path]);
  const extents = JSON.parse(m.stdout) as {
    start: number;
    length: number;
    depth: number;
    present: boolean;
    data: boolean;
    offset?: number;
  }[];
  const img = await openImage(path, { format: "qcow2", readOnly: true });
  try {
    for (const e of extents) {
      let pos = e.start;
      while (pos < e.start + e.length) {
        const st = await img.blockStatus(pos, e.start + e.length - pos);
        const where = `${what}: extent at ${pos}`;
        strictEqual(st.allocated, e.depth === 0 && e.present, `${where}: allocated`);
        if (e.depth === 0) {
          strictEqual(st.data, e.data, `${where}: data`);
          if (e.offset !== undefined && e.data) {
            strictEqual(st.offset, e.offset + (pos - e.start), `${where}: offset`);
          }
        }
        pos += st.length;
      }
    }
  } finally {
    await img.close();
  }
}

Deno.test({
  name: "qcow2 interop: snapshots both ways",
  ignore: !HAVE_QEMU,
  async fn() {
    await withTemp(async (dir) => {
      for (
        const c of [
          CONFIGS[7],
          CONFIGS[0],
          CONFIGS.find((x) => x.name === "compat=0.10")!,
          CONFIGS.find((x) => x.name === "extended_l2")!,
        ]
      ) {
        // demu takes snapshots; the real qemu-img lists and applies them.
        const path = `${dir}/s.qcow2`;
        await createQcow2(path, { size: SIZE, ...c.demu });
        const model = new Uint8Array(SIZE);
        const states: Uint8Array[] = [];
        let img = await openRw(path);
        for (let s = 0; s < 3; s++) {
          await randomOps(img, model, 900 + s, 30);
          await img.createSnapshot(`snap${s}`);
          states.push(model.slice());
        }
        await img.deleteSnapshot("snap1");
        await randomOps(img, model, 999, 20);
        await img.close();
        await assertCleanAndEqual(dir, path, model, `${c.name} after snapshots`);
        const list = await must("qemu-img", ["snapshot", "-l", path]);
        ok(
          /snap0/.test(list.stdout) && /snap2/.test(list.stdout) && !/snap1/.test(list.stdout),
          list.stdout,
        );
        for (const s of [0, 2]) {
          const copy = `${dir}/copy.qcow2`;
          await Deno.copyFile(path, copy);
          await must("qemu-img", ["snapshot", "-a", `snap${s}`, copy]);
          await assertCleanAndEqual(dir, copy, states[s], `${c.name} qemu applies snap${s}`);
        }
        // demu applies a snapshot.
        img = await openRw(path);
        await img.applySnapshot("snap0");
        const b = new Uint8Array(SIZE);
        await img.read(0, b);
        strictEqual(firstDiff(b, states[0]), -1, `${c.name}: demu applies snap0`);
        await img.close();
        await assertCleanAndEqual(dir, path, states[0], `${c.name} demu applied snap0`);

        // The real qemu-img takes snapshots; demu lists, reads and applies them.
        const q = `${dir}/q.qcow2`;
        await must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", c.o, q, String(SIZE)]);
        await must("qemu-io", ["-c", "write -P 7 0 300k", "-c", "write -P 8 1M 200k", q]);
        await must("qemu-img", ["snapshot", "-c", "first", q]);
        const first = await qemuContent(dir, q);
        await must("qemu-io", ["-c", "write -P 9 100k 300k", "-c", "write -z 1M 64k", q]);
        await must("qemu-img", ["snapshot", "-c", "second", q]);
        await must("qemu-io", ["-c", "discard 0 2M", q]);
        const qi = await openRw(q);
        deepStrictEqual(qi.listSnapshots().map((s) => [s.id, s.name, s.diskSize]), [[
          "1",
          "first",
          SIZE,
        ], ["2", "second", SIZE]]);
        await qi.applySnapshot("first");
        const got = new Uint8Array(SIZE);
        await qi.read(0, got);
        strictEqual(firstDiff(got, first), -1, `${c.name}: demu applies qemu's snapshot`);
        await qi.deleteSnapshot("2");
        await rejects(qi.deleteSnapshot("nope"), /snapshot not found/);
        await rejects(qi.applySnapshot("nope"), /No such file or directory/);
        await qi.close();
        await assertCleanAndEqual(
          dir,
          q,
          first,
          `${c.name}: after demu apply/delete on qemu's image`,
        );
      }
    });
  },
});

/** The file with the snapshot table's date fields zeroed (they are the only expected difference). */
async function withoutDates(path: string): Promise<Uint8Array> {
  const b = await Deno.readFile(path);
  const dv = new DataView(b.buffer);
  const n = dv.getUint32(60);
  let pos = Number(dv.getBigUint64(64));
  for (let i = 0; i < n; i++) {
    pos = (pos + 7) & ~7;
    b.fill(0, pos + 16, pos + 24);
    pos += 40 + dv.getUint32(pos + 36) + dv.getUint16(pos + 12) + dv.getUint16(pos + 14);
  }
  return b;
}

Deno.test({
  name: "qcow2 interop: snapshot create/delete/apply leave the same file as qemu-img's",
  ignore: !HAVE_QEMU,
  async fn() {
    await withTemp(async (dir) => {
      for (const o of ["cluster_size=65536", "cluster_size=4096,refcount_bits=8", "compat=0.10"]) {
        const q = `${dir}/q.qcow2`;
        const d = `${dir}/d.qcow2`;
        await must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", o, q, "8M"]);
        await must("qemu-io", ["-c", "write -P 1 0 3M", "-c", "write -P 2 5M 1M", q]);
        await Deno.copyFile(q, d);
        const steps: [string, string][] = [
          ["c", "a"],
          ["w", "write -P 3 1M 1M"],
          ["c", "b"],
          ["d", "a"],
          ["a", "b"],
          ["w", "write -P 4 0 512k"],
          ["c", "c"],
          ["d", "b"],
        ];
        for (const [op, arg] of steps) {
          if (op === "w") {
            await must("qemu-io", ["-c", arg, q]);
            await must("qemu-io", ["-c", arg, d]);
            continue;
          }
          await must("qemu-img", ["snapshot", `-${op}`, arg, q]);
          const img = await openRw(d);
          if (op === "c") await img.createSnapshot(arg);
          else if (op === "d") await img.deleteSnapshot(arg);
          else await img.applySnapshot(arg);
          await img.close();
          const a = await withoutDates(q);
          const b = await withoutDates(d);
          strictEqual(firstDiff(b, a), -1, `${o}: after snapshot -${op} ${arg}`);
        }
      }
    });
  },
});

Deno.test({
  name: "qcow2 interop: one image handed back and forth between demu and qemu-io",
  ignore: !HAVE_QEMU,
  async fn() {
    await withTemp(async (dir) => {
      for (
        const c of [
          "cluster_size=65536",
          "cluster_size=4096,refcount_bits=8",
          "extended_l2=on",
          "compat=0.10",
          "compression_type=zstd,lazy_refcounts=on",
        ]
      ) {
        const p = `${dir}/h.qcow2`;
        await must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", c, p, String(SIZE)]);
        const model = new Uint8Array(SIZE);
        const r = rng(c.length);
        for (let round = 0; round < 3; round++) {
          const img = await openRw(p);
          await randomOps(img, model, round * 7 + c.length, 30);
          await img.close();
          const cmds: string[] = [];
          for (let k = 0; k < 20; k++) {
            const len = 1 + r(200000);
            const off = r(SIZE - len);
            const op = r(4);
            if (op < 2) {
              const v = 1 + r(250);
              cmds.push(`write -P ${v} ${off} ${len}`);
              model.fill(v, off, off + len);
            } else {
              cmds.push(`write -z ${op === 3 ? "-u " : ""}${off} ${len}`);
              model.fill(0, off, off + len);
            }
          }
          await must("qemu-io", ["-f", "qcow2", ...cmds.flatMap((x) => ["-c", x]), p]);
          await assertCleanAndEqual(dir, p, model, `${c} round ${round}`);
          strictEqual(firstDiff(await readAll(p), model), -1, `${c} round ${round}: demu reads`);
        }
      }
    });
  },
});

Deno.test({
  name: "qcow2 interop: backing chains three deep, both ways",
  ignore: !HAVE_QEMU,
  async fn() {
    await withTemp(async (dir) => {
      for (
        const c of [
          CONFIGS[7],
          CONFIGS.find((x) => x.name === "extended_l2")!,
          CONFIGS.find((x) => x.name === "compat=0.10")!,
          CONFIGS[3],
        ]
      ) {
        // The real tools build base <- mid <- top.
        await must("qemu-img", [
          "create",
          "-q",
          "-f",
          "qcow2",
          "-o",
          c.o,
          `${dir}/base.qcow2`,
          String(SIZE),
        ]);
        await must("qemu-io", [
          "-c",
          "write -P 1 0 4M",
          "-c",
          "write -P 2 100000 50000",
          `${dir}/base.qcow2`,
        ]);
        await must("qemu-img", [
          "create",
          "-q",
          "-f",
          "qcow2",
          "-o",
          c.o,
          "-b",
          "base.qcow2",
          "-F",
          "qcow2",
          `${dir}/mid.qcow2`,
        ]);
        await must("qemu-io", [
          "-c",
          "write -P 3 70000 200000",
          "-c",
          "write -z 1M 100k",
          `${dir}/mid.qcow2`,
        ]);
        await must("qemu-img", [
          "create",
          "-q",
          "-f",
          "qcow2",
          "-o",
          c.o,
          "-b",
          "mid.qcow2",
          "-F",
          "qcow2",
          `${dir}/top.qcow2`,
        ]);
        await must("qemu-io", [
          "-c",
          "write -P 4 3000 5000",
          "-c",
          "discard 2M 1M",
          `${dir}/top.qcow2`,
        ]);
        const want = await qemuContent(dir, `${dir}/top.qcow2`);
        strictEqual(
          firstDiff(await readAll(`${dir}/top.qcow2`), want),
          -1,
          `${c.name}: chain read`,
        );
        await compareMap(`${dir}/top.qcow2`, `${c.name} top`);
        // demu writes into the top: partial clusters copy from below.
        const img = await openImage(`${dir}/top.qcow2`, { format: "qcow2" }) as Qcow2Format;
        ok(img.backing?.backing, "three levels open");
        const model = want.slice();
        const r = rng(77);
        for (let i = 0; i < 30; i++) {
          const len = 1 + r(150000);
          const off = r(SIZE - len);
          if (r(4) === 0) {
            await img.writeZeroes(off, len);
            model.fill(0, off, off + len);
          } else {
            const d = new Uint8Array(len).fill(10 + i);
            await img.write(off, d);
            model.set(d, off);
          }
        }
        await img.close();
        strictEqual(
          firstDiff(await qemuContent(dir, `${dir}/top.qcow2`), model),
          -1,
          `${c.name}: qemu reads demu's COW`,
        );
        const chk = await realCheck(`${dir}/top.qcow2`);
        strictEqual(chk.exit, 0, `${c.name}: top check ${chk.messages.join("; ")}`);

        // demu builds a chain; the real qemu-img reads it.
        await createQcow2(`${dir}/b1.qcow2`, { size: SIZE, ...c.demu });
        let w = await openRw(`${dir}/b1.qcow2`);
        const m = new Uint8Array(SIZE);
        await randomOps(w, m, 31, 30);
        await w.close();
        await createQcow2(`${dir}/b2.qcow2`, {
          size: SIZE,
          ...c.demu,
          backingFile: "b1.qcow2",
          backingFormat: "qcow2",
        });
        await createQcow2(`${dir}/b3.qcow2`, {
          size: SIZE,
          ...c.demu,
          backingFile: "b2.qcow2",
          backingFormat: "qcow2",
        });
        w = await openImage(`${dir}/b3.qcow2`, { format: "qcow2" }) as Qcow2Format;
        for (let i = 0; i < 20; i++) {
          const len = 1 + r(100000);
          const off = r(SIZE - len);
          const d = new Uint8Array(len).fill(100 + i);
          await w.write(off, d);
          m.set(d, off);
        }
        await w.close();
        strictEqual(
          firstDiff(await qemuContent(dir, `${dir}/b3.qcow2`), m),
          -1,
          `${c.name}: qemu reads demu's chain`,
        );
        strictEqual((await realCheck(`${dir}/b3.qcow2`)).exit, 0, `${c.name}: b3 check`);
      }
    });
  },
});

Deno.test({
  name: "qcow2 interop: resize, preallocation, lazy refcounts, amend",
  ignore: !HAVE_QEMU,
  async fn() {
    await withTemp(async (dir) => {
      const p = `${dir}/r.qcow2`;
      // Grow and shrink.
      await createQcow2(p, { size: SIZE, clusterSize: 4096 });
      let img = await openRw(p);
      const model = new Uint8Array(SIZE * 4);
      await randomOps(img, model.subarray(0, SIZE), 5, 40);
      await img.truncate(SIZE * 4);
      await img.write(SIZE * 3, new Uint8Array(10000).fill(5));
      model.fill(5, SIZE * 3, SIZE * 3 + 10000);
      await img.close();
      await assertCleanAndEqual(dir, p, model, "grown");
      img = await openRw(p);
      await rejects(img.truncate(SIZE), /--shrink/);
      await img.truncate(SIZE + 512, { shrink: true });
      await img.close();
      await assertCleanAndEqual(dir, p, model.subarray(0, SIZE + 512), "shrunk");

      // Preallocation: every mode reads zeros and checks clean.
      for (const mode of ["metadata", "falloc", "full"] as const) {
        await createQcow2(p, { size: SIZE, clusterSize: 65536, preallocation: mode });
        await assertCleanAndEqual(dir, p, new Uint8Array(SIZE), `preallocation=${mode}`);
        const map = JSON.parse((await must("qemu-img", ["map", "--output=json", p])).stdout);
        ok(map.every((e: { data: boolean }) => e.data), `preallocation=${mode}: all allocated`);
      }

      // A dirty lazy-refcounts image left by a killed qemu-io is repaired on open.
      await createQcow2(p, { size: SIZE, lazyRefcounts: true });
      await run("qemu-io", ["-c", "write -P 51 0 1M", "-c", "sigraise 9", p]);
      img = await openRw(p);
      strictEqual(img.info().dirty, false);
      await img.write(2 << 20, new Uint8Array(4096).fill(52));
      ok(img.info().dirty, "lazy refcounts: dirty while open");
      await img.close();
      const lazyModel = new Uint8Array(SIZE);
      lazyModel.fill(51, 0, 1 << 20);
      lazyModel.fill(52, 2 << 20, (2 << 20) + 4096);
      await assertCleanAndEqual(dir, p, lazyModel, "lazy refcounts repaired");

      // amend: refcount width, compat down and up.
      await createQcow2(p, { size: SIZE });
      img = await openRw(p);
      const am = new Uint8Array(SIZE);
      await randomOps(img, am, 17, 50);
      for (
        const o of [{ refcountBits: 64 }, { refcountBits: 4 }, { refcountBits: 16 }, {
          compat: "0.10",
        }, { compat: "1.1", lazyRefcounts: true }]
      ) {
        await img.amend(o);
        await img.close();
        await assertCleanAndEqual(dir, p, am, `amend ${JSON.stringify(o)}`);
        img = await openRw(p);
      }
      strictEqual(img.info().compat, "1.1");
      strictEqual(img.info().lazyRefcounts, true);
      await rejects(img.amend({ clusterSize: 4096 }), /only supported for image creation/);
      await img.close();
    });
  },
});

Deno.test({
  name: "qcow2 interop: corrupt bit, encryption and external data files",
  ignore: !HAVE_QEMU,
  async fn() {
    await withTemp(async (dir) => {
      const p = `${dir}/c.qcow2`;
      await must("qemu-img", ["create", "-q", "-f", "qcow2", p, "1M"]);
      await must("qemu-io", ["-c", "write -P 9 0 64k", p]);
      const b = await Deno.readFile(p);
      b[79] |= 2; // incompatible_features: corrupt
      await Deno.writeFile(p, b);
      await rejects(openRw(p), /qcow2: Image is corrupt; cannot be opened read\/write/);
      const ro = await Qcow2Format.open(FileProtocol.open(p, { readOnly: true }), {
        readOnly: true,
      });
      strictEqual(ro.info().corrupt, true);
      const buf = new Uint8Array(65536);
      await ro.read(0, buf);
      ok(buf.every((x) => x === 9));
      await ro.close();

      await must("qemu-img", [
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        `data_file=${dir}/d.raw`,
        `${dir}/df.qcow2`,
        "1M",
      ]);
      await rejects(openRw(`${dir}/df.qcow2`), /external data file/);
      // An encrypted image (crypt_method LUKS in the header) is refused by name.
      await must("qemu-img", ["create", "-q", "-f", "qcow2", `${dir}/e.qcow2`, "1M"]);
      const e = await Deno.readFile(`${dir}/e.qcow2`);
      e[35] = 2;
      await Deno.writeFile(`${dir}/e.qcow2`, e);
      await rejects(openRw(`${dir}/e.qcow2`), /encrypt|CRYPTO/i);
    });
  },
});
