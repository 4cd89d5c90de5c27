/**
 * guest-file-open/read/write/seek/flush/close: files opened on behalf of the host, named by
 * handles from the persistent counter. Reads and writes loop like stdio's fread/fwrite.
 */
import type { CommandDef, GuestAgent } from "../agent.ts";
import { errnoText, QgaError } from "../errors.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import type { PersistentState } from "../state.ts";

/** The largest read qemu-ga allows (48 MiB) and its default (4 KiB). */
export const QGA_READ_COUNT_MAX = 48 * 1024 * 1024;
const QGA_READ_COUNT_DEFAULT = 4096;

interface OpenFile {
  file: Deno.FsFile;
  eof: boolean;
}

/** The open-file table; closing the agent closes every file. */
export class FileTable {
  readonly files = new Map<number, OpenFile>();
  constructor(readonly persistent: PersistentState) {}

  get(handle: unknown): OpenFile {
    const f = this.files.get(Number(handle));
    if (!f) throw new QgaError(`handle '${handle}' has not been found`);
    return f;
  }

  close(): void {
    for (const f of this.files.values()) {
      try {
        f.file.close();
      } catch {
        // already closed
      }
    }
    this.files.clear();
  }
}

/** fopen(3) modes and the open(2) options they mean. */
const MODES: Record<string, Deno.OpenOptions> = {
  r: { read: true },
  w: { write: true, create: true, truncate: true },
  a: { append: true, create: true },
  "r+": { read: true, write: true },
  "w+": { read: true, write: true, create: true, truncate: true },
  "a+": { read: true, append: true, create: true },
};

function modeOptions(mode: string): Deno.OpenOptions | undefined {
  // "rb", "r+b" and "rb+" are the same as their text forms on Linux.
  const m = /^([rwa])(b?)(\+?)(b?)$/.exec(mode);
  if (!m || (m[2] && m[4])) return undefined;
  return MODES[m[1] + m[3]];
}

function table(agent: GuestAgent): FileTable {
  const t = agent.state.get("files") as FileTable | undefined;
  if (!t) throw new QgaError("file handles are not available");
  return t;
}

function invalidCount(count: unknown): never {
  throw new QgaError(`value '${count}' is invalid for argument count`);
}

export const fileCommands: CommandDef[] = [
  {
    name: "guest-file-open",
    args: { path: "str", "*mode": "str" },
    run: async (args, { agent }) => {
      const path = args.path as string;
      const mode = (args.mode as string | undefined) ?? "r";
      const opts = modeOptions(mode);
      if (!opts) throw new QgaError(`invalid file open mode '${mode}'`);
      let file: Deno.FsFile;
      try {
        file = await Deno.open(path, { ...opts, mode: 0o666 });
      } catch (e) {
        throw new QgaError(
          `failed to open file '${path}' (mode: '${mode}'): ${errnoText(e)}`,
        );
      }
      const t = table(agent);
      let handle: number;
      try {
        handle = t.persistent.nextHandle();
      } catch (e) {
        agent.log("critical", (e as Error).message);
        file.close();
        throw new QgaError("failed to commit persistent state to disk");
      }
      t.files.set(handle, { file, eof: false });
      return handle;
    },
  },
  {
    name: "guest-file-close",
    args: { handle: "int" },
    run: (args, { agent }) => {
      const t = table(agent);
      const f = t.get(args.handle);
      t.files.delete(Number(args.handle));
      try {
        f.file.close();
      } catch (e) {
        throw new QgaError(`failed to close handle: ${errnoText(e)}`);
      }
    },
  },
  {
    name: "guest-file-read",
    args: { handle: "int", "*count": "int" },
    run: async (args, { agent }) => {
      const f = table(agent).get(args.handle);
      const count = args.count === undefined ? QGA_READ_COUNT_DEFAULT : Number(args.count);
      if (count < 0 || count > QGA_READ_COUNT_MAX) invalidCount(args.count);
      const buf = new Uint8Array(count);
      let done = 0;
      let eof = false;
      try {
        while (done < count) {
          const n = await f.file.read(buf.subarray(done));
          if (n === null) {
            eof = true;
            break;
          }
          done += n;
        }
      } catch (e) {
        throw new QgaError(`failed to read file: ${errnoText(e)}`);
      }
      f.eof = eof;
      return { count: done, "buf-b64": encodeBase64(buf.subarray(0, done)), eof };
    },
  },
  {
    name: "guest-file-write",
    args: { handle: "int", "buf-b64": "str", "*count": "int" },
    run: async (args, { agent }) => {
      const f = table(agent).get(args.handle);
      const data = decodeBase64(args["buf-b64"] as string);
      const count = args.count === undefined ? data.length : Number(args.count);
      if (count < 0 || count > data.length) invalidCount(args.count);
      let done = 0;
      try {
        while (done < count) done += await f.file.write(data.subarray(done, count));
      } catch (e) {
        throw new QgaError(`failed to write to file: ${errnoText(e)}`);
      }
      return { count: done, eof: false };
    },
  },
  {
    name: "guest-file-seek",
    args: {
      handle: "int",
      offset: "int",
      whence: { alternate: "GuestFileWhence", int: true, enum: { values: ["set", "cur", "end"] } },
    },
    run: async (args, { agent }) => {
      const f = table(agent).get(args.handle);
      const w = args.whence;
      let whence: Deno.SeekMode;
      if (w === "set" || w === 0) whence = Deno.SeekMode.Start;
      else if (w === "cur" || w === 1) whence = Deno.SeekMode.Current;
      else if (w === "end" || w === 2) whence = Deno.SeekMode.End;
      else throw new QgaError(`invalid whence code ${w}`);
      let position: number;
      try {
        position = await f.file.seek(Number(args.offset), whence);
      } catch (e) {
        throw new QgaError(`failed to seek file: ${errnoText(e)}`);
      }
      f.eof = false;
      return { position, eof: false };
    },
  },
  {
    name: "guest-file-flush",
    args: { handle: "int" },
    // The agent keeps no userspace buffer, so what fflush would push is already in the kernel.
    run: (args, { agent }) => {
      table(agent).get(args.handle);
    },
  },
];
