/**
 * qemu-io's prompt on a terminal (a pty from util-linux `script`): typed commands run, the up
 * arrow recalls the last line, left arrows and backspace edit in the middle of a line, ^D on an
 * empty line leaves.
 */
import { ok, strictEqual } from "node:assert/strict";
import { DEMU_QEMU_IO, peers, tempDir } from "../tools/qemu_nbd/testing.ts";

const ignore = !peers("script");

Deno.test({
  name: "qemu-io prompt: line editing and history on a terminal",
  ignore,
  async fn() {
    const [dir, cleanup] = await tempDir("demu-qemu-io-tty-");
    try {
      const img = `${dir}/d.raw`;
      await Deno.writeFile(img, new Uint8Array(3 << 20));
      const cmd = `${Deno.execPath()} run -A --quiet ${DEMU_QEMU_IO} -f raw ${img}`;
      const p = new Deno.Command("script", {
        args: ["-qfec", cmd, "/dev/null"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = p.stdin.getWriter();
      const enc = new TextEncoder();
      const pause = () => new Promise((r) => setTimeout(r, 700));
      await pause();
      for (
        const keys of [
          "length\r", // typed
          "\x1b[A\r", // recalled
          "lenXgth\x1b[D\x1b[D\x1b[D\x7f\r", // X removed from the middle
          "\x04", // ^D on an empty line
        ]
      ) {
        await w.write(enc.encode(keys));
        await pause();
      }
      await w.close().catch(() => {});
      const out = await p.output();
      const text = new TextDecoder().decode(out.stdout);
      strictEqual(text.match(/^3 MiB\r?$/gm)?.length, 3, text);
      ok(text.includes("qemu-io> "), text);
      strictEqual(out.code, 0);
    } finally {
      await cleanup();
    }
  },
});
