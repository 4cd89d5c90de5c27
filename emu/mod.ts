/** The emulator: qemu-system-x86_64 for demu (CPU, PC devices, firmware, KVM). */
export * from "./cpu/mod.ts";
export { Machine, runInterpreter, type StopReason } from "./machine.ts";
export { type DriveSpec, Pc, type PcOptions } from "./hw/pc.ts";
export { KvmAccel } from "./kvm/accel.ts";
export { KvmUnavailableError, KvmVm } from "./kvm/vm.ts";
export { main as qemuSystemMain, parseArgs as parseQemuSystemArgs } from "./main.ts";
