/**
 * qemu-system-x86_64 for demu: QEMU's command line to a PC, run under KVM (-enable-kvm,
 * -accel kvm) or the interpreter (-accel tcg, the default).
 *
 *   deno run -A emu/main.ts disk.qcow2 -nographic
 *   deno run -A emu/main.ts -enable-kvm -m 256 -cdrom boot.iso -serial stdio -display none
 */
import { type BlockDriver, openImage } from "@demu/block";
import {
  type CharBackend,
  FileBackend,
  NullBackend,
  openCharBackend,
  StdioBackend,
} from "./chardev/mod.ts";
import { Monitor } from "./chardev/monitor.ts";
import { chardevValueById, openChardev, parseChardev } from "./chardev/options.ts";
import { setupVirtio, type VirtioDriveSpec } from "./hw/virtio/board.ts";
import { parseSocketSpec, SocketBackend } from "./chardev/socket.ts";
import { TerminalDisplay, terminalKeys } from "./chardev/terminal_display.ts";
import { loadBios, loadVgaRom } from "./firmware/bios.ts";
import { LinuxBootError, parseBzImage } from "./firmware/linux.ts";
import { hostTime, InstructionTime } from "./hw/clock.ts";
import { type DriveSpec, Pc, PC_MAX_RAM } from "./hw/pc.ts";
import { SnapshotOverlay } from "./hw/snapshot.ts";
import { runInterpreter, type StopReason } from "./machine.ts";
import type { CpuControl } from "./cpu/bus.ts";

const PROG = "qemu-system-x86_64";
const VERSION = "demu 0.1.0";

/** A command-line error: printed as "qemu-system-x86_64: MESSAGE", exit 1. */
export class UsageError extends Error {}

interface DriveOption {
  spec: string;
  /** The option as typed, for messages ("-hda x"). */
  origin: string;
  file: string;
  format?: string;
  index?: number;
  media: "disk" | "cdrom";
  snapshot: boolean;
  readOnly: boolean;
}

export interface Options {
  memory: number;
  drives: DriveOption[];
  snapshot: boolean;
  bootOrder: string;
  bootMenu: boolean;
  bios?: string;
  serial: string[];
  debugcon?: string;
  monitor?: string;
  nographic: boolean;
  display: "curses" | "none";
  noReboot: boolean;
  name?: string;
  accel: "kvm" | "tcg";
  cpu?: string;
  logItems: string[];
  logFile?: string;
  help: boolean;
  version: boolean;
  kernel?: string;
  initrd?: string;
  append?: string;
  /** -vga std (true, the default) or none. */
  vga?: boolean;
  /** -S: wait for the monitor's "cont" before running. */
  startPaused?: boolean;
  /** -no-shutdown: on guest power-off stop the CPU but keep the emulator (and monitor) alive. */
  noShutdown?: boolean;
  /** -icount: instruction-counted time, 2^shift ns per instruction. */
  icount?: { shift: number; sleep: boolean };
  /** -chardev and -device values (virtio models), and -drive if=virtio disks. */
  chardevs?: string[];
  devices?: string[];
  virtioDrives?: VirtioDriveSpec[];
}

/** Options that take an argument. */
const WITH_ARG = new Set([
  "m",
  "hda",
  "hdb",
  "hdc",
  "hdd",
  "cdrom",
  "drive",
  "boot",
  "bios",
  "serial",
  "display",
  "monitor",
  "nic",
  "net",
  "netdev",
  "name",
  "machine",
  "M",
  "cpu",
  "smp",
  "accel",
  "d",
  "D",
  "debugcon",
  "vga",
  "k",
  "rtc",
  "global",
  "device",
  "chardev",
  "parallel",
  "L",
  "usbdevice",
  "icount",
  "kernel",
  "initrd",
  "append",
]);
/** Options without an argument. */
const FLAGS = new Set([
  "snapshot",
  "nographic",
  "no-reboot",
  "enable-kvm",
  "version",
  "h",
  "help",
  "S",
  "no-shutdown",
  "nodefaults",
  "no-hpet",
  "no-acpi",
  "no-user-config",
  "full-screen",
  "s",
]);

const SIZE_SUFFIX: Record<string, number> = {
  "": 2 ** 20,
  b: 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
};

/** -m: MiB by default, or with a k/M/G/T suffix; also size=... */
export function parseMemory(value: string): number {
  let v = value;
  for (const part of value.split(",")) {
    if (part.startsWith("size=")) v = part.slice(5);
    else if (!part.includes("=")) v = part;
  }
  const m = /^(\d+(?:\.\d+)?)([bkmgtBKMGT]?)$/.exec(v);
  if (!m) {
    throw new UsageError(
      `-m ${value}: Parameter 'size' expects a non-negative number below 2^64\n` +
        "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n" +
        "and exabytes, respectively.",
    );
  }
  const bytes = Math.floor(Number(m[1]) * SIZE_SUFFIX[m[2].toLowerCase()]);
  return Math.ceil(bytes / 2 ** 20) * 2 ** 20;
}

function parseKeyValues(s: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of s.split(",")) {
    if (!part) continue;
    const eq = part.indexOf("=");
    if (eq < 0) out.set(part, "on");
    else out.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return out;
}

function onOff(v: string | undefined, origin: string, key: string): boolean {
  if (v === undefined) return false;
  if (["on", "yes", "true"].includes(v)) return true;
  if (["off", "no", "false"].includes(v)) return false;
  throw new UsageError(`${origin}: Parameter '${key}' expects 'on' or 'off'`);
}

/** Parses QEMU's command line. */
export function parseArgs(args: string[]): Options {
  const o: Options = {
    memory: 128 * 2 ** 20,
    drives: [],
    snapshot: false,
    bootOrder: "cad",
    bootMenu: false,
    serial: [],
    nographic: false,
    display: "curses",
    noReboot: false,
    accel: "tcg",
    logItems: [],
    help: false,
    version: false,
  };
  let displaySet = false;
  const hd = (index: number, file: string, origin: string, media: "disk" | "cdrom" = "disk") =>
    o.drives.push({
      spec: file,
      origin,
      file,
      index,
      media,
      snapshot: false,
      readOnly: media === "cdrom",
    });
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith("-") || a === "-") {
      hd(0, a, a);
      continue;
    }
    const name = a.replace(/^--?/, "");
    let value = "";
    if (WITH_ARG.has(name)) {
      if (i + 1 >= args.length) throw new UsageError(`${a}: requires an argument`);
      value = args[++i];
    } else if (!FLAGS.has(name)) {
      throw new UsageError(`${a}: invalid option`);
    }
    const origin = `${a} ${value}`;
    switch (name) {
      case "h":
      case "help":
        o.help = true;
        break;
      case "version":
        o.version = true;
        break;
      case "m":
        o.memory = parseMemory(value);
        break;
      case "hda":
      case "hdb":
      case "hdc":
      case "hdd":
        hd(name.charCodeAt(2) - 97, value, origin);
        break;
      case "cdrom":
        hd(2, value, origin, "cdrom");
        break;
      case "drive": {
        const kv = parseKeyValues(value);
        const iface = kv.get("if") ?? "ide";
        if (iface === "virtio") {
          if (!kv.get("file")) {
            throw new UsageError(`${origin}: Device needs media, but drive is empty`);
          }
          (o.virtioDrives ??= []).push({
            file: kv.get("file")!,
            format: kv.get("format"),
            readOnly: onOff(kv.get("readonly"), origin, "readonly"),
            serial: kv.get("serial"),
            origin,
          });
          break;
        }
        if (iface !== "ide") {
          throw new UsageError(
            `${origin}: interface '${iface}' is not supported by demu (use if=ide)`,
          );
        }
        const media = kv.get("media") ?? "disk";
        if (media !== "disk" && media !== "cdrom") {
          throw new UsageError(`${origin}: '${media}' invalid media`);
        }
        const file = kv.get("file");
        if (file === undefined && media === "disk") {
          throw new UsageError(`${origin}: A block device must be specified for "file"`);
        }
        let index = kv.has("index") ? Number(kv.get("index")) : undefined;
        if (kv.has("bus") || kv.has("unit")) {
          index = Number(kv.get("bus") ?? 0) * 2 + Number(kv.get("unit") ?? 0);
        }
        if (index !== undefined && !(Number.isInteger(index) && index >= 0 && index < 4)) {
          throw new UsageError(
            `${origin}: index cannot be used with bus and unit, or is out of range`,
          );
        }
        o.drives.push({
          spec: value,
          origin,
          file: file ?? "",
          format: kv.get("format"),
          index,
          media,
          snapshot: onOff(kv.get("snapshot"), origin, "snapshot"),
          readOnly: media === "cdrom" || onOff(kv.get("readonly"), origin, "readonly"),
        });
        break;
      }
      case "snapshot":
        o.snapshot = true;
        break;
      case "boot": {
        const kv = parseKeyValues(value);
        let order = kv.get("order");
        if (!value.includes("=")) order = value.split(",")[0];
        if (kv.has("once")) order = kv.get("once");
        if (order !== undefined) {
          for (const c of order) {
            if (!"acdn".includes(c)) throw new UsageError(`Invalid boot device '${c}'`);
          }
          o.bootOrder = order;
        }
        if (kv.has("menu")) o.bootMenu = onOff(kv.get("menu"), origin, "menu");
        break;
      }
      case "bios":
        o.bios = value;
        break;
      case "kernel":
        o.kernel = value;
        break;
      case "icount": {
        const kv = parseKeyValues(value);
        const shiftText = value.includes("=") ? kv.get("shift") : value.split(",")[0];
        const shift = Number(shiftText);
        if (shiftText === undefined || !/^\d+$/.test(shiftText) || shift > 10) {
          throw new UsageError(`${origin}: icount: Invalid shift value`);
        }
        o.icount = { shift, sleep: onOff(kv.get("sleep") ?? "on", origin, "sleep") };
        break;
      }
      case "initrd":
        o.initrd = value;
        break;
      case "append":
        o.append = value;
        break;
      case "serial":
        o.serial.push(value);
        break;
      case "debugcon":
        o.debugcon = value;
        break;
      case "monitor":
        o.monitor = value;
        break;
      case "nographic":
        o.nographic = true;
        break;
      case "display": {
        const type = value.split(",")[0];
        if (type === "none") o.display = "none";
        else if (type === "curses" || type === "default") o.display = "curses";
        else throw new UsageError(`${origin}: Parameter 'type' does not accept value '${type}'`);
        displaySet = true;
        break;
      }
      case "no-reboot":
        o.noReboot = true;
        break;
      case "nic":
      case "net":
        if (value.split(",")[0] !== "none") {
          throw new UsageError(
            `${origin}: network devices are not emulated by demu yet (use ${a} none)`,
          );
        }
        break;
      case "netdev":
        throw new UsageError(`${origin}: network backends are not supported by demu yet`);
      case "name":
        o.name = value.split(",")[0].replace(/^guest=/, "");
        break;
      case "machine":
      case "M": {
        const kv = parseKeyValues(value);
        const type = value.includes("=") ? kv.get("type") : value.split(",")[0];
        if (type !== undefined && type !== "pc" && !/^pc-i440fx-/.test(type)) {
          if (type === "help") {
            throw new UsageError(
              "Supported machines are:\npc                   Standard PC (i440FX + PIIX, 1996)",
            );
          }
          throw new UsageError(
            "unsupported machine type\nUse -machine help to list supported machines",
          );
        }
        const accel = kv.get("accel");
        if (accel) o.accel = pickAccel(accel, origin);
        break;
      }
      case "cpu":
        if (
          !["host", "max", "qemu64", "qemu32", "kvm64", "pentium", "486", "base"].includes(
            value.split(",")[0],
          )
        ) {
          throw new UsageError(`unable to find CPU model '${value.split(",")[0]}'`);
        }
        o.cpu = value;
        break;
      case "smp": {
        const n = Number(value.split(",")[0].replace(/^cpus=/, ""));
        if (n !== 1) throw new UsageError(`${origin}: demu emulates one CPU (use -smp 1)`);
        break;
      }
      case "accel":
        o.accel = pickAccel(value.split(",")[0], origin);
        break;
      case "enable-kvm":
        o.accel = "kvm";
        break;
      case "d":
        o.logItems.push(...value.split(","));
        break;
      case "D":
        o.logFile = value;
        break;
      case "vga":
        if (value !== "std" && value !== "none") {
          throw new UsageError(`${origin}: demu emulates only the standard VGA (-vga std)`);
        }
        o.vga = value === "std";
        break;
      case "S":
        o.startPaused = true;
        break;
      case "no-shutdown":
        o.noShutdown = true;
        break;
      case "device":
        (o.devices ??= []).push(value);
        break;
      case "chardev":
        (o.chardevs ??= []).push(value);
        break;
      case "s":
      case "global":
        throw new UsageError(`${a}: option not supported by demu yet`);
      default:
        // Accepted for compatibility with no effect: -k, -rtc, -L, -parallel, -no-hpet, ...
        break;
    }
  }
  if (o.icount && o.accel === "kvm") {
    throw new UsageError("-icount is not allowed with hardware virtualization");
  }
  if (o.initrd !== undefined && o.kernel === undefined) {
    throw new UsageError("-initrd only allowed with -kernel option");
  }
  if (o.append !== undefined && o.kernel === undefined) {
    throw new UsageError("-append only allowed with -kernel option");
  }
  if (o.nographic && displaySet && o.display !== "none") {
    throw new UsageError("-nographic cannot be used with -display");
  }
  return o;
}

function pickAccel(v: string, origin: string): "kvm" | "tcg" {
  const first = v.split(":")[0];
  if (first === "kvm" || first === "tcg") return first;
  throw new UsageError(`${origin}: invalid accelerator ${first}`);
}

export const HELP = `usage: ${PROG} [options] [disk_image]

demu's PC emulator (${VERSION}), with QEMU's command line.

Standard options:
-h, -help           display this help and exit
-version            display version information and exit
-machine pc         the i440FX + PIIX PC (the only machine)
-accel kvm|tcg      accelerator (default tcg: demu's interpreter); -enable-kvm = -accel kvm
-cpu host|qemu64    CPU model (KVM passes the host's CPUID through)
-smp 1              one CPU
-m SIZE             guest RAM in MiB, or with a k/M/G suffix (default 128M)
-name NAME          the guest's name

Block devices:
-hda/-hdb/-hdc/-hdd FILE   IDE disk images (the first positional argument is -hda)
-cdrom FILE         IDE CD-ROM image (ide1-0)
-drive file=FILE[,format=raw|qcow2][,if=ide][,index=N][,media=disk|cdrom][,snapshot=on][,readonly=on]
-snapshot           write to a temporary overlay; the images stay untouched
-boot [order=]DRIVES[,menu=on|off]   boot order: c (disk), d (CD-ROM), a, n (default cad)
-bios FILE          BIOS image (default: SeaBIOS bios-256k.bin)
-kernel bzImage     boot a Linux kernel directly (x86 boot protocol; no BIOS runs)
-initrd FILE        its initial ram disk; -append CMDLINE its command line

Display and character devices:
-nographic          no display; COM1 and the monitor on stdio (Ctrl-A X quits, Ctrl-A C monitor)
-display none|curses  no display, or the VGA text screen in this terminal (default)
-serial DEV         COM1 backend: stdio, mon:stdio, file:PATH, none, null,
                    tcp:[HOST]:PORT[,server=on][,wait=off], unix:PATH[,server=on][,wait=off]
-debugcon DEV       the 0x402 debug console (SeaBIOS's log), same backends
-monitor stdio      the human monitor (info status, info registers, system_reset,
                    system_powerdown, quit)
-chardev socket,id=ID,path=PATH|host=H,port=P[,server=on][,wait=off]
-chardev stdio|null,id=ID | file,id=ID,path=PATH | pipe,id=ID,path=PATH
-device virtio-serial-pci[,max_ports=N]  (or virtio-serial) the virtio console bus, with
-device virtserialport|virtconsole[,chardev=ID][,name=NAME][,nr=N]  its ports, e.g. the guest
                    agent's: virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
-drive if=virtio,file=FILE[,format=raw|qcow2][,readonly=on][,serial=S]  a virtio-blk-pci disk

Other:
-no-reboot          exit instead of rebooting
-no-shutdown        on guest power-off stop the CPU but keep the monitor (quit ends)
-S                  do not start the CPU until the monitor's cont
-vga std|none       the standard VGA (default) or no display adapter
-nic none, -net none  no network card (none is emulated yet)
-d ITEMS            log int, cpu_reset, guest_errors, unimp; -D FILE logs to FILE
-icount shift=N[,sleep=off]  instruction-counted time (2^N ns each; interpreter only):
                    with sleep=off a run is deterministic and idle time costs nothing
`;

/** The strerror text of a Deno file error. */
function errnoText(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "No such file or directory";
  if (e instanceof Deno.errors.PermissionDenied) return "Permission denied";
  if (e instanceof Deno.errors.IsADirectory) return "Is a directory";
  return (e as Error).message;
}

function fail(message: string): never {
  throw new UsageError(message);
}

/** Opens the drives as QEMU attaches them: explicit indexes first, then the free slots. */
async function openDrives(o: Options): Promise<DriveSpec[]> {
  const used = new Map<number, DriveOption>();
  for (const d of o.drives) {
    if (d.index === undefined) continue;
    if (used.has(d.index)) {
      fail(
        `${d.origin}: drive with bus=${d.index >> 1}, unit=${
          d.index & 1
        } (index=${d.index}) exists`,
      );
    }
    used.set(d.index, d);
  }
  for (const d of o.drives) {
    if (d.index !== undefined) continue;
    let i = 0;
    while (used.has(i)) i++;
    if (i > 3) fail(`${d.origin}: too many IDE drives`);
    d.index = i;
    used.set(i, d);
  }
  const out: DriveSpec[] = [];
  for (const d of used.values()) {
    // An IDE hard disk cannot be read-only (QEMU refuses the same way).
    if (d.readOnly && d.media === "disk") fail("Block node is read-only");
  }
  for (const [index, d] of [...used].sort((a, b) => a[0] - b[0])) {
    let driver: BlockDriver | null = null;
    if (d.file) {
      const snapshot = (o.snapshot || d.snapshot) && !d.readOnly;
      try {
        driver = await openImage(d.file, {
          format: d.format,
          readOnly: d.readOnly || snapshot,
          // QEMU warns about probed raw images only where the guest could write block 0.
          warn: d.readOnly ? () => {} : (m) => console.error(m),
        });
      } catch (e) {
        fail(`${d.origin}: ${(e as Error).message}`);
      }
      if (snapshot) driver = await SnapshotOverlay.over(driver);
    }
    out.push({ index, media: d.media, driver });
  }
  // The pc machine's default CD-ROM drive (empty) at ide1-0 when that slot is free.
  if (!used.has(2)) out.push({ index: 2, media: "cdrom", driver: null });
  return out;
}

/** Something that runs the PC and can describe the CPU state. */
interface Accelerator {
  run(): Promise<StopReason>;
  registers(): string;
  close(): void;
}

async function kvmAccelerator(pc: Pc, vm: unknown): Promise<Accelerator> {
  const { KvmAccel } = await import("./kvm/accel.ts");
  // deno-lint-ignore no-explicit-any
  const a = new KvmAccel(pc.machine, vm as any);
  return { run: () => a.run(), registers: () => a.vcpu.dump(), close: () => a.close() };
}

async function tcgAccelerator(pc: Pc, icount: InstructionTime | null): Promise<Accelerator> {
  // The interpreter is loaded by name so that a CPU under construction never breaks -enable-kvm.
  const spec = "./cpu/cpu.ts";
  let mod: { Cpu?: new (bus: Pc["machine"]) => CpuControl };
  try {
    mod = await import(spec);
  } catch (e) {
    fail(
      `the interpreter (-accel tcg) is not available yet: ${
        (e as Error).message.split("\n")[0]
      }; use -enable-kvm`,
    );
  }
  if (!mod.Cpu) fail("the interpreter (-accel tcg) is not available yet; use -enable-kvm");
  const cpu = new mod.Cpu(pc.machine);
  return {
    run: () => runInterpreter(pc.machine, cpu, icount),
    registers: () => {
      const d = (cpu as unknown as { dump?: () => string }).dump;
      return d ? d.call(cpu) : "registers are not available from the interpreter";
    },
    close: () => {},
  };
}

/** Runs the emulator; returns the exit status. */
export async function main(args: string[]): Promise<number> {
  let o: Options;
  try {
    o = parseArgs(args);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`${PROG}: ${e.message}`);
      return 1;
    }
    throw e;
  }
  if (o.help) {
    console.log(HELP);
    return 0;
  }
  if (o.version) {
    console.log(`QEMU emulator version 7.2.0 (${VERSION})\nCopyright (c) 2026 the demu authors`);
    return 0;
  }
  try {
    return await start(o);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`${PROG}: ${e.message}`);
      return 1;
    }
    console.error(`${PROG}: ${(e as Error).message ?? e}`);
    return 1;
  }
}

async function start(o: Options): Promise<number> {
  // As QEMU's pc: from 3.5 GiB of RAM on, 3 GiB stay below 4 GiB and the rest goes above.
  let lowRam = o.memory, highRam = 0;
  if (o.memory >= PC_MAX_RAM) {
    if (o.accel !== "kvm") {
      fail(
        `-m: the interpreter maps RAM below 4 GiB only (at most ${PC_MAX_RAM / 2 ** 20} MiB ` +
          "without -enable-kvm)",
      );
    }
    lowRam = 0xc0000000;
    highRam = o.memory - lowRam;
  }
  if (o.memory < 2 ** 20) fail("-m: RAM size too small");
  let bios: Uint8Array;
  try {
    bios = loadBios(o.bios);
  } catch (e) {
    console.error(`qemu: ${(e as Error).message}`);
    return 1;
  }
  let linux: { image: Uint8Array; initrd: Uint8Array | null; cmdline: string } | undefined;
  if (o.kernel !== undefined) {
    let image: Uint8Array;
    try {
      image = await Deno.readFile(o.kernel);
    } catch (e) {
      console.error(`qemu: could not open kernel file '${o.kernel}': ${errnoText(e)}`);
      return 1;
    }
    try {
      parseBzImage(image);
    } catch (e) {
      console.error(
        e instanceof LinuxBootError && /header/.test(e.message)
          ? "qemu: invalid kernel header"
          : `qemu: ${(e as Error).message}`,
      );
      return 1;
    }
    let initrd: Uint8Array | null = null;
    if (o.initrd !== undefined) {
      try {
        initrd = await Deno.readFile(o.initrd);
      } catch (e) {
        console.error(`qemu: error reading initrd ${o.initrd}: ${errnoText(e)}`);
        return 1;
      }
    }
    linux = { image, initrd, cmdline: o.append ?? "" };
  }
  const drives = await openDrives(o);
  const closers: (() => void | Promise<void>)[] = [];
  for (const d of drives) if (d.driver) closers.push(() => d.driver!.close());

  // Logging (-d / -D).
  const logSink = o.logFile ? new FileBackend(o.logFile) : null;
  const enc = new TextEncoder();
  const logItems = new Set(o.logItems);
  for (const item of logItems) {
    if (!["int", "cpu_reset", "guest_errors", "unimp", "in_asm", "exec", "cpu"].includes(item)) {
      fail(`-d ${o.logItems.join(",")}: unknown logging item '${item}'`);
    }
  }
  const log = (cat: string, msg: string) => {
    if (!logItems.has(cat)) return;
    const line = enc.encode(msg + "\n");
    if (logSink) logSink.write(line);
    else Deno.stderr.writeSync(line);
  };

  // Character devices: -nographic puts COM1 and the monitor on stdio (mux), as QEMU does.
  let stdio: StdioBackend | null = null;
  const serialChardevs = new Set<string>(); // -chardev values COM1 took (-serial chardev:ID)
  const char = async (spec: string, opt = "-serial"): Promise<CharBackend> => {
    if (opt === "-serial" && spec.startsWith("chardev:")) {
      const value = chardevValueById(o.chardevs ?? [], spec.slice(8));
      if (value === undefined) {
        fail(`${opt} ${spec}: could not connect serial device to character backend '${spec}'`);
      }
      serialChardevs.add(value);
      try {
        return await openChardev(parseChardev(value), (so) => {
          if (stdio) fail(`-chardev ${value}: cannot use stdio by multiple character devices`);
          return stdio = new StdioBackend(so.mux, so.signal);
        }, (m) => console.error(`${PROG}: ${m}`));
      } catch (e) {
        fail((e as Error).message);
      }
    }
    const sock = parseSocketSpec(spec);
    if (sock) {
      try {
        return await SocketBackend.open(
          sock,
          (m) => console.error(`${PROG}: ${opt} ${spec}: info: ${m}`),
        );
      } catch (e) {
        fail(
          `${opt} ${spec}: ${(e as Error).message}` +
            (opt === "-serial"
              ? `\n${PROG}: ${opt} ${spec}: could not connect serial device to character backend '${spec}'`
              : ""),
        );
      }
    }
    if (spec === "stdio" || spec === "mon:stdio") {
      if (stdio) fail(`-serial ${spec}: cannot use stdio by multiple character devices`);
      stdio = new StdioBackend(spec === "mon:stdio");
      return stdio;
    }
    if (spec === "vc" || spec.startsWith("vc:")) return new NullBackend();
    if (/^(udp|pty|pipe|chardev):/.test(spec) || spec === "pty") {
      fail(
        `-serial ${spec}: character backend '${spec.split(":")[0]}' is not supported by demu yet`,
      );
    }
    try {
      return openCharBackend(spec);
    } catch (e) {
      fail(
        `-serial ${spec}: ${(e as Error).message}\n${PROG}: -serial ${spec}: ` +
          `could not connect serial device to character backend '${spec}'`,
      );
    }
  };
  const serialSpec = o.serial[0] ?? (o.nographic ? "mon:stdio" : "vc");
  const serial = await char(serialSpec);
  const debugcon = o.debugcon ? await char(o.debugcon, "-debugcon") : null;
  closers.push(() => serial.close(), () => debugcon?.close());

  // Guest RAM: KVM's mmap, or a plain buffer for the interpreter.
  let vm: { ram: { buffer: ArrayBuffer }; close(): void } | null = null;
  if (o.accel === "kvm") {
    const { KvmVm, KvmUnavailableError } = await import("./kvm/vm.ts");
    try {
      // DEMU_KVM_DEVICE points the accelerator at another device node (tests use it).
      const kvm = KvmVm.create(lowRam, Deno.env.get("DEMU_KVM_DEVICE") ?? "/dev/kvm");
      if (highRam) kvm.addHighRam(highRam);
      vm = kvm;
    } catch (e) {
      if (e instanceof KvmUnavailableError) {
        console.error(e.message);
        const why = e.message.replace(/^.*: /, "");
        console.error(`${PROG}: failed to initialize kvm: ${why}`);
        return 1;
      }
      throw e;
    }
  }
  const ram = vm ? new Uint8Array(vm.ram.buffer) : new Uint8Array(lowRam);

  let icount: InstructionTime | null = null;
  if (o.icount) {
    icount = new InstructionTime(o.icount.shift);
    icount.sleep = o.icount.sleep;
  }
  const pc = await Pc.create({
    ram,
    highRamSize: highRam,
    bios,
    vgaRom: loadVgaRom(),
    vga: o.vga ?? true,
    drives,
    serial,
    debugcon,
    nographic: o.nographic,
    bootOrder: o.bootOrder,
    bootMenu: o.bootMenu,
    timeSource: icount ? icount.source : hostTime,
    linux,
  });
  const m = pc.machine;
  const virtio = await setupVirtio(pc, {
    chardevs: (o.chardevs ?? []).filter((v) => !serialChardevs.has(v)),
    devices: o.devices ?? [],
    drives: o.virtioDrives ?? [],
    linuxBoot: linux !== undefined,
    stdio: (so) => {
      if (stdio) fail("-chardev stdio: cannot use stdio by multiple character devices");
      return stdio = new StdioBackend(so.mux, so.signal);
    },
    info: (msg) => console.error(`${PROG}: ${msg}`),
  });
  closers.push(() => virtio.close());
  m.noReboot = o.noReboot;
  m.log = log;
  if (logItems.has("guest_errors")) {
    // QEMU's wording for accesses to unassigned physical memory.
    m.memory.onUnassigned = (addr, write) =>
      log(
        "guest_errors",
        `Invalid ${write ? "write" : "read"} at addr 0x${addr.toString(16).toUpperCase()}, ` +
          "size 1, region '(null)', reason: rejected",
      );
  }
  if (logItems.has("unimp") || logItems.has("guest_errors")) {
    m.io.onUnassigned = (port, size, write, value) =>
      log(
        "unimp",
        `unassigned io ${write ? "write" : "read"} 0x${port.toString(16)}` +
          (write ? ` value 0x${value.toString(16)}` : "") + ` size ${size}`,
      );
  }

  const accel = vm ? await kvmAccelerator(pc, vm) : await tcgAccelerator(pc, icount);

  // Monitor and front ends.
  // Run state for the monitor: -S holds the start until "cont"; -no-shutdown keeps the
  // emulator after a guest power-off until "quit".
  let state = o.startPaused ? "paused (prelaunch)" : "running";
  let start: (() => void) | null = null, quitted: (() => void) | null = null;
  const started = new Promise<void>((r) => start = r);
  const quitRequested = new Promise<void>((r) => quitted = r);
  const quit = () => {
    m.stop({ kind: "quit" });
    start!();
    quitted!();
  };
  const monitorTarget = {
    status: () => state,
    cont: () => {
      if (state === "paused (prelaunch)") {
        state = "running";
        start!();
      }
    },
    registers: () => accel.registers(),
    reset: () => m.requestReset(),
    powerdown: () => pc.pm.powerButton(),
    quit,
  };
  const out = (s: string) => Deno.stdout.writeSync(enc.encode(s));
  if (o.monitor === "stdio" || (o.monitor === undefined && false)) {
    if (stdio) fail("-monitor stdio: cannot use stdio by multiple character devices");
    const mon = new Monitor(monitorTarget, out);
    const be = new StdioBackend(false);
    be.setReceiver((b) => mon.input(b));
    mon.banner();
    closers.push(() => be.close());
  } else if (o.monitor !== undefined && o.monitor !== "none") {
    fail(`-monitor ${o.monitor}: demu's monitor supports only stdio`);
  }
  const mux = stdio as StdioBackend | null;
  if (mux?.mux) {
    mux.onQuit = quit;
    const mon = new Monitor(monitorTarget, out);
    let inMonitor = false;
    mux.onCommand = () => {
      inMonitor = !inMonitor;
      if (inMonitor) mon.banner();
      else out("\r\n");
    };
    mux.monitorInput = (b) => inMonitor ? (mon.input(b), true) : false;
  }
  let display: TerminalDisplay | null = null;
  if (!o.nographic && o.display === "curses" && pc.vga) {
    display = new TerminalDisplay(pc.vga, (b) => Deno.stdout.writeSync(b));
    display.start();
    if (!stdio) {
      const keys = new StdioBackend(true);
      keys.onQuit = quit;
      keys.setReceiver((b) => terminalKeys(b, (c, r, e) => pc.kbc.keySet2(c, r, e)));
      closers.push(() => keys.close());
    }
  }

  const onSignal = (sig: string) => () => {
    console.error(`${PROG}: terminating on signal ${sig === "SIGINT" ? 2 : 15}`);
    quit();
  };
  const onInt = onSignal("SIGINT"), onTerm = onSignal("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  let reason: StopReason;
  try {
    if (o.startPaused) await started;
    reason = m.stopReason ?? await accel.run();
    if (reason.kind === "poweroff" && o.noShutdown) {
      state = "paused (shutdown)";
      await quitRequested;
      reason = { kind: "quit" };
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onInt);
    Deno.removeSignalListener("SIGTERM", onTerm);
    display?.stop();
    for (const c of closers) await c();
    logSink?.close();
    accel.close();
  }
  if (reason.kind === "error") {
    console.error(reason.message);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  const code = await main(Deno.args);
  Deno.exit(code);
}
