/**
 * demu's qemu-img beside QEMU's, same machine, same run: convert of a 1 GiB raw image (half
 * random data, half zeros) to qcow2, compressed to qcow2, back to raw; check; and 100000 4 KiB
 * reads and writes with qemu-img bench. Both programs run as processes, so startup counts for
 * both. Each case runs ROUNDS times, alternating which program goes first, after a sync(1), and
 * the best time of each is compared (the machine is shared, so single runs are noisy). Prints
 * each time and the ratio demu/QEMU beside the target.
 */
const REPO = new URL("../../", import.meta.url).pathname;
const DEMU = ["run", "-A", `${REPO}tools/qemu-img.ts`];
const SIZE = 1 << 30;
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);

async function have(cmd: string): Promise<boolean> {
  try {
    const r = await new Deno.Command(cmd, { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return r.success;
  } catch {
    return false;
  }
}

/** Wall-clock and CPU (user + system) seconds of one run. */
interface Timing {
  wall: number;
  cpu: number;
}

const TIME = "/usr/bin/time";
const haveTime = (() => {
  try {
    return Deno.statSync(TIME).isFile;
  } catch {
    return false;
  }
})();

/**
 * Runs a command, returns its times; throws with its stderr when it fails. CPU time comes from
 * time(1) when installed (NaN otherwise): it shows what a run cost when the shared machine's
 * disk or other processes stretch the wall clock.
 */
async function timed(cmd: string, args: string[], okCodes = [0]): Promise<Timing> {
  const argv = haveTime ? [TIME, "-f", "TIMES %U %S", cmd, ...args] : [cmd, ...args];
  const t0 = performance.now();
  const r = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const wall = (performance.now() - t0) / 1000;
  const err = new TextDecoder().decode(r.stderr);
  if (!okCodes.includes(r.code)) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${err}`);
  }
  const m = /TIMES ([0-9.]+) ([0-9.]+)\s*$/.exec(err);
  return { wall, cpu: m ? Number(m[1]) + Number(m[2]) : NaN };
}

/** The source image: 512 MiB of random data, then 512 MiB of written zeros. */
async function makeSource(path: string): Promise<void> {
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(1 << 20);
  for (let off = 0; off < SIZE / 2; off += chunk.length) {
    for (let i = 0; i < chunk.length; i += 65536) {
      crypto.getRandomValues(chunk.subarray(i, i + 65536));
    }
    await f.write(chunk);
  }
  chunk.fill(0);
  for (let off = SIZE / 2; off < SIZE; off += chunk.length) await f.write(chunk);
  f.close();
}

/** Writes back dirty pages first (sync(1)), so a run does not pay for the previous one's. */
async function settle(): Promise<void> {
  try {
    await new Deno.Command("sync").output();
  } catch {
    // No sync(1): runs are merely noisier.
  }
}

interface Case {
  name: string;
  target: number;
  /** Arguments for qemu-img (both programs take the same), given the program's output prefix. */
  args: (who: "real" | "demu") => string[];
  okCodes?: number[];
  /** Runs before each side (e.g. a fresh image to write into). */
  prepare?: (who: "real" | "demu") => Promise<void>;
}

/**
 * What any `deno run` costs before demu's code runs, beside qemu-img's whole check: the floor
 * under the short cases (check takes QEMU a few ms, less than Deno takes to start an empty
 * module).
 */
async function startupFloor(dir: string, image: string, checkBest: number): Promise<void> {
  const empty = `${dir}/empty.ts`;
  await Deno.writeTextFile(empty, "");
  const best = async (cmd: string, args: string[]) => {
    let t = Infinity;
    for (let i = 0; i < Math.max(ROUNDS, 5); i++) t = Math.min(t, (await timed(cmd, args)).wall);
    return t;
  };
  const check = Math.min(checkBest, await best("qemu-img", ["check", image]));
  const floor = await best(Deno.execPath(), ["run", "-A", empty]);
  const version = await best(Deno.execPath(), [...DEMU, "--version"]);
  const ms = (s: number) => `${(s * 1000).toFixed(1)} ms`;
  console.log(
    `\nstart-up floor: deno run of an empty module ${ms(floor)}, demu qemu-img --version ` +
      `${ms(version)}; qemu-img check (whole run) ${ms(check)}, so a 1.5x check needs demu ` +
      `within ${ms(check * 1.5)}: ${
        floor > check * 1.5 ? "unreachable, Deno's start-up alone takes longer" : "above the floor"
      }`,
  );
}

/** Runs the comparison and prints the table. */
export async function bench(_filters: string[] = []): Promise<void> {
  if (!(await have("qemu-img"))) {
    console.error("WARNING: qemu-img (Debian qemu-utils) is not installed: qemu-img bench skipped");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "demu-bench-qemu-img" });
  try {
    const src = `${dir}/src.raw`;
    await makeSource(src);
    const p = (who: string, name: string) => `${dir}/${who}-${name}`;
    const cases: Case[] = [
      {
        name: "convert -O qcow2 (1 GiB raw)",
        target: 1.25,
        args: (w) => ["convert", "-f", "raw", "-O", "qcow2", src, p(w, "plain.qcow2")],
      },
      {
        name: "convert -c -O qcow2",
        target: 1.0,
        args: (w) => ["convert", "-c", "-f", "raw", "-O", "qcow2", src, p(w, "comp.qcow2")],
      },
      {
        name: "convert -O raw (qcow2 back to raw)",
        target: 1.5,
        args: (w) => ["convert", "-f", "qcow2", "-O", "raw", p(w, "plain.qcow2"), p(w, "back.raw")],
      },
      {
        name: "check (1 GiB qcow2)",
        target: 1.5,
        args: (w) => ["check", p(w, "plain.qcow2")],
      },
      {
        name: "bench -c 100000 -s 4k (reads)",
        target: 1.5,
        args: (w) => ["bench", "-c", "100000", "-s", "4k", "-f", "qcow2", p(w, "plain.qcow2")],
      },
      {
        name: "bench -w -c 100000 -s 4k (writes)",
        target: 1.5,
        prepare: async (w) => {
          await timed("qemu-img", ["create", "-q", "-f", "qcow2", p(w, "w.qcow2"), "1G"]);
        },
        args: (w) => ["bench", "-w", "-c", "100000", "-s", "4k", "-f", "qcow2", p(w, "w.qcow2")],
      },
    ];
    console.log(`best of ${ROUNDS} runs each, alternating`);
    const rows: string[][] = [[
      "case",
      "qemu-img s",
      "demu s",
      "ratio",
      "target",
      "",
      "cpu qemu-img s",
      "cpu demu s",
    ]];
    let realCheck = Infinity;
    for (const c of cases) {
      let real = Infinity, demu = Infinity, realCpu = Infinity, demuCpu = Infinity;
      const runReal = async () => {
        await c.prepare?.("real");
        await settle();
        const t = await timed("qemu-img", c.args("real"), c.okCodes);
        real = Math.min(real, t.wall);
        realCpu = Math.min(realCpu, t.cpu);
      };
      const runDemu = async () => {
        await c.prepare?.("demu");
        await settle();
        const t = await timed(Deno.execPath(), [...DEMU, ...c.args("demu")], c.okCodes);
        demu = Math.min(demu, t.wall);
        demuCpu = Math.min(demuCpu, t.cpu);
      };
      for (let round = 0; round < ROUNDS; round++) {
        // Alternate who goes first, so neither always pays for the other's dirty page writeback.
        if (round % 2) {
          await runDemu();
          await runReal();
        } else {
          await runReal();
          await runDemu();
        }
      }
      const ratio = demu / real;
      if (c.name.startsWith("check")) realCheck = real;
      rows.push([
        c.name,
        real.toFixed(3),
        demu.toFixed(3),
        ratio.toFixed(2) + "x",
        `<= ${c.target}x`,
        ratio <= c.target ? "ok" : "SLOWER THAN TARGET",
        realCpu.toFixed(2),
        demuCpu.toFixed(2),
      ]);
      console.log(rows.at(-1)!.join("  "));
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    console.log("\n" + rows.map((r) => r.map((x, i) => x.padEnd(widths[i])).join("  ")).join("\n"));
    await startupFloor(dir, p("real", "plain.qcow2"), realCheck);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await bench(Deno.args);
