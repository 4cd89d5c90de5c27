/**
 * The command-line side of the virtio devices: `-chardev` (socket, stdio, file, pipe, null),
 * `-device virtio-serial-pci` / `virtio-serial` with `virtserialport` and `virtconsole`,
 * `-device virtio-blk-pci`, and `-drive if=virtio`, parsed with QEMU's errors and placed on the
 * PC's PCI bus from slot 3 on, each INTx routed through the PIIX3's PIRQ lines as QEMU wires
 * them. With -kernel (no firmware runs) the BARs and interrupt lines are programmed as SeaBIOS
 * would.
 */
import { type BlockDriver, openImage } from "@demu/block";
import { type CharBackend, LogTee, NullBackend } from "../../chardev/mod.ts";
import { type ChardevSpec, openChardev, parseChardev } from "../../chardev/options.ts";
import { SocketBackend } from "../../chardev/socket.ts";
import type { Pc } from "../pc.ts";
import { PIIX_PIRQC } from "../piix3.ts";
import { VirtioBlk } from "./blk.ts";
import { VirtioPci } from "./pci.ts";
import { DEFAULT_MAX_PORTS, VirtioSerial, type VirtioSerialPort } from "./serial.ts";

/** A -device naming one of the virtio models. */
export interface DeviceSpec {
  driver: string;
  opts: Map<string, string>;
  origin: string;
}

/** A -drive if=virtio. */
export interface VirtioDriveSpec {
  file: string;
  format?: string;
  readOnly: boolean;
  serial?: string;
  origin: string;
}

const SERIAL_BUS = new Set(["virtio-serial-pci", "virtio-serial"]);
const BLK = new Set(["virtio-blk-pci", "virtio-blk"]);
const PORTS = new Set(["virtserialport", "virtconsole"]);
const KNOWN_PROPS: Record<string, string[]> = {
  "virtio-serial-pci": ["id", "max_ports", "addr", "bus", "disable-legacy", "disable-modern"],
  "virtio-blk-pci": ["id", "drive", "serial", "addr", "bus", "disable-legacy", "disable-modern"],
  virtserialport: ["id", "chardev", "name", "nr", "bus"],
  virtconsole: ["id", "chardev", "name", "nr", "bus"],
};

/** Splits "a=b,c=d" with QEMU's ",," escaping; a bare first word becomes the `first` key. */
export function parseOpts(s: string, first: string): Map<string, string> {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < s.length; i++) {
    if (s[i] === ",") {
      if (s[i + 1] === ",") {
        cur += ",";
        i++;
        continue;
      }
      parts.push(cur);
      cur = "";
    } else cur += s[i];
  }
  parts.push(cur);
  const m = new Map<string, string>();
  parts.forEach((p, i) => {
    const eq = p.indexOf("=");
    if (eq < 0) {
      if (i === 0) m.set(first, p);
      else if (p.startsWith("no")) m.set(p.slice(2), "off");
      else m.set(p, "on");
    } else m.set(p.slice(0, eq), p.slice(eq + 1));
  });
  return m;
}

/** Whether -device DRIVER is one this module builds. */
export function isVirtioDevice(driver: string): boolean {
  return SERIAL_BUS.has(driver) || BLK.has(driver) || PORTS.has(driver);
}

export function parseDevice(value: string): DeviceSpec {
  const origin = `-device ${value}`;
  const opts = parseOpts(value, "driver");
  let driver = opts.get("driver") ?? "";
  if (driver === "virtio-serial") driver = "virtio-serial-pci";
  if (driver === "virtio-blk") driver = "virtio-blk-pci";
  for (const k of opts.keys()) {
    if (k !== "driver" && !KNOWN_PROPS[driver]?.includes(k)) {
      throw new Error(`${origin}: Property '${driver}.${k}' not found`);
    }
  }
  return { driver, opts, origin };
}

export { type ChardevSpec, parseChardev };

export interface VirtioSetup {
  devices: VirtioPci[];
  close(): Promise<void>;
}

/** A socket's peer coming and going is the port's host side opening and closing, as in QEMU. */
export function followConnection(port: VirtioSerialPort, chardev: CharBackend): void {
  const backend = chardev instanceof LogTee ? chardev.inner : chardev;
  if (!(backend instanceof SocketBackend)) return;
  port.hostOpen = backend.connected;
  backend.onConnection = (up) => port.setHostOpen(up);
}

/** The first free PCI slot from 3 on (QEMU places -device models likewise). */
function freeSlot(pc: Pc): number {
  for (let s = 3; s < 32; s++) if (!pc.pci.devices.has(s << 3)) return s;
  throw new Error("PCI: no slot/function available, all in use");
}

/**
 * Builds the virtio devices from the command line and plugs them into the PC. Fails with
 * QEMU's messages for bad combinations. `linuxBoot`: no firmware will program the BARs.
 */
export async function setupVirtio(pc: Pc, o: {
  chardevs: string[];
  devices: string[];
  drives: VirtioDriveSpec[];
  linuxBoot: boolean;
  stdio: (o: { mux: boolean; signal: boolean }) => CharBackend;
  info: (m: string) => void;
}): Promise<VirtioSetup> {
  const closers: (() => void | Promise<void>)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) await c();
  };
  const created: VirtioPci[] = [];
  try {
    const chardevSpecs = new Map<string, ChardevSpec>();
    for (const v of o.chardevs) {
      const c = parseChardev(v);
      if (chardevSpecs.has(c.id)) {
        throw new Error(`${c.origin}: Duplicate ID '${c.id}' for chardev`);
      }
      chardevSpecs.set(c.id, c);
    }
    const chardevs = new Map<string, CharBackend>();
    for (const c of chardevSpecs.values()) {
      const b = await openChardev(c, o.stdio, o.info);
      chardevs.set(c.id, b);
      closers.push(() => b.close());
    }
    const used = new Set<string>();
    const mem = pc.machine.memory;
    const plug = (backend: VirtioSerial | VirtioBlk) => {
      const dev = new VirtioPci(backend, mem);
      const slot = freeSlot(pc);
      pc.pci.add(dev, slot);
      // QEMU's PIIX wiring: INTA of slot s is PIRQ (s - 1) & 3.
      const pirq = (slot - 1) & 3;
      dev.setIntx = (l) => pc.piix3.setPirq(pirq, l);
      pc.machine.resettables.push(dev);
      created.push(dev);
      return dev;
    };

    let bus: VirtioSerial | null = null;
    const blkDrives: { d: BlockDriver; serial: string }[] = [];
    for (const d of o.drives) {
      let driver: BlockDriver;
      try {
        driver = await openImage(d.file, { format: d.format, readOnly: d.readOnly });
      } catch (e) {
        throw new Error(`${d.origin}: Could not open '${d.file}': ${(e as Error).message}`);
      }
      closers.push(() => driver.close());
      blkDrives.push({ d: driver, serial: d.serial ?? "" });
    }
    for (const v of o.devices) {
      const dev = parseDevice(v);
      if (!isVirtioDevice(dev.driver)) {
        throw new Error(`${dev.origin}: '${dev.driver}' is not a valid device model name`);
      }
      if (SERIAL_BUS.has(dev.driver)) {
        const mp = dev.opts.get("max_ports");
        const max = mp === undefined ? DEFAULT_MAX_PORTS : Number(mp);
        if (!Number.isInteger(max) || max < 1 || max > 31) {
          throw new Error(`${dev.origin}: maximum ports supported: 31`);
        }
        bus = new VirtioSerial(max);
        plug(bus);
      } else if (PORTS.has(dev.driver)) {
        if (!bus) {
          throw new Error(
            `${dev.origin}: No 'virtio-serial-bus' bus found for device '${dev.driver}'`,
          );
        }
        const id = dev.opts.get("chardev");
        let backend: CharBackend = new NullBackend();
        if (id !== undefined) {
          const b = chardevs.get(id);
          if (!b) {
            throw new Error(
              `${dev.origin}: Property '${dev.driver}.chardev' can't find value '${id}'`,
            );
          }
          if (used.has(id)) {
            throw new Error(
              `${dev.origin}: Property '${dev.driver}.chardev' can't take value '${id}': Device '${id}' is in use`,
            );
          }
          used.add(id);
          backend = b;
        }
        const nr = dev.opts.get("nr");
        try {
          const port = bus.addPort(backend, {
            name: dev.opts.get("name") ?? null,
            console: dev.driver === "virtconsole",
            nr: nr === undefined ? null : Number(nr),
          });
          followConnection(port, backend);
        } catch (e) {
          throw new Error(`${dev.origin}: ${(e as Error).message}`);
        }
      } else if (BLK.has(dev.driver)) {
        throw new Error(`${dev.origin}: demu attaches virtio disks with -drive if=virtio`);
      }
    }
    for (const { d, serial } of blkDrives) {
      const blk = new VirtioBlk(d, serial);
      await blk.open();
      plug(blk);
    }
    if (o.linuxBoot) {
      programLikeFirmware(pc, created);
      // A reset clears the BARs; with -kernel nothing else would place them again.
      pc.machine.resettables.push({ reset: () => programLikeFirmware(pc, created) });
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { devices: created, close };
}

/** SeaBIOS's PIRQ routing on the PIIX (A-D to IRQ 10, 10, 11, 11). */
const PIRQ_IRQS = [10, 10, 11, 11];

/**
 * What SeaBIOS does before a -kernel boot would have: route the PIRQ lines, place each virtio
 * device's BARs, write its interrupt line, enable decoding and bus mastering.
 */
function programLikeFirmware(pc: Pc, devs: VirtioPci[]): void {
  for (let i = 0; i < 4; i++) pc.piix3.writeConfig(PIIX_PIRQC + i, 1, PIRQ_IRQS[i]);
  let io = 0xc000, mmio = 0xfe000000;
  for (const d of devs) {
    const slot = d.devfn >> 3;
    d.writeConfig(0x10, 4, io);
    io += 0x100;
    d.writeConfig(0x20, 4, mmio);
    mmio += 0x4000;
    d.writeConfig(0x3c, 1, PIRQ_IRQS[(slot - 1) & 3]);
    d.writeConfig(0x04, 2, 7);
  }
  // Level-triggered PCI interrupts in the ELCR, as SeaBIOS sets them.
  const elcr = PIRQ_IRQS.reduce((m, irq) => m | (1 << irq), 0);
  pc.machine.io.write(0x4d1, 1, pc.machine.io.read(0x4d1, 1) | (elcr >> 8));
}
