/**
 * One NBD client connection: the fixed newstyle handshake (options, meta contexts), then
 * transmission with requests processed concurrently up to a limit and replies queued in order of
 * completion.
 */
import { BlockError } from "@demu/block";
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
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
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
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_REQUEST_MAGIC,
  NBD_REQUEST_SIZE,
  nbdErrnoOf,
  NBDMAGIC,
  optionReply,
  setU64,
  SocketReader,
  SocketWriter,
  utf8,
} from "@demu/block";
import type { ExportState, NbdServer } from "./server.ts";
import { extents } from "./status.ts";
import { dataChunk, isZero, replyBuffers, simpleHeader, structuredHeader } from "./replies.ts";

const CONTEXT_BASE = 0;
const CONTEXT_DEPTH = 1;
const MAX_OPTION_LENGTH = 64 * 1024;

/** One client, from greeting to disconnect. */
export class Connection {
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
          return await this.#replyError(option, NBD_REP_ERR_INVALID, unexpectedLength(option));
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
          return await this.#replyError(option, NBD_REP_ERR_INVALID, unexpectedLength(option));
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
        return await this.#replyError(
          option,
          NBD_REP_ERR_UNSUP,
          `Unsupported option ${option} (${optionName(option)})`,
        );
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
      return await this.#replyError(option, NBD_REP_ERR_INVALID, inconsistent(option));
    }
    const nreq = v.getUint16(en.rest);
    if (en.rest + 2 + 2 * nreq > payload.length) {
      return await this.#replyError(option, NBD_REP_ERR_INVALID, inconsistent(option));
    }
    if (en.rest + 2 + 2 * nreq < payload.length) {
      return await this.#replyError(option, NBD_REP_ERR_INVALID, unexpectedLength(option));
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
    // QEMU sends the description whether or not it was asked for; the name only when asked.
    if (st.exp.description) {
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
    const en = this.#exportName(payload);
    const v = new DataView(payload.buffer, payload.byteOffset, payload.length);
    if (!en || en.rest + 4 > payload.length) {
      return await this.#replyError(option, NBD_REP_ERR_INVALID, inconsistent(option));
    }
    const nq = v.getUint32(en.rest);
    const queries: string[] = [];
    let p = en.rest + 4;
    for (let i = 0; i < nq; i++) {
      if (p + 4 > payload.length) {
        return await this.#replyError(option, NBD_REP_ERR_INVALID, inconsistent(option));
      }
      const n = v.getUint32(p);
      if (n > NBD_MAX_STRING_SIZE || p + 4 + n > payload.length) {
        return await this.#replyError(option, NBD_REP_ERR_INVALID, inconsistent(option));
      }
      queries.push(fromUtf8(payload.subarray(p + 4, p + 4 + n)));
      p += 4 + n;
    }
    if (p !== payload.length) {
      return await this.#replyError(option, NBD_REP_ERR_INVALID, unexpectedLength(option));
    }
    // QEMU 7.2 lists contexts before structured replies are negotiated, but will not select one.
    if (!this.structured && option === NBD_OPT_SET_META_CONTEXT) {
      return await this.#replyError(
        option,
        NBD_REP_ERR_INVALID,
        `request option '${optionName(option)}' when structured reply is not negotiated`,
      );
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
      // A LIST reply carries no usable id; QEMU sends 0 there.
      new DataView(r.buffer).setUint32(0, list ? 0 : id);
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
    // A read-only export does not advertise these commands, and QEMU 7.2 answers them EINVAL.
    if (writes && st.exp.readOnly) return [NBD_EINVAL, "Export is read-only"];
    // QEMU 7.2 answers EINVAL past the end for every command, writes included (later QEMUs
    // say ENOSPC for writes).
    if (type !== NBD_CMD_FLUSH && (offset > st.size || length > st.size - offset)) {
      return [NBD_EINVAL, "operation past EOF"];
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

/** Option names as QEMU's messages spell them (nbd_opt_lookup). */
function optionName(option: number): string {
  return [
    "",
    "export name",
    "abort",
    "list",
    "peek export",
    "starttls",
    "info",
    "go",
    "structured reply",
    "list meta context",
    "set meta context",
  ][option] || "<unknown>";
}

function unexpectedLength(option: number): string {
  return `option '${optionName(option)}' has unexpected length`;
}

function inconsistent(option: number): string {
  return `Inconsistent lengths in option ${optionName(option)}`;
}
