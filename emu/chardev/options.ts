/**
 * `-chardev BACKEND,id=ID[,opt=value...]` as QEMU 7.2 parses it: the option names every backend
 * shares (an unknown one is `Invalid parameter`), typed values (booleans, numbers, sizes), the
 * deprecated short-form booleans (`server,nowait`) with QEMU's warnings, then each backend's own
 * checks, in QEMU's order and with its words. `openChardev` builds the backend: socket, stdio,
 * file, pipe or null, with `logfile=` copying the output.
 */
import { type CharBackend, FileBackend, LogTee, NullBackend } from "./mod.ts";
import { PipeBackend, PipeOpenError } from "./pipe.ts";
import { SocketBackend, type SocketSpec } from "./socket.ts";

const PROG = "qemu-system-x86_64";

type OptKind = "bool" | "number" | "size" | "string";

/** Every name QEMU's chardev option group knows, whatever the backend. */
const CHARDEV_OPTS: Record<string, OptKind> = {
  backend: "string",
  path: "string",
  host: "string",
  port: "string",
  fd: "string",
  localaddr: "string",
  localport: "string",
  to: "number",
  ipv4: "bool",
  ipv6: "bool",
  wait: "bool",
  server: "bool",
  delay: "bool",
  nodelay: "bool",
  reconnect: "number",
  telnet: "bool",
  tn3270: "bool",
  "tls-creds": "string",
  "tls-authz": "string",
  websocket: "bool",
  width: "number",
  height: "number",
  cols: "number",
  rows: "number",
  mux: "bool",
  signal: "bool",
  name: "string",
  debug: "number",
  size: "size",
  chardev: "string",
  append: "bool",
  logfile: "string",
  logappend: "bool",
  mouse: "bool",
  clipboard: "bool",
  tight: "bool",
  abstract: "bool",
};

/** The backends demu opens. */
const BACKENDS = new Set(["socket", "stdio", "file", "pipe", "null"]);
/** QEMU's other backends on Linux: valid names there, not built by demu. */
const QEMU_ONLY = new Set([
  "vc",
  "pty",
  "udp",
  "ringbuf",
  "memory",
  "serial",
  "tty",
  "parallel",
  "parport",
  "msmouse",
  "wctablet",
  "braille",
  "testdev",
  "spicevmc",
  "spiceport",
  "qemu-vdagent",
  "dbus",
  "mux",
]);

/** A parsed -chardev. */
export interface ChardevSpec {
  id: string;
  backend: string;
  /** Values as given, booleans normalised to "on" / "off". */
  opts: Map<string, string>;
  /** "-chardev VALUE", the prefix of QEMU's messages about it. */
  origin: string;
}

const TRUE = new Set(["on", "yes", "true", "y"]);
const FALSE = new Set(["off", "no", "false", "n"]);

/** Splits QemuOpts text at commas (",," is a literal comma). */
function splitOpts(s: string): string[] {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== ",") cur += s[i];
    else if (s[i + 1] === ",") {
      cur += ",";
      i++;
    } else {
      parts.push(cur);
      cur = "";
    }
  }
  parts.push(cur);
  return parts;
}

const SIZE_UNITS = "kmgtpe";

function validSize(v: string): boolean {
  const m = /^(\d+(?:\.\d+)?)([kKMGTPEb]?)$/.exec(v.trim());
  if (!m) return false;
  const shift = m[2] && m[2] !== "b" ? (SIZE_UNITS.indexOf(m[2].toLowerCase()) + 1) * 10 : 0;
  return Number(m[1]) * 2 ** shift < 2 ** 64;
}

/**
 * Parses a -chardev value. Throws QEMU's message (prefixed by the origin); deprecated forms are
 * reported through `warn` (QEMU's whole two-line warning).
 */
export function parseChardev(
  value: string,
  warn: (message: string) => void = (m) => console.error(m),
): ChardevSpec {
  const origin = `-chardev ${value}`;
  const fail = (m: string): never => {
    throw new Error(`${origin}: ${m}`);
  };
  const parts = splitOpts(value);
  const pairs: [string, string, boolean][] = []; // name, value, given in short form
  parts.forEach((p, i) => {
    const eq = p.indexOf("=");
    if (eq >= 0) pairs.push([p.slice(0, eq), p.slice(eq + 1), false]);
    else if (i === 0) pairs.push(["backend", p, false]);
    else if (p.startsWith("no")) pairs.push([p.slice(2), "off", true]);
    else pairs.push([p, "on", true]);
  });
  // The id first (QEMU creates the option set under it before reading the rest).
  const id = pairs.findLast(([k]) => k === "id")?.[1];
  if (id !== undefined && !/^[A-Za-z][A-Za-z0-9_.-]*$/.test(id)) {
    fail(
      "Parameter 'id' expects an identifier\n" +
        "Identifiers consist of letters, digits, '-', '.', '_', starting with a letter.",
    );
  }
  const opts = new Map<string, string>();
  parts.forEach((p, i) => {
    const [k, v, short] = pairs[i];
    if (k === "id") return;
    if (short) {
      warn(
        `${PROG}: ${origin}: warning: short-form boolean option '${p}' deprecated\n` +
          `Please use ${k}=${v} instead`,
      );
    }
    const kind = CHARDEV_OPTS[k];
    if (!kind) fail(`Invalid parameter '${k}'`);
    if (kind === "bool") {
      if (TRUE.has(v)) opts.set(k, "on");
      else if (FALSE.has(v)) opts.set(k, "off");
      else fail(`Parameter '${k}' expects 'on' or 'off'`);
      return;
    }
    if (kind === "number" && !/^(0x[0-9a-fA-F]+|\d+)$/.test(v)) {
      fail(`Parameter '${k}' expects a number`);
    }
    if (kind === "size" && !validSize(v)) {
      fail(
        `Parameter '${k}' expects a non-negative number below 2^64\n` +
          "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n" +
          "and exabytes, respectively.",
      );
    }
    opts.set(k, v);
  });

  if (id === undefined) fail("chardev: no id specified");
  const backend = opts.get("backend");
  if (backend === undefined) fail(`chardev: "${id}" missing backend`);
  if (!BACKENDS.has(backend!)) {
    if (QEMU_ONLY.has(backend!)) fail(`chardev: '${backend}' is not supported by demu yet`);
    fail(`'${backend}' is not a valid char driver name`);
  }
  const has = (k: string) => opts.has(k);
  const on = (k: string) => opts.get(k) === "on";
  switch (backend) {
    case "file":
      if (!has("path")) fail("chardev: file: no filename given");
      break;
    case "pipe":
      if (!has("path")) fail("chardev: pipe: no device path given");
      break;
    case "socket": {
      const given = ["path", "fd", "host"].filter(has).length;
      if (given > 1) fail("None or one of 'path', 'fd' or 'host' option required.");
      if (!has("path") && !has("host")) {
        const fd = opts.get("fd") ?? "";
        if (!/^\d+$/.test(fd)) fail(`Unable to parse FD number ${fd}`);
        fail("chardev: socket: fd= (an inherited socket) is not supported by demu");
      }
      if (has("host") && !has("port")) fail("chardev: socket: no port given");
      const server = on("server");
      if (server && has("reconnect")) {
        fail("'reconnect' option is incompatible with socket in server listen mode");
      }
      if (!server && has("wait")) {
        fail("'wait' option is incompatible with socket in client connect mode");
      }
      for (const k of ["telnet", "tn3270", "websocket", "abstract"]) {
        if (on(k)) fail(`chardev: socket: ${k}=on is not supported by demu yet`);
      }
      if (has("tls-creds")) fail("chardev: socket: TLS is not supported by demu yet");
      break;
    }
  }
  return { id: id!, backend: backend!, opts, origin };
}

/** The socket address and mode of a `-chardev socket`. */
export function socketSpec(c: ChardevSpec): SocketSpec {
  const o = c.opts;
  const server = o.get("server") === "on";
  const path = o.get("path");
  return {
    kind: path !== undefined ? "unix" : "tcp",
    path: path ?? "",
    host: path !== undefined ? "" : (o.get("host") || (server ? "0.0.0.0" : "localhost")),
    port: Number(o.get("port") ?? 0),
    server,
    wait: server && o.get("wait") !== "off",
    reconnect: server ? 0 : Number(o.get("reconnect") ?? 0),
  };
}

function openError(path: string, e: unknown, verb = "open"): string {
  const why = e instanceof Deno.errors.NotFound
    ? "No such file or directory"
    : e instanceof Deno.errors.PermissionDenied
    ? "Permission denied"
    : e instanceof Deno.errors.IsADirectory || /os error 21/.test(String(e))
    ? "Is a directory"
    : (e as Error).message.replace(/ \(os error \d+\).*$/, "");
  return `Could not ${verb} '${path}': ${why}`;
}

/**
 * Opens a -chardev's backend. `stdio` comes from the caller (one owner of the terminal per
 * process); `info` gets QEMU's informational lines without the program name ("-chardev ...:
 * info: QEMU waiting for connection on: ...").
 */
export async function openChardev(
  c: ChardevSpec,
  stdio: (o: { mux: boolean; signal: boolean }) => CharBackend,
  info: (message: string) => void,
): Promise<CharBackend> {
  const o = c.opts;
  const fail = (m: string): never => {
    throw new Error(`${c.origin}: ${m}`);
  };
  let log: Deno.FsFile | null = null;
  const logfile = o.get("logfile");
  if (logfile !== undefined) {
    try {
      log = Deno.openSync(logfile, {
        write: true,
        create: true,
        append: o.get("logappend") === "on",
        truncate: o.get("logappend") !== "on",
      });
    } catch (e) {
      fail(openError(logfile, e, "create"));
    }
  }
  let b: CharBackend;
  try {
    b = await openBackend(c, stdio, info);
  } catch (e) {
    log?.close();
    throw e;
  }
  return log ? new LogTee(b, log) : b;
}

async function openBackend(
  c: ChardevSpec,
  stdio: (o: { mux: boolean; signal: boolean }) => CharBackend,
  info: (message: string) => void,
): Promise<CharBackend> {
  const o = c.opts;
  const fail = (m: string): never => {
    throw new Error(`${c.origin}: ${m}`);
  };
  switch (c.backend) {
    case "null":
      return new NullBackend();
    case "stdio":
      return stdio({ mux: o.get("mux") === "on", signal: o.get("signal") !== "off" });
    case "file": {
      const path = o.get("path")!;
      try {
        return new FileBackend(path, o.get("append") === "on");
      } catch (e) {
        return fail(openError(path, e));
      }
    }
    case "pipe":
      try {
        return PipeBackend.open(o.get("path")!);
      } catch (e) {
        if (!(e instanceof PipeOpenError)) throw e;
        return fail(openError(e.path, e.cause));
      }
    case "socket":
      try {
        return await SocketBackend.open(socketSpec(c), (m) => info(`${c.origin}: info: ${m}`), {
          id: c.id,
          error: (m) => console.error(`${PROG}: ${m}`),
        });
      } catch (e) {
        return fail((e as Error).message);
      }
  }
  return fail(`'${c.backend}' is not a valid char driver name`);
}

/**
 * The -chardev value whose id is `id` (for `-serial chardev:ID`), found without parsing the rest
 * so that its warnings are printed once, when it is opened.
 */
export function chardevValueById(values: string[], id: string): string | undefined {
  return values.findLast((v) => splitOpts(v).includes(`id=${id}`));
}
