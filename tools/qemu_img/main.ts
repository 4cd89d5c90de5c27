/** qemu-img's command dispatch: the subcommand table, --help, --version, error reporting. */
import { consoleIo, formatError, type Io, QemuImgError, usageError } from "./cli.ts";
import { printHelp, VERSION } from "./help.ts";
import { splitOptions } from "./create_opts.ts";

type Command = (io: Io, args: string[]) => Promise<number>;

/**
 * The subcommands, each loaded when run: a command's module graph (the block layer, qcow2,
 * nbd, compression) is most of qemu-img's start-up, and a run needs one command's.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  amend: async () => (await import("./amend.ts")).cmdAmend,
  bench: async () => (await import("./bench.ts")).cmdBench,
  check: async () => (await import("./check.ts")).cmdCheck,
  commit: async () => (await import("./commit.ts")).cmdCommit,
  compare: async () => (await import("./compare.ts")).cmdCompare,
  convert: async () => (await import("./convert.ts")).cmdConvert,
  create: async () => (await import("./create.ts")).cmdCreate,
  dd: async () => (await import("./dd.ts")).cmdDd,
  info: async () => (await import("./info.ts")).cmdInfo,
  map: async () => (await import("./map.ts")).cmdMap,
  measure: async () => (await import("./measure.ts")).cmdMeasure,
  snapshot: async () => (await import("./snapshot.ts")).cmdSnapshot,
  rebase: async () => (await import("./rebase.ts")).cmdRebase,
  resize: async () => (await import("./resize.ts")).cmdResize,
};

/** Runs qemu-img with `args` (without the program name); returns the exit code. */
export async function run(args: string[], io: Io = consoleIo()): Promise<number> {
  try {
    let i = 0;
    for (; i < args.length && args[i].startsWith("-"); i++) {
      const a = args[i];
      if (a === "-h" || a === "--help") {
        printHelp(io);
        return 0;
      }
      if (a === "-V" || a === "--version") {
        io.out(VERSION);
        return 0;
      }
      if (a === "-T" || a === "--trace") {
        i++;
        continue;
      }
      if (a.startsWith("--trace=") || (a.startsWith("-T") && a.length > 2)) continue;
      if (a === "--") {
        i++;
        break;
      }
      throw usageError(`unrecognized option '${a}'`);
    }
    if (i >= args.length) throw usageError("Not enough arguments");
    const name = args[i];
    const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!load) throw usageError(`Command not found: ${name}`);
    const rest = args.slice(i + 1);
    // Like QEMU, "-h"/"--help" after any command shows the whole help (dd has no other options).
    if (rest.some((a) => a === "-h" || a === "--help")) {
      printHelp(io);
      return 0;
    }
    const cmd = await load();
    return await cmd(io, rewriteImageOpts(name, rest));
  } catch (e) {
    if (e instanceof QemuImgError) {
      io.err(formatError(e));
      return e.code;
    }
    io.err(`qemu-img: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

const IMAGE_OPTS_KEY = /(^|,)(driver|file\.filename|filename|file\.driver)=/;

/**
 * --image-opts: image operands are option strings ("driver=qcow2,file.filename=disk.qcow2").
 * They become plain file names, and their driver becomes -f (-F for compare's second image).
 * Commands without -f (snapshot) probe the format as usual.
 */
export function rewriteImageOpts(command: string, args: string[]): string[] {
  if (!args.includes("--image-opts")) return args;
  const out: string[] = [];
  const formats: string[] = [];
  const originals: string[] = [];
  for (const a of args) {
    if (a === "--image-opts") continue;
    if (!IMAGE_OPTS_KEY.test(a) || a.startsWith("-")) {
      out.push(a);
      continue;
    }
    const opts = new Map(splitOptions(a));
    const file = opts.get("file.filename") ?? opts.get("filename");
    if (file === undefined) {
      throw new QemuImgError(`Could not open '${a}': A block device must be specified for "file"`);
    }
    originals.push(a);
    const driver = opts.get("driver");
    if (driver !== undefined && driver !== "file") formats.push(driver);
    out.push(file);
  }
  // check reports the operand as given (the option string); the others the file name.
  if (command === "check") out.unshift(`--x-display-name=${originals[0] ?? ""}`);
  if (command === "snapshot" || !formats.length) return out;
  if (command === "compare") {
    return [
      ...(formats[0] ? ["-f", formats[0]] : []),
      ...(formats[1] ? ["-F", formats[1]] : []),
      ...out,
    ];
  }
  return ["-f", formats[0], ...out];
}

/** The subcommands demu's qemu-img has. */
export function commandNames(): string[] {
  return Object.keys(COMMANDS);
}
