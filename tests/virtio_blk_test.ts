/**
 * virtio-blk over demu's block layer, driven from the guest's side: configuration space and
 * features, reads and writes (direct and indirect chains, several buffers), flush, get-id,
 * discard and write-zeroes (with and without unmap), QEMU's error statuses for bad requests,
 * read-only drives, the legacy interface, and a qcow2 image written by the guest then checked
 * with the real qemu-img.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { type BlockDriver, openImage } from "@demu/block";
import {
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_F_RING_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VirtioBlk,
} from "../emu/hw/virtio/mod.ts";
import { GuestDriver, TestBoard } from "../emu/hw/virtio/testing.ts";

const bit = (n: number) => 1n << BigInt(n);
const FEATURES = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_RING_INDIRECT_DESC) |
  bit(VIRTIO_BLK_F_FLUSH) | bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES) |
  bit(VIRTIO_BLK_F_BLK_SIZE);
const SIZE = 1 << 20;
const QEMU_IMG = hasQemuImg();
if (!QEMU_IMG) console.warn("WARNING: qemu-img not installed (qemu-utils): qcow2 check skipped");

function hasQemuImg(): boolean {
  try {
    return new Deno.Command("qemu-img", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setBigUint64(8, BigInt(sector), true);
  return h;
}

function segment(sector: number, count: number, flags: number): Uint8Array {
  const s = new Uint8Array(16);
  const v = new DataView(s.buffer);
  v.setBigUint64(0, BigInt(sector), true);
  v.setUint32(8, count, true);
  v.setUint32(12, flags, true);
  return s;
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

/** A temp dir, a raw image in it, and a board with the disk; disposed afterwards. */
async function rig(opts: { readOnly?: boolean; legacy?: boolean; file?: string } = {}) {
  const dir = await Deno.makeTempDir({ prefix: "demu-virtio-blk-" });
  const path = opts.file ?? `${dir}/disk.raw`;
  if (!opts.file) await Deno.writeFile(path, new Uint8Array(SIZE).fill(0x5a));
  const drive: BlockDriver = await openImage(path, {
    format: opts.file ? "qcow2" : "raw",
    readOnly: opts.readOnly,
  });
  const blk = new VirtioBlk(drive, "QM-VIRTIO-SERIAL-0123456789");
  await blk.open();
  const board = new TestBoard(blk);
  const d = new GuestDriver(board, opts.legacy);
  return {
    dir,
    path,
    drive,
    blk,
    board,
    d,
    /** Sends one request; resolves with its status byte, used length and writable bytes. */
    async request(out: Uint8Array[], inLens: number[], indirect = false) {
      const { head, inAddrs } = d.addChain(0, out, [...inLens, 1], { indirect });
      d.kick(0);
      await blk.idle();
      const used = d.takeUsed(0);
      strictEqual(used.length, 1);
      strictEqual(used[0].id, head);
      const status = d.bytes(inAddrs[inAddrs.length - 1], 1)[0];
      const data = inAddrs.slice(0, -1).map((a, i) => d.bytes(a, inLens[i]));
      return { status, len: used[0].len, data };
    },
    async [Symbol.asyncDispose]() {
      await drive.close().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("virtio-blk: identity, configuration space and features", async () => {
  await using r = await rig();
  strictEqual(r.board.cfgRead(2, 2), 0x1001);
  strictEqual(r.board.cfgRead(0x2e, 2), 2);
  strictEqual(r.board.cfgRead(0x0a, 2), 0x0100);
  const f = r.d.deviceFeatures();
  for (const b of [VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES]) {
    ok(f & bit(b), `feature ${b}`);
  }
  ok(!(f & bit(VIRTIO_BLK_F_RO)));
  ok(r.d.init(FEATURES, 1));
  strictEqual(r.d.config(0, 4) + r.d.config(4, 4) * 2 ** 32, SIZE / 512, "capacity");
  strictEqual(r.d.config(20, 4), 512, "blk_size");
  strictEqual(r.d.config(12, 4), 254, "seg_max");
  strictEqual(r.d.config(40, 4), 1, "max_discard_seg");
  strictEqual(r.d.config(52, 4), 1, "max_write_zeroes_seg");
});

Deno.test("virtio-blk: writes and reads through chains of several buffers, direct and indirect", async () => {
  await using r = await rig();
  ok(r.d.init(FEATURES, 1));
  const data = pattern(3 * 512, 1);
  // Data split over two readable buffers.
  let res = await r.request([
    header(VIRTIO_BLK_T_OUT, 7),
    data.subarray(0, 700),
    data.subarray(700),
  ], []);
  deepStrictEqual([res.status, res.len], [VIRTIO_BLK_S_OK, 1]);
  // Read it back into three writable buffers, through an indirect table.
  res = await r.request([header(VIRTIO_BLK_T_IN, 7)], [512, 1000, 24], true);
  deepStrictEqual([res.status, res.len], [VIRTIO_BLK_S_OK, 3 * 512 + 1]);
  deepStrictEqual(new Uint8Array(res.data.flatMap((b) => [...b])), data);
  // And the image file holds it at sector 7; the sectors around are untouched.
  await r.drive.flush();
  const file = await Deno.readFile(r.path);
  deepStrictEqual(file.subarray(7 * 512, 10 * 512), data);
  strictEqual(file[7 * 512 - 1], 0x5a);
  strictEqual(file[10 * 512], 0x5a);
});

Deno.test("virtio-blk: many requests in flight complete in order with an interrupt", async () => {
  await using r = await rig();
  ok(r.d.init(FEATURES, 1));
  const heads: number[] = [];
  for (let i = 0; i < 20; i++) {
    heads.push(
      r.d.addChain(0, [header(VIRTIO_BLK_T_OUT, i * 8), pattern(4096, i)], [1], { publish: false })
        .head,
    );
  }
  r.d.publish(0);
  r.d.kick(0);
  await r.blk.idle();
  deepStrictEqual(r.d.takeUsed(0).map((u) => u.id), heads);
  ok(r.board.level);
  for (let i = 0; i < 20; i++) {
    const res = await r.request([header(VIRTIO_BLK_T_IN, i * 8)], [4096]);
    deepStrictEqual(res.data[0], pattern(4096, i));
  }
});

Deno.test("virtio-blk: flush, get-id, unknown requests and out-of-range I/O", async () => {
  await using r = await rig();
  ok(r.d.init(FEATURES, 1));
  strictEqual((await r.request([header(VIRTIO_BLK_T_FLUSH, 0)], [])).status, VIRTIO_BLK_S_OK);
  const id = await r.request([header(VIRTIO_BLK_T_GET_ID, 0)], [20]);
  strictEqual(id.status, VIRTIO_BLK_S_OK);
  strictEqual(new TextDecoder().decode(id.data[0]), "QM-VIRTIO-SERIAL-012");
  strictEqual((await r.request([header(99, 0)], [])).status, VIRTIO_BLK_S_UNSUPP);
  // Past the end, and a length that is not whole sectors.
  strictEqual(
    (await r.request([header(VIRTIO_BLK_T_IN, SIZE / 512 - 1)], [1024])).status,
    VIRTIO_BLK_S_IOERR,
  );
  strictEqual(
    (await r.request([header(VIRTIO_BLK_T_OUT, SIZE / 512), pattern(512, 0)], [])).status,
    VIRTIO_BLK_S_IOERR,
  );
  strictEqual((await r.request([header(VIRTIO_BLK_T_IN, 0)], [100])).status, VIRTIO_BLK_S_IOERR);
  // A header too short for a request.
  strictEqual((await r.request([new Uint8Array(8)], [])).status, VIRTIO_BLK_S_IOERR);
});

Deno.test("virtio-blk: discard and write-zeroes", async () => {
  await using r = await rig();
  ok(r.d.init(FEATURES, 1));
  // Write-zeroes with unmap allowed, then plain; both read back as zeroes.
  let res = await r.request([header(VIRTIO_BLK_T_WRITE_ZEROES, 0), segment(16, 8, 1)], []);
  strictEqual(res.status, VIRTIO_BLK_S_OK);
  res = await r.request([header(VIRTIO_BLK_T_WRITE_ZEROES, 0), segment(40, 2, 0)], []);
  strictEqual(res.status, VIRTIO_BLK_S_OK);
  const back = await r.request([header(VIRTIO_BLK_T_IN, 15)], [512 * 28]);
  const b = back.data[0];
  ok(b.subarray(0, 512).every((x) => x === 0x5a));
  ok(b.subarray(512, 9 * 512).every((x) => x === 0));
  ok(b.subarray(9 * 512, 25 * 512).every((x) => x === 0x5a));
  ok(b.subarray(25 * 512, 27 * 512).every((x) => x === 0));
  ok(b.subarray(27 * 512).every((x) => x === 0x5a));
  // Discard succeeds; its flags must be zero; two segments exceed max_discard_seg.
  res = await r.request([header(VIRTIO_BLK_T_DISCARD, 0), segment(100, 16, 0)], []);
  strictEqual(res.status, VIRTIO_BLK_S_OK);
  res = await r.request([header(VIRTIO_BLK_T_DISCARD, 0), segment(100, 16, 1)], []);
  strictEqual(res.status, VIRTIO_BLK_S_UNSUPP);
  res = await r.request([header(VIRTIO_BLK_T_WRITE_ZEROES, 0), segment(1, 1, 2)], []);
  strictEqual(res.status, VIRTIO_BLK_S_UNSUPP);
  res = await r.request([header(VIRTIO_BLK_T_DISCARD, 0), segment(0, 1, 0), segment(8, 1, 0)], []);
  strictEqual(res.status, VIRTIO_BLK_S_UNSUPP);
  res = await r.request([header(VIRTIO_BLK_T_DISCARD, 0), segment(SIZE / 512 - 1, 2, 0)], []);
  strictEqual(res.status, VIRTIO_BLK_S_IOERR);
});

Deno.test("virtio-blk: a read-only drive offers RO and fails writes with IOERR", async () => {
  await using r = await rig({ readOnly: true });
  const f = r.d.deviceFeatures();
  ok(f & bit(VIRTIO_BLK_F_RO));
  ok(!(f & bit(VIRTIO_BLK_F_DISCARD)));
  ok(r.d.init(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_BLK_F_RO), 1));
  const res = await r.request([header(VIRTIO_BLK_T_OUT, 0), pattern(512, 3)], []);
  strictEqual(res.status, VIRTIO_BLK_S_IOERR);
  const rd = await r.request([header(VIRTIO_BLK_T_IN, 0)], [512]);
  ok(rd.data[0].every((x) => x === 0x5a));
});

Deno.test("virtio-blk: the legacy interface (a pre-1.0 driver)", async () => {
  await using r = await rig({ legacy: true });
  ok(r.d.init(bit(VIRTIO_BLK_F_FLUSH), 1));
  strictEqual(r.d.config(0, 4), SIZE / 512, "capacity at legacy offset 20");
  let res = await r.request([header(VIRTIO_BLK_T_OUT, 3), pattern(1024, 9)], []);
  strictEqual(res.status, VIRTIO_BLK_S_OK);
  res = await r.request([header(VIRTIO_BLK_T_IN, 3)], [1024]);
  deepStrictEqual(res.data[0], pattern(1024, 9));
});

Deno.test({
  name: "virtio-blk: a qcow2 image written by the guest passes the real qemu-img check",
  ignore: !QEMU_IMG,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "demu-virtio-qcow2-" });
    try {
      const img = `${dir}/disk.qcow2`;
      const mk = await new Deno.Command("qemu-img", {
        args: ["create", "-q", "-f", "qcow2", img, "4M"],
      }).output();
      ok(mk.success);
      {
        await using r = await rig({ file: img });
        ok(r.d.init(FEATURES, 1));
        for (let i = 0; i < 8; i++) {
          const res = await r.request([header(VIRTIO_BLK_T_OUT, i * 1000), pattern(8192, i)], []);
          strictEqual(res.status, VIRTIO_BLK_S_OK);
        }
        const wz = await r.request(
          [header(VIRTIO_BLK_T_WRITE_ZEROES, 0), segment(2000, 16, 1)],
          [],
        );
        strictEqual(wz.status, VIRTIO_BLK_S_OK);
        strictEqual((await r.request([header(VIRTIO_BLK_T_FLUSH, 0)], [])).status, 0);
      }
      const check = await new Deno.Command("qemu-img", { args: ["check", img] }).output();
      const text = new TextDecoder().decode(check.stdout);
      strictEqual(check.code, 0, text);
      ok(text.includes("No errors were found on the image."), text);
      // The real qemu-img reads what the guest wrote.
      const raw = `${dir}/out.raw`;
      const conv = await new Deno.Command("qemu-img", {
        args: ["convert", "-O", "raw", img, raw],
      }).output();
      ok(conv.success);
      const bytes = await Deno.readFile(raw);
      for (const i of [0, 1, 3, 4, 5, 6, 7]) {
        deepStrictEqual(bytes.subarray(i * 1000 * 512, i * 1000 * 512 + 8192), pattern(8192, i));
      }
      ok(bytes.subarray(2000 * 512, 2016 * 512).every((x) => x === 0));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
