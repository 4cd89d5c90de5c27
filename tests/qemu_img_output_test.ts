/**
 * demu's qemu-img prints what QEMU 7.2's prints: info, check, map and snapshot -l on the same
 * images, and the messages, exit codes and results of the other subcommands. Images that a
 * command changes are copied first, so that each side works on its own identical copy; paths
 * are normalized where the two copies' directories differ.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import {
  demu,
  HAVE_QEMU,
  qemuIo,
  real,
  type RunResult,
  tempDir,
} from "../tools/qemu_img/testing.ts";

const ignore = !HAVE_QEMU;

/** Runs the same command line through both and returns both results. */
async function both(args: string[]): Promise<[RunResult, RunResult]> {
  return [await real(...args), await demu(...args)];
}

/** Asserts demu's stdout, stderr and exit code equal the real qemu-img's. */
async function same(args: string[], norm: (s: string) => string = (s) => s): Promise<RunResult> {
  const [r, d] = await both(args);
  deepStrictEqual(
    { code: d.code, stdout: norm(d.stdout), stderr: norm(d.stderr) },
    { code: r.code, stdout: norm(r.stdout), stderr: norm(r.stderr) },
    `qemu-img ${args.join(" ")}`,
  );
  return r;
}

/**
 * Runs a command that changes images on two copies: `make(dir)` builds the inputs in a dir, then
 * `args(dir)` runs in dir "real" for QEMU and dir "demu" for demu; outputs must match with the
 * dirs normalized. Returns the two dirs for further checks.
 */
async function sameOnCopies(
  root: string,
  name: string,
  make: (dir: string) => Promise<void>,
  args: (dir: string) => string[],
): Promise<[string, string]> {
  const a = `${root}/${name}-real`, b = `${root}/${name}-demu`;
  await Deno.mkdir(a);
  await Deno.mkdir(b);
  await make(a);
  for await (const e of Deno.readDir(a)) await Deno.copyFile(`${a}/${e.name}`, `${b}/${e.name}`);
  const r = await real(...args(a));
  const d = await demu(...args(b));
  const na = (s: string) => s.replaceAll(a, "DIR");
  const nb = (s: string) => s.replaceAll(b, "DIR");
  deepStrictEqual(
    { code: d.code, stdout: nb(d.stdout), stderr: nb(d.stderr) },
    { code: r.code, stdout: na(r.stdout), stderr: na(r.stderr) },
    `qemu-img ${args("DIR").join(" ")}`,
  );
  return [a, b];
}

async function mustReal(...args: string[]): Promise<void> {
  const r = await real(...args);
  if (r.code !== 0) throw new Error(`qemu-img ${args.join(" ")}: ${r.stderr}`);
}

Deno.test(
  { name: "info, map, check and snapshot -l print what qemu-img prints", ignore },
  async () => {
    const [dir, cleanup] = await tempDir("demu-qimg-out");
    try {
      const raw = `${dir}/disk.raw`;
      await mustReal("create", "-q", "-f", "raw", raw, "5M");
      await qemuIo(raw, "raw", ["write -P 7 0 64k", "write -P 9 1M 4k"]);
      const base = `${dir}/base.qcow2`;
      await mustReal("create", "-q", "-f", "qcow2", base, "8M");
      await qemuIo(base, "qcow2", ["write -P 1 0 1M", "write -P 2 3M 128k", "write -z 5M 64k"]);
      const mid = `${dir}/mid.qcow2`;
      await mustReal("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", mid);
      await qemuIo(mid, "qcow2", ["write -P 3 64k 64k", "write -z 3M 64k", "discard 0 64k"]);
      const top = `${dir}/top.qcow2`;
      await mustReal(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=16k,lazy_refcounts=on,extended_l2=on",
        "-b",
        mid,
        "-F",
        "qcow2",
        top,
        "10M",
      );
      await qemuIo(top, "qcow2", ["write -P 4 6M 8k", "write -P 5 4k 2k", "write -z 7M 4k"]);
      const v2 = `${dir}/v2.qcow2`;
      await mustReal("create", "-q", "-f", "qcow2", "-o", "compat=0.10,cluster_size=4k", v2, "3M");
      await qemuIo(v2, "qcow2", ["write -P 6 0 100k"]);
      await mustReal("snapshot", "-c", "first", v2);
      await qemuIo(v2, "qcow2", ["write -P 8 64k 64k"]);
      await mustReal("snapshot", "-c", "a-much-longer-snapshot-name", v2);
      const zstd = `${dir}/zstd.qcow2`;
      await mustReal(
        "convert",
        "-c",
        "-O",
        "qcow2",
        "-o",
        "compression_type=zstd,refcount_bits=64",
        base,
        zstd,
      );
      const images = [raw, base, mid, top, v2, zstd];
      for (const img of images) {
        await same(["info", img]);
        await same(["info", "--output=json", img]);
        await same(["map", "--output=json", img]);
        await same(["check", img]);
        await same(["check", "--output=json", img]);
        await same(["snapshot", "-l", img]);
        if (img !== zstd) await same(["map", img]);
      }
      await same(["map", zstd]); // compressed clusters: QEMU's refusal, in human form
      await same(["info", "--backing-chain", top]);
      await same(["info", "--backing-chain", "--output=json", top]);
      await same(["map", "--start-offset=1M", "--max-length=3M", "--output=json", top]);
      await same(["info", "-f", "raw", base]);
      await same(["map", "-f", "raw", "--output=json", raw]);
    } finally {
      await cleanup();
    }
  },
);

Deno.test({ name: "usage and open errors read as qemu-img's", ignore }, async () => {
  const [dir, cleanup] = await tempDir("demu-qimg-err");
  try {
    const raw = `${dir}/r.img`;
    await mustReal("create", "-q", "-f", "raw", raw, "1M");
    const q = `${dir}/q.qcow2`;
    await mustReal("create", "-q", "-f", "qcow2", q, "1M");
    const orphan = `${dir}/orphan.qcow2`;
    await mustReal(
      "create",
      "-q",
      "-f",
      "qcow2",
      "-u",
      "-b",
      "gone.qcow2",
      "-F",
      "qcow2",
      orphan,
      "1M",
    );
    const n = (s: string) => s.replaceAll(dir, "DIR");
    for (
      const args of [
        [],
        ["foo"],
        ["info"],
        ["info", "a", "b"],
        ["info", `${dir}/nonexistent`],
        ["info", "-f", "foo", raw],
        ["info", "--output=xml", raw],
        ["create", "-f"],
        ["create", "-f", "raw", `${dir}/x`, "10X"],
        ["create", "-f", "raw", `${dir}/x`, "18E"],
        ["create", "-f", "raw", `${dir}/x`, "1.5"],
        ["create", "-f", "raw", `${dir}/x`],
        ["create", "-f", "vmdk2", `${dir}/x`, "1M"],
        ["create", "-f", "qcow2", "-o", "foo=1", `${dir}/x`, "1M"],
        ["create", "-f", "qcow2", "-o", "lazy_refcounts=maybe", `${dir}/x`, "1M"],
        ["create", "-f", "qcow2", "-o", "cluster_size=abc", `${dir}/x`, "1M"],
        ["create", "-f", "raw", "-b", q, `${dir}/x`, "1M"],
        ["create", "-f", "qcow2", "-b", `${dir}/nonexist`, "-F", "raw", `${dir}/x`, "1M"],
        ["create", "-f", "qcow2", "-b", q, `${dir}/x`],
        ["create", "-f", "qcow2", "-u", "-b", `${dir}/nonexist`, "-F", "raw", `${dir}/x`],
        ["check", "-f", "raw", raw],
        ["check", "-r", "foo", q],
        ["snapshot", "-l", "-c", "x", q],
        ["snapshot", "-d", "nope", q],
        ["snapshot", "-a", "nope", q],
        ["snapshot", "-c", "x", "-f", "raw", raw],
        ["compare", raw],
        ["convert", "-m", "17", "-O", "raw", raw, `${dir}/y`],
        ["convert", "-O", "raw", raw],
        ["convert", "-c", "-O", "raw", raw, `${dir}/y`],
        ["convert", "-O", "foo", raw, `${dir}/y`],
        ["convert", "-O", "qcow2", "-B", q, raw, `${dir}/y`],
        ["convert", "-O", "qcow2", "-S", "1x", raw, `${dir}/y`],
        ["convert", "-O", "qcow2", "-o", "preallocation=full", "-c", raw, `${dir}/y`],
        ["convert", "-O", "qcow2", "-l", "foo", q, `${dir}/y`],
        ["convert", "-O", "qcow2", "-l", "foo", "-f", "raw", raw, `${dir}/y`],
        ["convert", "-n", "-O", "raw", raw, `${dir}/nonexist`],
        ["resize", "-f", "raw", raw],
        ["resize", "-f", "raw", raw, "5X"],
        ["resize", "-f", "raw", raw, "512k"],
        ["resize", "-f", "raw", raw, "9E"],
        ["resize", "-f", "raw", "--preallocation=foo", raw, "+1M"],
        ["resize", "-f", "raw", "--preallocation=full", raw, "--", "-1k"],
        ["commit", "-f", "raw", raw],
        ["rebase", q],
        ["rebase", "-u", "-b", raw, q],
        ["info", "--image-opts", `driver=qcow2,file.filename=${q}`],
        ["info", "--image-opts", "driver=qcow2"],
        ["map", orphan],
        ["check", orphan],
        ["compare", orphan, raw],
        ["convert", "-O", "raw", orphan, `${dir}/y`],
        ["info", "--backing-chain", orphan],
        ["check", "--output=json", "--image-opts", `driver=qcow2,file.filename=${q}`],
        [
          "compare",
          "--image-opts",
          `driver=qcow2,file.filename=${q}`,
          `driver=raw,file.filename=${raw}`,
        ],
        ["rebase", "-b", raw, q],
        ["rebase", "-b", `${dir}/nonexist`, "-F", "qcow2", q],
        ["amend", q],
        ["amend", "-o", "lazy_refcounts=on", "-f", "raw", raw],
        ["amend", "-o", "cluster_size=4k", q],
        ["amend", "-o", "foo=1", q],
        ["amend", "-o", "compat=0.9", q],
        ["amend", "-o", "refcount_bits=3", q],
        ["measure", "--size", "1G", q],
        ["measure"],
        ["measure", "--size", "1G", "-O", "vmdk"],
        ["dd", `if=${raw}`],
        ["dd", `if=${raw}`, `of=${dir}/y`, "bs=0"],
        ["dd", `if=${raw}`, `of=${dir}/y`, "bs=1x"],
        ["dd", `if=${raw}`, `of=${dir}/y`, "foo=1"],
        ["bench", "-c", "10", "-t", "foo", q],
        ["bench", "-c", "10", "-s", "4k", "-o", "2M", q],
      ]
    ) {
      await same(args, n);
    }
  } finally {
    await cleanup();
  }
});

Deno.test(
  { name: "create makes byte-identical images and the same Formatting line", ignore },
  async () => {
    const [root, cleanup] = await tempDir("demu-qimg-create");
    try {
      const cases = [
        ["-f", "raw", "x", "3M"],
        ["-f", "raw", "-o", "preallocation=full", "x", "100k"],
        ["-f", "qcow2", "x", "10G"],
        ["-f", "qcow2", "-o", "cluster_size=4k,refcount_bits=1,lazy_refcounts=on", "x", "5M"],
        ["-f", "qcow2", "-o", "compat=0.10", "x", "1000"],
        ["-f", "qcow2", "-o", "extended_l2=on,compression_type=zstd,cluster_size=2M", "x", "7M"],
        ["-f", "qcow2", "-o", "preallocation=metadata,cluster_size=512", "x", "1M"],
        ["-f", "qcow2", "-o", "compat=0.10,extended_l2=on", "x", "1M"],
        ["-f", "qcow2", "-o", "cluster_size=1000", "x", "1M"],
        ["-f", "qcow2", "-o", "refcount_bits=3", "x", "1M"],
        ["-f", "qcow2", "-o", "compat=0.9", "x", "1M"],
        ["-f", "qcow2", "-o", "compression_type=lz4", "x", "1M"],
        ["-f", "qcow2", "-F", "qcow2", "x", "1M"],
        ["-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "x"],
        ["-f", "qcow2", "-u", "-b", "nothere.qcow2", "-F", "qcow2", "x", "1G"],
      ];
      let i = 0;
      for (const c of cases) {
        const name = `c${i++}`;
        const [a, b] = await sameOnCopies(
          root,
          name,
          (d) => mustReal("create", "-q", "-f", "qcow2", `${d}/base.qcow2`, "2M"),
          (d) =>
            ["create", ...c.slice(0, -2), ...c.slice(-2).map((x) => x === "x" ? `${d}/x` : x)]
              .map((x) => x === "x" ? `${d}/x` : x),
        );
        const ra = await Deno.readFile(`${a}/x`).catch(() => undefined);
        const rb = await Deno.readFile(`${b}/x`).catch(() => undefined);
        strictEqual(
          rb === undefined,
          ra === undefined,
          `${c.join(" ")}: file exists on both sides`,
        );
        // Metadata preallocation with 512-byte clusters: demu's layout differs (still valid).
        if (ra && rb && !c.join(" ").includes("preallocation=metadata,cluster_size=512")) {
          ok(
            ra.length === rb.length && ra.every((v, j) => v === rb[j]),
            `${c.join(" ")}: same bytes`,
          );
        }
      }
    } finally {
      await cleanup();
    }
  },
);

Deno.test({
  name: "convert, compare, resize, rebase, commit, amend, measure, dd, bench behave as qemu-img's",
  ignore,
}, async (t) => {
  const [root, cleanup] = await tempDir("demu-qimg-cmds");
  try {
    const src = `${root}/src.raw`;
    {
      // 6 MiB: random data, zero runs of several sizes, a hole, unaligned tails.
      const b = new Uint8Array(6 << 20);
      let x = 12345;
      const rnd = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
      for (let i = 0; i < (1 << 20); i++) b[i] = rnd();
      for (let i = (2 << 20) + 1000; i < (2 << 20) + 1000 + 70000; i++) b[i] = 0x5a;
      b.fill(7, (3 << 20) + 4096, (3 << 20) + 4096 + 3000);
      b.fill(9, (5 << 20) - 10, 5 << 20);
      await Deno.writeFile(src, b);
    }
    const setup = async (d: string) => {
      await Deno.copyFile(src, `${d}/src.raw`);
      await mustReal("convert", "-f", "raw", "-O", "qcow2", `${d}/src.raw`, `${d}/img.qcow2`);
      await mustReal("create", "-q", "-f", "qcow2", `${d}/base.qcow2`, "6M");
      await qemuIo(`${d}/base.qcow2`, "qcow2", ["write -P 1 0 2M", "write -P 2 4M 1M"]);
      await mustReal(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        `${d}/top.qcow2`,
      );
      await qemuIo(`${d}/top.qcow2`, "qcow2", ["write -P 3 1M 64k", "write -z 4M 64k"]);
      await mustReal("create", "-q", "-f", "qcow2", `${d}/other.qcow2`, "6M");
      await qemuIo(`${d}/other.qcow2`, "qcow2", ["write -P 1 0 3M"]);
    };
    let n = 0;
    // Where the two drivers may place clusters differently (reused freed clusters, growth),
    // "loose" compares everything but the host-allocation figures.
    const layoutFree = (s: string) =>
      s.replace(/^disk size: .*\n/m, "").replace(/^\d+\/\d+ = .* compressed clusters\n/m, "")
        .replace(/^Image end offset: \d+\n/m, "").replace(/, "offset": \d+/g, "");
    const check = async (
      label: string,
      cmd: (d: string) => string[],
      after: (d: string) => string[][] = () => [],
      loose = false,
    ) => {
      const norm = loose ? layoutFree : (s: string) => s;
      await t.step(label, async () => {
        const [a, b] = await sameOnCopies(root, `s${n++}`, setup, cmd);
        for (const extra of [...after(a).map((x, i) => [x, after(b)[i]])]) {
          const ra = await real(...extra[0]);
          const rb = await real(...extra[1]);
          strictEqual(
            norm(rb.stdout.replaceAll(b, "DIR")),
            norm(ra.stdout.replaceAll(a, "DIR")),
            `${label}: qemu-img ${extra[0].join(" ")}`,
          );
          strictEqual(rb.code, ra.code);
        }
      });
    };
    const inspect = (file: string) => (d: string) => [
      ["map", "--output=json", `${d}/${file}`],
      ["check", `${d}/${file}`],
      ["compare", `${d}/src.raw`, `${d}/${file}`],
    ];
    for (const opts of [[], ["-S", "0"], ["-S", "64k"], ["-o", "cluster_size=4k"]]) {
      await check(
        `convert ${opts.join(" ")}`,
        (d) => ["convert", "-f", "raw", "-O", "qcow2", ...opts, `${d}/src.raw`, `${d}/out.qcow2`],
        inspect("out.qcow2"),
      );
    }
    await check(
      "convert -O raw",
      (d) => ["convert", "-O", "raw", `${d}/img.qcow2`, `${d}/out.raw`],
      (d) => [["compare", "-f", "raw", "-F", "raw", `${d}/src.raw`, `${d}/out.raw`]],
    );
    await check(
      "convert -B",
      (d) => [
        "convert",
        "-O",
        "qcow2",
        "-B",
        "base.qcow2",
        "-F",
        "qcow2",
        `${d}/top.qcow2`,
        `${d}/flat.qcow2`,
      ],
      (d) => [
        ["map", "--output=json", `${d}/flat.qcow2`],
        ["compare", `${d}/top.qcow2`, `${d}/flat.qcow2`],
      ],
    );
    await check(
      "convert -n",
      (d) => ["convert", "-n", "-O", "qcow2", `${d}/other.qcow2`, `${d}/img.qcow2`],
      (d) => [["compare", `${d}/other.qcow2`, `${d}/img.qcow2`], ["check", `${d}/img.qcow2`]],
      true,
    );
    await check("convert -p", (d) => ["convert", "-p", "-O", "raw", `${d}/src.raw`, `${d}/o.raw`]);
    for (
      const args of [
        ["-f", "raw", "-F", "qcow2", "src.raw", "img.qcow2"],
        ["-s", "-f", "raw", "-F", "qcow2", "src.raw", "img.qcow2"],
        ["img.qcow2", "other.qcow2"],
        ["other.qcow2", "img.qcow2"],
        ["top.qcow2", "base.qcow2"],
        ["-q", "top.qcow2", "base.qcow2"],
      ]
    ) {
      await check(
        `compare ${args.join(" ")}`,
        (d) => ["compare", ...args.map((x) => x.includes(".") ? `${d}/${x}` : x)],
      );
    }
    for (const size of ["+1M", "8M", "+3k"]) {
      await check(
        `resize ${size}`,
        (d) => ["resize", `${d}/img.qcow2`, size],
        (d) => [["info", `${d}/img.qcow2`], ["check", `${d}/img.qcow2`]],
        true,
      );
    }
    await check(
      "resize --shrink",
      (d) => ["resize", "--shrink", "-f", "raw", `${d}/src.raw`, "--", "-1M"],
      (d) => [["info", "-f", "raw", `${d}/src.raw`]],
      true,
    );
    await check(
      "rebase -u",
      (d) => ["rebase", "-u", "-b", "other.qcow2", "-F", "qcow2", `${d}/top.qcow2`],
      (d) => [["info", `${d}/top.qcow2`], ["check", `${d}/top.qcow2`]],
      true,
    );
    await check(
      "rebase (safe)",
      (d) => ["rebase", "-b", "other.qcow2", "-F", "qcow2", `${d}/top.qcow2`],
      (d) => [
        ["info", `${d}/top.qcow2`],
        ["check", `${d}/top.qcow2`],
        ["map", "--output=json", `${d}/top.qcow2`],
      ],
      true,
    );
    await check(
      "commit",
      (d) => ["commit", `${d}/top.qcow2`],
      (d) => [
        ["map", "--output=json", `${d}/top.qcow2`],
        ["check", `${d}/base.qcow2`],
        ["compare", `${d}/top.qcow2`, `${d}/base.qcow2`],
      ],
      true,
    );
    for (const o of ["compat=0.10", "lazy_refcounts=on", "refcount_bits=64"]) {
      await check(
        `amend ${o}`,
        (d) => ["amend", "-o", o, `${d}/img.qcow2`],
        (d) => [["info", `${d}/img.qcow2`], ["check", `${d}/img.qcow2`], [
          "compare",
          `${d}/src.raw`,
          `${d}/img.qcow2`,
        ]],
        true,
      );
    }
    for (
      const args of [
        ["--size", "1G", "-O", "qcow2"],
        ["--size", "1G", "-O", "qcow2", "-o", "cluster_size=4k,preallocation=metadata"],
        ["--size", "10G", "-O", "raw"],
        ["--output=json", "-O", "qcow2", "IMG"],
        ["-O", "raw", "IMG"],
        ["-O", "qcow2", "-o", "cluster_size=2M", "IMG"],
      ]
    ) {
      await check(
        `measure ${args.join(" ")}`,
        (d) => ["measure", ...args.map((x) => x === "IMG" ? `${d}/img.qcow2` : x)],
      );
    }
    for (
      const ops of [["bs=4k", "count=3"], ["bs=1M", "count=3", "skip=1"], ["bs=1000", "skip=2"]]
    ) {
      await check(
        `dd ${ops.join(" ")}`,
        (d) => ["dd", "-O", "qcow2", `if=${d}/img.qcow2`, `of=${d}/dd.qcow2`, ...ops],
        (d) => [["info", `${d}/dd.qcow2`], ["check", `${d}/dd.qcow2`]],
        true,
      );
    }
    await t.step("bench prints QEMU's lines", async () => {
      const d = `${root}/bench`;
      await Deno.mkdir(d);
      await setup(d);
      for (
        const args of [
          ["-c", "1000", "-s", "4k", `${d}/img.qcow2`],
          [
            "-w",
            "-c",
            "500",
            "-d",
            "4",
            "-s",
            "512",
            "-o",
            "4096",
            "-S",
            "8192",
            "--flush-interval=100",
            `${d}/img.qcow2`,
          ],
        ]
      ) {
        const [r, m] = await both(["bench", ...args]);
        const strip = (s: string) =>
          s.replace(/Run completed in [0-9.]+ seconds\./, "Run completed.");
        strictEqual(strip(m.stdout), strip(r.stdout));
        strictEqual(m.code, r.code);
        ok(/Run completed in \d+\.\d{3} seconds\.\n$/.test(m.stdout));
      }
      await realCheck(`${d}/img.qcow2`);
    });
  } finally {
    await cleanup();
  }
});

async function realCheck(image: string): Promise<void> {
  const r = await real("check", image);
  strictEqual(r.code, 0, r.stdout + r.stderr);
}

Deno.test({ name: "check reports and repairs a leak as qemu-img does", ignore }, async () => {
  const [root, cleanup] = await tempDir("demu-qimg-leak");
  try {
    const make = async (d: string) => {
      const img = `${d}/leak.qcow2`;
      await mustReal("create", "-q", "-f", "qcow2", img, "4M");
      await qemuIo(img, "qcow2", ["write -P 1 0 256k"]);
      // Drop the L2 reference to guest cluster 1: its host cluster leaks.
      const f = await Deno.open(img, { read: true, write: true });
      try {
        const h = new Uint8Array(48);
        await f.read(h);
        const l1 = Number(new DataView(h.buffer).getBigUint64(40));
        await f.seek(l1, Deno.SeekMode.Start);
        const e = new Uint8Array(8);
        await f.read(e);
        const l2 = Number(new DataView(e.buffer).getBigUint64(0) & 0x00fffffffffffe00n);
        await f.seek(l2 + 8, Deno.SeekMode.Start);
        await f.write(new Uint8Array(8));
      } finally {
        f.close();
      }
    };
    let n = 0;
    for (
      const args of [
        ["check"],
        ["check", "--output=json"],
        ["check", "-r", "leaks"],
        ["check", "-r", "all", "--output=json"],
        ["check", "-q"],
      ]
    ) {
      await sameOnCopies(root, `l${n++}`, make, (d) => [...args, `${d}/leak.qcow2`]);
    }
  } finally {
    await cleanup();
  }
});
