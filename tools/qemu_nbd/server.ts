/**
 * An NBD server (NetworkBlockDevice doc/proto.md) over one or more exports. Each connection runs
 * on its own task (connection.ts), so one slow or hostile client never holds up another; anything
 * that breaks the protocol ends only that connection.
 */
import type { BlockDriver } from "@demu/block";
import {
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from "@demu/block";
import { Connection } from "./connection.ts";
import { GroupFlush } from "./group_flush.ts";

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

/** An export with what the server computed for it once. */
export interface ExportState {
  exp: NbdExport;
  size: number;
  flags: number;
  flusher: GroupFlush;
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
