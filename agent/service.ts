/** Assembling an agent: persistent state, the command set, the open-file table. */
import { type AgentOptions, GuestAgent } from "./agent.ts";
import { ALL_COMMANDS } from "./commands/mod.ts";
import { FileTable } from "./commands/file.ts";
import { PersistentState } from "./state.ts";

/**
 * Creates an agent with every command. Throws when the state directory cannot hold
 * qga.state (qemu-ga refuses to start then too). A freeze marker left by a previous run
 * puts the agent back into frozen state, so the host can still thaw.
 */
export function createGuestAgent(options: AgentOptions): GuestAgent {
  const persistent = new PersistentState(options.stateDir);
  persistent.load();
  const agent = new GuestAgent(options, ALL_COMMANDS);
  agent.state.set("persistent", persistent);
  agent.state.set("files", new FileTable(persistent));
  if (persistent.isFrozenMarked()) {
    agent.log("warning", "previous instance left filesystems frozen; staying in frozen state");
    agent.frozen = true;
  }
  return agent;
}
