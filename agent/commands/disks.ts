/**
 * Block devices as qemu-ga describes them: guest-get-fsinfo's per-mount entries and
 * guest-get-disks' list. A device's sysfs path tells whether it is virtual (device-mapper,
 * loop: described by the devices under it, its "slaves") or real, and for a real one on PCI
 * which controller it hangs off and where (virtio, SCSI, IDE, SATA, NVMe, USB).
 */
import { statvfs } from "@demu/sys";
import type { Mount } from "./fs.ts";

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

function realpath(path: string): string | undefined {
  try {
    return Deno.realPathSync(path);
  } catch {
    return undefined;
  }
}

function basename(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

/** Entries of a directory in readdir order (as C's readdir yields them). */
function entries(dir: string): Deno.DirEntry[] {
  try {
    return [...Deno.readDirSync(dir)];
  } catch {
    return [];
  }
}

/** A device's node, from the DEVNAME its uevent gives (what libudev reports). */
function devnode(sysPath: string): string | undefined {
  const m = /^DEVNAME=(.*)$/m.exec(readText(`${sysPath}/uevent`) ?? "");
  return m ? `/dev/${m[1]}` : undefined;
}

/** A udev database property of a block device (ID_SERIAL, DM_NAME), when udev keeps one. */
function udevProperty(sysPath: string, key: string): string | undefined {
  const dev = /^(\d+):(\d+)$/.exec(readText(`${sysPath}/dev`)?.trim() ?? "");
  if (!dev) return undefined;
  const db = readText(`/run/udev/data/b${dev[1]}:${dev[2]}`) ?? "";
  const m = new RegExp(`^E:${key}=(.*)$`, "m").exec(db);
  return m && m[1] !== "" ? m[1] : undefined;
}

function isVirtual(sysPath: string): boolean {
  return sysPath.includes("/devices/virtual/block/");
}

const SUPPORTED_DRIVERS = [
  "ata_piix",
  "sym53c8xx",
  "virtio-pci",
  "ahci",
  "nvme",
  "xhci_hcd",
  "ehci-pci",
];

/** Host (or ATA port) numbers beside the given one, sorted: the index of ours is the bus. */
function hostNumbers(dir: string, ata: boolean): number[] {
  const re = ata ? /^ata(\d+)/ : /^host(\d+)/;
  return entries(dir).map((e) => re.exec(e.name)).filter((m) => m).map((m) => Number(m![1]))
    .sort((a, b) => a - b);
}

interface Address {
  "bus-type": string;
  bus: number;
  unit: number;
  "pci-controller": { bus: number; slot: number; domain: number; function: number };
  dev?: string;
  target: number;
  serial?: string;
}

/** Fills bus type and position from a PCI device path; false when the controller is unknown. */
function pciAddress(sysPath: string, a: Address): boolean {
  const start = sysPath.indexOf("/devices/pci");
  if (start < 0) return false;
  const pciRe = /\/([0-9a-f]+):([0-9a-f]+):([0-9a-f]+)\.([0-9a-f]+)/y;
  // Skip the root bus component ("/devices/pci0000:00"), then walk down PCI devices (through
  // bridges) until one is bound to a storage controller driver.
  let pos = sysPath.indexOf("/", start + 1);
  pos = sysPath.indexOf("/", pos + 1);
  let pci: RegExpExecArray | null;
  let driver: string | undefined;
  for (;;) {
    pciRe.lastIndex = pos;
    pci = pciRe.exec(sysPath);
    if (!pci) return false;
    pos = pciRe.lastIndex;
    const link = realpath(`${sysPath.slice(0, pos)}/driver`);
    driver = link ? basename(link) : undefined;
    if (driver && SUPPORTED_DRIVERS.includes(driver)) break;
  }
  const tgt = /\/target\d+:\d+:\d+\/\d+:(\d+):(\d+):(\d+)/.exec(sysPath);
  const ataAt = sysPath.indexOf("/ata");
  const hostAt = ataAt >= 0 ? ataAt : sysPath.indexOf("/host");
  const host = hostAt >= 0 ? /^\/(?:ata|host)(\d+)/.exec(sysPath.slice(hostAt)) : null;
  const hosts = host ? hostNumbers(sysPath.slice(0, hostAt), ataAt >= 0) : [];
  a["pci-controller"] = {
    bus: parseInt(pci[2], 16),
    slot: parseInt(pci[3], 16),
    domain: parseInt(pci[1], 16),
    function: parseInt(pci[4], 16),
  };
  switch (driver) {
    case "ata_piix": {
      const i = host ? hosts.indexOf(Number(host[1])) : -1;
      if (!tgt || i < 0) return false;
      a["bus-type"] = "ide";
      a.bus = i;
      a.unit = Number(tgt[2]);
      return true;
    }
    case "sym53c8xx":
      if (!tgt) return false;
      a["bus-type"] = "scsi";
      a.unit = Number(tgt[2]);
      return true;
    case "virtio-pci":
      if (tgt) {
        a["bus-type"] = "scsi";
        a.unit = Number(tgt[3]);
      } else {
        a["bus-type"] = "virtio";
      }
      return true;
    case "ahci": {
      const i = host ? hosts.indexOf(Number(host[1])) : -1;
      if (!tgt || i < 0) return false;
      a["bus-type"] = "sata";
      a.unit = i;
      return true;
    }
    case "nvme":
      a["bus-type"] = "nvme";
      return true;
    default:
      a["bus-type"] = "usb";
      return true;
  }
}

/** The address of a real (non-virtual) device, or undefined when nothing is known of it. */
function realAddress(sysPath: string): Address | undefined {
  const a: Address = {
    "bus-type": "unknown",
    bus: 0,
    unit: 0,
    "pci-controller": { bus: -1, slot: -1, domain: -1, function: -1 },
    target: 0,
  };
  const dev = devnode(sysPath);
  if (dev) a.dev = dev;
  const serial = udevProperty(sysPath, "ID_SERIAL");
  if (serial) a.serial = serial;
  let known = false;
  if (sysPath.includes("/devices/pci")) known = pciAddress(sysPath, a);
  else if (sysPath.includes("/virtio") && sysPath.includes("/block")) {
    const tgt = /\/target\d+:\d+:\d+\/\d+:(\d+):(\d+):(\d+)/.exec(sysPath);
    if (tgt) [a["bus-type"], a.bus, a.target, a.unit] = ["scsi", +tgt[1], +tgt[2], +tgt[3]];
    else a["bus-type"] = "virtio";
    known = true;
  }
  return known || a.dev || a.serial ? a : undefined;
}

/**
 * The addresses under a device: its own for a real one; for a virtual one (dm, md, loop)
 * those of its slaves, recursively. Each is put in front, as qemu-ga builds the list.
 */
function addresses(devPath: string, into: Address[], depth = 0): void {
  const sys = realpath(devPath);
  if (!sys || depth > 16) return;
  if (isVirtual(sys)) {
    for (const e of entries(`${sys}/slaves`)) {
      if (e.isSymlink) addresses(`${sys}/slaves/${e.name}`, into, depth + 1);
    }
    return;
  }
  const a = realAddress(sys);
  if (a) into.unshift(a);
}

/** One guest-get-fsinfo entry. */
export function fsInfo(m: Mount): Record<string, unknown> {
  const devPath = `/sys/dev/block/${m.major}:${m.minor}`;
  const sys = realpath(devPath);
  const info: Record<string, unknown> = {
    name: basename(sys ?? devPath),
    mountpoint: m.dirname,
    type: m.devtype,
  };
  try {
    const s = statvfs(m.dirname);
    const used = s.blocks - s.bfree;
    info["used-bytes"] = used * s.frsize;
    info["total-bytes"] = (used + s.bavail) * s.frsize;
  } catch {
    // sizes are optional
  }
  const disk: Address[] = [];
  addresses(devPath, disk);
  info.disk = disk;
  return info;
}

/**
 * guest-get-disks: every non-empty block device with its dependencies (slaves) and address,
 * and its partitions, in qemu-ga's order (it puts each new entry in front).
 */
export function diskEntries(): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const e of entries("/sys/block")) {
    if (!e.isSymlink) continue;
    const dir = `/sys/block/${e.name}`;
    const size = readText(`${dir}/size`);
    if (size === undefined || size === "0\n") continue;
    const sys = realpath(dir);
    const name = sys ? devnode(sys) : undefined;
    if (!sys || !name) continue;
    const disk: Record<string, unknown> = { name, partition: false };
    const alias = udevProperty(sys, "DM_NAME");
    if (alias) disk.alias = alias;
    if (!isVirtual(sys)) {
      const a: Address[] = [];
      addresses(dir, a);
      if (a.length) disk.address = a[0];
    }
    try {
      const deps: string[] = [];
      for (const d of Deno.readDirSync(`${sys}/slaves`)) {
        const node = devnode(realpath(`${sys}/slaves/${d.name}`) ?? "");
        if (node) deps.unshift(node);
      }
      disk.dependencies = deps;
    } catch {
      // no slaves directory: no dependencies member
    }
    out.unshift(disk);
    for (const p of entries(sys)) {
      const rest = p.name.startsWith(e.name) ? p.name.slice(e.name.length) : "";
      if (!p.isDirectory || !/^(p\d|\d)/.test(rest)) continue;
      const node = devnode(`${sys}/${p.name}`);
      if (!node) continue;
      out.unshift({ name: node, partition: true, dependencies: [name] });
    }
  }
  return out;
}
