/**
 * A KVM virtual machine: guest RAM as one anonymous mmap (the Machine's `ram` is a view of it),
 * and memory slots kept in step with the Machine's memory map — RAM pages read-write, ROM pages
 * read-only (writes exit as MMIO to demu), device pages unmapped so every access exits.
 */
import {
  checkExtension,
  close,
  ioctlInt,
  KVM_CAP_READONLY_MEM,
  KVM_CREATE_VM,
  KVM_MEM_READONLY,
  KVM_SET_IDENTITY_MAP_ADDR,
  KVM_SET_TSS_ADDR,
  MAP_ANONYMOUS,
  MAP_NORESERVE,
  MAP_PRIVATE,
  type Mapping,
  mmap,
  munmap,
  openKvm,
  pointerValue,
  PROT_READ,
  PROT_WRITE,
  setUserMemoryRegion,
  SysError,
} from "@demu/sys";
import { PageKind } from "../cpu/bus.ts";
import type { PhysMemory } from "../hw/memory.ts";

/** Where KVM puts the real-mode TSS and identity map (QEMU's addresses, just below the BIOS). */
const TSS_ADDR = 0xfeffd000;
const IDENTITY_MAP_ADDR = 0xfeffc000;

interface Slot {
  id: number;
  gpa: number;
  size: number;
  flags: number;
  host: bigint;
}

/** Thrown when /dev/kvm cannot be used; message in QEMU's words. */
export class KvmUnavailableError extends Error {}

export class KvmVm {
  readonly kvmFd: number;
  readonly vmFd: number;
  readonly ram: Mapping;
  readonly readonlyMem: boolean;
  #slots = new Map<string, Slot>();
  #freeIds: number[] = [];
  #nextId = 0;
  #romCopies = new Map<Uint8Array, Mapping>();
  /** RAM above 4 GiB (guest RAM beyond the PC's 3 GiB low window), only the CPU reaches it. */
  highRam: Mapping | null = null;

  private constructor(kvmFd: number, vmFd: number, ram: Mapping) {
    this.kvmFd = kvmFd;
    this.vmFd = vmFd;
    this.ram = ram;
    this.readonlyMem = checkExtension(kvmFd, KVM_CAP_READONLY_MEM) > 0;
  }

  /** Opens /dev/kvm, creates the VM and maps ramSize bytes of guest RAM. */
  static create(ramSize: number, device = "/dev/kvm"): KvmVm {
    let kvmFd: number;
    try {
      kvmFd = openKvm(device);
    } catch (e) {
      const why = e instanceof SysError ? e.message : String((e as Error).message);
      throw new KvmUnavailableError(`Could not access KVM kernel module: ${why}`);
    }
    let vmFd: number;
    try {
      vmFd = ioctlInt(kvmFd, KVM_CREATE_VM, 0, "KVM_CREATE_VM");
    } catch (e) {
      close(kvmFd);
      throw new KvmUnavailableError(`ioctl(KVM_CREATE_VM) failed: ${(e as Error).message}`);
    }
    const ram = mmap(ramSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
    const vm = new KvmVm(kvmFd, vmFd, ram);
    vm.#setupAddresses();
    return vm;
  }

  #setupAddresses(): void {
    const b = new BigUint64Array([BigInt(IDENTITY_MAP_ADDR)]);
    // KVM_SET_IDENTITY_MAP_ADDR takes a pointer to a u64.
    ioctlInt(
      this.vmFd,
      KVM_SET_IDENTITY_MAP_ADDR,
      pointerValue(Deno.UnsafePointer.of(b)!),
      "KVM_SET_IDENTITY_MAP_ADDR",
    );
    ioctlInt(this.vmFd, KVM_SET_TSS_ADDR, TSS_ADDR, "KVM_SET_TSS_ADDR");
  }

  /** Maps `size` bytes of RAM at guest physical 4 GiB. */
  addHighRam(size: number): void {
    this.highRam = mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
  }

  /** The host copy of a ROM region's bytes, mapped once. */
  #romCopy(bytes: Uint8Array): Mapping {
    let m = this.#romCopies.get(bytes);
    if (!m) {
      const size = Math.ceil(bytes.length / 4096) * 4096;
      m = mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
      new Uint8Array(m.buffer).set(bytes);
      this.#romCopies.set(bytes, m);
    }
    return m;
  }

  /** Brings KVM's memory slots in line with the memory map. */
  sync(memory: PhysMemory): void {
    const want: Omit<Slot, "id">[] = [];
    const base = pointerValue(this.ram.pointer);
    const kinds = memory.kinds;
    const roFlag = this.readonlyMem ? KVM_MEM_READONLY : 0;
    let start = 0;
    for (let p = 1; p <= kinds.length; p++) {
      if (p < kinds.length && kinds[p] === kinds[start]) continue;
      const kind = kinds[start];
      if (kind !== PageKind.Mmio) {
        want.push({
          gpa: start * 4096,
          size: (p - start) * 4096,
          flags: kind === PageKind.Rom ? roFlag : 0,
          host: base + BigInt(start * 4096),
        });
      }
      start = p;
    }
    if (this.highRam) {
      want.push({
        gpa: 2 ** 32,
        size: this.highRam.length,
        flags: 0,
        host: pointerValue(this.highRam.pointer),
      });
    }
    if (this.readonlyMem) {
      for (const r of memory.regions) {
        if (!r.rom || r.base < 0) continue;
        const m = this.#romCopy(r.rom);
        want.push({
          gpa: r.base,
          size: m.length,
          flags: KVM_MEM_READONLY,
          host: pointerValue(m.pointer),
        });
      }
    }
    const key = (s: Omit<Slot, "id">) => `${s.gpa}:${s.size}:${s.flags}:${s.host}`;
    const wanted = new Set(want.map(key));
    for (const [k, s] of this.#slots) {
      if (wanted.has(k)) continue;
      setUserMemoryRegion(this.vmFd, s.id, 0, s.gpa, 0, s.host);
      this.#slots.delete(k);
      this.#freeIds.push(s.id);
    }
    for (const w of want) {
      const k = key(w);
      if (this.#slots.has(k)) continue;
      const id = this.#freeIds.pop() ?? this.#nextId++;
      setUserMemoryRegion(this.vmFd, id, w.flags, w.gpa, w.size, w.host);
      this.#slots.set(k, { id, ...w });
    }
  }

  close(): void {
    close(this.vmFd);
    close(this.kvmFd);
    munmap(this.ram);
    for (const m of this.#romCopies.values()) munmap(m);
    if (this.highRam) munmap(this.highRam);
  }
}
