/**
 * The virtio PCI transport and split virtqueues, driven from the guest's side (the test plays the
 * driver through PCI config cycles, the BARs and guest RAM): identity and capabilities, the
 * status/feature handshake, modern and legacy queue layouts, indirect chains, event-index and
 * flag-based interrupt suppression, ISR semantics, reset, and broken rings (NEEDS_RESET).
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import type { CharBackend } from "../emu/chardev/mod.ts";
import {
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
  STATUS_NEEDS_RESET,
  VIRTIO_F_NOTIFY_ON_EMPTY,
  VIRTIO_F_RING_EVENT_IDX,
  VIRTIO_F_RING_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VirtioSerial,
} from "../emu/hw/virtio/mod.ts";
import { GuestDriver, TestBoard } from "../emu/hw/virtio/testing.ts";

/** A character backend that records what the device writes. */
class Sink implements CharBackend {
  readonly out: Uint8Array[] = [];
  receive: (b: Uint8Array) => void = () => {};
  write(b: Uint8Array) {
    this.out.push(b.slice());
  }
  setReceiver(r: (b: Uint8Array) => void) {
    this.receive = r;
  }
  close() {}
  text() {
    return new TextDecoder().decode(new Uint8Array(this.out.flatMap((b) => [...b])));
  }
}

const bit = (n: number) => 1n << BigInt(n);
const VERSION_1 = bit(VIRTIO_F_VERSION_1);

/** A console with one virtconsole port: queues 0 (rx) and 1 (tx) move bytes simply. */
function consoleBoard() {
  const serial = new VirtioSerial(1);
  const sink = new Sink();
  serial.addPort(sink, { console: true });
  const board = new TestBoard(serial);
  return { board, sink, serial };
}

Deno.test("virtio-pci: identity, subsystem, interrupt pin and capability list", () => {
  const { board } = consoleBoard();
  strictEqual(board.cfgRead(0, 2), 0x1af4);
  strictEqual(board.cfgRead(2, 2), 0x1003); // transitional console
  strictEqual(board.cfgRead(0x2c, 2), 0x1af4);
  strictEqual(board.cfgRead(0x2e, 2), 3);
  strictEqual(board.cfgRead(0x3d, 1), 1);
  strictEqual(board.cfgRead(0x0b, 1), 0x07); // communication controller
  // BAR sizing: all-ones reads back the size masks.
  board.cfgWrite(0x10, 4, 0xffffffff);
  strictEqual(board.cfgRead(0x10, 4) & 1, 1);
  ok(((~(board.cfgRead(0x10, 4) & ~3) >>> 0) + 1) >= 32);
  board.cfgWrite(0x20, 4, 0xffffffff);
  strictEqual(board.cfgRead(0x20, 4) >>> 0, 0xffffc000);
  const d = new GuestDriver(board);
  deepStrictEqual(d.layout, {
    common: 0xfe000000,
    isr: 0xfe001000,
    device: 0xfe002000,
    notify: 0xfe003000,
    notifyMultiplier: 4,
  });
  strictEqual(d.common(0x12, 2), 4); // num_queues: 1 port => 2 pairs
});

Deno.test("virtio-pci: feature negotiation; FEATURES_OK refused without VERSION_1 or with unoffered bits", () => {
  const { board } = consoleBoard();
  const d = new GuestDriver(board);
  const f = d.deviceFeatures();
  ok(f & VERSION_1);
  ok(f & bit(VIRTIO_F_RING_EVENT_IDX));
  ok(f & bit(VIRTIO_F_RING_INDIRECT_DESC));
  strictEqual(d.init(0n, 0), false, "no VERSION_1");
  strictEqual(d.init(VERSION_1 | bit(40), 0), false, "an unoffered bit");
  ok(d.init(VERSION_1, 2));
  strictEqual(d.status() & (STATUS_FEATURES_OK | STATUS_DRIVER_OK), 12);
  // Features read back; writes after FEATURES_OK do not change them.
  d.setCommon(0x08, 4, 1);
  strictEqual(d.common(0x0c, 4), 1);
  d.setCommon(0x0c, 4, 0);
  strictEqual(d.common(0x0c, 4), 1);
});

Deno.test("virtio-pci: modern queue set-up, queue size negotiation, tx chain reaches the backend", () => {
  const { board, sink } = consoleBoard();
  const d = new GuestDriver(board);
  strictEqual(d.common(0x18, 2), 128); // the device's maximum
  ok(d.init(VERSION_1, 2, 64));
  strictEqual(d.queues[1].size, 64);
  // A bad (non power of two) size is ignored.
  d.setCommon(0x16, 2, 0);
  strictEqual(d.common(0x1c, 2), 1, "queue 0 enabled");
  const enc = new TextEncoder();
  const { head } = d.addChain(1, [enc.encode("hello, "), enc.encode("host")], []);
  d.kick(1);
  strictEqual(sink.text(), "hello, host");
  deepStrictEqual(d.takeUsed(1), [{ id: head, len: 0 }]);
  ok(board.level, "INTx asserted");
  strictEqual(d.readIsr(), 1);
  ok(!board.level, "reading ISR deasserts");
  strictEqual(d.readIsr(), 0);
});

Deno.test("virtio-pci: host to guest through rx buffers, split over chains and buffers", () => {
  const { board, sink } = consoleBoard();
  const d = new GuestDriver(board);
  ok(d.init(VERSION_1, 2));
  sink.receive(new TextEncoder().encode("0123456789"));
  // Nothing happens until the guest posts buffers.
  strictEqual(d.takeUsed(0).length, 0);
  const a = d.addChain(0, [], [4, 2]);
  const b = d.addChain(0, [], [16]);
  d.kick(0);
  deepStrictEqual(d.takeUsed(0), [{ id: a.head, len: 6 }, { id: b.head, len: 4 }]);
  strictEqual(new TextDecoder().decode(d.bytes(a.inAddrs[0], 4)), "0123");
  strictEqual(new TextDecoder().decode(d.bytes(a.inAddrs[1], 2)), "45");
  strictEqual(new TextDecoder().decode(d.bytes(b.inAddrs[0], 4)), "6789");
  strictEqual(d.bytes(b.inAddrs[0] + 4, 1)[0], 0xcc, "nothing past the data");
});

Deno.test("virtio-pci: indirect descriptor chains", () => {
  const { board, sink } = consoleBoard();
  const d = new GuestDriver(board);
  ok(d.init(VERSION_1 | bit(VIRTIO_F_RING_INDIRECT_DESC), 2));
  const enc = new TextEncoder();
  const { head } = d.addChain(1, [enc.encode("in"), enc.encode("direct")], [], {
    indirect: true,
  });
  d.kick(1);
  strictEqual(sink.text(), "indirect");
  deepStrictEqual(d.takeUsed(1), [{ id: head, len: 0 }]);
});

Deno.test("virtio-pci: event index: avail_event published, used_event honoured", () => {
  const { board, sink } = consoleBoard();
  const d = new GuestDriver(board);
  ok(d.init(VERSION_1 | bit(VIRTIO_F_RING_EVENT_IDX), 2));
  const enc = new TextEncoder();
  // The driver asks for an interrupt only after the 3rd used entry (used_event = 2).
  d.setUsedEvent(1, 2);
  d.addChain(1, [enc.encode("a")], []);
  d.kick(1);
  strictEqual(d.availEvent(1), 1, "the device tells how far it read");
  strictEqual(board.irq.filter((l) => l).length, 1, "the first notification is always sent");
  d.readIsr();
  d.addChain(1, [enc.encode("b")], []);
  d.kick(1);
  strictEqual(board.irq.filter((l) => l).length, 1, "used idx 2 has not passed used_event 2");
  d.addChain(1, [enc.encode("c")], []);
  d.kick(1);
  strictEqual(board.irq.filter((l) => l).length, 2, "used idx 3 passed used_event 2");
  strictEqual(d.availEvent(1), 3);
  strictEqual(sink.text(), "abc");
  strictEqual(d.takeUsed(1).length, 3);
});

Deno.test("virtio-pci: without event index, VIRTQ_AVAIL_F_NO_INTERRUPT suppresses interrupts", () => {
  const { board, sink } = consoleBoard();
  const d = new GuestDriver(board);
  ok(d.init(VERSION_1, 2));
  d.setAvailFlags(1, 1);
  d.addChain(1, [new TextEncoder().encode("quiet")], []);
  d.kick(1);
  strictEqual(sink.text(), "quiet");
  strictEqual(board.irq.filter((l) => l).length, 0);
  strictEqual(d.takeUsed(1).length, 1, "the buffer is still returned");
});

Deno.test("virtio-pci: several chains published at once are all consumed by one kick", () => {
  const { board, sink } = consoleBoard();
  const d = new GuestDriver(board);
  ok(d.init(VERSION_1, 2, 4));
  const enc = new TextEncoder();
  // Wrap the 4-entry ring a few times.
  for (let round = 0; round < 5; round++) {
    for (const s of ["w", "x", "y"]) d.addChain(1, [enc.encode(s)], [], { publish: false });
    d.publish(1);
    d.kick(1);
    strictEqual(d.takeUsed(1).length, 3);
  }
  strictEqual(sink.text(), "wxy".repeat(5));
});

Deno.test("virtio-pci: legacy interface: 32 feature bits, PFN layout, ISR and config at 20", () => {
  const { board, sink } = consoleBoard();
  const d = new GuestDriver(board, true);
  const f = d.deviceFeatures();
  strictEqual(f >> 32n, 0n, "legacy features are 32 bits");
  ok(f & bit(VIRTIO_F_RING_EVENT_IDX));
  ok(d.init(bit(VIRTIO_F_RING_EVENT_IDX), 2));
  strictEqual(d.status() & STATUS_DRIVER_OK, STATUS_DRIVER_OK);
  strictEqual(d.config(4, 4), 1, "max_nr_ports at legacy offset 20+4");
  const q = d.queues[1];
  strictEqual(q.used % 4096, 0, "the used ring starts on a page");
  strictEqual(d.legacyRead(8, 4), q.desc / 4096);
  d.addChain(1, [new TextEncoder().encode("legacy")], []);
  d.kick(1);
  strictEqual(sink.text(), "legacy");
  strictEqual(d.takeUsed(1).length, 1);
  strictEqual(d.readIsr(), 1);
});

Deno.test("virtio-pci: reset clears status, features and queues", () => {
  const { board } = consoleBoard();
  const d = new GuestDriver(board);
  ok(d.init(VERSION_1, 2));
  d.setStatus(0);
  strictEqual(d.status(), 0);
  d.setCommon(0x16, 2, 1);
  strictEqual(d.common(0x1c, 2), 0, "queue disabled");
  strictEqual(d.common(0x20, 4), 0);
  d.setCommon(0x08, 4, 1);
  strictEqual(d.common(0x0c, 4), 0);
});

Deno.test("virtio-pci: a descriptor loop or an address outside RAM sets NEEDS_RESET, no crash", () => {
  const { board, sink } = consoleBoard();
  const d = new GuestDriver(board);
  ok(d.init(VERSION_1, 2));
  const q = d.queues[1];
  // Descriptor 0 -> 1 -> 0 ...
  const view = new DataView(board.machine.ram.buffer);
  for (const [i, next] of [[0, 1], [1, 0]]) {
    view.setUint32(q.desc + 16 * i, 0x8000, true);
    view.setUint32(q.desc + 16 * i + 8, 4, true);
    view.setUint16(q.desc + 16 * i + 12, 1, true);
    view.setUint16(q.desc + 16 * i + 14, next, true);
  }
  view.setUint16(q.avail + 4, 0, true);
  view.setUint16(q.avail + 2, 1, true);
  d.kick(1);
  ok(d.status() & STATUS_NEEDS_RESET);
  strictEqual(sink.out.length, 0);
  strictEqual(d.readIsr() & 2, 2, "a configuration interrupt tells the driver");
  // After a reset the device works again; then an address past the end of RAM fails alike.
  ok(d.init(VERSION_1, 2));
  const q2 = d.queues[1];
  view.setUint32(q2.desc, 0xfffff000, true);
  view.setUint32(q2.desc + 8, 4096, true);
  view.setUint16(q2.desc + 12, 0, true);
  view.setUint16(q2.avail + 4, 0, true);
  view.setUint16(q2.avail + 2, 1, true);
  d.kick(1);
  ok(d.status() & STATUS_NEEDS_RESET);
});

Deno.test("virtio-pci: VIRTIO_F_NOTIFY_ON_EMPTY interrupts when the ring empties despite NO_INTERRUPT", () => {
  const { board } = consoleBoard();
  const d = new GuestDriver(board, true);
  ok(d.deviceFeatures() & bit(VIRTIO_F_NOTIFY_ON_EMPTY));
  ok(d.init(bit(VIRTIO_F_NOTIFY_ON_EMPTY), 2));
  d.setAvailFlags(1, 1);
  d.addChain(1, [new TextEncoder().encode("x")], []);
  d.kick(1);
  strictEqual(board.irq.filter((l) => l).length, 1);
});

Deno.test("virtio-pci: the PCI configuration access capability reaches the BARs", () => {
  const { board, sink } = consoleBoard();
  const d = new GuestDriver(board);
  ok(d.init(VERSION_1, 2));
  let cap = 0;
  for (let p = board.cfgRead(0x34, 1); p; p = board.cfgRead(p + 1, 1)) {
    if (board.cfgRead(p, 1) === 0x09 && board.cfgRead(p + 3, 1) === 5) cap = p;
  }
  ok(cap, "a VIRTIO_PCI_CAP_PCI_CFG capability");
  strictEqual(board.cfgRead(cap + 2, 1), 20);
  // num_queues (common config 0x12, 2 bytes) through the window.
  board.cfgWrite(cap + 4, 1, 4);
  board.cfgWrite(cap + 8, 4, 0x12);
  board.cfgWrite(cap + 12, 4, 2);
  strictEqual(board.cfgRead(cap + 16, 2), 4);
  // A notify through the window: queue 1 at the notify structure.
  d.addChain(1, [new TextEncoder().encode("via cfg")], []);
  board.cfgWrite(cap + 8, 4, 0x3000 + 4);
  board.cfgWrite(cap + 16, 2, 1);
  strictEqual(sink.text(), "via cfg");
  // The legacy BAR too: the device status at offset 18.
  board.cfgWrite(cap + 4, 1, 0);
  board.cfgWrite(cap + 8, 4, 18);
  board.cfgWrite(cap + 12, 4, 1);
  strictEqual(board.cfgRead(cap + 16, 1), d.status());
});
