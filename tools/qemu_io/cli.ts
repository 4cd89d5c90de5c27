/** qemu-io's command line: open an image, run -c commands or an interactive `qemu-io> ` prompt. */
import { getopt, GetoptError, type LongOption } from "./getopt.ts";
import { type IoOpenOptions, type IoSinks, QemuIo } from "./commands.ts";
import { LineEditor } from "./readline.ts";

const PROG = "qemu-io";

const HELP = `Usage: qemu-io [OPTIONS]... [-c STRING]... [file]
QEMU Disk exerciser (demu)

  --image-opts         treat file as option string
  -c, --cmd STRING     execute command with its arguments
                       from the given string
  -f, --format FMT     specifies the block driver to use
  -r, --read-only      export read-only
  -s, --snapshot       use snapshot file
  -n, --nocache        disable host cache, short for -t none
  -C, --copy-on-read   enable copy-on-read
  -m, --misalign       misalign allocations for O_DIRECT
  -k, --native-aio     use kernel AIO implementation
                       (Linux only, prefer use of -i)
  -i, --aio=MODE       use AIO mode (threads, native or io_uring)
  -t, --cache=MODE     use the given cache mode for the image
  -d, --discard=MODE   use the given discard mode for the image
  -U, --force-share    force shared permissions
  -h, --help           display this help and exit
  -V, --version        output version information and exit

See 'qemu-io -c help' for information on available commands.
`;

const LONG: LongOption[] = [
  { name: "help", arg: false, key: "h" },
  { name: "version", arg: false, key: "V" },
  { name: "cmd", arg: true, key: "c" },
  { name: "format", arg: true, key: "f" },
  { name: "read-only", arg: false, key: "r" },
  { name: "snapshot", arg: false, key: "s" },
  { name: "nocache", arg: false, key: "n" },
  { name: "copy-on-read", arg: false, key: "C" },
  { name: "misalign", arg: false, key: "m" },
  { name: "native-aio", arg: false, key: "k" },
  { name: "aio", arg: true, key: "i" },
  { name: "cache", arg: true, key: "t" },
  { name: "discard", arg: true, key: "d" },
  { name: "trace", arg: true, key: "T" },
  { name: "force-share", arg: false, key: "U" },
  { name: "object", arg: true, key: "object" },
  { name: "image-opts", arg: false, key: "image-opts" },
];

const encoder = new TextEncoder();

/** Sinks writing straight to the process's stdout and stderr, in call order. */
export function stdSinks(): IoSinks {
  return {
    out: (s) => writeAllSync(Deno.stdout, encoder.encode(s)),
    err: (s) => writeAllSync(Deno.stderr, encoder.encode(s)),
  };
}

function writeAllSync(f: { writeSync(b: Uint8Array): number }, b: Uint8Array): void {
  let p = 0;
  while (p < b.length) p += f.writeSync(b.subarray(p));
}

/** Runs qemu-io; resolves to the exit status. */
export async function qemuIoMain(args: string[], sinks: IoSinks = stdSinks()): Promise<number> {
  let parsed;
  try {
    parsed = getopt(args, "hVc:f:rsnCmki:t:d:T:U", LONG);
  } catch (e) {
    if (e instanceof GetoptError) {
      sinks.err(`${PROG}: ${e.message}\nTry '${PROG} --help' for more information.\n`);
      return 1;
    }
    throw e;
  }
  const cmds: string[] = [];
  const opts: IoOpenOptions = {};
  for (const [k, v] of parsed.opts) {
    switch (k) {
      case "h":
        sinks.out(HELP);
        return 0;
      case "V":
        sinks.out("qemu-io version 7.2.0 (demu)\n");
        return 0;
      case "c":
        cmds.push(v);
        break;
      case "f":
        opts.format = v;
        break;
      case "r":
        opts.readOnly = true;
        break;
      case "s":
        opts.snapshot = true;
        break;
      case "U":
        opts.forceShare = true;
        break;
      case "t":
        if (!["none", "writeback", "writethrough", "directsync", "unsafe"].includes(v)) {
          sinks.err(`${PROG}: Invalid cache option: ${v}\n`);
          return 1;
        }
        break;
      case "d":
        if (!["ignore", "off", "unmap", "on"].includes(v)) {
          sinks.err(`${PROG}: Invalid discard option: ${v}\n`);
          return 1;
        }
        break;
      case "i":
        if (!["threads", "native", "io_uring"].includes(v)) {
          sinks.err(`${PROG}: Invalid aio option: ${v}\n`);
          return 1;
        }
        break;
      case "object":
      case "image-opts":
        sinks.err(`${PROG}: --${k} is not supported by demu's qemu-io\n`);
        return 1;
    }
  }
  if (parsed.operands.length > 1) {
    sinks.err(`${PROG}: Invalid number of arguments\nTry '${PROG} --help' for more information.\n`);
    return 1;
  }
  const io = new QemuIo(sinks);
  if (parsed.operands.length === 1 && !(await io.open(parsed.operands[0], opts))) return 1;
  let failed = false;
  try {
    if (cmds.length) {
      for (const c of cmds) {
        if ((await io.command(c)) < 0) failed = true;
        if (io.quit) break;
      }
    } else {
      failed = await interactive(io);
    }
  } finally {
    await io.close();
  }
  return failed ? 1 : 0;
}

/** The `qemu-io> ` loop: line editing and history on a terminal, plain lines otherwise. */
async function interactive(io: QemuIo): Promise<boolean> {
  let failed = false;
  const editor = new LineEditor("qemu-io> ");
  try {
    for (;;) {
      const line = await editor.readLine();
      if (line === null) break;
      if ((await io.command(line)) < 0) failed = true;
      if (io.quit) break;
    }
  } finally {
    editor.close();
  }
  return failed;
}
