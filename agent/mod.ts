/** The guest agent: qemu-ga protocol, command set and channels. */
