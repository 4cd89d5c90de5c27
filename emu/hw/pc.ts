/**
 * The "pc" machine (i440FX + PIIX3), wired as QEMU wires it: PCI 00:00.0 host bridge,
 * 00:01.0 ISA bridge, 00:01.1 IDE, 00:01.3 ACPI PM, 00:02.0 std VGA; on ISA the PIC pair, PIT,
 * RTC/CMOS, 8042, COM1, port 0x92 and (optionally) debugcon; fw_cfg for SeaBIOS; the BIOS
 * flash at the top of the 4 GiB space with its low 128 KiB visible at 0xE0000 through PAM.
 */
import type { BlockDriver } from "@demu/block";
import type { CharBackend } from "../chardev/mod.ts";
import { E820_RAM, e820Bytes } from "../firmware/e820.ts";
import {
  ACPI_RSDP_FILE,
  ACPI_TABLES_FILE,
  buildAcpiFwCfg,
  buildAcpiTables,
  TABLE_LOADER_FILE,
} from "../firmware/acpi.ts";
import { linuxResetRom, loadLinux } from "../firmware/linux.ts";
import { buildSmbios, SMBIOS_ANCHOR_FILE, SMBIOS_TABLES_FILE } from "../firmware/smbios.ts";
import { Machine } from "../machine.ts";
import { PageKind } from "../cpu/bus.ts";
import type { TimeSource } from "./clock.ts";
import { DebugCon } from "./debugcon.ts";
import { FloppyController } from "./fdc.ts";
import { ParallelPort } from "./parallel.ts";
import {
  FW_CFG_BOOT_MENU,
  FW_CFG_IRQ0_OVERRIDE,
  FW_CFG_MAX_CPUS,
  FW_CFG_NB_CPUS,
  FW_CFG_NOGRAPHIC,
  FW_CFG_RAM_SIZE,
  FwCfg,
  le16,
  le32,
  le64,
} from "./fw_cfg.ts";
import { I440fx } from "./i440fx.ts";
import { IdeDrive, PiixIde } from "./ide.ts";
import { romHandler } from "./memory.ts";
import { PciBus } from "./pci.ts";
import { Piix3 } from "./piix3.ts";
import { Piix4Pm } from "./acpi_pm.ts";
import { Pit } from "./pit.ts";
import { Port92 } from "./port92.ts";
import { I8042 } from "./ps2.ts";
import { Rtc } from "./rtc.ts";
import { Serial16550 } from "./serial.ts";
import { Vga } from "./vga.ts";

/** A drive to attach: ide bus index 0..3 (ide0-0, ide0-1, ide1-0, ide1-1). */
export interface DriveSpec {
  index: number;
  media: "disk" | "cdrom";
  driver: BlockDriver | null;
}

export interface PcOptions {
  /** Guest RAM below 4 GiB (at most 3.5 GiB). */
  ram: Uint8Array;
  /** Bytes of RAM above 4 GiB (KVM maps them; devices never reach them). */
  highRamSize?: number;
  bios: Uint8Array;
  vgaRom: Uint8Array | null;
  /** false: no VGA at all (-vga none). */
  vga?: boolean;
  drives: DriveSpec[];
  serial: CharBackend | null;
  debugcon?: CharBackend | null;
  nographic: boolean;
  /** QEMU's -boot order letters (default "cad"). */
  bootOrder?: string;
  bootMenu?: boolean;
  timeSource: TimeSource | null;
  /** Host epoch ms the RTC starts at (default: now). */
  rtcStart?: number;
  /** Direct Linux boot: the bzImage, initrd and command line (the BIOS is not run). */
  linux?: { image: Uint8Array; initrd: Uint8Array | null; cmdline: string };
}

/** The PIIX4 PM I/O base the ACPI tables name (SeaBIOS programs it; -kernel sets it directly). */
const LINUX_PM_BASE = 0x600;

/** The largest RAM this PC maps (QEMU's i440FX keeps 0xE0000000-4G for PCI). */
export const PC_MAX_RAM = 0xe0000000;

export class Pc {
  readonly machine: Machine;
  readonly pci: PciBus;
  readonly i440fx: I440fx;
  readonly piix3: Piix3;
  readonly ide: PiixIde;
  readonly pm: Piix4Pm;
  /** The std VGA (null with -vga none). */
  readonly vga: Vga | null;
  readonly pit: Pit;
  readonly rtc: Rtc;
  readonly kbc: I8042;
  readonly serial: Serial16550 | null;
  readonly fwcfg: FwCfg;

  private constructor(opts: PcOptions) {
    const m = this.machine = new Machine(opts.ram, opts.timeSource);
    const ramSize = opts.ram.length;

    // The BIOS flash below 4 GiB (with -kernel: a reset vector that enters the Linux stub).
    const bios = opts.linux ? linuxResetRom() : opts.bios;
    const biosBase = 2 ** 32 - bios.length;
    m.memory.add({
      name: "pc.bios",
      base: biosBase,
      size: bios.length,
      handler: romHandler(bios, () => biosBase),
      rom: bios,
    });

    this.pci = new PciBus(m);
    this.i440fx = new I440fx(m, bios);
    this.piix3 = new Piix3(m);
    this.ide = new PiixIde(m);
    this.pm = new Piix4Pm(m);
    this.vga = opts.vga === false ? null : new Vga(m, opts.vgaRom);
    this.pci.add(this.i440fx, 0);
    this.pci.add(this.piix3, 1, 0);
    this.pci.add(this.ide, 1, 1);
    this.pci.add(this.pm, 1, 3);
    if (this.vga) this.pci.add(this.vga, 2);
    this.pci.register();
    this.pci.cf9 = (v) => this.piix3.writeRcr(v);

    // The x87's FERR# (errors with CR0.NE clear) sets a latch that drives IRQ 13; a write to
    // port 0xF0 clears it (as in the AT: the coprocessor error handler writes F0, then FNCLEX).
    m.ferr = (asserted) => {
      if (asserted) m.pic.setIrq(13, true);
    };
    m.io.register(0xf0, 1, { read: () => 0xff, write: () => m.pic.setIrq(13, false) });
    this.pit = new Pit(m.clock, () => m.pic.pulseIrq(0));
    this.pit.register(m.io);
    this.rtc = new Rtc(m.clock, (l) => m.pic.setIrq(8, l), opts.rtcStart);
    this.rtc.register(m.io);
    this.kbc = new I8042(m);
    this.kbc.register();
    const port92 = new Port92(m);
    port92.register();
    this.serial = opts.serial ? new Serial16550(opts.serial, (l) => m.pic.setIrq(4, l)) : null;
    this.serial?.register(m.io);
    if (opts.debugcon) new DebugCon(opts.debugcon).register(m.io);
    const fdc = new FloppyController(m);
    fdc.register();
    const lpt = new ParallelPort(null);
    lpt.register(m.io);

    for (const d of opts.drives) {
      const serial = `QM0000${d.index + 1}`;
      this.ide.attach(d.index >> 1, d.index & 1, new IdeDrive(d.media, d.driver, serial));
    }

    this.fwcfg = new FwCfg(m);
    this.fwcfg.register();
    const f = this.fwcfg;
    const high = opts.highRamSize ?? 0;
    f.add(FW_CFG_RAM_SIZE, le64(ramSize + high));
    f.add(FW_CFG_NB_CPUS, le16(1));
    f.add(FW_CFG_MAX_CPUS, le16(1));
    f.add(FW_CFG_NOGRAPHIC, le16(opts.nographic ? 1 : 0));
    f.add(FW_CFG_BOOT_MENU, le16(opts.bootMenu ? 1 : 0));
    f.add(FW_CFG_IRQ0_OVERRIDE, le32(1));
    const e820 = [{ addr: 0, len: ramSize, type: E820_RAM }];
    if (high) e820.push({ addr: 2 ** 32, len: high, type: E820_RAM });
    f.addFile("etc/e820", e820Bytes(e820));
    f.addFile("etc/boot-fail-wait", le32(0xffffffff));
    // ACPI through the table loader (SeaBIOS places them and moves the PM base to match).
    const acpi = buildAcpiFwCfg({ pmBase: LINUX_PM_BASE, gpe0: 0xafe0, sciIrq: 9 });
    f.addFile(ACPI_TABLES_FILE, acpi.tables);
    f.addFile(ACPI_RSDP_FILE, acpi.rsdp);
    f.addFile(TABLE_LOADER_FILE, acpi.loader);
    const smbios = buildSmbios();
    f.addFile(SMBIOS_ANCHOR_FILE, smbios.anchor);
    f.addFile(SMBIOS_TABLES_FILE, smbios.tables);

    this.#cmos(ramSize, opts.bootOrder ?? "cad", high);
    m.resettables.push(
      this.i440fx,
      this.piix3,
      this.ide,
      this.pm,
      this.pit,
      this.rtc,
      this.kbc,
      port92,
      fdc,
      lpt,
      { reset: () => this.serial?.reset() },
      { reset: () => this.pci.reset() },
      { reset: () => this.vga?.reset() },
    );
    m.memory.setKind(0xa0000, 0x20000, PageKind.Mmio);
  }

  /** Builds the PC and opens its drives. */
  static async create(opts: PcOptions): Promise<Pc> {
    if (opts.ram.length > PC_MAX_RAM) throw new Error("ram size too large");
    const pc = new Pc(opts);
    for (const ch of pc.ide.channels) {
      for (const d of ch.drives) await d?.open();
      ch.reset();
    }
    pc.#cmosDisks();
    if (opts.linux) {
      const linux = opts.linux;
      loadLinux({ ram: opts.ram, image: linux.image, initrd: null, cmdline: "" }); // validates
      pc.#setupLinux(linux);
      // After a reset the kernel is loaded again, as QEMU's linuxboot ROM does.
      pc.machine.resettables.push({ reset: () => pc.#setupLinux(linux) });
    }
    return pc;
  }

  /** Direct Linux boot: shadow RAM for the ACPI tables, the PM block enabled, the kernel loaded. */
  #setupLinux(linux: NonNullable<PcOptions["linux"]>): void {
    const m = this.machine;
    this.i440fx.writeConfig(0x5d, 1, 0x33); // 0xE0000-0xE7FFF read/write RAM
    this.i440fx.writeConfig(0x5e, 1, 0x33); // 0xE8000-0xEFFFF
    this.pm.writeConfig(0x40, 4, LINUX_PM_BASE | 1);
    this.pm.writeConfig(0x80, 1, 1);
    this.pm.cnt |= 1; // SCI_EN: no SMI_CMD, the hardware starts in ACPI mode
    const acpi = buildAcpiTables({ base: 0xe0000, pmBase: LINUX_PM_BASE, gpe0: 0xafe0, sciIrq: 9 });
    m.ram.set(acpi.bytes, 0xe0000);
    loadLinux({ ram: m.ram, ...linux, rsdp: acpi.rsdp });
    m.memory.written(0, m.ram.length);
  }

  /** CMOS contents as QEMU's pc_cmos_init writes them. */
  #cmos(ramSize: number, boot: string, highRam: number): void {
    const c = this.rtc.cmos;
    c[0x10] = 0x40; // fd0: a 1.44 MB drive (empty), as QEMU's default floppy
    c[0x14] = 0x01 | 0x02 | 0x04; // equipment: one floppy drive, FPU, PS/2 mouse
    c[0x15] = 640 & 0xff;
    c[0x16] = 640 >> 8;
    let ext = Math.floor(ramSize / 1024) - 1024;
    ext = Math.max(0, Math.min(65535, ext));
    c[0x17] = c[0x30] = ext & 0xff;
    c[0x18] = c[0x31] = ext >> 8;
    let high = ramSize > 16 << 20 ? Math.floor((ramSize - (16 << 20)) / 65536) : 0;
    high = Math.min(65535, high);
    c[0x34] = high & 0xff;
    c[0x35] = high >> 8;
    const above = Math.floor(highRam / 65536); // RAM above 4 GiB in 64 KiB units
    c[0x5b] = above & 0xff;
    c[0x5c] = (above >> 8) & 0xff;
    c[0x5d] = (above >> 16) & 0xff;
    c[0x5f] = 0; // CPUs - 1
    const code = (ch: string) => ({ a: 1, c: 2, d: 3, n: 4 } as Record<string, number>)[ch] ?? 0;
    const b = [...boot].map(code);
    c[0x3d] = (b[1] ?? 0) << 4 | (b[0] ?? 0);
    c[0x38] = ((b[2] ?? 0) << 4) | 1; // no floppy boot signature check
    c[0x32] = 0x20;
  }

  #cmosDisks(): void {
    const c = this.rtc.cmos;
    let types = 0;
    const chs = this.ide.channels[0].drives;
    chs.forEach((d, i) => {
      if (!d || d.kind !== "disk") return;
      types |= i === 0 ? 0xf0 : 0x0f;
      const base = i === 0 ? 0x1b : 0x24;
      c[i === 0 ? 0x19 : 0x1a] = 47;
      c[base] = d.cylinders & 0xff;
      c[base + 1] = d.cylinders >> 8;
      c[base + 2] = d.heads;
      c[base + 3] = c[base + 4] = 0xff;
      c[base + 5] = 0xc0 | ((d.heads > 8 ? 1 : 0) << 3);
      c[base + 6] = d.cylinders & 0xff;
      c[base + 7] = d.cylinders >> 8;
      c[base + 8] = d.secPerTrack;
    });
    c[0x12] = types;
    c[0x39] = 0x55; // LBA translation for all four drives... as QEMU's default "auto"
  }
}
