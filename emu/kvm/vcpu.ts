/**
 * A KVM vCPU: its shared kvm_run page, CPUID from KVM_GET_SUPPORTED_CPUID, the x86 reset state,
 * and register dumps for error reports.
 */
import {
  getSupportedCpuid,
  ioctlBuf,
  ioctlInt,
  KVM_CREATE_VCPU,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_REGS_NAMES,
  KVM_REGS_SIZE,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KvmSregs,
  MAP_SHARED,
  type Mapping,
  mmap,
  PROT_READ,
  PROT_WRITE,
  readSegment,
  setCpuid2,
  setMsrs,
  writeSegment,
} from "@demu/sys";
import type { KvmVm } from "./vm.ts";

/** CPUID.1:EDX.APIC and CPUID.1:ECX.x2APIC: demu's PC has no local APIC (userspace 8259). */
const CPUID1_EDX_APIC = 1 << 9;
const CPUID1_ECX_X2APIC = 1 << 21;
/** CPUID.1:ECX.HYPERVISOR. */
const CPUID1_ECX_HYPERVISOR = 1 << 31;
/** MSRs zeroed on reset. */
const RESET_MSRS = [
  0x174, // IA32_SYSENTER_CS
  0x175, // IA32_SYSENTER_ESP
  0x176, // IA32_SYSENTER_EIP
  0xc0000081, // STAR
  0xc0000082, // LSTAR
  0xc0000083, // CSTAR
  0xc0000084, // SFMASK
  0xc0000102, // KERNEL_GS_BASE
  0x4b564d00, // MSR_KVM_WALL_CLOCK_NEW
  0x4b564d01, // MSR_KVM_SYSTEM_TIME_NEW
  0x4b564d02, // MSR_KVM_ASYNC_PF_EN
  0x4b564d03, // MSR_KVM_STEAL_TIME
  0x4b564d04, // MSR_KVM_PV_EOI_EN
];

/** KVM paravirt features that need an in-kernel local APIC (PV EOI, PV unhalt, PV send IPI...). */
const KVM_FEATURES_NEED_LAPIC = (1 << 6) | (1 << 7) | (1 << 11) | (1 << 9) | (1 << 15);

export class KvmVcpu {
  readonly fd: number;
  readonly runMap: Mapping;
  /** The kvm_run page. */
  readonly run: DataView;
  readonly runBytes: Uint8Array;

  constructor(readonly vm: KvmVm, index = 0) {
    this.fd = ioctlInt(vm.vmFd, KVM_CREATE_VCPU, index, "KVM_CREATE_VCPU");
    const size = ioctlInt(vm.kvmFd, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
    this.runMap = mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, this.fd, 0);
    this.run = new DataView(this.runMap.buffer);
    this.runBytes = new Uint8Array(this.runMap.buffer);
    this.#setupCpuid();
  }

  #setupCpuid(): void {
    const entries = getSupportedCpuid(this.vm.kvmFd);
    for (const e of entries) {
      if (e.function === 1) {
        e.edx &= ~CPUID1_EDX_APIC;
        e.ecx &= ~CPUID1_ECX_X2APIC;
        e.ecx |= CPUID1_ECX_HYPERVISOR;
        e.ebx &= 0x0000ffff; // APIC id 0, one logical processor
        e.ebx |= 1 << 16;
      }
      if (e.function === 0x40000001) e.eax &= ~KVM_FEATURES_NEED_LAPIC;
      e.eax >>>= 0;
      e.ebx >>>= 0;
      e.ecx >>>= 0;
      e.edx >>>= 0;
    }
    setCpuid2(this.fd, entries);
  }

  /** General registers (rax..r15, rip, rflags) as BigUint64Array in kvm_regs order. */
  getRegs(): BigUint64Array {
    const b = new BigUint64Array(KVM_REGS_SIZE / 8);
    ioctlBuf(this.fd, KVM_GET_REGS, new Uint8Array(b.buffer), "KVM_GET_REGS");
    return b;
  }

  setRegs(r: BigUint64Array): void {
    ioctlBuf(this.fd, KVM_SET_REGS, new Uint8Array(r.buffer), "KVM_SET_REGS");
  }

  getSregs(): DataView {
    const b = new Uint8Array(KvmSregs.size);
    ioctlBuf(this.fd, KVM_GET_SREGS, b, "KVM_GET_SREGS");
    return new DataView(b.buffer);
  }

  setSregs(v: DataView): void {
    ioctlBuf(this.fd, KVM_SET_SREGS, new Uint8Array(v.buffer), "KVM_SET_SREGS");
  }

  /** The power-on state: real mode, CS:IP = F000:FFF0 with CS base FFFF0000. */
  reset(): void {
    const s = this.getSregs();
    const seg = KvmSregs.segments;
    for (let i = 0; i < seg.length; i++) {
      const off = i * KvmSregs.segmentSize;
      const name = seg[i];
      const isCs = name === "cs";
      writeSegment(s, off, {
        base: isCs ? 0xffff0000 : 0,
        limit: 0xffff,
        selector: isCs ? 0xf000 : 0,
        type: isCs ? 0xb : name === "tr" ? 0xb : name === "ldt" ? 2 : 3,
        present: 1,
        dpl: 0,
        db: 0,
        s: name === "tr" || name === "ldt" ? 0 : 1,
        l: 0,
        g: 0,
        avl: 0,
        unusable: 0,
      });
    }
    for (const t of [KvmSregs.gdt, KvmSregs.idt]) {
      s.setBigUint64(t, 0n, true);
      s.setUint16(t + 8, 0xffff, true);
    }
    s.setBigUint64(KvmSregs.cr0, 0x60000010n, true);
    for (const r of [KvmSregs.cr2, KvmSregs.cr3, KvmSregs.cr4, KvmSregs.cr8, KvmSregs.efer]) {
      s.setBigUint64(r, 0n, true);
    }
    for (let i = 0; i < 4; i++) s.setBigUint64(KvmSregs.interrupt_bitmap + i * 8, 0n, true);
    this.setSregs(s);
    const r = new BigUint64Array(KVM_REGS_SIZE / 8);
    r[16] = 0xfff0n; // rip
    r[17] = 2n; // rflags
    r[3] = 0x600n; // rdx: the CPU signature after reset
    this.setRegs(r);
    // MSRs a reset clears: SYSENTER, the syscall targets, and KVM's paravirtual clock and async
    // page-fault areas (left enabled, KVM would keep writing into the rebooted guest's memory).
    setMsrs(this.fd, RESET_MSRS.map((i) => [i, 0n]));
  }

  /** A register dump in the style of QEMU's "info registers" / KVM error reports. */
  dump(): string {
    const r = this.getRegs();
    const s = this.getSregs();
    const hex = (v: bigint | number, w = 16) => v.toString(16).padStart(w, "0");
    const lines: string[] = [];
    const names = KVM_REGS_NAMES.map((n) => n.toUpperCase());
    for (let i = 0; i < 16; i += 4) {
      lines.push(
        [0, 1, 2, 3].map((j) => `${names[i + j].padEnd(3)}=${hex(r[i + j])}`).join(" "),
      );
    }
    lines.push(`RIP=${hex(r[16])} RFL=${hex(r[17], 8)}`);
    KvmSregs.segments.forEach((n, i) => {
      const g = readSegment(s, i * KvmSregs.segmentSize);
      lines.push(
        `${n.toUpperCase().padEnd(3)}=${hex(g.selector, 4)} ${hex(g.base)} ${hex(g.limit, 8)} ` +
          `type=${g.type} dpl=${g.dpl} db=${g.db} l=${g.l}`,
      );
    });
    lines.push(
      `GDT=     ${hex(s.getBigUint64(KvmSregs.gdt, true))} ${
        hex(s.getUint16(KvmSregs.gdt + 8, true), 8)
      }`,
    );
    lines.push(
      `IDT=     ${hex(s.getBigUint64(KvmSregs.idt, true))} ${
        hex(s.getUint16(KvmSregs.idt + 8, true), 8)
      }`,
    );
    const cr = (o: number) => hex(s.getBigUint64(o, true));
    lines.push(
      `CR0=${cr(KvmSregs.cr0)} CR2=${cr(KvmSregs.cr2)} CR3=${cr(KvmSregs.cr3)} CR4=${
        cr(KvmSregs.cr4)
      }`,
    );
    lines.push(`EFER=${cr(KvmSregs.efer)}`);
    return lines.join("\n");
  }
}
