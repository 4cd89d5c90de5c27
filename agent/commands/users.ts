/**
 * guest-set-user-password (through chpasswd) and guest-ssh-get/add/remove-authorized-keys
 * (the user's ~/.ssh/authorized_keys, created 0700/0600 and owned by the user).
 */
import type { CommandDef } from "../agent.ts";
import { errnoText, QgaError } from "../errors.ts";
import { decodeBase64 } from "../base64.ts";
import { findProgram, runChild } from "./process.ts";

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** Looks a user up in /etc/passwd (the local user database qemu-ga's getpwnam reads here). */
export function lookupUser(name: string): PasswdEntry {
  let text = "";
  try {
    text = Deno.readTextFileSync("/etc/passwd");
  } catch {
    // treated as no such user
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length >= 7 && f[0] === name) {
      return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] };
    }
  }
  throw new QgaError(`failed to lookup user '${name}': Success`);
}

function keysPath(user: PasswdEntry): string {
  return `${user.home}/.ssh/authorized_keys`;
}

function readKeysFile(path: string): string[] | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new QgaError(
      `failed to read '${path}': Failed to open file \u201C${path}\u201D: ${errnoText(e)}`,
    );
  }
  return text.split("\n");
}

/** Keys as qemu-ga accepts them: non-empty, one line each. */
function checkKeys(keys: string[]): void {
  for (const k of keys) {
    if (k.trim() === "" || k.includes("\n") || k.includes("\r")) {
      throw new QgaError(`invalid OpenSSH public key: '${k}'`);
    }
  }
}

function writeKeys(user: PasswdEntry, lines: string[]): void {
  const dir = `${user.home}/.ssh`;
  const path = keysPath(user);
  try {
    try {
      Deno.statSync(dir);
    } catch {
      Deno.mkdirSync(dir, { mode: 0o700 });
      Deno.chownSync(dir, user.uid, user.gid);
    }
    const tmp = `${path}.${crypto.randomUUID().slice(0, 6)}`;
    // One key per line, no newline after the last one (as qemu-ga writes it).
    Deno.writeTextFileSync(tmp, lines.join("\n"), { mode: 0o600 });
    Deno.chmodSync(tmp, 0o600);
    Deno.chownSync(tmp, user.uid, user.gid);
    Deno.renameSync(tmp, path);
  } catch (e) {
    throw new QgaError(`failed to write '${path}': ${errnoText(e)}`);
  }
}

function isKeyLine(l: string): boolean {
  const t = l.trim();
  return t !== "" && !t.startsWith("#");
}

export const userCommands: CommandDef[] = [
  {
    name: "guest-set-user-password",
    args: { username: "str", password: "str", crypted: "bool" },
    run: async (args) => {
      const raw = new TextDecoder().decode(decodeBase64(args.password as string));
      if (raw.includes("\n")) throw new QgaError("forbidden characters in raw password");
      const user = args.username as string;
      if (user.includes("\n") || user.includes(":")) {
        throw new QgaError("forbidden characters in username");
      }
      const chpasswd = findProgram("chpasswd");
      if (!chpasswd) throw new QgaError("cannot find 'chpasswd' program in PATH");
      const argv = args.crypted ? [chpasswd, "-e"] : [chpasswd];
      await runChild(argv, "set user password", `${user}:${raw}\n`);
    },
  },
  {
    name: "guest-ssh-get-authorized-keys",
    args: { username: "str" },
    run: (args) => {
      const user = lookupUser(args.username as string);
      const path = keysPath(user);
      const lines = readKeysFile(path);
      if (lines === undefined) {
        throw new QgaError(
          `failed to read '${path}': Failed to open file \u201C${path}\u201D: No such file or directory`,
        );
      }
      // qemu-ga lists them last line first.
      return { keys: lines.filter(isKeyLine).map((l) => l.trim()).reverse() };
    },
  },
  {
    name: "guest-ssh-add-authorized-keys",
    args: { username: "str", keys: { list: "str" }, "*reset": "bool" },
    run: (args) => {
      const keys = args.keys as string[];
      checkKeys(keys);
      const user = lookupUser(args.username as string);
      const existing = args.reset ? [] : (readKeysFile(keysPath(user)) ?? []);
      const lines = existing.filter((l) => l !== "");
      for (const k of keys) if (!lines.includes(k)) lines.push(k);
      writeKeys(user, lines);
    },
  },
  {
    name: "guest-ssh-remove-authorized-keys",
    args: { username: "str", keys: { list: "str" } },
    run: (args) => {
      const keys = args.keys as string[];
      checkKeys(keys);
      const user = lookupUser(args.username as string);
      const existing = readKeysFile(keysPath(user));
      if (existing === undefined) return;
      const lines = existing.filter((l) => l !== "" && !keys.includes(l.trim()));
      writeKeys(user, lines);
    },
  },
];
