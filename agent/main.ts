/**
 * qemu-ga: the guest agent, with qemu-ga's command line.
 *
 *   deno run -A agent/main.ts -m unix-listen -p /run/qga.sock -t /tmp/state
 *   deno run -A agent/main.ts -m virtio-serial   # /dev/virtio-ports/org.qemu.guest_agent.0
 */
import { QGA_VERSION } from "./agent.ts";
import { type Channel, DEFAULT_PATHS, listenUnix, openCharDevice } from "./channel.ts";
import { ALL_COMMANDS } from "./commands/mod.ts";
import { createGuestAgent } from "./service.ts";

const PROG = "qemu-ga";
const DEFAULT_STATEDIR = "/var/run";
const DEFAULT_PIDFILE = "/var/run/qemu-ga.pid";
const DEFAULT_FSFREEZE_HOOK = "/etc/qemu/fsfreeze-hook";
const DAEMON_CHILD_ENV = "DEMU_QGA_DAEMON_CHILD";

const HELP = `Usage: ${PROG} [-m <method> -p <path>] [<options>]
QEMU Guest Agent ${QGA_VERSION} (demu)

  -m, --method      transport method: one of unix-listen, virtio-serial, or
                    isa-serial (virtio-serial is the default)
  -p, --path        device/socket path (the default for virtio-serial is:
                    ${DEFAULT_PATHS["virtio-serial"]},
                    the default for isa-serial is:
                    ${DEFAULT_PATHS["isa-serial"]})
  -l, --logfile     set logfile path, logs to stderr by default
  -f, --pidfile     specify pidfile (default is ${DEFAULT_PIDFILE})
  -F, --fsfreeze-hook
                    enable fsfreeze hook. Accepts an optional argument that
                    specifies script to run on freeze/thaw. Script will be
                    called with 'freeze'/'thaw' arguments accordingly.
                    (default is ${DEFAULT_FSFREEZE_HOOK})
                    If using -F with an argument, do not follow -F with a
                    space. (for example: -F/var/run/fsfreezehook.sh)
  -t, --statedir    specify dir to store state information (absolute paths
                    only, default is ${DEFAULT_STATEDIR})
  -v, --verbose     log extra debugging information
  -V, --version     print version information and exit
  -d, --daemonize   become a daemon
  -b, --block-rpcs  comma-separated list of RPCs to disable (no spaces,
                    use "help" to list available RPCs)
  -a, --allow-rpcs  comma-separated list of RPCs to enable (no spaces,
                    use "help" to list available RPCs)
  -D, --dump-conf   dump a qemu-ga config file based on current config
                    options / command-line parameters to stdout
  -r, --retry-path  attempt re-opening path if it's unavailable or closed
  -h, --help        display this help and exit
`;

/** The parsed command line. */
export interface AgentConfig {
  method: string;
  path?: string;
  logfile?: string;
  pidfile: string;
  fsfreezeHook?: string;
  stateDir: string;
  verbose: boolean;
  daemonize: boolean;
  blockRpcs?: string[];
  allowRpcs?: string[];
  dumpConf: boolean;
  retryPath: boolean;
  action?: "help" | "version" | "list-rpcs";
}

class UsageError extends Error {}

const LONG: Record<string, string> = {
  method: "m",
  path: "p",
  logfile: "l",
  pidfile: "f",
  "fsfreeze-hook": "F",
  statedir: "t",
  verbose: "v",
  version: "V",
  daemonize: "d",
  "block-rpcs": "b",
  blacklist: "b",
  "allow-rpcs": "a",
  "dump-conf": "D",
  "retry-path": "r",
  help: "h",
};
const WITH_ARG = new Set(["m", "p", "l", "f", "t", "b", "a"]);

/** Parses qemu-ga's options (getopt style: -pPATH, -p PATH, --path=PATH, --path PATH). */
export function parseArgs(argv: string[]): AgentConfig {
  const c: AgentConfig = {
    method: "virtio-serial",
    pidfile: DEFAULT_PIDFILE,
    stateDir: DEFAULT_STATEDIR,
    verbose: false,
    daemonize: false,
    dumpConf: false,
    retryPath: false,
  };
  const list = (v: string) => v.split(",").filter((x) => x !== "");
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    let opt: string;
    let val: string | undefined;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      if (!(name in LONG)) throw new UsageError(`unrecognized option '${a}'`);
      opt = LONG[name];
      if (eq >= 0) val = a.slice(eq + 1);
    } else if (a.startsWith("-") && a.length > 1) {
      opt = a[1];
      if (a.length > 2) {
        if (!WITH_ARG.has(opt) && opt !== "F") {
          throw new UsageError(`invalid option -- '${a[2]}'`);
        }
        val = a.slice(2);
      }
      if (!WITH_ARG.has(opt) && !"FvVdDrh".includes(opt)) {
        throw new UsageError(`invalid option -- '${opt}'`);
      }
    } else {
      // Like getopt in qemu-ga: stray operands are ignored.
      continue;
    }
    if (WITH_ARG.has(opt) && val === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`option requires an argument -- '${opt}'`);
      val = argv[++i];
    }
    switch (opt) {
      case "m":
        c.method = val!;
        break;
      case "p":
        c.path = val;
        break;
      case "l":
        c.logfile = val;
        break;
      case "f":
        c.pidfile = val!;
        break;
      case "F":
        c.fsfreezeHook = val ?? DEFAULT_FSFREEZE_HOOK;
        break;
      case "t":
        c.stateDir = val!;
        break;
      case "v":
        c.verbose = true;
        break;
      case "V":
        c.action = "version";
        break;
      case "d":
        c.daemonize = true;
        break;
      case "b":
      case "a":
        if (val === "help" || val === "?") c.action = "list-rpcs";
        else if (opt === "b") c.blockRpcs = [...(c.blockRpcs ?? []), ...list(val!)];
        else c.allowRpcs = [...(c.allowRpcs ?? []), ...list(val!)];
        break;
      case "D":
        c.dumpConf = true;
        break;
      case "r":
        c.retryPath = true;
        break;
      case "h":
        c.action = "help";
        break;
    }
  }
  return c;
}

/** The config as a qemu-ga configuration file (-D), laid out as qemu-ga prints it. */
export function dumpConf(c: AgentConfig): string {
  const lines = ["[general]", `daemon=${c.daemonize}`, `method=${c.method}`];
  const path = c.path ?? DEFAULT_PATHS[c.method];
  if (path) lines.push(`path=${path}`);
  if (c.logfile) lines.push(`logfile=${c.logfile}`);
  lines.push(`pidfile=${c.pidfile}`);
  if (c.fsfreezeHook) lines.push(`fsfreeze-hook=${c.fsfreezeHook}`);
  lines.push(`statedir=${c.stateDir}`, `verbose=${c.verbose}`, `retry-path=${c.retryPath}`);
  // qemu-ga keeps the list newest first.
  lines.push(`block-rpcs=${[...(c.blockRpcs ?? [])].reverse().join(",")}`);
  if (c.allowRpcs) lines.push(`allow-rpcs=${[...c.allowRpcs].reverse().join(",")}`);
  return lines.join("\n") + "\n";
}

function makeLogger(c: AgentConfig) {
  let file: Deno.FsFile | undefined;
  if (c.logfile) {
    file = Deno.openSync(c.logfile, { append: true, create: true });
  }
  const enc = new TextEncoder();
  return (level: "debug" | "warning" | "critical", message: string) => {
    if (level === "debug" && !c.verbose) return;
    const t = (performance.timeOrigin + performance.now()) / 1000;
    const sec = Math.floor(t);
    const usec = String(Math.floor((t - sec) * 1e6)).padStart(6, "0");
    const line = enc.encode(`${sec}.${usec}: ${level}: ${message}\n`);
    try {
      if (file) file.writeSync(line);
      else Deno.stderr.writeSync(line);
    } catch {
      // logging must never take the agent down
    }
  };
}

/** Re-runs this program detached (a new session), and returns once it is up (pidfile written). */
async function daemonize(argv: string[], c: AgentConfig): Promise<number> {
  try {
    Deno.removeSync(c.pidfile);
  } catch {
    // none yet
  }
  const child = new Deno.Command(Deno.execPath(), {
    // The child sees -d too (so it writes the pidfile) and the marker (so it does not fork again).
    args: ["run", "-A", new URL(import.meta.url).pathname, ...argv],
    env: { [DAEMON_CHILD_ENV]: "1" },
    stdin: "null",
    stdout: "null",
    stderr: c.logfile ? "null" : "inherit",
    detached: true,
  }).spawn();
  let exited = false;
  child.status.then(() => exited = true);
  for (let i = 0; i < 300 && !exited; i++) {
    try {
      Deno.statSync(c.pidfile);
      child.unref();
      return 0;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  if (exited) return (await child.status).code || 1;
  console.error(`${PROG}: daemon did not start`);
  return 1;
}

/** Runs the agent until SIGTERM/SIGINT; returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  let c: AgentConfig;
  try {
    c = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${PROG}: ${e.message}`);
    console.log(`Unknown option, try '${PROG} --help' for more information.`);
    return 1;
  }
  if (c.action === "help") {
    console.log(HELP);
    return 0;
  }
  if (c.action === "version") {
    console.log(`QEMU Guest Agent ${QGA_VERSION} (demu)`);
    return 0;
  }
  if (c.action === "list-rpcs") {
    for (const set of ALL_COMMANDS) for (const cmd of set) console.log(cmd.name);
    return 0;
  }
  if (c.dumpConf) {
    Deno.stdout.writeSync(new TextEncoder().encode(dumpConf(c)));
    return 0;
  }
  if (c.daemonize && !Deno.env.get(DAEMON_CHILD_ENV)) return await daemonize(argv, c);
  const log = makeLogger(c);
  if (!["unix-listen", "virtio-serial", "isa-serial"].includes(c.method)) {
    log("critical", `unsupported channel method/type: ${c.method}`);
    log("critical", "failed to initialize guest agent channel");
    return 1;
  }
  const path = c.path ?? DEFAULT_PATHS[c.method];
  if (!path) {
    log("critical", "must specify a path for this channel");
    log("critical", "failed to initialize guest agent channel");
    return 1;
  }
  let agent;
  try {
    agent = createGuestAgent({
      stateDir: c.stateDir,
      blockRpcs: c.blockRpcs,
      allowRpcs: c.allowRpcs,
      fsfreezeHook: c.fsfreezeHook,
      log,
    });
  } catch (e) {
    log("critical", (e as Error).message);
    log("critical", `unable to create state file at path ${c.stateDir}/qga.state`);
    log("critical", "failed to load persistent state");
    log("critical", "error initializing guest agent");
    return 1;
  }
  for (const name of [...(c.blockRpcs ?? []), ...(c.allowRpcs ?? [])]) {
    if (!agent.commands.has(name)) log("warning", `unknown RPC name ${name}`);
  }
  let channel: Channel;
  for (;;) {
    try {
      channel = c.method === "unix-listen"
        ? listenUnix(agent, path)
        : await openCharDevice(agent, path, c.method as "virtio-serial" | "isa-serial");
      break;
    } catch (e) {
      log("critical", (e as Error).message);
      if (!c.retryPath) {
        log("critical", "failed to create guest agent channel");
        log("critical", "failed to initialize guest agent channel");
        return 1;
      }
      await new Promise((r) => setTimeout(r, 5000));
    }
  }
  if (c.daemonize) Deno.writeTextFileSync(c.pidfile, `${Deno.pid}\n`);
  log("debug", `guest agent version ${QGA_VERSION} started`);
  let stopped: () => void = () => {};
  const stoppedP = new Promise<void>((r) => stopped = r);
  const stop = () => {
    log("debug", "received signal, shutting down");
    channel.stop().then(stopped);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  // A char device's pending read may never return; stopping does not wait for it.
  await Promise.race([channel.done, stoppedP]);
  Deno.removeSignalListener("SIGTERM", stop);
  Deno.removeSignalListener("SIGINT", stop);
  await agent.close();
  if (c.daemonize) {
    try {
      Deno.removeSync(c.pidfile);
    } catch {
      // gone
    }
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
