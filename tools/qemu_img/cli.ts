/**
 * What every qemu-img subcommand shares: where output goes, how a failure ends the command with
 * QEMU's wording and exit code, and a getopt_long work-alike (options may follow operands; "--"
 * ends options; "-abc" bundles short flags).
 */

/** Where a command writes. Tests pass their own to capture output; the CLI writes to the terminal. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** stdout is a terminal (live progress with -p). */
  isTty: boolean;
}

const encoder = new TextEncoder();

function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length) bytes = bytes.subarray(file.writeSync(bytes));
}

/** The process's stdout and stderr. */
export function consoleIo(): Io {
  return {
    out: (t) => writeAll(Deno.stdout, t),
    err: (t) => writeAll(Deno.stderr, t),
    isTty: Deno.stdout.isTerminal(),
  };
}

/** An Io that keeps everything written, for tests. */
export class CapturedIo implements Io {
  stdout = "";
  stderr = "";
  isTty = false;
  out(text: string): void {
    this.stdout += text;
  }
  err(text: string): void {
    this.stderr += text;
  }
}

/**
 * Ends a command: each line of `message` is printed as "qemu-img: <line>" (error_report), unless
 * `bare` (the text is printed as is), then the process exits with `code`.
 */
export class QemuImgError extends Error {
  /** Text printed after the message as is (error_append_hint; QEMU's hints end in "\n" or not). */
  hint?: string;
  constructor(message: string, readonly code = 1, readonly bare = false) {
    super(message);
    this.name = "QemuImgError";
  }
  withHint(hint: string): this {
    this.hint = hint;
    return this;
  }
}

/** error_exit(): a usage error, with the hint to --help. */
export function usageError(message: string): QemuImgError {
  return new QemuImgError(
    `qemu-img: ${message}\nTry 'qemu-img --help' for more information`,
    1,
    true,
  );
}

/** Formats an error for stderr as QEMU does. */
export function formatError(e: QemuImgError): string {
  const hint = e.hint ?? "";
  if (e.bare) return (e.message.endsWith("\n") ? e.message : e.message + "\n") + hint;
  return e.message.split("\n").map((l) => `qemu-img: ${l}\n`).join("") + hint;
}

/** One long option: its name, whether it takes an argument, and the key reported for it. */
export interface LongOption {
  name: string;
  arg: boolean;
  key: string;
}

/** The result of parsing: options in order, then the operands. */
export interface ParsedArgs {
  opts: [string, string][];
  rest: string[];
}

/**
 * Parses args like getopt_long(argc, argv, shortSpec, longOpts): shortSpec is "f:O:hq" style
 * (":" after a letter means it takes an argument). Operands may come between options.
 */
export function getopt(args: string[], shortSpec: string, longOpts: LongOption[]): ParsedArgs {
  const takesArg = new Map<string, boolean>();
  for (let i = 0; i < shortSpec.length; i++) {
    const c = shortSpec[i];
    if (c === ":" || c === "+") continue;
    takesArg.set(c, shortSpec[i + 1] === ":");
  }
  const opts: [string, string][] = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      rest.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const exact = longOpts.find((o) => o.name === name);
      const prefixed = longOpts.filter((o) => o.name.startsWith(name));
      const opt = exact ?? (prefixed.length === 1 ? prefixed[0] : undefined);
      if (!opt || !name) throw usageError(`unrecognized option '${a}'`);
      if (opt.arg) {
        let value: string;
        if (eq >= 0) value = a.slice(eq + 1);
        else if (i + 1 < args.length) value = args[++i];
        else throw usageError(`missing argument for option '${a}'`);
        opts.push([opt.key, value]);
      } else {
        if (eq >= 0) throw usageError(`unrecognized option '${a}'`);
        opts.push([opt.key, ""]);
      }
      continue;
    }
    if (a.startsWith("-") && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j];
        const hasArg = takesArg.get(c);
        if (hasArg === undefined) throw usageError(`unrecognized option '${a}'`);
        if (!hasArg) {
          opts.push([c, ""]);
          continue;
        }
        if (j + 1 < a.length) opts.push([c, a.slice(j + 1)]);
        else if (i + 1 < args.length) opts.push([c, args[++i]]);
        else throw usageError(`missing argument for option '${a}'`);
        break;
      }
      continue;
    }
    rest.push(a);
  }
  return { opts, rest };
}

/** The --output option's value as QEMU checks it. */
export function parseOutputFormat(value: string): "human" | "json" {
  if (value === "human" || value === "json") return value;
  throw new QemuImgError("--output must be used with human or json as argument.");
}
