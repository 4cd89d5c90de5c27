/**
 * Filesystem-level calls: freeze and thaw (FIFREEZE/FITHAW), discard of free space (FITRIM)
 * and statvfs(3). Used by the guest agent's guest-fsfreeze-* and guest-fstrim commands.
 */
import { close, libc, O_RDONLY, open, SysError } from "./libc.ts";

/** _IOWR('X', 119, int): freeze a filesystem (the fd may be any file on it, e.g. its root). */
export const FIFREEZE = 0xc0045877n;
/** _IOWR('X', 120, int): thaw it. */
export const FITHAW = 0xc0045878n;
/** _IOWR('X', 121, struct fstrim_range): discard unused blocks. */
export const FITRIM = 0xc0185879n;

const EINTR = 4;

function errnoNow(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

function ioctlOn(path: string, request: bigint, arg: Uint8Array<ArrayBuffer>, name: string): void {
  const fd = open(path, O_RDONLY);
  try {
    for (;;) {
      if (libc().ioctl(fd, request, arg) >= 0) return;
      const e = errnoNow();
      if (e === EINTR) continue;
      throw new SysError(name, e);
    }
  } finally {
    close(fd);
  }
}

/** Freezes the filesystem mounted at mountpoint (EBUSY: already frozen). */
export function fsFreeze(mountpoint: string): void {
  ioctlOn(mountpoint, FIFREEZE, new Uint8Array(8), "FIFREEZE");
}

/** Thaws it (EINVAL: it was not frozen). */
export function fsThaw(mountpoint: string): void {
  ioctlOn(mountpoint, FITHAW, new Uint8Array(8), "FITHAW");
}

/** The kernel's answer to FITRIM: bytes trimmed and the minimum extent it honoured. */
export interface TrimResult {
  trimmed: bigint;
  minimum: bigint;
}

/** Discards free space of the filesystem at mountpoint in extents of at least minimum bytes. */
export function fsTrim(mountpoint: string, minimum = 0n): TrimResult {
  const range = new BigUint64Array([0n, 0xffffffffffffffffn, minimum]);
  ioctlOn(mountpoint, FITRIM, new Uint8Array(range.buffer), "FITRIM");
  return { trimmed: range[1], minimum: range[2] };
}

const statSymbols = {
  statvfs: { parameters: ["buffer", "buffer"], result: "i32" },
} as const;
let statLib: Deno.DynamicLibrary<typeof statSymbols>["symbols"] | undefined;

/** The fields of struct statvfs (x86_64) the agent reports. */
export interface StatVfs {
  bsize: bigint;
  frsize: bigint;
  blocks: bigint;
  bfree: bigint;
  bavail: bigint;
}

/** statvfs(3). */
export function statvfs(path: string): StatVfs {
  statLib ??= Deno.dlopen("libc.so.6", statSymbols).symbols;
  const buf = new BigUint64Array(14);
  const name = new TextEncoder().encode(path + "\0");
  if (statLib.statvfs(name, new Uint8Array(buf.buffer)) < 0) {
    throw new SysError("statvfs", errnoNow());
  }
  return { bsize: buf[0], frsize: buf[1], blocks: buf[2], bfree: buf[3], bavail: buf[4] };
}
