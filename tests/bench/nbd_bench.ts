/**
 * demu's qemu-nbd beside QEMU's, same machine, same run, through real clients:
 *
 * - nbdcopy of a 1 GiB qcow2 export (fully written) to `null:` (read throughput);
 * - nbdcopy of a 1 GiB raw file into a raw export (write throughput);
 * - the real `qemu-img bench` with 4 KiB requests, 32 deep, reads then writes, over nbd:// (TCP)
 *   and nbd+unix://, scattered across the disk (a large step between requests).
 *
 * Each case runs ROUNDS times alternating the two servers; the best of each is compared (the
 * machine is shared). Prints both figures and the ratio demu/QEMU beside the target
 * (>= 0.9x for nbdcopy, >= 0.8x for 4 KiB I/O). Runs alone (`deno run -A tests/bench/nbd_bench.ts`)
 * or from tests/bench/run.ts. NBD_BENCH_MIB changes the image size (default 1024).
 */
import {
  DEMU_QEMU_NBD,
  freePort,
  have,
  run,
  type Server,
  startServer,
  tempDir,
} from "../../tools/qemu_nbd/testing.ts";

const MiB = 1 << 20;
const SIZE_MIB = Number(Deno.env.get("NBD_BENCH_MIB") ?? 1024);
const ROUNDS = Number(Deno.env.get("BENCH_ROUNDS") ?? 3);
const BENCH_OPS = Number(Deno.env.get("NBD_BENCH_OPS") ?? 100000);
/** QEMU's TCP figure is a few hundred IOPS (see below): fewer requests keep the run short. */
const BENCH_OPS_TCP = Number(Deno.env.get("NBD_BENCH_OPS_TCP") ?? 4000);

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}${r.stdout}`);
}

async function timed(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  await must(cmd, args);
  return (performance.now() - t0) / 1000;
}

let sockets = 0;

function serve(
  who: "demu" | "qemu",
  fmt: string,
  image: string,
  extra: string[],
  transport: "tcp" | "unix",
  dir: string,
) {
  let at: { port?: number; socket?: string };
  let addr: string[];
  let uri: string;
  if (transport === "tcp") {
    at = { port: freePort() };
    addr = ["-b", "127.0.0.1", "-p", String(at.port)];
    uri = `nbd://127.0.0.1:${at.port}`;
  } else {
    at = { socket: `${dir}/s${sockets++}.sock` };
    addr = ["-k", at.socket!];
    uri = `nbd+unix:///?socket=${at.socket}`;
  }
  const args = ["-t", "-e", "8", "-f", fmt, ...addr, ...extra, image];
  const start = who === "demu"
    ? startServer(Deno.execPath(), ["run", "-A", "--quiet", DEMU_QEMU_NBD, ...args], at)
    : startServer("qemu-nbd", args, at);
  return start.then((s: Server) => ({ s, uri }));
}

interface Row {
  name: string;
  unit: string;
  demu: number;
  qemu: number;
  target: number;
}

/** Best (highest) figure of each server over ROUNDS alternating runs. */
async function measure(
  name: string,
  unit: string,
  target: number,
  once: (who: "demu" | "qemu") => Promise<number>,
): Promise<Row> {
  const best = { demu: 0, qemu: 0 };
  for (let r = 0; r < ROUNDS; r++) {
    for (const who of ["qemu", "demu"] as const) {
      best[who] = Math.max(best[who], await once(who));
    }
  }
  const row = { name, unit, target, ...best };
  print(row);
  return row;
}

function print(r: Row): void {
  const ratio = r.demu / r.qemu;
  console.log(
    `${r.name.padEnd(44)} demu ${r.demu.toFixed(1).padStart(8)} ${r.unit}  qemu ${
      r.qemu.toFixed(1).padStart(8)
    } ${r.unit}  ratio ${ratio.toFixed(2)}x (target >= ${r.target}x) ${
      ratio >= r.target ? "ok" : "BELOW TARGET"
    }`,
  );
}

/** Runs the NBD benchmarks; returns the rows printed. */
export async function bench(_filters: string[] = []): Promise<Row[]> {
  const missing = ["qemu-nbd", "qemu-img", "qemu-io", "nbdcopy"].filter((p) => !have(p));
  if (missing.length) {
    console.error(`!!! nbd_bench SKIPPED: ${missing.join(", ")} not installed !!!`);
    return [];
  }
  const [dir, cleanup] = await tempDir("demu-nbd-bench-");
  const rows: Row[] = [];
  try {
    const size = `${SIZE_MIB}M`;
    const bytes = SIZE_MIB * MiB;
    // A fully written qcow2 and a raw source file, made by the real tools.
    const qcow2 = `${dir}/src.qcow2`;
    await must("qemu-img", ["create", "-q", "-f", "qcow2", qcow2, size]);
    await must("qemu-io", ["-f", "qcow2", "-c", `write -P 0x5a 0 ${size}`, qcow2]);
    const raw = `${dir}/src.raw`;
    await must("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", qcow2, raw]);

    rows.push(
      await measure("nbdcopy qcow2 export -> null:", "MiB/s", 0.9, async (who) => {
        const { s, uri } = await serve(who, "qcow2", qcow2, ["-r"], "tcp", dir);
        try {
          return bytes / MiB / await timed("nbdcopy", [uri, "null:"]);
        } finally {
          await s.stop();
        }
      }),
    );

    const target = `${dir}/target.raw`;
    rows.push(
      await measure("nbdcopy raw file -> raw export", "MiB/s", 0.9, async (who) => {
        await must("qemu-img", ["create", "-q", "-f", "raw", target, size]);
        const { s, uri } = await serve(who, "raw", target, [], "tcp", dir);
        try {
          return bytes / MiB / await timed("nbdcopy", [raw, uri]);
        } finally {
          await s.stop();
          await Deno.remove(target);
        }
      }),
    );

    // Scattered 4 KiB requests: a step that is not a power of two walks the whole disk.
    const step = String(4096 * 997);
    // QEMU 7.2's NBD over TCP stalls on small pipelined requests (delayed ACKs), so the
    // 4 KiB figures are taken over a UNIX socket too, where neither side waits on the network.
    for (const transport of ["tcp", "unix"] as const) {
      for (const write of [false, true]) {
        rows.push(
          await measure(
            `qemu-img bench 4k ${write ? "writes" : "reads"} qd32 nbd ${transport}`,
            "kIOPS",
            0.8,
            async (who) => {
              const extra = write ? [] : ["-r"];
              const { s, uri } = await serve(who, "raw", raw, extra, transport, dir);
              try {
                const ops = transport === "tcp" ? BENCH_OPS_TCP : BENCH_OPS;
                const args = ["bench", "-f", "raw", "-c", String(ops), "-d", "32"];
                args.push("-s", "4096", "-S", step, ...(write ? ["-w"] : []), uri);
                return ops / 1000 / await timed("qemu-img", args);
              } finally {
                await s.stop();
              }
            },
          ),
        );
      }
    }
  } finally {
    await cleanup();
  }
  return rows;
}

if (import.meta.main) await bench(Deno.args);
