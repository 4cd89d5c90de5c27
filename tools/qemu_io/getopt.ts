/**
 * GNU getopt_long as QEMU's programs use it: short options with attached or separate arguments,
 * clustered flags, long options with `=` or a separate argument, operands permuted to the end,
 * `--` ending options; errors worded as glibc words them.
 */

/** A long option: its name, whether it takes an argument, and the key it reports as. */
export interface LongOption {
  name: string;
  arg: boolean;
  key: string;
}

/** The parsed command line: options in order, then operands. */
export interface Parsed {
  opts: [string, string][];
  operands: string[];
}

/** A usage error, with glibc's wording (without the program name). */
export class GetoptError extends Error {}

/** Parses args with a short-option spec ("f:rn") and long options. */
export function getopt(args: string[], short: string, long: LongOption[] = []): Parsed {
  const shortArg = new Map<string, boolean>();
  for (let i = 0; i < short.length; i++) {
    const c = short[i];
    if (c === ":" || c === "+") continue;
    shortArg.set(c, short[i + 1] === ":");
  }
  const opts: [string, string][] = [];
  const operands: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      operands.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const exact = long.find((l) => l.name === name);
      const prefix = long.filter((l) => l.name.startsWith(name));
      const opt = exact ?? (prefix.length === 1 ? prefix[0] : undefined);
      if (!opt) {
        if (prefix.length > 1) throw new GetoptError(`option '${a}' is ambiguous`);
        throw new GetoptError(`unrecognized option '${a}'`);
      }
      if (opt.arg) {
        if (eq >= 0) opts.push([opt.key, a.slice(eq + 1)]);
        else if (i + 1 < args.length) opts.push([opt.key, args[++i]]);
        else throw new GetoptError(`option '--${opt.name}' requires an argument`);
      } else {
        if (eq >= 0) throw new GetoptError(`option '--${opt.name}' doesn't allow an argument`);
        opts.push([opt.key, ""]);
      }
      continue;
    }
    if (a.startsWith("-") && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j];
        const takes = shortArg.get(c);
        if (takes === undefined) throw new GetoptError(`invalid option -- '${c}'`);
        if (!takes) {
          opts.push([c, ""]);
          continue;
        }
        if (j + 1 < a.length) opts.push([c, a.slice(j + 1)]);
        else if (i + 1 < args.length) opts.push([c, args[++i]]);
        else throw new GetoptError(`option requires an argument -- '${c}'`);
        break;
      }
      continue;
    }
    if (short.startsWith("+")) {
      operands.push(...args.slice(i));
      break;
    }
    operands.push(a);
  }
  return { opts, operands };
}
