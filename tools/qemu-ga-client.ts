/**
 * qemu-ga-client: talk to a guest agent from the host, like QEMU's qemu-ga-client.
 *
 *   deno run -A tools/qemu-ga-client.ts --address=unix:/tmp/qga.sock info
 *   deno run -A tools/qemu-ga-client.ts --address=/tmp/qga.sock execute '{"execute":"guest-get-time"}'
 */
import { parseAddress, QgaClient, QgaClientError } from "./qemu_ga_client/client.ts";
import { SUBCOMMANDS } from "./qemu_ga_client/commands.ts";

const PROG = "qemu-ga-client";

function usage(): string {
  const cmds = Object.values(SUBCOMMANDS).map((s) => `  ${s.usage}`).join("\n");
  return `Usage: ${PROG} [--address=<address>] [--timeout=<seconds>] <command> [args...]

Address: unix:PATH | tcp:HOST:PORT | HOST:PORT | serial:PATH | PATH
(default: the QGA_CLIENT_ADDRESS environment variable)

Commands:
${cmds}
`;
}

/** Runs the CLI; returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  let address = Deno.env.get("QGA_CLIENT_ADDRESS");
  let timeout = 3;
  let i = 0;
  for (; i < argv.length && argv[i].startsWith("-"); i++) {
    const a = argv[i];
    if (a === "-h" || a === "--help") {
      console.log(usage());
      return 0;
    }
    const m = /^--(address|timeout)(?:=(.*))?$/.exec(a);
    if (!m) {
      console.error(`${PROG}: unknown option '${a}'`);
      return 1;
    }
    const val = m[2] ?? argv[++i];
    if (val === undefined) {
      console.error(`${PROG}: option '--${m[1]}' requires an argument`);
      return 1;
    }
    if (m[1] === "address") address = val;
    else {
      timeout = Number(val);
      if (!(timeout > 0)) {
        console.error(`${PROG}: invalid timeout '${val}'`);
        return 1;
      }
    }
  }
  const name = argv[i];
  if (!name) {
    console.error(`${PROG}: no command given; try '${PROG} --help'`);
    return 1;
  }
  const sub = SUBCOMMANDS[name];
  if (!sub) {
    console.error(`${PROG}: invalid command '${name}'; try '${PROG} --help'`);
    return 1;
  }
  if (!address) {
    console.error(`${PROG}: no agent address: use --address=unix:PATH or set QGA_CLIENT_ADDRESS`);
    return 1;
  }
  let client: QgaClient | undefined;
  try {
    client = await QgaClient.connect(parseAddress(address), timeout * 1000);
    const out = await sub.run(client, argv.slice(i + 1));
    if (out === undefined) return 0;
    if (typeof out === "string") {
      console.log(out);
      return 0;
    }
    console.log(out.out);
    return out.status;
  } catch (e) {
    if (!(e instanceof QgaClientError)) throw e;
    console.error(`${PROG}: ${e.message}`);
    return 1;
  } finally {
    await client?.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
