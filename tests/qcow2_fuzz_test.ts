/**
 * The qcow2 fuzzer: 3000 mutants of real images (headers, L1/L2 tables, refcount table and
 * blocks, snapshot table, truncations) from a seeded PRNG, each opened, read, checked and
 * repaired in memory (tests/fixtures/qcow2/fuzz_worker.ts). Only BlockErrors may come out, and
 * no case may take longer than CASE_TIMEOUT_MS: the worker reports each case as it starts, so
 * a hang is caught and named by its case number and seed (rerun with that seed to reproduce).
 */
import { deepStrictEqual } from "node:assert/strict";
import { haveQemu, must } from "./fixtures/qcow2/util.ts";

const HAVE_QEMU = haveQemu("tests/qcow2_fuzz_test.ts");
const CASES = Number(Deno.env.get("DEMU_FUZZ_CASES") ?? 3000);
const SEED = Number(Deno.env.get("DEMU_FUZZ_SEED") ?? 20261126);
const CASE_TIMEOUT_MS = 5000;

/** Small images made by the real tools: every structure the mutator aims at is present. */
async function bases(dir: string): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const make = async (opts: string, io: string[], snap = false) => {
    const p = `${dir}/base${out.length}.qcow2`;
    await must("qemu-img", ["create", "-q", "-f", "qcow2", "-o", opts, p, "256k"]);
    await must("qemu-io", ["-f", "qcow2", ...io.flatMap((c) => ["-c", c]), p]);
    if (snap) {
      await must("qemu-img", ["snapshot", "-c", "s1", p]);
      await must("qemu-io", ["-f", "qcow2", "-c", "write -P 9 0 4k", p]);
    }
    out.push(await Deno.readFile(p));
  };
  const io = ["write -P 1 0 8k", "write -c -P 2 64k 4k", "write -z 128k 8k", "write -P 3 200k 4k"];
  await make("cluster_size=4096", io, true);
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
          if (Date.now() - lastProgress > CASE_TIMEOUT_MS) {
            clearInterval(watchdog);
            reject(new Error(`case ${current} (seed ${SEED}) took over ${CASE_TIMEOUT_MS} ms`));
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
