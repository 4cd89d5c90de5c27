/** Every command demu's agent implements, grouped as the QGA schema groups them. */
import type { CommandDef } from "../agent.ts";
import { coreCommands } from "./core.ts";
import { timeCommands } from "./time.ts";
import { systemCommands } from "./system.ts";
import { hwCommands } from "./hw.ts";
import { fsCommands } from "./fs.ts";
import { networkCommands } from "./network.ts";
import { fileCommands } from "./file.ts";
import { execCommands } from "./exec.ts";
import { powerCommands } from "./power.ts";
import { userCommands } from "./users.ts";

/** Commands qemu-ga has only for Windows guests: present in guest-info, disabled on Linux. */
const windowsOnly: CommandDef[] = [
  { name: "guest-get-devices", disabledOnLinux: true, run: () => [] },
];

/** The QGA schema's order of definition; qemu-ga's guest-info lists commands in reverse. */
const SCHEMA_ORDER = [
  "guest-sync-delimited",
  "guest-sync",
  "guest-ping",
  "guest-get-time",
  "guest-set-time",
  "guest-info",
  "guest-shutdown",
  "guest-file-open",
  "guest-file-close",
  "guest-file-read",
  "guest-file-write",
  "guest-file-seek",
  "guest-file-flush",
  "guest-fsfreeze-status",
  "guest-fsfreeze-freeze",
  "guest-fsfreeze-freeze-list",
  "guest-fsfreeze-thaw",
  "guest-fstrim",
  "guest-suspend-disk",
  "guest-suspend-ram",
  "guest-suspend-hybrid",
  "guest-network-get-interfaces",
  "guest-get-vcpus",
  "guest-set-vcpus",
  "guest-get-disks",
  "guest-get-fsinfo",
  "guest-set-user-password",
  "guest-get-memory-blocks",
  "guest-set-memory-blocks",
  "guest-get-memory-block-info",
  "guest-exec-status",
  "guest-exec",
  "guest-get-host-name",
  "guest-get-users",
  "guest-get-timezone",
  "guest-get-osinfo",
  "guest-get-devices",
  "guest-ssh-get-authorized-keys",
  "guest-ssh-add-authorized-keys",
  "guest-ssh-remove-authorized-keys",
  "guest-get-diskstats",
  "guest-get-cpustats",
  "guest-get-load",
  "guest-network-get-route",
];

const rank = (c: CommandDef) => {
  const i = SCHEMA_ORDER.indexOf(c.name);
  return i < 0 ? SCHEMA_ORDER.length : i;
};

/** The full command set, registered in the schema's order of definition. */
export const ALL_COMMANDS: CommandDef[][] = [
  [
    ...coreCommands,
    ...timeCommands,
    ...powerCommands,
    ...fileCommands,
    ...fsCommands,
    ...networkCommands,
    ...hwCommands,
    ...execCommands,
    ...systemCommands,
    ...userCommands,
    ...windowsOnly,
  ].sort((a, b) => rank(a) - rank(b)),
];
