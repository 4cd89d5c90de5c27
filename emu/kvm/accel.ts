/**
 * The KVM run loop: enter the guest, serve its exits through the Machine's buses, deliver the
 * 8259's interrupts, and keep the machine clock's timers on time.
 *
 * Interrupts: demu keeps the PIC in userspace and injects with KVM_INTERRUPT (asking for an
 * interrupt window when the guest has IF=0). Why not the in-kernel irqchip: one PIC/PIT model
 * then serves both accelerators, and a halted guest exits to demu (KVM_EXIT_HLT), where the
 * machine clock is served without a second thread. What it costs was measured here on kvm_pvm
 * instead of compared against an in-kernel irqchip (not implemented): an IO exit round trip
 * through this loop is within about 10% of a C loop doing the same ioctls
 * (tests/guests/pc/kvm_io_bench.ts), and SeaBIOS reaches "No bootable device" no slower than
 * QEMU with its in-kernel irqchip (tests/kvm_pc_test.ts prints both times).
 *
 * Timers vs. a guest spinning without exits: before KVM_RUN a POSIX timer is armed for the next
 * clock deadline; it sends SIGALRM to this thread. SIGALRM is blocked in the thread and
 * unblocked only inside KVM_RUN (KVM_SET_SIGNAL_MASK), so a signal that arrives outside the
 * guest stays pending and makes the next KVM_RUN return at once — no lost kicks.
 */
import {
  blockSignal,
  consumeSignal,
  EAGAIN,
  EINTR,
  errno,
  interrupt,
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_HLT,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_INTR,
  KVM_EXIT_IO,
  KVM_EXIT_IO_OUT,
  KVM_EXIT_IRQ_WINDOW_OPEN,
  KVM_EXIT_MMIO,
  KVM_EXIT_NAMES,
  KVM_EXIT_SHUTDOWN,
  KVM_EXIT_SYSTEM_EVENT,
  KVM_RUN,
  kvmLib,
  KvmRun,
  setVcpuSignalMask,
  SysError,
  ThreadSignalTimer,
} from "@demu/sys";
import type { AccessSize } from "../cpu/bus.ts";
import { yieldToEventLoop } from "../machine.ts";
import type { Machine, StopReason } from "../machine.ts";
import { KvmVcpu } from "./vcpu.ts";
import { KvmVm } from "./vm.ts";

const SIGALRM = 14;
/** kvm_run.internal.suberror: the instruction could not be emulated. */
const KVM_INTERNAL_ERROR_EMULATION = 1;
/** How often (ms of host time) the loop lets the event loop run (stdin, async I/O). */
const YIELD_MS = 10;

export class KvmAccel {
  readonly vcpu: KvmVcpu;
  #timer: ThreadSignalTimer;
  #armed = -1;
  #mapDirty = true;
  /** Exits served, by reason (for -d and benchmarks). */
  readonly exitCounts: Uint32Array = new Uint32Array(64);

  constructor(readonly machine: Machine, readonly vm: KvmVm) {
    this.vcpu = new KvmVcpu(vm);
    machine.memory.listeners.push(() => this.#mapDirty = true);
    Deno.addSignalListener("SIGALRM", noop);
    blockSignal(SIGALRM);
    setVcpuSignalMask(this.vcpu.fd, []);
    this.#timer = new ThreadSignalTimer(SIGALRM);
    this.vcpu.reset();
  }

  /** Runs the guest until the machine stops; returns why. */
  async run(): Promise<StopReason> {
    const m = this.machine;
    const run = this.vcpu.run;
    const bytes = this.vcpu.runBytes;
    const lib = kvmLib();
    const fd = this.vcpu.fd;
    let lastYield = performance.now();
    const pic = m.pic;
    const counts = this.exitCounts;
    for (;;) {
      if (m.pending.size) await Promise.all([...m.pending]);
      if (m.stopReason) return this.#finish();
      if (m.resetRequested) {
        m.resetDevices();
        this.vcpu.reset();
      }
      if (this.#mapDirty) {
        this.#mapDirty = false;
        this.vm.sync(m.memory);
      }
      m.clock.runDue();
      // Interrupt delivery.
      if (pic.intr) {
        if (bytes[KvmRun.ready_for_interrupt_injection] && bytes[KvmRun.if_flag]) {
          interrupt(fd, m.acknowledgeInterrupt());
        }
        bytes[KvmRun.request_interrupt_window] = pic.intr ? 1 : 0;
      } else if (bytes[KvmRun.request_interrupt_window]) {
        bytes[KvmRun.request_interrupt_window] = 0;
      }
      this.#armKick();
      const r = lib.ioctl_run(fd, KVM_RUN, 0);
      if (r < 0) {
        const e = errno();
        if (e === EINTR || e === EAGAIN) {
          consumeSignal(SIGALRM);
          this.#armed = -1;
          continue;
        }
        return this.#fatal(`KVM_RUN failed: ${new SysError("KVM_RUN", e).message}`);
      }
      const reason = bytes[KvmRun.exit_reason];
      counts[reason & 63]++;
      switch (reason) {
        case KVM_EXIT_IO:
          this.#io();
          break;
        case KVM_EXIT_MMIO:
          this.#mmio();
          break;
        case KVM_EXIT_IRQ_WINDOW_OPEN:
        case KVM_EXIT_INTR:
          break;
        case KVM_EXIT_HLT:
          await this.#halt();
          lastYield = performance.now();
          break;
        case KVM_EXIT_SHUTDOWN:
          m.log?.("cpu_reset", "triple fault (KVM_EXIT_SHUTDOWN)");
          m.requestReset();
          break;
        case KVM_EXIT_SYSTEM_EVENT:
          m.requestReset();
          break;
        case KVM_EXIT_INTERNAL_ERROR: {
          const sub = run.getUint32(KvmRun.internal_suberror, true);
          const n = Math.min(16, run.getUint32(KvmRun.internal_ndata, true));
          const lines = [`KVM internal error. Suberror: ${sub}`];
          for (let i = 0; i < n; i++) {
            const v = run.getBigUint64(KvmRun.internal_data + 8 * i, true);
            lines.push(`extra data[${i}]: 0x${v.toString(16).padStart(16, "0")}`);
          }
          if (sub === KVM_INTERNAL_ERROR_EMULATION) lines.push("emulation failure");
          return this.#fatal(lines.join("\n"));
        }
        case KVM_EXIT_FAIL_ENTRY: {
          const why = run.getBigUint64(KvmRun.fail_entry_reason, true);
          return this.#fatal(
            `KVM: entry failed, hardware error 0x${why.toString(16)}`,
          );
        }
        default:
          return this.#fatal(
            `KVM: unexpected exit reason ${reason} (${KVM_EXIT_NAMES[reason] ?? "?"})`,
          );
      }
      const now = performance.now();
      if (now - lastYield >= YIELD_MS) {
        lastYield = now;
        await yieldToEventLoop();
      }
    }
  }

  #armKick(): void {
    const clock = this.machine.clock;
    const d = clock.nextDeadline();
    if (d < 0 || d === this.#armed) return;
    const now = clock.now();
    this.#armed = d;
    this.#timer.arm(Math.max(1000, d - now));
  }

  /** HLT with no interrupt taken: wait for the next timer or an event. */
  async #halt(): Promise<void> {
    const m = this.machine;
    for (;;) {
      m.clock.runDue();
      if (m.pic.intr || m.stopReason || m.resetRequested || m.pending.size) return;
      const d = m.clock.nextDeadline();
      const ms = d < 0 ? -1 : Math.max(0, (d - m.clock.now()) / 1e6);
      await m.waitEvent(ms);
    }
  }

  #io(): void {
    const run = this.vcpu.run;
    const bytes = this.vcpu.runBytes;
    const io = this.machine.io;
    const out = run.getUint8(KvmRun.io_direction) === KVM_EXIT_IO_OUT;
    const size = run.getUint8(KvmRun.io_size) as AccessSize;
    const port = run.getUint16(KvmRun.io_port, true);
    const count = run.getUint32(KvmRun.io_count, true);
    let off = run.getUint32(KvmRun.io_data_offset, true);
    for (let i = 0; i < count; i++, off += size) {
      if (out) {
        const v = size === 1
          ? bytes[off]
          : size === 2
          ? run.getUint16(off, true)
          : run.getUint32(off, true);
        io.write(port, size, v);
      } else {
        const v = io.read(port, size);
        if (size === 1) bytes[off] = v;
        else if (size === 2) run.setUint16(off, v, true);
        else run.setUint32(off, v, true);
      }
    }
  }

  #mmio(): void {
    const run = this.vcpu.run;
    const mem = this.machine.memory;
    const addr = Number(run.getBigUint64(KvmRun.mmio_phys_addr, true));
    const len = run.getUint32(KvmRun.mmio_len, true);
    const write = run.getUint8(KvmRun.mmio_is_write) !== 0;
    const d = KvmRun.mmio_data;
    // Split into 4-byte-or-smaller bus accesses.
    for (let o = 0; o < len;) {
      const s: AccessSize = len - o >= 4 ? 4 : len - o >= 2 ? 2 : 1;
      if (write) {
        const v = s === 4
          ? run.getUint32(d + o, true)
          : s === 2
          ? run.getUint16(d + o, true)
          : run.getUint8(d + o);
        mem.write(addr + o, s, v);
      } else {
        const v = mem.read(addr + o, s);
        if (s === 4) run.setUint32(d + o, v, true);
        else if (s === 2) run.setUint16(d + o, v, true);
        else run.setUint8(d + o, v);
      }
      o += s;
    }
  }

  #fatal(message: string): StopReason {
    let regs = "";
    try {
      regs = this.vcpu.dump();
    } catch { /* the vCPU may be gone */ }
    this.machine.stop({ kind: "error", message: regs ? `${message}\n\n${regs}` : message });
    return this.#finish();
  }

  #finish(): StopReason {
    this.#timer.arm(0);
    return this.machine.stopReason!;
  }

  close(): void {
    this.#timer.close();
    Deno.removeSignalListener("SIGALRM", noop);
    this.vm.close();
  }
}

function noop(): void {}

export { KvmVm };
