/**
 * demu's PC on the interpreter (-accel tcg, the default) beside the real qemu-system-x86_64
 * -accel tcg: nasm boot sectors from raw and qcow2 images, SeaBIOS to "No bootable device" on
 * serial and on the VGA text screen drawn in the terminal, -snapshot, and the HMP monitor.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { buildGuest, buildGuestIso, haveNasm } from "./guests/pc/build.ts";
import { haveCommand, haveKvm, haveSeabios, plain, runDemu, runUntil } from "./guests/pc/run.ts";

const NASM = haveNasm();
const QEMU = haveCommand("qemu-system-x86_64");
const QEMU_IMG = haveCommand("qemu-img");
const SEABIOS = haveSeabios();
if (!NASM) console.warn("WARNING: nasm is not installed: skipping the boot-sector guests");
if (!SEABIOS) console.warn("WARNING: SeaBIOS (Debian seabios) is not installed: skipping boots");
if (!QEMU) console.warn("WARNING: qemu-system-x86_64 is not installed: no comparison with QEMU");
const canBoot = NASM && SEABIOS;

const HEADLESS = ["-display", "none", "-serial", "stdio", "-nic", "none", "-no-reboot"];

async function emptyQcow2(dir: string): Promise<string> {
  const img = `${dir}/empty.qcow2`;
  const cmd = QEMU_IMG
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
  ok((await cmd.output()).success);
  return img;
}

for (
  const [guest, marker] of [
    ["serial_poweroff", "DEMU-BOOT-OK"],
    ["pit_hlt", "DEMU-PIT-OK"],
    ["pit_spin", "DEMU-SPIN-OK"],
  ]
) {
  for (const fmt of ["img", "qcow2"]) {
    Deno.test({
      name: `tcg: ${guest} from ${fmt === "img" ? "raw" : "qcow2"}: marker on COM1, ACPI power-off`,
      ignore: !canBoot,
      async fn() {
        await using paths = await buildGuest(guest);
        const image = fmt === "img" ? paths.raw : paths.qcow2;
        const d = await runDemu([...HEADLESS, "-drive", `file=${image},if=ide`], {
          timeoutMs: 60000,
        });
        ok(!d.timedOut, `demu did not power off:\n${plain(d.stdout)}\n${d.stderr}`);
        strictEqual(d.code, 0, d.stderr);
        strictEqual(plain(d.stdout), `${marker}\r\n`);
        if (haveKvm()) {
          // The same guest under KVM prints the same bytes.
          const k = await runDemu(["-enable-kvm", ...HEADLESS, "-drive", `file=${image},if=ide`], {
            timeoutMs: 60000,
          });
          strictEqual(k.code, 0, k.stderr);
          strictEqual(k.stdout, d.stdout);
        }
      },
    });
  }
}

Deno.test({
  name: "tcg: BIOS disk writes, and -snapshot keeps the image byte-identical",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("disk_write");
    const { raw } = guest;
    const before = await Deno.readFile(raw);
    const s = await runDemu([...HEADLESS, "-snapshot", "-drive", `file=${raw},format=raw`], {
      timeoutMs: 60000,
    });
    strictEqual(s.code, 0, s.stderr);
    strictEqual(plain(s.stdout), "DEMU-DISK-WRITTEN\r\n");
    deepStrictEqual(await Deno.readFile(raw), before);
    const w = await runDemu([...HEADLESS, "-drive", `file=${raw},format=raw`], {
      timeoutMs: 60000,
    });
    strictEqual(w.code, 0, w.stderr);
    const after = await Deno.readFile(raw);
    strictEqual(new TextDecoder().decode(after.subarray(512, 529)), "DEMU-DISK-WRITTEN");
    deepStrictEqual(after.subarray(0, 512), before.subarray(0, 512));
  },
});

Deno.test({
  name: "tcg: SeaBIOS reaches 'No bootable device' (serial), timed beside QEMU -accel tcg",
  ignore: !SEABIOS,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const img = await emptyQcow2(dir);
      const d = await runDemu(["-nographic", "-nic", "none", img], {
        until: "No bootable device",
        timeoutMs: 90000,
      });
      ok(d.matched, `demu never printed 'No bootable device':\n${plain(d.stdout)}\n${d.stderr}`);
      const text = plain(d.stdout);
      ok(/SeaBIOS \(version [^)]+\)/.test(text));
      ok(text.includes("Booting from Hard Disk..."));
      ok(text.includes("Boot failed: not a bootable disk"));
      if (QEMU) {
        const q = await runUntil(
          "qemu-system-x86_64",
          ["-accel", "tcg", "-nographic", "-nic", "none", img],
          { until: "No bootable device", timeoutMs: 90000 },
        );
        ok(q.matched);
        const upTo = (s: string) => s.slice(0, s.indexOf("No bootable device"));
        strictEqual(upTo(text), upTo(plain(q.stdout)));
        console.log(
          `  to 'No bootable device' (tcg): demu ${d.ms.toFixed(0)} ms, QEMU ${q.ms.toFixed(0)} ms`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "tcg: without -nographic the terminal shows the VGA text screen's words",
  ignore: !SEABIOS,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const img = await emptyQcow2(dir);
      const d = await runDemu(["-nic", "none", img], {
        until: "No bootable device",
        timeoutMs: 90000,
      });
      ok(d.matched, `the screen never showed 'No bootable device':\n${plain(d.stdout)}`);
      ok(plain(d.stdout).includes("SeaBIOS (version"));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "monitor: -monitor stdio answers info status and quits",
  ignore: !SEABIOS,
  async fn() {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../emu/main.ts", import.meta.url).pathname,
        "-display",
        "none",
        "-nic",
        "none",
        "-monitor",
        "stdio",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const killer = setTimeout(() => Deno.kill(child.pid, "SIGKILL"), 30000);
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("info status\nquit\n"));
    await w.close();
    const out = await child.output();
    clearTimeout(killer);
    strictEqual(out.code, 0);
    const text = new TextDecoder().decode(out.stdout);
    ok(text.startsWith("QEMU 7.2.0 monitor - type 'help' for more information"), text);
    ok(text.includes("VM status: running"), text);
  },
});

Deno.test({
  name: "tcg: real -> protected mode -> MMIO -> paging (long mode when the CPU has it)",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("modes");
    const { qcow2 } = guest;
    const d = await runDemu([...HEADLESS, "-drive", `file=${qcow2},if=ide`], { timeoutMs: 60000 });
    strictEqual(d.code, 0, d.stderr);
    const out = plain(d.stdout);
    ok(
      out === "REAL PROT MMIO PAGING\r\n" || out === "REAL PROT MMIO LONG\r\n",
      JSON.stringify(out),
    );
    if (QEMU && out.includes("LONG")) {
      const q = await runUntil("qemu-system-x86_64", [
        "-accel",
        "tcg",
        ...HEADLESS,
        "-drive",
        `file=${qcow2},if=ide`,
      ], { timeoutMs: 60000 });
      strictEqual(plain(q.stdout), out);
    }
  },
});

Deno.test({
  name: "tcg: El Torito boot from -cdrom (ATAPI) with -boot d",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuestIso("serial_poweroff");
    const iso = guest.iso;
    const d = await runDemu([...HEADLESS, "-cdrom", iso, "-boot", "d"], { timeoutMs: 60000 });
    strictEqual(d.code, 0, d.stderr);
    strictEqual(plain(d.stdout), "DEMU-BOOT-OK\r\n");
  },
});

for (const accel of ["tcg", "kvm"]) {
  Deno.test({
    name: `keyboard: terminal keys reach the guest's INT 16h through the 8042 (${accel})`,
    ignore: !canBoot || (accel === "kvm" && !haveKvm()),
    async fn() {
      await using guest = await buildGuest("keyboard_echo");
      const { qcow2 } = guest;
      const dir = await Deno.makeTempDir();
      const serial = `${dir}/serial.txt`;
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../emu/main.ts", import.meta.url).pathname,
          "-accel",
          accel,
          "-serial",
          `file:${serial}`,
          "-nic",
          "none",
          "-no-reboot",
          qcow2,
        ],
        stdin: "piped",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const killer = setTimeout(() => Deno.kill(child.pid, "SIGKILL"), 60000);
      try {
        // Type only once the guest is waiting (the BIOS resets the keyboard before that).
        const t0 = Date.now();
        while (Date.now() - t0 < 50000) {
          const text = await Deno.readTextFile(serial).catch(() => "");
          if (text.includes("KEYS:")) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        const w = child.stdin.getWriter();
        await w.write(new TextEncoder().encode("Hello, demu!\r"));
        await w.close();
        const st = await child.status;
        strictEqual(st.code, 0);
        strictEqual(await Deno.readTextFile(serial), "KEYS:Hello, demu!\r\n");
      } finally {
        clearTimeout(killer);
        await child.stderr.cancel();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "tcg: boots from an nbd:// disk served by the real qemu-nbd",
  ignore: !canBoot || !haveCommand("qemu-nbd"),
  async fn() {
    await using guest = await buildGuest("serial_poweroff");
    const { qcow2 } = guest;
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const nbd = new Deno.Command("qemu-nbd", {
      args: ["-f", "qcow2", "-r", "-b", "127.0.0.1", "-p", String(port), "-x", "boot", qcow2],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      let up = false;
      for (let i = 0; i < 100 && !up; i++) {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          up = true;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      ok(up, "qemu-nbd did not start");
      const d = await runDemu(
        [...HEADLESS, "-drive", `file=nbd://127.0.0.1:${port}/boot,format=raw`],
        { timeoutMs: 60000 },
      );
      strictEqual(d.code, 0, d.stderr);
      strictEqual(plain(d.stdout), "DEMU-BOOT-OK\r\n");
    } finally {
      try {
        Deno.kill(nbd.pid, "SIGTERM");
      } catch { /* gone */ }
      await nbd.status;
    }
  },
});

Deno.test({
  name: "tcg: a triple fault with -no-reboot ends the emulator with status 0, as QEMU",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("triple_fault");
    const args = [...HEADLESS, "-drive", `file=${guest.qcow2},if=ide`];
    const d = await runDemu(args, { timeoutMs: 60000 });
    ok(!d.timedOut, "demu did not stop on the triple fault");
    strictEqual(d.code, 0, d.stderr);
    strictEqual(plain(d.stdout), "DEMU-TRIPLE-FAULT\r\n");
    if (QEMU) {
      const q = await runUntil("qemu-system-x86_64", ["-accel", "tcg", ...args], {
        timeoutMs: 60000,
      });
      strictEqual(q.code, 0);
      strictEqual(plain(q.stdout), plain(d.stdout));
    }
  },
});

for (const accel of ["tcg", "kvm"]) {
  Deno.test({
    name: `acpi: power-off by the firmware's ACPI tables (RSDP, FADT, SMI_CMD, S5) under ${accel}`,
    ignore: !canBoot || (accel === "kvm" && !haveKvm()),
    async fn() {
      await using guest = await buildGuest("acpi_off");
      const args = ["-accel", accel, ...HEADLESS, "-drive", `file=${guest.qcow2},if=ide`];
      const d = await runDemu(args, { timeoutMs: 60000 });
      strictEqual(d.code, 0, d.stderr);
      // Nothing may run after the S5 write (the guest prints "still running" if it does).
      strictEqual(plain(d.stdout), "RSDP FADT ACPI-MODE S5\r\n");
      if (QEMU) {
        const q = await runUntil("qemu-system-x86_64", args, { timeoutMs: 60000 });
        strictEqual(q.code, 0);
        // QEMU/KVM's SeaBIOS may have switched to ACPI mode already (it has SMM there), and
        // QEMU stops its vCPU asynchronously, so the guest sometimes gets a few more
        // instructions (part of "still running") in.
        ok(
          /^RSDP FADT (ACPI-MODE )?S5\r\n/.test(plain(q.stdout)),
          JSON.stringify(q),
        );
      }
    },
  });
}

Deno.test({
  name: "tcg: -icount makes guest-visible time a function of instructions (identical runs)",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("tick_count");
    const args = ["-icount", "shift=2,sleep=off", ...HEADLESS, "-drive", `file=${guest.qcow2}`];
    const a = await runDemu(args, { timeoutMs: 60000 });
    const b = await runDemu(args, { timeoutMs: 60000 });
    strictEqual(a.code, 0, a.stderr);
    strictEqual(b.code, 0, b.stderr);
    strictEqual(a.stdout, b.stdout);
    // 10 ms between ticks at 4 ns per instruction is 2.5 M instructions, ~3 per loop turn.
    const counts = plain(a.stdout).trim().split(" ").map((h) => parseInt(h, 16));
    strictEqual(counts.length, 3);
    for (const c of counts) ok(Math.abs(c - 2.5e6 / 3) < 2.5e6 / 3 * 0.05, `count ${c}`);
  },
});

Deno.test("cli: -icount errors as QEMU's", async () => {
  const d = await runDemu(["-icount", "foo", "-display", "none"], { timeoutMs: 20000 });
  strictEqual(d.code, 1);
  strictEqual(d.stderr.trim(), "qemu-system-x86_64: -icount foo: icount: Invalid shift value");
  const k = await runDemu(["-enable-kvm", "-icount", "shift=1"], { timeoutMs: 20000 });
  strictEqual(k.code, 1);
  strictEqual(
    k.stderr.trim(),
    "qemu-system-x86_64: -icount is not allowed with hardware virtualization",
  );
});

Deno.test({
  name: "monitor: -S waits for cont; -no-shutdown keeps the emulator after power-off; -vga none",
  ignore: !canBoot,
  async fn() {
    await using guest = await buildGuest("serial_poweroff");
    const serial = `${guest.dir}/serial.txt`;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../emu/main.ts", import.meta.url).pathname,
        "-S",
        "-no-shutdown",
        "-vga",
        "none",
        "-display",
        "none",
        "-nic",
        "none",
        "-monitor",
        "stdio",
        "-serial",
        `file:${serial}`,
        guest.qcow2,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const killer = setTimeout(() => Deno.kill(child.pid, "SIGKILL"), 60000);
    const w = child.stdin.getWriter();
    const reader = child.stdout.getReader();
    let out = "";
    const waitFor = async (text: string) => {
      while (!out.includes(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`no '${text}' in:\n${out}`);
        out += new TextDecoder().decode(value);
      }
    };
    const send = (s: string) => w.write(new TextEncoder().encode(s));
    try {
      await waitFor("(qemu) ");
      await send("info status\n");
      await waitFor("VM status: paused (prelaunch)");
      strictEqual(await Deno.readTextFile(serial), "", "nothing ran before cont");
      await send("cont\n");
      // The guest powers off; the emulator stays, as QEMU's -no-shutdown.
      for (let i = 0; i < 300 && !(await Deno.readTextFile(serial)).includes("OK"); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 500));
      await send("info status\n");
      await waitFor("VM status: paused (shutdown)");
      strictEqual(await Deno.readTextFile(serial), "DEMU-BOOT-OK\r\n");
      await send("quit\n");
      strictEqual((await child.status).code, 0);
    } finally {
      clearTimeout(killer);
      reader.releaseLock();
      await w.close().catch(() => {});
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
    }
  },
});
