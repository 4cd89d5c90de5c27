/** Errors a command reports back to the client, with qemu-ga's error classes. */

/** The error classes qemu-ga uses on the wire. */
export type QgaErrorClass = "GenericError" | "CommandNotFound";

/** An error that becomes `{"error": {"class": ..., "desc": ...}}`. */
export class QgaError extends Error {
  constructor(message: string, readonly errorClass: QgaErrorClass = "GenericError") {
    super(message);
    this.name = "QgaError";
  }
}

/** The strerror() text of a Deno or libc error, as C's error_setg_errno would append. */
export function errnoText(e: unknown): string {
  if (e && typeof e === "object") {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && code in ERRNO_TEXT) return ERRNO_TEXT[code];
    const msg = (e as { message?: unknown }).message;
    if (typeof msg === "string") {
      // Deno: "No such file or directory (os error 2): open '/x'".
      const m = /^(.*?) \(os error \d+\)/.exec(msg);
      if (m) return m[1];
      return msg;
    }
  }
  return String(e);
}

const ERRNO_TEXT: Record<string, string> = {
  EPERM: "Operation not permitted",
  ENOENT: "No such file or directory",
  EIO: "Input/output error",
  EBADF: "Bad file descriptor",
  EACCES: "Permission denied",
  EBUSY: "Device or resource busy",
  EEXIST: "File exists",
  ENOTDIR: "Not a directory",
  EISDIR: "Is a directory",
  EINVAL: "Invalid argument",
  ENOSPC: "No space left on device",
  ESPIPE: "Illegal seek",
  EROFS: "Read-only file system",
  ENOTTY: "Inappropriate ioctl for device",
  EOPNOTSUPP: "Operation not supported",
  ENOTSUP: "Operation not supported",
  ELOOP: "Too many levels of symbolic links",
  ENAMETOOLONG: "File name too long",
  EAGAIN: "Resource temporarily unavailable",
};
