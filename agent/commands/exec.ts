/**
 * guest-exec and guest-exec-status: start a program with optional stdin data and captured
 * output; its status is collected once, after it exits and its pipes are drained.
 */
import type { CommandDef, GuestAgent } from "../agent.ts";
import { errnoText, QgaError } from "../errors.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";

/** qemu-ga keeps at most 16 MiB of each output stream and flags the rest as truncated. */
export const GUEST_EXEC_MAX_OUTPUT = 16 * 1024 * 1024;

interface Captured {
  chunks: Uint8Array[];
  size: number;
  truncated: boolean;
}

interface Running {
  child: Deno.ChildProcess;
  status?: Deno.CommandStatus;
  done: Promise<void>;
  /** Set once the child exited and its pipes are drained. */
  finished: boolean;
  out?: Captured;
  err?: Captured;
}

/** Children started by guest-exec, by pid, until their status is collected. */
export class ExecTable {
  readonly running = new Map<number, Running>();
  close(): void {
    for (const r of this.running.values()) {
      try {
        r.child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    this.running.clear();
  }
}

async function drain(stream: ReadableStream<Uint8Array>, into: Captured): Promise<void> {
  for await (const chunk of stream) {
    const room = GUEST_EXEC_MAX_OUTPUT - into.size;
    if (room <= 0) {
      into.truncated = true;
      continue;
    }
    const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (part.length < chunk.length) into.truncated = true;
    into.chunks.push(part);
    into.size += part.length;
  }
}

function joined(c: Captured): Uint8Array {
  const out = new Uint8Array(c.size);
  let off = 0;
  for (const ch of c.chunks) {
    out.set(ch, off);
    off += ch.length;
  }
  return out;
}

/** A bare name is looked up in the agent's PATH, as g_spawn's SEARCH_PATH does. */
function resolve(path: string): string | undefined {
  if (path.includes("/")) return path;
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    const p = `${dir || "."}/${path}`;
    try {
      const st = Deno.statSync(p);
      if (st.isFile) return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function execTable(agent: GuestAgent): ExecTable {
  return agent.slot("exec", () => new ExecTable());
}

export const execCommands: CommandDef[] = [
  {
    name: "guest-exec",
    args: {
      path: "str",
      "*arg": { list: "str" },
      "*env": { list: "str" },
      "*input-data": "str",
      "*capture-output": {
        alternate: "GuestExecCaptureOutput",
        bool: true,
        enum: { values: ["none", "stdout", "stderr", "separated", "merged"] },
      },
    },
    run: (args, { agent }) => {
      const path = args.path as string;
      const input = args["input-data"] !== undefined
        ? decodeBase64(args["input-data"] as string)
        : undefined;
      const cap = args["capture-output"];
      const mode = cap === true ? "separated" : cap === false || cap === undefined ? "none" : cap;
      const wantOut = mode === "stdout" || mode === "separated" || mode === "merged";
      const wantErr = mode === "stderr" || mode === "separated" || mode === "merged";
      const fail = (why: string): never => {
        throw new QgaError(
          `Guest agent command failed, error was 'Failed to execute child process \u201C${path}\u201D (${why})'`,
        );
      };
      const exe = resolve(path);
      if (!exe) fail("No such file or directory");
      let env: Record<string, string> | undefined;
      if (args.env !== undefined) {
        env = {};
        for (const kv of args.env as string[]) {
          const i = kv.indexOf("=");
          if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
        }
      }
      let child: Deno.ChildProcess;
      try {
        child = new Deno.Command(exe!, {
          args: (args.arg as string[] | undefined) ?? [],
          env,
          clearEnv: env !== undefined,
          stdin: input ? "piped" : "null",
          stdout: wantOut ? "piped" : "null",
          stderr: wantErr ? "piped" : "null",
        }).spawn();
      } catch (e) {
        return fail(errnoText(e));
      }
      const r: Running = { child, done: Promise.resolve(), finished: false };
      const waits: Promise<unknown>[] = [child.status.then((s) => r.status = s)];
      if (wantOut) {
        r.out = { chunks: [], size: 0, truncated: false };
        waits.push(drain(child.stdout, r.out));
      }
      if (wantErr) {
        // "merged" delivers both streams in out-data, as qemu-ga does.
        const into = mode === "merged"
          ? r.out!
          : (r.err = { chunks: [], size: 0, truncated: false });
        waits.push(drain(child.stderr, into));
      }
      if (input) {
        const w = child.stdin.getWriter();
        waits.push(w.write(input).then(() => w.close()).catch(() => {}));
      }
      r.done = Promise.all(waits).then(() => {
        r.finished = true;
      });
      r.done.catch(() => r.finished = true);
      execTable(agent).running.set(child.pid, r);
      return { pid: child.pid };
    },
  },
  {
    name: "guest-exec-status",
    args: { pid: "int" },
    run: async (args, { agent }) => {
      const t = execTable(agent);
      const pid = Number(args.pid);
      const r = t.running.get(pid);
      if (!r) throw new QgaError("Invalid parameter 'pid'");
      // Give a child that has just exited a moment to have its pipes drained.
      await Promise.race([r.done, new Promise((res) => setTimeout(res, 0))]);
      if (!r.status || !r.finished) return { exited: false };
      t.running.delete(pid);
      const res: Record<string, unknown> = { exited: true };
      if (r.status.signal) res.signal = signalNumber(r.status.signal);
      else res.exitcode = r.status.code;
      for (const [key, c] of [["out", r.out], ["err", r.err]] as const) {
        if (c && c.size > 0) {
          res[`${key}-data`] = encodeBase64(joined(c));
          res[`${key}-truncated`] = c.truncated;
        }
      }
      return res;
    },
  },
];

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
};

function signalNumber(sig: Deno.Signal): number {
  return SIGNALS[sig] ?? 0;
}
