/**
 * Direct Linux boot (-kernel, -initrd, -append) by the x86 boot protocol, without an option ROM:
 * the protected-mode kernel at its code32_start, the initrd as high as the kernel allows, the
 * command line, and boot_params ("the zero page") with the setup header and the e820 map. A
 * 60-byte stub in RAM and a reset vector in place of the BIOS switch to flat 32-bit protected
 * mode and enter the kernel with ESI = boot_params, as the 32-bit boot protocol asks — the same
 * for KVM and the interpreter, since both start at the reset vector.
 */
import { E820_RAM, E820_RESERVED, type E820Entry } from "./e820.ts";

// Setup header fields (offsets in the bzImage and in boot_params).
const HDR_SETUP_SECTS = 0x1f1;
const HDR_BOOT_FLAG = 0x1fe;
const HDR_JUMP = 0x200;
const HDR_HEADER = 0x202;
const HDR_VERSION = 0x206;
const HDR_TYPE_OF_LOADER = 0x210;
const HDR_LOADFLAGS = 0x211;
const HDR_CODE32_START = 0x214;
const HDR_RAMDISK_IMAGE = 0x218;
const HDR_RAMDISK_SIZE = 0x21c;
const HDR_HEAP_END_PTR = 0x224;
const HDR_CMD_LINE_PTR = 0x228;
const HDR_INITRD_ADDR_MAX = 0x22c;
const HDR_CMDLINE_SIZE = 0x238;
const BP_E820_ENTRIES = 0x1e8;
const BP_E820_TABLE = 0x2d0;
const BP_ACPI_RSDP_ADDR = 0x070;
const LOADED_HIGH = 0x01, CAN_USE_HEAP = 0x80;

/** Where things go in low memory. */
export const LINUX_STUB = 0x6000;
export const LINUX_BOOT_PARAMS = 0x7000;
export const LINUX_CMDLINE = 0x20000;

export class LinuxBootError extends Error {}

export interface LinuxImage {
  version: number;
  setupSize: number;
  code32Start: number;
  initrdAddrMax: number;
  cmdlineSize: number;
  /** The setup header bytes (0x1F1 up to the end of the header). */
  header: Uint8Array;
  /** The protected-mode kernel. */
  kernel: Uint8Array;
}

/** Parses a bzImage's setup header. */
export function parseBzImage(image: Uint8Array): LinuxImage {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (
    image.length < 0x400 || v.getUint16(HDR_BOOT_FLAG, true) !== 0xaa55 ||
    v.getUint32(HDR_HEADER, true) !== 0x53726448 // "HdrS"
  ) {
    throw new LinuxBootError("not a Linux bzImage (no boot protocol header)");
  }
  const version = v.getUint16(HDR_VERSION, true);
  if (version < 0x0204) {
    throw new LinuxBootError(`Linux boot protocol ${(version >> 8)}.${version & 0xff} is too old`);
  }
  if (!(image[HDR_LOADFLAGS] & LOADED_HIGH)) {
    throw new LinuxBootError("only bzImage kernels (loaded high) are supported");
  }
  const setupSects = image[HDR_SETUP_SECTS] || 4;
  const setupSize = (setupSects + 1) * 512;
  const headerEnd = HDR_JUMP + 2 + image[HDR_JUMP + 1];
  return {
    version,
    setupSize,
    code32Start: v.getUint32(HDR_CODE32_START, true),
    initrdAddrMax: v.getUint32(HDR_INITRD_ADDR_MAX, true) || 0x37ffffff,
    cmdlineSize: version >= 0x0206 ? v.getUint32(HDR_CMDLINE_SIZE, true) : 255,
    header: image.slice(HDR_SETUP_SECTS, headerEnd),
    kernel: image.subarray(setupSize),
  };
}

/** The e820 map a firmware-less PC reports: low RAM, the BIOS hole, RAM above 1 MiB. */
export function linuxE820(ramSize: number): E820Entry[] {
  return [
    { addr: 0, len: 0x9fc00, type: E820_RAM },
    { addr: 0x9fc00, len: 0x400, type: E820_RESERVED },
    { addr: 0xe0000, len: 0x20000, type: E820_RESERVED },
    { addr: 0x100000, len: ramSize - 0x100000, type: E820_RAM },
  ];
}

/**
 * The mode-switch stub at {@link LINUX_STUB} (real mode, CS=0): load a flat GDT, set CR0.PE,
 * far jump to 32-bit code that loads the data segments, sets ESI and jumps to the kernel.
 */
export function linuxStub(entry: number, bootParams: number): Uint8Array {
  const s = new Uint8Array(0xb0);
  const v = new DataView(s.buffer);
  const gdtr = LINUX_STUB + 0x80, gdt = LINUX_STUB + 0x90, code32 = LINUX_STUB + 0x20;
  // 16-bit: cli; lgdt [gdtr]; mov eax,cr0; or eax,1; mov cr0,eax; jmp dword 0x10:code32
  s.set([0xfa, 0x66, 0x0f, 0x01, 0x16, gdtr & 0xff, gdtr >> 8], 0);
  s.set([0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01, 0x0f, 0x22, 0xc0], 7);
  s.set([0x66, 0xea], 17);
  v.setUint32(19, code32, true);
  v.setUint16(23, 0x10, true);
  // 32-bit at +0x20: mov eax,0x18; mov ds/es/ss/fs/gs,ax; mov esi,bp; xor ebp/edi/ebx;
  // mov esp, stub; mov eax, entry; jmp eax
  let o = 0x20;
  const put = (...b: number[]) => {
    s.set(b, o);
    o += b.length;
  };
  put(0xb8, 0x18, 0, 0, 0);
  put(0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0x8e, 0xe0, 0x8e, 0xe8);
  put(0xbe);
  v.setUint32(o, bootParams, true);
  o += 4;
  put(0x31, 0xed, 0x31, 0xff, 0x31, 0xdb);
  put(0xbc);
  v.setUint32(o, LINUX_STUB, true);
  o += 4;
  put(0xb8);
  v.setUint32(o, entry, true);
  o += 4;
  put(0xff, 0xe0);
  // GDTR and GDT: null, null, 0x10 flat code, 0x18 flat data.
  v.setUint16(0x80, 0x1f, true);
  v.setUint32(0x82, gdt, true);
  v.setBigUint64(0xa0, 0x00cf9a000000ffffn, true);
  v.setBigUint64(0xa8, 0x00cf92000000ffffn, true);
  return s;
}

/** A 64 KiB "BIOS" whose reset vector jumps to the stub (jmp 0000:LINUX_STUB). */
export function linuxResetRom(): Uint8Array {
  const rom = new Uint8Array(0x10000).fill(0xf4);
  rom.set([0xea, LINUX_STUB & 0xff, LINUX_STUB >> 8, 0x00, 0x00], 0xfff0);
  return rom;
}

export interface LinuxLoad {
  ram: Uint8Array;
  image: Uint8Array;
  initrd: Uint8Array | null;
  cmdline: string;
  /** The RSDP's address, handed over in boot_params (protocol 2.14+) when tables exist. */
  rsdp?: number;
}

/** Places kernel, initrd, command line, boot_params and the stub in guest RAM. */
export function loadLinux(l: LinuxLoad): void {
  const k = parseBzImage(l.image);
  const ram = l.ram;
  const ramSize = ram.length;
  const entry = k.code32Start || 0x100000;
  if (entry + k.kernel.length > ramSize) throw new LinuxBootError("kernel too big for the RAM");
  ram.set(k.kernel, entry);
  const cmd = new TextEncoder().encode(l.cmdline);
  if (cmd.length > k.cmdlineSize) throw new LinuxBootError("kernel command line too long");
  ram.fill(0, LINUX_CMDLINE, LINUX_CMDLINE + cmd.length + 1);
  ram.set(cmd, LINUX_CMDLINE);

  const bp = new Uint8Array(4096);
  const v = new DataView(bp.buffer);
  bp.set(k.header, HDR_SETUP_SECTS);
  bp[HDR_TYPE_OF_LOADER] = 0xff;
  bp[HDR_LOADFLAGS] |= CAN_USE_HEAP;
  v.setUint16(HDR_HEAP_END_PTR, 0xfe00 - 0x200, true);
  v.setUint32(HDR_CMD_LINE_PTR, LINUX_CMDLINE, true);
  if (l.initrd) {
    const max = Math.min(k.initrdAddrMax, ramSize - 1);
    const addr = Math.floor((max + 1 - l.initrd.length) / 4096) * 4096;
    if (addr < entry + k.kernel.length) throw new LinuxBootError("initrd too big for the RAM");
    ram.set(l.initrd, addr);
    v.setUint32(HDR_RAMDISK_IMAGE, addr, true);
    v.setUint32(HDR_RAMDISK_SIZE, l.initrd.length, true);
  }
  const e820 = linuxE820(ramSize);
  bp[BP_E820_ENTRIES] = e820.length;
  e820.forEach((e, i) => {
    const o = BP_E820_TABLE + i * 20;
    v.setBigUint64(o, BigInt(e.addr), true);
    v.setBigUint64(o + 8, BigInt(e.len), true);
    v.setUint32(o + 16, e.type, true);
  });
  if (l.rsdp && k.version >= 0x020e) v.setBigUint64(BP_ACPI_RSDP_ADDR, BigInt(l.rsdp), true);
  ram.set(bp, LINUX_BOOT_PARAMS);
  ram.set(linuxStub(entry, LINUX_BOOT_PARAMS), LINUX_STUB);
}
