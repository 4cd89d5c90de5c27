/** The protocol commands: guest-sync, guest-sync-delimited, guest-ping, guest-info. */
import { type CommandDef, QGA_VERSION } from "../agent.ts";

export const coreCommands: CommandDef[] = [
  {
    name: "guest-sync-delimited",
    args: { id: "int" },
    run: (args, ctx) => {
      ctx.delimitResponse();
      return args.id;
    },
  },
  { name: "guest-sync", args: { id: "int" }, run: (args) => args.id },
  { name: "guest-ping", run: () => ({}) },
  {
    name: "guest-info",
    run: (_args, { agent }) => ({
      version: QGA_VERSION,
      // Newest first, as qemu-ga lists them.
      supported_commands: [...agent.commands.values()].reverse().map((c) => ({
        enabled: agent.enabled(c.name).enabled,
        name: c.name,
        "success-response": c.successResponse !== false,
      })),
    }),
  },
];
