/** The guest agent: qemu-ga protocol, command set and channels. */
export { type AgentOptions, type CommandDef, GuestAgent, QGA_VERSION } from "./agent.ts";
export { createGuestAgent } from "./service.ts";
export { type Channel, listenUnix, openCharDevice, serveStream } from "./channel.ts";
export { JsonFloat, JsonStreamer, type JsonValue, toQmpJson } from "./json.ts";
export { QgaError } from "./errors.ts";
export { CharDevice } from "./chardev_io.ts";
