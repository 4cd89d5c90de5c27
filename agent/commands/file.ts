/**
 * guest-file-open/read/write/seek/flush/close: files opened on behalf of the host, named by
 * handles from the persistent counter. Reads and writes loop like stdio's fread/fwrite.
 */
import type { CommandDef, GuestAgent } from "../agent.ts";
import { errnoText, QgaError } from "../errors.ts";
import { fopenFlags, GuestFd } from "./fd.ts";
import { decodeBase64, encodeBase64 } from "../base64.ts";
import type { PersistentState } from "../state.ts";

/** The largest read qemu-ga allows (48 MiB) and its default (4 KiB). */
export const QGA_READ_COUNT_MAX = 48 * 1024 * 1024;
const QGA_READ_COUNT_DEFAULT = 4096;

interface OpenFile {
  file: GuestFd;
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
    run: (args, { agent }) => {
      const path = args.path as string;
      const mode = (args.mode as string | undefined) ?? "r";
      const flags = fopenFlags(mode);
      if (flags === undefined) throw new QgaError(`invalid file open mode '${mode}'`);
      let file: GuestFd;
      try {
        file = GuestFd.open(path, flags);
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
    run: (args, { agent }) => {
      const f = table(agent).get(args.handle);
      const count = args.count === undefined ? QGA_READ_COUNT_DEFAULT : Number(args.count);
      if (count < 0 || count > QGA_READ_COUNT_MAX) invalidCount(args.count);
      const buf = new Uint8Array(count);
      let done: number, eof: boolean;
      try {
        ({ count: done, eof } = f.file.read(buf));
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
    run: (args, { agent }) => {
      const f = table(agent).get(args.handle);
      const data = decodeBase64(args["buf-b64"] as string);
      const count = args.count === undefined ? data.length : Number(args.count);
      if (count < 0 || count > data.length) invalidCount(args.count);
      let done = 0;
      try {
        done = f.file.write(data.subarray(0, count) as Uint8Array<ArrayBuffer>);
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
    run: (args, { agent }) => {
      const f = table(agent).get(args.handle);
      const w = args.whence;
      let whence: 0 | 1 | 2;
      if (w === "set" || w === 0) whence = 0;
      else if (w === "cur" || w === 1) whence = 1;
      else if (w === "end" || w === 2) whence = 2;
      else throw new QgaError(`invalid whence code ${w}`);
      let position: number;
      try {
        position = f.file.seek(Number(args.offset), whence);
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
