/**
 * NBD in the block layer: the wire protocol's numbers, the client connection and the `nbd`
 * protocol driver, registered so that openImage() accepts nbd:// and nbd+unix:// names.
 */
import { registerProtocol } from "../open.ts";
import { parseNbdFilename } from "./client.ts";
import { NbdDriver } from "./driver.ts";

export * from "./proto.ts";
export * from "./socket.ts";
export * from "./client.ts";
export * from "./driver.ts";

registerProtocol(async (filename, opts) => {
  if (!parseNbdFilename(filename)) return undefined;
  return await NbdDriver.open(filename, { readOnly: opts.readOnly });
});
