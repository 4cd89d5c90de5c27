/**
 * agent/main.ts's command line beside the real qemu-ga: -D output, option errors, start-up
 * failures (log lines compared without their timestamps), -b help, -V/--help, and -d/-f
 * (daemonize with a pidfile).
 */
import { deepStrictEqual, match, ok, strictEqual } from "node:assert/strict";
import { findQemuGa, RawConn } from "../agent/testing.ts";

const MAIN = new URL("../agent/main.ts", import.meta.url).pathname;
const qemuGa = findQemuGa();
if (!qemuGa) {
  console.warn("\n!!! WARNING: qemu-ga is not installed: agent CLI comparisons SKIPPED !!!\n");
}

interface Run {
  code: number;
  out: string;
  err: string;
}

async function run(which: "demu" | "qemu-ga", args: string[]): Promise<Run> {
  const argv = which === "demu"
    ? [Deno.execPath(), "run", "-A", MAIN, ...args]
    : [qemuGa!, ...args];
  const r = await new Deno.Command(argv[0], { args: argv.slice(1), stdin: "null" }).output();
  // qemu-ga names itself by argv[0], which is its full path here.
  const dec = {
    decode: (b: Uint8Array) => new TextDecoder().decode(b).replaceAll(qemuGa ?? "\0", "qemu-ga"),
  };
  // Log lines start with "<seconds>.<micros>: "; temp-file suffixes are random.
  const err = dec.decode(r.stderr).replace(/^\d+\.\d+: /gm, "").replace(
    /qga\.state\.\w{6}/g,
    "qga.state.XXXXXX",
  );
  return { code: r.code, out: dec.decode(r.stdout), err };
}

Deno.test({
  name: "agent CLI: same output, errors and exit codes as qemu-ga",
  ignore: !qemuGa,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "agent-cli-" });
    try {
      const cases: string[][] = [
        [
          "-D",
          "-m",
          "unix-listen",
          "-p",
          `${dir}/x.sock`,
          "-t",
          dir,
          "-b",
          "guest-ping,guest-info",
          "-F/x/hook",
          "-v",
        ],
        ["-D"],
        ["-D", "-m", "isa-serial", "--statedir", dir, "--pidfile=/x.pid"],
        ["-x"],
        ["--bogus"],
        ["-m"],
        ["-m", "bogus", "-p", `${dir}/s`, "-t", dir],
        ["-m", "unix-listen", "-p", `${dir}/nodir/s`, "-t", dir],
        ["-m", "unix-listen", "-p", `${dir}/s`, "-t", `${dir}/nodir`],
        ["-m", "isa-serial", "-p", `${dir}/no-such-tty`, "-t", dir],
      ];
      for (const args of cases) {
        const [real, demu] = [await run("qemu-ga", args), await run("demu", args)];
        if (args.at(-1)?.endsWith("/nodir")) {
          // qemu-ga 7.2 exits 0 when it cannot create its state file (a bug); demu exits 1.
          strictEqual(real.code, 0);
          strictEqual(demu.code, 1);
          real.code = 1;
        }
        deepStrictEqual(demu, real, `qemu-ga ${args.join(" ")}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("agent CLI: --help, -V and -b help", async () => {
  const help = await run("demu", ["--help"]);
  strictEqual(help.code, 0);
  match(help.out, /Usage: qemu-ga \[-m <method> -p <path>\]/);
  const v = await run("demu", ["-V"]);
  strictEqual(v.code, 0);
  match(v.out, /^QEMU Guest Agent 7\.2\.22/);
  const list = await run("demu", ["-b", "help"]);
  strictEqual(list.code, 0);
  const mine = list.out.trim().split("\n");
  ok(mine.includes("guest-fsfreeze-freeze-list") && mine.includes("guest-get-load"));
  if (qemuGa) {
    const real = (await run("qemu-ga", ["-b", "help"])).out.trim().split("\n");
    const newer = ["guest-get-load", "guest-network-get-route"];
    deepStrictEqual(mine.filter((c) => !newer.includes(c)).sort(), [...real].sort());
  }
});

async function daemonCase(which: "demu" | "qemu-ga"): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "agent-daemon-" });
  const pidfile = `${dir}/qga.pid`;
  let pid = 0;
  try {
    const r = await run(which, [
      "-d",
      "-f",
      pidfile,
      "-m",
      "unix-listen",
      "-p",
      `${dir}/s`,
      "-t",
      dir,
      "-l",
      `${dir}/log`,
    ]);
    strictEqual(r.code, 0, `${which} -d: ${r.err}`);
    // The parent has returned; the daemon keeps serving and its pid is in the pidfile.
    pid = Number((await Deno.readTextFile(pidfile)).trim());
    ok(pid > 0, `${which} wrote its pid`);
    const c = await RawConn.open(`${dir}/s`);
    deepStrictEqual(await c.call('{"execute":"guest-ping"}'), { return: {} });
    await c.close();
  } finally {
    if (pid > 0) {
      Deno.kill(pid, "SIGTERM");
      let gone = false;
      for (let i = 0; i < 100 && !gone; i++) {
        try {
          Deno.kill(pid, "SIGCONT");
          await new Promise((res) => setTimeout(res, 30));
        } catch {
          gone = true;
        }
      }
      if (!gone) Deno.kill(pid, "SIGKILL");
      ok(gone, `${which} daemon exits on SIGTERM`);
    }
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("agent CLI: -d daemonizes and writes -f's pidfile", async () => {
  await daemonCase("demu");
  if (qemuGa) await daemonCase("qemu-ga");
});
