/**
 * qemu-io scripts (tests/qemu_io_scripts/*.io) run through demu's and the real qemu-io, each on
 * its own copy of the same image: stdout (timing figures dropped), stderr and the exit status are
 * identical, and the images end with the same contents (the real `qemu-img compare`) and, for
 * qcow2, pass the real `qemu-img check`.
 *
 * A script's header lines say how to run it:
 *   # format: raw|qcow2      image format (-f)
 *   # create: SIZE           a fresh image of that size
 *   # backing: SIZE          a qcow2 over a fresh qcow2 backing file of that size
 *   # base: CMD              a qemu-io command run (by the real qemu-io) on the backing file
 *   # options: ARGS          extra qemu-io options (-r)
 *   # stdin                  feed the commands to the prompt instead of -c
 *   # noimage                no image on the command line ($IMG in commands names it)
 */
import { deepStrictEqual, strictEqual } from "node:assert/strict";
import {
  DEMU_QEMU_IO,
  dropTimings,
  peers,
  type Ran,
  run,
  runDemu,
  tempDir,
} from "../tools/qemu_nbd/testing.ts";

const ignore = !peers("qemu-io", "qemu-img");
const dir = new URL("./qemu_io_scripts/", import.meta.url);

interface Script {
  format: string;
  create?: string;
  backing?: string;
  base: string[];
  options: string[];
  stdin: boolean;
  noImage: boolean;
  commands: string[];
}

function parseScript(text: string): Script {
  const s: Script = {
    format: "raw",
    base: [],
    options: [],
    stdin: false,
    noImage: false,
    commands: [],
  };
  for (const line of text.split("\n")) {
    const h = /^#\s*(\w+)(?::\s*(.*))?$/.exec(line);
    if (h) {
      const [, key, value = ""] = h;
      if (key === "format") s.format = value;
      else if (key === "create") s.create = value;
      else if (key === "backing") s.backing = value;
      else if (key === "base") s.base.push(value);
      else if (key === "options") s.options = value.split(/\s+/).filter(Boolean);
      else if (key === "stdin") s.stdin = true;
      else if (key === "noimage") s.noImage = true;
      continue;
    }
    if (line.startsWith("#")) continue;
    s.commands.push(line);
  }
  while (s.commands.length && s.commands[s.commands.length - 1] === "") s.commands.pop();
  if (!s.stdin) s.commands = s.commands.filter((c) => c.trim());
  return s;
}

function must(r: Ran, what: string): void {
  strictEqual(r.code, 0, `${what}: ${r.stderr}${r.stdout}`);
}

/** Makes the script's image in dir; returns its path. */
async function makeImage(s: Script, where: string): Promise<string> {
  const img = `${where}/disk.${s.format}`;
  if (s.backing) {
    const base = `${where}/base.qcow2`;
    must(await run("qemu-img", ["create", "-q", "-f", "qcow2", base, s.backing]), "base");
    if (s.base.length) {
      must(
        await run("qemu-io", ["-f", "qcow2", ...s.base.flatMap((c) => ["-c", c]), base]),
        "base",
      );
    }
    must(
      await run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", img]),
      "top",
    );
  } else {
    must(await run("qemu-img", ["create", "-q", "-f", s.format, img, s.create ?? "1M"]), "create");
  }
  return img;
}

async function runScript(s: Script, img: string, demu: boolean): Promise<Ran> {
  const cmds = s.commands.map((c) => c.replaceAll("$IMG", img));
  const args = [...s.options];
  if (!s.noImage) args.push("-f", s.format);
  if (!s.stdin) args.push(...cmds.flatMap((c) => ["-c", c]));
  if (!s.noImage) args.push(img);
  const stdin = s.stdin ? cmds.join("\n") + "\n" : undefined;
  const r = demu ? await runDemu(DEMU_QEMU_IO, args, stdin) : await run("qemu-io", args, stdin);
  const unpath = (t: string) => t.replaceAll(img, "$IMG");
  return { code: r.code, stdout: unpath(dropTimings(r.stdout)), stderr: unpath(r.stderr) };
}

const scripts = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".io"))
  .sort();
for (const name of scripts) {
  Deno.test({
    name: `qemu-io script ${name}: demu's output equals the real qemu-io's`,
    ignore,
    async fn() {
      const s = parseScript(await Deno.readTextFile(new URL(name, dir)));
      const [tmp, cleanup] = await tempDir("demu-qemu-io-script-");
      try {
        await Deno.mkdir(`${tmp}/real`);
        await Deno.mkdir(`${tmp}/demu`);
        const realImg = await makeImage(s, `${tmp}/real`);
        const demuImg = await makeImage(s, `${tmp}/demu`);
        const real = await runScript(s, realImg, false);
        const demu = await runScript(s, demuImg, true);
        deepStrictEqual(
          { stdout: demu.stdout, stderr: demu.stderr, code: demu.code },
          { stdout: real.stdout, stderr: real.stderr, code: real.code },
        );
        must(
          await run("qemu-img", ["compare", "-f", s.format, "-F", s.format, realImg, demuImg]),
          "images differ",
        );
        if (s.format === "qcow2") must(await run("qemu-img", ["check", "-q", demuImg]), "check");
      } finally {
        await cleanup();
      }
    },
  });
}
