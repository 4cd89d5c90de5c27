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

/** The full command set, in registration order (guest-info lists them in this order). */
export const ALL_COMMANDS: CommandDef[][] = [
  coreCommands,
  timeCommands,
  powerCommands,
  fileCommands,
  fsCommands,
  networkCommands,
  hwCommands,
  execCommands,
  systemCommands,
  userCommands,
  windowsOnly,
];
