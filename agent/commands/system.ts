/**
 * Read-only system information: host name, OS info, logged-in users, load, CPU and disk
 * statistics. All of it comes from /proc, /etc and utmp, as qemu-ga reads it on Linux.
 */
import type { CommandDef } from "../agent.ts";
import { QgaError } from "../errors.ts";

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** Parses os-release(5): KEY=value lines, values possibly shell-quoted. */
export function parseOsRelease(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2];
    if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v.at(-1) === v[0]) {
      const q = v[0];
      v = v.slice(1, -1);
      if (q === '"') v = v.replace(/\\([$"`\\])/g, "$1");
    }
    out.set(m[1], v);
  }
  return out;
}

function machine(): string {
  return Deno.build.arch === "x86_64" ? "x86_64" : Deno.build.arch;
}

/** struct utmp on x86_64 Linux: 384 bytes; the fields the agent needs. */
const UTMP_SIZE = 384;
const USER_PROCESS = 7;

/** The users logged in according to utmp, each with the time of their first login. */
export function readUtmpUsers(path = "/var/run/utmp"): { user: string; "login-time": number }[] {
  let data: Uint8Array;
  try {
    data = Deno.readFileSync(path);
  } catch {
    return [];
  }
  const users = new Map<string, number>();
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const dec = new TextDecoder();
  for (let off = 0; off + UTMP_SIZE <= data.length; off += UTMP_SIZE) {
    if (dv.getInt32(off, true) !== USER_PROCESS) continue;
    const raw = data.subarray(off + 44, off + 76);
    const end = raw.indexOf(0);
    const user = dec.decode(end < 0 ? raw : raw.subarray(0, end));
    if (!user) continue;
    const t = dv.getInt32(off + 340, true) + dv.getInt32(off + 344, true) / 1e6;
    const prev = users.get(user);
    if (prev === undefined || t < prev) users.set(user, t);
  }
  return [...users].map(([user, t]) => ({ user, "login-time": t }));
}

/** USER_HZ on Linux; /proc/stat counts in these ticks, qemu-ga reports milliseconds. */
const USER_HZ = 100;

const CPU_FIELDS = [
  "user",
  "nice",
  "system",
  "idle",
  "iowait",
  "irq",
  "softirq",
  "steal",
  "guest",
  "guestnice",
] as const;

const DISK_FIELDS = [
  "read-ios",
  "read-merges",
  "read-sectors",
  "read-ticks",
  "write-ios",
  "write-merges",
  "write-sectors",
  "write-ticks",
  "ios-pgr",
  "total-ticks",
  "weight-ticks",
  "discard-ios",
  "discard-merges",
  "discard-sectors",
  "discard-ticks",
  "flush-ios",
  "flush-ticks",
] as const;

export const systemCommands: CommandDef[] = [
  { name: "guest-get-host-name", run: () => ({ "host-name": Deno.hostname() }) },
  {
    name: "guest-get-osinfo",
    run: () => {
      const info: Record<string, string> = {
        "kernel-release": readText("/proc/sys/kernel/osrelease")?.trim() ?? Deno.osRelease(),
        "kernel-version": readText("/proc/sys/kernel/version")?.trim() ?? "",
        machine: machine(),
      };
      const rel = readText("/etc/os-release") ?? readText("/usr/lib/os-release");
      if (rel !== undefined) {
        const kv = parseOsRelease(rel);
        const map: [string, string][] = [
          ["ID", "id"],
          ["NAME", "name"],
          ["PRETTY_NAME", "pretty-name"],
          ["VERSION", "version"],
          ["VERSION_ID", "version-id"],
          ["VARIANT", "variant"],
          ["VARIANT_ID", "variant-id"],
        ];
        for (const [k, name] of map) {
          const v = kv.get(k);
          if (v !== undefined) info[name] = v;
        }
      }
      return info;
    },
  },
  { name: "guest-get-users", run: () => readUtmpUsers() },
  {
    name: "guest-get-load",
    run: () => {
      const text = readText("/proc/loadavg");
      if (text === undefined) throw new QgaError("failed to read /proc/loadavg");
      const [a, b, c] = text.split(/\s+/).map(Number);
      return { load1: a, load5: b, load15: c };
    },
  },
  {
    name: "guest-get-cpustats",
    run: () => {
      const text = readText("/proc/stat");
      if (text === undefined) {
        throw new QgaError("can't open '/proc/stat': No such file or directory");
      }
      const out = [];
      for (const line of text.split("\n")) {
        const m = /^cpu(\d+)\s+(.*)$/.exec(line);
        if (!m) continue;
        const v = m[2].trim().split(/\s+/).map(Number);
        const entry: Record<string, unknown> = { type: "linux", cpu: Number(m[1]) };
        CPU_FIELDS.forEach((f, i) => {
          if (i < v.length) entry[f] = v[i] * (1000 / USER_HZ);
        });
        out.push(entry);
      }
      return out;
    },
  },
  {
    name: "guest-get-diskstats",
    run: () => {
      const text = readText("/proc/diskstats");
      if (text === undefined) {
        throw new QgaError("can't open '/proc/diskstats': No such file or directory");
      }
      const out = [];
      for (const line of text.split("\n")) {
        const f = line.trim().split(/\s+/);
        if (f.length < 14) continue;
        const stats: Record<string, number> = {};
        DISK_FIELDS.forEach((name, i) => {
          if (3 + i < f.length) stats[name] = Number(f[3 + i]);
        });
        out.push({ name: f[2], major: Number(f[0]), minor: Number(f[1]), stats });
      }
      return out;
    },
  },
];
