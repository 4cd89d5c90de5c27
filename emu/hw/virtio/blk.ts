/**
 * virtio-blk (virtio 1.x section 5.2) over a demu block driver: reads, writes, flush, get-id,
 * discard and write-zeroes, one request queue. Requests complete asynchronously, in order per
 * queue; a request that fails in the driver answers VIRTIO_BLK_S_IOERR.
 */
import type { BlockDriver } from "@demu/block";
import type { Chain } from "./virtqueue.ts";
import type { VirtioBackend, VirtioPci } from "./pci.ts";

export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_TOPOLOGY = 10;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;

export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;

export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

export const VIRTIO_BLK_ID_BYTES = 20;
const QUEUE_SIZE = 256;
/** Most sectors one discard or write-zeroes segment may cover (QEMU's default, 4 GiB - 512). */
const MAX_DISCARD_SECTORS = 0x3fffff;

export class VirtioBlk implements VirtioBackend {
  readonly deviceId = 2;
  readonly features: bigint;
  readonly queueSizes = [QUEUE_SIZE];
  readonly config = new Uint8Array(60);
  #t!: VirtioPci;
  /** Bumped at reset: completions of requests from before it are dropped. */
  #epoch = 0;
  #tail: Promise<void> = Promise.resolve();
  #sectors = 0;
  #inFlight = 0;

  constructor(readonly drive: BlockDriver, readonly serial = "") {
    let f = (1n << BigInt(VIRTIO_BLK_F_SEG_MAX)) | (1n << BigInt(VIRTIO_BLK_F_BLK_SIZE)) |
      (1n << BigInt(VIRTIO_BLK_F_FLUSH)) | (1n << BigInt(VIRTIO_BLK_F_TOPOLOGY));
    if (drive.readOnly) f |= 1n << BigInt(VIRTIO_BLK_F_RO);
    else {
      f |= (1n << BigInt(VIRTIO_BLK_F_DISCARD)) | (1n << BigInt(VIRTIO_BLK_F_WRITE_ZEROES));
    }
    this.features = f;
  }

  /** Reads the disk's size into the configuration space; call before the guest runs. */
  async open(): Promise<void> {
    this.#sectors = Math.floor(await this.drive.length() / 512);
    const v = new DataView(this.config.buffer);
    v.setBigUint64(0, BigInt(this.#sectors), true); // capacity
    v.setUint32(12, QUEUE_SIZE - 2, true); // seg_max
    v.setUint32(20, 512, true); // blk_size
    // topology: physical_block_exp 0, alignment 0, min_io_size 1, opt_io_size 0.
    v.setUint16(26, 1, true);
    v.setUint16(34, 1, true); // num_queues
    v.setUint32(36, MAX_DISCARD_SECTORS, true); // max_discard_sectors
    v.setUint32(40, 1, true); // max_discard_seg
    v.setUint32(44, 1, true); // discard_sector_alignment
    v.setUint32(48, MAX_DISCARD_SECTORS, true); // max_write_zeroes_sectors
    v.setUint32(52, 1, true); // max_write_zeroes_seg
    this.config[56] = 1; // write_zeroes_may_unmap
  }

  attach(t: VirtioPci): void {
    this.#t = t;
  }

  reset(): void {
    this.#epoch++;
    this.#inFlight = 0;
  }

  notify(q: number): void {
    const vq = this.#t.queues[q];
    const epoch = this.#epoch;
    for (;;) {
      const chain = vq.pop();
      if (!chain) break;
      this.#inFlight++;
      this.#tail = this.#tail.then(async () => {
        const { status, written } = await this.#handle(chain);
        if (epoch !== this.#epoch) return;
        this.#inFlight--;
        if (!vq.ready) return;
        this.#t.guard(() => {
          if (chain.inLength) chain.writeIn(new Uint8Array([status]), chain.inLength - 1);
          vq.push(chain, written + 1);
        });
        this.#t.notifyQueue(vq, this.#inFlight);
      });
    }
  }

  /** Settles when every request taken so far has completed. */
  idle(): Promise<void> {
    return this.#tail;
  }

  async #handle(c: Chain): Promise<{ status: number; written: number }> {
    const fail = (status: number) => ({ status, written: 0 });
    if (c.outLength < 16 || c.inLength < 1) return fail(VIRTIO_BLK_S_IOERR);
    const h = new DataView(c.readOut(0, 16).buffer);
    const type = h.getUint32(0, true);
    const sector = Number(h.getBigUint64(8, true));
    const d = this.drive;
    try {
      switch (type) {
        case VIRTIO_BLK_T_IN: {
          const len = c.inLength - 1;
          if (len % 512 || !this.#inRange(sector, len / 512)) return fail(VIRTIO_BLK_S_IOERR);
          const buf = new Uint8Array(len);
          await d.read(sector * 512, buf);
          return { status: VIRTIO_BLK_S_OK, written: c.writeIn(buf) };
        }
        case VIRTIO_BLK_T_OUT: {
          const data = c.readOut(16);
          if (d.readOnly) return fail(VIRTIO_BLK_S_IOERR);
          if (data.length % 512 || !this.#inRange(sector, data.length / 512)) {
            return fail(VIRTIO_BLK_S_IOERR);
          }
          await d.write(sector * 512, data);
          return fail(VIRTIO_BLK_S_OK);
        }
        case VIRTIO_BLK_T_FLUSH:
          await d.flush();
          return fail(VIRTIO_BLK_S_OK);
        case VIRTIO_BLK_T_GET_ID: {
          const id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
          id.set(new TextEncoder().encode(this.serial).subarray(0, VIRTIO_BLK_ID_BYTES));
          const n = Math.min(VIRTIO_BLK_ID_BYTES, c.inLength - 1);
          return { status: VIRTIO_BLK_S_OK, written: c.writeIn(id.subarray(0, n)) };
        }
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES: {
          const discard = type === VIRTIO_BLK_T_DISCARD;
          if (d.readOnly) return fail(VIRTIO_BLK_S_IOERR);
          const segs = c.readOut(16);
          // One segment of 16 bytes: max_discard_seg and max_write_zeroes_seg are 1.
          if (segs.length !== 16) return fail(VIRTIO_BLK_S_UNSUPP);
          const s = new DataView(segs.buffer);
          const start = Number(s.getBigUint64(0, true));
          const count = s.getUint32(8, true);
          const flags = s.getUint32(12, true);
          // Discard has no flags; write-zeroes knows only "unmap".
          if (flags & (discard ? ~0 : ~1)) return fail(VIRTIO_BLK_S_UNSUPP);
          if (count > MAX_DISCARD_SECTORS || !this.#inRange(start, count)) {
            return fail(VIRTIO_BLK_S_IOERR);
          }
          if (discard) await d.discard(start * 512, count * 512);
          else await d.writeZeroes(start * 512, count * 512, { mayUnmap: (flags & 1) === 1 });
          return fail(VIRTIO_BLK_S_OK);
        }
        default:
          return fail(VIRTIO_BLK_S_UNSUPP);
      }
    } catch (e) {
      this.#t.machine?.log?.("guest_errors", `virtio-blk: ${(e as Error)?.message ?? e}`);
      return fail(VIRTIO_BLK_S_IOERR);
    }
  }

  #inRange(sector: number, count: number): boolean {
    return sector >= 0 && count >= 0 && sector + count <= this.#sectors;
  }
}
