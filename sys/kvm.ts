/**
 * /dev/kvm through Deno FFI: the ioctls demu's accelerator uses and the kernel's struct layouts
 * (linux/kvm.h, x86_64), each defined once here. Offsets were taken from the kernel headers.
 */
import { errno, O_RDWR, open, SysError } from "./libc.ts";

// ioctl request numbers (_IO/_IOR/_IOW/_IOWR of KVMIO = 0xAE).
export const KVM_GET_API_VERSION = 0xae00;
export const KVM_CREATE_VM = 0xae01;
export const KVM_CHECK_EXTENSION = 0xae03;
export const KVM_GET_VCPU_MMAP_SIZE = 0xae04;
export const KVM_GET_SUPPORTED_CPUID = 0xc008ae05;
export const KVM_CREATE_VCPU = 0xae41;
export const KVM_SET_USER_MEMORY_REGION = 0x4020ae46;
export const KVM_SET_TSS_ADDR = 0xae47;
export const KVM_SET_IDENTITY_MAP_ADDR = 0x4008ae48;
export const KVM_CREATE_IRQCHIP = 0xae60;
export const KVM_IRQ_LINE = 0x4008ae61;
export const KVM_RUN = 0xae80;
export const KVM_GET_REGS = 0x8090ae81;
export const KVM_SET_REGS = 0x4090ae82;
export const KVM_GET_SREGS = 0x8138ae83;
export const KVM_SET_SREGS = 0x4138ae84;
export const KVM_INTERRUPT = 0x4004ae86;
export const KVM_GET_MSRS = 0xc008ae88;
export const KVM_SET_MSRS = 0x4008ae89;
export const KVM_SET_CPUID2 = 0x4008ae90;
export const KVM_SET_SIGNAL_MASK = 0x4004ae8b;

// KVM_CHECK_EXTENSION capabilities.
export const KVM_CAP_IRQCHIP = 0;
export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_READONLY_MEM = 0x51;
export const KVM_CAP_IMMEDIATE_EXIT = 0x88;

/** Memory slot flag: guest writes exit as MMIO (ROM). */
export const KVM_MEM_READONLY = 2;

// kvm_run.exit_reason values.
export const KVM_EXIT_UNKNOWN = 0;
export const KVM_EXIT_EXCEPTION = 1;
export const KVM_EXIT_IO = 2;
export const KVM_EXIT_HYPERCALL = 3;
export const KVM_EXIT_DEBUG = 4;
export const KVM_EXIT_HLT = 5;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_IRQ_WINDOW_OPEN = 7;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTR = 10;
export const KVM_EXIT_INTERNAL_ERROR = 17;
export const KVM_EXIT_SYSTEM_EVENT = 24;
export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;

/** Names of exit reasons, for error messages. */
export const KVM_EXIT_NAMES: Record<number, string> = {
  0: "UNKNOWN",
  1: "EXCEPTION",
  2: "IO",
  3: "HYPERCALL",
  4: "DEBUG",
  5: "HLT",
  6: "MMIO",
  7: "IRQ_WINDOW_OPEN",
  8: "SHUTDOWN",
  9: "FAIL_ENTRY",
  10: "INTR",
  17: "INTERNAL_ERROR",
  24: "SYSTEM_EVENT",
};

/** struct kvm_run field offsets. */
export const KvmRun = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  ready_for_interrupt_injection: 12,
  if_flag: 13,
  /** The exit-specific union. */
  u: 32,
  io_direction: 32,
  io_size: 33,
  io_port: 34,
  io_count: 36,
  io_data_offset: 40,
  mmio_phys_addr: 32,
  mmio_data: 40,
  mmio_len: 48,
  mmio_is_write: 52,
  internal_suberror: 32,
  internal_ndata: 36,
  internal_data: 40,
  fail_entry_reason: 32,
  system_event_type: 32,
} as const;

/** struct kvm_regs: 18 u64 in this order. */
export const KVM_REGS_NAMES = [
  "rax",
  "rbx",
  "rcx",
  "rdx",
  "rsi",
  "rdi",
  "rsp",
  "rbp",
  "r8",
  "r9",
  "r10",
  "r11",
  "r12",
  "r13",
  "r14",
  "r15",
  "rip",
  "rflags",
] as const;
export const KVM_REGS_SIZE = 144;

/** struct kvm_sregs layout: 8 kvm_segment (24 bytes), gdt, idt (16), control registers. */
export const KvmSregs = {
  size: 312,
  segments: ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"] as const,
  segmentSize: 24,
  gdt: 192,
  idt: 208,
  cr0: 224,
  cr2: 232,
  cr3: 240,
  cr4: 248,
  cr8: 256,
  efer: 264,
  apic_base: 272,
  interrupt_bitmap: 280,
} as const;

/** A segment register as struct kvm_segment holds it. */
export interface KvmSegment {
  base: number;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

/** Reads the kvm_segment at off. */
export function readSegment(v: DataView, off: number): KvmSegment {
  return {
    base: Number(v.getBigUint64(off, true)),
    limit: v.getUint32(off + 8, true),
    selector: v.getUint16(off + 12, true),
    type: v.getUint8(off + 14),
    present: v.getUint8(off + 15),
    dpl: v.getUint8(off + 16),
    db: v.getUint8(off + 17),
    s: v.getUint8(off + 18),
    l: v.getUint8(off + 19),
    g: v.getUint8(off + 20),
    avl: v.getUint8(off + 21),
    unusable: v.getUint8(off + 22),
  };
}

/** Writes a kvm_segment at off. */
export function writeSegment(v: DataView, off: number, s: KvmSegment): void {
  v.setBigUint64(off, BigInt(s.base), true);
  v.setUint32(off + 8, s.limit, true);
  v.setUint16(off + 12, s.selector, true);
  const bytes = [s.type, s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl, s.unusable, 0];
  bytes.forEach((b, i) => v.setUint8(off + 14 + i, b));
}

/** struct kvm_cpuid_entry2 (40 bytes). */
export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}
const CPUID_ENTRY_SIZE = 40;

const symbols = {
  ioctl_buf: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  /** ioctl(fd, KVM_RUN, 0) with plain-number arguments: the hot call of the vCPU loop. */
  ioctl_run: { name: "ioctl", parameters: ["i32", "u32", "u32"], result: "i32" },
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "pointer"], result: "i32" },
  gettid: { parameters: [], result: "i32" },
  timer_create: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  timer_settime: { parameters: ["pointer", "i32", "buffer", "pointer"], result: "i32" },
  timer_delete: { parameters: ["pointer"], result: "i32" },
  pthread_sigmask: { parameters: ["i32", "buffer", "pointer"], result: "i32" },
  sigtimedwait: { parameters: ["buffer", "pointer", "buffer"], result: "i32" },
} as const;

let lib: Deno.DynamicLibrary<typeof symbols>["symbols"] | undefined;
/** The FFI symbols of this module (exported for the vCPU's hot KVM_RUN call). */
export function kvmLib(): Deno.DynamicLibrary<typeof symbols>["symbols"] {
  lib ??= Deno.dlopen("libc.so.6", symbols).symbols;
  return lib;
}

/** ioctl with a struct argument; throws SysError naming the request. */
export function ioctlBuf(fd: number, req: number, buf: Uint8Array, name: string): number {
  const r = kvmLib().ioctl_buf(fd, BigInt(req), buf as Uint8Array<ArrayBuffer>);
  if (r < 0) throw new SysError(name, errno());
  return r;
}

/** ioctl with an integer argument; throws SysError naming the request. */
export function ioctlInt(fd: number, req: number, arg: number | bigint, name: string): number {
  const r = kvmLib().ioctl_int(fd, BigInt(req), BigInt(arg));
  if (r < 0) throw new SysError(name, errno());
  return r;
}

/** Opens /dev/kvm read-write and checks the API version (12). */
export function openKvm(path = "/dev/kvm"): number {
  const fd = open(path, O_RDWR);
  const v = ioctlInt(fd, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION");
  if (v !== 12) throw new Error(`KVM API version ${v} is not supported (need 12)`);
  return fd;
}

/** KVM_CHECK_EXTENSION: 0 when absent, else a capability-specific positive value. */
export function checkExtension(fd: number, cap: number): number {
  return kvmLib().ioctl_int(fd, BigInt(KVM_CHECK_EXTENSION), BigInt(cap));
}

/** KVM_SET_USER_MEMORY_REGION: maps host memory at hostAddr as guest physical [gpa, gpa+size). */
export function setUserMemoryRegion(
  vmFd: number,
  slot: number,
  flags: number,
  gpa: number,
  size: number,
  hostAddr: bigint,
): void {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  v.setUint32(0, slot, true);
  v.setUint32(4, flags, true);
  v.setBigUint64(8, BigInt(gpa), true);
  v.setBigUint64(16, BigInt(size), true);
  v.setBigUint64(24, hostAddr, true);
  ioctlBuf(vmFd, KVM_SET_USER_MEMORY_REGION, b, "KVM_SET_USER_MEMORY_REGION");
}

/** KVM_GET_SUPPORTED_CPUID: the CPUID leaves the host and KVM can give a guest. */
export function getSupportedCpuid(kvmFd: number): CpuidEntry[] {
  const max = 100;
  const b = new Uint8Array(8 + max * CPUID_ENTRY_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, max, true);
  ioctlBuf(kvmFd, KVM_GET_SUPPORTED_CPUID, b, "KVM_GET_SUPPORTED_CPUID");
  const n = v.getUint32(0, true);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + i * CPUID_ENTRY_SIZE;
    out.push({
      function: v.getUint32(o, true),
      index: v.getUint32(o + 4, true),
      flags: v.getUint32(o + 8, true),
      eax: v.getUint32(o + 12, true),
      ebx: v.getUint32(o + 16, true),
      ecx: v.getUint32(o + 20, true),
      edx: v.getUint32(o + 24, true),
    });
  }
  return out;
}

/** KVM_SET_CPUID2 on a vCPU. */
export function setCpuid2(vcpuFd: number, entries: CpuidEntry[]): void {
  const b = new Uint8Array(8 + entries.length * CPUID_ENTRY_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const o = 8 + i * CPUID_ENTRY_SIZE;
    v.setUint32(o, e.function, true);
    v.setUint32(o + 4, e.index, true);
    v.setUint32(o + 8, e.flags, true);
    v.setUint32(o + 12, e.eax, true);
    v.setUint32(o + 16, e.ebx, true);
    v.setUint32(o + 20, e.ecx, true);
    v.setUint32(o + 24, e.edx, true);
  });
  ioctlBuf(vcpuFd, KVM_SET_CPUID2, b, "KVM_SET_CPUID2");
}

/** KVM_SET_MSRS: sets (index, value) pairs; returns how many were set. */
export function setMsrs(vcpuFd: number, msrs: [number, bigint][]): number {
  const b = new Uint8Array(8 + msrs.length * 16);
  const v = new DataView(b.buffer);
  v.setUint32(0, msrs.length, true);
  msrs.forEach(([index, value], i) => {
    v.setUint32(8 + i * 16, index, true);
    v.setBigUint64(8 + i * 16 + 8, value, true);
  });
  return ioctlBuf(vcpuFd, KVM_SET_MSRS, b, "KVM_SET_MSRS");
}

/** KVM_INTERRUPT: queues an external interrupt vector (userspace irqchip only). */
export function interrupt(vcpuFd: number, vector: number): void {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, vector, true);
  ioctlBuf(vcpuFd, KVM_INTERRUPT, b, "KVM_INTERRUPT");
}

// Kicking a thread out of KVM_RUN: a POSIX timer that signals exactly this thread.
const CLOCK_MONOTONIC = 1;
const SIGEV_THREAD_ID = 4;

/** A one-shot timer that sends `signal` to the calling thread (struct sigevent SIGEV_THREAD_ID). */
export class ThreadSignalTimer {
  #id: Deno.PointerValue;
  #spec = new BigInt64Array(4);

  constructor(signal: number) {
    const ev = new Uint8Array(64);
    const v = new DataView(ev.buffer);
    v.setInt32(8, signal, true);
    v.setInt32(12, SIGEV_THREAD_ID, true);
    v.setInt32(16, kvmLib().gettid(), true);
    const idBuf = new BigUint64Array(1);
    if (kvmLib().timer_create(CLOCK_MONOTONIC, ev, new Uint8Array(idBuf.buffer)) < 0) {
      throw new SysError("timer_create", errno());
    }
    this.#id = Deno.UnsafePointer.create(idBuf[0]);
  }

  /** Arms the timer to fire once after ns nanoseconds (0 disarms). */
  arm(ns: number): void {
    const s = this.#spec;
    s[0] = 0n;
    s[1] = 0n;
    const t = Math.max(0, Math.ceil(ns));
    s[2] = BigInt(Math.floor(t / 1e9));
    s[3] = BigInt(t % 1e9);
    if (t === 0 && ns > 0) s[3] = 1n;
    if (kvmLib().timer_settime(this.#id, 0, new Uint8Array(s.buffer), null) < 0) {
      throw new SysError("timer_settime", errno());
    }
  }

  /** Deletes the timer. */
  close(): void {
    kvmLib().timer_delete(this.#id);
  }
}

/** A libc sigset_t (128 bytes) holding one signal. */
function sigset(signal: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(128);
  b[(signal - 1) >> 3] |= 1 << ((signal - 1) & 7);
  return b;
}

/** Blocks `signal` in the calling thread (so that it is only taken inside KVM_RUN). */
export function blockSignal(signal: number): void {
  const r = kvmLib().pthread_sigmask(0, /* SIG_BLOCK */ sigset(signal), null);
  if (r !== 0) throw new SysError("pthread_sigmask", r);
}

/** Takes a pending, blocked `signal` off the thread without waiting; true if one was pending. */
export function consumeSignal(signal: number): boolean {
  const zero = new Uint8Array(16);
  return kvmLib().sigtimedwait(sigset(signal), null, zero) === signal;
}

/** KVM_SET_SIGNAL_MASK: the signal mask in force while the vCPU runs (empty: all unblocked). */
export function setVcpuSignalMask(vcpuFd: number, blocked: number[] = []): void {
  const b = new Uint8Array(4 + 8);
  const v = new DataView(b.buffer);
  v.setUint32(0, 8, true);
  let mask = 0n;
  for (const s of blocked) mask |= 1n << BigInt(s - 1);
  v.setBigUint64(4, mask, true);
  ioctlBuf(vcpuFd, KVM_SET_SIGNAL_MASK, b, "KVM_SET_SIGNAL_MASK");
}
