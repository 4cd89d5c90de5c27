/**
 * `deno task compile`: single self-contained binaries of every demu program into target/, named
 * as QEMU names its programs (target/qemu-img, target/qemu-system-x86_64, target/qemu-ga...).
 * Programs that do not exist yet are skipped. Needs Deno's runtime download (not run in CI).
 *
 *   deno task compile              # everything
 *   deno task compile qemu-img     # only the named programs
 */
const ROOT = new URL("../", import.meta.url).pathname;

/** A program: its entry file (relative to the repo) and the binary's name. */
interface Program {
  entry: string;
  name: string;
  /** Modules loaded as Workers, which deno compile must be told about. */
  include?: string[];
}

/** Every top-level tools/*.ts that is a program (not a library, test or this script). */
function toolPrograms(): Program[] {
  const out: Program[] = [];
  for (const e of Deno.readDirSync(`${ROOT}tools`)) {
    if (!e.isFile || !e.name.endsWith(".ts")) continue;
    if (e.name === "mod.ts" || e.name === "compile.ts" || e.name.endsWith("_test.ts")) continue;
    const name = e.name.slice(0, -3);
    const prog: Program = { entry: `tools/${e.name}`, name };
    if (name === "qemu-img") prog.include = ["tools/qemu_img/compress_worker.ts"];
    out.push(prog);
  }
  return out;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const programs: Program[] = [
  ...toolPrograms(),
  { entry: "emu/main.ts", name: "qemu-system-x86_64" },
  { entry: "agent/main.ts", name: "qemu-ga" },
].filter((p) => exists(`${ROOT}${p.entry}`))
  .filter((p) => !Deno.args.length || Deno.args.includes(p.name))
  .sort((a, b) => a.name.localeCompare(b.name));

if (!programs.length) {
  console.error(
    `compile: nothing to build${Deno.args.length ? ` for ${Deno.args.join(" ")}` : ""}`,
  );
  Deno.exit(1);
}
Deno.mkdirSync(`${ROOT}target`, { recursive: true });
let failed = 0;
for (const p of programs) {
  const args = ["compile", "-A", "--quiet", "--output", `${ROOT}target/${p.name}`];
  for (const inc of p.include ?? []) args.push("--include", `${ROOT}${inc}`);
  args.push(`${ROOT}${p.entry}`);
  console.log(`compile ${p.entry} -> target/${p.name}`);
  const r = await new Deno.Command(Deno.execPath(), { args, stdout: "inherit", stderr: "inherit" })
    .output();
  if (!r.success) {
    console.error(`compile: ${p.entry} failed`);
    failed++;
  }
}
Deno.exit(failed ? 1 : 0);
