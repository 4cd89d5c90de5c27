/**
 * demu's qemu-system-x86_64 command line against the real one: the error forms (message and exit
 * status) for bad options, sizes, accelerators, images, machines, boot orders, displays and
 * character devices, plus -h and -version. Without the real QEMU the expected texts are checked
 * as recorded from QEMU 7.2.
 */
import { ok, strictEqual } from "node:assert/strict";
import { haveCommand, runDemu, runUntil } from "./guests/pc/run.ts";

const QEMU = haveCommand("qemu-system-x86_64");
if (!QEMU) {
  console.warn("WARNING: qemu-system-x86_64 is not installed: comparing with recorded texts");
}

const P = "qemu-system-x86_64";
const CASES: [string[], string][] = [
  [["-foo"], `${P}: -foo: invalid option`],
  [["-m"], `${P}: -m: requires an argument`],
  [
    ["-m", "abc"],
    `${P}: -m abc: Parameter 'size' expects a non-negative number below 2^64\n` +
    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n" +
    "and exabytes, respectively.",
  ],
  [["-accel", "foo"], `${P}: -accel foo: invalid accelerator foo`],
  [
    ["-hda", "/nonexistent/x.img", "-display", "none"],
    `${P}: -hda /nonexistent/x.img: Could not open '/nonexistent/x.img': No such file or directory`,
  ],
  [
    ["-cdrom", "/nonexistent/c.iso", "-display", "none"],
    `${P}: -cdrom /nonexistent/c.iso: Could not open '/nonexistent/c.iso': No such file or directory`,
  ],
  [
    ["-drive", "file=/nonexistent/d,format=qcow2", "-display", "none"],
    `${P}: -drive file=/nonexistent/d,format=qcow2: Could not open '/nonexistent/d': No such file or directory`,
  ],
  [
    ["-machine", "q35x"],
    `${P}: unsupported machine type\nUse -machine help to list supported machines`,
  ],
  [["-boot", "x", "-display", "none"], `${P}: Invalid boot device 'x'`],
  [
    ["-drive", "file=/etc/hostname,format=raw,readonly=on", "-display", "none"],
    `${P}: Block node is read-only`,
  ],
  [["-display", "foo"], `${P}: -display foo: Parameter 'type' does not accept value 'foo'`],
  [
    ["-serial", "foo:bar", "-display", "none"],
    `${P}: -serial foo:bar: 'foo:bar' is not a valid char driver\n` +
    `${P}: -serial foo:bar: could not connect serial device to character backend 'foo:bar'`,
  ],
];

for (const [args, expected] of CASES) {
  Deno.test(`cli: ${args.join(" ")} fails as QEMU does`, async () => {
    const d = await runDemu(args, { timeoutMs: 20000 });
    strictEqual(d.code, 1);
    strictEqual(d.stderr.trim(), expected);
    if (QEMU) {
      const q = await runUntil(P, args, { timeoutMs: 20000 });
      strictEqual(q.code, 1);
      strictEqual(q.stderr.trim(), d.stderr.trim());
    }
  });
}

Deno.test("cli: -h and -version answer and exit 0", async () => {
  const h = await runDemu(["-h"], { timeoutMs: 20000 });
  strictEqual(h.code, 0);
  ok(h.stdout.startsWith(`usage: ${P} [options] [disk_image]`));
  for (const opt of ["-enable-kvm", "-cdrom", "-snapshot", "-nographic", "-serial", "-no-reboot"]) {
    ok(h.stdout.includes(opt), `help lacks ${opt}`);
  }
  const v = await runDemu(["-version"], { timeoutMs: 20000 });
  strictEqual(v.code, 0);
  ok(/^QEMU emulator version \d+\.\d+\.\d+ \(demu /.test(v.stdout), v.stdout);
});

Deno.test("cli: networking other than none is refused clearly", async () => {
  const d = await runDemu(["-nic", "user", "-display", "none"], { timeoutMs: 20000 });
  strictEqual(d.code, 1);
  strictEqual(
    d.stderr.trim(),
    `${P}: -nic user: network devices are not emulated by demu yet (use -nic none)`,
  );
});

Deno.test("cli: a refused -serial tcp: connection fails as QEMU does", async () => {
  const args = ["-display", "none", "-nic", "none", "-serial", "tcp:127.0.0.1:1"];
  const d = await runDemu(args, { timeoutMs: 20000 });
  strictEqual(d.code, 1);
  strictEqual(
    d.stderr.trim(),
    `${P}: -serial tcp:127.0.0.1:1: Failed to connect to '127.0.0.1:1': Connection refused\n` +
      `${P}: -serial tcp:127.0.0.1:1: could not connect serial device to character backend 'tcp:127.0.0.1:1'`,
  );
  if (QEMU) {
    const q = await runUntil(P, args, { timeoutMs: 20000 });
    strictEqual(q.stderr.trim(), d.stderr.trim());
  }
});
