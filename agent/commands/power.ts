/**
 * guest-shutdown and guest-suspend-disk/ram/hybrid. Both answer nothing on success (the
 * guest goes away); failures are reported. Suspend tries systemd, then pm-utils, then sysfs.
 */
import type { CommandDef } from "../agent.ts";
import { QgaError } from "../errors.ts";
import { findProgram, runChild } from "./process.ts";

const SHUTDOWN_FLAGS: Record<string, string> = { halt: "-H", powerdown: "-P", reboot: "-r" };

type SuspendMode = "disk" | "ram" | "hybrid";

const SYSTEMD_VERB: Record<SuspendMode, string> = {
  disk: "hibernate",
  ram: "suspend",
  hybrid: "hybrid-sleep",
};
const PM_TOOL: Record<SuspendMode, string> = {
  disk: "pm-hibernate",
  ram: "pm-suspend",
  hybrid: "pm-suspend-hybrid",
};
const PM_QUERY: Record<SuspendMode, string> = {
  disk: "--hibernate",
  ram: "--suspend",
  hybrid: "--suspend-hybrid",
};

function systemdRunning(): boolean {
  try {
    return Deno.statSync("/run/systemd/system").isDirectory;
  } catch {
    return false;
  }
}

async function exitCode(argv: string[]): Promise<number> {
  try {
    const s = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return s.code;
  } catch {
    return -1;
  }
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** Whether the kernel offers the mode through /sys/power (hybrid needs "suspend" in disk). */
function sysfsSupports(mode: SuspendMode): boolean {
  const states = readText("/sys/power/state").split(/\s+/);
  if (mode === "ram") return states.includes("mem");
  if (!states.includes("disk")) return false;
  if (mode === "hybrid") return /\bsuspend\b/.test(readText("/sys/power/disk"));
  return true;
}

async function suspend(mode: SuspendMode): Promise<void> {
  if (systemdRunning() && findProgram("systemctl")) {
    const unit = `systemd-${SYSTEMD_VERB[mode]}.service`;
    const code = await exitCode(["systemctl", "status", unit]);
    // 0 (active) and 3 (inactive) both mean the unit exists, so the mode is available.
    if (code === 0 || code === 3) {
      return runChild(["systemctl", SYSTEMD_VERB[mode]], "suspend");
    }
  }
  if (findProgram("pm-is-supported")) {
    if (await exitCode(["pm-is-supported", PM_QUERY[mode]]) === 0) {
      return runChild([PM_TOOL[mode]], "suspend");
    }
  }
  if (!sysfsSupports(mode)) {
    throw new QgaError("the requested suspend mode is not supported by the guest");
  }
  try {
    if (mode === "hybrid") Deno.writeTextFileSync("/sys/power/disk", "suspend");
    Deno.writeTextFileSync("/sys/power/state", mode === "ram" ? "mem" : "disk");
  } catch (e) {
    throw new QgaError(`suspend: cannot write to '/sys/power/state': ${(e as Error).message}`);
  }
}

export const powerCommands: CommandDef[] = [
  {
    name: "guest-shutdown",
    args: { "*mode": "str" },
    successResponse: false,
    run: async (args) => {
      const mode = (args.mode as string | undefined) ?? "powerdown";
      const flag = SHUTDOWN_FLAGS[mode];
      if (!flag) {
        throw new QgaError("mode is invalid (valid values are: halt|powerdown|reboot");
      }
      const prog = findProgram("shutdown") ?? "/sbin/shutdown";
      await runChild([prog, "-h", flag, "+0", "hypervisor initiated shutdown"], "shutdown");
    },
  },
  {
    name: "guest-suspend-disk",
    successResponse: false,
    run: () => suspend("disk"),
  },
  {
    name: "guest-suspend-ram",
    successResponse: false,
    run: () => suspend("ram"),
  },
  {
    name: "guest-suspend-hybrid",
    successResponse: false,
    run: () => suspend("hybrid"),
  },
];
