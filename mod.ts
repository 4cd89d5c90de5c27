/**
 * demu's public library API: the block layer (images and protocols), the libc bindings, and as
 * they land the emulator, the tools' libraries and the guest agent.
 */
export * from "@demu/block";
export * as sys from "@demu/sys";
