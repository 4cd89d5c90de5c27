/**
 * virtio-serial with multiport, driven from the guest's side: the control-queue handshake
 * (DEVICE_READY, DEVICE_ADD, PORT_READY, CONSOLE_PORT, PORT_NAME, PORT_OPEN) as Linux's
 * virtio_console does it, per-port data in both directions, data held until the guest opens a
 * port, host connect/disconnect events, and QEMU's port-numbering rules.
 */
import { deepStrictEqual, ok, strictEqual, throws } from "node:assert/strict";
import type { CharBackend } from "../emu/chardev/mod.ts";
import {
  VIRTIO_CONSOLE_CONSOLE_PORT,
  VIRTIO_CONSOLE_DEVICE_ADD,
  VIRTIO_CONSOLE_DEVICE_READY,
  VIRTIO_CONSOLE_F_MULTIPORT,
  VIRTIO_CONSOLE_PORT_NAME,
  VIRTIO_CONSOLE_PORT_OPEN,
  VIRTIO_CONSOLE_PORT_READY,
  VIRTIO_F_VERSION_1,
  VirtioSerial,
} from "../emu/hw/virtio/mod.ts";
import { GuestDriver, TestBoard } from "../emu/hw/virtio/testing.ts";
import { followConnection } from "../emu/hw/virtio/board.ts";
import { parseSocketSpec, SocketBackend } from "../emu/chardev/socket.ts";

class Sink implements CharBackend {
  readonly out: number[] = [];
  receive: (b: Uint8Array) => void = () => {};
  write(b: Uint8Array) {
    this.out.push(...b);
  }
  setReceiver(r: (b: Uint8Array) => void) {
    this.receive = r;
  }
  close() {}
  text() {
    return new TextDecoder().decode(new Uint8Array(this.out));
  }
}

const FEATURES = (1n << BigInt(VIRTIO_F_VERSION_1)) | (1n << BigInt(VIRTIO_CONSOLE_F_MULTIPORT));
const enc = new TextEncoder(), dec = new TextDecoder();

function ctrl(id: number, event: number, value: number): Uint8Array {
  const m = new Uint8Array(8);
  const v = new DataView(m.buffer);
  v.setUint32(0, id, true);
  v.setUint16(4, event, true);
  v.setUint16(6, value, true);
  return m;
}

/** The guest's view of the control receive queue: messages as {id, event, value, extra}. */
class Control {
  #bufs = new Map<number, number>();
  constructor(readonly d: GuestDriver) {}
  post(n: number) {
    for (let i = 0; i < n; i++) {
      const { head, inAddrs } = this.d.addChain(2, [], [64]);
      this.#bufs.set(head, inAddrs[0]);
    }
    this.d.kick(2);
  }
  take(): { id: number; event: number; value: number; extra: string }[] {
    return this.d.takeUsed(2).map(({ id, len }) => {
      const b = this.d.bytes(this.#bufs.get(id)!, len);
      const v = new DataView(b.buffer);
      return {
        id: v.getUint32(0, true),
        event: v.getUint16(4, true),
        value: v.getUint16(6, true),
        extra: dec.decode(b.subarray(8)),
      };
    });
  }
  send(id: number, event: number, value: number) {
    this.d.addChain(3, [ctrl(id, event, value)], []);
    this.d.kick(3);
  }
}

function setup() {
  const serial = new VirtioSerial(4);
  const con = new Sink(), agent = new Sink(), other = new Sink();
  const conPort = serial.addPort(con, { console: true });
  const agentPort = serial.addPort(agent, { name: "org.qemu.guest_agent.0" });
  const otherPort = serial.addPort(other, { name: "com.example.other" });
  const board = new TestBoard(serial);
  const d = new GuestDriver(board);
  return { serial, con, agent, other, conPort, agentPort, otherPort, board, d };
}

Deno.test("virtio-serial: config space, queue count, ports numbered as QEMU does", () => {
  const { d, conPort, agentPort, otherPort } = setup();
  strictEqual(conPort.id, 0);
  strictEqual(agentPort.id, 1);
  strictEqual(otherPort.id, 2);
  ok(d.deviceFeatures() & (1n << BigInt(VIRTIO_CONSOLE_F_MULTIPORT)));
  strictEqual(d.config(4, 4), 4, "max_nr_ports");
  strictEqual(d.common(0x12, 2), 10, "2 queues per port plus the control pair");
});

Deno.test("virtio-serial: the control handshake announces ports, names, console and open state", () => {
  const { d } = setup();
  ok(d.init(FEATURES, 10));
  const c = new Control(d);
  c.post(16);
  strictEqual(c.take().length, 0, "nothing before DEVICE_READY");
  c.send(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
  deepStrictEqual(c.take().map((m) => [m.id, m.event, m.value]), [
    [0, VIRTIO_CONSOLE_DEVICE_ADD, 1],
    [1, VIRTIO_CONSOLE_DEVICE_ADD, 1],
    [2, VIRTIO_CONSOLE_DEVICE_ADD, 1],
  ]);
  c.send(0, VIRTIO_CONSOLE_PORT_READY, 1);
  deepStrictEqual(c.take().map((m) => [m.id, m.event, m.value]), [
    [0, VIRTIO_CONSOLE_CONSOLE_PORT, 1],
    [0, VIRTIO_CONSOLE_PORT_OPEN, 1],
  ]);
  c.send(1, VIRTIO_CONSOLE_PORT_READY, 1);
  const msgs = c.take();
  deepStrictEqual(msgs.map((m) => [m.id, m.event, m.value]), [
    [1, VIRTIO_CONSOLE_PORT_NAME, 1],
    [1, VIRTIO_CONSOLE_PORT_OPEN, 1],
  ]);
  strictEqual(msgs[0].extra, "org.qemu.guest_agent.0\0");
});

Deno.test("virtio-serial: control messages wait for receive buffers", () => {
  const { d } = setup();
  ok(d.init(FEATURES, 10));
  const c = new Control(d);
  c.post(1);
  c.send(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
  strictEqual(c.take().length, 1);
  c.post(4);
  strictEqual(c.take().length, 2, "the rest arrive when buffers do");
});

Deno.test("virtio-serial: port data both ways; host data held until the guest opens the port", () => {
  const { d, agent, other, con } = setup();
  ok(d.init(FEATURES, 10));
  const c = new Control(d);
  c.post(16);
  c.send(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
  for (const id of [0, 1, 2]) c.send(id, VIRTIO_CONSOLE_PORT_READY, 1);
  c.take();
  // Port 1's queues: rx 4, tx 5. The host talks first; the guest has buffers but no open.
  const rx = d.addChain(4, [], [256]);
  d.kick(4);
  agent.receive(enc.encode('{"execute":"guest-ping"}\n'));
  strictEqual(d.takeUsed(4).length, 0, "held while the guest has the port closed");
  c.send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
  const used = d.takeUsed(4);
  deepStrictEqual(used, [{ id: rx.head, len: 25 }]);
  strictEqual(dec.decode(d.bytes(rx.inAddrs[0], 25)), '{"execute":"guest-ping"}\n');
  // The guest answers on port 1's transmit queue; nothing leaks to the other ports.
  d.addChain(5, [enc.encode('{"return": {}}\n')], []);
  d.kick(5);
  strictEqual(agent.text(), '{"return": {}}\n');
  strictEqual(other.text(), "");
  strictEqual(con.text(), "");
  // The console (port 0: rx 0, tx 1) works without a PORT_OPEN from the guest.
  d.addChain(1, [enc.encode("login: ")], []);
  d.kick(1);
  strictEqual(con.text(), "login: ");
  const crx = d.addChain(0, [], [8]);
  d.kick(0);
  con.receive(enc.encode("root\n"));
  deepStrictEqual(d.takeUsed(0), [{ id: crx.head, len: 5 }]);
});

Deno.test("virtio-serial: host side connect and disconnect reach the guest as PORT_OPEN", () => {
  const { d, agentPort } = setup();
  ok(d.init(FEATURES, 10));
  const c = new Control(d);
  c.post(16);
  c.send(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
  c.take();
  agentPort.setHostOpen(false);
  deepStrictEqual(c.take().map((m) => [m.id, m.event, m.value]), [[
    1,
    VIRTIO_CONSOLE_PORT_OPEN,
    0,
  ]]);
  agentPort.setHostOpen(true);
  deepStrictEqual(c.take().map((m) => [m.id, m.event, m.value]), [[
    1,
    VIRTIO_CONSOLE_PORT_OPEN,
    1,
  ]]);
});

Deno.test("virtio-serial: a device reset forgets the guest's open ports", () => {
  const { d, agent } = setup();
  ok(d.init(FEATURES, 10));
  const c = new Control(d);
  c.post(4);
  c.send(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
  c.send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
  ok(d.init(FEATURES, 10));
  d.addChain(4, [], [16]);
  d.kick(4);
  agent.receive(enc.encode("x"));
  strictEqual(d.takeUsed(4).length, 0);
});

Deno.test("virtio-serial: port numbering and naming errors use QEMU's wording", () => {
  const s = new VirtioSerial(4);
  throws(() => s.addPort(new Sink(), { nr: 0 }), {
    message:
      "Port number 0 on virtio-serial devices reserved for virtconsole devices for backward compatibility.",
  });
  s.addPort(new Sink(), { name: "a" });
  throws(() => s.addPort(new Sink(), { name: "a" }), {
    message: "virtio-serial-bus: A port already exists by name a",
  });
  throws(() => s.addPort(new Sink(), { nr: 1 }), {
    message: "virtio-serial-bus: A port already exists at id 1",
  });
  throws(() => s.addPort(new Sink(), { nr: 4 }), {
    message: "virtio-serial-bus: Out-of-range port id specified, max. allowed: 3",
  });
  // A virtconsole takes port 0 when free; a second one gets the next free number.
  strictEqual(s.addPort(new Sink(), { console: true }).id, 0);
  strictEqual(s.addPort(new Sink(), { console: true }).id, 2);
});

Deno.test("virtio-serial: a socket chardev's client connecting and leaving opens and closes the port", async () => {
  const dir = await Deno.makeTempDir({ prefix: "demu-vserial-" });
  const path = `${dir}/port.sock`;
  const sock = await SocketBackend.open(
    parseSocketSpec(`unix:${path},server=on,wait=off`)!,
    () => {},
  );
  try {
    const serial = new VirtioSerial(2);
    const port = serial.addPort(sock, { name: "org.qemu.guest_agent.0" });
    followConnection(port, sock);
    const d = new GuestDriver(new TestBoard(serial));
    ok(d.init(FEATURES, 6));
    const c = new Control(d);
    c.post(16);
    c.send(0, VIRTIO_CONSOLE_DEVICE_READY, 1);
    c.send(1, VIRTIO_CONSOLE_PORT_READY, 1);
    // Nobody connected: the name, but no PORT_OPEN.
    deepStrictEqual(c.take().map((m) => [m.id, m.event, m.value]), [
      [1, VIRTIO_CONSOLE_DEVICE_ADD, 1],
      [1, VIRTIO_CONSOLE_PORT_NAME, 1],
    ]);
    const client = await Deno.connect({ transport: "unix", path });
    for (let i = 0; i < 100 && !port.hostOpen; i++) await new Promise((r) => setTimeout(r, 10));
    deepStrictEqual(c.take().map((m) => [m.id, m.event, m.value]), [[
      1,
      VIRTIO_CONSOLE_PORT_OPEN,
      1,
    ]]);
    // The guest opens the port; bytes flow from the client to the guest.
    c.send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    const rx = d.addChain(4, [], [64]);
    d.kick(4);
    await client.write(enc.encode("ping"));
    for (let i = 0; i < 100 && d.r16(d.queues[4].used + 2) === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    deepStrictEqual(d.takeUsed(4), [{ id: rx.head, len: 4 }]);
    client.close();
    for (let i = 0; i < 100 && port.hostOpen; i++) await new Promise((r) => setTimeout(r, 10));
    deepStrictEqual(c.take().map((m) => [m.id, m.event, m.value]), [[
      1,
      VIRTIO_CONSOLE_PORT_OPEN,
      0,
    ]]);
  } finally {
    await sock.close();
    await Deno.remove(dir, { recursive: true });
  }
});
