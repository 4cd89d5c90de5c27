/**
 * The virtio command line (-chardev, -device virtio-serial/virtserialport/virtconsole,
 * -drive if=virtio): bad combinations fail with the real QEMU's message and a non-zero exit,
 * compared line for line with qemu-system-x86_64 when it is installed (QEMU's texts are checked
 * as fixed strings otherwise); good ones start and create the chardev socket.
 */
import { ok, strictEqual } from "node:assert/strict";
import { haveCommand, runDemu, runUntil } from "./guests/pc/run.ts";

const QEMU = haveCommand("qemu-system-x86_64");
if (!QEMU) console.warn("WARNING: qemu-system-x86_64 is not installed: messages not compared");

const P = "qemu-system-x86_64";
const BASE = ["-display", "none", "-S", "-monitor", "none", "-nic", "none"];

const CASES: [string[], string][] = [
  [
    ["-device", "virtserialport,chardev=x"],
    `${P}: -device virtserialport,chardev=x: No 'virtio-serial-bus' bus found for device 'virtserialport'`,
  ],
  [
    ["-device", "virtio-serial", "-device", "virtserialport,chardev=x"],
    `${P}: -device virtserialport,chardev=x: Property 'virtserialport.chardev' can't find value 'x'`,
  ],
  [
    ["-chardev", "socket,path=/tmp/demu-never.sock,server=on,wait=off"],
    `${P}: -chardev socket,path=/tmp/demu-never.sock,server=on,wait=off: chardev: no id specified`,
  ],
  [["-chardev", "foo,id=a"], `${P}: -chardev foo,id=a: 'foo' is not a valid char driver name`],
  [["-device", "foo"], `${P}: -device foo: 'foo' is not a valid device model name`],
  [["-chardev", "file,id=a"], `${P}: -chardev file,id=a: chardev: file: no filename given`],
  [["-drive", "if=virtio"], `${P}: -drive if=virtio: Device needs media, but drive is empty`],
  [
    ["-chardev", "null,id=a", "-chardev", "null,id=a"],
    `${P}: -chardev null,id=a: Duplicate ID 'a' for chardev`,
  ],
  [
    ["-device", "virtio-serial", "-device", "virtserialport,bogus=1"],
    `${P}: -device virtserialport,bogus=1: Property 'virtserialport.bogus' not found`,
  ],
  [
    ["-device", "virtio-serial", "-device", "virtserialport,nr=0"],
    `${P}: -device virtserialport,nr=0: Port number 0 on virtio-serial devices reserved for virtconsole devices for backward compatibility.`,
  ],
  [
    [
      "-device",
      "virtio-serial",
      "-device",
      "virtserialport,name=a",
      "-device",
      "virtserialport,name=a",
    ],
    `${P}: -device virtserialport,name=a: virtio-serial-bus: A port already exists by name a`,
  ],
  [
    ["-device", "virtio-serial,max_ports=4", "-device", "virtserialport,nr=4"],
    `${P}: -device virtserialport,nr=4: virtio-serial-bus: Out-of-range port id specified, max. allowed: 3`,
  ],
];

Deno.test("virtio cli: errors in QEMU's words, non-zero exit", async () => {
  for (const [args, expected] of CASES) {
    const d = await runDemu([...BASE, ...args], { timeoutMs: 30000 });
    strictEqual(d.code, 1, `${args.join(" ")}: ${d.stderr}`);
    strictEqual(d.stderr.trim().split("\n")[0], expected);
    if (QEMU) {
      const q = await runUntil(P, [...BASE, ...args], { timeoutMs: 10000 });
      strictEqual(q.code, 1);
      strictEqual(q.stderr.trim().split("\n")[0], expected, "QEMU says the same");
    }
  }
});

Deno.test("virtio cli: the agent channel line starts, listening on its socket", async () => {
  const dir = await Deno.makeTempDir({ prefix: "demu-virtio-cli-" });
  try {
    const sock = `${dir}/qga.sock`;
    const img = `${dir}/disk.raw`;
    await Deno.writeFile(img, new Uint8Array(1 << 20));
    const args = [
      ...BASE,
      ...["-chardev", `socket,path=${sock},server=on,wait=off,id=qga0`],
      ...["-device", "virtio-serial"],
      ...["-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"],
      ...["-drive", `if=virtio,file=${img},format=raw`],
    ];
    // -S holds the CPU; the devices and the socket exist. Stop once the socket appears.
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../emu/main.ts", import.meta.url).pathname, ...args],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    try {
      const t0 = Date.now();
      let up = false;
      while (!up && Date.now() - t0 < 20000) {
        try {
          (await Deno.connect({ transport: "unix", path: sock })).close();
          up = true;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      ok(up, "the chardev socket is listening");
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    strictEqual(await stderr, "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
