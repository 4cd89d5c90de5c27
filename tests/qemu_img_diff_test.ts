/**
 * Differential runs against the real qemu-img: random (seeded) command lines over a small set
 * of images, run by both; output, messages and exit code must match, and for commands that
 * change images, the resulting images must have the same info (bar host allocation), the same
 * contents and the same check verdict.
 */
import { deepStrictEqual } from "node:assert/strict";
import { demu, HAVE_QEMU, real, Rng, tempDir } from "../tools/qemu_img/testing.ts";

const ignore = !HAVE_QEMU;
/** QEMU_IMG_DIFF_SEED and QEMU_IMG_DIFF_RUNS explore further (the suite uses fixed ones). */
const SEED = Number(Deno.env.get("QEMU_IMG_DIFF_SEED") ?? 0);
const RUNS = Number(Deno.env.get("QEMU_IMG_DIFF_RUNS") ?? 1);

async function io(image: string, cmds: string[]): Promise<void> {
  const args = cmds.flatMap((c) => ["-c", c]);
  await new Deno.Command("qemu-io", { args: [...args, image], stdout: "null", stderr: "null" })
    .output();
}

/** The images every run starts from. */
async function makeImages(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const q = async (...a: string[]) => {
    const r = await real(...a);
    if (r.code) throw new Error(`qemu-img ${a.join(" ")}: ${r.stderr}`);
  };
  await q("create", "-q", "-f", "qcow2", `${dir}/a.q`, "4M");
  await io(`${dir}/a.q`, ["write -P 1 0 1M", "write -z 2M 64k", "write -P 5 3M 100k"]);
  await q("create", "-q", "-f", "qcow2", "-b", "a.q", "-F", "qcow2", `${dir}/b.q`);
  await io(`${dir}/b.q`, ["write -P 2 512k 1M"]);
  await q("create", "-q", "-f", "raw", `${dir}/r.raw`, "3M");
  await q("create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4k", `${dir}/v2.q`, "2M");
  await q("snapshot", "-c", "s1", `${dir}/v2.q`);
}

const READ_ONLY: Record<string, string[][]> = {
  info: [[], ["--output=json"], ["--backing-chain"], ["-f", "raw"], ["-f", "qcow2"], ["-U"], [
    "--output=yaml",
  ], ["-x"]],
  map: [[], ["--output=json"], ["-f", "raw"], ["--start-offset=1M"], ["--max-length=1k"], [
    "--max-length=abc",
  ]],
  check: [[], ["--output=json"], ["-q"], ["-f", "qcow2"], ["-f", "raw"]],
  measure: [
    ["-O", "qcow2"],
    ["-O", "raw"],
    ["--output=json", "-O", "qcow2"],
    [
      "-O",
      "qcow2",
      "-o",
      "cluster_size=512",
    ],
    ["-O", "qcow2", "-l", "s1"],
    ["-f", "raw", "-O", "qcow2"],
  ],
  snapshot: [["-l"], ["-l", "-U"], ["-q", "-l"]],
  compare: [[], ["-s"], ["-q"], ["-f", "qcow2"], ["-F", "raw"], ["-p"]],
};

Deno.test(
  { name: "random read-only command lines print what qemu-img prints", ignore },
  async () => {
    const [dir, cleanup] = await tempDir("demu-qimg-diff-ro");
    try {
      await makeImages(dir);
      const rng = new Rng(20261126 + SEED);
      const pick = <T>(a: T[]) => a[rng.below(a.length)];
      const images = ["a.q", "b.q", "r.raw", "v2.q", "missing.q"].map((x) => `${dir}/${x}`);
      for (let i = 0; i < 120 * RUNS; i++) {
        const cmd = pick(Object.keys(READ_ONLY));
        const args = [cmd, ...pick(READ_ONLY[cmd]), pick(images)];
        if (cmd === "compare") args.push(pick(images));
        const [r, d] = [await real(...args), await demu(...args)];
        deepStrictEqual(d, r, `qemu-img ${args.join(" ")}`);
      }
    } finally {
      await cleanup();
    }
  },
);

Deno.test(
  { name: "random changing command lines leave the images qemu-img leaves", ignore },
  async () => {
    const [root, cleanup] = await tempDir("demu-qimg-diff-rw");
    try {
      const template = `${root}/template`;
      await makeImages(template);
      const rng = new Rng(4242 + SEED);
      const pick = <T>(a: T[]) => a[rng.below(a.length)];
      const gens: (() => string[])[] = [
        () => [
          "resize",
          ...pick([[], ["--shrink"], ["-f", "qcow2"], ["--preallocation=falloc"], ["-q"]]),
          pick(["a.q", "b.q", "v2.q", "r.raw"]),
          pick(["+1M", "1M", "8M", "3000000", "+0"]),
        ],
        () => [
          "convert",
          ...pick([
            [],
            ["-c"],
            ["-S", "0"],
            ["-S", "64k"],
            ["-o", "cluster_size=16k"],
            [
              "-o",
              "compat=0.10",
            ],
            ["-B", "a.q", "-F", "qcow2"],
            ["-p"],
            ["-q"],
            ["-W", "-m", "4"],
          ]),
          "-O",
          pick(["qcow2", "raw"]),
          pick(["a.q", "b.q", "v2.q", "r.raw"]),
          "out.img",
        ],
        () => [
          "amend",
          "-o",
          pick(["compat=0.10", "compat=1.1", "lazy_refcounts=on", "refcount_bits=64", "size=8M"]),
          pick(["a.q", "b.q", "v2.q"]),
        ],
        () => ["snapshot", pick(["-c", "-d", "-a"]), pick(["s1", "s2"]), pick(["a.q", "v2.q"])],
        () => [
          "rebase",
          ...pick([["-u"], [], ["-p"]]),
          "-b",
          pick(["a.q", "v2.q", ""]),
          ...pick([["-F", "qcow2"], []]),
          "b.q",
        ],
        () => ["commit", ...pick([[], ["-d"], ["-b", "a.q"]]), pick(["b.q", "a.q"])],
        () => [
          "dd",
          ...pick([[], ["-O", "qcow2"]]),
          `if=${pick(["a.q", "b.q", "r.raw"])}`,
          "of=out.img",
          pick(["bs=4k", "bs=1M", "bs=3000"]),
          pick(["count=2", "skip=1", "count=3"]),
        ],
      ];
      const files = ["a.q", "b.q", "v2.q", "r.raw", "out.img"];
      for (let i = 0; i < 16 * RUNS; i++) {
        const a = `${root}/real${i}`, b = `${root}/demu${i}`;
        await Deno.mkdir(a);
        await Deno.mkdir(b);
        for await (const e of Deno.readDir(template)) {
          await Deno.copyFile(`${template}/${e.name}`, `${a}/${e.name}`);
          await Deno.copyFile(`${template}/${e.name}`, `${b}/${e.name}`);
        }
        const args = pick(gens)();
        const abs = (d: string) =>
          args.map((x) =>
            /^(if|of)=/.test(x)
              ? `${x.slice(0, 3)}${d}/${x.slice(3)}`
              : /\.(q|raw|img)$/.test(x)
              ? `${d}/${x}`
              : x
          );
        const r = await real(...abs(a));
        const d = await demu(...abs(b));
        const na = (s: string) => s.replaceAll(a, "D"), nb = (s: string) => s.replaceAll(b, "D");
        const what = `qemu-img ${args.join(" ")}`;
        deepStrictEqual(
          { code: d.code, out: nb(d.stdout), err: nb(d.stderr) },
          { code: r.code, out: na(r.stdout), err: na(r.stderr) },
          what,
        );
        for (const f of files) {
          const strip = (s: string, dd: string) =>
            s.replaceAll(dd, "D").replace(/"actual-size": \d+,?/, "").replace(
              /"date-n?sec": \d+,?/g,
              "",
            );
          const ia = await real("info", "--output=json", `${a}/${f}`);
          const ib = await real("info", "--output=json", `${b}/${f}`);
          deepStrictEqual(strip(ib.stdout, b), strip(ia.stdout, a), `${what}: info ${f}`);
          if (ia.code) continue;
          const c = await real("compare", `${a}/${f}`, `${b}/${f}`);
          deepStrictEqual(c.stdout, "Images are identical.\n", `${what}: contents of ${f}`);
          const ca = await real("check", `${a}/${f}`), cb = await real("check", `${b}/${f}`);
          deepStrictEqual(cb.code, ca.code, `${what}: check ${f}`);
        }
        await Deno.remove(a, { recursive: true });
        await Deno.remove(b, { recursive: true });
      }
    } finally {
      await cleanup();
    }
  },
);
