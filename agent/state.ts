/**
 * The agent's persistent state in the state directory (-t): qga.state holds the next file
 * handle number (handles never repeat across restarts, as with qemu-ga), and
 * qga.state.isfrozen marks filesystems left frozen by a previous run.
 */

const FIRST_HANDLE = 1000;
const GROUP = "[global]";

/** The persistent handle counter and freeze marker. */
export class PersistentState {
  #counter = FIRST_HANDLE;

  constructor(readonly dir: string) {}

  get path(): string {
    return `${this.dir}/qga.state`;
  }

  get frozenMarker(): string {
    return `${this.dir}/qga.state.isfrozen`;
  }

  /** Loads (or creates) qga.state; throws with qemu-ga's wording when the directory is unusable. */
  load(): void {
    let text: string | undefined;
    try {
      text = Deno.readTextFileSync(this.path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (text === undefined) {
      this.#save();
      return;
    }
    const m = /^fd_counter=(-?\d+)\s*$/m.exec(text);
    const n = m ? Number(m[1]) : NaN;
    this.#counter = Number.isSafeInteger(n) && n >= FIRST_HANDLE ? n : FIRST_HANDLE;
  }

  /** Hands out the next handle and persists the counter, so handles are not reused. */
  nextHandle(): number {
    const h = this.#counter;
    this.#counter = h >= Number.MAX_SAFE_INTEGER ? FIRST_HANDLE : h + 1;
    this.#save();
    return h;
  }

  #save(): void {
    const tmp = `${this.path}.${crypto.randomUUID().slice(0, 6)}`;
    try {
      Deno.writeTextFileSync(tmp, `${GROUP}\nfd_counter=${this.#counter}\n`);
      Deno.renameSync(tmp, this.path);
    } catch (e) {
      const why = /^(.*?) \(os error \d+\)/.exec((e as Error).message)?.[1] ?? String(e);
      throw new Error(
        `failed to write persistent state to ${this.path}: Failed to create file \u201C${tmp}\u201D: ${why}`,
      );
    }
  }

  isFrozenMarked(): boolean {
    try {
      Deno.statSync(this.frozenMarker);
      return true;
    } catch {
      return false;
    }
  }

  markFrozen(frozen: boolean): void {
    if (frozen) Deno.writeTextFileSync(this.frozenMarker, "");
    else {
      try {
        Deno.removeSync(this.frozenMarker);
      } catch {
        // already gone
      }
    }
  }
}
