/**
 * CPU interpreter speed: guest programs (tests/guests/cpu/bench_*.asm) run on the bare CPU;
 * prints instructions retired, seconds and MIPS for each.
 *
 *     deno run -A tests/bench/cpu_bench.ts [NAME...]
 */

import { buildGuest, guestNames, haveNasm } from "../guests/cpu/build.ts";
import { runGuest } from "../guests/cpu/harness.ts";
import { cpuUsage } from "node:process";

if (Deno.args.includes("--help")) {
  console.log("usage: cpu_bench.ts [bench_NAME...]  run the CPU benchmarks and print MIPS");
  Deno.exit(0);
}
if (!haveNasm()) {
  console.error("cpu_bench: nasm not found (apt-get install nasm)");
  Deno.exit(1);
}
const names = Deno.args.length ? Deno.args : guestNames().filter((n) => n.startsWith("bench_"));
for (const name of names) {
  const image = buildGuest(name);
  // warm-up run so that the JIT has compiled the handlers
  runGuest(image, { maxInstructions: 2_000_000 });
  const t0 = performance.now();
  const u0 = cpuUsage();
  const r = runGuest(image, { maxInstructions: 500_000_000 });
  const wall = (performance.now() - t0) / 1000;
  const u1 = cpuUsage(u0);
  // CPU time of this process: the fair figure when other work shares the cores
  const cpu = (u1.user + u1.system) / 1e6;
  const status = r.exitCode === 0 ? "ok" : `exit ${r.exitCode}`;
  const mips = (t: number) => (r.instructions / t / 1e6).toFixed(1).padStart(6);
  console.log(
    `${name.padEnd(14)} ${String(r.instructions).padStart(10)} instructions  ` +
      `wall ${wall.toFixed(2)} s ${mips(wall)} MIPS  cpu ${cpu.toFixed(2)} s ${
        mips(cpu)
      } MIPS  ${status}`,
  );
}
