import { deepStrictEqual, strictEqual, throws } from "node:assert/strict";
import { dumpConf, parseArgs } from "./main.ts";

Deno.test("qemu-ga options in every getopt spelling", () => {
  const a = parseArgs([
    "-munix-listen",
    "--path=/run/q.sock",
    "-t",
    "/tmp/st",
    "--logfile",
    "/tmp/log",
    "-F",
    "-v",
    "-b",
    "guest-ping,guest-info",
    "--block-rpcs=guest-exec",
    "-a",
    "guest-sync",
    "-d",
    "-f/tmp/pid",
    "stray-operand",
  ]);
  strictEqual(a.method, "unix-listen");
  strictEqual(a.path, "/run/q.sock");
  strictEqual(a.stateDir, "/tmp/st");
  strictEqual(a.logfile, "/tmp/log");
  strictEqual(a.fsfreezeHook, "/etc/qemu/fsfreeze-hook");
  strictEqual(a.verbose, true);
  deepStrictEqual(a.blockRpcs, ["guest-ping", "guest-info", "guest-exec"]);
  deepStrictEqual(a.allowRpcs, ["guest-sync"]);
  strictEqual(a.daemonize, true);
  strictEqual(a.pidfile, "/tmp/pid");
  strictEqual(parseArgs(["-F/x/hook"]).fsfreezeHook, "/x/hook");
  strictEqual(parseArgs(["--fsfreeze-hook=/y"]).fsfreezeHook, "/y");
  strictEqual(parseArgs(["-b", "help"]).action, "list-rpcs");
  strictEqual(parseArgs(["-V"]).action, "version");
  throws(() => parseArgs(["-x"]), /invalid option -- 'x'/);
  throws(() => parseArgs(["--nope"]), /unrecognized option '--nope'/);
  throws(() => parseArgs(["-p"]), /option requires an argument -- 'p'/);
});

Deno.test("-D writes the configuration as qemu-ga lays it out", () => {
  strictEqual(
    dumpConf(parseArgs(["-m", "isa-serial", "-b", "a,b"])),
    "[general]\ndaemon=false\nmethod=isa-serial\npath=/dev/ttyS0\npidfile=/var/run/qemu-ga.pid\n" +
      "statedir=/var/run\nverbose=false\nretry-path=false\nblock-rpcs=b,a\n",
  );
});
