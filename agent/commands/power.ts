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

/** Exit status of a helper (searched in PATH), or -1 when it is not installed. */
async function exitCode(argv: string[]): Promise<number> {
  if (!findProgram(argv[0])) return -1;
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

/** What /sys/power/state gets written for a mode; hybrid has no plain sysfs form. */
const SYSFS_STATE: Record<SuspendMode, string | undefined> = {
  disk: "disk",
  ram: "mem",
  hybrid: undefined,
};

/** A helper's failure in qemu-ga's words. */
function helperError(name: string, code: number): QgaError {
  return new QgaError(
    code === -1
      ? `the helper program '${name}' was not found`
      : `the helper program '${name}' returned an unexpected exit status code (${code})`,
  );
}

/**
 * Suspends the guest the ways qemu-ga tries, in its order: systemd (when
 * `systemctl status systemd-<mode>` answers with an LSB code 1..3, the unit exists),
 * pm-utils (pm-is-supported), then writing /sys/power/state. The first that works ends it;
 * if none is available the mode is reported unsupported, otherwise the last failure is.
 */
async function suspend(mode: SuspendMode): Promise<void> {
  let supported = false;
  let failure: QgaError | undefined;
  const verb = SYSTEMD_VERB[mode];
  const status = await exitCode(["systemctl", "status", `systemd-${verb}`]);
  if (status > 0 && status < 4) {
    supported = true;
    const code = await exitCode(["systemctl", verb]);
    if (code === 0) return;
    failure = helperError(`systemctl ${verb}`, code);
  }
  const pm = await exitCode(["pm-is-supported", PM_QUERY[mode]]);
  if (pm === 0) {
    supported = true;
    const code = await exitCode([PM_TOOL[mode]]);
    if (code === 0) return;
    failure = helperError(PM_TOOL[mode], code);
  }
  const state = SYSFS_STATE[mode];
  if (state && readText("/sys/power/state").includes(state)) {
    supported = true;
    try {
      await Deno.writeTextFile("/sys/power/state", state);
      return;
    } catch {
      failure = new QgaError("child process has failed to suspend");
    }
  }
  if (!supported) throw new QgaError("the requested suspend mode is not supported by the guest");
  throw failure!;
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
