/**
 * PC device models on the machine clock, without a CPU: the tests drive ports as a guest would
 * and move virtual time by hand (a manual clock), so every expectation is exact.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { NullBackend } from "../emu/chardev/mod.ts";
import type { CharBackend } from "../emu/chardev/mod.ts";
import { Machine } from "../emu/machine.ts";
import { MachineClock } from "../emu/hw/clock.ts";
import { FwCfg, le32 } from "../emu/hw/fw_cfg.ts";
import { IdeDrive, PiixIde } from "../emu/hw/ide.ts";
import { Pit } from "../emu/hw/pit.ts";
import { Rtc } from "../emu/hw/rtc.ts";
import { Serial16550 } from "../emu/hw/serial.ts";
import { I440fx } from "../emu/hw/i440fx.ts";
import { PageKind } from "../emu/cpu/bus.ts";
import { openImage } from "@demu/block";

const MS = 1e6;
const SEC = 1e9;

function machine(): Machine {
  return new Machine(new Uint8Array(2 << 20), null);
}

/** Counts rising edges the PIC sees on an IRQ line by watching the master's IRR. */
function initPic(m: Machine): void {
  // ICW1..ICW4 for master (vectors 0x08) and slave (0x70), all unmasked.
  for (const [cmd, data, base, cascade] of [[0x20, 0x21, 0x08, 4], [0xa0, 0xa1, 0x70, 2]]) {
    m.io.write(cmd, 1, 0x11);
    m.io.write(data, 1, base);
    m.io.write(data, 1, cascade);
    m.io.write(data, 1, 0x01);
    m.io.write(data, 1, 0x00);
  }
}

function eoi(m: Machine, vector: number): void {
  if (vector >= 0x70) m.io.write(0xa0, 1, 0x20);
  m.io.write(0x20, 1, 0x20);
}

Deno.test("pic: priorities, acknowledge, EOI and the cascade", () => {
  const m = machine();
  initPic(m);
  ok(!m.hasInterrupt());
  m.pic.pulseIrq(3);
  m.pic.pulseIrq(1);
  m.pic.pulseIrq(10);
  ok(m.hasInterrupt());
  strictEqual(m.acknowledgeInterrupt(), 0x09); // IRQ 1 first
  // IRQ 1 in service blocks lower priorities (IRQ 2 cascade, 3) until EOI.
  ok(!m.hasInterrupt());
  eoi(m, 0x09);
  strictEqual(m.acknowledgeInterrupt(), 0x72); // IRQ 10 through the cascade (priority of IRQ 2)
  eoi(m, 0x72);
  strictEqual(m.acknowledgeInterrupt(), 0x0b);
  eoi(m, 0x0b);
  ok(!m.hasInterrupt());
  // Masked lines stay pending in IRR but do not interrupt.
  m.io.write(0x21, 1, 0x10);
  m.pic.pulseIrq(4);
  ok(!m.hasInterrupt());
  m.io.write(0x20, 1, 0x0a); // OCW3: read IRR
  strictEqual(m.io.read(0x20, 1) & 0x10, 0x10);
  m.io.write(0x21, 1, 0x00);
  strictEqual(m.acknowledgeInterrupt(), 0x0c);
});

Deno.test("pic: level-triggered lines (ELCR) stay asserted until the device lowers them", () => {
  const m = machine();
  initPic(m);
  m.io.write(0x4d0, 1, 0x20); // IRQ 5 level
  m.pic.setIrq(5, true);
  strictEqual(m.acknowledgeInterrupt(), 0x0d);
  eoi(m, 0x0d);
  ok(m.hasInterrupt(), "still asserted: interrupts again after EOI");
  m.pic.setIrq(5, false);
  ok(!m.hasInterrupt());
  strictEqual(m.io.read(0x4d0, 1), 0x20);
  // An edge-triggered line keeps its request latched after it drops, as on the 8259A.
  m.pic.setIrq(6, true);
  m.pic.setIrq(6, false);
  strictEqual(m.acknowledgeInterrupt(), 0x0e);
});

Deno.test("pit: channel 0 in mode 2 interrupts at the programmed rate", () => {
  const m = machine();
  initPic(m);
  let edges = 0;
  const pit = new Pit(m.clock, () => edges++);
  pit.register(m.io);
  m.io.write(0x43, 1, 0x34);
  m.io.write(0x40, 1, 11932 & 0xff);
  m.io.write(0x40, 1, 11932 >> 8); // 1193182 / 11932 = 100 Hz
  m.clock.advance(1 * SEC + 1 * MS); // periods end at 10.00005 ms * k
  strictEqual(edges, 100);
  // The counter counts down between edges; latch and read it.
  m.clock.advance(4 * MS); // 5 ms into the 101st period
  m.io.write(0x43, 1, 0x00);
  const lo = m.io.read(0x40, 1), hi = m.io.read(0x40, 1);
  const count = lo | (hi << 8);
  // The 101st period began at 100 * 11932 ticks; 1.005 s is this many ticks into it.
  const into = 1.005 * 1193182 - 100 * 11932;
  ok(Math.abs(count - (11932 - into)) <= 2, `count ${count}`);
});

Deno.test("pit: mode 0 fires once; channel 2's output shows in port 0x61 with the gate", () => {
  const m = machine();
  let edges = 0;
  const pit = new Pit(m.clock, () => edges++);
  pit.register(m.io);
  m.io.write(0x43, 1, 0x30); // channel 0, mode 0
  m.io.write(0x40, 1, 0xe8);
  m.io.write(0x40, 1, 0x03); // 1000 ticks = 838 us
  m.clock.advance(10 * MS);
  strictEqual(edges, 1);
  // Channel 2, mode 0, gate on through port 0x61: OUT goes high after the count.
  m.io.write(0x61, 1, 0x01);
  m.io.write(0x43, 1, 0xb0);
  m.io.write(0x42, 1, 0xff);
  m.io.write(0x42, 1, 0x0f); // 4095 ticks = 3.43 ms
  strictEqual(m.io.read(0x61, 1) & 0x20, 0);
  m.clock.advance(4 * MS);
  strictEqual(m.io.read(0x61, 1) & 0x20, 0x20);
  // Read-back status of channel 2: OUT high, mode 0, lobyte/hibyte.
  m.io.write(0x43, 1, 0xe8);
  strictEqual(m.io.read(0x42, 1), 0x80 | 0x30);
});

Deno.test("pit: a one-shot count whose end passes before the load completes still fires", () => {
  // A host stall (GC, preemption) between loading the count and scheduling its edge must not
  // lose the edge: Linux's one-shot tick (mode 4) then never came and the guest idled forever.
  let t = 0;
  const clock = new MachineClock(() => (t += 5 * MS)); // every reading is 5 ms later
  let edges = 0;
  const pit = new Pit(clock, () => edges++);
  const ch0 = pit.channels[0];
  for (const mode of [0x38, 0x30]) { // mode 4 (Linux's one-shot), mode 0
    edges = 0;
    ch0.setControl(mode);
    ch0.write(100); // 100 ticks = 84 us, far less than the 5 ms the clock moves per reading
    ch0.write(0);
    clock.runDue();
    strictEqual(edges, 1, `mode ${(mode >> 1) & 7}: the edge was lost`);
    clock.runDue();
    strictEqual(edges, 1, `mode ${(mode >> 1) & 7}: one edge per count`);
  }
});

Deno.test("rtc: BCD time from its start, periodic interrupts, update-in-progress", () => {
  const m = machine();
  initPic(m);
  let irq = 0;
  const start = Date.UTC(2024, 1, 29, 23, 59, 58); // a leap day, just before midnight
  const rtc = new Rtc(m.clock, (l) => l && irq++, start);
  rtc.register(m.io);
  const rd = (i: number) => {
    m.io.write(0x70, 1, i);
    return m.io.read(0x71, 1);
  };
  deepStrictEqual([rd(9), rd(8), rd(7), rd(4), rd(2), rd(0)], [0x24, 0x02, 0x29, 0x23, 0x59, 0x58]);
  m.clock.advance(2.5 * SEC);
  deepStrictEqual([rd(8), rd(7), rd(4), rd(2), rd(0), rd(0x32)], [
    0x03,
    0x01,
    0x00,
    0x00,
    0x00,
    0x20,
  ]);
  // Binary mode.
  m.io.write(0x70, 1, 0x0b);
  m.io.write(0x71, 1, 0x02 | 0x04);
  strictEqual(rd(0), 0);
  strictEqual(rd(7), 1);
  // Periodic interrupt at 1024 Hz (rate 6) with PIE.
  m.io.write(0x70, 1, 0x0a);
  m.io.write(0x71, 1, 0x26);
  m.io.write(0x70, 1, 0x0b);
  m.io.write(0x71, 1, 0x02 | 0x04 | 0x40);
  irq = 0;
  let acked = 0;
  for (let i = 0; i < 1024; i++) {
    m.clock.advance(SEC / 1024);
    if (rd(0x0c) & 0x40) acked++;
  }
  strictEqual(acked, 1024);
  strictEqual(irq, 1024);
  // UIP is set only in the last 244 us before a second boundary.
  const frac = ((start / 1000) + m.clock.now() / SEC) % 1;
  m.clock.advance((1 - frac) * SEC - 100_000);
  strictEqual(rd(0x0a) & 0x80, 0x80);
  m.clock.advance(200_000);
  strictEqual(rd(0x0a) & 0x80, 0);
});

class Capture implements CharBackend {
  out: number[] = [];
  receive: ((b: Uint8Array) => void) | null = null;
  write(b: Uint8Array) {
    this.out.push(...b);
  }
  setReceiver(r: (b: Uint8Array) => void) {
    this.receive = r;
  }
  close() {}
}

Deno.test("serial: transmit, receive FIFO with RDI, THRE interrupt, loopback", () => {
  const m = machine();
  initPic(m);
  const be = new Capture();
  let level = false;
  const s = new Serial16550(be, (l) => level = l);
  s.register(m.io);
  for (const c of "hi") m.io.write(0x3f8, 1, c.charCodeAt(0));
  strictEqual(new TextDecoder().decode(new Uint8Array(be.out)), "hi");
  strictEqual(m.io.read(0x3fd, 1) & 0x60, 0x60);
  // Enable RX and THR interrupts: THR empty raises at once.
  m.io.write(0x3f9, 1, 0x03);
  ok(level);
  strictEqual(m.io.read(0x3fa, 1) & 0x0f, 0x02);
  ok(!level, "reading IIR clears the THRE interrupt");
  be.receive!(new TextEncoder().encode("ok"));
  ok(level);
  strictEqual(m.io.read(0x3fa, 1) & 0x0f, 0x04);
  strictEqual(m.io.read(0x3fd, 1) & 1, 1);
  strictEqual(m.io.read(0x3f8, 1), 0x6f);
  strictEqual(m.io.read(0x3f8, 1), 0x6b);
  strictEqual(m.io.read(0x3fd, 1) & 1, 0);
  ok(!level);
  // Loopback: MCR bit 4 routes TX to RX and the modem lines to MSR.
  m.io.write(0x3fc, 1, 0x10 | 0x0a);
  m.io.write(0x3f8, 1, 0x55);
  strictEqual(m.io.read(0x3f8, 1), 0x55);
  strictEqual(m.io.read(0x3fe, 1) & 0xf0, 0x90); // CTS from RTS, DCD from OUT2
  // Divisor latch.
  m.io.write(0x3fb, 1, 0x80);
  m.io.write(0x3f8, 1, 0x01);
  m.io.write(0x3f9, 1, 0x00);
  strictEqual(m.io.read(0x3f8, 1), 0x01);
  m.io.write(0x3fb, 1, 0x03);
  strictEqual(m.io.read(0x3fb, 1), 0x03);
});

Deno.test("fw_cfg: signature, the file directory and a DMA read", () => {
  const m = machine();
  const f = new FwCfg(m);
  f.register();
  f.addFile("etc/test", new TextEncoder().encode("hello fw_cfg"));
  m.io.write(0x510, 2, 0);
  strictEqual(String.fromCharCode(...[0, 1, 2, 3].map(() => m.io.read(0x511, 1))), "QEMU");
  m.io.write(0x510, 2, 0x19);
  const count = [0, 1, 2, 3].map(() => m.io.read(0x511, 1)).reduce((a, b) => a * 256 + b);
  strictEqual(count, 1);
  // DMA: select the file's key, read 5 bytes into RAM at 0x2000.
  const v = new DataView(m.ram.buffer);
  const key = 0x20;
  v.setUint32(0x1000, (key << 16) | 0x08 | 0x02); // SELECT | READ (big-endian)
  v.setUint32(0x1004, 5);
  v.setBigUint64(0x1008, 0x2000n);
  m.io.write(0x514, 4, 0);
  m.io.write(0x518, 4, 0x00100000); // 0x1000 as a big-endian dword
  strictEqual(v.getUint32(0x1000), 0);
  strictEqual(new TextDecoder().decode(m.ram.subarray(0x2000, 0x2005)), "hello");
  strictEqual(String.fromCharCode(...m.ram.subarray(0x2005, 0x2006)), "\0");
  deepStrictEqual(le32(0x12345678), new Uint8Array([0x78, 0x56, 0x34, 0x12]));
});

Deno.test("i440fx: PAM moves 0xF0000 between the BIOS ROM and shadow RAM", () => {
  const m = machine();
  const bios = new Uint8Array(0x40000).fill(0xbb);
  const host = new I440fx(m, bios);
  strictEqual(m.ram[0xf0000], 0xbb);
  strictEqual(m.pageKind(0xf0), PageKind.Rom);
  // Read/write RAM: the shadow (zeros) appears; copy the BIOS in, then make it read-only.
  host.writeConfig(0x59, 1, 0x30);
  strictEqual(m.ram[0xf0000], 0x00);
  strictEqual(m.pageKind(0xf0), PageKind.Ram);
  m.mmioWrite(0xf0000, 1, 0x42);
  host.writeConfig(0x59, 1, 0x10);
  strictEqual(m.pageKind(0xf0), PageKind.Rom);
  m.mmioWrite(0xf0000, 1, 0x99); // dropped: read-only
  strictEqual(m.ram[0xf0000], 0x42);
  // Back to ROM: the BIOS shows again; the shadow keeps its contents.
  host.writeConfig(0x59, 1, 0x00);
  strictEqual(m.ram[0xf0000], 0xbb);
  host.writeConfig(0x59, 1, 0x10);
  strictEqual(m.ram[0xf0000], 0x42);
});

Deno.test("ide: IDENTIFY and a PIO READ SECTORS from a raw image", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/d.img`;
    const data = new Uint8Array(64 * 512);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    await Deno.writeFile(path, data);
    const m = machine();
    initPic(m);
    const ide = new PiixIde(m);
    const drive = new IdeDrive("disk", await openImage(path, { format: "raw" }), "QM00001");
    await drive.open();
    ide.attach(0, 0, drive);
    const settle = async () => {
      while (m.pending.size) await Promise.all([...m.pending]);
    };
    m.io.write(0x1f6, 1, 0xa0);
    m.io.write(0x1f7, 1, 0xec);
    await settle();
    strictEqual(m.io.read(0x1f7, 1) & 0x08, 0x08);
    const id = new Uint16Array(256).map(() => m.io.read(0x1f0, 2));
    strictEqual(id[0], 0x0040);
    strictEqual(id[60] | (id[61] << 16), 64);
    const model = [...id.subarray(27, 47)].map((w) => String.fromCharCode(w >> 8, w & 0xff)).join(
      "",
    );
    strictEqual(model.trim(), "QEMU HARDDISK");
    // READ SECTORS: LBA 3, 2 sectors.
    m.io.write(0x1f6, 1, 0xe0);
    m.io.write(0x1f2, 1, 2);
    m.io.write(0x1f3, 1, 3);
    m.io.write(0x1f4, 1, 0);
    m.io.write(0x1f5, 1, 0);
    m.io.write(0x1f7, 1, 0x20);
    await settle();
    ok(m.hasInterrupt());
    const got = new Uint8Array(1024);
    for (let s = 0; s < 2; s++) {
      await settle();
      strictEqual(m.io.read(0x1f7, 1) & 0x89, 0x08, "DRQ, not busy, no error");
      for (let i = 0; i < 256; i++) {
        const w = m.io.read(0x1f0, 2);
        got[s * 512 + 2 * i] = w & 0xff;
        got[s * 512 + 2 * i + 1] = w >> 8;
      }
    }
    deepStrictEqual(got, data.subarray(3 * 512, 5 * 512));
    strictEqual(m.io.read(0x1f7, 1) & 0x08, 0);
    // Past the end: aborted.
    m.io.write(0x1f3, 1, 63);
    m.io.write(0x1f2, 1, 2);
    m.io.write(0x1f7, 1, 0x20);
    strictEqual(m.io.read(0x1f7, 1) & 0x01, 0x01);
    strictEqual(m.io.read(0x1f1, 1), 0x04);
    await drive.driver!.close();
    new NullBackend().close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("piix4 pm: PMBA maps the PM block; ACPI_ENABLE on 0xB2 sets SCI_EN; S5 powers off", async () => {
  const m = machine();
  const { Piix4Pm } = await import("../emu/hw/acpi_pm.ts");
  const pm = new Piix4Pm(m);
  strictEqual(m.io.read(0x604, 2), 0xffff, "unmapped before PMBA/PMREGMISC");
  pm.writeConfig(0x40, 4, 0x601);
  pm.writeConfig(0x80, 1, 1);
  strictEqual(m.io.read(0x604, 2) & 1, 0);
  m.io.write(0xb2, 1, 0xf1);
  strictEqual(m.io.read(0x604, 2) & 1, 1, "SCI_EN after ACPI_ENABLE");
  // The PM timer runs at 3.579545 MHz.
  const t0 = m.io.read(0x608, 4);
  m.clock.advance(1e6); // 1 ms
  const dt = (m.io.read(0x608, 4) - t0) & 0xffffff;
  ok(Math.abs(dt - 3580) <= 1, `PM timer advanced ${dt}`);
  ok(!m.stopReason);
  m.io.write(0x604, 2, 0x2000 | 1); // SLP_TYP 0 | SLP_EN
  deepStrictEqual(m.stopReason, { kind: "poweroff" });
});

/** A machine with a PIIX IDE controller, its bus master at 0xC000, and drives from raw files. */
async function ideMachine(dir: string, disk: Uint8Array, cd: Uint8Array | null) {
  const m = machine();
  initPic(m);
  const ide = new PiixIde(m);
  ide.writeConfig(0x20, 4, 0xc001); // BAR4: bus master registers
  ide.writeConfig(0x04, 2, 0x0005); // I/O + bus master
  await Deno.writeFile(`${dir}/d.img`, disk);
  const d = new IdeDrive("disk", await openImage(`${dir}/d.img`, { format: "raw" }), "QM00001");
  await d.open();
  ide.attach(0, 0, d);
  let c: IdeDrive | null = null;
  if (cd) {
    await Deno.writeFile(`${dir}/c.iso`, cd);
    c = new IdeDrive(
      "cdrom",
      await openImage(`${dir}/c.iso`, { format: "raw", readOnly: true }),
      "QM00003",
    );
  } else {
    c = new IdeDrive("cdrom", null, "QM00003");
  }
  await c.open();
  ide.attach(1, 0, c);
  const settle = async () => {
    while (m.pending.size) await Promise.all([...m.pending]);
  };
  const close = async () => {
    await d.driver!.close();
    await c?.driver?.close();
  };
  return { m, ide, settle, close };
}

Deno.test("ide: bus-master DMA READ DMA EXT and WRITE DMA scatter/gather through a PRD table", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const disk = new Uint8Array(256 * 512);
    for (let i = 0; i < disk.length; i++) disk[i] = (i >> 9) ^ (i & 0xff);
    const { m, settle, close } = await ideMachine(dir, disk, null);
    const v = new DataView(m.ram.buffer);
    // PRD table at 0x1000: 1000 bytes at 0x10000, then 24 bytes at 0x20000 (end of table).
    v.setUint32(0x1000, 0x10000, true);
    v.setUint16(0x1004, 1000, true);
    v.setUint16(0x1006, 0, true);
    v.setUint32(0x1008, 0x20000, true);
    v.setUint16(0x100c, 24, true);
    v.setUint16(0x100e, 0x8000, true);
    m.io.write(0xc004, 4, 0x1000);
    // READ DMA EXT: LBA 5, 2 sectors.
    m.io.write(0x1f6, 1, 0x40);
    m.io.write(0x1f2, 1, 0);
    m.io.write(0x1f3, 1, 0);
    m.io.write(0x1f4, 1, 0);
    m.io.write(0x1f5, 1, 0);
    m.io.write(0x1f2, 1, 2);
    m.io.write(0x1f3, 1, 5);
    m.io.write(0x1f4, 1, 0);
    m.io.write(0x1f5, 1, 0);
    m.io.write(0x1f7, 1, 0x25);
    m.io.write(0xc000, 1, 0x09); // start, device-to-memory
    await settle();
    strictEqual(m.io.read(0xc002, 1) & 0x07, 0x04, "interrupt, not active, no error");
    ok(m.hasInterrupt());
    deepStrictEqual(
      m.ram.subarray(0x10000, 0x10000 + 1000),
      disk.subarray(5 * 512, 5 * 512 + 1000),
    );
    deepStrictEqual(m.ram.subarray(0x20000, 0x20000 + 24), disk.subarray(5 * 512 + 1000, 7 * 512));
    strictEqual(m.io.read(0x1f7, 1) & 0x89, 0, "not busy, no DRQ, no error");
    m.io.write(0xc000, 1, 0x00);
    m.io.write(0xc002, 1, 0x04); // acknowledge
    // WRITE DMA (LBA28): LBA 9, 2 sectors from the same PRDs.
    m.ram.fill(0xab, 0x10000, 0x10000 + 1000);
    m.ram.fill(0xcd, 0x20000, 0x20000 + 24);
    m.io.write(0x1f6, 1, 0xe0);
    m.io.write(0x1f2, 1, 2);
    m.io.write(0x1f3, 1, 9);
    m.io.write(0x1f4, 1, 0);
    m.io.write(0x1f5, 1, 0);
    m.io.write(0x1f7, 1, 0xca);
    m.io.write(0xc000, 1, 0x01); // start, memory-to-device
    await settle();
    strictEqual(m.io.read(0xc002, 1) & 0x07, 0x04);
    await close();
    const img = await Deno.readFile(`${dir}/d.img`);
    ok(img.subarray(9 * 512, 9 * 512 + 1000).every((b) => b === 0xab));
    ok(img.subarray(9 * 512 + 1000, 11 * 512).every((b) => b === 0xcd));
    deepStrictEqual(img.subarray(11 * 512, 12 * 512), disk.subarray(11 * 512, 12 * 512));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Sends an ATAPI packet on the secondary channel; returns the PIO data (byte-count limited). */
async function atapi(
  m: Machine,
  settle: () => Promise<void>,
  packet: number[],
  limit = 0xfffe,
): Promise<{ data: Uint8Array; status: number; error: number }> {
  m.io.write(0x176, 1, 0xa0);
  m.io.write(0x171, 1, 0); // PIO
  m.io.write(0x174, 1, limit & 0xff);
  m.io.write(0x175, 1, limit >> 8);
  m.io.write(0x177, 1, 0xa0);
  strictEqual(m.io.read(0x177, 1) & 0x08, 0x08, "DRQ for the packet");
  const p = [...packet, ...new Array(12 - packet.length).fill(0)];
  for (let i = 0; i < 12; i += 2) m.io.write(0x170, 2, p[i] | (p[i + 1] << 8));
  await settle();
  const out: number[] = [];
  while (m.io.read(0x177, 1) & 0x08) {
    const n = m.io.read(0x174, 1) | (m.io.read(0x175, 1) << 8);
    for (let i = 0; i < n; i += 2) {
      const w = m.io.read(0x170, 2);
      out.push(w & 0xff, w >> 8);
    }
    await settle();
  }
  return { data: new Uint8Array(out), status: m.io.read(0x177, 1), error: m.io.read(0x171, 1) };
}

Deno.test("ide: ATAPI without a medium reports NOT READY / MEDIUM NOT PRESENT", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { m, settle, close } = await ideMachine(dir, new Uint8Array(512 * 4), null);
    // The ATAPI signature after reset.
    m.io.write(0x176, 1, 0xa0);
    deepStrictEqual([m.io.read(0x174, 1), m.io.read(0x175, 1)], [0x14, 0xeb]);
    const tur = await atapi(m, settle, [0x00]);
    strictEqual(tur.status & 0x01, 0x01);
    strictEqual(tur.error >> 4, 2);
    const sense = await atapi(m, settle, [0x03, 0, 0, 0, 18]);
    strictEqual(sense.data[2] & 0x0f, 2);
    strictEqual(sense.data[12], 0x3a);
    const inq = await atapi(m, settle, [0x12, 0, 0, 0, 36]);
    strictEqual(inq.data[0], 0x05);
    strictEqual(new TextDecoder().decode(inq.data.subarray(16, 28)), "QEMU DVD-ROM");
    await close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ide: ATAPI READ CAPACITY and READ(10) in byte-count-limited PIO pieces", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cd = new Uint8Array(2048 * 8);
    for (let i = 0; i < cd.length; i++) cd[i] = (i * 13 + (i >> 11)) & 0xff;
    const { m, settle, close } = await ideMachine(dir, new Uint8Array(512 * 4), cd);
    // A new medium reports UNIT ATTENTION once.
    const first = await atapi(m, settle, [0x00]);
    strictEqual(first.error >> 4, 6);
    const ready = await atapi(m, settle, [0x00]);
    strictEqual(ready.status & 0x01, 0);
    const cap = await atapi(m, settle, [0x25]);
    deepStrictEqual([...cap.data], [0, 0, 0, 7, 0, 0, 8, 0]);
    const rd = await atapi(m, settle, [0x28, 0, 0, 0, 0, 2, 0, 0, 3], 1000); // LBA 2, 3 sectors
    deepStrictEqual(rd.data, cd.subarray(2 * 2048, 5 * 2048));
    const bad = await atapi(m, settle, [0x28, 0, 0, 0, 0, 7, 0, 0, 2]);
    strictEqual(bad.error >> 4, 5, "ILLEGAL REQUEST past the end");
    await close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("firmware: SMBIOS 2.8 anchor and tables (type 1 and 3 as QEMU's pc, end marker)", async () => {
  const { buildSmbios } = await import("../emu/firmware/smbios.ts");
  const { anchor, tables } = buildSmbios();
  strictEqual(new TextDecoder().decode(anchor.subarray(0, 4)), "_SM_");
  strictEqual(anchor.reduce((a, b) => (a + b) & 0xff, 0), 0, "entry point checksum");
  strictEqual(anchor.subarray(0x10).reduce((a, b) => (a + b) & 0xff, 0), 0, "intermediate");
  const v = new DataView(anchor.buffer);
  strictEqual(v.getUint16(0x16, true), tables.length);
  strictEqual(v.getUint16(0x1c, true), 3);
  // Walk the structures.
  const found: [number, string[]][] = [];
  let p = 0;
  while (p < tables.length) {
    const type = tables[p], len = tables[p + 1];
    let q = p + len;
    while (!(tables[q] === 0 && tables[q + 1] === 0)) q++;
    const strs = new TextDecoder().decode(tables.subarray(p + len, q)).split("\0").filter(Boolean);
    found.push([type, strs]);
    p = q + 2;
  }
  deepStrictEqual(found, [
    [1, ["QEMU", "Standard PC (i440FX + PIIX, 1996)", "pc-i440fx-7.2"]],
    [3, ["QEMU", "pc-i440fx-7.2"]],
    [127, []],
  ]);
});

Deno.test("firmware: ACPI tables for -kernel have valid checksums and point at each other", async () => {
  const { buildAcpiTables } = await import("../emu/firmware/acpi.ts");
  const base = 0xe0000;
  const { bytes, rsdp } = buildAcpiTables({ base, pmBase: 0x600, gpe0: 0xafe0, sciIrq: 9 });
  const v = new DataView(bytes.buffer);
  const at = (addr: number) => addr - base;
  const sum = (o: number, n: number) =>
    bytes.subarray(o, o + n).reduce((a, b) => (a + b) & 0xff, 0);
  const sig = (o: number) => new TextDecoder().decode(bytes.subarray(o, o + 4));
  strictEqual(sum(at(rsdp), 20), 0);
  const rsdt = at(v.getUint32(at(rsdp) + 16, true));
  strictEqual(sig(rsdt), "RSDT");
  strictEqual(sum(rsdt, v.getUint32(rsdt + 4, true)), 0);
  const fadt = at(v.getUint32(rsdt + 36, true));
  strictEqual(sig(fadt), "FACP");
  strictEqual(sum(fadt, v.getUint32(fadt + 4, true)), 0);
  strictEqual(v.getUint32(fadt + 64, true), 0x604, "PM1a_CNT");
  const dsdt = at(v.getUint32(fadt + 40, true));
  strictEqual(sig(dsdt), "DSDT");
  strictEqual(sum(dsdt, v.getUint32(dsdt + 4, true)), 0);
  ok(new TextDecoder().decode(bytes.subarray(dsdt, dsdt + 64)).includes("_S5_"));
  strictEqual(sig(at(v.getUint32(fadt + 36, true))), "FACS");
});
