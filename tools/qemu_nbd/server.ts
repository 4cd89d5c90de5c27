/**
 * An NBD server (NetworkBlockDevice doc/proto.md): the fixed newstyle handshake, then pipelined
 * transmission over a BlockDriver. Each connection runs on its own task, so one slow or hostile
 * client never holds up another; anything that breaks the protocol ends only that connection.
 */
import { type BlockDriver, BlockError } from "@demu/block";
import {
  fromUtf8,
  getU64,
  IHAVEOPT,
  META_BASE_ALLOCATION,
  META_QEMU_ALLOCATION_DEPTH,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAX_BUFFER_SIZE,
  NBD_MAX_STRING_SIZE,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_REQUEST_MAGIC,
  NBD_REQUEST_SIZE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  NBD_STRUCTURED_REPLY_MAGIC,
  nbdErrnoOf,
  NBDMAGIC,
  optionReply,
  setU64,
  SocketReader,
  SocketWriter,
  utf8,
} from "@demu/block";
import { chainStatus } from "./status.ts";

/** One export the server offers. */
export interface NbdExport {
  name: string;
  description: string;
  driver: BlockDriver;
  readOnly: boolean;
  /** Offer the qemu:allocation-depth meta context. */
  allocationDepth?: boolean;
  /** --discard=unmap: TRIM and WRITE_ZEROES may deallocate (default: ignore TRIM). */
  discard?: "ignore" | "unmap";
  /** --detect-zeroes: turn all-zero writes into write-zeroes. */
  detectZeroes?: "off" | "on" | "unmap";
  /** How many clients may be connected at once (qemu-nbd -e, 0: no limit); not 1 advertises multi-conn. */
  shared?: number;
}

/** Server-wide options. */
export interface NbdServerOptions {
  /** Seconds a client may take to finish the handshake (QEMU: 10). */
  handshakeTimeout?: number;
  /** Requests of one client processed at once; the rest wait in the socket. */
  maxInFlight?: number;
  /** Diagnostics (qemu-nbd -v). */
  log?: (msg: string) => void;
}

const CONTEXT_BASE = 0;
const CONTEXT_DEPTH = 1;
/** Ceiling on extents in one BLOCK_STATUS chunk, so a reply stays bounded. */
const MAX_EXTENTS = 1 << 16;
const MAX_OPTION_LENGTH = 64 * 1024;

interface ExportState {
  exp: NbdExport;
  size: number;
  flags: number;
  flusher: GroupFlush;
}

/**
 * Flushes shared by every request that asks for one at about the same time (FLUSH, and FUA on
 * writes): pipelined FUA writes then cost one fdatasync per batch instead of one each. A flush
 * starts on the next timer turn, after the requests already read have done their writes, and
 * covers all of them; a request that arrives while one runs waits for the next.
 */
class GroupFlush {
  #next: Promise<void> | null = null;
  #running: Promise<void> = Promise.resolve();

  constructor(readonly driver: BlockDriver) {}

  flush(): Promise<void> {
    if (this.#next) return this.#next;
    const after = this.#running;
    const next = new Promise<void>((resolve, reject) => {
      setTimeout(() => {
        after.then(() => {
          this.#next = null;
          const run = this.driver.flush();
          this.#running = run.catch(() => {});
          run.then(resolve, reject);
        });
      }, 0);
    });
    this.#next = next;
    return next;
  }
}

/** An NBD server over one or more exports. */
export class NbdServer {
  #exports = new Map<string, ExportState>();
  #conns = new Set<Deno.Conn>();
  #opts: Required<NbdServerOptions>;
  /** Connections handled so far (all kinds). */
  served = 0;

  private constructor(opts: NbdServerOptions) {
    this.#opts = {
      handshakeTimeout: opts.handshakeTimeout ?? 10,
      maxInFlight: opts.maxInFlight ?? 16,
      log: opts.log ?? (() => {}),
    };
  }

  /** A server for the given exports. */
  static async create(exports: NbdExport[], opts: NbdServerOptions = {}): Promise<NbdServer> {
    const s = new NbdServer(opts);
    for (const exp of exports) {
      const size = await exp.driver.length();
      s.#exports.set(exp.name, {
        exp,
        size,
        flags: transmissionFlags(exp),
        flusher: new GroupFlush(exp.driver),
      });
    }
    return s;
  }

  /** Open connections. */
  get connections(): number {
    return this.#conns.size;
  }

  /** Serves one connection to its end; never throws. */
  async handle(conn: Deno.Conn): Promise<void> {
    this.#conns.add(conn);
    this.served++;
    const c = new Connection(this, conn);
    try {
      await c.run();
    } catch (e) {
      this.#opts.log(`client error: ${e instanceof Error ? e.message : e}`);
    } finally {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  }

  /** Closes every open connection. */
  closeAll(): void {
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }

  /** @internal */
  lookup(name: string): ExportState | undefined {
    return this.#exports.get(name);
  }
  /** @internal */
  allExports(): ExportState[] {
    return [...this.#exports.values()];
  }
  /** @internal */
  get options(): Required<NbdServerOptions> {
    return this.#opts;
  }
}

/** The transmission flags qemu-nbd advertises for an export. */
export function transmissionFlags(exp: NbdExport): number {
  let f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE |
    NBD_FLAG_SEND_DF;
  // qemu-nbd promises multi-conn consistency whenever more than one client may connect.
  if ((exp.shared ?? 1) !== 1) f |= NBD_FLAG_CAN_MULTI_CONN;
  if (exp.readOnly) {
    f |= NBD_FLAG_READ_ONLY;
  } else {
    f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
  }
  return f;
}

/** One client, from greeting to disconnect. */
class Connection {
  readonly reader: SocketReader;
  readonly writer: SocketWriter;
  noZeroes = false;
  structured = false;
  /** Meta contexts selected by SET_META_CONTEXT, and the export they were selected for. */
  contexts: number[] = [];
  contextsFor: string | null = null;
  state: ExportState | null = null;
  inFlight = 0;
  #slot: (() => void) | null = null;
  #idle: (() => void) | null = null;

  constructor(readonly server: NbdServer, readonly conn: Deno.Conn) {
    this.reader = new SocketReader(conn, 16 * 1024);
    this.writer = new SocketWriter(conn);
  }

  async run(): Promise<void> {
    const timer = setTimeout(() => {
      if (!this.state) {
        try {
          this.conn.close();
        } catch { /* closed */ }
      }
    }, this.server.options.handshakeTimeout * 1000);
    try {
      if (!(await this.#negotiate())) return;
    } finally {
      clearTimeout(timer);
    }
    await this.#transmit();
  }

  // ---- Handshake ----------------------------------------------------------------------------

  /** True when the client entered transmission. */
  async #negotiate(): Promise<boolean> {
    const hello = new Uint8Array(18);
    const hv = new DataView(hello.buffer);
    hv.setBigUint64(0, NBDMAGIC);
    hv.setBigUint64(8, IHAVEOPT);
    hv.setUint16(16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    await this.writer.write(hello);
    const cflags = new DataView((await this.reader.readExact(4)).buffer).getUint32(0);
    if (cflags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) return false;
    this.noZeroes = !!(cflags & NBD_FLAG_C_NO_ZEROES);
    const head = new Uint8Array(16);
    const v = new DataView(head.buffer);
    for (;;) {
      await this.reader.readInto(head);
      if (v.getBigUint64(0) !== IHAVEOPT) return false;
      const option = v.getUint32(8);
      const length = v.getUint32(12);
      if (length > MAX_OPTION_LENGTH) {
        if (length > 16 * MAX_OPTION_LENGTH) return false;
        await this.reader.skip(length);
        await this.#replyError(option, NBD_REP_ERR_TOO_BIG, "option too long");
        continue;
      }
      const payload = await this.reader.readExact(length);
      const r = await this.#option(option, payload);
      if (r === "transmission") return true;
      if (r === "close") return false;
    }
  }

  async #option(option: number, payload: Uint8Array): Promise<"transmission" | "close" | void> {
    switch (option) {
      case NBD_OPT_EXPORT_NAME: {
        const st = this.server.lookup(fromUtf8(payload));
        if (!st) return "close";
        const out = new Uint8Array(this.noZeroes ? 10 : 134);
        const v = new DataView(out.buffer);
        setU64(v, 0, st.size);
        v.setUint16(8, st.flags);
        await this.writer.write(out);
        this.#enter(st, fromUtf8(payload));
        return "transmission";
      }
      case NBD_OPT_ABORT:
        await this.writer.write(optionReply(option, NBD_REP_ACK)).catch(() => {});
        return "close";
      case NBD_OPT_LIST:
        if (payload.length) {
          return await this.#replyError(option, NBD_REP_ERR_INVALID, "no payload expected");
        }
        for (const st of this.server.allExports()) {
          const name = utf8(st.exp.name);
          const desc = utf8(st.exp.description);
          const p = new Uint8Array(4 + name.length + desc.length);
          new DataView(p.buffer).setUint32(0, name.length);
          p.set(name, 4);
          p.set(desc, 4 + name.length);
          await this.writer.write(optionReply(option, NBD_REP_SERVER, p));
        }
        await this.writer.write(optionReply(option, NBD_REP_ACK));
        return;
      case NBD_OPT_STARTTLS:
        return await this.#replyError(option, NBD_REP_ERR_POLICY, "TLS not configured");
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return await this.#infoGo(option, payload);
      case NBD_OPT_STRUCTURED_REPLY:
        if (payload.length) {
          return await this.#replyError(option, NBD_REP_ERR_INVALID, "no payload expected");
        }
        if (this.structured) {
          return await this.#replyError(
            option,
            NBD_REP_ERR_INVALID,
            "structured reply already negotiated",
          );
        }
        this.structured = true;
        await this.writer.write(optionReply(option, NBD_REP_ACK));
        return;
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT:
        return await this.#metaContext(option, payload);
      default:
        return await this.#replyError(option, NBD_REP_ERR_UNSUP, `Unsupported option ${option}`);
    }
  }

  async #replyError(option: number, rep: number, msg: string): Promise<void> {
    await this.writer.write(optionReply(option, rep, utf8(msg)));
  }

  /** Reads the length-prefixed export name at the start of an INFO/GO/META payload. */
  #exportName(payload: Uint8Array): { name: string; rest: number } | null {
    if (payload.length < 4) return null;
    const n = new DataView(payload.buffer, payload.byteOffset).getUint32(0);
    if (n > NBD_MAX_STRING_SIZE || 4 + n > payload.length) return null;
    return { name: fromUtf8(payload.subarray(4, 4 + n)), rest: 4 + n };
  }

  async #infoGo(option: number, payload: Uint8Array): Promise<"transmission" | void> {
    const en = this.#exportName(payload);
    const v = new DataView(payload.buffer, payload.byteOffset, payload.length);
    if (!en || en.rest + 2 > payload.length) {
      return await this.#replyError(option, NBD_REP_ERR_INVALID, "request data too short");
    }
    const nreq = v.getUint16(en.rest);
    if (en.rest + 2 + 2 * nreq !== payload.length) {
      return await this.#replyError(option, NBD_REP_ERR_INVALID, "request data has wrong length");
    }
    const wanted = new Set<number>();
    for (let i = 0; i < nreq; i++) wanted.add(v.getUint16(en.rest + 2 + 2 * i));
    const st = this.server.lookup(en.name);
    if (!st) {
      return await this.#replyError(option, NBD_REP_ERR_UNKNOWN, `export '${en.name}' not present`);
    }
    const infos: Uint8Array[] = [];
    if (wanted.has(NBD_INFO_NAME)) {
      const name = utf8(st.exp.name);
      const p = new Uint8Array(2 + name.length);
      new DataView(p.buffer).setUint16(0, NBD_INFO_NAME);
      p.set(name, 2);
      infos.push(p);
    }
    if (wanted.has(NBD_INFO_DESCRIPTION) && st.exp.description) {
      const d = utf8(st.exp.description);
      const p = new Uint8Array(2 + d.length);
      new DataView(p.buffer).setUint16(0, NBD_INFO_DESCRIPTION);
      p.set(d, 2);
      infos.push(p);
    }
    const bs = new Uint8Array(14);
    const bv = new DataView(bs.buffer);
    bv.setUint16(0, NBD_INFO_BLOCK_SIZE);
    bv.setUint32(2, 1);
    bv.setUint32(6, 4096);
    bv.setUint32(10, NBD_MAX_BUFFER_SIZE);
    infos.push(bs);
    const ex = new Uint8Array(12);
    const ev = new DataView(ex.buffer);
    ev.setUint16(0, NBD_INFO_EXPORT);
    setU64(ev, 2, st.size);
    ev.setUint16(10, st.flags);
    infos.push(ex);
    for (const p of infos) await this.writer.write(optionReply(option, NBD_REP_INFO, p));
    await this.writer.write(optionReply(option, NBD_REP_ACK));
    if (option === NBD_OPT_GO) {
      this.#enter(st, en.name);
      return "transmission";
    }
  }

  #enter(st: ExportState, name: string): void {
    this.state = st;
    if (this.contextsFor !== name) this.contexts = [];
  }

  async #metaContext(option: number, payload: Uint8Array): Promise<void> {
    if (!this.structured) {
      return await this.#replyError(option, NBD_REP_ERR_INVALID, "structured reply not negotiated");
    }
    const en = this.#exportName(payload);
    const v = new DataView(payload.buffer, payload.byteOffset, payload.length);
    if (!en || en.rest + 4 > payload.length) {
      return await this.#replyError(option, NBD_REP_ERR_INVALID, "request data too short");
    }
    const nq = v.getUint32(en.rest);
    const queries: string[] = [];
    let p = en.rest + 4;
    for (let i = 0; i < nq; i++) {
      if (p + 4 > payload.length) {
        return await this.#replyError(option, NBD_REP_ERR_INVALID, "query too short");
      }
      const n = v.getUint32(p);
      if (n > NBD_MAX_STRING_SIZE || p + 4 + n > payload.length) {
        return await this.#replyError(option, NBD_REP_ERR_INVALID, "query too long");
      }
      queries.push(fromUtf8(payload.subarray(p + 4, p + 4 + n)));
      p += 4 + n;
    }
    if (p !== payload.length) {
      return await this.#replyError(option, NBD_REP_ERR_INVALID, "trailing data in request");
    }
    const st = this.server.lookup(en.name);
    if (!st) {
      return await this.#replyError(option, NBD_REP_ERR_UNKNOWN, `export '${en.name}' not present`);
    }
    const available: [number, string][] = [[CONTEXT_BASE, META_BASE_ALLOCATION]];
    if (st.exp.allocationDepth) available.push([CONTEXT_DEPTH, META_QEMU_ALLOCATION_DEPTH]);
    const list = option === NBD_OPT_LIST_META_CONTEXT;
    const chosen = new Map<number, string>();
    for (const [id, name] of available) {
      const ns = name.slice(0, name.indexOf(":") + 1);
      const hit = (list && queries.length === 0) ||
        queries.some((q) => q === name || (list && q === ns));
      if (hit) chosen.set(id, name);
    }
    for (const [id, name] of chosen) {
      const n = utf8(name);
      const r = new Uint8Array(4 + n.length);
      new DataView(r.buffer).setUint32(0, id);
      r.set(n, 4);
      await this.writer.write(optionReply(option, NBD_REP_META_CONTEXT, r));
    }
    if (!list) {
      this.contexts = [...chosen.keys()].sort();
      this.contextsFor = en.name;
    }
    await this.writer.write(optionReply(option, NBD_REP_ACK));
  }

  // ---- Transmission -------------------------------------------------------------------------

  async #transmit(): Promise<void> {
    // Handshakes get a small buffer (a flood of idle connections stays cheap); transmission a
    // large one, so streamed writes arrive in few socket reads.
    this.reader.resize(1024 * 1024);
    const head = new Uint8Array(NBD_REQUEST_SIZE);
    const v = new DataView(head.buffer);
    const st = this.state!;
    try {
      for (;;) {
        await this.reader.readInto(head);
        if (v.getUint32(0) !== NBD_REQUEST_MAGIC) break;
        const flags = v.getUint16(4);
        const type = v.getUint16(6);
        const handle = head.slice(8, 16);
        const offset = getU64(v, 16);
        const length = v.getUint32(24);
        if (type === NBD_CMD_DISC) break;
        let payload: Uint8Array | undefined;
        if (type === NBD_CMD_WRITE) {
          if (length > NBD_MAX_BUFFER_SIZE) {
            // The payload cannot be skipped safely at any size: answer, then hang up.
            await this.#reply(handle, NBD_EINVAL, "Request length too large");
            break;
          }
          payload = new Uint8Array(length);
          await this.reader.readInto(payload);
        }
        if (this.inFlight >= this.server.options.maxInFlight) {
          await new Promise<void>((r) => (this.#slot = r));
        }
        this.inFlight++;
        this.#serve(st, type, flags, handle, offset, length, payload).finally(() => {
          this.inFlight--;
          const s = this.#slot;
          this.#slot = null;
          s?.();
          if (this.inFlight === 0) this.#idle?.();
        });
      }
    } catch {
      // The client went away; in-flight requests finish below.
    }
    if (this.inFlight > 0) await new Promise<void>((r) => (this.#idle = r));
  }

  /** Runs one request and sends its reply; errors become protocol errors. */
  async #serve(
    st: ExportState,
    type: number,
    flags: number,
    handle: Uint8Array,
    offset: number,
    length: number,
    payload?: Uint8Array,
  ): Promise<void> {
    const err = this.#validate(st, type, flags, offset, length);
    try {
      if (err) return await this.#reply(handle, err[0], err[1]);
      const d = st.exp.driver;
      switch (type) {
        case NBD_CMD_READ:
          return await this.#read(st, handle, flags, offset, length);
        case NBD_CMD_WRITE:
          await this.#write(st, offset, payload!);
          if (flags & NBD_CMD_FLAG_FUA) await st.flusher.flush();
          break;
        case NBD_CMD_FLUSH:
          await st.flusher.flush();
          break;
        case NBD_CMD_TRIM:
          if (st.exp.discard === "unmap") await d.discard(offset, length);
          if (flags & NBD_CMD_FLAG_FUA) await st.flusher.flush();
          break;
        case NBD_CMD_CACHE:
          break;
        case NBD_CMD_WRITE_ZEROES:
          await d.writeZeroes(offset, length, {
            mayUnmap: !(flags & NBD_CMD_FLAG_NO_HOLE) && st.exp.discard === "unmap",
            noFallback: !!(flags & NBD_CMD_FLAG_FAST_ZERO),
          });
          if (flags & NBD_CMD_FLAG_FUA) await st.flusher.flush();
          break;
        case NBD_CMD_BLOCK_STATUS:
          return await this.#blockStatus(st, handle, flags, offset, length);
      }
      await this.#reply(handle, 0);
    } catch (e) {
      if (e instanceof BlockError) {
        await this.#reply(handle, nbdErrnoOf(e.code), e.message).catch(() => {});
      } else if (e instanceof Error && e.name === "NbdDisconnected") {
        // Nobody to answer.
      } else {
        await this.#reply(handle, 5, e instanceof Error ? e.message : String(e)).catch(() => {});
      }
    }
  }

  /** QEMU's request checks: [errno, message] or null. */
  #validate(
    st: ExportState,
    type: number,
    flags: number,
    offset: number,
    length: number,
  ): [number, string] | null {
    let valid = NBD_CMD_FLAG_FUA;
    if (type === NBD_CMD_READ && this.structured) valid |= NBD_CMD_FLAG_DF;
    if (type === NBD_CMD_WRITE_ZEROES) valid |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
    if (type === NBD_CMD_BLOCK_STATUS) valid |= NBD_CMD_FLAG_REQ_ONE;
    switch (type) {
      case NBD_CMD_READ:
      case NBD_CMD_WRITE:
      case NBD_CMD_FLUSH:
      case NBD_CMD_TRIM:
      case NBD_CMD_CACHE:
      case NBD_CMD_WRITE_ZEROES:
      case NBD_CMD_BLOCK_STATUS:
        break;
      default:
        return [NBD_EINVAL, `unsupported command ${type}`];
    }
    if (flags & ~valid) return [NBD_EINVAL, `unsupported flags 0x${flags.toString(16)}`];
    if ((type === NBD_CMD_READ) && length > NBD_MAX_BUFFER_SIZE) {
      return [NBD_EINVAL, "Request length too large"];
    }
    const writes = type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES ||
      type === NBD_CMD_TRIM;
    if (writes && st.exp.readOnly) return [NBD_EPERM, "Export is read-only"];
    if (type !== NBD_CMD_FLUSH && (offset > st.size || length > st.size - offset)) {
      return [
        type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL,
        "operation past EOF",
      ];
    }
    if (type === NBD_CMD_BLOCK_STATUS) {
      if (!this.structured || this.contexts.length === 0) {
        return [NBD_EINVAL, "need non-zero length and a negotiated meta context"];
      }
      if (length === 0) return [NBD_EINVAL, "zero length block status"];
    }
    return null;
  }

  async #write(st: ExportState, offset: number, data: Uint8Array): Promise<void> {
    const dz = st.exp.detectZeroes ?? "off";
    if (dz !== "off" && data.length && isZero(data)) {
      await st.exp.driver.writeZeroes(offset, data.length, {
        mayUnmap: dz === "unmap" && st.exp.discard === "unmap",
      });
      return;
    }
    await st.exp.driver.write(offset, data);
  }

  async #read(
    st: ExportState,
    handle: Uint8Array,
    flags: number,
    offset: number,
    length: number,
  ): Promise<void> {
    const d = st.exp.driver;
    if (!this.structured) {
      const out = replyBuffers.take(16 + length);
      try {
        if (length) await d.read(offset, out.subarray(16));
        simpleHeader(out, 0, handle);
        await this.writer.write(out);
      } finally {
        replyBuffers.give(out);
      }
      return;
    }
    if (length === 0 || flags & NBD_CMD_FLAG_DF) {
      const out = replyBuffers.take(28 + length);
      try {
        if (length) await d.read(offset, out.subarray(28));
        dataChunk(out, handle, offset, length, true);
        await this.writer.write(out);
      } finally {
        replyBuffers.give(out);
      }
      return;
    }
    // Sparse read: a range that reads as zeros goes back as one OFFSET_HOLE chunk. Checking the
    // bytes (the scan stops at the first non-zero one) costs less than asking the image for its
    // allocation first on every request, and is what the protocol allows for any zero range.
    const buf = replyBuffers.take(28 + length);
    try {
      await d.read(offset, buf.subarray(28));
      if (isZero(buf.subarray(28))) {
        const c = new Uint8Array(20 + 12);
        structuredHeader(c, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_HOLE, handle, 12);
        const v = new DataView(c.buffer);
        setU64(v, 20, offset);
        v.setUint32(28, length);
        await this.writer.write(c);
      } else {
        dataChunk(buf, handle, offset, length, true);
        await this.writer.write(buf);
      }
    } finally {
      replyBuffers.give(buf);
    }
  }

  async #blockStatus(
    st: ExportState,
    handle: Uint8Array,
    flags: number,
    offset: number,
    length: number,
  ): Promise<void> {
    const one = !!(flags & NBD_CMD_FLAG_REQ_ONE);
    const chunks: Uint8Array[] = [];
    for (const id of this.contexts) {
      const ext = await extents(st.exp.driver, offset, length, one, id === CONTEXT_DEPTH);
      const c = new Uint8Array(20 + 4 + ext.length * 4);
      const v = new DataView(c.buffer);
      structuredHeader(c, 0, NBD_REPLY_TYPE_BLOCK_STATUS, handle, 4 + ext.length * 4);
      v.setUint32(20, id);
      for (let i = 0; i < ext.length; i++) v.setUint32(24 + 4 * i, ext[i]);
      chunks.push(c);
    }
    new DataView(chunks[chunks.length - 1].buffer).setUint16(4, NBD_REPLY_FLAG_DONE);
    await this.writer.write(...chunks);
  }

  /** A success or error reply in the negotiated style (simple replies carry no message). */
  async #reply(handle: Uint8Array, errno: number, message = ""): Promise<void> {
    if (!this.structured || errno === 0) {
      const out = new Uint8Array(16);
      simpleHeader(out, errno, handle);
      await this.writer.write(out);
      return;
    }
    const msg = utf8(message).subarray(0, 4096);
    const out = new Uint8Array(20 + 6 + msg.length);
    structuredHeader(out, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, handle, 6 + msg.length);
    const v = new DataView(out.buffer);
    v.setUint32(20, errno);
    v.setUint16(24, msg.length);
    out.set(msg, 26);
    await this.writer.write(out);
  }
}

/** Extents as [length, flags, ...] for base:allocation (depth=false) or qemu:allocation-depth. */
export async function extents(
  d: BlockDriver,
  offset: number,
  length: number,
  one: boolean,
  depth: boolean,
): Promise<number[]> {
  const out: number[] = [];
  const end = offset + length;
  for (let pos = offset; pos < end;) {
    const s = await chainStatus(d, pos, end - pos);
    const value = depth ? s.depth : (s.data ? 0 : NBD_STATE_HOLE) | (s.zero ? NBD_STATE_ZERO : 0);
    const n = out.length;
    if (n && out[n - 1] === value) out[n - 2] += s.length;
    else if (one && n) break;
    else if (n / 2 >= MAX_EXTENTS) break;
    else out.push(s.length, value);
    pos += s.length;
  }
  return out;
}

/**
 * Reply buffers for reads, reused once written: a fresh zero-filled array per request costs more
 * than the read itself. Sizes round up to powers of two from 4 KiB; only buffers up to 4 MiB are
 * kept (at most 64 of each size), so a burst of 32 MiB reads does not pin memory afterwards.
 */
class BufferPool {
  #free = new Map<number, ArrayBuffer[]>();
  #owned = new WeakSet<ArrayBuffer>();

  take(size: number): Uint8Array {
    if (size < 4096) return new Uint8Array(size);
    const cap = 2 ** Math.ceil(Math.log2(size));
    const ab = this.#free.get(cap)?.pop() ?? new ArrayBuffer(cap);
    this.#owned.add(ab);
    return new Uint8Array(ab, 0, size);
  }

  give(buf: Uint8Array): void {
    const ab = buf.buffer as ArrayBuffer;
    if (!this.#owned.has(ab)) return;
    this.#owned.delete(ab);
    if (ab.byteLength > 4 * 1024 * 1024) return;
    let list = this.#free.get(ab.byteLength);
    if (!list) this.#free.set(ab.byteLength, list = []);
    if (list.length < 64) list.push(ab);
  }
}

const replyBuffers = new BufferPool();

function isZero(b: Uint8Array): boolean {
  const words = b.byteOffset % 4 === 0
    ? new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2)
    : null;
  let i = 0;
  if (words) {
    for (let k = 0; k < words.length; k++) if (words[k] !== 0) return false;
    i = words.length * 4;
  }
  for (; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function simpleHeader(out: Uint8Array, errno: number, handle: Uint8Array): void {
  const v = new DataView(out.buffer, out.byteOffset);
  v.setUint32(0, NBD_SIMPLE_REPLY_MAGIC);
  v.setUint32(4, errno);
  out.set(handle, 8);
}

function structuredHeader(
  out: Uint8Array,
  flags: number,
  type: number,
  handle: Uint8Array,
  length: number,
): void {
  const v = new DataView(out.buffer, out.byteOffset);
  v.setUint32(0, NBD_STRUCTURED_REPLY_MAGIC);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  out.set(handle, 8);
  v.setUint32(16, length);
}

function dataChunk(out: Uint8Array, handle: Uint8Array, offset: number, n: number, done: boolean) {
  structuredHeader(
    out,
    done ? NBD_REPLY_FLAG_DONE : 0,
    NBD_REPLY_TYPE_OFFSET_DATA,
    handle,
    8 + n,
  );
  setU64(new DataView(out.buffer, out.byteOffset), 20, offset);
}
