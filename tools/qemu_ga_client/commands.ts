/**
 * The subcommands of QEMU's qemu-ga-client (cat, fsfreeze, fstrim, ifconfig, info, ping,
 * powerdown, reboot, halt, suspend) plus `execute '<json>'` for any command. Each returns the
 * text to print; failures throw {@link QgaClientError}.
 */
import { type JsonValue, toQmpJson } from "@demu/agent";
import { type QgaClient, QgaClientError } from "./client.ts";

/** What a subcommand prints, and its exit status when that is not 0. */
export type SubResult = string | undefined | { out: string; status: number };
type Sub = (client: QgaClient, args: string[]) => Promise<SubResult>;

interface CommandInfo {
  name: string;
  enabled: boolean;
}

function netmask(prefix: number): string {
  const bits = prefix <= 0 ? 0 : (0xffffffff << (32 - Math.min(32, prefix))) >>> 0;
  return [24, 16, 8, 0].map((s) => (bits >>> s) & 0xff).join(".");
}

function b64decode(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const CAT_CHUNK = 65536;

/** The subcommands by name, with a one-line summary for --help. */
export const SUBCOMMANDS: Record<string, { usage: string; run: Sub }> = {
  cat: {
    usage: "cat <file>            print a guest file",
    run: async (c, args) => {
      if (args.length !== 1) throw new QgaClientError("usage: cat <file>");
      const handle = await c.execute("guest-file-open", { path: args[0] }) as number;
      const parts: Uint8Array[] = [];
      try {
        for (;;) {
          const r = await c.execute("guest-file-read", { handle, count: CAT_CHUNK }) as {
            count: number;
            "buf-b64": string;
            eof: boolean;
          };
          if (r.count > 0) parts.push(b64decode(r["buf-b64"]));
          if (r.eof || r.count === 0) break;
        }
      } finally {
        await c.execute("guest-file-close", { handle });
      }
      for (const p of parts) await Deno.stdout.write(p);
      return undefined;
    },
  },
  fsfreeze: {
    usage: "fsfreeze status|freeze|thaw",
    run: async (c, args) => {
      const cmd = args[0];
      if (!["status", "freeze", "thaw"].includes(cmd)) {
        throw new QgaClientError(`Invalid command: ${cmd ?? ""}`);
      }
      const ret = await c.execute(`guest-fsfreeze-${cmd}`);
      if (cmd === "status") return String(ret);
      return `${ret} filesystems ${cmd === "freeze" ? "frozen" : "thawed"}`;
    },
  },
  fstrim: {
    usage: "fstrim [minimum]      discard unused blocks",
    run: async (c, args) => {
      const minimum = args.length ? Number(args[0]) : 0;
      if (!Number.isSafeInteger(minimum)) throw new QgaClientError(`invalid minimum '${args[0]}'`);
      const r = await c.execute("guest-fstrim", { minimum }) as {
        paths: { path: string; trimmed?: number; minimum?: number; error?: string }[];
      };
      return r.paths.map((p) =>
        p.error !== undefined
          ? `${p.path}: ${p.error}`
          : `${p.path}: ${p.trimmed} bytes trimmed (minimum ${p.minimum})`
      ).join("\n");
    },
  },
  ifconfig: {
    usage: "ifconfig              network interfaces and addresses",
    run: async (c) => {
      const nifs = await c.execute("guest-network-get-interfaces") as {
        name: string;
        "hardware-address"?: string;
        "ip-addresses"?: { "ip-address-type": string; "ip-address": string; prefix: number }[];
      }[];
      const out: string[] = [];
      for (const nif of nifs) {
        out.push(`${nif.name}:`);
        for (const ip of nif["ip-addresses"] ?? []) {
          if (ip["ip-address-type"] === "ipv4") {
            out.push(`\tinet ${ip["ip-address"]}  netmask ${netmask(ip.prefix)}`);
          } else {
            out.push(`\tinet6 ${ip["ip-address"]}  prefixlen ${ip.prefix}`);
          }
        }
        const hw = nif["hardware-address"];
        if (hw && hw !== "00:00:00:00:00:00") out.push(`\tether ${hw}`);
      }
      return out.join("\n");
    },
  },
  info: {
    usage: "info                  agent version and commands",
    run: async (c) => {
      const info = await c.execute("guest-info") as {
        version: string;
        supported_commands: CommandInfo[];
      };
      const en = info.supported_commands.filter((x) => x.enabled).map((x) => x.name);
      const dis = info.supported_commands.filter((x) => !x.enabled).map((x) => x.name);
      return [
        `version: ${info.version}`,
        "supported_commands:",
        `\tenabled: ${en.join(", ")}`,
        `\tdisabled: ${dis.join(", ")}`,
      ].join("\n");
    },
  },
  ping: {
    usage: "ping [timeout]        check that the agent answers",
    run: async (c, args) => {
      const timeout = args.length ? Number(args[0]) : 3;
      if (!(timeout > 0)) throw new QgaClientError(`invalid timeout '${args[0]}'`);
      try {
        await c.sync(timeout * 1000);
        await c.execute("guest-ping");
      } catch (e) {
        if (e instanceof QgaClientError && /did not respond/.test(e.message)) {
          throw new QgaClientError(`Not responded in ${timeout} sec`);
        }
        throw e;
      }
      return undefined;
    },
  },
  powerdown: {
    usage: "powerdown             shut the guest down",
    run: (c) => shutdown(c, "powerdown"),
  },
  reboot: { usage: "reboot                reboot the guest", run: (c) => shutdown(c, "reboot") },
  halt: { usage: "halt                  halt the guest", run: (c) => shutdown(c, "halt") },
  suspend: {
    usage: "suspend disk|ram|hybrid",
    run: async (c, args) => {
      const mode = args[0];
      if (!["disk", "ram", "hybrid"].includes(mode)) {
        throw new QgaClientError(`Invalid mode: ${mode ?? ""}`);
      }
      await c.execute(`guest-suspend-${mode}`, undefined, false);
      return undefined;
    },
  },
  execute: {
    usage: "execute '<json>'      send any request; prints the reply",
    run: async (c, args) => {
      if (args.length !== 1) throw new QgaClientError("usage: execute '<json request>'");
      let req: unknown;
      try {
        req = JSON.parse(args[0]);
      } catch (e) {
        throw new QgaClientError(`invalid JSON request: ${(e as Error).message}`);
      }
      if (typeof req === "string") req = { execute: req };
      if (!req || typeof req !== "object" || Array.isArray(req)) {
        throw new QgaClientError("the request must be a JSON object or a command name");
      }
      const r = req as Record<string, unknown>;
      const silent = /^guest-(shutdown|suspend-)/.test(String(r.execute));
      const reply = await c.request(r, !silent);
      if (reply === undefined) return undefined;
      const text = toQmpJson(reply as JsonValue);
      // An error reply is printed as it came, and makes the exit status non-zero.
      if ((reply as { error?: unknown }).error) return { out: text, status: 1 };
      return text;
    },
  },
};

async function shutdown(c: QgaClient, mode: string): Promise<undefined> {
  await c.execute("guest-shutdown", { mode }, false);
  return undefined;
}
