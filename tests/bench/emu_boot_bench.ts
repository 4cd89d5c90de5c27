/**
 * Boot times on the interpreter beside the real qemu-system-x86_64 -accel tcg, same run:
 * start to SeaBIOS's "No bootable device" on an empty qcow2, and start to the Linux guest's
 * userspace marker (the isolinux CD of tests/guests/linux/build.ts). The PC issue's target:
 * demu at most 3x QEMU's time.
 *
 *   deno task bench emu_boot
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

function line(what: string, d: { ms: number; why: string }, q: { ms: number; why: string }) {
  const f = (x: { ms: number; why: string }) =>
    Number.isNaN(x.ms) ? `not reached (${x.why.slice(0, 200)})` : `${(x.ms / 1000).toFixed(2)} s`;
  const ratio = !Number.isNaN(d.ms) && !Number.isNaN(q.ms)
    ? ` = ${(d.ms / q.ms).toFixed(2)}x QEMU (target <= 3x)`
    : "";
  console.log(`${what}: demu ${f(d)}, QEMU ${QEMU ? f(q) : "not installed"}${ratio}`);
}

export async function bench(_args: string[]): Promise<void> {
  if (!QEMU) console.warn("!!! qemu-system-x86_64 is not installed: only demu measured !!!");
  const none = { ms: NaN, why: "not installed" };
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
    const q1 = QEMU ? await timeTo("qemu", [img], nb, 120_000) : none;
    const d1 = await timeTo("demu", [img], nb, 120_000);
    line("Start to 'No bootable device' (empty qcow2, TCG)", d1, q1);

    const why = missingInputs();
    if (why) {
      console.warn(`!!! the Linux guest cannot be built (${why}): Linux boot not measured !!!`);
      return;
    }
    const g = await buildLinuxGuest();
    const q2 = QEMU ? await timeTo("qemu", ["-cdrom", g.iso], MARKER, 600_000) : none;
    const d2 = await timeTo("demu", ["-cdrom", g.iso], MARKER, 1_200_000);
    line("Start to the Linux userspace marker (isolinux CD, TCG)", d2, q2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await bench(Deno.args);
