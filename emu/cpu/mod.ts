/**
 * The x86 interpreter: the bus contract with the machine ({@link CpuBus}, {@link CpuControl}).
 * @module
 */
export * from "./bus.ts";
