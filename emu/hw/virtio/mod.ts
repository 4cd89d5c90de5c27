/** virtio devices on PCI: the transport, split virtqueues, virtio-blk and virtio-serial. */
export * from "./virtqueue.ts";
export * from "./pci.ts";
export * from "./blk.ts";
export * from "./serial.ts";
