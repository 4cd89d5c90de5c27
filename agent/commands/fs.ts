/**
 * Filesystems and disks: guest-get-fsinfo, guest-get-disks, guest-fsfreeze-*, guest-fstrim.
 * The mount list is /proc/self/mountinfo restricted to block-device filesystems (major != 0);
 * disk addresses come from the device's sysfs path (PCI address, bus type, SCSI tuple).
 */
import type { CommandDef, GuestAgent } from "../agent.ts";
import { errnoText, QgaError } from "../errors.ts";
import { fsFreeze, fsThaw, fsTrim, statvfs, SysError } from "@demu/sys";
import type { PersistentState } from "../state.ts";

/** One mounted block-device filesystem. */
export interface Mount {
  dirname: string;
  devtype: string;
  major: number;
  minor: number;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/** Parses mountinfo text into the mounts qemu-ga considers (block devices, not cifs/smbfs). */
export function parseMountinfo(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    const dash = f.indexOf("-");
    if (f.length < 10 || dash < 6) continue;
    const [maj, min] = f[2].split(":").map(Number);
    const type = f[dash + 1];
    if (maj === 0 || type === "smbfs" || type === "cifs") continue;
    out.push({ dirname: unescapeMount(f[4]), devtype: type, major: maj, minor: min });
  }
  return out;
}

/** The current mounts; throws qemu-ga's error when mountinfo cannot be read. */
export function mountList(): Mount[] {
  try {
    return parseMountinfo(Deno.readTextFileSync("/proc/self/mountinfo"));
  } catch (e) {
    throw new QgaError(`failed to open /proc/self/mountinfo: ${errnoText(e)}`);
  }
}

function readTrim(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim();
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

/** The address of a disk as the QGA schema describes it (GuestDiskAddress). */
function diskAddress(sysPath: string, devName: string): Record<string, unknown> | undefined {
  const pci = [...sysPath.matchAll(/\/([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])(?=\/)/g)]
    .at(-1);
  if (!pci) return undefined;
  const controller = {
    bus: parseInt(pci[2], 16),
    slot: parseInt(pci[3], 16),
    domain: parseInt(pci[1], 16),
    function: parseInt(pci[4], 16),
  };
  let busType = "unknown";
  let bus = 0, target = 0, unit = 0;
  const scsi = /\/(\d+):(\d+):(\d+):(\d+)\/block\//.exec(sysPath);
  if (/\/virtio\d+\/block\//.test(sysPath)) {
    busType = "virtio";
  } else if (/\/nvme\//.test(sysPath)) {
    busType = "nvme";
  } else if (scsi) {
    bus = Number(scsi[2]);
    target = Number(scsi[3]);
    unit = Number(scsi[4]);
    busType = /\/ata\d+\//.test(sysPath) ? "sata" : /\/usb\d+\//.test(sysPath) ? "usb" : "scsi";
  }
  const addr: Record<string, unknown> = {
    "bus-type": busType,
    bus,
    unit,
    "pci-controller": controller,
    dev: `/dev/${devName}`,
    target,
  };
  return addr;
}

/** The whole-disk sysfs directory for a block device (a partition's parent). */
function diskOf(sysPath: string): string {
  return readTrim(`${sysPath}/partition`) !== undefined
    ? sysPath.slice(0, sysPath.lastIndexOf("/"))
    : sysPath;
}

/** Disk addresses under a device, following device-mapper slaves down to real disks. */
function addressesFor(sysPath: string, depth = 0): Record<string, unknown>[] {
  const disk = diskOf(sysPath);
  const slaves: string[] = [];
  try {
    for (const e of Deno.readDirSync(`${disk}/slaves`)) slaves.push(e.name);
  } catch {
    // not a stacked device
  }
  if (slaves.length && depth < 8) {
    return slaves.flatMap((s) => {
      const p = realpath(`${disk}/slaves/${s}`);
      return p ? addressesFor(p, depth + 1) : [];
    });
  }
  const a = diskAddress(disk, disk.slice(disk.lastIndexOf("/") + 1));
  return a ? [a] : [];
}

function fsInfo(m: Mount): Record<string, unknown> {
  const sys = realpath(`/sys/dev/block/${m.major}:${m.minor}`);
  const name = sys ? sys.slice(sys.lastIndexOf("/") + 1) : `${m.major}:${m.minor}`;
  const info: Record<string, unknown> = { name, mountpoint: m.dirname, type: m.devtype };
  try {
    const s = statvfs(m.dirname);
    const used = (s.blocks - s.bfree) * s.frsize;
    info["used-bytes"] = used;
    info["total-bytes"] = (s.blocks - s.bfree + s.bavail) * s.frsize;
  } catch {
    // sizes are optional
  }
  info.disk = sys ? addressesFor(sys) : [];
  return info;
}

/** Block devices that are disks (not virtual ones like loop or zram; device-mapper counts). */
function diskEntries(): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  let names: string[] = [];
  try {
    names = [...Deno.readDirSync("/sys/block")].map((e) => e.name).sort();
  } catch {
    return out;
  }
  for (const name of names) {
    const sys = realpath(`/sys/block/${name}`);
    if (!sys) continue;
    const isDm = name.startsWith("dm-");
    if (sys.includes("/devices/virtual/") && !isDm) continue;
    const deps: string[] = [];
    try {
      for (const e of Deno.readDirSync(`${sys}/slaves`)) deps.push(`/dev/${e.name}`);
    } catch {
      // none
    }
    const disk: Record<string, unknown> = {
      name: `/dev/${name}`,
      dependencies: deps.sort(),
      partition: false,
    };
    if (isDm) {
      const alias = readTrim(`${sys}/dm/name`);
      if (alias) disk.alias = alias;
    }
    const addr = isDm ? undefined : diskAddress(sys, name);
    if (addr) disk.address = addr;
    out.push(disk);
    try {
      for (const e of [...Deno.readDirSync(sys)].sort((a, b) => a.name < b.name ? -1 : 1)) {
        if (!e.isDirectory || readTrim(`${sys}/${e.name}/partition`) === undefined) continue;
        out.push({
          name: `/dev/${e.name}`,
          dependencies: [`/dev/${name}`],
          partition: true,
        });
      }
    } catch {
      // no partitions
    }
  }
  return out;
}

function freezeState(agent: GuestAgent): PersistentState {
  const s = agent.state.get("persistent") as PersistentState | undefined;
  if (!s) throw new QgaError("state directory is not available");
  return s;
}

async function runHook(agent: GuestAgent, arg: "freeze" | "thaw"): Promise<void> {
  const hook = agent.options.fsfreezeHook;
  if (!hook) return;
  try {
    const st = Deno.statSync(hook);
    if (!st.isFile || !((st.mode ?? 0) & 0o111)) throw new Error("not executable");
  } catch {
    throw new QgaError(`can't access fsfreeze hook '${hook}'`);
  }
  const s = await new Deno.Command(hook, { args: [arg], stdin: "null" }).output();
  if (!s.success) throw new QgaError(`fsfreeze hook has failed with status ${s.code}`);
}

function setFrozen(agent: GuestAgent, frozen: boolean): void {
  agent.frozen = frozen;
  freezeState(agent).markFrozen(frozen);
}

/** Thaws every mount (FITHAW until EINVAL, undoing stacked freezes); returns how many thawed. */
function thawAll(): number {
  let n = 0;
  for (const m of mountList()) {
    let thawed = false;
    for (let tries = 0; tries < 64; tries++) {
      try {
        fsThaw(m.dirname);
        thawed = true;
      } catch {
        break;
      }
    }
    if (thawed) n++;
  }
  return n;
}

async function freeze(agent: GuestAgent, mountpoints?: string[]): Promise<number> {
  await runHook(agent, "freeze");
  setFrozen(agent, true);
  let count = 0;
  try {
    const mounts = mountList().reverse();
    for (const m of mounts) {
      if (mountpoints && !mountpoints.includes(m.dirname)) continue;
      try {
        fsFreeze(m.dirname);
        count++;
      } catch (e) {
        if (e instanceof SysError && e.errno === 95) continue; // EOPNOTSUPP: not freezable
        const why = e instanceof SysError ? e.message : errnoText(e);
        const verb = e instanceof SysError && e.call === "open" ? "open" : "freeze";
        throw new QgaError(`failed to ${verb} ${m.dirname}: ${why}`);
      }
    }
  } catch (e) {
    thawAll();
    setFrozen(agent, false);
    await runHook(agent, "thaw").catch(() => {});
    throw e;
  }
  // Nothing frozen: back to thawed (qemu-ga runs no thaw hook then).
  if (count === 0) setFrozen(agent, false);
  return count;
}

export const fsCommands: CommandDef[] = [
  { name: "guest-get-fsinfo", run: () => mountList().map(fsInfo) },
  { name: "guest-get-disks", run: () => diskEntries() },
  {
    name: "guest-fsfreeze-status",
    run: (_args, { agent }) => agent.frozen ? "frozen" : "thawed",
  },
  { name: "guest-fsfreeze-freeze", run: (_a, { agent }) => freeze(agent) },
  {
    name: "guest-fsfreeze-freeze-list",
    args: { "*mountpoints": { list: "str" } },
    run: (args, { agent }) => freeze(agent, args.mountpoints as string[] | undefined),
  },
  {
    name: "guest-fsfreeze-thaw",
    run: async (_a, { agent }) => {
      const n = thawAll();
      setFrozen(agent, false);
      await runHook(agent, "thaw");
      return n;
    },
  },
  {
    name: "guest-fstrim",
    args: { "*minimum": "int" },
    run: (args) => {
      const minimum = BigInt((args.minimum as number | bigint | undefined) ?? 0);
      const paths = [];
      for (const m of mountList()) {
        try {
          const r = fsTrim(m.dirname, minimum < 0n ? 0n : minimum);
          paths.push({ path: m.dirname, trimmed: r.trimmed, minimum: r.minimum });
        } catch (e) {
          const errno = e instanceof SysError ? e.errno : 0;
          const error = errno === 25 || errno === 95
            ? "trim not supported"
            : e instanceof SysError && e.call === "open"
            ? `failed to open: ${e.message}`
            : `failed to trim: ${e instanceof Error ? e.message : e}`;
          paths.push({ path: m.dirname, error });
        }
      }
      return { paths };
    },
  },
];
