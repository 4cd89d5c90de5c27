/**
 * The Linux guests of the PC issue, on demu's interpreter: an isolinux CD with Debian's i386
 * kernel and a busybox initramfs (tests/guests/linux/build.ts) boots to userspace, prints its
 * marker on ttyS0 and powers off through ACPI (exit 0); with -hda disk.qcow2 it makes a
 * filesystem and writes a file that a second boot finds, and the real `qemu-img check` passes;
 * with -snapshot the same writes leave the image byte-identical.
 *
 * The guest is built from apt packages (see the builder); without them the tests are skipped
 * with a warning.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { APPEND, buildLinuxGuest, DISK_TEXT, MARKER, missingInputs } from "./guests/linux/build.ts";
import { haveCommand, haveKvm, runDemu, type RunResult, runUntil } from "./guests/pc/run.ts";
import { buildAcpiFwCfg, buildAcpiTables } from "../emu/firmware/acpi.ts";
import { Machine } from "../emu/machine.ts";
import { IdeDrive, PiixIde } from "../emu/hw/ide.ts";
import { openImage } from "@demu/block";

const WHY = missingInputs();
if (WHY) {
  console.warn(`WARNING: the Linux test guest cannot be built (${WHY}): Linux boots skipped`);
}
const QEMU_IMG = haveCommand("qemu-img");
if (!QEMU_IMG) console.warn("WARNING: qemu-img is not installed: the disk boots are skipped");

/** One boot may take minutes on the interpreter, more on a loaded machine. */
const BOOT_MS = 8 * 60_000;
const ARGS = ["-nographic", "-no-reboot", "-nic", "none", "-m", "128"];

function explain(r: RunResult): string {
  return `exit ${r.code}${r.timedOut ? " (timed out)" : ""}; stderr: ${r.stderr.slice(-1500)}\n` +
    `serial tail:\n${r.stdout.slice(-3000)}`;
}

async function qemuImg(args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command("qemu-img", { args, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: o.code, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
}

async function boot(iso: string, extra: string[]): Promise<RunResult> {
  return await runDemu(["-cdrom", iso, ...ARGS, ...extra], { timeoutMs: BOOT_MS });
}

Deno.test({
  name: "linux: the isolinux CD boots to userspace on the interpreter and powers off (exit 0)",
  ignore: WHY !== null,
  async fn() {
    const g = await buildLinuxGuest();
    const r = await boot(g.iso, []);
    ok(r.stdout.includes(MARKER), `no marker: ${explain(r)}`);
    ok(r.stdout.includes("DEMU-DISK: none"), `the guest saw a disk: ${explain(r)}`);
    ok(r.stdout.includes("reboot: Power down"), `no ACPI power-off: ${explain(r)}`);
    strictEqual(r.code, 0, explain(r));
  },
});

Deno.test({
  name: "linux: -hda disk.qcow2: the guest writes a filesystem and a file, a second boot finds it",
  ignore: WHY !== null || !QEMU_IMG,
  async fn() {
    const g = await buildLinuxGuest();
    const dir = await Deno.makeTempDir({ prefix: "demu-linux-disk-" });
    try {
      const disk = `${dir}/disk.qcow2`;
      strictEqual((await qemuImg(["create", "-q", "-f", "qcow2", disk, "64M"])).code, 0);
      const first = await boot(g.iso, ["-hda", disk]);
      ok(first.stdout.includes(`DEMU-DISK: wrote ${DISK_TEXT}`), `no write: ${explain(first)}`);
      ok(first.stdout.includes("reboot: Power down"), `no ACPI power-off: ${explain(first)}`);
      strictEqual(first.code, 0, explain(first));
      const second = await boot(g.iso, ["-hda", disk]);
      ok(second.stdout.includes(`DEMU-DISK: found ${DISK_TEXT}`), `not found: ${explain(second)}`);
      ok(second.stdout.includes("reboot: Power down"), `no ACPI power-off: ${explain(second)}`);
      strictEqual(second.code, 0, explain(second));
      const check = await qemuImg(["check", disk]);
      strictEqual(check.code, 0, check.out);
      ok(check.out.includes("No errors were found"), check.out);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "linux: -snapshot: the guest's writes leave the image byte-identical",
  ignore: WHY !== null || !QEMU_IMG,
  async fn() {
    const g = await buildLinuxGuest();
    const dir = await Deno.makeTempDir({ prefix: "demu-linux-snap-" });
    try {
      const disk = `${dir}/disk.qcow2`;
      strictEqual((await qemuImg(["create", "-q", "-f", "qcow2", disk, "64M"])).code, 0);
      const before = await Deno.readFile(disk);
      const r = await boot(g.iso, ["-hda", disk, "-snapshot"]);
      ok(r.stdout.includes(`DEMU-DISK: wrote ${DISK_TEXT}`), `no write: ${explain(r)}`);
      ok(r.stdout.includes("reboot: Power down"), `no ACPI power-off: ${explain(r)}`);
      strictEqual(r.code, 0, explain(r));
      deepStrictEqual(await Deno.readFile(disk), before, "the image changed under -snapshot");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "linux: -kernel/-initrd/-append boots the Debian i386 kernel to userspace (interpreter)",
  ignore: WHY !== null,
  async fn() {
    const g = await buildLinuxGuest();
    const r = await runDemu(
      ["-kernel", g.kernel, "-initrd", g.initrd, "-append", APPEND, ...ARGS],
      { timeoutMs: BOOT_MS },
    );
    ok(r.stdout.includes("Linux version"), `no kernel banner: ${explain(r)}`);
    ok(r.stdout.includes(`Kernel command line: ${APPEND}`), `cmdline not passed: ${explain(r)}`);
    ok(r.stdout.includes(MARKER), `no marker: ${explain(r)}`);
    ok(r.stdout.includes("reboot: Power down"), `no ACPI power-off: ${explain(r)}`);
    strictEqual(r.code, 0, explain(r));
  },
});

/**
 * The block compiler changes nothing the guest can see: under -icount (time counted in
 * instructions) the same boot with every block interpreted and with hot blocks compiled prints
 * the same serial bytes to the marker, kernel timestamps included, so both retired the same
 * instructions with the same results and took their interrupts at the same instructions. Lines
 * that carry the host's wall-clock time (the RTC) are left out.
 */
Deno.test({
  name: "linux: -icount boot, interpreted and compiled, prints the same bytes to the marker",
  ignore: WHY !== null,
  async fn() {
    const g = await buildLinuxGuest();
    const args = ["-icount", "shift=1,sleep=off", "-kernel", g.kernel, "-initrd", g.initrd]
      .concat(["-append", APPEND, ...ARGS]);
    const boot = (after: string) =>
      runDemu(args, { timeoutMs: BOOT_MS, until: MARKER, env: { DEMU_JIT_AFTER: after } });
    const [interpreted, compiled] = await Promise.all([boot("0"), boot("20000")]);
    const upToMarker = (r: RunResult) => {
      ok(r.stdout.includes(MARKER), `no marker: ${explain(r)}`);
      const out = r.stdout.slice(0, r.stdout.indexOf(MARKER));
      return out.split("\n").filter((l) => !/audit\(|rtc_cmos|RTC time/.test(l));
    };
    const a = upToMarker(interpreted), b = upToMarker(compiled);
    ok(a.length > 200, `only ${a.length} lines`);
    deepStrictEqual(b, a);
  },
});

/**
 * Under KVM demu must do what the real QEMU does on this host with the same kernel: on real
 * hardware both boot to the marker; on kvm_pvm the i386 kernel stops with "KVM internal error.
 * Suberror: 1" (QEMU then pauses the VM; demu reports the registers and exits 1, never hangs).
 */
Deno.test({
  name: "linux: -kernel under KVM behaves as the real QEMU does on this host",
  ignore: WHY !== null || !haveKvm() || !haveCommand("qemu-system-x86_64"),
  async fn() {
    const g = await buildLinuxGuest();
    const boot = ["-kernel", g.kernel, "-initrd", g.initrd, "-append", APPEND, ...ARGS];
    const internal = "KVM internal error. Suberror: 1";
    const q = await runUntil("qemu-system-x86_64", ["-enable-kvm", ...boot], {
      until: internal,
      timeoutMs: 120_000,
    });
    const qBooted = q.stdout.includes(MARKER);
    const qInternal = q.stderr.includes(internal) || q.stdout.includes(internal);
    if (!qBooted && !qInternal) {
      console.warn(`WARNING: the real QEMU neither booted nor failed under KVM: ${explain(q)}`);
      return;
    }
    const d = await runDemu(["-enable-kvm", ...boot], { timeoutMs: 120_000 });
    ok(!d.timedOut, `demu hung under KVM: ${explain(d)}`);
    if (qBooted) {
      ok(d.stdout.includes(MARKER), `QEMU booted, demu did not: ${explain(d)}`);
      strictEqual(d.code, 0, explain(d));
    } else {
      ok(d.stderr.includes(internal), `QEMU stopped with "${internal}", demu: ${explain(d)}`);
      ok(/EIP=|RIP=/.test(d.stderr), `no registers in demu's report: ${explain(d)}`);
      strictEqual(d.code, 1, explain(d));
    }
  },
});

/** The named objects of a DSDT's AML (NameOp, ScopeOp, DeviceOp only) by path, with values. */
function amlNames(aml: Uint8Array): Map<string, number | string> {
  const out = new Map<string, number | string>();
  const name = (at: number) => new TextDecoder().decode(aml.subarray(at, at + 4));
  const pkgLen = (at: number): [number, number] => {
    const b = aml[at];
    const n = b >> 6;
    if (n === 0) return [b & 0x3f, 1];
    let len = b & 0x0f;
    for (let i = 0; i < n; i++) len |= aml[at + 1 + i] << (4 + 8 * i);
    return [len, n + 1];
  };
  const walk = (at: number, end: number, scope: string) => {
    while (at < end) {
      const op = aml[at];
      if (op === 0x08) { // Name
        const n = name(at + 1);
        const t = aml[at + 5];
        at += 6;
        if (t === 0x00 || t === 0x01) out.set(`${scope}.${n}`, t);
        else if (t === 0x0a) out.set(`${scope}.${n}`, aml[at++]);
        else if (t === 0x0c) {
          out.set(
            `${scope}.${n}`,
            new DataView(aml.buffer, aml.byteOffset + at).getUint32(0, true),
          );
          at += 4;
        } else if (t === 0x12) {
          out.set(`${scope}.${n}`, "package");
          at += pkgLen(at)[0];
        } else if (t === 0x11) { // Buffer: PkgLength, BufferSize (ByteConst here), bytes
          const [len, lenBytes] = pkgLen(at);
          strictEqual(aml[at + lenBytes], 0x0a, "AML: BufferSize as a ByteConst");
          const size = aml[at + lenBytes + 1];
          strictEqual(lenBytes + 2 + size, len, `AML: ${n}'s buffer length`);
          out.set(`${scope}.${n}`, `buffer:${at + lenBytes + 2}:${size}`);
          at += len;
        } else throw new Error(`AML: data type ${t.toString(16)} in ${n}`);
      } else if (op === 0x10 || (op === 0x5b && aml[at + 1] === 0x82)) { // Scope, Device
        const o = op === 0x10 ? at + 1 : at + 2;
        const [len, lenBytes] = pkgLen(o);
        let p = o + lenBytes;
        let n: string;
        if (aml[p] === 0x5c) {
          n = "\\" + name(p + 1);
          p += 5;
        } else {
          n = `${scope}.${name(p)}`;
          p += 4;
        }
        out.set(n, op === 0x10 ? "scope" : "device");
        ok(o + len <= end, `AML: ${n} runs past its parent`);
        walk(p, o + len, n);
        at = o + len;
      } else throw new Error(`AML: opcode ${op.toString(16)} at ${at}`);
    }
    strictEqual(at, end, "AML: a term runs past its parent");
  };
  walk(0, aml.length, "");
  return out;
}

Deno.test("linux: the DSDT declares the PCI host bridge (PNP0A03) Linux enumerates PCI through", () => {
  // Without \\_SB.PCI0 an ACPI Linux sees no PCI device: no ata_piix, no disk, no CD.
  const fw = buildAcpiFwCfg({ pmBase: 0x600, gpe0: 0xafe0, sciIrq: 9 });
  const tv = new DataView(fw.tables.buffer, fw.tables.byteOffset);
  const dsdtAt = 64; // buildAcpiFwCfg's layout: FACS, then the DSDT
  strictEqual(new TextDecoder().decode(fw.tables.subarray(dsdtAt, dsdtAt + 4)), "DSDT");
  const len = tv.getUint32(dsdtAt + 4, true);
  const names = amlNames(fw.tables.subarray(dsdtAt + 36, dsdtAt + len));
  strictEqual(names.get("._S5_"), "package");
  strictEqual(names.get("\\_SB_.PCI0"), "device");
  strictEqual(names.get("\\_SB_.PCI0._HID"), 0x030ad041, "EisaId PNP0A03");
  strictEqual(names.get("\\_SB_.PCI0._ADR"), 0);
  // _CRS: the windows Linux lets PCI BARs live in (else it refuses to enable the devices).
  const crs = /^buffer:(\d+):(\d+)$/.exec(String(names.get("\\_SB_.PCI0._CRS")));
  ok(crs, "no _CRS buffer");
  const aml = fw.tables.subarray(dsdtAt + 36);
  const r = new DataView(aml.buffer, aml.byteOffset + Number(crs[1]), Number(crs[2]));
  const windows: [number, number, number][] = []; // [type, min, max]
  for (let p = 0; p < r.byteLength;) {
    const tag = r.getUint8(p);
    if (tag === 0x79) break; // end tag
    ok(tag & 0x80, `small resource ${tag.toString(16)} in _CRS`);
    const len = r.getUint16(p + 1, true);
    if (tag === 0x88) {
      windows.push([r.getUint8(p + 3), r.getUint16(p + 8, true), r.getUint16(p + 10, true)]);
    }
    if (tag === 0x87) {
      windows.push([r.getUint8(p + 3), r.getUint32(p + 10, true), r.getUint32(p + 14, true)]);
    }
    p += 3 + len;
  }
  const covers = (type: number, a: number, b: number) =>
    windows.some(([t, min, max]) => t === type && min <= a && b <= max);
  ok(covers(2, 0, 0xff), "bus numbers 0-255");
  ok(covers(1, 0x1f0, 0x1f7) && covers(1, 0x170, 0x177) && covers(1, 0xc000, 0xc00f), "IDE I/O");
  ok(covers(0, 0xa0000, 0xbffff), "legacy VGA memory");
  ok(covers(0, 0xfd000000, 0xfdffffff) && covers(0, 0xfebf0000, 0xfebf0fff), "SeaBIOS's BARs");
  ok(!covers(1, 0xcf8, 0xcff), "the PCI config ports are not a window");
  // The -kernel tables carry the same DSDT.
  const k = buildAcpiTables({ base: 0xe0000, pmBase: 0x600, gpe0: 0xafe0, sciIrq: 9 });
  const text = new TextDecoder("latin1").decode(k.bytes);
  ok(text.includes("DSDT") && text.includes("PCI0\x08_HID"), "no PCI0 in the -kernel DSDT");
});

Deno.test("linux: after an ATA soft reset, device 0's signature is in the task file (libata probe)", async () => {
  // libata resets each channel (SRST through the control port) and classifies device 0 from
  // the signature left in the task file: nsect=lbal=1, error=1, lbam/lbah 0/0 for a disk and
  // 0x14/0xEB for ATAPI. An absent device 1 must not overwrite it.
  const dir = await Deno.makeTempDir({ prefix: "demu-linux-ide-" });
  try {
    const m = new Machine(new Uint8Array(2 << 20), null);
    const ide = new PiixIde(m);
    await Deno.writeFile(`${dir}/d.img`, new Uint8Array(64 * 512));
    const disk = new IdeDrive("disk", await openImage(`${dir}/d.img`, { format: "raw" }), "QM1");
    await disk.open();
    ide.attach(0, 0, disk);
    const cd = new IdeDrive("cdrom", null, "QM3");
    await cd.open();
    ide.attach(1, 0, cd);
    try {
      for (const [cmd, ctl, lbam, lbah] of [[0x1f0, 0x3f6, 0, 0], [0x170, 0x376, 0x14, 0xeb]]) {
        m.io.write(cmd + 6, 1, 0xa0);
        m.io.write(cmd + 2, 1, 0x55); // leftovers of the presence check
        m.io.write(cmd + 3, 1, 0xaa);
        m.io.write(ctl, 1, 0x06); // SRST | nIEN
        m.io.write(ctl, 1, 0x02);
        m.io.write(cmd + 6, 1, 0xa0);
        const regs = [1, 2, 3, 4, 5].map((r) => m.io.read(cmd + r, 1));
        deepStrictEqual(regs, [1, 1, 1, lbam, lbah], `signature at ${cmd.toString(16)}`);
        strictEqual(m.io.read(cmd + 7, 1) & 0x80, 0, "not busy after the reset");
      }
    } finally {
      await disk.driver!.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("linux: the PIIX IDE timing registers keep SeaBIOS's decode-enable bits (ata_piix)", () => {
  // SeaBIOS writes 0x8000 to IDETIM (0x40, 0x42); ata_piix skips a channel whose bit 15 is clear.
  const ide = new PiixIde(new Machine(new Uint8Array(2 << 20), null));
  ide.writeConfig(0x40, 2, 0x8000);
  ide.writeConfig(0x42, 2, 0x8000);
  strictEqual(ide.readConfig(0x41, 1) & 0x80, 0x80, "primary channel enabled");
  strictEqual(ide.readConfig(0x43, 1) & 0x80, 0x80, "secondary channel enabled");
});
