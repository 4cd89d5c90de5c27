/**
 * demu's PC under KVM (-enable-kvm) against the real qemu-system-x86_64 -enable-kvm on the same
 * guests: nasm boot sectors from raw and qcow2 images (serial marker + ACPI power-off, PIT
 * interrupts with HLT, BIOS disk writes with and without -snapshot), and SeaBIOS reaching "No
 * bootable device" on an empty qcow2. Skipped loudly without /dev/kvm or nasm.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { buildGuest, buildGuestIso, haveNasm } from "./guests/pc/build.ts";
import { haveCommand, haveKvm, haveSeabios, plain, runDemu, runUntil } from "./guests/pc/run.ts";

const KVM = haveKvm();
const NASM = haveNasm();
const QEMU = haveCommand("qemu-system-x86_64");
const QEMU_IMG = haveCommand("qemu-img");
const SEABIOS = haveSeabios();
if (!KVM) console.warn("WARNING: /dev/kvm is not accessible: skipping demu's KVM tests");
if (!NASM) console.warn("WARNING: nasm is not installed: skipping the boot-sector guests");
if (!QEMU) console.warn("WARNING: qemu-system-x86_64 is not installed: no comparison with QEMU");
if (!SEABIOS) console.warn("WARNING: SeaBIOS (Debian seabios) is not installed: skipping boots");
const canBoot = KVM && NASM && SEABIOS;

/**
 * Common arguments for a headless run. COM1 on stdout without -nographic, so that SeaBIOS's
 * serial console (sercon, enabled by -nographic) does not interleave with the guest's output.
 */
const HEADLESS = [
  "-enable-kvm",
  "-display",
  "none",
  "-serial",
  "stdio",
  "-nic",
  "none",
  "-no-reboot",
];

async function bootBoth(image: string, marker: string, extra: string[] = []) {
  // demu and QEMU run side by side (the suite's time budget), each time-bounded.
  const [demu, q] = await Promise.all([
    runDemu([...HEADLESS, ...extra, image], { timeoutMs: 45000 }),
    QEMU
      ? runUntil(
        "qemu-system-x86_64",
        [...HEADLESS, ...extra, "-drive", `file=${image},if=ide,index=0`],
        { timeoutMs: 45000 },
      )
      : Promise.resolve(null),
  ]);
  ok(!demu.timedOut, `demu did not power off in time:\n${plain(demu.stdout)}\n${demu.stderr}`);
  strictEqual(demu.code, 0, demu.stderr);
  ok(plain(demu.stdout).includes(marker), `no ${marker} in:\n${plain(demu.stdout)}`);
  if (q) {
    strictEqual(q.code, 0, q.stderr);
    strictEqual(plain(q.stdout), plain(demu.stdout), "QEMU's serial output differs");
    console.log(
      `  ${marker}: demu ${demu.ms.toFixed(0)} ms, QEMU ${q.ms.toFixed(0)} ms (run together)`,
    );
  }
  return demu;
}

Deno.test({
  name:
    "kvm: boot sector from a raw image prints on COM1 and powers off via ACPI (qcow2 images: the other guests)",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("serial_poweroff");
    const { raw } = guest;
    await bootBoth(raw, "DEMU-BOOT-OK", []);
  },
});

Deno.test({
  name: "kvm: PIT channel 0 interrupts wake a guest sleeping in HLT",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("pit_hlt");
    const { qcow2 } = guest;
    await bootBoth(qcow2, "DEMU-PIT-OK");
  },
});

Deno.test({
  name: "kvm: BIOS disk writes reach a qcow2 image, which the real qemu-img check accepts",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("disk_write");
    const { qcow2 } = guest;
    const r = await runDemu([...HEADLESS, qcow2], { timeoutMs: 30000 });
    strictEqual(r.code, 0, r.stderr);
    ok(plain(r.stdout).includes("DEMU-DISK-WRITTEN"), plain(r.stdout));
    if (QEMU_IMG) {
      const check = await new Deno.Command("qemu-img", { args: ["check", qcow2] }).output();
      ok(check.success, new TextDecoder().decode(check.stdout));
      const dir = await Deno.makeTempDir();
      try {
        const raw = `${dir}/out.raw`;
        await new Deno.Command("qemu-img", { args: ["convert", "-O", "raw", qcow2, raw] }).output();
        const data = await Deno.readFile(raw);
        const text = new TextDecoder().decode(data.subarray(512, 512 + 17));
        strictEqual(text, "DEMU-DISK-WRITTEN");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  },
});

Deno.test({
  name: "kvm: -snapshot leaves the image byte-identical",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("disk_write");
    const { raw } = guest;
    const before = await Deno.readFile(raw);
    const r = await runDemu([...HEADLESS, "-snapshot", "-drive", `file=${raw},format=raw`], {
      timeoutMs: 30000,
    });
    strictEqual(r.code, 0, r.stderr);
    ok(plain(r.stdout).includes("DEMU-DISK-WRITTEN"), plain(r.stdout));
    deepStrictEqual(await Deno.readFile(raw), before);
  },
});

/** The lines SeaBIOS prints on the serial console on its way to giving up. */
const SEABIOS_LINES = [
  "Booting from Hard Disk...",
  "Boot failed: not a bootable disk",
  "Booting from DVD/CD...",
  "Boot failed: Could not read from CDROM (code 0003)",
  "No bootable device",
];
const hasLine = (lines: string[], l: string) => lines.some((x) => x.startsWith(l));

Deno.test({
  name: "kvm: SeaBIOS reaches 'No bootable device' on an empty qcow2, as under QEMU/KVM",
  ignore: !(KVM && SEABIOS),
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const img = `${dir}/empty.qcow2`;
      const mk = QEMU_IMG
        ? new Deno.Command("qemu-img", { args: ["create", "-f", "qcow2", img, "1G"] })
        : new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            new URL("../tools/qemu-img.ts", import.meta.url).pathname,
            "create",
            "-f",
            "qcow2",
            img,
            "1G",
          ],
        });
      ok((await mk.output()).success);
      const qemuArgs = ["-enable-kvm", "-nographic", "-nic", "none", img];
      const until = { until: "No bootable device", timeoutMs: 40000 };
      // QEMU opens the image read-only here (-snapshot) so that both can run at once.
      const [demu, q] = await Promise.all([
        runDemu(["-enable-kvm", "-nographic", "-nic", "none", img], until),
        QEMU ? runUntil("qemu-system-x86_64", [...qemuArgs, "-snapshot"], until) : null,
      ]);
      ok(demu.matched, `demu never printed 'No bootable device':\n${plain(demu.stdout)}`);
      const lines = plain(demu.stdout).split(/\r?\n/).map((l) => l.trim());
      ok(lines.some((l) => /^SeaBIOS \(version .*\)$/.test(l)), "no SeaBIOS banner");
      for (const l of SEABIOS_LINES) ok(hasLine(lines, l), `demu: missing '${l}'`);
      if (q) {
        ok(q.matched, "QEMU never printed 'No bootable device'");
        const qlines = plain(q.stdout).split(/\r?\n/).map((l) => l.trim());
        for (const l of SEABIOS_LINES) ok(hasLine(qlines, l), `QEMU: missing '${l}'`);
        // The whole serial console up to the last words is the same text as QEMU's.
        const upTo = (s: string) => s.slice(0, s.indexOf("No bootable device"));
        strictEqual(upTo(plain(demu.stdout)), upTo(plain(q.stdout)));
        console.log(
          `  to 'No bootable device': demu ${demu.ms.toFixed(0)} ms, QEMU ${
            q.ms.toFixed(0)
          } ms (run together)`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("kvm: without /dev/kvm, QEMU's message and exit status 1", async () => {
  const r = await runDemu(["-enable-kvm", "-display", "none", "-nic", "none"], {
    timeoutMs: 20000,
    env: { DEMU_KVM_DEVICE: "/nonexistent/kvm" },
  });
  strictEqual(r.code, 1);
  const lines = r.stderr.trim().split("\n");
  strictEqual(lines[0], "Could not access KVM kernel module: No such file or directory");
  strictEqual(lines[1], "qemu-system-x86_64: failed to initialize kvm: No such file or directory");
});

Deno.test({
  name: "kvm: real -> protected mode -> MMIO -> long mode, as QEMU/KVM prints it",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("modes");
    const { qcow2 } = guest;
    const d = await bootBoth(qcow2, "REAL PROT MMIO LONG");
    strictEqual(plain(d.stdout), "REAL PROT MMIO LONG\r\n");
  },
});

Deno.test({
  name: "kvm: El Torito boot from -cdrom (ATAPI) with -boot d, as under QEMU/KVM",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuestIso("serial_poweroff");
    const iso = guest.iso;
    const d = await runDemu([...HEADLESS, "-cdrom", iso, "-boot", "d"], { timeoutMs: 30000 });
    strictEqual(d.code, 0, d.stderr);
    strictEqual(plain(d.stdout), "DEMU-BOOT-OK\r\n");
    strictEqual(d.stderr, "", "no raw-probing warning for a read-only CD image");
    if (QEMU) {
      const q = await runUntil("qemu-system-x86_64", [...HEADLESS, "-cdrom", iso, "-boot", "d"], {
        timeoutMs: 30000,
      });
      strictEqual(q.code, 0);
      strictEqual(plain(q.stdout), plain(d.stdout));
    }
  },
});

Deno.test({
  name: "serial: -serial unix:PATH,server=on waits for a client, which gets the guest's output",
  ignore: !(NASM && SEABIOS),
  async fn() {
    await using guest = await buildGuest("serial_poweroff");
    const { qcow2 } = guest;
    const dir = await Deno.makeTempDir();
    try {
      const sock = `${dir}/com1.sock`;
      // (the interpreter: this test is about the socket, and it boots faster here)
      const accel: string[] = [];
      const run = runDemu(
        [...accel, "-display", "none", "-nic", "none", "-serial", `unix:${sock},server=on`, qcow2],
        { timeoutMs: 60000 },
      );
      let conn: Deno.Conn | null = null;
      for (let i = 0; i < 200 && !conn; i++) {
        try {
          conn = await Deno.connect({ transport: "unix", path: sock });
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      ok(conn, "demu never listened on the socket");
      let text = "";
      const buf = new Uint8Array(256);
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      conn.close();
      const r = await run;
      strictEqual(r.code, 0, r.stderr);
      strictEqual(text, "DEMU-BOOT-OK\r\n");
      ok(r.stderr.includes("info: QEMU waiting for connection on: disconnected:unix:"), r.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "kvm: timer interrupts reach a guest spinning without exits (the SIGALRM kick)",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("pit_spin");
    const { qcow2 } = guest;
    await bootBoth(qcow2, "DEMU-SPIN-OK");
  },
});

Deno.test({
  name: "monitor: Ctrl-A C, system_reset reboots SeaBIOS; Ctrl-A X quits (-nographic mux)",
  ignore: !SEABIOS,
  async fn() {
    const dir = await Deno.makeTempDir();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../emu/main.ts", import.meta.url).pathname,
        ...(KVM ? ["-enable-kvm"] : []),
        "-nographic",
        "-nic",
        "none",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const killer = setTimeout(() => Deno.kill(child.pid, "SIGKILL"), 90000);
    try {
      const w = child.stdin.getWriter();
      const reader = child.stdout.getReader();
      let out = "";
      const waitFor = async (text: string, count = 1) => {
        while (plain(out).split(text).length - 1 < count) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`output ended before '${text}':\n${plain(out)}`);
          out += new TextDecoder().decode(value);
        }
      };
      const send = (s: string) => w.write(new TextEncoder().encode(s));
      await waitFor("No bootable device");
      await send("\x01c");
      await waitFor("(qemu) ");
      await send("info status\r");
      await waitFor("VM status: running");
      await send("system_reset\r");
      await send("\x01c"); // back to the guest console
      await waitFor("No bootable device", 2);
      strictEqual(plain(out).split("SeaBIOS (version").length - 1, 2);
      await send("\x01x");
      const st = await child.status;
      strictEqual(st.code, 0);
      reader.releaseLock();
      await w.close().catch(() => {});
    } finally {
      clearTimeout(killer);
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "kvm: an internal error (code fetched from MMIO) is reported with registers, exit 1",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("exec_mmio");
    const { qcow2 } = guest;
    const args = ["-enable-kvm", "-display", "none", "-serial", "stdio", "-nic", "none"];
    const d = await runDemu([...args, qcow2], { timeoutMs: 45000 });
    ok(!d.timedOut, "demu hung on a KVM internal error");
    strictEqual(d.code, 1);
    strictEqual(plain(d.stdout), "JUMPING-TO-MMIO\r\n");
    const err = d.stderr.split("\n");
    strictEqual(err[0], "KVM internal error. Suberror: 1");
    ok(err.includes("emulation failure"), d.stderr);
    ok(/^RIP=0000000000000000 /m.test(d.stderr) && /^CS =a000 /m.test(d.stderr), d.stderr);
    if (QEMU) {
      // QEMU prints the same report, then stays paused: stop it once it has spoken.
      const q = await runUntil("qemu-system-x86_64", [...args, "-drive", `file=${qcow2},if=ide`], {
        until: "emulation failure",
        timeoutMs: 45000,
      });
      ok(q.matched, q.stderr);
      ok(q.stderr.includes("KVM internal error. Suberror: 1\n"), q.stderr);
    }
  },
});

Deno.test({
  name: "kvm: -m 4G puts 1 GiB above 4 GiB (e820 as QEMU's) and the guest can use it",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("high_ram");
    const dc = `${guest.dir}/debugcon.txt`;
    const args = [...HEADLESS, "-m", "4G"];
    const [d, q] = await Promise.all([
      runDemu([...args, "-debugcon", `file:${dc}`, guest.qcow2], { timeoutMs: 45000 }),
      QEMU
        ? runUntil("qemu-system-x86_64", [...args, "-drive", `file=${guest.qcow2},if=ide`], {
          timeoutMs: 45000,
        })
        : Promise.resolve(null),
    ]);
    strictEqual(d.code, 0, d.stderr);
    strictEqual(plain(d.stdout), "HIGH-RAM-OK\r\n");
    if (q) strictEqual(plain(q.stdout), plain(d.stdout));
    const log = await Deno.readTextFile(dc);
    ok(log.includes("qemu/e820: addr 0x0000000000000000 len 0x00000000c0000000 [RAM]"), log);
    ok(log.includes("qemu/e820: addr 0x0000000100000000 len 0x0000000040000000 [RAM]"), log);
  },
});
