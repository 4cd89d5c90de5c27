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

/** The zone abbreviation C's strftime("%Z") prints, where Intl knows it. */
function zoneName(now: Date): string {
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
