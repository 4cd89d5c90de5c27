/**
 * Filesystems and disks: guest-get-fsinfo, guest-get-disks, guest-fsfreeze-*, guest-fstrim.
 * The mount list is /proc/self/mountinfo restricted to block-device filesystems, as qemu-ga
 * builds it; the per-device descriptions are in disks.ts.
 */
import type { CommandDef, GuestAgent } from "../agent.ts";
import { errnoText, QgaError } from "../errors.ts";
import { fsFreeze, fsThaw, fsTrim, SysError } from "@demu/sys";
import type { PersistentState } from "../state.ts";
import { diskEntries, fsInfo } from "./disks.ts";

/** One mounted block-device filesystem. */
export interface Mount {
  dirname: string;
  devtype: string;
  major: number;
  minor: number;
}

/** Undoes mountinfo's escapes: octal ones (a space is written "\\040") and a doubled "\\". */
function unescapeMount(s: string): string {
  return s.replace(
    /\\(\\|[0-3][0-7]{2})/g,
    (_, o) => o === "\\" ? "\\" : String.fromCharCode(parseInt(o, 8)),
  );
}

/** The device numbers of a block device node (for btrfs, whose mounts report major 0). */
function blockDevNumbers(path: string): [number, number] | undefined {
  try {
    const st = Deno.statSync(path);
    if (!st.isBlockDevice || st.rdev === null) return undefined;
    return [Math.floor(st.rdev / 256) & 0xfff, (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00)];
  } catch {
    return undefined;
  }
}

/**
 * Parses mountinfo into the filesystems qemu-ga acts on: block-device backed ones (btrfs
 * through its device node). Bind mounts are listed too, as qemu-ga 7.2 lists them.
 */
export function parseMountinfo(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    const dash = f.indexOf("-", 6);
    if (dash < 0 || f.length < dash + 3) continue;
    let [maj, min] = f[2].split(":").map(Number);
    const type = f[dash + 1];
    if (maj === 0) {
      const nums = type === "btrfs" ? blockDevNumbers(unescapeMount(f[dash + 2])) : undefined;
      if (!nums) continue;
      [maj, min] = nums;
    }
    out.push({ dirname: unescapeMount(f[4]), devtype: type, major: maj, minor: min });
  }
  return out;
}

/** The current mounts; throws qemu-ga's error when mountinfo cannot be read. */
export function mountList(): Mount[] {
  try {
    return parseMountinfo(Deno.readTextFileSync("/proc/self/mountinfo"));
  } catch (e) {
    throw new QgaError(`failed to open /proc/self/mountinfo: ${errnoText(e)}`);
  }
}

function freezeState(agent: GuestAgent): PersistentState {
  const s = agent.state.get("persistent") as PersistentState | undefined;
  if (!s) throw new QgaError("state directory is not available");
  return s;
}

async function runHook(agent: GuestAgent, arg: "freeze" | "thaw"): Promise<void> {
  const hook = agent.options.fsfreezeHook;
  if (!hook) return;
  try {
    const st = Deno.statSync(hook);
    if (!st.isFile || !((st.mode ?? 0) & 0o111)) throw new Error("not executable");
  } catch {
    throw new QgaError(`can't access fsfreeze hook '${hook}'`);
  }
  const s = await new Deno.Command(hook, { args: [arg], stdin: "null" }).output();
  if (!s.success) throw new QgaError(`fsfreeze hook has failed with status ${s.code}`);
}

function setFrozen(agent: GuestAgent, frozen: boolean): void {
  agent.frozen = frozen;
  freezeState(agent).markFrozen(frozen);
}

/** Thaws every mount (FITHAW until EINVAL, undoing stacked freezes); returns how many thawed. */
function thawAll(): number {
  let n = 0;
  for (const m of mountList()) {
    let thawed = false;
    for (let tries = 0; tries < 64; tries++) {
      try {
        fsThaw(m.dirname);
        thawed = true;
      } catch {
        break;
      }
    }
    if (thawed) n++;
  }
  return n;
}

async function freeze(agent: GuestAgent, mountpoints?: string[]): Promise<number> {
  await runHook(agent, "freeze");
  setFrozen(agent, true);
  let count = 0;
  try {
    const mounts = mountList().reverse();
    for (const m of mounts) {
      if (mountpoints && !mountpoints.includes(m.dirname)) continue;
      try {
        fsFreeze(m.dirname);
        count++;
      } catch (e) {
        // EOPNOTSUPP: not freezable; EBUSY: already frozen (another mount of the same device).
        if (e instanceof SysError && (e.errno === 95 || e.errno === 16)) continue;
        const why = e instanceof SysError ? e.message : errnoText(e);
        const verb = e instanceof SysError && e.call === "open" ? "open" : "freeze";
        throw new QgaError(`failed to ${verb} ${m.dirname}: ${why}`);
      }
    }
  } catch (e) {
    thawAll();
    setFrozen(agent, false);
    await runHook(agent, "thaw").catch(() => {});
    throw e;
  }
  // Nothing frozen: back to thawed (qemu-ga runs no thaw hook then).
  if (count === 0) setFrozen(agent, false);
  return count;
}

export const fsCommands: CommandDef[] = [
  // Newest mount first, as qemu-ga lists them.
  { name: "guest-get-fsinfo", run: () => mountList().map(fsInfo).reverse() },
  { name: "guest-get-disks", run: () => diskEntries() },
  {
    name: "guest-fsfreeze-status",
    run: (_args, { agent }) => agent.frozen ? "frozen" : "thawed",
  },
  { name: "guest-fsfreeze-freeze", run: (_a, { agent }) => freeze(agent) },
  {
    name: "guest-fsfreeze-freeze-list",
    args: { "*mountpoints": { list: "str" } },
    run: (args, { agent }) => freeze(agent, args.mountpoints as string[] | undefined),
  },
  {
    name: "guest-fsfreeze-thaw",
    run: async (_a, { agent }) => {
      const n = thawAll();
      setFrozen(agent, false);
      await runHook(agent, "thaw");
      return n;
    },
  },
  {
    name: "guest-fstrim",
    args: { "*minimum": "int" },
    run: (args) => {
      const minimum = BigInt((args.minimum as number | bigint | undefined) ?? 0);
      const paths = [];
      for (const m of mountList()) {
        try {
          const r = fsTrim(m.dirname, minimum < 0n ? 0n : minimum);
          paths.unshift({ path: m.dirname, trimmed: r.trimmed, minimum: r.minimum });
        } catch (e) {
          const errno = e instanceof SysError ? e.errno : 0;
          const error = errno === 25 || errno === 95
            ? "trim not supported"
            : e instanceof SysError && e.call === "open"
            ? `failed to open: ${e.message}`
            : `failed to trim: ${e instanceof Error ? e.message : e}`;
          paths.unshift({ path: m.dirname, error });
        }
      }
      return { paths };
    },
  },
];
