/**
 * The guest agent's core: the command registry, the QMP envelope checks and dispatch (with
 * qemu-ga's wording), and the state that outlives one request (file handles, exec'd children,
 * the fsfreeze state, the persistent handle counter in the state directory).
 */
import { JsonFloat, type JsonValue, toQmpJson } from "./json.ts";
import { QgaError } from "./errors.ts";
import { checkFields, type Fields } from "./schema.ts";

/** The qemu-ga release whose protocol and command set demu's agent follows. */
export const QGA_VERSION = "7.2.22";

/** What a command handler gets besides its arguments. */
export interface CommandContext {
  agent: GuestAgent;
  /** Set by guest-sync-delimited: the reply is preceded by a 0xFF byte. */
  delimitResponse(): void;
}

/** One agent command, as the QGA schema declares it. */
export interface CommandDef {
  name: string;
  args?: Fields;
  /** False for commands that answer nothing on success (guest-shutdown, guest-suspend-*). */
  successResponse?: boolean;
  /** Commands qemu-ga implements only on other guest OSes: listed, but disabled. */
  disabledOnLinux?: boolean;
  run(args: Record<string, unknown>, ctx: CommandContext): unknown | Promise<unknown>;
}

/** Configuration of an agent instance (the command line's options). */
export interface AgentOptions {
  /** -t: where qga.state and the freeze marker live. */
  stateDir: string;
  /** -b: commands to disable. */
  blockRpcs?: string[];
  /** -a: when given, only these commands stay enabled. */
  allowRpcs?: string[];
  /** -F: the fsfreeze hook script run with "freeze"/"thaw", if any. */
  fsfreezeHook?: string;
  /** Logging (the -l file or stderr). */
  log?: (level: "debug" | "warning" | "critical", message: string) => void;
}

/** Commands that stay usable while filesystems are frozen (the rest would risk a deadlock). */
export const FROZEN_ALLOWED = new Set([
  "guest-ping",
  "guest-info",
  "guest-sync",
  "guest-sync-delimited",
  "guest-fsfreeze-status",
  "guest-fsfreeze-thaw",
]);

const encoder = new TextEncoder();

/** The guest agent: feed it parsed messages, get reply bytes back. */
export class GuestAgent {
  readonly commands: Map<string, CommandDef> = new Map();
  readonly #blocked: Set<string>;
  readonly #allowed: Set<string> | undefined;
  /** Per-agent state that command groups keep (file handles, children, freeze state). */
  readonly state: Map<string, unknown> = new Map();
  #frozen = false;

  constructor(readonly options: AgentOptions, commandSets: CommandDef[][]) {
    for (const set of commandSets) for (const c of set) this.commands.set(c.name, c);
    this.#blocked = new Set(options.blockRpcs ?? []);
    this.#allowed = options.allowRpcs ? new Set(options.allowRpcs) : undefined;
  }

  log(level: "debug" | "warning" | "critical", message: string): void {
    this.options.log?.(level, message);
  }

  /** Per-agent state slot for a command group, created on first use. */
  slot<T>(key: string, create: () => T): T {
    let v = this.state.get(key) as T | undefined;
    if (v === undefined) {
      v = create();
      this.state.set(key, v);
    }
    return v;
  }

  get frozen(): boolean {
    return this.#frozen;
  }

  set frozen(v: boolean) {
    this.#frozen = v;
  }

  /** Whether a command is enabled, and if not, why (for the error text). */
  enabled(name: string): { enabled: boolean; reason?: string } {
    const def = this.commands.get(name);
    if (!def || def.disabledOnLinux) return { enabled: false };
    if (this.#blocked.has(name)) return { enabled: false };
    if (this.#allowed && !this.#allowed.has(name)) return { enabled: false };
    if (this.#frozen && !FROZEN_ALLOWED.has(name)) {
      return { enabled: false, reason: "the agent is in frozen state" };
    }
    return { enabled: true };
  }

  /**
   * Handles one message from the streamer. Returns the bytes to send (a JSON line, preceded
   * by 0xFF after guest-sync-delimited), or null when the command answers nothing.
   */
  async handle(value: JsonValue | undefined, parseError?: string): Promise<Uint8Array | null> {
    let delimit = false;
    let id: JsonValue | undefined;
    let reply: Record<string, unknown>;
    try {
      if (parseError !== undefined) throw new QgaError(parseError);
      const req = checkEnvelope(value);
      id = req.id;
      const result = await this.#execute(req.execute, req.arguments, () => delimit = true);
      if (result === NO_REPLY) return null;
      reply = { return: result ?? {} };
    } catch (e) {
      if (e instanceof QgaErrorWithId) id = e.id;
      const err = e instanceof QgaError ? e : new QgaError(String((e as Error)?.message ?? e));
      if (!(e instanceof QgaError)) this.log("warning", `internal error: ${e}`);
      reply = { error: { class: err.errorClass, desc: err.message } };
    }
    if (id !== undefined) reply.id = id;
    const text = encoder.encode(toQmpJson(reply) + "\n");
    if (!delimit) return text;
    const out = new Uint8Array(text.length + 1);
    out[0] = 0xff;
    out.set(text, 1);
    return out;
  }

  async #execute(
    name: string,
    args: { [key: string]: JsonValue } | undefined,
    delimit: () => void,
  ): Promise<unknown> {
    const def = this.commands.get(name);
    if (!def) throw new QgaError(`The command ${name} has not been found`, "CommandNotFound");
    const state = this.enabled(name);
    if (!state.enabled) {
      const why = state.reason ? `: ${state.reason}` : "";
      throw new QgaError(`Command ${name} has been disabled${why}`, "CommandNotFound");
    }
    const checked = checkFields(def.args ?? {}, args ?? {});
    this.log("debug", `executing ${name}`);
    const result = await def.run(checked, { agent: this, delimitResponse: delimit });
    if (def.successResponse === false) return NO_REPLY;
    return result;
  }

  /** Releases what commands hold (open files, child pipes). */
  async close(): Promise<void> {
    for (const v of this.state.values()) {
      const closer = (v as { close?: () => unknown })?.close;
      if (typeof closer === "function") await closer.call(v);
    }
  }
}

const NO_REPLY = Symbol("no reply");

interface Request {
  execute: string;
  arguments?: { [key: string]: JsonValue };
  id?: JsonValue;
}

function isPlainObject(v: unknown): v is { [key: string]: JsonValue } {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof JsonFloat);
}

/** The QMP envelope rules: an object with "execute", optional object "arguments", any "id". */
function checkEnvelope(v: JsonValue | undefined): Request {
  if (!isPlainObject(v)) throw new QgaError("QMP input must be a JSON object");
  const req: Partial<Request> = {};
  if (Object.hasOwn(v, "id")) req.id = v.id;
  for (const [key, val] of Object.entries(v)) {
    if (key === "execute") {
      if (typeof val !== "string") {
        throw new QgaErrorWithId("QMP input member 'execute' must be a string", v.id);
      }
      req.execute = val;
    } else if (key === "arguments") {
      if (!isPlainObject(val)) {
        throw new QgaErrorWithId("QMP input member 'arguments' must be an object", v.id);
      }
      req.arguments = val;
    } else if (key !== "id") {
      throw new QgaErrorWithId(`QMP input member '${key}' is unexpected`, v.id);
    }
  }
  if (req.execute === undefined) {
    throw new QgaErrorWithId("QMP input lacks member 'execute'", v.id);
  }
  return req as Request;
}

/** An envelope error that still echoes the request's id, as qemu-ga does. */
class QgaErrorWithId extends QgaError {
  constructor(message: string, readonly id: JsonValue | undefined) {
    super(message);
  }
}
