/** Running helper programs (hwclock, shutdown, chpasswd) the way qemu-ga reports their failure. */
import { QgaError } from "../errors.ts";

/**
 * Runs argv (searched in PATH), feeding stdin if given; a non-zero exit becomes the failure
 * text (by default "child process has failed to <action>").
 */
export async function runChild(
  argv: string[],
  action: string,
  stdin?: string,
  failure = `child process has failed to ${action}`,
): Promise<void> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
  } catch (e) {
    throw new QgaError(`failed to create child process, error '${(e as Error).message}'`);
  }
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    try {
      await w.write(new TextEncoder().encode(stdin));
      await w.close();
    } catch {
      // The child may exit without reading; its status tells the story.
    }
  }
  const status = await child.status;
  if (status.signal) throw new QgaError("child process has terminated abnormally");
  if (status.code !== 0) throw new QgaError(failure);
}

/** Finds a program in PATH (like g_find_program_in_path); undefined when absent. */
export function findProgram(name: string): string | undefined {
  const dirs = (Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":");
  for (const d of [...dirs, "/usr/sbin", "/sbin"]) {
    try {
      const p = `${d}/${name}`;
      const st = Deno.statSync(p);
      if (st.isFile && (st.mode ?? 0) & 0o111) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}
