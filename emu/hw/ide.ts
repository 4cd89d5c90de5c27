/**
 * The PIIX3 IDE controller (PCI 00:01.1): two legacy channels (0x1F0/0x3F6 on IRQ 14,
 * 0x170/0x376 on IRQ 15), ATA disks with PIO and bus-master DMA (BAR 4), and ATAPI CD-ROMs
 * answering the packet commands SeaBIOS (El Torito) and Linux's sr driver send.
 *
 * Disk I/O goes through the block layer and is asynchronous: a command starts the transfer
 * with {@link Machine.defer}, and the CPU does not run again until it has completed, so the
 * guest sees the drive ready at its next access (BSY is never observed).
 */
import type { BlockDriver } from "@demu/block";
import type { AccessSize } from "../cpu/bus.ts";
import type { Machine } from "../machine.ts";
import { PciDevice } from "./pci.ts";

// Status and error bits (ATA/ATAPI-7).
const ERR_STAT = 0x01, DRQ_STAT = 0x08, DSC_STAT = 0x10, DRDY_STAT = 0x40;
const ABRT_ERR = 0x04;
const SRST = 0x04, NIEN = 0x02;
const SECTOR = 512;
const CD_SECTOR = 2048;
// ATAPI interrupt reason (sector count register).
const ATAPI_INT_REASON_CD = 1, ATAPI_INT_REASON_IO = 2;
// SCSI sense keys and additional sense codes.
const SENSE_NONE = 0, SENSE_NOT_READY = 2, SENSE_ILLEGAL_REQUEST = 5, SENSE_UNIT_ATTENTION = 6;
const ASC_MEDIUM_NOT_PRESENT = 0x3a, ASC_INVALID_OPCODE = 0x20, ASC_LBA_OUT_OF_RANGE = 0x21;
const ASC_INVALID_FIELD = 0x24, ASC_MEDIUM_MAY_HAVE_CHANGED = 0x28;
// Bus-master IDE register bits.
const BM_CMD_START = 1, BM_CMD_READ = 8;
const BM_STATUS_ACTIVE = 1, BM_STATUS_ERROR = 2, BM_STATUS_INT = 4;

/** A drive on a channel. */
export class IdeDrive {
  sectors = 0;
  cylinders = 0;
  heads = 0;
  secPerTrack = 0;
  multSectors = 16;
  senseKey = SENSE_NONE;
  asc = 0;
  /** A fresh medium reports UNIT ATTENTION once, as a real drive does. */
  mediaChanged = false;

  constructor(
    readonly kind: "disk" | "cdrom",
    public driver: BlockDriver | null,
    readonly serial: string,
  ) {}

  async open(): Promise<void> {
    if (!this.driver) return;
    const len = await this.driver.length();
    if (this.kind === "cdrom") {
      this.sectors = Math.floor(len / CD_SECTOR);
      this.mediaChanged = true;
      return;
    }
    this.sectors = Math.floor(len / SECTOR);
    // The usual translation: 16 heads, 63 sectors per track.
    this.heads = 16;
    this.secPerTrack = 63;
    this.cylinders = Math.max(1, Math.min(16383, Math.floor(this.sectors / (16 * 63))));
  }

  get model(): string {
    return this.kind === "cdrom" ? "QEMU DVD-ROM" : "QEMU HARDDISK";
  }
}

/** Writes an ATA string (byte-swapped words, space padded). */
function putString(words: Uint16Array, at: number, len: number, s: string): void {
  const b = s.padEnd(len * 2, " ");
  for (let i = 0; i < len; i++) {
    words[at + i] = (b.charCodeAt(2 * i) << 8) | b.charCodeAt(2 * i + 1);
  }
}

export class IdeChannel {
  readonly drives: (IdeDrive | null)[] = [null, null];
  unit = 0;
  feature = 0;
  nsector = 0;
  sector = 0;
  lcyl = 0;
  hcyl = 0;
  hobFeature = 0;
  hobNsector = 0;
  hobSector = 0;
  hobLcyl = 0;
  hobHcyl = 0;
  select = 0xa0;
  status = 0;
  error = 0;
  control = 0;
  #lba48 = false;
  /** The PIO data buffer and the part the guest is moving now. */
  buf: Uint8Array = new Uint8Array(128 * 1024);
  pos = 0;
  end = 0;
  /** What to do when the guest has moved `end` bytes. */
  #onTransferEnd: (() => void) | null = null;
  /** Bus master: command, status, PRD table address. */
  bmCmd = 0;
  bmStatus = 0;
  bmPrd = 0;
  /** A DMA command waiting for the bus master start bit. */
  #dmaPending: (() => Promise<void>) | null = null;
  #irqLevel = false;
  /** The ATAPI packet being processed. */
  #packet = new Uint8Array(12);
  // PIO sector command state.
  #lba = 0;
  #remaining = 0;
  #blockSectors = 1;
  #writing = false;

  constructor(readonly machine: Machine, readonly irq: number, readonly index: number) {}

  get drive(): IdeDrive | null {
    return this.drives[this.unit];
  }

  #setIrq(level: boolean): void {
    if (level) this.bmStatus |= BM_STATUS_INT;
    const l = level && !(this.control & NIEN);
    if (l === this.#irqLevel && !l) return;
    this.#irqLevel = l;
    this.machine.pic.setIrq(this.irq, l);
  }

  raiseIrq(): void {
    this.#setIrq(true);
  }

  register(cmdBase: number, ctlPort: number): void {
    const io = this.machine.io;
    io.register(cmdBase, 8, {
      read: (p, size) => this.readReg(p - cmdBase, size),
      write: (p, size, v) => this.writeReg(p - cmdBase, size, v),
    });
    io.register(ctlPort, 1, {
      read: () => this.drive ? this.status : 0,
      write: (_p, _s, v) => this.writeControl(v),
    });
  }

  /** Software reset: the device signature in the task-file registers. */
  #signature(): void {
    this.nsector = this.sector = 1;
    const d = this.drive;
    if (d?.kind === "cdrom") {
      this.lcyl = 0x14;
      this.hcyl = 0xeb;
    } else if (d) {
      this.lcyl = this.hcyl = 0;
    } else {
      this.lcyl = this.hcyl = 0xff;
    }
    this.error = 1;
    this.status = d ? DRDY_STAT | DSC_STAT : 0;
  }

  reset(): void {
    this.unit = 0;
    this.select = 0xa0;
    this.control = 0;
    this.bmCmd = this.bmStatus = this.bmPrd = 0;
    this.#dmaPending = null;
    this.#onTransferEnd = null;
    this.pos = this.end = 0;
    this.#signature();
    this.#setIrq(false);
  }

  writeControl(v: number): void {
    if (!(this.control & SRST) && (v & SRST)) {
      this.status = 0x80; // BSY while reset is asserted
    } else if ((this.control & SRST) && !(v & SRST)) {
      // The channel keeps one task file for both drives: drive 0's signature must be the one
      // left in it (Linux's libata classifies device 0 from it right after the reset; with
      // drive 1's "no device" 0xFF/0xFF there it found no disk and no CD-ROM).
      for (const u of [1, 0]) {
        this.unit = u;
        this.#signature();
      }
      this.unit = 0;
      this.select = 0xa0;
      this.#onTransferEnd = null;
      this.end = this.pos = 0;
    }
    this.control = v;
    if (v & NIEN) this.#setIrq(false);
  }

  readReg(reg: number, size: AccessSize): number {
    if (reg === 0) return this.#readData(size);
    const hob = (this.control & 0x80) !== 0;
    const d = this.drive;
    if (!d && reg !== 6) return 0;
    switch (reg) {
      case 1:
        return hob ? this.hobFeature : this.error;
      case 2:
        return hob ? this.hobNsector : this.nsector;
      case 3:
        return hob ? this.hobSector : this.sector;
      case 4:
        return hob ? this.hobLcyl : this.lcyl;
      case 5:
        return hob ? this.hobHcyl : this.hcyl;
      case 6:
        return this.select;
      default:
        this.#setIrq(false); // reading status acknowledges the interrupt
        return d ? this.status : 0;
    }
  }

  writeReg(reg: number, size: AccessSize, v: number): void {
    if (reg === 0) return this.#writeData(size, v);
    this.control &= ~0x80;
    switch (reg) {
      case 1:
        this.hobFeature = this.feature;
        this.feature = v;
        break;
      case 2:
        this.hobNsector = this.nsector;
        this.nsector = v;
        break;
      case 3:
        this.hobSector = this.sector;
        this.sector = v;
        break;
      case 4:
        this.hobLcyl = this.lcyl;
        this.lcyl = v;
        break;
      case 5:
        this.hobHcyl = this.hcyl;
        this.hcyl = v;
        break;
      case 6:
        this.select = v | 0xa0;
        this.unit = (v >> 4) & 1;
        break;
      case 7:
        this.#command(v);
        break;
    }
  }

  #readData(size: AccessSize): number {
    if (this.pos >= this.end) return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + this.buf[this.pos + i];
    this.pos += size;
    if (this.pos >= this.end) this.#transferDone();
    return v;
  }

  #writeData(size: AccessSize, v: number): void {
    if (this.pos >= this.end) return;
    for (let i = 0; i < size; i++) this.buf[this.pos + i] = (v >>> (8 * i)) & 0xff;
    this.pos += size;
    if (this.pos >= this.end) this.#transferDone();
  }

  #transferDone(): void {
    this.status &= ~DRQ_STAT;
    const f = this.#onTransferEnd;
    this.#onTransferEnd = null;
    f?.();
  }

  /** Starts a PIO data phase of len bytes from/to buf. */
  #startPio(len: number, then: (() => void) | null): void {
    this.pos = 0;
    this.end = len;
    this.#onTransferEnd = then;
    this.status = DRDY_STAT | DSC_STAT | DRQ_STAT;
  }

  #abort(): void {
    this.error = ABRT_ERR;
    this.status = DRDY_STAT | ERR_STAT;
    this.raiseIrq();
  }

  #ok(): void {
    this.error = 0;
    this.status = DRDY_STAT | DSC_STAT;
    this.raiseIrq();
  }

  #ensureBuf(n: number): void {
    if (this.buf.length < n) this.buf = new Uint8Array(n);
  }

  /** The LBA of the current command (LBA28, LBA48 or CHS). */
  #getLba(): number {
    if (this.#lba48) {
      return ((this.hobHcyl << 16 | this.hobLcyl << 8 | this.hobSector) * 2 ** 24) +
        ((this.hcyl << 16) | (this.lcyl << 8) | this.sector);
    }
    if (this.select & 0x40) {
      return ((this.select & 0x0f) << 24) | (this.hcyl << 16) | (this.lcyl << 8) | this.sector;
    }
    const d = this.drive!;
    const cyl = (this.hcyl << 8) | this.lcyl;
    return (cyl * d.heads + (this.select & 0x0f)) * d.secPerTrack + (this.sector - 1);
  }

  #setLba(lba: number): void {
    if (this.#lba48) {
      this.sector = lba & 0xff;
      this.lcyl = (lba >>> 8) & 0xff;
      this.hcyl = (lba >>> 16) & 0xff;
      const hi = Math.floor(lba / 2 ** 24);
      this.hobSector = hi & 0xff;
      this.hobLcyl = (hi >>> 8) & 0xff;
      this.hobHcyl = (hi >>> 16) & 0xff;
    } else if (this.select & 0x40) {
      this.select = (this.select & 0xf0) | ((lba >>> 24) & 0x0f);
      this.hcyl = (lba >>> 16) & 0xff;
      this.lcyl = (lba >>> 8) & 0xff;
      this.sector = lba & 0xff;
    } else {
      const d = this.drive!;
      const cyl = Math.floor(lba / (d.heads * d.secPerTrack));
      const r = lba % (d.heads * d.secPerTrack);
      this.hcyl = cyl >> 8;
      this.lcyl = cyl & 0xff;
      this.select = (this.select & 0xf0) | Math.floor(r / d.secPerTrack);
      this.sector = (r % d.secPerTrack) + 1;
    }
  }

  #count(): number {
    if (this.#lba48) return ((this.hobNsector << 8) | this.nsector) || 65536;
    return this.nsector || 256;
  }

  #command(cmd: number): void {
    const d = this.drive;
    if (!d) return; // no device: the command is ignored
    this.#setIrq(false);
    this.#lba48 = false;
    this.error = 0;
    if (d.kind === "cdrom") return this.#atapiCommand(cmd);
    switch (cmd) {
      case 0xec: // IDENTIFY DEVICE
        this.#identifyDisk(d);
        this.#startPio(512, () => this.status = DRDY_STAT | DSC_STAT);
        this.raiseIrq();
        return;
      case 0x24: // READ SECTORS EXT
      case 0x29: // READ MULTIPLE EXT
        this.#lba48 = true;
        return this.#pioRw(false, cmd === 0x29 ? d.multSectors : 1);
      case 0x20:
      case 0x21:
        return this.#pioRw(false, 1);
      case 0xc4:
        return this.#pioRw(false, d.multSectors);
      case 0x34: // WRITE SECTORS EXT
      case 0x39:
        this.#lba48 = true;
        return this.#pioRw(true, cmd === 0x39 ? d.multSectors : 1);
      case 0x30:
      case 0x31:
        return this.#pioRw(true, 1);
      case 0xc5:
        return this.#pioRw(true, d.multSectors);
      case 0x25: // READ DMA EXT
        this.#lba48 = true;
        return this.#dmaRw(false);
      case 0xc8:
      case 0xc9:
        return this.#dmaRw(false);
      case 0x35: // WRITE DMA EXT
        this.#lba48 = true;
        return this.#dmaRw(true);
      case 0xca:
      case 0xcb:
        return this.#dmaRw(true);
      case 0x40: // READ VERIFY
      case 0x41:
      case 0x42:
        return this.#ok();
      case 0xc6: // SET MULTIPLE MODE
        if (this.nsector > 16 || (this.nsector & (this.nsector - 1))) return this.#abort();
        d.multSectors = this.nsector;
        return this.#ok();
      case 0xe7: // FLUSH CACHE
      case 0xea:
        this.status = DRDY_STAT | 0x80;
        this.machine.defer(d.driver!.flush().then(() => this.#ok()));
        return;
      case 0xef: // SET FEATURES
      case 0x91: // INITIALIZE DEVICE PARAMETERS
      case 0x10: // RECALIBRATE
      case 0xe0: // STANDBY IMMEDIATE ...
      case 0xe1:
      case 0xe2:
      case 0xe3:
      case 0x70: // SEEK
        return this.#ok();
      case 0xe5: // CHECK POWER MODE
        this.nsector = 0xff;
        return this.#ok();
      case 0xf8: // READ NATIVE MAX ADDRESS
        this.#setLba(d.sectors - 1);
        return this.#ok();
      case 0x27: // READ NATIVE MAX ADDRESS EXT
        this.#lba48 = true;
        this.#setLba(d.sectors - 1);
        return this.#ok();
      case 0x90: // EXECUTE DEVICE DIAGNOSTIC
        this.#signature();
        this.raiseIrq();
        return;
      default:
        return this.#abort();
    }
  }

  #identifyDisk(d: IdeDrive): void {
    const w = new Uint16Array(256);
    w[0] = 0x0040;
    w[1] = d.cylinders;
    w[3] = d.heads;
    w[4] = 512 * d.secPerTrack;
    w[5] = 512;
    w[6] = d.secPerTrack;
    putString(w, 10, 10, d.serial);
    w[20] = 3;
    w[21] = 512;
    w[22] = 4;
    putString(w, 23, 4, "2.5+");
    putString(w, 27, 20, d.model);
    w[47] = 0x8000 | 16;
    w[48] = 1;
    w[49] = (1 << 11) | (1 << 9) | (1 << 8);
    w[51] = 0x200;
    w[52] = 0x200;
    w[53] = 1 | 2 | 4;
    w[54] = d.cylinders;
    w[55] = d.heads;
    w[56] = d.secPerTrack;
    const chs = d.cylinders * d.heads * d.secPerTrack;
    w[57] = chs & 0xffff;
    w[58] = chs >>> 16;
    w[59] = 0x100 | d.multSectors;
    const lba28 = Math.min(d.sectors, 0x0fffffff);
    w[60] = lba28 & 0xffff;
    w[61] = lba28 >>> 16;
    w[62] = 0x07;
    w[63] = 0x07;
    w[64] = 0x03;
    w[65] =
      w[66] =
      w[67] =
      w[68] =
        120;
    w[80] = 0xf0;
    w[81] = 0x16;
    w[82] = (1 << 14) | (1 << 5) | 1;
    w[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10);
    w[84] = 1 << 14;
    w[85] = (1 << 14) | (1 << 5) | 1;
    w[86] = (1 << 13) | (1 << 12) | (1 << 10);
    w[87] = 1 << 14;
    w[88] = 0x3f | (1 << 13);
    w[93] = 1 | (1 << 14) | 0x2000;
    let s = d.sectors;
    for (let i = 100; i < 104; i++) {
      w[i] = s % 65536;
      s = Math.floor(s / 65536);
    }
    this.buf.set(new Uint8Array(w.buffer));
  }

  /** PIO READ/WRITE SECTORS (MULTIPLE): blocks of `block` sectors, an interrupt per block. */
  #pioRw(write: boolean, block: number): void {
    const d = this.drive!;
    const lba = this.#getLba();
    const n = this.#count();
    if (lba + n > d.sectors) return this.#abort();
    this.#lba = lba;
    this.#remaining = n;
    this.#blockSectors = block;
    this.#writing = write;
    if (write) {
      const len = Math.min(block, n) * SECTOR;
      this.#startPio(len, () => this.#pioWriteBlock());
    } else {
      this.#pioReadBlock();
    }
  }

  #pioReadBlock(): void {
    const d = this.drive!;
    const count = Math.min(this.#blockSectors, this.#remaining);
    const lba = this.#lba;
    this.status = DRDY_STAT | 0x80;
    this.machine.defer(
      d.driver!.read(lba * SECTOR, this.buf.subarray(0, count * SECTOR)).then(() => {
        this.#lba += count;
        this.#remaining -= count;
        this.#setLba(this.#lba);
        this.#startPio(
          count * SECTOR,
          this.#remaining ? () => this.#pioReadBlock() : () => this.status = DRDY_STAT | DSC_STAT,
        );
        this.raiseIrq();
      }, () => this.#abort()),
    );
  }

  #pioWriteBlock(): void {
    const d = this.drive!;
    const count = Math.min(this.#blockSectors, this.#remaining);
    const data = this.buf.slice(0, count * SECTOR);
    this.status = DRDY_STAT | 0x80;
    this.machine.defer(
      d.driver!.write(this.#lba * SECTOR, data).then(() => {
        this.#lba += count;
        this.#remaining -= count;
        this.#setLba(this.#lba);
        if (this.#remaining) {
          const len = Math.min(this.#blockSectors, this.#remaining) * SECTOR;
          this.#startPio(len, () => this.#pioWriteBlock());
        } else {
          this.status = DRDY_STAT | DSC_STAT;
        }
        this.raiseIrq();
      }, () => this.#abort()),
    );
  }

  /** READ/WRITE DMA: runs when the bus master is started. */
  #dmaRw(write: boolean): void {
    const d = this.drive!;
    const lba = this.#getLba();
    const n = this.#count();
    if (lba + n > d.sectors) return this.#abort();
    this.status = DRDY_STAT | DSC_STAT | DRQ_STAT;
    this.#dmaPending = async () => {
      const len = n * SECTOR;
      if (write) {
        const data = new Uint8Array(len);
        this.#prdCopy(data, false);
        await d.driver!.write(lba * SECTOR, data);
      } else {
        const data = new Uint8Array(len);
        await d.driver!.read(lba * SECTOR, data);
        this.#prdCopy(data, true);
      }
      this.#setLba(lba + n);
      this.status = DRDY_STAT | DSC_STAT;
    };
    this.#maybeStartDma();
  }

  /** Moves data between a buffer and guest memory along the PRD table; toGuest for reads. */
  #prdCopy(data: Uint8Array, toGuest: boolean): void {
    const ram = this.machine.ram;
    const v = new DataView(ram.buffer, ram.byteOffset);
    let prd = this.bmPrd;
    let off = 0;
    for (let i = 0; i < 8192 && off < data.length; i++, prd += 8) {
      if (prd + 8 > ram.length) break;
      const addr = v.getUint32(prd, true);
      const cnt = v.getUint16(prd + 4, true) || 0x10000;
      const eot = v.getUint16(prd + 6, true) & 0x8000;
      const n = Math.min(cnt, data.length - off);
      if (addr + n <= ram.length) {
        if (toGuest) {
          ram.set(data.subarray(off, off + n), addr);
          this.machine.memory.written(addr, n);
        } else data.set(ram.subarray(addr, addr + n), off);
      }
      off += n;
      if (eot) break;
    }
  }

  #maybeStartDma(): void {
    const job = this.#dmaPending;
    if (!job || !(this.bmCmd & BM_CMD_START)) return;
    this.#dmaPending = null;
    this.bmStatus |= BM_STATUS_ACTIVE;
    this.machine.defer(
      job().then(() => {
        this.bmStatus &= ~BM_STATUS_ACTIVE;
        this.raiseIrq();
      }, () => {
        this.bmStatus = (this.bmStatus & ~BM_STATUS_ACTIVE) | BM_STATUS_ERROR;
        this.#abort();
      }),
    );
  }

  bmRead(reg: number): number {
    switch (reg) {
      case 0:
        return this.bmCmd;
      case 2:
        return this.bmStatus;
      case 4:
      case 5:
      case 6:
      case 7:
        return (this.bmPrd >>> ((reg - 4) * 8)) & 0xff;
      default:
        return 0;
    }
  }

  bmWrite(reg: number, v: number): void {
    switch (reg) {
      case 0:
        this.bmCmd = v & (BM_CMD_START | BM_CMD_READ);
        if (!(v & BM_CMD_START)) this.bmStatus &= ~BM_STATUS_ACTIVE;
        this.#maybeStartDma();
        return;
      case 2:
        this.bmStatus = (this.bmStatus & ~(v & (BM_STATUS_ERROR | BM_STATUS_INT))) & 0x07 |
          (v & 0x60);
        return;
      case 4:
      case 5:
      case 6:
      case 7: {
        const sh = (reg - 4) * 8;
        this.bmPrd = ((this.bmPrd & ~(0xff << sh)) | ((v & 0xff) << sh)) >>> 0 & ~3;
        return;
      }
    }
  }

  // ATAPI.

  #atapiCommand(cmd: number): void {
    const d = this.drive!;
    switch (cmd) {
      case 0xa1: // IDENTIFY PACKET DEVICE
        this.#identifyAtapi(d);
        this.#startPio(512, () => this.status = DRDY_STAT | DSC_STAT);
        this.raiseIrq();
        return;
      case 0xec: // IDENTIFY DEVICE: abort with the ATAPI signature
        this.#signature();
        this.error = ABRT_ERR;
        this.status = DRDY_STAT | ERR_STAT;
        this.raiseIrq();
        return;
      case 0x08: // DEVICE RESET: DRDY stays clear, as on real ATAPI devices
        this.#signature();
        this.status = 0;
        return;
      case 0xa0: // PACKET
        this.nsector = ATAPI_INT_REASON_CD;
        this.#startPio(12, () => this.#packetReceived());
        this.status = DRDY_STAT | DRQ_STAT;
        return;
      case 0xef:
      case 0x91:
      case 0xe0:
      case 0xe1:
      case 0xe7:
        return this.#ok();
      case 0xe5:
        this.nsector = 0xff;
        return this.#ok();
      case 0x90:
        this.#signature();
        this.raiseIrq();
        return;
      default:
        return this.#abort();
    }
  }

  #identifyAtapi(d: IdeDrive): void {
    const w = new Uint16Array(256);
    w[0] = 0x85c0;
    putString(w, 10, 10, d.serial);
    w[20] = 3;
    w[21] = 512;
    w[22] = 4;
    putString(w, 23, 4, "2.5+");
    putString(w, 27, 20, d.model);
    w[48] = 1;
    w[49] = (1 << 9) | (1 << 8);
    w[53] = 7;
    w[62] = 7;
    w[63] = 7;
    w[64] = 3;
    w[65] =
      w[66] =
      w[67] =
      w[68] =
        0xb4;
    w[71] = 30;
    w[72] = 30;
    w[80] = 0x1e;
    w[88] = 0x3f | (1 << 13);
    this.buf.set(new Uint8Array(w.buffer));
  }

  #packetReceived(): void {
    this.#packet.set(this.buf.subarray(0, 12));
    const d = this.drive!;
    const p = this.#packet;
    const op = p[0];
    const dma = (this.feature & 1) !== 0;
    const byteLimit = ((this.hcyl << 8) | this.lcyl) || 0xfffe;
    const noMedia = !d.driver;
    const needsMedia = [0x00, 0x25, 0x28, 0xa8, 0x43, 0x51, 0x2b].includes(op);
    if (op !== 0x03 && op !== 0x12 && d.mediaChanged && needsMedia) {
      d.mediaChanged = false;
      return this.#atapiError(SENSE_UNIT_ATTENTION, ASC_MEDIUM_MAY_HAVE_CHANGED);
    }
    if (needsMedia && noMedia) return this.#atapiError(SENSE_NOT_READY, ASC_MEDIUM_NOT_PRESENT);
    const reply = (data: Uint8Array, alloc: number) => {
      this.#atapiData(data.subarray(0, Math.min(data.length, alloc)), byteLimit, dma);
    };
    const be16 = (o: number) => (p[o] << 8) | p[o + 1];
    const be32 = (o: number) =>
      ((p[o] << 24) | (p[o + 1] << 16) | (p[o + 2] << 8) | p[o + 3]) >>> 0;
    switch (op) {
      case 0x00: // TEST UNIT READY
      case 0x1b: // START STOP UNIT
      case 0x1e: // PREVENT ALLOW MEDIUM REMOVAL
      case 0xbb: // SET CD SPEED
      case 0x2b: // SEEK
        return this.#atapiOk();
      case 0x03: { // REQUEST SENSE
        const s = new Uint8Array(18);
        s[0] = 0x70;
        s[2] = d.senseKey;
        s[7] = 10;
        s[12] = d.asc;
        if (d.senseKey === SENSE_UNIT_ATTENTION) d.senseKey = SENSE_NONE;
        return reply(s, p[4]);
      }
      case 0x12: { // INQUIRY
        const s = new Uint8Array(36);
        s[0] = 0x05;
        s[1] = 0x80;
        s[2] = 0x00;
        s[3] = 0x21;
        s[4] = 31;
        const t = new TextEncoder();
        s.set(t.encode("QEMU    "), 8);
        s.set(t.encode("QEMU DVD-ROM    "), 16);
        s.set(t.encode("2.5+"), 32);
        return reply(s, p[4]);
      }
      case 0x25: { // READ CAPACITY
        const s = new Uint8Array(8);
        const v = new DataView(s.buffer);
        v.setUint32(0, d.sectors - 1);
        v.setUint32(4, CD_SECTOR);
        return reply(s, 8);
      }
      case 0x28: // READ(10)
      case 0xa8: { // READ(12)
        const lba = be32(2);
        const n = op === 0x28 ? be16(7) : be32(6);
        if (lba + n > d.sectors) {
          return this.#atapiError(SENSE_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
        }
        if (!n) return this.#atapiOk();
        this.status = DRDY_STAT | 0x80;
        const data = new Uint8Array(n * CD_SECTOR);
        this.machine.defer(
          d.driver!.read(lba * CD_SECTOR, data).then(
            () => this.#atapiData(data, byteLimit, dma),
            () => this.#atapiError(SENSE_NOT_READY, 0x11),
          ),
        );
        return;
      }
      case 0x43: { // READ TOC
        const msf = (p[1] & 2) !== 0;
        const format = p[9] >> 6 || (p[2] & 0x0f);
        const toc = this.#toc(d, format, msf);
        if (!toc) return this.#atapiError(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        return reply(toc, be16(7));
      }
      case 0x5a: { // MODE SENSE(10)
        const page = p[2] & 0x3f;
        if (page !== 0x2a && page !== 0x3f) {
          return this.#atapiError(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        }
        const s = new Uint8Array(8 + 28);
        s[1] = 34; // mode data length
        s[8] = 0x2a;
        s[9] = 0x14;
        s[10] = 0x3b; // reads CD-R/RW, DVD-ROM
        s[12] = 0x71;
        s[13] = 0x60;
        s[14] = 0x29; // tray, eject, lock
        s[16] = 0x2c; // max speed 11264 KB/s... (big-endian) coarse
        return reply(s, be16(7));
      }
      case 0x46: { // GET CONFIGURATION
        const s = new Uint8Array(8);
        s[3] = 4;
        if (d.driver) s[7] = d.sectors > 1433600 ? 0x10 : 0x08; // current profile DVD/CD
        return reply(s, be16(7));
      }
      case 0x4a: { // GET EVENT STATUS NOTIFICATION
        if (!(p[1] & 1)) return this.#atapiError(SENSE_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
        const s = new Uint8Array(8);
        s[1] = 6;
        s[2] = 4; // media class
        s[3] = 0x10; // supported: media
        s[5] = d.driver ? 2 : 0; // media present
        return reply(s, be16(7));
      }
      case 0x51: { // READ DISC INFORMATION
        const s = new Uint8Array(34);
        s[1] = 32;
        s[2] = 0x0e; // complete disc, last session complete
        s[3] =
          s[4] =
          s[5] =
          s[6] =
            1;
        return reply(s, be16(7));
      }
      case 0xbd: { // MECHANISM STATUS
        const s = new Uint8Array(8);
        s[5] = 1;
        return reply(s, be16(8));
      }
      default:
        return this.#atapiError(SENSE_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
    }
  }

  #toc(d: IdeDrive, format: number, msf: boolean): Uint8Array | null {
    const addr = (lba: number): number[] => {
      if (!msf) return [lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff];
      const f = lba + 150;
      return [0, Math.floor(f / 4500), Math.floor(f / 75) % 60, f % 75];
    };
    if (format === 0) {
      const b = [0, 18, 1, 1, 0, 0x14, 1, 0, ...addr(0), 0, 0x16, 0xaa, 0, ...addr(d.sectors)];
      return new Uint8Array(b);
    }
    if (format === 1) return new Uint8Array([0, 10, 1, 1, 0, 0x14, 1, 0, ...addr(0)]);
    return null;
  }

  /** The data phase of a packet command (PIO in byte-count-limited pieces, or DMA). */
  #atapiData(data: Uint8Array, byteLimit: number, dma: boolean): void {
    if (!data.length) return this.#atapiOk();
    if (dma) {
      this.status = DRDY_STAT | DSC_STAT | DRQ_STAT;
      this.#dmaPending = () => {
        this.#prdCopy(data, true);
        this.#atapiFinish();
        return Promise.resolve();
      };
      this.#maybeStartDma();
      return;
    }
    let off = 0;
    const limit = byteLimit & ~1 || 0xfffe;
    const next = () => {
      if (off >= data.length) return this.#atapiOk();
      const n = Math.min(limit, data.length - off);
      this.#ensureBuf(n);
      this.buf.set(data.subarray(off, off + n));
      off += n;
      this.lcyl = n & 0xff;
      this.hcyl = n >> 8;
      this.nsector = ATAPI_INT_REASON_IO;
      this.#startPio(n, next);
      this.raiseIrq();
    };
    next();
  }

  /** Command completion without raising (DMA path raises after the bus master finishes). */
  #atapiFinish(): void {
    const d = this.drive!;
    d.senseKey = SENSE_NONE;
    d.asc = 0;
    this.error = 0;
    this.nsector = ATAPI_INT_REASON_IO | ATAPI_INT_REASON_CD;
    this.status = DRDY_STAT | DSC_STAT;
  }

  #atapiOk(): void {
    this.#atapiFinish();
    this.raiseIrq();
  }

  #atapiError(key: number, asc: number): void {
    const d = this.drive!;
    d.senseKey = key;
    d.asc = asc;
    this.error = key << 4;
    this.nsector = ATAPI_INT_REASON_IO | ATAPI_INT_REASON_CD;
    this.status = DRDY_STAT | ERR_STAT;
    this.raiseIrq();
  }
}

/** The PIIX3 IDE function with its two channels. */
export class PiixIde extends PciDevice {
  readonly channels: IdeChannel[];

  constructor(machine: Machine) {
    super(0x8086, 0x7010, 0x010180, 0x00);
    this.machine = machine;
    // The timing registers (IDETIM at 0x40/0x42, SIDETIM, UDMA) are read-write as in QEMU:
    // SeaBIOS sets their decode-enable bits (0x41/0x43 bit 7) and Linux's ata_piix ignores a
    // channel whose bit is clear.
    this.wmask.fill(0xff, 0x40, 0x100);
    this.channels = [new IdeChannel(machine, 14, 0), new IdeChannel(machine, 15, 1)];
    // IDETIM (0x40/0x42, bit 15: the channel's decode enable, which SeaBIOS sets and Linux's
    // ata_piix checks before probing), SIDETIM (0x44) and the UDMA/IDE config registers.
    for (let o = 0x40; o < 0x58; o++) this.wmask[o] = 0xff;
    this.channels[0].register(0x1f0, 0x3f6);
    this.channels[1].register(0x170, 0x376);
    this.ioBar(4, 16, {
      read: (p, size) => this.#bm(p, size, null),
      write: (p, size, v) => void this.#bm(p, size, v),
    });
  }

  #bm(p: number, size: number, v: number | null): number {
    const base = this.get32(0x20) & 0xfff0;
    const off = p - base;
    const ch = this.channels[off >> 3];
    let r = 0;
    for (let i = 0; i < size; i++) {
      const reg = (off & 7) + i;
      if (v === null) r |= ch.bmRead(reg) << (8 * i);
      else ch.bmWrite(reg, (v >>> (8 * i)) & 0xff);
    }
    return r >>> 0;
  }

  /** Attaches a drive at channel/unit (ide0-0 is 0/0). */
  attach(channel: number, unit: number, drive: IdeDrive): void {
    this.channels[channel].drives[unit] = drive;
    this.channels[channel].reset();
  }

  reset(): void {
    this.resetPci();
    for (const c of this.channels) c.reset();
  }
}
