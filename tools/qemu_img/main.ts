/** qemu-img's command dispatch: the subcommand table, --help, --version, error reporting. */
import { consoleIo, formatError, type Io, QemuImgError, usageError } from "./cli.ts";
import { cmdAmend } from "./amend.ts";
import { cmdBench } from "./bench.ts";
import { cmdCheck } from "./check.ts";
import { cmdCommit } from "./commit.ts";
import { cmdCompare } from "./compare.ts";
import { cmdConvert } from "./convert.ts";
import { cmdCreate } from "./create.ts";
import { cmdDd } from "./dd.ts";
import { cmdInfo } from "./info.ts";
import { cmdMap } from "./map.ts";
import { cmdMeasure } from "./measure.ts";
import { cmdRebase } from "./rebase.ts";
import { cmdResize } from "./resize.ts";
import { cmdSnapshot } from "./snapshot.ts";

type Command = (io: Io, args: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  amend: cmdAmend,
  bench: cmdBench,
  check: cmdCheck,
  commit: cmdCommit,
  compare: cmdCompare,
  convert: cmdConvert,
  create: cmdCreate,
  dd: cmdDd,
  info: cmdInfo,
  map: cmdMap,
  measure: cmdMeasure,
  snapshot: cmdSnapshot,
  rebase: cmdRebase,
  resize: cmdResize,
};

/** The version line demu reports (the QEMU release whose behaviour it follows). */
export const VERSION = "qemu-img version 7.2.0 (demu)\n" +
  "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n";

function help(io: Io): void {
  io.out(
    VERSION +
      "usage: qemu-img [standard options] command [command options]\n" +
      "QEMU disk image utility\n\n" +
      "    '-h', '--help'       display this help and exit\n" +
      "    '-V', '--version'    output version information and exit\n\n" +
      "Command syntax:\n" +
      Object.keys(COMMANDS).map((c) => `  ${c}\n`).join("") +
      "\nSupported formats: raw qcow2\n" +
      "Run 'qemu-img <command> --help' for the options of a command.\n",
  );
}

/** Runs qemu-img with `args` (without the program name); returns the exit code. */
export async function run(args: string[], io: Io = consoleIo()): Promise<number> {
  try {
    let i = 0;
    for (; i < args.length && args[i].startsWith("-"); i++) {
      const a = args[i];
      if (a === "-h" || a === "--help") {
        help(io);
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
    const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!cmd) throw usageError(`Command not found: ${name}`);
    return await cmd(io, args.slice(i + 1));
  } catch (e) {
    if (e instanceof QemuImgError) {
      io.err(formatError(e));
      return e.code;
    }
    io.err(`qemu-img: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

/** Registers a subcommand (used while wiring the table; every command lives in its own file). */
export function commandNames(): string[] {
  return Object.keys(COMMANDS);
}
