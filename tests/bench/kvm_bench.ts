/**
 * Benchmarks of demu's PC beside the real qemu-system-x86_64, measured in the same run:
 * the KVM IO-exit round trip (demu's run loop vs a C loop doing the same ioctls), and the time
 * to SeaBIOS's "No bootable device" on an empty qcow2 under KVM and under the interpreter.
 *
 *   deno task bench kvm
 */
import { cExitsPerSecond, demuExitsPerSecond } from "../guests/pc/kvm_io_bench.ts";
import { haveCommand, haveKvm, runDemu, runUntil } from "../guests/pc/run.ts";

const QEMU = haveCommand("qemu-system-x86_64");

async function emptyImage(dir: string): Promise<string> {
  const img = `${dir}/empty.qcow2`;
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../tools/qemu-img.ts", import.meta.url).pathname,
      "create",
      "-f",
      "qcow2",
      img,
      "1G",
    ],
    stdout: "null",
  }).output();
  if (!r.success) throw new Error("qemu-img create failed");
  return img;
}

/** Median of n runs of f (ms). */
async function median(n: number, f: () => Promise<number>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) xs.push(await f());
  xs.sort((a, b) => a - b);
  return xs[Math.floor(n / 2)];
}

async function timeToNoBootable(cmd: "demu" | "qemu", accel: string, img: string) {
  const args = ["-accel", accel, "-nographic", "-nic", "none", img];
  const r = cmd === "demu"
    ? await runDemu(args, { until: "No bootable device", timeoutMs: 120000 })
    : await runUntil("qemu-system-x86_64", args, {
      until: "No bootable device",
      timeoutMs: 120000,
    });
  if (!r.matched) throw new Error(`${cmd} (${accel}) never reached 'No bootable device'`);
  return r.ms;
}

export async function bench(_args: string[]): Promise<void> {
  const kvm = haveKvm();
  if (kvm) {
    const n = 100000;
    const c = await cExitsPerSecond(n);
    const d = await demuExitsPerSecond(n);
    console.log(`KVM IO-exit round trip (${n} OUTs):`);
    console.log(
      `  C loop (raw ioctls)   ${c === null ? "no C compiler" : `${c.toFixed(0)} exits/s`}`,
    );
    console.log(
      `  demu (KvmAccel + bus) ${d.toFixed(0)} exits/s` +
        (c ? `  = ${(d / c * 100).toFixed(0)}% of C` : ""),
    );
  } else {
    console.log("KVM: /dev/kvm not accessible; KVM figures skipped");
  }
  const dir = await Deno.makeTempDir();
  try {
    const img = await emptyImage(dir);
    for (const accel of kvm ? ["kvm", "tcg"] : ["tcg"]) {
      const d = await median(3, () => timeToNoBootable("demu", accel, img));
      const q = QEMU ? await median(3, () => timeToNoBootable("qemu", accel, img)) : NaN;
      console.log(
        `Time to 'No bootable device' (-accel ${accel}, median of 3): demu ${d.toFixed(0)} ms` +
          (QEMU ? `, QEMU ${q.toFixed(0)} ms = ${(d / q).toFixed(2)}x` : ""),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await bench(Deno.args);
