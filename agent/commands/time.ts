/** guest-get-time, guest-set-time, guest-get-timezone. */
import type { CommandDef } from "../agent.ts";
import { QgaError } from "../errors.ts";
import { runChild } from "./process.ts";
import { settimeofday } from "./libc_extra.ts";

/** The wall clock in nanoseconds since the Epoch (microsecond resolution, like g_get_real_time). */
export function nowNs(): bigint {
  const us = Math.floor((performance.timeOrigin + performance.now()) * 1000);
  return BigInt(us) * 1000n;
}

function utcYear(seconds: bigint): number {
  return new Date(Number(seconds) * 1000).getUTCFullYear();
}

/** A POSIX TZ rule's zone names: "CET-1CEST,M3.5.0,..." gives std "CET", dst "CEST". */
export function posixZoneNames(rule: string): { std: string; dst?: string } | undefined {
  const name = /^(?:<([^>]+)>|([A-Za-z]{3,}))/;
  const m = name.exec(rule);
  if (!m) return undefined;
  const rest = rule.slice(m[0].length).replace(/^[-+]?\d{1,2}(:\d{2}){0,2}/, "");
  const d = name.exec(rest);
  return { std: m[1] ?? m[2], dst: d ? d[1] ?? d[2] : undefined };
}

/** The POSIX rule at the end of a TZif (v2+) file: the text between the last two newlines. */
function tzifFooter(data: Uint8Array): string | undefined {
  if (new TextDecoder().decode(data.subarray(0, 4)) !== "TZif") return undefined;
  const end = data.length - 1;
  if (data[end] !== 0x0a) return undefined;
  const start = data.lastIndexOf(0x0a, end - 1);
  return start < 0 ? undefined : new TextDecoder().decode(data.subarray(start + 1, end));
}

/** The rule the C library would use for local time: $TZ (a file or a rule), or /etc/localtime. */
function localRule(): string | undefined {
  let tz = Deno.env.get("TZ");
  if (tz?.startsWith(":")) tz = tz.slice(1);
  const file = tz === undefined || tz === ""
    ? "/etc/localtime"
    : tz.startsWith("/")
    ? tz
    : `/usr/share/zoneinfo/${tz}`;
  try {
    return tzifFooter(Deno.readFileSync(file)) ?? tz;
  } catch {
    return tz;
  }
}

/**
 * The zone abbreviation C's strftime("%Z") prints (what qemu-ga reports): taken from the
 * zone's POSIX rule, the daylight name when the current offset is not the standard one.
 */
function zoneName(now: Date): string {
  const rule = localRule();
  const names = rule ? posixZoneNames(rule) : undefined;
  if (names) {
    if (!names.dst) return names.std;
    const jan = new Date(now.getFullYear(), 0, 1).getTimezoneOffset();
    const jul = new Date(now.getFullYear(), 6, 1).getTimezoneOffset();
    const standard = Math.max(jan, jul);
    return now.getTimezoneOffset() === standard ? names.std : names.dst;
  }
  if (!rule) return "UTC";
  const part = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" })
    .formatToParts(now).find((p) => p.type === "timeZoneName")?.value;
  return part ?? "UTC";
}

export const timeCommands: CommandDef[] = [
  { name: "guest-get-time", run: () => nowNs() },
  {
    name: "guest-set-time",
    args: { "*time": "int" },
    run: async (args) => {
      if (args.time !== undefined) {
        const ns = BigInt(args.time as number | bigint);
        const sec = ns / 1_000_000_000n;
        const usec = (ns % 1_000_000_000n) / 1000n;
        const year = utcYear(sec);
        if (!(year >= 1970 && year < 2070)) throw new QgaError("Invalid time");
        settimeofday(sec, usec, "Failed to set time to guest");
      }
      // With a time, the RTC follows the system clock; without, the clock is read from the RTC.
      await runChild(
        ["hwclock", args.time !== undefined ? "-w" : "-s"],
        "set hardware clock to system time",
        undefined,
        "hwclock failed to set hardware clock to system time",
      );
    },
  },
  {
    name: "guest-get-timezone",
    run: () => {
      const now = new Date();
      return { zone: zoneName(now), offset: 0 - now.getTimezoneOffset() * 60 };
    },
  },
];
