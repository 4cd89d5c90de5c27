/** The emulator: qemu-system-x86_64 for demu (CPU, PC devices, firmware, KVM). */
export * from "./cpu/mod.ts";
