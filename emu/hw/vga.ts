/**
 * Standard VGA (QEMU's "-vga std", PCI 1234:1111) with the Bochs VBE extensions: the VGA
 * registers, the legacy window at 0xA0000 with planar/odd-even/chain-4 access, 16 MiB of video
 * memory behind a linear framebuffer BAR, the DISPI registers (ports 0x1CE/0x1CF and BAR 2),
 * and the option ROM (SeaBIOS's vgabios-stdvga) in the ROM BAR. {@link Vga.textScreen} reads
 * the text-mode screen for a terminal front end.
 *
 * Video memory keeps the four planes interleaved: byte `offset*4 + plane`.
 */
import type { AccessSize } from "../cpu/bus.ts";
import { PageKind } from "../cpu/bus.ts";
import type { Machine } from "../machine.ts";
import { PciDevice } from "./pci.ts";

export const VGA_VRAM_SIZE = 16 << 20;
const VBE_DISPI_INDEX_ID = 0, VBE_DISPI_INDEX_XRES = 1, VBE_DISPI_INDEX_YRES = 2;
const VBE_DISPI_INDEX_BPP = 3, VBE_DISPI_INDEX_ENABLE = 4, VBE_DISPI_INDEX_BANK = 5;
const VBE_DISPI_INDEX_VIRT_WIDTH = 6, VBE_DISPI_INDEX_VIDEO_MEMORY_64K = 0xa;
const VBE_DISPI_ENABLED = 1, VBE_DISPI_GETCAPS = 2, VBE_DISPI_NOCLEARMEM = 0x80;
const VBE_DISPI_MAX_XRES = 2560, VBE_DISPI_MAX_YRES = 1600, VBE_DISPI_MAX_BPP = 32;

/** mask16[i]: a 32-bit word with byte p all ones where bit p of i is set. */
const MASK16 = Array.from(
  { length: 16 },
  (_, i) =>
    ((i & 1 ? 0xff : 0) | (i & 2 ? 0xff00 : 0) | (i & 4 ? 0xff0000 : 0) |
      (i & 8 ? 0xff000000 : 0)) >>> 0,
);

export class Vga extends PciDevice {
  readonly vram: Uint8Array = new Uint8Array(VGA_VRAM_SIZE);
  readonly vram32: Uint32Array = new Uint32Array(this.vram.buffer);
  misc = 0;
  srIndex = 0;
  readonly sr: Uint8Array = new Uint8Array(8);
  grIndex = 0;
  readonly gr: Uint8Array = new Uint8Array(16);
  crIndex = 0;
  readonly cr: Uint8Array = new Uint8Array(0x40);
  arIndex = 0;
  arFlip = false;
  readonly ar: Uint8Array = new Uint8Array(0x20);
  readonly palette: Uint8Array = new Uint8Array(768);
  dacReadIndex = 0;
  dacWriteIndex = 0;
  dacSub = 0;
  dacState = 0;
  readonly #dacBuf = [0, 0, 0];
  #latch = 0;
  #retrace = 0;
  readonly vbe: Uint16Array = new Uint16Array(16);
  vbeIndex = 0;
  /** Bumped on every video memory or register write (front ends redraw when it moves). */
  generation = 0;

  constructor(machine: Machine, rom: Uint8Array | null) {
    super(0x1234, 0x1111, 0x030000, 0x02);
    this.machine = machine;
    const lfb = {
      read: (addr: number, size: AccessSize) => this.#lfbRead(addr - this.#bar(0), size),
      write: (addr: number, size: AccessSize, v: number) =>
        this.#lfbWrite(addr - this.#bar(0), size, v),
    };
    this.memBar(0, VGA_VRAM_SIZE, lfb, true);
    this.memBar(2, 4096, {
      read: (addr, size) => this.#mmioRead(addr - this.#bar(2), size),
      write: (addr, size, v) => this.#mmioWrite(addr - this.#bar(2), size, v),
    });
    if (rom) this.setRom(rom);
    this.vbe[VBE_DISPI_INDEX_ID] = 0xb0c5;
    this.vbe[VBE_DISPI_INDEX_VIDEO_MEMORY_64K] = VGA_VRAM_SIZE >> 16;
    const io = machine.io;
    io.register(0x3c0, 0x20, {
      read: (p) => this.readPort(p),
      write: (p, size, v) => {
        this.writePort(p, v & 0xff);
        if (size === 2) this.writePort(p + 1, v >> 8);
      },
    });
    io.register(0x3b4, 2, {
      read: (p) => this.readPort(p),
      write: (p, size, v) => {
        this.writePort(p, v & 0xff);
        if (size === 2) this.writePort(p + 1, v >> 8);
      },
    });
    io.register(0x3ba, 1, { read: (p) => this.readPort(p), write: () => {} });
    io.register(0x1ce, 2, {
      read: (p) => p === 0x1ce ? this.vbeIndex : this.#vbeRead(this.vbeIndex),
      write: (p, _s, v) => {
        if (p === 0x1ce) this.vbeIndex = v;
        else this.#vbeWrite(this.vbeIndex, v);
      },
    });
    machine.memory.add({
      name: "vga-lowmem",
      base: 0xa0000,
      size: 0x20000,
      handler: {
        read: (addr, size) => {
          let v = 0;
          for (let i = size - 1; i >= 0; i--) v = v * 256 + this.memRead(addr - 0xa0000 + i);
          return v;
        },
        write: (addr, size, v) => {
          for (let i = 0; i < size; i++) this.memWrite(addr - 0xa0000 + i, (v >>> (8 * i)) & 0xff);
        },
      },
    });
    machine.memory.setKind(0xa0000, 0x20000, PageKind.Mmio);
  }

  #bar(i: number): number {
    return this.get32(0x10 + 4 * i) & 0xfffffff0;
  }

  #lfbRead(o: number, size: AccessSize): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + (this.vram[o + i] ?? 0xff);
    return v;
  }

  #lfbWrite(o: number, size: AccessSize, v: number): void {
    for (let i = 0; i < size; i++) {
      if (o + i < this.vram.length) this.vram[o + i] = (v >>> (8 * i)) & 0xff;
    }
    this.generation++;
  }

  /** BAR 2: VGA ports at 0x400 (0x3C0+), DISPI registers at 0x500 (16-bit each). */
  #mmioRead(o: number, size: AccessSize): number {
    if (o >= 0x400 && o < 0x420) return this.readPort(0x3c0 + o - 0x400);
    if (o >= 0x500 && o < 0x520 && size >= 2) return this.#vbeRead((o - 0x500) >> 1);
    return 0;
  }

  #mmioWrite(o: number, size: AccessSize, v: number): void {
    if (o >= 0x400 && o < 0x420) {
      this.writePort(0x3c0 + o - 0x400, v & 0xff);
      if (size >= 2) this.writePort(0x3c0 + o - 0x400 + 1, (v >> 8) & 0xff);
    } else if (o >= 0x500 && o < 0x520 && size >= 2) this.#vbeWrite((o - 0x500) >> 1, v & 0xffff);
  }

  #vbeRead(i: number): number {
    if (i === VBE_DISPI_INDEX_XRES && (this.vbe[VBE_DISPI_INDEX_ENABLE] & VBE_DISPI_GETCAPS)) {
      return VBE_DISPI_MAX_XRES;
    }
    if (i === VBE_DISPI_INDEX_YRES && (this.vbe[VBE_DISPI_INDEX_ENABLE] & VBE_DISPI_GETCAPS)) {
      return VBE_DISPI_MAX_YRES;
    }
    if (i === VBE_DISPI_INDEX_BPP && (this.vbe[VBE_DISPI_INDEX_ENABLE] & VBE_DISPI_GETCAPS)) {
      return VBE_DISPI_MAX_BPP;
    }
    return i < 16 ? this.vbe[i] : 0;
  }

  #vbeWrite(i: number, v: number): void {
    if (i >= 16) return;
    this.generation++;
    switch (i) {
      case VBE_DISPI_INDEX_ID:
        if (v >= 0xb0c0 && v <= 0xb0c5) this.vbe[i] = v;
        return;
      case VBE_DISPI_INDEX_VIDEO_MEMORY_64K:
        return;
      case VBE_DISPI_INDEX_ENABLE:
        if ((v & VBE_DISPI_ENABLED) && !(this.vbe[i] & VBE_DISPI_ENABLED)) {
          if (!(v & VBE_DISPI_NOCLEARMEM)) this.vram.fill(0);
          if (!this.vbe[VBE_DISPI_INDEX_VIRT_WIDTH]) {
            this.vbe[VBE_DISPI_INDEX_VIRT_WIDTH] = this.vbe[VBE_DISPI_INDEX_XRES];
          }
        }
        this.vbe[i] = v;
        return;
      default:
        this.vbe[i] = v;
    }
  }

  get vbeEnabled(): boolean {
    return (this.vbe[VBE_DISPI_INDEX_ENABLE] & VBE_DISPI_ENABLED) !== 0;
  }

  readPort(p: number): number {
    // Ports of the inactive CRTC address range (mono vs colour) read as nothing.
    const color = (this.misc & 1) !== 0;
    if ((p >= 0x3b0 && p <= 0x3bf && color) || (p >= 0x3d0 && p <= 0x3df && !color)) return 0xff;
    switch (p) {
      case 0x3c0:
        return this.arFlip ? 0 : this.arIndex;
      case 0x3c1:
        return this.ar[this.arIndex & 0x1f];
      case 0x3c2:
        return 0; // input status 0
      case 0x3c4:
        return this.srIndex;
      case 0x3c5:
        return this.sr[this.srIndex & 7];
      case 0x3c6:
        return 0xff;
      case 0x3c7:
        return this.dacState;
      case 0x3c8:
        return this.dacWriteIndex;
      case 0x3c9: {
        const v = this.palette[this.dacReadIndex * 3 + this.dacSub];
        if (++this.dacSub === 3) {
          this.dacSub = 0;
          this.dacReadIndex = (this.dacReadIndex + 1) & 0xff;
        }
        return v;
      }
      case 0x3ca:
        return 0;
      case 0x3cc:
        return this.misc;
      case 0x3ce:
        return this.grIndex;
      case 0x3cf:
        return this.gr[this.grIndex & 15];
      case 0x3b4:
      case 0x3d4:
        return this.crIndex;
      case 0x3b5:
      case 0x3d5:
        return this.cr[this.crIndex & 0x3f];
      case 0x3ba:
      case 0x3da:
        // Input status 1: toggle display-enable and vertical retrace so pollers progress.
        this.arFlip = false;
        this.#retrace ^= 0x09;
        return this.#retrace;
      default:
        return 0xff;
    }
  }

  writePort(p: number, v: number): void {
    const color = (this.misc & 1) !== 0;
    if ((p >= 0x3b0 && p <= 0x3bf && color) || (p >= 0x3d0 && p <= 0x3df && !color)) return;
    this.generation++;
    switch (p) {
      case 0x3c0:
        if (!this.arFlip) this.arIndex = v & 0x3f;
        else if ((this.arIndex & 0x1f) < 0x15) this.ar[this.arIndex & 0x1f] = v;
        this.arFlip = !this.arFlip;
        return;
      case 0x3c2:
        this.misc = v;
        return;
      case 0x3c4:
        this.srIndex = v & 7;
        return;
      case 0x3c5:
        this.sr[this.srIndex] = v;
        return;
      case 0x3c7:
        this.dacReadIndex = v;
        this.dacSub = 0;
        this.dacState = 3;
        return;
      case 0x3c8:
        this.dacWriteIndex = v;
        this.dacSub = 0;
        this.dacState = 0;
        return;
      case 0x3c9:
        this.#dacBuf[this.dacSub] = v & 0x3f;
        if (++this.dacSub === 3) {
          this.palette.set(this.#dacBuf, this.dacWriteIndex * 3);
          this.dacSub = 0;
          this.dacWriteIndex = (this.dacWriteIndex + 1) & 0xff;
        }
        return;
      case 0x3ce:
        this.grIndex = v & 15;
        return;
      case 0x3cf:
        this.gr[this.grIndex] = v;
        return;
      case 0x3b4:
      case 0x3d4:
        this.crIndex = v & 0x3f;
        return;
      case 0x3b5:
      case 0x3d5:
        // CR0-7 are write protected when CR11 bit 7 is set (except CR7 bit 4).
        if ((this.cr[0x11] & 0x80) && this.crIndex <= 7) {
          if (this.crIndex === 7) this.cr[7] = (this.cr[7] & ~0x10) | (v & 0x10);
          return;
        }
        this.cr[this.crIndex] = v;
        return;
    }
  }

  /** The legacy window offset (0..0x1FFFF from 0xA0000) to an offset in the mapped range, or -1. */
  #window(a: number): number {
    switch ((this.gr[6] >> 2) & 3) {
      case 0:
        return a;
      case 1:
        return a < 0x10000 ? a : -1;
      case 2:
        return a >= 0x10000 && a < 0x18000 ? a - 0x10000 : -1;
      default:
        return a >= 0x18000 ? a - 0x18000 : -1;
    }
  }

  memRead(a: number): number {
    if (this.vbeEnabled) {
      if (a >= 0x10000) return 0xff;
      return this.vram[this.vbe[VBE_DISPI_INDEX_BANK] * 0x10000 + a] ?? 0xff;
    }
    const o = this.#window(a);
    if (o < 0) return 0xff;
    if (this.sr[4] & 8) return this.vram[o];
    if (this.gr[5] & 0x10) {
      const plane = (this.gr[4] & 2) | (o & 1);
      return this.vram[((o & ~1) << 1) | plane];
    }
    this.#latch = this.vram32[o];
    if (!(this.gr[5] & 8)) return (this.#latch >>> ((this.gr[4] & 3) * 8)) & 0xff;
    // Read mode 1: colour compare.
    const cmp = MASK16[this.gr[2] & 15];
    const dc = MASK16[this.gr[7] & 15];
    let r = ((this.#latch ^ cmp) & dc) >>> 0;
    r |= r >>> 16;
    r |= r >>> 8;
    return ~r & 0xff;
  }

  memWrite(a: number, v: number): void {
    this.generation++;
    if (this.vbeEnabled) {
      if (a < 0x10000) this.vram[this.vbe[VBE_DISPI_INDEX_BANK] * 0x10000 + a] = v;
      return;
    }
    const o = this.#window(a);
    if (o < 0) return;
    const mapMask = this.sr[2] & 15;
    if (this.sr[4] & 8) {
      if (mapMask & (1 << (o & 3))) this.vram[o] = v;
      return;
    }
    if (this.gr[5] & 0x10) {
      const plane = (this.gr[4] & 2) | (o & 1);
      if (mapMask & (1 << plane)) this.vram[((o & ~1) << 1) | plane] = v;
      return;
    }
    const mode = this.gr[5] & 3;
    let val: number;
    let bitMask = this.gr[8];
    if (mode === 1) {
      val = this.#latch;
    } else {
      if (mode === 0) {
        const b = this.gr[3] & 7;
        val = ((v >> b) | (v << (8 - b))) & 0xff;
        val = (val * 0x01010101) >>> 0;
        const setMask = MASK16[this.gr[1] & 15];
        val = ((val & ~setMask) | (MASK16[this.gr[0] & 15] & setMask)) >>> 0;
      } else if (mode === 2) {
        val = MASK16[v & 15];
      } else {
        const b = this.gr[3] & 7;
        const rv = ((v >> b) | (v << (8 - b))) & 0xff;
        bitMask &= rv;
        val = MASK16[this.gr[0] & 15];
      }
      switch ((this.gr[3] >> 3) & 3) {
        case 1:
          val &= this.#latch;
          break;
        case 2:
          val |= this.#latch;
          break;
        case 3:
          val ^= this.#latch;
          break;
      }
      const bm = (bitMask * 0x01010101) >>> 0;
      val = ((val & bm) | (this.#latch & ~bm)) >>> 0;
    }
    const wm = MASK16[mapMask];
    this.vram32[o] = ((this.vram32[o] & ~wm) | (val & wm)) >>> 0;
  }

  /** Whether the display shows a text mode (attribute controller mode bit 0 clear). */
  get textMode(): boolean {
    return !this.vbeEnabled && !(this.ar[0x10] & 1) && !(this.gr[6] & 1);
  }

  /**
   * The text screen: characters and attributes (cols x rows), from the CRTC start address and
   * offset. Valid when {@link Vga.textMode}.
   */
  textScreen(): {
    cols: number;
    rows: number;
    chars: Uint8Array;
    attrs: Uint8Array;
    cursor: number;
  } {
    const cols = this.cr[1] + 1;
    const charHeight = (this.cr[9] & 0x1f) + 1;
    const vdisp = this.cr[0x12] | ((this.cr[7] & 2) << 7) | ((this.cr[7] & 0x40) << 3);
    const rows = Math.max(1, Math.min(60, Math.floor((vdisp + 1) / charHeight)));
    const start = (this.cr[0x0c] << 8) | this.cr[0x0d];
    const stride = (this.cr[0x13] * 2) || cols;
    const chars = new Uint8Array(cols * rows);
    const attrs = new Uint8Array(cols * rows);
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < cols; x++) {
        const off = ((start + y * stride + x) * 4) & (VGA_VRAM_SIZE - 1);
        chars[y * cols + x] = this.vram[off];
        attrs[y * cols + x] = this.vram[off + 1];
      }
    }
    const cursor = ((this.cr[0x0e] << 8) | this.cr[0x0f]) - start;
    return { cols, rows, chars, attrs, cursor };
  }

  reset(): void {
    this.resetPci();
    this.misc = 0;
    this.sr.fill(0);
    this.gr.fill(0);
    this.cr.fill(0);
    this.ar.fill(0);
    this.vbe.fill(0);
    this.vbe[VBE_DISPI_INDEX_ID] = 0xb0c5;
    this.vbe[VBE_DISPI_INDEX_VIDEO_MEMORY_64K] = VGA_VRAM_SIZE >> 16;
  }
}
