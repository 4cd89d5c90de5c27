/**
 * CPU interpreter speed: guest programs (tests/guests/cpu/bench_*.asm) run on demu's bare CPU,
 * printing instructions retired, time and MIPS; beside each, the same program on the real QEMU
 * (qemu-system-i386, TCG) when installed, booted by SeaBIOS from a disk image. QEMU's time is its
 * run with the program's iteration count raised minus a run of an empty program (firmware and
 * start-up), and its instruction count is demu's count scaled the same way.
 *
 *     deno run -A tests/bench/cpu_bench.ts [bench_NAME...]     (or: deno task bench cpu)
 */

import { cpuUsage } from "node:process";
import { buildGuest, guestNames, haveNasm } from "../guests/cpu/build.ts";
import { runGuest } from "../guests/cpu/harness.ts";

const QEMU = "qemu-system-i386";
/** QEMU runs this many times the iterations (it is much faster; the difference must dominate). */
const PEER_SCALE = 20;

function haveQemu(): boolean {
  try {
    return new Deno.Command(QEMU, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** The image with the dword after the "ITER" marker multiplied by `scale`. */
function scaled(image: Uint8Array, scale: number): Uint8Array {
  const out = image.slice();
  const at = new TextDecoder("latin1").decode(out).indexOf("ITER");
  if (at < 0) throw new Error("benchmark program has no ITER marker");
  const dv = new DataView(out.buffer, at + 4, 4);
  dv.setUint32(0, dv.getUint32(0, true) * scale, true);
  return out;
}

/** Boots `program` under QEMU (TCG) from a disk image; returns wall seconds, or null on failure. */
async function qemuSeconds(dir: string, program: Uint8Array): Promise<number | null> {
  const img = `${dir}/disk.img`;
  const disk = new Uint8Array(65 * 512);
  disk.set(buildGuest("bench_mbr"));
  disk.set(program, 512);
  await Deno.writeFile(img, disk);
  const t0 = performance.now();
  const child = new Deno.Command(QEMU, {
    args: [
      "-accel",
      "tcg",
      "-display",
      "none",
      "-serial",
      "null",
      "-monitor",
      "none",
      "-m",
      "64",
      "-no-reboot",
      "-drive",
      `file=${img},format=raw,if=ide`,
      "-device",
      "isa-debug-exit,iobase=0xf4,iosize=4",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 300_000);
  const out = await child.output();
  clearTimeout(timer);
  const s = (performance.now() - t0) / 1000;
  return out.code === 1 ? s : null; // isa-debug-exit: (0 << 1) | 1
}

/** Runs the CPU benchmarks (names filtered by `args` when they name bench_ programs). */
export async function bench(args: string[] = []): Promise<void> {
  if (!haveNasm()) {
    console.error("cpu_bench: nasm not found (apt-get install nasm); skipped");
    return;
  }
  const wanted = args.filter((a) => a.startsWith("bench_"));
  const names = wanted.length
    ? wanted
    : guestNames().filter((n) =>
      n.startsWith("bench_") && n !== "bench_mbr" && n !== "bench_empty"
    );
  const peer = haveQemu();
  if (!peer) {
    console.warn(`WARNING: ${QEMU} not found: no peer figures (apt-get install qemu-system-x86)`);
  }
  const dir = await Deno.makeTempDir({ prefix: "demu-cpu-bench-" });
  try {
    // the peer's start-up (firmware, loader): the best of three empty runs
    let empty: number | null = null;
    if (peer) {
      await qemuSeconds(dir, buildGuest("bench_empty")); // warm-up: QEMU's first start is slow
      for (let k = 0; k < 3; k++) {
        const t = await qemuSeconds(dir, buildGuest("bench_empty"));
        if (t !== null && (empty === null || t < empty)) empty = t;
      }
    }
    for (const name of names) {
      const image = buildGuest(name);
      // warm-up run so that the JIT has compiled the handlers
      runGuest(image, { maxInstructions: 2_000_000 });
      const t0 = performance.now();
      const u0 = cpuUsage();
      const r = runGuest(image, { maxInstructions: 1_000_000_000 });
      const wall = (performance.now() - t0) / 1000;
      const u1 = cpuUsage(u0);
      // CPU time of this process: the fairer figure when other work shares the cores
      const cpu = (u1.user + u1.system) / 1e6;
      const status = r.exitCode === 0 ? "ok" : `exit ${r.exitCode}`;
      const mips = (n: number, t: number) => (n / t / 1e6).toFixed(1).padStart(7);
      let line = `${name.padEnd(13)} demu: ${String(r.instructions).padStart(10)} instr ` +
        `${wall.toFixed(2)} s ${mips(r.instructions, wall)} MIPS (cpu time ${
          mips(r.instructions, cpu)
        }) ${status}`;
      if (peer && empty !== null) {
        // the best of two runs
        let q: number | null = null;
        for (let k = 0; k < 2; k++) {
          const t = await qemuSeconds(dir, scaled(image, PEER_SCALE));
          if (t !== null && (q === null || t < q)) q = t;
        }
        line += q === null
          ? `  | qemu: failed`
          : `  | qemu tcg: ${(q - empty).toFixed(2)} s for ${PEER_SCALE}x ${
            mips(r.instructions * PEER_SCALE, q - empty)
          } MIPS`;
      }
      console.log(line);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  if (Deno.args.includes("--help")) {
    console.log("usage: cpu_bench.ts [bench_NAME...]  CPU benchmarks: demu's MIPS beside QEMU TCG");
    Deno.exit(0);
  }
  await bench(Deno.args);
}
