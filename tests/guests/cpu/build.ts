/**
 * Assembles the CPU test programs (tests/guests/cpu/*.asm) with nasm into flat binaries under
 * .cache/cpu-guests/ (outside git). Rebuilds only what changed.
 *
 *     deno run -A tests/guests/cpu/build.ts        # build all, print their paths
 */

const SRC = new URL("./", import.meta.url);
const OUT = new URL("../../../.cache/cpu-guests/", import.meta.url);

/** True when nasm can be run. */
export function haveNasm(): boolean {
  try {
    return new Deno.Command("nasm", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

function mtime(u: URL): number {
  try {
    return Deno.statSync(u).mtime?.getTime() ?? 0;
  } catch {
    return -1;
  }
}

/** The newest modification time among the shared *.inc files the programs include. */
function newestInclude(): number {
  let t = 0;
  for (const e of Deno.readDirSync(SRC)) {
    if (e.name.endsWith(".inc")) t = Math.max(t, mtime(new URL(e.name, SRC)));
  }
  return t;
}

/** Builds `name`.asm (if stale) and returns the binary's bytes. */
export function buildGuest(name: string): Uint8Array {
  Deno.mkdirSync(OUT, { recursive: true });
  const src = new URL(`${name}.asm`, SRC);
  const bin = new URL(`${name}.bin`, OUT);
  if (mtime(bin) < Math.max(mtime(src), newestInclude())) {
    const tmp = new URL(`${name}.bin.${Deno.pid}.tmp`, OUT);
    const r = new Deno.Command("nasm", {
      args: ["-f", "bin", "-i", SRC.pathname, "-o", tmp.pathname, src.pathname],
      stderr: "piped",
    }).outputSync();
    if (!r.success) {
      throw new Error(`nasm ${name}.asm: ${new TextDecoder().decode(r.stderr).trim()}`);
    }
    Deno.renameSync(tmp, bin);
  }
  return Deno.readFileSync(bin);
}

/** Every program's name. */
export function guestNames(): string[] {
  return [...Deno.readDirSync(SRC)].filter((e) => e.name.endsWith(".asm")).map((e) =>
    e.name.slice(0, -4)
  ).sort();
}

if (import.meta.main) {
  if (Deno.args.includes("--help")) {
    console.log(
      "usage: build.ts [NAME...]  assemble tests/guests/cpu/*.asm into .cache/cpu-guests/",
    );
    Deno.exit(0);
  }
  if (!haveNasm()) {
    console.error("build.ts: nasm not found");
    Deno.exit(1);
  }
  for (const n of Deno.args.length ? Deno.args : guestNames()) {
    try {
      buildGuest(n);
      console.log(new URL(`${n}.bin`, OUT).pathname);
    } catch (e) {
      console.error(`build.ts: ${(e as Error).message}`);
      Deno.exit(1);
    }
  }
}
