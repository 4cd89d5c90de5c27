/**
 * The CPU tests again with the block compiler (jit.ts) compiling every block on its first run
 * (DEMU_JIT_AFTER=1): the host-CPU differential test, the assembled protected-mode, paging and
 * exception guests and the 80286 vectors then check compiled code, which the default threshold
 * reaches only in long-running guests (Linux boots).
 */
import { strictEqual } from "node:assert/strict";

Deno.test("cpu tests with every block compiled (DEMU_JIT_AFTER=1)", async () => {
  const files = ["cpu_diff_test.ts", "cpu_guest_test.ts", "cpu_286_test.ts"]
    .map((f) => new URL(f, import.meta.url).pathname);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--quiet", ...files],
    env: { DEMU_JIT_AFTER: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const summary = text.match(/^(ok|FAILED) \| .*$/m)?.[0] ?? "(no summary)";
  console.log(`under the block compiler: ${summary}`);
  strictEqual(out.code, 0, text.slice(-4000));
});

Deno.test("compiled self-loops end in the same state as the interpreter's (jit_loop_probe.ts)", async () => {
  const probe = new URL("jit_loop_probe.ts", import.meta.url).pathname;
  const run = async (after: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", probe],
      env: { DEMU_JIT_AFTER: after },
      stdout: "piped",
      stderr: "piped",
    }).output();
    strictEqual(out.code, 0, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout);
  };
  const interpreted = await run("0");
  strictEqual(await run("1"), interpreted, "every block compiled");
  strictEqual(await run("3"), interpreted, "compiled after three runs (mid-loop)");
});
