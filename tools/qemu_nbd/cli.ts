/** qemu-nbd's command line: serve an image over NBD, or list a server's exports (-L). */
import {
  type BlockDriver,
  BlockError,
  NBD_DEFAULT_PORT,
  NbdHandshake,
  openImage,
} from "@demu/block";
import { getopt, GetoptError, type LongOption } from "../qemu_io/getopt.ts";
import { type NbdExport, NbdServer } from "./server.ts";

const PROG = "qemu-nbd";

const HELP = `Usage: qemu-nbd [OPTIONS] FILE
  or:  qemu-nbd -L [OPTIONS]
QEMU Disk Network Block Device Utility (demu)

  -h, --help                display this help and exit
  -V, --version             output version information and exit

Connection properties:
  -p, --port=PORT           port to listen on (default \`10809')
  -b, --bind=IFACE          interface to bind to (default \`0.0.0.0')
  -k, --socket=PATH         path to the unix socket
  -e, --shared=NUM          device can be shared by NUM clients (default '1')
  -t, --persistent          don't exit on the last connection
  -v, --verbose             display extra debugging information
  -x, --export-name=NAME    expose export by name (default is empty string)
  -D, --description=TEXT    export a human-readable description

Exposing part of the image:
  -o, --offset=OFFSET       offset into the image
  -A, --allocation-depth    expose the allocation depth

General purpose options:
  -L, --list                list exports available from another NBD server
  --fork                    fork off the server process and exit the parent
                            once the server is running
  --pid-file=PATH           store the server's process ID in the given file

Block device options:
  -f, --format=FORMAT       set image format (raw, qcow2, ...)
  -r, --read-only           export read-only
  -l, --load-snapshot=SNAPSHOT_PARAM
                            load an internal snapshot inside FILE and export it
                            as an read-only device, SNAPSHOT_PARAM format is
                            'snapshot.id=[ID],snapshot.name=[NAME]', or
                            '[ID_OR_NAME]'
  -s, --snapshot            redirect writes to a temporary overlay (discarded on exit)
  -n, --nocache             disable host cache
      --cache=MODE          set cache mode used to access the disk image, the
                            valid options are: 'none', 'writeback' (default),
                            'writethrough', 'directsync' and 'unsafe'
      --aio=MODE            set AIO mode (native, io_uring or threads)
      --discard=MODE        set discard mode (ignore, unmap)
      --detect-zeroes=MODE  set detect-zeroes mode (off, on, unmap)
`;

const LONG: LongOption[] = [
  { name: "help", arg: false, key: "h" },
  { name: "version", arg: false, key: "V" },
  { name: "port", arg: true, key: "p" },
  { name: "bind", arg: true, key: "b" },
  { name: "socket", arg: true, key: "k" },
  { name: "shared", arg: true, key: "e" },
  { name: "persistent", arg: false, key: "t" },
  { name: "verbose", arg: false, key: "v" },
  { name: "export-name", arg: true, key: "x" },
  { name: "description", arg: true, key: "D" },
  { name: "offset", arg: true, key: "o" },
  { name: "allocation-depth", arg: false, key: "A" },
  { name: "bitmap", arg: true, key: "B" },
  { name: "list", arg: false, key: "L" },
  { name: "object", arg: true, key: "object" },
  { name: "tls-creds", arg: true, key: "tls-creds" },
  { name: "tls-authz", arg: true, key: "tls-authz" },
  { name: "trace", arg: true, key: "T" },
  { name: "fork", arg: false, key: "fork" },
  { name: "pid-file", arg: true, key: "pid-file" },
  { name: "connect", arg: true, key: "c" },
  { name: "disconnect", arg: false, key: "d" },
  { name: "format", arg: true, key: "f" },
  { name: "read-only", arg: false, key: "r" },
  { name: "snapshot", arg: false, key: "s" },
  { name: "load-snapshot", arg: true, key: "l" },
  { name: "nocache", arg: false, key: "n" },
  { name: "cache", arg: true, key: "cache" },
  { name: "aio", arg: true, key: "aio" },
  { name: "discard", arg: true, key: "discard" },
  { name: "detect-zeroes", arg: true, key: "detect-zeroes" },
  { name: "image-opts", arg: false, key: "image-opts" },
];

/** A usage or runtime failure: printed as `qemu-nbd: <message>`, exit 1. */
class CliError extends Error {}

interface Config {
  port?: number;
  portText?: string;
  bind: string;
  socket?: string;
  shared: number;
  persistent: boolean;
  verbose: boolean;
  exportName: string;
  description: string;
  allocationDepth: boolean;
  list: boolean;
  fork: boolean;
  pidFile?: string;
  format?: string;
  readOnly: boolean;
  snapshot: boolean;
  discard: "ignore" | "unmap";
  detectZeroes: "off" | "on" | "unmap";
  /** -o: export from this byte on. */
  offset?: number;
  /** -l: an internal snapshot to export (read-only). */
  loadSnapshot?: string;
  image?: string;
}

function parse(args: string[]): Config | "help" | "version" {
  const { opts, operands } = getopt(args, "hVp:b:k:e:tvx:D:o:AB:LT:c:df:rsl:n", LONG);
  const c: Config = {
    bind: "0.0.0.0",
    shared: 1,
    persistent: false,
    verbose: false,
    exportName: "",
    description: "",
    allocationDepth: false,
    list: false,
    fork: false,
    readOnly: false,
    snapshot: false,
    discard: "ignore",
    detectZeroes: "off",
  };
  for (const [k, v] of opts) {
    switch (k) {
      case "h":
        return "help";
      case "V":
        return "version";
      case "p":
        c.portText = v;
        c.port = /^\d+$/.test(v) && Number(v) <= 65535 ? Number(v) : undefined;
        break;
      case "b":
        c.bind = v;
        break;
      case "k":
        c.socket = v;
        break;
      case "e":
        if (!/^\d+$/.test(v)) throw new CliError(`Invalid shared device number '${v}'`);
        c.shared = Number(v);
        break;
      case "t":
        c.persistent = true;
        break;
      case "v":
        c.verbose = true;
        break;
      case "x":
        if (v.length > 4096) throw new CliError("export name too long");
        c.exportName = v;
        break;
      case "D":
        if (v.length > 4096) throw new CliError("description too long");
        c.description = v;
        break;
      case "A":
        c.allocationDepth = true;
        break;
      case "L":
        c.list = true;
        break;
      case "fork":
        c.fork = true;
        break;
      case "pid-file":
        c.pidFile = v;
        break;
      case "f":
        c.format = v;
        break;
      case "r":
        c.readOnly = true;
        break;
      case "s":
        c.snapshot = true;
        break;
      case "n":
        break;
      case "cache":
        if (!["none", "writeback", "writethrough", "directsync", "unsafe", "off"].includes(v)) {
          throw new CliError(`Invalid cache mode '${v}'`);
        }
        break;
      case "aio":
        if (!["native", "io_uring", "threads"].includes(v)) {
          throw new CliError(`invalid aio mode '${v}'`);
        }
        break;
      case "discard":
        if (v === "ignore" || v === "off") c.discard = "ignore";
        else if (v === "unmap" || v === "on") c.discard = "unmap";
        else throw new CliError(`Invalid discard mode \`${v}'`);
        break;
      case "detect-zeroes":
        if (v !== "off" && v !== "on" && v !== "unmap") {
          throw new CliError(`Parameter 'detect-zeroes' does not accept value '${v}'`);
        }
        c.detectZeroes = v;
        break;
      case "o":
        if (/^-\d+$/.test(v)) {
          throw new CliError(
            "Parameter 'offset' expects a non-negative number below 2^64\n" +
              "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n" +
              "and exabytes, respectively.",
          );
        }
        if (!/^\d+$/.test(v)) throw new CliError(`Invalid offset '${v}'`);
        c.offset = Number(v);
        break;
      case "B":
        throw new CliError("dirty bitmaps (-B) are not supported by demu's qemu-nbd");
      case "l":
        c.loadSnapshot = v;
        c.readOnly = true;
        break;
      case "c":
      case "d":
        throw new CliError("the kernel NBD client (-c/-d) is not supported by demu's qemu-nbd");
      case "tls-creds":
      case "tls-authz":
      case "object":
        throw new CliError("TLS and --object are not supported by demu's qemu-nbd");
      case "image-opts":
        throw new CliError("--image-opts is not supported by demu's qemu-nbd");
      case "T":
        break;
    }
  }
  if (c.detectZeroes === "unmap" && c.discard !== "unmap") {
    throw new CliError("--detect-zeroes=unmap can only be used if --discard=unmap is set");
  }
  if (c.list) {
    if (operands.length) throw new CliError("List mode is incompatible with a file name");
    return c;
  }
  if (operands.length !== 1) {
    throw new CliError("Invalid number of arguments\nTry `qemu-nbd --help' for more information.");
  }
  c.image = operands[0];
  if (c.socket && (c.portText !== undefined || c.bind !== "0.0.0.0")) {
    throw new CliError("-k and -p/-b are mutually exclusive");
  }
  return c;
}

/** Runs qemu-nbd with the given arguments; resolves to the exit status. */
export async function qemuNbdMain(args: string[]): Promise<number> {
  let cfg: Config | "help" | "version";
  try {
    cfg = parse(args);
  } catch (e) {
    if (e instanceof GetoptError) {
      console.error(`${PROG}: ${e.message}\n${PROG}: Try \`${PROG} --help' for more information.`);
      return 1;
    }
    if (e instanceof CliError) {
      console.error(`${PROG}: ${e.message}`);
      return 1;
    }
    throw e;
  }
  if (cfg === "help") {
    console.log(HELP);
    return 0;
  }
  if (cfg === "version") {
    console.log("qemu-nbd 7.2.0 (demu)");
    return 0;
  }
  try {
    if (cfg.list) return await list(cfg);
    return await serve(cfg);
  } catch (e) {
    if (e instanceof CliError || e instanceof BlockError) {
      console.error(`${PROG}: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

const FLAG_NAMES = [
  "",
  "readonly",
  "flush",
  "fua",
  "rotational",
  "trim",
  "zeroes",
  "df",
  "multi",
  "resize",
  "cache",
  "fast-zero",
];

/** Connects as qemu-nbd -L does and prints the export list in its format. */
export async function listExportsText(
  address: { host?: string; port?: number; socket?: string },
): Promise<string> {
  const h = await NbdHandshake.open({ ...address, exportName: "" });
  try {
    const structured = await h.structuredReply();
    const exports = await h.list();
    const lines = [`exports available: ${exports.length}`];
    for (const e of exports) {
      lines.push(` export: '${e.name}'`);
      if (e.description) lines.push(`  description: ${e.description}`);
      let info;
      try {
        info = await h.info(e.name, false);
      } catch {
        info = undefined;
      }
      if (info) {
        lines.push(`  size:  ${info.size}`);
        const names = FLAG_NAMES.filter((n, bit) => n && info.flags & (1 << bit));
        lines.push(
          `  flags: 0x${info.flags.toString(16)} ( ${names.join(" ")}${names.length ? " " : ""})`,
        );
        if (info.minBlock) {
          lines.push(`  min block: ${info.minBlock}`);
          lines.push(`  opt block: ${info.preferredBlock}`);
          lines.push(`  max block: ${info.maxBlock}`);
        }
      }
      if (structured) {
        let contexts: { name: string }[] = [];
        try {
          contexts = await h.metaContexts(false, e.name, []);
        } catch { /* none */ }
        if (contexts.length) {
          lines.push(`  available meta contexts: ${contexts.length}`);
          for (const c of contexts) lines.push(`   ${c.name}`);
        }
      }
    }
    return lines.join("\n") + "\n";
  } finally {
    await h.abort();
  }
}

async function list(cfg: Config): Promise<number> {
  const text = await listExportsText(
    cfg.socket ? { socket: cfg.socket } : {
      host: cfg.bind,
      port: cfg.port ?? portOrThrow(cfg),
    },
  );
  await Deno.stdout.write(new TextEncoder().encode(text));
  return 0;
}

function portOrThrow(cfg: Config): number {
  if (cfg.portText === undefined) return NBD_DEFAULT_PORT;
  if (cfg.port === undefined) {
    throw new CliError(
      `address resolution failed for ${cfg.bind}:${cfg.portText}: Servname not supported for ai_socktype`,
    );
  }
  return cfg.port;
}

const FORK_ENV = "DEMU_QEMU_NBD_FORKED";

async function serve(cfg: Config): Promise<number> {
  if (cfg.fork && !Deno.env.get(FORK_ENV)) return await forkServer();
  const port = cfg.socket ? 0 : portOrThrow(cfg);
  let driver: BlockDriver;
  try {
    driver = await openImage(cfg.image!, {
      format: cfg.format,
      readOnly: cfg.readOnly || cfg.snapshot,
    });
  } catch (e) {
    if (e instanceof BlockError) {
      throw new CliError(`Failed to blk_new_open '${cfg.image}': ${e.message}`);
    }
    throw e;
  }
  if (cfg.loadSnapshot !== undefined) {
    // qemu-img's snapshot view: the snapshot applied to a private copy, the image untouched.
    const { loadSnapshot, parseSnapshotSpec } = await import("../qemu_img/snapshot.ts");
    try {
      driver = await loadSnapshot(driver, parseSnapshotSpec(cfg.loadSnapshot));
    } catch (e) {
      await driver.close();
      throw new CliError(e instanceof Error ? e.message : String(e));
    }
  }
  if (cfg.offset !== undefined) {
    const size = await driver.length();
    if (cfg.offset > size) {
      await driver.close();
      throw new CliError(
        `Offset (${cfg.offset}) cannot be greater than size of the containing file (${size})`,
      );
    }
    const { OffsetView } = await import("./offset.ts");
    driver = new OffsetView(driver, cfg.offset, size - cfg.offset);
  }
  if (cfg.snapshot) {
    const { MemoryOverlay } = await import("./overlay.ts");
    driver = new MemoryOverlay(driver);
  }
  const exp: NbdExport = {
    name: cfg.exportName,
    description: cfg.description,
    driver,
    readOnly: cfg.readOnly,
    allocationDepth: cfg.allocationDepth,
    discard: cfg.discard,
    detectZeroes: cfg.detectZeroes,
    shared: cfg.shared,
  };
  const server = await NbdServer.create([exp], {
    log: cfg.verbose ? (m) => console.error(`${PROG}: ${m}`) : undefined,
  });
  let listener: Deno.Listener;
  try {
    if (cfg.socket) {
      try {
        Deno.removeSync(cfg.socket);
      } catch { /* not there */ }
      listener = Deno.listen({ transport: "unix", path: cfg.socket });
    } else {
      listener = Deno.listen({ hostname: cfg.bind, port });
    }
  } catch (e) {
    await driver.close();
    const where = cfg.socket ?? `${cfg.bind}:${port}`;
    const msg = e instanceof Error ? e.message.replace(/\s*\(os error \d+\)$/, "") : String(e);
    throw new CliError(
      `Failed to ${cfg.socket ? "bind socket" : "find an available port"}: ${msg} (${where})`,
    );
  }
  if (cfg.pidFile) Deno.writeTextFileSync(cfg.pidFile, `${Deno.pid}\n`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    try {
      listener.close();
    } catch { /* closed */ }
    server.closeAll();
  };
  const onSignal = () => stop();
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);

  if (Deno.env.get(FORK_ENV)) {
    // Tell the waiting parent that the server is up, then let go of its pipe.
    await Deno.stdout.write(new TextEncoder().encode("ready\n"));
    Deno.stdout.close();
  }

  const active = new Set<Promise<void>>();
  let slotFree: (() => void) | null = null;
  try {
    while (!stopping) {
      while (cfg.shared > 0 && active.size >= cfg.shared && !stopping) {
        await new Promise<void>((r) => (slotFree = r));
      }
      if (stopping) break;
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        break;
      }
      if (conn.remoteAddr.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
      const p: Promise<void> = server.handle(conn).finally(() => {
        active.delete(p);
        const f = slotFree;
        slotFree = null;
        f?.();
        if (!cfg.persistent && active.size === 0) stop();
      });
      active.add(p);
    }
  } finally {
    await Promise.allSettled([...active]);
    Deno.removeSignalListener("SIGTERM", onSignal);
    Deno.removeSignalListener("SIGINT", onSignal);
    await driver.close().catch(() => {});
    if (cfg.socket) {
      try {
        Deno.removeSync(cfg.socket);
      } catch { /* gone */ }
    }
    if (cfg.pidFile) {
      try {
        Deno.removeSync(cfg.pidFile);
      } catch { /* gone */ }
    }
  }
  return 0;
}

/** --fork: run the server as a detached child and return once it listens. */
async function forkServer(): Promise<number> {
  // Under `deno run` the child is the same script again; a compiled qemu-nbd is its own program.
  const exe = Deno.execPath();
  const underDeno = /^deno(\.exe)?$/.test(exe.split("/").pop() ?? "");
  const child = new Deno.Command(exe, {
    args: underDeno ? ["run", "-A", Deno.mainModule, ...Deno.args] : [...Deno.args],
    env: { [FORK_ENV]: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  if (value && new TextDecoder().decode(value).startsWith("ready")) {
    child.unref();
    return 0;
  }
  const status = await child.status;
  return status.code || 1;
}
