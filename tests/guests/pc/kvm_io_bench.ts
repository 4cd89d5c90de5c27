/**
 * Benchmark: the KVM IO-exit round trip. A real-mode guest loops on `out 0x80, al`; demu's run
 * loop (KvmAccel, with the port served through the Machine's I/O bus) and a C program doing the
 * same with raw ioctls each count N exits. Prints exits/s for both and the ratio.
 *
 *   deno run -A tests/guests/pc/kvm_io_bench.ts [N]
 */
import { KvmAccel, KvmVm } from "../../../emu/kvm/accel.ts";
import { Machine } from "../../../emu/machine.ts";
import { hostTime } from "../../../emu/hw/clock.ts";

const here = new URL(".", import.meta.url).pathname;
const root = new URL("../../../", import.meta.url).pathname;

/** demu: exits per second through KvmAccel.run and the I/O bus. */
export async function demuExitsPerSecond(n: number): Promise<number> {
  const vm = KvmVm.create(1 << 20);
  const m = new Machine(new Uint8Array(vm.ram.buffer), hostTime);
  m.ram.set([0xe6, 0x80, 0xeb, 0xfc], 0x1000);
  let count = 0;
  let t0 = 0;
  m.io.register(0x80, 1, {
    read: () => 0xff,
    write: () => {
      if (count++ === 0) t0 = performance.now();
      if (count > n) m.stop({ kind: "poweroff" });
    },
  });
  const a = new KvmAccel(m, vm);
  // Start in real mode at 0000:1000 instead of the reset vector.
  const s = a.vcpu.getSregs();
  s.setBigUint64(0, 0n, true); // cs.base
  s.setUint16(12, 0, true); // cs.selector
  a.vcpu.setSregs(s);
  const r = a.vcpu.getRegs();
  r[16] = 0x1000n;
  a.vcpu.setRegs(r);
  await a.run();
  const secs = (performance.now() - t0) / 1000;
  a.close();
  return n / secs;
}

/** The C baseline (built with cc into .cache), or null without a C compiler. */
export async function cExitsPerSecond(n: number): Promise<number | null> {
  const bin = `${root}.cache/guests/pc/kvm_io_baseline`;
  await Deno.mkdir(`${root}.cache/guests/pc`, { recursive: true });
  try {
    const cc = await new Deno.Command("cc", {
      args: ["-O2", "-o", bin, `${here}kvm_io_baseline.c`],
    }).output();
    if (!cc.success) return null;
  } catch {
    return null;
  }
  const out = await new Deno.Command(bin, { args: [String(n)] }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return Number(new TextDecoder().decode(out.stdout).trim());
}

if (import.meta.main) {
  const n = Number(Deno.args[0] ?? 100000);
  const c = await cExitsPerSecond(n);
  const d = await demuExitsPerSecond(n);
  console.log(`IO-exit round trip, ${n} exits:`);
  console.log(`  C baseline: ${c === null ? "no C compiler" : `${c.toFixed(0)} exits/s`}`);
  console.log(
    `  demu:       ${d.toFixed(0)} exits/s${c ? ` (${(d / c * 100).toFixed(1)}% of C)` : ""}`,
  );
  Deno.exit(0);
}
