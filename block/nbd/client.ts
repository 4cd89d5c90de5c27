/**
 * An NBD client connection: the fixed newstyle handshake (listing, INFO, GO, structured replies,
 * meta contexts) and pipelined transmission, where any number of requests are in flight and
 * replies are matched to them by handle.
 */
import { BlockError, type BlockErrorCode } from "../types.ts";
import {
  encodeRequest,
  fromUtf8,
  getU64,
  IHAVEOPT,
  META_BASE_ALLOCATION,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_DEFAULT_PORT,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAX_BUFFER_SIZE,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_UNSUP,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_MAGIC,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  NBDMAGIC,
  optionErrorName,
  utf8,
} from "./proto.ts";
import { NbdDisconnected, SocketReader, SocketWriter } from "./socket.ts";

/** Where an NBD export lives. */
export interface NbdAddress {
  /** TCP host (absent for a unix socket). */
  host?: string;
  port?: number;
  /** Unix socket path. */
  socket?: string;
  exportName: string;
}

/** Parses the NBD names QEMU accepts: nbd://h:p/x, nbd+tcp://, nbd+unix:///x?socket=p, nbd:h:p[:exportname=x], nbd:unix:p[:exportname=x]. */
export function parseNbdFilename(name: string): NbdAddress | undefined {
  const m = /^nbd(\+tcp|\+unix)?:\/\/([^/?]*)(\/[^?]*)?(\?.*)?$/.exec(name);
  if (m) {
    const transport = m[1] ?? "+tcp";
    const exportName = decodeURIComponent((m[3] ?? "/").slice(1));
    const query = new URLSearchParams((m[4] ?? "").slice(1));
    if (transport === "+unix") {
      const socket = query.get("socket");
      if (!socket || m[2]) throw new BlockError("EINVAL", "Bad URI: nbd+unix needs ?socket=path");
      return { socket, exportName };
    }
    const hp = /^(\[[^\]]+\]|[^:]*)(?::(\d+))?$/.exec(m[2]);
    if (!hp) throw new BlockError("EINVAL", `Bad NBD URI '${name}'`);
    const host = (hp[1] || "localhost").replace(/^\[|\]$/g, "");
    return { host, port: hp[2] ? Number(hp[2]) : NBD_DEFAULT_PORT, exportName };
  }
  if (name.startsWith("nbd:")) {
    let rest = name.slice(4);
    let exportName = "";
    const ei = rest.indexOf(":exportname=");
    if (ei >= 0) {
      exportName = rest.slice(ei + 12);
      rest = rest.slice(0, ei);
    }
    if (rest.startsWith("unix:")) return { socket: rest.slice(5), exportName };
    const i = rest.lastIndexOf(":");
    const host = i >= 0 ? rest.slice(0, i) : rest;
    const port = i >= 0 ? Number(rest.slice(i + 1)) : NBD_DEFAULT_PORT;
    if (!host || !Number.isInteger(port)) throw new BlockError("EINVAL", `Bad NBD name '${name}'`);
    return { host, port, exportName };
  }
  return undefined;
}

/** The address as QEMU prints it in connection errors. */
export function addressText(a: NbdAddress): string {
  return a.socket ?? `${a.host}:${a.port}`;
}

/** Connects the socket, with QEMU's wording on failure. */
export async function connectSocket(a: NbdAddress): Promise<Deno.Conn> {
  try {
    if (a.socket) return await Deno.connect({ transport: "unix", path: a.socket });
    const conn = await Deno.connect({ hostname: a.host!, port: a.port! });
    conn.setNoDelay(true);
    return conn;
  } catch (e) {
    throw new BlockError("EIO", `Failed to connect to '${addressText(a)}': ${osMessage(e)}`);
  }
}

/** Deno's error text without the "(os error N)" tail. */
export function osMessage(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.replace(/\s*\(os error \d+\)$/, "");
}

/** What the server tells about one export (NBD_OPT_INFO / NBD_OPT_GO). */
export interface NbdExportInfo {
  name: string;
  description?: string;
  size: number;
  flags: number;
  minBlock?: number;
  preferredBlock?: number;
  maxBlock?: number;
}

/** Options for {@link NbdClient.connect}. */
export interface NbdConnectOptions {
  /** Meta contexts to select (default: base:allocation). */
  metaContexts?: string[];
}

interface Pending {
  type: number;
  offset: number;
  buf?: Uint8Array;
  resolve: (extents: number[] | null) => void;
  reject: (e: Error) => void;
  error?: BlockError;
  extents?: number[];
}

/** Block-layer error for an errno value the server sent. */
export function blockErrorOfErrno(errno: number, message?: string): BlockError {
  const codes: Record<number, [BlockErrorCode, string]> = {
    1: ["EPERM", "Operation not permitted"],
    5: ["EIO", "Input/output error"],
    12: ["EIO", "Cannot allocate memory"],
    22: ["EINVAL", "Invalid argument"],
    28: ["ENOSPC", "No space left on device"],
    75: ["EINVAL", "Value too large for defined data type"],
    95: ["ENOTSUP", "Operation not supported"],
    108: ["EIO", "Cannot send after transport endpoint shutdown"],
  };
  const [code, text] = codes[errno] ?? ["EIO", "Input/output error"];
  const e = new BlockError(code, text);
  if (message) (e as BlockError & { serverMessage?: string }).serverMessage = message;
  return e;
}

/** The handshake phase: options before transmission, on one socket. */
export class NbdHandshake {
  readonly reader: SocketReader;
  noZeroes = false;

  private constructor(readonly conn: Deno.Conn, readonly address: NbdAddress) {
    this.reader = new SocketReader(conn);
  }

  /** Connects and does the fixed newstyle greeting. */
  static async open(address: NbdAddress): Promise<NbdHandshake> {
    const conn = await connectSocket(address);
    const h = new NbdHandshake(conn, address);
    try {
      await h.#greet();
    } catch (e) {
      conn.close();
      throw e;
    }
    return h;
  }

  async #greet(): Promise<void> {
    const head = await this.#read(18, true);
    const v = new DataView(head.buffer);
    if (v.getBigUint64(0) !== NBDMAGIC) throw this.#fail("Bad initial magic received");
    if (v.getBigUint64(8) !== IHAVEOPT) {
      throw this.#fail("Server does not support newstyle negotiation");
    }
    const flags = v.getUint16(16);
    if (!(flags & NBD_FLAG_FIXED_NEWSTYLE)) {
      throw this.#fail("Server does not support fixed newstyle");
    }
    this.noZeroes = !!(flags & NBD_FLAG_NO_ZEROES);
    const c = new Uint8Array(4);
    new DataView(c.buffer).setUint32(
      0,
      NBD_FLAG_C_FIXED_NEWSTYLE | (this.noZeroes ? NBD_FLAG_C_NO_ZEROES : 0),
    );
    await this.#write(c);
  }

  #fail(msg: string): BlockError {
    return new BlockError("EIO", msg);
  }

  async #read(n: number, greeting = false): Promise<Uint8Array> {
    try {
      return await this.reader.readExact(n);
    } catch (e) {
      if (e instanceof NbdDisconnected) {
        throw this.#fail(greeting ? "Failed to read initial magic" : "Failed to read option reply");
      }
      throw e;
    }
  }

  async #write(data: Uint8Array): Promise<void> {
    try {
      let pos = 0;
      while (pos < data.length) pos += await this.conn.write(data.subarray(pos));
    } catch (e) {
      throw this.#fail(`Failed to send option request: ${osMessage(e)}`);
    }
  }

  /** Sends an option with its payload. */
  async sendOption(option: number, payload: Uint8Array = new Uint8Array(0)): Promise<void> {
    const out = new Uint8Array(16 + payload.length);
    const v = new DataView(out.buffer);
    v.setBigUint64(0, IHAVEOPT);
    v.setUint32(8, option);
    v.setUint32(12, payload.length);
    out.set(payload, 16);
    await this.#write(out);
  }

  /** Reads one option reply. */
  async readReply(option: number): Promise<{ type: number; payload: Uint8Array }> {
    const head = await this.#read(20);
    const v = new DataView(head.buffer);
    if (v.getBigUint64(0) !== NBD_REP_MAGIC) throw this.#fail("Unexpected option reply magic");
    if (v.getUint32(8) !== option) throw this.#fail("Unexpected option in reply");
    const len = v.getUint32(16);
    if (len > 64 * 1024 * 1024) throw this.#fail("Option reply too large");
    return { type: v.getUint32(12), payload: await this.#read(len) };
  }

  /** Reads replies until ACK; throws on an error reply. */
  async #expectAck(option: number, what: string): Promise<void> {
    const r = await this.readReply(option);
    if (r.type === NBD_REP_ACK) return;
    throw this.#optionError(r, what);
  }

  #optionError(r: { type: number; payload: Uint8Array }, what: string): BlockError {
    const text = r.payload.length ? `: ${fromUtf8(r.payload)}` : "";
    const e = new BlockError(
      r.type === NBD_REP_ERR_UNSUP ? "ENOTSUP" : "EINVAL",
      `${what} failed: ${optionErrorName(r.type)}${text}`,
    );
    (e as BlockError & { rep?: number }).rep = r.type;
    return e;
  }

  /** NBD_OPT_STRUCTURED_REPLY; false when the server does not support it. */
  async structuredReply(): Promise<boolean> {
    await this.sendOption(NBD_OPT_STRUCTURED_REPLY);
    const r = await this.readReply(NBD_OPT_STRUCTURED_REPLY);
    return r.type === NBD_REP_ACK;
  }

  /** NBD_OPT_LIST: export names and descriptions. */
  async list(): Promise<{ name: string; description: string }[]> {
    await this.sendOption(NBD_OPT_LIST);
    const out: { name: string; description: string }[] = [];
    for (;;) {
      const r = await this.readReply(NBD_OPT_LIST);
      if (r.type === NBD_REP_ACK) return out;
      if (r.type & NBD_REP_FLAG_ERROR) throw this.#optionError(r, "Listing exports");
      if (r.type !== NBD_REP_SERVER || r.payload.length < 4) throw this.#fail("Bad list reply");
      const n = new DataView(r.payload.buffer).getUint32(0);
      if (4 + n > r.payload.length) throw this.#fail("Bad list reply");
      out.push({
        name: fromUtf8(r.payload.subarray(4, 4 + n)),
        description: fromUtf8(r.payload.subarray(4 + n)),
      });
    }
  }

  /** NBD_OPT_LIST_META_CONTEXT or SET_META_CONTEXT: context names (and ids for SET). */
  async metaContexts(
    set: boolean,
    exportName: string,
    queries: string[],
  ): Promise<{ id: number; name: string }[]> {
    const name = utf8(exportName);
    const qs = queries.map(utf8);
    const payload = new Uint8Array(8 + name.length + qs.reduce((s, q) => s + 4 + q.length, 0));
    const v = new DataView(payload.buffer);
    v.setUint32(0, name.length);
    payload.set(name, 4);
    let p = 4 + name.length;
    v.setUint32(p, qs.length);
    p += 4;
    for (const q of qs) {
      v.setUint32(p, q.length);
      payload.set(q, p + 4);
      p += 4 + q.length;
    }
    const option = set ? NBD_OPT_SET_META_CONTEXT : NBD_OPT_LIST_META_CONTEXT;
    await this.sendOption(option, payload);
    const out: { id: number; name: string }[] = [];
    for (;;) {
      const r = await this.readReply(option);
      if (r.type === NBD_REP_ACK) return out;
      if (r.type & NBD_REP_FLAG_ERROR) throw this.#optionError(r, "Meta context negotiation");
      if (r.type !== NBD_REP_META_CONTEXT || r.payload.length < 4) {
        throw this.#fail("Bad meta reply");
      }
      out.push({
        id: new DataView(r.payload.buffer).getUint32(0),
        name: fromUtf8(r.payload.subarray(4)),
      });
    }
  }

  /** NBD_OPT_INFO (go=false) or NBD_OPT_GO: the export's size, flags, block sizes, description. */
  async info(exportName: string, go: boolean): Promise<NbdExportInfo> {
    const name = utf8(exportName);
    const want = [NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE];
    const payload = new Uint8Array(4 + name.length + 2 + want.length * 2);
    const v = new DataView(payload.buffer);
    v.setUint32(0, name.length);
    payload.set(name, 4);
    v.setUint16(4 + name.length, want.length);
    want.forEach((w, i) => v.setUint16(6 + name.length + 2 * i, w));
    const option = go ? NBD_OPT_GO : NBD_OPT_INFO;
    await this.sendOption(option, payload);
    const info: NbdExportInfo = { name: exportName, size: -1, flags: 0 };
    for (;;) {
      const r = await this.readReply(option);
      if (r.type === NBD_REP_ACK) break;
      if (r.type & NBD_REP_FLAG_ERROR) {
        throw this.#optionError(r, go ? "Requested export" : "Export info");
      }
      if (r.type !== NBD_REP_INFO || r.payload.length < 2) continue;
      const pv = new DataView(r.payload.buffer);
      switch (pv.getUint16(0)) {
        case NBD_INFO_EXPORT:
          if (r.payload.length !== 12) throw this.#fail("Bad export info");
          info.size = getU64(pv, 2);
          info.flags = pv.getUint16(10);
          break;
        case NBD_INFO_NAME:
          info.name = fromUtf8(r.payload.subarray(2));
          break;
        case NBD_INFO_DESCRIPTION:
          info.description = fromUtf8(r.payload.subarray(2));
          break;
        case NBD_INFO_BLOCK_SIZE:
          if (r.payload.length !== 14) throw this.#fail("Bad block size info");
          info.minBlock = pv.getUint32(2);
          info.preferredBlock = pv.getUint32(6);
          info.maxBlock = pv.getUint32(10);
          break;
      }
    }
    if (info.size < 0) throw this.#fail("Server did not send export info");
    return info;
  }

  /** NBD_OPT_EXPORT_NAME, the old way into transmission (for servers without GO). */
  async exportName(exportName: string): Promise<NbdExportInfo> {
    await this.sendOption(NBD_OPT_EXPORT_NAME, utf8(exportName));
    const r = await this.#read(this.noZeroes ? 10 : 134);
    const v = new DataView(r.buffer);
    return { name: exportName, size: getU64(v, 0), flags: v.getUint16(8) };
  }

  /** NBD_OPT_ABORT and close. */
  async abort(): Promise<void> {
    try {
      await this.sendOption(NBD_OPT_ABORT);
      await Promise.race([
        this.readReply(NBD_OPT_ABORT).catch(() => {}),
        new Promise((r) => setTimeout(r, 200)),
      ]);
    } catch { /* the server may already have gone */ }
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

/** An export in transmission phase: pipelined commands. */
export class NbdClient {
  #writer: SocketWriter;
  #pending = new Map<number, Pending>();
  #nextHandle = 1;
  #dead: Error | null = null;
  #closed = false;

  private constructor(
    readonly handshake: NbdHandshake,
    readonly info: NbdExportInfo,
    readonly structured: boolean,
    /** Selected meta contexts by id. */
    readonly contexts: Map<number, string>,
  ) {
    this.#writer = new SocketWriter(handshake.conn);
    this.#replyLoop();
  }

  /** Connects to an export and enters transmission. */
  static async connect(address: NbdAddress, opts: NbdConnectOptions = {}): Promise<NbdClient> {
    const h = await NbdHandshake.open(address);
    try {
      const structured = await h.structuredReply();
      const contexts = new Map<number, string>();
      if (structured) {
        const want = opts.metaContexts ?? [META_BASE_ALLOCATION];
        try {
          for (const c of await h.metaContexts(true, address.exportName, want)) {
            contexts.set(c.id, c.name);
          }
        } catch (e) {
          if (!(e instanceof BlockError)) throw e;
        }
      }
      let info: NbdExportInfo;
      try {
        info = await h.info(address.exportName, true);
      } catch (e) {
        const rep = (e as { rep?: number }).rep;
        if (rep !== NBD_REP_ERR_UNSUP) throw e;
        info = await h.exportName(address.exportName);
      }
      return new NbdClient(h, info, structured, contexts);
    } catch (e) {
      try {
        h.conn.close();
      } catch { /* closed */ }
      throw e;
    }
  }

  /** Largest payload per request. */
  get maxPayload(): number {
    const m = this.info.maxBlock;
    return m && m > 0 ? Math.min(m, NBD_MAX_BUFFER_SIZE) : NBD_MAX_BUFFER_SIZE;
  }

  /** The id of a selected meta context, or undefined. */
  contextId(name: string): number | undefined {
    for (const [id, n] of this.contexts) if (n === name) return id;
    return undefined;
  }

  /** Sends one request; resolves when its reply is complete (with block status extents if any). */
  request(
    type: number,
    flags: number,
    offset: number,
    length: number,
    opts: { buf?: Uint8Array; payload?: Uint8Array } = {},
  ): Promise<number[] | null> {
    if (this.#dead) return Promise.reject(this.#deadError());
    const handle = this.#nextHandle++;
    const header = encodeRequest(flags, type, handle, offset, length);
    const p = new Promise<number[] | null>((resolve, reject) => {
      this.#pending.set(handle, { type, offset, buf: opts.buf, resolve, reject });
    });
    const parts = opts.payload ? [header, opts.payload] : [header];
    this.#writer.write(...parts).catch((e) => this.#die(e));
    return p;
  }

  read(offset: number, buf: Uint8Array): Promise<unknown> {
    return this.request(NBD_CMD_READ, 0, offset, buf.length, { buf });
  }
  write(offset: number, data: Uint8Array, flags = 0): Promise<unknown> {
    return this.request(NBD_CMD_WRITE, flags, offset, data.length, { payload: data });
  }
  writeZeroes(offset: number, length: number, flags = 0): Promise<unknown> {
    return this.request(NBD_CMD_WRITE_ZEROES, flags, offset, length);
  }
  trim(offset: number, length: number, flags = 0): Promise<unknown> {
    return this.request(NBD_CMD_TRIM, flags, offset, length);
  }
  flush(): Promise<unknown> {
    return this.request(NBD_CMD_FLUSH, 0, 0, 0);
  }
  /** Extents of context `id` as [length, flags, length, flags, ...]. */
  async blockStatus(offset: number, length: number, reqOne = true): Promise<Map<number, number[]>> {
    const all = await this.request(
      NBD_CMD_BLOCK_STATUS,
      reqOne ? NBD_CMD_FLAG_REQ_ONE : 0,
      offset,
      length,
    );
    const out = new Map<number, number[]>();
    // Stored as [id, count, len, flags, ...] runs.
    for (let i = 0; all && i < all.length;) {
      const id = all[i], n = all[i + 1];
      out.set(id, all.slice(i + 2, i + 2 + 2 * n));
      i += 2 + 2 * n;
    }
    return out;
  }

  /** NBD_CMD_DISC and close the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#dead) {
      // Requests in flight finish first: each pending entry's settle functions are wrapped so
      // that close() learns when the reply loop has answered them all.
      await Promise.allSettled([...this.#pending.values()].map((p) =>
        new Promise<void>((r) => {
          const { resolve, reject } = p;
          p.resolve = (x) => {
            resolve(x);
            r();
          };
          p.reject = (e) => {
            reject(e);
            r();
          };
        })
      ));
      try {
        await this.#writer.write(encodeRequest(0, NBD_CMD_DISC, 0, 0, 0));
      } catch { /* gone */ }
    }
    this.#dead ??= new NbdDisconnected("Connection closed");
    try {
      this.handshake.conn.close();
    } catch { /* closed */ }
  }

  #deadError(): BlockError {
    return new BlockError("EIO", `NBD connection lost: ${this.#dead?.message}`);
  }

  #die(e: unknown): void {
    if (this.#dead) return;
    this.#dead = e instanceof Error ? e : new Error(String(e));
    const err = this.#deadError();
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    try {
      this.handshake.conn.close();
    } catch { /* closed */ }
  }

  async #replyLoop(): Promise<void> {
    const r = this.handshake.reader;
    const head = new Uint8Array(20);
    const hv = new DataView(head.buffer);
    try {
      for (;;) {
        await r.readInto(head.subarray(0, 4));
        const magic = hv.getUint32(0);
        if (magic === NBD_SIMPLE_REPLY_MAGIC) {
          await r.readInto(head.subarray(4, 16));
          const error = hv.getUint32(4);
          const handle = getU64(hv, 8);
          const p = this.#take(handle);
          if (error) {
            p.reject(blockErrorOfErrno(error));
            continue;
          }
          if (p.type === NBD_CMD_READ && p.buf) await r.readInto(p.buf);
          p.resolve(null);
        } else if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
          await r.readInto(head.subarray(4, 20));
          const flags = hv.getUint16(4);
          const type = hv.getUint16(6);
          const handle = getU64(hv, 8);
          const length = hv.getUint32(16);
          const p = this.#pending.get(handle);
          if (!p) throw new Error(`reply for unknown handle ${handle}`);
          await this.#chunk(p, type, length);
          if (flags & NBD_REPLY_FLAG_DONE) {
            this.#pending.delete(handle);
            if (p.error) p.reject(p.error);
            else p.resolve(p.extents ?? null);
          }
        } else {
          throw new Error("invalid reply magic");
        }
      }
    } catch (e) {
      this.#die(e);
    }
  }

  #take(handle: number): Pending {
    const p = this.#pending.get(handle);
    if (!p) throw new Error(`reply for unknown handle ${handle}`);
    this.#pending.delete(handle);
    return p;
  }

  async #chunk(p: Pending, type: number, length: number): Promise<void> {
    const r = this.handshake.reader;
    switch (type) {
      case NBD_REPLY_TYPE_NONE:
        if (length) await r.skip(length);
        return;
      case NBD_REPLY_TYPE_OFFSET_DATA: {
        const o = await r.readExact(8);
        const at = getU64(new DataView(o.buffer), 0) - p.offset;
        const n = length - 8;
        if (!p.buf || at < 0 || at + n > p.buf.length) throw new Error("bad data chunk");
        await r.readInto(p.buf.subarray(at, at + n));
        return;
      }
      case NBD_REPLY_TYPE_OFFSET_HOLE: {
        const b = await r.readExact(length);
        const v = new DataView(b.buffer);
        const at = getU64(v, 0) - p.offset;
        const n = v.getUint32(8);
        if (!p.buf || at < 0 || at + n > p.buf.length) throw new Error("bad hole chunk");
        p.buf.fill(0, at, at + n);
        return;
      }
      case NBD_REPLY_TYPE_BLOCK_STATUS: {
        const b = await r.readExact(length);
        const v = new DataView(b.buffer);
        const n = (length - 4) >>> 3;
        const ext = (p.extents ??= []);
        ext.push(v.getUint32(0), n);
        for (let i = 0; i < n; i++) ext.push(v.getUint32(4 + 8 * i), v.getUint32(8 + 8 * i));
        return;
      }
      case NBD_REPLY_TYPE_ERROR:
      case NBD_REPLY_TYPE_ERROR_OFFSET: {
        const b = await r.readExact(length);
        const v = new DataView(b.buffer);
        const mlen = v.getUint16(4);
        p.error = blockErrorOfErrno(v.getUint32(0), fromUtf8(b.subarray(6, 6 + mlen)));
        return;
      }
      default:
        if (type & 0x8000) {
          await r.skip(length);
          p.error = blockErrorOfErrno(5);
          return;
        }
        await r.skip(length);
    }
  }
}
