/**
 * Boot times on the interpreter beside the real qemu-system-x86_64 -accel tcg, same run:
 * start to SeaBIOS's "No bootable device" on an empty qcow2, and start to the Linux guest's
 * userspace marker (the isolinux CD of tests/guests/linux/build.ts). The PC issue's target:
 * demu at most 3x QEMU's time. Each measurement runs QEMU, then demu, `--runs N` times (default
 * 3; this host's speed drifts by 20% within minutes, so each pair shares its minute) and
 * prints every pair and the median of the ratios.
 *
 *   deno task bench emu_boot [--runs N]
 */
import { buildLinuxGuest, MARKER, missingInputs } from "../guests/linux/build.ts";
import { haveCommand, runDemu, type RunResult, runUntil } from "../guests/pc/run.ts";

const QEMU = haveCommand("qemu-system-x86_64");
const ARGS = ["-accel", "tcg", "-nographic", "-nic", "none", "-no-reboot"];

async function timeTo(who: "demu" | "qemu", args: string[], until: string, timeoutMs: number) {
  const all = [...ARGS, ...args];
  const r: RunResult = who === "demu"
    ? await runDemu(all, { until, timeoutMs })
    : await runUntil("qemu-system-x86_64", all, { until, timeoutMs });
  if (!r.matched) {
    return { ms: NaN, why: `${r.timedOut ? "timed out" : `exit ${r.code}`}: ${r.stderr.trim()}` };
  }
  return { ms: r.ms, why: "" };
}

type Time = { ms: number; why: string };

function line(what: string, d: Time, q: Time): number {
  const f = (x: Time) =>
    Number.isNaN(x.ms) ? `not reached (${x.why.slice(0, 200)})` : `${(x.ms / 1000).toFixed(2)} s`;
  const r = d.ms / q.ms;
  const ratio = Number.isNaN(r) ? "" : ` = ${r.toFixed(2)}x QEMU (target <= 3x)`;
  console.log(`${what}: demu ${f(d)}, QEMU ${QEMU ? f(q) : "not installed"}${ratio}`);
  return r;
}

/** QEMU then demu, `runs` times; prints each pair and the median ratio. */
async function measure(what: string, runs: number, args: string[], until: string, ms: number) {
  const none = { ms: NaN, why: "not installed" };
  const ratios: number[] = [];
  for (let n = 1; n <= runs; n++) {
    const q = QEMU ? await timeTo("qemu", args, until, ms) : none;
    const d = await timeTo("demu", args, until, 2 * ms);
    ratios.push(line(`${what}, run ${n}/${runs}`, d, q));
  }
  const ok = ratios.filter((r) => !Number.isNaN(r)).sort((a, b) => a - b);
  if (ok.length > 0) {
    console.log(
      `${what}: median ${ok[Math.floor((ok.length - 1) / 2)].toFixed(2)}x QEMU over ${ok.length} ` +
        `run${ok.length > 1 ? "s" : ""} (target <= 3x)`,
    );
  }
}

export async function bench(args: string[]): Promise<void> {
  if (!QEMU) console.warn("!!! qemu-system-x86_64 is not installed: only demu measured !!!");
  const at = args.indexOf("--runs");
  const runs = at >= 0 ? Number(args[at + 1]) : 3;
  if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs needs a whole number >= 1");
  const dir = await Deno.makeTempDir({ prefix: "demu-boot-bench-" });
  try {
    const img = `${dir}/empty.qcow2`;
    const c = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../../tools/qemu-img.ts", import.meta.url).pathname, "create"]
        .concat(["-q", "-f", "qcow2", img, "1G"]),
      stdout: "null",
    }).output();
    if (!c.success) throw new Error("qemu-img create failed");
    const nb = "No bootable device";
    await measure("Start to 'No bootable device' (empty qcow2, TCG)", runs, [img], nb, 120_000);

    const why = missingInputs();
    if (why) {
      console.warn(`!!! the Linux guest cannot be built (${why}): Linux boot not measured !!!`);
      return;
    }
    const g = await buildLinuxGuest();
    const what = "Start to the Linux userspace marker (isolinux CD, TCG)";
    await measure(what, runs, ["-cdrom", g.iso], MARKER, 600_000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await bench(Deno.args);
