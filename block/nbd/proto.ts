/**
 * The NBD wire protocol's numbers, named as NetworkBlockDevice's doc/proto.md names them, and the
 * small framing helpers the client (block/nbd) and the server (tools/qemu_nbd) share. Socket
 * buffering lives in socket.ts.
 */

// Handshake.
export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const NBD_REP_MAGIC = 0x3e889045565a9n;
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

// Option replies.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1;
export const NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR + 2;
export const NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR + 3;
export const NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR + 4;
export const NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR + 5;
export const NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR + 6;
export const NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR + 7;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR + 8;
export const NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR + 9;

// NBD_REP_INFO types.
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// Transmission flags.
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_RESIZE = 1 << 9;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// Transmission.
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;
export const NBD_REQUEST_SIZE = 28;
export const NBD_SIMPLE_REPLY_SIZE = 16;
export const NBD_STRUCTURED_REPLY_SIZE = 20;

export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

// base:allocation extent flags.
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;

// Errors on the wire (Linux errno values, as the protocol fixes them).
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

export const NBD_DEFAULT_PORT = 10809;
/** The largest READ/WRITE payload QEMU accepts and advertises (NBD_MAX_BUFFER_SIZE). */
export const NBD_MAX_BUFFER_SIZE = 32 * 1024 * 1024;
/** The longest export name or option string (NBD_MAX_STRING_SIZE). */
export const NBD_MAX_STRING_SIZE = 4096;

export const META_BASE_ALLOCATION = "base:allocation";
export const META_QEMU_ALLOCATION_DEPTH = "qemu:allocation-depth";

/** Names of option replies and errors, for messages. */
export function optionErrorName(rep: number): string {
  switch (rep) {
    case NBD_REP_ERR_UNSUP:
      return "unsupported";
    case NBD_REP_ERR_POLICY:
      return "denied by server policy";
    case NBD_REP_ERR_INVALID:
      return "invalid";
    case NBD_REP_ERR_PLATFORM:
      return "platform lacks support";
    case NBD_REP_ERR_TLS_REQD:
      return "TLS negotiation required before option";
    case NBD_REP_ERR_UNKNOWN:
      return "export unknown";
    case NBD_REP_ERR_SHUTDOWN:
      return "server shutting down";
    case NBD_REP_ERR_BLOCK_SIZE_REQD:
      return "block size required";
    case NBD_REP_ERR_TOO_BIG:
      return "option too big";
    default:
      return `error ${rep}`;
  }
}

/** A 64-bit big-endian number read as a plain number (exact to 2^53). */
export function getU64(v: DataView, off: number): number {
  return v.getUint32(off) * 0x100000000 + v.getUint32(off + 4);
}

/** Stores a plain number as a 64-bit big-endian field. */
export function setU64(v: DataView, off: number, n: number): void {
  v.setUint32(off, Math.floor(n / 0x100000000));
  v.setUint32(off + 4, n >>> 0);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });
export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}
export function fromUtf8(b: Uint8Array): string {
  return decoder.decode(b);
}

/** An NBD option reply header plus its payload. */
export function optionReply(option: number, type: number, payload?: Uint8Array): Uint8Array {
  const len = payload?.length ?? 0;
  const out = new Uint8Array(20 + len);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, NBD_REP_MAGIC);
  v.setUint32(8, option);
  v.setUint32(12, type);
  v.setUint32(16, len);
  if (payload) out.set(payload, 20);
  return out;
}

/** A request header. */
export function encodeRequest(
  flags: number,
  type: number,
  handle: number,
  offset: number,
  length: number,
): Uint8Array {
  const out = new Uint8Array(NBD_REQUEST_SIZE);
  const v = new DataView(out.buffer);
  v.setUint32(0, NBD_REQUEST_MAGIC);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  setU64(v, 8, handle);
  setU64(v, 16, offset);
  v.setUint32(24, length);
  return out;
}

/** Linux errno values for the block layer's error codes, as NBD carries them. */
export function nbdErrnoOf(code: string): number {
  switch (code) {
    case "EPERM":
    case "EROFS":
      return NBD_EPERM;
    case "EINVAL":
      return NBD_EINVAL;
    case "ENOSPC":
    case "EFBIG":
      return NBD_ENOSPC;
    case "ENOTSUP":
      return NBD_ENOTSUP;
    default:
      return NBD_EIO;
  }
}
