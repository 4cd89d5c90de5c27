/**
 * The qcow2 fuzzer: 3000 mutants of real images (headers, L1/L2 tables, refcount table and
 * blocks, snapshot table, truncations) from a seeded PRNG, each opened, read, checked and
 * repaired in memory (tests/fixtures/qcow2/fuzz_worker.ts). Only BlockErrors may come out, and
 * no case may take longer than CASE_TIMEOUT_MS: the worker reports each case as it starts, so
 * a hang is caught and named by its case number and seed (rerun with that seed to reproduce).
 */
import { deepStrictEqual } from "node:assert/strict";
import { demuCheck, haveQemu, must, realCheck } from "./fixtures/qcow2/util.ts";

const HAVE_QEMU = haveQemu("tests/qcow2_fuzz_test.ts");
const CASES = Number(Deno.env.get("DEMU_FUZZ_CASES") ?? 3000);
const SEED = Number(Deno.env.get("DEMU_FUZZ_SEED") ?? 20261126);
const CASE_TIMEOUT_MS = 5000;
/** The worker's start (loading and compiling the driver) is not a case: it gets longer. */
const STARTUP_TIMEOUT_MS = 60000;

/** Small images made by the real tools: every structure the mutator aims at is present. */
async function bases(dir: string): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const make = async (opts: string, io: string[], snap = false, bitmap = false) => {
    const p = `${dir}/base${out.length}.qcow2`;
    await must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", opts, p, "256k"]);
    if (bitmap) await must("qemu-img", ["bitmap", "--add", "-g", "4096", p, "b0"]);
    await must("qemu-io", ["-f", "qcow2", ...io.flatMap((c) => ["-c", c]), p]);
    if (snap) {
      await must("qemu-img", ["snapshot", "-c", "s1", p]);
      await must("qemu-io", ["-f", "qcow2", "-c", "write -P 9 0 4k", p]);
    }
    out.push(await Deno.readFile(p));
  };
  const io = ["write -P 1 0 8k", "write -c -P 2 64k 4k", "write -z 128k 8k", "write -P 3 200k 4k"];
  await make("cluster_size=4096", io, true);
  await make("cluster_size=4096", ["write -P 1 0 8k", "write -P 3 200k 4k"], false, true);
  await make("cluster_size=4096,compat=0.10", ["write -P 1 0 8k", "write -P 3 200k 4k"], true);
  await make("cluster_size=16384,extended_l2=on", ["write -P 1 0 2k", "write -z 64k 8k"]);
  await make("cluster_size=4096,refcount_bits=1", ["write -P 1 0 8k"]);
  await make("cluster_size=4096,refcount_bits=64,lazy_refcounts=on", io);
  await make("cluster_size=512", ["write -P 1 0 8k", "write -c -P 2 64k 4k"]);
  return out;
}

Deno.test({
  name:
    `qcow2 fuzzer: ${CASES} mutated images give BlockErrors or correct reports, never crash or hang`,
  ignore: !HAVE_QEMU,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "demu-fuzz-" });
    let images: Uint8Array[];
    try {
      images = await bases(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    const worker = new Worker(new URL("./fixtures/qcow2/fuzz_worker.ts", import.meta.url), {
      type: "module",
    });
    const failures: string[] = [];
    let current = -1;
    let lastProgress = Date.now();
    let finished = 0;
    try {
      await new Promise<void>((resolve, reject) => {
        const watchdog = setInterval(() => {
          const limit = current < 0 ? STARTUP_TIMEOUT_MS : CASE_TIMEOUT_MS;
          if (Date.now() - lastProgress > limit) {
            clearInterval(watchdog);
            reject(new Error(`case ${current} (seed ${SEED}) took over ${limit} ms`));
          }
        }, 250);
        worker.onmessage = (ev) => {
          lastProgress = Date.now();
          const m = ev.data;
          if ("case" in m) current = m.case;
          if ("fail" in m) failures.push(m.fail);
          if ("done" in m) {
            finished = m.done;
            console.log(`fuzz: ${JSON.stringify(m.stats)}`);
            clearInterval(watchdog);
            resolve();
          }
        };
        worker.onerror = (e) => {
          clearInterval(watchdog);
          e.preventDefault();
          reject(new Error(`worker crashed at case ${current} (seed ${SEED}): ${e.message}`));
        };
        worker.postMessage({ bases: images, first: 0, count: CASES, seed: SEED });
      });
    } finally {
      worker.terminate();
    }
    deepStrictEqual(failures.slice(0, 10), [], `${failures.length} failing cases`);
    deepStrictEqual(finished, CASES);
  },
});

/**
 * Differential fuzzing of the checker: mutants written to disk and checked by both demu and
 * the real qemu-img (messages, numbers, failures), and repaired by both with -r all.
 */
Deno.test({
  name: "qcow2 fuzzer: demu's check agrees with qemu-img check on mutated images",
  ignore: !HAVE_QEMU,
  async fn() {
    const { mutate, Prng } = await import("./fixtures/qcow2/fuzz_worker.ts");
    const dir = await Deno.makeTempDir({ prefix: "demu-fuzzdiff-" });
    const n = Number(Deno.env.get("DEMU_FUZZ_DIFF_CASES") ?? 300);
    const mismatches: string[] = [];
    const dump = Deno.env.get("DEMU_FUZZ_DUMP");
    const keep = async (i: number, bytes: Uint8Array) => {
      if (dump) await Deno.writeFile(`${dump}.case${i}.qcow2`, bytes);
    };
    try {
      const images = await bases(dir);
      for (let i = 0; i < n; i++) {
        const rng = new Prng(SEED + 1000000 + i);
        const bytes = mutate(images[i % images.length], rng);
        // Tens of thousands of snapshots make qemu-img take seconds; check_test covers them.
        if (bytes.length >= 64 && new DataView(bytes.buffer).getUint32(60) >= 1024) continue;
        const path = `${dir}/m.qcow2`;
        await Deno.writeFile(path, bytes);
        const t0 = Date.now();
        const real = await realCheck(path);
        const t1 = Date.now();
        let mine;
        try {
          mine = await demuCheck(path);
        } catch (e) {
          mismatches.push(`case ${i} (seed ${SEED}): demu threw ${(e as Error).stack}`);
          await keep(i, bytes);
          continue;
        }
        const t2 = Date.now();
        if (Deno.env.get("DEMU_FUZZ_DEBUG")) {
          console.log(`case ${i}: real ${t1 - t0} ms, demu ${t2 - t1} ms`);
        }
        try {
          deepStrictEqual(mine, real);
        } catch (e) {
          mismatches.push(`case ${i} (seed ${SEED}): ${(e as Error).message.slice(0, 6000)}`);
          await keep(i, bytes);
          continue;
        }
        // Repairs of images with persistent bitmaps are not compared: QEMU's read-write open
        // marks them in use and rewrites their directory first, which fails its own ways on a
        // damaged image ("Can't update bitmap directory"), and stores them anew on close.
        if (
          i % 3 === 0 && real.exit !== 0 && !qemuDropsSnapshots(bytes) &&
          !reftableReachesFar(bytes) && !hasBitmaps(bytes)
        ) {
          const a = `${dir}/a.qcow2`;
          const b = `${dir}/b.qcow2`;
          await Deno.writeFile(a, bytes);
          await Deno.writeFile(b, bytes);
          const t3 = Date.now();
          const realFix = await realCheck(a, "all");
          const t4 = Date.now();
          let mineFix;
          try {
            mineFix = await demuCheck(b, "all");
          } catch (e) {
            mismatches.push(`case ${i} -r all (seed ${SEED}): demu threw ${(e as Error).stack}`);
            await keep(i, bytes);
            continue;
          }
          const t5 = Date.now();
          if (Deno.env.get("DEMU_FUZZ_DEBUG")) {
            console.log(
              `case ${i} -r all: real ${t4 - t3} ms, demu ${t5 - t4} ms, size ${
                (await Deno.stat(b)).size
              }`,
            );
          }
          try {
            deepStrictEqual(mineFix, realFix);
            deepStrictEqual(await realCheck(b), await realCheck(a));
          } catch (e) {
            mismatches.push(
              `case ${i} -r all (seed ${SEED}): ${(e as Error).message.slice(0, 6000)}`,
            );
            await keep(i, bytes);
          }
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    if (dump) await Deno.writeTextFile(dump, mismatches.join("\n\n"));
    deepStrictEqual(mismatches.slice(0, 3), [], `${mismatches.length} of ${n} differ`);
  },
});

/**
 * Whether -r all would grow the file to reach a refcount block far outside it (QEMU truncates
 * the file up to it): checking a terabyte-sized sparse file takes minutes, so the differential
 * test leaves such repairs to the in-memory fuzzer.
 */
function reftableReachesFar(b: Uint8Array): boolean {
  if (b.length < 64) return false;
  const dv = new DataView(b.buffer, b.byteOffset);
  const off = Number(dv.getBigUint64(48) & 0xffffffffffffn);
  const entries = dv.getUint32(56) * 2 ** dv.getUint32(20) / 8;
  for (let i = 0; i < Math.min(entries, 65536) && off + 8 * i + 8 <= b.length; i++) {
    const e = dv.getBigUint64(off + 8 * i);
    if ((e & ~0x1ffn) > BigInt(64 << 20)) return true;
  }
  return false;
}

/** Whether the image carries persistent bitmaps QEMU would load (and store again on close). */
function hasBitmaps(b: Uint8Array): boolean {
  if (b.length < 104) return false;
  const dv = new DataView(b.buffer, b.byteOffset);
  if (dv.getUint32(4) < 3 || !(dv.getUint32(92) & 1)) return false;
  const cs = 2 ** Math.min(dv.getUint32(20), 21);
  for (let pos = dv.getUint32(100); pos + 8 <= Math.min(cs, b.length);) {
    const type = dv.getUint32(pos);
    if (type === 0) return false;
    if (type === 0x23852875) return true;
    pos += 8 + ((dv.getUint32(pos + 4) + 7) & ~7);
  }
  return false;
}

/**
 * QEMU 7.2 rewrites the header when it opens an image read-write for `check -r` and the image
 * has unknown autoclear bits or bitmaps (stale ones, or ones it marks in use); in check mode
 * that rewrite zeroes the snapshot table pointer, dropping every snapshot. demu keeps them, so
 * repairs of such images are not compared.
 */
function qemuDropsSnapshots(b: Uint8Array): boolean {
  if (b.length < 104) return false;
  const dv = new DataView(b.buffer, b.byteOffset);
  if (dv.getUint32(4) !== 3) return false;
  const snapshots = dv.getUint32(60) !== 0 || dv.getBigUint64(64) !== 0n;
  if (!snapshots) return false;
  if ((dv.getBigUint64(88) & ~3n) !== 0n) return true;
  const cs = 2 ** Math.min(dv.getUint32(20), 21);
  for (let pos = dv.getUint32(100); pos + 8 <= Math.min(cs, b.length);) {
    const type = dv.getUint32(pos);
    if (type === 0) return false;
    if (type === 0x23852875) return true;
    pos += 8 + ((dv.getUint32(pos + 4) + 7) & ~7);
  }
  return false;
}
